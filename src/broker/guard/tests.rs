//! Authentication and authorization in whole conversations with the core,
//! with password and ACL files written to a temporary directory.

use std::path::PathBuf;

use bytes::Bytes;

use super::super::test_support::{id, Harness};
use super::super::*;
use crate::config::{Config, ConfigPath, SecurityConfig};
use crate::protocol::{
    Connect, ConnectReturnCode, Protocol, Publish, QoS, Suback, SubackCode, Subscribe, TopicFilter,
    TopicName, Will,
};
use crate::security::SecurityFiles;

// `openssl passwd -6 -salt 'rounds=1000$fastsalt' secret`: the cheapest cost.
const SECRET: &str = "$6$rounds=1000$fastsalt$QUh6pcssLqL9TTIo8uuXvjOuE15BI8RaB407ulJHJSw7xoZdBHxJidPusc4FQzMxJMFEv99YlsyJ7QtdXDELg.";
// `openssl passwd -6 -salt 'rounds=1000$othersalt' changed`.
const CHANGED: &str = "$6$rounds=1000$othersalt$CHLkcB7DTZ8QR4asMPxgRlnL0dDfFylufBUIBz4dDHnIOAa3gPa5pNXRAFL/LucTjHhJrL2ANF4mBEYSL8w4u.";
// `openssl passwd -6 -salt somesalt secret`, for a second user.
const SECRET_DEFAULT_ROUNDS: &str = "$6$somesalt$JX0Uhce8rLRHbaqoSQDYsnTxsqcjCNNcrl79ieTwPGzEhxBEeJcsgDUWIOwc3sDvZN34ZJBWQep7.lcAuSesy/";

/// A temporary directory for one test's files, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(name: &str) -> Files {
        let dir =
            std::env::temp_dir().join(format!("sol-broker-auth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> ConfigPath {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        ConfigPath::new(path)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Harness {
    fn configured(tweak: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::default();
        tweak(&mut config);
        Harness::with(config)
    }

    /// Opens a connection (over TLS when `tls` is `Some`), sends `c`, and
    /// returns it with the CONNACK code it got.
    fn try_connect(&mut self, c: Connect, tls: Option<TlsInfo>) -> (ConnId, u8) {
        let conn = self.open();
        if tls.is_some() {
            let peer = PeerInfo {
                addr: "127.0.0.1:50000",
                transport: Transport::Tcp,
                tls,
            };
            self.broker.established(conn, peer);
        }
        self.send(conn, Packet::Connect(Box::new(c)));
        match self.take(conn).as_slice() {
            [Packet::Connack(connack)] => (conn, connack.code as u8),
            other => panic!("expected one CONNACK, got {other:?}"),
        }
    }

    /// Connects and asserts it was accepted.
    fn login(&mut self, c: Connect) -> ConnId {
        let (conn, code) = self.try_connect(c, None);
        assert_eq!(code, 0, "CONNACK code");
        conn
    }

    /// Connects and asserts it was refused with `code` and closed.
    fn refused(&mut self, c: Connect, tls: Option<TlsInfo>, code: u8) -> ConnId {
        let (conn, got) = self.try_connect(c, tls);
        assert_eq!(got, code, "CONNACK code");
        assert!(self.out.closed.contains(&conn), "refused but not closed");
        conn
    }

    fn subscribe(&mut self, conn: ConnId, filters: &[&str]) -> Vec<SubackCode> {
        self.send(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: filters
                    .iter()
                    .map(|f| (TopicFilter::new(*f).unwrap(), QoS::AtLeastOnce))
                    .collect(),
            }),
        );
        let mut sent = self.take(conn);
        match sent.first() {
            Some(Packet::Suback(Suback { codes, .. })) => {
                let codes = codes.clone();
                sent.remove(0);
                // Retained messages come after the SUBACK; keep them.
                if !sent.is_empty() {
                    self.out.sent.insert(conn, sent);
                }
                codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    fn publish(&mut self, conn: ConnId, topic: &str, payload: &str, retain: bool) {
        self.send(
            conn,
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain,
                topic: TopicName::new(topic).unwrap(),
                packet_id: Some(id(7)),
                payload: Bytes::copy_from_slice(payload.as_bytes()),
            }),
        );
        // A refused publish is acknowledged all the same ([MQTT-3.3.5-2]).
        let mut sent = self.take(conn);
        let ack = sent.iter().position(|p| *p == Packet::Puback(id(7)));
        assert!(ack.is_some(), "no PUBACK in {sent:?}");
        sent.retain(|p| *p != Packet::Puback(id(7)));
        if !sent.is_empty() {
            self.out.sent.insert(conn, sent);
        }
    }

    /// The topics of the PUBLISH packets sent to `conn`, acknowledging each.
    fn received(&mut self, conn: ConnId) -> Vec<String> {
        let mut topics = Vec::new();
        for packet in self.take(conn) {
            if let Packet::Publish(p) = packet {
                topics.push(p.topic.to_string());
                if let Some(pid) = p.packet_id {
                    self.send(conn, Packet::Puback(pid));
                }
            }
        }
        topics
    }

    fn reload(&mut self) {
        self.broker.reload(self.now, &mut self.out);
    }
}

