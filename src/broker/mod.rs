//! The protocol core: packets in, packets out, timers on its own wheel.
//!
//! The network layer calls [`Broker::open`] when a socket is accepted,
//! [`Broker::packet`] for every packet it decodes, [`Broker::closed`] when a
//! socket goes away, and [`Broker::tick`] when [`Broker::next_deadline`]
//! passes. The core answers through an [`Outbox`]: packets (or bytes
//! already encoded, for a PUBLISH shared by many subscribers) to send to
//! any connection, and connections to close.
//!
//! **Architecture invariant:** this module never touches a socket, never
//! reads the clock (`now` is always passed in, and kept nowhere) and never
//! blocks. That is what lets `tests` in this module drive whole MQTT
//! conversations without a network, and what lets TLS reuse it unchanged, as
//! other transports (WebSocket, a bridge that is itself a client) will.
//!
//! Its state has owners: `clients.rs` (the network connections),
//! `sessions.rs` (`Sessions`: the sessions, the client-id index and the
//! subscription trie) and `retained.rs` (`RetainedStore`: the retained
//! messages and their order and size). The
//! handlers live one idea per file: `connect.rs` (CONNECT, sessions,
//! takeover), `publish.rs` (PUBLISH, the QoS handshakes, routing, retained
//! messages), `subscribe.rs` (SUBSCRIBE and UNSUBSCRIBE) and `drain.rs`
//! (resends written as a connection's output drains, [`Broker::drained`]). The periodic
//! housekeeping on the same timer wheel has its own files: `stats.rs`
//! (`$SOL/broker/` statistics), `memory.rs` (`max_memory`), `retry.rs`
//! (resending overdue QoS 1 and 2 messages), `expiry.rs`
//! (`persistent_client_expiration`) and `log_limits.rs` (the caps on log
//! lines a client can repeat).
//! Explained in docs/03-connect-sessions-keepalive.md, docs/09-timer-wheel.md
//! and docs/13-housekeeping.md.

mod clients;
mod connect;
mod drain;
mod expiry;
mod guard;
mod log_limits;
mod memory;
mod peer;
mod publish;
mod retained;
mod retry;
mod sessions;
mod stats;
mod subscribe;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_drain;
#[cfg(test)]
mod tests_expiry;
#[cfg(test)]
mod tests_housekeeping;
#[cfg(test)]
mod tests_walks;
mod walks;

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use log::{debug, error, info, warn};

use crate::config::Config;
use crate::logtext::shown;
use crate::protocol::{Connack, DecodeError, Decoder, Packet, QoS};
use crate::security::SecurityFiles;
use crate::timer::TimerWheel;
use clients::{Client, ClientState, Clients, Connected, Pending};
use log_limits::{Lines, LogLimits};
use retained::RetainedStore;
use sessions::{SessionSlot, Sessions};

pub use peer::{PeerInfo, TlsInfo, Transport};
pub use retained::Retained;
pub use stats::{Stats, Traffic};

/// Names one connection for its whole life.
///
/// `key` is the network layer's slab key (reused after a close); `serial` is
/// never reused, so a timer or a message meant for a closed connection can
/// never reach a new one that got the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: usize,
    pub serial: u64,
}

