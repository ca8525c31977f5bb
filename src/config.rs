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

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
/// flight to one client ([MQTT-2.3.1-2]: an id is not reused while in flight).
const MAX_INFLIGHT: u64 = 65_535;

/// One mistake in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The 1-based line the mistake is on; 0 when it is about the file as a
    /// whole (it could not be read).
    pub line: usize,
    /// What is wrong, naming the key and quoting the value.
    pub message: String,
}

impl ConfigError {
    fn new(line: usize, message: String) -> ConfigError {
        ConfigError { line, message }
    }
}

impl fmt::Display for ConfigError {
    /// `line N: message`; an error about the whole file (line 0) is just its
    /// message, which names the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

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
}

impl Key {
    const ALL: [Key; 10] = [
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
            if let Err(message) = config.set(key, value) {
                errors.push(ConfigError::new(line, format!("{}: {message}", key.name())));
            }
        }

        // The original Sol's rule: a file that names only a Unix socket wants
        // only the Unix socket; naming either TCP key keeps TCP on.
        let sets = |key| first_set.contains_key(&key);
        config.tcp_enabled = !sets(Key::UnixSocket) || sets(Key::IpAddress) || sets(Key::IpPort);

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
        let bytes = read_limited(path).map_err(|message| vec![ConfigError::new(0, message)])?;
        let text = String::from_utf8(bytes).map_err(|error| {
            let bytes = error.as_bytes();
            let valid = bytes
                .get(..error.utf8_error().valid_up_to())
                .unwrap_or(bytes);
            let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
            vec![ConfigError::new(line, "not valid UTF-8".to_string())]
        })?;
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
    fn set(&mut self, key: Key, value: &str) -> Result<(), String> {
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
        }
        Ok(())
    }
}

/// Reads at most [`MAX_FILE_SIZE`] bytes of `path`; the error names the path.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let cannot_read =
        |error: std::io::Error| format!("cannot read config file {}: {error}", path.display());
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!(
            "config file {} is larger than {MAX_FILE_SIZE} bytes",
            path.display()
        ));
    }
    Ok(bytes)
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
