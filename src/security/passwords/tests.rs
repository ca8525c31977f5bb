//! The password file parser and the cache of good passwords, on texts
//! written here and on files in a temporary directory.

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
const EMPTY_PASSWORD: &str =
    "$6$abc$mJP3a6FyA8uCnzRtlnNypPwjnvpi5TP9qOrInzrfDmwxUQG38PkpCPdqfTb8JQfAngapMxeim4AZ..hSdRRzD.";

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
/// `cargo test --release --lib security::passwords::tests::verify_cost -- --nocapture`
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
    println!("one SHA-512 crypt at 5000 rounds ({profile}): {known:?}; unknown user: {unknown:?}");
}
