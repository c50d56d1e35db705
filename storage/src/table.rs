//! The named LMDB databases ("tables") of the environment.

use lmdb::{Database, DatabaseFlags, RoTransaction, RwTransaction, Transaction};

use crate::StorageError;

/// Declares [`Table`]: adding a table is one line here (plus, if existing data must change,
/// a migration in `schema.rs`). Tables are created when an environment is opened read-write.
macro_rules! tables {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )+) => {
        /// One named LMDB database inside the environment.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Table {
            $( $(#[$doc])* $variant, )+
        }

        impl Table {
            /// Every table, in declaration order.
            pub const ALL: &'static [Table] = &[$(Table::$variant),+];

            /// The LMDB database name; stable on disk, never rename one.
            pub fn name(self) -> &'static str {
                match self {
                    $(Table::$variant => $name,)+
                }
            }
        }
    };
}

tables! {
    /// Environment metadata: the schema version.
    Meta => "meta",
    /// Accounts keyed by normalized bare JID; values are versioned account records.
    Accounts => "accounts",
    /// Roster items keyed by `user \0 contact` (bare JIDs); values are roster item records.
    Roster => "roster",
    /// Each user's current roster version, keyed by bare JID.
    RosterVersion => "roster_version",
    /// Pending inbound subscription requests keyed by `user \0 contact`; values hold the
    /// stored subscribe stanza.
    SubRequests => "sub_requests",
    /// Offline messages keyed by `user \0 seq` (`seq` a big-endian `u64`, so a prefix scan
    /// returns them oldest first).
    Offline => "offline",
    /// Each user's offline message count and next sequence number, keyed by bare JID.
    OfflineMeta => "offline_meta",
    /// vCards keyed by bare JID; values hold the opaque vCard bytes.
    Vcards => "vcards",
    /// Revocations keyed by sequence number (`u64` big-endian): accounts whose sessions must
    /// end (see `revocations.rs`); the last sequence number is in [`Table::Meta`].
    Revocations => "revocations",
    /// Privacy lists (XEP-0016, and the XEP-0191 blocklist inside the default list) keyed by
    /// `user \0 name`; values are list records.
    PrivacyLists => "privacy_lists",
    /// Each user's default privacy list name, keyed by bare JID.
    PrivacyDefault => "privacy_default",
    /// Persistent multi-user chat rooms (XEP-0045) keyed by `service \0 room-localpart`
    /// (the service's domain, then the room's localpart); values are room records.
    MucRooms => "muc_rooms",
    /// Publish-subscribe nodes (XEP-0060; XEP-0163 personal eventing, where the service is an
    /// account's bare JID) keyed by `service \0 node`; values hold the node's configuration,
    /// item count and next item sequence number.
    PubsubNodes => "pubsub_nodes",
    /// Published items keyed by `service \0 node \0 item-id`; values hold the publisher,
    /// publication time, payload and the item's sequence number.
    PubsubItems => "pubsub_items",
    /// Publication order keyed by `service \0 node \0 seq` (`seq` a big-endian `u64`, so a
    /// prefix scan lists a node's items oldest first); values hold the item id.
    PubsubOrder => "pubsub_order",
    /// Private XML storage (XEP-0049) keyed by `user \0 namespace`; values hold the opaque
    /// XML fragment.
    PrivateXml => "private_xml",
    /// Explicit pubsub subscriptions (XEP-0060 §6.1) keyed by `service \0 node \0 jid` (the
    /// subscribed JID, bare or full); values hold the subscription's state and time.
    PubsubSubs => "pubsub_subs",
}

/// The number of tables, sizing LMDB's `max_dbs` and the handle array.
pub(crate) const TABLE_COUNT: usize = Table::ALL.len();

/// Database handles, one per [`Table`]. A read-only handle may lack tables that a newer
/// build added but nobody has created yet (they read as empty).
pub(crate) struct Dbs([Option<Database>; TABLE_COUNT]);

impl Dbs {
    /// Creates missing tables inside the opening read-write transaction.
    pub(crate) fn create(txn: &RwTransaction<'_>) -> Result<Dbs, StorageError> {
        let mut dbs = [None; TABLE_COUNT];
        for (slot, table) in dbs.iter_mut().zip(Table::ALL) {
            // SAFETY: called only while opening the environment, before any other thread can
            // use it, so no other transaction opens database handles concurrently.
            *slot = Some(unsafe { txn.create_db(Some(table.name()), DatabaseFlags::empty()) }?);
        }
        Ok(Dbs(dbs))
    }

    /// Opens the existing tables of a read-only environment.
    pub(crate) fn open(txn: &RoTransaction<'_>) -> Result<Dbs, StorageError> {
        let mut dbs = [None; TABLE_COUNT];
        for (slot, table) in dbs.iter_mut().zip(Table::ALL) {
            // SAFETY: as in `create`: only while opening, before the handle is shared.
            *slot = match unsafe { txn.open_db(Some(table.name())) } {
                Ok(db) => Some(db),
                Err(lmdb::Error::NotFound) => None,
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Dbs(dbs))
    }

    pub(crate) fn get(&self, table: Table) -> Option<Database> {
        self.0[table as usize]
    }
}
