//! PUBLISH in both directions: the QoS 1 and 2 handshakes, routing through
//! the trie, delivery into each session's window or queue, and retained
//! messages (sections 3.3 to 3.7 and 4.3).
//! Explained in docs/07-qos-step-by-step.md and docs/08-retained-and-wills.md.

use std::cmp::Reverse;
use std::time::Instant;

use bytes::Bytes;
use log::debug;

use super::{retry, Broker, ConnId, Outbox, SessionSlot, Stats, OUTPUT_HIGH_WATER};
use crate::protocol::{Packet, PacketId, Publish, QoS, TopicName, Will};
use crate::session::{Message, Pushed};

/// A retained message as stored: the last message published with the retain
/// flag on its topic ([MQTT-3.3.1-5]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
}

impl Broker {
    pub(super) fn handle_publish(
        &mut self,
        conn: ConnId,
        session: usize,
        publish: Publish,
        out: &mut dyn Outbox,
    ) {
        self.stats.messages_received += 1;
        let message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
        };
        // A publish the ACL refuses (writes to $SOL/... always are) is
        // acknowledged as usual and dropped, retained flag and all
        // ([MQTT-3.3.5-2]).
        let allowed = self.may_publish(conn, &message.topic);
        if !allowed {
            debug!("Dropped a PUBLISH to {} refused by the ACL.", message.topic);
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {
                if allowed {
                    self.route(message, out);
                }
            }
            (QoS::AtLeastOnce, Some(id)) => {
                if allowed {
                    self.route(message, out);
                }
                out.send(conn, &Packet::Puback(id));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // [MQTT-4.3.3-2]: a duplicate before PUBREL gets its PUBREC
                // again but is not delivered again.
                let first = self
                    .sessions
                    .get_mut(session)
                    .is_some_and(|slot| slot.session.incoming_qos2(id));
                if first && allowed {
                    self.route(message, out);
                }
                out.send(conn, &Packet::Pubrec(id));
            }
            // The decoder never yields QoS 1 or 2 without an id.
            (_, None) => self.violation(conn, "PUBLISH without a packet id".to_string(), out),
        }
    }

    pub(super) fn handle_puback(
        &mut self,
        conn: ConnId,
        session: usize,
        id: PacketId,
        out: &mut dyn Outbox,
    ) {
        let done = self
            .sessions
            .get_mut(session)
            .is_some_and(|slot| slot.session.puback(id));
        if done {
            self.flush_queue(conn, session, out);
        }
    }

    /// PUBREC always gets PUBREL, even for an id the broker no longer
    /// knows: that lets the client finish its side of the handshake.
    pub(super) fn handle_pubrec(
        &mut self,
        conn: ConnId,
        session: usize,
        id: PacketId,
        out: &mut dyn Outbox,
    ) {
        if let Some(slot) = self.sessions.get_mut(session) {
            slot.session.pubrec(id, self.now);
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
        out: &mut dyn Outbox,
    ) {
        let done = self
            .sessions
            .get_mut(session)
            .is_some_and(|slot| slot.session.pubcomp(id));
        if done {
            self.flush_queue(conn, session, out);
        }
    }

    /// Publishes a will as if its client had sent it. The caller has
    /// checked that its client may write there (`Broker::end_connection`):
    /// a will aimed at `$SOL` is dropped like any client write there.
    pub(super) fn publish_will(&mut self, will: Will, out: &mut dyn Outbox) {
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
        };
        self.route(message, out);
    }

    /// Stores or clears the retained message, then hands a copy to every
    /// session with a matching subscription: one copy per session, at the
    /// highest QoS any of its matching subscriptions granted, never above
    /// the QoS it was published with.
    pub(super) fn route(&mut self, message: Message, out: &mut dyn Outbox) {
        if message.retain {
            self.retain(&message);
        }
        let size = message.stored_size();
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        let filters = self
            .subscriptions
            .for_each_match(&message.topic, |&key, &qos| matches.push((key, qos)));
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
            if !self.may_receive(key, &message.topic) {
                continue;
            }
            let copy = Message {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos: message.qos.min(granted),
                // [MQTT-3.3.1-9]: live forwarding clears the retain flag.
                retain: false,
            };
            self.deliver(key, copy, out);
        }
        // Every copy is now queued, in flight or in an output buffer.
        let copies = matches.len() + usize::from(message.retain);
        self.matches = matches;
        self.memory_grew(size.saturating_mul(copies), out);
    }

    /// [MQTT-3.3.1-10/11]: a retained PUBLISH with an empty payload deletes
    /// the topic's retained message and stores nothing.
    fn retain(&mut self, message: &Message) {
        if message.payload.is_empty() {
            if self.retained.remove(&message.topic).is_some() {
                self.memory.retained_removed(&message.topic);
            }
        } else {
            let retained = Retained {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos: message.qos,
            };
            self.memory.retained_stored(&retained);
            self.retained.insert(&message.topic, retained);
        }
    }

    /// Hands `message` to session `key`: straight out for QoS 0, through the
    /// session's window and queue for QoS 1 and 2.
    pub(super) fn deliver(&mut self, key: usize, message: Message, out: &mut dyn Outbox) {
        if let Some(slot) = self.sessions.get_mut(key) {
            if deliver_to(slot, message, self.now, &mut self.stats, out) == Delivery::Sent {
                retry::arm(&mut self.timers, slot, self.now, &self.settings);
            }
        }
    }

    /// Sends whatever the session's window now has room for from its queue.
    pub(super) fn flush_queue(&mut self, conn: ConnId, session: usize, out: &mut dyn Outbox) {
        let Some(slot) = self.sessions.get_mut(session) else {
            return;
        };
        let sent = slot.session.fill_window(self.now);
        retry::arm(&mut self.timers, slot, self.now, &self.settings);
        for (id, message) in sent {
            out.send(conn, &Packet::Publish(message.to_publish(Some(id), false)));
            self.stats.messages_sent += 1;
        }
    }
}

