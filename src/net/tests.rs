//! The loop against real sockets, with a scripted core in place of the broker:
//! what reaches the core, what reaches the client, and when sockets close.
//! This file holds the scripted core, the helpers and the packet paths;
//! `tests/listeners.rs`, `tests/backpressure.rs` and `tests/stopping.rs` the
//! rest.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::core::Core;
use super::event_loop::Limits;
use super::{Server, ServerHandle};
use crate::broker::{CloseReason, ConnId, Outbox, PeerInfo, QOS0_OUTPUT_LIMIT};
use crate::config::Config;
use crate::protocol::{Connack, ConnectReturnCode, Packet};

type Log = Arc<Mutex<Vec<String>>>;

/// A stand-in for the broker: answers CONNECT, PINGREQ and PUBLISH (by
/// echoing it), closes on DISCONNECT, and writes down everything it hears.
#[derive(Default)]
struct Script {
    log: Log,
    /// Send CONNACK 0x01 and close on a decode error, as the real core does
    /// for an unsupported protocol level. Otherwise do nothing at all.
    refuse_on_protocol_error: bool,
    /// Close connections that sent no CONNECT within this time.
    connect_timeout: Option<Duration>,
    deadlines: HashMap<ConnId, Instant>,
    /// Every connection opened, for `farewell`.
    opened: Vec<ConnId>,
    /// Write down `shutdown` when the loop says it is stopping, and the
    /// traffic counts at each PINGREQ (off by default, to keep the other
    /// tests' logs as they are).
    note_housekeeping: bool,
    /// At shutdown, send each connection a QoS 0 PUBLISH with a payload of
    /// this many bytes.
    farewell: usize,
    /// Write down `established` calls, with the transport and whether TLS
    /// is on.
    note_established: bool,
    /// After CONNECT, send this many QoS 0 PUBLISHes of `stream_size`
    /// payload bytes each (the n-th filled with byte n), only while the
    /// output is below the mark, the rest from `drained`, as the broker
    /// sends resends.
    stream_count: u8,
    stream_size: usize,
    streamed: u8,
}

impl Script {
    fn note(&self, line: impl Into<String>) {
        self.log.lock().unwrap().push(line.into());
    }

    /// Sends the next streamed PUBLISHes up to the mark; asks to hear when
    /// the output drains if some are left.
    fn stream(&mut self, conn: ConnId, out: &mut dyn Outbox) {
        while self.streamed < self.stream_count && out.pending(conn) < QOS0_OUTPUT_LIMIT {
            let publish = Packet::Publish(crate::protocol::Publish {
                dup: false,
                qos: crate::protocol::QoS::AtMostOnce,
                retain: false,
                topic: crate::protocol::TopicName::new("t").unwrap(),
                packet_id: None,
                payload: bytes::Bytes::from(vec![self.streamed; self.stream_size]),
            });
            out.send(conn, &publish);
            self.streamed += 1;
        }
        if self.streamed < self.stream_count {
            out.notify_when_drained(conn);
        }
    }
}

fn connack(code: ConnectReturnCode) -> Packet {
    Packet::Connack(Connack {
        session_present: false,
        code,
    })
}

impl Core for Script {
    fn open(&mut self, conn: ConnId, _peer: &str, now: Instant) {
        self.note("open");
        self.opened.push(conn);
        if let Some(timeout) = self.connect_timeout {
            self.deadlines.insert(conn, now + timeout);
        }
    }

    fn packet(&mut self, conn: ConnId, packet: Packet, _now: Instant, out: &mut dyn Outbox) {
        self.note(packet.name());
        match packet {
            Packet::Connect(connect) => {
                self.deadlines.remove(&conn);
                if connect.client_id == "refuse" {
                    out.send(conn, &connack(ConnectReturnCode::IdentifierRejected));
                    out.close(conn);
                } else {
                    out.send(conn, &connack(ConnectReturnCode::Accepted));
                    self.stream(conn, out);
                }
            }
            Packet::Pingreq => {
                if self.note_housekeeping {
                    let t = out.traffic();
                    self.note(format!(
                        "traffic {} {} {}",
                        t.bytes_received, t.bytes_sent, t.output_buffered
                    ));
                }
                out.send(conn, &Packet::Pingresp);
            }
            Packet::Publish(_) => out.send(conn, &packet),
            Packet::Disconnect => out.close(conn),
            _ => {}
        }
    }

