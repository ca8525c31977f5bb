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
//! It also keeps, for the broker's housekeeping, the order in which each
//! queued message arrived (the oldest are reclaimed first when memory runs
//! short), when each inflight message was last sent (an overdue one is sent
//! again), and how many bytes its messages hold.
//!
//! **Invariant:** this module knows no sockets, no connections and no
//! clock. Everything in a [`Session`] is plain data that can be written out
//! and read back:
//!
//! - a queued message's place in the broker-wide order of arrival is a
//!   sequence number the broker passes in; a restore keeps the numbers and
//!   the broker counts on from the highest;
//! - when an inflight message was last sent is *broker time*, a
//!   [`Duration`] since the broker started that the broker passes in. It
//!   means nothing to another run: a restore calls [`Session::resent`]
//!   with its own time, which is what happens anyway when the client comes
//!   back and every inflight message is sent again ([MQTT-4.4.0-1]);
//! - when the client was last connected ([`Session::offline_since`]) is
//!   broker time too, which persistence writes as wall-clock time and a
//!   restore turns back into its own broker time;
//! - the window and queue limits come from the configuration and are not
//!   the session's to keep: a restore applies them again
//!   ([`Session::set_limits`]).
//!
//! The message type it stores, [`Message`], is shared with the broker's
//! retained messages and its routing (`session/message.rs`).
//! Explained in docs/07-qos-step-by-step.md.

use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{PacketId, QoS, TopicFilter};

mod incoming;
mod lazy_deque;
mod message;
mod subscriptions;

use incoming::IncomingIds;

use lazy_deque::LazyDeque;
pub use message::{Message, Origin, Properties};
pub use subscriptions::Subscriptions;

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
    /// It took a place in the window, but messages before it are waiting
    /// for the connection's output to drain: it goes out after them, from
    /// [`Session::send_waiting`], so the order is kept ([MQTT-4.6.0-2]).
    Waiting,
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
    /// When its PUBLISH (or PUBREL) was last sent, in broker time.
    at: Duration,
    /// It has a place in the window but is not written to the current
    /// connection yet: the connection's output was backed up (see
    /// [`Session::send_waiting`]).
    waiting: bool,
    /// Its PUBLISH was written to some connection before, so the next
    /// copy carries DUP ([MQTT-3.3.1-1]).
    written: bool,
}

