//! skopeo, the real client the tests push and pull with. It is required: a test that needs it
//! FAILS when it is missing, unless `MARINA_SKIP_SKOPEO=1` says to skip it explicitly.

use std::process::Output;

/// Runs `skopeo --insecure-policy <args>`.
pub async fn run(args: &[String]) -> Output {
    tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .expect("running skopeo")
}

/// [`run`], asserting that skopeo succeeded (its output in the message otherwise).
pub async fn run_ok(args: &[String]) {
    let out = run(args).await;
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether skopeo is installed; panics when it is not, unless `MARINA_SKIP_SKOPEO=1` (then
/// the caller skips, and says so).
pub fn available() -> bool {
    let found = std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert_eq!(
            std::env::var("MARINA_SKIP_SKOPEO").as_deref(),
            Ok("1"),
            "skopeo is not installed: install it (apt-get install skopeo) or set \
             MARINA_SKIP_SKOPEO=1 to skip this test explicitly"
        );
        eprintln!("NOTE: skopeo not installed and MARINA_SKIP_SKOPEO=1: skopeo test SKIPPED");
    }
    found
}
