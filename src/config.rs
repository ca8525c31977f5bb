//! The configuration: `sol.conf`'s flat `key value` format and the command line.
//!
//! This module owns turning text (a config file, `argv`) into a [`Config`]
//! and reporting every mistake in that text with its line number. It must not
//! know how the settings are used: it opens no socket and starts no logger.
//!
//! # The file format
//!
//! The format of the original Sol, itself close to mosquitto's:
//!
//! ```text
//! # a comment: a line whose first non-blank character is '#'
//! ip_address 127.0.0.1
//! max_request_size 2MB
//! ```
//!
//! - One `key value` per line. The key is the first word; the value is the
//!   rest of the line with surrounding blanks removed, so it may contain
//!   blanks and `#` (a path like `/tmp/a#b.sock` stays intact: there are no
//!   trailing comments).
//! - Blank lines are skipped. Keys are case-sensitive; `log_level` values
//!   are not.
//! - An unknown key, a bad value, a key without a value and a key set twice
//!   are all errors. Parsing goes on after an error, so one run reports every
//!   mistake in the file, each with its line number.
//!
//! Every key is documented in README.md (Configuration reference) and in
//! the shipped sol.conf; post 13 (docs/13-housekeeping.md) explains the limits.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod security;

pub use security::{ConfigPath, SecurityConfig, TlsProtocols};

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
    /// Whether a TCP listener runs: true unless the file sets `unix_socket`
    /// and neither `ip_address` nor `ip_port` (as in the original Sol).
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
    /// not yet acknowledged. Default 20.
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
    /// The TLS listener, authentication and authorization.
    pub security: SecurityConfig,
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
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            stats_publish_interval: Duration::from_secs(10),
            max_memory: 2_000_000_000,
            max_connections: None,
            max_keepalive: u16::MAX,
            retry_interval: Duration::from_secs(20),
            security: SecurityConfig::default(),
        }
    }
}

/// Where `sol` looks for its configuration when `-c` is not given. When that
/// file does not exist the defaults apply, as in the original Sol.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sol/sol.conf";

/// A config file larger than this is refused before it is read: a real one
/// is a few kilobytes, and `-c /dev/zero` must fail, not eat memory.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The smallest `max_request_size`: a fixed header alone is two bytes, so
/// anything smaller would refuse every packet, even PINGREQ.
const MIN_REQUEST_SIZE: u64 = 2;

/// The largest `max_request_size`: the largest remaining length the MQTT
/// variable byte integer can express (§2.2.3, four bytes of seven bits).
const MAX_REQUEST_SIZE: u64 = 268_435_455;

/// The largest `connect_timeout`. No client needs a day to send CONNECT, so a
/// larger value is a typo (`10d` for `10s`), and bounding it keeps `now +
/// timeout` far from overflowing `Instant` in the timer code.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// `listen(2)` takes an `int`: a larger backlog would wrap to a negative one.
const MAX_TCP_BACKLOG: u64 = i32::MAX as u64;

/// MQTT packet ids are 16 bits, so no more than 65535 messages can be in
/// flight to one client (a server too must not reuse an id still in flight,
/// [MQTT-2.3.1-4]).
const MAX_INFLIGHT: u64 = 65_535;

/// The longest `stats_publish_interval` and `retry_interval`: a day, like
/// `connect_timeout`, for the same reasons.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest `max_memory`: far beyond any machine, small enough that
/// adding a message's size to it cannot overflow a 64-bit `usize`.
const MAX_MEMORY: u64 = 1 << 50;

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

/// The keys the file may set. A closed set, so a typo is an error and not a
/// setting silently ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    IpAddress,
    IpPort,
    UnixSocket,
    LogLevel,
    LogPath,
    TcpBacklog,
    MaxRequestSize,
    ConnectTimeout,
    MaxInflightMessages,
    MaxQueuedMessages,
    StatsPublishInterval,
    MaxMemory,
    MaxConnections,
    MaxKeepalive,
    RetryInterval,
    // Security: the TLS listener, authentication, authorization.
    TlsPort,
    Certfile,
    Keyfile,
    Cafile,
    TlsProtocols,
    RequireCertificate,
    UseIdentityAsUsername,
    AllowAnonymous,
    PasswordFile,
    AclFile,
}

