//! Plain object operations on object names (JSON API): media downloads (whole, ranged,
//! streamed), media and multipart uploads (the latter for conditional creates), metadata,
//! deletes, listings with page tokens, and compose.
//!
//! # Retries
//!
//! The client crate retries nothing, so every request here that may be sent twice goes
//! through [`GcsBackend::retried`] (up to four attempts while GCS answers 408, 429 or 5xx,
//! the connection fails, or an attempt goes unanswered in time, see
//! [`deadline`](crate::storage::deadline); see [`error`] for the classification). That is
//! every request but the streamed media upload of a monolithic push, which `streamed_put`
//! sends again from its spill file (the requests of resumable sessions are in `session.rs`:
//! their start is retried, their chunks are resumed where the session stands, by its own
//! status query; see `docs/gcs.md`). Why sending again is safe:
//!
//! - **Reads** (media downloads, metadata, listings) change nothing. A whole-object read is
//!   sent again when its body breaks off too; a streamed read only when it cannot be opened
//!   (a cut stream is resumed by the [`Resumable`](crate::storage::layers::Resumable)
//!   layer).
//! - **Conditional writes** (`ifGenerationMatch`: creates, session records, compose of a
//!   blob) cannot overwrite what another process wrote since; if the first attempt was
//!   stored but its answer lost, the next one answers 412 and the caller sees "not written".
//!   Every caller checks what is there then: a manifest record or a session record holding
//!   its own bytes, a content-addressed blob that exists.
//! - **Unconditional writes and deletes** (links, tags, pieces, cleanup) are sent again only
//!   while the operation has not returned. A write from another process that completed
//!   between the two attempts was concurrent with this one, so either may count as the
//!   later one, as with a client's own retry of the same request (which the OCI protocol
//!   leaves to clients). Deletes by a collection happen while its condemned set stands and
//!   before it is removed, as the first attempt did, so the argument of
//!   [`lifecycle`](crate::storage::lifecycle) holds unchanged.

use std::time::Duration;

use bytes::Bytes;
use gcloud_storage::http::objects::compose::{ComposeObjectRequest, ComposingTargets};
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::{ListObjectsRequest, ListObjectsResponse};
use gcloud_storage::http::objects::upload::{Media, UploadObjectRequest, UploadType};
use gcloud_storage::http::objects::{Object, SourceObjects};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::GcsBackend;
use super::error::{self, translate};
use super::reader::GcsReader;
use crate::error::Result;
use crate::oci::ByteRange;
use crate::storage::deadline::RequestTimeout;
use crate::storage::retry;

/// Content type of every object the driver writes.
pub(crate) const CONTENT_TYPE: &str = "application/octet-stream";

/// Most names one list request returns (GCS's maximum page).
const MAX_PAGE: usize = 1000;

/// Most source objects of one compose request (GCS's limit).
pub(crate) const MAX_COMPOSE: usize = 32;

