//! What the core's conversation tests share: an [`Outbox`] that records
//! what the core asked for, and a harness that drives a [`Broker`] with a
//! clock the test moves by hand.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Broker, CloseReason, ConnId, Outbox, Traffic};
use crate::config::Config;
use crate::protocol::{
    encode, encoded_len, Connack, Connect, ConnectReturnCode, Decoder, Packet, PacketId,
};

/// Records what the core sends and closes; `pending` and `traffic` are what
/// the test says the network holds.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) sent: HashMap<ConnId, Vec<Packet>>,
    pub(super) closed: Vec<ConnId>,
    pub(super) pending: HashMap<ConnId, usize>,
    pub(super) traffic: Traffic,
    /// Packets that came through [`Outbox::send_bytes`]: already encoded.
    pub(super) sent_as_bytes: usize,
    /// Connections the core asked to hear of once drained
    /// ([`Outbox::notify_when_drained`]), in the order asked.
    pub(super) drain_wanted: Vec<ConnId>,
    /// `pending` grows by what each send encodes to, as it would for a
    /// socket that takes nothing; the test drains it by hand.
    pub(super) count_pending: bool,
}

impl Outbox for Recorder {
    fn send(&mut self, conn: ConnId, packet: &Packet) {
        if self.count_pending {
            *self.pending.entry(conn).or_default() += encoded_len(packet);
        }
        self.sent.entry(conn).or_default().push(packet.clone());
    }
    /// Decodes the bytes with sol's own client-side decoder, as a
    /// subscriber would, and records the packets like [`Outbox::send`]
    /// does, so that tests keep asserting on packets. Each packet must
    /// encode back to exactly the bytes it came from: every conversation
    /// test checks what a shared encoding puts on the wire.
    fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        let mut decoder = Decoder::client(usize::MAX);
        let mut again = BytesMut::new();
        while !buf.is_empty() {
            let packet = match decoder.decode(&mut buf) {
                Ok(Some(packet)) => packet,
                other => panic!("{bytes:02x?} do not decode: {other:?}"),
            };
            encode(&packet, &mut again);
            self.send(conn, &packet);
            self.sent_as_bytes += 1;
        }
        assert_eq!(&again[..], bytes, "encoded differently from its packets");
    }
    fn pending(&self, conn: ConnId) -> usize {
        self.pending.get(&conn).copied().unwrap_or(0)
    }
    fn close(&mut self, conn: ConnId) {
        self.closed.push(conn);
    }
    fn traffic(&self) -> Traffic {
        self.traffic
    }
    fn notify_when_drained(&mut self, conn: ConnId) {
        self.drain_wanted.push(conn);
    }
}

impl Recorder {
    /// Everything sent to `conn` so far, and forgets it.
    pub(super) fn take(&mut self, conn: ConnId) -> Vec<Packet> {
        self.sent.remove(&conn).unwrap_or_default()
    }
}

/// A broker, what it sent, and the time as the test sets it.
pub(super) struct Harness {
    pub(super) broker: Broker,
    pub(super) out: Recorder,
    pub(super) now: Instant,
    serial: u64,
}

impl Harness {
    pub(super) fn with(config: Config) -> Harness {
        let now = Instant::now();
        Harness {
            broker: Broker::new(&config, now),
            out: Recorder::default(),
            now,
            serial: 0,
        }
    }

    /// A new connection, as if the network layer had accepted a socket.
    pub(super) fn open(&mut self) -> ConnId {
        self.serial += 1;
        let conn = ConnId {
            key: self.serial as usize,
            serial: self.serial,
        };
        self.broker.open(conn, "test", self.now);
        conn
    }

    pub(super) fn send(&mut self, conn: ConnId, packet: Packet) {
        self.broker.packet(conn, packet, self.now, &mut self.out);
        self.flushed();
    }

    /// What the network layer does after its flush: each connection the
    /// core asked about whose `pending` is below the mark hears that it
    /// drained; the others stay asked for.
    pub(super) fn flushed(&mut self) {
        let asked = std::mem::take(&mut self.out.drain_wanted);
        for conn in asked {
            if self.out.pending(conn) < super::QOS0_OUTPUT_LIMIT {
                self.broker.drained(conn, self.now, &mut self.out);
            } else {
                self.out.drain_wanted.push(conn);
            }
        }
    }

    pub(super) fn take(&mut self, conn: ConnId) -> Vec<Packet> {
        self.out.take(conn)
    }

    /// Opens a connection, sends `c` and checks that the first answer is an
    /// accepting CONNACK; what a resumed session gets after it is left for
    /// the test to take.
    pub(super) fn connect(&mut self, c: Connect, session_present: bool) -> ConnId {
        let conn = self.open();
        self.send(conn, Packet::Connect(Box::new(c)));
        let connack = Packet::Connack(Connack {
            session_present,
            code: ConnectReturnCode::Accepted,
        });
        let mut sent = self.take(conn);
        assert_eq!(sent.first(), Some(&connack));
        sent.remove(0);
        if !sent.is_empty() {
            self.out.sent.insert(conn, sent);
        }
        conn
    }

    /// The socket went away without DISCONNECT.
    pub(super) fn drop_conn(&mut self, conn: ConnId) {
        self.broker
            .closed(conn, CloseReason::PeerClosed, self.now, &mut self.out);
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.broker.tick(self.now, &mut self.out);
        self.flushed();
    }

    pub(super) fn is_closed(&self, conn: ConnId) -> bool {
        self.out.closed.contains(&conn)
    }
}

pub(super) fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap_or(PacketId::FIRST)
}
