//! The `WWW-Authenticate` challenge of an upstream registry's `401` (RFC 9110 §11.6.1), as
//! the Docker token specification uses it: `Bearer realm="…",service="…",scope="…"`, or
//! `Basic realm="…"`.

/// A challenge the pull-through cache knows how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// HTTP Basic: send the configured credentials with every request.
    Basic,
    /// A bearer token from `realm` (token specification, "How to authenticate").
    Bearer {
        /// Where tokens are issued (an `http` or `https` URL).
        realm: String,
        /// The `service` parameter to send, when the challenge named one.
        service: Option<String>,
        /// The `scope` the challenge asked for, when it named one.
        scope: Option<String>,
    },
}

/// The first challenge of `header` the cache can answer (`Bearer` before `Basic` when a
/// server offers both); `None` for anything else (no challenge, another scheme, a `Bearer`
/// without a realm).
pub(crate) fn parse(header: &str) -> Option<Challenge> {
    let mut basic = false;
    for (scheme, params) in challenges(header) {
        if scheme.eq_ignore_ascii_case("bearer") {
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let realm = get("realm").filter(|r| is_http_url(r))?;
            return Some(Challenge::Bearer {
                realm,
                service: get("service"),
                scope: get("scope"),
            });
        }
        basic |= scheme.eq_ignore_ascii_case("basic");
    }
    basic.then_some(Challenge::Basic)
}

fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// The challenges of a header value: a scheme followed by `name=value` parameters (values
/// quoted or tokens), challenges separated by commas like the parameters.
fn challenges(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = header.trim_start();
    while !rest.is_empty() {
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        let after_spaces = after.trim_start();
        if let Some(value_part) = after_spaces.strip_prefix('=')
            && !value_part.starts_with('=')
            && let Some(current) = out.last_mut()
        {
            // A parameter of the current challenge.
            let (value, remaining) = value(value_part.trim_start());
            current.1.push((token.to_owned(), value));
            rest = remaining;
        } else if !token.is_empty() {
            // A new challenge's scheme (a token68 after it is skipped: no scheme here
            // uses one).
            out.push((token.to_owned(), Vec::new()));
            rest = after;
        } else {
            // Stray `=` (the padding of a token68): skip it.
            rest = &after[after.chars().next().map_or(0, char::len_utf8)..];
        }
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
    }
    out
}

/// A parameter's value at the start of `text` (a quoted string with `\` escapes, or a token)
/// and what follows it.
fn value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text
            .find(|c: char| c == ',' || c.is_ascii_whitespace())
            .unwrap_or(text.len());
        return (text[..end].to_owned(), &text[end..]);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &quoted[i + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_gives_realm_service_and_scope() {
        let c = parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
    }

    #[test]
    fn parameters_may_be_tokens_spaced_escaped_and_in_any_case() {
        let c = parse(r#"bearer  Realm = "http://127.0.0.1:1/t\"x" , service=reg"#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t\"x".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn bearer_is_preferred_to_basic_and_basic_is_recognised() {
        let both = parse(r#"Basic realm="r", Bearer realm="https://a/t""#);
        assert!(matches!(both, Some(Challenge::Bearer { .. })));
        assert_eq!(parse(r#"Basic realm="Registry""#), Some(Challenge::Basic));
    }

    #[test]
    fn unusable_challenges_are_none() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("Negotiate abc=="), None);
        // A realm that is not an HTTP URL is not followed.
        assert_eq!(parse(r#"Bearer realm="file:///etc/passwd""#), None);
        assert_eq!(parse(r#"Bearer service="x""#), None);
        // An unterminated quote ends the value.
        assert_eq!(parse(r#"Bearer realm="https://a/t"#), {
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: None,
                scope: None,
            })
        });
    }
}
