//! Plumbing shared by a server's threads: a [`Tracker`] that knows every live thread and
//! socket so that stopping a server can close them all and wait for the threads, and the
//! accept loop.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Inner {
    stopping: AtomicBool,
    next_id: AtomicU64,
    sockets: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<usize>,
    idle: Condvar,
}

/// Live threads and sockets of one server.
#[derive(Clone, Default)]
pub(crate) struct Tracker {
    inner: Arc<Inner>,
}

/// Unregisters a socket when the connection's thread is done with it.
pub(crate) struct SocketGuard {
    tracker: Tracker,
    id: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.tracker.inner.sockets).remove(&self.id) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Decrements the thread count when a tracked thread ends, however it ends.
struct ThreadGuard(Tracker);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        let mut n = lock(&self.0.inner.threads);
        *n -= 1;
        if *n == 0 {
            self.0.inner.idle.notify_all();
        }
    }
}

/// Locks a mutex, ignoring poisoning (the data guarded here stays consistent across panics).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker::default()
    }

    pub(crate) fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// A fresh id for a connection.
    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts a tracked thread.
    pub(crate) fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
        *lock(&self.inner.threads) += 1;
        let guard = ThreadGuard(self.clone());
        let spawned = thread::Builder::new().name(name).spawn(move || {
            let _guard = guard;
            f();
        });
        // On failure the closure (and with it the guard) was dropped: the count is right again.
        spawned.map(drop)
    }

    /// Registers a socket to be shut down by [`Tracker::stop`]. When already stopping, shuts it
    /// down at once and returns `None`.
    pub(crate) fn register(&self, stream: &TcpStream) -> Option<SocketGuard> {
        let clone = stream.try_clone().ok()?;
        let mut sockets = lock(&self.inner.sockets);
        if self.stopping() {
            let _ = clone.shutdown(Shutdown::Both);
            return None;
        }
        let id = self.next_id();
        sockets.insert(id, clone);
        Some(SocketGuard { tracker: self.clone(), id })
    }

    /// Marks the server as stopping and shuts down every registered socket, so that blocked
    /// reads and writes return.
    pub(crate) fn stop(&self) {
        let sockets = lock(&self.inner.sockets);
        self.inner.stopping.store(true, Ordering::SeqCst);
        for s in sockets.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Waits until every tracked thread has ended; false on timeout.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n = lock(&self.inner.threads);
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            n = self.inner.idle.wait_timeout(n, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        true
    }
}

/// Runs `listener`'s accept loop on a tracked thread, handing each connection to `serve` on a
/// thread of its own, until the tracker stops (see [`wake`]).
pub(crate) fn spawn_acceptor<F>(tracker: &Tracker, name: String, listener: TcpListener, serve: F) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let serve = Arc::new(serve);
    let t = tracker.clone();
    let conn_name = format!("{name}-conn");
    tracker.spawn(name, move || loop {
        match listener.accept() {
            Ok((stream, addr)) => {
                if t.stopping() {
                    return;
                }
                let serve = Arc::clone(&serve);
                if let Err(e) = t.spawn(conn_name.clone(), move || serve(stream, addr)) {
                    tracing::warn!(error = %e, "cannot start a connection thread");
                }
            }
            Err(e) => {
                if t.stopping() {
                    return;
                }
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(error = %e, "accept failed");
                thread::sleep(Duration::from_millis(50));
            }
        }
    })
}

/// Unblocks an accept loop on `addr` after [`Tracker::stop`], by connecting to it.
pub(crate) fn wake(addr: SocketAddr) {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    };
    let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
}
