//! Every row of BAD_INPUTS.md (the misbehaving clients every broker path
//! must survive) as raw bytes, each while a well-behaved bystander keeps
//! publishing and receiving at QoS 1 on the same broker.
//!
//! Test names start with the row number. "Close" means: this connection is
//! closed, nothing (more) is sent to it, and the bystander never notices.

mod common;

use std::time::Duration;

use common::*;

/// Opens a socket, sends `bytes` as the first thing, expects a close.
fn closed_before_connect(broker: &TestBroker, bytes: &[u8]) {
    let mut raw = Raw::tcp(broker.addr());
    raw.send(bytes);
    raw.expect_closed();
}

/// Connects properly, then sends `bytes` and expects a close with nothing
/// sent back.
fn closed_after_connect(broker: &TestBroker, bytes: &[u8]) {
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("bad"));
    raw.send(bytes);
    raw.expect_closed();
}

/// CONNECT with a body edited by `edit`.
fn connect_with(edit: impl FnOnce(&mut Connect)) -> Vec<u8> {
    let mut c = Connect::new(&unique_id("bad"));
    edit(&mut c);
    c.bytes()
}

/// A PUBLISH whose topic is `topic`, raw bytes.
fn publish_topic(topic: &[u8]) -> Vec<u8> {
    publish_raw(topic, b"payload", 0, false, false, None)
}

/// A SUBSCRIBE for one raw filter at QoS 0.
fn subscribe_filter(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    body.extend(string(filter));
    body.push(0);
    packet(0x82, &body)
}

/// An UNSUBSCRIBE for one raw filter.
fn unsubscribe_filter(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    body.extend(string(filter));
    packet(0xA2, &body)
}

#[test]
fn row_01_first_packet_not_connect_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("r1");
        let cases: Vec<Vec<u8>> = vec![
            PINGREQ.to_vec(),
            DISCONNECT.to_vec(),
            publish(&t, b"before connect", 0, false, None),
            publish(&t, b"before connect", 1, false, Some(1)),
            subscribe(1, &[(&t, 0)]),
            unsubscribe(1, &[&t]),
            puback(1),
            pubrel(1),
            connack(false, 0),
        ];
        for bytes in cases {
            closed_before_connect(&broker, &bytes);
        }
    });
}

/// CVE-2023-0809: a non-CONNECT first packet announcing 100 MB is refused
/// from its header, without waiting for (or allocating) the body.
#[test]
fn row_01_first_packet_not_connect_with_huge_length_closes_at_once() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        for first in [0x30u8, 0x82, 0xC0, 0x20] {
            let mut bytes = vec![first];
            bytes.extend(remaining_length(100_000_000));
            closed_before_connect(&broker, &bytes);
        }
    });
}

#[test]
fn row_02_second_connect_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let id = unique_id("r2");
        let mut raw = Raw::connected_clean(broker.addr(), &id);
        raw.send(&connect(&id));
        raw.expect_closed();
        // A second CONNECT with another id is just as wrong.
        closed_after_connect(&broker, &connect(&unique_id("other")));
    });
}

#[test]
fn row_03_wrong_protocol_name_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        for name in [&b"MQTX"[..], b"mqtt", b"MQT", b"MQTTT", b"", b"MQIsd"] {
            closed_before_connect(&broker, &connect_with(|c| c.protocol_name = name.to_vec()));
        }
        // A known name with the other one's level: close, after CONNACK 0x01
        // if the broker chooses to answer the level (mosquitto does).
        for (name, level) in [(&b"MQIsdp"[..], 4u8), (&b"MQTT"[..], 3)] {
            let mut raw = Raw::tcp(broker.addr());
            raw.send(&connect_with(|c| {
                c.protocol_name = name.to_vec();
                c.level = level;
            }));
            raw.expect_closed_optionally_after(&connack(false, 1));
        }
    });
}

#[test]
fn row_04_unsupported_level_gets_connack_1_and_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let mut levels = vec![0u8, 2, 6, 7, 0x83, 0xFF];
        if broker.checks_sol_only("mosquitto takes 0x84 as level 4 from a bridge") {
            levels.push(0x84);
        }
        for level in levels {
            let mut raw = Raw::tcp(broker.addr());
            raw.send(&connect_with(|c| c.level = level));
            raw.expect(&[0x20, 0x02, 0x00, 0x01]);
            raw.expect_closed();
        }
    });
}

