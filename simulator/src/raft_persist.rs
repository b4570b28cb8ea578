//! The course's Raft persistence tests (docs/lab-tests.md, part 2C): restarts of whole
//! clusters, of leaders and followers, and Figure 8 with and without an unreliable network,
//! on the harness primitives of [`super::raft`].

use super::raft::{check_one_leader, crash1, one, random_cmd, sleep, start1, wait, RAFT_ELECTION_TIMEOUT};
use super::world::{Sim, SimResult};
use super::MS;
use model::LogIndex;
use rand::Rng;

/// TestPersist12C: full restarts, a restarted leader, a restarted follower: all `one()`s
/// succeed, so nothing committed is lost.
///
/// # Errors
/// The lab's messages.
pub fn persist1(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    one(sim, 11, servers, true)?;
    for k in 0..servers {
        start1(sim, k);
    }
    for k in 0..servers {
        sim.disconnect(k);
        sim.connect(k);
    }
    one(sim, 12, servers, true)?;
    let leader1 = check_one_leader(sim)?;
    sim.disconnect(leader1);
    start1(sim, leader1);
    sim.connect(leader1);
    one(sim, 13, servers, true)?;
    let leader2 = check_one_leader(sim)?;
    sim.disconnect(leader2);
    one(sim, 14, servers - 1, true)?;
    start1(sim, leader2);
    sim.connect(leader2);
    wait(sim, LogIndex(4), servers, None)?;
    let i3 = (check_one_leader(sim)? + 1) % servers;
    sim.disconnect(i3);
    one(sim, 15, servers - 1, true)?;
    start1(sim, i3);
    sim.connect(i3);
    one(sim, 16, servers, true)?;
    Ok(())
}

/// TestPersist22C: five rounds in which the servers holding the newest entry are cut off or
/// restarted; the election restriction and persisted logs keep every committed entry.
///
/// # Errors
/// The lab's messages.
pub fn persist2(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let mut index = 1;
    for _ in 0..5 {
        one(sim, 10 + index, servers, true)?;
        index += 1;
        let leader1 = check_one_leader(sim)?;
        sim.disconnect((leader1 + 1) % servers);
        sim.disconnect((leader1 + 2) % servers);
        one(sim, 10 + index, servers - 2, true)?;
        index += 1;
        for d in [0, 3, 4] {
            sim.disconnect((leader1 + d) % servers);
        }
        start1(sim, (leader1 + 1) % servers);
        start1(sim, (leader1 + 2) % servers);
        sim.connect((leader1 + 1) % servers);
        sim.connect((leader1 + 2) % servers);
        sleep(sim, RAFT_ELECTION_TIMEOUT)?;
        start1(sim, (leader1 + 3) % servers);
        sim.connect((leader1 + 3) % servers);
        one(sim, 10 + index, servers - 2, true)?;
        index += 1;
        sim.connect((leader1 + 4) % servers);
        sim.connect(leader1);
    }
    one(sim, 1000, servers, true)?;
    Ok(())
}

/// TestPersist32C: the server that missed entry 102 must not win after the other two crash.
///
/// # Errors
/// The lab's messages.
pub fn persist3(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    one(sim, 101, 3, true)?;
    let leader = check_one_leader(sim)?;
    sim.disconnect((leader + 2) % servers);
    one(sim, 102, 2, true)?;
    crash1(sim, leader);
    crash1(sim, (leader + 1) % servers);
    sim.connect((leader + 2) % servers);
    start1(sim, leader);
    sim.connect(leader);
    one(sim, 103, 2, true)?;
    start1(sim, (leader + 1) % servers);
    sim.connect((leader + 1) % servers);
    one(sim, 104, servers, true)?;
    Ok(())
}

/// The lab's Figure 8 sleep: U[0, 500) ms one time in ten, U[0, 13) ms otherwise.
fn figure8_sleep(sim: &mut Sim) -> SimResult<()> {
    let ms = if sim.rng().random_range(0..1000) < 100 {
        sim.rng().random_range(0..RAFT_ELECTION_TIMEOUT / MS / 2)
    } else {
        sim.rng().random_range(0..13)
    };
    sleep(sim, ms * MS)
}

/// TestFigure82C: 1000 rounds of `Start` on every running server, a short sleep, and a crash
/// of the leader (restarting a random server whenever fewer than 3 run); then everyone
/// restarts and agrees. Safety (Figure 8: no commit of an older term's entry by counting) is
/// checked by the invariants on every step.
///
/// # Errors
/// The lab's messages, or a broken invariant.
pub fn figure8(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let cmd = random_cmd(sim);
    one(sim, cmd, 1, true)?;
    let mut nup = servers;
    for _ in 0..1000 {
        let mut leader = None;
        for k in 0..servers {
            let cmd = random_cmd(sim);
            if sim.start(k, cmd.to_string())?.is_some() {
                leader = Some(k);
            }
        }
        figure8_sleep(sim)?;
        if let Some(l) = leader {
            crash1(sim, l);
            nup -= 1;
        }
        if nup < 3 {
            let s = sim.rng().random_range(0..servers);
            if !sim.is_up(s) {
                start1(sim, s);
                sim.connect(s);
                nup += 1;
            }
        }
    }
    for k in 0..servers {
        if !sim.is_up(k) {
            start1(sim, k);
            sim.connect(k);
        }
    }
    let cmd = random_cmd(sim);
    one(sim, cmd, servers, true)?;
    Ok(())
}

/// TestFigure8Unreliable2C: as Figure 8 on an unreliable network, disconnecting the leader
/// half the time instead of crashing it, with labrpc's long reordering of replies from round
/// 200 on; then everyone reconnects and must agree within `one()`'s 10 s despite stale,
/// delayed replies.
///
/// # Errors
/// The lab's messages, or a broken invariant.
pub fn figure8_unreliable(sim: &mut Sim) -> SimResult<()> {
    let servers = sim.servers().len();
    let cmd = random_cmd(sim) % 10_000;
    one(sim, cmd, 1, true)?;
    let mut nup = servers;
    for iteration in 0..1000 {
        if iteration == 200 {
            sim.world("long reordering on".into());
            sim.cfg.net.long_reordering = true;
        }
        let mut leader = None;
        for k in 0..servers {
            let cmd = random_cmd(sim) % 10_000;
            if sim.start(k, cmd.to_string())?.is_some() && sim.is_connected(k) {
                leader = Some(k);
            }
        }
        figure8_sleep(sim)?;
        if let Some(l) = leader {
            if sim.rng().random_range(0..1000) < RAFT_ELECTION_TIMEOUT / MS / 2 {
                sim.disconnect(l);
                nup -= 1;
            }
        }
        if nup < 3 {
            let s = sim.rng().random_range(0..servers);
            if !sim.is_connected(s) {
                sim.connect(s);
                nup += 1;
            }
        }
    }
    for k in 0..servers {
        if !sim.is_connected(k) {
            sim.connect(k);
        }
    }
    let cmd = random_cmd(sim) % 10_000;
    one(sim, cmd, servers, true)?;
    Ok(())
}
