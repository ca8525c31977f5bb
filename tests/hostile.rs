//! What a hostile network, and the attacks from other brokers' security
//! advisories, do to a real broker: bytes trickled one at a time, a packet
//! split at every offset, thousands of packets in one write, connections
//! reset mid-packet and mid-handshake, a client that never reads, and the
//! advisory lessons of BAD_INPUTS.md. Each runs beside a well-behaved QoS 1
//! bystander that must lose nothing.
//!
//! A reset during a TLS handshake belongs here too; it comes with the TLS
//! listener.
//!
//! The memory checks read this process's resident set (`VmRSS` in
//! `/proc/self/status`): the broker runs on a thread of the test process, so
//! its allocations are ours. A test that measures holds [`exclusive`] so
//! that no other test of this file allocates meanwhile.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Tests that measure memory take it for writing, every other test for
/// reading: a measurement never overlaps another test's allocations.
static MEMORY: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    MEMORY.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MEMORY.write().unwrap_or_else(|e| e.into_inner())
}

/// This process's resident set in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

const MB: usize = 1024 * 1024;

/// A bare TCP connection for what [`Raw`] cannot do: reset the connection
/// (SO_LINGER 0 and close sends RST instead of FIN), or be read from one
/// thread while another writes.
struct Peer {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl Peer {
    fn connect(addr: SocketAddr) -> Peer {
        Peer::from_socket(addr, |_| {})
    }

    /// Connects after `setup` has set options on the socket (a receive
    /// buffer size must be set before the handshake to take effect).
    fn from_socket(addr: SocketAddr, setup: impl FnOnce(&Socket)) -> Peer {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        setup(&socket);
        socket.connect_timeout(&addr.into(), TIMEOUT).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Peer {
            stream,
            buffered: Vec::new(),
        }
    }

    /// Connects and completes CONNECT with the given session-present flag.
    fn connected(addr: SocketAddr, connect: &Connect, session_present: bool) -> Peer {
        let mut peer = Peer::connect(addr);
        peer.send(&connect.bytes());
        peer.expect(&connack(session_present, 0));
        peer
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot send {}: {e}", hex(bytes)));
    }

    /// One whole packet, fixed header included; panics after [`TIMEOUT`].
    fn read_packet(&mut self) -> Vec<u8> {
        loop {
            if let Some(total) = whole_packet(&self.buffered) {
                return self.buffered.drain(..total).collect();
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("closed, after {}", hex(&self.buffered)),
                Ok(n) => self.buffered.extend_from_slice(&buf[..n]),
                Err(e) => panic!("expected a packet: {e}, after {}", hex(&self.buffered)),
            }
        }
    }

    fn expect(&mut self, expected: &[u8]) {
        let got = self.read_packet();
        assert_eq!(
            hex(&got),
            hex(expected),
            "unexpected packet from the broker"
        );
    }

    /// Closes with RST: SO_LINGER on with a zero timeout, then close.
    fn reset(self) {
        SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(self.stream);
    }
}

/// The length of the whole packet at the front of `bytes`, once all of it
/// is there.
fn whole_packet(bytes: &[u8]) -> Option<usize> {
    let mut size = 0usize;
    for (i, byte) in bytes.iter().skip(1).take(4).enumerate() {
        size |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let total = 2 + i + size;
            return (bytes.len() >= total).then_some(total);
        }
    }
    None
}

/// Sends `bytes` one at a time with a pause after each, as a slow or
/// hostile network would deliver them.
fn trickle(raw: &mut Raw, bytes: &[u8], pause: Duration) {
    for byte in bytes {
        raw.send(&[*byte]);
        thread::sleep(pause);
    }
}

// ---------------------------------------------------------------------------
// A hostile network
// ---------------------------------------------------------------------------

