//! The field reader: strings, integers, topics and packet ids read front to
//! back from one buffered body, each read checked, none indexing.
//!
//! The field encodings here (section 1.5) are those of every MQTT level, so
//! a body parser for any level reads through this [`Cursor`].
//!
//! Every reader is `#[inline]`: they are called from other modules, which
//! the compiler may put in other codegen units, and without the hint it
//! stops inlining them into the PUBLISH path (measured: 120 instructions a
//! message more on a QoS 0 fan-in, under callgrind).

use bytes::{Buf, Bytes};

use super::CACHED_TOPIC_MAX;
use crate::protocol::error::DecodeError;
use crate::protocol::packet::PacketId;
use crate::protocol::topic::{TopicError, TopicFilter, TopicName};

/// Reads the fields of one body, front to back. Every read checks that the
/// bytes are there; nothing indexes, so a short body is an error, never a
/// panic.
pub(super) struct Cursor {
    rest: Bytes,
}

impl Cursor {
    /// A reader at the start of `body`.
    #[inline]
    pub(super) fn new(body: Bytes) -> Cursor {
        Cursor { rest: body }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes, as a zero-copy slice of the body.
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.rest.len() {
            // [MQTT-3.1.4-1], [MQTT-4.8.0-1]
            return Err(DecodeError::Truncated);
        }
        Ok(self.rest.split_to(n))
    }

    #[inline]
    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = self.rest.first().copied().ok_or(DecodeError::Truncated)?;
        // Cannot panic: the byte was just read.
        self.rest.advance(1);
        Ok(byte)
    }

    /// A big-endian two-byte integer (section 1.5.2).
    #[inline]
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        let high = self.u8()?;
        let low = self.u8()?;
        Ok(u16::from_be_bytes([high, low]))
    }

    /// Two bytes of length, then that many bytes (sections 1.5.3, 3.1.3.5).
    #[inline]
    pub(super) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// Runs `read` on the bytes of the next string field (two bytes of
    /// length, then that many) where they lie in the body, then steps past
    /// them. A string is checked before it is copied out, and no slice of
    /// the body is made for it.
    #[inline]
    fn in_place<T>(
        &mut self,
        read: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let len = usize::from(self.u16()?);
        // [MQTT-3.1.4-1], [MQTT-4.8.0-1]
        let raw = self.rest.get(..len).ok_or(DecodeError::Truncated)?;
        let value = read(raw)?;
        // Cannot panic: the bytes were just read.
        self.rest.advance(len);
        Ok(value)
    }

    /// A UTF-8 encoded string (section 1.5.3). A leading U+FEFF is kept as
    /// it is [MQTT-1.5.3-3].
    #[inline]
    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        self.in_place(|raw| {
            let s = utf8(raw)?;
            if s.contains('\0') {
                // [MQTT-1.5.3-2]
                return Err(DecodeError::NullCharacter);
            }
            Ok(s.to_owned())
        })
    }

    /// A topic name (a will's): one UTF-8 check, then one pass of the topic
    /// rules, which include U+0000.
    #[inline]
    pub(super) fn topic_name(&mut self) -> Result<TopicName, DecodeError> {
        self.in_place(|raw| TopicName::new(utf8(raw)?).map_err(topic_error))
    }

    /// A PUBLISH's topic name, through the decoder's one-entry cache: the
    /// same bytes as the last topic give the same `TopicName` (a reference
    /// count, no validation, no allocation); other bytes are validated and
    /// become the cached topic.
    #[inline]
    pub(super) fn publish_topic(
        &mut self,
        last: &mut Option<TopicName>,
    ) -> Result<TopicName, DecodeError> {
        self.in_place(|raw| {
            if let Some(topic) = last.as_ref().filter(|t| t.as_str().as_bytes() == raw) {
                return Ok(topic.clone());
            }
            let topic = TopicName::new(utf8(raw)?).map_err(topic_error)?;
            *last = (raw.len() <= CACHED_TOPIC_MAX).then(|| topic.clone());
            Ok(topic)
        })
    }

    /// A topic filter: one UTF-8 check, one pass of the topic rules, then
    /// the one copy the filter keeps.
    #[inline]
    pub(super) fn topic_filter(&mut self) -> Result<TopicFilter, DecodeError> {
        self.in_place(|raw| TopicFilter::new(utf8(raw)?).map_err(topic_error))
    }

    /// A packet identifier, which is never zero [MQTT-2.3.1-1].
    #[inline]
    pub(super) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// Everything left, as a zero-copy slice of the body.
    #[inline]
    pub(super) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.rest)
    }

    /// Bytes after the last field mean a malformed packet [MQTT-3.1.4-1].
    #[inline]
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// `raw` as UTF-8. `from_utf8` refuses ill-formed sequences, surrogates and
/// overlong forms [MQTT-1.5.3-1].
fn utf8(raw: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)
}

/// A topic's U+0000 is reported like any string's [MQTT-1.5.3-2]; the rest
/// are the topic rules of section 4.7.
fn topic_error(error: TopicError) -> DecodeError {
    match error {
        TopicError::Null => DecodeError::NullCharacter,
        other => DecodeError::Topic(other),
    }
}
