//! Listening sockets: the table of listeners the config asks for, binding
//! them, accepting from them, the seats of each listener's own
//! `max_connections`, and cleaning up the Unix socket file afterwards.
//!
//! The table ([`listener_specs`]) is the one place that turns `sol.conf`
//! into listeners; everything after it (binding, tokens, accepting, the
//! TLS layer, the addresses [`Server`](super::Server) reports) works from a
//! [`ListenerSpec`] alone, so a new kind of listener entry is one more
//! element pushed there.
//!
//! Sockets are built with `socket2` rather than `mio`'s own `bind` because the
//! config chooses the listen backlog, which `mio` does not expose.
//!
//! Explained in docs/05-event-loop.md.

use std::fmt;
use std::fs;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use log::debug;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use socket2::{Domain, SockAddr, Type};

use super::stream::{Socket, Stream};
use super::tls::TlsAcceptor;
use crate::config::{Config, ListenerBind, TlsConfig};

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// A TCP port on `address` (an IP address or a host name; 0 picks a
    /// free port).
    Tcp { address: String, port: u16 },
    /// A Unix domain socket at `path`.
    Unix { path: PathBuf },
}

/// One entry of the listener table: where to listen, which layers go over
/// every stream it accepts, and what it admits. A WebSocket flag joins TLS
/// here when WebSocket listeners come.
#[derive(Clone, Debug)]
pub(crate) struct ListenerSpec {
    pub(crate) kind: ListenerKind,
    /// The `listen(2)` backlog.
    pub(crate) backlog: u32,
    /// TLS over every accepted stream, with the settings of this listener
    /// (`certfile`, `keyfile`, `cafile`, versions, and how its clients'
    /// certificates count).
    pub(crate) tls: Option<TlsConfig>,
    /// The listener's own `max_connections`, beside the broker-wide one;
    /// `None` for no limit of its own.
    pub(crate) max_connections: Option<usize>,
}

/// Every listener `config` asks for, in the order they are bound and
/// logged: the plain TCP port, the Unix socket, the TLS port, then the
/// `listener` blocks in file order.
pub(crate) fn listener_specs(config: &Config) -> Vec<ListenerSpec> {
    let mut specs = Vec::new();
    let tcp = |port| ListenerKind::Tcp {
        address: config.ip_address.clone(),
        port,
    };
    let spec = |kind, tls| ListenerSpec {
        kind,
        backlog: config.tcp_backlog,
        tls,
        max_connections: None,
    };
    if config.tcp_enabled {
        specs.push(spec(tcp(config.ip_port), None));
    }
    if let Some(path) = &config.unix_socket {
        specs.push(spec(ListenerKind::Unix { path: path.clone() }, None));
    }
    if let (Some(port), Some(tls)) = (config.security.tls_port, config.security.tls()) {
        specs.push(spec(tcp(port), Some(tls)));
    }
    for block in &config.listeners {
        let kind = match &block.bind {
            ListenerBind::Tcp(addr) => ListenerKind::Tcp {
                address: addr.ip().to_string(),
                port: addr.port(),
            },
            ListenerBind::Unix(path) => ListenerKind::Unix { path: path.clone() },
        };
        specs.push(ListenerSpec {
            max_connections: block.max_connections,
            ..spec(kind, block.tls.clone())
        });
    }
    specs
}

/// Where a bound listener listens, as [`Server::listener_addrs`](super::Server::listener_addrs)
/// reports it: with the real port when the config asked for port 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerAddr {
    /// Plain MQTT over TCP.
    Tcp(SocketAddr),
    /// MQTT over TLS over TCP.
    Tls(SocketAddr),
    /// Plain MQTT over a Unix domain socket at this path.
    Unix(PathBuf),
    /// MQTT over TLS over a Unix domain socket at this path.
    UnixTls(PathBuf),
}

