//! RFC 6121: XMPP Instant Messaging and Presence — rosters (§2, with versioning per
//! XEP-0237 and pre-approval per §3.4), presence subscriptions (§3), and presence (§4).
//!
//! All state of an account lives on its home shard: the roster is read from LMDB into a cache
//! while the account has sessions here, every change is written through the group-committed
//! writer and applied to the cache after it is durable, and changes to one account are
//! serialized by a per-account lock so pushes leave in commit order.

mod presence;
mod roster;
pub mod subscription;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use ahash::AHashMap;
use xmppd_storage::{RosterItem, StorageError, Subscription, WriteTxn};

use crate::config::{pick, Config, ConfigError};
use crate::core::events::{self, priority, ClientStanza, DeliverBare, DeliverFull, SessionEnded};

/// Presence only: RFC 6121's links never see messages or IQs.
const PRESENCE: events::Kinds = events::Kinds::PRESENCE;
use crate::core::{Ctx, Flow, Registry, Scope};
use crate::xml::Element;
use crate::xmpp::stanza::{IqType, StanzaType};
use subscription::SubState;

/// Roster stream feature (XEP-0237 / RFC 6121 §2.6).
pub const NS_ROSTERVER: &str = "urn:xmpp:features:rosterver";
/// Pre-approval stream feature (RFC 6121 §3.4).
pub const NS_PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
/// The roster namespace.
pub const NS_ROSTER: &str = "jabber:iq:roster";

/// Register rosters, subscriptions and presence.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("rfc6121");
    let im = Rc::new(Im::new(config));
    r.stream_feature(Element::new("ver", NS_ROSTERVER));
    r.stream_feature(Element::new("sub", NS_PRE_APPROVAL));
    {
        let im = im.clone();
        r.iq(
            Scope::Account,
            IqType::Get,
            NS_ROSTER,
            "query",
            move |ctx, req| roster::get(&im, ctx, req),
        );
    }
    {
        let im = im.clone();
        r.iq(
            Scope::Account,
            IqType::Set,
            NS_ROSTER,
            "query",
            move |ctx, req| roster::set(&im, ctx, req),
        );
    }
    {
        let im = im.clone();
        r.hook_for::<ClientStanza>(PRESENCE, priority::PROTOCOL, move |ctx, s| match s.ty {
            StanzaType::Presence(ty) => Flow::Handled(presence::from_client(&im, ctx, s, ty)),
            _ => Flow::Continue,
        });
    }
    // Presence for the account, to its bare or a full JID: subscriptions, probes, and
    // delivery in order behind a subscription change being committed.
    {
        let im = im.clone();
        r.hook_for::<DeliverBare>(PRESENCE, priority::PROTOCOL, move |ctx, p| {
            inbound(&im, ctx, p)
        });
    }
    {
        let im = im.clone();
        r.hook_for::<DeliverFull>(PRESENCE, priority::PROTOCOL, move |ctx, p| {
            inbound(&im, ctx, p)
        });
    }
    r.hook::<SessionEnded>(priority::PROTOCOL, move |ctx, resource| {
        presence::session_ended(&im, ctx, resource);
        None
    });
}

fn inbound(im: &Rc<Im>, ctx: &Ctx, p: &events::Inbound<'_>) -> Flow {
    match p.ty {
        StanzaType::Presence(_) => presence::inbound(im, ctx, p),
        _ => Flow::Continue,
    }
}

/// RFC 6121 state of one resource, kept in its `Resource::ext` slot (private to this module).
#[derive(Default)]
struct ImResource {
    /// The last available presence broadcast (stamped), replayed to the account's new
    /// resources and to contacts' probes.
    last_presence: Option<Box<[u8]>>,
    /// The resource requested the roster in this session, so it gets roster pushes
    /// (RFC 6121 §2.1.6 "interested resource").
    interested: bool,
    /// The resource used roster versioning, so its pushes carry `ver`.
    rosterver: bool,
    /// Entities that got directed available presence from this resource and are not contacts
    /// with a presence subscription: they get unavailable presence when it goes (RFC 6121 §4.6).
    directed: Vec<Box<str>>,
}

impl ImResource {
    /// The state of a resource (None: nothing recorded yet).
    fn of(r: &crate::core::sessions::Resource) -> Option<&ImResource> {
        r.ext.get::<ImResource>()
    }
}

/// The last available presence a resource broadcast (stamped), if it is available: what a
/// contact that may see it again is sent (privacy lists lifting a `presence-out` denial).
pub(crate) fn last_presence(r: &crate::core::sessions::Resource) -> Option<&[u8]> {
    ImResource::of(r)?.last_presence.as_deref()
}

/// The entities that are not contacts and got directed available presence from a resource
/// (RFC 6121 §4.6): who can see it besides its roster (privacy lists' `presence-out`
/// transitions reach them too, PRIV-20).
pub(crate) fn directed_presence(r: &crate::core::sessions::Resource) -> &[Box<str>] {
    ImResource::of(r).map_or(&[], |s| &s.directed[..])
}