#[test]
fn row_05_connect_reserved_flag_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        closed_before_connect(&broker, &connect_with(|c| c.extra_flags = 0x01));
        let mut clean_off = Connect::new(&unique_id("bad")).clean(false);
        clean_off.extra_flags = 0x01;
        closed_before_connect(&broker, &clean_off.bytes());
    });
}

#[test]
fn row_06_will_qos_or_retain_without_will_flag_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        for flags in [0x08u8, 0x10, 0x18, 0x20, 0x28] {
            closed_before_connect(&broker, &connect_with(|c| c.extra_flags = flags));
        }
    });
}

#[test]
fn row_07_will_qos_3_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("r7");
        for retain in [false, true] {
            closed_before_connect(
                &broker,
                &connect_with(|c| *c = c.clone().will(&t, b"x", 3, retain)),
            );
        }
    });
}

#[test]
fn row_08_password_without_username_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        closed_before_connect(
            &broker,
            &connect_with(|c| c.password = Some(b"secret".to_vec())),
        );
    });
}

#[test]
fn row_09_missing_field_or_trailing_bytes_closes_without_connack() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        // Flagged, but the payload ends after the client id.
        for flags in [0x04u8, 0x80, 0xC0] {
            closed_before_connect(&broker, &connect_with(|c| c.extra_flags = flags));
        }
        // Will topic present, will message missing.
        let mut body = Connect::new(&unique_id("bad")).body();
        body[7] |= 0x04;
        body.extend(string(b"will/topic"));
        closed_before_connect(&broker, &packet(0x10, &body));
        // No client id at all.
        let body = Connect::new("x").body();
        closed_before_connect(&broker, &packet(0x10, &body[..10]));
        // Trailing bytes after a complete payload.
        for extra in [&[0u8][..], &[0, 0], b"trailing"] {
            let mut body = Connect::new(&unique_id("bad")).body();
            body.extend_from_slice(extra);
            closed_before_connect(&broker, &packet(0x10, &body));
        }
    });
}

#[test]
fn row_10_empty_client_id_with_persistent_session_gets_connack_2() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let mut raw = Raw::tcp(broker.addr());
        raw.send(&Connect::new("").clean(false).bytes());
        raw.expect(&[0x20, 0x02, 0x00, 0x02]);
        raw.expect_closed();
    });
}

/// The allowed ids are accepted; an id outside that set may be refused, but
/// only with CONNACK 0x02 and a close [MQTT-3.1.3-9].
#[test]
fn row_11_client_id_policy() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        for id in [unique_id("a"), format!("{:Z<23}", unique_id("Z9"))] {
            let mut raw = Raw::connected_clean(broker.addr(), &id);
            raw.ping();
        }
        let odd = [
            format!("{}-with/slash+plus#hash", unique_id("o")),
            format!("{}\u{e9}t\u{e9}", unique_id("u")),
            format!("{}{}", unique_id("l"), "x".repeat(200)),
        ];
        for id in odd {
            let mut raw = Raw::tcp(broker.addr());
            raw.send(&connect(&id));
            let answer = raw.read_packet();
            if answer == connack(false, 0) {
                raw.ping();
            } else {
                assert_eq!(hex(&answer), hex(&connack(false, 2)), "client id {id:?}");
                raw.expect_closed();
            }
        }
    });
}

/// sol has no authentication configured by default, so credentials are not
/// checked: they must parse and be accepted. (With a password file, bad
/// credentials get 0x05: the test below.)
#[test]
fn row_12_credentials_without_authentication_are_accepted() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let mut c = Connect::new(&unique_id("cred"));
        c.username = Some(b"user".to_vec());
        let mut raw = Raw::connected(broker.addr(), &c, false);
        raw.ping();
        c.client_id = unique_id("cred").into_bytes();
        c.password = Some(vec![0, 1, 2, 0xFF]);
        let mut raw = Raw::connected(broker.addr(), &c, false);
        raw.ping();
    });
}

