//! `passwd.py`, the password file tool, run as users run it: its SHA-512
//! crypt against Drepper's test vectors, each of its commands against a real
//! file, and every hash it writes checked by the broker's own
//! `PasswordFile::verify`.
//!
//! Needs `python3`; without it each test prints a note and passes, since the
//! tool is not part of the broker binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sol::security::passwords::PasswordFile;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/passwd.py");
const PLAIN_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/passwd-plain.txt"
);

/// `openssl passwd -6 -salt somesalt secret`, carol's line in the fixture.
const CAROL_HASH: &str = "$6$somesalt$JX0Uhce8rLRHbaqoSQDYsnTxsqcjCNNcrl79ieTwPGzEhxBEeJcsgDUWIOwc3sDvZN34ZJBWQep7.lcAuSesy/";

/// Whether `python` runs at all.
fn available(python: &str) -> bool {
    Command::new(python)
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

/// `python3`, or `None` after printing why the test does nothing.
fn python3() -> Option<&'static str> {
    if available("python3") {
        Some("python3")
    } else {
        eprintln!("note: python3 not found; passwd.py not tested");
        None
    }
}

fn run(python: &str, args: &[&str]) -> Output {
    Command::new(python)
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run passwd.py")
}

fn run_ok(python: &str, args: &[&str]) -> String {
    let out = run(python, args);
    assert!(
        out.status.success(),
        "passwd.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sol-passwd-py-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn sha512_crypt_matches_drepper_test_vectors() {
    // From https://www.akkadia.org/drepper/SHA-crypt.txt, SHA-512 section:
    // (password, salt, rounds, expected).
    let vectors: [(&str, &str, Option<&str>, &str); 7] = [
        (
            "Hello world!",
            "saltstring",
            None,
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "Hello world!",
            "saltstringsaltstring",
            Some("10000"),
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        (
            "This is just a test",
            "toolongsaltstring",
            Some("5000"),
            "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
        ),
        (
            "a very much longer text to encrypt.  This one even stretches over morethan one line.",
            "anotherlongsaltstring",
            Some("1400"),
            "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
        ),
        (
            "we have a short salt string but not a short password",
            "short",
            Some("77777"),
            "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
        ),
        (
            "a short string",
            "asaltof16chars..",
            Some("123456"),
            "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
        ),
        (
            "the minimum number is still observed",
            "roundstoolow",
            Some("10"),
            "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
        ),
    ];
    // Every interpreter at hand: the script must work on 3.11, which still
    // has `crypt`, and on 3.13+, which does not.
    let pythons: Vec<&str> = [
        "python3",
        "python3.11",
        "python3.12",
        "python3.13",
        "python3.14",
    ]
    .into_iter()
    .filter(|python| available(python))
    .collect();
    if pythons.is_empty() {
        eprintln!("note: python3 not found; passwd.py not tested");
        return;
    }
    for python in pythons {
        for (password, salt, rounds, expected) in vectors {
            let mut args = vec!["--hash", password, salt];
            args.extend(rounds);
            assert_eq!(
                run_ok(python, &args).trim_end(),
                expected,
                "{python} {args:?}"
            );
        }
    }
}

#[test]
fn hashes_from_passwd_py_verify_in_the_broker() {
    let Some(python) = python3() else { return };
    // The same as `openssl passwd -6 -salt somesalt secret`.
    assert_eq!(
        run_ok(python, &["--hash", "secret", "somesalt"]).trim_end(),
        CAROL_HASH
    );
    let rounds = run_ok(python, &["--hash", "secret", "abc", "1000"]);
    let file = PasswordFile::parse(&format!("u:{}", rounds.trim_end())).unwrap();
    assert!(file.verify("u", b"secret"));
    assert!(!file.verify("u", b"secreT"));
}

#[test]
fn hashing_a_file_in_place() {
    let Some(python) = python3() else { return };
    let dir = scratch("in-place");
    let path = dir.join("passwd");
    fs::copy(PLAIN_FIXTURE, &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    let said = run_ok(python, &[path_str(&path)]);
    assert!(said.contains("hashed 4 passwords"), "{said}");
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(!text.contains("wonderland"), "{text}");
    assert!(!text.contains("two words"), "{text}");

    // Comments, blank lines and the hashed line are kept as they were.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert_eq!(
        lines[0],
        "# sol password file, before passwd.py: plain-text passwords to be hashed."
    );
    assert_eq!(lines[1], "");
    assert_eq!(lines[4], format!("carol:{CAROL_HASH}"));
    assert_eq!(lines[7], "# frank:not-a-user");
    // Every hash is new, with its own 16-character random salt.
    for (line, user) in [(2, "alice"), (3, "bob"), (5, "dave"), (6, "erin")] {
        let hash = lines[line].strip_prefix(&format!("{user}:$6$")).unwrap();
        let salt = hash.split('$').next().unwrap();
        assert_eq!(salt.len(), 16, "{user}");
    }
    assert_ne!(lines[2].split('$').nth(2), lines[3].split('$').nth(2));

    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.len(), 5);
    assert!(file.verify("alice", b"wonderland"));
    // Blanks around a line are not part of it, for sol as for passwd.py.
    assert!(file.verify("bob", b"two words"));
    assert!(file.verify("carol", b"secret"));
    // Only the first ':' separates the name.
    assert!(file.verify("dave", b"colon:inside"));
    assert!(file.verify("erin", "päss wörd".as_bytes()));
    assert!(!file.verify("frank", b"not-a-user"));

    // A second run finds nothing to do and changes nothing.
    let said = run_ok(python, &[path_str(&path)]);
    assert!(said.contains("hashed 0 passwords"), "{said}");
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adding_changing_and_deleting_users() {
    let Some(python) = python3() else { return };
    let dir = scratch("add-delete");
    let path = dir.join("passwd");
    let p = path_str(&path);

    // -b creates the file.
    run_ok(python, &["-b", p, "alice", "first"]);
    assert_eq!(mode(&path), 0o600);
    run_ok(python, &["-b", p, "bob", "bob's pässword"]);
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.len(), 2);
    assert!(file.verify("alice", b"first"));
    assert!(file.verify("bob", "bob's pässword".as_bytes()));

    // -b again changes the password in place: the old one stops working.
    fs::write(
        &path,
        format!("# keep me\n{}", fs::read_to_string(&path).unwrap()),
    )
    .unwrap();
    run_ok(python, &["-b", p, "alice", "second"]);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# keep me\nalice:$6$"), "{text}");
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.len(), 2);
    assert!(file.verify("alice", b"second"));
    assert!(!file.verify("alice", b"first"));

    // -D removes one user and leaves the rest.
    run_ok(python, &["-D", p, "alice"]);
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.len(), 1);
    assert!(!file.verify("alice", b"second"));
    assert!(file.verify("bob", "bob's pässword".as_bytes()));
    assert_eq!(mode(&path), 0o600);

    // Deleting someone absent is an error and changes nothing.
    let before = fs::read_to_string(&path).unwrap();
    let out = run(python, &["-D", p, "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("alice"));
    assert_eq!(fs::read_to_string(&path).unwrap(), before);

    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("passwd")]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mistakes_are_reported_and_change_nothing() {
    let Some(python) = python3() else { return };
    let dir = scratch("mistakes");
    let path = dir.join("passwd");
    let p = path_str(&path);

    // Lines it cannot read: reported with their numbers; nothing written,
    // not even the lines it could have hashed.
    let bad = "alice:secret\nno colon\nbob:$5$rounds=5000$abc$def\n";
    fs::write(&path, bad).unwrap();
    let out = run(python, &[p]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    assert_eq!(fs::read_to_string(&path).unwrap(), bad);

    // Usernames that cannot be written as a line.
    for user in ["a:b", "", " a", "#a"] {
        let out = run(python, &["-b", p, user, "pw"]);
        assert_eq!(out.status.code(), Some(1), "{user:?}");
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), bad);

    // A missing file is an error for everything but -b.
    let missing = dir.join("missing");
    for args in [
        vec![path_str(&missing)],
        vec!["-D", path_str(&missing), "alice"],
    ] {
        let out = run(python, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!missing.exists());
    }

    // Wrong usage: the usage text, status 2.
    for args in [vec![], vec!["-b", p], vec!["-x", p], vec![p, "extra"]] {
        let out = run(python, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    }
    let help = run_ok(python, &["-h"]);
    assert!(help.contains("-b FILE USER PASSWORD"), "{help}");
    fs::remove_dir_all(&dir).unwrap();
}
