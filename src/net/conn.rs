//! One client connection: its socket, its decoder and its two buffers.
//!
//! A connection holds memory only while it has bytes in flight. Both buffers
//! start empty (no allocation) and are given back after a turn that leaves
//! them empty (only a busy connection's mid-sized ones are kept for its next
//! turn), so ten thousand idle clients cost ten thousand small structs, not
//! ten thousand buffers.
//!
//! Explained in docs/05-event-loop.md.

use std::cell::RefCell;
use std::io::{self, Read, Write};

use bytes::{Buf, BytesMut};
use mio::Interest;

use crate::broker::{ConnId, PeerInfo, TlsInfo, Transport};
use crate::protocol::{encode, encoded_len, Decoder, Packet};

use super::listener::Seat;
use super::stream::{Socket, Stream};

/// How much one read asks for when the decoder does not need more. Big
/// enough to take a burst of small packets in one system call.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// The longest fixed header: one type byte and four remaining-length bytes.
const MAX_HEADER: usize = 5;

/// Which end of MQTT this side of a connection is, which decides what its
/// decoder accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Accepted from a listener: the peer is a client, and its first
    /// packet must be CONNECT.
    Server,
    /// Dialled out: the peer is a broker, and sends CONNACK, PUBLISH and
    /// the other server-to-client packets.
    Client,
}

/// Everything the network layer knows about one connection.
pub(crate) struct Connection {
    pub(crate) id: ConnId,
    pub(crate) stream: Stream,
    /// For logs: `ip:port`, `unix:<path>` or `unix`. A boxed `str`, not a
    /// `String`: it never grows, and every idle connection holds one.
    pub(crate) peer: Box<str>,
    pub(crate) decoder: Decoder,
    /// Bytes read and not yet decoded.
    pub(crate) input: BytesMut,
    /// Bytes encoded and not yet written.
    pub(crate) output: BytesMut,
    /// The broker closed this connection: nothing more is read from it or
    /// queued for it, and it goes away after one last flush.
    pub(crate) closing: bool,
    /// The connection is in the loop's dirty list (to be flushed this turn).
    pub(crate) dirty: bool,
    /// While `dirty`: the entry of the dirty list where it is flushed.
    pub(crate) dirty_at: usize,
    /// The socket may hold unread bytes. `mio` is edge-triggered: an event
    /// says so once, and this flag remembers it until a read would block.
    pub(crate) readable: bool,
    /// The peer closed its side or the socket failed: read until a read
    /// returns 0 or an error, whatever a short read seemed to say, because
    /// no new edge will come for what is left.
    pub(crate) read_to_end: bool,
    /// The connection is in the loop's ready list (input to service next turn).
    pub(crate) ready: bool,
    /// Input is paused because `output` went above the high-water mark.
    pub(crate) throttled: bool,
    /// A dialled socket whose connect has not completed: nothing is read
    /// from it or written to it yet, and what the core queues waits.
    pub(crate) connecting: bool,
    /// What the socket is registered for right now.
    pub(crate) interest: Interest,
    /// The core asked to hear when `output` is below its mark again
    /// (`Core::drained`); looked at after each flush.
    pub(crate) notify_drained: bool,
    /// Of the bytes in `output`, about how many are replies (every packet
    /// but PUBLISH), less what was written since: what a client that sends
    /// and never reads makes the broker hold. Past a small limit its input
    /// pauses (`REPLIES_LIMIT`).
    pub(crate) replies: usize,
    /// The largest capacity each buffer had since it was last freed: the
    /// size of what it holds on to. `capacity()` alone cannot tell, as it
    /// shrinks when written bytes are advanced past.
    input_alloc: usize,
    output_alloc: usize,
    /// The most one read asks for: a whole packet of the largest size allowed.
    max_read: usize,
    /// Its place among its listener's clients; `None` for a dialled one.
    pub(crate) seat: Option<Seat>,
}

impl Connection {
    pub(crate) fn new(
        id: ConnId,
        stream: Stream,
        peer: &str,
        role: Role,
        max_request_size: usize,
    ) -> Connection {
        let decoder = match role {
            Role::Server => Decoder::new(max_request_size),
            Role::Client => Decoder::client(max_request_size),
        };
        Connection {
            id,
            stream,
            peer: Box::from(peer),
            decoder,
            input: BytesMut::new(),
            output: BytesMut::new(),
            closing: false,
            dirty: false,
            dirty_at: 0,
            readable: false,
            read_to_end: false,
            ready: false,
            throttled: false,
            connecting: false,
            interest: Interest::READABLE,
            notify_drained: false,
            replies: 0,
            input_alloc: 0,
            output_alloc: 0,
            max_read: max_request_size.saturating_add(MAX_HEADER).max(READ_CHUNK),
            seat: None,
        }
    }

