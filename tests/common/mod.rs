//! Helpers shared by the integration tests.
//!
//! - [`TestBroker`]: a sol broker on 127.0.0.1 port 0 and a Unix socket in a
//!   fresh temporary directory, run on its own thread and stopped on drop. With
//!   `SOL_TEST_BROKER=host:port` (and optionally `SOL_TEST_UNIX=path`) in the
//!   environment the tests talk to that broker instead, which is how they are
//!   checked against mosquitto; a test that needs sol's own configuration or
//!   behaviour then skips itself with a printed note, unless
//!   `SOL_TEST_RUN_ALL=1` asks to run it anyway (against an external broker
//!   configured by hand to match, to check the test itself).
//! - [`Raw`]: a client that sends and expects exact bytes, over TCP or a Unix
//!   socket, for everything a well-behaved library would refuse to send.
//! - The byte builders ([`connect`], [`publish`], [`subscribe`], ...) are
//!   written here by hand from the standard's section 3 and deliberately share
//!   no code with sol's encoder: a test built on the code it tests cannot fail.
//! - [`Mqtt`]: a well-behaved client (rumqttc) driven from a background thread.
//! - [`Bystander`]: a rumqttc client that keeps publishing to itself at QoS 1
//!   while a misbehaving client is being handled, to prove the broker kept
//!   serving everyone else.

#![allow(dead_code)]

pub mod tls;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sol::config::Config;
use sol::net::{Server, ServerHandle};

pub use rumqttc::QoS;

/// How long a test waits for something that should happen. Only a failing test
/// waits this long, so it is generous for a loaded machine.
pub const TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// A client id no other test (in this process or an earlier run against the
/// same external broker) uses: at most 23 characters of `[0-9a-zA-Z]`, the
/// set every server must accept [MQTT-3.1.3-5]. `prefix` should be short.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    let seed = nanos ^ std::process::id().rotate_left(16);
    let prefix: String = prefix.chars().take(8).collect();
    let mut id = format!("{prefix}{seed:08x}{n}");
    id.truncate(23);
    id
}

/// A topic prefix no other test uses, so retained messages and wildcard
/// subscriptions of different tests never meet on a shared broker.
pub fn unique_topic(prefix: &str) -> String {
    format!("test/{}", unique_id(prefix))
}

// ---------------------------------------------------------------------------
// The broker under test
// ---------------------------------------------------------------------------

/// A broker for one test: sol on a thread, or the external broker named by
/// `SOL_TEST_BROKER`.
pub struct TestBroker {
    addr: SocketAddr,
    unix: Option<PathBuf>,
    running: Option<Running>,
    /// The TLS listener, when the configuration asked for one.
    tls: Option<SocketAddr>,
}

struct Running {
    handle: ServerHandle,
    done: Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
}

/// The external broker, if the tests are pointed at one.
fn external() -> Option<(SocketAddr, Option<PathBuf>)> {
    let addr = std::env::var("SOL_TEST_BROKER").ok()?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("SOL_TEST_BROKER={addr} is not host:port"));
    let unix = std::env::var_os("SOL_TEST_UNIX").map(PathBuf::from);
    Some((addr, unix))
}

/// True when the tests run against an external broker.
pub fn is_external() -> bool {
    std::env::var_os("SOL_TEST_BROKER").is_some()
}

/// True when a sol-only test must skip itself: an external broker, and no
/// `SOL_TEST_RUN_ALL=1`.
fn skip(reason: &str) -> bool {
    if !is_external() || std::env::var_os("SOL_TEST_RUN_ALL").is_some_and(|v| v == "1") {
        return false;
    }
    println!("skipped against the external broker (SOL_TEST_BROKER): {reason}");
    true
}

impl TestBroker {
    /// sol with the default configuration (or the external broker).
    pub fn start() -> TestBroker {
        match external() {
            Some((addr, unix)) => TestBroker {
                addr,
                unix,
                running: None,
                tls: None,
            },
            None => TestBroker::start_sol(|_| {}),
        }
    }

