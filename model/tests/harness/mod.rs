//! A hand-driven cluster for transcript tests: servers and clerks stepped by the core, with a
//! network the test controls message by message (deliver, drop, duplicate), crashes that keep
//! only the durable part, and an invariant check (from `specs`) after every step.

use model::{clerk_step, step, Clerk, ClerkInput, ClientId, Config, Durable, Input, NodeId, Op, Server, Timer};
use specs::Ghost;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use model::Endpoint as End;
pub use model::{Envelope, Wire};

/// The cluster under test.
pub struct Cluster {
    pub members: Vec<NodeId>,
    /// Every server's `Config::max_raft_state` (the same for all, and kept across restarts).
    pub max_raft_state: Option<u64>,
    /// Live servers; a crashed server is absent here and present in `crashed`.
    pub servers: BTreeMap<NodeId, Server>,
    pub crashed: BTreeMap<NodeId, Durable>,
    pub clerks: BTreeMap<ClientId, Clerk>,
    /// In-flight messages, oldest first.
    pub network: Vec<Envelope>,
    /// Servers cut off from everybody: messages from or to them are dropped on delivery.
    pub isolated: Vec<NodeId>,
    pub ghost: Ghost,
    /// Completed clerk operations, for assertions: (client, op, output).
    pub completed: Vec<(ClientId, Op, model::OpOutput)>,
}

impl Cluster {
    /// A fresh cluster of servers `1..=n` that snapshot at `max_raft_state` bytes (if any).
    pub fn new(n: u32, max_raft_state: Option<u64>) -> (Cluster, String) {
        let members: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut cluster = Cluster {
            members: members.clone(),
            max_raft_state,
            servers: BTreeMap::new(),
            crashed: BTreeMap::new(),
            clerks: BTreeMap::new(),
            network: Vec::new(),
            isolated: Vec::new(),
            ghost: Ghost::default(),
            completed: Vec::new(),
        };
        let mut text = String::new();
        for &id in &members {
            let (server, _) = Server::restore(cluster.config(id), Durable::default());
            cluster.ghost.observe_server(&server);
            cluster.servers.insert(id, server);
        }
        cluster.check(&mut text);
        (cluster, text)
    }

    /// Server `id`'s configuration, the same at first start and at every restart.
    fn config(&self, id: NodeId) -> Config {
        Config { max_raft_state: self.max_raft_state, ..Config::new(id, &self.members) }
    }

    /// Runs every invariant from `specs`; a violation panics with the transcript so far.
    fn check(&self, text: &mut String) {
        let servers: Vec<Server> = self.servers.values().cloned().collect();
        if let Err(v) = specs::check_all(&servers, &self.ghost) {
            panic!("invariant violated: {v}\ntranscript so far:\n{text}");
        }
    }

    /// Steps server `id` with `input`, queues its messages and replies, and describes it.
    pub fn step_server(&mut self, id: NodeId, input: Input, text: &mut String) {
        let Some(before) = self.servers.get(&id).cloned() else {
            let _ = writeln!(text, "{} is crashed: {input} lost", id.0);
            return;
        };
        let _ = writeln!(text, "{} {input}", id.0);
        let (after, mut out) = step(&before, input);
        if let Err(v) = specs::applied_monotonic(&before, &after) {
            panic!("invariant violated: {v}\ntranscript so far:\n{text}");
        }
        self.ghost.observe_step(&before, &after, &out);
        text.push_str(&out.to_string());
        self.network.extend(Envelope::from_server(id, &mut out));
        self.servers.insert(id, after);
        self.check(text);
    }

    /// Steps clerk `id` with `input` and queues what it sends.
    pub fn step_clerk(&mut self, id: ClientId, input: ClerkInput, text: &mut String) {
        let clerk = self.clerks.entry(id).or_insert_with(|| Clerk::new(id, &self.members));
        let _ = writeln!(text, "c{} {input}", id.0);
        let pending = clerk.pending.clone();
        let (next, mut out) = clerk_step(clerk, input);
        let _ = writeln!(text, "  {out}");
        if let (Some(op), Some(output)) = (pending, out.done.clone()) {
            self.completed.push((id, op, output));
        }
        self.network.extend(Envelope::from_clerk(id, &mut out));
        *clerk = next;
    }

