//! The broker's [`Outbox`], as the network layer implements it.
//!
//! Sending only encodes into a connection's output buffer (or, for bytes
//! encoded once for many receivers, copies them there) and puts the
//! connection in the dirty list; nothing is written to a socket here. The
//! loop flushes each dirty connection once, at the end of its turn, so a
//! burst of packets to one client costs one system call, not one each.
//!
//! Explained in docs/05-event-loop.md and docs/10-backpressure-and-limits.md.

use std::io;
use std::net::SocketAddr;

use crate::broker::{ConnId, Outbox, Traffic};
use crate::protocol::Packet;

use super::conn::Connection;
use super::connections::Connections;

/// Borrows the connections, with their dirty list and traffic counters, for
/// one call into the broker. Made by [`Connections::outbox`].
pub(crate) struct NetOutbox<'a> {
    /// Their `traffic.output_buffered` grows here, as packets are encoded,
    /// and shrinks where the loop writes or drops output.
    conns: &'a mut Connections,
}

impl<'a> NetOutbox<'a> {
    pub(super) fn new(conns: &'a mut Connections) -> NetOutbox<'a> {
        NetOutbox { conns }
    }
}

impl NetOutbox<'_> {
    /// Runs `append` on the output of `conn`, unless it is gone or closing,
    /// then counts what it added and marks the connection dirty.
    fn append(&mut self, conn: ConnId, append: impl FnOnce(&mut Connection)) {
        let conns = &mut *self.conns;
        let Some(c) = conns.slab.get_mut(conn.key).filter(|c| c.id == conn) else {
            return;
        };
        if c.closing {
            return;
        }
        let before = c.output.len();
        append(c);
        c.output_grew();
        let added = c.output.len().saturating_sub(before);
        conns.traffic.output_buffered = conns.traffic.output_buffered.saturating_add(added);
        c.mark_dirty(&mut conns.dirty);
    }
}

