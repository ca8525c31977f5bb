//! The TLS configuration from files, and [`TlsStream`] against a real rustls
//! client over loopback sockets, driven by hand the way the loop drives it.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::*;
use crate::config::{ConfigPath, TlsConfig, TlsProtocols};
use crate::net::stream::Socket;

/// A CA, a server certificate for localhost and 127.0.0.1, and a client
/// certificate, as PEM files in a fresh directory (removed on drop).
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("sol-tls-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sol unit test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki { dir, ca, ca_key };
        pki.write("ca.pem", &pki.ca.pem());
        let (cert, key) = pki.issue(&["localhost", "127.0.0.1"], None, true);
        pki.write("server.pem", &cert);
        pki.write("server.key", &key);
        pki
    }

    /// A certificate signed by the CA: (cert PEM, key PEM).
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
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, name: &str, text: &str) -> ConfigPath {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        ConfigPath { path, line: 7 }
    }

    fn path(&self, name: &str) -> ConfigPath {
        ConfigPath {
            path: self.dir.join(name),
            line: 7,
        }
    }

    fn security(&self, cafile: bool, require: bool) -> TlsConfig {
        TlsConfig {
            certfile: Some(self.path("server.pem")),
            keyfile: Some(self.path("server.key")),
            cafile: cafile.then(|| self.path("ca.pem")),
            require_certificate: require,
            ..TlsConfig::default()
        }
    }

    /// A client configuration trusting the CA, with a client certificate
    /// for `cn` when given.
    fn client(
        &self,
        cn: Option<&str>,
        protocols: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(protocols)
            .unwrap()
            .with_root_certificates(roots);
        let config = match cn {
            Some(cn) => {
                let (cert, key) = self.issue(&[], Some(cn), false);
                let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
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

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The server side as the loop has it over a TCP socket.
type ServerSide = TlsStream<mio::net::TcpStream>;

/// A loopback pair: the server end as the loop has it (non-blocking, mio,
/// inside a [`TlsStream`]) and the client end as a blocking std socket.
fn pair(acceptor: &TlsAcceptor) -> (ServerSide, StdTcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let server = acceptor
        .accept(mio::net::TcpStream::from_std(server))
        .unwrap();
    (server, client)
}

/// Reads from the server side until `done` holds, flushing what TLS wants
/// to send after each read, as one loop turn would. Returns the plaintext
/// read, or the error that ended the connection.
fn pump(
    server: &mut ServerSide,
    mut done: impl FnMut(&[u8], &mut ServerSide) -> bool,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut plaintext = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match server.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => plaintext.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        server.flush()?;
        if done(&plaintext, server) {
            return Ok(plaintext);
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("pump timed out with {} bytes read", plaintext.len());
}

#[test]
fn a_handshake_without_a_client_certificate_then_data_both_ways() {
    let pki = Pki::new("plain-handshake");
    let acceptor = TlsAcceptor::new(&pki.security(false, false)).unwrap();
    let (mut server, client) = pair(&acceptor);
    let config = pki.client(None, BOTH);
    let talker = thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), client);
        tls.write_all(b"hello").unwrap();
        let mut reply = [0u8; 5];
        tls.read_exact(&mut reply).unwrap();
        reply
    });
    let mut identity = None;
    let got = pump(&mut server, |data, s| {
        if let Some(cn) = s.take_established() {
            identity = Some(cn);
        }
        data.len() >= 5
    })
    .unwrap();
    assert_eq!(got, b"hello");
    // The handshake ended once, with no certificate.
    assert_eq!(identity, Some(None));
    assert_eq!(server.take_established(), None);
    assert_eq!(server.write(b"world").unwrap(), 5);
    server.flush().unwrap();
    assert_eq!(&talker.join().unwrap(), b"world");
}

#[test]
fn a_client_certificate_is_verified_and_its_cn_reported() {
    let pki = Pki::new("client-cert");
    let acceptor = TlsAcceptor::new(&pki.security(true, true)).unwrap();
    for protocol in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (mut server, client) = pair(&acceptor);
        let config = pki.client(Some("sensor-9"), &[protocol]);
        let talker = thread::spawn(move || {
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), client);
            tls.write_all(b"x").unwrap();
            let mut reply = [0u8; 1];
            tls.read_exact(&mut reply).unwrap();
        });
        let mut identity = None;
        pump(&mut server, |data, s| {
            if let Some(cn) = s.take_established() {
                identity = Some(cn);
            }
            !data.is_empty()
        })
        .unwrap();
        assert_eq!(identity, Some(Some("sensor-9".to_string())), "{protocol:?}");
        server.write_all(b"y").unwrap();
        server.flush().unwrap();
        talker.join().unwrap();
    }
}