/// CONNECT, SUBSCRIBE and PUBLISH trickled byte by byte: nothing is answered
/// before a packet's last byte, and everything is answered once it is in.
#[test]
fn bytes_trickled_one_at_a_time_are_decoded() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("tr");
        let mut raw = Raw::tcp(broker.addr());
        let pause = Duration::from_millis(2);
        let steps = [
            (connect(&unique_id("tr")), connack(false, 0)),
            (subscribe(3, &[(&t, 0)]), suback(3, &[0])),
        ];
        for (bytes, answer) in steps {
            let (head, last) = bytes.split_at(bytes.len() - 1);
            trickle(&mut raw, head, pause);
            raw.expect_silence(Duration::from_millis(50));
            raw.send(last);
            raw.expect(&answer);
        }
        let bytes = publish(&t, b"trickled", 1, false, Some(77));
        let (head, last) = bytes.split_at(bytes.len() - 1);
        trickle(&mut raw, head, pause);
        raw.expect_silence(Duration::from_millis(50));
        raw.send(last);
        // The delivery (QoS 0, the subscription's) and the PUBACK, in
        // whichever order the broker writes them.
        let mut got = vec![raw.read_packet(), raw.read_packet()];
        got.sort();
        let mut want = vec![publish(&t, b"trickled", 0, false, None), puback(77)];
        want.sort();
        assert_eq!(got, want);
        raw.ping();
    });
}

/// A PUBLISH cut in two at every possible offset, the halves sent apart:
/// each is delivered exactly once, whole. Once with a one-byte remaining
/// length, once with a two-byte one (so the cut also falls inside it).
#[test]
fn a_packet_split_at_every_offset_is_delivered_exactly_once() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("sp");
        let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
        sub.subscribe(1, &[(&t, 0)], &[0]);
        let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
        for filler in [0usize, 150] {
            let sample = publish(&t, &vec![b'x'; filler + 9], 1, false, Some(1));
            assert!((sample.len() < 128) == (filler == 0), "{}", sample.len());
            for cut in 1..sample.len() {
                let id = u16::try_from(cut).unwrap();
                let payload = format!("cut {cut:05}{}", "x".repeat(filler));
                let bytes = publish(&t, payload.as_bytes(), 1, false, Some(id));
                assert_eq!(bytes.len(), sample.len());
                publisher.send(&bytes[..cut]);
                thread::sleep(Duration::from_millis(2));
                publisher.send(&bytes[cut..]);
                publisher.expect(&puback(id));
                sub.expect_message(&t, payload.as_bytes(), 0);
            }
        }
        // Nothing else was delivered: no second copy of any message.
        publisher.send(&publish(&t, b"end", 0, false, None));
        sub.expect_message(&t, b"end", 0);
        sub.expect_silence(Duration::from_millis(50));
    });
}

/// A CONNECT cut in two at every offset still connects.
#[test]
fn a_connect_split_at_every_offset_connects() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let will = unique_topic("sw");
        let mut c = Connect::new(&unique_id("sc")).will(&will, b"will", 1, false);
        c.username = Some(b"user".to_vec());
        c.password = Some(b"password".to_vec());
        let bytes = c.bytes();
        for cut in 1..bytes.len() {
            let mut raw = Raw::tcp(broker.addr());
            raw.send(&bytes[..cut]);
            thread::sleep(Duration::from_millis(2));
            raw.send(&bytes[cut..]);
            raw.expect(&connack(false, 0));
            raw.send(&DISCONNECT);
            raw.expect_closed();
        }
    });
}

/// 5000 PUBLISHes and a PINGREQ in a single write: every message is
/// delivered, in order, then PINGRESP comes. Then 5000 QoS 1 PUBLISHes in
/// one write: 5000 PUBACKs, in order.
#[test]
fn thousands_of_packets_in_one_write() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        const N: u16 = 5000;
        let t = unique_topic("many");
        let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
        sub.subscribe(1, &[(&t, 0)], &[0]);
        let topic = t.clone();
        // Read on another thread while the one write goes on.
        let reader = thread::spawn(move || {
            for round in 0..2 {
                for i in 1..=N {
                    sub.expect_message(&topic, format!("{round} {i:05}").as_bytes(), 0);
                }
            }
            sub.expect_silence(Duration::from_millis(50));
        });
        let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
        let mut bytes = Vec::new();
        for i in 1..=N {
            bytes.extend(publish(&t, format!("0 {i:05}").as_bytes(), 0, false, None));
        }
        bytes.extend(PINGREQ);
        publisher.send(&bytes);
        publisher.expect(&PINGRESP);

        let mut bytes = Vec::new();
        let mut acks = Vec::new();
        for i in 1..=N {
            bytes.extend(publish(
                &t,
                format!("1 {i:05}").as_bytes(),
                1,
                false,
                Some(i),
            ));
            acks.extend(puback(i));
        }
        publisher.send(&bytes);
        publisher.expect(&acks);
        reader.join().unwrap();
    });
}

