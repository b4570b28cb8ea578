//! The explored system: servers and clerks stepped by the core (`model::step`,
//! `model::clerk_step`) and nothing else, a network the checker controls, crashes that keep
//! only the durable part, and ghost records (`specs::Ghost`, `specs::History`) updated at the
//! moment things happen.
//!
//! Each action is one step of one actor, and a step's effects land atomically: its durable
//! changes are already in the server state, then its messages enter the network. That is sound
//! because the runtime makes `persist` durable before sending, and because a crash after the
//! fsync but before the sends looks, to everyone else, like lost messages (explored when the
//! network is lossy).

use crate::setup::{Delivery, Setup};
use model::{
    clerk_step, step, Clerk, ClerkInput, ClerkOutput, ClientId, Config, Durable, Endpoint,
    Envelope, Input, LogIndex, NodeId, Note, Output, PeerMsg, Server, TimerCommand, Timer, Wire,
};
use specs::{Ghost, History};
use std::fmt::{self, Write as _};

/// One server and the timers the environment holds for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// While crashed: the state `restore` would give (volatile parts reset), so that crashed
    /// states differing only in lost volatile data coincide.
    pub server: Server,
    pub up: bool,
    pub election_armed: bool,
    pub heartbeat_armed: bool,
    /// The server has crashed and restarted at least once.
    pub restarted: bool,
    /// The snapshot index the server last restarted from, when it had a snapshot.
    pub restored_from: Option<LogIndex>,
    /// The server has installed a snapshot sent by a leader.
    pub installed_snapshot: bool,
}

/// One clerk, its position in its script, and its retry timer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClerkSlot {
    pub clerk: Clerk,
    /// How many scripted operations were invoked.
    pub invoked: u32,
    /// The history id of the operation in flight.
    pub op_id: Option<usize>,
    pub retry_armed: bool,
}

/// Messages in flight. Sorted (a multiset, or a set when messages may be duplicated) when
/// delivery may reorder, so that equal networks hash equally; grouped by link in send order
/// otherwise (FIFO per link: only each link's first message is deliverable). A plain vector: it holds a handful of
/// messages, and copying it is cheaper than `im`'s 64-slot chunks.
pub type Network = Vec<Envelope>;

/// A state of the whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SysState {
    pub nodes: Vec<Node>,
    pub clerks: Vec<ClerkSlot>,
    pub network: Network,
    pub crashes: u32,
    /// Election timeouts so far (counted only when `max_elections` bounds them).
    pub elections: u32,
    pub ghost: Ghost,
    pub history: History,
    /// The history's verdict, recomputed whenever an operation completes.
    pub linearizable: bool,
    /// Every step so far kept commit index, applied index and term from going back.
    pub monotonic: bool,
}

/// One transition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Deliver(Envelope),
    Drop(Envelope),
    Timeout(NodeId, Timer),
    ClerkTimeout(ClientId),
    Invoke(ClientId),
    Crash(NodeId),
    Restart(NodeId),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Deliver(e) => write!(f, "deliver {e}"),
            Action::Drop(e) => write!(f, "lose {e}"),
            Action::Timeout(n, t) => write!(f, "{} {t} timeout", n.0),
            Action::ClerkTimeout(c) => write!(f, "c{} retry timeout", c.0),
            Action::Invoke(c) => write!(f, "c{} invokes its next operation", c.0),
            Action::Crash(n) => write!(f, "{} crashes", n.0),
            Action::Restart(n) => write!(f, "{} restarts", n.0),
        }
    }
}

/// The system's rules, given a setup. Every protocol decision is delegated to `model`.
#[derive(Clone, Debug)]
pub struct System {
    pub setup: Setup,
}

fn node_index(n: NodeId) -> usize {
    n.0 as usize - 1
}

fn clerk_index(c: ClientId) -> usize {
    usize::try_from(c.0).expect("small clerk ids") - 1
}

impl System {
    pub fn new(setup: Setup) -> System {
        System { setup }
    }

    /// The core's configuration for server `id` under this setup.
    pub fn config(&self, id: NodeId) -> Config {
        let mut config = Config { max_raft_state: self.setup.max_raft_state, ..Config::new(id, &self.setup.server_ids()) };
        if let Some(n) = self.setup.max_entries_per_append {
            config.max_entries_per_append = n;
        }
        match self.setup.bug {
            Some(bug) => config.with_bug(bug).expect("bug variants compiled in (validated by the CLI)"),
            None => config,
        }
    }

