//! The blocks of `sol.conf`: `listener PORT [ADDRESS]` and `connection NAME`.
//!
//! As in mosquitto, a block line opens a section that runs until the next
//! block line; the keys in it (see the key table, `keys.rs`) apply to that
//! block. This module owns what a block holds ([`ListenerConfig`],
//! [`ConnectionConfig`]), parsing the block lines and the values only
//! blocks take, and the rules checked once the file is read (a TLS listener
//! has its key, two listeners do not share a port, bridge names are
//! unique). It opens no socket and dials nothing: the network layer binds
//! the listeners, and bridges are not built yet.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::security::{ConfigPath, TlsConfig};
use super::values::{parse_whole, MAX_CONNECT_TIMEOUT};
use super::{Config, ConfigError};
use crate::protocol::{QoS, TopicFilter};

#[cfg(test)]
mod tests;

/// The line each key was set on in one section (the flat one, or a block).
pub(super) type KeyLines = HashMap<&'static str, usize>;

/// Where a `listener` block without an address binds: the same default as
/// the flat `ip_address`, this machine only. mosquitto binds every address
/// there; sol keeps its rule that nothing is reachable from outside unless
/// the file says so.
pub const DEFAULT_LISTENER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One `listener PORT [ADDRESS]` block: a listener beside the default ones
/// the flat keys configure (`ip_address`/`ip_port`, `unix_socket`,
/// `tls_port`), which still run as before.
///
/// The broker-wide settings (`tcp_backlog`, `max_request_size`,
/// `connect_timeout`, the password and ACL files, ...) apply to its clients
/// as to every other; only the keys of the table marked for listeners
/// (`max_connections`, `protocol` and the TLS ones) can differ per listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The line of the `listener` line, to blame a bind or TLS-file error on.
    pub line: usize,
    /// What to listen on.
    pub bind: ListenerBind,
    /// `protocol`: what the listener speaks. Default `mqtt`.
    pub protocol: ListenerProtocol,
    /// `max_connections` inside the block: client connections open at once
    /// on this listener, as in mosquitto; `None` (`-1`, the default) for no
    /// limit of its own. The flat `max_connections` still bounds them all.
    pub max_connections: Option<usize>,
    /// The TLS settings when the block sets `certfile` (and then also
    /// `keyfile`); `None` for plain MQTT. The same struct as the flat
    /// `tls_port` listener's ([`SecurityConfig::tls`](super::SecurityConfig::tls)).
    pub tls: Option<TlsConfig>,
}

/// What a `listener` block listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerBind {
    /// `listener PORT [ADDRESS]`: TCP on this address (default
    /// [`DEFAULT_LISTENER_ADDRESS`]) and port; port 0 picks a free one.
    Tcp(SocketAddr),
    /// `listener 0 PATH`, as in mosquitto 2.0: a Unix domain socket. A path
    /// is told from an address by its `/` (`./sol.sock`, `/run/sol.sock`).
    Unix(PathBuf),
}

/// `protocol`: what a listener speaks. Only plain MQTT so far;
/// `websockets` is refused until it is supported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListenerProtocol {
    #[default]
    Mqtt,
}

