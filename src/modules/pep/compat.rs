//! One bookmarks list in three stores (XEP-0402 §6.3): XEP-0402 native bookmarks (PEP node
//! `urn:xmpp:bookmarks:1`, one item per room), XEP-0048 bookmarks in XEP-0049 private XML
//! (`#compat`), and XEP-0048 bookmarks in PEP (node `storage:bookmarks`, one item `current`,
//! the XEP-0223 way; `#compat-pep`). What a client writes to any of them, a client of another
//! kind reads from its own.
//!
//! The two legacy copies hold the same `<storage xmlns='storage:bookmarks'/>` bytes; the
//! native node holds the rooms. Every write that changes one store rewrites the others in the
//! same transaction, so they never disagree after a commit:
//!
//! - a native change rebuilds the legacy list from the native items (keeping the `<url/>`s of
//!   the stored legacy list) and writes it to both legacy stores ([`sync_from_native`]);
//! - a legacy list written to private XML or published to the PEP node is copied to the other
//!   legacy store and applied to the native node item by item, unchanged rooms untouched
//!   (§6.3.2: no notification for them) ([`apply_legacy`]).
//!
//! Nodes the bridge needs are created with their XEP's configuration when the account has
//! room for them (`--pep-max-nodes`), decided before the write ([`Plan`]); without room, that
//! store is left alone and the write itself still succeeds.

use xmppd_storage::{PubsubItem, StorageError, WriteTxn};

use super::bookmarks::{self, Native, NS_LEGACY, NS_NATIVE};
use super::config::{AccessModel, Bounds as ConfigBounds, NodeConfig, SendLast};
use super::service::Pep;
use super::wire;
use crate::core::Ctx;
use crate::xml::{Element, Limits};
use crate::xmpp::error::StanzaError;

/// The account feature announcing the XEP-0223 leg (XEP-0402 §6.3).
pub const FEATURE_COMPAT_PEP: &str = "urn:xmpp:bookmarks:1#compat-pep";
/// The id of the one item of the legacy PEP node (XEP-0048 §3.2 via XEP-0223 §3).
pub const LEGACY_ITEM: &str = "current";

/// The configuration XEP-0402 asks for its node: private to the owner, as many items as the
/// server keeps, nothing replayed on presence.
pub fn native_config(bounds: &ConfigBounds) -> NodeConfig {
    let mut c = NodeConfig::pep_default(bounds);
    c.access_model = AccessModel::Whitelist;
    c.max_items = bounds.max_items;
    c.send_last_published_item = SendLast::Never;
    c.persist_items = true;
    c
}

/// The configuration of the legacy PEP node (XEP-0223 §3: persistent, whitelist): one item.
pub fn legacy_config(bounds: &ConfigBounds) -> NodeConfig {
    let mut c = native_config(bounds);
    c.max_items = 1;
    c
}

/// One bridged node as a write will find it: its configuration, and whether the write must
/// create it.
#[derive(Clone, Debug)]
pub struct Target {
    pub config: NodeConfig,
    pub create: bool,
}

/// The bridged PEP nodes a write may touch, read before it; `None` is a node that does not
/// exist and for which the account has no room.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub native: Option<Target>,
    pub legacy: Option<Target>,
}

impl Plan {
    /// Reads both nodes' configurations, and the room for the missing ones.
    pub fn read(pep: &Pep, ctx: &Ctx, owner: &str) -> Result<Plan, StanzaError> {
        let bounds = &pep.bounds.config;
        let native = pep.node_config(ctx, owner, NS_NATIVE)?;
        let legacy = pep.node_config(ctx, owner, NS_LEGACY)?;
        let missing = usize::from(native.is_none()) + usize::from(legacy.is_none());
        let mut room = if missing == 0 {
            0
        } else {
            let count = ctx
                .storage()
                .pubsub()
                .node_count(owner)
                .map_err(|e| crate::core::storage_failure("counting PEP nodes", owner, &e))?;
            pep.bounds.max_nodes.saturating_sub(count)
        };
        let mut target = |found: Option<NodeConfig>, fresh: NodeConfig| match found {
            Some(config) => Some(Target {
                config,
                create: false,
            }),
            None if room > 0 => {
                room -= 1;
                Some(Target {
                    config: fresh,
                    create: true,
                })
            }
            None => None,
        };
        Ok(Plan {
            native: target(native, native_config(bounds)),
            legacy: target(legacy, legacy_config(bounds)),
        })
    }
}

/// What a bridged write changed besides its own store, for the notifications.
#[derive(Debug, Default)]
pub struct Changes {
    /// Native items published (new or changed).
    pub published: Vec<Native>,
    /// Native items retracted.
    pub retracted: Vec<String>,
    /// The legacy list, if it was written to the legacy PEP node.
    pub legacy_pep: Option<Vec<u8>>,
}

