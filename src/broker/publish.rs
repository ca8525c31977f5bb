//! PUBLISH in both directions: the QoS 1 and 2 handshakes, routing through
//! the trie, delivery into each session's window or queue, and retained
//! messages (sections 3.3 to 3.7 and 4.3).
//! Explained in docs/07-qos-step-by-step.md and docs/08-retained-and-wills.md.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use log::debug;

use super::{retry, Broker, ConnId, Outbox, SessionSlot, Stats};
use crate::protocol::{Packet, PacketId, Protocol, Publish, QoS, SharedPublish, Will};
use crate::session::{Ack, Message, Origin, Pushed};

/// When the messages being delivered arrived: the instant, for the timers
/// a delivery arms, and what a session keeps of it (broker time, and the
/// place in the order of arrival).
#[derive(Clone, Copy, Debug)]
pub(super) struct Arrival {
    pub(super) now: Instant,
    pub(super) time: Duration,
    pub(super) seq: u64,
    /// What a connection's output may hold for a QoS 0 message to still
    /// be added: [`QOS0_OUTPUT_LIMIT`](super::QOS0_OUTPUT_LIMIT), less at the memory limit.
    pub(super) qos0_limit: usize,
}

impl Broker {
    /// The next message (or batch of retained ones) arrives at `now`.
    pub(super) fn arrival(&mut self, now: Instant) -> Arrival {
        Arrival {
            now,
            time: self.broker_time(now),
            seq: self.next_arrival(),
            qos0_limit: self.qos0_output_limit(),
        }
    }

    pub(super) fn handle_publish(
        &mut self,
        conn: ConnId,
        session: usize,
        publish: Publish,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        self.stats.messages_received += 1;
        let (qos, packet_id) = (publish.qos, publish.packet_id);
        let message = Message::from(publish).from_origin(Origin::client(session));
        // A publish the ACL refuses (writes to $SOL/... always are) is
        // acknowledged as usual and dropped, retained flag and all
        // ([MQTT-3.3.5-2]).
        let allowed = self.may_publish(conn, &message.topic);
        if !allowed {
            debug!(
                "Dropped a PUBLISH to {} refused by the ACL.",
                crate::logtext::shown(message.topic.as_str())
            );
        }
        // The acknowledgement is queued before the message is routed, as
        // mosquitto does: a publisher subscribed to its own topic gets its
        // PUBACK or PUBREC first, then the copy of its message. Across
        // connections the deliveries still go out first
        // (`write_after_others`).
        match (qos, packet_id) {
            (QoS::AtMostOnce, _) => {
                if allowed {
                    self.route(message, now, out);
                }
            }
            (QoS::AtLeastOnce, Some(id)) => {
                out.send(conn, &Packet::Puback(id));
                if allowed {
                    self.route(message, now, out);
                    out.write_after_others(conn);
                }
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // [MQTT-4.3.3-2]: a duplicate before PUBREL gets its PUBREC
                // again but is not delivered again.
                let first = self
                    .sessions
                    .get_mut(session)
                    .is_some_and(|slot| slot.session.incoming_qos2(id));
                out.send(conn, &Packet::Pubrec(id));
                if first && allowed {
                    self.route(message, now, out);
                    out.write_after_others(conn);
                }
            }
            // The decoder never yields QoS 1 or 2 without an id.
            (_, None) => {
                let why = "PUBLISH without a packet id".to_string();
                self.violation(conn, why, now, out);
            }
        }
    }

