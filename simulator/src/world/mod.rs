//! The simulated world: every server and clerk of one cluster in one thread, in virtual time,
//! driven by one seeded RNG.
//!
//! - Events (message arrivals, timer expiries) wait in a queue ordered by (time, sequence
//!   number), so equal times resolve in the order the events were scheduled: the same seed
//!   gives the same run, event for event.
//! - Servers change only through `model::step` and start only through `Server::restore`. A
//!   step's effects are executed in the runtime's order (model/src/io.rs): `persist` is already
//!   in the server's `durable` (the simulated disk is the `Durable` itself, so a crash keeps
//!   exactly what was persisted), then sends and replies enter the network, then timers are
//!   (re)armed. A crash drops the volatile server and keeps its `Durable`; a restart is
//!   `Server::restore(config, durable)`.
//! - Clerks change only through `model::clerk_step`; their retry timer is virtual.
//! - After every step the cheap invariants run (see [`Sim::step_server`]); the ones that walk
//!   whole logs or replay the state machine run on a cadence proportional to the state's size,
//!   so they cost a bounded fraction of the run (see [`Sim::full_check`]).
//! - Every operation a clerk invokes is recorded with its virtual invocation and return times,
//!   for the linearizability check at the end (`clerks`).
//! - `raft_view` gives the Raft lab's view of the servers: `Start` and the applied logs.

use super::links::{Links, NetConfig};
use super::trace::{Event, Recent, TraceHash};
use super::workload::ClientLoop;
use super::{Micros, MS};
use model::{
    step, Bug, Clerk, ClerkInput, ClientId, Config, DurableChange, Endpoint, Envelope, Input, LogIndex, NodeId, Note,
    OpOutput, Server, Timer, TimerCommand,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use specs::{Ghost, TimedOp};
use std::collections::{BTreeMap, BinaryHeap};

mod clerks;
mod outages;
mod queue;
mod raft_view;
mod transit;

use queue::{Popped, Queued, Scheduled, TimerSlot};

/// What a failed check or a stuck scenario reports.
pub type SimResult<T> = Result<T, String>;

/// Everything about a cluster that a scenario chooses.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub servers: u32,
    /// The course's `maxraftstate` (`None`: -1, snapshots must not be used).
    pub max_raft_state: Option<u64>,
    /// Each arming of a server's election timer draws its duration uniformly from this range.
    pub election_timeout: (Micros, Micros),
    pub heartbeat: Micros,
    /// A clerk retries (at the next server) when no answer came within this long.
    pub clerk_retry: Micros,
    pub net: NetConfig,
    pub bug: Option<Bug>,
    /// The fewest server steps between two full checks (they also wait in proportion to the
    /// state's size).
    pub full_check_every: u64,
    /// Virtual time by which the scenario must be over (the course's 120 s per test).
    pub time_limit: Micros,
}

impl SimConfig {
    /// The default cluster: election timeouts of 300-600 ms, heartbeats every 100 ms, clerk
    /// retries after 250 ms, a reliable network, no snapshots.
    pub fn new(servers: u32) -> SimConfig {
        SimConfig {
            servers,
            max_raft_state: None,
            election_timeout: (300 * MS, 600 * MS),
            heartbeat: 100 * MS,
            clerk_retry: 250 * MS,
            net: NetConfig::default(),
            bug: None,
            full_check_every: 20_000,
            time_limit: 120 * super::SEC,
        }
    }
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub server_steps: u64,
    pub clerk_steps: u64,
    /// Messages handed to the network, and what became of them.
    pub sent: u64,
    pub delivered: u64,
    /// Lost to the unreliable network.
    pub lost: u64,
    /// Black-holed by a disabled link.
    pub cut: u64,
    /// To a crashed server, or from a server that crashed after sending.
    pub dead: u64,
    /// Clerk operations completed.
    pub ops: u64,
    /// `BecameLeader` notes.
    pub elections: u64,
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub crashes: u64,
    pub full_checks: u64,
    /// Server→server requests delivered (RequestVote, AppendEntries, InstallSnapshot): the
    /// Raft lab's RPC count.
    pub peer_requests: u64,
    /// Wire bytes (`model::log::encoded_size` of the `PeerMsg`, the postcard payload the
    /// runtime sends) of every server→server request handed to the network, counted when sent
    /// whatever becomes of it: labrpc's `bytesTotal`, which TestRPCBytes2B bounds.
    pub peer_request_bytes: u64,
    /// The same for server→server replies (labrpc does not count them).
    pub peer_reply_bytes: u64,
    /// AppendEntries rejections delivered to leaders (fast back-up makes them few).
    pub rejections: u64,
    pub snapshot_checks: u64,
    /// The largest `Durable::raft_state_size` and `Snapshot::encoded_size` seen on any server.
    pub max_raft_state: u64,
    pub max_snapshot: u64,
}

