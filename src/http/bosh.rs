//! BOSH (XEP-0124, with the XMPP rules of XEP-0206) as wire rules, sans-I/O: no sockets, no
//! tasks, no clock (times are passed in, in milliseconds on the caller's monotonic clock).
//!
//! * [`parse_body`] checks one request's `<body/>` wrapper (BOSH-HTTP-01/03/04) and borrows
//!   its attributes and payload from the request bytes.
//! * [`negotiate`] grants a new session's parameters (BOSH-SESS-01/02, BOSH-POLL-04) and
//!   [`write_creation`] writes the session-creation response (XEP-0206 §4: `xmpp:version`,
//!   `xmpp:restartlogic`, the stream features inside).
//! * [`Rids`] is the rid window of one session (§14): which request is processed next, which
//!   waits for an earlier one, which is a retransmission to replay, and the bounded cache of
//!   responses (BOSH-HOLD-01/02, BOSH-RID-01..06), with the `ack`/`report` bookkeeping of §9.
//! * [`Keys`] is the optional key sequence of §15 (BOSH-SEC-02).
//! * [`write_body`] writes every other response: normal, recoverable error (`type='error'`)
//!   or terminal (`type='terminate'` with a [`Condition`], §17).
//! * [`too_frequent`], [`overactive`] and [`pause_allowed`] are the polling, overactivity and
//!   pause rules (§10–§12) as pure functions.
//!
//! **Handling a request**, in the order the rules apply:
//!
//! 1. [`parse_body`]; an error is [`Condition::BadRequest`].
//! 2. No `sid`: session creation. [`negotiate`], [`Keys::check`] with `newkey` only,
//!    [`Rids::new`], [`write_creation`], then [`Rids::answered`] with the creation response.
//!    `host-unknown` for a `to` not served is the caller's check (BOSH-SESS-03).
//! 3. A `sid`: unknown is [`Condition::ItemNotFound`] (BOSH-SESS-04); no `rid` is
//!    [`Condition::BadRequest`]. Then [`Rids::classify`]:
//!    * [`Arrival::Next`]: [`Keys::check`], [`Rids::client_ack`] (with the client's `ack`, or
//!      `rid - 1` when a session using acks gets a request without one, §9.2),
//!      [`Rids::processed`], forward the payload; then every waiting rid that is now next, in
//!      order ([`Rids::unwaiting`] and the same steps).
//!    * [`Arrival::Early`]: [`Rids::waiting`], park the request until its turn.
//!    * [`Arrival::Replay`]: answer [`Rids::cached`] as it is (BOSH-RID-02). Keys are not
//!      checked again: a retransmission carries the key it had.
//!    * [`Arrival::Held`]: answer the older HTTP request for that rid with a recoverable
//!      error ([`ReplyType::Error`], without calling [`Rids::answered`]) and hold the new one
//!      in its place (BOSH-RID-03).
//!    * [`Arrival::Gone`], [`Arrival::Refused`]: terminate with `item-not-found`
//!      (BOSH-RID-01/04).
//! 4. Each response: [`write_body`] with [`Rids::ack_for`] and [`Rids::report`] when the
//!    session uses acks, then [`Rids::answered`] (not cached for error and pause responses,
//!    BOSH-RID-05).
//!
//! A client that sent no `ver` at creation is *legacy*: terminal conditions reach it as HTTP
//! statuses ([`Condition::legacy_status`], BOSH-SESS-05).
//!
//! Everything here is panic-free on any input: parsing indexes with `get`, and numbers are
//! parsed digit by digit with checked arithmetic, never through floats (BOSH-RID-06).

use std::collections::VecDeque;
use std::fmt;

use sha1::{Digest, Sha1};
use smallvec::SmallVec;
use xmlparser::{ElementEnd, Token, Tokenizer};

/// The namespace of the `<body/>` wrapper (XEP-0124 §20).
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";

/// The namespace of the XMPP-specific attributes (`xmpp:version`, `xmpp:restart`,
/// `xmpp:restartlogic`, XEP-0206).
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// The namespace of the `stream:` prefix (RFC 6120), declared on every response body so that
/// `<stream:features/>` and `<stream:error/>` payloads parse (XBOSH-01).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// Largest valid rid (§14.1, BOSH-RID-06): 2^53 - 1.
pub const MAX_RID: u64 = (1 << 53) - 1;

/// The protocol version we implement (XEP-0124 1.11).
pub const OUR_VERSION: Version = Version {
    major: 1,
    minor: 11,
};

/// The most attributes a request's `<body/>` may carry. A real client sends about a dozen;
/// the bound keeps the duplicate check (quadratic) cheap.
pub const MAX_BODY_ATTRS: usize = 64;

/// The largest `hold` ever granted, so that `requests` (`hold + 1`) fits the schema's
/// `unsignedByte`.
pub const MAX_GRANTED_HOLD: u32 = 254;

/// The largest rid window [`Rids`] keeps, whatever `requests` it is given.
pub const MAX_WINDOW: u32 = 255;

/// The longest `content` (a Content-Type value) a client may ask for.
pub const MAX_CONTENT_LEN: usize = 128;

/// Digits a numeric attribute may have (leading zeros included): `u64::MAX` has 20.
const MAX_DIGITS: usize = 20;

// ---------------------------------------------------------------------------------------------
// Versions and conditions

/// A BOSH protocol version, `major.minor` (§7.1: the minor number is a separate integer, so
/// 1.11 is above 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// The major number.
    pub major: u16,
    /// The minor number.
    pub minor: u16,
}

impl Version {
    /// Parses `major.minor`: two unsigned decimal integers of at most 5 digits each that fit
    /// a `u16`, nothing else (no sign, no space, no third part).
    pub fn parse(s: &str) -> Option<Version> {
        let (major, minor) = s.split_once('.')?;
        let number = |p: &str| {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse::<u16>().ok()
        };
        Some(Version {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Terminal binding conditions (§17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The format of an HTTP header or binding element is unacceptable.
    BadRequest,
    /// The target domain is no longer serviced.
    HostGone,
    /// The target domain is unknown (BOSH-SESS-03).
    HostUnknown,
    /// The creation request lacks `to` (BOSH-SESS-03).
    ImproperAddressing,
    /// An internal error.
    InternalServerError,
    /// Invalid `sid`, rid outside the window, response not buffered, bad key sequence.
    ItemNotFound,
    /// Another request being processed at the same time ended the session.
    OtherRequest,
    /// The client broke the session rules (polling, overactivity).
    PolicyViolation,
    /// The connection to the XMPP server failed.
    RemoteConnectionFailed,
    /// An error in the transported protocol (XBOSH-06: an XMPP stream error).
    RemoteStreamError,
    /// The connection manager does not operate at this URI (a `<uri/>` child says where).
    SeeOtherUri,
    /// The connection manager is shutting down.
    SystemShutdown,
    /// Anything else.
    UndefinedCondition,
}

impl Condition {
    /// Every condition, in the order of §17.2.
    pub const ALL: [Condition; 13] = [
        Condition::BadRequest,
        Condition::HostGone,
        Condition::HostUnknown,
        Condition::ImproperAddressing,
        Condition::InternalServerError,
        Condition::ItemNotFound,
        Condition::OtherRequest,
        Condition::PolicyViolation,
        Condition::RemoteConnectionFailed,
        Condition::RemoteStreamError,
        Condition::SeeOtherUri,
        Condition::SystemShutdown,
        Condition::UndefinedCondition,
    ];

    /// The value of the `condition` attribute: `bad-request`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::HostGone => "host-gone",
            Condition::HostUnknown => "host-unknown",
            Condition::ImproperAddressing => "improper-addressing",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::OtherRequest => "other-request",
            Condition::PolicyViolation => "policy-violation",
            Condition::RemoteConnectionFailed => "remote-connection-failed",
            Condition::RemoteStreamError => "remote-stream-error",
            Condition::SeeOtherUri => "see-other-uri",
            Condition::SystemShutdown => "system-shutdown",
            Condition::UndefinedCondition => "undefined-condition",
        }
    }

    /// The condition named `s` (the inverse of [`Condition::as_str`]).
    pub fn parse(s: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status a legacy client (no `ver` at creation) gets instead (§17.1,
    /// BOSH-SESS-05).
    ///
    /// The XEP defines three: 400 for `bad-request`, 403 for `policy-violation`, 404 for
    /// `item-not-found`. The others have no deprecated equivalent, and a legacy client reads
    /// only HTTP errors as the end of a session, so each gets the nearest status:
    /// `improper-addressing` is a malformed creation request (400); `host-unknown`,
    /// `host-gone`, `other-request` (the session is gone) and `see-other-uri` (nothing here)
    /// are 404; `internal-server-error` and `undefined-condition` are 500; the server's
    /// failures, `remote-connection-failed` and `remote-stream-error`, are 502 (Bad Gateway);
    /// `system-shutdown` is 503.
    pub fn legacy_status(self) -> u16 {
        match self {
            Condition::BadRequest | Condition::ImproperAddressing => 400,
            Condition::PolicyViolation => 403,
            Condition::ItemNotFound
            | Condition::HostUnknown
            | Condition::HostGone
            | Condition::OtherRequest
            | Condition::SeeOtherUri => 404,
            Condition::InternalServerError | Condition::UndefinedCondition => 500,
            Condition::RemoteConnectionFailed | Condition::RemoteStreamError => 502,
            Condition::SystemShutdown => 503,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Requests (§6, §7.1)

/// One request's `<body/>` wrapper, borrowed from the request bytes.
///
/// Attribute values are as written (entity references are not expanded); those that must be
/// plain (identifiers, numbers, keys) were refused if they held a reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body<'a> {
    /// `sid`: absent on a session-creation request only.
    pub sid: Option<&'a str>,
    /// `rid`, at most [`MAX_RID`].
    pub rid: Option<u64>,
    /// `to`: the target domain (creation and restart requests).
    pub to: Option<&'a str>,
    /// `from`: the originator (creation and restart requests), raw.
    pub from: Option<&'a str>,
    /// `route` (`proto:host:port`), not interpreted here.
    pub route: Option<&'a str>,
    /// `xml:lang`, raw.
    pub lang: Option<&'a str>,
    /// `ver`: the highest BOSH version the client supports (creation); absent for a legacy
    /// client.
    pub ver: Option<Version>,
    /// `wait`, seconds (creation).
    pub wait: Option<u32>,
    /// `hold` (creation).
    pub hold: Option<u32>,
    /// `ack`: `1` at creation to use acks (§9); later, the highest rid the client has all
    /// responses up to.
    pub ack: Option<u64>,
    /// `content`: the Content-Type asked for (creation), raw.
    pub content: Option<&'a str>,
    /// `type` as sent (`terminate` matters), raw.
    pub ty: Option<&'a str>,
    /// `pause`, seconds (§10).
    pub pause: Option<u32>,
    /// `xmpp:restart='true'` (prefix bound to [`NS_XBOSH`], XBOSH-03).
    pub restart: bool,
    /// `xmpp:version`, raw (XEP-0206 §3).
    pub xmpp_version: Option<&'a str>,
    /// `key` (§15).
    pub key: Option<&'a str>,
    /// `newkey` (§15).
    pub newkey: Option<&'a str>,
    /// The bytes between the end of the start tag and the start of `</body>` (empty for
    /// `<body/>`): zero or more complete child elements and whitespace. A child may use a
    /// prefix declared on `<body/>` and, without an `xmlns` of its own, is in the httpbind
    /// namespace as far as XML goes (XBOSH-08 is the caller's).
    pub payload: &'a [u8],
}

impl<'a> Body<'a> {
    /// `type='terminate'` (§13, BOSH-TERM-01).
    pub fn is_terminate(&self) -> bool {
        self.ty == Some("terminate")
    }

    /// The payload holds no element, only whitespace (an empty request, for §11/§12).
    pub fn is_empty(&self) -> bool {
        // `parse_body` lets only whitespace and elements directly inside the wrapper.
        !self.payload.contains(&b'<')
    }

    /// The payload's child elements, each as written, in order.
    pub fn children(&self) -> Children<'a> {
        let text = std::str::from_utf8(self.payload).unwrap_or_default();
        Children {
            tokens: Tokenizer::from_fragment(text, 0..text.len()),
            text,
            done: false,
        }
    }
}

/// The child elements of a [`Body`]'s payload ([`Body::children`]).
#[derive(Debug, Clone)]
pub struct Children<'a> {
    tokens: Tokenizer<'a>,
    text: &'a str,
    done: bool,
}

impl<'a> Iterator for Children<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let mut depth = 0usize;
        let mut start = None;
        for token in self.tokens.by_ref() {
            let Ok(token) = token else { break };
            match token {
                Token::ElementStart { span, .. } => {
                    if depth == 0 {
                        start = Some(span.start());
                    }
                    depth += 1;
                }
                Token::ElementEnd {
                    end: ElementEnd::Empty | ElementEnd::Close(..),
                    span,
                } => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        let s = start?;
                        return self.text.as_bytes().get(s..span.end());
                    }
                }
                _ => {}
            }
        }
        self.done = true;
        None
    }
}

