//! The one source of randomness for sol's tests and fuzz targets: xorshift64
//! (Marsaglia, "Xorshift RNGs", 2003), with no crate behind it.
//!
//! Model tests, the codec's fuzz loops and the fuzz targets all need noise
//! that replays exactly: a failure names its seed, and the same seed must
//! walk the same path on every machine and every run. A seeded generator of
//! a few lines does that; a random-number crate would add a dependency and
//! leave the sequence to its version.
//!
//! This module is public, but hidden from the documentation, only because
//! the integration tests (`tests/fuzz_corpus.rs`) and the fuzz crate
//! (`fuzz/`) link against the library as it is built outside tests, where a
//! `#[cfg(test)]` module would not exist. The broker never uses it: it knows
//! nothing of MQTT, sockets or the clock, and nothing outside tests and
//! fuzzing may depend on it.

/// A xorshift64 generator.
///
/// Two ways to start one: `XorShift(state)` takes the state as it is (it
/// must not be zero, the one state xorshift never leaves), which suits a
/// test that writes its seed down as a constant; [`XorShift::new`] takes
/// any seed at all, zero included, which suits a seed that comes from
/// outside (a fuzz input's byte, an environment variable).
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

/// The 64-bit golden ratio, a well-mixed odd constant.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl XorShift {
    /// A generator seeded with any `seed`. The seed is mixed with a
    /// constant so that zero, and small seeds, give a usable state.
    pub fn new(seed: u64) -> XorShift {
        match seed ^ GOLDEN {
            // The one seed the mixing would send to zero.
            0 => XorShift(GOLDEN),
            state => XorShift(state),
        }
    }

    /// The next 64 random bits.
    // Not an `Iterator`: the sequence never ends, and an `Option` on every
    // draw would only be unwrapped.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`, or 0 without drawing when `n` is 0, so that a
    /// fuzz target picking from an empty input cannot panic.
    pub fn below_u64(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            n => self.next() % n,
        }
    }

    /// A number in `0..n`, or 0 without drawing when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        let Ok(n) = u64::try_from(n) else {
            return 0;
        };
        usize::try_from(self.below_u64(n)).unwrap_or(0)
    }

    /// A random byte: the low 8 bits of the next draw.
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence is part of the contract: seeds written down in tests and
    /// crash inputs kept by the fuzz corpus replay only if it never changes.
    #[test]
    fn the_sequence_is_fixed() {
        let mut rng = XorShift(1);
        let first: Vec<u64> = (0..3).map(|_| rng.next()).collect();
        assert_eq!(
            first,
            [0x4082_2041, 0x1000_4106_0C01_1441, 0x9B1E_842F_6E86_2629]
        );
        let mut rng = XorShift::new(0x5017);
        assert_eq!(rng.0, 0x5017 ^ GOLDEN);
        let draw = rng.clone().next();
        assert_eq!(rng.below_u64(1000), draw % 1000);
    }

    #[test]
    fn no_seed_gives_the_stuck_state() {
        assert_ne!(XorShift::new(GOLDEN).0, 0);
        assert_ne!(XorShift::new(0).0, 0);
    }

    #[test]
    fn below_zero_is_zero_and_draws_nothing() {
        let mut rng = XorShift::new(9);
        let before = rng.0;
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below_u64(0), 0);
        assert_eq!(rng.0, before);
        for n in 1..50 {
            assert!(rng.below(n) < n);
        }
    }

    #[test]
    fn byte_is_the_low_bits_of_a_draw() {
        let mut a = XorShift(7);
        let mut b = XorShift(7);
        assert_eq!(a.byte(), b.next() as u8);
    }
}
