//! How long the turns last in which many persistent sessions expire
//! together: N sessions (100 000 by default) leave at the same instant,
//! each subscribed to one of 1 000 topics with a message queued, and the
//! core is ticked until they are gone. The figures of docs/reliability.md:
//!
//! ```sh
//! cargo run --release --example expiry_turns -- 100000
//! ```
//!
//! It drives the core directly, with an outbox that discards what it is
//! given: what is timed is the core's work alone.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sol::broker::{Broker, CloseReason, ConnId, Outbox};
use sol::config::Config;
use sol::protocol::{
    Connect, Packet, PacketId, Protocol, Publish, QoS, Subscribe, TopicFilter, TopicName,
};

struct Discard;

impl Outbox for Discard {
    fn send(&mut self, _: ConnId, _: &Packet) {}
    fn send_bytes(&mut self, _: ConnId, _: &[u8]) {}
    fn pending(&self, _: ConnId) -> usize {
        0
    }
    fn close(&mut self, _: ConnId) {}
}

fn connect(client_id: String, clean_session: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V311,
        clean_session,
        keep_alive: 0,
        client_id,
        will: None,
        username: None,
        password: None,
    }))
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let expiry = Duration::from_secs(60);
    let start = Instant::now();
    let config = Config {
        stats_publish_interval: Duration::ZERO,
        max_keepalive: 0,
        persistent_client_expiration: Some(expiry),
        ..Config::default()
    };
    let mut broker = Broker::new(&config, start);
    let mut out = Discard;
    let id = PacketId::new(1).expect("1 is a packet id");
    for key in 0..n {
        let conn = ConnId {
            key,
            serial: key as u64,
        };
        broker.open(conn, "example", start);
        broker.packet(conn, connect(format!("gone-{key}"), false), start, &mut out);
        let filter = TopicFilter::new(format!("t/{}", key % 1000)).expect("a filter");
        let subscribe = Subscribe {
            packet_id: id,
            filters: vec![(filter, QoS::AtLeastOnce)],
        };
        broker.packet(conn, Packet::Subscribe(subscribe), start, &mut out);
        broker.closed(conn, CloseReason::PeerClosed, start, &mut out);
    }
    let publisher = ConnId {
        key: n,
        serial: n as u64,
    };
    broker.open(publisher, "example", start);
    broker.packet(
        publisher,
        connect("publisher".into(), true),
        start,
        &mut out,
    );
    for topic in 0..1000 {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new(format!("t/{topic}")).expect("a topic"),
            packet_id: Some(id),
            payload: Bytes::from(vec![b'x'; 100]),
        };
        broker.packet(publisher, Packet::Publish(publish), start, &mut out);
    }
    println!(
        "{} sessions, {} bytes counted against max_memory",
        broker.session_count(),
        broker.memory_used(&out)
    );
    // The other timers first (the memory check), so that the turns timed
    // below do nothing but expire.
    broker.tick(start + expiry - Duration::from_millis(10), &mut out);

    let mut now = start + expiry;
    let mut turns = Vec::new();
    let all = Instant::now();
    while broker.session_count() > 1 {
        let turn = Instant::now();
        broker.tick(now, &mut out);
        turns.push(turn.elapsed());
        now += Duration::from_micros(1);
    }
    let total = all.elapsed();
    let first = turns.first().copied().unwrap_or_default();
    let mut rest = turns.get(1..).unwrap_or_default().to_vec();
    rest.sort();
    let at = |q: usize| rest.get(rest.len() * q / 100).copied().unwrap_or_default();
    println!(
        "expired in {} turns, {total:?} in all: the first {first:?}, then median {:?}, \
         p90 {:?}, slowest {:?}; {} bytes counted",
        turns.len(),
        at(50),
        at(90),
        rest.last().copied().unwrap_or_default(),
        broker.memory_used(&out)
    );
}
