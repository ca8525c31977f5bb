//! `listener PORT [ADDRESS]` blocks: each is a real listener beside the
//! default ones, with its own TLS settings and its own `max_connections`,
//! and every client, whichever listener it came in by, meets the same
//! sessions and topics. sol's own configuration, so these skip themselves
//! against an external broker.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use common::tls::{self, Pki};
use common::*;
use sol::config::{Config, ConfigPath, ListenerBind, ListenerConfig, ListenerProtocol, TlsConfig};
use sol::net::ListenerAddr;

/// A `listener` block on `bind`, with nothing else set.
fn block(bind: ListenerBind) -> ListenerConfig {
    ListenerConfig {
        line: 1,
        bind,
        protocol: ListenerProtocol::Mqtt,
        max_connections: None,
        tls: None,
    }
}

/// `listener 0 127.0.0.1`: a TCP block on a free port.
fn tcp_block() -> ListenerConfig {
    block(ListenerBind::Tcp(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        0,
    )))
}

/// The TLS settings of a block with `pki`'s server certificate, asking for
/// client certificates.
fn tls_settings(pki: &Pki) -> TlsConfig {
    TlsConfig {
        certfile: Some(ConfigPath::new(pki.path("server.pem"))),
        keyfile: Some(ConfigPath::new(pki.path("server.key"))),
        cafile: Some(ConfigPath::new(pki.path("ca.pem"))),
        ..TlsConfig::default()
    }
}

/// The addresses of the last `count` listeners: the blocks, which come
/// after the default listeners.
fn blocks(broker: &TestBroker, count: usize) -> Vec<ListenerAddr> {
    let all = broker.listener_addrs();
    assert!(all.len() >= count, "{all:?}");
    all[all.len() - count..].to_vec()
}

fn tcp(addr: &ListenerAddr) -> SocketAddr {
    match addr {
        ListenerAddr::Tcp(addr) | ListenerAddr::Tls(addr) => *addr,
        other => panic!("not a TCP listener: {other:?}"),
    }
}

#[test]
fn two_tcp_blocks_on_port_zero_accept_clients_and_share_sessions_and_topics() {
    let Some(broker) = TestBroker::with(|c| {
        c.listeners.push(tcp_block());
        c.listeners.push(tcp_block());
    }) else {
        return;
    };
    let addrs = blocks(&broker, 2);
    let (a, b) = (tcp(&addrs[0]), tcp(&addrs[1]));
    assert!(matches!(addrs[0], ListenerAddr::Tcp(_)), "{addrs:?}");
    assert_ne!(a.port(), 0);
    assert_ne!(a, b);
    assert_ne!(a, broker.addr());
    // The default listeners are still first, and still there.
    assert_eq!(
        broker.listener_addrs().first(),
        Some(&ListenerAddr::Tcp(broker.addr()))
    );

    // A topic: subscribed on the default listener, published on a block.
    let topic = unique_topic("blk");
    let mut sub = Raw::connected_clean(broker.addr(), &unique_id("dsub"));
    sub.subscribe(1, &[(topic.as_str(), 1)], &[1]);
    let mut publisher = Raw::connected_clean(a, &unique_id("apub"));
    publisher.send(&publish(&topic, b"from block a", 0, false, None));
    sub.expect_message(&topic, b"from block a", 0);

    // A session: made on block a, resumed on block b, where what was
    // published for it meanwhile arrives.
    let id = unique_id("roam");
    let persistent = Connect::new(&id).clean(false);
    let mut roamer = Raw::connected(a, &persistent, false);
    roamer.subscribe(1, &[(topic.as_str(), 1)], &[1]);
    roamer.send(&DISCONNECT);
    roamer.expect_closed();
    publisher.send(&publish(&topic, b"while away", 1, false, Some(7)));
    publisher.expect(&puback(7));
    let mut back = Raw::connected(b, &persistent, true);
    let got = back.expect_message(&topic, b"while away", 1);
    back.send(&puback(got.id.unwrap()));
    // Answered after the PUBACK: the message is no longer in flight when
    // the takeover below resumes the session.
    back.ping();

    // A takeover across listeners: the same id on the default listener.
    let mut taken = Raw::connected(broker.addr(), &persistent, true);
    back.expect_closed();
    taken.ping();
    broker.assert_alive();
}

