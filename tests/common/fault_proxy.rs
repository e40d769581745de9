//! A fault-injecting HTTP/1.1 proxy to put in front of the S3 or GCS test server: the faults
//! a real store produces under load, on demand, on loopback.
//!
//! Every request is read whole, then, with probability `rate`, meets one of four faults
//! chosen evenly (or goes through untouched):
//!
//! - `503 SlowDown` or `500 InternalError`, as S3 sends them (an XML error document), without
//!   reaching the server;
//! - the connection closed *before the response*: after the request reached the server (so
//!   it may have taken effect: a retried write must be idempotent) or before, at random;
//! - the connection closed *in the middle of the response*: after half of its body (a
//!   `GetObject` cut midway), or half of its head when it has no body.
//!
//! The rest is relayed as is, with keep-alive. Each decision uses a seeded generator, so a
//! run is repeatable for a given order of requests. A test can also aim one fault at the
//! next request of a kind ([`FaultProxy::fault_next`]), including two that are never drawn
//! at random: a store that stops answering, before the response or in the middle of its
//! body, and holds the connection open (for a minute at most, or until the client closes it).
//!
//! It answers the status queries of GCS resumable sessions itself, as GCS would, since the
//! GCS test server finalizes the object instead ([`sessions`]).
//!
//! [`FaultProxy::start_tls`] serves the same over TLS, as a store's HTTPS endpoint, with a
//! certificate from a test CA; every proxy keeps what it saw of each request's signed payload
//! ([`FaultProxy::seen`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod http1;
mod sessions;

use http1::{Request, Socket, forward, read_request, write_error};

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `503 SlowDown`.
    SlowDown,
    /// `500 InternalError`.
    Internal,
    /// Connection closed before any byte of the response.
    ResetBeforeResponse,
    /// Connection closed after part of the response.
    ResetMidResponse,
    /// No response at all; the connection stays open (aimed only).
    StallBeforeResponse,
    /// Half the response, then nothing; the connection stays open (aimed only).
    StallMidResponse,
}

impl Fault {
    /// Every kind drawn at random, in the order of [`FaultCounts::injected`].
    pub const ALL: [Self; 4] = [
        Self::SlowDown,
        Self::Internal,
        Self::ResetBeforeResponse,
        Self::ResetMidResponse,
    ];

    /// The stalls, which are only ever aimed.
    pub const STALLS: [Self; 2] = [Self::StallBeforeResponse, Self::StallMidResponse];
}

/// How long a stalled connection is held at most.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Less than an operation takes when only the proxy's end of a [stall](Fault::STALLS) ends
/// it: an operation that met a stall and returned sooner was ended by the driver's own
/// request timeout.
pub const STALL_ENDED_BY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How many requests the proxy saw and how many of each fault it injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests received.
    pub requests: u64,
    /// Per fault, in the order of [`Fault`]'s variants.
    pub injected: [u64; 6],
}

impl FaultCounts {
    /// Faults injected in all.
    pub fn faults(&self) -> u64 {
        self.injected.iter().sum()
    }
}

struct State {
    upstream: String,
    client: reqwest::Client,
    /// Fault probability in millionths.
    rate_ppm: AtomicU64,
    rng: AtomicU64,
    requests: AtomicU64,
    injected: [AtomicU64; 6],
    /// A fault for the next request that matches, beside the random ones.
    targeted: std::sync::Mutex<Option<Targeted>>,
    /// A request (method, target) whose repeats are answered `404 NoSuchUpload`.
    forgotten: std::sync::Mutex<Option<(String, String)>>,
    /// Every request received, in order.
    seen: std::sync::Mutex<Vec<SeenRequest>>,
    /// What each GCS resumable session holds, for its status queries.
    sessions: sessions::Sessions,
    /// Serving TLS: the `http://` and `https://` forms of the proxy's own URL, for the
    /// `Location`s the plain-HTTP server behind it writes with its client's `Host`
    /// (fake-gcs-server's resumable sessions).
    relocate: Option<(String, String)>,
}

/// What the proxy keeps of a request it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `PUT`, `GET`, ...
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Its `x-amz-content-sha256` header (SigV4's payload hash, or `UNSIGNED-PAYLOAD` and
    /// the streaming variants), if any.
    pub payload_hash: Option<String>,
    /// Bytes of body.
    pub body_len: usize,
}

/// A fault set for the next request with `method` whose target contains `target_part`.
struct Targeted {
    method: &'static str,
    target_part: &'static str,
    fault: Fault,
    /// Matching requests to let through first.
    skip: u32,
    /// Whether repeats of the faulted request then get `404 NoSuchUpload`.
    forget: bool,
}