/// RST in the middle of a packet, before and after CONNECT: the connection
/// goes, its will is published exactly once, everyone else goes on.
#[test]
fn a_connection_reset_in_the_middle_of_a_packet() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let will = unique_topic("rst");
        let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
        watcher.subscribe(&will, QoS::AtLeastOnce);

        // Half a CONNECT, then reset: nothing to publish.
        let bytes = Connect::new(&unique_id("h"))
            .will(&will, b"never connected", 0, false)
            .bytes();
        let mut peer = Peer::connect(broker.addr());
        peer.send(&bytes[..bytes.len() / 2]);
        peer.reset();

        // Connected, half a PUBLISH (header and part of a large body), reset.
        for (i, cut) in [1usize, 2, 200_000].into_iter().enumerate() {
            let payload = format!("reset {i}");
            let c = Connect::new(&unique_id("rs")).will(&will, payload.as_bytes(), 1, false);
            let mut peer = Peer::connected(broker.addr(), &c, false);
            let big = publish(&will, &vec![b'x'; 500_000], 1, false, Some(1));
            peer.send(&big[..cut]);
            thread::sleep(Duration::from_millis(20));
            peer.reset();
            watcher.expect(&will, payload.as_bytes());
        }
        let got = watcher.drain_until_marker(&will);
        assert!(got.is_empty(), "more than one will per reset: {got:?}");
    });
}

/// RST after the broker's PUBREC and before the client's PUBREL: the
/// session (clean_session 0) keeps the packet id, so the resent PUBLISH is
/// acknowledged and not delivered again, and PUBREL completes the flow.
#[test]
fn a_reset_between_pubrec_and_pubrel_resumes_the_session() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("q2in");
        let id = unique_id("q2in");
        let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
        sub.subscribe(1, &[(&t, 0)], &[0]);

        let mut first = Peer::connected(broker.addr(), &Connect::new(&id).clean(false), false);
        first.send(&publish(&t, b"exactly once", 2, false, Some(7)));
        first.expect(&pubrec(7));
        first.reset();

        let mut again = Raw::connected(broker.addr(), &Connect::new(&id).clean(false), true);
        again.send(&publish_raw(
            t.as_bytes(),
            b"exactly once",
            2,
            false,
            true,
            Some(7),
        ));
        again.expect(&pubrec(7));
        again.send(&pubrel(7));
        again.expect(&pubcomp(7));
        again.send(&publish(&t, b"mark 1", 0, false, None));
        let got = sub.collect_until(&t, b"mark 1");
        let payloads: Vec<&[u8]> = got.iter().map(|p| p.payload.as_slice()).collect();
        assert_eq!(payloads, vec![&b"exactly once"[..]]);

        // The id is free again: the next message under it is a new one.
        again.send(&publish(&t, b"next", 2, false, Some(7)));
        again.expect(&pubrec(7));
        again.send(&pubrel(7));
        again.expect(&pubcomp(7));
        again.send(&publish(&t, b"mark 2", 0, false, None));
        let got = sub.collect_until(&t, b"mark 2");
        let payloads: Vec<&[u8]> = got.iter().map(|p| p.payload.as_slice()).collect();
        assert_eq!(payloads, vec![&b"next"[..]]);
        again.send(&DISCONNECT);
    });
}

