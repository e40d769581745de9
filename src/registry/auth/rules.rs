//! Authorization rules: repository globs to users to actions (`[[auth.access]]` tables).
//!
//! A request is allowed when at least one rule matches its repository, its caller and its
//! action; nothing else is. Without any rule, every authenticated user may do everything and
//! anonymous callers nothing.

use super::glob::Glob;
use crate::registry::route::Action;

/// Who a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `"*"`: any authenticated user.
    AnyUser,
    /// `"anonymous"`: every caller, with or without credentials (logging in never takes
    /// away what callers without credentials may do).
    Anonymous,
    /// One user name.
    User(String),
}

impl Subject {
    /// Parses a `users` entry.
    pub fn parse(s: &str) -> Self {
        match s {
            "*" => Self::AnyUser,
            "anonymous" => Self::Anonymous,
            name => Self::User(name.to_owned()),
        }
    }

    fn covers(&self, user: Option<&str>) -> bool {
        match (self, user) {
            (Self::AnyUser, Some(_)) => true,
            (Self::Anonymous, _) => true,
            (Self::User(name), Some(user)) => name == user,
            _ => false,
        }
    }
}

/// One `[[auth.access]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Repository globs (any may match).
    pub repositories: Vec<Glob>,
    /// Who the rule applies to.
    pub users: Vec<Subject>,
    /// What they may do.
    pub actions: Vec<Action>,
}

impl Rule {
    fn grants(&self, user: Option<&str>, repository: &str, action: Action) -> bool {
        self.actions.contains(&action)
            && self.users.iter().any(|s| s.covers(user))
            && self.repositories.iter().any(|g| g.matches(repository))
    }
}

/// The rule set of a registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// A rule set; empty means "authenticated users may do everything".
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// Whether `user` (`None`: anonymous) may do `action` on `repository`.
    pub fn allows(&self, user: Option<&str>, repository: &str, action: Action) -> bool {
        if self.rules.is_empty() {
            return user.is_some();
        }
        self.rules
            .iter()
            .any(|r| r.grants(user, repository, action))
    }

    /// Whether anonymous callers are granted anything at all (then `/v2/` and the catalog
    /// answer them instead of challenging).
    pub fn grants_anonymous(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.users.contains(&Subject::Anonymous))
    }

    /// The actions `user` holds on `repository`, among `wanted` (the built-in token
    /// endpoint grants this intersection).
    pub fn granted(&self, user: Option<&str>, repository: &str, wanted: &[Action]) -> Vec<Action> {
        wanted
            .iter()
            .copied()
            .filter(|a| self.allows(user, repository, *a))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repos: &[&str], users: &[&str], actions: &[Action]) -> Rule {
        Rule {
            repositories: repos.iter().map(|r| Glob::new(r).unwrap()).collect(),
            users: users.iter().map(|u| Subject::parse(u)).collect(),
            actions: actions.to_vec(),
        }
    }

    #[test]
    fn default_is_authenticated_only() {
        let r = Rules::default();
        assert!(r.allows(Some("alice"), "a/b", Action::Delete));
        assert!(!r.allows(None, "a/b", Action::Pull));
    }

    #[test]
    fn rules_grant_union() {
        let r = Rules::new(vec![
            rule(&["public/**"], &["anonymous", "*"], &[Action::Pull]),
            rule(&["team/*"], &["alice"], &[Action::Pull, Action::Push]),
            rule(
                &["**"],
                &["admin"],
                &[Action::Pull, Action::Push, Action::Delete],
            ),
        ]);
        assert!(r.allows(None, "public/x/y", Action::Pull));
        assert!(!r.allows(None, "public/x", Action::Push));
        assert!(r.allows(Some("bob"), "public/x", Action::Pull));
        assert!(!r.allows(Some("bob"), "team/app", Action::Pull));
        assert!(r.allows(Some("alice"), "team/app", Action::Push));
        assert!(!r.allows(Some("alice"), "team/app/sub", Action::Push));
        assert!(!r.allows(Some("alice"), "team/app", Action::Delete));
        assert!(r.allows(Some("admin"), "any/thing", Action::Delete));
        assert!(r.grants_anonymous());
        // A user keeps what anonymous callers may do: `docker login` for one repository must
        // not close the public ones.
        let r2 = Rules::new(vec![rule(&["builds/**"], &["anonymous"], &[Action::Pull])]);
        assert!(r2.allows(None, "builds/x", Action::Pull));
        assert!(r2.allows(Some("carol"), "builds/x", Action::Pull));
        assert!(!r2.allows(Some("carol"), "builds/x", Action::Push));
        assert_eq!(
            r.granted(Some("alice"), "team/app", &[Action::Pull, Action::Delete]),
            [Action::Pull]
        );
    }
}
