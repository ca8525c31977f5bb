//! Retained deliveries in progress: the retained messages a SUBSCRIBE
//! asked for, sent a bounded part at a time (issue 16, items 6 and 7).
//!
//! One SUBSCRIBE can ask for any amount of work: thousands of filters with
//! a `+` that each visit every retained topic, or a `#` over a hundred
//! thousand retained messages, more than the subscriber's output may hold
//! at once. So a SUBSCRIBE only queues a walk per filter, for its session;
//! the walks go on from [`Broker::tick`], which runs every loop turn, with
//! [`WALK_BUDGET`] trie nodes a turn for all of them together, and only
//! while their subscriber has room: output below
//! [`QOS0_OUTPUT_LIMIT`](super::QOS0_OUTPUT_LIMIT) for QoS 0, a queue not
//! full for QoS 1 and 2. A subscriber that reads gets every retained
//! message as its socket drains; one that does not read holds a paused
//! walk and costs nothing more.
//!
//! What it must not know: sockets and the clock. It asks the [`Outbox`]
//! how much is buffered, and is woken by the loop's turns and by one timer
//! while some subscriber is full.
//!
//! # Order
//!
//! SUBACK goes out first ([MQTT-3.8.4-1] comes before the retained
//! messages of [MQTT-3.3.1-6]), and the filters of a session are walked in
//! the order they were subscribed to. A walk offers only the retained
//! messages stored before its SUBSCRIBE: one stored since went to the
//! subscriber live, as its subscription was in the trie by then, and is
//! not sent twice. A live message without the retain flag may reach the
//! subscriber before an older retained message of the same topic that the
//! walk has not reached yet; that one then comes with the retain flag set,
//! which says it is the last known value, not news (the standard orders
//! the messages of one publisher on one topic, and a retained message sent
//! for a new subscription is not a forwarded publish). mosquitto sends all
//! retained messages within the SUBSCRIBE; its subscribers never see this,
//! and its other clients wait for as long as the walk takes.
//!
//! A walk belongs to the connection that subscribed: if the session loses
//! it (disconnect, takeover), the walk is dropped, as a resumed session
//! gets no retained messages in MQTT 3.1.1.
//! Explained in docs/10-backpressure-and-limits.md.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::publish::{deliver_with, wire_size, Delivery, Wire};
use super::retained::RetainedWalk;
use super::{retry, Broker, ConnId, Outbox, Timer, QOS0_OUTPUT_LIMIT, WORK_BUDGET};
use crate::protocol::{QoS, TopicFilter};
use crate::trie::Walked;

/// Trie nodes the retained walks may visit in one loop turn, all sessions
/// together, and a SUBSCRIBE at once before its walks wait for the next
/// turn: the same as a connection's packets get, [`WORK_BUDGET`].
pub(super) const WALK_BUDGET: usize = WORK_BUDGET;

/// How soon a walk whose subscriber was full looks again: the loop may
/// have nothing else to wake it once the output is flushed.
const FULL_RETRY: Duration = Duration::from_millis(10);

/// One filter's walk.
struct FilterWalk {
    walk: RetainedWalk,
    granted: QoS,
}

/// The walks of one session, in the order its filters were subscribed.
struct SessionWalks {
    /// The connection that subscribed; the walks end with it.
    conn: ConnId,
    filters: VecDeque<FilterWalk>,
}

/// Every walk in progress. Empty, it costs each turn one check.
#[derive(Default)]
pub(super) struct Walks {
    sessions: HashMap<usize, SessionWalks>,
    /// The sessions with walks, served in turn from the front.
    order: VecDeque<usize>,
    /// A walk stopped for want of budget: the next turn must come at once.
    runnable: bool,
    /// A `Timer::Walks` is armed.
    timer: bool,
}

impl Walks {
    pub(super) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether a walk waits for nothing but the next turn.
    pub(super) fn runnable(&self) -> bool {
        self.runnable
    }

    /// Filters whose walks have not finished, all sessions together.
    pub(super) fn len(&self) -> usize {
        self.sessions.values().map(|s| s.filters.len()).sum()
    }

    fn add(&mut self, session: usize, conn: ConnId, filter: FilterWalk) {
        let walks = self.sessions.entry(session).or_insert_with(|| {
            self.order.push_back(session);
            SessionWalks {
                conn,
                filters: VecDeque::new(),
            }
        });
        if walks.conn != conn {
            // An earlier connection's walks, not yet found dropped.
            walks.conn = conn;
            walks.filters.clear();
        }
        walks.filters.push_back(filter);
    }
}

/// Why a session's walks stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paused {
    /// All done, or dropped with their connection.
    Done,
    /// The subscriber has no room.
    Full,
    /// The budget is spent.
    Budget,
}

