//! Counting what arrived against what was sent.
//!
//! Each subscriber keeps one [`Tracker`] per publisher it should hear from.
//! A tracker holds a bit per sequence number seen, so a duplicate is told
//! apart from a late arrival exactly; its memory is one bit per message
//! received, which stays small (a million messages: 125 KB).

/// What one subscriber saw from one publisher.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    seen: Vec<u64>,
    highest: Option<u32>,
    /// Distinct sequence numbers received.
    pub distinct: u64,
    /// Messages received again.
    pub duplicated: u64,
    /// Messages that arrived after one with a higher sequence number.
    pub out_of_order: u64,
}

impl Tracker {
    pub fn record(&mut self, seq: u32) {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if self.seen.len() <= word {
            // Grows ahead of need so a steady stream reallocates rarely.
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        let Some(slot) = self.seen.get_mut(word) else {
            return;
        };
        if *slot & bit != 0 {
            self.duplicated += 1;
            return;
        }
        *slot |= bit;
        self.distinct += 1;
        match self.highest {
            Some(h) if seq < h => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
    }
}

/// The run's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// PUBLISH packets the publishers wrote.
    pub sent: u64,
    /// Deliveries the subscribers should see: each message times the
    /// subscribers of its topic.
    pub expected: u64,
    /// PUBLISH packets the subscribers read, duplicates included.
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Payloads that did not carry a stamp of this run.
    pub foreign: u64,
}

impl Counts {
    /// Every message arrived once, in order, and nothing else arrived.
    pub fn verified(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0 && self.foreign == 0
    }

    /// Adds one subscriber's tracker for a publisher that sent `sent`.
    pub fn add(&mut self, tracker: &Tracker, sent: u64) {
        self.lost += sent.saturating_sub(tracker.distinct);
        self.duplicated += tracker.duplicated;
        self.out_of_order += tracker.out_of_order;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_gaps_and_late_arrivals() {
        let mut t = Tracker::default();
        for seq in [0, 1, 2, 2, 5, 3, 200, 1] {
            t.record(seq);
        }
        assert_eq!(t.distinct, 6);
        assert_eq!(t.duplicated, 2);
        assert_eq!(t.out_of_order, 1);
        let mut c = Counts::default();
        c.add(&t, 201);
        assert_eq!(c.lost, 195);
        assert!(!c.verified());
    }

    #[test]
    fn an_ordered_complete_stream_verifies() {
        let mut t = Tracker::default();
        (0..1000).for_each(|s| t.record(s));
        let mut c = Counts::default();
        c.add(&t, 1000);
        assert!(c.verified());
        assert_eq!(t.distinct, 1000);
    }
}
