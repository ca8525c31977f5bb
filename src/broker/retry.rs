//! Resending QoS 1 and 2 messages a connected client has not acknowledged
//! in time.
//!
//! MQTT 3.1.1 asks for resending only when a client reconnects with its
//! session ([MQTT-4.4.0-1]; `connect.rs` does that). In addition, as the
//! original Sol did, a connected client whose acknowledgement is overdue by
//! `retry_interval` gets the PUBLISH again with DUP set (or the PUBREL
//! again): a client that lost a message without losing its connection
//! still gets it.
//!
//! # One timer per connection, armed only while something is in flight
//!
//! Like keepalive, the timer is not moved on every packet. It is armed when
//! a message enters an empty window (`arm`), fires when the oldest message
//! in flight can first be overdue, resends everything overdue, and re-arms
//! for the next one, or not at all when the window is empty. An idle client
//! costs no timer.
//!
//! # Bounded
//!
//! A fire resends at most the inflight window (`max_inflight_messages`),
//! and each message at most once per `retry_interval`. Nothing is resent
//! while the connection's output buffer still holds bytes: the overdue
//! message may be sitting there unwritten, and a copy behind it would only
//! make a client that does not read cost more memory. What is resent is
//! written as the output drains (`drain.rs`): a fire adds at most the
//! output mark's worth, whatever the window holds.
//!
//! Explained in docs/13-housekeeping.md.

use std::time::{Duration, Instant};

use log::debug;

use super::{Broker, ClientState, ConnId, Outbox, SessionSlot, Settings, Timer};
use crate::timer::TimerWheel;

/// How soon a connection whose output was backed up is looked at again.
const RECHECK_BACKED_UP: Duration = Duration::from_secs(1);

/// Arms the resend check of the connection `slot`'s session is attached
/// to, unless it is armed already, nothing is in flight, or resending is
/// off. Called whenever a message may have gone into the inflight window.
/// `epoch` is where the session's broker time counts from.
#[inline]
pub(super) fn arm(
    timers: &mut TimerWheel<Timer>,
    slot: &mut SessionSlot,
    now: Instant,
    epoch: Instant,
    settings: &Settings,
) {
    let interval = settings.retry_interval;
    let Some(conn) = slot.conn else {
        return;
    };
    if slot.retry.is_some() || interval.is_zero() || slot.session.inflight_len() == 0 {
        return;
    }
    let overdue = slot
        .session
        .next_overdue(interval)
        .and_then(|at| epoch.checked_add(at));
    let Some(at) = overdue.or_else(|| now.checked_add(interval)) else {
        return;
    };
    slot.retry = Some(timers.insert(at, Timer::Retry(conn)));
}

impl Broker {
    /// The resend check of `conn` fired: resend what is overdue, re-arm for
    /// what is still in flight.
    pub(super) fn retry_check(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        let Some(client) = self.clients.get(conn) else {
            return;
        };
        let ClientState::Connected(connected) = &client.state else {
            return;
        };
        let key = connected.session;
        let Some(slot) = self.sessions.get_mut(key) else {
            return;
        };
        if slot.conn != Some(conn) {
            return;
        }
        slot.retry = None;
        let interval = self.settings.retry_interval;
        if interval.is_zero() || slot.session.inflight_len() == 0 {
            return;
        }
        if out.pending(conn) > 0 {
            let at = now.checked_add(interval.min(RECHECK_BACKED_UP));
            slot.retry = at.map(|at| self.timers.insert(at, Timer::Retry(conn)));
            return;
        }
        let due = slot
            .session
            .mark_overdue(now.saturating_duration_since(self.epoch), interval);
        if due > 0 {
            debug!(
                "Resending {due} unacknowledged packet(s) to {}.",
                crate::logtext::shown(&slot.session.client_id)
            );
            // Written while the output is below the mark, the rest as it
            // drains (`drain.rs`).
            self.send_waiting(conn, key, now, out);
        }
        let Some(slot) = self.sessions.get_mut(key) else {
            return;
        };
        if slot.retry.is_some() {
            return;
        }
        // Everything left in flight was sent less than an interval ago, so
        // this is in the future.
        let next = slot.session.next_overdue(interval);
        if let Some(at) = next.and_then(|at| self.epoch.checked_add(at)) {
            slot.retry = Some(self.timers.insert(at, Timer::Retry(conn)));
        }
    }
}