impl Key {
    const ALL: [Key; 25] = [
        Key::IpAddress,
        Key::IpPort,
        Key::UnixSocket,
        Key::LogLevel,
        Key::LogPath,
        Key::TcpBacklog,
        Key::MaxRequestSize,
        Key::ConnectTimeout,
        Key::MaxInflightMessages,
        Key::MaxQueuedMessages,
        Key::StatsPublishInterval,
        Key::MaxMemory,
        Key::MaxConnections,
        Key::MaxKeepalive,
        Key::RetryInterval,
        Key::TlsPort,
        Key::Certfile,
        Key::Keyfile,
        Key::Cafile,
        Key::TlsProtocols,
        Key::RequireCertificate,
        Key::UseIdentityAsUsername,
        Key::AllowAnonymous,
        Key::PasswordFile,
        Key::AclFile,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::IpAddress => "ip_address",
            Key::IpPort => "ip_port",
            Key::UnixSocket => "unix_socket",
            Key::LogLevel => "log_level",
            Key::LogPath => "log_path",
            Key::TcpBacklog => "tcp_backlog",
            Key::MaxRequestSize => "max_request_size",
            Key::ConnectTimeout => "connect_timeout",
            Key::MaxInflightMessages => "max_inflight_messages",
            Key::MaxQueuedMessages => "max_queued_messages",
            Key::StatsPublishInterval => "stats_publish_interval",
            Key::MaxMemory => "max_memory",
            Key::MaxConnections => "max_connections",
            Key::MaxKeepalive => "max_keepalive",
            Key::RetryInterval => "retry_interval",
            Key::TlsPort => "tls_port",
            Key::Certfile => "certfile",
            Key::Keyfile => "keyfile",
            Key::Cafile => "cafile",
            Key::TlsProtocols => "tls_protocols",
            Key::RequireCertificate => "require_certificate",
            Key::UseIdentityAsUsername => "use_identity_as_username",
            Key::AllowAnonymous => "allow_anonymous",
            Key::PasswordFile => "password_file",
            Key::AclFile => "acl_file",
        }
    }

    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.name() == name)
    }
}

impl Config {
    /// Parses the text of a config file. Keys the text does not set keep
    /// their defaults.
    ///
    /// On failure returns every error found, in line order, not just the
    /// first: fixing a file one error per run is tedious.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        // Editors on some systems start a UTF-8 file with a byte order mark;
        // it is not part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut config = Config::default();
        let mut errors = Vec::new();
        // The line each key was first set on. A second setting is an error
        // naming both lines rather than "last one wins" (which mosquitto
        // allows): in a long file a silent override hides a mistake.
        let mut first_set: HashMap<Key, usize> = HashMap::new();

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
            let Some(key) = Key::from_name(name) else {
                errors.push(ConfigError::new(
                    line,
                    format!("unknown key `{}`", name.escape_debug()),
                ));
                continue;
            };
            if let Some(first) = first_set.get(&key) {
                errors.push(ConfigError::new(
                    line,
                    format!(
                        "duplicate key `{}`: already set on line {first}",
                        key.name()
                    ),
                ));
            } else {
                first_set.insert(key, line);
            }
            if value.is_empty() {
                errors.push(ConfigError::new(
                    line,
                    format!("`{}` needs a value", key.name()),
                ));
                continue;
            }
            if let Err(message) = config.set(key, value, line) {
                errors.push(ConfigError::new(line, format!("{}: {message}", key.name())));
            }
        }

        // The original Sol's rule: a file that names only a Unix socket wants
        // only the Unix socket; naming either TCP key keeps TCP on.
        let sets = |key| first_set.contains_key(&key);
        config.tcp_enabled = !sets(Key::UnixSocket) || sets(Key::IpAddress) || sets(Key::IpPort);

        let tcp_port = config.tcp_enabled.then_some(config.ip_port);
        errors.extend(
            config
                .security
                .check(|key| first_set.get(&key).copied(), tcp_port),
        );
        // The checks between keys come last; the report stays in line order.
        errors.sort_by_key(|error| error.line);

        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
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

    /// Lets the command line override the file: `-a` and `-p` set the TCP
    /// listener (and turn it on even when the file named only a Unix
    /// socket), `-v` sets the log level to DEBUG.
    pub fn apply_args(&mut self, args: &Args) {
        if let Some(address) = &args.address {
            self.ip_address = address.clone();
            self.tcp_enabled = true;
        }
        if let Some(port) = args.port {
            self.ip_port = port;
            self.tcp_enabled = true;
        }
        if args.verbose {
            self.log_level = LogLevel::Debug;
        }
    }

    /// Checks `value` for `key` and stores it; the error says what a good
    /// value looks like.
    fn set(&mut self, key: Key, value: &str, line: usize) -> Result<(), String> {
        if self.security.set(key, value, line)? {
            return Ok(());
        }
        match key {
            Key::IpAddress => {
                if value.parse::<IpAddr>().is_err() {
                    return Err(format!(
                        "`{}` is not an IP address (such as 127.0.0.1 or ::1)",
                        value.escape_debug()
                    ));
                }
                self.ip_address = value.to_string();
            }
            Key::IpPort => {
                self.ip_port = parse_whole(value, 0, u16::MAX.into(), "a port number")?;
            }
            Key::UnixSocket => self.unix_socket = Some(PathBuf::from(value)),
            Key::LogLevel => self.log_level = parse_log_level(value)?,
            Key::LogPath => self.log_path = Some(PathBuf::from(value)),
            Key::TcpBacklog => {
                self.tcp_backlog = parse_whole(value, 1, MAX_TCP_BACKLOG, "a backlog")?;
            }
            Key::MaxRequestSize => self.max_request_size = parse_request_size(value)?,
            Key::ConnectTimeout => self.connect_timeout = parse_timeout(value)?,
            Key::MaxInflightMessages => {
                self.max_inflight_messages = parse_whole(value, 1, MAX_INFLIGHT, "a count")?;
            }
            Key::MaxQueuedMessages => {
                // usize is at most 64 bits on every target Rust supports.
                self.max_queued_messages = parse_whole(value, 0, usize::MAX as u64, "a count")?;
            }
            Key::StatsPublishInterval => self.stats_publish_interval = parse_period(value)?,
            Key::MaxMemory => self.max_memory = parse_memory(value)?,
            Key::MaxConnections => self.max_connections = parse_max_connections(value)?,
            Key::MaxKeepalive => {
                self.max_keepalive = parse_whole(value, 0, u16::MAX.into(), "a number of seconds")?;
            }
            Key::RetryInterval => self.retry_interval = parse_period(value)?,
            // Stored by `SecurityConfig::set` above.
            Key::TlsPort
            | Key::Certfile
            | Key::Keyfile
            | Key::Cafile
            | Key::TlsProtocols
            | Key::RequireCertificate
            | Key::UseIdentityAsUsername
            | Key::AllowAnonymous
            | Key::PasswordFile
            | Key::AclFile => {}
        }
        Ok(())
    }
}

