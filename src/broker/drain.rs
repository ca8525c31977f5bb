//! Writing what waits in a session's inflight window as its connection's
//! output drains.
//!
//! A resumed session resends its whole window ([MQTT-4.4.0-1]), and the
//! resend timer what is overdue; neither may pile that into an output
//! buffer the client does not read. So both mark the messages *waiting*
//! ([`Session::wait_all`](crate::session::Session::wait_all),
//! [`Session::mark_overdue`](crate::session::Session::mark_overdue)) and
//! [`Broker::send_waiting`] writes them, in their order, only while the
//! connection's output is below [`QOS0_OUTPUT_LIMIT`], the same mark past
//! which QoS 0 is dropped. When it stops at the mark it asks the network
//! layer to say when the output is below it again
//! ([`Outbox::notify_when_drained`]); [`Broker::drained`] then goes on
//! where it stopped. A connection thus holds at most the mark plus one
//! message of resends, however large the window, and a takeover storm
//! (a new connection with the same id many times a second, none of them
//! reading) costs one mark per connection rather than one window.
//!
//! New messages that find others waiting wait behind them
//! ([`Pushed::Waiting`](crate::session::Pushed::Waiting)), so the order a
//! client sees is the order they entered the window.
//!
//! It knows no sockets: how full an output is comes from
//! [`Outbox::pending`], when it drained from the network layer's call.
//! Explained in docs/10-backpressure-and-limits.md.

use std::time::Instant;

use super::{retry, Broker, ClientState, ConnId, Outbox, QOS0_OUTPUT_LIMIT};
use crate::protocol::Packet;
use crate::session::Inflight;

impl Broker {
    /// The output of `conn` went below [`QOS0_OUTPUT_LIMIT`] after the
    /// core asked to hear of it ([`Outbox::notify_when_drained`]): on
    /// reconnect, once the CONNACK is flushed, or when the resends stopped
    /// at the mark. Writes what still waits in its session's window, up to
    /// the mark again, and asks again if some is left.
    pub fn drained(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        let Some(client) = self.clients.get(conn) else {
            return;
        };
        let ClientState::Connected(connected) = &client.state else {
            return;
        };
        let session = connected.session;
        self.send_waiting(conn, session, now, out);
    }

    /// Writes the waiting messages of `session` to `conn`, oldest first,
    /// while its output is below the mark; if some are left, asks to hear
    /// when it drains. Arms the resend check for what it wrote.
    pub(super) fn send_waiting(
        &mut self,
        conn: ConnId,
        session: usize,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let time = self.broker_time(now);
        let Some(slot) = self.sessions.get_mut(session) else {
            return;
        };
        if slot.conn != Some(conn) || !slot.session.has_waiting() {
            return;
        }
        let mut publishes = 0;
        slot.session.send_waiting(time, |id, state, dup| {
            if out.pending(conn) >= QOS0_OUTPUT_LIMIT {
                return false;
            }
            let packet = match state {
                Inflight::AwaitingPuback(message) | Inflight::AwaitingPubrec(message) => {
                    publishes += 1;
                    Packet::Publish(message.to_publish(Some(id), dup))
                }
                Inflight::AwaitingPubcomp => Packet::Pubrel(id),
            };
            out.send(conn, &packet);
            true
        });
        self.stats.messages_sent += publishes;
        if slot.session.has_waiting() {
            out.notify_when_drained(conn);
        }
        retry::arm(&mut self.timers, slot, now, self.epoch, &self.settings);
    }
}
