//! The course's kvraft tests (docs/lab-tests.md, "Lab 3 kvraft tests") in virtual time:
//! GenericTest and the special tests, with the lab's setups, sleeps, fault schedules and
//! assertions. Where a scenario checks more than the original, the doc comment says so.
//!
//! Servers are numbered from 0 here, as in the lab (node ids are one more).

use super::links::NetConfig;
use super::workload::{ClientLoop, Workload};
use super::world::{Sim, SimConfig, SimResult};
use super::{seconds, Micros, MS, SEC};
use model::Op;
use rand::Rng;
use specs::lab_appends::{client_appends, concurrent_appends};

/// The lab's `electionTimeout` (kvraft): the settle time after a heal or a crash, and the
/// partitioner's base period.
pub const ELECTION_TIMEOUT: Micros = SEC;

/// GenericTest's parameters (docs/lab-tests.md, "GenericTest").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generic {
    pub nclients: usize,
    pub nservers: u32,
    pub unreliable: bool,
    /// Crash and restart every server after each iteration.
    pub crash: bool,
    /// The partitioner runs during each iteration.
    pub partitions: bool,
    /// `None` is the course's -1.
    pub max_raft_state: Option<u64>,
    pub random_keys: bool,
    /// Beyond the lab: labrpc's long reordering of replies (the lab uses it only in the Raft
    /// test Figure8Unreliable).
    pub long_reordering: bool,
    /// Beyond the lab: 5% of messages are delivered twice (labrpc never duplicates).
    pub duplicate: bool,
}

impl Generic {
    pub fn config(&self) -> SimConfig {
        let net = NetConfig {
            unreliable: self.unreliable,
            long_reordering: self.long_reordering,
            duplicate: if self.duplicate { 0.05 } else { 0.0 },
            ..NetConfig::default()
        };
        SimConfig { max_raft_state: self.max_raft_state, net, ..SimConfig::new(self.nservers) }
    }
}

/// GenericTest: three iterations of `nclients` client loops for 5 s (6 s with the partitioner,
/// which starts after 1 s and re-partitions every 1.0-1.2 s), then heal and wait 1 s; crash all
/// servers, wait 1 s, restart all; wait for each client's last operation; read each client's key
/// with the checking clerk and check its appends; check the log size (or that no snapshot
/// exists). Every Get of a client's own key is checked against the client's model on the spot.
///
/// Beyond the lab: the full invariant check at the end of each iteration.
///
/// # Errors
/// The lab's failure messages, or a broken invariant.
pub fn generic(sim: &mut Sim, p: &Generic) -> SimResult<()> {
    let ck = sim.new_clerk(None);
    for iteration in 0..3 {
        sim.world(format!("iteration {iteration}"));
        let clients: Vec<usize> = (0..p.nclients).map(|_| sim.new_clerk(None)).collect();
        let workload = Workload::Generic { nclients: p.nclients, random_keys: p.random_keys };
        for (cli, &c) in clients.iter().enumerate() {
            sim.start_loop(c, ClientLoop::new(cli, workload.clone()))?;
        }
        let start = sim.now();
        if p.partitions {
            partitioner(sim, &clients, start)?;
        } else {
            sim.run_until(start + 5 * SEC)?;
            stop_clients(sim, &clients);
        }
        if p.crash {
            crash_all(sim)?;
        }
        let limit = sim.cfg.time_limit;
        if !sim.run_while(limit, |s| clients.iter().any(|&c| !s.loop_finished(c)))? {
            return Err(format!(
                "iteration {iteration}: clients did not finish their last operation by the time limit"
            ));
        }
        for (cli, &c) in clients.iter().enumerate() {
            let j = sim.clerk(c).driver.as_ref().map_or(0, |d| d.j);
            let v = sim.get(ck, &cli.to_string())?;
            if !p.random_keys {
                client_appends(cli, &v, j)?;
            }
        }
        check_sizes(sim, p.max_raft_state)?;
        sim.full_check()?;
    }
    Ok(())
}

fn stop_clients(sim: &mut Sim, clients: &[usize]) {
    sim.world("clients stop".to_string());
    for &c in clients {
        sim.stop_loop(c);
    }
}

