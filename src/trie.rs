//! Topic tries: which subscriptions a publish reaches, and which retained
//! messages a new subscription receives (section 4.7).
//!
//! [`SubscriptionTrie`] stores filters and is queried with a topic name;
//! [`RetainedTrie`] stores topic names and is queried with a filter. Both are
//! generic over what they hold: this module knows nothing of sessions, QoS or
//! messages, only of levels and wildcards.
//!
//! # Why a trie
//!
//! Routing a publish must cost time in proportion to the topic's levels and
//! to the subscribers it reaches, never to the number of subscriptions held:
//! a broker that scans every filter per publish falls over at a few thousand
//! clients. Each node maps the next level to a child through a `HashMap`, and
//! keeps `+` and `#` in slots of their own, so a publish to `a/b` looks at
//! most at three children per level: `b`, `+` and `#`.
//!
//! # Why an arena, and why no recursion
//!
//! The nodes live in a [`Slab`] and point to their children by key. That lets
//! every walk use an explicit stack instead of recursion, so no topic or
//! filter, however deep, can overflow the call stack (mosquitto
//! CVE-2019-11779); and it lets removal free the nodes it leaves empty by
//! walking back up the path it came down, which nested owned nodes make
//! awkward to express without recursion.
//!
//! # The `$` rule
//!
//! Topics that start with `$` belong to the broker: a filter whose first level
//! is `+` or `#` does not match them ([MQTT-4.7.2-1]). Both tries apply this
//! at the root only, which is where a filter's first level is matched.
//! Explained in docs/06-topics-and-the-trie.md.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::ops::ControlFlow;

use slab::Slab;

use crate::protocol::{TopicFilter, TopicName};

/// Splits the first level off `rest`. The second half is `None` once the last
/// level is taken, which is not the same as `Some("")`: `a/` has a second,
/// empty level, `a` has none.
fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    }
}

/// Whether the children of a node must be hidden from a wildcard: true for
/// `$` levels right under the root ([MQTT-4.7.2-1]).
fn hidden_from_wildcard(at_root: bool, level: &str) -> bool {
    at_root && level.starts_with('$')
}

// ---------------------------------------------------------------------------
// Subscribers of one filter
// ---------------------------------------------------------------------------

/// Up to this many subscribers a linear scan is as fast as hashing, and most
/// filters have exactly one subscriber: the key index is built only past it.
const INDEX_FROM: usize = 16;

/// The subscribers of one filter: a vector that iterates fast when a publish
/// is routed, and past [`INDEX_FROM`] entries an index from key to position
/// so that insert and remove stay O(1) for a filter with 10 000 subscribers.
struct Subscribers<K, V> {
    entries: Vec<(K, V)>,
    /// Empty while unused; when in use, it holds every key in `entries`.
    index: HashMap<K, usize>,
}

impl<K: Copy + Eq + Hash, V> Subscribers<K, V> {
    fn new() -> Self {
        Subscribers {
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.entries.iter()
    }

    fn position(&self, key: &K) -> Option<usize> {
        if self.index.is_empty() {
            self.entries.iter().position(|(k, _)| k == key)
        } else {
            self.index.get(key).copied()
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(slot) = self.position(&key).and_then(|i| self.entries.get_mut(i)) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        self.entries.push((key, value));
        if !self.index.is_empty() {
            self.index.insert(key, self.entries.len() - 1);
        } else if self.entries.len() > INDEX_FROM {
            self.index = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (*k, i))
                .collect();
        }
        None
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.position(key)?;
        if i >= self.entries.len() {
            return None;
        }
        let (_, value) = self.entries.swap_remove(i);
        if !self.index.is_empty() {
            self.index.remove(key);
            // swap_remove moved the last entry into the hole.
            if let Some((moved, _)) = self.entries.get(i) {
                self.index.insert(*moved, i);
            }
            // Half the threshold, so that a filter hovering around it does
            // not build and drop its index on every change.
            if self.entries.len() < INDEX_FROM / 2 {
                self.index = HashMap::new();
            }
        }
        Some(value)
    }
}

// ---------------------------------------------------------------------------
// Subscription trie
// ---------------------------------------------------------------------------

/// How a filter level leads from a node to a child.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Level(&'a str),
    Plus,
    Hash,
}

