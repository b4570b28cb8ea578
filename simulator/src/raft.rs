//! The course's Raft tests (docs/lab-tests.md, "The 28 Raft tests", parts 2A-2C) on the servers
//! directly, with the lab's harness primitives ("Harness primitives" there): `checkOneLeader`
//! (up to 10 polls 450-550 ms apart: one leader "within 5 s", never two in a term),
//! `checkTerms`, `checkNoLeader`, `one` and `wait` over `Start` and the applied logs,
//! `disconnect`/`connect` (which isolate a server from every other one) and `crash1`/`start1`.
//! The lab's applier oracle (no two servers apply different commands at an index, no gaps) is
//! the simulator's invariants, checked on every step.
//!
//! A command is a `Put` of the lab's integer, submitted by [`Sim::start`] as the request of a
//! client of its own.

use super::links::NetConfig;
use super::world::{Sim, SimConfig, SimResult};
use super::{Micros, MS, SEC};
use model::{LogIndex, Term};
use rand::Rng;
use std::collections::BTreeMap;

/// The Raft lab's `RaftElectionTimeout`: its unit of "wait a while".
pub const RAFT_ELECTION_TIMEOUT: Micros = 1000 * MS;

pub fn three() -> SimConfig {
    SimConfig::new(3)
}

pub fn seven() -> SimConfig {
    SimConfig::new(7)
}

pub(crate) fn sleep(sim: &mut Sim, d: Micros) -> SimResult<()> {
    sim.run_until(sim.now() + d)
}

/// `checkOneLeader`: polls the connected servers up to 10 times, 450-550 ms apart; fails if a
/// term has two leaders, returns the leader of the highest term that has one, and fails with
/// "expected one leader, got none" after the tenth poll (about 5 s).
///
/// # Errors
/// As described.
pub fn check_one_leader(sim: &mut Sim) -> SimResult<usize> {
    for _ in 0..10 {
        let ms = 450 + sim.rng().random_range(0..100);
        sleep(sim, ms * MS)?;
        let mut leaders: BTreeMap<Term, Vec<usize>> = BTreeMap::new();
        for (k, s) in sim.servers().iter().enumerate() {
            if sim.is_connected(k) && sim.is_up(k) && s.is_leader() {
                leaders.entry(s.current_term()).or_default().push(k);
            }
        }
        if let Some((term, ls)) = leaders.iter().find(|(_, ls)| ls.len() > 1) {
            return Err(format!("term {term} has {} (>1) leaders: {ls:?}", ls.len()));
        }
        if let Some((_, ls)) = leaders.iter().next_back() {
            return Ok(ls[0]);
        }
    }
    Err("expected one leader, got none".into())
}

/// `checkTerms`: every connected server has the same term; returns it.
///
/// # Errors
/// "servers disagree on term".
pub fn check_terms(sim: &Sim) -> SimResult<Term> {
    let mut term = None;
    for (k, s) in sim.servers().iter().enumerate() {
        if sim.is_connected(k) && sim.is_up(k) {
            match term {
                None => term = Some(s.current_term()),
                Some(t) if t != s.current_term() => {
                    return Err(format!("servers disagree on term: {t} and {}", s.current_term()));
                }
                Some(_) => {}
            }
        }
    }
    term.ok_or_else(|| "no connected server".to_string())
}

/// `checkNoLeader`: no connected server believes it leads.
///
/// # Errors
/// "expected no leader among connected servers".
pub fn check_no_leader(sim: &Sim) -> SimResult<()> {
    for (k, s) in sim.servers().iter().enumerate() {
        if sim.is_connected(k) && s.is_leader() {
            return Err(format!("expected no leader among connected servers, but {k} claims to be leader"));
        }
    }
    Ok(())
}

