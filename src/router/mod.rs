//! Where a stanza goes (RFC 6120 §10, RFC 6121 §8.5): the server itself, an account or a
//! service entity homed on this shard, one homed on another shard (one hop over the mesh), a
//! component, or a remote domain — by the host table (`core::hosts`).
//!
//! Routed stanzas travel as the bytes they arrived in, stamped with the sender's full JID; only
//! stanzas the server answers itself are parsed into an element tree.
//!
//! # Order of events
//!
//! A stanza from a client: the `ClientStanza` chain, then (not handled) the addressee's host.
//! On the addressee's home shard: an in-process service gets it whole; for an account the
//! `DeliverBare` or `DeliverFull` chain runs, then the RFC 6121 §8.5 [`decide`] table, then
//! `BeforeWrite` for each resource it is queued for, and `Undeliverable` for a normal or chat
//! message no resource took.
//!
//! # Re-entrance
//!
//! Handlers run inside a *delivery scope* (`Router::scoped`). While a scope is open, every
//! stanza routed to a local addressee (by a handler, a service, or the router's own bounces)
//! is appended to the shard's local queue instead of being delivered on the spot, and the
//! queue is delivered, in order, when the outermost scope closes. Modules send through
//! [`Services`], which always queues, so a module is never re-entered by its own send: it
//! may hold its own `RefCell` borrows (and the session table's) while it routes. The router
//! itself never holds a borrow of the session table while a handler runs. Stanzas for other
//! shards go to the outbox at once (nothing runs there on this thread).
//!
//! A drain delivers in rounds (everything queued when the round starts); once it has
//! delivered [`DRAIN_BUDGET`] stanzas it leaves the rest to a task of its own and yields, so
//! handlers that keep generating stanzas cannot starve the shard. Meanwhile anything routed
//! queues behind what is left, so nothing overtakes it.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::config::{Config, ConflictPolicy};
use crate::core::events::{self, Bound, ToClient};
use crate::core::hosts::{self, Dest};
use crate::core::sessions::{self, Congested};
use crate::core::{
    ClientHandle, Ctx, Flow, FromClient, Host, HostTable, Inbound, IqAnswer, IqReply, IqRequest,
    Pending, Refused, Registry, Route, Scope, Services, Sessions,
};
use crate::shard::{BatchEntry, Outbox};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::{Jid, JidStr};
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, Kind, MessageType, PresenceType, StanzaType};

/// Most queued stanzas one drain delivers before it yields (see "Re-entrance").
pub const DRAIN_BUDGET: usize = 4096;

/// What RFC 6121 §8.5 says to do with a stanza for a local account, by its type, whether it
/// names a resource and whether that resource is connected. A pure table: see the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Dropped without an answer.
    Drop,
    /// Answered with `service-unavailable`.
    Unavailable,
    /// An IQ request for the account itself: the server answers on its behalf (§8.5.2.1.3,
    /// IM-IQ-01).
    ForAccount(IqType),
    /// To the addressed resource; a full send queue is answered with `resource-constraint`
    /// when `bounce` (presence is state and is not).
    Resource {
        /// Bounce when the recipient's queue refuses it.
        bounce: bool,
    },
    /// To the available resources of non-negative priority that share the highest priority;
    /// none: the `Undeliverable` chain (offline storage), else `service-unavailable`
    /// (§8.5.2.1.1, IM-MSG-02/07/08).
    Best,
    /// To every available resource of non-negative priority, else dropped (IM-MSG-04).
    NonNegative,
    /// To every available resource, else dropped (IM-PRES-14/15, IM-SUB-16).
    Available,
}

/// The §8.5 table. `resource` is whether the addressee is a full JID; `connected` whether
/// that resource is bound on this shard.
pub fn decide(ty: StanzaType, resource: bool, connected: bool) -> Decision {
    match ty {
        StanzaType::Iq(it) => match (resource, connected) {
            (true, true) => Decision::Resource { bounce: true },
            // §8.5.3.2.3 / CORE-STANZA-18: no such resource.
            (true, false) if ty.is_request() => Decision::Unavailable,
            (true, false) => Decision::Drop,
            // §8.5.2.1.3 / IM-IQ-01: the server answers for the account.
            (false, _) => Decision::ForAccount(it),
        },
        // §8.5.3.1 / IM-MSG-01: to a connected resource whatever its priority or
        // availability.
        StanzaType::Message(_) if connected => Decision::Resource { bounce: true },
        StanzaType::Message(mt) => match mt {
            MessageType::Error => Decision::Drop,
            // IM-MSG-05
            MessageType::Groupchat => Decision::Unavailable,
            // §8.5.3.2.1: a headline to a missing resource is dropped.
            MessageType::Headline if resource => Decision::Drop,
            MessageType::Headline => Decision::NonNegative,
            // IM-MSG-02/08: chat (and, as RFC 3921 did, normal) to a missing resource is
            // handled as if sent to the bare JID.
            MessageType::Normal | MessageType::Chat => Decision::Best,
        },
        StanzaType::Presence(pt) => match (pt, resource) {
            // IM-PRES-14: to a full JID, that resource only (if connected).
            (PresenceType::Available | PresenceType::Unavailable | PresenceType::Error, true)
                if connected =>
            {
                Decision::Resource { bounce: false }
            }
            (PresenceType::Available | PresenceType::Unavailable | PresenceType::Error, true) => {
                Decision::Drop
            }
            // IM-PRES-18: error presence is never broadcast.
            (PresenceType::Error, false) | (PresenceType::Probe, _) => Decision::Drop,
            // IM-PRES-14/15 and IM-SUB-16: every available resource.
            _ => Decision::Available,
        },
    }
}

