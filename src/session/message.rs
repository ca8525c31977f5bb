//! The one stored message: what a session queues or holds in flight, what a
//! retained topic keeps, and what the broker routes, whether a client
//! published it, a will stood for it or the broker made it.
//!
//! **Invariant:** a [`Message`] is plain data, like the session that holds
//! it: no connection, no clock, nothing that cannot be written out and read
//! back. Its [`Origin`] says where it came from in terms that survive as
//! data (see there for what a restore does with it).

use bytes::Bytes;

use crate::protocol::{PacketId, Publish, QoS, TopicName, Will};

/// Where a message came from, so that routing can leave out its source
/// when a rule asks for it: a bridge must not echo a message back to the
/// broker it came from, and MQTT 5's No Local keeps a client's own
/// publications from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Published by the client of this session key, or its will. Copy,
    /// unlike the client id, so that a message costs no reference count per
    /// copy stored, and 32 bits, so that it costs a stored message no more
    /// than a word (a broker with more sessions than that marks their
    /// messages [`Origin::Broker`]). A session key means something only in
    /// the run that made it: persistence writes the client id it names
    /// instead, and a restore turns that id back into the key of the
    /// restored session (or into [`Origin::Broker`] when the session is
    /// gone).
    Client(u32),
    /// Received over the bridge at this index in the configuration.
    /// Written out by the bridge's name, which a restore looks up again.
    Bridge(u16),
    /// Made by the broker itself: the `$SOL/broker/` statistics, or a
    /// message whose origin was not kept.
    #[default]
    Broker,
}

/// What MQTT 5 adds to a message. Nothing yet: MQTT 3.1.1 has no
/// properties, and a 3.1.1 message holds `None` in their place, one word.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Properties {
    /// Message Expiry Interval, in seconds from when the broker received
    /// the message. For a stored message to expire across a restart the
    /// time it was received has to be wall-clock: that goes here with it.
    pub expiry_interval: Option<u32>,
}

/// A message as the broker stores and routes it: once received, at the QoS
/// it will be sent with to one subscriber once stored in a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    /// Shared by every copy: a fan-out clones a reference, never the bytes.
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub origin: Origin,
    /// `None` for MQTT 3.1.1. Boxed: most messages will never have any.
    pub properties: Option<Box<Properties>>,
}

impl Origin {
    /// The origin of what the client of session `key` publishes.
    pub fn client(key: usize) -> Origin {
        u32::try_from(key).map_or(Origin::Broker, Origin::Client)
    }
}

impl Message {
    /// A message with no properties, made by the broker (its origin can be
    /// set with [`Message::from_origin`]).
    pub fn new(topic: TopicName, payload: Bytes, qos: QoS, retain: bool) -> Message {
        Message {
            topic,
            payload,
            qos,
            retain,
            origin: Origin::Broker,
            properties: None,
        }
    }

    /// The same message, marked as coming from `origin`.
    #[must_use]
    pub fn from_origin(self, origin: Origin) -> Message {
        Message { origin, ..self }
    }

    /// What one stored copy of this message is counted for against
    /// `max_memory` beyond its place in a queue, a window or the retained
    /// store (which their owners count by capacity): its topic. The payload
    /// is one allocation every copy shares, which the broker counts once,
    /// when it is first stored. The topic is shared as well but counted
    /// per copy: it is short next to a payload, and the count errs on the
    /// side of reclaiming early.
    #[inline]
    pub fn stored_size(&self) -> usize {
        self.topic.as_str().len()
    }

    /// The copy a subscriber's session keeps, at the QoS it was granted and
    /// with the retain flag as it will be sent.
    #[inline]
    pub fn copy_at(&self, qos: QoS, retain: bool) -> Message {
        Message {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos,
            retain,
            origin: self.origin,
            properties: self.properties.clone(),
        }
    }

    /// The PUBLISH packet that carries this message.
    pub fn to_publish(&self, packet_id: Option<PacketId>, dup: bool) -> Publish {
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id,
            payload: self.payload.clone(),
        }
    }
}

/// The message a client published; its DUP flag and packet id belong to
/// the one hop they came on and are not kept. The origin is the broker's
/// until the receiver says which client sent it ([`Message::from_origin`]).
impl From<Publish> for Message {
    fn from(publish: Publish) -> Message {
        Message::new(publish.topic, publish.payload, publish.qos, publish.retain)
    }
}

/// The message a will stands for, published when its connection ends
/// without DISCONNECT.
impl From<Will> for Message {
    fn from(will: Will) -> Message {
        Message::new(will.topic, will.payload, will.qos, will.retain)
    }
}