#[test]
fn row_13_same_client_id_disconnects_the_old_connection_and_publishes_its_will() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let id = unique_id("r13");
        let will = unique_topic("r13");
        let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
        watcher.subscribe(&will, QoS::AtLeastOnce);
        let c = Connect::new(&id).will(&will, b"taken over", 1, false);
        let mut old = Raw::connected(broker.addr(), &c, false);
        let mut new = Raw::connected_clean(broker.addr(), &id);
        old.expect_closed();
        watcher.expect(&will, b"taken over");
        new.ping();
    });
}

#[test]
fn row_14_remaining_length_with_a_fifth_byte_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        closed_before_connect(&broker, &[0x10, 0x80, 0x80, 0x80, 0x80, 0x01]);
        closed_after_connect(&broker, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        closed_after_connect(&broker, &[0xC0, 0x80, 0x80, 0x80, 0x80, 0x00]);
    });
}

/// sol-only (CVE-2017-7651): a CONNECT announcing more than 100 KB is refused
/// from its header, before the body is sent or allocated.
#[test]
fn row_15_oversized_connect_closes_before_the_body() {
    let Some(broker) = TestBroker::sol_only("mosquitto 2.0.11 waits for the body") else {
        return;
    };
    with_bystander(&broker, || {
        for announced in [200_000usize, 268_435_455] {
            let mut bytes = vec![0x10];
            bytes.extend(remaining_length(announced));
            closed_before_connect(&broker, &bytes);
        }
    });
}

/// sol-only: after CONNECT, a packet over `max_request_size` is refused from
/// its header.
#[test]
fn row_15_packet_over_max_request_size_closes() {
    let Some(broker) = TestBroker::with(|c| c.max_request_size = 1000) else {
        return;
    };
    with_bystander(&broker, || {
        let t = unique_topic("r15");
        // Just under the limit passes ...
        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("ok"));
        let fits = publish(&t, &vec![b'x'; 900], 1, false, Some(1));
        assert!(fits.len() <= 1000);
        raw.send(&fits);
        raw.expect(&puback(1));
        // ... over it closes, whether or not the body follows.
        let mut header = vec![0x30];
        header.extend(remaining_length(50_000_000));
        closed_after_connect(&broker, &header);
        closed_after_connect(&broker, &publish(&t, &vec![b'x'; 2000], 0, false, None));
    });
}

#[test]
fn row_16_string_past_the_end_of_the_packet_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        // CONNECT whose client id claims 100 bytes and has 5.
        let mut body = Connect::new("").body();
        let at = body.len() - 2;
        body.truncate(at);
        body.extend([0x00, 100]);
        body.extend(b"short");
        closed_before_connect(&broker, &packet(0x10, &body));
        // PUBLISH whose topic runs past the end.
        closed_after_connect(&broker, &packet(0x30, &[0x00, 0x10, b'a', b'b']));
        // SUBSCRIBE whose filter runs past the end.
        closed_after_connect(
            &broker,
            &packet(0x82, &[0x00, 0x01, 0x00, 0x09, b'a', b'/', b'b', 0x00]),
        );
        // UNSUBSCRIBE likewise.
        closed_after_connect(&broker, &packet(0xA2, &[0x00, 0x01, 0x00, 0x09, b'a']));
        // Topic length field itself cut short.
        closed_after_connect(&broker, &packet(0x30, &[0x00]));
    });
}

#[test]
fn row_17_reserved_or_server_only_packet_type_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let cases: [&[u8]; 3] = [&[0x00, 0x00], &[0xF0, 0x00], &[0x20, 0x02, 0x00, 0x00]];
        for bytes in cases {
            closed_after_connect(&broker, bytes);
        }
        if broker.checks_sol_only("mosquitto 2.0 ignores SUBACK, UNSUBACK, PINGRESP from clients") {
            let cases: [&[u8]; 3] = [
                &[0x90, 0x03, 0x00, 0x01, 0x00],
                &[0xB0, 0x02, 0x00, 0x01],
                &[0xD0, 0x00],
            ];
            for bytes in cases {
                closed_after_connect(&broker, bytes);
            }
        }
        closed_before_connect(&broker, &[0x00, 0x00]);
        closed_before_connect(&broker, &[0xF0, 0x00]);
    });
}

