//! A server's client port: each clerk connection gets a reader thread (handshake, then requests
//! become events for the loop) and a writer thread fed by a bounded queue of replies. The loop
//! routes a reply to the connection that last sent a request of that client id; a full queue
//! drops the reply (the clerk retries with the same seq and gets the same answer).

use crate::faults::{self, Fate, Faults};
use crate::frame::{self, Expect, FrameError};
use crate::net::Tracker;
use crate::server::Event;
use model::{ClientReply, ClientRequest, NodeId};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

/// A clerk that accepts no bytes for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_BATCH: usize = 256;

/// Limits of one client connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    pub max_request: usize,
    pub max_reply: usize,
    pub queue: usize,
}

/// Serves one client connection until it closes or misbehaves.
pub(crate) fn serve(
    mut stream: TcpStream,
    addr: SocketAddr,
    tracker: &Tracker,
    expect: &Expect,
    events: &SyncSender<Event>,
    limits: ClientLimits,
    faults: &Faults,
) {
    let Some(_guard) = tracker.register(&stream) else { return };
    if let Err(reason) = frame::accept_hello(&mut stream, expect) {
        tracing::warn!(from = %addr, %reason, "refused a client connection");
        return;
    }
    let _ = stream.set_nodelay(true);
    let conn = tracker.next_id();
    let (tx, rx) = mpsc::sync_channel(limits.queue.max(1));
    let Ok(writer) = stream.try_clone() else { return };
    let name = format!("client-{conn}-writer");
    let (me, reply_faults) = (expect.node, faults.clone());
    if tracker.spawn(name, move || write_replies(writer, &rx, limits.max_reply, me, &reply_faults)).is_err() {
        return;
    }
    if events.send(Event::ClientOpen { conn, replies: tx }).is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        match frame::read_frame::<_, ClientRequest>(&mut reader, limits.max_request, &mut buf) {
            Ok(Some(request)) => {
                let fate = faults.client_request(expect.node, request.client);
                if fate == Fate::Deliver {
                    if events.send(Event::Client { conn, request }).is_err() {
                        return;
                    }
                } else {
                    let events = events.clone();
                    faults::apply(fate, move || {
                        let _ = events.send(Event::Client { conn, request });
                    });
                }
            }
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%addr, error = %e, "client connection closed");
                break;
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "closing client connection");
                break;
            }
        }
    }
    let _ = reader.get_ref().shutdown(std::net::Shutdown::Both);
    let _ = events.send(Event::ClientClosed { conn });
}

/// Writes replies until the loop forgets the connection or a write fails.
fn write_replies(mut stream: TcpStream, rx: &Receiver<ClientReply>, max_reply: usize, me: NodeId, faults: &Faults) {
    if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv() {
        buf.clear();
        let encode = |reply: &ClientReply, buf: &mut Vec<u8>| {
            if faults.client_reply(me, reply.client) != Fate::Drop {
                encode(reply, max_reply, buf);
            }
        };
        encode(&first, &mut buf);
        for _ in 1..WRITE_BATCH {
            match rx.try_recv() {
                Ok(reply) => encode(&reply, &mut buf),
                Err(_) => break,
            }
        }
        if buf.is_empty() {
            continue;
        }
        if let Err(e) = stream.write_all(&buf) {
            tracing::debug!(error = %e, "cannot write to client");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn encode(reply: &ClientReply, max: usize, buf: &mut Vec<u8>) {
    if let Err(e) = frame::encode_frame(reply, max, buf) {
        tracing::error!(error = %e, "reply not sent");
    }
}
