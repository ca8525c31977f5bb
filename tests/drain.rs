//! Output that flows as the socket drains (docs/reliability.md, "Output
//! that flows as the socket drains"): a takeover storm on a persistent
//! session with a full window, the client that comes back after it and
//! reads, idle clients that each read one large message, and clients that
//! send PINGREQs and never read. Each runs beside a QoS 1 bystander whose
//! slowest round trip the attack may lengthen by less than 100 ms.
//!
//! The broker is the `sol` binary, run as a process of its own so that its
//! resident set (`VmRSS`) is its alone, not the test clients'. It runs with
//! `MALLOC_MMAP_THRESHOLD_` fixed at 64 KiB: glibc then serves every large
//! buffer with its own mapping and unmaps it when freed, so RSS shows what
//! the broker holds rather than what the allocator keeps cached. The tests
//! take turns ([`exclusive`]) so that their load does not add up.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use common::*;

const MB: usize = 1024 * 1024;

/// The most an attack may add to the slowest bystander round trip. The
/// slowest one of a quiet second before the attack is the baseline: on a
/// loaded machine the scheduler alone can keep a round trip waiting tens of
/// milliseconds, and that is not the broker's doing.
const ROUND_TRIP: Duration = Duration::from_millis(100);

/// A bystander, started and timed for one quiet second; returns it with
/// the slowest round trip of that second.
fn timed_bystander(addr: SocketAddr) -> (Bystander, Duration) {
    let bystander = Bystander::start(addr);
    thread::sleep(Duration::from_secs(1));
    let quiet = bystander.take_slowest();
    (bystander, quiet)
}

static MEMORY: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    MEMORY.lock().unwrap_or_else(|e| e.into_inner())
}

/// `sol` as a process on a free port, with `extra` config lines; killed
/// on drop.
struct Sol {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Sol {
    fn start(name: &str, extra: &str) -> Sol {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("drain-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sol.log");
        let config = dir.join("sol.conf");
        let stats = if extra.contains("stats_publish_interval") {
            ""
        } else {
            "stats_publish_interval 0\n"
        };
        let lines = format!("ip_port 0\nlog_path {}\n{stats}{extra}", log.display());
        std::fs::write(&config, lines).unwrap();
        // Another build can be measured with the same scenario:
        // `SOL_BINARY=path/to/sol cargo test --test drain -- --nocapture`.
        let binary = std::env::var_os("SOL_BINARY")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sol")), PathBuf::from);
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .env("MALLOC_MMAP_THRESHOLD_", "65536")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("listening on tcp ")) {
                break line.rsplit(' ').next().unwrap().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "sol did not start:\n{text}");
            thread::sleep(Duration::from_millis(20));
        };
        Sol { child, addr, dir }
    }

    /// The broker's resident set in bytes.
    fn rss(&self) -> usize {
        status_rss(&format!("/proc/{}/status", self.child.id()))
    }

    /// What the broker counts against `max_memory` (queued, inflight and
    /// retained messages, output buffers), as its last statistics said.
    fn memory_used(&self) -> usize {
        let mut raw = Raw::connected_clean(self.addr, &unique_id("stats"));
        raw.subscribe(1, &[("$SOL/broker/memory/used", 0)], &[0]);
        let got = raw.expect_publish();
        String::from_utf8_lossy(&got.payload).parse().unwrap()
    }

    /// The broker is still running and answers a new client.
    fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "sol exited");
        let mut raw = Raw::connected_clean(self.addr, &unique_id("alive"));
        raw.ping();
    }
}

impl Drop for Sol {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `VmRSS` of a `/proc/<pid>/status` file, in bytes.
fn status_rss(path: &str) -> usize {
    let status = std::fs::read_to_string(path).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status")
        * 1024
}

/// Samples the broker's RSS every few milliseconds until [`PeakRss::peak`]
/// is asked for: the highest seen.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start(sol: &Sol) -> PeakRss {
        let path = format!("/proc/{}/status", sol.child.id());
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(status_rss(&path)));
        let (stopping, highest) = (stop.clone(), peak.clone());
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                highest.fetch_max(status_rss(&path), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
            }
        });
        PeakRss {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.peak.load(Ordering::SeqCst)
    }
}

/// A socket with a small receive buffer, so that what the broker writes to
/// a client that does not read stays in the broker rather than the kernel.
fn tight_socket(addr: SocketAddr) -> TcpStream {
    try_tight_socket(addr).unwrap()
}

/// [`tight_socket`], or `None` when the broker does not accept it in time.
fn try_tight_socket(addr: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).ok()?;
    socket.set_recv_buffer_size(4096).ok()?;
    socket.connect_timeout(&addr.into(), TIMEOUT).ok()?;
    let stream: TcpStream = socket.into();
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    Some(stream)
}