impl Broker {
    /// Queues the retained walks of `filters` (granted, distinct, in the
    /// SUBSCRIBE's order) for `session`, then walks as far as one turn's
    /// budget goes; the rest waits for the next turns. The nodes visited
    /// are charged to the subscriber's connection.
    pub(super) fn queue_retained(
        &mut self,
        conn: ConnId,
        session: usize,
        filters: Vec<(TopicFilter, QoS)>,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        for (filter, granted) in filters {
            let walk = self.retained.walk(filter);
            self.walks.add(session, conn, FilterWalk { walk, granted });
        }
        let mut budget = WALK_BUDGET;
        let paused = self.walk_session(session, &mut budget, now, out);
        self.work = self.work.saturating_add(WALK_BUDGET - budget);
        self.after_walk(session, paused, now);
    }

    /// Goes on with the walks, from [`Broker::tick`]: each session in
    /// turn, until the turn's budget is spent.
    pub(super) fn walk_retained(&mut self, now: Instant, out: &mut dyn Outbox) {
        if self.walks.is_empty() {
            return;
        }
        self.walks.runnable = false;
        let mut budget = WALK_BUDGET;
        // Each session once at most: one that is served goes to the back.
        for _ in 0..self.walks.order.len() {
            if budget == 0 {
                self.walks.runnable = true;
                break;
            }
            let Some(session) = self.walks.order.pop_front() else {
                break;
            };
            self.walks.order.push_back(session);
            let paused = self.walk_session(session, &mut budget, now, out);
            self.after_walk(session, paused, now);
        }
    }

    /// `Timer::Walks` fired: the walks are looked at again by this tick.
    pub(super) fn walks_timer(&mut self) {
        self.walks.timer = false;
    }

    fn after_walk(&mut self, session: usize, paused: Paused, now: Instant) {
        match paused {
            Paused::Done => {
                self.walks.sessions.remove(&session);
                self.walks.order.retain(|&s| s != session);
            }
            Paused::Budget => self.walks.runnable = true,
            Paused::Full => {
                if !self.walks.timer {
                    self.walks.timer = true;
                    self.timers.insert(now + FULL_RETRY, Timer::Walks);
                }
            }
        }
    }

    /// Walks `session`'s filters, oldest first, within `budget`.
    fn walk_session(
        &mut self,
        session: usize,
        budget: &mut usize,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> Paused {
        let arrival = self.arrival(now);
        let Some(walks) = self.walks.sessions.get_mut(&session) else {
            return Paused::Done;
        };
        let conn = walks.conn;
        let Some(slot) = self
            .sessions
            .get_mut(session)
            .filter(|slot| slot.conn == Some(conn))
        else {
            return Paused::Done;
        };
        let (guard, stats, retained) = (&self.guard, &mut self.stats, &self.retained);
        let max_queued = self.settings.max_queued;
        let mut stored = 0usize;
        let mut sent_in_window = false;
        let paused = loop {
            let Some(filter) = walks.filters.front_mut() else {
                break Paused::Done;
            };
            let granted = filter.granted;
            let walked = retained.resume(&mut filter.walk, budget, |message| {
                // The filter may reach topics its client may not read.
                let readable = guard.may_read(
                    &slot.session.client_id,
                    slot.username.as_deref(),
                    &message.topic,
                );
                if !readable {
                    return ControlFlow::Continue(());
                }
                let qos = message.qos.min(granted);
                let room = match qos {
                    QoS::AtMostOnce => out.pending(conn) < QOS0_OUTPUT_LIMIT,
                    _ => slot.session.queued_len() < max_queued,
                };
                if !room {
                    return ControlFlow::Break(());
                }
                // [MQTT-3.3.1-8]: sent for a new subscription, so retained.
                let message = message.copy_at(qos, true);
                // What the delivery adds to the memory held: what the
                // session holds more, and the copy in an output buffer.
                let size = wire_size(&message, Delivery::Sent);
                let wire = Wire::Packet(message.to_publish(None, false));
                let held = slot.session.held_bytes();
                let delivery = deliver_with(slot, qos, || message, wire, arrival, stats, out);
                let grown = slot.session.held_bytes().saturating_sub(held);
                stored = stored.saturating_add(grown);
                match delivery {
                    Delivery::Sent => {
                        sent_in_window |= qos != QoS::AtMostOnce;
                        stored = stored.saturating_add(size);
                    }
                    Delivery::Queued | Delivery::Dropped => {}
                }
                ControlFlow::Continue(())
            });
            match walked {
                Walked::Done => {
                    walks.filters.pop_front();
                }
                Walked::Stopped => break Paused::Full,
                Walked::Budget => break Paused::Budget,
            }
        };
        if sent_in_window {
            retry::arm(&mut self.timers, slot, now, self.epoch, &self.settings);
        }
        self.memory_grew(stored, out);
        paused
    }
}
