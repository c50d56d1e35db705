//! Publish-subscribe nodes and items (XEP-0060), as the personal eventing service of an
//! account (XEP-0163: the service is the account's bare JID).
//!
//! Four tables hold a service's data, all keyed below `service \0`, so account deletion
//! removes them with four prefix deletions:
//!
//! - [`Table::PubsubNodes`], `service \0 node`: the node's configuration (opaque bytes the
//!   server encodes), its exact item count and the next sequence number of its items.
//! - [`Table::PubsubItems`], `service \0 node \0 item-id`: one published item (publisher,
//!   publication time, payload) and the sequence number it was published under.
//! - [`Table::PubsubOrder`], `service \0 node \0 seq` (`seq` a big-endian `u64`): the item id
//!   published under `seq`. Sequence numbers are per node and only ever increase, so a scan of
//!   a node's order entries lists its items oldest first, and a reverse scan newest first
//!   without reading anything else.
//! - [`Table::PubsubSubs`], `service \0 node \0 jid`: an explicit subscription (XEP-0060
//!   §6.1) of `jid`, bare or full as subscribed, and when it was made. A node's deletion
//!   removes its subscriptions; [`WriteTxn::subscribe_pubsub`] bounds their number per node.
//!
//! Republishing an id replaces the item and makes it the newest (its old order entry goes);
//! a publish trims the oldest items beyond the node's limit in the same transaction, so the
//! stored count never exceeds it. Every write keeps the node's count equal to the number of
//! its items. Node names and item ids are checked like JIDs (no NUL, not empty) and must fit
//! LMDB's 511-byte keys ([`StorageError::InvalidKey`] otherwise); an item record is refused
//! above [`MAX_ITEM_RECORD`] bytes and a node record above [`MAX_NODE_RECORD`]
//! ([`StorageError::TooLarge`]), the storage's own backstops behind the server's bounds.
//!
//! Creating a node requires the service's account ([`StorageError::NoSuchAccount`]); the
//! other writes need the node, which account deletion removes in the same transaction as the
//! account, so a write racing the deletion finds no node and leaves nothing behind.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::table::Table;
use crate::txn::{Reader, WriteTxn};
use crate::{Storage, StorageError};

/// The largest encoded item record stored (1 MiB): the payload plus publisher, time and
/// bookkeeping. A larger one is refused with [`StorageError::TooLarge`] and nothing is
/// written.
pub const MAX_ITEM_RECORD: usize = 1 << 20;

/// The largest encoded node record stored (1 MiB): the configuration plus bookkeeping. The
/// record is rewritten on every publish, so it must stay small.
pub(crate) const MAX_NODE_RECORD: usize = 1 << 20;

/// A node as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PubsubNode {
    /// The node's configuration, encoded by the server (opaque to the crate).
    pub config: Vec<u8>,
    /// How many items the node stores now.
    pub items: u32,
}

/// One published item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubsubItem {
    /// The item id, unique within its node.
    pub id: String,
    /// Who published it: a bare or full JID, as the server gives it.
    pub publisher: String,
    /// When it was published, milliseconds since the Unix epoch.
    pub published_at: u64,
    /// The serialized payload element (opaque to the crate).
    pub payload: Vec<u8>,
}

/// An explicit subscription to a node (XEP-0060 §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubsubSubscription {
    /// The subscribed JID, bare or full, as subscribed.
    pub jid: String,
    /// When it was made, milliseconds since the Unix epoch.
    pub since: u64,
}

/// Read access to pubsub nodes and items. Writes are [`WriteTxn`] methods
/// ([`create_pubsub_node`](WriteTxn::create_pubsub_node),
/// [`publish_pubsub_item`](WriteTxn::publish_pubsub_item), ...).
#[derive(Clone)]
pub struct PubsubStore {
    storage: Storage,
}

impl PubsubStore {
    pub(crate) fn new(storage: Storage) -> PubsubStore {
        PubsubStore { storage }
    }

    /// The node `node` of `service`, if it exists.
    pub fn node(&self, service: &str, node: &str) -> Result<Option<PubsubNode>, StorageError> {
        crate::fault::read(service)?;
        let key = key::named(service, "node", node)?;
        self.storage.read(|txn| {
            Ok(node_in(txn, &key)?.map(|n| PubsubNode {
                config: n.config,
                items: n.items,
            }))
        })
    }

    /// The names of `service`'s nodes, in byte order, at most `limit`, starting after `after`
    /// (exclusive) when given: for paged listings (XEP-0059) and disco#items.
    pub fn node_names(
        &self,
        service: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.storage
            .names_under(Table::PubsubNodes, "pubsub node", service, after, limit)
    }

    /// How many nodes `service` has.
    pub fn node_count(&self, service: &str) -> Result<usize, StorageError> {
        self.storage.count_under(Table::PubsubNodes, service)
    }

    /// The item `id` of node `node` of `service`, if stored.
    pub fn item(
        &self,
        service: &str,
        node: &str,
        id: &str,
    ) -> Result<Option<PubsubItem>, StorageError> {
        crate::fault::read(service)?;
        let key = key::nested(service, "node", node, "item id", id)?;
        self.storage.read(|txn| {
            txn.get(Table::PubsubItems, &key)?
                .map(|v| decode_item(id, v).map(|(_, item)| item))
                .transpose()
        })
    }

    /// The `max` most recently published items of the node (all of them when `None`), newest
    /// first; empty when there is no such node. Reads only the items it returns: a reverse
    /// scan of the node's order entries from its newest.
    pub fn items(
        &self,
        service: &str,
        node: &str,
        max: Option<usize>,
    ) -> Result<Vec<PubsubItem>, StorageError> {
        crate::fault::read(service)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        let max = max.unwrap_or(usize::MAX);
        if max == 0 {
            return Ok(Vec::new());
        }
        self.storage.read(|txn| {
            let mut items = Vec::new();
            for entry in txn.entries_rev(Table::PubsubOrder, &prefix)? {
                let (k, v) = entry?;
                items.push(ordered_item(txn, &prefix, k, v)?);
                if items.len() == max {
                    break;
                }
            }
            Ok(items)
        })
    }
}

/// Explicit subscriptions (XEP-0060 §6.1).
impl PubsubStore {
    /// The JIDs subscribed to node `node` of `service`, in byte order, at most `limit`.
    pub fn subscribers(
        &self,
        service: &str,
        node: &str,
        limit: usize,
    ) -> Result<Vec<PubsubSubscription>, StorageError> {
        crate::fault::read(service)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        self.storage.read(|txn| {
            let mut subs = Vec::new();
            if limit == 0 {
                return Ok(subs);
            }
            for entry in txn.entries(Table::PubsubSubs, &prefix)? {
                let (k, v) = entry?;
                let jid = key::contact_of("pubsub subscriber", &prefix, k)?;
                subs.push(decode_subscription(jid, v)?);
                if subs.len() == limit {
                    break;
                }
            }
            Ok(subs)
        })
    }

