//! What the broker remembers about one client id (section 4.1).
//!
//! A session outlives its network connection when the client asked for a
//! persistent session (clean session 0). It holds:
//!
//! - the client's subscriptions (the trie holds the routing copy; this one
//!   is what lets the broker remove them all when the session ends);
//! - outgoing QoS 1 and 2 messages sent and not yet acknowledged, in the
//!   order they were sent (the *inflight window*);
//! - outgoing messages waiting for room in that window, or for the client
//!   to come back (the *queue*);
//! - incoming QoS 2 packet ids received and not yet released by PUBREL,
//!   which is how a duplicate QoS 2 PUBLISH is recognised and not delivered
//!   twice ([MQTT-4.3.3-2]).
//!
//! **Invariant:** this module knows no sockets, no connections and no
//! clock. Everything in it is plain data, so that a session can later be
//! written to disk and read back.
//! Explained in docs/07-qos-step-by-step.md.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

use crate::protocol::{PacketId, Publish, QoS, TopicFilter, TopicName};

/// A message on its way to one subscriber, at the QoS it will be sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

impl Message {
    /// The PUBLISH packet that carries this message.
    pub fn to_publish(&self, packet_id: Option<PacketId>, dup: bool) -> Publish {
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id,
            payload: self.payload.clone(),
        }
    }
}

/// Where an outgoing QoS 1 or 2 message stands in its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inflight {
    /// QoS 1 PUBLISH sent; waiting for PUBACK.
    AwaitingPuback(Message),
    /// QoS 2 PUBLISH sent; waiting for PUBREC.
    AwaitingPubrec(Message),
    /// PUBREL sent; waiting for PUBCOMP. The message itself is delivered and
    /// no longer needed.
    AwaitingPubcomp,
}

/// What [`Session::push`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// It took a place in the inflight window: send it now with this id.
    Send(PacketId),
    /// The window is full (or the client is offline): it waits in the queue.
    Queued,
    /// The queue is full: the message was dropped.
    Dropped,
}

/// The state the broker keeps for one client id.
#[derive(Debug)]
pub struct Session {
    pub client_id: String,
    /// Clean session 1: the session ends with its connection.
    pub clean: bool,
    pub subscriptions: HashMap<TopicFilter, QoS>,
    /// Sent and unacknowledged, oldest first.
    inflight: VecDeque<(PacketId, Inflight)>,
    queue: VecDeque<Message>,
    /// Incoming QoS 2 ids between PUBLISH and PUBREL.
    incoming_qos2: HashSet<PacketId>,
    next_id: PacketId,
    max_inflight: usize,
    max_queued: usize,
    /// Messages this session had to drop because its queue was full.
    pub dropped: u64,
}

impl Session {
    pub fn new(client_id: String, clean: bool, max_inflight: usize, max_queued: usize) -> Session {
        Session {
            client_id,
            clean,
            subscriptions: HashMap::new(),
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            incoming_qos2: HashSet::new(),
            next_id: PacketId::FIRST,
            max_inflight: max_inflight.max(1),
            max_queued,
            dropped: 0,
        }
    }

    /// Offers a QoS 1 or 2 message for delivery. `online` says whether the
    /// client is connected: offline, every message waits in the queue.
    pub fn push(&mut self, message: Message, online: bool) -> Pushed {
        if online && self.queue.is_empty() && self.window_has_room() {
            return Pushed::Send(self.start_inflight(message));
        }
        if self.queue.len() >= self.max_queued {
            self.dropped += 1;
            return Pushed::Dropped;
        }
        self.queue.push_back(message);
        Pushed::Queued
    }

    /// Moves queued messages into the inflight window while it has room,
    /// returning each with the id to send it under, in queue order.
    pub fn fill_window(&mut self) -> Vec<(PacketId, Message)> {
        let mut ready = Vec::new();
        while self.window_has_room() {
            let Some(message) = self.queue.pop_front() else {
                break;
            };
            let id = self.start_inflight(message.clone());
            ready.push((id, message));
        }
        ready
    }

