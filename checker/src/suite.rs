//! The suites of configurations: `default` (what `cargo run --release -p checker` explores,
//! within 5 minutes on 2 cores), `deep` (`--suite deep`, for long runs) and `figure8` (one
//! named run, four terms). Each run is exhaustive within its bounds; `docs/checker.md` gives
//! their sizes and times.

use crate::setup::{Delivery, Setup};
use model::NodeId;

/// Which suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Default,
    Deep,
    /// Raft's Figure 8 in four terms, under a minute: the one configuration deep enough for an
    /// old-term entry counted onto a majority and then overwritten.
    Figure8,
}

/// The runs of a suite, each with a one-line title.
pub fn runs(which: Which) -> Vec<(&'static str, Setup)> {
    match which {
        Which::Default => default_runs(),
        Which::Deep => deep_runs(),
        Which::Figure8 => vec![figure8()],
    }
}

/// The `sometimes` goals a suite must reach (`None`: every one). The figure8 run has one
/// clerk with one operation and no crash, so it cannot reach the goals about reads, duplicates
/// and recovery; it must reach the leader change with a request pending.
pub fn goals(which: Which) -> Option<&'static [&'static str]> {
    use crate::properties::{LEADER_ELECTED, OPERATION_COMPLETES, RETRIED_AT_NEW_LEADER};
    match which {
        Which::Default | Which::Deep => None,
        Which::Figure8 => Some(&[LEADER_ELECTED, OPERATION_COMPLETES, RETRIED_AT_NEW_LEADER]),
    }
}

/// Figure 8 of the Raft paper with three servers: n3 leads t1 and appends an entry, n1 leads
/// t2 and appends a rival one, n3 leads t3 and may not commit its t1 entry by counting
/// replicas, n1 may lead t4 with its t2 entry. Four terms are too many to exhaust with every
/// server standing, so only n1 and n3 stand (n2 votes and follows) and no election is split
/// (four timeouts in all); FIFO links, one clerk, one entry per log.
pub fn figure8() -> (&'static str, Setup) {
    (
        "3 servers, 1 clerk, terms <= 4 (4 elections, only n1 and n3 stand), log <= 1, FIFO links: Figure 8 in full",
        Setup {
            delivery: Delivery::Fifo,
            max_term: 4,
            max_elections: Some(4),
            candidates: Some(vec![NodeId(1), NodeId(3)]),
            ..Setup::quiet(3, 1, 1)
        },
    )
}

fn default_runs() -> Vec<(&'static str, Setup)> {
    let base = Setup { max_log: 2, ..Setup::quiet(3, 2, 1) };
    let two = Setup { servers: 2, clerks: 1, ..base.clone() };
    vec![
        (
            "3 servers, 1 clerk, terms <= 3 (3 elections), FIFO links: Figure 8 territory",
            Setup { clerks: 1, max_term: 3, max_elections: Some(3), delivery: Delivery::Fifo, ..base.clone() },
        ),
        (
            "3 servers, 1 clerk, terms <= 2 (2 elections), a crash, a snapshot after every entry, FIFO links",
            Setup {
                clerks: 1,
                ops_per_clerk: 2,
                max_term: 2,
                max_elections: Some(2),
                max_crashes: 1,
                max_raft_state: Some(1),
                delivery: Delivery::Fifo,
                ..base.clone()
            },
        ),
        (
            "3 servers, 2 clerks: an Append races a Get across a leader change (terms <= 2, 2 elections, n1 and n2 stand), FIFO links, loss",
            Setup {
                max_term: 2,
                max_elections: Some(2),
                candidates: Some(vec![NodeId(1), NodeId(2)]),
                delivery: Delivery::Fifo,
                lossy: true,
                ..base.clone()
            },
        ),
        ("3 servers, 2 clerks: an Append races a Get, messages reordered", base.clone()),
        (
            "3 servers, 1 clerk: messages lost, a crash",
            Setup { clerks: 1, lossy: true, max_crashes: 1, max_log: 1, ..base.clone() },
        ),
        (
            "2 servers: messages lost, a crash, heartbeats, clerk retries",
            Setup { lossy: true, max_crashes: 1, max_log: 1, heartbeats: true, clerk_timeouts: true, ..two.clone() },
        ),
        (
            "2 servers: leader change, clerk retries, heartbeats",
            Setup { max_term: 2, clerk_timeouts: true, heartbeats: true, ..two.clone() },
        ),
        (
            "2 servers: duplicated messages",
            Setup { delivery: Delivery::Duplicate, max_log: 1, clerk_timeouts: true, heartbeats: true, ..two.clone() },
        ),
        (
            "2 servers: FIFO links, loss, Append then Get",
            Setup {
                delivery: Delivery::Fifo,
                lossy: true,
                ops_per_clerk: 2,
                clerk_timeouts: true,
                heartbeats: true,
                ..two
            },
        ),
    ]
}

