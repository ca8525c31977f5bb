//! [`Bystander`]: a rumqttc client that keeps publishing to itself at QoS 1
//! while a misbehaving client is being handled, to prove the broker kept
//! serving everyone else; [`with_bystander`] wraps a test in one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{unique_id, unique_topic, Mqtt, QoS, TestBroker, TIMEOUT};

/// A well-behaved client that publishes to its own topic at QoS 1 and waits
/// for each message to come back, over and over, until told to stop.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    /// The slowest round trip so far, in microseconds.
    slowest: Arc<AtomicU64>,
    /// The round trips made and the slowest of them.
    thread: Option<JoinHandle<Result<(u32, Duration), String>>>,
}

impl Bystander {
    /// Connects, subscribes and completes one round trip before returning, so
    /// the bystander is known to work before the bad client starts.
    pub fn start(addr: SocketAddr) -> Bystander {
        let topic = unique_topic("by");
        let mut mqtt = Mqtt::connect(addr, &unique_id("by"));
        assert_eq!(
            mqtt.subscribe(&topic, QoS::AtLeastOnce),
            vec![Some(QoS::AtLeastOnce)]
        );
        round_trip(&mut mqtt, &topic, 0).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let slowest = Arc::new(AtomicU64::new(0));
        let timed = slowest.clone();
        let thread = thread::spawn(move || {
            let mut seq = 1;
            let mut slowest = Duration::ZERO;
            loop {
                // Read the flag before the round trip: the one that follows
                // a stop request is made after the bad client was handled.
                let last = stopping.load(Ordering::SeqCst);
                let sent = Instant::now();
                round_trip(&mut mqtt, &topic, seq)?;
                let took = sent.elapsed();
                slowest = slowest.max(took);
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                timed.fetch_max(micros, Ordering::SeqCst);
                seq += 1;
                if last {
                    mqtt.disconnect();
                    return Ok((seq, slowest));
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Bystander {
            stop,
            slowest,
            thread: Some(thread),
        }
    }

    /// The slowest round trip since [`Bystander::start`] returned, or since
    /// the last [`Bystander::take_slowest`].
    pub fn slowest(&self) -> Duration {
        Duration::from_micros(self.slowest.load(Ordering::SeqCst))
    }

    /// [`Bystander::slowest`], and starts counting afresh: what a quiet
    /// period measured, before an attack starts.
    pub fn take_slowest(&self) -> Duration {
        Duration::from_micros(self.slowest.swap(0, Ordering::SeqCst))
    }

    /// Stops after one more round trip and asserts every round trip worked.
    pub fn finish(self) {
        self.finish_slowest();
    }

    /// The same as [`Bystander::finish_slowest`]: what a test asserts when
    /// the promise is "nobody waits", not just "nobody is dropped".
    pub fn finish_timed(self) -> Duration {
        self.finish_slowest()
    }

    /// [`Bystander::finish`], and returns the slowest round trip, for a
    /// test that bounds how long the bystander may wait.
    pub fn finish_slowest(mut self) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        let result = self.thread.take().unwrap().join();
        match result {
            Ok(Ok((n, slowest))) => {
                assert!(n >= 2, "bystander made {n} round trips");
                slowest
            }
            Ok(Err(e)) => panic!("the bystander lost service: {e}"),
            Err(_) => panic!("the bystander's thread panicked (lost service?)"),
        }
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn round_trip(mqtt: &mut Mqtt, topic: &str, seq: u32) -> Result<(), String> {
    let payload = format!("bystander {seq}");
    mqtt.client
        .publish(topic, QoS::AtLeastOnce, false, payload.clone())
        .map_err(|e| e.to_string())?;
    match mqtt.recv_within(TIMEOUT) {
        Some(p) if p.topic == topic && p.payload.as_ref() == payload.as_bytes() => Ok(()),
        Some(p) => Err(format!("expected {payload:?}, got {p:?}")),
        None => Err(format!("{payload:?} did not come back within {TIMEOUT:?}")),
    }
}

/// Runs `bad` (a misbehaving client) while a [`Bystander`] keeps using the
/// same broker, then asserts the bystander was served throughout and after.
pub fn with_bystander<R>(broker: &TestBroker, bad: impl FnOnce() -> R) -> R {
    let bystander = Bystander::start(broker.addr());
    let result = bad();
    bystander.finish();
    broker.assert_alive();
    result
}
