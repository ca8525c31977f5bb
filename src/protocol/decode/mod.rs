//! The incremental decoder: bytes from a socket in, [`Packet`]s out.
//!
//! Every MQTT packet starts with a fixed header (section 2.2): one byte that
//! holds the packet type and four flag bits, then the *remaining length*, the
//! size of the rest of the packet in one to four bytes of seven bits each.
//! Throughout this module **size** means that remaining length: the bytes of
//! the body, not counting the fixed header itself.
//!
//! Bytes arrive from the network in whatever pieces TCP hands over, so the
//! [`Decoder`] is a small state machine kept between calls. It eats the fixed
//! header a byte at a time, as soon as each byte arrives, and remembers what it
//! has read: a header split across two reads is resumed, never parsed again.
//! Every check that the header alone allows is made the moment its byte
//! arrives:
//!
//! - the first byte of a connection must be a CONNECT, so anything else is
//!   refused before its length or body have even been sent;
//! - the packet type, its direction and its reserved flags are checked on
//!   that same first byte;
//! - the size is compared with the limit as soon as its last byte is in,
//!   before one byte of the body is waited for, so a client that claims a
//!   100 MB packet costs the broker nothing (mosquitto CVE-2017-7651).
//!
//! Only when the whole body is buffered is it copied off the front of the
//! buffer, into an allocation of exactly its size, and parsed. Payloads,
//! will messages and passwords are slices of that body. Strings are checked
//! where they lie in the body (one UTF-8 check, and for topics one pass of
//! the topic rules) and copied out only once they are valid. A PUBLISH
//! whose topic is the same as the previous PUBLISH's is not copied at all:
//! the decoder keeps the last topic and hands out a clone of it. The body is
//! copied rather than sliced from the read buffer so that a stored message
//! never pins the (much larger) buffer it arrived in.
//!
//! **Architecture Invariant:** the decoder knows no sockets, no sessions and
//! no configuration beyond the size limit it is given. Whether a client id is
//! acceptable, whether a second CONNECT is a reason to close, whether a
//! client may publish to a topic: all of that is the broker's to decide. The
//! decoder rejects only what the standard says is malformed.
//! Explained in docs/04-decoding-incrementally.md and docs/11-bad-input.md.
//!
//! # Layout
//!
//! - this file: the framing (fixed header, remaining length, the size limit,
//!   the CONNECT gate) and the state machine kept between calls;
//! - [`cursor`]: the field reader every body parser reads through;
//! - [`v3`]: the bodies of MQTT 3.1 and 3.1.1;
//! - the errors are in `protocol/error.rs`, shared with the whole codec.
//!
//! # Protocol levels
//!
//! The framing is the same at every level of MQTT; the bodies are not. The
//! decoder remembers the [`Protocol`] a connection's CONNECT named (level 3,
//! `MQIsdp`, for MQTT 3.1; level 4, `MQTT`, for 3.1.1) and hands every later
//! body to the parser for that level. A CONNECT itself opens, at every
//! level, with the protocol name and level, so those two fields are read
//! here and pick the parser for the rest of it. Today one parser, [`v3`],
//! serves both levels; a parser for another level would sit beside it and
//! share the framing, the CONNECT gate and the size limit.

mod cursor;
mod v3;

use bytes::{Buf, Bytes, BytesMut};

use super::error::DecodeError;
use super::packet::packet_type::{
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};
use super::packet::{Packet, Protocol};
use super::topic::TopicName;
use cursor::Cursor;

/// The largest size (remaining length) accepted for the first packet of a
/// connection, which must be a CONNECT.
///
/// Until a client has authenticated, it should not be able to make the
/// broker buffer much: a CONNECT holds a client id, a will and credentials,
/// and 100 KB is far more than any real one needs. mosquitto applies the same
/// idea (CVE-2017-7651).
pub const CONNECT_MAX_SIZE: usize = 100_000;

/// Which end of the connection the decoder sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The broker, decoding what a client sends.
    Server,
    /// A client, decoding what a broker sends.
    Client,
}

// Sizes are kept as `u32` (a remaining length is below 2^28) and used as
// `usize` byte counts, which is lossless on every target sol builds for.
const _: () = assert!(usize::BITS >= u32::BITS);

