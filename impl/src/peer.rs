//! Server-to-server transport. Each server dials each peer once and uses that connection only
//! to send; what a peer sends back arrives on the connection the peer dialed. So every link has
//! one [`PeerLink`] on the sending side (the loop writes into the socket itself when it can, a
//! writer thread takes over what the socket does not take at once, and dials and re-dials) and
//! one reader thread on the receiving side ([`serve_inbound`]).
//!
//! The event loop never waits on a link (see [`crate::outbox`]): a slow or dead peer's frames
//! pile up to a bound and are then dropped (Raft tolerates lost messages; the core resends on
//! the next heartbeat), and neither the loop nor the other links wait for it.

use crate::event::Event;
use crate::frame::{self, Dialer, Expect, Hello};
use crate::inbound::Inbox;
use crate::outbox::{Outbox, Sent};
use crate::tracker::Tracker;
use model::{NodeId, PeerMsg};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer that accepts no bytes for this long is treated as dead: the link reconnects.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle writer thread checks whether the server is stopping.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// The sending side of the link to one peer, owned by the event loop. Dropping it ends the
/// link's writer thread.
pub(crate) struct PeerLink {
    peer: NodeId,
    outbox: Arc<Outbox>,
    max_frame: usize,
    /// The frames of the current batch, sent together by [`PeerLink::flush`].
    buf: Vec<u8>,
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
        pending_bytes: usize,
        max_frame: usize,
    ) -> std::io::Result<PeerLink> {
        let outbox = Arc::new(Outbox::new(pending_bytes));
        let writer = Writer { tracker: tracker.clone(), me, peer, addr, cluster_id, outbox: Arc::clone(&outbox) };
        tracker.spawn(format!("{me}-to-{peer}"), move || writer.run())?;
        Ok(PeerLink { peer, outbox, max_frame, buf: Vec::new() })
    }

    /// Adds `msg` to the frames [`PeerLink::flush`] sends.
    pub(crate) fn push(&mut self, msg: &PeerMsg) {
        let Err(e) = frame::encode_frame(msg, self.max_frame, &mut self.buf) else { return };
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

    /// Sends the frames pushed since the last flush, with one `send` when the socket takes
    /// them; drops them when the link is down or too far behind.
    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.outbox.send(&self.buf) == Sent::Dropped {
            tracing::debug!(peer = %self.peer, bytes = self.buf.len(), "peer link down or full: messages dropped");
        }
        self.buf.clear();
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new(); // do not keep a snapshot-sized buffer for ever
        }
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

struct Writer {
    tracker: Tracker,
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    cluster_id: u64,
    outbox: Arc<Outbox>,
}

impl Writer {
    /// Connects, writes what the loop could not send at once, and on any failure backs off and
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
                    match self.serve(stream) {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::info!(node = %self.me, peer = %self.peer, error = %e, "peer link lost; reconnecting")
                        }
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
                            _ => {
                                tracing::info!(node = %self.me, peer = %self.peer, addr = %self.addr, %error, "cannot reach peer")
                            }
                        }
                        last_error = error;
                    }
                }
            }
            // Wait before retrying; what the loop sends meanwhile is dropped.
            if self.outbox.wait_closed(backoff) {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Hands the connection to the outbox and writes for it until the link is dropped (`Ok`)
    /// or the connection fails.
    fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let Some(_guard) = self.tracker.register(&stream) else { return Ok(()) };
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        self.outbox.connected(stream.try_clone()?);
        let result = self.outbox.pump(&mut stream, WRITE_TIMEOUT, IDLE_CHECK, || self.tracker.stopping());
        self.outbox.disconnected();
        result
    }
}

/// Accepts one inbound peer connection: the handshake, then the connection goes to the loop,
/// which reads it from then on (see [`crate::inbound`]).
pub(crate) fn accept_inbound(
    mut stream: TcpStream,
    addr: SocketAddr,
    tracker: &Tracker,
    expect: &Expect,
    events: &Inbox,
) {
    let Some(guard) = tracker.register(&stream) else { return };
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
    events.send(Event::PeerConn { from, stream, guard });
}
