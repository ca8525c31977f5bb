//! `max_memory`: counting the memory held for clients, and reclaiming the
//! oldest stored messages when it is over the limit.
//!
//! # What is counted
//!
//! The bytes the broker holds on clients' behalf, which clients control:
//!
//! - every session's queued and inflight messages, online or not, and the
//!   room its queue and window hold, used or not
//!   ([`Session::held_bytes`](crate::session::Session::held_bytes)): a
//!   queue gives its room back as it drains, and what it keeps is counted;
//! - retained messages ([`RetainedStore`](super::retained), which keeps
//!   their bytes, their order and the cost of their trie nodes);
//! - every stored payload once per allocation ([`Payloads`]), however
//!   many sessions and the retained store share it: seventy sessions
//!   holding one 1 MB message hold 1 MB, and count it;
//! - output buffers: bytes encoded for clients and not yet written (the
//!   network layer reports them through [`Outbox::traffic`]).
//!
//! - every session itself, with its client id and username, its
//!   subscriptions (each filter's bytes twice, and a measured cost per
//!   level of the trie nodes routing them) and its incoming QoS 2 ids;
//! - the wills of connected clients.
//!
//! A stored copy counts its topic
//! ([`Message::stored_size`](crate::session::Message::stored_size)) once
//! per copy, an upper bound. The per-item costs are measured, not guessed:
//! `tests/memory_overheads.rs` builds many of each with a counting
//! allocator and checks the count is within 25 % of what the heap holds.
//! Not counted yet: input buffers of half-received packets and what a
//! connection holds before its CONNECT (each bounded per connection by
//! `max_request_size` and the CONNECT limit, not in total).
//!
//! # Keeping the count cheap
//!
//! Counting walks every session, so it does not run for every message.
//! Instead every routed message adds what it made its holders grow by
//! (each session's [`held_bytes`](crate::session::Session::held_bytes)
//! before and after, the payload once, the encoding sent) to `grown`, and
//! `counted + grown` is an upper bound of the memory held (removals only
//! lower it). Only when that bound passes the limit does a real count run;
//! it runs as well every [`CHECK_INTERVAL`] on the timer wheel. A flood
//! therefore costs one count per tenth of `max_memory` that comes in, since
//! reclaiming goes down to 90% of the limit, and a large message triggers a
//! count as soon as it could matter. When what cannot be reclaimed is alone
//! over the limit, the bound is over it all the time: counts then wait for a
//! tenth of the limit to come in, so that what can be reclaimed never piles
//! up by more than that.
//!
//! # What is reclaimed, in order: the client that grows memory pays
//!
//! 1. The oldest queued messages of offline sessions (sol never queues QoS 0
//!    messages: a QoS 0 message for an offline client is not kept, and one
//!    for an online client goes straight into its output buffer, where the
//!    1 MiB [`QOS0_OUTPUT_LIMIT`](super::QOS0_OUTPUT_LIMIT) bounds it).
//! 2. The oldest queued messages of online sessions: they wait for room in
//!    the client's inflight window.
//! 3. At the periodic check only, never in the middle of routing: the
//!    clients holding the most, each holding more than [`HOLD_AT_LIMIT`]
//!    (its messages in flight, each payload counted whole, and its output
//!    buffer) are disconnected, biggest first, and what their sessions
//!    still held unacknowledged is dropped. A client that does not read or
//!    does not acknowledge pays for what it holds, not the others.
//! 4. Retained messages, oldest first, only while the retained store alone
//!    holds more than the low-water mark: never for what a client holds.
//!
//! # At the limit, growth is refused
//!
//! While the memory is over the limit with nothing left to reclaim (or may
//! be, until the next count), what a client asks the broker to keep is
//! refused rather than paid for by someone else: a new subscription gets
//! 0x80 in its SUBACK, a new persistent session CONNACK 0x03 (server
//! unavailable), a new retained message is routed but not stored, and a
//! QoS 0 message for a client whose output holds [`HOLD_AT_LIMIT`] is
//! dropped; each dropped message counts in `messages/dropped`.
//!
//! Every reclaimed message counts in `messages/dropped`. The log has one
//! warning when a burst of reclaiming starts and one line when it ends,
//! with how many messages it dropped, never a line per message.
//!
//! Explained in docs/13-housekeeping.md.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{Broker, ConnId, Ending, Outbox, Timer, QOS0_OUTPUT_LIMIT};

mod payloads;

pub(crate) use payloads::{Payloads, PAYLOAD_OVERHEAD};

