//! `persistent_client_expiration`: a persistent session whose client has
//! been away longer than that is removed, and what it held goes with it.
//!
//! Without it, every client that once connected with clean session 0 and
//! never came back keeps its session for as long as the broker runs: its
//! subscriptions in the trie, every message queued for it (up to
//! `max_queued_messages`), its client id. The default is still never, as in
//! mosquitto, because expiring is the loss of messages a client was
//! promised; a deployment sets it.
//!
//! # One timer per offline session
//!
//! A session gets its timer on the wheel when its client goes, and loses it
//! when the client comes back. The other way, one periodic sweep over every
//! session, would walk all of them in one turn however few are due: with
//! 100 000 offline sessions that is milliseconds of a turn every sweep,
//! for nothing most of the time. On the wheel, arming and cancelling are
//! O(1); a timer waiting for its day costs one comparison when its slot is
//! swept (100 000 timers over 512 slots: about 200 comparisons per slot),
//! and only the sessions that are due cost more. The price is a timer entry
//! per offline session, some 50 bytes, against the kilobytes a session
//! with a queue holds.
//!
//! A turn removes at most [`EXPIRIES_PER_TURN`] sessions, so that many
//! sessions that left together do not expire in one long turn.
//!
//! The deadline is always the session's own record,
//! [`Session::offline_since`](crate::session::Session::offline_since) plus
//! the period, never the timer alone: that is what a restore will rebuild
//! the timer from.
//!
//! It knows nothing of how a session is removed: `Sessions::remove` takes
//! its subscriptions out of the trie and frees its client id, and the
//! broker cancels its other timer. Explained in docs/13-housekeeping.md.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::info;

use super::{Broker, Lines, Timer};
use crate::logtext::shown;

impl Broker {
    /// The client of persistent session `key` has gone at `now`: notes
    /// when, and arms its expiry if `persistent_client_expiration` is set.
    pub(super) fn session_went_offline(&mut self, key: usize, now: Instant) {
        let at = self.broker_time(now);
        let Some(slot) = self.sessions.get_mut(key) else {
            return;
        };
        slot.session.offline_since = Some(at);
        if let Some(old) = slot.expiry.take() {
            self.timers.cancel(old);
        }
        let Some(deadline) = expiry_deadline(self.epoch, at, self.settings.expiration) else {
            return;
        };
        slot.expiry = Some(self.timers.insert(deadline, Timer::Expiry(key)));
    }

    /// A client came back to persistent session `key`: it is no longer
    /// offline, and nothing is due.
    pub(super) fn session_came_back(&mut self, key: usize) {
        let Some(slot) = self.sessions.get_mut(key) else {
            return;
        };
        slot.session.offline_since = None;
        if let Some(timer) = slot.expiry.take() {
            self.timers.cancel(timer);
        }
    }

    /// The expiry of session `key` fired: it joins the sessions to check.
    pub(super) fn expiry_due(&mut self, key: usize) {
        if let Some(slot) = self.sessions.get_mut(key) {
            slot.expiry = None;
            self.expiring.due.push_back(key);
        }
    }

    /// Checks and removes the next [`EXPIRIES_PER_TURN`] sessions whose
    /// expiry fired, once this turn's timers have run; when more are
    /// waiting, arms `Timer::Expiring` at `now`, so that the loop polls
    /// without sleeping and serves every other client before the next
    /// batch.
    pub(super) fn expire_due_sessions(&mut self, now: Instant) {
        for _ in 0..EXPIRIES_PER_TURN {
            let Some(key) = self.expiring.due.pop_front() else {
                break;
            };
            self.expiry_check(key, now);
        }
        if !self.expiring.due.is_empty() && !self.expiring.armed {
            self.timers.insert(now, Timer::Expiring);
            self.expiring.armed = true;
        }
    }

    /// Removes session `key` if its client is still away and has been for
    /// the whole period. Every path that removes a session or attaches a
    /// client to it cancels its timer, and one that left again has a new
    /// one: the checks here keep a key that waited among the due ones from
    /// touching a session that came back, or a new session that took its
    /// key.
    fn expiry_check(&mut self, key: usize, now: Instant) {
        let broker_now = self.broker_time(now);
        let Some(slot) = self.sessions.get_mut(key) else {
            return;
        };
        let (Some(since), None, None) = (slot.session.offline_since, slot.conn, slot.expiry) else {
            return;
        };
        let Some(expiration) = self.settings.expiration else {
            return;
        };
        let away = broker_now.saturating_sub(since);
        if away < expiration {
            // The record says later (a restore may have set it): wait for it.
            let deadline = expiry_deadline(self.epoch, since, Some(expiration));
            if let Some(deadline) = deadline {
                slot.expiry = Some(self.timers.insert(deadline, Timer::Expiry(key)));
            }
            return;
        }
        let (client_id, held) = (
            Arc::clone(&slot.session.client_id),
            slot.session.stored_len(),
        );
        if self.may_log(Lines::Connections, now) {
            info!(
                "Expiring client {} due to timeout ({} s offline, {held} message(s) dropped).",
                shown(&client_id),
                away.as_secs(),
            );
        }
        self.stats.clients_expired += 1;
        self.remove_session(key);
    }
}

/// The sessions whose expiry fired and that wait to be checked, oldest
/// first, and whether `Timer::Expiring` is on the wheel for them.
#[derive(Default)]
pub(super) struct Expiring {
    due: VecDeque<usize>,
    armed: bool,
}

impl Expiring {
    /// `Timer::Expiring` fired.
    pub(super) fn fired(&mut self) {
        self.armed = false;
    }

    /// Whether `Timer::Expiring` is on the wheel: it is housekeeping, not a
    /// client's timer.
    pub(super) fn armed(&self) -> bool {
        self.armed
    }
}

/// The most sessions one turn removes. Sessions that went offline together
/// (a network outage, a fleet restarted) expire together, and 100 000 of
/// them would take one turn of about half a second, every client waiting.
/// A batch of this size takes some milliseconds.
pub(super) const EXPIRIES_PER_TURN: usize = 1000;

/// The instant a session offline since broker time `since` expires, or
/// `None` when sessions do not expire (or the instant cannot be
/// represented, which the config's bound on the period rules out).
fn expiry_deadline(
    epoch: Instant,
    since: Duration,
    expiration: Option<Duration>,
) -> Option<Instant> {
    epoch.checked_add(since.checked_add(expiration?)?)
}