/// What delivery to a local addressee did.
enum Delivery {
    /// Delivered, or dropped as the rules say.
    Done,
    /// Bounce `service-unavailable` to the sender.
    Unavailable,
    /// A normal or chat message with no resource to take it (offline storage or bounce).
    NoResource,
    /// An IQ request for the account itself: the server answers.
    ForAccount(IqType),
    /// The recipient's send queue is full (`core::sessions`, send-queue policy): the sender
    /// gets `resource-constraint` (wait) instead of the recipient being disconnected.
    Congested,
}

/// How a queued stanza is to be delivered.
#[derive(Clone, Copy)]
enum Mode {
    /// Routed (chains, host table, §8.5).
    Route,
    /// To a local account homed here (the host table was read when it was queued).
    Account,
    /// To the sessions of a local account by §8.5, without the delivery chains.
    Sessions,
}

/// One stanza in the local queue: ranges into the queue's buffer.
struct Queued {
    ty: StanzaType,
    mode: Mode,
    to: Range<usize>,
    from: Range<usize>,
    stanza: Range<usize>,
}

/// Stanzas for local addressees routed while a delivery scope was open, back to back in one
/// buffer (kept and reused, so a busy shard does not allocate per queued stanza).
#[derive(Default)]
struct LocalQueue {
    data: Vec<u8>,
    items: Vec<Queued>,
}

impl LocalQueue {
    fn push(&mut self, ty: StanzaType, mode: Mode, route: Route<'_>, stanza: &[u8]) {
        let to = self.append(route.to.as_str().as_bytes());
        let from = self.append(route.from.as_str().as_bytes());
        let stanza = self.append(stanza);
        self.items.push(Queued {
            ty,
            mode,
            to,
            from,
            stanza,
        });
    }

    fn push_many(
        &mut self,
        ty: StanzaType,
        mode: Mode,
        from: JidStr<'_>,
        tos: &[&str],
        stanza: &[u8],
    ) {
        if tos.is_empty() {
            return;
        }
        let stanza = self.append(stanza);
        let from = self.append(from.as_str().as_bytes());
        for to in tos {
            let to = self.append(to.as_bytes());
            self.items.push(Queued {
                ty,
                mode,
                to,
                from: from.clone(),
                stanza: stanza.clone(),
            });
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        start..self.data.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empty it, keeping a moderate buffer for the next round.
    fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
        if self.data.capacity() > 1 << 20 {
            self.data = Vec::new();
            self.items = Vec::new();
        }
    }

    /// The stanza at `i`: type, mode, route and bytes. Everything in the queue was written
    /// from `&str` JIDs, so the ranges hold UTF-8.
    fn get(&self, i: usize) -> Option<(StanzaType, Mode, Route<'_>, &[u8])> {
        let q = self.items.get(i)?;
        let text = |r: &Range<usize>| std::str::from_utf8(self.data.get(r.clone())?).ok();
        let route = Route {
            to: JidStr::trusted(text(&q.to)?),
            from: JidStr::trusted(text(&q.from)?),
        };
        Some((q.ty, q.mode, route, self.data.get(q.stanza.clone())?))
    }
}

/// One shard's router and the state it routes with.
pub struct Router {
    /// The configuration.
    pub config: Arc<Config>,
    /// The storage.
    pub storage: xmppd_storage::Storage,
    /// Registered modules.
    pub registry: Registry,
    /// Sessions homed on this shard.
    pub sessions: RefCell<Sessions>,
    /// Stanzas for other shards.
    pub outbox: Rc<Outbox>,
    /// The XEP-0114 component streams living on this shard.
    pub components: crate::core::components::Links,
    /// Which component domains are connected (all shards).
    pub component_dir: Arc<crate::core::components::Directory>,
    /// Federation, when on.
    remote: RefCell<Option<Rc<dyn crate::core::Remote>>>,
    hosts: HostTable,
    shards: usize,
    client_ns: StreamNs,
    me: std::rc::Weak<Router>,
    /// Delivery scopes open on this shard (see "Re-entrance").
    active: Cell<u32>,
    /// Local stanzas routed while a scope was open.
    queue: RefCell<LocalQueue>,
    /// The queue being delivered (swapped with `queue`, so both keep their buffers).
    draining: RefCell<LocalQueue>,
    /// A task will drain the queue.
    drain_scheduled: Cell<bool>,
}

impl Router {
    /// A router for shard `outbox.me()`.
    pub fn new(
        config: Arc<Config>,
        storage: xmppd_storage::Storage,
        registry: Registry,
        outbox: Rc<Outbox>,
        component_dir: Arc<crate::core::components::Directory>,
    ) -> Rc<Router> {
        let shards = outbox.links().shards();
        let hosts = host_table(&config, &registry);
        Rc::new_cyclic(|me| Router {
            config,
            storage,
            registry,
            sessions: RefCell::new(Sessions::default()),
            outbox,
            components: Default::default(),
            component_dir,
            remote: RefCell::new(None),
            hosts,
            shards,
            client_ns: StreamNs::new(ns::CLIENT),
            me: me.clone(),
            active: Cell::new(0),
            queue: RefCell::default(),
            draining: RefCell::default(),
            drain_scheduled: Cell::new(false),
        })
    }

    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.outbox.me()
    }

    /// The home shard of a bare JID.
    pub fn home_of(&self, bare: &str) -> usize {
        crate::shard::shard_of(bare, self.shards)
    }

    fn ctx(self: &Rc<Self>) -> Ctx {
        Ctx(self.clone())
    }

    /// Run `f` in a delivery scope: local stanzas routed meanwhile are queued, and delivered
    /// when the outermost scope closes.
    fn scoped<R>(self: &Rc<Self>, f: impl FnOnce() -> R) -> R {
        self.active.set(self.active.get() + 1);
        let r = f();
        self.active.set(self.active.get() - 1);
        if self.active.get() == 0 {
            self.drain();
        }
        r
    }

