//! Authorization end to end: an `acl_file` in mosquitto's syntax decides
//! SUBSCRIBE (refused filters get 0x80), PUBLISH (refused ones are
//! acknowledged and dropped) and each delivery, retained messages included;
//! a reload applies a new file or, when it is broken, keeps the old one.

mod common;

use std::path::PathBuf;

use common::*;
use sol::config::ConfigPath;

/// An ACL file for one test, removed on drop.
struct AclFile(PathBuf);

impl AclFile {
    fn new(text: &str) -> AclFile {
        let path = std::env::temp_dir().join(format!("sol-acl-{}", unique_id("")));
        std::fs::write(&path, text).unwrap();
        AclFile(path)
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for AclFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn broker(acl: &AclFile) -> Option<TestBroker> {
    TestBroker::with(|config| config.security.acl_file = Some(ConfigPath::new(&acl.0)))
}

/// A rumqttc client logged in as `username` (no password file: the name is
/// taken as given).
fn as_user(broker: &TestBroker, client_id: &str, username: &str) -> Mqtt {
    Mqtt::connect_with(broker.addr(), client_id, |o| {
        o.set_credentials(username, "");
    })
    .0
}

#[test]
fn refused_filters_get_0x80_and_the_others_are_granted() {
    let acl = AclFile::new("topic read public/#\ntopic readwrite shared/+\n");
    let Some(broker) = broker(&acl) else {
        return;
    };
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("sub"));
    raw.send(&subscribe(
        7,
        &[
            ("public/#", 1),
            ("private/#", 2),
            ("shared/x", 0),
            ("#", 1),
            ("shared/#", 1),
            ("$SOL/#", 0),
        ],
    ));
    raw.expect(&suback(7, &[1, 0x80, 0, 0x80, 0x80, 0x80]));
    // The connection goes on.
    raw.send(&PINGREQ);
    raw.expect(&PINGRESP);
}

#[test]
fn refused_publishes_are_acknowledged_dropped_and_never_retained() {
    let topic = unique_topic("p");
    let acl = AclFile::new(&format!(
        "topic read {topic}/#\ntopic write {topic}/open\nuser writer\ntopic readwrite {topic}/#\n"
    ));
    let Some(broker) = broker(&acl) else {
        return;
    };
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("sub"));
    assert_eq!(
        sub.subscribe(&format!("{topic}/#"), QoS::AtLeastOnce),
        vec![Some(QoS::AtLeastOnce)]
    );
    let mut anon = Raw::connected_clean(broker.addr(), &unique_id("anon"));
    // QoS 1 and 2 get their acknowledgements as if all were well.
    anon.send(&publish(&format!("{topic}/closed"), b"1", 1, true, Some(1)));
    anon.expect(&puback(1));
    anon.send(&publish(&format!("{topic}/closed"), b"2", 2, true, Some(2)));
    anon.expect(&pubrec(2));
    anon.send(&pubrel(2));
    anon.expect(&pubcomp(2));
    anon.send(&publish(&format!("{topic}/closed"), b"0", 0, false, None));
    anon.send(&publish(
        &format!("{topic}/open"),
        b"allowed",
        1,
        false,
        Some(3),
    ));
    anon.expect(&puback(3));
    // The marker comes from a client allowed to write it.
    let writer = as_user(&broker, &unique_id("w"), "writer");
    let got = sub.drain_until_marker_from(&writer, &format!("{topic}/marker"));
    let payloads: Vec<&[u8]> = got.iter().map(|p| p.payload.as_ref()).collect();
    assert_eq!(payloads, vec![&b"allowed"[..]]);
    // Nothing was retained either.
    let mut late = Mqtt::connect(broker.addr(), &unique_id("late"));
    late.subscribe(&format!("{topic}/#"), QoS::AtLeastOnce);
    assert!(late
        .drain_until_marker_from(&writer, &format!("{topic}/marker"))
        .is_empty());
}

#[test]
fn each_subscriber_receives_only_what_it_may_read() {
    let topic = unique_topic("d");
    let acl = AclFile::new(&format!(
        "topic readwrite {topic}/#\ntopic deny {topic}/secret/#\n\
         user boss\ntopic readwrite {topic}/#\n"
    ));
    let Some(broker) = broker(&acl) else {
        return;
    };
    let mut boss = as_user(&broker, &unique_id("boss"), "boss");
    boss.subscribe(&format!("{topic}/#"), QoS::AtLeastOnce);
    // Retained before anyone else subscribes.
    boss.publish_done(&format!("{topic}/secret/plan"), QoS::AtLeastOnce, true, "r");
    boss.publish_done(&format!("{topic}/news"), QoS::AtLeastOnce, true, "r");
    boss.recv();
    boss.recv();
    // The anonymous client's `#`-style filter overlaps the deny: allowed,
    // and filtered message by message, retained ones too.
    let mut anon = Mqtt::connect(broker.addr(), &unique_id("anon"));
    assert_eq!(
        anon.subscribe(&format!("{topic}/#"), QoS::AtLeastOnce),
        vec![Some(QoS::AtLeastOnce)]
    );
    let retained = anon.recv();
    assert_eq!(retained.topic, format!("{topic}/news"));
    boss.publish_done(
        &format!("{topic}/secret/more"),
        QoS::AtLeastOnce,
        false,
        "x",
    );
    boss.publish_done(&format!("{topic}/weather"), QoS::AtLeastOnce, false, "x");
    let got = anon.drain_until_marker(&format!("{topic}/marker"));
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, vec![format!("{topic}/weather")]);
    let got = boss.drain_until_marker(&format!("{topic}/marker"));
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        topics,
        vec![
            format!("{topic}/secret/more"),
            format!("{topic}/weather"),
            format!("{topic}/marker")
        ]
    );
}

