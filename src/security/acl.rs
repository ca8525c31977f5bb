//! Access control lists: which client may publish to, receive from and
//! subscribe to which topics, read from a file in mosquitto's `acl_file`
//! syntax.
//!
//! This module owns parsing that file into an [`AclFile`] and answering
//! "may this client do this to this topic?". It must not know about
//! connections, sessions or packets: the broker asks before it routes a
//! PUBLISH, before it accepts a SUBSCRIBE, and before it delivers each
//! message, and decides what a refusal means ([MQTT-3.3.5-2]: acknowledge a
//! refused PUBLISH and drop it; SUBACK 0x80 for a refused filter).
//!
//! # The file format
//!
//! ```text
//! # Anonymous clients (no username): rules before the first `user` line.
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret/#
//!
//! user bob
//! # No access word: readwrite. There are no comments at the end of a line:
//! # the filter is the rest of the line.
//! topic bob/#
//!
//! # Every client, wherever the line is: %c is the client id, %u the username.
//! pattern readwrite devices/%c/#
//! pattern read users/%u/inbox
//! ```
//!
//! - `topic [ACCESS] FILTER`: a rule for the current section. Before any
//!   `user` line the section is that of anonymous clients (no username);
//!   after `user NAME`, of clients that logged in as `NAME`. Sections for the
//!   same name add up.
//! - `pattern [ACCESS] FILTER`: a rule for every client, wherever it appears.
//!   A level that is exactly `%c` or `%u` stands for the client id or the
//!   username, as in mosquitto 2; a rule with `%u` does not apply to a client
//!   without a username. `%c` or `%u` anywhere else (inside a level, or in a
//!   `topic` line) is an error: mosquitto would match it literally.
//! - `user NAME`: starts a section. The name is the rest of the line.
//! - ACCESS is `read`, `write`, `readwrite` or `deny`; without it, `readwrite`.
//!   FILTER is the rest of the line and must be a valid topic filter.
//! - Blank lines and comments are skipped. Anything else is an error, and so
//!   is a line that only names an access (`topic read`): mosquitto reads that
//!   as readwrite on a topic called `read`, which is never what was meant.
//!   Parsing goes on after an error, so one run reports every mistake, each
//!   with its line number.
//!
//! # The decision
//!
//! The rules that apply to a client are its section (anonymous or its
//! username's) and every pattern. Access is allowed when some applicable
//! rule grants it (`read` for subscribing and for delivery, `write` for
//! publishing) and no applicable `deny` rule matches. A deny wins over every
//! grant, including a pattern deny over a topic grant (mosquitto 2 checks a
//! user's topic rules before the patterns, so there a pattern deny cannot
//! take back a topic grant; here it can, which only ever refuses more).
//!
//! Rules for topics starting with `$` apply only when their filter starts
//! with `$` too, as in mosquitto: `topic read #` does not open `$SOL/...`.
//! And `$SOL/...` belongs to the broker: clients may never write to it,
//! whatever the file says.
//!
//! # What the file cannot do
//!
//! - Without an ACL file, everything is allowed but writing `$SOL/...` (the
//!   broker's guard holds an `Option<AclFile>` and decides that case). A
//!   file with no rules (empty, only comments, only `user` lines) allows
//!   nothing (mosquitto CVE-2018-12551).
//! - A client id or username cannot widen a pattern (mosquitto
//!   CVE-2017-7650). If the value a pattern would substitute is empty or
//!   holds `+`, `#` or `/`, the pattern cannot be evaluated safely: as a
//!   grant it grants nothing, and as a deny it denies everything. A client
//!   named `#` gets nothing from `pattern readwrite devices/%c/#`, and a
//!   client named `a/b` cannot reach into `devices/a/b/...`, another
//!   client's space.
//!
//! # Cost
//!
//! One check walks the client's section and the patterns, deny rules first,
//! each level by level against the topic: O(R × L) for R applicable rules and
//! a topic of L levels, with one hash lookup for the section and no
//! allocation. Deliveries are checked per message, so a file of a few
//! hundred rules costs microseconds per delivery; precomputing each
//! client's rules into a trie would be the next step if that ever shows.
//!
//! Explained in docs/12-tls-and-auth.md.

use std::collections::HashMap;
use std::path::Path;

use crate::protocol::{TopicError, TopicFilter, TopicName};
use crate::LineError;

/// The largest ACL file [`AclFile::load`] reads.
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The first level of the broker's own topics, which clients may read but
/// never write.
pub const BROKER_TOPIC_PREFIX: &str = "$SOL";

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Subscribe to it or receive messages published to it.
    Read,
    /// Publish to it.
    Write,
}

