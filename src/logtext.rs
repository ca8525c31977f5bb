//! What a client can put in the log: its strings shown escaped and cut
//! short ([`shown`]), and lines it can make the broker repeat capped per
//! second ([`LineLimit`]).
//!
//! A client id, a username or a topic can be tens of kilobytes, and
//! escaping can make each byte ten (`\u{1}`): logged whole, 2 000 CONNECTs
//! of 99 KB ids once wrote 1.5 GB of log, 7.5 bytes for every byte
//! received. Cut at [`SHOWN_CHARS`], a line holds a few hundred bytes
//! whatever the client sent, and the full length is still there to read.
//! A client that connects again and again still writes a line each time,
//! so the lines it can repeat at will (connections, refusals) also go
//! through a [`LineLimit`], which says how many it held back.
//!
//! It knows nothing of clients or sessions: it formats text and counts
//! lines; the callers decide which strings are a client's and which lines
//! it controls. It never reads the clock: `now` is passed in.

use std::fmt;
use std::time::{Duration, Instant};

/// The most characters of escaped text [`shown`] writes before it cuts:
/// enough for any id or topic a person would read, and at most 512 bytes
/// of log (a character is at most 4 bytes; an escape is ASCII).
pub const SHOWN_CHARS: usize = 128;

/// `text`, a client's, as the log shows it: escaped as `str::escape_debug`
/// escapes it, and cut after [`SHOWN_CHARS`] characters with `…` and the
/// full length in bytes. Formats lazily: nothing is done, and nothing
/// allocated, unless the line is written.
pub fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

/// See [`shown`].
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut room = SHOWN_CHARS;
        for c in self.0.chars() {
            let escaped = c.escape_debug();
            let Some(left) = room.checked_sub(escaped.len()) else {
                return write!(f, "…({} bytes)", self.0.len());
            };
            room = left;
            fmt::Display::fmt(&escaped, f)?;
        }
        Ok(())
    }
}

/// Caps how many lines of one kind go to the log per second, and says how
/// many it held back.
///
/// [`LineLimit::admit`] answers whether the next line may be written; a
/// line held back is counted, and the count is written as one line,
/// `N similar line(s) suppressed (what)`, when the next second's first line
/// is admitted or when [`LineLimit::flush`] finds the second over,
/// whichever comes first. Integer work only: nothing is allocated, whether
/// lines are written or not.
#[derive(Debug)]
pub struct LineLimit {
    /// What the lines are, for the summary: "connection refusals".
    what: &'static str,
    per_second: u32,
    /// When the current second began; `None` before the first line and
    /// after a flush.
    since: Option<Instant>,
    written: u32,
    suppressed: u64,
}

/// What [`LineLimit::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write the line.
    Write,
    /// Leave the line out; it was counted. `first` on the first line held
    /// back this second: the moment to arrange a [`LineLimit::flush`] at
    /// [`LineLimit::second_ends`], so that the count is written even when
    /// no line follows.
    Suppress { first: bool },
}

/// The length of a limit's window.
const SECOND: Duration = Duration::from_secs(1);

impl LineLimit {
    /// A limit of `per_second` lines of `what` (at least one).
    pub const fn new(what: &'static str, per_second: u32) -> LineLimit {
        LineLimit {
            what,
            per_second: if per_second == 0 { 1 } else { per_second },
            since: None,
            written: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be written at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        if !self.second_ends().is_some_and(|end| now < end) {
            self.report();
            self.since = Some(now);
            self.written = 0;
        }
        if self.written < self.per_second {
            self.written += 1;
            return Admit::Write;
        }
        self.suppressed = self.suppressed.saturating_add(1);
        Admit::Suppress {
            first: self.suppressed == 1,
        }
    }

    /// When the current second ends, if one is under way.
    pub fn second_ends(&self) -> Option<Instant> {
        self.since.and_then(|since| since.checked_add(SECOND))
    }

    /// Writes the count of lines held back if their second is over at
    /// `now`; the next line starts a new second.
    pub fn flush(&mut self, now: Instant) {
        if self.second_ends().is_some_and(|end| now >= end) {
            self.report();
            self.since = None;
        }
    }

    /// Lines held back and not yet reported.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    fn report(&mut self) {
        if self.suppressed > 0 {
            log::info!(
                "{} similar line(s) suppressed ({}).",
                self.suppressed,
                self.what
            );
            self.suppressed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_escaped_and_whole() {
        assert_eq!(shown("sensor-1").to_string(), "sensor-1");
        assert_eq!(shown("a\u{1}b\n\"").to_string(), "a\\u{1}b\\n\\\"");
        assert_eq!(shown("").to_string(), "");
        assert_eq!(shown("é日本").to_string(), "é日本");
    }

    #[test]
    fn long_text_is_cut_with_its_length() {
        let exact = "x".repeat(SHOWN_CHARS);
        assert_eq!(shown(&exact).to_string(), exact);
        let long = "x".repeat(60_000);
        assert_eq!(
            shown(&long).to_string(),
            format!("{}…(60000 bytes)", "x".repeat(SHOWN_CHARS))
        );
    }

    #[test]
    fn escapes_count_against_the_cut_and_are_never_split() {
        // 60 000 bytes of U+0001: each shows as 5 characters, `\u{1}`.
        let control = "\u{1}".repeat(60_000);
        let line = shown(&control).to_string();
        let whole = SHOWN_CHARS / 5;
        assert_eq!(line, format!("{}…(60000 bytes)", "\\u{1}".repeat(whole)));
        for text in [control, "é".repeat(1000), "\u{10ffff}".repeat(1000)] {
            assert!(shown(&text).to_string().len() <= 4 * SHOWN_CHARS + 20);
        }
    }

    #[test]
    fn a_limit_writes_its_lines_then_counts_the_rest() {
        let start = Instant::now();
        let mut limit = LineLimit::new("test lines", 3);
        let decisions: Vec<Admit> = (0..6).map(|_| limit.admit(start)).collect();
        assert_eq!(
            decisions,
            [
                Admit::Write,
                Admit::Write,
                Admit::Write,
                Admit::Suppress { first: true },
                Admit::Suppress { first: false },
                Admit::Suppress { first: false },
            ]
        );
        assert_eq!(limit.suppressed(), 3);
        assert_eq!(limit.second_ends(), Some(start + SECOND));
        // Not before the second is over.
        limit.flush(start + SECOND / 2);
        assert_eq!(limit.suppressed(), 3);
        assert_eq!(
            limit.admit(start + SECOND / 2),
            Admit::Suppress { first: false }
        );
        // A new second reports the count and writes again.
        assert_eq!(limit.admit(start + SECOND), Admit::Write);
        assert_eq!(limit.suppressed(), 0);
        assert_eq!(limit.second_ends(), Some(start + 2 * SECOND));
    }

    #[test]
    fn a_flush_after_the_second_reports_and_starts_afresh() {
        let start = Instant::now();
        let mut limit = LineLimit::new("test lines", 1);
        assert_eq!(limit.admit(start), Admit::Write);
        assert_eq!(limit.admit(start), Admit::Suppress { first: true });
        limit.flush(start + SECOND);
        assert_eq!((limit.suppressed(), limit.second_ends()), (0, None));
        let later = start + 10 * SECOND;
        assert_eq!(limit.admit(later), Admit::Write);
        assert_eq!(limit.admit(later), Admit::Suppress { first: true });
        // A limit of zero would hide everything: it is taken as one.
        assert_eq!(LineLimit::new("none", 0).admit(start), Admit::Write);
    }
}
