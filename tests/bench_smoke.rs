//! A tiny run of sol-bench against a broker, to keep the bench working: it
//! must connect, publish, receive and verify every count. Nothing here
//! measures speed; the bench proper is `bench/compare.sh`.

mod common;

use std::process::{Command, Output};

use common::*;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sol-bench"))
        .args(args)
        .arg("--quiet")
        .output()
        .expect("sol-bench runs")
}

/// The JSON line of a run, as (key, raw value) lookups.
struct Json(String);

impl Json {
    fn of(out: &Output) -> Json {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "no JSON line; stdout:\n{stdout}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        Json(line.to_string())
    }

    fn get(&self, key: &str) -> &str {
        let pat = format!("\"{key}\":");
        let start = self
            .0
            .find(&pat)
            .unwrap_or_else(|| panic!("{key} missing in {}", self.0))
            + pat.len();
        let rest = &self.0[start..];
        let end = rest.find([',', '}']).unwrap();
        &rest[..end]
    }
}

fn fanin(broker: &TestBroker, qos: &str, extra: &[&str]) -> Json {
    let port = broker.addr().port().to_string();
    let host = broker.addr().ip().to_string();
    let mut args = vec![
        "fanin",
        "--host",
        &host,
        "--port",
        &port,
        "--pubs",
        "2",
        "--messages",
        "50",
        "--qos",
        qos,
    ];
    args.extend_from_slice(extra);
    let out = bench(&args);
    assert!(
        out.status.success(),
        "sol-bench failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Json::of(&out)
}

fn assert_complete(j: &Json) {
    assert_eq!(j.get("verified"), "true", "{}", j.0);
    assert_eq!(j.get("sent"), "100");
    assert_eq!(j.get("expected"), "100");
    assert_eq!(j.get("received"), "100");
    assert_eq!(j.get("lost"), "0");
    assert_eq!(j.get("duplicated"), "0");
    assert_eq!(j.get("out_of_order"), "0");
    assert_eq!(j.get("protocol_errors"), "0");
}

#[test]
fn fanin_two_publishers_qos0_verifies_every_count() {
    let broker = TestBroker::start();
    let j = fanin(&broker, "0", &[]);
    assert_complete(&j);
    assert_eq!(j.get("pubs"), "2");
    assert_eq!(j.get("broker_cpu_s"), "null", "no --pid given");
    broker.assert_alive();
}

#[test]
fn fanin_qos1_and_qos2_complete_their_handshakes() {
    let broker = TestBroker::start();
    // A window of 4 makes the publishers wait for acknowledgements.
    for qos in ["1", "2"] {
        let j = fanin(&broker, qos, &["--inflight", "4"]);
        assert_complete(&j);
        assert_eq!(j.get("qos"), qos);
    }
    broker.assert_alive();
}

#[test]
fn the_broker_pid_gives_cpu_and_rss_readings() {
    // The broker runs in this process, so this process is its pid.
    let broker = TestBroker::sol_only("reads the in-process broker's /proc entry");
    let Some(broker) = broker else { return };
    let pid = std::process::id().to_string();
    let j = fanin(&broker, "0", &["--pid", &pid]);
    assert_complete(&j);
    assert_ne!(j.get("broker_cpu_s"), "null");
    let rss: f64 = j.get("broker_rss_after_kb").parse().unwrap();
    assert!(rss > 0.0, "{}", j.0);
}

#[test]
fn no_broker_is_a_failure_not_a_result() {
    // Bind and drop a listener to find a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = bench(&["fanin", "--port", &port, "--messages", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains('{'));
}

#[test]
fn conns_over_a_unix_socket_waits_out_a_full_backlog() {
    // A Unix connect to a full listen queue fails at once with EAGAIN
    // rather than waiting like a TCP SYN: with a backlog of 1 and 64
    // connects at once, the bench must retry instead of giving up.
    let Some(broker) = TestBroker::with(|c| c.tcp_backlog = 1) else {
        return;
    };
    let Some(path) = broker.unix_path().and_then(|p| p.to_str()) else {
        return;
    };
    let out = bench(&[
        "conns",
        "--unix",
        path,
        "--conns",
        "300",
        "--concurrency",
        "64",
        "--hold",
        "0",
    ]);
    assert!(
        out.status.success(),
        "sol-bench failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let j = Json::of(&out);
    assert_eq!(j.get("conns"), "300", "{}", j.0);
    broker.assert_alive();
}
