//! A whole cluster in one process, on loopback: what `kvraft local` runs, and what the
//! integration tests use to start, stop ("kill") and restart servers on fixed or ephemeral
//! ports with their own data directories.

use crate::clerk::ClerkConfig;
use crate::config::{ClusterMap, Limits, ServerConfig, Timing};
use crate::faults::Faults;
use crate::server::{self, ServerError, ServerHandle, Status};
use model::NodeId;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to lay out a local cluster.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    pub nodes: u32,
    pub cluster_id: u64,
    /// Data directories go to `DIR/node-N`; `None`: a temporary directory removed at the end.
    pub data: Option<PathBuf>,
    /// Client ports are `base_port + N`, peer ports `base_port + 100 + N`; 0: ephemeral ports.
    pub base_port: u16,
    pub host: IpAddr,
    pub timing: Timing,
    pub limits: Limits,
    /// Shared by every server of the cluster (and by the test driving it).
    pub faults: Faults,
}

impl Default for LocalOptions {
    fn default() -> LocalOptions {
        LocalOptions {
            nodes: 3,
            cluster_id: 1,
            data: None,
            base_port: 0,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            timing: Timing::default(),
            limits: Limits::default(),
            faults: Faults::default(),
        }
    }
}

/// A running local cluster. Dropping it stops every server.
pub struct LocalCluster {
    options: LocalOptions,
    peer_addrs: ClusterMap,
    client_addrs: ClusterMap,
    data_root: PathBuf,
    servers: BTreeMap<NodeId, ServerHandle>,
    _temp: Option<tempfile::TempDir>,
}

/// Binds `addr`, retrying while it is still in use (a server just stopped on it), up to 5 s.
fn bind_retry(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        }
    }
}

impl LocalCluster {
    /// Binds every server's ports, then starts them all.
    ///
    /// # Errors
    /// The first server that cannot start.
    pub fn start(options: LocalOptions) -> Result<LocalCluster, ServerError> {
        if options.nodes == 0 {
            return Err(ServerError::Config("a cluster needs at least one node".into()));
        }
        let (temp, data_root) = match &options.data {
            Some(dir) => (None, dir.clone()),
            None => {
                let t = tempfile::Builder::new().prefix("kvraft-local-").tempdir().map_err(ServerError::Io)?;
                let root = t.path().to_path_buf();
                (Some(t), root)
            }
        };
        let port = |offset: u32| -> Result<u16, ServerError> {
            if options.base_port == 0 {
                return Ok(0);
            }
            u16::try_from(u32::from(options.base_port) + offset).map_err(|_| {
                ServerError::Config(format!("--base-port {} leaves no room for the ports", options.base_port))
            })
        };
        let mut listeners = BTreeMap::new();
        let (mut peer_addrs, mut client_addrs) = (ClusterMap::new(), ClusterMap::new());
        for n in 1..=options.nodes {
            let id = NodeId(n);
            let peer = bind_retry(SocketAddr::new(options.host, port(100 + n)?))?;
            let client = bind_retry(SocketAddr::new(options.host, port(n)?))?;
            peer_addrs.insert(id, peer.local_addr().map_err(ServerError::Io)?);
            client_addrs.insert(id, client.local_addr().map_err(ServerError::Io)?);
            listeners.insert(id, (peer, client));
        }
        let mut cluster =
            LocalCluster { options, peer_addrs, client_addrs, data_root, servers: BTreeMap::new(), _temp: temp };
        for (id, (peer, client)) in listeners {
            let handle = server::start_with_listeners(cluster.server_config(id), peer, client)?;
            cluster.servers.insert(id, handle);
        }
        Ok(cluster)
    }

    /// The configuration server `id` runs with.
    #[must_use]
    pub fn server_config(&self, id: NodeId) -> ServerConfig {
        ServerConfig {
            id,
            cluster_id: self.options.cluster_id,
            members: self.peer_addrs.clone(),
            client_addr: self.client_addrs[&id],
            data_dir: self.data_dir(id),
            timing: self.options.timing,
            limits: self.options.limits,
            faults: self.options.faults.clone(),
        }
    }

    #[must_use]
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.data_root.join(format!("node-{}", id.0))
    }

    #[must_use]
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    #[must_use]
    pub fn cluster_id(&self) -> u64 {
        self.options.cluster_id
    }

    #[must_use]
    pub fn peer_addrs(&self) -> &ClusterMap {
        &self.peer_addrs
    }

    #[must_use]
    pub fn client_addrs(&self) -> &ClusterMap {
        &self.client_addrs
    }

    /// A clerk configuration for this cluster (no deadline, 1 s retry).
    #[must_use]
    pub fn clerk_config(&self) -> ClerkConfig {
        ClerkConfig::new(self.options.cluster_id, self.client_addrs.clone())
    }

    /// The ids of the running servers.
    #[must_use]
    pub fn running(&self) -> Vec<NodeId> {
        self.servers.keys().copied().collect()
    }

    #[must_use]
    pub fn server(&self, id: NodeId) -> Option<&ServerHandle> {
        self.servers.get(&id)
    }

    /// Status of every running server.
    #[must_use]
    pub fn statuses(&self) -> BTreeMap<NodeId, Status> {
        self.servers.iter().map(|(&id, h)| (id, h.status())).collect()
    }

    /// The running server that reports being leader in the highest term, if any.
    #[must_use]
    pub fn leader(&self) -> Option<NodeId> {
        self.statuses().into_iter().filter(|(_, s)| s.role == "leader").max_by_key(|(_, s)| s.term).map(|(id, _)| id)
    }

    /// Waits up to `timeout` for a leader.
    #[must_use]
    pub fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops server `id` (its data directory stays).
    ///
    /// # Errors
    /// The fatal error that had already stopped it, if any.
    pub fn stop_server(&mut self, id: NodeId) -> Result<(), ServerError> {
        match self.servers.remove(&id) {
            Some(h) => h.stop(),
            None => Ok(()),
        }
    }

    /// Starts server `id` again on its ports and data directory.
    ///
    /// # Errors
    /// When it cannot start (for example, its log is corrupt).
    pub fn restart_server(&mut self, id: NodeId) -> Result<(), ServerError> {
        self.stop_server(id)?;
        let config = self.server_config(id);
        let peer = bind_retry(config.peer_addr())?;
        let client = bind_retry(config.client_addr)?;
        let handle = server::start_with_listeners(config, peer, client)?;
        self.servers.insert(id, handle);
        Ok(())
    }

    /// Stops every server, returning the errors of those that had died.
    pub fn stop_all(&mut self) -> Vec<(NodeId, ServerError)> {
        let servers = std::mem::take(&mut self.servers);
        servers.into_iter().filter_map(|(id, h)| h.stop().err().map(|e| (id, e))).collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (id, e) in self.stop_all() {
            tracing::error!(node = %id, error = %e, "server had stopped");
        }
    }
}
