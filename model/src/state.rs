//! A server's state (Raft Figure 2 "State"), split into the durable part that survives a
//! crash (`current_term`, `voted_for`, `log[]`: "updated on stable storage before responding
//! to RPCs") and the volatile rest, which `Server::restore` rebuilds from the durable part.

use crate::bug::Bug;
use crate::kv::KvState;
use crate::log::{encoded_size, Log};
use crate::snapshot::Snapshot;
use crate::types::{ClientId, Entry, LogIndex, NodeId, Seq, Term};
use serde::{Deserialize, Serialize};

/// A server's fixed configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    pub id: NodeId,
    /// The other members of the cluster, sorted, without `id`.
    pub peers: im::Vector<NodeId>,
    /// The most entries one AppendEntries carries (bounds message size; at least 1).
    pub max_entries_per_append: usize,
    /// Snapshot once the durable Raft state ([`Durable::raft_state_size`]) reaches this many
    /// bytes; `None`: never (the log grows without bound).
    pub max_raft_state: Option<u64>,
    /// A deliberately broken rule (only in builds with the `bugs` feature).
    #[cfg(feature = "bugs")]
    pub bug: Option<Bug>,
}

impl Config {
    /// A configuration for server `id` of a cluster whose members are `members` (which may
    /// include `id`; duplicates are ignored).
    #[must_use]
    pub fn new(id: NodeId, members: &[NodeId]) -> Config {
        let mut peers: Vec<NodeId> = members.iter().copied().filter(|&m| m != id).collect();
        peers.sort_unstable();
        peers.dedup();
        Config {
            id,
            peers: peers.into_iter().collect(),
            max_entries_per_append: 64,
            max_raft_state: None,
            #[cfg(feature = "bugs")]
            bug: None,
        }
    }

    /// This configuration with a deliberately broken rule.
    ///
    /// # Errors
    /// When the crate was built without the `bugs` feature.
    #[cfg_attr(not(feature = "bugs"), allow(clippy::unused_self, clippy::needless_pass_by_value))]
    pub fn with_bug(self, bug: Bug) -> Result<Config, String> {
        #[cfg(feature = "bugs")]
        {
            Ok(Config { bug: Some(bug), ..self })
        }
        #[cfg(not(feature = "bugs"))]
        {
            Err(format!("bug {bug} needs a build with the `bugs` feature"))
        }
    }

    /// Whether `bug` is switched on (always false without the `bugs` feature).
    #[inline]
    #[must_use]
    #[cfg_attr(not(feature = "bugs"), allow(clippy::unused_self))]
    pub fn has_bug(&self, bug: Bug) -> bool {
        #[cfg(feature = "bugs")]
        {
            self.bug == Some(bug)
        }
        #[cfg(not(feature = "bugs"))]
        {
            let _ = bug;
            false
        }
    }

    /// Number of servers in the cluster.
    #[must_use]
    pub fn cluster_size(&self) -> usize {
        self.peers.len() + 1
    }

    /// The smallest number of servers that forms a majority (§5.2).
    #[must_use]
    pub fn quorum(&self) -> usize {
        if self.has_bug(Bug::QuorumMinusOne) {
            return self.cluster_size() / 2;
        }
        self.cluster_size() / 2 + 1
    }

    #[must_use]
    pub fn is_peer(&self, node: NodeId) -> bool {
        self.peers.contains(&node)
    }
}

/// Figure 2's "persistent state on all servers", plus the latest snapshot (§7).
///
/// Contract (for the runtime): whenever a step's `Output::persist` is non-empty, those changes
/// must be durable before any message or reply of that step is sent. Replaying the changes
/// onto the previously persisted `Durable` with [`Durable::apply`] gives the new one.
///
/// Invariant: `log` starts where `snapshot` ends (`log.start_index() == snapshot.last_index`,
/// same term).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Durable {
    pub current_term: Term,
    pub voted_for: Option<NodeId>,
    pub log: Log,
    pub snapshot: Snapshot,
}

/// One change to the durable state, in the order the runtime must write them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DurableChange {
    /// `current_term` and `voted_for` now have these values.
    TermAndVote { current_term: Term, voted_for: Option<NodeId> },
    /// Entries at `from` and after were removed.
    Truncate { from: LogIndex },
    /// `entries` were appended, the first at index `first`.
    Append { first: LogIndex, entries: im::Vector<Entry> },
    /// This is now the snapshot, replacing the previous one, and the log starts after it: the
    /// entries up to its `last_index` are gone, those after it stay (see [`Log::cut_prefix`]).
    /// The runtime must keep it until a newer one is durable.
    Snapshot(Snapshot),
}

