//! PEP (XEP-0163): every account is a pubsub service (XEP-0060) at its bare JID.
//!
//! Everything about one owner happens on the owner's home shard: its pubsub requests (IQs to
//! the bare JID are answered there), the presence its contacts send it (the delivery chains
//! run there, whether or not the owner is online), and the answers to the entity-capability
//! queries sent from its bare JID. So the shard keeps, per owner, which full JIDs it has
//! available presence from and what their clients want (`NODE+notify` in XEP-0115 caps): the
//! [`Interest`] table. Nodes and items live in LMDB (`storage/src/pubsub.rs`) and are durable
//! before a publish is answered.
//!
//! Notifications go from the owner's bare JID to the interested full JIDs the node's access
//! model allows, with one copy of the bytes per destination shard (`Services::fanout`).
//! Caps are verified (XEP-0115 §5.4) and cached per shard by hash, shared by every account
//! (`crate::xmpp::caps::CapsCache`); a response that fails verification is used for the JID
//! that sent it only.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use xmppd_storage::{PubsubItem, StorageError, Subscribed, Subscription, WriteTxn};

use super::bookmarks::{NS_LEGACY, NS_NATIVE};
use super::compat;
use super::config::{AccessModel, Bounds as ConfigBounds, NodeConfig, PreconditionError, SendLast};
use super::wire::{self, Request, NS_PUBSUB, NS_PUBSUB_ERRORS, NS_PUBSUB_OWNER};
use crate::core::events::{NotifyOut, Recipients};
use crate::core::{storage_failure, Ctx, IqAnswer, IqReply, IqRequest};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::caps::{self, CapsAlgo, CapsCache, CapsInfo, QueryStart};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::{bare_of, Jid, JidStr};
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, Kind, MessageType, PresenceType, StanzaType};

/// The id prefix of the caps queries this module sends (`Registry::iq_responses`).
pub const CAPS_QUERY_PREFIX: &str = "pep-caps-";
/// How long a caps query may stay unanswered before its slot is reused.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest node name: with the owner's JID and an item id it must fit an LMDB key.
pub const MAX_NODE: usize = 256;
/// Longest item id.
pub const MAX_ITEM_ID: usize = 128;

/// PEP's bounds, from the module's flags.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Nodes per account (`--pep-max-nodes`).
    pub max_nodes: usize,
    /// Largest item payload, serialized, in bytes (`--pep-max-item-bytes`).
    pub max_item_bytes: usize,
    /// Node configuration bounds (`--pep-max-items` is `config.max_items`).
    pub config: ConfigBounds,
    /// Caps cache entries per shard (`--caps-cache`).
    pub caps_cache: usize,
    /// Caps queries awaiting an answer per shard.
    pub caps_pending: usize,
    /// Full JIDs whose presence one owner's service tracks (`--pep-max-tracked`).
    pub max_tracked: usize,
    /// Explicit subscriptions per node (`--pep-max-subscribers`).
    pub max_subscribers: usize,
}

/// Who gets one notification (PEP-04/05/06), split by PEP-10: presence subscribers (and the
/// owner's own resources) get the publisher's `replyto` address, the others never do.
#[derive(Debug, Default)]
struct Targets {
    /// Presence subscribers.
    replyto: Vec<String>,
    /// Explicit subscribers without a presence subscription (open nodes).
    plain: Vec<String>,
}

/// What the service knows about one available full JID it has presence from.
#[derive(Default)]
struct Seen {
    /// The notify filter, once known (verified caps, or this JID's own answer).
    info: Option<Rc<CapsInfo>>,
    /// The caps it advertised while their answer is awaited: every JID waiting on one `ver`
    /// is served when that answer comes, however many there are (the table itself is
    /// bounded by `--pep-max-tracked`).
    pending: Option<(CapsAlgo, Rc<str>)>,
}

/// An outstanding caps query.
struct Query {
    algo: CapsAlgo,
    ver: String,
    /// The full JID asked; only its answer counts.
    jid: String,
    at: Instant,
}

/// The shard's PEP state.
pub struct Pep {
    pub bounds: Bounds,
    /// owner bare JID -> (full JID -> what it wants).
    interest: RefCell<AHashMap<String, AHashMap<String, Seen>>>,
    /// Verified caps, shared by every account of the shard (its waiter lists are not used: see
    /// `Seen::pending`).
    caps: RefCell<CapsCache<()>>,
    queries: RefCell<AHashMap<String, Query>>,
    next_id: Cell<u64>,
    /// Finds the caps namespace in a presence (built once: building one costs more than a
    /// search).
    caps_finder: memchr::memmem::Finder<'static>,
}

impl Pep {
    pub fn new(bounds: Bounds) -> Pep {
        Pep {
            bounds,
            interest: RefCell::default(),
            caps: RefCell::new(CapsCache::new(bounds.caps_cache, bounds.caps_pending)),
            queries: RefCell::default(),
            next_id: Cell::new(0),
            caps_finder: memchr::memmem::Finder::new(caps::NS_CAPS.as_bytes()),
        }
    }

    fn fresh(&self) -> u64 {
        let n = self.next_id.get().wrapping_add(1);
        self.next_id.set(n);
        n
    }

    /// A new item id: unique on this shard for this run, and across restarts (the time).
    fn new_item_id(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!("{:x}-{:x}", now.as_micros(), self.fresh())
    }

    // ---- interest: presence and caps ------------------------------------------------------

    /// An available presence from `full` reached `owner` (or `owner`'s own resource sent
    /// one). Returns true when the JID was not available before (its first presence: the
    /// last items are due, PEP-07/08) and its filter is known now.
    pub fn available(&self, ctx: &Ctx, owner: &str, full: &str, presence: &[u8]) -> bool {
        let c = xml::parse_element(
            presence,
            &StreamNs::new(ns::CLIENT),
            &ctx.config().xml_limits(),
        )
        .ok()
        .and_then(|el| el.child("c", caps::NS_CAPS).and_then(caps::parse_c));
        let first = {
            let mut interest = self.interest.borrow_mut();
            let tracked = interest.entry(owner.to_string()).or_default();
            if !tracked.contains_key(full) && tracked.len() >= self.bounds.max_tracked {
                return false;
            }
            let first = !tracked.contains_key(full);
            tracked.entry(full.to_string()).or_default();
            first
        };
        self.set_pending(owner, full, None);
        // CAPS-03: legacy caps (no hash) say nothing the server can verify.
        let Some(c) = c.filter(|c| !c.hash.is_empty()) else {
            self.set_info(owner, full, None);
            return false;
        };
        let Some(algo) = CapsAlgo::from_name(&c.hash) else {
            self.set_info(owner, full, None);
            return false;
        };
        let known = self.caps.borrow_mut().get(algo, &c.ver);
        if let Some(info) = known {
            let changed = !self
                .seen_info(owner, full)
                .is_some_and(|i| Rc::ptr_eq(&i, &info));
            self.set_info(owner, full, Some(info));
            return first || changed;
        }
        self.expire_queries(ctx);
        // The answer serves every tracked JID waiting on this ver (see `Seen::pending`); the
        // cache's own waiter list only decides whether a query goes out.
        self.set_pending(owner, full, Some((algo, Rc::from(c.ver.as_str()))));
        let start = self.caps.borrow_mut().begin_query(algo, &c.ver, ());
        match start {
            QueryStart::AlreadyKnown(info) => {
                self.set_pending(owner, full, None);
                self.set_info(owner, full, Some(info));
                first
            }
            QueryStart::Send => {
                self.send_query(ctx, owner, full, algo, &c.ver, &c.node);
                false
            }
            QueryStart::Joined | QueryStart::Refused => false,
        }
    }