/// Characters left as they are in a path segment of a JSON API URL.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl GcsBackend {
    /// [`retry::retried`] for this driver: sends a request of kind `request` again while it
    /// fails transiently, each attempt failing (transiently) when unanswered after `limit`.
    pub(super) async fn retried<T, Fut>(
        &self,
        request: &'static str,
        limit: Duration,
        mut send: impl FnMut() -> Fut,
    ) -> Result<T>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        retry::retried(error::DRIVER, request, &self.retries, || {
            RequestTimeout::bound(limit, error::DRIVER, request, send())
        })
        .await
    }

    fn upload_request(&self, if_generation_match: Option<i64>) -> UploadObjectRequest {
        UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match,
            ..UploadObjectRequest::default()
        }
    }

    /// Sends a media download of `object` (or of a range of it) once; `None` if it does not
    /// exist.
    async fn download_once(
        &self,
        object: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<reqwest_gcs::Response>> {
        let url = format!(
            "{}/b/{}/o/{}?alt=media",
            self.conn.api,
            utf8_percent_encode(&self.bucket, SEGMENT),
            utf8_percent_encode(object, SEGMENT)
        );
        let mut request = self.conn.http.get(url);
        if let Some(r) = range {
            request = request.header("Range", format!("bytes={}-{}", r.start, r.end));
        }
        if let Some(tokens) = &self.conn.tokens {
            let token = tokens.token().await.map_err(|e| {
                translate(
                    "media download",
                    object,
                    gcloud_storage::http::Error::TokenSource(e),
                )
            })?;
            request = request.header("Authorization", token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| error::http("media download", object, e))?;
        if response.status().as_u16() == 404 {
            return Ok(None);
        }
        response
            .error_for_status()
            .map(Some)
            .map_err(|e| error::http("media download", object, e))
    }

    /// Reads a whole (small) object; `None` if it does not exist. Sent again when it fails
    /// transiently, its body included (these objects are small: links, tags, manifest
    /// records, referrer entries, session records).
    pub(crate) async fn get_bytes(&self, object: &str) -> Result<Option<Bytes>> {
        Ok(self
            .get_bytes_with_generation(object)
            .await?
            .map(|(bytes, _)| bytes))
    }

    /// Reads a whole (small) object with its generation (the `x-goog-generation` header of
    /// the download, when the server sends it); `None` if it does not exist.
    pub(crate) async fn get_bytes_with_generation(
        &self,
        object: &str,
    ) -> Result<Option<(Bytes, Option<i64>)>> {
        let timeout = self.request_timeout;
        // Each attempt's headers are bounded by the timeout, its body by its own length.
        retry::retried(
            error::DRIVER,
            "media download",
            &self.retries,
            || async move {
                let opened = self.download_once(object, None);
                let opened = RequestTimeout::bound(
                    timeout.answer(),
                    error::DRIVER,
                    "media download",
                    opened,
                );
                let Some(response) = opened.await? else {
                    return Ok(None);
                };
                let generation = response
                    .headers()
                    .get("x-goog-generation")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let limit = timeout.with_body(response.content_length().unwrap_or(0));
                let bytes = RequestTimeout::bound(limit, error::DRIVER, "media download", async {
                    response
                        .bytes()
                        .await
                        .map_err(|e| error::http("media download", object, e))
                });
                Ok(Some((bytes.await?, generation)))
            },
        )
        .await
    }

    /// Streams an object or a range of it; `None` if it does not exist. Opening it is sent
    /// again when it fails transiently; the stream itself is not.
    pub(crate) async fn get_stream(
        &self,
        object: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<GcsReader>> {
        let response = self
            .retried("media download", self.request_timeout.answer(), || {
                self.download_once(object, range)
            })
            .await?;
        Ok(response.map(|response| {
            GcsReader::new(
                response,
                object.to_owned(),
                self.request_timeout.stall_watch(),
            )
        }))
    }

    /// Creates or replaces an object with one media upload (atomic: readers see the old or
    /// the new object, never a mix), sent again when it fails transiently.
    pub(crate) async fn put_bytes(&self, object: &str, body: Bytes) -> Result<()> {
        let len = body.len() as u64;
        self.retried("media upload", self.request_timeout.with_body(len), || {
            self.upload_media(object, body.clone(), len, None)
        })
        .await
        .map(drop)
    }

    /// Writes an object of `len` bytes from `body` with one media upload, which GCS carries
    /// out only once all `len` bytes arrived (a body that fails or ends short stores
    /// nothing). With `if_generation_match` it is conditional (`0`: only if the object does
    /// not exist; fake-gcs-server ignores the condition here): `false`, nothing written, when
    /// the condition does not hold (412). Sent once: a streamed body cannot be sent again.
    pub(crate) async fn upload_media(
        &self,
        object: &str,
        body: impl Into<reqwest_gcs::Body>,
        len: u64,
        if_generation_match: Option<i64>,
    ) -> Result<bool> {
        let mut media = Media::new(object.to_owned());
        media.content_type = CONTENT_TYPE.into();
        media.content_length = Some(len);
        let request = self.upload_request(if_generation_match);
        match self
            .conn
            .client
            .upload_object(&request, body, &UploadType::Simple(media))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if error::is_precondition_failed(&e) => Ok(false),
            Err(e) => Err(translate("media upload", object, e)),
        }
    }

    /// Creates an object only if it does not exist (`ifGenerationMatch=0`, one multipart
    /// upload); `false` if it already existed (and was left as it is).
    pub(crate) async fn create_once(&self, object: &str, body: Bytes) -> Result<bool> {
        self.put_bytes_if_generation(object, body, 0).await
    }

    /// Writes an object only if it is at `generation` (`ifGenerationMatch`; `0`: only if it
    /// does not exist) with one multipart upload (atomic, like a media upload; fake-gcs-server
    /// honours the precondition on these only): `false`, nothing written, when it is not (412).
    /// Sent again when it fails transiently: `false` may then also mean that the first
    /// attempt was stored (see the module docs).
    pub(crate) async fn put_bytes_if_generation(
        &self,
        object: &str,
        body: Bytes,
        generation: i64,
    ) -> Result<bool> {
        let request = self.upload_request(Some(generation));
        let upload = UploadType::Multipart(Box::new(Object {
            name: object.to_owned(),
            content_type: Some(CONTENT_TYPE.to_owned()),
            ..Object::default()
        }));
        let limit = self.request_timeout.with_body(body.len() as u64);
        self.retried("multipart upload", limit, || async {
            match self
                .conn
                .client
                .upload_object(&request, body.clone(), &upload)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if error::is_precondition_failed(&e) => Ok(false),
                Err(e) => Err(translate("multipart upload", object, e)),
            }
        })
        .await
    }

    /// Deletes an object; succeeds if it does not exist.
    pub(crate) async fn delete(&self, object: &str) -> Result<()> {
        self.delete_matching(object, None).await.map(|_| ())
    }

    /// Deletes an object if it is still at `generation`: `Ok(false)`, nothing deleted, when
    /// it was written again (412) or is gone (404).
    pub(crate) async fn delete_if_generation(&self, object: &str, generation: i64) -> Result<bool> {
        self.delete_matching(object, Some(generation)).await
    }

    /// Deletes an object, at `generation` when one is given: `Ok(false)` when it is gone
    /// or (with a generation) was written again.
    async fn delete_matching(&self, object: &str, generation: Option<i64>) -> Result<bool> {
        let request = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: object.to_owned(),
            if_generation_match: generation,
            ..DeleteObjectRequest::default()
        };
        // Never abandoned for taking long (see `deadline`): only a failed attempt is sent
        // again.
        retry::retried(error::DRIVER, "delete", &self.retries, || async {
            match self.conn.client.delete_object(&request).await {
                Ok(()) => Ok(true),
                Err(e) if error::is_precondition_failed(&e) || error::is_not_found(&e) => Ok(false),
                Err(e) => Err(translate("delete", object, e)),
            }
        })
        .await
    }

    /// Size of an object from its metadata; `None` if it does not exist.
    pub(crate) async fn size(&self, object: &str) -> Result<Option<u64>> {
        Ok(self
            .metadata(object)
            .await?
            .map(|o| u64::try_from(o.size).unwrap_or(0)))
    }

    /// When an object was last written, from its metadata; `None` if it does not exist.
    pub(crate) async fn updated(&self, object: &str) -> Result<Option<std::time::SystemTime>> {
        Ok(self.metadata(object).await?.as_ref().map(last_written))
    }

    /// An object's metadata; `None` if it does not exist.
    async fn metadata(&self, object: &str) -> Result<Option<Object>> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: object.to_owned(),
            ..GetObjectRequest::default()
        };
        self.retried("object metadata", self.request_timeout.answer(), || async {
            match self.conn.client.get_object(&request).await {
                Ok(o) => Ok(Some(o)),
                Err(e) if error::is_not_found(&e) => Ok(None),
                Err(e) => Err(translate("object metadata", object, e)),
            }
        })
        .await
    }

    pub(super) async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        start_offset: Option<String>,
        page_token: Option<String>,
        max: usize,
    ) -> Result<ListObjectsResponse> {
        let request = ListObjectsRequest {
            bucket: self.bucket.clone(),
            prefix: Some(prefix.to_owned()),
            delimiter: delimited.then(|| "/".to_owned()),
            start_offset,
            page_token,
            max_results: Some(max.clamp(1, MAX_PAGE) as i32),
            ..ListObjectsRequest::default()
        };
        self.retried("list", self.request_timeout.answer(), || async {
            self.conn
                .client
                .list_objects(&request)
                .await
                .map_err(|e| translate("list", prefix, e))
        })
        .await
    }

    /// Names (after `prefix`, which ends in `/`) of the objects directly below `prefix`,
    /// ascending, strictly after `start_after`, at most `limit`. The delimiter `/` keeps
    /// deeper objects out (they come back as prefixes), `startOffset` starts the listing at
    /// `start_after` and page tokens continue it, so a page costs no scan of earlier names.
    pub(crate) async fn list_names(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let limit = limit.unwrap_or(usize::MAX);
        let start_offset = start_after.map(|a| format!("{prefix}{a}"));
        let mut names = Vec::new();
        let mut token = None;
        while names.len() < limit {
            // One more than needed: `startOffset` is inclusive, so `start_after` itself may
            // come back first.
            let want = (limit - names.len()).saturating_add(1);
            let page = self
                .list_page(prefix, true, start_offset.clone(), token.take(), want)
                .await?;
            for object in page.items.unwrap_or_default() {
                let Some(name) = object.name.strip_prefix(prefix) else {
                    continue;
                };
                if name.is_empty()
                    || name.contains('/')
                    || start_after.is_some_and(|a| name <= a)
                    || names.len() >= limit
                {
                    continue;
                }
                names.push(name.to_owned());
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(names)
    }

    /// Every object name below `prefix` (any depth).
    pub(crate) async fn list_below(&self, prefix: &str) -> Result<Vec<String>> {
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .list_page(prefix, false, None, token.take(), MAX_PAGE)
                .await?;
            objects.extend(page.items.unwrap_or_default().into_iter().map(|o| o.name));
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// Checks that the bucket exists with one list request (the permission the driver needs
    /// anyway): a missing bucket is a configuration error, not a store of absent objects.
    pub(crate) async fn check_bucket(&self) -> Result<()> {
        let request = ListObjectsRequest {
            bucket: self.bucket.clone(),
            prefix: Some(self.names.prefix().to_owned()),
            max_results: Some(1),
            ..ListObjectsRequest::default()
        };
        self.retried("list", self.request_timeout.answer(), || async {
            match self.conn.client.list_objects(&request).await {
                Ok(_) => Ok(()),
                Err(e) if error::is_not_found(&e) => Err(crate::error::Error::Config {
                    field: "gcs.bucket",
                    message: format!("bucket {:?} does not exist", self.bucket),
                }),
                Err(e) => Err(translate("list", self.names.prefix(), e)),
            }
        })
        .await
    }

    /// Whether any object exists below `prefix`.
    pub(crate) async fn any_below(&self, prefix: &str) -> Result<bool> {
        let page = self.list_page(prefix, false, None, None, 1).await?;
        Ok(page.items.is_some_and(|items| !items.is_empty()))
    }

    /// Composes `sources` (at most [`MAX_COMPOSE`], in order) into `destination`, replacing
    /// it, or with `once` only if it does not exist: `false` then if it already existed (or
    /// a first attempt whose answer was lost created it; see the module docs).
    pub(crate) async fn compose(
        &self,
        sources: &[String],
        destination: &str,
        once: bool,
    ) -> Result<bool> {
        debug_assert!(!sources.is_empty() && sources.len() <= MAX_COMPOSE);
        let request = ComposeObjectRequest {
            bucket: self.bucket.clone(),
            destination_object: destination.to_owned(),
            composing_targets: ComposingTargets {
                destination: Some(Object {
                    content_type: Some(CONTENT_TYPE.to_owned()),
                    ..Object::default()
                }),
                source_objects: sources
                    .iter()
                    .map(|name| SourceObjects {
                        name: name.clone(),
                        ..SourceObjects::default()
                    })
                    .collect(),
            },
            if_generation_match: once.then_some(0),
            ..ComposeObjectRequest::default()
        };
        // GCS assembles the sources before it answers: their total size is not known here,
        // so compose gets the time of one part's body on top of the answer.
        let limit = self.request_timeout.with_body(self.part_size);
        self.retried("compose", limit, || async {
            match self.conn.client.compose_object(&request).await {
                Ok(_) => Ok(true),
                Err(e) if once && error::is_precondition_failed(&e) => Ok(false),
                Err(e) => Err(translate("compose", destination, e)),
            }
        })
        .await
    }
}

/// When `object` was last written: its `updated` time (its creation's when absent).
pub(crate) fn last_written(object: &Object) -> std::time::SystemTime {
    object.updated.or(object.time_created).map_or(
        std::time::SystemTime::UNIX_EPOCH,
        std::time::SystemTime::from,
    )
}
