//! Every relative link in the prose leads somewhere.
//!
//! The posts of `docs/`, `README.md` and `ARCHITECTURE.md` point into the
//! code (`../src/broker/mod.rs`), at each other (`05-event-loop.md`) and at
//! headings (`07-qos-step-by-step.md#qos-2-exactly-once`). Nothing else
//! checks them: `src/guide.rs` compiles the posts' examples, but a link is
//! only text to rustdoc, so a moved file or a renamed heading would leave a
//! dead link for a reader to find. This test reads every one of them and
//! fails on each that does not resolve, naming the file and line.
//!
//! What is checked, for every link outside code (fenced blocks and inline
//! spans) that has no scheme (`https:`, `mailto:`):
//! - the target path exists, relative to the file that links (a file or a
//!   directory);
//! - an `#anchor` on a Markdown file (or alone, for the same file) names one
//!   of its headings, slugged as GitHub does;
//! - an `#L10` or `#L10-L20` on any other file names lines the file has.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `path` as a reader of the repository names it: from the top, with no
/// `..` in it.
fn shown(path: &Path) -> String {
    let mut plain = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                plain.pop();
            }
            Component::CurDir => {}
            other => plain.push(other),
        }
    }
    let root = root();
    plain
        .strip_prefix(&root)
        .unwrap_or(&plain)
        .display()
        .to_string()
}

/// `docs/*.md`, then `README.md` and `ARCHITECTURE.md`.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    docs.push(root().join("README.md"));
    docs.push(root().join("ARCHITECTURE.md"));
    docs
}

/// One link: the line it is on (from 1) and its target as written.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// `line` with the contents of its inline code spans removed: a `](` in
/// code is not a link.
fn outside_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let ticks = after.len() - after.trim_start_matches('`').len();
        let fence = &after[..ticks];
        let body = &after[ticks..];
        match body.find(fence) {
            Some(end) => rest = &body[end + ticks..],
            // An unclosed backtick is a literal one.
            None => {
                out.push_str(after);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `line` opens or closes a fenced code block.
fn is_fence(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("```") || line.starts_with("~~~")
}

/// Every inline link and image (`[text](target)`, `![alt](target "title")`)
/// in `text`, outside code.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    let mut in_fence = false;
    for (n, line) in text.lines().enumerate() {
        if is_fence(line) {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let line_text = outside_code_spans(line);
        let mut rest = line_text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            // A title follows the target after a space.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            if !target.is_empty() {
                found.push(Link {
                    line: n + 1,
                    target: target.to_string(),
                });
            }
            rest = &after[end..];
        }
    }
    found
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped,
/// spaces turned into hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every ATX heading (`## Title`) in `text`, outside code; a
/// repeated heading gets `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        if is_fence(line) {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = line.len() - line.trim_start_matches('#').len();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(
            &line[hashes..]
                .trim_end()
                .trim_end_matches('#')
                .replace('`', ""),
        );
        let mut anchor = base.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    seen
}

/// Whether `fragment` is a line anchor (`L10`, `L10-L20`) that fits in a
/// file of `lines` lines; `None` if it is not a line anchor at all.
fn lines_fit(fragment: &str, lines: usize) -> Option<bool> {
    let mut numbers = Vec::new();
    for part in fragment.split('-') {
        numbers.push(part.strip_prefix('L')?.parse::<usize>().ok()?);
    }
    if numbers.len() > 2 {
        return None;
    }
    Some(numbers.iter().all(|&n| (1..=lines).contains(&n)))
}

/// What is wrong with `link`, found in the document `doc`, or `None`.
fn problem(doc: &Path, doc_text: &str, link: &Link) -> Option<String> {
    let target = link.target.as_str();
    let has_scheme = target
        .split_once(':')
        .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(char::is_alphabetic));
    if has_scheme {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let (file, text) = if path.is_empty() {
        (doc.to_path_buf(), doc_text.to_string())
    } else {
        let file = doc.parent().unwrap_or(Path::new(".")).join(path);
        if !file.exists() {
            return Some(format!("{path} does not exist"));
        }
        let text = match std::fs::read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // A directory: nothing more to check.
            Err(_) => return None,
        };
        (file, text)
    };
    let fragment = fragment.filter(|f| !f.is_empty())?;
    if file.extension().is_some_and(|ext| ext == "md") {
        if !anchors(&text).contains(fragment) {
            return Some(format!("{} has no heading #{fragment}", shown(&file)));
        }
    } else if lines_fit(fragment, text.lines().count()) == Some(false) {
        return Some(format!(
            "{} has {} lines, not #{fragment}",
            shown(&file),
            text.lines().count()
        ));
    }
    None
}

