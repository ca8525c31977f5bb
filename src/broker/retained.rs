//! `RetainedStore`: the retained messages, one per topic
//! ([MQTT-3.3.1-5]), with the order they were stored in and what they are
//! counted for against `max_memory`, kept in step in one place.
//!
//! It knows nothing of sessions, subscribers or the ACL: `subscribe.rs`
//! walks it for a new subscription and decides who gets what, and
//! `memory.rs` asks it for its bytes and to give up its oldest message.
//! Explained in docs/08-retained-and-wills.md.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use super::memory::PAYLOAD_OVERHEAD;
use crate::protocol::{TopicFilter, TopicName};
use crate::session::Message;
use crate::trie::{RetainedCursor, RetainedTrie, Walked};

/// A retained message as stored: the last message published with the retain
/// flag on its topic, and when it was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    pub message: Message,
    /// Its place in the order retained messages were stored in: the oldest
    /// go first when memory is reclaimed. A sequence number, so that it can
    /// be written out as it is; a restore counts on from the highest.
    pub seq: u64,
}

/// A walk of the retained messages for one filter, done a part at a time
/// (`walks.rs`): it offers only those stored before it started.
pub(super) struct RetainedWalk {
    cursor: RetainedCursor,
    /// The first [`Retained::seq`] too new for this walk.
    before: u64,
}

/// What one retained topic costs beyond its message's
/// [`Message::stored_size`] and payload: its trie node with the level
/// string and the child map entry that leads to it, and its entry in the
/// order index. Measured with a counting allocator over 20 000 topics of
/// two levels (`tests/memory_overheads.rs`: 460 bytes each, 8 of them
/// payload) and rounded; further levels cost [`RETAINED_LEVEL_OVERHEAD`].
pub(super) const RETAINED_OVERHEAD: usize = 352;

/// Every retained message, and the index that reclaims them oldest first.
#[derive(Default)]
pub(super) struct RetainedStore {
    trie: RetainedTrie<Retained>,
    /// Retained topics by [`Retained::seq`], oldest first.
    order: BTreeMap<u64, TopicName>,
    next_seq: u64,
    /// The [`Message::stored_size`] of every retained message, with
    /// [`RETAINED_OVERHEAD`] each.
    bytes: usize,
    /// Their payloads' bytes, which the broker counts once per allocation
    /// elsewhere: kept to tell what the store alone holds.
    payload_bytes: usize,
}