fn client(client_id: &str) -> Connect {
    Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: 0,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    }
}

fn user(client_id: &str, username: &str, password: Option<&str>) -> Connect {
    Connect {
        username: Some(username.to_string()),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
        ..client(client_id)
    }
}

const GRANTED: SubackCode = SubackCode::Granted(QoS::AtLeastOnce);

/// A TLS client with certificate CN `cn`, of a listener that takes the CN
/// as the username when `identity` is set.
fn over_tls(cn: Option<&str>, identity: bool) -> Option<TlsInfo> {
    Some(TlsInfo {
        common_name: cn.map(str::to_string),
        use_identity_as_username: identity,
    })
}

#[test]
fn anonymous_clients_are_refused_with_0x05_when_not_allowed() {
    let mut h = Harness::configured(|c| c.security.allow_anonymous = false);
    let conn = h.refused(client("anon"), None, 5);
    // Nothing after the refusal is processed.
    h.send(conn, Packet::Pingreq);
    assert!(h.take(conn).is_empty());
    assert_eq!(h.broker.connection_count(), 0);
    assert_eq!(h.broker.session_count(), 0);
    // Without a password file a username is taken as given.
    h.login(user("named", "anyone", None));
}

#[test]
fn passwords_are_checked_against_the_password_file() {
    let files = Files::new("passwords");
    let passwd = files.write(
        "passwd",
        &format!("alice:{SECRET}\nbob:{SECRET_DEFAULT_ROUNDS}\n"),
    );
    let mut h = Harness::configured(|c| c.security.password_file = Some(passwd));
    h.login(user("c1", "alice", Some("secret")));
    h.login(user("c2", "bob", Some("secret")));
    h.refused(user("c3", "alice", Some("Secret")), None, 5);
    h.refused(user("c4", "carol", Some("secret")), None, 5);
    h.refused(user("c5", "alice", Some("")), None, 5);
    // A username without a password is a bad password, as in mosquitto:
    // 0x05, as for a wrong one.
    h.refused(user("c6", "alice", None), None, 5);
    // allow_anonymous is true by default: no username is fine.
    h.login(client("c7"));
    // The cache remembers alice's good password, and only that one.
    h.login(user("c8", "alice", Some("secret")));
    h.refused(user("c9", "alice", Some("secreT")), None, 5);
}

#[test]
fn a_refused_client_cannot_take_over_a_connected_id() {
    let files = Files::new("takeover");
    let passwd = files.write("passwd", &format!("alice:{SECRET}\n"));
    let mut h = Harness::configured(|c| c.security.password_file = Some(passwd));
    let first = h.login(user("device", "alice", Some("secret")));
    h.refused(user("device", "alice", Some("wrong")), None, 5);
    assert!(!h.out.closed.contains(&first), "the good client was kicked");
    h.send(first, Packet::Pingreq);
    assert_eq!(h.take(first), vec![Packet::Pingresp]);
}

#[test]
fn use_identity_as_username_takes_the_certificate_cn_on_tls_only() {
    let files = Files::new("identity");
    let passwd = files.write("passwd", &format!("alice:{SECRET}\n"));
    let acl = files.write("acl", "user cert-user\ntopic readwrite cert/#\n");
    let mut h = Harness::configured(|c| {
        c.security.allow_anonymous = false;
        c.security.password_file = Some(passwd);
        c.security.acl_file = Some(acl);
    });
    // The CN is the username; no password is needed, and any sent is ignored.
    let (tls, code) = h.try_connect(client("t1"), over_tls(Some("cert-user"), true));
    assert_eq!(code, 0);
    assert_eq!(
        h.subscribe(tls, &["cert/x", "other"]),
        vec![GRANTED, SubackCode::Failure]
    );
    let (_, code) = h.try_connect(
        user("t2", "alice", Some("wrong")),
        over_tls(Some("cert-user"), true),
    );
    assert_eq!(code, 0);
    // A TLS client without a certificate (or without a CN) has no identity.
    h.refused(client("t3"), over_tls(None, true), 4);
    h.refused(user("t4", "alice", Some("secret")), over_tls(None, true), 4);
    // Plain clients log in with their password as usual.
    let plain = h.login(user("p1", "alice", Some("secret")));
    assert_eq!(h.subscribe(plain, &["cert/x"]), vec![SubackCode::Failure]);
    h.refused(user("p2", "cert-user", None), None, 5);
    h.refused(client("p3"), None, 5);
}

