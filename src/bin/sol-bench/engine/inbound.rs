//! What a client does with each packet the broker sends it: the steps
//! from CONNACK to ready (SUBSCRIBE and SUBACK for a subscriber), a
//! delivery verified and acknowledged, a publisher's window moved on by
//! its acknowledgements. Anything out of turn is counted as a protocol
//! error; a refusal or a packet no broker sends ends the run.

use std::time::Instant;

use sol::protocol::{
    encode, ConnectReturnCode, Packet, PacketId, QoS, SubackCode, Subscribe, TopicFilter,
};

use super::{err, Stats};
use crate::args::Options;
use crate::client::{Client, Phase, Role};
use crate::wire::read_stamp;

/// One packet from the broker.
pub(super) fn handle(
    c: &mut Client,
    packet: Packet,
    stats: &mut Stats,
    opts: &Options,
    now_ns: u64,
    every: u64,
) -> Result<(), String> {
    match packet {
        Packet::Connack(ack) => {
            if ack.code != ConnectReturnCode::Accepted {
                return Err(format!("CONNACK refused: {:?}", ack.code));
            }
            if c.phase != Phase::Connecting {
                stats.protocol_errors += 1;
                return Ok(());
            }
            match &c.filter {
                Some(filter) => {
                    let filter = TopicFilter::new(filter.clone()).map_err(|e| err("filter", e))?;
                    let subscribe = Subscribe {
                        packet_id: PacketId::FIRST,
                        filters: vec![(filter, opts.qos)],
                    };
                    encode(&Packet::Subscribe(subscribe), &mut c.output);
                    c.phase = Phase::Subscribing;
                }
                None => c.phase = Phase::Ready,
            }
        }
        Packet::Suback(ack) => {
            if ack.codes.contains(&SubackCode::Failure) {
                return Err("SUBSCRIBE refused".to_string());
            }
            if c.phase == Phase::Subscribing {
                c.phase = Phase::Ready;
            } else {
                stats.protocol_errors += 1;
            }
        }
        Packet::Publish(publish) => {
            let Role::Subscriber(sub) = &mut c.role else {
                stats.protocol_errors += 1;
                return Ok(());
            };
            stats.received += 1;
            stats.last_delivery = Some(Instant::now());
            let tracker = read_stamp(&publish.payload).and_then(|stamp| {
                let i = stamp.publisher.checked_sub(sub.first_pub)? as usize;
                Some((stamp, sub.trackers.get_mut(i)?))
            });
            match tracker {
                Some((stamp, tracker)) => {
                    tracker.record(stamp.seq);
                    if stats.received % every == 0 {
                        stats
                            .latencies_ns
                            .push(now_ns.saturating_sub(stamp.sent_ns));
                    }
                }
                None => stats.foreign += 1,
            }
            match (publish.qos, publish.packet_id) {
                (QoS::AtLeastOnce, Some(id)) => encode(&Packet::Puback(id), &mut c.output),
                (QoS::ExactlyOnce, Some(id)) => encode(&Packet::Pubrec(id), &mut c.output),
                _ => {}
            }
        }
        Packet::Pubrel(id) => encode(&Packet::Pubcomp(id), &mut c.output),
        Packet::Puback(id) | Packet::Pubcomp(id) => {
            let ok = match &mut c.role {
                Role::Publisher(p) => p.window.complete(id.get(), opts.qos),
                _ => false,
            };
            if !ok {
                stats.protocol_errors += 1;
            }
        }
        Packet::Pubrec(id) => {
            let ok = match &mut c.role {
                Role::Publisher(p) if opts.qos == QoS::ExactlyOnce => p.window.received(id.get()),
                _ => false,
            };
            if ok {
                encode(&Packet::Pubrel(id), &mut c.output);
            } else {
                stats.protocol_errors += 1;
            }
        }
        Packet::Pingresp | Packet::Unsuback(_) => {}
        other => return Err(format!("unexpected {} from the broker", other.name())),
    }
    Ok(())
}
