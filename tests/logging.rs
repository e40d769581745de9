//! The binary's operability settings, end to end: `--log-format json` writes one JSON object
//! per line with the request id and the access fields; `MARINA_METRICS_LISTEN` and the TOML
//! `metrics_listen` open the metrics listener; an invalid setting is refused at start.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_marina-registry");

/// A `marina-registry` child process, killed on drop.
struct Registry {
    child: Child,
    /// `http://ADDR` of the registry.
    base: String,
    /// Lines the process wrote to stderr, collected by a thread.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Registry {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0", "--storage", "inmemory"])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("MARINA_METRICS_LISTEN")
            .env_remove("MARINA_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting marina-registry");
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split("/v2/").next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        Registry {
            child,
            base: format!("http://{addr}"),
            stderr,
        }
    }

    /// The next stderr line satisfying `wanted`, within 10 s.
    fn line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no such line on stderr");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_the_access_fields() {
    let metrics_port = free_port().to_string();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let reg = Registry::start(
        &["--log-format", "json"],
        &[("MARINA_METRICS_LISTEN", &metrics_addr)],
    );
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/v2/demo/app/manifests/latest", reg.base))
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "trace-me-1");
    // An insane id is replaced by a fresh one.
    let resp = client
        .get(format!("{}/v2/", reg.base))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let fresh = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 32);

    let line = reg.line(|l| l.contains("trace-me-1"));
    let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(json["target"], "marina_registry::access");
    assert_eq!(json["level"], "INFO");
    let f = &json["fields"];
    assert_eq!(f["request_id"], "trace-me-1");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["status"], 404);
    assert_eq!(f["repository"], "demo/app");
    assert_eq!(f["reference"], "latest");
    assert!(f["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(f["bytes_in"], 0);
    assert!(f["duration_ms"].as_f64().unwrap() >= 0.0);
    let fresh_line = reg.line(|l| l.contains(&fresh));
    serde_json::from_str::<serde_json::Value>(&fresh_line).unwrap();

    // The metrics listener opened from the environment.
    let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"marina_http_requests_total{endpoint="manifest_get",method="GET",status="404"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn the_config_file_opens_the_metrics_listener_and_bad_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let file = dir.path().join("registry.toml");
    std::fs::write(
        &file,
        format!(
            "metrics_listen = \"{metrics_addr}\"\nlog_format = \"text\"\n\
             [[notifications.endpoints]]\nname = \"local\"\nurl = \"http://127.0.0.1:9/events\"\n"
        ),
    )
    .unwrap();
    let reg = Registry::start(&["--config", file.to_str().unwrap()], &[]);
    let ready = reqwest::get(format!("http://{metrics_addr}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(reg);

    for (args, message) in [
        (vec!["--log-format", "xml"], "unknown log format"),
        (
            vec!["--metrics-listen", "nowhere"],
            "invalid socket address",
        ),
        (vec!["--gc-interval", "10ms"], "at least 1s"),
        (vec!["--upload-expiry-interval", "0s"], "at least 1s"),
        (
            vec!["--upload-ttl", "0s"],
            "upload_ttl must be more than 0s",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(
        &file,
        "[[notifications.endpoints]]\nname = \"x\"\nurl = \"ftp://example.com/\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notifications.endpoints.url"));
}

/// Why the start stopped is the last line on stderr, in the format asked for: `marina-registry:
/// WHAT: WHY` in text, and with `--log-format json` a JSON log line like every other (level
/// `ERROR`, the reason in `fields.error`), so that a log shipper can read it. The status
/// says which kind of failure: 2 for a configuration (also one the storage refuses), 1 for
/// the storage or the listener.
#[test]
fn the_reason_a_start_stopped_is_written_in_the_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(Vec<&str>, &str, &str, i32); 3] = [
        (
            vec!["--gc-interval", "10ms"],
            "configuration error",
            "at least 1s",
            2,
        ),
        // A root that is a file: the storage refuses the setting, a configuration error.
        (
            vec!["--root-directory", file.to_str().unwrap()],
            "cannot open storage",
            "filesystem.root_directory",
            2,
        ),
        (
            vec!["--listen", &taken, "--storage", "inmemory"],
            &format!("cannot listen on {taken}"),
            "in use",
            1,
        ),
    ];
    for (args, what, why, status) in cases {
        for json in [false, true] {
            let format = if json { "json" } else { "text" };
            let out = Command::new(BIN)
                .args(["--log-format", format])
                .args(&args)
                .env_remove("MARINA_LISTEN")
                .env_remove("STORAGE_TYPE")
                .env_remove("STORAGE_ROOT_DIRECTORY")
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            let case = format!("{args:?} in {format}");
            assert_eq!(out.status.code(), Some(status), "{case}");
            let stderr = String::from_utf8(out.stderr).unwrap();
            let last = stderr.lines().last().unwrap_or_default();
            if !json {
                assert!(
                    last.starts_with(&format!("marina-registry: {what}: ")) && last.contains(why),
                    "{case}: {stderr}"
                );
                continue;
            }
            for line in stderr.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {line}"));
            }
            let logged: serde_json::Value = serde_json::from_str(last).unwrap();
            assert_eq!(logged["level"], "ERROR", "{case}: {last}");
            assert_eq!(logged["fields"]["message"], what, "{case}: {last}");
            let error = logged["fields"]["error"].as_str().unwrap_or_default();
            assert!(error.contains(why), "{case}: {last}");
        }
    }
    // `--log-format` may follow the subcommand too.
    let out = Command::new(BIN)
        .args(["gc", "--log-format", "json", "--root-directory"])
        .arg(&file)
        .env_remove("STORAGE_TYPE")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    let logged: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("gc --log-format json: not JSON ({e}): {stderr}"));
    assert_eq!(logged["fields"]["message"], "cannot open storage");
}
