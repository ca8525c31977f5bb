use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::protocol::TopicName;

fn message(n: u8, qos: QoS) -> Message {
    Message::new(
        TopicName::new("t").unwrap(),
        Bytes::from(vec![n]),
        qos,
        false,
    )
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

#[test]
fn window_then_queue_then_drop() {
    let mut s = Session::new("c", false, 2, 2);
    let now = Duration::ZERO;
    assert_eq!(
        s.push(message(1, QoS::AtLeastOnce), true, now, 0),
        Pushed::Send(id(1))
    );
    assert_eq!(
        s.push(message(2, QoS::AtLeastOnce), true, now, 0),
        Pushed::Send(id(2))
    );
    assert_eq!(
        s.push(message(3, QoS::AtLeastOnce), true, now, 0),
        Pushed::Queued
    );
    assert_eq!(
        s.push(message(4, QoS::AtLeastOnce), true, now, 0),
        Pushed::Queued
    );
    assert_eq!(
        s.push(message(5, QoS::AtLeastOnce), true, now, 0),
        Pushed::Dropped
    );
    assert_eq!(s.dropped, 1);
    assert_eq!(s.puback(id(1)), Ack::Done);
    assert_eq!(
        s.puback(id(1)),
        Ack::Unknown,
        "a second PUBACK for the same id is unknown"
    );
    let ready = s.fill_window(now);
    assert_eq!(ready, vec![(id(3), message(3, QoS::AtLeastOnce))]);
    assert_eq!(s.queued_len(), 1);
}

#[test]
fn offline_messages_wait_even_with_room() {
    let mut s = Session::new("c", false, 5, 5);
    let now = Duration::ZERO;
    assert_eq!(
        s.push(message(1, QoS::ExactlyOnce), false, now, 0),
        Pushed::Queued
    );
    assert_eq!(s.inflight_len(), 0);
    let ready = s.fill_window(now);
    assert_eq!(ready.len(), 1);
}

#[test]
fn an_acknowledgement_at_the_wrong_stage_changes_nothing() {
    let mut s = Session::new("c", false, 5, 5);
    let now = Duration::ZERO;
    s.push(message(1, QoS::AtLeastOnce), true, now, 0);
    assert_eq!(s.pubrec(id(1), now), Ack::Mismatch);
    assert_eq!(s.pubcomp(id(1)), Ack::Mismatch);
    assert_eq!(s.inflight_len(), 1);
    assert_eq!(s.puback(id(1)), Ack::Done);
    assert_eq!(s.pubrec(id(1), now), Ack::Unknown);
    assert_eq!(s.stored_bytes(), 0);
    // A PUBREC repeated after the PUBREL went out still fits.
    s.push(message(2, QoS::ExactlyOnce), true, now, 0);
    assert_eq!(s.pubrec(id(2), now), Ack::Done);
    assert_eq!(s.pubrec(id(2), now), Ack::Done);
    assert_eq!(s.pubcomp(id(2)), Ack::Done);
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn qos2_outgoing_handshake() {
    let mut s = Session::new("c", false, 5, 5);
    let now = Duration::ZERO;
    assert_eq!(
        s.push(message(1, QoS::ExactlyOnce), true, now, 0),
        Pushed::Send(id(1))
    );
    assert_eq!(
        s.pubcomp(id(1)),
        Ack::Mismatch,
        "PUBCOMP before PUBREC does not complete"
    );
    assert_eq!(s.puback(id(1)), Ack::Mismatch, "nor does a PUBACK");
    assert_eq!(s.pubrec(id(1), now), Ack::Done);
    assert_eq!(
        s.inflight().next().map(|(_, st)| st),
        Some(&Inflight::AwaitingPubcomp)
    );
    assert_eq!(s.pubcomp(id(1)), Ack::Done);
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn incoming_qos2_duplicates_are_recognised_until_pubrel() {
    let mut s = Session::new("c", false, 5, 5);
    assert!(s.incoming_qos2(id(7)));
    assert!(!s.incoming_qos2(id(7)));
    s.pubrel(id(7));
    assert!(s.incoming_qos2(id(7)));
}

#[test]
fn keep_messages_drops_what_may_no_longer_be_sent() {
    let now = Duration::ZERO;
    let mut s = Session::new("c", false, 3, 10);
    for n in 1..=3 {
        s.push(message(n, QoS::ExactlyOnce), true, now, 0);
    }
    for n in 4..=6 {
        s.push(message(n, QoS::AtLeastOnce), true, now, 0);
    }
    // Message 1 was received (PUBREC): it stays whatever `keep` says.
    assert_eq!(s.pubrec(id(1), now), Ack::Done);
    let dropped = s.keep_messages(|m| m.payload[0] % 2 == 0);
    // 3 (inflight) and 5 (queued) go; 1 awaits PUBCOMP and stays.
    assert_eq!(dropped, 2);
    let inflight: Vec<PacketId> = s.inflight().map(|(i, _)| i).collect();
    assert_eq!(inflight, vec![id(1), id(2)]);
    assert_eq!(s.queued_len(), 2);
    // What is left is counted: 2 (inflight), 4 and 6 (queued).
    assert_eq!(
        s.stored_bytes(),
        3 * message(2, QoS::AtLeastOnce).stored_size()
    );
    assert_eq!(s.pubcomp(id(1)), Ack::Done);
    // The freed room takes the queue in order.
    let ready: Vec<u8> = s
        .fill_window(now)
        .iter()
        .map(|(_, m)| m.payload[0])
        .collect();
    assert_eq!(ready, vec![4, 6]);
}

#[test]
fn packet_ids_skip_those_in_flight_and_wrap() {
    let mut s = Session::new("c", false, 3, 0);
    let now = Duration::ZERO;
    s.next_id = id(u16::MAX);
    assert_eq!(
        s.push(message(1, QoS::AtLeastOnce), true, now, 0),
        Pushed::Send(id(u16::MAX))
    );
    assert_eq!(
        s.push(message(2, QoS::AtLeastOnce), true, now, 0),
        Pushed::Send(id(1))
    );
    s.next_id = id(u16::MAX);
    assert_eq!(
        s.push(message(3, QoS::AtLeastOnce), true, now, 0),
        Pushed::Send(id(2))
    );
}

const SECOND: Duration = Duration::from_secs(1);

fn sized(topic: &str, payload: &[u8], qos: QoS) -> Message {
    Message::new(
        TopicName::new(topic).unwrap(),
        Bytes::copy_from_slice(payload),
        qos,
        false,
    )
}

#[test]
fn stored_bytes_follow_every_message_in_and_out() {
    let now = Duration::ZERO;
    let mut s = Session::new("c", false, 1, 10);
    let a = sized("a/b", b"hello", QoS::AtLeastOnce);
    let b = sized("c", &[0; 100], QoS::ExactlyOnce);
    let c = sized("d", b"", QoS::AtLeastOnce);
    assert_eq!(a.stored_size(), 3);
    assert_eq!(s.push(a.clone(), true, now, 0), Pushed::Send(id(1)));
    assert_eq!(s.push(b.clone(), true, now, 0), Pushed::Queued);
    assert_eq!(s.push(c.clone(), true, now, 0), Pushed::Queued);
    let all = a.stored_size() + b.stored_size() + c.stored_size();
    assert_eq!(s.stored_bytes(), all);
    assert_eq!(s.stored_len(), 3);

    // Moving from the queue into the window changes nothing.
    assert_eq!(s.puback(id(1)), Ack::Done);
    assert_eq!(s.stored_bytes(), all - a.stored_size());
    assert_eq!(s.fill_window(now), vec![(id(2), b.clone())]);
    assert_eq!(s.stored_bytes(), all - a.stored_size());

    // After PUBREC only the id is held.
    assert_eq!(s.pubrec(id(2), now), Ack::Done);
    assert_eq!(s.stored_bytes(), c.stored_size());
    assert_eq!(s.stored_len(), 1);
    assert_eq!(s.pubcomp(id(2)), Ack::Done);
    assert_eq!(s.stored_bytes(), c.stored_size());

    assert_eq!(s.drop_oldest_queued(), Some(c.stored_size()));
    assert_eq!(s.stored_bytes(), 0);
    assert_eq!(s.stored_len(), 0);
    assert_eq!(s.drop_oldest_queued(), None);
    assert_eq!(s.dropped, 1);
}

#[test]
fn the_oldest_queued_message_goes_first_and_inflight_never() {
    let t0 = Duration::ZERO;
    let mut s = Session::new("c", false, 1, 10);
    assert_eq!(
        s.push(message(1, QoS::AtLeastOnce), true, t0, 0),
        Pushed::Send(id(1))
    );
    assert_eq!(s.oldest_queued(), None);
    assert_eq!(
        s.drop_oldest_queued(),
        None,
        "nothing queued: the inflight one stays"
    );
    s.push(message(2, QoS::AtLeastOnce), true, t0 + SECOND, 7);
    s.push(message(3, QoS::AtLeastOnce), true, t0 + 2 * SECOND, 9);
    assert_eq!(s.oldest_queued(), Some(7));
    s.drop_oldest_queued();
    assert_eq!(s.oldest_queued(), Some(9));
    assert_eq!(s.puback(id(1)), Ack::Done);
    assert_eq!(
        s.fill_window(t0),
        vec![(id(2), message(3, QoS::AtLeastOnce))]
    );
    assert_eq!(s.inflight_len(), 1);
}

#[test]
fn overdue_messages_are_resent_once_per_interval() {
    let t0 = Duration::ZERO;
    let interval = 10 * SECOND;
    let mut s = Session::new("c", false, 3, 10);
    assert_eq!(s.next_overdue(interval), None);
    s.push(message(1, QoS::AtLeastOnce), true, t0, 0);
    s.push(message(2, QoS::ExactlyOnce), true, t0 + 2 * SECOND, 0);
    s.push(message(3, QoS::ExactlyOnce), true, t0 + 4 * SECOND, 0);
    assert_eq!(s.pubrec(id(3), t0 + 5 * SECOND), Ack::Done);
    assert_eq!(s.next_overdue(interval), Some(t0 + interval));

    assert_eq!(s.take_overdue(t0 + 9 * SECOND, interval), vec![]);
    assert_eq!(
        s.take_overdue(t0 + 12 * SECOND, interval),
        vec![
            Resend::Publish(id(1), message(1, QoS::AtLeastOnce)),
            Resend::Publish(id(2), message(2, QoS::ExactlyOnce)),
        ]
    );
    // Sent again just now: not again before another interval.
    assert_eq!(s.take_overdue(t0 + 14 * SECOND, interval), vec![]);
    assert_eq!(s.next_overdue(interval), Some(t0 + 15 * SECOND));
    assert_eq!(
        s.take_overdue(t0 + 15 * SECOND, interval),
        vec![Resend::Pubrel(id(3))]
    );
    assert_eq!(s.puback(id(1)), Ack::Done);
    assert_eq!(s.next_overdue(interval), Some(t0 + 22 * SECOND));
    s.resent(t0 + 30 * SECOND);
    assert_eq!(s.next_overdue(interval), Some(t0 + 40 * SECOND));
}

#[test]
fn a_message_keeps_what_it_says_and_not_the_hop_it_came_on() {
    use crate::protocol::{Publish, Will};

    let publish = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: TopicName::new("a/b").unwrap(),
        packet_id: Some(id(9)),
        payload: Bytes::from_static(b"x"),
    };
    let message = Message::from(publish.clone());
    assert_eq!(message.origin, Origin::Broker);
    assert_eq!(message.properties, None, "MQTT 3.1.1 has no properties");
    assert_eq!(
        message.to_publish(Some(id(9)), true),
        publish,
        "dup and packet id belong to the hop"
    );
    let message = message.from_origin(Origin::Client(4));
    let copy = message.copy_at(QoS::AtLeastOnce, false);
    assert_eq!((copy.qos, copy.retain), (QoS::AtLeastOnce, false));
    assert_eq!(copy.origin, Origin::Client(4), "a copy keeps its origin");
    assert!(copy.payload.as_ptr() == message.payload.as_ptr(), "shared");

    let will = Will {
        topic: TopicName::new("w").unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
    };
    let message = Message::from(will);
    assert_eq!(
        (message.topic.as_str(), message.qos, message.retain),
        ("w", QoS::AtLeastOnce, true)
    );
    assert_eq!(message.stored_size(), 1);
}

#[test]
fn a_restored_session_takes_its_limits_and_its_clock_from_the_new_run() {
    let interval = 10 * SECOND;
    let mut s = Session::new("c", false, 1, 1);
    // Written out by a run that had been up for an hour.
    s.push(message(1, QoS::AtLeastOnce), true, 3600 * SECOND, 41);
    s.push(message(2, QoS::AtLeastOnce), true, 3600 * SECOND, 42);
    assert_eq!(s.next_overdue(interval), Some(3610 * SECOND));
    // Read back by a run two seconds old, configured with a wider window.
    s.resent(2 * SECOND);
    s.set_limits(2, 1);
    assert_eq!(s.next_overdue(interval), Some(12 * SECOND));
    assert_eq!(s.oldest_queued(), Some(42));
    assert_eq!(
        s.fill_window(2 * SECOND),
        vec![(id(2), message(2, QoS::AtLeastOnce))]
    );
}

#[test]
fn a_queue_gives_its_room_back_as_it_drains_and_the_room_is_counted() {
    let now = Duration::ZERO;
    let mut s = Session::new("c", false, 1, 100_000);
    for n in 0..10_000u64 {
        assert_eq!(
            s.push(message(1, QoS::AtLeastOnce), false, now, n),
            Pushed::Queued
        );
    }
    let room = std::mem::size_of::<Queued>() * 10_000;
    assert!(s.held_bytes() >= s.stored_bytes() + room);

    // Reclaimed one by one down to nothing: the room goes with them.
    while s.drop_oldest_queued().is_some() {}
    let kept = std::mem::size_of::<std::collections::VecDeque<Queued>>()
        + super::lazy_deque::DEQUE_KEPT * std::mem::size_of::<Queued>();
    assert_eq!(s.stored_bytes(), 0);
    assert!(s.held_bytes() <= kept, "{} bytes held", s.held_bytes());

    // Drained into the window by a client that came back: the same.
    for n in 0..10_000u64 {
        s.push(message(1, QoS::AtLeastOnce), false, now, n);
    }
    while let [(id, _)] = s.fill_window(now)[..] {
        assert_eq!(s.puback(id), Ack::Done);
    }
    assert_eq!(s.queued_len(), 0);
    assert!(s.held_bytes() <= 2 * kept, "{} bytes held", s.held_bytes());
}

#[test]
fn packet_ids_stay_unique_through_wraps_and_acknowledgements_out_of_order() {
    // The window with its ids in order of allocation lets most ids be given
    // without a scan: checked here against the rule itself, no id in flight
    // twice, over several wraps of the 16-bit id space with acknowledgements
    // in random order.
    let mut rng = crate::test_rng::XorShift(0x05EE_D1D5);
    let mut s = Session::new("c", false, 100, 0);
    let mut given = 0u32;
    while given < 300_000 {
        if s.inflight_len() < 100 && rng.below(3) != 0 {
            match s.push(message(1, QoS::AtLeastOnce), true, Duration::ZERO, 0) {
                Pushed::Send(_) => given += 1,
                other => panic!("the window had room: {other:?}"),
            }
        } else if s.inflight_len() > 0 {
            let ids: Vec<PacketId> = s.inflight().map(|(id, _)| id).collect();
            // The first message stays unacknowledged for two wraps, so the
            // ids come round to it while it is still in flight; otherwise
            // mostly the oldest, as clients do, sometimes any of them.
            let held = usize::from(given < 140_000 && ids.len() > 1);
            let pick = if rng.below(4) == 0 {
                held + rng.below(ids.len() - held)
            } else {
                held
            };
            assert_eq!(s.puback(ids[pick]), Ack::Done);
        }
        let mut ids: Vec<u16> = s.inflight().map(|(id, _)| id.get()).collect();
        let len = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            len,
            "an id in flight twice after {given} messages"
        );
    }
}

#[test]
fn an_id_found_by_a_scan_after_a_wrap_is_not_given_twice() {
    // Two messages never acknowledged, the others one message late: after
    // the ids wrap, the scan gives an id between the stuck ones, and the
    // ids are no longer in order. No id may then be in flight twice.
    let mut s = Session::new("c", false, 100, 0);
    let mut late: Option<PacketId> = None;
    for n in 0..140_000u32 {
        let Pushed::Send(given) = s.push(message(1, QoS::AtLeastOnce), true, Duration::ZERO, 0)
        else {
            panic!("the window had room at message {n}");
        };
        if let Some(previous) = late.take() {
            assert_eq!(s.puback(previous), Ack::Done);
        }
        if n != 0 && n != 4 {
            late = Some(given);
        }
        let mut ids: Vec<u16> = s.inflight().map(|(id, _)| id.get()).collect();
        let len = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), len, "an id in flight twice at message {n}");
    }
}
