//! CONNECT: validating the client id, taking over a connected id, attaching
//! the session, and resuming what a persistent session left in flight
//! (sections 3.1, 3.2 and 4.1).
//! Explained in docs/03-connect-sessions-keepalive.md.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Instant;

use log::info;

use super::{Broker, ClientState, ConnId, Connected, Ending, Lines, Outbox, Timer};
use crate::logtext::shown;
use crate::protocol::{Connack, Connect, ConnectReturnCode, Packet, Protocol};
use crate::session::Session;

/// MQTT 3.1 limited client ids to 23 bytes; mosquitto still enforces that
/// for 3.1 clients. MQTT 3.1.1 lets the server accept longer ids, and we do.
const MQTT31_MAX_CLIENT_ID: usize = 23;

impl Broker {
    pub(super) fn handle_connect(
        &mut self,
        conn: ConnId,
        connect: Connect,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(client_id) = self.choose_client_id(&connect) else {
            self.refuse(conn, ConnectReturnCode::IdentifierRejected, now, out);
            return;
        };
        // [MQTT-3.1.4-5]: credentials are checked before the client may
        // touch any session, an existing one with its id included.
        let username = match self.authenticate(conn, &connect, &client_id, now) {
            Ok(username) => username,
            Err(code) => {
                self.refuse(conn, code, now, out);
                return;
            }
        };
        // As mosquitto does, the keepalive is checked once the credentials
        // are: a client with bad credentials hears about those first.
        let Some(keep_alive) = self.allowed_keepalive(connect.keep_alive) else {
            if self.may_log(Lines::Refusals, now) {
                info!(
                    "Refusing \"{}\": keepalive {} s is above max_keepalive.",
                    shown(&client_id),
                    connect.keep_alive
                );
            }
            self.refuse(conn, ConnectReturnCode::IdentifierRejected, now, out);
            return;
        };

        // At the memory limit a new persistent session, which would stay
        // and store for a client that may never come back, is refused as
        // "server unavailable"; a clean one goes with its connection, and
        // one that exists already holds what it holds.
        let new_session = self.sessions.key_of(&client_id).is_none();
        if !connect.clean_session && new_session && self.memory_at_limit() {
            info!("Refusing {client_id:?}: a new persistent session at max_memory.");
            self.refuse(conn, ConnectReturnCode::ServerUnavailable, now, out);
            return;
        }

        // [MQTT-3.1.4-2]: an id already connected takes the session over;
        // the old connection is closed. Its will is published unless the
        // session goes on (both connections asked to keep it): then the
        // client came back rather than failed, and mosquitto keeps the
        // will back too, as MQTT 5 does (a will goes when its session ends).
        // Read to the letter, MQTT 3.1.1's [MQTT-3.1.2-8] would publish it;
        // the README lists this among the deliberate choices.
        let taken_over = self
            .sessions
            .key_of(&client_id)
            .and_then(|key| self.sessions.get(key))
            .and_then(|slot| Some((slot.conn?, slot.session.clean)));
        if let Some((old, old_clean)) = taken_over {
            let session_continues = !old_clean && !connect.clean_session;
            self.end_connection(old, Ending::TakenOver { session_continues }, now, out);
        }

        let client_id: Arc<str> = client_id.into();
        let (session, present) = self.attach_session(&client_id, connect.clean_session, conn);
        let will = connect.will.as_ref().map_or(0, |will| {
            will.topic.as_str().len().saturating_add(will.payload.len())
        });
        let cost = super::memory::connect_cost(&client_id, username.as_deref(), will);
        self.memory_grew(cost, out);
        self.adopt_identity(session, username.clone(), present);
        let log_it = self.may_log(Lines::Connections, now);

        let Some(client) = self.clients.get_mut(conn) else {
            return;
        };
        if let Some(timer) = client.timer.take() {
            self.timers.cancel(timer);
        }
        if keep_alive > 0 {
            let deadline = now + super::keepalive_grace(keep_alive);
            client.timer = Some(self.timers.insert(deadline, Timer::Keepalive(conn)));
        }
        let peer = match &client.state {
            ClientState::AwaitingConnect(pending) => pending.peer.as_str(),
            ClientState::Connected(_) => "",
        };
        if log_it {
            info!(
                "New client connected from {} as {} (p{}, c{}, k{}{}).",
                peer,
                shown(&client_id),
                connect.protocol.level(),
                u8::from(connect.clean_session),
                connect.keep_alive,
                username
                    .as_deref()
                    .map(|u| format!(", u'{}'", shown(u)))
                    .unwrap_or_default(),
            );
        }
        client.state = ClientState::Connected(Connected {
            session,
            client_id,
            keep_alive,
            will: connect.will.map(Box::new),
        });
        self.stats.clients_total += 1;
        self.stats.clients_connected += 1;
        self.stats.clients_maximum = self.stats.clients_maximum.max(self.stats.clients_connected);

        let connack = Connack {
            // MQTT 3.1's CONNACK has no session present flag.
            session_present: present && connect.protocol == Protocol::V311,
            code: ConnectReturnCode::Accepted,
        };
        out.send(conn, &Packet::Connack(connack));
        if present {
            self.resume(conn, session, now, out);
        }
    }

