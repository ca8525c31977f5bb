//! The configuration: `sol.conf`, its flat keys and its blocks.
//!
//! This module owns turning the text of a config file into a [`Config`] and
//! reporting every mistake in that text with its line number. It must not
//! know how the settings are used: it opens no socket and starts no logger.
//! The command line is [`crate::cli`]'s.
//!
//! # The file format
//!
//! The format of the original Sol, itself close to mosquitto's, with
//! mosquitto's blocks:
//!
//! ```text
//! # a comment: a line whose first non-blank character is '#'
//! ip_address 127.0.0.1
//! max_request_size 2MB
//!
//! listener 8883 0.0.0.0
//! certfile /etc/sol/server.pem
//! keyfile /etc/sol/server.key
//! ```
//!
//! - One `key value` per line. The key is the first word; the value is the
//!   rest of the line with surrounding blanks removed, so it may contain
//!   blanks and `#` (a path like `/tmp/a#b.sock` stays intact: there are no
//!   trailing comments).
//! - Blank lines are skipped. Keys are case-sensitive; `log_level` values
//!   are not.
//! - The keys before the first block (the flat ones) configure the broker
//!   and its default listeners, as in the original Sol. A `listener PORT
//!   [ADDRESS]` or `connection NAME` line opens a block that runs until the
//!   next block line; the keys in it apply to that block. Which key may go
//!   where is the key table's (`keys.rs`): a broker setting inside a block,
//!   or a block's setting outside it, is an error.
//! - An unknown key, a bad value, a key without a value and a key set twice
//!   in one section are all errors (only `topic` may repeat). Parsing goes
//!   on after an error, so one run reports every mistake in the file, each
//!   with its line number.
//!
//! # Layout
//!
//! - `keys.rs`: the key table, every key declared once.
//! - `values.rs`: numbers, sizes, durations, booleans and their bounds.
//! - `security.rs`: the TLS, password and ACL keys and the rules between them.
//! - `blocks.rs`: `listener` and `connection` blocks and their rules.
//!
//! Every key is documented in README.md (Configuration reference) and in
//! the shipped sol.conf; post 13 (docs/13-housekeeping.md) explains the limits.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod blocks;
mod keys;
mod security;
mod values;

#[cfg(test)]
mod tests;

pub use blocks::{
    BridgeAddress, BridgeDirection, BridgeProtocol, BridgeTopic, ConnectionConfig, ListenerBind,
    ListenerConfig, ListenerProtocol, RestartTimeout, TopicPrefixes, DEFAULT_LISTENER_ADDRESS,
};
pub use security::{ConfigPath, SecurityConfig, TlsConfig, TlsProtocols};

pub(crate) use values::parse_whole;

use blocks::KeyLines;
use keys::Section;