#[derive(Clone, Debug, Default)]
struct NodeMeta {
    up: bool,
    /// Grows at every crash: messages to or from an earlier incarnation are lost.
    incarnation: u32,
    election: TimerSlot,
    heartbeat: TimerSlot,
    /// Raft-lab connectivity (`disconnect`/`connect`).
    connected: bool,
    /// The snapshot changed since it was last checked.
    snapshot_unchecked: bool,
    snapshots_installed: u32,
    /// What this server ever applied, index → command value, across incarnations (the Raft
    /// lab's applier oracle remembers what a server applied before it crashed): from its
    /// `Applied`/`DuplicateSuppressed`/`StaleSuppressed` notes, and for a snapshot it installs
    /// or restores, every index the snapshot covers (see `Sim::record_snapshot`).
    applied: BTreeMap<LogIndex, String>,
}

/// A clerk, its retry timer, its operation in flight and the client loop driving it.
#[derive(Clone, Debug)]
pub struct SimClerk {
    pub clerk: Clerk,
    retry: TimerSlot,
    /// Index in the history of the operation in flight.
    in_flight: Option<usize>,
    /// The output of the last completed operation.
    pub last_output: Option<OpOutput>,
    pub driver: Option<ClientLoop>,
}

/// One simulated cluster.
pub struct Sim {
    pub cfg: SimConfig,
    pub seed: u64,
    now: Micros,
    queue: BinaryHeap<Queued>,
    next_seq: u64,
    rng: StdRng,
    servers: Vec<Server>,
    nodes: Vec<NodeMeta>,
    clerks: Vec<SimClerk>,
    links: Links,
    /// The latest arrival time scheduled on each link (for FIFO links).
    link_last: BTreeMap<(Endpoint, Endpoint), Micros>,
    ghost: Ghost,
    /// Every clerk operation, its times the ticks: positions in the total order of invocations
    /// and returns, strictly increasing and consistent with virtual time, so that "returned
    /// before called" is exact even for events at the same microsecond.
    history: Vec<TimedOp>,
    tick: i64,
    hash: TraceHash,
    recent: Recent,
    stats: Stats,
    next_full_check: u64,
    next_snapshot_check: u64,
    /// Commands submitted with [`Sim::start`] so far.
    starts: u64,
    /// Print every event as it happens.
    pub verbose: bool,
    /// Remarks for the report (warnings the course prints without failing).
    pub notes: Vec<String>,
}

/// Client ids of commands submitted with [`Sim::start`] start above this (clerks' ids are small).
const START_CLIENTS: u64 = 1_000_000;

fn node_id(n: usize) -> NodeId {
    NodeId(u32::try_from(n).expect("few servers") + 1)
}

fn node_index(id: NodeId) -> usize {
    id.0 as usize - 1
}

fn clerk_id(c: usize) -> ClientId {
    ClientId(c as u64 + 1)
}

fn clerk_index(id: ClientId) -> usize {
    usize::try_from(id.0).expect("small clerk ids") - 1
}

/// `{n1 n2}` for servers 0 and 1.
fn names(servers: &[usize]) -> String {
    let names: Vec<String> = servers.iter().map(|&k| node_id(k).to_string()).collect();
    format!("{{{}}}", names.join(" "))
}

