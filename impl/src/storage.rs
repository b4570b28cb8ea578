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
//! batches onto what the directory held and compares with the core (`server.rs`, debug
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

struct Segment {
    number: u64,
    path: PathBuf,
    file: File,
    /// Where the next record goes: the end of the records.
    len: u64,
    /// The file's length: zero bytes written ahead of `len` (see the module doc, "Writing").
    allocated: u64,
}

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

fn segment_name(number: u64) -> String {
    format!("wal-{number:020}.log")
}

fn snapshot_name(number: u64) -> String {
    format!("snap-{number:020}.snap")
}

/// The number in `<prefix><20 digits><suffix>`.
fn numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn segment_number(name: &str) -> Option<u64> {
    numbered(name, "wal-", ".log")
}

fn snapshot_number(name: &str) -> Option<u64> {
    numbered(name, "snap-", ".snap")
}

fn segment_header(identity: Identity, number: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
    h.extend_from_slice(&SEGMENT_MAGIC);
    h.extend_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&identity.node.0.to_le_bytes());
    h.extend_from_slice(&identity.cluster_id.to_le_bytes());
    h.extend_from_slice(&number.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(h.len(), SEGMENT_HEADER_LEN);
    h
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Checks the node and cluster ids found in a header.
fn check_identity(path: &Path, node: NodeId, cluster_id: u64, identity: Identity) -> Result<(), StorageError> {
    if node != identity.node || cluster_id != identity.cluster_id {
        return Err(StorageError::Foreign {
            file: path.to_path_buf(),
            reason: format!(
                "this data belongs to {node} of cluster {cluster_id}, not {} of cluster {}",
                identity.node, identity.cluster_id
            ),
        });
    }
    Ok(())
}

fn check_segment_header(path: &Path, bytes: &[u8], identity: Identity, number: u64) -> Result<(), StorageError> {
    let foreign = |reason: String| StorageError::Foreign { file: path.to_path_buf(), reason };
    if bytes.len() < SEGMENT_HEADER_LEN || bytes[..8] != SEGMENT_MAGIC {
        return Err(foreign("not a kvraft write-ahead log segment".into()));
    }
    let crc = u32_at(bytes, 32);
    if crc32fast::hash(&bytes[..32]) != crc {
        return Err(StorageError::Corrupt {
            file: path.to_path_buf(),
            offset: 0,
            reason: "segment header checksum mismatch".into(),
        });
    }
    let version = u32_at(bytes, 8);
    if version != WAL_FORMAT_VERSION {
        return Err(foreign(format!("format version {version}, but this build reads version {WAL_FORMAT_VERSION}")));
    }
    check_identity(path, NodeId(u32_at(bytes, 12)), u64_at(bytes, 16), identity)?;
    let found = u64_at(bytes, 24);
    if found != number {
        return Err(foreign(format!("header says segment {found}, the file name says {number}")));
    }
    Ok(())
}

/// The bytes of snapshot file `number`: header, then the encoded snapshot.
///
/// # Errors
/// [`StorageError::SnapshotTooLarge`] when the encoded snapshot exceeds `max`.
fn snapshot_file(identity: Identity, number: u64, snapshot: &Snapshot, max: usize) -> Result<Vec<u8>, StorageError> {
    let payload = postcard::to_stdvec(snapshot).map_err(|e| StorageError::Io {
        what: "cannot encode a snapshot".into(),
        source: io::Error::other(e.to_string()),
    })?;
    if payload.len() > max {
        return Err(StorageError::SnapshotTooLarge { bytes: payload.len(), max });
    }
    let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_LEN + payload.len());
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&identity.node.0.to_le_bytes());
    bytes.extend_from_slice(&identity.cluster_id.to_le_bytes());
    bytes.extend_from_slice(&number.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let header_crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&header_crc.to_le_bytes());
    debug_assert_eq!(bytes.len(), SNAPSHOT_HEADER_LEN);
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Reads and checks snapshot file `number`; refuses a payload over `max` before reading it.
fn load_snapshot(path: &Path, identity: Identity, number: u64, max: usize) -> Result<Snapshot, StorageError> {
    let bad = |reason: String| StorageError::BadSnapshot { file: path.to_path_buf(), reason };
    let mut file = File::open(path).map_err(io_err(|| format!("cannot open {}", path.display())))?;
    let len = file.metadata().map_err(io_err(|| format!("cannot stat {}", path.display())))?.len();
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    if len < SNAPSHOT_HEADER_LEN as u64 {
        return Err(bad(format!("{len} bytes, shorter than a snapshot header")));
    }
    file.read_exact(&mut header).map_err(io_err(|| format!("cannot read {}", path.display())))?;
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(StorageError::Foreign { file: path.to_path_buf(), reason: "not a kvraft snapshot".into() });
    }
    if crc32fast::hash(&header[..44]) != u32_at(&header, 44) {
        return Err(bad("header checksum mismatch".into()));
    }
    let version = u32_at(&header, 8);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(StorageError::Foreign {
            file: path.to_path_buf(),
            reason: format!(
                "snapshot format version {version}, but this build reads version {SNAPSHOT_FORMAT_VERSION}"
            ),
        });
    }
    check_identity(path, NodeId(u32_at(&header, 12)), u64_at(&header, 16), identity)?;
    let (first_segment, payload_len, payload_crc) = (u64_at(&header, 24), u64_at(&header, 32), u32_at(&header, 40));
    if first_segment != number {
        return Err(bad(format!("header names segment {first_segment}, the file name {number}")));
    }
    if payload_len > max as u64 {
        return Err(bad(format!(
            "it holds {payload_len} bytes, over the snapshot limit of {max} bytes (--max-snapshot-bytes); \
             start with a larger limit"
        )));
    }
    if payload_len != len - SNAPSHOT_HEADER_LEN as u64 {
        return Err(bad(format!(
            "the header says {payload_len} bytes of snapshot, the file holds {}",
            len - SNAPSHOT_HEADER_LEN as u64
        )));
    }
    let mut payload = Vec::new();
    file.read_to_end(&mut payload).map_err(io_err(|| format!("cannot read {}", path.display())))?;
    if payload.len() as u64 != payload_len {
        return Err(bad("the file changed while it was read".into()));
    }
    if crc32fast::hash(&payload) != payload_crc {
        return Err(bad("checksum mismatch".into()));
    }
    match postcard::take_from_bytes::<Snapshot>(&payload) {
        Ok((snapshot, [])) => Ok(snapshot),
        Ok((_, rest)) => Err(bad(format!("{} bytes after the snapshot", rest.len()))),
        Err(e) => Err(bad(format!("does not decode ({e})"))),
    }
}

