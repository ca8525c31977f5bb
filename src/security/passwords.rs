//! Password files: who may connect, checked against SHA-512 crypt hashes.
//!
//! This module owns reading a password file into a [`PasswordFile`],
//! checking a CONNECT's username and password against it, and remembering
//! recent successes in a [`VerifyCache`]. It must not know about
//! connections, CONNACK codes or the clock: the broker decides what a failed
//! check means ([MQTT-3.1.4-5]: CONNACK 0x04 and close) and passes `now` in.
//!
//! # The file format
//!
//! ```text
//! # a comment: a line whose first non-blank character is '#'
//! alice:$6$Qn2bWcGf8V0n1o3Z$Jbt...86 characters...
//! bob:$6$rounds=10000$saltsalt$Kd0...86 characters...
//! ```
//!
//! - One `username:hash` per line. The username is everything before the
//!   first `:`, so it cannot contain one; the hash is everything after it.
//! - The hash is glibc's SHA-512 crypt, `$6$[rounds=N$]salt$hash`, as written
//!   by `openssl passwd -6`, `mkpasswd -m sha-512` and `passwd.py`. Nothing
//!   else is accepted: a plain-text password in the file is an error, not a
//!   password (run `passwd.py FILE` to hash every plain-text line in place).
//! - Blank lines and comments are skipped. A blank line is never a user with
//!   an empty name (mosquitto CVE-2018-12550).
//! - Any other line that is not well formed, and a username given twice, is an
//!   error. Parsing goes on after an error, so one run reports every mistake,
//!   each with its line number.
//!
//! # Secrets stay out of messages
//!
//! Errors name a line and say what is wrong with it; they never quote the
//! line, so neither a hash nor a password typed into the file by mistake ends
//! up in a log. `Debug` on a [`PasswordFile`] shows only how many users it
//! holds.
//!
//! Explained in docs/12-tls-and-auth.md.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha_crypt::{sha512_crypt_b64, Sha512Params, ROUNDS_DEFAULT, ROUNDS_MAX, ROUNDS_MIN};

use crate::LineError;

/// The largest password file [`PasswordFile::load`] reads. At about 120
/// bytes a line that is over a hundred thousand users; the cap exists so a
/// wrong path (a log, a disk image) fails fast instead of filling memory.
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// glibc truncates a longer salt to 16 characters when it hashes, so a
/// stored hash with a longer salt was not written by crypt(3).
const MAX_SALT_LEN: usize = 16;

/// A SHA-512 digest is 64 bytes: 21 groups of three bytes at four characters
/// each, plus one byte in two characters.
const HASH_LEN: usize = 86;

/// The crypt(3) alphabet, in the order of its digit values.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Checked in place of a stored hash when the username is unknown, so that
/// an unknown user costs the same 5000 rounds as a known one with the
/// default cost, and a client cannot tell which usernames exist by timing
/// its CONNECTs. The password behind it was random and was thrown away; the
/// result of the check is ignored anyway.
const DUMMY_HASH: &str = "$6$solDummySaltXYZ0$sbx.UNpl4cusRTQIVXdK8jFkN2yMQBg02qHnwM4zVefjHsx9ZAw04gJ1Gxw6f6gJuySM38Mf.uRtZrklXAZfS0";

/// Gives every parsed file its own number, so a [`VerifyCache`] notices
/// when it is handed a reloaded file and forgets what it knew.
static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

/// A stored `$6$` hash, split into what the check needs.
#[derive(Clone)]
struct Sha512Hash {
    params: Sha512Params,
    /// The cost, kept apart because `Sha512Params` does not show it.
    rounds: usize,
    salt: String,
    /// The 86 characters after the last `$`.
    hash: String,
}

