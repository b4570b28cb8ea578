//! A server's durable storage: one data directory holding a lock file, a write-ahead log (WAL)
//! of [`model::DurableChange`]s in numbered segments, and the latest snapshot in a file of its
//! own.
//!
//! # Layout of a data directory
//! - `LOCK`: held with an exclusive `flock` (std's `File::try_lock`) for as long as a server
//!   uses the directory, so a second server on the same directory fails at start-up. The kernel
//!   drops the lock when the process dies, so a crash never leaves a stale lock behind (which an
//!   `O_EXCL` pid file would). The file holds the owner's pid, for people.
//! - `wal-<N>.log` (N: segment number, 20 digits): WAL segments. Each starts with a 36-byte
//!   header (magic, format version, node id, cluster id, segment number, CRC32), and the whole
//!   initial content of a segment (header, and after a rotation its first records) is written
//!   under a temporary name, fsynced and renamed into place, so it is never torn; a data
//!   directory of another node or cluster is refused.
//! - Records follow the header: `len: u32 LE | payload_crc: u32 LE | header_crc: u32 LE |
//!   payload`, where the payload is one postcard-encoded `DurableChange`, `payload_crc` is the
//!   CRC32 of the payload and `header_crc` the CRC32 of the first 8 header bytes (so a damaged
//!   length is recognised as damage, never trusted to skip or cut data).
//! - `snap-<N>.snap`: a snapshot (`model::Snapshot`: last index and term, key/value map and
//!   client sessions, postcard-encoded) after a 48-byte header: magic, format version, node id,
//!   cluster id, N = the number of the first WAL segment that follows it, payload length, CRC32
//!   of the payload, CRC32 of the header. Written with [`write_file_atomically`].
//! - `*.tmp`: what [`write_file_atomically`] was writing when the server crashed. Never renamed,
//!   so never part of the state: removed at start-up.
//!
//! A *generation* G is the snapshot `snap-G` (for G = 1 there is none: the empty state) and the
//! segments G, G+1, ... after it. Its state is the snapshot with the segments' records replayed
//! onto it. Segment G is the generation's commit record: a snapshot whose segment does not exist
//! belongs to a rotation that never completed, and is not part of the state.
//!
//! # Recovery
//! 1. Remove `*.tmp` files.
//! 2. The current generation is the newest G for which both `snap-G` and `wal-G` exist (G = 1,
//!    no snapshot, if there is none). A snapshot newer than every segment (`snap-<last + 1>`)
//!    is an interrupted rotation: ignored, and removed. Files older than G are left-overs of a
//!    rotation whose clean-up was interrupted: removed. Any other arrangement (a gap in the
//!    segment numbers, segments after 1 with no snapshot naming them, a snapshot that is
//!    neither current, older nor the next) stops the server with an error naming the directory.
//! 3. `snap-G` is read and checked: identity, header and payload checksums, the segment number
//!    it names, a payload no larger than the configured snapshot limit. A damaged or oversized
//!    snapshot stops the server with an error naming the file: it is never skipped for an older
//!    one (which, after a completed rotation, no longer exists anyway, and whose log would not
//!    hold the writes since).
//! 4. The snapshot is installed on `Durable::default()` and the segments' records replayed onto
//!    it with [`model::Durable::apply`]: that function is the one definition of replay. A damaged
//!    record is a *torn tail* (a crash in the middle of a write that was therefore never
//!    acknowledged) only when it is in the last segment and either runs past the end of the
//!    file, or everything after it is zero bytes (the space written ahead, or a zero-filled,
//!    never-written tail that a file system may expose). The file is then truncated at that record and the truncation fsynced.
//!    Any other damage (a bad checksum with data after it, a record that does not decode, a
//!    change that does not fit the replayed state) stops the server with an error naming the
//!    file and the offset: acknowledged writes are never dropped silently.
//! 5. Only then are the left-overs of step 2 removed (and the directory fsynced).
//!
//! # Writing
//! [`Storage::append`] writes all the changes of a batch with one `write` and one `fdatasync`
//! (group commit). Any IO error is fatal to the server: the state of the file after a failed
//! write or fsync is unknown, and restart recovers from what is on disk.
//!
//! The segment is written ahead with zero bytes (16 KiB at first, then as much again as the
//! segment holds, up to 4 MiB at a time), and records overwrite those zeros. An `fdatasync`
//! that neither grows the file nor allocates blocks writes only the data, without a journal
//! commit: 0.13 ms instead of 0.16–0.21 ms at the median on this project's machine. Recovery
//! reads zero bytes after the last record as the end of the segment (a record header is never
//! all zero: its header checksum would not match), and appending continues there.
//!
//! `Storage` keeps no copy of the state: a rotation writes out the state the batch leads to,
//! which the caller passes (the server passes the core's `Durable`, which the core checks, in
//! debug builds, to be the replay of its changes). A test replays every flush of the server's
//! batches onto what the directory held and compares with the core (`server/event_loop.rs`, debug
//! builds).
//!
//! # Snapshots and rotation (log compaction)
//! When a batch contains a `DurableChange::Snapshot` (the server took a snapshot, or installed
//! its leader's), the batch is not written to the current segment. Instead, with the state D
//! the whole batch leads to (the caller's state after the batch, so the changes after the
//! snapshot are included, and several snapshots in one batch leave only the last), and N the
//! current segment's number:
//! 1. write `snap-<N+1>` (D's snapshot) with [`write_file_atomically`]: temp name, fsync,
//!    rename, fsync the directory;
//! 2. write `wal-<N+1>` with [`write_file_atomically`]: its header, then a `TermAndVote` record
//!    with D's term and vote and `Append` records with D's retained log (the entries after the
//!    snapshot), so that the snapshot and this segment alone replay to D. Its rename, made
//!    durable by the directory fsync, is the commit point;
//! 3. append to `wal-<N+1>` from now on;
//! 4. delete every segment and snapshot numbered below N+1, then fsync the directory.
//!
//! The previous generation is complete on disk until step 2 has committed the new one, and it
//! is only deleted afterwards; so the previous snapshot is never lost or overwritten before a
//! newer one is durable, and disk use after a snapshot is one snapshot plus a segment holding
//! about `max_raft_state` bytes (plus what was appended since).
//!
//! A crash at any point of a rotation (M..=N: the segments of the current generation M;
//! nothing of the batch was sent or acknowledged, since that happens only after `append`
//! returns, so recovering the old state loses nothing):
//! 1. During step 1, before the rename: `snap-<N+1>.snap.tmp` may exist, partly written. It is
//!    removed; generation M is recovered: the old state.
//! 2. After the rename, before or after the directory fsync: `snap-<N+1>` may exist, complete
//!    (it was fsynced before the rename), but `wal-<N+1>` does not: an interrupted rotation.
//!    The snapshot is removed, generation M recovered: the old state.
//! 3. During step 2, before the rename: as 2, plus `wal-<N+1>.log.tmp`, which is removed.
//! 4. After the rename of `wal-<N+1>`, before its directory fsync: after the crash the rename
//!    is either lost (then as 2: the old state) or present, with complete content (fsynced
//!    before the rename): the new generation N+1, whose files are durable, is recovered: the
//!    new state. The old files are removed as left-overs.
//! 5. During step 4, with some old files deleted and others not: generation N+1 is the newest
//!    complete one; it is recovered, the rest removed. Recovery never needs the old files once
//!    `wal-<N+1>` exists, so the order of the deletions does not matter.
//! 6. After step 4: only generation N+1 is there.
//!
//! The directory fsync after step 1 is needed: without it, a crash could keep the rename of
//! `wal-<N+1>` but lose that of `snap-<N+1>`, leaving a segment whose records start after a
//! snapshot that does not exist (recovery would refuse it, since its first append would not
//! fit generation M's log).
//!
//! A snapshot larger than the configured limit ([`StorageLimits::max_snapshot`], the same
//! bound as the InstallSnapshot frame) is not written: `append` fails with
//! [`StorageError::SnapshotTooLarge`] before step 1, the server stops, and the directory keeps
//! the previous state. Recovery refuses such a snapshot file too, before reading it.