    /// sol with `tweak` applied to the default configuration. `None` against
    /// an external broker, whose configuration a test cannot change: the test
    /// then returns (a note is printed).
    pub fn with(tweak: impl FnOnce(&mut Config)) -> Option<TestBroker> {
        if skip("needs a custom sol configuration") {
            return None;
        }
        if is_external() {
            return Some(TestBroker::start());
        }
        Some(TestBroker::start_sol(tweak))
    }

    /// sol with the default configuration, for a test of behaviour that sol
    /// requires and the external broker does not have. `None` (with `reason`
    /// printed) against an external broker.
    pub fn sol_only(reason: &str) -> Option<TestBroker> {
        if skip(reason) {
            return None;
        }
        Some(TestBroker::start())
    }

    fn start_sol(tweak: impl FnOnce(&mut Config)) -> TestBroker {
        let dir = std::env::temp_dir().join(format!("sol-test-{}", unique_id("")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config {
            ip_address: "127.0.0.1".to_string(),
            ip_port: 0,
            tcp_enabled: true,
            unix_socket: Some(dir.join("sol.sock")),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::bind(&config).expect("sol binds its listeners");
        let addr = server.tcp_addr().expect("sol has a TCP listener");
        let unix = server.unix_path().map(Path::to_path_buf);
        let tls = server.tls_addr();
        let handle = server.handle();
        let (tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("sol".to_string())
            .spawn(move || {
                let _ = tx.send(server.run());
            })
            .unwrap();
        TestBroker {
            addr,
            unix,
            running: Some(Running {
                handle,
                done,
                thread: Some(thread),
                dir,
            }),
            tls,
        }
    }

    /// The TCP address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Unix socket's path: always there for sol; for an external broker
    /// only when `SOL_TEST_UNIX` names it.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_deref()
    }

    /// The TLS listener's address; panics if the configuration had none.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls.expect("the test broker has no TLS listener")
    }

    /// Asks sol to reload its password, ACL and certificate files, as SIGHUP
    /// does; returns once the loop has done it (a PINGREQ round trip made
    /// after the request cannot complete before the reload).
    pub fn reload(&self) {
        let running = self.running.as_ref().expect("reload needs sol itself");
        running.handle.reload();
        let mut raw = Raw::connected_clean(self.addr, &unique_id("reload"));
        raw.send(&PINGREQ);
        raw.expect(&PINGRESP);
    }

    /// Whether this is sol started by the test (not an external broker).
    pub fn is_sol(&self) -> bool {
        self.running.is_some()
    }

    /// Whether to check a part of a test where sol's required behaviour is
    /// stricter than the external broker's: true for sol (and with
    /// `SOL_TEST_RUN_ALL=1`); otherwise prints `reason` and returns false.
    pub fn checks_sol_only(&self, reason: &str) -> bool {
        self.is_sol() || !skip(reason)
    }

    /// Panics if sol's loop has already stopped (returned or panicked): a
    /// broker that died while handling a bad client must fail the test even if
    /// the test's own assertions happened to pass.
    pub fn assert_alive(&self) {
        if let Some(running) = &self.running {
            match running.done.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {}
                Ok(result) => panic!("sol's loop stopped on its own: {result:?}"),
                Err(mpsc::TryRecvError::Disconnected) => panic!("sol's loop panicked"),
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        running.handle.shutdown();
        let outcome = running.done.recv_timeout(Duration::from_secs(5));
        if let Some(thread) = running.thread.take() {
            if !matches!(outcome, Err(RecvTimeoutError::Timeout)) {
                let _ = thread.join();
            }
        }
        let _ = std::fs::remove_dir_all(&running.dir);
        if thread::panicking() {
            return;
        }
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("sol's loop returned an error: {e}"),
            Err(RecvTimeoutError::Timeout) => panic!("sol did not stop within 5 s of shutdown"),
            Err(RecvTimeoutError::Disconnected) => panic!("sol's loop panicked"),
        }
    }
}

// ---------------------------------------------------------------------------
// Byte builders: MQTT 3.1.1 packets written out by hand
// ---------------------------------------------------------------------------

/// The variable-length "remaining length" of the fixed header (§2.2.3).
pub fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
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

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string (§1.5.3), from raw bytes so tests can send
/// invalid UTF-8.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A will for [`Connect`].
#[derive(Clone, Debug)]
pub struct Will {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// A CONNECT packet, field by field, so tests can get any of them wrong.
#[derive(Clone, Debug)]
pub struct Connect {
    pub protocol_name: Vec<u8>,
    pub level: u8,
    pub client_id: Vec<u8>,
    pub clean: bool,
    pub keepalive: u16,
    pub will: Option<Will>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    /// OR-ed into the flags byte after the others, to set reserved or
    /// inconsistent bits.
    pub extra_flags: u8,
}

impl Connect {
    /// MQTT 3.1.1, clean session, keepalive 60 s.
    pub fn new(client_id: &str) -> Connect {
        Connect {
            protocol_name: b"MQTT".to_vec(),
            level: 4,
            client_id: client_id.as_bytes().to_vec(),
            clean: true,
            keepalive: 60,
            will: None,
            username: None,
            password: None,
            extra_flags: 0,
        }
    }

    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    pub fn keepalive(mut self, seconds: u16) -> Connect {
        self.keepalive = seconds;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Connect {
        self.will = Some(Will {
            topic: topic.as_bytes().to_vec(),
            payload: payload.to_vec(),
            qos,
            retain,
        });
        self
    }

    pub fn flags(&self) -> u8 {
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        flags | self.extra_flags
    }

    /// The body: variable header and payload, without the fixed header.
    pub fn body(&self) -> Vec<u8> {
        let mut body = string(&self.protocol_name);
        body.push(self.level);
        body.push(self.flags());
        body.extend(self.keepalive.to_be_bytes());
        body.extend(string(&self.client_id));
        if let Some(will) = &self.will {
            body.extend(string(&will.topic));
            body.extend(string(&will.payload));
        }
        if let Some(username) = &self.username {
            body.extend(string(username));
        }
        if let Some(password) = &self.password {
            body.extend(string(password));
        }
        body
    }

    pub fn bytes(&self) -> Vec<u8> {
        packet(0x10, &self.body())
    }
}

/// CONNECT for MQTT 3.1.1 with a clean session and keepalive 60 s.
pub fn connect(client_id: &str) -> Vec<u8> {
    Connect::new(client_id).bytes()
}

/// CONNACK as the broker must send it.
pub fn connack(session_present: bool, code: u8) -> Vec<u8> {
    vec![0x20, 0x02, session_present as u8, code]
}

/// PUBLISH; `id` is required exactly when `qos > 0`.
pub fn publish(topic: &str, payload: &[u8], qos: u8, retain: bool, id: Option<u16>) -> Vec<u8> {
    publish_raw(topic.as_bytes(), payload, qos, retain, false, id)
}

/// PUBLISH with every field under the test's control.
pub fn publish_raw(
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    id: Option<u16>,
) -> Vec<u8> {
    let first = 0x30 | ((dup as u8) << 3) | (qos << 1) | retain as u8;
    let mut body = string(topic);
    if let Some(id) = id {
        body.extend(id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

fn ack(first: u8, id: u16) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    vec![first, 0x02, hi, lo]
}

pub fn puback(id: u16) -> Vec<u8> {
    ack(0x40, id)
}

pub fn pubrec(id: u16) -> Vec<u8> {
    ack(0x50, id)
}

pub fn pubrel(id: u16) -> Vec<u8> {
    ack(0x62, id)
}

pub fn pubcomp(id: u16) -> Vec<u8> {
    ack(0x70, id)
}

pub fn unsuback(id: u16) -> Vec<u8> {
    ack(0xB0, id)
}

/// SUBSCRIBE with (filter, requested QoS) pairs.
pub fn subscribe(id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for (filter, qos) in filters {
        body.extend(string(filter.as_bytes()));
        body.push(*qos);
    }
    packet(0x82, &body)
}

pub fn suback(id: u16, codes: &[u8]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(codes);
    packet(0x90, &body)
}

pub fn unsubscribe(id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for filter in filters {
        body.extend(string(filter.as_bytes()));
    }
    packet(0xA2, &body)
}

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Bytes as `20 02 00 00`, for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 64 { " ..." } else { "" };
    format!("[{}{more}] ({} bytes)", shown.join(" "), bytes.len())
}

// ---------------------------------------------------------------------------
// The raw client
// ---------------------------------------------------------------------------

/// The socket under a [`Raw`] client.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A TLS client session (see [`tls::raw`]).
    Tls(Box<tls::ClientStream>),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tls(s) => s.sock.set_read_timeout(timeout),
        }
    }

    fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                s.sock.shutdown(Shutdown::Both)
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A PUBLISH as received by a [`Raw`] client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: Vec<u8>,
    pub id: Option<u16>,
    pub payload: Vec<u8>,
}

/// What a read within a deadline found.
enum ReadOutcome {
    Data(usize),
    Closed(String),
    TimedOut,
}

/// A client that speaks bytes. Every wait is bounded by [`TIMEOUT`] (or an
/// explicit duration) and a failed expectation panics with the bytes seen.
pub struct Raw {
    stream: Stream,
    /// Bytes read from the socket and not yet consumed by an expectation.
    buffered: VecDeque<u8>,
}

impl Raw {
    pub fn tcp(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        // A broker that stops reading fails the test instead of hanging it.
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Raw {
            stream: Stream::Tcp(stream),
            buffered: VecDeque::new(),
        }
    }

    pub fn unix(path: &Path) -> Raw {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Raw {
            stream: Stream::Unix(stream),
            buffered: VecDeque::new(),
        }
    }

    /// As [`Raw::connected`], over the Unix socket at `path`.
    pub fn connected_unix(path: &Path, connect: &Connect, session_present: bool) -> Raw {
        let mut raw = Raw::unix(path);
        raw.send(&connect.bytes());
        raw.expect(&connack(session_present, 0));
        raw
    }

    /// Opens a TCP connection, sends `connect` and expects CONNACK accepted
    /// with the given session-present flag.
    pub fn connected(addr: SocketAddr, connect: &Connect, session_present: bool) -> Raw {
        let mut raw = Raw::tcp(addr);
        raw.send(&connect.bytes());
        raw.expect(&connack(session_present, 0));
        raw
    }

    /// A clean session with keepalive 60 s and no will.
    pub fn connected_clean(addr: SocketAddr, client_id: &str) -> Raw {
        Raw::connected(addr, &Connect::new(client_id), false)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot send {}: {e}", hex(bytes)));
    }

    /// Sends, tolerating a broker that already closed the connection (tests
    /// that send several bad packets back to back).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the socket without DISCONNECT.
    pub fn drop_connection(mut self) {
        let _ = self.stream.shutdown();
    }

    fn read_some(&mut self, deadline: Instant) -> ReadOutcome {
        let now = Instant::now();
        if now >= deadline {
            return ReadOutcome::TimedOut;
        }
        self.stream.set_read_timeout(Some(deadline - now)).unwrap();
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => ReadOutcome::Closed("end of stream".to_string()),
            Ok(n) => {
                self.buffered.extend(buf.iter().take(n));
                ReadOutcome::Data(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                ReadOutcome::TimedOut
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Data(0),
            Err(e) => ReadOutcome::Closed(e.to_string()),
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.buffered.drain(..n).collect()
    }

    /// Reads exactly `expected.len()` bytes within [`TIMEOUT`] and asserts
    /// they are `expected`.
    pub fn expect(&mut self, expected: &[u8]) {
        let deadline = Instant::now() + TIMEOUT;
        while self.buffered.len() < expected.len() {
            match self.read_some(deadline) {
                ReadOutcome::Data(_) => {}
                ReadOutcome::Closed(why) => panic!(
                    "expected {} but the connection closed ({why}) after {}",
                    hex(expected),
                    hex(&self.take(self.buffered.len()))
                ),
                ReadOutcome::TimedOut => panic!(
                    "expected {} within {TIMEOUT:?}, got only {}",
                    hex(expected),
                    hex(&self.take(self.buffered.len()))
                ),
            }
        }
        let got = self.take(expected.len());
        assert_eq!(hex(&got), hex(expected), "unexpected bytes from the broker");
    }

    /// Asserts the broker closes the connection within [`TIMEOUT`] without
    /// sending anything (more).
    pub fn expect_closed(&mut self) {
        self.expect_closed_within(TIMEOUT);
    }

    /// As [`Raw::expect_closed`], with an explicit limit; returns how long the
    /// close took.
    pub fn expect_closed_within(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        let deadline = start + limit;
        loop {
            if !self.buffered.is_empty() {
                let bytes = self.take(self.buffered.len());
                panic!("expected the connection to close, got {}", hex(&bytes));
            }
            match self.read_some(deadline) {
                ReadOutcome::Data(_) => {}
                ReadOutcome::Closed(_) => return start.elapsed(),
                ReadOutcome::TimedOut => {
                    panic!("expected the broker to close the connection within {limit:?}")
                }
            }
        }
    }

    /// Asserts the broker sends either nothing or exactly `allowed` and then
    /// closes. For the few places where the standard lets a server choose
    /// (documented at each call).
    pub fn expect_closed_optionally_after(&mut self, allowed: &[u8]) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self.buffered.len() >= allowed.len() && !self.buffered.is_empty() {
                self.expect(allowed);
                self.expect_closed();
                return;
            }
            match self.read_some(deadline) {
                ReadOutcome::Data(_) => {}
                ReadOutcome::Closed(_) if self.buffered.is_empty() => return,
                ReadOutcome::Closed(why) => panic!(
                    "expected nothing or {} before the close ({why}), got {}",
                    hex(allowed),
                    hex(&self.take(self.buffered.len()))
                ),
                ReadOutcome::TimedOut => {
                    panic!("expected the broker to close the connection within {TIMEOUT:?}")
                }
            }
        }
    }

    /// Waits up to `limit`: `true` if the broker closed the connection,
    /// `false` if it stayed open and silent. Panics on any bytes.
    pub fn closes_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if !self.buffered.is_empty() {
                let bytes = self.take(self.buffered.len());
                panic!("expected silence or a close, got {}", hex(&bytes));
            }
            match self.read_some(deadline) {
                ReadOutcome::Data(_) => {}
                ReadOutcome::Closed(_) => return true,
                ReadOutcome::TimedOut => return false,
            }
        }
    }

