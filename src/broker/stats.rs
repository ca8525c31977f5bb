//! The broker's statistics: the counters the network layer reports
//! ([`Traffic`]), and publishing them under `$SOL/broker/`.
//!
//! Every `stats_publish_interval` (10 s by default) the broker publishes
//! one retained QoS 0 message per statistic, through the same routing as a
//! client's PUBLISH, so that `mosquitto_sub -t '$SOL/#' -v` prints them all
//! at once. The names are mosquitto's `$SYS/broker/` names; each payload is
//! a plain decimal number:
//!
//! | Topic under `$SOL/broker/` | Value |
//! |---|---|
//! | `version` | `sol` and its version (the one payload that is not a number) |
//! | `uptime` | seconds since start |
//! | `uptime/sol` | the same in Martian sols (seconds / 88775.24), the original Sol's joke |
//! | `clients/connected` | clients connected now |
//! | `clients/disconnected` | persistent sessions whose client is offline |
//! | `clients/maximum` | the most clients connected at once |
//! | `clients/expired` | persistent sessions removed by `persistent_client_expiration` |
//! | `clients/total` | connected and disconnected together (sessions held) |
//! | `messages/received` | PUBLISH packets received from clients |
//! | `messages/sent` | PUBLISH packets sent to clients, resends included |
//! | `messages/dropped` | messages dropped: full queues, slow subscribers, `max_memory` |
//! | `messages/stored` | retained, queued and inflight messages held now |
//! | `bytes/received`, `bytes/sent` | bytes read from and written to clients |
//! | `retained messages/count` | retained messages held (these included) |
//! | `subscriptions/count` | subscriptions held |
//! | `memory/used` | bytes counted against `max_memory` |
//! | `load/messages/received/1min` ... | rates per minute, see below |
//!
//! The load figures (`load/{messages,bytes}/{received,sent}/{1min,5min,15min}`)
//! are exponential moving averages of the rate per minute over the last
//! interval, computed as mosquitto computes its `$SYS` load:
//! `load = rate + e^(-interval / window) * (load - rate)`.
//!
//! # What it costs
//!
//! Twenty-eight short messages every interval, whoever listens: each is a
//! trie lookup to replace the retained copy and one to find subscribers,
//! about 50 µs for all of them in a release build. Publishing them all the
//! time, rather than only while someone subscribes to `$SOL`, is what keeps
//! them correct for a subscriber that comes later: it gets the retained
//! values at once, at most one interval old. At the default interval that
//! is five millionths of the CPU.
//!
//! Explained in docs/13-housekeeping.md.

use std::time::{Duration, Instant};

use bytes::Bytes;
use log::info;

use super::{Broker, Outbox, Timer};
use crate::protocol::{QoS, TopicName};
use crate::session::Message;

/// What the network layer has moved and holds, as it reports it through
/// [`Outbox::traffic`](super::Outbox::traffic). Plain numbers: the core
/// learns them without knowing what a socket is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes read from clients since start.
    pub bytes_received: u64,
    /// Bytes written to clients since start.
    pub bytes_sent: u64,
    /// Bytes encoded for clients and not yet written, across every
    /// connection: memory held for clients, counted against `max_memory`.
    pub output_buffered: usize,
}

/// Where the statistics live.
pub const STATS_ROOT: &str = "$SOL/broker";

/// Counters the broker keeps as it works.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
    /// PUBLISH packets sent to clients (resends included).
    pub messages_sent: u64,
    /// Messages dropped: QoS 0 past [`QOS0_OUTPUT_LIMIT`](super::QOS0_OUTPUT_LIMIT), or QoS 1
    /// and 2 past a full session queue.
    pub messages_dropped: u64,
    /// Connections that completed CONNECT since start.
    pub clients_total: u64,
    /// Clients connected now (CONNECT accepted, not yet gone).
    pub clients_connected: u64,
    /// The most clients connected at once since start.
    pub clients_maximum: u64,
    /// Persistent sessions removed by `persistent_client_expiration`.
    pub clients_expired: u64,
}

/// The length of a Martian solar day in seconds, for `uptime/sol`.
const SECONDS_PER_SOL: f64 = 88_775.24;

