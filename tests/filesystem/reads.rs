//! Blob reads: streamed in bounded chunks, and ranged.

use bytes::Bytes;
use futures::StreamExt;
use marina_distribution::StorageDriver;
use marina_distribution::storage::filesystem::READ_CHUNK;

use crate::helpers::{body, open, pattern, repo, sha256};

#[tokio::test]
async fn reads_stream_in_bounded_chunks_and_honour_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("ranges");
    let data = pattern(3 * READ_CHUNK + 1234, 5);
    let digest = sha256(&data);
    driver
        .put_content(&r, &digest, Some(data.len() as u64), body(&data, 1 << 20))
        .await
        .unwrap();

    let read = driver.get_content(&r, &digest, None).await.unwrap();
    let chunks: Vec<Bytes> = read.stream.map(Result::unwrap).collect().await;
    assert!(
        chunks.len() >= 4,
        "a {} byte blob came in {} chunks",
        data.len(),
        chunks.len()
    );
    assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
    assert_eq!(chunks.concat(), data);

    // A range across chunk boundaries, an open range and a suffix range.
    for (header, expected) in [
        (
            format!("bytes={}-{}", READ_CHUNK - 5, 2 * READ_CHUNK + 7),
            &data[READ_CHUNK - 5..=2 * READ_CHUNK + 7],
        ),
        (
            format!("bytes={}-", data.len() - 10),
            &data[data.len() - 10..],
        ),
        ("bytes=-3".to_owned(), &data[data.len() - 3..]),
        ("bytes=0-0".to_owned(), &data[..1]),
    ] {
        let range = marina_distribution::oci::RangeRequest::parse_header(&header).unwrap();
        let read = driver.get_content(&r, &digest, Some(range)).await.unwrap();
        let got: Vec<Bytes> = read.stream.map(Result::unwrap).collect().await;
        assert_eq!(got.concat(), expected, "{header}");
    }
}
