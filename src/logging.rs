//! Logging setup: where log lines go and what they look like.
//!
//! This module owns the process-wide logger (`env_logger` behind the `log`
//! facade) and its one-line format:
//!
//! ```text
//! 2026-11-22T18:30:01.123Z INFO  listening on tcp 127.0.0.1:1883
//! ```
//!
//! UTC with milliseconds, so lines from different machines sort together and
//! a burst of events keeps its order. The configured level applies to `sol`'s
//! own records; every other crate logs at WARN and above, so a DEBUG run shows
//! the broker's decisions, not its dependencies' chatter.
//!
//! The logger writes each record as given: code that logs text a client sent
//! (client ids, topics) should format it with `{:?}` so a newline in it cannot
//! forge a log line. This module must not know anything about MQTT.
//!
//! # Log rotation
//!
//! With `log_path`, the file can be rotated the usual way: `logrotate` (or a
//! person) renames it and sends `SIGHUP`, and [`reopen`] opens a new file at
//! the configured path. The logger holds the file behind a lock, not
//! directly, which is what lets the file change under a running logger.
//!
//! Explained in docs/13-housekeeping.md.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use env_logger::{Target, WriteStyle};
use log::{Level, LevelFilter};

use crate::config::LogLevel;

/// The target prefix of every record `sol` logs, from the library and the
/// binary alike (both crates are named `sol`). `env_logger` matches it as a
/// prefix, which no dependency's name shares.
const OWN_TARGET: &str = "sol";

/// Installs the process-wide logger: records from `sol` at `level` and above,
/// from other crates at WARN and above, appended to the file at `path`
/// (created, mode 0600, if missing) or written to stderr.
///
/// Fails when the file cannot be opened, or when a logger is already
/// installed (a process has one logger; a second `init` is a bug).
pub fn init(level: LogLevel, path: Option<&Path>) -> io::Result<()> {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(LevelFilter::Warn)
        .filter_module(OWN_TARGET, level_filter(level))
        // The format has no colours; never let a terminal check add escapes.
        .write_style(WriteStyle::Never)
        .format(|out, record| write_line(out, SystemTime::now(), record.level(), record.args()));
    if let Some(path) = path {
        install_file(path)?;
        builder.target(Target::Pipe(Box::new(SharedFile)));
    }
    builder.try_init().map_err(io::Error::other)
}

/// Opens the configured log file again, so that a file renamed by `logrotate`
/// stops receiving lines and a new one takes them. Returns whether there was
/// a file to reopen (false when the log goes to stderr).
///
/// On failure the old file stays in use, so no line is lost to a mistake
/// such as a directory that is not writable any more.
pub fn reopen() -> io::Result<bool> {
    let mut current = log_file();
    let Some(log) = current.as_mut() else {
        return Ok(false);
    };
    let file = open_log_file(&log.path)?;
    log.file = file;
    Ok(true)
}

/// The file the logger writes to, and the path to open again on [`reopen`].
struct LogFile {
    path: PathBuf,
    file: File,
}

/// The process's one log file. A process has one logger, so this is global
/// like the logger itself.
static LOG_FILE: Mutex<Option<LogFile>> = Mutex::new(None);

/// The log file, whatever a thread that panicked while holding it left
/// behind: a file handle cannot be left half-updated.
fn log_file() -> MutexGuard<'static, Option<LogFile>> {
    LOG_FILE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens `path` as the log file (replacing any earlier one).
fn install_file(path: &Path) -> io::Result<()> {
    let file = open_log_file(path)?;
    *log_file() = Some(LogFile {
        path: path.to_path_buf(),
        file,
    });
    Ok(())
}

/// The logger's target: writes go to whichever file [`LOG_FILE`] holds now.
struct SharedFile;

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match log_file().as_mut() {
            Some(log) => log.file.write(buf),
            // Only reachable if the file was never installed: nothing to
            // write to, and a logger must not fail the caller.
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match log_file().as_mut() {
            Some(log) => log.file.flush(),
            None => Ok(()),
        }
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Warning => LevelFilter::Warn,
        LogLevel::Error => LevelFilter::Error,
    }
}