    fn set_pending(&self, owner: &str, full: &str, pending: Option<(CapsAlgo, Rc<str>)>) {
        if let Some(seen) = self
            .interest
            .borrow_mut()
            .get_mut(owner)
            .and_then(|t| t.get_mut(full))
        {
            seen.pending = pending;
        }
    }

    /// The tracked JIDs waiting on `(algo, ver)` (and, with `only`, just that JID), given
    /// `info` and no longer waiting; returns them for their last items.
    fn resolve(
        &self,
        algo: CapsAlgo,
        ver: &str,
        only: Option<&str>,
        info: &Rc<CapsInfo>,
    ) -> Vec<(String, String)> {
        let mut served = Vec::new();
        for (owner, tracked) in self.interest.borrow_mut().iter_mut() {
            for (full, seen) in tracked.iter_mut() {
                let waiting = seen
                    .pending
                    .as_ref()
                    .is_some_and(|(a, v)| *a == algo && &**v == ver);
                if waiting && only.is_none_or(|o| o == full) {
                    seen.pending = None;
                    seen.info = Some(info.clone());
                    served.push((owner.clone(), full.clone()));
                }
            }
        }
        served
    }

    /// A presence from `full` reached `owner`'s service (a contact's, or a broadcast of the
    /// owner's own resource): available ones are tracked, and on a first one the last items
    /// are due (PEP-07/08); unavailable (or error) ones drop the JID (XEP-0115: a contact going
    /// unavailable drops its interest). Subscription stanzas change nothing.
    ///
    /// A contact's presence counts only from a JID in the owner's roster, checked when it
    /// first becomes available: a stranger's directed presence makes the service track
    /// nothing and ask nothing (no caps query on the owner's behalf to someone with no
    /// relation to the owner). Any subscription state counts: in the usual handshake the
    /// contact's presence arrives while the owner's item is still `to`, and the `from` that
    /// lets it see nodes comes later with no new presence; whether a tracked JID may see a
    /// node is decided at each notification.
    pub fn presence(&self, ctx: &Ctx, owner: &str, full: &str, ty: PresenceType, stanza: &[u8]) {
        match ty {
            PresenceType::Available => {}
            PresenceType::Unavailable | PresenceType::Error => {
                return self.unavailable(owner, full)
            }
            _ => return,
        }
        // A client that advertises no caps asks for no notifications: nothing to track (and
        // nothing kept from an earlier presence). On the presence path of every account this
        // is one scan and one lookup.
        if self.caps_finder.find(stanza).is_none() {
            return self.unavailable(owner, full);
        }
        if bare_of(full) != owner && !self.tracks(owner, full) {
            match ctx.storage().rosters().item(owner, bare_of(full)) {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(owner, error = %e, "PEP: reading the roster for a presence failed");
                    return;
                }
            }
        }
        if self.available(ctx, owner, full, stanza) {
            self.send_last_items(ctx, owner, full);
        }
    }

    fn tracks(&self, owner: &str, full: &str) -> bool {
        self.interest
            .borrow()
            .get(owner)
            .is_some_and(|t| t.contains_key(full))
    }

    /// `full` went unavailable (or its session ended): its interest is dropped.
    pub fn unavailable(&self, owner: &str, full: &str) {
        let mut interest = self.interest.borrow_mut();
        if interest.is_empty() {
            return;
        }
        if let Some(tracked) = interest.get_mut(owner) {
            tracked.remove(full);
            if tracked.is_empty() {
                interest.remove(owner);
            }
        }
    }

    fn seen_info(&self, owner: &str, full: &str) -> Option<Rc<CapsInfo>> {
        self.interest
            .borrow()
            .get(owner)
            .and_then(|t| t.get(full))
            .and_then(|s| s.info.clone())
    }

    fn set_info(&self, owner: &str, full: &str, info: Option<Rc<CapsInfo>>) {
        if let Some(seen) = self
            .interest
            .borrow_mut()
            .get_mut(owner)
            .and_then(|t| t.get_mut(full))
        {
            seen.info = info;
        }
    }

    /// CAPS-01: ask `full` for its disco#info at `node#ver`, from the owner's bare JID (the
    /// answer comes back to the owner's home shard).
    fn send_query(
        &self,
        ctx: &Ctx,
        owner: &str,
        full: &str,
        algo: CapsAlgo,
        ver: &str,
        node: &str,
    ) {
        let id = format!("{CAPS_QUERY_PREFIX}{}", self.fresh());
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(b"<iq type='get'");
        attr(&mut out, "id", &id);
        attr(&mut out, "from", owner);
        attr(&mut out, "to", full);
        out.extend_from_slice(b"><query xmlns='http://jabber.org/protocol/disco#info'");
        attr(&mut out, "node", &format!("{node}#{ver}"));
        out.extend_from_slice(b"/></iq>");
        self.queries.borrow_mut().insert(
            id,
            Query {
                algo,
                ver: ver.to_string(),
                jid: full.to_string(),
                at: Instant::now(),
            },
        );
        let route = crate::core::Route::new(JidStr::trusted(owner), JidStr::trusted(full));
        ctx.route(StanzaType::Iq(IqType::Get), route, &out);
    }

    /// Queries unanswered for [`QUERY_TIMEOUT`] fail: their waiters stay without a filter
    /// (and get no notifications) until their next presence.
    fn expire_queries(&self, _ctx: &Ctx) {
        let now = Instant::now();
        let expired: Vec<Query> = {
            let mut q = self.queries.borrow_mut();
            let ids: Vec<String> = q
                .iter()
                .filter(|(_, v)| now.duration_since(v.at) > QUERY_TIMEOUT)
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter().filter_map(|id| q.remove(&id)).collect()
        };
        for q in expired {
            self.caps.borrow_mut().fail_query(q.algo, &q.ver);
        }
    }

    /// The answer to a caps query (CAPS-01/02).
    pub fn caps_answer(self: &Rc<Self>, ctx: &Ctx, a: &IqAnswer<'_>) {
        let Some(q) = self.queries.borrow_mut().remove(a.id) else {
            return;
        };
        if a.from.as_str() != q.jid {
            // Someone else answering our id: not the answer. Put the query back.
            self.queries.borrow_mut().insert(a.id.to_string(), q);
            return;
        }
        let info_el = if a.ty == IqType::Result {
            xml::parse_element(
                a.stanza,
                &StreamNs::new(ns::CLIENT),
                &ctx.config().xml_limits(),
            )
            .ok()
            .and_then(|iq| iq.child("query", ns::DISCO_INFO).cloned())
        } else {
            None
        };
        let Some(info_el) = info_el else {
            self.caps.borrow_mut().fail_query(q.algo, &q.ver);
            return;
        };
        let claimed = caps::Caps {
            hash: q.algo.name().to_string(),
            node: String::new(),
            ver: q.ver.clone(),
        };
        let info = CapsInfo::from_disco(&info_el);
        let served = if caps::verify(&info_el, &claimed) {
            let cached = self.caps.borrow_mut().insert(q.algo, &q.ver, info);
            self.caps.borrow_mut().finish_query(q.algo, &q.ver, None);
            self.resolve(q.algo, &q.ver, None, &cached)
        } else {
            // CAPS-02: not cached; this JID's own features only. The others waiting on that
            // ver stay without a filter until their next presence.
            tracing::debug!(jid = %q.jid, ver = %q.ver, "caps hash does not verify");
            self.caps.borrow_mut().fail_query(q.algo, &q.ver);
            self.resolve(q.algo, &q.ver, Some(&q.jid), &Rc::new(info))
        };
        for (owner, full) in served {
            self.send_last_items(ctx, &owner, &full);
        }
    }

    /// PEP-07/08: the last item of each of `owner`'s nodes that `full` wants and may see.
    pub fn send_last_items(&self, ctx: &Ctx, owner: &str, full: &str) {
        let Some(info) = self.seen_info(owner, full) else {
            return;
        };
        if info.notify.is_empty() || narrowed(ctx, owner, vec![full]).is_empty() {
            return;
        }
        let store = ctx.storage().pubsub();
        let names = match store.node_names(owner, None, self.bounds.max_nodes) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(owner, error = %e, "PEP: reading nodes for the last items failed");
                return;
            }
        };
        let mut relation = None;
        for name in names.iter().filter(|n| info.wants(n)) {
            let Ok(Some(node)) = store.node(owner, name) else {
                continue;
            };
            let Some(config) = NodeConfig::decode(&node.config) else {
                continue;
            };
            if config.send_last_published_item != SendLast::OnSubAndPresence
                || !config.deliver_notifications
            {
                continue;
            }
            let rel = relation.get_or_insert_with(|| Relation::read(ctx, owner, bare_of(full)));
            if !rel.allows(owner, bare_of(full), &config) {
                continue;
            }
            send_last_item(ctx, owner, name, &config, full);
        }
    }

    /// Who gets a notification about `node` of `owner`: the available full JIDs whose filter
    /// wants the node (PEP-04/05), and the explicit subscribers (PEP-06: a full JID gets
    /// exactly one, a bare JID one unless one of its full JIDs is notified already), each as
    /// the access model allows and the owner's privacy policy lets through (PEP-09). An
    /// explicit subscription the access model no longer allows is cancelled (PEP-15).
    fn targets(&self, ctx: &Ctx, owner: &str, node: &str, config: &NodeConfig) -> Targets {
        let mut candidates: Vec<String> = self
            .interest
            .borrow()
            .get(owner)
            .map(|t| {
                t.iter()
                    .filter(|(_, s)| s.info.as_ref().is_some_and(|i| i.wants(node)))
                    .map(|(f, _)| f.clone())
                    .collect()
            })
            .unwrap_or_default();
        let subscribers =
            match ctx
                .storage()
                .pubsub()
                .subscribers(owner, node, self.bounds.max_subscribers)
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(owner, node, error = %e, "PEP: reading subscribers failed");
                    Vec::new()
                }
            };
        let explicit: Vec<String> = subscribers.into_iter().map(|s| s.jid).collect();
        // Full JIDs first, so that a bare JID sees every full JID of its account notified.
        let (full, bare): (Vec<&String>, Vec<&String>) =
            explicit.iter().partition(|j| j.contains('/'));
        for jid in full {
            if !candidates.contains(jid) {
                candidates.push(jid.clone());
            }
        }
        for jid in bare {
            if !candidates.iter().any(|f| bare_of(f) == jid.as_str()) {
                candidates.push(jid.clone());
            }
        }
        if candidates.is_empty() {
            return Targets::default();
        }
        let roster = if candidates.iter().any(|f| bare_of(f) != owner) {
            match ctx.storage().rosters().load(owner) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(owner, error = %e, "PEP: reading the roster for notifications failed");
                    None
                }
            }
        } else {
            None
        };
        let relation = |bare: &str| match &roster {
            Some(r) => Relation::of(
                r.items
                    .binary_search_by(|i| i.jid.as_str().cmp(bare))
                    .ok()
                    .map(|i| &r.items[i]),
            ),
            // Unknown: only an open node lets it through (and without replyto).
            None => Relation::Stranger,
        };
        let mut replyto = Vec::new();
        let mut plain = Vec::new();
        for f in candidates {
            let bare = bare_of(&f);
            if bare == owner {
                replyto.push(f);
                continue;
            }
            let relation = relation(bare);
            if !relation.allows(owner, bare, config) {
                continue;
            }
            match relation {
                Relation::Contact { from: true, .. } => replyto.push(f),
                _ => plain.push(f),
            }
        }
        let cancel: Vec<String> = if roster.is_some() {
            explicit
                .into_iter()
                .filter(|j| {
                    let bare = bare_of(j);
                    !relation(bare).allows(owner, bare, config)
                })
                .collect()
        } else {
            Vec::new()
        };
        if !cancel.is_empty() {
            self.cancel_subscriptions(ctx, owner, node, cancel);
        }
        let keep = |list: Vec<String>| -> Vec<String> {
            let tos: Vec<&str> = list.iter().map(String::as_str).collect();
            narrowed(ctx, owner, tos)
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        Targets {
            replyto: keep(replyto),
            plain: keep(plain),
        }
    }

    /// PEP-15: the explicit subscriptions among `jids` (caps-based ones are not stored) go;
    /// nothing waits on it.
    fn cancel_subscriptions(&self, ctx: &Ctx, owner: &str, node: &str, jids: Vec<String>) {
        let (o, n) = (owner.to_string(), node.to_string());
        let done = ctx.storage().submit(move |txn| {
            for jid in &jids {
                txn.unsubscribe_pubsub(&o, &n, jid)?;
            }
            Ok(())
        });
        let owner = owner.to_string();
        glommio::spawn_local(async move {
            if let Err(e) = done.await {
                tracing::warn!(owner, error = %e, "PEP: cancelling subscriptions failed");
            }
        })
        .detach();
    }

    /// Send `event` (written by `write`) to `to`. A `publisher` (the publishing full JID) is
    /// named in a XEP-0033 `replyto` address to the presence subscribers (PEP-10).
    fn send(
        ctx: &Ctx,
        owner: &str,
        to: &Targets,
        publisher: Option<&str>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        if to.replyto.is_empty() && to.plain.is_empty() {
            return;
        }
        let mut out = notification_head(owner, None);
        write(&mut out);
        let ty = StanzaType::Message(MessageType::Headline);
        let from = JidStr::trusted(owner);
        let body_end = out.len();
        for (list, with_replyto) in [(&to.plain, false), (&to.replyto, true)] {
            if list.is_empty() {
                continue;
            }
            out.truncate(body_end);
            if let (true, Some(p)) = (with_replyto, publisher) {
                write_replyto(&mut out, p);
            }
            out.extend_from_slice(b"</message>");
            let tos: Vec<&str> = list.iter().map(String::as_str).collect();
            ctx.fanout(ty, from, &tos, &out);
        }
    }

    /// Send `event` (written by `write`) about `node` to its recipients, now.
    pub(super) fn notify(
        &self,
        ctx: &Ctx,
        owner: &str,
        node: &str,
        config: &NodeConfig,
        publisher: Option<&str>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        if !config.deliver_notifications {
            return;
        }
        let to = self.targets(ctx, owner, node, config);
        Self::send(ctx, owner, &to, publisher, write);
    }

    // ---- requests ----------------------------------------------------------------------------

    /// An IQ in the pubsub or pubsub#owner namespace to an account's bare JID.
    pub fn request(self: &Rc<Self>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
        let set = req.ty == IqType::Set;
        let parsed = match wire::parse(set, req.payload) {
            Ok(r) => r,
            Err(e) => return IqReply::Error(e.to_stanza_error()),
        };
        let owner = req.to.bare_str();
        let requester = req.from.bare_str();
        let own = owner == requester;
        // Owner-only operations (PEP-12: only the owner publishes; XEP-0060 §8: owner use cases).
        let owner_only = !matches!(
            parsed,
            Request::Items { .. }
                | Request::Subscribe { .. }
                | Request::Unsubscribe { .. }
                | Request::Subscriptions { .. }
        );
        if owner_only && !own {
            return IqReply::Error(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "only the account's owner may do this",
            ));
        }
        match parsed {
            Request::Publish {
                node,
                id,
                payload,
                options,
            } => self.publish(ctx, owner, req.from.as_str(), node, id, payload, options),
            Request::Items {
                node,
                max_items,
                ids,
            } => self.items(ctx, owner, requester, node, max_items, &ids),
            Request::Retract { node, id, notify } => self.retract(ctx, owner, node, id, notify),
            Request::Create { node, config } => self.create(ctx, owner, node, config),
            Request::ConfigureGet { node } => self.configure_get(ctx, owner, node),
            Request::ConfigureSet { node, form } => self.configure_set(ctx, owner, node, form),
            Request::DefaultGet => {
                let form = NodeConfig::pep_default(&self.bounds.config).form(&self.bounds.config);
                let default = Element::new("default", NS_PUBSUB_OWNER).with_child(form);
                IqReply::Result(Some(
                    Element::new("pubsub", NS_PUBSUB_OWNER).with_child(default),
                ))
            }
            Request::Delete { node } => self.delete(ctx, owner, node),
            Request::Purge { node } => self.purge(ctx, owner, node),
            Request::Subscribe { node, jid } => self.subscribe(ctx, req, node, jid),
            Request::Unsubscribe { node, jid } => self.unsubscribe(ctx, req, node, jid),
            Request::Subscriptions { node } => self.own_subscriptions(ctx, req, node),
            Request::OwnerSubscriptionsGet { node } => self.subscribers(ctx, owner, node),
            Request::OwnerSubscriptionsSet { node, changes } => {
                self.change_subscribers(ctx, owner, node, changes)
            }
        }
    }

    // ---- explicit subscriptions (XEP-0060 §6.1, §6.2, §5.6, §8.8) --------------------------

    /// §6.1: subscribe the requester's `jid` (its bare JID or one of its full JIDs) to
    /// `node`, as the access model allows; durable before the result, then the last item
    /// (§6.1.7) unless the node says never.
    fn subscribe(
        self: &Rc<Self>,
        ctx: &Ctx,
        req: &IqRequest<'_>,
        node: &str,
        jid: &str,
    ) -> IqReply {
        let owner = req.to.bare_str();
        let jid = match own_jid(req, jid) {
            Ok(j) => j,
            // §6.1.3.1: the JIDs do not match.
            Err(()) => {
                return IqReply::Error(
                    StanzaError::with_text(
                        StanzaCondition::BadRequest,
                        "the jid to subscribe is not the requester's",
                    )
                    .with_app("invalid-jid", NS_PUBSUB_ERRORS),
                )
            }
        };
        let config = match self.node_config(ctx, owner, node) {
            Ok(Some(c)) => c,
            // §6.1.3.12.
            Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => return IqReply::Error(e),
        };
        // §6.1.3.2-4 (PEP-11): the access model decides at once; nothing is ever pending.
        if bare_of(&jid) != owner {
            if let Err(e) = Relation::read(ctx, owner, bare_of(&jid)).check(&config) {
                return IqReply::Error(e);
            }
        }
        let (o, n, j, max) = (
            owner.to_string(),
            node.to_string(),
            jid.clone(),
            self.bounds.max_subscribers,
        );
        let done = ctx
            .storage()
            .submit(move |txn| txn.subscribe_pubsub(&o, &n, &j, unix_ms(), max));
        let (ctx, owner, node) = (ctx.clone(), owner.to_string(), node.to_string());
        IqReply::Later(Box::pin(async move {
            match done.await {
                Ok(Subscribed::Added | Subscribed::Already) => {
                    // §6.1.7: the last item, "upon successful processing" (it may reach
                    // the subscriber before the result).
                    if config.send_last_published_item != SendLast::Never
                        && config.deliver_notifications
                    {
                        send_last_item(&ctx, &owner, &node, &config, &jid);
                    }
                    IqReply::Result(Some(wire::subscription_result(&node, &jid, true)))
                }
                // §6.1.3.? (too many subscriptions): the service's bound.
                Ok(Subscribed::Full) => IqReply::Error(too_many_subscriptions(max)),
                Ok(Subscribed::NoNode) => {
                    IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound))
                }
                Err(e) => IqReply::Error(storage_failure("subscribing to a PEP node", &owner, &e)),
            }
        }))
    }

    /// §6.2: unsubscribe the requester's `jid` from `node`.
    fn unsubscribe(&self, ctx: &Ctx, req: &IqRequest<'_>, node: &str, jid: &str) -> IqReply {
        let owner = req.to.bare_str();
        let Ok(jid) = own_jid(req, jid) else {
            // §6.2.3.3: insufficient privileges.
            return IqReply::Error(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "the jid to unsubscribe is not the requester's",
            ));
        };
        match self.node_config(ctx, owner, node) {
            Ok(Some(_)) => {}
            // §6.2.3.4.
            Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => return IqReply::Error(e),
        }
        let (o, n) = (owner.to_string(), node.to_string());
        let done = ctx
            .storage()
            .submit(move |txn| txn.unsubscribe_pubsub(&o, &n, &jid));
        let owner = owner.to_string();
        IqReply::Later(Box::pin(async move {
            match done.await {
                Ok(true) => IqReply::Result(None),
                // §6.2.3.2: no such subscriber.
                Ok(false) => IqReply::Error(
                    StanzaError::with_text(
                        StanzaCondition::UnexpectedRequest,
                        "not subscribed to this node",
                    )
                    .with_app("not-subscribed", NS_PUBSUB_ERRORS),
                ),
                Err(e) => {
                    IqReply::Error(storage_failure("unsubscribing from a PEP node", &owner, &e))
                }
            }
        }))
    }

    /// §5.6: the requester's subscriptions (its bare JID's and its full JIDs') at this
    /// service, to `node` or to every node.
    fn own_subscriptions(&self, ctx: &Ctx, req: &IqRequest<'_>, node: Option<&str>) -> IqReply {
        let owner = req.to.bare_str();
        let requester = req.from.bare_str();
        let store = ctx.storage().pubsub();
        let nodes = match node {
            Some(n) => match self.node_config(ctx, owner, n) {
                Ok(Some(_)) => vec![n.to_string()],
                Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
                Err(e) => return IqReply::Error(e),
            },
            None => match store.node_names(owner, None, self.bounds.max_nodes) {
                Ok(n) => n,
                Err(e) => return IqReply::Error(storage_failure("listing PEP nodes", owner, &e)),
            },
        };
        let mut found: Vec<(String, String)> = Vec::new();
        for n in &nodes {
            match store.subscribers(owner, n, self.bounds.max_subscribers) {
                Ok(subs) => found.extend(
                    subs.into_iter()
                        .filter(|s| bare_of(&s.jid) == requester)
                        .map(|s| (n.clone(), s.jid)),
                ),
                Err(e) => {
                    return IqReply::Error(storage_failure("reading PEP subscriptions", owner, &e))
                }
            }
        }
        let view: Vec<(&str, &str)> = found
            .iter()
            .map(|(n, j)| (n.as_str(), j.as_str()))
            .collect();
        IqReply::Result(Some(wire::subscriptions_result(node, &view)))
    }

    /// §8.8.1: the owner lists a node's subscribers.
    fn subscribers(&self, ctx: &Ctx, owner: &str, node: &str) -> IqReply {
        match self.node_config(ctx, owner, node) {
            Ok(Some(_)) => {}
            Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => return IqReply::Error(e),
        }
        match ctx
            .storage()
            .pubsub()
            .subscribers(owner, node, self.bounds.max_subscribers)
        {
            Ok(subs) => {
                let jids: Vec<&str> = subs.iter().map(|s| s.jid.as_str()).collect();
                IqReply::Result(Some(wire::owner_subscriptions_result(node, &jids)))
            }
            Err(e) => IqReply::Error(storage_failure("reading PEP subscriptions", owner, &e)),
        }
    }

    /// §8.8.2: the owner subscribes JIDs or removes their subscriptions, all or nothing: over
    /// the bound, nothing changes.
    fn change_subscribers(
        &self,
        ctx: &Ctx,
        owner: &str,
        node: &str,
        changes: Vec<(&str, bool)>,
    ) -> IqReply {
        match self.node_config(ctx, owner, node) {
            Ok(Some(_)) => {}
            Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => return IqReply::Error(e),
        }
        let changes: Vec<(String, bool)> = changes
            .into_iter()
            .filter_map(|(j, on)| Some((normalized(j)?, on)))
            .collect();
        let (o, n, max) = (
            owner.to_string(),
            node.to_string(),
            self.bounds.max_subscribers,
        );
        let now = unix_ms();
        let done = ctx.storage().submit(move |txn| {
            for (jid, on) in &changes {
                if !*on {
                    txn.unsubscribe_pubsub(&o, &n, jid)?;
                } else if txn.subscribe_pubsub(&o, &n, jid, now, max)? == Subscribed::Full {
                    // Rolls this request's changes back.
                    return Err(StorageError::TooLarge {
                        what: "pubsub subscriptions",
                        size: max + 1,
                        limit: max,
                    });
                }
            }
            Ok(())
        });
        let owner = owner.to_string();
        IqReply::Later(Box::pin(async move {
            match done.await {
                Ok(()) => IqReply::Result(None),
                Err(StorageError::TooLarge { .. }) => IqReply::Error(too_many_subscriptions(max)),
                Err(e) => IqReply::Error(storage_failure("changing PEP subscriptions", &owner, &e)),
            }
        }))
    }

    pub(super) fn node_config(
        &self,
        ctx: &Ctx,
        owner: &str,
        node: &str,
    ) -> Result<Option<NodeConfig>, StanzaError> {
        match ctx.storage().pubsub().node(owner, node) {
            Ok(None) => Ok(None),
            Ok(Some(n)) => NodeConfig::decode(&n.config).map(Some).ok_or_else(|| {
                tracing::warn!(
                    owner,
                    node,
                    "PEP: stored node configuration does not decode"
                );
                StanzaError::with_text(StanzaCondition::InternalServerError, "damaged node")
            }),
            Err(e) => Err(storage_failure("reading a PEP node", owner, &e)),
        }
    }

    fn check_node_name(node: &str) -> Result<(), StanzaError> {
        if node.len() > MAX_NODE {
            return Err(StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                format!("node names are at most {MAX_NODE} bytes"),
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        self: &Rc<Self>,
        ctx: &Ctx,
        owner: &str,
        publisher: &str,
        node: &str,
        id: Option<&str>,
        payload: &Element,
        options: Option<&Element>,
    ) -> IqReply {
        if let Err(e) = Self::check_node_name(node) {
            return IqReply::Error(e);
        }
        if id.is_some_and(|id| id.len() > MAX_ITEM_ID) {
            return IqReply::Error(StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                format!("item ids are at most {MAX_ITEM_ID} bytes"),
            ));
        }
        let bytes = wire::serialize_payload(payload);
        if bytes.len() > self.bounds.max_item_bytes {
            return IqReply::Error(
                StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    format!("items are at most {} bytes", self.bounds.max_item_bytes),
                )
                .with_app("payload-too-big", NS_PUBSUB_ERRORS),
            );
        }
        let existing = match self.node_config(ctx, owner, node) {
            Ok(c) => c,
            Err(e) => return IqReply::Error(e),
        };
        let bounds = &self.bounds.config;
        let (config, create) = match existing {
            Some(config) => {
                // PEP-13: publish-options are preconditions on an existing node.
                if let Some(x) = options {
                    match config.check_preconditions(x, bounds) {
                        Ok(()) => {}
                        Err(PreconditionError::Differs(var)) => {
                            return IqReply::Error(
                                StanzaError::with_text(
                                    StanzaCondition::Conflict,
                                    format!("the node's {var} differs from the publish-options"),
                                )
                                .with_app("precondition-not-met", NS_PUBSUB_ERRORS),
                            )
                        }
                        Err(PreconditionError::Form(e)) => return IqReply::Error(e.stanza_error()),
                    }
                }
                (config, false)
            }
            None => {
                // PEP-02: auto-create, with the publish-options if any (PEP-13).
                let config = match options {
                    Some(x) => match NodeConfig::from_publish_options(x, bounds) {
                        Ok(c) => c,
                        Err(e) => return IqReply::Error(e.stanza_error()),
                    },
                    // The bookmarks nodes are private to the owner even when a client
                    // forgets its publish-options (XEP-0402 §4, XEP-0223 §3).
                    None if node == NS_NATIVE => compat::native_config(bounds),
                    None if node == NS_LEGACY => compat::legacy_config(bounds),
                    None => NodeConfig::pep_default(bounds),
                };
                match ctx.storage().pubsub().node_count(owner) {
                    Ok(n) if n >= self.bounds.max_nodes => {
                        return IqReply::Error(max_nodes(self.bounds.max_nodes))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return IqReply::Error(storage_failure("counting PEP nodes", owner, &e))
                    }
                }
                (config, true)
            }
        };
        let item = PubsubItem {
            id: id.map(str::to_string).unwrap_or_else(|| self.new_item_id()),
            publisher: publisher.to_string(),
            published_at: unix_ms(),
            payload: bytes,
        };
        let (o, n, encoded, max_items) = (
            owner.to_string(),
            node.to_string(),
            config.encode(),
            config.max_items as usize,
        );
        let stored = item.clone();
        let limits = ctx.config().xml_limits();
        // XEP-0402 §6.3: a bookmarks list published either way reaches the other stores.
        let legacy_list = (node == NS_LEGACY)
            .then(|| payload.clone())
            .filter(|p| p.is("storage", NS_LEGACY));
        let plan = if node == NS_NATIVE || legacy_list.is_some() {
            match compat::Plan::read(self, ctx, owner) {
                Ok(p) => Some(p),
                Err(e) => return IqReply::Error(e),
            }
        } else {
            None
        };
        let bridge = plan.clone();
        let done = ctx.storage().submit(move |txn| {
            if create {
                txn.create_pubsub_node(&o, &n, &encoded)?;
            }
            let Some(_trimmed) = txn.publish_pubsub_item(&o, &n, &stored, max_items)? else {
                return Ok(None);
            };
            let changes = match (&bridge, &legacy_list) {
                (Some(plan), Some(list)) => compat::apply_legacy(
                    txn,
                    &o,
                    plan,
                    list,
                    true,
                    &stored.publisher,
                    stored.published_at,
                )?,
                (Some(plan), None) => compat::sync_from_native(
                    txn,
                    &o,
                    plan.legacy.as_ref(),
                    &limits,
                    stored.published_at,
                )?,
                _ => compat::Changes::default(),
            };
            Ok(Some(changes))
        });
        let (pep, ctx, owner, node) = (
            self.clone(),
            ctx.clone(),
            owner.to_string(),
            node.to_string(),
        );
        IqReply::Later(Box::pin(async move {
            match done.await {
                Ok(Some(changes)) => {
                    let publisher = Some(item.publisher.as_str());
                    pep.notify(&ctx, &owner, &node, &config, publisher, |out| {
                        wire::write_item_event(
                            out,
                            &node,
                            &item.id,
                            None,
                            config.deliver_payloads.then_some(&item.payload[..]),
                        )
                    });
                    if let Some(plan) = &plan {
                        compat::notify(&pep, &ctx, &owner, plan, &changes, publisher);
                    }
                    IqReply::Result(Some(wire::publish_result(&node, &item.id)))
                }
                // Deleted meanwhile (the account is going away).
                Ok(None) => IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
                Err(e) => IqReply::Error(storage_failure("publishing a PEP item", &owner, &e)),
            }
        }))
    }

    fn items(
        &self,
        ctx: &Ctx,
        owner: &str,
        requester: &str,
        node: &str,
        max_items: Option<usize>,
        ids: &[&str],
    ) -> IqReply {
        let config = match self.node_config(ctx, owner, node) {
            Ok(Some(c)) => c,
            Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => return IqReply::Error(e),
        };
        // PEP-11: the access model.
        if owner != requester {
            let rel = Relation::read(ctx, owner, requester);
            if let Relation::Failed(e) = rel {
                return IqReply::Error(e);
            }
            if let Err(e) = rel.check(&config) {
                return IqReply::Error(e);
            }
        }
        let store = ctx.storage().pubsub();
        let items = if ids.is_empty() {
            store.items(
                owner,
                node,
                max_items.map(|m| m.min(self.bounds.config.max_items as usize)),
            )
        } else {
            ids.iter()
                .filter_map(|id| store.item(owner, node, id).transpose())
                .collect()
        };
        let items = match items {
            Ok(i) => i,
            Err(e) => return IqReply::Error(storage_failure("reading PEP items", owner, &e)),
        };
        if !ids.is_empty() && items.is_empty() {
            return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
        }
        let view: Vec<(&str, Option<&str>, &[u8])> = items
            .iter()
            .map(|i| (i.id.as_str(), None, &i.payload[..]))
            .collect();
        match wire::items_result(node, &view, &ctx.config().xml_limits()) {
            Ok(el) => IqReply::Result(Some(el)),
            Err(id) => {
                tracing::warn!(owner, node, id, "PEP: a stored item does not parse");
                IqReply::Error(StanzaError::with_text(
                    StanzaCondition::InternalServerError,
                    "damaged item",
                ))
            }
        }
    }

    fn retract(
        self: &Rc<Self>,
        ctx: &Ctx,
        owner: &str,
        node: &str,
        id: &str,
        notify: bool,
    ) -> IqReply {
        let (i, id) = (id.to_string(), id.to_string());
        self.change_node(
            ctx,
            owner,
            node,
            "retracting a PEP item",
            move |txn, o, n| txn.retract_pubsub_item(o, n, &i),
            move |c| notify || c.notify_retract,
            move |out, n| wire::write_retract_event(out, n, &id),
        )
    }

    /// A change to an existing node of the owner, answered once durable: `write` runs in one
    /// transaction with the legacy bookmarks rebuilt when the node is XEP-0402's, and says
    /// whether there was something to change (`item-not-found` otherwise); then, if the
    /// configuration says so (`notify`), `event` is sent to the node's recipients.
    #[allow(clippy::too_many_arguments)]
    fn change_node(
        self: &Rc<Self>,
        ctx: &Ctx,
        owner: &str,
        node: &str,
        what: &'static str,
        write: impl FnOnce(&mut WriteTxn<'_>, &str, &str) -> Result<bool, StorageError> + Send + 'static,
        notify: impl FnOnce(&NodeConfig) -> bool + 'static,
        event: impl FnOnce(&mut Vec<u8>, &str) + 'static,
    ) -> IqReply {
        let config = match self.node_config(ctx, owner, node) {
            Ok(Some(c)) => c,
            Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => return IqReply::Error(e),
        };
        // Who is told is read before the change: deleting a node takes its subscriptions.
        let targets = (notify(&config) && config.deliver_notifications)
            .then(|| self.targets(ctx, owner, node, &config));
        let plan = if node == NS_NATIVE {
            match compat::Plan::read(self, ctx, owner) {
                Ok(p) => Some(p),
                Err(e) => return IqReply::Error(e),
            }
        } else {
            None
        };
        let (o, n) = (owner.to_string(), node.to_string());
        let limits = ctx.config().xml_limits();
        let legacy = plan.as_ref().and_then(|p| p.legacy.clone());
        let done = ctx.storage().submit(move |txn| {
            if !write(txn, &o, &n)? {
                return Ok(None);
            }
            match n == NS_NATIVE {
                true => {
                    compat::sync_from_native(txn, &o, legacy.as_ref(), &limits, compat::unix_ms())
                        .map(Some)
                }
                false => Ok(Some(compat::Changes::default())),
            }
        });
        let (pep, ctx, owner, node) = (
            self.clone(),
            ctx.clone(),
            owner.to_string(),
            node.to_string(),
        );
        IqReply::Later(Box::pin(async move {
            match done.await {
                Ok(Some(changes)) => {
                    if let Some(to) = targets {
                        Self::send(&ctx, &owner, &to, None, |out| event(out, &node));
                    }
                    if let Some(plan) = &plan {
                        compat::notify(&pep, &ctx, &owner, plan, &changes, None);
                    }
                    IqReply::Result(None)
                }
                Ok(None) => IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
                Err(e) => IqReply::Error(storage_failure(what, &owner, &e)),
            }
        }))
    }

    fn create(&self, ctx: &Ctx, owner: &str, node: &str, form: Option<&Element>) -> IqReply {
        if let Err(e) = Self::check_node_name(node) {
            return IqReply::Error(e);
        }
        let bounds = &self.bounds.config;
        let config = match form {
            Some(x) => match NodeConfig::pep_default(bounds).apply_form(x, bounds) {
                Ok(c) => c,
                Err(e) => return IqReply::Error(e.stanza_error()),
            },
            None => NodeConfig::pep_default(bounds),
        };
        match ctx.storage().pubsub().node_count(owner) {
            Ok(n) if n >= self.bounds.max_nodes => {
                return IqReply::Error(max_nodes(self.bounds.max_nodes))
            }
            Ok(_) => {}
            Err(e) => return IqReply::Error(storage_failure("counting PEP nodes", owner, &e)),
        }
        let (o, n, encoded) = (owner.to_string(), node.to_string(), config.encode());
        let done = ctx
            .storage()
            .submit(move |txn| txn.create_pubsub_node(&o, &n, &encoded));
        let owner = owner.to_string();
        IqReply::Later(Box::pin(async move {
            match done.await {
                Ok(true) => IqReply::Result(None),
                // XEP-0060 §8.1.3.4: the node exists.
                Ok(false) => IqReply::Error(StanzaError::with_text(
                    StanzaCondition::Conflict,
                    "the node exists",
                )),
                Err(e) => IqReply::Error(storage_failure("creating a PEP node", &owner, &e)),
            }
        }))
    }

    fn configure_get(&self, ctx: &Ctx, owner: &str, node: &str) -> IqReply {
        match self.node_config(ctx, owner, node) {
            Ok(Some(c)) => {
                let configure = Element::new("configure", NS_PUBSUB_OWNER)
                    .with_attr("node", node)
                    .with_child(c.form(&self.bounds.config));
                IqReply::Result(Some(
                    Element::new("pubsub", NS_PUBSUB_OWNER).with_child(configure),
                ))
            }
            Ok(None) => IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => IqReply::Error(e),
        }
    }

    fn configure_set(&self, ctx: &Ctx, owner: &str, node: &str, form: &Element) -> IqReply {
        let config = match self.node_config(ctx, owner, node) {
            Ok(Some(c)) => c,
            Ok(None) => return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
            Err(e) => return IqReply::Error(e),
        };
        // XEP-0060 §8.2.4: a cancel form changes nothing.
        if form.attr("type") == Some("cancel") {
            return IqReply::Result(None);
        }
        let config = match config.apply_form(form, &self.bounds.config) {
            Ok(c) => c,
            Err(e) => return IqReply::Error(e.stanza_error()),
        };
        let (o, n, encoded) = (owner.to_string(), node.to_string(), config.encode());
        let done = ctx
            .storage()
            .submit(move |txn| txn.configure_pubsub_node(&o, &n, &encoded));
        let owner = owner.to_string();
        IqReply::Later(Box::pin(async move {
            match done.await {
                Ok(true) => IqReply::Result(None),
                Ok(false) => IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
                Err(e) => IqReply::Error(storage_failure("configuring a PEP node", &owner, &e)),
            }
        }))
    }

    fn delete(self: &Rc<Self>, ctx: &Ctx, owner: &str, node: &str) -> IqReply {
        // PEP-12: deleting notifies with <delete/>.
        self.change_node(
            ctx,
            owner,
            node,
            "deleting a PEP node",
            |txn, o, n| txn.delete_pubsub_node(o, n),
            |c| c.notify_delete,
            wire::write_delete_event,
        )
    }

    fn purge(self: &Rc<Self>, ctx: &Ctx, owner: &str, node: &str) -> IqReply {
        self.change_node(
            ctx,
            owner,
            node,
            "purging a PEP node",
            |txn, o, n| Ok(txn.purge_pubsub_items(o, n)?.is_some()),
            |c| c.notify_retract,
            wire::write_purge_event,
        )
    }

    /// PEP-14: the owner's nodes the requester may see, as disco#items.
    pub fn disco_items(
        &self,
        ctx: &Ctx,
        req: &IqRequest<'_>,
        node: Option<&str>,
    ) -> Result<Option<Vec<Element>>, StanzaError> {
        if node.is_some() {
            return Ok(None);
        }
        let owner = req.to.bare_str();
        let requester = req.from.bare_str();
        let names = ctx
            .storage()
            .pubsub()
            .node_names(owner, None, self.bounds.max_nodes)
            .map_err(|e| storage_failure("listing PEP nodes", owner, &e))?;
        let rel = if owner == requester || names.is_empty() {
            None
        } else {
            Some(Relation::read(ctx, owner, requester))
        };
        if let Some(Relation::Failed(e)) = rel {
            return Err(e);
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(rel) = &rel {
                let config = self.node_config(ctx, owner, &name)?;
                if config.is_none_or(|c| rel.check(&c).is_err()) {
                    continue;
                }
            }
            out.push(
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", owner)
                    .with_attr("node", name),
            );
        }
        Ok(Some(out))
    }
}

