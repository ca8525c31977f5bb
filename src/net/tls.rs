//! TLS inside the event loop: the rustls server configuration built from
//! `sol.conf`, and a non-blocking TLS stream the rest of the network layer
//! reads and writes like a socket.
//!
//! # How a TLS connection moves
//!
//! A [`TlsStream`] is a `rustls::Connection` (the TLS state machine, which
//! never touches a socket) over any non-blocking stream, TCP or Unix. It is
//! the server side when a listener accepted the stream ([`TlsAcceptor`]),
//! the client side when the broker dialled it ([`TlsConnector`]); the two
//! move the same way:
//!
//! - **Reading** takes TLS records off the socket (`read_tls`), lets rustls
//!   process them (`process_new_packets`: handshake messages, alerts, or
//!   application data) and hands out the plaintext. During the handshake a
//!   read gives no plaintext and ends with `WouldBlock`, exactly like an
//!   idle socket; what the handshake wants to send back waits inside rustls
//!   and the loop flushes it at the end of the turn ([`TlsStream::wants_write`]).
//! - **Writing** hands plaintext to rustls, which encrypts it into records,
//!   and pushes the records to the socket (`write_tls`) until it would
//!   block. rustls keeps at most 64 KiB of records waiting; past that a
//!   write takes nothing and reports `WouldBlock`, so the connection's own
//!   output buffer holds the rest, as it does for plain TCP.
//!
//! So the handshake is driven by readable and writable events like any
//! other traffic, for any number of clients at once, and a client that
//! stops halfway is closed by the connect timeout armed at accept, like a
//! client that never sends CONNECT.
//!
//! # What it must not know
//!
//! MQTT, or which socket is underneath. The core hears of TLS once,
//! through [`Broker::established`](crate::broker::Broker::established),
//! with the peer certificate's CN as a plain string.
//!
//! Explained in docs/12-tls-and-auth.md.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use log::{debug, info};
use rustls::crypto::ring;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::x509::subject_common_name;
use crate::config::{ConfigError, ConfigPath, TlsConfig};

/// The largest certificate or key file read. A real chain is a few
/// kilobytes; the cap makes a wrong path (a log, a disk image) fail fast.
pub(crate) const MAX_PEM_FILE: u64 = 1024 * 1024;

/// The most ciphertext one [`TlsStream::read`] takes off the socket without
/// finding a byte of plaintext. A handshake, client certificate chain
/// included, is a few kilobytes; a peer that goes on sending records that
/// carry nothing is closed rather than allowed to hold the loop.
const MAX_RECORDS_WITHOUT_DATA: usize = 256 * 1024;

/// Builds the rustls server configuration from one listener's TLS
/// settings: certificate chain and key, client certificate verification
/// against `cafile`, and the TLS versions. Each error names the config line
/// of the file it is about.
pub(crate) fn server_config(security: &TlsConfig) -> Result<Arc<ServerConfig>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let chain = match &security.certfile {
        Some(path) => load_certificates(path, "certfile")
            .map_err(|e| errors.push(e))
            .ok(),
        None => {
            errors.push(ConfigError {
                line: 0,
                message: "TLS needs certfile".to_string(),
            });
            None
        }
    };
    let key = match &security.keyfile {
        Some(path) => load_key(path).map_err(|e| errors.push(e)).ok(),
        None => {
            errors.push(ConfigError {
                line: 0,
                message: "TLS needs keyfile".to_string(),
            });
            None
        }
    };
    let roots = match &security.cafile {
        Some(path) => load_roots(path).map_err(|e| errors.push(e)).ok(),
        None => None,
    };
    let (Some(chain), Some(key)) = (chain, key) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }

    let provider = Arc::new(ring::default_provider());
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if security.tls_protocols.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if security.tls_protocols.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let whole = |message: String| vec![ConfigError { line: 0, message }];
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| whole(format!("tls_protocols: {e}")))?;
    let builder = match (roots, &security.cafile) {
        (Some(roots), Some(cafile)) => {
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            if !security.require_certificate {
                // Asked for, verified when sent, but not required: the
                // client may still log in with a password.
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| vec![cafile.error("cafile", e)])?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        let (Some(certfile), Some(keyfile)) = (&security.certfile, &security.keyfile) else {
            return whole(format!("the certificate and key: {e}"));
        };
        vec![certfile.error(
            "certfile",
            format!(
                "does not go with keyfile {} (line {}): {e}",
                keyfile.path.display(),
                keyfile.line
            ),
        )]
    })?;
    Ok(Arc::new(config))
}

/// Reads at most [`MAX_PEM_FILE`] bytes.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(format!("larger than {MAX_PEM_FILE} bytes"));
    }
    Ok(bytes)
}

/// Every certificate in a PEM file, in order; at least one.
fn load_certificates(
    path: &ConfigPath,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read_pem(&path.path).map_err(|e| path.error(key, e))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| path.error(key, format!("not valid PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(path.error(key, "no CERTIFICATE block in it"));
    }
    Ok(certificates)
}

fn load_key(path: &ConfigPath) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = read_pem(&path.path).map_err(|e| path.error("keyfile", e))?;
    // The error never quotes the file: it holds a secret.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        path.error(
            "keyfile",
            match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no PRIVATE KEY block in it (PKCS#8, RSA or EC)".to_string()
                }
                other => format!("not a valid PEM private key ({})", kind_of(&other)),
            },
        )
    })
}

