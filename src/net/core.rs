//! What the event loop needs from the protocol core, and how the real one,
//! [`Broker`], provides it. The loop's tests drive a scripted one instead.
//!
//! What it must not know: sockets. The core hears of a connection through
//! its [`ConnId`] and answers through an [`Outbox`].

use std::io;
use std::time::Instant;

use crate::broker::{Broker, CloseReason, ConnId, Outbox, PeerInfo};
use crate::protocol::Packet;

/// What the loop needs from the protocol core. [`Broker`] is the real one;
/// the loop's tests drive it with a scripted one.
pub(crate) trait Core {
    fn open(&mut self, conn: ConnId, peer: &str, now: Instant);
    fn packet(&mut self, conn: ConnId, packet: Packet, now: Instant, out: &mut dyn Outbox);
    fn closed(&mut self, conn: ConnId, reason: CloseReason, now: Instant, out: &mut dyn Outbox);
    fn next_deadline(&self) -> Option<Instant>;
    /// The work the packets handled since the last call cost, which the
    /// loop adds up per connection and turn against
    /// [`Limits::work_budget`](super::event_loop::Limits); the call resets
    /// it. A core that does not count returns 0.
    fn take_work(&mut self) -> usize {
        0
    }
    fn tick(&mut self, now: Instant, out: &mut dyn Outbox);
    /// `conn` carries MQTT from now on, and nothing of it has been decoded
    /// yet: an accepted plain connection right after [`Core::open`], a TLS
    /// one once its handshake completed, a dialled one once its connect
    /// did. Called once per connection.
    fn established(&mut self, _conn: ConnId, _peer: PeerInfo<'_>) {}
    /// The connection the core asked for with [`Outbox::dial`] could not
    /// be opened: `error` says why, and `conn` is gone (the core hears no
    /// `closed` for it). A dial that fails at once is refused by `dial`
    /// itself instead.
    fn dial_failed(
        &mut self,
        _conn: ConnId,
        _error: io::Error,
        _now: Instant,
        _out: &mut dyn Outbox,
    ) {
    }
    /// `SIGHUP` or [`ServerHandle::reload`](super::ServerHandle::reload):
    /// re-read what can change without a restart.
    fn reload(&mut self, _now: Instant, _out: &mut dyn Outbox) {}
    /// The server is stopping: every connection is about to be closed with
    /// [`CloseReason::Shutdown`]. The place to log a summary.
    fn shutdown(&mut self, _now: Instant, _out: &mut dyn Outbox) {}
    /// The output of `conn` is below [`QOS0_OUTPUT_LIMIT`](crate::broker::QOS0_OUTPUT_LIMIT) after a write,
    /// and the core asked to hear of it with
    /// [`Outbox::notify_when_drained`]: the place to send what it held
    /// back while the connection was backed up.
    ///
    /// When: at the end of a turn, right after the flush that took the
    /// output below the mark (a write the socket's `WRITABLE` event
    /// allowed, or the turn's own flush), once per request. What the core
    /// sends from here is flushed in the same turn, and if it fills the
    /// output past the mark again the core asks again; a socket that takes
    /// nothing brings no call. Never for a connection that is closing or
    /// gone. The check is a flag on the connection looked at after its
    /// flush: no allocation and no walk over other connections, so any
    /// work the core resumes per connection (resends, retained messages
    /// delivered in slices) can hang on it.
    fn drained(&mut self, _conn: ConnId, _now: Instant, _out: &mut dyn Outbox) {}
}

impl Core for Broker {
    fn open(&mut self, conn: ConnId, peer: &str, now: Instant) {
        Broker::open(self, conn, peer, now);
    }
    fn packet(&mut self, conn: ConnId, packet: Packet, now: Instant, out: &mut dyn Outbox) {
        Broker::packet(self, conn, packet, now, out);
    }
    fn closed(&mut self, conn: ConnId, reason: CloseReason, now: Instant, out: &mut dyn Outbox) {
        Broker::closed(self, conn, reason, now, out);
    }
    fn next_deadline(&self) -> Option<Instant> {
        Broker::next_deadline(self)
    }
    fn tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        Broker::tick(self, now, out);
    }
    fn take_work(&mut self) -> usize {
        Broker::take_work(self)
    }
    fn established(&mut self, conn: ConnId, peer: PeerInfo<'_>) {
        Broker::established(self, conn, peer);
    }
    fn reload(&mut self, now: Instant, out: &mut dyn Outbox) {
        Broker::reload(self, now, out);
    }
    fn shutdown(&mut self, now: Instant, out: &mut dyn Outbox) {
        Broker::shutdown(self, now, out);
    }
    fn drained(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        Broker::drained(self, conn, now, out);
    }
}
