//! The Unix domain socket listener speaks the same MQTT as TCP, and both
//! kinds of client share one broker. (rumqttc has no Unix transport, so the
//! Unix side is the raw client.)

mod common;

use std::path::PathBuf;

use common::*;

/// The broker and its socket path; `None` (with a note) for an external
/// broker without `SOL_TEST_UNIX`.
fn broker_with_unix() -> Option<(TestBroker, PathBuf)> {
    let broker = TestBroker::start();
    match broker.unix_path() {
        Some(path) => {
            let path = path.to_path_buf();
            Some((broker, path))
        }
        None => {
            println!("skipped: the external broker has no SOL_TEST_UNIX socket");
            None
        }
    }
}

#[test]
fn connect_over_the_unix_socket() {
    let Some((_broker, path)) = broker_with_unix() else {
        return;
    };
    let mut raw = Raw::unix(&path);
    raw.send(&connect(&unique_id("u")));
    raw.expect(&[0x20, 0x02, 0x00, 0x00]);
    raw.ping();
    raw.send(&DISCONNECT);
    raw.expect_closed();
}

#[test]
fn publish_and_subscribe_over_the_unix_socket() {
    let Some((_broker, path)) = broker_with_unix() else {
        return;
    };
    let t = unique_topic("u");
    let mut sub = Raw::connected_unix(&path, &Connect::new(&unique_id("s")), false);
    sub.subscribe(1, &[(&t, 2)], &[2]);
    let mut publisher = Raw::connected_unix(&path, &Connect::new(&unique_id("p")), false);

    publisher.send(&publish(&t, b"zero", 0, false, None));
    sub.expect_message(&t, b"zero", 0);

    publisher.send(&publish(&t, b"one", 1, false, Some(1)));
    publisher.expect(&puback(1));
    let got = sub.expect_message(&t, b"one", 1);
    sub.send(&puback(got.id.unwrap()));

    publisher.send(&publish(&t, b"two", 2, false, Some(2)));
    publisher.expect(&pubrec(2));
    publisher.send(&pubrel(2));
    publisher.expect(&pubcomp(2));
    let got = sub.expect_message(&t, b"two", 2);
    let id = got.id.unwrap();
    sub.send(&pubrec(id));
    sub.expect(&pubrel(id));
    sub.send(&pubcomp(id));
    sub.ping();
}

/// Messages cross between the two listeners in both directions.
#[test]
fn unix_and_tcp_clients_share_the_broker() {
    let Some((broker, path)) = broker_with_unix() else {
        return;
    };
    let t = unique_topic("x");
    let mut unix = Raw::connected_unix(&path, &Connect::new(&unique_id("u")), false);
    unix.subscribe(1, &[(&format!("{t}/to-unix"), 1)], &[1]);
    let mut tcp = Mqtt::connect(broker.addr(), &unique_id("t"));
    tcp.subscribe(&format!("{t}/to-tcp"), QoS::AtLeastOnce);

    tcp.publish(&format!("{t}/to-unix"), QoS::AtLeastOnce, false, "from tcp");
    let got = unix.expect_message(&format!("{t}/to-unix"), b"from tcp", 1);
    unix.send(&puback(got.id.unwrap()));

    unix.send(&publish(
        &format!("{t}/to-tcp"),
        b"from unix",
        1,
        false,
        Some(5),
    ));
    unix.expect(&puback(5));
    let got = tcp.expect(&format!("{t}/to-tcp"), b"from unix");
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

/// Retained messages and wills work the same over the Unix socket.
#[test]
fn retained_and_will_over_the_unix_socket() {
    let Some((broker, path)) = broker_with_unix() else {
        return;
    };
    let t = unique_topic("r");
    let will = format!("{t}/will");
    let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
    watcher.subscribe(&will, QoS::AtLeastOnce);

    let c = Connect::new(&unique_id("d")).will(&will, b"unix gone", 1, false);
    let mut dying = Raw::connected_unix(&path, &c, false);
    dying.send(&publish(&t, b"kept", 1, true, Some(1)));
    dying.expect(&puback(1));
    dying.drop_connection();
    watcher.expect(&will, b"unix gone");

    let mut late = Raw::connected_unix(&path, &Connect::new(&unique_id("l")), false);
    late.subscribe(1, &[(&t, 1)], &[1]);
    let got = late.expect_message(&t, b"kept", 1);
    assert!(got.retain);
    late.send(&puback(got.id.unwrap()));
    late.ping();
    watcher.publish_done(&t, QoS::AtLeastOnce, true, Vec::new());
}

/// Bad input over the Unix socket is handled like over TCP.
#[test]
fn bad_input_over_the_unix_socket_closes() {
    let Some((broker, path)) = broker_with_unix() else {
        return;
    };
    with_bystander(&broker, || {
        let mut raw = Raw::unix(&path);
        raw.send(&PINGREQ);
        raw.expect_closed();
        let mut raw = Raw::connected_unix(&path, &Connect::new(&unique_id("b")), false);
        raw.send(&publish("a/+", b"x", 0, false, None).to_vec());
        raw.expect_closed();
    });
}

/// A session begun over TCP resumes over the Unix socket: the listener does
/// not matter to the session.
#[test]
fn session_moves_between_listeners() {
    let Some((broker, path)) = broker_with_unix() else {
        return;
    };
    let id = unique_id("m");
    let t = unique_topic("m");
    let mut tcp = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), false);
    tcp.subscribe(1, &[(&t, 1)], &[1]);
    tcp.send(&DISCONNECT);
    tcp.expect_closed();

    let mut unix = Raw::connected_unix(&path, &Connect::new(&id).clean(false), true);
    unix.send(&publish(&t, b"same session", 0, false, None));
    unix.expect_message(&t, b"same session", 0);
    unix.send(&DISCONNECT);
    unix.expect_closed();
    Raw::connected_unix(&path, &Connect::new(&id), false);
}