impl Sha512Hash {
    /// Splits and validates `$6$[rounds=N$]salt$hash` as strictly as
    /// libxcrypt does. The error never quotes `text`.
    fn parse(text: &str) -> Result<Sha512Hash, &'static str> {
        let Some(rest) = text.strip_prefix("$6$") else {
            return Err(if text.starts_with('$') {
                "not a SHA-512 crypt hash: only $6$ hashes are supported"
            } else {
                "the password is not hashed: run passwd.py on this file"
            });
        };
        const SHAPE: &str = "a $6$ hash is $6$[rounds=N$]salt$hash";
        let fields: Vec<&str> = rest.split('$').collect();
        let (rounds, salt, hash) = match fields[..] {
            [salt, hash] => (ROUNDS_DEFAULT, salt, hash),
            [rounds, salt, hash] => match rounds.strip_prefix("rounds=") {
                Some(number) => (parse_rounds(number)?, salt, hash),
                None => return Err(SHAPE),
            },
            _ => return Err(SHAPE),
        };
        if salt.len() > MAX_SALT_LEN {
            return Err("the salt is longer than 16 characters");
        }
        if !salt.bytes().all(|b| CRYPT_ALPHABET.contains(&b)) {
            return Err("the salt has a character outside ./0-9A-Za-z");
        }
        if !is_canonical_hash(hash) {
            return Err("the hash is not 86 characters of ./0-9A-Za-z");
        }
        let params = Sha512Params::new(rounds).map_err(|_| "rounds out of range")?;
        Ok(Sha512Hash {
            params,
            rounds,
            salt: salt.to_string(),
            hash: hash.to_string(),
        })
    }

    /// Hashes `password` with this hash's salt and cost, and compares.
    fn matches(&self, password: &[u8]) -> bool {
        match sha512_crypt_b64(password, self.salt.as_bytes(), &self.params) {
            Ok(computed) => same_bytes(computed.as_bytes(), self.hash.as_bytes()),
            Err(_) => false,
        }
    }
}

/// `rounds=N` as crypt(3) writes it: decimal, no sign, no leading zero,
/// within 1000..=999999999. libxcrypt refuses anything else rather than
/// clamping it, and so do we: a typo should not silently change the cost.
fn parse_rounds(number: &str) -> Result<usize, &'static str> {
    const BAD: &str = "rounds= must be a number from 1000 to 999999999";
    if number.is_empty() || number.starts_with('0') || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    match number.parse::<usize>() {
        Ok(rounds) if (ROUNDS_MIN..=ROUNDS_MAX).contains(&rounds) => Ok(rounds),
        _ => Err(BAD),
    }
}

/// 86 characters of the crypt alphabet, the last one holding only the top
/// two bits of the final byte (so it is one of `./01`). Requiring the
/// canonical last character means comparing the encoded strings is the same
/// as comparing the digests.
fn is_canonical_hash(hash: &str) -> bool {
    let bytes = hash.as_bytes();
    let Some((&last, body)) = bytes.split_last() else {
        return false;
    };
    bytes.len() == HASH_LEN
        && body.iter().all(|b| CRYPT_ALPHABET.contains(b))
        && b"./01".contains(&last)
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a hash matched.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// A parsed password file: username to hash.
pub struct PasswordFile {
    users: HashMap<String, Sha512Hash>,
    /// Distinguishes this parse from every other one in the process.
    id: u64,
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish()
    }
}

impl PasswordFile {
    /// Parses the text of a password file.
    ///
    /// On failure returns every error found, in line order.
    pub fn parse(text: &str) -> Result<PasswordFile, Vec<LineError>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut users: HashMap<String, Sha512Hash> = HashMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut errors = Vec::new();

        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let Some((username, hash)) = content.split_once(':') else {
                errors.push(LineError::new(line, "expected username:hash"));
                continue;
            };
            if username.is_empty() {
                errors.push(LineError::new(line, "empty username"));
                continue;
            }
            if let Some(first) = first_line.get(username) {
                errors.push(LineError::new(
                    line,
                    format!("duplicate username: already on line {first}"),
                ));
                continue;
            }
            first_line.insert(username.to_string(), line);
            match Sha512Hash::parse(hash) {
                Ok(parsed) => {
                    users.insert(username.to_string(), parsed);
                }
                Err(message) => errors.push(LineError::new(line, message)),
            }
        }

        if errors.is_empty() {
            Ok(PasswordFile {
                users,
                id: NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed),
            })
        } else {
            Err(errors)
        }
    }

    /// Reads and parses a password file.
    ///
    /// A file that cannot be read (missing, a directory, no permission, over
    /// [`MAX_FILE_SIZE`]) gives one error on line 0 whose message names the
    /// path; bytes that are not UTF-8 give one error on the line where they
    /// are.
    pub fn load(path: &Path) -> Result<PasswordFile, Vec<LineError>> {
        let text = crate::textfile::read_text(path, "password file", MAX_FILE_SIZE)
            .map_err(|(line, message)| vec![LineError::new(line, message)])?;
        PasswordFile::parse(&text)
    }

    /// How many users the file defines.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file defines no user at all (then nobody can log in).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The highest `rounds=` of any user (5000 for a hash without one):
    /// what the slowest check costs. 0 for a file without users.
    pub fn max_rounds(&self) -> usize {
        self.users
            .values()
            .map(|hash| hash.rounds)
            .max()
            .unwrap_or(0)
    }

    /// Checks `password` for `username`.
    ///
    /// Costs one SHA-512 crypt at the stored hash's rounds: about a
    /// millisecond or more at the default 5000, on the caller's thread. An
    /// unknown user is checked against a fixed dummy hash at 5000 rounds and
    /// gets `false` in about the same time as a wrong password, so usernames
    /// cannot be probed by timing (unless a file raises `rounds=` above the
    /// default, which makes its users slower to check than unknown ones).
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.matches(password),
            None => {
                if let Ok(dummy) = Sha512Hash::parse(DUMMY_HASH) {
                    std::hint::black_box(dummy.matches(password));
                }
                false
            }
        }
    }
}

