//! The security keys of `sol.conf`: the TLS listener, who may connect, and
//! what they may do.
//!
//! This module owns parsing those ten keys and the rules that tie them
//! together (`tls_port` needs `certfile` and `keyfile`, `require_certificate`
//! needs `cafile`, ...). Like the rest of [`crate::config`] it reads no file:
//! a path is stored with the line that named it, so that whoever reads the
//! file later (the TLS set-up, the password and ACL loaders) can report a
//! problem in it against that line.
//!
//! Explained in docs/12-tls-and-auth.md.

use std::fmt;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// A file named in the config, and the line that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPath {
    pub path: PathBuf,
    /// The 1-based config line; 0 when the path was set in code (tests).
    pub line: usize,
}

impl ConfigPath {
    /// A path set in code rather than read from a file.
    pub fn new(path: impl Into<PathBuf>) -> ConfigPath {
        ConfigPath {
            path: path.into(),
            line: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error about this file, on the config line that named it:
    /// `line 7: password_file /etc/sol/passwd: line 3: expected username:hash`.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::new(
            self.line,
            format!("{key} {}: {message}", self.path.display()),
        )
    }
}

/// Which TLS versions the listener offers. Nothing older than 1.2 exists
/// here: rustls does not implement it, and neither should anyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsProtocols {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for TlsProtocols {
    fn default() -> TlsProtocols {
        TlsProtocols {
            tls12: true,
            tls13: true,
        }
    }
}

impl fmt::Display for TlsProtocols {
    /// The spelling `tls_protocols` takes: `tlsv1_2,tlsv1_3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [(self.tls12, "tlsv1_2"), (self.tls13, "tlsv1_3")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&names.join(","))
    }
}

/// The security settings, with their defaults: no TLS listener, anonymous
/// clients welcome, no password file, no ACL (everything allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `tls_port`: a TLS listener on `ip_address` at this port, beside the
    /// plain ones. Default none; 0 picks a free port.
    pub tls_port: Option<u16>,
    /// `certfile`: the server's certificate chain, PEM, leaf first.
    pub certfile: Option<ConfigPath>,
    /// `keyfile`: the server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub keyfile: Option<ConfigPath>,
    /// `cafile`: CA certificates, PEM, that client certificates must chain
    /// to. Without it, clients are not asked for a certificate.
    pub cafile: Option<ConfigPath>,
    /// `tls_protocols`: the TLS versions offered. Default both.
    pub tls_protocols: TlsProtocols,
    /// `require_certificate`: refuse TLS clients without a valid
    /// certificate. Default false.
    pub require_certificate: bool,
    /// `use_identity_as_username`: a TLS client's username is its
    /// certificate's subject CN, and it needs no password. Default false.
    pub use_identity_as_username: bool,
    /// `allow_anonymous`: let clients connect without a username. Default
    /// true, so that a broker with no password file works out of the box.
    pub allow_anonymous: bool,
    /// `password_file`: `username:$6$...` lines; usernames given in CONNECT
    /// must be in it, with their password.
    pub password_file: Option<ConfigPath>,
    /// `acl_file`: mosquitto-style topic rules. Without it, every client may
    /// do everything but write to `$SOL/...`.
    pub acl_file: Option<ConfigPath>,
}

impl Default for SecurityConfig {
    fn default() -> SecurityConfig {
        SecurityConfig {
            tls_port: None,
            certfile: None,
            keyfile: None,
            cafile: None,
            tls_protocols: TlsProtocols::default(),
            require_certificate: false,
            use_identity_as_username: false,
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
        }
    }
}

