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
//! returns. `max_connections` is kept at accept time: one connection too
//! many is accepted and closed at once, and the core never hears of it.
//!
//! # Who owns what
//!
//! - `mod.rs`: [`Server`] and [`ServerHandle`], the API `main` and the tests
//!   use, and the reserved tokens.
//! - `listener.rs`: binding TCP and Unix listeners, accepting, and removing
//!   the Unix socket file.
//! - `stream.rs`: one transport type over TCP, Unix sockets and TLS.
//! - `tls.rs`: the rustls configuration from `sol.conf`, and the
//!   non-blocking TLS stream; `x509.rs` reads a client certificate's CN.
//! - `conn.rs`: a connection's socket, decoder and buffers.
//! - `outbox.rs`: the [`Outbox`](crate::broker::Outbox) the core writes into.
//! - `signals.rs`: `SIGINT`, `SIGTERM` and `SIGHUP` as poll events.
//! - `event_loop.rs`: the loop and its policy.
//!
//! **Architecture Invariant:** nothing here knows MQTT beyond "bytes become
//! packets": sessions, topics and the meaning of packets are the core's.
//!
//! Explained in docs/05-event-loop.md and docs/10-backpressure-and-limits.md.

mod conn;
mod event_loop;
mod listener;
mod outbox;
mod signals;
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
use mio::{Interest, Poll, Token, Waker};

use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::security::SecurityFiles;

use event_loop::{Core, EventLoop, Limits};
use listener::{bind_tcp, bind_unix, ListenSocket, Listener};
use signals::SignalSource;
use tls::TlsAcceptor;

/// `mio` keeps `usize::MAX` for itself; the few tokens below it name the
/// listeners, the waker and the signal pipe. Every smaller token is a
/// connection's slab key.
const WAKER: Token = Token(usize::MAX - 1);
const TCP_LISTENER: Token = Token(usize::MAX - 2);
const UNIX_LISTENER: Token = Token(usize::MAX - 3);
const TLS_LISTENER: Token = Token(usize::MAX - 4);
const SIGNALS: Token = Token(usize::MAX - 5);
/// Slab keys from here up would collide with the tokens above.
const FIRST_RESERVED: usize = usize::MAX - 5;

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

/// Reads every file the configuration names (the password and ACL files,
/// the certificates and key of the TLS listener) and reports each problem
/// against the config line that named the file. [`Server::bind`] does the
/// same; this is for `--test-config`.
pub fn check_files(config: &Config) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    if let Err(found) = SecurityFiles::load(&config.security) {
        errors.extend(found);
    }
    if config.security.tls_port.is_some() {
        if let Err(found) = tls::server_config(&config.security) {
            errors.extend(found);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Config file errors, as the one error `bind` returns.
fn invalid_config(errors: Vec<ConfigError>) -> io::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    io::Error::new(io::ErrorKind::InvalidInput, lines.join("; "))
}

impl Server {
    /// Binds every listener the config asks for (TCP, Unix socket, TLS),
    /// after reading every file it names: a password, ACL, certificate or
    /// key file that does not load is an `InvalidInput` error naming it.
    pub fn bind(config: &Config) -> io::Result<Server> {
        let security = SecurityFiles::load(&config.security).map_err(invalid_config)?;
        let tls = match config.security.tls_port {
            Some(port) => Some((
                port,
                TlsAcceptor::new(&config.security).map_err(invalid_config)?,
            )),
            None => None,
        };
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        if config.tcp_enabled {
            let mut tcp = bind_tcp(&config.ip_address, config.ip_port, config.tcp_backlog)?;
            poll.registry()
                .register(&mut tcp, TCP_LISTENER, Interest::READABLE)?;
            listeners.push(Listener::new(TCP_LISTENER, ListenSocket::Tcp(tcp)));
        }
        if let Some(path) = &config.unix_socket {
            let (mut unix, file) = bind_unix(path, config.tcp_backlog)?;
            poll.registry()
                .register(&mut unix, UNIX_LISTENER, Interest::READABLE)?;
            listeners.push(Listener::new(UNIX_LISTENER, ListenSocket::Unix(unix, file)));
        }
        if let Some((port, acceptor)) = tls {
            let mut tcp = bind_tcp(&config.ip_address, port, config.tcp_backlog)?;
            poll.registry()
                .register(&mut tcp, TLS_LISTENER, Interest::READABLE)?;
            let mut listener = Listener::new(TLS_LISTENER, ListenSocket::Tcp(tcp));
            listener.tls = Some(acceptor);
            listeners.push(listener);
        }
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listener configured: enable TCP or set unix_socket",
            ));
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

    /// The plain TCP listener's address (with the real port when `ip_port`
    /// was 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.listeners.iter().find_map(|l| match &l.socket {
            ListenSocket::Tcp(tcp) if l.tls.is_none() => tcp.local_addr().ok(),
            _ => None,
        })
    }

    /// The TLS listener's address (with the real port when `tls_port` was
    /// 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.listeners.iter().find_map(|l| match &l.socket {
            ListenSocket::Tcp(tcp) if l.tls.is_some() => tcp.local_addr().ok(),
            _ => None,
        })
    }

    /// The Unix socket listener's path.
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
        let mut event_loop = EventLoop::new(self.poll, self.listeners, self.shared, limits, core);
        event_loop.signals = self.signals;
        event_loop.run()
    }
}