#[test]
fn row_18_wrong_reserved_header_flags_close() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("r18");
        let mut sub = subscribe(1, &[(&t, 0)]);
        sub[0] = 0x80;
        closed_after_connect(&broker, &sub);
        sub[0] = 0x83;
        closed_after_connect(&broker, &sub);
        let mut unsub = unsubscribe(1, &[&t]);
        unsub[0] = 0xA0;
        closed_after_connect(&broker, &unsub);
        closed_after_connect(&broker, &[0x60, 0x02, 0x00, 0x01]);
        closed_after_connect(&broker, &[0xE2, 0x00]);
        if broker
            .checks_sol_only("mosquitto 2.0 ignores the flags of PUBACK, PUBREC, PUBCOMP, PINGREQ")
        {
            let cases: [&[u8]; 5] = [
                &[0x41, 0x02, 0x00, 0x01],
                &[0x58, 0x02, 0x00, 0x01],
                &[0x7F, 0x02, 0x00, 0x01],
                &[0xC1, 0x00],
                &[0xC8, 0x00],
            ];
            for bytes in cases {
                closed_after_connect(&broker, bytes);
            }
        }
        let mut c = connect(&unique_id("bad"));
        c[0] = 0x11;
        closed_before_connect(&broker, &c);
    });
}

#[test]
fn row_19_wrong_length_for_acks_pingreq_and_disconnect_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let cases: [&[u8]; 5] = [
            &[0x40, 0x01, 0x01],
            &[0x50, 0x00],
            &[0x62, 0x01, 0x01],
            &[0x70, 0x00],
            &[0xE0, 0x01, 0x00],
        ];
        for bytes in cases {
            closed_after_connect(&broker, bytes);
        }
        // mosquitto reads a longer ack as MQTT 5's reason code.
        if broker.checks_sol_only("mosquitto 2.0 accepts acks of length 3 and PINGREQ of length 1")
        {
            let cases: [&[u8]; 6] = [
                &[0x40, 0x03, 0x00, 0x01, 0x00],
                &[0x50, 0x03, 0x00, 0x01, 0x00],
                &[0x62, 0x03, 0x00, 0x01, 0x00],
                &[0x70, 0x03, 0x00, 0x01, 0x00],
                &[0x40, 0x04, 0x00, 0x01, 0x00, 0x00],
                &[0xC0, 0x01, 0x00],
            ];
            for bytes in cases {
                closed_after_connect(&broker, bytes);
            }
        }
    });
}

#[test]
fn row_20_publish_with_qos_3_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("r20");
        closed_after_connect(
            &broker,
            &publish_raw(t.as_bytes(), b"x", 3, false, false, Some(1)),
        );
        closed_after_connect(
            &broker,
            &publish_raw(t.as_bytes(), b"x", 3, true, true, Some(1)),
        );
    });
}

#[test]
fn row_21_packet_id_zero_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("r21");
        closed_after_connect(&broker, &publish(&t, b"x", 1, false, Some(0)));
        closed_after_connect(&broker, &publish(&t, b"x", 2, false, Some(0)));
        closed_after_connect(&broker, &subscribe(0, &[(&t, 0)]));
        closed_after_connect(&broker, &unsubscribe(0, &[&t]));
    });
}

#[test]
fn row_22_ill_formed_utf8_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let bad: [&[u8]; 6] = [
            b"a/\xC0\xAF",         // overlong '/'
            b"a/\xED\xA0\x80",     // a surrogate (U+D800)
            b"a/\xFF",             // never valid
            b"a/\xE2\x82",         // cut short
            b"a/\x80",             // a lone continuation byte
            b"a/\xF4\x90\x80\x80", // past U+10FFFF
        ];
        for bytes in bad {
            closed_after_connect(&broker, &publish_topic(bytes));
            closed_after_connect(&broker, &subscribe_filter(bytes));
            closed_before_connect(&broker, &connect_with(|c| c.client_id = bytes.to_vec()));
        }
        closed_before_connect(
            &broker,
            &connect_with(|c| {
                c.will = Some(Will {
                    topic: b"w/\xED\xBF\xBF".to_vec(),
                    payload: b"x".to_vec(),
                    qos: 0,
                    retain: false,
                })
            }),
        );
    });
}

