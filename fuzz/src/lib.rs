//! The fuzz targets, as plain functions over bytes.
//!
//! Each `fuzz_targets/<name>.rs` is one line that hands libFuzzer's input to
//! the function of the same name here. Keeping the bodies in a library lets
//! the stable toolchain run them too: `tests/fuzz_corpus.rs` in the main
//! crate includes this file by path and replays the seed corpus, the
//! regression fixtures and a bounded random-mutation loop through the same
//! functions as part of `cargo test`. So this file may use only what the
//! main crate's tests can: `sol`, `bytes` and the standard library.
//!
//! A target panics on a broken invariant, which libFuzzer reports as a
//! crash and keeps the input of. Every invariant checked here is one the
//! code under test promises in its documentation; a target never checks a
//! guess about behaviour the code leaves open.
//!
//! | target    | what it drives                                                 |
//! |-----------|----------------------------------------------------------------|
//! | `decode`  | [`Decoder::new`] and [`Decoder::client`] over a byte stream   |
//! | `session` | several byte streams through decoders into one [`Broker`]     |
//! | `config`  | [`Config::parse`] and [`parse_args`]                           |
//! | `passwd`  | [`PasswordFile::parse`]                                        |
//! | `acl`     | [`AclFile::parse`] and its checks                              |

#![forbid(unsafe_code)]

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use sol::broker::{Broker, CloseReason, ConnId, Outbox, QOS0_OUTPUT_LIMIT};
use sol::cli::parse_args;
use sol::config::Config;
use sol::protocol::{encode, encoded_len, DecodeError, Decoder, Packet, TopicFilter, TopicName};
use sol::security::acl::AclFile;
use sol::security::passwords::PasswordFile;
use sol::test_rng::XorShift;

pub mod seeds;

// ---------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------

/// The size limits the `decode` target picks from.
const SIZE_LIMITS: [usize; 4] = [64, 1024, 100_000, 2_000_000];

/// Byte 0 picks the side (bit 0 set: [`Decoder::client`]) and the size limit
/// (bits 1 and 2); byte 1 seeds the chunk sizes; the rest is the stream.
///
/// Invariants, all promised by the decoder's documentation:
/// - the same packets and the same error come out whether the stream
///   arrives whole or in chunks of any size (a header split across reads is
///   resumed, never parsed twice);
/// - after an error, every later call returns that same error;
/// - [`Decoder::needed`] never asks for more than the size limit;
/// - every decoded packet encodes ([`encoded_len`] agrees with [`encode`])
///   back into bytes that decode to the same packet.
pub fn decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, stream)) = rest.split_first() else {
        return;
    };
    let client = mode & 1 == 1;
    let limit = SIZE_LIMITS
        .get(usize::from(mode >> 1) % SIZE_LIMITS.len())
        .copied()
        .unwrap_or(64);
    let whole = run_decoder(client, limit, stream, &mut |left| left);
    // The input picks the seed, so an input replays exactly, chunk sizes
    // included.
    let mut rng = XorShift::new(u64::from(seed));
    let chunked = run_decoder(client, limit, stream, &mut |left| {
        1 + rng.below(left.min(64))
    });
    assert_eq!(whole, chunked, "chunking changed what was decoded");

    let mut mirror = new_decoder(client, limit);
    for outcome in &whole {
        let Ok(packet) = outcome else {
            break;
        };
        let mut bytes = BytesMut::new();
        encode(packet, &mut bytes);
        assert_eq!(
            bytes.len(),
            encoded_len(packet),
            "encoded_len of {packet:?}"
        );
        let again = mirror.decode(&mut bytes);
        assert_eq!(again, Ok(Some(packet.clone())), "re-decoding {packet:?}");
        assert!(bytes.is_empty(), "bytes left after re-decoding {packet:?}");
    }
}

fn new_decoder(client: bool, limit: usize) -> Decoder {
    if client {
        Decoder::client(limit)
    } else {
        Decoder::new(limit)
    }
}

type Outcome = Result<Packet, DecodeError>;

