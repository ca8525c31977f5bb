//! Byte builders: MQTT 3.1.1 packets written out by hand ([`connect`],
//! [`publish`], [`subscribe`], ...), from the standard's section 3.
//!
//! They deliberately share no code with sol's encoder: a test built on the
//! code it tests cannot fail.

/// The variable-length "remaining length" of the fixed header (§2.2.3).
pub fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string (§1.5.3), from raw bytes so tests can send
/// invalid UTF-8.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A will for [`Connect`].
#[derive(Clone, Debug)]
pub struct Will {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// A CONNECT packet, field by field, so tests can get any of them wrong.
#[derive(Clone, Debug)]
pub struct Connect {
    pub protocol_name: Vec<u8>,
    pub level: u8,
    pub client_id: Vec<u8>,
    pub clean: bool,
    pub keepalive: u16,
    pub will: Option<Will>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    /// OR-ed into the flags byte after the others, to set reserved or
    /// inconsistent bits.
    pub extra_flags: u8,
}

impl Connect {
    /// MQTT 3.1.1, clean session, keepalive 60 s.
    pub fn new(client_id: &str) -> Connect {
        Connect {
            protocol_name: b"MQTT".to_vec(),
            level: 4,
            client_id: client_id.as_bytes().to_vec(),
            clean: true,
            keepalive: 60,
            will: None,
            username: None,
            password: None,
            extra_flags: 0,
        }
    }

    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    pub fn keepalive(mut self, seconds: u16) -> Connect {
        self.keepalive = seconds;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Connect {
        self.will = Some(Will {
            topic: topic.as_bytes().to_vec(),
            payload: payload.to_vec(),
            qos,
            retain,
        });
        self
    }

    pub fn flags(&self) -> u8 {
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        flags | self.extra_flags
    }

    /// The body: variable header and payload, without the fixed header.
    pub fn body(&self) -> Vec<u8> {
        let mut body = string(&self.protocol_name);
        body.push(self.level);
        body.push(self.flags());
        body.extend(self.keepalive.to_be_bytes());
        body.extend(string(&self.client_id));
        if let Some(will) = &self.will {
            body.extend(string(&will.topic));
            body.extend(string(&will.payload));
        }
        if let Some(username) = &self.username {
            body.extend(string(username));
        }
        if let Some(password) = &self.password {
            body.extend(string(password));
        }
        body
    }

    pub fn bytes(&self) -> Vec<u8> {
        packet(0x10, &self.body())
    }
}

/// CONNECT for MQTT 3.1.1 with a clean session and keepalive 60 s.
pub fn connect(client_id: &str) -> Vec<u8> {
    Connect::new(client_id).bytes()
}

/// CONNACK as the broker must send it.
pub fn connack(session_present: bool, code: u8) -> Vec<u8> {
    vec![0x20, 0x02, session_present as u8, code]
}

/// PUBLISH; `id` is required exactly when `qos > 0`.
pub fn publish(topic: &str, payload: &[u8], qos: u8, retain: bool, id: Option<u16>) -> Vec<u8> {
    publish_raw(topic.as_bytes(), payload, qos, retain, false, id)
}

/// PUBLISH with every field under the test's control.
pub fn publish_raw(
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    id: Option<u16>,
) -> Vec<u8> {
    let first = 0x30 | ((dup as u8) << 3) | (qos << 1) | retain as u8;
    let mut body = string(topic);
    if let Some(id) = id {
        body.extend(id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

fn ack(first: u8, id: u16) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    vec![first, 0x02, hi, lo]
}

pub fn puback(id: u16) -> Vec<u8> {
    ack(0x40, id)
}

pub fn pubrec(id: u16) -> Vec<u8> {
    ack(0x50, id)
}

pub fn pubrel(id: u16) -> Vec<u8> {
    ack(0x62, id)
}

pub fn pubcomp(id: u16) -> Vec<u8> {
    ack(0x70, id)
}

pub fn unsuback(id: u16) -> Vec<u8> {
    ack(0xB0, id)
}

/// SUBSCRIBE with (filter, requested QoS) pairs.
pub fn subscribe(id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for (filter, qos) in filters {
        body.extend(string(filter.as_bytes()));
        body.push(*qos);
    }
    packet(0x82, &body)
}

pub fn suback(id: u16, codes: &[u8]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(codes);
    packet(0x90, &body)
}

pub fn unsubscribe(id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for filter in filters {
        body.extend(string(filter.as_bytes()));
    }
    packet(0xA2, &body)
}

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Bytes as `20 02 00 00`, for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 64 { " ..." } else { "" };
    format!("[{}{more}] ({} bytes)", shown.join(" "), bytes.len())
}
