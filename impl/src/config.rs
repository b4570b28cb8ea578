//! Configuration of servers and clients: cluster maps (`1=127.0.0.1:7001,2=...`), timer
//! settings and size limits, with the parsers the CLI uses.

use model::NodeId;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Node id → address (peer addresses for servers, client addresses for clerks).
pub type ClusterMap = BTreeMap<NodeId, SocketAddr>;

/// Parses `1=127.0.0.1:7001,2=localhost:7002,...` (host names are resolved once, here).
///
/// # Errors
/// A one-line reason.
pub fn parse_cluster(s: &str) -> Result<ClusterMap, String> {
    let mut map = ClusterMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('=').ok_or_else(|| format!("bad cluster member {part:?}: expected ID=HOST:PORT"))?;
        let id: u32 =
            id.trim().parse().map_err(|_| format!("bad node id {id:?} in {part:?}: expected a positive number"))?;
        if id == 0 {
            return Err(format!("bad node id 0 in {part:?}: ids start at 1"));
        }
        let addr = addr
            .trim()
            .to_socket_addrs()
            .map_err(|e| format!("bad address in {part:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("address in {part:?} resolves to nothing"))?;
        if map.insert(NodeId(id), addr).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if map.is_empty() {
        return Err("the cluster list is empty".into());
    }
    Ok(map)
}

/// Formats a cluster map the way [`parse_cluster`] reads it.
#[must_use]
pub fn format_cluster(map: &ClusterMap) -> String {
    map.iter().map(|(id, addr)| format!("{}={addr}", id.0)).collect::<Vec<_>>().join(",")
}

/// Parses `250ms`, `1.5s`, `2m` or a bare number of milliseconds.
///
/// # Errors
/// A one-line reason.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("bad duration {s:?}: expected e.g. 300ms, 2s, 1m"))?;
    let secs = match unit.trim() {
        "" | "ms" => value / 1000.0,
        "us" => value / 1e6,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("bad duration unit {other:?} in {s:?}: use us, ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a range of durations, `300ms..600ms` (or `300..600`, in milliseconds).
///
/// # Errors
/// A one-line reason.
pub fn parse_duration_range(s: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = s.split_once("..").ok_or_else(|| format!("bad range {s:?}: expected e.g. 300ms..600ms"))?;
    let (lo, hi) = (parse_duration(lo)?, parse_duration(hi.trim_start_matches('='))?);
    if lo > hi || lo.is_zero() {
        return Err(format!("bad range {s:?}: need 0 < low <= high"));
    }
    Ok((lo, hi))
}

/// A server's timers. The election timeout is drawn uniformly from its range each time the
/// core (re)arms it (Raft §5.2's randomized timeouts); the heartbeat is fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub election_min: Duration,
    pub election_max: Duration,
    /// Must be well under `election_min`, or followers time out between heartbeats.
    pub heartbeat: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            heartbeat: Duration::from_millis(50),
        }
    }
}

impl Timing {
    /// # Errors
    /// When the heartbeat is not below the election timeout, or the range is empty.
    pub fn validate(&self) -> Result<(), String> {
        if self.election_min.is_zero() || self.election_min > self.election_max {
            return Err("the election timeout range must be non-empty and positive".into());
        }
        if self.heartbeat.is_zero() || self.heartbeat * 2 > self.election_min {
            return Err(format!(
                "heartbeat {:?} must be positive and at most half the minimum election timeout {:?}",
                self.heartbeat, self.election_min
            ));
        }
        Ok(())
    }
}

/// Size limits. Derived limits make sure that whatever a client may send also fits in every
/// AppendEntries and WAL record that will carry it, and that every snapshot a server keeps also
/// fits in the InstallSnapshot frame that carries it to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest client frame (request) a server accepts.
    pub max_request_bytes: usize,
    /// Entries per AppendEntries (the core's `Config::max_entries_per_append`).
    pub max_entries_per_append: usize,
    /// Bytes kept per peer link for a peer that does not take them at once, before new
    /// messages are dropped (Raft tolerates loss). One larger message is still sent when
    /// nothing is waiting before it.
    pub peer_pending_bytes: usize,
    /// The same per client connection, for replies (the clerk retries).
    pub client_pending_bytes: usize,
    /// Snapshot once the persisted Raft state (`model::Durable::raft_state_size`: term, vote
    /// and the retained log) reaches this many bytes; `None`: never (the log grows without
    /// bound). The core's `Config::max_raft_state`.
    pub max_raft_state: Option<u64>,
    /// The largest snapshot (its encoded key/value map and session table) a server writes,
    /// reads back, and sends or accepts in one InstallSnapshot frame. A snapshot is as large
    /// as the key/value data, which nothing else bounds: a server whose snapshot outgrows this
    /// stops with an error saying so (its data directory keeps the previous state), and is
    /// restarted with a larger limit.
    pub max_snapshot_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_bytes: 256 << 10,
            max_entries_per_append: 64,
            peer_pending_bytes: 16 << 20,
            client_pending_bytes: 1 << 20,
            max_raft_state: None,
            max_snapshot_bytes: 1 << 30,
        }
    }
}

/// Per-entry encoding overhead bound beyond the client request itself (the entry's term).
const ENTRY_OVERHEAD: usize = 16;
/// Bound of an AppendEntries' fixed fields (also of an InstallSnapshot's, beyond the snapshot).
const APPEND_OVERHEAD: usize = 64;
/// The largest `max_snapshot_bytes` accepted: a frame's length is a `u32`, and a snapshot is
/// built, encoded and sent as one value in memory.
pub const MAX_SNAPSHOT_BYTES_CAP: usize = 1 << 31;

