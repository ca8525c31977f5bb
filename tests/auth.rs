//! Authentication end to end: `allow_anonymous`, password files written by
//! passwd.py and by `openssl passwd -6`, the CONNACK codes and the close,
//! what a flood of bad passwords does to everyone else, reloading the
//! password file, and what reaches the log.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sol::config::ConfigPath;

// `openssl passwd -6 -salt somesalt secret`: 5000 rounds, the default cost.
const SECRET: &str = "$6$somesalt$JX0Uhce8rLRHbaqoSQDYsnTxsqcjCNNcrl79ieTwPGzEhxBEeJcsgDUWIOwc3sDvZN34ZJBWQep7.lcAuSesy/";

/// A directory for one test's files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::env::temp_dir().join(format!("sol-auth-{}", unique_id("")));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// sol with this password file (and `tweak`), or `None` against an external
/// broker.
fn broker_with_passwords(
    path: &Path,
    tweak: impl FnOnce(&mut sol::config::Config),
) -> Option<TestBroker> {
    TestBroker::with(|config| {
        config.security.password_file = Some(ConfigPath::new(path));
        tweak(config);
    })
}

fn login(client_id: &str, username: &str, password: Option<&str>) -> Connect {
    let mut c = Connect::new(client_id);
    c.username = Some(username.as_bytes().to_vec());
    c.password = password.map(|p| p.as_bytes().to_vec());
    c
}

/// Sends `connect` followed, in the same write, by a PUBLISH to `topic`;
/// expects CONNACK `code` and the close. The PUBLISH must not be routed.
fn refused_and_rest_ignored(broker: &TestBroker, connect: &Connect, code: u8, topic: &str) {
    let mut raw = Raw::tcp(broker.addr());
    let mut bytes = connect.bytes();
    bytes.extend(publish(topic, b"must not be routed", 1, true, Some(1)));
    bytes.extend(subscribe(2, &[("#", 0)]));
    raw.send(&bytes);
    raw.expect(&connack(false, code));
    raw.expect_closed();
}

#[test]
fn anonymous_clients_get_0x05_when_not_allowed() {
    let dir = Dir::new();
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\n"));
    let Some(broker) = broker_with_passwords(&passwd, |c| c.security.allow_anonymous = false)
    else {
        return;
    };
    let topic = unique_topic("anon");
    let mut watcher = Mqtt::connect_with(broker.addr(), &unique_id("w"), |o| {
        o.set_credentials("alice", "secret");
    })
    .0;
    watcher.subscribe(&topic, QoS::AtLeastOnce);
    with_bystander_as(&broker, "alice", "secret", || {
        refused_and_rest_ignored(&broker, &Connect::new(&unique_id("anon")), 5, &topic);
    });
    // Nothing of the refused client's PUBLISH arrived, and nothing was
    // retained.
    assert!(watcher.drain_until_marker(&topic).is_empty());
    let mut late = Mqtt::connect_with(broker.addr(), &unique_id("late"), |o| {
        o.set_credentials("alice", "secret");
    })
    .0;
    late.subscribe(&topic, QoS::AtLeastOnce);
    assert!(late.drain_until_marker(&topic).is_empty());
}

/// [`with_bystander`] for a broker that wants a login.
/// The shared bystander connects anonymously; where anonymous clients are
/// refused, a logged-in client checks it is still served before and after.
fn with_bystander_as(broker: &TestBroker, user: &str, password: &str, bad: impl FnOnce()) {
    let topic = unique_topic("by");
    let (mut mqtt, _) = Mqtt::connect_with(broker.addr(), &unique_id("by"), |o| {
        o.set_credentials(user, password);
    });
    mqtt.subscribe(&topic, QoS::AtLeastOnce);
    mqtt.publish(&topic, QoS::AtLeastOnce, false, "before");
    mqtt.expect(&topic, b"before");
    bad();
    mqtt.publish(&topic, QoS::AtLeastOnce, false, "after");
    mqtt.expect(&topic, b"after");
    broker.assert_alive();
}

#[test]
fn bad_credentials_get_0x05_and_nothing_after_is_processed() {
    let dir = Dir::new();
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\n"));
    let Some(broker) = broker_with_passwords(&passwd, |_| {}) else {
        return;
    };
    let topic = unique_topic("bad");
    let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
    watcher.subscribe(&topic, QoS::AtLeastOnce);
    with_bystander(&broker, || {
        for connect in [
            login(&unique_id("c"), "alice", Some("Secret")),
            login(&unique_id("c"), "alice", Some("")),
            login(&unique_id("c"), "mallory", Some("secret")),
            // A username without a password, against a password file.
            login(&unique_id("c"), "alice", None),
        ] {
            refused_and_rest_ignored(&broker, &connect, 5, &topic);
        }
        // The right password gets in, over raw bytes and through rumqttc.
        Raw::connected(
            broker.addr(),
            &login(&unique_id("ok"), "alice", Some("secret")),
            false,
        );
        let (ok, _) = Mqtt::connect_with(broker.addr(), &unique_id("ok"), |o| {
            o.set_credentials("alice", "secret");
        });
        ok.disconnect();
    });
    assert!(watcher.drain_until_marker(&topic).is_empty());
}

