//! SUBSCRIBE and UNSUBSCRIBE (sections 3.8 to 3.11).
//! Explained in docs/06-topics-and-the-trie.md and docs/08-retained-and-wills.md.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::time::Instant;

use log::debug;

use super::publish::{deliver_with, wire_size, Delivery, Wire};
use super::{retry, Broker, ConnId, Outbox};
use crate::protocol::{Packet, QoS, Suback, SubackCode, Subscribe, TopicFilter, Unsubscribe};

impl Broker {
    /// Grants every filter the ACL allows at the QoS asked for (sol
    /// supports all three) and refuses the others with 0x80, answers SUBACK,
    /// then sends the retained messages each granted filter matches and the
    /// client may read. A filter the client already holds is replaced, and
    /// its retained messages are sent again ([MQTT-3.8.4-3]).
    pub(super) fn handle_subscribe(
        &mut self,
        conn: ConnId,
        session: usize,
        subscribe: Subscribe,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        let mut grown = 0usize;
        for (filter, qos) in &subscribe.filters {
            if !self.may_subscribe(session, filter) {
                debug!("Refused a subscription to {filter}: not allowed by the ACL.");
                codes.push(SubackCode::Failure);
                continue;
            }
            // At the memory limit a new subscription is growth the
            // client asks for: refused. One it holds may change its QoS.
            let held = self
                .sessions
                .get(session)
                .is_some_and(|slot| slot.session.subscriptions().get(filter).is_some());
            if !held && self.memory_at_limit() {
                debug!("Refused a subscription to {filter}: memory is at max_memory.");
                codes.push(SubackCode::Failure);
                continue;
            }
            if !self.sessions.subscribe(session, filter, *qos) {
                return;
            }
            if !held {
                grown = grown.saturating_add(super::memory::filter_cost(filter));
            }
            codes.push(SubackCode::Granted(*qos));
            granted.push((filter, *qos));
        }
        self.memory_grew(grown, out);
        let suback = Suback {
            packet_id: subscribe.packet_id,
            codes,
        };
        out.send(conn, &Packet::Suback(suback));

        // A filter named twice in one SUBSCRIBE is one subscription (the
        // later QoS wins), so its retained messages go out once: otherwise
        // one packet naming `#` a hundred thousand times would make the
        // broker walk every retained message a hundred thousand times.
        let mut seen = HashSet::new();
        let mut distinct: Vec<(&TopicFilter, QoS)> = granted
            .into_iter()
            .rev()
            .filter(|(filter, _)| seen.insert(*filter))
            .collect();
        distinct.reverse();
        for (filter, granted) in distinct {
            if self
                .send_retained(session, filter, granted, now, out)
                .is_break()
            {
                break;
            }
        }
    }

    /// [MQTT-3.3.1-8]: retained messages sent because of a new
    /// subscription carry the retain flag; only those its client may read
    /// are sent. The walk stops as soon as the subscriber can take no more
    /// (its output is past [`QOS0_OUTPUT_LIMIT`](super::QOS0_OUTPUT_LIMIT)
    /// or its queue is full), and so does the whole SUBSCRIBE's.
    fn send_retained(
        &mut self,
        session: usize,
        filter: &TopicFilter,
        granted: QoS,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> ControlFlow<()> {
        let arrival = self.arrival(now);
        // The retained messages are read while the session and the counts
        // change: fields apart, so each is borrowed on its own.
        let Some(slot) = self.sessions.get_mut(session) else {
            return ControlFlow::Break(());
        };
        let (guard, stats) = (&self.guard, &mut self.stats);
        let mut stored = 0usize;
        let flow = self.retained.try_for_each_match(filter, |retained| {
            // The filter may reach topics its client may not read.
            let readable = guard.may_read(
                &slot.session.client_id,
                slot.username.as_deref(),
                &retained.topic,
            );
            if !readable {
                return ControlFlow::Continue(());
            }
            let message = retained.copy_at(retained.qos.min(granted), true);
            let size = wire_size(&message, Delivery::Sent);
            let (qos, wire) = (message.qos, Wire::Packet(message.to_publish(None, false)));
            let held = slot.session.held_bytes();
            let delivery = deliver_with(slot, qos, || message, wire, arrival, stats, out);
            let grown = slot.session.held_bytes().saturating_sub(held);
            stored = stored.saturating_add(grown);
            match delivery {
                Delivery::Dropped => ControlFlow::Break(()),
                Delivery::Queued => ControlFlow::Continue(()),
                Delivery::Sent => {
                    stored = stored.saturating_add(size);
                    ControlFlow::Continue(())
                }
            }
        });
        retry::arm(&mut self.timers, slot, now, self.epoch, &self.settings);
        self.memory_grew(stored, out);
        flow
    }

    /// Removes each filter the client holds; UNSUBACK is sent even when it
    /// held none of them ([MQTT-3.10.4-5]).
    pub(super) fn handle_unsubscribe(
        &mut self,
        conn: ConnId,
        session: usize,
        unsubscribe: Unsubscribe,
        out: &mut dyn Outbox,
    ) {
        for filter in &unsubscribe.filters {
            self.sessions.unsubscribe(session, filter);
        }
        out.send(conn, &Packet::Unsuback(unsubscribe.packet_id));
    }
}
