//! The encoder: [`Packet`]s in, bytes out, for all fourteen packet types in
//! both directions.
//!
//! A packet's body is laid out by one function, [`body`], written against a
//! small [`Sink`]: run once with a counter it measures the body, run again
//! with the output buffer it writes it. So [`encoded_len`] and [`encode`]
//! cannot disagree, and [`encode`] reserves exactly what it then writes, in
//! one go, before writing anything.
//!
//! # What cannot be encoded
//!
//! Strings and binary fields carry a two-byte length, so none may be longer
//! than 65535 bytes, and the remaining length has four seven-bit digits, so
//! no body may be longer than 268,435,455 bytes (section 2.2.3). A packet the
//! decoder built always fits, since it came off the wire in that format; a
//! packet the broker builds from its own short strings fits too. But
//! [`TopicName::new`](super::TopicName::new) does not bound the length, so
//! the encoder checks rather than trusts: a packet that does not fit is not
//! encoded at all. [`encoded_len`] returns 0 for it and [`encode`] appends
//! nothing and logs an error. Truncating a field instead would send a
//! different topic or a corrupt payload; a length field that wrapped around
//! would desynchronise the whole stream.
//!
//! # One PUBLISH, many subscribers
//!
//! A message routed to a hundred subscribers is, on the wire, a hundred
//! copies of the same bytes but for the packet identifier, which each
//! receiving session picks for itself. [`SharedPublish`] encodes such a
//! PUBLISH once; the identifier sits at a fixed offset (right after the
//! topic), so each copy only patches those two bytes.
//!
//! **Architecture Invariant:** the encoder writes what the packet says and
//! makes no protocol decisions; which packets to send is the broker's job.
//! Explained in docs/02-fixed-header.md.

use bytes::{BufMut, BytesMut};

use super::packet::packet_type::{
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};
use super::packet::{Connect, Packet, PacketId, QoS};
use super::topic::TopicName;

/// The largest remaining length four bytes can encode (section 2.2.3).
const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Appends the encoding of `packet` to `out`.
///
/// PUBLISH is encoded as its fields say: the QoS bits come from `qos`, and
/// the packet identifier is written exactly when `packet_id` is `Some`.
/// `Publish` promises that the two agree; a value that breaks the promise is
/// still encoded consistently with [`encoded_len`], but its receiver will
/// misread it. The decoder never builds such a value. In the same way, a
/// CONNECT is written with exactly the optional fields it holds, even a
/// password without a username, which the decoder refuses ([MQTT-3.1.2-22]).
///
/// A packet with a field over 65535 bytes or a body over 268,435,455 bytes
/// is not encoded: nothing is appended and an error is logged (see the
/// module documentation).
pub fn encode(packet: &Packet, out: &mut BytesMut) {
    let Some(size) = body_size(packet) else {
        log::error!(
            "{} not encoded: a field is over 65535 bytes or the body over {MAX_REMAINING_LENGTH}",
            packet.name()
        );
        return;
    };
    out.reserve(total_len(size));
    out.put_u8(first_byte(packet));
    put_remaining_length(size, out);
    // Cannot fail: body_size walked the same fields with the same checks.
    let _ = body(packet, out);
}

/// The number of bytes [`encode`] appends: 0 for a packet that cannot be
/// encoded.
pub fn encoded_len(packet: &Packet) -> usize {
    body_size(packet).map_or(0, total_len)
}

/// A PUBLISH encoded once, to be sent to many subscribers.
///
/// Every copy of a routed message that goes out at the same QoS is the same
/// packet but for its identifier, which each receiving session picks. So the
/// packet is encoded once, and before each QoS 1 or 2 send
/// [`SharedPublish::set_id`] writes the receiver's identifier into the two
/// bytes that hold it. They come right after the topic, so where they are
/// is known as soon as the topic is written; the remaining length does not
/// change with the identifier's value.
///
/// DUP is always 0: only first deliveries are shared. A resend (DUP 1)
/// belongs to one session and is encoded from its own [`Packet`].
///
/// The buffer is kept from one message to the next, so encoding the next
/// one allocates nothing unless it is larger.
#[derive(Debug, Default)]
pub struct SharedPublish {
    bytes: BytesMut,
    /// Where the packet identifier's two bytes start: `None` at QoS 0,
    /// which has none, and when nothing is encoded.
    id_at: Option<usize>,
}