/// Where the core's answers go. The network layer implements it by encoding
/// into each connection's output buffer; tests implement it by collecting.
pub trait Outbox {
    /// Queues `packet` for `conn`. A closed or unknown `conn` is ignored.
    fn send(&mut self, conn: ConnId, packet: &Packet);
    /// Queues `bytes`, whole packets already encoded, for `conn`, as
    /// [`Outbox::send`] queues the packets they encode: a closed or unknown
    /// `conn` is ignored. This is how a PUBLISH routed to many subscribers
    /// is encoded once for all of them
    /// ([`SharedPublish`](crate::protocol::SharedPublish)).
    ///
    /// The default decodes the bytes back into packets and sends each one:
    /// right for an outbox that deals in packets (a test's, a harness's),
    /// but slow. An outbox that ends in bytes anyway (the network layer's)
    /// copies them instead.
    fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        let mut decoder = Decoder::client(bytes.len());
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => self.send(conn, &packet),
                Ok(None) if buf.is_empty() => return,
                Ok(None) => {
                    error!("{} bytes of a truncated packet not sent.", buf.len());
                    return;
                }
                Err(e) => {
                    error!("Encoded bytes that do not decode not sent: {e}.");
                    return;
                }
            }
        }
    }
    /// Bytes queued for `conn` and not yet written to its socket.
    fn pending(&self, conn: ConnId) -> usize;
    /// Closes `conn` after what is already queued for it has been written
    /// (best effort, bounded). The core sends it nothing more and expects no
    /// more packets from it.
    fn close(&mut self, conn: ConnId);
    /// Asks the network layer to open a TCP connection to `addr`, as an
    /// MQTT client (for bridges): its bytes are decoded as a broker's
    /// replies (CONNACK first), not as a client's. The id is given at once,
    /// and what is sent to it meanwhile waits; the network layer answers
    /// later, with `established` once the connect completed or
    /// `dial_failed` if it did not. Err when the connect fails at once, or
    /// when this outbox cannot dial (the default: a test's).
    fn dial(&mut self, _addr: std::net::SocketAddr) -> std::io::Result<ConnId> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// What the network layer has read and written so far, and holds in
    /// output buffers now. An outbox that keeps no such counts (a test's)
    /// reports zeros.
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
    /// Asks that what is queued for `conn` be written after what was queued
    /// for every other connection so far. The core queues a publisher's
    /// PUBACK or PUBREC before routing its message, so that the publisher
    /// hears its acknowledgement before any copy of its own message; this
    /// call then lets the subscribers' deliveries still leave first. The
    /// order of packets on one connection never changes. An outbox that
    /// writes nothing itself (a test's) has nothing to reorder.
    fn write_after_others(&mut self, conn: ConnId) {
        let _ = conn;
    }
    /// Asks to hear, through [`Broker::drained`] (the network layer's
    /// `Core::drained`), once the output of `conn` is below
    /// [`QOS0_OUTPUT_LIMIT`] after a write. Asked when the core holds back
    /// output because the connection is backed up (resends that wait in
    /// its window, `drain.rs`). One notification per call: the core asks
    /// again if it stops at the mark again. Cheap enough for every
    /// delivery: a flag on the connection, looked at after its flush. An
    /// outbox that writes nothing (a test's) is never drained by itself;
    /// its test calls `drained`.
    fn notify_when_drained(&mut self, conn: ConnId) {
        let _ = conn;
    }
}

/// Why a connection went away, as the network layer saw it.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer closed the socket (read returned 0).
    PeerClosed,
    /// A socket error.
    Io(std::io::Error),
    /// The bytes did not decode into a valid packet.
    Protocol(DecodeError),
    /// The broker is shutting down.
    Shutdown,
}

/// The most bytes a connection's output buffer may hold for a QoS 0
/// message to still be added: past it, QoS 0 messages to it are dropped
/// (and counted) rather than buffered, since a subscriber that does not
/// read must not make the broker's memory grow without bound. QoS 1 and 2
/// need no such limit: the inflight window and `max_queued_messages`
/// already bound them.
pub const QOS0_OUTPUT_LIMIT: usize = 1024 * 1024;

/// The trie nodes one connection's packets may have the broker visit in
/// one loop turn ([`Broker::take_work`]): well under a millisecond of an
/// optimised build. It stands for time, so an unoptimised build (the
/// tests') gets a fraction of it.
pub const WORK_BUDGET: usize = if cfg!(debug_assertions) {
    2_000
} else {
    10_000
};

/// What the broker's timer wheel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// The connection must have sent CONNECT by now.
    ConnectTimeout(ConnId),
    /// Check whether the connection has been silent for 1.5 x keepalive.
    Keepalive(ConnId),
    /// Publish the `$SOL/broker/` statistics (every `stats_publish_interval`).
    Stats,
    /// Count the memory held for clients and reclaim some if over
    /// `max_memory` (every second).
    Memory,
    /// Resend what is overdue in the connection's inflight window.
    Retry(ConnId),
    /// Remove the persistent session with this key if its client is still
    /// away (`persistent_client_expiration`).
    Expiry(usize),
    /// More sessions whose expiry fired wait to be checked: the next batch
    /// goes in the next turn (`expiry.rs`).
    Expiring,
    /// Write how many log lines were held back (`log_limits.rs`).
    LogSummary,
    /// Look again at retained walks whose subscriber was full (`walks.rs`).
    Walks,
}