fn violation(v: specs::Violation) -> String {
    v.to_string()
}

impl Sim {
    /// A cluster of fresh servers (`Server::restore` from an empty `Durable`), all connected.
    pub fn new(cfg: SimConfig, seed: u64) -> Sim {
        let n = cfg.servers as usize;
        let mut sim = Sim {
            seed,
            now: 0,
            queue: BinaryHeap::new(),
            next_seq: 0,
            rng: StdRng::seed_from_u64(seed),
            servers: Vec::with_capacity(n),
            nodes: vec![NodeMeta { up: true, connected: true, ..NodeMeta::default() }; n],
            clerks: Vec::new(),
            links: Links::default(),
            link_last: BTreeMap::new(),
            ghost: Ghost::new(),
            history: Vec::new(),
            tick: 0,
            hash: TraceHash::default(),
            recent: Recent::new(40),
            stats: Stats::default(),
            next_full_check: cfg.full_check_every,
            next_snapshot_check: 0,
            starts: 0,
            verbose: false,
            notes: Vec::new(),
            cfg,
        };
        for k in 0..n {
            let (server, out) = Server::restore(sim.config(k), model::Durable::default());
            sim.ghost.observe_server(&server);
            sim.servers.push(server);
            sim.apply_timers(k, &out.timers);
        }
        sim
    }

    /// The core's configuration of server `n` (0-based).
    pub fn config(&self, n: usize) -> Config {
        let members: Vec<NodeId> = (0..self.cfg.servers as usize).map(node_id).collect();
        let config = Config { max_raft_state: self.cfg.max_raft_state, ..Config::new(node_id(n), &members) };
        match self.cfg.bug {
            Some(bug) => config.with_bug(bug).expect("bug variants compiled in (checked by the caller)"),
            None => config,
        }
    }

    // ----- accessors

    pub fn now(&self) -> Micros {
        self.now
    }

    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    pub fn is_up(&self, n: usize) -> bool {
        self.nodes[n].up
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn trace_hash(&self) -> u64 {
        self.hash.value()
    }

    pub fn recent_events(&self) -> Vec<String> {
        self.recent.render()
    }

    /// The scenario's randomness (the partitioner's coin flips, ...), from the same stream.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    pub fn clerk(&self, c: usize) -> &SimClerk {
        &self.clerks[c]
    }

    /// How many snapshots server `n` installed from a leader.
    pub fn snapshots_installed(&self, n: usize) -> u32 {
        self.nodes[n].snapshots_installed
    }

    /// The course's `LogSize()`: the largest persisted Raft state (term, vote, retained log;
    /// no snapshot) over all servers, in the runtime's encoding.
    pub fn log_size(&self) -> u64 {
        self.servers.iter().map(|s| s.durable.raft_state_size()).max().unwrap_or(0)
    }

    /// The course's `SnapshotSize()`: the largest persisted snapshot, encoded.
    pub fn snapshot_size(&self) -> u64 {
        self.servers.iter().map(|s| s.durable.snapshot.encoded_size()).max().unwrap_or(0)
    }

    /// Whether any server holds a snapshot ("snapshots must not be used" when
    /// `max_raft_state` is none; an absent snapshot still encodes to a few bytes).
    pub fn snapshot_used(&self) -> bool {
        self.servers.iter().any(|s| s.durable.snapshot != model::Snapshot::default())
    }

    /// The leader of the highest term among the running servers (the course's `Leader()` and
    /// `checkOneLeader` take the same view).
    pub fn leader(&self) -> Option<usize> {
        (0..self.servers.len())
            .filter(|&k| self.nodes[k].up && self.servers[k].is_leader())
            .max_by_key(|&k| (self.servers[k].current_term(), std::cmp::Reverse(k)))
    }

    // ----- running

    fn push(&mut self, at: Micros, what: Scheduled) {
        self.queue.push(Queued { at, seq: self.next_seq, what });
        self.next_seq += 1;
    }

