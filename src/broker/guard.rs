//! Who may connect, and what each client may do: the password file, the ACL
//! file and the TLS client certificate, as the core applies them.
//!
//! This module owns the [`Guard`]: the password and ACL files in force
//! (handed in at start, read again on [`Broker::reload`]), the decision on
//! a CONNECT's credentials, and the three per-topic questions, asked
//! nowhere else: `may_publish` (every PUBLISH and every will), `may_read`
//! (every delivery, retained ones included) and `may_subscribe` (every
//! SUBSCRIBE filter). The file formats, and reading them, are
//! [`crate::security`]'s; this module only asks them.
//!
//! It must not know about sockets or TLS libraries: the network layer hands
//! in what the handshake proved ([`Broker::established`]) as a plain
//! string. Like the rest of the core it never reads the clock.
//!
//! # The decision at CONNECT
//!
//! 1. A client of a TLS listener with `use_identity_as_username` (each
//!    listener has its own, carried in [`TlsInfo`]): its username is its
//!    certificate's subject CN, and no password is asked for. Without a
//!    certificate (or one without a CN): CONNACK 0x04.
//! 2. No username: allowed when `allow_anonymous` is true, else CONNACK 0x05
//!    ([MQTT-3.2.2-5]).
//! 3. A username with a `password_file`: the password must verify, else
//!    CONNACK 0x05; a username without a password gets 0x05 too. Without a
//!    password file the username is taken as given.
//!
//! The codes are mosquitto's; [`Refusal`] says why they are right.
//!
//! A refused client is forgotten at once ([MQTT-3.1.4-5]): nothing it sends
//! after the CONNECT is processed, and it cannot take over a connected
//! client's id, because the check runs before the takeover.
//!
//! # The cost of a password check
//!
//! A SHA-512 crypt at the default 5000 rounds costs about a millisecond on
//! the loop's only thread. A [`VerifyCache`] remembers each user's last good
//! password for five minutes, so a client that reconnects in a loop with the
//! right password costs one check per five minutes, not one per CONNECT. A
//! wrong password always costs a full check: a flood of them slows the loop
//! by a millisecond each, the price of a round trip to a slow client, and
//! never stops it. A file whose hashes ask for more than
//! [`MAX_ROUNDS`](crate::security::MAX_ROUNDS) is refused when it is loaded,
//! so no single check can stall every client.
//!
//! Explained in docs/12-tls-and-auth.md.

use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::{Broker, ClientState, ConnId, Lines, Outbox, PeerInfo, TlsInfo};
use crate::config::{ConfigPath, SecurityConfig};
use crate::logtext::shown;
use crate::protocol::{Connect, ConnectReturnCode, TopicFilter, TopicName};
use crate::security::acl;
use crate::security::passwords::VerifyCache;
use crate::security::SecurityFiles;

/// How many users' last good passwords are remembered.
const CACHE_CAPACITY: usize = 1024;

/// How long a remembered password is trusted without checking the hash.
const CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// Why a CONNECT's credentials were refused, and the CONNACK code each
/// gets. The codes are mosquitto's: MQTT 3.1.1 names 0x04 "bad user name or
/// password" but describes it as data that is *malformed*, and 0x05 "not
/// authorized"; a password that does not verify is not malformed, so it
/// gets 0x05, as a client that gave none where one is needed does.
/// A TLS client whose certificate cannot be its username (no certificate,
/// or no CN in it) has no well-formed identity at all: 0x04, as mosquitto
/// sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `use_identity_as_username` and no CN to use.
    NoIdentity,
    /// No username, and `allow_anonymous` is false.
    Anonymous,
    /// A username whose password is wrong or missing.
    BadPassword,
}

impl Refusal {
    /// The CONNACK return code that carries this refusal.
    pub(crate) fn code(self) -> ConnectReturnCode {
        match self {
            Refusal::NoIdentity => ConnectReturnCode::BadUsernameOrPassword,
            Refusal::Anonymous | Refusal::BadPassword => ConnectReturnCode::NotAuthorized,
        }
    }

