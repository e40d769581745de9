//! Content digests (`algorithm:hex`) as defined by the OCI image spec, "Digests".
//!
//! Only the registered algorithms `sha256` and `sha512` are accepted: the image spec requires
//! their encoded part to be lowercase hex of exactly 64 and 128 characters.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A registered digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DigestAlgorithm {
    /// SHA-256, the default and the one every client supports.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    /// Every registered algorithm.
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The algorithm's identifier in a digest string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded hash.
    pub const fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DigestAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            other => Err(Error::Unsupported(format!(
                "digest algorithm {other:?} is not supported (sha256, sha512)"
            ))),
        }
    }
}

/// A validated digest such as `sha256:6c3c62...`.
///
/// The string form is kept, so `Display` and `as_str` cost nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    value: String,
}

impl Digest {
    /// Parses and validates a digest string.
    ///
    /// Malformed digests are `DIGEST_INVALID`; a well-formed digest of an unregistered
    /// algorithm is `UNSUPPORTED`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (algorithm, encoded) = s
            .split_once(':')
            .ok_or_else(|| Error::DigestInvalid(format!("{s:?} has no algorithm prefix")))?;
        // Image spec grammar: algorithm-component := [a-z0-9]+, separators [+._-].
        let grammar_ok = !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        if !grammar_ok {
            return Err(Error::DigestInvalid(format!("{s:?} is not a valid digest")));
        }
        let algorithm: DigestAlgorithm = algorithm.parse()?;
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::DigestInvalid(format!(
                "{s:?}: {algorithm} digests are {} lowercase hex characters",
                algorithm.hex_len()
            )));
        }
        Ok(Self {
            algorithm,
            value: s.to_owned(),
        })
    }

    /// Builds a digest from a raw hash output.
    pub fn from_hash(algorithm: DigestAlgorithm, hash: &[u8]) -> Self {
        debug_assert_eq!(hash.len() * 2, algorithm.hex_len());
        let mut value = String::with_capacity(algorithm.as_str().len() + 1 + hash.len() * 2);
        value.push_str(algorithm.as_str());
        value.push(':');
        value.push_str(&hex::encode(hash));
        Self { algorithm, value }
    }

    /// Computes the digest of `data` in one call.
    pub fn compute(algorithm: DigestAlgorithm, data: &[u8]) -> Self {
        use sha2::Digest as _;
        match algorithm {
            DigestAlgorithm::Sha256 => Self::from_hash(algorithm, &sha2::Sha256::digest(data)),
            DigestAlgorithm::Sha512 => Self::from_hash(algorithm, &sha2::Sha512::digest(data)),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The hex-encoded hash (the part after the colon).
    pub fn hex(&self) -> &str {
        &self.value[self.algorithm.as_str().len() + 1..]
    }

    /// The full string form.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.value)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_computes_sha256() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d, Digest::compute(DigestAlgorithm::Sha256, b""));
        assert_eq!(d.algorithm(), DigestAlgorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY_SHA256);
    }

    #[test]
    fn sha512_round_trips() {
        let d = Digest::compute(DigestAlgorithm::Sha512, b"abc");
        assert!(d.as_str().starts_with("sha512:ddaf35a1"));
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:../../../etc/passwd",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(Error::DigestInvalid(_))),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