impl fmt::Display for ListenerAddr {
    /// As the log and `--test-config` name listeners: `tcp 127.0.0.1:1883`,
    /// `unix socket /tmp/sol.sock`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerAddr::Tcp(addr) => write!(f, "tcp {addr}"),
            ListenerAddr::Tls(addr) => write!(f, "tls {addr}"),
            ListenerAddr::Unix(path) => write!(f, "unix socket {}", path.display()),
            ListenerAddr::UnixTls(path) => write!(f, "tls unix socket {}", path.display()),
        }
    }
}

/// What an accepted connection keeps of the listener that accepted it: its
/// place in that listener's `max_connections`, given back when the
/// connection is dropped (however it ends), and the listener's rule for
/// its clients' certificates.
#[derive(Debug)]
pub(crate) struct Seat {
    _taken: Arc<()>,
    /// The listener's `use_identity_as_username`: a TLS client's
    /// certificate CN is its username.
    pub(crate) use_identity_as_username: bool,
}

/// A listening socket and what the loop remembers about accepting from it.
pub(crate) struct Listener {
    pub(crate) token: Token,
    pub(crate) socket: ListenSocket,
    /// Accepting failed (out of file descriptors, most often) and is paused
    /// until this instant. The loop retries then even without a new event:
    /// the connections waiting in the backlog will not raise another one.
    pub(crate) retry_at: Option<Instant>,
    /// The per-turn accept budget ran out before `WouldBlock`: more clients
    /// may be waiting, and no new event will say so.
    pub(crate) backlog: bool,
    /// Set on a TLS listener: every accepted socket starts a TLS
    /// handshake.
    pub(crate) tls: Option<TlsAcceptor>,
    /// The listener's own `max_connections`; `None` for no limit of its own.
    pub(crate) max_connections: Option<usize>,
    /// Every connection accepted here and still open holds a clone
    /// ([`Seat`]), so the count needs no bookkeeping on any close path.
    seats: Arc<()>,
    /// The listener's `use_identity_as_username`, handed to each [`Seat`].
    use_identity_as_username: bool,
}

/// The two kinds of listening socket.
pub(crate) enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

impl Listener {
    /// Binds what `spec` describes, with `tls` (built from `spec.tls`) over
    /// what it accepts. The caller registers it under `token`.
    pub(crate) fn bind(
        spec: &ListenerSpec,
        token: Token,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<Listener> {
        let socket = match &spec.kind {
            ListenerKind::Tcp { address, port } => {
                ListenSocket::Tcp(bind_tcp(address, *port, spec.backlog)?)
            }
            ListenerKind::Unix { path } => {
                let (unix, file) = bind_unix(path, spec.backlog)?;
                ListenSocket::Unix(unix, file)
            }
        };
        let mut listener = Listener::new(token, socket);
        listener.tls = tls;
        listener.max_connections = spec.max_connections;
        listener.use_identity_as_username = spec
            .tls
            .as_ref()
            .is_some_and(|tls| tls.use_identity_as_username);
        Ok(listener)
    }

    /// Puts the listening socket in the poll under its token.
    pub(crate) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        match &mut self.socket {
            ListenSocket::Tcp(tcp) => registry.register(tcp, self.token, Interest::READABLE),
            ListenSocket::Unix(unix, _) => registry.register(unix, self.token, Interest::READABLE),
        }
    }

    pub(crate) fn new(token: Token, socket: ListenSocket) -> Listener {
        Listener {
            token,
            socket,
            retry_at: None,
            backlog: false,
            tls: None,
            max_connections: None,
            seats: Arc::new(()),
            use_identity_as_username: false,
        }
    }

    /// The clients accepted here that are still connected.
    pub(crate) fn connected(&self) -> usize {
        Arc::strong_count(&self.seats).saturating_sub(1)
    }

    /// A seat for a client just accepted, or `None` when the listener's own
    /// `max_connections` are all taken.
    pub(crate) fn seat(&self) -> Option<Seat> {
        if self
            .max_connections
            .is_some_and(|max| self.connected() >= max)
        {
            return None;
        }
        Some(Seat {
            _taken: Arc::clone(&self.seats),
            use_identity_as_username: self.use_identity_as_username,
        })
    }