    /// What the log says of it (never the password).
    fn reason(self) -> &'static str {
        match self {
            Refusal::NoIdentity => "no certificate CN to use as the username",
            Refusal::Anonymous => "not authorized",
            Refusal::BadPassword => "bad username or password",
        }
    }
}

/// Reads the files `security` names, for a broker given none
/// ([`Broker::new`]): a failure is logged and leaves the broker refusing
/// everyone rather than open. The network layer loads them itself before
/// it starts the broker, and refuses to start when that fails.
pub(super) fn load_or_deny_all(security: &SecurityConfig) -> SecurityFiles {
    SecurityFiles::load(security).unwrap_or_else(|errors| {
        for e in &errors {
            error!("{e}");
        }
        error!("the password or ACL file could not be loaded: refusing every client");
        SecurityFiles::deny_all()
    })
}

/// What the TLS handshake proved about a connection's peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TlsPeer {
    /// The subject CN of the client's verified certificate; `None` when it
    /// sent none, or one without a CN.
    pub(super) common_name: Option<String>,
    /// Its listener's `use_identity_as_username`.
    pub(super) use_identity_as_username: bool,
}

/// What the core knows of security: the settings, the loaded files and the
/// cache of good passwords.
#[derive(Debug)]
pub(super) struct Guard {
    allow_anonymous: bool,
    password_file: Option<ConfigPath>,
    acl_file: Option<ConfigPath>,
    files: SecurityFiles,
    cache: VerifyCache,
}

impl Guard {
    /// Applies `files`, loaded from the files `security` names, with the
    /// rest of `security`.
    pub(super) fn new(security: &SecurityConfig, files: SecurityFiles) -> Guard {
        if !security.allow_anonymous && security.password_file.is_none() {
            warn!(
                "allow_anonymous is false but there is no password_file: \
                 any username is accepted, with any password"
            );
        }
        if files.acl().is_some_and(|acl| acl.rule_count() == 0) {
            warn!("the ACL file has no rules: every publish and subscribe is refused");
        }
        Guard {
            allow_anonymous: security.allow_anonymous,
            password_file: security.password_file.clone(),
            acl_file: security.acl_file.clone(),
            files,
            cache: VerifyCache::new(CACHE_CAPACITY, CACHE_TTL),
        }
    }

    /// The username the client is known by from now on, or the CONNACK code
    /// that refuses it. `identity` is `Some(common name)` for a client of a
    /// TLS listener with `use_identity_as_username`.
    fn authenticate(
        &mut self,
        connect: &Connect,
        identity: Option<Option<&str>>,
        now: Instant,
    ) -> Result<Option<String>, Refusal> {
        if let Some(common_name) = identity {
            // Whatever username and password the CONNECT carries are ignored,
            // as in mosquitto: the certificate is the credential.
            return match common_name {
                Some(name) => Ok(Some(name.to_string())),
                None => Err(Refusal::NoIdentity),
            };
        }
        let Some(username) = &connect.username else {
            return if self.allow_anonymous {
                Ok(None)
            } else {
                Err(Refusal::Anonymous)
            };
        };
        let Some(passwords) = self.files.passwords() else {
            return Ok(Some(username.clone()));
        };
        let good = match &connect.password {
            Some(password) => self.cache.check(passwords, username, password, now),
            None => false,
        };
        if good {
            Ok(Some(username.clone()))
        } else {
            Err(Refusal::BadPassword)
        }
    }

    /// May this client publish to `topic`, itself or by its will? Without
    /// an ACL file everything is allowed but `$SOL/...`, the broker's own;
    /// the file refuses `$SOL/...` too, whatever it says.
    pub(super) fn may_publish(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &TopicName,
    ) -> bool {
        match self.files.acl() {
            Some(acl) => acl.may_publish(client_id, username, topic),
            None => !acl::is_broker_topic(topic),
        }
    }