    /// What the session's window said of an acknowledgement. A mismatch (a
    /// PUBACK for a message sent at QoS 2, a PUBREC or PUBCOMP for one sent
    /// at QoS 1, a PUBCOMP before the PUBREC) means the client has the QoS
    /// or the order wrong: mosquitto disconnects it, and so does sol (the
    /// standard names no rule for it). An id the broker does not know is not
    /// a mismatch: the client may be finishing a handshake the broker
    /// already forgot. Returns whether the acknowledgement completed its
    /// message, so the window has room.
    fn acknowledged(
        &mut self,
        conn: ConnId,
        ack: Ack,
        what: &str,
        id: PacketId,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> bool {
        match ack {
            Ack::Done => true,
            Ack::Unknown => false,
            Ack::Mismatch => {
                let why = format!("{what} for packet id {}, at another stage", id.get());
                self.violation(conn, why, now, out);
                false
            }
        }
    }

    pub(super) fn handle_puback(
        &mut self,
        conn: ConnId,
        session: usize,
        id: PacketId,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let ack = self
            .sessions
            .get_mut(session)
            .map_or(Ack::Unknown, |slot| slot.session.puback(id));
        if self.acknowledged(conn, ack, "PUBACK", id, now, out) {
            self.flush_queue(conn, session, now, out);
        }
    }

    /// PUBREC gets PUBREL, even for an id the broker no longer knows: that
    /// lets the client finish its side of the handshake.
    pub(super) fn handle_pubrec(
        &mut self,
        conn: ConnId,
        session: usize,
        id: PacketId,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let time = self.broker_time(now);
        let ack = self
            .sessions
            .get_mut(session)
            .map_or(Ack::Unknown, |slot| slot.session.pubrec(id, time));
        if ack == Ack::Mismatch {
            self.acknowledged(conn, ack, "PUBREC", id, now, out);
            return;
        }
        out.send(conn, &Packet::Pubrel(id));
    }

    /// PUBREL always gets PUBCOMP ([MQTT-4.3.3-2]), known id or not.
    pub(super) fn handle_pubrel(
        &mut self,
        conn: ConnId,
        session: usize,
        id: PacketId,
        out: &mut dyn Outbox,
    ) {
        if let Some(slot) = self.sessions.get_mut(session) {
            slot.session.pubrel(id);
        }
        out.send(conn, &Packet::Pubcomp(id));
    }

    pub(super) fn handle_pubcomp(
        &mut self,
        conn: ConnId,
        session: usize,
        id: PacketId,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let ack = self
            .sessions
            .get_mut(session)
            .map_or(Ack::Unknown, |slot| slot.session.pubcomp(id));
        if self.acknowledged(conn, ack, "PUBCOMP", id, now, out) {
            self.flush_queue(conn, session, now, out);
        }
    }

    /// Publishes a will as if the client of `session` had sent it. The
    /// caller has checked that its client may write there
    /// (`Broker::end_connection`): a will aimed at `$SOL` is dropped like
    /// any client write there.
    pub(super) fn publish_will(
        &mut self,
        will: Will,
        session: usize,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let message = Message::from(will).from_origin(Origin::client(session));
        self.route(message, now, out);
    }

    /// Stores or clears the retained message, then hands a copy to every
    /// session with a matching subscription: one copy per session, at the
    /// highest QoS any of its matching subscriptions granted, never above
    /// the QoS it was published with.
    ///
    /// The copies that go out at once share one encoding per QoS
    /// ([`Encodings`]): a fan-out to a thousand subscribers encodes the
    /// PUBLISH at most three times, and each subscriber costs a copy of its
    /// bytes, not a packet of its own.
    ///
    /// The message's [`Origin`] goes along but decides nothing yet: no
    /// MQTT 3.1.1 rule leaves a publisher out. A rule that does (a bridge's
    /// loop prevention, MQTT 5's No Local) compares it with each match's
    /// session key here, at the cost of one comparison per delivery.
    pub(super) fn route(&mut self, mut message: Message, now: Instant, out: &mut dyn Outbox) {
        // What may be stored is counted once, here, however many keep it;
        // QoS 0 that is not retained is never stored and costs nothing.
        let payloads = self.memory.payloads.live();
        if message.retain || message.qos != QoS::AtMostOnce {
            message.payload = self.memory.payloads.adopt(message.payload);
        }
        let mut grown = self.memory.payloads.live().saturating_sub(payloads);
        // At the memory limit a client's new retained message is refused
        // (it is still routed), so that storing it costs no one else's;
        // deleting one is growth of no kind.
        let refused = message.retain
            && !message.payload.is_empty()
            && message.origin != Origin::Broker
            && self.memory_at_limit();
        if refused {
            self.stats.messages_dropped += 1;
            debug!(
                "Not retained at max_memory: a message on {}.",
                message.topic
            );
        } else if message.retain {
            let before = self.retained.bytes();
            self.retained.store(&message);
            grown = grown.saturating_add(self.retained.bytes().saturating_sub(before));
        }
        let arrival = self.arrival(now);
        let mut matches = std::mem::take(&mut self.matches);
        let mut encodings = std::mem::take(&mut self.encodings);
        matches.clear();
        let filters = self
            .sessions
            .for_each_subscriber(&message.topic, |&key, &qos| matches.push((key, qos)));
        self.work = self.work.saturating_add(self.sessions.take_routing_work());
        // Overlapping subscriptions of one client: keep its highest QoS. A
        // key can only repeat when more than one filter matched; with one
        // (the common case) the sort would cost a fifth of a fan-out.
        if filters > 1 {
            matches.sort_unstable_by_key(|&(key, qos)| (key, Reverse(qos)));
            matches.dedup_by_key(|&mut (key, _)| key);
        }
        for &(key, granted) in &matches {
            // A subscription may overlap topics its client may not read
            // (`#` beside `deny secret/#`): each delivery is checked.
            if !self.may_read(key, &message.topic) {
                continue;
            }
            let qos = message.qos.min(granted);
            let held = self.deliver(key, &message, qos, arrival, &mut encodings, out);
            grown = grown.saturating_add(held);
        }
        encodings.clear();
        self.encodings = encodings;
        self.matches = matches;
        self.memory_grew(grown, out);
    }

    /// Hands the routed `message` to session `key` at `qos`: straight out
    /// for QoS 0, through the session's window and queue for QoS 1 and 2.
    /// What goes out at once is the shared encoding; only a session that
    /// may have to send the message again (QoS 1 and 2) keeps a copy.
    /// Returns what the delivery may have added to the memory held: what
    /// the session holds more, and the copy in an output buffer.
    // Always inlined, as `deliver_with`: one call per delivery, and the
    // arguments they pass by value cost more than their bodies.
    #[inline(always)]
    fn deliver(
        &mut self,
        key: usize,
        message: &Message,
        qos: QoS,
        arrival: Arrival,
        encodings: &mut Encodings,
        out: &mut dyn Outbox,
    ) -> usize {
        let Some(slot) = self.sessions.get_mut(key) else {
            return 0;
        };
        // [MQTT-3.3.1-9]: live forwarding clears the retain flag.
        let stored = || message.copy_at(qos, false);
        let wire = Wire::Shared(encodings, message);
        // A QoS 0 copy is never kept by the session: only its bytes in the
        // output buffer are new, and the session's holdings need no look.
        if qos == QoS::AtMostOnce {
            let delivery = deliver_with(slot, qos, stored, wire, arrival, &mut self.stats, out);
            return wire_size(message, delivery);
        }
        let held = slot.session.held_bytes();
        let delivery = deliver_with(slot, qos, stored, wire, arrival, &mut self.stats, out);
        let grown = slot
            .session
            .held_bytes()
            .saturating_sub(held)
            .saturating_add(wire_size(message, delivery));
        // A QoS 0 copy never enters the window, so it has nothing to
        // resend; the check cost a QoS 0 fan-out 8 % of its instructions.
        if delivery == Delivery::Sent && qos != QoS::AtMostOnce {
            retry::arm(
                &mut self.timers,
                slot,
                arrival.now,
                self.epoch,
                &self.settings,
            );
        }
        grown
    }

    /// Sends whatever the session's window now has room for from its queue.
    pub(super) fn flush_queue(
        &mut self,
        conn: ConnId,
        session: usize,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let time = self.broker_time(now);
        let Some(slot) = self.sessions.get_mut(session) else {
            return;
        };
        let sent = slot.session.fill_window(time);
        retry::arm(&mut self.timers, slot, now, self.epoch, &self.settings);
        for (id, message) in sent {
            out.send(conn, &Packet::Publish(message.to_publish(Some(id), false)));
            self.stats.messages_sent += 1;
        }
        // What `fill_window` put behind waiting messages; looked at here
        // first, since this runs on every PUBACK and almost never waits.
        if slot.session.has_waiting() {
            self.send_waiting(conn, session, now, out);
        }
    }
}

/// What a message `delivery` sent may have added to an output buffer: at
/// most its encoding (an upper bound: the loop may have written it already).
#[inline]
pub(super) fn wire_size(message: &Message, delivery: Delivery) -> usize {
    match delivery {
        Delivery::Sent => message
            .topic
            .as_str()
            .len()
            .saturating_add(message.payload.len())
            .saturating_add(WIRE_OVERHEAD),
        Delivery::Queued | Delivery::Dropped => 0,
    }
}

/// A PUBLISH's bytes beyond its topic and payload, at most: the fixed
/// header (5), the topic length (2) and the packet id (2).
const WIRE_OVERHEAD: usize = 9;

/// What became of one message handed to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Written to the connection's output (or given a place in the window).
    Sent,
    /// Waiting in the session's queue.
    Queued,
    /// Not kept: QoS 0 for an offline session or past
    /// [`QOS0_OUTPUT_LIMIT`](super::QOS0_OUTPUT_LIMIT), or QoS 1 and 2 past a full queue. Counted as dropped where the
    /// client lost something it would have received.
    Dropped,
}

