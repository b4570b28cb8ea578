//! The scenario table: each of the course's kvraft tests (docs/lab-tests.md, "The 23 kvraft
//! tests") under a snake_case name, and the Raft tests ("The 28 Raft tests" there) the
//! simulator ports.

use super::kv::{self, Generic};
use super::raft;
use super::raft_concurrent;
use super::raft_persist;
use super::raft_snap;
use super::world::{Sim, SimConfig, SimResult};
use super::LINEARIZABILITY_BUDGET;

/// How a scenario sets up its cluster and what it does.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// The course's GenericTest with these parameters.
    Generic(Generic),
    /// A test with its own script.
    Special { config: fn() -> SimConfig, body: fn(&mut Sim) -> SimResult<()> },
}

/// Where a scenario comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// The course's kvraft tests (Lab 3, docs/lab-tests.md, "The 23 kvraft tests").
    Kv,
    /// The course's Raft tests (Lab 2, docs/lab-tests.md, "The 28 Raft tests").
    Raft,
    /// Beyond the course: a lab test under a tighter bound, or faults the lab never combines.
    Extra,
}

/// One scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// The course's test it ports (or what it adds).
    pub lab: &'static str,
    pub suite: Suite,
    pub kind: Kind,
    /// An inconclusive linearizability search passes (reported as such) instead of failing.
    pub unknown_allowed: bool,
    /// Search steps per key for the final linearizability check.
    pub budget: u64,
}

impl Scenario {
    pub fn config(&self) -> SimConfig {
        match self.kind {
            Kind::Generic(g) => g.config(),
            Kind::Special { config, .. } => config(),
        }
    }

    /// Runs the scenario's script on `sim`.
    ///
    /// # Errors
    /// The first failed assertion or broken invariant.
    pub fn body(&self, sim: &mut Sim) -> SimResult<()> {
        match self.kind {
            Kind::Generic(g) => kv::generic(sim, &g),
            Kind::Special { body, .. } => body(sim),
        }
    }
}

const fn generic(name: &'static str, lab: &'static str, g: Generic) -> Scenario {
    let suite = if g.long_reordering || g.duplicate { Suite::Extra } else { Suite::Kv };
    Scenario { name, lab, suite, kind: Kind::Generic(g), unknown_allowed: false, budget: LINEARIZABILITY_BUDGET }
}

const fn special(
    name: &'static str,
    lab: &'static str,
    suite: Suite,
    config: fn() -> SimConfig,
    body: fn(&mut Sim) -> SimResult<()>,
) -> Scenario {
    Scenario {
        name,
        lab,
        suite,
        kind: Kind::Special { config, body },
        unknown_allowed: false,
        budget: LINEARIZABILITY_BUDGET,
    }
}

/// `GenericTest(nclients, nservers, unreliable, crash, partitions, maxraftstate, randomkeys)`.
const fn g(
    nclients: usize,
    nservers: u32,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    max_raft_state: Option<u64>,
    random_keys: bool,
) -> Generic {
    Generic {
        nclients,
        nservers,
        unreliable,
        crash,
        partitions,
        max_raft_state,
        random_keys,
        long_reordering: false,
        duplicate: false,
    }
}

const SNAP: Option<u64> = Some(1000);

