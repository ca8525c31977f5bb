//! The key table: every key `sol.conf` knows, declared once.
//!
//! A row says the key's name, in which sections it may appear (the flat
//! broker section before the first block, a `listener` block, a
//! `connection` block), whether it may appear more than once in a section,
//! and, for each section, how its value is parsed and where it is stored.
//! The parser, its "unknown key", "set twice" and "not in this block"
//! errors, and every test that lists the keys read this table and nothing
//! else, so a new key is one row here and one field where it is stored.
//!
//! The block headers (`listener`, `connection`) are not keys: they open a
//! section rather than set a value, and live in [`super::blocks`].

use std::net::IpAddr;
use std::path::PathBuf;

use super::blocks::{self, ConnectionConfig, ListenerConfig};
use super::security::{self, ConfigPath, TlsConfig};
use super::values::{
    parse_bool, parse_expiration, parse_log_level, parse_max_connections, parse_memory,
    parse_period, parse_request_size, parse_timeout, parse_whole, MAX_INFLIGHT, MAX_TCP_BACKLOG,
};
use super::Config;

/// Parses a value and stores it in one section's settings. Gets the line,
/// which paths keep so a file they name can be blamed on it later.
pub(super) type Store<T> = fn(&mut T, &str, usize) -> Result<(), String>;

/// One row of the table. A section whose store is `None` does not take the
/// key.
pub(super) struct Key {
    pub(super) name: &'static str,
    /// The flat section: the broker and its default listeners.
    pub(super) broker: Option<Store<Config>>,
    /// Inside a `listener` block.
    pub(super) listener: Option<Store<ListenerConfig>>,
    /// Inside a `connection` block.
    pub(super) connection: Option<Store<ConnectionConfig>>,
    /// May be set more than once in one section, each line adding a value
    /// (`topic`). Every other key set twice is an error naming both lines.
    pub(super) repeats: bool,
}

/// The sections of a file, for the table's "where may this key go".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    Broker,
    Listener,
    Connection,
}

impl Section {
    /// The word that opens the block, for messages.
    pub(super) fn block_name(self) -> &'static str {
        match self {
            Section::Broker => "broker",
            Section::Listener => "listener",
            Section::Connection => "connection",
        }
    }
}

impl Key {
    pub(super) fn allowed_in(&self, section: Section) -> bool {
        match section {
            Section::Broker => self.broker.is_some(),
            Section::Listener => self.listener.is_some(),
            Section::Connection => self.connection.is_some(),
        }
    }

    /// Why the key cannot be set in `section`, which does not take it.
    pub(super) fn misplaced(&self, section: Section) -> String {
        let name = self.name;
        if section == Section::Broker {
            let home = if self.listener.is_some() {
                Section::Listener
            } else {
                Section::Connection
            };
            return format!(
                "`{name}` can only be set inside a `{}` block",
                home.block_name()
            );
        }
        let kind = if self.connection.is_some() {
            "bridge"
        } else if self.listener.is_some() {
            "listener"
        } else {
            "broker"
        };
        format!(
            "`{name}` is a {kind} setting and cannot be set inside a `{}` block",
            section.block_name()
        )
    }
}

/// The row named `name`, exactly (keys are case-sensitive).
pub(super) fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// A row that no section takes yet; the builders below fill in the
/// sections that take it.
const fn key(name: &'static str) -> Key {
    Key {
        name,
        broker: None,
        listener: None,
        connection: None,
        repeats: false,
    }
}

impl Key {
    const fn broker(self, store: Store<Config>) -> Key {
        Key {
            broker: Some(store),
            ..self
        }
    }

    const fn listener(self, store: Store<ListenerConfig>) -> Key {
        Key {
            listener: Some(store),
            ..self
        }
    }

    const fn connection(self, store: Store<ConnectionConfig>) -> Key {
        Key {
            connection: Some(store),
            ..self
        }
    }

    const fn repeats(self) -> Key {
        Key {
            repeats: true,
            ..self
        }
    }
}

