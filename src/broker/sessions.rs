//! `Sessions`: every session the broker holds, the index from client id to
//! session, and the subscription trie that routes to them, kept in step in
//! one place.
//!
//! A session's subscriptions are held twice on purpose: in the
//! [`Session`], as plain data that ends with it (and can be written out),
//! and in the trie, which is what routing reads. Only [`Sessions::subscribe`],
//! [`Sessions::unsubscribe`] and [`Sessions::remove`] change them, so the
//! two cannot drift apart.
//!
//! It knows no timers, no ACL and no packets: the broker cancels a removed
//! session's resend and expiry timers, checks what a client may do, and speaks MQTT.
//! Explained in docs/03-connect-sessions-keepalive.md.

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use super::ConnId;
use crate::protocol::{QoS, TopicFilter, TopicName};
use crate::session::Session;
use crate::timer::TimerId;
use crate::trie::SubscriptionTrie;

/// A session and the connection it is attached to, if any. The connection
/// is kept here rather than in [`Session`] so that sessions stay plain data.
pub(super) struct SessionSlot {
    pub(super) session: Session,
    pub(super) conn: Option<ConnId>,
    /// The resend check of the attached connection, armed while it has
    /// messages in flight.
    pub(super) retry: Option<TimerId>,
    /// The `persistent_client_expiration` timer of a persistent session
    /// whose client is away.
    pub(super) expiry: Option<TimerId>,
    /// The username of the client that last attached, kept with the
    /// session so that each delivery's ACL check is one lookup away.
    pub(super) username: Option<String>,
}

/// What [`Sessions::attach`] did.
pub(super) struct Attached {
    /// The session's key.
    pub(super) key: usize,
    /// An earlier session was resumed.
    pub(super) resumed: bool,
    /// The earlier session a clean session discarded ([MQTT-3.1.2-6]):
    /// its timer is the caller's to cancel.
    pub(super) discarded: Option<SessionSlot>,
}

/// The broker's sessions, by key. See the module documentation.
#[derive(Default)]
pub(super) struct Sessions {
    slots: Slab<SessionSlot>,
    client_ids: HashMap<Arc<str>, usize>,
    subscriptions: SubscriptionTrie<usize, QoS>,
}

impl Sessions {
    /// Attaches `conn` to the session of `client_id`: the earlier one when
    /// there is one and `clean` is false, else a new one made by `new`.
    pub(super) fn attach(
        &mut self,
        client_id: &Arc<str>,
        clean: bool,
        conn: ConnId,
        new: impl FnOnce() -> Session,
    ) -> Attached {
        let mut discarded = None;
        if let Some(&key) = self.client_ids.get(&**client_id) {
            if clean {
                discarded = self.remove(key);
            } else if let Some(slot) = self.slots.get_mut(key) {
                slot.conn = Some(conn);
                return Attached {
                    key,
                    resumed: true,
                    discarded: None,
                };
            }
        }
        let key = self.slots.insert(SessionSlot {
            session: new(),
            conn: Some(conn),
            retry: None,
            expiry: None,
            username: None,
        });
        self.client_ids.insert(Arc::clone(client_id), key);
        Attached {
            key,
            resumed: false,
            discarded,
        }
    }

    /// Ends session `key`: its subscriptions leave the trie and its client
    /// id is free. Returns it, for the caller to cancel its timer.
    pub(super) fn remove(&mut self, key: usize) -> Option<SessionSlot> {
        let slot = self.slots.try_remove(key)?;
        for filter in slot.session.subscriptions().keys() {
            self.subscriptions.remove(filter, &key);
        }
        if self.client_ids.get(&*slot.session.client_id) == Some(&key) {
            self.client_ids.remove(&*slot.session.client_id);
        }
        Some(slot)
    }

