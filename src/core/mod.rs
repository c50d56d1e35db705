//! What modules build on: the per-shard registry (IQ handlers keyed by addressee, type and
//! payload; disco identities and features; stream features; hook points for presence and
//! undeliverable messages), the session table, and [`Services`], the router's capabilities
//! as modules may use them.
//!
//! Modules register themselves (`modules/*.rs`, each with a `register` function); `core` never
//! names a module, and modules never call each other: what they share goes through the
//! registry. Every shard builds its own registry from the same list of register functions, so
//! handlers hold shard-local (`Rc`) state.

pub mod sessions;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::config::Config;
use crate::xml::Element;
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::{IqType, PresenceType, StanzaType};

pub use sessions::{ClientHandle, Sessions};

/// Asynchronous work a stanza started (storage, mostly); the connection that sent it awaits
/// it before reading on, which keeps order and bounds the work one client can start.
pub type Pending = Pin<Box<dyn Future<Output = ()>>>;

/// The router's capabilities as modules see them. Implemented by the shard's router; a
/// handle is cheap to clone into futures.
pub trait Services {
    /// The configuration.
    fn config(&self) -> &Config;
    /// The storage.
    fn storage(&self) -> &xmppd_storage::Storage;
    /// The registry (modules, features, hooks).
    fn registry(&self) -> &Registry;
    /// The shard's session table.
    fn sessions(&self) -> &RefCell<Sessions>;
    /// Route a stanza to a JID (`to`, normalized), from `from`: delivered here, handed to the
    /// home shard, or bounced for an unreachable domain. The stanza's own `from`/`to`
    /// attributes are what the recipient sees.
    fn route(&self, ty: StanzaType, to: &str, from: &str, stanza: &[u8]);
    /// Route the same stanza to many JIDs: one copy of the bytes per destination shard.
    fn fanout(&self, ty: StanzaType, tos: &[&str], from: &str, stanza: &[u8]);
    /// Send a stanza error about a stanza of type `ty` with `id` back to `to`, from `from`
    /// (never for an error stanza).
    fn bounce(&self, ty: StanzaType, id: Option<&str>, to: &str, from: &str, err: StanzaError);
    /// Whether the local account exists. A storage failure is an `Err`, never "no": callers
    /// must not turn it into a statement about the account (`service-unavailable`,
    /// `unsubscribed`); see [`storage_failure`].
    fn account_exists(&self, bare: &str) -> Result<bool, xmppd_storage::StorageError>;
    /// Deliver a message or presence to the connected resources of a local account by the
    /// RFC 6121 §8.5 rules, without the hooks (what a module does after its own checks).
    fn deliver_to_sessions(&self, ty: StanzaType, to: &str, stanza: &[u8]);
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

/// Presence a bound client sent (stamped with its full JID).
pub struct ClientPresence<'a> {
    /// The sender's full JID.
    pub from: &'a Jid,
    /// The presence type.
    pub ty: PresenceType,
    /// The parsed `to`, if any (a local or remote JID).
    pub to: Option<&'a Jid>,
    /// The stanza id, if any.
    pub id: Option<&'a str>,
    /// The stanza, stamped with `from`.
    pub stanza: &'a [u8],
}

/// A stanza arriving for a local account on its home shard.
pub struct Inbound<'a> {
    /// Kind and type.
    pub ty: StanzaType,
    /// The addressee (normalized, bare or full).
    pub to: &'a str,
    /// The sender (normalized).
    pub from: &'a str,
    /// The stanza as routed.
    pub stanza: &'a [u8],
}

/// What the undeliverable-message hook did.
pub enum Undeliverable {
    /// Kept (or deliberately dropped); the future completes once it is durable.
    Taken(Option<Pending>),
    /// Not taken: the router bounces `service-unavailable`.
    Refused,
}