/// Every scenario, in the course's order: 3A, 3B, then the Raft tests.
#[allow(clippy::too_many_lines)] // a table: one line per scenario
pub fn all() -> Vec<Scenario> {
    vec![
        generic("basic_3a", "TestBasic3A", g(1, 5, false, false, false, None, false)),
        special("speed_3a", "TestSpeed3A", Suite::Kv, kv::speed_config_3a, kv::speed),
        generic("concurrent_3a", "TestConcurrent3A", g(5, 5, false, false, false, None, false)),
        generic("unreliable_3a", "TestUnreliable3A", g(5, 5, true, false, false, None, false)),
        // Linearizability is decided by the scenario itself (`kv::appends_linearizable`); the
        // generic search gets a small budget and may give up.
        Scenario {
            unknown_allowed: true,
            budget: 20_000,
            ..special("unreliable_one_key_3a", "TestUnreliableOneKey3A", Suite::Kv, kv::unreliable_one_key_config, kv::unreliable_one_key)
        },
        special("one_partition_3a", "TestOnePartition3A", Suite::Kv, kv::one_partition_config, kv::one_partition),
        generic("many_partitions_one_client_3a", "TestManyPartitionsOneClient3A", g(1, 5, false, false, true, None, false)),
        generic("many_partitions_many_clients_3a", "TestManyPartitionsManyClients3A", g(5, 5, false, false, true, None, false)),
        generic("persist_one_client_3a", "TestPersistOneClient3A", g(1, 5, false, true, false, None, false)),
        generic("persist_concurrent_3a", "TestPersistConcurrent3A", g(5, 5, false, true, false, None, false)),
        generic("persist_concurrent_unreliable_3a", "TestPersistConcurrentUnreliable3A", g(5, 5, true, true, false, None, false)),
        generic("persist_partition_3a", "TestPersistPartition3A", g(5, 5, false, true, true, None, false)),
        generic("persist_partition_unreliable_3a", "TestPersistPartitionUnreliable3A", g(5, 5, true, true, true, None, false)),
        generic(
            "persist_partition_unreliable_linearizable_3a",
            "TestPersistPartitionUnreliableLinearizable3A",
            g(15, 7, true, true, true, None, true),
        ),
        special("snapshot_rpc_3b", "TestSnapshotRPC3B", Suite::Kv, kv::snapshot_rpc_config, kv::snapshot_rpc),
        special("snapshot_rpc_tight_3b", "TestSnapshotRPC3B, max_raft_state 200", Suite::Extra, kv::snapshot_rpc_tight_config, kv::snapshot_rpc_tight),
        special("snapshot_size_3b", "TestSnapshotSize3B", Suite::Kv, kv::snapshot_size_config, kv::snapshot_size),
        special("speed_3b", "TestSpeed3B", Suite::Kv, kv::speed_config_3b, kv::speed),
        generic("snapshot_recover_3b", "TestSnapshotRecover3B", g(1, 5, false, true, false, SNAP, false)),
        generic("snapshot_recover_many_clients_3b", "TestSnapshotRecoverManyClients3B", g(20, 5, false, true, false, SNAP, false)),
        generic("snapshot_unreliable_3b", "TestSnapshotUnreliable3B", g(5, 5, true, false, false, SNAP, false)),
        generic("snapshot_unreliable_recover_3b", "TestSnapshotUnreliableRecover3B", g(5, 5, true, true, false, SNAP, false)),
        generic(
            "snapshot_unreliable_recover_concurrent_partition_3b",
            "TestSnapshotUnreliableRecoverConcurrentPartition3B",
            g(5, 5, true, true, true, SNAP, false),
        ),
        generic(
            "snapshot_unreliable_recover_concurrent_partition_linearizable_3b",
            "TestSnapshotUnreliableRecoverConcurrentPartitionLinearizable3B",
            g(15, 7, true, true, true, SNAP, true),
        ),
        generic(
            "extra_all_faults_long_reordering_duplicates",
            "beyond the lab: 5 clients on random keys, 5 servers, unreliable with labrpc's long reordering and 5% duplicates, crashes, partitions, max_raft_state 1000",
            Generic { long_reordering: true, duplicate: true, ..g(5, 5, true, true, true, SNAP, true) },
        ),
        special("initial_election_2a", "TestInitialElection2A", Suite::Raft, raft::three, raft::initial_election),
        special("re_election_2a", "TestReElection2A", Suite::Raft, raft::three, raft::re_election),
        special("many_elections_2a", "TestManyElections2A", Suite::Raft, raft::seven, raft::many_elections),
        special("basic_agree_2b", "TestBasicAgree2B", Suite::Raft, raft::three, raft::basic_agree),
        special("fail_agree_2b", "TestFailAgree2B", Suite::Raft, raft::three, raft::fail_agree),
        special("fail_no_agree_2b", "TestFailNoAgree2B", Suite::Raft, raft::five, raft::fail_no_agree),
        special("rejoin_2b", "TestRejoin2B", Suite::Raft, raft::three, raft::rejoin),
        special("backup_2b", "TestBackup2B", Suite::Raft, raft::five, raft::backup),
        special("count_2b", "TestCount2B", Suite::Raft, raft::three, raft::count),
        special("persist1_2c", "TestPersist12C", Suite::Raft, raft::three, raft_persist::persist1),
        special("persist2_2c", "TestPersist22C", Suite::Raft, raft::five, raft_persist::persist2),
        special("persist3_2c", "TestPersist32C", Suite::Raft, raft::three, raft_persist::persist3),
        special("figure8_2c", "TestFigure82C", Suite::Raft, raft::five, raft_persist::figure8),
        special("figure8_unreliable_2c", "TestFigure8Unreliable2C", Suite::Raft, raft::five_unreliable, raft_persist::figure8_unreliable),
        special("follower_failure_2b", "TestFollowerFailure2B", Suite::Raft, raft::three, raft::follower_failure),
        special("leader_failure_2b", "TestLeaderFailure2B", Suite::Raft, raft::three, raft::leader_failure),
        special("concurrent_starts_2b", "TestConcurrentStarts2B", Suite::Raft, raft::three, raft_concurrent::concurrent_starts),
        special("unreliable_agree_2c", "TestUnreliableAgree2C", Suite::Raft, raft::five_unreliable, raft_concurrent::unreliable_agree),
        special("reliable_churn_2c", "TestReliableChurn2C", Suite::Raft, raft::five, raft_concurrent::churn),
        special("unreliable_churn_2c", "TestUnreliableChurn2C", Suite::Raft, raft::five_unreliable, raft_concurrent::churn),
        special("rpc_bytes_2b", "TestRPCBytes2B", Suite::Raft, raft::three, raft_snap::rpc_bytes),
        special("snapshot_basic_2d", "TestSnapshotBasic2D", Suite::Raft, raft_snap::three_snapshots, raft_snap::snapshot_basic),
        special("snapshot_install_2d", "TestSnapshotInstall2D", Suite::Raft, raft_snap::three_snapshots, raft_snap::snapshot_install),
        special(
            "snapshot_install_unreliable_2d",
            "TestSnapshotInstallUnreliable2D",
            Suite::Raft,
            raft_snap::three_snapshots_unreliable,
            raft_snap::snapshot_install,
        ),
        special(
            "snapshot_install_crash_2d",
            "TestSnapshotInstallCrash2D",
            Suite::Raft,
            raft_snap::three_snapshots,
            raft_snap::snapshot_install_crash,
        ),
        special(
            "snapshot_install_uncrash_2d",
            "TestSnapshotInstallUnCrash2D",
            Suite::Raft,
            raft_snap::three_snapshots_unreliable,
            raft_snap::snapshot_install_crash,
        ),
        special("snapshot_all_crash_2d", "TestSnapshotAllCrash2D", Suite::Raft, raft_snap::three_snapshots, raft_snap::snapshot_all_crash),
        special("snapshot_init_2d", "TestSnapshotInit2D", Suite::Raft, raft_snap::three_snapshots, raft_snap::snapshot_init),
    ]
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_cover_the_23_kv_tests() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|s| s.name).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(all.iter().filter(|s| s.suite == Suite::Kv).count(), 23);
    }
}
