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
    /// (`message` and the event's fields) and `span` (the request's id).
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
/// (default `info`; see [`filter`]).
pub fn init(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").ok();
    let filter = filter(spec.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a subscriber with `filter(spec)` prints of one line per credential-bearing
    /// target, at the level the SDK writes it.
    fn printed(spec: &str) -> String {
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