/// Limits the core applies, taken from the [`Config`].
#[derive(Clone, Debug)]
struct Settings {
    connect_timeout: Duration,
    max_inflight: usize,
    max_queued: usize,
    /// Zero: overdue messages are only resent on reconnect.
    retry_interval: Duration,
    /// Zero: no limit.
    max_keepalive: u16,
    /// `persistent_client_expiration`; `None`: sessions never expire.
    expiration: Option<Duration>,
}

/// How a connection ended, for the log and for the will.
#[derive(Debug)]
enum Ending {
    /// The client sent DISCONNECT: the will is discarded.
    Disconnect,
    /// The peer closed the socket without DISCONNECT.
    PeerClosed,
    Io(std::io::Error),
    Protocol(String),
    KeepaliveTimeout,
    ConnectTimeout,
    /// Another connection came with the same client id. The session
    /// continues when both connections asked to keep it (clean session 0 on
    /// each); the old will is then not published.
    TakenOver {
        session_continues: bool,
    },
    /// The connection was refused at CONNECT.
    Refused,
    /// The memory was over `max_memory` and this client held more of it
    /// than any other (`memory.rs`): the client that grows memory pays.
    Memory,
    /// The broker is stopping. Wills were published just before, by
    /// [`Broker::publish_wills_at_shutdown`], while every subscriber was
    /// still connected to receive them.
    Shutdown,
}

impl Ending {
    fn publishes_will(&self) -> bool {
        !matches!(
            self,
            Ending::Disconnect
                | Ending::Shutdown
                | Ending::TakenOver {
                    session_continues: true
                }
        )
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Disconnect => f.write_str("disconnected"),
            Ending::PeerClosed => f.write_str("closed its connection"),
            Ending::Io(e) => write!(f, "dropped on a socket error: {e}"),
            Ending::Protocol(why) => write!(f, "disconnected on a protocol error: {why}"),
            Ending::KeepaliveTimeout => f.write_str("has exceeded its keepalive, disconnecting"),
            Ending::ConnectTimeout => f.write_str("sent no CONNECT in time, disconnecting"),
            Ending::TakenOver { .. } => f.write_str("was taken over by a new connection"),
            Ending::Refused => f.write_str("was refused"),
            Ending::Memory => f.write_str("held too much memory over max_memory, disconnecting"),
            Ending::Shutdown => f.write_str("disconnected by shutdown"),
        }
    }
}

/// The protocol core. See the module documentation.
pub struct Broker {
    settings: Settings,
    clients: Clients,
    sessions: Sessions,
    retained: RetainedStore,
    timers: TimerWheel<Timer>,
    /// The instant broker time counts from: sessions keep durations since
    /// it, which are plain data, rather than instants.
    epoch: Instant,
    /// The last `now` turned into broker time, and what it gave: every
    /// packet of one loop turn comes with the same `now`, so the
    /// subtraction is made once a turn rather than once a message.
    clock: Cell<(Instant, Duration)>,
    /// Messages routed so far: each one's number is its place in the order
    /// of arrival, which is the order queued messages are reclaimed in.
    arrivals: u64,
    /// Counter and secret keys behind the client ids the broker generates.
    generated_ids: u64,
    id_keys: RandomState,
    /// Reused between calls so that routing a message allocates nothing.
    matches: Vec<(usize, QoS)>,
    /// The routed message's encodings, one per QoS, shared by all its
    /// receivers; their buffers are reused from one message to the next.
    encodings: publish::Encodings,
    fired: Vec<Timer>,
    stats: Stats,
    /// The `$SOL/broker/` statistics.
    publisher: stats::Publisher,
    /// Accounting for `max_memory`.
    memory: memory::Memory,
    /// Passwords, ACL, and what they allow.
    guard: guard::Guard,
    /// The caps on log lines a client can repeat at will.
    log_limits: LogLimits,
    /// Sessions whose expiry fired, checked a batch per turn.
    expiring: expiry::Expiring,
    /// Retained deliveries in progress.
    walks: walks::Walks,
    /// See [`Broker::take_work`].
    work: usize,
}

impl Broker {
    /// A core that reads the password and ACL files `config` names itself;
    /// one that does not load is logged and leaves it refusing every client.
    pub fn new(config: &Config, now: Instant) -> Broker {
        let files = guard::load_or_deny_all(&config.security);
        Broker::with_security(config, files, now)
    }

