//! The simulator in CI: every scenario over a sweep of seeds (each test is named after its
//! scenario; a failure prints the reason, the last events and the replay command), runs that
//! replay exactly, and broken cores that the simulator must catch.
//!
//! Seeds per scenario are chosen so that the whole file takes about a minute or two on two
//! cores in the test profile; `cargo run --release -p checker -- simulate --seeds N` sweeps
//! more.

use model::Bug;
use simulator::{self as sim, Failure, Report, ScenarioOptions};

fn run(name: &str, seed: u64, bug: Option<Bug>) -> Result<Report, Failure> {
    let scenario = sim::find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    sim::run(&scenario, seed, &ScenarioOptions { bug, verbose: false })
}

fn sweep(name: &str, seeds: u64) {
    let failures: Vec<String> =
        (0..seeds).filter_map(|seed| run(name, seed, None).err()).map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{} of {seeds} seeds failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// One test per scenario, named after it, with its number of seeds.
macro_rules! sweeps {
    ($($name:ident: $seeds:expr,)*) => {
        const SWEPT: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                sweep(stringify!($name), $seeds);
            }
        )*
    };
}

sweeps! {
    basic_3a: 15,
    speed_3a: 5,
    concurrent_3a: 10,
    unreliable_3a: 40,
    unreliable_one_key_3a: 50,
    one_partition_3a: 100,
    many_partitions_one_client_3a: 25,
    many_partitions_many_clients_3a: 10,
    persist_one_client_3a: 15,
    persist_concurrent_3a: 10,
    persist_concurrent_unreliable_3a: 40,
    persist_partition_3a: 10,
    persist_partition_unreliable_3a: 60,
    persist_partition_unreliable_linearizable_3a: 30,
    snapshot_rpc_3b: 100,
    snapshot_rpc_tight_3b: 100,
    snapshot_size_3b: 20,
    speed_3b: 5,
    snapshot_recover_3b: 20,
    snapshot_recover_many_clients_3b: 5,
    snapshot_unreliable_3b: 40,
    snapshot_unreliable_recover_3b: 40,
    snapshot_unreliable_recover_concurrent_partition_3b: 60,
    snapshot_unreliable_recover_concurrent_partition_linearizable_3b: 30,
    extra_all_faults_long_reordering_duplicates: 60,
    initial_election_2a: 100,
    re_election_2a: 100,
    many_elections_2a: 100,
    basic_agree_2b: 100,
    fail_agree_2b: 100,
    fail_no_agree_2b: 100,
    rejoin_2b: 100,
    backup_2b: 60,
    count_2b: 100,
    persist1_2c: 100,
    persist2_2c: 50,
    persist3_2c: 100,
    figure8_2c: 60,
    figure8_unreliable_2c: 30,
    follower_failure_2b: 100,
    leader_failure_2b: 100,
    concurrent_starts_2b: 100,
    unreliable_agree_2c: 60,
    reliable_churn_2c: 20,
    unreliable_churn_2c: 40,
    rpc_bytes_2b: 50,
    snapshot_basic_2d: 100,
    snapshot_install_2d: 200,
    snapshot_install_unreliable_2d: 200,
    snapshot_install_crash_2d: 200,
    snapshot_install_uncrash_2d: 200,
    snapshot_all_crash_2d: 100,
    snapshot_init_2d: 100,
}

#[test]
fn every_scenario_is_swept() {
    let mut all: Vec<&str> = sim::all().iter().map(|s| s.name).collect();
    let mut swept = SWEPT.to_vec();
    all.sort_unstable();
    swept.sort_unstable();
    assert_eq!(all, swept);
}

#[test]
fn a_seed_replays_exactly_and_seeds_differ() {
    for name in ["persist_partition_unreliable_linearizable_3a", "snapshot_unreliable_recover_concurrent_partition_3b"]
    {
        let a = run(name, 7, None).expect("passes");
        let b = run(name, 7, None).expect("passes");
        assert_eq!(a.trace_hash, b.trace_hash, "{name}: same seed, different traces");
        assert_eq!((a.virtual_time, &a.stats), (b.virtual_time, &b.stats), "{name}");
        let c = run(name, 8, None).expect("passes");
        assert_ne!(a.trace_hash, c.trace_hash, "{name}: seeds 7 and 8 gave the same trace");
    }
}

#[test]
fn a_failure_replays_exactly_too() {
    let a = run("unreliable_one_key_3a", 1, Some(Bug::NoDedup)).expect_err("caught");
    let b = run("unreliable_one_key_3a", 1, Some(Bug::NoDedup)).expect_err("caught");
    assert_eq!((a.trace_hash, a.at, &a.reason), (b.trace_hash, b.at, &b.reason));
}

/// A broken core fails its scenario on every seed tried, for the reason expected, and the
/// failure prints a command that replays it with the same bug.
fn assert_caught(bug: Bug, name: &str, reason: &[&str]) {
    for seed in 0..3 {
        let failure = match run(name, seed, Some(bug)) {
            Ok(report) => panic!("{bug} not caught by {name} seed {seed}: {report:?}"),
            Err(f) => f,
        };
        assert!(reason.iter().any(|r| failure.reason.contains(r)), "{bug}: unexpected reason\n{failure}");
        let replay = failure.replay_command();
        assert!(replay.contains(&format!("--scenario {name} --seed {seed} --bug {bug}")), "{replay}");
        assert!(replay.contains("--features bugs"), "{replay}");
        assert!(failure.to_string().contains(&replay), "{failure}");
    }
}

#[test]
fn no_dedup_is_caught_by_unreliable_one_key() {
    assert_caught(Bug::NoDedup, "unreliable_one_key_3a", &["at most once", "duplicate element"]);
}

#[test]
fn local_reads_are_caught_by_one_partition() {
    assert_caught(Bug::LocalReads, "one_partition_3a", &["Get in minority completed"]);
}

#[test]
fn snapshots_without_sessions_are_caught_by_snapshot_rpc() {
    assert_caught(Bug::SnapshotWithoutSessions, "snapshot_rpc_tight_3b", &["a snapshot is the state machine"]);
}

#[test]
fn dedup_returning_ok_is_caught_by_a_client_get() {
    assert_caught(Bug::DedupReturnsOk, "snapshot_unreliable_3b", &["get wrong value"]);
}
