//! The wire: length-prefixed frames of postcard-encoded values, and the handshake that opens
//! every connection.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload. The reader refuses a
//! length above its limit before allocating anything, and a payload that does not decode to
//! exactly one value (bytes left over count as garbage): either closes that connection, and only
//! that one.
//!
//! Every connection starts with the dialer's [`Hello`] and the acceptor's [`HelloReply`]. The
//! hello names what the dialer believes it is talking to (magic, protocol version, cluster id,
//! and for a peer link the sender's and receiver's node ids), so that a server of another
//! cluster, a stray process or a client on the wrong port is refused with a reason instead of
//! having its bytes taken for Raft messages.
//!
//! After the handshake a peer link carries [`model::PeerMsg`]s from dialer to acceptor only
//! (each server dials every peer once, so each direction has its own connection), and a client
//! connection carries [`model::ClientRequest`]s in and [`model::ClientReply`]s out.

use model::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The first bytes of every hello: not kvraft if they differ.
pub const MAGIC: [u8; 8] = *b"kvraft\r\n";

/// Bumped whenever a frame's encoding or meaning changes; peers of different versions refuse
/// each other. Version 2: `PeerMsg::InstallSnapshot` (log compaction).
pub const PROTOCOL_VERSION: u32 = 2;

/// Frames up to this size are read into a buffer sized at once; larger ones (an InstallSnapshot
/// may be announced at up to the snapshot limit) grow the buffer only as their bytes arrive, so
/// an announced length alone never makes the reader allocate it.
const EAGER_READ: usize = 64 << 10;
/// A buffer grown past this by a large frame is released before the next frame is read.
const KEEP_BUFFER: usize = 1 << 20;

/// The largest hello or hello reply accepted (they are tiny; this only bounds garbage).
pub const MAX_HELLO_BYTES: usize = 4096;

/// How long an acceptor waits for a hello, and a dialer for the reply.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who is dialing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dialer {
    /// Server `from` opens its link to server `to`.
    Peer { from: NodeId, to: NodeId },
    /// A clerk.
    Client,
}

/// The dialer's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 8],
    pub version: u32,
    pub cluster_id: u64,
    pub dialer: Dialer,
}

impl Hello {
    #[must_use]
    pub fn new(cluster_id: u64, dialer: Dialer) -> Hello {
        Hello { magic: MAGIC, version: PROTOCOL_VERSION, cluster_id, dialer }
    }
}

/// The acceptor's answer to a hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted by server `node`.
    Welcome { node: NodeId },
    /// Refused; the connection closes after this frame.
    Refused { reason: String },
}

/// Why reading a frame failed. Every variant ends the connection.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The peer announced a frame longer than the limit.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// The connection closed inside a frame.
    Truncated,
    /// The payload is not one value of the expected type.
    Garbage(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Truncated => write!(f, "connection closed in the middle of a frame"),
            FrameError::Garbage(why) => write!(f, "undecodable frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> FrameError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    }
}

/// Appends one frame holding `value` to `out` (which may already hold earlier frames), and
/// returns the payload length.
///
/// # Errors
/// When the payload exceeds `max` (the receiver would refuse it): `out` is then left as it was.
/// When the value cannot be encoded at all (not possible for the types this crate sends): `out`
/// is then emptied.
pub fn encode_frame<T: Serialize>(value: &T, max: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let buf = postcard::to_extend(value, std::mem::take(out)).map_err(|e| format!("cannot encode: {e}"))?;
    *out = buf;
    let len = out.len() - start - 4;
    match u32::try_from(len) {
        Ok(n) if len <= max => {
            out[start..start + 4].copy_from_slice(&n.to_be_bytes());
            Ok(len)
        }
        _ => {
            out.truncate(start);
            Err(format!("frame of {len} bytes exceeds the limit of {max} bytes"))
        }
    }
}

/// Writes one frame holding `value`.
///
/// # Errors
/// On an IO error, or when the value cannot be framed (see [`encode_frame`]).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, value: &T, max: usize) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(value, max, &mut buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&buf)?;
    w.flush()
}

