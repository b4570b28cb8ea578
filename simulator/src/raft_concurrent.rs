//! The course's concurrent Raft tests (docs/lab-tests.md, "The 28 Raft tests"): concurrent
//! `Start`s (2B), and the 2C tests whose lab versions run goroutines next to the test's script
//! (concurrent `one()` calls, churn submitters). Those goroutines are [`Task`]s
//! here: small state machines with the goroutine's sleeps as wake-up times, stepped in virtual
//! time between the script's own steps.

use super::raft::{check_one_leader, crash1, one, sleep, start1, wait, RAFT_ELECTION_TIMEOUT};
use super::world::{Sim, SimResult};
use super::{Micros, MS, SEC};
use model::LogIndex;
use rand::Rng;

/// TestConcurrentStarts2B: five `Start`s at the same instant on the leader (in a random order,
/// as goroutines would) all commit in its term; retried up to 5 times, 3 s apart, when the
/// term changes.
///
/// # Errors
/// The lab's messages.
pub fn concurrent_starts(sim: &mut Sim) -> SimResult<()> {
    const ITERS: u64 = 5;
    let servers = sim.servers().len();
    'tries: for attempt in 0..5 {
        if attempt > 0 {
            sleep(sim, 3 * SEC)?;
        }
        let leader = check_one_leader(sim)?;
        let Some((_, term)) = sim.start(leader, "1".into())? else { continue };
        let mut order: Vec<u64> = (0..ITERS).collect();
        for i in (1..order.len()).rev() {
            let j = sim.rng().random_range(0..=i);
            order.swap(i, j);
        }
        let mut indices = Vec::new();
        for i in order {
            if let Some((index, term1)) = sim.start(leader, (100 + i).to_string())? {
                if term1 == term {
                    indices.push(index);
                }
            }
        }
        if sim.servers().iter().any(|s| s.current_term() != term) {
            continue;
        }
        let mut cmds = Vec::new();
        for index in indices {
            match wait(sim, index, servers, Some(term))? {
                None => continue 'tries,
                Some(v) => cmds.push(v),
            }
        }
        for i in 0..ITERS {
            let x = (100 + i).to_string();
            if !cmds.contains(&x) {
                return Err(format!("cmd {x} missing in {cmds:?}"));
            }
        }
        return Ok(());
    }
    Err("term changed too often".into())
}

/// A goroutine of a lab test: wakes at `next()` (never again when `None`) and runs until its
/// next sleep.
trait Task {
    fn next(&self) -> Option<Micros>;
    /// Runs from the wake-up to the next sleep, which must end after now.
    fn step(&mut self, sim: &mut Sim) -> SimResult<()>;
}

/// Steps `tasks` in virtual time until `done(tasks)` or `until`, whichever comes first.
fn drive<T: Task>(sim: &mut Sim, tasks: &mut [T], until: Micros, done: impl Fn(&[T]) -> bool) -> SimResult<()> {
    loop {
        for t in tasks.iter_mut() {
            if t.next().is_some_and(|n| n <= sim.now()) {
                t.step(sim)?;
            }
        }
        if done(tasks) || sim.now() >= until {
            return Ok(());
        }
        let next = tasks.iter().filter_map(Task::next).min().unwrap_or(until).min(until);
        sim.run_until(next)?;
    }
}

enum OnePhase {
    Start,
    Wait { index: LogIndex, t1: Micros },
}

/// `one(cmd, expected, retry)` as a goroutine, with the same timings as [`one`].
struct OneCall {
    cmd: u64,
    expected: usize,
    retry: bool,
    t0: Micros,
    starts: usize,
    phase: OnePhase,
    next: Option<Micros>,
}

impl OneCall {
    fn new(sim: &Sim, cmd: u64, expected: usize, retry: bool) -> OneCall {
        OneCall { cmd, expected, retry, t0: sim.now(), starts: 0, phase: OnePhase::Start, next: Some(sim.now()) }
    }
}

impl Task for OneCall {
    fn next(&self) -> Option<Micros> {
        self.next
    }

