//! The five scenarios behind the figures in docs/reliability.md. Each
//! prints what it measured and returns whether the broker met its bound.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Events, Interest, Poll, Token};

use sol::protocol::{Packet, QoS};

use crate::broker::{grown, mib, Broker};
use crate::client::{
    connect_packet, dial, publish_packet, source, subscribe_packet, will, Conn, Probe,
};
use crate::Options;

const MIB: u64 = 1024 * 1024;

/// The remaining-length bytes of `n` (section 2.2.3).
fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = u8::try_from(n % 128).unwrap_or(0);
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// Registers `streams` with a new poll, token = index, for read events.
fn watch(streams: Vec<TcpStream>) -> io::Result<(Poll, Vec<mio::net::TcpStream>)> {
    let poll = Poll::new()?;
    let mut out = Vec::with_capacity(streams.len());
    for (i, s) in streams.into_iter().enumerate() {
        s.set_nonblocking(true)?;
        let mut m = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut m, Token(i), Interest::READABLE)?;
        out.push(m);
    }
    Ok((poll, out))
}

/// Reads what `stream` has. `Ok(None)` once the peer closed or reset it.
fn drain(stream: &mut mio::net::TcpStream) -> Option<usize> {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Pre-auth memory
// ---------------------------------------------------------------------------

/// Fourteen kinds of non-CONNECT first packet (every type but CONNECT and
/// the reserved 0), each announcing a 100 MB body, from `per_kind` sockets
/// per kind at once; every socket then pushes up to 1 MB of that body.
/// Bound: every socket closed, RSS grows < 20 MiB.
pub fn preauth(broker: &mut Broker, o: &Options) -> io::Result<bool> {
    let kinds: [u8; 14] = [
        0x20, 0x30, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    ];
    let mut probe = Probe::open(broker.addr, "preauth")?;
    probe.round_trip(Duration::from_secs(2));
    let before = broker.rss();
    let started = Instant::now();
    let mut sockets = Vec::new();
    for round in 0..o.per_kind {
        for (k, first) in kinds.iter().enumerate() {
            let mut s = dial(broker.addr, source(round * 14 + k), None)?;
            let mut header = vec![*first];
            header.extend(remaining_length(100_000_000));
            s.write_all(&header)?;
            sockets.push(s);
        }
    }
    println!(
        "{} sockets sent their headers in {:?}",
        sockets.len(),
        started.elapsed()
    );
    let body = vec![0u8; 64 * 1024];
    let mut pushed = vec![0usize; sockets.len()];
    let mut done = vec![false; sockets.len()];
    for s in &sockets {
        s.set_nonblocking(true)?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while done.iter().any(|d| !d) && Instant::now() < deadline {
        for (i, s) in sockets.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            match s.write(&body) {
                Ok(n) => {
                    pushed[i] += n;
                    done[i] = pushed[i] >= 1024 * 1024;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => done[i] = true,
            }
        }
        probe.round_trip(Duration::from_secs(2));
    }
    let mut closed = 0;
    for s in &mut sockets {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    let after = broker.rss();
    let total: usize = pushed.iter().sum();
    println!(
        "bodies: {} MiB written into socket buffers before the closes",
        total / (1024 * 1024)
    );
    println!("closed by the broker: {closed} of {}", sockets.len());
    println!(
        "broker RSS: before {}, after {}, grown {}; peak (VmHWM) {}",
        mib(before),
        mib(after),
        mib(grown(before, after)),
        mib(broker.peak_rss())
    );
    for _ in 0..20 {
        probe.round_trip(Duration::from_secs(2));
    }
    println!("bystander: {}", probe.summary());
    Ok(closed == sockets.len() && grown(before, after) < 20 * MIB && probe.failures == 0)
}

// ---------------------------------------------------------------------------
// 2. Sockets that never send CONNECT
// ---------------------------------------------------------------------------

/// `clients` sockets connect and send nothing. Bound: each closed within
/// `connect_timeout + 1 s` of its connect; the bystander is served.
pub fn no_connect(broker: &mut Broker, o: &Options) -> io::Result<bool> {
    let mut probe = Probe::open(broker.addr, "noconnect")?;
    let started = Instant::now();
    let mut streams = Vec::with_capacity(o.clients);
    let mut connected_at = Vec::with_capacity(o.clients);
    for i in 0..o.clients {
        streams.push(dial(broker.addr, source(i), None)?);
        connected_at.push(Instant::now());
    }
    println!("{} sockets connected in {:?}", o.clients, started.elapsed());
    let (mut poll, mut streams) = watch(streams)?;
    let mut closed_after: Vec<Option<Duration>> = vec![None; streams.len()];
    let mut open = streams.len();
    let mut events = Events::with_capacity(4096);
    let deadline = Instant::now() + o.connect_timeout + Duration::from_secs(5);
    let mut next_probe = Instant::now();
    while open > 0 && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        for event in events.iter() {
            let i = event.token().0;
            if closed_after[i].is_none() && drain(&mut streams[i]).is_none() {
                closed_after[i] = Some(connected_at[i].elapsed());
                open -= 1;
            }
        }
        if Instant::now() >= next_probe {
            probe.round_trip(Duration::from_secs(2));
            next_probe = Instant::now() + Duration::from_millis(100);
        }
    }
    let times: Vec<Duration> = closed_after.iter().flatten().copied().collect();
    let bound = o.connect_timeout + Duration::from_secs(1);
    let within = times.iter().filter(|t| **t <= bound).count();
    println!(
        "closed: {} of {}; {within} within connect_timeout + 1 s ({bound:?})",
        times.len(),
        streams.len()
    );
    if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
        println!("close after connect: min {min:?}, max {max:?}");
    }
    println!("bystander: {}", probe.summary());
    println!("broker RSS {}", mib(broker.rss()));
    Ok(within == streams.len() && probe.failures == 0)
}

// ---------------------------------------------------------------------------
// 3. Connection scale
// ---------------------------------------------------------------------------

/// Opens up to `clients` idle clients (keepalive `keepalive`), stopping at
/// the first that fails; holds them for `duration`, each sending PINGREQ
/// every keepalive / 3; then tries `extra` more and checks the held ones
/// still answer. Bound: none dropped, every ping answered.
pub fn scale(broker: &mut Broker, o: &Options) -> io::Result<bool> {
    let rss0 = broker.rss();
    let fds0 = broker.open_fds();
    let keepalive = u16::try_from(o.keepalive.as_secs()).unwrap_or(60);
    let started = Instant::now();
    let mut streams = Vec::new();
    let mut stop = None;
    for i in 0..o.clients {
        let connect = connect_packet(&format!("idle{i}"), true, keepalive, None);
        match Conn::open(broker.addr, source(i), &connect, Duration::from_secs(5)) {
            Ok(conn) => streams.push(conn.stream),
            Err(e) => {
                stop = Some(format!("client {i}: {e}"));
                break;
            }
        }
        if (i + 1) % 5000 == 0 {
            println!("{} connected ({:?})", i + 1, started.elapsed());
        }
    }
    let n = streams.len();
    let rss1 = broker.rss();
    println!(
        "{n} clients connected in {:?}{}",
        started.elapsed(),
        stop.map(|s| format!("; stopped at {s}"))
            .unwrap_or_default()
    );
    println!(
        "broker: RSS {} -> {} ({} per connection); fds {fds0} -> {}",
        mib(rss0),
        mib(rss1),
        grown(rss0, rss1) / u64::try_from(n.max(1)).unwrap_or(1),
        broker.open_fds()
    );

    let (mut poll, mut streams) = watch(streams)?;
    let mut alive = vec![true; n];
    let mut answered = vec![0usize; n];
    let mut events = Events::with_capacity(4096);
    let ping_every = o.keepalive / 3;
    let end = Instant::now() + o.duration;
    let mut rounds = 0usize;
    let mut all_answered = true;
    while Instant::now() < end {
        let (pinged, round_dropped) = ping_round(
            &mut poll,
            &mut events,
            &mut streams,
            &mut alive,
            &mut answered,
        )?;
        rounds += 1;
        let ok = answered.iter().filter(|a| **a >= 2).count();
        all_answered &= ok == pinged;
        println!(
            "t={:>4.0}s pinged {pinged}, answered {ok}, dropped so far {}, RSS {}",
            (o.duration - end.saturating_duration_since(Instant::now())).as_secs_f64(),
            alive.iter().filter(|a| !**a).count() + round_dropped,
            mib(broker.rss())
        );
        let pause = end
            .saturating_duration_since(Instant::now())
            .min(ping_every);
        let until = Instant::now() + pause;
        while Instant::now() < until {
            collect(
                &mut poll,
                &mut events,
                &mut streams,
                &mut alive,
                &mut answered,
                until,
            )?;
        }
    }
    let dropped = alive.iter().filter(|a| !**a).count();
    println!(
        "held {n} clients for {:?}: {rounds} ping rounds, {dropped} dropped",
        o.duration
    );

    // Past the limit.
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut extra = Vec::new();
    for i in 0..o.extra {
        let connect = connect_packet(&format!("extra{i}"), true, keepalive, None);
        let outcome = match dial(broker.addr, source(n + i), None) {
            Err(e) => format!("connect failed: {e}"),
            Ok(s) => {
                let mut conn = Conn::new(s);
                let _ = conn.send(&[connect]);
                let t = Instant::now();
                let o = match conn.next(Duration::from_secs(2)) {
                    Ok(Packet::Connack(c)) => format!("CONNACK {:?}", c.code),
                    Ok(other) => other.name().to_string(),
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        "TCP connected, no CONNACK within 2 s".to_string()
                    }
                    Err(e) => format!("closed after {:?} ({})", t.elapsed(), e.kind()),
                };
                extra.push(conn);
                o
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    for (outcome, count) in &outcomes {
        println!("past the limit: {count} x {outcome}");
    }
    drop(extra);
    let (pinged, _) = ping_round(
        &mut poll,
        &mut events,
        &mut streams,
        &mut alive,
        &mut answered,
    )?;
    let ok = answered.iter().filter(|a| **a >= 2).count();
    println!("after the extra attempts: pinged {pinged}, answered {ok}");
    let dropped = alive.iter().filter(|a| !**a).count();
    Ok(dropped == 0 && all_answered && ok == pinged && broker.alive())
}

/// Sends PINGREQ to every live client and collects the answers for up to
/// 10 s. Returns (pinged, dropped during the round).
fn ping_round(
    poll: &mut Poll,
    events: &mut Events,
    streams: &mut [mio::net::TcpStream],
    alive: &mut [bool],
    answered: &mut [usize],
) -> io::Result<(usize, usize)> {
    let mut pinged = 0;
    let before = alive.iter().filter(|a| !**a).count();
    for (i, s) in streams.iter_mut().enumerate() {
        answered[i] = 0;
        if !alive[i] {
            continue;
        }
        match s.write(&[0xC0, 0x00]) {
            Ok(2) => pinged += 1,
            _ => alive[i] = false,
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let done = answered
            .iter()
            .zip(alive.iter())
            .all(|(a, live)| !*live || *a >= 2);
        if done || Instant::now() >= until {
            break;
        }
        collect(poll, events, streams, alive, answered, until)?;
    }
    let after = alive.iter().filter(|a| !**a).count();
    Ok((pinged, after - before))
}

/// One poll: counts the bytes each client got (PINGRESP is two bytes) and
/// marks the closed ones.
fn collect(
    poll: &mut Poll,
    events: &mut Events,
    streams: &mut [mio::net::TcpStream],
    alive: &mut [bool],
    answered: &mut [usize],
    until: Instant,
) -> io::Result<()> {
    let left = until.saturating_duration_since(Instant::now());
    poll.poll(events, Some(left.min(Duration::from_millis(100))))?;
    for event in events.iter() {
        let i = event.token().0;
        if !alive[i] {
            continue;
        }
        match drain(&mut streams[i]) {
            Some(n) => answered[i] += n,
            None => alive[i] = false,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Slow consumer
// ---------------------------------------------------------------------------

/// A QoS 1 subscriber with a 4 KB receive buffer that never reads, while a
/// publisher sends `rate` QoS 1 messages a second to its topic for
/// `duration`. Reports the broker's RSS over time, the dropped counter when
/// the broker publishes one under `$SOL/`, and a bystander's round trips.
/// Bound: RSS in the second half of the run within 5 MiB of its value at
/// the half; the bystander never fails.
pub fn slow_consumer(broker: &mut Broker, o: &Options) -> io::Result<bool> {
    let topic = "soak/slow";
    let mut stuck = Conn::new(dial(broker.addr, source(1), Some(4096))?);
    stuck.send(&[connect_packet("stuck", true, 0, None)])?;
    stuck.next(Duration::from_secs(5))?;
    let sub = subscribe_packet(topic, QoS::AtLeastOnce).ok_or_else(|| io::Error::other("topic"))?;
    stuck.send(&[sub])?;
    stuck.next(Duration::from_secs(5))?;

    let system = watch_system_topics(broker)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let publisher = start_publisher(broker, o, topic, &stop, &sent, &acked)?;

    let mut probe = Probe::open(broker.addr, "slowprobe")?;
    let start = Instant::now();
    let rss0 = broker.rss();
    let mut rss_half = None;
    let mut rss_max_second_half = 0;
    let mut next_report = start;
    while start.elapsed() < o.duration {
        probe.round_trip(Duration::from_secs(2));
        thread::sleep(Duration::from_millis(100));
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            let rss = broker.rss();
            if start.elapsed() >= o.duration / 2 {
                rss_half.get_or_insert(rss);
                rss_max_second_half = rss_max_second_half.max(rss);
            }
            let dropped = system
                .lock()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| k.contains("dropped"))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!(
                "t={:>4.0}s sent {} acked {} RSS {} {}",
                start.elapsed().as_secs_f64(),
                sent.load(Ordering::Relaxed),
                acked.load(Ordering::Relaxed),
                mib(rss),
                if dropped.is_empty() {
                    "(no $SOL dropped counter published)".to_string()
                } else {
                    dropped
                }
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    let rss_half = rss_half.unwrap_or(rss0);
    println!(
        "RSS: start {}, at the half {}, max in the second half {}, peak {}",
        mib(rss0),
        mib(rss_half),
        mib(rss_max_second_half),
        mib(broker.peak_rss())
    );
    println!("bystander: {}", probe.summary());
    let rate = sent.load(Ordering::Relaxed) as f64 / o.duration.as_secs_f64();
    println!("publisher: {rate:.0} msg/s sent on average");
    drop(stuck);
    Ok(grown(rss_half, rss_max_second_half) < 5 * MIB && probe.failures == 0)
}

/// Subscribes to `$SOL/#` and keeps the last payload of each topic.
fn watch_system_topics(broker: &Broker) -> io::Result<Arc<Mutex<HashMap<String, String>>>> {
    let mut monitor = Conn::open(
        broker.addr,
        source(2),
        &connect_packet("soakmonitor", true, 0, None),
        Duration::from_secs(5),
    )?;
    let sub =
        subscribe_packet("$SOL/#", QoS::AtMostOnce).ok_or_else(|| io::Error::other("$SOL"))?;
    monitor.send(&[sub])?;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let keep = seen.clone();
    thread::spawn(move || loop {
        match monitor.next(Duration::from_secs(3600)) {
            Ok(Packet::Publish(p)) => {
                if let Ok(mut m) = keep.lock() {
                    let value = String::from_utf8_lossy(&p.payload).into_owned();
                    m.insert(p.topic.as_str().to_string(), value);
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    });
    Ok(seen)
}

/// Publishes `rate` QoS 1 messages a second until `stop`, in batches every
/// 10 ms; a second thread counts the PUBACKs.
fn start_publisher(
    broker: &Broker,
    o: &Options,
    topic: &str,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicU64>,
    acked: &Arc<AtomicU64>,
) -> io::Result<thread::JoinHandle<()>> {
    let publisher = Conn::open(
        broker.addr,
        source(3),
        &connect_packet("soakpublisher", true, 0, None),
        Duration::from_secs(5),
    )?;
    let mut acks = publisher.stream.try_clone()?;
    let counted = acked.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = acks.read(&mut buf) {
            if n == 0 {
                return;
            }
            counted.fetch_add(n as u64 / 4, Ordering::Relaxed);
        }
    });
    let (stop, sent) = (stop.clone(), sent.clone());
    let (rate, payload, topic) = (
        o.rate,
        Bytes::from(vec![b'x'; o.payload]),
        topic.to_string(),
    );
    Ok(thread::spawn(move || {
        let mut publisher = publisher;
        let start = Instant::now();
        let mut id: u16 = 0;
        let mut count: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            let mut batch = Vec::new();
            while count < due {
                id = id.wrapping_add(1).max(1);
                if let Some(p) = publish_packet(&topic, QoS::AtLeastOnce, id, payload.clone()) {
                    batch.push(p);
                }
                count += 1;
            }
            if publisher.send(&batch).is_err() {
                return;
            }
            sent.store(count, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(10));
        }
    }))
}

// ---------------------------------------------------------------------------
// 5. Keepalive
// ---------------------------------------------------------------------------

/// `clients` clients with keepalive `keepalive` and a will each go silent
/// after CONNACK. Bound: each closed between 1.5 x keepalive and 1.5 x
/// keepalive + 1 s after its CONNACK, each will published exactly once.
pub fn keepalive(broker: &mut Broker, o: &Options) -> io::Result<bool> {
    let keepalive = u16::try_from(o.keepalive.as_secs()).unwrap_or(2);
    let wills = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut watcher = Conn::open(
        broker.addr,
        source(1),
        &connect_packet("soakwatcher", true, 0, None),
        Duration::from_secs(5),
    )?;
    let sub = subscribe_packet("soak/will/#", QoS::AtLeastOnce)
        .ok_or_else(|| io::Error::other("filter"))?;
    watcher.send(&[sub])?;
    watcher.next(Duration::from_secs(5))?;
    let counts = wills.clone();
    thread::spawn(move || loop {
        match watcher.next(Duration::from_secs(3600)) {
            Ok(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    let _ = watcher.send(&[Packet::Puback(id)]);
                }
                if let Ok(mut m) = counts.lock() {
                    *m.entry(p.topic.as_str().to_string()).or_default() += 1;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    });

    let mut streams = Vec::new();
    let mut connacked = Vec::new();
    for i in 0..o.clients {
        let packet = connect_packet(
            &format!("silent{i}"),
            true,
            keepalive,
            will(&format!("soak/will/{i}"), "gone"),
        );
        let conn = Conn::open(broker.addr, source(i), &packet, Duration::from_secs(5))?;
        connacked.push(Instant::now());
        streams.push(conn.stream);
    }
    let (mut poll, mut streams) = watch(streams)?;
    let mut closed_after: Vec<Option<Duration>> = vec![None; streams.len()];
    let mut events = Events::with_capacity(1024);
    let grace = o.keepalive.mul_f64(1.5);
    let deadline = Instant::now() + grace + Duration::from_secs(5);
    while closed_after.iter().any(Option::is_none) && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for event in events.iter() {
            let i = event.token().0;
            if closed_after[i].is_none() && drain(&mut streams[i]).is_none() {
                closed_after[i] = Some(connacked[i].elapsed());
            }
        }
    }
    // Time for every will to arrive, and for any second copy to show.
    thread::sleep(Duration::from_secs(2));
    let times: Vec<Duration> = closed_after.iter().flatten().copied().collect();
    let within = times
        .iter()
        .filter(|t| **t >= grace && **t <= grace + Duration::from_secs(1))
        .count();
    let counts = wills.lock().map(|m| m.clone()).unwrap_or_default();
    let once = (0..o.clients)
        .filter(|i| counts.get(&format!("soak/will/{i}")) == Some(&1))
        .count();
    let extra: usize = counts.values().map(|c| c.saturating_sub(1)).sum();
    println!(
        "keepalive {keepalive} s: {} of {} closed; {within} within [{grace:?}, {grace:?} + 1 s]",
        times.len(),
        o.clients
    );
    if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
        println!("close after CONNACK: min {min:?}, max {max:?}");
    }
    println!(
        "wills: {once} of {} published exactly once, {extra} extra copies",
        o.clients
    );
    Ok(within == o.clients && once == o.clients && extra == 0)
}
