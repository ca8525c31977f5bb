//! Micro-benchmarks of the codec: decoding what clients send, encoding what
//! the broker sends, and the cost of encoding one PUBLISH per subscriber
//! against encoding it once and copying the bytes (with each subscriber's
//! packet id patched in, as [`SharedPublish`] does for QoS 1 and 2).
//!
//! Run with `cargo bench --bench codec`; results and the commands that
//! produced them are in docs/benchmarks.md.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sol::protocol::{
    encode, Connect, Decoder, Packet, PacketId, Protocol, Publish, QoS, SharedPublish, Subscribe,
    TopicFilter, TopicName,
};

const TOPIC: &str = "sensors/room1/temperature";

fn publish(qos: QoS, size: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new(TOPIC).unwrap(),
        packet_id: PacketId::new(42).filter(|_| qos != QoS::AtMostOnce),
        payload: Bytes::from(vec![0xa5; size]),
    })
}

/// A QoS 0 PUBLISH of 16 bytes to `topic`, for the decode cases.
fn publish_qos0_to(topic: &str) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::new(topic).unwrap(),
        packet_id: None,
        payload: Bytes::from(vec![0xa5; 16]),
    })
}

fn connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: 60,
        client_id: "bench".to_string(),
        will: None,
        username: None,
        password: None,
    }))
}

/// A server decoder that has seen its CONNECT, and a buffer of `n` packets
/// taken from `packets` in turn.
fn stream_of(packets: &[Packet], n: usize) -> (Decoder, BytesMut) {
    let mut decoder = Decoder::new(1 << 20);
    let mut first = BytesMut::new();
    encode(&connect(), &mut first);
    decoder.decode(&mut first).unwrap().unwrap();
    let mut buf = BytesMut::new();
    for packet in packets.iter().cycle().take(n) {
        encode(packet, &mut buf);
    }
    (decoder, buf)
}

const BURST: usize = 1000;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(BURST as u64));
    let cases = [
        ("publish_qos0_16B", vec![publish(QoS::AtMostOnce, 16)]),
        // Every topic differs from the one before it: what a publisher to
        // ever-changing topics costs, with no repeated topic to reuse.
        (
            "publish_qos0_16B_topic_changes",
            vec![
                publish_qos0_to(TOPIC),
                publish_qos0_to("sensors/room2/temperature"),
            ],
        ),
        ("publish_qos1_16B", vec![publish(QoS::AtLeastOnce, 16)]),
        ("publish_qos1_1KiB", vec![publish(QoS::AtLeastOnce, 1024)]),
        ("puback", vec![Packet::Puback(PacketId::new(7).unwrap())]),
        (
            "subscribe_1_filter",
            vec![Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(1).unwrap(),
                filters: vec![(
                    TopicFilter::new("sensors/+/temperature").unwrap(),
                    QoS::AtLeastOnce,
                )],
            })],
        ),
    ];
    for (name, packets) in cases {
        // Each iteration decodes a burst of packets from one buffer, as the
        // broker does after a large read; the copy of the buffer is setup.
        g.bench_function(name, |b| {
            b.iter_batched(
                || stream_of(&packets, BURST),
                |(mut decoder, mut buf)| {
                    while let Some(p) = decoder.decode(&mut buf).unwrap() {
                        black_box(p);
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn encode_packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("publish_qos0_16B", publish(QoS::AtMostOnce, 16)),
        ("publish_qos1_16B", publish(QoS::AtLeastOnce, 16)),
        ("publish_qos1_1KiB", publish(QoS::AtLeastOnce, 1024)),
        ("puback", Packet::Puback(PacketId::new(7).unwrap())),
    ];
    for (name, packet) in cases {
        let mut out = BytesMut::with_capacity(1 << 20);
        g.bench_function(name, |b| {
            b.iter(|| {
                if out.len() > (1 << 19) {
                    out.clear();
                }
                encode(black_box(&packet), &mut out);
            })
        });
    }
    g.finish();
}

/// What a fan-out to 100 subscribers costs in encoding: once per subscriber
/// (what a broker does when it encodes per connection) against once, then a
/// copy of the bytes per subscriber.
fn fanout_encoding(c: &mut Criterion) {
    const SUBS: usize = 100;
    let mut g = c.benchmark_group("fanout_100_encode");
    g.throughput(Throughput::Elements(SUBS as u64));
    let packet = publish(QoS::AtMostOnce, 16);
    let mut outs: Vec<BytesMut> = (0..SUBS)
        .map(|_| BytesMut::with_capacity(1 << 16))
        .collect();
    g.bench_function("encode_per_subscriber", |b| {
        b.iter(|| {
            for out in outs.iter_mut() {
                if out.len() > (1 << 15) {
                    out.clear();
                }
                // A fresh Packet per subscriber, as routing builds one.
                let p = packet.clone();
                encode(&p, out);
            }
        })
    });
    g.bench_function("encode_once_copy_bytes", |b| {
        b.iter(|| {
            let mut once = BytesMut::new();
            encode(&packet, &mut once);
            for out in outs.iter_mut() {
                if out.len() > (1 << 15) {
                    out.clear();
                }
                out.extend_from_slice(&once);
            }
        })
    });
    // What `Broker::route` does at QoS 1: one encoding, each subscriber's
    // packet id patched in before the copy.
    let topic = TopicName::new(TOPIC).unwrap();
    let payload = vec![0xa5; 16];
    let mut shared = SharedPublish::default();
    g.bench_function("shared_publish_qos1_patch_id", |b| {
        b.iter(|| {
            shared.encode(Protocol::V311, &topic, &payload, QoS::AtLeastOnce, false);
            for (n, out) in (1..).zip(outs.iter_mut()) {
                if out.len() > (1 << 15) {
                    out.clear();
                }
                shared.set_id(PacketId::new(n).unwrap());
                out.extend_from_slice(shared.bytes());
            }
            shared.clear();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = decode, encode_packets, fanout_encoding
}
criterion_main!(benches);
