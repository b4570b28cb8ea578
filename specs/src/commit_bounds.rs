//! Commit bounds (Raft Figure 2's volatile state; §5.3, §7): on every server
//! `start_index <= last_applied <= commit_index <= last log index`.
//!
//! - `last_applied <= commit_index`: only committed entries are applied (Figure 2, Rules for
//!   Servers: "If commitIndex > lastApplied: ... apply log[lastApplied]").
//! - `commit_index <= last index`: a server can only know an entry is committed if it holds
//!   it (AppendEntries receiver step 5 takes `min(leaderCommit, index of last new entry)`).
//! - `start_index <= last_applied`: a snapshot (§7) covers only applied entries, so whatever
//!   was compacted away is in the state machine.

use crate::violation::Violation;
use crate::COMMIT_BOUNDS;
use model::Server;

/// Every server's indices are in order.
///
/// # Errors
/// A [`Violation`] of [`COMMIT_BOUNDS`] naming the server and its four indices.
pub fn commit_bounds(servers: &[Server]) -> Result<(), Violation> {
    for s in servers {
        let log = s.log();
        let ordered = log.start_index() <= s.last_applied
            && s.last_applied <= s.commit_index
            && s.commit_index <= log.last_index();
        if !ordered {
            let detail = format!(
                "{}: snapshot={} last_applied={} commit_index={} last_index={}",
                s.id(),
                log.start_index(),
                s.last_applied,
                s.commit_index,
                log.last_index()
            );
            return Err(Violation::new(COMMIT_BOUNDS, detail));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{applied, entry, server};
    use model::LogIndex;

    #[test]
    fn ordered_indices_are_fine() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let mut s = applied(server(1, 1, &log), 1);
        s.commit_index = LogIndex(2); // committed, not applied yet
        assert_eq!(commit_bounds(&[server(2, 0, &[]), s]), Ok(()));
    }

    #[test]
    fn applying_beyond_commit_is_rejected() {
        let mut s = applied(server(1, 1, &[entry(1, 1, "a")]), 1);
        s.commit_index = LogIndex(0);
        let err = commit_bounds(&[s]).unwrap_err();
        assert_eq!(err.property, COMMIT_BOUNDS);
        assert!(err.detail.contains("last_applied=i1 commit_index=i0"), "{err}");
    }

    #[test]
    fn committing_beyond_the_log_is_rejected() {
        let mut s = server(2, 1, &[entry(1, 1, "a")]);
        s.commit_index = LogIndex(2);
        let err = commit_bounds(&[s]).unwrap_err();
        assert!(err.detail.contains("commit_index=i2 last_index=i1"), "{err}");
    }

    #[test]
    fn a_snapshot_beyond_the_applied_state_is_rejected() {
        let mut s = applied(server(3, 1, &[entry(1, 1, "a"), entry(1, 2, "b")]), 2);
        s.durable.log.compact_to(LogIndex(2));
        assert_eq!(commit_bounds(&[s.clone()]), Ok(()));
        s.last_applied = LogIndex(1);
        assert!(commit_bounds(&[s]).is_err());
    }
}