    /// The subscription of `jid` (exactly as subscribed) to node `node` of `service`.
    pub fn subscription(
        &self,
        service: &str,
        node: &str,
        jid: &str,
    ) -> Result<Option<PubsubSubscription>, StorageError> {
        crate::fault::read(service)?;
        let key = key::nested(service, "node", node, "pubsub subscriber", jid)?;
        self.storage.read(|txn| {
            txn.get(Table::PubsubSubs, &key)?
                .map(|v| decode_subscription(jid, v))
                .transpose()
        })
    }
}

/// What [`WriteTxn::subscribe_pubsub`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// The subscription is new and stored.
    Added,
    /// The JID was subscribed already; nothing changed.
    Already,
    /// The node has `max` subscriptions already; nothing was written.
    Full,
    /// There is no such node; nothing was written.
    NoNode,
}

/// Pubsub writes inside a write transaction.
impl WriteTxn<'_> {
    /// Subscribes `jid` to node `node` of `service` at `since` (milliseconds since the Unix
    /// epoch), unless the node holds `max` subscriptions already. The count is taken inside
    /// this transaction, so concurrent subscribers cannot overshoot it.
    pub fn subscribe_pubsub(
        &mut self,
        service: &str,
        node: &str,
        jid: &str,
        since: u64,
        max: usize,
    ) -> Result<Subscribed, StorageError> {
        crate::fault::write(service)?;
        let node_key = key::named(service, "node", node)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        let key = key::nested(service, "node", node, "pubsub subscriber", jid)?;
        if self.get(Table::PubsubNodes, &node_key)?.is_none() {
            return Ok(Subscribed::NoNode);
        }
        if self.get(Table::PubsubSubs, &key)?.is_some() {
            return Ok(Subscribed::Already);
        }
        // Counts at most `max` entries: the scan is bounded by the limit, not the table.
        let mut count = 0usize;
        for entry in self.entries(Table::PubsubSubs, &prefix)?.take(max) {
            entry?;
            count += 1;
        }
        if count >= max {
            return Ok(Subscribed::Full);
        }
        self.put(Table::PubsubSubs, &key, &encode_subscription(since))?;
        Ok(Subscribed::Added)
    }

    /// Removes the subscription of `jid` (exactly as subscribed) to node `node` of `service`;
    /// returns false if there was none.
    pub fn unsubscribe_pubsub(
        &mut self,
        service: &str,
        node: &str,
        jid: &str,
    ) -> Result<bool, StorageError> {
        crate::fault::write(service)?;
        let key = key::nested(service, "node", node, "pubsub subscriber", jid)?;
        self.delete(Table::PubsubSubs, &key)
    }

    /// Every item of the node, oldest first (empty when there is no such node), read inside
    /// this transaction: for a write that derives other data from all of them (XEP-0411
    /// bookmarks kept in step with private XML).
    pub fn pubsub_items(&self, service: &str, node: &str) -> Result<Vec<PubsubItem>, StorageError> {
        crate::fault::read(service)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        let mut items = Vec::new();
        for entry in self.entries(Table::PubsubOrder, &prefix)? {
            let (k, v) = entry?;
            items.push(ordered_item(self, &prefix, k, v)?);
        }
        Ok(items)
    }

    /// Creates node `node` of `service` with `config` and no items; returns false (and writes
    /// nothing) if the node exists. [`StorageError::NoSuchAccount`] if `service` has no
    /// account.
    pub fn create_pubsub_node(
        &mut self,
        service: &str,
        node: &str,
        config: &[u8],
    ) -> Result<bool, StorageError> {
        crate::fault::write(service)?;
        let key = key::named(service, "node", node)?;
        // The node's item and order keys must fit as well.
        key::nested_prefix(service, "node", node)?;
        self.require_account(service)?;
        if self.get(Table::PubsubNodes, &key)?.is_some() {
            return Ok(false);
        }
        let record = NodeRecord {
            config: config.to_vec(),
            items: 0,
            next_seq: 0,
        };
        self.put(Table::PubsubNodes, &key, &record.encode()?)?;
        Ok(true)
    }

    /// Replaces the configuration of node `node` of `service`, keeping its items; returns
    /// false if there is no such node.
    pub fn configure_pubsub_node(
        &mut self,
        service: &str,
        node: &str,
        config: &[u8],
    ) -> Result<bool, StorageError> {
        crate::fault::write(service)?;
        let key = key::named(service, "node", node)?;
        let Some(mut record) = node_in(self, &key)? else {
            return Ok(false);
        };
        record.config = config.to_vec();
        self.put(Table::PubsubNodes, &key, &record.encode()?)?;
        Ok(true)
    }

    /// Removes node `node` of `service` with all its items; returns false if there is no such
    /// node.
    pub fn delete_pubsub_node(&mut self, service: &str, node: &str) -> Result<bool, StorageError> {
        crate::fault::write(service)?;
        let key = key::named(service, "node", node)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        if !self.delete(Table::PubsubNodes, &key)? {
            return Ok(false);
        }
        self.delete_prefix(Table::PubsubItems, &prefix)?;
        self.delete_prefix(Table::PubsubOrder, &prefix)?;
        self.delete_prefix(Table::PubsubSubs, &prefix)?;
        Ok(true)
    }

    /// Removes every item of node `node` of `service`, keeping the node; returns how many
    /// there were, `None` if there is no such node.
    pub fn purge_pubsub_items(
        &mut self,
        service: &str,
        node: &str,
    ) -> Result<Option<usize>, StorageError> {
        crate::fault::write(service)?;
        let key = key::named(service, "node", node)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        let Some(mut record) = node_in(self, &key)? else {
            return Ok(None);
        };
        let removed = self.delete_prefix(Table::PubsubItems, &prefix)?;
        self.delete_prefix(Table::PubsubOrder, &prefix)?;
        if removed != record.items as usize {
            return Err(StorageError::Corrupt(format!(
                "pubsub node counts {} items, {removed} were stored",
                record.items
            )));
        }
        if removed > 0 {
            // The sequence number carries on: order keys are never reused.
            record.items = 0;
            self.put(Table::PubsubNodes, &key, &record.encode()?)?;
        }
        Ok(Some(removed))
    }

    /// Stores `item` in node `node` of `service` as its newest item (an item with the same id
    /// is replaced and becomes the newest), then removes the oldest items beyond `max_items`
    /// (taken as 1 when 0: the new item is always kept). Returns the ids that trim removed,
    /// oldest first, or `None` (nothing written) if there is no such node.
    /// [`StorageError::TooLarge`] if the item's record is above [`MAX_ITEM_RECORD`] bytes.
    pub fn publish_pubsub_item(
        &mut self,
        service: &str,
        node: &str,
        item: &PubsubItem,
        max_items: usize,
    ) -> Result<Option<Vec<String>>, StorageError> {
        crate::fault::write(service)?;
        let node_key = key::named(service, "node", node)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        let item_key = key::nested(service, "node", node, "item id", &item.id)?;
        let Some(mut record) = node_in(self, &node_key)? else {
            return Ok(None);
        };
        let seq = record.next_seq;
        let value = encode_item(seq, item);
        if value.len() > MAX_ITEM_RECORD {
            return Err(StorageError::TooLarge {
                what: "pubsub item",
                size: value.len(),
                limit: MAX_ITEM_RECORD,
            });
        }
        record.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| StorageError::Corrupt("pubsub node: sequence exhausted".into()))?;
        match self.get(Table::PubsubItems, &item_key)? {
            Some(old) => {
                let (old_seq, _) = decode_item(&item.id, old)?;
                let old_order = key::seq_below(&prefix, old_seq);
                if !self.delete(Table::PubsubOrder, &old_order)? {
                    return Err(StorageError::Corrupt(format!(
                        "pubsub item {:?} has no order entry {old_seq}",
                        item.id
                    )));
                }
            }
            None => {
                record.items = record.items.checked_add(1).ok_or_else(|| {
                    StorageError::Corrupt("pubsub node: item count exhausted".into())
                })?;
            }
        }
        self.put(Table::PubsubItems, &item_key, &value)?;
        let order_key = key::seq_below(&prefix, seq);
        self.insert(Table::PubsubOrder, &order_key, &encode_order(&item.id))
            .map_err(|e| match e {
                StorageError::AlreadyExists => StorageError::Corrupt(format!(
                    "pubsub node: next sequence {seq} is already in use"
                )),
                e => e,
            })?;

        let keep = max_items.max(1);
        let excess = (record.items as usize).saturating_sub(keep);
        let mut removed = Vec::with_capacity(excess);
        if excess > 0 {
            // The oldest entries come first; the new item is the last one, never among them.
            let oldest = self
                .entries(Table::PubsubOrder, &prefix)?
                .take(excess)
                .map(|entry| {
                    let (k, v) = entry?;
                    Ok((k.to_vec(), decode_order(v)?.to_owned()))
                })
                .collect::<Result<Vec<_>, StorageError>>()?;
            for (order_key, id) in oldest {
                let old_key = [&prefix[..], id.as_bytes()].concat();
                let stored_seq = match self.get(Table::PubsubItems, &old_key)? {
                    Some(v) => Some(decode_item(&id, v)?.0),
                    None => None,
                };
                let order_seq = key::seq_of("pubsub order", &prefix, &order_key)?;
                if stored_seq != Some(order_seq) {
                    return Err(StorageError::Corrupt(format!(
                        "pubsub order: sequence {order_seq} names item {id:?}, stored under \
                         {stored_seq:?}"
                    )));
                }
                self.delete(Table::PubsubOrder, &order_key)?;
                self.delete(Table::PubsubItems, &old_key)?;
                removed.push(id);
            }
            record.items -= removed.len() as u32;
        }
        self.put(Table::PubsubNodes, &node_key, &record.encode()?)?;
        Ok(Some(removed))
    }

    /// Removes item `id` of node `node` of `service`; returns false if there was no such item
    /// (or no such node).
    pub fn retract_pubsub_item(
        &mut self,
        service: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StorageError> {
        crate::fault::write(service)?;
        let node_key = key::named(service, "node", node)?;
        let prefix = key::nested_prefix(service, "node", node)?;
        let item_key = key::nested(service, "node", node, "item id", id)?;
        let Some(mut record) = node_in(self, &node_key)? else {
            return Ok(false);
        };
        let Some(stored) = self.get(Table::PubsubItems, &item_key)? else {
            return Ok(false);
        };
        let (seq, _) = decode_item(id, stored)?;
        self.delete(Table::PubsubItems, &item_key)?;
        let order_key = key::seq_below(&prefix, seq);
        if !self.delete(Table::PubsubOrder, &order_key)? {
            return Err(StorageError::Corrupt(format!(
                "pubsub item {id:?} has no order entry {seq}"
            )));
        }
        record.items = record
            .items
            .checked_sub(1)
            .ok_or_else(|| StorageError::Corrupt("pubsub node counts no items".into()))?;
        self.put(Table::PubsubNodes, &node_key, &record.encode()?)?;
        Ok(true)
    }
}

