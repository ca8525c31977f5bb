//! The poll loop: one turn after another until shutdown.
//!
//! See the [module docs](super) for the shape of a turn. This file owns the
//! policy: how much is read from whom, when input pauses, when a connection
//! goes away and whether the broker hears of it.
//!
//! Explained in docs/05-event-loop.md and docs/10-backpressure-and-limits.md.

use std::io;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::broker::{Broker, CloseReason, ConnId, Outbox, Traffic, QOS0_OUTPUT_LIMIT};
use crate::protocol::{DecodeError, Packet};

use super::conn::Connection;
use super::listener::Listener;
use super::outbox::{live, NetOutbox};
use super::signals::SignalSource;
use super::stream::Stream;
use super::{Shared, FIRST_RESERVED, SIGNALS, WAKER};

/// The most bytes read from one connection in one turn. A client that sends
/// without pause is put in the ready list and served again next turn, after
/// everybody else had their go.
pub(crate) const READ_BUDGET: usize = 256 * 1024;

/// Slack above the most that fan-out alone can queue for a connection (see
/// [`Limits::new`]): the room a client's own replies get before its input
/// is paused.
pub(crate) const HIGH_WATER: usize = 1024 * 1024;

/// The most clients accepted from one listener in one turn, for the same
/// reason: a connection storm must not starve the clients already in.
pub(crate) const ACCEPT_BUDGET: usize = 256;

/// How long accepting pauses after an error such as `EMFILE`. The waiting
/// clients stay in the kernel's backlog meanwhile.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How many readiness events one poll returns at most; more simply wait for
/// the next turn.
const EVENTS_CAPACITY: usize = 1024;

/// How long a clean shutdown keeps trying to write what is buffered for
/// clients. A client that does not read in that time loses the rest: a
/// broker asked to stop must stop.
pub(crate) const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// What the loop needs from the protocol core. [`Broker`] is the real one;
/// the loop's tests drive it with a scripted one.
pub(crate) trait Core {
    fn open(&mut self, conn: ConnId, peer: &str, now: Instant);
    fn packet(&mut self, conn: ConnId, packet: Packet, now: Instant, out: &mut dyn Outbox);
    fn closed(&mut self, conn: ConnId, reason: CloseReason, now: Instant, out: &mut dyn Outbox);
    fn next_deadline(&self) -> Option<Instant>;
    fn tick(&mut self, now: Instant, out: &mut dyn Outbox);
    /// The TLS handshake of `conn` completed, before any of its MQTT bytes
    /// are decoded; `common_name` is its verified certificate's subject CN.
    fn tls_established(&mut self, _conn: ConnId, _common_name: Option<String>) {}
    /// `SIGHUP` or [`ServerHandle::reload`](super::ServerHandle::reload):
    /// re-read what can change without a restart.
    fn reload(&mut self, _now: Instant, _out: &mut dyn Outbox) {}
    /// The server is stopping: every connection is about to be closed with
    /// [`CloseReason::Shutdown`]. The place to log a summary.
    fn shutdown(&mut self, _now: Instant, _out: &mut dyn Outbox) {}
}

impl Core for Broker {
    fn open(&mut self, conn: ConnId, peer: &str, now: Instant) {
        Broker::open(self, conn, peer, now);
    }
    fn packet(&mut self, conn: ConnId, packet: Packet, now: Instant, out: &mut dyn Outbox) {
        Broker::packet(self, conn, packet, now, out);
    }
    fn closed(&mut self, conn: ConnId, reason: CloseReason, now: Instant, out: &mut dyn Outbox) {
        Broker::closed(self, conn, reason, now, out);
    }
    fn next_deadline(&self) -> Option<Instant> {
        Broker::next_deadline(self)
    }
    fn tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        Broker::tick(self, now, out);
    }
    fn tls_established(&mut self, conn: ConnId, common_name: Option<String>) {
        Broker::tls_established(self, conn, common_name);
    }
    fn reload(&mut self, now: Instant, out: &mut dyn Outbox) {
        Broker::reload(self, now, out);
    }
    fn shutdown(&mut self, now: Instant, out: &mut dyn Outbox) {
        Broker::shutdown(self, now, out);
    }
}