/// Where [`parse_body`] is in the document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the root: the XML declaration may come.
    Prolog,
    /// In the root's start tag.
    RootTag,
    /// In a payload element's start tag.
    ChildTag,
    /// Between the root's tags.
    Content,
    /// After the root's end.
    Done,
}

/// Parses a request body (BOSH-HTTP-01/03/04). Errors are [`Condition::BadRequest`].
///
/// - Optional XML declaration (encoding UTF-8 if named), then exactly one root element `body`,
///   unprefixed, whose default namespace (`xmlns`) is [`NS_HTTPBIND`]; nothing but whitespace
///   after it. The bytes must be UTF-8 (a UTF-8 byte order mark is allowed).
/// - No comments, processing instructions, DTDs or CDATA sections anywhere; no
///   non-whitespace character data directly inside `<body/>` (children's text is fine);
///   balanced, properly nested tags; payload elements nested at most `max_depth` deep (a child
///   of `<body/>` is at depth 1); entity references only the five predefined ones and numeric
///   character references to XML characters, in text and attribute values; `]]>` nowhere in
///   text; no duplicate attribute on `<body/>`, at most [`MAX_BODY_ATTRS`] of them.
/// - Numeric attributes are unsigned decimal integers (surrounding XML whitespace allowed, at
///   most 20 digits, parsed without floats): `rid` in 1..=[`MAX_RID`], `ack` at most
///   [`MAX_RID`], `wait`/`hold`/`pause` a `u32`; `ver` is `major.minor`; `xmpp:restart` a
///   boolean (`true`/`1`/`false`/`0`).
/// - A prefixed attribute counts only if its prefix is declared on `<body/>`: bound to
///   [`NS_XBOSH`] (any prefix name), its `restart` and `version` are read; bound to another
///   namespace, it is ignored; not declared (other than `xml:`), the request is refused (a
///   namespace error, and a silently ignored `xmpp:restart` would stall the client).
///
/// Attribute values are returned raw; an entity reference in `sid`, `rid`, `to`, `route`,
/// `ver`, `wait`, `hold`, `ack`, `pause`, `key` or `newkey` is refused. Payload elements are
/// checked for structure and references only: their namespaces are the stanza parser's.
pub fn parse_body(bytes: &[u8], max_depth: usize) -> Result<Body<'_>, Condition> {
    const BAD: Condition = Condition::BadRequest;
    let text = std::str::from_utf8(bytes).map_err(|_| BAD)?;
    let mut at = At::Prolog;
    let mut attrs: SmallVec<[(&str, &str, &str); 16]> = SmallVec::new();
    // The open payload elements, (prefix, local name).
    let mut open: SmallVec<[(&str, &str); 16]> = SmallVec::new();
    let mut body = Body::default();
    let mut payload_start = 0usize;
    for token in Tokenizer::from(text) {
        let token = token.map_err(|_| BAD)?;
        match token {
            Token::Declaration { encoding, .. } => {
                if at != At::Prolog {
                    return Err(BAD);
                }
                if encoding.is_some_and(|e| !e.as_str().eq_ignore_ascii_case("utf-8")) {
                    return Err(BAD);
                }
            }
            Token::ElementStart { prefix, local, .. } => match at {
                At::Prolog => {
                    if !prefix.is_empty() || local.as_str() != "body" {
                        return Err(BAD);
                    }
                    at = At::RootTag;
                }
                At::Content => {
                    if open.len() >= max_depth {
                        return Err(BAD);
                    }
                    open.push((prefix.as_str(), local.as_str()));
                    at = At::ChildTag;
                }
                _ => return Err(BAD),
            },
            Token::Attribute {
                prefix,
                local,
                value,
                ..
            } => {
                if !refs_ok(value.as_str()) {
                    return Err(BAD);
                }
                match at {
                    At::RootTag => {
                        if attrs.len() >= MAX_BODY_ATTRS {
                            return Err(BAD);
                        }
                        attrs.push((prefix.as_str(), local.as_str(), value.as_str()));
                    }
                    At::ChildTag => {}
                    _ => return Err(BAD),
                }
            }
            Token::ElementEnd { end, span } => match (at, end) {
                (At::RootTag, ElementEnd::Empty) => {
                    root_attrs(&attrs, &mut body)?;
                    at = At::Done;
                }
                (At::RootTag, ElementEnd::Open) => {
                    root_attrs(&attrs, &mut body)?;
                    payload_start = span.end();
                    at = At::Content;
                }
                (At::ChildTag, ElementEnd::Empty) => {
                    open.pop();
                    at = At::Content;
                }
                (At::ChildTag, ElementEnd::Open) => at = At::Content,
                (At::Content, ElementEnd::Close(prefix, local)) => match open.pop() {
                    Some((p, l)) => {
                        if p != prefix.as_str() || l != local.as_str() {
                            return Err(BAD);
                        }
                    }
                    None => {
                        if !prefix.is_empty() || local.as_str() != "body" {
                            return Err(BAD);
                        }
                        body.payload = bytes.get(payload_start..span.start()).ok_or(BAD)?;
                        at = At::Done;
                    }
                },
                _ => return Err(BAD),
            },
            Token::Text { text } => {
                let t = text.as_str();
                let fine = match at {
                    At::Content if open.is_empty() => t.bytes().all(is_xml_space),
                    At::Content => refs_ok(t) && !t.contains("]]>"),
                    _ => false,
                };
                if !fine {
                    return Err(BAD);
                }
            }
            Token::ProcessingInstruction { .. }
            | Token::Comment { .. }
            | Token::DtdStart { .. }
            | Token::EmptyDtd { .. }
            | Token::EntityDeclaration { .. }
            | Token::DtdEnd { .. }
            | Token::Cdata { .. } => return Err(BAD),
        }
    }
    if at != At::Done {
        return Err(BAD);
    }
    Ok(body)
}

/// Reads the root's attributes (as written, in order) into `body`.
fn root_attrs<'a>(
    attrs: &[(&'a str, &'a str, &'a str)],
    body: &mut Body<'a>,
) -> Result<(), Condition> {
    const BAD: Condition = Condition::BadRequest;
    // Unique attribute names (XML 1.0 §3.1).
    for (i, (p, l, _)) in attrs.iter().enumerate() {
        if attrs
            .iter()
            .skip(i + 1)
            .any(|(p2, l2, _)| p == p2 && l == l2)
        {
            return Err(BAD);
        }
    }
    let declared = |prefix: &str| {
        attrs
            .iter()
            .find(|(p, l, _)| *p == "xmlns" && *l == prefix)
            .map(|(_, _, v)| *v)
    };
    let mut httpbind = false;
    for &(prefix, local, value) in attrs {
        match (prefix, local) {
            ("", "xmlns") => {
                if value != NS_HTTPBIND {
                    return Err(BAD);
                }
                httpbind = true;
            }
            // Namespaces in XML 1.0 §3: `xmlns:` may not be bound, `xml:` only to its own
            // name, and no prefix to the empty name.
            ("xmlns", "xmlns") => return Err(BAD),
            ("xmlns", "xml") => {
                if value != "http://www.w3.org/XML/1998/namespace" {
                    return Err(BAD);
                }
            }
            ("xmlns", _) => {
                if value.is_empty() {
                    return Err(BAD);
                }
            }
            ("xml", "lang") => body.lang = Some(value),
            ("xml", _) => {}
            ("", name) => match name {
                "sid" => body.sid = Some(plain(value)?),
                "rid" => {
                    let rid = number(value, MAX_RID)?;
                    if rid == 0 {
                        return Err(BAD);
                    }
                    body.rid = Some(rid);
                }
                "to" => body.to = Some(plain(value)?),
                "from" => body.from = Some(value),
                "route" => body.route = Some(plain(value)?),
                "ver" => body.ver = Some(Version::parse(plain(value)?).ok_or(BAD)?),
                "wait" => body.wait = Some(number_u32(value)?),
                "hold" => body.hold = Some(number_u32(value)?),
                "ack" => body.ack = Some(number(value, MAX_RID)?),
                "content" => body.content = Some(value),
                "type" => body.ty = Some(value),
                "pause" => body.pause = Some(number_u32(value)?),
                "key" => body.key = Some(plain(value)?),
                "newkey" => body.newkey = Some(plain(value)?),
                _ => {}
            },
            (prefix, local) => match declared(prefix) {
                Some(NS_XBOSH) => match local {
                    "restart" => {
                        body.restart = match value {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => return Err(BAD),
                        }
                    }
                    "version" => body.xmpp_version = Some(value),
                    _ => {}
                },
                Some(_) => {}
                None => return Err(BAD),
            },
        }
    }
    if !httpbind {
        return Err(BAD);
    }
    Ok(())
}

/// `v` if it holds no entity reference.
fn plain(v: &str) -> Result<&str, Condition> {
    if v.contains('&') {
        Err(Condition::BadRequest)
    } else {
        Ok(v)
    }
}

/// An unsigned decimal integer of at most [`MAX_DIGITS`] digits and at most `max`, with
/// optional surrounding XML whitespace (the schema's integer types collapse whitespace).
fn number(v: &str, max: u64) -> Result<u64, Condition> {
    const BAD: Condition = Condition::BadRequest;
    let digits = v.trim_matches(|c: char| c.is_ascii() && is_xml_space(c as u8));
    if digits.is_empty() || digits.len() > MAX_DIGITS {
        return Err(BAD);
    }
    let mut n: u64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return Err(BAD);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(BAD)?;
    }
    if n > max {
        return Err(BAD);
    }
    Ok(n)
}

/// [`number`] for a `u32` attribute.
fn number_u32(v: &str) -> Result<u32, Condition> {
    let n = number(v, u64::from(u32::MAX))?;
    u32::try_from(n).map_err(|_| Condition::BadRequest)
}

/// XML white space (`S`, XML 1.0 §2.3).
fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Whether `c` matches the XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Every `&` in `s` starts a predefined entity reference or a character reference to an XML
/// character (BOSH-HTTP-03).
fn refs_ok(s: &str) -> bool {
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        let tail = rest.get(at + 1..).unwrap_or_default();
        let Some(semi) = tail.find(';') else {
            return false;
        };
        let name = tail.get(..semi).unwrap_or_default();
        let fine = match name {
            "lt" | "gt" | "amp" | "apos" | "quot" => true,
            _ => char_ref(name).is_some_and(is_xml_char),
        };
        if !fine {
            return false;
        }
        rest = tail.get(semi + 1..).unwrap_or_default();
    }
    true
}

