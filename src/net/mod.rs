//! The event loop: listeners, connections, the clock. The only module that
//! touches `mio`, sockets or `Instant::now()`.
//!
//! # One turn of the loop
//!
//! 1. **Poll.** Sleep until a socket is ready, the broker's next deadline
//!    (rounded up to the millisecond, so a deadline 0.3 ms away does not
//!    make the loop spin), or an accept retry is due. Do not sleep at all
//!    while a connection is in the *ready list*. Then read the clock once:
//!    that `now` is what the whole turn passes to the broker.
//! 2. **Read, decode, hand to the core.** `mio` is edge-triggered: a
//!    readiness event is reported once, so each readable socket is read
//!    until it would block, and every whole packet is given to
//!    [`Broker::packet`](crate::broker::Broker::packet) as soon as it is
//!    decoded. Two limits keep one client from hurting the others: at most
//!    256 KiB are read from a connection per turn (the rest waits in the
//!    ready list for the next turn), and a connection whose output buffer is
//!    above 1 MiB is not read at all until that drains.
//! 3. **Timers.** [`Broker::tick`](crate::broker::Broker::tick) with the
//!    same `now`.
//! 4. **One flush per connection.** The core's answers were only encoded
//!    into output buffers; now every connection that got some is written to
//!    once. A connection the core closed goes away after that last write.
//!
//! Every read and write is counted in a [`Traffic`](crate::broker::Traffic)
//! (bytes in, bytes out, bytes waiting in output buffers) that the core reads
//! through its `Outbox`, for its statistics and its `max_memory`.
//!
//! # Between turns
//!
//! Before each poll the loop carries out what a signal (`signals.rs`) or a
//! [`ServerHandle`] asked for. A **reload** reopens the log file and calls
//! the core's `reload`. A **stop** closes the listeners, lets the core log
//! its summary, closes every connection, and keeps writing buffered output
//! for at most two seconds (`SHUTDOWN_FLUSH`) before [`Server::run`]
//! returns. `max_connections`, the broker's and each listener's own, is
//! kept at accept time: one connection too many is accepted and closed at
//! once, and the core never hears of it.
//!
//! # Who owns what
//!
//! - `mod.rs`: [`Server`] and [`ServerHandle`], the API `main` and the tests
//!   use, and the reserved tokens (the waker, the signals, one per listener).
//! - `listener.rs`: the listener table built from the config
//!   (`listener_specs`: the default listeners, then the `listener` blocks),
//!   binding TCP and Unix listeners, accepting, each listener's seats for
//!   its own `max_connections`, and removing the Unix socket file.
//! - `stream.rs`: one transport type: a TCP or Unix socket with its layers
//!   (none, or TLS).
//! - `tls.rs`: the rustls configuration from `sol.conf`, and the
//!   non-blocking TLS stream over any socket, server or client side;
//!   `x509.rs` reads a certificate's CN.
//! - `conn.rs`: a connection's socket, role (accepted or dialled), decoder
//!   and buffers.
//! - `connections.rs`: every connection, the dirty list and the traffic
//!   counts, and the one way to get an outbox.
//! - `outbox.rs`: the [`Outbox`](crate::broker::Outbox) the core writes into.
//! - `core.rs`: what the loop needs from the core, and the [`Broker`]'s
//!   answer to it.
//! - `event_loop.rs`: the turn and its policy (reading, decoding, flushing),
//!   reloads and signals; `accept.rs`: accepting clients; `dial.rs`:
//!   connections the core dials out; `stop.rs`: a clean stop.
//! - `signals.rs`: `SIGINT`, `SIGTERM` and `SIGHUP` as poll events.
//!
//! # Telling the core about a connection
//!
//! An accepted connection is *opened* at once (`Core::open`:
//! the core arms its connect timeout), and *established* once it carries
//! MQTT: at once for a plain socket, after the handshake for TLS. The
//! [`PeerInfo`](crate::broker::PeerInfo) it gets says where the peer is,
//! over which socket, and what TLS proved. A connection the core dialled
//! ([`Outbox::dial`](crate::broker::Outbox::dial)) is never opened: it is
//! established when its connect completes, or reported failed.
//!
//! **Architecture Invariant:** nothing here knows MQTT beyond "bytes become
//! packets": sessions, topics and the meaning of packets are the core's.
//!
//! Explained in docs/05-event-loop.md and docs/10-backpressure-and-limits.md.