#[test]
fn row_23_nul_character_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        closed_after_connect(&broker, &publish_topic(b"a/\0/b"));
        closed_after_connect(&broker, &subscribe_filter(b"a/\0"));
        closed_before_connect(
            &broker,
            &connect_with(|c| c.client_id = b"nul\0id".to_vec()),
        );
        closed_before_connect(
            &broker,
            &connect_with(|c| *c = c.clone().will("w/\0", b"x", 0, false)),
        );
    });
}

/// [MQTT-1.5.3-3]: a leading U+FEFF is part of the name: kept, not stripped,
/// and not the same topic as the name without it.
#[test]
fn row_24_leading_bom_is_kept() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let plain = unique_topic("r24");
        let bom = format!("\u{FEFF}{plain}");
        let mut with_bom = Raw::connected_clean(broker.addr(), &unique_id("b"));
        with_bom.subscribe(1, &[(&bom, 0)], &[0]);
        let mut without = Raw::connected_clean(broker.addr(), &unique_id("p"));
        without.subscribe(1, &[(&plain, 0)], &[0]);

        let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("x"));
        publisher.send(&publish(&bom, b"with bom", 0, false, None));
        publisher.send(&publish(&plain, b"plain", 0, false, None));

        let got = with_bom.expect_publish();
        assert_eq!(
            got.topic,
            bom.as_bytes(),
            "topic bytes: {}",
            hex(&got.topic)
        );
        assert_eq!(got.payload, b"with bom");
        without.expect_message(&plain, b"plain", 0);
        publisher.ping();
        with_bom.expect_silence(Duration::from_millis(100));
    });
}

#[test]
fn row_25_empty_topic_name_or_filter_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        closed_after_connect(&broker, &publish_topic(b""));
        closed_after_connect(&broker, &publish_raw(b"", b"x", 1, false, false, Some(1)));
        closed_after_connect(&broker, &subscribe_filter(b""));
        closed_after_connect(&broker, &unsubscribe_filter(b""));
        closed_before_connect(
            &broker,
            &connect_with(|c| *c = c.clone().will("", b"x", 0, false)),
        );
    });
}

#[test]
fn row_26_wildcards_in_a_topic_name_close() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        for topic in [&b"a/+"[..], b"a/#", b"+", b"#", b"a/b+", b"#/a", b"a+b"] {
            closed_after_connect(&broker, &publish_topic(topic));
        }
        closed_before_connect(
            &broker,
            &connect_with(|c| *c = c.clone().will("w/#", b"x", 0, false)),
        );
    });
}

#[test]
fn row_27_misplaced_wildcards_in_a_filter_close() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        for filter in [
            &b"a/#/b"[..],
            b"a#",
            b"a+/b",
            b"+a",
            b"#/a",
            b"a/b#",
            b"##",
            b"++",
        ] {
            closed_after_connect(&broker, &subscribe_filter(filter));
        }
    });
}

#[test]
fn row_28_empty_subscribe_or_bad_requested_qos_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("r28");
        closed_after_connect(&broker, &packet(0x82, &[0x00, 0x01]));
        closed_after_connect(&broker, &subscribe(1, &[(&t, 3)]));
        closed_after_connect(&broker, &subscribe(1, &[(&t, 0), (&t, 0x81)]));
        closed_after_connect(&broker, &subscribe(1, &[(&t, 0x04)]));
        // The QoS byte itself missing.
        let mut body = vec![0x00, 0x01];
        body.extend(string(t.as_bytes()));
        closed_after_connect(&broker, &packet(0x82, &body));
    });
}

#[test]
fn row_29_empty_unsubscribe_closes() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        closed_after_connect(&broker, &packet(0xA2, &[0x00, 0x01]));
    });
}

#[test]
fn row_30_keepalive_expiry_closes_and_publishes_the_will() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let will = unique_topic("r30");
        let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
        watcher.subscribe(&will, QoS::AtLeastOnce);
        let c = Connect::new(&unique_id("r30"))
            .keepalive(1)
            .will(&will, b"silent", 0, false);
        let mut raw = Raw::connected(broker.addr(), &c, false);
        // mosquitto 2.0 checks keepalives coarsely (up to 7 s for this one).
        let limit = if broker.is_sol() { 3 } else { 9 };
        raw.expect_closed_within(Duration::from_secs(limit));
        watcher.expect(&will, b"silent");
    });
}

