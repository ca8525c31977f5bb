//! The TLS listener, through independent clients: rumqttc over rustls, a
//! byte-level rustls client, and mosquitto_pub/mosquitto_sub (OpenSSL) when
//! installed. Certificates are made for each test (see `common::tls`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::tls::{self, Pki};
use common::*;
use sol::config::ConfigPath;

/// sol with a TLS listener beside the plain ones (`None` against an
/// external broker: these tests need sol's own configuration).
fn broker(
    pki: &Pki,
    cafile: bool,
    tweak: impl FnOnce(&mut sol::config::Config),
) -> Option<TestBroker> {
    TestBroker::with(|config| {
        pki.enable(config, cafile);
        tweak(config);
    })
}

#[test]
fn rumqttc_over_tls_publishes_and_subscribes() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, false, |_| {}) else {
        return;
    };
    let topic = unique_topic("tls");
    let (mut sub, _) = Mqtt::connect_with(broker.tls_addr(), &unique_id("tsub"), |o| {
        o.set_transport(tls::rumqttc_tls(&pki, None));
    });
    assert_eq!(
        sub.subscribe(&topic, QoS::ExactlyOnce),
        vec![Some(QoS::ExactlyOnce)]
    );
    let (mut publisher, _) = Mqtt::connect_with(broker.tls_addr(), &unique_id("tpub"), |o| {
        o.set_transport(tls::rumqttc_tls(&pki, None));
    });
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publisher.publish_done(&topic, qos, false, format!("{qos:?}"));
        let p = sub.expect(&topic, format!("{qos:?}").as_bytes());
        assert_eq!(p.qos, qos);
    }
    // A message big enough to take many TLS records each way.
    let big: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    publisher.publish_done(&topic, QoS::AtLeastOnce, false, big.clone());
    assert_eq!(sub.recv().payload.as_ref(), &big[..]);
    // TLS and plain clients share one broker.
    let plain = Mqtt::connect(broker.addr(), &unique_id("plain"));
    plain.publish(&topic, QoS::AtLeastOnce, false, "from plain");
    sub.expect(&topic, b"from plain");
    publisher.disconnect();
    sub.disconnect();
}

#[test]
fn many_clients_handshake_at_once() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, true, |_| {}) else {
        return;
    };
    let addr = broker.tls_addr();
    let config = pki.client_config(Some("crowd"));
    // Every handshake is in flight before any completes: the loop must
    // interleave them, not finish one before reading the next.
    let mut clients: Vec<Raw> = (0..40).map(|_| tls::raw(addr, config.clone())).collect();
    for (n, raw) in clients.iter_mut().enumerate() {
        raw.send(&connect(&format!("crowd{n}")));
    }
    for raw in &mut clients {
        raw.expect(&connack(false, 0));
        raw.send(&PINGREQ);
        raw.expect(&PINGRESP);
    }
}

#[test]
fn a_client_certificate_cn_is_the_username_and_acl_sections_apply() {
    let pki = Pki::new();
    let acl = pki.path("acl");
    std::fs::write(&acl, "user sensor-1\ntopic readwrite sensors/1/#\n").unwrap();
    let Some(broker) = broker(&pki, true, |c| {
        c.security.use_identity_as_username = true;
        c.security.acl_file = Some(ConfigPath::new(&acl));
    }) else {
        return;
    };
    let (mut sensor, _) = Mqtt::connect_with(broker.tls_addr(), &unique_id("s1"), |o| {
        o.set_transport(tls::rumqttc_tls(&pki, Some("sensor-1")));
    });
    assert_eq!(
        sensor.subscribe("sensors/1/#", QoS::AtLeastOnce),
        vec![Some(QoS::AtLeastOnce)]
    );
    // Its own section gives it nothing else.
    assert_eq!(
        sensor.subscribe("sensors/2/#", QoS::AtLeastOnce),
        vec![None]
    );
    sensor.publish_done("sensors/1/temp", QoS::AtLeastOnce, false, "21.5");
    sensor.expect("sensors/1/temp", b"21.5");

    // Another CN is another user: the file has no section for it.
    let (mut other, _) = Mqtt::connect_with(broker.tls_addr(), &unique_id("s2"), |o| {
        o.set_transport(tls::rumqttc_tls(&pki, Some("sensor-2")));
    });
    assert_eq!(other.subscribe("sensors/1/#", QoS::AtLeastOnce), vec![None]);

    // A username in CONNECT does not override the certificate.
    let (mut liar, _) = Mqtt::connect_with(broker.tls_addr(), &unique_id("s3"), |o| {
        o.set_transport(tls::rumqttc_tls(&pki, Some("sensor-2")));
        o.set_credentials("sensor-1", "whatever");
    });
    assert_eq!(liar.subscribe("sensors/1/#", QoS::AtLeastOnce), vec![None]);

    // No certificate, no identity: CONNACK 0x04, as mosquitto sends, and
    // the close.
    let mut anonymous = tls::raw(broker.tls_addr(), pki.client_config(None));
    anonymous.send(&connect(&unique_id("nocert")));
    anonymous.expect(&connack(false, 4));
    anonymous.expect_closed();
}

