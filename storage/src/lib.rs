//! Durable state of xmppd in one LMDB environment, behind typed, narrow stores.
//!
//! The crate knows nothing of XML, XMPP stanzas or executors. Shard threads read directly
//! (each read is a short read transaction on the calling thread). The server's writes are
//! group-committed on a dedicated writer thread: [`Storage::submit`] returns a
//! [`Completion`], an executor-agnostic future that resolves once the write is durable, so
//! an acknowledged write survives `kill -9`. Admin tools in another process use the
//! synchronous writes ([`AccountStore::create`], [`Storage::write_sync`]); LMDB coordinates
//! the processes and the server sees their writes on its next read.
//!
//! Stores: [`AccountStore`], [`RosterStore`], [`OfflineStore`], [`VcardStore`],
//! [`PrivacyStore`], [`MucStore`], [`PubsubStore`], [`PrivateStore`]. A store's
//! reads are its methods; its writes that the server must make atomically with a read (a
//! roster change, an offline push under a quota) are methods of [`WriteTxn`], called inside a
//! [`Storage::submit`] (or [`Storage::write_sync`]) closure. Per-user records use composite
//! keys `user \0 contact` and `user \0 u64-BE`, so one prefix scan lists a user's records in
//! order. A write of a user's records checks, in its transaction, that the user's account
//! exists ([`StorageError::NoSuchAccount`] otherwise), so a session racing its account's
//! deletion cannot leave records that a later account with the same JID would inherit.
//!
//! Account changes that invalidate logins (new credentials, deletion, disabling) append to a
//! revocation log in the same transaction ([`AccountStore::revocations_after`]), which is
//! how a running server learns of changes made by the admin CLI in another process.
//!
//! Records are versioned binary encodings (see `codec.rs`); the environment records a schema
//! version and is migrated on open (see `schema.rs`).

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod accounts;
mod codec;
mod error;
mod fault;
mod histogram;
mod key;
mod muc;
mod offline;
mod privacy;
mod private;
mod pubsub;
mod quota;
mod revocations;
mod roster;
mod schema;
mod storage;
mod table;
mod txn;
mod vcard;
mod writer;

pub use accounts::{Account, AccountStore, ScramKeys};
pub use error::{LmdbError, StorageError};
pub use histogram::{HistogramSnapshot, LatencyHistogram, BOUNDS_US as LATENCY_BOUNDS_US};
pub use muc::{MucAffiliation, MucRoom, MucStore};
pub use offline::{OfflineFull, OfflineMessage, OfflinePush, OfflineQuota, OfflineStore};
pub use privacy::{
    stanzas as privacy_stanzas, DefaultList, Privacy, PrivacyItem, PrivacyList, PrivacyMatch,
    PrivacyStore,
};
pub use private::PrivateStore;
pub use pubsub::{
    PubsubItem, PubsubNode, PubsubStore, PubsubSubscription, Subscribed,
    MAX_ITEM_RECORD as PUBSUB_MAX_ITEM_RECORD,
};
pub use quota::{MapGauge, MapUsage, FILL_WARNINGS};
pub use revocations::{
    Revocation, RevocationsAfter, RevokeReason, KEEP_MAX as REVOCATIONS_KEEP_MAX,
    KEEP_SECS as REVOCATIONS_KEEP_SECS,
};
pub use roster::{Roster, RosterItem, RosterStore, Subscription};
pub use schema::SCHEMA_VERSION;
pub use storage::{Options, Storage};
pub use table::Table;
pub use txn::{Entries, WriteTxn};
pub use vcard::VcardStore;
pub use writer::{Completion, WriterStats};