impl Limits {
    /// The largest AppendEntries frame: `max_entries_per_append` maximal requests.
    #[must_use]
    pub fn max_append_frame(&self) -> usize {
        self.max_entries_per_append.max(1) * (self.max_request_bytes + ENTRY_OVERHEAD) + APPEND_OVERHEAD
    }

    /// The largest peer frame: a full AppendEntries, or an InstallSnapshot carrying a snapshot
    /// of `max_snapshot_bytes`.
    #[must_use]
    pub fn max_peer_frame(&self) -> usize {
        self.max_append_frame().max(self.max_snapshot_bytes + APPEND_OVERHEAD)
    }

    /// The largest WAL record payload: one AppendEntries' worth of entries. (Snapshots are not
    /// WAL records; they have their own files, bounded by `max_snapshot_bytes`.)
    #[must_use]
    pub fn max_record(&self) -> usize {
        self.max_append_frame()
    }

    /// What the storage needs to know of these limits.
    #[must_use]
    pub fn storage(&self) -> StorageLimits {
        StorageLimits { max_record: self.max_record(), max_snapshot: self.max_snapshot_bytes }
    }

    /// The largest client reply frame: a Get's value is at most what appends built up, which
    /// has no bound in the core; replies are therefore bounded generously.
    #[must_use]
    pub fn max_reply_frame(&self) -> usize {
        1 << 30
    }

    /// # Errors
    /// A one-line reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_entries_per_append == 0 || self.max_request_bytes == 0 {
            return Err("size limits must be positive".into());
        }
        if self.max_raft_state == Some(0) {
            return Err(MAX_RAFT_STATE_ZERO.into());
        }
        if self.max_snapshot_bytes == 0 || self.max_snapshot_bytes > MAX_SNAPSHOT_BYTES_CAP {
            return Err(format!(
                "the snapshot limit must be between 1 byte and {MAX_SNAPSHOT_BYTES_CAP} bytes, not {}",
                self.max_snapshot_bytes
            ));
        }
        Ok(())
    }
}

/// Size limits of a data directory (see `storage/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageLimits {
    /// The largest WAL record payload written (larger appends are split).
    pub max_record: usize,
    /// The largest snapshot payload written or read.
    pub max_snapshot: usize,
}

const MAX_RAFT_STATE_ZERO: &str = "--max-raft-state must be at least 1 byte (leave it out to never snapshot)";

/// Parses a byte count: `1000`, `64KiB`, `4MiB`, `1GiB` (also `k`, `M`, `G`, all powers of
/// 1024).
///
/// # Errors
/// A one-line reason.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("bad size {s:?}: expected e.g. 1000, 64KiB, 4MiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "k" | "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => return Err(format!("bad size unit {other:?} in {s:?}: use KiB, MiB or GiB")),
    };
    value.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses `--max-raft-state`: a positive byte count (0 is refused with the reason).
///
/// # Errors
/// A one-line reason.
pub fn parse_max_raft_state(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err(MAX_RAFT_STATE_ZERO.into()),
        n => Ok(n),
    }
}

/// Parses a positive byte count that must fit in memory (`usize`).
///
/// # Errors
/// A one-line reason.
pub fn parse_bytes_usize(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    usize::try_from(n).map_err(|_| format!("size {s:?} is too large for this machine"))
}

/// Everything a server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: NodeId,
    pub cluster_id: u64,
    /// Every member's peer address, this server's included.
    pub members: ClusterMap,
    /// Where clerks connect.
    pub client_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub timing: Timing,
    pub limits: Limits,
    /// Injected network faults (tests); the default injects none and costs nothing.
    pub faults: crate::faults::Faults,
}

impl ServerConfig {
    /// # Errors
    /// A one-line reason.
    pub fn validate(&self) -> Result<(), String> {
        if !self.members.contains_key(&self.id) {
            return Err(format!("--id {} is not in the cluster list {}", self.id.0, format_cluster(&self.members)));
        }
        self.timing.validate()?;
        self.limits.validate()
    }

    /// This server's peer address.
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.members[&self.id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_lists_parse_and_print() {
        let map = parse_cluster("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=127.0.0.1:7003").unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(format_cluster(&map), "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003");
        assert!(parse_cluster("1=127.0.0.1:7001,1=127.0.0.1:7002").is_err());
        assert!(parse_cluster("x=127.0.0.1:1").is_err());
        assert!(parse_cluster("0=127.0.0.1:1").is_err());
        assert!(parse_cluster("").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("40").unwrap(), Duration::from_millis(40));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert_eq!(
            parse_duration_range("300ms..600ms").unwrap(),
            (Duration::from_millis(300), Duration::from_millis(600))
        );
        assert!(parse_duration_range("600..300").is_err());
    }

    #[test]
    fn the_defaults_are_consistent() {
        Timing::default().validate().unwrap();
        let l = Limits::default();
        l.validate().unwrap();
        assert!(l.max_peer_frame() > l.max_entries_per_append * l.max_request_bytes);
        assert!(l.max_peer_frame() > l.max_snapshot_bytes, "an InstallSnapshot of the largest snapshot fits a frame");
        assert_eq!(l.max_raft_state, None, "by default a server never snapshots");
    }

    #[test]
    fn sizes_parse_and_zero_raft_state_is_refused() {
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("4M").unwrap(), 4 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
        assert_eq!(parse_max_raft_state("1000").unwrap(), 1000);
        let err = parse_max_raft_state("0").unwrap_err();
        assert!(err.contains("at least 1 byte") && err.contains("never snapshot"), "{err}");
        let zero = Limits { max_raft_state: Some(0), ..Limits::default() };
        assert!(zero.validate().unwrap_err().contains("--max-raft-state"));
        let huge = Limits { max_snapshot_bytes: MAX_SNAPSHOT_BYTES_CAP + 1, ..Limits::default() };
        assert!(huge.validate().is_err());
    }
}
