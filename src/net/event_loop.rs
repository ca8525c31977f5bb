//! The poll loop: one turn after another until shutdown.
//!
//! See the [module docs](super) for the shape of a turn. This file owns the
//! turn and its policy: how much is read from whom, when input pauses, when
//! a connection goes away and whether the core hears of it, and the one
//! flush per connection that ends the turn. Accepting is `accept.rs`'s, a
//! clean stop `stop.rs`'s.
//!
//! Explained in docs/05-event-loop.md and docs/10-backpressure-and-limits.md.

use std::io;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Poll, Token};

use crate::broker::{CloseReason, ConnId, Outbox, TlsInfo, QOS0_OUTPUT_LIMIT, WORK_BUDGET};
use crate::protocol::DecodeError;

use super::accept::open_spare_fd;
use super::conn::Connection;
use super::connections::{flush_counted, Connections};
use super::core::Core;
use super::listener::Listener;
use super::signals::SignalSource;
use super::{first_reserved, listener_index, Shared, SIGNALS, WAKER};

/// The most bytes read from one connection in one turn. A client that sends
/// without pause is put in the ready list and served again next turn, after
/// everybody else had their go.
pub(crate) const READ_BUDGET: usize = 256 * 1024;

/// How far a connection's buffered output may go past the most that
/// fan-out alone can queue for it (see [`Limits::new`]) before the loop
/// stops reading from it: the room its own replies get.
pub(crate) const PAUSE_INPUT_SLACK: usize = 1024 * 1024;

/// How many bytes of replies may wait unwritten in a connection's output
/// (`Connection::replies`: PINGRESP, the acknowledgements, SUBACK, every
/// packet but PUBLISH, each the answer to one of its own packets) before
/// the loop stops reading from it. A client that sends and never reads
/// holds the broker to this, not to the fan-out mark; one that reads pays
/// back with every write. PUBLISHes are bounded by marks of their own
/// (QoS 0 dropped past 1 MiB, QoS 1 and 2 by the window) and do not count,
/// so a subscriber whose acknowledgements free room for the next message
/// is not paused for it. Small, because it also bounds
/// the work one turn does for a client that sends tiny packets and never
/// reads: 2048 PINGREQs answered per turn, not the 128 Ki of a full read
/// budget, which kept everybody else waiting.
pub(crate) const REPLIES_LIMIT: usize = 4 * 1024;

/// How many readiness events one poll returns at most; more simply wait for
/// the next turn.
const EVENTS_CAPACITY: usize = 1024;

/// The poll timeout for a deadline: the time left, rounded *up* to the next
/// millisecond. Rounding down would turn a deadline 0.3 ms away into a zero
/// timeout, and the loop would spin until the deadline passed.
pub(crate) fn timeout_until(now: Instant, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(now);
    let millis = left.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// The sizes the loop works with. Fixed in production; the loop's tests
/// shrink them to reach the edges with a few bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The largest packet a client may send (`max_request_size`).
    pub(crate) max_request_size: usize,
    /// See [`READ_BUDGET`].
    pub(crate) read_budget: usize,
    /// The work (see [`Core::take_work`]) one connection's packets may
    /// cost in one turn; past it, the rest of its input waits in its
    /// buffer for the next turn, like input past the read budget. Bytes
    /// alone do not bound a turn: 50 KB of PUBLISHes that match nobody
    /// can each walk a trie of deep wildcard filters.
    pub(crate) work_budget: usize,
    /// Buffered output, in bytes, past which the loop stops reading from a
    /// connection until its socket drains it below again.
    pub(crate) pause_input_at: usize,
    /// Connections open at once (`max_connections`); `None` for no limit.
    pub(crate) max_connections: Option<usize>,
    /// See [`REPLIES_LIMIT`].
    pub(crate) replies_limit: usize,
}