    /// Subscribes session `key` to `filter` at `qos`, replacing the QoS of
    /// a subscription it holds already. False if there is no such session.
    pub(super) fn subscribe(&mut self, key: usize, filter: &TopicFilter, qos: QoS) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        slot.session.subscribe(filter.clone(), qos);
        self.subscriptions.insert(filter, key, qos);
        true
    }

    /// Removes session `key`'s subscription to `filter`; returns whether it
    /// held one.
    pub(super) fn unsubscribe(&mut self, key: usize, filter: &TopicFilter) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        if slot.session.unsubscribe(filter).is_none() {
            return false;
        }
        self.subscriptions.remove(filter, &key);
        true
    }

    /// Calls `f` with the key and granted QoS of every subscription whose
    /// filter matches `topic` (a session with overlapping subscriptions
    /// comes once for each); returns how many filters matched.
    pub(super) fn for_each_subscriber(
        &self,
        topic: &TopicName,
        f: impl FnMut(&usize, &QoS),
    ) -> usize {
        self.subscriptions.for_each_match(topic, f)
    }

    /// The trie nodes routing visited since the last call (see
    /// `SubscriptionTrie::take_visited`).
    pub(super) fn take_routing_work(&self) -> usize {
        self.subscriptions.take_visited()
    }

    /// Who session `key` belongs to, for the ACL: its client id and the
    /// username it last attached with.
    #[inline]
    pub(super) fn identity(&self, key: usize) -> Option<(&str, Option<&str>)> {
        let slot = self.slots.get(key)?;
        Some((&slot.session.client_id, slot.username.as_deref()))
    }

    /// The key of `client_id`'s session, if it has one.
    pub(super) fn key_of(&self, client_id: &str) -> Option<usize> {
        self.client_ids.get(client_id).copied()
    }

    /// Session `key`. This and [`Sessions::get_mut`] are called for every
    /// delivery, so they are kept inlinable wherever routing is compiled.
    #[inline]
    pub(super) fn get(&self, key: usize) -> Option<&SessionSlot> {
        self.slots.get(key)
    }

    /// A session to change. Its subscriptions are changed through
    /// [`Sessions::subscribe`] and [`Sessions::unsubscribe`], never through
    /// the [`Session`] alone, or routing would not follow.
    #[inline]
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut SessionSlot> {
        self.slots.get_mut(key)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &SessionSlot)> {
        self.slots.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Subscriptions held across all sessions.
    pub(super) fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: &str) -> TopicFilter {
        TopicFilter::new(f).unwrap()
    }

    fn subscribers(sessions: &Sessions, topic: &str) -> Vec<(usize, QoS)> {
        let mut found = Vec::new();
        sessions.for_each_subscriber(&TopicName::new(topic).unwrap(), |&key, &qos| {
            found.push((key, qos))
        });
        found.sort();
        found
    }

    #[test]
    fn subscriptions_and_routing_stay_in_step_until_the_session_ends() {
        let mut sessions = Sessions::default();
        let conn = ConnId { key: 0, serial: 0 };
        let id: Arc<str> = "c".into();
        let new = || Session::new("c", false, 1, 1);
        let attached = sessions.attach(&id, false, conn, new);
        let key = attached.key;
        assert!(!attached.resumed);
        assert!(sessions.subscribe(key, &filter("a/+"), QoS::AtLeastOnce));
        assert!(sessions.subscribe(key, &filter("a/b"), QoS::AtMostOnce));
        assert_eq!(
            subscribers(&sessions, "a/b"),
            [(key, QoS::AtMostOnce), (key, QoS::AtLeastOnce)]
        );
        assert!(sessions.unsubscribe(key, &filter("a/b")));
        assert!(!sessions.unsubscribe(key, &filter("a/b")), "held no more");
        assert_eq!(sessions.subscription_count(), 1);
        assert_eq!(sessions.identity(key), Some(("c", None)));

        // Resumed: the same session, subscriptions and all.
        let again = sessions.attach(&id, false, conn, new);
        assert!(again.resumed && again.key == key);
        assert_eq!(subscribers(&sessions, "a/b"), [(key, QoS::AtLeastOnce)]);

        // A clean session discards the earlier one and what it routed.
        let clean = sessions.attach(&id, true, conn, || Session::new("c", true, 1, 1));
        assert!(!clean.resumed);
        assert!(clean.discarded.is_some());
        assert_eq!(subscribers(&sessions, "a/b"), []);
        assert_eq!(sessions.subscription_count(), 0);
        assert_eq!(sessions.key_of("c"), Some(clean.key));
        assert!(sessions.remove(clean.key).is_some());
        assert_eq!((sessions.len(), sessions.key_of("c")), (0, None));
        assert!(!sessions.subscribe(clean.key, &filter("x"), QoS::AtMostOnce));
    }
}
