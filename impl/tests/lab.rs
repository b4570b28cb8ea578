//! The kvraft lab's scenarios (`shared/LAB-TESTS.md` §1.2–1.5) on the real runtime: real TCP on
//! loopback, real data directories, faults injected through [`kvraft::Faults`] (labrpc's
//! unreliable mode, black-holed partitions, clerks confined to part of the cluster).
//!
//! Every clerk operation is recorded in `shared/HISTORY.md`'s form and the whole history of a
//! test is checked with `specs::check_timed`, as the lab runs porcupine (an exhausted search
//! budget passes with a note, as porcupine's `Unknown` does).
//!
//! Deviations from the lab: each GenericTest iteration runs its clients for 1.5 s instead of 5 s
//! (the lab's 2025 edition runs 1 s); the wait after a full-cluster shutdown is 0.5 s instead
//! of 1 s (with partitions, the lab's 1 s head start and 1 s settle after the heal are kept);
//! every duration is multiplied by `KVRAFT_TIME_SCALE` (default 1.0) for slow machines.
//! The tests run one at a time.

use kvraft::history::{self, Clock, HistoryOp};
use kvraft::{Clerk, Faults, LocalCluster, LocalOptions};
use model::{NodeId, Op, OpOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

mod common;

/// Runs tests one at a time (see `common::serial`).
fn serial() -> MutexGuard<'static, ()> {
    common::serial("warn")
}

