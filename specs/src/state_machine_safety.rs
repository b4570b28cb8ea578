//! State Machine Safety (Raft paper, Figure 3 and §5.4.3): if a server has applied a log entry
//! at a given index to its state machine, no other server will ever apply a different log
//! entry for the same index.
//!
//! Checked three ways:
//! 1. against history: every entry a server has applied (held, index `<= last_applied`) is the
//!    entry the ghost saw committed at that index, and no two different entries were ever
//!    seen committed at one index;
//! 2. among current states: two servers that both applied an index hold the same entry there;
//! 3. the state machine itself: a server's key/value data equals the naive [`KvSpec`] replay
//!    of its applied commands with the at-most-once rule (Raft §8), so "applied" really means
//!    "executed in log order, once". This needs the whole applied prefix, so it is skipped for
//!    a server whose log starts after a snapshot.

use crate::ghost::Ghost;
use crate::kv_spec::KvSpec;
use crate::violation::Violation;
use crate::STATE_MACHINE_SAFETY;
use model::{LogIndex, Server};

/// Applied entries are the committed ones, agree across servers, and produce the data.
///
/// # Errors
/// A [`Violation`] of [`STATE_MACHINE_SAFETY`] naming the servers, the index and the entries,
/// or the key whose value differs from the reference replay.
pub fn state_machine_safety(servers: &[Server], ghost: &Ghost) -> Result<(), Violation> {
    if let Some(c) = &ghost.commit_conflict {
        let detail = format!(
            "{} committed {} at {} in {}, where {} was committed before",
            c.server, c.second, c.index, c.term, c.first
        );
        return Err(Violation::new(STATE_MACHINE_SAFETY, detail));
    }
    for s in servers {
        applied_entries_committed(s, ghost)?;
    }
    for (k, a) in servers.iter().enumerate() {
        for b in &servers[k + 1..] {
            applied_entries_agree(a, b)?;
        }
    }
    for s in servers {
        applied_data_matches(s)?;
    }
    Ok(())
}

fn applied_entries_committed(s: &Server, ghost: &Ghost) -> Result<(), Violation> {
    for (index, entry) in s.log().iter().take_while(|(i, _)| *i <= s.last_applied) {
        if let Some((committed, _)) = ghost.committed.get(&index) {
            if committed != entry {
                let detail = format!("{} applied {entry} at {index}, where {committed} was committed", s.id());
                return Err(Violation::new(STATE_MACHINE_SAFETY, detail));
            }
        }
    }
    Ok(())
}

fn applied_entries_agree(a: &Server, b: &Server) -> Result<(), Violation> {
    let top = a.last_applied.min(b.last_applied);
    let mut index = a.log().start_index().max(b.log().start_index()).next();
    while index <= top {
        if let (Some(x), Some(y)) = (a.log().get(index), b.log().get(index)) {
            if x != y {
                let detail = format!("{} applied {x} and {} applied {y} at {index}", a.id(), b.id());
                return Err(Violation::new(STATE_MACHINE_SAFETY, detail));
            }
        }
        index = index.next();
    }
    Ok(())
}

fn applied_data_matches(s: &Server) -> Result<(), Violation> {
    let log = s.log();
    if log.start_index() != LogIndex(0) || s.last_applied > log.last_index() {
        return Ok(()); // the applied prefix is not all held (or commit bounds is broken)
    }
    let applied = log.iter().take_while(|(i, _)| *i <= s.last_applied).map(|(_, e)| &e.command);
    let spec = KvSpec::replay_dedup(applied);
    match spec.first_difference(&s.kv.data) {
        None => Ok(()),
        Some((key, expected, actual)) => {
            let detail = format!(
                "{} has {key}={actual:?} after applying 1..={}, but the log says {expected:?}",
                s.id(),
                s.last_applied.0
            );
            Err(Violation::new(STATE_MACHINE_SAFETY, detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{applied, cmd, entry, server};
    use model::{Entry, Term};

    #[test]
    fn servers_applying_the_committed_prefix_are_fine() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b"), entry(2, 3, "c")];
        let servers =
            [applied(server(1, 2, &log), 3), applied(server(2, 2, &log), 2), applied(server(3, 2, &log[..1]), 0)];
        let ghost = Ghost::of(&servers);
        assert_eq!(state_machine_safety(&servers, &ghost), Ok(()));
    }

    #[test]
    fn two_servers_applying_different_entries_are_rejected() {
        let servers = [applied(server(1, 1, &[entry(1, 1, "a")]), 1), applied(server(2, 2, &[entry(2, 1, "b")]), 1)];
        // Without history, the current states alone show it.
        let err = state_machine_safety(&servers, &Ghost::new()).unwrap_err();
        assert_eq!(err.property, STATE_MACHINE_SAFETY);
        assert!(err.detail.contains("n1 applied t1:c1#1"), "{err}");
        // With history, the ghost saw two commits at i1.
        let err = state_machine_safety(&servers, &Ghost::of(&servers)).unwrap_err();
        assert!(err.detail.contains("n2 committed t2:c1#1"), "{err}");
    }

    #[test]
    fn applying_an_entry_other_than_the_committed_one_is_rejected() {
        // n1 committed and applied i1, then crashed (gone from the current states); n2 applied
        // a different i1.
        let ghost = Ghost::of(&[applied(server(1, 1, &[entry(1, 1, "a")]), 1)]);
        let mut n2 = server(2, 2, &[entry(2, 1, "b")]);
        n2.last_applied = LogIndex(1);
        let err = state_machine_safety(&[n2], &ghost).unwrap_err();
        assert!(err.detail.contains("n2 applied t2:c1#1"), "{err}");
        assert!(err.detail.contains("where t1:c1#1"), "{err}");
    }

    #[test]
    fn data_that_is_not_the_replay_of_the_log_is_rejected() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let mut s = applied(server(1, 1, &log), 2);
        s.kv.data.insert("x".to_string(), "abb".to_string()); // an append applied twice
        let err = state_machine_safety(&[s], &Ghost::new()).unwrap_err();
        assert!(err.detail.contains("x=\"abb\" after applying 1..=2"), "{err}");
        assert!(err.detail.contains("log says \"ab\""), "{err}");
    }

    #[test]
    fn retried_commands_in_the_log_are_executed_once() {
        let retry = Entry { term: Term(1), command: cmd(1, 1, crate::fixtures::append("x", "a")) };
        let log = [entry(1, 1, "a"), retry, entry(1, 2, "b")];
        let s = applied(server(1, 1, &log), 3);
        assert_eq!(s.kv.get("x"), "ab");
        assert_eq!(state_machine_safety(&[s], &Ghost::new()), Ok(()));
    }

    #[test]
    fn a_compacted_server_skips_only_the_replay() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let mut s = applied(server(1, 1, &log), 2);
        s.durable.log.compact_to(LogIndex(1));
        s.kv.data.clear(); // cannot be judged without the compacted prefix
        assert_eq!(state_machine_safety(&[s.clone()], &Ghost::new()), Ok(()));
        let other = applied(server(2, 1, &[entry(1, 1, "a"), entry(1, 2, "z")]), 2);
        assert!(state_machine_safety(&[s, other], &Ghost::new()).is_err());
    }
}
