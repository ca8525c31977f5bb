//! A minimal MQTT client for load: packets built and read with sol's own
//! encoder and client-side decoder, over sockets bound to a chosen
//! 127.0.0.x source address (one source address has only ~28 000
//! ephemeral ports toward one listener).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Socket, Type};

use sol::protocol::{
    encode, Connect, Decoder, Packet, PacketId, Protocol, Publish, QoS, Subscribe, TopicFilter,
    TopicName, Will,
};

/// The source address for client number `n`: 127.0.0.1 to 127.0.0.8 in
/// turn.
pub fn source(n: usize) -> IpAddr {
    let last = u8::try_from(n % 8).unwrap_or(0) + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection from `from` to `to`; `recv_buffer` shrinks the receive
/// buffer (set before the handshake, so the window is small from the start).
pub fn dial(to: SocketAddr, from: IpAddr, recv_buffer: Option<usize>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    socket.set_nodelay(true)?;
    Ok(socket.into())
}

pub fn connect_packet(client_id: &str, clean: bool, keep_alive: u16, will: Option<Will>) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V311,
        clean_session: clean,
        keep_alive,
        client_id: client_id.to_string(),
        will,
        username: None,
        password: None,
    }))
}

pub fn will(topic: &str, payload: &str) -> Option<Will> {
    Some(Will {
        topic: TopicName::new(topic).ok()?,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
    })
}

pub fn subscribe_packet(filter: &str, qos: QoS) -> Option<Packet> {
    Some(Packet::Subscribe(Subscribe {
        packet_id: PacketId::FIRST,
        filters: vec![(TopicFilter::new(filter).ok()?, qos)],
    }))
}

pub fn publish_packet(topic: &str, qos: QoS, id: u16, payload: Bytes) -> Option<Packet> {
    Some(Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new(topic).ok()?,
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            PacketId::new(id)
        },
        payload,
    }))
}

pub fn bytes_of(packets: &[Packet]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in packets {
        encode(p, &mut out);
    }
    out.to_vec()
}

/// A blocking connection that reads whole packets.
pub struct Conn {
    pub stream: TcpStream,
    input: BytesMut,
    decoder: Decoder,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            input: BytesMut::new(),
            decoder: Decoder::client(64 * 1024 * 1024),
        }
    }

    /// Dials, sends CONNECT and waits up to `wait` for an accepting CONNACK.
    pub fn open(
        to: SocketAddr,
        from: IpAddr,
        connect: &Packet,
        wait: Duration,
    ) -> io::Result<Conn> {
        let mut conn = Conn::new(dial(to, from, None)?);
        conn.send(std::slice::from_ref(connect))?;
        match conn.next(wait)? {
            Packet::Connack(c) if c.code as u8 == 0 => Ok(conn),
            other => Err(io::Error::other(format!("refused: {other:?}"))),
        }
    }

    pub fn send(&mut self, packets: &[Packet]) -> io::Result<()> {
        self.stream.write_all(&bytes_of(packets))
    }

    /// The next packet within `wait`.
    pub fn next(&mut self, wait: Duration) -> io::Result<Packet> {
        let deadline = Instant::now() + wait;
        loop {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self
                    .input
                    .extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A client that publishes to its own topic at QoS 1 and times each round
/// trip: the service every other client gets, measured while the broker is
/// under attack or load.
pub struct Probe {
    conn: Conn,
    topic: String,
    seq: u16,
    pub samples: Vec<Duration>,
    pub failures: usize,
}

impl Probe {
    pub fn open(to: SocketAddr, name: &str) -> io::Result<Probe> {
        let connect = connect_packet(name, true, 60, None);
        let mut conn = Conn::open(to, source(0), &connect, Duration::from_secs(5))?;
        let topic = format!("soak/probe/{name}");
        let subscribe = subscribe_packet(&topic, QoS::AtLeastOnce)
            .ok_or_else(|| io::Error::other("bad probe topic"))?;
        conn.send(&[subscribe])?;
        conn.next(Duration::from_secs(5))?;
        Ok(Probe {
            conn,
            topic,
            seq: 0,
            samples: Vec::new(),
            failures: 0,
        })
    }

    /// One QoS 1 round trip: PUBLISH, then both the PUBACK and the message
    /// back, within `wait`.
    pub fn round_trip(&mut self, wait: Duration) -> bool {
        self.seq = self.seq.wrapping_add(1).max(1);
        let start = Instant::now();
        let payload = Bytes::from(self.seq.to_be_bytes().to_vec());
        let Some(publish) = publish_packet(&self.topic, QoS::AtLeastOnce, self.seq, payload) else {
            return false;
        };
        if self.conn.send(&[publish]).is_err() {
            self.failures += 1;
            return false;
        }
        let (mut acked, mut echoed) = (false, false);
        while !(acked && echoed) {
            let left = wait.saturating_sub(start.elapsed());
            match self.conn.next(left) {
                Ok(Packet::Puback(_)) => acked = true,
                Ok(Packet::Publish(p)) => {
                    if let Some(id) = p.packet_id {
                        let _ = self.conn.send(&[Packet::Puback(id)]);
                    }
                    echoed = true;
                }
                Ok(_) => {}
                Err(_) => {
                    self.failures += 1;
                    return false;
                }
            }
        }
        self.samples.push(start.elapsed());
        true
    }

    /// "n round trips, p50 / p99 / max, f failures".
    pub fn summary(&self) -> String {
        let mut s = self.samples.clone();
        s.sort();
        let at = |q: f64| {
            let i = ((s.len() as f64 - 1.0) * q).round() as usize;
            s.get(i).copied().unwrap_or_default()
        };
        format!(
            "{} round trips, p50 {:?}, p99 {:?}, max {:?}, {} failed",
            s.len(),
            at(0.5),
            at(0.99),
            s.last().copied().unwrap_or_default(),
            self.failures
        )
    }
}
