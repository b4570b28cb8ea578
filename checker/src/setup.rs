//! What a check explores: cluster size, clerks and their scripts, faults and bounds.

use model::{Bug, ClientId, NodeId, Op};
use std::fmt;

/// How the network treats messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// Any message in flight may be delivered next (reordering); each is delivered once.
    Reorder,
    /// Any message may be delivered next, any number of times (reordering and duplication).
    Duplicate,
    /// Per link first-in first-out; each message once (no reordering, no duplication).
    Fifo,
}

/// The reductions of the state space the checker applies (all on by default; each is argued
/// in `docs/checker.md`, "Reductions", and checked against the unreduced search in
/// `tests/reductions.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reductions {
    /// The clients' history is kept as `specs::Summary` (what a linearization can still
    /// depend on) instead of the raw history.
    pub summary: bool,
    /// Loss is folded into the actions that can observe it (a timer that fires once its round
    /// is gone, a FIFO delivery past earlier messages) instead of a `lose` action per message.
    pub fold_loss: bool,
    /// A message its receiver's handler provably ignores forever is removed at once.
    pub drop_inert: bool,
}

impl Reductions {
    pub const ALL: Reductions = Reductions { summary: true, fold_loss: true, drop_inert: true };
    pub const NONE: Reductions = Reductions { summary: false, fold_loss: false, drop_inert: false };
}

impl Default for Reductions {
    fn default() -> Reductions {
        Reductions::ALL
    }
}

/// Every knob of one exploration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    pub servers: u32,
    pub clerks: u32,
    pub ops_per_clerk: u32,
    /// Keys the scripts use (1 or 2).
    pub keys: u32,
    pub delivery: Delivery,
    /// Messages may be lost.
    pub lossy: bool,
    /// Total server crashes allowed along a path (each followed by a possible restart).
    pub max_crashes: u32,
    /// States where a server's term exceeds this are not explored.
    pub max_term: u64,
    /// Election timeouts allowed along one path, over all servers (`None`: only `max_term`
    /// bounds them).
    pub max_elections: Option<u32>,
    /// The servers whose election timer may fire (`None`: every server). The others only
    /// vote and follow: a bound that keeps a search to the elections it is about (Figure 8
    /// needs two rival candidates and one voter).
    pub candidates: Option<Vec<NodeId>>,
    /// States where a server's log is longer than this are not explored.
    pub max_log: u64,
    /// Clerks' retry timers may fire (otherwise a clerk retries only on `WrongLeader`).
    pub clerk_timeouts: bool,
    /// Leaders' heartbeat timers may fire (otherwise followers hear from a leader only when a
    /// client request makes it send, which keeps bug hunts small).
    pub heartbeats: bool,
    /// The most entries one AppendEntries carries (`None`: the core's default, 64).
    pub max_entries_per_append: Option<usize>,
    /// Servers snapshot once their durable Raft state reaches this many bytes (`None`: never).
    pub max_raft_state: Option<u64>,
    /// A deliberately broken rule of the core (needs the `bugs` feature).
    pub bug: Option<Bug>,
    /// How the space is reduced (does not change what is explored, only how many states stand
    /// for it).
    pub reductions: Reductions,
}

impl Default for Setup {
    /// The default check: 3 servers, 2 clerks with one operation each, reordering and loss,
    /// one crash.
    fn default() -> Setup {
        Setup {
            servers: 3,
            clerks: 2,
            ops_per_clerk: 1,
            keys: 1,
            delivery: Delivery::Reorder,
            lossy: true,
            max_crashes: 1,
            max_term: 2,
            max_elections: None,
            candidates: None,
            max_log: 3,
            clerk_timeouts: true,
            heartbeats: true,
            max_entries_per_append: None,
            max_raft_state: None,
            bug: None,
            reductions: Reductions::ALL,
        }
    }
}

impl Setup {
    /// A small, quiet base for focused runs: reordering only (no loss, no crashes), no
    /// heartbeats and no clerk timeouts, terms and logs bounded at 1. Callers switch on what
    /// they need.
    pub fn quiet(servers: u32, clerks: u32, ops_per_clerk: u32) -> Setup {
        Setup {
            servers,
            clerks,
            ops_per_clerk,
            keys: 1,
            delivery: Delivery::Reorder,
            lossy: false,
            max_crashes: 0,
            max_term: 1,
            max_elections: None,
            candidates: None,
            max_log: 1,
            clerk_timeouts: false,
            heartbeats: false,
            max_entries_per_append: None,
            max_raft_state: None,
            bug: None,
            reductions: Reductions::ALL,
        }
    }

    /// Whether server `id`'s election timer may fire (`candidates`).
    pub fn may_stand(&self, id: NodeId) -> bool {
        self.candidates.as_ref().is_none_or(|c| c.contains(&id))
    }

