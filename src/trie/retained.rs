//! [`RetainedTrie`]: topic -> retained message, queried by filter when a
//! client subscribes, and [`RetainedCursor`], a walk of it that can stop
//! anywhere and go on later.
//!
//! # Why a walk that can stop
//!
//! One filter can match every retained message (`#` over a hundred
//! thousand of them), and one with a `+` can visit every node without
//! matching any: a SUBSCRIBE of thousands of such filters asked for
//! seconds of work in one go. A [`RetainedCursor`] does a bounded part of
//! the walk per call and keeps its place in between, so the caller decides
//! how much of it a turn of the loop can afford, and can wait for a
//! subscriber's output to drain before going on.
//!
//! Its place survives changes to the trie: children are kept in name order
//! (a `BTreeMap`), so a cursor remembers the name of the last child it went
//! into, not a position that an insert would shift; and every node carries
//! a serial that is never reused, so a cursor that finds another node under
//! a key it kept (the old one removed, its slab slot reused) knows that the
//! subtree it was in is gone. Whatever was stored there since is newer than
//! the walk, and the caller skips newer values anyway (a subscriber gets
//! those as live messages).

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use slab::Slab;

use super::{hidden_from_wildcard, split_level};
use crate::protocol::{TopicFilter, TopicName};

struct TopicNode<V> {
    /// In name order, which is what lets a [`RetainedCursor`] go on after
    /// the last child it visited.
    children: BTreeMap<Box<str>, usize>,
    value: Option<V>,
    /// Unique within the trie: see the module documentation.
    serial: u64,
}

impl<V> TopicNode<V> {
    fn new(serial: u64) -> Self {
        TopicNode {
            children: BTreeMap::new(),
            value: None,
            serial,
        }
    }
}

/// Retained messages: topic -> value, queried by filter when a client
/// subscribes ([MQTT-3.3.1-6]).
pub struct RetainedTrie<V> {
    nodes: Slab<TopicNode<V>>,
    root: usize,
    len: usize,
    /// The serial the next node gets.
    next_serial: u64,
}

impl<V> Default for RetainedTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedTrie<V> {
    pub fn new() -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(TopicNode::new(0));
        RetainedTrie {
            nodes,
            root,
            len: 0,
            next_serial: 1,
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
    pub(super) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn child_or_insert(&mut self, parent: usize, level: &str) -> Option<usize> {
        if let Some(&id) = self.nodes.get(parent)?.children.get(level) {
            return Some(id);
        }
        let id = self.nodes.insert(TopicNode::new(self.next_serial));
        self.next_serial += 1;
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

// ---------------------------------------------------------------------------
// A walk that can stop and go on
// ---------------------------------------------------------------------------

/// Where a frame of a [`RetainedCursor`] stands in its filter.
#[derive(Clone, Copy, Debug)]
enum Rest {
    /// The filter levels from this byte offset on are still to match.
    At(usize),
    /// Every level matched: the node's own value, nothing below it.
    End,
    /// Under a `#`: the node's value and its whole subtree.
    Subtree,
}

/// One node on a cursor's path from the root.
#[derive(Debug)]
struct Frame {
    id: usize,
    serial: u64,
    rest: Rest,
    /// Whether the node's own value was taken (or it has none to offer).
    entered: bool,
    /// The child the walk went into last; it goes on with the next one in
    /// name order. `Some("")` after a literal level's one child.
    after: Option<String>,
}

/// How far a call to [`RetainedCursor::resume`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walked {
    /// Every match was offered: the walk is over.
    Done,
    /// The callback refused a value: the next call offers it again.
    Stopped,
    /// The budget is spent: the next call goes on where this one stopped.
    Budget,
}

/// A walk of a [`RetainedTrie`] for one filter, done a part at a time (see
/// the module documentation). Its memory is the filter and one frame per
/// level of the path it is on, however wide the trie.
#[derive(Debug)]
pub struct RetainedCursor {
    filter: TopicFilter,
    stack: Vec<Frame>,
}

impl RetainedCursor {
    /// A walk of `filter` that has not started.
    pub fn new<V>(trie: &RetainedTrie<V>, filter: TopicFilter) -> RetainedCursor {
        let serial = trie.nodes.get(trie.root).map_or(0, |root| root.serial);
        RetainedCursor {
            filter,
            stack: vec![Frame {
                id: trie.root,
                serial,
                rest: Rest::At(0),
                entered: false,
                after: None,
            }],
        }
    }

    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }

    /// Frames held: one per level of the path the walk is on.
    #[cfg(test)]
    pub(super) fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Offers `f` every value whose topic the filter matches, from where
    /// the last call stopped, as [`RetainedTrie::try_for_each_match`]
    /// does. Each node looked at costs one unit of `budget`; a value `f`
    /// breaks on is offered again by the next call. Values stored while the
    /// walk was paused may or may not be offered, each at most once.
    pub fn resume<V>(
        &mut self,
        trie: &RetainedTrie<V>,
        budget: &mut usize,
        mut f: impl FnMut(&V) -> ControlFlow<()>,
    ) -> Walked {
        let filter = self.filter.as_str();
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Walked::Done;
            };
            // A node costs one unit when the walk first comes to it, each
            // child a wildcard goes through one more (`Children::step`);
            // coming back up to a node costs nothing, so every unit buys
            // progress.
            if !frame.entered {
                if *budget == 0 {
                    return Walked::Budget;
                }
                *budget -= 1;
            }
            let node = trie
                .nodes
                .get(frame.id)
                .filter(|n| n.serial == frame.serial);
            let Some(node) = node else {
                // Its subtree is gone (module documentation).
                self.stack.pop();
                continue;
            };
            let (level, tail) = match frame.rest {
                Rest::At(at) => {
                    let (level, tail) = split_level(filter.get(at..).unwrap_or_default());
                    (Some(level), tail)
                }
                Rest::End | Rest::Subtree => (None, None),
            };
            if !frame.entered {
                // `sport/#` matches `sport` itself too.
                let offer = !matches!(frame.rest, Rest::At(_)) || level == Some("#");
                if let Some(value) = node.value.as_ref().filter(|_| offer) {
                    if f(value).is_break() {
                        return Walked::Stopped;
                    }
                }
                frame.entered = true;
            }
            let at_root = frame.id == trie.root;
            let wildcard = match (frame.rest, level) {
                (Rest::End, _) => {
                    self.stack.pop();
                    continue;
                }
                (Rest::Subtree, _) | (_, Some("#")) => Rest::Subtree,
                (_, Some("+")) => rest_after(filter, tail),
                (_, literal) => {
                    let child = match frame.after.replace(String::new()) {
                        Some(_) => None,
                        None => literal.and_then(|literal| node.children.get(literal)),
                    };
                    match child {
                        Some(&id) => {
                            let rest = rest_after(filter, tail);
                            self.stack.push(Frame::new(trie, id, rest));
                        }
                        None => {
                            self.stack.pop();
                        }
                    }
                    continue;
                }
            };
            let children = Children {
                filter,
                rest: wildcard,
                at_root,
            };
            match children.step(trie, node, &mut frame.after, budget, &mut f) {
                Step::Descend(id) => self.stack.push(Frame::new(trie, id, wildcard)),
                Step::Exhausted => {
                    self.stack.pop();
                }
                Step::Stopped => return Walked::Stopped,
                Step::Budget => return Walked::Budget,
            }
        }
    }
}