/// What one rule gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn from_word(word: &str) -> Option<Grant> {
        match word {
            "read" => Some(Grant::Read),
            "write" => Some(Grant::Write),
            "readwrite" => Some(Grant::ReadWrite),
            "deny" => Some(Grant::Deny),
            _ => None,
        }
    }

    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::Read | Grant::ReadWrite, Access::Read)
                | (Grant::Write | Grant::ReadWrite, Access::Write)
        )
    }
}

/// One level of a rule's filter.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Exact(Box<str>),
    /// `+`
    Single,
    /// `#`, always last.
    Multi,
    /// `%c` in a pattern.
    ClientId,
    /// `%u` in a pattern.
    Username,
}

/// A level once `%c` and `%u` are filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolved<'a> {
    Exact(&'a str),
    Single,
    Multi,
}

/// Who is asking.
#[derive(Clone, Copy)]
struct Client<'a> {
    id: &'a str,
    username: Option<&'a str>,
}

impl<'a> Client<'a> {
    fn new(id: &'a str, username: Option<&'a str>) -> Client<'a> {
        Client { id, username }
    }
}

/// A value that may be put into a pattern's level: it must be one whole,
/// literal level, so that it cannot match more than its owner's own topics.
fn is_safe_substitution(value: &str) -> bool {
    !value.is_empty() && !value.contains(['+', '#', '/'])
}

/// Whether a rule applies to a client, once its placeholders are considered.
enum Applies {
    /// It does not concern this client (`%u` and no username).
    No,
    /// Its placeholders cannot be filled safely: it must not grant, and as a
    /// deny it denies everything.
    Unsafe,
    /// It can be matched level by level.
    Yes,
}

#[derive(Clone, Debug)]
struct Rule {
    grant: Grant,
    levels: Box<[Level]>,
}

impl Rule {
    fn applies_to(&self, client: Client<'_>) -> Applies {
        let mut safe = true;
        for level in self.levels.iter() {
            match level {
                Level::ClientId => safe &= is_safe_substitution(client.id),
                Level::Username => match client.username {
                    None => return Applies::No,
                    Some(name) => safe &= is_safe_substitution(name),
                },
                _ => {}
            }
        }
        if safe {
            Applies::Yes
        } else {
            Applies::Unsafe
        }
    }

    /// The rule's levels with the client's values filled in. Call only when
    /// [`Rule::applies_to`] said `Yes`.
    fn resolve<'a>(&'a self, client: Client<'a>) -> impl Iterator<Item = Resolved<'a>> + 'a {
        self.levels.iter().map(move |level| match level {
            Level::Exact(text) => Resolved::Exact(text),
            Level::Single => Resolved::Single,
            Level::Multi => Resolved::Multi,
            Level::ClientId => Resolved::Exact(client.id),
            // `applies_to` returned `No` for a rule with `%u` and no
            // username; should it ever be asked anyway, an empty level
            // matches nothing a client can publish to with a username.
            Level::Username => Resolved::Exact(client.username.unwrap_or("")),
        })
    }

    /// mosquitto's `$` rule looks at the written filter, not the filled-in
    /// one: only a rule whose first level is literally `$...` can match a
    /// `$` topic, so `%c/#` never opens `$SOL/#` to a client named `$SOL`.
    fn may_match_system(&self) -> bool {
        matches!(self.levels.first(), Some(Level::Exact(text)) if text.starts_with('$'))
    }

    fn matches_topic(&self, client: Client<'_>, topic: &TopicName) -> bool {
        match self.applies_to(client) {
            Applies::No => false,
            Applies::Unsafe => self.grant == Grant::Deny,
            Applies::Yes => {
                (!topic.is_system() || self.may_match_system())
                    && pattern_matches(self.resolve(client), topic)
            }
        }
    }

    fn covers_filter(&self, client: Client<'_>, filter: &TopicFilter) -> bool {
        match self.applies_to(client) {
            Applies::No => false,
            Applies::Unsafe => self.grant == Grant::Deny,
            Applies::Yes => {
                (!filter.as_str().starts_with('$') || self.may_match_system())
                    && pattern_covers(self.resolve(client), filter)
            }
        }
    }
}

/// The rules of one section, deny rules kept apart so they are checked
/// first and a check can stop at the first grant.
#[derive(Clone, Debug, Default)]
struct RuleSet {
    denies: Vec<Rule>,
    grants: Vec<Rule>,
}

impl RuleSet {
    fn push(&mut self, rule: Rule) {
        if rule.grant == Grant::Deny {
            self.denies.push(rule);
        } else {
            self.grants.push(rule);
        }
    }

    fn len(&self) -> usize {
        self.denies.len() + self.grants.len()
    }
}