/// The clients' 1 s head start, then the lab's partitioner until the clients stop (6 s after
/// they started): each round flips a coin per server and sleeps 1 s + U[0, 200) ms. The test
/// then waits for the partitioner's last sleep, reconnects everything and sleeps 1 s.
fn partitioner(sim: &mut Sim, clients: &[usize], start: Micros) -> SimResult<()> {
    let stop_at = start + 6 * SEC;
    sim.run_until(start + SEC)?;
    let mut stopped = false;
    while sim.now() < stop_at {
        let n = sim.servers().len();
        let mut groups = vec![Vec::new(), Vec::new()];
        for k in 0..n {
            let side = sim.rng().random_range(0..2usize);
            groups[side].push(k);
        }
        sim.partition(&groups);
        let sleep = ELECTION_TIMEOUT + sim.rng().random_range(0..200) * MS;
        let wake = sim.now() + sleep;
        if wake >= stop_at && !stopped {
            sim.run_until(stop_at)?;
            stop_clients(sim, clients);
            stopped = true;
        }
        sim.run_until(wake)?;
    }
    if !stopped {
        stop_clients(sim, clients);
    }
    sim.connect_all_servers();
    sim.run_until(sim.now() + ELECTION_TIMEOUT)
}

/// ShutdownServer for all, 1 s, StartServer for all, ConnectAll.
fn crash_all(sim: &mut Sim) -> SimResult<()> {
    let n = sim.servers().len();
    for k in 0..n {
        sim.crash(k);
    }
    sim.run_until(sim.now() + ELECTION_TIMEOUT)?;
    for k in 0..n {
        sim.restart(k);
    }
    sim.connect_all_servers();
    Ok(())
}

/// After each iteration: with `maxraftstate` the largest persisted Raft state is at most
/// 8 × maxraftstate ("logs were not trimmed"); without, no server holds a snapshot.
fn check_sizes(sim: &mut Sim, max_raft_state: Option<u64>) -> SimResult<()> {
    match max_raft_state {
        Some(max) => {
            let size = sim.log_size();
            if size > 8 * max {
                return Err(format!("logs were not trimmed ({size} > 8*{max})"));
            }
        }
        None => {
            if sim.snapshot_used() {
                let size = sim.snapshot_size();
                return Err(format!("snapshot too large ({size}), should not be used when maxraftstate = -1"));
            }
        }
    }
    Ok(())
}

fn append(key: &str, value: String) -> Op {
    Op::Append { key: key.to_string(), value }
}

pub fn speed_config_3a() -> SimConfig {
    SimConfig::new(3)
}

pub fn speed_config_3b() -> SimConfig {
    SimConfig { max_raft_state: Some(1000), ..SimConfig::new(3) }
}

/// TestSpeed3A/3B: a Get so that a leader exists, then 1000 sequential Appends, which must
/// take at most 1000 × 33.3 ms (heartbeats every 100 ms, at least three operations per
/// heartbeat: replication must start at once, not at the next heartbeat). The final value
/// passes `checkClntAppends(0, v, 1000)`. In virtual time the bound is exact.
///
/// # Errors
/// "Operations completed too slowly", or a failed check.
pub fn speed(sim: &mut Sim) -> SimResult<()> {
    const OPS: u64 = 1000;
    const PER_OP: Micros = 100 * MS / 3;
    let ck = sim.new_clerk(None);
    sim.get(ck, "x")?;
    let start = sim.now();
    for i in 0..OPS {
        sim.call(ck, append("x", format!("x 0 {i} y")))?;
    }
    let took = sim.now() - start;
    let v = sim.get(ck, "x")?;
    client_appends(0, &v, OPS)?;
    sim.notes.push(format!(
        "{OPS} appends in {} virtual, {:.2} ms/op",
        seconds(took),
        took as f64 / OPS as f64 / 1000.0
    ));
    if took > OPS * PER_OP {
        return Err(format!("Operations completed too slowly {} µs/op > {PER_OP} µs/op", took / OPS));
    }
    Ok(())
}

pub fn unreliable_one_key_config() -> SimConfig {
    SimConfig { net: NetConfig { unreliable: true, ..NetConfig::default() }, ..SimConfig::new(3) }
}

/// TestUnreliableOneKey3A: `Put k ""`, then 5 clients each append 10 tokens to `k` at once, on
/// an unreliable network; the final value holds every client's tokens exactly once and in the
/// client's order (`checkConcurrentAppends`).
///
/// Beyond the lab (which records none of these operations): linearizability, decided exactly
/// for this shape of history by [`appends_linearizable`]. The generic search is allowed to give
/// up on it (`unknown_allowed`): 50 concurrent appends seen by a single final Get leave it
/// nothing to prune on until the end.
///
/// # Errors
/// A missing, duplicated or misordered token, or a broken invariant.
pub fn unreliable_one_key(sim: &mut Sim) -> SimResult<()> {
    const CLIENTS: usize = 5;
    const UPTO: u64 = 10;
    let ck = sim.new_clerk(None);
    sim.put(ck, "k", "")?;
    let clients: Vec<usize> = (0..CLIENTS).map(|_| sim.new_clerk(None)).collect();
    for (me, &c) in clients.iter().enumerate() {
        sim.start_loop(c, ClientLoop::new(me, Workload::Appends { key: "k".into(), upto: UPTO }))?;
    }
    let limit = sim.cfg.time_limit;
    if !sim.run_while(limit, |s| clients.iter().any(|&c| !s.loop_finished(c)))? {
        return Err("the appends did not finish by the time limit".into());
    }
    let v = sim.get(ck, "k")?;
    concurrent_appends(&v, &[UPTO; CLIENTS])?;
    appends_linearizable(sim, "k", &v)
}