/// Writes `bytes` as `dir/name` so that after a crash the file is either absent (or as it was)
/// or complete: temp file, fsync, rename, fsync the directory.
///
/// # Errors
/// Any IO error.
pub fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes a directory's entries (created, renamed, removed files) durable.
///
/// # Errors
/// Any IO error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// How one segment ended.
enum SegmentEnd {
    /// Every record replayed; they end at `end` (zero bytes written ahead may follow).
    Clean { end: u64 },
    /// Damage that can only be a torn write, at this offset.
    Torn { offset: u64, reason: String },
}

/// Replays the records of one segment onto `durable`, stopping at damage: torn (returned) or
/// corrupt (an error).
fn replay_segment(
    path: &Path,
    bytes: &[u8],
    durable: &mut Durable,
    records: &mut u64,
) -> Result<SegmentEnd, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let torn = |offset: usize, reason: &str| Ok(SegmentEnd::Torn { offset: offset as u64, reason: reason.into() });
    let mut at = SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if is_zero(rest) {
            // Space written ahead with zeros, never used (a record's header is never zero).
            return Ok(SegmentEnd::Clean { end: at as u64 });
        }
        if rest.len() < RECORD_HEADER_LEN {
            return torn(at, "incomplete record header");
        }
        let (len, payload_crc, header_crc) = (u32_at(rest, 0) as usize, u32_at(rest, 4), u32_at(rest, 8));
        if crc32fast::hash(&rest[..8]) != header_crc {
            if is_zero(&rest[RECORD_HEADER_LEN..]) {
                return torn(at, "damaged record header with nothing written after it");
            }
            return Err(corrupt(at, "record header checksum mismatch".into()));
        }
        if len > MAX_RECORD_READ {
            return Err(corrupt(at, format!("record of {len} bytes exceeds the limit of {MAX_RECORD_READ}")));
        }
        let end = at + RECORD_HEADER_LEN + len;
        if end > bytes.len() {
            return torn(at, "record runs past the end of the file");
        }
        let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
        if crc32fast::hash(payload) != payload_crc {
            if is_zero(&bytes[end..]) {
                return torn(at, "damaged last record");
            }
            return Err(corrupt(at, "record checksum mismatch".into()));
        }
        let change: DurableChange =
            postcard::from_bytes(payload).map_err(|e| corrupt(at, format!("record does not decode ({e})")))?;
        durable.apply(&change).map_err(|e| corrupt(at, format!("record does not replay: {e}")))?;
        *records += 1;
        at = end;
    }
    Ok(SegmentEnd::Clean { end: bytes.len() as u64 })
}

/// The numbered files of a data directory.
#[derive(Default)]
struct Listing {
    segments: BTreeMap<u64, PathBuf>,
    snapshots: BTreeMap<u64, PathBuf>,
}

