//! The broker's network connections, from accept to close: what the core
//! knows of each, kept in a table indexed by connection key.
//!
//! It knows nothing of sessions beyond a connected client's session key,
//! and never closes anything: `Broker::end_connection` does.

use std::sync::Arc;
use std::time::Instant;

use super::guard::TlsPeer;
use super::ConnId;
use crate::protocol::Will;
use crate::timer::TimerId;

/// One network connection, from accept to close.
///
/// Kept small: ten thousand idle clients are ten thousand of these. What
/// only CONNECT needs (the peer address, the TLS certificate) goes away
/// with [`ClientState::AwaitingConnect`].
pub(super) struct Client {
    /// [`ConnId::serial`]: tells this connection from an earlier one that
    /// had the same key.
    pub(super) serial: u64,
    /// When the client last sent a packet: keepalive counts from here.
    pub(super) last_seen: Instant,
    /// The connection's one pending timer: connect timeout, then keepalive.
    pub(super) timer: Option<TimerId>,
    pub(super) state: ClientState,
}

pub(super) enum ClientState {
    /// Accepted; only CONNECT may come. Boxed: few connections wait here
    /// for long, and a connected one should not pay for its size.
    AwaitingConnect(Box<Pending>),
    Connected(Connected),
}

/// What the core knows of a connection before its CONNECT.
pub(super) struct Pending {
    /// For the log lines up to and including the CONNECT's: `ip:port` or
    /// `unix:...`. The network layer keeps its own copy for its logs.
    pub(super) peer: String,
    /// Set once the TLS handshake completed: the connection came to the
    /// TLS listener, and this is what its certificate proved.
    pub(super) tls: Option<TlsPeer>,
}

pub(super) struct Connected {
    /// Key of the session in [`Sessions`].
    pub(super) session: usize,
    /// Shared with the session and the client-id index of `Sessions`: one
    /// copy.
    pub(super) client_id: Arc<str>,
    pub(super) keep_alive: u16,
    /// Boxed: most clients have no will.
    pub(super) will: Option<Box<Will>>,
    // Its username (or certificate CN) is the session's
    // (`SessionSlot::username`), set at CONNECT: kept once, there.
}

/// The broker's clients, indexed by [`ConnId::key`]: the network layer's
/// slab keys are small and dense, so a vector serves where a map would hash
/// every packet's connection id and cost a bucket and a hash per client.
/// Each entry keeps its [`ConnId::serial`], so a stale id finds nothing.
#[derive(Default)]
pub(super) struct Clients {
    pub(super) slots: Vec<Option<Client>>,
    pub(super) len: usize,
}

impl Clients {
    pub(super) fn get(&self, conn: ConnId) -> Option<&Client> {
        self.slots
            .get(conn.key)?
            .as_ref()
            .filter(|client| client.serial == conn.serial)
    }

    pub(super) fn get_mut(&mut self, conn: ConnId) -> Option<&mut Client> {
        self.slots
            .get_mut(conn.key)?
            .as_mut()
            .filter(|client| client.serial == conn.serial)
    }

    /// Stores `client` under `client.serial` and `key`, and returns what was
    /// there (nothing, unless the network layer reused a key it never
    /// reported closed).
    pub(super) fn insert(&mut self, key: usize, client: Client) -> Option<Client> {
        if self.slots.len() <= key {
            self.slots.resize_with(key.saturating_add(1), || None);
        }
        let slot = self.slots.get_mut(key)?;
        let old = slot.replace(client);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub(super) fn remove(&mut self, conn: ConnId) -> Option<Client> {
        let slot = self.slots.get_mut(conn.key)?;
        if slot.as_ref()?.serial != conn.serial {
            return None;
        }
        self.len = self.len.saturating_sub(1);
        slot.take()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Client> {
        self.slots.iter_mut().flatten()
    }

    /// What the wills of connected clients hold, for `max_memory`: each
    /// will's topic and payload, and [`WILL_OVERHEAD`]. Walks the table.
    pub(super) fn will_bytes(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter_map(|client| match &client.state {
                ClientState::Connected(connected) => connected.will.as_deref(),
                ClientState::AwaitingConnect(_) => None,
            })
            .map(|will| {
                will.topic
                    .as_str()
                    .len()
                    .saturating_add(will.payload.len())
                    .saturating_add(WILL_OVERHEAD)
            })
            .fold(0, usize::saturating_add)
    }
}

/// What a will costs beyond its topic and payload: its box and the
/// allocations of its topic and payload. Measured with a counting
/// allocator (`tests/memory_overheads.rs`) and rounded up.
const WILL_OVERHEAD: usize = 160;

#[cfg(test)]
mod tests {
    use super::*;

    fn client(serial: u64) -> Client {
        Client {
            serial,
            last_seen: Instant::now(),
            timer: None,
            state: ClientState::AwaitingConnect(Box::new(Pending {
                peer: "127.0.0.1:1".to_string(),
                tls: None,
            })),
        }
    }

    #[test]
    fn a_stale_serial_on_a_reused_key_finds_nothing() {
        let mut clients = Clients::default();
        let old = ConnId { key: 3, serial: 1 };
        let new = ConnId { key: 3, serial: 2 };
        assert!(clients.insert(old.key, client(old.serial)).is_none());
        assert!(clients.get(old).is_some());
        assert!(
            clients.remove(new).is_none(),
            "the wrong serial removes nothing"
        );
        assert!(clients.remove(old).is_some());
        assert!(clients.insert(new.key, client(new.serial)).is_none());
        assert!(clients.get(old).is_none());
        assert!(clients.get_mut(old).is_none());
        assert!(clients.remove(old).is_none());
        assert_eq!(clients.get(new).map(|c| c.serial), Some(2));
        assert_eq!(clients.len(), 1);
    }

    #[test]
    fn keys_beyond_the_table_find_nothing_and_count_stays_right() {
        let mut clients = Clients::default();
        assert!(clients
            .get(ConnId {
                key: 100,
                serial: 0
            })
            .is_none());
        assert!(clients
            .remove(ConnId {
                key: 100,
                serial: 0
            })
            .is_none());
        clients.insert(0, client(7));
        clients.insert(5, client(8));
        assert_eq!(clients.len(), 2);
        assert!(
            clients.insert(5, client(9)).is_some(),
            "a reused key hands back the old client"
        );
        assert_eq!(clients.len(), 2);
        assert!(clients.remove(ConnId { key: 5, serial: 9 }).is_some());
        assert_eq!(clients.len(), 1);
    }
}