#[test]
fn require_certificate_refuses_clients_without_one_during_the_handshake() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, true, |c| c.security.require_certificate = true) else {
        return;
    };
    with_bystander(&broker, || {
        assert!(tls::refused(broker.tls_addr(), pki.client_config(None)));
        // A certificate from another CA is no better.
        let stranger = Pki::new();
        let foreign =
            pki.client_config_with(Some((&stranger, "mallory")), rustls::DEFAULT_VERSIONS);
        assert!(tls::refused(broker.tls_addr(), foreign));
        // With one, all is well.
        let mut ok = tls::raw(broker.tls_addr(), pki.client_config(Some("good")));
        ok.send(&connect(&unique_id("good")));
        ok.expect(&connack(false, 0));
    });
}

#[test]
fn a_plain_client_on_the_tls_port_is_closed_cleanly() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, false, |_| {}) else {
        return;
    };
    with_bystander(&broker, || {
        for _ in 0..3 {
            let mut plain = TcpStream::connect(broker.tls_addr()).unwrap();
            plain.set_read_timeout(Some(TIMEOUT)).unwrap();
            plain.write_all(&connect(&unique_id("plain"))).unwrap();
            // Read to the close: a timeout here would mean the broker kept
            // the connection open.
            let mut answer = Vec::new();
            plain
                .read_to_end(&mut answer)
                .expect("the broker closes the connection");
            // At most a TLS alert record (content type 21), never MQTT.
            assert!(
                answer.is_empty() || (answer[0] == 0x15 && answer.len() <= 7),
                "unexpected answer {}",
                hex(&answer)
            );
        }
    });
}

#[test]
fn a_tls_client_on_the_plain_port_is_closed_cleanly() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, false, |_| {}) else {
        return;
    };
    with_bystander(&broker, || {
        assert!(tls::handshake(broker.addr(), pki.client_config(None)).is_err());
        let mut hello = Raw::tcp(broker.addr());
        // The first bytes of a ClientHello record.
        hello.send(&[
            0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
        ]);
        hello.expect_closed();
    });
}

/// Reads until the broker closes the socket; returns what it sent and how
/// long that took. Fails if it is still open after `limit`.
fn read_until_closed(socket: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut answer = Vec::new();
    socket
        .read_to_end(&mut answer)
        .expect("the broker closes the connection in time");
    (answer, start.elapsed())
}

#[test]
fn a_handshake_that_stalls_is_closed_by_the_connect_timeout() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, false, |c| {
        c.connect_timeout = Duration::from_secs(1);
    }) else {
        return;
    };
    with_bystander(&broker, || {
        let start = Instant::now();
        // Half a record header, then silence.
        let mut stalled = TcpStream::connect(broker.tls_addr()).unwrap();
        stalled.write_all(&[0x16, 0x03]).unwrap();
        // A client that connects and says nothing.
        let mut silent = TcpStream::connect(broker.tls_addr()).unwrap();
        // Half of a real ClientHello.
        let mut hello = Vec::new();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        rustls::ClientConnection::new(pki.client_config(None), name)
            .unwrap()
            .write_tls(&mut hello)
            .unwrap();
        let mut partial = TcpStream::connect(broker.tls_addr()).unwrap();
        partial.write_all(&hello[..hello.len() / 2]).unwrap();
        for socket in [&mut stalled, &mut silent, &mut partial] {
            let (answer, _) = read_until_closed(socket, Duration::from_secs(3));
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(900), "closed after {took:?}");
            // Nothing but, at most, a close_notify alert.
            assert!(
                answer.is_empty() || answer == [0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00],
                "{}",
                hex(&answer)
            );
        }
    });
}