/// The recipients the account's policy lets its notifications reach (`NotifyOut`: privacy
/// lists and blocking, PEP-09); with no link it costs a length check.
fn narrowed<'a>(ctx: &Ctx, owner: &'a str, tos: Vec<&'a str>) -> Vec<&'a str> {
    let chain = ctx.registry().chain::<NotifyOut>();
    if tos.is_empty() || !chain.wants(Kind::Message) {
        return tos;
    }
    let r = Recipients {
        from: JidStr::trusted(owner),
        to: RefCell::new(tos),
    };
    chain.run(ctx, Kind::Message, &r);
    r.to.into_inner()
}

/// The requester's `jid` normalized, if it is the requester's bare JID or one of its full
/// JIDs (XEP-0060 §6.1.3.1, §6.2.3.3).
fn own_jid(req: &IqRequest<'_>, jid: &str) -> Result<String, ()> {
    let jid = normalized(jid).ok_or(())?;
    if bare_of(&jid) == req.from.bare_str() {
        Ok(jid)
    } else {
        Err(())
    }
}

/// A JID in its normalized form (RFC 7622), if valid.
fn normalized(jid: &str) -> Option<String> {
    Jid::parse(jid).ok().map(|j| j.as_str().to_string())
}

/// XEP-0060 §6.1.3.? (too many subscriptions): `policy-violation` with
/// `<too-many-subscriptions/>`.
fn too_many_subscriptions(max: usize) -> StanzaError {
    StanzaError::with_text(
        StanzaCondition::PolicyViolation,
        format!("at most {max} subscriptions per node"),
    )
    .with_app("too-many-subscriptions", NS_PUBSUB_ERRORS)
}

