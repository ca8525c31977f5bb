//! Random and mutated input: the decoder never panics, and the helpers
//! other codec tests use to make such input.

use super::*;

pub(crate) use crate::test_rng::XorShift;

/// Random bytes, or a valid packet with a few random mutations.
pub(crate) fn fuzz_input(rng: &mut XorShift, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(4) == 0 {
        let len = rng.below(48);
        return (0..len).map(|_| rng.byte()).collect();
    }
    let mut input = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(3) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] ^= 1 << rng.below(8),
            1 if at < input.len() => input[at] = rng.byte(),
            2 => input.truncate(at),
            3 => input.insert(at, rng.byte()),
            4 => input.extend_from_slice(&seeds[rng.below(seeds.len())]),
            _ if at < input.len() => {
                input.remove(at);
            }
            _ => {}
        }
    }
    input
}

/// Feeds `input` to `decoder` in random pieces; returns the packets
/// decoded before the input ran out or an error stopped it.
pub(crate) fn feed(rng: &mut XorShift, decoder: &mut Decoder, input: &[u8]) -> Vec<Packet> {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(1 + rng.below(rest.len()));
        rest = tail;
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(_) => return packets,
            }
        }
        assert!(
            decoder.needed(buf.len()) <= 256,
            "needed is bounded by the limit"
        );
    }
    packets
}

#[test]
fn fuzz_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let seeds: Vec<Vec<u8>> = all_packets().into_iter().map(|(b, _, _)| b).collect();
    let mut decoded = 0;
    for _ in 0..200_000 {
        let input = fuzz_input(&mut rng, &seeds);
        let mut decoder = match rng.below(3) {
            0 => Decoder::new(256),
            1 => connected(256),
            _ => Decoder::client(256),
        };
        decoded += feed(&mut rng, &mut decoder, &input).len();
    }
    // The mutations leave many packets valid: the loop reaches past the
    // first checks.
    assert!(decoded > 20_000, "only {decoded} packets decoded");
}
