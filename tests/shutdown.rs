//! The `sol` binary as a process: `SIGTERM` and `SIGINT` stop it cleanly
//! (exit 0, a summary in the log), `SIGHUP` reopens its log file, and a
//! broker out of file descriptors refuses new clients instead of leaving
//! them hanging. Signals are sent with the `kill` command.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{connack, connect, puback, publish, suback, subscribe, unique_id, Connect, Raw};

/// How long a test waits for the broker to do something it should.
const WAIT: Duration = Duration::from_secs(10);

/// A `sol` process with its own directory, config and log file.
struct Sol {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Sol {
    /// Starts `sol` on a free port with `extra` config lines; returns once
    /// it listens.
    fn start(name: &str, extra: &str) -> Sol {
        Sol::launch(name, extra, Command::new(env!("CARGO_BIN_EXE_sol")))
    }

    /// As `start`, with the process limited to `nofile` file descriptors
    /// (through util-linux's `prlimit`).
    fn start_with_nofile(name: &str, extra: &str, nofile: u32) -> Sol {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_sol"));
        Sol::launch(name, extra, command)
    }

    fn launch(name: &str, extra: &str, mut command: Command) -> Sol {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shutdown-{name}"));
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
        let child = command
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut sol = Sol {
            child,
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let line = sol.wait_for_line("sol.log", "listening on tcp ");
        let addr = line.rsplit(' ').next().unwrap();
        sol.addr = addr.parse().unwrap();
        sol
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap_or_default()
    }

    /// Waits until a line of the log file `file` contains `needle`, and
    /// returns that line.
    fn wait_for_line(&mut self, file: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.log(file).lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sol exited ({status}) before logging {needle:?}:\n{}",
                    self.log(file)
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {file}:\n{}",
                self.log(file)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit; returns its status and how long that
    /// took.
    fn wait_exit(&mut self) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(start.elapsed() < WAIT, "sol did not exit within {WAIT:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sol {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the peer closes; returns what came.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut all = Vec::new();
    match stream.read_to_end(&mut all) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading until close: {e}"),
    }
    all
}

#[test]
fn sigterm_stops_cleanly_logs_a_summary_and_exits_0() {
    let mut sol = Sol::start("term", "");
    let topic = format!("t/{}", unique_id(""));
    let mut sub = Raw::connected_clean(sol.addr, &unique_id("sub"));
    sub.send(&subscribe(1, &[(topic.as_str(), 1)]));
    sub.expect(&suback(1, &[1]));
    let mut publisher = Raw::connected_clean(sol.addr, &unique_id("pub"));
    for id in 1..=3 {
        publisher.send(&publish(&topic, b"m", 1, false, Some(id)));
        publisher.expect(&puback(id));
    }
    sol.wait_for_line("sol.log", "New client connected");
    sol.signal("TERM");
    let (status, took) = sol.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", sol.log("sol.log"));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let log = sol.log("sol.log");
    for expected in [
        "SIGTERM received: stopping",
        "Shutting down after",
        "2 client(s) connected, 2 session(s) held; messages: 3 received, 3 sent, 0 dropped.",
        "event loop stopped: 2 connection(s) closed",
        "sol stopped",
    ] {
        assert!(log.contains(expected), "no {expected:?} in\n{log}");
    }
    // The clients see their connections closed after what was sent.
    for _ in 0..3 {
        sub.expect_message(&topic, b"m", 1);
    }
    sub.expect_closed();
    publisher.expect_closed();
    // And nobody is listening any more.
    assert!(TcpStream::connect(sol.addr).is_err());
}

#[test]
fn sigterm_publishes_the_wills_of_the_clients_it_disconnects() {
    // As mosquitto does: the clients lose their connections without
    // DISCONNECT, so their wills go out, to subscribers still connected.
    let mut sol = Sol::start("wills", "");
    let topic = format!("will/{}", unique_id(""));
    let mut watcher = Raw::connected_clean(sol.addr, &unique_id("watcher"));
    watcher.send(&subscribe(1, &[(topic.as_str(), 0)]));
    watcher.expect(&suback(1, &[0]));
    let connect = Connect::new(&unique_id("w"))
        .clean(true)
        .will(&topic, b"gone", 0, false);
    let mut with_will = Raw::connected(sol.addr, &connect, false);
    with_will.ping();
    sol.signal("TERM");
    let (status, _) = sol.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", sol.log("sol.log"));
    watcher.expect_message(&topic, b"gone", 0);
    watcher.expect_closed();
    with_will.expect_closed();
}

#[test]
fn sigint_stops_cleanly_too() {
    let mut sol = Sol::start("int", "");
    let mut client = Raw::connected_clean(sol.addr, &unique_id("c"));
    client.ping();
    sol.signal("INT");
    let (status, _) = sol.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(sol.log("sol.log").contains("SIGINT received: stopping"));
    client.expect_closed();
}

#[test]
fn shutdown_gives_up_on_a_client_that_does_not_read_within_a_bound() {
    let mut sol = Sol::start("stuck", "");
    let topic = format!("t/{}", unique_id(""));
    // A subscriber that never reads: the broker buffers for it up to its
    // high-water mark, and the socket holds more.
    let mut stuck = TcpStream::connect(sol.addr).unwrap();
    stuck.write_all(&connect(&unique_id("stuck"))).unwrap();
    stuck
        .write_all(&subscribe(1, &[(topic.as_str(), 0)]))
        .unwrap();
    let mut publisher = Raw::connected_clean(sol.addr, &unique_id("pub"));
    let payload = vec![b'x'; 64 * 1024];
    for _ in 0..100 {
        publisher.send(&publish(&topic, &payload, 0, false, None));
    }
    publisher.ping();
    sol.signal("TERM");
    let (status, took) = sol.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // It kept trying for its bound, then gave up on what was left.
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    let log = sol.log("sol.log");
    let stopped = log
        .lines()
        .find(|l| l.contains("bytes left unsent"))
        .unwrap();
    assert!(!stopped.contains(", 0 bytes left unsent"), "{stopped}");
    // What was flushed starts with the CONNACK.
    let got = read_to_close(&mut stuck);
    assert_eq!(got.get(..4), Some(&connack(false, 0)[..]));
}

#[test]
fn sighup_reopens_the_log_file_for_logrotate() {
    let mut sol = Sol::start("hup", "");
    std::fs::rename(sol.path("sol.log"), sol.path("sol.log.1")).unwrap();
    sol.signal("HUP");
    sol.wait_for_line("sol.log", "log file reopened");
    let id = unique_id("after");
    let mut client = Raw::connected_clean(sol.addr, &id);
    client.ping();
    sol.wait_for_line("sol.log", &format!("as {id}"));
    let old = sol.log("sol.log.1");
    assert!(old.contains("SIGHUP received: reloading"), "{old}");
    assert!(
        !old.contains(&id),
        "a line after the reopen went to the old file"
    );
    // The broker keeps serving, and stops cleanly afterwards.
    sol.signal("TERM");
    let (status, _) = sol.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(sol.log("sol.log").contains("sol stopped"));
}

/// Past the process's descriptor limit, a new client is accepted and closed
/// at once (it does not hang in the backlog), the clients already in keep
/// working, and once some leave, new ones get in again.
#[test]
fn out_of_descriptors_new_clients_are_refused_and_the_rest_keep_working() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let mut sol = Sol::start_with_nofile("nofile", "", 40);
    let mut first = Raw::connected_clean(sol.addr, &unique_id("first"));
    let mut clients = Vec::new();
    let mut refused = false;
    for n in 0..60 {
        let mut stream = TcpStream::connect(sol.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(&connect(&format!("fd-{n}"))).unwrap();
        let mut reply = [0u8; 4];
        match stream.read_exact(&mut reply) {
            Ok(()) => {
                assert_eq!(reply.to_vec(), connack(false, 0));
                clients.push(stream);
            }
            Err(e) => {
                assert_ne!(e.kind(), io::ErrorKind::WouldBlock, "a client hung");
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "60 clients fitted in 40 descriptors");
    first.ping();
    clients.truncate(clients.len().saturating_sub(5));
    thread::sleep(Duration::from_millis(200));
    let _again = Raw::connected_clean(sol.addr, &unique_id("again"));
    sol.signal("TERM");
    assert!(sol.wait_exit().0.success());
    assert!(sol.log("sol.log").contains("out of file descriptors"));
}

/// The broker's user + system CPU time in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// At the descriptor limit, `accept` fails with EMFILE even when nobody is
/// waiting; an idle broker must not spin on it.
#[test]
fn at_the_descriptor_limit_an_idle_broker_does_not_spin() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let mut sol = Sol::start_with_nofile("nofile-spin", "", 40);
    let mut clients = Vec::new();
    for n in 0..60 {
        let mut stream = TcpStream::connect(sol.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(&connect(&format!("spin-{n}"))).unwrap();
        let mut reply = [0u8; 4];
        if stream.read_exact(&mut reply).is_err() {
            break;
        }
        clients.push(stream);
    }
    // The broker is at its limit with nobody waiting: it should sleep.
    thread::sleep(Duration::from_millis(300));
    let pid = sol.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(used < 50, "an idle broker used {used} ticks of CPU in 2 s");
    sol.signal("TERM");
    assert!(sol.wait_exit().0.success());
}