/// Feeds `stream` to a fresh decoder in chunks of `next_chunk(bytes left)`
/// bytes, decoding after each, as the network layer does.
fn run_decoder(
    client: bool,
    limit: usize,
    stream: &[u8],
    next_chunk: &mut dyn FnMut(usize) -> usize,
) -> Vec<Outcome> {
    let mut decoder = new_decoder(client, limit);
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = next_chunk(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => outcomes.push(Ok(packet)),
                Ok(None) => break,
                Err(error) => {
                    buf.extend_from_slice(rest);
                    let again = decoder.decode(&mut buf);
                    assert_eq!(again, Err(error.clone()), "a failed decoder recovered");
                    outcomes.push(Err(error));
                    return outcomes;
                }
            }
        }
        let needed = decoder.needed(buf.len());
        assert!(needed <= limit, "needed {needed} over the limit {limit}");
    }
    outcomes
}

// ---------------------------------------------------------------------------
// session
// ---------------------------------------------------------------------------

/// At most this many connections are open at once.
const MAX_CONNS: usize = 12;

/// One connection as the fuzz harness plays the network layer for it.
struct Peer {
    id: ConnId,
    /// What the client sent and the broker's decoder has not taken yet.
    input: BytesMut,
    decoder: Decoder,
    /// Re-decodes everything the broker sends, as the client would.
    reader: Decoder,
    wire: BytesMut,
    /// Bytes "queued and not yet written", as [`Outbox::pending`] reports.
    output: usize,
    /// Extra pending bytes, to play a client that does not read.
    stuck: usize,
    got_connack: bool,
    /// The core called [`Outbox::close`]: it may send nothing more.
    closing: bool,
}

/// The harness's side of the [`Outbox`]: checks everything the core sends.
struct Net {
    peers: Vec<Peer>,
    /// Connections the core asked to hear of once drained
    /// ([`Outbox::notify_when_drained`]).
    drain_wanted: Vec<ConnId>,
}

impl Net {
    fn peer(&mut self, conn: ConnId) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.id == conn)
    }
}

impl Outbox for Net {
    fn send(&mut self, conn: ConnId, packet: &Packet) {
        // Sending to a connection that is gone is allowed: it is ignored.
        let Some(peer) = self.peer(conn) else {
            return;
        };
        assert!(
            !peer.closing,
            "{} sent to {conn:?} after closing it",
            packet.name()
        );
        let to_client = matches!(
            packet,
            Packet::Connack(_)
                | Packet::Publish(_)
                | Packet::Puback(_)
                | Packet::Pubrec(_)
                | Packet::Pubrel(_)
                | Packet::Pubcomp(_)
                | Packet::Suback(_)
                | Packet::Unsuback(_)
                | Packet::Pingresp
        );
        assert!(to_client, "{} sent to a client", packet.name());
        let is_connack = matches!(packet, Packet::Connack(_));
        assert_eq!(
            is_connack,
            !peer.got_connack,
            "{} sent when CONNACK was {}",
            packet.name(),
            if peer.got_connack {
                "already sent"
            } else {
                "due"
            }
        );
        peer.got_connack = true;
        let len = encoded_len(packet);
        assert_ne!(len, 0, "the broker built an unencodable {packet:?}");
        encode(packet, &mut peer.wire);
        let decoded = peer.reader.decode(&mut peer.wire);
        assert_eq!(decoded, Ok(Some(packet.clone())), "the client misreads it");
        peer.output = peer.output.saturating_add(len);
    }

    fn pending(&self, conn: ConnId) -> usize {
        self.peers
            .iter()
            .find(|p| p.id == conn)
            .map_or(0, |p| p.output.saturating_add(p.stuck))
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(peer) = self.peer(conn) {
            peer.closing = true;
        }
    }

    fn notify_when_drained(&mut self, conn: ConnId) {
        if !self.drain_wanted.contains(&conn) {
            self.drain_wanted.push(conn);
        }
    }
}

/// Reads the operations the `session` input is made of.
struct Ops<'a> {
    data: &'a [u8],
}

impl Ops<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken
    }
}

/// The operations of the `session` input; [`seeds`] writes them.
pub mod op {
    /// Accept a connection.
    pub const OPEN: u8 = 0;
    /// `FEED k len_hi len_lo bytes...`: bytes from connection `k`.
    pub const FEED: u8 = 1;
    /// `PEER_CLOSED k`: the client closed its socket.
    pub const PEER_CLOSED: u8 = 2;
    /// `RESET k`: a socket error on connection `k`.
    pub const RESET: u8 = 3;
    /// `ADVANCE t`: the clock moves on `t` x 100 ms.
    pub const ADVANCE: u8 = 4;
    /// `OUTPUT k n`: connection `k` has read all it was sent, and now
    /// leaves `n` x 16 KB unread (a slow consumer).
    pub const OUTPUT: u8 = 5;
    pub const COUNT: u8 = 6;
}

