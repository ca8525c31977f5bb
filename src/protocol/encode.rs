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
//! **Architecture Invariant:** the encoder writes what the packet says and
//! makes no protocol decisions; which packets to send is the broker's job.
//! Explained in docs/02-fixed-header.md.

use bytes::{BufMut, BytesMut};

use super::packet::packet_type::{
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};
use super::packet::{Connect, Packet, Publish};

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
        Packet::Publish(publish) => (PUBLISH, publish_flags(publish)),
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
fn publish_flags(publish: &Publish) -> u8 {
    u8::from(publish.dup) << 3 | (publish.qos as u8) << 1 | u8::from(publish.retain)
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
            sink.field(publish.topic.as_str().as_bytes())?;
            if let Some(packet_id) = publish.packet_id {
                sink.u16(packet_id.get());
            }
            // The payload is the rest of the packet: no length of its own.
            sink.put(&publish.payload);
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
        Connack, ConnectReturnCode, Protocol, QoS, Suback, SubackCode, Subscribe, Unsubscribe, Will,
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

    #[test]
    fn a_connect_encodes_for_a_fresh_decoder() {
        let bytes = encoded(&decode_as(true, CONNECT_MIN));
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(Decoder::new(MAX).decode(&mut buf).unwrap().is_some());
    }
}