/// RFC 6121's flags (`[modules.roster]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterArgs {
    /// Most items in one roster [default: 1000].
    #[arg(long)]
    pub max_roster_items: Option<usize>,
    /// Most groups on one roster item [default: 32].
    #[arg(long)]
    pub max_roster_groups: Option<usize>,
    /// Longest roster item name or group name, in bytes [default: 1024].
    #[arg(long)]
    pub max_roster_text: Option<usize>,
    /// Most unanswered subscription requests kept for one account [default: 1000].
    #[arg(long)]
    pub max_pending_subscriptions: Option<usize>,
}

/// RFC 6121's resolved settings.
#[derive(Debug, Clone)]
pub struct RosterConfig {
    /// Most items in one roster.
    pub max_roster_items: usize,
    /// Most groups per roster item.
    pub max_roster_groups: usize,
    /// Longest roster name or group, in bytes.
    pub max_roster_text: usize,
    /// Most pending inbound subscription requests per account.
    pub max_pending_subscriptions: usize,
}

impl RosterArgs {
    /// Flags over the file over defaults, with bounds.
    pub fn resolve(&self, file: &RosterArgs) -> Result<RosterConfig, ConfigError> {
        let c = RosterConfig {
            max_roster_items: pick(self.max_roster_items, file.max_roster_items, 1000),
            max_roster_groups: pick(self.max_roster_groups, file.max_roster_groups, 32),
            max_roster_text: pick(self.max_roster_text, file.max_roster_text, 1024),
            max_pending_subscriptions: pick(
                self.max_pending_subscriptions,
                file.max_pending_subscriptions,
                1000,
            ),
        };
        if c.max_roster_items == 0 || c.max_pending_subscriptions == 0 {
            return Err(ConfigError(
                "--max-roster-items and --max-pending-subscriptions must be at least 1".into(),
            ));
        }
        if c.max_roster_text < 16 {
            return Err(ConfigError("--max-roster-text must be at least 16".into()));
        }
        Ok(c)
    }
}

/// Bounds on what one account may keep.
#[derive(Debug, Clone, Copy)]
struct Limits {
    items: usize,
    groups: usize,
    text: usize,
    requests: usize,
}

/// One account's roster as cached on its home shard.
#[derive(Debug, Default)]
struct RosterState {
    items: BTreeMap<String, RosterItem>,
    pending_in: BTreeMap<String, Vec<u8>>,
    version: u64,
}

impl RosterState {
    fn state_of(&self, contact: &str) -> SubState {
        sub_state(
            self.items.get(contact),
            self.pending_in.contains_key(contact),
        )
    }

    /// Contacts that receive the user's presence (`from` or `both`).
    fn presence_audience(&self) -> Vec<&str> {
        self.items
            .values()
            .filter(|i| matches!(i.subscription, Subscription::From | Subscription::Both))
            .map(|i| i.jid.as_str())
            .collect()
    }

    /// Contacts whose presence the user receives (`to` or `both`).
    fn presence_sources(&self) -> Vec<&str> {
        self.items
            .values()
            .filter(|i| matches!(i.subscription, Subscription::To | Subscription::Both))
            .map(|i| i.jid.as_str())
            .collect()
    }
}

/// What one write changed, to apply to the cache and push after it is durable.
#[derive(Debug, Default)]
struct Change {
    contact: String,
    /// The item's new state, if it changed (None inside: removed).
    item: Option<Option<RosterItem>>,
    /// The pending request's new state, if it changed.
    pending_in: Option<Option<Vec<u8>>>,
    /// The roster version after the change, if the item changed.
    version: Option<u64>,
}

/// Per-shard state of the module.
struct Im {
    rosters: RefCell<AHashMap<Box<str>, Rc<RefCell<RosterState>>>>,
    locks: crate::core::locks::AccountLocks,
    limits: Limits,
    push_id: Cell<u64>,
}

impl Im {
    fn new(config: &Config) -> Im {
        Im {
            rosters: RefCell::new(AHashMap::new()),
            locks: Default::default(),
            limits: Limits {
                items: config.modules.roster.max_roster_items,
                groups: config.modules.roster.max_roster_groups,
                text: config.modules.roster.max_roster_text,
                requests: config.modules.roster.max_pending_subscriptions,
            },
            push_id: Cell::new(0),
        }
    }