    /// PUBACK: the QoS 1 message `id` is delivered. Returns whether it was
    /// known (an unknown id is ignored, as mosquitto does).
    pub fn puback(&mut self, id: PacketId) -> bool {
        self.remove_inflight(id, |state| matches!(state, Inflight::AwaitingPuback(_)))
    }

    /// PUBREC: the QoS 2 message `id` was received; the broker answers with
    /// PUBREL whatever this returns, and waits for PUBCOMP.
    pub fn pubrec(&mut self, id: PacketId) -> bool {
        for (inflight_id, state) in self.inflight.iter_mut() {
            if *inflight_id == id {
                if let Inflight::AwaitingPubrec(_) = state {
                    *state = Inflight::AwaitingPubcomp;
                }
                return true;
            }
        }
        false
    }

    /// PUBCOMP: the QoS 2 handshake for `id` is over.
    pub fn pubcomp(&mut self, id: PacketId) -> bool {
        self.remove_inflight(id, |state| matches!(state, Inflight::AwaitingPubcomp))
    }

    /// An incoming QoS 2 PUBLISH with `id`: returns true the first time, false
    /// for a duplicate that arrives before PUBREL (which must not be
    /// delivered again).
    pub fn incoming_qos2(&mut self, id: PacketId) -> bool {
        self.incoming_qos2.insert(id)
    }

    /// PUBREL: the client releases `id`.
    pub fn pubrel(&mut self, id: PacketId) {
        self.incoming_qos2.remove(&id);
    }

