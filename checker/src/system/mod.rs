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
    clerk_step, step, Clerk, ClerkInput, ClientId, Config, Durable, Endpoint, Envelope, Input, LogIndex, NodeId, Note,
    Op, OpOutput, Output, PeerMsg, Server, Timer, TimerCommand, Wire,
};
use specs::{Ghost, History, Summary};
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

mod inert;

/// One server and the timers the environment holds for it.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// A node's identity for the visited set: everything but the server's `Config`, which is the
/// same in every state of a run (a node's position in `SysState::nodes` says which server it
/// is), so hashing it would cost time and tell no states apart.
impl Hash for Node {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let Server { config: _, durable, commit_index, last_applied, role, kv, pending } = &self.server;
        (durable, commit_index, last_applied, role, kv, pending).hash(h);
        let Node { server: _, up, election_armed, heartbeat_armed, restarted, restored_from, installed_snapshot } =
            self;
        (up, election_armed, heartbeat_armed, restarted, restored_from, installed_snapshot).hash(h);
    }
}

/// One clerk, its position in its script, and its retry timer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClerkSlot {
    pub clerk: Clerk,
    /// How many scripted operations were invoked.
    pub invoked: u32,
    pub retry_armed: bool,
}

/// What the checker keeps of the clients' history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Clients {
    /// Only what a linearization of the history can still depend on (the default).
    Summary(Summary),
    /// The whole history and its verdict, recomputed whenever an operation completes (the
    /// unreduced search, and the replay that prints a counterexample's history).
    History { history: History, linearizable: bool },
}

impl Clients {
    fn new(summary: bool) -> Clients {
        if summary {
            Clients::Summary(Summary::new())
        } else {
            Clients::History { history: History::new(), linearizable: true }
        }
    }

    pub fn is_linearizable(&self) -> bool {
        match self {
            Clients::Summary(s) => s.is_linearizable(),
            Clients::History { linearizable, .. } => *linearizable,
        }
    }

    fn invoke(&mut self, client: ClientId, op: Op) {
        match self {
            Clients::Summary(s) => s.invoke(client, op),
            Clients::History { history, .. } => {
                history.invoke(client, op);
            }
        }
    }

