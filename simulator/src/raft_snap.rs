//! The course's TestRPCBytes2B and its part 2D tests (docs/lab-tests.md, "The 28 Raft tests")
//! on the servers directly, with the harness of [`super::raft`].
//!
//! Part 2D: the lab's service calls `Snapshot(index)` every `SnapShotInterval` = 10 applied
//! entries; here the core takes snapshots itself when its Raft state reaches
//! `max_raft_state` ([`SNAPSHOT_STATE`], about ten of these entries). The lab's applier checks
//! (a snapshot's index equals its content's, nothing applied out of order) are the
//! simulator's invariants (`snapshot_content`, `applied_monotonic`); `nCommitted` counts
//! indices a server holds only inside a snapshot (see `Sim::record_snapshot`).

use super::links::NetConfig;
use super::raft::{check_one_leader, crash1, one, one_value, random_cmd, start1};
use super::world::{Sim, SimConfig, SimResult};
use model::LogIndex;
use rand::distr::Alphanumeric;
use rand::Rng;

/// The lab's `MAXLOGSIZE`: `LogSize()` must stay below it. Our encoding is denser than gob,
/// so it is looser here than in Go (docs/lab-tests.md, "Byte bounds depend on the encoding");
/// the measured maximum is in the notes.
pub const MAX_LOG_SIZE: u64 = 2000;

/// `max_raft_state` for part 2D: a `Start` command (a `Put` of a number up to 2^31 under a
/// client of its own) takes 20-25 bytes of Raft state, so the core snapshots about every 10
/// entries, like the lab's `SnapShotInterval`.
pub const SNAPSHOT_STATE: u64 = 250;

/// The lab's `SnapShotInterval`.
const SNAPSHOT_INTERVAL: u64 = 10;

pub fn three_snapshots() -> SimConfig {
    SimConfig { max_raft_state: Some(SNAPSHOT_STATE), ..SimConfig::new(3) }
}

pub fn three_snapshots_unreliable() -> SimConfig {
    SimConfig { net: NetConfig { unreliable: true, ..NetConfig::default() }, ..three_snapshots() }
}

/// TestRPCBytes2B: after one small command, 10 commands of 5000 random bytes each land at
/// indices 2..=11, and the server→server request bytes they cost stay within
/// `servers × sent + 50 000` (each command sent once to each server, plus slack), counted in
/// our wire encoding (`Stats::peer_request_bytes`).
///
/// # Errors
/// The lab's messages.
pub fn rpc_bytes(sim: &mut Sim) -> SimResult<()> {
    let n = sim.servers().len();
    let servers = n as u64;
    one(sim, 99, n, false)?;
    let bytes0 = sim.stats().peer_request_bytes;
    let replies0 = sim.stats().peer_reply_bytes;
    let mut sent = 0;
    for index in 2..12u64 {
        let cmd: String = (0..5000).map(|_| char::from(sim.rng().sample(Alphanumeric))).collect();
        let got = one_value(sim, &cmd, n, false)?;
        if got != LogIndex(index) {
            return Err(format!("got index {got} but expected {index}"));
        }
        sent += cmd.len() as u64;
    }
    let got = sim.stats().peer_request_bytes - bytes0;
    let replies = sim.stats().peer_reply_bytes - replies0;
    let expected = servers * sent;
    sim.notes.push(format!(
        "rpc bytes: {got} request bytes for {sent} command bytes (bound {}), plus {replies} reply bytes",
        expected + 50_000
    ));
    if got > expected + 50_000 {
        return Err(format!("too many RPC bytes; got {got}, expected {expected}"));
    }
    Ok(())
}

/// The lab's `LogSize() >= MAXLOGSIZE` check, recording the largest size seen in the notes
/// at the end of the scenario.
fn check_log_size(sim: &mut Sim, max: &mut u64) -> SimResult<()> {
    let size = sim.log_size();
    *max = (*max).max(size);
    if size >= MAX_LOG_SIZE {
        return Err(format!("Log size too large: {size} bytes (bound {MAX_LOG_SIZE})"));
    }
    Ok(())
}

/// Whether the victim can only catch up through InstallSnapshot: every other server's
/// snapshot ends past the victim's last entry, so whoever leads no longer holds the entries
/// the victim needs next.
fn needs_install(sim: &Sim, victim: usize) -> bool {
    let last = sim.servers()[victim].log().last_index();
    (0..sim.servers().len()).filter(|&k| k != victim).all(|k| sim.servers()[k].durable.snapshot.last_index > last)
}

/// After the victim rejoined and a command reached all servers: if it had to install a
/// snapshot, it did (TestSnapshotInstall2D's point). Counts the rounds that needed one.
fn check_installed(sim: &Sim, victim: usize, needed: bool, installs_before: u32, rounds: &mut u32) -> SimResult<()> {
    if !needed {
        return Ok(());
    }
    *rounds += 1;
    if sim.snapshots_installed(victim) <= installs_before {
        return Err(format!("server {victim} caught up without installing the snapshot it needed"));
    }
    Ok(())
}

