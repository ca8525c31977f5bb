//! The loop against real sockets, with a scripted core in place of the broker:
//! what reaches the core, what reaches the client, and when sockets close.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::core::Core;
use super::event_loop::Limits;
use super::{Server, ServerHandle};
use crate::broker::{CloseReason, ConnId, Outbox, PeerInfo};
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
}

impl Script {
    fn note(&self, line: impl Into<String>) {
        self.log.lock().unwrap().push(line.into());
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

#[test]
fn shutdown_tells_the_core_about_every_live_connection() {
    let server = start(&tcp_config(), Script::default());
    let mut first = server.client();
    let mut second = server.client();
    first.write_all(&connect_bytes("a")).unwrap();
    assert_eq!(read_n(&mut first, 4), CONNACK_ACCEPTED);
    server.wait_for("open", 2);
    let log = server.stop();
    assert_eq!(log.iter().filter(|l| *l == "closed Shutdown").count(), 2);
    assert_closed(&mut first);
    assert_closed(&mut second);
}

#[test]
fn shutdown_before_run_returns_at_once() {
    let server = Server::bind(&tcp_config()).unwrap();
    server.handle().shutdown();
    server
        .run_with(Script::default(), Limits::new(1000))
        .unwrap();
}

#[test]
fn bind_refuses_a_config_without_listeners() {
    let config = Config {
        tcp_enabled: false,
        unix_socket: None,
        ..tcp_config()
    };
    assert!(Server::bind(&config).is_err());
}

#[test]
fn the_handle_can_be_sent_and_shared() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<ServerHandle>();
}

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

#[test]
fn a_unix_socket_serves_clients_and_its_file_goes_with_the_server() {
    let path = unix_path("loop");
    let config = unix_config(&path);
    let server = Server::bind(&config).unwrap();
    assert_eq!(server.tcp_addr(), None);
    assert_eq!(server.unix_path(), Some(path.as_path()));
    let handle = server.handle();
    let limits = Limits::new(config.max_request_size);
    let thread = thread::spawn(move || server.run_with(Script::default(), limits));
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&connect_bytes("u")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    handle.shutdown();
    thread.join().unwrap().unwrap();
    assert!(!path.exists());
}

#[test]
fn tcp_and_unix_listeners_run_together() {
    let path = unix_path("both");
    let config = Config {
        tcp_enabled: true,
        ..unix_config(&path)
    };
    let config = Config {
        ip_port: 0,
        ..config
    };
    let server = start(&config, Script::default());
    let mut tcp = server.client();
    let mut unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&connect_bytes("t")).unwrap();
    unix.write_all(&connect_bytes("u")).unwrap();
    assert_eq!(read_n(&mut tcp, 4), CONNACK_ACCEPTED);
    assert_eq!(read_n(&mut unix, 4), CONNACK_ACCEPTED);
    server.stop();
    assert!(!path.exists());
}

#[test]
fn every_accepted_plain_connection_is_established_once_before_its_first_packet() {
    let path = unix_path("established");
    let config = Config {
        tcp_enabled: true,
        ip_port: 0,
        ..unix_config(&path)
    };
    let script = Script {
        note_established: true,
        ..Script::default()
    };
    let server = start(&config, script);
    let mut tcp = server.client();
    tcp.write_all(&connect_bytes("t")).unwrap();
    assert_eq!(read_n(&mut tcp, 4), CONNACK_ACCEPTED);
    let mut unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    unix.write_all(&connect_bytes("u")).unwrap();
    assert_eq!(read_n(&mut unix, 4), CONNACK_ACCEPTED);
    let log = server.stop();
    let until_shutdown: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .take_while(|l| !l.starts_with("closed"))
        .collect();
    assert_eq!(
        until_shutdown,
        [
            "open",
            "established Tcp",
            "CONNECT",
            "open",
            "established Unix",
            "CONNECT"
        ]
    );
}

#[test]
fn a_burst_larger_than_the_read_budget_is_served_in_full() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    client.write_all(&connect_bytes("burst")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    let messages: Vec<Vec<u8>> = (0..12u8)
        .map(|i| publish_bytes(&vec![i; 100_000]))
        .collect();
    let expected = messages.concat();
    let mut writer = client.try_clone().unwrap();
    let sent = expected.clone();
    let writing = thread::spawn(move || writer.write_all(&sent).unwrap());
    let echoed = read_n(&mut client, expected.len());
    writing.join().unwrap();
    assert!(echoed == expected, "echo differs from what was sent");
    server.stop();
}

#[test]
fn input_left_in_the_socket_when_the_budget_runs_out_is_read_next_turn() {
    // With a budget of 64 bytes the first turn cannot read all of this, and
    // no new event will come for the rest: only the ready list brings the
    // loop back to it.
    let limits = Limits {
        read_budget: 64,
        ..Limits::new(1000)
    };
    let server = start_limited(&tcp_config(), Script::default(), limits);
    let mut client = server.client();
    let mut burst = connect_bytes("budget");
    for _ in 0..100 {
        burst.extend_from_slice(&PINGREQ);
    }
    client.write_all(&burst).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    assert_eq!(read_n(&mut client, 200), PINGRESP.repeat(100));
    server.stop();
}

#[test]
fn a_small_high_water_mark_pauses_and_resumes_input() {
    // Each PINGRESP is 2 bytes: with the mark at 2, input pauses after every
    // packet until the flush at the end of the turn, and must resume.
    let limits = Limits {
        pause_input_at: 2,
        ..Limits::new(1000)
    };
    let server = start_limited(&tcp_config(), Script::default(), limits);
    let mut client = server.client();
    let mut burst = connect_bytes("mark");
    for _ in 0..50 {
        burst.extend_from_slice(&PINGREQ);
    }
    client.write_all(&burst).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    assert_eq!(read_n(&mut client, 100), PINGRESP.repeat(50));
    server.stop();
}