impl<'a> Edge<'a> {
    fn of(level: &'a str) -> Edge<'a> {
        match level {
            "+" => Edge::Plus,
            "#" => Edge::Hash,
            other => Edge::Level(other),
        }
    }
}

struct FilterNode<K, V> {
    children: HashMap<Box<str>, usize>,
    plus: Option<usize>,
    /// A `#` node is always a leaf: `#` is the last level of any filter.
    hash: Option<usize>,
    subscribers: Subscribers<K, V>,
}

impl<K: Copy + Eq + Hash, V> FilterNode<K, V> {
    fn new() -> Self {
        FilterNode {
            children: HashMap::new(),
            plus: None,
            hash: None,
            subscribers: Subscribers::new(),
        }
    }

    fn child(&self, edge: Edge<'_>) -> Option<usize> {
        match edge {
            Edge::Level(level) => self.children.get(level).copied(),
            Edge::Plus => self.plus,
            Edge::Hash => self.hash,
        }
    }

    fn set_child(&mut self, edge: Edge<'_>, id: usize) {
        match edge {
            Edge::Level(level) => {
                self.children.insert(level.into(), id);
            }
            Edge::Plus => self.plus = Some(id),
            Edge::Hash => self.hash = Some(id),
        }
    }

    fn unlink_child(&mut self, edge: Edge<'_>) {
        match edge {
            Edge::Level(level) => {
                self.children.remove(level);
            }
            Edge::Plus => self.plus = None,
            Edge::Hash => self.hash = None,
        }
    }

    /// A node that leads nowhere and holds nothing can be freed.
    fn is_unused(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.subscribers.is_empty()
    }
}

/// Subscriptions: filter -> (key -> value). `K` names a subscriber (a session
/// key), `V` is what the subscription carries (its QoS, say).
pub struct SubscriptionTrie<K, V> {
    nodes: Slab<FilterNode<K, V>>,
    root: usize,
    len: usize,
    /// The walk's stack, kept between publishes so that routing one
    /// allocates nothing: (node, byte offset of the topic levels still to
    /// match, `None` when all are matched). Offsets rather than `&str` so
    /// that it borrows nothing from a topic.
    stack: RefCell<Vec<(usize, Option<usize>)>>,
}

impl<K: Copy + Eq + Hash, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash, V> SubscriptionTrie<K, V> {
    pub fn new() -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(FilterNode::new());
        SubscriptionTrie {
            nodes,
            root,
            len: 0,
            stack: RefCell::new(Vec::new()),
        }
    }