/// One `connection NAME` block: a bridge to another broker, with
/// mosquitto's keys and defaults (mosquitto.conf(5), "Configuring
/// Bridges"), plus sol's `tree` keys.
///
/// Parsed and checked, but not built yet: a file with a `connection` block
/// is refused at validation, in one place (`refuse_bridges`) that the
/// bridge work will remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The line of the `connection` line.
    pub line: usize,
    /// The name: one topic level (no `/`, `+`, `#`), unique in the file.
    pub name: String,
    /// `address HOST[:PORT] [HOST[:PORT] ...]`: the remote broker, and
    /// others to try in turn. Required.
    pub addresses: Vec<BridgeAddress>,
    /// `topic`, one per line: what crosses the bridge, in which direction.
    pub topics: Vec<BridgeTopic>,
    /// `remote_clientid`. `None`: mosquitto's default, `HOSTNAME.NAME`,
    /// made when the bridge starts (the host name is not the config's).
    pub remote_clientid: Option<String>,
    /// `remote_username`.
    pub remote_username: Option<String>,
    /// `remote_password`; needs `remote_username`.
    pub remote_password: Option<String>,
    /// `cleansession`: the remote session's clean-session flag. Default
    /// false, so nothing is lost while the bridge reconnects.
    pub cleansession: bool,
    /// `keepalive_interval`: the bridge's keepalive, in seconds. Default 60.
    pub keepalive_interval: u16,
    /// `restart_timeout BASE [CAP]`: the wait before reconnecting.
    pub restart_timeout: RestartTimeout,
    /// `try_private`: tell the remote broker it is a bridge (mosquitto's
    /// protocol version | 0x80). Default true.
    pub try_private: bool,
    /// `notifications`: publish the bridge's state to
    /// `$SYS/broker/connection/NAME/state`. Default true.
    pub notifications: bool,
    /// `bridge_protocol_version`. Default `mqttv311`.
    pub bridge_protocol_version: BridgeProtocol,
    /// `bridge_cafile`: turns TLS to the remote broker on; its certificate
    /// must chain to these CAs.
    pub bridge_cafile: Option<ConfigPath>,
    /// `bridge_certfile`: the bridge's own certificate; with `bridge_keyfile`.
    pub bridge_certfile: Option<ConfigPath>,
    /// `bridge_keyfile`: the bridge's private key; with `bridge_certfile`.
    pub bridge_keyfile: Option<ConfigPath>,
    /// `bridge_insecure`: do not check the remote certificate's host name.
    /// Default false.
    pub bridge_insecure: bool,
    /// `tree`: this bridge is a link of a sol tree. Default false.
    pub tree: bool,
    /// `tree_id`: the tree this link belongs to (one topic level); needs
    /// `tree true`.
    pub tree_id: Option<String>,
    /// `tree_priority`: 0 to 65535, lower wins. Default 32768, the middle.
    /// Needs `tree true`.
    pub tree_priority: u16,
}

/// One `HOST[:PORT]` of `address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeAddress {
    /// A host name or an IP address (an IPv6 one without its brackets).
    pub host: String,
    /// Default 1883.
    pub port: u16,
}

/// One `topic PATTERN [in|out|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeTopic {
    /// The filter, as written: without the prefixes.
    pub pattern: TopicFilter,
    /// Default `out`.
    pub direction: BridgeDirection,
    /// The QoS of the bridge's subscriptions. Default 0.
    pub qos: QoS,
    /// Both prefixes, or neither.
    pub prefixes: Option<TopicPrefixes>,
}

/// Which way a bridge topic's messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeDirection {
    /// From the remote broker to this one.
    In,
    /// From this broker to the remote one.
    Out,
    Both,
}

/// A bridge topic's prefixes: `LOCAL_PREFIX` + pattern here is
/// `REMOTE_PREFIX` + pattern on the remote broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPrefixes {
    pub local: String,
    pub remote: String,
}

/// `restart_timeout`: how long a bridge waits before reconnecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartTimeout {
    /// `restart_timeout SECONDS`: always this long.
    Constant(Duration),
    /// `restart_timeout BASE CAP`: a random wait that grows from `base` up
    /// to `cap` (mosquitto's "decorrelated jitter"). The default, 5 s and
    /// 30 s, as in mosquitto.
    Backoff { base: Duration, cap: Duration },
}

/// `bridge_protocol_version`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BridgeProtocol {
    /// `mqttv311`, the default.
    #[default]
    Mqtt311,
    /// `mqttv31`.
    Mqtt31,
}

impl ListenerConfig {
    /// The block of a `listener` line that is wrong: it takes the block's
    /// keys, and the file is refused anyway.
    pub(super) fn broken(line: usize) -> ListenerConfig {
        ListenerConfig {
            line,
            bind: ListenerBind::Tcp(SocketAddr::new(DEFAULT_LISTENER_ADDRESS, 0)),
            protocol: ListenerProtocol::Mqtt,
            max_connections: None,
            tls: None,
        }
    }
}

impl ConnectionConfig {
    /// A `connection NAME` block before its keys: mosquitto's defaults.
    pub(super) fn new(name: String, line: usize) -> ConnectionConfig {
        ConnectionConfig {
            line,
            name,
            addresses: Vec::new(),
            topics: Vec::new(),
            remote_clientid: None,
            remote_username: None,
            remote_password: None,
            cleansession: false,
            keepalive_interval: 60,
            restart_timeout: RestartTimeout::Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(30),
            },
            try_private: true,
            notifications: true,
            bridge_protocol_version: BridgeProtocol::Mqtt311,
            bridge_cafile: None,
            bridge_certfile: None,
            bridge_keyfile: None,
            bridge_insecure: false,
            tree: false,
            tree_id: None,
            tree_priority: 32768,
        }
    }
}

/// The first word of a value and the rest, trimmed.
fn first_word(value: &str) -> (&str, &str) {
    match value.split_once(char::is_whitespace) {
        Some((first, rest)) => (first, rest.trim()),
        None => (value, ""),
    }
}