#[test]
fn input_pauses_while_output_is_above_the_high_water_mark() {
    // A Unix socket: its kernel buffers are small and fixed, where TCP on
    // loopback would soak up megabytes before the broker's buffer grew.
    let path = unix_path("throttle");
    let server = start(&unix_config(&path), Script::default());
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&connect_bytes("slow-reader")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);

    const COUNT: usize = 200;
    let message = publish_bytes(&[7u8; 64 * 1024]);
    let mut writer = client.try_clone().unwrap();
    let sent = message.clone();
    let writing = thread::spawn(move || {
        for _ in 0..COUNT {
            writer.write_all(&sent).unwrap();
        }
    });

    // Let the broker take what it will while the client reads nothing.
    server.wait_for("PUBLISH", 1);
    let published = || server.log().iter().filter(|l| *l == "PUBLISH").count();
    let mut last = usize::MAX;
    while published() != last {
        last = published();
        thread::sleep(Duration::from_millis(300));
    }
    assert!(last > 0, "nothing was processed");
    assert!(
        last < COUNT / 2,
        "{last} of {COUNT} processed without reading"
    );

    // Reading drains the output, which lifts the pause, until all is echoed.
    for _ in 0..COUNT {
        assert!(read_n(&mut client, message.len()) == message);
    }
    writing.join().unwrap();
    server.wait_for("PUBLISH", COUNT);
    server.stop();
}

// ----- housekeeping: reload, shutdown, max_connections, traffic

#[test]
fn reload_on_the_handle_reaches_the_core_and_the_loop_goes_on() {
    let server = start(&tcp_config(), Script::default());
    server.handle.reload();
    server.wait_for("reload", 1);
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    server.handle.reload();
    server.wait_for("reload", 2);
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    server.stop();
}

#[test]
fn shutdown_tells_the_core_first_and_flushes_what_it_sends() {
    let script = Script {
        farewell: 300_000,
        note_housekeeping: true,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    // More than a socket buffer takes at once: the loop must keep writing
    // while the client reads.
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        client.read_to_end(&mut all).unwrap();
        all
    });
    let log = server.stop();
    let shutdown = log.iter().position(|l| l == "shutdown").unwrap();
    let closed = log.iter().position(|l| l == "closed Shutdown").unwrap();
    assert!(shutdown < closed, "{log:?}");
    let all = reader.join().unwrap();
    // The PUBLISH: header (4 bytes of remaining length), topic, payload.
    assert_eq!(all.len(), 1 + 3 + 2 + 3 + 300_000);
    assert!(all.ends_with(b"xxxx"));
}

#[test]
fn shutdown_gives_up_on_a_client_that_does_not_read() {
    let script = Script {
        farewell: 50_000_000,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    let started = Instant::now();
    server.stop();
    let took = started.elapsed();
    assert!(took >= super::stop::SHUTDOWN_FLUSH, "{took:?}");
    assert!(
        took < super::stop::SHUTDOWN_FLUSH + Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn connections_beyond_max_connections_are_closed_and_the_others_served() {
    let mut limits = Limits::new(1000);
    limits.max_connections = Some(2);
    let server = start_limited(&tcp_config(), Script::default(), limits);
    let mut first = server.client();
    first.write_all(&connect_bytes("a")).unwrap();
    assert_eq!(read_n(&mut first, 4), CONNACK_ACCEPTED);
    let mut second = server.client();
    second.write_all(&connect_bytes("b")).unwrap();
    assert_eq!(read_n(&mut second, 4), CONNACK_ACCEPTED);

    let mut third = server.client();
    assert_closed(&mut third);
    for client in [&mut first, &mut second] {
        client.write_all(&PINGREQ).unwrap();
        assert_eq!(read_n(client, 2), PINGRESP);
    }
    assert_eq!(server.log().iter().filter(|l| *l == "open").count(), 2);

    // Room again once one goes.
    first.write_all(&DISCONNECT).unwrap();
    assert_closed(&mut first);
    let mut fourth = server.client();
    fourth.write_all(&connect_bytes("d")).unwrap();
    assert_eq!(read_n(&mut fourth, 4), CONNACK_ACCEPTED);
    server.stop();
}

#[test]
fn bytes_read_and_written_are_counted_for_the_core() {
    let script = Script {
        note_housekeeping: true,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    let connect = connect_bytes("c");
    client.write_all(&connect).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    // At the PINGREQ: CONNECT and PINGREQ read, the CONNACK written,
    // nothing left buffered.
    let expected = format!("traffic {} 4 0", connect.len() + 2);
    server.wait_for(&expected, 1);
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    server.wait_for(&format!("traffic {} 6 0", connect.len() + 4), 1);
    server.stop();
}

#[test]
fn listener_tokens_count_down_below_the_reserved_ones_and_keys_stay_under_them() {
    use super::{first_reserved, listener_index, listener_token, SIGNALS, WAKER};
    let tokens: Vec<_> = (0..3).map(listener_token).collect();
    assert!(tokens.iter().all(|t| *t != WAKER && *t != SIGNALS));
    for (index, token) in tokens.iter().enumerate() {
        assert_eq!(listener_index(*token, 3), Some(index));
    }
    assert_eq!(listener_index(tokens[2], 2), None, "not one of two");
    assert_eq!(listener_index(mio::Token(0), 3), None, "a connection key");
    assert_eq!(listener_index(WAKER, 3), None);
    assert_eq!(listener_index(SIGNALS, 3), None);
    let limit = first_reserved(3);
    assert!(tokens.iter().all(|t| t.0 >= limit));
    assert_eq!(listener_index(mio::Token(limit - 1), 3), None);
}