#[test]
fn the_cn_is_not_used_without_use_identity_as_username() {
    let mut h = Harness::configured(|c| c.security.allow_anonymous = false);
    h.refused(client("t1"), over_tls(Some("alice"), false), 5);
    let (_, code) = h.try_connect(user("t2", "bob", None), over_tls(Some("alice"), false));
    assert_eq!(code, 0);
}

#[test]
fn each_connection_is_judged_by_its_own_listener_rule() {
    let mut h = Harness::configured(|c| c.security.allow_anonymous = false);
    // The same certificate on two listeners: one takes its CN as the
    // username, the other asks for credentials as a plain listener does.
    let (_, code) = h.try_connect(client("on-identity"), over_tls(Some("alice"), true));
    assert_eq!(code, 0);
    h.refused(client("on-plain-tls"), over_tls(Some("alice"), false), 5);
    h.refused(client("plain"), None, 5);
}

#[test]
fn refused_subscriptions_get_0x80_and_the_others_are_granted() {
    let files = Files::new("subscribe");
    let acl = files.write("acl", "topic read public/#\ntopic readwrite mine/+\n");
    let mut h = Harness::configured(|c| c.security.acl_file = Some(acl));
    let conn = h.login(client("c"));
    assert_eq!(
        h.subscribe(conn, &["public/#", "secret/#", "mine/x", "#", "$SOL/#"]),
        vec![
            GRANTED,
            SubackCode::Failure,
            GRANTED,
            SubackCode::Failure,
            SubackCode::Failure
        ]
    );
    assert_eq!(h.broker.subscription_count(), 2);
}

#[test]
fn refused_publishes_are_acknowledged_dropped_and_not_retained() {
    let files = Files::new("publish");
    let acl = files.write(
        "acl",
        "topic read #\ntopic write open/#\ntopic read $SOL/#\n",
    );
    let mut h = Harness::configured(|c| c.security.acl_file = Some(acl));
    let sub = h.login(client("sub"));
    assert_eq!(h.subscribe(sub, &["#", "$SOL/#"]), vec![GRANTED, GRANTED]);
    let publisher = h.login(client("pub"));
    h.publish(publisher, "closed/a", "x", true);
    h.publish(publisher, "$SOL/broker/uptime", "x", true);
    h.publish(publisher, "open/a", "x", false);
    assert_eq!(h.received(sub), vec!["open/a"]);
    assert_eq!(h.broker.retained_count(), 0);
}

#[test]
fn without_an_acl_only_writes_to_sol_topics_are_refused() {
    let mut h = Harness::configured(|_| {});
    let sub = h.login(client("sub"));
    assert_eq!(
        h.subscribe(sub, &["$SOL/#", "$SOLAR/#", "#"]),
        vec![GRANTED, GRANTED, GRANTED]
    );
    let publisher = h.login(client("pub"));
    h.publish(publisher, "$SOL/x", "x", true);
    h.publish(publisher, "$SOLAR/x", "x", false);
    h.publish(publisher, "a", "x", false);
    assert_eq!(h.received(sub), vec!["$SOLAR/x", "a"]);
    assert_eq!(h.broker.retained_count(), 0);
}

#[test]
fn deliveries_and_retained_messages_are_filtered_per_reader() {
    let files = Files::new("deliver");
    let acl = files.write(
        "acl",
        "topic readwrite #\ntopic deny secret/#\nuser vip\ntopic readwrite #\n",
    );
    let mut h = Harness::configured(|c| c.security.acl_file = Some(acl));
    let vip = h.login(user("vip", "vip", None));
    let anon = h.login(client("anon"));
    h.publish(vip, "secret/plans", "r", true);
    h.publish(vip, "news", "r", true);
    assert_eq!(h.broker.retained_count(), 2);
    // Retained messages on subscribe: only the readable one.
    assert_eq!(h.subscribe(anon, &["#"]), vec![GRANTED]);
    assert_eq!(h.received(anon), vec!["news"]);
    assert_eq!(h.subscribe(vip, &["#"]), vec![GRANTED]);
    let mut got = h.received(vip);
    got.sort();
    assert_eq!(got, vec!["news", "secret/plans"]);
    // Live deliveries: the `#` subscription overlaps the deny.
    h.publish(vip, "secret/more", "x", false);
    h.publish(vip, "weather", "x", false);
    assert_eq!(h.received(anon), vec!["weather"]);
    assert_eq!(h.received(vip), vec!["secret/more", "weather"]);
}