    /// Processes every event up to `until` (inclusive), then sets the clock to `until`.
    ///
    /// # Errors
    /// The first broken invariant or failed client check.
    pub fn run_until(&mut self, until: Micros) -> SimResult<()> {
        while self.queue.peek().is_some_and(|q| q.at <= until) {
            let q = self.queue.pop().expect("peeked");
            self.process(q)?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Processes events while `busy` holds and the clock is at most `limit`; `Ok(true)` when
    /// `busy` stopped holding (the clock then stays at that event), `Ok(false)` at the limit.
    ///
    /// # Errors
    /// As [`Sim::run_until`].
    pub fn run_while(&mut self, limit: Micros, busy: impl Fn(&Sim) -> bool) -> SimResult<bool> {
        loop {
            if !busy(self) {
                return Ok(true);
            }
            match self.queue.peek() {
                Some(q) if q.at <= limit => {
                    let q = self.queue.pop().expect("peeked");
                    self.process(q)?;
                }
                _ => {
                    self.now = self.now.max(limit);
                    return Ok(!busy(self));
                }
            }
        }
    }

    fn process(&mut self, q: Queued) -> SimResult<()> {
        self.now = q.at;
        match q.what {
            Scheduled::Deliver { envelope, sender, receiver } => self.deliver(envelope, sender, receiver),
            Scheduled::ServerTimer { node, timer, incarnation } => {
                let meta = &mut self.nodes[node];
                if !meta.up || meta.incarnation != incarnation {
                    return Ok(());
                }
                let slot = match timer {
                    Timer::Election => &mut meta.election,
                    Timer::Heartbeat => &mut meta.heartbeat,
                };
                match slot.pop(q.at) {
                    Popped::Fire => self.step_server(node, Input::Timeout(timer)),
                    Popped::Requeue(at) => {
                        self.push(at, Scheduled::ServerTimer { node, timer, incarnation });
                        Ok(())
                    }
                    Popped::Ignore => Ok(()),
                }
            }
            Scheduled::ClerkTimer { clerk } => match self.clerks[clerk].retry.pop(q.at) {
                Popped::Fire => self.step_clerk(clerk, ClerkInput::Timeout),
                Popped::Requeue(at) => {
                    self.push(at, Scheduled::ClerkTimer { clerk });
                    Ok(())
                }
                Popped::Ignore => Ok(()),
            },
        }
    }

    /// One step of server `n`, its invariants, and its effects in the runtime's order.
    ///
    /// Checked on every step (cheap): applied state never goes back (`applied_monotonic`), the
    /// stepped server's commit bounds, and the ghost's records of a second leader in a term, a
    /// second entry committed at an index, or a second execution of a (client, seq) (election
    /// safety, state machine safety, at most once). Leader completeness is checked when a
    /// server becomes leader (its log against everything committed in earlier terms: O(committed),
    /// and elections are rare; commits seen later are covered by the full checks), a snapshot's
    /// content when it changes (rate-limited: each check replays the committed prefix, so the
    /// next one waits for as many steps as half that prefix). Everything else runs in
    /// [`Sim::full_check`].
    fn step_server(&mut self, n: usize, input: Input) -> SimResult<()> {
        let id = node_id(n);
        self.hash.record(&(self.now, 0u8, n, &input));
        self.recent.push(Event::Server { at: self.now, node: id, input: input.clone() });
        if self.verbose {
            println!("{}", Event::Server { at: self.now, node: id, input: input.clone() });
        }
        let (after, mut out) = step(&self.servers[n], input);
        self.hash.record(&out);
        if self.verbose {
            print!("{out}");
        }
        self.stats.server_steps += 1;
        let before = &self.servers[n];
        specs::applied_monotonic(before, &after).map_err(violation)?;
        self.ghost.observe_step(before, &after, &out);
        specs::commit_bounds(std::slice::from_ref(&after)).map_err(violation)?;
        specs::at_most_once(&self.ghost).map_err(violation)?;
        if self.ghost.double_leader.is_some() {
            specs::election_safety(&self.servers, &self.ghost).map_err(violation)?;
        }
        if self.ghost.commit_conflict.is_some() {
            specs::state_machine_safety(&self.servers, &self.ghost).map_err(violation)?;
        }
        let snapshot_changed = out.persist.iter().any(|c| matches!(c, DurableChange::Snapshot(_)));
        for note in &out.notes {
            match note {
                Note::BecameLeader { .. } => {
                    self.stats.elections += 1;
                    specs::leader_completeness(std::slice::from_ref(&after), &self.ghost).map_err(violation)?;
                }
                Note::SnapshotTaken { .. } => self.stats.snapshots_taken += 1,
                Note::SnapshotInstalled { .. } => {
                    self.stats.snapshots_installed += 1;
                    self.nodes[n].snapshots_installed += 1;
                }
                _ => {}
            }
        }
        let state = after.durable.raft_state_size();
        self.stats.max_raft_state = self.stats.max_raft_state.max(state);
        if snapshot_changed {
            let size = after.durable.snapshot.encoded_size();
            self.stats.max_snapshot = self.stats.max_snapshot.max(size);
        }
        self.servers[n] = after;
        self.record_applied(n, &out.notes);
        if snapshot_changed {
            self.maybe_check_snapshot(n)?;
        }
        for e in Envelope::from_server(id, &mut out) {
            self.send(e);
        }
        self.apply_timers(n, &out.timers);
        if self.stats.server_steps >= self.next_full_check {
            self.full_check()?;
        }
        Ok(())
    }

    fn maybe_check_snapshot(&mut self, n: usize) -> SimResult<()> {
        if self.stats.server_steps < self.next_snapshot_check {
            self.nodes[n].snapshot_unchecked = true;
            return Ok(());
        }
        let s = &self.servers[n];
        specs::snapshot_content::snapshot_matches(s, &s.durable.snapshot, &self.ghost).map_err(violation)?;
        self.stats.snapshot_checks += 1;
        self.nodes[n].snapshot_unchecked = false;
        self.next_snapshot_check = self.stats.server_steps + s.durable.snapshot.last_index.0 / 2;
        Ok(())
    }

    /// Every invariant of `specs::check_all` over all servers (crashed ones as they would
    /// restart), which checks every snapshot too. Runs at the scenario's checkpoints and, while
    /// it runs, every `full_check_every` server steps or, when more, every 2 × (held entries +
    /// committed entries) steps: a full check walks every log and replays the committed prefix,
    /// so spacing them by the state's size keeps their share of the run bounded.
    ///
    /// # Errors
    /// The first violated property.
    pub fn full_check(&mut self) -> SimResult<()> {
        specs::check_all(&self.servers, &self.ghost).map_err(violation)?;
        self.stats.full_checks += 1;
        for meta in &mut self.nodes {
            meta.snapshot_unchecked = false;
        }
        let held: usize = self.servers.iter().map(|s| s.log().len()).sum();
        let size = 2 * (held + self.ghost.committed.len()) as u64;
        self.next_full_check = self.stats.server_steps + size.max(self.cfg.full_check_every);
        Ok(())
    }

    fn apply_timers(&mut self, n: usize, timers: &[TimerCommand]) {
        for command in timers {
            match *command {
                TimerCommand::Set(timer) => {
                    let duration = match timer {
                        Timer::Election => {
                            let (lo, hi) = self.cfg.election_timeout;
                            self.rng.random_range(lo..hi.max(lo + 1))
                        }
                        Timer::Heartbeat => self.cfg.heartbeat,
                    };
                    let meta = &mut self.nodes[n];
                    let slot = match timer {
                        Timer::Election => &mut meta.election,
                        Timer::Heartbeat => &mut meta.heartbeat,
                    };
                    if let Some(at) = slot.set(self.now + duration) {
                        let incarnation = meta.incarnation;
                        self.push(at, Scheduled::ServerTimer { node: n, timer, incarnation });
                    }
                }
                TimerCommand::Cancel(Timer::Election) => self.nodes[n].election.cancel(),
                TimerCommand::Cancel(Timer::Heartbeat) => self.nodes[n].heartbeat.cancel(),
            }
        }
    }
}