/// The lab's `snapcommon(disconnect, reliable, crash)`: 30 rounds; in each, a victim (the
/// leader's successor, or the leader every third round) is disconnected or crashed, a random
/// number (5-14) of commands is started on a sender, a command reaches the others, the log
/// stays under `MAXLOGSIZE`, and the victim returns and catches up.
fn snapcommon(sim: &mut Sim, disconnect: bool, crash: bool) -> SimResult<()> {
    let servers = sim.servers().len();
    let mut max_log = 0;
    let mut install_rounds = 0;
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    let mut leader1 = check_one_leader(sim)?;
    for i in 0..30 {
        let (mut victim, mut sender) = ((leader1 + 1) % servers, leader1);
        if i % 3 == 1 {
            (victim, sender) = (leader1, (leader1 + 1) % servers);
        }
        if disconnect {
            sim.disconnect(victim);
            let cmd = random_cmd(sim);
            one(sim, cmd, servers - 1, true)?;
        }
        if crash {
            crash1(sim, victim);
            let cmd = random_cmd(sim);
            one(sim, cmd, servers - 1, true)?;
        }
        let nn = SNAPSHOT_INTERVAL / 2 + sim.rng().random_range(0..SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let cmd = random_cmd(sim);
            sim.start(sender, cmd.to_string())?;
        }
        let expected = if disconnect || crash { servers - 1 } else { servers };
        let cmd = random_cmd(sim);
        one(sim, cmd, expected, true)?;
        check_log_size(sim, &mut max_log)?;
        if disconnect || crash {
            if crash {
                start1(sim, victim);
            }
            let (needed, before) = (needs_install(sim, victim), sim.snapshots_installed(victim));
            sim.connect(victim);
            let cmd = random_cmd(sim);
            one(sim, cmd, servers, true)?;
            check_installed(sim, victim, needed, before, &mut install_rounds)?;
            leader1 = check_one_leader(sim)?;
        }
    }
    let installs: Vec<u32> = (0..servers).map(|k| sim.snapshots_installed(k)).collect();
    sim.notes.push(format!(
        "LogSize max {max_log} bytes (bound {MAX_LOG_SIZE}); {} snapshots taken; installs per server {installs:?}; {install_rounds} rounds needed an install",
        sim.stats().snapshots_taken
    ));
    if sim.stats().snapshots_taken == 0 {
        return Err("no snapshot was taken".into());
    }
    if disconnect && install_rounds == 0 {
        return Err("no round needed InstallSnapshot: the scenario did not test it".into());
    }
    Ok(())
}

/// TestSnapshotBasic2D.
///
/// # Errors
/// The lab's messages.
pub fn snapshot_basic(sim: &mut Sim) -> SimResult<()> {
    snapcommon(sim, false, false)
}

/// TestSnapshotInstall2D (reliable) and TestSnapshotInstallUnreliable2D (with the unreliable
/// configuration).
///
/// # Errors
/// The lab's messages.
pub fn snapshot_install(sim: &mut Sim) -> SimResult<()> {
    snapcommon(sim, true, false)
}

/// TestSnapshotInstallCrash2D (reliable) and TestSnapshotInstallUnCrash2D (unreliable).
///
/// # Errors
/// The lab's messages.
pub fn snapshot_install_crash(sim: &mut Sim) -> SimResult<()> {
    snapcommon(sim, false, true)
}

/// Crash every server and restart them all from what they persisted.
fn crash_all_and_restart(sim: &mut Sim) {
    let servers = sim.servers().len();
    for k in 0..servers {
        crash1(sim, k);
    }
    for k in 0..servers {
        start1(sim, k);
        sim.connect(k);
    }
}

/// TestSnapshotAllCrash2D: five times, 5-14 commands, then crash and restart every server;
/// the next command lands past the last one before the crash.
///
/// # Errors
/// The lab's messages.
pub fn snapshot_all_crash(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let mut max_log = 0;
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    for _ in 0..5 {
        let nn = SNAPSHOT_INTERVAL / 2 + sim.rng().random_range(0..SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let cmd = random_cmd(sim);
            one(sim, cmd, servers, true)?;
        }
        let cmd = random_cmd(sim);
        let index1 = one(sim, cmd, servers, true)?;
        check_log_size(sim, &mut max_log)?;
        crash_all_and_restart(sim);
        let cmd = random_cmd(sim);
        let index2 = one(sim, cmd, servers, true)?;
        if index2 < LogIndex(index1.0 + 1) {
            return Err(format!("index decreased from {index1} to {index2}"));
        }
    }
    sim.notes.push(format!("LogSize max {max_log} bytes; {} snapshots taken", sim.stats().snapshots_taken));
    if sim.stats().snapshots_taken == 0 {
        return Err("no snapshot was taken".into());
    }
    Ok(())
}

/// TestSnapshotInit2D: 11 commands (a snapshot), crash and restart all, one command (which
/// persists Raft state again), crash and restart all, one more command. Beyond the lab, each
/// server's snapshot must survive the persist after the first restart: persisting Raft state
/// after a restart must never drop or overwrite the snapshot (docs/lab-tests.md,
/// "The 28 Raft tests", TestSnapshotInit2D).
///
/// # Errors
/// The lab's messages.
pub fn snapshot_init(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    for _ in 0..=SNAPSHOT_INTERVAL {
        let cmd = random_cmd(sim);
        one(sim, cmd, servers, true)?;
    }
    let snapshots: Vec<LogIndex> = sim.servers().iter().map(|s| s.durable.snapshot.last_index).collect();
    if snapshots.iter().all(|&i| i == LogIndex(0)) {
        return Err("no snapshot after 12 commands".into());
    }
    crash_all_and_restart(sim);
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    crash_all_and_restart(sim);
    for (k, s) in sim.servers().iter().enumerate() {
        if s.durable.snapshot.last_index < snapshots[k] {
            return Err(format!(
                "server {k}'s snapshot went back from {} to {} across restarts",
                snapshots[k], s.durable.snapshot.last_index
            ));
        }
    }
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    Ok(())
}