impl SecurityConfig {
    /// The rules between keys, checked once the whole file is read. `line`
    /// says where a key was set (`None`: not set). The TCP listener's port
    /// is passed when it runs, to catch both listeners on one port.
    pub(super) fn check(
        &self,
        line: impl Fn(&str) -> Option<usize>,
        tcp_port: Option<u16>,
    ) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| {
            errors.push(ConfigError::new(line(key).unwrap_or(0), message));
        };
        if self.tls_port.is_some() {
            for (key, set) in [
                ("certfile", self.certfile.is_some()),
                ("keyfile", self.keyfile.is_some()),
            ] {
                if !set {
                    error(
                        "tls_port",
                        format!("tls_port needs {} (and certfile and keyfile)", key),
                    );
                }
            }
            if let (Some(tls), Some(tcp)) = (self.tls_port, tcp_port) {
                if tls == tcp && tls != 0 {
                    error(
                        "tls_port",
                        format!("tls_port {tls} is also ip_port: TLS needs a port of its own"),
                    );
                }
            }
        } else {
            // A TLS setting without a TLS listener does nothing; that is
            // almost always a forgotten tls_port, better said now than
            // discovered when a client cannot connect.
            for key in [
                "certfile",
                "keyfile",
                "cafile",
                "tls_protocols",
                "require_certificate",
                "use_identity_as_username",
            ] {
                if line(key).is_some() {
                    error(key, format!("{} needs tls_port", key));
                }
            }
        }
        if self.cafile.is_none() {
            for (key, on) in [
                ("require_certificate", self.require_certificate),
                ("use_identity_as_username", self.use_identity_as_username),
            ] {
                if on && self.tls_port.is_some() {
                    error(
                        key,
                        format!(
                            "{} needs cafile: client certificates are verified against it",
                            key
                        ),
                    );
                }
            }
        }
        errors
    }
}

/// The TLS settings of one listener, whichever way it was configured: the
/// flat keys' `tls_port` listener ([`SecurityConfig::tls`]) or a `listener`
/// block that sets `certfile` ([`ListenerConfig::tls`](super::ListenerConfig::tls)).
/// One struct for both, so the network layer sets up every TLS listener the
/// same way. In a config that parsed, `certfile` and `keyfile` are both set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `certfile`: the server's certificate chain, PEM, leaf first.
    pub certfile: Option<ConfigPath>,
    /// `keyfile`: the server's private key, PEM.
    pub keyfile: Option<ConfigPath>,
    /// `cafile`: CA certificates client certificates must chain to; without
    /// it, clients are not asked for one.
    pub cafile: Option<ConfigPath>,
    /// `tls_protocols`: the TLS versions offered. Default both.
    pub tls_protocols: TlsProtocols,
    /// `require_certificate`: refuse clients without a valid certificate.
    pub require_certificate: bool,
    /// `use_identity_as_username`: a client's username is its certificate's
    /// subject CN.
    pub use_identity_as_username: bool,
}

impl SecurityConfig {
    /// The `tls_port` listener's settings as a [`TlsConfig`], the struct a
    /// `listener` block fills; `None` without `tls_port`.
    pub fn tls(&self) -> Option<TlsConfig> {
        self.tls_port?;
        Some(TlsConfig {
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
            cafile: self.cafile.clone(),
            tls_protocols: self.tls_protocols,
            require_certificate: self.require_certificate,
            use_identity_as_username: self.use_identity_as_username,
        })
    }
}

impl TlsConfig {
    /// The rules between a `listener` block's TLS keys, the flat rules
    /// with `certfile` in the place of `tls_port`: it is what makes the
    /// listener a TLS one. `line` says where the block set a key.
    pub(super) fn check(&self, line: impl Fn(&str) -> Option<usize>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| {
            errors.push(ConfigError::new(line(key).unwrap_or(0), message));
        };
        match (&self.certfile, &self.keyfile) {
            (Some(_), None) => error("certfile", "certfile needs keyfile".to_string()),
            (None, Some(_)) => error("keyfile", "keyfile needs certfile".to_string()),
            _ => {}
        }
        if self.certfile.is_none() {
            for key in [
                "cafile",
                "tls_protocols",
                "require_certificate",
                "use_identity_as_username",
            ] {
                if line(key).is_some() {
                    error(key, format!("{key} needs certfile and keyfile"));
                }
            }
        } else if self.cafile.is_none() {
            for (key, on) in [
                ("require_certificate", self.require_certificate),
                ("use_identity_as_username", self.use_identity_as_username),
            ] {
                if on {
                    error(
                        key,
                        format!("{key} needs cafile: client certificates are verified against it"),
                    );
                }
            }
        }
        errors
    }
}