#[test]
fn patterns_use_the_client_id_and_the_username() {
    let files = Files::new("patterns");
    let acl = files.write(
        "acl",
        "pattern readwrite devices/%c/#\npattern read inbox/%u\n",
    );
    let mut h = Harness::configured(|c| c.security.acl_file = Some(acl));
    let d1 = h.login(user("d1", "ann", None));
    assert_eq!(
        h.subscribe(
            d1,
            &["devices/d1/#", "devices/d2/#", "inbox/ann", "inbox/bob"]
        ),
        vec![GRANTED, SubackCode::Failure, GRANTED, SubackCode::Failure]
    );
    // A client id holding a wildcard does not widen the pattern.
    let wild = h.login(client("+"));
    assert_eq!(
        h.subscribe(wild, &["devices/+/#"]),
        vec![SubackCode::Failure]
    );
}

#[test]
fn a_will_is_published_only_where_its_client_may_write() {
    let files = Files::new("will");
    let acl = files.write("acl", "topic read #\ntopic write wills/ok\n");
    let mut h = Harness::configured(|c| c.security.acl_file = Some(acl));
    let sub = h.login(client("sub"));
    assert_eq!(h.subscribe(sub, &["#"]), vec![GRANTED]);
    for (id, topic) in [("w1", "wills/ok"), ("w2", "wills/not")] {
        let mut c = client(id);
        c.will = Some(Will {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
        });
        let conn = h.login(c);
        h.broker
            .closed(conn, CloseReason::PeerClosed, h.now, &mut h.out);
    }
    assert_eq!(h.received(sub), vec!["wills/ok"]);
}

#[test]
fn a_will_to_sol_topics_is_never_published() {
    let mut h = Harness::configured(|_| {});
    let sub = h.login(client("sub"));
    h.subscribe(sub, &["$SOL/#"]);
    let mut c = client("w");
    c.will = Some(Will {
        topic: TopicName::new("$SOL/fake").unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: true,
    });
    let conn = h.login(c);
    h.broker
        .closed(conn, CloseReason::PeerClosed, h.now, &mut h.out);
    assert!(h.received(sub).is_empty());
    assert_eq!(h.broker.retained_count(), 0);
}

#[test]
fn reload_applies_new_files_and_removes_what_is_no_longer_allowed() {
    let files = Files::new("reload");
    let passwd = files.write("passwd", &format!("alice:{SECRET}\n"));
    let acl = files.write(
        "acl",
        "user alice\ntopic readwrite a/#\ntopic readwrite b/#\n",
    );
    let mut h = Harness::configured(|c| {
        c.security.password_file = Some(passwd.clone());
        c.security.acl_file = Some(acl.clone());
    });
    let alice = h.login(user("c", "alice", Some("secret")));
    assert_eq!(h.subscribe(alice, &["a/#", "b/x"]), vec![GRANTED, GRANTED]);
    // A persistent session that is offline loses its rights too.
    let offline = h.login(Connect {
        clean_session: false,
        ..user("off", "alice", Some("secret"))
    });
    assert_eq!(h.subscribe(offline, &["b/#"]), vec![GRANTED]);
    h.broker
        .closed(offline, CloseReason::PeerClosed, h.now, &mut h.out);
    // Waits in the offline session's queue.
    h.publish(alice, "b/queued", "x", false);
    assert!(h.received(alice).is_empty());
    let queued = |h: &Harness| {
        let key = h.broker.sessions.key_of("off").unwrap();
        h.broker.sessions.get(key).unwrap().session.queued_len()
    };
    assert_eq!(queued(&h), 1);

    // b/ is taken away, and alice's password changes.
    files.write("acl", "user alice\ntopic readwrite a/#\n");
    files.write("passwd", &format!("alice:{CHANGED}\nbob:{SECRET}\n"));
    h.reload();
    assert_eq!(h.broker.subscription_count(), 1);
    h.publish(alice, "b/x", "x", false);
    h.publish(alice, "a/y", "x", false);
    assert_eq!(h.received(alice), vec!["a/y"]);
    h.login(user("c2", "bob", Some("secret")));
    // The cache forgot alice's old password.
    h.refused(user("c3", "alice", Some("secret")), None, 5);
    h.login(user("c4", "alice", Some("changed")));

    // The offline session kept nothing on b/, message included.
    assert_eq!(queued(&h), 0);
    let back = h.open();
    h.send(
        back,
        Packet::Connect(Box::new(Connect {
            clean_session: false,
            ..user("off", "alice", Some("changed"))
        })),
    );
    assert_eq!(
        h.take(back),
        vec![Packet::Connack(Connack {
            session_present: true,
            code: ConnectReturnCode::Accepted
        })]
    );
}