#[test]
fn a_unix_socket_block_accepts_clients_beside_the_tcp_listener() {
    let mut path = PathBuf::new();
    let Some(broker) = TestBroker::with(|c| {
        let dir = c.unix_socket.as_ref().and_then(|p| p.parent()).unwrap();
        path = dir.join("block.sock");
        c.listeners.push(block(ListenerBind::Unix(path.clone())));
    }) else {
        return;
    };
    assert_eq!(
        broker.listener_addrs().last(),
        Some(&ListenerAddr::Unix(path.clone()))
    );
    let topic = unique_topic("ublk");
    let mut sub = Raw::connected_unix(&path, &Connect::new(&unique_id("usub")), false);
    sub.subscribe(1, &[(topic.as_str(), 0)], &[0]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("tpub"));
    publisher.send(&publish(&topic, b"over tcp", 0, false, None));
    sub.expect_message(&topic, b"over tcp", 0);
    broker.assert_alive();
}

#[test]
fn a_tls_block_authenticates_its_clients_by_its_own_rule() {
    let pki = Pki::new();
    let identity = TlsConfig {
        use_identity_as_username: true,
        ..tls_settings(&pki)
    };
    let required = TlsConfig {
        require_certificate: true,
        ..tls_settings(&pki)
    };
    let Some(broker) = TestBroker::with(|c| {
        c.security.allow_anonymous = false;
        for tls in [identity, tls_settings(&pki), required] {
            c.listeners.push(ListenerConfig {
                tls: Some(tls),
                ..tcp_block()
            });
        }
    }) else {
        return;
    };
    let addrs = blocks(&broker, 3);
    assert!(
        addrs.iter().all(|a| matches!(a, ListenerAddr::Tls(_))),
        "{addrs:?}"
    );
    let (identity, plain_rule, required) = (tcp(&addrs[0]), tcp(&addrs[1]), tcp(&addrs[2]));
    let with_cert = pki.client_config(Some("sensor-1"));

    // On the identity block the certificate is the credential.
    let topic = unique_topic("tlsb");
    let mut sensor = tls::raw(identity, with_cert.clone());
    sensor.send(&connect(&unique_id("cn")));
    sensor.expect(&connack(false, 0));
    sensor.subscribe(1, &[(topic.as_str(), 0)], &[0]);
    // No certificate there: no identity, 0x04.
    let mut nobody = tls::raw(identity, pki.client_config(None));
    nobody.send(&connect(&unique_id("nocert")));
    nobody.expect(&connack(false, 4));
    nobody.expect_closed();

    // The same certificate on a block without the rule is only TLS: an
    // anonymous CONNECT is refused, as on the plain listener.
    let mut anonymous = tls::raw(plain_rule, with_cert.clone());
    anonymous.send(&connect(&unique_id("anon")));
    anonymous.expect(&connack(false, 5));
    anonymous.expect_closed();
    let mut plain = Raw::tcp(broker.addr());
    plain.send(&connect(&unique_id("plain")));
    plain.expect(&connack(false, 5));

    // require_certificate is the block's: refused there without one, while
    // the block that does not require it completes the handshake.
    assert!(tls::refused(required, pki.client_config(None)));
    assert!(tls::handshake(plain_rule, pki.client_config(None)).is_ok());

    // The TLS clients share the broker's topics.
    let mut other = tls::raw(identity, pki.client_config(Some("sensor-2")));
    other.send(&connect(&unique_id("cn2")));
    other.expect(&connack(false, 0));
    other.send(&publish(&topic, b"over a tls block", 0, false, None));
    sensor.expect_message(&topic, b"over a tls block", 0);
    broker.assert_alive();
}