    /// A core that applies password and ACL files already loaded from the
    /// ones `config` names, so that they are read once at start.
    pub fn with_security(config: &Config, files: SecurityFiles, now: Instant) -> Broker {
        let mut timers = TimerWheel::new(now);
        let publisher = stats::Publisher::new(config.stats_publish_interval, now);
        if publisher.enabled() {
            // At once: the statistics exist from the start.
            timers.insert(now, Timer::Stats);
        }
        timers.insert(now + memory::CHECK_INTERVAL, Timer::Memory);
        Broker {
            settings: Settings {
                connect_timeout: config.connect_timeout,
                max_inflight: config.max_inflight_messages,
                max_queued: config.max_queued_messages,
                retry_interval: config.retry_interval,
                max_keepalive: config.max_keepalive,
                expiration: config.persistent_client_expiration,
            },
            clients: Clients::default(),
            sessions: Sessions::default(),
            retained: RetainedStore::default(),
            timers,
            epoch: now,
            clock: Cell::new((now, Duration::ZERO)),
            arrivals: 0,
            generated_ids: 0,
            id_keys: RandomState::new(),
            matches: Vec::new(),
            encodings: publish::Encodings::default(),
            fired: Vec::new(),
            stats: Stats::default(),
            publisher,
            memory: memory::Memory::new(config.max_memory),
            guard: guard::Guard::new(&config.security, files),
            log_limits: LogLimits::default(),
            expiring: expiry::Expiring::default(),
            walks: walks::Walks::default(),
            work: 0,
        }
    }

    /// A socket was accepted: arms its connect timeout.
    pub fn open(&mut self, conn: ConnId, peer: &str, now: Instant) {
        let timer = self.timers.insert(
            now + self.settings.connect_timeout,
            Timer::ConnectTimeout(conn),
        );
        let client = Client {
            serial: conn.serial,
            last_seen: now,
            timer: Some(timer),
            state: ClientState::AwaitingConnect(Box::new(Pending {
                peer: peer.to_string(),
                tls: None,
            })),
        };
        if let Some(old) = self.clients.insert(conn.key, client) {
            warn!(
                "Connection key {} reused before its close was reported.",
                conn.key
            );
            if let Some(timer) = old.timer {
                self.timers.cancel(timer);
            }
        }
    }

    /// One decoded packet from `conn`. Packets from a connection the core
    /// has already closed are ignored.
    pub fn packet(&mut self, conn: ConnId, packet: Packet, now: Instant, out: &mut dyn Outbox) {
        let Some(client) = self.clients.get_mut(conn) else {
            return;
        };
        client.last_seen = now;
        let session = match &client.state {
            ClientState::AwaitingConnect(_) => {
                match packet {
                    Packet::Connect(connect) => self.handle_connect(conn, *connect, now, out),
                    // The decoder refuses anything but CONNECT first; this is
                    // the second line of defence ([MQTT-3.1.0-1]).
                    other => {
                        let why = format!("{} before CONNECT", other.name());
                        self.violation(conn, why, now, out);
                    }
                }
                return;
            }
            ClientState::Connected(connected) => connected.session,
        };
        match packet {
            Packet::Publish(publish) => self.handle_publish(conn, session, publish, now, out),
            Packet::Puback(id) => self.handle_puback(conn, session, id, now, out),
            Packet::Pubrec(id) => self.handle_pubrec(conn, session, id, now, out),
            Packet::Pubrel(id) => self.handle_pubrel(conn, session, id, out),
            Packet::Pubcomp(id) => self.handle_pubcomp(conn, session, id, now, out),
            Packet::Subscribe(subscribe) => {
                self.handle_subscribe(conn, session, subscribe, now, out);
            }
            Packet::Unsubscribe(unsub) => self.handle_unsubscribe(conn, session, unsub, out),
            Packet::Pingreq => out.send(conn, &Packet::Pingresp),
            Packet::Disconnect => self.end_connection(conn, Ending::Disconnect, now, out),
            // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
            Packet::Connect(_) => self.violation(conn, "second CONNECT".to_string(), now, out),
            // Server-to-client packets; the decoder refuses them too.
            other => {
                let why = format!("{} from a client", other.name());
                self.violation(conn, why, now, out);
            }
        }
    }

