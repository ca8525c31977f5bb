//! A clean stop: close the listeners, let the core publish its wills and
//! log its summary, close every connection, and keep writing what is
//! buffered for clients for a bounded time.
//!
//! Explained in docs/05-event-loop.md.

use std::io;
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::Interest;

use crate::broker::{CloseReason, ConnId};

use super::core::Core;
use super::event_loop::{timeout_until, EventLoop};

/// How long a clean shutdown keeps trying to write what is buffered for
/// clients. A client that does not read in that time loses the rest: a
/// broker asked to stop must stop.
pub(crate) const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

impl<C: Core> EventLoop<C> {
    /// A clean stop: stop accepting, tell the core (which logs its summary)
    /// and that every connection is going, then keep writing what is
    /// buffered for clients for at most [`SHUTDOWN_FLUSH`].
    pub(super) fn stop(&mut self, now: Instant) {
        // Dropping a listener closes it (and removes its Unix socket file):
        // a client connecting from now on is refused by the kernel.
        // Closing the descriptor also takes it out of the poll.
        self.listeners.clear();
        self.core.shutdown(now, &mut self.conns.outbox());
        let ids: Vec<ConnId> = self
            .conns
            .slab
            .iter()
            .filter(|(_, conn)| !conn.closing)
            .map(|(_, conn)| conn.id)
            .collect();
        let connections = self.conns.len();
        for id in ids {
            let mut out = self.conns.outbox();
            self.core.closed(id, CloseReason::Shutdown, now, &mut out);
        }
        let sent_before = self.conns.traffic.bytes_sent;
        let deadline = now.checked_add(SHUTDOWN_FLUSH).unwrap_or(now);
        self.drain_output(deadline);
        let unsent = self.conns.traffic.output_buffered;
        self.conns.remove_all();
        self.ready.clear();
        info!(
            "event loop stopped: {connections} connection(s) closed, {} bytes flushed, \
             {unsent} bytes left unsent",
            self.conns.traffic.bytes_sent.saturating_sub(sent_before)
        );
    }

    /// Writes buffered output until none is left or `deadline` passes,
    /// polling for writability in between. A connection whose output is all
    /// written, or whose socket fails, is closed at once.
    fn drain_output(&mut self, deadline: Instant) {
        loop {
            let keys: Vec<usize> = self.conns.slab.iter().map(|(key, _)| key).collect();
            for key in keys {
                // A dial still in progress has nobody to flush to yet.
                if self.conns.slab.get(key).is_some_and(|c| c.connecting) {
                    self.conns.remove(key);
                    continue;
                }
                match self.conns.flush(key) {
                    Ok(()) => {
                        let Some(conn) = self.conns.slab.get(key) else {
                            continue;
                        };
                        // A TLS stream may still hold records of its own.
                        let done = conn.output.is_empty() && !conn.stream.wants_write();
                        if done || self.conns.reregister(key, Interest::WRITABLE).is_err() {
                            self.conns.remove(key);
                        }
                    }
                    Err(e) => {
                        debug!("connection {key}: flush at shutdown: {e}");
                        self.conns.remove(key);
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
