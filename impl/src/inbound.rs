//! The receiving side of a server's connections, read by the event loop itself.
//!
//! A connection's thread does the handshake (a blocking exchange with a deadline), then hands
//! the socket to the loop ([`Inbox`]) and ends. The loop registers it with its `mio::Poll` and,
//! when the socket is readable, reads what is there without blocking and steps the core
//! through every complete frame. So a message costs one wake-up (the loop's) instead of two (a
//! reader thread's, then the loop's through a channel), which on a busy 2-core machine is most
//! of what a message costs.
//!
//! The channel stays for what does not come from a socket: sockets handed over, frames a
//! fault delays, and the stop request. [`Inbox::send`] wakes the poll after each.

use crate::event::Event;
use crate::frame::{Assembler, FrameError};
use crate::tracker::SocketGuard;
use model::NodeId;
use serde::de::DeserializeOwned;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// Bytes read from one connection per turn of the loop at most (so that one busy peer cannot
/// hold up the batch; what is left is read next turn).
pub(crate) const READ_BUDGET: usize = 256 << 10;

/// The loop's channel, and the waker that interrupts its wait.
#[derive(Clone)]
pub(crate) struct Inbox {
    tx: SyncSender<Event>,
    waker: Arc<mio::Waker>,
}

impl Inbox {
    pub(crate) fn new(tx: SyncSender<Event>, waker: Arc<mio::Waker>) -> Inbox {
        Inbox { tx, waker }
    }

    /// Queues `event` for the loop and wakes it; false when the loop has ended.
    pub(crate) fn send(&self, event: Event) -> bool {
        let sent = self.tx.send(event).is_ok();
        let _ = self.waker.wake();
        sent
    }
}

/// Who is at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Peer(NodeId),
    /// A clerk's connection, by connection id.
    Client(u64),
}

/// One connection the loop reads.
pub(crate) struct Inbound {
    pub(crate) source: Source,
    pub(crate) addr: SocketAddr,
    pub(crate) stream: mio::net::TcpStream,
    frames: Assembler,
    /// Shuts the socket down when the connection is dropped, and lets stopping the server
    /// shut it down.
    _guard: SocketGuard,
}

/// How reading a connection ended this turn.
pub(crate) enum ReadEnd {
    /// Everything the socket had was read.
    Drained,
    /// The budget ran out first: read again next turn.
    More,
    /// The peer closed the connection; `true` when it did so in the middle of a frame.
    Closed { mid_frame: bool },
}

impl Inbound {
    /// Makes `stream` non-blocking for the loop's poll.
    pub(crate) fn new(source: Source, stream: std::net::TcpStream, guard: SocketGuard) -> io::Result<Inbound> {
        let addr = stream.peer_addr()?;
        stream.set_nonblocking(true)?;
        let stream = mio::net::TcpStream::from_std(stream);
        Ok(Inbound { source, addr, stream, frames: Assembler::default(), _guard: guard })
    }

    /// Reads what the socket holds, up to [`READ_BUDGET`] bytes.
    pub(crate) fn read(&mut self, chunk: &mut [u8]) -> io::Result<ReadEnd> {
        let mut total = 0;
        while total < READ_BUDGET {
            match self.stream.read(chunk) {
                Ok(0) => return Ok(ReadEnd::Closed { mid_frame: !self.frames.is_empty() }),
                Ok(n) => {
                    self.frames.extend(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ReadEnd::More)
    }

    /// The next complete frame read so far.
    pub(crate) fn next_frame<T: DeserializeOwned>(&mut self, max: usize) -> Result<Option<T>, FrameError> {
        self.frames.next_frame(max)
    }
}
