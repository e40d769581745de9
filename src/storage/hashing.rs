//! Resumable hashing: a SHA-256/SHA-512 hasher whose complete internal state (including the
//! partial block) serialises to a few hundred bytes, so an upload interrupted between chunks
//! (or continued by another process) resumes hashing exactly where it stopped, without
//! re-reading a single byte already stored.
//!
//! Built on `sha2` 0.11's `SerializableState`.

use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

use crate::error::Error;
use crate::oci::{Digest, DigestAlgorithm};

/// An incremental hasher for one of the registered digest algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hasher({})", self.algorithm())
    }
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        match self {
            Self::Sha256(_) => DigestAlgorithm::Sha256,
            Self::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    /// Feeds bytes.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far (the hasher itself is left untouched).
    pub fn digest(&self) -> Digest {
        match self {
            Self::Sha256(h) => Digest::from_hash(DigestAlgorithm::Sha256, &h.clone().finalize()),
            Self::Sha512(h) => Digest::from_hash(DigestAlgorithm::Sha512, &h.clone().finalize()),
        }
    }

    /// Serialises the complete state to a checkpoint.
    pub fn checkpoint(&self) -> HashCheckpoint {
        let bytes = match self {
            Self::Sha256(h) => h.serialize().to_vec(),
            Self::Sha512(h) => h.serialize().to_vec(),
        };
        HashCheckpoint {
            algorithm: self.algorithm(),
            state: hex::encode(bytes),
        }
    }

    /// Restores a hasher from a checkpoint.
    pub fn restore(checkpoint: &HashCheckpoint) -> Result<Self, Error> {
        let corrupt = || Error::backend("hashing", "corrupt hash checkpoint in upload state");
        let bytes = hex::decode(&checkpoint.state).map_err(|_| corrupt())?;
        Ok(match checkpoint.algorithm {
            DigestAlgorithm::Sha256 => {
                let state = SerializedState::<sha2::Sha256>::try_from(bytes.as_slice())
                    .map_err(|_| corrupt())?;
                Self::Sha256(sha2::Sha256::deserialize(&state).map_err(|_| corrupt())?)
            }
            DigestAlgorithm::Sha512 => {
                let state = SerializedState::<sha2::Sha512>::try_from(bytes.as_slice())
                    .map_err(|_| corrupt())?;
                Self::Sha512(sha2::Sha512::deserialize(&state).map_err(|_| corrupt())?)
            }
        })
    }
}

/// A serialised hasher state, stored with an upload's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashCheckpoint {
    /// The algorithm.
    pub algorithm: DigestAlgorithm,
    /// The hex-encoded internal state.
    pub state: String,
}

impl serde::Serialize for DigestAlgorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DigestAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_resumes_mid_block() {
        for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let expected = Digest::compute(alg, &data);
            // Split at offsets that are not block multiples.
            for split in [0, 1, 63, 64, 65, 127, 129, 5000, 10_000] {
                let mut h = Hasher::new(alg);
                h.update(&data[..split]);
                let cp = h.checkpoint();
                let json = serde_json::to_string(&cp).unwrap();
                let mut resumed = Hasher::restore(&serde_json::from_str(&json).unwrap()).unwrap();
                resumed.update(&data[split..]);
                assert_eq!(resumed.digest(), expected, "{alg} split {split}");
            }
        }
    }

    #[test]
    fn corrupt_checkpoint_is_an_error() {
        let mut cp = Hasher::new(DigestAlgorithm::Sha256).checkpoint();
        cp.state.truncate(10);
        assert!(Hasher::restore(&cp).is_err());
        cp.state = "zz".into();
        assert!(Hasher::restore(&cp).is_err());
    }
}