/// Whether an `accept` failed because the process (`EMFILE`) or the
/// system (`ENFILE`) has no file descriptor left.
fn out_of_descriptors(error: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(error.raw_os_error(), Some(ENFILE | EMFILE))
}

/// The reserve descriptor: `/dev/null`, which every Unix has.
fn open_spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

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
    /// See [`HIGH_WATER`].
    pub(crate) high_water: usize,
    /// Connections open at once (`max_connections`); `None` for no limit.
    pub(crate) max_connections: Option<usize>,
}

impl Limits {
    /// Output queued above `high_water` stops the connection's input from
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
            high_water: QOS0_OUTPUT_LIMIT
                .saturating_add(max_request_size)
                .saturating_add(HIGH_WATER),
            max_connections: None,
        }
    }
}

/// The loop's whole state.
pub(crate) struct EventLoop<C: Core> {
    poll: Poll,
    events: Events,
    listeners: Vec<Listener>,
    conns: Slab<Connection>,
    /// Connections with output to flush at the end of this turn.
    dirty: Vec<ConnId>,
    /// Connections whose input must be serviced next turn without waiting
    /// for an event: their read budget ran out, or their throttle lifted.
    ready: Vec<ConnId>,
    next_serial: u64,
    limits: Limits,
    shared: Arc<Shared>,
    core: C,
    /// The signal pipe, when the process asked for signals.
    pub(crate) signals: Option<SignalSource>,
    /// Bytes read, written and buffered, for the core's statistics and its
    /// memory limit.
    traffic: Traffic,
    /// Connections refused for `max_connections` since the last one
    /// accepted: the first of a burst is logged as a warning, the rest
    /// only at DEBUG.
    refused: u64,
    /// Connections refused for want of file descriptors since the last one
    /// accepted, logged like `refused`.
    out_of_fds: u64,
    /// A descriptor held in reserve for refusing clients once the process
    /// runs out (see `refuse_with_spare_fd`).
    spare_fd: Option<std::fs::File>,
}