    /// The account's roster: from the cache while it has sessions here, else read now. A
    /// failed read is an error for the caller to answer as one, and is not cached: the next
    /// call reads again (issue 8: a storage failure is never an empty roster).
    fn roster(&self, ctx: &Ctx, user: &str) -> Result<Rc<RefCell<RosterState>>, StorageError> {
        if let Some(r) = self.rosters.borrow().get(user) {
            return Ok(r.clone());
        }
        let r = ctx.storage().rosters().load(user)?;
        let state = RosterState {
            items: r.items.into_iter().map(|i| (i.jid.clone(), i)).collect(),
            pending_in: r.pending_in.into_iter().collect(),
            version: r.version,
        };
        let keep = !state.items.is_empty() || !state.pending_in.is_empty();
        let state = Rc::new(RefCell::new(state));
        // Empty rosters are not cached: reading one again costs a short LMDB lookup, keeping
        // one costs memory in every idle session.
        if keep && ctx.sessions().borrow().account(user).is_some() {
            self.rosters.borrow_mut().insert(user.into(), state.clone());
        }
        Ok(state)
    }

    /// Forget the cached roster of an account that has no sessions left.
    fn evict(&self, ctx: &Ctx, user: &str) {
        if ctx.sessions().borrow().account(user).is_none() {
            self.rosters.borrow_mut().remove(user);
        }
    }

    /// Run `op` in one group-committed transaction while holding the account's lock, apply
    /// what it changed to the cache, and push a changed item to interested resources; the lock
    /// is held until `after` ran, so pushes and follow-up stanzas leave in commit order.
    ///
    /// Call it (it takes the account's lock handle) in the same scheduler step that received
    /// the stanza, so that stanzas for the account that arrive after it queue behind it.
    fn mutate<T, Op, After>(
        self: Rc<Self>,
        ctx: Ctx,
        user: String,
        op: Op,
        after: After,
    ) -> impl std::future::Future<Output = Result<T, StorageError>>
    where
        T: Send + 'static,
        Op: FnOnce(&mut WriteTxn<'_>) -> Result<(Change, T), StorageError> + Send + 'static,
        After: FnOnce(&Ctx, &T),
    {
        let lock = self.locks.handle(&user);
        self.mutate_locked(ctx, user, lock, op, after)
    }

    async fn mutate_locked<T, Op, After>(
        self: Rc<Self>,
        ctx: Ctx,
        user: String,
        lock: Rc<glommio::sync::Semaphore>,
        op: Op,
        after: After,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        Op: FnOnce(&mut WriteTxn<'_>) -> Result<(Change, T), StorageError> + Send + 'static,
        After: FnOnce(&Ctx, &T),
    {
        let permit = lock.acquire_static_permit(1).await;
        let result = ctx.storage().submit(op).await;
        let out = match result {
            Ok((change, value)) => {
                self.apply(&ctx, &user, &change);
                after(&ctx, &value);
                Ok(value)
            }
            Err(e) => Err(e),
        };
        drop(permit);
        self.release_lock(&user, lock);
        out
    }

    /// The account's lock if a change is being committed (or waits to be): stanzas that must
    /// not overtake it queue on it.
    fn pending_lock(&self, user: &str) -> Option<Rc<glommio::sync::Semaphore>> {
        self.locks.pending(user)
    }

    /// Drop a handle on an account's lock, forgetting the lock when nobody else holds one.
    fn release_lock(&self, user: &str, lock: Rc<glommio::sync::Semaphore>) {
        self.locks.release(user, lock);
    }

    /// Apply a durable change to the cache and push the item (RFC 6121 §2.1.6).
    fn apply(&self, ctx: &Ctx, user: &str, change: &Change) {
        if let Some(cached) = self.rosters.borrow().get(user) {
            let mut r = cached.borrow_mut();
            match &change.item {
                Some(Some(item)) => {
                    r.items.insert(change.contact.clone(), item.clone());
                }
                Some(None) => {
                    r.items.remove(&change.contact);
                }
                None => {}
            }
            match &change.pending_in {
                Some(Some(stanza)) => {
                    r.pending_in.insert(change.contact.clone(), stanza.clone());
                }
                Some(None) => {
                    r.pending_in.remove(&change.contact);
                }
                None => {}
            }
            if let Some(v) = change.version {
                r.version = v;
            }
        }
        if let (Some(item), Some(version)) = (&change.item, change.version) {
            roster::push(self, ctx, user, &change.contact, item.as_ref(), version);
        }
    }
}

/// The subscription state of one contact, from its item and pending request.
fn sub_state(item: Option<&RosterItem>, pending_in: bool) -> SubState {
    let (to, from) = match item.map(|i| i.subscription) {
        Some(Subscription::To) => (true, false),
        Some(Subscription::From) => (false, true),
        Some(Subscription::Both) => (true, true),
        Some(Subscription::None) | None => (false, false),
    };
    SubState {
        to,
        from,
        pending_out: item.is_some_and(|i| i.ask),
        pending_in,
    }
}

/// The storage form of a subscription.
fn subscription_of(s: SubState) -> Subscription {
    match (s.to, s.from) {
        (false, false) => Subscription::None,
        (true, false) => Subscription::To,
        (false, true) => Subscription::From,
        (true, true) => Subscription::Both,
    }
}
