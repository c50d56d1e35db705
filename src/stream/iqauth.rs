//! XEP-0078: Non-SASL Authentication (`jabber:iq:auth`), for clients that predate SASL.
//!
//! Sans-I/O, driven by the [`Negotiator`]: the connection hands it every `jabber:iq:auth`
//! get or set that arrives before authentication ([`is_request`]), on a 1.0 stream (which
//! lists the `http://jabber.org/features/iq-auth` feature, IQAUTH-01) or a pre-1.0 one (for
//! which it is the only way to log in). Decisions:
//!
//! - **When.** `--iq-auth tls` (the default) offers it on encrypted streams only; elsewhere a
//!   request gets `not-acceptable` "encryption required" (IQAUTH-11), and a set counts as a
//!   failed attempt like SASL's `encryption-required`. `--iq-auth on` offers it everywhere;
//!   `off` answers every request with `service-unavailable` (IQAUTH-09), on any stream, in
//!   any state before authentication.
//! - **Plaintext only, no digest.** The get returns `<username/>`, `<password/>` and
//!   `<resource/>`, for any username (it looks nothing up: IQAUTH-02, -03). `<digest/>` is
//!   SHA1(stream id ‖ password): checking it needs the password itself, and accounts store
//!   only salted SCRAM keys, from which it cannot be recovered (that is their point). So the
//!   digest is not offered, and a set with a digest and no password lacks a required field:
//!   `not-acceptable` (406), the XEP's error for missing information, with a text saying so
//!   (IQAUTH-05 cannot be met; docs/STATUS.md).
//! - **Verification is SASL PLAIN's.** A set with username, password and resource runs the
//!   PLAIN exchange ([`SaslExchange`]) on `\0username\0password`: the same SASLprep and
//!   Nodeprep, the same account lookup (its revocation sequence number included), fake keys
//!   for unknown users (the same PBKDF2 cost), PBKDF2 off the shard ([`Action::VerifyPlain`]),
//!   `account-disabled` only after the password was proven.
//! - **Binding without bind (IQAUTH-04).** Success leaves the negotiator waiting to bind
//!   ([`Negotiator::iq_auth_pending`]) and returns [`Action::Authenticated`]; the connection
//!   moves, with this negotiator and its framer as they are (no stream restart follows), to
//!   the account's home shard, binds exactly that resource there and reports the outcome
//!   ([`Negotiator::iq_auth_bound`]), which answers the login. A bind refused (`conflict`
//!   under `--resource-conflict refuse` or `rename`, since the result cannot name another
//!   resource; `resource-constraint`) leaves the stream unauthenticated, to try again.
//! - **Errors** (§3.1 examples, IQAUTH-06): wrong password, unknown user, an invalid username
//!   and a disabled account are all `not-authorized` (401; the disabled account's has a text,
//!   given only after the password was proven, as SASL's `account-disabled` is); a missing or
//!   empty username, password or resource, and an invalid resource, are `not-acceptable`
//!   (406); a resource conflict is `conflict` (409). Every `jabber:iq:auth` error carries its
//!   XEP-0086 `code` whatever `--no-legacy-error-codes` says: §5 requires servers to support
//!   both forms and the clients of this protocol read the codes (`off`'s
//!   `service-unavailable` is not a XEP-0078 answer and follows the flag). No error echoes
//!   the request (IQAUTH-10).
//! - **Limits.** Failed sets count toward `--max-auth-failures` and the per-address backoff
//!   exactly like SASL failures (a `conflict` does not: the password was right); a set while
//!   the address backs off gets `policy-violation` (wait) and checks nothing. Any SASL element
//!   on the stream before (a failed, aborted or unfinished attempt) makes a later
//!   `jabber:iq:auth` request a `policy-violation` stream error (IQAUTH-08, CORE-SERR-14).
//!   After authentication the negotiator no longer sees these requests: the session gate
//!   refuses them like any stanza before bind, and a bound session's are IQs to the server,
//!   which no module handles (`service-unavailable`).

