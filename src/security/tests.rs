//! Loading the files the config names: errors against the config line,
//! and the cost cap on password hashes.

use std::path::PathBuf;

use super::*;

// `openssl passwd -6 -salt 'rounds=1000$fastsalt' secret`: the cheapest cost.
const SECRET: &str = "$6$rounds=1000$fastsalt$QUh6pcssLqL9TTIo8uuXvjOuE15BI8RaB407ulJHJSw7xoZdBHxJidPusc4FQzMxJMFEv99YlsyJ7QtdXDELg.";

/// A temporary directory for one test's files, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("sol-security-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> ConfigPath {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        ConfigPath::new(path)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn files_that_do_not_load_are_reported_against_the_config_line() {
    let files = Files::new("load-errors");
    let mut passwd = files.write("passwd", "alice:plain\n\nbob:also-plain\n");
    passwd.line = 12;
    let mut acl = files.write("acl", "topic\n");
    acl.line = 13;
    let security = SecurityConfig {
        password_file: Some(passwd),
        acl_file: Some(acl),
        ..Default::default()
    };
    let errors: Vec<String> = SecurityFiles::load(&security)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("line 12: password_file "),
        "{errors:?}"
    );
    assert!(errors[0].ends_with(": line 1: the password is not hashed: run passwd.py on this file"));
    assert!(errors[1].contains(": line 3: "), "{errors:?}");
    assert!(errors[2].starts_with("line 13: acl_file "), "{errors:?}");
    assert!(
        errors[2].ends_with(": line 1: `topic` needs a topic filter"),
        "{errors:?}"
    );
}

#[test]
fn hashes_too_costly_for_the_loop_are_refused_at_load() {
    let files = Files::new("rounds");
    let hash = |rounds: usize| SECRET.replace("rounds=1000", &format!("rounds={rounds}"));
    let mut security = SecurityConfig {
        password_file: Some(files.write("ok", &format!("a:{}\n", hash(MAX_ROUNDS)))),
        ..Default::default()
    };
    assert!(SecurityFiles::load(&security).is_ok());
    security.password_file = Some(files.write("slow", &format!("a:{}\n", hash(MAX_ROUNDS + 1))));
    let errors = SecurityFiles::load(&security).unwrap_err();
    assert!(errors[0].message.contains("100001 rounds"), "{errors:?}");
}

#[test]
fn files_the_config_does_not_name_are_none_and_deny_all_refuses() {
    let none = SecurityFiles::load(&SecurityConfig::default()).unwrap();
    assert!(none.passwords().is_none() && none.acl().is_none());
    let closed = SecurityFiles::deny_all();
    assert!(closed.passwords().is_some_and(PasswordFile::is_empty));
    assert!(closed.acl().is_some_and(|acl| acl.rule_count() == 0));
}
