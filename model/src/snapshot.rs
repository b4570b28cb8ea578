//! Log compaction (Raft §7): a snapshot is the state machine at an applied index (the
//! key/value map *and* the client-session table, so at-most-once survives compaction), plus
//! the index and term of the last entry it covers, which the AppendEntries consistency check
//! needs for the entry right after it.

use crate::kv::KvState;
use crate::log::encoded_size;
use crate::types::{LogIndex, Term};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The state machine after applying entries `1..=last_index`.
///
/// `Snapshot::default()` (index 0, empty state) is "no snapshot yet".
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// Figure 13 "lastIncludedIndex": the last log index the snapshot covers.
    pub last_index: LogIndex,
    /// Figure 13 "lastIncludedTerm": the term of the entry at `last_index`.
    pub last_term: Term,
    /// The key/value map and the duplicate table after applying `1..=last_index`.
    pub state: KvState,
}

impl Snapshot {
    /// Bytes of the snapshot in the encoding the runtime writes (what the course bounds).
    #[must_use]
    pub fn encoded_size(&self) -> u64 {
        encoded_size(self)
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snapshot {}/{} {}", self.last_index, self.last_term, self.state)
    }
}
