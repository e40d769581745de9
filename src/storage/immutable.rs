//! Immutable tags: tags that, once they exist, name the same manifest for as long as the
//! repository keeps them (`[[storage.immutable_tags]]`).
//!
//! A push that would move one to another manifest, a `DELETE` of one and a `DELETE` of the
//! manifest one names are refused with `403 DENIED`; pushing the manifest a tag already names
//! again is accepted. The engine enforces the rules where the tag is written, so they hold
//! for every process on the same storage (see `Engine::create_immutable_tag` and
//! [`Backend::create_tag`](crate::storage::backend::Backend::create_tag)).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oci::RepositoryName;
use crate::oci::glob::Glob;

/// One `[[storage.immutable_tags]]` rule: the tags matching one of `tags` in the
/// repositories matching one of `repositories` are immutable.
///
/// ```toml
/// [[storage.immutable_tags]]
/// repositories = ["releases/**"]   # default: every repository
/// tags = ["v*", "stable-*"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableTagRule {
    /// Repository globs ([`Glob`]: `*` within one path component, `**` across them);
    /// `["**"]`, every repository, when omitted.
    #[serde(default = "every_repository")]
    pub repositories: Vec<String>,
    /// Tag globs (`*` matches any run of characters); `["*"]` makes every tag immutable.
    pub tags: Vec<String>,
}

fn every_repository() -> Vec<String> {
    vec!["**".to_owned()]
}

/// The compiled rules an engine checks tag writes and deletes against; empty (no tag is
/// immutable) by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImmutableTags {
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone, PartialEq)]
struct CompiledRule {
    repositories: Vec<Glob>,
    tags: Vec<Glob>,
}

impl ImmutableTags {
    /// Compiles `rules`; the error names the rule (by its position) and what is wrong.
    pub fn new(rules: &[ImmutableTagRule]) -> Result<Self> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| compile(rule).map_err(|message| invalid(i, message)))
            .collect::<Result<_>>()?;
        Ok(Self { rules })
    }

    /// Whether no tag is immutable.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the tag `tag` of `repo` is immutable.
    pub fn covers(&self, repo: &RepositoryName, tag: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.tags.iter().any(|g| g.matches(tag))
                && rule.repositories.iter().any(|g| g.matches(repo.as_str()))
        })
    }
}

fn compile(rule: &ImmutableTagRule) -> std::result::Result<CompiledRule, String> {
    if rule.tags.is_empty() {
        return Err("`tags` is empty".to_owned());
    }
    if rule.repositories.is_empty() {
        return Err("`repositories` is empty (omit it for every repository)".to_owned());
    }
    if let Some(bad) = rule.tags.iter().find(|t| t.contains('/')) {
        return Err(format!("tag glob {bad:?} holds a `/`, which no tag does"));
    }
    let globs = |patterns: &[String]| {
        patterns
            .iter()
            .map(|p| Glob::new(p))
            .collect::<std::result::Result<Vec<_>, _>>()
    };
    Ok(CompiledRule {
        repositories: globs(&rule.repositories)?,
        tags: globs(&rule.tags)?,
    })
}

fn invalid(index: usize, message: String) -> Error {
    Error::Config {
        field: "immutable_tags",
        message: format!("rule {}: {message}", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repositories: &[&str], tags: &[&str]) -> ImmutableTagRule {
        ImmutableTagRule {
            repositories: repositories.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn repo(name: &str) -> RepositoryName {
        RepositoryName::parse(name).unwrap()
    }

    #[test]
    fn a_tag_is_covered_when_one_rule_matches_both_names() {
        let rules = ImmutableTags::new(&[
            rule(&["releases/**"], &["v*", "stable"]),
            rule(&["**"], &["sha-*"]),
        ])
        .unwrap();
        assert!(rules.covers(&repo("releases/app"), "v1.2"));
        assert!(rules.covers(&repo("releases/team/app"), "stable"));
        assert!(!rules.covers(&repo("releases/app"), "latest"));
        assert!(!rules.covers(&repo("dev/app"), "v1.2"), "other repository");
        assert!(rules.covers(&repo("dev/app"), "sha-0abc"));
        assert!(!rules.covers(&repo("dev/app"), "stable-sha-0abc"));
        assert!(ImmutableTags::default().is_empty());
        assert!(!ImmutableTags::default().covers(&repo("a"), "v1"));
    }

    #[test]
    fn rules_read_from_toml_with_every_repository_by_default() {
        #[derive(Deserialize)]
        struct Doc {
            immutable_tags: Vec<ImmutableTagRule>,
        }
        let doc: Doc = toml::from_str("[[immutable_tags]]\ntags = [\"v*\"]").unwrap();
        let rules = ImmutableTags::new(&doc.immutable_tags).unwrap();
        assert!(rules.covers(&repo("any/where"), "v2"));
        let unknown = toml::from_str::<Doc>("[[immutable_tags]]\ntags = []\ntag = \"v*\"");
        assert!(unknown.is_err(), "unknown fields are refused");
    }

    #[test]
    fn invalid_rules_are_refused_naming_the_rule() {
        for (bad, says) in [
            (rule(&["**"], &[]), "`tags` is empty"),
            (rule(&[], &["v*"]), "`repositories` is empty"),
            (rule(&["**"], &["a/b"]), "holds a `/`"),
            (rule(&["**"], &[""]), "empty glob"),
            (rule(&["a/***"], &["v*"]), "a/***"),
        ] {
            let e = ImmutableTags::new(&[rule(&["**"], &["ok"]), bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("immutable_tags: rule 2: "), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }
}