/// Opens the log for appending. `env_logger` writes each record with a single
/// `write_all` on this unbuffered file, and O_APPEND makes every write land at
/// the end, so `logrotate`'s copytruncate and other writers do not leave
/// holes or interleave within a line.
fn open_log_file(path: &Path) -> io::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    // Logs name clients, users and addresses: private to the broker's user,
    // like mosquitto's persistence files (CVE-2017-9868). Only applies when
    // the file is created; an operator's own mode on an existing file stays.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot open log file {}: {error}", path.display()),
        )
    })
}

/// Writes one record: `<UTC time with ms> <LEVEL padded to 5> <message>\n`.
fn write_line(
    out: &mut impl Write,
    now: SystemTime,
    level: Level,
    message: &fmt::Arguments<'_>,
) -> io::Result<()> {
    let now = clamp_to_formattable(now);
    writeln!(
        out,
        "{} {:<5} {}",
        humantime::format_rfc3339_millis(now),
        level,
        message
    )
}

/// `humantime` panics on a time before 1970 and fails after 9999. A clock set
/// that wrong is a misconfigured machine, not a reason to lose the log line
/// or crash the broker, so such times print as the nearest end of the range.
fn clamp_to_formattable(now: SystemTime) -> SystemTime {
    // 9999-12-31T23:59:59Z, the last second humantime formats.
    const LAST_SECOND: u64 = 253_402_300_799;
    match now.duration_since(UNIX_EPOCH) {
        Err(_) => UNIX_EPOCH,
        Ok(since) if since.as_secs() > LAST_SECOND => UNIX_EPOCH + Duration::from_secs(LAST_SECOND),
        Ok(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(now: SystemTime, level: Level, message: fmt::Arguments<'_>) -> String {
        let mut out = Vec::new();
        write_line(&mut out, now, level, &message).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_utc_with_milliseconds_and_padded_level() {
        // 2026-11-22T18:30:01.123Z: 1795372201 s after the epoch.
        let now = UNIX_EPOCH + Duration::from_millis(1_795_372_201_123);
        assert_eq!(
            line(now, Level::Info, format_args!("hello {}", 42)),
            "2026-11-22T18:30:01.123Z INFO  hello 42\n"
        );
        assert_eq!(
            line(now, Level::Error, format_args!("bad")),
            "2026-11-22T18:30:01.123Z ERROR bad\n"
        );
        assert_eq!(
            line(now, Level::Warn, format_args!("w")),
            "2026-11-22T18:30:01.123Z WARN  w\n"
        );
    }

    #[test]
    fn millisecond_part_is_always_three_digits() {
        let now = UNIX_EPOCH + Duration::from_millis(5);
        assert_eq!(
            line(now, Level::Debug, format_args!("x")),
            "1970-01-01T00:00:00.005Z DEBUG x\n"
        );
    }

    #[test]
    fn clock_out_of_range_does_not_panic() {
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(
            line(before_epoch, Level::Info, format_args!("x")),
            "1970-01-01T00:00:00.000Z INFO  x\n"
        );
        let far_future = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(
            line(far_future, Level::Info, format_args!("x")),
            "9999-12-31T23:59:59.000Z INFO  x\n"
        );
    }

    /// The one test that touches the process-wide log file: renaming the
    /// file and reopening sends later lines to a new file at the same path.
    #[test]
    fn reopen_starts_a_new_file_after_a_rename() {
        let dir = std::env::temp_dir().join(format!("sol-logging-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sol.log");
        let rotated = dir.join("sol.log.1");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&rotated);

        install_file(&path).unwrap();
        SharedFile.write_all(b"before\n").unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        SharedFile.write_all(b"still old\n").unwrap();
        assert!(reopen().unwrap());
        SharedFile.write_all(b"after\n").unwrap();

        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        // A path that cannot be opened keeps the old file in use.
        log_file().as_mut().unwrap().path = dir.join("missing-dir").join("x.log");
        assert!(reopen().is_err());
        SharedFile.write_all(b"kept\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\nkept\n");
        *log_file() = None;
        assert!(!reopen().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_level_maps_to_its_filter() {
        assert_eq!(level_filter(LogLevel::Debug), LevelFilter::Debug);
        assert_eq!(level_filter(LogLevel::Info), LevelFilter::Info);
        assert_eq!(level_filter(LogLevel::Warning), LevelFilter::Warn);
        assert_eq!(level_filter(LogLevel::Error), LevelFilter::Error);
    }
}
