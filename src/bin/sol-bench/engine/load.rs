//! The scenarios run on the [`Engine`]'s loop: the load and drain stages
//! of a message scenario (publishers held to their batch, window, rate and
//! `--outstanding`; a stalled QoS 0 stream forgiven), the conns scenario,
//! and the counts a run adds up at its end.

use std::time::{Duration, Instant};

use sol::protocol::QoS;

use super::Engine;
use crate::client::{Client, Phase, Role};
use crate::procstat;
use crate::report::{ConnsResult, LoadResult, Measures};
use crate::verify::Counts;
use crate::wire::Stamp;

/// A publisher stops filling its buffer past this many bytes in one turn.
const HIGH_WATER: usize = 64 * 1024;
/// At most this many messages per publisher per loop turn, so that reads
/// are served between bursts.
const BATCH: usize = 256;
/// A QoS 0 stream held back by `--outstanding` that receives nothing for
/// this long counts the missing deliveries as lost and goes on.
const STALL: Duration = Duration::from_millis(500);

impl Engine {
    /// Publishers write what their limits allow. True when one stopped only
    /// at its batch size, so the loop should come straight back.
    fn pump(&mut self, now: Instant) -> bool {
        let Engine {
            clients,
            publishers,
            stats,
            dirty,
            opts,
            epoch,
            sending,
            ..
        } = self;
        let cap = opts.outstanding;
        let interval = opts.rate.map(|r| Duration::from_secs_f64(1.0 / r));
        let mut hot = false;
        for &key in publishers.iter() {
            let Some(c) = clients.get_mut(key) else {
                continue;
            };
            if c.blocked || c.phase != Phase::Ready {
                continue;
            }
            let Role::Publisher(p) = &mut c.role else {
                continue;
            };
            let mut n = 0;
            while n < BATCH && c.output.len() < HIGH_WATER {
                if !*sending || p.done {
                    break;
                }
                if opts.messages.is_some_and(|m| u64::from(p.next_seq) >= m) {
                    p.done = true;
                    break;
                }
                let due = p.next_due.unwrap_or(now);
                if interval.is_some() && due > now {
                    break;
                }
                let outstanding = stats.expected - stats.received - stats.forgiven;
                if outstanding + p.fanout > cap.max(p.fanout) {
                    break;
                }
                let id = if opts.qos == QoS::AtMostOnce {
                    0
                } else {
                    match p.window.acquire() {
                        Some(id) => id,
                        None => break,
                    }
                };
                let sent_ns = if interval.is_some() {
                    Instant::now().duration_since(*epoch).as_nanos() as u64
                } else {
                    now.duration_since(*epoch).as_nanos() as u64
                };
                let stamp = Stamp {
                    publisher: p.id,
                    seq: p.next_seq,
                    sent_ns,
                };
                p.template.write(&mut c.output, id, stamp);
                p.next_seq += 1;
                stats.sent += 1;
                stats.expected += p.fanout;
                if let Some(i) = interval {
                    // Behind schedule by more than a second: catch up by
                    // skipping, not by a burst that measures a queue.
                    let next = due + i;
                    p.next_due = Some(if next + Duration::from_secs(1) < now {
                        now
                    } else {
                        next
                    });
                }
                n += 1;
            }
            if n == BATCH || c.output.len() >= HIGH_WATER {
                hot = true;
            }
            if n > 0 && !c.dirty {
                c.dirty = true;
                dirty.push(key);
            }
        }
        hot
    }

    /// Time until the next rate-limited publisher is due.
    fn next_due(&self, now: Instant) -> Option<Duration> {
        self.opts.rate?;
        self.publishers
            .iter()
            .filter_map(|&k| match &self.clients.get(k)?.role {
                Role::Publisher(p) if !p.done => p.next_due,
                _ => None,
            })
            .min()
            .map(|due| due.saturating_duration_since(now))
    }

    fn all_sent(&self) -> bool {
        self.publishers.iter().all(|&k| match self.clients.get(k) {
            Some(Client {
                role: Role::Publisher(p),
                ..
            }) => p.done,
            _ => true,
        })
    }

    fn windows_empty(&self) -> bool {
        self.publishers.iter().all(|&k| match self.clients.get(k) {
            Some(Client {
                role: Role::Publisher(p),
                ..
            }) => p.window.inflight == 0,
            _ => true,
        })
    }

    fn load_line(&self, start: Instant) -> String {
        let secs = start.elapsed().as_secs_f64();
        format!(
            "{secs:5.1}s sent {} received {} ({:.0}/s)",
            self.stats.sent,
            self.stats.received,
            self.stats.received as f64 / secs.max(1e-9)
        )
    }