/// Reads the next frame's payload into `buf`. `Ok(false)`: the connection closed cleanly
/// between frames.
///
/// # Errors
/// See [`FrameError`].
pub fn read_frame_bytes<R: Read>(r: &mut R, max: usize, buf: &mut Vec<u8>) -> Result<bool, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
    buf.clear();
    if len <= EAGER_READ {
        buf.resize(len, 0);
        r.read_exact(buf)?;
    } else if r.take(len as u64).read_to_end(buf)? < len {
        return Err(FrameError::Truncated);
    }
    Ok(true)
}

/// Decodes a payload holding exactly one `T`.
///
/// # Errors
/// [`FrameError::Garbage`] when it does not.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::Garbage(format!("{} bytes after the value", rest.len()))),
        Err(e) => Err(FrameError::Garbage(e.to_string())),
    }
}

/// Reassembles frames from reads that may stop anywhere (a non-blocking read, a read timeout).
#[derive(Default)]
pub(crate) struct Assembler {
    pending: Vec<u8>,
    /// Where the next frame starts in `pending` (what is before it was consumed).
    start: usize,
}

impl Assembler {
    /// Adds bytes read from the connection.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        if self.pending.is_empty() && self.pending.capacity() > KEEP_BUFFER {
            self.pending = Vec::new(); // do not keep a snapshot-sized buffer for ever
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Nothing of a frame is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.pending.len()
    }

    /// The next complete frame's value, if one has arrived. A length over `max` is an error as
    /// soon as the length is known, before the frame's bytes are.
    pub(crate) fn next_frame<T: DeserializeOwned>(&mut self, max: usize) -> Result<Option<T>, FrameError> {
        let rest = &self.pending[self.start..];
        let Some(header) = rest.first_chunk::<4>() else { return Ok(None) };
        let len = u32::from_be_bytes(*header) as usize;
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let value = decode(&rest[4..4 + len]);
        self.start += 4 + len;
        value.map(Some)
    }
}

/// Reads and decodes the next frame. `Ok(None)`: the connection closed cleanly between frames.
///
/// # Errors
/// See [`FrameError`].
pub fn read_frame<R: Read, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<Option<T>, FrameError> {
    if !read_frame_bytes(r, max, buf)? {
        return Ok(None);
    }
    decode(buf).map(Some)
}

/// Why dialing failed.
#[derive(Debug)]
pub enum DialError {
    Io(io::Error),
    Frame(FrameError),
    /// The acceptor refused the hello and said why.
    Refused(String),
    /// The acceptor is another node than the one dialed.
    WrongNode {
        expected: NodeId,
        found: NodeId,
    },
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Io(e) => write!(f, "{e}"),
            DialError::Frame(e) => write!(f, "handshake failed: {e}"),
            DialError::Refused(reason) => write!(f, "refused: {reason}"),
            DialError::WrongNode { expected, found } => {
                write!(f, "the server there is {found}, not {expected}")
            }
        }
    }
}

impl std::error::Error for DialError {}

/// Connects to `addr`, says `hello`, and waits for the welcome of server `expect`. The returned
/// stream has no timeouts set and `TCP_NODELAY` on.
///
/// # Errors
/// See [`DialError`].
pub fn dial(
    addr: SocketAddr,
    hello: &Hello,
    expect: NodeId,
    connect_timeout: Duration,
) -> Result<TcpStream, DialError> {
    let mut stream = TcpStream::connect_timeout(&addr, connect_timeout).map_err(DialError::Io)?;
    stream.set_nodelay(true).map_err(DialError::Io)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(DialError::Io)?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(DialError::Io)?;
    write_frame(&mut stream, hello, MAX_HELLO_BYTES).map_err(DialError::Io)?;
    let mut buf = Vec::new();
    let reply: HelloReply = match read_frame(&mut stream, MAX_HELLO_BYTES, &mut buf) {
        Ok(Some(reply)) => reply,
        Ok(None) => return Err(DialError::Frame(FrameError::Truncated)),
        Err(e) => return Err(DialError::Frame(e)),
    };
    match reply {
        HelloReply::Welcome { node } if node == expect => {}
        HelloReply::Welcome { node } => return Err(DialError::WrongNode { expected: expect, found: node }),
        HelloReply::Refused { reason } => return Err(DialError::Refused(reason)),
    }
    stream.set_read_timeout(None).map_err(DialError::Io)?;
    stream.set_write_timeout(None).map_err(DialError::Io)?;
    Ok(stream)
}