#[test]
fn a_blocks_max_connections_refuses_the_next_client_on_that_listener_only() {
    let Some(broker) = TestBroker::with(|c| {
        c.listeners.push(ListenerConfig {
            max_connections: Some(1),
            ..tcp_block()
        });
        c.listeners.push(tcp_block());
    }) else {
        return;
    };
    let addrs = blocks(&broker, 2);
    let (limited, open) = (tcp(&addrs[0]), tcp(&addrs[1]));
    let mut first = Raw::connected_clean(limited, &unique_id("one"));
    let mut second = Raw::tcp(limited);
    second.expect_closed();
    // The other listeners are not affected.
    let mut elsewhere = Raw::connected_clean(broker.addr(), &unique_id("dflt"));
    let mut beside = Raw::connected_clean(open, &unique_id("open"));
    let mut beside2 = Raw::connected_clean(open, &unique_id("open2"));
    first.ping();
    elsewhere.ping();
    beside.ping();
    beside2.ping();
    // Once the first goes, its seat is free again.
    first.send(&DISCONNECT);
    first.expect_closed();
    let mut again = Raw::connected_clean(limited, &unique_id("again"));
    again.ping();
    broker.assert_alive();
}

#[test]
fn check_files_reads_each_file_once_for_bind_with() {
    // Whatever SOL_TEST_BROKER says, this is sol's own API, run in this
    // process: the files `check_files` read are what the server runs with,
    // even when they are gone by the time it binds.
    let pki = Pki::new();
    let passwd = pki.path("passwd");
    // `openssl passwd -6 -salt 'rounds=1000$fastsalt' secret`.
    let secret = "$6$rounds=1000$fastsalt$QUh6pcssLqL9TTIo8uuXvjOuE15BI8RaB407ulJHJSw7xoZdBHxJidPusc4FQzMxJMFEv99YlsyJ7QtdXDELg.";
    std::fs::write(&passwd, format!("alice:{secret}\n")).unwrap();
    let mut config = Config {
        ip_address: "127.0.0.1".to_string(),
        ip_port: 0,
        tcp_enabled: true,
        ..Config::default()
    };
    config.security.password_file = Some(ConfigPath::new(&passwd));
    config.security.allow_anonymous = false;
    config.listeners.push(ListenerConfig {
        tls: Some(tls_settings(&pki)),
        ..tcp_block()
    });
    let files = sol::net::check_files(&config).unwrap();
    for name in ["passwd", "server.pem", "server.key", "ca.pem"] {
        std::fs::remove_file(pki.path(name)).unwrap();
    }
    // Reading them now fails, so the bind below cannot have read them.
    assert!(sol::net::check_files(&config).is_err());
    let server = sol::net::Server::bind_with(&config, files).unwrap();
    let addrs = server.listener_addrs();
    let handle = server.handle();
    let running = std::thread::spawn(move || server.run());
    let mut login = Connect::new(&unique_id("once"));
    login.username = Some(b"alice".to_vec());
    login.password = Some(b"secret".to_vec());
    let mut over_tls = tls::raw(tcp(&addrs[1]), pki.client_config(None));
    over_tls.send(&login.bytes());
    over_tls.expect(&connack(false, 0));
    handle.shutdown();
    running.join().unwrap().unwrap();
}

/// Kills the `sol` process when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_logs_every_listener_it_listens_on() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_id("lst"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("sol.log");
    let socket = dir.join("block.sock");
    let conf = dir.join("sol.conf");
    std::fs::write(
        &conf,
        format!(
            "ip_port 0\nlog_path {}\nlistener 0\nlistener 0 {}\n",
            log.display(),
            socket.display()
        ),
    )
    .unwrap();
    let sol = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_sol"))
            .args(["-c", conf.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    let listening = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter_map(|line| line.split("listening on ").nth(1))
            .map(str::to_string)
            .collect();
        if lines.len() == 3 {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(listening[2], format!("unix socket {}", socket.display()));
    // Both TCP listeners got ports of their own, and the block's answers.
    let ports: Vec<SocketAddr> = listening[..2]
        .iter()
        .map(|line| line.strip_prefix("tcp ").unwrap().parse().unwrap())
        .collect();
    assert_ne!(ports[0], ports[1]);
    Raw::connected_clean(ports[1], &unique_id("logd")).ping();
    Raw::connected_unix(&socket, &Connect::new(&unique_id("logu")), false).ping();
    drop(sol);
    let _ = std::fs::remove_dir_all(&dir);
}