/// Where the decoder is within the packet in progress.
///
/// Sizes are `u32`, not `usize`: a remaining length never exceeds
/// 268,435,455 (section 2.2.3), and small fields are part of what keeps a
/// decoder with its topic cache as small as one without.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Waiting for the first byte of a packet.
    Start,
    /// The first byte is in and checked; the remaining length is being read.
    /// `value` holds the `digits` seven-bit digits read so far.
    Length {
        first_byte: u8,
        value: u32,
        digits: u8,
    },
    /// The size is known and within the limit; waiting for `size` bytes.
    Body { first_byte: u8, size: u32 },
}

/// Decodes MQTT packets from a byte stream, one call at a time.
///
/// A connection holds one for its whole life, so its size counts in the
/// memory of every idle connection: 40 bytes on x86-64, what it was before
/// it cached a topic (a test checks).
#[derive(Debug)]
pub struct Decoder {
    mode: Mode,
}

/// A decoder that has found a protocol violation needs neither its limit,
/// nor its progress, nor its cached topic any more: the error takes their
/// place, in the same bytes.
#[derive(Debug)]
enum Mode {
    Running(Running),
    /// A protocol violation was found. The connection is being closed, so
    /// nothing more is read: every later call returns the same error.
    Failed(DecodeError),
}

/// A decoder that has found nothing wrong so far.
#[derive(Debug)]
struct Running {
    side: Side,
    /// The protocol level the bodies are parsed for. On the broker side it
    /// is `None` until a CONNECT has decoded, which is what the CONNECT gate
    /// checks, and then the level that CONNECT named; a second CONNECT (which
    /// the broker closes on) does not change it.
    protocol: Option<Protocol>,
    max_size: usize,
    state: State,
    /// The topic of the last PUBLISH decoded. Publishers nearly always
    /// publish to the same few topics, so when the next PUBLISH names the
    /// same bytes this one is reused (a reference count, no allocation, no
    /// validation: validity depends on the bytes alone, and these were
    /// found valid). Any other topic is validated and replaces it.
    ///
    /// It holds at most one topic string per connection, never a payload or
    /// a packet body, and only a topic of at most [`CACHED_TOPIC_MAX`]
    /// bytes: an idle connection frees its buffers, and should not keep a
    /// long topic it happened to publish to once. It is dropped when the
    /// decoder fails or the connection goes.
    last_topic: Option<TopicName>,
}

/// The longest topic the decoder keeps for reuse. Real topics are far
/// shorter ("sensors/room1/temperature"); a longer one is decoded the
/// ordinary way every time, and costs an idle connection nothing.
const CACHED_TOPIC_MAX: usize = 256;

impl Decoder {
    /// Broker side: decodes what clients send. The first packet must be
    /// CONNECT, with a size (remaining length) of at most
    /// `min(CONNECT_MAX_SIZE, max_size)`; after a CONNECT decodes, the decoder
    /// is "connected" at the protocol level that CONNECT named
    /// ([`Decoder::protocol`]) and accepts every client-to-server packet
    /// (CONNECT included: the broker itself closes on a second one) with a
    /// size of at most `max_size`.
    pub fn new(max_size: usize) -> Decoder {
        Decoder::running(Side::Server, None, max_size)
    }

    /// Client side (tests, future bridges): decodes server-to-client
    /// packets, each of size at most `max_size`; there is no CONNECT gate.
    /// It parses them as MQTT 3.1.1, whose packets from a broker are byte
    /// for byte those of 3.1.
    pub fn client(max_size: usize) -> Decoder {
        Decoder::running(Side::Client, Some(Protocol::V311), max_size)
    }

    fn running(side: Side, protocol: Option<Protocol>, max_size: usize) -> Decoder {
        Decoder {
            mode: Mode::Running(Running {
                side,
                protocol,
                max_size,
                state: State::Start,
                last_topic: None,
            }),
        }
    }