/// The other direction: the broker delivers at QoS 2 to a persistent
/// session. A reset before the client's PUBREC brings the PUBLISH again
/// with DUP; a reset after the broker's PUBREL brings the PUBREL again
/// [MQTT-4.4.0-1]; after PUBCOMP nothing is resent.
#[test]
fn a_reset_in_an_outgoing_qos_2_flow_resumes_the_session() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("q2out");
        let id = unique_id("q2out");
        let session = Connect::new(&id).clean(false);
        let mut receiver = Peer::connected(broker.addr(), &session, false);
        receiver.send(&subscribe(1, &[(&t, 2)]));
        receiver.expect(&suback(1, &[2]));

        let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
        let mut send_qos2 = |payload: &[u8], pid: u16| {
            publisher.send(&publish(&t, payload, 2, false, Some(pid)));
            publisher.expect(&pubrec(pid));
            publisher.send(&pubrel(pid));
            publisher.expect(&pubcomp(pid));
        };

        // Reset before PUBREC: the PUBLISH comes again, DUP set, same id.
        send_qos2(b"one", 1);
        let delivered = parse_publish(&receiver.read_packet()).unwrap();
        assert_eq!(
            (delivered.qos, delivered.payload.as_slice()),
            (2, &b"one"[..])
        );
        let n = delivered.id.unwrap();
        receiver.reset();
        let mut receiver = Peer::connected(broker.addr(), &session, true);
        let again = parse_publish(&receiver.read_packet()).unwrap();
        assert_eq!(
            (again.dup, again.qos, again.id, again.payload.as_slice()),
            (true, 2, Some(n), &b"one"[..])
        );

        // PUBREC, the broker's PUBREL, then reset before PUBCOMP: the
        // PUBREL comes again, not the message.
        receiver.send(&pubrec(n));
        receiver.expect(&pubrel(n));
        receiver.reset();
        let mut receiver = Peer::connected(broker.addr(), &session, true);
        receiver.expect(&pubrel(n));
        receiver.send(&pubcomp(n));

        // The flow is over: the next message is new, nothing else comes.
        send_qos2(b"two", 2);
        let next = parse_publish(&receiver.read_packet()).unwrap();
        assert_eq!(
            (next.dup, next.qos, next.payload.as_slice()),
            (false, 2, &b"two"[..])
        );
        let m = next.id.unwrap();
        receiver.send(&pubrec(m));
        receiver.expect(&pubrel(m));
        receiver.send(&pubcomp(m));
        receiver.send(&PINGREQ);
        receiver.expect(&PINGRESP);
        receiver.send(&DISCONNECT);
    });
}

/// Subscribers that never read (with a tiny receive buffer, one at QoS 0
/// and one at QoS 1) while 64 MB are published to them: the publisher is
/// never stalled, everyone else is served, and the broker's memory stays
/// bounded by its output high-water mark and the session queue, not by what
/// was sent.
#[test]
fn a_client_that_never_reads_costs_bounded_memory() {
    let Some(broker) = TestBroker::sol_only("measures the broker's memory in-process") else {
        return;
    };
    let _g = exclusive();
    with_bystander(&broker, || {
        let t = unique_topic("nr");
        let mut stuck = Vec::new();
        for qos in [0u8, 1] {
            let mut peer = Peer::from_socket(broker.addr(), |s| {
                s.set_recv_buffer_size(4096).unwrap();
            });
            peer.send(&connect(&unique_id("nr")));
            peer.expect(&connack(false, 0));
            peer.send(&subscribe(1, &[(&t, qos)]));
            peer.expect(&suback(1, &[qos]));
            stuck.push(peer);
        }
        let mut publisher = Peer::connected(broker.addr(), &Connect::new(&unique_id("p")), false);
        let mut acks = publisher.stream.try_clone().unwrap();
        const N: u16 = 16_000;
        let counter = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            while total < usize::from(N) * 4 {
                match acks.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) => panic!("reading PUBACKs: {e}"),
                }
            }
            total / 4
        });

        let before = rss();
        let payload = vec![b'x'; 4096];
        let start = Instant::now();
        // 16 000 x 4 KB = 64 MB, in batches of 100 messages.
        for batch in 0..N / 100 {
            let mut bytes = Vec::with_capacity(100 * 4200);
            for i in 1..=100 {
                bytes.extend(publish(&t, &payload, 1, false, Some(batch * 100 + i)));
            }
            publisher.send(&bytes);
        }
        assert_eq!(counter.join().unwrap(), usize::from(N), "PUBACKs");
        let took = start.elapsed();
        let grown = rss().saturating_sub(before);
        println!(
            "64 MB to two stuck subscribers: {took:?}, RSS grew {} KB",
            grown / 1024
        );
        assert!(took < Duration::from_secs(30), "the flood took {took:?}");
        assert!(grown < 32 * MB, "RSS grew by {} MB", grown / MB);

        // A new subscriber to the same topic is served at once.
        let mut fresh = Raw::connected_clean(broker.addr(), &unique_id("f"));
        fresh.subscribe(1, &[(&t, 0)], &[0]);
        publisher.send(&publish(&t, b"after", 0, false, None));
        fresh.expect_message(&t, b"after", 0);
        drop(stuck);
    });
}