/// `d` times `KVRAFT_TIME_SCALE` (default 1.0).
fn scaled(d: Duration) -> Duration {
    let scale = std::env::var("KVRAFT_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    d.mul_f64(if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    })
}

fn secs(s: f64) -> Duration {
    scaled(Duration::from_secs_f64(s))
}

/// The lab's `electionTimeout`: the settle time after a heal or a restart.
fn election_timeout() -> Duration {
    secs(1.0)
}

/// A clerk that asks the next server after 250 ms (labrpc fails a dropped call at once; ours
/// waits for the retry timeout) and gives up after 30 s, so that a broken cluster fails the test
/// instead of hanging it.
fn clerk(cluster: &LocalCluster) -> Clerk {
    let mut config = cluster.clerk_config();
    config.retry_timeout = Duration::from_millis(250);
    config.deadline = Some(scaled(Duration::from_secs(30)));
    Clerk::new(config)
}

/// Every clerk operation of one test, on one clock.
#[derive(Clone)]
struct Recorder {
    clock: Clock,
    ops: Arc<Mutex<Vec<HistoryOp>>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            clock: Clock::new(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn call(&self, clerk: &mut Clerk, op: Op) -> OpOutput {
        let shown = op.to_string();
        let (record, result) = history::timed_call(clerk, &self.clock, op);
        self.ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        result.unwrap_or_else(|e| panic!("{shown}: {e}"))
    }

    fn get(&self, clerk: &mut Clerk, key: &str) -> String {
        match self.call(clerk, Op::Get { key: key.into() }) {
            OpOutput::Value(v) => v,
            OpOutput::Done => String::new(),
        }
    }

    fn put(&self, clerk: &mut Clerk, key: &str, value: &str) {
        self.call(
            clerk,
            Op::Put {
                key: key.into(),
                value: value.into(),
            },
        );
    }

    fn append(&self, clerk: &mut Clerk, key: &str, value: &str) {
        self.call(
            clerk,
            Op::Append {
                key: key.into(),
                value: value.into(),
            },
        );
    }

    /// The lab's porcupine check: a non-linearizable history fails, an exhausted budget passes.
    fn check_linearizable(&self, test: &str) {
        let ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let timed = common::to_timed(&ops);
        match specs::check_timed(&timed, 5_000_000) {
            specs::Verdict::Linearizable => {}
            unknown @ specs::Verdict::Unknown { .. } => {
                eprintln!("{test}: linearizability unknown: {unknown}")
            }
            bad => {
                let mut lines = Vec::new();
                history::write_jsonl(&mut lines, &ops).unwrap();
                panic!(
                    "{test}: history not linearizable: {bad}\n{}",
                    String::from_utf8_lossy(&lines)
                );
            }
        }
        eprintln!("{test}: {} operations, linearizable", ops.len());
    }
}

/// The lab's `checkClntAppends`: each of `count` items `x <client> <j> y` is in `value` exactly
/// once and after the previous one; unknown extra items are allowed.
fn check_client_appends(client: usize, value: &str, count: usize) {
    let mut last = None;
    for j in 0..count {
        let item = format!("x {client} {j} y");
        let first = value
            .find(&item)
            .unwrap_or_else(|| panic!("client {client}: missing element {item:?} in {value:?}"));
        let rlast = value.rfind(&item).unwrap_or(first);
        assert_eq!(
            first, rlast,
            "client {client}: duplicate element {item:?} in {value:?}"
        );
        assert!(
            last.is_none_or(|l| first > l),
            "client {client}: wrong order at {item:?} in {value:?}"
        );
        last = Some(first);
    }
}

/// GenericTest's parameters (fixed keys: each client owns key `"<client>"`).
#[derive(Clone, Copy, Debug)]
struct Generic {
    name: &'static str,
    clients: usize,
    servers: u32,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    max_raft_state: Option<u64>,
}

const ITERATIONS: usize = 3;
/// The lab's 5 s of client activity per iteration, shortened.
const CLIENT_SECONDS: f64 = 1.5;

/// One client's run of an iteration: reset its key, then 50% appends, 50% gets, each get equal
/// to the client's own prediction. Returns the number of appends that completed.
fn run_client(
    cli: usize,
    mut clerk: Clerk,
    recorder: &Recorder,
    stop: &AtomicBool,
    seed: u64,
) -> usize {
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

fn generic_test(t: Generic) {
    let _serial = serial();
    let started = Instant::now();
    let faults = Faults::new(0x1ab5 ^ t.clients as u64);
    let mut options = LocalOptions {
        nodes: t.servers,
        faults: faults.clone(),
        ..LocalOptions::default()
    };
    options.limits.max_raft_state = t.max_raft_state;
    let mut cluster = LocalCluster::start(options).expect("cluster starts");
    faults.set_unreliable(t.unreliable);
    let recorder = Recorder::new();
    let mut ck = clerk(&cluster);
    let mut total = 0;
    for iteration in 0..ITERATIONS {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..t.clients)
            .map(|cli| {
                let (clerk, recorder, stop) =
                    (clerk(&cluster), recorder.clone(), Arc::clone(&stop));
                let seed = (iteration * 1000 + cli) as u64;
                std::thread::spawn(move || run_client(cli, clerk, &recorder, &stop, seed))
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
            partitioner
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            faults.heal();
            // A client may be stuck at a minority leader, which must learn of the new term.
            std::thread::sleep(election_timeout());
        }
        if t.crash {
            // Every server stops while the clients' last operations may still be in flight.
            let errors = cluster.stop_all();
            assert!(errors.is_empty(), "servers had died: {errors:?}");
            std::thread::sleep(election_timeout() / 2);
            for n in 1..=t.servers {
                cluster
                    .restart_server(NodeId(n))
                    .expect("server restarts from its data directory");
            }
        }
        let counts: Vec<usize> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        for (cli, &count) in counts.iter().enumerate() {
            let value = recorder.get(&mut ck, &cli.to_string());
            check_client_appends(cli, &value, count);
            total += count;
        }
        let statuses = cluster.statuses();
        match t.max_raft_state {
            Some(limit) => {
                let largest = statuses
                    .values()
                    .map(|s| s.raft_state_bytes)
                    .max()
                    .unwrap_or(0);
                assert!(
                    largest <= 8 * limit,
                    "logs were not trimmed: raft state {largest} > 8 × {limit}"
                );
            }
            None => {
                let largest = statuses
                    .values()
                    .map(|s| s.snapshot_bytes)
                    .max()
                    .unwrap_or(0);
                assert_eq!(largest, 0, "a snapshot was taken without max_raft_state");
            }
        }
    }
    faults.set_unreliable(false);
    recorder.check_linearizable(t.name);
    eprintln!("{}: {total} appends in {:.1?}", t.name, started.elapsed());
}

#[test]
fn basic_3a() {
    generic_test(Generic {
        name: "basic_3a",
        clients: 1,
        servers: 5,
        unreliable: false,
        crash: false,
        partitions: false,
        max_raft_state: None,
    });
}

#[test]
fn unreliable_3a() {
    generic_test(Generic {
        name: "unreliable_3a",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: false,
        partitions: false,
        max_raft_state: None,
    });
}

#[test]
fn persist_concurrent_3a() {
    generic_test(Generic {
        name: "persist_concurrent_3a",
        clients: 5,
        servers: 5,
        unreliable: false,
        crash: true,
        partitions: false,
        max_raft_state: None,
    });
}

#[test]
fn snapshot_recover_3b() {
    generic_test(Generic {
        name: "snapshot_recover_3b",
        clients: 1,
        servers: 5,
        unreliable: false,
        crash: true,
        partitions: false,
        max_raft_state: Some(1000),
    });
}

#[test]
fn persist_partition_unreliable_3a() {
    generic_test(Generic {
        name: "persist_partition_unreliable_3a",
        clients: 5,
        servers: 5,
        unreliable: true,
        crash: true,
        partitions: true,
        max_raft_state: None,
    });
}

/// TestOnePartition3A: a majority makes progress while a minority holding the old leader does
/// not; the minority's operations complete after the heal, the put after the majority's.
#[test]
fn one_partition_3a() {
    let _serial = serial();
    let started = Instant::now();
    let faults = Faults::new(6);
    let cluster = LocalCluster::start(LocalOptions {
        nodes: 5,
        faults: faults.clone(),
        ..LocalOptions::default()
    })
    .expect("cluster starts");
    let recorder = Recorder::new();
    let mut ck = clerk(&cluster);
    recorder.put(&mut ck, "1", "13");

    // p1: three followers (a majority); p2: the leader and the remaining follower.
    let leader = cluster
        .wait_for_leader(scaled(Duration::from_secs(10)))
        .expect("a leader");
    let others: Vec<NodeId> = cluster
        .running()
        .into_iter()
        .filter(|&n| n != leader)
        .collect();
    let p1 = others[..3].to_vec();
    let p2 = vec![leader, others[3]];
    faults.partition(&[&p1, &p2]);
    let mut ckp1 = clerk(&cluster);
    faults.cut_client(ckp1.id(), &p2);
    let ckp2a = clerk(&cluster);
    faults.cut_client(ckp2a.id(), &p1);
    let ckp2b = clerk(&cluster);
    faults.cut_client(ckp2b.id(), &p1);

    // Progress in the majority.
    recorder.put(&mut ckp1, "1", "14");
    assert_eq!(recorder.get(&mut ckp1, "1"), "14");

    // No progress in the minority.
    let (put_done, put_rx) = mpsc::channel();
    let (get_done, get_rx) = mpsc::channel();
    let (r1, r2) = (recorder.clone(), recorder.clone());
    let put_thread = std::thread::spawn(move || {
        let mut ckp2a = ckp2a;
        r1.put(&mut ckp2a, "1", "15");
        let _ = put_done.send(());
    });
    let get_thread = std::thread::spawn(move || {
        let mut ckp2b = ckp2b;
        let value = r2.get(&mut ckp2b, "1");
        let _ = get_done.send(());
        value
    });
    assert_eq!(
        put_rx.recv_timeout(election_timeout()),
        Err(RecvTimeoutError::Timeout),
        "put completed in the minority"
    );
    assert_eq!(
        get_rx.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "get completed in the minority"
    );
    assert_eq!(recorder.get(&mut ckp1, "1"), "14");
    recorder.put(&mut ckp1, "1", "16");
    assert_eq!(recorder.get(&mut ckp1, "1"), "16");
    assert_eq!(
        put_rx.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "put completed in the minority"
    );
    assert_eq!(
        get_rx.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "get completed in the minority"
    );

    // Completion after the heal: the minority's clerks may now reach every server.
    faults.heal();
    std::thread::sleep(election_timeout());
    put_rx
        .recv_timeout(secs(3.0))
        .expect("the minority's put completes within 3 s of the heal");
    get_rx
        .recv_timeout(secs(3.0))
        .expect("the minority's get completes within 3 s of the heal");
    put_thread
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    let minority_get = get_thread
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(
        ["14", "15", "16"].contains(&minority_get.as_str()),
        "minority get returned {minority_get:?}"
    );
    assert_eq!(recorder.get(&mut ck, "1"), "15");
    recorder.check_linearizable("one_partition_3a");
    eprintln!("one_partition_3a: {:.1?}", started.elapsed());
}
