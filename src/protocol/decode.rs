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

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::packet::packet_type::{
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};
use super::packet::{
    Connack, Connect, ConnectReturnCode, Packet, PacketId, Protocol, Publish, QoS, Suback,
    SubackCode, Subscribe, Unsubscribe, Will,
};
use super::topic::{TopicError, TopicFilter, TopicName};

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
    /// The broker, decoding what a client sends. `connected` turns true once
    /// a CONNECT has decoded.
    Server { connected: bool },
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
    /// is "connected" and accepts every client-to-server packet (CONNECT
    /// included: the broker itself closes on a second one) with a size of at
    /// most `max_size`.
    pub fn new(max_size: usize) -> Decoder {
        Decoder::running(Side::Server { connected: false }, max_size)
    }

    /// Client side (tests, future bridges): decodes server-to-client
    /// packets, each of size at most `max_size`; there is no CONNECT gate.
    pub fn client(max_size: usize) -> Decoder {
        Decoder::running(Side::Client, max_size)
    }

    fn running(side: Side, max_size: usize) -> Decoder {
        Decoder {
            mode: Mode::Running(Running {
                side,
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
        match self.side {
            Side::Server { connected: false } => self.max_size.min(CONNECT_MAX_SIZE),
            _ => self.max_size,
        }
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
                    let packet = parse(first_byte, body, &mut self.last_topic)?;
                    if let (Packet::Connect(_), Side::Server { connected }) =
                        (&packet, &mut self.side)
                    {
                        *connected = true;
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
        if self.side == (Side::Server { connected: false }) && packet_type != CONNECT {
            return Err(DecodeError::FirstPacketNotConnect { packet_type });
        }
        let (from_client, from_server) = match packet_type {
            CONNECT | SUBSCRIBE | UNSUBSCRIBE | PINGREQ | DISCONNECT => (true, false),
            CONNACK | SUBACK | UNSUBACK | PINGRESP => (false, true),
            PUBLISH | PUBACK | PUBREC | PUBREL | PUBCOMP => (true, true),
            _ => return Err(DecodeError::ReservedPacketType(packet_type)),
        };
        let allowed = match self.side {
            Side::Server { .. } => from_client,
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
        if flags != expected {
            // [MQTT-2.2.2-2]
            return Err(DecodeError::BadFlags { packet_type, flags });
        }
        Ok(())
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

/// Parses one whole body. The first byte has already been checked, so the
/// packet type is one of the fourteen and its flags are valid. `last_topic`
/// is the decoder's cache of the last PUBLISH topic.
fn parse(
    first_byte: u8,
    body: Bytes,
    last_topic: &mut Option<TopicName>,
) -> Result<Packet, DecodeError> {
    let mut cursor = Cursor { rest: body };
    let packet = match first_byte >> 4 {
        CONNECT => Packet::Connect(Box::new(connect(&mut cursor)?)),
        CONNACK => Packet::Connack(connack(&mut cursor)?),
        PUBLISH => Packet::Publish(publish(first_byte, &mut cursor, last_topic)?),
        PUBACK => Packet::Puback(cursor.packet_id()?),
        PUBREC => Packet::Pubrec(cursor.packet_id()?),
        PUBREL => Packet::Pubrel(cursor.packet_id()?),
        PUBCOMP => Packet::Pubcomp(cursor.packet_id()?),
        SUBSCRIBE => Packet::Subscribe(subscribe(&mut cursor)?),
        SUBACK => Packet::Suback(suback(&mut cursor)?),
        UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(&mut cursor)?),
        UNSUBACK => Packet::Unsuback(cursor.packet_id()?),
        PINGREQ => Packet::Pingreq,
        PINGRESP => Packet::Pingresp,
        DISCONNECT => Packet::Disconnect,
        // Refused on the first byte already; kept as an error, not a panic.
        other => return Err(DecodeError::ReservedPacketType(other)),
    };
    cursor.finish()?;
    Ok(packet)
}

/// CONNECT (section 3.1). Fields are read in the order the standard puts
/// them, and each flag is checked before the field it announces.
fn connect(cursor: &mut Cursor) -> Result<Connect, DecodeError> {
    // The name is compared as raw bytes: a name that is not even UTF-8 is
    // just another wrong name.
    let name = cursor.binary()?;
    let level = cursor.u8()?;
    let protocol = match (name.as_ref(), level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQIsdp", 3) => Protocol::V31,
        // [MQTT-3.1.2-2]: a protocol we know, at a level we do not.
        (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolLevel(level)),
        // [MQTT-3.1.2-1]
        _ => return Err(DecodeError::BadProtocolName),
    };

    let flags = cursor.u8()?;
    let has_username = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    let will_retain = flags & 0x20 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let has_will = flags & 0x04 != 0;
    let clean_session = flags & 0x02 != 0;
    if flags & 0x01 != 0 {
        // [MQTT-3.1.2-3]
        return Err(DecodeError::ConnectReservedFlag);
    }
    if !has_will && (will_qos != 0 || will_retain) {
        // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    if has_password && !has_username {
        // [MQTT-3.1.2-22]
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::WillQoS3)?; // [MQTT-3.1.2-14]

    let keep_alive = cursor.u16()?;
    // Any valid string, the empty one included: whether it is acceptable is
    // the broker's policy ([MQTT-3.1.3-5] .. [MQTT-3.1.3-9]).
    let client_id = cursor.string()?;
    let will = if has_will {
        Some(Will {
            topic: cursor.topic_name()?,
            payload: cursor.binary()?,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(cursor.string()?)
    } else {
        None
    };
    // Binary data, not a string: a password may be any bytes (section 3.1.3.5).
    let password = if has_password {
        Some(cursor.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_session,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

/// CONNACK (section 3.2): the size was checked to be 2.
fn connack(cursor: &mut Cursor) -> Result<Connack, DecodeError> {
    let flags = cursor.u8()?;
    // Bits 7-1 of the acknowledge flags are reserved (section 3.2.2.1).
    if flags & 0xFE != 0 {
        return Err(DecodeError::BadConnackFlags(flags));
    }
    let code = cursor.u8()?;
    Ok(Connack {
        session_present: flags & 0x01 != 0,
        code: ConnectReturnCode::from_u8(code).ok_or(DecodeError::BadConnackCode(code))?,
    })
}

/// PUBLISH (section 3.3). The payload is the rest of the body, so there is
/// no trailing-bytes check.
fn publish(
    first_byte: u8,
    cursor: &mut Cursor,
    last_topic: &mut Option<TopicName>,
) -> Result<Publish, DecodeError> {
    // The flags were checked on the first byte, so QoS 3 cannot reach here.
    let qos = QoS::from_u8((first_byte >> 1) & 0b11).ok_or(DecodeError::PublishQoS3)?;
    let topic = cursor.publish_topic(last_topic)?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(cursor.packet_id()?),
    };
    Ok(Publish {
        dup: first_byte & 0b1000 != 0,
        qos,
        retain: first_byte & 0b0001 != 0,
        topic,
        packet_id,
        payload: cursor.rest(),
    })
}

/// SUBSCRIBE (section 3.8): a packet id, then filter and requested QoS
/// pairs to the end of the body.
fn subscribe(cursor: &mut Cursor) -> Result<Subscribe, DecodeError> {
    let packet_id = cursor.packet_id()?;
    let mut filters = Vec::new();
    while !cursor.is_empty() {
        let filter = cursor.topic_filter()?;
        let requested = cursor.u8()?;
        // Upper six bits reserved, and 3 is not a QoS [MQTT-3-8.3-4].
        let qos = QoS::from_u8(requested).ok_or(DecodeError::BadRequestedQoS(requested))?;
        filters.push((filter, qos));
    }
    if filters.is_empty() {
        // [MQTT-3.8.3-3]
        return Err(DecodeError::NoFilters {
            packet_type: SUBSCRIBE,
        });
    }
    Ok(Subscribe { packet_id, filters })
}

/// SUBACK (section 3.9): a packet id, then one return code per filter.
fn suback(cursor: &mut Cursor) -> Result<Suback, DecodeError> {
    let packet_id = cursor.packet_id()?;
    let mut codes = Vec::new();
    while !cursor.is_empty() {
        let code = cursor.u8()?;
        codes.push(SubackCode::from_u8(code).ok_or(DecodeError::BadSubackCode(code))?);
    }
    if codes.is_empty() {
        // A SUBSCRIBE holds at least one filter, so its SUBACK at least one code.
        return Err(DecodeError::NoReturnCodes);
    }
    Ok(Suback { packet_id, codes })
}

/// UNSUBSCRIBE (section 3.10): a packet id, then filters to the end.
fn unsubscribe(cursor: &mut Cursor) -> Result<Unsubscribe, DecodeError> {
    let packet_id = cursor.packet_id()?;
    let mut filters = Vec::new();
    while !cursor.is_empty() {
        filters.push(cursor.topic_filter()?);
    }
    if filters.is_empty() {
        // [MQTT-3.10.3-2]
        return Err(DecodeError::NoFilters {
            packet_type: UNSUBSCRIBE,
        });
    }
    Ok(Unsubscribe { packet_id, filters })
}

/// Reads the fields of one body, front to back. Every read checks that the
/// bytes are there; nothing indexes, so a short body is an error, never a
/// panic.
struct Cursor {
    rest: Bytes,
}

impl Cursor {
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes, as a zero-copy slice of the body.
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.rest.len() {
            // [MQTT-3.1.4-1], [MQTT-4.8.0-1]
            return Err(DecodeError::Truncated);
        }
        Ok(self.rest.split_to(n))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = self.rest.first().copied().ok_or(DecodeError::Truncated)?;
        // Cannot panic: the byte was just read.
        self.rest.advance(1);
        Ok(byte)
    }

    /// A big-endian two-byte integer (section 1.5.2).
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let high = self.u8()?;
        let low = self.u8()?;
        Ok(u16::from_be_bytes([high, low]))
    }

    /// Two bytes of length, then that many bytes (sections 1.5.3, 3.1.3.5).
    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// Runs `read` on the bytes of the next string field (two bytes of
    /// length, then that many) where they lie in the body, then steps past
    /// them. A string is checked before it is copied out, and no slice of
    /// the body is made for it.
    fn in_place<T>(
        &mut self,
        read: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let len = usize::from(self.u16()?);
        // [MQTT-3.1.4-1], [MQTT-4.8.0-1]
        let raw = self.rest.get(..len).ok_or(DecodeError::Truncated)?;
        let value = read(raw)?;
        // Cannot panic: the bytes were just read.
        self.rest.advance(len);
        Ok(value)
    }

    /// A UTF-8 encoded string (section 1.5.3). A leading U+FEFF is kept as
    /// it is [MQTT-1.5.3-3].
    fn string(&mut self) -> Result<String, DecodeError> {
        self.in_place(|raw| {
            let s = utf8(raw)?;
            if s.contains('\0') {
                // [MQTT-1.5.3-2]
                return Err(DecodeError::NullCharacter);
            }
            Ok(s.to_owned())
        })
    }

    /// A topic name (a will's): one UTF-8 check, then one pass of the topic
    /// rules, which include U+0000.
    fn topic_name(&mut self) -> Result<TopicName, DecodeError> {
        self.in_place(|raw| TopicName::new(utf8(raw)?).map_err(topic_error))
    }

    /// A PUBLISH's topic name, through the decoder's one-entry cache: the
    /// same bytes as the last topic give the same `TopicName` (a reference
    /// count, no validation, no allocation); other bytes are validated and
    /// become the cached topic.
    fn publish_topic(&mut self, last: &mut Option<TopicName>) -> Result<TopicName, DecodeError> {
        self.in_place(|raw| {
            if let Some(topic) = last.as_ref().filter(|t| t.as_str().as_bytes() == raw) {
                return Ok(topic.clone());
            }
            let topic = TopicName::new(utf8(raw)?).map_err(topic_error)?;
            *last = (raw.len() <= CACHED_TOPIC_MAX).then(|| topic.clone());
            Ok(topic)
        })
    }

    /// A topic filter: one UTF-8 check, one pass of the topic rules, then
    /// the one copy the filter keeps.
    fn topic_filter(&mut self) -> Result<TopicFilter, DecodeError> {
        self.in_place(|raw| TopicFilter::new(utf8(raw)?).map_err(topic_error))
    }

    /// A packet identifier, which is never zero [MQTT-2.3.1-1].
    fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// Everything left, as a zero-copy slice of the body.
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.rest)
    }

    /// Bytes after the last field mean a malformed packet [MQTT-3.1.4-1].
    fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// `raw` as UTF-8. `from_utf8` refuses ill-formed sequences, surrogates and
/// overlong forms [MQTT-1.5.3-1].
fn utf8(raw: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)
}

/// A topic's U+0000 is reported like any string's [MQTT-1.5.3-2]; the rest
/// are the topic rules of section 4.7.
fn topic_error(error: TopicError) -> DecodeError {
    match error {
        TopicError::Null => DecodeError::NullCharacter,
        other => DecodeError::Topic(other),
    }
}

/// Why bytes did not decode into a packet.
///
/// Every one is a protocol violation: the connection that sent the bytes is
/// closed, without a CONNACK unless [`DecodeError::connack_code`] names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The fourth byte of the remaining length announces a fifth
    /// (section 2.2.3). Close.
    MalformedRemainingLength,
    /// The size (remaining length) is over the limit. Close, before any byte
    /// of the body is buffered (mosquitto CVE-2017-7651).
    TooLarge { size: usize, limit: usize },
    /// The first packet of a connection is not CONNECT [MQTT-3.1.0-1].
    /// Refused on its first byte. Close.
    FirstPacketNotConnect { packet_type: u8 },
    /// Packet type 0 or 15, which are reserved (section 2.2.1). Close.
    ReservedPacketType(u8),
    /// A packet that never travels this way: a server-only packet from a
    /// client, never trusted (mosquitto CVE-2021-28166), or a client-only
    /// packet from a server. Close.
    WrongDirection { packet_type: u8 },
    /// The reserved flags of the fixed header are wrong [MQTT-2.2.2-2]. Close.
    BadFlags { packet_type: u8, flags: u8 },
    /// PUBLISH with both QoS bits set [MQTT-3.3.1-4]. Close.
    PublishQoS3,
    /// PUBLISH at QoS 0 with DUP set [MQTT-3.3.1-2]. Close.
    DupAtQoS0,
    /// A packet of fixed size (PUBACK family, UNSUBACK and CONNACK: 2;
    /// PINGREQ, PINGRESP, DISCONNECT: 0) with another size. Close.
    BadLength { packet_type: u8, size: usize },
    /// CONNECT with a protocol name other than `MQTT` or `MQIsdp`
    /// [MQTT-3.1.2-1]. Close without CONNACK.
    BadProtocolName,
    /// CONNECT naming `MQTT` with a level other than 4, or `MQIsdp` with a
    /// level other than 3 [MQTT-3.1.2-2]. Send CONNACK 0x01, then close.
    UnsupportedProtocolLevel(u8),
    /// CONNECT with its reserved flag set [MQTT-3.1.2-3]. Close.
    ConnectReservedFlag,
    /// CONNECT with will QoS or will retain set but no will flag
    /// [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]. Close.
    WillFlagsWithoutWill,
    /// CONNECT with will QoS 3 [MQTT-3.1.2-14]. Close.
    WillQoS3,
    /// CONNECT with the password flag but not the username flag
    /// [MQTT-3.1.2-22]. Close.
    PasswordWithoutUsername,
    /// A field runs past the end of the body, or a field its flags announce
    /// is missing [MQTT-3.1.4-1]. Close.
    Truncated,
    /// Bytes left after the last field [MQTT-3.1.4-1]. Close.
    TrailingBytes,
    /// A string that is not well-formed UTF-8, surrogates included
    /// [MQTT-1.5.3-1]. Close.
    InvalidUtf8,
    /// U+0000 in a string [MQTT-1.5.3-2]. Close.
    NullCharacter,
    /// A topic name or filter that is empty, holds a misplaced wildcard or
    /// too many levels (section 4.7). Close.
    Topic(TopicError),
    /// A packet identifier of 0 [MQTT-2.3.1-1]. Close.
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE without a single filter [MQTT-3.8.3-3],
    /// [MQTT-3.10.3-2]. Close.
    NoFilters { packet_type: u8 },
    /// A SUBSCRIBE requested-QoS byte with reserved bits set or QoS 3
    /// [MQTT-3-8.3-4]. Close.
    BadRequestedQoS(u8),
    /// Client side: CONNACK acknowledge flags with reserved bits set
    /// (section 3.2.2.1). Close.
    BadConnackFlags(u8),
    /// Client side: a CONNACK return code above 5 (section 3.2.2.3). Close.
    BadConnackCode(u8),
    /// Client side: a SUBACK return code other than 0, 1, 2 or 0x80
    /// (section 3.9.3). Close.
    BadSubackCode(u8),
    /// Client side: a SUBACK without a return code (section 3.9.3). Close.
    NoReturnCodes,
}

impl DecodeError {
    /// The CONNACK code the broker must send before closing, if any.
    pub fn connack_code(&self) -> Option<ConnectReturnCode> {
        match self {
            DecodeError::UnsupportedProtocolLevel(_) => {
                Some(ConnectReturnCode::UnacceptableProtocolVersion)
            }
            _ => None,
        }
    }
}

/// The name the standard gives a packet type, for messages.
fn type_name(packet_type: u8) -> &'static str {
    match packet_type {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        _ => "reserved type",
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        match self {
            MalformedRemainingLength => f.write_str("remaining length longer than four bytes"),
            TooLarge { size, limit } => {
                write!(f, "packet of {size} bytes over the limit of {limit}")
            }
            FirstPacketNotConnect { packet_type } => write!(
                f,
                "first packet is {}, not CONNECT",
                type_name(*packet_type)
            ),
            ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            WrongDirection { packet_type } => {
                write!(f, "{} sent the wrong way", type_name(*packet_type))
            }
            BadFlags { packet_type, flags } => write!(
                f,
                "{} with reserved flags {flags:#06b}",
                type_name(*packet_type)
            ),
            PublishQoS3 => f.write_str("PUBLISH with QoS 3"),
            DupAtQoS0 => f.write_str("PUBLISH with DUP at QoS 0"),
            BadLength { packet_type, size } => write!(
                f,
                "{} with remaining length {size}",
                type_name(*packet_type)
            ),
            BadProtocolName => f.write_str("CONNECT with an unknown protocol name"),
            UnsupportedProtocolLevel(level) => {
                write!(f, "CONNECT with unsupported protocol level {level}")
            }
            ConnectReservedFlag => f.write_str("CONNECT with the reserved flag set"),
            WillFlagsWithoutWill => f.write_str("CONNECT with will QoS or retain but no will"),
            WillQoS3 => f.write_str("CONNECT with will QoS 3"),
            PasswordWithoutUsername => f.write_str("CONNECT with a password but no username"),
            Truncated => f.write_str("a field runs past the end of the packet"),
            TrailingBytes => f.write_str("bytes after the last field of the packet"),
            InvalidUtf8 => f.write_str("ill-formed UTF-8 string"),
            NullCharacter => f.write_str("U+0000 in a string"),
            Topic(error) => error.fmt(f),
            ZeroPacketId => f.write_str("packet identifier 0"),
            NoFilters { packet_type } => {
                write!(f, "{} without a topic filter", type_name(*packet_type))
            }
            BadRequestedQoS(byte) => write!(f, "SUBSCRIBE requested QoS byte {byte:#04x}"),
            BadConnackFlags(flags) => write!(f, "CONNACK flags {flags:#04x}"),
            BadConnackCode(code) => write!(f, "CONNACK return code {code}"),
            BadSubackCode(code) => write!(f, "SUBACK return code {code:#04x}"),
            NoReturnCodes => f.write_str("SUBACK without a return code"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protocol::MAX_TOPIC_LEVELS;

    /// The size limit the tests give the decoder unless they test limits.
    const MAX: usize = 1 << 20;

    /// The smallest valid CONNECT: MQTT 3.1.1, clean session, keepalive 60,
    /// empty client id.
    pub(crate) const CONNECT_MIN: &[u8] =
        &[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 0];

    pub(crate) fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    pub(crate) fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    pub(crate) fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn connect(client_id: &str) -> Connect {
        Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 60,
            client_id: client_id.to_owned(),
            will: None,
            username: None,
            password: None,
        }
    }

    fn publish(qos: QoS, packet_id: Option<u16>, topic: &str, payload: &[u8]) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: name(topic),
            packet_id: packet_id.map(id),
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Every packet a client may send, as exact bytes and the value they
    /// decode to (and that encodes back to exactly those bytes).
    pub(crate) fn client_packets() -> Vec<(Vec<u8>, Packet)> {
        let full = Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 300,
            client_id: "sol-1".to_owned(),
            will: Some(Will {
                topic: name("bye/now"),
                payload: Bytes::from_static(&[0x00, 0xFF]),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("ann".to_owned()),
            password: Some(Bytes::from_static(&[0xDE, 0xAD, 0x00])),
        };
        let v31 = Connect {
            protocol: Protocol::V31,
            clean_session: false,
            keep_alive: 0,
            client_id: "id".to_owned(),
            ..connect("")
        };
        let mut dup_retain = publish(QoS::AtLeastOnce, Some(0x1234), "t", &[1, 2]);
        dup_retain.dup = true;
        dup_retain.retain = true;
        vec![
            (CONNECT_MIN.to_vec(), Packet::Connect(Box::new(connect("")))),
            (
                vec![
                    0x10, 40, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xEE, 0x01, 0x2C, 0, 5, b's', b'o',
                    b'l', b'-', b'1', 0, 7, b'b', b'y', b'e', b'/', b'n', b'o', b'w', 0, 2, 0x00,
                    0xFF, 0, 3, b'a', b'n', b'n', 0, 3, 0xDE, 0xAD, 0x00,
                ],
                Packet::Connect(Box::new(full)),
            ),
            (
                vec![
                    0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x00, 0, 0, 0, 2, b'i',
                    b'd',
                ],
                Packet::Connect(Box::new(v31)),
            ),
            (
                vec![0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'],
                Packet::Publish(publish(QoS::AtMostOnce, None, "a/b", b"hi")),
            ),
            (
                vec![0x3B, 7, 0, 1, b't', 0x12, 0x34, 1, 2],
                Packet::Publish(dup_retain),
            ),
            (
                vec![0x34, 5, 0, 1, b't', 0, 9],
                Packet::Publish(publish(QoS::ExactlyOnce, Some(9), "t", b"")),
            ),
            // A leading BOM is kept, not stripped [MQTT-1.5.3-3].
            (
                vec![0x30, 6, 0, 4, 0xEF, 0xBB, 0xBF, b'a'],
                Packet::Publish(publish(QoS::AtMostOnce, None, "\u{feff}a", b"")),
            ),
            (vec![0x40, 2, 0, 1], Packet::Puback(id(1))),
            (vec![0x50, 2, 0x12, 0x34], Packet::Pubrec(id(0x1234))),
            (vec![0x62, 2, 0xFF, 0xFF], Packet::Pubrel(id(65535))),
            (vec![0x70, 2, 0, 7], Packet::Pubcomp(id(7))),
            (
                vec![0x82, 12, 0, 10, 0, 3, b'a', b'/', b'+', 1, 0, 1, b'#', 2],
                Packet::Subscribe(Subscribe {
                    packet_id: id(10),
                    filters: vec![
                        (filter("a/+"), QoS::AtLeastOnce),
                        (filter("#"), QoS::ExactlyOnce),
                    ],
                }),
            ),
            (
                vec![0xA2, 10, 0, 11, 0, 3, b'a', b'/', b'+', 0, 1, b'#'],
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: id(11),
                    filters: vec![filter("a/+"), filter("#")],
                }),
            ),
            (vec![0xC0, 0], Packet::Pingreq),
            (vec![0xE0, 0], Packet::Disconnect),
        ]
    }

    /// Every packet a server may send, as exact bytes and values.
    pub(crate) fn server_packets() -> Vec<(Vec<u8>, Packet)> {
        vec![
            (
                vec![0x20, 2, 0x01, 0x00],
                Packet::Connack(Connack {
                    session_present: true,
                    code: ConnectReturnCode::Accepted,
                }),
            ),
            (
                vec![0x20, 2, 0x00, 0x05],
                Packet::Connack(Connack {
                    session_present: false,
                    code: ConnectReturnCode::NotAuthorized,
                }),
            ),
            (
                vec![0x32, 7, 0, 1, b't', 0x12, 0x34, 1, 2],
                Packet::Publish(publish(QoS::AtLeastOnce, Some(0x1234), "t", &[1, 2])),
            ),
            (vec![0x40, 2, 0, 1], Packet::Puback(id(1))),
            (vec![0x50, 2, 0, 2], Packet::Pubrec(id(2))),
            (vec![0x62, 2, 0, 3], Packet::Pubrel(id(3))),
            (vec![0x70, 2, 0, 4], Packet::Pubcomp(id(4))),
            (
                vec![0x90, 5, 0, 10, 0x01, 0x80, 0x02],
                Packet::Suback(Suback {
                    packet_id: id(10),
                    codes: vec![
                        SubackCode::Granted(QoS::AtLeastOnce),
                        SubackCode::Failure,
                        SubackCode::Granted(QoS::ExactlyOnce),
                    ],
                }),
            ),
            (vec![0xB0, 2, 0, 11], Packet::Unsuback(id(11))),
            (vec![0xD0, 0], Packet::Pingresp),
        ]
    }

    /// Frames `body` behind `first_byte` with its remaining length.
    fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![first_byte];
        let mut n = body.len();
        loop {
            let digit = (n % 128) as u8;
            n /= 128;
            if n == 0 {
                out.push(digit);
                break;
            }
            out.push(digit | 0x80);
        }
        out.extend_from_slice(body);
        out
    }

    /// A CONNECT with the given name, level and flags, keepalive 60, then
    /// `rest` (client id and what the flags announce).
    fn connect_bytes(protocol: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
        let mut body = vec![0, protocol.len() as u8];
        body.extend_from_slice(protocol);
        body.extend_from_slice(&[level, flags, 0, 60]);
        body.extend_from_slice(rest);
        frame(0x10, &body)
    }

    /// A server-side decoder that has seen a CONNECT.
    pub(crate) fn connected(max_size: usize) -> Decoder {
        let mut decoder = Decoder::new(max_size);
        decode_whole(&mut decoder, CONNECT_MIN).unwrap();
        decoder
    }

    /// Decodes `bytes` as exactly one packet.
    fn decode_whole(decoder: &mut Decoder, bytes: &[u8]) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let packet = decoder.decode(&mut buf)?.expect("a whole packet");
        assert!(buf.is_empty(), "bytes left after {packet:?}");
        Ok(packet)
    }

    /// A fresh decoder for `packet` on the given side: server-side decoders
    /// have seen a CONNECT unless the packet is one.
    fn decoder_for(packet: &Packet, server: bool) -> Decoder {
        match (server, packet) {
            (false, _) => Decoder::client(MAX),
            (true, Packet::Connect(_)) => Decoder::new(MAX),
            (true, _) => connected(MAX),
        }
    }

    fn all_packets() -> Vec<(Vec<u8>, Packet, bool)> {
        let client = client_packets().into_iter().map(|(b, p)| (b, p, true));
        let server = server_packets().into_iter().map(|(b, p)| (b, p, false));
        client.chain(server).collect()
    }

    // ---- valid packets ----

    #[test]
    fn every_packet_type_decodes_from_exact_bytes() {
        let mut seen = std::collections::HashSet::new();
        for (bytes, expected, server) in all_packets() {
            let mut decoder = decoder_for(&expected, server);
            assert_eq!(decode_whole(&mut decoder, &bytes), Ok(expected.clone()));
            seen.insert(expected.name());
        }
        assert_eq!(seen.len(), 14, "all fourteen types: {seen:?}");
    }

    #[test]
    fn client_id_may_be_any_string() {
        let bytes = connect_bytes(
            b"MQTT",
            4,
            0x02,
            &[0, 6, 0xC3, 0xA9, b'+', b'#', b'/', b' '],
        );
        let packet = decode_whole(&mut Decoder::new(MAX), &bytes);
        assert_eq!(packet, Ok(Packet::Connect(Box::new(connect("é+#/ ")))));
    }

    #[test]
    fn a_leading_bom_is_kept_in_strings() {
        let bytes = connect_bytes(b"MQTT", 4, 0x02, &[0, 4, 0xEF, 0xBB, 0xBF, b'x']);
        let packet = decode_whole(&mut Decoder::new(MAX), &bytes);
        assert_eq!(packet, Ok(Packet::Connect(Box::new(connect("\u{feff}x")))));
    }

    #[test]
    fn a_second_connect_is_left_to_the_broker() {
        let mut decoder = connected(MAX);
        assert_eq!(
            decode_whole(&mut decoder, CONNECT_MIN),
            Ok(Packet::Connect(Box::new(connect(""))))
        );
    }

    #[test]
    fn payloads_own_their_bytes_and_never_pin_the_input_buffer() {
        let (bytes, _) = client_packets().swap_remove(1);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&bytes);
        let input = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
        let Some(Packet::Connect(connect)) = Decoder::new(MAX).decode(&mut buf).unwrap() else {
            panic!("not a CONNECT");
        };
        let will = connect.will.unwrap().payload;
        let password = connect.password.unwrap();
        assert!(!input.contains(&(will.as_ptr() as usize)));
        assert!(!input.contains(&(password.as_ptr() as usize)));

        let bytes = [0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'];
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&bytes);
        let input = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
        let Some(Packet::Publish(publish)) = connected(MAX).decode(&mut buf).unwrap() else {
            panic!("not a PUBLISH");
        };
        assert_eq!(&publish.payload[..], b"hi");
        assert!(!input.contains(&(publish.payload.as_ptr() as usize)));
        // The input buffer is its own again: nothing of it is shared.
        assert!(buf.is_empty());
        buf.reserve(64 * 1024);
        assert_eq!(
            buf.as_ptr() as usize,
            input.start,
            "the read buffer is reused"
        );
    }

    // ---- incremental decoding ----

    #[test]
    fn one_byte_at_a_time() {
        for (bytes, expected, server) in all_packets() {
            let mut decoder = decoder_for(&expected, server);
            let mut buf = BytesMut::new();
            for (i, &byte) in bytes.iter().enumerate() {
                buf.extend_from_slice(&[byte]);
                let result = decoder.decode(&mut buf).unwrap();
                if i + 1 < bytes.len() {
                    assert_eq!(result, None, "{expected:?} after {} bytes", i + 1);
                } else {
                    assert_eq!(result.as_ref(), Some(&expected));
                }
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn split_at_every_offset() {
        for (bytes, expected, server) in all_packets() {
            for split in 0..bytes.len() {
                let mut decoder = decoder_for(&expected, server);
                let (head, tail) = bytes.split_at(split);
                let mut buf = BytesMut::from(head);
                assert_eq!(
                    decoder.decode(&mut buf),
                    Ok(None),
                    "{expected:?} at {split}"
                );
                buf.extend_from_slice(tail);
                assert_eq!(decoder.decode(&mut buf), Ok(Some(expected.clone())));
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn many_packets_in_one_buffer() {
        for server in [true, false] {
            let packets = if server {
                client_packets()
            } else {
                server_packets()
            };
            let stream: Vec<u8> = packets.iter().flat_map(|(b, _)| b.clone()).collect();
            // In one piece, and in chunks of every size up to 7 bytes.
            for chunk in [stream.len(), 1, 2, 3, 4, 5, 6, 7] {
                // The client list starts with CONNECT, so a fresh decoder works.
                let mut decoder = if server {
                    Decoder::new(MAX)
                } else {
                    Decoder::client(MAX)
                };
                let mut buf = BytesMut::new();
                let mut decoded = Vec::new();
                for piece in stream.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    while let Some(packet) = decoder.decode(&mut buf).unwrap() {
                        decoded.push(packet);
                    }
                }
                let expected: Vec<Packet> = packets.iter().map(|(_, p)| p.clone()).collect();
                assert_eq!(decoded, expected, "chunks of {chunk}");
                assert!(buf.is_empty());
            }
        }
    }

    // ---- the topic cache ----

    /// A QoS 0 PUBLISH to the raw topic bytes `topic`, payload "p".
    fn publish_to(topic: &[u8]) -> Vec<u8> {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic);
        body.push(b'p');
        frame(0x30, &body)
    }

    fn topic_of(packet: Packet) -> TopicName {
        match packet {
            Packet::Publish(publish) => publish.topic,
            other => panic!("not a PUBLISH: {other:?}"),
        }
    }

    /// Whether two names share one allocation (the `Arc` inside is private).
    fn shared(a: &TopicName, b: &TopicName) -> bool {
        a.as_str().as_ptr() == b.as_str().as_ptr()
    }

    #[test]
    fn a_repeated_topic_is_shared_not_allocated_again() {
        let mut decoder = connected(MAX);
        let mut decode = |bytes: &[u8]| topic_of(decode_whole(&mut decoder, bytes).unwrap());
        let first = decode(&publish_to(b"sensors/room1/t"));
        let again = decode(&publish_to(b"sensors/room1/t"));
        assert_eq!(again, name("sensors/room1/t"));
        assert!(shared(&first, &again));
        // Whatever the QoS: the packet id after the topic is still read.
        let qos1 = decode_whole(&mut decoder, &frame(0x32, b"\0\x0fsensors/room1/t\0\x07p"));
        let Ok(Packet::Publish(qos1)) = qos1 else {
            panic!("{qos1:?}")
        };
        assert_eq!(qos1.packet_id, Some(id(7)));
        assert_eq!(&qos1.payload[..], b"p");
        assert!(shared(&first, &qos1.topic));

        let mut decode = |bytes: &[u8]| topic_of(decode_whole(&mut decoder, bytes).unwrap());
        let other = decode(&publish_to(b"sensors/room2/t"));
        assert_eq!(other, name("sensors/room2/t"));
        assert!(!shared(&first, &other));
        // The new topic replaced the cached one: the first is validated and
        // allocated again (it cannot land where `first`, still alive, is).
        let back = decode(&publish_to(b"sensors/room1/t"));
        assert_eq!(back, first);
        assert!(!shared(&first, &back));
        assert!(shared(&back, &decode(&publish_to(b"sensors/room1/t"))));
    }

    #[test]
    fn a_long_topic_is_not_kept() {
        let mut decoder = connected(MAX);
        let long = "a/".repeat(CACHED_TOPIC_MAX / 2) + "b";
        assert!(long.len() > CACHED_TOPIC_MAX);
        let first = topic_of(decode_whole(&mut decoder, &publish_to(long.as_bytes())).unwrap());
        let again = topic_of(decode_whole(&mut decoder, &publish_to(long.as_bytes())).unwrap());
        assert_eq!(first, again);
        assert!(
            !shared(&first, &again),
            "a topic over the cap is decoded afresh"
        );
        // Nor does it keep a shorter topic cached before it.
        let short = topic_of(decode_whole(&mut decoder, &publish_to(b"s/t")).unwrap());
        decode_whole(&mut decoder, &publish_to(long.as_bytes())).unwrap();
        let short_again = topic_of(decode_whole(&mut decoder, &publish_to(b"s/t")).unwrap());
        assert!(!shared(&short, &short_again));
        // At the cap it is kept.
        let at_cap = "c".repeat(CACHED_TOPIC_MAX);
        let a = topic_of(decode_whole(&mut decoder, &publish_to(at_cap.as_bytes())).unwrap());
        let b = topic_of(decode_whole(&mut decoder, &publish_to(at_cap.as_bytes())).unwrap());
        assert!(shared(&a, &b));
    }

    #[test]
    fn a_topic_close_to_the_cached_one_is_not_taken_for_it() {
        let pairs: [(&[u8], &str); 5] = [
            (b"a/b1", "a/b2"),
            (b"a/b", "a/bc"),
            (b"a/bc", "a/b"),
            (b"a/b", "a/B"),
            ("é/x".as_bytes(), "è/x"),
        ];
        for (cached, next) in pairs {
            let mut decoder = connected(MAX);
            decode_whole(&mut decoder, &publish_to(cached)).unwrap();
            let topic = topic_of(decode_whole(&mut decoder, &publish_to(next.as_bytes())).unwrap());
            assert_eq!(topic.as_str(), next);
        }
    }

    #[test]
    fn an_invalid_topic_after_a_cached_one_is_still_refused() {
        use DecodeError::*;
        let deep = "a/".repeat(MAX_TOPIC_LEVELS) + "b";
        let cases: [(Vec<u8>, DecodeError); 7] = [
            (publish_to(b"a/+"), Topic(TopicError::WildcardInName)),
            (publish_to(b"a/b/#"), Topic(TopicError::WildcardInName)),
            (publish_to(b"a/b\0"), NullCharacter),
            (publish_to(b"a/\xff"), InvalidUtf8),
            (publish_to(b""), Topic(TopicError::Empty)),
            (
                publish_to(deep.as_bytes()),
                Topic(TopicError::TooManyLevels),
            ),
            // Announces the cached topic's length, holds one byte less.
            (vec![0x30, 4, 0, 3, b'a', b'/'], Truncated),
        ];
        for (bytes, expected) in cases {
            let mut decoder = connected(MAX);
            decode_whole(&mut decoder, &publish_to(b"a/b")).unwrap();
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(decoder.decode(&mut buf), Err(expected), "{bytes:?}");
        }
    }

    #[test]
    fn the_cache_works_when_bytes_arrive_one_at_a_time() {
        let topics = ["a/b", "a/b", "c", "c", "a/b", "a/bb"];
        let stream: Vec<u8> = topics
            .iter()
            .flat_map(|t| publish_to(t.as_bytes()))
            .collect();
        let mut decoder = connected(MAX);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for &byte in &stream {
            buf.extend_from_slice(&[byte]);
            while let Some(packet) = decoder.decode(&mut buf).unwrap() {
                decoded.push(topic_of(packet));
            }
        }
        let strings: Vec<&str> = decoded.iter().map(|t| t.as_str()).collect();
        assert_eq!(strings, topics);
        assert!(shared(&decoded[0], &decoded[1]));
        assert!(shared(&decoded[2], &decoded[3]));
        assert!(!shared(&decoded[0], &decoded[4]));
        assert!(buf.is_empty());
    }

    /// A connection holds its decoder for its whole life; the topic cache
    /// was paid for with smaller size fields, not with more bytes.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_decoder_is_no_bigger_with_its_topic_cache() {
        assert!(
            std::mem::size_of::<Decoder>() <= 40,
            "Decoder is {} bytes",
            std::mem::size_of::<Decoder>()
        );
    }

    #[test]
    fn a_partial_header_is_consumed_and_resumed() {
        let mut decoder = connected(MAX);
        let mut buf = BytesMut::from(&[0x30, 0x85][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.is_empty(), "header bytes are consumed as they arrive");
        assert_eq!(decoder.needed(0), 0, "the size is not known yet");
        // 0x85 0x00 is a non-minimal encoding of 5: accepted, as mosquitto does.
        buf.extend_from_slice(&[0x00, 0, 1]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(
            buf.len(),
            2,
            "the body is left in the buffer until it is whole"
        );
        assert_eq!(decoder.needed(buf.len()), 3);
        buf.extend_from_slice(b"thi");
        let expected = publish(QoS::AtMostOnce, None, "t", b"hi");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Packet::Publish(expected)))
        );
        assert_eq!(decoder.needed(0), 0);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let mut decoder = connected(MAX);
        assert_eq!(
            decode_whole(&mut decoder, &[0xC0, 0x80, 0x80, 0x80, 0x00]),
            Ok(Packet::Pingreq)
        );
    }

    /// Remaining lengths at the edges of one to four bytes (section 2.2.3).
    pub(crate) const LENGTHS: &[(usize, &[u8])] = &[
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];

    #[test]
    fn remaining_length_boundaries() {
        for &(size, digits) in LENGTHS {
            let mut decoder = connected(usize::MAX);
            let first_byte = if size == 0 { 0xC0 } else { 0x30 };
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&[first_byte]);
            buf.extend_from_slice(digits);
            if size == 0 {
                assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::Pingreq)));
                continue;
            }
            assert_eq!(decoder.decode(&mut buf), Ok(None));
            assert_eq!(decoder.needed(0), size, "{digits:02x?}");
            if size > 2_097_152 {
                // 256 MB of body is not worth allocating: the size is known.
                continue;
            }
            buf.extend_from_slice(&[0, 1, b't']);
            buf.resize(size, 0x5A);
            let Ok(Some(Packet::Publish(publish))) = decoder.decode(&mut buf) else {
                panic!("size {size} did not decode");
            };
            assert_eq!(publish.payload.len(), size - 3);
            assert!(publish.payload.iter().all(|&b| b == 0x5A));
            assert!(buf.is_empty());
        }
    }

    // ---- sizes and the CONNECT gate ----

    /// 100_000_000 as a remaining length.
    const HUNDRED_MB: [u8; 4] = [0x80, 0xC2, 0xD7, 0x2F];

    #[test]
    fn a_huge_length_is_refused_after_the_header_alone() {
        for first_byte in [0x30, 0x32, 0x10, 0x40, 0x62, 0x82, 0xA2, 0xC0, 0xE0] {
            let mut decoder = connected(MAX);
            let mut buf = BytesMut::with_capacity(5);
            buf.extend_from_slice(&[first_byte]);
            buf.extend_from_slice(&HUNDRED_MB);
            let capacity = buf.capacity();
            let expected = DecodeError::TooLarge {
                size: 100_000_000,
                limit: MAX,
            };
            assert_eq!(decoder.decode(&mut buf), Err(expected.clone()));
            assert!(buf.capacity() <= capacity, "nothing was reserved");
            assert_eq!(decoder.needed(0), 0);
            // The decoder stays failed and reads nothing more.
            buf.extend_from_slice(&[0xC0, 0]);
            assert_eq!(decoder.decode(&mut buf), Err(expected));
            assert_eq!(buf.len(), 2);
        }
    }

    #[test]
    fn a_huge_connect_is_refused_after_the_header_alone() {
        let mut decoder = Decoder::new(usize::MAX);
        let mut buf = BytesMut::from(&[0x10, 0x80, 0xC2, 0xD7, 0x2F][..]);
        let capacity = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::TooLarge {
                size: 100_000_000,
                limit: CONNECT_MAX_SIZE,
            })
        );
        assert!(buf.capacity() <= capacity, "nothing was reserved");
    }

    #[test]
    fn connect_size_is_capped_before_connect_only() {
        // 100_001 and 100_000 as remaining lengths.
        let over = [0x10, 0xA1, 0x8D, 0x06];
        let at = [0x10, 0xA0, 0x8D, 0x06];
        let mut buf = BytesMut::from(&over[..]);
        assert_eq!(
            Decoder::new(MAX).decode(&mut buf),
            Err(DecodeError::TooLarge {
                size: 100_001,
                limit: CONNECT_MAX_SIZE,
            })
        );
        let mut decoder = Decoder::new(MAX);
        let mut buf = BytesMut::from(&at[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.needed(0), 100_000);

        // A max_size below the CONNECT cap wins.
        let mut buf = BytesMut::from(&at[..]);
        assert_eq!(
            Decoder::new(50_000).decode(&mut buf),
            Err(DecodeError::TooLarge {
                size: 100_000,
                limit: 50_000,
            })
        );

        // Once connected, max_size is the limit, and a CONNECT too may use it.
        for first_byte in [0x30, 0x10] {
            let mut decoder = connected(MAX);
            let mut buf = BytesMut::from(&[first_byte, 0xA1, 0x8D, 0x06][..]);
            assert_eq!(decoder.decode(&mut buf), Ok(None));
            assert_eq!(decoder.needed(0), 100_001);
        }
        let mut decoder = connected(MAX);
        // MAX + 1 = 1_048_577 as a remaining length.
        let mut buf = BytesMut::from(&[0x30, 0x81, 0x80, 0x40][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::TooLarge {
                size: MAX + 1,
                limit: MAX,
            })
        );
    }

    #[test]
    fn the_first_byte_of_a_non_connect_first_packet_is_refused() {
        for first_byte in 0..=255u8 {
            if first_byte >> 4 == CONNECT {
                continue;
            }
            let mut buf = BytesMut::from(&[first_byte][..]);
            let capacity = buf.capacity();
            assert_eq!(
                Decoder::new(MAX).decode(&mut buf),
                Err(DecodeError::FirstPacketNotConnect {
                    packet_type: first_byte >> 4
                }),
                "{first_byte:#04x}"
            );
            assert!(buf.capacity() <= capacity, "nothing was reserved");
        }
    }

    #[test]
    fn a_fifth_length_byte_is_refused_without_waiting_for_it() {
        let mut decoder = connected(MAX);
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x80][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::MalformedRemainingLength)
        );
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01][..]);
        assert_eq!(
            connected(MAX).decode(&mut buf),
            Err(DecodeError::MalformedRemainingLength)
        );
    }

    // ---- errors ----

    fn check_errors(make: impl Fn() -> Decoder, cases: &[(Vec<u8>, DecodeError)]) {
        for (bytes, expected) in cases {
            let mut decoder = make();
            assert_eq!(
                decode_whole(&mut decoder, bytes).as_ref(),
                Err(expected),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn connect_errors() {
        use DecodeError::*;
        let level = UnsupportedProtocolLevel;
        let cases = [
            // [MQTT-3.1.2-1]
            (connect_bytes(b"MQTX", 4, 0x02, &[0, 0]), BadProtocolName),
            (connect_bytes(b"mqtt", 4, 0x02, &[0, 0]), BadProtocolName),
            (connect_bytes(b"", 4, 0x02, &[0, 0]), BadProtocolName),
            (
                connect_bytes(&[0xFF, 0xFE], 4, 0x02, &[0, 0]),
                BadProtocolName,
            ),
            (connect_bytes(b"MQIsdp", 4, 0x02, &[0, 0]), level(4)),
            // [MQTT-3.1.2-2]
            (connect_bytes(b"MQTT", 3, 0x02, &[0, 0]), level(3)),
            (connect_bytes(b"MQTT", 5, 0x02, &[0, 0]), level(5)),
            (connect_bytes(b"MQTT", 0x84, 0x02, &[0, 0]), level(0x84)),
            (connect_bytes(b"MQIsdp", 4, 0x02, &[0, 0]), level(4)),
            // The level is refused before the rest is looked at.
            (connect_bytes(b"MQTT", 5, 0xFF, &[]), level(5)),
            // [MQTT-3.1.2-3]
            (
                connect_bytes(b"MQTT", 4, 0x03, &[0, 0]),
                ConnectReservedFlag,
            ),
            // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
            (
                connect_bytes(b"MQTT", 4, 0x0A, &[0, 0]),
                WillFlagsWithoutWill,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x12, &[0, 0]),
                WillFlagsWithoutWill,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x22, &[0, 0]),
                WillFlagsWithoutWill,
            ),
            // [MQTT-3.1.2-14]
            (
                connect_bytes(b"MQTT", 4, 0x1E, &[0, 0, 0, 1, b't', 0, 0]),
                WillQoS3,
            ),
            // [MQTT-3.1.2-22]
            (
                connect_bytes(b"MQTT", 4, 0x42, &[0, 0, 0, 1, b'p']),
                PasswordWithoutUsername,
            ),
            // [MQTT-3.1.4-1]: flagged but missing, running past the end.
            (frame(0x10, &[0, 4, b'M', b'Q', b'T', b'T', 4]), Truncated),
            (connect_bytes(b"MQTT", 4, 0x02, &[]), Truncated),
            (
                connect_bytes(b"MQTT", 4, 0x02, &[0, 5, b'a', b'b']),
                Truncated,
            ),
            (connect_bytes(b"MQTT", 4, 0x82, &[0, 0]), Truncated),
            (
                connect_bytes(b"MQTT", 4, 0xC2, &[0, 0, 0, 1, b'u']),
                Truncated,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x06, &[0, 0, 0, 1, b't']),
                Truncated,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x06, &[0, 0, 0, 1, b't', 0, 2, 1]),
                Truncated,
            ),
            // [MQTT-3.1.4-1]: trailing bytes.
            (
                connect_bytes(b"MQTT", 4, 0x02, &[0, 0, 0xFF]),
                TrailingBytes,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x82, &[0, 0, 0, 1, b'u', 0]),
                TrailingBytes,
            ),
            // [MQTT-1.5.3-1]: ill-formed, a surrogate, an overlong NUL.
            (
                connect_bytes(b"MQTT", 4, 0x02, &[0, 2, 0xC3, 0x28]),
                InvalidUtf8,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x02, &[0, 3, 0xED, 0xA0, 0x80]),
                InvalidUtf8,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x02, &[0, 2, 0xC0, 0x80]),
                InvalidUtf8,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x82, &[0, 0, 0, 1, 0xFF]),
                InvalidUtf8,
            ),
            // [MQTT-1.5.3-2] in the client id, the username, the will topic.
            (
                connect_bytes(b"MQTT", 4, 0x02, &[0, 2, b'a', 0]),
                NullCharacter,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x82, &[0, 0, 0, 1, 0]),
                NullCharacter,
            ),
            (
                connect_bytes(b"MQTT", 4, 0x06, &[0, 0, 0, 3, b'a', 0, b'b', 0, 0]),
                NullCharacter,
            ),
            // The will topic is a topic name.
            (
                connect_bytes(b"MQTT", 4, 0x06, &[0, 0, 0, 1, b'#', 0, 0]),
                Topic(TopicError::WildcardInName),
            ),
            (
                connect_bytes(b"MQTT", 4, 0x06, &[0, 0, 0, 0, 0, 0]),
                Topic(TopicError::Empty),
            ),
            // [MQTT-2.2.2-2] on a CONNECT.
            (
                {
                    let mut bytes = CONNECT_MIN.to_vec();
                    bytes[0] = 0x12;
                    bytes
                },
                BadFlags {
                    packet_type: CONNECT,
                    flags: 2,
                },
            ),
        ];
        check_errors(|| Decoder::new(MAX), &cases);
    }

    #[test]
    fn client_packet_errors() {
        use DecodeError::*;
        use TopicError as T;
        let flags = |packet_type, flags| BadFlags { packet_type, flags };
        let length = |packet_type, size| BadLength { packet_type, size };
        let deep = "a/".repeat(MAX_TOPIC_LEVELS) + "a";
        let mut deep_publish = (deep.len() as u16).to_be_bytes().to_vec();
        deep_publish.extend_from_slice(deep.as_bytes());
        let cases = [
            // Reserved types and server-only types.
            (vec![0x00, 0], ReservedPacketType(0)),
            (vec![0xF0, 0], ReservedPacketType(15)),
            (
                vec![0x20, 2, 0, 0],
                WrongDirection {
                    packet_type: CONNACK,
                },
            ),
            (
                vec![0x90, 3, 0, 1, 0],
                WrongDirection {
                    packet_type: SUBACK,
                },
            ),
            (
                vec![0xB0, 2, 0, 1],
                WrongDirection {
                    packet_type: UNSUBACK,
                },
            ),
            (
                vec![0xD0, 0],
                WrongDirection {
                    packet_type: PINGRESP,
                },
            ),
            // [MQTT-2.2.2-2]
            (vec![0x60, 2, 0, 1], flags(PUBREL, 0)),
            (vec![0x63, 2, 0, 1], flags(PUBREL, 3)),
            (vec![0x41, 2, 0, 1], flags(PUBACK, 1)),
            (vec![0x52, 2, 0, 1], flags(PUBREC, 2)),
            (vec![0x78, 2, 0, 1], flags(PUBCOMP, 8)),
            (frame(0x80, &[0, 1, 0, 1, b'a', 0]), flags(SUBSCRIBE, 0)),
            (frame(0x8A, &[0, 1, 0, 1, b'a', 0]), flags(SUBSCRIBE, 0xA)),
            (frame(0xA0, &[0, 1, 0, 1, b'a']), flags(UNSUBSCRIBE, 0)),
            (vec![0xC1, 0], flags(PINGREQ, 1)),
            (vec![0xE2, 0], flags(DISCONNECT, 2)),
            (vec![0x18, 0], flags(CONNECT, 8)),
            // [MQTT-3.3.1-4], [MQTT-3.3.1-2]
            (vec![0x36, 3, 0, 1, b't'], PublishQoS3),
            (vec![0x3F, 3, 0, 1, b't'], PublishQoS3),
            (vec![0x38, 3, 0, 1, b't'], DupAtQoS0),
            (vec![0x39, 3, 0, 1, b't'], DupAtQoS0),
            // Fixed sizes.
            (vec![0x40, 3, 0, 1, 0], length(PUBACK, 3)),
            (vec![0x50, 1, 1], length(PUBREC, 1)),
            (vec![0x62, 0], length(PUBREL, 0)),
            (vec![0x70, 4, 0, 1, 0, 1], length(PUBCOMP, 4)),
            (vec![0xC0, 1, 0], length(PINGREQ, 1)),
            (vec![0xE0, 1, 0], length(DISCONNECT, 1)),
            // Fields running past the end.
            (vec![0x30, 0], Truncated),
            (vec![0x30, 1, 0], Truncated),
            (vec![0x30, 3, 0, 2, b't'], Truncated),
            (vec![0x32, 3, 0, 1, b't'], Truncated),
            (vec![0x32, 4, 0, 1, b't', 0], Truncated),
            (frame(0x82, &[0, 1, 0, 1, b'a']), Truncated),
            (frame(0x82, &[0, 1, 0, 9, b'a']), Truncated),
            (frame(0x82, &[0]), Truncated),
            (frame(0xA2, &[0, 1, 0, 1, b'a', 0]), Truncated),
            // [MQTT-1.5.3-1], [MQTT-1.5.3-2] in topics and filters.
            (frame(0x30, &[0, 2, 0xC3, 0x28]), InvalidUtf8),
            (frame(0x82, &[0, 1, 0, 3, 0xED, 0xBF, 0xBF, 0]), InvalidUtf8),
            (frame(0xA2, &[0, 1, 0, 1, 0x80]), InvalidUtf8),
            (frame(0x30, &[0, 3, b'a', 0, b'b']), NullCharacter),
            (frame(0x82, &[0, 1, 0, 1, 0, 0]), NullCharacter),
            (frame(0xA2, &[0, 1, 0, 2, b'a', 0]), NullCharacter),
            // Section 4.7.
            (frame(0x30, &[0, 0]), Topic(T::Empty)),
            (
                frame(0x30, &[0, 3, b'a', b'/', b'+']),
                Topic(T::WildcardInName),
            ),
            (
                frame(0x32, &[0, 3, b'a', b'/', b'#', 0, 1]),
                Topic(T::WildcardInName),
            ),
            (frame(0x30, &deep_publish), Topic(T::TooManyLevels)),
            (frame(0x82, &[0, 1, 0, 0, 0]), Topic(T::Empty)),
            (
                frame(0x82, &[0, 1, 0, 5, b'a', b'/', b'#', b'/', b'b', 0]),
                Topic(T::MisplacedWildcard),
            ),
            (
                frame(0x82, &[0, 1, 0, 2, b'a', b'#', 0]),
                Topic(T::MisplacedWildcard),
            ),
            (
                frame(0x82, &[0, 1, 0, 4, b'a', b'+', b'/', b'b', 0]),
                Topic(T::MisplacedWildcard),
            ),
            (frame(0xA2, &[0, 1, 0, 0]), Topic(T::Empty)),
            (
                frame(0xA2, &[0, 1, 0, 2, b'a', b'+']),
                Topic(T::MisplacedWildcard),
            ),
            // [MQTT-2.3.1-1]
            (vec![0x32, 5, 0, 1, b't', 0, 0], ZeroPacketId),
            (vec![0x34, 5, 0, 1, b't', 0, 0], ZeroPacketId),
            (vec![0x40, 2, 0, 0], ZeroPacketId),
            (vec![0x50, 2, 0, 0], ZeroPacketId),
            (vec![0x62, 2, 0, 0], ZeroPacketId),
            (vec![0x70, 2, 0, 0], ZeroPacketId),
            (frame(0x82, &[0, 0, 0, 1, b'a', 0]), ZeroPacketId),
            (frame(0xA2, &[0, 0, 0, 1, b'a']), ZeroPacketId),
            // [MQTT-3.8.3-3], [MQTT-3.10.3-2]
            (
                vec![0x82, 2, 0, 1],
                NoFilters {
                    packet_type: SUBSCRIBE,
                },
            ),
            (
                vec![0xA2, 2, 0, 1],
                NoFilters {
                    packet_type: UNSUBSCRIBE,
                },
            ),
            // [MQTT-3-8.3-4]
            (frame(0x82, &[0, 1, 0, 1, b'a', 3]), BadRequestedQoS(3)),
            (
                frame(0x82, &[0, 1, 0, 1, b'a', 0x04]),
                BadRequestedQoS(0x04),
            ),
            (
                frame(0x82, &[0, 1, 0, 1, b'a', 0x80]),
                BadRequestedQoS(0x80),
            ),
            (
                frame(0x82, &[0, 1, 0, 1, b'a', 1, 0, 1, b'b', 0xFD]),
                BadRequestedQoS(0xFD),
            ),
        ];
        check_errors(|| connected(MAX), &cases);
    }

    #[test]
    fn server_packet_errors() {
        use DecodeError::*;
        let flags = |packet_type, flags| BadFlags { packet_type, flags };
        let length = |packet_type, size| BadLength { packet_type, size };
        let cases = [
            (vec![0x00, 0], ReservedPacketType(0)),
            (vec![0xF0, 0], ReservedPacketType(15)),
            (
                CONNECT_MIN.to_vec(),
                WrongDirection {
                    packet_type: CONNECT,
                },
            ),
            (
                frame(0x82, &[0, 1, 0, 1, b'a', 0]),
                WrongDirection {
                    packet_type: SUBSCRIBE,
                },
            ),
            (
                frame(0xA2, &[0, 1, 0, 1, b'a']),
                WrongDirection {
                    packet_type: UNSUBSCRIBE,
                },
            ),
            (
                vec![0xC0, 0],
                WrongDirection {
                    packet_type: PINGREQ,
                },
            ),
            (
                vec![0xE0, 0],
                WrongDirection {
                    packet_type: DISCONNECT,
                },
            ),
            (vec![0x21, 2, 0, 0], flags(CONNACK, 1)),
            (vec![0x92, 3, 0, 1, 0], flags(SUBACK, 2)),
            (vec![0xB2, 2, 0, 1], flags(UNSUBACK, 2)),
            (vec![0xD4, 0], flags(PINGRESP, 4)),
            (vec![0x36, 3, 0, 1, b't'], PublishQoS3),
            (vec![0x20, 3, 0, 0, 0], length(CONNACK, 3)),
            (vec![0xB0, 0], length(UNSUBACK, 0)),
            (vec![0xD0, 1, 0], length(PINGRESP, 1)),
            (vec![0x20, 2, 0x02, 0], BadConnackFlags(0x02)),
            (vec![0x20, 2, 0x81, 0], BadConnackFlags(0x81)),
            (vec![0x20, 2, 0, 6], BadConnackCode(6)),
            (vec![0x20, 2, 0, 0xFF], BadConnackCode(0xFF)),
            (vec![0x90, 3, 0, 1, 3], BadSubackCode(3)),
            (vec![0x90, 4, 0, 1, 0, 0x81], BadSubackCode(0x81)),
            (vec![0x90, 2, 0, 1], NoReturnCodes),
            (vec![0x90, 1, 0], Truncated),
            (vec![0x90, 3, 0, 0, 0], ZeroPacketId),
            (vec![0xB0, 2, 0, 0], ZeroPacketId),
            (vec![0x40, 2, 0, 0], ZeroPacketId),
        ];
        check_errors(|| Decoder::client(MAX), &cases);
    }

    #[test]
    fn only_an_unsupported_level_earns_a_connack() {
        assert_eq!(
            DecodeError::UnsupportedProtocolLevel(5).connack_code(),
            Some(ConnectReturnCode::UnacceptableProtocolVersion)
        );
        for error in every_error() {
            if !matches!(error, DecodeError::UnsupportedProtocolLevel(_)) {
                assert_eq!(error.connack_code(), None, "{error:?}");
            }
        }
    }

    fn every_error() -> Vec<DecodeError> {
        use DecodeError::*;
        vec![
            MalformedRemainingLength,
            TooLarge { size: 2, limit: 1 },
            FirstPacketNotConnect { packet_type: 3 },
            ReservedPacketType(0),
            WrongDirection { packet_type: 2 },
            BadFlags {
                packet_type: 6,
                flags: 0,
            },
            PublishQoS3,
            DupAtQoS0,
            BadLength {
                packet_type: 4,
                size: 3,
            },
            BadProtocolName,
            UnsupportedProtocolLevel(5),
            ConnectReservedFlag,
            WillFlagsWithoutWill,
            WillQoS3,
            PasswordWithoutUsername,
            Truncated,
            TrailingBytes,
            InvalidUtf8,
            NullCharacter,
            Topic(TopicError::Empty),
            ZeroPacketId,
            NoFilters { packet_type: 8 },
            BadRequestedQoS(3),
            BadConnackFlags(2),
            BadConnackCode(6),
            BadSubackCode(3),
            NoReturnCodes,
        ]
    }

    #[test]
    fn every_error_has_its_own_message() {
        let messages: std::collections::HashSet<String> =
            every_error().iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), every_error().len());
        assert!(messages.iter().all(|m| !m.is_empty()));
        assert_eq!(
            DecodeError::FirstPacketNotConnect { packet_type: 3 }.to_string(),
            "first packet is PUBLISH, not CONNECT"
        );
    }

    // ---- fuzzing ----

    /// xorshift64: a deterministic, dependency-free source of noise.
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        pub(crate) fn byte(&mut self) -> u8 {
            self.next() as u8
        }
    }

    /// Random bytes, or a valid packet with a few random mutations.
    pub(crate) fn fuzz_input(rng: &mut XorShift, seeds: &[Vec<u8>]) -> Vec<u8> {
        if rng.below(4) == 0 {
            let len = rng.below(48);
            return (0..len).map(|_| rng.byte()).collect();
        }
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(input.len() + 1);
            match rng.below(6) {
                0 if at < input.len() => input[at] ^= 1 << rng.below(8),
                1 if at < input.len() => input[at] = rng.byte(),
                2 => input.truncate(at),
                3 => input.insert(at, rng.byte()),
                4 => input.extend_from_slice(&seeds[rng.below(seeds.len())]),
                _ if at < input.len() => {
                    input.remove(at);
                }
                _ => {}
            }
        }
        input
    }

    /// Feeds `input` to `decoder` in random pieces; returns the packets
    /// decoded before the input ran out or an error stopped it.
    pub(crate) fn feed(rng: &mut XorShift, decoder: &mut Decoder, input: &[u8]) -> Vec<Packet> {
        let mut buf = BytesMut::new();
        let mut packets = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len()));
            rest = tail;
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(packet)) => packets.push(packet),
                    Ok(None) => break,
                    Err(_) => return packets,
                }
            }
            assert!(
                decoder.needed(buf.len()) <= 256,
                "needed is bounded by the limit"
            );
        }
        packets
    }

    #[test]
    fn fuzz_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let seeds: Vec<Vec<u8>> = all_packets().into_iter().map(|(b, _, _)| b).collect();
        let mut decoded = 0;
        for _ in 0..200_000 {
            let input = fuzz_input(&mut rng, &seeds);
            let mut decoder = match rng.below(3) {
                0 => Decoder::new(256),
                1 => connected(256),
                _ => Decoder::client(256),
            };
            decoded += feed(&mut rng, &mut decoder, &input).len();
        }
        // The mutations leave many packets valid: the loop reaches past the
        // first checks.
        assert!(decoded > 20_000, "only {decoded} packets decoded");
    }
}
