//! What can go wrong between bytes and packets: [`DecodeError`], each
//! variant documented with what the broker does about it.
//!
//! Errors are the same whatever protocol level a connection speaks, so that
//! a decoder for another level reports through the same type and the broker
//! handles it in one place.

use std::fmt;

use super::packet::packet_type::{
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};
use super::packet::ConnectReturnCode;
use super::topic::TopicError;

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
