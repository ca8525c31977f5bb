//! TLS for the integration tests.
//!
//! - [`Pki`]: a CA, a server certificate for `localhost` and `127.0.0.1`,
//!   and client certificates with a chosen CN, made at test time with rcgen
//!   and written as PEM files to a fresh directory.
//! - [`Pki::enable`]: turns on sol's TLS listener in a test configuration.
//! - [`rumqttc_tls`]: the rumqttc transport for a [`super::Mqtt`] client.
//! - [`raw`] and [`handshake`]: a [`Raw`] byte-level client over TLS
//!   (rustls), for exact bytes and for handshakes that must fail.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use sol::config::{Config, ConfigPath};

use super::{unique_id, Raw, Stream, TIMEOUT};

/// A rustls client session over a blocking socket.
pub type ClientStream = StreamOwned<ClientConnection, TcpStream>;

/// Certificates for one test, as files. The directory goes on drop.
pub struct Pki {
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    /// A new CA with a server certificate; files `ca.pem`, `server.pem`,
    /// `server.key`.
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("sol-pki-{}", unique_id("")));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sol test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki { dir, ca, ca_key };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki.server_files("server");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server certificate for localhost and 127.0.0.1 as `NAME.pem` and
    /// `NAME.key`.
    pub fn server_files(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"], Some("sol test server"), true);
        self.write_pair(name, &cert, &key)
    }

    /// A client certificate with subject CN `cn`: (cert PEM, key PEM).
    pub fn client(&self, cn: &str) -> (String, String) {
        self.issue(&[], Some(cn), false)
    }

    /// A client certificate with subject CN `cn` as files `NAME.pem` and
    /// `NAME.key` (for mosquitto's --cert and --key).
    pub fn client_files(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.client(cn);
        self.write_pair(name, &cert, &key)
    }

    fn write_pair(&self, name: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let (cert_path, key_path) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    fn issue(&self, names: &[&str], cn: Option<&str>, server: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Turns on sol's TLS listener (port 0) with this server certificate;
    /// with `cafile`, client certificates are asked for and verified.
    pub fn enable(&self, config: &mut Config, cafile: bool) {
        config.security.tls_port = Some(0);
        config.security.certfile = Some(ConfigPath::new(self.path("server.pem")));
        config.security.keyfile = Some(ConfigPath::new(self.path("server.key")));
        if cafile {
            config.security.cafile = Some(ConfigPath::new(self.path("ca.pem")));
        }
    }

    /// A rustls client configuration trusting this CA, presenting a client
    /// certificate for `cn` when given.
    pub fn client_config(&self, cn: Option<&str>) -> Arc<ClientConfig> {
        self.client_config_with(cn.map(|cn| (self, cn)), rustls::DEFAULT_VERSIONS)
    }

    /// A rustls client configuration trusting this CA, offering only
    /// `versions`, presenting a certificate for a CN issued by a CA of its
    /// own choosing (this one, or another to be refused).
    pub fn client_config_with(
        &self,
        certificate: Option<(&Pki, &str)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots);
        let config = match certificate {
            Some((issuer, cn)) => {
                let (cert, key) = issuer.client(cn);
                builder
                    .with_client_auth_cert(
                        vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                    )
                    .unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The rumqttc transport for TLS to a broker using `pki`'s server
/// certificate, with a client certificate for `cn` when given.
pub fn rumqttc_tls(pki: &Pki, cn: Option<&str>) -> rumqttc::Transport {
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
        ca: pki.ca_pem().into_bytes(),
        alpn: None,
        client_auth: cn.map(|cn| {
            let (cert, key) = pki.client(cn);
            (cert.into_bytes(), key.into_bytes())
        }),
    })
}

/// A [`Raw`] client over TLS. The handshake happens on the first send or
/// read; use [`handshake`] to see it succeed or fail first.
pub fn raw(addr: SocketAddr, config: Arc<ClientConfig>) -> Raw {
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    sock.set_nodelay(true).unwrap();
    sock.set_write_timeout(Some(TIMEOUT)).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from(addr.ip().to_string()).unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    Raw {
        stream: Stream::Tls(Box::new(StreamOwned::new(conn, sock))),
        buffered: VecDeque::new(),
    }
}

/// Connects over TLS and completes the handshake, or returns the error that
/// ended it. With TLS 1.3 a server refuses a client certificate only after
/// the client's side of the handshake is done, so a refusal may also show
/// up on the first read instead: see [`refused`].
pub fn handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Raw> {
    let mut raw = raw(addr, config);
    if let Stream::Tls(tls) = &mut raw.stream {
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
    }
    Ok(raw)
}

/// Whether the broker refuses this TLS client: the handshake fails, or the
/// connection is closed before a CONNECT is answered.
pub fn refused(addr: SocketAddr, config: Arc<ClientConfig>) -> bool {
    let Ok(mut raw) = handshake(addr, config) else {
        return true;
    };
    if raw.try_send(&super::connect(&unique_id("tls"))).is_err() {
        return true;
    }
    let mut buf = [0u8; 4];
    match &mut raw.stream {
        Stream::Tls(tls) => !matches!(io::Read::read(tls, &mut buf), Ok(n) if n > 0),
        _ => unreachable!("raw() makes TLS streams"),
    }
}

/// The path as a string, for command lines.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}