#[test]
fn a_refused_login_does_not_take_over_the_connected_client() {
    let dir = Dir::new();
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\n"));
    let Some(broker) = broker_with_passwords(&passwd, |_| {}) else {
        return;
    };
    let id = unique_id("dev");
    let mut good = Raw::connected(broker.addr(), &login(&id, "alice", Some("secret")), false);
    let mut bad = Raw::tcp(broker.addr());
    bad.send(&login(&id, "alice", Some("guess")).bytes());
    bad.expect(&connack(false, 5));
    bad.expect_closed();
    good.send(&PINGREQ);
    good.expect(&PINGRESP);
}

#[test]
fn a_password_file_written_by_passwd_py_works_end_to_end() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("note: python3 not found; passwd.py end to end not tested");
        return;
    }
    let dir = Dir::new();
    let passwd = dir.write("passwd", "# users\nalice:wonder land\nbob:päss:wörd\n");
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/passwd.py"))
        .arg(&passwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/passwd.py"))
        .args(["-b", passwd.to_str().unwrap(), "carol", "added later"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&passwd).unwrap();
    assert!(
        !text.contains("wonder land"),
        "passwd.py left a password in clear"
    );
    let Some(broker) = broker_with_passwords(&passwd, |c| c.security.allow_anonymous = false)
    else {
        return;
    };
    for (user, password) in [
        ("alice", "wonder land"),
        ("bob", "päss:wörd"),
        ("carol", "added later"),
    ] {
        let (mqtt, _) = Mqtt::connect_with(broker.addr(), &unique_id("py"), |o| {
            o.set_credentials(user, password);
        });
        mqtt.disconnect();
        let mut wrong = Raw::tcp(broker.addr());
        wrong.send(&login(&unique_id("py"), user, Some("wonder")).bytes());
        wrong.expect(&connack(false, 5));
    }
}

#[test]
fn a_hash_from_openssl_passwd_works_end_to_end() {
    let dir = Dir::new();
    // Made now when openssl is installed; the recorded output otherwise.
    let hash = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take()?.write_all(b"secret\n").ok()?;
            let out = child.wait_with_output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8(out.stdout).ok())?
        })
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| {
            println!("note: openssl not found; using a recorded `openssl passwd -6` hash");
            SECRET.to_string()
        });
    assert!(hash.starts_with("$6$"), "{hash}");
    let passwd = dir.write("passwd", &format!("dave:{hash}\n"));
    let Some(broker) = broker_with_passwords(&passwd, |_| {}) else {
        return;
    };
    Raw::connected(
        broker.addr(),
        &login(&unique_id("o"), "dave", Some("secret")),
        false,
    );
    let mut wrong = Raw::tcp(broker.addr());
    wrong.send(&login(&unique_id("o"), "dave", Some("secret\n")).bytes());
    wrong.expect(&connack(false, 5));
}

#[test]
fn a_flood_of_bad_passwords_does_not_stall_other_clients() {
    let dir = Dir::new();
    // The default cost, 5000 rounds: every wrong password is a full check.
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\n"));
    let Some(broker) = broker_with_passwords(&passwd, |_| {}) else {
        return;
    };
    let addr = broker.addr();
    with_bystander(&broker, || {
        let start = Instant::now();
        // Four waves of 50 connections, each wave's CONNECTs all sent
        // before any answer is read, so the broker has 50 checks queued.
        for wave in 0..4 {
            let mut clients: Vec<Raw> = (0..50).map(|_| Raw::tcp(addr)).collect();
            for (n, raw) in clients.iter_mut().enumerate() {
                raw.send(&login(&format!("flood{wave}x{n}"), "alice", Some("wrong")).bytes());
            }
            for raw in &mut clients {
                raw.expect(&connack(false, 5));
                raw.expect_closed();
            }
        }
        println!(
            "200 CONNECTs with a wrong password answered in {:?}",
            start.elapsed()
        );
        // Good logins are cached: one check, then lookups.
        let start = Instant::now();
        for n in 0..200 {
            let mut raw = Raw::connected(
                addr,
                &login(&format!("good{n}"), "alice", Some("secret")),
                false,
            );
            raw.send(&DISCONNECT);
        }
        println!(
            "200 CONNECTs with the right password answered in {:?}",
            start.elapsed()
        );
    });
}

