//! The lease a collection holds on the condemned set it stored: the set carries a deadline
//! a few minutes ahead, which the run moves forward by storing the set again while it works,
//! so that the set of a collection that died stops blocking pushes soon after (see "Crashes
//! and stale sets" in the [`lifecycle`](crate::storage::lifecycle) docs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::condemned::{Condemned, secs};
use crate::storage::layout::Key;
use crate::storage::lifecycle::{CLOCK_MARGIN, SET_LEASE, SET_RENEWAL};

/// How long a condemned set is held for at a time, and when it is removed as a dead
/// collection's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseTerms {
    /// A set's deadline lies this long after the write that stored it began.
    pub(crate) length: Duration,
    /// A run stores its set again this long after the last write of it began.
    pub(crate) renew_after: Duration,
    /// A collection removes another's set only this long after the set's deadline.
    pub(crate) clock_margin: Duration,
}

impl LeaseTerms {
    /// The terms every collection uses ([`SET_LEASE`], [`SET_RENEWAL`], [`CLOCK_MARGIN`]).
    pub(crate) const STANDARD: Self = Self {
        length: SET_LEASE,
        renew_after: SET_RENEWAL,
        clock_margin: CLOCK_MARGIN,
    };

    /// The deadline of a set whose write begins at `start`, in whole seconds (the stored
    /// form) and never later than what is stored.
    fn deadline(&self, start: SystemTime) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs(start + self.length))
    }
}

/// The condemned set a run holds: its key, what it lists, and its lease.
#[derive(Debug)]
pub(super) struct HeldSet {
    pub(super) key: Key,
    /// The set's entries, without the header that carries the deadline.
    entries: Bytes,
    /// The deadline last stored (by a write that completed before the one before it
    /// passed): the run deletes nothing from then on.
    deadline: SystemTime,
    /// When to store the set again.
    renew_at: SystemTime,
}

/// The state of a lease at some instant.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LeaseState {
    /// Held: the run may delete.
    Held,
    /// Held, and time to store the set again.
    Due,
    /// Run out: the run must not delete anything more (another collection may remove the
    /// set soon).
    Lost,
}

impl HeldSet {
    /// The set `set` about to be stored under `key` by a write beginning at `start`, and
    /// what to store.
    pub(super) fn new(
        key: Key,
        set: &Condemned,
        terms: &LeaseTerms,
        start: SystemTime,
    ) -> (Self, Bytes) {
        let held = Self {
            key,
            entries: set.encode_entries(),
            deadline: terms.deadline(start),
            renew_at: start + terms.renew_after,
        };
        let stored = held.stored(held.deadline);
        (held, stored)
    }

    /// What to store for the set with `deadline`.
    fn stored(&self, deadline: SystemTime) -> Bytes {
        Condemned::stored(secs(deadline), &self.entries)
    }

    /// The state of the lease at `now`.
    pub(super) fn state(&self, now: SystemTime) -> LeaseState {
        if now >= self.deadline {
            LeaseState::Lost
        } else if now >= self.renew_at {
            LeaseState::Due
        } else {
            LeaseState::Held
        }
    }

    /// What to store to renew the lease with a write beginning at `start`, and the renewal
    /// to [`confirm`](Self::confirm) once that write completed.
    pub(super) fn renewal(&self, terms: &LeaseTerms, start: SystemTime) -> (Renewal, Bytes) {
        let renewal = Renewal {
            deadline: terms.deadline(start),
            renew_at: start + terms.renew_after,
        };
        (renewal, self.stored(renewal.deadline))
    }

    /// Takes the renewal whose write completed at `now`; `false` (the lease is lost) when
    /// that was at or after the deadline it replaces: another collection may then have read
    /// the old deadline, found it expired and removed the set.
    pub(super) fn confirm(&mut self, renewal: Renewal, now: SystemTime) -> bool {
        if now >= self.deadline {
            return false;
        }
        self.deadline = renewal.deadline;
        self.renew_at = renewal.renew_at;
        true
    }
}

/// A renewal written, not yet confirmed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Renewal {
    deadline: SystemTime,
    renew_at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Digest, DigestAlgorithm};
    use crate::storage::layout;

    fn held(terms: &LeaseTerms, start: SystemTime) -> (HeldSet, Bytes) {
        let mut set = Condemned::default();
        set.add_blob(Digest::compute(DigestAlgorithm::Sha256, b"x"));
        HeldSet::new(layout::gc_marker("run-1"), &set, terms, start)
    }

    #[test]
    fn a_set_is_stored_with_a_deadline_one_lease_ahead_and_renewed_before_it() {
        let terms = LeaseTerms::STANDARD;
        let start = UNIX_EPOCH + Duration::from_millis(1_000_500);
        let (held, stored) = held(&terms, start);
        let decoded = Condemned::decode(&stored).unwrap();
        assert_eq!(decoded.deadline, 1_000 + SET_LEASE.as_secs());
        assert!(decoded.condemns_blob(
            &crate::oci::RepositoryName::parse("a").unwrap(),
            &Digest::compute(DigestAlgorithm::Sha256, b"x")
        ));
        assert_eq!(held.state(start), LeaseState::Held);
        assert_eq!(held.state(start + SET_RENEWAL), LeaseState::Due);
        // Whole seconds, never later than stored: lost half a second before start + lease.
        assert_eq!(held.state(start + SET_LEASE), LeaseState::Lost);
        assert_eq!(
            held.state(start + SET_LEASE - Duration::from_millis(501)),
            LeaseState::Due
        );
    }

    #[test]
    fn a_renewal_counts_only_when_its_write_completed_before_the_old_deadline() {
        let terms = LeaseTerms::STANDARD;
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let (mut held, _) = held(&terms, start);
        let renew = start + SET_RENEWAL;
        let (renewal, stored) = held.renewal(&terms, renew);
        assert_eq!(
            Condemned::decode(&stored).unwrap().deadline,
            secs(renew + SET_LEASE)
        );
        assert!(held.confirm(renewal, renew + Duration::from_secs(1)));
        assert_eq!(held.state(start + SET_LEASE), LeaseState::Due);
        assert_eq!(held.state(renew + SET_LEASE), LeaseState::Lost);

        let (mut late, _) = self::held(&terms, start);
        let (renewal, _) = late.renewal(&terms, renew);
        assert!(!late.confirm(renewal, start + SET_LEASE));
        assert_eq!(late.state(start + SET_LEASE), LeaseState::Lost);
    }
}