/// Every broken link in `doc`, as `doc:line: target: why`.
fn broken_links(doc: &Path, text: &str) -> Vec<String> {
    links(text)
        .iter()
        .filter_map(|link| {
            problem(doc, text, link)
                .map(|why| format!("{}:{}: {}: {why}", shown(doc), link.line, link.target))
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut relative = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
        relative += links(&text)
            .iter()
            .filter(|l| !l.target.contains(':'))
            .count();
        broken.extend(broken_links(&doc, &text));
    }
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
    // The documents hold some 270 relative links: far fewer would mean the
    // parser stopped seeing them, not that they all resolve.
    assert!(relative > 200, "only {relative} relative links found");
}

#[test]
fn links_are_found_outside_code_only() {
    let text = "\
See [the core](../src/broker/mod.rs) and ![a plot](plot.svg \"Title\").
`[not](a-link.md)` but [`Broker`](../src/broker/mod.rs#L10) is one.
```rust
let x = [a](b);
```
[post](05-event-loop.md#reading-bounded-and-fair), [web](https://mqtt.org)
";
    let found = links(text);
    let targets: Vec<(usize, &str)> = found.iter().map(|l| (l.line, l.target.as_str())).collect();
    assert_eq!(
        targets,
        [
            (1, "../src/broker/mod.rs"),
            (1, "plot.svg"),
            (2, "../src/broker/mod.rs#L10"),
            (6, "05-event-loop.md#reading-bounded-and-fair"),
            (6, "https://mqtt.org"),
        ]
    );
}

#[test]
fn headings_slug_as_on_github() {
    assert_eq!(
        slug("Naming a connection: tokens, a slab and a serial"),
        "naming-a-connection-tokens-a-slab-and-a-serial"
    );
    assert_eq!(slug("Sol's trie, in code"), "sols-trie-in-code");
    assert_eq!(slug("QoS 2: exactly once"), "qos-2-exactly-once");
    let text = "# Top\n## Again\n```\n# not a heading\n```\n## Again\n#nope\n";
    let found = anchors(text);
    let want: HashSet<String> = ["top", "again", "again-1"].map(String::from).into();
    assert_eq!(found, want);
}

/// The test fails when it should: a missing file, a missing heading and a
/// line past the end are each reported with their line.
#[test]
fn broken_links_are_reported() {
    let doc = root().join("docs").join("a-post.md");
    let text = "\
# A post
[fine](05-event-loop.md) [fine too](#a-post) [dir](../src/)
[gone](../src/no-such-file.rs)
[no heading](05-event-loop.md#no-such-heading) [here](#nor-here)
[too far](../Cargo.toml#L100000) [fits](../Cargo.toml#L1-L2)
";
    let broken = broken_links(&doc, text);
    assert_eq!(broken.len(), 4, "{broken:#?}");
    assert!(broken[0].contains(":3: ../src/no-such-file.rs: "));
    assert!(broken[1].contains(":4: 05-event-loop.md#no-such-heading: "));
    assert!(broken[2].contains(":4: #nor-here: "));
    assert!(broken[3].contains(":5: ../Cargo.toml#L100000: "));
}

#[test]
fn line_anchors_are_told_from_others() {
    assert_eq!(lines_fit("L10", 20), Some(true));
    assert_eq!(lines_fit("L10-L30", 20), Some(false));
    assert_eq!(lines_fit("L0", 20), Some(false));
    assert_eq!(lines_fit("section", 20), None);
    assert_eq!(lines_fit("L1-L2-L3", 20), None);
}