/// A parsed ACL file.
#[derive(Clone, Debug, Default)]
pub struct AclFile {
    /// `topic` rules before the first `user` line.
    anonymous: RuleSet,
    /// `topic` rules by the `user` section they are in.
    users: HashMap<String, RuleSet>,
    /// `pattern` rules, for everyone.
    patterns: RuleSet,
}

impl AclFile {
    /// Parses the text of an ACL file.
    ///
    /// On failure returns every error found, in line order.
    pub fn parse(text: &str) -> Result<AclFile, Vec<LineError>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut acl = AclFile::default();
        let mut errors = Vec::new();
        let mut user: Option<&str> = None;

        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (keyword, rest) = match content.split_once(char::is_whitespace) {
                Some((keyword, rest)) => (keyword, rest.trim()),
                None => (content, ""),
            };
            match keyword {
                "user" if rest.is_empty() => {
                    errors.push(LineError::new(line, "`user` needs a username"));
                }
                "user" => user = Some(rest),
                "topic" | "pattern" => {
                    let is_pattern = keyword == "pattern";
                    match parse_rule(keyword, rest, is_pattern) {
                        Ok(rule) if is_pattern => acl.patterns.push(rule),
                        Ok(rule) => match user {
                            None => acl.anonymous.push(rule),
                            Some(name) => acl.users.entry(name.to_string()).or_default().push(rule),
                        },
                        Err(message) => errors.push(LineError::new(line, message)),
                    }
                }
                other => errors.push(LineError::new(
                    line,
                    format!(
                        "unknown keyword `{}`: expected topic, pattern or user",
                        other.escape_debug()
                    ),
                )),
            }
        }

        if errors.is_empty() {
            Ok(acl)
        } else {
            Err(errors)
        }
    }

    /// Reads and parses an ACL file.
    ///
    /// A file that cannot be read (missing, a directory, no permission, over
    /// [`MAX_FILE_SIZE`]) gives one error on line 0 whose message names the
    /// path; bytes that are not UTF-8 give one error on the line where they
    /// are.
    pub fn load(path: &Path) -> Result<AclFile, Vec<LineError>> {
        let text = crate::textfile::read_text(path, "ACL file", MAX_FILE_SIZE)
            .map_err(|(line, message)| vec![LineError::new(line, message)])?;
        AclFile::parse(&text)
    }

    /// How many `topic` and `pattern` rules the file holds. Zero means every
    /// client is refused everything; worth a warning at startup.
    pub fn rule_count(&self) -> usize {
        self.anonymous.len()
            + self.patterns.len()
            + self.users.values().map(RuleSet::len).sum::<usize>()
    }

    /// May this client publish to `topic`? Writes to `$SOL/...` are always
    /// refused, whatever the file says.
    pub fn may_publish(&self, client_id: &str, username: Option<&str>, topic: &TopicName) -> bool {
        let client = Client::new(client_id, username);
        !is_broker_topic(topic)
            && self.decide(client, Access::Write, |rule| {
                rule.matches_topic(client, topic)
            })
    }

    /// May this client be sent a message published to `topic`?
    pub fn may_read(&self, client_id: &str, username: Option<&str>, topic: &TopicName) -> bool {
        let client = Client::new(client_id, username);
        self.decide(client, Access::Read, |rule| {
            rule.matches_topic(client, topic)
        })
    }

    /// May this client subscribe to `filter`?
    ///
    /// Allowed when one rule granting `read` covers the whole filter (see
    /// [`filter_covers`]) and no deny rule covers it. A filter that only
    /// overlaps a deny (`#` against `deny secret/#`) is allowed: the broker
    /// checks every delivery with [`AclFile::may_read`], which keeps the
    /// denied messages out. A filter that needs two rules together to be
    /// covered (`+/x` against `a/#` and `b/#`) is refused, as in mosquitto.
    pub fn may_subscribe(
        &self,
        client_id: &str,
        username: Option<&str>,
        filter: &TopicFilter,
    ) -> bool {
        let client = Client::new(client_id, username);
        self.decide(client, Access::Read, |rule| {
            rule.covers_filter(client, filter)
        })
    }

    /// The client's section and the patterns: any matching deny refuses,
    /// then any matching grant of `access` allows.
    fn decide(&self, client: Client<'_>, access: Access, matches: impl Fn(&Rule) -> bool) -> bool {
        let section = match client.username {
            None => Some(&self.anonymous),
            Some(name) => self.users.get(name),
        };
        let sets = || section.into_iter().chain(std::iter::once(&self.patterns));
        if sets().flat_map(|set| &set.denies).any(&matches) {
            return false;
        }
        sets()
            .flat_map(|set| &set.grants)
            .any(|rule| rule.grant.allows(access) && matches(rule))
    }
}

