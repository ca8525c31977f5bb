//! (in progress)
use super::Packet;
pub fn encode(_p: &Packet, _out: &mut bytes::BytesMut) {}
pub fn encoded_len(_p: &Packet) -> usize { 0 }
