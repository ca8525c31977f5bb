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
//! It also keeps, for the broker's housekeeping, when each queued message
//! arrived (the oldest are reclaimed first when memory runs short), when each
//! inflight message was last sent (an overdue one is sent again), and how many
//! bytes its messages hold.
//!
//! **Invariant:** this module knows no sockets, no connections and no
//! clock: every instant it stores was passed in by the broker. Everything in
//! it is plain data, so that a session can later be written to disk and read
//! back.
//! Explained in docs/07-qos-step-by-step.md.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::{PacketId, Publish, QoS, TopicFilter, TopicName};

/// What one stored message costs beyond its topic and payload: the message
/// value itself and its place in a queue, rounded up. An estimate: it only
/// has to make ten thousand empty messages count for something against
/// `max_memory`.
pub const STORED_OVERHEAD: usize = 96;

/// A message on its way to one subscriber, at the QoS it will be sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

impl Message {
    /// The bytes this message is counted for against `max_memory`: its topic,
    /// its payload and [`STORED_OVERHEAD`]. A payload shared by several
    /// sessions is counted once per session: the count errs on the side of
    /// reclaiming early, never late.
    pub fn stored_size(&self) -> usize {
        self.topic
            .as_str()
            .len()
            .saturating_add(self.payload.len())
            .saturating_add(STORED_OVERHEAD)
    }

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

/// What an acknowledgement from the client (PUBACK, PUBREC, PUBCOMP) found
/// in the inflight window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// It fitted its message's handshake, and moved it on or ended it.
    Done,
    /// No message is in flight under its id: the client may be finishing a
    /// handshake the broker already forgot.
    Unknown,
    /// Its id names a message at another stage: a PUBACK for QoS 2, a
    /// PUBREC or PUBCOMP for QoS 1, a PUBCOMP before the PUBREC. The client
    /// has the QoS or the order wrong. Nothing changed.
    Mismatch,
}

impl Inflight {
    /// The message this step of the handshake still holds, if any.
    fn message(&self) -> Option<&Message> {
        match self {
            Inflight::AwaitingPuback(message) | Inflight::AwaitingPubrec(message) => Some(message),
            Inflight::AwaitingPubcomp => None,
        }
    }
}

/// A message in the inflight window.
#[derive(Debug)]
struct Sent {
    id: PacketId,
    state: Inflight,
    /// When its PUBLISH (or PUBREL) was last sent.
    at: Instant,
}

/// A message waiting in the queue.
#[derive(Debug)]
struct Queued {
    message: Message,
    /// When it was queued: the oldest queued messages are the first to go
    /// when the broker reclaims memory.
    since: Instant,
}

/// What [`Session::take_overdue`] found to send again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resend {
    /// A PUBLISH still unacknowledged (sent again with DUP set).
    Publish(PacketId, Message),
    /// A PUBREL still not answered by PUBCOMP.
    Pubrel(PacketId),
}

/// The state the broker keeps for one client id.
#[derive(Debug)]
pub struct Session {
    /// Shared with the broker's connection state and id map: one copy.
    pub client_id: Arc<str>,
    /// Clean session 1: the session ends with its connection.
    pub clean: bool,
    pub subscriptions: Subscriptions,
    /// Sent and unacknowledged, in the order first sent.
    inflight: LazyDeque<Sent>,
    queue: LazyDeque<Queued>,
    /// Incoming QoS 2 ids between PUBLISH and PUBREL. Boxed on first use:
    /// most sessions never receive QoS 2, and every session would pay for
    /// an empty set's inline size (48 bytes, against 8 for the box).
    #[allow(clippy::box_collection)]
    incoming_qos2: Option<Box<HashSet<PacketId>>>,
    next_id: PacketId,
    max_inflight: usize,
    max_queued: usize,
    /// Messages this session had to drop: its queue was full, or the broker
    /// reclaimed them for memory.
    pub dropped: u64,
    /// [`Message::stored_size`] of every message queued or in flight.
    stored_bytes: usize,
}

impl Session {
    pub fn new(
        client_id: impl Into<Arc<str>>,
        clean: bool,
        max_inflight: usize,
        max_queued: usize,
    ) -> Session {
        Session {
            client_id: client_id.into(),
            clean,
            subscriptions: Subscriptions::default(),
            inflight: LazyDeque::default(),
            queue: LazyDeque::default(),
            incoming_qos2: None,
            next_id: PacketId::FIRST,
            max_inflight: max_inflight.max(1),
            max_queued,
            dropped: 0,
            stored_bytes: 0,
        }
    }