/// The value of a `listener` line: `PORT [ADDRESS]`, or `0 PATH`.
pub(super) fn parse_listener(value: &str, line: usize) -> Result<ListenerConfig, String> {
    let (port, address) = first_word(value);
    let port: u16 = parse_whole(port, 0, u16::MAX.into(), "a port number")?;
    let bind = if address.is_empty() {
        ListenerBind::Tcp(SocketAddr::new(DEFAULT_LISTENER_ADDRESS, port))
    } else if let Ok(ip) = address.parse::<IpAddr>() {
        ListenerBind::Tcp(SocketAddr::new(ip, port))
    } else if address.contains('/') {
        if port != 0 {
            return Err(format!(
                "a Unix socket is `listener 0 PATH`: the port must be 0, not {port}"
            ));
        }
        ListenerBind::Unix(PathBuf::from(address))
    } else {
        return Err(format!(
            "`{}` is neither an IP address (such as 127.0.0.1 or ::1) nor a Unix \
             socket path (one with a `/`, such as ./sol.sock)",
            address.escape_debug()
        ));
    };
    Ok(ListenerConfig {
        bind,
        ..ListenerConfig::broken(line)
    })
}

/// The value of a `connection` line: the bridge's name, which becomes a
/// topic level (`$SYS/broker/connection/NAME/state`) and part of a client
/// id, so it is one word with no `/`, `+` or `#`.
pub(super) fn parse_connection_name(value: &str) -> Result<String, String> {
    if value.contains(char::is_whitespace) {
        return Err(format!(
            "`{}` is not a name: a bridge name is one word",
            value.escape_debug()
        ));
    }
    topic_level(value, "a bridge name")?;
    Ok(value.to_string())
}

/// `value` as one topic level: no separator, no wildcard, no U+0000.
fn topic_level(value: &str, what: &str) -> Result<(), String> {
    if value.contains(['/', '+', '#', '\0']) {
        return Err(format!(
            "`{}` is not {what}: it must be one topic level, without `/`, `+` or `#`",
            value.escape_debug()
        ));
    }
    Ok(())
}

/// `protocol mqtt`.
pub(super) fn parse_protocol(value: &str) -> Result<ListenerProtocol, String> {
    match value {
        "mqtt" => Ok(ListenerProtocol::Mqtt),
        "websockets" => Err("`websockets` is not supported yet".to_string()),
        _ => Err(format!(
            "`{}` is not a listener protocol (mqtt)",
            value.escape_debug()
        )),
    }
}

/// `address HOST[:PORT] [HOST[:PORT] ...]`; an IPv6 address with a port
/// goes in brackets: `[::1]:1884`.
pub(super) fn parse_addresses(value: &str) -> Result<Vec<BridgeAddress>, String> {
    value.split_whitespace().map(parse_address).collect()
}

fn parse_address(word: &str) -> Result<BridgeAddress, String> {
    const DEFAULT_PORT: u16 = 1883;
    let bad = |why: &str| format!("`{}` is not HOST[:PORT]: {why}", word.escape_debug());
    let (host, port) = if let Some(rest) = word.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("a `[` without its `]`"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("only an IPv6 address goes in brackets"));
        }
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad("only `:PORT` may follow `]`")),
        }
    } else if word.parse::<IpAddr>().is_ok() {
        (word, None)
    } else {
        match word.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (word, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.parse::<IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return Err(bad("the host is not a host name or an IP address"));
    }
    let port = match port {
        Some(port) => parse_whole(port, 1, u16::MAX.into(), "a port number")
            .map_err(|message| bad(&message))?,
        None => DEFAULT_PORT,
    };
    Ok(BridgeAddress {
        host: host.to_string(),
        port,
    })
}