/// A decimal integer within `min..=max`, converted to the field's type.
/// `what` names the kind of number in the error ("a port number").
fn parse_whole<T: TryFrom<u64>>(value: &str, min: u64, max: u64, what: &str) -> Result<T, String> {
    let expected = if max == usize::MAX as u64 {
        format!("{what} (a whole number, at least {min})")
    } else {
        format!("{what} (a whole number from {min} to {max})")
    };
    let bad = || format!("`{}` is not {expected}", value.escape_debug());
    // Only digits: `u64::from_str` would also take a leading `+`.
    if !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    let number: u64 = value.parse().map_err(|_| bad())?;
    if number < min || number > max {
        return Err(bad());
    }
    T::try_from(number).map_err(|_| bad())
}

fn parse_log_level(value: &str) -> Result<LogLevel, String> {
    match value.to_ascii_uppercase().as_str() {
        "DEBUG" => Ok(LogLevel::Debug),
        // The original Sol accepts both spellings.
        "INFO" | "INFORMATION" => Ok(LogLevel::Info),
        "WARNING" => Ok(LogLevel::Warning),
        "ERROR" => Ok(LogLevel::Error),
        _ => Err(format!(
            "`{}` is not a log level (DEBUG, INFO, INFORMATION, WARNING or ERROR)",
            value.escape_debug()
        )),
    }
}

/// A size in bytes, with an optional unit as `bytesize` reads it: `100000`,
/// `512KiB`, `2MB` (decimal: 2 000 000), `1.5MiB`.
fn parse_request_size(value: &str) -> Result<usize, String> {
    let out_of_range = || {
        format!(
            "`{}` is out of range: it must be from {MIN_REQUEST_SIZE} bytes to \
             {MAX_REQUEST_SIZE} bytes (256MiB - 1, the largest MQTT packet)",
            value.escape_debug()
        )
    };
    let size = value.parse::<bytesize::ByteSize>().map_err(|_| {
        format!(
            "`{}` is not a size (a number of bytes, optionally with a unit \
             such as 512KiB or 2MB)",
            value.escape_debug()
        )
    })?;
    let bytes = size.as_u64();
    if !(MIN_REQUEST_SIZE..=MAX_REQUEST_SIZE).contains(&bytes) {
        return Err(out_of_range());
    }
    usize::try_from(bytes).map_err(|_| out_of_range())
}

/// A duration as `humantime` reads it: `10s`, `1m`, `1m 30s`, `500ms`.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(value).map_err(|error| {
        format!(
            "`{}` is not a duration such as 10s or 1m ({error})",
            value.escape_debug()
        )
    })?;
    if timeout.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    if timeout > MAX_CONNECT_TIMEOUT {
        return Err(format!(
            "`{}` is longer than the limit of {}",
            value.escape_debug(),
            humantime::format_duration(MAX_CONNECT_TIMEOUT)
        ));
    }
    Ok(timeout)
}

/// A period that may be zero (turned off): `stats_publish_interval` and
/// `retry_interval`. A bare `0` is accepted as well as `0s`.
fn parse_period(value: &str) -> Result<Duration, String> {
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let period = humantime::parse_duration(value).map_err(|error| {
        format!(
            "`{}` is not a duration such as 10s or 1m, or 0 for off ({error})",
            value.escape_debug()
        )
    })?;
    if period > MAX_PERIOD {
        return Err(format!(
            "`{}` is longer than the limit of {}",
            value.escape_debug(),
            humantime::format_duration(MAX_PERIOD)
        ));
    }
    Ok(period)
}

