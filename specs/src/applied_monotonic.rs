//! Applied state never goes back (Raft Figure 2 and §5.1): within one incarnation of a server,
//! no step decreases `current_term` ("terms ... increase monotonically"), `commit_index` or
//! `last_applied` (both "increases monotonically"), so a client never sees the state machine
//! un-apply an operation.
//!
//! This relates two consecutive states of one server, so it is checked on every step, not on
//! a single state. It does not apply across a crash and restart: the restored server starts
//! with `commit_index = last_applied = 0` (Figure 2: volatile state is "initialized to 0 on
//! first boot") and re-applies its log; only `current_term`, being durable, survives, and the
//! runtime's persistence contract, not this check, is what guards it there.

use crate::violation::Violation;
use crate::APPLIED_MONOTONIC;
use model::Server;

/// `after` (the state right after one step of `before`) has not gone back.
///
/// # Errors
/// A [`Violation`] of [`APPLIED_MONOTONIC`] naming the server and the value that decreased.
pub fn applied_monotonic(before: &Server, after: &Server) -> Result<(), Violation> {
    let went_back = |what: &str, from: String, to: String| {
        let detail = format!("{}: {what} went back from {from} to {to}", after.id());
        Err(Violation::new(APPLIED_MONOTONIC, detail))
    };
    if after.current_term() < before.current_term() {
        let (from, to) = (before.current_term(), after.current_term());
        return went_back("current_term", from.to_string(), to.to_string());
    }
    if after.commit_index < before.commit_index {
        let (from, to) = (before.commit_index, after.commit_index);
        return went_back("commit_index", from.to_string(), to.to_string());
    }
    if after.last_applied < before.last_applied {
        let (from, to) = (before.last_applied, after.last_applied);
        return went_back("last_applied", from.to_string(), to.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{applied, entry, server};
    use model::{LogIndex, Term};

    #[test]
    fn progress_and_standing_still_are_fine() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let before = applied(server(1, 1, &log), 1);
        assert_eq!(applied_monotonic(&before, &before), Ok(()));
        let after = applied(server(1, 2, &log), 2);
        assert_eq!(applied_monotonic(&before, &after), Ok(()));
    }

    #[test]
    fn a_step_that_unapplies_is_rejected() {
        let log = [entry(1, 1, "a"), entry(1, 2, "b")];
        let before = applied(server(1, 1, &log), 2);
        let mut after = before.clone();
        after.last_applied = LogIndex(1);
        let err = applied_monotonic(&before, &after).unwrap_err();
        assert_eq!(err.property, APPLIED_MONOTONIC);
        assert!(err.detail.contains("last_applied went back from i2 to i1"), "{err}");
        let after = applied(server(1, 1, &log), 1);
        let err = applied_monotonic(&before, &after).unwrap_err();
        assert!(err.detail.contains("commit_index went back"), "{err}");
    }

    #[test]
    fn a_step_that_lowers_the_term_is_rejected() {
        let before = server(2, 3, &[]);
        let mut after = before.clone();
        after.durable.current_term = Term(2);
        let err = applied_monotonic(&before, &after).unwrap_err();
        assert!(err.detail.contains("current_term went back from t3 to t2"), "{err}");
    }
}
