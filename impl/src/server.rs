//! A running server: the event loop that owns the core's [`model::Server`], and the
//! [`ServerHandle`] that starts and stops it with its transport threads.
//!
//! # The event loop
//! One thread owns the core state. It reads its peers' and clerks' connections itself (one
//! `mio::Poll` over every socket, see `inbound.rs`); a channel brings what does not come
//! from a socket (connections after their handshake, frames a fault delays, stop), and timer
//! deadlines are kept by the loop (the poll waits until the earliest, so an expiry "arrives"
//! exactly like a message). Each turn of the loop:
//! 1. waits for a readable socket, the channel or a deadline, then takes what the channel
//!    holds (up to [`MAX_BATCH`] events) and every complete frame the readable sockets hold
//!    (up to 256 KiB read per connection and turn);
//! 2. steps the core through each input in arrival order, then through the timers whose
//!    deadline passed and that no step of this batch re-armed or cancelled, collecting the
//!    outputs of every step;
//! 3. appends every `persist` change of the batch to the WAL with one write and one fsync
//!    (group commit); a batch with a snapshot writes the snapshot file and starts a new WAL
//!    segment instead (see [`crate::storage`]);
//! 4. only then sends the messages and replies of the batch (into the sockets when they take
//!    them at once, otherwise to the connection's writer thread; never blocking, see
//!    `outbox.rs`);
//! 5. then applies the batch's timer commands in order (an election timeout is drawn from the
//!    configured range each time it is set).
//!
//! This is the core's Output contract (`model::io`) for a whole batch at once: no message or
//! reply of any step leaves before the fsync that covers every step of the batch. The loop
//! decides nothing about the protocol; it only converts events into `Input`s and executes
//! `Output`s.

use crate::client_conn::ClientConn;
use crate::client_port::{self, ClientLimits};
use crate::config::{ServerConfig, Timing};
use crate::event::Event;
use crate::faults::{self, Fate, Faults};
use crate::frame::{Expect, FrameError};
use crate::inbound::{Inbound, Inbox, ReadEnd, Source};
use crate::peer::{self, PeerLink};
use crate::storage::{Identity, Storage, StorageError};
use crate::tracker::{self, lock, SocketGuard, Tracker};
use model::{
    ClientId, ClientReply, ClientRequest, DurableChange, Input, NodeId, Note, Output, PeerMsg, Timer, TimerCommand,
};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// The effects collected from the steps of one batch.
#[derive(Default)]
struct Batch {
    persist: Vec<DurableChange>,
    send: Vec<(NodeId, PeerMsg)>,
    reply: Vec<ClientReply>,
    timers: Vec<TimerCommand>,
}

/// The timer deadlines. Only the loop reads them, between batches.
struct Timers {
    timing: Timing,
    election: Option<Instant>,
    heartbeat: Option<Instant>,
}

impl Timers {
    fn new(timing: Timing) -> Timers {
        Timers { timing, election: None, heartbeat: None }
    }

    fn slot(&mut self, timer: Timer) -> &mut Option<Instant> {
        match timer {
            Timer::Election => &mut self.election,
            Timer::Heartbeat => &mut self.heartbeat,
        }
    }