/// `max_memory`: a size as `bytesize` reads it (`2GB`, `512MiB`), above zero.
fn parse_memory(value: &str) -> Result<usize, String> {
    let size = value.parse::<bytesize::ByteSize>().map_err(|_| {
        format!(
            "`{}` is not a size (a number of bytes, optionally with a unit \
             such as 512MiB or 2GB)",
            value.escape_debug()
        )
    })?;
    let bytes = size.as_u64();
    if bytes == 0 || bytes > MAX_MEMORY {
        return Err(format!(
            "`{}` is out of range: it must be more than 0 bytes and at most {}",
            value.escape_debug(),
            bytesize::ByteSize::b(MAX_MEMORY)
        ));
    }
    usize::try_from(bytes).map_err(|_| format!("`{}` does not fit in memory", value.escape_debug()))
}

/// `max_connections`: `-1` for no limit, as in mosquitto, or a positive count.
fn parse_max_connections(value: &str) -> Result<Option<usize>, String> {
    if value == "-1" {
        return Ok(None);
    }
    parse_whole(value, 1, usize::MAX as u64, "a count (or -1 for no limit)").map(Some)
}

/// What the command line asks for when it asks to run the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `-c FILE`: the config file. Without it, [`DEFAULT_CONFIG_PATH`] if it
    /// exists, else the defaults.
    pub config_path: Option<PathBuf>,
    /// `-v`: log at DEBUG whatever the file says.
    pub verbose: bool,
    /// `-a ADDR`: the TCP listener's address, checked to be an IP address.
    pub address: Option<String>,
    /// `-p PORT`: the TCP listener's port.
    pub port: Option<u16>,
    /// `--test-config`: check the configuration, report, and exit.
    pub test_config: bool,
}

/// What the command line asks `sol` to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Args),
    /// `-h` or `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Parses the arguments after the program name.
///
/// Options are read left to right: `-h` and `--version` answer at once
/// (later arguments are not looked at), an option given twice keeps its last
/// value (so a wrapper script can append overrides), and an option's value is
/// the next argument whatever it looks like, as with `getopt` (`-cFILE` is not
/// accepted). The error is one line, without the usage text.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            "-v" => parsed.verbose = true,
            "--test-config" => parsed.test_config = true,
            "-c" => parsed.config_path = Some(PathBuf::from(option_value(&mut args, "-c")?)),
            "-a" => {
                let address = option_value(&mut args, "-a")?;
                if address.parse::<IpAddr>().is_err() {
                    return Err(format!(
                        "-a: `{}` is not an IP address",
                        address.escape_debug()
                    ));
                }
                parsed.address = Some(address);
            }
            "-p" => {
                let port = option_value(&mut args, "-p")?;
                let number = parse_whole(&port, 0, u16::MAX.into(), "a port number")
                    .map_err(|message| format!("-p: {message}"))?;
                parsed.port = Some(number);
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option `{}`", other.escape_debug()))
            }
            other => return Err(format!("unexpected argument `{}`", other.escape_debug())),
        }
    }
    Ok(Command::Run(parsed))
}

