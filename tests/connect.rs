//! CONNECT and CONNACK: which connections are accepted, which are refused
//! with which code, and session takeover.

mod common;

use common::*;

#[test]
fn mqtt_311_is_accepted() {
    let broker = TestBroker::start();
    let mut raw = Raw::tcp(broker.addr());
    raw.send(&connect(&unique_id("c")));
    raw.expect(&[0x20, 0x02, 0x00, 0x00]);
    raw.ping();
}

#[test]
fn mqtt_31_is_accepted() {
    let broker = TestBroker::start();
    let mut raw = Raw::tcp(broker.addr());
    let mut c = Connect::new(&unique_id("c"));
    c.protocol_name = b"MQIsdp".to_vec();
    c.level = 3;
    raw.send(&c.bytes());
    raw.expect(&[0x20, 0x02, 0x00, 0x00]);
    raw.ping();
}

/// [MQTT-3.1.2-2]: CONNACK 0x01 (unacceptable protocol version), then close.
#[test]
fn unsupported_level_is_refused_with_code_1() {
    let broker = TestBroker::start();
    for level in [0u8, 1, 2, 6, 255] {
        let mut raw = Raw::tcp(broker.addr());
        let mut c = Connect::new(&unique_id("c"));
        c.level = level;
        raw.send(&c.bytes());
        raw.expect(&[0x20, 0x02, 0x00, 0x01]);
        raw.expect_closed();
    }
}

/// sol speaks 3.1 and 3.1.1 only; mosquitto also speaks MQTT 5.
#[test]
fn level_5_is_refused_with_code_1() {
    let Some(broker) = TestBroker::sol_only("the external broker speaks MQTT 5") else {
        return;
    };
    let mut raw = Raw::tcp(broker.addr());
    let mut c = Connect::new(&unique_id("c"));
    c.level = 5;
    raw.send(&c.bytes());
    raw.expect(&[0x20, 0x02, 0x00, 0x01]);
    raw.expect_closed();
}

/// A known protocol name with the other name's level. The standard lets the
/// server either close at once [MQTT-3.1.2-1] or answer 0x01 for the level
/// [MQTT-3.1.2-2] (mosquitto does the latter); both end in a close.
#[test]
fn mismatched_name_and_level_is_refused() {
    let broker = TestBroker::start();
    for (name, level) in [(&b"MQIsdp"[..], 4u8), (&b"MQTT"[..], 3)] {
        let mut raw = Raw::tcp(broker.addr());
        let mut c = Connect::new(&unique_id("c"));
        c.protocol_name = name.to_vec();
        c.level = level;
        raw.send(&c.bytes());
        raw.expect_closed_optionally_after(&[0x20, 0x02, 0x00, 0x01]);
    }
}

/// [MQTT-3.1.3-6]: an empty client id with a clean session gets a generated
/// one.
#[test]
fn empty_client_id_with_clean_session_is_accepted() {
    let broker = TestBroker::start();
    let mut raw = Raw::tcp(broker.addr());
    raw.send(&connect(""));
    raw.expect(&[0x20, 0x02, 0x00, 0x00]);
    let topic = unique_topic("e");
    raw.subscribe(1, &[(&topic, 0)], &[0]);
    raw.send(&publish(&topic, b"to myself", 0, false, None));
    raw.expect_message(&topic, b"to myself", 0);
}

/// Two clients with empty ids are two sessions, not a takeover.
#[test]
fn two_empty_client_ids_do_not_take_each_other_over() {
    let broker = TestBroker::start();
    let mut first = Raw::tcp(broker.addr());
    first.send(&connect(""));
    first.expect(&connack(false, 0));
    let mut second = Raw::tcp(broker.addr());
    second.send(&connect(""));
    second.expect(&connack(false, 0));
    first.ping();
    second.ping();
}

/// [MQTT-3.1.3-8]: CONNACK 0x02 (identifier rejected), then close.
#[test]
fn empty_client_id_with_persistent_session_is_refused_with_code_2() {
    let broker = TestBroker::start();
    let mut raw = Raw::tcp(broker.addr());
    raw.send(&Connect::new("").clean(false).bytes());
    raw.expect(&[0x20, 0x02, 0x00, 0x02]);
    raw.expect_closed();
}