    /// May this client be sent a message published to `topic`?
    pub(super) fn may_read(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &TopicName,
    ) -> bool {
        match self.files.acl() {
            Some(acl) => acl.may_read(client_id, username, topic),
            None => true,
        }
    }

    /// May this client hold a subscription to `filter`?
    pub(super) fn may_subscribe(
        &self,
        client_id: &str,
        username: Option<&str>,
        filter: &TopicFilter,
    ) -> bool {
        match self.files.acl() {
            Some(acl) => acl.may_subscribe(client_id, username, filter),
            None => true,
        }
    }

    /// Whether an ACL file is in force: without one every subscription and
    /// every read is allowed, and the per-session work can be skipped.
    fn has_acl(&self) -> bool {
        self.files.acl().is_some()
    }
}

impl Broker {
    /// `conn` carries MQTT from now on; over TLS, `peer.tls` holds the
    /// subject CN of the client's verified certificate, if it sent one. The
    /// network layer calls this before it decodes the connection's first
    /// byte of MQTT, so CONNECT always knows whether it came over TLS.
    pub fn established(&mut self, conn: ConnId, peer: PeerInfo<'_>) {
        let Some(TlsInfo {
            common_name,
            use_identity_as_username,
        }) = peer.tls
        else {
            return;
        };
        let pending = self
            .clients
            .get_mut(conn)
            .and_then(|client| match &mut client.state {
                ClientState::AwaitingConnect(pending) => Some(pending),
                ClientState::Connected(_) => None,
            });
        if let Some(pending) = pending {
            debug!(
                "TLS from {}: client certificate {}",
                pending.peer,
                common_name
                    .as_deref()
                    .map_or("none".to_string(), |cn| format!("CN=\"{}\"", shown(cn)))
            );
            pending.tls = Some(TlsPeer {
                common_name,
                use_identity_as_username,
            });
        }
    }

    /// Re-reads the password file and the ACL file (on SIGHUP).
    ///
    /// Both load, or nothing changes: a file that fails keeps the old state
    /// of both, and the errors are logged (never open access, mosquitto
    /// CVE-2017-7652). After a good reload every session, connected or not,
    /// loses the subscriptions it may no longer hold and the messages
    /// waiting for it on topics it may no longer read. Connected clients
    /// stay connected: MQTT 3.1.1 has no way to tell them a subscription was
    /// taken back, so it simply stops delivering.
    pub fn reload(&mut self, _now: Instant, _out: &mut dyn Outbox) {
        let security = SecurityConfig {
            password_file: self.guard.password_file.clone(),
            acl_file: self.guard.acl_file.clone(),
            ..SecurityConfig::default()
        };
        match SecurityFiles::load(&security) {
            Ok(files) => {
                self.guard.files = files;
                // A changed password must stop working at once.
                self.guard.cache.clear();
                let keys: Vec<usize> = self.sessions.iter().map(|(key, _)| key).collect();
                let (mut filters, mut messages) = (0, 0);
                for key in keys {
                    let (f, m) = self.enforce_acl(key);
                    filters += f;
                    messages += m;
                }
                info!(
                    "Reloaded the password and ACL files; {filters} subscriptions and \
                     {messages} waiting messages were no longer allowed and were removed."
                );
            }
            Err(errors) => {
                for e in &errors {
                    error!("reload: {e}");
                }
                error!("reload failed: keeping the password and ACL files loaded before");
            }
        }
    }

