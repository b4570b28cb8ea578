//! The storage's unit tests: recovery of what was appended, torn tails, rotations cut at
//! every crash point, damaged and foreign files.

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
    let batch = vec![term_vote(2, Some(1)), append(last + 1, last + 2), snapshot_at(last), append(last + 3, last + 3)];
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
