//! A running server: the event loop that owns the core's [`model::Server`], and the
//! [`ServerHandle`] that starts and stops it with its transport threads.
//!
//! The loop itself, and the order in which it carries out the core's outputs, are in
//! `event_loop.rs`.

use crate::client_port::{self, ClientLimits};
use crate::config::ServerConfig;
use crate::event::Event;
use crate::frame::Expect;
use crate::inbound::Inbox;
use crate::peer::{self, PeerLink};
use crate::storage::{Identity, Storage, StorageError};
use crate::tracker::{self, lock, Tracker};
use model::NodeId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

mod event_loop;

use event_loop::{Batch, EventLoop, Timers};

/// Events taken in one turn of the loop at most (bounds the latency a batch adds).
pub const MAX_BATCH: usize = 4096;
/// Capacity of the loop's channel (sockets handed over, delayed frames, stop).
const EVENT_QUEUE: usize = 8192;
/// The poll token of the loop's waker (connections count up from 1).
const WAKER: mio::Token = mio::Token(0);
/// How long `stop` waits for the transport threads.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a server could not start, or why it stopped.
#[derive(Debug)]
pub enum ServerError {
    Config(String),
    Storage(StorageError),
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Io(std::io::Error),
    /// The event loop panicked (a broken invariant in the core, or a bug here).
    Panicked(String),
    /// A test cut this server's power ([`crate::Faults::cut_power`]): the loop stopped before
    /// writing, sending or replying anything of its last batch.
    PowerCut,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(e) => write!(f, "bad configuration: {e}"),
            ServerError::Storage(e) => write!(f, "{e}"),
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Io(e) => write!(f, "{e}"),
            ServerError::Panicked(why) => write!(f, "the event loop panicked: {why}"),
            ServerError::PowerCut => f.write_str("power cut (test fault): the last batch was neither written nor sent"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<StorageError> for ServerError {
    fn from(e: StorageError) -> ServerError {
        ServerError::Storage(e)
    }
}

/// What a server last reported about itself (updated after every batch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub last_applied: u64,
    pub last_log_index: u64,
    /// The last index the server's snapshot covers (0: none).
    pub snapshot_index: u64,
    /// Snapshots this server took, and installed from a leader, since it started.
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    /// Size of the persisted term, vote and log as the core measures it for `max_raft_state`
    /// (the lab's `RaftStateSize`).
    pub raft_state_bytes: u64,
    /// Encoded size of the server's snapshot (the lab's `SnapshotSize`; 0: none).
    pub snapshot_bytes: u64,
}

/// A running server. Dropping it stops it.
pub struct ServerHandle {
    id: NodeId,
    peer_addr: SocketAddr,
    client_addr: SocketAddr,
    tracker: Tracker,
    events: Inbox,
    status: Arc<Mutex<Status>>,
    event_loop: Option<JoinHandle<Result<(), ServerError>>>,
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })
}

/// Starts a server listening on the addresses of its configuration.
///
/// # Errors
/// See [`ServerError`]: bad configuration, storage that cannot be opened or recovered, an
/// address in use.
pub fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let peer = bind(config.peer_addr())?;
    let client = bind(config.client_addr)?;
    start_with_listeners(config, peer, client)
}

/// Starts a server on listeners bound beforehand (so that a whole cluster on ephemeral ports
/// can be configured before any of its servers starts). The configuration's own addresses are
/// used only to name this server to its peers.
///
/// # Errors
/// See [`start`].
pub fn start_with_listeners(
    config: ServerConfig,
    peer_listener: TcpListener,
    client_listener: TcpListener,
) -> Result<ServerHandle, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let (id, limits) = (config.id, config.limits);
    let identity = Identity { cluster_id: config.cluster_id, node: id };
    let (storage, durable) = recover(&config, identity)?;
    #[cfg(debug_assertions)]
    let on_disk = durable.clone();
    let members: Vec<NodeId> = config.members.keys().copied().collect();
    let mut core_config = model::Config::new(id, &members);
    core_config.max_entries_per_append = limits.max_entries_per_append;
    core_config.max_raft_state = limits.max_raft_state;
    let (server, restored) = model::Server::restore(core_config, durable);

    let tracker = Tracker::new();
    let poll = mio::Poll::new().map_err(ServerError::Io)?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER).map_err(ServerError::Io)?);
    let (tx, inbox) = mpsc::sync_channel(EVENT_QUEUE);
    let events = Inbox::new(tx, waker);
    let peers = connect_peers(&config, &tracker)?;
    let peer_addr = peer_listener.local_addr().map_err(ServerError::Io)?;
    let client_addr = client_listener.local_addr().map_err(ServerError::Io)?;
    spawn_acceptors(&config, &tracker, &events, peer_listener, client_listener)?;

    let status = Arc::new(Mutex::new(Status::default()));
    let node = EventLoop {
        server,
        storage,
        peers,
        conns: HashMap::new(),
        routes: HashMap::new(),
        timers: Timers::new(config.timing),
        inbox,
        sender: events.clone(),
        poll,
        inbound: HashMap::new(),
        ready: Vec::new(),
        next_token: 1,
        max_peer_frame: limits.max_peer_frame(),
        max_request: limits.max_request_bytes,
        read_buf: vec![0; 64 << 10],
        status: Arc::clone(&status),
        batch: Batch::default(),
        snapshots_taken: 0,
        snapshots_installed: 0,
        faults: config.faults.clone(),
        #[cfg(debug_assertions)]
        on_disk,
    };
    let t = tracker.clone();
    let event_loop = std::thread::Builder::new()
        .name(format!("{id}-loop"))
        .spawn(move || {
            let span = tracing::info_span!("node", id = %id);
            let _entered = span.enter();
            let result = node.run(restored);
            if let Err(e) = &result {
                tracing::error!(error = %e, "server stopped");
            }
            t.stop(); // close every connection, so clerks move on at once
            result
        })
        .map_err(ServerError::Io)?;
    tracing::info!(node = %id, peer = %peer_addr, client = %client_addr, "server started");
    Ok(ServerHandle { id, peer_addr, client_addr, tracker, events, status, event_loop: Some(event_loop) })
}