    pub fn initial_state(&self) -> SysState {
        let mut ghost = Ghost::default();
        let nodes = self
            .setup
            .server_ids()
            .into_iter()
            .map(|id| {
                let (server, out) = Server::restore(self.config(id), Durable::default());
                ghost.observe_server(&server);
                let mut node = Node {
                    server,
                    up: true,
                    election_armed: false,
                    heartbeat_armed: false,
                    restarted: false,
                    restored_from: None,
                    installed_snapshot: false,
                };
                arm(&mut node, &out);
                node
            })
            .collect();
        let clerks = self
            .setup
            .clerk_ids()
            .into_iter()
            .map(|c| {
                let clerk = Clerk::new(c, &self.setup.clerk_servers(c));
                ClerkSlot { clerk, invoked: 0, op_id: None, retry_armed: false }
            })
            .collect();
        SysState {
            nodes,
            clerks,
            network: Network::new(),
            crashes: 0,
            elections: 0,
            ghost,
            history: History::default(),
            linearizable: true,
            monotonic: true,
        }
    }

    /// Every enabled action, in a deterministic order (stateright replays paths by index).
    pub fn actions(&self, s: &SysState, actions: &mut Vec<Action>) {
        self.message_actions(s, actions);
        for node in &s.nodes {
            let id = node.server.id();
            if !node.up {
                actions.push(Action::Restart(id));
                continue;
            }
            let elections_left = self.setup.max_elections.is_none_or(|m| s.elections < m);
            if node.election_armed && elections_left && node.server.current_term().0 < self.setup.max_term {
                actions.push(Action::Timeout(id, Timer::Election));
            }
            if self.setup.heartbeats && node.heartbeat_armed && !appends_in_flight(s, id) {
                actions.push(Action::Timeout(id, Timer::Heartbeat));
            }
            if s.crashes < self.setup.max_crashes {
                actions.push(Action::Crash(id));
            }
        }
        for slot in &s.clerks {
            let c = slot.clerk.id;
            if slot.clerk.pending.is_none() && slot.invoked < self.setup.ops_per_clerk {
                actions.push(Action::Invoke(c));
            }
            if self.setup.clerk_timeouts && slot.retry_armed && !clerk_traffic_in_flight(s, c) {
                actions.push(Action::ClerkTimeout(c));
            }
        }
    }

    fn message_actions(&self, s: &SysState, actions: &mut Vec<Action>) {
        for (k, e) in s.network.iter().enumerate() {
            if let Endpoint::Server(n) = e.to {
                if !s.nodes[node_index(n)].up {
                    continue; // waits in the network until the server is back (or is lost)
                }
            }
            let earlier = &s.network[..k];
            let blocked = match self.setup.delivery {
                // Only the first message of each link.
                Delivery::Fifo => earlier.iter().any(|x| x.from == e.from && x.to == e.to),
                // Identical copies: delivering either gives the same state.
                Delivery::Reorder | Delivery::Duplicate => earlier.last() == Some(e),
            };
            if blocked {
                continue;
            }
            if self.setup.lossy {
                actions.push(Action::Drop(e.clone()));
            }
            actions.push(Action::Deliver(e.clone()));
        }
    }

    /// The state after `action`, or `None` if it does nothing.
    pub fn next_state(&self, s: &SysState, action: Action) -> Option<SysState> {
        self.apply(s, action, &mut None)
    }

