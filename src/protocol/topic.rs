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

/// The most `/` separators a topic name or filter may hold: 200, so at
/// most 201 levels.
///
/// The standard sets no bound, but a filter of tens of thousands of levels is
/// an attack on any broker that walks levels recursively (mosquitto
/// CVE-2019-11779). mosquitto counts the separators and refuses a topic name
/// or a filter with more than 200 (`TOPIC_HIERARCHY_LIMIT`, checked in
/// `mosquitto_pub_topic_check` and `mosquitto_sub_topic_check`); sol draws
/// the line in the same place, so that a topic one broker takes the other
/// takes too. The trie walks iteratively anyway, so this bound is about
/// memory, not the stack.
pub const MAX_TOPIC_SEPARATORS: usize = 200;

/// The most levels a topic or filter may have: one more than its
/// separators ([`MAX_TOPIC_SEPARATORS`]).
pub const MAX_TOPIC_LEVELS: usize = MAX_TOPIC_SEPARATORS + 1;

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
    /// More than [`MAX_TOPIC_SEPARATORS`] separators, so more than
    /// [`MAX_TOPIC_LEVELS`] levels.
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

/// What one pass over a topic's bytes found.
///
/// `/`, `+`, `#` and NUL are all ASCII, and in UTF-8 every byte of a
/// multi-byte character has its high bit set, so a byte loop over a valid
/// `&str` can never mistake part of a character for one of them: one look at
/// each byte replaces a search per character and a split on `/`.
struct Scan {
    /// `/` bytes: a topic of N levels holds N - 1 of them.
    separators: usize,
    /// Whether U+0000 occurs.
    null: bool,
    /// Whether `+` or `#` occurs.
    wildcard: bool,
    /// Whether a `+` or `#` shares its level with another byte, or a `#`
    /// is not in the last level ([MQTT-4.7.1-2], [MQTT-4.7.1-3]).
    misplaced: bool,
}

impl Scan {
    fn of(s: &str) -> Scan {
        let mut scan = Scan {
            separators: 0,
            null: false,
            wildcard: false,
            misplaced: false,
        };
        // The byte before the current one; the start of the string counts as
        // a separator, so a wildcard may open the first level.
        let mut previous = b'/';
        for &byte in s.as_bytes() {
            match byte {
                b'/' => scan.separators += 1,
                0 => scan.null = true,
                b'+' | b'#' => {
                    scan.wildcard = true;
                    // A wildcard opens its level...
                    scan.misplaced |= previous != b'/';
                }
                _ => {}
            }
            // ...and closes it: `+` is followed by a separator or the end,
            // `#` only by the end.
            scan.misplaced |= (previous == b'+' && byte != b'/') || previous == b'#';
            previous = byte;
        }
        scan
    }

    /// The rules names and filters share, in the order they are reported:
    /// not empty [MQTT-4.7.3-1], no U+0000 [MQTT-4.7.3-2], at most
    /// [`MAX_TOPIC_SEPARATORS`] separators.
    fn check_common(&self, s: &str) -> Result<(), TopicError> {
        if s.is_empty() {
            return Err(TopicError::Empty);
        }
        if self.null {
            return Err(TopicError::Null);
        }
        if self.separators > MAX_TOPIC_SEPARATORS {
            return Err(TopicError::TooManyLevels);
        }
        Ok(())
    }
}

