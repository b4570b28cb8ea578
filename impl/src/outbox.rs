//! The sending side of one connection, shared by the event loop and the connection's writer
//! thread.
//!
//! The loop hands over whole encoded frames. When nothing is waiting before them, the loop
//! writes them itself with a non-blocking `send`: most of the time the socket buffer takes
//! everything, and the frames leave without waking another thread (a thread hop costs more
//! than the `send` on a busy 2-core machine). Whatever the socket does not take at once, and
//! every frame queued behind it, goes to the writer thread, which writes with an ordinary
//! blocking write and a timeout. So bytes leave in the order the loop handed them over, and the
//! loop never waits for a slow or dead peer: past `limit` pending bytes, new frames are dropped
//! (Raft and the clerk tolerate lost messages).

use crate::tracker::lock;
use socket2::SockRef;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// The connection, while it is up.
    stream: Option<TcpStream>,
    /// Bytes the writer thread must write, in order, before anything else is sent.
    pending: Vec<u8>,
    /// The writer thread is writing bytes it took from `pending`.
    writing: bool,
    /// No more frames: the writer thread ends once `pending` is written.
    closed: bool,
}

/// What became of a frame handed to [`Outbox::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Handed to the socket (or queued for the writer thread).
    Taken,
    /// Dropped: the connection is down or too much is already pending.
    Dropped,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    wake: Condvar,
    limit: usize,
}

impl Outbox {
    /// An outbox that keeps at most `limit` bytes for its writer thread (a larger frame is
    /// still accepted when nothing is pending, so one snapshot-sized frame always fits).
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox { state: Mutex::new(State::default()), wake: Condvar::new(), limit }
    }

    /// Sends `frames` (one or more whole frames): at once when nothing is pending, otherwise
    /// after what is. Never blocks on the network.
    pub(crate) fn send(&self, frames: &[u8]) -> Sent {
        let mut s = lock(&self.state);
        if s.closed || frames.is_empty() {
            return Sent::Dropped;
        }
        let Some(stream) = &s.stream else { return Sent::Dropped };
        if !s.writing && s.pending.is_empty() {
            // On an error nothing is taken: the writer thread meets the same error on its next
            // write and reconnects.
            let sent = send_now(stream, frames).unwrap_or_default();
            if sent == frames.len() {
                return Sent::Taken;
            }
            s.pending.extend_from_slice(&frames[sent..]);
        } else if s.pending.len() + frames.len() > self.limit && !s.pending.is_empty() {
            return Sent::Dropped;
        } else {
            s.pending.extend_from_slice(frames);
        }
        drop(s);
        self.wake.notify_one();
        Sent::Taken
    }

    /// A new connection: frames go to it from now on. Anything still pending for the previous
    /// one is discarded (it is stale, and its stream may have ended in the middle of a frame).
    pub(crate) fn connected(&self, stream: TcpStream) {
        let mut s = lock(&self.state);
        s.stream = Some(stream);
        s.pending.clear();
    }

    /// The connection is gone: frames are dropped until [`Outbox::connected`].
    pub(crate) fn disconnected(&self) {
        let mut s = lock(&self.state);
        s.stream = None;
        s.pending.clear();
    }

    /// No more frames; wakes the writer thread so that it can end.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout` for [`Outbox::close`]; true when closed.
    pub(crate) fn wait_closed(&self, timeout: Duration) -> bool {
        let s = lock(&self.state);
        let (s, _) =
            self.wake.wait_timeout_while(s, timeout, |s| !s.closed).unwrap_or_else(std::sync::PoisonError::into_inner);
        s.closed
    }

    /// The writer thread's loop: writes what the loop could not send at once, until the outbox
    /// is closed (`Ok`) or a write fails or makes no progress for `patience` (the error; the
    /// caller reconnects or gives up).
    pub(crate) fn pump(
        &self,
        stream: &mut TcpStream,
        patience: Duration,
        idle_check: Duration,
        stopping: impl Fn() -> bool,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        loop {
            {
                let mut s = lock(&self.state);
                s.writing = false;
                while s.pending.is_empty() && !s.closed {
                    if stopping() {
                        return Ok(());
                    }
                    s = self.wake.wait_timeout(s, idle_check).unwrap_or_else(std::sync::PoisonError::into_inner).0;
                }
                if s.pending.is_empty() {
                    return Ok(()); // closed, and everything written
                }
                std::mem::swap(&mut buf, &mut s.pending);
                s.writing = true;
            }
            let written = write_patiently(stream, &buf, patience);
            buf.clear();
            if buf.capacity() > 1 << 20 {
                buf = Vec::new(); // do not keep a snapshot-sized buffer for ever
            }
            if let Err(e) = written {
                lock(&self.state).writing = false;
                return Err(e);
            }
        }
    }
}

/// Writes all of `bytes`, on a blocking socket (with a write timeout) or a non-blocking one
/// (the loop reads client connections without blocking, and the flag is the socket's): a
/// socket that takes nothing for `patience` is an error.
fn write_patiently(stream: &mut TcpStream, mut bytes: &[u8], patience: Duration) -> io::Result<()> {
    let mut progress = Instant::now();
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if progress.elapsed() >= patience {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "the other end takes no bytes"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes as much of `bytes` as the socket takes without blocking.
fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let socket = SockRef::from(stream);
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.send_with_flags(&bytes[sent..], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    #[test]
    fn bytes_arrive_in_order_whether_sent_at_once_or_by_the_writer() {
        let (a, mut b) = pair();
        let outbox = Arc::new(Outbox::new(16 << 20));
        outbox.connected(a.try_clone().unwrap());
        let (o, mut w) = (Arc::clone(&outbox), a);
        let writer =
            std::thread::spawn(move || o.pump(&mut w, Duration::from_secs(5), Duration::from_millis(10), || false));
        // Far more than a socket buffer, so that the writer thread has to take over.
        let mut want = Vec::new();
        for i in 0u32..20_000 {
            let frame: Vec<u8> = (0..100).map(|k| (i.wrapping_mul(31) + k) as u8).collect();
            assert_eq!(outbox.send(&frame), Sent::Taken);
            want.extend_from_slice(&frame);
        }
        outbox.close();
        let mut got = vec![0; want.len()];
        b.read_exact(&mut got).unwrap();
        assert!(got == want, "bytes reordered or lost");
        writer.join().unwrap().unwrap();
    }

    #[test]
    fn frames_are_dropped_when_the_link_is_down_or_full() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.send(b"abc"), Sent::Dropped, "no connection yet");
        let (a, _b) = pair();
        outbox.connected(a);
        {
            // Pretend the writer is busy, so everything queues.
            lock(&outbox.state).writing = true;
        }
        assert_eq!(outbox.send(&[1; 8]), Sent::Taken);
        assert_eq!(outbox.send(&[2; 8]), Sent::Dropped, "over the limit");
        outbox.disconnected();
        assert!(lock(&outbox.state).pending.is_empty());
    }

    #[test]
    fn a_large_frame_fits_when_nothing_is_pending() {
        let outbox = Outbox::new(10);
        let (a, _b) = pair();
        outbox.connected(a);
        lock(&outbox.state).writing = true;
        assert_eq!(outbox.send(&[7; 100]), Sent::Taken);
    }
}