    /// Run `f` (router code on a module's behalf) with everything it routes locally queued,
    /// even outside a scope: then a task delivers it, so the module is not re-entered.
    fn queued<R>(self: &Rc<Self>, f: impl FnOnce() -> R) -> R {
        self.active.set(self.active.get() + 1);
        let r = f();
        self.active.set(self.active.get() - 1);
        if self.active.get() == 0 && !self.queue.borrow().is_empty() {
            self.schedule_drain();
        }
        r
    }

    /// Queue a local stanza; outside any scope, a task delivers it soon.
    fn enqueue(self: &Rc<Self>, ty: StanzaType, mode: Mode, route: Route<'_>, stanza: &[u8]) {
        self.queue.borrow_mut().push(ty, mode, route, stanza);
        if self.active.get() == 0 {
            self.schedule_drain();
        }
    }

    fn schedule_drain(self: &Rc<Self>) {
        if self.drain_scheduled.replace(true) {
            return;
        }
        let me = self.clone();
        // glommio polls a spawned task at once: yield first, so the task runs after the
        // caller (which must not be re-entered) has returned to the executor.
        glommio::spawn_local(async move {
            glommio::executor().yield_now().await;
            me.drain_scheduled.set(false);
            if me.active.get() == 0 {
                me.drain();
            }
        })
        .detach();
    }

    /// Deliver the local queue, oldest first, including what the deliveries queue, up to
    /// [`DRAIN_BUDGET`] stanzas; the rest is left to a task.
    fn drain(self: &Rc<Self>) {
        let mut budget = DRAIN_BUDGET;
        while !self.queue.borrow().is_empty() {
            if budget == 0 {
                self.schedule_drain();
                return;
            }
            std::mem::swap(
                &mut *self.queue.borrow_mut(),
                &mut *self.draining.borrow_mut(),
            );
            self.active.set(self.active.get() + 1);
            {
                let batch = self.draining.borrow();
                let mut i = 0;
                while let Some((ty, mode, route, stanza)) = batch.get(i) {
                    i += 1;
                    let pending = match mode {
                        Mode::Route => self.route_now(ty, route, stanza),
                        Mode::Account => self.deliver_to_account(ty, route, stanza),
                        Mode::Sessions => {
                            self.to_sessions(ty, route, stanza);
                            None
                        }
                    };
                    if let Some(p) = pending {
                        glommio::spawn_local(p).detach();
                    }
                }
                budget = budget.saturating_sub(i);
            }
            self.active.set(self.active.get() - 1);
            self.draining.borrow_mut().clear();
        }
    }

    /// Route a stanza from a bound client homed on this shard (RFC 6120 §10.3–10.5).
    pub fn from_client(self: &Rc<Self>, s: FromClient<'_>) -> Option<Pending> {
        self.outbox.metrics().stanza_in(s.ty);
        let chain = self.registry.chain::<events::ClientStanza>();
        let kind = s.ty.kind();
        if chain.wants(kind) {
            let ctx = self.ctx();
            if let Flow::Handled(p) = self.scoped(|| chain.run(&ctx, kind, &s)) {
                return p;
            }
        }
        let from = s.from;
        match (s.ty, s.to) {
            // Presence without an addressee is a broadcast: the presence module's, if any.
            (StanzaType::Presence(_), None) => None,
            // §10.3.3: an IQ with no `to` is handled on behalf of the sender's account.
            (StanzaType::Iq(it), None) => {
                let bare = from.to_bare();
                self.server_iq(it, Scope::Account, from, &bare, s.id, s.stamped)
            }
            // §10.3.1: a message with no `to` goes to the sender's bare JID (the c2s layer has
            // stamped that `to`).
            (ty, None) => {
                let to = JidStr::trusted(from.bare_str());
                self.route(ty, Route::new(from, to), s.stamped)
            }
            (ty, Some(to)) => {
                if to.local().is_none() && self.hosts.is_local(to.domain()) {
                    return self.to_server(ty, from, to, s.id, s.stamped);
                }
                self.route(ty, Route::new(from, to), s.stamped)
            }
        }
    }

    /// True if `domain` is this server's: served, an in-process service's or a
    /// component's (or under one).
    pub fn hosts_domain(&self, domain: &str) -> bool {
        self.hosts.get(domain).is_some() || self.hosts.component_of(domain).is_some()
    }

