//! Input validation: every malformed repository name, tag, digest or upload id is rejected by
//! its parser, so no invalid (or path-escaping) value ever reaches a driver.

use crate::error::Error;
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::storage::UploadId;

use super::DriverFactory;

const TRAVERSALS: &[&str] = &[
    "..",
    "../",
    "../x",
    "./x",
    "a/..",
    "a/../b",
    "a/../../etc",
    "a/./b",
    "/etc/passwd",
    "/a",
    "a/",
    "a//b",
    "%2e%2e",
    "%2e%2e/etc",
    "a/%2e%2e/b",
    "%2fetc",
    "a\\..\\b",
    "..\\x",
    "a\0b",
    "~/x",
    "C:\\x",
    "a/b/../../..",
];

/// Repository names, tags, digests and upload ids are validated by their parsers, including
/// every path-traversal shape (`..`, absolute paths, percent-encoded dots, backslashes, NUL).
pub async fn names_invalid_rejected<F: DriverFactory>(_f: &F) {
    for bad in TRAVERSALS.iter().copied().chain([
        "",
        "A",
        "Library/x",
        "a_",
        "-a",
        "a-",
        "a___b",
        "a..b",
        "a.-b",
        "a b",
        "a:b",
        "a@b",
        "ä",
        &"a".repeat(256),
    ]) {
        assert!(
            matches!(RepositoryName::parse(bad), Err(Error::NameInvalid(_))),
            "repository name {bad:?} accepted"
        );
    }
    for good in [
        "a",
        "library/ubuntu",
        "a0/b-c/d.e/f_g/h__i/j---k",
        &"a".repeat(255),
    ] {
        assert!(
            RepositoryName::parse(good).is_ok(),
            "repository name {good:?} rejected"
        );
    }

    for bad in TRAVERSALS.iter().copied().chain([
        "",
        ".a",
        "-a",
        "a/b",
        "a:b",
        "a@b",
        "a b",
        "ä",
        "a\n",
        &"t".repeat(129),
    ]) {
        assert!(Tag::parse(bad).is_err(), "tag {bad:?} accepted");
        if !bad.contains(':') {
            assert!(Reference::parse(bad).is_err(), "reference {bad:?} accepted");
        }
    }
    for good in ["latest", "_", "V1.0", "a-b_c.d", "a..b", &"t".repeat(128)] {
        assert!(Tag::parse(good).is_ok(), "tag {good:?} rejected");
    }

    let hex64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let bad_digests = [
        String::new(),
        "sha256".to_owned(),
        "sha256:".to_owned(),
        format!(":{hex64}"),
        hex64.to_owned(),
        format!("sha256:{}", &hex64[..63]),
        format!("sha256:{hex64}0"),
        format!("sha256:{}", hex64.to_uppercase()),
        format!("sha256:{}g", &hex64[..63]),
        format!("sha512:{hex64}"),
        format!("SHA256:{hex64}"),
        format!("sha256:../../{}", &hex64[..58]),
        format!("sha256:{}/..", &hex64[..61]),
        "sha256:../../../etc/passwd".to_owned(),
        "../sha256:x".to_owned(),
        format!("sha256:%2e%2e{}", &hex64[..58]),
        format!("sha256 :{hex64}"),
        format!("sha256:{hex64}\n"),
    ];
    for bad in &bad_digests {
        assert!(Digest::parse(bad).is_err(), "digest {bad:?} accepted");
        assert!(
            Reference::parse(bad).is_err() || !bad.contains(':'),
            "reference {bad:?} accepted"
        );
    }
    // Unregistered algorithms are refused too (UNSUPPORTED or DIGEST_INVALID).
    for bad in [format!("md5:{}", &hex64[..32]), format!("sha384:{hex64}")] {
        assert!(Digest::parse(&bad).is_err(), "digest {bad:?} accepted");
    }
    let good = format!("sha256:{hex64}");
    assert_eq!(Digest::parse(&good).map(|d| d.to_string()).ok(), Some(good));
    let good512 = format!("sha512:{hex64}{hex64}");
    assert!(Digest::parse(&good512).is_ok());

    let id = "0123456789abcdef0123456789abcdef";
    for bad in TRAVERSALS.iter().map(|s| s.to_string()).chain([
        String::new(),
        id[..31].to_owned(),
        format!("{id}0"),
        id.to_uppercase(),
        format!("../{}", &id[3..]),
        format!("{}/..", &id[..29]),
        format!("{}%2e", &id[..29]),
        format!("{}g", &id[..31]),
    ]) {
        assert!(
            matches!(UploadId::parse(&bad), Err(Error::BlobUploadUnknown(_))),
            "upload id {bad:?} accepted"
        );
    }
    assert!(UploadId::parse(id).is_ok());
    let fresh = UploadId::generate();
    assert_eq!(UploadId::parse(fresh.as_str()).ok(), Some(fresh));
}
