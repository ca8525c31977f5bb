//! The decoder's tests: the packets every other test builds on, exact
//! decoding and incremental decoding here; the rest by concern below.

mod errors;
mod framing;
mod fuzz;
mod levels;
mod topic_cache;

use bytes::{Bytes, BytesMut};

pub(crate) use self::framing::LENGTHS;
pub(crate) use self::fuzz::{feed, fuzz_input, XorShift};
use super::*;
use crate::protocol::packet::{
    Connack, Connect, ConnectReturnCode, PacketId, Protocol, Publish, QoS, Suback, SubackCode,
    Subscribe, Unsubscribe, Will,
};
use crate::protocol::topic::{TopicError, TopicFilter};
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
                b'l', b'-', b'1', 0, 7, b'b', b'y', b'e', b'/', b'n', b'o', b'w', 0, 2, 0x00, 0xFF,
                0, 3, b'a', b'n', b'n', 0, 3, 0xDE, 0xAD, 0x00,
            ],
            Packet::Connect(Box::new(full)),
        ),
        (
            vec![
                0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x00, 0, 0, 0, 2, b'i', b'd',
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