/// TestInitialElection2A: a leader (within about 5 s); 50 ms later all terms agree and are at
/// least 1; after 2 s without failures the term should not have changed (only a warning, as in
/// the lab: reported in the run's notes); there is still one leader.
///
/// # Errors
/// The lab's messages.
pub fn initial_election(sim: &mut Sim) -> SimResult<()> {
    check_one_leader(sim)?;
    sleep(sim, 50 * MS)?;
    let term1 = check_terms(sim)?;
    if term1 < Term(1) {
        return Err(format!("term is {term1}, but should be at least 1"));
    }
    sleep(sim, 2 * RAFT_ELECTION_TIMEOUT)?;
    let term2 = check_terms(sim)?;
    if term1 != term2 {
        sim.notes.push(format!("warning: term changed from {term1} to {term2} even though there were no failures"));
    }
    check_one_leader(sim)?;
    Ok(())
}

/// TestReElection2A: the leader's disconnection brings a new leader; its return does not
/// disturb it; with no quorum (two of three disconnected) nobody leads after 2 s; a quorum
/// elects again, and the last server's return keeps one leader.
///
/// # Errors
/// The lab's messages.
pub fn re_election(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let leader1 = check_one_leader(sim)?;
    sim.disconnect(leader1);
    check_one_leader(sim)?;
    sim.connect(leader1);
    let leader2 = check_one_leader(sim)?;
    sim.disconnect(leader2);
    sim.disconnect((leader2 + 1) % servers);
    sleep(sim, 2 * RAFT_ELECTION_TIMEOUT)?;
    check_no_leader(sim)?;
    sim.connect((leader2 + 1) % servers);
    check_one_leader(sim)?;
    sim.connect(leader2);
    check_one_leader(sim)?;
    Ok(())
}

/// TestManyElections2A: 7 servers; 9 rounds of disconnecting 3 random servers (repeats
/// possible), one leader among the others, reconnecting them; then one leader.
///
/// # Errors
/// The lab's messages.
pub fn many_elections(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    check_one_leader(sim)?;
    for _ in 1..10 {
        let picks: Vec<usize> = (0..3).map(|_| sim.rng().random_range(0..servers)).collect();
        for &k in &picks {
            sim.disconnect(k);
        }
        check_one_leader(sim)?;
        for &k in &picks {
            sim.connect(k);
        }
    }
    check_one_leader(sim)?;
    Ok(())
}

// ----- part 2B/2C: agreement, through `Start` on the servers directly

/// The Raft lab's `one(cmd, expectedServers, retry)`: for up to 10 s, `Start` the command on the
/// connected servers in turn until one accepts, then poll every 20 ms for up to 2 s until at
/// least `expected` servers applied it at that index; without `retry` one miss fails.
///
/// # Errors
/// "one(cmd) failed to reach agreement", or a broken invariant.
pub fn one(sim: &mut Sim, cmd: u64, expected: usize, retry: bool) -> SimResult<LogIndex> {
    one_value(sim, &cmd.to_string(), expected, retry)
}

/// [`one`] with any command value (TestRPCBytes2B's 5000-byte strings).
///
/// # Errors
/// As [`one`].
pub fn one_value(sim: &mut Sim, value: &str, expected: usize, retry: bool) -> SimResult<LogIndex> {
    let servers = sim.servers().len();
    let mut cmd: String = value.chars().take(20).collect();
    if cmd.len() < value.len() {
        cmd.push_str("...");
    }
    let t0 = sim.now();
    let mut starts = 0;
    while sim.now() - t0 < 10 * SEC {
        let mut index = None;
        for _ in 0..servers {
            starts = (starts + 1) % servers;
            if sim.is_connected(starts) {
                if let Some((i, _)) = sim.start(starts, value.to_string())? {
                    index = Some(i);
                    break;
                }
            }
        }
        let Some(index) = index else {
            sleep(sim, 50 * MS)?;
            continue;
        };
        let t1 = sim.now();
        while sim.now() - t1 < 2 * SEC {
            let (n, v) = sim.n_committed(index)?;
            if n > 0 && n >= expected && v.as_deref() == Some(value) {
                return Ok(index);
            }
            sleep(sim, 20 * MS)?;
        }
        if !retry {
            return Err(format!("one({cmd}) failed to reach agreement"));
        }
    }
    Err(format!("one({cmd}) failed to reach agreement"))
}