mod accept;
mod conn;
mod connections;
mod core;
mod dial;
mod event_loop;
mod listener;
mod outbox;
mod signals;
mod stop;
mod stream;
#[cfg(test)]
mod tests;
mod tls;
mod x509;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use log::warn;
use mio::{Poll, Token, Waker};

use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::security::SecurityFiles;

use self::core::Core;
use event_loop::{EventLoop, Limits};
pub use listener::ListenerAddr;
use listener::{listener_specs, ListenSocket, Listener, ListenerSpec};
use signals::SignalSource;
use tls::TlsAcceptor;

/// `mio` keeps `usize::MAX` for itself; the tokens below it name the waker,
/// the signal pipe and then the listeners, one each, counting down from
/// [`FIRST_LISTENER`] in the order of the listener table. Every smaller
/// token is a connection's slab key.
const WAKER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const FIRST_LISTENER: usize = usize::MAX - 3;

/// The token of the listener at `index` in the table.
fn listener_token(index: usize) -> Token {
    Token(FIRST_LISTENER.saturating_sub(index))
}

/// Which listener `token` names, if it names one of `count` listeners.
fn listener_index(token: Token, count: usize) -> Option<usize> {
    FIRST_LISTENER
        .checked_sub(token.0)
        .filter(|&index| index < count)
}

/// Slab keys from here up would collide with the reserved tokens of the
/// waker, the signals and `listeners` listeners.
fn first_reserved(listeners: usize) -> usize {
    (FIRST_LISTENER + 1).saturating_sub(listeners)
}

/// What the loop and its handles share.
struct Shared {
    stop: AtomicBool,
    waker: Waker,
    /// A reload was asked for (`SIGHUP` or [`ServerHandle::reload`]) and
    /// has not run yet.
    reload: AtomicBool,
}

impl Shared {
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether a reload was asked for since the last call.
    fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::AcqRel)
    }
}

/// A bound broker, ready to run.
pub struct Server {
    config: Config,
    /// The password and ACL files, read by [`Server::bind`] and handed to
    /// the core by [`Server::run`], so they are read once.
    security: SecurityFiles,
    poll: Poll,
    listeners: Vec<Listener>,
    shared: Arc<Shared>,
    /// Set by [`Server::catch_signals`].
    signals: Option<SignalSource>,
}

/// Stops a running [`Server`] from another thread. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Asks the loop to stop; [`Server::run`] then returns `Ok(())`.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Err(e) = self.shared.waker.wake() {
            warn!("waking the event loop for shutdown: {e}");
        }
    }

    /// Asks the loop to do what `SIGHUP` does: reopen the log file, and
    /// re-read the password file, the ACL file and the TLS certificate
    /// files. Whatever fails to load keeps what was loaded before. Runs
    /// between two turns of the loop, soon after.
    pub fn reload(&self) {
        self.shared.reload.store(true, Ordering::Release);
        if let Err(e) = self.shared.waker.wake() {
            warn!("waking the event loop for reload: {e}");
        }
    }
}

/// What the files a configuration names held, read once by
/// [`check_files`]: the password and ACL files, and each TLS listener's
/// certificates and key. [`Server::bind_with`] starts from it, so the `sol`
/// binary, which checks the files to report their errors, never reads them
/// a second time.
pub struct LoadedFiles {
    security: SecurityFiles,
    /// The listener table, each TLS entry with the acceptor built from its
    /// files.
    listeners: Vec<(ListenerSpec, Option<TlsAcceptor>)>,
}

/// Reads every file the configuration names (the password and ACL files,
/// the certificates and key of every TLS listener, flat or block) and
/// reports each problem against the config line that named the file; what
/// loaded is kept for [`Server::bind_with`].
pub fn check_files(config: &Config) -> Result<LoadedFiles, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let security = SecurityFiles::load(&config.security)
        .map_err(|found| errors.extend(found))
        .ok();
    let mut listeners = Vec::new();
    for spec in listener_specs(config) {
        let acceptor = match &spec.tls {
            Some(tls) => match TlsAcceptor::new(tls) {
                Ok(acceptor) => Some(acceptor),
                Err(found) => {
                    errors.extend(found);
                    continue;
                }
            },
            None => None,
        };
        listeners.push((spec, acceptor));
    }
    match security {
        Some(security) if errors.is_empty() => Ok(LoadedFiles {
            security,
            listeners,
        }),
        _ => Err(errors),
    }
}

