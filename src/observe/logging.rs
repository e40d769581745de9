//! The process's log output: human-readable lines or one JSON object per line.

use std::str::FromStr;

use serde::Deserialize;

/// How log lines are written (`--log-format`, `MARINA_LOG_FORMAT`, TOML `log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-05T16:31:07.123456Z  INFO target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line, for log shippers: `timestamp`, `level`, `target`, `fields`
    /// (`message` and the event's fields) and `span` (the request's id; with `debug` lines,
    /// the innermost span, and `spans` all of them, the request's first).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// Where the AWS SDK writes credentials into its own log lines (its `Debug` of credentials
/// shows the access key id), and the most these targets log unless `RUST_LOG` names their
/// crate: the profile provider's `info` lines (`loaded base credentials`), the `trace`
/// lines of the resolved identity and of the signing parameters.
const CREDENTIAL_LOGS: [(&str, &str, &str); 3] = [
    ("aws_config", "aws_config::profile::credentials", "warn"),
    (
        "aws_smithy_runtime",
        "aws_smithy_runtime::client::orchestrator::auth",
        "debug",
    ),
    ("aws_sigv4", "aws_sigv4::http_request", "debug"),
];

/// The filter of `RUST_LOG` (`spec`; default `info`), with the SDK's credential-bearing
/// lines ([`CREDENTIAL_LOGS`]) capped unless `spec` names their crate: `RUST_LOG=trace`
/// does not print the access key id, `RUST_LOG=trace,aws_sigv4=trace` does.
fn filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    let spec = spec.unwrap_or("info");
    let mut filter = tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for (krate, target, most) in CREDENTIAL_LOGS {
        if !spec.contains(krate)
            && let Ok(directive) = format!("{target}={most}").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber: logs to stderr in `format`, filtered by `RUST_LOG`
/// (default `info`), the AWS SDK's credential-bearing lines capped (see the module's `filter`).
pub fn init(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").ok();
    let filter = filter(spec.as_deref());
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => json(filter, nested(spec.as_deref()), std::io::stderr).init(),
    }
}

/// Whether `RUST_LOG` (`spec`) enables spans below the request's: the storage `backend`
/// span and the SDK's own are at `debug`.
fn nested(spec: Option<&str>) -> bool {
    tracing_subscriber::EnvFilter::try_new(spec.unwrap_or("info"))
        .ok()
        .and_then(|f| f.max_level_hint())
        .is_none_or(|most| most >= tracing::level_filters::LevelFilter::DEBUG)
}

/// The JSON subscriber: `span` is the innermost span (the request's, at `info`). With
/// `nested` spans below the request's, `spans` lists them all, the request's first, so every
/// line keeps the request id.
fn json<W>(
    filter: tracing_subscriber::EnvFilter,
    nested: bool,
    writer: W,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
    tracing_subscriber::EnvFilter,
    W,
>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter)
        .json()
        .with_current_span(true)
        .with_span_list(nested)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Where a test's subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber with `filter(spec)` prints of one line per credential-bearing
    /// target, at the level the SDK writes it.
    fn printed(spec: &str) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(Some(spec)))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "aws_config::profile::credentials", "AKIDPROFILE");
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator::auth", "AKIDIDENTITY");
            tracing::trace!(target: "aws_sigv4::http_request::sign", "AKIDSIGNING");
            tracing::trace!(target: "marina_distribution::storage", "OURS");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_inside_a_storage_span_keep_the_request_id() {
        let lines = |spec: &str| {
            let buffer = Buffer::default();
            let writer = buffer.clone();
            let subscriber = json(filter(Some(spec)), nested(Some(spec)), move || {
                writer.clone()
            })
            .finish();
            tracing::subscriber::with_default(subscriber, || {
                let request = tracing::info_span!("request", id = "req-42");
                let _request = request.enter();
                tracing::info!("access");
                let backend = tracing::debug_span!("backend", operation = "read");
                let _backend = backend.enter();
                tracing::debug!("inside");
            });
            let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            out.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        };
        let info = lines("info");
        assert_eq!(info.len(), 1);
        assert_eq!(info[0]["span"]["id"], "req-42");
        assert!(
            info[0].get("spans").is_none(),
            "compact at info: {:?}",
            info[0]
        );
        let debug = lines("debug");
        let inside = debug
            .iter()
            .find(|l| l["fields"]["message"] == "inside")
            .expect("the storage line");
        assert_eq!(inside["span"]["name"], "backend");
        assert_eq!(inside["spans"][0]["id"], "req-42", "{inside}");
    }

    #[test]
    fn the_sdks_credential_lines_are_capped_unless_asked_for() {
        let all = printed("trace");
        assert!(all.contains("OURS"), "{all}");
        assert!(!all.contains("AKID"), "{all}");
        let asked = printed("trace,aws_sigv4=trace,aws_config=info,aws_smithy_runtime=trace");
        for line in ["AKIDPROFILE", "AKIDIDENTITY", "AKIDSIGNING"] {
            assert!(asked.contains(line), "{line}: {asked}");
        }
    }
}
