//! `IncomingIds`: the incoming QoS 2 packet ids a session holds between
//! PUBLISH and PUBREL, in memory bounded whatever the client does.
//!
//! A client may hold all 65 535 ids at once. As a `HashSet` that costs
//! some 390 kB per session; a bitmap of every id costs 8 kB. Most sessions
//! hold a few ids at a time, for which the set is smaller than the bitmap,
//! so the set is used until it would cost about as much, and the bitmap
//! after that.

use std::collections::HashSet;

use crate::protocol::PacketId;

/// Past this many ids held, a set would cost more than the bitmap.
const SET_MAX: usize = 2048;

/// The words of a bitmap of every packet id.
const WORDS: usize = 65_536 / 64;

#[derive(Debug)]
pub(super) enum IncomingIds {
    Few(HashSet<PacketId>),
    Many { bits: Box<[u64]>, len: usize },
}

impl Default for IncomingIds {
    fn default() -> Self {
        IncomingIds::Few(HashSet::new())
    }
}

impl IncomingIds {
    /// Adds `id`; false if it was held already.
    pub(super) fn insert(&mut self, id: PacketId) -> bool {
        if let IncomingIds::Few(set) = self {
            if set.len() < SET_MAX || set.contains(&id) {
                return set.insert(id);
            }
            let mut bits = vec![0u64; WORDS].into_boxed_slice();
            for held in set.iter() {
                set_bit(&mut bits, *held, true);
            }
            *self = IncomingIds::Many {
                bits,
                len: set.len(),
            };
        }
        match self {
            IncomingIds::Few(set) => set.insert(id),
            IncomingIds::Many { bits, len } => {
                let added = set_bit(bits, id, true);
                *len += usize::from(added);
                added
            }
        }
    }

    /// Removes `id`, if held.
    pub(super) fn remove(&mut self, id: PacketId) {
        match self {
            IncomingIds::Few(set) => {
                set.remove(&id);
            }
            IncomingIds::Many { bits, len } => {
                if set_bit(bits, id, false) {
                    *len -= 1;
                }
                // Back to a small set once none are left.
                if *len == 0 {
                    *self = IncomingIds::default();
                }
            }
        }
    }

    /// The heap bytes held: a set's table (an id and a control byte per
    /// bucket), or the bitmap.
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            IncomingIds::Few(set) => set
                .capacity()
                .saturating_mul(std::mem::size_of::<PacketId>() + 1),
            IncomingIds::Many { .. } => WORDS * 8,
        }
    }
}

/// Sets or clears `id`'s bit; true if that changed it.
fn set_bit(bits: &mut [u64], id: PacketId, on: bool) -> bool {
    let n = usize::from(id.get());
    let Some(word) = bits.get_mut(n / 64) else {
        return false;
    };
    let mask = 1u64 << (n % 64);
    let was = *word & mask != 0;
    if on {
        *word |= mask;
    } else {
        *word &= !mask;
    }
    was != on
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn every_id_can_be_held_in_8_kb_and_duplicates_are_seen_either_way() {
        let mut ids = IncomingIds::default();
        assert!(ids.insert(id(7)));
        assert!(!ids.insert(id(7)));
        for n in 1..=u16::MAX {
            ids.insert(id(n));
        }
        assert!(matches!(ids, IncomingIds::Many { len: 65_535, .. }));
        assert_eq!(ids.heap_bytes(), 8192);
        assert!(!ids.insert(id(u16::MAX)));
        ids.remove(id(u16::MAX));
        assert!(ids.insert(id(u16::MAX)));
        for n in 1..=u16::MAX {
            ids.remove(id(n));
        }
        assert!(matches!(ids, IncomingIds::Few(_)));
        assert!(ids.insert(id(1)));
    }
}