/// `tlsv1_2`, `tlsv1_3` or both, separated by commas or blanks, in any case.
pub(super) fn parse_protocols(value: &str) -> Result<TlsProtocols, String> {
    let mut protocols = TlsProtocols {
        tls12: false,
        tls13: false,
    };
    for word in value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|word| !word.is_empty())
    {
        match word.to_ascii_lowercase().as_str() {
            "tlsv1_2" => protocols.tls12 = true,
            "tlsv1_3" => protocols.tls13 = true,
            "sslv3" | "tlsv1" | "tlsv1_0" | "tlsv1_1" => {
                return Err(format!(
                    "`{}` is too old to be safe: only tlsv1_2 and tlsv1_3 are supported",
                    word.escape_debug()
                ))
            }
            _ => {
                return Err(format!(
                    "`{}` is not a TLS version (tlsv1_2 or tlsv1_3)",
                    word.escape_debug()
                ))
            }
        }
    }
    if !protocols.tls12 && !protocols.tls13 {
        return Err("name tlsv1_2, tlsv1_3 or both".to_string());
    }
    Ok(protocols)
}

#[cfg(test)]
mod tests {
    use super::super::keys::KEYS;
    use super::super::Config;
    use super::*;

    /// The config of a text that must parse.
    fn parse(text: &str) -> Config {
        match Config::parse(text) {
            Ok(config) => config,
            Err(errors) => panic!("{text:?}: {errors:?}"),
        }
    }

