//! Globs of repository names and tags (access rules, immutable tags): `*` matches any run
//! of characters inside one path component (never a `/`), `**` any run of characters
//! across components (`/` included). Every other character matches itself; a tag has one
//! component, so for tags `*` and `**` are the same.
//!
//! `team/*` matches `team/app` but not `team/app/dev`; `team/**` matches both (but not
//! `team` itself); `**` matches every repository; `*/base` matches `lib/base`.

use std::fmt;

/// A compiled glob of repository names or tags.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`
    Component,
    /// `**`
    Any,
}

impl Glob {
    /// Compiles `pattern`. Fails on an empty pattern and on `***`.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty glob".to_owned());
        }
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '*' {
                literal.push(c);
                continue;
            }
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            if chars.peek() == Some(&'*') {
                chars.next();
                if chars.peek() == Some(&'*') {
                    return Err(format!("{pattern:?}: `***` is not a glob"));
                }
                tokens.push(Token::Any);
            } else {
                tokens.push(Token::Component);
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(Self {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        matches(&self.tokens, name)
    }
}

fn matches(tokens: &[Token], name: &str) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return name.is_empty();
    };
    match first {
        Token::Literal(lit) => name
            .strip_prefix(lit.as_str())
            .is_some_and(|tail| matches(rest, tail)),
        Token::Component | Token::Any => {
            let crosses = *first == Token::Any;
            // Try every split point (names are short; patterns have few wildcards).
            for (i, c) in name.char_indices() {
                if matches(rest, &name[i..]) {
                    return true;
                }
                if c == '/' && !crosses {
                    return false;
                }
            }
            matches(rest, "")
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn component_and_any() {
        let g = |p: &str| Glob::new(p).unwrap();
        assert!(g("team/*").matches("team/app"));
        assert!(!g("team/*").matches("team/app/dev"));
        assert!(!g("team/*").matches("team"));
        assert!(g("team/**").matches("team/app/dev"));
        assert!(g("team/**").matches("team/app"));
        assert!(!g("team/**").matches("team"));
        assert!(!g("team/**").matches("teams/app"));
        assert!(g("**").matches("a/b/c"));
        assert!(g("*").matches("abc"));
        assert!(!g("*").matches("a/b"));
        assert!(g("*/base").matches("lib/base"));
        assert!(!g("*/base").matches("x/lib/base"));
        assert!(g("**/base").matches("x/lib/base"));
        assert!(g("lib/*-dev").matches("lib/app-dev"));
        assert!(!g("lib/*-dev").matches("lib/app-dev/x"));
        assert!(g("exact/name").matches("exact/name"));
        assert!(!g("exact/name").matches("exact/name2"));
        assert!(g("a/*/c/**").matches("a/b/c/d/e"));
        assert!(!g("a/*/c/**").matches("a/b/x/c/d"));
        assert!(Glob::new("").is_err());
        assert!(Glob::new("a/***").is_err());
    }
}
