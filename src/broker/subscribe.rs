//! SUBSCRIBE and UNSUBSCRIBE (sections 3.8 to 3.11).

use log::debug;

use super::{Broker, ConnId, Outbox};
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
        for (filter, qos) in granted {
            self.send_retained(session, filter, qos, out);
        }
    }

    /// [MQTT-3.3.1-8]: retained messages sent because of a new
    /// subscription carry the retain flag.
    fn send_retained(
        &mut self,
        session: usize,
        filter: &TopicFilter,
        granted: QoS,
        out: &mut dyn Outbox,
    ) {
        let mut found = Vec::new();
        let guard = &self.guard;
        let reader = self
            .sessions
            .get(session)
            .map(|slot| (&slot.session.client_id, slot.username.as_deref()));
        let Some((client_id, username)) = reader else {
            return;
        };
        self.retained.for_each_match(filter, |retained| {
            if !guard.may_read(client_id, username, &retained.topic) {
                return;
            }
            found.push(Message {
                topic: retained.topic.clone(),
                payload: retained.payload.clone(),
                qos: retained.qos.min(granted),
                retain: true,
            });
        });
        for message in found {
            self.deliver(session, message, out);
        }
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
