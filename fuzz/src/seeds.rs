//! The seed corpus: valid inputs for each target, built with sol's own
//! encoder so that every packet in them is one sol accepts.
//!
//! The files under `fuzz/corpus-seeds/<target>/` are written from here by
//! `SOL_WRITE_SEEDS=1 cargo test --test fuzz_corpus`, and the same test
//! fails when they are out of date. A fuzzer starts from these and mutates;
//! starting from valid packets gets it past the first checks at once.

use bytes::{Bytes, BytesMut};

use sol::protocol::{
    encode, Connack, Connect, ConnectReturnCode, Packet, PacketId, Protocol, Publish, QoS, Suback,
    SubackCode, Subscribe, TopicFilter, TopicName, Unsubscribe, Will,
};

use super::op;

/// Every target's name.
pub const TARGETS: [&str; 5] = ["decode", "session", "config", "passwd", "acl"];

/// The seeds of `target`: (file name, contents).
pub fn seeds(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        "decode" => decode(),
        "session" => session(),
        "config" => config(),
        "passwd" => passwd(),
        "acl" => acl(),
        _ => Vec::new(),
    }
}

// ----- packets

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("a nonzero packet id")
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).expect("a valid topic name")
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).expect("a valid topic filter")
}

fn connect(client_id: &str, clean: bool, keep_alive: u16) -> Connect {
    Connect {
        protocol: Protocol::V311,
        clean_session: clean,
        keep_alive,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    }
}

fn full_connect() -> Packet {
    let mut c = connect("seed", true, 60);
    c.will = Some(Will {
        topic: topic("will/seed"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
    });
    c.username = Some("user".to_string());
    c.password = Some(Bytes::from_static(b"secret"));
    Packet::Connect(Box::new(c))
}

fn publish(t: &str, qos: QoS, pid: Option<u16>, retain: bool, dup: bool, payload: &str) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic: topic(t),
        packet_id: pid.map(id),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    })
}

fn subscribe(pid: u16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id(pid),
        filters: filters.iter().map(|(f, q)| (filter(f), *q)).collect(),
    })
}

fn unsubscribe(pid: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: id(pid),
        filters: filters.iter().map(|f| filter(f)).collect(),
    })
}

fn wire(packets: &[Packet]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for packet in packets {
        encode(packet, &mut out);
    }
    out.to_vec()
}

// ----- decode: [mode, chunk seed, stream...]

/// Mode byte: bit 0 the client side, bits 1-2 the size limit index
/// (0: 64 bytes, 1: 1 KB, 2: 100 KB, 3: 2 MB).
fn decode_input(mode: u8, seed: u8, packets: &[Packet]) -> Vec<u8> {
    let mut input = vec![mode, seed];
    input.extend(wire(packets));
    input
}

fn client_session() -> Vec<Packet> {
    vec![
        full_connect(),
        subscribe(
            1,
            &[
                ("a/b", QoS::AtMostOnce),
                ("a/+/c", QoS::AtLeastOnce),
                ("#", QoS::ExactlyOnce),
            ],
        ),
        publish("a/b", QoS::AtMostOnce, None, false, false, "zero"),
        publish("a/b", QoS::AtLeastOnce, Some(2), false, false, "one"),
        publish("a/x/c", QoS::ExactlyOnce, Some(3), true, true, "two"),
        Packet::Puback(id(4)),
        Packet::Pubrec(id(5)),
        Packet::Pubrel(id(3)),
        Packet::Pubcomp(id(5)),
        unsubscribe(6, &["a/b", "#"]),
        Packet::Pingreq,
        Packet::Disconnect,
    ]
}

fn server_session() -> Vec<Packet> {
    vec![
        Packet::Connack(Connack {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }),
        Packet::Suback(Suback {
            packet_id: id(1),
            codes: vec![
                SubackCode::Granted(QoS::AtMostOnce),
                SubackCode::Granted(QoS::AtLeastOnce),
                SubackCode::Granted(QoS::ExactlyOnce),
                SubackCode::Failure,
            ],
        }),
        Packet::Unsuback(id(6)),
        publish("a/b", QoS::AtMostOnce, None, true, false, "zero"),
        publish("a/b", QoS::AtLeastOnce, Some(7), false, true, "one"),
        publish(
            "$SOL/broker/uptime",
            QoS::ExactlyOnce,
            Some(8),
            false,
            false,
            "2",
        ),
        Packet::Puback(id(2)),
        Packet::Pubrec(id(3)),
        Packet::Pubrel(id(8)),
        Packet::Pubcomp(id(3)),
        Packet::Pingresp,
    ]
}