/// The last item of `node` (when there is one), as a notification with its XEP-0203 delay,
/// to `to` (PEP-07/08, XEP-0060 §6.1.7).
fn send_last_item(ctx: &Ctx, owner: &str, node: &str, config: &NodeConfig, to: &str) {
    let items = match ctx.storage().pubsub().items(owner, node, Some(1)) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(owner, node, error = %e, "PEP: reading the last item failed");
            return;
        }
    };
    let Some(item) = items.first() else {
        return;
    };
    let mut out = notification_head(owner, Some(to));
    wire::write_item_event(
        &mut out,
        node,
        &item.id,
        None,
        config.deliver_payloads.then_some(&item.payload[..]),
    );
    write_delay(&mut out, owner, item.published_at);
    out.extend_from_slice(b"</message>");
    let route = crate::core::Route::new(JidStr::trusted(owner), JidStr::trusted(to));
    ctx.route(StanzaType::Message(MessageType::Headline), route, &out);
}

/// PEP-10: the XEP-0033 `replyto` address naming the publishing resource.
fn write_replyto(out: &mut Vec<u8>, publisher: &str) {
    out.extend_from_slice(
        b"<addresses xmlns='http://jabber.org/protocol/address'><address type='replyto'",
    );
    attr(out, "jid", publisher);
    out.extend_from_slice(b"/></addresses>");
}

