//! The blocking client library: [`Clerk`] runs the core's clerk state machine
//! ([`model::clerk_step`]) over TCP. The core decides whom to ask and when to retry (same
//! client id and seq, leader hint, rotation); this type only sends what it says, delivers
//! replies, and fires its retry timer.
//!
//! The clerk has no threads: with one operation in flight it reads the connection of the
//! server it last sent to, until a reply, the retry deadline or the connection's end. A late
//! reply on another connection is not read (as if lost); it answered an older attempt, and the
//! retry gets the same answer from the session table.
//!
//! The retry timer fires early in two cases the environment can see: the target's connection
//! closed, or a send to it could not be made (it will not answer). Firing a timer at any moment
//! is allowed by the core's contract. When every server in a row has failed or redirected (no
//! leader yet, or the cluster is down), the clerk waits a growing pause (10 ms doubling, at most
//! 500 ms) before each further send: a delayed message is also within the contract, and this
//! keeps clerks from spinning while an election is under way.

use crate::config::ClusterMap;
use crate::frame::{self, Dialer, FrameError, Hello};
use model::{
    clerk_step, ClerkInput, ClerkOutput, ClientId, ClientReply, ClientRequest, ClientResult, NodeId, Op, OpOutput,
};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How a clerk talks to a cluster.
#[derive(Clone, Debug)]
pub struct ClerkConfig {
    pub cluster_id: u64,
    /// Every server's client address.
    pub servers: ClusterMap,
    /// How long to wait for an answer before asking the next server.
    pub retry_timeout: Duration,
    /// Give up on an operation after this long; `None`: keep trying for ever.
    pub deadline: Option<Duration>,
    pub connect_timeout: Duration,
    /// The largest reply accepted.
    pub max_reply: usize,
}

impl ClerkConfig {
    /// Defaults: retry after 1 s, no deadline.
    #[must_use]
    pub fn new(cluster_id: u64, servers: ClusterMap) -> ClerkConfig {
        ClerkConfig {
            cluster_id,
            servers,
            retry_timeout: Duration::from_secs(1),
            deadline: None,
            connect_timeout: Duration::from_secs(1),
            max_reply: 1 << 30,
        }
    }
}

/// Why an operation did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClerkError {
    /// No server answered within the deadline. The operation may or may not take effect.
    Deadline { op: String, waited: Duration, last_error: Option<String> },
}

impl fmt::Display for ClerkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClerkError::Deadline { op, waited, last_error } => {
                write!(f, "no answer from the cluster for {op} within {waited:.1?}")?;
                if let Some(e) = last_error {
                    write!(f, " (last problem: {e})")?;
                }
                write!(f, "; it may or may not have taken effect")
            }
        }
    }
}

impl std::error::Error for ClerkError {}

/// A fresh client id: 64 random bits from the OS-seeded generator.
///
/// Random rather than registered: a registered id would cost a round through the Raft log (and
/// a new command in the core) before a clerk's first operation, whereas 64 random bits are
/// unique across processes and restarts without any coordination. With n clerks ever made, the
/// chance that two share an id is about n²/2⁶⁵: below 10⁻⁷ even for a million clerks.
#[must_use]
pub fn random_client_id() -> ClientId {
    ClientId(rand::random())
}

enum Stepped {
    Done(OpOutput),
    Waiting,
}

/// Reads frames from a blocking connection with a deadline; bytes of a frame that is not
/// complete yet are kept for the next call.
#[derive(Default)]
pub(crate) struct FrameReader {
    frames: frame::Assembler,
}

impl FrameReader {
    /// The next frame's value, or `Ok(None)` when `deadline` passes first.
    pub(crate) fn next<T: DeserializeOwned>(
        &mut self,
        stream: &mut TcpStream,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Option<T>, FrameError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(value) = self.frames.next_frame(max)? {
                return Ok(Some(value));
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    Some(left)
                }
                None => None,
            };
            stream.set_read_timeout(timeout)?;
            match stream.read(&mut chunk) {
                Ok(0) if self.frames.is_empty() => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(n) => self.frames.extend(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
    }
}

struct Conn {
    stream: TcpStream,
    reader: FrameReader,
}

/// A blocking clerk: one operation at a time, retried until it completes (or its deadline).
pub struct Clerk {
    core: model::Clerk,
    config: ClerkConfig,
    conns: HashMap<NodeId, Conn>,
    /// Sends that failed, closed connections and redirects since the last success (for pacing).
    failures: u32,
    /// The next send follows a server's leader hint: it goes without a pause, at most
    /// `servers` times in a row (stale hints during an election could point back and forth).
    follow_hint: bool,
    hints_in_a_row: u32,
    /// The last connection problem, for the deadline error.
    last_error: Option<String>,
    buf: Vec<u8>,
}

impl fmt::Debug for Clerk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clerk({})", self.core)
    }
}