/// The encodings of the message being routed, one per QoS it goes out at,
/// each made when the first subscriber at that QoS needs it. Kept by the
/// broker between messages so that their buffers are reused.
#[derive(Debug, Default)]
pub(super) struct Encodings {
    qos0: Encoding,
    qos1: Encoding,
    qos2: Encoding,
}

#[derive(Debug, Default)]
struct Encoding {
    /// Whether `publish` holds the routed message yet.
    made: bool,
    publish: SharedPublish,
}

impl Encodings {
    /// The PUBLISH that carries `message` at `qos`, encoded now if this is
    /// its first receiver at that QoS.
    #[inline]
    fn at(&mut self, message: &Message, qos: QoS) -> &mut SharedPublish {
        let encoding = match qos {
            QoS::AtMostOnce => &mut self.qos0,
            QoS::AtLeastOnce => &mut self.qos1,
            QoS::ExactlyOnce => &mut self.qos2,
        };
        if !encoding.made {
            // [MQTT-3.3.1-9]: live forwarding clears the retain flag. Every
            // level sol speaks (3.1, 3.1.1) gets the 3.1.1 bytes; a level with
            // another layout would key these encodings on (protocol, qos).
            encoding
                .publish
                .encode(Protocol::V311, &message.topic, &message.payload, qos, false);
            encoding.made = true;
        }
        &mut encoding.publish
    }