    /// The errors of a text that must not parse, as `line: message`.
    fn errors(text: &str) -> Vec<String> {
        Config::parse(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const TLS: &str = "tls_port 8883\ncertfile /etc/sol/cert.pem\nkeyfile /etc/sol/key.pem\n";

    #[test]
    fn the_defaults_are_open_and_without_tls() {
        let security = parse("").security;
        assert_eq!(security, SecurityConfig::default());
        assert_eq!(security.tls_port, None);
        assert!(security.allow_anonymous);
        assert!(!security.require_certificate);
        assert!(!security.use_identity_as_username);
        assert_eq!(security.password_file, None);
        assert_eq!(security.acl_file, None);
        assert_eq!(security.tls_protocols.to_string(), "tlsv1_2,tlsv1_3");
    }

    #[test]
    fn every_security_key_is_read_with_its_line() {
        let text = "\
tls_port 8883
certfile /etc/sol/cert.pem
keyfile /etc/sol/key.pem
cafile /etc/sol/ca.pem
tls_protocols tlsv1_3
require_certificate true
use_identity_as_username true
allow_anonymous false
password_file /etc/sol/passwd
acl_file /etc/sol/my acl#1
";
        let security = parse(text).security;
        let at = |path: &str, line| {
            Some(ConfigPath {
                path: PathBuf::from(path),
                line,
            })
        };
        assert_eq!(
            security,
            SecurityConfig {
                tls_port: Some(8883),
                certfile: at("/etc/sol/cert.pem", 2),
                keyfile: at("/etc/sol/key.pem", 3),
                cafile: at("/etc/sol/ca.pem", 4),
                tls_protocols: TlsProtocols {
                    tls12: false,
                    tls13: true
                },
                require_certificate: true,
                use_identity_as_username: true,
                allow_anonymous: false,
                password_file: at("/etc/sol/passwd", 9),
                acl_file: at("/etc/sol/my acl#1", 10),
            }
        );
        // Every key of the table that stores into the security settings is
        // in the text above.
        for key in KEYS {
            let Some(store) = key.broker else { continue };
            for value in ["true", "false", "8883"] {
                let mut config = Config::default();
                let _ = store(&mut config, value, 1);
                if config.security != SecurityConfig::default() {
                    assert!(text.contains(key.name), "{}", key.name);
                }
            }
        }
    }

    #[test]
    fn tls_protocols_take_commas_or_blanks_in_any_case() {
        let protocols = |value: &str| parse(&format!("{TLS}tls_protocols {value}")).security;
        for both in ["tlsv1_2,tlsv1_3", "tlsv1_3 tlsv1_2", "TLSv1_2 , tlsv1_3,"] {
            assert_eq!(
                protocols(both).tls_protocols,
                TlsProtocols::default(),
                "{both}"
            );
        }
        let only12 = protocols("tlsv1_2").tls_protocols;
        assert!(only12.tls12 && !only12.tls13);
        assert_eq!(only12.to_string(), "tlsv1_2");
        for (bad, why) in [
            ("tlsv1_1", "too old"),
            ("tlsv1", "too old"),
            ("sslv3,tlsv1_3", "too old"),
            ("tlsv1.2", "not a TLS version"),
            ("tls13", "not a TLS version"),
            (",", "tlsv1_2, tlsv1_3 or both"),
        ] {
            let found = errors(&format!("{TLS}tls_protocols {bad}"));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(found[0].starts_with("line 4: tls_protocols: "), "{found:?}");
            assert!(found[0].contains(why), "{bad}: {found:?}");
        }
    }

    #[test]
    fn booleans_are_true_or_false() {
        assert!(!parse("allow_anonymous false").security.allow_anonymous);
        assert!(parse("allow_anonymous true").security.allow_anonymous);
        for bad in ["yes", "1", "TRUE", "off"] {
            let found = errors(&format!("allow_anonymous {bad}"));
            assert_eq!(
                found,
                vec![format!(
                    "line 1: allow_anonymous: `{bad}` is not true or false"
                )]
            );
        }
    }

    #[test]
    fn tls_port_needs_a_certificate_and_a_key() {
        assert_eq!(
            errors("ip_port 1883\ntls_port 8883\n"),
            vec![
                "line 2: tls_port needs certfile (and certfile and keyfile)",
                "line 2: tls_port needs keyfile (and certfile and keyfile)",
            ]
        );
        assert_eq!(
            errors("tls_port 8883\ncertfile c.pem\n"),
            vec!["line 1: tls_port needs keyfile (and certfile and keyfile)"]
        );
        assert_eq!(parse(TLS).security.tls_port, Some(8883));
        assert_eq!(
            parse(&format!("{TLS}ip_port 0")).security.tls_port,
            Some(8883)
        );
        for bad in ["65536", "-1", "tls"] {
            let found = errors(&format!("tls_port {bad}\ncertfile c\nkeyfile k"));
            assert!(found[0].starts_with("line 1: tls_port: "), "{found:?}");
        }
    }

    #[test]
    fn tls_settings_without_tls_port_are_errors() {
        let found = errors(
            "certfile c.pem\nkeyfile k.pem\ncafile ca.pem\ntls_protocols tlsv1_3\n\
             require_certificate false\nuse_identity_as_username false\n",
        );
        assert_eq!(
            found,
            vec![
                "line 1: certfile needs tls_port",
                "line 2: keyfile needs tls_port",
                "line 3: cafile needs tls_port",
                "line 4: tls_protocols needs tls_port",
                "line 5: require_certificate needs tls_port",
                "line 6: use_identity_as_username needs tls_port",
            ]
        );
        // Authentication works without TLS.
        let plain = parse("allow_anonymous false\npassword_file p\nacl_file a\n");
        assert!(!plain.security.allow_anonymous);
    }

    #[test]
    fn client_certificate_settings_need_a_ca() {
        let found = errors(&format!(
            "{TLS}require_certificate true\nuse_identity_as_username true\n"
        ));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("line 4: require_certificate needs cafile"));
        assert!(found[1].starts_with("line 5: use_identity_as_username needs cafile"));
        // Off needs nothing; on with a CA is fine.
        parse(&format!("{TLS}require_certificate false"));
        let on = parse(&format!(
            "{TLS}cafile ca.pem\nrequire_certificate true\nuse_identity_as_username true"
        ));
        assert!(on.security.require_certificate && on.security.use_identity_as_username);
    }

    #[test]
    fn tls_and_tcp_cannot_share_a_port() {
        assert_eq!(
            errors(&format!("{TLS}ip_port 8883")),
            vec!["line 1: tls_port 8883 is also ip_port: TLS needs a port of its own"]
        );
        // Port 0 picks two different free ports; and without TCP there is
        // nothing to clash with.
        parse("tls_port 0\ncertfile c\nkeyfile k\nip_port 0");
        parse(&format!("{TLS}unix_socket /tmp/s.sock\n"));
        let found = errors(&format!("{TLS}unix_socket /tmp/s.sock\nip_port 8883"));
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn config_path_errors_name_the_key_the_path_and_the_line() {
        let path = ConfigPath {
            path: PathBuf::from("/etc/sol/passwd"),
            line: 7,
        };
        let error = path.error("password_file", "line 3: expected username:hash");
        assert_eq!(
            error.to_string(),
            "line 7: password_file /etc/sol/passwd: line 3: expected username:hash"
        );
        assert_eq!(ConfigPath::new("/x").line, 0);
    }
}
