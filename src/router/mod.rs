//! Where a stanza goes (RFC 6120 §10, RFC 6121 §8.5): the server itself, an account homed on
//! this shard, an account homed on another shard (one hop over the mesh), or a remote domain.
//!
//! Routed stanzas travel as the bytes they arrived in, stamped with the sender's full JID; only
//! stanzas the server answers itself are parsed into an element tree.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::{Config, ConflictPolicy};
use crate::core::sessions;
use crate::core::{
    ClientHandle, ClientPresence, Ctx, Inbound, IqReply, IqRequest, Pending, Registry, Scope,
    Services, Sessions, Undeliverable,
};
use crate::shard::{shard_of, BatchEntry, Outbox};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::Jid;
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, Kind, MessageType, PresenceType, StanzaType};

/// What delivery to a local addressee decided.
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
    shards: usize,
    client_ns: StreamNs,
    me: std::rc::Weak<Router>,
}

/// A validated stanza from a bound local client, ready to route.
pub struct FromClient<'a> {
    /// The sender's bound full JID.
    pub from: &'a Jid,
    /// Kind and type.
    pub ty: StanzaType,
    /// The parsed `to`, if any.
    pub to: Option<&'a Jid>,
    /// The stanza id.
    pub id: Option<&'a str>,
    /// The stanza stamped with `from` (and `to`/`xml:lang` where added).
    pub stamped: &'a [u8],
}