/// The Raft lab's `wait(index, n, startTerm)`: back off from 10 ms to 1 s, 30 times, until `n`
/// servers applied `index`; `Ok(None)` when some server's term passed `start_term`.
///
/// # Errors
/// "only k decided for index i; wanted n".
pub fn wait(sim: &mut Sim, index: LogIndex, n: usize, start_term: Option<Term>) -> SimResult<Option<String>> {
    let mut to = 10 * MS;
    for _ in 0..30 {
        if sim.n_committed(index)?.0 >= n {
            break;
        }
        sleep(sim, to)?;
        if to < SEC {
            to *= 2;
        }
        if let Some(term) = start_term {
            if sim.servers().iter().enumerate().any(|(k, s)| sim.is_up(k) && s.current_term() > term) {
                return Ok(None); // someone has moved on
            }
        }
    }
    let (decided, value) = sim.n_committed(index)?;
    if decided < n {
        return Err(format!("only {decided} decided for index {index}; wanted {n}"));
    }
    Ok(value)
}

/// The Raft lab's `crash1(i)`: disconnect, then crash (keeping the persisted state).
pub fn crash1(sim: &mut Sim, i: usize) {
    sim.disconnect(i);
    sim.crash(i);
}

/// The Raft lab's `start1(i)`: crash if running, then restart from the persisted state; it
/// stays disconnected until `connect(i)`.
pub fn start1(sim: &mut Sim, i: usize) {
    if sim.is_up(i) {
        crash1(sim, i);
    }
    sim.restart(i);
}

pub(crate) fn random_cmd(sim: &mut Sim) -> u64 {
    sim.rng().random_range(0..1u64 << 31)
}

pub fn five() -> SimConfig {
    SimConfig::new(5)
}

pub fn five_unreliable() -> SimConfig {
    SimConfig { net: NetConfig { unreliable: true, ..NetConfig::default() }, ..SimConfig::new(5) }
}

/// TestBasicAgree2B: three commands in sequence land at indices 1, 2, 3 on all servers, and
/// nothing is committed at an index before its `Start`.
///
/// # Errors
/// The lab's messages.
pub fn basic_agree(sim: &mut Sim) -> SimResult<()> {
    for index in 1..=3u64 {
        let (n, _) = sim.n_committed(LogIndex(index))?;
        if n > 0 {
            return Err("some have committed before Start()".into());
        }
        let got = one(sim, index * 100, 3, false)?;
        if got != LogIndex(index) {
            return Err(format!("got index {got} but expected {index}"));
        }
    }
    Ok(())
}

/// TestFailAgree2B: a disconnected follower does not stop the other two, and catches up when
/// it returns.
///
/// # Errors
/// The lab's messages.
pub fn fail_agree(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    one(sim, 101, servers, false)?;
    let leader = check_one_leader(sim)?;
    sim.disconnect((leader + 1) % servers);
    one(sim, 102, servers - 1, false)?;
    one(sim, 103, servers - 1, false)?;
    sleep(sim, RAFT_ELECTION_TIMEOUT)?;
    one(sim, 104, servers - 1, false)?;
    one(sim, 105, servers - 1, false)?;
    sim.connect((leader + 1) % servers);
    one(sim, 106, servers, true)?;
    sleep(sim, RAFT_ELECTION_TIMEOUT)?;
    one(sim, 107, servers, true)?;
    Ok(())
}

