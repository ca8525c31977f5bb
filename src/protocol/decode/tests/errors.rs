//! Every decode error, from the bytes that cause it.

use super::*;

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