    /// Adds or replaces `key`'s subscription to `filter`; returns the value it
    /// replaced ([MQTT-3.8.4-3]: a second SUBSCRIBE to the same filter
    /// replaces the first).
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let mut id = self.root;
        for level in filter.levels() {
            id = self.child_or_insert(id, Edge::of(level))?;
        }
        let old = self.nodes.get_mut(id)?.subscribers.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`'s subscription to `filter`, freeing the nodes it leaves
    /// empty; returns its value, or `None` if there was no such subscription.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        // Each step down: the parent and the edge taken from it.
        let mut path = Vec::new();
        let mut id = self.root;
        for level in filter.levels() {
            let edge = Edge::of(level);
            let child = self.nodes.get(id)?.child(edge)?;
            path.push((id, edge));
            id = child;
        }
        let value = self.nodes.get_mut(id)?.subscribers.remove(key)?;
        self.len -= 1;
        self.prune(&path);
        Some(value)
    }

    /// Calls `f` for every (key, value) whose filter matches `topic`. A key
    /// subscribed with several matching filters is reported once per filter:
    /// the caller keeps the highest QoS ([MQTT-3.3.5-1]). Filters starting
    /// with `+` or `#` never match a topic starting with `$` ([MQTT-4.7.2-1]).
    ///
    /// Returns how many filters with subscribers matched. One filter holds
    /// each key at most once, so when it is 0 or 1 no key was reported
    /// twice and the caller need not look for repeats.
    pub fn for_each_match(&self, topic: &TopicName, mut f: impl FnMut(&K, &V)) -> usize {
        let mut filters = 0;
        let mut report = |id: usize| {
            if let Some(node) = self.nodes.get(id).filter(|n| !n.subscribers.is_empty()) {
                filters += 1;
                for (key, value) in node.subscribers.iter() {
                    f(key, value);
                }
            }
        };
        let wildcards_at_root = !topic.is_system();
        let topic = topic.as_str();
        // Only `f` could hold the stack already (by routing from inside a
        // callback): then this walk takes a fresh one.
        let mut fresh = Vec::new();
        let mut guard = self.stack.try_borrow_mut();
        let stack = match &mut guard {
            Ok(kept) => &mut **kept,
            Err(_) => &mut fresh,
        };
        stack.clear();
        // Each entry: a node the topic's first levels lead to, and where the
        // levels still to match start. Each node pushes at most two
        // children, so the stack never holds more than the topic's levels
        // plus one.
        stack.push((self.root, Some(0)));
        while let Some((id, offset)) = stack.pop() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let wildcards = id != self.root || wildcards_at_root;
            // `#` matches the level it hangs from too: `sport/#` matches
            // `sport` (section 4.7.1.2).
            if let Some(hash) = node.hash.filter(|_| wildcards) {
                report(hash);
            }
            let Some(at) = offset else {
                report(id);
                continue;
            };
            let Some(rest) = topic.get(at..) else {
                continue;
            };
            let (level, tail) = split_level(rest);
            // `tail` is a suffix of `topic`: where it starts is the length
            // of what comes before it.
            let tail = tail.map(|tail| topic.len().saturating_sub(tail.len()));
            if let Some(&child) = node.children.get(level) {
                stack.push((child, tail));
            }
            if let Some(plus) = node.plus.filter(|_| wildcards) {
                stack.push((plus, tail));
            }
        }
        filters
    }

    /// Number of (filter, key) subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes allocated, the root included: 1 when the trie is empty.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn child_or_insert(&mut self, parent: usize, edge: Edge<'_>) -> Option<usize> {
        if let Some(id) = self.nodes.get(parent)?.child(edge) {
            return Some(id);
        }
        let id = self.nodes.insert(FilterNode::new());
        self.nodes.get_mut(parent)?.set_child(edge, id);
        Some(id)
    }

    /// Frees the nodes at the bottom of `path` that hold nothing any more,
    /// deepest first, stopping at the first one still in use. The root is
    /// never a child, so it is never freed.
    fn prune(&mut self, path: &[(usize, Edge<'_>)]) {
        for &(parent, edge) in path.iter().rev() {
            let Some(child) = self.nodes.get(parent).and_then(|p| p.child(edge)) else {
                return;
            };
            if !self.nodes.get(child).is_some_and(FilterNode::is_unused) {
                return;
            }
            self.nodes.try_remove(child);
            if let Some(parent) = self.nodes.get_mut(parent) {
                parent.unlink_child(edge);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Retained trie
// ---------------------------------------------------------------------------

struct TopicNode<V> {
    children: HashMap<Box<str>, usize>,
    value: Option<V>,
}

impl<V> TopicNode<V> {
    fn new() -> Self {
        TopicNode {
            children: HashMap::new(),
            value: None,
        }
    }
}

/// Retained messages: topic -> value, queried by filter when a client
/// subscribes ([MQTT-3.3.1-6]).
pub struct RetainedTrie<V> {
    nodes: Slab<TopicNode<V>>,
    root: usize,
    len: usize,
}

impl<V> Default for RetainedTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedTrie<V> {
    pub fn new() -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(TopicNode::new());
        RetainedTrie {
            nodes,
            root,
            len: 0,
        }
    }

    /// Stores `value` under `topic`; returns the value it replaced.
    pub fn insert(&mut self, topic: &TopicName, value: V) -> Option<V> {
        let mut id = self.root;
        for level in topic.levels() {
            id = self.child_or_insert(id, level)?;
        }
        let old = self.nodes.get_mut(id)?.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the value under `topic`, freeing the nodes it leaves empty.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        let mut path = Vec::new();
        let mut id = self.root;
        for level in topic.levels() {
            let child = *self.nodes.get(id)?.children.get(level)?;
            path.push((id, level));
            id = child;
        }
        let value = self.nodes.get_mut(id)?.value.take()?;
        self.len -= 1;
        self.prune(&path);
        Some(value)
    }

    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        let mut id = self.root;
        for level in topic.levels() {
            id = *self.nodes.get(id)?.children.get(level)?;
        }
        self.nodes.get(id)?.value.as_ref()
    }

    /// Calls `f` for every stored value whose topic `filter` matches. A first
    /// level `+` or `#` skips topics starting with `$` ([MQTT-4.7.2-1]).
    pub fn for_each_match(&self, filter: &TopicFilter, mut f: impl FnMut(&V)) {
        let _ = self.try_for_each_match(filter, |value| {
            f(value);
            ControlFlow::Continue(())
        });
    }

    /// As [`RetainedTrie::for_each_match`], but `f` can stop the walk by
    /// returning `ControlFlow::Break`; so does the result. A subscriber that
    /// can take no more retained messages costs no more of the walk.
    pub fn try_for_each_match(
        &self,
        filter: &TopicFilter,
        mut f: impl FnMut(&V) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // Each entry: a node the filter's first levels lead to, and the
        // filter levels still to match. A node pushed with `Some("#")` stands
        // for its whole subtree, itself included.
        let mut stack = vec![(self.root, Some(filter.as_str()))];
        while let Some((id, rest)) = stack.pop() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let Some(rest) = rest else {
                if let Some(value) = &node.value {
                    f(value)?;
                }
                continue;
            };
            let at_root = id == self.root;
            let (level, tail) = split_level(rest);
            match level {
                "#" => {
                    // `sport/#` matches `sport` itself too.
                    if let Some(value) = &node.value {
                        f(value)?;
                    }
                    for (name, &child) in &node.children {
                        if !hidden_from_wildcard(at_root, name) {
                            stack.push((child, Some("#")));
                        }
                    }
                }
                "+" => {
                    for (name, &child) in &node.children {
                        if !hidden_from_wildcard(at_root, name) {
                            stack.push((child, tail));
                        }
                    }
                }
                literal => {
                    if let Some(&child) = node.children.get(literal) {
                        stack.push((child, tail));
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Number of retained values held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes allocated, the root included: 1 when the trie is empty.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn child_or_insert(&mut self, parent: usize, level: &str) -> Option<usize> {
        if let Some(&id) = self.nodes.get(parent)?.children.get(level) {
            return Some(id);
        }
        let id = self.nodes.insert(TopicNode::new());
        self.nodes
            .get_mut(parent)?
            .children
            .insert(level.into(), id);
        Some(id)
    }

    /// Frees the empty nodes at the bottom of `path`, deepest first.
    fn prune(&mut self, path: &[(usize, &str)]) {
        for &(parent, level) in path.iter().rev() {
            let Some(&child) = self.nodes.get(parent).and_then(|p| p.children.get(level)) else {
                return;
            };
            let unused = self
                .nodes
                .get(child)
                .is_some_and(|c| c.value.is_none() && c.children.is_empty());
            if !unused {
                return;
            }
            self.nodes.try_remove(child);
            if let Some(parent) = self.nodes.get_mut(parent) {
                parent.children.remove(level);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    /// Every (key, value) the trie reports for `topic`, sorted.
    fn matches<V: Copy + Ord>(trie: &SubscriptionTrie<u32, V>, topic: &str) -> Vec<(u32, V)> {
        let mut out = Vec::new();
        trie.for_each_match(&name(topic), |k, v| out.push((*k, *v)));
        out.sort();
        out
    }

    #[test]
    fn for_each_match_counts_the_filters_that_matched() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.for_each_match(&name("a/b"), |_, _| {}), 0);
        trie.insert(&filter("a/b"), 1u32, 0u8);
        trie.insert(&filter("a/b"), 2, 0);
        trie.insert(&filter("x/#"), 1, 0);
        assert_eq!(trie.for_each_match(&name("a/b"), |_, _| {}), 1);
        trie.insert(&filter("a/+"), 1, 1);
        trie.insert(&filter("#"), 3, 1);
        let mut seen = Vec::new();
        let filters = trie.for_each_match(&name("a/b"), |&k, _| seen.push(k));
        assert_eq!(filters, 3);
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 1, 2, 3]);
        // A filter left without subscribers is not counted.
        trie.remove(&filter("a/+"), &1);
        assert_eq!(trie.for_each_match(&name("a/b"), |_, _| {}), 2);
    }

    #[test]
    fn a_walk_started_from_inside_a_callback_sees_the_same_matches() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("a/+/c"), 1u32, 0u8);
        trie.insert(&filter("a/#"), 2, 0);
        let mut inner = Vec::new();
        let outer = trie.for_each_match(&name("a/b/c"), |_, _| {
            inner.push(matches(&trie, "a/b/c"));
        });
        assert_eq!(outer, 2);
        assert_eq!(inner.len(), 2);
        for found in inner {
            assert_eq!(found, vec![(1, 0), (2, 0)]);
        }
        // And the kept stack still works after the nested walks.
        assert_eq!(matches(&trie, "a/x/c"), vec![(1, 0), (2, 0)]);
    }

    fn retained_matches<V: Copy + Ord>(trie: &RetainedTrie<V>, f: &str) -> Vec<V> {
        let mut out = Vec::new();
        trie.for_each_match(&filter(f), |v| out.push(*v));
        out.sort();
        out
    }

    /// The examples of sections 4.7.1 and 4.7.2, asked of both tries.
    const SPEC: &[(&str, &str, bool)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis/player1", true),
        ("#", "/", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/tennis/#", "sport/tennis", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("a/b", "a//b", false),
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("+", "$SYS", false),
        ("$SYS/#", "$SYS", true),
        ("a/+", "a/$x", true),
        ("a/#", "a/$x", true),
    ];

    #[test]
    fn subscription_trie_follows_the_spec_examples() {
        for &(f, t, expected) in SPEC {
            assert_eq!(filter(f).matches(&name(t)), expected, "reference {f} ~ {t}");
            let mut trie = SubscriptionTrie::new();
            trie.insert(&filter(f), 7, 1u8);
            let want = if expected { vec![(7, 1)] } else { vec![] };
            assert_eq!(matches(&trie, t), want, "{f} ~ {t}");
        }
    }

    #[test]
    fn retained_trie_follows_the_spec_examples() {
        for &(f, t, expected) in SPEC {
            let mut trie = RetainedTrie::new();
            trie.insert(&name(t), 5u8);
            let want = if expected { vec![5] } else { vec![] };
            assert_eq!(retained_matches(&trie, f), want, "{f} ~ {t}");
        }
    }

    #[test]
    fn every_matching_filter_reports_its_subscribers() {
        let mut trie = SubscriptionTrie::new();
        for (i, f) in ["a/b", "a/+", "a/#", "#", "+/b", "a/b/c", "b/#", "+/+/+"]
            .iter()
            .enumerate()
        {
            trie.insert(&filter(f), i as u32, 0u8);
        }
        let keys = |t| {
            matches(&trie, t)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys("a/b"), [0, 1, 2, 3, 4]);
        assert_eq!(keys("a"), [2, 3]);
        assert_eq!(keys("a/b/c"), [2, 3, 5, 7]);
        assert_eq!(keys("$a/b"), Vec::<u32>::new());
    }

    #[test]
    fn one_key_under_several_filters_is_reported_per_filter() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("a/#"), 1, 0u8);
        trie.insert(&filter("a/+"), 1, 2);
        trie.insert(&filter("a/b"), 2, 1);
        assert_eq!(matches(&trie, "a/b"), [(1, 0), (1, 2), (2, 1)]);
    }

    #[test]
    fn insert_replaces_and_returns_the_old_value() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.insert(&filter("a/+"), 1, 0u8), None);
        assert_eq!(trie.insert(&filter("a/+"), 1, 2), Some(0));
        assert_eq!(trie.len(), 1);
        assert_eq!(matches(&trie, "a/x"), [(1, 2)]);

        let mut retained = RetainedTrie::new();
        assert_eq!(retained.insert(&name("a/b"), 1u8), None);
        assert_eq!(retained.insert(&name("a/b"), 2), Some(1));
        assert_eq!(retained.len(), 1);
        assert_eq!(retained.get(&name("a/b")), Some(&2));
    }

    #[test]
    fn remove_prunes_back_to_an_empty_root() {
        let mut trie = SubscriptionTrie::new();
        let filters = [
            "a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "/", "a//b", "$SYS/#",
        ];
        for f in filters {
            trie.insert(&filter(f), 1u32, 0u8);
            trie.insert(&filter(f), 2, 0);
        }
        assert_eq!(trie.len(), 2 * filters.len());
        assert!(trie.node_count() > 1);
        assert_eq!(trie.remove(&filter("a/b"), &3), None);
        assert_eq!(trie.remove(&filter("a/b/c/d"), &1), None);
        assert_eq!(trie.remove(&filter("x"), &1), None);
        for f in filters {
            assert_eq!(trie.remove(&filter(f), &1), Some(0), "{f}");
            assert_eq!(trie.remove(&filter(f), &1), None, "{f}");
        }
        // Removing an inner filter keeps the nodes below it alive.
        assert_eq!(matches(&trie, "a/b/c"), [(2, 0), (2, 0), (2, 0), (2, 0)]);
        for f in filters {
            assert_eq!(trie.remove(&filter(f), &2), Some(0), "{f}");
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
        assert_eq!(matches(&trie, "a/b"), []);

        let mut retained = RetainedTrie::new();
        let topics = ["a/b/c", "a/b", "a", "/", "a//b", "$SYS/x"];
        for (i, t) in topics.iter().enumerate() {
            retained.insert(&name(t), i);
        }
        assert_eq!(retained.remove(&name("a/b/c/d")), None);
        assert_eq!(retained.remove(&name("a/x")), None);
        for (i, t) in topics.iter().enumerate() {
            assert_eq!(retained.remove(&name(t)), Some(i), "{t}");
            assert_eq!(retained.get(&name(t)), None, "{t}");
        }
        assert!(retained.is_empty());
        assert_eq!(retained.node_count(), 1);
    }

    #[test]
    fn deepest_filters_and_topics_walk_without_recursion() {
        let deep = vec!["a"; crate::protocol::MAX_TOPIC_LEVELS].join("/");
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter(&deep), 1u32, 0u8);
        let plus = vec!["+"; crate::protocol::MAX_TOPIC_LEVELS].join("/");
        trie.insert(&filter(&plus), 2, 0);
        assert_eq!(matches(&trie, &deep), [(1, 0), (2, 0)]);
        assert_eq!(trie.remove(&filter(&deep), &1), Some(0));
        assert_eq!(trie.remove(&filter(&plus), &2), Some(0));
        assert_eq!(trie.node_count(), 1);

        let mut retained = RetainedTrie::new();
        retained.insert(&name(&deep), 1u8);
        assert_eq!(retained_matches(&retained, "#"), [1]);
        assert_eq!(retained_matches(&retained, &plus), [1]);
        assert_eq!(retained.remove(&name(&deep)), Some(1));
        assert_eq!(retained.node_count(), 1);
    }

    #[test]
    fn many_subscribers_on_one_filter() {
        let mut trie = SubscriptionTrie::new();
        let f = filter("sensors/+/temp");
        for key in 0..10_000u32 {
            assert_eq!(trie.insert(&f, key, key * 2), None);
        }
        assert_eq!(trie.insert(&f, 1234, 0), Some(2468));
        assert_eq!(trie.len(), 10_000);
        let mut rng = XorShift::new(7);
        let mut keys: Vec<u32> = (0..10_000).collect();
        // A Fisher-Yates shuffle, so removal hits every position of the vector.
        for i in (1..keys.len()).rev() {
            keys.swap(i, rng.below(i + 1));
        }
        for (n, key) in keys.iter().enumerate() {
            let want = if *key == 1234 { 0 } else { key * 2 };
            assert_eq!(trie.remove(&f, key), Some(want));
            assert_eq!(trie.remove(&f, key), None);
            if n % 1000 == 0 {
                let mut seen = 0;
                trie.for_each_match(&name("sensors/x/temp"), |k, v| {
                    assert_eq!(*v, if *k == 1234 { 0 } else { k * 2 });
                    seen += 1;
                });
                assert_eq!(seen, 10_000 - n - 1);
            }
        }
        assert_eq!(trie.node_count(), 1);
    }

    /// A xorshift64 generator: reproducible randomness without a crate.
    struct XorShift(u64);

    impl XorShift {
        fn new(seed: u64) -> Self {
            XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const LEVELS: &[&str] = &["a", "b", "$x", ""];

    /// A topic of one to four levels; a single empty level would be the
    /// empty topic, which is not a topic at all.
    fn random_topic(rng: &mut XorShift) -> String {
        loop {
            let n = 1 + rng.below(4);
            let topic = (0..n)
                .map(|_| rng.pick(LEVELS))
                .collect::<Vec<_>>()
                .join("/");
            if !topic.is_empty() {
                return topic;
            }
        }
    }

    /// A filter of up to four levels and maybe a final `#`: the same levels
    /// as the topics, with `+` as likely as any of them.
    fn random_filter(rng: &mut XorShift) -> String {
        loop {
            let n = rng.below(5);
            let mut levels: Vec<&str> = (0..n)
                .map(|_| rng.pick(&["a", "b", "$x", "", "+", "+"]))
                .collect();
            if n == 0 || rng.below(3) == 0 {
                levels.push("#");
            }
            let filter = levels.join("/");
            if !filter.is_empty() {
                return filter;
            }
        }
    }

    #[test]
    fn subscriptions_agree_with_the_reference_matcher() {
        let mut rng = XorShift::new(1);
        let mut trie = SubscriptionTrie::new();
        // (filter, key) -> value; values are unique so each report names
        // exactly one subscription.
        let mut model: BTreeMap<(TopicFilter, u32), u64> = BTreeMap::new();
        for round in 0..10_000u64 {
            let f = filter(&random_filter(&mut rng));
            let key = rng.below(6) as u32;
            if rng.below(3) == 0 {
                let got = trie.remove(&f, &key);
                assert_eq!(got, model.remove(&(f.clone(), key)), "remove {f} {key}");
            } else {
                let got = trie.insert(&f, key, round);
                assert_eq!(
                    got,
                    model.insert((f.clone(), key), round),
                    "insert {f} {key}"
                );
            }
            assert_eq!(trie.len(), model.len());

            let t = name(&random_topic(&mut rng));
            let mut got = Vec::new();
            trie.for_each_match(&t, |k, v| got.push((*k, *v)));
            got.sort();
            let mut want: Vec<(u32, u64)> = model
                .iter()
                .filter(|((f, _), _)| f.matches(&t))
                .map(|((_, k), v)| (*k, *v))
                .collect();
            want.sort();
            assert_eq!(got, want, "round {round}: topic {t}");
        }
        assert!(model.len() > 100, "the model stayed too small to test much");
        for (f, key) in std::mem::take(&mut model).into_keys() {
            assert!(trie.remove(&f, &key).is_some());
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn retained_messages_agree_with_the_reference_matcher() {
        let mut rng = XorShift::new(2);
        let mut trie = RetainedTrie::new();
        let mut model: BTreeMap<TopicName, u64> = BTreeMap::new();
        for round in 0..10_000u64 {
            let t = name(&random_topic(&mut rng));
            match rng.below(4) {
                0 => assert_eq!(trie.remove(&t), model.remove(&t), "remove {t}"),
                1 => assert_eq!(trie.get(&t), model.get(&t), "get {t}"),
                _ => assert_eq!(
                    trie.insert(&t, round),
                    model.insert(t.clone(), round),
                    "insert {t}"
                ),
            }
            assert_eq!(trie.len(), model.len());

            let f = filter(&random_filter(&mut rng));
            let mut got = Vec::new();
            trie.for_each_match(&f, |v| got.push(*v));
            got.sort();
            let mut want: Vec<u64> = model
                .iter()
                .filter(|(t, _)| f.matches(t))
                .map(|(_, v)| *v)
                .collect();
            want.sort();
            assert_eq!(got, want, "round {round}: filter {f}");
        }
        assert!(model.len() > 50, "the model stayed too small to test much");
        for t in std::mem::take(&mut model).into_keys() {
            assert!(trie.remove(&t).is_some());
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn subscribers_index_agrees_with_a_hash_map() {
        let mut rng = XorShift::new(3);
        let mut subs = Subscribers::new();
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut indexed = false;
        for round in 0..50_000u64 {
            // Drift the population up and down across the index threshold.
            let phase = (round / 2_000) % 2 == 0;
            let key = rng.below(4 * INDEX_FROM) as u32;
            if (rng.below(10) < 6) == phase {
                assert_eq!(subs.insert(key, round), model.insert(key, round));
            } else {
                assert_eq!(subs.remove(&key), model.remove(&key));
            }
            indexed |= !subs.index.is_empty();
            assert_eq!(subs.entries.len(), model.len());
            if !subs.index.is_empty() {
                assert_eq!(subs.index.len(), subs.entries.len());
                for (i, (k, _)) in subs.entries.iter().enumerate() {
                    assert_eq!(subs.index.get(k), Some(&i));
                }
            }
            let mut got: Vec<_> = subs.iter().copied().collect();
            got.sort();
            let mut want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            want.sort();
            assert_eq!(got, want, "round {round}");
        }
        assert!(indexed, "the test never crossed the index threshold");
    }
}
