//! All 23 of the kvraft lab's tests (`docs/lab-tests.md`, "Lab 3 kvraft tests") on the real
//! runtime: real TCP on loopback, real data directories, faults injected through
//! [`kvraft::Faults`] (labrpc's unreliable mode, black-holed partitions, clerks confined to
//! part of the cluster). Each test is named after the course's, in snake case.
//!
//! Every clerk operation is recorded in `docs/history-format.md`'s form and the whole history
//! of a test is checked with `specs::check_timed`, as the lab runs porcupine (an exhausted
//! search budget passes with a note, as porcupine's `Unknown` does).
//!
//! Deviations from the lab:
//! - each GenericTest iteration runs its clients for 1.5 s instead of 5 s (the lab's 2025
//!   edition runs 1 s);
//! - the wait after a full-cluster shutdown is 0.5 s instead of 1 s (with partitions, the lab's
//!   1 s head start and 1 s settle after the heal are kept);
//! - TestSpeed's bound (33.3 ms per operation) is printed, not asserted, as is TestSnapshotSize's
//!   20 s advice: a shared 2-core machine cannot promise wall-clock bounds;
//! - TestSnapshotRPC puts 100 keys into the majority instead of 50: our log entries are smaller
//!   than Go's gob encoding, and 50 puts (about 900 bytes) may stay under `max_raft_state` (1000),
//!   so the majority would not compact and the lagging server would catch up from the log
//!   instead of through InstallSnapshot, which is what the test is about;
//! - every duration is multiplied by `KVRAFT_TIME_SCALE` (default 1.0) for slow machines.
//!
//! Beyond the lab: TestUnreliableOneKey's history is checked for linearizability (decided
//! directly, see `check_appends_linearizable`), as are those of TestSpeed, TestSnapshotRPC and
//! TestSnapshotSize; TestSnapshotRPC checks that the lagging server installed a snapshot;
//! TestOnePartition checks that the minority's get also completes after the heal.
//!
//! The tests run one at a time.

use kvraft::history::{self, Clock, TimedOp};
use kvraft::{Clerk, Faults, LocalCluster, LocalOptions, Status};
use model::{NodeId, Op, OpOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

/// Runs tests one at a time (see `common::serial`).
fn serial() -> MutexGuard<'static, ()> {
    common::serial("warn")
}

/// `d` times `KVRAFT_TIME_SCALE` (default 1.0).
fn scaled(d: Duration) -> Duration {
    let scale = std::env::var("KVRAFT_TIME_SCALE").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.0);
    d.mul_f64(if scale.is_finite() && scale > 0.0 { scale } else { 1.0 })
}

fn secs(s: f64) -> Duration {
    scaled(Duration::from_secs_f64(s))
}

/// The lab's `electionTimeout`: the settle time after a heal or a restart.
fn election_timeout() -> Duration {
    secs(1.0)
}

/// A clerk that asks the next server after 150 ms (labrpc fails a dropped call within 100 ms;
/// ours waits for the retry timeout) and gives up after 30 s, so that a broken cluster fails the
/// test instead of hanging it.
fn clerk(cluster: &LocalCluster) -> Clerk {
    let mut config = cluster.clerk_config();
    config.retry_timeout = Duration::from_millis(150);
    config.deadline = Some(scaled(Duration::from_secs(30)));
    Clerk::new(config)
}

/// Every clerk operation of one test, on one clock.
#[derive(Clone)]
struct Recorder {
    clock: Clock,
    ops: Arc<Mutex<Vec<TimedOp>>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder { clock: Clock::new(), ops: Arc::new(Mutex::new(Vec::new())) }
    }

    fn call(&self, clerk: &mut Clerk, op: Op) -> OpOutput {
        let shown = op.to_string();
        let (record, result) = history::timed_call(clerk, &self.clock, op);
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).push(record);
        result.unwrap_or_else(|e| panic!("{shown}: {e}"))
    }

    fn get(&self, clerk: &mut Clerk, key: &str) -> String {
        match self.call(clerk, Op::Get { key: key.into() }) {
            OpOutput::Value(v) => v,
            OpOutput::Done => String::new(),
        }
    }

    fn put(&self, clerk: &mut Clerk, key: &str, value: &str) {
        self.call(clerk, Op::Put { key: key.into(), value: value.into() });
    }

    fn append(&self, clerk: &mut Clerk, key: &str, value: &str) {
        self.call(clerk, Op::Append { key: key.into(), value: value.into() });
    }

    /// The lab's porcupine check: a non-linearizable history fails, an exhausted budget passes.
    fn check_linearizable(&self, test: &str) {
        let ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        match specs::check_timed(&ops, 5_000_000) {
            specs::Verdict::Linearizable => {
                eprintln!("{test}: {} operations, linearizable", ops.len())
            }
            unknown @ specs::Verdict::Unknown { .. } => {
                eprintln!("{test}: {} operations, linearizability {unknown}", ops.len())
            }
            bad => {
                let mut lines = Vec::new();
                history::write_jsonl(&mut lines, &ops).unwrap();
                panic!("{test}: history not linearizable: {bad}\n{}", String::from_utf8_lossy(&lines));
            }
        }
    }
}