impl Limits {
    /// Output queued above `pause_input_at` stops the connection's input from
    /// being read and decoded until the socket drains it below again: a
    /// client that sends faster than it reads (PINGREQ after PINGREQ, never
    /// reading a PINGRESP) must not make the broker queue without bound.
    ///
    /// The mark sits above what *other* clients' messages can queue: the
    /// core stops sending QoS 0 at [`QOS0_OUTPUT_LIMIT`], so fan-out tops out
    /// at that plus one largest packet. Were the two marks equal, a slow but
    /// live subscriber to a busy topic would have its input paused for good,
    /// its PINGREQs never read, and it would be closed for keepalive.
    pub(crate) fn new(max_request_size: usize) -> Limits {
        Limits {
            max_request_size,
            read_budget: READ_BUDGET,
            work_budget: WORK_BUDGET,
            pause_input_at: QOS0_OUTPUT_LIMIT
                .saturating_add(max_request_size)
                .saturating_add(PAUSE_INPUT_SLACK),
            max_connections: None,
            replies_limit: REPLIES_LIMIT,
        }
    }
}

/// Whether input must pause: the output is past the fan-out mark, or the
/// replies in it are past theirs.
fn backed_up(limits: &Limits, conn: &Connection) -> bool {
    conn.output.len() >= limits.pause_input_at || conn.replies >= limits.replies_limit
}

/// The loop's whole state.
pub(crate) struct EventLoop<C: Core> {
    pub(super) poll: Poll,
    pub(super) events: Events,
    pub(super) listeners: Vec<Listener>,
    pub(super) conns: Connections,
    /// Connections whose input must be serviced next turn without waiting
    /// for an event: their read budget ran out, or their throttle lifted.
    pub(super) ready: Vec<ConnId>,
    pub(super) limits: Limits,
    shared: Arc<Shared>,
    pub(super) core: C,
    /// The signal pipe, when the process asked for signals.
    pub(crate) signals: Option<SignalSource>,
    /// Connections refused for `max_connections` since the last one
    /// accepted: the first of a burst is logged as a warning, the rest
    /// only at DEBUG.
    pub(super) refused: u64,
    /// Connections refused for want of file descriptors since the last one
    /// accepted, logged like `refused`.
    pub(super) out_of_fds: u64,
    /// A descriptor held in reserve for refusing clients once the process
    /// runs out (see `refuse_with_spare_fd`).
    pub(super) spare_fd: Option<std::fs::File>,
}

