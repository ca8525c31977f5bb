//! Work that one packet asks of the broker is spread over loop turns: no
//! PUBLISH and no SUBSCRIBE may keep everyone else waiting while it is
//! routed or while its retained messages are walked, and a subscriber that
//! reads gets every retained message its filter matches, not just the
//! first megabyte of them. Issue 16, items 6 and 7; the figures are in
//! docs/reliability.md.
//!
//! Each attack runs beside a [`Bystander`] doing QoS 1 round trips, and
//! asserts its slowest one. The sizes are scaled down from the issue's so
//! that each test takes a few seconds of a debug build.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;

/// The bystander's slowest round trip allowed under each attack.
const WORST_ROUND_TRIP: Duration = Duration::from_millis(100);

/// The attacks take turns: run side by side on a small machine, each
/// broker would be measured against the others' CPU use, not its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long an attacker waits for the broker to be done with its packets:
/// seconds of work in a debug build on a loaded machine.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(20);

/// A filter of `depth` levels that matches nothing published to
/// [`deep_topic`] but follows it almost to the end: its first 9 levels
/// spell `i` in `+` and `t`, so no two filters share a node past them, and
/// a publish to the deep topic walks every filter's whole chain.
fn deep_filter(i: usize, depth: usize) -> String {
    let mut levels = vec!["a".to_string()];
    for bit in 0..9 {
        let level = if i >> bit & 1 == 1 { "t" } else { "+" };
        levels.push(level.to_string());
    }
    while levels.len() < depth - 1 {
        levels.push("+".to_string());
    }
    levels.push(format!("z{i}"));
    levels.join("/")
}

fn deep_topic(depth: usize) -> String {
    let mut levels = vec!["a"];
    levels.resize(depth - 1, "t");
    levels.push("end");
    levels.join("/")
}

/// A raw connection that has sent CONNECT and read its CONNACK.
fn connected(broker: &TestBroker, id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(broker.addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(&connect(id)).unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    stream
}

/// Reads one packet: its first byte and its body.
fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first)?;
    let (mut length, mut shift) = (0usize, 0);
    loop {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        length |= usize::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((first[0], body))
}

/// Reads until the packet whose first byte is `first`, returning how many
/// PUBLISH packets came before it.
fn publishes_until(stream: &mut TcpStream, first: u8) -> usize {
    let mut publishes = 0;
    loop {
        let (got, _) = read_packet(stream).unwrap();
        if got == first {
            return publishes;
        }
        if got & 0xf0 == 0x30 {
            publishes += 1;
        }
    }
}

/// Sends a QoS 1 PUBLISH to a topic nobody reads and waits for its PUBACK:
/// everything the connection sent before has been handled.
fn sync(stream: &mut TcpStream, id: u16) {
    stream
        .write_all(&publish("budget/sync", b"", 1, false, Some(id)))
        .unwrap();
    loop {
        let (first, body) = read_packet(stream).unwrap();
        if first == 0x40 && body == id.to_be_bytes() {
            return;
        }
    }
}

#[test]
fn publishes_against_deep_wildcard_filters_do_not_stall_the_others() {
    let Some(broker) = TestBroker::sol_only("times sol's own loop") else {
        return;
    };
    let _turn = one_at_a_time();
    const DEPTH: usize = 100;
    let mut subscriber = connected(&broker, &unique_id("deep"));
    let filters: Vec<String> = (0..500).map(|i| deep_filter(i, DEPTH)).collect();
    for (n, chunk) in filters.chunks(100).enumerate() {
        let chunk: Vec<(&str, u8)> = chunk.iter().map(|f| (f.as_str(), 0)).collect();
        subscriber
            .write_all(&subscribe(n as u16 + 1, &chunk))
            .unwrap();
        assert_eq!(publishes_until(&mut subscriber, 0x90), 0);
    }

    let worst = {
        let bystander = Bystander::start(broker.addr());
        let mut attacker = connected(&broker, &unique_id("flood"));
        let one = publish(&deep_topic(DEPTH), b"x", 0, false, None);
        let flood = one.repeat(50 * 1024 / one.len());
        attacker.set_read_timeout(Some(ATTACK_TIMEOUT)).unwrap();
        let started = Instant::now();
        attacker.write_all(&flood).unwrap();
        sync(&mut attacker, 1);
        println!(
            "{} publishes routed in {:?}",
            flood.len() / one.len(),
            started.elapsed()
        );
        bystander.finish_timed()
    };
    println!("bystander's worst round trip: {worst:?}");
    assert!(worst < WORST_ROUND_TRIP, "the bystander waited {worst:?}");
    broker.assert_alive();
}