fn max_nodes(max: usize) -> StanzaError {
    StanzaError::with_text(
        StanzaCondition::NotAllowed,
        format!("at most {max} nodes per account"),
    )
    .with_app("max-nodes-exceeded", NS_PUBSUB_ERRORS)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// ` name='value'`, escaped.
fn attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    xml::write_attr(name, value, out);
}

/// `<message from='owner' type='headline' [to]>` (PEP-03: from the bare JID).
fn notification_head(owner: &str, to: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"<message type='headline'");
    attr(&mut out, "from", owner);
    if let Some(to) = to {
        attr(&mut out, "to", to);
    }
    out.push(b'>');
    out
}

/// XEP-0203 delay on a replayed last item.
fn write_delay(out: &mut Vec<u8>, from: &str, published_ms: u64) {
    out.extend_from_slice(b"<delay xmlns='urn:xmpp:delay'");
    attr(out, "from", from);
    attr(out, "stamp", &crate::util::xep0082_datetime(published_ms));
    out.extend_from_slice(b"/>");
}

/// What a requester is to a node's owner, for the access models (PEP-11).
enum Relation {
    /// Not in the owner's roster.
    Stranger,
    /// In the roster with this subscription and these groups.
    Contact { from: bool, groups: Vec<String> },
    /// The roster could not be read.
    Failed(StanzaError),
}