/// Lists the segments and snapshots in `dir`, removing leftover temporary files (a crash
/// during [`write_file_atomically`]: the rename never happened) into `removed`.
fn list_dir(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<Listing, StorageError> {
    let mut listing = Listing::default();
    let entries = fs::read_dir(dir).map_err(io_err(|| format!("cannot list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(|| format!("cannot list {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            fs::remove_file(entry.path()).map_err(io_err(|| format!("cannot remove {name}")))?;
            removed.push(entry.path());
        } else if let Some(number) = segment_number(name) {
            listing.segments.insert(number, entry.path());
        } else if let Some(number) = snapshot_number(name) {
            listing.snapshots.insert(number, entry.path());
        }
    }
    Ok(listing)
}

/// Which files recovery reads, and which it removes once it has succeeded.
struct Plan {
    /// The current generation's snapshot (`None`: generation 1, the empty state).
    snapshot: Option<(u64, PathBuf)>,
    /// The current generation's segments, in order, numbered without gaps.
    segments: Vec<(u64, PathBuf)>,
    /// Files of other generations: older ones, and a snapshot whose rotation never committed.
    stale: Vec<PathBuf>,
}

/// Chooses the current generation (see the module doc, "Recovery", step 2).
fn plan(dir: &Path, listing: Listing) -> Result<Plan, StorageError> {
    let inconsistent = |reason: String| StorageError::Inconsistent { dir: dir.to_path_buf(), reason };
    let last_segment = listing.segments.keys().next_back().copied();
    let base = listing.snapshots.keys().rev().copied().find(|g| listing.segments.contains_key(g));
    let mut plan = Plan { snapshot: None, segments: Vec::new(), stale: Vec::new() };
    for (number, path) in listing.snapshots {
        match base {
            Some(b) if number == b => plan.snapshot = Some((number, path)),
            Some(b) if number < b => plan.stale.push(path),
            _ if last_segment.is_some_and(|last| number == last + 1) => {
                tracing::warn!(file = %path.display(), "ignoring a snapshot whose rotation did not complete");
                plan.stale.push(path);
            }
            _ => {
                return Err(inconsistent(format!(
                    "snapshot {} has no segment {} and is not from an interrupted rotation \
                     (the last segment is {last_segment:?})",
                    path.display(),
                    segment_name(number)
                )))
            }
        }
    }
    let first = base.unwrap_or(1);
    let mut expect = first;
    for (number, path) in listing.segments {
        if number < first {
            plan.stale.push(path);
            continue;
        }
        if number != expect {
            let missing = dir.join(segment_name(expect));
            return Err(inconsistent(if base.is_none() && expect == 1 {
                format!(
                    "{} is missing, and no snapshot names {} as the first segment after it",
                    missing.display(),
                    path.display()
                )
            } else {
                format!("{} is missing (the next one is {})", missing.display(), path.display())
            }));
        }
        plan.segments.push((number, path));
        expect += 1;
    }
    Ok(plan)
}

fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(|| format!("cannot open {}", path.display())))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(StorageError::Locked { dir: dir.to_path_buf() }),
        Err(fs::TryLockError::Error(e)) => {
            return Err(StorageError::Io { what: format!("cannot lock {}", path.display()), source: e })
        }
    }
    // Informational only; the flock is what excludes.
    let _ = lock.set_len(0).and_then(|()| writeln!(lock, "{}", std::process::id()));
    Ok(lock)
}

/// Removes `paths` (already gone is fine) and makes the removal durable.
fn remove_files(dir: &Path, paths: &[PathBuf]) -> Result<(), StorageError> {
    if paths.is_empty() {
        return Ok(());
    }
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::Io { what: format!("cannot remove {}", path.display()), source: e }),
        }
    }
    sync_dir(dir).map_err(io_err(|| format!("cannot sync {}", dir.display())))
}