    /// Asserts the connection stays open and silent for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        loop {
            if !self.buffered.is_empty() {
                let bytes = self.take(self.buffered.len());
                panic!("expected silence for {quiet:?}, got {}", hex(&bytes));
            }
            match self.read_some(deadline) {
                ReadOutcome::Data(_) => {}
                ReadOutcome::Closed(why) => {
                    panic!("expected silence, the connection closed ({why})")
                }
                ReadOutcome::TimedOut => return,
            }
        }
    }

    /// Reads one whole packet (fixed header included) within [`TIMEOUT`].
    pub fn read_packet(&mut self) -> Vec<u8> {
        match self.read_packet_within(TIMEOUT) {
            Some(packet) => packet,
            None => panic!(
                "expected a packet within {TIMEOUT:?}, got {}",
                hex(&self.take(self.buffered.len()))
            ),
        }
    }

    /// One whole packet, or `None` if none is complete within `limit`.
    /// Panics if the connection closes.
    pub fn read_packet_within(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(total) = packet_len(self.buffered.make_contiguous()) {
                if self.buffered.len() >= total {
                    return Some(self.take(total));
                }
            }
            match self.read_some(deadline) {
                ReadOutcome::Data(_) => {}
                ReadOutcome::Closed(why) => panic!(
                    "expected a packet, the connection closed ({why}) after {}",
                    hex(&self.take(self.buffered.len()))
                ),
                ReadOutcome::TimedOut => return None,
            }
        }
    }

    /// Reads one packet and asserts it is a PUBLISH.
    pub fn expect_publish(&mut self) -> Received {
        let bytes = self.read_packet();
        parse_publish(&bytes).unwrap_or_else(|| panic!("expected PUBLISH, got {}", hex(&bytes)))
    }

    /// Reads one PUBLISH and asserts its topic, payload and QoS; returns it
    /// (with the packet id the broker chose).
    pub fn expect_message(&mut self, topic: &str, payload: &[u8], qos: u8) -> Received {
        let got = self.expect_publish();
        assert_eq!(
            (
                String::from_utf8_lossy(&got.topic),
                got.payload.as_slice(),
                got.qos
            ),
            (topic.into(), payload, qos),
            "unexpected PUBLISH {got:?}"
        );
        assert_eq!(got.id.is_some(), qos > 0, "packet id presence in {got:?}");
        got
    }

    /// Reads PUBLISHes until one with this topic and payload arrives and
    /// returns those before it. QoS 1 messages are acknowledged; a QoS 2 one
    /// fails the test (its handshake would interleave).
    pub fn collect_until(&mut self, topic: &str, payload: &[u8]) -> Vec<Received> {
        let mut before = Vec::new();
        loop {
            let got = self.expect_publish();
            assert!(got.qos < 2, "collect_until cannot take QoS 2: {got:?}");
            if let Some(id) = got.id {
                self.send(&puback(id));
            }
            if got.topic == topic.as_bytes() && got.payload == payload {
                return before;
            }
            before.push(got);
        }
    }

    /// Subscribes and expects the SUBACK with `codes`.
    pub fn subscribe(&mut self, id: u16, filters: &[(&str, u8)], codes: &[u8]) {
        self.send(&subscribe(id, filters));
        self.expect(&suback(id, codes));
    }

    /// PINGREQ and its PINGRESP: proves every packet sent before it has been
    /// processed, since the broker handles one connection's packets in order.
    pub fn ping(&mut self) {
        self.send(&PINGREQ);
        self.expect(&PINGRESP);
    }
}