    /// The component domain serving `domain` (itself or a parent), if any.
    pub fn component_of<'d>(&self, domain: &'d str) -> Option<&'d str> {
        self.hosts.component_of(domain)
    }

    /// Route a stanza from a peer, an XEP-0114 component or a remote server (its stream
    /// checked `from` and `to`): to the server itself when it names a served domain,
    /// otherwise like any routed stanza. The client chains do not run: the sender is not a
    /// local account.
    pub fn from_peer(
        self: &Rc<Self>,
        ty: StanzaType,
        from: &Jid,
        to: &Jid,
        id: Option<&str>,
        stanza: &[u8],
    ) -> Option<Pending> {
        self.outbox.metrics().stanza_in(ty);
        if to.local().is_none() && self.hosts.is_local(to.domain()) {
            return self.to_server(ty, from, to, id, stanza);
        }
        self.route(ty, Route::new(from, to), stanza)
    }

    /// Route a stanza: delivered here, handed to the addressee's home shard, or bounced for
    /// a domain this server cannot reach. Inside a delivery scope a local stanza is queued
    /// (None); outside (router code only: modules send through `Services`), what is queued
    /// is delivered first, then this one, and its future returned.
    pub fn route(
        self: &Rc<Self>,
        ty: StanzaType,
        route: Route<'_>,
        stanza: &[u8],
    ) -> Option<Pending> {
        // Outside a scope this is a router entry (a client's stanza, an IQ answer), never a
        // module's code: what waits in the queue is delivered first, in order, and then this
        // one here and now, so its future (offline storage) is the sender's to await.
        if self.active.get() == 0 && !self.queue.borrow().is_empty() {
            self.drain();
        }
        // Inside a scope, or behind stanzas a drain left for its task: queued, so nothing
        // overtakes what was routed before it.
        if self.active.get() > 0 || !self.queue.borrow().is_empty() {
            self.send(ty, Mode::Route, route, stanza);
            return None;
        }
        self.scoped(|| self.route_now(ty, route, stanza))
    }

    /// What modules' sends do: to another shard's outbox at once, otherwise queued. A routed
    /// stanza for an account homed here is queued as such, so the drain does not decide its
    /// host again (a room's fan-out routes one copy per occupant session).
    fn send(self: &Rc<Self>, ty: StanzaType, mode: Mode, route: Route<'_>, stanza: &[u8]) {
        match hosts::decide(&self.hosts, route.to, self.shards) {
            Dest::Account(home)
            | Dest::Service(home)
            | Dest::Component(home)
            | Dest::Remote(home)
                if home != self.shard() =>
            {
                self.to_shard(home, ty, route, stanza)
            }
            Dest::Account(_) if matches!(mode, Mode::Route) => {
                self.enqueue(ty, Mode::Account, route, stanza)
            }
            _ => self.enqueue(ty, mode, route, stanza),
        }
    }

    /// Hand a stanza to another shard's home (batched by the outbox).
    fn to_shard(&self, home: usize, ty: StanzaType, route: Route<'_>, stanza: &[u8]) {
        let (to, from) = (route.to.as_str(), route.from.as_str());
        self.outbox
            .push(home, ty, to, from, |o| o.extend_from_slice(stanza));
    }

    fn route_now(
        self: &Rc<Self>,
        ty: StanzaType,
        route: Route<'_>,
        stanza: &[u8],
    ) -> Option<Pending> {
        match hosts::decide(&self.hosts, route.to, self.shards) {
            Dest::Remote(home) if home == self.shard() => {
                self.to_remote(ty, route, stanza);
                None
            }
            Dest::Component(home) if home == self.shard() => {
                self.to_component(ty, route, stanza);
                None
            }
            // The server itself, as the addressee of a generated stanza: nothing to deliver.
            Dest::Server => None,
            Dest::Account(home) if home == self.shard() => {
                self.deliver_to_account(ty, route, stanza)
            }
            Dest::Service(home) if home == self.shard() => self.deliver(ty, route, stanza),
            Dest::Account(home)
            | Dest::Service(home)
            | Dest::Component(home)
            | Dest::Remote(home) => {
                self.to_shard(home, ty, route, stanza);
                None
            }
        }
    }

    /// Hand a stanza to federation on the home shard of its remote domain; without
    /// federation (`--no-s2s`) every remote domain is unreachable (§10.4.3).
    fn to_remote(self: &Rc<Self>, ty: StanzaType, route: Route<'_>, stanza: &[u8]) {
        let remote = self.remote.borrow().clone();
        let Some(remote) = remote else {
            self.bounce_stanza(ty, stanza, route, StanzaCondition::RemoteServerNotFound);
            return;
        };
        self.outbox.metrics().stanza_out(ty);
        if let Err(e) = remote.send(ty, route, stanza) {
            let id = self.id_of(stanza);
            self.bounce(refused(ty, id.as_deref(), route), e);
        }
    }

    /// Federation is on: stanzas for remote domains go to `remote`.
    pub fn set_remote(&self, remote: Rc<dyn crate::core::Remote>) {
        *self.remote.borrow_mut() = Some(remote);
    }

    /// Hand a stanza to the XEP-0114 component serving its addressee's domain, whose stream
    /// lives on this shard (COMP-08): `to` and `from` as they are. Without a connected
    /// stream the sender gets `service-unavailable`; a component that does not read gets
    /// the send-queue policy of any client (`resource-constraint` to the sender).
    fn to_component(self: &Rc<Self>, ty: StanzaType, route: Route<'_>, stanza: &[u8]) {
        let link = self
            .hosts
            .component_of(route.to.domain())
            .and_then(|d| self.components.get(d));
        let Some(handle) = link else {
            // COMP-08: requests and messages learn the component is gone; presence,
            // results and errors are dropped (RFC 6120 §8.3.1: never an error to a result).
            let answer = match ty {
                StanzaType::Presence(_) => false,
                StanzaType::Iq(_) => ty.is_request(),
                StanzaType::Message(_) => !ty.is_error(),
            };
            if answer {
                self.bounce_stanza(ty, stanza, route, StanzaCondition::ServiceUnavailable);
            }
            return;
        };
        self.outbox.metrics().stanza_out(ty);
        if handle.offer(route.from.as_str(), stanza).is_err()
            && !matches!(ty, StanzaType::Iq(IqType::Result))
        {
            self.bounce_stanza(ty, stanza, route, StanzaCondition::ResourceConstraint);
        }
    }

    /// Route a server-generated stanza written by `write` (error replies, IQ results).
    pub fn route_generated(
        self: &Rc<Self>,
        ty: StanzaType,
        route: Route<'_>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut buf = sessions::take_buffer();
        write(&mut buf);
        if let Some(p) = self.route(ty, route, &buf) {
            glommio::spawn_local(p).detach();
        }
        sessions::give_buffer(buf);
    }

    /// Route one stanza to many JIDs, writing its bytes once per destination shard; local
    /// addressees are queued.
    fn fanout_stanza(
        self: &Rc<Self>,
        ty: StanzaType,
        from: JidStr<'_>,
        tos: &[&str],
        stanza: &[u8],
    ) {
        let mut remote: SmallVec<[SmallVec<[&str; 8]>; 4]> =
            (0..self.shards).map(|_| SmallVec::new()).collect();
        let mut accounts: SmallVec<[&str; 8]> = SmallVec::new();
        let mut others: SmallVec<[&str; 2]> = SmallVec::new();
        for to in tos {
            match hosts::decide(&self.hosts, JidStr::trusted(to), self.shards) {
                Dest::Account(home)
                | Dest::Service(home)
                | Dest::Component(home)
                | Dest::Remote(home)
                    if home != self.shard() =>
                {
                    remote[home].push(to)
                }
                Dest::Account(_) => accounts.push(to),
                _ => others.push(to),
            }
        }
        if !accounts.is_empty() || !others.is_empty() {
            let mut q = self.queue.borrow_mut();
            q.push_many(ty, Mode::Account, from, &accounts, stanza);
            q.push_many(ty, Mode::Route, from, &others, stanza);
            drop(q);
            if self.active.get() == 0 {
                self.schedule_drain();
            }
        }
        for (dst, tos) in remote.iter().enumerate() {
            if !tos.is_empty() {
                self.outbox.push_many(dst, ty, tos, from.as_str(), stanza);
            }
        }
    }

    /// The server is stopping: every in-process service on this shard says goodbye to its
    /// users (what it sends is routed as usual).
    pub fn services_stopping(self: &Rc<Self>) {
        let ctx = self.ctx();
        self.scoped(|| {
            for s in self.registry.services() {
                s.service.stopping(&ctx);
            }
        });
    }

    /// Deliver a stanza that arrived from another shard.
    pub fn deliver_entry(self: &Rc<Self>, e: &BatchEntry<'_>) {
        let route = Route {
            to: JidStr::trusted(e.to),
            from: JidStr::trusted(e.from),
        };
        if let Some(p) = self.scoped(|| self.deliver(e.ty, route, e.stanza)) {
            glommio::spawn_local(p).detach();
        }
    }

    /// Deliver a stanza to a JID homed on this shard: a service's, or an account's.
    fn deliver(
        self: &Rc<Self>,
        ty: StanzaType,
        route: Route<'_>,
        stanza: &[u8],
    ) -> Option<Pending> {
        match self.hosts.get(route.to.domain()) {
            Some(Host::Local) => self.deliver_to_account(ty, route, stanza),
            Some(Host::Service(service)) => {
                let ctx = self.ctx();
                let inbound = Inbound { ty, route, stanza };
                self.scoped(|| service.stanza(&ctx, &inbound))
            }
            Some(Host::Component) => {
                self.to_component(ty, route, stanza);
                None
            }
            // A subdomain of a component's domain is the component's; anything else is not
            // hosted here (the table is the same on every shard, so only a stanza for the
            // domain itself, or one routed by mistake).
            None if self.hosts.component_of(route.to.domain()).is_some() => {
                self.to_component(ty, route, stanza);
                None
            }
            // A remote domain homed here.
            None => {
                self.to_remote(ty, route, stanza);
                None
            }
        }
    }

    /// Deliver a stanza to a local account homed on this shard: the delivery chains, then
    /// RFC 6121 §8.5.
    fn deliver_to_account(
        self: &Rc<Self>,
        ty: StanzaType,
        route: Route<'_>,
        stanza: &[u8],
    ) -> Option<Pending> {
        let inbound = Inbound { ty, route, stanza };
        let (bare, full) = (
            self.registry.chain::<events::DeliverBare>(),
            self.registry.chain::<events::DeliverFull>(),
        );
        let kind = ty.kind();
        let taken = match route.to.is_bare() {
            true if bare.wants(kind) => Some(self.scoped(|| bare.run(&self.ctx(), kind, &inbound))),
            false if full.wants(kind) => {
                Some(self.scoped(|| full.run(&self.ctx(), kind, &inbound)))
            }
            _ => None,
        };
        if let Some(Flow::Handled(p)) = taken {
            return p;
        }
        match self.to_sessions(ty, route, stanza) {
            Delivery::Done => None,
            Delivery::Congested => {
                // Never an error answering an IQ response (bounce_stanza skips errors).
                if !matches!(ty, StanzaType::Iq(IqType::Result)) {
                    self.bounce_stanza(ty, stanza, route, StanzaCondition::ResourceConstraint);
                }
                None
            }
            Delivery::Unavailable => {
                self.bounce_stanza(ty, stanza, route, StanzaCondition::ServiceUnavailable);
                None
            }
            Delivery::NoResource => {
                // IM-MSG-07: offline storage if a module takes it, else the sender learns that
                // it was not delivered. Never stored for a missing account (CORE-STANZA-19).
                match self.account_exists(route.to.bare().as_str()) {
                    Ok(true) => {
                        let chain = self.registry.chain::<events::Undeliverable>();
                        let ctx = self.ctx();
                        let kind = ty.kind();
                        if let Flow::Handled(p) = self.scoped(|| chain.run(&ctx, kind, &inbound)) {
                            return p;
                        }
                    }
                    Ok(false) => {}
                    // Not known to be missing: the sender learns the server failed, not that
                    // the account does not exist (issue 8).
                    Err(e) => {
                        let to = route.to.bare().as_str();
                        let err = crate::core::storage_failure("account lookup", to, &e);
                        let id = self.id_of(stanza);
                        self.bounce(refused(ty, id.as_deref(), route), err);
                        return None;
                    }
                }
                self.bounce_stanza(ty, stanza, route, StanzaCondition::ServiceUnavailable);
                None
            }
            Delivery::ForAccount(it) => {
                // Routing keys are normalized JIDs: no second preparation.
                let (Some(from_jid), Some(to_jid)) = (route.from.to_jid(), route.to.to_jid())
                else {
                    return None;
                };
                let id = self.id_of(stanza);
                self.server_iq(
                    it,
                    Scope::Account,
                    &from_jid,
                    &to_jid,
                    id.as_deref(),
                    stanza,
                )
            }
        }
    }

    /// Deliver to a local account's connected resources by the §8.5 table. The handles are
    /// collected first and the session table released before anything is offered, so the
    /// `BeforeWrite` handlers may use it.
    fn to_sessions(self: &Rc<Self>, ty: StanzaType, route: Route<'_>, stanza: &[u8]) -> Delivery {
        self.outbox.metrics().stanza_out(ty);
        let (bare, resource) = (route.to.bare().as_str(), route.to.resource());
        let (decision, targets) = {
            let sessions = self.sessions.borrow();
            let account = sessions.account(bare);
            let full = resource.and_then(|r| account?.get(r));
            let decision = decide(ty, resource.is_some(), full.is_some());
            let mut targets: SmallVec<[Rc<ClientHandle>; 2]> = SmallVec::new();
            match decision {
                Decision::Resource { .. } => targets.extend(full.map(|r| r.handle.clone())),
                Decision::Best => targets.extend(
                    account
                        .into_iter()
                        .flat_map(|a| a.best())
                        .map(|r| r.handle.clone()),
                ),
                Decision::NonNegative => targets.extend(
                    account
                        .into_iter()
                        .flat_map(|a| a.non_negative())
                        .map(|r| r.handle.clone()),
                ),
                Decision::Available => targets.extend(
                    account
                        .into_iter()
                        .flat_map(|a| a.available())
                        .map(|r| r.handle.clone()),
                ),
                Decision::Drop | Decision::Unavailable | Decision::ForAccount(_) => {}
            }
            (decision, targets)
        };
        match decision {
            Decision::Drop => Delivery::Done,
            Decision::Unavailable => Delivery::Unavailable,
            Decision::ForAccount(it) => Delivery::ForAccount(it),
            Decision::Resource { bounce } => match targets.first() {
                Some(h) if self.offer(h, ty, route, stanza).is_err() && bounce => {
                    Delivery::Congested
                }
                _ => Delivery::Done,
            },
            Decision::Best => {
                let (mut delivered, mut congested) = (false, false);
                for h in &targets {
                    match self.offer(h, ty, route, stanza) {
                        Ok(()) => delivered = true,
                        Err(Congested) => congested = true,
                    }
                }
                match (delivered, congested) {
                    (true, _) => Delivery::Done,
                    (false, true) => Delivery::Congested,
                    (false, false) => Delivery::NoResource,
                }
            }
            Decision::NonNegative | Decision::Available => {
                // Headlines and presence are fire-and-forget: a full queue drops its copy.
                for h in &targets {
                    let _ = self.offer(h, ty, route, stanza);
                }
                Delivery::Done
            }
        }
    }

    /// Queue a stanza for one resource under the send-queue policy, after the `BeforeWrite`
    /// chain (a handler that takes it counts as delivered).
    fn offer(
        self: &Rc<Self>,
        handle: &Rc<ClientHandle>,
        ty: StanzaType,
        route: Route<'_>,
        stanza: &[u8],
    ) -> Result<(), Congested> {
        let chain = self.registry.chain::<events::BeforeWrite>();
        let kind = ty.kind();
        if chain.wants(kind) {
            // Borrowed for the chain's run: only binding writes it, never a handler.
            let jid = handle.jid.borrow();
            if let Some(resource) = jid.as_ref() {
                let ctx = self.ctx();
                let arg = ToClient {
                    resource,
                    handle,
                    ty,
                    route,
                    stanza,
                };
                if let Flow::Handled(p) = self.scoped(|| chain.run(&ctx, kind, &arg)) {
                    if let Some(p) = p {
                        glommio::spawn_local(p).detach();
                    }
                    return Ok(());
                }
            }
        }
        handle.offer(route.from.as_str(), stanza)
    }

    /// A stanza addressed to the server's domain (§10.5.1, CORE-STANZA-15).
    fn to_server(
        self: &Rc<Self>,
        ty: StanzaType,
        from: &Jid,
        to: &Jid,
        id: Option<&str>,
        stamped: &[u8],
    ) -> Option<Pending> {
        match ty {
            StanzaType::Iq(it) => self.server_iq(it, Scope::Server, from, to, id, stamped),
            StanzaType::Message(MessageType::Normal | MessageType::Chat) => {
                self.bounce(
                    refused(ty, id, Route::new(from, to)),
                    StanzaError::new(StanzaCondition::ServiceUnavailable),
                );
                None
            }
            _ => None,
        }
    }

    /// Answer an IQ the server handles (CORE-STANZA-07/08, IM-IQ-01). Requests without a
    /// handler get `service-unavailable`; results and errors are dropped.
    fn server_iq(
        self: &Rc<Self>,
        it: IqType,
        scope: Scope,
        from: &Jid,
        to: &Jid,
        id: Option<&str>,
        stanza: &[u8],
    ) -> Option<Pending> {
        if !matches!(it, IqType::Get | IqType::Set) {
            // An answer to a module's own request (entity capabilities queries, ...).
            if let Some(h) = id.and_then(|id| self.registry.iq_answer_handler(id)) {
                let answer = IqAnswer {
                    from,
                    to,
                    ty: it,
                    id: id.unwrap_or_default(),
                    stanza,
                };
                let ctx = self.ctx();
                self.scoped(|| h(&ctx, &answer));
                return None;
            }
            // A client's answer to a request the server sent it (offline delivery
            // acknowledgements, core::sessions): it has read everything before that request.
            if let Some(id) = id {
                let handle = {
                    let sessions = self.sessions.borrow();
                    from.resource()
                        .and_then(|r| sessions.account(from.bare_str())?.get(r))
                        .map(|r| r.handle.clone())
                };
                if let Some(h) = handle {
                    h.answered(id);
                }
            }
            return None;
        }
        let ty = StanzaType::Iq(it);
        let id = id?;
        let el = xml::parse_element(stanza, &self.client_ns, &self.config.xml_limits()).ok();
        let Some(payload) = el.as_ref().and_then(|el| el.elements().next()) else {
            self.bounce(
                refused(ty, Some(id), Route::new(from, to)),
                StanzaError::new(StanzaCondition::BadRequest),
            );
            return None;
        };
        let mut handler = self
            .registry
            .iq_handler(scope, it, &payload.ns, &payload.name);
        // RFC 6120 §8.1.2.1, §10.3.3: a reply on behalf of an account comes from the addressed
        // bare JID, also when a server-scope handler (or none) takes the request; clients
        // match replies by sender and id.
        let reply_from = match scope {
            Scope::Server => to.domain().to_string(),
            Scope::Account => to.bare_str().to_string(),
        };
        let mut scope = scope;
        if handler.is_none() && scope == Scope::Account && from.bare_str() == to.bare_str() {
            // A request with no `to` (or to one's own bare JID) that no account module handles
            // is one for the server (e.g. a ping without `to`).
            handler = self
                .registry
                .iq_handler(Scope::Server, it, &payload.ns, &payload.name);
            scope = Scope::Server;
        }
        let reply = match handler {
            None => IqReply::Error(StanzaError::new(StanzaCondition::ServiceUnavailable)),
            Some(h) => {
                let req = IqRequest {
                    from,
                    to,
                    scope,
                    ty: it,
                    id,
                    payload,
                };
                let ctx = self.ctx();
                self.scoped(|| h(&ctx, &req))
            }
        };
        match reply {
            IqReply::Later(fut) => {
                let router = self.clone();
                let from = from.as_str().to_string();
                let id = id.to_string();
                Some(Box::pin(async move {
                    let mut reply = fut.await;
                    // A handler's future resolves to a final reply.
                    while let IqReply::Later(next) = reply {
                        reply = next.await;
                    }
                    let back = Route::new(JidStr::trusted(&reply_from), JidStr::trusted(&from));
                    router.send_iq_reply(reply, &id, back);
                }))
            }
            reply => {
                let back = Route::new(JidStr::trusted(&reply_from), from);
                self.send_iq_reply(reply, id, back);
                None
            }
        }
    }

    /// Send a handler's reply along `back` (from the addressee to the requester).
    fn send_iq_reply(self: &Rc<Self>, reply: IqReply, id: &str, back: Route<'_>) {
        match reply {
            IqReply::Result(payload) => {
                self.route_generated(StanzaType::Iq(IqType::Result), back, |out| {
                    write_iq_result(out, id, back, payload.as_ref());
                });
            }
            IqReply::Error(err) => {
                let ty = StanzaType::Iq(IqType::Set);
                self.bounce(refused(ty, Some(id), back.reply()), err);
            }
            IqReply::Later(_) => {}
        }
    }

    /// Answer a stanza with `err`, from its addressee to its sender (never for an error
    /// stanza: CORE-STANZA-09).
    pub fn bounce(self: &Rc<Self>, r: Refused<'_>, err: StanzaError) {
        if r.ty.is_error() {
            return;
        }
        let kind = r.ty.kind();
        let err_ty = match kind {
            Kind::Message => StanzaType::Message(MessageType::Error),
            Kind::Presence => StanzaType::Presence(PresenceType::Error),
            Kind::Iq => StanzaType::Iq(IqType::Error),
        };
        let legacy = self.config.legacy_error_codes;
        let back = r.route.reply();
        self.route_generated(err_ty, back, |out| {
            err.write_reply(
                kind.name(),
                r.id,
                Some(back.to.as_str()),
                Some(back.from.as_str()),
                legacy,
                out,
            );
        });
    }

    /// Answer a stanza with an error condition, reading its id from its bytes.
    fn bounce_stanza(
        self: &Rc<Self>,
        ty: StanzaType,
        stanza: &[u8],
        route: Route<'_>,
        condition: StanzaCondition,
    ) {
        if ty.is_error() {
            return;
        }
        let id = self.id_of(stanza);
        self.bounce(
            refused(ty, id.as_deref(), route),
            StanzaError::new(condition),
        );
    }

    /// The `id` of a routed stanza (None when it has none).
    pub fn id_of(&self, stanza: &[u8]) -> Option<String> {
        let head = xml::scan_stanza(stanza, &self.client_ns, &self.config.xml_limits()).ok()?;
        head.attr("id").map(|c| c.into_owned())
    }

    /// Whether the account exists; a storage failure is an `Err` for the caller to answer
    /// as one (never as "no such account").
    pub fn account_exists(&self, bare: &str) -> Result<bool, xmppd_storage::StorageError> {
        self.storage.accounts().exists(bare)
    }

    /// Bind a resource for a connection (RFC 6120 §7) under the configured conflict policy;
    /// a displaced session is closed with `<conflict/>` (CORE-BIND-06c) and ends as a session
    /// here and now, so its contacts learn it is gone. The future is the `SessionBound`
    /// chain's.
    pub fn bind(
        self: &Rc<Self>,
        user: &Jid,
        requested: Option<&str>,
        handle: Rc<ClientHandle>,
    ) -> Result<(Jid, Option<Pending>), StanzaError> {
        self.bind_with(user, requested, handle, self.config.resource_conflict)
    }

    /// Bind exactly `resource` (resourceprep'd), for a XEP-0078 login: its result cannot
    /// tell the client another resource, so the `rename` conflict policy refuses instead
    /// (`conflict`, IQAUTH-07).
    pub fn bind_exact(
        self: &Rc<Self>,
        user: &Jid,
        resource: &str,
        handle: Rc<ClientHandle>,
    ) -> Result<(Jid, Option<Pending>), StanzaError> {
        let policy = match self.config.resource_conflict {
            ConflictPolicy::Rename => ConflictPolicy::Refuse,
            policy => policy,
        };
        self.bind_with(user, Some(resource), handle, policy)
    }

    fn bind_with(
        self: &Rc<Self>,
        user: &Jid,
        requested: Option<&str>,
        handle: Rc<ClientHandle>,
        policy: ConflictPolicy,
    ) -> Result<(Jid, Option<Pending>), StanzaError> {
        let (jid, displaced) = self.sessions.borrow_mut().bind(
            user,
            requested,
            handle.clone(),
            policy,
            self.config.max_resources,
        )?;
        let ctx = self.ctx();
        let pending = self.scoped(|| {
            if let Some(old) = displaced {
                old.handle.request_close(StreamError::with_text(
                    StreamCondition::Conflict,
                    "replaced by a new session",
                ));
                self.session_ended_chain(&ctx, &old);
            }
            self.registry.chain::<events::SessionBound>().notify(
                &ctx,
                &Bound {
                    jid: &jid,
                    handle: &handle,
                },
            )
        });
        Ok((jid, pending))
    }

    fn session_ended_chain(&self, ctx: &Ctx, old: &sessions::Resource) {
        if let Some(p) = self
            .registry
            .chain::<events::SessionEnded>()
            .notify(ctx, old)
        {
            glommio::spawn_local(p).detach();
        }
    }

    /// A resource went away (stream closed or connection lost): modules learn it (RFC 6121
    /// §4.5.2 unavailable presence, IM-PRES-10). A displaced session finds itself already gone.
    pub fn session_ended(self: &Rc<Self>, jid: &Jid, handle: &Rc<ClientHandle>) {
        let removed = self.sessions.borrow_mut().unbind(jid, handle);
        if let Some(removed) = removed {
            let ctx = self.ctx();
            self.scoped(|| self.session_ended_chain(&ctx, &removed));
        }
    }
}