/// Removes every node of `service` with their items and order entries (account deletion).
pub(crate) fn purge(txn: &mut WriteTxn<'_>, service: &str) -> Result<(), StorageError> {
    let prefix = key::prefix(service)?;
    txn.delete_prefix(Table::PubsubNodes, &prefix)?;
    txn.delete_prefix(Table::PubsubItems, &prefix)?;
    txn.delete_prefix(Table::PubsubOrder, &prefix)?;
    txn.delete_prefix(Table::PubsubSubs, &prefix)?;
    Ok(())
}

/// The node record under `key`, if any.
/// The item an order entry (`prefix` + seq -> id) names, checked against it.
fn ordered_item(
    txn: &impl Reader,
    prefix: &[u8],
    k: &[u8],
    v: &[u8],
) -> Result<PubsubItem, StorageError> {
    let seq = key::seq_of("pubsub order", prefix, k)?;
    let id = decode_order(v)?;
    let item_key = [prefix, id.as_bytes()].concat();
    let stored = txn.get(Table::PubsubItems, &item_key)?.ok_or_else(|| {
        StorageError::Corrupt(format!(
            "pubsub order: sequence {seq} names item {id:?}, which is not stored"
        ))
    })?;
    let (item_seq, item) = decode_item(id, stored)?;
    if item_seq != seq {
        return Err(StorageError::Corrupt(format!(
            "pubsub order: sequence {seq} names item {id:?}, stored under {item_seq}"
        )));
    }
    Ok(item)
}

fn node_in(txn: &impl Reader, key: &[u8]) -> Result<Option<NodeRecord>, StorageError> {
    txn.get(Table::PubsubNodes, key)?
        .map(NodeRecord::decode)
        .transpose()
}

/// A node's stored record: the public part and the bookkeeping of its items.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeRecord {
    config: Vec<u8>,
    items: u32,
    /// The sequence number the next published item takes.
    next_seq: u64,
}

/// Node record format 1 (service and node are the key):
/// `u8 1 | bytes config | u32 items | u64 next_seq`.
const NODE_V1: u8 = 1;

