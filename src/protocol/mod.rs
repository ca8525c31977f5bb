//! MQTT 3.1.1 packets: their types, the incremental decoder and the encoder.
//!
//! This module owns the wire format and nothing else. It knows no sockets, no
//! clock and no sessions: bytes go in, [`Packet`]s come out, and back again.
//! Every value a client controls is validated here, at the edge, so that the
//! rest of the broker works only with types that cannot hold a bad value:
//! a [`PacketId`] is never zero, a [`TopicName`] never holds a wildcard, a
//! [`TopicFilter`] is always well formed.
//!
//! The post that walks through this module is `docs/02-fixed-header.md` and
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
