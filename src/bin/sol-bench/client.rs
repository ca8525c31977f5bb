//! One bench client: its socket, its buffers, and what it plays.
//!
//! A client is a publisher, a subscriber or an idle connection. Its socket
//! is non-blocking and registered edge-triggered for both directions, as mio
//! wants: reads drain to `WouldBlock`, and a write that hits `WouldBlock`
//! leaves the client `blocked` until the next writable event.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use bytes::{Buf, BytesMut};
use mio::event::Source;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use sol::protocol::{Decoder, QoS};

use crate::verify::Tracker;
use crate::wire::PublishTemplate;

/// A connected (or connecting) socket of either kind.
pub enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

/// Linux's `EINPROGRESS`: a non-blocking connect under way.
const EINPROGRESS: i32 = 115;

impl Stream {
    /// Starts a non-blocking TCP connect, from `source` when given (a
    /// loopback address other than 127.0.0.1 gives another 28 000 ephemeral
    /// ports, which 10 000+ clients need).
    pub fn tcp(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<Stream> {
        let stream = match source {
            None => mio::net::TcpStream::connect(addr)?,
            Some(ip) => {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
                socket.set_nonblocking(true)?;
                socket.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(ip), 0)))?;
                match socket.connect(&SockAddr::from(addr)) {
                    Ok(()) => {}
                    Err(e)
                        if e.raw_os_error() == Some(EINPROGRESS)
                            || e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                mio::net::TcpStream::from_std(socket.into())
            }
        };
        // The bench measures the broker's latency, not Nagle's.
        stream.set_nodelay(true)?;
        Ok(Stream::Tcp(stream))
    }

    pub fn unix(path: &Path) -> io::Result<Stream> {
        Ok(Stream::Unix(mio::net::UnixStream::connect(path)?))
    }

    /// The error a non-blocking connect ended with, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => s.register(registry, token, interest),
            Stream::Unix(s) => s.register(registry, token, interest),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a client is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// CONNECT sent (or waiting for the socket), no CONNACK yet.
    Connecting,
    /// A subscriber whose SUBSCRIBE awaits its SUBACK.
    Subscribing,
    /// Ready for the load.
    Ready,
}

/// A publisher's QoS 1 and 2 packet ids in flight.
///
/// One state byte per packet id, so an acknowledgement finds its id in
/// constant time whatever order the broker answers in.
pub struct Window {
    states: Vec<u8>,
    pub inflight: usize,
    cap: usize,
    next: u16,
}

const FREE: u8 = 0;
/// QoS 1 PUBLISH sent, awaiting PUBACK; or QoS 2 PUBLISH sent, awaiting PUBREC.
const SENT: u8 = 1;
/// QoS 2 PUBREL sent, awaiting PUBCOMP.
const RELEASED: u8 = 2;

impl Window {
    pub fn new(cap: usize) -> Window {
        Window {
            states: Vec::new(),
            inflight: 0,
            cap,
            next: 1,
        }
    }

    /// A free packet id, or `None` when the window is full.
    pub fn acquire(&mut self) -> Option<u16> {
        if self.inflight >= self.cap {
            return None;
        }
        if self.states.is_empty() {
            self.states = vec![FREE; 65536];
        }
        // The cap is below 65535, so a free id is always found.
        for _ in 0..65535 {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            if let Some(state @ &mut FREE) = self.states.get_mut(usize::from(id)) {
                *state = SENT;
                self.inflight += 1;
                return Some(id);
            }
        }
        None
    }

    fn state(&mut self, id: u16) -> Option<&mut u8> {
        self.states.get_mut(usize::from(id))
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): frees the id. False for an id not
    /// in the state the acknowledgement needs.
    pub fn complete(&mut self, id: u16, qos: QoS) -> bool {
        let want = if qos == QoS::ExactlyOnce {
            RELEASED
        } else {
            SENT
        };
        match self.state(id) {
            Some(s) if *s == want => {
                *s = FREE;
                self.inflight -= 1;
                true
            }
            _ => false,
        }
    }