    /// Offers a QoS 1 or 2 message for delivery at `now`. `online` says
    /// whether the client is connected: offline, every message waits in the
    /// queue.
    pub fn push(&mut self, message: Message, online: bool, now: Instant) -> Pushed {
        if online && self.queue.is_empty() && self.window_has_room() {
            self.stored_bytes = self.stored_bytes.saturating_add(message.stored_size());
            return Pushed::Send(self.start_inflight(message, now));
        }
        if self.queue.len() >= self.max_queued {
            self.dropped += 1;
            return Pushed::Dropped;
        }
        self.stored_bytes = self.stored_bytes.saturating_add(message.stored_size());
        self.queue.push_back(Queued {
            message,
            since: now,
        });
        Pushed::Queued
    }

    /// Moves queued messages into the inflight window while it has room,
    /// returning each with the id to send it under (at `now`), in queue
    /// order.
    pub fn fill_window(&mut self, now: Instant) -> Vec<(PacketId, Message)> {
        let mut ready = Vec::new();
        while self.window_has_room() {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            let id = self.start_inflight(queued.message.clone(), now);
            ready.push((id, queued.message));
        }
        ready
    }

    /// PUBACK: the QoS 1 message `id` is delivered.
    pub fn puback(&mut self, id: PacketId) -> Ack {
        self.remove_inflight(id, |state| matches!(state, Inflight::AwaitingPuback(_)))
    }

    /// PUBREC: the QoS 2 message `id` was received (at `now`); the broker
    /// answers with PUBREL, unless the id is at another stage, and waits for
    /// PUBCOMP. A repeated PUBREC fits: its PUBREL may have been lost.
    pub fn pubrec(&mut self, id: PacketId, now: Instant) -> Ack {
        let Some(sent) = self.inflight.iter_mut().find(|sent| sent.id == id) else {
            return Ack::Unknown;
        };
        match &sent.state {
            Inflight::AwaitingPuback(_) => return Ack::Mismatch,
            Inflight::AwaitingPubrec(message) => {
                // Delivered: only the id is needed from here on.
                self.stored_bytes = self.stored_bytes.saturating_sub(message.stored_size());
                sent.state = Inflight::AwaitingPubcomp;
            }
            Inflight::AwaitingPubcomp => {}
        }
        sent.at = now;
        Ack::Done
    }

    /// PUBCOMP: the QoS 2 handshake for `id` is over.
    pub fn pubcomp(&mut self, id: PacketId) -> Ack {
        self.remove_inflight(id, |state| matches!(state, Inflight::AwaitingPubcomp))
    }

    /// An incoming QoS 2 PUBLISH with `id`: returns true the first time, false
    /// for a duplicate that arrives before PUBREL (which must not be
    /// delivered again).
    pub fn incoming_qos2(&mut self, id: PacketId) -> bool {
        self.incoming_qos2
            .get_or_insert_with(Box::default)
            .insert(id)
    }

    /// PUBREL: the client releases `id`.
    pub fn pubrel(&mut self, id: PacketId) {
        if let Some(ids) = &mut self.incoming_qos2 {
            ids.remove(&id);
        }
    }

    /// What must be resent when the client reconnects, oldest first: each
    /// unacknowledged PUBLISH (to be sent with DUP set) or PUBREL
    /// ([MQTT-4.4.0-1]). Call [`Session::resent`] once they are sent.
    pub fn inflight(&self) -> impl Iterator<Item = (PacketId, &Inflight)> {
        self.inflight.iter().map(|sent| (sent.id, &sent.state))
    }

    /// Everything in flight was sent again at `now` (on reconnect).
    pub fn resent(&mut self, now: Instant) {
        for sent in self.inflight.iter_mut() {
            sent.at = now;
        }
    }