/// The total length of the packet at the start of `bytes`, once its fixed
/// header is complete.
fn packet_len(bytes: &[u8]) -> Option<usize> {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().skip(1).take(4).enumerate() {
        value += ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(1 + i + 1 + value);
        }
    }
    None
}

/// Parses a whole PUBLISH packet as produced by [`Raw::read_packet`].
pub fn parse_publish(bytes: &[u8]) -> Option<Received> {
    let first = *bytes.first()?;
    if first >> 4 != 3 {
        return None;
    }
    // Skip the remaining-length bytes: all but the last have the top bit set.
    let mut last = 1;
    while bytes.get(last)? & 0x80 != 0 {
        last += 1;
    }
    let body = bytes.get(last + 1..)?;
    let topic_len = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let topic = body.get(2..2 + topic_len)?.to_vec();
    let qos = (first >> 1) & 3;
    let mut rest = body.get(2 + topic_len..)?;
    let id = if qos > 0 {
        let id = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
        rest = rest.get(2..)?;
        Some(id)
    } else {
        None
    };
    Some(Received {
        dup: first & 0x08 != 0,
        qos,
        retain: first & 0x01 != 0,
        topic,
        id,
        payload: rest.to_vec(),
    })
}

// ---------------------------------------------------------------------------
// The well-behaved client (rumqttc)
// ---------------------------------------------------------------------------

