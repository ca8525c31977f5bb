//! `Payloads`: the bytes of every stored payload, counted once per
//! allocation however many sessions, windows and the retained store hold it.
//!
//! A routed payload is one allocation that every copy shares (a fan-out
//! clones a reference). Counting it once per holder made 70 sessions
//! holding one 1 MB message count 70 MB while 1 MB was held. Here the
//! payload is adopted once, when it is first stored: its bytes are wrapped
//! in an owner that adds them to a shared count and takes them off when the
//! last reference goes, whoever held it. Each further copy costs nothing
//! more than the reference it cost before.
//!
//! It knows nothing of sessions or the retained store: it only counts
//! what is alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// What one adopted payload costs beyond its bytes: the owner this module
/// wraps it in and the reference-counted block `Bytes` keeps for it, plus
/// the block of the allocation it came in. Measured with a counting
/// allocator (`tests/memory_overheads.rs`) and rounded up.
pub(crate) const PAYLOAD_OVERHEAD: usize = 96;

/// The live payload bytes; cloned into every payload adopted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Payloads {
    live: Arc<AtomicUsize>,
}

/// A payload's bytes and the count they are in. Dropped with the last
/// reference to the payload.
struct Counted {
    bytes: Bytes,
    live: Arc<AtomicUsize>,
    size: usize,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Relaxed: the broker is one thread, and the count is only read
        // by it; an atomic only because `Bytes` owners must be `Send`.
        self.live.fetch_sub(self.size, Ordering::Relaxed);
    }
}

impl Payloads {
    /// The same bytes, counted from now until the last reference goes.
    /// An empty payload is left alone: it holds nothing.
    pub(crate) fn adopt(&self, bytes: Bytes) -> Bytes {
        if bytes.is_empty() {
            return bytes;
        }
        let size = bytes.len().saturating_add(PAYLOAD_OVERHEAD);
        self.live.fetch_add(size, Ordering::Relaxed);
        Bytes::from_owner(Counted {
            bytes,
            live: Arc::clone(&self.live),
            size,
        })
    }

    /// The bytes of every adopted payload still alive, with their
    /// overhead.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_counts_once_however_many_hold_it_until_the_last_goes() {
        let payloads = Payloads::default();
        let adopted = payloads.adopt(Bytes::from(vec![7u8; 1000]));
        assert_eq!(&adopted[..], &[7u8; 1000][..]);
        let copies: Vec<Bytes> = (0..70).map(|_| adopted.clone()).collect();
        assert_eq!(payloads.live(), 1000 + PAYLOAD_OVERHEAD);
        drop(adopted);
        assert_eq!(payloads.live(), 1000 + PAYLOAD_OVERHEAD);
        drop(copies);
        assert_eq!(payloads.live(), 0);
        assert!(payloads.adopt(Bytes::new()).is_empty());
        assert_eq!(payloads.live(), 0);
    }
}
