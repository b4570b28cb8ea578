//! The loop's end of one clerk connection: it frames the replies of a batch and hands them to
//! the connection's [`Outbox`] in one piece (see `client_port.rs` for how a connection starts).

use crate::faults::{Fate, Faults};
use crate::frame;
use crate::outbox::{Outbox, Sent};
use model::{ClientReply, NodeId};
use std::sync::Arc;

/// The loop's end of one client connection. Dropping it ends the connection's writer thread.
pub(crate) struct ClientConn {
    outbox: Arc<Outbox>,
    max_reply: usize,
    /// This server, and the fault hook that may drop replies (labrpc's unreliable mode).
    me: NodeId,
    faults: Faults,
    /// The replies of the current batch, sent together by [`ClientConn::flush`].
    buf: Vec<u8>,
}

impl ClientConn {
    /// The loop's end of a connection whose writer thread pumps `outbox`.
    pub(crate) fn new(outbox: Arc<Outbox>, max_reply: usize, me: NodeId, faults: Faults) -> ClientConn {
        ClientConn { outbox, max_reply, me, faults, buf: Vec::new() }
    }

    /// Adds `reply` to what [`ClientConn::flush`] sends.
    pub(crate) fn push(&mut self, reply: &ClientReply) {
        if self.faults.client_reply(self.me, reply.client) == Fate::Drop {
            return;
        }
        if let Err(e) = frame::encode_frame(reply, self.max_reply, &mut self.buf) {
            tracing::error!(error = %e, "reply not sent");
        }
    }

    /// Nothing pushed since the last flush.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Sends the replies pushed since the last flush.
    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.outbox.send(&self.buf) == Sent::Dropped {
            tracing::debug!(bytes = self.buf.len(), "client connection gone or too far behind: replies dropped");
        }
        self.buf.clear();
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        self.outbox.close();
    }
}
