//! The broker under load: a `sol` process the tool starts (or one already
//! running), and its memory as the kernel reports it.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where the broker is and how to read its memory.
pub struct Broker {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

/// How to start a broker.
pub struct Launch<'a> {
    /// The `sol` binary (the release build, for figures).
    pub sol: &'a Path,
    /// Lines added to the generated `sol.conf`.
    pub extra_config: &'a [String],
    /// Starts the broker under `prlimit --nofile=N:N`.
    pub nofile: Option<u64>,
}

impl Broker {
    /// Starts `sol` on a free 127.0.0.1 port with a generated config, and
    /// waits until it accepts connections.
    pub fn start(launch: &Launch<'_>) -> io::Result<Broker> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("sol-soak-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut conf = format!(
            "ip_address 127.0.0.1\nip_port {port}\nlog_level warning\nlog_path {}\n",
            dir.join("sol.log").display()
        );
        for line in launch.extra_config {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = dir.join("sol.conf");
        std::fs::write(&conf_path, &conf)?;
        let mut command = match launch.nofile {
            Some(n) => {
                // prlimit execs the command, so the pid is the broker's.
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(launch.sol);
                c
            }
            None => Command::new(launch.sol),
        };
        command
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = command.spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let broker = Broker {
            addr,
            pid: child.id(),
            child: Some(child),
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other("sol did not start listening within 10 s"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        // That probe connection must not count in the figures.
        thread::sleep(Duration::from_millis(200));
        Ok(broker)
    }

    /// A broker someone else started.
    pub fn attach(addr: SocketAddr, pid: u32) -> Broker {
        Broker {
            addr,
            pid,
            child: None,
            dir: None,
        }
    }

    /// Resident set now, in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kb("VmRSS:") * 1024
    }

    /// Peak resident set since the broker started, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_kb("VmHWM:") * 1024
    }

    /// Open file descriptors of the broker.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Whether the broker process is still there.
    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => Path::new(&format!("/proc/{}", self.pid)).exists(),
        }
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Bytes as mebibytes with one decimal, for the report.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The growth from `before` to `after` (negative shown as 0).
pub fn grown(before: u64, after: u64) -> u64 {
    after.saturating_sub(before)
}