#[test]
fn require_certificate_refuses_a_client_without_one() {
    let pki = Pki::new("require");
    let acceptor = TlsAcceptor::new(&pki.security(true, true)).unwrap();
    let (mut server, client) = pair(&acceptor);
    let config = pki.client(None, BOTH);
    let talker = thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), client);
        // TLS 1.3 clients learn of the refusal on their first read.
        let _ = tls.write_all(b"x");
        let mut reply = [0u8; 1];
        tls.read_exact(&mut reply).is_err()
    });
    let error = pump(&mut server, |_, _| false).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    assert!(talker.join().unwrap(), "the client was not refused");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new("other-ca");
    let stranger = Pki::new("stranger-ca");
    let acceptor = TlsAcceptor::new(&pki.security(true, false)).unwrap();
    let (mut server, client) = pair(&acceptor);
    // The stranger's client certificate, but trusting our server's CA.
    let (cert, key) = stranger.issue(&[], Some("mallory"), false);
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let config = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    );
    let talker = thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), client);
        let _ = tls.write_all(b"x");
        let mut reply = [0u8; 1];
        let _ = tls.read_exact(&mut reply);
    });
    let error = pump(&mut server, |_, _| false).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    talker.join().unwrap();
}

#[test]
fn plain_bytes_on_the_tls_port_are_an_error_not_a_hang() {
    let pki = Pki::new("plain-bytes");
    let acceptor = TlsAcceptor::new(&pki.security(false, false)).unwrap();
    let (mut server, mut client) = pair(&acceptor);
    // An MQTT CONNECT where a ClientHello should be.
    client
        .write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        .unwrap();
    let error = pump(&mut server, |_, _| false).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    server.close_notify();
    server.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    // The client sees an alert or the close, never a reply in MQTT.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.first().is_none_or(|&b| b == 0x15), "{rest:?}");
}

#[test]
fn a_peer_that_closes_mid_handshake_reads_as_end_of_stream() {
    let pki = Pki::new("closed");
    let acceptor = TlsAcceptor::new(&pki.security(false, false)).unwrap();
    let (mut server, mut client) = pair(&acceptor);
    // The first bytes of a TLS record header, then nothing.
    client.write_all(&[0x16, 0x03, 0x01]).unwrap();
    client.shutdown(std::net::Shutdown::Both).unwrap();
    let error = pump(&mut server, |_, _| false).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn writes_past_what_the_socket_takes_would_block_and_lose_nothing() {
    let pki = Pki::new("backpressure");
    let acceptor = TlsAcceptor::new(&pki.security(false, false)).unwrap();
    let (mut server, client) = pair(&acceptor);
    let config = pki.client(None, BOTH);
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), client);
        tls.write_all(b"go").unwrap();
        // Do not read until the server has filled everything up.
        wait.recv().unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("client read: {e}"),
            }
        }
        all
    });
    pump(&mut server, |data, _| data.len() >= 2).unwrap();
    // Fill the socket, rustls's buffer and then some: writes must end in
    // WouldBlock, having taken only part of what was offered.
    let chunk: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let mut sent = Vec::new();
    let mut blocked = false;
    for _ in 0..1000 {
        match server.write(&chunk) {
            Ok(n) => sent.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                blocked = true;
                break;
            }
            Err(e) => panic!("server write: {e}"),
        }
    }
    assert!(blocked, "64 MB went out without the socket filling up");
    assert!(server.wants_write());
    go.send(()).unwrap();
    // Drain as the loop would on writable events, then close.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.wants_write() {
        assert!(Instant::now() < deadline, "could not drain");
        server.flush().unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    server.close_notify();
    server.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    let received = reader.join().unwrap();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "the bytes differ");
}

#[test]
fn only_the_configured_versions_are_offered() {
    let pki = Pki::new("versions");
    let mut security = pki.security(false, false);
    security.tls_protocols = TlsProtocols {
        tls12: false,
        tls13: true,
    };
    let acceptor = TlsAcceptor::new(&security).unwrap();
    let (mut server, client) = pair(&acceptor);
    let config = pki.client(None, &[&rustls::version::TLS12]);
    let talker = thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), client);
        tls.write_all(b"x").is_err()
    });
    let error = pump(&mut server, |_, _| false).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(talker.join().unwrap(), "a TLS 1.2 client got through");
}

/// The single error message of a configuration that must fail.
fn config_error(security: &TlsConfig) -> String {
    let errors = server_config(security).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].to_string()
}