/// A sequence of operations: accept connections, feed each a byte stream
/// through its own [`Decoder`] into one [`Broker`], close them, move a fake
/// clock on. The harness plays the network layer as `sol::net` does: a
/// decode error goes to [`Broker::closed`]; a connection the core closed is
/// read no more and removed, its key reused with a new serial.
///
/// Invariants: no panic; [`Broker::connection_count`] always equals the
/// connections the harness holds; the core sends only server-to-client
/// packets, CONNACK first and once, nothing after it closes a connection,
/// and only packets that encode and that a client decodes back to the same
/// value; after shutdown no connection is left.
pub fn session(data: &[u8]) {
    let mut now = Instant::now();
    let config = Config {
        max_inflight_messages: 2,
        max_queued_messages: 4,
        max_request_size: 4096,
        connect_timeout: Duration::from_secs(2),
        // Short enough that the clock the input moves reaches it: sessions
        // expire, and clients come back to them, under the fuzzer too.
        persistent_client_expiration: Some(Duration::from_secs(3)),
        ..Config::default()
    };
    let mut broker = Broker::new(&config, now);
    let mut net = Net {
        peers: Vec::new(),
        drain_wanted: Vec::new(),
    };
    let mut serial = 0u64;
    let mut ops = Ops { data };
    while let Some(op) = ops.byte() {
        match op % op::COUNT {
            op::OPEN => {
                if net.peers.len() >= MAX_CONNS {
                    continue;
                }
                // The lowest free key, as a slab hands them out.
                let key = (0..).find(|k| net.peers.iter().all(|p| p.id.key != *k));
                let Some(key) = key else { continue };
                serial += 1;
                let id = ConnId { key, serial };
                net.peers.push(Peer {
                    id,
                    input: BytesMut::new(),
                    decoder: Decoder::new(config.max_request_size),
                    reader: Decoder::client(usize::MAX),
                    wire: BytesMut::new(),
                    output: 0,
                    stuck: 0,
                    got_connack: false,
                    closing: false,
                });
                broker.open(id, "fuzz", now);
            }
            op::FEED => {
                let k = ops.byte().unwrap_or(0);
                let hi = ops.byte().unwrap_or(0);
                let lo = ops.byte().unwrap_or(0);
                let bytes = ops.bytes(usize::from(u16::from_be_bytes([hi, lo])));
                if let Some(id) = pick(&net, k) {
                    feed(&mut broker, &mut net, id, bytes, now);
                }
            }
            op::PEER_CLOSED | op::RESET => {
                let k = ops.byte().unwrap_or(0);
                if let Some(id) = pick(&net, k) {
                    let reason = if op % op::COUNT == op::RESET {
                        CloseReason::Io(io::ErrorKind::ConnectionReset.into())
                    } else {
                        CloseReason::PeerClosed
                    };
                    broker.closed(id, reason, now, &mut net);
                    // The loop removes a lost socket at once.
                    net.peers.retain(|p| p.id != id);
                }
            }
            op::ADVANCE => {
                let t = ops.byte().unwrap_or(0);
                now += Duration::from_millis(100) * u32::from(t);
            }
            _ => {
                let k = ops.byte().unwrap_or(0);
                let n = ops.byte().unwrap_or(0);
                if let Some(id) = pick(&net, k) {
                    if let Some(peer) = net.peer(id) {
                        peer.output = 0;
                        peer.stuck = usize::from(n) * 16 * 1024;
                    }
                }
            }
        }
        // Every turn of the loop ends with the timers, then the flush that
        // removes the connections the core closed.
        broker.tick(now, &mut net);
        net.peers.retain(|p| !p.closing);
        // As the loop does after its flush: the connections the core asked
        // about that are below the mark hear that they drained.
        let asked = std::mem::take(&mut net.drain_wanted);
        for id in asked {
            let live = net.peers.iter().any(|p| p.id == id);
            if live && net.pending(id) < QOS0_OUTPUT_LIMIT {
                broker.drained(id, now, &mut net);
            } else if live {
                net.drain_wanted.push(id);
            }
        }
        assert_eq!(
            broker.connection_count(),
            net.peers.len(),
            "the core and the network disagree on the open connections"
        );
    }
    let ids: Vec<ConnId> = net.peers.iter().map(|p| p.id).collect();
    for id in ids {
        broker.closed(id, CloseReason::Shutdown, now, &mut net);
    }
    net.peers.clear();
    assert_eq!(
        broker.connection_count(),
        0,
        "connections left after shutdown"
    );
}

