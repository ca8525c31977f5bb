//! The bench's own PUBLISH encoding and the payload every message carries.
//!
//! Everything else the bench sends and receives goes through sol's codec
//! (`sol::protocol::{encode, Decoder::client}`). PUBLISH alone is written
//! here, because it is the one packet sent millions of times: for a given
//! publisher, everything before the packet id (first byte, remaining length,
//! topic) never changes, so it is built once and copied, and the payload is
//! written straight into the output buffer with no `Bytes` allocated per
//! message. That keeps the load generator well below the broker's cost per
//! message. The unit tests check the result against sol's decoder.
//!
//! # Payload layout
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | publisher id, big endian |
//! | 4..8 | sequence number, from 0, big endian |
//! | 8..16 | send time: nanoseconds since the bench started, big endian |
//! | 16.. | zero padding up to `--size` |

use bytes::{BufMut, BytesMut};
use sol::protocol::QoS;

/// What a received payload says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

/// Reads the stamp from the front of a payload; `None` if it is too short.
pub fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    let publisher = u32::from_be_bytes(payload.get(0..4)?.try_into().ok()?);
    let seq = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
    let sent_ns = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
    Some(Stamp {
        publisher,
        seq,
        sent_ns,
    })
}

/// The constant front of one publisher's PUBLISH packets.
#[derive(Clone, Debug)]
pub struct PublishTemplate {
    prefix: Vec<u8>,
    qos: QoS,
    size: usize,
}

fn put_remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut digit = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            digit |= 0x80;
        }
        out.push(digit);
        if n == 0 {
            break;
        }
    }
}

impl PublishTemplate {
    /// `topic` must be a valid topic name of at most 65535 bytes; `size` is
    /// the payload size (at least 16).
    pub fn new(topic: &str, qos: QoS, size: usize) -> PublishTemplate {
        let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        let remaining = 2 + topic.len() + id_len + size;
        let mut prefix = Vec::with_capacity(7 + topic.len());
        prefix.push(0x30 | ((qos as u8) << 1));
        put_remaining_length(remaining, &mut prefix);
        prefix.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        prefix.extend_from_slice(topic.as_bytes());
        PublishTemplate { prefix, qos, size }
    }

    /// The bytes one PUBLISH takes on the wire.
    pub fn packet_len(&self) -> usize {
        let id_len = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        self.prefix.len() + id_len + self.size
    }

    /// Appends one PUBLISH. `packet_id` is written for QoS 1 and 2 only.
    pub fn write(&self, out: &mut BytesMut, packet_id: u16, stamp: Stamp) {
        out.reserve(self.packet_len());
        out.put_slice(&self.prefix);
        if self.qos != QoS::AtMostOnce {
            out.put_u16(packet_id);
        }
        out.put_u32(stamp.publisher);
        out.put_u32(stamp.seq);
        out.put_u64(stamp.sent_ns);
        out.put_bytes(0, self.size.saturating_sub(16));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sol::protocol::{Decoder, Packet, PacketId, Publish, TopicName};

    fn decode_one(bytes: &mut BytesMut) -> Publish {
        let mut decoder = Decoder::client(10 << 20);
        match decoder.decode(bytes).unwrap() {
            Some(Packet::Publish(p)) => p,
            other => panic!("not a PUBLISH: {other:?}"),
        }
    }

    #[test]
    fn sols_decoder_reads_what_the_template_writes() {
        for (qos, size) in [
            (QoS::AtMostOnce, 16),
            (QoS::AtLeastOnce, 100),
            (QoS::ExactlyOnce, 200_000),
        ] {
            let t = PublishTemplate::new("bench/a/b", qos, size);
            let stamp = Stamp {
                publisher: 7,
                seq: 0x0102_0304,
                sent_ns: 99,
            };
            let mut out = BytesMut::new();
            t.write(&mut out, 513, stamp);
            assert_eq!(out.len(), t.packet_len());
            let p = decode_one(&mut out);
            assert!(out.is_empty());
            assert_eq!(p.topic, TopicName::new("bench/a/b").unwrap());
            assert_eq!(p.qos, qos);
            let id = (qos != QoS::AtMostOnce).then(|| PacketId::new(513).unwrap());
            assert_eq!(p.packet_id, id);
            assert_eq!(p.payload.len(), size);
            assert_eq!(read_stamp(&p.payload), Some(stamp));
        }
    }

    #[test]
    fn the_template_matches_sols_encoder_byte_for_byte() {
        use bytes::Bytes;
        use sol::protocol::encode;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let t = PublishTemplate::new("a/b", qos, 40);
            let stamp = Stamp {
                publisher: 3,
                seq: 9,
                sent_ns: 12345,
            };
            let mut ours = BytesMut::new();
            t.write(&mut ours, 77, stamp);
            let mut payload = Vec::new();
            payload.extend_from_slice(&3u32.to_be_bytes());
            payload.extend_from_slice(&9u32.to_be_bytes());
            payload.extend_from_slice(&12345u64.to_be_bytes());
            payload.resize(40, 0);
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic: TopicName::new("a/b").unwrap(),
                packet_id: PacketId::new(77).filter(|_| qos != QoS::AtMostOnce),
                payload: Bytes::from(payload),
            };
            let mut theirs = BytesMut::new();
            encode(&Packet::Publish(publish), &mut theirs);
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn a_short_payload_has_no_stamp() {
        assert_eq!(read_stamp(&[0; 15]), None);
        assert!(read_stamp(&[0; 16]).is_some());
    }
}