    /// Reads once from the socket onto the end of `input`, at most `budget`
    /// bytes. `Ok(0)` means the peer closed its side.
    ///
    /// The read asks for [`READ_CHUNK`] bytes, or for the rest of a large
    /// packet when the decoder knows it is longer: one system call instead
    /// of many for a big PUBLISH. The decoder has already checked that length
    /// against the limit, and `max_read` caps it again, so a client cannot
    /// make this allocate more than one packet of the largest allowed size.
    ///
    /// A read of a plain socket that returns less than it asked for means
    /// the socket is drained (epoll(7): for stream sockets, a short read
    /// says the read space is exhausted), so `readable` is cleared and the
    /// read that would only fail with `EAGAIN` is never made; new data
    /// brings a new edge. Not for TLS: a short read of plaintext says
    /// nothing about the socket under it. Not once the peer has closed its
    /// side: its end of stream must still be read.
    pub(crate) fn read_chunk(&mut self, budget: usize) -> io::Result<usize> {
        let want = self
            .decoder
            .needed(self.input.len())
            .max(READ_CHUNK)
            .min(self.max_read)
            .min(budget)
            .min(SCRATCH_SIZE);
        let n = read_into(&mut self.stream, &mut self.input, want)?;
        self.input_alloc = self.input_alloc.max(self.input.capacity());
        if n > 0 && n < want && self.stream.short_read_drains() && !self.read_to_end {
            self.readable = false;
        }
        Ok(n)
    }

    /// What the core is told of the other end, with what a TLS handshake
    /// proved, if there was one.
    pub(crate) fn peer_info(&self, tls: Option<TlsInfo>) -> PeerInfo<'_> {
        PeerInfo {
            addr: &self.peer,
            transport: match self.stream.socket() {
                Socket::Tcp(_) => Transport::Tcp,
                Socket::Unix(_) => Transport::Unix,
            },
            tls,
        }
    }

    /// Encodes `packet` onto the end of the output buffer; anything but a
    /// PUBLISH counts as a reply.
    pub(crate) fn queue(&mut self, packet: &Packet) {
        let before = self.output.len();
        self.output.reserve(encoded_len(packet));
        encode(packet, &mut self.output);
        if !matches!(packet, Packet::Publish(_)) {
            let added = self.output.len().saturating_sub(before);
            self.replies = self.replies.saturating_add(added);
        }
    }

    /// Notes what the output buffer holds on to after something was
    /// appended to it.
    pub(crate) fn output_grew(&mut self) {
        self.output_alloc = self.output_alloc.max(self.output.capacity());
    }

    /// Puts the connection in `dirty` unless it is there already.
    pub(crate) fn mark_dirty(&mut self, dirty: &mut Vec<ConnId>) {
        if !self.dirty {
            self.dirty = true;
            self.dirty_at = dirty.len();
            dirty.push(self.id);
        }
    }

    /// Moves a dirty connection to the end of `dirty`: it is flushed at its
    /// last entry there, after every connection marked before that. Unless
    /// it is the last entry already, which keeps the list from growing
    /// while one publisher's packets are handled in a row.
    pub(crate) fn mark_dirty_last(&mut self, dirty: &mut Vec<ConnId>) {
        if !self.dirty {
            return self.mark_dirty(dirty);
        }
        if dirty.last() != Some(&self.id) {
            self.dirty_at = dirty.len();
            dirty.push(self.id);
        }
    }

    /// Whether entry `index` of the dirty list is where this connection is
    /// flushed: its last one.
    pub(crate) fn flushes_at(&self, index: usize) -> bool {
        !self.dirty || self.dirty_at == index
    }

    /// Puts the connection in `ready` unless it is there already.
    pub(crate) fn mark_ready(&mut self, ready: &mut Vec<ConnId>) {
        if !self.ready {
            self.ready = true;
            ready.push(self.id);
        }
    }

    /// Writes queued output until it is all gone or the socket is full,
    /// then what the transport itself holds (TLS records).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let before = self.output.len();
        let written = write_from(&mut self.stream, &mut self.output);
        let gone = before.saturating_sub(self.output.len());
        // Written bytes are counted against the replies first: a client that
        // reads at all soon owes nothing, one that never reads keeps what
        // it caused.
        self.replies = self.replies.saturating_sub(gone).min(self.output.len());
        written?;
        self.stream.flush()
    }

    /// `WRITABLE` is asked for only while output waits (ours, or TLS's):
    /// an idle socket is always writable, and asking would wake the loop
    /// for nothing.
    pub(crate) fn wanted_interest(&self) -> Interest {
        if self.output.is_empty() && !self.stream.wants_write() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    pub(crate) fn release_input(&mut self) {
        release_if_idle(&mut self.input, &mut self.input_alloc);
    }

    pub(crate) fn release_output(&mut self) {
        release_if_idle(&mut self.output, &mut self.output_alloc);
    }
}

