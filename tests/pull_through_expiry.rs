//! A pull-through cache's TTL (`--proxy-ttl`): what it stored expires, tags included, by
//! the collections it runs by itself; and two cache processes over one root, pulled from
//! all the while as each expires everything it stored every second, serve every pull whole
//! and leave a store in which every tag names a whole image (the argument is in the
//! `lifecycle` docs, "Expiry").

// Each of the two test binaries uses a part of the pull-through helpers.
#[allow(dead_code)]
#[path = "pull_through/caches.rs"]
mod caches;
mod common;
#[allow(dead_code)]
#[path = "pull_through/upstreams.rs"]
mod upstreams;

use std::time::{Duration, Instant};

use caches::{Cache, Store, assert_serves, cache_with};
use common::{Image, body};
use reqwest::StatusCode;
use upstreams::{Upstream, pusher, upstream, upstream_with_image};

const TAGS_EXPIRED: &str = r#"marina_gc_reclaimed_total{kind="tags"}"#;
const MANIFESTS_DELETED: &str = r#"marina_gc_reclaimed_total{kind="manifests"}"#;

/// A cache of `up` as its user `mirror` over `store`, with `args`.
async fn cache_of(up: &Upstream, store: Store<'_>, args: &[&str]) -> Cache {
    let creds = Some(("mirror", "mirror-pw"));
    cache_with(&up.remote(), &up.pki.ca, store, creds, args).await
}