    pub fn server_ids(&self) -> Vec<NodeId> {
        (1..=self.servers).map(NodeId).collect()
    }

    /// The order in which clerk `c` tries the servers: starting at server `c` (wrapping), so
    /// that clerks spread over the cluster instead of all knocking at server 1 first.
    pub fn clerk_servers(&self, c: ClientId) -> Vec<NodeId> {
        let mut servers = self.server_ids();
        let n = servers.len().max(1);
        servers.rotate_left(usize::try_from(c.0 - 1).unwrap_or(0) % n);
        servers
    }

    pub fn clerk_ids(&self) -> Vec<ClientId> {
        (1..=u64::from(self.clerks)).map(ClientId).collect()
    }

    /// The scripted operation `j` (0-based) of clerk `c` (1-based). Odd clerks append then
    /// read, alternately; even clerks read then put, alternately. So two clerks with one
    /// operation each already race an Append against a Get. Every written value is unique (a
    /// letter per operation), so a duplicated Append shows up as a doubled letter.
    pub fn op(&self, c: ClientId, j: u32) -> Op {
        let n = u32::try_from(c.0 - 1).unwrap_or(0) * self.ops_per_clerk + j;
        let key = if self.keys > 1 && (u32::try_from(c.0).unwrap_or(0) + j / 2).is_multiple_of(2) { "y" } else { "x" };
        let key = key.to_string();
        let value = char::from(b'a' + u8::try_from(n % 26).unwrap_or(0)).to_string();
        match (c.0 % 2 == 1, j.is_multiple_of(2)) {
            (true, true) => Op::Append { key, value },
            (false, false) => Op::Put { key, value },
            _ => Op::Get { key },
        }
    }

    /// Checks the combination makes sense.
    ///
    /// # Errors
    /// A one-line reason when it does not.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=7).contains(&self.servers) {
            return Err(format!("--servers must be 1 to 7 (got {})", self.servers));
        }
        if self.clerks > 5 || self.ops_per_clerk > 8 {
            return Err("at most 5 clerks and 8 operations per clerk".into());
        }
        if !(1..=2).contains(&self.keys) {
            return Err(format!("--keys must be 1 or 2 (got {})", self.keys));
        }
        if self.max_raft_state == Some(0) {
            return Err("--max-raft-state must be at least 1 byte".into());
        }
        if let Some(c) = &self.candidates {
            if c.is_empty() || c.iter().any(|n| !(1..=self.servers).contains(&n.0)) {
                return Err(format!("--candidates must name servers among 1..={} (got {c:?})", self.servers));
            }
        }
        if self.max_term == 0 {
            return Err("--max-term must be at least 1 (no leader can exist in term 0)".into());
        }
        Ok(())
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} servers, {} clerks x {} operations on {} key(s):",
            self.servers, self.clerks, self.ops_per_clerk, self.keys
        )?;
        for c in self.clerk_ids() {
            let ops: Vec<String> = (0..self.ops_per_clerk).map(|j| self.op(c, j).to_string()).collect();
            writeln!(f, "  clerk c{}: {}", c.0, ops.join("; "))?;
        }
        let delivery = match self.delivery {
            Delivery::Reorder => "reordered",
            Delivery::Duplicate => "reordered and duplicated",
            Delivery::Fifo => "in order per link",
        };
        let lossy = if self.lossy { "may be lost" } else { "never lost" };
        writeln!(
            f,
            "faults: messages {delivery}, {lossy}; up to {} server crash(es) with restart from durable state;",
            self.max_crashes
        )?;
        let clerk = if self.clerk_timeouts { "clerk retry timeouts" } else { "no clerk timeouts" };
        let timers =
            if self.heartbeats { "election and heartbeat timeouts" } else { "election timeouts (no heartbeats)" };
        writeln!(f, "        {timers} at any moment, {clerk}")?;
        write!(f, "bounds: terms <= {}, log length <= {}", self.max_term, self.max_log)?;
        if let Some(e) = self.max_elections {
            write!(f, ", election timeouts <= {e}")?;
        }
        if let Some(c) = &self.candidates {
            let names: Vec<String> = c.iter().map(|n| format!("n{}", n.0)).collect();
            write!(f, ", election timeouts only at {} (the others never stand)", names.join(", "))?;
        }
        if let Some(n) = self.max_entries_per_append {
            write!(f, "\nAppendEntries carry at most {n} entries")?;
        }
        if let Some(bytes) = self.max_raft_state {
            write!(f, "\nsnapshots: when the durable Raft state reaches {bytes} bytes")?;
        }
        if let Some(bug) = self.bug {
            write!(f, "\nBROKEN VARIANT: {bug}")?;
        }
        Ok(())
    }
}
