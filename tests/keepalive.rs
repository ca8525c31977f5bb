//! Keepalive, PINGREQ and the connect timeout.

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

/// [MQTT-3.1.2-24]: no packet for one and a half keepalive periods closes
/// the connection. With keepalive 1 s: not before 1.5 s, and not much later.
#[test]
fn silent_client_is_closed_after_one_and_a_half_keepalives() {
    let broker = TestBroker::start();
    let mut raw = Raw::tcp(broker.addr());
    // The clock starts before CONNECT, so it never runs behind the broker's.
    let start = Instant::now();
    raw.send(&Connect::new(&unique_id("k")).keepalive(1).bytes());
    raw.expect(&connack(false, 0));
    // mosquitto 2.0 checks keepalives coarsely: it closes after 1 to 7 s, so
    // against it only the close itself is checked.
    let (earliest, latest) = if broker.is_sol() {
        (Duration::from_millis(1500), Duration::from_millis(2500))
    } else {
        (Duration::from_millis(900), Duration::from_secs(8))
    };
    raw.expect_closed_within(latest + Duration::from_secs(1));
    let took = start.elapsed();
    assert!(
        took >= earliest,
        "closed after {took:?}, before {earliest:?}"
    );
    assert!(took <= latest, "closed only after {took:?}");
}

/// [MQTT-3.12.4-1]: PINGREQ is answered with PINGRESP (D0 00).
#[test]
fn pingreq_gets_pingresp() {
    let broker = TestBroker::start();
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("p"));
    for _ in 0..3 {
        raw.send(&[0xC0, 0x00]);
        raw.expect(&[0xD0, 0x00]);
    }
}

/// PINGREQs every half second keep a keepalive-1 connection open well past
/// 1.5 s.
#[test]
fn pings_keep_the_connection_alive() {
    let broker = TestBroker::start();
    let c = Connect::new(&unique_id("p")).keepalive(1);
    let mut raw = Raw::connected(broker.addr(), &c, false);
    for _ in 0..6 {
        sleep(Duration::from_millis(500));
        raw.ping();
    }
}

/// Any packet counts as activity, not just PINGREQ.
#[test]
fn publishes_keep_the_connection_alive() {
    let broker = TestBroker::start();
    let t = unique_topic("a");
    let c = Connect::new(&unique_id("a")).keepalive(1);
    let mut raw = Raw::connected(broker.addr(), &c, false);
    for n in 0..6u16 {
        sleep(Duration::from_millis(500));
        raw.send(&publish(&t, b"alive", 1, false, Some(n + 1)));
        raw.expect(&puback(n + 1));
    }
}

/// Keepalive 0 turns the mechanism off [MQTT-3.1.2-10 note].
#[test]
fn keepalive_zero_never_times_out() {
    let broker = TestBroker::start();
    let c = Connect::new(&unique_id("z")).keepalive(0);
    let mut raw = Raw::connected(broker.addr(), &c, false);
    raw.expect_silence(Duration::from_millis(1800));
    raw.ping();
}

/// sol-only, BAD_INPUTS 31: a socket that never sends CONNECT is closed after
/// `connect_timeout`.
#[test]
fn no_connect_is_closed_after_connect_timeout() {
    let Some(broker) = TestBroker::with(|c| c.connect_timeout = Duration::from_secs(1)) else {
        return;
    };
    let mut raw = Raw::tcp(broker.addr());
    let took = raw.expect_closed_within(Duration::from_secs(3));
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(
        took <= Duration::from_millis(2000),
        "closed only after {took:?}"
    );
}

/// sol-only, BAD_INPUTS 31: a CONNECT trickled in a byte at a time
/// (slowloris) does not extend the connect timeout.
#[test]
fn trickled_connect_is_closed_after_connect_timeout() {
    let Some(broker) = TestBroker::with(|c| c.connect_timeout = Duration::from_secs(1)) else {
        return;
    };
    let bytes = connect(&unique_id("slowloris"));
    let mut raw = Raw::tcp(broker.addr());
    let start = Instant::now();
    for byte in bytes.iter().take(bytes.len() - 1) {
        if raw.try_send(&[*byte]).is_err() || raw.closes_within(Duration::from_millis(150)) {
            break;
        }
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "still open after {took:?} of trickling"
    );
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    raw.expect_closed();
}

/// A subscriber that reads slowly from a busy topic, but pings on time, is
/// alive: the broker must keep reading its PINGREQs even while its output
/// is backed up with messages from others.
#[test]
fn a_slow_reader_that_pings_is_not_closed_for_keepalive() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    let Some(broker) = TestBroker::sol_only("input throttling vs keepalive") else {
        return;
    };
    let topic = unique_topic("hose");
    let mut sub = TcpStream::connect(broker.addr()).unwrap();
    sub.write_all(&Connect::new(&unique_id("slow")).keepalive(2).bytes())
        .unwrap();
    sub.write_all(&subscribe(1, &[(&topic, 0)])).unwrap();
    sub.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stop, addr, topic) = (stop.clone(), broker.addr(), topic.clone());
        std::thread::spawn(move || {
            let mut publisher = Raw::connected_clean(addr, &unique_id("p"));
            let batch = publish(&topic, &[b'x'; 1024], 0, false, None).repeat(64);
            while !stop.load(Ordering::Relaxed) {
                if publisher.try_send(&batch).is_err() {
                    break;
                }
            }
        })
    };
    let start = Instant::now();
    let mut last_ping = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut closed = None;
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(0) = sub.read(&mut buf) {
            closed = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if last_ping.elapsed() >= Duration::from_secs(1) {
            if sub.write_all(&PINGREQ).is_err() {
                closed = Some(start.elapsed());
                break;
            }
            last_ping = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert_eq!(closed, None, "a live, pinging subscriber was closed");
}
