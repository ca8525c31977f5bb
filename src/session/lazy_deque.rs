//! The deque behind a session's window and queue: nothing until first use,
//! and room given back as it drains. Every method is `#[inline]`: the
//! session's window calls them once or more per message, from another
//! module.

use std::collections::VecDeque;

/// A `VecDeque` boxed on first use. An idle session, which most are, holds
/// 8 bytes for each of its two deques instead of 32: at ten thousand idle
/// clients the difference is half a megabyte. A busy subscriber keeps a
/// small deque and allocates nothing per message; a deque a flood made
/// large gives its room back as it drains, so that twenty thousand queues
/// once full do not keep their peak capacity (counted nowhere) for good.
#[derive(Debug)]
#[allow(clippy::box_collection)]
pub(super) struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

/// A drained deque keeps room for this many elements: enough for a
/// window of inflight messages to come and go without reallocating.
pub(super) const DEQUE_KEPT: usize = 16;

impl<T> Default for LazyDeque<T> {
    fn default() -> Self {
        LazyDeque(None)
    }
}

impl<T> LazyDeque<T> {
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |deque| deque.len())
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The heap bytes the deque holds: its box and its capacity, used or
    /// not.
    #[inline]
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |deque| {
            std::mem::size_of::<VecDeque<T>>()
                .saturating_add(deque.capacity().saturating_mul(std::mem::size_of::<T>()))
        })
    }

    #[inline]
    pub(super) fn push_back(&mut self, value: T) {
        self.0.get_or_insert_with(Box::default).push_back(value);
    }

    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<T> {
        let value = self.0.as_mut()?.pop_front();
        self.shrink();
        value
    }

    #[inline]
    pub(super) fn back(&self) -> Option<&T> {
        self.0.as_ref()?.back()
    }

    #[inline]
    pub(super) fn front(&self) -> Option<&T> {
        self.0.as_ref()?.front()
    }

    #[inline]
    pub(super) fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.0.as_mut()?.remove(index);
        self.shrink();
        value
    }

    #[inline]
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|deque| deque.iter())
    }

    #[inline]
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut().flat_map(|deque| deque.iter_mut())
    }

    #[inline]
    pub(super) fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if let Some(deque) = &mut self.0 {
            deque.retain(keep);
        }
        self.shrink();
    }

    /// Gives back half the room once no more than a quarter is used: the
    /// cost of shrinking is paid for by the pops that emptied it, so it is
    /// O(1) per message amortized, and a deque that grows and drains
    /// repeatedly does not reallocate on every message.
    #[inline]
    pub(super) fn shrink(&mut self) {
        if let Some(deque) = &mut self.0 {
            let (len, capacity) = (deque.len(), deque.capacity());
            if capacity > DEQUE_KEPT && len <= capacity / 4 {
                deque.shrink_to((len * 2).max(DEQUE_KEPT));
            }
        }
    }
}
