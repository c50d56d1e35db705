//! Server dialback (XEP-0220) with XEP-0185 keys, as pure sans-I/O code.
//!
//! Nothing here touches a socket, timer or executor. The connection code parses each depth-1
//! element in the `jabber:server:dialback` namespace into an [`Element`], hands it to the state
//! of the stream it arrived on, and obeys what comes back: bytes to write, a verification to
//! ask of an authoritative server, a stream to close, stanzas to bounce.
//!
//! There are three roles, each a separate piece of state or function:
//!
//! * [`Inbound`]: one per inbound s2s stream (we are the Receiving Server). It tracks the domain
//!   pairs the peer asked to authorize and gates stanzas on them. It also answers `db:verify`
//!   requests (we are the Authoritative Server, [`answer_verify`], stateless).
//! * [`Outbound`]: one per outbound s2s stream. It records every `db:result` and `db:verify`
//!   request we sent on that stream and accepts only answers that match one of them
//!   (DB-SEC-01, the 2012 unsolicited dialback attacks).
//! * [`key`] / [`key_matches`]: XEP-0185 key generation and constant-time verification.
//!
//! A full verification crosses streams: a `db:result` request arrives on an inbound stream
//! ([`Inbound::on_element`] returns [`Action::Verify`]); the caller sends the `db:verify` on
//! an outbound stream to the sender domain ([`Outbound::send_verify`]); the answer arrives on
//! that outbound stream ([`Outbound::on_answer`] returns [`OutboundEvent::Verified`] with the
//! stream id); the caller finds the inbound stream with that id and feeds the outcome to
//! [`Inbound::on_verify_outcome`], which returns the `db:result` answer to write.
//!
//! Inbound pair states (per `(from = sender domain, to = our target domain)` on one stream):
//!
//! | State    | Event                                   | Reply on the inbound stream              | Next     |
//! |----------|-----------------------------------------|------------------------------------------|----------|
//! | any      | request carrying `type`                 | nothing (unsolicited, DB-SEC-02)         | same     |
//! | any      | `to` not hosted                         | `type='error'` item-not-found (DB-RECV-05) | same   |
//! | any      | plaintext, TLS required by policy       | `type='error'` policy-violation (DB-POL-01) | same  |
//! | None     | request, pair table full                | `type='error'` resource-constraint       | None     |
//! | None     | request                                 | nothing yet; [`Action::Verify`] (DB-RECV-02) | Pending |
//! | Pending  | request (duplicate)                     | nothing (the first one will be answered) | Pending  |
//! | Verified | request (again)                         | `type='valid'` (already proven here)     | Verified |
//! | Pending  | outcome valid                           | `type='valid'` (DB-RECV-03)              | Verified |
//! | Pending  | outcome invalid, no other pair verified | `type='invalid'`, close (DB-RECV-04)     | None     |
//! | Pending  | outcome invalid, another pair verified  | `type='error'` forbidden (DB-RECV-04)    | None     |
//! | Pending  | outcome failed (unreachable, timeout…)  | `type='error'` remote-… (DB-RECV-07)     | None     |
//! | None or Verified | any outcome                     | nothing (stale or unsolicited outcome)   | same     |
//!
//! Outbound request states (per `(sender = our domain, target = peer domain)` on one stream):
//!
//! | State      | Event                        | Result                                       | Next       |
//! |------------|------------------------------|----------------------------------------------|------------|
//! | None       | we send a `db:result` key    | stanzas for the pair are queued (DB-OUT-01)  | Pending    |
//! | Pending    | matching `type='valid'`      | [`OutboundEvent::Authorized`]: flush queue   | Authorized |
//! | Pending    | matching `type='invalid'`    | [`OutboundEvent::Refused`]: bounce with internal-server-error | None |
//! | Pending    | matching `type='error'`      | [`OutboundEvent::Refused`]: bounce with remote-server-timeout | None |
//! | Pending    | stream closed / timed out    | [`Outbound::close`] / [`Outbound::cancel_result`]: as an error | None |
//! | otherwise  | any typed answer             | [`OutboundEvent::Unsolicited`]: ignored, never authorizes | same |
//!
//! Every table a peer can grow is bounded by a `max_pairs` limit fixed when the state is made.

use crate::util::hex;
use crate::xml::{escape_attr, escape_text, Element};
use crate::xmpp::error::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::nameprep_domain;
use crate::xmpp::ns;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// XEP-0220 namespace of `db:result` and `db:verify`.
pub const DIALBACK: &str = "jabber:server:dialback";
/// XEP-0220 §2.4.2 stream feature namespace announcing dialback error handling.
pub const DIALBACK_FEATURES: &str = "urn:xmpp:features:dialback";
/// The namespace declaration an s2s stream header carries to announce traditional dialback
/// (DB-ADV-01, XEP-0220 §2.4.1). It binds the `db` prefix every writer here uses (DB-ADV-03).
pub const STREAM_HEADER_DECL: &str = " xmlns:db='jabber:server:dialback'";
/// Default bound on domain pairs per stream (pending and verified together), and on pending
/// `db:verify` requests per outbound stream.
pub const DEFAULT_MAX_PAIRS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Keys (XEP-0185)
// ---------------------------------------------------------------------------------------------

/// The XEP-0185 §3 dialback key (DB-KEY-01):
/// `HMAC-SHA256(hex(SHA256(secret)), receiving + ' ' + originating + ' ' + stream_id)`, as
/// lowercase hex. The HMAC key is the *hex text* of the secret's digest, as in the XEP's
/// worked example (64 ASCII bytes, not the 32 raw digest bytes).
///
/// `receiving` is the Receiving Server's domain (the target), `originating` the Sender
/// Domain, `stream_id` the id the Receiving Server put in its response stream header. The
/// secret is per deployment (shared by every node of a cluster), never per connection.
pub fn key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed = hex(&Sha256::digest(secret));
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(hashed.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether `presented` is the key [`key`] computes for these inputs, compared in constant
/// time (the running time depends only on the lengths).
pub fn key_matches(
    secret: &[u8],
    receiving: &str,
    originating: &str,
    stream_id: &str,
    presented: &str,
) -> bool {
    ct_eq(
        key(secret, receiving, originating, stream_id).as_bytes(),
        presented.as_bytes(),
    )
}

/// Byte equality whose running time depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------------------------------------
// Elements
// ---------------------------------------------------------------------------------------------

/// Which dialback element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `db:result`: between Initiating and Receiving Server (steps 1 and 4).
    Result,
    /// `db:verify`: between Receiving and Authoritative Server (steps 2 and 3).
    Verify,
}

/// The `type` of a dialback answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `type='valid'`.
    Valid,
    /// `type='invalid'`.
    Invalid,
    /// `type='error'` with its defined condition (XEP-0220 §2.5).
    Error(Condition),
}

/// A parsed dialback element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialback {
    /// `db:result` or `db:verify`.
    pub kind: Kind,
    /// `from`, Nameprepped.
    pub from: String,
    /// `to`, Nameprepped.
    pub to: String,
    /// `id`: present on every `db:verify`; ignored (None) on `db:result`.
    pub id: Option<String>,
    /// `type`: None for a request, Some for an answer.
    pub verdict: Option<Verdict>,
    /// The key (character data with surrounding whitespace trimmed); non-empty on requests.
    pub key: String,
}

/// The condition of a dialback error: an RFC 6120 stanza condition, or
/// remote-connection-failed, which XEP-0220 §2.5 uses in the stanzas namespace although
/// RFC 6120 defines it only as a stream error (so [`StanzaCondition`] lacks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// An RFC 6120 §8.3.3 condition.
    Stanza(StanzaCondition),
    /// `<remote-connection-failed/>`: the Receiving Server could not connect to the
    /// Authoritative Server.
    RemoteConnectionFailed,
}

impl From<StanzaCondition> for Condition {
    fn from(c: StanzaCondition) -> Condition {
        Condition::Stanza(c)
    }
}

impl Condition {
    /// The element name of the condition.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Stanza(c) => c.name(),
            Condition::RemoteConnectionFailed => "remote-connection-failed",
        }
    }

    /// Writes `<error type='…'><condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`
    /// with the condition's usual RFC 6120 type (`cancel` for remote-connection-failed, as
    /// for its neighbour remote-server-not-found).
    pub fn write_element(self, out: &mut Vec<u8>) {
        match self {
            Condition::Stanza(c) => StanzaError::new(c).write_element(false, out),
            Condition::RemoteConnectionFailed => {
                out.extend_from_slice(b"<error type='cancel'><remote-connection-failed xmlns='");
                out.extend_from_slice(ns::STANZAS.as_bytes());
                out.extend_from_slice(b"'/></error>");
            }
        }
    }
}

/// Why an element could not be read as a dialback element. Every case closes the stream with
/// [`ParseError::stream_error`]: the peer sent something no conforming server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not `result` or `verify` in [`DIALBACK`].
    NotDialback,
    /// No `from` attribute.
    MissingFrom,
    /// No `to` attribute.
    MissingTo,
    /// `from` is not a valid domain (Nameprep fails, empty label, …).
    BadFrom,
    /// `to` is not a valid domain.
    BadTo,
    /// A `db:verify` without a non-empty `id`.
    MissingId,
    /// A `type` other than `valid`, `invalid` or `error`.
    BadType,
    /// A request (no `type`) without a key.
    MissingKey,
}

impl ParseError {
    /// The stream error to close with: improper-addressing for missing or malformed
    /// `from`/`to` (RFC 6120 §4.9.3.7 covers both), unsupported-stanza-type for a foreign
    /// element, bad-format for the rest.
    pub fn stream_error(self) -> StreamError {
        let (condition, text) = match self {
            ParseError::NotDialback => (
                StreamCondition::UnsupportedStanzaType,
                "not a dialback element",
            ),
            ParseError::MissingFrom => {
                (StreamCondition::ImproperAddressing, "dialback without from")
            }
            ParseError::MissingTo => (StreamCondition::ImproperAddressing, "dialback without to"),
            ParseError::BadFrom => (
                StreamCondition::ImproperAddressing,
                "malformed dialback from",
            ),
            ParseError::BadTo => (StreamCondition::ImproperAddressing, "malformed dialback to"),
            ParseError::MissingId => (StreamCondition::BadFormat, "db:verify without id"),
            ParseError::BadType => (StreamCondition::BadFormat, "unknown dialback type"),
            ParseError::MissingKey => (StreamCondition::BadFormat, "dialback request without key"),
        };
        StreamError::with_text(condition, text)
    }
}

