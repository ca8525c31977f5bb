//! The encoder: [`Packet`]s in, bytes out, for all fourteen packet types in
//! both directions.
//!
//! A packet's body is laid out by one function, [`body`], written against a
//! small [`Sink`]: run once with a counter it measures the body, run again
//! with the output buffer it writes it. So [`encoded_len`] and [`encode`]
//! cannot disagree, and [`encode`] reserves exactly what it then writes, in
//! one go, before writing anything.
//!
//! # What cannot be encoded
//!
//! Strings and binary fields carry a two-byte length, so none may be longer
//! than 65535 bytes, and the remaining length has four seven-bit digits, so
//! no body may be longer than 268,435,455 bytes (section 2.2.3). A packet the
//! decoder built always fits, since it came off the wire in that format; a
//! packet the broker builds from its own short strings fits too. But
//! [`TopicName::new`](super::TopicName::new) does not bound the length, so
//! the encoder checks rather than trusts: a packet that does not fit is not
//! encoded at all. [`encoded_len`] returns 0 for it and [`encode`] appends
//! nothing and logs an error. Truncating a field instead would send a
//! different topic or a corrupt payload; a length field that wrapped around
//! would desynchronise the whole stream.
//!
//! # One PUBLISH, many subscribers
//!
//! A message routed to a hundred subscribers is, on the wire, a hundred
//! copies of the same bytes but for the packet identifier, which each
//! receiving session picks for itself. [`SharedPublish`] encodes such a
//! PUBLISH once; the identifier sits at a fixed offset (right after the
//! topic), so each copy only patches those two bytes.
//!
//! **Architecture Invariant:** the encoder writes what the packet says and
//! makes no protocol decisions; which packets to send is the broker's job.
//! Explained in docs/02-fixed-header.md.
//!
//! # Layout
//!
//! - this file: the fixed header, the remaining length, the measuring
//!   [`Sink`] and the entry points;
//! - [`v3`]: the bodies of MQTT 3.1 and 3.1.1, which lay out every packet
//!   alike;
//! - [`shared`]: [`SharedPublish`], one PUBLISH encoded for many receivers.

mod shared;
mod v3;

use bytes::{BufMut, BytesMut};

use super::packet::Packet;

pub use shared::SharedPublish;

/// The largest remaining length four bytes can encode (section 2.2.3).
const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Appends the encoding of `packet` to `out`.
///
/// PUBLISH is encoded as its fields say: the QoS bits come from `qos`, and
/// the packet identifier is written exactly when `packet_id` is `Some`.
/// `Publish` promises that the two agree; a value that breaks the promise is
/// still encoded consistently with [`encoded_len`], but its receiver will
/// misread it. The decoder never builds such a value. In the same way, a
/// CONNECT is written with exactly the optional fields it holds, even a
/// password without a username, which the decoder refuses ([MQTT-3.1.2-22]).
///
/// A packet with a field over 65535 bytes or a body over 268,435,455 bytes
/// is not encoded: nothing is appended and an error is logged (see the
/// module documentation).
pub fn encode(packet: &Packet, out: &mut BytesMut) {
    let Some(size) = body_size(packet) else {
        log::error!(
            "{} not encoded: a field is over 65535 bytes or the body over {MAX_REMAINING_LENGTH}",
            packet.name()
        );
        return;
    };
    out.reserve(total_len(size));
    out.put_u8(v3::first_byte(packet));
    put_remaining_length(size, out);
    // Cannot fail: body_size walked the same fields with the same checks.
    let _ = v3::body(packet, out);
}

/// The number of bytes [`encode`] appends: 0 for a packet that cannot be
/// encoded.
pub fn encoded_len(packet: &Packet) -> usize {
    body_size(packet).map_or(0, total_len)
}

/// remaining length, the body.
fn total_len(size: usize) -> usize {
    1 + remaining_length_len(size) + size
}

/// How many bytes the remaining length `size` takes (section 2.2.3).
fn remaining_length_len(size: usize) -> usize {
    match size {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Seven bits at a time, least significant first, the top bit saying
/// whether another byte follows (section 2.2.3). `size` has been checked to
/// be at most [`MAX_REMAINING_LENGTH`], so this writes at most four bytes.
fn put_remaining_length(mut size: usize, out: &mut BytesMut) {
    loop {
        let digit = (size % 128) as u8;
        size /= 128;
        if size == 0 {
            out.put_u8(digit);
            return;
        }
        out.put_u8(digit | 0x80);
    }
}

/// The size of the body, or `None` when the packet cannot be encoded.
fn body_size(packet: &Packet) -> Option<usize> {
    let mut counter = Counter(0);
    v3::body(packet, &mut counter).ok()?;
    (counter.0 <= MAX_REMAINING_LENGTH).then_some(counter.0)
}

/// A string or binary field longer than its two-byte length can say.
struct FieldTooLong;

/// Where [`body`] puts bytes: the output buffer, or a [`Counter`].
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn u8(&mut self, value: u8) {
        self.put(&[value]);
    }

    /// Big-endian, as every integer in MQTT (section 1.5.2).
    fn u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    /// Two bytes of length, then the bytes: strings (section 1.5.3) and
    /// binary fields (section 3.1.3) alike.
    fn field(&mut self, bytes: &[u8]) -> Result<(), FieldTooLong> {
        let len = u16::try_from(bytes.len()).map_err(|_| FieldTooLong)?;
        self.u16(len);
        self.put(bytes);
        Ok(())
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// Measures instead of writing.
struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        // Saturating: a sum this large is over MAX_REMAINING_LENGTH anyway.
        self.0 = self.0.saturating_add(bytes.len());
    }
}

#[cfg(test)]
mod tests;