impl NodeRecord {
    fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let value = Encoder::new(NODE_V1)
            .bytes(&self.config)
            .u32(self.items)
            .u64(self.next_seq)
            .finish();
        if value.len() > MAX_NODE_RECORD {
            return Err(StorageError::TooLarge {
                what: "pubsub node",
                size: value.len(),
                limit: MAX_NODE_RECORD,
            });
        }
        Ok(value)
    }

    fn decode(buf: &[u8]) -> Result<NodeRecord, StorageError> {
        let (mut d, version) = Decoder::new(buf, "pubsub node")?;
        if version != NODE_V1 {
            return Err(d.corrupt(&format!("unknown record format {version}")));
        }
        let config = d.bytes()?.to_vec();
        let items = d.u32()?;
        let next_seq = d.u64()?;
        // Every stored item took a distinct sequence number below next_seq.
        if u64::from(items) > next_seq {
            return Err(d.corrupt(&format!("{items} items but next sequence {next_seq}")));
        }
        d.finish()?;
        Ok(NodeRecord {
            config,
            items,
            next_seq,
        })
    }
}

/// Item record format 1 (service, node and id are the key):
/// `u8 1 | u64 seq | bytes publisher | u64 published_at | bytes payload`.
const ITEM_V1: u8 = 1;

fn encode_item(seq: u64, item: &PubsubItem) -> Vec<u8> {
    Encoder::new(ITEM_V1)
        .u64(seq)
        .bytes(item.publisher.as_bytes())
        .u64(item.published_at)
        .bytes(&item.payload)
        .finish()
}

/// The item stored as `id` (its key) and the sequence number it was published under.
fn decode_item(id: &str, buf: &[u8]) -> Result<(u64, PubsubItem), StorageError> {
    let (mut d, version) = Decoder::new(buf, "pubsub item")?;
    if version != ITEM_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let seq = d.u64()?;
    let publisher = d.str()?.to_owned();
    let published_at = d.u64()?;
    let payload = d.bytes()?.to_vec();
    d.finish()?;
    Ok((
        seq,
        PubsubItem {
            id: id.to_owned(),
            publisher,
            published_at,
            payload,
        },
    ))
}

/// Order record format 1 (service, node and sequence number are the key): `u8 1 | bytes id`.
const ORDER_V1: u8 = 1;

fn encode_order(id: &str) -> Vec<u8> {
    Encoder::new(ORDER_V1).bytes(id.as_bytes()).finish()
}

/// The item id of an order record; a valid key part (not empty, no NUL).
fn decode_order(buf: &[u8]) -> Result<&str, StorageError> {
    let (mut d, version) = Decoder::new(buf, "pubsub order")?;
    if version != ORDER_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let id = d.str()?;
    if id.is_empty() || id.contains('\0') {
        return Err(d.corrupt("item id is empty or contains NUL"));
    }
    d.finish()?;
    Ok(id)
}

/// Subscription record format 1 (service, node and JID are the key):
/// `u8 1 | u8 state (1: subscribed) | u64 since`. Only the subscribed state is stored: PEP's
/// access models decide at once, so no subscription is ever pending (§6.1.4).
const SUB_V1: u8 = 1;
const SUB_SUBSCRIBED: u8 = 1;

fn encode_subscription(since: u64) -> Vec<u8> {
    Encoder::new(SUB_V1).u8(SUB_SUBSCRIBED).u64(since).finish()
}