#[test]
fn row_31_no_connect_or_trickled_bytes_close_after_connect_timeout() {
    let Some(broker) = TestBroker::with(|c| c.connect_timeout = Duration::from_secs(1)) else {
        return;
    };
    with_bystander(&broker, || {
        let mut idle = Raw::tcp(broker.addr());
        let mut trickle = Raw::tcp(broker.addr());
        let bytes = connect(&unique_id("slow"));
        let mut closed = false;
        for byte in bytes.iter().take(bytes.len() - 1) {
            if trickle.try_send(&[*byte]).is_err()
                || trickle.closes_within(Duration::from_millis(150))
            {
                closed = true;
                break;
            }
        }
        assert!(closed, "a trickled CONNECT kept the socket open");
        idle.expect_closed_within(Duration::from_secs(2));
    });
}

#[test]
fn row_32_qos_2_duplicate_and_unknown_pubrel() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("r32");
        let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
        sub.subscribe(1, &[(&t, 1)], &[1]);
        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("p"));
        raw.send(&pubrel(500));
        raw.expect(&pubcomp(500));
        let mut copies = vec![false, true];
        if broker.checks_sol_only("mosquitto 2.0 closes on a third copy") {
            copies.push(true);
        }
        for dup in copies {
            raw.send(&publish_raw(t.as_bytes(), b"once", 2, false, dup, Some(9)));
            raw.expect(&pubrec(9));
        }
        raw.send(&pubrel(9));
        raw.expect(&pubcomp(9));
        raw.send(&pubrel(9));
        raw.expect(&pubcomp(9));
        raw.send(&publish(&t, b"end", 0, false, None));
        let got = sub.collect_until(&t, b"end");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].payload, b"once");
    });
}

/// BAD_INPUTS 35: bytes after DISCONNECT are ignored; the will is discarded.
#[test]
fn row_35_bytes_after_disconnect_are_ignored() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let will = unique_topic("r35");
        let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
        watcher.subscribe(&will, QoS::AtLeastOnce);
        let c = Connect::new(&unique_id("r35")).will(&will, b"must not appear", 1, false);
        let mut raw = Raw::connected(broker.addr(), &c, false);
        let mut bytes = DISCONNECT.to_vec();
        bytes.extend(PINGREQ);
        bytes.extend(publish(&will, b"after disconnect", 0, false, None));
        raw.send(&bytes);
        raw.expect_closed();
        let got = watcher.drain_until_marker(&will);
        assert!(got.is_empty(), "{got:?}");
    });
}

/// Backpressure: a subscriber that never reads while QoS 0 messages flood
/// its topic stalls neither the publisher nor anyone else. What the slow
/// subscriber gets is the broker's business (dropped QoS 0 messages, or a
/// close); the rest of the broker must not wait for it.
#[test]
fn subscriber_that_never_reads_does_not_stall_the_broker() {
    let broker = TestBroker::start();
    let t = unique_topic("flood");
    let mut slow = Raw::connected_clean(broker.addr(), &unique_id("slow"));
    slow.subscribe(1, &[(&t, 0)], &[0]);
    with_bystander(&broker, || {
        let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
        let batch = publish(&t, &[b'x'; 1024], 0, false, None).repeat(1000);
        let start = std::time::Instant::now();
        // 32 MB: far more than the socket buffers hold. Each send fails the
        // test if the broker stops reading the publisher for 3 s.
        for _ in 0..32 {
            publisher.send(&batch);
        }
        publisher.ping();
        let took = start.elapsed();
        assert!(took < Duration::from_secs(20), "the flood took {took:?}");

        // A new subscriber to the same topic is served at once.
        let mut fresh = Mqtt::connect(broker.addr(), &unique_id("f"));
        fresh.subscribe(&t, QoS::AtMostOnce);
        publisher.send(&publish(&t, b"after the flood", 0, false, None));
        fresh.expect(&t, b"after the flood");
    });
    drop(slow);
}