impl Targeted {
    /// Whether `request` is the one to fault: the `skip + 1`th that matches.
    fn takes(&mut self, request: &Request) -> bool {
        if request.method != self.method || !request.target.contains(self.target_part) {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }
}

impl State {
    /// Sends the request on to the server (see [`forward`]), noting what a GCS session's
    /// answer says it holds.
    async fn relay(&self, request: &Request) -> Option<(Vec<u8>, bytes::Bytes)> {
        let (head, body) = forward(
            &self.client,
            &self.upstream,
            request,
            self.relocate.as_ref(),
        )
        .await?;
        self.sessions.note(request, &head, &body);
        Some((head, body))
    }

    /// A uniform number in `0..1_000_000` (splitmix64 over an atomic counter).
    fn draw(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 1_000_000
    }

    fn decide(&self, request: &Request) -> Option<Fault> {
        let mut targeted = self.targeted.lock().expect("targeted fault");
        if let Some(t) = targeted.as_mut()
            && t.takes(request)
        {
            let fault = t.fault;
            if t.forget {
                *self.forgotten.lock().expect("forgotten upload") =
                    Some((request.method.clone(), request.target.clone()));
            }
            *targeted = None;
            drop(targeted);
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.injected[fault as usize].fetch_add(1, Ordering::Relaxed);
            return Some(fault);
        }
        drop(targeted);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let rate = self.rate_ppm.load(Ordering::Relaxed);
        if rate == 0 || self.draw() >= rate {
            return None;
        }
        let i = (self.draw() % 4) as usize;
        self.injected[i].fetch_add(1, Ordering::Relaxed);
        Some(Fault::ALL[i])
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) faulting `rate` (0 to 1) of the
    /// requests, with decisions drawn from `seed`.
    pub async fn start(upstream: &str, rate: f64, seed: u64) -> Self {
        Self::listen(upstream, rate, seed, None).await
    }

    /// [`Self::start`] serving HTTPS with `cert_pem`/`key_pem` (a server certificate for
    /// `127.0.0.1`, as [`super::auth::pki`] makes): `url` is then `https://127.0.0.1:PORT`.
    pub async fn start_tls(
        upstream: &str,
        rate: f64,
        seed: u64,
        cert_pem: &std::path::Path,
        key_pem: &std::path::Path,
    ) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert_pem)
            .expect("certificate file")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_file(key_pem).expect("private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::listen(upstream, rate, seed, Some(acceptor)).await
    }

    async fn listen(
        upstream: &str,
        rate: f64,
        seed: u64,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().expect("addr"));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            rate_ppm: AtomicU64::new(0),
            rng: AtomicU64::new(seed),
            requests: AtomicU64::new(0),
            injected: Default::default(),
            targeted: std::sync::Mutex::new(None),
            forgotten: std::sync::Mutex::new(None),
            seen: std::sync::Mutex::new(Vec::new()),
            sessions: Default::default(),
            relocate: tls
                .is_some()
                .then(|| (url.replacen("https", "http", 1), url.clone())),
        });
        let proxy_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                let state = proxy_state.clone();
                match &tls {
                    None => {
                        tokio::spawn(serve(socket, state));
                    }
                    Some(acceptor) => {
                        let handshake = acceptor.accept(socket);
                        tokio::spawn(async move {
                            if let Ok(socket) = handshake.await {
                                serve(socket, state).await;
                            }
                        });
                    }
                }
            }
        });
        let proxy = Self { url, state, task };
        proxy.set_rate(rate);
        proxy
    }

    /// Changes the fault rate (0 to 1), e.g. to 0 to read back what was stored.
    pub fn set_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u64;
        self.state.rate_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Injects `fault` into the next request with `method` whose target (path and query)
    /// contains `target_part`, e.g. `("POST", "uploadId=")` for the next
    /// `CompleteMultipartUpload`; the random faults go on beside it.
    pub fn fault_next(&self, method: &'static str, target_part: &'static str, fault: Fault) {
        self.fault_nth(method, target_part, 1, fault);
    }

    /// [`Self::fault_next`] for the `n`th such request from now (`n` ≥ 1): the ones before
    /// it go through.
    pub fn fault_nth(&self, method: &'static str, target_part: &'static str, n: u32, fault: Fault) {
        *self.state.targeted.lock().expect("targeted fault") = Some(Targeted {
            method,
            target_part,
            fault,
            skip: n.saturating_sub(1),
            forget: false,
        });
    }

    /// Cuts the answer of the next `CompleteMultipartUpload` midway, after the server carried
    /// it out, and answers its repeats `404 NoSuchUpload`, as Garage does once it completed
    /// an upload (the S3 test server, moto, completes a repeat again).
    pub fn cut_next_completion(&self) {
        *self.state.targeted.lock().expect("targeted fault") = Some(Targeted {
            method: "POST",
            target_part: "uploadId=",
            fault: Fault::ResetMidResponse,
            skip: 0,
            forget: true,
        });
    }

    /// Whether the fault set by [`Self::fault_next`] was injected.
    pub fn targeted_fault_injected(&self) -> bool {
        self.state
            .targeted
            .lock()
            .expect("targeted fault")
            .is_none()
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().expect("seen requests").clone()
    }

    /// The counts so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            requests: self.state.requests.load(Ordering::Relaxed),
            injected: std::array::from_fn(|i| self.state.injected[i].load(Ordering::Relaxed)),
        }
    }
}

