//! Leader Completeness (Raft paper, Figure 3 and §5.4, proved in §5.4.3): if a log entry is
//! committed in a given term, then that entry will be present in the logs of the leaders for
//! all higher-numbered terms.
//!
//! "Committed in term t" comes from the ghost: for each index, the entry and the smallest term
//! in which some server was seen to have it committed. An index a leader has compacted into
//! its snapshot is covered by it (only the snapshot point's term can be compared).

use crate::ghost::Ghost;
use crate::violation::Violation;
use crate::LEADER_COMPLETENESS;
use model::Server;

/// Every current leader holds every entry committed in an earlier term.
///
/// # Errors
/// A [`Violation`] of [`LEADER_COMPLETENESS`] naming the leader, the index, the committed entry
/// and what the leader holds there instead.
pub fn leader_completeness(servers: &[Server], ghost: &Ghost) -> Result<(), Violation> {
    for l in servers.iter().filter(|s| s.is_leader()) {
        let log = l.log();
        for (&index, (entry, term)) in &ghost.committed {
            if *term >= l.current_term() || index < log.start_index() {
                continue;
            }
            let holds =
                if index == log.start_index() { log.start_term() == entry.term } else { log.get(index) == Some(entry) };
            if !holds {
                let has = log.get(index).map_or_else(|| "nothing".to_string(), ToString::to_string);
                let detail = format!(
                    "leader {} of {} lacks {entry} committed at {index} in {term}; it holds {has}",
                    l.id(),
                    l.current_term()
                );
                return Err(Violation::new(LEADER_COMPLETENESS, detail));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{applied, entry, leader, server};
    use model::LogIndex;

    #[test]
    fn a_leader_holding_every_earlier_commit_is_fine() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let ghost = Ghost::of(&[applied(server(2, 1, &log), 2)]);
        let servers = [leader(server(1, 2, &log)), server(2, 2, &log), server(3, 1, &[])];
        assert_eq!(leader_completeness(&servers, &ghost), Ok(()));
    }

    #[test]
    fn a_leader_missing_an_earlier_commit_is_rejected() {
        let ghost = Ghost::of(&[applied(server(2, 1, &[entry(1, 1, "a"), entry(1, 2, "b")]), 2)]);
        let servers = [leader(server(3, 2, &[entry(1, 1, "a")])), server(2, 2, &[])];
        let err = leader_completeness(&servers, &ghost).unwrap_err();
        assert_eq!(err.property, LEADER_COMPLETENESS);
        assert!(err.detail.contains("leader n3 of t2 lacks t1:c1#2"), "{err}");
        assert!(err.detail.contains("holds nothing"), "{err}");
    }

    #[test]
    fn a_leader_with_a_different_entry_is_rejected() {
        let ghost = Ghost::of(&[applied(server(2, 1, &[entry(1, 1, "a")]), 1)]);
        let servers = [leader(server(3, 2, &[entry(2, 1, "z")]))];
        let err = leader_completeness(&servers, &ghost).unwrap_err();
        assert!(err.detail.contains("it holds t2:c1#1"), "{err}");
    }

    #[test]
    fn commits_of_the_leaders_own_or_later_terms_are_not_required() {
        // Committed in t2 by its leader; a stale leader of t2 elsewhere is judged by election
        // safety, and a leader of t1 may lag.
        let ghost = Ghost::of(&[applied(server(2, 2, &[entry(2, 1, "a")]), 1)]);
        let servers = [leader(server(1, 1, &[])), leader(server(3, 2, &[]))];
        assert_eq!(leader_completeness(&servers, &ghost), Ok(()));
    }

    #[test]
    fn a_compacted_commit_is_covered_by_the_snapshot_point() {
        let ghost = Ghost::of(&[applied(server(2, 1, &[entry(1, 1, "a"), entry(1, 2, "b")]), 2)]);
        let mut l = leader(server(1, 2, &[entry(1, 1, "a"), entry(1, 2, "b")]));
        l.durable.log.compact_to(LogIndex(2));
        assert_eq!(leader_completeness(&[l], &ghost), Ok(()));
    }
}
