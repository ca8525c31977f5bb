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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::Hash;

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
    /// Nodes visited by the walks since [`SubscriptionTrie::take_visited`]
    /// last read them: the work routing cost, for the caller to budget.
    visited: Cell<usize>,
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
            visited: Cell::new(0),
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
    ///
    /// The walk visits each node at most once: a node stands for one filter
    /// prefix, which a topic's levels reach by one path only, so `+`
    /// branches never multiply. What it costs is the number of filter
    /// prefixes the topic matches, which a client can still make large
    /// (2 000 filters of 100 levels that part early and match a topic to
    /// their last level are 200 000 nodes): the nodes visited are added up
    /// for [`SubscriptionTrie::take_visited`], so that the caller can spread
    /// such publishes over time.
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
        let mut visited = 0usize;
        while let Some((id, offset)) = stack.pop() {
            visited += 1;
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
        self.visited.set(self.visited.get().saturating_add(visited));
        filters
    }

    /// The nodes the walks of [`SubscriptionTrie::for_each_match`] visited
    /// since the last call, which resets the count.
    pub fn take_visited(&self) -> usize {
        self.visited.replace(0)
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
// Retained trie: `retained.rs`
// ---------------------------------------------------------------------------

mod retained;

pub use retained::{RetainedCursor, RetainedTrie, Walked};

#[cfg(test)]
mod tests;