/// The condition of a `type='error'` dialback element: the first child of its `<error/>`
/// child in the stanzas namespace. The `<error/>` element is matched by local name only (it
/// is "implicitly qualified by jabber:server", which depends on the peer's default namespace).
/// A missing or unknown condition reads as undefined-condition: the answer is still an error.
fn error_condition(el: &Element) -> Condition {
    let name = el
        .elements()
        .find(|e| e.name == "error")
        .and_then(|e| e.elements().find(|c| c.ns == ns::STANZAS))
        .map(|c| c.name.as_str());
    if name == Some(Condition::RemoteConnectionFailed.name()) {
        return Condition::RemoteConnectionFailed;
    }
    let known = name.and_then(|n| StanzaCondition::ALL.iter().copied().find(|k| k.name() == n));
    Condition::Stanza(known.unwrap_or(StanzaCondition::UndefinedCondition))
}

fn domain(value: Option<&str>, missing: ParseError, bad: ParseError) -> Result<String, ParseError> {
    let value = value.ok_or(missing)?;
    nameprep_domain(value)
        .map(|d| d.into_owned())
        .map_err(|_| bad)
}

/// Reads a `db:result` or `db:verify` under any prefix (DB-ADV-03: the tree already holds the
/// resolved namespace). Domains are Nameprepped; a malformed one is an error.
pub fn parse(el: &Element) -> Result<Dialback, ParseError> {
    if el.ns != DIALBACK {
        return Err(ParseError::NotDialback);
    }
    let kind = match el.name.as_str() {
        "result" => Kind::Result,
        "verify" => Kind::Verify,
        _ => return Err(ParseError::NotDialback),
    };
    let from = domain(
        el.attr("from"),
        ParseError::MissingFrom,
        ParseError::BadFrom,
    )?;
    let to = domain(el.attr("to"), ParseError::MissingTo, ParseError::BadTo)?;
    let id = match kind {
        Kind::Result => None,
        Kind::Verify => match el.attr("id") {
            Some(id) if !id.is_empty() => Some(id.to_owned()),
            _ => return Err(ParseError::MissingId),
        },
    };
    let verdict = match el.attr("type") {
        None => None,
        Some("valid") => Some(Verdict::Valid),
        Some("invalid") => Some(Verdict::Invalid),
        Some("error") => Some(Verdict::Error(error_condition(el))),
        Some(_) => return Err(ParseError::BadType),
    };
    let key = el.text().trim().to_owned();
    if verdict.is_none() && key.is_empty() {
        return Err(ParseError::MissingKey);
    }
    Ok(Dialback {
        kind,
        from,
        to,
        id,
        verdict,
        key,
    })
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

/// What goes after the attributes of a written dialback element.
enum Body<'a> {
    Key(&'a str),
    Verdict(Verdict),
}

fn write_db(name: &str, from: &str, to: &str, id: Option<&str>, body: Body<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<db:");
    out.extend_from_slice(name.as_bytes());
    let type_attr = match body {
        Body::Key(_) => None,
        Body::Verdict(Verdict::Valid) => Some("valid"),
        Body::Verdict(Verdict::Invalid) => Some("invalid"),
        Body::Verdict(Verdict::Error(_)) => Some("error"),
    };
    let attrs = [
        ("from", Some(from)),
        ("to", Some(to)),
        ("id", id),
        ("type", type_attr),
    ];
    for (attr, value) in attrs {
        if let Some(value) = value {
            out.push(b' ');
            out.extend_from_slice(attr.as_bytes());
            out.extend_from_slice(b"='");
            escape_attr(value, out);
            out.push(b'\'');
        }
    }
    match body {
        Body::Verdict(Verdict::Valid | Verdict::Invalid) => out.extend_from_slice(b"/>"),
        Body::Key(k) => {
            out.push(b'>');
            escape_text(k, out);
            close_db(name, out);
        }
        Body::Verdict(Verdict::Error(condition)) => {
            out.push(b'>');
            condition.write_element(out);
            close_db(name, out);
        }
    }
}

fn close_db(name: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"</db:");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
}

/// Step 1: `<db:result from='sender' to='target'>key</db:result>`.
pub fn write_result_request(from: &str, to: &str, key: &str, out: &mut Vec<u8>) {
    write_db("result", from, to, None, Body::Key(key), out);
}

/// Step 4: `<db:result from='target' to='sender' type='…'/>`; an error carries
/// `<error type='…'><condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>` with the
/// condition's usual RFC 6120 type (item-not-found is `cancel`).
pub fn write_result(from: &str, to: &str, verdict: Verdict, out: &mut Vec<u8>) {
    write_db("result", from, to, None, Body::Verdict(verdict), out);
}

/// Step 2: `<db:verify from='target' to='sender' id='stream id'>key</db:verify>`.
pub fn write_verify_request(from: &str, to: &str, id: &str, key: &str, out: &mut Vec<u8>) {
    write_db("verify", from, to, Some(id), Body::Key(key), out);
}

/// Step 3: `<db:verify from='sender' to='target' id='stream id' type='…'/>`, errors as in
/// [`write_result`].
pub fn write_verify(from: &str, to: &str, id: &str, verdict: Verdict, out: &mut Vec<u8>) {
    write_db("verify", from, to, Some(id), Body::Verdict(verdict), out);
}

/// The stream feature announcing dialback error handling (DB-ADV-02, XEP-0220 §2.4.2):
/// `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`.
pub fn write_feature(out: &mut Vec<u8>) {
    out.extend_from_slice(b"<dialback xmlns='");
    out.extend_from_slice(DIALBACK_FEATURES.as_bytes());
    out.extend_from_slice(b"'><errors/></dialback>");
}

/// Whether a peer's `<stream:features/>` announce dialback error handling: a `dialback`
/// child in [`DIALBACK_FEATURES`] containing `errors` (in the same namespace).
pub fn advertises_errors(features: &Element) -> bool {
    features
        .child("dialback", DIALBACK_FEATURES)
        .is_some_and(|d| d.child("errors", DIALBACK_FEATURES).is_some())
}

// ---------------------------------------------------------------------------------------------
// Receiving and Authoritative Server (inbound stream)
// ---------------------------------------------------------------------------------------------

/// A domain pair: stanzas from `sender` (the Initiating Server's domain) to `target` (a
/// domain of the Receiving Server).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    /// Sender Domain: `from` of the `db:result` request.
    pub sender: String,
    /// Target Domain: `to` of the `db:result` request.
    pub target: String,
}

impl Pair {
    /// A pair from two (already prepared) domains.
    pub fn new(sender: impl Into<String>, target: impl Into<String>) -> Pair {
        Pair {
            sender: sender.into(),
            target: target.into(),
        }
    }

    fn is(&self, sender: &str, target: &str) -> bool {
        self.sender == sender && self.target == target
    }
}

/// Local policy for inbound dialback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Refuse dialback on a stream without TLS (DB-POL-01) with policy-violation.
    pub require_tls: bool,
    /// Most domain pairs (pending and verified) one stream may hold; more are refused with
    /// resource-constraint, which XEP-0220 §2.5 defines for exactly this case (the initiator
    /// opens a new connection).
    pub max_pairs: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            require_tls: false,
            max_pairs: DEFAULT_MAX_PAIRS,
        }
    }
}

/// A verification the caller must ask of the Authoritative Server for `pair.sender`
/// (DB-RECV-02), typically through [`Outbound::send_verify`] on an outbound stream to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The pair being verified.
    pub pair: Pair,
    /// The id of the inbound stream (the one we sent in our response header).
    pub stream_id: String,
    /// The key the Initiating Server presented.
    pub key: String,
}

impl VerifyRequest {
    /// `<db:verify from='target' to='sender' id='stream id'>key</db:verify>`.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_verify_request(
            &self.pair.target,
            &self.pair.sender,
            &self.stream_id,
            &self.key,
            out,
        );
    }
}

/// Why an element was dropped without an answer; the caller may log it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// A `db:result`/`db:verify` carrying `type` on an inbound stream: without XEP-0288 no
    /// answer is expected there, so it is treated as unsolicited (DB-SEC-02). Chosen over
    /// closing the stream so that other pairs on it keep flowing; it changes no state.
    UnsolicitedAnswer,
    /// A `db:result` request for a pair whose verification is already pending: the first
    /// request's verification answers it, so exactly one answer is sent per pending pair.
    DuplicatePending,
    /// [`Inbound::on_result_request`] got a `db:verify` or [`answer_verify`] a `db:result`.
    WrongKind,
}

/// What the connection code does with an element received on an inbound stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to write, nothing changed.
    Ignore(Ignored),
    /// Write these bytes on the inbound stream; it stays open.
    Answer(Vec<u8>),
    /// Ask the Authoritative Server, then call [`Inbound::on_verify_outcome`].
    Verify(VerifyRequest),
    /// Close the stream with this error (malformed element).
    Close(StreamError),
}

/// Why a verification could not be completed (DB-RECV-07, XEP-0220 §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyFailure {
    /// The Authoritative Server answered `type='error'` (its condition is kept for logs).
    AuthoritativeError(Condition),
    /// The Authoritative Server's domain did not resolve, or it answered `host-unknown`.
    NotFound,
    /// No connection to the Authoritative Server could be established.
    ConnectionFailed,
    /// The connection failed after it was established: the stream closed before the answer
    /// came, or the caller's timer expired.
    Timeout,
}

impl VerifyFailure {
    /// The condition relayed to the Initiating Server, per the XEP-0220 §2.5 table; an error
    /// "encountered in Step 3" MUST be relayed as remote-server-not-found.
    pub fn condition(self) -> Condition {
        match self {
            VerifyFailure::AuthoritativeError(_) | VerifyFailure::NotFound => {
                StanzaCondition::RemoteServerNotFound.into()
            }
            VerifyFailure::ConnectionFailed => Condition::RemoteConnectionFailed,
            VerifyFailure::Timeout => StanzaCondition::RemoteServerTimeout.into(),
        }
    }
}

/// The result of asking the Authoritative Server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// `type='valid'`.
    Valid,
    /// `type='invalid'`.
    Invalid,
    /// No verdict could be had.
    Failed(VerifyFailure),
}

