//! [`Mqtt`]: a well-behaved client (rumqttc) driven from a background
//! thread, so a test can call it like a simple blocking client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::{unique_id, QoS, TIMEOUT};

/// What the background thread of an [`Mqtt`] saw.
enum Seen {
    Packet(rumqttc::Packet),
    /// Our DISCONNECT has been written.
    Disconnected,
    /// The connection failed or was closed by the broker.
    Closed(String),
}

/// A rumqttc client whose event loop runs on its own thread, so a test can
/// call it like a simple blocking client. The loop stops at the first
/// connection error instead of reconnecting: a test wants to see the close.
pub struct Mqtt {
    pub client: rumqttc::Client,
    seen: Receiver<Seen>,
    publishes: VecDeque<rumqttc::Publish>,
    closed: Option<String>,
}

impl Mqtt {
    /// A clean session with default options; waits for CONNACK accepted.
    pub fn connect(addr: SocketAddr, client_id: &str) -> Mqtt {
        Mqtt::connect_with(addr, client_id, |_| {}).0
    }

    /// Connects with options set by `tweak`; waits for CONNACK and returns it.
    pub fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        tweak: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> (Mqtt, rumqttc::ConnAck) {
        let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        tweak(&mut options);
        let (client, mut connection) = rumqttc::Client::new(options, 2048);
        let (tx, seen) = mpsc::channel();
        thread::Builder::new()
            .name(format!("mqtt-{client_id}"))
            .spawn(move || {
                for event in connection.iter() {
                    let report = match event {
                        Ok(rumqttc::Event::Incoming(packet)) => Seen::Packet(packet),
                        Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                            let _ = tx.send(Seen::Disconnected);
                            return;
                        }
                        Ok(rumqttc::Event::Outgoing(_)) => continue,
                        Err(e) => {
                            let _ = tx.send(Seen::Closed(e.to_string()));
                            return;
                        }
                    };
                    if tx.send(report).is_err() {
                        return;
                    }
                }
            })
            .unwrap();
        let mut mqtt = Mqtt {
            client,
            seen,
            publishes: VecDeque::new(),
            closed: None,
        };
        let connack = mqtt.wait_for("CONNACK", |p| match p {
            rumqttc::Packet::ConnAck(c) => Some(c.clone()),
            _ => None,
        });
        assert_eq!(
            connack.code,
            rumqttc::ConnectReturnCode::Success,
            "CONNACK of {client_id}"
        );
        (mqtt, connack)
    }

    /// Waits for the next packet `pick` accepts, keeping PUBLISHes that
    /// arrive meanwhile for [`Mqtt::recv`].
    fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&rumqttc::Packet) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(why) = &self.closed {
                panic!("waiting for {what}: the connection is closed ({why})");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Packet(packet)) => {
                    if let Some(found) = pick(&packet) {
                        return found;
                    }
                    if let rumqttc::Packet::Publish(p) = packet {
                        self.publishes.push_back(p);
                    }
                }
                Ok(Seen::Disconnected) => self.closed = Some("we disconnected".to_string()),
                Ok(Seen::Closed(why)) => self.closed = Some(why),
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = Some("event loop ended".to_string())
                }
            }
        }
    }

    /// Subscribes and waits for the SUBACK; returns the granted QoS per filter
    /// (`None` for a failure code).
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<Option<QoS>> {
        self.client.subscribe(filter, qos).unwrap();
        self.wait_for("SUBACK", |p| match p {
            rumqttc::Packet::SubAck(s) => Some(
                s.return_codes
                    .iter()
                    .map(|c| match c {
                        rumqttc::SubscribeReasonCode::Success(q) => Some(*q),
                        rumqttc::SubscribeReasonCode::Failure => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).unwrap();
        self.wait_for("UNSUBACK", |p| match p {
            rumqttc::Packet::UnsubAck(_) => Some(()),
            _ => None,
        })
    }

    /// Queues a PUBLISH (rumqttc sends it and runs the QoS handshake).
    pub fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, qos, retain, payload).unwrap();
    }

    /// Publishes and, for QoS 1 and 2, waits until the broker finished its
    /// side (PUBACK, or PUBCOMP). A broker may deliver a QoS 2 message only
    /// when PUBREL arrives (the standard's method B, mosquitto's choice), so
    /// a test that orders later messages after it must wait for this.
    /// Only one acknowledged publish of this client may be outstanding.
    pub fn publish_done(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.publish(topic, qos, retain, payload);
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.wait_for("PUBACK", |p| match p {
                rumqttc::Packet::PubAck(_) => Some(()),
                _ => None,
            }),
            QoS::ExactlyOnce => self.wait_for("PUBCOMP", |p| match p {
                rumqttc::Packet::PubComp(_) => Some(()),
                _ => None,
            }),
        }
    }

    /// The next PUBLISH within `limit`, or `None`.
    pub fn recv_within(&mut self, limit: Duration) -> Option<rumqttc::Publish> {
        if let Some(p) = self.publishes.pop_front() {
            return Some(p);
        }
        let deadline = Instant::now() + limit;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Packet(rumqttc::Packet::Publish(p))) => return Some(p),
                Ok(Seen::Packet(_)) => {}
                Ok(Seen::Disconnected) => self.closed = Some("we disconnected".to_string()),
                Ok(Seen::Closed(why)) => self.closed = Some(why),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = Some("event loop ended".to_string())
                }
            }
        }
        None
    }

    /// The next PUBLISH; panics after [`TIMEOUT`].
    pub fn recv(&mut self) -> rumqttc::Publish {
        match self.recv_within(TIMEOUT) {
            Some(p) => p,
            None => panic!("no PUBLISH within {TIMEOUT:?} (closed: {:?})", self.closed),
        }
    }

    /// The next PUBLISH, asserted to have this topic and payload; returned for
    /// checks of QoS and flags.
    pub fn expect(&mut self, topic: &str, payload: &[u8]) -> rumqttc::Publish {
        let p = self.recv();
        assert_eq!(
            (p.topic.as_str(), p.payload.as_ref()),
            (topic, payload),
            "unexpected PUBLISH {p:?}"
        );
        p
    }

    /// Publishes a marker to `topic` (which this client must be subscribed
    /// to) and collects every PUBLISH that arrives before the marker comes
    /// back. A test that wants to show something was NOT delivered sends the
    /// marker after it: once the marker is back, the broker has routed
    /// everything published before it, so no sleep is needed. That holds when
    /// what must not arrive was published by this same client, or was
    /// acknowledged to its publisher before the marker was sent.
    pub fn drain_until_marker(&mut self, topic: &str) -> Vec<rumqttc::Publish> {
        let marker = format!("marker-{}", unique_id(""));
        self.publish(topic, QoS::AtLeastOnce, false, marker.clone());
        self.collect_until(topic, marker.as_bytes())
    }

    /// As [`Mqtt::drain_until_marker`], with the marker sent by `publisher`
    /// after whatever it published before.
    pub fn drain_until_marker_from(
        &mut self,
        publisher: &Mqtt,
        topic: &str,
    ) -> Vec<rumqttc::Publish> {
        let marker = format!("marker-{}", unique_id(""));
        publisher.publish(topic, QoS::AtLeastOnce, false, marker.clone());
        self.collect_until(topic, marker.as_bytes())
    }

    /// Collects every PUBLISH until one with this topic and payload arrives.
    pub fn collect_until(&mut self, topic: &str, payload: &[u8]) -> Vec<rumqttc::Publish> {
        let mut before = Vec::new();
        loop {
            let p = self.recv();
            if p.topic == topic && p.payload.as_ref() == payload {
                return before;
            }
            before.push(p);
        }
    }

    /// Waits until the broker closes this client's connection.
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Packet(rumqttc::Packet::Publish(p))) => self.publishes.push_back(p),
                Ok(Seen::Packet(_)) => {}
                Ok(Seen::Disconnected) => panic!("we disconnected before the broker closed"),
                Ok(Seen::Closed(why)) => self.closed = Some(why),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the broker did not close the connection within {TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = Some("event loop ended".to_string())
                }
            }
        }
    }

    /// Sends DISCONNECT and waits until it has been written.
    pub fn disconnect(self) {
        self.client.disconnect().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(Seen::Disconnected) => return,
                Ok(Seen::Packet(_)) => {}
                Ok(Seen::Closed(why)) => panic!("closed before DISCONNECT was sent: {why}"),
                Err(RecvTimeoutError::Timeout) => panic!("DISCONNECT not sent within {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("event loop ended before DISCONNECT"),
            }
        }
    }
}
