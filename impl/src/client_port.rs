//! A server's client port: each clerk connection gets a thread for the handshake, after which
//! the loop reads its requests itself (see [`crate::inbound`]), and an [`Outbox`] for replies: the loop writes replies into the
//! socket itself when it takes them at once, and a writer thread writes the rest. The loop
//! routes a reply to the connection that last sent a request of that client id; a connection
//! too far behind drops replies (the clerk retries with the same seq and gets the same answer).

use crate::client_conn::ClientConn;
use crate::event::Event;
use crate::faults::Faults;
use crate::frame::{self, Expect};
use crate::inbound::Inbox;
use crate::outbox::Outbox;
use crate::tracker::Tracker;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A clerk that accepts no bytes for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle writer thread checks whether the server is stopping.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Limits of one client connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    pub max_reply: usize,
    /// Reply bytes kept for a clerk that does not read them, at most.
    pub pending_bytes: usize,
}

/// Accepts one client connection: the handshake, then its reply outbox and writer thread; the
/// loop reads its requests from then on (see [`crate::inbound`]).
pub(crate) fn accept(
    mut stream: TcpStream,
    addr: SocketAddr,
    tracker: &Tracker,
    expect: &Expect,
    events: &Inbox,
    limits: ClientLimits,
    faults: &Faults,
) {
    let Some(guard) = tracker.register(&stream) else { return };
    if let Err(reason) = frame::accept_hello(&mut stream, expect) {
        tracing::warn!(from = %addr, %reason, "refused a client connection");
        return;
    }
    let _ = stream.set_nodelay(true);
    let conn = tracker.next_id();
    let outbox = Arc::new(Outbox::new(limits.pending_bytes));
    let (Ok(for_outbox), Ok(mut writer)) = (stream.try_clone(), stream.try_clone()) else { return };
    outbox.connected(for_outbox);
    let (o, t) = (Arc::clone(&outbox), tracker.clone());
    let name = format!("client-{conn}-writer");
    let spawned = tracker.spawn(name, move || {
        if let Err(e) = o.pump(&mut writer, WRITE_TIMEOUT, IDLE_CHECK, || t.stopping()) {
            tracing::debug!(error = %e, "cannot write to client");
            let _ = writer.shutdown(std::net::Shutdown::Both);
        }
    });
    if spawned.is_err() {
        return;
    }
    let replies = ClientConn::new(outbox, limits.max_reply, expect.node, faults.clone());
    events.send(Event::ClientOpen { conn, replies, stream, guard });
}
