//! sol: a single-threaded MQTT 3.1.1 broker, written to be read.
//!
//! One `mio` poll loop owns every connection. Bytes that arrive on a socket
//! are decoded incrementally into [`protocol::Packet`]s, handed to the
//! protocol core ([`broker::Broker`]), which answers with packets for other
//! connections and timers on its own wheel. The core never touches a socket
//! or reads the clock: the network layer ([`net`]) does both and passes `now`
//! in. That split is what makes the core testable without a network and
//! reusable behind other transports.
//!
//! # Layout
//!
//! - [`protocol`]: MQTT packets, the incremental decoder, the encoder, topic
//!   names and filters. No sockets, no clock.
//! - [`trie`]: the topic trie that routes publishes and finds retained
//!   messages. Knows nothing of sessions.
//! - [`timer`]: a hashed timer wheel. Pure: `now` is passed in.
//! - [`session`]: what the broker remembers about one client id:
//!   subscriptions, QoS 1 and 2 messages in flight, the offline queue.
//! - [`broker`]: the protocol core. Packets in, packets out. No `mio`. Its
//!   guard checks a CONNECT's credentials and every topic a client touches.
//! - [`config`]: the `sol.conf` parser: flat keys, `listener` and
//!   `connection` blocks, one key table.
//! - [`cli`]: the command line.
//! - [`LineError`]: the one error of `sol.conf`, the password file and the
//!   ACL file: a line number and what is wrong on it.
//! - [`security`]: the password file (SHA-512 crypt hashes) and the
//!   mosquitto-style ACL file: who may log in, and who may publish, read and
//!   subscribe where. It answers; the core's guard asks it at CONNECT and on
//!   every topic, and decides what a refusal means.
//! - [`logtext`]: a client's strings as the log shows them (escaped, cut
//!   short) and the per-second cap on lines a client can repeat.
//! - [`net`]: the event loop, listeners and connections, TLS included; the
//!   only module that touches `mio`, rustls and the clock.
//!
//! `ARCHITECTURE.md` at the top of the repository maps the code and states
//! the invariants each module keeps.
//!
//! Explained in docs/README.md (the series, in reading order).

// Nothing a client sends may panic the broker: one panic would disconnect
// every client. Outside tests, these lints turn every `unwrap`, `expect`,
// `panic!`, `unreachable!`, `todo!` and slice index into a build error;
// code uses `get`, pattern matching and checked arithmetic instead. There
// are no exceptions to justify: none of them occurs outside tests.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod broker;
pub mod cli;
pub mod config;
pub mod guide;
pub mod logging;
pub mod logtext;
pub mod net;
pub mod protocol;
pub mod security;
pub mod session;
#[doc(hidden)]
pub mod test_rng;
pub mod timer;
pub mod trie;

mod textfile;

pub use textfile::LineError;