/// How long a new client waits for its CONNACK, up to `limit`.
fn connack_time(addr: SocketAddr, limit: Duration) -> Duration {
    let asked = Instant::now();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, limit) else {
        return asked.elapsed();
    };
    let _ = stream.set_read_timeout(Some(limit));
    if stream.write_all(&connect(&unique_id("fresh"))).is_ok() {
        let mut connack = [0u8; 4];
        let _ = stream.read_exact(&mut connack);
    }
    asked.elapsed()
}

/// Reads and discards `n` bytes, in pieces of at most 64 KiB.
fn read_exactly(stream: &mut TcpStream, n: usize) {
    let mut buf = [0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let want = left.min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => panic!("closed with {left} of {n} bytes to come"),
            Ok(got) => left -= got,
            Err(e) => panic!("{left} of {n} bytes did not come: {e}"),
        }
    }
}

/// Message `n` of the storm tests: its number in the first two bytes.
fn numbered(n: u16, size: usize) -> Vec<u8> {
    let mut payload = vec![b'x'; size];
    payload[..2].copy_from_slice(&n.to_be_bytes());
    payload
}

const WINDOW: u16 = 100;
const SIZE: usize = 100 * 1024;

/// A persistent session `id`, subscribed to `topic` at QoS 1, left offline
/// with a full window: [`WINDOW`] messages of [`SIZE`] bytes, none
/// acknowledged.
fn session_with_full_window(addr: SocketAddr, id: &str, topic: &str) {
    let mut victim = Raw::connected(addr, &Connect::new(id).clean(false), false);
    victim.subscribe(1, &[(topic, 1)], &[1]);
    let mut publisher = Raw::connected_clean(addr, &unique_id("p"));
    for n in 1..=WINDOW {
        publisher.send(&publish(topic, &numbered(n, SIZE), 1, false, Some(n)));
        publisher.expect(&puback(n));
    }
    victim.drop_connection();
}

/// 10 clients connect with the id of a persistent session whose window
/// holds 10 MB, over and over for 2 s, and never read. Before, each CONNECT
/// copied the whole window into the new connection's output: RSS grew by
/// hundreds of MB and the bystander waited seconds. Now each connection
/// gets the output mark's worth (1 MiB and one message) before it reads.
/// Then the client comes back and reads: it gets every message once, in
/// order, with DUP and its original packet id ([MQTT-4.4.0-1]).
#[test]
fn a_takeover_storm_on_a_full_window_stays_bounded_and_loses_nothing() {
    let _g = exclusive();
    let mut sol = Sol::start("storm", &format!("max_inflight_messages {WINDOW}"));
    let addr = sol.addr;
    let id = unique_id("storm");
    let topic = unique_topic("storm");
    session_with_full_window(addr, &id, &topic);

    let (bystander, quiet) = timed_bystander(addr);
    let before = sol.rss();
    let sampler = PeakRss::start(&sol);
    let connect = Connect::new(&id).clean(false).bytes();
    let until = Instant::now() + Duration::from_secs(2);
    let connects = Arc::new(AtomicUsize::new(0));
    let stormers: Vec<_> = (0..10)
        .map(|_| {
            let connect = connect.clone();
            let connects = connects.clone();
            thread::spawn(move || {
                let mut held = None;
                while Instant::now() < until {
                    let Some(mut stream) = try_tight_socket(addr) else {
                        continue;
                    };
                    if stream.write_all(&connect).is_ok() {
                        connects.fetch_add(1, Ordering::Relaxed);
                    }
                    // The one before is dropped unread.
                    held = Some(stream);
                    thread::sleep(Duration::from_millis(25));
                }
                drop(held);
            })
        })
        .collect();
    // A new client is answered during the storm.
    thread::sleep(Duration::from_millis(500));
    let answered = connack_time(addr, Duration::from_secs(5));
    for stormer in stormers {
        stormer.join().unwrap();
    }
    let peak = sampler.peak();
    let slowest = bystander.slowest();
    let grown = peak.saturating_sub(before);
    println!(
        "{} CONNECTs in 2 s: RSS peak +{} MB, slowest bystander round trip {slowest:?} \
         ({quiet:?} when quiet), a new client answered in {answered:?}",
        connects.load(Ordering::Relaxed),
        grown / MB
    );
    assert!(grown < 48 * MB, "RSS grew by {} MB", grown / MB);
    assert!(
        slowest < quiet + ROUND_TRIP,
        "the bystander waited {slowest:?} ({quiet:?} when quiet)"
    );
    assert!(
        answered < quiet + ROUND_TRIP,
        "a new client waited {answered:?}"
    );
    bystander.finish();

    // The client comes back and reads: the whole window, in order, once.
    let mut back = Raw::connected(addr, &Connect::new(&id).clean(false), true);
    for n in 1..=WINDOW {
        let got = back.expect_publish();
        assert_eq!(got.topic, topic.as_bytes());
        assert_eq!(
            (got.qos, got.dup, got.id),
            (1, true, Some(n)),
            "message {n}"
        );
        assert_eq!(got.payload, numbered(n, SIZE), "message {n}");
        back.send(&puback(n));
    }
    back.expect_silence(Duration::from_millis(200));
    back.send(&DISCONNECT);
    let mut again = Raw::connected(addr, &Connect::new(&id).clean(false), true);
    again.expect_silence(Duration::from_millis(200));
    sol.assert_alive();
}

