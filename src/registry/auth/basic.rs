//! HTTP Basic authentication against an htpasswd file as Apache's `htpasswd -B` and
//! Distribution write it: one `user:hash` per line, bcrypt hashes (`$2y$`, `$2b$`) only.
//!
//! bcrypt is slow on purpose (tens of milliseconds), so it never runs on the request path
//! twice for the same credentials: a verified password leaves a keyed MAC
//! (HMAC-SHA-256 under a per-process random key, never the password) in a per-user cache,
//! compared in constant time. The cache belongs to one loaded file: a reload (the file
//! changed) starts with an empty one. bcrypt itself runs on the blocking pool, at most one
//! verification per core at a time, so wrong passwords cannot starve the async workers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A bcrypt hash that no password matches (verified against when the user does not exist,
/// so that unknown and known users take the same time). Its cost is replaced by the one
/// the file's users have ([`Htpasswd::dummy_hash`]): bcrypt's time is its cost.
const DUMMY_HASH: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

/// A loaded htpasswd file with its cache of verified credentials.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// [`DUMMY_HASH`] at the cost most of the file's hashes have.
    dummy_hash: String,
    key: [u8; 32],
    verified: Mutex<HashMap<String, [u8; 32]>>,
    bcrypt_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// The bcrypt costs accepted: bcrypt's minimum, 4, to Apache `htpasswd -B -C`'s maximum, 17.
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=17;

impl Htpasswd {
    /// Parses an htpasswd file's text. Blank lines and `#` comments are skipped; any line
    /// whose hash is not bcrypt `$2y$`/`$2b$` is an error naming the line (not the hash).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        let mut users_by_cost = [0usize; 32];
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {n}: expected user:hash"));
            };
            if user.is_empty() {
                return Err(format!("line {n}: empty user name"));
            }
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$")) {
                let scheme = scheme_name(hash);
                return Err(format!(
                    "line {n} (user {user:?}): {scheme} hashes are not supported; only bcrypt \
                     ($2y$, $2b$) is: recreate the entry with `htpasswd -B`"
                ));
            }
            if hash.len() != 60 {
                return Err(format!("line {n} (user {user:?}): malformed bcrypt hash"));
            }
            let cost = hash[4..6].parse::<u32>().unwrap_or(0);
            if !BCRYPT_COSTS.contains(&cost) {
                return Err(format!(
                    "line {n} (user {user:?}): bcrypt cost {:?} is outside 4 to 17 (what \
                     `htpasswd -B -C` writes; a higher cost makes every login check take \
                     minutes and stalls the others)",
                    &hash[4..6]
                ));
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(format!("line {n}: user {user:?} appears twice"));
            }
            users_by_cost[cost as usize] += 1;
        }
        // The most common cost (the higher one on a tie; 10 for a file without users).
        let dummy_cost = (0..users_by_cost.len())
            .max_by_key(|&cost| users_by_cost[cost])
            .filter(|&cost| users_by_cost[cost] > 0)
            .unwrap_or(10);
        let dummy_hash = format!("$2b${dummy_cost:02}{}", &DUMMY_HASH[6..]);
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            users,
            dummy_hash,
            key,
            verified: Mutex::new(HashMap::new()),
            bcrypt_slots: Arc::new(Semaphore::new(slots)),
        })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading htpasswd file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("htpasswd file {}: {e}", path.display()))
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn tag(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A fingerprint of `user`'s line (SHA-256 of the bcrypt hash, first 16 bytes), `None`
    /// when the file has no such user. It changes when the password does; refresh tokens
    /// carry it ([`super::refresh`]). The hash holds a random salt, so the fingerprint
    /// helps no one guess the password.
    pub fn credential_tag(&self, user: &str) -> Option<[u8; 16]> {
        use sha2::Digest as _;
        let hash = self.users.get(user)?;
        let digest = sha2::Sha256::digest(hash.as_bytes());
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&digest[..16]);
        Some(tag)
    }

    /// Whether `password` is `user`'s: from the cache when these credentials were verified
    /// before, else with bcrypt (off the async workers).
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let tag = self.tag(user, password);
        if let Some(known) = self.verified.lock().expect("cache lock").get(user)
            && bool::from(known.ct_eq(&tag))
        {
            return true;
        }
        let (hash, exists) = match self.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok && exists {
            self.verified
                .lock()
                .expect("cache lock")
                .insert(user.to_owned(), tag);
        }
        ok && exists
    }
}