use crate::config::StorageLimits;
use model::{Durable, DurableChange, NodeId, Snapshot};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

mod format;
mod recover;
mod segment;
#[cfg(test)]
mod tests;

use format::*;
pub use format::{sync_dir, write_file_atomically};
use recover::*;
use segment::Segment;

/// Bumped whenever the record format or the payload encoding changes.
pub const WAL_FORMAT_VERSION: u32 = 1;
/// Bumped whenever the snapshot file's header or payload encoding changes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const SEGMENT_MAGIC: [u8; 8] = *b"kvrftwal";
const SNAPSHOT_MAGIC: [u8; 8] = *b"kvrftsnp";
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 36;
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 12;
/// Bytes of a snapshot file's header.
pub const SNAPSHOT_HEADER_LEN: usize = 48;
const LOCK_FILE: &str = "LOCK";
/// The largest record recovery reads, whatever the configured limit. A record's length is
/// covered by its header checksum, so a record longer than today's `max_record` was written
/// under a larger limit, not damaged; this cap only bounds what a damaged file can make us do.
pub const MAX_RECORD_READ: usize = 1 << 30;

/// The server a data directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub node: NodeId,
}

/// Why storage could not be opened or written. Every variant is fatal to the server.
#[derive(Debug)]
pub enum StorageError {
    /// Another server holds the directory's lock.
    Locked {
        dir: PathBuf,
    },
    /// A record is damaged somewhere other than a torn tail, or does not replay.
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The snapshot recovery needs is damaged, does not decode, or exceeds the snapshot limit.
    BadSnapshot {
        file: PathBuf,
        reason: String,
    },
    /// The files of the directory do not form one generation (a segment or snapshot missing).
    Inconsistent {
        dir: PathBuf,
        reason: String,
    },
    /// A file that is not this server's (another node's, another cluster's, another format).
    Foreign {
        file: PathBuf,
        reason: String,
    },
    /// A change too large for one record even when split (cannot happen with the frame limits).
    TooLarge {
        bytes: usize,
        max: usize,
    },
    /// A snapshot larger than the snapshot limit; it was not written.
    SnapshotTooLarge {
        bytes: usize,
        max: usize,
    },
    Io {
        what: String,
        source: io::Error,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Locked { dir } => write!(
                f,
                "data directory {} is in use by another kvraft server (its {LOCK_FILE} file is locked)",
                dir.display()
            ),
            StorageError::Corrupt { file, offset, reason } => write!(
                f,
                "write-ahead log {} is corrupt at offset {offset}: {reason}; refusing to start, \
                 since acknowledged writes may be damaged",
                file.display()
            ),
            StorageError::BadSnapshot { file, reason } => write!(
                f,
                "snapshot {} is unusable: {reason}; refusing to start, since the writes it holds \
                 are no longer in the write-ahead log",
                file.display()
            ),
            StorageError::Inconsistent { dir, reason } => {
                write!(f, "data directory {} is inconsistent: {reason}; refusing to start", dir.display())
            }
            StorageError::Foreign { file, reason } => write!(f, "{}: {reason}", file.display()),
            StorageError::TooLarge { bytes, max } => {
                write!(f, "a durable change of {bytes} bytes exceeds the record limit of {max} bytes")
            }
            StorageError::SnapshotTooLarge { bytes, max } => write!(
                f,
                "a snapshot of {bytes} bytes exceeds the snapshot limit of {max} bytes \
                 (--max-snapshot-bytes); it was not written and the data directory keeps the \
                 previous state: restart with a larger limit"
            ),
            StorageError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for StorageError {}

fn io_err(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> StorageError {
    move |source| StorageError::Io { what: what(), source }
}

/// What recovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The state to restore the server from.
    pub durable: Durable,
    /// The snapshot file it started from, if any.
    pub snapshot: Option<PathBuf>,
    /// Records replayed.
    pub records: u64,
    /// A torn tail that was cut off: the file, the offset it was cut at, the bytes removed.
    pub torn: Option<(PathBuf, u64, u64)>,
    /// Files removed: temporary files, and snapshots and segments that are not part of the
    /// recovered generation (left by a rotation that a crash interrupted).
    pub removed: Vec<PathBuf>,
    /// Where the last segment's records end (where appends continue).
    last_segment_end: u64,
}

/// Zero bytes written ahead of a segment's records grow by the segment's size, within these
/// bounds (see the module doc, "Writing").
pub const PREALLOCATE_MIN: u64 = 16 << 10;
pub const PREALLOCATE_MAX: u64 = 4 << 20;

/// An open data directory: the lock and the WAL segment being appended to.
pub struct Storage {
    dir: PathBuf,
    identity: Identity,
    _lock: File,
    segment: Segment,
    snapshot: Option<PathBuf>,
    limits: StorageLimits,
    buf: Vec<u8>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("dir", &self.dir)
            .field("segment", &self.segment.path)
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (creating if needed) the data directory `dir` of server `identity`, locks it, and
    /// recovers the durable state (see the module doc, "Recovery").
    ///
    /// # Errors
    /// See [`StorageError`]; every one means the server must not start.
    pub fn open(dir: &Path, identity: Identity, limits: StorageLimits) -> Result<(Storage, Recovered), StorageError> {
        let existed = dir.exists();
        fs::create_dir_all(dir).map_err(io_err(|| format!("cannot create {}", dir.display())))?;
        if !existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(io_err(|| format!("cannot sync {}", parent.display())))?;
            }
        }
        let lock = lock_dir(dir)?;
        let mut removed = Vec::new();
        let plan = plan(dir, list_dir(dir, &mut removed)?)?;
        let mut recovered = replay(&plan, identity, limits)?;
        remove_files(dir, &plan.stale)?;
        for path in &plan.stale {
            tracing::info!(file = %path.display(), "removed a file of an earlier generation");
        }
        removed.extend(plan.stale);
        recovered.removed = removed;
        let segment = match plan.segments.last() {
            Some((number, path)) => Segment::open(path, *number, recovered.last_segment_end)?,
            None => Segment::create(dir, identity, 1, &[])?,
        };
        let storage = Storage {
            dir: dir.to_path_buf(),
            identity,
            _lock: lock,
            segment,
            snapshot: recovered.snapshot.clone(),
            limits,
            buf: Vec::new(),
        };
        Ok((storage, recovered))
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment being appended to.
    #[must_use]
    pub fn current_segment(&self) -> &Path {
        &self.segment.path
    }

    /// Where the records of the current segment end (zero bytes written ahead may follow).
    #[must_use]
    pub fn records_end(&self) -> u64 {
        self.segment.len
    }

    /// The current snapshot file, if there is one.
    #[must_use]
    pub fn current_snapshot(&self) -> Option<&Path> {
        self.snapshot.as_deref()
    }

    /// Makes `changes` durable, in order. Without a snapshot among them: one write, one
    /// `fdatasync`. With one: a rotation (see the module doc) that writes out `after`, the state
    /// the changes lead to (the core's own durable state: replaying `changes` onto what the
    /// directory holds must give it, which the core checks in debug builds). Does nothing for
    /// none.
    ///
    /// # Errors
    /// Any failure; the server must stop (the file's state after a failed write is unknown).
    pub fn append(&mut self, changes: &[DurableChange], after: &Durable) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        if changes.iter().any(|c| matches!(c, DurableChange::Snapshot(_))) {
            self.rotate(after)
        } else {
            self.write_records(changes)
        }
    }