    fn position(&self, from: End, to: End) -> Option<usize> {
        self.network.iter().position(|e| e.from == from && e.to == to)
    }

    /// Delivers the oldest (with `newest`, the newest) message from `from` to `to`; with
    /// `keep`, a copy stays in flight (a duplicated delivery).
    pub fn deliver(&mut self, from: End, to: End, keep: bool, newest: bool, text: &mut String) {
        let found = if newest {
            self.network.iter().rposition(|e| e.from == from && e.to == to)
        } else {
            self.position(from, to)
        };
        let Some(k) = found else {
            let _ = writeln!(text, "no message {from}->{to}");
            return;
        };
        let envelope = if keep { self.network[k].clone() } else { self.network.remove(k) };
        self.deliver_envelope(envelope, text);
    }

    fn cut_off(&self, end: End) -> bool {
        matches!(end, End::Server(n) if self.isolated.contains(&n))
    }

    fn deliver_envelope(&mut self, e: Envelope, text: &mut String) {
        if self.cut_off(e.from) || self.cut_off(e.to) {
            let _ = writeln!(text, "lost {}->{} {}", e.from, e.to, e.wire);
            return;
        }
        match (e.to, e.wire) {
            (End::Server(to), Wire::Peer(msg)) => {
                let End::Server(from) = e.from else { unreachable!("peer messages come from servers") };
                self.step_server(to, Input::Receive { from, msg }, text);
            }
            (End::Server(to), Wire::Request(req)) => self.step_server(to, Input::Client(req), text),
            (End::Clerk(c), Wire::Reply(reply)) => {
                let End::Server(from) = e.from else { unreachable!("replies come from servers") };
                self.step_clerk(c, ClerkInput::Reply { from, reply }, text);
            }
            (to, wire) => panic!("misrouted message to {to}: {wire}"),
        }
    }

    /// Drops the oldest message from `from` to `to`.
    pub fn drop_message(&mut self, from: End, to: End, text: &mut String) {
        match self.position(from, to) {
            Some(k) => {
                let e = self.network.remove(k);
                let _ = writeln!(text, "dropped {}->{} {}", e.from, e.to, e.wire);
            }
            None => {
                let _ = writeln!(text, "no message {from}->{to}");
            }
        }
    }

    /// Delivers messages oldest first until none is left (at most `limit` deliveries).
    pub fn stabilize(&mut self, text: &mut String) {
        let mut budget = 10_000;
        while !self.network.is_empty() {
            budget -= 1;
            assert!(budget > 0, "stabilize did not converge");
            let e = self.network.remove(0);
            self.deliver_envelope(e, text);
        }
    }

    pub fn timeout(&mut self, id: NodeId, timer: Timer, text: &mut String) {
        self.step_server(id, Input::Timeout(timer), text);
    }

    /// Crashes a server: only its durable part survives; messages to it are lost on delivery.
    pub fn crash(&mut self, id: NodeId, text: &mut String) {
        if let Some(server) = self.servers.remove(&id) {
            self.crashed.insert(id, server.durable.clone());
            let _ = writeln!(text, "{} crashed", id.0);
        }
    }

    /// Restarts a crashed server from its durable part.
    pub fn restart(&mut self, id: NodeId, text: &mut String) {
        let Some(durable) = self.crashed.remove(&id) else {
            let _ = writeln!(text, "{} is not crashed", id.0);
            return;
        };
        let (server, out) = Server::restore(self.config(id), durable);
        let _ = writeln!(text, "{} restarted", id.0);
        text.push_str(&out.to_string());
        self.ghost.observe_restart(&server);
        self.servers.insert(id, server);
        self.check(text);
    }

    pub fn server(&self, id: NodeId) -> &Server {
        self.servers.get(&id).expect("live server")
    }
}