#[test]
fn reload_takes_new_certificates_for_new_handshakes_only() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, false, |_| {}) else {
        return;
    };
    let mut before = tls::handshake(broker.tls_addr(), pki.client_config(None)).unwrap();
    before.send(&connect(&unique_id("before")));
    before.expect(&connack(false, 0));

    // A server certificate from another CA replaces the old one.
    let other = Pki::new();
    other.server_files("server");
    std::fs::copy(other.path("server.pem"), pki.path("server.pem")).unwrap();
    std::fs::copy(other.path("server.key"), pki.path("server.key")).unwrap();
    broker.reload();
    assert!(tls::handshake(broker.tls_addr(), pki.client_config(None)).is_err());
    let mut after = tls::handshake(broker.tls_addr(), other.client_config(None)).unwrap();
    after.send(&connect(&unique_id("after")));
    after.expect(&connack(false, 0));
    // The open session keeps working.
    before.send(&PINGREQ);
    before.expect(&PINGRESP);

    // A broken key: the reload fails and the certificate in use stays.
    std::fs::write(pki.path("server.key"), "not a key\n").unwrap();
    broker.reload();
    let mut still = tls::handshake(broker.tls_addr(), other.client_config(None)).unwrap();
    still.send(&connect(&unique_id("still")));
    still.expect(&connack(false, 0));
}

#[test]
fn tls_protocols_limits_the_versions() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, false, |c| {
        c.security.tls_protocols = sol::config::TlsProtocols {
            tls12: true,
            tls13: false,
        };
    }) else {
        return;
    };
    let only13 = pki.client_config_with(None, &[&rustls::version::TLS13]);
    assert!(tls::handshake(broker.tls_addr(), only13).is_err());
    let mut ok = tls::handshake(broker.tls_addr(), pki.client_config(None)).unwrap();
    ok.send(&connect(&unique_id("v12")));
    ok.expect(&connack(false, 0));
}

// ---------------------------------------------------------------------------
// mosquitto_pub and mosquitto_sub (OpenSSL underneath)
// ---------------------------------------------------------------------------

fn mosquitto_installed() -> bool {
    let found = Command::new("mosquitto_pub")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        println!("note: mosquitto_pub not installed; the mosquitto TLS checks are skipped");
    }
    found
}

