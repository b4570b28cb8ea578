//! Crashes beyond the course's lab, on the real runtime, under the lab's GenericTest client
//! load (`docs/lab-tests.md`, "GenericTest": each client owns a key, 50% appends
//! `x <cli> <j> y`, 50% gets that must equal the client's own prediction), every operation
//! recorded and the whole history checked with `specs::check_timed` at the end, with the lab's
//! `checkClntAppends`.
//!
//! - [`kill9::rolling_kill_9_of_server_processes`]: five `kvraft server` OS processes with a small
//!   `--max-raft-state` (snapshots and WAL rotations all the time), logging to files in their
//!   temporary directory (tails printed on failure; filter `KVRAFT_TEST_SERVER_LOG`, default
//!   `info`); for 9 s a killer thread SIGKILLs one server
//!   at a time (every other time the leader, as the logs tell), and restarts it on the same ports
//!   and data directory 0–500 ms later, every 0.5–1 s.
//! - [`power::power_cuts_lose_nothing_acknowledged`]: `kill -9` keeps the OS page cache, so it cannot
//!   catch a write acknowledged before its fsync. Here [`Faults::cut_power`] stops each server's
//!   loop at its next flush, before anything of that batch is written, sent or replied: the
//!   disk holds exactly what the last completed fsync covered. Each cycle cuts every server
//!   (at once, or the followers first and the leader a few milliseconds later), restarts them
//!   all from their directories, and lets the clients carry on.
//! - [`power::power_cuts_catch_send_before_fsync`]: the same cycles with the deliberately broken flush
//!   order ([`Faults::set_send_before_fsync`]) must catch a lost acknowledged append, a
//!   non-linearizable history or a broken core invariant, so the test above is known to be able
//!   to fail.
//!
//! The history recorder here is a small copy of the idea of `lab/`'s (not shared yet: the
//! two files are edited in parallel); a later change may move both into `tests/common`.

use kvraft::config::{self, ClusterMap};
use kvraft::history::{self, Clock, TimedOp};
use kvraft::{Clerk, ClerkConfig, Faults, LocalCluster, LocalOptions, ServerError};
use model::{NodeId, Op, OpOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;

const SERVERS: u32 = 5;
const CLIENTS: usize = 5;
/// Small enough that snapshots and WAL rotations happen every few dozen operations.
const MAX_RAFT_STATE: u64 = 1000;
/// A broken cluster fails the test within this long instead of hanging it.
const CLERK_DEADLINE: Duration = Duration::from_secs(30);

fn serial() -> MutexGuard<'static, ()> {
    common::serial("warn")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn clerk(servers: &ClusterMap) -> Clerk {
    let mut config = ClerkConfig::new(1, servers.clone());
    config.retry_timeout = Duration::from_millis(250);
    config.deadline = Some(CLERK_DEADLINE);
    Clerk::new(config)
}

// ---------------------------------------------------------------------------------------------
// The GenericTest client load, recorded.

/// Something a test found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Problem {
    /// A safety violation: a wrong read, an acknowledged append lost, duplicated or reordered,
    /// a non-linearizable history, a core invariant that panicked. Otherwise the cluster was
    /// stuck or a server failed in some other way.
    safety: bool,
    text: String,
}

impl Problem {
    fn safety(text: String) -> Problem {
        Problem { safety: true, text }
    }