impl SharedPublish {
    /// Above this capacity, [`SharedPublish::clear`] frees the buffer instead
    /// of keeping it for the next message: one large message must not pin
    /// its size for good.
    pub const KEPT_CAPACITY: usize = 64 * 1024;

    /// Encodes a PUBLISH of `payload` on `topic` at `qos`, DUP 0 and RETAIN
    /// as `retain` says, in place of what was held. At QoS 1 and 2 it
    /// carries packet identifier 1 until [`SharedPublish::set_id`] writes
    /// another: whatever is sent is always a valid packet.
    ///
    /// Returns `false`, holds nothing and logs an error when the packet
    /// cannot be encoded (a topic over 65535 bytes, a body over
    /// 268,435,455: see the module documentation), as [`encode`] does.
    pub fn encode(&mut self, topic: &TopicName, payload: &[u8], qos: QoS, retain: bool) -> bool {
        self.bytes.clear();
        self.id_at = None;
        let placeholder = (qos != QoS::AtMostOnce).then_some(PacketId::FIRST);
        let mut counter = Counter(0);
        let fits = publish_body(topic, placeholder, payload, &mut counter).is_ok()
            && counter.0 <= MAX_REMAINING_LENGTH;
        if !fits {
            log::error!(
                "PUBLISH on a topic of {} bytes not encoded: a field is over 65535 bytes or \
                 the body over {MAX_REMAINING_LENGTH}",
                topic.as_str().len()
            );
            return false;
        }
        let size = counter.0;
        self.bytes.reserve(total_len(size));
        self.bytes
            .put_u8(PUBLISH << 4 | publish_flags(false, qos, retain));
        put_remaining_length(size, &mut self.bytes);
        // The topic's two length bytes, then the topic: the identifier is next.
        let id_at = self.bytes.len() + 2 + topic.as_str().len();
        // Cannot fail: the counter walked the same fields with the same checks.
        let _ = publish_body(topic, placeholder, payload, &mut self.bytes);
        self.id_at = placeholder.map(|_| id_at);
        true
    }

    /// The encoded packet; empty when nothing is encoded.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes `id` as the packet identifier. At QoS 0, which carries none,
    /// it does nothing.
    pub fn set_id(&mut self, id: PacketId) {
        let Some(at) = self.id_at else {
            return;
        };
        if let Some(slot) = self.bytes.get_mut(at..at.saturating_add(2)) {
            slot.copy_from_slice(&id.get().to_be_bytes());
        }
    }

    /// Forgets the packet. The buffer is kept for the next one, unless it
    /// grew over [`SharedPublish::KEPT_CAPACITY`].
    pub fn clear(&mut self) {
        self.id_at = None;
        if self.bytes.capacity() > Self::KEPT_CAPACITY {
            self.bytes = BytesMut::new();
        } else {
            self.bytes.clear();
        }
    }
}

/// A packet's length from the size of its body: the first byte, the
/// remaining length, the body.
fn total_len(size: usize) -> usize {
    1 + remaining_length_len(size) + size
}

