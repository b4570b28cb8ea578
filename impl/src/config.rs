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
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("bad cluster member {part:?}: expected ID=HOST:PORT"))?;
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| format!("bad node id {id:?} in {part:?}: expected a positive number"))?;
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
/// AppendEntries and WAL record that will carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest client frame (request) a server accepts.
    pub max_request_bytes: usize,
    /// Entries per AppendEntries (the core's `Config::max_entries_per_append`).
    pub max_entries_per_append: usize,
    /// Messages queued per peer link before new ones are dropped (Raft tolerates loss).
    pub peer_queue: usize,
    /// Replies queued per client connection before new ones are dropped (the clerk retries).
    pub client_queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_request_bytes: 256 << 10, max_entries_per_append: 64, peer_queue: 1024, client_queue: 1024 }
    }
}

/// Per-entry encoding overhead bound beyond the client request itself (the entry's term).
const ENTRY_OVERHEAD: usize = 16;
/// Bound of an AppendEntries' fixed fields.
const APPEND_OVERHEAD: usize = 64;

impl Limits {
    /// The largest peer frame: a full AppendEntries of maximal requests.
    #[must_use]
    pub fn max_peer_frame(&self) -> usize {
        self.max_entries_per_append.max(1) * (self.max_request_bytes + ENTRY_OVERHEAD) + APPEND_OVERHEAD
    }

    /// The largest WAL record payload: one AppendEntries' worth of entries.
    #[must_use]
    pub fn max_record(&self) -> usize {
        self.max_peer_frame()
    }

    /// The largest client reply frame: a Get's value is at most what appends built up, which
    /// has no bound in the core; replies are therefore bounded generously.
    #[must_use]
    pub fn max_reply_frame(&self) -> usize {
        1 << 30
    }
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
}

impl ServerConfig {
    /// # Errors
    /// A one-line reason.
    pub fn validate(&self) -> Result<(), String> {
        if !self.members.contains_key(&self.id) {
            return Err(format!("--id {} is not in the cluster list {}", self.id.0, format_cluster(&self.members)));
        }
        self.timing.validate()?;
        if self.limits.max_entries_per_append == 0 || self.limits.max_request_bytes == 0 {
            return Err("size limits must be positive".into());
        }
        Ok(())
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
        assert!(l.max_peer_frame() > l.max_entries_per_append * l.max_request_bytes);
    }
}
