//! The configuration: `sol.conf`'s flat `key value` format and the command line.
//!
//! (The parser is being written; the data below is the contract.)

use std::path::PathBuf;
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