    /// `next_state`, and a description of what each actor did (inputs and outputs, in the
    /// core's `Display` forms) appended to `trace` when it is `Some`.
    pub fn apply(&self, s: &SysState, action: Action, trace: &mut Option<String>) -> Option<SysState> {
        let mut s = s.clone();
        match action {
            Action::Deliver(e) => {
                if self.setup.delivery != Delivery::Duplicate {
                    take(&mut s.network, &e)?;
                }
                self.deliver(&mut s, e, trace);
            }
            Action::Drop(e) => take(&mut s.network, &e)?,
            Action::Timeout(n, timer) => {
                let node = &mut s.nodes[node_index(n)];
                match timer {
                    Timer::Election => {
                        node.election_armed = false;
                        if self.setup.max_elections.is_some() {
                            s.elections += 1;
                        }
                    }
                    Timer::Heartbeat => node.heartbeat_armed = false,
                }
                self.step_server(&mut s, n, Input::Timeout(timer), trace);
            }
            Action::ClerkTimeout(c) => {
                s.clerks[clerk_index(c)].retry_armed = false;
                self.step_clerk(&mut s, c, ClerkInput::Timeout, trace);
            }
            Action::Invoke(c) => {
                let slot = &mut s.clerks[clerk_index(c)];
                let op = self.setup.op(c, slot.invoked);
                slot.invoked += 1;
                slot.op_id = Some(s.history.invoke(c, op.clone()));
                self.step_clerk(&mut s, c, ClerkInput::Invoke(op), trace);
            }
            Action::Crash(n) => self.crash(&mut s, n),
            Action::Restart(n) => self.restart(&mut s, n, trace),
        }
        drop_dead_messages(&mut s);
        Some(s)
    }

    fn deliver(&self, s: &mut SysState, e: Envelope, trace: &mut Option<String>) {
        match (e.from, e.to, e.wire) {
            (Endpoint::Server(from), Endpoint::Server(to), Wire::Peer(msg)) => {
                self.step_server(s, to, Input::Receive { from, msg }, trace);
            }
            (_, Endpoint::Server(to), Wire::Request(request)) => {
                self.step_server(s, to, Input::Client(request), trace);
            }
            (Endpoint::Server(from), Endpoint::Clerk(c), Wire::Reply(reply)) => {
                self.step_clerk(s, c, ClerkInput::Reply { from, reply }, trace);
            }
            (from, to, wire) => unreachable!("the checker never routes {wire} from {from} to {to}"),
        }
    }

    fn step_server(&self, s: &mut SysState, n: NodeId, input: Input, trace: &mut Option<String>) {
        let node = &mut s.nodes[node_index(n)];
        if let Some(t) = trace {
            let _ = writeln!(t, "server {} <- {input}", n.0);
        }
        let (after, out) = step(&node.server, input);
        if let Some(t) = trace {
            let _ = write!(t, "{out}");
            let _ = writeln!(t, "  now: {after}");
        }
        if specs::applied_monotonic(&node.server, &after).is_err() {
            s.monotonic = false;
        }
        s.ghost.observe_step(&node.server, &after, &out);
        if out.notes.iter().any(|n| matches!(n, Note::SnapshotInstalled { .. })) {
            node.installed_snapshot = true;
        }
        node.server = after;
        arm(node, &out);
        let Output { send, reply, .. } = out;
        for (to, msg) in send {
            self.send(s, Endpoint::Server(n), Endpoint::Server(to), Wire::Peer(msg));
        }
        for reply in reply {
            self.send(s, Endpoint::Server(n), Endpoint::Clerk(reply.client), Wire::Reply(reply));
        }
    }

    fn step_clerk(&self, s: &mut SysState, c: ClientId, input: ClerkInput, trace: &mut Option<String>) {
        let slot = &mut s.clerks[clerk_index(c)];
        if let Some(t) = trace {
            let _ = writeln!(t, "clerk c{} <- {input}", c.0);
        }
        let (clerk, out) = clerk_step(&slot.clerk, input);
        if let Some(t) = trace {
            let _ = writeln!(t, "  {out}");
        }
        slot.clerk = clerk;
        let ClerkOutput { send, done, retry_timer, .. } = out;
        if let Some(armed) = retry_timer {
            slot.retry_armed = armed;
        }
        if let Some(output) = done {
            let id = slot.op_id.take().expect("a completed operation was invoked");
            s.history.complete(id, output);
            s.linearizable = !matches!(
                specs::linearizability::check(&s.history, 1_000_000),
                specs::linearizability::Verdict::NotLinearizable { .. }
            );
        }
        if let Some((to, request)) = send {
            self.send(s, Endpoint::Clerk(c), Endpoint::Server(to), Wire::Request(request));
        }
    }

