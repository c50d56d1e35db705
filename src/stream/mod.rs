//! Sans-I/O client stream negotiation (RFC 6120 §4–6): stream headers, features, STARTTLS and
//! SASL, and XEP-0078 non-SASL authentication (`iqauth`). The connection feeds it frames and
//! obeys the [`Action`] it returns; it never sees a socket, a timer or an executor, so every
//! path is a unit test on byte vectors.
//!
//! States are named after what they wait for: `ExpectHeader → ExpectAuth ⇄ Sasl →
//! ExpectRestart → Authenticated`. Resource binding happens after this, in the session layer.
//! A XEP-0078 login goes `ExpectAuth` (or `Legacy`) `⇄ VerifyingIqAuth → IqAuthBinding →
//! Authenticated` (a refused bind goes back) with no restart; the session layer binds its
//! resource.

pub mod iqauth;
pub mod sasl;

use crate::xml::{escape_attr, escape_text, Element, StreamHeader};
use crate::xmpp::error::{StreamCondition, StreamError};
use crate::xmpp::jid::{nameprep_domain, Jid};
use crate::xmpp::ns;
use sasl::{
    BindingFallback, ChannelBindings, CredentialSource, Lookup, Mechanism, SaslConfig,
    SaslExchange, SaslFailure, ScramError, ScramKeys, Step,
};

/// Account lookup by normalized bare JID, as the negotiator needs it.
pub trait Accounts {
    /// Look up `bare` ("user@domain").
    fn lookup(&self, bare: &str) -> Lookup;
}

/// What the negotiator needs from the server for one call.
pub struct Env<'a> {
    /// Served domains (normalized).
    pub domains: &'a [String],
    /// TLS must be negotiated before authentication.
    pub require_tls: bool,
    /// PLAIN may be used without TLS.
    pub plain_without_tls: bool,
    /// A certificate is loaded, so STARTTLS can be offered.
    pub tls_available: bool,
    /// Channel-binding data of the current TLS connection (empty before TLS).
    pub bindings: &'a ChannelBindings,
    /// SASL failures before the stream is closed.
    pub max_auth_failures: u32,
    /// Stream features modules offer after authentication, serialized (in the
    /// `<stream:features>` element's namespace context).
    pub post_auth_features: &'a [u8],
    /// Account lookup.
    pub accounts: &'a dyn Accounts,
    /// Server secret for fake SCRAM salts of unknown users.
    pub fake_salt_secret: &'a [u8],
    /// Iteration count reported for unknown users.
    pub scram_iterations: u32,
    /// The peer's address failed too many logins lately and must wait this long before its
    /// next attempt (issue 8): an `<auth/>` now gets `temporary-auth-failure` and no password
    /// is checked.
    pub auth_backoff: Option<std::time::Duration>,
    /// XEP-0078 non-SASL authentication is enabled (on encrypted streams).
    pub iq_auth: bool,
    /// XEP-0078 is also offered on unencrypted streams (`--iq-auth on`).
    pub iq_auth_without_tls: bool,
    /// Add XEP-0086 codes to stanza errors that are not XEP-0078 answers.
    pub legacy_error_codes: bool,
}

/// What the connection must do next.
#[derive(Debug)]
pub enum Action {
    /// Send what was written and keep reading.
    Continue,
    /// `<proceed/>` was written: flush it, discard buffered input (CORE-TLS-06), start the TLS
    /// handshake, and reset the framer.
    StartTls,
    /// Authentication succeeded for this bare JID: move to the home shard. After SASL, flush
    /// and reset the framer first (the stream restarts). After XEP-0078 the stream goes on
    /// and the resource of [`Negotiator::iq_auth_pending`] is bound there.
    Authenticated(Jid),
    /// Verify a PLAIN (or XEP-0078) password off the shard thread, then call
    /// [`Negotiator::plain_verified`].
    VerifyPlain {
        /// The SASLprep'd password.
        password: String,
        /// The stored keys to verify against.
        keys: ScramKeys,
    },
    /// Something final was written (e.g. a TLS `<failure/>` and `</stream:stream>`): close.
    Close,
}