    fn apply(&mut self, commands: &[TimerCommand]) {
        let now = Instant::now();
        for command in commands {
            match *command {
                TimerCommand::Set(Timer::Election) => {
                    let (lo, hi) = (self.timing.election_min, self.timing.election_max);
                    self.election = Some(now + rand::rng().random_range(lo..=hi));
                }
                TimerCommand::Set(Timer::Heartbeat) => self.heartbeat = Some(now + self.timing.heartbeat),
                TimerCommand::Cancel(timer) => *self.slot(timer) = None,
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.election, self.heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Disarms and returns the timers due at `now`, except those in `touched`.
    fn take_due(&mut self, now: Instant, touched: &[TimerCommand]) -> Vec<Timer> {
        let mut due = Vec::new();
        for timer in [Timer::Heartbeat, Timer::Election] {
            let commanded =
                touched.iter().any(|c| matches!(c, TimerCommand::Set(t) | TimerCommand::Cancel(t) if *t == timer));
            let slot = self.slot(timer);
            if !commanded && slot.is_some_and(|d| d <= now) {
                *slot = None;
                due.push(timer);
            }
        }
        due
    }
}

/// The event loop's state.
struct EventLoop {
    server: model::Server,
    storage: Storage,
    peers: BTreeMap<NodeId, PeerLink>,
    /// Open client connections, where replies go.
    conns: HashMap<u64, ClientConn>,
    /// Where each client's replies go: the connection of its latest request.
    routes: HashMap<ClientId, u64>,
    timers: Timers,
    inbox: Receiver<Event>,
    /// A sender of the loop's own channel, for frames a fault delays.
    sender: Inbox,
    /// The connections the loop reads, and those with bytes still to read.
    poll: mio::Poll,
    inbound: HashMap<mio::Token, Inbound>,
    ready: Vec<mio::Token>,
    next_token: usize,
    max_peer_frame: usize,
    max_request: usize,
    /// Where socket reads land before they join their connection's frames.
    read_buf: Vec<u8>,
    status: Arc<Mutex<Status>>,
    batch: Batch,
    snapshots_taken: u64,
    snapshots_installed: u64,
    /// Test faults consulted at each flush (power cuts); costs one branch when none are set.
    faults: Faults,
    /// Debug builds: the replay of everything written to the directory, checked against the
    /// core after every flush.
    #[cfg(debug_assertions)]
    on_disk: model::Durable,
}

impl EventLoop {
    fn run(mut self, restored: Output) -> Result<(), ServerError> {
        self.collect(restored);
        self.flush()?;
        let mut events = mio::Events::with_capacity(256);
        loop {
            // Wait for a socket, the channel or the earliest timer; not at all while a
            // connection still has bytes from last turn.
            let timeout = if self.ready.is_empty() {
                self.timers.next_deadline().map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(ServerError::Io(e));
                }
            }
            for event in &events {
                let token = event.token();
                if token != WAKER && !self.ready.contains(&token) {
                    self.ready.push(token);
                }
            }
            let mut stop = false;
            for _ in 0..MAX_BATCH {
                match self.inbox.try_recv() {
                    Ok(event) => stop |= self.handle(event),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Ok(()),
                }
            }
            self.read_ready();
            for timer in self.timers.take_due(Instant::now(), &self.batch.timers) {
                self.step(Input::Timeout(timer));
            }
            self.flush()?;
            self.publish_status();
            if stop {
                return Ok(());
            }
        }
    }

    /// Handles one event from the channel; true when it asks the loop to stop.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::PeerConn { from, stream, guard } => self.add_inbound(Source::Peer(from), stream, guard),
            Event::ClientOpen { conn, replies, stream, guard } => {
                self.conns.insert(conn, replies);
                self.add_inbound(Source::Client(conn), stream, guard);
            }
            Event::Peer { from, msg } => self.step(Input::Receive { from, msg }),
            Event::Client { conn, request } => self.client_request(conn, request),
            Event::Stop => return true,
        }
        false
    }

    fn add_inbound(&mut self, source: Source, stream: TcpStream, guard: SocketGuard) {
        let token = mio::Token(self.next_token);
        self.next_token += 1;
        let registered = Inbound::new(source, stream, guard).and_then(|mut conn| {
            self.poll.registry().register(&mut conn.stream, token, mio::Interest::READABLE)?;
            Ok(conn)
        });
        match registered {
            Ok(conn) => {
                self.inbound.insert(token, conn);
                // Bytes may have arrived before the registration: read at once.
                self.ready.push(token);
            }
            Err(e) => {
                tracing::warn!(?source, error = %e, "cannot watch a connection: closed");
                self.closed(source);
            }
        }
    }

    fn client_request(&mut self, conn: u64, request: ClientRequest) {
        self.routes.insert(request.client, conn);
        self.step(Input::Client(request));
    }

    /// Forgets what the loop keeps for a connection that closed.
    fn closed(&mut self, source: Source) {
        if let Source::Client(conn) = source {
            self.conns.remove(&conn);
            self.routes.retain(|_, c| *c != conn);
        }
    }

