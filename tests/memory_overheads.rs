//! What `max_memory` counts, against what the heap really holds: builds
//! many of each thing a client can make the broker keep (sessions,
//! subscriptions, retained messages, queued messages) in a broker driven
//! without a network, and compares what `Broker::memory_used` says with
//! what a counting allocator saw allocated. The per-item constants in
//! `src/broker/memory.rs`, `src/broker/retained.rs` and
//! `src/broker/memory/payloads.rs` were measured here.
//!
//! The allocator counts each allocation as glibc's malloc holds it: the
//! size asked for, an 8-byte header, rounded up to 16 bytes, at least 32.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use sol::broker::{Broker, ConnId, Outbox, Traffic};
use sol::config::Config;
use sol::protocol::{Connect, Packet, PacketId, Protocol, Publish, QoS, Subscribe, TopicFilter};
use sol::protocol::{TopicName, Will};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

// SAFETY: every call is passed straight to the system allocator; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(chunk(new_size), Ordering::Relaxed);
        LIVE.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Swallows what the core sends: nothing is buffered.
struct Nowhere;

impl Outbox for Nowhere {
    fn send(&mut self, _: ConnId, _: &Packet) {}
    fn pending(&self, _: ConnId) -> usize {
        0
    }
    fn close(&mut self, _: ConnId) {}
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

struct Rig {
    broker: Broker,
    now: Instant,
    next: u64,
}

impl Rig {
    fn new() -> Rig {
        Rig::limited(1 << 40)
    }

    fn limited(max_memory: usize) -> Rig {
        let config = Config {
            max_memory,
            max_queued_messages: 1_000_000,
            max_keepalive: 0,
            ..Config::default()
        };
        let now = Instant::now();
        Rig {
            broker: Broker::new(&config, now),
            now,
            next: 0,
        }
    }

    fn connect(&mut self, client_id: String, clean: bool, will: Option<Will>) -> ConnId {
        self.next += 1;
        let conn = ConnId {
            key: self.next as usize,
            serial: self.next,
        };
        self.broker.open(conn, "test", self.now);
        let connect = Connect {
            protocol: Protocol::V311,
            clean_session: clean,
            keep_alive: 0,
            client_id,
            will,
            username: None,
            password: None,
        };
        self.send(conn, Packet::Connect(Box::new(connect)));
        conn
    }

    fn send(&mut self, conn: ConnId, packet: Packet) {
        self.broker.packet(conn, packet, self.now, &mut Nowhere);
    }

    fn counted(&self) -> usize {
        self.broker.memory_used(&Nowhere)
    }
}

fn publish(topic: &str, payload: &[u8], qos: QoS, id: u16, retain: bool) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::new(topic).unwrap(),
        packet_id: PacketId::new(id),
        payload: Bytes::copy_from_slice(payload),
    })
}

fn subscribe(filters: Vec<(TopicFilter, QoS)>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        filters,
    })
}

/// Runs `build` on `rig` and returns (allocated, counted) growth.
fn measure(rig: &mut Rig, build: impl FnOnce(&mut Rig)) -> (usize, usize) {
    let (live, counted) = (LIVE.load(Ordering::Relaxed), rig.counted());
    build(rig);
    let grown = LIVE.load(Ordering::Relaxed).saturating_sub(live);
    (grown, rig.counted().saturating_sub(counted))
}

/// The promise of docs/reliability.md: counted memory tracks real growth
/// within 25 %.
fn assert_tracks(what: &str, n: usize, (allocated, counted): (usize, usize)) {
    eprintln!(
        "{what}: {} bytes allocated and {} counted per item",
        allocated / n,
        counted / n
    );
    let (low, high) = (allocated / 4 * 3, allocated / 4 * 5);
    if !(low..=high).contains(&counted) {
        FAILED.lock().unwrap().push(format!(
            "{what}: {allocated} bytes allocated, {counted} counted"
        ));
    }
}

static FAILED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

