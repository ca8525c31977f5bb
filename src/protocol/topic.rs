//! Topic names and topic filters (section 4.7).
//!
//! A [`TopicName`] is where a message is published: no wildcards. A
//! [`TopicFilter`] is what a client subscribes to: `+` matches exactly one
//! level, `#` matches any number of levels (zero included) and must be last.
//! Both are built only through validating constructors, so holding one is a
//! proof that the string is well formed.
//! Explained in docs/06-topics-and-the-trie.md.

use std::fmt;
use std::sync::Arc;

/// The most levels a topic or filter may have.
///
/// The standard sets no bound, but a filter of tens of thousands of levels is
/// an attack on any broker that walks levels recursively (mosquitto
/// CVE-2019-11779). mosquitto refuses more than 200 levels; so do we. The trie
/// walks iteratively anyway, so this bound is about memory, not the stack.
pub const MAX_TOPIC_LEVELS: usize = 200;

/// Why a topic name or filter was refused. Every one closes the connection
/// that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// Zero-length topics are forbidden ([MQTT-4.7.3-1]).
    Empty,
    /// U+0000 in a topic ([MQTT-4.7.3-2]).
    Null,
    /// `+` or `#` in a topic name ([MQTT-3.3.2-2], [MQTT-4.7.1-1]).
    WildcardInName,
    /// `#` not alone in the last level, or `+` not alone in its level
    /// ([MQTT-4.7.1-2], [MQTT-4.7.1-3]).
    MisplacedWildcard,
    /// More than [`MAX_TOPIC_LEVELS`] levels.
    TooManyLevels,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "empty topic",
            TopicError::Null => "U+0000 in topic",
            TopicError::WildcardInName => "wildcard in a topic name",
            TopicError::MisplacedWildcard => "misplaced wildcard in a topic filter",
            TopicError::TooManyLevels => "too many topic levels",
        })
    }
}

impl std::error::Error for TopicError {}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.contains('\0') {
        return Err(TopicError::Null);
    }
    // A topic of N levels holds N - 1 separators.
    if s.bytes().filter(|&b| b == b'/').count() >= MAX_TOPIC_LEVELS {
        return Err(TopicError::TooManyLevels);
    }
    Ok(())
}

/// A topic a message is published to: no `+`, no `#`, not empty.
///
/// The string is shared (`Arc<str>`): one PUBLISH routed to ten thousand
/// subscribers clones a pointer ten thousand times, not the topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `s` as a topic name.
    pub fn new(s: impl Into<String>) -> Result<TopicName, TopicError> {
        let s = s.into();
        check_common(&s)?;
        if s.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic's levels, split on `/`. `a//b` has three levels, the middle
    /// one empty; `/a` starts with an empty level.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Topics starting with `$` are the broker's own (`$SOL/...`): filters
    /// that start with a wildcard do not match them ([MQTT-4.7.2-1]).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription pattern: levels separated by `/`, where `+` stands for one
/// whole level and a final `#` for any number of levels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(String);

impl TopicFilter {
    /// Validates `s` as a topic filter.
    pub fn new(s: impl Into<String>) -> Result<TopicFilter, TopicError> {
        let s = s.into();
        check_common(&s)?;
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            let is_last = levels.peek().is_none();
            let ok = match level {
                "#" => is_last,
                "+" => true,
                other => !other.contains(['+', '#']),
            };
            if !ok {
                return Err(TopicError::MisplacedWildcard);
            }
        }
        Ok(TopicFilter(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The filter's levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether this filter matches `topic`, level by level. This is the
    /// plain reference matcher: the trie must always agree with it.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if topic.is_system() && self.0.starts_with(['+', '#']) {
            return false;
        }
        let mut filter = self.levels();
        let mut name = topic.levels();
        loop {
            match (filter.next(), name.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(f), Some(n)) if f == n => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    #[test]
    fn names_refuse_wildcards_empty_and_null() {
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::Null));
        assert!(TopicName::new("/").is_ok());
        assert!(TopicName::new("\u{feff}a").is_ok());
    }

    #[test]
    fn filters_place_wildcards_alone() {
        for ok in [
            "#", "+", "a/#", "a/+/b", "+/+", "/#", "a//b", "$SOL/#", "+/#",
        ] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["a/#/b", "a#", "a+/b", "#/a", "a/b#", "++", "##"] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(TopicError::MisplacedWildcard),
                "{bad}"
            );
        }
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
    }

    #[test]
    fn level_count_is_capped() {
        let deep = "a/".repeat(MAX_TOPIC_LEVELS - 1) + "a";
        assert!(TopicName::new(deep.as_str()).is_ok());
        let deeper = "a/".repeat(MAX_TOPIC_LEVELS) + "a";
        assert_eq!(TopicName::new(deeper), Err(TopicError::TooManyLevels));
    }

    #[test]
    fn reference_matcher_follows_section_4_7() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "a/b/c", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SOL/x", false),
            ("$SOL/#", "$SOL/broker/uptime", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
        ];
        for (f, t, expected) in cases {
            assert_eq!(filter(f).matches(&name(t)), expected, "{f} ~ {t}");
        }
    }
}
