//! The log lines a client can make the broker write at will, one per
//! connection it opens, capped per second so that a client that connects
//! in a loop cannot fill the disk: each kind goes through a
//! [`LineLimit`], and what it held back is written as one summary line
//! when its second is over, on a timer of the broker's wheel.
//!
//! It decides nothing else: the callers pick the kind of each line and
//! show a client's strings through [`shown`](crate::logtext::shown).

use std::time::Instant;

use super::{Broker, Timer};
use crate::logtext::{Admit, LineLimit};

/// Lines per second of each kind: a busy broker's steady churn shows line
/// by line, and a flood costs at most some tens of kilobytes of log per
/// second (lines are a few hundred bytes once client strings are cut).
const LINES_PER_SECOND: u32 = 100;

/// The kinds of lines a client controls.
#[derive(Clone, Copy, Debug)]
pub(super) enum Lines {
    /// A client connected, went away, or its session expired.
    Connections,
    /// A CONNECT was refused: bad credentials, a keepalive too long.
    Refusals,
}

/// One [`LineLimit`] per kind, and whether the summary timer is armed.
pub(super) struct LogLimits {
    connections: LineLimit,
    refusals: LineLimit,
    summary_armed: bool,
}

impl Default for LogLimits {
    fn default() -> LogLimits {
        LogLimits {
            connections: LineLimit::new("client connections", LINES_PER_SECOND),
            refusals: LineLimit::new("refused connections", LINES_PER_SECOND),
            summary_armed: false,
        }
    }
}

impl LogLimits {
    /// Whether the summary timer is on the wheel: it is housekeeping, not a
    /// client's timer.
    pub(super) fn summary_armed(&self) -> bool {
        self.summary_armed
    }
}

impl Broker {
    /// Whether a line of kind `lines` may be written at `now`.
    pub(super) fn may_log(&mut self, lines: Lines, now: Instant) -> bool {
        let limit = match lines {
            Lines::Connections => &mut self.log_limits.connections,
            Lines::Refusals => &mut self.log_limits.refusals,
        };
        match limit.admit(now) {
            Admit::Write => true,
            Admit::Suppress { first } => {
                if first {
                    let end = limit.second_ends();
                    self.arm_log_summary(end);
                }
                false
            }
        }
    }

    /// The summary timer fired: writes what each limit held back in a
    /// second that is over, and waits for the others.
    pub(super) fn log_summary(&mut self, now: Instant) {
        let limits = &mut self.log_limits;
        limits.summary_armed = false;
        limits.connections.flush(now);
        limits.refusals.flush(now);
        let pending = [&limits.connections, &limits.refusals]
            .into_iter()
            .filter(|limit| limit.suppressed() > 0)
            .filter_map(LineLimit::second_ends)
            .min();
        self.arm_log_summary(pending);
    }

    fn arm_log_summary(&mut self, at: Option<Instant>) {
        if let (Some(at), false) = (at, self.log_limits.summary_armed) {
            self.timers.insert(at, Timer::LogSummary);
            self.log_limits.summary_armed = true;
        }
    }
}