/// How much the broker logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// Every setting of the broker, with its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `ip_address`: where the TCP listener binds. Default `127.0.0.1`.
    pub ip_address: String,
    /// `ip_port`: the TCP listener's port. Default 1883; 0 picks a free port.
    pub ip_port: u16,
    /// Whether the default TCP listener runs: true unless the file names
    /// listeners of its own (`unix_socket`, as in the original Sol, or
    /// `listener` blocks, as in mosquitto) and neither `ip_address` nor
    /// `ip_port`. `-a` and `-p` turn it on.
    pub tcp_enabled: bool,
    /// `unix_socket`: path of a Unix domain socket listener. Default none.
    pub unix_socket: Option<PathBuf>,
    /// `log_level`. Default INFO.
    pub log_level: LogLevel,
    /// `log_path`: append the log to this file instead of stderr.
    pub log_path: Option<PathBuf>,
    /// `tcp_backlog`: the listen backlog. Default 128.
    pub tcp_backlog: u32,
    /// `max_request_size`: the largest packet a client may send, in bytes.
    /// Default 2 MB.
    pub max_request_size: usize,
    /// `connect_timeout`: how long a socket may take to send CONNECT. Default 10 s.
    pub connect_timeout: Duration,
    /// `max_inflight_messages`: QoS 1 and 2 messages sent to one client and
    /// not yet acknowledged. Default 100, as rumqttd's: with mosquitto's 20
    /// a QoS 1 stream to one subscriber wakes the loop for every handful of
    /// PUBACKs, and costs 2.7 times the CPU per message (docs/benchmarks.md,
    /// "The default QoS 1/2 window"); a client that never acknowledges holds
    /// at most this many messages in flight.
    pub max_inflight_messages: usize,
    /// `max_queued_messages`: messages waiting per session beyond the inflight
    /// window (and while offline). Default 1000.
    pub max_queued_messages: usize,
    /// `stats_publish_interval`: how often the `$SOL/broker/...` statistics
    /// are published. Default 10 s; zero turns them off.
    pub stats_publish_interval: Duration,
    /// `max_memory`: the bytes the broker may hold for clients (retained,
    /// queued and inflight messages, output buffers) before it reclaims the
    /// oldest queued messages. Default 2 GB.
    pub max_memory: usize,
    /// `max_connections`: open client connections allowed at once; `None`
    /// (`-1`, the default) for no limit.
    pub max_connections: Option<usize>,
    /// `max_keepalive`: the longest keepalive a client may ask for, in
    /// seconds; also enforced on clients asking for 0. Default 65535; zero
    /// turns the limit off.
    pub max_keepalive: u16,
    /// `retry_interval`: how long an unacknowledged QoS 1 or 2 message waits
    /// before it is sent again to a connected client. Default 20 s; zero
    /// turns resending off (it still happens on reconnect).
    pub retry_interval: Duration,
    /// `persistent_client_expiration`: how long a persistent session
    /// (clean session 0) is kept once its client has gone; `None` (the
    /// default, as in mosquitto) keeps it until the broker stops.
    pub persistent_client_expiration: Option<Duration>,
    /// The TLS listener, authentication and authorization.
    pub security: SecurityConfig,
    /// The `listener` blocks, in file order: listeners beside the default
    /// ones above, which run as before.
    pub listeners: Vec<ListenerConfig>,
    /// The `connection` blocks, in file order: bridges to other brokers.
    /// Refused for now (bridges are not built yet), so a parsed config has
    /// none.
    pub connections: Vec<ConnectionConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ip_address: "127.0.0.1".to_string(),
            ip_port: 1883,
            tcp_enabled: true,
            unix_socket: None,
            log_level: LogLevel::Info,
            log_path: None,
            tcp_backlog: 128,
            max_request_size: 2_000_000,
            connect_timeout: Duration::from_secs(10),
            max_inflight_messages: 100,
            max_queued_messages: 1000,
            stats_publish_interval: Duration::from_secs(10),
            max_memory: 2_000_000_000,
            max_connections: None,
            max_keepalive: u16::MAX,
            retry_interval: Duration::from_secs(20),
            persistent_client_expiration: None,
            security: SecurityConfig::default(),
            listeners: Vec::new(),
            connections: Vec::new(),
        }
    }
}

/// Where `sol` looks for its configuration when `-c` is not given. When that
/// file does not exist the defaults apply, as in the original Sol.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sol/sol.conf";

/// A config file larger than this is refused before it is read: a real one
/// is a few kilobytes, and `-c /dev/zero` must fail, not eat memory.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// One mistake in a config file; its message names the key and quotes the
/// value.
pub type ConfigError = crate::LineError;

impl fmt::Display for LogLevel {
    /// The spelling `log_level` takes in the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        })
    }
}

/// The section a line is in while the file is read, with the lines its
/// keys were set on.
struct Sections {
    current: Section,
    flat: KeyLines,
    listeners: Vec<KeyLines>,
    connections: Vec<KeyLines>,
}

impl Sections {
    fn lines(&mut self) -> &mut KeyLines {
        let block = match self.current {
            Section::Broker => None,
            Section::Listener => self.listeners.last_mut(),
            Section::Connection => self.connections.last_mut(),
        };
        match block {
            Some(lines) => lines,
            None => &mut self.flat,
        }
    }
}

impl Config {
    /// Parses the text of a config file. Keys the text does not set keep
    /// their defaults.
    ///
    /// On failure returns every error found, in line order, not just the
    /// first: fixing a file one error per run is tedious.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        let (config, mut errors) = Config::read(text);
        errors.extend(blocks::refuse_bridges(&config.connections));
        // The checks between keys come last; the report stays in line order.
        errors.sort_by_key(|error| error.line);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Everything [`Config::parse`] does but refuse bridges, so that
    /// `connection` blocks are tested before bridges exist. The errors are
    /// not sorted.
    fn read(text: &str) -> (Config, Vec<ConfigError>) {
        // Editors on some systems start a UTF-8 file with a byte order mark;
        // it is not part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut config = Config::default();
        let mut errors = Vec::new();
        let mut sections = Sections {
            current: Section::Broker,
            flat: KeyLines::new(),
            listeners: Vec::new(),
            connections: Vec::new(),
        };

        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (name, value) = match content.split_once(char::is_whitespace) {
                Some((name, value)) => (name, value.trim()),
                None => (content, ""),
            };
            if let Err(message) = config.line(&mut sections, &mut errors, name, value, line) {
                errors.push(ConfigError::new(line, message));
            }
        }

