//! Election Safety (Raft paper, Figure 3 and §5.2): at most one leader can be elected in a
//! given term.
//!
//! Checked twice: among the servers' current states (two servers leading the same term now),
//! and against the ghost's history of every (term, leader) ever seen, which catches a second
//! leader of a term after the first one has already stepped down.

use crate::ghost::Ghost;
use crate::violation::Violation;
use crate::ELECTION_SAFETY;
use model::Server;

/// At most one leader per term, now and in the ghost's history.
///
/// # Errors
/// A [`Violation`] of [`ELECTION_SAFETY`] naming the term and both leaders.
pub fn election_safety(servers: &[Server], ghost: &Ghost) -> Result<(), Violation> {
    if let Some(d) = &ghost.double_leader {
        let detail = format!("{} and {} were both leader of {}", d.first, d.second, d.term);
        return Err(Violation::new(ELECTION_SAFETY, detail));
    }
    for (k, a) in servers.iter().enumerate().filter(|(_, s)| s.is_leader()) {
        let term = a.current_term();
        let rival = servers[k + 1..].iter().find(|b| b.is_leader() && b.current_term() == term && b.id() != a.id());
        if let Some(b) = rival {
            let detail = format!("{} and {} are both leader of {term}", a.id(), b.id());
            return Err(Violation::new(ELECTION_SAFETY, detail));
        }
        if let Some(&first) = ghost.leaders.get(&term) {
            if first != a.id() {
                let detail = format!("{} leads {term}, which {first} led before", a.id());
                return Err(Violation::new(ELECTION_SAFETY, detail));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{leader, server};

    #[test]
    fn leaders_of_different_terms_are_fine() {
        let servers = [leader(server(1, 2, &[])), leader(server(2, 3, &[])), server(3, 3, &[])];
        let ghost = Ghost::of(&servers);
        assert_eq!(election_safety(&servers, &ghost), Ok(()));
    }

    #[test]
    fn two_current_leaders_of_one_term_are_rejected() {
        let servers = [leader(server(1, 2, &[])), server(2, 2, &[]), leader(server(3, 2, &[]))];
        let err = election_safety(&servers, &Ghost::new()).unwrap_err();
        assert_eq!(err.property, ELECTION_SAFETY);
        assert!(err.detail.contains("n1 and n3"), "{err}");
    }

    #[test]
    fn a_leader_of_a_term_someone_else_led_before_is_rejected() {
        // n1 led t2 and has since moved on; now n2 leads t2.
        let mut ghost = Ghost::of(&[leader(server(1, 2, &[]))]);
        let servers = [server(1, 3, &[]), leader(server(2, 2, &[])), server(3, 2, &[])];
        let err = election_safety(&servers, &ghost).unwrap_err();
        assert!(err.detail.contains("n2 leads t2, which n1 led before"), "{err}");
        // Once the ghost has seen it too, the record alone is enough.
        ghost.observe_server(&servers[1]);
        let now = [server(1, 3, &[]), server(2, 3, &[]), server(3, 3, &[])];
        assert!(election_safety(&now, &ghost).is_err());
    }
}
