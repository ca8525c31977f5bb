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
    parse_bool, parse_log_level, parse_max_connections, parse_memory, parse_period,
    parse_request_size, parse_timeout, parse_whole, MAX_INFLIGHT, MAX_TCP_BACKLOG,
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

/// A row that no section takes yet; the rows below fill in theirs.
const fn key(name: &'static str) -> Key {
    Key {
        name,
        broker: None,
        listener: None,
        connection: None,
        repeats: false,
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
    Key {
        broker: Some(|c, v, _| {
            if v.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "`{}` is not an IP address (such as 127.0.0.1 or ::1)",
                    v.escape_debug()
                ));
            }
            c.ip_address = v.to_string();
            Ok(())
        }),
        ..key("ip_address")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.ip_port, port(v)?)),
        ..key("ip_port")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.unix_socket, Some(PathBuf::from(v)))),
        ..key("unix_socket")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.log_level, parse_log_level(v)?)),
        ..key("log_level")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.log_path, Some(PathBuf::from(v)))),
        ..key("log_path")
    },
    Key {
        broker: Some(|c, v, _| {
            set(
                &mut c.tcp_backlog,
                parse_whole(v, 1, MAX_TCP_BACKLOG, "a backlog")?,
            )
        }),
        ..key("tcp_backlog")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.max_request_size, parse_request_size(v)?)),
        ..key("max_request_size")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.connect_timeout, parse_timeout(v)?)),
        ..key("connect_timeout")
    },
    Key {
        broker: Some(|c, v, _| {
            set(
                &mut c.max_inflight_messages,
                parse_whole(v, 1, MAX_INFLIGHT, "a count")?,
            )
        }),
        ..key("max_inflight_messages")
    },
    Key {
        // usize is at most 64 bits on every target Rust supports.
        broker: Some(|c, v, _| {
            set(
                &mut c.max_queued_messages,
                parse_whole(v, 0, usize::MAX as u64, "a count")?,
            )
        }),
        ..key("max_queued_messages")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.stats_publish_interval, parse_period(v)?)),
        ..key("stats_publish_interval")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.max_memory, parse_memory(v)?)),
        ..key("max_memory")
    },
    Key {
        // Flat: every client connection of the broker. In a block, as in
        // mosquitto: that listener's connections.
        broker: Some(|c, v, _| set(&mut c.max_connections, parse_max_connections(v)?)),
        listener: Some(|l, v, _| set(&mut l.max_connections, parse_max_connections(v)?)),
        ..key("max_connections")
    },
    Key {
        broker: Some(|c, v, _| {
            set(
                &mut c.max_keepalive,
                parse_whole(v, 0, u16::MAX.into(), "a number of seconds")?,
            )
        }),
        ..key("max_keepalive")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.retry_interval, parse_period(v)?)),
        ..key("retry_interval")
    },
    // Security: the TLS listener, authentication, authorization. The flat
    // TLS keys configure the `tls_port` listener; inside a `listener` block
    // they make that listener a TLS one.
    Key {
        broker: Some(|c, v, _| set(&mut c.security.tls_port, Some(port(v)?))),
        ..key("tls_port")
    },
    Key {
        broker: Some(|c, v, line| set(&mut c.security.certfile, path(v, line))),
        listener: Some(|l, v, line| set(&mut tls(l).certfile, path(v, line))),
        ..key("certfile")
    },
    Key {
        broker: Some(|c, v, line| set(&mut c.security.keyfile, path(v, line))),
        listener: Some(|l, v, line| set(&mut tls(l).keyfile, path(v, line))),
        ..key("keyfile")
    },
    Key {
        broker: Some(|c, v, line| set(&mut c.security.cafile, path(v, line))),
        listener: Some(|l, v, line| set(&mut tls(l).cafile, path(v, line))),
        ..key("cafile")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.security.tls_protocols, security::parse_protocols(v)?)),
        listener: Some(|l, v, _| set(&mut tls(l).tls_protocols, security::parse_protocols(v)?)),
        ..key("tls_protocols")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.security.require_certificate, parse_bool(v)?)),
        listener: Some(|l, v, _| set(&mut tls(l).require_certificate, parse_bool(v)?)),
        ..key("require_certificate")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.security.use_identity_as_username, parse_bool(v)?)),
        listener: Some(|l, v, _| set(&mut tls(l).use_identity_as_username, parse_bool(v)?)),
        ..key("use_identity_as_username")
    },
    Key {
        broker: Some(|c, v, _| set(&mut c.security.allow_anonymous, parse_bool(v)?)),
        ..key("allow_anonymous")
    },
    Key {
        broker: Some(|c, v, line| set(&mut c.security.password_file, path(v, line))),
        ..key("password_file")
    },
    Key {
        broker: Some(|c, v, line| set(&mut c.security.acl_file, path(v, line))),
        ..key("acl_file")
    },
    // Inside a `listener` block only.
    Key {
        listener: Some(|l, v, _| set(&mut l.protocol, blocks::parse_protocol(v)?)),
        ..key("protocol")
    },
    // Inside a `connection` block only: a bridge to another broker.
    Key {
        connection: Some(|b, v, _| set(&mut b.addresses, blocks::parse_addresses(v)?)),
        ..key("address")
    },
    Key {
        connection: Some(|b, v, _| {
            b.topics.push(blocks::parse_topic(v)?);
            Ok(())
        }),
        repeats: true,
        ..key("topic")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.remote_clientid, Some(blocks::parse_client_id(v)?))),
        ..key("remote_clientid")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.remote_username, Some(v.to_string()))),
        ..key("remote_username")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.remote_password, Some(v.to_string()))),
        ..key("remote_password")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.cleansession, parse_bool(v)?)),
        ..key("cleansession")
    },
    Key {
        connection: Some(|b, v, _| {
            set(
                &mut b.keepalive_interval,
                parse_whole(v, 0, u16::MAX.into(), "a number of seconds")?,
            )
        }),
        ..key("keepalive_interval")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.restart_timeout, blocks::parse_restart_timeout(v)?)),
        ..key("restart_timeout")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.try_private, parse_bool(v)?)),
        ..key("try_private")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.notifications, parse_bool(v)?)),
        ..key("notifications")
    },
    Key {
        connection: Some(|b, v, _| {
            set(
                &mut b.bridge_protocol_version,
                blocks::parse_bridge_protocol(v)?,
            )
        }),
        ..key("bridge_protocol_version")
    },
    Key {
        connection: Some(|b, v, line| set(&mut b.bridge_cafile, path(v, line))),
        ..key("bridge_cafile")
    },
    Key {
        connection: Some(|b, v, line| set(&mut b.bridge_certfile, path(v, line))),
        ..key("bridge_certfile")
    },
    Key {
        connection: Some(|b, v, line| set(&mut b.bridge_keyfile, path(v, line))),
        ..key("bridge_keyfile")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.bridge_insecure, parse_bool(v)?)),
        ..key("bridge_insecure")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.tree, parse_bool(v)?)),
        ..key("tree")
    },
    Key {
        connection: Some(|b, v, _| set(&mut b.tree_id, Some(blocks::parse_tree_id(v)?))),
        ..key("tree_id")
    },
    Key {
        connection: Some(|b, v, _| {
            set(
                &mut b.tree_priority,
                parse_whole(v, 0, u16::MAX.into(), "a priority")?,
            )
        }),
        ..key("tree_priority")
    },
];