#[test]
fn patterns_give_each_client_its_own_space() {
    let acl = AclFile::new(
        "pattern readwrite devices/%c/#\npattern read users/%u/inbox\npattern write users/+/inbox\n",
    );
    let Some(broker) = broker(&acl) else {
        return;
    };
    let id = unique_id("dev");
    let mut device = as_user(&broker, &id, "ann");
    let own = format!("devices/{id}/#");
    assert_eq!(
        device.subscribe(&own, QoS::AtLeastOnce),
        vec![Some(QoS::AtLeastOnce)]
    );
    assert_eq!(
        device.subscribe("devices/other/#", QoS::AtLeastOnce),
        vec![None]
    );
    assert_eq!(
        device.subscribe("users/ann/inbox", QoS::AtLeastOnce),
        vec![Some(QoS::AtLeastOnce)]
    );
    assert_eq!(
        device.subscribe("users/bob/inbox", QoS::AtLeastOnce),
        vec![None]
    );
    // Anyone may write to ann's inbox; only ann reads it.
    let sender = as_user(&broker, &unique_id("s"), "bob");
    sender.publish("users/ann/inbox", QoS::AtLeastOnce, false, "hi ann");
    device.expect("users/ann/inbox", b"hi ann");
    // A client id holding a wildcard gets nothing from `%c`.
    let mut raw = Raw::connected_clean(broker.addr(), "dev+");
    raw.send(&subscribe(
        1,
        &[("devices/+/#", 1), ("devices/#", 1), ("devices/x", 1)],
    ));
    raw.expect(&suback(1, &[0x80, 0x80, 0x80]));
}

#[test]
fn an_empty_acl_file_denies_everything() {
    let acl = AclFile::new("# nothing here yet\n");
    let Some(broker) = broker(&acl) else {
        return;
    };
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("e"));
    raw.send(&subscribe(1, &[("#", 0), ("a", 1)]));
    raw.expect(&suback(1, &[0x80, 0x80]));
    raw.send(&publish("a", b"x", 1, false, Some(2)));
    raw.expect(&puback(2));
}

#[test]
fn reload_drops_subscriptions_whose_rights_shrank_and_keeps_all_on_a_broken_file() {
    let topic = unique_topic("r");
    let acl = AclFile::new(&format!(
        "topic readwrite {topic}/a/#\ntopic readwrite {topic}/b/#\n"
    ));
    let Some(broker) = broker(&acl) else {
        return;
    };
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("sub"));
    for part in ["a", "b"] {
        assert_eq!(
            sub.subscribe(&format!("{topic}/{part}/#"), QoS::AtLeastOnce),
            vec![Some(QoS::AtLeastOnce)]
        );
    }
    let publisher = Mqtt::connect(broker.addr(), &unique_id("pub"));

    // A broken file: the old rules stay, subscriptions and all.
    acl.rewrite(&format!("topic sometimes {topic}/a/#\n"));
    broker.reload();
    publisher.publish(&format!("{topic}/b/1"), QoS::AtLeastOnce, false, "kept");
    sub.expect(&format!("{topic}/b/1"), b"kept");

    // b/ is taken away: the subscription goes, though sub stays connected.
    acl.rewrite(&format!(
        "topic readwrite {topic}/a/#\ntopic write {topic}/b/#\n"
    ));
    broker.reload();
    publisher.publish(&format!("{topic}/b/2"), QoS::AtLeastOnce, false, "gone");
    let got = sub.drain_until_marker_from(&publisher, &format!("{topic}/a/marker"));
    assert!(got.is_empty(), "{got:?}");
    // Subscribing again is refused under the new rules.
    assert_eq!(
        sub.subscribe(&format!("{topic}/b/#"), QoS::AtLeastOnce),
        vec![None]
    );

    // Removing the file fails the reload too; it never opens access.
    std::fs::remove_file(&acl.0).unwrap();
    broker.reload();
    assert_eq!(
        sub.subscribe(&format!("{topic}/b/#"), QoS::AtLeastOnce),
        vec![None]
    );
    assert_eq!(sub.subscribe("#", QoS::AtLeastOnce), vec![None]);
}