/// Why a recorded change could not be replayed (a log on disk that does not fit together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError(pub String);

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReplayError {}

impl Durable {
    /// Replays one recorded change (what the runtime does when it reads its write-ahead log).
    ///
    /// # Errors
    /// When the change does not fit this state (an append that leaves a gap, a truncation of
    /// compacted entries): the recorded history is corrupt.
    pub fn apply(&mut self, change: &DurableChange) -> Result<(), ReplayError> {
        match change {
            DurableChange::TermAndVote { current_term, voted_for } => {
                self.current_term = *current_term;
                self.voted_for = *voted_for;
            }
            DurableChange::Truncate { from } => {
                if *from <= self.log.start_index() {
                    return Err(ReplayError(format!("truncation at {from} of compacted entries")));
                }
                self.log.truncate_from(*from);
            }
            DurableChange::Append { first, entries } => {
                if *first != self.log.last_index().next() {
                    return Err(ReplayError(format!(
                        "append at {first} but the log ends at {}",
                        self.log.last_index()
                    )));
                }
                for entry in entries {
                    self.log.push(entry.clone());
                }
            }
            DurableChange::Snapshot(snapshot) => self.install_snapshot(snapshot.clone()),
        }
        Ok(())
    }

    /// Makes `snapshot` the current one and starts the log after it.
    pub(crate) fn install_snapshot(&mut self, snapshot: Snapshot) {
        self.log.cut_prefix(snapshot.last_index, snapshot.last_term);
        self.snapshot = snapshot;
    }

    /// The size that `max_raft_state` bounds: the durable Raft state without the snapshot
    /// (term, vote and the retained log) in the encoding the runtime writes. The one
    /// definition, for the core's snapshot decision, the runtime and the tests alike.
    #[must_use]
    pub fn raft_state_size(&self) -> u64 {
        encoded_size(&(self.current_term, self.voted_for)) + self.log.bytes()
    }
}

/// A client request the leader appended and will answer when that exact entry is applied.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pending {
    /// The term of the entry the leader appended (its own term).
    pub term: Term,
    pub client: ClientId,
    pub seq: Seq,
}

/// Figure 2's "volatile state on leaders".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaderState {
    /// For each peer, index of the next log entry to send.
    pub next_index: im::OrdMap<NodeId, LogIndex>,
    /// For each peer, highest index known to be replicated there (only from what the peer
    /// acknowledged). Invariant: never decreases during a term.
    pub match_index: im::OrdMap<NodeId, LogIndex>,
}

/// A server's role; each carries the data only that role has (§5.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Follower { leader: Option<NodeId> },
    Candidate { votes: im::OrdSet<NodeId> },
    Leader(LeaderState),
}

/// One server: Raft plus the key/value state machine it drives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Server {
    pub config: Config,
    pub durable: Durable,
    /// Invariant: `last_applied <= commit_index <= log.last_index()`; never decreases.
    pub commit_index: LogIndex,
    /// Invariant: `kv` is the result of applying entries `1..=last_applied` in order.
    pub last_applied: LogIndex,
    pub role: Role,
    pub kv: KvState,
    /// Requests this server appended as leader, by log index, to be answered when that exact
    /// entry is applied. Invariant: empty unless leader (stepping down fails them all).
    pub pending: im::OrdMap<LogIndex, Pending>,
}

impl Server {
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    #[must_use]
    pub fn current_term(&self) -> Term {
        self.durable.current_term
    }

    #[must_use]
    pub fn log(&self) -> &Log {
        &self.durable.log
    }

    #[must_use]
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leader this server believes in: itself when leader, the sender of the current
    /// term's AppendEntries when follower, unknown otherwise.
    #[must_use]
    pub fn leader_hint(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(_) => Some(self.id()),
            Role::Follower { leader } => *leader,
            Role::Candidate { .. } => None,
        }
    }

    /// A short role name for displays and notes.
    #[must_use]
    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Follower { .. } => "follower",
            Role::Candidate { .. } => "candidate",
            Role::Leader(_) => "leader",
        }
    }
}
