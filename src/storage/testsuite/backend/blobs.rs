//! Clause 6: blobs.

use crate::error::Error;
use crate::oci::ByteRange;
use crate::storage::backend::Backend;
use crate::storage::testsuite::{assert_err, data, ok, sha256};

use super::{BackendFactory, Setup, read_blob, store_blob};

/// Clause 6: `blob_size` is `None` until a blob is stored, then its size; `read_blob`
/// streams it whole or exactly the bytes of a range, and fails with `BLOB_UNKNOWN` for a
/// blob not stored. Sizes around the filesystem's memory-map threshold and the empty blob.
pub async fn contract_blobs<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let missing = sha256(b"never stored");
    assert_eq!(ok!(b.blob_size(&missing).await), None);
    assert_err!(read_blob(b, &missing, None).await, Error::BlobUnknown(_));
    for (len, seed) in [(0, 0u8), (1, 1), (4096, 2), (300 * 1024 + 7, 3)] {
        let content = data(len, seed);
        let digest = sha256(&content);
        assert_eq!(ok!(b.blob_size(&digest).await), None, "{len} bytes, before");
        assert_eq!(store_blob(b, &content).await, digest);
        assert_eq!(
            ok!(b.blob_size(&digest).await),
            Some(len as u64),
            "{len} bytes"
        );
        assert!(
            ok!(read_blob(b, &digest, None).await) == content,
            "{len} bytes whole"
        );
        if len == 0 {
            continue;
        }
        let last = len as u64 - 1;
        let third = len as u64 / 3;
        for (start, end) in [
            (0, 0),
            (last, last),
            (0, last),
            (third, (2 * third).min(last)),
        ] {
            let got = ok!(read_blob(b, &digest, Some(ByteRange { start, end })).await);
            assert!(
                got == content[start as usize..=end as usize],
                "{len} bytes, range {start}-{end}: got {} bytes",
                got.len()
            );
        }
    }
}

/// Clause 6, where the backend advertises [`Backend::put_blob`]
/// ([`Capabilities::put_blob_sizes`](crate::storage::backend::Capabilities::put_blob_sizes)):
/// a body that ends with an error in place of its last chunk (how the engine's verifying
/// body refuses bytes that do not match) stores nothing and returns that error; a whole body
/// of the smallest size it takes is stored and reads back. A backend without the capability
/// is never asked, and has nothing to check here.
pub async fn contract_put_blob<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let Some(sizes) = b.capabilities().put_blob_sizes else {
        return;
    };
    let len = usize::try_from(sizes.min.max(2)).expect("a size in memory");
    let refused = data(len, 7);
    let digest = sha256(&refused);
    let chunks: Vec<crate::Result<bytes::Bytes>> = vec![
        Ok(bytes::Bytes::copy_from_slice(&refused[..len / 2])),
        Ok(bytes::Bytes::copy_from_slice(&refused[len / 2..len - 1])),
        Err(Error::DigestInvalid("refused by the body".into())),
    ];
    assert_err!(
        b.put_blob(&digest, len as u64, futures::stream::iter(chunks))
            .await,
        Error::DigestInvalid(_)
    );
    assert_eq!(ok!(b.blob_size(&digest).await), None, "a refused body");
    let content = data(len, 8);
    let digest = sha256(&content);
    let whole: Vec<crate::Result<bytes::Bytes>> = content
        .chunks(64 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .map(Ok)
        .collect();
    let whole = futures::stream::iter(whole);
    ok!(b.put_blob(&digest, len as u64, whole).await);
    assert_eq!(ok!(b.blob_size(&digest).await), Some(len as u64));
    assert!(
        ok!(read_blob(b, &digest, None).await) == content,
        "put_blob's bytes"
    );
}
