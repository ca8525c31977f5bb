//! Helpers shared by the integration tests, one file per concern:
//!
//! - `broker.rs`: [`TestBroker`], sol on port 0 for one test (or the
//!   external broker named by `SOL_TEST_BROKER`).
//! - `packets.rs`: the byte builders ([`connect`], [`publish`],
//!   [`subscribe`], ...), written by hand from the standard and sharing no
//!   code with sol's encoder.
//! - `raw.rs`: [`Raw`], a client that sends and expects exact bytes.
//! - `mqtt.rs`: [`Mqtt`], a well-behaved client (rumqttc).
//! - `bystander.rs`: [`Bystander`] and [`with_bystander`], which prove the
//!   broker kept serving everyone else while a bad client was handled.
//! - `tls.rs`: certificates made at test time, and TLS for both clients.
//!
//! All but `tls` are re-exported here, so a test file needs only
//! `mod common;` and `use common::*;`. This file keeps what every helper
//! shares: [`TIMEOUT`] and names no two tests share.

// Every test file compiles its own copy of these helpers and uses a part of
// them: what one file leaves unused, another needs.
#![allow(dead_code)]

mod broker;
mod bystander;
mod mqtt;
mod packets;
mod raw;
pub mod tls;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Unused in some test files, like the helpers themselves.
#[allow(unused_imports)]
pub use {broker::*, bystander::*, mqtt::*, packets::*, raw::*, rumqttc::QoS};

/// How long a test waits for something that should happen. Only a failing test
/// waits this long, so it is generous for a loaded machine.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A client id no other test (in this process or an earlier run against the
/// same external broker) uses: at most 23 characters of `[0-9a-zA-Z]`, the
/// set every server must accept [MQTT-3.1.3-5]. `prefix` should be short.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    let seed = nanos ^ std::process::id().rotate_left(16);
    let prefix: String = prefix.chars().take(8).collect();
    let mut id = format!("{prefix}{seed:08x}{n}");
    id.truncate(23);
    id
}

/// A topic prefix no other test uses, so retained messages and wildcard
/// subscriptions of different tests never meet on a shared broker.
pub fn unique_topic(prefix: &str) -> String {
    format!("test/{}", unique_id(prefix))
}