#[test]
fn a_subscribe_of_many_filters_does_not_stall_the_others() {
    let Some(broker) = TestBroker::sol_only("times sol's own loop") else {
        return;
    };
    let _turn = one_at_a_time();
    let root = unique_topic("wide");
    let mut publisher = connected(&broker, &unique_id("ret"));
    let retained: Vec<u8> = (0..1000)
        .flat_map(|i| publish(&format!("{root}/{i}/v"), b"r", 0, true, None))
        .collect();
    publisher.write_all(&retained).unwrap();
    sync(&mut publisher, 1);

    // Each filter fans out over every retained topic, and matches none.
    let filters: Vec<String> = (0..5000).map(|i| format!("{root}/+/q{i}")).collect();
    let worst = {
        let bystander = Bystander::start(broker.addr());
        let mut attacker = connected(&broker, &unique_id("wide"));
        let filters: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 0)).collect();
        let started = Instant::now();
        attacker.write_all(&subscribe(1, &filters)).unwrap();
        assert_eq!(publishes_until(&mut attacker, 0x90), 0);
        sync(&mut attacker, 2);
        // The walks are done once a filter subscribed after them has had
        // its retained message: they are delivered in order.
        attacker
            .write_all(&subscribe(3, &[(&format!("{root}/7/v"), 0)]))
            .unwrap();
        assert_eq!(publishes_until(&mut attacker, 0x90), 0);
        // Five million children to go through.
        attacker.set_read_timeout(Some(ATTACK_TIMEOUT)).unwrap();
        let (first, _) = read_packet(&mut attacker).unwrap();
        assert_eq!(first, 0x31, "the retained message of the last filter");
        println!("5000 filters walked in {:?}", started.elapsed());
        bystander.finish_timed()
    };
    println!("bystander's worst round trip: {worst:?}");
    assert!(worst < WORST_ROUND_TRIP, "the bystander waited {worst:?}");
    broker.assert_alive();
}

#[test]
fn a_reader_gets_every_retained_message_however_many_megabytes() {
    let Some(broker) = TestBroker::sol_only("counts sol's retained deliveries") else {
        return;
    };
    let _turn = one_at_a_time();
    const RETAINED: usize = 20_000;
    let root = unique_topic("rw");
    let mut publisher = connected(&broker, &unique_id("rwp"));
    let payload = [b'p'; 100];
    let retained: Vec<u8> = (0..RETAINED)
        .flat_map(|i| publish(&format!("{root}/{i}"), &payload, 0, true, None))
        .collect();
    assert!(retained.len() > 2 * 1024 * 1024, "past the output mark");
    publisher.write_all(&retained).unwrap();
    sync(&mut publisher, 1);

    let worst = {
        let bystander = Bystander::start(broker.addr());
        let mut reader = connected(&broker, &unique_id("rwr"));
        reader
            .write_all(&subscribe(1, &[(&format!("{root}/#"), 0)]))
            .unwrap();
        assert_eq!(publishes_until(&mut reader, 0x90), 0);
        let mut got = 0;
        while got < RETAINED {
            match read_packet(&mut reader) {
                Ok((first, _)) if first & 0xf0 == 0x30 => got += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        assert_eq!(got, RETAINED, "retained messages received");
        bystander.finish_timed()
    };
    println!("bystander's worst round trip: {worst:?}");
    assert!(worst < WORST_ROUND_TRIP, "the bystander waited {worst:?}");
    broker.assert_alive();
}
