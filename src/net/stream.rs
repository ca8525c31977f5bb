//! One transport over every kind of socket the broker accepts or dials.
//!
//! A [`Socket`] is a plain TCP or Unix stream socket; a [`Stream`] is a
//! socket with the layers over it: none, or TLS ([`TlsStream`], which works
//! over either kind of socket). The rest of the network layer reads,
//! writes, registers and shuts down a [`Stream`] without asking what is
//! underneath; the only things the loop must ask of it are whether a layer
//! has bytes of its own to send ([`Stream::wants_write`]) and whether its
//! handshake just finished ([`Stream::take_tls_established`]). A WebSocket
//! layer would be one more variant.
//!
//! Explained in docs/05-event-loop.md.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use super::tls::TlsStream;

/// A non-blocking stream socket, accepted or dialled.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    /// Closes both directions.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(Shutdown::Both),
            Socket::Unix(s) => s.shutdown(Shutdown::Both),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(registry, token, interests),
            Socket::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(registry, token, interests),
            Socket::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(registry),
            Socket::Unix(s) => s.deregister(registry),
        }
    }
}

/// A socket and the layers over it.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(Socket),
    /// Boxed: a TLS session is a few hundred bytes of state the plain
    /// variant should not pay for.
    Tls(Box<TlsStream<Socket>>),
}

impl Stream {
    /// Closes both directions, after a TLS close_notify. Errors are ignored
    /// by callers on purpose: the socket is about to be dropped, and a peer
    /// that already went away makes `shutdown` fail with `ENOTCONN`, which
    /// is not worth reporting.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown(),
            Stream::Tls(s) => {
                s.close_notify();
                s.get_mut().shutdown()
            }
        }
    }

    /// The socket under every layer.
    pub(crate) fn socket(&self) -> &Socket {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }

    fn socket_mut(&mut self) -> &mut Socket {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_mut(),
        }
    }

    /// Whether a read that returned less than it asked for proves the
    /// socket drained: true for a plain socket, false for TLS, whose reads
    /// return plaintext records, not what the socket held.
    pub(crate) fn short_read_drains(&self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls(_) => false,
        }
    }

    /// Whether a layer has bytes of its own to send (TLS handshake records,
    /// alerts) even when the connection's output buffer is empty.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(s) => s.wants_write(),
            Stream::Plain(_) => false,
        }
    }

    /// `Some` once, right after a TLS handshake completes: the peer
    /// certificate's CN, if any. Always `None` for plain sockets.
    pub(crate) fn take_tls_established(&mut self) -> Option<Option<String>> {
        match self {
            Stream::Tls(s) => s.take_established(),
            Stream::Plain(_) => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Registered by its socket: the layers above it have no descriptor.
impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket_mut().deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Stream, Stream) {
        let (a, b) = UnixStream::pair().unwrap();
        (
            Stream::Plain(Socket::Unix(a)),
            Stream::Plain(Socket::Unix(b)),
        )
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
        let mut a = Stream::Plain(Socket::Tcp(TcpStream::from_std(client)));
        let mut b = server;
        assert_eq!(a.write(b"\xd0\x00").unwrap(), 2);
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"\xd0\x00");
    }
}
