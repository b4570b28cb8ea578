//! The clerk: the client side of Raft §8. One operation at a time, tagged with (client, seq);
//! sent to the server believed to lead; on `WrongLeader` or a retry timeout, the *same*
//! (client, seq) goes to the hinted or next server, until some server answers `Ok`. The
//! servers' session table makes the retries execute at most once.
//!
//! When every server in a row has answered `WrongLeader` (no leader right now, e.g. during an
//! election), the clerk stops and waits for its retry timer instead of circling at full speed.

use crate::message::{ClientReply, ClientRequest, ClientResult};
use crate::types::{ClientId, NodeId, Op, OpOutput, Seq};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The clerk's state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Clerk {
    pub id: ClientId,
    /// The cluster's servers in the order the clerk tries them.
    pub servers: im::Vector<NodeId>,
    /// Position in `servers` of the server the clerk talks to. Invariant: `< servers.len()`.
    pub target: usize,
    /// The seq of the current (or last) operation. Invariant: grows by one per operation.
    pub seq: Seq,
    /// The operation in flight, if any.
    pub pending: Option<Op>,
    /// `WrongLeader` answers in a row since the last send prompted by an invocation or a
    /// timeout. Invariant: `< servers.len()`.
    pub redirects: u32,
}

/// Everything that can happen to a clerk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClerkInput {
    /// The application asks for an operation (only when none is in flight).
    Invoke(Op),
    /// A server answered.
    Reply { from: NodeId, reply: ClientReply },
    /// The retry timer fired: the target did not answer in time.
    Timeout,
}

/// What the clerk does in response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ClerkOutput {
    /// A request to send.
    pub send: Option<(NodeId, ClientRequest)>,
    /// The operation completed with this output.
    pub done: Option<OpOutput>,
    /// `Some(true)`: (re)start the retry timer; `Some(false)`: cancel it.
    pub retry_timer: Option<bool>,
    /// The clerk resent a request it had sent before (for checking and logs).
    pub retried: bool,
}

impl Clerk {
    /// A clerk with id `id` for a cluster of `servers` (at least one).
    ///
    /// # Panics
    /// If `servers` is empty.
    #[must_use]
    pub fn new(id: ClientId, servers: &[NodeId]) -> Clerk {
        assert!(!servers.is_empty(), "a clerk needs at least one server");
        Clerk { id, servers: servers.iter().copied().collect(), target: 0, seq: Seq(0), pending: None, redirects: 0 }
    }

    /// The server requests go to now.
    #[must_use]
    pub fn target(&self) -> NodeId {
        self.servers[self.target]
    }

    fn request(&self) -> Option<(NodeId, ClientRequest)> {
        let op = self.pending.clone()?;
        Some((self.target(), ClientRequest { client: self.id, seq: self.seq, op }))
    }

    fn rotate(&mut self) {
        self.target = (self.target + 1) % self.servers.len();
    }
}

/// Advances a clerk by one input. Pure, like the server's `step`.
///
/// # Panics
/// On `Invoke` while an operation is in flight (a caller's mistake, not a network event).
#[must_use]
pub fn clerk_step(clerk: &Clerk, input: ClerkInput) -> (Clerk, ClerkOutput) {
    let mut next = clerk.clone();
    let mut out = ClerkOutput::default();
    match input {
        ClerkInput::Invoke(op) => {
            assert!(next.pending.is_none(), "a clerk runs one operation at a time");
            next.seq = next.seq.next();
            next.pending = Some(op);
            next.redirects = 0;
            out.send = next.request();
            out.retry_timer = Some(true);
        }
        ClerkInput::Reply { from, reply } => next.on_reply(from, reply, &mut out),
        ClerkInput::Timeout => {
            if next.pending.is_some() {
                next.rotate();
                next.redirects = 0;
                out.send = next.request();
                out.retry_timer = Some(true);
                out.retried = true;
            }
        }
    }
    (next, out)
}

impl Clerk {
    fn on_reply(&mut self, from: NodeId, reply: ClientReply, out: &mut ClerkOutput) {
        if self.pending.is_none() || reply.client != self.id || reply.seq != self.seq {
            return; // an answer to an earlier attempt of a completed operation
        }
        match reply.result {
            ClientResult::Ok(output) => {
                if let Some(k) = self.servers.index_of(&from) {
                    self.target = k; // it answered, so it leads
                }
                self.pending = None;
                self.redirects = 0;
                out.done = Some(output);
                out.retry_timer = Some(false);
            }
            ClientResult::WrongLeader { hint } => {
                if from != self.target() {
                    return; // a late answer from a server already given up on
                }
                match hint.and_then(|h| self.servers.index_of(&h)) {
                    Some(k) if k != self.target => self.target = k,
                    _ => self.rotate(),
                }
                self.redirects += 1;
                if self.redirects as usize >= self.servers.len() {
                    self.redirects = 0; // a whole round without a leader: wait for the timer
                    return;
                }
                out.send = self.request();
                out.retry_timer = Some(true);
                out.retried = true;
            }
            ClientResult::Stale => {}
        }
    }
}

impl fmt::Display for Clerk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} {}", self.id, self.target(), self.seq)?;
        match &self.pending {
            Some(op) => write!(f, " pending {op}"),
            None => write!(f, " idle"),
        }
    }
}

impl fmt::Display for ClerkInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClerkInput::Invoke(op) => write!(f, "invoke {op}"),
            ClerkInput::Reply { from, reply } => write!(f, "reply from {from}: {reply}"),
            ClerkInput::Timeout => write!(f, "retry timeout"),
        }
    }
}

impl fmt::Display for ClerkOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some((to, req)) = &self.send {
            parts.push(format!("{}send {to} {req}", if self.retried { "re" } else { "" }));
        }
        if let Some(done) = &self.done {
            parts.push(format!("done {done}"));
        }
        if parts.is_empty() {
            parts.push("nothing".to_string());
        }
        write!(f, "{}", parts.join("; "))
    }
}