fn decode() -> Vec<(&'static str, Vec<u8>)> {
    let mut v31 = connect("old", false, 0);
    v31.protocol = Protocol::V31;
    let big = publish("big", QoS::AtMostOnce, None, false, false, &"x".repeat(300));
    vec![
        ("client-session", decode_input(0x04, 7, &client_session())),
        (
            "client-session-2mb",
            decode_input(0x06, 200, &client_session()),
        ),
        (
            "client-v31",
            decode_input(0x04, 1, &[Packet::Connect(Box::new(v31)), Packet::Pingreq]),
        ),
        (
            "client-too-large",
            decode_input(0x00, 3, &[full_connect(), big.clone()]),
        ),
        ("server-session", decode_input(0x05, 9, &server_session())),
        ("server-too-large", decode_input(0x03, 5, &[big])),
    ]
}

// ----- session: operations on one broker (see crate::session)

/// Builds an operation list.
#[derive(Default)]
struct Script(Vec<u8>);

impl Script {
    fn open(mut self) -> Script {
        self.0.push(op::OPEN);
        self
    }

    fn feed(mut self, k: u8, packets: &[Packet]) -> Script {
        let bytes = wire(packets);
        let len = u16::try_from(bytes.len()).expect("a seed feed under 64 KB");
        self.0.push(op::FEED);
        self.0.push(k);
        self.0.extend(len.to_be_bytes());
        self.0.extend(bytes);
        self
    }