/// Linearizability of a history on `key` made of a Put of `""` that precedes everything, appends
/// of distinct tokens that all completed, and a final Get that follows everything and read `v`:
/// the only candidate order is the order of the tokens in `v`, so the history is linearizable
/// iff `v` is exactly the tokens, each once, and every append that returned before another was
/// invoked comes first in `v` (`specs::appends_in_order`, which the runtime's test uses too).
///
/// # Errors
/// The first pair of appends `v` orders against real time, or a token missing or extra.
pub fn appends_linearizable(sim: &Sim, key: &str, v: &str) -> SimResult<()> {
    specs::appends_in_order(sim.timed_ops(), key, v)
}

pub fn one_partition_config() -> SimConfig {
    SimConfig::new(5)
}

/// TestOnePartition3A: with the leader and one other server in the minority, the majority makes
/// progress; a Put and a Get sent into the minority do not complete within 1 s; after the heal
/// (and 1 s) the Put completes within 3 s, and finally `Get 1` is "15" (the minority Put ran
/// once, after 16).
///
/// Beyond the lab: the minority Get must complete within those 3 s too (the lab's check of it
/// has a `default` branch, so it checks nothing).
///
/// # Errors
/// The lab's messages, or a broken invariant.
pub fn one_partition(sim: &mut Sim) -> SimResult<()> {
    let all: Vec<usize> = (0..5).collect();
    let ck = sim.new_clerk(None);
    sim.put(ck, "1", "13")?;
    let leader = sim.leader().ok_or("no leader right after a Put completed")?;
    let others: Vec<usize> = all.iter().copied().filter(|&k| k != leader).collect();
    let p1 = others[..3].to_vec();
    let p2 = vec![others[3], leader];
    sim.partition(&[p1.clone(), p2.clone()]);
    let ckp1 = sim.new_clerk(Some(&p1));
    let ckp2a = sim.new_clerk(Some(&p2));
    let ckp2b = sim.new_clerk(Some(&p2));

    // progress in majority
    sim.put(ckp1, "1", "14")?;
    sim.check(ckp1, "1", "14")?;

    // no progress in minority
    sim.invoke(ckp2a, Op::Put { key: "1".into(), value: "15".into() })?;
    sim.invoke(ckp2b, Op::Get { key: "1".into() })?;
    let deadline = sim.now() + SEC;
    if sim.run_while(deadline, |s| !s.is_idle(ckp2a) && !s.is_idle(ckp2b))? {
        let which = if sim.is_idle(ckp2a) { "Put" } else { "Get" };
        return Err(format!("{which} in minority completed"));
    }
    sim.check(ckp1, "1", "14")?;
    sim.put(ckp1, "1", "16")?;
    sim.check(ckp1, "1", "16")?;

    // completion after heal
    sim.connect_all_servers();
    sim.connect_clerk(ckp2a, &all);
    sim.connect_clerk(ckp2b, &all);
    sim.run_until(sim.now() + ELECTION_TIMEOUT)?;
    let deadline = sim.now() + 3 * SEC;
    if !sim.run_while(deadline, |s| !s.is_idle(ckp2a))? {
        return Err("Put did not complete".into());
    }
    if !sim.run_while(deadline, |s| !s.is_idle(ckp2b))? {
        return Err("Get did not complete within 3 s of the heal (a check the lab skips)".into());
    }
    sim.check(ck, "1", "15")
}

pub fn snapshot_rpc_config() -> SimConfig {
    SimConfig { max_raft_state: Some(1000), ..SimConfig::new(3) }
}

/// TestSnapshotRPC3B: 50 Puts in the majority {0, 1} while 2 is cut off, then a Put after 1 s;
/// the log size is at most 8000 bytes (the majority compacts without waiting for 2); then
/// {0, 2} must commit, which needs 2 to catch up through InstallSnapshot; then everyone.
///
/// Beyond the lab: server 2 installed at least one snapshot.
///
/// # Errors
/// The lab's messages, or a broken invariant.
pub fn snapshot_rpc(sim: &mut Sim) -> SimResult<()> {
    snapshot_rpc_with(sim, false)
}

pub fn snapshot_rpc_tight_config() -> SimConfig {
    SimConfig { max_raft_state: Some(200), ..SimConfig::new(3) }
}

