//! Dialling out: a TCP connection the core asked for with
//! [`Outbox::dial`](crate::broker::Outbox::dial), for bridges to other
//! brokers.
//!
//! A dialled connection is a connection like any other once its connect
//! completes: in the slab, with a [`ConnId`], read and flushed by the same
//! loop. Two things differ. Its [`Role`] is the client's, so its decoder
//! expects what a broker sends (CONNACK first, no CONNECT gate). And it
//! starts *connecting*: the non-blocking `connect` returns at once, the
//! socket is registered for writable events, and the first one (or an
//! error) says how it ended:
//!
//! - connected: the core hears [`Core::established`], and from then on
//!   packets and `closed` as for an accepted connection. What it queued
//!   before goes out with that turn's flush.
//! - refused, unreachable, reset: the core hears [`Core::dial_failed`] and
//!   the connection is gone.
//!
//! The core never hears `open` for a dialled connection (no connect timeout
//! is armed for it by the loop); a connect the kernel keeps trying for
//! minutes is the core's to give up on, by closing the id. At a stop, a
//! dial still in progress hears `closed` with `Shutdown`, like every other
//! connection the core holds an id for. A dialled connection counts
//! against `max_connections` when clients are accepted, but is never
//! refused for it: the core asked for it.
//!
//! What it must not know: MQTT, or why the core dials.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::net::TcpStream;
use mio::Interest;

use crate::broker::ConnId;

use super::conn::Role;
use super::connections::Connections;
use super::core::Core;
use super::event_loop::EventLoop;
use super::stream::{Socket, Stream};

impl Connections {
    /// Starts a non-blocking connect to `addr`; the connection is in the
    /// slab at once, marked connecting. Err when the connect fails at once
    /// (no route, no descriptor left) or no key is left.
    pub(crate) fn dial(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let tcp = TcpStream::connect(addr)?;
        let stream = Stream::Plain(Socket::Tcp(tcp));
        let peer = addr.to_string();
        let interest = Interest::READABLE | Interest::WRITABLE;
        let conn = self.insert(stream, &peer, Role::Client, interest)?;
        conn.connecting = true;
        debug!(
            "dialling {peer} as connection {}:{}",
            conn.id.key, conn.id.serial
        );
        Ok(conn.id)
    }
}

/// How a non-blocking connect stands after a writable or error event:
/// `Ok(true)` connected, `Ok(false)` not yet (a spurious event), `Err` failed.
fn connect_result(tcp: &TcpStream) -> io::Result<bool> {
    if let Some(error) = tcp.take_error()? {
        return Err(error);
    }
    match tcp.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

impl<C: Core> EventLoop<C> {
    /// A connecting socket had an event: tells the core how the connect
    /// ended, if it did. Returns whether the connection is now open.
    pub(super) fn finish_connect(&mut self, key: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.slab.get_mut(key) else {
            return false;
        };
        let result = match conn.stream.socket() {
            Socket::Tcp(tcp) => connect_result(tcp),
            Socket::Unix(_) => Ok(true),
        };
        let id = conn.id;
        match result {
            Ok(false) => false,
            Ok(true) => {
                conn.connecting = false;
                debug!("connection {key}:{}: connected to {}", id.serial, conn.peer);
                // Flushes what the core queued meanwhile, and sets the
                // interest the connection needs from now on.
                conn.mark_dirty(&mut self.conns.dirty);
                self.core.established(id, conn.peer_info(None));
                true
            }
            Err(error) => {
                debug!("connection {key}:{}: dial failed: {error}", id.serial);
                self.conns.remove(key);
                self.core
                    .dial_failed(id, error, now, &mut self.conns.outbox());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