impl<C: Core> EventLoop<C> {
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<Listener>,
        shared: Arc<Shared>,
        limits: Limits,
        core: C,
    ) -> io::Result<EventLoop<C>> {
        let registry = poll.registry().try_clone()?;
        let key_limit = first_reserved(listeners.len());
        let conns = Connections::new(registry, key_limit, limits.max_request_size);
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listeners,
            conns,
            ready: Vec::new(),
            limits,
            shared,
            core,
            signals: None,
            refused: 0,
            out_of_fds: 0,
            spare_fd: open_spare_fd(),
        })
    }

    /// Turns until shutdown is requested. Only a failing `poll` is fatal.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        loop {
            if self.shared.stop_requested() {
                self.stop(Instant::now());
                return Ok(());
            }
            if self.shared.take_reload() {
                self.reload(Instant::now());
            }
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.turn(Instant::now());
        }
    }

    /// Everything that follows one poll: events, then timers, then writes.
    fn turn(&mut self, now: Instant) {
        // Taken before the events, so that a connection put back in the list
        // during this turn waits for the next one.
        let ready = mem::take(&mut self.ready);
        // Those who waited go first: served after the new events, a throttled
        // connection would find its output refilled by them every turn.
        for id in ready {
            if let Some(conn) = self.conns.live(id) {
                conn.ready = false;
                self.service_input(id.key, now);
            }
        }
        let events = mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            let Token(key) = event.token();
            if key == WAKER.0 {
                continue;
            }
            if key == SIGNALS.0 {
                self.signal_event();
                continue;
            }
            if let Some(index) = listener_index(event.token(), self.listeners.len()) {
                self.listener_event(index, now);
                continue;
            }
            let to_end = event.is_read_closed() || event.is_error();
            let readable = event.is_readable() || to_end;
            self.conn_event(key, readable, to_end, event.is_writable(), now);
        }
        self.events = events;
        self.accept_due(now);
        self.core.tick(now, &mut self.conns.outbox());
        self.flush_dirty(now);
    }

    /// How long the next poll may sleep: not at all while some input or
    /// some listener's backlog waits, else until the first deadline.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || self.listeners.iter().any(|l| l.backlog) {
            return Some(Duration::ZERO);
        }
        let retries = self.listeners.iter().filter_map(|l| l.retry_at);
        let first = self.core.next_deadline().into_iter().chain(retries).min();
        first.map(|deadline| timeout_until(now, deadline))
    }

    // ----- reading

    fn conn_event(
        &mut self,
        key: usize,
        readable: bool,
        to_end: bool,
        writable: bool,
        now: Instant,
    ) {
        // A vacant key: an event for a connection closed earlier this turn.
        let Some(conn) = self.conns.slab.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        let conn = if conn.connecting {
            // Only the end of the connect is news; then the connection is
            // like any other, and this event's readiness counts for it.
            if !(writable || to_end) || !self.finish_connect(key, now) {
                return;
            }
            let Some(conn) = self.conns.slab.get_mut(key) else {
                return;
            };
            conn
        } else {
            conn
        };
        if writable {
            conn.mark_dirty(&mut self.conns.dirty);
        }
        if readable {
            conn.readable = true;
        }
        if to_end {
            conn.read_to_end = true;
        }
        // A connection in the ready list is serviced once, with the list;
        // a throttled one waits for its output to drain.
        if conn.readable && !conn.ready && !conn.throttled {
            self.service_input(key, now);
        }
    }

    /// Decodes what is buffered, then reads and decodes more, until the
    /// socket is drained, the budget is spent, or the connection stops
    /// (closed, closing or throttled).
    fn service_input(&mut self, key: usize, now: Instant) {
        let mut budget = self.limits.read_budget;
        let mut work = 0;
        loop {
            if !self.decode_buffered(key, &mut work, now) {
                return;
            }
            let Some(conn) = self.conns.slab.get_mut(key) else {
                return;
            };
            if !conn.readable {
                conn.release_input();
                return;
            }
            if budget == 0 {
                conn.mark_ready(&mut self.ready);
                return;
            }
            match conn.read_chunk(budget) {
                Ok(0) => return self.lost(key, CloseReason::PeerClosed, now),
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let traffic = &mut self.conns.traffic;
                    traffic.bytes_received = traffic.bytes_received.saturating_add(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.lost(key, CloseReason::Io(e), now),
            }
            self.after_read(key);
        }
    }

    /// A read on a TLS connection may have completed its handshake (the core
    /// hears of it now, before the first MQTT byte is decoded) or left
    /// records for the peer (handshake replies, alerts), which this turn's
    /// flush writes.
    fn after_read(&mut self, key: usize) {
        let Some(conn) = self.conns.slab.get_mut(key) else {
            return;
        };
        if conn.stream.wants_write() {
            conn.mark_dirty(&mut self.conns.dirty);
        }
        if let Some(common_name) = conn.stream.take_tls_established() {
            let use_identity_as_username = conn
                .seat
                .as_ref()
                .is_some_and(|seat| seat.use_identity_as_username);
            let peer = conn.peer_info(Some(TlsInfo {
                common_name,
                use_identity_as_username,
            }));
            self.core.established(conn.id, peer);
        }
    }

    /// Hands every whole packet in the input buffer to the core, adding
    /// what they cost to `work`. Returns false when the connection must not
    /// be read further this turn. The work budget is checked between
    /// packets, so a packet is always handled whole and in order.
    fn decode_buffered(&mut self, key: usize, work: &mut usize, now: Instant) -> bool {
        loop {
            let Some(conn) = self.conns.slab.get_mut(key) else {
                return false;
            };
            if conn.closing {
                return false;
            }
            if *work >= self.limits.work_budget {
                conn.mark_ready(&mut self.ready);
                return false;
            }
            if backed_up(&self.limits, conn) {
                debug!("connection {key}: input paused, output above high water");
                conn.throttled = true;
                return false;
            }
            let id = conn.id;
            // The borrow of `conn` ends with this call, which is what lets
            // the core write into every connection's output, this one's too.
            match conn.decoder.decode(&mut conn.input) {
                Ok(Some(packet)) => {
                    let mut out = self.conns.outbox();
                    self.core.packet(id, packet, now, &mut out);
                    *work = work.saturating_add(self.core.take_work());
                }
                Ok(None) => return true,
                Err(e) => {
                    self.protocol_error(id, e, now);
                    return false;
                }
            }
        }
    }

    /// The core may queue a last packet (a refusing CONNACK) and closes the
    /// connection; if it did not, the loop does, as the decoder cannot go on.
    fn protocol_error(&mut self, id: ConnId, error: DecodeError, now: Instant) {
        debug!("connection {}: {error:?}", id.key);
        let mut out = self.conns.outbox();
        self.core
            .closed(id, CloseReason::Protocol(error), now, &mut out);
        out.close(id);
    }

    /// The socket is gone (peer closed or failed): the core hears of it,
    /// then the connection is removed at once.
    fn lost(&mut self, key: usize, reason: CloseReason, now: Instant) {
        let Some(conn) = self.conns.slab.get(key) else {
            return;
        };
        let id = conn.id;
        debug!("connection {key} ({}): {reason:?}", conn.peer);
        let half_closed = matches!(reason, CloseReason::PeerClosed);
        self.core.closed(id, reason, now, &mut self.conns.outbox());
        // A peer that only shut down its sending side still reads: replies
        // already queued for it (a CONNACK, a SUBACK) go out with the last
        // flush of this turn. A socket that failed is dropped at once.
        match self.conns.slab.get_mut(key) {
            Some(conn) if half_closed => {
                conn.closing = true;
                conn.mark_dirty(&mut self.conns.dirty);
            }
            _ => self.conns.remove(key),
        }
    }

    // ----- writing

    /// Flushes every dirty connection, in the order they were marked.
    /// Closing connections go away after their flush; a failed write is a
    /// lost connection, which may make the core send to others (a will),
    /// so connections marked during the loop, even one already flushed in
    /// it, are flushed too before the list is cleared.
    fn flush_dirty(&mut self, now: Instant) {
        // In the order the connections were marked, which is the order the
        // core answered in, except that a publisher is moved behind the
        // subscribers of what it published (`Outbox::write_after_others`):
        // a PUBLISH routed to a subscriber goes out before the PUBACK to its
        // publisher, so the delivery is not kept waiting behind a write (and
        // the wake-up of the publisher) that nobody downstream needs first. A
        // connection marked during the loop (a
        // will, sent when a failed flush ends a connection) is flushed too.
        // A connection moved to the back (`mark_dirty_last`) is flushed at
        // its last entry only.
        let mut next = 0;
        while let Some(&id) = self.conns.dirty.get(next) {
            let index = next;
            next += 1;
            let conns = &mut self.conns;
            let Some(conn) = conns.slab.get_mut(id.key).filter(|c| c.id == id) else {
                continue;
            };
            if !conn.flushes_at(index) {
                continue;
            }
            conn.dirty = false;
            if conn.connecting && !conn.closing {
                // Marked again once connected; its output waits till then.
                continue;
            }
            let flushed = flush_counted(conn, &mut conns.traffic);
            if conn.closing {
                if let Err(e) = flushed {
                    debug!("connection {}: last flush: {e}", id.key);
                }
                self.conns.remove(id.key);
                continue;
            }
            if let Err(e) = flushed {
                self.lost(id.key, CloseReason::Io(e), now);
                continue;
            }
            match self.update_interest(id.key) {
                Ok(true) => self.core.drained(id, now, &mut self.conns.outbox()),
                Ok(false) => {}
                Err(e) => self.lost(id.key, CloseReason::Io(e), now),
            }
        }
        self.conns.dirty.clear();
    }

    /// After a flush: asks for `WRITABLE` only while output is left, lifts
    /// the input throttle once output is below the mark, frees idle buffers.
    /// Returns whether the core is to hear that the connection drained
    /// (`Core::drained`): it asked, and the output is below its mark. The
    /// call is the caller's, after this borrow of the connection ends; what
    /// it queues marks the connection dirty again, and the flush loop
    /// writes it this turn.
    fn update_interest(&mut self, key: usize) -> io::Result<bool> {
        let conns = &mut self.conns;
        let Some(conn) = conns.slab.get_mut(key) else {
            return Ok(false);
        };
        let wanted = conn.wanted_interest();
        if wanted != conn.interest {
            conns
                .registry
                .reregister(&mut conn.stream, Token(key), wanted)?;
            conn.interest = wanted;
        }
        if conn.throttled && !backed_up(&self.limits, conn) {
            debug!("connection {key}: input resumed");
            conn.throttled = false;
            conn.mark_ready(&mut self.ready);
        }
        conn.release_output();
        let drained = conn.notify_drained && conn.output.len() < QOS0_OUTPUT_LIMIT;
        if drained {
            conn.notify_drained = false;
        }
        Ok(drained)
    }

    // ----- signals and reloading

    /// The signal pipe is readable: turn what arrived into requests, which
    /// the loop carries out between turns, as it does a handle's.
    fn signal_event(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let requests = signals.take();
        if let Some(signal) = requests.stop {
            info!("{signal} received: stopping");
            self.shared
                .stop
                .store(true, std::sync::atomic::Ordering::Release);
        }
        if requests.reload {
            info!("SIGHUP received: reloading");
            self.shared
                .reload
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// SIGHUP or a handle's reload: the log file is reopened (so `logrotate`
    /// can rename it), the core re-reads its password and ACL files, the TLS
    /// listener its certificates. Each keeps what it had when its files fail
    /// to load. Open TLS connections keep the session they negotiated.
    /// Whatever the core sends or closes is flushed at once.
    pub(crate) fn reload(&mut self, now: Instant) {
        match crate::logging::reopen() {
            Ok(true) => info!("log file reopened"),
            Ok(false) => {}
            Err(e) => warn!("could not reopen the log file, still using the old one: {e}"),
        }
        info!("Reloading the password, ACL and certificate files.");
        let mut out = self.conns.outbox();
        self.core.reload(now, &mut out);
        for listener in &mut self.listeners {
            if let Some(acceptor) = &mut listener.tls {
                if let Err(errors) = acceptor.reload() {
                    for e in &errors {
                        error!("reload: {e}");
                    }
                    error!("reload failed: keeping the TLS certificates loaded before");
                }
            }
        }
        self.flush_dirty(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_under_a_millisecond_away_waits_one_millisecond() {
        let now = Instant::now();
        let timeout = timeout_until(now, now + Duration::from_micros(300));
        assert_eq!(timeout, Duration::from_millis(1));
    }

    #[test]
    fn a_deadline_is_rounded_up_not_down() {
        let now = Instant::now();
        let deadline = now + Duration::from_millis(41) + Duration::from_nanos(1);
        assert_eq!(timeout_until(now, deadline), Duration::from_millis(42));
        let exact = now + Duration::from_millis(42);
        assert_eq!(timeout_until(now, exact), Duration::from_millis(42));
    }

    #[test]
    fn a_past_deadline_means_no_wait() {
        let now = Instant::now() + Duration::from_secs(1);
        let past = now - Duration::from_millis(5);
        assert_eq!(timeout_until(now, past), Duration::ZERO);
        assert_eq!(timeout_until(now, now), Duration::ZERO);
    }
}