/// The character of a numeric reference's name (`#65`, `#x41`), if it is one.
fn char_ref(name: &str) -> Option<char> {
    let num = name.strip_prefix('#')?;
    let (digits, radix) = match num.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (num, 10),
    };
    // Leading zeros are allowed; 8 significant digits cover U+10FFFF either way.
    let significant = digits.trim_start_matches('0');
    if digits.is_empty() || significant.len() > 8 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = if significant.is_empty() {
        0
    } else {
        u32::from_str_radix(significant, radix).ok()?
    };
    char::from_u32(n)
}

// ---------------------------------------------------------------------------------------------
// Session creation (§7)

/// The operator's bounds (CLI flags elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The longest `wait` granted, seconds.
    pub max_wait: u32,
    /// The largest `hold` granted.
    pub max_hold: u32,
    /// The `inactivity` of a normal session, seconds; 0: none (BOSH-INACT-02).
    pub inactivity: u32,
    /// The shortest polling interval, seconds; 0: none (BOSH-POLL-03).
    pub polling: u32,
    /// The longest pause a client may ask for, seconds; 0: pausing not offered.
    pub maxpause: u32,
}

impl Default for Policy {
    /// `wait` up to 60 s, `hold` up to 2, inactivity 60 s, polling 2 s, pauses up to 120 s.
    fn default() -> Policy {
        Policy {
            max_wait: 60,
            max_hold: 2,
            inactivity: 60,
            polling: 2,
            maxpause: 120,
        }
    }
}

/// What a session was granted at creation (§7.2).
///
/// A zero `inactivity`, `polling` or `maxpause` means none: the attribute is left out of the
/// creation response and no such limit applies (BOSH-INACT-02, BOSH-POLL-03).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The longest time a request is held, seconds (≤ the client's).
    pub wait: u32,
    /// The most requests held at once (≤ the client's).
    pub hold: u32,
    /// The most simultaneous requests: `hold + 1`.
    pub requests: u32,
    /// The longest time without a request, seconds.
    pub inactivity: u32,
    /// The shortest interval between empty requests, seconds.
    pub polling: u32,
    /// The longest pause, seconds.
    pub maxpause: u32,
    /// The version in use: the lower of ours and the client's; `None` for a legacy client,
    /// which gets HTTP statuses instead of terminal conditions (BOSH-SESS-05).
    pub ver: Option<Version>,
    /// The client asked for acks (§9).
    pub ack: bool,
    /// The Content-Type of every response, if the client asked for one (BOSH-HTTP-02).
    pub content: Option<String>,
}

/// Session creation (BOSH-SESS-01/02/03, BOSH-POLL-04): checks the creation request and grants
/// the session's parameters.
///
/// - `rid` missing: `bad-request`; `to` missing or empty: `improper-addressing` (a `to` that
///   is not served, `host-unknown`, is the caller's check); `wait` or `hold` missing:
///   `bad-request`; a `content` that is not a plausible Content-Type (printable ASCII, at most
///   [`MAX_CONTENT_LEN`] bytes, no reference): `bad-request` (it becomes a header).
/// - wait = min(requested, `max_wait`); hold = min(requested, `max_hold`,
///   [`MAX_GRANTED_HOLD`]); requests = hold + 1.
/// - A polling session (granted wait 0 or hold 0) gets `inactivity` raised by more than
///   `polling` (§12: `policy.inactivity + polling + 1`), unless inactivity is off.
/// - ver = min(ours, theirs), `None` for a legacy client; ack = the client sent `ack='1'`;
///   content as asked.
pub fn negotiate(body: &Body<'_>, policy: &Policy) -> Result<Params, Condition> {
    if body.rid.is_none() {
        return Err(Condition::BadRequest);
    }
    if body.to.is_none_or(|t| t.trim().is_empty()) {
        return Err(Condition::ImproperAddressing);
    }
    let (Some(wait), Some(hold)) = (body.wait, body.hold) else {
        return Err(Condition::BadRequest);
    };
    let content = match body.content {
        None => None,
        Some(c) => {
            let fine = !c.is_empty()
                && c.len() <= MAX_CONTENT_LEN
                && c.bytes()
                    .all(|b| b == b' ' || (b.is_ascii_graphic() && b != b'&'));
            if !fine {
                return Err(Condition::BadRequest);
            }
            Some(c.to_string())
        }
    };
    let wait = wait.min(policy.max_wait);
    let hold = hold.min(policy.max_hold).min(MAX_GRANTED_HOLD);
    let polling_session = wait == 0 || hold == 0;
    let inactivity = if polling_session && policy.inactivity > 0 {
        policy
            .inactivity
            .saturating_add(policy.polling)
            .saturating_add(1)
    } else {
        policy.inactivity
    };
    Ok(Params {
        wait,
        hold,
        requests: hold + 1,
        inactivity,
        polling: policy.polling,
        maxpause: policy.maxpause,
        ver: body.ver.map(|v| v.min(OUR_VERSION)),
        ack: body.ack == Some(1),
        content,
    })
}

/// Writes the session-creation response body (§7.2, XEP-0206 §4).
///
/// Attributes: `sid`, `wait`, `requests`, `hold`, `inactivity`, `polling`, `maxpause` (the
/// last three when not 0), `ver` (if any), `from` and `authid` (when not empty), `ack` (= the
/// creation `rid`, if `p.ack`), `secure='true'` only if `secure`, `xmpp:version='1.0'` and
/// `xmpp:restartlogic='true'` (XBOSH-01/02), with `xmlns:xmpp` and `xmlns:stream` declared.
/// `payload` (complete elements, e.g. `<stream:features>`) goes inside.
#[allow(clippy::too_many_arguments)]
pub fn write_creation(
    out: &mut Vec<u8>,
    p: &Params,
    sid: &str,
    from: &str,
    authid: &str,
    rid: u64,
    secure: bool,
    payload: &[u8],
) {
    open_body(out);
    out.extend_from_slice(b" xmlns:xmpp='");
    out.extend_from_slice(NS_XBOSH.as_bytes());
    out.push(b'\'');
    attr(out, "sid", sid);
    num_attr(out, "wait", p.wait.into());
    num_attr(out, "requests", p.requests.into());
    num_attr(out, "hold", p.hold.into());
    for (name, value) in [
        ("inactivity", p.inactivity),
        ("polling", p.polling),
        ("maxpause", p.maxpause),
    ] {
        if value > 0 {
            num_attr(out, name, value.into());
        }
    }
    if let Some(v) = p.ver {
        attr(out, "ver", &v.to_string());
    }
    if !from.is_empty() {
        attr(out, "from", from);
    }
    if !authid.is_empty() {
        attr(out, "authid", authid);
    }
    if p.ack {
        num_attr(out, "ack", rid);
    }
    if secure {
        out.extend_from_slice(b" secure='true'");
    }
    out.extend_from_slice(b" xmpp:version='1.0' xmpp:restartlogic='true'");
    close_body(out, None, payload);
}

// ---------------------------------------------------------------------------------------------
// Responses (§8, §9, §17)

/// How a response body ends the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyType {
    /// A normal response.
    #[default]
    Normal,
    /// `type='terminate'`, with a `condition` for an error (§17.2), without one for the
    /// client's own termination (§13).
    Terminate(Option<Condition>),
    /// `type='error'`: recoverable (§17.3, BOSH-ERR-02).
    Error,
}

/// A non-creation response's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reply<'a> {
    /// Normal, terminal or recoverable error.
    pub ty: ReplyType,
    /// `ack` (§9.1): see [`Rids::ack_for`].
    pub ack: Option<u64>,
    /// `report` and `time` (§9.2): see [`Rids::report`].
    pub report: Option<(u64, u64)>,
    /// The `<uri/>` of a `see-other-uri` termination.
    pub see_other_uri: Option<&'a str>,
}

/// Writes a response `<body/>`: `xmlns` and `xmlns:stream`, then `type`/`condition`, `ack`,
/// `report`/`time`; the `<uri/>` child (escaped) of a `see-other-uri` termination before
/// `payload`; `<body .../>` when there is nothing inside.
pub fn write_body(out: &mut Vec<u8>, reply: &Reply<'_>, payload: &[u8]) {
    open_body(out);
    let mut uri = None;
    match reply.ty {
        ReplyType::Normal => {}
        ReplyType::Error => out.extend_from_slice(b" type='error'"),
        ReplyType::Terminate(condition) => {
            out.extend_from_slice(b" type='terminate'");
            if let Some(c) = condition {
                attr(out, "condition", c.as_str());
                if c == Condition::SeeOtherUri {
                    uri = reply.see_other_uri;
                }
            }
        }
    }
    if let Some(ack) = reply.ack {
        num_attr(out, "ack", ack);
    }
    if let Some((report, time)) = reply.report {
        num_attr(out, "report", report);
        num_attr(out, "time", time);
    }
    close_body(out, uri, payload);
}

/// `<body xmlns='…httpbind' xmlns:stream='…streams'`.
fn open_body(out: &mut Vec<u8>) {
    out.extend_from_slice(b"<body xmlns='");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    out.extend_from_slice(b"' xmlns:stream='");
    out.extend_from_slice(NS_STREAMS.as_bytes());
    out.push(b'\'');
}

/// Ends the start tag and writes the content and end tag, or `/>` when there is no content.
fn close_body(out: &mut Vec<u8>, uri: Option<&str>, payload: &[u8]) {
    if uri.is_none() && payload.is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    if let Some(uri) = uri {
        out.extend_from_slice(b"<uri>");
        escape(out, uri);
        out.extend_from_slice(b"</uri>");
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"</body>");
}

/// ` name='value'`, the value escaped.
fn attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape(out, value);
    out.push(b'\'');
}

/// ` name='n'`.
fn num_attr(out: &mut Vec<u8>, name: &str, n: u64) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    push_u64(out, n);
    out.push(b'\'');
}

/// `n` in decimal.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Escapes text for an attribute or element (`&`, `<`, `>`, `'`, `"`). Characters XML cannot
/// carry at all (controls other than tab, CR and LF; U+FFFE, U+FFFF) are left out.
pub fn escape(out: &mut Vec<u8>, s: &str) {
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let rep: &[u8] = match c {
            '&' => b"&amp;",
            '<' => b"&lt;",
            '>' => b"&gt;",
            '\'' => b"&apos;",
            '"' => b"&quot;",
            c if !is_xml_char(c) => b"",
            _ => continue,
        };
        out.extend_from_slice(s.as_bytes().get(plain..i).unwrap_or_default());
        out.extend_from_slice(rep);
        plain = i + c.len_utf8();
    }
    out.extend_from_slice(s.as_bytes().get(plain..).unwrap_or_default());
}

// ---------------------------------------------------------------------------------------------
// The rid window (§14) and acknowledgements (§9)

/// What to do with a request, by its rid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next rid in order: process it now.
    Next,
    /// Ahead of the next rid but inside the window: wait until the rids before it are
    /// processed.
    Early,
    /// Already processed and answered: replay the cached response (`Rids::cached`).
    Replay,
    /// Already processed, not answered yet (held): BOSH-RID-03.
    Held,
    /// Already processed, but its response is not cached (or was not cacheable):
    /// item-not-found (BOSH-RID-04).
    Gone,
    /// Beyond the window, or older than anything remembered, or a duplicate of an Early rid
    /// still waiting: item-not-found (BOSH-RID-01).
    Refused,
}

/// One processed rid.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// Its response was sent (at `sent_ms`).
    answered: bool,
    /// When its response was (last) sent.
    sent_ms: u64,
    /// The response, while cached.
    response: Option<Box<[u8]>>,
}