fn option_value(args: &mut impl Iterator<Item = String>, option: &str) -> Result<String, String> {
    args.next()
        .ok_or_else(|| format!("option {option} needs a value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(line: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse(line)
    }

    /// The single error a one-line file gives, which must be on line 1.
    fn error_of(line: &str) -> String {
        let errors = parse_one(line).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 1);
        errors[0].message.clone()
    }

    fn args(list: &[&str]) -> Result<Command, String> {
        parse_args(list.iter().map(|arg| arg.to_string()))
    }

    fn run_args(list: &[&str]) -> Args {
        match args(list) {
            Ok(Command::Run(args)) => args,
            other => panic!("{list:?} gave {other:?}"),
        }
    }

    /// A file under the system temp directory, unique to this process and
    /// test, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("sol-config-test-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn empty_text_comments_and_blank_lines_give_the_defaults() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
        let text = "# a comment\n\n   \n\t# indented comment\n#ip_port 1\n";
        assert_eq!(Config::parse(text), Ok(Config::default()));
    }

    #[test]
    fn ip_address_takes_ipv4_and_ipv6() {
        assert_eq!(
            parse_one("ip_address 0.0.0.0").unwrap().ip_address,
            "0.0.0.0"
        );
        assert_eq!(parse_one("ip_address ::1").unwrap().ip_address, "::1");
        for bad in ["localhost", "256.0.0.1", "1.2.3", "127.0.0.1:1883", "::1%"] {
            let message = error_of(&format!("ip_address {bad}"));
            assert!(message.starts_with("ip_address: "), "{message}");
            assert!(message.contains(bad), "{message}");
        }
    }

    #[test]
    fn ip_port_is_a_u16() {
        assert_eq!(parse_one("ip_port 0").unwrap().ip_port, 0);
        assert_eq!(parse_one("ip_port 8883").unwrap().ip_port, 8883);
        assert_eq!(parse_one("ip_port 65535").unwrap().ip_port, 65535);
        for bad in [
            "65536",
            "-1",
            "+80",
            "80a",
            "0x50",
            "1 883",
            "99999999999999999999999",
        ] {
            let message = error_of(&format!("ip_port {bad}"));
            assert!(message.contains("0 to 65535"), "{bad}: {message}");
        }
    }

    #[test]
    fn unix_socket_and_log_path_are_paths_kept_whole() {
        let config =
            parse_one("unix_socket /tmp/my sol#1.sock\nlog_path  /var/log/sol.log  ").unwrap();
        assert_eq!(
            config.unix_socket,
            Some(PathBuf::from("/tmp/my sol#1.sock"))
        );
        assert_eq!(config.log_path, Some(PathBuf::from("/var/log/sol.log")));
    }

    #[test]
    fn log_level_accepts_every_spelling_in_any_case() {
        let cases = [
            ("DEBUG", LogLevel::Debug),
            ("debug", LogLevel::Debug),
            ("INFO", LogLevel::Info),
            ("Information", LogLevel::Info),
            ("WARNING", LogLevel::Warning),
            ("warning", LogLevel::Warning),
            ("ERROR", LogLevel::Error),
            ("eRRoR", LogLevel::Error),
        ];
        for (text, level) in cases {
            let config = parse_one(&format!("log_level {text}")).unwrap();
            assert_eq!(config.log_level, level, "{text}");
        }
        for bad in ["WARN", "TRACE", "verbose", "INFO INFO"] {
            let message = error_of(&format!("log_level {bad}"));
            assert!(message.contains("not a log level"), "{message}");
        }
    }

    #[test]
    fn log_level_display_is_a_spelling_the_parser_accepts() {
        for level in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warning,
            LogLevel::Error,
        ] {
            assert_eq!(parse_log_level(&level.to_string()), Ok(level));
        }
    }

    #[test]
    fn tcp_backlog_is_positive_and_fits_listen() {
        assert_eq!(parse_one("tcp_backlog 1").unwrap().tcp_backlog, 1);
        assert_eq!(parse_one("tcp_backlog 4096").unwrap().tcp_backlog, 4096);
        assert_eq!(
            parse_one("tcp_backlog 2147483647").unwrap().tcp_backlog,
            2_147_483_647
        );
        for bad in ["0", "2147483648", "-5", "many"] {
            let message = error_of(&format!("tcp_backlog {bad}"));
            assert!(message.starts_with("tcp_backlog: "), "{message}");
        }
    }

    #[test]
    fn max_request_size_takes_bytesize_units() {
        let cases = [
            ("100000", 100_000),
            ("2MB", 2_000_000),
            ("2mb", 2_000_000),
            ("512KiB", 524_288),
            ("1.5KiB", 1536),
            ("2", 2),
            ("268435455", 268_435_455),
            ("255MiB", 267_386_880),
        ];
        for (text, bytes) in cases {
            let config = parse_one(&format!("max_request_size {text}")).unwrap();
            assert_eq!(config.max_request_size, bytes, "{text}");
        }
        for bad in [
            "0",
            "1",
            "268435456",
            "256MiB",
            "1GB",
            "99999999999999999999PB",
        ] {
            let message = error_of(&format!("max_request_size {bad}"));
            assert!(message.contains("out of range"), "{bad}: {message}");
        }
        for bad in ["lots", "-2MB", "2 furlongs", "MB"] {
            let message = error_of(&format!("max_request_size {bad}"));
            assert!(message.contains("not a size"), "{bad}: {message}");
        }
    }

    #[test]
    fn connect_timeout_takes_humantime_durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("1m", Duration::from_secs(60)),
            ("1m 30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("24h", Duration::from_secs(86_400)),
        ];
        for (text, duration) in cases {
            let config = parse_one(&format!("connect_timeout {text}")).unwrap();
            assert_eq!(config.connect_timeout, duration, "{text}");
        }
        for bad in ["0", "0s", "10", "ten seconds", "-1s"] {
            let message = error_of(&format!("connect_timeout {bad}"));
            assert!(message.starts_with("connect_timeout: "), "{message}");
        }
        let message = error_of("connect_timeout 25h");
        assert!(message.contains("longer than the limit"), "{message}");
    }

    #[test]
    fn max_inflight_messages_fits_packet_ids() {
        assert_eq!(
            parse_one("max_inflight_messages 1")
                .unwrap()
                .max_inflight_messages,
            1
        );
        assert_eq!(
            parse_one("max_inflight_messages 65535")
                .unwrap()
                .max_inflight_messages,
            65535
        );
        for bad in ["0", "65536", "-1", "x"] {
            let message = error_of(&format!("max_inflight_messages {bad}"));
            assert!(message.contains("from 1 to 65535"), "{bad}: {message}");
        }
    }

    #[test]
    fn max_queued_messages_may_be_zero() {
        assert_eq!(
            parse_one("max_queued_messages 0")
                .unwrap()
                .max_queued_messages,
            0
        );
        assert_eq!(
            parse_one("max_queued_messages 100000")
                .unwrap()
                .max_queued_messages,
            100_000
        );
        for bad in ["-1", "1e3", "18446744073709551616"] {
            let message = error_of(&format!("max_queued_messages {bad}"));
            assert!(message.contains("at least 0"), "{bad}: {message}");
        }
    }

    #[test]
    fn periods_may_be_zero_to_turn_them_off() {
        for key in ["stats_publish_interval", "retry_interval"] {
            for off in ["0", "0s", "0ms"] {
                let config = parse_one(&format!("{key} {off}")).unwrap();
                assert_eq!(
                    config.stats_publish_interval.is_zero(),
                    key.starts_with("stats")
                );
                assert_eq!(config.retry_interval.is_zero(), key.starts_with("retry"));
            }
            let config = parse_one(&format!("{key} 1m 30s")).unwrap();
            let period = if key.starts_with("stats") {
                config.stats_publish_interval
            } else {
                config.retry_interval
            };
            assert_eq!(period, Duration::from_secs(90));
            for bad in ["10", "-1s", "often", "25h"] {
                let message = error_of(&format!("{key} {bad}"));
                assert!(message.starts_with(&format!("{key}: ")), "{message}");
            }
        }
    }

    #[test]
    fn max_memory_takes_sizes_above_zero() {
        assert_eq!(
            parse_one("max_memory 2GB").unwrap().max_memory,
            2_000_000_000
        );
        assert_eq!(
            parse_one("max_memory 64MiB").unwrap().max_memory,
            67_108_864
        );
        assert_eq!(parse_one("max_memory 1").unwrap().max_memory, 1);
        for bad in ["0", "0GB", "2PiB"] {
            let message = error_of(&format!("max_memory {bad}"));
            assert!(message.contains("out of range"), "{bad}: {message}");
        }
        for bad in ["lots", "-1GB"] {
            let message = error_of(&format!("max_memory {bad}"));
            assert!(message.contains("not a size"), "{bad}: {message}");
        }
    }

    #[test]
    fn max_connections_is_minus_one_or_positive() {
        assert_eq!(
            parse_one("max_connections -1").unwrap().max_connections,
            None
        );
        assert_eq!(
            parse_one("max_connections 1").unwrap().max_connections,
            Some(1)
        );
        assert_eq!(Config::default().max_connections, None);
        for bad in ["0", "-2", "many", "+5"] {
            let message = error_of(&format!("max_connections {bad}"));
            assert!(message.contains("-1 for no limit"), "{bad}: {message}");
        }
    }

    #[test]
    fn max_keepalive_is_a_u16_and_zero_means_no_limit() {
        assert_eq!(parse_one("max_keepalive 0").unwrap().max_keepalive, 0);
        assert_eq!(parse_one("max_keepalive 60").unwrap().max_keepalive, 60);
        assert_eq!(Config::default().max_keepalive, 65535);
        for bad in ["65536", "-1", "60s"] {
            let message = error_of(&format!("max_keepalive {bad}"));
            assert!(message.contains("0 to 65535"), "{bad}: {message}");
        }
    }

    #[test]
    fn every_key_is_accepted_once() {
        let text = "ip_address 10.0.0.1\nip_port 1884\nunix_socket /run/sol.sock\n\
                    log_level warning\nlog_path /tmp/x.log\ntcp_backlog 64\n\
                    max_request_size 1MiB\nconnect_timeout 5s\n\
                    max_inflight_messages 10\nmax_queued_messages 50\n\
                    tls_port 8884\ncertfile c.pem\nkeyfile k.pem\ncafile ca.pem\n\
                    tls_protocols tlsv1_3\nrequire_certificate true\n\
                    use_identity_as_username true\nallow_anonymous false\n\
                    password_file p\nacl_file a\n\
                    stats_publish_interval 1m\nmax_memory 512MiB\n\
                    max_connections 100\nmax_keepalive 300\nretry_interval 5s\n";
        let config = Config::parse(text).unwrap();
        let path = |path: &str, line| {
            Some(ConfigPath {
                path: PathBuf::from(path),
                line,
            })
        };
        assert_eq!(
            config,
            Config {
                ip_address: "10.0.0.1".to_string(),
                ip_port: 1884,
                tcp_enabled: true,
                unix_socket: Some(PathBuf::from("/run/sol.sock")),
                log_level: LogLevel::Warning,
                log_path: Some(PathBuf::from("/tmp/x.log")),
                tcp_backlog: 64,
                max_request_size: 1_048_576,
                connect_timeout: Duration::from_secs(5),
                max_inflight_messages: 10,
                max_queued_messages: 50,
                stats_publish_interval: Duration::from_secs(60),
                max_memory: 536_870_912,
                max_connections: Some(100),
                max_keepalive: 300,
                retry_interval: Duration::from_secs(5),
                security: SecurityConfig {
                    tls_port: Some(8884),
                    certfile: path("c.pem", 12),
                    keyfile: path("k.pem", 13),
                    cafile: path("ca.pem", 14),
                    tls_protocols: TlsProtocols {
                        tls12: false,
                        tls13: true,
                    },
                    require_certificate: true,
                    use_identity_as_username: true,
                    allow_anonymous: false,
                    password_file: path("p", 19),
                    acl_file: path("a", 20),
                },
            }
        );
        // Every key the parser knows is in the file above.
        for key in Key::ALL {
            assert!(text.contains(key.name()), "{}", key.name());
        }
    }

    #[test]
    fn unknown_key_names_its_line() {
        let errors = Config::parse("ip_port 1884\n\n# x\nmemory_limit 2GB\n").unwrap_err();
        assert_eq!(
            errors,
            vec![ConfigError {
                line: 4,
                message: "unknown key `memory_limit`".to_string()
            }]
        );
        assert_eq!(errors[0].to_string(), "line 4: unknown key `memory_limit`");
    }

    #[test]
    fn keys_are_case_sensitive() {
        assert_eq!(error_of("IP_PORT 1883"), "unknown key `IP_PORT`");
    }

    #[test]
    fn key_without_value_is_an_error() {
        assert_eq!(error_of("ip_port"), "`ip_port` needs a value");
        assert_eq!(error_of("  log_path   \t "), "`log_path` needs a value");
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = "\
# header
ip_port 70000
log_level LOUD

bogus 1
tcp_backlog 64
connect_timeout 0s
ip_port 1
";
        let errors = Config::parse(text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|error| error.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 7, 8]);
        assert!(errors[0].message.starts_with("ip_port: "));
        assert!(errors[1].message.starts_with("log_level: "));
        assert_eq!(errors[2].message, "unknown key `bogus`");
        assert!(errors[3].message.starts_with("connect_timeout: "));
        assert_eq!(
            errors[4].message,
            "duplicate key `ip_port`: already set on line 2"
        );
    }

    #[test]
    fn duplicate_key_names_both_lines_even_with_equal_values() {
        let errors = Config::parse("log_level INFO\nip_port 1\nlog_level INFO\n").unwrap_err();
        assert_eq!(
            errors,
            vec![ConfigError {
                line: 3,
                message: "duplicate key `log_level`: already set on line 1".to_string()
            }]
        );
    }

    #[test]
    fn separators_and_line_endings_are_flexible() {
        let config = Config::parse(
            "\u{feff}ip_port\t\t1884\r\n   log_level    debug   \r\n\tmax_queued_messages 7",
        )
        .unwrap();
        assert_eq!(config.ip_port, 1884);
        assert_eq!(config.log_level, LogLevel::Debug);
        assert_eq!(config.max_queued_messages, 7);
    }

    #[test]
    fn a_hash_after_a_value_is_part_of_the_value() {
        // No trailing comments: this is a bad port, not port 1883.
        let message = error_of("ip_port 1883 # the default");
        assert!(message.contains("1883 # the default"), "{message}");
    }

    #[test]
    fn control_characters_in_errors_are_escaped() {
        let errors = Config::parse("bad\u{1b}[2Jkey 1\n").unwrap_err();
        assert_eq!(errors[0].message, "unknown key `bad\\u{1b}[2Jkey`");
    }

    #[test]
    fn tcp_stays_on_unless_only_a_unix_socket_is_named() {
        let tcp = |text: &str| Config::parse(text).unwrap().tcp_enabled;
        assert!(tcp(""));
        assert!(tcp("log_level INFO"));
        assert!(!tcp("unix_socket /tmp/sol.sock"));
        assert!(tcp("unix_socket /tmp/sol.sock\nip_address 127.0.0.1"));
        assert!(tcp("unix_socket /tmp/sol.sock\nip_port 1883"));
        assert!(tcp("ip_port 1883"));
        // A commented-out TCP key does not count.
        assert!(!tcp("# ip_port 1883\nunix_socket /tmp/sol.sock"));
    }

    #[test]
    fn shipped_sol_conf_parses_to_its_documented_settings() {
        let config = Config::parse(include_str!("../sol.conf")).unwrap();
        assert_eq!(
            config,
            Config {
                unix_socket: Some(PathBuf::from("/tmp/sol.sock")),
                ..Config::default()
            }
        );
        assert!(config.tcp_enabled);
        assert_eq!(config.log_path, None);
    }

    #[test]
    fn shipped_sol_conf_documents_every_key() {
        let text = include_str!("../sol.conf");
        for key in Key::ALL {
            assert!(
                text.lines()
                    .any(|line| line.starts_with(&format!("# {}:", key.name()))),
                "sol.conf does not explain {}",
                key.name()
            );
        }
    }

    #[test]
    fn load_reads_a_file() {
        let file = TempFile::new("good.conf", b"ip_port 1999\n");
        assert_eq!(Config::load(&file.0).unwrap().ip_port, 1999);
    }

    #[test]
    fn load_reports_a_missing_file_on_line_zero_naming_it() {
        let path = std::env::temp_dir().join("sol-config-test-no-such-file.conf");
        let errors = Config::load(&path).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 0);
        assert!(errors[0].message.contains(&path.display().to_string()));
        assert!(errors[0].to_string().starts_with("cannot read config file"));
    }

    #[test]
    fn load_reports_the_line_of_bytes_that_are_not_utf8() {
        let file = TempFile::new("latin1.conf", b"ip_port 1\n# caf\xe9\nlog_level INFO\n");
        assert_eq!(
            Config::load(&file.0),
            Err(vec![ConfigError {
                line: 2,
                message: "not valid UTF-8".to_string()
            }])
        );
    }

    #[test]
    fn load_refuses_a_huge_file() {
        let mut contents = b"# ".to_vec();
        contents.resize(MAX_FILE_SIZE as usize + 1, b'x');
        let file = TempFile::new("huge.conf", &contents);
        let errors = Config::load(&file.0).unwrap_err();
        assert_eq!(errors[0].line, 0);
        assert!(errors[0].message.contains("larger than"), "{errors:?}");
        // Exactly at the limit is fine.
        contents.truncate(MAX_FILE_SIZE as usize);
        let file = TempFile::new("limit.conf", &contents);
        assert_eq!(Config::load(&file.0), Ok(Config::default()));
    }

    #[test]
    fn load_reports_every_error_with_lines() {
        let file = TempFile::new("bad.conf", b"ip_port x\nfoo 1\n");
        let errors = Config::load(&file.0).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|error| error.line).collect();
        assert_eq!(lines, vec![1, 2]);
    }

    #[test]
    fn no_arguments_runs_with_nothing_overridden() {
        assert_eq!(args(&[]), Ok(Command::Run(Args::default())));
    }

    #[test]
    fn every_flag_is_parsed() {
        let parsed = run_args(&[
            "-c",
            "/etc/x.conf",
            "-v",
            "-a",
            "::",
            "-p",
            "8883",
            "--test-config",
        ]);
        assert_eq!(
            parsed,
            Args {
                config_path: Some(PathBuf::from("/etc/x.conf")),
                verbose: true,
                address: Some("::".to_string()),
                port: Some(8883),
                test_config: true,
            }
        );
    }

    #[test]
    fn help_and_version_answer_at_once() {
        assert_eq!(args(&["-h"]), Ok(Command::Help));
        assert_eq!(args(&["--help"]), Ok(Command::Help));
        assert_eq!(args(&["--version"]), Ok(Command::Version));
        assert_eq!(args(&["-v", "--help", "--bogus"]), Ok(Command::Help));
        assert_eq!(args(&["--version", "-h"]), Ok(Command::Version));
    }

    #[test]
    fn a_repeated_option_keeps_its_last_value() {
        assert_eq!(run_args(&["-p", "1", "-p", "2"]).port, Some(2));
    }

    #[test]
    fn option_values_are_taken_verbatim() {
        // As with getopt: the word after -c is the file, even if it looks like a flag.
        assert_eq!(
            run_args(&["-c", "-v"]).config_path,
            Some(PathBuf::from("-v"))
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        let cases = [
            (&["-x"][..], "unknown option `-x`"),
            (&["--verbose"][..], "unknown option `--verbose`"),
            (&["-cfile.conf"][..], "unknown option `-cfile.conf`"),
            (&["-"][..], "unknown option `-`"),
            (&["sol.conf"][..], "unexpected argument `sol.conf`"),
            (&["-c"][..], "option -c needs a value"),
            (&["-v", "-a"][..], "option -a needs a value"),
            (&["-p"][..], "option -p needs a value"),
            (
                &["-a", "localhost"][..],
                "-a: `localhost` is not an IP address",
            ),
        ];
        for (list, expected) in cases {
            assert_eq!(args(list), Err(expected.to_string()), "{list:?}");
        }
        for port in ["65536", "-1", "http", ""] {
            let error = args(&["-p", port]).unwrap_err();
            assert!(error.starts_with("-p: "), "{error}");
            assert!(error.contains("0 to 65535"), "{error}");
        }
    }

    #[test]
    fn args_override_the_file() {
        let mut config = Config::parse("unix_socket /tmp/s\nlog_level ERROR").unwrap();
        assert!(!config.tcp_enabled);
        config.apply_args(&Args::default());
        assert!(!config.tcp_enabled);
        assert_eq!(config.log_level, LogLevel::Error);

        let mut with_port = config.clone();
        with_port.apply_args(&run_args(&["-p", "0"]));
        assert!(with_port.tcp_enabled);
        assert_eq!(with_port.ip_port, 0);
        assert_eq!(with_port.ip_address, "127.0.0.1");

        let mut with_address = config.clone();
        with_address.apply_args(&run_args(&["-a", "0.0.0.0", "-v"]));
        assert!(with_address.tcp_enabled);
        assert_eq!(with_address.ip_address, "0.0.0.0");
        assert_eq!(with_address.ip_port, 1883);
        assert_eq!(with_address.log_level, LogLevel::Debug);
        assert_eq!(with_address.unix_socket, Some(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn error_display_has_the_line_except_for_the_whole_file() {
        let error = ConfigError::new(12, "unknown key `x`".to_string());
        assert_eq!(error.to_string(), "line 12: unknown key `x`");
        let error = ConfigError::new(0, "cannot read config file /x: gone".to_string());
        assert_eq!(error.to_string(), "cannot read config file /x: gone");
    }
}
