//! The module registry: IQ handlers keyed by (addressee, type, payload namespace and name), the
//! disco identities and features, and the stream features modules add after authentication.
//!
//! Modules register themselves (`modules/*.rs`, each with a `register` function); `core` never
//! names a module, and modules never call each other. Every shard builds its own registry from
//! the same list of register functions, so handlers can hold shard-local (`Rc`) state.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::config::Config;
use crate::xml::Element;
use crate::xmpp::error::StanzaError;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::IqType;

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

/// What a handler may use.
pub struct Ctx<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// The storage.
    pub storage: &'a xmppd_storage::Storage,
    /// The registry (for disco).
    pub registry: &'a Registry,
}

/// An IQ handler.
pub type IqHandler = Rc<dyn Fn(&Ctx<'_>, &IqRequest<'_>) -> IqReply>;

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
        handler: impl Fn(&Ctx<'_>, &IqRequest<'_>) -> IqReply + 'static,
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

    /// Post-authentication stream features added by modules.
    pub fn stream_features(&self) -> &[Element] {
        &self.stream_features
    }
}