/// What to write on the inbound stream after a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The `db:result` answer.
    pub bytes: Vec<u8>,
    /// Close the stream after writing (with `</stream:stream>`): the key was invalid and no
    /// other pair is verified on it (DB-RECV-04).
    pub close: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InState {
    Pending,
    Verified,
}

/// Dialback state of one inbound s2s stream (we are the Receiving Server). See the module
/// table for the transitions.
#[derive(Clone, Debug)]
pub struct Inbound {
    stream_id: String,
    policy: Policy,
    pairs: Vec<(Pair, InState)>,
}

impl Inbound {
    /// State for a stream whose response header carried `stream_id`.
    pub fn new(stream_id: impl Into<String>, policy: Policy) -> Inbound {
        Inbound {
            stream_id: stream_id.into(),
            policy,
            pairs: Vec::new(),
        }
    }

    /// The id we sent in our response header; verify answers are routed back by it.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Handles any dialback element received on this inbound stream: `db:result` requests
    /// ([`Inbound::on_result_request`]) and `db:verify` requests ([`answer_verify`]).
    /// `hosted` says whether a (prepared) domain is ours; `secured` whether TLS is up.
    pub fn on_element(
        &mut self,
        el: &Element,
        hosted: &dyn Fn(&str) -> bool,
        secured: bool,
        secret: &[u8],
    ) -> Action {
        match parse(el) {
            Err(e) => Action::Close(e.stream_error()),
            // DB-POL-01 for verifications too: a verdict in the clear would tell an
            // eavesdropper whether a key is right.
            Ok(db)
                if db.kind == Kind::Verify
                    && db.verdict.is_none()
                    && self.policy.require_tls
                    && !secured =>
            {
                let mut out = Vec::new();
                let v = Verdict::Error(StanzaCondition::PolicyViolation.into());
                write_verify(
                    &db.to,
                    &db.from,
                    db.id.as_deref().unwrap_or_default(),
                    v,
                    &mut out,
                );
                Action::Answer(out)
            }
            Ok(db) if db.kind == Kind::Verify => answer_verify(&db, secret, hosted),
            Ok(db) => self.on_result_request(&db, hosted, secured),
        }
    }

    /// A `db:result` received on this stream (steps 1–2). See the module table.
    pub fn on_result_request(
        &mut self,
        db: &Dialback,
        hosted: &dyn Fn(&str) -> bool,
        secured: bool,
    ) -> Action {
        if db.kind != Kind::Result {
            return Action::Ignore(Ignored::WrongKind);
        }
        if db.verdict.is_some() {
            return Action::Ignore(Ignored::UnsolicitedAnswer);
        }
        let refuse = |condition: StanzaCondition| {
            let mut out = Vec::new();
            write_result(&db.to, &db.from, Verdict::Error(condition.into()), &mut out);
            Action::Answer(out)
        };
        if !hosted(&db.to) {
            return refuse(StanzaCondition::ItemNotFound);
        }
        if self.policy.require_tls && !secured {
            return refuse(StanzaCondition::PolicyViolation);
        }
        match self.state(&db.from, &db.to) {
            Some(InState::Pending) => return Action::Ignore(Ignored::DuplicatePending),
            Some(InState::Verified) => {
                let mut out = Vec::new();
                write_result(&db.to, &db.from, Verdict::Valid, &mut out);
                return Action::Answer(out);
            }
            None => {}
        }
        if self.pairs.len() >= self.policy.max_pairs {
            return refuse(StanzaCondition::ResourceConstraint);
        }
        let pair = Pair::new(db.from.clone(), db.to.clone());
        self.pairs.push((pair.clone(), InState::Pending));
        Action::Verify(VerifyRequest {
            pair,
            stream_id: self.stream_id.clone(),
            key: db.key.clone(),
        })
    }

    /// The Authoritative Server's verdict for a pending pair (steps 3–4). None when the pair
    /// is not pending on this stream: the outcome is stale or unsolicited and is dropped
    /// silently (XEP-0220 §2.1.2).
    pub fn on_verify_outcome(
        &mut self,
        sender: &str,
        target: &str,
        outcome: VerifyOutcome,
    ) -> Option<Reply> {
        let at = self
            .pairs
            .iter()
            .position(|(p, s)| *s == InState::Pending && p.is(sender, target))?;
        let mut bytes = Vec::new();
        let mut close = false;
        match outcome {
            VerifyOutcome::Valid => {
                self.pairs[at].1 = InState::Verified;
                write_result(target, sender, Verdict::Valid, &mut bytes);
            }
            VerifyOutcome::Invalid => {
                self.pairs.swap_remove(at);
                if self.pairs.iter().any(|(_, s)| *s == InState::Verified) {
                    let forbidden = Verdict::Error(StanzaCondition::Forbidden.into());
                    write_result(target, sender, forbidden, &mut bytes);
                } else {
                    write_result(target, sender, Verdict::Invalid, &mut bytes);
                    close = true;
                }
            }
            VerifyOutcome::Failed(why) => {
                self.pairs.swap_remove(at);
                write_result(target, sender, Verdict::Error(why.condition()), &mut bytes);
            }
        }
        Some(Reply { bytes, close })
    }

    /// Whether stanzas from `sender` to `target` are accepted on this stream (DB-RECV-01,
    /// DB-RECV-06). Both domains must be prepared.
    pub fn is_verified(&self, sender: &str, target: &str) -> bool {
        self.state(sender, target) == Some(InState::Verified)
    }

    /// The stanza gate: Ok for a verified pair; otherwise the stream error to close with:
    /// host-unknown when `from_domain` is verified on this stream for other targets only
    /// (CORE-S2S-07), invalid-from when it is not verified at all (CORE-S2S-06, DB-RECV-01).
    pub fn gate(&self, from_domain: &str, to_domain: &str) -> Result<(), StreamCondition> {
        if self.is_verified(from_domain, to_domain) {
            Ok(())
        } else if self
            .pairs
            .iter()
            .any(|(p, s)| *s == InState::Verified && p.sender == from_domain)
        {
            Err(StreamCondition::HostUnknown)
        } else {
            Err(StreamCondition::InvalidFrom)
        }
    }

    /// Pairs awaiting a verdict.
    pub fn pending(&self) -> impl Iterator<Item = &Pair> {
        self.pairs
            .iter()
            .filter(|(_, s)| *s == InState::Pending)
            .map(|(p, _)| p)
    }

    fn state(&self, sender: &str, target: &str) -> Option<InState> {
        self.pairs
            .iter()
            .find(|(p, _)| p.is(sender, target))
            .map(|(_, s)| *s)
    }
}

/// The Authoritative Server answering a `db:verify` request (DB-AUTH-01/02); stateless.
///
/// `to` must be hosted, else `type='error'` item-not-found (the stream stays open). The key is
/// recomputed with receiving = `from`, originating = `to`, stream id = `id` and compared in
/// constant time. The answer swaps `from`/`to` and copies `id`. A `db:verify` carrying `type`
/// here is unsolicited (DB-SEC-02) and ignored.
pub fn answer_verify(db: &Dialback, secret: &[u8], hosted: &dyn Fn(&str) -> bool) -> Action {
    if db.kind != Kind::Verify {
        return Action::Ignore(Ignored::WrongKind);
    }
    if db.verdict.is_some() {
        return Action::Ignore(Ignored::UnsolicitedAnswer);
    }
    let id = db.id.as_deref().unwrap_or_default();
    let verdict = if !hosted(&db.to) {
        Verdict::Error(StanzaCondition::ItemNotFound.into())
    } else if key_matches(secret, &db.from, &db.to, id, &db.key) {
        Verdict::Valid
    } else {
        Verdict::Invalid
    };
    let mut out = Vec::new();
    write_verify(&db.to, &db.from, id, verdict, &mut out);
    Action::Answer(out)
}

// ---------------------------------------------------------------------------------------------
// Initiating Server, and Receiving Server asking (outbound stream)
// ---------------------------------------------------------------------------------------------

/// Whether a new target domain may be multiplexed onto an existing outbound stream
/// (DB-OUT-02, XEP-0220 §2.6.2): only when the peer advertised dialback error handling.
/// Sender multiplexing needs no permission.
pub fn may_multiplex(peer_advertised_errors: bool) -> bool {
    peer_advertised_errors
}

/// Why the Receiving Server did not authorize a pair we asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `type='invalid'`: the Authoritative Server rejected our key.
    Invalid,
    /// `type='error'` with this condition.
    Error(Condition),
    /// The stream closed, or the caller's timer expired, before an answer (XEP-0220 §2.1.1:
    /// treated as a dialback error).
    Closed,
}

/// The stanza error to bounce queued stanzas with when a pair is refused (DB-OUT-01):
///
/// | Refusal              | Bounce condition      |
/// |----------------------|-----------------------|
/// | `invalid`            | internal-server-error |
/// | `error` (any)        | remote-server-timeout |
/// | closed / timed out   | remote-server-timeout |
///
/// XEP-0220 §2.1.1 and §2.5 mandate remote-server-timeout for every dialback error,
/// whatever its condition, so the condition is not passed on.
pub fn bounce_condition(refusal: Refusal) -> StanzaCondition {
    match refusal {
        Refusal::Invalid => StanzaCondition::InternalServerError,
        Refusal::Error(_) | Refusal::Closed => StanzaCondition::RemoteServerTimeout,
    }
}

/// Why [`Outbound`] refused to send a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundError {
    /// A domain is not a valid domain.
    BadDomain,
    /// A `db:result` for this pair is already awaiting its answer.
    AlreadyPending,
    /// This pair is already authorized on this stream.
    AlreadyAuthorized,
    /// A `db:verify` with this pair and id is already awaiting its answer.
    DuplicateVerify,
    /// A new target domain, and the peer did not advertise dialback errors (DB-OUT-02): open
    /// a new stream instead.
    MultiplexRefused,
    /// The bound on requests for this stream is reached: use another stream.
    Full,
}