/// Opens the data directory and recovers the durable state from its snapshot and log.
fn recover(config: &ServerConfig, identity: Identity) -> Result<(Storage, model::Durable), ServerError> {
    let (storage, recovered) = Storage::open(&config.data_dir, identity, config.limits.storage())?;
    let durable = recovered.durable;
    tracing::info!(
        node = %config.id,
        records = recovered.records,
        term = %durable.current_term,
        snapshot_index = %durable.snapshot.last_index,
        last_index = %durable.log.last_index(),
        dir = %config.data_dir.display(),
        "recovered from the snapshot and the write-ahead log"
    );
    Ok((storage, durable))
}

/// One outgoing link per other member.
fn connect_peers(config: &ServerConfig, tracker: &Tracker) -> Result<BTreeMap<NodeId, PeerLink>, ServerError> {
    let (id, limits) = (config.id, config.limits);
    let mut peers = BTreeMap::new();
    for (&peer, &addr) in config.members.iter().filter(|(&p, _)| p != id) {
        let link = PeerLink::spawn(
            tracker,
            id,
            peer,
            addr,
            config.cluster_id,
            limits.peer_pending_bytes,
            limits.max_peer_frame(),
        )
        .map_err(ServerError::Io)?;
        peers.insert(peer, link);
    }
    Ok(peers)
}

fn spawn_acceptors(
    config: &ServerConfig,
    tracker: &Tracker,
    events: &Inbox,
    peer_listener: TcpListener,
    client_listener: TcpListener,
) -> Result<(), ServerError> {
    let id = config.id;
    let peer_expect = Expect {
        cluster_id: config.cluster_id,
        node: id,
        peers: Some(config.members.keys().copied().filter(|&p| p != id).collect()),
    };
    let (t, ev) = (tracker.clone(), events.clone());
    tracker::spawn_acceptor(tracker, format!("{id}-peer-accept"), peer_listener, move |stream, addr| {
        peer::accept_inbound(stream, addr, &t, &peer_expect, &ev);
    })
    .map_err(ServerError::Io)?;
    let client_expect = Expect { cluster_id: config.cluster_id, node: id, peers: None };
    let limits =
        ClientLimits { max_reply: config.limits.max_reply_frame(), pending_bytes: config.limits.client_pending_bytes };
    let (t, ev, faults) = (tracker.clone(), events.clone(), config.faults.clone());
    tracker::spawn_acceptor(tracker, format!("{id}-client-accept"), client_listener, move |stream, addr| {
        client_port::accept(stream, addr, &t, &client_expect, &ev, limits, &faults);
    })
    .map_err(ServerError::Io)
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("id", &self.id)
            .field("peer_addr", &self.peer_addr)
            .field("client_addr", &self.client_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address peers dial.
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The address clerks dial.
    #[must_use]
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// What the server reported after its last batch.
    #[must_use]
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// True when the event loop has ended (it only ends on its own after a fatal error).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.event_loop.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the server: closes its listeners and connections, lets the loop finish its batch
    /// (everything acknowledged is already durable), and joins every thread. Returns the error
    /// that stopped the loop earlier, if one did.
    ///
    /// # Errors
    /// The fatal error the loop died of.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ServerError> {
        let Some(event_loop) = self.event_loop.take() else { return Ok(()) };
        self.tracker.stop();
        tracker::wake(self.peer_addr);
        tracker::wake(self.client_addr);
        self.events.send(Event::Stop);
        let result = event_loop.join().unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            Err(ServerError::Panicked(why))
        });
        if !self.tracker.wait_idle(STOP_TIMEOUT) {
            tracing::warn!(node = %self.id, "some connection threads did not end in time");
        }
        tracing::info!(node = %self.id, "server stopped");
        result
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