    /// Forgets the routed message; the next one is encoded afresh.
    fn clear(&mut self) {
        for encoding in [&mut self.qos0, &mut self.qos1, &mut self.qos2] {
            encoding.made = false;
            encoding.publish.clear();
        }
    }
}

/// How a PUBLISH reaches a connection.
pub(super) enum Wire<'a> {
    /// A packet of its own, encoded into the connection's output.
    Packet(Publish),
    /// The routed message's shared encoding: the same bytes for every
    /// receiver at one QoS, with each one's packet id patched in.
    Shared(&'a mut Encodings, &'a Message),
}

impl Wire<'_> {
    /// Sends the PUBLISH at `qos` to `conn`, with `id` at QoS 1 and 2.
    /// Inlined: it is the inner step of every delivery, and since
    /// `deliver_with` has two callers the compiler left it a call of its
    /// own, which cost a QoS 0 fan-out 30 instructions a delivery.
    #[inline]
    fn send(self, out: &mut dyn Outbox, conn: ConnId, qos: QoS, id: Option<PacketId>) {
        match self {
            Wire::Packet(publish) => {
                let publish = Publish {
                    packet_id: id,
                    ..publish
                };
                out.send(conn, &Packet::Publish(publish));
            }
            Wire::Shared(encodings, message) => {
                let shared = encodings.at(message, qos);
                if let Some(id) = id {
                    shared.set_id(id);
                }
                out.send_bytes(conn, shared.bytes());
            }
        }
    }
}