// ---------------------------------------------------------------------------
// Lessons from other brokers' advisories
// ---------------------------------------------------------------------------

/// The fourteen packet types other than CONNECT (2 to 15), each with the
/// flags its type requires, as a first packet announcing a 100 MB body.
fn fourteen_huge_first_packets() -> Vec<Vec<u8>> {
    let firsts = [
        0x20u8, 0x30, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    ];
    firsts
        .iter()
        .map(|&first| {
            let mut bytes = vec![first];
            bytes.extend(remaining_length(100_000_000));
            bytes
        })
        .collect()
}

/// mosquitto CVE-2017-7651 and CVE-2023-0809: 280 sockets at once, each
/// opening with one of the fourteen non-CONNECT packet types announcing
/// 100 MB and then pushing up to 1 MB of its body. Each is closed, and the
/// broker's memory grows by less than 20 MB (mosquitto's own bound).
#[test]
fn fourteen_kinds_of_huge_first_packets_allocate_nothing() {
    let Some(broker) = TestBroker::sol_only("measures the broker's memory in-process") else {
        return;
    };
    let _g = exclusive();
    with_bystander(&broker, || {
        let kinds = fourteen_huge_first_packets();
        assert_eq!(kinds.len(), 14);
        let before = rss();
        let mut peers = Vec::new();
        for round in 0..20 {
            for header in &kinds {
                let mut peer = Peer::connect(broker.addr());
                peer.send(header);
                peers.push((round, peer));
            }
        }
        let body = vec![0u8; 64 * 1024];
        for (_, peer) in &mut peers {
            let mut sent = 0;
            // The broker closes on the header; the body then fails to go.
            while sent < MB {
                match peer.stream.write(&body) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
        }
        for (round, peer) in &mut peers {
            let mut buf = [0u8; 64];
            match peer.stream.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("round {round}: expected a close, got {other:?}"),
            }
        }
        let grown = rss().saturating_sub(before);
        println!("280 huge first packets: RSS grew {} KB", grown / 1024);
        assert!(grown < 20 * MB, "RSS grew by {} MB", grown / MB);
    });
}

/// mosquitto CVE-2019-11779: a filter (and a topic) of tens of thousands of
/// levels is refused and the connection closed, without a stack overflow.
#[test]
fn ten_thousand_levels_close_without_overflowing_the_stack() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let many = |level: &str, n: usize| vec![level; n].join("/");
        let filters = [
            many("a", 10_001),
            many("+", 10_001),
            many("", 30_000),
            format!("{}/#", many("+", 20_000)),
        ];
        for filter in &filters {
            let mut raw = Raw::connected_clean(broker.addr(), &unique_id("lv"));
            raw.send(&subscribe(1, &[(filter, 0)]));
            raw.expect_closed();
            let mut raw = Raw::connected_clean(broker.addr(), &unique_id("lv"));
            raw.send(&unsubscribe(1, &[filter]));
            raw.expect_closed();
        }
        for topic in [many("a", 10_001), many("", 50_000)] {
            let mut raw = Raw::connected_clean(broker.addr(), &unique_id("lv"));
            raw.send(&publish(&topic, b"deep", 0, false, None));
            raw.expect_closed();
            let mut raw = Raw::tcp(broker.addr());
            raw.send(
                &Connect::new(&unique_id("lw"))
                    .will(&topic, b"x", 0, false)
                    .bytes(),
            );
            raw.expect_closed();
        }
        // The deepest filter allowed still works.
        let t = format!("{}/{}", unique_topic("lv"), many("l", 150));
        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("ok"));
        raw.subscribe(1, &[(&format!("{}/#", many("+", 150)), 0)], &[0]);
        raw.send(&publish(&t, b"deep", 0, false, None));
        raw.expect_message(&t, b"deep", 0);
    });
}

