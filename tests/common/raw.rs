//! [`Raw`]: a client that sends and expects exact bytes, over TCP, a Unix
//! socket or TLS, for everything a well-behaved library would refuse to
//! send; and [`parse_publish`], which reads a PUBLISH it received.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::packets::*;
use super::{tls, TIMEOUT};

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
    pub(super) stream: Stream,
    /// Bytes read from the socket and not yet consumed by an expectation.
    pub(super) buffered: VecDeque<u8>,
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
