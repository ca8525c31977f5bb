//! The `sol` binary's command line, run as a real process: exit codes, what
//! goes to stdout and stderr, and `--test-config` on good and bad files.
//! Also the logger, which can only be installed once per process and so
//! gets this test binary's process to itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sol<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    Command::new(env!("CARGO_BIN_EXE_sol"))
        .args(args.into_iter().map(Into::into))
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A file in cargo's scratch directory for integration tests.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn version_prints_the_crate_version() {
    let output = sol(["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        format!("sol {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(stderr(&output), "");
}

#[test]
fn help_prints_usage_to_stdout() {
    for flag in ["-h", "--help"] {
        let output = sol([flag]);
        assert_eq!(output.status.code(), Some(0), "{flag}");
        let text = stdout(&output);
        assert!(text.starts_with("Usage: sol"), "{text}");
        for option in [
            "-c FILE",
            "-v",
            "-a ADDR",
            "-p PORT",
            "--test-config",
            "--version",
        ] {
            assert!(text.contains(option), "usage lacks {option}");
        }
        assert_eq!(stderr(&output), "");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = sol(["--frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.starts_with("sol: unknown option `--frobnicate`\n"),
        "{text}"
    );
    assert!(text.contains("Usage: sol"), "{text}");
    assert_eq!(stdout(&output), "");
}

#[test]
fn stray_argument_and_missing_value_are_usage_errors() {
    let output = sol(["sol.conf"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unexpected argument `sol.conf`"));

    let output = sol(["--test-config", "-c"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("option -c needs a value"));

    let output = sol(["--test-config", "-p", "70000"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("-p: `70000`"));
}

#[cfg(unix)]
#[test]
fn argument_that_is_not_utf8_is_a_usage_error_not_a_panic() {
    use std::os::unix::ffi::OsStringExt;
    let output = sol([
        OsString::from("-c"),
        OsString::from_vec(b"caf\xe9".to_vec()),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not valid UTF-8"));
}

#[test]
fn test_config_accepts_a_good_file() {
    let path = temp_file("good.conf", "# fine\nip_port 1999\nlog_level debug\n");
    let output = sol([
        OsString::from("--test-config"),
        OsString::from("-c"),
        path.into(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("configuration OK"), "{text}");
    assert!(text.contains("tcp 127.0.0.1:1999"), "{text}");
    assert_eq!(stderr(&output), "");
}

#[test]
fn test_config_reports_every_bad_line() {
    let path = temp_file(
        "bad.conf",
        "ip_port 1883\nip_port 1884\n# ok\nlog_level LOUD\nmemory_limit 2GB\n",
    );
    let output = sol([
        OsString::from("--test-config"),
        OsString::from("-c"),
        path.clone().into(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    let text = stderr(&output);
    let shown = path.display();
    for expected in [
        format!("sol: {shown}: line 2: duplicate key `ip_port`: already set on line 1\n"),
        format!("sol: {shown}: line 4: log_level: `LOUD` is not a log level"),
        format!("sol: {shown}: line 5: unknown key `memory_limit`\n"),
        "sol: 3 errors in the configuration\n".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn test_config_reports_misplaced_keys_and_bridges_by_line() {
    let path = temp_file(
        "blocks.conf",
        "ip_port 1999
listener 1884
max_memory 1GB
connection far
address h
",
    );
    let output = sol([
        OsString::from("--test-config"),
        OsString::from("-c"),
        path.clone().into(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    let shown = path.display();
    for expected in [
        format!(
            "sol: {shown}: line 3: `max_memory` is a broker setting and cannot be set \
             inside a `listener` block\n"
        ),
        format!("sol: {shown}: line 4: bridges (`connection` blocks) are not supported yet\n"),
        "sol: 2 errors in the configuration\n".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn test_config_lists_block_listeners_after_the_default_ones() {
    let path = temp_file(
        "listeners.conf",
        "unix_socket /tmp/cli-test-blocks.sock\nlistener 1884 ::\nlistener 0 ./cli.sock\n",
    );
    let output = sol([
        OsString::from("--test-config"),
        OsString::from("-c"),
        path.into(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // No default TCP listener: the file names listeners of its own.
    let text = stdout(&output);
    assert!(
        text.contains(
            "listeners: unix socket /tmp/cli-test-blocks.sock and tcp [::]:1884 \
             and unix socket ./cli.sock\n"
        ),
        "{text}"
    );
}

#[test]
fn test_config_reads_the_tls_files_of_every_listener_block() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let missing = dir.join("cli-block-missing-cert.pem");
    let key = temp_file("block.key", "not a key\n");
    let path = temp_file(
        "tls-block.conf",
        &format!(
            "listener 0\nlistener 0\ncertfile {}\nkeyfile {}\n",
            missing.display(),
            key.display()
        ),
    );
    let output = sol([
        OsString::from("--test-config"),
        OsString::from("-c"),
        path.clone().into(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stderr(&output);
    // Each file is blamed on the line of the block that named it.
    for expected in [
        format!("{}: line 3: certfile {}", path.display(), missing.display()),
        format!("{}: line 4: keyfile {}", path.display(), key.display()),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn test_config_names_a_missing_file() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-does-not-exist.conf");
    let output = sol([
        OsString::from("--test-config"),
        OsString::from("-c"),
        path.clone().into(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains(&format!("cannot read config file {}", path.display())),
        "{text}"
    );
}

#[test]
fn test_config_accepts_the_shipped_sol_conf() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sol.conf");
    let output = sol([
        OsString::from("--test-config"),
        OsString::from("-c"),
        path.into(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("tcp 127.0.0.1:1883 and unix socket /tmp/sol.sock"),
        "{text}"
    );
}

#[test]
fn flags_override_the_file() {
    // A file with only a Unix socket means no TCP, until -a or -p asks for it.
    let path = temp_file("unix-only.conf", "unix_socket /tmp/cli-test.sock\n");
    let arg = |text: &str| OsString::from(text);
    let output = sol([arg("--test-config"), arg("-c"), path.clone().into()]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(
        text.contains("listeners: unix socket /tmp/cli-test.sock\n"),
        "{text}"
    );

    let output = sol([
        arg("--test-config"),
        arg("-c"),
        path.into(),
        arg("-a"),
        arg("::1"),
        arg("-p"),
        arg("9999"),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(
        text.contains("listeners: tcp [::1]:9999 and unix socket /tmp/cli-test.sock"),
        "{text}"
    );
}

#[test]
fn logger_writes_the_documented_format_to_an_appended_file() {
    use sol::config::LogLevel;

    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-logging.log");
    std::fs::write(&path, "an earlier line\n").unwrap();
    sol::logging::init(LogLevel::Info, Some(&path)).unwrap();

    log::info!(target: "sol::net", "kept: sol at INFO");
    log::debug!(target: "sol::net", "dropped: sol below INFO");
    log::info!(target: "mio::poll", "dropped: another crate below WARN");
    log::warn!(target: "mio::poll", "kept: another crate at WARN");

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "an earlier line");
    let (stamp, rest) = lines[1].split_once(' ').unwrap();
    assert_eq!(rest, "INFO  kept: sol at INFO");
    assert_eq!(
        lines[2].split_once(' ').unwrap().1,
        "WARN  kept: another crate at WARN"
    );

    // 2026-11-22T18:30:01.123Z: a UTC time with milliseconds that reads back.
    assert_eq!(stamp.len(), 24, "{stamp}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "{stamp}"
    );
    let logged = humantime::parse_rfc3339(stamp).unwrap();
    let age = std::time::SystemTime::now().duration_since(logged).unwrap();
    assert!(age.as_secs() < 60, "{stamp}");

    // A process has one logger.
    assert!(sol::logging::init(LogLevel::Debug, None).is_err());
}
