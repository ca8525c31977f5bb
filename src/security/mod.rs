//! Who may connect and what each client may do, as files say it: the
//! password file ([`passwords`]) and the ACL file ([`acl`]).
//!
//! This module owns the two file formats, reading them with line-numbered
//! errors, checking a password against a stored hash, and the ACL's answer
//! to "may this client publish to, read from or subscribe to this topic?".
//!
//! It must not know about connections, sessions, packets, CONNACK codes or
//! the clock. The core's guard (`src/broker/guard.rs`) holds the loaded
//! files, asks them, and decides what a refusal means for the client; `now`
//! is passed in where a cache needs it.
//!
//! Explained in docs/12-tls-and-auth.md.

pub mod acl;
pub mod passwords;