    /// Where it listens; `None` only when the socket cannot say.
    pub(crate) fn addr(&self) -> Option<ListenerAddr> {
        let tls = self.tls.is_some();
        match &self.socket {
            ListenSocket::Tcp(tcp) => {
                let addr = tcp.local_addr().ok()?;
                Some(if tls {
                    ListenerAddr::Tls(addr)
                } else {
                    ListenerAddr::Tcp(addr)
                })
            }
            ListenSocket::Unix(_, file) => {
                let path = file.path().to_path_buf();
                Some(if tls {
                    ListenerAddr::UnixTls(path)
                } else {
                    ListenerAddr::Unix(path)
                })
            }
        }
    }

    /// Accepts one client: the stream, with TLS over it when the listener
    /// has an acceptor, and its peer address as a log string.
    pub(crate) fn accept(&self) -> io::Result<(Stream, String)> {
        let (socket, peer) = match &self.socket {
            ListenSocket::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                // MQTT packets are small and latency matters more than the
                // few bytes Nagle's algorithm would save.
                if let Err(e) = stream.set_nodelay(true) {
                    debug!("TCP_NODELAY on {peer}: {e}");
                }
                (Socket::Tcp(stream), peer.to_string())
            }
            ListenSocket::Unix(listener, _) => {
                let (stream, peer) = listener.accept()?;
                let peer = match peer.as_pathname() {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "unix".to_string(),
                };
                (Socket::Unix(stream), peer)
            }
        };
        let stream = match &self.tls {
            Some(acceptor) => Stream::Tls(Box::new(acceptor.accept(socket)?)),
            None => Stream::Plain(socket),
        };
        Ok((stream, peer))
    }
}

/// Converts the config's backlog to what `listen(2)` takes.
fn backlog(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Binds a non-blocking TCP listener on `address:port` (`address` may be a
/// host name; the first address it resolves to is used).
pub(crate) fn bind_tcp(address: &str, port: u16, listen_backlog: u32) -> io::Result<TcpListener> {
    let addr: SocketAddr = (address, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ip_address {address:?} resolves to no address"),
        )
    })?;
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Lets a restarted broker bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog(listen_backlog))?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Binds a non-blocking Unix socket listener at `path`, first removing a
/// socket file left behind by a server that is no longer running.
pub(crate) fn bind_unix(
    path: &Path,
    listen_backlog: u32,
) -> io::Result<(UnixListener, SocketFile)> {
    remove_stale_socket(path)?;
    let socket = socket2::Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let file = SocketFile::new(path);
    socket.listen(backlog(listen_backlog))?;
    Ok((UnixListener::from_std(socket.into()), file))
}

/// Removes `path` if it is a socket nobody listens on any more.
///
/// Anything else at that path is left alone and reported: a regular file may
/// be someone's data (a typo in `unix_socket` must not delete it), and a live
/// socket belongs to another running server.
pub(crate) fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            ),
        ));
    }
    // A non-blocking connect cannot hang on a listener whose backlog is full:
    // it fails with EAGAIN, which also means someone is listening.
    let probe = socket2::Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Ok(()) => return Err(in_use(path)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(in_use(path)),
        Err(e) => return Err(e),
    }
    debug!("removing stale socket {}", path.display());
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn in_use(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("another server is listening on {}", path.display()),
    )
}