/// What an answer received on an outbound stream means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundEvent {
    /// `db:result type='valid'` for a pair we asked for: send its queued stanzas.
    Authorized(Pair),
    /// `db:result type='invalid'|'error'` for a pair we asked for: bounce its queued stanzas
    /// with [`bounce_condition`].
    Refused(Pair, Refusal),
    /// `db:verify type=…` for a verification we asked for: route the outcome to the inbound
    /// stream with id `id` via [`Inbound::on_verify_outcome`] with `pair`.
    Verified {
        /// The pair verified: `sender` is the answer's `from` (the Authoritative Server's
        /// domain), `target` its `to` (ours).
        pair: Pair,
        /// The inbound stream id the verification was for.
        id: String,
        /// The verdict.
        outcome: VerifyOutcome,
    },
    /// An answer matching no request sent on this stream in this direction with these
    /// `from`/`to`/`id` (DB-SEC-01): ignore it (and log). It changes nothing.
    Unsolicited,
    /// A dialback request (no `type`) on an outbound stream: without XEP-0288 streams are
    /// unidirectional, so it is ignored like an unsolicited answer (DB-SEC-02).
    UnexpectedRequest,
    /// A malformed element: close the stream with this error.
    Close(StreamError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutState {
    Pending,
    Authorized,
}

/// Requests left unanswered when an outbound stream is closed; see [`Outbound::close`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// Our `db:result` requests still pending: bounce their queues with
    /// `bounce_condition(Refusal::Closed)`.
    pub results: Vec<Pair>,
    /// Our `db:verify` requests still pending, as (pair, inbound stream id): answer each
    /// inbound stream with `VerifyOutcome::Failed(VerifyFailure::Timeout)`.
    pub verifies: Vec<(Pair, String)>,
}

/// Dialback state of one outbound s2s stream: the requests we sent on it, and what they
/// authorized. See the module table.
#[derive(Clone, Debug)]
pub struct Outbound {
    stream_id: String,
    max_pairs: usize,
    peer_errors: bool,
    /// Our `db:result` requests, keyed (sender = our domain, target = peer domain).
    results: Vec<(Pair, OutState)>,
    /// Our pending `db:verify` requests, keyed (sender = `to` of the request, target =
    /// `from`) and the inbound stream id.
    verifies: Vec<(Pair, String)>,
}

impl Outbound {
    /// State for an outbound stream whose peer sent `stream_id` in its response header. At
    /// most `max_pairs` result pairs and `max_pairs` pending verifications are held.
    pub fn new(stream_id: impl Into<String>, max_pairs: usize) -> Outbound {
        Outbound {
            stream_id: stream_id.into(),
            max_pairs,
            peer_errors: false,
            results: Vec::new(),
            verifies: Vec::new(),
        }
    }

    /// Records the peer's `<stream:features/>` (for DB-OUT-02).
    pub fn set_peer_features(&mut self, features: &Element) {
        self.peer_errors = advertises_errors(features);
    }

    /// Whether the peer advertised dialback error handling.
    pub fn peer_advertised_errors(&self) -> bool {
        self.peer_errors
    }

    /// Whether a `db:result` for `target` may go on this stream: it is the first target, one
    /// already used, or the peer allows target multiplexing (DB-OUT-02).
    pub fn may_add_target(&self, target: &str) -> bool {
        self.results.is_empty()
            || self.results.iter().any(|(p, _)| p.target == target)
            || may_multiplex(self.peer_errors)
    }

    /// Step 1: the `db:result` asking the peer to authorize `sender` → `target`, with the
    /// XEP-0185 key for this stream's id. Records the request; queue stanzas for the pair
    /// until [`OutboundEvent::Authorized`].
    pub fn request_result(
        &mut self,
        secret: &[u8],
        sender: &str,
        target: &str,
    ) -> Result<Vec<u8>, OutboundError> {
        let sender = nameprep_domain(sender).map_err(|_| OutboundError::BadDomain)?;
        let target = nameprep_domain(target).map_err(|_| OutboundError::BadDomain)?;
        match self.result_state(&sender, &target) {
            Some(OutState::Pending) => return Err(OutboundError::AlreadyPending),
            Some(OutState::Authorized) => return Err(OutboundError::AlreadyAuthorized),
            None => {}
        }
        if !self.may_add_target(&target) {
            return Err(OutboundError::MultiplexRefused);
        }
        if self.results.len() >= self.max_pairs {
            return Err(OutboundError::Full);
        }
        let k = key(secret, &target, &sender, &self.stream_id);
        let mut out = Vec::new();
        write_result_request(&sender, &target, &k, &mut out);
        self.results
            .push((Pair::new(sender, target), OutState::Pending));
        Ok(out)
    }

    /// Step 2: the `db:verify` for `req`, recorded so that only its exact answer is accepted.
    pub fn send_verify(&mut self, req: &VerifyRequest) -> Result<Vec<u8>, OutboundError> {
        if self
            .verifies
            .iter()
            .any(|(p, id)| *p == req.pair && *id == req.stream_id)
        {
            return Err(OutboundError::DuplicateVerify);
        }
        if self.verifies.len() >= self.max_pairs {
            return Err(OutboundError::Full);
        }
        let mut out = Vec::new();
        req.write(&mut out);
        self.verifies
            .push((req.pair.clone(), req.stream_id.clone()));
        Ok(out)
    }

    /// An element received on this outbound stream (steps 3 and 4). Only an answer whose
    /// kind, direction (`from` = the peer side of the request, `to` = our side), `from`, `to`
    /// and (for `db:verify`) `id` match a pending request is acted on (DB-SEC-01); it then
    /// consumes the request.
    pub fn on_answer(&mut self, el: &Element) -> OutboundEvent {
        let db = match parse(el) {
            Ok(db) => db,
            Err(e) => return OutboundEvent::Close(e.stream_error()),
        };
        let Some(verdict) = db.verdict else {
            return OutboundEvent::UnexpectedRequest;
        };
        match db.kind {
            Kind::Result => {
                // We sent from=sender to=target; the answer comes from=target to=sender.
                let Some(at) = self
                    .results
                    .iter()
                    .position(|(p, s)| *s == OutState::Pending && p.is(&db.to, &db.from))
                else {
                    return OutboundEvent::Unsolicited;
                };
                match verdict {
                    Verdict::Valid => {
                        self.results[at].1 = OutState::Authorized;
                        OutboundEvent::Authorized(self.results[at].0.clone())
                    }
                    Verdict::Invalid => {
                        OutboundEvent::Refused(self.results.swap_remove(at).0, Refusal::Invalid)
                    }
                    Verdict::Error(c) => {
                        OutboundEvent::Refused(self.results.swap_remove(at).0, Refusal::Error(c))
                    }
                }
            }
            Kind::Verify => {
                // We sent from=target to=sender id=X; the answer comes from=sender to=target.
                let id = db.id.as_deref().unwrap_or_default();
                let Some(at) = self
                    .verifies
                    .iter()
                    .position(|(p, i)| p.is(&db.from, &db.to) && i == id)
                else {
                    return OutboundEvent::Unsolicited;
                };
                let (pair, id) = self.verifies.swap_remove(at);
                let outcome = match verdict {
                    Verdict::Valid => VerifyOutcome::Valid,
                    Verdict::Invalid => VerifyOutcome::Invalid,
                    Verdict::Error(c) => {
                        VerifyOutcome::Failed(VerifyFailure::AuthoritativeError(c))
                    }
                };
                OutboundEvent::Verified { pair, id, outcome }
            }
        }
    }

    /// Whether stanzas from `sender` to `target` may be sent on this stream.
    pub fn is_authorized(&self, sender: &str, target: &str) -> bool {
        self.result_state(sender, target) == Some(OutState::Authorized)
    }

    /// Gives up on a pending `db:result` (the caller's timer expired). True if it was
    /// pending; bounce its queue with `bounce_condition(Refusal::Closed)`. A late answer is
    /// then unsolicited.
    pub fn cancel_result(&mut self, sender: &str, target: &str) -> bool {
        let at = self
            .results
            .iter()
            .position(|(p, s)| *s == OutState::Pending && p.is(sender, target));
        at.map(|at| self.results.swap_remove(at)).is_some()
    }

    /// Gives up on a pending `db:verify` (the caller's timer expired). True if it was
    /// pending; answer the inbound stream with `VerifyFailure::Timeout`.
    pub fn cancel_verify(&mut self, pair: &Pair, id: &str) -> bool {
        let at = self.verifies.iter().position(|(p, i)| p == pair && i == id);
        at.map(|at| self.verifies.swap_remove(at)).is_some()
    }

    /// The stream is gone: returns every pending request and forgets all state.
    pub fn close(&mut self) -> Abandoned {
        let results = std::mem::take(&mut self.results)
            .into_iter()
            .filter(|(_, s)| *s == OutState::Pending)
            .map(|(p, _)| p)
            .collect();
        Abandoned {
            results,
            verifies: std::mem::take(&mut self.verifies),
        }
    }

