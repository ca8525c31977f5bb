//! Dialling against real sockets, with a core that dials on its first tick:
//! a local listener on port 0 that answers, and a port nobody listens on.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::broker::{CloseReason, ConnId, Outbox, PeerInfo};
use crate::config::Config;
use crate::net::core::Core;
use crate::net::event_loop::Limits;
use crate::net::{Server, ServerHandle};
use crate::protocol::Packet;

/// A CONNECT with client id "b" and a 60 s keepalive, as a bridge sends it.
const CONNECT: [u8; 15] = [
    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'b',
];
const CONNACK_ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
const PINGREQ: [u8; 2] = [0xc0, 0x00];
const PINGRESP: [u8; 2] = [0xd0, 0x00];

type Log = Arc<Mutex<Vec<String>>>;

/// Dials `target` on its first tick, sends CONNECT at once (before the
/// connect completed), answers a CONNACK with a PINGREQ, and writes down
/// everything it hears.
struct Dialler {
    target: SocketAddr,
    /// Until the dial: a deadline in the past, so that the loop ticks at
    /// once.
    start: Option<Instant>,
    dialled: Option<ConnId>,
    log: Log,
}

impl Dialler {
    fn note(&self, line: impl Into<String>) {
        self.log.lock().unwrap().push(line.into());
    }

    fn is_ours(&self, conn: ConnId) -> &'static str {
        if self.dialled == Some(conn) {
            "dialled"
        } else {
            "stranger"
        }
    }
}

impl Core for Dialler {
    fn open(&mut self, _conn: ConnId, _peer: &str, _now: Instant) {
        self.note("open");
    }

    fn packet(&mut self, conn: ConnId, packet: Packet, _now: Instant, out: &mut dyn Outbox) {
        self.note(format!("{} {}", self.is_ours(conn), packet.name()));
        if matches!(packet, Packet::Connack(_)) {
            out.send(conn, &Packet::Pingreq);
        }
    }

    fn closed(&mut self, conn: ConnId, reason: CloseReason, _now: Instant, _out: &mut dyn Outbox) {
        let name = match reason {
            CloseReason::PeerClosed => "PeerClosed",
            CloseReason::Io(_) => "Io",
            CloseReason::Protocol(_) => "Protocol",
            CloseReason::Shutdown => "Shutdown",
        };
        self.note(format!("{} closed {name}", self.is_ours(conn)));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.start
    }

    fn tick(&mut self, _now: Instant, out: &mut dyn Outbox) {
        if self.start.take().is_none() {
            return;
        }
        match out.dial(self.target) {
            Ok(conn) => {
                self.dialled = Some(conn);
                self.note("dialling");
                out.send_bytes(conn, &CONNECT);
            }
            Err(e) => self.note(format!("dial refused: {:?}", e.kind())),
        }
    }

    fn established(&mut self, conn: ConnId, peer: PeerInfo<'_>) {
        let tls = if peer.tls.is_some() { " tls" } else { "" };
        let addr = if peer.addr == self.target.to_string() {
            "target"
        } else {
            peer.addr
        };
        let line = format!(
            "{} established {:?} {addr}{tls}",
            self.is_ours(conn),
            peer.transport
        );
        self.note(line);
    }

    fn dial_failed(&mut self, conn: ConnId, error: io::Error, _now: Instant, _: &mut dyn Outbox) {
        self.note(format!(
            "{} dial failed: {:?}",
            self.is_ours(conn),
            error.kind()
        ));
    }
}

struct Running {
    handle: ServerHandle,
    log: Log,
    thread: thread::JoinHandle<io::Result<()>>,
}