use super::sasl::{Mechanism, SaslExchange, SaslFailure, Step};
use super::{Action, Env, Negotiator, State};
use crate::xml::{escape_attr, Element, StanzaHead};
use crate::xmpp::error::{ErrorType, StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::{resourceprep, Jid};
use crate::xmpp::ns;

/// Whether a stanza that arrived before authentication is a XEP-0078 request (an IQ get or
/// set whose payload is in `jabber:iq:auth`): the connection hands those to the negotiator
/// ([`Negotiator::on_nonza`]) instead of refusing them.
pub fn is_request(head: &StanzaHead<'_>) -> bool {
    head.ns == ns::CLIENT
        && head.name == "iq"
        && head.first_child.map(|(ns, _)| ns) == Some(ns::IQ_AUTH)
        && matches!(head.attr("type").as_deref(), Some("get" | "set"))
}

/// The parsed form of [`is_request`].
pub(super) fn is_request_element(el: &Element) -> bool {
    el.ns == ns::CLIENT
        && el.name == "iq"
        && el.elements().next().is_some_and(|c| c.ns == ns::IQ_AUTH)
        && matches!(el.attr("type"), Some("get" | "set"))
}

/// A XEP-0078 set: a login attempt, which per-address backoff may refuse.
pub(super) fn is_set(el: &Element) -> bool {
    is_request_element(el) && el.attr("type") == Some("set")
}

/// A login whose password is being verified off the shard.
pub(super) struct Verifying {
    id: String,
    resource: String,
    exchange: Box<SaslExchange>,
    legacy: bool,
}

/// A login whose credentials were right, waiting for its resource to be bound.
pub(super) struct Binding {
    id: String,
    user: Jid,
    resource: String,
    legacy: bool,
}

/// What a set must carry (§3.1: username, resource, and a password here).
struct Login {
    username: String,
    password: String,
    resource: String,
}

impl Login {
    /// The fields of the set, or the text of its `not-acceptable` error.
    fn parse(iq: &Element) -> Result<Login, &'static str> {
        let query = iq.child("query", ns::IQ_AUTH);
        let field = |name: &str| {
            query
                .and_then(|q| q.child(name, ns::IQ_AUTH))
                .map(Element::text)
                .filter(|t| !t.is_empty())
        };
        let username = field("username").ok_or("a username is required")?;
        let resource = field("resource").ok_or("a resource is required")?;
        let password = match field("password") {
            Some(p) => p,
            None if field("digest").is_some() => {
                return Err("digest authentication is not supported: send the password over TLS")
            }
            None => return Err("a password is required"),
        };
        Ok(Login {
            username,
            password,
            resource,
        })
    }
}

/// How a refused request counts (see [`Negotiator::count_failure`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// Not at all: no login was attempted, or its password was right.
    No,
    /// Toward `--max-auth-failures` only: the attempt tested no credential.
    Stream,
    /// Toward `--max-auth-failures` and the address's failed logins.
    Attempt,
}

