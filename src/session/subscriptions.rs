//! A session's subscriptions: the filters it holds with their granted QoS,
//! and what they cost for `max_memory`.

use std::collections::HashMap;

use crate::protocol::{QoS, TopicFilter};

/// A session's subscriptions, filter to granted QoS: a map boxed on first
/// use. Many clients only publish, and an empty map inline would cost each
/// session 48 bytes against 8. It keeps the bytes and levels of its
/// filters, for `max_memory`.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub struct Subscriptions {
    map: Option<Box<HashMap<TopicFilter, QoS>>>,
    bytes: usize,
    levels: usize,
}

impl Subscriptions {
    /// Adds or replaces the subscription to `filter`; returns the QoS it
    /// replaced.
    pub fn insert(&mut self, filter: TopicFilter, qos: QoS) -> Option<QoS> {
        let (bytes, levels) = size_of_filter(&filter);
        let replaced = self
            .map
            .get_or_insert_with(Box::default)
            .insert(filter, qos);
        if replaced.is_none() {
            self.bytes = self.bytes.saturating_add(bytes);
            self.levels = self.levels.saturating_add(levels);
        }
        replaced
    }

    /// Removes the subscription to `filter`; returns its QoS if there was one.
    /// The map goes once empty: unsubscribing is rare, holding it is not.
    pub fn remove(&mut self, filter: &TopicFilter) -> Option<QoS> {
        let map = self.map.as_mut()?;
        let qos = map.remove(filter);
        if qos.is_some() {
            let (bytes, levels) = size_of_filter(filter);
            self.bytes = self.bytes.saturating_sub(bytes);
            self.levels = self.levels.saturating_sub(levels);
        }
        if map.is_empty() {
            self.map = None;
        }
        qos
    }

    pub fn get(&self, filter: &TopicFilter) -> Option<QoS> {
        self.map.as_ref()?.get(filter).copied()
    }

    pub fn keys(&self) -> impl Iterator<Item = &TopicFilter> {
        self.map.iter().flat_map(|map| map.keys())
    }

    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |map| map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of every filter held.
    pub fn filter_bytes(&self) -> usize {
        self.bytes
    }

    /// The levels of every filter held: what the routing trie holds a node
    /// for (at most: filters that share a prefix share its nodes).
    pub fn filter_levels(&self) -> usize {
        self.levels
    }
}

/// A filter's bytes and its levels.
fn size_of_filter(filter: &TopicFilter) -> (usize, usize) {
    let text = filter.as_str();
    (text.len(), text.split('/').count())
}
