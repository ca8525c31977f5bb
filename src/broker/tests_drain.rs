//! Resends that flow out as a connection's output drains (`drain.rs`),
//! through the core, without a network: the [`Recorder`]'s `pending` grows
//! with every packet sent, as for a client that reads nothing, and each
//! test drains it by hand before it calls [`Broker::drained`].

use std::time::Duration;

use bytes::Bytes;

use super::test_support::{id, Harness};
use super::tests::connect;
use super::*;
use crate::protocol::{Publish, QoS, Subscribe, TopicFilter, TopicName};

/// A payload of this size puts the third message of a row past the mark:
/// each drain lets three through.
const BIG: usize = 400 * 1024;

/// A QoS 1 PUBLISH whose payload starts with its number `n`.
fn numbered(n: u8, pid: u16) -> Packet {
    let mut payload = vec![0u8; BIG];
    payload[0] = n;
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("t").unwrap(),
        packet_id: Some(id(pid)),
        payload: Bytes::from(payload),
    })
}

/// (number, packet id, DUP) of each PUBLISH among `packets`; anything else
/// fails the test.
fn seen(packets: &[Packet]) -> Vec<(u8, u16, bool)> {
    packets
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => (p.payload[0], p.packet_id.unwrap().get(), p.dup),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// A harness whose persistent session `sub` (subscribed to `t` at QoS 1,
/// with a window of `inflight + queued`) went offline holding `inflight`
/// unacknowledged messages (numbered from 1), then had `queued` more
/// queued. Returns the harness and the publisher's connection.
fn offline_with(inflight: u8, queued: u8, tweak: impl FnOnce(&mut Config)) -> (Harness, ConnId) {
    let mut config = Config {
        stats_publish_interval: Duration::ZERO,
        max_keepalive: 0,
        max_inflight_messages: usize::from(inflight + queued),
        ..Config::default()
    };
    tweak(&mut config);
    let mut h = Harness::with(config);
    let sub = h.connect(connect("sub", false), false);
    h.send(
        sub,
        Packet::Subscribe(Subscribe {
            packet_id: id(1),
            filters: vec![(TopicFilter::new("t").unwrap(), QoS::AtLeastOnce)],
        }),
    );
    h.take(sub);
    let publisher = h.connect(connect("pub", true), false);
    for n in 1..=inflight {
        h.send(publisher, numbered(n, u16::from(n)));
    }
    assert_eq!(seen(&h.take(sub)).len(), usize::from(inflight));
    h.drop_conn(sub);
    for n in inflight + 1..=inflight + queued {
        h.send(publisher, numbered(n, u16::from(n)));
    }
    h.take(publisher);
    (h, publisher)
}

impl Harness {
    /// A connection that takes the session of `sub` and reads nothing.
    fn come_back(&mut self) -> ConnId {
        self.out.count_pending = true;
        let conn = self.open();
        self.send(conn, Packet::Connect(Box::new(connect("sub", false))));
        let mut got = self.take(conn);
        assert!(matches!(got.first(), Some(Packet::Connack(c)) if c.session_present));
        got.remove(0);
        self.out.sent.insert(conn, got);
        conn
    }

    /// The client read everything: the network layer says so, if the core
    /// asked.
    fn drain(&mut self, conn: ConnId) -> Vec<Packet> {
        self.out.pending.insert(conn, 0);
        self.flushed();
        self.take(conn)
    }

    fn asked_to_hear(&self, conn: ConnId) -> bool {
        self.out.drain_wanted.contains(&conn)
    }
}

#[test]
fn a_resumed_window_goes_out_a_mark_at_a_time_in_order_with_dup() {
    let (mut h, _) = offline_with(6, 2, |_| {});
    let back = h.come_back();
    // The CONNACK, then resends only up to the mark.
    let first = seen(&h.take(back));
    assert_eq!(first, vec![(1, 1, true), (2, 2, true), (3, 3, true)]);
    assert!(h.asked_to_hear(back));
    assert!(h.out.pending[&back] < QOS0_OUTPUT_LIMIT + 2 * BIG);

    assert_eq!(
        seen(&h.drain(back)),
        vec![(4, 4, true), (5, 5, true), (6, 6, true)]
    );
    assert!(h.asked_to_hear(back));
    // The queued ones entered the window behind the resends: never sent
    // before, so no DUP, with ids of their own.
    let last = seen(&h.drain(back));
    assert_eq!(
        last.iter().map(|m| (m.0, m.2)).collect::<Vec<_>>(),
        [(7, false), (8, false)]
    );
    assert!(!h.asked_to_hear(back), "nothing left to wait for");
    assert!(h.drain(back).is_empty());
    assert_eq!(h.broker.stats().messages_sent, 6 + 8);
}

#[test]
fn new_messages_wait_behind_the_resends_and_acked_ones_are_skipped() {
    let (mut h, publisher) = offline_with(6, 0, |_| {});
    let back = h.come_back();
    assert_eq!(seen(&h.take(back)).len(), 3);
    // The client acknowledges 2 (sent just now) and 5 (from the old
    // connection, not resent yet): the window has room for a new message,
    // which must not overtake 4 and 6.
    h.send(back, Packet::Puback(id(2)));
    h.send(back, Packet::Puback(id(5)));
    h.send(publisher, numbered(9, 40));
    h.send(publisher, numbered(10, 41));
    assert!(h.take(back).is_empty(), "the output is still past the mark");
    let rest = seen(&h.drain(back));
    let order: Vec<_> = rest.iter().map(|m| (m.0, m.2)).collect();
    assert_eq!(order, [(4, true), (6, true), (9, false)]);
    let ids: Vec<_> = rest.iter().map(|m| m.1).collect();
    assert_eq!(&ids[..2], [4, 6], "original packet ids");
    assert_eq!(
        seen(&h.drain(back)).iter().map(|m| m.0).collect::<Vec<_>>(),
        [10]
    );
}

#[test]
fn a_takeover_storm_costs_each_connection_one_mark() {
    let (mut h, _) = offline_with(20, 0, |_| {});
    for _ in 0..50 {
        let conn = h.come_back();
        let got = seen(&h.take(conn));
        assert_eq!(got.len(), 3, "a mark's worth, not the window");
        assert_eq!(got[0], (1, 1, true), "each starts from the oldest");
    }
    // The last one reads: it gets the whole window, in order, each once.
    let last = h.come_back();
    let mut numbers: Vec<u8> = seen(&h.take(last)).iter().map(|m| m.0).collect();
    loop {
        let more = h.drain(last);
        if more.is_empty() {
            break;
        }
        numbers.extend(seen(&more).iter().map(|m| m.0));
    }
    assert_eq!(numbers, (1..=20).collect::<Vec<u8>>());
}

#[test]
fn a_drained_call_for_a_closed_or_unknown_connection_sends_nothing() {
    let (mut h, _) = offline_with(6, 0, |_| {});
    let back = h.come_back();
    h.take(back);
    h.drop_conn(back);
    h.broker.drained(back, h.now, &mut h.out);
    assert!(h.take(back).is_empty());
    let stranger = ConnId {
        key: 999,
        serial: 999,
    };
    h.broker.drained(stranger, h.now, &mut h.out);
    assert!(h.take(stranger).is_empty());
}

#[test]
fn a_connection_taken_over_before_its_flush_gets_no_resends() {
    let (mut h, _) = offline_with(20, 0, |_| {});
    // Two CONNECTs with the id in one turn: no flush, so no `drained`,
    // between them.
    let connect = || Packet::Connect(Box::new(connect("sub", false)));
    let first = h.open();
    h.broker.packet(first, connect(), h.now, &mut h.out);
    let second = h.open();
    h.broker.packet(second, connect(), h.now, &mut h.out);
    h.flushed();
    let to_first = h.take(first);
    assert_eq!(to_first.len(), 1, "only its CONNACK: {to_first:?}");
    assert!(h.is_closed(first));
    let to_second = h.take(second);
    assert!(matches!(to_second.first(), Some(Packet::Connack(_))));
    assert_eq!(seen(&to_second[1..]).len(), 20, "the window, once");
}

#[test]
fn overdue_resends_respect_the_mark_too() {
    let (mut h, _) = offline_with(6, 0, |c| c.retry_interval = Duration::from_secs(10));
    let back = h.come_back();
    assert_eq!(seen(&h.take(back)).len(), 3);
    let rest = h.drain(back);
    assert_eq!(seen(&rest).len(), 3);
    // The client read it all, acknowledged nothing: 10 s later every
    // message is overdue, and they go out a mark at a time again.
    h.out.pending.insert(back, 0);
    h.advance(Duration::from_secs(11));
    let again = seen(&h.take(back));
    assert_eq!(again, vec![(1, 1, true), (2, 2, true), (3, 3, true)]);
    assert!(h.asked_to_hear(back));
    assert_eq!(
        seen(&h.drain(back)),
        vec![(4, 4, true), (5, 5, true), (6, 6, true)]
    );
}
