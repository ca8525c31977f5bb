//! The decoder's one-entry cache of the last PUBLISH topic.

use super::*;

/// A QoS 0 PUBLISH to the raw topic bytes `topic`, payload "p".
fn publish_to(topic: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic);
    body.push(b'p');
    frame(0x30, &body)
}

fn topic_of(packet: Packet) -> TopicName {
    match packet {
        Packet::Publish(publish) => publish.topic,
        other => panic!("not a PUBLISH: {other:?}"),
    }
}

/// Whether two names share one allocation (the `Arc` inside is private).
fn shared(a: &TopicName, b: &TopicName) -> bool {
    a.as_str().as_ptr() == b.as_str().as_ptr()
}

#[test]
fn a_repeated_topic_is_shared_not_allocated_again() {
    let mut decoder = connected(MAX);
    let mut decode = |bytes: &[u8]| topic_of(decode_whole(&mut decoder, bytes).unwrap());
    let first = decode(&publish_to(b"sensors/room1/t"));
    let again = decode(&publish_to(b"sensors/room1/t"));
    assert_eq!(again, name("sensors/room1/t"));
    assert!(shared(&first, &again));
    // Whatever the QoS: the packet id after the topic is still read.
    let qos1 = decode_whole(&mut decoder, &frame(0x32, b"\0\x0fsensors/room1/t\0\x07p"));
    let Ok(Packet::Publish(qos1)) = qos1 else {
        panic!("{qos1:?}")
    };
    assert_eq!(qos1.packet_id, Some(id(7)));
    assert_eq!(&qos1.payload[..], b"p");
    assert!(shared(&first, &qos1.topic));

    let mut decode = |bytes: &[u8]| topic_of(decode_whole(&mut decoder, bytes).unwrap());
    let other = decode(&publish_to(b"sensors/room2/t"));
    assert_eq!(other, name("sensors/room2/t"));
    assert!(!shared(&first, &other));
    // The new topic replaced the cached one: the first is validated and
    // allocated again (it cannot land where `first`, still alive, is).
    let back = decode(&publish_to(b"sensors/room1/t"));
    assert_eq!(back, first);
    assert!(!shared(&first, &back));
    assert!(shared(&back, &decode(&publish_to(b"sensors/room1/t"))));
}

#[test]
fn a_long_topic_is_not_kept() {
    let mut decoder = connected(MAX);
    let long = "a/".repeat(CACHED_TOPIC_MAX / 2) + "b";
    assert!(long.len() > CACHED_TOPIC_MAX);
    let first = topic_of(decode_whole(&mut decoder, &publish_to(long.as_bytes())).unwrap());
    let again = topic_of(decode_whole(&mut decoder, &publish_to(long.as_bytes())).unwrap());
    assert_eq!(first, again);
    assert!(
        !shared(&first, &again),
        "a topic over the cap is decoded afresh"
    );
    // Nor does it keep a shorter topic cached before it.
    let short = topic_of(decode_whole(&mut decoder, &publish_to(b"s/t")).unwrap());
    decode_whole(&mut decoder, &publish_to(long.as_bytes())).unwrap();
    let short_again = topic_of(decode_whole(&mut decoder, &publish_to(b"s/t")).unwrap());
    assert!(!shared(&short, &short_again));
    // At the cap it is kept.
    let at_cap = "c".repeat(CACHED_TOPIC_MAX);
    let a = topic_of(decode_whole(&mut decoder, &publish_to(at_cap.as_bytes())).unwrap());
    let b = topic_of(decode_whole(&mut decoder, &publish_to(at_cap.as_bytes())).unwrap());
    assert!(shared(&a, &b));
}

#[test]
fn a_topic_close_to_the_cached_one_is_not_taken_for_it() {
    let pairs: [(&[u8], &str); 5] = [
        (b"a/b1", "a/b2"),
        (b"a/b", "a/bc"),
        (b"a/bc", "a/b"),
        (b"a/b", "a/B"),
        ("é/x".as_bytes(), "è/x"),
    ];
    for (cached, next) in pairs {
        let mut decoder = connected(MAX);
        decode_whole(&mut decoder, &publish_to(cached)).unwrap();
        let topic = topic_of(decode_whole(&mut decoder, &publish_to(next.as_bytes())).unwrap());
        assert_eq!(topic.as_str(), next);
    }
}

#[test]
fn an_invalid_topic_after_a_cached_one_is_still_refused() {
    use DecodeError::*;
    let deep = "a/".repeat(MAX_TOPIC_LEVELS) + "b";
    let cases: [(Vec<u8>, DecodeError); 7] = [
        (publish_to(b"a/+"), Topic(TopicError::WildcardInName)),
        (publish_to(b"a/b/#"), Topic(TopicError::WildcardInName)),
        (publish_to(b"a/b\0"), NullCharacter),
        (publish_to(b"a/\xff"), InvalidUtf8),
        (publish_to(b""), Topic(TopicError::Empty)),
        (
            publish_to(deep.as_bytes()),
            Topic(TopicError::TooManyLevels),
        ),
        // Announces the cached topic's length, holds one byte less.
        (vec![0x30, 4, 0, 3, b'a', b'/'], Truncated),
    ];
    for (bytes, expected) in cases {
        let mut decoder = connected(MAX);
        decode_whole(&mut decoder, &publish_to(b"a/b")).unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(decoder.decode(&mut buf), Err(expected), "{bytes:?}");
    }
}

#[test]
fn the_cache_works_when_bytes_arrive_one_at_a_time() {
    let topics = ["a/b", "a/b", "c", "c", "a/b", "a/bb"];
    let stream: Vec<u8> = topics
        .iter()
        .flat_map(|t| publish_to(t.as_bytes()))
        .collect();
    let mut decoder = connected(MAX);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for &byte in &stream {
        buf.extend_from_slice(&[byte]);
        while let Some(packet) = decoder.decode(&mut buf).unwrap() {
            decoded.push(topic_of(packet));
        }
    }
    let strings: Vec<&str> = decoded.iter().map(|t| t.as_str()).collect();
    assert_eq!(strings, topics);
    assert!(shared(&decoded[0], &decoded[1]));
    assert!(shared(&decoded[2], &decoded[3]));
    assert!(!shared(&decoded[0], &decoded[4]));
    assert!(buf.is_empty());
}

/// A connection holds its decoder for its whole life; the topic cache
/// was paid for with smaller size fields, not with more bytes.
#[test]
#[cfg(target_pointer_width = "64")]
fn the_decoder_is_no_bigger_with_its_topic_cache() {
    assert!(
        std::mem::size_of::<Decoder>() <= 40,
        "Decoder is {} bytes",
        std::mem::size_of::<Decoder>()
    );
}
