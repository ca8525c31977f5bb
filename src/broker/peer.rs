//! What the network layer tells the core about the other end of a
//! connection once it carries MQTT: where it is, over what, and what a TLS
//! handshake proved.
//!
//! Plain values only: no socket, no TLS library type, so that the core (and
//! a test driving it) never depends on how the bytes travel.

/// The other end of a connection, as the network layer knows it. Given to
/// [`Broker::established`](super::Broker::established) once per
/// connection, before its first byte of MQTT is decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo<'a> {
    /// For logs: `ip:port`, `unix:<path>` or `unix`.
    pub addr: &'a str,
    /// The socket under every layer.
    pub transport: Transport,
    /// What the TLS handshake proved, when the connection runs over TLS.
    pub tls: Option<TlsInfo>,
}

/// The kind of socket a connection runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Unix,
}

/// The outcome of a completed TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// The subject CN of the peer's verified certificate, if it sent one
    /// with a CN.
    pub common_name: Option<String>,
    /// The `use_identity_as_username` of the listener that accepted the
    /// connection: that CN is the client's username, and no password is
    /// asked for. Each listener has its own, so it travels with the
    /// connection rather than living in the core's settings.
    pub use_identity_as_username: bool,
}