impl Outbox for NetOutbox<'_> {
    fn send(&mut self, conn: ConnId, packet: &Packet) {
        self.append(conn, |c| c.queue(packet));
    }

    /// A plain copy: the bytes were encoded once for every receiver.
    fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        self.append(conn, |c| c.output.extend_from_slice(bytes));
    }

    fn pending(&self, conn: ConnId) -> usize {
        match self.conns.slab.get(conn.key) {
            Some(c) if c.id == conn => c.output.len(),
            _ => 0,
        }
    }

    fn close(&mut self, conn: ConnId) {
        let conns = &mut *self.conns;
        if let Some(c) = conns.slab.get_mut(conn.key).filter(|c| c.id == conn) {
            c.closing = true;
            c.mark_dirty(&mut conns.dirty);
        }
    }

    fn dial(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.conns.dial(addr)
    }

    fn traffic(&self) -> Traffic {
        self.conns.traffic
    }

    fn write_after_others(&mut self, conn: ConnId) {
        let conns = &mut *self.conns;
        // The common case, a publisher whose PUBLISHes come one after
        // another: it is the last entry already, and nothing is looked up.
        if conns.dirty.last() == Some(&conn) {
            return;
        }
        if let Some(c) = conns.slab.get_mut(conn.key).filter(|c| c.id == conn) {
            c.mark_dirty_last(&mut conns.dirty);
        }
    }

    /// A flag the loop looks at after the connection's flush
    /// (`EventLoop::flush_dirty`). Nothing is marked dirty: the core asks
    /// when the output is past the mark, so a flush is due anyway (this
    /// turn's, or the one the socket's `WRITABLE` event brings), and a
    /// core that asked with nothing queued cannot make the loop spin.
    fn notify_when_drained(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.live(conn) {
            if !c.closing {
                c.notify_drained = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::conn::Role;
    use crate::net::stream::{Socket, Stream};
    use crate::protocol::{encoded_len, PacketId};

    /// Connections, one per serial given; returns their ids.
    fn with_serials(serials: &[u64]) -> (Connections, Vec<ConnId>) {
        let registry = mio::Poll::new().unwrap().registry().try_clone().unwrap();
        let mut conns = Connections::new(registry, usize::MAX, 1000);
        let mut ids = Vec::new();
        for &serial in serials {
            let (a, _b) = mio::net::UnixStream::pair().unwrap();
            let entry = conns.slab.vacant_entry();
            let id = ConnId {
                key: entry.key(),
                serial,
            };
            let stream = Stream::Plain(Socket::Unix(a));
            entry.insert(Connection::new(id, stream, "test", Role::Server, 1000));
            ids.push(id);
        }
        (conns, ids)
    }

    fn puback(id: u16) -> Packet {
        Packet::Puback(PacketId::new(id).unwrap())
    }

    #[test]
    fn send_queues_the_encoding_and_marks_dirty_once() {
        let (mut conns, ids) = with_serials(&[7]);
        let mut out = conns.outbox();
        out.send(ids[0], &puback(1));
        out.send(ids[0], &Packet::Pingresp);
        let expected = encoded_len(&puback(1)) + encoded_len(&Packet::Pingresp);
        assert!(expected > 0);
        assert_eq!(out.pending(ids[0]), expected);
        assert_eq!(conns.dirty, vec![ids[0]]);
        assert_eq!(conns.slab[ids[0].key].output.len(), expected);
        assert_eq!(conns.traffic.output_buffered, expected);
    }

    #[test]
    fn a_stale_serial_reaches_nothing() {
        let (mut conns, ids) = with_serials(&[7]);
        let stale = ConnId {
            key: ids[0].key,
            serial: 6,
        };
        let mut out = conns.outbox();
        out.send(stale, &Packet::Pingresp);
        out.close(stale);
        assert_eq!(out.pending(stale), 0);
        assert_eq!(out.pending(ids[0]), 0);
        assert!(conns.dirty.is_empty());
        assert!(!conns.slab[ids[0].key].closing);
    }

    #[test]
    fn an_unknown_key_reaches_nothing() {
        let (mut conns, _) = with_serials(&[1]);
        let unknown = ConnId { key: 99, serial: 1 };
        let mut out = conns.outbox();
        out.send(unknown, &Packet::Pingresp);
        out.close(unknown);
        assert_eq!(out.pending(unknown), 0);
        assert!(conns.dirty.is_empty());
    }

    #[test]
    fn close_marks_closing_and_dirty_and_later_sends_are_dropped() {
        let (mut conns, ids) = with_serials(&[1, 2]);
        let mut out = conns.outbox();
        out.send(ids[1], &Packet::Pingresp);
        out.close(ids[1]);
        let before = out.pending(ids[1]);
        out.send(ids[1], &puback(3));
        assert_eq!(out.pending(ids[1]), before);
        assert_eq!(
            out.traffic().output_buffered,
            before,
            "nothing queued once closing"
        );
        out.close(ids[0]);
        out.close(ids[0]);
        assert_eq!(conns.dirty, vec![ids[1], ids[0]]);
        assert!(conns.slab[ids[0].key].closing);
        assert!(conns.slab[ids[1].key].closing);
    }

    #[test]
    fn send_bytes_copies_the_bytes_counts_them_and_marks_dirty_once() {
        let (mut conns, ids) = with_serials(&[4, 5]);
        let mut out = conns.outbox();
        let publish = [0x30, 4, 0, 1, b't', b'p'];
        out.send(ids[0], &Packet::Pingresp);
        out.send_bytes(ids[0], &publish);
        out.send_bytes(ids[1], &publish);
        out.send_bytes(ids[0], &publish);
        assert_eq!(out.pending(ids[0]), 2 + 2 * publish.len());
        assert_eq!(out.traffic().output_buffered, 2 + 3 * publish.len());
        assert_eq!(conns.dirty, vec![ids[0], ids[1]]);
        assert_eq!(
            &conns.slab[ids[0].key].output[..],
            b"\xD0\x00\x30\x04\x00\x01tp\x30\x04\x00\x01tp"
        );
        assert_eq!(&conns.slab[ids[1].key].output[..], publish);
    }

    #[test]
    fn write_after_others_moves_a_publisher_behind_its_subscribers() {
        let (mut conns, ids) = with_serials(&[1, 2, 3]);
        let (publisher, sub, other) = (ids[0], ids[1], ids[2]);
        let mut out = conns.outbox();
        // The PUBACK first, then the delivery, then the move.
        out.send(publisher, &puback(1));
        out.send(sub, &Packet::Pingresp);
        out.write_after_others(publisher);
        // A second PUBLISH from the same publisher adds no entry.
        out.send(publisher, &puback(2));
        out.write_after_others(publisher);
        // Moving a connection with nothing queued marks it, once.
        out.write_after_others(other);
        assert_eq!(conns.dirty, vec![publisher, sub, publisher, other]);
        let flushed_at = |key: usize| {
            (0..conns.dirty.len())
                .filter(|&i| conns.dirty[i].key == key && conns.slab[key].flushes_at(i))
                .collect::<Vec<_>>()
        };
        assert_eq!(flushed_at(publisher.key), vec![2], "at its last entry");
        assert_eq!(flushed_at(sub.key), vec![1]);
        assert_eq!(flushed_at(other.key), vec![3]);
        assert_eq!(
            conns.slab[publisher.key].output.len(),
            2 * encoded_len(&puback(1)),
            "the order on one connection is untouched"
        );
    }

    #[test]
    fn send_bytes_to_a_stale_unknown_or_closing_connection_is_dropped() {
        let (mut conns, ids) = with_serials(&[1, 2]);
        let mut out = conns.outbox();
        let stale = ConnId {
            key: ids[0].key,
            serial: 9,
        };
        let unknown = ConnId { key: 99, serial: 1 };
        out.close(ids[1]);
        for conn in [stale, unknown, ids[1]] {
            out.send_bytes(conn, &[0xD0, 0]);
        }
        assert_eq!(out.pending(ids[0]), 0);
        assert_eq!(out.pending(ids[1]), 0);
        assert_eq!(out.traffic().output_buffered, 0);
        assert_eq!(conns.dirty, vec![ids[1]], "only the close marked anything");
    }

    #[test]
    fn each_connection_gets_only_its_own_packets() {
        let (mut conns, ids) = with_serials(&[1, 2]);
        let mut out = conns.outbox();
        out.send(ids[0], &puback(1));
        out.send(ids[1], &Packet::Pingresp);
        out.send(ids[0], &puback(2));
        assert_eq!(out.pending(ids[0]), 2 * encoded_len(&puback(1)));
        assert_eq!(out.pending(ids[1]), encoded_len(&Packet::Pingresp));
        assert_eq!(conns.dirty, vec![ids[0], ids[1]]);
    }
}