    /// One write and one `fdatasync` of `changes` at the end of the current segment.
    fn write_records(&mut self, changes: &[DurableChange]) -> Result<(), StorageError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let encoded = changes.iter().try_for_each(|c| self.encode(c, &mut buf));
        let result = encoded.and_then(|()| self.segment.write(&buf));
        if buf.capacity() > 1 << 20 {
            buf = Vec::new(); // do not keep a large batch's buffer for ever
        }
        self.buf = buf;
        result
    }

    /// Starts generation N+1 holding `next` (see the module doc, "Snapshots and rotation").
    fn rotate(&mut self, next: &Durable) -> Result<(), StorageError> {
        let number = self.segment.number + 1;
        let dir = self.dir.clone();
        // 1. The snapshot, not yet part of the state: recovery ignores it until step 2.
        let name = snapshot_name(number);
        let bytes = snapshot_file(self.identity, number, &next.snapshot, self.limits.max_snapshot)?;
        write_file_atomically(&dir, &name, &bytes)
            .map_err(io_err(|| format!("cannot write {}", dir.join(&name).display())))?;
        // 2. The segment that re-establishes term, vote and the retained log: the commit point.
        let mut records = Vec::new();
        let (current_term, voted_for) = (next.current_term, next.voted_for);
        self.encode(&DurableChange::TermAndVote { current_term, voted_for }, &mut records)?;
        if !next.log.is_empty() {
            let first = next.log.first_index();
            self.encode(&DurableChange::Append { first, entries: next.log.entries_from(first) }, &mut records)?;
        }
        self.segment = Segment::create(&dir, self.identity, number, &records)?;
        self.snapshot = Some(dir.join(&name));
        // 3. Appends go to the new segment (above); 4. what the new generation makes obsolete.
        let mut stale = Vec::new();
        let entries = fs::read_dir(&dir).map_err(io_err(|| format!("cannot list {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(|| format!("cannot list {}", dir.display())))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if segment_number(name).or_else(|| snapshot_number(name)).is_some_and(|n| n < number) {
                stale.push(entry.path());
            }
        }
        remove_files(&dir, &stale)?;
        tracing::debug!(
            segment = number,
            snapshot_index = %next.snapshot.last_index,
            snapshot_bytes = bytes.len(),
            segment_bytes = SEGMENT_HEADER_LEN + records.len(),
            removed = stale.len(),
            "snapshot written, log rotated"
        );
        Ok(())
    }

    /// Encodes one change as one record, or as several when an append is too large for one
    /// (replaying consecutive appends is the same as replaying their concatenation).
    fn encode(&self, change: &DurableChange, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        let payload = postcard::to_stdvec(change).map_err(|e| StorageError::Io {
            what: "cannot encode a durable change".into(),
            source: io::Error::other(e.to_string()),
        })?;
        if payload.len() > self.limits.max_record {
            if let DurableChange::Append { first, entries } = change {
                if entries.len() > 1 {
                    let mut head = entries.clone();
                    let tail = head.split_off(entries.len() / 2);
                    let second = model::LogIndex(first.0 + head.len() as u64);
                    self.encode(&DurableChange::Append { first: *first, entries: head }, buf)?;
                    return self.encode(&DurableChange::Append { first: second, entries: tail }, buf);
                }
            }
            return Err(StorageError::TooLarge { bytes: payload.len(), max: self.limits.max_record });
        }
        let len = u32::try_from(payload.len()).expect("bounded by max_record");
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let header_crc = crc32fast::hash(&header[..8]);
        header[8..].copy_from_slice(&header_crc.to_le_bytes());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(&payload);
        Ok(())
    }
}