/// 20 idle clients each read one 1 MB message. Before, each kept the 1 MB
/// output buffer until its next packet (`advance` had left its capacity at
/// 0, which looked like nothing held); now it is freed after the write that
/// empties it.
#[test]
fn idle_clients_that_read_one_large_message_give_its_buffer_back() {
    let _g = exclusive();
    let mut sol = Sol::start("idle", "");
    let addr = sol.addr;
    let topic = unique_topic("big");
    let (bystander, quiet) = timed_bystander(addr);
    // Plain sockets read into one small buffer: the test's own memory must
    // not grow with what the clients read.
    let mut readers: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.write_all(&connect(&unique_id("idle"))).unwrap();
            read_exactly(&mut stream, connack(false, 0).len());
            stream.write_all(&subscribe(1, &[(&topic, 0)])).unwrap();
            read_exactly(&mut stream, suback(1, &[0]).len());
            stream
        })
        .collect();
    let payload = vec![b'm'; MB];
    let delivery = publish(&topic, &payload, 0, false, None).len();
    let before = sol.rss();
    let mut publisher = Raw::connected_clean(addr, &unique_id("p"));
    publisher.send(&publish(&topic, &payload, 1, false, Some(1)));
    publisher.expect(&puback(1));
    for reader in &mut readers {
        read_exactly(reader, delivery);
    }
    // The last writes are done once every reader has its message; give the
    // loop a turn to free what they left.
    thread::sleep(Duration::from_millis(200));
    let held = sol.rss().saturating_sub(before);
    let slowest = bystander.slowest();
    bystander.finish();
    println!(
        "20 idle clients after one 1 MB message each: RSS +{} MB, \
         slowest round trip {slowest:?} ({quiet:?} when quiet)",
        held / MB
    );
    assert!(held < 8 * MB, "20 idle clients hold {} MB", held / MB);
    assert!(
        slowest < quiet + ROUND_TRIP,
        "the bystander waited {slowest:?} ({quiet:?} when quiet)"
    );
    drop(readers);
    sol.assert_alive();
}

/// 2 clients send 8 MB of PINGREQs each and never read. Before, the broker
/// read on until each one's output held 4 MB of PINGRESPs (the fan-out
/// pause mark); now it stops reading a client once 4 KiB of its own
/// replies wait unread.
#[test]
fn clients_that_ping_and_never_read_pin_little() {
    let _g = exclusive();
    let mut sol = Sol::start("ping", "stats_publish_interval 1s");
    let addr = sol.addr;
    let (bystander, quiet) = timed_bystander(addr);
    let before = sol.rss();
    let sampler = PeakRss::start(&sol);
    let pings: Vec<u8> = PINGREQ.iter().copied().cycle().take(8 * MB).collect();
    let pings = Arc::new(pings);
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let pings = pings.clone();
            thread::spawn(move || {
                let mut stream = tight_socket(addr);
                stream
                    .set_write_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                stream.write_all(&connect(&unique_id("ping"))).unwrap();
                // Stops where the broker stops reading: a write that times out.
                let _ = stream.write_all(&pings);
                stream
            })
        })
        .collect();
    let streams: Vec<TcpStream> = flooders.into_iter().map(|t| t.join().unwrap()).collect();
    // Statistics published after the flood ended.
    thread::sleep(Duration::from_millis(1200));
    let counted = sol.memory_used();
    let peak = sampler.peak();
    let slowest = bystander.slowest();
    bystander.finish();
    let grown = peak.saturating_sub(before);
    println!(
        "2 clients x 8 MB of PINGREQs, never reading: {counted} bytes counted held, \
         RSS peak +{} KB, slowest round trip {slowest:?} ({quiet:?} when quiet)",
        grown / 1024
    );
    assert!(counted < 256 * 1024, "{counted} bytes held for them");
    assert!(grown < 2 * MB, "RSS grew by {} KB", grown / 1024);
    assert!(
        slowest < quiet + ROUND_TRIP,
        "the bystander waited {slowest:?} ({quiet:?} when quiet)"
    );
    drop(streams);
    sol.assert_alive();
}