        // The original Sol's rule: a file that names only a Unix socket wants
        // only the Unix socket; naming either TCP key keeps TCP on. A file
        // with `listener` blocks is the same, as in mosquitto, where the
        // default listener exists only when no other is defined.
        let flat = &sections.flat;
        let sets = |key| flat.contains_key(key);
        let own_listeners = sets("unix_socket") || !config.listeners.is_empty();
        config.tcp_enabled = !own_listeners || sets("ip_address") || sets("ip_port");

        let tcp_port = config.tcp_enabled.then_some(config.ip_port);
        errors.extend(
            config
                .security
                .check(|key| flat.get(key).copied(), tcp_port),
        );
        errors.extend(blocks::check_listeners(&config, &sections.listeners));
        errors.extend(blocks::check_connections(
            &config.connections,
            &sections.connections,
        ));
        (config, errors)
    }

    /// Reads one `name value` line into the section it is in, or opens a
    /// block. Returns the line's error; a duplicate key, which may come with
    /// a second error on its value, is pushed to `errors` directly.
    fn line(
        &mut self,
        sections: &mut Sections,
        errors: &mut Vec<ConfigError>,
        name: &str,
        value: &str,
        line: usize,
    ) -> Result<(), String> {
        match name {
            "listener" => {
                sections.current = Section::Listener;
                sections.listeners.push(KeyLines::new());
                // A wrong `listener` line still opens its block, so that the
                // keys after it are not blamed on the block before.
                let (listener, parsed) = match blocks::parse_listener(value, line) {
                    Ok(listener) => (listener, Ok(())),
                    Err(message) => (ListenerConfig::broken(line), Err(message)),
                };
                self.listeners.push(listener);
                return block_value(name, value, parsed);
            }
            "connection" => {
                sections.current = Section::Connection;
                sections.connections.push(KeyLines::new());
                // A refused name stays empty, so its block is not checked.
                let (bridge_name, parsed) = match blocks::parse_connection_name(value) {
                    Ok(bridge_name) => (bridge_name, Ok(())),
                    Err(message) => (String::new(), Err(message)),
                };
                self.connections
                    .push(ConnectionConfig::new(bridge_name, line));
                return block_value(name, value, parsed);
            }
            _ => {}
        }
        let key =
            keys::find(name).ok_or_else(|| format!("unknown key `{}`", name.escape_debug()))?;
        let section = sections.current;
        if !key.allowed_in(section) {
            return Err(key.misplaced(section));
        }
        let lines = sections.lines();
        match lines.get(key.name) {
            // A second setting is an error naming both lines rather than
            // "last one wins" (which mosquitto allows): in a long file a
            // silent override hides a mistake. Its value is still checked.
            Some(first) if !key.repeats => errors.push(ConfigError::new(
                line,
                format!("duplicate key `{}`: already set on line {first}", key.name),
            )),
            Some(_) => {}
            None => {
                lines.insert(key.name, line);
            }
        }
        if value.is_empty() {
            return Err(format!("`{}` needs a value", key.name));
        }
        self.store(key, section, value, line)
            .map_err(|message| format!("{}: {message}", key.name))
    }

    /// Parses `value` for `key` and stores it in the current block of
    /// `section`.
    fn store(
        &mut self,
        key: &keys::Key,
        section: Section,
        value: &str,
        line: usize,
    ) -> Result<(), String> {
        match section {
            Section::Broker => key.broker.map_or(Ok(()), |store| store(self, value, line)),
            Section::Listener => match (key.listener, self.listeners.last_mut()) {
                (Some(store), Some(listener)) => store(listener, value, line),
                _ => Ok(()),
            },
            Section::Connection => match (key.connection, self.connections.last_mut()) {
                (Some(store), Some(bridge)) => store(bridge, value, line),
                _ => Ok(()),
            },
        }
    }

    /// Reads and parses a config file.
    ///
    /// A file that cannot be read (missing, a directory, no permission, over
    /// 1 MiB) gives one error on line 0 whose message names the path; bytes
    /// that are not UTF-8 give one error on the line where they are.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = crate::textfile::read_text(path, "config file", MAX_FILE_SIZE)
            .map_err(|(line, message)| vec![ConfigError::new(line, message)])?;
        Config::parse(&text)
    }
}

/// The error of a block line: its value is missing or wrong.
fn block_value(name: &str, value: &str, parsed: Result<(), String>) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{name}` needs a value"));
    }
    parsed.map_err(|message| format!("{name}: {message}"))
}