    fn result_state(&self, sender: &str, target: &str) -> Option<OutState> {
        self.results
            .iter()
            .find(|(p, _)| p.is(sender, target))
            .map(|(_, s)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_element, Frame, Framer, Limits, StreamNs, NS_STREAMS};

    const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    /// XEP-0220 §2 example secrets and stream ids.
    const CAPULET_SECRET: &[u8] = b"s3cr3tf0rd14lb4ck";
    const MONTAGUE_SECRET: &[u8] = b"d14lb4ck43v3r";

    /// The namespace context of an s2s stream header declaring `db`.
    fn s2s_ns() -> StreamNs {
        StreamNs::new("jabber:server")
            .with_prefix("stream", NS_STREAMS)
            .with_prefix("db", DIALBACK)
    }

    fn el(xml: &str) -> Element {
        parse_element(xml.as_bytes(), &s2s_ns(), &Limits::default()).unwrap()
    }

    fn db(xml: &str) -> Dialback {
        parse(&el(xml)).unwrap()
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    fn ours(d: &str) -> bool {
        d == "montague.example" || d == "chat.montague.example"
    }

    fn result_request(from: &str, to: &str, key: &str) -> Element {
        el(&format!(
            "<db:result from='{from}' to='{to}'>{key}</db:result>"
        ))
    }

    fn inbound() -> Inbound {
        Inbound::new("D60000229F", Policy::default())
    }

    fn answer(a: Action) -> String {
        match a {
            Action::Answer(b) => String::from_utf8(b).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn verify(a: Action) -> VerifyRequest {
        match a {
            Action::Verify(v) => v,
            other => panic!("expected a verify, got {other:?}"),
        }
    }

    /// Sends a result request for `sender` → `target` on `i` and returns the verify request.
    fn ask(i: &mut Inbound, sender: &str, target: &str) -> VerifyRequest {
        verify(i.on_element(&result_request(sender, target, "k"), &ours, false, b"s"))
    }

    // --- DB-KEY-01 ----------------------------------------------------------------------

    #[test]
    fn db_key_01_xep0185_example_vector() {
        assert_eq!(
            hex(&Sha256::digest(CAPULET_SECRET)),
            "a7136eb1f46c9ef18c5e78c36ca257067c69b3d518285f0b18a96c33beae9acc"
        );
        assert_eq!(
            key(
                CAPULET_SECRET,
                "xmpp.example.com",
                "example.org",
                "D60000229F"
            ),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
    }

    #[test]
    fn db_key_01_xep0220_example_vectors() {
        // §2.1.1: capulet → montague on the stream montague gave id D60000229F.
        assert_eq!(
            key(
                CAPULET_SECRET,
                "montague.example",
                "capulet.example",
                "D60000229F"
            ),
            "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
        );
        // §2.2.2: the Authoritative montague recomputes for capulet's verify.
        assert_eq!(
            key(
                MONTAGUE_SECRET,
                "capulet.example",
                "montague.example",
                "417GAF25"
            ),
            "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"
        );
    }

    #[test]
    fn db_key_01_every_input_matters_and_spaces_delimit() {
        let k = key(b"s", "a.example", "b.example", "id");
        assert_eq!(k.len(), 64);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(k, key(b"t", "a.example", "b.example", "id"));
        assert_ne!(k, key(b"s", "b.example", "a.example", "id"));
        assert_ne!(k, key(b"s", "a.example", "b.example", "iD"));
        // XEP-0185: the delimiter keeps "example.in"+"form.example.org" apart from
        // "example.info"+"rm.example.org".
        assert_ne!(
            key(b"s", "example.in", "form.example.org", "x"),
            key(b"s", "example.info", "rm.example.org", "x")
        );
        // Deterministic: the same on every node sharing the secret.
        assert_eq!(k, key(b"s", "a.example", "b.example", "id"));
    }

    #[test]
    fn db_key_01_constant_time_match() {
        let k = key(b"s", "a.example", "b.example", "id");
        assert!(key_matches(b"s", "a.example", "b.example", "id", &k));
        assert!(!key_matches(b"s", "a.example", "b.example", "id", &k[..63]));
        assert!(!key_matches(b"s", "a.example", "b.example", "id", ""));
        assert!(!key_matches(
            b"s",
            "a.example",
            "b.example",
            "id",
            &k.to_uppercase()
        ));
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    // --- Parsing ------------------------------------------------------------------------

    #[test]
    fn parse_request_and_answers() {
        assert_eq!(
            db("<db:result from='Capulet.Example.' to='montague.example'>\n  ab12 \n</db:result>"),
            Dialback {
                kind: Kind::Result,
                from: "capulet.example".into(),
                to: "montague.example".into(),
                id: None,
                verdict: None,
                key: "ab12".into(),
            }
        );
        assert_eq!(
            db("<db:verify from='a.example' to='b.example' id='417GAF25' type='valid'/>"),
            Dialback {
                kind: Kind::Verify,
                from: "a.example".into(),
                to: "b.example".into(),
                id: Some("417GAF25".into()),
                verdict: Some(Verdict::Valid),
                key: String::new(),
            }
        );
        assert_eq!(
            db("<db:result from='a.example' to='b.example' id='ignored' type='invalid'/>").verdict,
            Some(Verdict::Invalid)
        );
        assert_eq!(
            db("<db:result from='a.example' to='b.example' id='ignored' type='invalid'/>").id,
            None
        );
    }

    #[test]
    fn parse_error_conditions() {
        let cond = |inner: &str| {
            db(&format!(
                "<db:result from='a.example' to='b.example' type='error'>{inner}</db:result>"
            ))
            .verdict
        };
        assert_eq!(
            cond("<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"),
            Some(Verdict::Error(StanzaCondition::ItemNotFound.into()))
        );
        assert_eq!(
            cond("<error type='wait'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                  <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>t</text></error>"),
            Some(Verdict::Error(StanzaCondition::RemoteServerTimeout.into()))
        );
        // Unknown condition, condition in the wrong namespace, no error child.
        assert_eq!(
            cond("<error type='cancel'><frobbed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"),
            Some(Verdict::Error(StanzaCondition::UndefinedCondition.into()))
        );
        assert_eq!(
            cond("<error type='cancel'><forbidden xmlns='urn:other'/></error>"),
            Some(Verdict::Error(StanzaCondition::UndefinedCondition.into()))
        );
        assert_eq!(
            cond(""),
            Some(Verdict::Error(StanzaCondition::UndefinedCondition.into()))
        );
        assert_eq!(
            cond("<error type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"),
            Some(Verdict::Error(Condition::RemoteConnectionFailed))
        );
        // Every condition name maps back.
        for c in StanzaCondition::ALL {
            let xml = format!(
                "<error type='cancel'><{} xmlns='{STANZAS}'/></error>",
                c.name()
            );
            assert_eq!(cond(&xml), Some(Verdict::Error(c.into())));
        }
    }

    #[test]
    fn parse_errors_and_their_stream_errors() {
        let err = |xml: &str| parse(&el(xml)).unwrap_err();
        assert_eq!(
            err("<db:result to='b.example'>k</db:result>"),
            ParseError::MissingFrom
        );
        assert_eq!(
            err("<db:result from='a.example'>k</db:result>"),
            ParseError::MissingTo
        );
        for bad in ["", "a..b", "exa mple", "a_b.example", "[::1", "a@b"] {
            assert_eq!(
                err(&format!(
                    "<db:result from='{bad}' to='b.example'>k</db:result>"
                )),
                ParseError::BadFrom,
                "{bad:?}"
            );
            assert_eq!(
                err(&format!(
                    "<db:result from='a.example' to='{bad}'>k</db:result>"
                )),
                ParseError::BadTo,
                "{bad:?}"
            );
        }
        assert_eq!(
            err("<db:verify from='a.example' to='b.example'>k</db:verify>"),
            ParseError::MissingId
        );
        assert_eq!(
            err("<db:verify from='a.example' to='b.example' id=''>k</db:verify>"),
            ParseError::MissingId
        );
        assert_eq!(
            err("<db:result from='a.example' to='b.example' type='VALID'/>"),
            ParseError::BadType
        );
        assert_eq!(
            err("<db:result from='a.example' to='b.example'> </db:result>"),
            ParseError::MissingKey
        );
        assert_eq!(
            err("<db:foo from='a.example' to='b.example'/>"),
            ParseError::NotDialback
        );
        assert_eq!(
            err("<result from='a.example' to='b.example'>k</result>"),
            ParseError::NotDialback
        );
        assert_eq!(
            ParseError::BadFrom.stream_error().condition,
            StreamCondition::ImproperAddressing
        );
        assert_eq!(
            ParseError::MissingTo.stream_error().condition,
            StreamCondition::ImproperAddressing
        );
        assert_eq!(
            ParseError::NotDialback.stream_error().condition,
            StreamCondition::UnsupportedStanzaType
        );
        for e in [
            ParseError::MissingId,
            ParseError::BadType,
            ParseError::MissingKey,
        ] {
            assert_eq!(e.stream_error().condition, StreamCondition::BadFormat);
        }
    }

    // --- DB-ADV-01..03 ------------------------------------------------------------------

    #[test]
    fn db_adv_01_header_declaration_binds_db_prefix() {
        assert_eq!(STREAM_HEADER_DECL, " xmlns:db='jabber:server:dialback'");
        let header = format!(
            "<stream:stream xmlns='jabber:server' xmlns:stream='{NS_STREAMS}'{STREAM_HEADER_DECL} \
             from='capulet.example' to='montague.example' version='1.0'>"
        );
        let mut wire = header.into_bytes();
        write_result_request("capulet.example", "montague.example", "ab12", &mut wire);
        let mut framer = Framer::new(Limits::default());
        let (frame, used) = framer.next(&wire).unwrap().unwrap();
        assert!(matches!(frame, Frame::StreamOpen(_)));
        let rest = &wire[used..];
        let (frame, _) = framer.next(rest).unwrap().unwrap();
        let Frame::Element(raw) = frame else {
            panic!("expected an element")
        };
        let parsed = parse_element(raw, framer.stream_ns(), &Limits::default()).unwrap();
        assert_eq!(parsed.ns, DIALBACK);
        assert_eq!(parse(&parsed).unwrap().key, "ab12");
    }

    #[test]
    fn db_adv_02_feature_and_peer_detection() {
        let mut out = Vec::new();
        write_feature(&mut out);
        assert_eq!(
            text(&out),
            "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
        );
        let features = |inner: &str| el(&format!("<stream:features>{inner}</stream:features>"));
        assert!(advertises_errors(&features(text(&out))));
        assert!(!advertises_errors(&features(
            "<dialback xmlns='urn:xmpp:features:dialback'/>"
        )));
        assert!(!advertises_errors(&features(
            "<dialback xmlns='urn:xmpp:features:dialbackx'><errors/></dialback>"
        )));
        assert!(!advertises_errors(&features("")));
    }

    #[test]
    fn db_adv_03_any_prefix_accepted_db_prefix_written() {
        let want = db("<db:result from='a.example' to='b.example'>k</db:result>");
        // Another prefix bound on the stream header.
        let other = StreamNs::new("jabber:server").with_prefix("dbx", DIALBACK);
        let e = parse_element(
            b"<dbx:result from='a.example' to='b.example'>k</dbx:result>",
            &other,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(parse(&e).unwrap(), want);
        // A prefix declared on the element itself, and the default namespace.
        assert_eq!(
            db("<q:result xmlns:q='jabber:server:dialback' from='a.example' to='b.example'>k</q:result>"),
            want
        );
        assert_eq!(
            db("<result xmlns='jabber:server:dialback' from='a.example' to='b.example'>k</result>"),
            want
        );
        // The db prefix bound to something else is not dialback.
        assert_eq!(
            parse(&el(
                "<db:result xmlns:db='urn:not-dialback' from='a.example' to='b.example'>k</db:result>"
            )),
            Err(ParseError::NotDialback)
        );
        // Every writer emits the db: prefix.
        let mut out = Vec::new();
        write_result("a", "b", Verdict::Valid, &mut out);
        write_verify("a", "b", "i", Verdict::Invalid, &mut out);
        write_verify_request("a", "b", "i", "k", &mut out);
        write_result_request("a", "b", "k", &mut out);
        assert_eq!(text(&out).matches("<db:").count(), 4);
        assert!(!text(&out).contains(" xmlns"));
    }

    // --- Writers ------------------------------------------------------------------------

    #[test]
    fn writers_exact_bytes_and_escaping() {
        let mut out = Vec::new();
        write_result_request("capulet.example", "montague.example", "k<&", &mut out);
        assert_eq!(
            text(&out),
            "<db:result from='capulet.example' to='montague.example'>k&lt;&amp;</db:result>"
        );
        out.clear();
        write_verify_request("a.example", "b.example", "i'd\"&", "k", &mut out);
        assert_eq!(
            text(&out),
            "<db:verify from='a.example' to='b.example' id='i&apos;d&quot;&amp;'>k</db:verify>"
        );
        out.clear();
        write_verify(
            "montague.example",
            "capulet.example",
            "417GAF25",
            Verdict::Error(StanzaCondition::ItemNotFound.into()),
            &mut out,
        );
        assert_eq!(
            text(&out),
            "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='error'>\
             <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             </error></db:verify>"
        );
        // What we write parses back to what we meant.
        for verdict in [
            Verdict::Valid,
            Verdict::Invalid,
            Verdict::Error(StanzaCondition::PolicyViolation.into()),
        ] {
            out.clear();
            write_result("b.example", "a.example", verdict, &mut out);
            assert_eq!(db(text(&out)).verdict, Some(verdict));
        }
    }

    // --- DB-RECV-01..07, DB-POL-01 ------------------------------------------------------

    #[test]
    fn db_recv_01_no_stanzas_until_verified() {
        let mut i = inbound();
        assert_eq!(
            i.gate("capulet.example", "montague.example"),
            Err(StreamCondition::InvalidFrom)
        );
        ask(&mut i, "capulet.example", "montague.example");
        assert!(!i.is_verified("capulet.example", "montague.example"));
        assert_eq!(
            i.gate("capulet.example", "montague.example"),
            Err(StreamCondition::InvalidFrom)
        );
        assert_eq!(
            i.pending().cloned().collect::<Vec<_>>(),
            vec![Pair::new("capulet.example", "montague.example")]
        );
        i.on_verify_outcome("capulet.example", "montague.example", VerifyOutcome::Valid)
            .unwrap();
        assert_eq!(i.gate("capulet.example", "montague.example"), Ok(()));
        // Verified for one target only: another target of ours is not negotiated.
        assert_eq!(
            i.gate("capulet.example", "chat.montague.example"),
            Err(StreamCondition::HostUnknown)
        );
        assert_eq!(
            i.gate("rooms.capulet.example", "montague.example"),
            Err(StreamCondition::InvalidFrom)
        );
    }

    #[test]
    fn db_recv_02_verify_request_to_authoritative() {
        let mut i = inbound();
        assert_eq!(i.stream_id(), "D60000229F");
        let req = verify(i.on_element(
            &result_request(
                "Capulet.Example",
                "montague.example",
                " b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3 ",
            ),
            &ours,
            false,
            MONTAGUE_SECRET,
        ));
        assert_eq!(
            req,
            VerifyRequest {
                pair: Pair::new("capulet.example", "montague.example"),
                stream_id: "D60000229F".into(),
                key: "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3".into(),
            }
        );
        let mut out = Vec::new();
        req.write(&mut out);
        assert_eq!(
            text(&out),
            "<db:verify from='montague.example' to='capulet.example' id='D60000229F'>\
             b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3</db:verify>"
        );
    }

    #[test]
    fn db_recv_03_valid_answers_and_authorizes() {
        let mut i = inbound();
        ask(&mut i, "capulet.example", "montague.example");
        let r = i
            .on_verify_outcome("capulet.example", "montague.example", VerifyOutcome::Valid)
            .unwrap();
        assert_eq!(
            text(&r.bytes),
            "<db:result from='montague.example' to='capulet.example' type='valid'/>"
        );
        assert!(!r.close);
        assert!(i.is_verified("capulet.example", "montague.example"));
        assert_eq!(i.pending().count(), 0);
        // A second outcome for the same pair is stale.
        assert_eq!(
            i.on_verify_outcome(
                "capulet.example",
                "montague.example",
                VerifyOutcome::Invalid
            ),
            None
        );
        assert!(i.is_verified("capulet.example", "montague.example"));
        // A repeated request for a verified pair is answered valid at once, with no verify.
        assert_eq!(
            answer(i.on_element(
                &result_request("capulet.example", "montague.example", "k2"),
                &ours,
                false,
                b"s"
            )),
            "<db:result from='montague.example' to='capulet.example' type='valid'/>"
        );
    }

    #[test]
    fn db_recv_04_invalid_closes_when_alone() {
        let mut i = inbound();
        ask(&mut i, "capulet.example", "montague.example");
        let r = i
            .on_verify_outcome(
                "capulet.example",
                "montague.example",
                VerifyOutcome::Invalid,
            )
            .unwrap();
        assert_eq!(
            r,
            Reply {
                bytes: b"<db:result from='montague.example' to='capulet.example' type='invalid'/>"
                    .to_vec(),
                close: true,
            }
        );
        assert!(!i.is_verified("capulet.example", "montague.example"));
    }

    #[test]
    fn db_recv_04_invalid_is_forbidden_error_when_another_pair_is_verified() {
        let mut i = inbound();
        ask(&mut i, "capulet.example", "montague.example");
        i.on_verify_outcome("capulet.example", "montague.example", VerifyOutcome::Valid)
            .unwrap();
        ask(&mut i, "rooms.capulet.example", "montague.example");
        let r = i
            .on_verify_outcome(
                "rooms.capulet.example",
                "montague.example",
                VerifyOutcome::Invalid,
            )
            .unwrap();
        assert_eq!(
            text(&r.bytes),
            "<db:result from='montague.example' to='rooms.capulet.example' type='error'>\
             <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>\
             </db:result>"
        );
        assert!(!r.close);
        assert!(!i.is_verified("rooms.capulet.example", "montague.example"));
        assert!(i.is_verified("capulet.example", "montague.example"));
        // The refused pair may try again.
        ask(&mut i, "rooms.capulet.example", "montague.example");
    }

    #[test]
    fn db_recv_04_pending_pairs_do_not_count_as_verified() {
        let mut i = inbound();
        ask(&mut i, "capulet.example", "montague.example");
        ask(&mut i, "rooms.capulet.example", "montague.example");
        let r = i
            .on_verify_outcome(
                "capulet.example",
                "montague.example",
                VerifyOutcome::Invalid,
            )
            .unwrap();
        assert!(r.close);
    }

    #[test]
    fn db_recv_05_unhosted_target_is_a_dialback_error_not_a_stream_error() {
        let mut i = inbound();
        let a = i.on_element(
            &result_request("capulet.example", "elsewhere.example", "k"),
            &ours,
            false,
            b"s",
        );
        assert_eq!(
            answer(a),
            "<db:result from='elsewhere.example' to='capulet.example' type='error'>\
             <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             </error></db:result>"
        );
        assert_eq!(i.pending().count(), 0);
        // The stream carries on: the next pair is verified normally.
        ask(&mut i, "capulet.example", "montague.example");
    }

    #[test]
    fn db_recv_06_other_pairs_flow_while_one_is_pending() {
        let mut i = inbound();
        ask(&mut i, "capulet.example", "montague.example");
        i.on_verify_outcome("capulet.example", "montague.example", VerifyOutcome::Valid)
            .unwrap();
        ask(&mut i, "capulet.example", "chat.montague.example");
        assert_eq!(i.gate("capulet.example", "montague.example"), Ok(()));
        assert!(!i.is_verified("capulet.example", "chat.montague.example"));
        // db:verify requests are still answered, db:result requests still processed.
        let v = el(&format!(
            "<db:verify from='capulet.example' to='montague.example' id='x'>{}</db:verify>",
            key(b"s", "capulet.example", "montague.example", "x")
        ));
        assert!(answer(i.on_element(&v, &ours, false, b"s")).contains("type='valid'"));
        ask(&mut i, "rooms.capulet.example", "montague.example");
        assert_eq!(i.pending().count(), 2);
    }

    #[test]
    fn db_recv_07_unreachable_authoritative_is_a_dialback_error() {
        let cases = [
            (
                VerifyFailure::NotFound,
                "<error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            ),
            (
                VerifyFailure::ConnectionFailed,
                "<error type='cancel'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            ),
            (
                VerifyFailure::Timeout,
                "<error type='wait'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            ),
            (
                VerifyFailure::AuthoritativeError(StanzaCondition::ItemNotFound.into()),
                "<error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            ),
        ];
        for (failure, error) in cases {
            let mut i = inbound();
            ask(&mut i, "capulet.example", "montague.example");
            let r = i
                .on_verify_outcome(
                    "capulet.example",
                    "montague.example",
                    VerifyOutcome::Failed(failure),
                )
                .unwrap();
            assert_eq!(
                text(&r.bytes),
                format!(
                    "<db:result from='montague.example' to='capulet.example' type='error'>\
                     {error}</db:result>"
                ),
                "{failure:?}"
            );
            assert!(!r.close);
            assert!(!i.is_verified("capulet.example", "montague.example"));
            assert_eq!(i.pending().count(), 0);
        }
    }

    #[test]
    fn db_pol_01_plaintext_refused_when_tls_required() {
        let policy = Policy {
            require_tls: true,
            ..Policy::default()
        };
        let mut i = Inbound::new("id1", policy);
        let req = result_request("capulet.example", "montague.example", "k");
        assert_eq!(
            answer(i.on_element(&req, &ours, false, b"s")),
            "<db:result from='montague.example' to='capulet.example' type='error'>\
             <error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             </error></db:result>"
        );
        assert_eq!(i.pending().count(), 0);
        assert_eq!(
            verify(i.on_element(&req, &ours, true, b"s")).pair,
            Pair::new("capulet.example", "montague.example")
        );
    }

    #[test]
    fn db_pol_01_plaintext_verify_refused_when_tls_required() {
        let policy = Policy {
            require_tls: true,
            ..Policy::default()
        };
        let mut i = Inbound::new("id1", policy);
        let req = el(
            "<db:verify xmlns:db='jabber:server:dialback' from='capulet.example' \
                      to='montague.example' id='s1'>k</db:verify>",
        );
        assert_eq!(
            answer(i.on_element(&req, &ours, false, b"s")),
            "<db:verify from='montague.example' to='capulet.example' id='s1' type='error'>\
             <error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             </error></db:verify>"
        );
        // Over TLS it is judged: a wrong key is invalid.
        assert_eq!(
            answer(i.on_element(&req, &ours, true, b"s")),
            "<db:verify from='montague.example' to='capulet.example' id='s1' type='invalid'/>"
        );
    }

    #[test]
    fn duplicate_pending_request_is_ignored() {
        let mut i = inbound();
        ask(&mut i, "capulet.example", "montague.example");
        assert_eq!(
            i.on_element(
                &result_request("capulet.example", "montague.example", "other"),
                &ours,
                false,
                b"s"
            ),
            Action::Ignore(Ignored::DuplicatePending)
        );
        assert_eq!(i.pending().count(), 1);
    }

    #[test]
    fn pairs_per_stream_are_bounded() {
        let policy = Policy {
            max_pairs: 2,
            ..Policy::default()
        };
        let mut i = Inbound::new("id1", policy);
        ask(&mut i, "a.example", "montague.example");
        ask(&mut i, "b.example", "montague.example");
        assert_eq!(
            answer(i.on_element(
                &result_request("c.example", "montague.example", "k"),
                &ours,
                false,
                b"s"
            )),
            "<db:result from='montague.example' to='c.example' type='error'>\
             <error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             </error></db:result>"
        );
        // A failed pair frees its slot.
        i.on_verify_outcome(
            "a.example",
            "montague.example",
            VerifyOutcome::Failed(VerifyFailure::Timeout),
        )
        .unwrap();
        ask(&mut i, "c.example", "montague.example");
        assert_eq!(Policy::default().max_pairs, 64);
    }

    #[test]
    fn outcome_for_unknown_pair_is_dropped() {
        let mut i = inbound();
        assert_eq!(
            i.on_verify_outcome("capulet.example", "montague.example", VerifyOutcome::Valid),
            None
        );
        assert!(!i.is_verified("capulet.example", "montague.example"));
        ask(&mut i, "capulet.example", "montague.example");
        // Swapped pair does not match the pending one.
        assert_eq!(
            i.on_verify_outcome("montague.example", "capulet.example", VerifyOutcome::Valid),
            None
        );
        assert!(!i.is_verified("capulet.example", "montague.example"));
    }

    #[test]
    fn malformed_element_on_inbound_closes() {
        let mut i = inbound();
        let a = i.on_element(
            &el("<db:result from='a..b' to='montague.example'>k</db:result>"),
            &ours,
            false,
            b"s",
        );
        assert_eq!(
            a,
            Action::Close(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "malformed dialback from"
            ))
        );
        assert_eq!(i.pending().count(), 0);
    }

    #[test]
    fn wrong_kind_for_direct_handlers() {
        let mut i = inbound();
        let v = db("<db:verify from='a.example' to='montague.example' id='i'>k</db:verify>");
        let r = db("<db:result from='a.example' to='montague.example'>k</db:result>");
        assert_eq!(
            i.on_result_request(&v, &ours, true),
            Action::Ignore(Ignored::WrongKind)
        );
        assert_eq!(
            answer_verify(&r, b"s", &ours),
            Action::Ignore(Ignored::WrongKind)
        );
        assert_eq!(i.pending().count(), 0);
    }

    // --- DB-SEC-02 ----------------------------------------------------------------------

    #[test]
    fn db_sec_02_typed_requests_on_inbound_are_unsolicited() {
        let mut i = inbound();
        for ty in ["valid", "invalid", "error"] {
            let r = el(&format!(
                "<db:result from='capulet.example' to='montague.example' type='{ty}'>k</db:result>"
            ));
            assert_eq!(
                i.on_element(&r, &ours, true, b"s"),
                Action::Ignore(Ignored::UnsolicitedAnswer)
            );
            let v = el(&format!(
                "<db:verify from='capulet.example' to='montague.example' id='i' type='{ty}'/>"
            ));
            assert_eq!(
                i.on_element(&v, &ours, true, b"s"),
                Action::Ignore(Ignored::UnsolicitedAnswer)
            );
        }
        assert_eq!(i.pending().count(), 0);
        assert!(!i.is_verified("capulet.example", "montague.example"));
    }

    #[test]
    fn db_sec_02_requests_on_outbound_are_not_answers() {
        let mut o = Outbound::new("417GAF25", 8);
        o.request_result(CAPULET_SECRET, "capulet.example", "montague.example")
            .unwrap();
        let e = o.on_answer(&el(
            "<db:result from='montague.example' to='capulet.example'>k</db:result>",
        ));
        assert_eq!(e, OutboundEvent::UnexpectedRequest);
        assert!(!o.is_authorized("capulet.example", "montague.example"));
    }

    // --- DB-AUTH-01/02 ------------------------------------------------------------------

    #[test]
    fn db_auth_01_valid_and_invalid_with_swapped_addresses_and_copied_id() {
        let mut i = Inbound::new("X", Policy::default());
        let request = |k: &str, id: &str| {
            el(&format!(
                "<db:verify from='capulet.example' id='{id}' to='montague.example'>\n  {k}\n</db:verify>"
            ))
        };
        let good = "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d";
        assert_eq!(
            answer(i.on_element(&request(good, "417GAF25"), &ours, false, MONTAGUE_SECRET)),
            "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>"
        );
        let invalid =
            "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='invalid'/>";
        // Wrong key, wrong secret, key for another stream id.
        let mut bad = good.to_owned();
        bad.replace_range(0..1, "3");
        assert_eq!(
            answer(i.on_element(&request(&bad, "417GAF25"), &ours, false, MONTAGUE_SECRET)),
            invalid
        );
        assert_eq!(
            answer(i.on_element(&request(good, "417GAF25"), &ours, false, CAPULET_SECRET)),
            invalid
        );
        assert_eq!(
            answer(i.on_element(&request(good, "417GAF26"), &ours, false, MONTAGUE_SECRET)),
            "<db:verify from='montague.example' to='capulet.example' id='417GAF26' type='invalid'/>"
        );
        // Answering verifies creates no inbound state.
        assert_eq!(i.pending().count(), 0);
        assert!(!i.is_verified("capulet.example", "montague.example"));
    }

    #[test]
    fn db_auth_02_unhosted_verify_target_is_item_not_found() {
        let v = db(
            "<db:verify from='capulet.example' id='417GAF25' to='elsewhere.example'>k</db:verify>",
        );
        assert_eq!(
            answer(answer_verify(&v, MONTAGUE_SECRET, &ours)),
            "<db:verify from='elsewhere.example' to='capulet.example' id='417GAF25' type='error'>\
             <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             </error></db:verify>"
        );
    }

    // --- Outbound, DB-OUT-01/02, DB-SEC-01 ----------------------------------------------

    /// An outbound stream from capulet to montague, which gave stream id D60000229F, with
    /// the pair capulet → montague requested.
    fn outbound() -> Outbound {
        let mut o = Outbound::new("D60000229F", DEFAULT_MAX_PAIRS);
        let sent = o
            .request_result(CAPULET_SECRET, "Capulet.Example", "montague.example")
            .unwrap();
        assert_eq!(
            text(&sent),
            "<db:result from='capulet.example' to='montague.example'>\
             b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3</db:result>"
        );
        o
    }

    fn capulet_montague() -> Pair {
        Pair::new("capulet.example", "montague.example")
    }

    #[test]
    fn db_out_01_valid_authorizes_the_pair() {
        let mut o = outbound();
        assert!(!o.is_authorized("capulet.example", "montague.example"));
        assert_eq!(
            o.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='valid'/>"
            )),
            OutboundEvent::Authorized(capulet_montague())
        );
        assert!(o.is_authorized("capulet.example", "montague.example"));
        assert_eq!(
            o.request_result(CAPULET_SECRET, "capulet.example", "montague.example"),
            Err(OutboundError::AlreadyAuthorized)
        );
        assert_eq!(o.close(), Abandoned::default());
    }

    #[test]
    fn db_out_01_invalid_and_error_bounce() {
        let mut o = outbound();
        assert_eq!(
            o.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='invalid'/>"
            )),
            OutboundEvent::Refused(capulet_montague(), Refusal::Invalid)
        );
        assert!(!o.is_authorized("capulet.example", "montague.example"));
        let mut o = outbound();
        assert_eq!(
            o.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='error'>\
                 <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                 </error></db:result>"
            )),
            OutboundEvent::Refused(
                capulet_montague(),
                Refusal::Error(StanzaCondition::ItemNotFound.into())
            )
        );
        assert!(!o.is_authorized("capulet.example", "montague.example"));
        // The refused pair may be asked again.
        o.request_result(CAPULET_SECRET, "capulet.example", "montague.example")
            .unwrap();
    }

    #[test]
    fn db_out_01_bounce_table() {
        assert_eq!(
            bounce_condition(Refusal::Invalid),
            StanzaCondition::InternalServerError
        );
        assert_eq!(
            bounce_condition(Refusal::Error(StanzaCondition::ItemNotFound.into())),
            StanzaCondition::RemoteServerTimeout
        );
        assert_eq!(
            bounce_condition(Refusal::Error(StanzaCondition::PolicyViolation.into())),
            StanzaCondition::RemoteServerTimeout
        );
        assert_eq!(
            bounce_condition(Refusal::Closed),
            StanzaCondition::RemoteServerTimeout
        );
    }

    #[test]
    fn db_out_01_close_and_cancel_abandon_pending_requests() {
        let mut o = outbound();
        assert_eq!(
            o.request_result(CAPULET_SECRET, "capulet.example", "montague.example"),
            Err(OutboundError::AlreadyPending)
        );
        let req = VerifyRequest {
            pair: Pair::new("romeo.example", "capulet.example"),
            stream_id: "in-1".into(),
            key: "k".into(),
        };
        o.send_verify(&req).unwrap();
        assert_eq!(
            o.close(),
            Abandoned {
                results: vec![capulet_montague()],
                verifies: vec![(req.pair.clone(), "in-1".into())],
            }
        );
        // After a close every answer is unsolicited.
        assert_eq!(
            o.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='valid'/>"
            )),
            OutboundEvent::Unsolicited
        );

        let mut o = outbound();
        o.send_verify(&req).unwrap();
        assert!(o.cancel_result("capulet.example", "montague.example"));
        assert!(!o.cancel_result("capulet.example", "montague.example"));
        assert!(o.cancel_verify(&req.pair, "in-1"));
        assert!(!o.cancel_verify(&req.pair, "in-1"));
        assert_eq!(
            o.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='valid'/>"
            )),
            OutboundEvent::Unsolicited
        );
        assert_eq!(
            o.on_answer(&el(
                "<db:verify from='romeo.example' to='capulet.example' id='in-1' type='valid'/>"
            )),
            OutboundEvent::Unsolicited
        );
        assert!(!o.is_authorized("capulet.example", "montague.example"));
    }