/// Linearizability of one key's history made of a put of `""`, appends of distinct items that
/// all returned, and gets, when the put returned before any append was called and every get was
/// called after every append returned: decided by `specs::appends_in_order` for each get.
/// `specs::check_timed` searches for the same order, but here it has nothing to prune with
/// (appends always succeed and only the gets constrain their order), and 50 overlapping
/// appends exhaust any budget.
fn check_appends_linearizable(ops: &[TimedOp], key: &str) {
    let on_key: Vec<TimedOp> = ops.iter().filter(|o| o.op.key() == key).cloned().collect();
    let appends = on_key.iter().filter(|o| matches!(o.op, Op::Append { .. }));
    let first_call = appends.clone().map(|o| o.call).min().unwrap_or(i64::MAX);
    let last_ret = appends.map(|o| o.ret.expect("every append returned")).max().unwrap_or(i64::MIN);
    for o in &on_key {
        match &o.op {
            Op::Put { value, .. } => assert!(
                value.is_empty() && o.ret.is_some_and(|r| r < first_call),
                "the check needs one put of \"\" before every append"
            ),
            Op::Get { .. } => {
                assert!(o.call > last_ret, "the check needs gets after every append");
                let read = match &o.output {
                    Some(OpOutput::Value(v)) => v.as_str(),
                    _ => "",
                };
                if let Err(e) = specs::appends_in_order(&on_key, key, read) {
                    panic!("{e}");
                }
            }
            Op::Append { .. } => {}
        }
    }
}

/// The lab's `checkClntAppends` (`specs::lab_appends`), failing the test.
fn check_client_appends(client: usize, value: &str, count: usize) {
    if let Err(e) = specs::lab_appends::client_appends(client, value, count as u64) {
        panic!("{e}");
    }
}

/// The lab's `checkConcurrentAppends` (`specs::lab_appends`), failing the test.
fn check_concurrent_appends(value: &str, counts: &[usize]) {
    let counts: Vec<u64> = counts.iter().map(|&c| c as u64).collect();
    if let Err(e) = specs::lab_appends::concurrent_appends(value, &counts) {
        panic!("{e}");
    }
}

/// The lab's `LogSize()` (with [`Status::raft_state_bytes`]) or `SnapshotSize()` (with
/// [`Status::snapshot_bytes`]): the largest over the running servers.
fn largest(cluster: &LocalCluster, size: fn(&Status) -> u64) -> u64 {
    cluster.statuses().values().map(size).max().unwrap_or(0)
}

/// The lab's trim check: with `max_raft_state`, no server's Raft state exceeds 8 times it;
/// without, no server has taken a snapshot.
fn check_sizes(cluster: &LocalCluster, max_raft_state: Option<u64>) {
    match max_raft_state {
        Some(limit) => {
            let log = largest(cluster, |s| s.raft_state_bytes);
            assert!(log <= 8 * limit, "logs were not trimmed: raft state {log} > 8 × {limit}");
        }
        None => {
            let snapshot = largest(cluster, |s| s.snapshot_bytes);
            assert_eq!(snapshot, 0, "a snapshot was taken without max_raft_state");
        }
    }
}

fn start_cluster(servers: u32, max_raft_state: Option<u64>, faults: &Faults) -> LocalCluster {
    let mut options = LocalOptions { nodes: servers, faults: faults.clone(), ..LocalOptions::default() };
    options.limits.max_raft_state = max_raft_state;
    LocalCluster::start(options).expect("cluster starts")
}

/// GenericTest's parameters. With fixed keys each client owns key `"<client>"`; with
/// `random_keys` (the lab's "linearizable" tests) every operation picks one of the keys
/// `"0"`..`"<clients - 1>"`, and only the history check judges the values.
#[derive(Clone, Copy, Debug)]
struct Generic {
    name: &'static str,
    clients: usize,
    servers: u32,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    max_raft_state: Option<u64>,
    random_keys: bool,
}

const ITERATIONS: usize = 3;
/// The lab's 5 s of client activity per iteration, shortened.
const CLIENT_SECONDS: f64 = 1.5;

/// One client's run of an iteration: reset its key, then 50% appends, 50% gets, each get equal
/// to the client's own prediction. Returns the number of appends that completed.
fn run_client(cli: usize, mut clerk: Clerk, recorder: &Recorder, stop: &AtomicBool, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let key = cli.to_string();
    let mut expected = String::new();
    recorder.put(&mut clerk, &key, "");
    let mut j = 0;
    while !stop.load(Ordering::Relaxed) {
        if rng.random_bool(0.5) {
            let item = format!("x {cli} {j} y");
            recorder.append(&mut clerk, &key, &item);
            expected.push_str(&item);
            j += 1;
        } else {
            let got = recorder.get(&mut clerk, &key);
            assert_eq!(got, expected, "client {cli}: get wrong value for key {key}");
        }
    }
    j
}