/// TestFailNoAgree2B: with 3 of 5 disconnected the leader's entry at index 2 is not committed
/// after 2 s; after the repair a new entry lands at index 2 or 3, and everyone agrees.
///
/// # Errors
/// The lab's messages.
pub fn fail_no_agree(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    one(sim, 10, servers, false)?;
    let leader = check_one_leader(sim)?;
    for d in 1..=3 {
        sim.disconnect((leader + d) % servers);
    }
    let (index, _) = sim.start(leader, "20".into())?.ok_or("leader rejected Start()")?;
    if index != LogIndex(2) {
        return Err(format!("expected index 2, got {index}"));
    }
    sleep(sim, 2 * RAFT_ELECTION_TIMEOUT)?;
    let (n, _) = sim.n_committed(index)?;
    if n > 0 {
        return Err(format!("{n} committed but no majority"));
    }
    for d in 1..=3 {
        sim.connect((leader + d) % servers);
    }
    let leader2 = check_one_leader(sim)?;
    let (index2, _) = sim.start(leader2, "30".into())?.ok_or("leader2 rejected Start()")?;
    if !(LogIndex(2)..=LogIndex(3)).contains(&index2) {
        return Err(format!("unexpected index {index2}"));
    }
    one(sim, 1000, servers, true)?;
    Ok(())
}

/// TestFollowerFailure2B: agreement despite one disconnected follower; with both followers
/// gone the leader's entry at index 4 is not committed after 2 s.
///
/// # Errors
/// The lab's messages.
pub fn follower_failure(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    one(sim, 101, servers, false)?;
    let leader1 = check_one_leader(sim)?;
    sim.disconnect((leader1 + 1) % servers);
    one(sim, 102, servers - 1, false)?;
    sleep(sim, RAFT_ELECTION_TIMEOUT)?;
    one(sim, 103, servers - 1, false)?;
    let leader2 = check_one_leader(sim)?;
    sim.disconnect((leader2 + 1) % servers);
    sim.disconnect((leader2 + 2) % servers);
    let (index, _) = sim.start(leader2, "104".into())?.ok_or("leader rejected Start()")?;
    if index != LogIndex(4) {
        return Err(format!("expected index 4, got {index}"));
    }
    sleep(sim, 2 * RAFT_ELECTION_TIMEOUT)?;
    let (n, _) = sim.n_committed(index)?;
    if n > 0 {
        return Err(format!("{n} committed but no majority"));
    }
    Ok(())
}

/// TestLeaderFailure2B: a new leader after the leader's disconnection; with the second leader
/// gone too, `Start(104)` on every server commits nothing at index 4 within 2 s.
///
/// # Errors
/// The lab's messages.
pub fn leader_failure(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    one(sim, 101, servers, false)?;
    let leader1 = check_one_leader(sim)?;
    sim.disconnect(leader1);
    one(sim, 102, servers - 1, false)?;
    sleep(sim, RAFT_ELECTION_TIMEOUT)?;
    one(sim, 103, servers - 1, false)?;
    let leader2 = check_one_leader(sim)?;
    sim.disconnect(leader2);
    for k in 0..servers {
        sim.start(k, "104".into())?;
    }
    sleep(sim, 2 * RAFT_ELECTION_TIMEOUT)?;
    let (n, _) = sim.n_committed(LogIndex(4))?;
    if n > 0 {
        return Err(format!("{n} committed but no majority"));
    }
    Ok(())
}

/// TestRejoin2B: a partitioned leader's uncommitted entries are overwritten when it rejoins.
///
/// # Errors
/// The lab's messages.
pub fn rejoin(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    one(sim, 101, servers, true)?;
    let leader1 = check_one_leader(sim)?;
    sim.disconnect(leader1);
    for cmd in [102, 103, 104] {
        sim.start(leader1, cmd.to_string())?;
    }
    one(sim, 103, 2, true)?;
    let leader2 = check_one_leader(sim)?;
    sim.disconnect(leader2);
    sim.connect(leader1);
    one(sim, 104, 2, true)?;
    sim.connect(leader2);
    one(sim, 105, servers, true)?;
    Ok(())
}