    /// PUBREC: the id moves on to awaiting PUBCOMP. A repeated PUBREC for
    /// an id already released is fine: the PUBREL is sent again.
    pub fn received(&mut self, id: u16) -> bool {
        match self.state(id) {
            Some(s) if *s == SENT || *s == RELEASED => {
                *s = RELEASED;
                true
            }
            _ => false,
        }
    }
}

pub struct Publisher {
    pub id: u32,
    pub template: PublishTemplate,
    pub next_seq: u32,
    pub window: Window,
    /// Subscribers each message reaches.
    pub fanout: u64,
    /// When the next message is due, for a rate-limited publisher.
    pub next_due: Option<std::time::Instant>,
    pub done: bool,
}

pub struct Subscriber {
    /// Trackers cover publishers `first_pub .. first_pub + trackers.len()`.
    pub first_pub: u32,
    pub trackers: Vec<Tracker>,
}

pub enum Role {
    Idle,
    Publisher(Box<Publisher>),
    Subscriber(Subscriber),
}

pub struct Client {
    pub stream: Stream,
    pub input: BytesMut,
    pub output: BytesMut,
    pub decoder: Decoder,
    pub phase: Phase,
    /// The socket's connect has completed (first writable event seen).
    pub connected: bool,
    /// The last write hit `WouldBlock`; wait for a writable event.
    pub blocked: bool,
    /// Queued in the engine's flush list.
    pub dirty: bool,
    pub role: Role,
    /// Filter a subscriber subscribes to.
    pub filter: Option<String>,
}

/// What a broker may send: the bench asks for nothing large.
const MAX_PACKET: usize = 16 << 20;

impl Client {
    pub fn new(stream: Stream, role: Role, filter: Option<String>) -> Client {
        Client {
            stream,
            input: BytesMut::new(),
            output: BytesMut::new(),
            decoder: Decoder::client(MAX_PACKET),
            phase: Phase::Connecting,
            connected: false,
            blocked: true,
            dirty: false,
            role,
            filter,
        }
    }

    /// Writes the CONNECT as soon as the socket is created, as a blocking
    /// client does right after `connect` returns. On the loopback the
    /// handshake completes inside the `connect` call, so the broker finds
    /// the CONNECT already queued when it accepts the connection, and is
    /// woken once per client instead of twice. A socket still handshaking
    /// refuses the write (`EAGAIN`), and the writable event sends it later.
    pub fn write_early(&mut self) {
        if self.connected || self.output.is_empty() {
            return;
        }
        if let Ok(n) = self.stream.write(&self.output) {
            self.connected = true;
            self.output.advance(n);
        }
    }

    /// Writes as much buffered output as the socket takes.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.connected {
            return Ok(());
        }
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.output.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // An idle client gives its buffer back: 10 000 idle clients should
        // cost the bench little.
        if self.output.capacity() > 64 * 1024 {
            self.output = BytesMut::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_caps_and_recycles_ids() {
        let mut w = Window::new(3);
        let ids: Vec<u16> = (0..3).map(|_| w.acquire().unwrap()).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(w.acquire(), None);
        assert!(w.complete(2, QoS::AtLeastOnce));
        assert!(!w.complete(2, QoS::AtLeastOnce), "a second PUBACK");
        assert_eq!(w.acquire(), Some(4));
        assert_eq!(w.inflight, 3);
    }

    #[test]
    fn qos2_needs_pubrec_before_pubcomp() {
        let mut w = Window::new(2);
        let id = w.acquire().unwrap();
        assert!(!w.complete(id, QoS::ExactlyOnce), "PUBCOMP before PUBREC");
        assert!(w.received(id));
        assert!(w.received(id), "a repeated PUBREC");
        assert!(w.complete(id, QoS::ExactlyOnce));
        assert!(!w.received(id), "PUBREC for a free id");
        assert_eq!(w.inflight, 0);
    }

    #[test]
    fn ids_wrap_around_and_skip_zero_and_busy_ids() {
        let mut w = Window::new(2);
        w.next = u16::MAX;
        assert_eq!(w.acquire(), Some(u16::MAX));
        assert_eq!(w.acquire(), Some(1));
        assert!(w.complete(u16::MAX, QoS::AtLeastOnce));
        w.next = 1;
        assert_eq!(w.acquire(), Some(2), "1 is still in flight");
    }
}