/// After the native node changed: the legacy list rebuilt from its items (with the stored
/// list's URLs), written to private XML and, if planned, to the legacy PEP node.
pub fn sync_from_native(
    txn: &mut WriteTxn<'_>,
    owner: &str,
    legacy: Option<&Target>,
    limits: &Limits,
    now: u64,
) -> Result<Changes, StorageError> {
    let items = txn.pubsub_items(owner, NS_NATIVE)?;
    let previous = txn
        .private_fragment(owner, NS_LEGACY)?
        .and_then(|f| bookmarks::stored_legacy(&f, limits));
    let view: Vec<(&str, &[u8])> = items
        .iter()
        .map(|i| (i.id.as_str(), i.payload.as_slice()))
        .collect();
    let list = bookmarks::native_to_legacy(&view, previous.as_ref(), limits);
    txn.put_private(owner, NS_LEGACY, &list)?;
    let mut changes = Changes::default();
    if let Some(target) = legacy {
        write_legacy_pep(txn, owner, target, &list, owner, now)?;
        changes.legacy_pep = Some(list);
    }
    Ok(changes)
}

/// A legacy list (`storage`) was written to one legacy store (`from_pep`: the PEP node; else
/// private XML): copied to the other, and applied to the native node, if planned.
pub fn apply_legacy(
    txn: &mut WriteTxn<'_>,
    owner: &str,
    plan: &Plan,
    storage: &Element,
    from_pep: bool,
    publisher: &str,
    now: u64,
) -> Result<Changes, StorageError> {
    let mut list = Vec::new();
    storage.write_to(&mut list, "");
    let list = &list[..];
    let mut changes = Changes::default();
    if from_pep {
        txn.put_private(owner, NS_LEGACY, list)?;
    } else if let Some(target) = &plan.legacy {
        write_legacy_pep(txn, owner, target, list, publisher, now)?;
        changes.legacy_pep = Some(list.to_vec());
    }
    let Some(native) = &plan.native else {
        return Ok(changes);
    };
    if native.create {
        txn.create_pubsub_node(owner, NS_NATIVE, &native.config.encode())?;
    }
    let wanted = bookmarks::legacy_to_native(storage);
    let old = txn.pubsub_items(owner, NS_NATIVE)?;
    let old: Vec<(&str, &[u8])> = old
        .iter()
        .map(|i| (i.id.as_str(), i.payload.as_slice()))
        .collect();
    let (publish, retract) = bookmarks::diff(&old, &wanted);
    changes.published = publish.into_iter().cloned().collect();
    changes.retracted = retract;
    for n in &changes.published {
        let item = PubsubItem {
            id: n.id.clone(),
            publisher: publisher.to_string(),
            published_at: now,
            payload: n.payload.clone(),
        };
        txn.publish_pubsub_item(owner, NS_NATIVE, &item, native.config.max_items as usize)?;
    }
    for id in &changes.retracted {
        txn.retract_pubsub_item(owner, NS_NATIVE, id)?;
    }
    Ok(changes)
}

fn write_legacy_pep(
    txn: &mut WriteTxn<'_>,
    owner: &str,
    target: &Target,
    list: &[u8],
    publisher: &str,
    now: u64,
) -> Result<(), StorageError> {
    if target.create {
        txn.create_pubsub_node(owner, NS_LEGACY, &target.config.encode())?;
    }
    let item = PubsubItem {
        id: LEGACY_ITEM.to_string(),
        publisher: publisher.to_string(),
        published_at: now,
        payload: list.to_vec(),
    };
    txn.publish_pubsub_item(owner, NS_LEGACY, &item, 1)?;
    Ok(())
}

/// The notifications for what a bridged write changed in the other stores: the native items
/// published and retracted, and the legacy PEP item.
pub fn notify(
    pep: &Pep,
    ctx: &Ctx,
    owner: &str,
    plan: &Plan,
    changes: &Changes,
    publisher: Option<&str>,
) {
    if let Some(native) = &plan.native {
        let config = &native.config;
        for n in &changes.published {
            pep.notify(ctx, owner, NS_NATIVE, config, publisher, |out| {
                wire::write_item_event(out, NS_NATIVE, &n.id, None, Some(&n.payload))
            });
        }
        if config.notify_retract {
            for id in &changes.retracted {
                pep.notify(ctx, owner, NS_NATIVE, config, None, |out| {
                    wire::write_retract_event(out, NS_NATIVE, id)
                });
            }
        }
    }
    if let (Some(list), Some(legacy)) = (&changes.legacy_pep, &plan.legacy) {
        let config = &legacy.config;
        pep.notify(ctx, owner, NS_LEGACY, config, publisher, |out| {
            wire::write_item_event(
                out,
                NS_LEGACY,
                LEGACY_ITEM,
                None,
                config.deliver_payloads.then_some(&list[..]),
            )
        });
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