/// BAD_INPUTS 33: a client's PUBLISH to `$SOL/...` (the broker's own tree)
/// is acknowledged as usual and dropped ([MQTT-3.3.5-2]): no subscriber of
/// `$SOL/#` ever sees it, nothing is retained, and the client stays
/// connected. sol-only: `$SOL` means nothing to another broker.
#[test]
fn row_33_publish_to_broker_topics_is_refused() {
    let Some(broker) = TestBroker::sol_only("$SOL is sol's own tree") else {
        return;
    };
    with_bystander(&broker, || {
        let marker = unique_topic("r33");
        let mut watcher = Raw::connected_clean(broker.addr(), &unique_id("w"));
        watcher.subscribe(1, &[("$SOL/#", 0), (&marker, 0)], &[0, 0]);
        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("r33"));
        let topics = ["$SOL/broker/uptime", "$SOL/forged", "$SOL"];
        for (i, topic) in topics.iter().enumerate() {
            let id = u16::try_from(i + 1).unwrap();
            raw.send(&publish(topic, b"forged", 0, true, None));
            raw.send(&publish(topic, b"forged", 1, true, Some(id)));
            raw.expect(&puback(id));
            raw.send(&publish(topic, b"forged", 2, false, Some(id)));
            raw.expect(&pubrec(id));
            raw.send(&pubrel(id));
            raw.expect(&pubcomp(id));
        }
        raw.send(&publish(&marker, b"end", 0, false, None));
        let got = watcher.collect_until(&marker, b"end");
        assert!(
            got.iter().all(|p| p.payload != b"forged"),
            "a client's write to $SOL was delivered: {got:?}"
        );
        raw.ping();

        // Nothing was retained either: a new subscriber gets none of it.
        let mut late = Raw::connected_clean(broker.addr(), &unique_id("l"));
        late.subscribe(1, &[("$SOL/#", 0), (&marker, 0)], &[0, 0]);
        raw.send(&publish(&marker, b"end", 0, false, None));
        let got = late.collect_until(&marker, b"end");
        assert!(
            got.iter().all(|p| p.payload != b"forged"),
            "a client's write to $SOL was retained: {got:?}"
        );
    });
}

/// Lesson of the original C Sol (CVE-2025-63235, CVE-2025-63236): a
/// connection refused or closed for a protocol error leaves nothing behind.
/// A clean session ends with its connection, whatever the path: the same
/// client id then starts a new session (session present 0) and the old
/// subscription delivers nowhere. A persistent session survives the close,
/// as the standard requires, and still delivers.
#[test]
fn lesson_every_close_path_frees_the_session() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("free");
        let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
        let mut closes: Vec<(&str, Vec<u8>)> = vec![
            ("second CONNECT", connect(&unique_id("x"))),
            (
                "PUBLISH at QoS 3",
                publish_raw(t.as_bytes(), b"x", 3, false, false, Some(1)),
            ),
            ("server-only CONNACK", connack(false, 0)),
            ("reserved type 15", vec![0xF0, 0x00]),
        ];
        if broker.checks_sol_only("mosquitto 2.0 ignores SUBACK from clients") {
            closes.push(("server-only SUBACK", suback(1, &[0])));
        }
        for (why, bytes) in closes {
            println!("close path: {why}");
            // A clean session, closed for breaking the protocol ...
            let id = unique_id("free");
            let mut raw = Raw::connected_clean(broker.addr(), &id);
            raw.subscribe(1, &[(&t, 1)], &[1]);
            raw.send(&bytes);
            raw.expect_closed();
            // ... is gone: the id starts afresh, the subscription is gone.
            let mut again = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), false);
            publisher.send(&publish(&t, b"to nobody", 1, false, Some(2)));
            publisher.expect(&puback(2));
            again.ping();
            again.expect_silence(Duration::from_millis(50));
            // Leave no persistent session behind: a clean CONNECT ends it.
            again.send(&DISCONNECT);
            let _ = Raw::connected(broker.addr(), &Connect::new(&id), false);
        }

        // A CONNECT refused with a return code leaves no session either.
        let id = unique_id("refused");
        let mut raw = Raw::tcp(broker.addr());
        let mut c = Connect::new(&id).clean(false);
        c.level = 3;
        raw.send(&c.bytes());
        raw.expect(&connack(false, 1));
        raw.expect_closed();
        let mut raw = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), false);
        raw.send(&DISCONNECT);
        let _ = Raw::connected(broker.addr(), &Connect::new(&id), false);

        // A persistent session outlives a protocol-error close, as it must.
        let id = unique_id("kept");
        let mut raw = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), false);
        raw.subscribe(1, &[(&t, 0)], &[0]);
        raw.send(&[0xF0, 0x00]);
        raw.expect_closed();
        let mut again = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), true);
        publisher.send(&publish(&t, b"kept", 0, false, None));
        again.expect_message(&t, b"kept", 0);
        again.send(&DISCONNECT);
        let _ = Raw::connected(broker.addr(), &Connect::new(&id), false);
    });
}

