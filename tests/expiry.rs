//! `persistent_client_expiration` against a real broker: abandoned
//! persistent sessions go, with their queues and subscriptions, and the
//! memory `$SOL/broker/memory/used` counts for them is returned, while a
//! bystander is served throughout.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const EXPIRY: Duration = Duration::from_secs(2);
const SESSIONS: usize = 50;
const MESSAGES: u16 = 20;

/// Reads `$SOL/broker/...` PUBLISHes into `seen` until `done` says so;
/// panics after `limit`.
fn stats_until(
    raw: &mut Raw,
    seen: &mut HashMap<String, u64>,
    limit: Duration,
    done: impl Fn(&HashMap<String, u64>) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(seen) {
        assert!(Instant::now() < deadline, "gave up waiting; saw {seen:?}");
        let got = raw.expect_publish();
        let topic = String::from_utf8(got.topic).unwrap();
        let value = String::from_utf8(got.payload).unwrap();
        if let (Some(leaf), Ok(value)) = (topic.strip_prefix("$SOL/broker/"), value.parse()) {
            seen.insert(leaf.to_string(), value);
        }
    }
}

fn value(seen: &HashMap<String, u64>, leaf: &str) -> u64 {
    seen.get(leaf).copied().unwrap_or(u64::MAX)
}

#[test]
fn abandoned_sessions_expire_and_their_memory_is_returned() {
    let Some(broker) = TestBroker::with(|c| {
        c.persistent_client_expiration = Some(EXPIRY);
        c.stats_publish_interval = Duration::from_millis(100);
    }) else {
        return;
    };
    let addr = broker.addr();
    let bystander = Bystander::start(addr);
    let started = Instant::now();
    let topic = unique_topic("exp");

    // Persistent sessions subscribed at QoS 1, abandoned; one of them will
    // come back before the interval is over.
    let ids: Vec<String> = (0..SESSIONS).map(|_| unique_id("gone")).collect();
    for id in &ids {
        let mut raw = Raw::connected(addr, &Connect::new(id).clean(false), false);
        raw.subscribe(1, &[(&topic, 1)], &[1]);
        raw.send(&DISCONNECT);
        raw.expect_closed();
    }
    let mut publisher = Raw::connected_clean(addr, &unique_id("pub"));
    let payload = vec![b'x'; 1000];
    for id in 1..=MESSAGES {
        publisher.send(&publish(&topic, &payload, 1, false, Some(id)));
        publisher.expect(&puback(id));
    }
    // Every session holds its own copy of each message, sharing one
    // payload per message: what `messages/stored` counts.
    let queued = SESSIONS * usize::from(MESSAGES);

    let mut watcher = Raw::connected_clean(addr, &unique_id("watch"));
    watcher.subscribe(1, &[("$SOL/broker/#", 0)], &[0]);
    let mut seen = HashMap::new();
    // The retained values come first, perhaps from before the publishes:
    // wait for a publication that counts them.
    stats_until(&mut watcher, &mut seen, EXPIRY, |s| {
        (queued as u64..u64::MAX).contains(&value(s, "messages/stored"))
            && value(s, "clients/disconnected") == SESSIONS as u64
    });
    assert!(
        started.elapsed() < EXPIRY,
        "the set-up took longer than the interval: the machine is too slow for this test"
    );

    // Not before the interval: the first one comes back, finds its session
    // and its messages, and stays.
    let mut back = Raw::connected(addr, &Connect::new(&ids[0]).clean(false), true);
    for _ in 0..MESSAGES {
        let message = back.expect_publish();
        back.send(&puback(message.id.unwrap()));
    }

    // After it: the others are gone, and what they held with them.
    stats_until(&mut watcher, &mut seen, EXPIRY + TIMEOUT, |s| {
        value(s, "clients/expired") == SESSIONS as u64 - 1
            && value(s, "clients/disconnected") == 0
            && value(s, "messages/stored") < queued as u64 / 10
    });
    assert!(
        started.elapsed() >= EXPIRY,
        "expired after {:?}",
        started.elapsed()
    );
    // The subscriptions went too: a publish is queued for nobody, and an
    // expired id starts afresh with nothing waiting.
    publisher.send(&publish(&topic, b"late", 1, false, Some(1)));
    publisher.expect(&puback(1));
    back.expect_message(&topic, b"late", 1);
    let mut again = Raw::connected(addr, &Connect::new(&ids[1]).clean(false), false);
    again.expect_silence(Duration::from_millis(200));

    let slowest = bystander.finish_slowest();
    // Bounded loosely: a debug build on a shared machine (the release
    // build's slowest is in docs/reliability.md).
    assert!(
        slowest < Duration::from_secs(1),
        "the bystander waited {slowest:?}"
    );
    broker.assert_alive();
}