#[test]
fn reloading_the_password_file_adds_users_and_a_broken_file_changes_nothing() {
    let dir = Dir::new();
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\n"));
    let Some(broker) = broker_with_passwords(&passwd, |_| {}) else {
        return;
    };
    let try_login = |user: &str, code: u8| {
        let mut raw = Raw::tcp(broker.addr());
        raw.send(&login(&unique_id("r"), user, Some("secret")).bytes());
        raw.expect(&connack(false, code));
    };
    try_login("alice", 0);
    try_login("bob", 5);
    dir.write("passwd", &format!("alice:{SECRET}\nbob:{SECRET}\n"));
    broker.reload();
    try_login("bob", 0);
    // A plain-text password makes the file invalid: nothing changes, and in
    // particular nobody gets in without the right password.
    dir.write("passwd", "alice:secret\n");
    broker.reload();
    try_login("alice", 0);
    try_login("bob", 0);
    std::fs::remove_file(&passwd).unwrap();
    broker.reload();
    try_login("bob", 0);
    try_login("mallory", 5);
}

// ---------------------------------------------------------------------------
// The binary: --test-config, and what reaches the log
// ---------------------------------------------------------------------------

#[test]
fn test_config_reports_a_bad_password_file_against_both_lines() {
    let dir = Dir::new();
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\nbob:plain\n"));
    let acl = dir.write("acl", "topic sometimes a/b\n");
    let conf = dir.write(
        "sol.conf",
        &format!(
            "ip_port 0\npassword_file {}\n\nacl_file {}\n",
            passwd.display(),
            acl.display()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sol"))
        .args(["--test-config", "-c", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!(
            "line 2: password_file {}: line 2: the password is not hashed",
            passwd.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("line 4: acl_file {}: line 1: ", acl.display())),
        "{text}"
    );
    // The password typed in clear is not repeated.
    assert!(!text.contains("plain"), "{text}");

    dir.write("passwd", &format!("alice:{SECRET}\n"));
    dir.write("acl", "topic read a/#\n");
    let out = Command::new(env!("CARGO_BIN_EXE_sol"))
        .args(["--test-config", "-c", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn passwords_never_reach_the_log() {
    let dir = Dir::new();
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\n"));
    let log = dir.0.join("sol.log");
    let conf = dir.write(
        "sol.conf",
        &format!(
            "ip_port 0\nlog_level DEBUG\nlog_path {}\npassword_file {}\n",
            log.display(),
            passwd.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sol"))
        .args(["-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_for_listener(&log);
    let mut bad = Raw::tcp(addr);
    bad.send(&login("leaky", "alice", Some("hunter2-wrong")).bytes());
    bad.expect(&connack(false, 5));
    let mut good = Raw::connected(addr, &login("fine", "alice", Some("secret")), false);
    good.send(&DISCONNECT);
    // The refusal is logged (after it happened, so wait for the line).
    let deadline = Instant::now() + TIMEOUT;
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("Client fine disconnected") {
        std::thread::sleep(Duration::from_millis(20));
        text.clear();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(text.contains("leaky"), "the refusal is not logged:\n{text}");
    assert!(text.contains("bad username or password"), "{text}");
    for secret in ["hunter2-wrong", "secret", "$6$", "somesalt"] {
        assert!(!text.contains(secret), "{secret:?} is in the log:\n{text}");
    }
}

/// The TCP address a broker started with `ip_port 0` logged.
fn wait_for_listener(log: &Path) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|line| line.split("listening on tcp ").nth(1))
        {
            return addr.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "sol did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_password_file_is_read_once_when_the_server_binds() {
    // The core applies what `Server::bind` read: a file gone by the time
    // the loop starts changes nothing. Whatever SOL_TEST_BROKER says, this
    // is sol's own API, run in this process.
    let dir = Dir::new();
    let passwd = dir.write("passwd", &format!("alice:{SECRET}\n"));
    let mut config = sol::config::Config {
        ip_address: "127.0.0.1".to_string(),
        ip_port: 0,
        tcp_enabled: true,
        ..Default::default()
    };
    config.security.password_file = Some(ConfigPath::new(&passwd));
    config.security.allow_anonymous = false;
    let server = sol::net::Server::bind(&config).unwrap();
    std::fs::remove_file(&passwd).unwrap();
    let addr = server.tcp_addr().unwrap();
    let handle = server.handle();
    let running = std::thread::spawn(move || server.run());
    let mut raw = Raw::tcp(addr);
    raw.send(&login("once", "alice", Some("secret")).bytes());
    raw.expect(&connack(false, 0));
    handle.shutdown();
    running.join().unwrap().unwrap();
}
