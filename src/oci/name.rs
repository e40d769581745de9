//! Repository names, tags and references, with the exact grammars of the OCI distribution
//! spec v1.1 ("Pulling manifests"):
//!
//! - name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, and
//!   "many clients impose a limit of 255 characters" on the whole name;
//! - tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
//!
//! Because neither grammar admits `..`, an empty component or a leading `/`, a validated name
//! or tag can be used as a path component without any further escaping.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::oci::Digest;

/// Maximum length of a repository name, slashes included.
pub(crate) const MAX_NAME_LEN: usize = 255;
/// Maximum length of a tag.
pub(crate) const MAX_TAG_LEN: usize = 128;

/// A validated repository name such as `library/ubuntu`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    /// Validates `s` against the spec grammar.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(Error::NameInvalid(format!(
                "repository name must be 1 to {MAX_NAME_LEN} characters, got {}",
                s.len()
            )));
        }
        if !s.split('/').all(valid_component) {
            return Err(Error::NameInvalid(format!(
                "{s:?} does not match the repository name grammar"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // One or more alphanumerics.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator: ".", "_", "__" or one or more "-".
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryName({})", self.0)
    }
}

impl FromStr for RepositoryName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// A validated tag such as `latest` or `v1.0_rc-2`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates `s` against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    ///
    /// An invalid tag is reported as `MANIFEST_INVALID`: the spec has no tag-specific code and
    /// a tag is only ever used to name a manifest.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&x| x.is_ascii_alphanumeric() || b"._-".contains(&x));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::ManifestInvalid(format!(
                "{s:?} is not a valid tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}})"
            )))
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl FromStr for Tag {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// The `<reference>` of a manifest URL: "either (a) the digest of the manifest or (b) a tag
/// name" (spec, "Pulling manifests").
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    /// A tag.
    Tag(Tag),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything containing `:` must be a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.contains(':') {
            Digest::parse(s).map(Self::Digest)
        } else {
            Tag::parse(s).map(Self::Tag)
        }
    }

    /// The digest, when the reference is one.
    pub fn as_digest(&self) -> Option<&Digest> {
        match self {
            Self::Digest(d) => Some(d),
            Self::Tag(_) => None,
        }
    }

    /// The tag, when the reference is one.
    pub fn as_tag(&self) -> Option<&Tag> {
        match self {
            Self::Tag(t) => Some(t),
            Self::Digest(_) => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => t.fmt(f),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl From<Tag> for Reference {
    fn from(t: Tag) -> Self {
        Self::Tag(t)
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Self {
        Self::Digest(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a0/b-c/d.e/f_g/h__i/j---k",
            "0/1",
            &"a".repeat(255),
        ] {
            assert!(RepositoryName::parse(ok).is_ok(), "{ok:?} rejected");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "a_",
            "-a",
            "a___b",
            "a..b",
            "a.-b",
            "a b",
            "a\\b",
            "a%2fb",
            &"a".repeat(256),
        ] {
            assert!(
                matches!(RepositoryName::parse(bad), Err(Error::NameInvalid(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn tags() {
        for ok in ["latest", "_", "V1.0", "a-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok:?} rejected");
        }
        for bad in ["", ".a", "-a", "a/b", "a:b", "..", &"t".repeat(129), "ä"] {
            assert!(Tag::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(Reference::parse(d), Ok(Reference::Digest(_))));
        assert!(Reference::parse("sha256:short").is_err());
    }
}