/// What became of one message handed to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Written to the connection's output (or given a place in the window).
    Sent,
    /// Waiting in the session's queue.
    Queued,
    /// Not kept: QoS 0 for an offline session or past the output high-water
    /// mark, or QoS 1 and 2 past a full queue. Counted as dropped where the
    /// client lost something it would have received.
    Dropped,
}

/// Delivers `message` to one session at `now`. A free function over the
/// fields it needs, so that callers can walk the retained trie while
/// delivering. The caller arms the resend check ([`retry::arm`]) after a
/// [`Delivery::Sent`].
pub(super) fn deliver_to(
    slot: &mut SessionSlot,
    message: Message,
    now: Instant,
    stats: &mut Stats,
    out: &mut dyn Outbox,
) -> Delivery {
    if message.qos == QoS::AtMostOnce {
        // QoS 0 is not queued for offline sessions (mosquitto's default)
        // and not buffered without bound for a client that does not read.
        let Some(conn) = slot.conn else {
            return Delivery::Dropped;
        };
        if out.pending(conn) >= OUTPUT_HIGH_WATER {
            stats.messages_dropped += 1;
            return Delivery::Dropped;
        }
        out.send(conn, &Packet::Publish(message.to_publish(None, false)));
        stats.messages_sent += 1;
        return Delivery::Sent;
    }
    let conn = slot.conn;
    let publish = message.to_publish(None, false);
    match slot.session.push(message, conn.is_some(), now) {
        Pushed::Send(id) => {
            if let Some(conn) = conn {
                let publish = Publish {
                    packet_id: Some(id),
                    ..publish
                };
                out.send(conn, &Packet::Publish(publish));
                stats.messages_sent += 1;
            }
            Delivery::Sent
        }
        Pushed::Queued => Delivery::Queued,
        Pushed::Dropped => {
            stats.messages_dropped += 1;
            Delivery::Dropped
        }
    }
}
