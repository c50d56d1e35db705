//! The client session after negotiation, without I/O: the stanza gate, resource binding,
//! stamping (`from`, `to`, `xml:lang`), routing, non-stanza elements, and the end of the
//! session. Every transport drives the same type: the TCP connection (`c2s::conn`) today,
//! BOSH and WebSocket next. A transport keeps its socket, TLS and buffers, frames its input,
//! drives `stream::Negotiator` until it is authenticated, and then hands each element to
//! [`Session::element`]; what the session answers goes into the connection's
//! [`ClientHandle`] queue, and what it starts comes back as a [`Pending`] for the transport
//! to await before it reads on.
//!
//! The gate's decision for a stanza is [`gate`], a pure function tested as a table.

use std::rc::Rc;

use crate::core::{sessions, ClientHandle, FromClient, Nonza, Pending};
use crate::router::Router;
use crate::xml::{self, StanzaHead, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::{resourceprep, Jid};
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, Kind, StanzaType};

/// What the gate knows about a stanza on an authenticated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateInput {
    /// A resource is bound.
    pub bound: bool,
    /// The parsed type (`Err` for an undefined one).
    pub ty: Result<StanzaType, ()>,
    /// It has an `id`.
    pub has_id: bool,
    /// Its number of child elements.
    pub children: usize,
    /// Its first child is `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>`.
    pub bind_child: bool,
    /// What its `from` says.
    pub from: Claim,
    /// What its `to` says.
    pub to: Claim,
}

/// An address attribute, as far as the gate cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Absent.
    Absent,
    /// A valid JID (for `from`: the bound one or its bare JID).
    Valid,
    /// Malformed (for `from`: anything but the bound JID or its bare JID).
    Invalid,
}

/// What the session does with a stanza (RFC 6120 §7, §8, §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Bind a resource.
    Bind,
    /// Close the stream with this error.
    Close(StreamCondition, &'static str),
    /// Answer with a stanza error (never to an error: the caller checks nothing more).
    Reply(StanzaCondition, &'static str),
    /// Drop it without an answer.
    Drop,
    /// Stamp it and route it.
    Route,
}

/// The gate, in the order its checks apply.
pub fn gate(g: GateInput) -> Gate {
    let is_bind = g.ty == Ok(StanzaType::Iq(IqType::Set)) && g.bind_child;
    if !g.bound {
        // CORE-STREAM-15: only resource binding before a resource is bound.
        return if is_bind {
            Gate::Bind
        } else {
            Gate::Close(StreamCondition::NotAuthorized, "bind a resource first")
        };
    }
    let Ok(ty) = g.ty else {
        // CORE-STANZA-06, IM-PRES-12: an undefined type.
        return Gate::Reply(StanzaCondition::BadRequest, "unknown type");
    };
    if let StanzaType::Iq(it) = ty {
        if !g.has_id {
            // CORE-STANZA-06: an IQ must carry an id; a response without one is dropped.
            return if ty.is_request() {
                Gate::Reply(StanzaCondition::BadRequest, "missing id")
            } else {
                Gate::Drop
            };
        }
        // CORE-STANZA-05: exactly one payload in a request.
        if matches!(it, IqType::Get | IqType::Set) && g.children != 1 {
            return Gate::Reply(
                StanzaCondition::BadRequest,
                "an IQ request carries exactly one payload",
            );
        }
        // CORE-BIND-10: one resource per stream.
        if is_bind {
            return Gate::Reply(StanzaCondition::NotAllowed, "a resource is already bound");
        }
    }
    // CORE-STANZA-01/02: `from` is ours to set; another identity closes the stream.
    if g.from == Claim::Invalid {
        return Gate::Close(
            StreamCondition::InvalidFrom,
            "from does not match the bound JID",
        );
    }
    // CORE-STANZA-11
    if g.to == Claim::Invalid {
        return if ty.is_error() {
            Gate::Drop
        } else {
            Gate::Reply(StanzaCondition::JidMalformed, "")
        };
    }
    Gate::Route
}

/// CORE-STREAM-15: a stanza before authentication closes the stream, except an XEP-0078
/// request, which the negotiator answers (None: hand it to the negotiator).
pub fn before_auth(head: &StanzaHead<'_>) -> Option<StreamError> {
    let is_stanza = head.ns == ns::CLIENT && Kind::from_name(head.name).is_some();
    (is_stanza && !crate::stream::iqauth::is_request(head))
        .then(|| StreamError::with_text(StreamCondition::NotAuthorized, "authenticate first"))
}

/// The stream around an element: what the session needs from the transport's framer and
/// negotiator.
pub struct Stream<'a> {
    /// The authenticated account (bare).
    pub user: &'a Jid,
    /// The stream's `xml:lang`, if any.
    pub lang: Option<&'a str>,
    /// The namespace context of the stream header (prefixes a stanza may rely on).
    pub ns: &'a StreamNs,
    /// The XML limits.
    pub limits: &'a xml::Limits,
}