    /// Checks a CONNECT's credentials (see the module docs). Logs a refusal,
    /// without the password.
    pub(super) fn authenticate(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        client_id: &str,
        now: Instant,
    ) -> Result<Option<String>, ConnectReturnCode> {
        let Some(ClientState::AwaitingConnect(pending)) = self.clients.get(conn).map(|c| &c.state)
        else {
            return Err(ConnectReturnCode::NotAuthorized);
        };
        let identity = pending
            .tls
            .as_ref()
            .filter(|peer| peer.use_identity_as_username)
            .map(|peer| peer.common_name.as_deref());
        let result = self.guard.authenticate(connect, identity, now);
        // The refusal is counted against the log's cap before it is shown:
        // a client that fails to log in again and again writes at most its
        // share of 100 lines a second.
        if result.is_err() && self.may_log(Lines::Refusals, now) {
            if let (Err(refusal), Some(ClientState::AwaitingConnect(pending))) =
                (&result, self.clients.get(conn).map(|c| &c.state))
            {
                let user = connect
                    .username
                    .as_deref()
                    .map(|u| format!(" (u'{}')", shown(u)))
                    .unwrap_or_default();
                info!(
                    "Client {} from {} refused: {}{user}.",
                    shown(client_id),
                    pending.peer,
                    refusal.reason()
                );
            }
        }
        result.map_err(Refusal::code)
    }

    /// Gives session `key` the identity of the client now attached to it.
    /// A resumed session may have been another user's: it keeps only the
    /// subscriptions and messages the new one may have.
    pub(super) fn adopt_identity(&mut self, key: usize, username: Option<String>, resumed: bool) {
        let Some(slot) = self.sessions.get_mut(key) else {
            return;
        };
        let changed = slot.username != username;
        slot.username = username;
        if resumed && changed {
            let (filters, messages) = self.enforce_acl(key);
            if filters + messages > 0 {
                info!(
                    "Resumed session {key} under another username: {filters} subscriptions and \
                     {messages} waiting messages it may not have were removed."
                );
            }
        }
    }

    // The broker's side of the same three questions: who `conn` or session
    // `key` is, then the guard's answer.

    /// May the client of `conn` publish to `topic`?
    pub(super) fn may_publish(&self, conn: ConnId, topic: &TopicName) -> bool {
        match self.clients.get(conn).map(|c| &c.state) {
            Some(ClientState::Connected(c)) => {
                let username = self
                    .sessions
                    .get(c.session)
                    .and_then(|slot| slot.username.as_deref());
                self.guard.may_publish(&c.client_id, username, topic)
            }
            _ => false,
        }
    }

    /// May session `key` be sent a message on `topic`?
    pub(super) fn may_read(&self, key: usize, topic: &TopicName) -> bool {
        match self.sessions.get(key) {
            Some(slot) => {
                self.guard
                    .may_read(&slot.session.client_id, slot.username.as_deref(), topic)
            }
            None => false,
        }
    }

    /// May session `key` subscribe to `filter`?
    pub(super) fn may_subscribe(&self, key: usize, filter: &TopicFilter) -> bool {
        match self.sessions.get(key) {
            Some(slot) => {
                self.guard
                    .may_subscribe(&slot.session.client_id, slot.username.as_deref(), filter)
            }
            None => false,
        }
    }

    /// Removes from session `key` every subscription its client may no
    /// longer hold and every waiting message it may no longer read. Returns
    /// how many of each went.
    fn enforce_acl(&mut self, key: usize) -> (usize, usize) {
        if !self.guard.has_acl() {
            return (0, 0);
        }
        let Some(slot) = self.sessions.get(key) else {
            return (0, 0);
        };
        let (client_id, username) = (&slot.session.client_id, slot.username.as_deref());
        let refused: Vec<TopicFilter> = slot
            .session
            .subscriptions()
            .keys()
            .filter(|filter| !self.guard.may_subscribe(client_id, username, filter))
            .cloned()
            .collect();
        let client_id = slot.session.client_id.clone();
        for filter in &refused {
            self.sessions.unsubscribe(key, filter);
            debug!(
                "Client {} may no longer subscribe to {}: subscription removed.",
                shown(&client_id),
                shown(filter.as_str())
            );
        }
        let guard = &self.guard;
        let Some(slot) = self.sessions.get_mut(key) else {
            return (0, 0);
        };
        let username = slot.username.clone();
        let dropped = slot.session.keep_messages(|message| {
            guard.may_read(&client_id, username.as_deref(), &message.topic)
        });
        (refused.len(), dropped)
    }
}

#[cfg(test)]
mod tests;