    /// `Ok(Some(packet))` when a whole packet was consumed from the front of
    /// `buf`; `Ok(None)` when more bytes are needed (the bytes of the fixed
    /// header read so far are consumed and remembered, so a partial header is
    /// resumed, never parsed again); `Err` on a protocol violation, after
    /// which the connection must be closed and every later call returns the
    /// same error.
    ///
    /// The decoder never grows `buf`: how much to buffer is the caller's
    /// business, and [`Decoder::needed`] tells it how much is worth it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let running = match &mut self.mode {
            Mode::Running(running) => running,
            Mode::Failed(error) => return Err(error.clone()),
        };
        let result = running.step(buf);
        if let Err(error) = &result {
            self.mode = Mode::Failed(error.clone());
        }
        result
    }

    /// The protocol level the connection speaks: on the broker side, the one
    /// its CONNECT named, `None` before it; 3.1.1 on the client side. `None`
    /// too once the decoder has failed, since nothing more is decoded.
    pub fn protocol(&self) -> Option<Protocol> {
        match &self.mode {
            Mode::Running(running) => running.protocol,
            Mode::Failed(_) => None,
        }
    }

    /// Bytes still missing for the packet in progress once its size is known
    /// (0 otherwise), given that `buffered` bytes of it sit in the buffer.
    /// The network layer uses it as a hint to reserve space; it is never more
    /// than the size limit allows, because the size was checked first.
    pub fn needed(&self, buffered: usize) -> usize {
        match self.mode {
            Mode::Running(Running {
                state: State::Body { size, .. },
                ..
            }) => (size as usize).saturating_sub(buffered),
            _ => 0,
        }
    }
}

impl Running {
    /// The largest size the next packet may have.
    fn limit(&self) -> usize {
        if self.awaits_connect() {
            self.max_size.min(CONNECT_MAX_SIZE)
        } else {
            self.max_size
        }
    }

    /// Whether this is the broker side before its first CONNECT.
    fn awaits_connect(&self) -> bool {
        self.side == Side::Server && self.protocol.is_none()
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        loop {
            match self.state {
                State::Start => {
                    let Some(first_byte) = take_byte(buf) else {
                        return Ok(None);
                    };
                    self.check_first_byte(first_byte)?;
                    self.state = State::Length {
                        first_byte,
                        value: 0,
                        digits: 0,
                    };
                }
                State::Length {
                    first_byte,
                    value,
                    digits,
                } => {
                    let Some(byte) = take_byte(buf) else {
                        return Ok(None);
                    };
                    // At most four digits are read, so the shift is at most
                    // 21 and the value below 2^28: no overflow, even on a
                    // 32-bit target.
                    let value = value + (u32::from(byte & 0x7F) << (7 * digits));
                    let digits = digits + 1;
                    if byte & 0x80 == 0 {
                        self.check_size(first_byte, value as usize)?;
                        self.state = State::Body {
                            first_byte,
                            size: value,
                        };
                    } else if digits == 4 {
                        // A fourth byte that announces a fifth (section 2.2.3).
                        return Err(DecodeError::MalformedRemainingLength);
                    } else {
                        self.state = State::Length {
                            first_byte,
                            value,
                            digits,
                        };
                    }
                }
                State::Body { first_byte, size } => {
                    let size = size as usize;
                    if buf.len() < size {
                        return Ok(None);
                    }
                    // The body is copied out of the input buffer, not sliced
                    // from it: what the broker keeps of a packet (a retained
                    // payload, a queued message, a will) must own its bytes.
                    // A 1-byte retained payload sliced from a 64 KiB read
                    // would keep all 64 KiB alive, out of max_memory's sight.
                    let body = Bytes::copy_from_slice(buf.get(..size).unwrap_or_default());
                    buf.advance(size);
                    self.state = State::Start;
                    let packet = self.parse(first_byte, body)?;
                    if let Packet::Connect(connect) = &packet {
                        self.protocol.get_or_insert(connect.protocol);
                    }
                    return Ok(Some(packet));
                }
            }
        }
    }

    /// Everything the first byte alone can tell: the CONNECT gate, the
    /// packet type and its direction, the reserved flags.
    fn check_first_byte(&self, byte: u8) -> Result<(), DecodeError> {
        let packet_type = byte >> 4;
        let flags = byte & 0x0F;
        if self.awaits_connect() && packet_type != CONNECT {
            return Err(DecodeError::FirstPacketNotConnect { packet_type });
        }
        let (from_client, from_server) = match packet_type {
            CONNECT | SUBSCRIBE | UNSUBSCRIBE | PINGREQ | DISCONNECT => (true, false),
            CONNACK | SUBACK | UNSUBACK | PINGRESP => (false, true),
            PUBLISH | PUBACK | PUBREC | PUBREL | PUBCOMP => (true, true),
            _ => return Err(DecodeError::ReservedPacketType(packet_type)),
        };
        let allowed = match self.side {
            Side::Server => from_client,
            Side::Client => from_server,
        };
        if !allowed {
            return Err(DecodeError::WrongDirection { packet_type });
        }
        if packet_type == PUBLISH {
            return check_publish_flags(flags);
        }
        let expected = match packet_type {
            PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
            _ => 0b0000,
        };
        if flags != expected && !self.is_resent_v31_pubrel(packet_type, flags) {
            // [MQTT-2.2.2-2]
            return Err(DecodeError::BadFlags { packet_type, flags });
        }
        Ok(())
    }

