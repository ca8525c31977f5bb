//! Accepting clients: draining a listener's backlog within a budget,
//! pausing a listener that fails (out of file descriptors, most often),
//! refusing a client past the broker's `max_connections` or its listener's
//! own, and handing the rest to
//! [`Connections`](super::connections::Connections) and the core.
//!
//! What it must not know: what a connection carries once it is accepted.
//!
//! Explained in docs/05-event-loop.md and docs/10-backpressure-and-limits.md.

use std::io;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Interest;

use super::conn::Role;
use super::core::Core;
use super::event_loop::EventLoop;
use super::listener::Seat;
use super::stream::Stream;

/// The most clients accepted from one listener in one turn, for the same
/// reason: a connection storm must not starve the clients already in.
pub(super) const ACCEPT_BUDGET: usize = 256;

/// How long accepting pauses after an error such as `EMFILE`. The waiting
/// clients stay in the kernel's backlog meanwhile.
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Whether an `accept` failed because the process (`EMFILE`) or the
/// system (`ENFILE`) has no file descriptor left.
fn out_of_descriptors(error: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(error.raw_os_error(), Some(ENFILE | EMFILE))
}

/// The reserve descriptor: `/dev/null`, which every Unix has.
pub(super) fn open_spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl<C: Core> EventLoop<C> {
    pub(super) fn listener_event(&mut self, index: usize, now: Instant) {
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

    pub(super) fn accept_due(&mut self, now: Instant) {
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
                    match listener.seat() {
                        Some(seat) => self.open(stream, peer, seat, now),
                        None => {
                            let max = listener.max_connections.unwrap_or(0);
                            self.refuse(stream, &peer, "the listener's max_connections", max);
                        }
                    }
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

    /// Closes a client just accepted, as mosquitto does past a
    /// `max_connections`: the client sees its connection closed rather than
    /// waiting in the backlog, and the clients already in are not disturbed.
    fn refuse(&mut self, stream: Stream, peer: &str, limit: &str, max: usize) {
        self.refused += 1;
        if self.refused == 1 {
            warn!("refusing {peer}: {limit} ({max}) reached");
        } else {
            debug!("refusing {peer}: {limit} ({max}) reached");
        }
        drop(stream);
    }

    fn open(&mut self, stream: Stream, peer: String, seat: Seat, now: Instant) {
        if let Some(max) = self.limits.max_connections {
            if self.conns.len() >= max {
                return self.refuse(stream, &peer, "max_connections", max);
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
        match self
            .conns
            .insert(stream, &peer, Role::Server, Interest::READABLE)
        {
            Ok(conn) => {
                conn.seat = Some(seat);
                let id = conn.id;
                debug!("accepted {peer} as connection {}:{}", id.key, id.serial);
                self.core.open(id, &conn.peer, now);
                // A TLS connection carries MQTT only after its handshake.
                if matches!(conn.stream, Stream::Plain(_)) {
                    self.core.established(id, conn.peer_info(None));
                }
            }
            Err(e) => warn!("refusing {peer}: {e}"),
        }
    }
}