    fn step(&mut self, sim: &mut Sim) -> SimResult<()> {
        let servers = sim.servers().len();
        let value = self.cmd.to_string();
        let failed = || format!("one({}) failed to reach agreement", self.cmd);
        loop {
            match self.phase {
                OnePhase::Start => {
                    if sim.now() - self.t0 >= 10 * SEC {
                        return Err(failed());
                    }
                    let mut index = None;
                    for _ in 0..servers {
                        self.starts = (self.starts + 1) % servers;
                        if sim.is_connected(self.starts) {
                            if let Some((i, _)) = sim.start(self.starts, value.clone())? {
                                index = Some(i);
                                break;
                            }
                        }
                    }
                    match index {
                        Some(index) => self.phase = OnePhase::Wait { index, t1: sim.now() },
                        None => {
                            self.next = Some(sim.now() + 50 * MS);
                            return Ok(());
                        }
                    }
                }
                OnePhase::Wait { index, t1 } => {
                    if sim.now() - t1 >= 2 * SEC {
                        if !self.retry {
                            return Err(failed());
                        }
                        self.phase = OnePhase::Start;
                        continue;
                    }
                    let (n, v) = sim.n_committed(index)?;
                    if n > 0 && n >= self.expected && v.as_deref() == Some(value.as_str()) {
                        self.next = None;
                    } else {
                        self.next = Some(sim.now() + 20 * MS);
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// TestUnreliableAgree2C: 5 servers on an unreliable network; 49 rounds of four `one()`
/// goroutines (100 × round + j, expecting 1 server) and one `one(round)` that the round waits
/// for; then the network turns reliable, every goroutine must succeed, and `one(100)` reaches
/// all 5.
///
/// # Errors
/// The lab's messages.
pub fn unreliable_agree(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let mut calls: Vec<OneCall> = Vec::new();
    for iters in 1..50u64 {
        for j in 0..4 {
            calls.push(OneCall::new(sim, 100 * iters + j, 1, true));
        }
        calls.push(OneCall::new(sim, iters, 1, true));
        let main = calls.len() - 1;
        drive(sim, &mut calls, Micros::MAX, |ts| ts[main].next.is_none())?;
    }
    sim.world("reliable network".into());
    sim.cfg.net.unreliable = false;
    drive(sim, &mut calls, Micros::MAX, |ts| ts.iter().all(|t| t.next.is_none()))?;
    one(sim, 100, servers, true)?;
    Ok(())
}

enum ChurnPhase {
    Top,
    /// Polling `index` for `x`; `k` sleeps of 10, 20, 50, 100, 200 ms are over.
    Poll {
        index: LogIndex,
        x: String,
        k: usize,
    },
}

/// One of the churn test's submitters: `Start` a random value on every running server; if one
/// accepted, poll its index after 0, 10, 30, 80, 180 ms and remember the value if it was
/// committed there; otherwise sleep 79 + 17 × me ms. Stops at the top of its loop.
struct ChurnClient {
    me: u64,
    stop: bool,
    values: Vec<String>,
    phase: ChurnPhase,
    next: Option<Micros>,
}

impl Task for ChurnClient {
    fn next(&self) -> Option<Micros> {
        self.next
    }

    fn step(&mut self, sim: &mut Sim) -> SimResult<()> {
        const SLEEPS: [Micros; 5] = [10, 20, 50, 100, 200];
        loop {
            match &mut self.phase {
                ChurnPhase::Top => {
                    if self.stop {
                        self.next = None;
                        return Ok(());
                    }
                    let x = (sim.rng().random::<u64>() >> 1).to_string();
                    let mut index = None;
                    for k in 0..sim.servers().len() {
                        if let Some((i, _)) = sim.start(k, x.clone())? {
                            index = Some(i);
                        }
                    }
                    match index {
                        Some(index) => self.phase = ChurnPhase::Poll { index, x, k: 0 },
                        None => {
                            self.next = Some(sim.now() + (79 + self.me * 17) * MS);
                            return Ok(());
                        }
                    }
                }
                ChurnPhase::Poll { index, x, k } => {
                    if *k == SLEEPS.len() {
                        self.phase = ChurnPhase::Top;
                        continue;
                    }
                    let (nd, v) = sim.n_committed(*index)?;
                    if nd > 0 {
                        if v.as_deref() == Some(x.as_str()) {
                            self.values.push(x.clone());
                        }
                        self.phase = ChurnPhase::Top;
                        continue;
                    }
                    self.next = Some(sim.now() + SLEEPS[*k] * MS);
                    *k += 1;
                    return Ok(());
                }
            }
        }
    }
}

/// The lab's `internalChurn`: 3 submitters while 20 rounds, 700 ms apart, disconnect (20%),
/// restart-and-connect (50%) and crash (20%) random servers; then everyone restarts and
/// reconnects on a reliable network, the submitters stop, and every index up to a final
/// `one()` is applied on all 5, including every value a submitter saw committed.
///
/// # Errors
/// The lab's messages.
pub fn churn(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let now = sim.now();
    let mut clients: Vec<ChurnClient> = (0..3)
        .map(|me| ChurnClient { me, stop: false, values: Vec::new(), phase: ChurnPhase::Top, next: Some(now) })
        .collect();
    for _ in 0..20 {
        if sim.rng().random_range(0..1000) < 200 {
            let i = sim.rng().random_range(0..servers);
            sim.disconnect(i);
        }
        if sim.rng().random_range(0..1000) < 500 {
            let i = sim.rng().random_range(0..servers);
            if !sim.is_up(i) {
                start1(sim, i);
            }
            sim.connect(i);
        }
        if sim.rng().random_range(0..1000) < 200 {
            let i = sim.rng().random_range(0..servers);
            if sim.is_up(i) {
                crash1(sim, i);
            }
        }
        let until = sim.now() + RAFT_ELECTION_TIMEOUT * 7 / 10;
        drive(sim, &mut clients, until, |_| false)?;
    }
    let until = sim.now() + RAFT_ELECTION_TIMEOUT;
    drive(sim, &mut clients, until, |_| false)?;
    if sim.cfg.net.unreliable {
        sim.world("reliable network".into());
        sim.cfg.net.unreliable = false;
    }
    for i in 0..servers {
        if !sim.is_up(i) {
            start1(sim, i);
        }
        sim.connect(i);
    }
    for c in &mut clients {
        c.stop = true;
    }
    drive(sim, &mut clients, Micros::MAX, |cs| cs.iter().all(|c| c.next.is_none()))?;
    let values: Vec<String> = clients.into_iter().flat_map(|c| c.values).collect();
    sleep(sim, RAFT_ELECTION_TIMEOUT)?;
    let cmd = sim.rng().random::<u64>() >> 1;
    let last = one(sim, cmd, servers, true)?;
    let mut really = Vec::new();
    for index in 1..=last.0 {
        let v = wait(sim, LogIndex(index), servers, None)?.ok_or("not an int")?;
        really.push(v);
    }
    really.sort_unstable();
    for v in &values {
        if really.binary_search(v).is_err() {
            return Err(format!("didn't find a value: {v}"));
        }
    }
    sim.notes.push(format!("{} values seen committed, {} entries", values.len(), last.0));
    Ok(())
}