/// One client's session on the account's home shard.
pub struct Session {
    router: Rc<Router>,
    handle: Rc<ClientHandle>,
    bound: Option<Jid>,
}

impl Session {
    /// A session writing to `handle`.
    pub fn new(router: Rc<Router>, handle: Rc<ClientHandle>) -> Session {
        Session {
            router,
            handle,
            bound: None,
        }
    }

    /// The bound full JID.
    pub fn bound(&self) -> Option<&Jid> {
        self.bound.as_ref()
    }

    /// An element on an authenticated stream (already scanned into `head`): a stanza through
    /// the gate, or a non-stanza element for the module that handles its namespace. An
    /// `Err` closes the stream.
    pub fn element(
        &mut self,
        s: &Stream<'_>,
        raw: &[u8],
        head: &StanzaHead<'_>,
    ) -> Result<Option<Pending>, StreamError> {
        let kind = (head.ns == ns::CLIENT)
            .then(|| Kind::from_name(head.name))
            .flatten();
        match kind {
            Some(kind) => self.stanza(s, kind, head),
            None => self.nonza(s, raw, head),
        }
    }

    fn stanza(
        &mut self,
        s: &Stream<'_>,
        kind: Kind,
        head: &StanzaHead<'_>,
    ) -> Result<Option<Pending>, StreamError> {
        let id = head.attr("id");
        let ty = StanzaType::parse(kind, head.attr("type").as_deref());
        let to = head.attr("to").map(|t| Jid::parse(&t));
        let from = match (&self.bound, head.attr("from")) {
            (_, None) => Claim::Absent,
            (Some(bound), Some(claimed)) => match Jid::parse(&claimed) {
                Ok(j) if &j == bound || (j.is_bare() && j.bare_str() == bound.bare_str()) => {
                    Claim::Valid
                }
                _ => Claim::Invalid,
            },
            (None, Some(_)) => Claim::Absent,
        };
        let decision = gate(GateInput {
            bound: self.bound.is_some(),
            ty,
            has_id: id.is_some(),
            children: head.child_elements as usize,
            bind_child: head.first_child == Some((ns::BIND, "bind")),
            from,
            to: match &to {
                None => Claim::Absent,
                Some(Ok(_)) => Claim::Valid,
                Some(Err(_)) => Claim::Invalid,
            },
        });
        match decision {
            Gate::Bind => {
                // Issue 8: an account change since the credentials were checked ends the
                // stream.
                check_login(&self.router.storage, s.user, self.handle.auth_seq.get())?;
                Ok(self.bind(s, head, id.as_deref()))
            }
            Gate::Close(cond, text) => Err(StreamError::with_text(cond, text)),
            Gate::Reply(cond, text) => {
                self.reply_error(kind, id.as_deref(), cond, text);
                Ok(None)
            }
            Gate::Drop => Ok(None),
            Gate::Route => {
                let (Some(from), Ok(ty)) = (self.bound.as_ref(), ty) else {
                    return Ok(None);
                };
                let to = to.and_then(Result::ok);
                let mut stamped = sessions::take_buffer();
                stamp(s, head, from, ty, to.is_none(), &mut stamped)?;
                let pending = self.router.from_client(FromClient {
                    from,
                    handle: &self.handle,
                    ty,
                    to: to.as_ref(),
                    id: id.as_deref(),
                    stamped: &stamped,
                });
                sessions::give_buffer(stamped);
                Ok(pending)
            }
        }
    }