/// A PEM error described without any of the file's bytes.
fn kind_of(error: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { .. } => "a block has no END line",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "bad base64",
        Error::Io(_) => "read error",
        _ => "malformed",
    }
}

fn load_roots(path: &ConfigPath) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates(path, "cafile")? {
        roots
            .add(certificate)
            .map_err(|e| path.error("cafile", format!("a certificate is not usable: {e}")))?;
    }
    Ok(roots)
}

/// What a TLS listener accepts with. On reload it is rebuilt from the same
/// settings; connections already open keep the configuration they
/// started with, new handshakes use the new one.
pub(crate) struct TlsAcceptor {
    config: Arc<ServerConfig>,
    security: TlsConfig,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("protocols", &self.security.tls_protocols.to_string())
            .finish()
    }
}

impl TlsAcceptor {
    /// The acceptor of the listener `security` describes: the flat keys'
    /// `tls_port` listener and a `listener` block are set up alike.
    pub(crate) fn new(security: &TlsConfig) -> Result<TlsAcceptor, Vec<ConfigError>> {
        Ok(TlsAcceptor {
            config: server_config(security)?,
            security: security.clone(),
        })
    }

    /// Starts the server side of a handshake on an accepted stream.
    pub(crate) fn accept<S: Read + Write>(&self, io: S) -> io::Result<TlsStream<S>> {
        let tls = ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(TlsStream::new(tls.into(), io))
    }

    /// Re-reads certfile, keyfile and cafile. On failure the configuration
    /// in use stays, and the errors are returned for the log.
    pub(crate) fn reload(&mut self) -> Result<(), Vec<ConfigError>> {
        self.config = server_config(&self.security)?;
        info!("Reloaded the TLS certificate files.");
        Ok(())
    }
}

/// What a dialled connection starts TLS with: the client side of
/// [`TlsAcceptor`]. The configuration (trusted CAs, a client certificate)
/// is built by whoever dials; reading it from `sol.conf` comes with the
/// first feature that dials over TLS.
// Only the tests build one until then.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct TlsConnector {
    config: Arc<ClientConfig>,
}

#[cfg_attr(not(test), allow(dead_code))]
impl TlsConnector {
    pub(crate) fn new(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector { config }
    }

    /// Starts the client side of a handshake on a dialled stream, with
    /// `server_name` (a DNS name or an IP address) the name the server's
    /// certificate must carry.
    pub(crate) fn connect<S: Read + Write>(
        &self,
        server_name: &str,
        io: S,
    ) -> io::Result<TlsStream<S>> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(TlsStream::new(tls.into(), io))
    }
}

/// A TLS session, either side, over a non-blocking stream. See the module
/// docs.
pub(crate) struct TlsStream<S> {
    tls: Connection,
    io: S,
    /// The end of the handshake has been reported by
    /// [`TlsStream::take_established`].
    established: bool,
}

impl<S: fmt::Debug> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("io", &self.io)
            .field("handshaking", &self.tls.is_handshaking())
            .finish()
    }
}

impl<S> TlsStream<S> {
    fn new(tls: Connection, io: S) -> TlsStream<S> {
        TlsStream {
            tls,
            io,
            established: false,
        }
    }

    /// rustls holds records to send: the loop must flush this connection
    /// even when it has no plaintext output of its own.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// `Some` once, when the handshake has just completed: the subject CN
    /// of the peer's certificate, if it sent one (rustls has verified it by
    /// then: a client's against `cafile`, a server's against the trusted
    /// CAs of the dialling side).
    pub(crate) fn take_established(&mut self) -> Option<Option<String>> {
        if self.established || self.tls.is_handshaking() {
            return None;
        }
        self.established = true;
        let common_name = self
            .tls
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| subject_common_name(leaf));
        debug!(
            "TLS handshake done: {:?}, {:?}",
            self.tls.protocol_version(),
            self.tls.negotiated_cipher_suite().map(|s| s.suite())
        );
        Some(common_name)
    }

    /// The stream underneath, to register it with the poll or shut it down.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: Read + Write> TlsStream<S> {
    /// Queues close_notify and sends it if the stream takes it now. The
    /// caller closes the stream underneath.
    pub(crate) fn close_notify(&mut self) {
        self.tls.send_close_notify();
        // Best effort: the socket may be full or gone.
        let _ = self.push();
    }

    /// Writes the records rustls holds until none are left or the stream
    /// would block.
    fn push(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.io) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    /// Plaintext if there is some; `Ok(0)` when the peer closed (with or
    /// without close_notify); `WouldBlock` when the socket is drained; an
    /// `InvalidData` error when the bytes are not TLS the server accepts
    /// (a plain MQTT client on the TLS port, a certificate that fails).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut records = 0usize;
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP stream ended without close_notify: for MQTT, whose
                // packets carry their own lengths, that is a plain close.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if records >= MAX_RECORDS_WITHOUT_DATA {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS records without application data past the limit",
                ));
            }
            match self.tls.read_tls(&mut self.io)? {
                0 => return Ok(0),
                n => records = records.saturating_add(n),
            }
            if let Err(error) = self.tls.process_new_packets() {
                // rustls queued an alert saying why; let the peer have it.
                let _ = self.push();
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push()?;
        let taken = self.tls.writer().write(buf)?;
        self.push()?;
        if taken == 0 && !buf.is_empty() {
            // rustls's buffer is full and the socket could not take it.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Pushes what rustls holds; `Ok` when the socket would block.
    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

#[cfg(test)]
mod tests;