/// Delivers a message at `qos` to one session, sending it over `wire`. Only
/// QoS 1 and 2 call `stored` for the copy the session keeps: QoS 0 is sent
/// or dropped, never kept. A function of the fields it needs rather than a
/// method, so that a caller can walk the retained messages while it
/// delivers them. The caller arms the resend check ([`retry::arm`]) after
/// a [`Delivery::Sent`].
#[inline(always)]
pub(super) fn deliver_with(
    slot: &mut SessionSlot,
    qos: QoS,
    stored: impl FnOnce() -> Message,
    wire: Wire<'_>,
    arrival: Arrival,
    stats: &mut Stats,
    out: &mut dyn Outbox,
) -> Delivery {
    if qos == QoS::AtMostOnce {
        // QoS 0 is not queued for offline sessions (mosquitto's default)
        // and not buffered without bound for a client that does not read.
        let Some(conn) = slot.conn else {
            return Delivery::Dropped;
        };
        if out.pending(conn) >= arrival.qos0_limit {
            stats.messages_dropped += 1;
            return Delivery::Dropped;
        }
        wire.send(out, conn, qos, None);
        stats.messages_sent += 1;
        return Delivery::Sent;
    }
    let conn = slot.conn;
    match slot
        .session
        .push(stored(), conn.is_some(), arrival.time, arrival.seq)
    {
        Pushed::Send(id) => {
            if let Some(conn) = conn {
                wire.send(out, conn, qos, Some(id));
                stats.messages_sent += 1;
            }
            Delivery::Sent
        }
        // Behind messages that wait for the output to drain: it goes out
        // with them, and counts as sent then.
        Pushed::Queued | Pushed::Waiting => Delivery::Queued,
        Pushed::Dropped => {
            stats.messages_dropped += 1;
            Delivery::Dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;

    use crate::protocol::TopicName;

    fn message(payload: &'static [u8]) -> Message {
        Message::new(
            TopicName::new("t").unwrap(),
            Bytes::from_static(payload),
            QoS::ExactlyOnce,
            true,
        )
    }

    #[test]
    fn each_qos_is_encoded_once_per_message_and_afresh_for_the_next() {
        let mut encodings = Encodings::default();
        let first = message(b"one");
        encodings
            .at(&first, QoS::AtLeastOnce)
            .set_id(PacketId::new(9).unwrap());
        // Not encoded again: the id patched in is still there.
        assert_eq!(
            encodings.at(&first, QoS::AtLeastOnce).bytes(),
            [0x32, 8, 0, 1, b't', 0, 9, b'o', b'n', b'e']
        );
        // Each QoS has its own encoding, retain cleared ([MQTT-3.3.1-9]).
        assert_eq!(
            encodings.at(&first, QoS::AtMostOnce).bytes(),
            [0x30, 6, 0, 1, b't', b'o', b'n', b'e']
        );
        assert_eq!(
            encodings.at(&first, QoS::ExactlyOnce).bytes(),
            [0x34, 8, 0, 1, b't', 0, 1, b'o', b'n', b'e']
        );
        encodings.clear();
        let second = message(b"2");
        assert_eq!(
            encodings.at(&second, QoS::AtLeastOnce).bytes(),
            [0x32, 6, 0, 1, b't', 0, 1, b'2']
        );
    }
}