// One test, so that no other test's allocations run beside the counts.
#[test]
fn counted_memory_tracks_what_the_heap_holds() {
    let mut rig = Rig::new();
    let publisher = rig.connect("pub".into(), true, None);

    // Retained messages: 8 bytes on a topic of their own each.
    let n = 20_000;
    let grown = measure(&mut rig, |rig| {
        for i in 0..n {
            let topic = format!("r/{i}");
            rig.send(
                publisher,
                publish(&topic, b"12345678", QoS::AtMostOnce, 0, true),
            );
        }
    });
    assert_tracks("retained message", n, grown);

    // Retained messages on topics of 50 levels, nothing shared past the
    // first.
    let deep = 1_000;
    let grown = measure(&mut rig, |rig| {
        for i in 0..deep {
            let topic = format!("d/{i}{}", "/a".repeat(48));
            rig.send(
                publisher,
                publish(&topic, b"12345678", QoS::AtMostOnce, 0, true),
            );
        }
    });
    assert_tracks("retained message on 50 levels", deep, grown);

    // Queued messages: 8 bytes each, for one offline session.
    let away = rig.connect("away".into(), false, None);
    rig.send(
        away,
        subscribe(vec![(TopicFilter::new("q").unwrap(), QoS::AtLeastOnce)]),
    );
    rig.broker.closed(
        away,
        sol::broker::CloseReason::PeerClosed,
        rig.now,
        &mut Nowhere,
    );
    let grown = measure(&mut rig, |rig| {
        for i in 0..n {
            let id = (i % 60_000 + 1) as u16;
            rig.send(
                publisher,
                publish("q", b"12345678", QoS::AtLeastOnce, id, false),
            );
        }
    });
    assert_tracks("queued message", n, grown);

    // Persistent sessions with 1000-byte client ids, left offline.
    let sessions = 2_000;
    let grown = measure(&mut rig, |rig| {
        for i in 0..sessions {
            let conn = rig.connect(format!("{i:01000}"), false, None);
            rig.broker.closed(
                conn,
                sol::broker::CloseReason::PeerClosed,
                rig.now,
                &mut Nowhere,
            );
        }
    });
    assert_tracks("session", sessions, grown);

    // Subscriptions: 20 000 filters of 5 levels, then 1 000 of 50, each
    // level a node of its own (the worst case: nothing shared).
    let subscriber = rig.connect("subs".into(), true, None);
    for (levels, count) in [(5, 20_000), (50, 1_000)] {
        let grown = measure(&mut rig, |rig| {
            for chunk in 0..count / 100 {
                let filters = (0..100)
                    .map(|i| {
                        let filter = format!("{levels}-{chunk}-{i}{}", "/a".repeat(levels - 1));
                        (TopicFilter::new(&filter).unwrap(), QoS::AtMostOnce)
                    })
                    .collect();
                rig.send(subscriber, subscribe(filters));
            }
        });
        assert_tracks(&format!("subscription of {levels} levels"), count, grown);
    }

    // Wills of 10 kB on connected clients.
    let wills = 1_000;
    let grown = measure(&mut rig, |rig| {
        for i in 0..wills {
            let will = Will {
                topic: TopicName::new("w").unwrap(),
                payload: Bytes::from(vec![b'w'; 10_000]),
                qos: QoS::AtMostOnce,
                retain: false,
            };
            rig.connect(format!("will{i}"), true, Some(will));
        }
    });
    assert_tracks("will", wills, grown);

    // The offline-queue attack of `tests/memory.rs` with `max_memory 8MB`:
    // 200 abandoned sessions in 4 groups, 10 000 messages of 8 bytes group
    // by group. At its peak the heap holds what the count says.
    let mut rig = Rig::limited(8_000_000);
    let publisher = rig.connect("pub".into(), true, None);
    for i in 0..200 {
        let conn = rig.connect(format!("ab{i}"), false, None);
        let filter = TopicFilter::new(format!("g/{}", i % 4)).unwrap();
        rig.send(conn, subscribe(vec![(filter, QoS::AtLeastOnce)]));
        rig.broker.closed(
            conn,
            sol::broker::CloseReason::PeerClosed,
            rig.now,
            &mut Nowhere,
        );
    }
    let (live, counted) = (LIVE.load(Ordering::Relaxed), rig.counted());
    let (mut peak, mut counted_peak) = (0, 0);
    for group in 0..4 {
        for i in 0..2500u16 {
            let topic = format!("g/{group}");
            rig.send(
                publisher,
                publish(&topic, b"12345678", QoS::AtLeastOnce, i + 1, false),
            );
            peak = peak.max(LIVE.load(Ordering::Relaxed).saturating_sub(live));
            counted_peak = counted_peak.max(rig.counted().saturating_sub(counted));
        }
    }
    eprintln!("offline queues: heap peak +{peak}, counted peak +{counted_peak}");
    assert_tracks("offline queues at 8 MB (peak)", 1, (peak, counted_peak));
    let failed = FAILED.lock().unwrap();
    assert!(failed.is_empty(), "{failed:#?}");
}
