//! Who may connect and what each client may do, as files say it: the
//! password file ([`passwords`]) and the ACL file ([`acl`]), and
//! [`SecurityFiles`], the pair as the config names them.
//!
//! This module owns the two file formats, reading them with line-numbered
//! errors, checking a password against a stored hash, and the ACL's answer
//! to "may this client publish to, read from or subscribe to this topic?".
//!
//! It must not know about connections, sessions, packets, CONNACK codes or
//! the clock. The core's guard (`src/broker/guard.rs`) holds the loaded
//! files, asks them, and decides what a refusal means for the client; `now`
//! is passed in where a cache needs it. The files are read where the caller
//! says: once at start by the network layer, which hands them to the core,
//! and again by the core on a reload.
//!
//! Explained in docs/12-tls-and-auth.md.

pub mod acl;
pub mod passwords;
#[cfg(test)]
mod tests;

use crate::config::{ConfigError, ConfigPath, SecurityConfig};

use acl::AclFile;
use passwords::PasswordFile;

/// The most `rounds=` a password hash may ask for. SHA-512 crypt costs about
/// 0.18 µs a round in a release build: 100 000 rounds is some 18 ms, the
/// longest one check may hold up every other client.
pub const MAX_ROUNDS: usize = 100_000;

/// The password and ACL files, as loaded. `None` for a file the config does
/// not name: no password file takes any username as given, no ACL file
/// allows everything but writing `$SOL/...`.
#[derive(Debug, Default)]
pub struct SecurityFiles {
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
}

impl SecurityFiles {
    /// Reads the password and ACL files the config names. Every error names
    /// the config line that named the file and, after it, the line of the
    /// file that is wrong.
    pub fn load(security: &SecurityConfig) -> Result<SecurityFiles, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let passwords = match &security.password_file {
            None => None,
            Some(path) => load_passwords(path)
                .map_err(|found| errors.extend(found))
                .ok(),
        };
        let acl = match &security.acl_file {
            None => None,
            Some(path) => AclFile::load(&path.path)
                .map_err(|found| {
                    errors.extend(found.iter().map(|e| path.error("acl_file", e)));
                })
                .ok(),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SecurityFiles { passwords, acl })
    }

    /// What a broker whose files could not be read must run with: nobody
    /// can log in with a username (an empty password file) and nothing is
    /// allowed (an empty ACL). Never open access (mosquitto CVE-2017-7652).
    pub fn deny_all() -> SecurityFiles {
        SecurityFiles {
            passwords: PasswordFile::parse("").ok(),
            acl: Some(AclFile::default()),
        }
    }

    /// The password file, if the config names one.
    pub fn passwords(&self) -> Option<&PasswordFile> {
        self.passwords.as_ref()
    }

    /// The ACL file, if the config names one.
    pub fn acl(&self) -> Option<&AclFile> {
        self.acl.as_ref()
    }
}

/// Reads a password file and refuses hashes too costly to check on the loop.
fn load_passwords(path: &ConfigPath) -> Result<PasswordFile, Vec<ConfigError>> {
    let file = PasswordFile::load(&path.path).map_err(|found| {
        found
            .iter()
            .map(|e| path.error("password_file", e))
            .collect::<Vec<_>>()
    })?;
    if file.max_rounds() > MAX_ROUNDS {
        return Err(vec![path.error(
            "password_file",
            format!(
                "a hash asks for {} rounds; at most {MAX_ROUNDS} are allowed, \
                 because each check runs on the broker's only thread",
                file.max_rounds()
            ),
        )]);
    }
    Ok(file)
}
