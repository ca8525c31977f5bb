//! Learn MQTT by reading sol: the `docs/` series, compiled.
//!
//! Each submodule below holds one post of the series as its documentation,
//! included from `docs/` with `include_str!`. This module has no code of its
//! own: it exists so that `cargo test --doc` compiles and runs every Rust
//! example in the posts against the real crate, and `cargo doc` renders the
//! series next to the API it explains. An example that drifts from the code
//! fails the build instead of misleading a reader.
//!
//! Start with the index, `docs/README.md`, or with [`what_mqtt_is`].

#[doc = include_str!("../docs/01-what-mqtt-is.md")]
pub mod what_mqtt_is {}

#[doc = include_str!("../docs/02-fixed-header.md")]
pub mod fixed_header {}

#[doc = include_str!("../docs/03-connect-sessions-keepalive.md")]
pub mod connect_sessions_keepalive {}

#[doc = include_str!("../docs/04-decoding-incrementally.md")]
pub mod decoding_incrementally {}

#[doc = include_str!("../docs/05-event-loop.md")]
pub mod event_loop {}

#[doc = include_str!("../docs/06-topics-and-the-trie.md")]
pub mod topics_and_the_trie {}

#[doc = include_str!("../docs/07-qos-step-by-step.md")]
pub mod qos_step_by_step {}

#[doc = include_str!("../docs/08-retained-and-wills.md")]
pub mod retained_and_wills {}

#[doc = include_str!("../docs/09-timer-wheel.md")]
pub mod timer_wheel {}

#[doc = include_str!("../docs/10-backpressure-and-limits.md")]
pub mod backpressure_and_limits {}

#[doc = include_str!("../docs/11-bad-input.md")]
pub mod bad_input {}

#[doc = include_str!("../docs/12-tls-and-auth.md")]
pub mod tls_and_auth {}

#[doc = include_str!("../docs/13-housekeeping.md")]
pub mod housekeeping {}

#[doc = include_str!("../docs/14-measuring-a-broker.md")]
pub mod measuring_a_broker {}