    /// What must be resent when the client reconnects, oldest first: each
    /// unacknowledged PUBLISH (to be sent with DUP set) or PUBREL
    /// ([MQTT-4.4.0-1]).
    pub fn inflight(&self) -> impl Iterator<Item = &(PacketId, Inflight)> {
        self.inflight.iter()
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Drops every queued message, and every inflight one not yet received
    /// (awaiting PUBACK or PUBREC), that `keep` refuses; returns how many.
    /// Used when the client may no longer read some topics: what it would
    /// have been sent on them must not reach it late. A message awaiting
    /// PUBCOMP was already received and stays, so the handshake can end.
    pub fn retain_messages(&mut self, mut keep: impl FnMut(&Message) -> bool) -> usize {
        let before = self.queue.len() + self.inflight.len();
        self.queue.retain(|message| keep(message));
        self.inflight.retain(|(_, state)| match state {
            Inflight::AwaitingPuback(message) | Inflight::AwaitingPubrec(message) => keep(message),
            Inflight::AwaitingPubcomp => true,
        });
        before - (self.queue.len() + self.inflight.len())
    }

    fn window_has_room(&self) -> bool {
        self.inflight.len() < self.max_inflight
    }

    fn start_inflight(&mut self, message: Message) -> PacketId {
        let id = self.allocate_id();
        let state = match message.qos {
            QoS::ExactlyOnce => Inflight::AwaitingPubrec(message),
            _ => Inflight::AwaitingPuback(message),
        };
        self.inflight.push_back((id, state));
        id
    }

    /// The next packet id not in use by an inflight message. The window is at
    /// most 65535 wide, so a free id always exists when there is room.
    fn allocate_id(&mut self) -> PacketId {
        let mut id = self.next_id;
        while self.inflight.iter().any(|(used, _)| *used == id) {
            id = id.next();
        }
        self.next_id = id.next();
        id
    }

    fn remove_inflight(&mut self, id: PacketId, state_ok: impl Fn(&Inflight) -> bool) -> bool {
        let position = self
            .inflight
            .iter()
            .position(|(inflight_id, state)| *inflight_id == id && state_ok(state));
        match position {
            Some(index) => self.inflight.remove(index).is_some(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u8, qos: QoS) -> Message {
        Message {
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from(vec![n]),
            qos,
            retain: false,
        }
    }

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn window_then_queue_then_drop() {
        let mut s = Session::new("c".into(), false, 2, 2);
        assert_eq!(
            s.push(message(1, QoS::AtLeastOnce), true),
            Pushed::Send(id(1))
        );
        assert_eq!(
            s.push(message(2, QoS::AtLeastOnce), true),
            Pushed::Send(id(2))
        );
        assert_eq!(s.push(message(3, QoS::AtLeastOnce), true), Pushed::Queued);
        assert_eq!(s.push(message(4, QoS::AtLeastOnce), true), Pushed::Queued);
        assert_eq!(s.push(message(5, QoS::AtLeastOnce), true), Pushed::Dropped);
        assert_eq!(s.dropped, 1);
        assert!(s.puback(id(1)));
        assert!(
            !s.puback(id(1)),
            "a second PUBACK for the same id is unknown"
        );
        let ready = s.fill_window();
        assert_eq!(ready, vec![(id(3), message(3, QoS::AtLeastOnce))]);
        assert_eq!(s.queued_len(), 1);
    }

    #[test]
    fn offline_messages_wait_even_with_room() {
        let mut s = Session::new("c".into(), false, 5, 5);
        assert_eq!(s.push(message(1, QoS::ExactlyOnce), false), Pushed::Queued);
        assert_eq!(s.inflight_len(), 0);
        let ready = s.fill_window();
        assert_eq!(ready.len(), 1);
    }

    #[test]
    fn qos2_outgoing_handshake() {
        let mut s = Session::new("c".into(), false, 5, 5);
        assert_eq!(
            s.push(message(1, QoS::ExactlyOnce), true),
            Pushed::Send(id(1))
        );
        assert!(!s.pubcomp(id(1)), "PUBCOMP before PUBREC does not complete");
        assert!(s.pubrec(id(1)));
        assert_eq!(
            s.inflight().next().map(|(_, st)| st),
            Some(&Inflight::AwaitingPubcomp)
        );
        assert!(s.pubcomp(id(1)));
        assert_eq!(s.inflight_len(), 0);
    }

    #[test]
    fn incoming_qos2_duplicates_are_recognised_until_pubrel() {
        let mut s = Session::new("c".into(), false, 5, 5);
        assert!(s.incoming_qos2(id(7)));
        assert!(!s.incoming_qos2(id(7)));
        s.pubrel(id(7));
        assert!(s.incoming_qos2(id(7)));
    }

    #[test]
    fn retain_messages_drops_what_may_no_longer_be_sent() {
        let mut s = Session::new("c".into(), false, 3, 10);
        for n in 1..=3 {
            s.push(message(n, QoS::ExactlyOnce), true);
        }
        for n in 4..=6 {
            s.push(message(n, QoS::AtLeastOnce), true);
        }
        // Message 1 was received (PUBREC): it stays whatever `keep` says.
        assert!(s.pubrec(id(1)));
        let dropped = s.retain_messages(|m| m.payload[0] % 2 == 0);
        // 3 (inflight) and 5 (queued) go; 1 awaits PUBCOMP and stays.
        assert_eq!(dropped, 2);
        let inflight: Vec<PacketId> = s.inflight().map(|(i, _)| *i).collect();
        assert_eq!(inflight, vec![id(1), id(2)]);
        assert_eq!(s.queued_len(), 2);
        assert!(s.pubcomp(id(1)));
        // The freed room takes the queue in order.
        let ready: Vec<u8> = s.fill_window().iter().map(|(_, m)| m.payload[0]).collect();
        assert_eq!(ready, vec![4, 6]);
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_wrap() {
        let mut s = Session::new("c".into(), false, 3, 0);
        s.next_id = id(u16::MAX);
        assert_eq!(
            s.push(message(1, QoS::AtLeastOnce), true),
            Pushed::Send(id(u16::MAX))
        );
        assert_eq!(
            s.push(message(2, QoS::AtLeastOnce), true),
            Pushed::Send(id(1))
        );
        s.next_id = id(u16::MAX);
        assert_eq!(
            s.push(message(3, QoS::AtLeastOnce), true),
            Pushed::Send(id(2))
        );
    }
}