fn deep_runs() -> Vec<(&'static str, Setup)> {
    let base = Setup { max_log: 2, ..Setup::quiet(3, 2, 1) };
    vec![
        (
            "3 servers, 2 clerks, terms <= 2, messages reordered and lost",
            Setup { max_term: 2, lossy: true, ..base.clone() },
        ),
        (
            "3 servers, 1 clerk, terms <= 3, log <= 2, messages reordered",
            Setup { clerks: 1, max_term: 3, ..base.clone() },
        ),
        (
            "3 servers, 1 clerk, terms <= 2, a crash, a snapshot after every entry",
            Setup { clerks: 1, ops_per_clerk: 2, max_term: 2, max_crashes: 1, max_raft_state: Some(1), ..base.clone() },
        ),
        (
            "3 servers, 1 clerk: a snapshot after every entry (--max-raft-state 1), a crash, messages reordered",
            Setup { clerks: 1, ops_per_clerk: 2, max_crashes: 1, max_raft_state: Some(1), ..base.clone() },
        ),
        (
            "3 servers, 2 clerks, terms <= 3, loss, a crash, snapshots",
            Setup { max_term: 3, lossy: true, max_crashes: 1, max_raft_state: Some(1), ..base },
        ),
        figure8(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default suite keeps the shapes it promises: leader changes among three servers
    /// (terms <= 3), two clerks racing across a leader change, a crash with snapshots in a
    /// second term; every run bounded (no run may silently become unbounded).
    #[test]
    fn the_default_suite_reaches_second_and_third_terms_with_three_servers() {
        let runs = runs(Which::Default);
        let three = |s: &Setup| s.servers == 3;
        assert!(runs.iter().any(|(_, s)| three(s) && s.max_term >= 3 && s.max_log >= 2));
        assert!(runs.iter().any(|(_, s)| three(s) && s.clerks == 2 && s.max_term >= 2 && s.max_log >= 2));
        assert!(runs
            .iter()
            .any(|(_, s)| three(s) && s.max_term >= 2 && s.max_crashes >= 1 && s.max_raft_state == Some(1)));
        let mut titles: Vec<_> = runs.iter().map(|(t, _)| *t).collect();
        titles.sort_unstable();
        titles.dedup();
        assert_eq!(titles.len(), runs.len(), "titles are unique");
    }

    /// The figure8 run is what its title says (four terms, two rivals), and its goals are
    /// `sometimes` properties of the checker (a misspelt goal would never be sought).
    #[test]
    fn the_figure8_run_has_four_terms_two_rivals_and_real_goals() {
        let (_, setup) = figure8();
        assert_eq!((setup.servers, setup.max_term), (3, 4));
        assert!(setup.validate().is_ok());
        let stand: Vec<bool> = setup.server_ids().into_iter().map(|n| setup.may_stand(n)).collect();
        assert_eq!(stand, [true, false, true]);
        let sometimes: Vec<&str> = crate::properties::all()
            .iter()
            .filter(|p| p.expectation == stateright::Expectation::Sometimes)
            .map(|p| p.name)
            .collect();
        for goal in goals(Which::Figure8).unwrap() {
            assert!(sometimes.contains(goal), "{goal}");
        }
        assert!(runs(Which::Deep).iter().any(|(_, s)| *s == setup));
    }

    /// `--candidates` reaches the actions: from the initial state only the named servers may
    /// time out for an election; without it, every server may.
    #[test]
    fn only_candidates_get_an_election_timeout() {
        let standing = |setup: Setup| {
            let system = crate::System::new(setup);
            let mut actions = Vec::new();
            system.actions(&system.initial_state(), &mut actions);
            let mut ids: Vec<u32> = actions
                .iter()
                .filter_map(|a| match a {
                    crate::system::Action::Timeout(n, model::Timer::Election) => Some(n.0),
                    _ => None,
                })
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(standing(figure8().1), [1, 3]);
        assert_eq!(standing(Setup { candidates: None, ..figure8().1 }), [1, 2, 3]);
    }

    #[test]
    fn candidates_must_be_servers_of_the_cluster() {
        let bad = Setup { candidates: Some(vec![NodeId(4)]), ..Setup::quiet(3, 1, 1) };
        assert!(bad.validate().unwrap_err().contains("--candidates"));
        let none = Setup { candidates: Some(vec![]), ..Setup::quiet(3, 1, 1) };
        assert!(none.validate().is_err());
    }
}