impl Router {
    /// A router for shard `outbox.me()`.
    pub fn new(
        config: Arc<Config>,
        storage: xmppd_storage::Storage,
        registry: Registry,
        outbox: Rc<Outbox>,
    ) -> Rc<Router> {
        let shards = outbox.links().shards();
        Rc::new_cyclic(|me| Router {
            config,
            storage,
            registry,
            sessions: RefCell::new(Sessions::default()),
            outbox,
            shards,
            client_ns: StreamNs::new(ns::CLIENT),
            me: me.clone(),
        })
    }

    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.outbox.me()
    }

    /// The home shard of a bare JID.
    pub fn home_of(&self, bare: &str) -> usize {
        shard_of(bare, self.shards)
    }

    fn ctx(self: &Rc<Self>) -> Ctx {
        Ctx(self.clone())
    }

    /// Route a stanza from a bound client homed on this shard (RFC 6120 §10.3–10.5).
    pub fn from_client(self: &Rc<Self>, s: FromClient<'_>) -> Option<Pending> {
        let from = s.from;
        match (s.ty, s.to) {
            // RFC 6121 §4: presence is the presence module's (broadcast, directed,
            // subscriptions); without one, directed presence is routed and broadcasts dropped.
            (StanzaType::Presence(pt), to) => match self.registry.presence_out() {
                Some(hook) => hook(
                    &self.ctx(),
                    &ClientPresence {
                        from,
                        ty: pt,
                        to,
                        id: s.id,
                        stanza: s.stamped,
                    },
                ),
                None => to.and_then(|to| self.route(s.ty, to.as_str(), from.as_str(), s.stamped)),
            },
            // §10.3.3: an IQ with no `to` is handled on behalf of the sender's account.
            (StanzaType::Iq(it), None) => {
                let bare = from.to_bare();
                self.server_iq(it, Scope::Account, from, &bare, s.id, s.stamped)
            }
            // §10.3.1: a message with no `to` goes to the sender's bare JID (the c2s layer has
            // stamped that `to`).
            (ty, None) => {
                let bare = from.to_bare();
                self.route(ty, bare.as_str(), from.as_str(), s.stamped)
            }
            (ty, Some(to)) => {
                if to.local().is_none() && self.config.serves(to.domain()) {
                    return self.to_server(ty, from, to, s.id, s.stamped);
                }
                self.route(ty, to.as_str(), from.as_str(), s.stamped)
            }
        }
    }

    /// Route a stanza to a JID (`to` normalized): deliver here, hand it to the home shard,
    /// or bounce it for a domain this server cannot reach.
    pub fn route(
        self: &Rc<Self>,
        ty: StanzaType,
        to: &str,
        from: &str,
        stanza: &[u8],
    ) -> Option<Pending> {
        let bare = bare_of(to);
        let domain = bare.rsplit_once('@').map_or(bare, |(_, d)| d);
        if !self.config.serves(domain) {
            // No server-to-server yet: every remote domain is unreachable (§10.4.3).
            self.bounce_stanza(ty, stanza, from, to, StanzaCondition::RemoteServerNotFound);
            return None;
        }
        if !bare.contains('@') {
            // The server itself, as the addressee of a generated stanza: nothing to deliver.
            return None;
        }
        let home = self.home_of(bare);
        if home == self.shard() {
            self.deliver(ty, to, from, stanza)
        } else {
            self.outbox
                .push(home, ty, to, from, |o| o.extend_from_slice(stanza));
            None
        }
    }

    /// Route a server-generated stanza written by `write` (error replies, IQ results).
    pub fn route_generated(
        self: &Rc<Self>,
        ty: StanzaType,
        to: &str,
        from: &str,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut buf = sessions::take_buffer();
        write(&mut buf);
        if let Some(p) = self.route(ty, to, from, &buf) {
            glommio::spawn_local(p).detach();
        }
        sessions::give_buffer(buf);
    }

    /// Route one stanza to many JIDs, writing its bytes once per destination shard.
    pub fn fanout_stanza(self: &Rc<Self>, ty: StanzaType, tos: &[&str], from: &str, stanza: &[u8]) {
        let mut remote: Vec<Vec<&str>> = vec![Vec::new(); self.shards];
        for to in tos {
            let bare = bare_of(to);
            if bare.contains('@')
                && self
                    .config
                    .serves(bare.rsplit_once('@').map_or("", |(_, d)| d))
            {
                let home = self.home_of(bare);
                if home != self.shard() {
                    remote[home].push(to);
                    continue;
                }
            }
            if let Some(p) = self.route(ty, to, from, stanza) {
                glommio::spawn_local(p).detach();
            }
        }
        for (dst, tos) in remote.into_iter().enumerate() {
            if !tos.is_empty() {
                self.outbox.push_many(dst, ty, &tos, from, stanza);
            }
        }
    }

    /// Deliver a batch that arrived from another shard.
    pub fn deliver_entry(self: &Rc<Self>, e: &BatchEntry<'_>) {
        if let Some(p) = self.deliver(e.ty, e.to, e.from, e.stanza) {
            glommio::spawn_local(p).detach();
        }
    }

    /// Deliver a stanza to a JID homed on this shard (RFC 6121 §8.5).
    pub fn deliver(
        self: &Rc<Self>,
        ty: StanzaType,
        to: &str,
        from: &str,
        stanza: &[u8],
    ) -> Option<Pending> {
        let inbound = Inbound {
            ty,
            to,
            from,
            stanza,
        };
        if let (StanzaType::Presence(_), Some(hook)) = (ty, self.registry.presence_in()) {
            return hook(&self.ctx(), &inbound);
        }
        match self.deliver_to_sessions(ty, to, from, stanza) {
            Delivery::Done => None,
            Delivery::Congested => {
                // Never an error answering an IQ response (bounce_stanza skips errors).
                if !matches!(ty, StanzaType::Iq(IqType::Result)) {
                    self.bounce_stanza(ty, stanza, from, to, StanzaCondition::ResourceConstraint);
                }
                None
            }
            Delivery::Unavailable => {
                self.bounce_stanza(ty, stanza, from, to, StanzaCondition::ServiceUnavailable);
                None
            }
            Delivery::NoResource => {
                // IM-MSG-07: offline storage if a module takes it, else the sender learns that
                // it was not delivered. Never stored for a missing account (CORE-STANZA-19).
                match self.account_exists(bare_of(to)) {
                    Ok(true) => {
                        if let Some(hook) = self.registry.undeliverable() {
                            if let Undeliverable::Taken(p) = hook(&self.ctx(), &inbound) {
                                return p;
                            }
                        }
                    }
                    Ok(false) => {}
                    // Not known to be missing: the sender learns the server failed, not that
                    // the account does not exist (issue 8).
                    Err(e) => {
                        let err = crate::core::storage_failure("account lookup", bare_of(to), &e);
                        let id = self.id_of(stanza);
                        self.bounce(ty, id.as_deref(), from, to, err);
                        return None;
                    }
                }
                self.bounce_stanza(ty, stanza, from, to, StanzaCondition::ServiceUnavailable);
                None
            }
            Delivery::ForAccount(it) => {
                let (Ok(from_jid), Ok(to_jid)) = (Jid::parse(from), Jid::parse(to)) else {
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

    /// The RFC 6121 §8.5 decision for a local addressee, delivering to connected resources.
    /// Stanzas go through [`ClientHandle::offer`]: a recipient whose queue is full refuses
    /// them (`Congested`) instead of being disconnected. `from` is the sender ("" if unknown).
    fn deliver_to_sessions(&self, ty: StanzaType, to: &str, from: &str, stanza: &[u8]) -> Delivery {
        let (bare, resource) = split_jid(to);
        let sessions = self.sessions.borrow();
        let account = sessions.account(bare);
        let full = resource.and_then(|r| account.and_then(|a| a.get(r)));
        match ty {
            StanzaType::Iq(it) => match (full, resource) {
                (Some(r), _) => match r.handle.offer(from, stanza) {
                    Ok(()) => Delivery::Done,
                    Err(_) => Delivery::Congested,
                },
                // §8.5.3.2.3 / CORE-STANZA-18: no such resource.
                (None, Some(_)) if ty.is_request() => Delivery::Unavailable,
                (None, Some(_)) => Delivery::Done,
                // §8.5.2.1.3 / IM-IQ-01: the server answers for the account.
                (None, None) => Delivery::ForAccount(it),
            },
            StanzaType::Message(mt) => {
                if let Some(r) = full {
                    // §8.5.3.1 / IM-MSG-01: whatever its priority or availability.
                    return match r.handle.offer(from, stanza) {
                        Ok(()) => Delivery::Done,
                        Err(_) => Delivery::Congested,
                    };
                }
                match mt {
                    MessageType::Error => Delivery::Done,
                    // IM-MSG-05
                    MessageType::Groupchat => Delivery::Unavailable,
                    // §8.5.3.2.1: a headline to a missing resource is dropped.
                    MessageType::Headline if resource.is_some() => Delivery::Done,
                    // IM-MSG-04: every non-negative resource, else dropped.
                    MessageType::Headline => {
                        for r in account.into_iter().flat_map(|a| a.non_negative()) {
                            // Headlines are fire-and-forget: a full queue drops its copy.
                            let _ = r.handle.offer(from, stanza);
                        }
                        Delivery::Done
                    }
                    // IM-MSG-02/08: chat (and, as RFC 3921 did, normal) to a missing resource
                    // is handled as if sent to the bare JID.
                    MessageType::Normal | MessageType::Chat => {
                        let (mut delivered, mut congested) = (false, false);
                        for r in account.into_iter().flat_map(|a| a.best()) {
                            match r.handle.offer(from, stanza) {
                                Ok(()) => delivered = true,
                                Err(_) => congested = true,
                            }
                        }
                        match (delivered, congested) {
                            (true, _) => Delivery::Done,
                            (false, true) => Delivery::Congested,
                            (false, false) => Delivery::NoResource,
                        }
                    }
                }
            }
            StanzaType::Presence(pt) => {
                match (pt, resource) {
                    // IM-PRES-14: to a full JID, that resource only (if connected).
                    (
                        PresenceType::Available | PresenceType::Unavailable | PresenceType::Error,
                        Some(_),
                    ) => {
                        if let Some(r) = full {
                            // Presence is state, not bounced: a full queue drops it.
                            let _ = r.handle.offer(from, stanza);
                        }
                    }
                    // IM-PRES-18: error presence is never broadcast.
                    (PresenceType::Error, None) | (PresenceType::Probe, _) => {}
                    // IM-PRES-14/15 and IM-SUB-16: every available resource, else dropped.
                    _ => {
                        for r in account.into_iter().flat_map(|a| a.available()) {
                            let _ = r.handle.offer(from, stanza);
                        }
                    }
                }
                Delivery::Done
            }
        }
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
                    ty,
                    id,
                    from.as_str(),
                    to.as_str(),
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
            // A client's answer to a request the server sent it (offline delivery
            // acknowledgements, core::sessions): it has read everything before that request.
            if let Some(id) = id {
                let sessions = self.sessions.borrow();
                let sender = from
                    .resource()
                    .and_then(|r| sessions.account(from.bare_str())?.get(r));
                if let Some(r) = sender {
                    r.handle.answered(id);
                }
            }
            return None;
        }
        let ty = StanzaType::Iq(it);
        let id = id?;
        let el = xml::parse_element(stanza, &self.client_ns, &self.config.xml_limits()).ok();
        let Some(payload) = el.as_ref().and_then(|el| el.elements().next()) else {
            self.bounce(
                ty,
                Some(id),
                from.as_str(),
                to.as_str(),
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
                h(&self.ctx(), &req)
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
                    router.send_iq_reply(reply, &id, &from, &reply_from);
                }))
            }
            reply => {
                self.send_iq_reply(reply, id, from.as_str(), &reply_from);
                None
            }
        }
    }

    fn send_iq_reply(self: &Rc<Self>, reply: IqReply, id: &str, to: &str, from: &str) {
        match reply {
            IqReply::Result(payload) => {
                self.route_generated(StanzaType::Iq(IqType::Result), to, from, |out| {
                    write_iq_result(out, id, to, from, payload.as_ref());
                });
            }
            IqReply::Error(err) => {
                self.bounce(StanzaType::Iq(IqType::Set), Some(id), to, from, err);
            }
            IqReply::Later(_) => {}
        }
    }

    /// Send `err` to `to` about a stanza of type `ty` that `to` sent to `from`
    /// (never for an error stanza: CORE-STANZA-09).
    pub fn bounce(
        self: &Rc<Self>,
        ty: StanzaType,
        id: Option<&str>,
        to: &str,
        from: &str,
        err: StanzaError,
    ) {
        if ty.is_error() {
            return;
        }
        let kind = ty.kind();
        let err_ty = match kind {
            Kind::Message => StanzaType::Message(MessageType::Error),
            Kind::Presence => StanzaType::Presence(PresenceType::Error),
            Kind::Iq => StanzaType::Iq(IqType::Error),
        };
        let legacy = self.config.legacy_error_codes;
        self.route_generated(err_ty, to, from, |out| {
            err.write_reply(kind.name(), id, Some(to), Some(from), legacy, out);
        });
    }

    fn bounce_stanza(
        self: &Rc<Self>,
        ty: StanzaType,
        stanza: &[u8],
        sender: &str,
        addressee: &str,
        condition: StanzaCondition,
    ) {
        if ty.is_error() {
            return;
        }
        let id = self.id_of(stanza);
        self.bounce(
            ty,
            id.as_deref(),
            sender,
            addressee,
            StanzaError::new(condition),
        );
    }

    fn id_of(&self, stanza: &[u8]) -> Option<String> {
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
    /// here and now, so its contacts learn it is gone.
    pub fn bind(
        self: &Rc<Self>,
        user: &Jid,
        requested: Option<&str>,
        handle: Rc<ClientHandle>,
    ) -> Result<Jid, StanzaError> {
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
    ) -> Result<Jid, StanzaError> {
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
    ) -> Result<Jid, StanzaError> {
        let (jid, displaced) = self.sessions.borrow_mut().bind(
            user,
            requested,
            handle,
            policy,
            self.config.max_resources,
        )?;
        if let Some(old) = displaced {
            old.handle.request_close(StreamError::with_text(
                StreamCondition::Conflict,
                "replaced by a new session",
            ));
            self.registry.session_ended(&self.ctx(), &old);
        }
        Ok(jid)
    }

    /// A resource went away (stream closed or connection lost): modules learn it (RFC 6121
    /// §4.5.2 unavailable presence, IM-PRES-10). A displaced session finds itself already gone.
    pub fn session_ended(self: &Rc<Self>, jid: &Jid, handle: &Rc<ClientHandle>) {
        let removed = self.sessions.borrow_mut().unbind(jid, handle);
        if let Some(removed) = removed {
            self.registry.session_ended(&self.ctx(), &removed);
        }
    }
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

    fn route(&self, ty: StanzaType, to: &str, from: &str, stanza: &[u8]) {
        if let Some(me) = self.me.upgrade() {
            if let Some(p) = me.route(ty, to, from, stanza) {
                glommio::spawn_local(p).detach();
            }
        }
    }

    fn fanout(&self, ty: StanzaType, tos: &[&str], from: &str, stanza: &[u8]) {
        if let Some(me) = self.me.upgrade() {
            me.fanout_stanza(ty, tos, from, stanza);
        }
    }

    fn bounce(&self, ty: StanzaType, id: Option<&str>, to: &str, from: &str, err: StanzaError) {
        if let Some(me) = self.me.upgrade() {
            me.bounce(ty, id, to, from, err);
        }
    }

    fn account_exists(&self, bare: &str) -> Result<bool, xmppd_storage::StorageError> {
        Router::account_exists(self, bare)
    }

    fn deliver_to_sessions(&self, ty: StanzaType, to: &str, stanza: &[u8]) {
        // Only presence and messages reach here from modules; IQ decisions are the router's.
        // The sender is not passed here (only inbound presence from contacts comes this way):
        // "" counts as another entity under the send-queue policy.
        let _ = Router::deliver_to_sessions(self, ty, to, "", stanza);
    }
}

/// The bare part of a normalized JID string.
pub fn bare_of(jid: &str) -> &str {
    split_jid(jid).0
}

/// Split a normalized JID string into bare part and resource.
pub fn split_jid(jid: &str) -> (&str, Option<&str>) {
    match jid.split_once('/') {
        Some((bare, res)) => (bare, Some(res)),
        None => (jid, None),
    }
}

/// Write `<iq type='result' id to from>payload</iq>`.
pub fn write_iq_result(
    out: &mut Vec<u8>,
    id: &str,
    to: &str,
    from: &str,
    payload: Option<&Element>,
) {
    out.extend_from_slice(b"<iq type='result' id='");
    xml::escape_attr(id, out);
    out.extend_from_slice(b"' to='");
    xml::escape_attr(to, out);
    out.extend_from_slice(b"' from='");
    xml::escape_attr(from, out);
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
mod tests {
    use super::*;

    #[test]
    fn split_normalized_jids() {
        assert_eq!(split_jid("a@d/r/x"), ("a@d", Some("r/x")));
        assert_eq!(split_jid("a@d"), ("a@d", None));
        assert_eq!(bare_of("d/r"), "d");
    }
}