    fn feed_raw(mut self, k: u8, bytes: &[u8]) -> Script {
        let len = u16::try_from(bytes.len()).expect("a seed feed under 64 KB");
        self.0.push(op::FEED);
        self.0.push(k);
        self.0.extend(len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    fn op(mut self, op: u8, arg: u8) -> Script {
        self.0.push(op);
        self.0.push(arg);
        self
    }

    fn output(mut self, k: u8, n: u8) -> Script {
        self.0.extend([op::OUTPUT, k, n]);
        self
    }
}

fn connect_packet(client_id: &str, clean: bool, keep_alive: u16) -> Packet {
    Packet::Connect(Box::new(connect(client_id, clean, keep_alive)))
}

fn session() -> Vec<(&'static str, Vec<u8>)> {
    let mut with_will = connect("pub", true, 1);
    with_will.will = Some(Will {
        topic: topic("a/will"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::ExactlyOnce,
        retain: true,
    });
    let pubsub = Script::default()
        .open()
        .open()
        .feed(0, &[Packet::Connect(Box::new(with_will))])
        .feed(1, &[connect_packet("sub", true, 0)])
        .feed(
            1,
            &[subscribe(
                1,
                &[("#", QoS::ExactlyOnce), ("a/+", QoS::AtLeastOnce)],
            )],
        )
        .feed(
            0,
            &[
                publish("a/b", QoS::AtMostOnce, None, false, false, "zero"),
                publish("a/b", QoS::AtLeastOnce, Some(1), true, false, "one"),
                publish("a/b", QoS::ExactlyOnce, Some(2), false, false, "two"),
                publish("a/b", QoS::ExactlyOnce, Some(2), false, true, "two"),
            ],
        )
        .feed(
            1,
            &[
                Packet::Puback(id(1)),
                Packet::Pubrec(id(2)),
                Packet::Pubcomp(id(2)),
                Packet::Pingreq,
            ],
        )
        .feed(0, &[Packet::Pubrel(id(2))])
        .output(1, 80)
        .feed(
            0,
            &[publish("a/c", QoS::AtMostOnce, None, false, false, "stuck")],
        )
        .op(op::ADVANCE, 20)
        .feed(1, &[unsubscribe(2, &["#"]), Packet::Disconnect]);

    let takeover = Script::default()
        .open()
        .feed(0, &[connect_packet("same", false, 30)])
        .feed(0, &[subscribe(1, &[("t/#", QoS::AtLeastOnce)])])
        .open()
        .feed(1, &[connect_packet("same", false, 30)])
        .feed(0, &[Packet::Pingreq])
        .open()
        .feed(
            1,
            &[publish(
                "t/1",
                QoS::AtLeastOnce,
                Some(9),
                false,
                false,
                "self",
            )],
        )
        .op(op::RESET, 1)
        .open()
        .feed(1, &[connect_packet("same", false, 30)])
        .feed(1, &[Packet::Puback(id(1))])
        .op(op::PEER_CLOSED, 0);

    let queue = Script::default()
        .open()
        .feed(0, &[connect_packet("slow", false, 0)])
        .feed(0, &[subscribe(1, &[("q", QoS::ExactlyOnce)])])
        .op(op::PEER_CLOSED, 0)
        .open()
        .feed(0, &[connect_packet("fast", true, 0)])
        .feed(
            0,
            &(1..=8)
                .map(|n| publish("q", QoS::AtLeastOnce, Some(n), false, false, "m"))
                .collect::<Vec<_>>(),
        )
        .open()
        .feed(1, &[connect_packet("slow", false, 0)])
        .feed(1, &[Packet::Pubrec(id(1)), Packet::Pubcomp(id(1))]);

    let refused = Script::default()
        .open()
        .op(op::ADVANCE, 30)
        .open()
        .feed_raw(0, &[0x10, 0x0A, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 0])
        .open()
        .feed(0, &[Packet::Pingreq])
        .open()
        .feed(0, &[connect_packet("", false, 0)])
        .open()
        .feed(
            0,
            &[
                connect_packet("twice", true, 0),
                connect_packet("twice", true, 0),
            ],
        );

    vec![
        ("pubsub", pubsub.0),
        ("takeover", takeover.0),
        ("queue", queue.0),
        ("refused", refused.0),
    ]
}

// ----- config, passwd, acl

fn config() -> Vec<(&'static str, Vec<u8>)> {
    let full = "\
# every key
ip_address 127.0.0.1
ip_port 1883
unix_socket /tmp/sol.sock
log_level debug
log_path /var/log/sol.log
tcp_backlog 128
max_request_size 2MB
connect_timeout 10s
max_inflight_messages 20
max_queued_messages 1000
";
    let bad =
        "ip_port 70000\nmax_request_size 1\nconnect_timeout 25h\nnope 1\nip_port\nip_port 1\n";
    let blocks = "\
max_memory 1GB
listener 8884 ::
certfile c.pem
keyfile k.pem
max_connections 10
protocol mqtt
listener 0 ./sol.sock
connection far
address broker.example:1883 [::1]:1884
topic sensors/# both 1 here/ there/
topic cmd/+ in
restart_timeout 5 30
tree true
tree_priority 7
";
    let args = "-c /etc/sol/sol.conf -v -a ::1 -p 1884 --test-config";
    vec![
        ("full", full.as_bytes().to_vec()),
        ("blocks", blocks.as_bytes().to_vec()),
        ("errors", bad.as_bytes().to_vec()),
        ("args", args.as_bytes().to_vec()),
    ]
}

fn passwd() -> Vec<(&'static str, Vec<u8>)> {
    let text = "\
# users
alice:$6$somesalt$JX0Uhce8rLRHbaqoSQDYsnTxsqcjCNNcrl79ieTwPGzEhxBEeJcsgDUWIOwc3sDvZN34ZJBWQep7.lcAuSesy/

bob:$6$rounds=10000$salt$JX0Uhce8rLRHbaqoSQDYsnTxsqcjCNNcrl79ieTwPGzEhxBEeJcsgDUWIOwc3sDvZN34ZJBWQep7.lcAuSesy/
";
    vec![
        ("users", text.as_bytes().to_vec()),
        ("plain", b"carol:plain text\n:nouser\nbob\n".to_vec()),
    ]
}

fn acl() -> Vec<(&'static str, Vec<u8>)> {
    let file = "\
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#

user bob
topic bob/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
";
    let with = |who: &str| {
        let mut input = file.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(who.as_bytes());
        input
    };
    vec![
        ("anonymous", with("dev1\0\0public/news")),
        ("alice", with("c1\0alice\0alice/secret/x")),
        ("pattern", with("dev1\0bob\0devices/dev1/+")),
        ("broker-topic", with("c\0alice\0$SOL/broker/uptime")),
    ]
}