fn decode_subscription(jid: &str, buf: &[u8]) -> Result<PubsubSubscription, StorageError> {
    let (mut d, version) = Decoder::new(buf, "pubsub subscription")?;
    if version != SUB_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let state = d.u8()?;
    if state != SUB_SUBSCRIBED {
        return Err(d.corrupt(&format!("unknown subscription state {state}")));
    }
    let since = d.u64()?;
    d.finish()?;
    Ok(PubsubSubscription {
        jid: jid.to_owned(),
        since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};
    use crate::{Account, Options, ScramKeys};
    use std::path::{Path, PathBuf};

    const SVC: &str = "juliet@capulet.lit";
    const NODE: &str = "urn:xmpp:microblog:0";

    fn item(id: &str, at: u64) -> PubsubItem {
        PubsubItem {
            id: id.into(),
            publisher: format!("{SVC}/balcony"),
            published_at: at,
            payload: format!("<entry xmlns='http://www.w3.org/2005/Atom'>{id}</entry>").into(),
        }
    }

    #[test]
    fn records_round_trip_truncations_garbage() {
        let node = NodeRecord {
            config: b"\x01max_items=10\x00".to_vec(),
            items: 3,
            next_seq: 17,
        };
        for n in [
            node.clone(),
            NodeRecord {
                config: Vec::new(),
                items: 0,
                next_seq: 0,
            },
        ] {
            let buf = n.encode().unwrap();
            assert_eq!(NodeRecord::decode(&buf).unwrap(), n);
            every_truncation_is_corrupt(&buf, NodeRecord::decode);
        }
        garbage_never_panics(&node.encode().unwrap(), NodeRecord::decode);
        // More items than sequence numbers handed out cannot be.
        let bad = NodeRecord {
            items: 18,
            ..node.clone()
        };
        assert!(matches!(
            NodeRecord::decode(&bad.encode().unwrap()),
            Err(StorageError::Corrupt(_))
        ));

        let decode = |buf: &[u8]| decode_item("i1", buf);
        let empty = PubsubItem {
            id: "i1".into(),
            publisher: String::new(),
            published_at: 0,
            payload: Vec::new(),
        };
        for (seq, it) in [(5, item("i1", 1_700_000_000_000)), (u64::MAX, empty)] {
            let buf = encode_item(seq, &it);
            assert_eq!(decode(&buf).unwrap(), (seq, it));
            every_truncation_is_corrupt(&buf, decode);
        }
        garbage_never_panics(&encode_item(9, &item("i1", 7)), decode);
        let mut bad_utf8 = encode_item(1, &item("i1", 7));
        bad_utf8[1 + 8 + 4] = 0xff;
        assert!(matches!(decode(&bad_utf8), Err(StorageError::Corrupt(_))));

        let order = |buf: &[u8]| decode_order(buf).map(str::to_owned);
        for id in ["i1", "a much longer item id \u{e9}"] {
            let buf = encode_order(id);
            assert_eq!(decode_order(&buf).unwrap(), id);
            every_truncation_is_corrupt(&buf, order);
        }
        garbage_never_panics(&encode_order("current"), order);
        for bad in ["", "a\0b"] {
            assert!(matches!(
                decode_order(&encode_order(bad)),
                Err(StorageError::Corrupt(_))
            ));
        }

        for mut v2 in [
            node.encode().unwrap(),
            encode_item(1, &item("i1", 1)),
            encode_order("i1"),
        ] {
            v2[0] = 2;
            assert!(matches!(
                NodeRecord::decode(&v2),
                Err(StorageError::Corrupt(_))
            ));
            assert!(matches!(decode(&v2), Err(StorageError::Corrupt(_))));
            assert!(matches!(decode_order(&v2), Err(StorageError::Corrupt(_))));
        }
    }

    /// A fresh data directory, removed on drop (after the storage using it is dropped).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let dir = std::env::temp_dir().join(format!(
                "xmppd-storage-pubsub-{tag}-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn open(dir: &TempDir) -> Storage {
        let opts = Options {
            map_size: 64 << 20,
            ..Options::default()
        };
        Storage::open(dir.path(), &opts).unwrap()
    }

    fn account() -> Account {
        let keys = ScramKeys {
            salt: b"salt".to_vec(),
            iterations: 4096,
            stored_key: vec![1; 20],
            server_key: vec![2; 20],
        };
        Account {
            sha1: keys.clone(),
            sha256: keys,
            created_unix: 1,
            disabled: false,
        }
    }

    /// Storage with an account for each of `users`.
    fn setup(dir: &TempDir, users: &[&str]) -> Storage {
        let s = open(dir);
        for user in users {
            s.accounts().create(user, &account()).unwrap();
        }
        s
    }

    fn create(s: &Storage, service: &str, node: &str) -> bool {
        s.write_sync(|t| t.create_pubsub_node(service, node, b"cfg"))
            .unwrap()
    }

    fn publish(s: &Storage, node: &str, it: &PubsubItem, max: usize) -> Option<Vec<String>> {
        s.write_sync(|t| t.publish_pubsub_item(SVC, node, it, max))
            .unwrap()
    }

    fn ids(s: &Storage, node: &str, max: Option<usize>) -> Vec<String> {
        s.pubsub()
            .items(SVC, node, max)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect()
    }

    fn count(s: &Storage, node: &str) -> u32 {
        s.pubsub().node(SVC, node).unwrap().unwrap().items
    }

    /// Every raw key of the four pubsub tables, in table order.
    fn all_keys(s: &Storage) -> Vec<(Table, Vec<u8>)> {
        s.read(|txn| {
            let mut out = Vec::new();
            for table in [
                Table::PubsubNodes,
                Table::PubsubItems,
                Table::PubsubOrder,
                Table::PubsubSubs,
            ] {
                for entry in txn.entries(table, b"")? {
                    out.push((table, entry?.0.to_vec()));
                }
            }
            Ok(out)
        })
        .unwrap()
    }

    /// The node's stored item count equals its items and its order entries.
    fn assert_consistent(s: &Storage, service: &str, node: &str) {
        let prefix = key::nested_prefix(service, "node", node).unwrap();
        let (items, order) = s
            .read(|txn| {
                Ok((
                    txn.entries(Table::PubsubItems, &prefix)?.count(),
                    txn.entries(Table::PubsubOrder, &prefix)?.count(),
                ))
            })
            .unwrap();
        let stored = s
            .pubsub()
            .node(service, node)
            .unwrap()
            .map_or(0, |n| n.items);
        assert_eq!((items, order), (stored as usize, stored as usize));
    }

    #[test]
    fn nodes_create_configure_delete() {
        let dir = TempDir::new("nodes");
        let s = setup(&dir, &[SVC]);
        let ps = s.pubsub();
        assert_eq!(ps.node(SVC, NODE).unwrap(), None);
        assert!(create(&s, SVC, NODE));
        assert_eq!(
            ps.node(SVC, NODE).unwrap(),
            Some(PubsubNode {
                config: b"cfg".to_vec(),
                items: 0
            })
        );
        // A second create changes nothing, even with another configuration.
        assert!(!s
            .write_sync(|t| t.create_pubsub_node(SVC, NODE, b"other"))
            .unwrap());
        assert_eq!(ps.node(SVC, NODE).unwrap().unwrap().config, b"cfg");

        publish(&s, NODE, &item("a", 1), 10).unwrap();
        assert!(s
            .write_sync(|t| t.configure_pubsub_node(SVC, NODE, b"new"))
            .unwrap());
        assert_eq!(
            ps.node(SVC, NODE).unwrap(),
            Some(PubsubNode {
                config: b"new".to_vec(),
                items: 1
            })
        );
        assert_eq!(ids(&s, NODE, None), ["a"]);
        assert!(!s
            .write_sync(|t| t.configure_pubsub_node(SVC, "nope", b"new"))
            .unwrap());
        assert_eq!(ps.node(SVC, "nope").unwrap(), None);

        // Through the group-committed writer too.
        let deleted = s
            .submit(|t| t.delete_pubsub_node(SVC, NODE))
            .wait()
            .unwrap();
        assert!(deleted);
        assert_eq!(ps.node(SVC, NODE).unwrap(), None);
        assert!(!s.write_sync(|t| t.delete_pubsub_node(SVC, NODE)).unwrap());
        assert_eq!(ps.node_count(SVC).unwrap(), 0);
        assert_eq!(all_keys(&s), []);
    }

    #[test]
    fn items_in_a_write_transaction_are_oldest_first_and_match_the_reader() {
        let dir = TempDir::new("txnitems");
        let s = setup(&dir, &[SVC]);
        assert!(s
            .write_sync(|t| t.pubsub_items(SVC, NODE))
            .unwrap()
            .is_empty());
        assert!(create(&s, SVC, NODE));
        for (id, at) in [("a", 1), ("b", 2), ("c", 3)] {
            publish(&s, NODE, &item(id, at), 10).unwrap();
        }
        // Replacing "a" makes it the newest.
        publish(&s, NODE, &item("a", 4), 10).unwrap();
        let in_txn: Vec<String> = s
            .write_sync(|t| t.pubsub_items(SVC, NODE))
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(in_txn, ["b", "c", "a"]);
        let mut newest_first = ids(&s, NODE, None);
        newest_first.reverse();
        assert_eq!(in_txn, newest_first);
    }

    #[test]
    fn create_needs_the_account_and_nothing_else_recreates_a_node() {
        let dir = TempDir::new("account");
        let s = setup(&dir, &[SVC]);
        assert!(matches!(
            s.write_sync(|t| t.create_pubsub_node("romeo@montague.lit", NODE, b"")),
            Err(StorageError::NoSuchAccount)
        ));
        // Writes to a missing node write nothing.
        assert_eq!(
            s.write_sync(|t| t.publish_pubsub_item("romeo@montague.lit", NODE, &item("a", 1), 5))
                .unwrap(),
            None
        );
        assert_eq!(publish(&s, NODE, &item("a", 1), 5), None);
        assert!(!s
            .write_sync(|t| t.retract_pubsub_item(SVC, NODE, "a"))
            .unwrap());
        assert_eq!(
            s.write_sync(|t| t.purge_pubsub_items(SVC, NODE)).unwrap(),
            None
        );
        assert_eq!(s.pubsub().items(SVC, NODE, None).unwrap(), []);
        assert_eq!(s.pubsub().item(SVC, NODE, "a").unwrap(), None);
        assert_eq!(all_keys(&s), []);
    }

    #[test]
    fn items_round_trip_newest_first_and_replacement_reorders() {
        let dir = TempDir::new("items");
        let s = setup(&dir, &[SVC]);
        create(&s, SVC, NODE);
        for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(publish(&s, NODE, &item(id, n as u64), 10), Some(vec![]));
        }
        assert_eq!(ids(&s, NODE, None), ["c", "b", "a"]);
        assert_eq!(ids(&s, NODE, Some(2)), ["c", "b"]);
        assert_eq!(ids(&s, NODE, Some(0)), Vec::<String>::new());
        assert_eq!(ids(&s, NODE, Some(99)), ["c", "b", "a"]);
        assert_eq!(s.pubsub().item(SVC, NODE, "b").unwrap(), Some(item("b", 1)));
        assert_eq!(s.pubsub().item(SVC, NODE, "z").unwrap(), None);
        assert_eq!(
            s.pubsub().items(SVC, NODE, Some(1)).unwrap(),
            [item("c", 2)]
        );
        assert_eq!(count(&s, NODE), 3);

        // Republishing "a" replaces it and makes it the newest; the count stays.
        let new_a = PubsubItem {
            payload: b"<new/>".to_vec(),
            publisher: SVC.into(),
            ..item("a", 99)
        };
        assert_eq!(publish(&s, NODE, &new_a, 10), Some(vec![]));
        assert_eq!(ids(&s, NODE, None), ["a", "c", "b"]);
        assert_eq!(
            s.pubsub().item(SVC, NODE, "a").unwrap(),
            Some(new_a.clone())
        );
        assert_eq!(count(&s, NODE), 3);
        // Republishing the newest keeps it newest.
        assert_eq!(publish(&s, NODE, &new_a, 10), Some(vec![]));
        assert_eq!(ids(&s, NODE, None), ["a", "c", "b"]);
        assert_consistent(&s, SVC, NODE);
    }

    #[test]
    fn trim_returns_removed_ids_and_keeps_the_count_exact() {
        let dir = TempDir::new("trim");
        let s = setup(&dir, &[SVC]);
        create(&s, SVC, NODE);
        for id in ["1", "2", "3"] {
            assert_eq!(publish(&s, NODE, &item(id, 0), 3), Some(vec![]));
        }
        assert_eq!(publish(&s, NODE, &item("4", 0), 3), Some(vec!["1".into()]));
        assert_eq!(ids(&s, NODE, None), ["4", "3", "2"]);
        assert_eq!(count(&s, NODE), 3);
        // Replacing within the limit trims nothing.
        assert_eq!(publish(&s, NODE, &item("2", 0), 3), Some(vec![]));
        assert_eq!(ids(&s, NODE, None), ["2", "4", "3"]);
        // A smaller limit trims several, oldest first.
        assert_eq!(
            publish(&s, NODE, &item("5", 0), 2),
            Some(vec!["3".into(), "4".into()])
        );
        assert_eq!(ids(&s, NODE, None), ["5", "2"]);
        assert_eq!(count(&s, NODE), 2);
        // 0 is taken as 1: the published item stays.
        assert_eq!(
            publish(&s, NODE, &item("6", 0), 0),
            Some(vec!["2".into(), "5".into()])
        );
        assert_eq!(ids(&s, NODE, None), ["6"]);
        assert_eq!(count(&s, NODE), 1);
        // Replacing the only item with max 1 keeps it.
        assert_eq!(publish(&s, NODE, &item("6", 1), 1), Some(vec![]));
        assert_eq!(s.pubsub().item(SVC, NODE, "6").unwrap(), Some(item("6", 1)));
        assert_eq!(count(&s, NODE), 1);
        for gone in ["1", "2", "3", "4", "5"] {
            assert_eq!(s.pubsub().item(SVC, NODE, gone).unwrap(), None);
        }
        assert_consistent(&s, SVC, NODE);
    }

    #[test]
    fn retract_and_purge() {
        let dir = TempDir::new("retract");
        let s = setup(&dir, &[SVC]);
        create(&s, SVC, NODE);
        for id in ["a", "b", "c"] {
            publish(&s, NODE, &item(id, 0), 10);
        }
        assert!(s
            .write_sync(|t| t.retract_pubsub_item(SVC, NODE, "b"))
            .unwrap());
        assert!(!s
            .write_sync(|t| t.retract_pubsub_item(SVC, NODE, "b"))
            .unwrap());
        assert!(!s
            .write_sync(|t| t.retract_pubsub_item(SVC, NODE, "zz"))
            .unwrap());
        assert_eq!(ids(&s, NODE, None), ["c", "a"]);
        assert_eq!(count(&s, NODE), 2);
        assert_consistent(&s, SVC, NODE);

        assert_eq!(
            s.write_sync(|t| t.purge_pubsub_items(SVC, NODE)).unwrap(),
            Some(2)
        );
        assert_eq!(ids(&s, NODE, None), Vec::<String>::new());
        assert_eq!(
            s.pubsub().node(SVC, NODE).unwrap(),
            Some(PubsubNode {
                config: b"cfg".to_vec(),
                items: 0
            })
        );
        assert_eq!(
            s.write_sync(|t| t.purge_pubsub_items(SVC, NODE)).unwrap(),
            Some(0)
        );
        // Only the node record is left.
        assert_eq!(all_keys(&s).len(), 1);
        // Publishing after a purge carries on with fresh sequence numbers.
        publish(&s, NODE, &item("a", 5), 10);
        publish(&s, NODE, &item("d", 6), 10);
        assert_eq!(ids(&s, NODE, None), ["d", "a"]);
        assert_consistent(&s, SVC, NODE);
    }

    #[test]
    fn deleting_a_node_leaves_its_neighbours_and_no_keys() {
        let dir = TempDir::new("delete");
        let other = "julietta@capulet.lit";
        let s = setup(&dir, &[SVC, other, "juliet@capulet.li"]);
        // Neighbours of `SVC \0 n \0` on both sides of it, in every table.
        let nodes = ["n", "m", "n0", "n\u{1}", "na", "o"];
        for node in nodes {
            create(&s, SVC, node);
            for id in ["x", "y", "z"] {
                publish(&s, node, &item(id, 0), 10);
            }
        }
        for service in [other, "juliet@capulet.li"] {
            create(&s, service, "n");
            s.write_sync(|t| t.publish_pubsub_item(service, "n", &item("x", 0), 10))
                .unwrap();
        }
        let before = all_keys(&s);
        assert!(s.write_sync(|t| t.delete_pubsub_node(SVC, "n")).unwrap());
        let prefix = key::nested_prefix(SVC, "node", "n").unwrap();
        let node_key = key::named(SVC, "node", "n").unwrap();
        let expected: Vec<_> = before
            .into_iter()
            .filter(|(_, k)| *k != node_key && !k.starts_with(&prefix))
            .collect();
        assert_eq!(all_keys(&s), expected);
        // The node record, 3 items and 3 order entries went; nothing else.
        assert_eq!(expected.len(), 6 * 7 + 2 * 3 - 7);
        for node in ["m", "n0", "n\u{1}", "na", "o"] {
            assert_eq!(ids(&s, node, None), ["z", "y", "x"]);
            assert_consistent(&s, SVC, node);
        }
        assert_eq!(ids(&s, "n", None), Vec::<String>::new());
        // The reverse scan of a node stops at its neighbours too.
        assert_eq!(ids(&s, "n0", Some(10)), ["z", "y", "x"]);
        assert_eq!(s.pubsub().items(other, "n", None).unwrap(), [item("x", 0)]);
        // Purging a node leaves the neighbours' items alone too.
        assert_eq!(
            s.write_sync(|t| t.purge_pubsub_items(SVC, "n0")).unwrap(),
            Some(3)
        );
        assert_eq!(ids(&s, "n\u{1}", None), ["z", "y", "x"]);
        assert_eq!(ids(&s, "na", None), ["z", "y", "x"]);
    }

    fn sub(s: &Storage, node: &str, jid: &str, max: usize) -> Subscribed {
        s.write_sync(|t| t.subscribe_pubsub(SVC, node, jid, 7, max))
            .unwrap()
    }

    fn subscribers(s: &Storage, node: &str) -> Vec<String> {
        s.pubsub()
            .subscribers(SVC, node, 100)
            .unwrap()
            .into_iter()
            .map(|p| p.jid)
            .collect()
    }

    #[test]
    fn subscriptions_are_bounded_per_node_and_go_with_node_and_account() {
        let dir = TempDir::new("subs");
        let s = setup(&dir, &[SVC, "julietta@capulet.lit"]);
        assert_eq!(sub(&s, "n", "romeo@montague.lit", 2), Subscribed::NoNode);
        for node in ["m", "n", "n0", "o"] {
            create(&s, SVC, node);
        }
        create(&s, "julietta@capulet.lit", "n");
        let r = "romeo@montague.lit";
        let rf = "romeo@montague.lit/orchard";
        assert_eq!(sub(&s, "n", rf, 2), Subscribed::Added);
        assert_eq!(sub(&s, "n", rf, 2), Subscribed::Already);
        assert_eq!(sub(&s, "n", r, 2), Subscribed::Added);
        // The bound counts this node only, and a repeat at the bound is still "already".
        assert_eq!(sub(&s, "n", "nurse@capulet.lit", 2), Subscribed::Full);
        assert_eq!(sub(&s, "n", r, 2), Subscribed::Already);
        assert_eq!(sub(&s, "n", "nurse@capulet.lit", 0), Subscribed::Full);
        for node in ["m", "n0", "o"] {
            assert_eq!(sub(&s, node, r, 2), Subscribed::Added);
        }
        s.write_sync(|t| t.subscribe_pubsub("julietta@capulet.lit", "n", r, 1, 5))
            .unwrap();
        assert_eq!(subscribers(&s, "n"), [r, rf]);
        assert_eq!(
            s.pubsub().subscription(SVC, "n", rf).unwrap(),
            Some(PubsubSubscription {
                jid: rf.into(),
                since: 7
            })
        );
        assert_eq!(s.pubsub().subscription(SVC, "n", "x@y").unwrap(), None);
        assert_eq!(s.pubsub().subscribers(SVC, "n", 1).unwrap().len(), 1);
        assert!(s
            .write_sync(|t| t.unsubscribe_pubsub(SVC, "n", rf))
            .unwrap());
        assert!(!s
            .write_sync(|t| t.unsubscribe_pubsub(SVC, "n", rf))
            .unwrap());
        assert_eq!(subscribers(&s, "n"), [r]);
        // Deleting the node takes its subscriptions and nobody else's.
        assert!(s.write_sync(|t| t.delete_pubsub_node(SVC, "n")).unwrap());
        assert!(subscribers(&s, "n").is_empty());
        for node in ["m", "n0", "o"] {
            assert_eq!(subscribers(&s, node), [r]);
        }
        create(&s, SVC, "n");
        assert!(
            subscribers(&s, "n").is_empty(),
            "a recreated node starts without"
        );
        // Deleting the account takes the rest of its service's, and leaves the neighbour's.
        s.accounts().delete(SVC).unwrap();
        assert!(all_keys(&s)
            .iter()
            .all(|(_, k)| k.starts_with(b"julietta@capulet.lit\0")));
        assert_eq!(
            s.pubsub()
                .subscribers("julietta@capulet.lit", "n", 10)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn subscription_records_round_trip_and_refuse_damage() {
        let decode = |buf: &[u8]| decode_subscription("a@b", buf);
        let buf = encode_subscription(1_700_000_000_000);
        assert_eq!(decode(&buf).unwrap().since, 1_700_000_000_000);
        every_truncation_is_corrupt(&buf, decode);
        garbage_never_panics(&buf, decode);
        let mut pending = buf.clone();
        pending[1] = 2;
        assert!(matches!(decode(&pending), Err(StorageError::Corrupt(_))));
    }

    fn names(s: &Storage, service: &str, after: Option<&str>, limit: usize) -> Vec<String> {
        s.pubsub().node_names(service, after, limit).unwrap()
    }

    #[test]
    fn node_names_page_in_order_within_one_service() {
        let dir = TempDir::new("names");
        let services = ["a@x", "a@xb", "a@", "a@x.b", "a", "b@x"];
        let s = setup(&dir, &services);
        let all = ["alpha", "bravo", "charlie", "delta", "echo"];
        for node in ["delta", "alpha", "charlie", "bravo", "echo"] {
            create(&s, "a@x", node);
        }
        for (service, node) in [
            ("a@xb", "aaa"),
            ("a@xb", "zzz"),
            ("a@", "x"),
            ("a@x.b", "m"),
            ("a", "a"),
            ("b@x", "alpha"),
        ] {
            create(&s, service, node);
        }
        assert_eq!(names(&s, "a@x", None, 100), all);
        assert_eq!(names(&s, "a@x", None, 2), ["alpha", "bravo"]);
        assert_eq!(names(&s, "a@x", None, 0), Vec::<String>::new());
        assert_eq!(names(&s, "a@x", Some("bravo"), 2), ["charlie", "delta"]);
        assert_eq!(names(&s, "a@x", Some("delta"), 2), ["echo"]);
        assert_eq!(names(&s, "a@x", Some("echo"), 2), Vec::<String>::new());
        assert_eq!(names(&s, "a@x", Some("b"), 1), ["bravo"]);
        assert_eq!(names(&s, "a@x", Some(""), 1), ["alpha"]);
        // A cursor longer than any key is no error.
        assert_eq!(names(&s, "a@x", Some(&"bz".repeat(1000)), 1), ["charlie"]);
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = names(&s, "a@x", after.as_deref(), 2);
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            paged.extend(page);
        }
        assert_eq!(paged, all);
        assert_eq!(names(&s, "a@xb", None, 10), ["aaa", "zzz"]);
        assert_eq!(names(&s, "a", None, 10), ["a"]);
        assert_eq!(names(&s, "nope@x", None, 10), Vec::<String>::new());
        assert_eq!(s.pubsub().node_count("a@x").unwrap(), 5);
        assert_eq!(s.pubsub().node_count("a@xb").unwrap(), 2);
        assert_eq!(s.pubsub().node_count("nope@x").unwrap(), 0);
    }

    #[test]
    fn invalid_and_overlong_keys_are_refused_without_writing() {
        let dir = TempDir::new("keys");
        let s = setup(&dir, &[SVC]);
        create(&s, SVC, NODE);
        let long = "n".repeat(600);
        for (service, node) in [
            ("", "n"),
            (SVC, ""),
            ("a\0b", "n"),
            (SVC, "n\0m"),
            (SVC, &long),
        ] {
            assert!(matches!(
                s.write_sync(|t| t.create_pubsub_node(service, node, b"")),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.pubsub().node(service, node),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.pubsub().items(service, node, None),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.write_sync(|t| t.publish_pubsub_item(service, node, &item("i", 0), 1)),
                Err(StorageError::InvalidKey(_))
            ));
        }
        for id in ["", "i\0j", &long] {
            assert!(matches!(
                s.write_sync(|t| t.publish_pubsub_item(SVC, NODE, &item(id, 0), 1)),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.pubsub().item(SVC, NODE, id),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.write_sync(|t| t.retract_pubsub_item(SVC, NODE, id)),
                Err(StorageError::InvalidKey(_))
            ));
        }

        // The longest node name whose order keys still fit: `SVC \0 node \0 seq` = 511.
        let longest = "n".repeat(key::MAX_KEY - SVC.len() - 2 - 8);
        assert!(create(&s, SVC, &longest));
        let too_long = format!("{longest}n");
        assert!(matches!(
            s.write_sync(|t| t.create_pubsub_node(SVC, &too_long, b"")),
            Err(StorageError::InvalidKey(_))
        ));
        // Its items take ids up to the key limit: exactly 511 bytes works, 512 is refused.
        let id = "i".repeat(8);
        publish(&s, &longest, &item(&id, 0), 5).unwrap();
        let over = "i".repeat(9);
        assert!(matches!(
            s.write_sync(|t| t.publish_pubsub_item(SVC, &longest, &item(&over, 0), 5)),
            Err(StorageError::InvalidKey(_))
        ));
        assert_eq!(ids(&s, &longest, None), [id]);
        assert_eq!(count(&s, &longest), 1);
        assert_eq!(s.pubsub().node_count(SVC).unwrap(), 2);
        assert_consistent(&s, SVC, &longest);
    }

    #[test]
    fn oversized_items_and_configs_are_refused() {
        let dir = TempDir::new("big");
        let s = setup(&dir, &[SVC]);
        create(&s, SVC, NODE);
        let mut it = item("big", 0);
        it.payload.clear();
        let overhead = encode_item(0, &it).len();
        it.payload = vec![b'x'; MAX_ITEM_RECORD - overhead];
        assert_eq!(encode_item(0, &it).len(), MAX_ITEM_RECORD);
        assert_eq!(publish(&s, NODE, &it, 5), Some(vec![]));
        assert_eq!(s.pubsub().item(SVC, NODE, "big").unwrap(), Some(it.clone()));

        let mut too_big = it.clone();
        too_big.payload.push(b'x');
        match s.write_sync(|t| t.publish_pubsub_item(SVC, NODE, &too_big, 5)) {
            Err(e @ StorageError::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (MAX_ITEM_RECORD + 1, MAX_ITEM_RECORD));
                assert!(e.is_full());
            }
            other => panic!("oversized item: {other:?}"),
        }
        // Refused without touching the stored item or the node.
        assert_eq!(s.pubsub().item(SVC, NODE, "big").unwrap(), Some(it));
        too_big.id = "other".into();
        assert!(matches!(
            s.write_sync(|t| t.publish_pubsub_item(SVC, NODE, &too_big, 5)),
            Err(StorageError::TooLarge { .. })
        ));
        assert_eq!(count(&s, NODE), 1);
        assert_consistent(&s, SVC, NODE);

        let config = vec![0; MAX_NODE_RECORD];
        assert!(matches!(
            s.write_sync(|t| t.create_pubsub_node(SVC, "other", &config)),
            Err(StorageError::TooLarge { .. })
        ));
        assert!(matches!(
            s.write_sync(|t| t.configure_pubsub_node(SVC, NODE, &config)),
            Err(StorageError::TooLarge { .. })
        ));
        assert_eq!(s.pubsub().node(SVC, "other").unwrap(), None);
        assert_eq!(s.pubsub().node(SVC, NODE).unwrap().unwrap().config, b"cfg");
    }

    #[test]
    fn damaged_records_are_corrupt_not_panics() {
        let dir = TempDir::new("damaged");
        let s = setup(&dir, &[SVC]);
        create(&s, SVC, NODE);
        publish(&s, NODE, &item("a", 0), 5);
        publish(&s, NODE, &item("b", 0), 5);
        let prefix = key::nested_prefix(SVC, "node", NODE).unwrap();
        // An order entry naming an item stored under another sequence number.
        let first = key::seq_below(&prefix, 0);
        s.write_sync(|t| t.put(Table::PubsubOrder, &first, &encode_order("b")))
            .unwrap();
        assert!(matches!(
            s.pubsub().items(SVC, NODE, None),
            Err(StorageError::Corrupt(_))
        ));
        // Only what is read is checked: the newest item is still readable.
        assert_eq!(ids(&s, NODE, Some(1)), ["b"]);
        // An order entry naming no stored item.
        s.write_sync(|t| t.put(Table::PubsubOrder, &first, &encode_order("gone")))
            .unwrap();
        assert!(matches!(
            s.pubsub().items(SVC, NODE, None),
            Err(StorageError::Corrupt(_))
        ));
        // Trimming through the damage is refused, and rolled back.
        assert!(matches!(
            s.write_sync(|t| t.publish_pubsub_item(SVC, NODE, &item("c", 0), 1)),
            Err(StorageError::Corrupt(_))
        ));
        assert_eq!(count(&s, NODE), 2);
        s.write_sync(|t| t.put(Table::PubsubOrder, &first, &encode_order("a")))
            .unwrap();
        assert_eq!(ids(&s, NODE, None), ["b", "a"]);

        // A damaged node record.
        let node_key = key::named(SVC, "node", NODE).unwrap();
        s.write_sync(|t| t.put(Table::PubsubNodes, &node_key, b"\x01\xff"))
            .unwrap();
        assert!(matches!(
            s.pubsub().node(SVC, NODE),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            s.write_sync(|t| t.publish_pubsub_item(SVC, NODE, &item("c", 0), 5)),
            Err(StorageError::Corrupt(_))
        ));
    }
}