/// The windows of the load averages, in seconds, and their topic suffixes.
const LOAD_WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// The counters the load averages follow, sampled at each publication.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Sample {
    messages_received: u64,
    messages_sent: u64,
    bytes_received: u64,
    bytes_sent: u64,
}

impl Sample {
    /// The four counters with their topic names under `load/`.
    fn named(&self) -> [(&'static str, u64); 4] {
        [
            ("messages/received", self.messages_received),
            ("messages/sent", self.messages_sent),
            ("bytes/received", self.bytes_received),
            ("bytes/sent", self.bytes_sent),
        ]
    }
}

/// Exponential moving averages of one rate over 1, 5 and 15 minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Load {
    averages: [f64; 3],
}

impl Load {
    /// Folds in `rate` (per minute), observed over the last `elapsed`
    /// seconds.
    fn update(&mut self, rate: f64, elapsed: f64) {
        for (average, (window, _)) in self.averages.iter_mut().zip(LOAD_WINDOWS) {
            let decay = (-elapsed / window).exp();
            *average = rate + decay * (*average - rate);
        }
    }
}

/// The state of the `$SOL/broker/` publication.
pub(super) struct Publisher {
    /// Zero: statistics are off.
    interval: Duration,
    started: Instant,
    /// The previous sample, and when it was taken.
    last: Option<(Instant, Sample)>,
    /// One per counter of [`Sample::named`], in that order.
    loads: [Load; 4],
}

impl Publisher {
    pub(super) fn new(interval: Duration, started: Instant) -> Publisher {
        Publisher {
            interval,
            started,
            last: None,
            loads: [Load::default(); 4],
        }
    }

    pub(super) fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    /// Takes a new sample at `now` and moves the load averages on.
    fn sample(&mut self, now: Instant, sample: Sample) {
        if let Some((then, previous)) = self.last {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            if elapsed > 0.0 {
                let pairs = sample.named().into_iter().zip(previous.named());
                for (load, ((_, new), (_, old))) in self.loads.iter_mut().zip(pairs) {
                    let rate = new.saturating_sub(old) as f64 * 60.0 / elapsed;
                    load.update(rate, elapsed);
                }
            }
        }
        self.last = Some((now, sample));
    }
}

impl Broker {
    /// Publishes every statistic as a retained QoS 0 message, then re-arms.
    pub(super) fn publish_stats(&mut self, now: Instant, out: &mut dyn Outbox) {
        if !self.publisher.enabled() {
            return;
        }
        let traffic = out.traffic();
        self.publisher.sample(
            now,
            Sample {
                messages_received: self.stats.messages_received,
                messages_sent: self.stats.messages_sent,
                bytes_received: traffic.bytes_received,
                bytes_sent: traffic.bytes_sent,
            },
        );
        for (leaf, value) in self.stats_values(now, out) {
            let Ok(topic) = TopicName::new(format!("{STATS_ROOT}/{leaf}")) else {
                continue;
            };
            let message = Message::new(topic, Bytes::from(value), QoS::AtMostOnce, true);
            self.route(message, now, out);
        }
        if let Some(at) = now.checked_add(self.publisher.interval) {
            self.timers.insert(at, Timer::Stats);
        }
    }