    #[test]
    fn db_out_02_target_multiplexing_needs_error_support() {
        assert!(!may_multiplex(false));
        assert!(may_multiplex(true));
        let mut o = outbound();
        assert!(!o.peer_advertised_errors());
        // Sender multiplexing is always allowed; target multiplexing is not.
        o.request_result(CAPULET_SECRET, "rooms.capulet.example", "montague.example")
            .unwrap();
        assert!(o.may_add_target("montague.example"));
        assert!(!o.may_add_target("chat.montague.example"));
        assert_eq!(
            o.request_result(CAPULET_SECRET, "capulet.example", "chat.montague.example"),
            Err(OutboundError::MultiplexRefused)
        );
        o.set_peer_features(&el(
            "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>\
             </stream:features>",
        ));
        assert!(o.peer_advertised_errors());
        assert!(o.may_add_target("chat.montague.example"));
        o.request_result(CAPULET_SECRET, "capulet.example", "chat.montague.example")
            .unwrap();
    }

    #[test]
    fn outbound_bounds_and_bad_domains() {
        let mut o = Outbound::new("s", 1);
        assert_eq!(
            o.request_result(b"s", "a..b", "montague.example"),
            Err(OutboundError::BadDomain)
        );
        assert_eq!(
            o.request_result(b"s", "capulet.example", ""),
            Err(OutboundError::BadDomain)
        );
        o.request_result(b"s", "capulet.example", "montague.example")
            .unwrap();
        assert_eq!(
            o.request_result(b"s", "rooms.capulet.example", "montague.example"),
            Err(OutboundError::Full)
        );
        let req = |id: &str| VerifyRequest {
            pair: Pair::new("romeo.example", "capulet.example"),
            stream_id: id.into(),
            key: "k".into(),
        };
        assert_eq!(
            text(&o.send_verify(&req("i1")).unwrap()),
            "<db:verify from='capulet.example' to='romeo.example' id='i1'>k</db:verify>"
        );
        assert_eq!(
            o.send_verify(&req("i1")),
            Err(OutboundError::DuplicateVerify)
        );
        assert_eq!(o.send_verify(&req("i2")), Err(OutboundError::Full));
    }