    /// A post-authentication element that is not a stanza: the module that registered its
    /// namespace handles it; without one the stream closes (CORE-STREAM-20, CORE-SASL-14).
    fn nonza(
        &mut self,
        s: &Stream<'_>,
        raw: &[u8],
        head: &StanzaHead<'_>,
    ) -> Result<Option<Pending>, StreamError> {
        let router = self.router.clone();
        let Some(handler) = router.registry.nonza_handler(head.ns) else {
            return Err(StreamError::with_text(
                StreamCondition::UnsupportedStanzaType,
                format!("unexpected <{}/>", head.name),
            ));
        };
        let element = xml::parse_element(raw, s.ns, s.limits).map_err(|e| StreamError::from(&e))?;
        let nonza = Nonza {
            user: s.user,
            bound: self.bound.as_ref(),
            handle: &self.handle,
            element: &element,
        };
        handler(&crate::core::Ctx(router.clone()), &nonza)
    }

    /// RFC 6120 §7: bind a resource (CORE-BIND-02..07).
    fn bind(&mut self, s: &Stream<'_>, head: &StanzaHead<'_>, id: Option<&str>) -> Option<Pending> {
        let Some(id) = id else {
            self.reply_error(Kind::Iq, None, StanzaCondition::BadRequest, "missing id");
            return None;
        };
        let requested = xml::parse_element(head.raw.as_bytes(), s.ns, s.limits)
            .ok()
            .and_then(|iq| {
                iq.child("bind", ns::BIND)
                    .and_then(|b| b.child("resource", ns::BIND))
                    .map(|r| r.text())
            })
            .filter(|r| !r.is_empty());
        let requested = match requested.as_deref().map(resourceprep) {
            None => None,
            Some(Ok(r)) => Some(r.into_owned()),
            Some(Err(_)) => {
                // CORE-BIND-05
                let cond = StanzaCondition::BadRequest;
                self.reply_error(Kind::Iq, Some(id), cond, "invalid resource");
                return None;
            }
        };
        match self
            .router
            .bind(s.user, requested.as_deref(), self.handle.clone())
        {
            Ok((jid, pending)) => {
                self.bound_to(jid.clone());
                self.handle.send_with(|out| {
                    out.extend_from_slice(b"<iq type='result' id='");
                    xml::escape_attr(id, out);
                    out.extend_from_slice(b"'><bind xmlns='");
                    out.extend_from_slice(ns::BIND.as_bytes());
                    out.extend_from_slice(b"'><jid>");
                    xml::escape_text(jid.as_str(), out);
                    out.extend_from_slice(b"</jid></bind></iq>");
                });
                pending
            }
            Err(e) => {
                let legacy = self.router.config.legacy_error_codes;
                self.handle
                    .send_with(|out| e.write_reply("iq", Some(id), None, None, legacy, out));
                None
            }
        }
    }

    /// XEP-0078: bind exactly the resource a `jabber:iq:auth` login proved its credentials
    /// for (IQAUTH-04, -07). The negotiator writes the answer.
    pub fn bind_exact(&mut self, user: &Jid, resource: &str) -> Result<Jid, StreamErrorOr> {
        check_login(&self.router.storage, user, self.handle.auth_seq.get())
            .map_err(StreamErrorOr::Stream)?;
        match self.router.bind_exact(user, resource, self.handle.clone()) {
            Ok((jid, pending)) => {
                if let Some(p) = pending {
                    glommio::spawn_local(p).detach();
                }
                self.bound_to(jid.clone());
                Ok(jid)
            }
            Err(e) => Err(StreamErrorOr::Stanza(e)),
        }
    }

    fn bound_to(&mut self, jid: Jid) {
        tracing::debug!(jid = %jid, "bound");
        *self.handle.jid.borrow_mut() = Some(jid.clone());
        self.bound = Some(jid);
    }

