//! Log Matching (Raft paper, Figure 3 and §5.3): if two logs contain an entry with the same
//! index and term, then the logs are identical in all entries up through the given index.
//!
//! Within one log, terms never decrease from its start on: a leader appends only entries of
//! its own term after everything it holds, and a follower keeps only a prefix matching the
//! leader's (§5.3) — a log with a term going down holds a suffix no leader ever sent after
//! that prefix, and Log Matching between it and that leader's log can then no longer hold.
//! This is checked first, per log.
//!
//! Compared over what each log holds. A log's start `(start_index, start_term)` (the last
//! entry a snapshot covers; `(0, 0)` without one) counts as a known point whose term is
//! known but whose command is not; entries below it are not held and are not compared.

use crate::violation::Violation;
use crate::LOG_MATCHING;
use model::{Entry, Log, LogIndex, Server, Term};

/// Every pair of servers' logs satisfies Log Matching.
///
/// # Errors
/// A [`Violation`] of [`LOG_MATCHING`] naming both servers, the matching (index, term) and
/// the index below it where they differ.
pub fn log_matching(servers: &[Server]) -> Result<(), Violation> {
    servers.iter().try_for_each(terms_never_decrease)?;
    for (k, a) in servers.iter().enumerate() {
        for b in &servers[k + 1..] {
            logs_match(a, b)?;
        }
    }
    Ok(())
}

fn terms_never_decrease(s: &Server) -> Result<(), Violation> {
    let log = s.log();
    let mut previous = (log.start_index(), log.start_term());
    for (index, entry) in log.iter() {
        if entry.term < previous.1 {
            let detail = format!(
                "{} holds {} at {} after {} at {}: terms go down",
                s.id(),
                entry.term,
                index,
                previous.1,
                previous.0
            );
            return Err(Violation::new(LOG_MATCHING, detail));
        }
        previous = (index, entry.term);
    }
    Ok(())
}

/// What a log knows about one index.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known<'a> {
    Entry(&'a Entry),
    /// The log's start point: only the term is known.
    Term(Term),
}

impl Known<'_> {
    fn term(self) -> Term {
        match self {
            Known::Entry(e) => e.term,
            Known::Term(t) => t,
        }
    }

    /// Whether two logs' knowledge of one index is consistent with identical entries.
    fn agrees(self, other: Known<'_>) -> bool {
        match (self, other) {
            (Known::Entry(a), Known::Entry(b)) => a == b,
            _ => self.term() == other.term(),
        }
    }

    fn describe(self) -> String {
        match self {
            Known::Entry(e) => e.to_string(),
            Known::Term(t) => format!("snapshot point of {t}"),
        }
    }
}

fn known(log: &Log, index: LogIndex) -> Option<Known<'_>> {
    if let Some(e) = log.get(index) {
        return Some(Known::Entry(e));
    }
    (index == log.start_index()).then(|| Known::Term(log.start_term()))
}

/// Walks down from the highest index both logs cover; from the first index where both know
/// the same term, every index both know must agree.
fn logs_match(a: &Server, b: &Server) -> Result<(), Violation> {
    let (la, lb) = (a.log(), b.log());
    let bottom = la.start_index().max(lb.start_index());
    let mut index = la.last_index().min(lb.last_index());
    let mut matched: Option<(LogIndex, Term)> = None;
    while index >= bottom {
        if let (Some(x), Some(y)) = (known(la, index), known(lb, index)) {
            if matched.is_none() && x.term() == y.term() {
                matched = Some((index, x.term()));
            }
            if let Some((at, term)) = matched {
                if !x.agrees(y) {
                    let detail = format!(
                        "{} and {} both hold {term} at {at} but differ at {index}: {} vs {}",
                        a.id(),
                        b.id(),
                        x.describe(),
                        y.describe()
                    );
                    return Err(Violation::new(LOG_MATCHING, detail));
                }
            }
        }
        if index == LogIndex(0) {
            break;
        }
        index = index.prev();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{entry, server};

    #[test]
    fn diverging_suffixes_after_a_common_prefix_are_fine() {
        let servers = [
            server(1, 3, &[entry(1, 1, "a"), entry(2, 2, "b")]),
            server(2, 3, &[entry(1, 1, "a"), entry(3, 3, "c"), entry(3, 4, "d")]),
            server(3, 3, &[]),
        ];
        assert_eq!(log_matching(&servers), Ok(()));
    }

    #[test]
    fn same_term_at_an_index_with_different_earlier_entries_is_rejected() {
        let servers =
            [server(1, 2, &[entry(1, 1, "a"), entry(2, 2, "b")]), server(2, 2, &[entry(1, 1, "z"), entry(2, 2, "b")])];
        let err = log_matching(&servers).unwrap_err();
        assert_eq!(err.property, LOG_MATCHING);
        assert!(err.detail.contains("both hold t2 at i2 but differ at i1"), "{err}");
    }

    #[test]
    fn same_index_and_term_with_different_commands_is_rejected() {
        let servers = [server(1, 1, &[entry(1, 1, "a")]), server(2, 1, &[entry(1, 1, "b")])];
        let err = log_matching(&servers).unwrap_err();
        assert!(err.detail.contains("differ at i1"), "{err}");
    }

    #[test]
    fn the_start_point_counts_as_a_known_term() {
        let mut compacted = server(1, 2, &[entry(1, 1, "a"), entry(2, 2, "b"), entry(2, 3, "c")]);
        compacted.durable.log.compact_to(LogIndex(2));
        let agreeing = server(2, 2, &[entry(1, 1, "a"), entry(2, 2, "b")]);
        assert_eq!(log_matching(&[compacted.clone(), agreeing]), Ok(()));
        // Same term t2 at i3, but this log has t1 where the snapshot says t2.
        let other = server(3, 2, &[entry(1, 1, "a"), entry(1, 2, "b"), entry(2, 3, "c")]);
        let err = log_matching(&[compacted, other]).unwrap_err();
        assert!(err.detail.contains("differ at i2: snapshot point of t2"), "{err}");
    }

    #[test]
    fn a_log_whose_terms_go_down_after_its_snapshot_is_rejected() {
        let mut s = server(1, 3, &[entry(1, 1, "a"), entry(1, 2, "b")]);
        s.durable.log.cut_prefix(LogIndex(1), Term(2)); // keeps i2 of t1 after a t2 snapshot
        let err = log_matching(&[s]).unwrap_err();
        assert_eq!(err.property, LOG_MATCHING);
        assert!(err.detail.contains("n1 holds t1 at i2 after t2 at i1"), "{err}");
    }
}