impl Clerk {
    /// A clerk with a fresh random id. Connections are made when first needed.
    ///
    /// # Panics
    /// If `config.servers` is empty.
    #[must_use]
    pub fn new(config: ClerkConfig) -> Clerk {
        let servers: Vec<NodeId> = config.servers.keys().copied().collect();
        Clerk {
            core: model::Clerk::new(random_client_id(), &servers),
            config,
            conns: HashMap::new(),
            failures: 0,
            follow_hint: false,
            hints_in_a_row: 0,
            last_error: None,
            buf: Vec::new(),
        }
    }

    /// This clerk's client id (it changes after an operation is abandoned at its deadline).
    #[must_use]
    pub fn id(&self) -> ClientId {
        self.core.id
    }

    /// # Errors
    /// [`ClerkError::Deadline`].
    pub fn get(&mut self, key: &str) -> Result<String, ClerkError> {
        match self.call(Op::Get { key: key.to_string() })? {
            OpOutput::Value(v) => Ok(v),
            OpOutput::Done => Ok(String::new()),
        }
    }

    /// # Errors
    /// [`ClerkError::Deadline`].
    pub fn put(&mut self, key: &str, value: &str) -> Result<(), ClerkError> {
        self.call(Op::Put { key: key.to_string(), value: value.to_string() }).map(drop)
    }

