//! What the transport threads tell a server's event loop through its channel (`Inbox`, in `inbound.rs`).

use crate::client_conn::ClientConn;
use crate::tracker::SocketGuard;
use model::{ClientRequest, NodeId, PeerMsg};
use std::net::TcpStream;

/// What the transport threads tell the loop (messages on connections it reads itself do not
/// come this way; see `inbound.rs`).
pub(crate) enum Event {
    /// A peer's connection, after the handshake: the loop reads it from now on.
    PeerConn {
        from: NodeId,
        stream: TcpStream,
        guard: SocketGuard,
    },
    /// A clerk's connection, after the handshake, with where its replies go.
    ClientOpen {
        conn: u64,
        replies: ClientConn,
        stream: TcpStream,
        guard: SocketGuard,
    },
    /// A frame a fault delayed.
    Peer {
        from: NodeId,
        msg: PeerMsg,
    },
    Client {
        conn: u64,
        request: ClientRequest,
    },
    Stop,
}