/// The rid window of one session (§14): which requests to process, hold, replay or refuse,
/// and the response cache for retransmissions (BOSH-HOLD-01/02, BOSH-RID-01..05, §9 ack and
/// report).
///
/// The window is `requests` (at most [`MAX_WINDOW`]): after the last processed rid `n`,
/// `n + 1` is next and up to `n + requests` may arrive early. The state of the last
/// `4 × requests` (at least 8) processed rids is remembered; older ones are
/// [`Arrival::Refused`].
#[derive(Debug, Clone)]
pub struct Rids {
    /// The highest rid processed; all below it are processed too.
    last: u64,
    /// `requests`, 1..=MAX_WINDOW.
    window: u64,
    /// The rid of `slots[0]`.
    base: u64,
    /// The processed rids `base..=last`.
    slots: VecDeque<Slot>,
    /// Early rids whose requests are waiting for their turn.
    waiting: SmallVec<[u64; 4]>,
    /// Cached responses and their bytes.
    cached: usize,
    cached_bytes: usize,
    /// The client's highest `ack` so far.
    client_acked: u64,
}

impl Rids {
    /// After the creation request `first` was processed (it counts as processed; its response
    /// is recorded with `answered`). `requests` is the window (clamped to 1..=[`MAX_WINDOW`]).
    pub fn new(first: u64, requests: u32) -> Rids {
        let mut slots = VecDeque::new();
        slots.push_back(Slot::default());
        Rids {
            last: first,
            window: u64::from(requests.clamp(1, MAX_WINDOW)),
            base: first,
            slots,
            waiting: SmallVec::new(),
            cached: 0,
            cached_bytes: 0,
            // Any later request proves the creation response arrived: it holds the sid.
            client_acked: first,
        }
    }

    /// How many processed rids are remembered before the oldest answered ones are forgotten.
    fn remember(&self) -> usize {
        (self.window as usize).saturating_mul(4).max(8)
    }

    fn slot(&self, rid: u64) -> Option<&Slot> {
        let i = usize::try_from(rid.checked_sub(self.base)?).ok()?;
        self.slots.get(i)
    }

    fn slot_mut(&mut self, rid: u64) -> Option<&mut Slot> {
        let i = usize::try_from(rid.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)
    }

    /// Classifies a request by its rid (BOSH-RID-01..04, BOSH-HOLD-01).
    pub fn classify(&self, rid: u64) -> Arrival {
        if self.waiting.contains(&rid) {
            return Arrival::Refused;
        }
        if rid > self.last {
            let ahead = rid - self.last;
            return if ahead == 1 && self.last < u64::MAX {
                Arrival::Next
            } else if ahead <= self.window {
                Arrival::Early
            } else {
                Arrival::Refused
            };
        }
        match self.slot(rid) {
            None => Arrival::Refused,
            Some(s) if !s.answered => Arrival::Held,
            Some(s) if s.response.is_some() => Arrival::Replay,
            Some(_) => Arrival::Gone,
        }
    }

    /// Marks `rid` processed (it must be the next rid, [`Arrival::Next`], or a waiting early
    /// rid whose turn came; anything else is ignored) and takes it out of the waiting ones;
    /// returns the next expected rid.
    pub fn processed(&mut self, rid: u64) -> u64 {
        if self.last.checked_add(1) == Some(rid) {
            self.last = rid;
            self.slots.push_back(Slot::default());
            self.waiting.retain(|w| *w != rid);
            self.trim();
        }
        self.last.saturating_add(1)
    }

    /// Marks an Early rid as waiting, so that a duplicate of it is [`Arrival::Refused`].
    /// Ignored unless `rid` is [`Arrival::Early`].
    pub fn waiting(&mut self, rid: u64) {
        if self.classify(rid) == Arrival::Early {
            self.waiting.push(rid);
        }
    }

    /// `rid` no longer waits (its request was processed or dropped).
    pub fn unwaiting(&mut self, rid: u64) {
        self.waiting.retain(|w| *w != rid);
    }

    /// `rid` was answered with `response` at `now_ms`; `cache` false for error and pause
    /// responses (BOSH-RID-05). Keeps at most `requests` cached responses (the oldest go
    /// first). Answering a rid again (a replay) only refreshes its time, for [`Rids::report`].
    pub fn answered(&mut self, rid: u64, response: &[u8], cache: bool, now_ms: u64) {
        let Some(slot) = self.slot_mut(rid) else {
            return;
        };
        slot.sent_ms = now_ms;
        if slot.answered {
            return;
        }
        slot.answered = true;
        if !cache {
            return;
        }
        slot.response = Some(response.into());
        self.cached += 1;
        self.cached_bytes += response.len();
        while self.cached as u64 > self.window {
            let Some(oldest) = self.slots.iter_mut().find(|s| s.response.is_some()) else {
                break;
            };
            let dropped = oldest.response.take().map_or(0, |r| r.len());
            self.cached -= 1;
            self.cached_bytes -= dropped;
        }
        self.trim();
    }

    /// The cached response to `rid`, for a retransmission (BOSH-RID-02).
    pub fn cached(&self, rid: u64) -> Option<&[u8]> {
        self.slot(rid)?.response.as_deref()
    }

    /// The highest rid processed so far (all below it processed too).
    pub fn last_processed(&self) -> u64 {
        self.last
    }

    /// The client's `ack` (§9.2: the highest rid it received a response for, all below
    /// received): forget cached responses up to it. A session using acks gets no `ack` on a
    /// request when the client has every response: pass `rid - 1` then. Lower than an earlier
    /// `ack`, it changes nothing.
    pub fn client_ack(&mut self, ack: u64) {
        let ack = ack.min(self.last);
        if ack <= self.client_acked {
            return;
        }
        self.client_acked = ack;
        let upto =
            usize::try_from(ack.saturating_sub(self.base).saturating_add(1)).unwrap_or(usize::MAX);
        for slot in self.slots.iter_mut().take(upto) {
            if let Some(r) = slot.response.take() {
                self.cached -= 1;
                self.cached_bytes -= r.len();
            }
        }
        self.trim();
    }

    /// The highest `ack` the client sent ([`Rids::client_ack`]); the creation rid before any.
    pub fn client_acked(&self) -> u64 {
        self.client_acked
    }

    /// The `ack` attribute for the response to `rid` when the session uses acks (§9.1):
    /// `Some(last_processed)` when it differs from `rid`, else `None`.
    pub fn ack_for(&self, rid: u64) -> Option<u64> {
        (self.last != rid).then_some(self.last)
    }

    /// §9.2 report: given the client's latest ack and now, `Some((report_rid, time_ms))` when
    /// the response to `ack + 1` was sent more than `threshold_ms` ago and the client still
    /// hasn't acknowledged it. Only a cached response is reported: the client may resend its
    /// request and get it replayed, where a response that is gone would end the session.
    pub fn report(&self, client_ack: u64, now_ms: u64, threshold_ms: u64) -> Option<(u64, u64)> {
        let rid = client_ack.checked_add(1)?;
        if rid > self.last {
            return None;
        }
        let slot = self.slot(rid)?;
        if !slot.answered || slot.response.is_none() {
            return None;
        }
        let elapsed = now_ms.saturating_sub(slot.sent_ms);
        (elapsed > threshold_ms).then_some((rid, elapsed))
    }

    /// Number of responses held in the cache and their total bytes (for bounds/metrics).
    pub fn cache_len(&self) -> (usize, usize) {
        (self.cached, self.cached_bytes)
    }