impl RetainedStore {
    /// Stores `message` as its topic's retained message, or clears the
    /// topic: [MQTT-3.3.1-10/11] a retained PUBLISH with an empty payload
    /// deletes the retained message and stores nothing.
    pub(super) fn store(&mut self, message: &Message) {
        if message.payload.is_empty() {
            self.remove(&message.topic);
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let retained = Retained {
            message: message.clone(),
            seq,
        };
        self.bytes = self.bytes.saturating_add(counted(message));
        self.payload_bytes = self.payload_bytes.saturating_add(message.payload.len());
        self.order.insert(seq, message.topic.clone());
        if let Some(old) = self.trie.insert(&message.topic, retained) {
            self.forget(&old);
        }
    }

    /// Removes the retained message on `topic`, if there is one.
    pub(super) fn remove(&mut self, topic: &TopicName) -> Option<Retained> {
        let old = self.trie.remove(topic)?;
        self.forget(&old);
        Some(old)
    }

    /// Removes the oldest retained message; returns the bytes it was
    /// counted for.
    pub(super) fn remove_oldest(&mut self) -> Option<usize> {
        let (_, topic) = self.order.pop_first()?;
        let old = self.trie.remove(&topic)?;
        let size = counted(&old.message);
        self.bytes = self.bytes.saturating_sub(size);
        self.payload_bytes = self.payload_bytes.saturating_sub(old.message.payload.len());
        Some(size)
    }

    /// Calls `f` with every retained message whose topic `filter` matches,
    /// until it breaks, all at once: for tests.
    #[cfg(test)]
    pub(super) fn try_for_each_match(
        &self,
        filter: &TopicFilter,
        mut f: impl FnMut(&Message) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.trie
            .try_for_each_match(filter, |retained| f(&retained.message))
    }

    /// A walk of the messages `filter` matches, as they are now.
    pub(super) fn walk(&self, filter: TopicFilter) -> RetainedWalk {
        RetainedWalk {
            cursor: RetainedCursor::new(&self.trie, filter),
            before: self.next_seq,
        }
    }

    /// Goes on with `walk` within `budget` trie nodes, calling `f` with
    /// each message it reaches that was stored before the walk started
    /// (one stored since went to the subscriber live). A message `f`
    /// breaks on is offered again next time.
    pub(super) fn resume(
        &self,
        walk: &mut RetainedWalk,
        budget: &mut usize,
        mut f: impl FnMut(&Message) -> ControlFlow<()>,
    ) -> Walked {
        let before = walk.before;
        walk.cursor.resume(&self.trie, budget, |retained| {
            if retained.seq >= before {
                return ControlFlow::Continue(());
            }
            f(&retained.message)
        })
    }

    pub(super) fn len(&self) -> usize {
        self.trie.len()
    }

    /// What the retained messages are counted for against `max_memory`.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the store alone holds: [`RetainedStore::bytes`] and the
    /// payloads, as if no one else held them.
    pub(super) fn held(&self) -> usize {
        let payload_overhead = self.len().saturating_mul(PAYLOAD_OVERHEAD);
        self.bytes
            .saturating_add(self.payload_bytes)
            .saturating_add(payload_overhead)
    }

    fn forget(&mut self, old: &Retained) {
        self.order.remove(&old.seq);
        self.bytes = self.bytes.saturating_sub(counted(&old.message));
        self.payload_bytes = self.payload_bytes.saturating_sub(old.message.payload.len());
    }
}

/// What each level of a retained topic past the second costs: its trie
/// node with its level string and child map. Measured with a counting
/// allocator over 1 000 topics of 50 levels (`tests/memory_overheads.rs`:
/// 20 620 bytes each, about 420 a level) and rounded.
const RETAINED_LEVEL_OVERHEAD: usize = 420;

/// What a retained message is counted for, its payload apart: its topic
/// twice (the message's, and the trie's level strings), its entry and
/// nodes, as if no other topic shared its levels (an upper bound when one
/// does).
fn counted(message: &Message) -> usize {
    let topic = message.topic.as_str();
    let deeper = topic.split('/').count().saturating_sub(2);
    message
        .stored_size()
        .saturating_add(topic.len())
        .saturating_add(RETAINED_OVERHEAD)
        .saturating_add(deeper.saturating_mul(RETAINED_LEVEL_OVERHEAD))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::QoS;

    fn message(topic: &str, payload: &'static [u8]) -> Message {
        Message::new(
            TopicName::new(topic).unwrap(),
            Bytes::from_static(payload),
            QoS::AtLeastOnce,
            true,
        )
    }

    #[test]
    fn the_index_and_the_bytes_follow_every_store_replace_and_delete() {
        let mut store = RetainedStore::default();
        let (a, b) = (message("a", b"1"), message("b/c", b"22"));
        store.store(&a);
        store.store(&b);
        assert_eq!(store.len(), 2);
        assert_eq!(store.bytes(), counted(&a) + counted(&b));
        // Replacing `a` makes it the newest.
        let a2 = message("a", b"333");
        store.store(&a2);
        assert_eq!(store.len(), 2);
        assert_eq!(store.bytes(), counted(&a2) + counted(&b));
        assert_eq!(store.remove_oldest(), Some(counted(&b)));
        assert_eq!(store.bytes(), counted(&a2));
        // An empty payload deletes.
        store.store(&message("a", b""));
        assert_eq!((store.len(), store.bytes()), (0, 0));
        assert_eq!(store.remove_oldest(), None);
        assert!(store.order.is_empty());
    }
}
