//! MQTT 3.1 and 3.1.1 packets: their types, the incremental decoder and the
//! encoder.
//!
//! This module owns the wire format and nothing else. It knows no sockets, no
//! clock and no sessions: bytes go in, [`Packet`]s come out, and back again.
//! Every value a client controls is validated here, at the edge, so that the
//! rest of the broker works only with types that cannot hold a bad value:
//! a [`PacketId`] is never zero, a [`TopicName`] never holds a wildcard, a
//! [`TopicFilter`] is always well formed.
//!
//! # Layout
//!
//! - `packet.rs`: the fourteen packets as values;
//! - `decode/`: the framing and the incremental state machine (`mod.rs`),
//!   the field reader (`cursor.rs`), the bodies of each protocol level
//!   (`v3.rs` for 3.1 and 3.1.1); the decoder keeps the level a CONNECT
//!   named and parses every later body for it;
//! - `encode/`: the fixed header and the measuring sink (`mod.rs`), the
//!   bodies (`v3.rs`), one PUBLISH encoded for many receivers (`shared.rs`);
//! - `error.rs`: [`DecodeError`];
//! - `topic.rs`: topic names and filters.
//!
//! The posts that walk through this module are `docs/02-fixed-header.md` and
//! `docs/04-decoding-incrementally.md`.

mod decode;
mod encode;
mod error;
mod packet;
mod topic;

pub use decode::{Decoder, CONNECT_MAX_SIZE};
pub use encode::{encode, encoded_len, SharedPublish};
pub use error::DecodeError;
pub use packet::*;
pub use topic::{TopicError, TopicFilter, TopicName, MAX_TOPIC_LEVELS, MAX_TOPIC_SEPARATORS};
