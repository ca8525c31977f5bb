//! The protocol core: packets in, packets out, timers on its own wheel.
//!
//! (Being written; the API below is the contract the network layer uses.)

use std::time::Instant;

use crate::config::Config;
use crate::protocol::{DecodeError, Packet};

/// Names one connection for its whole life.
///
/// `key` is the network layer's slab key (reused after a close); `serial` is
/// never reused, so a timer or a message meant for a closed connection can
/// never reach a new one that got the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: usize,
    pub serial: u64,
}

/// Where the core's answers go. The network layer implements it by encoding
/// into each connection's output buffer; tests implement it by collecting.
pub trait Outbox {
    /// Queues `packet` for `conn`. A closed or unknown `conn` is ignored.
    fn send(&mut self, conn: ConnId, packet: &Packet);
    /// Bytes queued for `conn` and not yet written to its socket.
    fn pending(&self, conn: ConnId) -> usize;
    /// Closes `conn` after what is already queued for it has been written
    /// (best effort, bounded). The core sends it nothing more and expects no
    /// more packets from it.
    fn close(&mut self, conn: ConnId);
}

/// Why a connection went away, as the network layer saw it.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer closed the socket (read returned 0).
    PeerClosed,
    /// A socket error.
    Io(std::io::Error),
    /// The bytes did not decode into a valid packet.
    Protocol(DecodeError),
    /// The broker is shutting down.
    Shutdown,
}

/// The protocol core.
pub struct Broker {}

impl Broker {
    pub fn new(_config: &Config, _now: Instant) -> Broker {
        todo!()
    }
    /// A socket was accepted: arms its connect timeout.
    pub fn open(&mut self, _conn: ConnId, _peer: &str, _now: Instant) {
        todo!()
    }
    /// One decoded packet from `conn`.
    pub fn packet(&mut self, _conn: ConnId, _packet: Packet, _now: Instant, _out: &mut dyn Outbox) {
        todo!()
    }
    /// The connection is gone (or must go): publishes the will unless the
    /// client sent DISCONNECT. For `CloseReason::Protocol` the core may first
    /// send a CONNACK (unsupported protocol level) and calls `out.close`.
    pub fn closed(&mut self, _conn: ConnId, _reason: CloseReason, _now: Instant, _out: &mut dyn Outbox) {
        todo!()
    }
    /// The earliest instant at which [`Broker::tick`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }
    /// Runs every timer due at `now`: keepalive, connect timeout, ...
    pub fn tick(&mut self, _now: Instant, _out: &mut dyn Outbox) {
        todo!()
    }
}
