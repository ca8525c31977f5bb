//! SUBSCRIBE and UNSUBSCRIBE (sections 3.8 to 3.11).
//! Explained in docs/06-topics-and-the-trie.md and docs/08-retained-and-wills.md.

use std::collections::HashSet;
use std::ops::ControlFlow;

use log::debug;

use super::publish::{deliver_to, Delivery};
use super::{retry, Broker, ConnId, Outbox};
use crate::protocol::{Packet, QoS, Suback, SubackCode, Subscribe, TopicFilter, Unsubscribe};
use crate::session::Message;

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
        out: &mut dyn Outbox,
    ) {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        for (filter, qos) in &subscribe.filters {
            if !self.may_subscribe(session, filter) {
                debug!("Refused a subscription to {filter}: not allowed by the ACL.");
                codes.push(SubackCode::Failure);
                continue;
            }
            let Some(slot) = self.sessions.get_mut(session) else {
                return;
            };
            slot.session.subscriptions.insert(filter.clone(), *qos);
            self.subscriptions.insert(filter, session, *qos);
            codes.push(SubackCode::Granted(*qos));
            granted.push((filter, *qos));
        }
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
            if self.send_retained(session, filter, granted, out).is_break() {
                break;
            }
        }
    }

    /// [MQTT-3.3.1-8]: retained messages sent because of a new
    /// subscription carry the retain flag; only those its client may read
    /// are sent. The walk stops as soon as the
    /// subscriber can take no more (its output is past the high-water mark
    /// or its queue is full), and so does the whole SUBSCRIBE's.
    fn send_retained(
        &mut self,
        session: usize,
        filter: &TopicFilter,
        granted: QoS,
        out: &mut dyn Outbox,
    ) -> ControlFlow<()> {
        let now = self.now;
        let Broker {
            retained,
            sessions,
            stats,
            timers,
            settings,
            guard,
            ..
        } = self;
        let Some(slot) = sessions.get_mut(session) else {
            return ControlFlow::Break(());
        };
        let mut stored = 0usize;
        let flow = retained.try_for_each_match(filter, |retained| {
            // The filter may reach topics its client may not read.
            let readable = guard.may_read(
                &slot.session.client_id,
                slot.username.as_deref(),
                &retained.topic,
            );
            if !readable {
                return ControlFlow::Continue(());
            }
            let message = Message {
                topic: retained.topic.clone(),
                payload: retained.payload.clone(),
                qos: retained.qos.min(granted),
                retain: true,
            };
            let size = message.stored_size();
            match deliver_to(slot, message, now, stats, out) {
                Delivery::Dropped => ControlFlow::Break(()),
                Delivery::Sent | Delivery::Queued => {
                    stored = stored.saturating_add(size);
                    ControlFlow::Continue(())
                }
            }
        });
        retry::arm(timers, slot, now, settings);
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
        if let Some(slot) = self.sessions.get_mut(session) {
            for filter in &unsubscribe.filters {
                if slot.session.subscriptions.remove(filter).is_some() {
                    self.subscriptions.remove(filter, &session);
                }
            }
        }
        out.send(conn, &Packet::Unsuback(unsubscribe.packet_id));
    }
}