/// Config file errors, as the one error `bind` returns.
fn invalid_config(errors: Vec<ConfigError>) -> io::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    io::Error::new(io::ErrorKind::InvalidInput, lines.join("; "))
}

impl Server {
    /// Binds every listener the config asks for (TCP, Unix socket, TLS,
    /// then the `listener` blocks: the table of `listener_specs`), after
    /// reading every file it names: a password, ACL, certificate or key
    /// file that does not load is an `InvalidInput` error naming it.
    pub fn bind(config: &Config) -> io::Result<Server> {
        let files = check_files(config).map_err(invalid_config)?;
        Server::bind_with(config, files)
    }

    /// [`Server::bind`] with the files already read by [`check_files`] for
    /// this same `config`: nothing is read again.
    pub fn bind_with(config: &Config, files: LoadedFiles) -> io::Result<Server> {
        let LoadedFiles {
            security,
            listeners: specs,
        } = files;
        if specs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listener configured: enable TCP or set unix_socket",
            ));
        }
        let poll = Poll::new()?;
        let mut listeners = Vec::with_capacity(specs.len());
        for (index, (spec, tls)) in specs.into_iter().enumerate() {
            let mut listener = Listener::bind(&spec, listener_token(index), tls)?;
            listener.register(poll.registry())?;
            listeners.push(listener);
        }
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Server {
            config: config.clone(),
            security,
            poll,
            listeners,
            shared: Arc::new(Shared {
                stop: AtomicBool::new(false),
                waker,
                reload: AtomicBool::new(false),
            }),
            signals: None,
        })
    }

    /// Makes `SIGINT` and `SIGTERM` stop the loop cleanly and `SIGHUP`
    /// reload, for the whole process. The `sol` binary calls this; tests
    /// that run brokers on threads use a [`ServerHandle`] instead.
    pub fn catch_signals(&mut self) -> io::Result<()> {
        if self.signals.is_none() {
            self.signals = Some(SignalSource::register(self.poll.registry(), SIGNALS)?);
        }
        Ok(())
    }

    /// The first plain TCP listener's address (with the real port when
    /// `ip_port` was 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.listeners.iter().find_map(|l| match &l.socket {
            ListenSocket::Tcp(tcp) if l.tls.is_none() => tcp.local_addr().ok(),
            _ => None,
        })
    }

    /// The first TLS listener's address (with the real port when
    /// `tls_port` was 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.listeners.iter().find_map(|l| match &l.socket {
            ListenSocket::Tcp(tcp) if l.tls.is_some() => tcp.local_addr().ok(),
            _ => None,
        })
    }

    /// Every bound listener, in the order of the listener table: the
    /// default ones, then the `listener` blocks in file order; with the
    /// real port of each listener asked for on port 0.
    pub fn listener_addrs(&self) -> Vec<ListenerAddr> {
        self.listeners.iter().filter_map(Listener::addr).collect()
    }

    /// The first Unix socket listener's path.
    pub fn unix_path(&self) -> Option<&Path> {
        self.listeners.iter().find_map(|l| match &l.socket {
            ListenSocket::Unix(_, file) => Some(file.path()),
            ListenSocket::Tcp(_) => None,
        })
    }

    /// A handle that can stop or reload the loop from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the event loop until shutdown. The Unix socket file is removed
    /// when this returns.
    pub fn run(mut self) -> io::Result<()> {
        let security = std::mem::take(&mut self.security);
        let broker = Broker::with_security(&self.config, security, Instant::now());
        let mut limits = Limits::new(self.config.max_request_size);
        limits.max_connections = self.config.max_connections;
        self.run_with(broker, limits)
    }

    /// Runs the loop around any core: the loop's own tests use a scripted one.
    fn run_with<C: Core>(self, core: C, limits: Limits) -> io::Result<()> {
        let mut event_loop = EventLoop::new(self.poll, self.listeners, self.shared, limits, core)?;
        event_loop.signals = self.signals;
        event_loop.run()
    }
}