/// A topic a message is published to: no `+`, no `#`, not empty.
///
/// The string is shared (`Arc<str>`): one PUBLISH routed to ten thousand
/// subscribers clones a pointer ten thousand times, not the topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `s` as a topic name. The string is checked in place and
    /// copied once, into the shared allocation, only when it is valid.
    pub fn new(s: impl AsRef<str>) -> Result<TopicName, TopicError> {
        let s = s.as_ref();
        let scan = Scan::of(s);
        scan.check_common(s)?;
        if scan.wildcard {
            // [MQTT-3.3.2-2], [MQTT-4.7.1-1]
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(Arc::from(s)))
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
        let scan = Scan::of(&s);
        scan.check_common(&s)?;
        if scan.misplaced {
            return Err(TopicError::MisplacedWildcard);
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

    /// Issue 17.4: mosquitto takes 200 separators (201 levels) in a name
    /// and a filter, and refuses 201; so does sol.
    #[test]
    fn two_hundred_separators_are_allowed_and_not_one_more() {
        assert_eq!(MAX_TOPIC_SEPARATORS, 200);
        let at = "a/".repeat(200) + "a";
        let over = "a/".repeat(201) + "a";
        assert_eq!(at.matches('/').count(), 200);
        assert_eq!(name(&at).levels().count(), 201);
        assert_eq!(filter(&at).levels().count(), 201);
        assert_eq!(
            TopicName::new(over.as_str()),
            Err(TopicError::TooManyLevels)
        );
        assert_eq!(TopicFilter::new(over), Err(TopicError::TooManyLevels));
        // Wildcards and empty levels count the same way.
        let wild_at = "+/".repeat(200) + "#";
        let wild_over = "+/".repeat(201) + "#";
        assert!(TopicFilter::new(wild_at).is_ok());
        assert_eq!(TopicFilter::new(wild_over), Err(TopicError::TooManyLevels));
        assert!(TopicName::new("/".repeat(200)).is_ok());
        assert_eq!(
            TopicName::new("/".repeat(201)),
            Err(TopicError::TooManyLevels)
        );
    }

    #[test]
    fn multi_byte_characters_next_to_separators_and_wildcards() {
        // 2-, 3- and 4-byte characters: none of their bytes is ASCII.
        for ok in ["é/ü", "€/a/€", "𝄞/𝄞", "/é/", "é//€"] {
            assert!(TopicName::new(ok).is_ok(), "{ok}");
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for ok in ["é/+/ü", "é/#", "+/€", "𝄞/+/#", "+/𝄞/+"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
            assert_eq!(TopicName::new(ok), Err(TopicError::WildcardInName), "{ok}");
        }
        for bad in ["é+", "+é", "é#", "#é", "a/é#", "€+/a", "a/+𝄞", "𝄞#"] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(TopicError::MisplacedWildcard),
                "{bad}"
            );
            assert_eq!(
                TopicName::new(bad),
                Err(TopicError::WildcardInName),
                "{bad}"
            );
        }
    }

    #[test]
    fn null_anywhere_is_refused_before_the_other_rules() {
        for bad in ["a/\0/b", "\0", "a\0", "\0a", "é\0€", "a/+\0", "#\0", "\0a#"] {
            assert_eq!(TopicName::new(bad), Err(TopicError::Null), "{bad:?}");
            assert_eq!(TopicFilter::new(bad), Err(TopicError::Null), "{bad:?}");
        }
    }

    #[test]
    fn empty_levels_are_levels() {
        for ok in ["/", "//", "a//b", "/a", "a/"] {
            assert_eq!(name(ok).levels().count(), ok.matches('/').count() + 1);
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for ok in ["/+/", "+//#", "//#", "+/", "/+"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        // 201 empty levels (200 separators) are allowed, 202 are not.
        let most = "/".repeat(MAX_TOPIC_LEVELS - 1);
        assert!(TopicName::new(most.as_str()).is_ok());
        assert!(TopicFilter::new(most.as_str()).is_ok());
        let over = "/".repeat(MAX_TOPIC_LEVELS);
        assert_eq!(
            TopicName::new(over.as_str()),
            Err(TopicError::TooManyLevels)
        );
        assert_eq!(TopicFilter::new(over), Err(TopicError::TooManyLevels));
    }

    #[test]
    fn filter_levels_are_capped_and_counted_before_wildcards() {
        let most = "+/".repeat(MAX_TOPIC_LEVELS - 1) + "#";
        assert_eq!(filter(&most).levels().count(), MAX_TOPIC_LEVELS);
        let over = "+/".repeat(MAX_TOPIC_LEVELS) + "#";
        assert_eq!(TopicFilter::new(over), Err(TopicError::TooManyLevels));
        // Too many levels is reported before a wildcard in a name or a
        // misplaced one in a filter, as it always was.
        let deep_name = "a/".repeat(MAX_TOPIC_LEVELS) + "+";
        assert_eq!(TopicName::new(deep_name), Err(TopicError::TooManyLevels));
        let deep_filter = "a/".repeat(MAX_TOPIC_LEVELS) + "a#";
        assert_eq!(
            TopicFilter::new(deep_filter),
            Err(TopicError::TooManyLevels)
        );
    }

    #[test]
    fn names_accept_borrowed_and_owned_strings() {
        let owned = String::from("a/b");
        assert_eq!(TopicName::new(&owned), TopicName::new(owned.clone()));
        assert_eq!(TopicName::new(owned.as_str()).unwrap().as_str(), "a/b");
    }

    /// The rules as they were first written, one search per rule: the
    /// reference the one-pass scan must always agree with.
    fn reference_name(s: &str) -> Result<(), TopicError> {
        reference_common(s)?;
        if s.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(())
    }

    fn reference_filter(s: &str) -> Result<(), TopicError> {
        reference_common(s)?;
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            let ok = match level {
                "#" => levels.peek().is_none(),
                "+" => true,
                other => !other.contains(['+', '#']),
            };
            if !ok {
                return Err(TopicError::MisplacedWildcard);
            }
        }
        Ok(())
    }

    fn reference_common(s: &str) -> Result<(), TopicError> {
        if s.is_empty() {
            return Err(TopicError::Empty);
        }
        if s.contains('\0') {
            return Err(TopicError::Null);
        }
        if s.split('/').count() > MAX_TOPIC_LEVELS {
            return Err(TopicError::TooManyLevels);
        }
        Ok(())
    }

    #[test]
    fn one_pass_agrees_with_the_reference_rules() {
        // Pieces that meet at every boundary the scan must get right.
        const PIECES: [&str; 10] = ["a", "/", "+", "#", "\0", "é", "€", "𝄞", "//", "ab"];
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1D);
        for _ in 0..50_000 {
            let len = rng.below(8);
            let s: String = (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect();
            assert_eq!(
                TopicName::new(s.as_str()).map(|_| ()),
                reference_name(&s),
                "name {s:?}"
            );
            assert_eq!(
                TopicFilter::new(s.as_str()).map(|_| ()),
                reference_filter(&s),
                "filter {s:?}"
            );
        }
        // Near the level cap, where only the count decides.
        for levels in MAX_TOPIC_LEVELS - 2..MAX_TOPIC_LEVELS + 2 {
            for level in ["", "a", "+", "é"] {
                let s = vec![level; levels].join("/");
                assert_eq!(TopicName::new(s.as_str()).map(|_| ()), reference_name(&s));
                assert_eq!(
                    TopicFilter::new(s.as_str()).map(|_| ()),
                    reference_filter(&s)
                );
            }
        }
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