/// Whether `topic` is the broker's own (`$SOL` or below it).
pub fn is_broker_topic(topic: &TopicName) -> bool {
    topic.levels().next() == Some(BROKER_TOPIC_PREFIX)
}

/// Whether every topic that `sub` matches is also matched by `acl`, judged
/// level by level as mosquitto's `mosquitto_sub_matches_acl` does:
///
/// - `a/#` covers `a`, `a/b`, `a/+` and `a/#`;
/// - `a/+` covers `a/b` and `a/+`, but not `a/#` nor `a`;
/// - `#` covers every filter except those starting with `$`, which only a
///   filter starting with the same `$` level can cover.
///
/// It is conservative: `+/#` does not cover `#` although both match every
/// topic not starting with `$`, because a `+` level never covers a `#`.
pub fn filter_covers(acl: &TopicFilter, sub: &TopicFilter) -> bool {
    if sub.as_str().starts_with('$') && !acl.as_str().starts_with('$') {
        return false;
    }
    pattern_covers(acl.levels().map(resolved_from_text), sub)
}

fn resolved_from_text(level: &str) -> Resolved<'_> {
    match level {
        "+" => Resolved::Single,
        "#" => Resolved::Multi,
        text => Resolved::Exact(text),
    }
}

/// The reference matcher of section 4.7, over resolved levels. The `$` rule
/// is the caller's: it depends on the written rule, not the resolved one.
fn pattern_matches<'a>(pattern: impl Iterator<Item = Resolved<'a>>, topic: &TopicName) -> bool {
    let mut name = topic.levels();
    for level in pattern {
        match level {
            Resolved::Multi => return true,
            Resolved::Single => {
                if name.next().is_none() {
                    return false;
                }
            }
            Resolved::Exact(text) => {
                if name.next() != Some(text) {
                    return false;
                }
            }
        }
    }
    name.next().is_none()
}

/// [`filter_covers`] over resolved levels, without the `$` rule.
fn pattern_covers<'a>(pattern: impl Iterator<Item = Resolved<'a>>, sub: &TopicFilter) -> bool {
    let mut wanted = sub.levels();
    for level in pattern {
        match level {
            // Covers whatever is left, nothing included: `a/#` covers `a`.
            Resolved::Multi => return true,
            Resolved::Single => match wanted.next() {
                None | Some("#") => return false,
                Some(_) => {}
            },
            // A resolved value never holds a wildcard, so `+` or `#` in the
            // subscription never equals it.
            Resolved::Exact(text) => {
                if wanted.next() != Some(text) {
                    return false;
                }
            }
        }
    }
    wanted.next().is_none()
}

/// `[ACCESS] FILTER` after `topic` or `pattern`.
fn parse_rule(keyword: &str, rest: &str, is_pattern: bool) -> Result<Rule, String> {
    if rest.is_empty() {
        return Err(format!("`{keyword}` needs a topic filter"));
    }
    let (grant, filter) = match rest.split_once(char::is_whitespace) {
        Some((word, filter)) => match Grant::from_word(word) {
            Some(grant) => (grant, filter.trim()),
            None => {
                return Err(format!(
                    "unknown access `{}`: expected read, write, readwrite or deny",
                    word.escape_debug()
                ))
            }
        },
        None if Grant::from_word(rest).is_some() => {
            return Err(format!(
                "`{keyword} {rest}` names an access but no topic filter \
                 (for a topic called `{rest}`, write `{keyword} readwrite {rest}`)"
            ))
        }
        None => (Grant::ReadWrite, rest),
    };
    let filter = TopicFilter::new(filter).map_err(|error: TopicError| {
        format!("bad topic filter `{}`: {error}", filter.escape_debug())
    })?;
    let mut levels = Vec::new();
    for text in filter.levels() {
        levels.push(match text {
            "+" => Level::Single,
            "#" => Level::Multi,
            "%c" if is_pattern => Level::ClientId,
            "%u" if is_pattern => Level::Username,
            // mosquitto would take these literally, which is never what was
            // meant: say so instead.
            text if !is_pattern && (text.contains("%c") || text.contains("%u")) => {
                return Err(
                    "only `pattern` lines fill in `%c` and `%u`; use `pattern` here".to_string(),
                )
            }
            text if text.contains("%c") || text.contains("%u") => {
                return Err(format!(
                    "`%c` and `%u` must be a whole level, as in `devices/%c/#`; \
                     in `{}` they would be taken literally",
                    text.escape_debug()
                ))
            }
            text => Level::Exact(text.into()),
        });
    }
    Ok(Rule {
        grant,
        levels: levels.into_boxed_slice(),
    })
}

#[cfg(test)]
mod tests;
