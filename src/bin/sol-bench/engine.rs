//! The event loop that drives every client of a run.
//!
//! One thread, one `mio` poll. A run has three stages:
//!
//! 1. **Setup**: subscribers connect and subscribe, then publishers connect,
//!    at most `--concurrency` at a time (more would overflow the broker's
//!    listen backlog and turn into one-second SYN retries).
//! 2. **Load**: publishers write PUBLISH packets, up to a batch per loop turn
//!    each, held back by their QoS 1/2 window, by the rate when one is
//!    given, and by the number of deliveries sent but not yet received
//!    (`--outstanding`), so a QoS 0 stream measures the broker's throughput
//!    instead of its drop policy. Subscribers read, verify and acknowledge.
//! 3. **Drain**: publishing stops; the run waits for the last deliveries and
//!    acknowledgements, or `--drain` at most.
//!
//! The broker's CPU time is read at the start of the load and at the end of
//! the drain, so setup and teardown are not counted.
//!
//! This file owns the loop itself: opening the clients, polling, reading
//! and flushing. `load.rs` runs the scenarios on it (the load and drain
//! stages, the conns scenario) and adds up what they counted; `inbound.rs`
//! is what a client does with each packet the broker sends it.

mod inbound;
mod load;

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use slab::Slab;
use sol::protocol::{encode, Connect, Packet, Protocol};

use crate::args::{Options, Scenario, Target};
use crate::client::{Client, Phase, Publisher, Role, Stream, Subscriber, Window};
use crate::procstat::{self, Sample};
use crate::verify::Tracker;
use crate::wire::PublishTemplate;

use inbound::handle;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Outside the latency scenario, one delivery in this many has its latency
/// recorded: enough for percentiles, cheap at millions per second.
const LATENCY_SAMPLING: u64 = 16;

/// What a client is set up to be.
struct Spec {
    role: SpecRole,
    index: usize,
}

#[derive(Clone, Copy)]
enum SpecRole {
    Subscriber,
    Publisher,
    Idle,
}

/// Counters of the load stage.
#[derive(Default)]
struct Stats {
    sent: u64,
    expected: u64,
    received: u64,
    foreign: u64,
    /// Deliveries given up on after a stall.
    forgiven: u64,
    stalls: u64,
    protocol_errors: u64,
    latencies_ns: Vec<u64>,
    last_delivery: Option<Instant>,
}

pub struct Engine {
    opts: Options,
    poll: Poll,
    events: Events,
    clients: Slab<Client>,
    dirty: Vec<usize>,
    scratch: Vec<u8>,
    publishers: Vec<usize>,
    subscribers: Vec<usize>,
    stats: Stats,
    /// Every payload's time is measured from here.
    epoch: Instant,
    /// Run tag: client ids and topics of this run are unique.
    tag: String,
    ready: usize,
    connecting: usize,
    sending: bool,
    last_progress: Instant,
}

fn err(context: &str, e: impl std::fmt::Display) -> String {
    format!("{context}: {e}")
}

impl Engine {
    pub fn new(opts: Options) -> Result<Engine, String> {
        let epoch = Instant::now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!(
            "{:06x}",
            (nanos ^ std::process::id().rotate_left(12)) & 0xff_ffff
        );
        Ok(Engine {
            opts,
            poll: Poll::new().map_err(|e| err("poll", e))?,
            events: Events::with_capacity(1024),
            clients: Slab::new(),
            dirty: Vec::new(),
            scratch: vec![0; READ_CHUNK],
            publishers: Vec::new(),
            subscribers: Vec::new(),
            stats: Stats::default(),
            epoch,
            tag,
            ready: 0,
            connecting: 0,
            sending: false,
            last_progress: epoch,
        })
    }

    fn broker_sample(&self) -> Result<Option<Sample>, String> {
        match self.opts.pid {
            Some(pid) => procstat::sample(&pid.to_string()).map(Some),
            None => Ok(None),
        }
    }

