//! A bound on the upload sessions open per repository, so that one client cannot fill the
//! storage with sessions (`POST /v2/<name>/blobs/uploads/` answers 429 `TOOMANYREQUESTS`
//! past [`RegistryOptions::max_upload_sessions`](super::RegistryOptions::max_upload_sessions)).
//!
//! The count is kept by this process: sessions it opened, forgotten when they are finished
//! or cancelled, or after [`SESSION_IDLE`] without a chunk (abandoned). Sessions live in the
//! storage and any instance may continue one; the bound is per instance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session without activity for this long no longer counts as open.
pub const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);

/// Open sessions per repository.
#[derive(Debug, Default)]
pub struct SessionCounter {
    open: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl SessionCounter {
    /// Whether `repository` has fewer than `max` open sessions (`max == 0`: no bound).
    pub fn has_room(&self, repository: &str, max: usize) -> bool {
        if max == 0 {
            return true;
        }
        let mut open = self.open.lock().expect("sessions lock");
        let Some(sessions) = open.get_mut(repository) else {
            return true;
        };
        if sessions.len() >= max {
            let now = Instant::now();
            sessions.retain(|_, seen| now.duration_since(*seen) < SESSION_IDLE);
        }
        sessions.len() < max
    }

    /// Records a session as opened or active.
    pub fn touch(&self, repository: &str, id: &str) {
        let mut open = self.open.lock().expect("sessions lock");
        open.entry(repository.to_owned())
            .or_default()
            .insert(id.to_owned(), Instant::now());
    }

    /// Forgets a finished or cancelled session.
    pub fn close(&self, repository: &str, id: &str) {
        let mut open = self.open.lock().expect("sessions lock");
        if let Some(sessions) = open.get_mut(repository) {
            sessions.remove(id);
            if sessions.is_empty() {
                open.remove(repository);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_repository() {
        let c = SessionCounter::default();
        assert!(c.has_room("a", 2));
        c.touch("a", "1");
        c.touch("a", "2");
        assert!(!c.has_room("a", 2));
        assert!(c.has_room("b", 2));
        assert!(c.has_room("a", 0));
        c.close("a", "1");
        assert!(c.has_room("a", 2));
    }
}
