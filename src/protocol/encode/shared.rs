//! [`SharedPublish`]: one PUBLISH encoded once for many receivers, each
//! copy with its own packet identifier patched in.

use bytes::{BufMut, BytesMut};

use super::v3::{publish_body, publish_flags};
use super::{put_remaining_length, total_len, Counter, MAX_REMAINING_LENGTH};
use crate::protocol::packet::packet_type::PUBLISH;
use crate::protocol::packet::{PacketId, Protocol, QoS};
use crate::protocol::topic::TopicName;

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
/// belongs to one session and is encoded from its own [`Packet`](crate::protocol::Packet).
///
/// The encoding is for receivers that speak one protocol level, named when
/// it is made: a cache of them is keyed by (protocol, QoS). MQTT 3.1 and
/// 3.1.1 lay a PUBLISH out alike, so today every level gets the same bytes.
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
    /// as `retain` says, for receivers at `protocol`, in place of what was
    /// held. At QoS 1 and 2 it
    /// carries packet identifier 1 until [`SharedPublish::set_id`] writes
    /// another: whatever is sent is always a valid packet.
    ///
    /// Returns `false`, holds nothing and logs an error when the packet
    /// cannot be encoded (a topic over 65535 bytes, a body over
    /// 268,435,455: see the encoder's module documentation), as
    /// [`encode`](super::encode) does.
    pub fn encode(
        &mut self,
        protocol: Protocol,
        topic: &TopicName,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> bool {
        match protocol {
            Protocol::V31 | Protocol::V311 => self.encode_v3(topic, payload, qos, retain),
        }
    }

    /// The MQTT 3.1 and 3.1.1 layout: the topic, the identifier, the payload.
    fn encode_v3(&mut self, topic: &TopicName, payload: &[u8], qos: QoS, retain: bool) -> bool {
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

    /// How much the buffer holds room for, for the tests of
    /// [`SharedPublish::clear`].
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.bytes.capacity()
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
