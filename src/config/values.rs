//! The value types of `sol.conf`: numbers, sizes, durations, log levels and
//! booleans, each checked against its bounds.
//!
//! Every parser here takes the value as written and returns either the
//! value or a message saying what a good one looks like; the caller adds
//! the key's name and the line. Nothing here knows which key uses which
//! parser: that is the key table's business (`keys.rs`).

use std::time::Duration;

use super::LogLevel;

/// The smallest `max_request_size`: a fixed header alone is two bytes, so
/// anything smaller would refuse every packet, even PINGREQ.
const MIN_REQUEST_SIZE: u64 = 2;

/// The largest `max_request_size`: the largest remaining length the MQTT
/// variable byte integer can express (§2.2.3, four bytes of seven bits).
const MAX_REQUEST_SIZE: u64 = 268_435_455;

/// The largest `connect_timeout`. No client needs a day to send CONNECT, so a
/// larger value is a typo (`10d` for `10s`), and bounding it keeps `now +
/// timeout` far from overflowing `Instant` in the timer code.
pub(super) const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// `listen(2)` takes an `int`: a larger backlog would wrap to a negative one.
pub(super) const MAX_TCP_BACKLOG: u64 = i32::MAX as u64;

/// MQTT packet ids are 16 bits, so no more than 65535 messages can be in
/// flight to one client (a server too must not reuse an id still in flight,
/// [MQTT-2.3.1-4]).
pub(super) const MAX_INFLIGHT: u64 = 65_535;

/// The longest `stats_publish_interval` and `retry_interval`: a day, like
/// `connect_timeout`, for the same reasons.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest `max_memory`: far beyond any machine, small enough that
/// adding a message's size to it cannot overflow a 64-bit `usize`.
const MAX_MEMORY: u64 = 1 << 50;

/// A decimal integer within `min..=max`, converted to the field's type.
/// `what` names the kind of number in the error ("a port number").
pub(crate) fn parse_whole<T: TryFrom<u64>>(
    value: &str,
    min: u64,
    max: u64,
    what: &str,
) -> Result<T, String> {
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

pub(super) fn parse_log_level(value: &str) -> Result<LogLevel, String> {
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
pub(super) fn parse_request_size(value: &str) -> Result<usize, String> {
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
pub(super) fn parse_timeout(value: &str) -> Result<Duration, String> {
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
pub(super) fn parse_period(value: &str) -> Result<Duration, String> {
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
pub(super) fn parse_memory(value: &str) -> Result<usize, String> {
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

/// The longest `persistent_client_expiration`: a century, far beyond any
/// deployment's wish, and far enough below what `Instant` can add that an
/// expiry deadline is always representable.
const MAX_EXPIRATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `persistent_client_expiration`: how long a persistent session may stay
/// offline. mosquitto's form, a whole number and one of `h`, `d`, `w`, `m`
/// and `y` (hours, days, weeks, months of 30 days, years of 365 days), is
/// read as mosquitto reads it, so a `2m` copied from a mosquitto file is
/// two months, not two minutes; anything else as `humantime` reads it
/// (`90s`, `30min`, `1h 30min`), for the short periods tests and small
/// deployments want. Above zero: no expiry at all is the key left unset.
pub(super) fn parse_expiration(value: &str) -> Result<Duration, String> {
    let bad = |why: String| {
        format!(
            "`{}` is not a duration such as 1h, 14d, 2m (months) or 1y, or 90s or 30min \
             ({why})",
            value.escape_debug()
        )
    };
    let expiration = match mosquitto_period(value) {
        Some(expiration) => expiration,
        None => humantime::parse_duration(value).map_err(|error| bad(error.to_string()))?,
    };
    if expiration.is_zero() {
        return Err("must be longer than zero (leave the key out for no expiry)".to_string());
    }
    if expiration > MAX_EXPIRATION {
        return Err(format!(
            "`{}` is longer than the limit of 100 years",
            value.escape_debug()
        ));
    }
    Ok(expiration)
}

/// mosquitto's `persistent_client_expiration` form, `<number><h|d|w|m|y>`,
/// or `None` when `value` is not in it. A number too large saturates, and
/// is then refused as over the limit.
fn mosquitto_period(value: &str) -> Option<Duration> {
    const HOUR: u64 = 60 * 60;
    const DAY: u64 = 24 * HOUR;
    let unit = match value.as_bytes().last()? {
        b'h' => HOUR,
        b'd' => DAY,
        b'w' => 7 * DAY,
        b'm' => 30 * DAY,
        b'y' => 365 * DAY,
        _ => return None,
    };
    let digits = value.get(..value.len().saturating_sub(1))?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let count = digits.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(count.saturating_mul(unit)))
}

/// `max_connections`: `-1` for no limit, as in mosquitto, or a positive count.
pub(super) fn parse_max_connections(value: &str) -> Result<Option<usize>, String> {
    if value == "-1" {
        return Ok(None);
    }
    parse_whole(value, 1, usize::MAX as u64, "a count (or -1 for no limit)").map(Some)
}

/// `true` or `false`, as mosquitto spells them.
pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{}` is not true or false", value.escape_debug())),
    }
}