/// [MQTT-3.1.3-5]: 1 to 23 characters of `[0-9a-zA-Z]` must be accepted.
#[test]
fn short_alphanumeric_client_ids_are_accepted() {
    let broker = TestBroker::start();
    let long = format!("{:a<23}", unique_id("L"));
    assert_eq!(long.len(), 23);
    for id in [unique_id("z"), long] {
        let mut raw = Raw::tcp(broker.addr());
        raw.send(&Connect::new(&id).clean(false).bytes());
        raw.expect(&connack(false, 0));
        raw.ping();
        // Leave no persistent session behind on a shared broker.
        raw.send(&DISCONNECT);
        let mut raw = Raw::tcp(broker.addr());
        raw.send(&Connect::new(&id).clean(true).bytes());
        raw.expect(&connack(false, 0));
    }
}

/// With no authentication configured, a username and password are accepted.
#[test]
fn username_and_password_are_accepted_without_authentication() {
    let broker = TestBroker::start();
    let mut raw = Raw::tcp(broker.addr());
    let mut c = Connect::new(&unique_id("u"));
    c.username = Some(b"alice".to_vec());
    c.password = Some(b"secret".to_vec());
    raw.send(&c.bytes());
    raw.expect(&connack(false, 0));
    raw.ping();
}

/// [MQTT-3.1.0-2]: a second CONNECT is a protocol violation: close.
#[test]
fn second_connect_closes_the_connection() {
    let broker = TestBroker::start();
    let id = unique_id("c");
    let mut raw = Raw::connected_clean(broker.addr(), &id);
    raw.send(&connect(&id));
    raw.expect_closed();
}

/// [MQTT-3.1.4-2]: a client id that is already connected disconnects the
/// existing connection, which (having sent no DISCONNECT) publishes its will.
#[test]
fn same_client_id_takes_over_and_the_old_will_is_published() {
    let broker = TestBroker::start();
    let id = unique_id("t");
    let will_topic = unique_topic("w");
    let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
    watcher.subscribe(&will_topic, QoS::AtLeastOnce);

    let mut old = Raw::connected(
        broker.addr(),
        &Connect::new(&id).will(&will_topic, b"old is gone", 1, false),
        false,
    );
    let mut new = Raw::connected_clean(broker.addr(), &id);
    old.expect_closed();
    let will = watcher.expect(&will_topic, b"old is gone");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    new.ping();
}

/// The takeover of a persistent session keeps it: the new connection sees
/// session present and the old subscription.
#[test]
fn takeover_of_a_persistent_session_keeps_it() {
    let broker = TestBroker::start();
    let id = unique_id("t");
    let topic = unique_topic("t");
    let mut old = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), false);
    old.subscribe(1, &[(&topic, 1)], &[1]);
    let mut new = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), true);
    old.expect_closed();
    new.send(&publish(&topic, b"still subscribed", 0, false, None));
    new.expect_message(&topic, b"still subscribed", 0);
    new.send(&DISCONNECT);
    Raw::connected_clean(broker.addr(), &id);
}

/// On DISCONNECT the server closes the connection [MQTT-3.14.4-1].
#[test]
fn disconnect_closes_the_connection() {
    let broker = TestBroker::start();
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("d"));
    raw.send(&DISCONNECT);
    raw.expect_closed();
}

/// The well-behaved client library connects, too.
#[test]
fn rumqttc_connects() {
    let broker = TestBroker::start();
    let (mqtt, connack) = Mqtt::connect_with(broker.addr(), &unique_id("r"), |_| {});
    assert!(!connack.session_present);
    mqtt.disconnect();
}

/// A client that sends its packets and shuts down its sending side still
/// gets the replies to them before the broker closes.
#[test]
fn a_half_closed_client_still_gets_its_replies() {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::time::Duration;
    let broker = TestBroker::start();
    let mut s = TcpStream::connect(broker.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut bytes = Connect::new(&unique_id("hc")).bytes();
    bytes.extend(subscribe(1, &[("a/b", 0)]));
    s.write_all(&bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let mut expected = connack(false, 0);
    expected.extend(suback(1, &[0]));
    assert_eq!(hex(&got), hex(&expected));
}