/// How often the memory is counted even when no message arrives: output
/// buffers grow and shrink without the core hearing of it.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What one client may hold at the limit without being disconnected, and
/// what its output may hold for QoS 0 messages to still be added to it.
pub(super) const HOLD_AT_LIMIT: usize = 64 * 1024;

/// What a session costs beyond its client id, its username, its
/// filters and its messages: the session and its slot, the client-id index
/// entry and the allocation of the id. Measured with a counting allocator
/// (`tests/memory_overheads.rs`: 2 000 sessions) and rounded up.
const SESSION_OVERHEAD: usize = 320;

/// What each level of a subscription's filter costs, its bytes apart: the
/// trie's node for it with its level string, its child map and the entry
/// that leads to it, and a share of the session's map entry. Counted for
/// every level but the first (which hangs off the root's map, shared) and
/// at least once, as if no filter shared a prefix with another: an upper
/// bound when they do. Measured with a counting allocator
/// (`tests/memory_overheads.rs`: 20 000 filters of 5 levels, 1 000 of 50,
/// about 470 and 580 bytes a level) and rounded.
const LEVEL_OVERHEAD: usize = 560;

/// What a new subscription to `filter` is counted for, at most (as
/// [`session_bytes`] counts it): what the bound on memory grows by when a
/// SUBSCRIBE is granted.
pub(super) fn filter_cost(filter: &crate::protocol::TopicFilter) -> usize {
    let text = filter.as_str();
    let levels = text.split('/').count().saturating_sub(1).max(1);
    levels
        .saturating_mul(LEVEL_OVERHEAD)
        .saturating_add(text.len().saturating_mul(2))
}

/// What a new session for `client_id` with a will of `will` bytes is
/// counted for, its messages apart: what the bound grows by at CONNECT.
pub(super) fn connect_cost(client_id: &str, username: Option<&str>, will: usize) -> usize {
    SESSION_OVERHEAD
        .saturating_add(client_id.len())
        .saturating_add(username.map_or(0, str::len))
        .saturating_add(will)
}

/// What one session holds, as `max_memory` counts it.
fn session_bytes(slot: &super::SessionSlot) -> usize {
    let session = &slot.session;
    let subscriptions = session.subscriptions();
    let levels = subscriptions
        .filter_levels()
        .saturating_sub(subscriptions.len())
        .max(subscriptions.len());
    // Each filter's bytes are held twice: the session's key and the
    // trie's level strings.
    let filters = levels
        .saturating_mul(LEVEL_OVERHEAD)
        .saturating_add(subscriptions.filter_bytes().saturating_mul(2));
    SESSION_OVERHEAD
        .saturating_add(session.client_id.len())
        .saturating_add(slot.username.as_ref().map_or(0, String::len))
        .saturating_add(filters)
        .saturating_add(session.held_bytes())
}

/// Reclaiming goes down to this fraction of the limit (in tenths), so that
/// a steady flow over the limit does not reclaim, and count, per message.
const LOW_WATER_TENTHS: usize = 9;

/// The memory accounting and the state of reclaiming. What is held is
/// counted by its owners (sessions, the retained store, the network
/// layer): this only adds it up and decides when to reclaim.
pub(super) struct Memory {
    limit: usize,
    /// The last real count.
    counted: usize,
    /// What routed messages may have added since.
    grown: usize,
    /// The last count found the memory over the limit with nothing left to
    /// reclaim: checks on arrival wait for a tenth of the limit to come in.
    exhausted: bool,
    burst: Burst,
    /// Every stored payload, counted once.
    pub(super) payloads: Payloads,
}

/// One burst of reclaiming, from the first message dropped to the first
/// periodic check that finds nothing to do.
#[derive(Default)]
struct Burst {
    dropped: u64,
    /// Clients disconnected for holding memory.
    disconnected: u64,
    retained_dropped: u64,
    /// Whether the "nothing left to reclaim" warning was given.
    exhausted_warned: bool,
    /// Whether anything was dropped since the last periodic check.
    recent: bool,
}

impl Memory {
    pub(super) fn new(limit: usize) -> Memory {
        Memory {
            limit,
            counted: 0,
            grown: 0,
            exhausted: false,
            burst: Burst::default(),
            payloads: Payloads::default(),
        }
    }

    /// 90% of the limit: where reclaiming stops.
    fn low_water(&self) -> usize {
        self.limit / 10 * LOW_WATER_TENTHS
    }
}