    #[test]
    fn outbound_verify_answers_route_to_the_inbound_stream() {
        // capulet, receiving on inbound stream 417GAF25 from montague, asks montague.
        let capulet = |d: &str| d == "capulet.example";
        let outcomes = [
            (
                "type='valid'/>",
                VerifyOutcome::Valid,
                "<db:result from='capulet.example' to='montague.example' type='valid'/>",
            ),
            (
                "type='invalid'/>",
                VerifyOutcome::Invalid,
                "<db:result from='capulet.example' to='montague.example' type='invalid'/>",
            ),
            (
                "type='error'><error type='cancel'><item-not-found \
                 xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>",
                VerifyOutcome::Failed(VerifyFailure::AuthoritativeError(
                    StanzaCondition::ItemNotFound.into(),
                )),
                "<db:result from='capulet.example' to='montague.example' type='error'>\
                 <error type='cancel'><remote-server-not-found \
                 xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
            ),
        ];
        for (tail, outcome, relayed) in outcomes {
            let mut i = Inbound::new("417GAF25", Policy::default());
            let req = verify(i.on_element(
                &result_request("montague.example", "capulet.example", "225cc5aa"),
                &capulet,
                false,
                CAPULET_SECRET,
            ));
            let mut o = Outbound::new("other-stream", DEFAULT_MAX_PAIRS);
            assert_eq!(
                text(&o.send_verify(&req).unwrap()),
                "<db:verify from='capulet.example' to='montague.example' id='417GAF25'>\
                 225cc5aa</db:verify>"
            );
            let got = o.on_answer(&el(&format!(
                "<db:verify from='montague.example' to='capulet.example' id='417GAF25' {tail}"
            )));
            assert_eq!(
                got,
                OutboundEvent::Verified {
                    pair: Pair::new("montague.example", "capulet.example"),
                    id: "417GAF25".into(),
                    outcome,
                }
            );
            let OutboundEvent::Verified { pair, id, outcome } = got else {
                unreachable!()
            };
            assert_eq!(id, i.stream_id());
            let reply = i
                .on_verify_outcome(&pair.sender, &pair.target, outcome)
                .unwrap();
            assert_eq!(text(&reply.bytes), relayed);
            assert_eq!(
                i.is_verified("montague.example", "capulet.example"),
                outcome == VerifyOutcome::Valid
            );
            // The request is consumed: a replay is unsolicited.
            assert_eq!(
                o.on_answer(&el(
                    "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>"
                )),
                OutboundEvent::Unsolicited
            );
        }
    }

