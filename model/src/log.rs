//! The Raft log (Figure 2 "log[]", §5.3) with a start offset, so that a prefix can be replaced
//! by a snapshot (§7) without any caller doing index arithmetic.
//!
//! Indices are 1-based as in the paper. The log covers `(start_index, last_index]`; the entry
//! at `start_index` itself is known only by its term (`start_term`), which is what the
//! AppendEntries consistency check needs when `prev_log_index == start_index`.

use crate::types::{Entry, LogIndex, Term};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "LogParts", into = "LogParts")]
pub struct Log {
    /// Invariant: entries up to and including `start_index` are committed and compacted away.
    start_index: LogIndex,
    /// Term of the entry at `start_index` (`Term(0)` when `start_index` is 0).
    start_term: Term,
    /// Invariant: `entries[k]` is at index `start_index + 1 + k`, terms never decrease.
    entries: im::Vector<Entry>,
    /// Invariant: the sum of [`encoded_size`] over `entries` (kept up to date so that the
    /// snapshot threshold check does not walk the log on every step).
    bytes: u64,
}

/// A log as it is serialized: `bytes` is derived, so it is recomputed, not trusted.
#[derive(Clone, Serialize, Deserialize)]
struct LogParts {
    start_index: LogIndex,
    start_term: Term,
    entries: im::Vector<Entry>,
}

impl From<LogParts> for Log {
    fn from(parts: LogParts) -> Log {
        let bytes = parts.entries.iter().map(encoded_size).sum();
        Log { start_index: parts.start_index, start_term: parts.start_term, entries: parts.entries, bytes }
    }
}

impl From<Log> for LogParts {
    fn from(log: Log) -> LogParts {
        LogParts { start_index: log.start_index, start_term: log.start_term, entries: log.entries }
    }
}

/// The size of `value` in the encoding the runtime writes to disk and to the network
/// (postcard): the one definition of "bytes" behind `max_raft_state`.
pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> u64 {
    // Serializing into a size counter fails only for types serde cannot encode at all, which
    // the core's plain data types never are.
    postcard::experimental::serialized_size(value).map_or(u64::MAX, |n| n as u64)
}

impl Log {
    #[must_use]
    pub fn new() -> Log {
        Log::default()
    }

    /// Index of the last entry covered by a snapshot (0 when nothing was compacted).
    #[must_use]
    pub fn start_index(&self) -> LogIndex {
        self.start_index
    }

    #[must_use]
    pub fn start_term(&self) -> Term {
        self.start_term
    }

    /// The first index still held as an entry.
    #[must_use]
    pub fn first_index(&self) -> LogIndex {
        self.start_index.next()
    }

    #[must_use]
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.start_index.0 + self.entries.len() as u64)
    }

    #[must_use]
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.start_term, |e| e.term)
    }

    /// Number of entries held (not counting the compacted prefix).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded size of the held entries ([`encoded_size`] of each, summed).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn offset(&self, index: LogIndex) -> Option<usize> {
        if index <= self.start_index || index > self.last_index() {
            return None;
        }
        usize::try_from(index.0 - self.start_index.0 - 1).ok()
    }

    /// The entry at `index`, if it is held (not compacted, not past the end).
    #[must_use]
    pub fn get(&self, index: LogIndex) -> Option<&Entry> {
        self.offset(index).and_then(|k| self.entries.get(k))
    }

    /// The term of the entry at `index`: known for `start_index` (from the snapshot), for 0
    /// (`Term(0)`, the empty prefix), and for every held entry; `None` otherwise.
    #[must_use]
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.start_index {
            return Some(self.start_term);
        }
        self.get(index).map(|e| e.term)
    }

    /// The held entries from `from` to the end (empty if `from` is past the end).
    ///
    /// # Panics
    /// If `from` is inside the compacted prefix: a caller must check `first_index` first.
    #[must_use]
    pub fn entries_from(&self, from: LogIndex) -> im::Vector<Entry> {
        assert!(from > self.start_index, "entries_from({from}) inside compacted prefix");
        match self.offset(from) {
            Some(k) => self.entries.clone().slice(k..),
            None => im::Vector::new(),
        }
    }

    /// Iterates over `(index, entry)` for every held entry, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (LogIndex, &Entry)> + '_ {
        let start = self.start_index.0;
        self.entries.iter().enumerate().map(move |(k, e)| (LogIndex(start + 1 + k as u64), e))
    }

    /// Appends one entry at `last_index() + 1` and returns its index.
    pub fn push(&mut self, entry: Entry) -> LogIndex {
        self.bytes += encoded_size(&entry);
        self.entries.push_back(entry);
        self.last_index()
    }

    /// Removes every entry at `from` and after (§5.3 step 3: "delete the existing entry and all
    /// that follow it").
    ///
    /// # Panics
    /// If `from` is inside the compacted prefix: committed entries are never removed.
    pub fn truncate_from(&mut self, from: LogIndex) {
        assert!(from > self.start_index, "truncate_from({from}) would remove committed entries");
        if let Some(k) = self.offset(from) {
            let removed: u64 = self.entries.iter().skip(k).map(encoded_size).sum();
            self.bytes -= removed;
            self.entries.truncate(k);
        }
    }

    /// Drops every entry up to and including `index`, which must be held or be the current
    /// start, and makes it the new start (log compaction, §7).
    ///
    /// # Panics
    /// If `index` is past the end of the log.
    pub fn compact_to(&mut self, index: LogIndex) {
        if index <= self.start_index {
            return;
        }
        let term = self.term_at(index).expect("compact_to past the end of the log");
        self.cut_prefix(index, term);
    }

    /// Makes `(index, term)` the start of the log, as a snapshot ending there requires: the
    /// entries after `index` stay when the log extends past it (whatever their terms: a caller
    /// that must not keep a conflicting suffix truncates it first); otherwise the log becomes
    /// empty. An `index` before the current start empties the log too.
    pub fn cut_prefix(&mut self, index: LogIndex, term: Term) {
        match self.offset(index.next()) {
            Some(k) if index >= self.start_index => {
                let removed: u64 = self.entries.iter().take(k).map(encoded_size).sum();
                self.bytes -= removed;
                self.entries = self.entries.clone().slice(k..);
            }
            _ => {
                self.entries = im::Vector::new();
                self.bytes = 0;
            }
        }
        self.start_index = index;
        self.start_term = term;
    }

    /// The first held index whose entry has the same term as the entry at `index`, found by
    /// walking back (fast back-up of `next_index`, §5.3 end). Returns `first_index()` at worst.
    #[must_use]
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.get(index).map(|e| e.term) else {
            return index;
        };
        let mut first = index;
        while first.prev() > self.start_index && self.term_at(first.prev()) == Some(term) {
            first = first.prev();
        }
        first
    }

    /// §5.4.1: a log ending at (`last_log_term`, `last_log_index`) is at least as up-to-date as
    /// this one when its last term is later, or the terms are equal and it is at least as long.
    #[must_use]
    pub fn is_up_to_date(&self, last_log_index: LogIndex, last_log_term: Term) -> bool {
        (last_log_term, last_log_index) >= (self.last_term(), self.last_index())
    }
}

impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start_index > LogIndex(0) {
            write!(f, "[snap {}/{}]", self.start_index, self.start_term)?;
        }
        for (index, entry) in self.iter() {
            write!(f, " {}:{}", index.0, entry)?;
        }
        Ok(())
    }
}
