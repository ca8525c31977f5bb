//! The packet bodies of MQTT 3.1 and 3.1.1 (protocol levels 3 and 4),
//! which lay out every packet alike.
//!
//! Each function reads one body, already whole in memory, through a
//! [`Cursor`]. The fixed header was checked before the body was waited for
//! (see the parent module), so the packet type is one of the fourteen and
//! its flags are valid.
//!
//! **Architecture Invariant:** nothing here knows about framing, the size
//! limit or the CONNECT gate: a body parser for another protocol level sits
//! beside this file and shares them.

use super::cursor::Cursor;
use crate::protocol::error::DecodeError;
use crate::protocol::packet::packet_type::{
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};
use crate::protocol::packet::{
    Connack, Connect, ConnectReturnCode, Packet, Protocol, Publish, QoS, Suback, SubackCode,
    Subscribe, Unsubscribe, Will,
};
use crate::protocol::topic::TopicName;

/// Parses one body at `protocol` (3.1 or 3.1.1), read from `cursor` up to
/// its last field; the caller checks that nothing trails it. Of a CONNECT,
/// the protocol name and level have been read already: they chose this
/// parser. `last_topic` is the decoder's cache of the last PUBLISH topic.
#[inline]
pub(super) fn parse(
    first_byte: u8,
    protocol: Protocol,
    cursor: &mut Cursor,
    last_topic: &mut Option<TopicName>,
) -> Result<Packet, DecodeError> {
    let packet = match first_byte >> 4 {
        CONNECT => Packet::Connect(Box::new(connect(protocol, cursor)?)),
        CONNACK => Packet::Connack(connack(cursor)?),
        PUBLISH => Packet::Publish(publish(first_byte, cursor, last_topic)?),
        PUBACK => Packet::Puback(cursor.packet_id()?),
        PUBREC => Packet::Pubrec(cursor.packet_id()?),
        PUBREL => Packet::Pubrel(cursor.packet_id()?),
        PUBCOMP => Packet::Pubcomp(cursor.packet_id()?),
        SUBSCRIBE => Packet::Subscribe(subscribe(cursor)?),
        SUBACK => Packet::Suback(suback(cursor)?),
        UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(cursor)?),
        UNSUBACK => Packet::Unsuback(cursor.packet_id()?),
        PINGREQ => Packet::Pingreq,
        PINGRESP => Packet::Pingresp,
        DISCONNECT => Packet::Disconnect,
        // Refused on the first byte already; kept as an error, not a panic.
        other => return Err(DecodeError::ReservedPacketType(other)),
    };
    Ok(packet)
}

/// CONNECT (section 3.1), from its flags on: the protocol name and level
/// were read to choose this parser. Fields are read in the order the
/// standard puts them, and each flag is checked before the field it
/// announces.
fn connect(protocol: Protocol, cursor: &mut Cursor) -> Result<Connect, DecodeError> {
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
#[inline]
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