/// TestSnapshotRPC3B's script with `max_raft_state` 200 bytes, about the 25 entries the lab's
/// 1000 bytes of gob hold, so that the majority must compact past server 2 and server 2 must
/// install a snapshot, which is what the lab test is for (docs/lab-tests.md, "Byte bounds depend
/// on the encoding").
///
/// # Errors
/// As [`snapshot_rpc`], and when server 2 did not need a snapshot after all.
pub fn snapshot_rpc_tight(sim: &mut Sim) -> SimResult<()> {
    snapshot_rpc_with(sim, true)
}

fn snapshot_rpc_with(sim: &mut Sim, require_install: bool) -> SimResult<()> {
    let max = sim.cfg.max_raft_state.ok_or("snapshot_rpc needs a max_raft_state")?;
    let ck = sim.new_clerk(None);
    sim.put(ck, "a", "A")?;
    sim.check(ck, "a", "A")?;

    sim.partition(&[vec![0, 1], vec![2]]);
    let ck1 = sim.new_clerk(Some(&[0, 1]));
    for i in 0..50 {
        sim.put(ck1, &i.to_string(), &i.to_string())?;
    }
    sim.run_until(sim.now() + ELECTION_TIMEOUT)?;
    sim.put(ck1, "b", "B")?;
    let size = sim.log_size();
    if size > 8 * max {
        return Err(format!("logs were not trimmed ({size} > 8*{max})"));
    }

    // Whether 2 can only catch up through InstallSnapshot: the one server that can lead {0, 2}
    // is 0 (2 lacks committed entries, so 0 will not vote for it), and 0 has compacted away
    // entries 2 lacks. (With the runtime's compact encoding, 1000 bytes of log hold about 100 of
    // these entries, against about 25 in the lab's gob: see snapshot_rpc_tight_3b.)
    let compacted_past_2 = sim.servers()[0].log().start_index() > sim.servers()[2].log().last_index();
    sim.partition(&[vec![0, 2], vec![1]]);
    let ck2 = sim.new_clerk(Some(&[0, 2]));
    sim.put(ck2, "c", "C")?;
    sim.put(ck2, "d", "D")?;
    sim.check(ck2, "a", "A")?;
    sim.check(ck2, "b", "B")?;
    sim.check(ck2, "1", "1")?;
    sim.check(ck2, "49", "49")?;
    if require_install && !compacted_past_2 {
        return Err(
            "server 0 did not compact past server 2's log: the scenario does not exercise InstallSnapshot".into()
        );
    }
    if compacted_past_2 && sim.snapshots_installed(2) == 0 {
        return Err("server 2 caught up without installing a snapshot".into());
    }
    if !compacted_past_2 {
        sim.notes.push("server 0 still held what server 2 lacked: no InstallSnapshot needed".into());
    }

    sim.partition(&[vec![0, 1, 2]]);
    sim.put(ck, "e", "E")?;
    sim.check(ck, "c", "C")?;
    sim.check(ck, "e", "E")?;
    sim.check(ck, "1", "1")
}

pub fn snapshot_size_config() -> SimConfig {
    SimConfig { max_raft_state: Some(1000), ..SimConfig::new(3) }
}

/// TestSnapshotSize3B: 200 rounds of (Put x 0, check, Put x 1, check); then the log size is at
/// most 8000 bytes and the snapshot at most 500 bytes (the map and the duplicate table).
///
/// Beyond the lab: the handout's "should take under 20 s" is asserted, in virtual time.
///
/// # Errors
/// The lab's messages, or a broken invariant.
pub fn snapshot_size(sim: &mut Sim) -> SimResult<()> {
    const MAX_RAFT: u64 = 1000;
    const MAX_SNAPSHOT: u64 = 500;
    let ck = sim.new_clerk(None);
    for _ in 0..200 {
        sim.put(ck, "x", "0")?;
        sim.check(ck, "x", "0")?;
        sim.put(ck, "x", "1")?;
        sim.check(ck, "x", "1")?;
    }
    let (log, snapshot) = (sim.log_size(), sim.snapshot_size());
    sim.notes.push(format!("800 ops in {} virtual; log {log} bytes, snapshot {snapshot} bytes", seconds(sim.now())));
    if log > 8 * MAX_RAFT {
        return Err(format!("logs were not trimmed ({log} > 8*{MAX_RAFT})"));
    }
    if snapshot > MAX_SNAPSHOT {
        return Err(format!("snapshot too large ({snapshot} > {MAX_SNAPSHOT})"));
    }
    if sim.now() > 20 * SEC {
        return Err(format!("800 operations took {} virtual, more than the handout's 20 s", seconds(sim.now())));
    }
    Ok(())
}