impl Running {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the core has written down a line starting with `start`.
    fn wait_for(&self, start: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log().iter().any(|l| l.starts_with(start)) {
            assert!(
                Instant::now() < deadline,
                "waited for {start:?}, log: {:?}",
                self.log()
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn stop(self) -> Vec<String> {
        self.handle.shutdown();
        self.thread.join().unwrap().unwrap();
        let log = self.log.lock().unwrap().clone();
        log
    }
}

/// A loop with a TCP listener of its own (which nobody uses here) and a
/// [`Dialler`] aimed at `target`.
fn start(target: SocketAddr) -> Running {
    let config = Config {
        ip_port: 0,
        ..Config::default()
    };
    let server = Server::bind(&config).unwrap();
    let log = Log::default();
    let core = Dialler {
        target,
        start: Some(Instant::now()),
        dialled: None,
        log: Arc::clone(&log),
    };
    let handle = server.handle();
    let limits = Limits::new(config.max_request_size);
    let thread = thread::spawn(move || server.run_with(core, limits));
    Running {
        handle,
        log,
        thread,
    }
}

fn read_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn a_dialled_connection_is_established_and_decodes_what_a_broker_sends() {
    let remote = TcpListener::bind("127.0.0.1:0").unwrap();
    let running = start(remote.local_addr().unwrap());
    let (mut peer, _) = remote.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Queued before the connect completed, sent once it did.
    assert_eq!(read_n(&mut peer, CONNECT.len()), CONNECT);
    // A server-side decoder would refuse a CONNACK as the first packet.
    peer.write_all(&CONNACK_ACCEPTED).unwrap();
    assert_eq!(read_n(&mut peer, 2), PINGREQ);
    peer.write_all(&PINGRESP).unwrap();
    running.wait_for("dialled PINGRESP");
    drop(peer);
    running.wait_for("dialled closed");
    let log = running.stop();
    assert_eq!(
        log,
        [
            "dialling",
            "dialled established Tcp target",
            "dialled CONNACK",
            "dialled PINGRESP",
            "dialled closed PeerClosed",
        ]
    );
}

#[test]
fn a_dial_to_a_closed_port_is_reported_as_failed_and_forgotten() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let running = start(closed);
    running.wait_for("d");
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.log().len() < 2 && !running.log().iter().any(|l| l.contains("refused")) {
        assert!(Instant::now() < deadline, "no answer: {:?}", running.log());
        thread::sleep(Duration::from_millis(2));
    }
    let log = running.stop();
    // Linux reports a refusal on loopback after the connect call returns;
    // a kernel that refuses at once makes `dial` itself fail.
    let later = ["dialling", "dialled dial failed: ConnectionRefused"];
    let at_once = ["dial refused: ConnectionRefused"];
    assert!(log == later || log == at_once, "{log:?}");
}

#[test]
fn a_dialled_connection_the_core_closes_while_connecting_goes_quietly() {
    /// A [`Dialler`] that closes the id in the same tick it dialled it,
    /// before the connect can have completed.
    struct Quitter(Dialler);
    impl Core for Quitter {
        fn open(&mut self, conn: ConnId, peer: &str, now: Instant) {
            self.0.open(conn, peer, now);
        }
        fn packet(&mut self, conn: ConnId, packet: Packet, now: Instant, out: &mut dyn Outbox) {
            self.0.packet(conn, packet, now, out);
        }
        fn closed(
            &mut self,
            conn: ConnId,
            reason: CloseReason,
            now: Instant,
            out: &mut dyn Outbox,
        ) {
            self.0.closed(conn, reason, now, out);
        }
        fn next_deadline(&self) -> Option<Instant> {
            self.0.next_deadline()
        }
        fn tick(&mut self, now: Instant, out: &mut dyn Outbox) {
            self.0.tick(now, out);
            if let Some(conn) = self.0.dialled.take() {
                out.close(conn);
                self.0.note("closed by the core");
            }
        }
        fn established(&mut self, conn: ConnId, peer: PeerInfo<'_>) {
            self.0.established(conn, peer);
        }
        fn dial_failed(&mut self, conn: ConnId, e: io::Error, now: Instant, out: &mut dyn Outbox) {
            self.0.dial_failed(conn, e, now, out);
        }
    }
    let remote = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = Config {
        ip_port: 0,
        ..Config::default()
    };
    let server = Server::bind(&config).unwrap();
    let log = Log::default();
    let core = Quitter(Dialler {
        target: remote.local_addr().unwrap(),
        start: Some(Instant::now()),
        dialled: None,
        log: Arc::clone(&log),
    });
    let handle = server.handle();
    let limits = Limits::new(config.max_request_size);
    let thread = thread::spawn(move || server.run_with(core, limits));
    let (mut peer, _) = remote.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The close went out with the turn's flush: the peer sees the end of
    // the stream, and the CONNECT queued before it may or may not have
    // been written first.
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty() || rest == CONNECT, "{rest:?}");
    handle.shutdown();
    thread.join().unwrap().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log, ["dialling", "closed by the core"]);
}
