//! The ACL parser and its decisions, against the reference topic matcher
//! where one exists.

use super::*;

fn acl(text: &str) -> AclFile {
    AclFile::parse(text).unwrap()
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn can_read(acl: &AclFile, id: &str, user: Option<&str>, t: &str) -> bool {
    acl.may_read(id, user, &topic(t))
}

fn can_write(acl: &AclFile, id: &str, user: Option<&str>, t: &str) -> bool {
    acl.may_publish(id, user, &topic(t))
}

fn can_subscribe(acl: &AclFile, id: &str, user: Option<&str>, f: &str) -> bool {
    acl.may_subscribe(id, user, &filter(f))
}

fn error_lines(text: &str) -> Vec<usize> {
    AclFile::parse(text)
        .unwrap_err()
        .iter()
        .map(|e| e.line)
        .collect()
}

const SECTIONS: &str = "\
# anonymous clients
topic read public/#
topic write public/anon-inbox

user alice
topic readwrite alice/#
topic read shared/+

user bob
topic bob/#
";

#[test]
fn the_documented_example_means_what_it_says() {
    let doc = include_str!("../acl.rs");
    let start = doc.find("//! ```text\n").unwrap() + "//! ```text\n".len();
    let end = start + doc[start..].find("//! ```").unwrap();
    let example: String = doc[start..end]
        .lines()
        .map(|line| line.strip_prefix("//!").unwrap().trim_start())
        .map(|line| format!("{line}\n"))
        .collect();
    let acl = acl(&example);
    assert_eq!(acl.rule_count(), 6);
    assert!(can_read(&acl, "c", None, "public/x"));
    assert!(can_write(&acl, "c", Some("alice"), "alice/x"));
    assert!(!can_read(&acl, "c", Some("alice"), "alice/secret/x"));
    assert!(can_write(&acl, "c", Some("bob"), "bob/x"));
    assert!(can_write(&acl, "dev1", Some("bob"), "devices/dev1/t"));
    assert!(can_read(&acl, "c", Some("carol"), "users/carol/inbox"));
    assert!(!can_read(&acl, "c", None, "users/carol/inbox"));
}

#[test]
fn anonymous_rules_are_those_before_the_first_user() {
    let acl = acl(SECTIONS);
    assert!(can_read(&acl, "c", None, "public/news"));
    assert!(!can_write(&acl, "c", None, "public/news"));
    assert!(can_write(&acl, "c", None, "public/anon-inbox"));
    assert!(!can_write(&acl, "c", None, "public/anon-inbox/x"));
    // Users' rules are not anonymous ones.
    assert!(!can_read(&acl, "c", None, "alice/x"));
    assert!(!can_read(&acl, "c", None, "bob/x"));
}

#[test]
fn user_sections_apply_only_to_their_user() {
    let acl = acl(SECTIONS);
    assert!(can_write(&acl, "c", Some("alice"), "alice/x/y"));
    assert!(can_read(&acl, "c", Some("alice"), "alice"));
    assert!(can_read(&acl, "c", Some("alice"), "shared/a"));
    assert!(!can_write(&acl, "c", Some("alice"), "shared/a"));
    assert!(!can_read(&acl, "c", Some("alice"), "shared/a/b"));
    assert!(!can_read(&acl, "c", Some("alice"), "bob/x"));
    // A user does not inherit the anonymous rules.
    assert!(!can_read(&acl, "c", Some("alice"), "public/news"));
    // No access word: readwrite.
    assert!(can_write(&acl, "c", Some("bob"), "bob/x"));
    assert!(can_read(&acl, "c", Some("bob"), "bob/x"));
    // A user without a section gets nothing; names are exact.
    assert!(!can_read(&acl, "c", Some("carol"), "public/news"));
    assert!(!can_read(&acl, "c", Some("Alice"), "alice/x"));
    assert!(!can_read(&acl, "c", Some(""), "public/news"));
}

#[test]
fn sections_for_the_same_user_add_up() {
    let acl = acl("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic read z\n");
    assert!(can_read(&acl, "c", Some("a"), "x"));
    assert!(can_read(&acl, "c", Some("a"), "z"));
    assert!(!can_read(&acl, "c", Some("a"), "y"));
    assert_eq!(acl.rule_count(), 3);
}

#[test]
fn usernames_may_hold_blanks() {
    let acl = acl("user  John Smith \ntopic read js/#\n");
    assert!(can_read(&acl, "c", Some("John Smith"), "js/x"));
}

#[test]
fn patterns_apply_to_everyone_wherever_they_are() {
    let acl = acl("\
user alice
pattern readwrite devices/%c/#
topic read alice/#
pattern read users/%u/inbox
");
    assert!(can_write(&acl, "dev1", None, "devices/dev1/temp"));
    assert!(can_write(&acl, "dev1", Some("bob"), "devices/dev1"));
    assert!(!can_write(&acl, "dev1", None, "devices/dev2/temp"));
    assert!(can_read(&acl, "x", Some("bob"), "users/bob/inbox"));
    assert!(!can_write(&acl, "x", Some("bob"), "users/bob/inbox"));
    assert!(!can_read(&acl, "x", Some("bob"), "users/alice/inbox"));
    // `%u` does not apply without a username, not even as an empty level.
    assert!(!can_read(&acl, "x", None, "users//inbox"));
    // The `topic` line after `user alice` is still alice's.
    assert!(can_read(&acl, "x", Some("alice"), "alice/1"));
    assert!(!can_read(&acl, "x", Some("bob"), "alice/1"));
}

#[test]
fn wildcards_and_slashes_in_ids_never_widen_a_pattern() {
    // mosquitto CVE-2017-7650.
    let acl = acl("pattern readwrite devices/%c/#\npattern read users/%u/#\n");
    for id in ["+", "#", "a/b", "a+", "#b", "", "/"] {
        assert!(!can_read(&acl, id, None, "devices/x/y"), "{id:?}");
        assert!(!can_read(&acl, id, None, "devices/a/b"), "{id:?}");
        if !id.contains(['+', '#']) {
            assert!(
                !can_write(&acl, id, None, &format!("devices/{id}")),
                "{id:?}"
            );
        }
        assert!(!can_subscribe(&acl, id, None, "devices/#"), "{id:?}");
        assert!(!can_subscribe(&acl, id, None, "devices/+/#"), "{id:?}");
    }
    // `a/b` must not reach client `a`'s space either.
    assert!(!can_write(&acl, "a/b", None, "devices/a/b/c"));
    for name in ["+", "#", "x/y"] {
        assert!(!can_read(&acl, "c", Some(name), "users/x/y"), "{name:?}");
        // The client id pattern still works for the same client.
        assert!(can_read(&acl, "c", Some(name), "devices/c/t"), "{name:?}");
    }
    // Ordinary ids are fine, and `$`, `%` or blanks are plain characters.
    assert!(can_write(&acl, "dev 1$%", None, "devices/dev 1$%/t"));
}

#[test]
fn unsafe_ids_make_pattern_denies_deny_everything() {
    let acl = acl("topic readwrite #\npattern deny private/%c/#\n");
    assert!(can_write(&acl, "ok", None, "anything"));
    assert!(!can_write(&acl, "ok", None, "private/ok/x"));
    assert!(can_write(&acl, "ok", None, "private/other/x"));
    // Fail closed: a client whose id cannot be put into the deny safely
    // is refused everything, rather than escaping the deny.
    assert!(!can_write(&acl, "a/b", None, "anything"));
    assert!(!can_write(&acl, "#", None, "private/x/y"));
    assert!(!can_subscribe(&acl, "+", None, "anything"));
}

#[test]
fn a_deny_wins_over_any_grant() {
    let acl = acl("\
topic readwrite a/#
topic deny a/secret/#
topic read b/#
pattern deny b/%c
user u
topic readwrite #
topic deny x
");
    assert!(can_write(&acl, "c", None, "a/open"));
    assert!(!can_read(&acl, "c", None, "a/secret"));
    assert!(!can_write(&acl, "c", None, "a/secret/x"));
    // A pattern deny takes back a topic grant.
    assert!(can_read(&acl, "c", None, "b/d"));
    assert!(!can_read(&acl, "c", None, "b/c"));
    // Order does not matter: the deny after the grant still wins.
    assert!(can_read(&acl, "c", Some("u"), "y"));
    assert!(!can_read(&acl, "c", Some("u"), "x"));
    assert!(!can_write(&acl, "c", Some("u"), "x"));
    let reversed = AclFile::parse("topic deny a/secret/#\ntopic readwrite a/#\n").unwrap();
    assert!(!can_read(&reversed, "c", None, "a/secret/x"));
    assert!(can_read(&reversed, "c", None, "a/open"));
}

#[test]
fn access_words() {
    let acl = acl("topic read r\ntopic write w\ntopic readwrite rw\ntopic both\ntopic deny d\n");
    let cases = [
        ("r", true, false),
        ("w", false, true),
        ("rw", true, true),
        ("both", true, true),
        ("d", false, false),
        ("other", false, false),
    ];
    for (t, read, write) in cases {
        assert_eq!(can_read(&acl, "c", None, t), read, "{t}");
        assert_eq!(can_write(&acl, "c", None, t), write, "{t}");
    }
}

#[test]
fn filters_may_hold_blanks() {
    let acl = acl("topic read  my topic/+ \ntopic readwrite  some topic\n");
    assert!(can_read(&acl, "c", None, "my topic/x"));
    assert!(can_write(&acl, "c", None, "some topic"));
    // Without an access word the filter is one word, as in mosquitto.
    assert_eq!(error_lines("topic some topic"), vec![1]);
}

#[test]
fn an_empty_file_denies_everything() {
    // mosquitto CVE-2018-12551.
    for text in [
        "",
        "\n\n",
        "# only comments\n  # here\n",
        "user alice\nuser bob\n",
    ] {
        let acl = acl(text);
        assert_eq!(acl.rule_count(), 0);
        for user in [None, Some("alice")] {
            assert!(!can_read(&acl, "c", user, "a"), "{text:?}");
            assert!(!can_write(&acl, "c", user, "a"), "{text:?}");
            assert!(!can_subscribe(&acl, "c", user, "#"), "{text:?}");
        }
    }
}

#[test]
fn dollar_topics_need_dollar_rules() {
    let acl = acl("topic readwrite #\ntopic readwrite +/x\npattern read %c/#\n");
    assert!(can_read(&acl, "c", None, "a/b"));
    assert!(!can_read(&acl, "c", None, "$SYS/x"));
    assert!(!can_read(&acl, "c", None, "$SOL/x"));
    // A client named `$SYS` does not get `$SYS/#` through `%c/#`.
    assert!(!can_read(&acl, "$SYS", None, "$SYS/x"));
    assert!(!can_subscribe(&acl, "c", None, "$SYS/#"));
    assert!(can_subscribe(&acl, "c", None, "#"));

    let dollar = AclFile::parse("topic readwrite $SOL/#\ntopic read $SYS/+\n").unwrap();
    assert!(can_read(&dollar, "c", None, "$SOL/broker/uptime"));
    assert!(can_subscribe(&dollar, "c", None, "$SOL/#"));
    assert!(can_read(&dollar, "c", None, "$SYS/x"));
    assert!(can_subscribe(&dollar, "c", None, "$SYS/+"));
    assert!(!can_subscribe(&dollar, "c", None, "$SYS/#"));
    // The file grants write; the broker's own topics refuse it anyway.
    assert!(!can_write(&dollar, "c", None, "$SOL/broker/uptime"));
    assert!(!can_write(&dollar, "c", None, "$SOL"));
}

#[test]
fn subscribing_needs_a_read_rule_that_covers_the_filter() {
    let acl = acl("\
topic read a/#
topic write w/#
topic readwrite b/+
topic deny a/secret/#
pattern read c/%c/+
");
    for ok in [
        "a", "a/b", "a/+", "a/#", "a/+/c", "b/x", "b/+", "c/me/x", "c/me/+",
    ] {
        assert!(can_subscribe(&acl, "me", None, ok), "{ok}");
    }
    for refused in [
        "#",
        "+",
        "+/b",
        "b/#",
        "b",
        "b/x/y",
        "w/x",
        "w/#",
        "c/+/x",
        "c/other/x",
        "c/me/#",
        "a/secret",
        "a/secret/#",
        "a/secret/x",
    ] {
        assert!(!can_subscribe(&acl, "me", None, refused), "{refused}");
    }
    // Overlapping a deny is allowed: deliveries are filtered one by one.
    assert!(can_subscribe(&acl, "me", None, "a/+/x"));
    assert!(!can_read(&acl, "me", None, "a/secret/x"));
}

#[test]
fn filter_covers_follows_the_rules() {
    let cases = [
        ("a/#", "a/b", true),
        ("a/#", "a/+", true),
        ("a/#", "a/#", true),
        ("a/#", "a", true),
        ("a/#", "a/b/c/#", true),
        ("a/#", "b", false),
        ("a/#", "+/b", false),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/+", "a/#", false),
        ("a/+", "a", false),
        ("a/+", "a/b/c", false),
        ("a/b", "a/b", true),
        ("a/b", "a/+", false),
        ("a/b", "a/b/c", false),
        ("#", "a", true),
        ("#", "#", true),
        ("#", "+/+", true),
        ("#", "$SYS/x", false),
        ("#", "$SOL/#", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/x", false),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/#", "$SYS/#", true),
        ("$SYS/+", "$SYS/x", true),
        ("$SYS/#", "$OTHER/x", false),
        ("$SYS/#", "#", false),
        ("+/+", "a/b", true),
        ("+/+", "+/+", true),
        ("+/+", "+/#", false),
        ("+/#", "#", false),
        ("/#", "/a", true),
        ("+/a", "/a", true),
        ("a//b", "a/+/b", false),
        ("a/+/b", "a//b", true),
    ];
    for (a, s, expected) in cases {
        assert_eq!(
            filter_covers(&filter(a), &filter(s)),
            expected,
            "{a} covers {s}"
        );
    }
}

/// Every filter over a small alphabet, up to three levels.
fn small_filters() -> Vec<TopicFilter> {
    let words = ["a", "b", "$s", "+", "#", ""];
    let mut out = Vec::new();
    let mut layer: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    for _ in 0..3 {
        let mut next = Vec::new();
        for prefix in &layer {
            if let Ok(f) = TopicFilter::new(prefix.as_str()) {
                out.push(f);
            }
            if !prefix.ends_with('#') {
                for w in words {
                    next.push(format!("{prefix}/{w}"));
                }
            }
        }
        layer = next;
    }
    out
}

/// Every topic over the filters' words plus one no filter names, one
/// level deeper than any filter.
fn small_topics() -> Vec<TopicName> {
    let words = ["a", "b", "$s", "z", ""];
    let mut out = Vec::new();
    let mut layer: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    for _ in 0..4 {
        let mut next = Vec::new();
        for prefix in &layer {
            if let Ok(t) = TopicName::new(prefix.as_str()) {
                out.push(t);
            }
            for w in words {
                next.push(format!("{prefix}/{w}"));
            }
        }
        layer = next;
    }
    out
}

#[test]
fn rule_matching_agrees_with_the_reference_matcher() {
    // A `topic` rule matches exactly what the same filter subscribed to
    // would receive.
    let topics = small_topics();
    for f in small_filters() {
        let acl = acl(&format!("topic read {f}"));
        for t in &topics {
            assert_eq!(acl.may_read("c", None, t), f.matches(t), "{f} ~ {t}");
        }
    }
}

#[test]
fn filter_covers_never_grants_more_than_the_rule() {
    // Soundness against the reference matcher: when `acl` covers `sub`,
    // every topic `sub` matches is one `acl` matches. (The converse does
    // not hold everywhere: `+/#` matches all that `#` does without
    // covering it, which refuses, never grants, too much.)
    let filters = small_filters();
    let topics = small_topics();
    let mut covered = 0;
    for a in &filters {
        for s in &filters {
            if filter_covers(a, s) {
                covered += 1;
                for t in &topics {
                    assert!(!s.matches(t) || a.matches(t), "{a} covers {s} but not {t}");
                }
            } else if a == s {
                panic!("{a} does not cover itself");
            }
        }
    }
    assert!(covered > filters.len());
}

#[test]
fn malformed_lines_are_errors_with_their_numbers() {
    let text = "\
# fine
topic read a/#
topic
topic read
topic sometimes a/b
topic read a/#/b
user
frobnicate x
pattern read devices/dev-%c/#
topic read users/%u

topic read a+
pattern
";
    let errors = AclFile::parse(text).unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 12, 13]);
    assert!(
        errors[1].message.contains("topic readwrite read"),
        "{}",
        errors[1]
    );
    assert!(errors[2].message.contains("sometimes"), "{}", errors[2]);
    assert!(
        errors[3].message.contains("misplaced wildcard"),
        "{}",
        errors[3]
    );
    assert!(errors[5].message.contains("frobnicate"), "{}", errors[5]);
    assert!(errors[6].message.contains("whole level"), "{}", errors[6]);
    assert!(errors[7].message.contains("pattern"), "{}", errors[7]);
    assert_eq!(
        errors[0].to_string(),
        "line 3: `topic` needs a topic filter"
    );
    // Keywords and access words are case-sensitive, as in mosquitto.
    assert_eq!(error_lines("Topic read a"), vec![1]);
    assert_eq!(error_lines("topic READ a"), vec![1]);
}

#[test]
fn load_reads_files_and_reports_what_it_cannot() {
    let dir = std::env::temp_dir().join(format!("sol-acl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let good = dir.join("good");
    std::fs::write(&good, "topic read a/#\r\n").unwrap();
    let loaded = AclFile::load(&good).unwrap();
    assert!(can_read(&loaded, "c", None, "a/b"));

    let errors = AclFile::load(&dir.join("missing")).unwrap_err();
    assert_eq!(errors[0].line, 0);
    assert!(errors[0].to_string().contains("missing"), "{}", errors[0]);

    let binary = dir.join("binary");
    std::fs::write(&binary, b"topic a\ntopic \xff\n").unwrap();
    assert_eq!(AclFile::load(&binary).unwrap_err()[0].line, 2);

    let big = dir.join("big");
    std::fs::write(&big, vec![b'#'; MAX_FILE_SIZE as usize + 1]).unwrap();
    assert!(AclFile::load(&big).unwrap_err()[0]
        .message
        .contains("larger"));

    std::fs::remove_dir_all(&dir).unwrap();
}
