//! Recovery: listing the directory, choosing the generation to recover, replaying its segments,
//! cutting a torn tail, removing what a crashed rotation left.

use super::*;

/// How one segment ended.
pub(super) enum SegmentEnd {
    /// Every record replayed; they end at `end` (zero bytes written ahead may follow).
    Clean { end: u64 },
    /// Damage that can only be a torn write, at this offset.
    Torn { offset: u64, reason: String },
}

/// Replays the records of one segment onto `durable`, stopping at damage: torn (returned) or
/// corrupt (an error).
pub(super) fn replay_segment(
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
pub(super) struct Listing {
    pub(super) segments: BTreeMap<u64, PathBuf>,
    pub(super) snapshots: BTreeMap<u64, PathBuf>,
}

/// Lists the segments and snapshots in `dir`, removing leftover temporary files (a crash
/// during [`write_file_atomically`]: the rename never happened) into `removed`.
pub(super) fn list_dir(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<Listing, StorageError> {
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
pub(super) struct Plan {
    /// The current generation's snapshot (`None`: generation 1, the empty state).
    pub(super) snapshot: Option<(u64, PathBuf)>,
    /// The current generation's segments, in order, numbered without gaps.
    pub(super) segments: Vec<(u64, PathBuf)>,
    /// Files of other generations: older ones, and a snapshot whose rotation never committed.
    pub(super) stale: Vec<PathBuf>,
}

/// Chooses the current generation (see the module doc, "Recovery", step 2).
pub(super) fn plan(dir: &Path, listing: Listing) -> Result<Plan, StorageError> {
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

pub(super) fn lock_dir(dir: &Path) -> Result<File, StorageError> {
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
pub(super) fn remove_files(dir: &Path, paths: &[PathBuf]) -> Result<(), StorageError> {
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
pub(super) fn replay(plan: &Plan, identity: Identity, limits: StorageLimits) -> Result<Recovered, StorageError> {
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

pub(super) fn cut_torn_tail(path: &Path, offset: u64) -> Result<(), StorageError> {
    let file =
        OpenOptions::new().write(true).open(path).map_err(io_err(|| format!("cannot open {}", path.display())))?;
    let what = || format!("cannot truncate {}", path.display());
    file.set_len(offset).map_err(io_err(what))?;
    file.sync_all().map_err(io_err(|| format!("cannot fsync {}", path.display())))
}