async fn serve(mut socket: impl Socket, state: Arc<State>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(request) = read_request(&mut socket, &mut buf).await {
        state.seen.lock().expect("seen requests").push(SeenRequest {
            method: request.method.clone(),
            target: request.target.clone(),
            payload_hash: request
                .headers
                .iter()
                .find(|(name, _)| name == "x-amz-content-sha256")
                .map(|(_, value)| value.clone()),
            body_len: request.body.len(),
        });
        if let Some(answer) = state.sessions.answer_query(&request) {
            if socket.write_all(&answer).await.is_err() {
                return;
            }
            continue;
        }
        let forgotten = matches!(
            state.forgotten.lock().expect("forgotten upload").as_ref(),
            Some((method, target)) if *method == request.method && *target == request.target
        );
        if forgotten {
            let message = "The specified multipart upload does not exist.";
            if write_error(&mut socket, 404, "NoSuchUpload", message).await {
                continue;
            }
            return;
        }
        let fault = state.decide(&request);
        let keep_open = match fault {
            Some(Fault::SlowDown) => {
                write_error(
                    &mut socket,
                    503,
                    "SlowDown",
                    "Please reduce your request rate.",
                )
                .await
            }
            Some(Fault::Internal) => {
                write_error(
                    &mut socket,
                    500,
                    "InternalError",
                    "We encountered an internal error.",
                )
                .await
            }
            Some(Fault::ResetBeforeResponse) => {
                // Half the time the server has taken the request in already.
                if state.draw().is_multiple_of(2) {
                    let _ = state.relay(&request).await;
                }
                false
            }
            Some(Fault::ResetMidResponse) => {
                write_half_response(&state, &request, &mut socket).await;
                false
            }
            Some(Fault::StallBeforeResponse) => {
                if state.draw().is_multiple_of(2) {
                    let _ = state.relay(&request).await;
                }
                hold(&mut socket).await;
                false
            }
            Some(Fault::StallMidResponse) => {
                write_half_response(&state, &request, &mut socket).await;
                hold(&mut socket).await;
                false
            }
            None => match state.relay(&request).await {
                Some((head, body)) => {
                    socket.write_all(&head).await.is_ok() && socket.write_all(&body).await.is_ok()
                }
                None => write_error(&mut socket, 502, "BadGateway", "upstream failed").await,
            },
        };
        if !keep_open {
            return;
        }
    }
}

/// Forwards the request and writes half its response: the head and half the body, or half
/// the head when there is no body.
async fn write_half_response(state: &State, request: &Request, socket: &mut impl Socket) {
    if let Some((head, body)) = state.relay(request).await {
        let cut = if body.is_empty() {
            &head[..head.len() / 2]
        } else {
            let _ = socket.write_all(&head).await;
            &body[..body.len() / 2]
        };
        let _ = socket.write_all(cut).await;
        let _ = socket.flush().await;
    }
}

/// Keeps a connection open without answering until the client closes it, or [`STALL`].
async fn hold(socket: &mut impl Socket) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(STALL, async {
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A GCS driver (as [`super::gcs::driver`] makes it) on `config` whose requests go through a
/// new proxy drawing from `seed`: no faults until one is aimed or a rate is set.
#[cfg(feature = "gcs")]
pub async fn gcs_driver_behind_proxy(
    config: &marina_distribution::storage::GcsConfig,
    seed: u64,
) -> (FaultProxy, marina_distribution::storage::gcs::GcsDriver) {
    let proxy = FaultProxy::start(config.endpoint(), 0.0, seed).await;
    let mut faulted = config.clone();
    faulted.endpoint = Some(proxy.url.clone());
    let driver = super::gcs::driver(&faulted).await;
    (proxy, driver)
}