#[test]
fn a_failed_reload_keeps_everything_as_it_was() {
    let files = Files::new("failed-reload");
    let passwd = files.write("passwd", &format!("alice:{SECRET}\n"));
    let acl = files.write("acl", "user alice\ntopic readwrite a/#\n");
    let mut h = Harness::configured(|c| {
        c.security.password_file = Some(passwd.clone());
        c.security.acl_file = Some(acl.clone());
    });
    let alice = h.login(user("c", "alice", Some("secret")));
    assert_eq!(h.subscribe(alice, &["a/#"]), vec![GRANTED]);

    // A broken ACL beside a good password file: neither is taken.
    files.write("acl", "user alice\ntopic sometimes a/#\n");
    files.write("passwd", "bob:plaintext\n");
    h.reload();
    assert_eq!(h.broker.subscription_count(), 1);
    h.login(user("c2", "alice", Some("secret")));
    // Missing files fail the same way, never into open access.
    std::fs::remove_file(&acl.path).unwrap();
    std::fs::remove_file(&passwd.path).unwrap();
    h.reload();
    h.login(user("c3", "alice", Some("secret")));
    h.refused(user("c4", "mallory", Some("secret")), None, 5);
    let anon = h.login(client("anon"));
    assert_eq!(h.subscribe(anon, &["a/#"]), vec![SubackCode::Failure]);
}

#[test]
fn a_resumed_session_keeps_only_what_its_new_user_may_have() {
    let files = Files::new("resume");
    let acl = files.write(
        "acl",
        "user ann\ntopic readwrite #\nuser bob\ntopic readwrite bob/#\n",
    );
    let mut h = Harness::configured(|c| c.security.acl_file = Some(acl));
    let persistent = |name: &str| Connect {
        clean_session: false,
        ..user("shared", name, None)
    };
    let ann = h.login(persistent("ann"));
    assert_eq!(h.subscribe(ann, &["#", "bob/+"]), vec![GRANTED, GRANTED]);
    h.broker
        .closed(ann, CloseReason::PeerClosed, h.now, &mut h.out);
    let (bob, code) = h.try_connect(persistent("bob"), None);
    assert_eq!(code, 0);
    assert_eq!(h.broker.subscription_count(), 1);
    let publisher = h.login(user("p", "ann", None));
    h.publish(publisher, "ann/x", "x", false);
    h.publish(publisher, "bob/x", "x", false);
    assert_eq!(h.received(bob), vec!["bob/x"]);
}

#[test]
fn a_broker_whose_files_vanished_refuses_rather_than_opens() {
    let files = Files::new("vanished");
    let acl = ConfigPath::new(files.0.join("missing-acl"));
    let passwd = ConfigPath::new(files.0.join("missing-passwd"));
    let mut h = Harness::configured(|c| {
        c.security.acl_file = Some(acl);
        c.security.password_file = Some(passwd);
    });
    h.refused(user("c", "alice", Some("secret")), None, 5);
    let anon = h.login(client("anon"));
    assert_eq!(h.subscribe(anon, &["#"]), vec![SubackCode::Failure]);
}

#[test]
fn without_an_acl_file_everything_but_writing_broker_topics_is_allowed() {
    let open = super::Guard::new(&SecurityConfig::default(), SecurityFiles::default());
    let t = TopicName::new("a/b").unwrap();
    assert!(open.may_read("c", None, &t));
    assert!(open.may_publish("c", None, &t));
    assert!(open.may_subscribe("c", None, &TopicFilter::new("#").unwrap()));
    for sol in ["$SOL/broker/uptime", "$SOL"] {
        let sol = TopicName::new(sol).unwrap();
        assert!(open.may_read("c", None, &sol));
        assert!(!open.may_publish("c", None, &sol));
    }
    // Only `$SOL` itself is reserved, not every name that starts so.
    assert!(open.may_publish("c", None, &TopicName::new("$SOLAR/x").unwrap()));

    let closed = super::Guard::new(&SecurityConfig::default(), SecurityFiles::deny_all());
    assert!(!closed.may_read("c", None, &t));
    assert!(!closed.may_publish("c", None, &t));
    assert!(!closed.may_subscribe("c", None, &TopicFilter::new("a").unwrap()));
}