    /// The keepalive the broker holds a client to, or `None` when the client
    /// must be refused with CONNACK 0x02.
    ///
    /// As mosquitto does for MQTT 3.1.1 and 3.1 clients, asking for more than
    /// `max_keepalive` is refused: these protocols cannot tell the client to
    /// use another value (MQTT 5's Server Keep Alive can), and holding it to
    /// a shorter one would close a client that pings on time by its own
    /// clock. Asking for 0 (no keepalive) is accepted, and the broker holds
    /// the client to `max_keepalive`: the standard lets a server close an
    /// inactive client whatever its keepalive ([MQTT-3.1.2-24] note), and
    /// refusing it would lock out every client that sends 0 (mosquitto does
    /// refuse it, but only when `max_keepalive` is set, which its default
    /// is not). `max_keepalive 0` turns the limit off.
    fn allowed_keepalive(&self, asked: u16) -> Option<u16> {
        let max = self.settings.max_keepalive;
        match asked {
            _ if max == 0 => Some(asked),
            0 => Some(max),
            _ if asked > max => None,
            _ => Some(asked),
        }
    }

    /// The id the connection will go by, or `None` when it must be refused
    /// with CONNACK 0x02 ([MQTT-3.1.3-8]).
    fn choose_client_id(&mut self, connect: &Connect) -> Option<String> {
        if connect.protocol == Protocol::V31 {
            let len = connect.client_id.len();
            return (1..=MQTT31_MAX_CLIENT_ID)
                .contains(&len)
                .then(|| connect.client_id.clone());
        }
        if !connect.client_id.is_empty() {
            return Some(connect.client_id.clone());
        }
        if !connect.clean_session {
            return None;
        }
        // [MQTT-3.1.3-6]: an empty id with clean session gets a unique one.
        loop {
            let id = self.random_client_id();
            if self.sessions.key_of(&id).is_none() {
                return Some(id);
            }
        }
    }

    /// `auto-` and 128 unpredictable bits, as mosquitto does. A guessable id
    /// (a counter) would let any client take over an anonymous client's
    /// session by connecting with the next id. The bits come from SipHash
    /// keyed by `RandomState`, which the standard library seeds from the
    /// operating system's random source.
    fn random_client_id(&mut self) -> String {
        self.generated_ids += 1;
        let mut halves = [0u64; 2];
        for (domain, half) in (0u8..).zip(halves.iter_mut()) {
            let mut hasher = self.id_keys.build_hasher();
            hasher.write_u8(domain);
            hasher.write_u64(self.generated_ids);
            *half = hasher.finish();
        }
        let [high, low] = halves;
        format!("auto-{high:016x}{low:016x}")
    }

    /// Sends a refusing CONNACK and closes. Nothing the client sends after
    /// it is processed: the connection is forgotten at once.
    pub(super) fn refuse(
        &mut self,
        conn: ConnId,
        code: ConnectReturnCode,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let connack = Connack {
            session_present: false,
            code,
        };
        out.send(conn, &Packet::Connack(connack));
        self.end_connection(conn, Ending::Refused, now, out);
    }

    /// Finds or creates the session for `client_id` and attaches `conn` to
    /// it. Returns its key and whether an old session was resumed.
    fn attach_session(&mut self, client_id: &Arc<str>, clean: bool, conn: ConnId) -> (usize, bool) {
        let settings = &self.settings;
        let new = || {
            Session::new(
                Arc::clone(client_id),
                clean,
                settings.max_inflight,
                settings.max_queued,
            )
        };
        let attached = self.sessions.attach(client_id, clean, conn, new);
        if let Some(discarded) = attached.discarded {
            self.forget_timer(discarded);
        }
        if attached.resumed {
            self.session_came_back(attached.key);
            // The limits are the configuration's, not the session's: they
            // follow it to a session made under other settings (one read
            // back from disk, say).
            if let Some(slot) = self.sessions.get_mut(attached.key) {
                let settings = &self.settings;
                slot.session
                    .set_limits(settings.max_inflight, settings.max_queued);
            }
        }
        (attached.key, attached.resumed)
    }

    /// A persistent session came back: resend every unacknowledged message
    /// with DUP set, and every unanswered PUBREL, in their original order
    /// ([MQTT-4.4.0-1]); then let the queue flow into the window.
    ///
    /// Nothing is written yet: every message of the window waits, and goes
    /// out from [`Broker::drained`] once the network layer has flushed the
    /// CONNACK (`drain.rs`), a mark's worth at a time. A connection taken
    /// over again in the same turn (a takeover storm) is closed by then
    /// and gets none of it.
    fn resume(&mut self, conn: ConnId, session: usize, now: Instant, out: &mut dyn Outbox) {
        let time = self.broker_time(now);
        let Some(slot) = self.sessions.get_mut(session) else {
            return;
        };
        slot.session.wait_all();
        slot.session.queue_to_window(time);
        if slot.session.has_waiting() {
            out.notify_when_drained(conn);
        }
    }
}
