//! The fixed header: remaining lengths, partial headers, the size limits
//! and the CONNECT gate, all decided before a body is waited for.

use super::*;

#[test]
fn a_partial_header_is_consumed_and_resumed() {
    let mut decoder = connected(MAX);
    let mut buf = BytesMut::from(&[0x30, 0x85][..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.is_empty(), "header bytes are consumed as they arrive");
    assert_eq!(decoder.needed(0), 0, "the size is not known yet");
    // 0x85 0x00 is a non-minimal encoding of 5: accepted, as mosquitto does.
    buf.extend_from_slice(&[0x00, 0, 1]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(
        buf.len(),
        2,
        "the body is left in the buffer until it is whole"
    );
    assert_eq!(decoder.needed(buf.len()), 3);
    buf.extend_from_slice(b"thi");
    let expected = publish(QoS::AtMostOnce, None, "t", b"hi");
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Publish(expected)))
    );
    assert_eq!(decoder.needed(0), 0);
}

#[test]
fn non_minimal_lengths_are_accepted() {
    let mut decoder = connected(MAX);
    assert_eq!(
        decode_whole(&mut decoder, &[0xC0, 0x80, 0x80, 0x80, 0x00]),
        Ok(Packet::Pingreq)
    );
}

/// Remaining lengths at the edges of one to four bytes (section 2.2.3).
pub(crate) const LENGTHS: &[(usize, &[u8])] = &[
    (0, &[0x00]),
    (127, &[0x7F]),
    (128, &[0x80, 0x01]),
    (16_383, &[0xFF, 0x7F]),
    (16_384, &[0x80, 0x80, 0x01]),
    (2_097_151, &[0xFF, 0xFF, 0x7F]),
    (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
];

#[test]
fn remaining_length_boundaries() {
    for &(size, digits) in LENGTHS {
        let mut decoder = connected(usize::MAX);
        let first_byte = if size == 0 { 0xC0 } else { 0x30 };
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[first_byte]);
        buf.extend_from_slice(digits);
        if size == 0 {
            assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::Pingreq)));
            continue;
        }
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.needed(0), size, "{digits:02x?}");
        if size > 2_097_152 {
            // 256 MB of body is not worth allocating: the size is known.
            continue;
        }
        buf.extend_from_slice(&[0, 1, b't']);
        buf.resize(size, 0x5A);
        let Ok(Some(Packet::Publish(publish))) = decoder.decode(&mut buf) else {
            panic!("size {size} did not decode");
        };
        assert_eq!(publish.payload.len(), size - 3);
        assert!(publish.payload.iter().all(|&b| b == 0x5A));
        assert!(buf.is_empty());
    }
}

/// 100_000_000 as a remaining length.
const HUNDRED_MB: [u8; 4] = [0x80, 0xC2, 0xD7, 0x2F];

#[test]
fn a_huge_length_is_refused_after_the_header_alone() {
    for first_byte in [0x30, 0x32, 0x10, 0x40, 0x62, 0x82, 0xA2, 0xC0, 0xE0] {
        let mut decoder = connected(MAX);
        let mut buf = BytesMut::with_capacity(5);
        buf.extend_from_slice(&[first_byte]);
        buf.extend_from_slice(&HUNDRED_MB);
        let capacity = buf.capacity();
        let expected = DecodeError::TooLarge {
            size: 100_000_000,
            limit: MAX,
        };
        assert_eq!(decoder.decode(&mut buf), Err(expected.clone()));
        assert!(buf.capacity() <= capacity, "nothing was reserved");
        assert_eq!(decoder.needed(0), 0);
        // The decoder stays failed and reads nothing more.
        buf.extend_from_slice(&[0xC0, 0]);
        assert_eq!(decoder.decode(&mut buf), Err(expected));
        assert_eq!(buf.len(), 2);
    }
}

#[test]
fn a_huge_connect_is_refused_after_the_header_alone() {
    let mut decoder = Decoder::new(usize::MAX);
    let mut buf = BytesMut::from(&[0x10, 0x80, 0xC2, 0xD7, 0x2F][..]);
    let capacity = buf.capacity();
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::TooLarge {
            size: 100_000_000,
            limit: CONNECT_MAX_SIZE,
        })
    );
    assert!(buf.capacity() <= capacity, "nothing was reserved");
}

#[test]
fn connect_size_is_capped_before_connect_only() {
    // 100_001 and 100_000 as remaining lengths.
    let over = [0x10, 0xA1, 0x8D, 0x06];
    let at = [0x10, 0xA0, 0x8D, 0x06];
    let mut buf = BytesMut::from(&over[..]);
    assert_eq!(
        Decoder::new(MAX).decode(&mut buf),
        Err(DecodeError::TooLarge {
            size: 100_001,
            limit: CONNECT_MAX_SIZE,
        })
    );
    let mut decoder = Decoder::new(MAX);
    let mut buf = BytesMut::from(&at[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.needed(0), 100_000);

    // A max_size below the CONNECT cap wins.
    let mut buf = BytesMut::from(&at[..]);
    assert_eq!(
        Decoder::new(50_000).decode(&mut buf),
        Err(DecodeError::TooLarge {
            size: 100_000,
            limit: 50_000,
        })
    );

    // Once connected, max_size is the limit, and a CONNECT too may use it.
    for first_byte in [0x30, 0x10] {
        let mut decoder = connected(MAX);
        let mut buf = BytesMut::from(&[first_byte, 0xA1, 0x8D, 0x06][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.needed(0), 100_001);
    }
    let mut decoder = connected(MAX);
    // MAX + 1 = 1_048_577 as a remaining length.
    let mut buf = BytesMut::from(&[0x30, 0x81, 0x80, 0x40][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::TooLarge {
            size: MAX + 1,
            limit: MAX,
        })
    );
}

#[test]
fn the_first_byte_of_a_non_connect_first_packet_is_refused() {
    for first_byte in 0..=255u8 {
        if first_byte >> 4 == CONNECT {
            continue;
        }
        let mut buf = BytesMut::from(&[first_byte][..]);
        let capacity = buf.capacity();
        assert_eq!(
            Decoder::new(MAX).decode(&mut buf),
            Err(DecodeError::FirstPacketNotConnect {
                packet_type: first_byte >> 4
            }),
            "{first_byte:#04x}"
        );
        assert!(buf.capacity() <= capacity, "nothing was reserved");
    }
}

#[test]
fn a_fifth_length_byte_is_refused_without_waiting_for_it() {
    let mut decoder = connected(MAX);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x80][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::MalformedRemainingLength)
    );
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01][..]);
    assert_eq!(
        connected(MAX).decode(&mut buf),
        Err(DecodeError::MalformedRemainingLength)
    );
}
