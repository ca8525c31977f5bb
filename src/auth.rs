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

/// One mistake in a password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    /// The 1-based line the mistake is on; 0 when it is about the file as a
    /// whole (it could not be read).
    pub line: usize,
    /// What is wrong. Never quotes the line: it may hold a password.
    pub message: String,
}

impl AuthError {
    fn new(line: usize, message: impl Into<String>) -> AuthError {
        AuthError {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for AuthError {
    /// `line N: message`; an error about the whole file (line 0) is just its
    /// message, which names the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for AuthError {}

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
    pub fn parse(text: &str) -> Result<PasswordFile, Vec<AuthError>> {
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
                errors.push(AuthError::new(line, "expected username:hash"));
                continue;
            };
            if username.is_empty() {
                errors.push(AuthError::new(line, "empty username"));
                continue;
            }
            if let Some(first) = first_line.get(username) {
                errors.push(AuthError::new(
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
                Err(message) => errors.push(AuthError::new(line, message)),
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
    pub fn load(path: &Path) -> Result<PasswordFile, Vec<AuthError>> {
        let text = crate::textfile::read_text(path, "password file", MAX_FILE_SIZE)
            .map_err(|(line, message)| vec![AuthError::new(line, message)])?;
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
mod tests {
    use super::*;

    // `openssl passwd -6 -salt somesalt secret`
    const OPENSSL_SECRET: &str = "$6$somesalt$JX0Uhce8rLRHbaqoSQDYsnTxsqcjCNNcrl79ieTwPGzEhxBEeJcsgDUWIOwc3sDvZN34ZJBWQep7.lcAuSesy/";
    // `openssl passwd -6 -salt 'rounds=10000$abc' secret`
    const OPENSSL_ROUNDS: &str = "$6$rounds=10000$abc$3DDOWZMNRRKDT142bUtYQRY52ycK/xshRXOQgIyt2QRXzLDnoPq6v4lO9bA3f/JhGz1mHrAh.QUDGHmaE5RxP.";
    // `openssl passwd -6 -salt 'rounds=1000$fastsalt' secret`: the cheapest
    // cost, for the tests that check many times.
    const FAST_SECRET: &str = "$6$rounds=1000$fastsalt$QUh6pcssLqL9TTIo8uuXvjOuE15BI8RaB407ulJHJSw7xoZdBHxJidPusc4FQzMxJMFEv99YlsyJ7QtdXDELg.";
    // `openssl passwd -6 -salt utf8salt -stdin` fed the bytes "päss w:rd".
    const OPENSSL_UTF8: &str = "$6$utf8salt$Y9R.IXTWr1ripK44LDFRIu8A8uwSY9UIlfPTSdjHWa.7QEXmYr6AUD8ZP.DIw0S6gcMbea38Y9uQHJXELn8J61";
    // glibc's crypt("", "$6$abc"): an empty password is still a password.
    const EMPTY_PASSWORD: &str = "$6$abc$mJP3a6FyA8uCnzRtlnNypPwjnvpi5TP9qOrInzrfDmwxUQG38PkpCPdqfTb8JQfAngapMxeim4AZ..hSdRRzD.";

    fn file(text: &str) -> PasswordFile {
        PasswordFile::parse(text).unwrap()
    }

    fn error_lines(text: &str) -> Vec<usize> {
        PasswordFile::parse(text)
            .unwrap_err()
            .iter()
            .map(|e| e.line)
            .collect()
    }

    #[test]
    fn verifies_openssl_hashes() {
        let f = file(&format!(
            "alice:{OPENSSL_SECRET}\nbob:{OPENSSL_ROUNDS}\ncarol:{OPENSSL_UTF8}\ndave:{EMPTY_PASSWORD}\n"
        ));
        assert_eq!(f.len(), 4);
        assert!(f.verify("alice", b"secret"));
        assert!(f.verify("bob", b"secret"));
        assert!(f.verify("carol", "päss w:rd".as_bytes()));
        assert!(f.verify("dave", b""));
    }

    #[test]
    fn refuses_wrong_passwords_and_unknown_users() {
        let f = file(&format!("alice:{OPENSSL_SECRET}\nbob:{OPENSSL_ROUNDS}\n"));
        assert!(!f.verify("alice", b"Secret"));
        assert!(!f.verify("alice", b"secret "));
        assert!(!f.verify("alice", b""));
        assert!(!f.verify("bob", b"secre"));
        assert!(!f.verify("carol", b"secret"));
        assert!(!f.verify("", b"secret"));
        // Usernames are compared exactly.
        assert!(!f.verify("Alice", b"secret"));
        assert!(!f.verify("alice ", b"secret"));
    }

    #[test]
    fn max_rounds_is_the_costliest_hash() {
        assert_eq!(file("").max_rounds(), 0);
        assert_eq!(file(&format!("a:{OPENSSL_SECRET}\n")).max_rounds(), 5000);
        let mixed = format!("a:{OPENSSL_SECRET}\nb:{OPENSSL_ROUNDS}\nc:{FAST_SECRET}\n");
        assert_eq!(file(&mixed).max_rounds(), 10_000);
        assert_eq!(file(&format!("c:{FAST_SECRET}\n")).max_rounds(), 1000);
    }

    #[test]
    fn the_dummy_hash_is_well_formed() {
        // If it were not, unknown users would be answered instantly.
        assert!(Sha512Hash::parse(DUMMY_HASH).is_ok());
    }

    #[test]
    fn blank_lines_and_comments_are_not_users() {
        let f = file(&format!(
            "\n   \n# alice:plain\n\t# comment\nalice:{OPENSSL_SECRET}\r\n\n"
        ));
        assert_eq!(f.len(), 1);
        assert!(!f.verify("", b""));
        assert!(!f.verify("", b"secret"));
        let empty = file("\n\n# nothing\n");
        assert!(empty.is_empty());
        assert!(!empty.verify("alice", b"secret"));
        let with_bom = file(&format!("\u{feff}alice:{OPENSSL_SECRET}"));
        assert!(with_bom.verify("alice", b"secret"));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_numbers() {
        let text = format!(
            "# header\n\
             alice:{OPENSSL_SECRET}\n\
             no colon here\n\
             :{OPENSSL_SECRET}\n\
             alice:{OPENSSL_ROUNDS}\n\
             bob:plaintext\n\
             \n\
             carol:$1$abc$def\n\
             dave:\n\
             erin:{OPENSSL_SECRET}\n"
        );
        let errors = PasswordFile::parse(&text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 8, 9]);
        assert!(errors[2].message.contains("line 2"), "{}", errors[2]);
        assert!(errors[3].message.contains("passwd.py"), "{}", errors[3]);
        assert!(errors[4].message.contains("$6$"), "{}", errors[4]);
        assert_eq!(errors[0].to_string(), "line 3: expected username:hash");
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let good_hash = OPENSSL_SECRET.rsplit('$').next().unwrap();
        let bad = [
            // Wrong number of fields.
            "$6$".to_string(),
            "$6$somesalt".to_string(),
            format!("$6$a$b${good_hash}"),
            format!("$6$rounds=5000${good_hash}"),
            // Rounds out of range or not as crypt(3) writes them.
            format!("$6$rounds=999$salt${good_hash}"),
            format!("$6$rounds=1000000000$salt${good_hash}"),
            format!("$6$rounds=05000$salt${good_hash}"),
            format!("$6$rounds=+5000$salt${good_hash}"),
            format!("$6$rounds=$salt${good_hash}"),
            format!("$6$rounds=99999999999999999999999$salt${good_hash}"),
            // Salt too long or outside the alphabet.
            format!("$6$abcdefghijklmnopq${good_hash}"),
            format!("$6$some-salt${good_hash}"),
            // Hash too short, too long, outside the alphabet, non-canonical.
            format!("$6$somesalt${}", &good_hash[1..]),
            format!("$6$somesalt${good_hash}x"),
            format!("$6$somesalt${}-", &good_hash[..85]),
            format!("$6$somesalt${}2", &good_hash[..85]),
            // Other schemes.
            "$5$salt$abc".to_string(),
            "$y$j9T$abc$def".to_string(),
            "$7$101$abc$def".to_string(),
        ];
        for hash in bad {
            assert!(Sha512Hash::parse(&hash).is_err(), "{hash}");
            assert_eq!(error_lines(&format!("u:{hash}")), vec![1], "{hash}");
        }
        // The largest legal salt and an empty one are fine.
        assert!(Sha512Hash::parse(&format!("$6$abcdefghijklmnop${good_hash}")).is_ok());
        assert!(Sha512Hash::parse(&format!("$6$${good_hash}")).is_ok());
    }

    #[test]
    fn errors_never_quote_the_file() {
        let secret_hash = OPENSSL_SECRET.replace("somesalt", "some-salt");
        let text =
            format!("hunter2\nalice:hunter2\nbob:{secret_hash}\nbob:{OPENSSL_SECRET}\n:hunter2\n");
        let errors = PasswordFile::parse(&text).unwrap_err();
        assert_eq!(errors.len(), 5);
        for error in errors {
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("some-salt"), "{shown}");
            assert!(!shown.contains("alice"), "{shown}");
            assert!(!shown.contains("bob"), "{shown}");
        }
        let f = file(&format!("alice:{OPENSSL_SECRET}"));
        assert_eq!(format!("{f:?}"), "PasswordFile { users: 1 }");
    }

    #[test]
    fn usernames_may_hold_anything_but_a_colon() {
        // A ':' in the rest of the line belongs to the hash, which then
        // fails, rather than to the name.
        assert_eq!(error_lines(&format!("a:b:{OPENSSL_SECRET}")), vec![1]);
        let f = file(&format!("dev ice/1+#:{OPENSSL_SECRET}"));
        assert!(f.verify("dev ice/1+#", b"secret"));
    }

    #[test]
    fn load_reads_files_and_reports_what_it_cannot() {
        let dir = std::env::temp_dir().join(format!("sol-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let good = dir.join("good");
        std::fs::write(&good, format!("alice:{FAST_SECRET}\n")).unwrap();
        assert!(PasswordFile::load(&good)
            .unwrap()
            .verify("alice", b"secret"));

        let missing = dir.join("missing");
        let errors = PasswordFile::load(&missing).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 0);
        assert!(errors[0].to_string().contains("missing"), "{}", errors[0]);

        let binary = dir.join("binary");
        std::fs::write(&binary, b"# ok\n# ok\nalice:\xff\xfe\n").unwrap();
        let errors = PasswordFile::load(&binary).unwrap_err();
        assert_eq!(errors[0].line, 3);

        let big = dir.join("big");
        let mut contents = vec![b'#'; MAX_FILE_SIZE as usize + 1];
        std::fs::write(&big, &contents).unwrap();
        let errors = PasswordFile::load(&big).unwrap_err();
        assert_eq!(errors[0].line, 0);
        assert!(errors[0].message.contains("larger"), "{}", errors[0]);
        contents.truncate(MAX_FILE_SIZE as usize);
        std::fs::write(&big, &contents).unwrap();
        assert!(PasswordFile::load(&big).unwrap().is_empty());

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cache_hits_skip_the_crypt_and_misses_do_not() {
        let f = file(&format!("alice:{FAST_SECRET}\nbob:{FAST_SECRET}\n"));
        let mut cache = VerifyCache::new(16, Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(cache.check(&f, "alice", b"secret", t0));
        assert_eq!(cache.len(), 1);
        assert!(cache.check(&f, "alice", b"secret", t0 + Duration::from_secs(1)));
        // Failures are answered, and not remembered.
        assert!(!cache.check(&f, "alice", b"wrong", t0));
        assert!(!cache.check(&f, "carol", b"secret", t0));
        assert!(!cache.check(&f, "bob", b"wrong", t0));
        assert_eq!(cache.len(), 1);
        // A wrong password does not evict the right one.
        assert!(cache.check(&f, "alice", b"secret", t0));
        // Another user's password is not alice's.
        assert!(cache.check(&f, "bob", b"secret", t0));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn cache_hits_are_served_without_the_file_agreeing() {
        // Proves a hit does not run the crypt: the cached entry answers even
        // for a password the file's hash would refuse. Only reachable by
        // poking an entry in, which `check` itself never does.
        let f = file(&format!("alice:{FAST_SECRET}\n"));
        let mut cache = VerifyCache::new(16, Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(cache.check(&f, "alice", b"secret", t0));
        cache.entries.get_mut("alice").unwrap().password = b"planted".to_vec();
        assert!(cache.check(&f, "alice", b"planted", t0));
        // And a miss does run it.
        assert!(cache.check(&f, "alice", b"secret", t0));
    }

    #[test]
    fn cache_entries_expire() {
        let f = file(&format!("alice:{FAST_SECRET}\n"));
        let ttl = Duration::from_secs(300);
        let mut cache = VerifyCache::new(16, ttl);
        let t0 = Instant::now();
        assert!(cache.check(&f, "alice", b"secret", t0));
        cache.entries.get_mut("alice").unwrap().password = b"planted".to_vec();
        assert!(cache.check(&f, "alice", b"planted", t0 + ttl - Duration::from_millis(1)));
        // Expired: the planted entry is no longer trusted, the file decides.
        assert!(!cache.check(&f, "alice", b"planted", t0 + ttl));
        assert!(cache.is_empty());
        assert!(cache.check(&f, "alice", b"secret", t0 + ttl));
        assert_eq!(cache.entries["alice"].checked_at, t0 + ttl);
    }

    #[test]
    fn cache_evicts_the_oldest_at_capacity() {
        let text: String = (0..4).map(|i| format!("u{i}:{FAST_SECRET}\n")).collect();
        let f = file(&text);
        let mut cache = VerifyCache::new(3, Duration::from_secs(300));
        let t0 = Instant::now();
        for i in 0..3u64 {
            let now = t0 + Duration::from_secs(i);
            assert!(cache.check(&f, &format!("u{i}"), b"secret", now));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.check(&f, "u3", b"secret", t0 + Duration::from_secs(10)));
        assert_eq!(cache.len(), 3);
        assert!(!cache.entries.contains_key("u0"));
        for name in ["u1", "u2", "u3"] {
            assert!(cache.entries.contains_key(name), "{name}");
        }
        let mut off = VerifyCache::new(0, Duration::from_secs(300));
        assert!(off.check(&f, "u0", b"secret", t0));
        assert!(off.is_empty());
    }

    #[test]
    fn cache_forgets_on_clear_and_on_a_new_file() {
        let old = file(&format!("alice:{FAST_SECRET}\n"));
        let mut cache = VerifyCache::new(16, Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(cache.check(&old, "alice", b"secret", t0));
        cache.clear();
        assert!(cache.is_empty());

        assert!(cache.check(&old, "alice", b"secret", t0));
        // The same text parsed again is a reload: the password may have
        // changed behind the same name, so nothing carries over.
        let reloaded = file(&format!("alice:{OPENSSL_SECRET}\n"));
        cache.entries.get_mut("alice").unwrap().password = b"planted".to_vec();
        assert!(!cache.check(&reloaded, "alice", b"planted", t0));
        assert!(cache.is_empty());
        let emptied = file("# alice was removed\n");
        assert!(!cache.check(&emptied, "alice", b"secret", t0));
    }

    /// Not an assertion: prints what one check costs, for the README.
    /// `cargo test --release --lib auth::tests::verify_cost -- --nocapture`
    #[test]
    fn verify_cost_at_default_rounds() {
        let f = file(&format!("alice:{OPENSSL_SECRET}\n"));
        let runs = 20;
        let start = Instant::now();
        for _ in 0..runs {
            assert!(f.verify("alice", b"secret"));
        }
        let known = start.elapsed() / runs;
        let start = Instant::now();
        for _ in 0..runs {
            assert!(!f.verify("nobody", b"secret"));
        }
        let unknown = start.elapsed() / runs;
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        println!(
            "one SHA-512 crypt at 5000 rounds ({profile}): {known:?}; unknown user: {unknown:?}"
        );
    }
}
