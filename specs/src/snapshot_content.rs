//! Snapshot content (Raft §7): "the snapshot ... replaces the committed entries in the log up
//! to lastIncludedIndex" — so a snapshot must *be* the state machine after those committed
//! entries: the key/value data and the duplicate table (Raft §8: the session table is part of
//! the replicated state) that the naive [`KvSpec`] replay of the committed prefix gives, and
//! `last_term` must be the term of the committed entry at `last_index`.
//!
//! The committed prefix comes from the ghost, which has seen every entry committed anywhere.

use crate::ghost::Ghost;
use crate::kv_spec::KvSpec;
use crate::violation::Violation;
use crate::SNAPSHOT_CONTENT;
use model::{LogIndex, Server, Snapshot};

/// Every server's snapshot equals the replay of the committed prefix it claims.
///
/// # Errors
/// A [`Violation`] of [`SNAPSHOT_CONTENT`] naming the server and what differs.
pub fn snapshot_content(servers: &[Server], ghost: &Ghost) -> Result<(), Violation> {
    servers.iter().try_for_each(|s| snapshot_matches(s, &s.durable.snapshot, ghost))
}

/// `snapshot`, held by `s`, equals the replay of the committed prefix it claims.
///
/// # Errors
/// As [`snapshot_content`].
pub fn snapshot_matches(s: &Server, snapshot: &Snapshot, ghost: &Ghost) -> Result<(), Violation> {
    if *snapshot == Snapshot::default() {
        return Ok(()); // no snapshot yet (the common case, kept cheap for the model checker)
    }
    let fail = |what: String| {
        let detail = format!("{}: snapshot at {}/{} {what}", s.id(), snapshot.last_index, snapshot.last_term);
        Err(Violation::new(SNAPSHOT_CONTENT, detail))
    };
    let mut commands = Vec::new();
    let mut index = LogIndex(1);
    while index <= snapshot.last_index {
        let Some((entry, _)) = ghost.committed.get(&index) else {
            return fail(format!("covers {index}, which was never seen committed"));
        };
        if index == snapshot.last_index && entry.term != snapshot.last_term {
            return fail(format!("but the entry committed there is {entry}"));
        }
        commands.push(&entry.command);
        index = index.next();
    }
    let (spec, sessions) = KvSpec::replay_sessions(commands);
    if let Some((key, expected, actual)) = spec.first_difference(&snapshot.state.data) {
        return fail(format!("has {key}={actual:?}, but the committed prefix gives {expected:?}"));
    }
    let held: Vec<_> = snapshot.state.sessions.iter().map(|(c, s)| (*c, (s.seq, s.output.clone()))).collect();
    let expected: Vec<_> = sessions.into_iter().collect();
    if held != expected {
        return fail(format!("has sessions {held:?}, but the committed prefix gives {expected:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{applied, entry, server};
    use model::Term;

    /// Server 1 with entries 1..=2 applied and compacted into a snapshot taken from its own
    /// state machine, and a ghost that saw them committed.
    fn compacted() -> (Server, Ghost) {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let mut s = applied(server(1, 1, &log), 2);
        let ghost = Ghost::of(std::slice::from_ref(&s));
        s.durable.snapshot = Snapshot { last_index: LogIndex(2), last_term: Term(1), state: s.kv.clone() };
        s.durable.log.compact_to(LogIndex(2));
        (s, ghost)
    }

    #[test]
    fn a_snapshot_of_the_committed_prefix_is_fine() {
        let (s, ghost) = compacted();
        assert_eq!(snapshot_content(&[s, server(2, 1, &[])], &ghost), Ok(()));
    }

    #[test]
    fn a_snapshot_without_the_duplicate_table_is_rejected() {
        let (mut s, ghost) = compacted();
        s.durable.snapshot.state.sessions.clear();
        let err = snapshot_content(&[s], &ghost).unwrap_err();
        assert_eq!(err.property, SNAPSHOT_CONTENT);
        assert!(err.detail.contains("has sessions []"), "{err}");
    }

    #[test]
    fn wrong_data_a_wrong_term_or_an_uncommitted_prefix_is_rejected() {
        let (s, ghost) = compacted();
        let mut data = s.clone();
        data.durable.snapshot.state.data.insert("x".into(), "a".into());
        let err = snapshot_content(&[data], &ghost).unwrap_err();
        assert!(err.detail.contains("has x=\"a\", but the committed prefix gives \"ab\""), "{err}");
        let mut term = s.clone();
        term.durable.snapshot.last_term = Term(2);
        assert!(snapshot_content(&[term], &ghost).unwrap_err().detail.contains("committed there"));
        let err = snapshot_content(&[s], &Ghost::new()).unwrap_err();
        assert!(err.detail.contains("covers i1, which was never seen committed"), "{err}");
    }
}