    fn topic(&self, index: usize) -> String {
        match self.opts.scenario {
            Scenario::Pairs => format!("sol-bench/{}/pair/{index}", self.tag),
            s => format!("sol-bench/{}/{}", self.tag, s.name()),
        }
    }

    /// The specs of a scenario: subscribers first, so none misses a message.
    fn specs(&self) -> Vec<Spec> {
        let (pubs, subs) = self.opts.shape();
        let mut specs: Vec<Spec> = (0..subs)
            .map(|index| Spec {
                role: SpecRole::Subscriber,
                index,
            })
            .collect();
        specs.extend((0..pubs).map(|index| Spec {
            role: SpecRole::Publisher,
            index,
        }));
        if self.opts.scenario == Scenario::Conns {
            specs.extend((0..self.opts.conns).map(|index| Spec {
                role: SpecRole::Idle,
                index,
            }));
        }
        specs
    }

    /// Opens one client; `Ok(false)` when the broker's listen queue is
    /// full and the connect should be tried again after a turn.
    fn open(&mut self, spec: &Spec, serial: usize) -> Result<bool, String> {
        let stream = match &self.opts.target {
            Target::Unix(path) => Stream::unix(path),
            Target::Tcp(addr) => Stream::tcp(*addr, self.source(*addr, serial)),
        };
        let stream = match stream {
            Ok(stream) => stream,
            // A Unix socket's connect fails at once with EAGAIN while the
            // listener's backlog is full (a TCP SYN would wait instead).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(err("connect", e)),
        };
        let (pubs, subs) = self.opts.shape();
        let qos = self.opts.qos;
        let (role, filter, letter) = match spec.role {
            SpecRole::Idle => (Role::Idle, None, 'c'),
            SpecRole::Subscriber => {
                let (first_pub, count) = match self.opts.scenario {
                    Scenario::Pairs => (spec.index, 1),
                    _ => (0, pubs),
                };
                let sub = Subscriber {
                    first_pub: first_pub as u32,
                    trackers: vec![Tracker::default(); count],
                };
                (Role::Subscriber(sub), Some(self.topic(spec.index)), 's')
            }
            SpecRole::Publisher => {
                let fanout = match self.opts.scenario {
                    Scenario::Pairs => 1,
                    _ => subs as u64,
                };
                let p = Publisher {
                    id: spec.index as u32,
                    template: PublishTemplate::new(&self.topic(spec.index), qos, self.opts.size),
                    next_seq: 0,
                    window: Window::new(self.opts.inflight),
                    fanout,
                    next_due: None,
                    done: false,
                };
                (Role::Publisher(Box::new(p)), None, 'p')
            }
        };
        let mut client = Client::new(stream, role, filter);
        let connect = Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: self.opts.keepalive,
            client_id: format!("sb{}{letter}{}", self.tag, spec.index),
            will: None,
            username: None,
            password: None,
        };
        encode(&Packet::Connect(Box::new(connect)), &mut client.output);
        client.write_early();
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        client
            .stream
            .register(self.poll.registry(), Token(key))
            .map_err(|e| err("register", e))?;
        entry.insert(client);
        match spec.role {
            SpecRole::Publisher => self.publishers.push(key),
            SpecRole::Subscriber => self.subscribers.push(key),
            SpecRole::Idle => {}
        }
        self.connecting += 1;
        Ok(true)
    }

    /// The source address of the `serial`th TCP client: 127.0.0.1 to
    /// 127.0.0.K in turn, when the broker is on the loopback and K > 1.
    fn source(&self, addr: SocketAddr, serial: usize) -> Option<Ipv4Addr> {
        let k = usize::from(self.opts.sources);
        if k <= 1 || !addr.ip().is_loopback() || !addr.is_ipv4() {
            return None;
        }
        Some(Ipv4Addr::new(127, 0, 0, 1 + (serial % k) as u8))
    }

    /// Connects everything the scenario needs; returns when all are ready.
    fn setup(&mut self) -> Result<Duration, String> {
        let specs = self.specs();
        let started = Instant::now();
        let limit = Duration::from_secs(60) + Duration::from_millis(specs.len() as u64 * 2);
        let mut next = 0;
        while self.ready < specs.len() {
            while self.connecting < self.opts.concurrency {
                let Some(spec) = specs.get(next) else { break };
                if !self.open(spec, next)? {
                    break;
                }
                next += 1;
            }
            self.turn(Some(Duration::from_millis(50)))?;
            if started.elapsed() > limit {
                return Err(format!(
                    "setup: only {} of {} clients ready after {:?}",
                    self.ready,
                    specs.len(),
                    limit
                ));
            }
            let total = specs.len();
            self.progress(|e| format!("setup: {}/{total} clients ready", e.ready));
        }
        Ok(started.elapsed())
    }

    /// One poll and everything it reports; then every dirty client is
    /// flushed.
    fn turn(&mut self, timeout: Option<Duration>) -> Result<(), String> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err("poll", e)),
        }
        let now = Instant::now();
        let keys: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_writable() || e.is_error(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                )
            })
            .collect();
        for (key, writable, readable) in keys {
            if writable {
                self.on_writable(key)?;
            }
            if readable {
                self.on_readable(key, now)?;
            }
        }
        self.flush_dirty()
    }

    fn on_writable(&mut self, key: usize) -> Result<(), String> {
        let Some(c) = self.clients.get_mut(key) else {
            return Ok(());
        };
        if !c.connected {
            if let Some(e) = c.stream.take_error().map_err(|e| err("connect", e))? {
                return Err(err("connect", e));
            }
            c.connected = true;
        }
        c.blocked = false;
        c.flush().map_err(|e| err("write", e))
    }

    fn on_readable(&mut self, key: usize, now: Instant) -> Result<(), String> {
        let Engine {
            clients,
            scratch,
            stats,
            dirty,
            opts,
            epoch,
            ready,
            connecting,
            ..
        } = self;
        let Some(c) = clients.get_mut(key) else {
            return Ok(());
        };
        let now_ns = now.duration_since(*epoch).as_nanos() as u64;
        let every = if opts.scenario == Scenario::Latency {
            1
        } else {
            LATENCY_SAMPLING
        };
        loop {
            let n = match c.stream.read(scratch) {
                Ok(0) => return Err("the broker closed a connection".to_string()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err("read", e)),
            };
            c.input
                .extend_from_slice(scratch.get(..n).unwrap_or_default());
            while let Some(packet) = c
                .decoder
                .decode(&mut c.input)
                .map_err(|e| err("decode", e))?
            {
                let before = c.phase;
                handle(c, packet, stats, opts, now_ns, every)?;
                if before != Phase::Ready && c.phase == Phase::Ready {
                    *ready += 1;
                    *connecting -= 1;
                }
            }
            if !c.output.is_empty() && !c.dirty {
                c.dirty = true;
                dirty.push(key);
            }
            if n < scratch.len() {
                // A short read leaves the socket empty as far as we can tell;
                // epoll reports the next arrival as a new edge (tokio relies
                // on the same), which saves the read that would only return
                // WouldBlock.
                return Ok(());
            }
        }
    }

    fn flush_dirty(&mut self) -> Result<(), String> {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(c) = self.clients.get_mut(key) {
                c.dirty = false;
                c.flush().map_err(|e| err("write", e))?;
            }
        }
        Ok(())
    }

    /// Prints `line` on stderr, at most once a second.
    fn progress(&mut self, line: impl FnOnce(&Engine) -> String) {
        if self.opts.quiet || self.last_progress.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_progress = Instant::now();
        let line = line(self);
        eprintln!("[{} {}] {line}", self.opts.label, self.opts.scenario.name());
    }

    /// Says DISCONNECT to everyone (best effort) and closes the sockets.
    fn disconnect(&mut self) {
        for (_, c) in self.clients.iter_mut() {
            if c.connected {
                encode(&Packet::Disconnect, &mut c.output);
                let _ = c.flush();
            }
        }
        self.clients.clear();
    }
}