enum State {
    /// Waiting for the stream header that starts (or restarts after TLS) negotiation.
    ExpectHeader,
    /// Features sent; waiting for `<starttls/>`, `<auth/>` or a XEP-0078 request.
    ExpectAuth,
    /// A SASL exchange is under way.
    Sasl(Box<SaslExchange>),
    /// A PLAIN password is being verified off the shard.
    VerifyingPlain(Box<SaslExchange>),
    /// SASL succeeded; waiting for the restart header.
    ExpectRestart(Jid),
    /// Post-authentication features sent; binding is up to the session layer.
    Authenticated(Jid),
    /// A pre-1.0 stream (no `version`): no features, no SASL (CORE-STREAM-11); XEP-0078 is
    /// its only way to log in.
    Legacy,
    /// A XEP-0078 password is being verified off the shard.
    VerifyingIqAuth(Box<iqauth::Verifying>),
    /// A XEP-0078 login's credentials were right; its resource is bound next, with no
    /// restart ([`Negotiator::iq_auth_pending`]).
    IqAuthBinding(Box<iqauth::Binding>),
}

/// Who is at the other end of a stream: its content namespace, and what is negotiated.
/// Server and component streams are negotiated by `s2s::incoming` and
/// `component::handshake`; here those roles only check the namespace and offer nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client (`jabber:client`): STARTTLS, SASL (or XEP-0078), then resource binding in
    /// the session layer.
    Client,
    /// A peer server (`jabber:server`, RFC 6120 s2s). No mechanism is offered and nothing is
    /// bound (federation negotiates in `s2s::incoming`).
    Server,
    /// An external component (`jabber:component:accept`, XEP-0114). No SASL (the handshake
    /// is `component::handshake`).
    Component,
}

impl Role {
    /// The stream's content namespace.
    pub fn content_ns(self) -> &'static str {
        match self {
            Role::Client => ns::CLIENT,
            Role::Server => ns::SERVER,
            Role::Component => ns::COMPONENT_ACCEPT,
        }
    }
}

/// Negotiation state of one stream.
pub struct Negotiator {
    role: Role,
    state: State,
    secured: bool,
    direct_tls: bool,
    domain: Option<String>,
    lang: Option<String>,
    header_sent: bool,
    failures: u32,
    /// Failed attempts that tested a credential or probed the server (what per-address
    /// limits count): see [`Negotiator::attempts_failed`].
    attempts_failed: u32,
    /// An account that proved its password in a `-PLUS` exchange refused only for its
    /// channel-binding type: its `y` is a fallback on this stream (issue 8).
    binding_fallback: Option<BindingFallback>,
    /// A SASL element arrived on this stream: XEP-0078 is refused from then on (IQAUTH-08).
    sasl_attempted: bool,
    stream_id: String,
    /// The authentication method of the last attempt: a SASL mechanism's name or `iq-auth`
    /// (for metrics).
    method: Option<&'static str>,
}

impl Negotiator {
    /// A new client stream; `direct_tls` when TLS was negotiated before any XMPP (XEP-0368).
    pub fn new(direct_tls: bool) -> Negotiator {
        Negotiator::with_role(Role::Client, direct_tls)
    }

    /// A new stream with a peer in `role`.
    pub fn with_role(role: Role, direct_tls: bool) -> Negotiator {
        Negotiator {
            role,
            state: State::ExpectHeader,
            secured: direct_tls,
            direct_tls,
            domain: None,
            lang: None,
            header_sent: false,
            failures: 0,
            attempts_failed: 0,
            binding_fallback: None,
            sasl_attempted: false,
            stream_id: String::new(),
            method: None,
        }
    }

    /// Continue a stream whose SASL succeeded on another shard: waiting for the restart header.
    pub fn resume(user: Jid, secured: bool, direct_tls: bool, lang: Option<String>) -> Negotiator {
        Negotiator {
            role: Role::Client,
            domain: Some(user.domain().to_string()),
            state: State::ExpectRestart(user),
            secured,
            direct_tls,
            lang,
            header_sent: false,
            failures: 0,
            attempts_failed: 0,
            binding_fallback: None,
            sasl_attempted: false,
            stream_id: String::new(),
            method: None,
        }
    }