/// `topic PATTERN [in|out|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]`.
pub(super) fn parse_topic(value: &str) -> Result<BridgeTopic, String> {
    let mut words = value.split_whitespace().peekable();
    let pattern = words.next().unwrap_or_default();
    let pattern = TopicFilter::new(pattern).map_err(|error| {
        format!(
            "`{}` is not a topic filter ({error})",
            pattern.escape_debug()
        )
    })?;
    let direction = match words.peek().copied() {
        Some("in") => Some(BridgeDirection::In),
        Some("out") => Some(BridgeDirection::Out),
        Some("both") => Some(BridgeDirection::Both),
        _ => None,
    };
    if direction.is_some() {
        words.next();
    }
    let mut qos = QoS::AtMostOnce;
    if let Some(word) = words.peek().copied() {
        if word.bytes().all(|b| b.is_ascii_digit()) {
            qos = word
                .parse::<u8>()
                .ok()
                .and_then(QoS::from_u8)
                .ok_or_else(|| format!("`{}` is not a QoS (0, 1 or 2)", word.escape_debug()))?;
            words.next();
        }
    }
    let rest: Vec<&str> = words.collect();
    let prefixes = match rest.as_slice() {
        [] => None,
        [local, remote] => Some(TopicPrefixes {
            local: prefix(local, &pattern)?,
            remote: prefix(remote, &pattern)?,
        }),
        [_] => {
            return Err("give both prefixes, local and remote, or neither".to_string());
        }
        _ => {
            return Err(format!(
                "`{}` is not PATTERN [in|out|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]",
                value.escape_debug()
            ))
        }
    };
    Ok(BridgeTopic {
        pattern,
        direction: direction.unwrap_or(BridgeDirection::Out),
        qos,
        prefixes,
    })
}

/// A prefix, checked to make a valid filter in front of `pattern`.
fn prefix(prefix: &str, pattern: &TopicFilter) -> Result<String, String> {
    if prefix.contains(['+', '#']) {
        return Err(format!(
            "prefix `{}` has a wildcard: a prefix is a plain topic",
            prefix.escape_debug()
        ));
    }
    TopicFilter::new(format!("{prefix}{}", pattern.as_str())).map_err(|error| {
        format!(
            "prefix `{}` and `{pattern}` do not make a topic filter ({error})",
            prefix.escape_debug()
        )
    })?;
    Ok(prefix.to_string())
}

/// `remote_clientid`: the MQTT client id the bridge connects with, at most
/// the 65535 bytes a CONNECT can carry.
pub(super) fn parse_client_id(value: &str) -> Result<String, String> {
    if value.len() > usize::from(u16::MAX) {
        return Err("is longer than the 65535 bytes MQTT allows".to_string());
    }
    Ok(value.to_string())
}

/// `tree_id`: one word, one topic level.
pub(super) fn parse_tree_id(value: &str) -> Result<String, String> {
    if value.contains(char::is_whitespace) {
        return Err(format!(
            "`{}` is not a tree id: it is one word",
            value.escape_debug()
        ));
    }
    topic_level(value, "a tree id")?;
    Ok(value.to_string())
}

/// `restart_timeout BASE [CAP]`: whole seconds, as mosquitto reads them, or
/// durations such as `500ms` or `1m`.
pub(super) fn parse_restart_timeout(value: &str) -> Result<RestartTimeout, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.as_slice() {
        [constant] => Ok(RestartTimeout::Constant(seconds(constant)?)),
        [base, cap] => {
            let (base, cap) = (seconds(base)?, seconds(cap)?);
            if cap < base {
                return Err(format!(
                    "the cap ({}) is shorter than the base ({})",
                    humantime::format_duration(cap),
                    humantime::format_duration(base)
                ));
            }
            Ok(RestartTimeout::Backoff { base, cap })
        }
        _ => Err(format!(
            "`{}` is not BASE [CAP] (such as 5 30)",
            value.escape_debug()
        )),
    }
}

/// A wait above zero and at most a day: whole seconds or a duration.
fn seconds(word: &str) -> Result<Duration, String> {
    let wait = if word.bytes().all(|b| b.is_ascii_digit()) {
        word.parse::<u64>().map(Duration::from_secs).ok()
    } else {
        humantime::parse_duration(word).ok()
    };
    match wait {
        Some(wait) if !wait.is_zero() && wait <= MAX_CONNECT_TIMEOUT => Ok(wait),
        _ => Err(format!(
            "`{}` is not a wait (seconds, or a duration such as 500ms), above \
             zero and at most a day",
            word.escape_debug()
        )),
    }
}

/// `bridge_protocol_version mqttv311|mqttv31`.
pub(super) fn parse_bridge_protocol(value: &str) -> Result<BridgeProtocol, String> {
    match value {
        "mqttv311" => Ok(BridgeProtocol::Mqtt311),
        "mqttv31" => Ok(BridgeProtocol::Mqtt31),
        "mqttv50" => Err("`mqttv50` is not supported yet: sol speaks MQTT 3.1.1".to_string()),
        _ => Err(format!(
            "`{}` is not a protocol version (mqttv311 or mqttv31)",
            value.escape_debug()
        )),
    }
}