/// TestBackup2B: leaders with 50 uncommitted entries each are isolated and rejoin; every
/// `one()` succeeds within its 10 s, which needs `next_index` to back up by more than one
/// entry per round trip. The run's notes give the rejections the leaders received.
///
/// # Errors
/// The lab's messages.
pub fn backup(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    let leader1 = check_one_leader(sim)?;
    for d in 2..=4 {
        sim.disconnect((leader1 + d) % servers);
    }
    for _ in 0..50 {
        let cmd = random_cmd(sim);
        sim.start(leader1, cmd.to_string())?;
    }
    sleep(sim, RAFT_ELECTION_TIMEOUT / 2)?;
    sim.disconnect(leader1);
    sim.disconnect((leader1 + 1) % servers);
    for d in 2..=4 {
        sim.connect((leader1 + d) % servers);
    }
    for _ in 0..50 {
        let cmd = random_cmd(sim);
        one(sim, cmd, 3, true)?;
    }
    let leader2 = check_one_leader(sim)?;
    let mut other = (leader1 + 2) % servers;
    if leader2 == other {
        other = (leader2 + 1) % servers;
    }
    sim.disconnect(other);
    for _ in 0..50 {
        let cmd = random_cmd(sim);
        sim.start(leader2, cmd.to_string())?;
    }
    sleep(sim, RAFT_ELECTION_TIMEOUT / 2)?;
    for k in 0..servers {
        sim.disconnect(k);
    }
    sim.connect(leader1);
    sim.connect((leader1 + 1) % servers);
    sim.connect(other);
    for _ in 0..50 {
        let cmd = random_cmd(sim);
        one(sim, cmd, 3, true)?;
    }
    for k in 0..servers {
        sim.connect(k);
    }
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    let rejections = sim.stats().rejections;
    sim.notes.push(format!("{rejections} AppendEntries rejections"));
    Ok(())
}

/// TestCount2B: electing the first leader takes 1-30 RPCs; agreeing on 11 entries started at
/// once takes at most (10 + 1 + 3) × 3 (retried up to 5 times if the term changes); a second of
/// idleness at most 3 × 20. RPCs are server→server requests delivered.
///
/// # Errors
/// The lab's messages.
pub fn count(sim: &mut Sim) -> SimResult<()> {
    const ITERS: u64 = 10;
    let servers = sim.servers().len();
    check_one_leader(sim)?;
    let total1 = sim.stats().peer_requests;
    if !(1..=30).contains(&total1) {
        return Err(format!("too many or few RPCs ({total1}) to elect initial leader"));
    }
    let mut total2 = None;
    'tries: for attempt in 0..5 {
        if attempt > 0 {
            sleep(sim, 3 * SEC)?;
        }
        let leader = check_one_leader(sim)?;
        let total1 = sim.stats().peer_requests;
        let Some((starti, term)) = sim.start(leader, "1".into())? else { continue };
        let mut cmds = Vec::new();
        for i in 1..ITERS + 2 {
            let x = random_cmd(sim);
            cmds.push(x);
            match sim.start(leader, x.to_string())? {
                Some((index, term1)) if term1 == term => {
                    if index != LogIndex(starti.0 + i) {
                        return Err("Start() failed".into());
                    }
                }
                _ => continue 'tries,
            }
        }
        for i in 1..=ITERS {
            let index = LogIndex(starti.0 + i);
            match wait(sim, index, servers, Some(term))? {
                None => continue 'tries,
                Some(v) if v == cmds[(i - 1) as usize].to_string() => {}
                Some(v) => return Err(format!("wrong value {v} committed for index {index}")),
            }
        }
        if sim.servers().iter().any(|s| s.current_term() != term) {
            continue;
        }
        let used = sim.stats().peer_requests - total1;
        if used > (ITERS + 1 + 3) * 3 {
            return Err(format!("too many RPCs ({used}) for {ITERS} entries"));
        }
        sim.notes.push(format!("{total1} RPCs to elect, {used} for {} entries", ITERS + 1));
        total2 = Some(sim.stats().peer_requests);
        break;
    }
    let total2 = total2.ok_or("term changed too often")?;
    sleep(sim, RAFT_ELECTION_TIMEOUT)?;
    let idle = sim.stats().peer_requests - total2;
    if idle > 3 * 20 {
        return Err(format!("too many RPCs ({idle}) for 1 second of idleness"));
    }
    sim.notes.push(format!("{idle} RPCs in 1 s idle"));
    Ok(())
}