/// Handles presence from a bound client.
pub type PresenceOutHook = Rc<dyn Fn(&Ctx, &ClientPresence<'_>) -> Option<Pending>>;
/// Handles presence for a local account on its home shard.
pub type PresenceInHook = Rc<dyn Fn(&Ctx, &Inbound<'_>) -> Option<Pending>>;
/// Takes a normal or chat message for an account with no resource to deliver it to.
pub type UndeliverableHook = Rc<dyn Fn(&Ctx, &Inbound<'_>) -> Undeliverable>;
/// A resource became available (initial presence with this priority).
pub type AvailableHook = Rc<dyn Fn(&Ctx, &Jid, i8) -> Option<Pending>>;
/// A bound resource went away (it is no longer in the session table).
pub type SessionEndedHook = Rc<dyn Fn(&Ctx, &sessions::Resource)>;

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
    stream_features: Vec<Element>,
    modules: Vec<&'static str>,
    presence_out: Option<PresenceOutHook>,
    presence_in: Option<PresenceInHook>,
    undeliverable: Option<UndeliverableHook>,
    available: Vec<AvailableHook>,
    session_ended: Vec<SessionEndedHook>,
}

/// A module's registration function.
pub type RegisterFn = fn(&mut Registry, &Config);

impl Registry {
    /// Build a registry from register functions.
    pub fn build(modules: &[RegisterFn], config: &Config) -> Registry {
        let mut r = Registry::default();
        for register in modules {
            register(&mut r, config);
        }
        r
    }

    /// Record a module's name (for logs and `check`).
    pub fn module(&mut self, name: &'static str) {
        self.modules.push(name);
    }

    /// Names of the registered modules.
    pub fn modules(&self) -> &[&'static str] {
        &self.modules
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

    /// Add a server identity.
    pub fn server_identity(&mut self, identity: Identity) {
        if !self.server_identities.contains(&identity) {
            self.server_identities.push(identity);
        }
    }

    /// Add a stream feature offered after authentication (next to bind).
    pub fn stream_feature(&mut self, feature: Element) {
        self.stream_features.push(feature);
    }

    /// Take over presence from clients (one module: RFC 6121 presence).
    pub fn on_presence_out(
        &mut self,
        hook: impl Fn(&Ctx, &ClientPresence<'_>) -> Option<Pending> + 'static,
    ) {
        self.presence_out = Some(Rc::new(hook));
    }

    /// Take over presence arriving for local accounts.
    pub fn on_presence_in(
        &mut self,
        hook: impl Fn(&Ctx, &Inbound<'_>) -> Option<Pending> + 'static,
    ) {
        self.presence_in = Some(Rc::new(hook));
    }

    /// Take messages that no resource can receive (offline storage).
    pub fn on_undeliverable(
        &mut self,
        hook: impl Fn(&Ctx, &Inbound<'_>) -> Undeliverable + 'static,
    ) {
        self.undeliverable = Some(Rc::new(hook));
    }

    /// Be told when a resource becomes available.
    pub fn on_available(&mut self, hook: impl Fn(&Ctx, &Jid, i8) -> Option<Pending> + 'static) {
        self.available.push(Rc::new(hook));
    }

    /// Be told when a bound resource goes away.
    pub fn on_session_ended(&mut self, hook: impl Fn(&Ctx, &sessions::Resource) + 'static) {
        self.session_ended.push(Rc::new(hook));
    }

    /// The handler for a request, if any module handles it.
    pub fn iq_handler(&self, scope: Scope, ty: IqType, ns: &str, name: &str) -> Option<&IqHandler> {
        self.iq
            .iter()
            .find(|e| e.scope == scope && e.ty == ty && e.ns == ns && e.name == name)
            .map(|e| &e.handler)
    }

    /// The client-presence hook.
    pub fn presence_out(&self) -> Option<&PresenceOutHook> {
        self.presence_out.as_ref()
    }

    /// The inbound-presence hook.
    pub fn presence_in(&self) -> Option<&PresenceInHook> {
        self.presence_in.as_ref()
    }

    /// The undeliverable-message hook.
    pub fn undeliverable(&self) -> Option<&UndeliverableHook> {
        self.undeliverable.as_ref()
    }

    /// Run the availability hooks; the returned futures all complete before this one does.
    pub fn available(&self, ctx: &Ctx, jid: &Jid, priority: i8) -> Option<Pending> {
        let pending: Vec<Pending> = self
            .available
            .iter()
            .filter_map(|h| h(ctx, jid, priority))
            .collect();
        join(pending)
    }

    /// Run the session-ended hooks.
    pub fn session_ended(&self, ctx: &Ctx, resource: &sessions::Resource) {
        for h in &self.session_ended {
            h(ctx, resource);
        }
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

    /// Post-authentication stream features added by modules.
    pub fn stream_features(&self) -> &[Element] {
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