    /// The method of the last authentication attempt on this stream: a SASL mechanism's
    /// name, `iq-auth` (XEP-0078), or None when no attempt named a mechanism we offer.
    pub fn auth_method(&self) -> Option<&'static str> {
        self.method
    }

    /// True once TLS is on (or negotiated and about to start).
    pub fn secured(&self) -> bool {
        self.secured
    }

    /// True for a direct-TLS stream.
    pub fn direct_tls(&self) -> bool {
        self.direct_tls
    }

    /// The peer's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The `xml:lang` the client declared on its stream header.
    pub fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }

    /// The served domain this stream is for, once known.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The current stream id.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The authenticated account once the post-authentication features were sent.
    pub fn authenticated(&self) -> Option<&Jid> {
        match &self.state {
            State::Authenticated(j) => Some(j),
            _ => None,
        }
    }

    /// True for a pre-1.0 stream.
    pub fn is_legacy(&self) -> bool {
        matches!(self.state, State::Legacy)
    }

    /// Failed authentication attempts on this stream that per-address limits count (every
    /// failure counted toward `--max-auth-failures` except `temporary-auth-failure`, which
    /// tested no credential).
    pub fn attempts_failed(&self) -> u32 {
        self.attempts_failed
    }

    /// True while neither SASL nor XEP-0078 has succeeded yet.
    pub fn before_auth(&self) -> bool {
        matches!(
            self.state,
            State::ExpectHeader
                | State::ExpectAuth
                | State::Sasl(_)
                | State::VerifyingPlain(_)
                | State::VerifyingIqAuth(_)
        )
    }

    /// A stream header arrived: answer with our header and the features for this stage.
    pub fn on_header(
        &mut self,
        hdr: &StreamHeader,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        self.stream_id = crate::util::stream_id();
        self.header_sent = false;
        if self.lang.is_none() {
            self.lang = hdr.lang.clone().filter(|l| valid_lang(l));
        }
        let to_domain = hdr
            .to
            .as_deref()
            .and_then(|t| nameprep_domain(t).ok())
            .map(|d| d.into_owned());
        let reply_to = hdr
            .from
            .as_deref()
            .and_then(|f| Jid::parse(f).ok())
            .map(|j| j.as_str().to_string());
        let from = to_domain
            .clone()
            .filter(|d| env.domains.contains(d))
            .or_else(|| env.domains.first().cloned())
            .unwrap_or_default();
        let version = hdr.version.as_deref().map(parse_version);
        let legacy = matches!(version, None | Some(Some((0, _))));
        self.write_header(out, &from, reply_to.as_deref(), !legacy);

        // CORE-STREAM-08: the content namespace must be the role's (jabber:client on the
        // client ports).
        if hdr.default_ns.as_deref() != Some(self.role.content_ns()) {
            return Err(StreamError::with_text(
                StreamCondition::InvalidNamespace,
                format!("the content namespace must be {}", self.role.content_ns()),
            ));
        }
        // CORE-STREAM-10: versions above 1.x are unsupported; 1.x is answered with 1.0.
        match version {
            Some(None) => {
                return Err(StreamError::with_text(
                    StreamCondition::UnsupportedVersion,
                    "malformed version",
                ))
            }
            Some(Some((major, _))) if major > 1 => {
                return Err(StreamError::new(StreamCondition::UnsupportedVersion))
            }
            _ => {}
        }
        // CORE-STREAM-05/06: `to` must name a served domain, the same one after restarts.
        let Some(domain) = to_domain.filter(|d| env.domains.contains(d)) else {
            return Err(StreamError::new(StreamCondition::HostUnknown));
        };
        if let Some(known) = &self.domain {
            if *known != domain {
                return Err(StreamError::with_text(
                    StreamCondition::HostUnknown,
                    "the domain changed during negotiation",
                ));
            }
        }
        self.domain = Some(domain);

        if legacy {
            self.state = State::Legacy;
            return Ok(Action::Continue);
        }
        self.state = match std::mem::replace(&mut self.state, State::ExpectHeader) {
            State::ExpectRestart(user) | State::Authenticated(user) => State::Authenticated(user),
            _ => State::ExpectAuth,
        };
        self.write_features(env, out);
        Ok(Action::Continue)
    }

    /// A first-level element arrived before authentication: STARTTLS, SASL, a XEP-0078
    /// request ([`iqauth::is_request`]; other stanzas are the connection's to refuse), or
    /// something unknown.
    pub fn on_nonza(
        &mut self,
        el: &Element,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        let unsupported = || {
            Err(StreamError::with_text(
                StreamCondition::UnsupportedStanzaType,
                format!("unexpected <{}/> in {}", el.name, el.ns),
            ))
        };
        if iqauth::is_request_element(el) {
            return self.on_iq_auth(el, env, out);
        }
        if el.ns == ns::TLS && el.name == "starttls" {
            // CORE-TLS-03/04/11: STARTTLS only once, only before authentication, only if offered.
            if self.secured || !env.tls_available || !matches!(self.state, State::ExpectAuth) {
                out.extend_from_slice(b"<failure xmlns='");
                out.extend_from_slice(ns::TLS.as_bytes());
                out.extend_from_slice(b"'/></stream:stream>");
                return Ok(Action::Close);
            }
            out.extend_from_slice(b"<proceed xmlns='");
            out.extend_from_slice(ns::TLS.as_bytes());
            out.extend_from_slice(b"'/>");
            self.secured = true;
            self.state = State::ExpectHeader;
            return Ok(Action::StartTls);
        }
        if el.ns != ns::SASL {
            return unsupported();
        }
        if matches!(self.state, State::ExpectAuth | State::Sasl(_)) {
            self.sasl_attempted = true;
        }
        match (el.name.as_str(), &mut self.state) {
            ("auth", State::ExpectAuth | State::Sasl(_)) => self.on_auth(el, env, out),
            ("response", State::Sasl(_)) => {
                let data = match sasl::decode_payload(&el.text()) {
                    Ok(d) => d.unwrap_or_default(),
                    Err(f) => return self.fail(f, env, out),
                };
                let domain = self.domain.clone().unwrap_or_default();
                let (cfg, creds) = self.sasl_context(env, &domain);
                let State::Sasl(exchange) = &mut self.state else {
                    return unsupported();
                };
                let step = exchange.step(&data, &cfg, &creds);
                self.on_step(step, env, out)
            }
            ("response", State::ExpectAuth) => self.fail(SaslFailure::MalformedRequest, env, out),
            ("abort", State::ExpectAuth | State::Sasl(_)) => {
                // CORE-SASL-09: the stream stays usable.
                self.state = State::ExpectAuth;
                write_sasl_failure(out, SaslFailure::Aborted, None);
                Ok(Action::Continue)
            }
            // CORE-SASL-14: no second authentication on an authenticated stream.
            _ => unsupported(),
        }
    }

    fn on_auth(
        &mut self,
        el: &Element,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        self.state = State::ExpectAuth;
        // CORE-TLS-07: no authentication in the clear when TLS is required. Counted as a
        // failure (issue 8): it probes the server and costs a round trip like any other.
        if !self.secured && env.require_tls {
            return self.fail(SaslFailure::EncryptionRequired, env, out);
        }
        // CORE-SASL-05: unknown, missing or not offered mechanism (counted too).
        let mech = el
            .attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| self.offered(env).contains(m));
        self.method = mech.map(Mechanism::name);
        let Some(mech) = mech else {
            return self.fail(SaslFailure::InvalidMechanism, env, out);
        };
        // Issue 8: the address is backing off after failed logins; the attempt is refused
        // before any credential is looked at.
        if env.auth_backoff.is_some() {
            return self.fail(SaslFailure::TemporaryAuthFailure, env, out);
        }
        // CORE-SASL-06/10: strict base64; "=" is an empty initial response.
        let initial = match sasl::decode_payload(&el.text()) {
            Ok(d) => d,
            Err(f) => return self.fail(f, env, out),
        };
        let domain = self.domain.clone().unwrap_or_default();
        let (cfg, creds) = self.sasl_context(env, &domain);
        let (exchange, step) = SaslExchange::start_with_fallback(
            mech,
            initial.as_deref(),
            &cfg,
            &creds,
            self.binding_fallback.as_ref(),
        );
        self.state = State::Sasl(Box::new(exchange));
        self.on_step(step, env, out)
    }

    /// The off-shard PLAIN (or XEP-0078) verification finished.
    pub fn plain_verified(
        &mut self,
        ok: bool,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        match std::mem::replace(&mut self.state, State::ExpectAuth) {
            State::VerifyingPlain(mut exchange) => {
                let step = exchange.plain_verified(ok);
                self.state = State::Sasl(exchange);
                self.on_step(step, env, out)
            }
            State::VerifyingIqAuth(login) => self.iq_auth_verified(*login, ok, env, out),
            other => {
                self.state = other;
                Ok(Action::Continue)
            }
        }
    }

    fn on_step(
        &mut self,
        step: Step,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        match step {
            Step::Challenge(data) => {
                write_sasl(out, "challenge", Some(&data));
                Ok(Action::Continue)
            }
            Step::Success {
                username,
                additional,
            } => {
                let domain = self.domain.clone().unwrap_or_default();
                let Ok(user) = Jid::new(Some(&username), &domain, None) else {
                    return self.fail(SaslFailure::NotAuthorized, env, out);
                };
                write_sasl(out, "success", additional.as_deref());
                self.state = State::ExpectRestart(user.clone());
                Ok(Action::Authenticated(user))
            }
            Step::Failure(f) => {
                let error = match &self.state {
                    State::Sasl(exchange) => {
                        if let Some(fallback) = exchange.binding_fallback() {
                            self.binding_fallback = Some(fallback.clone());
                        }
                        exchange.scram_error()
                    }
                    _ => None,
                };
                self.fail_with(f, error, env, out)
            }
            Step::VerifyPlain { password, keys, .. } => {
                if let State::Sasl(exchange) = std::mem::replace(&mut self.state, State::ExpectAuth)
                {
                    self.state = State::VerifyingPlain(exchange);
                }
                Ok(Action::VerifyPlain { password, keys })
            }
        }
    }

    /// Report a SASL failure; after too many, close with `policy-violation` (CORE-SASL-07/08).
    fn fail(
        &mut self,
        f: SaslFailure,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        self.fail_with(f, None, env, out)
    }

    /// [`Negotiator::fail`] with the RFC 5802 `e=` value of a SCRAM failure, if any.
    ///
    /// Not counted toward `--max-auth-failures`: `aborted` (the client gave up) and an
    /// unsupported channel-binding type, which comes only after the client proved its
    /// password: it tested no guess, and a client going through its -PLUS mechanisms before
    /// falling back (slixmpp 1.8: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, then SCRAM-SHA-256
    /// with `y`) must not run out of attempts, whatever the limit.
    fn fail_with(
        &mut self,
        f: SaslFailure,
        error: Option<ScramError>,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Action, StreamError> {
        self.state = State::ExpectAuth;
        write_sasl_failure(out, f, error);
        if f != SaslFailure::Aborted && error != Some(ScramError::UnsupportedChannelBindingType) {
            self.count_failure(f != SaslFailure::TemporaryAuthFailure, env)?;
        }
        Ok(Action::Continue)
    }

    /// Count a failed authentication attempt (SASL or XEP-0078) toward `--max-auth-failures`,
    /// and toward the address's failed logins when it `tested` a credential or probed the
    /// server; past the limit, the stream closes with `policy-violation` (CORE-SASL-07/08).
    fn count_failure(&mut self, tested: bool, env: &Env<'_>) -> Result<(), StreamError> {
        if tested {
            self.attempts_failed += 1;
        }
        self.failures += 1;
        if self.failures >= env.max_auth_failures {
            return Err(StreamError::with_text(
                StreamCondition::PolicyViolation,
                "too many authentication failures",
            ));
        }
        Ok(())
    }

    /// Write a stream error, preceded by our stream header if this stream has none yet
    /// (CORE-STREAM-07).
    pub fn write_error(&mut self, err: &StreamError, domains: &[String], out: &mut Vec<u8>) {
        if !self.header_sent {
            let from = self
                .domain
                .clone()
                .or_else(|| domains.first().cloned())
                .unwrap_or_default();
            if self.stream_id.is_empty() {
                self.stream_id = crate::util::stream_id();
            }
            self.write_header(out, &from, None, true);
        }
        err.write_to(out);
    }

    fn write_header(&mut self, out: &mut Vec<u8>, from: &str, to: Option<&str>, version: bool) {
        out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
        out.extend_from_slice(self.role.content_ns().as_bytes());
        out.extend_from_slice(b"' xmlns:stream='");
        out.extend_from_slice(ns::STREAMS.as_bytes());
        out.extend_from_slice(b"' id='");
        out.extend_from_slice(self.stream_id.as_bytes());
        out.extend_from_slice(b"' from='");
        escape_attr(from, out);
        out.push(b'\'');
        if let Some(to) = to {
            out.extend_from_slice(b" to='");
            escape_attr(to, out);
            out.push(b'\'');
        }
        if version {
            out.extend_from_slice(b" version='1.0'");
        }
        out.extend_from_slice(b" xml:lang='en'>");
        self.header_sent = true;
    }

    fn offered(&self, env: &Env<'_>) -> Vec<Mechanism> {
        let mut v = Vec::with_capacity(5);
        if self.role != Role::Client {
            // No SASL mechanism of ours authenticates a server or a component.
            return v;
        }
        if self.secured {
            if env.bindings.any() {
                v.push(Mechanism::ScramSha256Plus);
                v.push(Mechanism::ScramSha1Plus);
            }
            v.extend([
                Mechanism::ScramSha256,
                Mechanism::ScramSha1,
                Mechanism::Plain,
            ]);
        } else if !env.require_tls {
            v.extend([Mechanism::ScramSha256, Mechanism::ScramSha1]);
            if env.plain_without_tls {
                v.push(Mechanism::Plain);
            }
        }
        v
    }

    /// What a SASL step needs: the mechanism configuration and the account lookup for the
    /// stream's domain.
    fn sasl_context<'a>(
        &self,
        env: &Env<'a>,
        domain: &'a str,
    ) -> (SaslConfig<'a>, DomainCreds<'a>) {
        let cfg = SaslConfig {
            domain,
            secure: self.secured || env.plain_without_tls,
            plus_offered: self.secured && env.bindings.any(),
            bindings: env.bindings,
            fake_salt_secret: env.fake_salt_secret,
            default_iterations: env.scram_iterations,
        };
        let creds = DomainCreds {
            accounts: env.accounts,
            domain,
        };
        (cfg, creds)
    }

    fn write_features(&self, env: &Env<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<stream:features>");
        match &self.state {
            // Servers and components bind nothing.
            State::Authenticated(_) if self.role != Role::Client => {}
            State::Authenticated(_) => {
                // CORE-BIND-01, CORE-SESS-01.
                out.extend_from_slice(b"<bind xmlns='");
                out.extend_from_slice(ns::BIND.as_bytes());
                out.extend_from_slice(b"'/><session xmlns='");
                out.extend_from_slice(ns::SESSION.as_bytes());
                out.extend_from_slice(b"'><optional/></session>");
                out.extend_from_slice(env.post_auth_features);
            }
            _ => {
                // CORE-TLS-01/02, DTLS-03: STARTTLS only on a plain stream.
                if !self.secured && env.tls_available {
                    out.extend_from_slice(b"<starttls xmlns='");
                    out.extend_from_slice(ns::TLS.as_bytes());
                    out.extend_from_slice(b"'>");
                    if env.require_tls {
                        out.extend_from_slice(b"<required/>");
                    }
                    out.extend_from_slice(b"</starttls>");
                }
                let mechs = self.offered(env);
                if !mechs.is_empty() {
                    // CORE-SASL-01..04.
                    out.extend_from_slice(b"<mechanisms xmlns='");
                    out.extend_from_slice(ns::SASL.as_bytes());
                    out.extend_from_slice(b"'>");
                    for m in mechs {
                        out.extend_from_slice(b"<mechanism>");
                        out.extend_from_slice(m.name().as_bytes());
                        out.extend_from_slice(b"</mechanism>");
                    }
                    out.extend_from_slice(b"</mechanisms>");
                }
                // IQAUTH-01, -11.
                if self.iq_auth_offered(env) {
                    out.extend_from_slice(b"<auth xmlns='");
                    out.extend_from_slice(ns::IQ_AUTH_FEATURE.as_bytes());
                    out.extend_from_slice(b"'/>");
                }
                if self.secured && env.bindings.any() {
                    // CORE-SASL-24 (XEP-0440).
                    out.extend_from_slice(b"<sasl-channel-binding xmlns='");
                    out.extend_from_slice(ns::SASL_CB.as_bytes());
                    out.extend_from_slice(b"'>");
                    for name in env.bindings.names() {
                        out.extend_from_slice(b"<channel-binding type='");
                        out.extend_from_slice(name.as_bytes());
                        out.extend_from_slice(b"'/>");
                    }
                    out.extend_from_slice(b"</sasl-channel-binding>");
                }
            }
        }
        out.extend_from_slice(b"</stream:features>");
    }
}