    #[test]
    fn db_sec_01_unsolicited_result_answers_never_authorize() {
        let unsolicited = [
            // Nothing was asked for this pair.
            "<db:result from='montague.example' to='rooms.capulet.example' type='valid'/>",
            "<db:result from='evil.example' to='capulet.example' type='valid'/>",
            // Same domains, wrong direction (from = our sender, to = the peer's target).
            "<db:result from='capulet.example' to='montague.example' type='valid'/>",
            // A verify answer with the result's domains and the stream's id.
            "<db:verify from='montague.example' to='capulet.example' id='D60000229F' type='valid'/>",
            "<db:verify from='capulet.example' to='montague.example' id='D60000229F' type='valid'/>",
        ];
        for xml in unsolicited {
            let mut o = outbound();
            assert_eq!(o.on_answer(&el(xml)), OutboundEvent::Unsolicited, "{xml}");
            assert!(
                !o.is_authorized("capulet.example", "montague.example"),
                "{xml}"
            );
            assert!(
                !o.is_authorized("montague.example", "capulet.example"),
                "{xml}"
            );
            assert!(!o.is_authorized("capulet.example", "evil.example"), "{xml}");
            // The real request is still pending and still answerable.
            assert_eq!(
                o.on_answer(&el(
                    "<db:result from='montague.example' to='capulet.example' type='valid'/>"
                )),
                OutboundEvent::Authorized(capulet_montague())
            );
        }
        // An answer on another stream than the one the request went out on.
        let _asked = outbound();
        let mut other = Outbound::new("D60000229F", DEFAULT_MAX_PAIRS);
        assert_eq!(
            other.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='valid'/>"
            )),
            OutboundEvent::Unsolicited
        );
        assert!(!other.is_authorized("capulet.example", "montague.example"));
        // A second valid after authorization is unsolicited too, and an invalid replay
        // does not undo it.
        let mut o = outbound();
        o.on_answer(&el(
            "<db:result from='montague.example' to='capulet.example' type='valid'/>",
        ));
        assert_eq!(
            o.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='invalid'/>"
            )),
            OutboundEvent::Unsolicited
        );
        assert!(o.is_authorized("capulet.example", "montague.example"));
    }

    #[test]
    fn db_sec_01_unsolicited_verify_answers_are_dropped() {
        let req = VerifyRequest {
            pair: Pair::new("montague.example", "capulet.example"),
            stream_id: "417GAF25".into(),
            key: "k".into(),
        };
        let unsolicited = [
            // Wrong id, wrong from, wrong to, swapped direction, result kind.
            "<db:verify from='montague.example' to='capulet.example' id='417GAF26' type='valid'/>",
            "<db:verify from='evil.example' to='capulet.example' id='417GAF25' type='valid'/>",
            "<db:verify from='montague.example' to='rooms.capulet.example' id='417GAF25' type='valid'/>",
            "<db:verify from='capulet.example' to='montague.example' id='417GAF25' type='valid'/>",
            "<db:result from='montague.example' to='capulet.example' type='valid'/>",
        ];
        for xml in unsolicited {
            let mut o = Outbound::new("s", DEFAULT_MAX_PAIRS);
            o.send_verify(&req).unwrap();
            assert_eq!(o.on_answer(&el(xml)), OutboundEvent::Unsolicited, "{xml}");
            assert!(
                !o.is_authorized("capulet.example", "montague.example"),
                "{xml}"
            );
            assert!(
                !o.is_authorized("montague.example", "capulet.example"),
                "{xml}"
            );
            // The pending verification is intact.
            assert_eq!(
                o.close().verifies,
                vec![(req.pair.clone(), "417GAF25".to_owned())],
                "{xml}"
            );
        }
        // A verify answer on a stream where no verify was sent.
        let mut o = outbound();
        assert_eq!(
            o.on_answer(&el(
                "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>"
            )),
            OutboundEvent::Unsolicited
        );
    }

    #[test]
    fn malformed_answer_on_outbound_closes() {
        let mut o = outbound();
        assert_eq!(
            o.on_answer(&el("<db:result from='montague.example' type='valid'/>")),
            OutboundEvent::Close(ParseError::MissingTo.stream_error())
        );
        assert_eq!(
            o.on_answer(&el(
                "<db:result from='montague.example' to='capulet.example' type='ok'/>"
            )),
            OutboundEvent::Close(ParseError::BadType.stream_error())
        );
        assert!(!o.is_authorized("capulet.example", "montague.example"));
    }

    #[test]
    fn answers_are_matched_on_prepared_domains() {
        let mut o = outbound();
        assert_eq!(
            o.on_answer(&el(
                "<x:result xmlns:x='jabber:server:dialback' from='MONTAGUE.example.' \
                 to='Capulet.Example' type='valid'/>"
            )),
            OutboundEvent::Authorized(capulet_montague())
        );
    }
}