/// The socket file a Unix listener created; removed when this is dropped.
///
/// It remembers which file it created (device and inode), so that it never
/// removes a file that replaced it, such as the socket of a newer server
/// started on the same path.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    fn new(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            identity: identity(path),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    let meta = fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.identity.is_some() && identity(&self.path) == self.identity {
            if let Err(e) = fs::remove_file(&self.path) {
                debug!("removing {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net as std_unix;

    /// A fresh path in the temp directory, short enough for `sun_path`.
    fn temp_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("sol-{}-{name}", std::process::id()));
        let _ = fs::remove_file(&path);
        path
    }

    /// Leaves a socket file behind with nobody listening on it.
    fn dead_socket(path: &Path) {
        drop(std_unix::UnixListener::bind(path).unwrap());
        assert!(fs::symlink_metadata(path).unwrap().file_type().is_socket());
    }

    #[test]
    fn the_default_config_asks_for_one_tcp_listener() {
        let specs = listener_specs(&Config::default());
        assert_eq!(specs.len(), 1);
        let kind = ListenerKind::Tcp {
            address: "127.0.0.1".to_string(),
            port: 1883,
        };
        assert_eq!(specs[0].kind, kind);
        assert_eq!(specs[0].backlog, 128);
        assert!(specs[0].tls.is_none());
    }

    #[test]
    fn the_flat_keys_make_tcp_then_unix_then_tls() {
        let mut config = Config {
            ip_address: "0.0.0.0".to_string(),
            ip_port: 1884,
            unix_socket: Some(PathBuf::from("/run/sol.sock")),
            tcp_backlog: 16,
            ..Config::default()
        };
        config.security.tls_port = Some(8883);
        let specs = listener_specs(&config);
        let kinds: Vec<_> = specs.iter().map(|s| s.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                ListenerKind::Tcp {
                    address: "0.0.0.0".to_string(),
                    port: 1884
                },
                ListenerKind::Unix {
                    path: PathBuf::from("/run/sol.sock")
                },
                ListenerKind::Tcp {
                    address: "0.0.0.0".to_string(),
                    port: 8883
                },
            ]
        );
        let tls: Vec<bool> = specs.iter().map(|s| s.tls.is_some()).collect();
        assert_eq!(tls, [false, false, true]);
        assert!(specs.iter().all(|s| s.backlog == 16));

        config.tcp_enabled = false;
        config.security.tls_port = None;
        let specs = listener_specs(&config);
        assert_eq!(specs.len(), 1);
        assert!(matches!(specs[0].kind, ListenerKind::Unix { .. }));
    }

    #[test]
    fn listener_blocks_come_after_the_default_listeners_with_their_own_settings() {
        let text = "ip_port 1884\ntls_port 8883\ncertfile /c.pem\nkeyfile /k.pem\n\
                    listener 1885 ::1\nmax_connections 2\n\
                    listener 0 /run/sol-block.sock\n\
                    listener 8884\ncertfile /b.pem\nkeyfile /bk.pem\ncafile /ca.pem\n\
                    use_identity_as_username true\n";
        let config = Config::parse(text).unwrap();
        let specs = listener_specs(&config);
        let kinds: Vec<_> = specs.iter().map(|s| s.kind.clone()).collect();
        let tcp = |address: &str, port| ListenerKind::Tcp {
            address: address.to_string(),
            port,
        };
        assert_eq!(
            kinds,
            [
                tcp("127.0.0.1", 1884),
                tcp("127.0.0.1", 8883),
                tcp("::1", 1885),
                ListenerKind::Unix {
                    path: PathBuf::from("/run/sol-block.sock")
                },
                tcp("127.0.0.1", 8884),
            ]
        );
        let limits: Vec<_> = specs.iter().map(|s| s.max_connections).collect();
        assert_eq!(limits, [None, None, Some(2), None, None]);
        let identity: Vec<_> = specs
            .iter()
            .map(|s| s.tls.as_ref().map(|t| t.use_identity_as_username))
            .collect();
        assert_eq!(identity, [None, Some(false), None, None, Some(true)]);
        let block_cert = specs[4].tls.as_ref().and_then(|t| t.certfile.as_ref());
        assert_eq!(
            block_cert.map(|c| c.path.clone()),
            Some(PathBuf::from("/b.pem"))
        );
    }

    #[test]
    fn a_listener_seats_its_own_max_connections_and_frees_a_seat_on_drop() {
        let spec = ListenerSpec {
            kind: ListenerKind::Tcp {
                address: "127.0.0.1".to_string(),
                port: 0,
            },
            backlog: 8,
            tls: None,
            max_connections: Some(2),
        };
        let listener = Listener::bind(&spec, Token(7), None).unwrap();
        let first = listener.seat().unwrap();
        let second = listener.seat().unwrap();
        assert!(!second.use_identity_as_username);
        assert_eq!(listener.connected(), 2);
        assert!(
            listener.seat().is_none(),
            "a third seat past max_connections 2"
        );
        drop(first);
        assert_eq!(listener.connected(), 1);
        assert!(listener.seat().is_some());
        assert!(matches!(listener.addr(), Some(ListenerAddr::Tcp(_))));
    }

    #[test]
    fn a_spec_binds_a_listener_and_tcp_port_zero_gets_a_real_port() {
        let spec = ListenerSpec {
            kind: ListenerKind::Tcp {
                address: "127.0.0.1".to_string(),
                port: 0,
            },
            backlog: 8,
            tls: None,
            max_connections: None,
        };
        let listener = Listener::bind(&spec, Token(7), None).unwrap();
        assert_eq!(listener.token, Token(7));
        match &listener.socket {
            ListenSocket::Tcp(tcp) => assert_ne!(tcp.local_addr().unwrap().port(), 0),
            ListenSocket::Unix(..) => panic!("a TCP spec bound a Unix socket"),
        }
    }

    #[test]
    fn a_missing_path_is_fine() {
        let path = temp_path("missing");
        remove_stale_socket(&path).unwrap();
    }

    #[test]
    fn a_stale_socket_is_removed() {
        let path = temp_path("stale");
        dead_socket(&path);
        remove_stale_socket(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_regular_file_is_never_removed() {
        let path = temp_path("regular");
        fs::write(&path, b"precious").unwrap();
        let err = remove_stale_socket(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"precious");
        let err = bind_unix(&path, 8).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"precious");
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_live_socket_is_not_taken_over() {
        let path = temp_path("live");
        let _live = std_unix::UnixListener::bind(&path).unwrap();
        let err = remove_stale_socket(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(path.exists());
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bind_unix_replaces_a_stale_socket_and_removes_its_own_on_drop() {
        let path = temp_path("bind");
        dead_socket(&path);
        let (listener, file) = bind_unix(&path, 8).unwrap();
        let listener = Listener::new(Token(0), ListenSocket::Unix(listener, file));
        let mut client = std_unix::UnixStream::connect(&path).unwrap();
        let (mut stream, peer) = accept_blocking(&listener);
        assert_eq!(peer, "unix");
        io::Write::write_all(&mut stream, b"\x20\x02\x00\x00").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"\x20\x02\x00\x00");
        drop(listener);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_replaced_the_socket_is_not_removed_on_drop() {
        let path = temp_path("replaced");
        let (listener, file) = bind_unix(&path, 8).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"someone else's").unwrap();
        drop(listener);
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"someone else's");
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bind_tcp_on_port_zero_picks_a_port_and_accepts_with_nodelay() {
        let tcp = bind_tcp("127.0.0.1", 0, 8).unwrap();
        let addr = tcp.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let listener = Listener::new(Token(0), ListenSocket::Tcp(tcp));
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (stream, peer) = accept_blocking(&listener);
        assert_eq!(peer, client.local_addr().unwrap().to_string());
        match stream {
            Stream::Plain(Socket::Tcp(s)) => assert!(s.nodelay().unwrap()),
            other => panic!("a plain TCP listener accepted {other:?}"),
        }
    }

    #[test]
    fn bind_tcp_refuses_an_unresolvable_address() {
        assert!(bind_tcp("not an address", 0, 8).is_err());
    }

    /// The listener is non-blocking and the client's connect may not have
    /// reached it yet: retry for a little while.
    fn accept_blocking(listener: &Listener) -> (Stream, String) {
        for _ in 0..200 {
            match listener.accept() {
                Ok(accepted) => return accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        panic!("no connection to accept");
    }
}