impl Relation {
    fn read(ctx: &Ctx, owner: &str, requester: &str) -> Relation {
        match ctx.storage().rosters().item(owner, requester) {
            Ok(item) => Relation::of(item.as_ref()),
            Err(e) => {
                Relation::Failed(storage_failure("PEP access: reading the roster", owner, &e))
            }
        }
    }

    fn of(item: Option<&xmppd_storage::RosterItem>) -> Relation {
        match item {
            None => Relation::Stranger,
            Some(i) => Relation::Contact {
                from: matches!(i.subscription, Subscription::From | Subscription::Both),
                groups: i.groups.clone(),
            },
        }
    }

    fn allows(&self, owner: &str, requester: &str, config: &NodeConfig) -> bool {
        owner == requester || self.check(config).is_ok()
    }

    /// XEP-0060 §6.5.9 and XEP-0163 §5: the error a requester gets under the access model.
    fn check(&self, config: &NodeConfig) -> Result<(), StanzaError> {
        match config.access_model {
            AccessModel::Open => Ok(()),
            AccessModel::Presence => match self {
                Relation::Contact { from: true, .. } => Ok(()),
                Relation::Failed(e) => Err(e.clone()),
                _ => Err(StanzaError::new(StanzaCondition::NotAuthorized)
                    .with_app("presence-subscription-required", NS_PUBSUB_ERRORS)),
            },
            AccessModel::Roster => match self {
                Relation::Contact { groups, .. }
                    if groups
                        .iter()
                        .any(|g| config.roster_groups_allowed.contains(g)) =>
                {
                    Ok(())
                }
                Relation::Failed(e) => Err(e.clone()),
                _ => Err(StanzaError::new(StanzaCondition::NotAuthorized)
                    .with_app("not-in-roster-group", NS_PUBSUB_ERRORS)),
            },
            AccessModel::Whitelist => match self {
                Relation::Failed(e) => Err(e.clone()),
                _ => Err(StanzaError::new(StanzaCondition::NotAllowed)
                    .with_app("closed-node", NS_PUBSUB_ERRORS)),
            },
        }
    }
}

/// The namespaces this module answers.
pub const NAMESPACES: [&str; 2] = [NS_PUBSUB, NS_PUBSUB_OWNER];