/// What an acceptor expects from a hello.
#[derive(Clone, Debug)]
pub struct Expect {
    pub cluster_id: u64,
    pub node: NodeId,
    /// For a peer port: the members that may dial (this node excluded). `None`: a client port.
    pub peers: Option<Vec<NodeId>>,
}

/// Checks a hello against what this acceptor expects; `Err` carries the reason to log and send
/// back.
///
/// # Errors
/// The reason for refusing.
pub fn check_hello(hello: &Hello, expect: &Expect) -> Result<(), String> {
    if hello.magic != MAGIC {
        return Err("not a kvraft hello (bad magic)".into());
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(format!("protocol version {} is not this server's version {PROTOCOL_VERSION}", hello.version));
    }
    if hello.cluster_id != expect.cluster_id {
        return Err(format!(
            "cluster id {} does not match this server's cluster id {}",
            hello.cluster_id, expect.cluster_id
        ));
    }
    match (&hello.dialer, &expect.peers) {
        (Dialer::Client, None) => Ok(()),
        (Dialer::Client, Some(_)) => Err("a client dialed the peer port".into()),
        (Dialer::Peer { .. }, None) => Err("a server dialed the client port".into()),
        (Dialer::Peer { from, to }, Some(peers)) => {
            if *to != expect.node {
                Err(format!("this is {}, not {to}", expect.node))
            } else if !peers.contains(from) {
                Err(format!("{from} is not a member of this cluster"))
            } else {
                Ok(())
            }
        }
    }
}

