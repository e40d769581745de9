//! Chunked and monolithic pushes: chunk and frame sizes around the part size, the empty
//! blob, multipart copies for large uploads, request checksums, and the upload state every
//! chunk needs.

use bytes::Bytes;
use marina_distribution::Error;
use marina_distribution::storage::s3::S3Driver;
use marina_distribution::storage::{
    EngineOptions, S3ChecksumPolicy, StorageDriver, UploadHandle, UploadId,
};

use crate::env::{MIB, PART, s3_or_skip};
use crate::helpers::{
    assert_no_upload_leftovers, body, cut, data, empty, multipart_uploads, objects, push_chunked,
    read_all, repo, sha256, start_upload,
};

#[tokio::test]
async fn chunked_upload_of_mixed_chunk_sizes() {
    let env = s3_or_skip!("chunked_upload_of_mixed_chunk_sizes");
    let d = env.driver("mixed").await;
    let r = repo("s3/mixed");
    let blob = data(12 * MIB + 12_345, 1);
    push_chunked(
        &d,
        &r,
        &blob,
        &[1, MIB, 7 * MIB, 3, 100 * 1024, 2 * MIB + 7],
        64 * 1024,
    )
    .await;
    let digest = sha256(&blob);
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_eq!(d.stat(&r, &digest).await.unwrap().size, blob.len() as u64);
    // The blob lives at its content address below the prefix.
    let key = format!(
        "{}blobs/sha256/{}",
        d.backend().object_key_prefix(),
        digest.hex()
    );
    assert_eq!(objects(&d, "blobs/").await, vec![key]);
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn chunks_whose_sum_is_exactly_parts() {
    let env = s3_or_skip!("chunks_whose_sum_is_exactly_parts");
    let d = env.driver("exact").await;
    let r = repo("s3/exact");
    // Chunks of exactly one part: no staging at all, and a final part of full size.
    let blob = data(2 * PART, 2);
    push_chunked(&d, &r, &blob, &[PART], MIB).await;
    assert_eq!(read_all(&d, &r, &sha256(&blob), None).await, blob);
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn one_byte_chunks_and_frames() {
    let env = s3_or_skip!("one_byte_chunks_and_frames");
    let d = env.driver("onebyte").await;
    let r = repo("s3/onebyte");
    // 40 PATCH requests of one byte each, then one whose body crosses a part boundary in
    // one-byte frames, then more one-byte requests.
    let blob = data(40 + PART + 100 + 20, 3);
    let digest = sha256(&blob);
    let id = start_upload(&d, &r).await;
    let mut offset = 0usize;
    for i in 0..40 {
        d.put_upload_chunk(
            &r,
            &id,
            Some(offset as u64),
            Some(1),
            body(vec![blob.slice(i..i + 1)]),
        )
        .await
        .expect("one-byte chunk");
        offset += 1;
    }
    let big = blob.slice(offset..offset + PART + 100);
    let p = d
        .put_upload_chunk(&r, &id, Some(offset as u64), None, body(cut(&big, &[1])))
        .await
        .expect("chunk of one-byte frames");
    offset += PART + 100;
    assert_eq!(p.progress().offset, offset as u64);
    assert_eq!(p.backend_state().parts.len(), 1);
    assert_eq!(p.backend_state().staged_len(), 140);
    while offset < blob.len() {
        d.put_upload_chunk(
            &r,
            &id,
            Some(offset as u64),
            None,
            body(vec![blob.slice(offset..offset + 1)]),
        )
        .await
        .expect("one-byte chunk");
        offset += 1;
    }
    d.finish_upload(&r, &id, &digest, None, empty())
        .await
        .expect("finish");
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn monolithic_puts_small_and_multipart() {
    let env = s3_or_skip!("monolithic_puts_small_and_multipart");
    let d = env.driver("mono").await;
    let r = repo("s3/mono");
    // Below a part: one PutObject from memory. Above, with the length declared: one
    // streamed PutObject (`single_put_limit`); without: a multipart upload on the blob's key.
    for (len, seed, declared) in [
        (100usize, 4u64, true),
        (11 * MIB + 3, 5, true),
        (11 * MIB + 5, 6, false),
    ] {
        let blob = data(len, seed);
        let digest = sha256(&blob);
        let info = d
            .put_content(
                &r,
                &digest,
                declared.then_some(len as u64),
                body(cut(&blob, &[64 * 1024])),
            )
            .await
            .expect("put_content");
        assert_eq!(info.size, len as u64);
        assert!(info.path.starts_with("s3://"), "{}", info.path);
        assert_eq!(read_all(&d, &r, &digest, None).await, blob);
        assert_no_upload_leftovers(&d).await;
        // Pushing it again (deduplicated) works and changes nothing.
        d.put_content(&r, &digest, None, body(vec![blob.clone()]))
            .await
            .expect("put_content again");
        assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    }
}

#[tokio::test]
async fn zero_byte_blob() {
    let env = s3_or_skip!("zero_byte_blob");
    let d = env.driver("empty").await;
    let r = repo("s3/empty");
    let digest = sha256(b"");
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), Some(0), empty())
        .await
        .unwrap();
    let info = d
        .finish_upload(&r, &id, &digest, Some(0), empty())
        .await
        .unwrap();
    assert_eq!(info.size, 0);
    assert_eq!(read_all(&d, &r, &digest, None).await, Bytes::new());
    assert_no_upload_leftovers(&d).await;
    let r2 = repo("s3/empty2");
    d.put_content(&r2, &digest, Some(0), empty()).await.unwrap();
    assert_eq!(d.stat(&r2, &digest).await.unwrap().size, 0);
    assert_eq!(read_all(&d, &r2, &digest, None).await, Bytes::new());
}

#[tokio::test]
async fn multipart_copy_for_large_chunked_uploads() {
    let env = s3_or_skip!("multipart_copy_for_large_chunked_uploads");
    let config = env.config("copy");
    // Copy with UploadPartCopy above 6 MiB, in 5 MiB parts (normally above 5 GiB).
    let backend = env
        .backend(&config)
        .await
        .with_multipart_copy(6 * MIB as u64, PART as u64);
    let d = S3Driver::from_backend(backend, EngineOptions::default());
    let r = repo("s3/copy");
    for (len, seed) in [(12 * MIB + 1, 11u64), (3 * MIB, 12)] {
        let blob = data(len, seed);
        push_chunked(&d, &r, &blob, &[2 * MIB + 1], MIB).await;
        assert_eq!(read_all(&d, &r, &sha256(&blob), None).await, blob);
    }
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn request_checksums_when_supported() {
    let env = s3_or_skip!("request_checksums_when_supported");
    let mut config = env.config("crc");
    config.checksum = Some(S3ChecksumPolicy::WhenSupported);
    let d = env.driver_for(&config).await;
    let r = repo("s3/crc");
    let blob = data(11 * MIB, 13);
    push_chunked(&d, &r, &blob, &[4 * MIB], MIB).await;
    assert!(multipart_uploads(&d).await.is_empty());
    let mono = data(6 * MIB, 14);
    d.put_content(&r, &sha256(&mono), None, body(vec![mono.clone()]))
        .await
        .unwrap();
    assert_eq!(read_all(&d, &r, &sha256(&mono), None).await, mono);
    // With the length declared: one streamed PutObject, its checksum sent as a trailer.
    let streamed = data(7 * MIB, 15);
    let len = Some(streamed.len() as u64);
    d.put_content(&r, &sha256(&streamed), len, body(cut(&streamed, &[MIB])))
        .await
        .unwrap();
    assert_eq!(read_all(&d, &r, &sha256(&streamed), None).await, streamed);
    assert_eq!(read_all(&d, &r, &sha256(&blob), None).await, blob);
}

#[tokio::test]
async fn upload_state_is_needed_and_checked() {
    let env = s3_or_skip!("upload_state_is_needed_and_checked");
    let d = env.driver("state").await;
    let r = repo("s3/state");
    let id = UploadId::generate();
    let err = d
        .put_upload_chunk(&r, &id, None, None, body(vec![Bytes::from_static(b"x")]))
        .await
        .expect_err("unknown upload");
    assert!(matches!(err, Error::BlobUploadUnknown(_)), "{err:?}");
    assert!(d.chunk_min_length() == Some(PART as u64));
}