/// A message waiting in the queue.
#[derive(Debug)]
struct Queued {
    message: Message,
    /// Its place in the broker-wide order of arrival: the oldest queued
    /// messages are the first to go when the broker reclaims memory.
    seq: u64,
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
    /// The routing copy is the broker's trie; `Sessions` in the broker
    /// keeps the two in step.
    subscriptions: Subscriptions,
    /// Sent and unacknowledged, in the order first sent.
    inflight: LazyDeque<Sent>,
    queue: LazyDeque<Queued>,
    /// Incoming QoS 2 ids between PUBLISH and PUBREL. Boxed on first use:
    /// most sessions never receive QoS 2, and every session would pay for
    /// an empty set's inline size (48 bytes, against 8 for the box).
    incoming_qos2: Option<Box<IncomingIds>>,
    next_id: PacketId,
    /// Whether the window's ids are in the order they were given, each
    /// after the one before: true until an id had to be found by a scan
    /// (an id given inside the range breaks the order), and again once the
    /// window is empty.
    ids_in_order: bool,
    /// From the configuration, not written out ([`Session::set_limits`]).
    max_inflight: usize,
    max_queued: usize,
    /// Messages this session had to drop: its queue was full, or the broker
    /// reclaimed them for memory.
    pub dropped: u64,
    /// [`Message::stored_size`] of every message queued or in flight.
    stored_bytes: usize,
    /// When the client was last connected, in broker time: set when its
    /// connection ends, `None` while it is connected (or has never been
    /// away). `persistent_client_expiration` counts from here, and
    /// persistence writes it so that a restore can count on: broker time
    /// means nothing to another run, so a writer turns it into wall-clock
    /// time and a restore back into its own broker time (a time before the
    /// new run started is taken as its start, which can only give a
    /// session more time, never less).
    pub offline_since: Option<Duration>,
    /// Inflight entries with `waiting` set.
    waiting: usize,
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
            ids_in_order: true,
            max_inflight: max_inflight.max(1),
            max_queued,
            dropped: 0,
            stored_bytes: 0,
            offline_since: None,
            waiting: 0,
        }
    }

    /// The window and queue limits of the configuration: set at creation,
    /// and again by a restore, since they are not the session's to keep.
    pub fn set_limits(&mut self, max_inflight: usize, max_queued: usize) {
        self.max_inflight = max_inflight.max(1);
        self.max_queued = max_queued;
    }

    /// The client's subscriptions, filter to granted QoS.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Adds or replaces the subscription to `filter`; returns the QoS it
    /// replaced. The broker's routing copy is not changed: the broker goes
    /// through its `Sessions`, which changes both.
    pub fn subscribe(&mut self, filter: TopicFilter, qos: QoS) -> Option<QoS> {
        self.subscriptions.insert(filter, qos)
    }

    /// Removes the subscription to `filter`; returns its QoS if there was
    /// one. As for [`Session::subscribe`], the routing copy is the caller's.
    pub fn unsubscribe(&mut self, filter: &TopicFilter) -> Option<QoS> {
        self.subscriptions.remove(filter)
    }

    /// Offers a QoS 1 or 2 message for delivery at broker time `now`, as
    /// the `seq`-th message to arrive. `online` says whether the client is
    /// connected: offline, every message waits in the queue.
    pub fn push(&mut self, message: Message, online: bool, now: Duration, seq: u64) -> Pushed {
        if online && self.queue.is_empty() && self.window_has_room() {
            self.stored_bytes = self.stored_bytes.saturating_add(message.stored_size());
            if self.waiting > 0 {
                self.start_inflight(message, now, true);
                return Pushed::Waiting;
            }
            return Pushed::Send(self.start_inflight(message, now, false));
        }
        if self.queue.len() >= self.max_queued {
            self.dropped += 1;
            return Pushed::Dropped;
        }
        self.stored_bytes = self.stored_bytes.saturating_add(message.stored_size());
        self.queue.push_back(Queued { message, seq });
        Pushed::Queued
    }

    /// Moves queued messages into the inflight window while it has room,
    /// returning each with the id to send it under (at `now`), in queue
    /// order. While messages in the window wait ([`Session::send_waiting`]),
    /// the new ones wait behind them and none is returned.
    pub fn fill_window(&mut self, now: Duration) -> Vec<(PacketId, Message)> {
        let mut ready = Vec::new();
        while self.window_has_room() {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            if self.waiting > 0 {
                self.start_inflight(queued.message, now, true);
                continue;
            }
            let id = self.start_inflight(queued.message.clone(), now, false);
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
    pub fn pubrec(&mut self, id: PacketId, now: Duration) -> Ack {
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
        // The PUBREL goes out now, as the answer: nothing is left to wait.
        if sent.waiting {
            sent.waiting = false;
            self.waiting = self.waiting.saturating_sub(1);
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
            ids.remove(id);
        }
    }

    /// What must be resent when the client reconnects, oldest first: each
    /// unacknowledged PUBLISH (to be sent with DUP set) or PUBREL
    /// ([MQTT-4.4.0-1]). Call [`Session::resent`] once they are sent.
    pub fn inflight(&self) -> impl Iterator<Item = (PacketId, &Inflight)> {
        self.inflight.iter().map(|sent| (sent.id, &sent.state))
    }

    /// Everything in flight was sent again at `now`: on reconnect, and on
    /// restore, with the restoring run's broker time.
    pub fn resent(&mut self, now: Duration) {
        for sent in self.inflight.iter_mut() {
            sent.at = now;
        }
    }

    /// Every inflight message is to be written again, to a connection that
    /// just took the session: each waits, in its order, for
    /// [`Session::send_waiting`] ([MQTT-4.4.0-1]).
    pub fn wait_all(&mut self) {
        for sent in self.inflight.iter_mut() {
            sent.waiting = true;
        }
        self.waiting = self.inflight.len();
    }

    /// Moves queued messages into the window while it has room, each one
    /// waiting to be written ([`Session::send_waiting`]): on reconnect,
    /// behind the window's own resends.
    pub fn queue_to_window(&mut self, now: Duration) {
        while self.window_has_room() {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            self.start_inflight(queued.message, now, true);
        }
    }

    /// Whether some inflight message waits to be written.
    #[inline]
    pub fn has_waiting(&self) -> bool {
        self.waiting > 0
    }

    /// Hands the waiting messages to `send`, oldest first, until it
    /// returns false (the connection's output is full: that one and the
    /// rest keep waiting) or none is left. `send` gets the id, the state
    /// (a PUBLISH to write, or a PUBREL) and whether the PUBLISH carries
    /// DUP (it was written before); each one it takes counts as sent at
    /// `now`. Returns how many it took.
    pub fn send_waiting(
        &mut self,
        now: Duration,
        mut send: impl FnMut(PacketId, &Inflight, bool) -> bool,
    ) -> usize {
        let mut taken = 0;
        if self.waiting == 0 {
            return taken;
        }
        for sent in self.inflight.iter_mut() {
            if !sent.waiting {
                continue;
            }
            if !send(sent.id, &sent.state, sent.written) {
                break;
            }
            sent.waiting = false;
            sent.written = true;
            sent.at = now;
            taken += 1;
        }
        self.waiting = self.waiting.saturating_sub(taken);
        taken
    }

    /// Marks the inflight messages last sent `interval` or more before
    /// `now` as waiting to be written again ([`Session::send_waiting`]);
    /// returns how many. What already waits is not overdue: it has not
    /// been written to this connection yet.
    pub fn mark_overdue(&mut self, now: Duration, interval: Duration) -> usize {
        let mut marked = 0;
        for sent in self.inflight.iter_mut() {
            let overdue = sent.at.checked_add(interval).is_some_and(|at| at <= now);
            if overdue && !sent.waiting {
                sent.waiting = true;
                marked += 1;
            }
        }
        self.waiting = self.waiting.saturating_add(marked);
        marked
    }

    /// The inflight messages last sent `interval` or more before `now`, in
    /// the order first sent, each marked as sent again at `now`. At most the
    /// inflight window, and each message at most once per `interval`: what
    /// bounds resending.
    pub fn take_overdue(&mut self, now: Duration, interval: Duration) -> Vec<Resend> {
        let mut due = Vec::new();
        for sent in self.inflight.iter_mut() {
            let overdue = sent.at.checked_add(interval).is_some_and(|at| at <= now);
            if !overdue || sent.waiting {
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

    /// When (in broker time) the next inflight message becomes overdue, if
    /// any is in flight and written (a waiting one is not on the wire yet).
    pub fn next_overdue(&self, interval: Duration) -> Option<Duration> {
        let oldest = self
            .inflight
            .iter()
            .filter(|sent| !sent.waiting)
            .map(|sent| sent.at)
            .min()?;
        oldest.checked_add(interval)
    }

    #[inline]
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    #[inline]
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

    /// What this session's messages and the room kept for them hold: the
    /// messages ([`Session::stored_bytes`]), plus the capacity of its
    /// window, its queue and its incoming QoS 2 ids, used or not.
    #[inline]
    pub fn held_bytes(&self) -> usize {
        let qos2 = self
            .incoming_qos2
            .as_ref()
            .map_or(0, |ids| ids.heap_bytes().saturating_add(64));
        self.stored_bytes
            .saturating_add(self.inflight.heap_bytes())
            .saturating_add(self.queue.heap_bytes())
            .saturating_add(qos2)
    }

    /// The payload bytes of every message queued or in flight, each
    /// counted whole even when other sessions share it: what this session
    /// would free if it held them alone. Walks the messages: for deciding
    /// who holds the most, not for counting.
    pub fn payload_bytes(&self) -> usize {
        let queued = self.queue.iter().map(|queued| &queued.message);
        let inflight = self.inflight.iter().filter_map(|sent| sent.state.message());
        queued
            .chain(inflight)
            .map(|message| message.payload.len())
            .fold(0, usize::saturating_add)
    }

    /// The place in the order of arrival of the oldest queued message.
    pub fn oldest_queued(&self) -> Option<u64> {
        self.queue.front().map(|queued| queued.seq)
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
    pub fn keep_messages(&mut self, mut keep: impl FnMut(&Message) -> bool) -> usize {
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
        self.waiting = self.inflight.iter().filter(|sent| sent.waiting).count();
        before - (self.queue.len() + self.inflight.len())
    }

    fn window_has_room(&self) -> bool {
        self.inflight.len() < self.max_inflight
    }

    /// Gives `message` a place in the window; `waiting` when it must not
    /// be written yet.
    fn start_inflight(&mut self, message: Message, now: Duration, waiting: bool) -> PacketId {
        let id = self.allocate_id();
        let state = match message.qos {
            QoS::ExactlyOnce => Inflight::AwaitingPubrec(message),
            _ => Inflight::AwaitingPuback(message),
        };
        self.inflight.push_back(Sent {
            id,
            state,
            at: now,
            waiting,
            written: !waiting,
        });
        self.waiting += usize::from(waiting);
        id
    }

    /// The next packet id not in use by an inflight message. The window is at
    /// most 65535 wide, so a free id always exists when there is room.
    ///
    /// While the window keeps its messages in the order their ids were
    /// given, each id after the one before (modulo the wrap at 65535), an id
    /// outside the circular range from the oldest to the newest is free
    /// without a look at the others. Only an id inside it (after a wrap,
    /// with an old message still unacknowledged) needs the scan, which would
    /// otherwise cost every message the whole window's length; and as the
    /// id the scan finds may break the order, the scan is used from then on
    /// until the window is empty.
    fn allocate_id(&mut self) -> PacketId {
        let mut id = self.next_id;
        if self.inflight.is_empty() {
            self.ids_in_order = true;
        }
        let range = self
            .inflight
            .front()
            .zip(self.inflight.back())
            .map(|(oldest, newest)| (oldest.id.get(), newest.id.get()));
        let free = match range {
            None => true,
            Some((oldest, newest)) if oldest <= newest => id.get() < oldest || id.get() > newest,
            Some((oldest, newest)) => id.get() > newest && id.get() < oldest,
        };
        if free && self.ids_in_order {
            self.next_id = id.next();
            return id;
        }
        // The id found here may lie inside the range, out of order: until
        // the window empties, every id is looked for this way.
        self.ids_in_order = false;
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
            if removed.waiting {
                self.waiting = self.waiting.saturating_sub(1);
            }
            if let Some(message) = removed.state.message() {
                self.stored_bytes = self.stored_bytes.saturating_sub(message.stored_size());
            }
        }
        Ack::Done
    }
}

#[cfg(test)]
mod tests;
