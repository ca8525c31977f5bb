//! The protocol level a CONNECT names, which the decoder keeps for the rest
//! of the connection, and what depends on it.

use super::*;
use crate::protocol::packet::packet_type::PUBREL;

/// The smallest valid MQTT 3.1 CONNECT: `MQIsdp` level 3, clean session,
/// keepalive 60, empty client id.
const CONNECT_V31: &[u8] = &[
    0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 0,
];

/// PUBREL for packet id 5 with DUP set, as MQTT 3.1 resends it.
const PUBREL_DUP: &[u8] = &[0x6A, 2, 0, 5];

/// A server-side decoder that has seen a 3.1 CONNECT.
fn connected_v31() -> Decoder {
    let mut decoder = Decoder::new(MAX);
    decode_whole(&mut decoder, CONNECT_V31).unwrap();
    decoder
}

#[test]
fn the_decoder_keeps_the_level_its_first_connect_named() {
    let mut decoder = Decoder::new(MAX);
    assert_eq!(decoder.protocol(), None);
    decode_whole(&mut decoder, CONNECT_V31).unwrap();
    assert_eq!(decoder.protocol(), Some(Protocol::V31));
    // A second CONNECT is the broker's to refuse; it changes nothing here.
    decode_whole(&mut decoder, CONNECT_MIN).unwrap();
    assert_eq!(decoder.protocol(), Some(Protocol::V31));

    assert_eq!(connected(MAX).protocol(), Some(Protocol::V311));
    assert_eq!(Decoder::client(MAX).protocol(), Some(Protocol::V311));

    // A failed decoder speaks no level any more.
    let mut failed = connected(MAX);
    assert!(decode_whole(&mut failed, &[0xF0, 0]).is_err());
    assert_eq!(failed.protocol(), None);
    // Nor does one whose CONNECT names a level it does not know.
    let mut refused = Decoder::new(MAX);
    let mut level5 = CONNECT_MIN.to_vec();
    level5[8] = 5;
    assert_eq!(
        decode_whole(&mut refused, &level5),
        Err(DecodeError::UnsupportedProtocolLevel(5))
    );
    assert_eq!(refused.protocol(), None);
}

/// Issue 17.3: a 3.1 client that sends PUBREL again may set DUP, as 3.1
/// allowed; it is the same PUBREL.
#[test]
fn a_v31_client_may_set_dup_on_pubrel() {
    let mut decoder = connected_v31();
    assert_eq!(
        decode_whole(&mut decoder, PUBREL_DUP),
        Ok(Packet::Pubrel(id(5)))
    );
    assert_eq!(
        decode_whole(&mut decoder, &[0x62, 2, 0, 5]),
        Ok(Packet::Pubrel(id(5)))
    );
}

#[test]
fn pubrel_flags_other_than_dup_are_refused_at_every_level() {
    // [MQTT-3.6.1-1] holds at level 4, for the client side too.
    let bad_dup = DecodeError::BadFlags {
        packet_type: PUBREL,
        flags: 0b1010,
    };
    assert_eq!(
        decode_whole(&mut connected(MAX), PUBREL_DUP),
        Err(bad_dup.clone())
    );
    assert_eq!(
        decode_whole(&mut Decoder::client(MAX), PUBREL_DUP),
        Err(bad_dup)
    );
    // At level 3, DUP is the one bit allowed beside the fixed 0010.
    for first_byte in [0x60, 0x68, 0x6B, 0x6E, 0x63, 0x66] {
        assert_eq!(
            decode_whole(&mut connected_v31(), &[first_byte, 2, 0, 5]),
            Err(DecodeError::BadFlags {
                packet_type: PUBREL,
                flags: first_byte & 0x0F,
            }),
            "{first_byte:#04x}"
        );
    }
    // Before any CONNECT the gate refuses it, whatever its flags.
    assert_eq!(
        decode_whole(&mut Decoder::new(MAX), PUBREL_DUP),
        Err(DecodeError::FirstPacketNotConnect {
            packet_type: PUBREL
        })
    );
}

/// The level is known once the CONNECT has decoded, however the bytes of
/// the CONNECT and the next packet were cut.
#[test]
fn the_level_holds_when_bytes_arrive_in_any_pieces() {
    let stream = [CONNECT_V31, PUBREL_DUP].concat();
    for cut in 0..=stream.len() {
        let mut decoder = Decoder::new(MAX);
        let mut buf = BytesMut::new();
        let mut packets = Vec::new();
        for piece in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(piece);
            while let Some(packet) = decoder.decode(&mut buf).unwrap() {
                packets.push(packet);
            }
        }
        assert_eq!(packets.len(), 2, "cut at {cut}");
        assert_eq!(packets[1], Packet::Pubrel(id(5)), "cut at {cut}");
    }
}
