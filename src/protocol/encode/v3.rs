//! The packet bodies of MQTT 3.1 and 3.1.1 (protocol levels 3 and 4),
//! written against a [`Sink`], so that one walk measures a body and the
//! next writes it.
//!
//! Every encoder here is `#[inline]`: they are called from other modules, which
//! the compiler may put in other codegen units, and without the hint it
//! stops inlining them into the PUBLISH path (measured: 120 instructions a
//! message more on a QoS 0 fan-in, under callgrind).

use super::{FieldTooLong, Sink};
use crate::protocol::packet::packet_type::{
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE,
};
use crate::protocol::packet::{Connect, Packet, PacketId, QoS};
use crate::protocol::topic::TopicName;

/// The packet type and its flags (section 2.2).
#[inline]
pub(super) fn first_byte(packet: &Packet) -> u8 {
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
#[inline]
pub(super) fn publish_flags(dup: bool, qos: QoS, retain: bool) -> u8 {
    u8::from(dup) << 3 | (qos as u8) << 1 | u8::from(retain)
}

/// Lays out the body of `packet`: everything after the fixed header.
#[inline]
pub(super) fn body(packet: &Packet, sink: &mut impl Sink) -> Result<(), FieldTooLong> {
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
#[inline]
pub(super) fn publish_body(
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