impl<C: Core> EventLoop<C> {
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<Listener>,
        shared: Arc<Shared>,
        limits: Limits,
        core: C,
    ) -> EventLoop<C> {
        EventLoop {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listeners,
            conns: Slab::new(),
            dirty: Vec::new(),
            ready: Vec::new(),
            next_serial: 0,
            limits,
            shared,
            core,
            signals: None,
            traffic: Traffic::default(),
            refused: 0,
            out_of_fds: 0,
            spare_fd: open_spare_fd(),
        }
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
            if let Some(conn) = live(&mut self.conns, id) {
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
            if let Some(index) = self.listeners.iter().position(|l| l.token.0 == key) {
                self.listener_event(index, now);
                continue;
            }
            let to_end = event.is_read_closed() || event.is_error();
            let readable = event.is_readable() || to_end;
            self.conn_event(key, readable, to_end, event.is_writable(), now);
        }
        self.events = events;
        self.accept_due(now);
        self.core.tick(
            now,
            &mut NetOutbox::new(&mut self.conns, &mut self.dirty, &mut self.traffic),
        );
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

    // ----- accepting

    fn listener_event(&mut self, index: usize, now: Instant) {
        let paused = self
            .listeners
            .get(index)
            .and_then(|l| l.retry_at)
            .is_some_and(|at| now < at);
        // While paused the retry timer decides; accepting now would fail the
        // same way, once per new client.
        if !paused {
            self.accept_from(index, now);
        }
    }

    fn accept_due(&mut self, now: Instant) {
        for index in 0..self.listeners.len() {
            let due = self
                .listeners
                .get(index)
                .is_some_and(|l| l.backlog || l.retry_at.is_some_and(|at| at <= now));
            if due {
                self.accept_from(index, now);
            }
        }
    }

    /// Accepts until `WouldBlock` (edge-triggered: no new event would come
    /// for clients left waiting), an error, or the budget runs out.
    fn accept_from(&mut self, index: usize, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get_mut(index) else {
                return;
            };
            listener.backlog = false;
            match listener.accept() {
                Ok((stream, peer)) => {
                    listener.retry_at = None;
                    self.open(stream, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    listener.retry_at = None;
                    return;
                }
                // The client gave up before we got to it; others may wait.
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if out_of_descriptors(&e) && self.spare_fd.is_some() => {
                    // Linux reserves the descriptor before it looks at the
                    // backlog: EMFILE comes even with nobody waiting. Only
                    // an accept made with the reserve freed tells which.
                    if !self.refuse_with_spare_fd(index) {
                        return;
                    }
                }
                Err(e) => {
                    if self.spare_fd.is_none() {
                        self.spare_fd = open_spare_fd();
                    }
                    if listener.retry_at.is_none() {
                        warn!("accept failed, retrying in {ACCEPT_RETRY:?}: {e}");
                    }
                    listener.retry_at = Some(now.checked_add(ACCEPT_RETRY).unwrap_or(now));
                    return;
                }
            }
        }
        if let Some(listener) = self.listeners.get_mut(index) {
            listener.backlog = true;
        }
    }

    /// Out of file descriptors, a waiting client cannot even be accepted to
    /// be told no: it would sit in the backlog, connected as far as its
    /// kernel knows, and never hear back. So the loop keeps one descriptor
    /// in reserve: it gives it up, accepts the client, closes it at once,
    /// and takes the reserve back. The client sees its connection closed;
    /// the clients already in are not disturbed.
    ///
    /// Returns whether a client was refused; false means nobody was waiting
    /// (or the accept failed again), and the caller stops accepting until
    /// the listener's next event.
    fn refuse_with_spare_fd(&mut self, index: usize) -> bool {
        self.spare_fd = None;
        let refused = match self.listeners.get_mut(index).map(|l| l.accept()) {
            Some(Ok((stream, peer))) => {
                self.out_of_fds += 1;
                if self.out_of_fds == 1 {
                    warn!("refusing {peer}: out of file descriptors");
                } else {
                    debug!("refusing {peer}: out of file descriptors");
                }
                drop(stream);
                true
            }
            _ => false,
        };
        self.spare_fd = open_spare_fd();
        refused
    }

    fn open(&mut self, stream: Stream, peer: String, now: Instant) {
        if let Some(max) = self.limits.max_connections {
            if self.conns.len() >= max {
                // As mosquitto does: accept, then close at once. The client
                // sees its connection closed rather than waiting in the
                // backlog, and the clients already in are not disturbed.
                self.refused += 1;
                if self.refused == 1 {
                    warn!("refusing {peer}: max_connections ({max}) reached");
                } else {
                    debug!("refusing {peer}: max_connections ({max}) reached");
                }
                drop(stream);
                return;
            }
        }
        if self.refused > 0 {
            info!(
                "accepting again after refusing {} connection(s) for max_connections",
                self.refused
            );
            self.refused = 0;
        }
        if self.out_of_fds > 0 {
            info!(
                "accepting again after refusing {} connection(s) for want of file descriptors",
                self.out_of_fds
            );
            self.out_of_fds = 0;
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= FIRST_RESERVED {
            warn!("refusing {peer}: no connection token left");
            return;
        }
        let id = ConnId {
            key,
            serial: self.next_serial,
        };
        // At a million connections a second a u64 lasts 584,000 years.
        self.next_serial = self.next_serial.wrapping_add(1);
        let mut conn = Connection::new(id, stream, peer, self.limits.max_request_size);
        let registry = self.poll.registry();
        if let Err(e) = registry.register(&mut conn.stream, Token(key), Interest::READABLE) {
            warn!("refusing {}: cannot register its socket: {e}", conn.peer);
            return;
        }
        debug!("accepted {} as connection {key}:{}", conn.peer, id.serial);
        let conn = entry.insert(conn);
        self.core.open(id, &conn.peer, now);
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
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        if writable {
            conn.mark_dirty(&mut self.dirty);
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
        loop {
            if !self.decode_buffered(key, now) {
                return;
            }
            let Some(conn) = self.conns.get_mut(key) else {
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
                    self.traffic.bytes_received =
                        self.traffic.bytes_received.saturating_add(n as u64);
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
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.stream.wants_write() {
            conn.mark_dirty(&mut self.dirty);
        }
        if let Some(common_name) = conn.stream.take_tls_established() {
            let id = conn.id;
            self.core.tls_established(id, common_name);
        }
    }

    /// Hands every whole packet in the input buffer to the core. Returns
    /// false when the connection must not be read further this turn.
    fn decode_buffered(&mut self, key: usize, now: Instant) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            if conn.closing {
                return false;
            }
            if conn.output.len() >= self.limits.high_water {
                debug!("connection {key}: input paused, output above high water");
                conn.throttled = true;
                return false;
            }
            let id = conn.id;
            // The borrow of `conn` ends with this call, which is what lets
            // the core write into every connection's output, this one's too.
            match conn.decoder.decode(&mut conn.input) {
                Ok(Some(packet)) => {
                    let mut out =
                        NetOutbox::new(&mut self.conns, &mut self.dirty, &mut self.traffic);
                    self.core.packet(id, packet, now, &mut out);
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
        let mut out = NetOutbox::new(&mut self.conns, &mut self.dirty, &mut self.traffic);
        self.core
            .closed(id, CloseReason::Protocol(error), now, &mut out);
        out.close(id);
    }

    /// The socket is gone (peer closed or failed): the core hears of it,
    /// then the connection is removed at once.
    fn lost(&mut self, key: usize, reason: CloseReason, now: Instant) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let id = conn.id;
        debug!("connection {key} ({}): {reason:?}", conn.peer);
        let half_closed = matches!(reason, CloseReason::PeerClosed);
        self.core.closed(
            id,
            reason,
            now,
            &mut NetOutbox::new(&mut self.conns, &mut self.dirty, &mut self.traffic),
        );
        // A peer that only shut down its sending side still reads: replies
        // already queued for it (a CONNACK, a SUBACK) go out with the last
        // flush of this turn. A socket that failed is dropped at once.
        match self.conns.get_mut(key) {
            Some(conn) if half_closed => {
                conn.closing = true;
                conn.mark_dirty(&mut self.dirty);
            }
            _ => self.remove(key),
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            // What was never written is memory no longer held.
            self.traffic.output_buffered = self
                .traffic
                .output_buffered
                .saturating_sub(conn.output.len());
            if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
                debug!("connection {key}: deregister: {e}");
            }
            // Ignored: the peer may have closed first (ENOTCONN).
            let _ = conn.stream.shutdown();
            debug!("closed connection {key}:{} ({})", conn.id.serial, conn.peer);
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
        // the wake-up of the publisher) that nobody downstream needs first. A connection marked during the loop (a
        // will, sent when a failed flush ends a connection) is flushed too.
        // A connection moved to the back (`mark_dirty_last`) is flushed at
        // its last entry only.
        let mut next = 0;
        while let Some(&id) = self.dirty.get(next) {
            let index = next;
            next += 1;
            let Some(conn) = live(&mut self.conns, id) else {
                continue;
            };
            if !conn.flushes_at(index) {
                continue;
            }
            conn.dirty = false;
            let flushed = flush_counted(conn, &mut self.traffic);
            if conn.closing {
                if let Err(e) = flushed {
                    debug!("connection {}: last flush: {e}", id.key);
                }
                self.remove(id.key);
                continue;
            }
            if let Err(e) = flushed {
                self.lost(id.key, CloseReason::Io(e), now);
                continue;
            }
            if let Err(e) = self.update_interest(id.key) {
                self.lost(id.key, CloseReason::Io(e), now);
            }
        }
        self.dirty.clear();
    }

    /// After a flush: asks for `WRITABLE` only while output is left, lifts
    /// the input throttle once output is below the mark, frees idle buffers.
    fn update_interest(&mut self, key: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let wanted = conn.wanted_interest();
        if wanted != conn.interest {
            self.poll
                .registry()
                .reregister(&mut conn.stream, Token(key), wanted)?;
            conn.interest = wanted;
        }
        if conn.throttled && conn.output.len() < self.limits.high_water {
            debug!("connection {key}: input resumed");
            conn.throttled = false;
            conn.mark_ready(&mut self.ready);
        }
        conn.release_output();
        Ok(())
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
        let mut out = NetOutbox::new(&mut self.conns, &mut self.dirty, &mut self.traffic);
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

    // ----- stopping

    /// A clean stop: stop accepting, tell the core (which logs its summary)
    /// and that every connection is going, then keep writing what is
    /// buffered for clients for at most [`SHUTDOWN_FLUSH`].
    fn stop(&mut self, now: Instant) {
        // Dropping a listener closes it (and removes its Unix socket file):
        // a client connecting from now on is refused by the kernel.
        // Closing the descriptor also takes it out of the poll.
        self.listeners.clear();
        self.core.shutdown(
            now,
            &mut NetOutbox::new(&mut self.conns, &mut self.dirty, &mut self.traffic),
        );
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.closing)
            .map(|(_, conn)| conn.id)
            .collect();
        let connections = self.conns.len();
        for id in ids {
            let mut out = NetOutbox::new(&mut self.conns, &mut self.dirty, &mut self.traffic);
            self.core.closed(id, CloseReason::Shutdown, now, &mut out);
        }
        let sent_before = self.traffic.bytes_sent;
        let deadline = now.checked_add(SHUTDOWN_FLUSH).unwrap_or(now);
        self.drain_output(deadline);
        let unsent = self.traffic.output_buffered;
        for key in self.conns.iter().map(|(key, _)| key).collect::<Vec<_>>() {
            self.remove(key);
        }
        self.dirty.clear();
        self.ready.clear();
        info!(
            "event loop stopped: {connections} connection(s) closed, {} bytes flushed, \
             {unsent} bytes left unsent",
            self.traffic.bytes_sent.saturating_sub(sent_before)
        );
    }

    /// Writes buffered output until none is left or `deadline` passes,
    /// polling for writability in between. A connection whose output is all
    /// written, or whose socket fails, is closed at once.
    fn drain_output(&mut self, deadline: Instant) {
        loop {
            let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                let Some(conn) = self.conns.get_mut(key) else {
                    continue;
                };
                match flush_counted(conn, &mut self.traffic) {
                    // A TLS stream may still hold records of its own.
                    Ok(()) if conn.output.is_empty() && !conn.stream.wants_write() => {
                        self.remove(key)
                    }
                    Ok(()) => {
                        let interest = Interest::WRITABLE;
                        if conn.interest != interest {
                            let registry = self.poll.registry();
                            match registry.reregister(&mut conn.stream, Token(key), interest) {
                                Ok(()) => conn.interest = interest,
                                Err(_) => self.remove(key),
                            }
                        }
                    }
                    Err(e) => {
                        debug!("connection {key}: flush at shutdown: {e}");
                        self.remove(key);
                    }
                }
            }
            let now = Instant::now();
            if self.conns.is_empty() || now >= deadline {
                return;
            }
            let timeout = timeout_until(now, deadline);
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("poll while flushing at shutdown: {e}");
                    return;
                }
            }
        }
    }
}

/// Flushes `conn`, counting what was written.
fn flush_counted(conn: &mut Connection, traffic: &mut Traffic) -> io::Result<()> {
    let before = conn.output.len();
    let result = conn.flush();
    let written = before.saturating_sub(conn.output.len());
    traffic.bytes_sent = traffic.bytes_sent.saturating_add(written as u64);
    traffic.output_buffered = traffic.output_buffered.saturating_sub(written);
    result
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