/// The scheme of an unsupported htpasswd hash, for the startup error.
fn scheme_name(hash: &str) -> &'static str {
    if hash.starts_with("$2a$") || hash.starts_with("$2x$") {
        "bcrypt $2a$/$2x$ (legacy)"
    } else if hash.starts_with("$apr1$") {
        "MD5 (apr1)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "crypt SHA-256/512"
    } else {
        "crypt or plain-text"
    }
}

/// The user and password of an `Authorization: Basic <base64(user:password)>` value;
/// `None` when the value is malformed.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\nalice:{hash}\n\n")).unwrap();
        assert_eq!(h.len(), 1);
        assert!(h.verify("alice", "s3cret").await);
        assert!(h.verify("alice", "s3cret").await, "from the cache");
        assert!(!h.verify("alice", "wrong").await);
        assert!(!h.verify("bob", "s3cret").await);
        assert!(!h.verify("alice", "s3cret\0").await);
    }

    #[test]
    fn unknown_users_are_checked_at_the_cost_known_ones_have() {
        let salt_and_hash = &DUMMY_HASH[6..];
        let line = |user: &str, cost: &str| format!("{user}:$2y${cost}{salt_and_hash}\n");
        // Apache `htpasswd -B` writes cost 5 by default: an unknown user must cost as much.
        let h = Htpasswd::parse(&(line("a", "05") + &line("b", "05"))).unwrap();
        assert_eq!(h.dummy_hash, format!("$2b$05{salt_and_hash}"));
        let h = Htpasswd::parse(&(line("a", "12") + &line("b", "05") + &line("c", "12"))).unwrap();
        assert_eq!(&h.dummy_hash[..7], "$2b$12$");
        let h = Htpasswd::parse(&(line("a", "07") + &line("b", "09"))).unwrap();
        assert_eq!(&h.dummy_hash[..7], "$2b$09$", "a tie: the higher cost");
        let h = Htpasswd::parse("# nobody\n").unwrap();
        assert_eq!(h.dummy_hash, DUMMY_HASH);
        assert!(bcrypt::verify("", &h.dummy_hash).is_ok_and(|ok| !ok));
    }

    #[test]
    fn rejects_other_schemes() {
        for line in [
            "u:$apr1$abc$def",
            "u:{SHA}abc=",
            "u:plain",
            "u:$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
        ] {
            let err = Htpasswd::parse(line).unwrap_err();
            assert!(err.contains("line 1"), "{err}");
            assert!(err.contains("htpasswd -B"), "{err}");
        }
        assert!(Htpasswd::parse("nocolon").is_err());
        assert!(Htpasswd::parse("u:$2y$short").is_err());
    }

    #[test]
    fn rejects_costs_outside_what_htpasswd_writes() {
        let salt_and_hash = &DUMMY_HASH[6..];
        for cost in ["03", "18", "31", "xx"] {
            let err = Htpasswd::parse(&format!("u:$2y${cost}{salt_and_hash}")).unwrap_err();
            assert!(err.contains("bcrypt cost"), "{cost}: {err}");
        }
        for cost in ["04", "10", "17"] {
            Htpasswd::parse(&format!("u:$2b${cost}{salt_and_hash}")).unwrap();
        }
    }

    #[test]
    fn basic_header() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjp0"),
            Some(("alice".into(), "s3cr:t".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic YWxpY2U="), None);
    }
}