/// The acceptor's side of the handshake: reads the hello (bounded in size and time), checks it,
/// answers, and returns it when accepted. On refusal the reason has been sent back.
///
/// # Errors
/// The reason the connection is being closed.
pub fn accept_hello(stream: &mut TcpStream, expect: &Expect) -> Result<Hello, String> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let hello: Hello = match read_frame(stream, MAX_HELLO_BYTES, &mut buf) {
        Ok(Some(hello)) => hello,
        Ok(None) => return Err("closed before the hello".into()),
        Err(e) => return Err(format!("bad hello: {e}")),
    };
    let answer = match check_hello(&hello, expect) {
        Ok(()) => HelloReply::Welcome { node: expect.node },
        Err(reason) => HelloReply::Refused { reason },
    };
    write_frame(stream, &answer, MAX_HELLO_BYTES).map_err(|e| e.to_string())?;
    if let HelloReply::Refused { reason } = answer {
        return Err(reason);
    }
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    stream.set_write_timeout(None).map_err(|e| e.to_string())?;
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ClientId, ClientRequest, Op, Seq};

    #[test]
    fn a_frame_round_trips() {
        let req = ClientRequest { client: ClientId(7), seq: Seq(3), op: Op::Get { key: "k".into() } };
        let mut buf = Vec::new();
        encode_frame(&req, 1024, &mut buf).unwrap();
        let mut scratch = Vec::new();
        let back: Option<ClientRequest> = read_frame(&mut buf.as_slice(), 1024, &mut scratch).unwrap();
        assert_eq!(back, Some(req));
    }

    #[test]
    fn an_oversized_frame_is_refused_before_reading_it() {
        let mut bytes = 1_000_000u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let mut scratch = Vec::new();
        let r: Result<Option<ClientRequest>, _> = read_frame(&mut bytes.as_slice(), 1024, &mut scratch);
        assert!(matches!(r, Err(FrameError::TooLarge { len: 1_000_000, max: 1024 })));
    }

    #[test]
    fn a_large_frame_is_read_as_its_bytes_arrive() {
        let value = "s".repeat(3 * EAGER_READ);
        let mut buf = Vec::new();
        encode_frame(&value, 4 * EAGER_READ, &mut buf).unwrap();
        let mut scratch = Vec::new();
        let back: Option<String> = read_frame(&mut buf.as_slice(), 4 * EAGER_READ, &mut scratch).unwrap();
        assert_eq!(back, Some(value));
        // Announced but cut short: truncated, whatever the announced length.
        let cut = &buf[..buf.len() - 1];
        let r: Result<Option<String>, _> = read_frame(&mut &cut[..], 4 * EAGER_READ, &mut scratch);
        assert!(matches!(r, Err(FrameError::Truncated)), "{r:?}");
        let mut huge = (1u32 << 30).to_be_bytes().to_vec();
        huge.extend_from_slice(b"abc");
        let r: Result<Option<String>, _> = read_frame(&mut huge.as_slice(), 1 << 31, &mut scratch);
        assert!(matches!(r, Err(FrameError::Truncated)), "{r:?}");
        assert!(scratch.capacity() < 1 << 20, "nothing near the announced 1 GiB was allocated");
    }

    #[test]
    fn trailing_bytes_are_garbage() {
        let mut buf = Vec::new();
        encode_frame(&Hello::new(1, Dialer::Client), 1024, &mut buf).unwrap();
        buf.push(0);
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) + 1;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let mut scratch = Vec::new();
        let r: Result<Option<Hello>, _> = read_frame(&mut buf.as_slice(), 1024, &mut scratch);
        assert!(matches!(r, Err(FrameError::Garbage(_))));
    }

    #[test]
    fn encode_refuses_what_the_receiver_would_refuse() {
        let mut buf = vec![1, 2, 3];
        let big = "x".repeat(2000);
        assert!(encode_frame(&big, 1024, &mut buf).is_err());
        assert_eq!(buf, vec![1, 2, 3]);
    }

    #[test]
    fn hellos_of_another_cluster_or_node_are_refused() {
        let expect = Expect { cluster_id: 1, node: NodeId(2), peers: Some(vec![NodeId(1), NodeId(3)]) };
        let ok = Hello::new(1, Dialer::Peer { from: NodeId(1), to: NodeId(2) });
        assert_eq!(check_hello(&ok, &expect), Ok(()));
        let other_cluster = Hello::new(9, Dialer::Peer { from: NodeId(1), to: NodeId(2) });
        assert!(check_hello(&other_cluster, &expect).unwrap_err().contains("cluster id 9"));
        let wrong_to = Hello::new(1, Dialer::Peer { from: NodeId(1), to: NodeId(3) });
        assert!(check_hello(&wrong_to, &expect).is_err());
        let stranger = Hello::new(1, Dialer::Peer { from: NodeId(4), to: NodeId(2) });
        assert!(check_hello(&stranger, &expect).is_err());
        let client = Hello::new(1, Dialer::Client);
        assert!(check_hello(&client, &expect).is_err());
        let old = Hello { version: 0, ..ok };
        assert!(check_hello(&old, &expect).unwrap_err().contains("protocol version"));
    }

    #[test]
    fn the_assembler_finds_frames_however_the_bytes_arrive() {
        let mut wire = Vec::new();
        for v in ["a", "bb", ""] {
            encode_frame(&v.to_string(), 1024, &mut wire).unwrap();
        }
        let mut frames = Assembler::default();
        let mut got = Vec::new();
        for byte in &wire {
            frames.extend(std::slice::from_ref(byte));
            while let Some(v) = frames.next_frame::<String>(1024).unwrap() {
                got.push(v);
            }
        }
        assert_eq!(got, ["a", "bb", ""]);
        assert!(frames.is_empty());
        // An oversized length is refused as soon as the 4 bytes of it are in.
        frames.extend(&2000u32.to_be_bytes());
        assert!(matches!(frames.next_frame::<String>(1024), Err(FrameError::TooLarge { len: 2000, max: 1024 })));
    }
}