/// A file in the temporary directory for one test, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(prefix: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", unique_id("")));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn config_path(&self) -> sol::config::ConfigPath {
        sol::config::ConfigPath::new(&self.0)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn row_12_bad_credentials_get_connack_4_close_and_the_rest_is_ignored() {
    // `openssl passwd -6 -salt saltsaltsalt secret`
    let passwd = TempFile::new(
        "sol-passwd",
        "alice:$6$saltsaltsalt$PMWE8DTlam1JU37Piyk43bHcMxTJq6sgu5DKB0/tGPjanN35jcY68QkpDfPFUGPWX5uCxIQkSPzMmqEiVNgts.\n",
    );
    let Some(broker) = TestBroker::with(|c| c.security.password_file = Some(passwd.config_path()))
    else {
        return;
    };
    with_bystander(&broker, || {
        let topic = unique_topic("r12");
        let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w12"));
        watcher.subscribe(&topic, QoS::AtMostOnce);
        for password in [Some(b"wrong".to_vec()), None] {
            let mut c = Connect::new(&unique_id("r12"));
            c.username = Some(b"alice".to_vec());
            c.password = password;
            let mut bytes = c.bytes();
            // Sent behind the CONNECT: must never be routed.
            bytes.extend(publish(&topic, b"smuggled", 0, false, None));
            let mut raw = Raw::tcp(broker.addr());
            raw.send(&bytes);
            raw.expect(&connack(false, 5));
            raw.expect_closed();
        }
        let mut c = Connect::new(&unique_id("r12ok"));
        c.username = Some(b"alice".to_vec());
        c.password = Some(b"secret".to_vec());
        let mut good = Raw::connected(broker.addr(), &c, false);
        good.send(&publish(&topic, b"allowed", 0, false, None));
        watcher.expect(&topic, b"allowed");
    });
}

#[test]
fn row_34_a_publish_denied_by_the_acl_is_acknowledged_and_dropped() {
    let acl = TempFile::new(
        "sol-acl",
        "topic readwrite #\ntopic deny secret/#\nuser reader\ntopic read secret/#\n",
    );
    let Some(broker) = TestBroker::with(|c| c.security.acl_file = Some(acl.config_path())) else {
        return;
    };
    with_bystander(&broker, || {
        let topic = format!("secret/{}", unique_id("r34"));
        let (mut reader, _) = Mqtt::connect_with(broker.addr(), &unique_id("reader"), |o| {
            o.set_credentials("reader", "");
        });
        assert_eq!(
            reader.subscribe(&topic, QoS::AtLeastOnce),
            vec![Some(QoS::AtLeastOnce)]
        );
        let mut anonymous = Raw::connected_clean(broker.addr(), &unique_id("anon"));
        anonymous.send(&publish(&topic, b"denied", 1, true, Some(7)));
        anonymous.expect(&puback(7));
        anonymous.ping();
        assert!(
            reader.recv_within(Duration::from_millis(300)).is_none(),
            "a denied publish was delivered"
        );
        // Nor was it retained: a new reader finds nothing.
        let (mut late, _) = Mqtt::connect_with(broker.addr(), &unique_id("late"), |o| {
            o.set_credentials("reader", "");
        });
        late.subscribe(&topic, QoS::AtLeastOnce);
        assert!(late.recv_within(Duration::from_millis(300)).is_none());
    });
}
