//! What modules build on: the per-shard registry (IQ handlers keyed by addressee, type and
//! payload; disco identities and features; stream features; ordered event chains
//! ([`events`]); handlers of non-stanza elements by namespace; in-process services for the
//! host table ([`hosts`])), the session table, and [`Services`], the router's capabilities
//! as modules may use them.
//!
//! Modules register themselves (`modules/*.rs`, each with a `register` function); `core` never
//! names a module, and modules never call each other: what they share goes through the
//! registry. Every shard builds its own registry from the same list of register functions, so
//! handlers hold shard-local (`Rc`) state.

pub mod components;
pub mod events;
pub mod hosts;
pub mod locks;
pub mod sessions;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::config::Config;
use crate::xml::Element;
use crate::xmpp::error::{StanzaCondition, StanzaError, StreamError};
use crate::xmpp::jid::{Jid, JidStr};
use crate::xmpp::stanza::{IqType, StanzaType};

pub use events::{Event, Filter, Flow, FromClient, Inbound, Notice};
pub use hosts::{Host, HostTable, Service, ServiceHost};
pub use sessions::{ClientHandle, Sessions};

/// Asynchronous work a stanza started (storage, mostly); the connection that sent it awaits
/// it before reading on, which keeps order and bounds the work one client can start.
pub type Pending = Pin<Box<dyn Future<Output = ()>>>;

/// A stanza's addresses as routing sees them: who it is for and who sent it (normalized).
/// Named fields, so that the two can never trade places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The addressee.
    pub to: JidStr<'a>,
    /// The sender.
    pub from: JidStr<'a>,
}

impl<'a> Route<'a> {
    /// From `from` to `to`.
    pub fn new(from: impl Into<JidStr<'a>>, to: impl Into<JidStr<'a>>) -> Route<'a> {
        Route {
            to: to.into(),
            from: from.into(),
        }
    }

    /// The way back: an answer goes from this stanza's addressee to its sender.
    pub fn reply(self) -> Route<'a> {
        Route {
            to: self.from,
            from: self.to,
        }
    }
}

/// A stanza being refused, described as it was sent: its error goes back from `route.to`
/// to `route.from` (never for an error stanza: CORE-STANZA-09).
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    /// Its kind and type.
    pub ty: StanzaType,
    /// Its id.
    pub id: Option<&'a str>,
    /// Its addresses, as sent.
    pub route: Route<'a>,
}

