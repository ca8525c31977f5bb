use std::path::PathBuf;
use std::time::Duration;

use super::keys::{Section, KEYS};
use super::values::parse_log_level;
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
    let config = parse_one("unix_socket /tmp/my sol#1.sock\nlog_path  /var/log/sol.log  ").unwrap();
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
fn persistent_client_expiration_reads_mosquitto_units_and_durations() {
    assert_eq!(Config::default().persistent_client_expiration, None);
    const DAY: u64 = 24 * 60 * 60;
    for (value, secs) in [
        ("1h", 60 * 60),
        ("2d", 2 * DAY),
        ("1w", 7 * DAY),
        // mosquitto's month and year, not humantime's minute.
        ("2m", 60 * DAY),
        ("1y", 365 * DAY),
        ("1s", 1),
        ("90s", 90),
        ("30min", 30 * 60),
        ("1h 30min", 90 * 60),
    ] {
        let config = parse_one(&format!("persistent_client_expiration {value}")).unwrap();
        assert_eq!(
            config.persistent_client_expiration,
            Some(Duration::from_secs(secs)),
            "{value}"
        );
    }
    for bad in [
        "0",
        "0s",
        "0d",
        "-1d",
        "h",
        "soon",
        "101y",
        "99999999999999999999y",
    ] {
        let message = error_of(&format!("persistent_client_expiration {bad}"));
        assert!(
            message.starts_with("persistent_client_expiration: "),
            "{bad}: {message}"
        );
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
                max_connections 100\nmax_keepalive 300\nretry_interval 5s\n\
                persistent_client_expiration 1d\n";
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
            persistent_client_expiration: Some(Duration::from_secs(24 * 60 * 60)),
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
            listeners: Vec::new(),
            connections: Vec::new(),
        }
    );
    // Every flat key the parser knows is in the file above.
    for key in KEYS.iter().filter(|key| key.allowed_in(Section::Broker)) {
        assert!(text.contains(key.name), "{}", key.name);
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
    let config = Config::parse(include_str!("../../sol.conf")).unwrap();
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
fn shipped_sol_conf_documents_every_key_but_the_bridges() {
    // Bridges are not built yet: sol.conf leaves `connection` blocks out.
    let text = include_str!("../../sol.conf");
    let documented = KEYS
        .iter()
        .filter(|key| key.allowed_in(Section::Broker) || key.allowed_in(Section::Listener))
        .map(|key| key.name)
        .chain(["listener"]);
    for name in documented {
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("# {name}:"))),
            "sol.conf does not explain {name}"
        );
    }
}

#[test]
fn readme_documents_every_key() {
    let text = include_str!("../../README.md");
    let names = KEYS
        .iter()
        .map(|key| key.name)
        .chain(["listener", "connection"]);
    for name in names {
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("| `{name}")) && line.contains('|')),
            "README.md has no row for {name}"
        );
    }
}

#[test]
fn every_key_is_declared_once() {
    for (index, key) in KEYS.iter().enumerate() {
        assert!(
            KEYS.iter()
                .skip(index + 1)
                .all(|other| other.name != key.name),
            "{} is declared twice",
            key.name
        );
        assert!(
            [Section::Broker, Section::Listener, Section::Connection]
                .into_iter()
                .any(|section| key.allowed_in(section)),
            "{} is allowed nowhere",
            key.name
        );
        assert!(!matches!(key.name, "listener" | "connection"));
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
fn error_display_has_the_line_except_for_the_whole_file() {
    let error = ConfigError::new(12, "unknown key `x`".to_string());
    assert_eq!(error.to_string(), "line 12: unknown key `x`");
    let error = ConfigError::new(0, "cannot read config file /x: gone".to_string());
    assert_eq!(error.to_string(), "cannot read config file /x: gone");
}