impl Frame {
    fn new<V>(trie: &RetainedTrie<V>, id: usize, rest: Rest) -> Frame {
        Frame {
            id,
            serial: trie.nodes.get(id).map_or(0, |node| node.serial),
            rest,
            entered: false,
            after: None,
        }
    }
}

/// What [`Children::step`] came to.
enum Step {
    /// A child with more to walk below it: the walk goes down into it.
    Descend(usize),
    /// Every child was walked.
    Exhausted,
    /// The callback refused a child's value.
    Stopped,
    /// The budget is spent.
    Budget,
}

/// The children of a node that a wildcard leads into, all with the same
/// `rest` of the filter.
struct Children<'f> {
    filter: &'f str,
    rest: Rest,
    at_root: bool,
}

impl Children<'_> {
    /// Goes through `node`'s children after `after`, in name order, in one
    /// pass: a child whose part of the walk is its value alone (the last
    /// level matched, or a leaf under `#`) is offered right here, and one
    /// that cannot lead to a match (the next level a literal it has no
    /// child for) is passed over, each for one unit of `budget`; the walk
    /// only goes down into the others. The `+` of `w/+/q` over 10 000
    /// topics `w/N/v` is one pass over `w`'s children, with no frame for
    /// any of them. `after` is left naming the last child dealt with.
    fn step<V>(
        &self,
        trie: &RetainedTrie<V>,
        node: &TopicNode<V>,
        after: &mut Option<String>,
        budget: &mut usize,
        f: &mut impl FnMut(&V) -> ControlFlow<()>,
    ) -> Step {
        let start = match after.as_deref() {
            Some(name) => Bound::Excluded(name),
            None => Bound::Unbounded,
        };
        let mut done: Option<&str> = None;
        let mut step = Step::Exhausted;
        for (name, &id) in node.children.range::<str, _>((start, Bound::Unbounded)) {
            if hidden_from_wildcard(self.at_root, name) {
                done = Some(name);
                continue;
            }
            if *budget == 0 {
                step = Step::Budget;
                break;
            }
            *budget -= 1;
            let Some(child) = trie.nodes.get(id) else {
                done = Some(name);
                continue;
            };
            let value_only = match self.rest {
                Rest::End => true,
                Rest::Subtree => child.children.is_empty(),
                Rest::At(at) => {
                    let (level, _) = split_level(self.filter.get(at..).unwrap_or_default());
                    if level != "+" && level != "#" && !child.children.contains_key(level) {
                        done = Some(name);
                        continue;
                    }
                    false
                }
            };
            if !value_only {
                done = Some(name);
                step = Step::Descend(id);
                break;
            }
            if let Some(value) = &child.value {
                if f(value).is_break() {
                    step = Step::Stopped;
                    break;
                }
            }
            done = Some(name);
        }
        if let Some(name) = done {
            match after {
                Some(kept) => {
                    kept.clear();
                    kept.push_str(name);
                }
                None => *after = Some(name.to_string()),
            }
        }
        step
    }
}

/// Where the filter goes on below a child: at `tail`, a suffix of
/// `filter`, or nowhere once every level matched.
fn rest_after(filter: &str, tail: Option<&str>) -> Rest {
    match tail {
        Some(tail) => Rest::At(filter.len().saturating_sub(tail.len())),
        None => Rest::End,
    }
}