impl Negotiator {
    /// A `jabber:iq:auth` get or set before authentication ([`is_request_element`]).
    pub(super) fn on_iq_auth(
        &mut self,
        iq: &Element,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        let id = iq.attr("id");
        // IQAUTH-09
        if !env.iq_auth {
            StanzaError::new(StanzaCondition::ServiceUnavailable).write_reply(
                "iq",
                id,
                None,
                None,
                env.legacy_error_codes,
                out,
            );
            return Ok(Action::Continue);
        }
        // IQAUTH-08, CORE-SERR-14: no fallback to a weaker method once SASL was tried.
        if self.sasl_attempted {
            return Err(StreamError::with_text(
                StreamCondition::PolicyViolation,
                "non-SASL authentication after a SASL attempt",
            ));
        }
        let legacy = match self.state {
            State::ExpectAuth => false,
            State::Legacy => true,
            _ => {
                return Err(StreamError::with_text(
                    StreamCondition::NotAuthorized,
                    "authenticate first",
                ))
            }
        };
        let set = iq.attr("type") == Some("set");
        if set {
            self.method = Some("iq-auth");
        }
        let Some(id) = id else {
            // CORE-STANZA-06
            let err = StanzaError::with_text(StanzaCondition::BadRequest, "missing id");
            return self.iq_auth_refuse(None, err, Counted::No, env, out);
        };
        // IQAUTH-11
        if !self.iq_auth_offered(env) {
            let err = StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                "encryption is required: use TLS",
            );
            let counted = if set { Counted::Attempt } else { Counted::No };
            return self.iq_auth_refuse(Some(id), err, counted, env, out);
        }
        if !set {
            // IQAUTH-02, -03: the same fields whoever asks; nothing is looked up.
            write_iq_head(out, "result", id);
            out.extend_from_slice(b"><query xmlns='");
            out.extend_from_slice(ns::IQ_AUTH.as_bytes());
            out.extend_from_slice(b"'><username/><password/><resource/></query></iq>");
            return Ok(Action::Continue);
        }
        // Issue 8: the address is backing off; nothing is checked.
        if env.auth_backoff.is_some() {
            let err = StanzaError {
                error_type: ErrorType::Wait,
                ..StanzaError::with_text(
                    StanzaCondition::PolicyViolation,
                    "too many failed logins from your address: try again later",
                )
            };
            return self.iq_auth_refuse(Some(id), err, Counted::Stream, env, out);
        }
        let login = match Login::parse(iq) {
            Ok(login) => login,
            Err(text) => {
                let err = StanzaError::with_text(StanzaCondition::NotAcceptable, text);
                return self.iq_auth_refuse(Some(id), err, Counted::Attempt, env, out);
            }
        };
        let Ok(resource) = resourceprep(&login.resource) else {
            let err = StanzaError::with_text(StanzaCondition::NotAcceptable, "invalid resource");
            return self.iq_auth_refuse(Some(id), err, Counted::Attempt, env, out);
        };
        let domain = self.domain.clone().unwrap_or_default();
        let (mut cfg, creds) = self.sasl_context(env, &domain);
        // The stream's encryption was checked above, under the iq-auth policy.
        cfg.secure = true;
        let mut message = String::with_capacity(2 + login.username.len() + login.password.len());
        message.push('\0');
        message.push_str(&login.username);
        message.push('\0');
        message.push_str(&login.password);
        let (exchange, step) =
            SaslExchange::start(Mechanism::Plain, Some(message.as_bytes()), &cfg, &creds);
        match step {
            Step::VerifyPlain { password, keys, .. } => {
                self.state = State::VerifyingIqAuth(Box::new(Verifying {
                    id: id.to_string(),
                    resource: resource.into_owned(),
                    exchange: Box::new(exchange),
                    legacy,
                }));
                Ok(Action::VerifyPlain { password, keys })
            }
            Step::Failure(f) => self.iq_auth_failed(id, f, env, out),
            Step::Challenge(_) | Step::Success { .. } => {
                self.iq_auth_failed(id, SaslFailure::NotAuthorized, env, out)
            }
        }
    }

    /// The off-shard verification of a [`Verifying`] login finished.
    pub(super) fn iq_auth_verified(
        &mut self,
        login: Verifying,
        ok: bool,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        let Verifying {
            id,
            resource,
            mut exchange,
            legacy,
        } = login;
        self.state = back(legacy);
        let domain = self.domain.clone().unwrap_or_default();
        match exchange.plain_verified(ok) {
            Step::Success { username, .. } => match Jid::new(Some(&username), &domain, None) {
                Ok(user) => {
                    self.state = State::IqAuthBinding(Box::new(Binding {
                        id,
                        user: user.clone(),
                        resource,
                        legacy,
                    }));
                    Ok(Action::Authenticated(user))
                }
                Err(_) => self.iq_auth_failed(&id, SaslFailure::NotAuthorized, env, out),
            },
            Step::Failure(f) => self.iq_auth_failed(&id, f, env, out),
            Step::Challenge(_) | Step::VerifyPlain { .. } => {
                self.iq_auth_failed(&id, SaslFailure::NotAuthorized, env, out)
            }
        }
    }

    /// XEP-0078: the account and resource a login proved its credentials for, while its
    /// resource waits to be bound (IQAUTH-04). The connection binds exactly this resource on
    /// the account's home shard and reports with [`Negotiator::iq_auth_bound`].
    pub fn iq_auth_pending(&self) -> Option<(&Jid, &str)> {
        match &self.state {
            State::IqAuthBinding(b) => Some((&b.user, &b.resource)),
            _ => None,
        }
    }

    /// XEP-0078: the bind of [`Negotiator::iq_auth_pending`] succeeded or failed; answer the
    /// login. After a success the stream is authenticated and bound (no restart, no
    /// features); after a failure (e.g. `conflict`, IQAUTH-07) it is unauthenticated again and
    /// may log in anew. Called in any other state, it does nothing.
    pub fn iq_auth_bound(&mut self, bound: Result<&Jid, &StanzaError>, out: &mut Vec<u8>) {
        let binding = match std::mem::replace(&mut self.state, State::ExpectAuth) {
            State::IqAuthBinding(b) => b,
            other => {
                self.state = other;
                return;
            }
        };
        match bound {
            Ok(_) => {
                write_iq_head(out, "result", &binding.id);
                out.extend_from_slice(b"/>");
                self.state = State::Authenticated(binding.user);
            }
            Err(err) => {
                write_error(out, Some(&binding.id), err);
                self.state = back(binding.legacy);
            }
        }
    }

    /// Whether this stream offers XEP-0078 (IQAUTH-01, -11).
    pub(super) fn iq_auth_offered(&self, env: &Env<'_>) -> bool {
        self.role == super::Role::Client && env.iq_auth && (self.secured || env.iq_auth_without_tls)
    }

    /// Answer a failed verification: `not-authorized` whatever the reason (IQAUTH-06), except
    /// a storage failure, which tested nothing.
    fn iq_auth_failed(
        &mut self,
        id: &str,
        f: SaslFailure,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        let (err, counted) = match f {
            SaslFailure::TemporaryAuthFailure => (
                StanzaError {
                    error_type: ErrorType::Wait,
                    ..StanzaError::with_text(
                        StanzaCondition::InternalServerError,
                        "try again later",
                    )
                },
                Counted::Stream,
            ),
            SaslFailure::AccountDisabled => (
                StanzaError::with_text(StanzaCondition::NotAuthorized, "the account is disabled"),
                Counted::Attempt,
            ),
            _ => (
                StanzaError::new(StanzaCondition::NotAuthorized),
                Counted::Attempt,
            ),
        };
        self.iq_auth_refuse(Some(id), err, counted, env, out)
    }

    /// Answer a request with `err` and count it; too many failures close the stream.
    fn iq_auth_refuse(
        &mut self,
        id: Option<&str>,
        err: StanzaError,
        counted: Counted,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        write_error(out, id, &err);
        if counted != Counted::No {
            self.count_failure(counted == Counted::Attempt, env)?;
        }
        Ok(Action::Continue)
    }
}

/// Where a login that did not complete leaves the stream.
fn back(legacy: bool) -> State {
    if legacy {
        State::Legacy
    } else {
        State::ExpectAuth
    }
}

/// `<iq type='..' id='..'`, unclosed.
fn write_iq_head(out: &mut Vec<u8>, ty: &str, id: &str) {
    out.extend_from_slice(b"<iq type='");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"' id='");
    escape_attr(id, out);
    out.push(b'\'');
}

/// An error reply that echoes nothing of the request (IQAUTH-10), with its XEP-0086 code
/// always (§5; see the module documentation).
fn write_error(out: &mut Vec<u8>, id: Option<&str>, err: &StanzaError) {
    err.write_reply("iq", id, None, None, true, out);
}

#[cfg(test)]
mod tests;
