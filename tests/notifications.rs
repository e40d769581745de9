//! Notifications: Distribution's event envelope, POSTed to HTTP sinks on 127.0.0.1, for
//! pushes, pulls, mounts and deletes; endpoint filters; retries; a hung endpoint that never
//! slows a request.

mod common;

use std::time::{Duration, Instant};

use common::observe::{self, Sink, SinkMode, endpoint, value};
use common::{OCI_MANIFEST, header};
use marina_distribution::StorageConfig;

const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

#[tokio::test]
async fn pushes_pulls_mounts_and_deletes_are_reported_as_distribution_does() {
    let sink = Sink::start(SinkMode::Accept).await;
    // A configured `Authorization` header wins over credentials in the URL (as Go's HTTP
    // client, and so Distribution, has it).
    let config = endpoint(
        "sink",
        &sink.url.replacen("http://", "http://hookuser:hookpass@", 1),
        r#"headers = { Authorization = "Bearer t0ken", X-Multi = ["one", "two"] }"#,
    );
    let reg = observe::start(StorageConfig::inmemory(), None, Some(config)).await;
    let s = &reg.server;

    // Two blob pushes (config, layer), then the manifest by tag: three push events.
    let image = s.push_image("demo/app", "v1", 3).await;
    // A pull by tag, answered with the manifest.
    let pull = s
        .client
        .get(s.url("/v2/demo/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .header("user-agent", "events-test/1.0")
        .header("x-request-id", "pull-42")
        .send()
        .await
        .unwrap();
    assert_eq!(pull.status(), 200);
    assert_eq!(header(&pull, "x-request-id"), "pull-42");
    // A ranged blob pull: the event carries the whole blob's size.
    let ranged = s
        .client
        .get(s.url(&format!("/v2/demo/app/blobs/{}", image.layer_digest)))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    // A mount into another repository, then deletes.
    let mount = s
        .client
        .post(s.url(&format!(
            "/v2/demo/copy/blobs/uploads/?mount={}&from=demo/app",
            image.layer_digest
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(mount.status(), 201);
    for path in [
        format!("/v2/demo/app/manifests/{}", image.digest),
        format!("/v2/demo/copy/blobs/{}", image.layer_digest),
    ] {
        let resp = s.client.delete(s.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 202, "DELETE {path}");
    }
    // Failures report nothing.
    let unknown = s
        .client
        .get(s.url("/v2/demo/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let events = sink.events(8).await;
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"]["repository"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("push", "demo/app"),
        ("push", "demo/app"),
        ("push", "demo/app"),
        ("pull", "demo/app"),
        ("pull", "demo/app"),
        ("mount", "demo/copy"),
        ("delete", "demo/app"),
        ("delete", "demo/copy"),
    ];
    assert_eq!(
        summary,
        expected.map(|(a, r)| (a.to_owned(), r.to_owned())),
        "{events:#?}"
    );

    let layer_push = &events[1]["target"];
    assert_eq!(layer_push["mediaType"], "application/octet-stream");
    assert_eq!(layer_push["digest"], image.layer_digest.as_str());
    assert_eq!(layer_push["size"], image.layer.len());
    assert_eq!(layer_push["length"], image.layer.len());
    assert_eq!(
        layer_push["url"],
        s.url(&format!("/v2/demo/app/blobs/{}", image.layer_digest))
    );

    let manifest_push = &events[2];
    assert_eq!(manifest_push["target"]["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest_push["target"]["digest"], image.digest.as_str());
    assert_eq!(manifest_push["target"]["size"], image.manifest.len());
    assert_eq!(manifest_push["target"]["tag"], "v1");
    assert_eq!(
        manifest_push["target"]["url"],
        s.url(&format!("/v2/demo/app/manifests/{}", image.digest))
    );
    assert_eq!(manifest_push["request"]["method"], "PUT");
    assert_eq!(manifest_push["request"]["host"], s.addr.as_str());
    assert!(
        manifest_push["request"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(manifest_push["source"]["addr"], "test-node:5000");
    assert!(
        manifest_push["source"]["instanceID"]
            .as_str()
            .unwrap()
            .len()
            == 36
    );
    assert_eq!(manifest_push["actor"], serde_json::json!({}));

    let manifest_pull = &events[3];
    assert_eq!(manifest_pull["target"]["tag"], "v1");
    assert_eq!(manifest_pull["target"]["digest"], image.digest.as_str());
    assert_eq!(manifest_pull["target"]["size"], image.manifest.len());
    assert_eq!(manifest_pull["request"]["id"], "pull-42");
    assert_eq!(manifest_pull["request"]["useragent"], "events-test/1.0");
    assert_eq!(manifest_pull["request"]["method"], "GET");

    assert_eq!(events[4]["target"]["size"], image.layer.len());
    assert_eq!(events[5]["target"]["fromRepository"], "demo/app");
    assert_eq!(events[5]["target"]["size"], image.layer.len());
    // Deletes carry the digest and the repository only.
    assert_eq!(
        events[6]["target"],
        serde_json::json!({"digest": image.digest, "repository": "demo/app"})
    );
    assert_eq!(events[7]["target"]["digest"], image.layer_digest.as_str());

    let ids: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    assert!(events[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    for delivery in sink.deliveries() {
        assert_eq!(delivery.headers["content-type"], EVENTS_MEDIA_TYPE);
        assert_eq!(delivery.headers["authorization"], "Bearer t0ken");
        // A header given a list is sent once per value, in order.
        let multi: Vec<_> = delivery.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "two"]);
    }
}

#[tokio::test]
async fn an_endpoint_gets_only_what_it_does_not_ignore() {
    let sink = Sink::start(SinkMode::Accept).await;
    // Credentials in the URL, without an `Authorization` header: sent as Basic.
    let config = endpoint(
        "changes",
        &sink.url.replacen("http://", "http://hookuser:hookpass@", 1),
        r#"ignore = { actions = ["pull"] }"#,
    );
    let reg = observe::start(StorageConfig::inmemory(), None, Some(config)).await;
    let s = &reg.server;
    let image = s.push_image("demo/app", "v1", 4).await;
    let resp = s
        .client
        .get(s.url("/v2/demo/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tag_delete = s
        .client
        .delete(s.url("/v2/demo/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(tag_delete.status(), 202);
    let events = sink.events(4).await;
    let actions = actions(&events);
    assert_eq!(actions, ["push", "push", "push", "delete"]);
    // A tag delete names the tag, not a digest.
    assert_eq!(
        events[3]["target"],
        serde_json::json!({"repository": "demo/app", "tag": "v1"})
    );
    assert_ne!(image.digest, "");
    for delivery in sink.deliveries() {
        // base64("hookuser:hookpass")
        assert_eq!(
            delivery.headers["authorization"],
            "Basic aG9va3VzZXI6aG9va3Bhc3M="
        );
    }
}

#[tokio::test]
async fn a_failing_endpoint_gets_every_event_once_it_recovers() {
    let sink = Sink::start(SinkMode::FailFirst(3)).await;
    let config = endpoint("flaky", &sink.url, "threshold = 2\nbackoff = \"20ms\"");
    let reg = observe::start(StorageConfig::inmemory(), None, Some(config)).await;
    let image = reg.server.push_image("demo/app", "v1", 5).await;
    let events = sink.events(3).await;
    let digests: Vec<&str> = events
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        [
            image.config_digest.as_str(),
            image.layer_digest.as_str(),
            image.digest.as_str()
        ]
    );
    let metrics = reg.scrape().await;
    assert_eq!(
        value(
            &metrics,
            r#"marina_notification_deliveries_total{endpoint="flaky",outcome="failure"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"marina_notification_events_total{endpoint="flaky",outcome="delivered"}"#
        ),
        3.0
    );
}

#[tokio::test]
async fn a_hung_endpoint_never_slows_a_request_and_a_full_queue_drops() {
    let sink = Sink::start(SinkMode::Hang).await;
    // One event per envelope: the sender holds exactly one while the endpoint hangs.
    let config = endpoint(
        "hung",
        &sink.url,
        "timeout = \"60s\"\nqueue_size = 2\nmax_batch = 1",
    );
    let reg = observe::start(StorageConfig::inmemory(), None, Some(config)).await;
    let s = &reg.server;
    s.push_image("demo/app", "v1", 6).await;
    let started = Instant::now();
    for _ in 0..50 {
        let resp = s
            .client
            .head(s.url("/v2/demo/app/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // 50 requests on loopback take milliseconds; waiting on the endpoint would take minutes.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let metrics = reg.scrape().await;
    let series = |outcome: &str| {
        value(
            &metrics,
            &format!(r#"marina_notification_events_total{{endpoint="hung",outcome="{outcome}"}}"#),
        )
    };
    // 53 events: the sender holds the first, the queue holds 2, the rest is dropped.
    assert!(series("dropped") >= 40.0, "{metrics}");
    assert_eq!(series("queued") + series("dropped"), 53.0, "{metrics}");
    assert_eq!(series("delivered"), 0.0);
    // What waits counts, the envelope the sender holds included.
    assert_eq!(
        value(
            &metrics,
            r#"marina_notification_queue_length{endpoint="hung"}"#
        ),
        series("queued")
    );
}

#[tokio::test]
async fn events_are_sent_together_in_order_in_bounded_envelopes() {
    let sink = Sink::start(SinkMode::Accept).await;
    // A flush interval long enough that a loaded machine still batches; at most 4 a POST.
    let config = endpoint(
        "batched",
        &sink.url,
        "max_batch = 4\nflush_interval = \"1s\"",
    );
    let reg = observe::start(StorageConfig::inmemory(), None, Some(config)).await;
    let s = &reg.server;
    let image = s.push_image("demo/app", "v1", 7).await;
    const PULLS: usize = 21;
    for n in 0..PULLS {
        let resp = s
            .client
            .head(s.url(&format!("/v2/demo/app/blobs/{}", image.layer_digest)))
            .header("x-request-id", format!("pull-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let events = sink.events(3 + PULLS).await;
    // Every event, once, in the order of the requests.
    let pulls: Vec<&str> = events[3..]
        .iter()
        .map(|e| e["request"]["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..PULLS).map(|n| format!("pull-{n}")).collect();
    assert_eq!(pulls, expected);
    assert_eq!(events.len(), 3 + PULLS);
    let deliveries = sink.deliveries();
    let sizes: Vec<usize> = deliveries
        .iter()
        .map(|d| d.envelope["events"].as_array().unwrap().len())
        .collect();
    // 24 events in envelopes of at most 4: at least 6 POSTs, and full ones under load.
    assert!(sizes.iter().all(|&n| (1..=4).contains(&n)), "{sizes:?}");
    assert!(sizes.len() >= 6, "{sizes:?}");
    assert!(sizes.contains(&4), "{sizes:?}");
    let metrics = reg.scrape().await;
    assert_eq!(
        value(
            &metrics,
            r#"marina_notification_events_total{endpoint="batched",outcome="delivered"}"#
        ),
        (3 + PULLS) as f64
    );
    assert_eq!(
        value(
            &metrics,
            r#"marina_notification_deliveries_total{endpoint="batched",outcome="success"}"#
        ),
        sizes.len() as f64
    );
}

#[tokio::test]
async fn a_full_batch_goes_out_without_waiting_for_the_flush_interval() {
    let sink = Sink::start(SinkMode::Accept).await;
    // A flush interval far longer than `Sink::events` waits: only full batches arrive.
    let config = endpoint("full", &sink.url, "max_batch = 4\nflush_interval = \"1h\"");
    let reg = observe::start(StorageConfig::inmemory(), None, Some(config)).await;
    let s = &reg.server;
    let image = s.push_image("demo/app", "v1", 9).await;
    for _ in 0..5 {
        let resp = s
            .client
            .head(s.url(&format!("/v2/demo/app/blobs/{}", image.layer_digest)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // 3 pushes and 5 pulls: two full envelopes.
    let events = sink.events(8).await;
    let actions = actions(&events);
    assert_eq!(
        actions,
        [
            "push", "push", "push", "pull", "pull", "pull", "pull", "pull"
        ]
    );
    let sizes: Vec<usize> = sink
        .deliveries()
        .iter()
        .map(|d| d.envelope["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [4, 4]);
}

#[tokio::test]
async fn the_actor_is_the_authenticated_user_and_the_address_the_clients() {
    use marina_distribution::observe::http::ObserveLayer;
    use marina_distribution::observe::notify::{Notifier, NotifierOptions};
    use marina_distribution::registry::RegistryOptions;
    use marina_distribution::registry::auth::config::{AccessRuleConfig, AuthConfig, OneOrMany};
    use marina_distribution::server::{self, ServeOptions};
    use marina_distribution::{AnyDriver, StorageConfig};
    use std::sync::Arc;

    let sink = Sink::start(SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthConfig {
        htpasswd: Some(common::auth::htpasswd(dir.path(), &[("alice", "alice-pw")])),
        token: None,
        access: vec![AccessRuleConfig {
            repositories: OneOrMany::One("**".into()),
            users: vec!["alice".into()],
            actions: vec!["pull".into(), "push".into()],
        }],
    };
    let driver = AnyDriver::from_config(&StorageConfig::inmemory())
        .await
        .unwrap();
    let (app, _) =
        server::registry_app(Arc::new(driver), RegistryOptions::default(), &auth).unwrap();
    let options = NotifierOptions {
        scheme: "http".into(),
        source_addr: "test-node:5000".into(),
    };
    let (notifier, _tasks) =
        Notifier::start(&endpoint("sink", &sink.url, ""), options, None).unwrap();
    let app = app.layer(ObserveLayer::new(None, Some(notifier)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(server::serve(
        listener,
        app,
        ServeOptions::default(),
        None,
        std::future::pending(),
    ));
    let data = b"pushed by alice";
    let digest = common::sha256(data);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v2/team/app/blobs/uploads/?digest={digest}"))
        .basic_auth("alice", Some("alice-pw"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let events = sink.events(1).await;
    assert_eq!(events[0]["action"], "push");
    assert_eq!(events[0]["actor"], serde_json::json!({"name": "alice"}));
    assert!(
        events[0]["request"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{events:?}"
    );
    serving.abort();
}

/// The `action` of each event, in order.
fn actions(events: &[serde_json::Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

/// An endpoint that cannot be reached is logged with the cause (here the refused
/// connection), and never with its URL's secrets: user info, path and query.
#[tokio::test]
async fn an_unreachable_endpoint_is_logged_with_its_cause_and_without_its_secrets() {
    use common::binary::{BIN, spawn, wait_for_log};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.toml");
    // Port 9 (discard) on loopback: nothing listens.
    std::fs::write(
        &config,
        "[[notifications.endpoints]]\nname = \"down\"\n\
         url = \"http://user:PASSWORD@127.0.0.1:9/hooks/PATH-TOKEN?key=QUERY-KEY\"\n\
         backoff = \"50ms\"\n",
    )
    .unwrap();
    let (_child, addr, mut logs) = spawn(
        tokio::process::Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--storage",
                "inmemory",
                "--config",
            ])
            .arg(&config),
    )
    .await;
    common::client::Registry::new(format!("http://{addr}"))
        .push_blob("demo/app", b"an event")
        .await;
    let line = wait_for_log(&mut logs, "notification endpoint unreachable").await;
    assert!(line.contains("Connection refused"), "no cause: {line}");
    for secret in ["PASSWORD", "PATH-TOKEN", "QUERY-KEY"] {
        assert!(!line.contains(secret), "{secret} in {line}");
    }
}
