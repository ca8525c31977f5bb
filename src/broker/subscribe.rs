//! SUBSCRIBE and UNSUBSCRIBE (sections 3.8 to 3.11).
//! Explained in docs/06-topics-and-the-trie.md and docs/08-retained-and-wills.md.

use std::collections::HashSet;
use std::time::Instant;

use log::debug;

use super::{Broker, ConnId, Outbox};
use crate::protocol::{Packet, QoS, Suback, SubackCode, Subscribe, TopicFilter, Unsubscribe};

impl Broker {
    /// Grants every filter the ACL allows at the QoS asked for (sol
    /// supports all three) and refuses the others with 0x80, answers SUBACK,
    /// then sends the retained messages each granted filter matches and the
    /// client may read, as many as one turn allows, the rest over the next
    /// turns (`walks.rs`). A filter the client already holds is replaced,
    /// and its retained messages are sent again ([MQTT-3.8.4-3]).
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
                debug!(
                    "Refused a subscription to {}: not allowed by the ACL.",
                    crate::logtext::shown(filter.as_str())
                );
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
        let mut distinct: Vec<(TopicFilter, QoS)> = granted
            .into_iter()
            .rev()
            .filter(|(filter, _)| seen.insert(*filter))
            .map(|(filter, qos)| (filter.clone(), qos))
            .collect();
        distinct.reverse();
        // [MQTT-3.3.1-6], in parts that no SUBSCRIBE can make long:
        // `walks.rs`.
        self.queue_retained(conn, session, distinct, now, out);
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