/// Remembers recent successful checks, so that a flood of CONNECTs with the
/// right password costs one SHA-512 crypt per user and TTL, not one per
/// CONNECT, on the broker's only thread.
///
/// # What it holds, and the trade-off
///
/// Each entry is a username and the exact password bytes that verified for
/// it, with the time of the check. Keeping the password itself is the price
/// of not depending on a hash function directly: the only alternative with
/// the crates at hand is to keep a crypt of it, which costs what we are
/// trying to save. The process already holds every hash, and the passwords
/// pass through its memory on each CONNECT anyway; the cache lengthens how
/// long they stay there to at most the TTL. Entries are never logged, and
/// `Debug` shows only the count.
///
/// # Bounds
///
/// - Only successes are stored, so a wrong password always costs a full
///   check, and a client cannot fill the cache with guesses: each entry is
///   a real user's real password, one entry per user.
/// - At most `capacity` users; the oldest check is evicted first.
/// - An entry older than `ttl` is not trusted: the next CONNECT checks the
///   hash again.
/// - Handing [`VerifyCache::check`] a different [`PasswordFile`] (a reload)
///   empties the cache first, so a changed or deleted password stops working
///   at once. [`VerifyCache::clear`] does the same by hand.
pub struct VerifyCache {
    capacity: usize,
    ttl: Duration,
    /// The [`PasswordFile`] the entries were checked against.
    file_id: Option<u64>,
    entries: HashMap<String, CachedSuccess>,
}

struct CachedSuccess {
    password: Vec<u8>,
    checked_at: Instant,
}

impl fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl VerifyCache {
    /// A cache of at most `capacity` users whose entries are trusted for
    /// `ttl`. A capacity of 0 caches nothing.
    pub fn new(capacity: usize, ttl: Duration) -> VerifyCache {
        VerifyCache {
            capacity,
            ttl,
            file_id: None,
            entries: HashMap::new(),
        }
    }

    /// Like [`PasswordFile::verify`], but answers from the cache when the
    /// same username and password verified against this same file less than
    /// `ttl` before `now`.
    pub fn check(
        &mut self,
        file: &PasswordFile,
        username: &str,
        password: &[u8],
        now: Instant,
    ) -> bool {
        if self.file_id != Some(file.id) {
            self.clear();
            self.file_id = Some(file.id);
        }
        if let Some(entry) = self.entries.get(username) {
            let fresh = now.saturating_duration_since(entry.checked_at) < self.ttl;
            if fresh && same_bytes(&entry.password, password) {
                return true;
            }
            if !fresh {
                self.entries.remove(username);
            }
        }
        if !file.verify(username, password) {
            return false;
        }
        self.remember(username, password, now);
        true
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.file_id = None;
    }

    /// How many users are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn remember(&mut self, username: &str, password: &[u8], now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(username) && self.entries.len() >= self.capacity {
            // A linear scan: it runs only after a full crypt, which costs a
            // thousand times more than walking a thousand entries.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.checked_at)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            username.to_string(),
            CachedSuccess {
                password: password.to_vec(),
                checked_at: now,
            },
        );
    }
}

#[cfg(test)]
mod tests;