    /// Runs the load and drain stages of a message scenario.
    pub fn run_load(mut self) -> Result<LoadResult, String> {
        let setup = self.setup()?;
        let broker_before = self.broker_sample()?;
        let bench_before = procstat::sample("self")?;
        let start = Instant::now();
        self.stats.last_delivery = Some(start);
        for &key in &self.publishers {
            if let Some(Client {
                role: Role::Publisher(p),
                ..
            }) = self.clients.get_mut(key)
            {
                p.next_due = self.opts.rate.map(|_| start);
            }
        }
        self.sending = true;
        let deadline = start + self.opts.duration;
        let mut stopped: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.sending && (self.opts.messages.is_none() && now >= deadline || self.all_sent())
            {
                self.sending = false;
            }
            if !self.sending {
                let at = *stopped.get_or_insert(now);
                let received = self.stats.received + self.stats.forgiven;
                if received >= self.stats.expected && self.windows_empty() {
                    break;
                }
                // Nothing arrived for a second after the last send: what is
                // missing is lost, no need to sit out all of --drain.
                let quiet = self
                    .stats
                    .last_delivery
                    .map_or(true, |t| now.duration_since(t) > STALL * 2);
                if now.duration_since(at) > self.opts.drain
                    || quiet && now.duration_since(at) > STALL * 2
                {
                    break;
                }
            }
            self.unstall(now);
            let hot = self.pump(now);
            self.flush_dirty()?;
            let timeout = if hot {
                Some(Duration::ZERO)
            } else {
                let tick = Duration::from_millis(100);
                Some(self.next_due(now).map_or(tick, |d| d.min(tick)))
            };
            self.turn(timeout)?;
            self.progress(|e| e.load_line(start));
        }
        let end = self.stats.last_delivery.unwrap_or(start).max(start);
        let broker_after = self.broker_sample()?;
        let bench_after = procstat::sample("self")?;
        let counts = self.counts();
        let measures = Measures::new(broker_before, broker_after, bench_before, bench_after);
        let mut latencies = std::mem::take(&mut self.stats.latencies_ns);
        latencies.sort_unstable();
        self.disconnect();
        Ok(LoadResult {
            opts: self.opts.clone(),
            setup,
            elapsed: end.duration_since(start),
            counts,
            stalls: self.stats.stalls,
            protocol_errors: self.stats.protocol_errors,
            latencies_ns: latencies,
            measures,
        })
    }

    /// A QoS 0 stream that stopped moving: the broker dropped what is
    /// outstanding. Count it lost (the verification reports it) and go on.
    fn unstall(&mut self, now: Instant) {
        let last = self.stats.last_delivery.unwrap_or(now);
        let outstanding = self.stats.expected - self.stats.received - self.stats.forgiven;
        if self.sending && outstanding > 0 && now.duration_since(last) > STALL {
            self.stats.forgiven += outstanding;
            self.stats.stalls += 1;
            self.stats.last_delivery = Some(now);
        }
    }

    fn counts(&self) -> Counts {
        let mut sent_by: Vec<u64> = Vec::new();
        for &k in &self.publishers {
            if let Some(Client {
                role: Role::Publisher(p),
                ..
            }) = self.clients.get(k)
            {
                let id = p.id as usize;
                if sent_by.len() <= id {
                    sent_by.resize(id + 1, 0);
                }
                if let Some(slot) = sent_by.get_mut(id) {
                    *slot = u64::from(p.next_seq);
                }
            }
        }
        let mut counts = Counts {
            sent: self.stats.sent,
            expected: self.stats.expected,
            received: self.stats.received,
            foreign: self.stats.foreign,
            ..Counts::default()
        };
        for &k in &self.subscribers {
            if let Some(Client {
                role: Role::Subscriber(s),
                ..
            }) = self.clients.get(k)
            {
                for (i, t) in s.trackers.iter().enumerate() {
                    let sent = sent_by.get(s.first_pub as usize + i).copied().unwrap_or(0);
                    counts.add(t, sent);
                }
            }
        }
        counts
    }

    /// The conns scenario: open idle clients, time it, weigh the broker.
    pub fn run_conns(mut self) -> Result<ConnsResult, String> {
        let broker_before = self.broker_sample()?;
        let bench_before = procstat::sample("self")?;
        let elapsed = self.setup()?;
        let broker_connected = self.broker_sample()?;
        let hold_until = Instant::now() + self.opts.hold;
        while Instant::now() < hold_until {
            self.turn(Some(Duration::from_millis(50)))?;
        }
        let broker_after = self.broker_sample()?;
        let bench_after = procstat::sample("self")?;
        let measures = Measures::new(broker_before, broker_connected, bench_before, bench_after);
        let conns = self.clients.len();
        self.disconnect();
        Ok(ConnsResult {
            opts: self.opts.clone(),
            conns,
            elapsed,
            measures,
            rss_held_kb: broker_after.map(|s| s.rss_kb),
        })
    }
}
