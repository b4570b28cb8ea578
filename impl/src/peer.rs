//! Server-to-server transport. Each server dials each peer once and uses that connection only
//! to send; what a peer sends back arrives on the connection the peer dialed. So every link has
//! one writer thread with a bounded queue ([`PeerLink`]) on the sending side and one reader
//! thread on the receiving side ([`serve_inbound`]).
//!
//! The event loop only ever `try_send`s into a link's queue: a slow or dead peer fills its own
//! queue, after which its messages are dropped (Raft tolerates lost messages; the core resends
//! on the next heartbeat), and neither the loop nor the other links wait for it.

use crate::faults::{self, Fate, Faults};
use crate::frame::{self, Dialer, Expect, FrameError, Hello};
use crate::net::Tracker;
use crate::server::Event;
use model::{NodeId, PeerMsg};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that accepts no bytes for this long is treated as dead: the link reconnects.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages written with one `write` at most.
const WRITE_BATCH: usize = 256;

/// The sending side of the link to one peer.
pub(crate) struct PeerLink {
    peer: NodeId,
    queue: SyncSender<PeerMsg>,
}

impl PeerLink {
    /// Starts the writer thread of server `me`'s link to `peer` at `addr`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn(
        tracker: &Tracker,
        me: NodeId,
        peer: NodeId,
        addr: SocketAddr,
        cluster_id: u64,
        queue: usize,
        max_frame: usize,
    ) -> std::io::Result<PeerLink> {
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let writer = Writer { tracker: tracker.clone(), me, peer, addr, cluster_id, max_frame, queue: rx };
        tracker.spawn(format!("{me}-to-{peer}"), move || writer.run())?;
        Ok(PeerLink { peer, queue: tx })
    }

    /// Queues `msg`; drops it when the queue is full.
    pub(crate) fn send(&self, msg: PeerMsg) {
        match self.queue.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                tracing::debug!(peer = %self.peer, %msg, "peer queue full: message dropped");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

struct Writer {
    tracker: Tracker,
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    cluster_id: u64,
    max_frame: usize,
    queue: Receiver<PeerMsg>,
}

impl Writer {
    /// Connects, pumps the queue into the connection, and on any failure backs off and
    /// reconnects; ends when the event loop drops the link (or the server stops).
    fn run(self) {
        let hello = Hello::new(self.cluster_id, Dialer::Peer { from: self.me, to: self.peer });
        let mut backoff = BACKOFF_MIN;
        let mut last_error = String::new();
        while !self.tracker.stopping() {
            match frame::dial(self.addr, &hello, self.peer, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    tracing::info!(node = %self.me, peer = %self.peer, addr = %self.addr, "connected to peer");
                    backoff = BACKOFF_MIN;
                    last_error.clear();
                    match self.pump(stream) {
                        Ok(()) => return,
                        Err(e) => tracing::info!(node = %self.me, peer = %self.peer, error = %e, "peer link lost; reconnecting"),
                    }
                }
                Err(e) => {
                    let error = e.to_string();
                    if error != last_error {
                        // Log a reason once, not on every attempt.
                        match e {
                            frame::DialError::Refused(_) | frame::DialError::WrongNode { .. } => {
                                tracing::warn!(node = %self.me, peer = %self.peer, addr = %self.addr, %error, "peer refused the link");
                            }
                            _ => tracing::info!(node = %self.me, peer = %self.peer, addr = %self.addr, %error, "cannot reach peer"),
                        }
                        last_error = error;
                    }
                }
            }
            // Wait before retrying; what is queued meanwhile is stale and dropped.
            let until = std::time::Instant::now() + backoff;
            loop {
                let now = std::time::Instant::now();
                if now >= until {
                    break;
                }
                match self.queue.recv_timeout(until - now) {
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Writes queued messages until the queue is dropped (`Ok`) or the connection fails.
    fn pump(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let Some(_guard) = self.tracker.register(&stream) else { return Ok(()) };
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut buf = Vec::new();
        loop {
            let Ok(first) = self.queue.recv() else { return Ok(()) };
            buf.clear();
            self.encode(&first, &mut buf);
            for _ in 1..WRITE_BATCH {
                match self.queue.try_recv() {
                    Ok(msg) => self.encode(&msg, &mut buf),
                    Err(_) => break,
                }
            }
            stream.write_all(&buf)?;
            if buf.capacity() > 1 << 20 {
                buf = Vec::new(); // do not keep a snapshot-sized buffer for ever
            }
        }
    }

    fn encode(&self, msg: &PeerMsg, buf: &mut Vec<u8>) {
        let Err(e) = frame::encode_frame(msg, self.max_frame, buf) else { return };
        if let PeerMsg::InstallSnapshot { snapshot, .. } = msg {
            // Only possible when servers run with different --max-snapshot-bytes: a server's
            // own storage refuses to keep a snapshot over its limit.
            tracing::error!(
                peer = %self.peer,
                snapshot_index = %snapshot.last_index,
                error = %e,
                "InstallSnapshot not sent: the snapshot exceeds the peer frame limit, so this \
                 follower cannot catch up; raise --max-snapshot-bytes (on every server)"
            );
        } else {
            tracing::error!(peer = %self.peer, error = %e, "message not sent");
        }
    }
}

/// Serves one inbound peer connection: handshake, then every frame becomes an event for the
/// loop. Ends at the first error, closing only this connection.
pub(crate) fn serve_inbound(
    mut stream: TcpStream,
    addr: SocketAddr,
    tracker: &Tracker,
    expect: &Expect,
    events: &SyncSender<Event>,
    max_frame: usize,
    faults: &Faults,
) {
    let Some(_guard) = tracker.register(&stream) else { return };
    let hello = match frame::accept_hello(&mut stream, expect) {
        Ok(hello) => hello,
        Err(reason) => {
            tracing::warn!(from = %addr, %reason, "refused a peer connection");
            return;
        }
    };
    let Dialer::Peer { from, .. } = hello.dialer else { return };
    let _ = stream.set_nodelay(true);
    tracing::debug!(peer = %from, %addr, "accepted peer link");
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut buf = Vec::new();
    loop {
        match frame::read_frame::<_, PeerMsg>(&mut reader, max_frame, &mut buf) {
            Ok(Some(msg)) => {
                let fate = faults.peer_frame(from, expect.node);
                if fate == Fate::Deliver {
                    if events.send(Event::Peer { from, msg }).is_err() {
                        return;
                    }
                } else {
                    let events = events.clone();
                    faults::apply(fate, move || {
                        let _ = events.send(Event::Peer { from, msg });
                    });
                }
            }
            Ok(None) => return,
            Err(FrameError::Io(e)) => {
                if !tracker.stopping() {
                    tracing::debug!(peer = %from, error = %e, "peer link closed");
                }
                return;
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                tracing::error!(
                    peer = %from, %addr, error = %e,
                    "closing peer link: a message over this server's limit (an InstallSnapshot \
                     larger than --max-snapshot-bytes?); the servers' limits must agree"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(peer = %from, %addr, error = %e, "closing peer link");
                return;
            }
        }
    }
}