    /// The inflight messages last sent `interval` or more before `now`, in
    /// the order first sent, each marked as sent again at `now`. At most the
    /// inflight window, and each message at most once per `interval`: what
    /// bounds resending.
    pub fn take_overdue(&mut self, now: Instant, interval: Duration) -> Vec<Resend> {
        let mut due = Vec::new();
        for sent in self.inflight.iter_mut() {
            let overdue = sent.at.checked_add(interval).is_some_and(|at| at <= now);
            if !overdue {
                continue;
            }
            sent.at = now;
            due.push(match &sent.state {
                Inflight::AwaitingPuback(message) | Inflight::AwaitingPubrec(message) => {
                    Resend::Publish(sent.id, message.clone())
                }
                Inflight::AwaitingPubcomp => Resend::Pubrel(sent.id),
            });
        }
        due
    }

    /// When the next inflight message becomes overdue, if any is in flight.
    pub fn next_overdue(&self, interval: Duration) -> Option<Instant> {
        let oldest = self.inflight.iter().map(|sent| sent.at).min()?;
        oldest.checked_add(interval)
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Messages held: queued, or in flight with the message still needed.
    pub fn stored_len(&self) -> usize {
        let holding = self
            .inflight
            .iter()
            .filter(|sent| sent.state.message().is_some())
            .count();
        self.queue.len() + holding
    }

    /// What the queued and inflight messages are counted for against
    /// `max_memory`.
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    /// When the oldest queued message was queued.
    pub fn oldest_queued(&self) -> Option<Instant> {
        self.queue.front().map(|queued| queued.since)
    }

    /// Drops the oldest queued message to reclaim memory, counting it in
    /// `dropped`; returns the bytes it was counted for. Inflight messages
    /// are never dropped: their delivery has been promised.
    pub fn drop_oldest_queued(&mut self) -> Option<usize> {
        let queued = self.queue.pop_front()?;
        let size = queued.message.stored_size();
        self.stored_bytes = self.stored_bytes.saturating_sub(size);
        self.dropped += 1;
        Some(size)
    }

    /// Drops every queued message, and every inflight one not yet received
    /// (awaiting PUBACK or PUBREC), that `keep` refuses; returns how many.
    /// Used when the client may no longer read some topics: what it would
    /// have been sent on them must not reach it late. A message awaiting
    /// PUBCOMP was already received and stays, so the handshake can end.
    pub fn retain_messages(&mut self, mut keep: impl FnMut(&Message) -> bool) -> usize {
        let before = self.queue.len() + self.inflight.len();
        let mut freed = 0usize;
        self.queue.retain(|queued| {
            let kept = keep(&queued.message);
            if !kept {
                freed = freed.saturating_add(queued.message.stored_size());
            }
            kept
        });
        self.inflight.retain(|sent| match sent.state.message() {
            Some(message) => {
                let kept = keep(message);
                if !kept {
                    freed = freed.saturating_add(message.stored_size());
                }
                kept
            }
            None => true,
        });
        self.stored_bytes = self.stored_bytes.saturating_sub(freed);
        before - (self.queue.len() + self.inflight.len())
    }

    fn window_has_room(&self) -> bool {
        self.inflight.len() < self.max_inflight
    }

    fn start_inflight(&mut self, message: Message, now: Instant) -> PacketId {
        let id = self.allocate_id();
        let state = match message.qos {
            QoS::ExactlyOnce => Inflight::AwaitingPubrec(message),
            _ => Inflight::AwaitingPuback(message),
        };
        self.inflight.push_back(Sent { id, state, at: now });
        id
    }

    /// The next packet id not in use by an inflight message. The window is at
    /// most 65535 wide, so a free id always exists when there is room.
    fn allocate_id(&mut self) -> PacketId {
        let mut id = self.next_id;
        while self.inflight.iter().any(|sent| sent.id == id) {
            id = id.next();
        }
        self.next_id = id.next();
        id
    }

    fn remove_inflight(&mut self, id: PacketId, state_ok: impl Fn(&Inflight) -> bool) -> Ack {
        let Some((index, fits)) = self
            .inflight
            .iter()
            .enumerate()
            .find(|(_, sent)| sent.id == id)
            .map(|(index, sent)| (index, state_ok(&sent.state)))
        else {
            return Ack::Unknown;
        };
        if !fits {
            return Ack::Mismatch;
        }
        if let Some(removed) = self.inflight.remove(index) {
            if let Some(message) = removed.state.message() {
                self.stored_bytes = self.stored_bytes.saturating_sub(message.stored_size());
            }
        }
        Ack::Done
    }
}

/// A session's subscriptions, filter to granted QoS: a map boxed on first
/// use. Many clients only publish, and an empty map inline would cost each
/// session 48 bytes against 8.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub struct Subscriptions(Option<Box<HashMap<TopicFilter, QoS>>>);

impl Subscriptions {
    /// Adds or replaces the subscription to `filter`; returns the QoS it
    /// replaced.
    pub fn insert(&mut self, filter: TopicFilter, qos: QoS) -> Option<QoS> {
        self.0.get_or_insert_with(Box::default).insert(filter, qos)
    }