/// The rules of `listener` blocks, once the file is read: each TLS one
/// has its certificate and key, and no two listeners (the flat ones
/// included) share a port or a socket path.
pub(super) fn check_listeners(config: &Config, blocks: &[KeyLines]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    // The listeners already seen, with how to name them in a message.
    let mut taken: Vec<(ListenerBind, String)> = Vec::new();
    if let Ok(ip) = config.ip_address.parse::<IpAddr>() {
        if config.tcp_enabled {
            let addr = SocketAddr::new(ip, config.ip_port);
            taken.push((ListenerBind::Tcp(addr), "ip_port".to_string()));
        }
        if let Some(port) = config.security.tls_port {
            let addr = SocketAddr::new(ip, port);
            taken.push((ListenerBind::Tcp(addr), "tls_port".to_string()));
        }
    }
    if let Some(path) = &config.unix_socket {
        taken.push((ListenerBind::Unix(path.clone()), "unix_socket".to_string()));
    }
    for (listener, keys) in config.listeners.iter().zip(blocks) {
        if let Some(tls) = &listener.tls {
            errors.extend(tls.check(|key| keys.get(key).copied()));
        }
        if let Some((_, other)) = taken.iter().find(|(bind, _)| clash(bind, &listener.bind)) {
            errors.push(ConfigError::new(
                listener.line,
                format!(
                    "listener {} is also {other}: each listener needs a port (or path) of its own",
                    Shown(&listener.bind)
                ),
            ));
        }
        taken.push((
            listener.bind.clone(),
            format!("the listener on line {}", listener.line),
        ));
    }
    errors
}

/// Whether two listeners would fight over one port or path. Port 0 picks a
/// free port each time, so it clashes with nothing.
fn clash(a: &ListenerBind, b: &ListenerBind) -> bool {
    match (a, b) {
        (ListenerBind::Unix(a), ListenerBind::Unix(b)) => a == b,
        (ListenerBind::Tcp(a), ListenerBind::Tcp(b)) => {
            a.port() != 0
                && a.port() == b.port()
                && a.is_ipv4() == b.is_ipv4()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => false,
    }
}

/// A listener as a message names it: `127.0.0.1:1883`, `[::1]:1883`,
/// `unix socket /run/sol.sock`.
struct Shown<'a>(&'a ListenerBind);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            ListenerBind::Tcp(addr) => write!(f, "{addr}"),
            ListenerBind::Unix(path) => write!(f, "unix socket {}", path.display()),
        }
    }
}

/// The rules of `connection` blocks, once the file is read.
pub(super) fn check_connections(
    connections: &[ConnectionConfig],
    blocks: &[KeyLines],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (bridge, keys) in connections.iter().zip(blocks) {
        if bridge.name.is_empty() {
            // A `connection` line whose name was refused: said already.
            continue;
        }
        if let Some(first) = names.get(bridge.name.as_str()) {
            errors.push(ConfigError::new(
                bridge.line,
                format!(
                    "duplicate connection name `{}`: already used on line {first}",
                    bridge.name
                ),
            ));
        } else {
            names.insert(&bridge.name, bridge.line);
        }
        if bridge.addresses.is_empty() && !keys.contains_key("address") {
            errors.push(ConfigError::new(
                bridge.line,
                format!("connection `{}` needs an address", bridge.name),
            ));
        }
        // A key that needs another: (the key, what it needs, whether that
        // is there).
        let given = |key| keys.contains_key(key);
        let rules = [
            ("bridge_certfile", "bridge_keyfile", given("bridge_keyfile")),
            (
                "bridge_keyfile",
                "bridge_certfile",
                given("bridge_certfile"),
            ),
            (
                "remote_password",
                "remote_username",
                given("remote_username"),
            ),
            // TLS to the remote broker is on with a CA to check it against.
            ("bridge_certfile", "bridge_cafile", given("bridge_cafile")),
            ("bridge_insecure", "bridge_cafile", given("bridge_cafile")),
            ("tree_id", "tree true", bridge.tree),
            ("tree_priority", "tree true", bridge.tree),
        ];
        for (key, needs, met) in rules {
            if let (Some(&line), false) = (keys.get(key), met) {
                errors.push(ConfigError::new(line, format!("{key} needs {needs}")));
            }
        }
    }
    errors
}

/// The one place bridges are refused, until they are built: every
/// `connection` block is an error on its line.
pub(super) fn refuse_bridges(connections: &[ConnectionConfig]) -> Vec<ConfigError> {
    connections
        .iter()
        .map(|bridge| {
            ConfigError::new(
                bridge.line,
                "bridges (`connection` blocks) are not supported yet".to_string(),
            )
        })
        .collect()
}