    fn other(text: String) -> Problem {
        Problem { safety: false, text }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn lines(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Every clerk operation of one test on one clock, and what the clients found wrong.
#[derive(Clone)]
struct Recorded {
    clock: Clock,
    ops: Arc<Mutex<Vec<TimedOp>>>,
    /// Wrong gets and clerk errors, in the order the clients saw them.
    problems: Arc<Mutex<Vec<Problem>>>,
}

impl Recorded {
    fn new() -> Recorded {
        Recorded { clock: Clock::new(), ops: Arc::default(), problems: Arc::default() }
    }

    fn call(&self, clerk: &mut Clerk, op: Op) -> Result<OpOutput, String> {
        let shown = op.to_string();
        let (record, result) = history::timed_call(clerk, &self.clock, op);
        lock(&self.ops).push(record);
        result.map_err(|e| format!("{shown}: {e}"))
    }

    fn get(&self, clerk: &mut Clerk, key: &str) -> Result<String, String> {
        match self.call(clerk, Op::Get { key: key.into() })? {
            OpOutput::Value(v) => Ok(v),
            OpOutput::Done => Ok(String::new()),
        }
    }

    fn len(&self) -> usize {
        lock(&self.ops).len()
    }

    fn problem(&self, what: Problem) {
        lock(&self.problems).push(what);
    }

    fn problems(&self) -> Vec<Problem> {
        lock(&self.problems).clone()
    }

    /// The lab's porcupine check; an exhausted search budget passes with a note.
    fn check_linearizable(&self, test: &str) -> Result<(), Problem> {
        let ops = lock(&self.ops);
        match specs::check_timed(&ops, 5_000_000) {
            specs::Verdict::Linearizable => {}
            unknown @ specs::Verdict::Unknown { .. } => eprintln!("{test}: linearizability unknown: {unknown}"),
            bad => return Err(Problem::safety(format!("history of {} operations not linearizable: {bad}", ops.len()))),
        }
        Ok(())
    }
}

/// One GenericTest client: reset its key, then 50% appends, 50% gets equal to its prediction,
/// until `stop` or the first problem (recorded, not panicked, so that a test can count how
/// long a bug took to show). Returns the number of appends acknowledged.
fn run_client(cli: usize, mut clerk: Clerk, rec: &Recorded, stop: &AtomicBool, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let key = cli.to_string();
    let mut expected = String::new();
    if let Err(e) = rec.call(&mut clerk, Op::Put { key: key.clone(), value: String::new() }) {
        rec.problem(Problem::other(format!("client {cli}: {e}")));
        return 0;
    }
    let mut j = 0;
    while !stop.load(Ordering::Relaxed) {
        if rng.random_bool(0.5) {
            let item = format!("x {cli} {j} y");
            if let Err(e) = rec.call(&mut clerk, Op::Append { key: key.clone(), value: item.clone() }) {
                rec.problem(Problem::other(format!("client {cli}: {e}")));
                break;
            }
            expected.push_str(&item);
            j += 1;
        } else {
            match rec.get(&mut clerk, &key) {
                Ok(got) if got == expected => {}
                Ok(got) => {
                    rec.problem(Problem::safety(format!(
                        "client {cli}: get wrong value for key {key} after {j} acknowledged appends: {}",
                        mismatch(&got, &expected)
                    )));
                    break;
                }
                Err(e) => {
                    rec.problem(Problem::other(format!("client {cli}: {e}")));
                    break;
                }
            }
        }
    }
    j
}

/// Where two long values first differ, shown briefly.
fn mismatch(got: &str, expected: &str) -> String {
    let at = got.bytes().zip(expected.bytes()).take_while(|(a, b)| a == b).count();
    let window = |s: &str| -> String { s.get(at.saturating_sub(12)..).unwrap_or(s).chars().take(60).collect() };
    format!(
        "got {} bytes, expected {}; from byte {}: got {:?}, expected {:?}",
        got.len(),
        expected.len(),
        at.saturating_sub(12),
        window(got),
        window(expected)
    )
}

/// `CLIENTS` GenericTest clients running on their own threads.
struct Clients {
    rec: Recorded,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<usize>>,
}

impl Clients {
    fn start(servers: &ClusterMap, seed: u64) -> Clients {
        let (rec, stop) = (Recorded::new(), Arc::new(AtomicBool::new(false)));
        let threads = (0..CLIENTS)
            .map(|cli| {
                let (clerk, rec, stop) = (clerk(servers), rec.clone(), Arc::clone(&stop));
                std::thread::spawn(move || run_client(cli, clerk, &rec, &stop, seed ^ cli as u64))
            })
            .collect();
        Clients { rec, stop, threads }
    }

    /// Stops the clients (each finishes its operation in flight), reads every key with a fresh
    /// clerk and checks the appends; then the whole history. Returns the number of operations,
    /// or every problem found (the clients' first).
    fn finish(self, servers: &ClusterMap, test: &str) -> Result<usize, Vec<Problem>> {
        self.stop.store(true, Ordering::Relaxed);
        let counts: Vec<usize> =
            self.threads.into_iter().map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
        let mut problems = self.rec.problems();
        let mut ck = clerk(servers);
        for (cli, &count) in counts.iter().enumerate() {
            match self.rec.get(&mut ck, &cli.to_string()) {
                Ok(value) => problems
                    .extend(specs::lab_appends::client_appends(cli, &value, count as u64).err().map(Problem::safety)),
                Err(e) => {
                    problems.push(Problem::other(format!("final get of key {cli}: {e}")));
                    break; // the cluster does not answer: do not wait for it once per key
                }
            }
        }
        problems.extend(self.rec.check_linearizable(test).err());
        let ops = self.rec.len();
        eprintln!("{test}: {ops} operations, {} appends acknowledged", counts.iter().sum::<usize>());
        if problems.is_empty() {
            Ok(ops)
        } else {
            Err(problems)
        }
    }
}

mod kill9;
mod power;