    fn complete(&mut self, client: ClientId, output: OpOutput) {
        match self {
            Clients::Summary(s) => s.complete(client, output),
            Clients::History { history, linearizable } => {
                let id = history.in_flight(client).expect("a completed operation was invoked");
                history.complete(id, output);
                *linearizable = !matches!(
                    specs::linearizability::check(history, 1_000_000),
                    specs::linearizability::Verdict::NotLinearizable { .. }
                );
            }
        }
    }
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
    pub clients: Clients,
    /// Every step so far kept commit index, applied index and term from going back.
    pub monotonic: bool,
    /// Some Get returned a value that contains a scripted Append's argument.
    pub get_saw_append: bool,
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
        let mut config =
            Config { max_raft_state: self.setup.max_raft_state, ..Config::new(id, &self.setup.server_ids()) };
        if let Some(n) = self.setup.max_entries_per_append {
            config.max_entries_per_append = n;
        }
        match self.setup.bug {
            Some(bug) => config.with_bug(bug).expect("bug variants compiled in (validated by the CLI)"),
            None => config,
        }
    }

    /// Loss is folded into the timers and FIFO deliveries (instead of a `lose` action per
    /// message).
    fn folds_loss(&self) -> bool {
        self.setup.lossy && self.setup.reductions.fold_loss
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
                ClerkSlot { clerk, invoked: 0, retry_armed: false }
            })
            .collect();
        SysState {
            nodes,
            clerks,
            network: Network::new(),
            crashes: 0,
            elections: 0,
            ghost,
            clients: Clients::new(self.setup.reductions.summary),
            monotonic: true,
            get_saw_append: false,
        }
    }

    /// Every enabled action, in a deterministic order (stateright replays paths by index).
    pub fn actions(&self, s: &SysState, actions: &mut Vec<Action>) {
        self.message_actions(s, actions);
        let fold = self.folds_loss();
        for node in &s.nodes {
            let id = node.server.id();
            if !node.up {
                actions.push(Action::Restart(id));
                continue;
            }
            let elections_left = self.setup.max_elections.is_none_or(|m| s.elections < m);
            let stands = elections_left && self.setup.may_stand(id);
            if node.election_armed && stands && node.server.current_term().0 < self.setup.max_term {
                actions.push(Action::Timeout(id, Timer::Election));
            }
            if self.setup.heartbeats && node.heartbeat_armed && (fold || !s.network.iter().any(|e| in_round(e, id))) {
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
            let traffic = || s.network.iter().any(|e| clerk_traffic(e, c));
            if self.setup.clerk_timeouts && slot.retry_armed && (fold || !traffic()) {
                actions.push(Action::ClerkTimeout(c));
            }
        }
    }

    fn message_actions(&self, s: &SysState, actions: &mut Vec<Action>) {
        let fold = self.folds_loss();
        for (k, e) in s.network.iter().enumerate() {
            if let Endpoint::Server(n) = e.to {
                if !s.nodes[node_index(n)].up {
                    continue; // waits in the network until the server is back (or is lost)
                }
            }
            let earlier = &s.network[..k];
            let blocked = match self.setup.delivery {
                // Only the first copy of a message on its link; unless loss is folded, only
                // the first message of each link.
                Delivery::Fifo if fold => earlier.iter().any(|x| x == e),
                Delivery::Fifo => earlier.iter().any(|x| x.from == e.from && x.to == e.to),
                // Identical copies: delivering either gives the same state.
                Delivery::Reorder | Delivery::Duplicate => earlier.last() == Some(e),
            };
            if blocked {
                continue;
            }
            if self.setup.lossy && !fold {
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
        let fold = self.folds_loss();
        match action {
            Action::Deliver(e) => {
                if self.setup.delivery == Delivery::Fifo && fold {
                    let k = s.network.iter().position(|x| *x == e)?;
                    lose(&mut s.network, trace, |x, j| j < k && x.from == e.from && x.to == e.to);
                }
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
                    Timer::Heartbeat => {
                        node.heartbeat_armed = false;
                        if fold {
                            lose(&mut s.network, trace, |x, _| in_round(x, n));
                        }
                    }
                }
                self.step_server(&mut s, n, Input::Timeout(timer), trace);
            }
            Action::ClerkTimeout(c) => {
                s.clerks[clerk_index(c)].retry_armed = false;
                if fold {
                    lose(&mut s.network, trace, |x, _| clerk_traffic(x, c));
                }
                self.step_clerk(&mut s, c, ClerkInput::Timeout, trace);
            }
            Action::Invoke(c) => {
                let slot = &mut s.clerks[clerk_index(c)];
                let op = self.setup.op(c, slot.invoked);
                slot.invoked += 1;
                s.clients.invoke(c, op.clone());
                self.step_clerk(&mut s, c, ClerkInput::Invoke(op), trace);
            }
            Action::Crash(n) => self.crash(&mut s, n),
            Action::Restart(n) => self.restart(&mut s, n, trace),
        }
        if self.setup.reductions.drop_inert {
            inert::remove(&mut s, trace);
        }
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
        let (after, mut out) = step(&node.server, input);
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
        for e in Envelope::from_server(n, &mut out) {
            self.send(s, e);
        }
    }

    fn step_clerk(&self, s: &mut SysState, c: ClientId, input: ClerkInput, trace: &mut Option<String>) {
        let slot = &mut s.clerks[clerk_index(c)];
        if let Some(t) = trace {
            let _ = writeln!(t, "clerk c{} <- {input}", c.0);
        }
        let (clerk, mut out) = clerk_step(&slot.clerk, input);
        if let Some(t) = trace {
            let _ = writeln!(t, "  {out}");
        }
        slot.clerk = clerk;
        if let Some(armed) = out.retry_timer {
            slot.retry_armed = armed;
        }
        if let Some(output) = out.done.take() {
            if let OpOutput::Value(v) = &output {
                s.get_saw_append |= self.appended_values().iter().any(|a| v.contains(a.as_str()));
            }
            s.clients.complete(c, output);
        }
        if let Some(e) = Envelope::from_clerk(c, &mut out) {
            self.send(s, e);
        }
    }

    /// The arguments of every scripted Append (each a letter no other operation writes).
    fn appended_values(&self) -> Vec<String> {
        let setup = &self.setup;
        let ops = setup.clerk_ids().into_iter().flat_map(|c| (0..setup.ops_per_clerk).map(move |j| setup.op(c, j)));
        ops.filter_map(|op| match op {
            Op::Append { value, .. } => Some(value),
            _ => None,
        })
        .collect()
    }

    fn send(&self, s: &mut SysState, e: Envelope) {
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

    /// The clients' whole history along `trace` (replayed with the raw history kept, which
    /// changes nothing else), for reports.
    pub fn history_of(&self, trace: &[Action]) -> Option<History> {
        let mut setup = self.setup.clone();
        setup.reductions.summary = false;
        let full = System::new(setup);
        let mut s = full.initial_state();
        for action in trace {
            s = full.next_state(&s, action.clone())?;
        }
        match s.clients {
            Clients::History { history, .. } => Some(history),
            Clients::Summary(_) => None,
        }
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

/// Removes one copy of `e` from the network; `None` if it is not there.
fn take(network: &mut Network, e: &Envelope) -> Option<()> {
    let k = network.iter().position(|x| x == e)?;
    network.remove(k);
    Some(())
}

/// Removes (loses) every message `lost(message, position)` picks, and says so in `trace`.
fn lose(network: &mut Network, trace: &mut Option<String>, lost: impl Fn(&Envelope, usize) -> bool) {
    let mut k = 0;
    network.retain(|e| {
        let gone = lost(e, k);
        k += 1;
        if gone {
            if let Some(t) = trace {
                let _ = writeln!(t, "lost: {e}");
            }
        }
        !gone
    });
}

/// A message of `n`'s heartbeat round: one of its AppendEntries, or a reply to one.
///
/// The leader's heartbeat fires only once its previous round is over: none of these is in
/// flight (with folded loss: the ones still in flight are lost as it fires). A heartbeat during
/// a round adds nothing the round in flight cannot do (late or lost rounds are still explored),
/// and firing at will would make the network grow without bound.
fn in_round(e: &Envelope, n: NodeId) -> bool {
    let me = Endpoint::Server(n);
    match &e.wire {
        Wire::Peer(PeerMsg::AppendEntries { .. }) => e.from == me,
        Wire::Peer(PeerMsg::AppendReply { .. }) => e.to == me,
        _ => false,
    }
}

/// A request of clerk `c` or a reply to it. A clerk's retry timer fires only when none is in
/// flight (with folded loss: the ones in flight are lost as it fires): the request reached a
/// server that has not answered (yet), or everything was lost.
fn clerk_traffic(e: &Envelope, c: ClientId) -> bool {
    let me = Endpoint::Clerk(c);
    e.from == me || e.to == me
}
