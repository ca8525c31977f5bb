//! One transport over every kind of socket the broker accepts.
//!
//! The rest of the network layer reads, writes, registers and shuts down a
//! [`Stream`] without asking what is underneath. TLS is one more variant,
//! wrapping a TCP stream ([`TlsStream`]); the only thing the loop must ask
//! of it is whether TLS has records of its own to send
//! ([`Stream::wants_write`]) and whether its handshake just finished
//! ([`Stream::take_tls_established`]).
//!
//! Explained in docs/05-event-loop.md.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use super::tls::TlsStream;

/// An accepted, non-blocking client socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Boxed: a TLS session is a few hundred bytes of state the plain
    /// variants should not pay for.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Closes both directions. Errors are ignored by callers on purpose: the
    /// socket is about to be dropped, and a peer that already went away makes
    /// `shutdown` fail with `ENOTCONN`, which is not worth reporting.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(s) => s.shutdown(),
        }
    }

    /// Whether the transport has bytes of its own to send (TLS handshake
    /// records, alerts) even when the connection's output buffer is empty.
    /// Whether a read that returned less than it asked for proves the
    /// socket drained: true for the plain stream sockets, false for TLS,
    /// whose reads return plaintext records, not what the socket held.
    pub(crate) fn short_read_drains(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => true,
            Stream::Tls(_) => false,
        }
    }

    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(s) => s.wants_write(),
            Stream::Tcp(_) | Stream::Unix(_) => false,
        }
    }

    /// `Some` once, right after a TLS handshake completes: the client
    /// certificate's CN, if any. Always `None` for plain sockets.
    pub(crate) fn take_tls_established(&mut self) -> Option<Option<String>> {
        match self {
            Stream::Tls(s) => s.take_established(),
            Stream::Tcp(_) | Stream::Unix(_) => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Tls(s) => s.tcp_mut().register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Tls(s) => s.tcp_mut().reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Tls(s) => s.tcp_mut().deregister(registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Stream, Stream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Stream::Unix(a), Stream::Unix(b))
    }

    #[test]
    fn bytes_written_on_one_end_are_read_on_the_other() {
        let (mut a, mut b) = pair();
        assert_eq!(a.write(b"\xc0\x00").unwrap(), 2);
        let mut buf = [0u8; 8];
        let n = b.read(&mut buf).unwrap();
        assert_eq!(buf.get(..n), Some(&b"\xc0\x00"[..]));
    }

    #[test]
    fn reading_an_empty_socket_would_block() {
        let (_a, mut b) = pair();
        let mut buf = [0u8; 8];
        let err = b.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn shutdown_is_seen_as_end_of_stream_by_the_peer() {
        let (mut a, mut b) = pair();
        a.shutdown().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn a_tcp_stream_reads_and_writes_too() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let mut a = Stream::Tcp(TcpStream::from_std(client));
        let mut b = server;
        assert_eq!(a.write(b"\xd0\x00").unwrap(), 2);
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"\xd0\x00");
    }
}