impl Broker {
    /// The memory held for clients, counted now as `max_memory` counts it:
    /// queued and inflight messages, retained messages, and the output
    /// buffers `out` reports. It walks every session.
    pub fn memory_used(&self, out: &dyn Outbox) -> usize {
        let sessions: usize = self
            .sessions
            .iter()
            .map(|(_, slot)| session_bytes(slot))
            .fold(0, usize::saturating_add);
        sessions
            .saturating_add(self.clients.will_bytes())
            .saturating_add(self.retained.bytes())
            .saturating_add(self.memory.payloads.live())
            .saturating_add(out.traffic().output_buffered)
    }

    /// `bytes` were just stored for clients (copies of a routed message):
    /// counts and reclaims at once if the memory may now be over the limit.
    pub(super) fn memory_grew(&mut self, bytes: usize, out: &mut dyn Outbox) {
        let memory = &mut self.memory;
        memory.grown = memory.grown.saturating_add(bytes);
        let due = if memory.exhausted {
            memory.grown > memory.limit / 10
        } else {
            memory.counted.saturating_add(memory.grown) > memory.limit
        };
        if due {
            self.check_memory(None, out);
        }
    }

    /// Whether the last count found the memory over the limit with nothing
    /// left to reclaim, or it may be over since: growth a client asks for
    /// is refused (a new subscription, a new persistent session, a retained
    /// message) rather than paid for by anyone else's messages.
    pub(super) fn memory_at_limit(&self) -> bool {
        let memory = &self.memory;
        memory.exhausted || memory.counted.saturating_add(memory.grown) > memory.limit
    }

    /// What a connection's output may hold for QoS 0 messages to still be
    /// added to it: less at the limit, where a client that does not read
    /// loses its QoS 0 messages sooner.
    pub(super) fn qos0_output_limit(&self) -> usize {
        if self.memory_at_limit() {
            HOLD_AT_LIMIT
        } else {
            QOS0_OUTPUT_LIMIT
        }
    }

    /// The periodic check: counts, reclaims if needed, ends a burst that is
    /// over, and re-arms itself.
    pub(super) fn periodic_memory_check(&mut self, now: Instant, out: &mut dyn Outbox) {
        let used = self.check_memory(Some(now), out);
        let burst = &mut self.memory.burst;
        let active = burst.dropped > 0 || burst.disconnected > 0 || burst.exhausted_warned;
        if active && !burst.recent && used <= self.memory.limit {
            info!(
                "Memory back under max_memory ({used} of {} bytes): {} message(s) \
                 dropped in all, {} of them retained; {} client(s) disconnected.",
                self.memory.limit, burst.dropped, burst.retained_dropped, burst.disconnected
            );
            self.memory.burst = Burst::default();
        } else {
            burst.recent = false;
        }
        if let Some(at) = now.checked_add(CHECK_INTERVAL) {
            self.timers.insert(at, Timer::Memory);
        }
    }

    /// Counts the memory, reclaims down to 90% of the limit if it is over,
    /// and returns what is held after that. Clients are disconnected only
    /// by the periodic check (`now` given), never in the middle of routing.
    fn check_memory(&mut self, now: Option<Instant>, out: &mut dyn Outbox) -> usize {
        let mut used = self.memory_used(out);
        if used > self.memory.limit {
            used = self.reclaim(used, now, out);
        }
        self.memory.exhausted = used > self.memory.limit;
        if self.memory.exhausted && !self.memory.burst.exhausted_warned {
            self.memory.burst.exhausted_warned = true;
            warn!(
                "Memory over max_memory ({used} of {} bytes) with nothing left to \
                 reclaim: what is held is in flight or in output buffers.",
                self.memory.limit
            );
        }
        self.memory.counted = used;
        self.memory.grown = 0;
        used
    }