/// The router's capabilities as modules and services see them. Implemented by the shard's
/// router; a handle is cheap to clone into futures.
///
/// Sending never re-enters the caller: a stanza routed to a local addressee is queued and
/// delivered after the caller returns (inside a handler: when the handler returns; in a
/// future: by the shard's next delivery turn). So a module may hold its own borrows while
/// it sends (see `router`, "Re-entrance").
pub trait Services {
    /// The configuration.
    fn config(&self) -> &Config;
    /// The storage.
    fn storage(&self) -> &xmppd_storage::Storage;
    /// The registry (modules, features, hooks).
    fn registry(&self) -> &Registry;
    /// The shard's session table.
    fn sessions(&self) -> &RefCell<Sessions>;
    /// This shard's index.
    fn shard(&self) -> usize;
    /// The home shard of a bare JID.
    fn home_of(&self, bare: &str) -> usize;
    /// Route a stanza: delivered on its addressee's home shard, or bounced for an
    /// unreachable domain. The stanza's own `from`/`to` attributes are what the recipient
    /// sees.
    fn route(&self, ty: StanzaType, route: Route<'_>, stanza: &[u8]);
    /// Route the same stanza from `from` to many JIDs: one copy of the bytes per destination
    /// shard.
    fn fanout(&self, ty: StanzaType, from: JidStr<'_>, tos: &[&str], stanza: &[u8]);
    /// Answer a stanza with an error (nothing for an error stanza).
    fn bounce(&self, refused: Refused<'_>, err: StanzaError);
    /// Whether the local account exists. A storage failure is an `Err`, never "no": callers
    /// must not turn it into a statement about the account (`service-unavailable`,
    /// `unsubscribed`); see [`storage_failure`].
    fn account_exists(&self, bare: &str) -> Result<bool, xmppd_storage::StorageError>;
    /// Deliver a message or presence to the connected resources of a local account (homed
    /// here) by the RFC 6121 §8.5 rules, without the delivery chains (what a module does
    /// after its own checks). Queued like [`Services::route`].
    fn deliver_to_sessions(&self, ty: StanzaType, route: Route<'_>, stanza: &[u8]);
    /// The XEP-0114 component domains connected now (any shard), sorted.
    fn connected_components(&self) -> Vec<String>;
}

/// Federation as the router sees it: where a stanza for a domain this server does not host
/// goes (the `s2s` module implements it). Called on the home shard of the remote domain.
pub trait Remote {
    /// Queue a stanza for its remote domain. An error is the sender's bounce.
    fn send(&self, ty: StanzaType, route: Route<'_>, stanza: &[u8]) -> Result<(), StanzaError>;
}

/// The stanza error that reports a storage failure to whoever's stanza it stopped, logged
/// here at warn with its cause and `what` was being done (issue 8: a failure is never
/// answered as if the data were absent). A capacity limit (LMDB map or reader table full)
/// is `resource-constraint` (wait), as offline storage answers it; a write for an account
/// deleted meanwhile is `forbidden`; anything else is `internal-server-error`.
pub fn storage_failure(what: &str, user: &str, e: &xmppd_storage::StorageError) -> StanzaError {
    if matches!(e, xmppd_storage::StorageError::NoSuchAccount) {
        // The account was deleted meanwhile (its sessions are being ended); nothing was
        // stored (issue 8: a deleted account's session must not recreate its records).
        tracing::info!(user, "{what} refused: the account no longer exists");
        return StanzaError::with_text(StanzaCondition::Forbidden, "the account no longer exists");
    }
    tracing::warn!(user, error = %e, "{what} failed: storage error");
    if e.is_full() {
        StanzaError::with_text(
            StanzaCondition::ResourceConstraint,
            "the server's storage is out of resources",
        )
    } else {
        StanzaError::with_text(StanzaCondition::InternalServerError, "storage failure")
    }
}

/// A handle to the shard's services.
#[derive(Clone)]
pub struct Ctx(pub Rc<dyn Services>);

impl std::ops::Deref for Ctx {
    type Target = dyn Services;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Who an IQ request is addressed to, as far as dispatch is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The server itself: its domain, or no `to` for requests the server answers itself.
    Server,
    /// A local account's bare JID (or no `to`, for requests the server answers on behalf of
    /// the sender's own account). Handlers check ownership through [`IqRequest::own`].
    Account,
}

/// An IQ get or set the server answers.
pub struct IqRequest<'a> {
    /// The sender's full JID (stamped by the server).
    pub from: &'a Jid,
    /// The addressee (the server domain or an account's bare JID).
    pub to: &'a Jid,
    /// The dispatch scope.
    pub scope: Scope,
    /// `get` or `set`.
    pub ty: IqType,
    /// The request id.
    pub id: &'a str,
    /// The single payload element.
    pub payload: &'a Element,
}

impl IqRequest<'_> {
    /// True if the sender addresses its own account.
    pub fn own(&self) -> bool {
        self.scope == Scope::Account && self.from.bare_str() == self.to.bare_str()
    }
}

/// What a handler answers.
pub enum IqReply {
    /// `type='result'` with an optional payload.
    Result(Option<Element>),
    /// `type='error'`.
    Error(StanzaError),
    /// The answer needs asynchronous work (storage); the connection awaits it.
    Later(Pin<Box<dyn Future<Output = IqReply>>>),
}

/// An IQ handler.
pub type IqHandler = Rc<dyn Fn(&Ctx, &IqRequest<'_>) -> IqReply>;

/// A post-authentication element that is not a stanza (XEP-0198 `<enable/>`, `<r/>`, `<a/>`;
/// XEP-0352 `<active/>`, `<inactive/>`), for the module that registered its namespace.
pub struct Nonza<'a> {
    /// The authenticated account (bare).
    pub user: &'a Jid,
    /// The bound resource, if one is bound yet.
    pub bound: Option<&'a Jid>,
    /// The connection (answers go into its queue).
    pub handle: &'a Rc<ClientHandle>,
    /// The element.
    pub element: &'a Element,
}

/// Handles non-stanza elements of one namespace. An `Err` closes the stream with that error.
/// A client's answer (`result` or `error`) to an IQ request a module sent (see
/// [`Registry::iq_responses`]).
pub struct IqAnswer<'a> {
    /// The answering entity (stamped by the server: it is who it says).
    pub from: &'a Jid,
    /// Whom the request came from: the server domain or an account's bare JID.
    pub to: &'a Jid,
    /// `result` or `error`.
    pub ty: IqType,
    /// The id, which starts with the prefix the module registered.
    pub id: &'a str,
    /// The whole stanza as received.
    pub stanza: &'a [u8],
}

/// A handler of answers to a module's own requests.
pub type IqAnswerHandler = Rc<dyn Fn(&Ctx, &IqAnswer<'_>)>;

pub type NonzaHandler = Rc<dyn Fn(&Ctx, &Nonza<'_>) -> Result<Option<Pending>, StreamError>>;

/// A disco identity (XEP-0030 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `category`
    pub category: &'static str,
    /// `type`
    pub kind: &'static str,
    /// optional `name`
    pub name: Option<&'static str>,
}

struct IqEntry {
    scope: Scope,
    ty: IqType,
    ns: &'static str,
    name: &'static str,
    handler: IqHandler,
}

/// The per-shard registry of modules.
#[derive(Default)]
pub struct Registry {
    iq: Vec<IqEntry>,
    server_features: Vec<&'static str>,
    account_features: Vec<&'static str>,
    server_identities: Vec<Identity>,
    /// The post-authentication stream features, serialized once (written as is on every
    /// stream).
    stream_features: Vec<u8>,
    modules: Vec<&'static str>,
    hooks: events::Hooks,
    nonzas: Vec<(&'static str, NonzaHandler)>,
    answers: Vec<(&'static str, IqAnswerHandler)>,
    account_identities: Vec<Identity>,
    account_items: Vec<AccountItems>,
    services: Vec<ServiceHost>,
    completions: Vec<Completion>,
}

/// A step a module runs once every module is registered (see [`Registry::when_complete`]).
type Completion = Box<dyn FnOnce(&mut Registry)>;

/// What a module lists in an account's disco#items (XEP-0030 §4): the items of the node
/// asked for (`None`: the account itself) that the requester may see. `Ok(None)` when the
/// module has nothing to say about that node.
pub type AccountItems =
    Rc<dyn Fn(&Ctx, &IqRequest<'_>, Option<&str>) -> Result<Option<Vec<Element>>, StanzaError>>;

/// A module's registration function.
pub type RegisterFn = fn(&mut Registry, &Config);

impl Registry {
    /// Build a registry from register functions.
    pub fn build(modules: &[RegisterFn], config: &Config) -> Registry {
        let mut r = Registry::default();
        for register in modules {
            register(&mut r, config);
        }
        for complete in std::mem::take(&mut r.completions) {
            complete(&mut r);
        }
        r
    }

    /// Run `f` once every module is registered, in the order these were asked for: for what
    /// depends on the whole registry (disco's caps `ver` hashes every module's features). `f`
    /// must not add disco features or identities, which the steps before it may have read.
    pub fn when_complete(&mut self, f: impl FnOnce(&mut Registry) + 'static) {
        self.completions.push(Box::new(f));
    }

    /// Record a module's name (for logs and `check`); the handlers it adds next are
    /// listed under it.
    pub fn module(&mut self, name: &'static str) {
        self.modules.push(name);
    }

    /// Names of the registered modules.
    pub fn modules(&self) -> &[&'static str] {
        &self.modules
    }

    fn current(&self) -> &'static str {
        self.modules.last().copied().unwrap_or("core")
    }

    /// Handle IQ `ty` requests in `scope` whose payload is `<name xmlns=ns>`.
    pub fn iq(
        &mut self,
        scope: Scope,
        ty: IqType,
        ns: &'static str,
        name: &'static str,
        handler: impl Fn(&Ctx, &IqRequest<'_>) -> IqReply + 'static,
    ) {
        self.iq.push(IqEntry {
            scope,
            ty,
            ns,
            name,
            handler: Rc::new(handler),
        });
    }

    /// Add a handler to event `E`'s chain: it runs after the handlers of higher or equal
    /// priority (see [`events`]). Priorities in use are listed in `docs/DESIGN.md`.
    pub fn hook<E: Event>(
        &mut self,
        priority: i32,
        handler: impl for<'a> Fn(&Ctx, &E::Arg<'a>) -> E::Out + 'static,
    ) {
        self.hook_for::<E>(events::Kinds::ALL, priority, handler);
    }

    /// The same for a filter handler that wants only stanzas of `kinds` (the router skips it,
    /// and a chain nobody else wants, for the others).
    pub fn hook_for<E: Event>(
        &mut self,
        kinds: events::Kinds,
        priority: i32,
        handler: impl for<'a> Fn(&Ctx, &E::Arg<'a>) -> E::Out + 'static,
    ) {
        let module = self.current();
        E::chain_mut(&mut self.hooks).add(priority, module, kinds, None, Rc::new(handler));
    }

    /// The same for a link that runs only while `armed` is on: the module turns it on when it
    /// has something to do (CSI: while a resource is inactive), and the chain costs nothing
    /// otherwise.
    pub fn hook_armed<E: Event>(
        &mut self,
        kinds: events::Kinds,
        priority: i32,
        armed: Rc<std::cell::Cell<bool>>,
        handler: impl for<'a> Fn(&Ctx, &E::Arg<'a>) -> E::Out + 'static,
    ) {
        let module = self.current();
        let chain = E::chain_mut(&mut self.hooks);
        chain.add(priority, module, kinds, Some(armed), Rc::new(handler));
    }

    /// Event `E`'s chain.
    pub fn chain<E: Event>(&self) -> &events::Chain<E> {
        E::chain(&self.hooks)
    }

    /// Every event's chain order: `(event, [(module, priority)])`.
    pub fn chains(&self) -> Vec<(&'static str, Vec<(&'static str, i32)>)> {
        self.hooks.table()
    }

    /// Handle post-authentication elements (not stanzas) in namespace `ns`. Without a
    /// handler such an element closes the stream with `unsupported-stanza-type`. One module
    /// per namespace: a second registration is a programming error.
    pub fn nonza(
        &mut self,
        ns: &'static str,
        handler: impl Fn(&Ctx, &Nonza<'_>) -> Result<Option<Pending>, StreamError> + 'static,
    ) {
        assert!(
            self.nonza_handler(ns).is_none(),
            "two modules handle {ns} elements"
        );
        self.nonzas.push((ns, Rc::new(handler)));
    }

    /// Receive the answers to the IQ requests this module sends: a `result` or `error` whose
    /// id starts with `prefix`, addressed to the server or to a local account's bare JID, goes
    /// to `handler` on the addressee's home shard (where a request sent from that address was
    /// sent). The prefix must be unique; the module checks that an answer is one it awaits
    /// (the id and the sender), since any client can send any id.
    pub fn iq_responses(
        &mut self,
        prefix: &'static str,
        handler: impl Fn(&Ctx, &IqAnswer<'_>) + 'static,
    ) {
        assert!(
            !prefix.is_empty()
                && self
                    .answers
                    .iter()
                    .all(|(p, _)| !p.starts_with(prefix) && !prefix.starts_with(p)),
            "IQ answer prefix {prefix:?} overlaps another"
        );
        self.answers.push((prefix, Rc::new(handler)));
    }

    /// The handler of answers whose id is `id`, if a module awaits such ids.
    pub fn iq_answer_handler(&self, id: &str) -> Option<&IqAnswerHandler> {
        self.answers
            .iter()
            .find(|(p, _)| id.starts_with(p))
            .map(|(_, h)| h)
    }

    /// The handler of a namespace's non-stanza elements.
    pub fn nonza_handler(&self, ns: &str) -> Option<&NonzaHandler> {
        self.nonzas.iter().find(|(n, _)| *n == ns).map(|(_, h)| h)
    }

    /// Host an in-process service on its own domain (see [`hosts`]).
    pub fn service(&mut self, host: ServiceHost) {
        assert!(
            !self.services.iter().any(|s| s.domain == host.domain),
            "two services on {}",
            host.domain
        );
        self.services.push(host);
    }

    /// The in-process services.
    pub fn services(&self) -> &[ServiceHost] {
        &self.services
    }

    /// Advertise a disco feature of the server (XEP-0030 §3.1).
    pub fn server_feature(&mut self, var: &'static str) {
        if !self.server_features.contains(&var) {
            self.server_features.push(var);
        }
    }

    /// Advertise a disco feature of every account.
    pub fn account_feature(&mut self, var: &'static str) {
        if !self.account_features.contains(&var) {
            self.account_features.push(var);
        }
    }

    /// Add an identity of every account's bare JID (next to `account/registered`).
    pub fn account_identity(&mut self, identity: Identity) {
        if !self.account_identities.contains(&identity) {
            self.account_identities.push(identity);
        }
    }

    /// Contribute to accounts' disco#items (see [`AccountItems`]).
    pub fn account_items(
        &mut self,
        f: impl Fn(&Ctx, &IqRequest<'_>, Option<&str>) -> Result<Option<Vec<Element>>, StanzaError>
            + 'static,
    ) {
        self.account_items.push(Rc::new(f));
    }

    /// Add a server identity.
    pub fn server_identity(&mut self, identity: Identity) {
        if !self.server_identities.contains(&identity) {
            self.server_identities.push(identity);
        }
    }

    /// Add a stream feature offered after authentication (next to bind).
    pub fn stream_feature(&mut self, feature: Element) {
        feature.write_to(&mut self.stream_features, crate::xmpp::ns::STREAMS);
    }

    /// The handler for a request, if any module handles it.
    pub fn iq_handler(&self, scope: Scope, ty: IqType, ns: &str, name: &str) -> Option<&IqHandler> {
        self.iq
            .iter()
            .find(|e| e.scope == scope && e.ty == ty && e.ns == ns && e.name == name)
            .map(|e| &e.handler)
    }

    /// Server disco features, sorted.
    pub fn server_features(&self) -> Vec<&'static str> {
        let mut v = self.server_features.clone();
        v.sort_unstable();
        v
    }

    /// Account disco features, sorted.
    pub fn account_features(&self) -> Vec<&'static str> {
        let mut v = self.account_features.clone();
        v.sort_unstable();
        v
    }

    /// Server identities.
    pub fn server_identities(&self) -> &[Identity] {
        &self.server_identities
    }

    /// Account identities added by modules.
    pub fn account_identities(&self) -> &[Identity] {
        &self.account_identities
    }

    /// The modules' contributions to accounts' disco#items.
    pub fn account_item_providers(&self) -> &[AccountItems] {
        &self.account_items
    }

    /// Post-authentication stream features added by modules, serialized inside
    /// `<stream:features>`.
    pub fn stream_features(&self) -> &[u8] {
        &self.stream_features
    }
}

/// Run futures one after another as one future (None when there are none).
pub fn join(mut pending: Vec<Pending>) -> Option<Pending> {
    match pending.len() {
        0 => None,
        1 => pending.pop(),
        _ => Some(Box::pin(async move {
            for p in pending {
                p.await;
            }
        })),
    }
}