    /// The session is over (stream closed, connection lost or moved): the resource leaves
    /// the session table and modules learn it.
    pub fn end(&mut self) {
        if let Some(jid) = self.bound.take() {
            self.router.session_ended(&jid, &self.handle);
        }
    }

    /// Answer the client's own stanza with an error (never an error to an error).
    fn reply_error(&self, kind: Kind, id: Option<&str>, cond: StanzaCondition, text: &str) {
        let err = if text.is_empty() {
            StanzaError::new(cond)
        } else {
            StanzaError::with_text(cond, text)
        };
        let legacy = self.router.config.legacy_error_codes;
        let to = self.bound.as_ref().map(|j| j.as_str());
        self.handle
            .send_with(|out| err.write_reply(kind.name(), id, to, None, legacy, out));
    }
}

/// Why an XEP-0078 bind failed: the stream ends, or the login is answered with an error.
#[derive(Debug)]
pub enum StreamErrorOr {
    /// The account changed since its credentials were checked.
    Stream(StreamError),
    /// The bind was refused (conflict, too many resources).
    Stanza(StanzaError),
}

/// Write the stanza as it will be routed: `from` set to the bound JID; for a message without
/// `to`, `to` set to the sender's bare JID (CORE-STANZA-14); `xml:lang` from the stream when
/// the stanza has none (CORE-STANZA-03). Extensions pass unchanged (CORE-STANZA-10).
fn stamp(
    s: &Stream<'_>,
    head: &StanzaHead<'_>,
    from: &Jid,
    ty: StanzaType,
    no_to: bool,
    out: &mut Vec<u8>,
) -> Result<(), StreamError> {
    let mut attrs: smallvec::SmallVec<[(&str, &str); 3]> =
        smallvec::smallvec![("from", from.as_str())];
    if no_to && ty.kind() == Kind::Message {
        attrs.push(("to", from.bare_str()));
    }
    if let Some(lang) = s.lang {
        if head.attr("xml:lang").is_none() {
            attrs.push(("xml:lang", lang));
        }
    }
    if head.self_contained {
        xml::write_with_attrs(head, &attrs, out);
        return Ok(());
    }
    // The stanza relies on prefixes declared on the client's stream header: re-serialize it
    // with explicit declarations so that it means the same on the recipient's stream.
    let mut el = xml::parse_element(head.raw.as_bytes(), s.ns, s.limits)
        .map_err(|e| StreamError::from(&e))?;
    for (k, v) in attrs {
        el.set_attr(k, v);
    }
    el.write_to(out, ns::CLIENT);
    Ok(())
}

/// Issue 8: the session of `user`, whose credentials were checked at revocation sequence
/// number `auth_seq`, may go on only if no revocation of the account came since (and none
/// was missed).
pub fn check_login(
    storage: &xmppd_storage::Storage,
    user: &Jid,
    auth_seq: u64,
) -> Result<(), StreamError> {
    let found = storage
        .accounts()
        .revocations_after(auth_seq)
        .map_err(|e| {
            tracing::error!(error = %e, "reading the account revocation log failed");
            StreamError::new(StreamCondition::InternalServerError)
        })?;
    if !found.complete {
        return Err(StreamError::with_text(
            StreamCondition::NotAuthorized,
            "account changes were missed; log in again",
        ));
    }
    match found.reason_for(user.bare_str()) {
        Some(reason) => Err(revoked_error(reason)),
        None => Ok(()),
    }
}

/// The stream error that ends a session whose account changed.
pub fn revoked_error(reason: xmppd_storage::RevokeReason) -> StreamError {
    use xmppd_storage::RevokeReason;
    let text = match reason {
        RevokeReason::PasswordChanged => "the account's password was changed",
        RevokeReason::Deleted => "the account was deleted",
        RevokeReason::Disabled => "the account was disabled",
    };
    StreamError::with_text(StreamCondition::NotAuthorized, text)
}

#[cfg(test)]
mod tests;
