//! A server's durable storage: one data directory holding a lock file and a write-ahead log
//! (WAL) of [`model::DurableChange`]s.
//!
//! # Layout of a data directory
//! - `LOCK`: held with an exclusive `flock` (std's `File::try_lock`) for as long as a server
//!   uses the directory, so a second server on the same directory fails at start-up. The kernel
//!   drops the lock when the process dies, so a crash never leaves a stale lock behind (which an
//!   `O_EXCL` pid file would). The file holds the owner's pid, for people.
//! - `wal-<segment number, 20 digits>.log`: WAL segments, replayed in number order. Each starts
//!   with a 36-byte header (magic, format version, node id, cluster id, segment number, CRC32),
//!   written under a temporary name, fsynced and renamed into place, so a segment header is
//!   never torn; a data directory of another node or cluster is refused.
//! - Records follow the header: `len: u32 LE | payload_crc: u32 LE | header_crc: u32 LE |
//!   payload`, where the payload is one postcard-encoded `DurableChange`, `payload_crc` is the
//!   CRC32 of the payload and `header_crc` the CRC32 of the first 8 header bytes (so a damaged
//!   length is recognised as damage, never trusted to skip or cut data).
//!
//! # Recovery
//! Replaying the records with [`model::Durable::apply`] onto `Durable::default()` gives the
//! state to restore: that function is the one definition of replay. A damaged record is a *torn
//! tail* (a crash in the middle of a write that was therefore never acknowledged) only when it
//! is in the last segment and either runs past the end of the file, or everything after it is
//! zero bytes (file systems may expose a zero-filled, never-written tail). The file is then
//! truncated at that record and the truncation fsynced. Any other damage (a bad checksum with
//! data after it, a record that does not decode, a change that does not fit the replayed state)
//! stops the server with an error naming the file and the offset: acknowledged writes are never
//! dropped silently.
//!
//! # Writing
//! [`Storage::append`] writes all the changes of a batch with one `write` and one `fdatasync`
//! (group commit). Any IO error is fatal to the server: the state of the file after a failed
//! write or fsync is unknown, and restart recovers from what is on disk.
//!
//! # What slots in later (log compaction)
//! Snapshots are not in the core yet. When they are: the snapshot goes to its own file written
//! with [`write_file_atomically`] (temp name, fsync, rename, fsync directory) and naming the
//! first WAL segment not covered by it; [`Storage::append`]'s caller starts a new segment
//! (`create_segment` with the next number) when it installs a snapshot, and segments wholly
//! covered by the snapshot are deleted. Recovery then replays the snapshot and the segments
//! after it; segment numbering and the "torn tail only in the last segment" rule already allow
//! for several segments.

use model::{Durable, DurableChange, NodeId};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bumped whenever the record format or the payload encoding changes.
pub const WAL_FORMAT_VERSION: u32 = 1;
const SEGMENT_MAGIC: [u8; 8] = *b"kvrftwal";
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 36;
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 12;
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
    Locked { dir: PathBuf },
    /// A record is damaged somewhere other than a torn tail, or does not replay.
    Corrupt { file: PathBuf, offset: u64, reason: String },
    /// A file that is not this server's WAL (another node's, another cluster's, another format).
    Foreign { file: PathBuf, reason: String },
    /// A change too large for one record even when split (cannot happen with the frame limits).
    TooLarge { bytes: usize, max: usize },
    Io { what: String, source: io::Error },
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
            StorageError::Foreign { file, reason } => write!(f, "{}: {reason}", file.display()),
            StorageError::TooLarge { bytes, max } => {
                write!(f, "a durable change of {bytes} bytes exceeds the record limit of {max} bytes")
            }
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
    /// Records replayed.
    pub records: u64,
    /// A torn tail that was cut off: the file, the offset it was cut at, the bytes removed.
    pub torn: Option<(PathBuf, u64, u64)>,
}

struct Segment {
    path: PathBuf,
    file: File,
}

/// An open data directory: the lock, and the WAL segment being appended to.
pub struct Storage {
    dir: PathBuf,
    _lock: File,
    segment: Segment,
    max_record: usize,
    buf: Vec<u8>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage").field("dir", &self.dir).field("segment", &self.segment.path).finish()
    }
}

fn segment_name(number: u64) -> String {
    format!("wal-{number:020}.log")
}

fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
        return Err(foreign(format!(
            "format version {version}, but this build reads version {WAL_FORMAT_VERSION}"
        )));
    }
    let (node, cluster_id, found) = (NodeId(u32_at(bytes, 12)), u64_at(bytes, 16), u64_at(bytes, 24));
    if node != identity.node || cluster_id != identity.cluster_id {
        return Err(foreign(format!(
            "this data belongs to {node} of cluster {cluster_id}, not {} of cluster {}",
            identity.node, identity.cluster_id
        )));
    }
    if found != number {
        return Err(foreign(format!("header says segment {found}, the file name says {number}")));
    }
    Ok(())
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

/// Makes a directory's entries (created, renamed files) durable.
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
    Clean,
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
        let change: DurableChange = postcard::from_bytes(payload)
            .map_err(|e| corrupt(at, format!("record does not decode ({e})")))?;
        durable
            .apply(&change)
            .map_err(|e| corrupt(at, format!("record does not replay: {e}")))?;
        *records += 1;
        at = end;
    }
    Ok(SegmentEnd::Clean)
}

/// The segments in `dir`, by number; leftover temporary files are removed.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_err(|| format!("cannot list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(|| format!("cannot list {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            // A crash during write_file_atomically: the rename never happened.
            fs::remove_file(entry.path()).map_err(io_err(|| format!("cannot remove {name}")))?;
        } else if let Some(number) = segment_number(name) {
            segments.push((number, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
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

impl Storage {
    /// Opens (creating if needed) the data directory `dir` of server `identity`, locks it, and
    /// recovers the durable state. `max_record` bounds the payload of each record written.
    ///
    /// # Errors
    /// See [`StorageError`]; every one means the server must not start.
    pub fn open(dir: &Path, identity: Identity, max_record: usize) -> Result<(Storage, Recovered), StorageError> {
        let existed = dir.exists();
        fs::create_dir_all(dir).map_err(io_err(|| format!("cannot create {}", dir.display())))?;
        if !existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(io_err(|| format!("cannot sync {}", parent.display())))?;
            }
        }
        let lock = lock_dir(dir)?;
        let segments = list_segments(dir)?;
        let mut durable = Durable::default();
        let mut records = 0;
        let mut torn = None;
        for (k, (number, path)) in segments.iter().enumerate() {
            let bytes = fs::read(path).map_err(io_err(|| format!("cannot read {}", path.display())))?;
            check_segment_header(path, &bytes, identity, *number)?;
            match replay_segment(path, &bytes, &mut durable, &mut records)? {
                SegmentEnd::Clean => {}
                SegmentEnd::Torn { offset, reason } if k + 1 == segments.len() => {
                    cut_torn_tail(path, offset)?;
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
        let segment = match segments.last() {
            Some((_, path)) => Segment::open(path)?,
            None => Segment::create(dir, identity, 1)?,
        };
        let storage = Storage { dir: dir.to_path_buf(), _lock: lock, segment, max_record, buf: Vec::new() };
        Ok((storage, Recovered { durable, records, torn }))
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

    /// Makes `changes` durable, in order: one write, one `fdatasync`. Does nothing for none.
    ///
    /// # Errors
    /// Any failure; the server must stop (the file's state after a failed write is unknown).
    pub fn append(&mut self, changes: &[DurableChange]) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let encoded = changes.iter().try_for_each(|c| self.encode(c, &mut buf));
        let result = encoded.and_then(|()| {
            let what = || format!("cannot write {}", self.segment.path.display());
            self.segment.file.write_all(&buf).map_err(io_err(what))?;
            let what = || format!("cannot fsync {}", self.segment.path.display());
            self.segment.file.sync_data().map_err(io_err(what))
        });
        self.buf = buf;
        result
    }

    /// Encodes one change as one record, or as several when an append is too large for one
    /// (replaying consecutive appends is the same as replaying their concatenation).
    fn encode(&self, change: &DurableChange, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        let payload = postcard::to_stdvec(change).map_err(|e| StorageError::Io {
            what: "cannot encode a durable change".into(),
            source: io::Error::other(e.to_string()),
        })?;
        if payload.len() > self.max_record {
            if let DurableChange::Append { first, entries } = change {
                if entries.len() > 1 {
                    let mut head = entries.clone();
                    let tail = head.split_off(entries.len() / 2);
                    let second = model::LogIndex(first.0 + head.len() as u64);
                    self.encode(&DurableChange::Append { first: *first, entries: head }, buf)?;
                    return self.encode(&DurableChange::Append { first: second, entries: tail }, buf);
                }
            }
            return Err(StorageError::TooLarge { bytes: payload.len(), max: self.max_record });
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
    let file = OpenOptions::new().write(true).open(path).map_err(io_err(|| format!("cannot open {}", path.display())))?;
    let what = || format!("cannot truncate {}", path.display());
    file.set_len(offset).map_err(io_err(what))?;
    file.sync_all().map_err(io_err(|| format!("cannot fsync {}", path.display())))
}

impl Segment {
    fn open(path: &Path) -> Result<Segment, StorageError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(|| format!("cannot open {}", path.display())))?;
        Ok(Segment { path: path.to_path_buf(), file })
    }

    /// Creates segment `number` with its header, atomically.
    fn create(dir: &Path, identity: Identity, number: u64) -> Result<Segment, StorageError> {
        let name = segment_name(number);
        write_file_atomically(dir, &name, &segment_header(identity, number))
            .map_err(io_err(|| format!("cannot create {}", dir.join(&name).display())))?;
        Segment::open(&dir.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ClientId, Command, Entry, LogIndex, Op, Seq, Term};

    const ME: Identity = Identity { cluster_id: 7, node: NodeId(1) };

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
            let (mut s, r) = Storage::open(dir.path(), ME, 1 << 20).unwrap();
            assert_eq!(r.durable, Durable::default());
            s.append(&changes()[..2]).unwrap();
            s.append(&changes()[2..]).unwrap();
        }
        let (_s, r) = Storage::open(dir.path(), ME, 1 << 20).unwrap();
        assert_eq!(r.durable, expected());
        assert_eq!(r.records, 4);
        assert_eq!(r.torn, None);
    }

    #[test]
    fn a_large_append_is_split_into_records() {
        let dir = tempfile::tempdir().unwrap();
        let big = DurableChange::Append { first: LogIndex(1), entries: (1..=40).map(|s| entry(1, s)).collect() };
        {
            let (mut s, _) = Storage::open(dir.path(), ME, 200).unwrap();
            s.append(std::slice::from_ref(&big)).unwrap();
        }
        let (_s, r) = Storage::open(dir.path(), ME, 200).unwrap();
        let mut want = Durable::default();
        want.apply(&big).unwrap();
        assert_eq!(r.durable, want);
        assert!(r.records > 1);
    }

    #[test]
    fn a_second_opener_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, _) = Storage::open(dir.path(), ME, 1 << 20).unwrap();
        let err = Storage::open(dir.path(), ME, 1 << 20).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    }

    #[test]
    fn another_nodes_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Storage::open(dir.path(), ME, 1 << 20).unwrap());
        let other = Identity { cluster_id: 7, node: NodeId(2) };
        let err = Storage::open(dir.path(), other, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("belongs to n1 of cluster 7"), "{err}");
    }

    fn segment_path(dir: &Path) -> PathBuf {
        dir.join(segment_name(1))
    }

    #[test]
    fn torn_tails_are_cut_and_damage_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Storage::open(dir.path(), ME, 1 << 20).unwrap();
            s.append(&changes()).unwrap();
        }
        let path = segment_path(dir.path());
        let whole = fs::read(&path).unwrap();
        // Every cut inside the last record, and zeros appended after a full log, are torn tails.
        let last_start = whole.len() - (RECORD_HEADER_LEN + postcard::to_stdvec(&changes()[3]).unwrap().len());
        for cut in last_start..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let (_s, r) = Storage::open(dir.path(), ME, 1 << 20).unwrap();
            let mut want = Durable::default();
            changes()[..3].iter().for_each(|c| want.apply(c).unwrap());
            assert_eq!(r.durable, want, "cut at {cut}");
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
        }
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 100]);
        fs::write(&path, &zeros).unwrap();
        assert_eq!(Storage::open(dir.path(), ME, 1 << 20).unwrap().1.durable, expected());
        // A flipped byte anywhere before the last record is refused, naming file and offset.
        for at in SEGMENT_HEADER_LEN..last_start {
            let mut bad = whole.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            let err = Storage::open(dir.path(), ME, 1 << 20).unwrap_err();
            let StorageError::Corrupt { file, offset, .. } = &err else { panic!("flip at {at}: {err}") };
            assert_eq!(file, &path);
            assert!(*offset <= at as u64, "flip at {at}: {err}");
            assert!(err.to_string().contains(&path.display().to_string()));
        }
    }
}