struct DomainCreds<'a> {
    accounts: &'a dyn Accounts,
    domain: &'a str,
}

impl CredentialSource for DomainCreds<'_> {
    fn lookup(&self, username: &str) -> Lookup {
        let mut bare = String::with_capacity(username.len() + 1 + self.domain.len());
        bare.push_str(username);
        bare.push('@');
        bare.push_str(self.domain);
        self.accounts.lookup(&bare)
    }
}

/// Whether `el` starts a login attempt that per-address backoff may refuse (issue 8): a SASL
/// `<auth/>` or a XEP-0078 set.
pub fn is_login_attempt(el: &Element) -> bool {
    (el.name == "auth" && el.ns == ns::SASL) || iqauth::is_set(el)
}

/// `major.minor` with non-negative integers; None when malformed (RFC 6120 §4.7.5).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    Some((num(major)?, num(minor)?))
}

/// A plausible BCP 47 tag: letters, digits and '-', at most 35 bytes.
fn valid_lang(l: &str) -> bool {
    !l.is_empty() && l.len() <= 35 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn write_sasl(out: &mut Vec<u8>, name: &str, data: Option<&[u8]>) {
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" xmlns='");
    out.extend_from_slice(ns::SASL.as_bytes());
    match data {
        Some(d) => {
            out.extend_from_slice(b"'>");
            escape_text(&sasl::encode_payload(d), out);
            out.extend_from_slice(b"</");
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
        }
        None => out.extend_from_slice(b"'/>"),
    }
}

/// `<failure>` with the condition; a SCRAM `e=` value goes in `<text>` (RFC 6120 §6.4.5 has
/// no additional data on failure; see the `sasl` module documentation).
fn write_sasl_failure(out: &mut Vec<u8>, f: SaslFailure, error: Option<ScramError>) {
    out.extend_from_slice(b"<failure xmlns='");
    out.extend_from_slice(ns::SASL.as_bytes());
    out.extend_from_slice(b"'><");
    out.extend_from_slice(f.condition().as_bytes());
    out.extend_from_slice(b"/>");
    if let Some(error) = error {
        out.extend_from_slice(b"<text xml:lang='en'>e=");
        out.extend_from_slice(error.value().as_bytes());
        out.extend_from_slice(b"</text>");
    }
    out.extend_from_slice(b"</failure>");
}

#[cfg(test)]
mod tests;