#[test]
fn files_that_do_not_load_are_named_with_their_config_line() {
    let pki = Pki::new("bad-files");
    assert!(server_config(&pki.security(true, false)).is_ok());

    let mut missing = pki.security(false, false);
    missing.certfile = Some(pki.path("nope.pem"));
    let message = config_error(&missing);
    assert!(message.starts_with("line 7: certfile "), "{message}");
    assert!(message.contains("nope.pem: cannot read it"), "{message}");

    let mut not_pem = pki.security(false, false);
    not_pem.certfile = Some(pki.write("text.pem", "just some text\n"));
    assert!(config_error(&not_pem).contains("no CERTIFICATE block"));

    let mut no_key = pki.security(false, false);
    no_key.keyfile = Some(pki.path("server.pem"));
    assert!(config_error(&no_key).contains("no PRIVATE KEY block"));

    // A key that is not the certificate's.
    let (_, other_key) = pki.issue(&["localhost"], None, true);
    let mut mismatch = pki.security(false, false);
    mismatch.keyfile = Some(pki.write("other.key", &other_key));
    let message = config_error(&mismatch);
    assert!(message.contains("does not go with keyfile"), "{message}");

    let mut bad_ca = pki.security(true, false);
    bad_ca.cafile = Some(pki.write("empty-ca.pem", ""));
    assert!(config_error(&bad_ca).starts_with("line 7: cafile "));

    let mut huge = pki.security(false, false);
    huge.certfile = Some(pki.write("huge.pem", &"#".repeat(MAX_PEM_FILE as usize + 1)));
    assert!(config_error(&huge).contains("larger than"));
}

#[test]
fn a_reload_that_fails_keeps_the_old_configuration() {
    let pki = Pki::new("reload");
    let mut acceptor = TlsAcceptor::new(&pki.security(false, false)).unwrap();
    let before = Arc::clone(&acceptor.config);
    pki.write("server.pem", "broken\n");
    assert!(acceptor.reload().is_err());
    assert!(Arc::ptr_eq(&before, &acceptor.config));
    // A good file is taken.
    let (cert, key) = pki.issue(&["localhost"], None, true);
    pki.write("server.pem", &cert);
    pki.write("server.key", &key);
    acceptor.reload().unwrap();
    assert!(!Arc::ptr_eq(&before, &acceptor.config));
}

/// Reads what `side` has and pushes what it wants to send, as one loop
/// turn does; appends the plaintext to `got`.
fn turn(side: &mut TlsStream<Socket>, got: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        match side.read(&mut buf) {
            Ok(0) => panic!("the other side closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    side.flush().unwrap();
}

#[test]
fn a_client_side_stream_handshakes_with_a_server_side_one_over_a_unix_socket() {
    let pki = Pki::new("client-side");
    let acceptor = TlsAcceptor::new(&pki.security(true, true)).unwrap();
    let connector = TlsConnector::new(pki.client(Some("bridge-1"), BOTH));
    let (a, b) = mio::net::UnixStream::pair().unwrap();
    let mut client = connector.connect("localhost", Socket::Unix(a)).unwrap();
    let mut server = acceptor.accept(Socket::Unix(b)).unwrap();
    // The client speaks first: its hello waits in rustls until flushed.
    assert!(client.wants_write());
    client.flush().unwrap();

    let (mut from_server, mut from_client) = (Vec::new(), Vec::new());
    let (mut client_saw, mut server_saw) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while client_saw.is_none() || server_saw.is_none() {
        assert!(Instant::now() < deadline, "the handshake did not finish");
        turn(&mut server, &mut from_client);
        turn(&mut client, &mut from_server);
        server_saw = server_saw.or_else(|| server.take_established());
        client_saw = client_saw.or_else(|| client.take_established());
    }
    // Each side reports the other's certificate: the server the client's
    // CN, the client the server's certificate, which has none.
    assert_eq!(server_saw, Some(Some("bridge-1".to_string())));
    assert_eq!(client_saw, Some(None));
    assert_eq!(client.take_established(), None, "reported once");

    assert_eq!(client.write(b"\x10\x00").unwrap(), 2);
    client.flush().unwrap();
    assert_eq!(server.write(b"\x20\x02\x00\x00").unwrap(), 4);
    server.flush().unwrap();
    while from_client.len() < 2 || from_server.len() < 4 {
        assert!(Instant::now() < deadline, "the data did not arrive");
        turn(&mut server, &mut from_client);
        turn(&mut client, &mut from_server);
    }
    assert_eq!(from_client, b"\x10\x00");
    assert_eq!(from_server, b"\x20\x02\x00\x00");

    // A close from the client reaches the server as the end of the stream.
    client.close_notify();
    client.get_mut().shutdown().unwrap();
    let mut buf = [0u8; 16];
    let end = loop {
        match server.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no end of stream");
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(end, 0);
}

#[test]
fn a_client_side_stream_refuses_a_server_name_that_is_no_name() {
    let pki = Pki::new("bad-name");
    let connector = TlsConnector::new(pki.client(None, BOTH));
    let (a, _b) = mio::net::UnixStream::pair().unwrap();
    let err = connector
        .connect("not a name!", Socket::Unix(a))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
