//! Unix signals as poll events.
//!
//! A signal handler may do almost nothing safely, so it does not stop the
//! broker or reopen a file itself: `signal-hook` writes the signal's number
//! into a pipe, the pipe is registered with the poll like any socket, and the
//! loop reads it between two turns, where doing anything is safe.
//!
//! - `SIGINT` and `SIGTERM` stop the broker cleanly: no more accepting, what
//!   is buffered for clients is flushed (within a bound), a summary is
//!   logged, and `main` exits 0.
//! - `SIGHUP` reloads: the log file is reopened (so `logrotate` can rename
//!   it) and the core reloads what it can, as mosquitto does on `SIGHUP`.
//!
//! Only the `sol` binary asks for this ([`Server::catch_signals`]): a test
//! process that runs brokers on threads keeps its own `Ctrl-C`.
//!
//! [`Server::catch_signals`]: super::Server::catch_signals
//!
//! Explained in docs/13-housekeeping.md.

use std::io;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// What the signals received since the last look ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Requests {
    /// The name of the signal that asks to stop, if one came.
    pub(crate) stop: Option<&'static str>,
    pub(crate) reload: bool,
}

/// The signal pipe, registered with the poll under its own token.
pub(crate) struct SignalSource {
    signals: Signals,
}

impl SignalSource {
    /// Installs the handlers for `SIGINT`, `SIGTERM` and `SIGHUP` and
    /// registers their pipe under `token`. From here on those signals no
    /// longer kill the process: the loop decides.
    pub(crate) fn register(registry: &Registry, token: Token) -> io::Result<SignalSource> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(SignalSource { signals })
    }

    /// Reads every signal that arrived. The pipe is drained until empty,
    /// as an edge-triggered poll will not report it again otherwise.
    pub(crate) fn take(&mut self) -> Requests {
        let mut requests = Requests::default();
        for signal in self.signals.pending() {
            match signal {
                SIGINT => requests.stop = Some("SIGINT"),
                SIGTERM => requests.stop = Some("SIGTERM"),
                SIGHUP => requests.reload = true,
                _ => {}
            }
        }
        requests
    }
}