    /// The connection is gone, or must go: publishes the will unless the
    /// client sent DISCONNECT. A CONNECT with an unsupported protocol level
    /// first gets its CONNACK 0x01.
    pub fn closed(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let ending = match reason {
            CloseReason::PeerClosed => Ending::PeerClosed,
            CloseReason::Io(e) => Ending::Io(e),
            CloseReason::Shutdown => Ending::Shutdown,
            CloseReason::Protocol(error) => {
                let awaiting_connect = matches!(
                    self.clients.get(conn).map(|c| &c.state),
                    Some(ClientState::AwaitingConnect(_))
                );
                if let (true, Some(code)) = (awaiting_connect, error.connack_code()) {
                    let connack = Connack {
                        session_present: false,
                        code,
                    };
                    out.send(conn, &Packet::Connack(connack));
                }
                Ending::Protocol(error.to_string())
            }
        };
        self.end_connection(conn, ending, now, out);
    }

    /// The earliest instant at which [`Broker::tick`] has work to do: at
    /// once (the broker's start, long past) while a retained walk waits
    /// for nothing but a turn.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.walks.runnable() {
            return Some(self.epoch);
        }
        self.timers.next_deadline()
    }

    /// The trie nodes the packets handled since the last call had the
    /// broker visit (routing, a SUBSCRIBE's first retained walks); the
    /// call resets it. Past [`WORK_BUDGET`] the loop leaves a connection's
    /// other packets for the next turn.
    pub fn take_work(&mut self) -> usize {
        std::mem::take(&mut self.work)
    }

    /// Retained walks in progress, a filter each.
    pub fn retained_walks(&self) -> usize {
        self.walks.len()
    }

    /// Runs every timer due at `now`.
    pub fn tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.expire(now, &mut fired);
        for timer in fired.drain(..) {
            match timer {
                Timer::ConnectTimeout(conn) => self.connect_timeout(conn, now, out),
                Timer::Keepalive(conn) => self.keepalive_check(conn, now, out),
                Timer::Stats => self.publish_stats(now, out),
                Timer::Memory => self.periodic_memory_check(now, out),
                Timer::Retry(conn) => self.retry_check(conn, now, out),
                Timer::Expiry(session) => self.expiry_due(session),
                Timer::Expiring => self.expiring.fired(),
                Timer::LogSummary => self.log_summary(now),
                Timer::Walks => self.walks_timer(),
            }
        }
        self.fired = fired;
        self.expire_due_sessions(now);
        self.walk_retained(now, out);
        // What timers, expiries and walks cost is the turn's, no connection's.
        self.work = 0;
    }

    /// The counters kept so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Open network connections, CONNECT sent or not.
    pub fn connection_count(&self) -> usize {
        self.clients.len()
    }

    /// Sessions held, online and offline.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Subscriptions held across all sessions.
    pub fn subscription_count(&self) -> usize {
        self.sessions.subscription_count()
    }

    /// Retained messages held.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Timers pending for connections and sessions (connect timeout,
    /// keepalive, resend, session expiry): every timer but the
    /// housekeeping ones. Zero once no client and no persistent session
    /// is left.
    pub fn client_timer_count(&self) -> usize {
        let periodic = 1
            + usize::from(self.publisher.enabled())
            + usize::from(self.log_limits.summary_armed())
            + usize::from(self.expiring.armed());
        self.timers.len().saturating_sub(periodic)
    }

    fn connect_timeout(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        let Some(client) = self.clients.get_mut(conn) else {
            return;
        };
        client.timer = None;
        if let ClientState::AwaitingConnect(_) = client.state {
            self.end_connection(conn, Ending::ConnectTimeout, now, out);
        }
    }

    /// Keepalive uses one timer per connection that is not moved on every
    /// packet: when it fires, it looks at when the client was last heard
    /// from and either closes the connection or re-arms for the remainder.
    fn keepalive_check(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        let Some(client) = self.clients.get_mut(conn) else {
            return;
        };
        client.timer = None;
        let ClientState::Connected(connected) = &client.state else {
            return;
        };
        let deadline = client.last_seen + keepalive_grace(connected.keep_alive);
        if now >= deadline {
            self.end_connection(conn, Ending::KeepaliveTimeout, now, out);
        } else {
            client.timer = Some(self.timers.insert(deadline, Timer::Keepalive(conn)));
        }
    }

    /// Closes `conn` for breaking the protocol; its will is published.
    fn violation(&mut self, conn: ConnId, why: String, now: Instant, out: &mut dyn Outbox) {
        self.end_connection(conn, Ending::Protocol(why), now, out);
    }

    /// Closes `conn` and forgets it: cancels its timer, detaches its
    /// session (ending it if it was a clean session) and publishes its will
    /// if `ending` calls for it. Every path that closes a connection comes
    /// through here, so that nothing it held is left behind. The close is
    /// asked for even of a connection the core has forgotten already: the
    /// network layer may still hold its socket.
    fn end_connection(&mut self, conn: ConnId, ending: Ending, now: Instant, out: &mut dyn Outbox) {
        out.close(conn);
        let Some(client) = self.clients.remove(conn) else {
            return;
        };
        if let Some(timer) = client.timer {
            self.timers.cancel(timer);
        }
        let connected = match client.state {
            ClientState::Connected(connected) => connected,
            ClientState::AwaitingConnect(pending) => {
                debug!("Connection from {} {}.", pending.peer, ending);
                return;
            }
        };
        if self.may_log(Lines::Connections, now) {
            info!("Client {} {}.", shown(&connected.client_id), ending);
        }
        self.stats.clients_connected = self.stats.clients_connected.saturating_sub(1);
        // The session holds the client's username: taken before a clean
        // session goes, for the will's ACL check (wills are rare).
        let wants_will = connected.will.is_some();
        let (clean, username) = match self.sessions.get_mut(connected.session) {
            Some(slot) => {
                slot.conn = None;
                if let Some(timer) = slot.retry.take() {
                    self.timers.cancel(timer);
                }
                let username = slot.username.clone().filter(|_| wants_will);
                (slot.session.clean, username)
            }
            None => (false, None),
        };
        if clean {
            self.remove_session(connected.session);
        } else {
            self.session_went_offline(connected.session, now);
        }
        let will = connected.will.map(|will| *will).filter(|will| {
            ending.publishes_will()
                && self
                    .guard
                    .may_publish(&connected.client_id, username.as_deref(), &will.topic)
        });
        if let Some(will) = will {
            debug!(
                "Publishing the will of {} on {}.",
                shown(&connected.client_id),
                shown(will.topic.as_str())
            );
            self.publish_will(will, connected.session, now, out);
        }
    }

    /// The broker is stopping: every connected client that set a will is
    /// about to lose its connection without sending DISCONNECT, so its will
    /// is published now, as mosquitto does, before any connection is
    /// closed, so that every subscriber still connected receives it in the
    /// final flush, and a retained will is stored. Each will is taken, so
    /// the closing that follows cannot publish it twice.
    pub(super) fn publish_wills_at_shutdown(&mut self, now: Instant, out: &mut dyn Outbox) {
        let mut wills = Vec::new();
        for client in self.clients.iter_mut() {
            let ClientState::Connected(connected) = &mut client.state else {
                continue;
            };
            let Some(will) = connected.will.take() else {
                continue;
            };
            let username = self
                .sessions
                .identity(connected.session)
                .and_then(|(_, username)| username.map(str::to_string));
            let session = connected.session;
            wills.push((Arc::clone(&connected.client_id), session, username, *will));
        }
        for (client_id, session, username, will) in wills {
            if self
                .guard
                .may_publish(&client_id, username.as_deref(), &will.topic)
            {
                debug!(
                    "Publishing the will of {} on {} at shutdown.",
                    shown(&client_id),
                    shown(will.topic.as_str())
                );
                self.publish_will(will, session, now, out);
            }
        }
    }

    /// Ends a session: its subscriptions leave the trie, its id is free,
    /// its resend check and its expiry are cancelled.
    fn remove_session(&mut self, key: usize) {
        if let Some(slot) = self.sessions.remove(key) {
            self.forget_timer(slot);
        }
    }

    /// Cancels the resend check and the expiry of a session that is gone.
    fn forget_timer(&mut self, slot: SessionSlot) {
        for timer in [slot.retry, slot.expiry].into_iter().flatten() {
            self.timers.cancel(timer);
        }
    }

    /// `now` in broker time, the clock sessions keep: a duration since the
    /// broker started.
    #[inline]
    fn broker_time(&self, now: Instant) -> Duration {
        let (last, time) = self.clock.get();
        if now == last {
            return time;
        }
        let time = now.saturating_duration_since(self.epoch);
        self.clock.set((now, time));
        time
    }

    /// The number of the next message to arrive ([`Broker::arrivals`]).
    fn next_arrival(&mut self) -> u64 {
        self.arrivals = self.arrivals.wrapping_add(1);
        self.arrivals
    }
}

/// A client is closed after 1.5 times its keepalive of silence
/// ([MQTT-3.1.2-24]).
fn keepalive_grace(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}