/// Replays the plan's snapshot and segments, cutting a torn tail of the last segment.
fn replay(plan: &Plan, identity: Identity, limits: StorageLimits) -> Result<Recovered, StorageError> {
    let mut durable = Durable::default();
    if let Some((number, path)) = &plan.snapshot {
        let snapshot = load_snapshot(path, identity, *number, limits.max_snapshot)?;
        durable.apply(&DurableChange::Snapshot(snapshot)).expect("a snapshot installs on the empty state");
    }
    let mut records = 0;
    let mut torn = None;
    let mut last_end = 0;
    for (k, (number, path)) in plan.segments.iter().enumerate() {
        let bytes = fs::read(path).map_err(io_err(|| format!("cannot read {}", path.display())))?;
        check_segment_header(path, &bytes, identity, *number)?;
        match replay_segment(path, &bytes, &mut durable, &mut records)? {
            SegmentEnd::Clean { end } => last_end = end,
            SegmentEnd::Torn { offset, reason } if k + 1 == plan.segments.len() => {
                cut_torn_tail(path, offset)?;
                last_end = offset;
                tracing::warn!(file = %path.display(), offset, reason, "cut off a torn write at the end of the log");
                torn = Some((path.clone(), offset, bytes.len() as u64 - offset));
            }
            SegmentEnd::Torn { offset, reason } => {
                return Err(StorageError::Corrupt {
                    file: path.clone(),
                    offset,
                    reason: format!("{reason} in a segment that is not the last"),
                })
            }
        }
    }
    let snapshot = plan.snapshot.as_ref().map(|(_, path)| path.clone());
    Ok(Recovered { durable, snapshot, records, torn, removed: Vec::new(), last_segment_end: last_end })
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

fn cut_torn_tail(path: &Path, offset: u64) -> Result<(), StorageError> {
    let file =
        OpenOptions::new().write(true).open(path).map_err(io_err(|| format!("cannot open {}", path.display())))?;
    let what = || format!("cannot truncate {}", path.display());
    file.set_len(offset).map_err(io_err(what))?;
    file.sync_all().map_err(io_err(|| format!("cannot fsync {}", path.display())))
}

impl Segment {
    /// Opens segment `number`, whose records end at `len`, for appending.
    fn open(path: &Path, number: u64, len: u64) -> Result<Segment, StorageError> {
        let file =
            OpenOptions::new().write(true).open(path).map_err(io_err(|| format!("cannot open {}", path.display())))?;
        let allocated = file.metadata().map_err(io_err(|| format!("cannot stat {}", path.display())))?.len();
        Ok(Segment { number, path: path.to_path_buf(), file, len, allocated: allocated.max(len) })
    }

    /// Creates segment `number` with its header and then `records`, atomically.
    fn create(dir: &Path, identity: Identity, number: u64, records: &[u8]) -> Result<Segment, StorageError> {
        let name = segment_name(number);
        let mut bytes = segment_header(identity, number);
        bytes.extend_from_slice(records);
        write_file_atomically(dir, &name, &bytes)
            .map_err(io_err(|| format!("cannot create {}", dir.join(&name).display())))?;
        Segment::open(&dir.join(name), number, bytes.len() as u64)
    }

    /// Writes `bytes` after the records and `fdatasync`s. The file is extended with zero bytes
    /// ahead of the records, so that most syncs find the file's size and blocks unchanged and
    /// write only data (no journal commit: about 0.05 ms less per sync on this project's
    /// machine); recovery reads zero bytes after the records as the end (a record header is
    /// never zero).
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        use std::os::unix::fs::FileExt;
        let end = self.len + bytes.len() as u64;
        let what = || format!("cannot write {}", self.path.display());
        if end > self.allocated {
            let grow = self.allocated.clamp(PREALLOCATE_MIN, PREALLOCATE_MAX);
            let target = end.max(self.allocated + grow);
            let zeros = vec![0u8; (target - self.allocated).min(1 << 20) as usize];
            let mut at = self.allocated.max(end);
            while at < target {
                let n = (target - at).min(zeros.len() as u64) as usize;
                self.file.write_all_at(&zeros[..n], at).map_err(io_err(what))?;
                at += n as u64;
            }
            self.allocated = target;
        }
        self.file.write_all_at(bytes, self.len).map_err(io_err(what))?;
        let what = || format!("cannot fsync {}", self.path.display());
        self.file.sync_data().map_err(io_err(what))?;
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ClientId, Command, Entry, KvState, LogIndex, Op, Seq, Term};

    const ME: Identity = Identity { cluster_id: 7, node: NodeId(1) };
    const BIG: StorageLimits = StorageLimits { max_record: 1 << 20, max_snapshot: 1 << 20 };

    /// A storage and the state its directory holds, as the server keeps them: each append
    /// passes the state the changes lead to.
    struct Tracked {
        s: Storage,
        d: Durable,
    }

    impl Tracked {
        fn open(dir: &Path, limits: StorageLimits) -> (Tracked, Recovered) {
            let (s, r) = Storage::open(dir, ME, limits).unwrap();
            (Tracked { s, d: r.durable.clone() }, r)
        }

        fn append(&mut self, changes: &[DurableChange]) -> Result<(), StorageError> {
            for c in changes {
                self.d.apply(c).unwrap();
            }
            self.s.append(changes, &self.d)
        }
    }

    fn entry(term: u64, seq: u64) -> Entry {
        let op = Op::Append { key: "k".into(), value: format!("v{seq}") };
        Entry { term: Term(term), command: Command { client: ClientId(1), seq: Seq(seq), op } }
    }

    fn changes() -> Vec<DurableChange> {
        vec![
            DurableChange::TermAndVote { current_term: Term(1), voted_for: Some(NodeId(1)) },
            DurableChange::Append { first: LogIndex(1), entries: (1..=3).map(|s| entry(1, s)).collect() },
            DurableChange::Truncate { from: LogIndex(3) },
            DurableChange::Append { first: LogIndex(3), entries: im::Vector::unit(entry(1, 9)) },
        ]
    }

    fn expected() -> Durable {
        let mut d = Durable::default();
        for c in changes() {
            d.apply(&c).unwrap();
        }
        d
    }

    #[test]
    fn what_is_appended_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, r) = Tracked::open(dir.path(), BIG);
            assert_eq!(r.durable, Durable::default());
            s.append(&changes()[..2]).unwrap();
            s.append(&changes()[2..]).unwrap();
        }
        let (_s, r) = Storage::open(dir.path(), ME, BIG).unwrap();
        assert_eq!(r.durable, expected());
        assert_eq!(r.records, 4);
        assert_eq!(r.torn, None);
    }

    #[test]
    fn a_large_append_is_split_into_records() {
        let dir = tempfile::tempdir().unwrap();
        let big = DurableChange::Append { first: LogIndex(1), entries: (1..=40).map(|s| entry(1, s)).collect() };
        {
            let (mut s, _) = Tracked::open(dir.path(), StorageLimits { max_record: 200, ..BIG });
            s.append(std::slice::from_ref(&big)).unwrap();
        }
        let (_s, r) = Storage::open(dir.path(), ME, StorageLimits { max_record: 200, ..BIG }).unwrap();
        let mut want = Durable::default();
        want.apply(&big).unwrap();
        assert_eq!(r.durable, want);
        assert!(r.records > 1);
    }

    #[test]
    fn a_second_opener_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, _) = Storage::open(dir.path(), ME, BIG).unwrap();
        let err = Storage::open(dir.path(), ME, BIG).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    }

    #[test]
    fn another_nodes_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Storage::open(dir.path(), ME, BIG).unwrap());
        let other = Identity { cluster_id: 7, node: NodeId(2) };
        let err = Storage::open(dir.path(), other, BIG).unwrap_err();
        assert!(err.to_string().contains("belongs to n1 of cluster 7"), "{err}");
    }

    fn segment_path(dir: &Path) -> PathBuf {
        dir.join(segment_name(1))
    }

    /// A segment's header and records, without the zero bytes written ahead of them.
    fn records_only(path: &Path) -> Vec<u8> {
        let mut bytes = fs::read(path).unwrap();
        let mut at = SEGMENT_HEADER_LEN;
        while at + RECORD_HEADER_LEN <= bytes.len() && !is_zero(&bytes[at..at + RECORD_HEADER_LEN]) {
            at += RECORD_HEADER_LEN + u32_at(&bytes[at..], 0) as usize;
        }
        assert!(is_zero(&bytes[at..]), "{}: data after the records", path.display());
        bytes.truncate(at);
        bytes
    }

    #[test]
    fn segments_are_written_ahead_with_zeros_and_appends_continue_after_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path());
        let mut want = Durable::default();
        for round in 0..3u64 {
            let (mut s, r) = Tracked::open(dir.path(), BIG);
            assert_eq!(r.durable, want);
            assert_eq!(r.torn, None, "zero bytes written ahead are not a torn tail");
            let batch = DurableChange::Append {
                first: LogIndex(round * 100 + 1),
                entries: (1..=100).map(|k| entry(1, round * 100 + k)).collect(),
            };
            s.append(std::slice::from_ref(&batch)).unwrap();
            want.apply(&batch).unwrap();
            let file_len = fs::metadata(&path).unwrap().len();
            assert!(
                file_len >= PREALLOCATE_MIN && file_len > s.s.segment.len,
                "{file_len} bytes, records end at {}",
                s.s.segment.len
            );
            assert_eq!(records_only(&path).len() as u64, s.s.segment.len);
        }
        assert_eq!(Storage::open(dir.path(), ME, BIG).unwrap().1.durable, want);
    }

    #[test]
    fn torn_tails_are_cut_and_damage_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Tracked::open(dir.path(), BIG);
            s.append(&changes()).unwrap();
        }
        let path = segment_path(dir.path());
        let whole = records_only(&path);
        // Every cut inside the last record, and zeros appended after a full log, are torn tails.
        let last_start = whole.len() - (RECORD_HEADER_LEN + postcard::to_stdvec(&changes()[3]).unwrap().len());
        for cut in last_start..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let (_s, r) = Storage::open(dir.path(), ME, BIG).unwrap();
            let mut want = Durable::default();
            changes()[..3].iter().for_each(|c| want.apply(c).unwrap());
            assert_eq!(r.durable, want, "cut at {cut}");
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
        }
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 100]);
        fs::write(&path, &zeros).unwrap();
        assert_eq!(Storage::open(dir.path(), ME, BIG).unwrap().1.durable, expected());
        // A flipped byte anywhere before the last record is refused, naming file and offset.
        for at in SEGMENT_HEADER_LEN..last_start {
            let mut bad = whole.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            let err = Storage::open(dir.path(), ME, BIG).unwrap_err();
            let StorageError::Corrupt { file, offset, .. } = &err else { panic!("flip at {at}: {err}") };
            assert_eq!(file, &path);
            assert!(*offset <= at as u64, "flip at {at}: {err}");
            assert!(err.to_string().contains(&path.display().to_string()));
        }
    }

    // ---- Snapshots and rotation ----

    /// The entry at index `i` of the test history: term 1 up to index 7, then term 2.
    fn entry_at(i: u64) -> Entry {
        entry(if i <= 7 { 1 } else { 2 }, i)
    }

    fn append(from: u64, to: u64) -> DurableChange {
        DurableChange::Append { first: LogIndex(from), entries: (from..=to).map(entry_at).collect() }
    }

    fn term_vote(term: u64, vote: Option<u32>) -> DurableChange {
        DurableChange::TermAndVote { current_term: Term(term), voted_for: vote.map(NodeId) }
    }

    /// The snapshot after applying entries `1..=index` of the test history.
    fn snapshot_at(index: u64) -> DurableChange {
        let mut state = KvState::new();
        for i in 1..=index {
            state.apply(&entry_at(i).command);
        }
        DurableChange::Snapshot(Snapshot { last_index: LogIndex(index), last_term: entry_at(index).term, state })
    }

    fn replayed(batches: &[Vec<DurableChange>]) -> Durable {
        let mut d = Durable::default();
        batches.iter().flatten().for_each(|c| d.apply(c).unwrap());
        d
    }

    /// The data files of `dir` (everything but the lock), by name.
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != LOCK_FILE)
            .map(|e| (e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap()))
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        files(dir).into_keys().collect()
    }

    fn generation(number: u64) -> Vec<String> {
        vec![snapshot_name(number), segment_name(number)]
    }

    /// Writes each batch with one `append`, in a directory opened once.
    fn write_batches(dir: &Path, batches: &[Vec<DurableChange>]) {
        let (mut s, _) = Tracked::open(dir, BIG);
        for batch in batches {
            s.append(batch).unwrap();
        }
    }

    #[test]
    fn each_snapshot_starts_a_generation_that_recovers_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let batches = [
            vec![term_vote(1, Some(1)), append(1, 5)],
            // A snapshot taken at the end of a step, with changes of later steps of the batch.
            vec![append(6, 7), snapshot_at(5), term_vote(2, None), append(8, 8)],
            vec![append(9, 10)],
            vec![append(11, 11), snapshot_at(10), term_vote(3, Some(2))],
            // An InstallSnapshot past the end of the log, after truncating a conflicting suffix.
            vec![term_vote(4, None), DurableChange::Truncate { from: LogIndex(11) }, snapshot_at(15)],
            // Two snapshots in one batch: only the last one is kept.
            vec![append(16, 18), snapshot_at(16), append(19, 19), snapshot_at(18)],
        ];
        let expect_files =
            [vec![segment_name(1)], generation(2), generation(2), generation(3), generation(4), generation(5)];
        let (mut s, _) = Tracked::open(dir.path(), BIG);
        for (k, batch) in batches.iter().enumerate() {
            s.append(batch).unwrap();
            let want = replayed(&batches[..=k]);
            assert_eq!(names(dir.path()), expect_files[k], "after batch {k}");
            drop(s);
            let (reopened, r) = Tracked::open(dir.path(), BIG);
            assert_eq!(r.durable, want, "recovered after batch {k}");
            assert_eq!(r.removed, Vec::<PathBuf>::new());
            assert_eq!(r.snapshot.is_some(), k >= 1);
            s = reopened;
        }
        // The state recovered after the last batch.
        let last = &s.d;
        assert_eq!(
            (last.snapshot.last_index, last.log.first_index(), last.log.last_index()),
            (LogIndex(18), LogIndex(19), LogIndex(19))
        );
        assert_eq!((last.current_term, last.voted_for), (Term(4), None));
    }

    #[test]
    fn the_retained_log_is_split_into_records_like_any_append() {
        let dir = tempfile::tempdir().unwrap();
        let small = StorageLimits { max_record: 200, ..BIG };
        let batches = [vec![term_vote(1, None), append(1, 40)], vec![snapshot_at(2)]];
        {
            let (mut s, _) = Tracked::open(dir.path(), small);
            batches.iter().for_each(|b| s.append(b).unwrap());
        }
        let (_s, r) = Storage::open(dir.path(), ME, small).unwrap();
        assert_eq!(r.durable, replayed(&batches));
        assert!(r.records > 2, "38 retained entries of ~12 bytes need several 200-byte records");
    }

    /// A rotation from generation `number - 1` (with records appended to it) to `number`: the
    /// files of the directory before and after, and the states they hold.
    struct Rotation {
        number: u64,
        old_files: BTreeMap<String, Vec<u8>>,
        new_files: BTreeMap<String, Vec<u8>>,
        old: Durable,
        new: Durable,
    }

    /// The first rotation (from generation 1, which has no snapshot) or the second (from
    /// generation 2, whose snapshot must then go).
    fn rotation_to(number: u64) -> Rotation {
        let dir = tempfile::tempdir().unwrap();
        let mut before = vec![vec![term_vote(1, Some(1)), append(1, 5)]];
        if number == 3 {
            before.extend([vec![append(6, 7), snapshot_at(6)], vec![append(8, 9)]]);
        }
        let last = before.iter().flatten().filter_map(|c| match c {
            DurableChange::Append { first, entries } => Some(first.0 + entries.len() as u64 - 1),
            _ => None,
        });
        let last = last.max().unwrap();
        let batch =
            vec![term_vote(2, Some(1)), append(last + 1, last + 2), snapshot_at(last), append(last + 3, last + 3)];
        write_batches(dir.path(), &before);
        let old_files = files(dir.path());
        write_batches(dir.path(), std::slice::from_ref(&batch));
        let new_files = files(dir.path());
        let old_names = if number == 2 { vec![segment_name(1)] } else { generation(2) };
        assert_eq!(old_files.keys().cloned().collect::<Vec<_>>(), old_names);
        assert_eq!(new_files.keys().cloned().collect::<Vec<_>>(), generation(number));
        let old = replayed(&before);
        let mut new = old.clone();
        batch.iter().for_each(|c| new.apply(c).unwrap());
        Rotation { number, old_files, new_files, old, new }
    }

    fn rotation() -> Rotation {
        rotation_to(3)
    }

    /// Opens a directory holding exactly `files`, checks the recovered state and the files left
    /// afterwards, and that the directory keeps working (an append, recovered again).
    fn recovers(what: &str, files_on_disk: &BTreeMap<String, Vec<u8>>, want: &Durable, left: &[String]) {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files_on_disk {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let (mut s, r) = Tracked::open(dir.path(), BIG);
        assert_eq!(&r.durable, want, "{what}");
        assert_eq!(names(dir.path()), left, "{what}: files left");
        let more = term_vote(want.current_term.0 + 1, None);
        s.append(std::slice::from_ref(&more)).unwrap();
        drop(s);
        let mut then = want.clone();
        then.apply(&more).unwrap();
        assert_eq!(Storage::open(dir.path(), ME, BIG).unwrap().1.durable, then, "{what}: then appended to");
    }

    /// The module doc's crash scenarios: the directory as a crash would leave it between each
    /// two operations of a rotation recovers to the old or the new state, never anything else.
    #[test]
    fn every_crash_point_of_a_rotation_recovers_the_old_or_the_new_state() {
        for r in [rotation_to(2), rotation_to(3)] {
            let n = r.number;
            let (snap, wal) = (snapshot_name(n), segment_name(n));
            let with = |base: &BTreeMap<String, Vec<u8>>, extra: &[(String, Vec<u8>)]| {
                let mut m = base.clone();
                m.extend(extra.iter().cloned());
                m
            };
            let new_snap = r.new_files[&snap].clone();
            let new_wal = r.new_files[&wal].clone();
            let old_names: Vec<String> = r.old_files.keys().cloned().collect();
            // 1. Writing the snapshot's temporary file.
            for cut in [0, SNAPSHOT_HEADER_LEN / 2, new_snap.len() / 2, new_snap.len()] {
                let state = with(&r.old_files, &[(format!("{snap}.tmp"), new_snap[..cut].to_vec())]);
                recovers(&format!("to {n}, 1. temp snapshot of {cut} bytes"), &state, &r.old, &old_names);
            }
            // 2. The snapshot renamed, no new segment.
            let renamed = with(&r.old_files, &[(snap.clone(), new_snap.clone())]);
            recovers(&format!("to {n}, 2. snapshot renamed"), &renamed, &r.old, &old_names);
            // 3. Writing the new segment's temporary file.
            for cut in [0, SEGMENT_HEADER_LEN, new_wal.len() / 2, new_wal.len()] {
                let state = with(&renamed, &[(format!("{wal}.tmp"), new_wal[..cut].to_vec())]);
                recovers(&format!("to {n}, 3. temp segment of {cut} bytes"), &state, &r.old, &old_names);
            }
            // 4. The new segment renamed: committed; the old files are left-overs.
            let committed = with(&renamed, &[(wal.clone(), new_wal.clone())]);
            recovers(&format!("to {n}, 4. segment renamed"), &committed, &r.new, &generation(n));
            // 5. Any part of the old generation deleted.
            for keep in old_names.iter().map(|name| vec![name.clone()]).chain([vec![]]) {
                let mut state = r.new_files.clone();
                for name in &keep {
                    state.insert(name.clone(), r.old_files[name].clone());
                }
                recovers(&format!("to {n}, 5. keeping {keep:?}"), &state, &r.new, &generation(n));
            }
            // 6. Done: the new files only.
            recovers(&format!("to {n}, 6. done"), &r.new_files, &r.new, &generation(n));
        }
    }

    fn open_err(files_on_disk: &BTreeMap<String, Vec<u8>>, limits: StorageLimits) -> (StorageError, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files_on_disk {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let err = Storage::open(dir.path(), ME, limits).expect_err("must refuse");
        assert_eq!(&files(dir.path()), files_on_disk, "nothing removed or cut after a refusal: {err}");
        (err, dir.path().to_path_buf())
    }

    #[test]
    fn a_damaged_snapshot_is_refused_naming_the_file() {
        let r = rotation();
        let name = snapshot_name(3);
        let good = r.new_files[&name].clone();
        let mut damaged = Vec::new();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            damaged.push((format!("flip at {at}"), bad));
        }
        damaged.push(("truncated".into(), good[..good.len() - 1].to_vec()));
        damaged.push(("short".into(), good[..10].to_vec()));
        let mut longer = good.clone();
        longer.push(0);
        damaged.push(("a byte added".into(), longer));
        for (what, bytes) in damaged {
            let mut state = r.new_files.clone();
            state.insert(name.clone(), bytes);
            let (err, dir) = open_err(&state, BIG);
            assert!(matches!(err, StorageError::BadSnapshot { .. } | StorageError::Foreign { .. }), "{what}: {err}");
            assert!(err.to_string().contains(&dir.join(&name).display().to_string()), "{what}: {err}");
        }
        // A snapshot over the configured limit is refused before it is read.
        let (err, _) = open_err(&r.new_files, StorageLimits { max_snapshot: 16, ..BIG });
        assert!(matches!(err, StorageError::BadSnapshot { .. }), "{err}");
        assert!(err.to_string().contains("over the snapshot limit of 16 bytes"), "{err}");
        // Another node's snapshot.
        let dir = tempfile::tempdir().unwrap();
        for (n, bytes) in &r.new_files {
            fs::write(dir.path().join(n), bytes).unwrap();
        }
        let other = Identity { cluster_id: 8, node: NodeId(1) };
        let err = Storage::open(dir.path(), other, BIG).unwrap_err();
        assert!(err.to_string().contains("belongs to n1 of cluster 7"), "{err}");
    }

    #[test]
    fn a_snapshot_over_the_limit_is_not_written_and_the_old_state_stays() {
        let dir = tempfile::tempdir().unwrap();
        let before = vec![term_vote(1, None), append(1, 5)];
        let tight = StorageLimits { max_snapshot: 8, ..BIG };
        {
            let (mut s, _) = Tracked::open(dir.path(), tight);
            s.append(&before).unwrap();
            let err = s.append(&[snapshot_at(5)]).unwrap_err();
            assert!(matches!(err, StorageError::SnapshotTooLarge { max: 8, .. }), "{err}");
            assert!(err.to_string().contains("--max-snapshot-bytes"), "{err}");
        }
        assert_eq!(names(dir.path()), vec![segment_name(1)]);
        let (_s, r) = Storage::open(dir.path(), ME, BIG).unwrap();
        assert_eq!(r.durable, replayed(&[before]));
    }

    #[test]
    fn files_that_do_not_form_a_generation_are_refused() {
        let r = rotation();
        let refused = |what: &str, state: BTreeMap<String, Vec<u8>>, says: &str| {
            let (err, _) = open_err(&state, BIG);
            assert!(matches!(err, StorageError::Inconsistent { .. }), "{what}: {err}");
            assert!(err.to_string().contains(says), "{what}: {err}");
        };
        let mut no_snapshot = r.new_files.clone();
        no_snapshot.remove(&snapshot_name(3));
        refused("a segment without its snapshot", no_snapshot, &format!("{} is missing", segment_name(1)));
        let mut gap = r.new_files.clone();
        gap.insert(segment_name(5), r.new_files[&segment_name(3)].clone());
        refused("a gap", gap, &format!("{} is missing", segment_name(4)));
        let mut stray = r.new_files.clone();
        stray.insert(snapshot_name(7), r.new_files[&snapshot_name(3)].clone());
        refused("a snapshot from nowhere", stray, &snapshot_name(7));
        let mut alone = BTreeMap::new();
        alone.insert(snapshot_name(3), r.new_files[&snapshot_name(3)].clone());
        refused("a snapshot and no log", alone, &snapshot_name(3));
    }

    #[test]
    fn a_torn_tail_after_a_rotation_is_cut() {
        let r = rotation();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &r.new_files {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        write_batches(dir.path(), &[vec![append(13, 14)]]);
        let wal = dir.path().join(segment_name(3));
        let whole = records_only(&wal);
        let intact = r.new_files[&segment_name(3)].len();
        fs::write(&wal, &whole[..(intact + whole.len()) / 2]).unwrap();
        let (_s, rec) = Storage::open(dir.path(), ME, BIG).unwrap();
        assert_eq!(rec.durable, r.new);
        assert_eq!(rec.torn.as_ref().map(|t| t.1), Some(intact as u64));
    }
}
