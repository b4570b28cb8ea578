//! At-most-once execution (Raft paper §8, "Client interaction"; Ongaro's thesis §6.3,
//! "Implementing linearizable semantics"): each client tags its commands with a unique serial
//! number, and the state machine executes a command with a (client, seq) it has already
//! executed not again but answers it with the saved response. So no (client, seq) changes a
//! server's state machine twice.
//!
//! The state alone cannot show a second execution, so the ghost records, for every (client,
//! seq) any state machine executed (the `Note::Applied` notes of each step), the log index
//! where it ran. All servers apply one committed log, so in a correct cluster a command runs at
//! one index only: on every server, again on a server that restarts and re-applies its log, and
//! not at all on one that receives it inside a snapshot. A second index is a second execution,
//! whichever server runs it (so a snapshot that loses the duplicate table is caught when its
//! receiver executes a retry the table would have suppressed).

use crate::ghost::Ghost;
use crate::violation::Violation;
use crate::AT_MOST_ONCE;

/// No server executed a (client, seq) twice.
///
/// # Errors
/// A [`Violation`] of [`AT_MOST_ONCE`] naming the server, the command and where it ran again.
pub fn at_most_once(ghost: &Ghost) -> Result<(), Violation> {
    match &ghost.double_execution {
        None => Ok(()),
        Some(d) => {
            let detail =
                format!("{}{} executed at {} and again at {} (by {})", d.client, d.seq, d.first, d.second, d.server);
            Err(Violation::new(AT_MOST_ONCE, detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{cmd, put, server};
    use model::{LogIndex, Note, OpOutput, Output};

    fn executes(index: u64, client: u64, seq: u64) -> Output {
        let command = cmd(client, seq, put("x", "v"));
        let note = Note::Applied { index: LogIndex(index), command, output: OpOutput::Done };
        Output { notes: vec![note], ..Output::default() }
    }

    #[test]
    fn distinct_commands_and_other_servers_are_fine() {
        let (s1, s2) = (server(1, 1, &[]), server(2, 1, &[]));
        let mut ghost = Ghost::new();
        ghost.observe_step(&s1, &s1, &executes(1, 7, 1));
        ghost.observe_step(&s1, &s1, &executes(2, 7, 2));
        ghost.observe_step(&s1, &s1, &executes(3, 8, 1));
        ghost.observe_step(&s2, &s2, &executes(1, 7, 1));
        assert_eq!(at_most_once(&ghost), Ok(()));
    }

    #[test]
    fn a_second_execution_at_another_index_is_rejected() {
        let (s3, s1) = (server(3, 1, &[]), server(1, 1, &[]));
        let mut ghost = Ghost::new();
        ghost.observe_step(&s3, &s3, &executes(1, 7, 1));
        ghost.observe_step(&s1, &s1, &executes(2, 7, 1));
        let err = at_most_once(&ghost).unwrap_err();
        assert_eq!(err.property, AT_MOST_ONCE);
        assert_eq!(err.detail, "c7#1 executed at i1 and again at i2 (by n1)");
    }
}