/// How many bytes the remaining length `size` takes (section 2.2.3).
fn remaining_length_len(size: usize) -> usize {
    match size {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Seven bits at a time, least significant first, the top bit saying
/// whether another byte follows (section 2.2.3). `size` has been checked to
/// be at most [`MAX_REMAINING_LENGTH`], so this writes at most four bytes.
fn put_remaining_length(mut size: usize, out: &mut BytesMut) {
    loop {
        let digit = (size % 128) as u8;
        size /= 128;
        if size == 0 {
            out.put_u8(digit);
            return;
        }
        out.put_u8(digit | 0x80);
    }
}

/// The packet type and its flags (section 2.2).
fn first_byte(packet: &Packet) -> u8 {
    let (packet_type, flags) = match packet {
        Packet::Connect(_) => (CONNECT, 0),
        Packet::Connack(_) => (CONNACK, 0),
        Packet::Publish(p) => (PUBLISH, publish_flags(p.dup, p.qos, p.retain)),
        Packet::Puback(_) => (PUBACK, 0),
        Packet::Pubrec(_) => (PUBREC, 0),
        // [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]
        Packet::Pubrel(_) => (PUBREL, 0b0010),
        Packet::Pubcomp(_) => (PUBCOMP, 0),
        Packet::Subscribe(_) => (SUBSCRIBE, 0b0010),
        Packet::Suback(_) => (SUBACK, 0),
        Packet::Unsubscribe(_) => (UNSUBSCRIBE, 0b0010),
        Packet::Unsuback(_) => (UNSUBACK, 0),
        Packet::Pingreq => (PINGREQ, 0),
        Packet::Pingresp => (PINGRESP, 0),
        Packet::Disconnect => (DISCONNECT, 0),
    };
    packet_type << 4 | flags
}

/// DUP, the two QoS bits, RETAIN (section 3.3.1).
fn publish_flags(dup: bool, qos: QoS, retain: bool) -> u8 {
    u8::from(dup) << 3 | (qos as u8) << 1 | u8::from(retain)
}

/// The size of the body, or `None` when the packet cannot be encoded.
fn body_size(packet: &Packet) -> Option<usize> {
    let mut counter = Counter(0);
    body(packet, &mut counter).ok()?;
    (counter.0 <= MAX_REMAINING_LENGTH).then_some(counter.0)
}

/// A string or binary field longer than its two-byte length can say.
struct FieldTooLong;

/// Where [`body`] puts bytes: the output buffer, or a [`Counter`].
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn u8(&mut self, value: u8) {
        self.put(&[value]);
    }

    /// Big-endian, as every integer in MQTT (section 1.5.2).
    fn u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    /// Two bytes of length, then the bytes: strings (section 1.5.3) and
    /// binary fields (section 3.1.3) alike.
    fn field(&mut self, bytes: &[u8]) -> Result<(), FieldTooLong> {
        let len = u16::try_from(bytes.len()).map_err(|_| FieldTooLong)?;
        self.u16(len);
        self.put(bytes);
        Ok(())
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// Measures instead of writing.
struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        // Saturating: a sum this large is over MAX_REMAINING_LENGTH anyway.
        self.0 = self.0.saturating_add(bytes.len());
    }
}

/// Lays out the body of `packet`: everything after the fixed header.
fn body(packet: &Packet, sink: &mut impl Sink) -> Result<(), FieldTooLong> {
    match packet {
        Packet::Connect(connect) => connect_body(connect, sink)?,
        Packet::Connack(connack) => {
            sink.u8(u8::from(connack.session_present));
            sink.u8(connack.code as u8);
        }
        Packet::Publish(publish) => {
            publish_body(&publish.topic, publish.packet_id, &publish.payload, sink)?;
        }
        Packet::Puback(packet_id)
        | Packet::Pubrec(packet_id)
        | Packet::Pubrel(packet_id)
        | Packet::Pubcomp(packet_id)
        | Packet::Unsuback(packet_id) => sink.u16(packet_id.get()),
        Packet::Subscribe(subscribe) => {
            sink.u16(subscribe.packet_id.get());
            for (filter, qos) in &subscribe.filters {
                sink.field(filter.as_str().as_bytes())?;
                sink.u8(*qos as u8);
            }
        }
        Packet::Suback(suback) => {
            sink.u16(suback.packet_id.get());
            for code in &suback.codes {
                sink.u8(code.to_u8());
            }
        }
        Packet::Unsubscribe(unsubscribe) => {
            sink.u16(unsubscribe.packet_id.get());
            for filter in &unsubscribe.filters {
                sink.field(filter.as_str().as_bytes())?;
            }
        }
        Packet::Pingreq | Packet::Pingresp | Packet::Disconnect => {}
    }
    Ok(())
}

/// PUBLISH (section 3.3): the topic, the packet identifier when there is
/// one, the payload. [`SharedPublish`] relies on this order: the identifier
/// starts right after the topic.
fn publish_body(
    topic: &TopicName,
    packet_id: Option<PacketId>,
    payload: &[u8],
    sink: &mut impl Sink,
) -> Result<(), FieldTooLong> {
    sink.field(topic.as_str().as_bytes())?;
    if let Some(packet_id) = packet_id {
        sink.u16(packet_id.get());
    }
    // The payload is the rest of the packet: no length of its own.
    sink.put(payload);
    Ok(())
}

/// CONNECT (section 3.1): the flags say which optional fields follow.
fn connect_body(connect: &Connect, sink: &mut impl Sink) -> Result<(), FieldTooLong> {
    sink.field(connect.protocol.name().as_bytes())?;
    sink.u8(connect.protocol.level());
    let mut flags = 0;
    if connect.username.is_some() {
        flags |= 0x80;
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    if let Some(will) = &connect.will {
        flags |= 0x04 | (will.qos as u8) << 3;
        if will.retain {
            flags |= 0x20;
        }
    }
    if connect.clean_session {
        flags |= 0x02;
    }
    sink.u8(flags);
    sink.u16(connect.keep_alive);
    sink.field(connect.client_id.as_bytes())?;
    if let Some(will) = &connect.will {
        sink.field(will.topic.as_str().as_bytes())?;
        sink.field(&will.payload)?;
    }
    if let Some(username) = &connect.username {
        sink.field(username.as_bytes())?;
    }
    if let Some(password) = &connect.password {
        sink.field(password)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::decode::tests::{
        client_packets, connected, feed, filter, fuzz_input, id, name, server_packets, XorShift,
        CONNECT_MIN, LENGTHS,
    };
    use crate::protocol::packet::{
        Connack, ConnectReturnCode, Protocol, Publish, Suback, SubackCode, Subscribe, Unsubscribe,
        Will,
    };
    use crate::protocol::{Decoder, TopicName};

    const MAX: usize = 1 << 20;

    fn encoded(packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, &mut out);
        assert_eq!(out.len(), encoded_len(packet), "{packet:?}");
        out.to_vec()
    }

    /// Decodes `bytes` as one whole packet on the side that receives it.
    fn decode_as(server: bool, bytes: &[u8]) -> Packet {
        let mut decoder = if server {
            // A CONNECT passes the gate of a fresh decoder; anything else
            // needs one that has seen a CONNECT, which also accepts CONNECT.
            connected(MAX)
        } else {
            Decoder::client(MAX)
        };
        let mut buf = BytesMut::from(bytes);
        let packet = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        packet
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

    fn connect() -> Connect {
        Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 60,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
        }
    }

    #[test]
    fn every_packet_type_encodes_to_exact_bytes() {
        let mut seen = std::collections::HashSet::new();
        for (bytes, packet) in client_packets().into_iter().chain(server_packets()) {
            assert_eq!(encoded(&packet), bytes, "{packet:?}");
            seen.insert(packet.name());
        }
        assert_eq!(seen.len(), 14, "all fourteen types: {seen:?}");
    }

    #[test]
    fn more_exact_encodings() {
        let cases: Vec<(Packet, Vec<u8>)> = vec![
            (
                Packet::Connack(Connack {
                    session_present: false,
                    code: ConnectReturnCode::UnacceptableProtocolVersion,
                }),
                vec![0x20, 2, 0, 1],
            ),
            (
                Packet::Publish(Publish {
                    dup: true,
                    retain: true,
                    ..publish(QoS::ExactlyOnce, Some(0xABCD), "a", b"")
                }),
                vec![0x3D, 5, 0, 1, b'a', 0xAB, 0xCD],
            ),
            (
                Packet::Publish(Publish {
                    retain: true,
                    ..publish(QoS::AtMostOnce, None, "a", b"x")
                }),
                vec![0x31, 4, 0, 1, b'a', b'x'],
            ),
            // A username without a password, a will at QoS 2 without retain.
            (
                Packet::Connect(Box::new(Connect {
                    clean_session: false,
                    keep_alive: 0x0102,
                    client_id: "c".to_owned(),
                    will: Some(Will {
                        topic: name("w"),
                        payload: Bytes::new(),
                        qos: QoS::ExactlyOnce,
                        retain: false,
                    }),
                    username: Some("u".to_owned()),
                    ..connect()
                })),
                vec![
                    0x10, 21, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x94, 0x01, 0x02, 0, 1, b'c', 0, 1,
                    b'w', 0, 0, 0, 1, b'u',
                ],
            ),
            (
                Packet::Suback(Suback {
                    packet_id: id(1),
                    codes: vec![SubackCode::Granted(QoS::AtMostOnce)],
                }),
                vec![0x90, 3, 0, 1, 0],
            ),
        ];
        for (packet, bytes) in cases {
            assert_eq!(encoded(&packet), bytes, "{packet:?}");
        }
    }

    #[test]
    fn publish_is_encoded_as_its_fields_say() {
        // QoS 1 without an id: the QoS bits say 1, no id is written.
        let no_id = Packet::Publish(publish(QoS::AtLeastOnce, None, "t", b"p"));
        assert_eq!(encoded(&no_id), [0x32, 4, 0, 1, b't', b'p']);
        // QoS 0 with an id: the QoS bits say 0, the id is written.
        let stray_id = Packet::Publish(publish(QoS::AtMostOnce, Some(5), "t", b"p"));
        assert_eq!(encoded(&stray_id), [0x30, 6, 0, 1, b't', 0, 5, b'p']);
    }

    #[test]
    fn encode_appends() {
        let mut out = BytesMut::from(&b"xy"[..]);
        encode(&Packet::Pingreq, &mut out);
        encode(&Packet::Puback(id(258)), &mut out);
        assert_eq!(&out[..], b"xy\xC0\x00\x40\x02\x01\x02");
    }

    #[test]
    fn remaining_length_boundaries() {
        for &(size, digits) in LENGTHS {
            let mut out = BytesMut::new();
            put_remaining_length(size, &mut out);
            assert_eq!(&out[..], digits, "{size}");
            assert_eq!(remaining_length_len(size), digits.len(), "{size}");
        }
        // Whole packets at each boundary a test can afford to allocate.
        for &(size, digits) in LENGTHS {
            if !(3..=2_097_152).contains(&size) {
                continue;
            }
            let packet = Packet::Publish(publish(QoS::AtMostOnce, None, "t", &vec![7; size - 3]));
            let bytes = encoded(&packet);
            assert_eq!(bytes.len(), 1 + digits.len() + size);
            assert_eq!(&bytes[1..1 + digits.len()], digits);
            let mut decoder = connected(usize::MAX);
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(decoder.decode(&mut buf), Ok(Some(packet)));
        }
    }

    #[test]
    fn the_largest_body_fits_and_one_more_byte_does_not() {
        // vec![0; n] is allocated zeroed and never touched here, so these
        // 256 MB cost address space, not memory.
        let largest = Packet::Publish(Publish {
            payload: Bytes::from(vec![0; MAX_REMAINING_LENGTH - 3]),
            ..publish(QoS::AtMostOnce, None, "t", b"")
        });
        assert_eq!(encoded_len(&largest), 1 + 4 + MAX_REMAINING_LENGTH);
        let too_large = Packet::Publish(Publish {
            payload: Bytes::from(vec![0; MAX_REMAINING_LENGTH - 2]),
            ..publish(QoS::AtMostOnce, None, "t", b"")
        });
        assert_eq!(encoded_len(&too_large), 0);
        let mut out = BytesMut::new();
        encode(&too_large, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_field_over_65535_bytes_is_not_encoded() {
        let long = "x".repeat(65_536);
        let longest = "x".repeat(65_535);
        let topic = TopicName::new(long.as_str()).unwrap();
        let mut bad = vec![
            Packet::Publish(Publish {
                topic: topic.clone(),
                ..publish(QoS::AtMostOnce, None, "t", b"")
            }),
            Packet::Connect(Box::new(Connect {
                client_id: long.clone(),
                ..connect()
            })),
            Packet::Connect(Box::new(Connect {
                username: Some(long.clone()),
                ..connect()
            })),
            Packet::Connect(Box::new(Connect {
                username: Some("u".to_owned()),
                password: Some(Bytes::from(long.clone())),
                ..connect()
            })),
            Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: vec![
                    (filter("a"), QoS::AtMostOnce),
                    (filter(&long), QoS::AtMostOnce),
                ],
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: id(1),
                filters: vec![filter(&long)],
            }),
        ];
        for will in [
            (topic, Bytes::new()),
            (name("w"), Bytes::from(long.clone())),
        ] {
            bad.push(Packet::Connect(Box::new(Connect {
                will: Some(Will {
                    topic: will.0,
                    payload: will.1,
                    qos: QoS::AtMostOnce,
                    retain: false,
                }),
                ..connect()
            })));
        }
        for packet in &bad {
            assert_eq!(encoded_len(packet), 0, "{}", packet.name());
            let mut out = BytesMut::from(&b"kept"[..]);
            encode(packet, &mut out);
            assert_eq!(&out[..], b"kept", "{}", packet.name());
        }

        // 65535 bytes is the longest a field may be, and it round-trips.
        let packet = Packet::Publish(publish(QoS::AtMostOnce, None, &longest, b""));
        let bytes = encoded(&packet);
        assert_eq!(bytes.len(), 1 + 3 + 2 + 65_535);
        assert_eq!(&bytes[4..6], [0xFF, 0xFF]);
        assert_eq!(decode_as(true, &bytes), packet);
    }

    #[test]
    fn round_trip_every_packet_type() {
        let connect_v31 = Connect {
            protocol: Protocol::V31,
            username: Some("\u{feff}user".to_owned()),
            password: Some(Bytes::from_static(b"")),
            will: Some(Will {
                topic: name("$SOL/x"),
                payload: Bytes::from_static(b"\0\xFF"),
                qos: QoS::AtMostOnce,
                retain: true,
            }),
            ..connect()
        };
        let mut client: Vec<Packet> = client_packets().into_iter().map(|(_, p)| p).collect();
        client.push(Packet::Connect(Box::new(connect_v31)));
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for (dup, retain) in [(false, false), (true, false), (false, true), (true, true)] {
                let packet_id = (qos != QoS::AtMostOnce).then_some(65_535);
                if dup && qos == QoS::AtMostOnce {
                    continue; // [MQTT-3.3.1-2]
                }
                client.push(Packet::Publish(Publish {
                    dup,
                    retain,
                    ..publish(qos, packet_id, "a/b/c", &[0; 200])
                }));
            }
        }
        let mut server: Vec<Packet> = server_packets().into_iter().map(|(_, p)| p).collect();
        for code in 0..=5 {
            server.push(Packet::Connack(Connack {
                session_present: code == 0,
                code: ConnectReturnCode::from_u8(code).unwrap(),
            }));
        }
        for packet in &client {
            assert_eq!(&decode_as(true, &encoded(packet)), packet);
        }
        for packet in &server {
            assert_eq!(&decode_as(false, &encoded(packet)), packet);
        }
    }

    #[test]
    fn fuzz_decoded_packets_round_trip() {
        // Whatever the decoder accepts, however mangled the bytes it came
        // from, encodes to bytes that decode to the same packet.
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        let seeds: Vec<Vec<u8>> = client_packets()
            .into_iter()
            .chain(server_packets())
            .map(|(b, _)| b)
            .collect();
        let mut checked = 0;
        for _ in 0..50_000 {
            let input = fuzz_input(&mut rng, &seeds);
            let server = rng.below(2) == 0;
            let mut decoder = if server {
                connected(256)
            } else {
                Decoder::client(256)
            };
            for packet in feed(&mut rng, &mut decoder, &input) {
                assert_eq!(decode_as(server, &encoded(&packet)), packet);
                checked += 1;
            }
        }
        assert!(checked > 10_000, "only {checked} packets checked");
    }

    /// What [`encode`] writes for the PUBLISH a [`SharedPublish`] stands for.
    fn encoded_publish(
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        packet_id: Option<u16>,
    ) -> Vec<u8> {
        encoded(&Packet::Publish(Publish {
            retain,
            ..publish(qos, packet_id, topic, payload)
        }))
    }

    #[test]
    fn a_shared_publish_is_byte_for_byte_what_encode_writes_with_each_id() {
        let long_topic = "level/".repeat(40) + "end";
        let topics = ["a", "sensors/room1/temperature", long_topic.as_str()];
        // Empty, small, large, and the sizes that put the body of each topic
        // on either side of the remaining length's one/two and two/three
        // byte boundaries (127/128, 16383/16384).
        let mut payloads = vec![0, 1, 16, 1000, 20_000];
        for topic in &topics {
            let fixed = 2 + topic.len() + 2; // topic field and packet id
            for body in [127_usize, 128, 16_383, 16_384] {
                payloads.extend(body.checked_sub(fixed));
            }
        }
        let mut shared = SharedPublish::default();
        let mut checked = 0;
        for topic in topics {
            for &size in &payloads {
                let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
                for retain in [false, true] {
                    assert!(shared.encode(&name(topic), &payload, QoS::AtMostOnce, retain));
                    let expected = encoded_publish(topic, &payload, QoS::AtMostOnce, retain, None);
                    assert_eq!(shared.bytes(), expected);
                    // QoS 0 has no identifier to patch.
                    shared.set_id(id(513));
                    assert_eq!(shared.bytes(), expected);
                    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
                        assert!(shared.encode(&name(topic), &payload, qos, retain));
                        let first = encoded_publish(topic, &payload, qos, retain, Some(1));
                        assert_eq!(shared.bytes(), first, "the placeholder is id 1");
                        for n in [1, 256, 65_535, 2] {
                            shared.set_id(id(n));
                            let expected = encoded_publish(topic, &payload, qos, retain, Some(n));
                            assert_eq!(shared.bytes(), expected, "{topic} {size} {qos:?} {n}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * payloads.len() * 2 * 2 * 4);
    }

    #[test]
    fn a_shared_publish_takes_one_and_two_byte_remaining_lengths() {
        let mut shared = SharedPublish::default();
        // "t": 3 bytes of topic field and 2 of id; 122 + 5 = 127, 123 + 5 = 128.
        assert!(shared.encode(&name("t"), &[9; 122], QoS::AtLeastOnce, false));
        shared.set_id(id(0x0102));
        assert_eq!(&shared.bytes()[..8], [0x32, 127, 0, 1, b't', 1, 2, 9]);
        assert!(shared.encode(&name("t"), &[9; 123], QoS::ExactlyOnce, false));
        shared.set_id(id(0xFFFF));
        assert_eq!(
            &shared.bytes()[..9],
            [0x34, 0x80, 0x01, 0, 1, b't', 0xFF, 0xFF, 9]
        );
        assert_eq!(shared.bytes().len(), 3 + 128);
    }

    #[test]
    fn a_shared_publish_reused_for_a_smaller_message_holds_only_that_one() {
        let mut shared = SharedPublish::default();
        assert!(shared.encode(&name("a/long/topic"), &[1; 300], QoS::ExactlyOnce, true));
        shared.set_id(id(77));
        assert!(shared.encode(&name("b"), b"x", QoS::AtLeastOnce, false));
        assert_eq!(
            shared.bytes(),
            encoded_publish("b", b"x", QoS::AtLeastOnce, false, Some(1))
        );
        assert!(shared.encode(&name("c"), b"y", QoS::AtMostOnce, false));
        shared.set_id(id(77));
        assert_eq!(shared.bytes(), [0x30, 4, 0, 1, b'c', b'y']);
    }

    #[test]
    fn a_shared_publish_that_cannot_be_encoded_holds_nothing() {
        let mut shared = SharedPublish::default();
        assert!(shared.encode(&name("t"), b"p", QoS::AtLeastOnce, false));
        let topic = TopicName::new("x".repeat(65_536)).unwrap();
        assert!(!shared.encode(&topic, b"p", QoS::AtLeastOnce, false));
        assert!(shared.bytes().is_empty());
        shared.set_id(id(5));
        assert!(shared.bytes().is_empty());
        // A body one byte over the limit (allocated zeroed, never touched).
        let payload = vec![0; MAX_REMAINING_LENGTH - 2];
        assert!(!shared.encode(&name("t"), &payload, QoS::AtMostOnce, false));
        assert!(shared.bytes().is_empty());
    }

    #[test]
    fn clearing_frees_a_buffer_a_large_message_grew() {
        let mut shared = SharedPublish::default();
        assert!(shared.encode(&name("t"), &[0; 100], QoS::AtMostOnce, false));
        shared.clear();
        assert!(shared.bytes().is_empty());
        let small = shared.bytes.capacity();
        assert!((100..=SharedPublish::KEPT_CAPACITY).contains(&small));
        assert!(shared.encode(&name("t"), &vec![0; 100_000], QoS::AtLeastOnce, false));
        assert!(shared.bytes.capacity() > SharedPublish::KEPT_CAPACITY);
        shared.clear();
        assert!(shared.bytes().is_empty());
        assert!(shared.bytes.capacity() <= SharedPublish::KEPT_CAPACITY);
        // Cleared, it has no identifier to patch.
        shared.set_id(id(3));
        assert!(shared.bytes().is_empty());
    }

    #[test]
    fn a_connect_encodes_for_a_fresh_decoder() {
        let bytes = encoded(&decode_as(true, CONNECT_MIN));
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(Decoder::new(MAX).decode(&mut buf).unwrap().is_some());
    }
}