    /// Removes the subscription to `filter`; returns its QoS if there was one.
    /// The map goes once empty: unsubscribing is rare, holding it is not.
    pub fn remove(&mut self, filter: &TopicFilter) -> Option<QoS> {
        let map = self.0.as_mut()?;
        let qos = map.remove(filter);
        if map.is_empty() {
            self.0 = None;
        }
        qos
    }

    pub fn get(&self, filter: &TopicFilter) -> Option<QoS> {
        self.0.as_ref()?.get(filter).copied()
    }

    pub fn keys(&self) -> impl Iterator<Item = &TopicFilter> {
        self.0.iter().flat_map(|map| map.keys())
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `VecDeque` boxed on first use. An idle session, which most are, holds
/// 8 bytes for each of its two deques instead of 32: at ten thousand idle
/// clients the difference is half a megabyte. Once a session has used one
/// it keeps it, so a busy subscriber allocates nothing per message.
#[derive(Debug)]
#[allow(clippy::box_collection)]
struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> Default for LazyDeque<T> {
    fn default() -> Self {
        LazyDeque(None)
    }
}

impl<T> LazyDeque<T> {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |deque| deque.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_back(&mut self, value: T) {
        self.0.get_or_insert_with(Box::default).push_back(value);
    }

    fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    fn front(&self) -> Option<&T> {
        self.0.as_ref()?.front()
    }

    fn remove(&mut self, index: usize) -> Option<T> {
        self.0.as_mut()?.remove(index)
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|deque| deque.iter())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut().flat_map(|deque| deque.iter_mut())
    }

    fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if let Some(deque) = &mut self.0 {
            deque.retain(keep);
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
        let mut s = Session::new("c", false, 2, 2);
        let now = Instant::now();
        assert_eq!(
            s.push(message(1, QoS::AtLeastOnce), true, now),
            Pushed::Send(id(1))
        );
        assert_eq!(
            s.push(message(2, QoS::AtLeastOnce), true, now),
            Pushed::Send(id(2))
        );
        assert_eq!(
            s.push(message(3, QoS::AtLeastOnce), true, now),
            Pushed::Queued
        );
        assert_eq!(
            s.push(message(4, QoS::AtLeastOnce), true, now),
            Pushed::Queued
        );
        assert_eq!(
            s.push(message(5, QoS::AtLeastOnce), true, now),
            Pushed::Dropped
        );
        assert_eq!(s.dropped, 1);
        assert_eq!(s.puback(id(1)), Ack::Done);
        assert_eq!(
            s.puback(id(1)),
            Ack::Unknown,
            "a second PUBACK for the same id is unknown"
        );
        let ready = s.fill_window(now);
        assert_eq!(ready, vec![(id(3), message(3, QoS::AtLeastOnce))]);
        assert_eq!(s.queued_len(), 1);
    }

    #[test]
    fn offline_messages_wait_even_with_room() {
        let mut s = Session::new("c", false, 5, 5);
        let now = Instant::now();
        assert_eq!(
            s.push(message(1, QoS::ExactlyOnce), false, now),
            Pushed::Queued
        );
        assert_eq!(s.inflight_len(), 0);
        let ready = s.fill_window(now);
        assert_eq!(ready.len(), 1);
    }

    #[test]
    fn an_acknowledgement_at_the_wrong_stage_changes_nothing() {
        let mut s = Session::new("c", false, 5, 5);
        let now = Instant::now();
        s.push(message(1, QoS::AtLeastOnce), true, now);
        assert_eq!(s.pubrec(id(1), now), Ack::Mismatch);
        assert_eq!(s.pubcomp(id(1)), Ack::Mismatch);
        assert_eq!(s.inflight_len(), 1);
        assert_eq!(s.puback(id(1)), Ack::Done);
        assert_eq!(s.pubrec(id(1), now), Ack::Unknown);
        assert_eq!(s.stored_bytes(), 0);
        // A PUBREC repeated after the PUBREL went out still fits.
        s.push(message(2, QoS::ExactlyOnce), true, now);
        assert_eq!(s.pubrec(id(2), now), Ack::Done);
        assert_eq!(s.pubrec(id(2), now), Ack::Done);
        assert_eq!(s.pubcomp(id(2)), Ack::Done);
        assert_eq!(s.inflight_len(), 0);
    }

    #[test]
    fn qos2_outgoing_handshake() {
        let mut s = Session::new("c", false, 5, 5);
        let now = Instant::now();
        assert_eq!(
            s.push(message(1, QoS::ExactlyOnce), true, now),
            Pushed::Send(id(1))
        );
        assert_eq!(
            s.pubcomp(id(1)),
            Ack::Mismatch,
            "PUBCOMP before PUBREC does not complete"
        );
        assert_eq!(s.puback(id(1)), Ack::Mismatch, "nor does a PUBACK");
        assert_eq!(s.pubrec(id(1), now), Ack::Done);
        assert_eq!(
            s.inflight().next().map(|(_, st)| st),
            Some(&Inflight::AwaitingPubcomp)
        );
        assert_eq!(s.pubcomp(id(1)), Ack::Done);
        assert_eq!(s.inflight_len(), 0);
    }

    #[test]
    fn incoming_qos2_duplicates_are_recognised_until_pubrel() {
        let mut s = Session::new("c", false, 5, 5);
        assert!(s.incoming_qos2(id(7)));
        assert!(!s.incoming_qos2(id(7)));
        s.pubrel(id(7));
        assert!(s.incoming_qos2(id(7)));
    }

    #[test]
    fn retain_messages_drops_what_may_no_longer_be_sent() {
        let now = Instant::now();
        let mut s = Session::new("c", false, 3, 10);
        for n in 1..=3 {
            s.push(message(n, QoS::ExactlyOnce), true, now);
        }
        for n in 4..=6 {
            s.push(message(n, QoS::AtLeastOnce), true, now);
        }
        // Message 1 was received (PUBREC): it stays whatever `keep` says.
        assert_eq!(s.pubrec(id(1), now), Ack::Done);
        let dropped = s.retain_messages(|m| m.payload[0] % 2 == 0);
        // 3 (inflight) and 5 (queued) go; 1 awaits PUBCOMP and stays.
        assert_eq!(dropped, 2);
        let inflight: Vec<PacketId> = s.inflight().map(|(i, _)| i).collect();
        assert_eq!(inflight, vec![id(1), id(2)]);
        assert_eq!(s.queued_len(), 2);
        // What is left is counted: 2 (inflight), 4 and 6 (queued).
        assert_eq!(
            s.stored_bytes(),
            3 * message(2, QoS::AtLeastOnce).stored_size()
        );
        assert_eq!(s.pubcomp(id(1)), Ack::Done);
        // The freed room takes the queue in order.
        let ready: Vec<u8> = s
            .fill_window(now)
            .iter()
            .map(|(_, m)| m.payload[0])
            .collect();
        assert_eq!(ready, vec![4, 6]);
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_wrap() {
        let mut s = Session::new("c", false, 3, 0);
        let now = Instant::now();
        s.next_id = id(u16::MAX);
        assert_eq!(
            s.push(message(1, QoS::AtLeastOnce), true, now),
            Pushed::Send(id(u16::MAX))
        );
        assert_eq!(
            s.push(message(2, QoS::AtLeastOnce), true, now),
            Pushed::Send(id(1))
        );
        s.next_id = id(u16::MAX);
        assert_eq!(
            s.push(message(3, QoS::AtLeastOnce), true, now),
            Pushed::Send(id(2))
        );
    }

    const SECOND: Duration = Duration::from_secs(1);

    fn sized(topic: &str, payload: &[u8], qos: QoS) -> Message {
        Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::copy_from_slice(payload),
            qos,
            retain: false,
        }
    }

    #[test]
    fn stored_bytes_follow_every_message_in_and_out() {
        let now = Instant::now();
        let mut s = Session::new("c", false, 1, 10);
        let a = sized("a/b", b"hello", QoS::AtLeastOnce);
        let b = sized("c", &[0; 100], QoS::ExactlyOnce);
        let c = sized("d", b"", QoS::AtLeastOnce);
        assert_eq!(a.stored_size(), 3 + 5 + STORED_OVERHEAD);
        assert_eq!(s.push(a.clone(), true, now), Pushed::Send(id(1)));
        assert_eq!(s.push(b.clone(), true, now), Pushed::Queued);
        assert_eq!(s.push(c.clone(), true, now), Pushed::Queued);
        let all = a.stored_size() + b.stored_size() + c.stored_size();
        assert_eq!(s.stored_bytes(), all);
        assert_eq!(s.stored_len(), 3);

        // Moving from the queue into the window changes nothing.
        assert_eq!(s.puback(id(1)), Ack::Done);
        assert_eq!(s.stored_bytes(), all - a.stored_size());
        assert_eq!(s.fill_window(now), vec![(id(2), b.clone())]);
        assert_eq!(s.stored_bytes(), all - a.stored_size());

        // After PUBREC only the id is held.
        assert_eq!(s.pubrec(id(2), now), Ack::Done);
        assert_eq!(s.stored_bytes(), c.stored_size());
        assert_eq!(s.stored_len(), 1);
        assert_eq!(s.pubcomp(id(2)), Ack::Done);
        assert_eq!(s.stored_bytes(), c.stored_size());

        assert_eq!(s.drop_oldest_queued(), Some(c.stored_size()));
        assert_eq!(s.stored_bytes(), 0);
        assert_eq!(s.stored_len(), 0);
        assert_eq!(s.drop_oldest_queued(), None);
        assert_eq!(s.dropped, 1);
    }

    #[test]
    fn the_oldest_queued_message_goes_first_and_inflight_never() {
        let t0 = Instant::now();
        let mut s = Session::new("c", false, 1, 10);
        assert_eq!(
            s.push(message(1, QoS::AtLeastOnce), true, t0),
            Pushed::Send(id(1))
        );
        assert_eq!(s.oldest_queued(), None);
        assert_eq!(
            s.drop_oldest_queued(),
            None,
            "nothing queued: the inflight one stays"
        );
        s.push(message(2, QoS::AtLeastOnce), true, t0 + SECOND);
        s.push(message(3, QoS::AtLeastOnce), true, t0 + 2 * SECOND);
        assert_eq!(s.oldest_queued(), Some(t0 + SECOND));
        s.drop_oldest_queued();
        assert_eq!(s.oldest_queued(), Some(t0 + 2 * SECOND));
        assert_eq!(s.puback(id(1)), Ack::Done);
        assert_eq!(
            s.fill_window(t0),
            vec![(id(2), message(3, QoS::AtLeastOnce))]
        );
        assert_eq!(s.inflight_len(), 1);
    }

    #[test]
    fn overdue_messages_are_resent_once_per_interval() {
        let t0 = Instant::now();
        let interval = 10 * SECOND;
        let mut s = Session::new("c", false, 3, 10);
        assert_eq!(s.next_overdue(interval), None);
        s.push(message(1, QoS::AtLeastOnce), true, t0);
        s.push(message(2, QoS::ExactlyOnce), true, t0 + 2 * SECOND);
        s.push(message(3, QoS::ExactlyOnce), true, t0 + 4 * SECOND);
        assert_eq!(s.pubrec(id(3), t0 + 5 * SECOND), Ack::Done);
        assert_eq!(s.next_overdue(interval), Some(t0 + interval));

        assert_eq!(s.take_overdue(t0 + 9 * SECOND, interval), vec![]);
        assert_eq!(
            s.take_overdue(t0 + 12 * SECOND, interval),
            vec![
                Resend::Publish(id(1), message(1, QoS::AtLeastOnce)),
                Resend::Publish(id(2), message(2, QoS::ExactlyOnce)),
            ]
        );
        // Sent again just now: not again before another interval.
        assert_eq!(s.take_overdue(t0 + 14 * SECOND, interval), vec![]);
        assert_eq!(s.next_overdue(interval), Some(t0 + 15 * SECOND));
        assert_eq!(
            s.take_overdue(t0 + 15 * SECOND, interval),
            vec![Resend::Pubrel(id(3))]
        );
        assert_eq!(s.puback(id(1)), Ack::Done);
        assert_eq!(s.next_overdue(interval), Some(t0 + 22 * SECOND));
        s.resent(t0 + 30 * SECOND);
        assert_eq!(s.next_overdue(interval), Some(t0 + 40 * SECOND));
    }
}
