//! Running the `marina-registry` binary: spawning it (and reading the address it printed),
//! its log lines, signals.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_marina-registry");

/// Starts the binary; returns the child, the `host:port` it printed and its log lines.
pub async fn spawn(
    cmd: &mut Command,
) -> (
    Child,
    String,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut child = cmd
        .env_remove("MARINA_LISTEN")
        .env_remove("STORAGE_TYPE")
        .env_remove("STORAGE_ROOT_DIRECTORY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn marina-registry");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = stdout
        .next_line()
        .await
        .unwrap()
        .expect("marina-registry printed nothing");
    assert!(
        line.starts_with("marina-registry listening on http://"),
        "{line}"
    );
    let addr = line["marina-registry listening on http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, addr, stderr)
}

/// Reads log lines until one contains `needle`, and returns it.
pub async fn wait_for_log(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> String {
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains(needle) {
            return line;
        }
    }
    panic!("the log ended without a line containing {needle:?}");
}

/// Reads log lines until the one announcing the metrics listener, and returns its
/// `host:port`.
pub async fn wait_for_metrics_address(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) -> String {
    let line = wait_for_log(lines, "metrics and health checks on http://").await;
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no metrics address in {line}"))
}

/// Sends `kill -<sig>` to the child.
pub async fn send_signal(child: &Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(&pid)
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// Runs `marina-registry gc --root-directory <root> <args>` with the variables `envs` (and no
/// storage variables of the caller's), asserting that it succeeded: its one summary line
/// (stdout) and its log (stderr).
pub async fn gc(root: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(BIN)
        .env_remove("STORAGE_TYPE")
        .env_remove("STORAGE_ROOT_DIRECTORY")
        .envs(envs.iter().copied())
        .arg("gc")
        .arg("--root-directory")
        .arg(root)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one summary line: {stdout:?}");
    (lines[0].to_owned(), String::from_utf8(out.stderr).unwrap())
}
