//! The broker under test: [`TestBroker`], sol on 127.0.0.1 port 0 and a
//! Unix socket in a fresh temporary directory, run on its own thread and
//! stopped on drop.
//!
//! With `SOL_TEST_BROKER=host:port` (and optionally `SOL_TEST_UNIX=path`) in
//! the environment the tests talk to that broker instead, which is how they
//! are checked against mosquitto; a test that needs sol's own configuration
//! or behaviour then skips itself with a printed note, unless
//! `SOL_TEST_RUN_ALL=1` asks to run it anyway (against an external broker
//! configured by hand to match, to check the test itself).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sol::config::Config;
use sol::net::{ListenerAddr, Server, ServerHandle};

use super::{unique_id, Raw, PINGREQ, PINGRESP};

/// A broker for one test: sol on a thread, or the external broker named by
/// `SOL_TEST_BROKER`.
pub struct TestBroker {
    addr: SocketAddr,
    unix: Option<PathBuf>,
    running: Option<Running>,
    /// The TLS listener, when the configuration asked for one.
    tls: Option<SocketAddr>,
    /// Every listener sol bound, in its order; empty for an external broker.
    listeners: Vec<ListenerAddr>,
}

struct Running {
    handle: ServerHandle,
    done: Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
}

/// The external broker, if the tests are pointed at one.
fn external() -> Option<(SocketAddr, Option<PathBuf>)> {
    let addr = std::env::var("SOL_TEST_BROKER").ok()?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("SOL_TEST_BROKER={addr} is not host:port"));
    let unix = std::env::var_os("SOL_TEST_UNIX").map(PathBuf::from);
    Some((addr, unix))
}

/// True when the tests run against an external broker.
pub fn is_external() -> bool {
    std::env::var_os("SOL_TEST_BROKER").is_some()
}

/// True when a sol-only test must skip itself: an external broker, and no
/// `SOL_TEST_RUN_ALL=1`.
fn skip(reason: &str) -> bool {
    if !is_external() || std::env::var_os("SOL_TEST_RUN_ALL").is_some_and(|v| v == "1") {
        return false;
    }
    println!("skipped against the external broker (SOL_TEST_BROKER): {reason}");
    true
}

impl TestBroker {
    /// sol with the default configuration (or the external broker).
    pub fn start() -> TestBroker {
        match external() {
            Some((addr, unix)) => TestBroker {
                addr,
                unix,
                running: None,
                tls: None,
                listeners: Vec::new(),
            },
            None => TestBroker::start_sol(|_| {}),
        }
    }

    /// sol with `tweak` applied to the default configuration. `None` against
    /// an external broker, whose configuration a test cannot change: the test
    /// then returns (a note is printed).
    pub fn with(tweak: impl FnOnce(&mut Config)) -> Option<TestBroker> {
        if skip("needs a custom sol configuration") {
            return None;
        }
        if is_external() {
            return Some(TestBroker::start());
        }
        Some(TestBroker::start_sol(tweak))
    }

    /// sol with the default configuration, for a test of behaviour that sol
    /// requires and the external broker does not have. `None` (with `reason`
    /// printed) against an external broker.
    pub fn sol_only(reason: &str) -> Option<TestBroker> {
        if skip(reason) {
            return None;
        }
        Some(TestBroker::start())
    }

    fn start_sol(tweak: impl FnOnce(&mut Config)) -> TestBroker {
        let dir = std::env::temp_dir().join(format!("sol-test-{}", unique_id("")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config {
            ip_address: "127.0.0.1".to_string(),
            ip_port: 0,
            tcp_enabled: true,
            unix_socket: Some(dir.join("sol.sock")),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::bind(&config).expect("sol binds its listeners");
        let addr = server.tcp_addr().expect("sol has a TCP listener");
        let unix = server.unix_path().map(Path::to_path_buf);
        let tls = server.tls_addr();
        let listeners = server.listener_addrs();
        let handle = server.handle();
        let (tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("sol".to_string())
            .spawn(move || {
                let _ = tx.send(server.run());
            })
            .unwrap();
        TestBroker {
            addr,
            unix,
            running: Some(Running {
                handle,
                done,
                thread: Some(thread),
                dir,
            }),
            tls,
            listeners,
        }
    }

    /// The TCP address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Unix socket's path: always there for sol; for an external broker
    /// only when `SOL_TEST_UNIX` names it.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_deref()
    }

    /// Every listener sol bound: the default ones, then the `listener`
    /// blocks in the order of the configuration.
    pub fn listener_addrs(&self) -> &[ListenerAddr] {
        &self.listeners
    }

    /// The TLS listener's address; panics if the configuration had none.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls.expect("the test broker has no TLS listener")
    }

    /// Asks sol to reload its password, ACL and certificate files, as SIGHUP
    /// does; returns once the loop has done it (a PINGREQ round trip made
    /// after the request cannot complete before the reload).
    pub fn reload(&self) {
        let running = self.running.as_ref().expect("reload needs sol itself");
        running.handle.reload();
        let mut raw = Raw::connected_clean(self.addr, &unique_id("reload"));
        raw.send(&PINGREQ);
        raw.expect(&PINGRESP);
    }

    /// Whether this is sol started by the test (not an external broker).
    pub fn is_sol(&self) -> bool {
        self.running.is_some()
    }

    /// Whether to check a part of a test where sol's required behaviour is
    /// stricter than the external broker's: true for sol (and with
    /// `SOL_TEST_RUN_ALL=1`); otherwise prints `reason` and returns false.
    pub fn checks_sol_only(&self, reason: &str) -> bool {
        self.is_sol() || !skip(reason)
    }

    /// Panics if sol's loop has already stopped (returned or panicked): a
    /// broker that died while handling a bad client must fail the test even if
    /// the test's own assertions happened to pass.
    pub fn assert_alive(&self) {
        if let Some(running) = &self.running {
            match running.done.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {}
                Ok(result) => panic!("sol's loop stopped on its own: {result:?}"),
                Err(mpsc::TryRecvError::Disconnected) => panic!("sol's loop panicked"),
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        running.handle.shutdown();
        let outcome = running.done.recv_timeout(Duration::from_secs(5));
        if let Some(thread) = running.thread.take() {
            if !matches!(outcome, Err(RecvTimeoutError::Timeout)) {
                let _ = thread.join();
            }
        }
        let _ = std::fs::remove_dir_all(&running.dir);
        if thread::panicking() {
            return;
        }
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("sol's loop returned an error: {e}"),
            Err(RecvTimeoutError::Timeout) => panic!("sol did not stop within 5 s of shutdown"),
            Err(RecvTimeoutError::Disconnected) => panic!("sol's loop panicked"),
        }
    }
}