    fn send(&self, s: &mut SysState, from: Endpoint, to: Endpoint, wire: Wire) {
        let e = Envelope { from, to, wire };
        match self.setup.delivery {
            Delivery::Fifo => {
                // Grouped by link, each link in send order: only per-link order matters, and
                // grouping keeps equal networks equal.
                let k = s.network.partition_point(|x| (x.from, x.to) <= (e.from, e.to));
                s.network.insert(k, e);
            }
            Delivery::Reorder => {
                let k = s.network.partition_point(|x| *x <= e);
                s.network.insert(k, e);
            }
            Delivery::Duplicate => {
                if let Err(k) = s.network.binary_search(&e) {
                    s.network.insert(k, e);
                }
            }
        }
    }

    fn crash(&self, s: &mut SysState, n: NodeId) {
        let node = &mut s.nodes[node_index(n)];
        let (server, _) = Server::restore(self.config(n), node.server.durable.clone());
        *node = Node { server, up: false, election_armed: false, heartbeat_armed: false, ..node.clone() };
        s.crashes += 1;
    }

    fn restart(&self, s: &mut SysState, n: NodeId, trace: &mut Option<String>) {
        let node = &mut s.nodes[node_index(n)];
        let (server, out) = Server::restore(self.config(n), node.server.durable.clone());
        if let Some(t) = trace {
            let _ = write!(t, "server {} restored from its durable state\n{out}  now: {server}\n", n.0);
        }
        s.ghost.observe_restart(&server);
        let snapshot = server.durable.snapshot.last_index;
        let restored_from = (snapshot > LogIndex(0)).then_some(snapshot);
        *node = Node {
            server,
            up: true,
            election_armed: false,
            heartbeat_armed: false,
            restarted: true,
            restored_from,
            installed_snapshot: node.installed_snapshot,
        };
        arm(node, &out);
    }

    /// States outside the bounds are not explored.
    pub fn within_boundary(&self, s: &SysState) -> bool {
        s.nodes.iter().all(|n| {
            n.server.current_term().0 <= self.setup.max_term && n.server.log().last_index().0 <= self.setup.max_log
        })
    }
}

/// Applies a step's timer commands to the node's armed timers.
fn arm(node: &mut Node, out: &Output) {
    for command in &out.timers {
        match command {
            TimerCommand::Set(Timer::Election) => node.election_armed = true,
            TimerCommand::Cancel(Timer::Election) => node.election_armed = false,
            TimerCommand::Set(Timer::Heartbeat) => node.heartbeat_armed = true,
            TimerCommand::Cancel(Timer::Heartbeat) => node.heartbeat_armed = false,
        }
    }
}

/// Removes every message its receiver would ignore whenever it arrived (the core says which:
/// `Server::ignores_forever`, `Clerk::ignores_forever`). Dropping such a message is the same as
/// delivering it as a no-op, so no behaviour is lost, and states that differ only in dead
/// messages coincide.
fn drop_dead_messages(s: &mut SysState) {
    let (nodes, clerks) = (&s.nodes, &s.clerks);
    s.network.retain(|e| match (e.to, &e.wire) {
        (Endpoint::Server(n), Wire::Peer(msg)) => !nodes[node_index(n)].server.ignores_forever(msg),
        (Endpoint::Clerk(c), Wire::Reply(reply)) => !clerks[clerk_index(c)].clerk.ignores_forever(reply),
        _ => true,
    });
}

/// Removes one copy of `e` from the network; `None` if it is not there.
fn take(network: &mut Network, e: &Envelope) -> Option<()> {
    let k = network.iter().position(|x| x == e)?;
    network.remove(k);
    Some(())
}

/// The leader's heartbeat fires only once its previous round is over: none of its
/// AppendEntries, and no reply to one, is in flight. A heartbeat during a round adds nothing
/// the round in flight cannot do (late or lost rounds are still explored), and firing at will
/// would make the network grow without bound.
fn appends_in_flight(s: &SysState, n: NodeId) -> bool {
    let me = Endpoint::Server(n);
    s.network.iter().any(|e| match &e.wire {
        Wire::Peer(PeerMsg::AppendEntries { .. }) => e.from == me,
        Wire::Peer(PeerMsg::AppendReply { .. }) => e.to == me,
        _ => false,
    })
}

/// A clerk's retry timer fires only when neither its request nor a reply is in flight: the
/// request reached a server that has not answered (yet), or everything was lost.
fn clerk_traffic_in_flight(s: &SysState, c: ClientId) -> bool {
    let me = Endpoint::Clerk(c);
    s.network.iter().any(|e| e.from == me || e.to == me)
}