/// Runs `mosquitto_sub ... -C 1` in the background; returns its child.
fn mosquitto_sub(port: u16, topic: &str, extra: &[&str]) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "10",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn mosquitto_pub(port: u16, topic: &str, message: &str, extra: &[&str]) -> std::process::Output {
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-m",
            message,
            "-q",
            "1",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn mosquitto_clients_over_tls_with_and_without_a_client_certificate() {
    if !mosquitto_installed() {
        return;
    }
    let pki = Pki::new();
    let acl = pki.path("acl");
    std::fs::write(&acl, "user cli-user\ntopic readwrite cli/#\n").unwrap();
    let Some(broker) = broker(&pki, true, |c| {
        c.security.use_identity_as_username = true;
        c.security.acl_file = Some(ConfigPath::new(&acl));
    }) else {
        return;
    };
    let port = broker.tls_addr().port();
    let ca = pki.path("ca.pem");
    let (cert, key) = pki.client_files("cli", "cli-user");
    let with_cert = [
        "--cafile",
        tls::arg(&ca),
        "--cert",
        tls::arg(&cert),
        "--key",
        tls::arg(&key),
    ];
    let topic = format!("cli/{}", unique_id("m"));
    let mut sub = mosquitto_sub(port, &topic, &with_cert);
    // Publish until the subscriber has it and exits (-C 1): its SUBSCRIBE
    // may still be on the way the first time. Each publish is a new TLS
    // connection with the client certificate.
    let deadline = Instant::now() + Duration::from_secs(8);
    while sub.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let out = mosquitto_pub(port, &topic, "over tls", &with_cert);
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let out = sub.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "over tls",
        "mosquitto_sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without a client certificate the CN is missing: refused (0x05).
    let out = mosquitto_pub(port, &topic, "anonymous", &["--cafile", tls::arg(&ca)]);
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
    // Outside its ACL the publish is accepted and dropped (QoS 1 still acked).
    let out = mosquitto_pub(port, "elsewhere", "dropped", &with_cert);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// paho-mqtt (Python's ssl module, OpenSSL underneath)
// ---------------------------------------------------------------------------

/// Subscribes, publishes to itself at QoS 1 and prints the CONNACK code, the
/// granted QoS and the payload that came back. Written
/// for paho 1.x and 2.x alike.
const PAHO_SCRIPT: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
host, port, ca, cert, key, topic = sys.argv[1:7]
kwargs = {}
if hasattr(mqtt, "CallbackAPIVersion"):
    kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION1
client = mqtt.Client(client_id="paho-tls", **kwargs)
client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
done = threading.Event()
result = {}
def on_connect(c, userdata, flags, rc):
    result["rc"] = rc
    if rc == 0:
        c.subscribe(topic, qos=1)
    else:
        done.set()
def on_subscribe(c, userdata, mid, granted):
    result["granted"] = list(granted)
    if granted[0] == 128:
        done.set()
    else:
        c.publish(topic, "paho over tls", qos=1)
def on_message(c, userdata, msg):
    result["message"] = msg.payload.decode()
    done.set()
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, int(port), keepalive=30)
client.loop_start()
done.wait(10)
client.disconnect()
client.loop_stop()
print(result.get("rc"), result.get("granted"), result.get("message"))
"#;

/// A Python that has paho-mqtt, or `None` after a note.
fn python_with_paho() -> Option<&'static str> {
    for python in ["/usr/bin/python3", "python3"] {
        let has_paho = Command::new(python)
            .args(["-c", "import paho.mqtt.client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if has_paho {
            return Some(python);
        }
    }
    println!("note: no python3 with paho-mqtt; the paho TLS check is skipped");
    None
}

#[test]
fn paho_over_tls_with_a_client_certificate() {
    let Some(python) = python_with_paho() else {
        return;
    };
    let pki = Pki::new();
    let acl = pki.path("acl");
    std::fs::write(&acl, "user paho-user\ntopic readwrite paho/#\n").unwrap();
    let Some(broker) = broker(&pki, true, |c| {
        c.security.use_identity_as_username = true;
        c.security.require_certificate = true;
        c.security.acl_file = Some(ConfigPath::new(&acl));
    }) else {
        return;
    };
    let (cert, key) = pki.client_files("paho", "paho-user");
    let run = |topic: &str| {
        let out = Command::new(python)
            .args(["-c", PAHO_SCRIPT])
            .args(["localhost", &broker.tls_addr().port().to_string()])
            .args([pki.path("ca.pem"), cert.clone(), key.clone()])
            .arg(topic)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        run(&format!("paho/{}", unique_id("t"))),
        "0 [1] paho over tls"
    );
    // Outside its ACL the subscription is refused.
    assert_eq!(run(&format!("other/{}", unique_id("t"))), "0 [128] None");
}

// ---------------------------------------------------------------------------
// The binary's --test-config
// ---------------------------------------------------------------------------

#[test]
fn test_config_reads_the_certificate_files() {
    let pki = Pki::new();
    let conf = pki.path("sol.conf");
    let write_conf = |keyfile: &str| {
        std::fs::write(
            &conf,
            format!(
                "ip_port 1883\ntls_port 8883\ncertfile {}\n# the key:\nkeyfile {}\ncafile {}\n",
                pki.path("server.pem").display(),
                pki.path(keyfile).display(),
                pki.path("ca.pem").display()
            ),
        )
        .unwrap();
    };
    let test_config = || {
        Command::new(env!("CARGO_BIN_EXE_sol"))
            .args(["--test-config", "-c", tls::arg(&conf)])
            .output()
            .unwrap()
    };
    write_conf("server.key");
    let out = test_config();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("listeners: tcp 127.0.0.1:1883 and tls 127.0.0.1:8883"),
        "{text}"
    );

    // A key that is not the certificate's: refused, on the certfile line.
    let (_, other_key) = pki.client("someone");
    std::fs::write(pki.path("other.key"), other_key).unwrap();
    write_conf("other.key");
    let out = test_config();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("line 3: certfile "), "{text}");
    assert!(text.contains("does not go with keyfile"), "{text}");

    // A missing key file: refused, on the keyfile line.
    write_conf("missing.key");
    let out = test_config();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("line 5: keyfile "), "{text}");
}

/// A connection reset in the middle of a TLS handshake (after half a
/// ClientHello, and after the whole ClientHello while the server's flight is
/// unread) frees the connection and disturbs nobody: a bystander keeps its
/// QoS 1 round trips, and a new TLS client connects afterwards.
#[test]
fn a_reset_in_the_middle_of_a_handshake_disturbs_nobody() {
    let pki = Pki::new();
    let Some(broker) = broker(&pki, false, |_| {}) else {
        return;
    };
    with_bystander(&broker, || {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut hello = Vec::new();
        rustls::ClientConnection::new(pki.client_config(None), name)
            .unwrap()
            .write_tls(&mut hello)
            .unwrap();
        for cut in [hello.len() / 2, hello.len()] {
            for _ in 0..20 {
                let mut socket = TcpStream::connect(broker.tls_addr()).unwrap();
                socket.write_all(&hello[..cut]).unwrap();
                if cut == hello.len() {
                    // Let the server answer, then leave without reading it.
                    thread::sleep(Duration::from_millis(5));
                }
                // SO_LINGER 0: closing sends a reset, not a FIN.
                socket2::SockRef::from(&socket)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(socket);
            }
        }
        let mut client = tls::handshake(broker.tls_addr(), pki.client_config(None)).unwrap();
        client.send(&connect(&unique_id("after")));
        client.expect(&connack(false, 0));
    });
}