    /// Every statistic: its topic below [`STATS_ROOT`] and its payload.
    fn stats_values(&self, now: Instant, out: &dyn Outbox) -> Vec<(String, String)> {
        let uptime = now.saturating_duration_since(self.publisher.started);
        let traffic = out.traffic();
        let disconnected = self
            .sessions
            .iter()
            .filter(|(_, slot)| slot.conn.is_none())
            .count();
        let stored: usize = self.retained.len()
            + self
                .sessions
                .iter()
                .map(|(_, slot)| slot.session.stored_len())
                .sum::<usize>();
        let stats = &self.stats;
        let mut values = vec![
            ("version", format!("sol {}", env!("CARGO_PKG_VERSION"))),
            ("uptime", uptime.as_secs().to_string()),
            (
                "uptime/sol",
                format!("{:.6}", uptime.as_secs_f64() / SECONDS_PER_SOL),
            ),
            ("clients/connected", stats.clients_connected.to_string()),
            ("clients/disconnected", disconnected.to_string()),
            ("clients/maximum", stats.clients_maximum.to_string()),
            ("clients/expired", stats.clients_expired.to_string()),
            ("clients/total", self.sessions.len().to_string()),
            ("messages/received", stats.messages_received.to_string()),
            ("messages/sent", stats.messages_sent.to_string()),
            ("messages/dropped", stats.messages_dropped.to_string()),
            ("messages/stored", stored.to_string()),
            ("bytes/received", traffic.bytes_received.to_string()),
            ("bytes/sent", traffic.bytes_sent.to_string()),
            ("retained messages/count", self.retained.len().to_string()),
            ("subscriptions/count", self.subscription_count().to_string()),
            ("memory/used", self.memory_used(out).to_string()),
        ]
        .into_iter()
        .map(|(leaf, value)| (leaf.to_string(), value))
        .collect::<Vec<_>>();
        let names = Sample::default().named();
        for (load, (name, _)) in self.publisher.loads.iter().zip(names) {
            for (average, (_, window)) in load.averages.iter().zip(LOAD_WINDOWS) {
                values.push((format!("load/{name}/{window}"), format!("{average:.2}")));
            }
        }
        values
    }

    /// The server is stopping: logs what the broker did and holds, and
    /// publishes the wills of the clients about to be disconnected.
    pub fn shutdown(&mut self, now: Instant, out: &mut dyn Outbox) {
        self.publish_wills_at_shutdown(now, out);
        let uptime = now.saturating_duration_since(self.publisher.started);
        info!(
            "Shutting down after {} s: {} client(s) connected, {} session(s) held; \
             messages: {} received, {} sent, {} dropped.",
            uptime.as_secs(),
            self.stats.clients_connected,
            self.sessions.len(),
            self.stats.messages_received,
            self.stats.messages_sent,
            self.stats.messages_dropped,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_steady_rate_is_approached_faster_by_the_short_window() {
        let mut load = Load::default();
        load.update(600.0, 60.0);
        let [one, five, fifteen] = load.averages;
        // After one minute: 1 - e^-1 of the way for the 1 minute average.
        assert!(close(one, 600.0 * (1.0 - (-1.0f64).exp())), "{one}");
        assert!(close(five, 600.0 * (1.0 - (-0.2f64).exp())), "{five}");
        assert!(
            close(fifteen, 600.0 * (1.0 - (-1.0f64 / 15.0).exp())),
            "{fifteen}"
        );
        assert!(one > five && five > fifteen);
        for _ in 0..300 {
            load.update(600.0, 60.0);
        }
        assert!(
            (load.averages[2] - 600.0).abs() < 0.01,
            "{:?}",
            load.averages
        );
    }

    #[test]
    fn silence_decays_the_load() {
        let mut load = Load {
            averages: [100.0; 3],
        };
        load.update(0.0, 60.0);
        assert!(close(load.averages[0], 100.0 * (-1.0f64).exp()));
        assert!(load.averages[0] < load.averages[1]);
    }

    #[test]
    fn samples_turn_counter_deltas_into_rates_per_minute() {
        let t0 = Instant::now();
        let mut publisher = Publisher::new(Duration::from_secs(10), t0);
        publisher.sample(t0, Sample::default());
        assert_eq!(
            publisher.loads,
            [Load::default(); 4],
            "one sample: no rate yet"
        );
        let later = Sample {
            messages_received: 100,
            messages_sent: 0,
            bytes_received: 6000,
            bytes_sent: 60,
        };
        publisher.sample(t0 + Duration::from_secs(10), later);
        // 100 messages in 10 s is 600 a minute, folded in over 10 s.
        let expected = 600.0 * (1.0 - (-10.0f64 / 60.0).exp());
        assert!(close(publisher.loads[0].averages[0], expected));
        assert_eq!(publisher.loads[1], Load::default());
        assert!(close(publisher.loads[2].averages[0], expected * 60.0));
        assert!(close(publisher.loads[3].averages[0], expected * 0.6));
        // No time passed: nothing changes, and nothing divides by zero.
        let before = publisher.loads;
        publisher.sample(t0 + Duration::from_secs(10), later);
        assert_eq!(publisher.loads, before);
    }
}
