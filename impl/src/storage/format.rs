//! The files' format: names, headers, the snapshot file, checksummed reads, atomic writes.

use super::*;

pub(super) fn segment_name(number: u64) -> String {
    format!("wal-{number:020}.log")
}

pub(super) fn snapshot_name(number: u64) -> String {
    format!("snap-{number:020}.snap")
}

/// The number in `<prefix><20 digits><suffix>`.
pub(super) fn numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn segment_number(name: &str) -> Option<u64> {
    numbered(name, "wal-", ".log")
}

pub(super) fn snapshot_number(name: &str) -> Option<u64> {
    numbered(name, "snap-", ".snap")
}

pub(super) fn segment_header(identity: Identity, number: u64) -> Vec<u8> {
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

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Checks the node and cluster ids found in a header.
pub(super) fn check_identity(
    path: &Path,
    node: NodeId,
    cluster_id: u64,
    identity: Identity,
) -> Result<(), StorageError> {
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

pub(super) fn check_segment_header(
    path: &Path,
    bytes: &[u8],
    identity: Identity,
    number: u64,
) -> Result<(), StorageError> {
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
pub(super) fn snapshot_file(
    identity: Identity,
    number: u64,
    snapshot: &Snapshot,
    max: usize,
) -> Result<Vec<u8>, StorageError> {
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
pub(super) fn load_snapshot(
    path: &Path,
    identity: Identity,
    number: u64,
    max: usize,
) -> Result<Snapshot, StorageError> {
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

pub(super) fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}
