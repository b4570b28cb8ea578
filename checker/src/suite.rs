//! The suites of configurations: `default` (what `cargo run --release -p checker` explores,
//! within 5 minutes on 2 cores) and `deep` (`--suite deep`, for long runs). Each run is
//! exhaustive within its bounds; `docs/checker.md` gives their sizes and times.

use crate::setup::{Delivery, Setup};

/// Which suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Default,
    Deep,
}

/// The runs of a suite, each with a one-line title.
pub fn runs(which: Which) -> Vec<(&'static str, Setup)> {
    match which {
        Which::Default => default_runs(),
        Which::Deep => deep_runs(),
    }
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
            "3 servers, 2 clerks: an Append races a Get across a leader change (terms <= 2, 2 elections), FIFO links",
            Setup { max_term: 2, max_elections: Some(2), delivery: Delivery::Fifo, ..base.clone() },
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
}