    /// MQTT 3.1 gave PUBREL a DUP bit, which a client sets when it sends
    /// the PUBREL again (first byte 0x6A), and mosquitto takes it from a
    /// 3.1 client. 3.1.1 fixed the flags at 0010 [MQTT-3.6.1-1], so at
    /// level 4 the same byte is still refused.
    fn is_resent_v31_pubrel(&self, packet_type: u8, flags: u8) -> bool {
        packet_type == PUBREL && flags == 0b1010 && self.protocol == Some(Protocol::V31)
    }

    /// Everything the size alone can tell, before the body is waited for.
    fn check_size(&self, first_byte: u8, size: usize) -> Result<(), DecodeError> {
        let limit = self.limit();
        if size > limit {
            return Err(DecodeError::TooLarge { size, limit });
        }
        let packet_type = first_byte >> 4;
        let fixed = match packet_type {
            CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK => Some(2),
            PINGREQ | PINGRESP | DISCONNECT => Some(0),
            _ => None,
        };
        match fixed {
            Some(expected) if size != expected => Err(DecodeError::BadLength { packet_type, size }),
            _ => Ok(()),
        }
    }

    /// Parses one whole body with the parser for its protocol level: the
    /// connection's, or for a CONNECT the one it names. The first byte has
    /// already been checked, so the packet type is one of the fourteen and
    /// its flags are valid.
    // The hint keeps this in `step`, its one caller, as the free function
    // it replaced was: left out, decoding a small PUBLISH took twice as long
    // (`cargo bench --bench codec -- decode/publish_qos0_16B`).
    #[inline]
    fn parse(&mut self, first_byte: u8, body: Bytes) -> Result<Packet, DecodeError> {
        let mut cursor = Cursor::new(body);
        let packet_type = first_byte >> 4;
        let protocol = if packet_type == CONNECT {
            connect_protocol(&mut cursor)?
        } else {
            // The gate refused anything else before a CONNECT, on its first
            // byte; kept as an error, not a panic.
            self.protocol
                .ok_or(DecodeError::FirstPacketNotConnect { packet_type })?
        };
        let packet = match protocol {
            Protocol::V31 | Protocol::V311 => {
                v3::parse(first_byte, protocol, &mut cursor, &mut self.last_topic)?
            }
        };
        cursor.finish()?;
        Ok(packet)
    }
}

/// The protocol name and level that open a CONNECT (section 3.1.2), laid out
/// alike at every level of MQTT, and so read before the level's parser is
/// chosen. The name is compared as raw bytes: a name that is not even UTF-8
/// is just another wrong name.
fn connect_protocol(cursor: &mut Cursor) -> Result<Protocol, DecodeError> {
    let name = cursor.binary()?;
    let level = cursor.u8()?;
    match (name.as_ref(), level) {
        (b"MQTT", 4) => Ok(Protocol::V311),
        (b"MQIsdp", 3) => Ok(Protocol::V31),
        // [MQTT-3.1.2-2]: a protocol we know, at a level we do not.
        (b"MQTT" | b"MQIsdp", _) => Err(DecodeError::UnsupportedProtocolLevel(level)),
        // [MQTT-3.1.2-1]
        _ => Err(DecodeError::BadProtocolName),
    }
}

/// Removes and returns the first byte of `buf`, if there is one.
fn take_byte(buf: &mut BytesMut) -> Option<u8> {
    let byte = buf.first().copied()?;
    // Cannot panic: the buffer holds at least the byte just read.
    buf.advance(1);
    Some(byte)
}

/// The PUBLISH flags: DUP, two QoS bits, RETAIN (section 3.3.1).
fn check_publish_flags(flags: u8) -> Result<(), DecodeError> {
    let dup = flags & 0b1000 != 0;
    match (flags >> 1) & 0b11 {
        // [MQTT-3.3.1-4]
        3 => Err(DecodeError::PublishQoS3),
        // [MQTT-3.3.1-2]
        0 if dup => Err(DecodeError::DupAtQoS0),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(super) mod tests;
