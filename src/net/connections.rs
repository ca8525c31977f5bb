//! Every open connection, with what the loop keeps across them: the slab
//! that gives each its key, the dirty list of those to flush this turn, and
//! the [`Traffic`] counts the core reads.
//!
//! They live together because the core's [`Outbox`](crate::broker::Outbox)
//! needs all three at once: sending to a connection grows its output, marks
//! it dirty and counts the bytes. [`Connections::outbox`] is the one way to
//! get one. Registering a socket with the poll, and taking it out again, is
//! done here too, so a connection is in the slab exactly while its socket is
//! in the poll, whether it was accepted or dialled.
//!
//! What it must not know: listeners, the read and write policy (budgets,
//! throttling), or the core.

use std::io;

use log::debug;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::broker::{ConnId, Traffic};

use super::conn::{Connection, Role};
use super::outbox::NetOutbox;
use super::stream::Stream;

/// The connections and what is counted across them.
pub(crate) struct Connections {
    pub(super) slab: Slab<Connection>,
    /// Connections with output to flush at the end of this turn, in the
    /// order they were marked.
    pub(super) dirty: Vec<ConnId>,
    /// Bytes read, written and buffered, for the core's statistics and its
    /// memory limit.
    pub(super) traffic: Traffic,
    /// A handle on the loop's poll, so that a socket opened from inside a
    /// call to the core (a dial) is registered at once.
    pub(super) registry: Registry,
    next_serial: u64,
    /// Slab keys from here up would collide with the reserved tokens.
    key_limit: usize,
    max_request_size: usize,
}

impl Connections {
    pub(crate) fn new(registry: Registry, key_limit: usize, max_request_size: usize) -> Self {
        Connections {
            slab: Slab::new(),
            dirty: Vec::new(),
            traffic: Traffic::default(),
            registry,
            next_serial: 0,
            key_limit,
            max_request_size,
        }
    }

    /// The core's view of these connections, for one call into it.
    pub(crate) fn outbox(&mut self) -> NetOutbox<'_> {
        NetOutbox::new(self)
    }

    /// The live connection `id` names: `None` when its key is vacant or was
    /// reused by a newer connection (a different serial).
    pub(crate) fn live(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.slab.get_mut(id.key).filter(|conn| conn.id == id)
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Gives `stream` a key and a serial and registers it for `interest`.
    /// Fails when no key is left below the reserved tokens or the socket
    /// cannot be registered; the stream is dropped then, which closes it.
    pub(crate) fn insert(
        &mut self,
        stream: Stream,
        peer: &str,
        role: Role,
        interest: Interest,
    ) -> io::Result<&mut Connection> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        if key >= self.key_limit {
            return Err(io::Error::other("no connection token left"));
        }
        let id = ConnId {
            key,
            serial: self.next_serial,
        };
        let mut conn = Connection::new(id, stream, peer, role, self.max_request_size);
        self.registry
            .register(&mut conn.stream, Token(key), interest)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot register its socket: {e}")))?;
        conn.interest = interest;
        // At a million connections a second a u64 lasts 584,000 years.
        self.next_serial = self.next_serial.wrapping_add(1);
        Ok(entry.insert(conn))
    }

    /// Changes what `key`'s socket is registered for, if it is not that
    /// already.
    pub(crate) fn reregister(&mut self, key: usize, interest: Interest) -> io::Result<()> {
        let Some(conn) = self.slab.get_mut(key) else {
            return Ok(());
        };
        if conn.interest != interest {
            self.registry
                .reregister(&mut conn.stream, Token(key), interest)?;
            conn.interest = interest;
        }
        Ok(())
    }

    /// Takes the connection out of the slab and the poll and closes its
    /// socket. What it never wrote is memory no longer held.
    pub(crate) fn remove(&mut self, key: usize) {
        if let Some(mut conn) = self.slab.try_remove(key) {
            self.traffic.output_buffered = self
                .traffic
                .output_buffered
                .saturating_sub(conn.output.len());
            if let Err(e) = self.registry.deregister(&mut conn.stream) {
                debug!("connection {key}: deregister: {e}");
            }
            // Ignored: the peer may have closed first (ENOTCONN).
            let _ = conn.stream.shutdown();
            debug!("closed connection {key}:{} ({})", conn.id.serial, conn.peer);
        }
    }

    /// Closes every connection at once.
    pub(crate) fn remove_all(&mut self) {
        let keys: Vec<usize> = self.slab.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(key);
        }
        self.dirty.clear();
    }

    /// Flushes `key`'s connection, counting what was written.
    pub(crate) fn flush(&mut self, key: usize) -> io::Result<()> {
        let Some(conn) = self.slab.get_mut(key) else {
            return Ok(());
        };
        flush_counted(conn, &mut self.traffic)
    }
}

/// Flushes `conn`, counting what was written.
pub(super) fn flush_counted(conn: &mut Connection, traffic: &mut Traffic) -> io::Result<()> {
    let before = conn.output.len();
    let result = conn.flush();
    let written = before.saturating_sub(conn.output.len());
    traffic.bytes_sent = traffic.bytes_sent.saturating_add(written as u64);
    traffic.output_buffered = traffic.output_buffered.saturating_sub(written);
    result
}