    /// Forgets the oldest answered rids beyond [`Rids::remember`], and any beyond four times
    /// that (held ones too: a caller that holds that many broke BOSH-HOLD-04).
    fn trim(&mut self) {
        let keep = self.remember();
        while self.slots.len() > keep {
            let front_held = self.slots.front().is_some_and(|s| !s.answered);
            if front_held && self.slots.len() <= keep.saturating_mul(4) {
                break;
            }
            if let Some(Slot {
                response: Some(r), ..
            }) = self.slots.pop_front()
            {
                self.cached -= 1;
                self.cached_bytes -= r.len();
            }
            self.base += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Key sequencing (§15)

/// Key sequencing (§15, BOSH-SEC-02): each request's `key` must hash (SHA-1, hex) to the
/// previous request's `newkey`, or its `key` when it had no `newkey`.
///
/// Check requests in rid order as they are processed, never a replayed retransmission (it
/// carries the key it had).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The expected hex SHA-1 of the next `key`, once a sequence is in use.
    expected: Option<String>,
}

impl Keys {
    /// Checks a request's `key`/`newkey`: Ok when no key sequence is in use and none is
    /// given; when one is, `key` must SHA-1-hex to the previous key (compared without regard
    /// to case); `newkey` starts a new sequence. Keys are 40 hex digits (a hex SHA-1).
    /// `Err(ItemNotFound)` otherwise, and then nothing changes. The creation request may
    /// carry `newkey` only.
    pub fn check(&mut self, key: Option<&str>, newkey: Option<&str>) -> Result<(), Condition> {
        const FAIL: Condition = Condition::ItemNotFound;
        match (&self.expected, key) {
            (None, None) => {}
            (None, Some(_)) | (Some(_), None) => return Err(FAIL),
            (Some(expected), Some(k)) => {
                if !is_key(k) || !sha1_hex(k).eq_ignore_ascii_case(expected) {
                    return Err(FAIL);
                }
            }
        }
        if newkey.is_some_and(|n| !is_key(n)) {
            return Err(FAIL);
        }
        if let Some(next) = newkey.or(key) {
            self.expected = Some(next.to_string());
        }
        Ok(())
    }

    /// A key sequence is in use.
    pub fn in_use(&self) -> bool {
        self.expected.is_some()
    }
}

/// A key: 40 hex digits.
fn is_key(k: &str) -> bool {
    k.len() == 40 && k.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `hex(SHA-1(s))`, lower case.
fn sha1_hex(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha1::digest(s.as_bytes());
    let mut hex = String::with_capacity(40);
    for b in digest.iter() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

// ---------------------------------------------------------------------------------------------
// Polling, overactivity, pause (§10–§12)

/// Polling rules (§12, BOSH-POLL-01): two empty requests closer than `polling` seconds, when
/// the previous response was empty too, is a policy violation. Pure: given the previous empty
/// request's time (ms) if the last response was empty, now, and polling seconds. `polling`
/// 0 imposes nothing (BOSH-POLL-03); exactly `polling` seconds apart is allowed.
pub fn too_frequent(prev_empty_ms: Option<u64>, now_ms: u64, polling: u32) -> bool {
    let Some(prev) = prev_empty_ms else {
        return false;
    };
    polling > 0 && now_ms.saturating_sub(prev) < u64::from(polling) * 1000
}

/// Overactivity (§11, BOSH-POLL-02): `unanswered` requests not yet answered, this new one
/// included, are too many when above `requests`, or above `requests + 1` when this one pauses
/// or terminates (the client may make one more for that). `requests` 0 (not announced)
/// imposes nothing (BOSH-POLL-03).
pub fn overactive(unanswered: u32, requests: u32, pause_or_terminate: bool) -> bool {
    requests > 0 && unanswered > requests.saturating_add(u32::from(pause_or_terminate))
}

/// A `pause` request is honoured (§10, BOSH-INACT-03) when pausing was offered (`maxpause`
/// not 0) and `pause` is at most `maxpause`.
pub fn pause_allowed(pause: u32, maxpause: u32) -> bool {
    maxpause > 0 && pause <= maxpause
}

#[cfg(test)]
mod tests {
    use super::*;

    // -----------------------------------------------------------------------------------------
    // Helpers

    const NS: &str = "xmlns='http://jabber.org/protocol/httpbind'";
    const XB: &str = "xmlns:xmpp='urn:xmpp:xbosh'";

    fn parse(s: &str) -> Result<Body<'_>, Condition> {
        parse_body(s.as_bytes(), 16)
    }

    fn bad(s: &str) {
        assert_eq!(parse(s), Err(Condition::BadRequest), "{s}");
    }

    fn ok(s: &str) -> Body<'_> {
        match parse(s) {
            Ok(b) => b,
            Err(e) => panic!("{s}: {e:?}"),
        }
    }

    /// A body with `attrs` and `inner` content.
    fn body(attrs: &str, inner: &str) -> String {
        format!("<body {NS} {attrs}>{inner}</body>")
    }

    /// The XEP-0124 §7.1 creation request, with XEP-0206's version.
    const CREATE: &str = "<body content='text/xml; charset=utf-8'
      from='user@example.com'
      hold='1'
      rid='1573741820'
      to='example.com'
      route='xmpp:example.com:9999'
      ver='1.6'
      wait='60'
      ack='1'
      xml:lang='en'
      xmpp:version='1.0'
      xmlns='http://jabber.org/protocol/httpbind'
      xmlns:xmpp='urn:xmpp:xbosh'/>";

    fn out(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    fn reply(ty: ReplyType) -> String {
        out(|o| {
            write_body(
                o,
                &Reply {
                    ty,
                    ..Reply::default()
                },
                b"",
            )
        })
    }

    /// Independent SHA-1 key chain: K(1) = hex(SHA-1(seed)), K(i) = hex(SHA-1(K(i-1))).
    fn chain(seed: &str, n: usize) -> Vec<String> {
        let mut keys = vec![sha1_hex(seed)];
        while keys.len() < n {
            let next = sha1_hex(keys.last().unwrap());
            keys.push(next);
        }
        keys
    }

    /// A deterministic pseudo-random sequence (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    // -----------------------------------------------------------------------------------------
    // parse_body: accepted requests

    #[test]
    fn bosh_sess_01_creation_request_parses() {
        let b = ok(CREATE);
        assert_eq!(b.sid, None);
        assert_eq!(b.rid, Some(1573741820));
        assert_eq!(b.to, Some("example.com"));
        assert_eq!(b.from, Some("user@example.com"));
        assert_eq!(b.route, Some("xmpp:example.com:9999"));
        assert_eq!(b.lang, Some("en"));
        assert_eq!(b.ver, Some(Version { major: 1, minor: 6 }));
        assert_eq!(b.wait, Some(60));
        assert_eq!(b.hold, Some(1));
        assert_eq!(b.ack, Some(1));
        assert_eq!(b.content, Some("text/xml; charset=utf-8"));
        assert_eq!(b.xmpp_version, Some("1.0"));
        assert!(!b.restart);
        assert!(b.payload.is_empty());
        assert!(b.is_empty());
        assert!(!b.is_terminate());
    }

    #[test]
    fn bosh_http_01_payload_between_tags() {
        let inner = "\n  <message to='contact@example.com' xmlns='jabber:client'>\n    <body>Hey, what&apos;s up?</body>\n  </message>\n  <presence xmlns='jabber:client'/>\n";
        let s = body("rid='1249243562' sid='SomeSID'", inner);
        let b = ok(&s);
        assert_eq!(b.sid, Some("SomeSID"));
        assert_eq!(b.rid, Some(1249243562));
        assert_eq!(b.payload, inner.as_bytes());
        assert!(!b.is_empty());
        let kids: Vec<&str> = b
            .children()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        assert_eq!(
            kids,
            [
                "<message to='contact@example.com' xmlns='jabber:client'>\n    <body>Hey, what&apos;s up?</body>\n  </message>",
                "<presence xmlns='jabber:client'/>",
            ]
        );
    }

    #[test]
    fn bosh_http_01_empty_forms() {
        for s in [
            format!("<body {NS} rid='5'/>"),
            format!("<body {NS} rid='5'></body>"),
            format!("<body {NS} rid='5'>\n \t\r\n</body>"),
            format!("<?xml version='1.0'?><body {NS} rid='5'/>"),
            format!("<?xml version='1.0' encoding='UTF-8'?>\n<body {NS} rid='5'/>\n\n"),
            format!("\u{feff}<body {NS} rid='5'/>"),
            format!("  <body {NS} rid='5' />  "),
        ] {
            let b = ok(&s);
            assert_eq!(b.rid, Some(5), "{s}");
            assert!(b.is_empty(), "{s}");
            assert_eq!(b.children().count(), 0, "{s}");
        }
    }

    #[test]
    fn bosh_term_01_terminate_with_payload() {
        let s = body(
            "rid='1249243565' sid='SomeSID' type='terminate'",
            "<presence type='unavailable' xmlns='jabber:client'/>",
        );
        let b = ok(&s);
        assert!(b.is_terminate());
        assert_eq!(b.children().count(), 1);
    }

    #[test]
    fn xbosh_03_restart_with_any_prefix() {
        let src = format!(
            "<body rid='1573741824' sid='SomeSID' to='example.com' xml:lang='en' \
             xmpp:restart='true' {NS} {XB}/>"
        );
        let b = ok(&src);
        assert!(b.restart);
        assert_eq!(b.to, Some("example.com"));
        // The declaration may come after the attribute, and the prefix may be any name.
        let src = format!("<body x:restart='1' x:version='1.0' {NS} xmlns:x='{NS_XBOSH}'/>");
        let b = ok(&src);
        assert!(b.restart);
        assert_eq!(b.xmpp_version, Some("1.0"));
        for v in ["false", "0"] {
            assert!(!ok(&format!("<body xmpp:restart='{v}' {NS} {XB}/>")).restart);
        }
        bad(&format!("<body xmpp:restart='yes' {NS} {XB}/>"));
    }

    #[test]
    fn xbosh_03_restart_needs_the_xbosh_namespace() {
        // Bound to another namespace: not ours, ignored.
        let src =
            format!("<body xmpp:restart='true' xmpp:version='1.0' {NS} xmlns:xmpp='urn:example'/>");
        let b = ok(&src);
        assert!(!b.restart);
        assert_eq!(b.xmpp_version, None);
        // Unprefixed `restart` is not XEP-0206's.
        assert!(!ok(&format!("<body restart='true' {NS}/>")).restart);
        // Not declared at all: a namespace error.
        bad(&format!("<body xmpp:restart='true' {NS}/>"));
    }

    #[test]
    fn bosh_http_03_predefined_and_numeric_refs_pass() {
        let s = body(
            "rid='1' from='a&amp;b' xml:lang='&#x65;n'",
            "<message xmlns='jabber:client' a='&lt;&gt;&quot;'><body>&amp;&#38;&#x26;&#0038;&#x1F600;</body></message>",
        );
        let b = ok(&s);
        // Raw, not expanded.
        assert_eq!(b.from, Some("a&amp;b"));
        assert_eq!(b.lang, Some("&#x65;n"));
    }

    #[test]
    fn bosh_sess_01_attributes_other_than_ours_are_ignored() {
        let src = format!(
            "<body rid='1' stream='s1' accept='gzip' secure='true' {NS} xmlns:j='urn:example' \
             j:anything='x'/>"
        );
        let b = ok(&src);
        assert_eq!(b.rid, Some(1));
    }

    #[test]
    fn bosh_http_01_prefixed_payload_elements() {
        let s = body(
            "rid='1' xmlns:s='urn:example'",
            "<s:a><s:b>text</s:b></s:a><c xmlns='urn:x'><d/></c>",
        );
        let b = ok(&s);
        assert_eq!(b.children().count(), 2);
    }

    // -----------------------------------------------------------------------------------------
    // parse_body: refused requests (BOSH-HTTP-03/04)

    #[test]
    fn bosh_http_03_rejects_comments() {
        bad(&body("rid='1'", "<!-- hi -->"));
        bad(&body("rid='1'", "<a><!-- hi --></a>"));
        bad(&format!("<!-- hi --><body {NS}/>"));
        bad(&format!("<body {NS}/><!-- hi -->"));
    }

    #[test]
    fn bosh_http_03_rejects_processing_instructions() {
        bad(&body("rid='1'", "<?pi x?>"));
        bad(&body("rid='1'", "<a><?pi x?></a>"));
        bad(&format!("<?pi x?><body {NS}/>"));
        bad(&format!("<body {NS}/><?pi x?>"));
        // A second XML declaration.
        bad(&format!(
            "<?xml version='1.0'?><?xml version='1.0'?><body {NS}/>"
        ));
    }

    #[test]
    fn bosh_http_03_rejects_dtds() {
        bad(&format!("<!DOCTYPE body><body {NS}/>"));
        bad(&format!(
            "<!DOCTYPE body [<!ENTITY x 'y'>]><body {NS}><a>&x;</a></body>"
        ));
        bad(&body("rid='1'", "<!DOCTYPE a>"));
    }

    #[test]
    fn bosh_http_03_rejects_cdata() {
        bad(&body("rid='1'", "<![CDATA[x]]>"));
        bad(&body("rid='1'", "<a><![CDATA[x]]></a>"));
        bad(&body("rid='1'", "<a>]]></a>"));
    }

    #[test]
    fn bosh_http_03_rejects_unknown_entities() {
        bad(&body("rid='1'", "<a>&nbsp;</a>"));
        bad(&body("rid='1'", "<a x='&foo;'/>"));
        bad(&body("rid='1' from='&foo;'", ""));
        bad(&body("rid='1'", "<a>&amp</a>"));
        bad(&body("rid='1'", "<a>& </a>"));
        bad(&body("rid='1'", "<a>&#;</a>"));
        bad(&body("rid='1'", "<a>&#x;</a>"));
        bad(&body("rid='1'", "<a>&#0;</a>"));
        bad(&body("rid='1'", "<a>&#xD800;</a>"));
        bad(&body("rid='1'", "<a>&#x110000;</a>"));
        bad(&body("rid='1'", "<a>&#xFFFE;</a>"));
        bad(&body("rid='1'", "<a>&#12a;</a>"));
        bad(&body("rid='1'", "<a>&#x-1;</a>"));
        bad(&body("rid='1'", "<a>&#99999999999999999999;</a>"));
    }

    #[test]
    fn bosh_http_04_rejects_text_in_body() {
        bad(&body("rid='1'", "hello"));
        bad(&body("rid='1'", "<a/>hello<b/>"));
        bad(&body("rid='1'", "&#32;"));
        bad(&body("rid='1'", "&amp;"));
        bad(&body("rid='1'", "\u{a0}"));
        // Whitespace is not character data that counts.
        ok(&body("rid='1'", " <a/>\n<b/>\t"));
    }

    #[test]
    fn bosh_http_01_rejects_wrong_namespace_or_name() {
        bad("<body rid='1'/>");
        bad("<body xmlns='jabber:client' rid='1'/>");
        bad("<body xmlns='http://jabber.org/protocol/httpbind ' rid='1'/>");
        bad("<body xmlns='http://jabber.org/protocol/http&#98;ind' rid='1'/>");
        bad(&format!("<b:body xmlns:b='{NS_HTTPBIND}' rid='1'/>"));
        bad(&format!("<Body {NS} rid='1'/>"));
        bad(&format!("<stream {NS} rid='1'/>"));
        bad(&format!("<body {NS} xmlns:xmlns='urn:x'/>"));
        bad(&format!("<body {NS} xmlns:xml='urn:x'/>"));
        bad(&format!("<body {NS} xmlns:p=''/>"));
        ok(&format!(
            "<body {NS} xmlns:xml='http://www.w3.org/XML/1998/namespace'/>"
        ));
    }

    #[test]
    fn bosh_http_01_rejects_two_roots_or_trailing_content() {
        bad(&format!("<body {NS}/><body {NS}/>"));
        bad(&format!("<body {NS}/>x"));
        bad(&format!("<body {NS}></body><a/>"));
        bad(&format!("<body {NS}></body>&amp;"));
    }

    #[test]
    fn bosh_http_03_rejects_unbalanced_tags() {
        bad(&body("rid='1'", "<a>"));
        bad(&body("rid='1'", "</a>"));
        bad(&body("rid='1'", "<a></b>"));
        bad(&body("rid='1'", "<a><b></a></b>"));
        bad(&body("rid='1'", "<p:a></q:a>"));
        bad(&body("rid='1'", "<a></p:a>"));
        bad(&format!("<body {NS}><a/></bodyx>"));
        bad(&format!("<body {NS}><a/></p:body>"));
        bad(&format!("<body {NS}><a/>"));
        bad(&format!("<body {NS}>"));
        bad(&format!("<body {NS}"));
        bad("");
        bad("   ");
        bad("<?xml version='1.0'?>");
    }

    #[test]
    fn bosh_http_03_rejects_non_utf8() {
        let mut v = format!("<body {NS}><a>").into_bytes();
        v.extend_from_slice(&[0xff, 0xfe]);
        v.extend_from_slice(b"</a></body>");
        assert_eq!(parse_body(&v, 16), Err(Condition::BadRequest));
        bad(&format!(
            "<?xml version='1.0' encoding='ISO-8859-1'?><body {NS}/>"
        ));
        // Control characters are not XML characters.
        bad(&body("rid='1'", "<a>\u{1}</a>"));
        bad(&format!("<body {NS} from='\u{1}'/>"));
    }

    #[test]
    fn bosh_http_03_rejects_duplicate_attributes() {
        bad(&format!("<body {NS} rid='1' rid='2'/>"));
        bad(&format!("<body {NS} {NS}/>"));
        bad(&format!("<body {NS} {XB} {XB}/>"));
        bad(&format!("<body {NS} x='1' x='1'/>"));
    }

    #[test]
    fn bosh_http_03_attribute_count_bound() {
        let mut attrs = String::new();
        for i in 0..MAX_BODY_ATTRS - 1 {
            attrs.push_str(&format!(" a{i}='x'"));
        }
        ok(&format!("<body {NS}{attrs}/>"));
        bad(&format!("<body {NS}{attrs} z='x'/>"));
    }

    #[test]
    fn bosh_http_03_depth_bound() {
        let nested = |d: usize| "<a>".repeat(d) + &"</a>".repeat(d);
        let s = body("rid='1'", &nested(3));
        assert!(parse_body(s.as_bytes(), 3).is_ok());
        assert_eq!(parse_body(s.as_bytes(), 2), Err(Condition::BadRequest));
        let s = body("rid='1'", "<a/><a/><a><b/></a>");
        assert!(parse_body(s.as_bytes(), 2).is_ok());
        assert_eq!(parse_body(s.as_bytes(), 1), Err(Condition::BadRequest));
        // Depth 0: no payload at all.
        assert!(parse_body(body("rid='1'", " ").as_bytes(), 0).is_ok());
        assert_eq!(
            parse_body(body("rid='1'", "<a/>").as_bytes(), 0),
            Err(Condition::BadRequest)
        );
        // Deep input is refused without recursion or a large stack.
        let s = body("rid='1'", &nested(100_000));
        assert_eq!(parse_body(s.as_bytes(), 64), Err(Condition::BadRequest));
    }

    #[test]
    fn bosh_rid_06_max_rid() {
        let src = format!("<body {NS} rid='9007199254740991'/>");
        let b = ok(&src);
        assert_eq!(b.rid, Some(MAX_RID));
        assert_eq!(MAX_RID, 9_007_199_254_740_991);
        bad(&format!("<body {NS} rid='9007199254740992'/>"));
        bad(&format!("<body {NS} rid='18446744073709551615'/>"));
        bad(&format!("<body {NS} rid='18446744073709551616'/>"));
        bad(&format!("<body {NS} rid='99999999999999999999999'/>"));
        // Integers, exactly: no float rounding near 2^53.
        let src = format!("<body {NS} rid='9007199254740990'/>");
        let b = ok(&src);
        assert_eq!(b.rid, Some(9_007_199_254_740_990));
    }

    #[test]
    fn bosh_rid_06_bad_numbers() {
        for v in [
            "",
            " ",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "0x10",
            "1 2",
            "١",
            "12a",
            "&#49;",
            "1&amp;",
            "000000000000000000001",
        ] {
            bad(&format!("<body {NS} rid='{v}'/>"));
            bad(&format!("<body {NS} wait='{v}'/>"));
            bad(&format!("<body {NS} hold='{v}'/>"));
            bad(&format!("<body {NS} ack='{v}'/>"));
            bad(&format!("<body {NS} pause='{v}'/>"));
        }
        // rid is a positive integer.
        bad(&format!("<body {NS} rid='0'/>"));
        bad(&format!("<body {NS} wait='4294967296'/>"));
        bad(&format!("<body {NS} ack='9007199254740992'/>"));
        // Leading zeros and surrounding whitespace are still the integer.
        let src =
            format!("<body {NS} rid=' 007 ' wait='4294967295' hold='0' ack='0' pause='\n120\t'/>");
        let b = ok(&src);
        assert_eq!(b.rid, Some(7));
        assert_eq!(b.wait, Some(u32::MAX));
        assert_eq!(b.hold, Some(0));
        assert_eq!(b.ack, Some(0));
        assert_eq!(b.pause, Some(120));
    }

    #[test]
    fn bosh_http_03_entity_in_plain_attributes() {
        for name in [
            "sid", "rid", "to", "route", "ver", "wait", "hold", "ack", "pause", "key", "newkey",
        ] {
            bad(&format!("<body {NS} {name}='&amp;'/>"));
            bad(&format!("<body {NS} {name}='&#49;'/>"));
        }
        // The raw ones may hold a (valid) reference.
        for name in ["from", "content", "type", "xml:lang"] {
            ok(&format!("<body {NS} {name}='a&amp;b'/>"));
        }
    }

    #[test]
    fn bosh_sess_01_ver_parsing() {
        assert_eq!(Version::parse("1.6"), Some(Version { major: 1, minor: 6 }));
        assert_eq!(Version::parse("1.11"), Some(OUR_VERSION));
        assert_eq!(Version::parse("01.011"), Some(OUR_VERSION));
        // Minor numbers are integers: 1.11 > 1.6 > 1.10 is wrong, 1.10 > 1.6.
        assert!(Version::parse("1.10").unwrap() > Version::parse("1.6").unwrap());
        for v in [
            "", "1", "1.", ".1", "1.6.2", "v1.6", "1.-1", "1.+1", " 1.6", "65536.0", "1.123456",
        ] {
            assert_eq!(Version::parse(v), None, "{v}");
            bad(&format!("<body {NS} ver='{v}'/>"));
        }
        assert_eq!(OUR_VERSION.to_string(), "1.11");
    }

    #[test]
    fn bosh_http_03_panic_free_on_prefixes_of_a_valid_body() {
        let full = body(
            "rid='1249243562' sid='SomeSID' xml:lang='en' xmpp:restart='true' key='k' \
             xmlns:xmpp='urn:xmpp:xbosh'",
            "<message to='a@b' xmlns='jabber:client'><body>x &amp; y &#x263A;</body></message>",
        );
        let full = format!("<?xml version='1.0' encoding='utf-8'?>{full}");
        let bytes = full.as_bytes();
        assert!(parse_body(bytes, 16).is_ok());
        for n in 0..bytes.len() {
            assert_eq!(
                parse_body(&bytes[..n], 16),
                Err(Condition::BadRequest),
                "prefix of {n} bytes"
            );
            // And every suffix: no panic, never a different payload.
            let _ = parse_body(&bytes[n..], 16);
        }
    }

    #[test]
    fn bosh_http_03_panic_free_on_mutations_and_noise() {
        let base = body(
            "rid='10' sid='s' ack='9' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'",
            "<iq type='get' id='1' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .into_bytes();
        let alphabet: &[u8] = b"<>/='\"&;#x!?[]- \nabody:xmlns0129\xff\xc3\xa9";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut v = base.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(v.len());
                match rng.below(3) {
                    0 => v[i] = alphabet[rng.below(alphabet.len())],
                    1 => {
                        v.remove(i);
                    }
                    _ => v.insert(i, alphabet[rng.below(alphabet.len())]),
                }
            }
            if let Ok(b) = parse_body(&v, 8) {
                // Whatever passes is consistent with itself.
                for c in b.children() {
                    assert!(c.starts_with(b"<") && c.ends_with(b">"));
                }
                let _ = negotiate(&b, &Policy::default());
            }
        }
        for _ in 0..5_000 {
            let len = rng.below(64);
            let v: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let _ = parse_body(&v, 8);
            let w: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = parse_body(&w, 8);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Conditions

    #[test]
    fn bosh_err_01_condition_names() {
        let names: Vec<&str> = Condition::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "bad-request",
                "host-gone",
                "host-unknown",
                "improper-addressing",
                "internal-server-error",
                "item-not-found",
                "other-request",
                "policy-violation",
                "remote-connection-failed",
                "remote-stream-error",
                "see-other-uri",
                "system-shutdown",
                "undefined-condition",
            ]
        );
        for c in Condition::ALL {
            assert_eq!(Condition::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Condition::parse("nope"), None);
    }

    #[test]
    fn bosh_sess_05_legacy_status() {
        // The three of the XEP's table (§17.1).
        assert_eq!(Condition::BadRequest.legacy_status(), 400);
        assert_eq!(Condition::PolicyViolation.legacy_status(), 403);
        assert_eq!(Condition::ItemNotFound.legacy_status(), 404);
        // Ours for the rest: all errors, so a legacy client ends the session.
        assert_eq!(Condition::ImproperAddressing.legacy_status(), 400);
        assert_eq!(Condition::HostUnknown.legacy_status(), 404);
        assert_eq!(Condition::SystemShutdown.legacy_status(), 503);
        assert_eq!(Condition::RemoteConnectionFailed.legacy_status(), 502);
        for c in Condition::ALL {
            assert!((400..600).contains(&c.legacy_status()), "{c}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // negotiate

    #[test]
    fn bosh_sess_01_negotiate_xep_example() {
        let p = negotiate(&ok(CREATE), &Policy::default()).unwrap();
        assert_eq!(
            p,
            Params {
                wait: 60,
                hold: 1,
                requests: 2,
                inactivity: 60,
                polling: 2,
                maxpause: 120,
                ver: Some(Version { major: 1, minor: 6 }),
                ack: true,
                content: Some("text/xml; charset=utf-8".into()),
            }
        );
    }

    #[test]
    fn bosh_sess_01_negotiate_clamps() {
        let policy = Policy {
            max_wait: 30,
            max_hold: 1,
            ..Policy::default()
        };
        let src = format!("<body {NS} rid='1' to='x' wait='300' hold='5' ver='2.0'/>");
        let b = ok(&src);
        let p = negotiate(&b, &policy).unwrap();
        assert_eq!((p.wait, p.hold, p.requests), (30, 1, 2));
        // Ours is lower.
        assert_eq!(p.ver, Some(OUR_VERSION));
        // The client's lower: theirs.
        let src = format!("<body {NS} rid='1' to='x' wait='10' hold='0' ver='1.2'/>");
        let b = ok(&src);
        let p = negotiate(&b, &policy).unwrap();
        assert_eq!((p.wait, p.hold, p.requests), (10, 0, 1));
        assert_eq!(p.ver, Some(Version { major: 1, minor: 2 }));
        // requests > hold always, within the schema's unsignedByte.
        let wide = Policy {
            max_hold: u32::MAX,
            ..Policy::default()
        };
        let src = format!("<body {NS} rid='1' to='x' wait='10' hold='4294967295'/>");
        let b = ok(&src);
        let p = negotiate(&b, &wide).unwrap();
        assert_eq!((p.hold, p.requests), (MAX_GRANTED_HOLD, 255));
    }

    #[test]
    fn bosh_sess_05_negotiate_legacy_client() {
        let src = format!("<body {NS} rid='1' to='x' wait='60' hold='1'/>");
        let b = ok(&src);
        let p = negotiate(&b, &Policy::default()).unwrap();
        assert_eq!(p.ver, None);
        assert!(!p.ack);
        assert_eq!(p.content, None);
    }

    #[test]
    fn bosh_sess_03_negotiate_requires_to() {
        let p = Policy::default();
        for attrs in ["", "to=''", "to='  '"] {
            let s = format!("<body {NS} rid='1' wait='60' hold='1' {attrs}/>");
            assert_eq!(
                negotiate(&ok(&s), &p),
                Err(Condition::ImproperAddressing),
                "{s}"
            );
        }
    }

    #[test]
    fn bosh_sess_01_negotiate_requires_rid_wait_hold() {
        let p = Policy::default();
        for attrs in [
            "to='x' wait='60' hold='1'",
            "rid='1' to='x' hold='1'",
            "rid='1' to='x' wait='60'",
        ] {
            let s = format!("<body {NS} {attrs}/>");
            assert_eq!(negotiate(&ok(&s), &p), Err(Condition::BadRequest), "{s}");
        }
    }

    #[test]
    fn bosh_poll_04_polling_session_inactivity() {
        let policy = Policy::default();
        for (wait, hold) in [(0, 1), (60, 0), (0, 0)] {
            let s = format!("<body {NS} rid='1' to='x' wait='{wait}' hold='{hold}'/>");
            let p = negotiate(&ok(&s), &policy).unwrap();
            assert!(p.inactivity > policy.inactivity, "{s}");
            assert!(p.inactivity - policy.inactivity > p.polling, "{s}");
        }
        // The operator forcing polling (max_wait 0) counts too.
        let forced = Policy {
            max_wait: 0,
            ..policy
        };
        let s = format!("<body {NS} rid='1' to='x' wait='60' hold='1'/>");
        assert_eq!(negotiate(&ok(&s), &forced).unwrap().inactivity, 63);
        // BOSH-INACT-02: no inactivity stays none.
        let none = Policy {
            inactivity: 0,
            ..policy
        };
        let s = format!("<body {NS} rid='1' to='x' wait='0' hold='1'/>");
        assert_eq!(negotiate(&ok(&s), &none).unwrap().inactivity, 0);
    }

    #[test]
    fn bosh_sess_06_negotiate_ack() {
        let p = Policy::default();
        let with = |a: &str| {
            let s = format!("<body {NS} rid='1' to='x' wait='60' hold='1' {a}/>");
            negotiate(&ok(&s), &p).unwrap().ack
        };
        assert!(with("ack='1'"));
        assert!(!with(""));
        assert!(!with("ack='0'"));
    }

    #[test]
    fn bosh_http_02_negotiate_content() {
        let p = Policy::default();
        let s = format!("<body {NS} rid='1' to='x' wait='60' hold='1' content='text/html'/>");
        assert_eq!(
            negotiate(&ok(&s), &p).unwrap().content.as_deref(),
            Some("text/html")
        );
        let long = "a".repeat(MAX_CONTENT_LEN + 1);
        for c in [
            "",
            "text/xml&#13;&#10;X: y",
            "text/xml&amp;",
            "a\tb",
            long.as_str(),
        ] {
            let s = format!("<body {NS} rid='1' to='x' wait='60' hold='1' content='{c}'/>");
            assert_eq!(negotiate(&ok(&s), &p), Err(Condition::BadRequest), "{c:?}");
        }
        let s = format!("<body {NS} rid='1' to='x' wait='60' hold='1' content='a\nb'/>");
        assert_eq!(negotiate(&ok(&s), &p), Err(Condition::BadRequest));
    }

    #[test]
    fn policy_default() {
        assert_eq!(
            Policy::default(),
            Policy {
                max_wait: 60,
                max_hold: 2,
                inactivity: 60,
                polling: 2,
                maxpause: 120
            }
        );
    }

    // -----------------------------------------------------------------------------------------
    // write_creation, write_body, escape

    #[test]
    fn bosh_sess_02_xbosh_01_02_creation_response() {
        let p = negotiate(&ok(CREATE), &Policy::default()).unwrap();
        let features = b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
        let s = out(|o| {
            write_creation(
                o,
                &p,
                "SomeSID",
                "example.com",
                "ServerStreamID",
                1573741820,
                true,
                features,
            )
        });
        let expected = format!(
            "<body xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' \
             sid='SomeSID' wait='60' requests='2' hold='1' inactivity='60' polling='2' \
             maxpause='120' ver='1.6' from='example.com' authid='ServerStreamID' \
             ack='1573741820' secure='true' xmpp:version='1.0' xmpp:restartlogic='true'>{}</body>",
            std::str::from_utf8(features).unwrap()
        );
        assert_eq!(s, expected);
        // Well-formed for our own parser, which reads what it knows.
        let b = ok(&s);
        assert_eq!(b.sid, Some("SomeSID"));
        assert_eq!(b.wait, Some(60));
        assert_eq!(b.hold, Some(1));
        assert_eq!(b.ack, Some(1573741820));
        assert_eq!(b.ver, Some(Version { major: 1, minor: 6 }));
        assert_eq!(b.xmpp_version, Some("1.0"));
        assert_eq!(b.payload, features);
    }

    #[test]
    fn bosh_sess_02_creation_response_minimal() {
        let p = Params {
            wait: 0,
            hold: 0,
            requests: 1,
            inactivity: 0,
            polling: 0,
            maxpause: 0,
            ver: None,
            ack: false,
            content: None,
        };
        let s = out(|o| write_creation(o, &p, "s1", "a'<b", "", 7, false, b""));
        assert_eq!(
            s,
            "<body xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' \
             sid='s1' wait='0' requests='1' hold='0' from='a&apos;&lt;b' xmpp:version='1.0' \
             xmpp:restartlogic='true'/>"
        );
        let b = ok(&s);
        assert_eq!((b.sid, b.from), (Some("s1"), Some("a&apos;&lt;b")));
    }

    #[test]
    fn bosh_hold_03_empty_response() {
        assert_eq!(
            reply(ReplyType::Normal),
            "<body xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:stream='http://etherx.jabber.org/streams'/>"
        );
        assert!(ok(&reply(ReplyType::Normal)).is_empty());
    }

    #[test]
    fn bosh_hold_05_response_with_payload_ack_report() {
        let payload = b"<message xmlns='jabber:client'><body>hi</body></message>";
        let s = out(|o| {
            write_body(
                o,
                &Reply {
                    ack: Some(1249243564),
                    report: Some((1249243565, 852)),
                    ..Reply::default()
                },
                payload,
            )
        });
        assert_eq!(
            s,
            "<body xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:stream='http://etherx.jabber.org/streams' ack='1249243564' \
             report='1249243565' time='852'><message xmlns='jabber:client'><body>hi</body></message></body>"
        );
        let b = ok(&s);
        assert_eq!(b.ack, Some(1249243564));
        assert_eq!(b.payload, payload);
    }

    #[test]
    fn bosh_err_01_terminal_bodies() {
        for c in Condition::ALL {
            let s = reply(ReplyType::Terminate(Some(c)));
            assert_eq!(
                s,
                format!(
                    "<body xmlns='http://jabber.org/protocol/httpbind' \
                     xmlns:stream='http://etherx.jabber.org/streams' type='terminate' \
                     condition='{}'/>",
                    c.as_str()
                )
            );
            assert!(ok(&s).is_terminate());
        }
        // The client's own termination acknowledged (BOSH-TERM-01).
        assert_eq!(
            reply(ReplyType::Terminate(None)),
            "<body xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:stream='http://etherx.jabber.org/streams' type='terminate'/>"
        );
    }

    #[test]
    fn bosh_err_02_recoverable_error() {
        let s = reply(ReplyType::Error);
        assert_eq!(
            s,
            "<body xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:stream='http://etherx.jabber.org/streams' type='error'/>"
        );
        assert_eq!(ok(&s).ty, Some("error"));
    }

    #[test]
    fn bosh_err_01_see_other_uri() {
        let s = out(|o| {
            write_body(
                o,
                &Reply {
                    ty: ReplyType::Terminate(Some(Condition::SeeOtherUri)),
                    see_other_uri: Some("https://secure.example/x?a=1&b='2'"),
                    ..Reply::default()
                },
                b"",
            )
        });
        assert_eq!(
            s,
            "<body xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:stream='http://etherx.jabber.org/streams' type='terminate' \
             condition='see-other-uri'><uri>https://secure.example/x?a=1&amp;b=&apos;2&apos;</uri></body>"
        );
        let b = ok(&s);
        assert_eq!(
            b.children().collect::<Vec<_>>(),
            [&b"<uri>https://secure.example/x?a=1&amp;b=&apos;2&apos;</uri>"[..]]
        );
        // A uri with another condition is not written.
        let s = out(|o| {
            write_body(
                o,
                &Reply {
                    ty: ReplyType::Terminate(Some(Condition::HostGone)),
                    see_other_uri: Some("https://x"),
                    ..Reply::default()
                },
                b"",
            )
        });
        assert!(!s.contains("uri"));
    }

    #[test]
    fn xbosh_06_remote_stream_error_carries_payload() {
        let payload = b"<message xmlns='jabber:client'/><stream:error><host-gone xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
        let s = out(|o| {
            write_body(
                o,
                &Reply {
                    ty: ReplyType::Terminate(Some(Condition::RemoteStreamError)),
                    ..Reply::default()
                },
                payload,
            )
        });
        let b = ok(&s);
        assert!(b.is_terminate());
        assert_eq!(b.payload, payload);
        assert_eq!(b.children().count(), 2);
    }

    #[test]
    fn escape_all_five_and_drops_non_xml() {
        let s = out(|o| escape(o, "a&b<c>d'e\"f\u{0}g\u{fffe}h\té"));
        assert_eq!(s, "a&amp;b&lt;c&gt;d&apos;e&quot;fgh\té");
        assert_eq!(out(|o| escape(o, "")), "");
        assert_eq!(out(|o| escape(o, "plain")), "plain");
    }

    #[test]
    fn push_u64_edges() {
        for n in [0, 1, 9, 10, 1234567890, MAX_RID, u64::MAX] {
            assert_eq!(out(|o| push_u64(o, n)), n.to_string());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Rids

    #[test]
    fn bosh_hold_01_in_order() {
        let mut r = Rids::new(100, 2);
        r.answered(100, b"c", true, 0);
        assert_eq!(r.last_processed(), 100);
        assert_eq!(r.classify(101), Arrival::Next);
        assert_eq!(r.processed(101), 102);
        assert_eq!(r.classify(102), Arrival::Next);
        assert_eq!(r.classify(101), Arrival::Held);
    }

    #[test]
    fn bosh_hold_01_out_of_order_early_then_next() {
        let mut r = Rids::new(100, 2);
        r.answered(100, b"c", true, 0);
        // 102 arrives before 101: it waits.
        assert_eq!(r.classify(102), Arrival::Early);
        r.waiting(102);
        // A duplicate of the waiting one is refused.
        assert_eq!(r.classify(102), Arrival::Refused);
        // 101 is next, then the waiting 102 is processed in its turn.
        assert_eq!(r.classify(101), Arrival::Next);
        assert_eq!(r.processed(101), 102);
        r.unwaiting(102);
        assert_eq!(r.classify(102), Arrival::Next);
        assert_eq!(r.processed(102), 103);
        assert_eq!(r.last_processed(), 102);
        assert_eq!(r.classify(102), Arrival::Held);
    }

    #[test]
    fn bosh_hold_01_processed_clears_waiting() {
        let mut r = Rids::new(1, 2);
        r.waiting(3);
        r.processed(2);
        // Processed straight from waiting (the caller's path when its turn comes).
        assert_eq!(r.processed(3), 4);
        assert_eq!(r.classify(4), Arrival::Next);
        assert_eq!(r.classify(3), Arrival::Held);
    }

    #[test]
    fn bosh_hold_01_processed_ignores_out_of_turn() {
        let mut r = Rids::new(1, 3);
        assert_eq!(r.processed(3), 2);
        assert_eq!(r.processed(1), 2);
        assert_eq!(r.last_processed(), 1);
        // waiting() takes only Early rids.
        r.waiting(2);
        r.waiting(9);
        assert_eq!(r.classify(2), Arrival::Next);
        assert_eq!(r.classify(4), Arrival::Early);
    }

    #[test]
    fn bosh_rid_01_refused_beyond_window() {
        let r = Rids::new(100, 2);
        assert_eq!(r.classify(101), Arrival::Next);
        assert_eq!(r.classify(102), Arrival::Early);
        assert_eq!(r.classify(103), Arrival::Refused);
        assert_eq!(r.classify(u64::MAX), Arrival::Refused);
        let r = Rids::new(100, 1);
        assert_eq!(r.classify(101), Arrival::Next);
        assert_eq!(r.classify(102), Arrival::Refused);
        // requests 0 is taken as 1.
        let r = Rids::new(100, 0);
        assert_eq!(r.classify(101), Arrival::Next);
        assert_eq!(r.classify(102), Arrival::Refused);
    }

    #[test]
    fn bosh_rid_02_replay_of_cached_response() {
        let mut r = Rids::new(100, 2);
        r.answered(100, b"<creation/>", true, 0);
        assert_eq!(r.classify(100), Arrival::Replay);
        assert_eq!(r.cached(100), Some(&b"<creation/>"[..]));
        r.processed(101);
        r.answered(101, b"<one/>", true, 10);
        assert_eq!(r.classify(101), Arrival::Replay);
        assert_eq!(r.cached(101), Some(&b"<one/>"[..]));
        assert_eq!(r.cache_len(), (2, 17));
    }

    #[test]
    fn bosh_rid_03_held() {
        let mut r = Rids::new(100, 3);
        r.answered(100, b"c", true, 0);
        r.processed(101);
        r.processed(102);
        assert_eq!(r.classify(101), Arrival::Held);
        assert_eq!(r.classify(102), Arrival::Held);
        assert_eq!(r.cached(101), None);
        r.answered(101, b"x", true, 5);
        assert_eq!(r.classify(101), Arrival::Replay);
        assert_eq!(r.classify(102), Arrival::Held);
    }

    #[test]
    fn bosh_rid_04_gone_after_cache_eviction() {
        let mut r = Rids::new(100, 2);
        r.answered(100, b"c0", true, 0);
        r.processed(101);
        r.answered(101, b"c1", true, 0);
        r.processed(102);
        r.answered(102, b"c2", true, 0);
        // At most `requests` responses: the oldest went.
        assert_eq!(r.cache_len(), (2, 4));
        assert_eq!(r.classify(100), Arrival::Gone);
        assert_eq!(r.cached(100), None);
        assert_eq!(r.classify(101), Arrival::Replay);
        assert_eq!(r.classify(102), Arrival::Replay);
    }

    #[test]
    fn bosh_rid_04_gone_after_client_ack() {
        let mut r = Rids::new(100, 3);
        r.answered(100, b"c0", true, 0);
        for rid in 101..=102 {
            r.processed(rid);
            r.answered(rid, b"xx", true, 0);
        }
        r.client_ack(101);
        assert_eq!(r.client_acked(), 101);
        assert_eq!(r.classify(100), Arrival::Gone);
        assert_eq!(r.classify(101), Arrival::Gone);
        assert_eq!(r.classify(102), Arrival::Replay);
        assert_eq!(r.cache_len(), (1, 2));
        // A lower ack later changes nothing; one beyond what was processed is clamped.
        r.client_ack(100);
        assert_eq!(r.client_acked(), 101);
        r.client_ack(u64::MAX);
        assert_eq!(r.client_acked(), 102);
        assert_eq!(r.cache_len(), (0, 0));
    }

    #[test]
    fn bosh_rid_05_error_and_pause_responses_not_cached() {
        let mut r = Rids::new(100, 2);
        r.answered(100, b"c", true, 0);
        r.processed(101);
        r.answered(101, b"<pause response/>", false, 0);
        assert_eq!(r.classify(101), Arrival::Gone);
        assert_eq!(r.cache_len(), (1, 1));
    }

    #[test]
    fn bosh_rid_01_refused_older_than_remembered() {
        let mut r = Rids::new(1, 1);
        r.answered(1, b"c", true, 0);
        for rid in 2..=100 {
            r.processed(rid);
            r.answered(rid, b"x", true, 0);
        }
        assert_eq!(r.classify(100), Arrival::Replay);
        assert_eq!(r.classify(99), Arrival::Gone);
        assert_eq!(r.classify(1), Arrival::Refused);
        assert_eq!(r.classify(0), Arrival::Refused);
        assert!(r.slots.len() <= r.remember());
        assert_eq!(r.cache_len(), (1, 1));
    }

    #[test]
    fn bosh_rid_bounded_memory_when_nothing_is_answered() {
        let mut r = Rids::new(1, 2);
        for rid in 2..10_000 {
            r.processed(rid);
        }
        assert!(r.slots.len() <= r.remember() * 4);
        // Answering a forgotten rid is ignored.
        r.answered(2, b"x", true, 0);
        assert_eq!(r.cache_len(), (0, 0));
    }

    #[test]
    fn bosh_rid_06_window_near_max_rid() {
        let mut r = Rids::new(MAX_RID - 1, 2);
        assert_eq!(r.classify(MAX_RID), Arrival::Next);
        assert_eq!(r.processed(MAX_RID), MAX_RID + 1);
        assert_eq!(r.classify(MAX_RID), Arrival::Held);
        // Arithmetic at the very top of u64 does not overflow.
        let mut r = Rids::new(u64::MAX - 1, 2);
        assert_eq!(r.classify(u64::MAX), Arrival::Next);
        assert_eq!(r.processed(u64::MAX), u64::MAX);
        assert_eq!(r.classify(u64::MAX), Arrival::Held);
        assert_eq!(r.ack_for(0), Some(u64::MAX));
        assert_eq!(r.report(u64::MAX, 0, 0), None);
    }

    #[test]
    fn bosh_sess_06_ack_for() {
        let mut r = Rids::new(100, 3);
        r.processed(101);
        r.processed(102);
        // Answering 101 while 102 was received: ack 102.
        assert_eq!(r.ack_for(101), Some(102));
        // Answering the last received one: no ack.
        assert_eq!(r.ack_for(102), None);
    }

    #[test]
    fn bosh_sess_06_report() {
        let mut r = Rids::new(100, 3);
        r.answered(100, b"c", true, 0);
        r.processed(101);
        r.answered(101, b"r101", true, 1_000);
        r.processed(102);
        r.answered(102, b"r102", true, 2_000);
        // The client acks 100 only: 101 seems lost.
        assert_eq!(r.report(100, 1_500, 1_000), None);
        assert_eq!(r.report(100, 2_000, 1_000), None);
        assert_eq!(r.report(100, 2_001, 1_000), Some((101, 1_001)));
        // Acked up to 101: 102 next in question.
        assert_eq!(r.report(101, 3_500, 1_000), Some((102, 1_500)));
        // Everything acked, or what follows not answered yet: nothing.
        assert_eq!(r.report(102, 10_000, 0), None);
        r.processed(103);
        assert_eq!(r.report(102, 10_000, 0), None);
        // Not cached (a pause response): nothing to resend, no report.
        r.answered(103, b"p", false, 3_000);
        assert_eq!(r.report(102, 10_000, 0), None);
        // A replay refreshes the time.
        r.answered(101, b"ignored", true, 9_000);
        assert_eq!(r.report(100, 9_500, 1_000), None);
        assert_eq!(r.cached(101), Some(&b"r101"[..]));
    }

    // -----------------------------------------------------------------------------------------
    // Keys

    #[test]
    fn sha1_hex_known_vector() {
        assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn bosh_sec_02_key_sequence_good() {
        let k = chain("seed", 5);
        let mut keys = Keys::default();
        assert!(!keys.in_use());
        // Creation: K(5) as newkey; then K(4), K(3), ... Hex compares without regard to case:
        // K(5) written in capitals still matches hex(SHA-1(K(4))).
        keys.check(None, Some(&k[4].to_uppercase())).unwrap();
        assert!(keys.in_use());
        keys.check(Some(&k[3]), None).unwrap();
        keys.check(Some(&k[2]), None).unwrap();
        keys.check(Some(&k[1]), None).unwrap();
    }

    #[test]
    fn bosh_sec_02_key_sequence_switch() {
        let old = chain("seed", 3);
        let new = chain("other", 3);
        let mut keys = Keys::default();
        keys.check(None, Some(&old[2])).unwrap();
        keys.check(Some(&old[1]), None).unwrap();
        // K(1) of the old sequence with K(n) of the new.
        keys.check(Some(&old[0]), Some(&new[2])).unwrap();
        keys.check(Some(&new[1]), None).unwrap();
        assert_eq!(
            keys.check(Some(&old[0]), None),
            Err(Condition::ItemNotFound)
        );
    }

    #[test]
    fn bosh_sec_02_key_sequence_bad() {
        let k = chain("seed", 4);
        let mut keys = Keys::default();
        keys.check(None, Some(&k[3])).unwrap();
        // Wrong key, a skipped key, the same key again, no key: refused, and state unchanged.
        assert_eq!(keys.check(Some(&k[1]), None), Err(Condition::ItemNotFound));
        assert_eq!(keys.check(Some(&k[3]), None), Err(Condition::ItemNotFound));
        assert_eq!(keys.check(None, None), Err(Condition::ItemNotFound));
        assert_eq!(keys.check(Some("zz"), None), Err(Condition::ItemNotFound));
        assert_eq!(keys.check(None, Some(&k[0])), Err(Condition::ItemNotFound));
        keys.check(Some(&k[2]), None).unwrap();
        // A replay of a good key is not good twice.
        assert_eq!(keys.check(Some(&k[2]), None), Err(Condition::ItemNotFound));
    }

    #[test]
    fn bosh_sec_02_no_sequence() {
        let mut keys = Keys::default();
        keys.check(None, None).unwrap();
        keys.check(None, None).unwrap();
        // A key without a sequence, or on the creation request.
        let k = chain("seed", 2);
        assert_eq!(keys.check(Some(&k[0]), None), Err(Condition::ItemNotFound));
        assert_eq!(
            keys.check(Some(&k[0]), Some(&k[1])),
            Err(Condition::ItemNotFound)
        );
        // A newkey that is not a hex SHA-1 cannot start one.
        assert_eq!(
            keys.check(None, Some("short")),
            Err(Condition::ItemNotFound)
        );
        assert!(!keys.in_use());
    }

    // -----------------------------------------------------------------------------------------
    // Polling, overactivity, pause

    #[test]
    fn bosh_poll_01_too_frequent() {
        // No previous empty exchange: never.
        assert!(!too_frequent(None, 0, 2));
        // Closer than `polling`: a violation; exactly `polling` apart is fine.
        assert!(too_frequent(Some(1_000), 1_000, 2));
        assert!(too_frequent(Some(1_000), 2_999, 2));
        assert!(!too_frequent(Some(1_000), 3_000, 2));
        assert!(!too_frequent(Some(1_000), 100_000, 2));
        // A clock that went back counts as no time.
        assert!(too_frequent(Some(5_000), 1_000, 2));
        // Large values do not overflow.
        assert!(too_frequent(Some(u64::MAX - 1), u64::MAX, u32::MAX));
        assert!(!too_frequent(Some(0), u64::MAX, u32::MAX));
    }

    #[test]
    fn bosh_poll_03_no_polling_no_limit() {
        assert!(!too_frequent(Some(1_000), 1_000, 0));
        assert!(!overactive(1_000, 0, false));
    }

    #[test]
    fn bosh_poll_02_overactive() {
        assert!(!overactive(2, 2, false));
        assert!(overactive(3, 2, false));
        // One more for a pause or terminate request.
        assert!(!overactive(3, 2, true));
        assert!(overactive(4, 2, true));
        assert!(!overactive(u32::MAX, u32::MAX, true));
    }

    #[test]
    fn bosh_inact_03_pause_allowed() {
        assert!(pause_allowed(60, 120));
        assert!(pause_allowed(120, 120));
        assert!(pause_allowed(0, 120));
        assert!(!pause_allowed(121, 120));
        assert!(!pause_allowed(10, 0));
    }
}