    /// # Errors
    /// [`ClerkError::Deadline`].
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), ClerkError> {
        self.call(Op::Append { key: key.to_string(), value: value.to_string() }).map(drop)
    }

    /// Runs one operation to completion: at most once, however many times it is resent.
    ///
    /// # Errors
    /// [`ClerkError::Deadline`] when the configured deadline passes first. The clerk then takes
    /// a new client id, since the core's clerk has no way to abandon an operation.
    pub fn call(&mut self, op: Op) -> Result<OpOutput, ClerkError> {
        let start = Instant::now();
        let give_up = self.config.deadline.map(|d| start + d);
        let shown = op.to_string();
        self.last_error = None;
        let mut retry_at = None;
        if let Stepped::Done(output) = self.input(ClerkInput::Invoke(op), &mut retry_at) {
            return Ok(output);
        }
        loop {
            let now = Instant::now();
            if give_up.is_some_and(|g| now >= g) {
                self.abandon();
                let last_error = self.last_error.take();
                return Err(ClerkError::Deadline { op: shown, waited: now - start, last_error });
            }
            let wake = match (retry_at, give_up) {
                (Some(r), Some(g)) => Some(r.min(g)),
                (r, g) => r.or(g),
            };
            let input = match self.wait_reply(wake) {
                Some(input) => input,
                None if retry_at.is_some_and(|r| Instant::now() >= r) => ClerkInput::Timeout,
                None => continue, // the deadline: checked at the top
            };
            if let Stepped::Done(output) = self.input(input, &mut retry_at) {
                return Ok(output);
            }
        }
    }

    /// Waits until `wake` for the target's reply. `Some(Timeout)` when its connection failed
    /// (it will not answer: the retry timer fires now); `None` at `wake`.
    fn wait_reply(&mut self, wake: Option<Instant>) -> Option<ClerkInput> {
        let target = self.core.target();
        let max = self.config.max_reply;
        let Some(conn) = self.conns.get_mut(&target) else {
            // Nothing to read: the send failed and the retry timer is due now (or paced).
            if let Some(w) = wake {
                std::thread::sleep(w.saturating_duration_since(Instant::now()));
            }
            return None;
        };
        match conn.reader.next::<ClientReply>(&mut conn.stream, max, wake) {
            Ok(Some(reply)) => {
                if let ClientResult::WrongLeader { hint } = reply.result {
                    self.failures += 1;
                    self.follow_hint = hint.is_some_and(|h| h != target);
                } else {
                    self.failures = 0;
                    self.hints_in_a_row = 0;
                }
                Some(ClerkInput::Reply { from: target, reply })
            }
            Ok(None) => None,
            Err(e) => {
                if !matches!(e, FrameError::Io(_)) {
                    tracing::warn!(server = %target, error = %e, "bad reply: closing the connection");
                }
                tracing::debug!(server = %target, error = %e, "connection to the target lost");
                self.drop_conn(target);
                self.failures += 1;
                self.last_error = Some(format!("connection to {target} lost: {e}"));
                Some(ClerkInput::Timeout)
            }
        }
    }

    /// Steps the core clerk and executes its output: sends its request, and sets or cancels
    /// the retry timer `retry_at`.
    fn input(&mut self, input: ClerkInput, retry_at: &mut Option<Instant>) -> Stepped {
        let shown = tracing::enabled!(tracing::Level::TRACE).then(|| input.to_string());
        let (next, out) = clerk_step(&self.core, input);
        self.core = next;
        if let Some(input) = shown {
            tracing::trace!(clerk = %self.core.id, "{input} -> {out}");
        }
        let ClerkOutput { send, done, retry_timer, retried: _ } = out;
        if let Some(output) = done {
            if retry_timer == Some(false) {
                *retry_at = None;
            }
            return Stepped::Done(output);
        }
        let mut send_failed = false;
        if let Some((to, request)) = send {
            std::thread::sleep(self.pause());
            if let Err(e) = self.send(to, &request) {
                tracing::debug!(server = %to, error = %e, "cannot send request");
                self.failures += 1;
                self.last_error = Some(format!("{to}: {e}"));
                send_failed = true;
            }
        }
        // The retry timer starts after the pause: started before it, a pause longer than the
        // retry timeout (500 ms at most, against a retry timeout the caller may set lower) left
        // no time to read any answer, and the clerk cycled through the servers for ever.
        match retry_timer {
            Some(true) => *retry_at = Some(Instant::now() + self.config.retry_timeout),
            Some(false) => *retry_at = None,
            None => {}
        }
        if send_failed {
            // The target cannot answer: fire the retry timer now.
            *retry_at = Some(Instant::now());
        }
        Stepped::Waiting
    }

    /// No pause while some server has not failed yet, or to follow a leader hint (a few times
    /// in a row); then 10 ms doubling up to 500 ms.
    fn pause(&mut self) -> Duration {
        let n = u32::try_from(self.config.servers.len()).unwrap_or(u32::MAX);
        let hinted = std::mem::take(&mut self.follow_hint);
        if hinted && self.hints_in_a_row < n {
            self.hints_in_a_row += 1;
            return Duration::ZERO;
        }
        if self.failures < n {
            return Duration::ZERO;
        }
        let k = (self.failures - n).min(6);
        Duration::from_millis(10 << k).min(Duration::from_millis(500))
    }

    fn send(&mut self, to: NodeId, request: &ClientRequest) -> Result<(), String> {
        if self.conns.get(&to).is_some_and(|c| closed_by_server(&c.stream)) {
            // The server closed it (it restarted, say): sending there would only cost a retry.
            self.drop_conn(to);
        }
        if !self.conns.contains_key(&to) {
            let conn = self.connect(to)?;
            self.conns.insert(to, conn);
        }
        self.buf.clear();
        frame::encode_frame(request, usize::MAX, &mut self.buf)?;
        let conn = self.conns.get_mut(&to).expect("just connected");
        if let Err(e) = conn.stream.write_all(&self.buf) {
            self.drop_conn(to);
            return Err(e.to_string());
        }
        Ok(())
    }

    fn drop_conn(&mut self, to: NodeId) {
        if let Some(conn) = self.conns.remove(&to) {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }

    fn connect(&mut self, to: NodeId) -> Result<Conn, String> {
        let addr = *self.config.servers.get(&to).ok_or_else(|| format!("unknown server {to}"))?;
        let hello = Hello::new(self.config.cluster_id, Dialer::Client);
        let stream = frame::dial(addr, &hello, to, self.config.connect_timeout).map_err(|e| {
            let refused = matches!(e, frame::DialError::Refused(_) | frame::DialError::WrongNode { .. });
            let e = e.to_string();
            if refused && self.last_error.as_deref() != Some(format!("{to}: {e}").as_str()) {
                tracing::warn!(server = %to, %addr, error = %e, "server refused the clerk");
            }
            e
        })?;
        let _ = stream.set_write_timeout(Some(self.config.retry_timeout));
        Ok(Conn { stream, reader: FrameReader::default() })
    }

    /// Gives up the operation in flight by taking a new identity: the core's clerk cannot drop
    /// an operation, and a new client id makes the abandoned (client, seq) irrelevant. The
    /// leader hint is kept.
    fn abandon(&mut self) {
        let servers: Vec<NodeId> = self.core.servers.iter().copied().collect();
        let mut fresh = model::Clerk::new(random_client_id(), &servers);
        fresh.target = self.core.target;
        self.core = fresh;
    }
}

/// Whether the server has closed `stream` (a read would see the end): one non-blocking peek.
/// Bytes waiting (a late reply) or nothing yet both mean open.
fn closed_by_server(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    match socket2::SockRef::from(stream).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
    }
}

impl Drop for Clerk {
    fn drop(&mut self) {
        for conn in self.conns.values() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }
}