    /// Drops stored messages, oldest first, in the order the module
    /// documentation gives, until `used` is down to the low-water mark.
    fn reclaim(&mut self, mut used: usize, now: Option<Instant>, out: &mut dyn Outbox) -> usize {
        let target = self.memory.low_water();
        let found = used;
        let (before, disconnected) = (self.memory.burst.dropped, self.memory.burst.disconnected);
        for online in [false, true] {
            if used > target {
                used = self.reclaim_queued(online, used, target);
            }
        }
        if let Some(now) = now {
            if used > target {
                used = self.disconnect_holders(used, target, now, out);
            }
        }
        // Retained messages go only for what the retained store itself
        // holds over the mark: never for what another client holds.
        while used > target && self.retained.held() > target {
            let payloads = self.memory.payloads.live();
            let Some(size) = self.retained.remove_oldest() else {
                break;
            };
            let size = size.saturating_add(payloads.saturating_sub(self.memory.payloads.live()));
            if self.memory.burst.retained_dropped == 0 {
                warn!("Nothing left to reclaim but retained messages: dropping the oldest.");
            }
            self.memory.burst.retained_dropped += 1;
            self.memory.burst.dropped += 1;
            self.stats.messages_dropped += 1;
            used = used.saturating_sub(size);
        }
        let dropped = self.memory.burst.dropped;
        if self.memory.burst.disconnected > disconnected {
            self.memory.burst.recent = true;
        }
        if dropped > before {
            self.memory.burst.recent = true;
            if before == 0 {
                warn!(
                    "Memory over max_memory ({found} of {} bytes): dropped the {dropped} \
                     oldest stored message(s); more are dropped without a log line \
                     until it is back under.",
                    self.memory.limit
                );
            }
        }
        used
    }

    /// The client that grows memory pays: while `used` is over `target`,
    /// disconnects the client holding the most (its session's messages and
    /// room, with each payload it holds counted whole, and its output
    /// buffer), and drops what its session still held unacknowledged. A
    /// client holding no more than [`HOLD_AT_LIMIT`] is never disconnected:
    /// that is what any client may hold at the limit.
    fn disconnect_holders(
        &mut self,
        mut used: usize,
        target: usize,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> usize {
        let mut holders: Vec<(usize, usize, ConnId)> = self
            .sessions
            .iter()
            .filter_map(|(key, slot)| {
                let conn = slot.conn?;
                let held = slot
                    .session
                    .held_bytes()
                    .saturating_add(slot.session.payload_bytes())
                    .saturating_add(out.pending(conn));
                (held > HOLD_AT_LIMIT).then_some((held, key, conn))
            })
            .collect();
        holders.sort_unstable_by_key(|&(held, ..)| Reverse(held));
        for (_, key, conn) in holders {
            if used <= target {
                break;
            }
            let (pending, payloads) = (out.pending(conn), self.memory.payloads.live());
            let held = self
                .sessions
                .get(key)
                .map_or(0, |slot| slot.session.held_bytes());
            self.end_connection(conn, Ending::Memory, now, out);
            self.memory.burst.disconnected += 1;
            if let Some(slot) = self.sessions.get_mut(key) {
                let dropped = slot.session.keep_messages(|_| false);
                self.stats.messages_dropped += dropped as u64;
                self.memory.burst.dropped += dropped as u64;
            }
            let left = self
                .sessions
                .get(key)
                .map_or(0, |slot| slot.session.held_bytes());
            // The output buffer goes with the connection, once the loop
            // has given up writing it (bounded): counted as freed now.
            let freed = held
                .saturating_sub(left)
                .saturating_add(payloads.saturating_sub(self.memory.payloads.live()))
                .saturating_add(pending);
            used = used.saturating_sub(freed);
        }
        used
    }

    /// Drops the oldest queued messages across the sessions that are
    /// `online` (or not), oldest first, until `used` reaches `target` or
    /// nothing is queued.
    fn reclaim_queued(&mut self, online: bool, mut used: usize, target: usize) -> usize {
        // The oldest message of each session, in a heap: the next to drop
        // is always on top, whichever session it is in.
        let mut oldest: BinaryHeap<Reverse<(u64, usize)>> = self
            .sessions
            .iter()
            .filter(|(_, slot)| slot.conn.is_some() == online)
            .filter_map(|(key, slot)| Some(Reverse((slot.session.oldest_queued()?, key))))
            .collect();
        while used > target {
            let Some(Reverse((_, key))) = oldest.pop() else {
                break;
            };
            let Some(slot) = self.sessions.get_mut(key) else {
                continue;
            };
            // What a drop frees: the room the queue gives back with it,
            // and its payload if no one else held it.
            let (held, payloads) = (slot.session.held_bytes(), self.memory.payloads.live());
            if slot.session.drop_oldest_queued().is_none() {
                continue;
            }
            let freed = held.saturating_sub(slot.session.held_bytes());
            let freed = freed.saturating_add(payloads.saturating_sub(self.memory.payloads.live()));
            used = used.saturating_sub(freed);
            self.memory.burst.dropped += 1;
            self.stats.messages_dropped += 1;
            if let Some(next) = slot.session.oldest_queued() {
                oldest.push(Reverse((next, key)));
            }
        }
        used
    }
}
