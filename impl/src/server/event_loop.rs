//! The event loop of a server.
//!
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

use super::{ServerError, Status, MAX_BATCH, WAKER};
use crate::client_conn::ClientConn;
use crate::config::Timing;
use crate::event::Event;
use crate::faults::{self, Fate, Faults};
use crate::frame::FrameError;
use crate::inbound::{Inbound, Inbox, ReadEnd, Source};
use crate::peer::PeerLink;
use crate::storage::Storage;
use crate::tracker::{lock, SocketGuard};
use model::{
    ClientId, ClientReply, ClientRequest, DurableChange, Input, NodeId, Note, Output, PeerMsg, Timer, TimerCommand,
};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The effects collected from the steps of one batch.
#[derive(Default)]
pub(super) struct Batch {
    persist: Vec<DurableChange>,
    send: Vec<(NodeId, PeerMsg)>,
    reply: Vec<ClientReply>,
    timers: Vec<TimerCommand>,
}

/// The timer deadlines. Only the loop reads them, between batches.
pub(super) struct Timers {
    timing: Timing,
    election: Option<Instant>,
    heartbeat: Option<Instant>,
}

impl Timers {
    pub(super) fn new(timing: Timing) -> Timers {
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
pub(super) struct EventLoop {
    pub(super) server: model::Server,
    pub(super) storage: Storage,
    pub(super) peers: BTreeMap<NodeId, PeerLink>,
    /// Open client connections, where replies go.
    pub(super) conns: HashMap<u64, ClientConn>,
    /// Where each client's replies go: the connection of its latest request.
    pub(super) routes: HashMap<ClientId, u64>,
    pub(super) timers: Timers,
    pub(super) inbox: Receiver<Event>,
    /// A sender of the loop's own channel, for frames a fault delays.
    pub(super) sender: Inbox,
    /// The connections the loop reads, and those with bytes still to read.
    pub(super) poll: mio::Poll,
    pub(super) inbound: HashMap<mio::Token, Inbound>,
    pub(super) ready: Vec<mio::Token>,
    pub(super) next_token: usize,
    pub(super) max_peer_frame: usize,
    pub(super) max_request: usize,
    /// Where socket reads land before they join their connection's frames.
    pub(super) read_buf: Vec<u8>,
    pub(super) status: Arc<Mutex<Status>>,
    pub(super) batch: Batch,
    pub(super) snapshots_taken: u64,
    pub(super) snapshots_installed: u64,
    /// Test faults consulted at each flush (power cuts); costs one branch when none are set.
    pub(super) faults: Faults,
    /// Debug builds: the replay of everything written to the directory, checked against the
    /// core after every flush.
    #[cfg(debug_assertions)]
    pub(super) on_disk: model::Durable,
}

impl EventLoop {
    pub(super) fn run(mut self, restored: Output) -> Result<(), ServerError> {
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
            self.deliver(); // the deliberately broken order (impl/tests/crash/ only)
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
