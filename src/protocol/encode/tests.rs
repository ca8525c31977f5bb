//! The encoder's tests: exact bytes, the limits of what fits, round trips
//! through the decoder, and the shared PUBLISH against [`encode`].

use bytes::Bytes;

use super::*;
use crate::protocol::decode::tests::{
    client_packets, connected, feed, filter, fuzz_input, id, name, server_packets, XorShift,
    CONNECT_MIN, LENGTHS,
};
use crate::protocol::packet::{
    Connack, Connect, ConnectReturnCode, Protocol, Publish, QoS, Suback, SubackCode, Subscribe,
    Unsubscribe, Will,
};
use crate::protocol::{Decoder, TopicName};

const MAX: usize = 1 << 20;

/// The level the shared PUBLISH tests encode for.
const V311: Protocol = Protocol::V311;

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
                assert!(shared.encode(V311, &name(topic), &payload, QoS::AtMostOnce, retain));
                let expected = encoded_publish(topic, &payload, QoS::AtMostOnce, retain, None);
                assert_eq!(shared.bytes(), expected);
                // QoS 0 has no identifier to patch.
                shared.set_id(id(513));
                assert_eq!(shared.bytes(), expected);
                for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
                    assert!(shared.encode(V311, &name(topic), &payload, qos, retain));
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

/// 3.1 and 3.1.1 receivers get the same bytes, so a cache keyed by
/// (protocol, QoS) may hold one encoding for both.
#[test]
fn a_shared_publish_is_the_same_for_3_1_and_3_1_1() {
    let mut v31 = SharedPublish::default();
    let mut v311 = SharedPublish::default();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        assert!(v31.encode(Protocol::V31, &name("a/b"), b"p", qos, true));
        assert!(v311.encode(Protocol::V311, &name("a/b"), b"p", qos, true));
        v31.set_id(id(300));
        v311.set_id(id(300));
        assert_eq!(v31.bytes(), v311.bytes(), "{qos:?}");
    }
}

#[test]
fn a_shared_publish_takes_one_and_two_byte_remaining_lengths() {
    let mut shared = SharedPublish::default();
    // "t": 3 bytes of topic field and 2 of id; 122 + 5 = 127, 123 + 5 = 128.
    assert!(shared.encode(V311, &name("t"), &[9; 122], QoS::AtLeastOnce, false));
    shared.set_id(id(0x0102));
    assert_eq!(&shared.bytes()[..8], [0x32, 127, 0, 1, b't', 1, 2, 9]);
    assert!(shared.encode(V311, &name("t"), &[9; 123], QoS::ExactlyOnce, false));
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
    assert!(shared.encode(
        V311,
        &name("a/long/topic"),
        &[1; 300],
        QoS::ExactlyOnce,
        true
    ));
    shared.set_id(id(77));
    assert!(shared.encode(V311, &name("b"), b"x", QoS::AtLeastOnce, false));
    assert_eq!(
        shared.bytes(),
        encoded_publish("b", b"x", QoS::AtLeastOnce, false, Some(1))
    );
    assert!(shared.encode(V311, &name("c"), b"y", QoS::AtMostOnce, false));
    shared.set_id(id(77));
    assert_eq!(shared.bytes(), [0x30, 4, 0, 1, b'c', b'y']);
}

#[test]
fn a_shared_publish_that_cannot_be_encoded_holds_nothing() {
    let mut shared = SharedPublish::default();
    assert!(shared.encode(V311, &name("t"), b"p", QoS::AtLeastOnce, false));
    let topic = TopicName::new("x".repeat(65_536)).unwrap();
    assert!(!shared.encode(V311, &topic, b"p", QoS::AtLeastOnce, false));
    assert!(shared.bytes().is_empty());
    shared.set_id(id(5));
    assert!(shared.bytes().is_empty());
    // A body one byte over the limit (allocated zeroed, never touched).
    let payload = vec![0; MAX_REMAINING_LENGTH - 2];
    assert!(!shared.encode(V311, &name("t"), &payload, QoS::AtMostOnce, false));
    assert!(shared.bytes().is_empty());
}

#[test]
fn clearing_frees_a_buffer_a_large_message_grew() {
    let mut shared = SharedPublish::default();
    assert!(shared.encode(V311, &name("t"), &[0; 100], QoS::AtMostOnce, false));
    shared.clear();
    assert!(shared.bytes().is_empty());
    let small = shared.capacity();
    assert!((100..=SharedPublish::KEPT_CAPACITY).contains(&small));
    assert!(shared.encode(V311, &name("t"), &vec![0; 100_000], QoS::AtLeastOnce, false));
    assert!(shared.capacity() > SharedPublish::KEPT_CAPACITY);
    shared.clear();
    assert!(shared.bytes().is_empty());
    assert!(shared.capacity() <= SharedPublish::KEPT_CAPACITY);
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