    fn closed(&mut self, conn: ConnId, reason: CloseReason, _now: Instant, out: &mut dyn Outbox) {
        let name = match reason {
            CloseReason::PeerClosed => "PeerClosed",
            CloseReason::Io(_) => "Io",
            CloseReason::Protocol(_) => "Protocol",
            CloseReason::Shutdown => "Shutdown",
        };
        self.note(format!("closed {name}"));
        self.deadlines.remove(&conn);
        if name == "Protocol" && self.refuse_on_protocol_error {
            out.send(
                conn,
                &connack(ConnectReturnCode::UnacceptableProtocolVersion),
            );
            out.close(conn);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    fn established(&mut self, _conn: ConnId, peer: PeerInfo<'_>) {
        if self.note_established {
            let tls = if peer.tls.is_some() { " tls" } else { "" };
            self.note(format!("established {:?}{tls}", peer.transport));
        }
    }

    fn reload(&mut self, _now: Instant, _out: &mut dyn Outbox) {
        self.note("reload");
    }

    fn drained(&mut self, conn: ConnId, _now: Instant, out: &mut dyn Outbox) {
        self.note(format!("drained after {}", self.streamed));
        self.stream(conn, out);
    }

    fn shutdown(&mut self, _now: Instant, out: &mut dyn Outbox) {
        if self.note_housekeeping {
            self.note("shutdown");
        }
        if self.farewell > 0 {
            let publish = Packet::Publish(crate::protocol::Publish {
                dup: false,
                qos: crate::protocol::QoS::AtMostOnce,
                retain: false,
                topic: crate::protocol::TopicName::new("bye").unwrap(),
                packet_id: None,
                payload: bytes::Bytes::from(vec![b'x'; self.farewell]),
            });
            for &conn in &self.opened {
                out.send(conn, &publish);
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        let due: Vec<ConnId> = self
            .deadlines
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&conn, _)| conn)
            .collect();
        for conn in due {
            self.deadlines.remove(&conn);
            self.note("timeout");
            out.close(conn);
        }
    }
}

struct Running {
    handle: ServerHandle,
    addr: Option<std::net::SocketAddr>,
    log: Log,
    thread: JoinHandle<io::Result<()>>,
}

fn tcp_config() -> Config {
    Config {
        ip_port: 0,
        ..Config::default()
    }
}

fn start(config: &Config, script: Script) -> Running {
    start_limited(config, script, Limits::new(config.max_request_size))
}

fn start_limited(config: &Config, script: Script, limits: Limits) -> Running {
    let server = Server::bind(config).unwrap();
    let log = Arc::clone(&script.log);
    let handle = server.handle();
    let addr = server.tcp_addr();
    let thread = thread::spawn(move || server.run_with(script, limits));
    Running {
        handle,
        addr,
        log,
        thread,
    }
}

impl Running {
    fn client(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.addr.unwrap()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the core has heard `line` `times` times.
    fn wait_for(&self, line: &str, times: usize) {
        let start = Instant::now();
        while self.log().iter().filter(|l| *l == line).count() < times {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "waited for {line:?} x{times}, log: {:?}",
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

/// The variable-length remaining length of section 2.2.3.
fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

fn connect_bytes(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10];
    remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// A QoS 0 PUBLISH on topic `t`.
fn publish_bytes(payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x30];
    remaining_length(3 + payload.len(), &mut packet);
    packet.extend_from_slice(&[0, 1, b't']);
    packet.extend_from_slice(payload);
    packet
}

const CONNACK_ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
const PINGREQ: [u8; 2] = [0xc0, 0x00];
const PINGRESP: [u8; 2] = [0xd0, 0x00];
const DISCONNECT: [u8; 2] = [0xe0, 0x00];

fn read_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Asserts the server closed the connection: end of stream, no more bytes.
fn assert_closed(stream: &mut impl Read) {
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected end of stream, got {:?}", buf.get(..n)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected end of stream, got {e}"),
    }
}

#[test]
fn ping_then_disconnect_closes_without_telling_the_core() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    client.write_all(&DISCONNECT).unwrap();
    assert_closed(&mut client);
    let log = server.stop();
    assert_eq!(log, ["open", "CONNECT", "PINGREQ", "DISCONNECT"]);
}

#[test]
fn a_refusing_connack_goes_out_before_the_close() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    client.write_all(&connect_bytes("refuse")).unwrap();
    assert_eq!(read_n(&mut client, 4), [0x20, 0x02, 0x00, 0x02]);
    assert_closed(&mut client);
    server.stop();
}

#[test]
fn packets_split_across_reads_and_packed_into_one_are_all_decoded() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    for byte in connect_bytes("slow") {
        client.write_all(&[byte]).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    client
        .write_all(&[PINGREQ, PINGREQ, PINGREQ].concat())
        .unwrap();
    assert_eq!(
        read_n(&mut client, 6),
        [PINGRESP, PINGRESP, PINGRESP].concat()
    );
    server.stop();
}

#[test]
fn a_decode_error_is_reported_and_the_socket_closed_even_if_the_core_forgets() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    // PINGREQ before CONNECT: the decoder refuses it [MQTT-3.1.0-1].
    client.write_all(&PINGREQ).unwrap();
    assert_closed(&mut client);
    let log = server.stop();
    assert_eq!(log, ["open", "closed Protocol"]);
}

#[test]
fn a_huge_first_packet_is_refused_on_its_header_without_waiting_for_its_body() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    // CONNECT claiming 268,435,455 bytes, the most a remaining length can
    // say (CVE-2017-7651): over the limit, so no body is ever waited for.
    client.write_all(&[0x10, 0xff, 0xff, 0xff, 0x7f]).unwrap();
    assert_closed(&mut client);
    let log = server.stop();
    assert_eq!(log, ["open", "closed Protocol"]);
}

#[test]
fn what_the_core_sends_on_a_decode_error_goes_out_before_the_close() {
    let script = Script {
        refuse_on_protocol_error: true,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 4), [0x20, 0x02, 0x00, 0x01]);
    assert_closed(&mut client);
    server.stop();
}

#[test]
fn a_peer_that_goes_away_is_reported_once_and_forgotten() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    drop(client);
    server.wait_for("closed PeerClosed", 1);
    let log = server.stop();
    assert_eq!(log, ["open", "CONNECT", "closed PeerClosed"]);
}

#[test]
fn the_core_deadline_is_honoured_and_its_close_not_reported_back() {
    let script = Script {
        connect_timeout: Some(Duration::from_millis(60)),
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let started = Instant::now();
    let mut client = server.client();
    assert_closed(&mut client);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(60),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    let log = server.stop();
    assert_eq!(log, ["open", "timeout"]);
}

/// A fresh socket path in the temp directory, short enough for `sun_path`.
fn unix_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("sol-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn unix_config(path: &std::path::Path) -> Config {
    Config {
        tcp_enabled: false,
        unix_socket: Some(path.to_path_buf()),
        ..Config::default()
    }
}

mod backpressure;
mod listeners;
mod stopping;