/// One client's run of an iteration with random keys: each operation picks a key uniformly
/// among `keys`, then appends (50%), puts (5%) or gets (45%). Every value written is unique
/// (`x <cli> <j> y`), so a lost, doubled or misplaced write shows in the history. No value is
/// predicted: only the history check judges. Returns the number of writes that completed.
fn run_random_keys_client(
    cli: usize,
    keys: usize,
    mut clerk: Clerk,
    recorder: &Recorder,
    stop: &AtomicBool,
    seed: u64,
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut j = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = rng.random_range(0..keys).to_string();
        let item = format!("x {cli} {j} y");
        if rng.random_bool(0.5) {
            recorder.append(&mut clerk, &key, &item);
            j += 1;
        } else if rng.random_bool(0.1) {
            recorder.put(&mut clerk, &key, &item);
            j += 1;
        } else {
            recorder.get(&mut clerk, &key);
        }
    }
    j
}

/// The lab's partitioner: after 1 s, every 1.0–1.2 s, put each server in one of two groups by
/// a coin flip (either group may be empty), until `stop`.
fn partitioner(faults: &Faults, servers: u32, stop: &AtomicBool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(0x9a27 ^ seed);
    let sleep_unless_stopped = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    sleep_unless_stopped(election_timeout());
    while !stop.load(Ordering::Relaxed) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for n in 1..=servers {
            if rng.random_bool(0.5) {
                a.push(NodeId(n))
            } else {
                b.push(NodeId(n))
            }
        }
        faults.partition(&[&a, &b]);
        sleep_unless_stopped(secs(rng.random_range(1.0..1.2)));
    }
}

/// Stops every server while the clients' last operations may still be in flight, waits, and
/// restarts them all from their data directories.
fn crash_and_restart(cluster: &mut LocalCluster, servers: u32) {
    let errors = cluster.stop_all();
    assert!(errors.is_empty(), "servers had died: {errors:?}");
    std::thread::sleep(election_timeout() / 2);
    for n in 1..=servers {
        cluster.restart_server(NodeId(n)).expect("server restarts from its data directory");
    }
}

/// One GenericTest iteration up to the final gets: the client phase (with the partitioner),
/// then the heal and the full-cluster crash if asked. Returns each client's write count.
fn run_iteration(
    t: Generic,
    cluster: &mut LocalCluster,
    faults: &Faults,
    recorder: &Recorder,
    iteration: usize,
) -> Vec<usize> {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..t.clients)
        .map(|cli| {
            let (clerk, recorder, stop) = (clerk(cluster), recorder.clone(), Arc::clone(&stop));
            let seed = (iteration * 1000 + cli) as u64;
            std::thread::spawn(move || {
                if t.random_keys {
                    run_random_keys_client(cli, t.clients, clerk, &recorder, &stop, seed)
                } else {
                    run_client(cli, clerk, &recorder, &stop, seed)
                }
            })
        })
        .collect();
    let partitioner = t.partitions.then(|| {
        let (faults, stop) = (faults.clone(), Arc::clone(&stop));
        std::thread::spawn(move || partitioner(&faults, t.servers, &stop, iteration as u64))
    });
    // With partitions the lab gives the clients a 1 s head start before the partitioner.
    std::thread::sleep(secs(CLIENT_SECONDS + if t.partitions { 1.0 } else { 0.0 }));
    stop.store(true, Ordering::Relaxed);
    if let Some(partitioner) = partitioner {
        partitioner.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        faults.heal();
        // A client may be stuck at a minority leader, which must learn of the new term.
        std::thread::sleep(election_timeout());
    }
    if t.crash {
        crash_and_restart(cluster, t.servers);
    }
    workers.into_iter().map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
}

fn generic_test(t: Generic) {
    let _serial = serial();
    let started = Instant::now();
    let faults = Faults::new(0x1ab5 ^ t.clients as u64);
    let mut cluster = start_cluster(t.servers, t.max_raft_state, &faults);
    faults.set_unreliable(t.unreliable);
    let recorder = Recorder::new();
    let mut ck = clerk(&cluster);
    let mut total = 0;
    for iteration in 0..ITERATIONS {
        let counts = run_iteration(t, &mut cluster, &faults, &recorder, iteration);
        for (cli, &count) in counts.iter().enumerate() {
            let value = recorder.get(&mut ck, &cli.to_string());
            if !t.random_keys {
                check_client_appends(cli, &value, count);
            }
            total += count;
        }
        check_sizes(&cluster, t.max_raft_state);
    }
    faults.set_unreliable(false);
    recorder.check_linearizable(t.name);
    eprintln!("{}: {total} writes in {:.1?}", t.name, started.elapsed());
}

mod generic;
mod special;