/// What the background thread of an [`Mqtt`] saw.
enum Seen {
    Packet(rumqttc::Packet),
    /// Our DISCONNECT has been written.
    Disconnected,
    /// The connection failed or was closed by the broker.
    Closed(String),
}

/// A rumqttc client whose event loop runs on its own thread, so a test can
/// call it like a simple blocking client. The loop stops at the first
/// connection error instead of reconnecting: a test wants to see the close.
pub struct Mqtt {
    pub client: rumqttc::Client,
    seen: Receiver<Seen>,
    publishes: VecDeque<rumqttc::Publish>,
    closed: Option<String>,
}

impl Mqtt {
    /// A clean session with default options; waits for CONNACK accepted.
    pub fn connect(addr: SocketAddr, client_id: &str) -> Mqtt {
        Mqtt::connect_with(addr, client_id, |_| {}).0
    }

    /// Connects with options set by `tweak`; waits for CONNACK and returns it.
    pub fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        tweak: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> (Mqtt, rumqttc::ConnAck) {
        let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        tweak(&mut options);
        let (client, mut connection) = rumqttc::Client::new(options, 2048);
        let (tx, seen) = mpsc::channel();
        thread::Builder::new()
            .name(format!("mqtt-{client_id}"))
            .spawn(move || {
                for event in connection.iter() {
                    let report = match event {
                        Ok(rumqttc::Event::Incoming(packet)) => Seen::Packet(packet),
                        Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                            let _ = tx.send(Seen::Disconnected);
                            return;
                        }
                        Ok(rumqttc::Event::Outgoing(_)) => continue,
                        Err(e) => {
                            let _ = tx.send(Seen::Closed(e.to_string()));
                            return;
                        }
                    };
                    if tx.send(report).is_err() {
                        return;
                    }
                }
            })
            .unwrap();
        let mut mqtt = Mqtt {
            client,
            seen,
            publishes: VecDeque::new(),
            closed: None,
        };
        let connack = mqtt.wait_for("CONNACK", |p| match p {
            rumqttc::Packet::ConnAck(c) => Some(c.clone()),
            _ => None,
        });
        assert_eq!(
            connack.code,
            rumqttc::ConnectReturnCode::Success,
            "CONNACK of {client_id}"
        );
        (mqtt, connack)
    }

    /// Waits for the next packet `pick` accepts, keeping PUBLISHes that
    /// arrive meanwhile for [`Mqtt::recv`].
    fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&rumqttc::Packet) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(why) = &self.closed {
                panic!("waiting for {what}: the connection is closed ({why})");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Packet(packet)) => {
                    if let Some(found) = pick(&packet) {
                        return found;
                    }
                    if let rumqttc::Packet::Publish(p) = packet {
                        self.publishes.push_back(p);
                    }
                }
                Ok(Seen::Disconnected) => self.closed = Some("we disconnected".to_string()),
                Ok(Seen::Closed(why)) => self.closed = Some(why),
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = Some("event loop ended".to_string())
                }
            }
        }
    }

    /// Subscribes and waits for the SUBACK; returns the granted QoS per filter
    /// (`None` for a failure code).
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<Option<QoS>> {
        self.client.subscribe(filter, qos).unwrap();
        self.wait_for("SUBACK", |p| match p {
            rumqttc::Packet::SubAck(s) => Some(
                s.return_codes
                    .iter()
                    .map(|c| match c {
                        rumqttc::SubscribeReasonCode::Success(q) => Some(*q),
                        rumqttc::SubscribeReasonCode::Failure => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).unwrap();
        self.wait_for("UNSUBACK", |p| match p {
            rumqttc::Packet::UnsubAck(_) => Some(()),
            _ => None,
        })
    }

    /// Queues a PUBLISH (rumqttc sends it and runs the QoS handshake).
    pub fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, qos, retain, payload).unwrap();
    }

    /// Publishes and, for QoS 1 and 2, waits until the broker finished its
    /// side (PUBACK, or PUBCOMP). A broker may deliver a QoS 2 message only
    /// when PUBREL arrives (the standard's method B, mosquitto's choice), so
    /// a test that orders later messages after it must wait for this.
    /// Only one acknowledged publish of this client may be outstanding.
    pub fn publish_done(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.publish(topic, qos, retain, payload);
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.wait_for("PUBACK", |p| match p {
                rumqttc::Packet::PubAck(_) => Some(()),
                _ => None,
            }),
            QoS::ExactlyOnce => self.wait_for("PUBCOMP", |p| match p {
                rumqttc::Packet::PubComp(_) => Some(()),
                _ => None,
            }),
        }
    }

    /// The next PUBLISH within `limit`, or `None`.
    pub fn recv_within(&mut self, limit: Duration) -> Option<rumqttc::Publish> {
        if let Some(p) = self.publishes.pop_front() {
            return Some(p);
        }
        let deadline = Instant::now() + limit;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Packet(rumqttc::Packet::Publish(p))) => return Some(p),
                Ok(Seen::Packet(_)) => {}
                Ok(Seen::Disconnected) => self.closed = Some("we disconnected".to_string()),
                Ok(Seen::Closed(why)) => self.closed = Some(why),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = Some("event loop ended".to_string())
                }
            }
        }
        None
    }

    /// The next PUBLISH; panics after [`TIMEOUT`].
    pub fn recv(&mut self) -> rumqttc::Publish {
        match self.recv_within(TIMEOUT) {
            Some(p) => p,
            None => panic!("no PUBLISH within {TIMEOUT:?} (closed: {:?})", self.closed),
        }
    }

    /// The next PUBLISH, asserted to have this topic and payload; returned for
    /// checks of QoS and flags.
    pub fn expect(&mut self, topic: &str, payload: &[u8]) -> rumqttc::Publish {
        let p = self.recv();
        assert_eq!(
            (p.topic.as_str(), p.payload.as_ref()),
            (topic, payload),
            "unexpected PUBLISH {p:?}"
        );
        p
    }

    /// Publishes a marker to `topic` (which this client must be subscribed
    /// to) and collects every PUBLISH that arrives before the marker comes
    /// back. A test that wants to show something was NOT delivered sends the
    /// marker after it: once the marker is back, the broker has routed
    /// everything published before it, so no sleep is needed. That holds when
    /// what must not arrive was published by this same client, or was
    /// acknowledged to its publisher before the marker was sent.
    pub fn drain_until_marker(&mut self, topic: &str) -> Vec<rumqttc::Publish> {
        let marker = format!("marker-{}", unique_id(""));
        self.publish(topic, QoS::AtLeastOnce, false, marker.clone());
        self.collect_until(topic, marker.as_bytes())
    }

    /// As [`Mqtt::drain_until_marker`], with the marker sent by `publisher`
    /// after whatever it published before.
    pub fn drain_until_marker_from(
        &mut self,
        publisher: &Mqtt,
        topic: &str,
    ) -> Vec<rumqttc::Publish> {
        let marker = format!("marker-{}", unique_id(""));
        publisher.publish(topic, QoS::AtLeastOnce, false, marker.clone());
        self.collect_until(topic, marker.as_bytes())
    }

    /// Collects every PUBLISH until one with this topic and payload arrives.
    pub fn collect_until(&mut self, topic: &str, payload: &[u8]) -> Vec<rumqttc::Publish> {
        let mut before = Vec::new();
        loop {
            let p = self.recv();
            if p.topic == topic && p.payload.as_ref() == payload {
                return before;
            }
            before.push(p);
        }
    }

    /// Waits until the broker closes this client's connection.
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Packet(rumqttc::Packet::Publish(p))) => self.publishes.push_back(p),
                Ok(Seen::Packet(_)) => {}
                Ok(Seen::Disconnected) => panic!("we disconnected before the broker closed"),
                Ok(Seen::Closed(why)) => self.closed = Some(why),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the broker did not close the connection within {TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = Some("event loop ended".to_string())
                }
            }
        }
    }

    /// Sends DISCONNECT and waits until it has been written.
    pub fn disconnect(self) {
        self.client.disconnect().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Disconnected) => return,
                Ok(Seen::Packet(_)) => {}
                Ok(Seen::Closed(why)) => panic!("closed before DISCONNECT was sent: {why}"),
                Err(RecvTimeoutError::Timeout) => panic!("DISCONNECT not sent within {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("event loop ended before DISCONNECT"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The bystander
// ---------------------------------------------------------------------------

/// A well-behaved client that publishes to its own topic at QoS 1 and waits
/// for each message to come back, over and over, until told to stop.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u32, String>>>,
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
        let thread = thread::spawn(move || {
            let mut seq = 1;
            loop {
                // Read the flag before the round trip: the one that follows
                // a stop request is made after the bad client was handled.
                let last = stopping.load(Ordering::SeqCst);
                round_trip(&mut mqtt, &topic, seq)?;
                seq += 1;
                if last {
                    mqtt.disconnect();
                    return Ok(seq);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Bystander {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops after one more round trip and asserts every round trip worked.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let result = self.thread.take().unwrap().join();
        match result {
            Ok(Ok(n)) => assert!(n >= 2, "bystander made {n} round trips"),
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