/// The host table from the configuration and the registry: served domains, then services.
fn host_table(config: &Config, registry: &Registry) -> HostTable {
    let mut t = HostTable::default();
    for d in &config.domains {
        t.insert(d, Host::Local);
    }
    for s in registry.services() {
        if t.get(&s.domain).is_some() {
            tracing::warn!(domain = %s.domain, "a service's domain is also served: the service wins");
        }
        t.insert(&s.domain, Host::Service(s.service.clone()));
    }
    // Config::resolve refuses a component domain that is served or a service's.
    for (domain, _) in &config.components.secrets {
        t.insert(domain, Host::Component);
    }
    t
}

fn refused<'a>(ty: StanzaType, id: Option<&'a str>, route: Route<'a>) -> Refused<'a> {
    Refused { ty, id, route }
}

impl Services for Router {
    fn config(&self) -> &Config {
        &self.config
    }

    fn storage(&self) -> &xmppd_storage::Storage {
        &self.storage
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn sessions(&self) -> &RefCell<Sessions> {
        &self.sessions
    }

    fn shard(&self) -> usize {
        Router::shard(self)
    }

    fn home_of(&self, bare: &str) -> usize {
        Router::home_of(self, bare)
    }

    fn route(&self, ty: StanzaType, route: Route<'_>, stanza: &[u8]) {
        if let Some(me) = self.me.upgrade() {
            me.send(ty, Mode::Route, route, stanza);
        }
    }

    fn fanout(&self, ty: StanzaType, from: JidStr<'_>, tos: &[&str], stanza: &[u8]) {
        if let Some(me) = self.me.upgrade() {
            me.fanout_stanza(ty, from, tos, stanza);
        }
    }

    fn bounce(&self, refused: Refused<'_>, err: StanzaError) {
        if let Some(me) = self.me.upgrade() {
            me.queued(|| Router::bounce(&me, refused, err));
        }
    }

    fn account_exists(&self, bare: &str) -> Result<bool, xmppd_storage::StorageError> {
        Router::account_exists(self, bare)
    }

    fn deliver_to_sessions(&self, ty: StanzaType, route: Route<'_>, stanza: &[u8]) {
        if let Some(me) = self.me.upgrade() {
            me.enqueue(ty, Mode::Sessions, route, stanza);
        }
    }

    fn connected_components(&self) -> Vec<String> {
        self.component_dir.connected()
    }
}

/// Write `<iq type='result' id to from>payload</iq>` along `route`.
fn write_iq_result(out: &mut Vec<u8>, id: &str, route: Route<'_>, payload: Option<&Element>) {
    out.extend_from_slice(b"<iq type='result' id='");
    xml::escape_attr(id, out);
    out.extend_from_slice(b"' to='");
    xml::escape_attr(route.to.as_str(), out);
    out.extend_from_slice(b"' from='");
    xml::escape_attr(route.from.as_str(), out);
    match payload {
        None => out.extend_from_slice(b"'/>"),
        Some(p) => {
            out.extend_from_slice(b"'>");
            p.write_to(out, ns::CLIENT);
            out.extend_from_slice(b"</iq>");
        }
    }
}

#[cfg(test)]
mod tests;
