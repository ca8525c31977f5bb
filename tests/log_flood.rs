//! Log amplification: CONNECTs whose client id and username are tens of
//! kilobytes of U+0001 (ten bytes of log each, escaped) must not turn into
//! more log than was received. The `sol` binary runs with a `log_path`,
//! beside a bystander.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A `sol` process logging to a file in its own directory, killed on drop.
struct Sol {
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl Sol {
    fn start(name: &str, extra: &str) -> Sol {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("log-flood-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sol.log");
        let config = dir.join("sol.conf");
        std::fs::write(
            &config,
            format!(
                "ip_port 0\nlog_path {}\nstats_publish_interval 0\n{extra}",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sol"))
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut sol = Sol {
            child,
            log,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        sol.addr = loop {
            let text = sol.text();
            if let Some(addr) = text
                .lines()
                .find_map(|line| line.split("listening on tcp ").nth(1))
            {
                break addr.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "sol did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        sol
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The broker's resident memory, from `/proc/<pid>/status`.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// Waits until the log holds `needle` (the summary of suppressed lines
    /// comes when their second is over); panics after a few seconds.
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.text().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in the log");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the log to stop growing (the broker writes its lines as it
    /// handles each connection, a little after the client saw CONNACK).
    fn settled_log_len(&self) -> u64 {
        let mut last = self.log_len();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.log_len();
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Sol {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CONNECT with `id_bytes` of U+0001 as its client id (made unique by
/// `n` at the front) and a username of U+0001 filling the rest of the
/// 100 000 bytes a CONNECT may take.
fn hostile_connect(n: usize, id_bytes: usize, password: bool) -> Vec<u8> {
    let mut id = format!("{n}-").into_bytes();
    id.resize(id_bytes, 0x01);
    let mut connect = Connect::new("");
    connect.client_id = id;
    connect.username = Some(vec![0x01; 30_000]);
    if password {
        connect.password = Some(b"wrong".to_vec());
    }
    connect.bytes()
}

/// Sends `count` hostile CONNECTs, each on its own connection, expecting
/// CONNACK `code`; returns the bytes sent.
fn flood(addr: SocketAddr, count: usize, password: bool, code: u8) -> u64 {
    let mut sent = 0;
    for n in 0..count {
        let bytes = hostile_connect(n, 60_000, password);
        let mut raw = Raw::tcp(addr);
        raw.send(&bytes);
        raw.expect(&connack(false, code));
        raw.drop_connection();
        sent += bytes.len() as u64;
    }
    sent
}

const CONNECTS: usize = 200;

/// The longest the bystander may wait for one round trip.
const SLOWEST: Duration = Duration::from_secs(1);

#[test]
fn huge_control_character_ids_cost_a_few_hundred_bytes_of_log_each() {
    let sol = Sol::start("accepted", "");
    let (before, rss_before) = (sol.log_len(), sol.rss());
    let started = Instant::now();
    let bystander = Bystander::start(sol.addr);
    let sent = flood(sol.addr, CONNECTS, false, 0);
    let slowest = bystander.finish_slowest();
    let elapsed = started.elapsed();
    // The flood is faster than 100 lines a second: some were held back.
    sol.wait_for("suppressed (client connections)");
    let written = sol.settled_log_len() - before;
    let text = sol.text();
    // Before the cap: 7.5 bytes of log per byte received. Now a line holds
    // at most 128 characters of each client string.
    assert!(
        written * 100 < sent,
        "{written} bytes of log for {sent} bytes received"
    );
    assert!(text.contains("…(60000 bytes)"));
    assert!(text.contains("…(30000 bytes)"));
    // Connection lines (connects and ends) are capped at 100 a second.
    let lines = text.matches("New client connected").count()
        + text.matches("closed its connection").count();
    let seconds = elapsed.as_secs() as usize + 2;
    assert!(
        lines <= 100 * seconds,
        "{lines} connection lines in {elapsed:?}"
    );
    // Bounded loosely: a debug build on a shared machine (the release
    // build's slowest is in docs/reliability.md).
    assert!(slowest < SLOWEST, "the bystander waited {slowest:?}");
    let grown = sol.rss().saturating_sub(rss_before);
    assert!(grown < 32 << 20, "the broker's RSS grew {grown} bytes");
    println!(
        "{CONNECTS} CONNECTs, {sent} bytes: {written} bytes of log ({:.4} per byte received), \
         {lines} connection lines, bystander's slowest round trip {slowest:?}",
        written as f64 / sent as f64
    );
}

#[test]
fn refused_logins_with_huge_ids_are_capped_and_summarised() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("log-flood-passwd");
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd");
    // alice's password is "secret": no login below matches it.
    std::fs::write(
        &passwd,
        "alice:$6$somesalt$JX0Uhce8rLRHbaqoSQDYsnTxsqcjCNNcrl79ieTwPGzEhxBEeJcsgDUWIOwc3sDvZN34ZJBWQep7.lcAuSesy/\n",
    )
    .unwrap();
    let sol = Sol::start(
        "refused",
        &format!(
            "password_file {}\nallow_anonymous false\n",
            passwd.display()
        ),
    );
    let before = sol.log_len();
    let started = Instant::now();
    let sent = flood(sol.addr, CONNECTS, true, 5);
    let elapsed = started.elapsed();
    if elapsed < Duration::from_secs(1) {
        // Faster than 100 a second: the rest were held back and counted.
        sol.wait_for("suppressed (refused connections)");
    }
    let written = sol.settled_log_len() - before;
    let text = sol.text();
    assert!(
        written * 100 < sent,
        "{written} bytes of log for {sent} bytes received"
    );
    let refusals = text.matches("refused: bad username or password").count();
    let seconds = elapsed.as_secs() as usize + 2;
    assert!(
        refusals > 0 && refusals <= 100 * seconds,
        "{refusals} refusal lines in {elapsed:?}"
    );
}