/// An empty buffer whose capacity is in `KEEP_FROM..=KEEP_UP_TO` is kept for
/// the next turn; any other empty buffer is freed. A mid-sized buffer is
/// what a busy connection reuses turn after turn (freeing it each turn cost
/// fan-out about 6 % of its CPU per message); a small one is what a CONNECT,
/// a CONNACK or a PINGREQ left behind, and keeping it would make every idle
/// client hold one (about 30 bytes of RSS each); a big one is what a single
/// large message left behind.
const KEEP_FROM: usize = 256;
const KEEP_UP_TO: usize = 4 * 1024;

/// Frees an empty buffer unless it is one a busy connection reuses.
/// `alloc` is the largest capacity the buffer had since it was last freed
/// (at least what it holds on to), and goes back to 0 with it: once a
/// write or a decode has advanced past every byte, `capacity()` says 0 or
/// some small rest, however big the allocation behind it.
pub(crate) fn release_if_idle(buf: &mut BytesMut, alloc: &mut usize) {
    let held = (*alloc).max(buf.capacity());
    let reused = (KEEP_FROM..=KEEP_UP_TO).contains(&held);
    if buf.is_empty() && held > 0 && !reused {
        *buf = BytesMut::new();
        *alloc = 0;
    }
}

/// The most bytes one `read` call takes.
const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    /// Where reads land before they are appended to a connection's input.
    /// Zeroed once per thread: reading straight into the input buffer would
    /// mean zeroing the space first (to stay free of `unsafe`) on every
    /// read, however few bytes arrive, and a client trickling one byte at a
    /// time would cost a large `memset` per byte.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Reads at most `want` bytes (and at most 64 KiB) from `from` onto the end
/// of `buf`. Only the bytes that arrived are copied.
pub(crate) fn read_into(
    from: &mut impl Read,
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch
            .try_borrow_mut()
            .map_err(|_| io::Error::other("read scratch buffer in use"))?;
        let limit = want.min(scratch.len());
        let space = scratch.get_mut(..limit).unwrap_or_default();
        let n = from.read(space)?;
        let got = space.get(..n).unwrap_or_default();
        buf.extend_from_slice(got);
        Ok(got.len())
    })
}

