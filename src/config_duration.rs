//! Durations in configuration files: whole seconds (`30`) or text as every other duration
//! of the configuration is written (`"30s"`, `"2m"`, `"1m 30s"`, `"500ms"`: `humantime`).

use std::time::Duration;

use serde::Deserializer;
use serde::de::{Error, Visitor};

/// Reads an optional duration field (`#[serde(default, deserialize_with = "…")]`).
pub(crate) fn optional<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    de.deserialize_any(SecondsOrText).map(Some)
}

struct SecondsOrText;

impl Visitor<'_> for SecondsOrText {
    type Value = Duration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("whole seconds (30) or a duration such as \"500ms\", \"30s\" or \"2m\"")
    }

    fn visit_u64<E: Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text.trim()).map_err(|e| {
            E::custom(format!(
                "{text:?} is not a duration such as \"500ms\", \"30s\" or \"2m\": {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Field {
        #[serde(default, deserialize_with = "optional")]
        d: Option<Duration>,
    }

    fn read(text: &str) -> Result<Option<Duration>, String> {
        toml::from_str::<Field>(text)
            .map(|f| f.d)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn seconds_or_text() {
        assert_eq!(read("d = 3"), Ok(Some(Duration::from_secs(3))));
        assert_eq!(read("d = \"1m 30s\""), Ok(Some(Duration::from_secs(90))));
        assert_eq!(read("d = \"500ms\""), Ok(Some(Duration::from_millis(500))));
        assert_eq!(read("d = \" 5s \""), Ok(Some(Duration::from_secs(5))));
        assert_eq!(read("d = 0"), Ok(Some(Duration::ZERO)));
        assert_eq!(read(""), Ok(None));
        assert!(read("d = -5").unwrap_err().contains("negative"));
        assert!(
            read("d = \"soon\"")
                .unwrap_err()
                .contains("is not a duration")
        );
        assert!(read("d = 1.5").unwrap_err().contains("whole seconds (30)"));
        assert!(read("d = true").unwrap_err().contains("whole seconds (30)"));
    }
}