/// mosquitto CVE-2023-28366: the same QoS 2 packet id published again and
/// again without PUBREL is stored once and delivered once; every packet id
/// held at once (the whole id space) costs bounded memory, and each is
/// delivered once.
#[test]
fn repeated_qos_2_publishes_without_pubrel_are_stored_once() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("q2rep");
        let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
        sub.subscribe(1, &[(&t, 0)], &[0]);
        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("p"));
        let mut bytes = Vec::new();
        let mut recs = Vec::new();
        for i in 0..1000 {
            bytes.extend(publish_raw(t.as_bytes(), b"same", 2, false, i > 0, Some(5)));
            recs.extend(pubrec(5));
        }
        raw.send(&bytes);
        raw.expect(&recs);
        raw.send(&pubrel(5));
        raw.expect(&pubcomp(5));
        raw.send(&publish(&t, b"mark", 0, false, None));
        let got = sub.collect_until(&t, b"mark");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].payload, b"same");
    });
}

#[test]
fn every_packet_id_held_at_once_is_delivered_once() {
    let Some(broker) = TestBroker::sol_only("measures the broker's memory in-process") else {
        return;
    };
    let _g = exclusive();
    with_bystander(&broker, || {
        let t = unique_topic("q2all");
        let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
        sub.subscribe(1, &[(&t, 0)], &[0]);
        let topic = t.clone();
        // Checks each delivery as it comes, keeping none: the subscriber's
        // own memory must not blur the broker's.
        let deliveries = thread::spawn(move || {
            for id in 1..=u16::MAX {
                let p = sub.expect_publish();
                assert_eq!(
                    (p.topic.as_slice(), p.payload.as_slice()),
                    (topic.as_bytes(), &id.to_be_bytes()[..])
                );
            }
            sub.expect_message(&topic, b"mark", 0);
        });
        let mut publisher = Peer::connected(broker.addr(), &Connect::new(&unique_id("p")), false);
        let mut acks = publisher.stream.try_clone().unwrap();
        let mut want = Vec::new();
        let mut rounds = Vec::new();
        for dup in [false, true] {
            let mut bytes = Vec::new();
            for id in 1..=u16::MAX {
                bytes.extend(publish_raw(
                    t.as_bytes(),
                    &id.to_be_bytes(),
                    2,
                    false,
                    dup,
                    Some(id),
                ));
                want.extend(pubrec(id));
            }
            rounds.push(bytes);
        }
        let mut bytes = Vec::new();
        for id in 1..=u16::MAX {
            bytes.extend(pubrel(id));
            want.extend(pubcomp(id));
        }
        rounds.push(bytes);
        let mut got = Vec::with_capacity(want.len());
        let expected = want.len();
        let before = rss();
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while got.len() < expected {
                match acks.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("reading acks: {e}"),
                }
            }
            got
        });
        for bytes in &rounds {
            publisher.send(bytes);
        }
        let got = reader.join().unwrap();
        let grown = rss().saturating_sub(before);
        assert!(
            got == want,
            "the acks differ from PUBREC x2 then PUBCOMP per id"
        );
        println!(
            "65 535 QoS 2 ids held at once: RSS grew {} KB",
            grown / 1024
        );
        assert!(grown < 20 * MB, "RSS grew by {} MB", grown / MB);
        publisher.send(&publish(&t, b"mark", 0, false, None));
        deliveries.join().unwrap();
    });
}

/// mosquitto CVE-2021-28166: a client sending a packet only a server may
/// send is closed, before and after CONNECT, whatever its body.
#[test]
fn server_only_packets_from_a_client_close() {
    let _g = shared();
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let cases: [Vec<u8>; 6] = [
            connack(false, 0),
            connack(true, 5),
            suback(1, &[0, 1, 2, 0x80]),
            unsuback(1),
            PINGRESP.to_vec(),
            // A SUBACK whose body is larger than any real one.
            packet(0x90, &[0u8; 5000]),
        ];
        for bytes in &cases {
            let mut raw = Raw::tcp(broker.addr());
            raw.send(bytes);
            raw.expect_closed();
            if broker.checks_sol_only("mosquitto 2.0 ignores SUBACK, UNSUBACK, PINGRESP") {
                let mut raw = Raw::connected_clean(broker.addr(), &unique_id("so"));
                raw.send(bytes);
                raw.expect_closed();
            }
        }
    });
}