/// Writes `buf` to `to` until it is empty or `to` would block; what was
/// written is removed from the front of `buf`.
pub(crate) fn write_from(to: &mut impl Write, buf: &mut BytesMut) -> io::Result<()> {
    while !buf.is_empty() {
        match to.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.advance(n.min(buf.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes in total, then would block.
    struct Full {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room.saturating_sub(self.taken.len()));
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.taken.extend_from_slice(buf.get(..n).unwrap());
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn read_into_appends_only_what_was_read() {
        let mut buf = BytesMut::from(&b"ab"[..]);
        let mut src: &[u8] = b"cde";
        assert_eq!(read_into(&mut src, &mut buf, 16).unwrap(), 3);
        assert_eq!(&buf[..], b"abcde");
    }

    #[test]
    fn read_into_respects_want() {
        let mut buf = BytesMut::new();
        let mut src: &[u8] = b"0123456789";
        assert_eq!(read_into(&mut src, &mut buf, 4).unwrap(), 4);
        assert_eq!(&buf[..], b"0123");
    }

    #[test]
    fn read_into_leaves_the_buffer_as_it_was_on_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
        let mut buf = BytesMut::from(&b"xy"[..]);
        let err = read_into(&mut Broken, &mut buf, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(&buf[..], b"xy");
    }

    #[test]
    fn write_from_stops_at_would_block_and_keeps_the_rest() {
        let mut buf = BytesMut::from(&b"hello world"[..]);
        let mut to = Full {
            taken: Vec::new(),
            room: 5,
        };
        write_from(&mut to, &mut buf).unwrap();
        assert_eq!(to.taken, b"hello");
        assert_eq!(&buf[..], b" world");
        to.room = 100;
        write_from(&mut to, &mut buf).unwrap();
        assert_eq!(to.taken, b"hello world");
        assert!(buf.is_empty());
    }

    #[test]
    fn write_from_reports_a_socket_that_takes_nothing() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut buf = BytesMut::from(&b"x"[..]);
        let err = write_from(&mut Zero, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }

    fn unix_pair() -> (Connection, mio::net::UnixStream) {
        let (ours, theirs) = mio::net::UnixStream::pair().unwrap();
        let id = ConnId { key: 0, serial: 1 };
        let conn = Connection::new(
            id,
            Stream::Plain(Socket::Unix(ours)),
            "unix",
            Role::Server,
            1024,
        );
        (conn, theirs)
    }

    #[test]
    fn a_short_plain_read_marks_the_socket_drained() {
        let (mut conn, mut peer) = unix_pair();
        peer.write_all(b"\x10\x0c").unwrap();
        conn.readable = true;
        assert_eq!(conn.read_chunk(1024).unwrap(), 2);
        assert!(!conn.readable, "a short read needs no read that fails");
        assert_eq!(&conn.input[..], b"\x10\x0c");
    }

    #[test]
    fn a_full_read_or_a_closing_peer_keeps_reading() {
        let (mut conn, mut peer) = unix_pair();
        peer.write_all(&[0u8; 8]).unwrap();
        conn.readable = true;
        // Asked for exactly what was there: more may follow.
        assert_eq!(conn.read_chunk(8).unwrap(), 8);
        assert!(conn.readable);

        peer.write_all(b"xy").unwrap();
        drop(peer);
        conn.read_to_end = true;
        assert_eq!(conn.read_chunk(1024).unwrap(), 2);
        assert!(conn.readable, "the end of stream is still to be read");
        assert_eq!(conn.read_chunk(1024).unwrap(), 0);
    }

    /// Frees as `release_if_idle` does, with the allocation counted from
    /// the buffer as it is.
    fn release(buf: &mut BytesMut) {
        let mut alloc = buf.capacity();
        release_if_idle(buf, &mut alloc);
    }

    #[test]
    fn empty_buffers_are_released_unless_mid_sized() {
        let mut big = BytesMut::with_capacity(64 * 1024);
        release(&mut big);
        assert_eq!(big.capacity(), 0);

        let mut small = BytesMut::with_capacity(32);
        release(&mut small);
        assert_eq!(small.capacity(), 0, "what a handshake left is freed");

        let mut mid = BytesMut::with_capacity(1024);
        release(&mut mid);
        assert!(mid.capacity() >= 1024, "a busy connection's buffer is kept");

        let mut busy = BytesMut::with_capacity(64 * 1024);
        busy.extend_from_slice(b"pending");
        release(&mut busy);
        assert!(busy.capacity() >= 64 * 1024);
        assert_eq!(&busy[..], b"pending");
    }

    #[test]
    fn a_big_buffer_written_to_the_last_byte_is_freed() {
        // What a 1 MB message leaves once written: `advance` took every
        // byte, and `capacity()` says 0 or a rest in the kept range.
        for rest in [0, 1024] {
            let mut buf = BytesMut::with_capacity(1 << 20);
            let mut alloc = buf.capacity();
            let len = buf.capacity() - rest;
            buf.resize(len, 7);
            buf.advance(len);
            assert!(buf.is_empty());
            assert!(buf.capacity() <= rest);
            release_if_idle(&mut buf, &mut alloc);
            assert_eq!(buf.capacity(), 0, "with {rest} bytes left over");
            assert_eq!(alloc, 0);
        }
    }

    #[test]
    fn replies_shrink_as_they_are_written() {
        let (mut conn, mut peer) = unix_pair();
        conn.output.extend_from_slice(&[0xD0, 0, 0xD0, 0]);
        conn.replies = 4;
        conn.flush().unwrap();
        assert_eq!(conn.replies, 0);
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, [0xD0, 0, 0xD0, 0]);
    }
}