/// Stores a parsed value; keeps each row of the table one expression.
fn set<T>(slot: &mut T, value: T) -> Result<(), String> {
    *slot = value;
    Ok(())
}

fn path(value: &str, line: usize) -> Option<ConfigPath> {
    Some(ConfigPath {
        path: PathBuf::from(value),
        line,
    })
}

/// A listener's TLS settings, created by the first TLS key of its block.
fn tls(listener: &mut ListenerConfig) -> &mut TlsConfig {
    listener.tls.get_or_insert_with(TlsConfig::default)
}

fn port(value: &str) -> Result<u16, String> {
    parse_whole(value, 0, u16::MAX.into(), "a port number")
}

/// Every key, in the order README.md and sol.conf document them.
pub(super) static KEYS: &[Key] = &[
    // The broker and its default listeners.
    key("ip_address").broker(|c, v, _| {
        if v.parse::<IpAddr>().is_err() {
            return Err(format!(
                "`{}` is not an IP address (such as 127.0.0.1 or ::1)",
                v.escape_debug()
            ));
        }
        c.ip_address = v.to_string();
        Ok(())
    }),
    key("ip_port").broker(|c, v, _| set(&mut c.ip_port, port(v)?)),
    key("unix_socket").broker(|c, v, _| set(&mut c.unix_socket, Some(PathBuf::from(v)))),
    key("log_level").broker(|c, v, _| set(&mut c.log_level, parse_log_level(v)?)),
    key("log_path").broker(|c, v, _| set(&mut c.log_path, Some(PathBuf::from(v)))),
    key("tcp_backlog").broker(|c, v, _| {
        set(
            &mut c.tcp_backlog,
            parse_whole(v, 1, MAX_TCP_BACKLOG, "a backlog")?,
        )
    }),
    key("max_request_size").broker(|c, v, _| set(&mut c.max_request_size, parse_request_size(v)?)),
    key("connect_timeout").broker(|c, v, _| set(&mut c.connect_timeout, parse_timeout(v)?)),
    key("max_inflight_messages").broker(|c, v, _| {
        set(
            &mut c.max_inflight_messages,
            parse_whole(v, 1, MAX_INFLIGHT, "a count")?,
        )
    }),
    // usize is at most 64 bits on every target Rust supports.
    key("max_queued_messages").broker(|c, v, _| {
        set(
            &mut c.max_queued_messages,
            parse_whole(v, 0, usize::MAX as u64, "a count")?,
        )
    }),
    key("stats_publish_interval")
        .broker(|c, v, _| set(&mut c.stats_publish_interval, parse_period(v)?)),
    key("max_memory").broker(|c, v, _| set(&mut c.max_memory, parse_memory(v)?)),
    // Flat: every client connection of the broker. In a block, as in
    // mosquitto: that listener's connections.
    key("max_connections")
        .broker(|c, v, _| set(&mut c.max_connections, parse_max_connections(v)?))
        .listener(|l, v, _| set(&mut l.max_connections, parse_max_connections(v)?)),
    key("max_keepalive").broker(|c, v, _| {
        set(
            &mut c.max_keepalive,
            parse_whole(v, 0, u16::MAX.into(), "a number of seconds")?,
        )
    }),
    key("retry_interval").broker(|c, v, _| set(&mut c.retry_interval, parse_period(v)?)),
    key("persistent_client_expiration").broker(|c, v, _| {
        set(
            &mut c.persistent_client_expiration,
            Some(parse_expiration(v)?),
        )
    }),
    // Security: the TLS listener, authentication, authorization. The flat
    // TLS keys configure the `tls_port` listener; inside a `listener` block
    // they make that listener a TLS one.
    key("tls_port").broker(|c, v, _| set(&mut c.security.tls_port, Some(port(v)?))),
    key("certfile")
        .broker(|c, v, line| set(&mut c.security.certfile, path(v, line)))
        .listener(|l, v, line| set(&mut tls(l).certfile, path(v, line))),
    key("keyfile")
        .broker(|c, v, line| set(&mut c.security.keyfile, path(v, line)))
        .listener(|l, v, line| set(&mut tls(l).keyfile, path(v, line))),
    key("cafile")
        .broker(|c, v, line| set(&mut c.security.cafile, path(v, line)))
        .listener(|l, v, line| set(&mut tls(l).cafile, path(v, line))),
    key("tls_protocols")
        .broker(|c, v, _| set(&mut c.security.tls_protocols, security::parse_protocols(v)?))
        .listener(|l, v, _| set(&mut tls(l).tls_protocols, security::parse_protocols(v)?)),
    key("require_certificate")
        .broker(|c, v, _| set(&mut c.security.require_certificate, parse_bool(v)?))
        .listener(|l, v, _| set(&mut tls(l).require_certificate, parse_bool(v)?)),
    key("use_identity_as_username")
        .broker(|c, v, _| set(&mut c.security.use_identity_as_username, parse_bool(v)?))
        .listener(|l, v, _| set(&mut tls(l).use_identity_as_username, parse_bool(v)?)),
    key("allow_anonymous").broker(|c, v, _| set(&mut c.security.allow_anonymous, parse_bool(v)?)),
    key("password_file").broker(|c, v, line| set(&mut c.security.password_file, path(v, line))),
    key("acl_file").broker(|c, v, line| set(&mut c.security.acl_file, path(v, line))),
    // Inside a `listener` block only.
    key("protocol").listener(|l, v, _| set(&mut l.protocol, blocks::parse_protocol(v)?)),
    // Inside a `connection` block only: a bridge to another broker.
    key("address").connection(|b, v, _| set(&mut b.addresses, blocks::parse_addresses(v)?)),
    key("topic")
        .connection(|b, v, _| {
            b.topics.push(blocks::parse_topic(v)?);
            Ok(())
        })
        .repeats(),
    key("remote_clientid")
        .connection(|b, v, _| set(&mut b.remote_clientid, Some(blocks::parse_client_id(v)?))),
    key("remote_username").connection(|b, v, _| set(&mut b.remote_username, Some(v.to_string()))),
    key("remote_password").connection(|b, v, _| set(&mut b.remote_password, Some(v.to_string()))),
    key("cleansession").connection(|b, v, _| set(&mut b.cleansession, parse_bool(v)?)),
    key("keepalive_interval").connection(|b, v, _| {
        set(
            &mut b.keepalive_interval,
            parse_whole(v, 0, u16::MAX.into(), "a number of seconds")?,
        )
    }),
    key("restart_timeout")
        .connection(|b, v, _| set(&mut b.restart_timeout, blocks::parse_restart_timeout(v)?)),
    key("try_private").connection(|b, v, _| set(&mut b.try_private, parse_bool(v)?)),
    key("notifications").connection(|b, v, _| set(&mut b.notifications, parse_bool(v)?)),
    key("bridge_protocol_version").connection(|b, v, _| {
        set(
            &mut b.bridge_protocol_version,
            blocks::parse_bridge_protocol(v)?,
        )
    }),
    key("bridge_cafile").connection(|b, v, line| set(&mut b.bridge_cafile, path(v, line))),
    key("bridge_certfile").connection(|b, v, line| set(&mut b.bridge_certfile, path(v, line))),
    key("bridge_keyfile").connection(|b, v, line| set(&mut b.bridge_keyfile, path(v, line))),
    key("bridge_insecure").connection(|b, v, _| set(&mut b.bridge_insecure, parse_bool(v)?)),
    key("tree").connection(|b, v, _| set(&mut b.tree, parse_bool(v)?)),
    key("tree_id").connection(|b, v, _| set(&mut b.tree_id, Some(blocks::parse_tree_id(v)?))),
    key("tree_priority").connection(|b, v, _| {
        set(
            &mut b.tree_priority,
            parse_whole(v, 0, u16::MAX.into(), "a priority")?,
        )
    }),
];