    /// Reads every readable connection (up to a budget each) and steps the core through the
    /// frames that are complete, passing each through the fault hook as it arrives.
    fn read_ready(&mut self) {
        for token in std::mem::take(&mut self.ready) {
            let Some(conn) = self.inbound.get_mut(&token) else { continue };
            let (source, addr) = (conn.source, conn.addr);
            let read = conn.read(&mut self.read_buf);
            let mut frames = Vec::new();
            let decoded = loop {
                let next = match source {
                    Source::Peer(from) => {
                        conn.next_frame(self.max_peer_frame).map(|m| m.map(|msg| Event::Peer { from, msg }))
                    }
                    Source::Client(id) => {
                        conn.next_frame(self.max_request).map(|r| r.map(|request| Event::Client { conn: id, request }))
                    }
                };
                match next {
                    Ok(Some(event)) => frames.push(event),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            for event in frames {
                self.arrived(event);
            }
            let end = match (decoded, read) {
                (Err(e), _) => Some(e),
                (Ok(()), Ok(ReadEnd::Drained)) => None,
                (Ok(()), Ok(ReadEnd::More)) => {
                    self.ready.push(token);
                    None
                }
                (Ok(()), Ok(ReadEnd::Closed { mid_frame: false })) => {
                    Some(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                }
                (Ok(()), Ok(ReadEnd::Closed { mid_frame: true })) => Some(FrameError::Truncated),
                (Ok(()), Err(e)) => Some(FrameError::Io(e)),
            };
            if let Some(why) = end {
                if let Some(mut conn) = self.inbound.remove(&token) {
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                }
                log_closed(source, addr, &why);
                self.closed(source);
            }
        }
    }

    /// A frame read from a connection: through the fault hook, then to the core.
    fn arrived(&mut self, event: Event) {
        let me = self.server.id();
        let fate = match &event {
            Event::Peer { from, .. } => self.faults.peer_frame(*from, me),
            Event::Client { request, .. } => self.faults.client_request(me, request.client),
            _ => Fate::Deliver,
        };
        if fate == Fate::Deliver {
            self.handle(event);
        } else {
            let sender = self.sender.clone();
            faults::apply(fate, move || {
                sender.send(event);
            });
        }
    }

    fn step(&mut self, input: Input) {
        let shown = tracing::enabled!(tracing::Level::DEBUG).then(|| input.clone());
        // In place: the core's state is owned here alone, so the log and the key/value map
        // are updated without copying what an old state would share.
        let out = model::step_in_place(&mut self.server, input);
        if let Some(input) = shown {
            tracing::debug!("{input}\n{out}");
            tracing::trace!("state {}", self.server);
        }
        self.collect(out);
    }

    /// Adds a step's output to the batch, and logs its role changes.
    fn collect(&mut self, out: Output) {
        for note in &out.notes {
            match note {
                Note::BecameLeader { term } => tracing::info!(%term, "became leader"),
                Note::BecameCandidate { term } => tracing::info!(%term, "election timeout: standing for election"),
                Note::BecameFollower { term } => {
                    tracing::info!(%term, leader = ?self.server.leader_hint(), "follower");
                }
                Note::SnapshotTaken { index } => {
                    self.snapshots_taken += 1;
                    tracing::debug!(%index, "took a snapshot");
                }
                Note::SnapshotInstalled { index } => {
                    self.snapshots_installed += 1;
                    tracing::info!(%index, "installed the leader's snapshot");
                }
                _ => {}
            }
        }
        let Output { persist, send, reply, timers, notes: _ } = out;
        self.batch.persist.extend(persist);
        self.batch.send.extend(send);
        self.batch.reply.extend(reply);
        self.batch.timers.extend(timers);
    }

    /// Executes the batch: persist and fsync, then messages and replies, then timers.
    fn flush(&mut self) -> Result<(), ServerError> {
        let disk = self.faults.disk(self.server.id());
        if disk.send_before_fsync {
            self.deliver(); // the deliberately broken order (impl/tests/crash.rs only)
        }
        if disk.power_cut {
            return Err(ServerError::PowerCut);
        }
        let started = Instant::now();
        self.storage.append(&self.batch.persist, &self.server.durable)?;
        #[cfg(debug_assertions)]
        {
            // What the directory holds (the replay of every change written) is the core's
            // durable state: no change lost, reordered or left out of a rotation.
            for change in &self.batch.persist {
                if let Err(e) = self.on_disk.apply(change) {
                    panic!("the core persisted a change that does not replay onto the directory's state: {e}");
                }
            }
            assert!(self.on_disk == self.server.durable, "storage and core disagree on the durable state");
        }
        if !self.batch.persist.is_empty() {
            tracing::debug!(
                changes = self.batch.persist.len(),
                sends = self.batch.send.len(),
                replies = self.batch.reply.len(),
                fsync_us = started.elapsed().as_micros(),
                "batch made durable"
            );
        }
        self.batch.persist.clear();
        self.deliver();
        self.timers.apply(&self.batch.timers);
        self.batch.timers.clear();
        Ok(())
    }

    /// Sends the batch's messages and replies: each peer's and each connection's frames of
    /// the batch leave together.
    fn deliver(&mut self) {
        for (to, msg) in self.batch.send.drain(..) {
            if let Some(link) = self.peers.get_mut(&to) {
                link.push(&msg);
            }
        }
        for link in self.peers.values_mut() {
            link.flush();
        }
        let replies = std::mem::take(&mut self.batch.reply);
        let mut touched = Vec::new();
        for reply in replies {
            touched.extend(self.route(&reply));
        }
        for conn in touched {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.flush();
            }
        }
    }

    /// Adds `reply` to the frames of the connection that last sent a request of its client;
    /// returns that connection the first time it gets a frame in this batch.
    fn route(&mut self, reply: &ClientReply) -> Option<u64> {
        let Some(&conn) = self.routes.get(&reply.client) else {
            tracing::debug!(%reply, "no connection for this client: reply dropped");
            return None;
        };
        let c = self.conns.get_mut(&conn)?;
        let first = c.is_empty();
        c.push(reply);
        first.then_some(conn)
    }

    fn publish_status(&self) {
        let s = &self.server;
        let status = Status {
            role: s.role_name(),
            term: s.current_term().0,
            leader: s.leader_hint(),
            commit_index: s.commit_index.0,
            last_applied: s.last_applied.0,
            last_log_index: s.log().last_index().0,
            snapshot_index: s.durable.snapshot.last_index.0,
            snapshots_taken: self.snapshots_taken,
            snapshots_installed: self.snapshots_installed,
            raft_state_bytes: s.durable.raft_state_size(),
            snapshot_bytes: if s.durable.snapshot.last_index.0 == 0 { 0 } else { s.durable.snapshot.encoded_size() },
        };
        *lock(&self.status) = status;
    }
}

/// Says why a connection the loop read was closed (peers' links at the levels they always had).
fn log_closed(source: Source, addr: SocketAddr, why: &FrameError) {
    match (source, why) {
        (Source::Peer(from), FrameError::Io(e)) => tracing::debug!(peer = %from, %addr, error = %e, "peer link closed"),
        (Source::Peer(from), e @ FrameError::TooLarge { .. }) => tracing::error!(
            peer = %from, %addr, error = %e,
            "closing peer link: a message over this server's limit (an InstallSnapshot \
             larger than --max-snapshot-bytes?); the servers' limits must agree"
        ),
        (Source::Peer(from), e) => tracing::warn!(peer = %from, %addr, error = %e, "closing peer link"),
        (Source::Client(_), FrameError::Io(e)) => tracing::debug!(%addr, error = %e, "client connection closed"),
        (Source::Client(_), e) => tracing::warn!(%addr, error = %e, "closing client connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_commanded_in_the_batch_does_not_fire() {
        let mut timers = Timers::new(Timing::default());
        let past = Instant::now().checked_sub(Duration::from_millis(5)).unwrap_or_else(Instant::now);
        timers.election = Some(past);
        timers.heartbeat = Some(past);
        let due = timers.take_due(Instant::now(), &[TimerCommand::Set(Timer::Election)]);
        assert_eq!(due, vec![Timer::Heartbeat]);
        assert_eq!(timers.heartbeat, None);
        assert_eq!(timers.election, Some(past));
    }

    #[test]
    fn election_timeouts_are_drawn_from_the_range() {
        let timing = Timing::default();
        let mut timers = Timers::new(timing);
        for _ in 0..100 {
            let before = Instant::now();
            timers.apply(&[TimerCommand::Set(Timer::Election)]);
            let d = timers.election.unwrap() - before;
            assert!(d >= timing.election_min && d <= timing.election_max + Duration::from_millis(50));
        }
        timers.apply(&[TimerCommand::Cancel(Timer::Election)]);
        assert_eq!(timers.next_deadline(), None);
    }
}