/// The connection the selector `k` names among the open ones, if any.
fn pick(net: &Net, k: u8) -> Option<ConnId> {
    let n = net.peers.len();
    if n == 0 {
        return None;
    }
    net.peers.get(usize::from(k) % n).map(|p| p.id)
}

/// Bytes from `id`: decoded and handed to the core one packet at a time,
/// until the core closes the connection or the decoder needs more.
fn feed(broker: &mut Broker, net: &mut Net, id: ConnId, bytes: &[u8], now: Instant) {
    let Some(peer) = net.peer(id) else {
        return;
    };
    if peer.closing {
        return;
    }
    peer.input.extend_from_slice(bytes);
    loop {
        let Some(peer) = net.peer(id) else {
            return;
        };
        if peer.closing {
            return;
        }
        match peer.decoder.decode(&mut peer.input) {
            Ok(Some(packet)) => broker.packet(id, packet, now, net),
            Ok(None) => return,
            Err(error) => {
                broker.closed(id, CloseReason::Protocol(error), now, net);
                net.close(id);
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// config, passwd, acl
// ---------------------------------------------------------------------------

/// The text (lossily UTF-8) as a config file, and its words as arguments.
///
/// Invariants: a parse that fails reports at least one error, each on a
/// line of the text; a parsed config holds values within the documented
/// bounds.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match Config::parse(&text) {
        Ok(config) => {
            assert!(config.max_request_size >= 2, "{config:?}");
            assert!(config.max_request_size <= 268_435_455, "{config:?}");
            assert!(config.connect_timeout <= Duration::from_secs(86_400));
            assert!(config.max_inflight_messages <= 65_535, "{config:?}");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "failed without an error");
            for error in &errors {
                assert!(
                    (1..=lines.max(1)).contains(&error.line),
                    "error on line {} of {lines}: {}",
                    error.line,
                    error.message
                );
            }
        }
    }
    let _ = parse_args(text.split_whitespace().map(str::to_string));
}

/// The text (lossily UTF-8) as a password file.
///
/// Invariants: a failed parse reports at least one error, each on a line of
/// the text; a file never holds more users than it has lines.
pub fn passwd(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match PasswordFile::parse(&text) {
        Ok(file) => assert!(file.len() <= lines, "{} users in {lines} lines", file.len()),
        Err(errors) => {
            assert!(!errors.is_empty(), "failed without an error");
            for error in &errors {
                assert!(
                    (1..=lines.max(1)).contains(&error.line),
                    "error on line {} of {lines}: {}",
                    error.line,
                    error.message
                );
            }
        }
    }
}

/// Up to the first NUL, the text of an ACL file; after it, NUL-separated,
/// a client id, a username (none if empty) and a topic, which are checked
/// against the parsed file as a name and as a filter.
///
/// Invariants: a failed parse reports at least one error, each on a line of
/// the text; nobody may ever write to `$SOL/...`.
pub fn acl(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let mut field = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (client_id, username, topic) = (field(), field(), field());
    let username = (!username.is_empty()).then_some(username.as_str());
    let lines = text.lines().count();
    let file = match AclFile::parse(&text) {
        Ok(file) => file,
        Err(errors) => {
            assert!(!errors.is_empty(), "failed without an error");
            for error in &errors {
                assert!(
                    (1..=lines.max(1)).contains(&error.line),
                    "error on line {} of {lines}: {}",
                    error.line,
                    error.message
                );
            }
            return;
        }
    };
    let _ = file.rule_count();
    if let Ok(name) = TopicName::new(topic.clone()) {
        let _ = file.may_read(&client_id, username, &name);
        let write = file.may_publish(&client_id, username, &name);
        if name.levels().next() == Some("$SOL") {
            assert!(!write, "{client_id:?}/{username:?} may write to {name}");
        }
    }
    if let Ok(filter) = TopicFilter::new(topic) {
        let _ = file.may_subscribe(&client_id, username, &filter);
    }
}