/// Waits (at most 30 s) until `series` of `c` reaches `at_least`.
async fn wait_for_series(c: &Cache, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.series(series).await < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} stayed below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the cache stored expires after its TTL, by the collections it runs by itself (as
/// often as its TTL here, every hour by default): once expired and the upstream gone, the
/// image is no longer served (it would be fetched again), by tag or by digest.
#[tokio::test]
async fn what_the_cache_stored_expires_after_its_ttl() {
    let (mut up, image) = upstream_with_image(true, "team/ttl", "v1", 18).await;
    let root = tempfile::tempdir().unwrap();
    // No grace period: the blobs go with the manifests (a week's TTL dwarfs the hour's).
    let args = ["--proxy-ttl", "2s", "--grace", "0s"];
    let mut c = cache_of(&up, Store::Root(root.path()), &args).await;
    assert_serves(&c, "team/ttl", "v1", &image).await;
    c.stored(&image.digest).await;
    wait_for_series(&c, TAGS_EXPIRED, 1.0).await;
    wait_for_series(&c, MANIFESTS_DELETED, 1.0).await;
    up.go_away().await;
    for reference in ["v1", image.digest.as_str()] {
        let resp = c.get_manifest("team/ttl", reference).await;
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{reference}"
        );
    }
    let layer = c.get_blob("team/ttl", &image.layer_digest).await;
    assert_eq!(layer.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A TTL that cannot apply or cannot be read is a configuration error (exit status 2)
/// naming the setting, not a registry that runs without it; `gc` over a cache's store reads
/// it from the same configuration.
#[tokio::test]
async fn a_ttl_that_cannot_apply_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let run = |args: Vec<&str>, env: Option<(&str, &str)>| {
        let mut cmd = tokio::process::Command::new(common::binary::BIN);
        cmd.env_remove("MARINA_PROXY_REMOTE_URL")
            .env_remove("MARINA_PROXY_TTL")
            .env_remove("MARINA_LISTEN")
            .args(["--root-directory", root, "--listen", "127.0.0.1:0"])
            .args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        async move { cmd.output().await.unwrap() }
    };
    let upstream = ["--proxy-remote-url", "http://127.0.0.1:1"];
    for (args, env, named) in [
        (vec!["--proxy-ttl", "1h"], None, "--proxy-ttl"),
        (vec![], Some(("MARINA_PROXY_TTL", "1h")), "MARINA_PROXY_TTL"),
        (vec!["gc", "--proxy-ttl", "1h"], None, "--proxy-ttl"),
        (
            [&upstream[..], &["--proxy-ttl", "a while"]].concat(),
            None,
            "proxy.ttl",
        ),
        (
            [&upstream[..], &["--read-only"]].concat(),
            None,
            "read_only",
        ),
    ] {
        let out = run(args.clone(), env).await;
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }
    // `gc` over a cache's store, configured by its file, expires what the cache stored (an
    // empty store here: the run succeeds).
    let config = dir.path().join("cache.toml");
    std::fs::write(
        &config,
        "[proxy]\nremote_url = \"http://127.0.0.1:1\"\nttl = \"1h\"\n",
    )
    .unwrap();
    let out = run(vec!["gc", "--config", config.to_str().unwrap()], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How many images the stress pulls.
const IMAGES: u8 = 4;

/// Pulls `image` of `repo` by tag through `c`, whole; panics on anything else, naming
/// `when`.
async fn pull_whole(c: &Cache, repo: &str, image: &Image, when: &str) {
    let repo_when = format!("{repo} ({when})");
    let repo = repo_when.split(' ').next().unwrap();
    let manifest = c.get_manifest(repo, "v1").await;
    assert_eq!(manifest.status(), StatusCode::OK, "{repo_when}");
    assert_eq!(body(manifest).await, image.manifest, "{repo_when}");
    let layer = c.get_blob(repo, &image.layer_digest).await;
    assert_eq!(layer.status(), StatusCode::OK, "{repo_when} layer");
    assert_eq!(body(layer).await, image.layer, "{repo_when} layer");
    let config = c.get_blob(repo, &image.config_digest).await;
    assert_eq!(config.status(), StatusCode::OK, "{repo_when} config");
    assert_eq!(
        body(config).await.len(),
        image.config_size,
        "{repo_when} config"
    );
}

/// Two cache processes over one root, each expiring everything it stored every second
/// (`--proxy-ttl 1s`) while clients pull images through both, storing them again as fast as
/// they expire: every pull is whole. Then, the caches stopped (killed, wherever their
/// collections were) and the upstream gone, a third process over the root serves each image
/// by tag either whole from the store or not at all (`503`): no tag names a manifest whose
/// blobs a collection took.
#[tokio::test]
async fn caches_expiring_while_they_fill_serve_every_pull_whole() {
    let root = tempfile::tempdir().unwrap();
    expiring_while_filling("filesystem", Store::Root(root.path()), 8).await;
}

/// The same over one S3 bucket.
#[tokio::test]
async fn caches_expiring_while_they_fill_over_one_bucket() {
    let Some(storage) = common::s3_storage("pull-through-expiry") else {
        eprintln!("NOTE: S3_ENDPOINT is not set: the S3 pull-through expiry case was SKIPPED");
        return;
    };
    common::ensure_bucket(&storage).await;
    let prefix = storage.s3.and_then(|s3| s3.prefix).expect("prefix");
    // A collection takes seconds on moto: long enough for several.
    expiring_while_filling("s3", Store::Bucket(&prefix), 20).await;
}

/// Pulls for `secs` seconds through two caches over `store`, then checks what is left.
async fn expiring_while_filling(backend: &str, store: Store<'_>, secs: u64) {
    let mut up = upstream(true).await;
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let repo = format!("team/stress{i}");
        let image = pusher(&up, true, &repo)
            .await
            .push_image(&repo, "v1", 30 + i)
            .await;
        images.push((repo, image));
    }
    let mut caches = Vec::new();
    for _ in 0..2 {
        let args = ["--proxy-ttl", "1s", "--grace", "0s"];
        let mut c = cache_of(&up, store, &args).await;
        c.discard_logs();
        caches.push(c);
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let clients = (0..4usize).map(|client| {
        let (caches, images) = (&caches, &images);
        async move {
            let mut pulls = 0usize;
            while Instant::now() < end {
                let (repo, image) = &images[(client + pulls) % images.len()];
                let c = &caches[(client + pulls) % 2];
                pull_whole(c, repo, image, "while expiring").await;
                pulls += 1;
            }
            pulls
        }
    });
    let pulls: usize = futures::future::join_all(clients).await.into_iter().sum();
    let (mut expired, mut deleted) = (0.0, 0.0);
    for c in &caches {
        expired += c.series(TAGS_EXPIRED).await;
        deleted += c.series(MANIFESTS_DELETED).await;
    }
    // Expiry ran while the caches filled, or the test proved nothing.
    assert!(expired >= 1.0 && deleted >= 1.0, "{expired} {deleted}");
    drop(caches);
    up.go_away().await;
    let checker = cache_of(&up, store, &["--proxy-ttl", "0s"]).await;
    let mut whole = 0;
    for (repo, image) in &images {
        let by_tag = checker.get_manifest(repo, "v1").await;
        match by_tag.status() {
            StatusCode::OK => {
                assert_eq!(body(by_tag).await, image.manifest, "{repo}");
                pull_whole(&checker, repo, image, "from the store afterwards").await;
                whole += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("{repo}: {other}"),
        }
    }
    println!(
        "pull-through expiry stress ({backend}, 2 caches, ttl 1s, {secs} s): pulls={pulls} \
         tags_expired={expired} manifests_deleted={deleted} images_whole_after={whole} \
         images_expired_after={}",
        usize::from(IMAGES) - whole
    );
}
