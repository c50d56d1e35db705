//! Splits an XMPP byte stream into frames: header, top-level elements, keepalives, close.
//!
//! The framer is a byte-at-a-time lexer that keeps its place between calls, so a stanza arriving
//! in many small reads is scanned once. It checks what can be checked without a tree: UTF-8,
//! characters XML forbids, comments, PIs and DTDs, text at stream level, nesting depth, size,
//! a second stream header and the close tag. Tag balance, attributes, references and namespaces
//! inside a stanza are checked by [`scan_stanza`](super::scan_stanza) /
//! [`parse_element`](super::parse_element), which every element frame goes through.

use smallvec::SmallVec;
use xmlparser::{ElementEnd, Token, Tokenizer};

use super::escape::{check_refs, decode, Normalize};
use super::{check_default_decl, check_prefix_decl, Limits, XmlError, NS_STREAMS, NS_XML};

/// One unit of an XMPP stream, borrowed from the caller's buffer where it has bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The stream's open tag, optionally preceded by whitespace, a byte-order mark and
    /// `<?xml version='1.0'?>` (CORE-STREAM-23).
    StreamOpen(StreamHeader),
    /// One complete depth-1 element, exactly the bytes received, from `<` to the final `>`.
    Element(&'a [u8]),
    /// Whitespace between depth-1 elements (keepalive, CORE-STREAM-18); may be coalesced.
    Whitespace,
    /// The stream's close tag (same qualified name as the open tag).
    StreamClose,
}

/// The attributes of a stream header, unescaped and owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// `to`.
    pub to: Option<String>,
    /// `from`.
    pub from: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// The default namespace declared on the header (`jabber:client`, `jabber:server`, ...).
    pub default_ns: Option<String>,
    /// The prefix of the stream element, usually `stream`.
    pub prefix: Option<String>,
    /// Other attributes as (qualified name, value); namespace declarations are in [`StreamNs`].
    pub extra: Vec<(String, String)>,
}

/// The namespace context declared on a stream header: the default namespace and prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamNs {
    default: String,
    prefixes: SmallVec<[(String, String); 2]>,
}

impl StreamNs {
    /// A context with `default_ns` as the default namespace and no prefixes.
    pub fn new(default_ns: &str) -> StreamNs {
        StreamNs {
            default: default_ns.to_owned(),
            prefixes: SmallVec::new(),
        }
    }

    /// Adds a prefix binding (builder style).
    pub fn with_prefix(mut self, prefix: &str, uri: &str) -> StreamNs {
        self.prefixes.push((prefix.to_owned(), uri.to_owned()));
        self
    }

    /// The default namespace; empty when the header declared none.
    pub fn default_ns(&self) -> &str {
        &self.default
    }

    /// The namespace bound to `prefix`: `""` is the default namespace (None when empty) and
    /// `xml` is always bound.
    pub fn resolve(&self, prefix: &str) -> Option<&str> {
        match prefix {
            "" => (!self.default.is_empty()).then_some(self.default.as_str()),
            "xml" => Some(NS_XML),
            _ => self
                .prefixes
                .iter()
                .rev()
                .find(|(p, _)| p == prefix)
                .map(|(_, uri)| uri.as_str()),
        }
    }

    /// The declared prefix bindings as (prefix, namespace), in header order.
    pub fn prefixes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.prefixes.iter().map(|(p, u)| (p.as_str(), u.as_str()))
    }
}

/// Resumable splitter of an XMPP stream. It owns no input buffer: see [`Framer::next`].
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    phase: Phase,
    /// Qualified name of the stream element, e.g. `stream:stream`.
    stream_qname: String,
    ns: std::sync::Arc<StreamNs>,
    scan: Scan,
    /// Name spans (offsets into the caller's buffer) of the elements open in the current
    /// stanza, so a mismatched end tag is refused as soon as it arrives (CORE-XML-05).
    open: Vec<(u32, u32)>,
    /// Bytes lexed since creation, to test that resumption does not rescan.
    #[cfg(test)]
    lexed: usize,
}

/// Where the stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the stream header (and optional XML declaration).
    ExpectHeader,
    /// Inside the stream: expecting stanzas, whitespace or the close tag.
    Open,
    /// The header was self-closing; the close is reported next.
    PendingClose,
    /// The stream was closed; only whitespace may follow.
    Closed,
    /// The peer sent something unacceptable; the stream is over.
    Failed(XmlError),
}

/// Progress through the frame being lexed; reset when a frame is returned.
#[derive(Clone, Copy, Debug, Default)]
struct Scan {
    /// Offset of the next byte to lex in the caller's buffer.
    pos: usize,
    lex: Lex,
    /// Offset of the `<` of the tag being lexed.
    tag_start: usize,
    /// Offset just after the name of the start tag being lexed.
    name_end: usize,
    /// Open elements in the current stanza.
    depth: usize,
    utf8: Utf8,
    /// Whether an XML declaration has been seen before the header.
    decl_seen: bool,
}

/// Lexical state at `Scan::pos`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Lex {
    /// Character data (or, outside elements, whitespace).
    #[default]
    Text,
    /// Just after `<`.
    Lt,
    /// After `<!` with this many bytes of `[CDATA[` matched.
    Bang(usize),
    /// Inside a CDATA section, after this many `]` (at most 2).
    Cdata(u8),
    /// Inside the XML declaration; `q`: the last byte was `?`.
    Decl { q: bool },
    /// Inside a start tag; `quote` is the open quote or 0; `named`: the name has ended.
    StartTag { quote: u8, named: bool },
    /// Inside an end tag.
    EndTag,
}

/// A frame boundary found by the lexer: what ends at offset `end` (inclusive).
#[derive(Clone, Copy, Debug)]
enum Done {
    Header { end: usize, empty: bool },
    Element { end: usize },
    Close { end: usize },
}

const CDATA_OPEN: &[u8] = b"[CDATA[";
const BOM: &[u8] = b"\xEF\xBB\xBF";
const XML_DECL_OPEN: &[u8] = b"<?xml";

impl Framer {
    /// A framer expecting a stream header.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            phase: Phase::ExpectHeader,
            stream_qname: String::new(),
            ns: std::sync::Arc::default(),
            scan: Scan::default(),
            open: Vec::new(),
            #[cfg(test)]
            lexed: 0,
        }
    }

    /// A framer already inside a stream whose header declared `ns`: for transports that frame
    /// elements without a stream header (RFC 7395's one element per WebSocket message).
    pub fn open_with(ns: StreamNs, limits: Limits) -> Framer {
        let mut f = Framer::new(limits);
        f.ns = std::sync::Arc::new(ns);
        f.phase = Phase::Open;
        f
    }

    /// Forgets everything; a new stream header is expected next (stream restart after TLS or
    /// SASL, CORE-STREAM-14).
    pub fn reset(&mut self) {
        self.phase = Phase::ExpectHeader;
        self.stream_qname.clear();
        self.ns = std::sync::Arc::default();
        self.scan = Scan::default();
        self.open.clear();
    }

    /// Enforce `limits` from the next frame on (e.g. the larger stanza limit after
    /// authentication).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits this framer enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Namespace context declared on the current stream header (valid after
    /// [`Frame::StreamOpen`] was returned).
    pub fn stream_ns(&self) -> &StreamNs {
        &self.ns
    }

    /// The same, as a shared handle that outlives a borrow of the framer.
    pub fn stream_ns_shared(&self) -> std::sync::Arc<StreamNs> {
        self.ns.clone()
    }

    /// Returns the next frame and how many bytes of `buf` it consumed, or `Ok(None)` when more
    /// bytes are needed (a normal result).
    ///
    /// `buf` holds all not-yet-consumed bytes: the caller passes the same prefix again plus any
    /// new bytes until a frame is returned, then drops the consumed bytes and calls again. The
    /// framer remembers how far it lexed, so each byte is looked at once.
    ///
    /// An error is final: later calls return it again until [`Framer::reset`].
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, XmlError> {
        if let Phase::Failed(e) = self.phase {
            return Err(e);
        }
        let result = self.step(buf);
        if let Err(e) = result {
            self.phase = Phase::Failed(e);
        }
        result
    }

    fn step<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, XmlError> {
        if buf.len() < self.scan.pos {
            // The caller broke the contract; start the frame over rather than misread it.
            self.scan = Scan::default();
            self.open.clear();
        }
        match self.phase {
            Phase::PendingClose => {
                self.phase = Phase::Closed;
                return Ok(Some((Frame::StreamClose, 0)));
            }
            Phase::Open | Phase::Closed if self.scan.pos == 0 => {
                let ws = buf.iter().take_while(|b| is_ws(**b)).count();
                if ws > 0 {
                    return Ok(Some((Frame::Whitespace, ws)));
                }
                match buf.first() {
                    None => return Ok(None),
                    Some(_) if self.phase == Phase::Closed => {
                        return Err(XmlError::NotWellFormed("data after the stream was closed"))
                    }
                    Some(b'<') => {}
                    Some(_) => return Err(XmlError::BadFormat("character data at stream level")),
                }
            }
            Phase::ExpectHeader | Phase::Open | Phase::Closed | Phase::Failed(_) => {}
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let limit = buf.len().min(self.limits.max_stanza_bytes);
        let Some(done) = self.lex(buf, limit)? else {
            if buf.len() >= self.limits.max_stanza_bytes {
                return Err(XmlError::PolicyViolation(
                    if self.phase == Phase::ExpectHeader {
                        "stream header too large"
                    } else {
                        "stanza too large"
                    },
                ));
            }
            return Ok(None);
        };
        let tag_start = self.scan.tag_start;
        self.scan = Scan::default();
        self.open.clear();
        match done {
            Done::Header { end, empty } => {
                let tag = buf.get(tag_start..=end).unwrap_or_default();
                let tag = std::str::from_utf8(tag)
                    .map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
                let (header, ns, qname) = parse_header(tag, &self.limits)?;
                self.ns = std::sync::Arc::new(ns);
                self.stream_qname = qname;
                self.phase = if empty {
                    Phase::PendingClose
                } else {
                    Phase::Open
                };
                Ok(Some((Frame::StreamOpen(header), end + 1)))
            }
            Done::Element { end } => {
                let raw = buf.get(..=end).unwrap_or_default();
                Ok(Some((Frame::Element(raw), end + 1)))
            }
            Done::Close { end } => {
                self.phase = Phase::Closed;
                Ok(Some((Frame::StreamClose, end + 1)))
            }
        }
    }

    /// Lexes `buf[scan.pos..limit]`, stopping at the first frame boundary.
    fn lex(&mut self, buf: &[u8], limit: usize) -> Result<Option<Done>, XmlError> {
        let header = self.phase == Phase::ExpectHeader;
        let max_depth = self.limits.max_depth;
        let start = self.scan.pos;
        let window = buf.get(start..limit).unwrap_or_default();
        let s = &mut self.scan;
        let open = &mut self.open;
        let mut off = 0;
        while let Some(&b) = window.get(off) {
            // Fast path: runs of printable ASCII that cannot change the state (most of a
            // stanza); control and non-ASCII bytes always take the byte-at-a-time path.
            let rest = window.get(off..).unwrap_or_default();
            let run = match s.lex {
                _ if s.utf8.need != 0 => 0,
                Lex::Text if s.depth > 0 => plain_run(rest, |_| false),
                Lex::StartTag {
                    quote: 0,
                    named: true,
                } => plain_run(rest, |c| matches!(c, b'\'' | b'"' | b'>')),
                Lex::StartTag { quote, .. } if quote != 0 => plain_run(rest, |c| c == quote),
                Lex::EndTag => plain_run(rest, |c| c == b'>'),
                Lex::Cdata(0) => plain_run(rest, |c| c == b']'),
                _ => 0,
            };
            if run > 0 {
                off += run;
                #[cfg(test)]
                {
                    self.lexed += run;
                }
                continue;
            }
            let i = start + off;
            off += 1;
            #[cfg(test)]
            {
                self.lexed += 1;
            }
            s.utf8.push(b)?;
            match s.lex {
                Lex::Text => {
                    if b == b'<' {
                        s.tag_start = i;
                        s.lex = Lex::Lt;
                    } else if s.depth == 0 && !is_ws(b) && !(header && BOM.get(i) == Some(&b)) {
                        return Err(if header {
                            XmlError::NotWellFormed("text before the stream header")
                        } else {
                            XmlError::BadFormat("character data at stream level")
                        });
                    }
                }
                Lex::Lt => match b {
                    b'/' if header => {
                        return Err(XmlError::NotWellFormed("end tag before the stream header"))
                    }
                    b'/' => s.lex = Lex::EndTag,
                    b'!' => s.lex = Lex::Bang(0),
                    b'?' if header && !s.decl_seen => s.lex = Lex::Decl { q: false },
                    b'?' => return Err(XmlError::RestrictedXml("processing instruction")),
                    b'<' | b'>' | b'=' | b'\'' | b'"' => {
                        return Err(XmlError::NotWellFormed("malformed tag"))
                    }
                    _ if is_ws(b) => return Err(XmlError::NotWellFormed("malformed tag")),
                    _ => {
                        if !header && s.depth + 1 > max_depth {
                            return Err(XmlError::PolicyViolation("elements nested too deep"));
                        }
                        s.lex = Lex::StartTag {
                            quote: 0,
                            named: false,
                        };
                    }
                },
                Lex::Bang(n) => {
                    if CDATA_OPEN.get(n) != Some(&b) {
                        return Err(match (n, b) {
                            (0, b'-') => XmlError::RestrictedXml("comment"),
                            (0, b'A'..=b'Z') => {
                                XmlError::RestrictedXml("document type declaration")
                            }
                            _ => XmlError::NotWellFormed("malformed markup"),
                        });
                    }
                    if s.depth == 0 {
                        return Err(if header {
                            XmlError::NotWellFormed("CDATA before the stream header")
                        } else {
                            XmlError::BadFormat("character data at stream level")
                        });
                    }
                    s.lex = if n + 1 == CDATA_OPEN.len() {
                        Lex::Cdata(0)
                    } else {
                        Lex::Bang(n + 1)
                    };
                }
                Lex::Cdata(k) => {
                    s.lex = match b {
                        b']' => Lex::Cdata((k + 1).min(2)),
                        b'>' if k == 2 => Lex::Text,
                        _ => Lex::Cdata(0),
                    }
                }
                Lex::Decl { q } => {
                    // Anything but `<?xml` followed by a space or `?` is another PI.
                    let at = i - s.tag_start;
                    let target_ok = match XML_DECL_OPEN.get(at) {
                        Some(&want) => b == want,
                        None => at != XML_DECL_OPEN.len() || is_ws(b) || b == b'?',
                    };
                    if !target_ok {
                        return Err(XmlError::RestrictedXml("processing instruction"));
                    }
                    if q && b == b'>' {
                        check_decl(buf.get(s.tag_start..=i).unwrap_or_default())?;
                        s.decl_seen = true;
                        s.lex = Lex::Text;
                    } else {
                        s.lex = Lex::Decl { q: b == b'?' };
                    }
                }
                Lex::StartTag { quote, named } => {
                    if quote != 0 {
                        if b == quote {
                            s.lex = Lex::StartTag { quote: 0, named };
                        } else if b == b'<' {
                            return Err(XmlError::NotWellFormed("'<' in an attribute value"));
                        }
                        continue;
                    }
                    let name_ends = !named && (is_ws(b) || matches!(b, b'/' | b'>' | b'\'' | b'"'));
                    if name_ends && !header && s.depth == 0 {
                        let name = buf.get(s.tag_start + 1..i);
                        if name == Some(self.stream_qname.as_bytes()) {
                            // CORE-STREAM-24
                            return Err(XmlError::NotWellFormed(
                                "stream header inside an open stream",
                            ));
                        }
                    }
                    if name_ends {
                        s.name_end = i;
                    }
                    let named = named || name_ends;
                    match b {
                        b'\'' | b'"' => s.lex = Lex::StartTag { quote: b, named },
                        b'<' => return Err(XmlError::NotWellFormed("'<' in a tag")),
                        b'>' => {
                            let empty = i > 0 && buf.get(i - 1) == Some(&b'/');
                            if header {
                                return Ok(Some(Done::Header { end: i, empty }));
                            }
                            if !empty {
                                s.depth += 1;
                                let span = (s.tag_start + 1, s.name_end);
                                open.push((
                                    u32::try_from(span.0).unwrap_or(u32::MAX),
                                    u32::try_from(span.1).unwrap_or(u32::MAX),
                                ));
                            } else if s.depth == 0 {
                                return Ok(Some(Done::Element { end: i }));
                            }
                            s.lex = Lex::Text;
                        }
                        _ => s.lex = Lex::StartTag { quote: 0, named },
                    }
                }
                Lex::EndTag => match b {
                    b'>' if s.depth == 0 => {
                        let name = buf.get(s.tag_start + 2..i).map(<[u8]>::trim_ascii_end);
                        if name != Some(self.stream_qname.as_bytes()) {
                            return Err(XmlError::NotWellFormed(
                                "close tag does not match the stream header",
                            ));
                        }
                        return Ok(Some(Done::Close { end: i }));
                    }
                    b'>' => {
                        let name = buf.get(s.tag_start + 2..i).map(<[u8]>::trim_ascii_end);
                        let opened = open
                            .pop()
                            .and_then(|(a, z)| buf.get(a as usize..z as usize));
                        if name.is_none() || name != opened {
                            return Err(XmlError::NotWellFormed("end tag does not match"));
                        }
                        s.depth -= 1;
                        if s.depth == 0 {
                            return Ok(Some(Done::Element { end: i }));
                        }
                        s.lex = Lex::Text;
                    }
                    b'<' => return Err(XmlError::NotWellFormed("'<' in a tag")),
                    _ => {}
                },
            }
        }
        s.pos = start + window.len();
        Ok(None)
    }
}

/// Incremental UTF-8 validation that also refuses characters XML 1.0 forbids (CORE-XML-07/08).
#[derive(Clone, Copy, Debug, Default)]
struct Utf8 {
    /// Continuation bytes still expected.
    need: u8,
    /// Allowed range of the next continuation byte.
    lo: u8,
    hi: u8,
    /// Code point decoded so far.
    cp: u32,
}

impl Utf8 {
    #[inline]
    fn push(&mut self, b: u8) -> Result<(), XmlError> {
        const BAD_UTF8: XmlError = XmlError::NotWellFormed("invalid UTF-8");
        const FORBIDDEN: XmlError = XmlError::NotWellFormed("character forbidden by XML 1.0");
        if self.need == 0 {
            let (need, bits, lo, hi) = match b {
                b'\t' | b'\n' | b'\r' | 0x20..=0x7F => return Ok(()),
                0x00..=0x1F => return Err(FORBIDDEN),
                0xC2..=0xDF => (1, b & 0x1F, 0x80, 0xBF),
                0xE0 => (2, 0, 0xA0, 0xBF),
                0xE1..=0xEC | 0xEE | 0xEF => (2, b & 0x0F, 0x80, 0xBF),
                0xED => (2, 0x0D, 0x80, 0x9F),
                0xF0 => (3, 0, 0x90, 0xBF),
                0xF1..=0xF3 => (3, b & 0x07, 0x80, 0xBF),
                0xF4 => (3, 0x04, 0x80, 0x8F),
                _ => return Err(BAD_UTF8),
            };
            *self = Utf8 {
                need,
                lo,
                hi,
                cp: u32::from(bits),
            };
            return Ok(());
        }
        if b < self.lo || b > self.hi {
            return Err(BAD_UTF8);
        }
        self.cp = (self.cp << 6) | u32::from(b & 0x3F);
        self.need -= 1;
        self.lo = 0x80;
        self.hi = 0xBF;
        if self.need == 0 && (self.cp == 0xFFFE || self.cp == 0xFFFF) {
            return Err(FORBIDDEN);
        }
        Ok(())
    }
}

/// Length of the leading run of printable ASCII other than `<` and bytes `stop` picks.
#[inline]
fn plain_run(bytes: &[u8], stop: impl Fn(u8) -> bool) -> usize {
    bytes
        .iter()
        .position(|&c| !(0x20..0x80).contains(&c) || c == b'<' || stop(c))
        .unwrap_or(bytes.len())
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Validates an XML declaration `<?xml ...?>`: version 1.x, encoding UTF-8 if given
/// (CORE-XML-07), standalone yes/no if given, in that order.
fn check_decl(decl: &[u8]) -> Result<(), XmlError> {
    const MALFORMED: XmlError = XmlError::NotWellFormed("malformed XML declaration");
    let body = decl
        .strip_prefix(XML_DECL_OPEN)
        .and_then(|d| d.strip_suffix(b"?>"))
        .ok_or(MALFORMED)?;
    let mut rest = body;
    let mut seen = 0;
    loop {
        let trimmed = rest.trim_ascii_start();
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return Err(MALFORMED);
        }
        let name_len = trimmed
            .iter()
            .take_while(|b| b.is_ascii_lowercase())
            .count();
        let (name, after) = trimmed.split_at(name_len);
        let after = after
            .trim_ascii_start()
            .strip_prefix(b"=")
            .ok_or(MALFORMED)?;
        let after = after.trim_ascii_start();
        let (&quote, after) = after.split_first().ok_or(MALFORMED)?;
        if quote != b'\'' && quote != b'"' {
            return Err(MALFORMED);
        }
        let value_len = after.iter().position(|&b| b == quote).ok_or(MALFORMED)?;
        let (value, after) = after.split_at(value_len);
        rest = after.get(1..).unwrap_or_default();
        seen = match (seen, name) {
            (0, b"version") => {
                let minor = value.strip_prefix(b"1.").ok_or(MALFORMED)?;
                if minor.is_empty() || !minor.iter().all(u8::is_ascii_digit) {
                    return Err(MALFORMED);
                }
                1
            }
            (1, b"encoding") => {
                if !value.eq_ignore_ascii_case(b"UTF-8") {
                    return Err(XmlError::UnsupportedEncoding);
                }
                2
            }
            (1 | 2, b"standalone") if value == b"yes" || value == b"no" => 3,
            _ => return Err(MALFORMED),
        };
    }
    if seen == 0 {
        return Err(MALFORMED);
    }
    Ok(())
}

/// Parses the stream's open tag into its header, namespace context and qualified name.
fn parse_header(tag: &str, limits: &Limits) -> Result<(StreamHeader, StreamNs, String), XmlError> {
    const MALFORMED: XmlError = XmlError::NotWellFormed("malformed stream header");
    let mut tokens = Tokenizer::from_fragment(tag, 0..tag.len());
    let (prefix, local, qname) = match tokens.next() {
        Some(Ok(Token::ElementStart {
            prefix,
            local,
            span,
        })) => (
            prefix.as_str(),
            local.as_str(),
            span.as_str().get(1..).unwrap_or_default(),
        ),
        _ => return Err(MALFORMED),
    };
    if prefix.is_empty() && memchr::memchr(b':', qname.as_bytes()).is_some() {
        return Err(MALFORMED);
    }
    // (prefix, local, qualified name, escaped value)
    let mut attrs: SmallVec<[(&str, &str, &str, &str); 8]> = SmallVec::new();
    let mut closed = false;
    for token in tokens {
        match token.map_err(|_| MALFORMED)? {
            Token::Attribute {
                prefix,
                local,
                value,
                span,
            } if !closed => {
                if attrs.len() >= limits.max_attrs {
                    return Err(XmlError::PolicyViolation("too many attributes"));
                }
                let q = tag.get(span.start()..local.end()).unwrap_or_default();
                if prefix.is_empty() && memchr::memchr(b':', q.as_bytes()).is_some() {
                    return Err(MALFORMED);
                }
                if attrs.iter().any(|a| a.2 == q) {
                    return Err(XmlError::NotWellFormed("duplicate attribute"));
                }
                check_refs(value.as_str())?;
                attrs.push((prefix.as_str(), local.as_str(), q, value.as_str()));
            }
            Token::ElementEnd {
                end: ElementEnd::Open | ElementEnd::Empty,
                ..
            } if !closed => closed = true,
            _ => return Err(MALFORMED),
        }
    }
    if !closed {
        return Err(MALFORMED);
    }

    let mut ns = StreamNs::default();
    let mut header = StreamHeader::default();
    for &(p, l, _, v) in &attrs {
        if p.is_empty() && l == "xmlns" {
            check_default_decl(v)?;
            ns.default = v.to_owned();
            header.default_ns = Some(v.to_owned());
        } else if p == "xmlns" {
            check_prefix_decl(l, v)?;
            if l != "xml" {
                ns.prefixes.push((l.to_owned(), v.to_owned()));
            }
        }
    }

    // CORE-STREAM-08/09
    let element_ns = match prefix {
        "" => ns.default.as_str(),
        "xml" | "xmlns" => return Err(XmlError::BadNamespacePrefix),
        p => ns.resolve(p).ok_or(XmlError::BadNamespacePrefix)?,
    };
    if element_ns != NS_STREAMS || local != "stream" {
        return Err(XmlError::InvalidNamespace);
    }
    header.prefix = (!prefix.is_empty()).then(|| prefix.to_owned());

    for &(p, l, q, v) in &attrs {
        if p == "xmlns" || (p.is_empty() && l == "xmlns") {
            continue;
        }
        let value = decode(v, Normalize::Attr)?.into_owned();
        match (p, l) {
            ("", "to") => header.to = Some(value),
            ("", "from") => header.from = Some(value),
            ("", "id") => header.id = Some(value),
            ("", "version") => header.version = Some(value),
            ("xml", "lang") => header.lang = Some(value),
            ("", _) | ("xml", _) => header.extra.push((q.to_owned(), value)),
            (p, _) => {
                if ns.resolve(p).is_none() {
                    return Err(XmlError::BadNamespacePrefix);
                }
                header.extra.push((q.to_owned(), value));
            }
        }
    }
    Ok((header, ns, qname.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with its bytes copied out, to compare runs over differently split input.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Open(StreamHeader),
        Element(String),
        Whitespace,
        Close,
    }

    /// Feeds `chunks` one after another like a socket loop, collecting frames until the input
    /// runs out or an error occurs. Adjacent whitespace frames are merged.
    fn run_with(limits: Limits, chunks: &[&[u8]]) -> (Vec<Owned>, Option<XmlError>) {
        let mut framer = Framer::new(limits);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match framer.next(&buf) {
                    Ok(Some((frame, used))) => {
                        let owned = match frame {
                            Frame::StreamOpen(h) => Owned::Open(h),
                            Frame::Element(raw) => {
                                Owned::Element(String::from_utf8(raw.to_vec()).expect("utf-8"))
                            }
                            Frame::Whitespace => Owned::Whitespace,
                            Frame::StreamClose => Owned::Close,
                        };
                        if !(owned == Owned::Whitespace && out.last() == Some(&Owned::Whitespace)) {
                            out.push(owned);
                        }
                        buf.drain(..used);
                    }
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn run(input: &[u8]) -> (Vec<Owned>, Option<XmlError>) {
        run_with(Limits::default(), &[input])
    }

    /// STYLE habit 4: whole, byte by byte and cut at every offset give the same result.
    fn run_all_splits(limits: Limits, input: &[u8]) -> (Vec<Owned>, Option<XmlError>) {
        let whole = run_with(limits, &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_with(limits, &bytes), whole, "byte by byte");
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(run_with(limits, &[a, b]), whole, "cut at {cut}");
        }
        whole
    }

    const HEADER: &str = "<stream:stream to='example.com' version='1.0' xmlns='jabber:client' \
                          xmlns:stream='http://etherx.jabber.org/streams'>";

    fn client_header() -> StreamHeader {
        StreamHeader {
            to: Some("example.com".into()),
            version: Some("1.0".into()),
            default_ns: Some("jabber:client".into()),
            prefix: Some("stream".into()),
            ..StreamHeader::default()
        }
    }

    fn err_of(input: &str) -> XmlError {
        let (_, err) = run_all_splits(Limits::default(), input.as_bytes());
        err.unwrap_or_else(|| panic!("no error for {input:?}"))
    }

    fn in_stream(body: &str) -> String {
        format!("{HEADER}{body}")
    }

    // CORE-STREAM-01, -18, -16, -23 and CORE-XML-12 on one realistic session.
    #[test]
    fn session_same_frames_at_every_split() {
        let stanzas = [
            "<message to='juliet@example.com/balcony' type='chat' xml:lang='en'>\
             <body>héllo ☃ 🎉 &amp; &lt;3 &#x1F389;</body>\
             <x xmlns='jabber:x:oob'><url>http://x/?a=1&amp;b=2</url></x></message>",
            "<iq type=\"get\" id=\"r1\"><query xmlns=\"jabber:iq:roster\"/></iq>",
            "<presence><status><![CDATA[<b>bold</b> ]] > ]]]]></status><priority>5</priority></presence>",
            "<iq type='set' id='p1'><p:pubsub xmlns:p='http://jabber.org/protocol/pubsub'>\
             <p:publish node='n'><p:item><e:entry xmlns:e='http://www.w3.org/2005/Atom'>t</e:entry>\
             </p:item></p:publish></p:pubsub></iq>",
            "<a></a>",
            "<b attr='x&gt;y' other=\"'\"/>",
            "<stream:features/>",
        ];
        let mut input = format!(" \n<?xml version='1.0' encoding='UTF-8'?>\n{HEADER}");
        let mut expected = vec![Owned::Open(client_header())];
        for s in stanzas {
            input.push_str("\n ");
            input.push_str(s);
            expected.push(Owned::Whitespace);
            expected.push(Owned::Element(s.to_owned()));
        }
        input.push_str(" \t</stream:stream>\n");
        expected.extend([Owned::Whitespace, Owned::Close, Owned::Whitespace]);
        assert_eq!(
            run_all_splits(Limits::default(), input.as_bytes()),
            (expected, None)
        );
    }

    #[test]
    fn core_stream_01_header_fields() {
        let input = "<stream:stream from='a.example' to=\"b.example\" id='i&amp;d' version='1.0' \
                     xml:lang='en' xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
                     xmlns:stream='http://etherx.jabber.org/streams' custom='x\ny'>";
        let (frames, err) = run_all_splits(Limits::default(), input.as_bytes());
        assert_eq!(err, None);
        let want = StreamHeader {
            to: Some("b.example".into()),
            from: Some("a.example".into()),
            id: Some("i&d".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
            default_ns: Some("jabber:server".into()),
            prefix: Some("stream".into()),
            extra: vec![("custom".into(), "x y".into())],
        };
        assert_eq!(frames, vec![Owned::Open(want)]);
        let mut framer = Framer::new(Limits::default());
        assert!(framer.next(input.as_bytes()).expect("ok").is_some());
        let ns = framer.stream_ns();
        assert_eq!(ns.default_ns(), "jabber:server");
        assert_eq!(ns.resolve("db"), Some("jabber:server:dialback"));
        assert_eq!(ns.resolve("stream"), Some(NS_STREAMS));
        assert_eq!(ns.resolve("xml"), Some(NS_XML));
        assert_eq!(ns.resolve(""), Some("jabber:server"));
        assert_eq!(ns.resolve("nope"), None);
        assert_eq!(ns.prefixes().count(), 2);
    }

    // CORE-XML-12: any prefix bound to the streams namespace, either quote style.
    #[test]
    fn core_xml_12_other_stream_prefix() {
        let input =
            "<s:stream xmlns:s=\"http://etherx.jabber.org/streams\" xmlns=\"jabber:client\">\
                     <message/></s:stream>";
        let (frames, err) = run_all_splits(Limits::default(), input.as_bytes());
        assert_eq!(err, None);
        assert!(matches!(&frames[0], Owned::Open(h) if h.prefix.as_deref() == Some("s")));
        assert_eq!(
            frames[1..],
            [Owned::Element("<message/>".into()), Owned::Close]
        );
        // The unprefixed form is accepted here; the stream layer judges the default namespace.
        let input = "<stream xmlns='http://etherx.jabber.org/streams'>";
        assert_eq!(run(input.as_bytes()).1, None);
    }

    // CORE-STREAM-23
    #[test]
    fn core_stream_23_xml_declaration() {
        for decl in [
            "<?xml version='1.0'?>",
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
            "\n  <?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n",
            "\u{FEFF}<?xml version='1.0'?>",
            "\u{FEFF}",
            "",
        ] {
            let input = format!("{decl}{HEADER}<iq/>");
            let (frames, err) = run_all_splits(Limits::default(), input.as_bytes());
            assert_eq!(err, None, "{decl:?}");
            let want = vec![Owned::Open(client_header()), Owned::Element("<iq/>".into())];
            assert_eq!(frames, want, "{decl:?}");
        }
    }

    // CORE-XML-07
    #[test]
    fn core_xml_07_unsupported_encoding() {
        let input = format!("<?xml version='1.0' encoding='ISO-8859-1'?>{HEADER}");
        assert_eq!(err_of(&input), XmlError::UnsupportedEncoding);
        let input = format!("<?xml version='1.0' encoding='UTF-16'?>{HEADER}");
        assert_eq!(err_of(&input), XmlError::UnsupportedEncoding);
    }

    #[test]
    fn malformed_declarations() {
        for decl in [
            "<?xml?>",
            "<?xml encoding='UTF-8'?>",
            "<?xml version='2.0'?>",
            "<?xml version='1.0'encoding='UTF-8'?>",
            "<?xml version='1.0' standalone='maybe'?>",
            "<?xml version='1.0' bogus='1'?>",
            "<?xml version=1.0?>",
        ] {
            let input = format!("{decl}{HEADER}");
            assert!(
                matches!(err_of(&input), XmlError::NotWellFormed(_)),
                "{decl}"
            );
        }
        assert!(matches!(
            err_of(&format!("x{HEADER}")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&format!(" \u{FEFF}{HEADER}")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of("</stream:stream>"),
            XmlError::NotWellFormed(_)
        ));
    }

    // CORE-XML-02: PIs other than the leading declaration.
    #[test]
    fn core_xml_02_processing_instructions() {
        for input in [
            format!("<?foo bar?>{HEADER}"),
            format!("<?xml-stylesheet href='a'?>{HEADER}"),
            format!("<?xml version='1.0'?><?xml version='1.0'?>{HEADER}"),
            format!("<?xml version='1.0'?><?foo?>{HEADER}"),
            in_stream("<?foo bar?>"),
            in_stream("<?xml version='1.0'?>"),
            in_stream("<message><?foo?></message>"),
        ] {
            assert!(
                matches!(err_of(&input), XmlError::RestrictedXml(_)),
                "{input}"
            );
        }
    }

    // CORE-XML-01
    #[test]
    fn core_xml_01_comments() {
        for input in [
            format!("<!-- hi -->{HEADER}"),
            format!("<?xml version='1.0'?><!-- hi -->{HEADER}"),
            in_stream("<!-- hi -->"),
            in_stream("<message><!-- hi --></message>"),
            in_stream("<message><body>a<!-- hi --></body></message>"),
        ] {
            assert!(
                matches!(err_of(&input), XmlError::RestrictedXml(_)),
                "{input}"
            );
        }
    }

    // CORE-XML-03: the DTD is refused before anything in it is read.
    #[test]
    fn core_xml_03_doctype() {
        for input in [
            format!("<!DOCTYPE stream [<!ENTITY a 'aaaa'>]>{HEADER}"),
            format!("<?xml version='1.0'?>\n<!DOCTYPE x SYSTEM 'http://evil/'>{HEADER}"),
            in_stream("<!DOCTYPE x>"),
            in_stream("<message><!ENTITY a 'b'></message>"),
        ] {
            assert!(
                matches!(err_of(&input), XmlError::RestrictedXml(_)),
                "{input}"
            );
        }
    }

    #[test]
    fn cdata_legal_inside_stanzas_only() {
        let body =
            "<message><body><![CDATA[</message> <!-- not a comment --> <?pi?> ]]></body></message>";
        let (frames, err) = run_all_splits(Limits::default(), in_stream(body).as_bytes());
        assert_eq!(err, None);
        assert_eq!(frames[1..], [Owned::Element(body.into())]);
        assert!(matches!(
            err_of(&in_stream("<![CDATA[x]]>")),
            XmlError::BadFormat(_)
        ));
        assert!(matches!(
            err_of(&format!("<![CDATA[x]]>{HEADER}")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&in_stream("<m><![CDAT[x]]></m>")),
            XmlError::NotWellFormed(_)
        ));
    }

    // CORE-STREAM-08
    #[test]
    fn core_stream_08_invalid_namespace() {
        for input in [
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streamz' xmlns='jabber:client'>",
            "<stream:stream xmlns:stream='jabber:client'>",
            "<stream xmlns='jabber:client'>",
            "<stream:streams xmlns:stream='http://etherx.jabber.org/streams'>",
            "<message xmlns='jabber:client'>",
        ] {
            assert_eq!(err_of(input), XmlError::InvalidNamespace, "{input}");
        }
    }

    // CORE-STREAM-09
    #[test]
    fn core_stream_09_bad_namespace_prefix() {
        for input in [
            "<stream:stream xmlns='jabber:client'>",
            "<foo:stream xmlns:stream='http://etherx.jabber.org/streams'>",
            "<xmlns:stream>",
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' db:x='1'>",
        ] {
            assert_eq!(err_of(input), XmlError::BadNamespacePrefix, "{input}");
        }
    }

    #[test]
    fn malformed_headers() {
        for input in [
            "<stream:stream to=example.com xmlns:stream='http://etherx.jabber.org/streams'>",
            "<stream:stream to='a' to='b' xmlns:stream='http://etherx.jabber.org/streams'>",
            "<stream:stream to='a&nbsp;' xmlns:stream='http://etherx.jabber.org/streams'>",
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:x=''>",
            "<:stream xmlns:stream='http://etherx.jabber.org/streams'>",
            "<stream:stream to='a'xmlns:stream='http://etherx.jabber.org/streams'>",
            "<stream:stream to='<' xmlns:stream='http://etherx.jabber.org/streams'>",
            "< stream:stream>",
        ] {
            let err = err_of(input);
            assert!(
                matches!(err, XmlError::NotWellFormed(_) | XmlError::RestrictedXml(_)),
                "{input}: {err:?}"
            );
        }
    }

    // CORE-STREAM-24
    #[test]
    fn core_stream_24_second_header() {
        let input = in_stream(&HEADER.replace("example.com", "other.example"));
        assert!(matches!(err_of(&input), XmlError::NotWellFormed(_)));
        let input = in_stream("<message/><stream:stream/>");
        let (frames, err) = run_all_splits(Limits::default(), input.as_bytes());
        assert_eq!(frames.len(), 2);
        assert!(matches!(err, Some(XmlError::NotWellFormed(_))));
        // Nested deeper it is just an element; the stanza scan judges it.
        let body = "<message><stream:stream/></message>";
        assert_eq!(run(in_stream(body).as_bytes()).1, None);
    }

    // CORE-STREAM-16
    #[test]
    fn core_stream_16_close() {
        let (frames, err) =
            run_all_splits(Limits::default(), in_stream("</stream:stream >").as_bytes());
        assert_eq!(
            (frames, err),
            (vec![Owned::Open(client_header()), Owned::Close], None)
        );
        assert!(matches!(
            err_of(&in_stream("</stream>")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&in_stream("</s:stream>")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&in_stream("</stream:stream><a/>")),
            XmlError::NotWellFormed(_)
        ));
        let (frames, err) = run(in_stream("</stream:stream> \n").as_bytes());
        assert_eq!(err, None);
        assert_eq!(frames.last(), Some(&Owned::Whitespace));
    }

    #[test]
    fn self_closing_header_opens_and_closes() {
        let input = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>";
        let (frames, err) = run_all_splits(Limits::default(), input.as_bytes());
        assert_eq!(err, None);
        assert!(matches!(frames.as_slice(), [Owned::Open(_), Owned::Close]));
    }

    // CORE-STREAM-18
    #[test]
    fn core_stream_18_whitespace_keepalive() {
        let mut framer = Framer::new(Limits::default());
        let mut buf = HEADER.as_bytes().to_vec();
        let (_, used) = framer.next(&buf).expect("ok").expect("header");
        buf.drain(..used);
        buf.extend_from_slice(b" ");
        assert_eq!(framer.next(&buf), Ok(Some((Frame::Whitespace, 1))));
        assert_eq!(framer.next(b"\r\n\t <"), Ok(Some((Frame::Whitespace, 4))));
        assert_eq!(framer.next(b""), Ok(None));
    }

    #[test]
    fn text_at_stream_level_is_bad_format() {
        for body in ["hello", " x", "<a/>x", "&amp;", "\u{e9}"] {
            assert!(
                matches!(err_of(&in_stream(body)), XmlError::BadFormat(_)),
                "{body}"
            );
        }
    }

    // CORE-XML-05, framer side: '<' in attribute values and tags.
    #[test]
    fn core_xml_05_lt_in_attribute() {
        assert!(matches!(
            err_of(&in_stream("<a b='<'/>")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&in_stream("<a b=\"x<y\"/>")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&in_stream("<a <b/>")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&in_stream("<a></a <b>")),
            XmlError::NotWellFormed(_)
        ));
        assert!(matches!(
            err_of(&in_stream("< a/>")),
            XmlError::NotWellFormed(_)
        ));
        // '>' is fine in attribute values and text.
        let body = "<a b='>' c=\"/>\">x > y</a>";
        assert_eq!(
            run_all_splits(Limits::default(), in_stream(body).as_bytes()).0[1..],
            [Owned::Element(body.into())]
        );
    }

    // CORE-XML-07: bad UTF-8 anywhere; a sequence split across reads is fine.
    #[test]
    fn core_xml_07_utf8() {
        let body = "<message><body>é☃🎉𝄞</body></message>";
        let input = in_stream(body);
        let (frames, err) = run_all_splits(Limits::default(), input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(frames[1..], [Owned::Element(body.into())]);
        let bad: [&[u8]; 9] = [
            b"\xFF",
            b"\xC3",
            b"\xC3(",
            b"\xE2\x98",
            b"\xC0\xAF",
            b"\xED\xA0\x80",
            b"\xF4\x90\x80\x80",
            b"\x80",
            b"\xF0\x9F\x8E<",
        ];
        for seq in bad {
            let mut input = in_stream("<message><body>").into_bytes();
            input.extend_from_slice(seq);
            input.extend_from_slice(b"</body></message>");
            let (_, err) = run_all_splits(Limits::default(), &input);
            assert!(matches!(err, Some(XmlError::NotWellFormed(_))), "{seq:?}");
            let mut input = seq.to_vec();
            input.extend_from_slice(HEADER.as_bytes());
            assert!(
                matches!(run(&input).1, Some(XmlError::NotWellFormed(_))),
                "{seq:?}"
            );
        }
    }

    // CORE-XML-08
    #[test]
    fn core_xml_08_forbidden_characters() {
        for c in ["\u{1}", "\u{0}", "\u{1F}", "\u{FFFE}", "\u{FFFF}", "\u{B}"] {
            let input = in_stream(&format!("<message><body>a{c}b</body></message>"));
            assert!(
                matches!(err_of(&input), XmlError::NotWellFormed(_)),
                "{c:?}"
            );
            let input = in_stream(&format!("<message to='a{c}'/>"));
            assert!(
                matches!(err_of(&input), XmlError::NotWellFormed(_)),
                "{c:?}"
            );
        }
        let ok = in_stream("<m>\t\r\n\u{7F}\u{FFFD}\u{10FFFF}</m>");
        assert_eq!(run(ok.as_bytes()).1, None);
    }

    // CORE-XML-09/11: refused as soon as max bytes are buffered without the stanza ending.
    #[test]
    fn core_xml_09_stanza_size_limit() {
        const MAX: usize = 200;
        let limits = Limits {
            max_stanza_bytes: MAX,
            ..Limits::default()
        };
        let exact = format!("<message><body>{}</body></message>", "x".repeat(MAX - 32));
        assert_eq!(exact.len(), MAX);
        let (frames, err) = run_all_splits(limits, in_stream(&exact).as_bytes());
        assert_eq!((frames.len(), err), (2, None));
        let over = format!("<message><body>{}</body></message>", "x".repeat(MAX - 31));
        let (_, err) = run_all_splits(limits, in_stream(&over).as_bytes());
        assert!(matches!(err, Some(XmlError::PolicyViolation(_))));
        // A stanza that never ends is refused once the limit is buffered, not later.
        let mut framer = Framer::new(limits);
        let (_, used) = framer.next(HEADER.as_bytes()).expect("ok").expect("open");
        assert_eq!(used, HEADER.len());
        let endless = format!("<message><body>{}", "x".repeat(MAX));
        let endless = endless.as_bytes();
        assert_eq!(framer.next(&endless[..MAX - 1]), Ok(None));
        assert!(matches!(
            framer.next(&endless[..MAX]),
            Err(XmlError::PolicyViolation(_))
        ));
    }

    #[test]
    fn stream_header_size_limit() {
        let limits = Limits {
            max_stanza_bytes: 64,
            ..Limits::default()
        };
        let input = format!("<stream:stream to='{}'", "x".repeat(100));
        let (_, err) = run_all_splits(limits, input.as_bytes());
        assert!(matches!(err, Some(XmlError::PolicyViolation(_))));
        let input = " ".repeat(70);
        assert!(matches!(
            run_with(limits, &[input.as_bytes()]).1,
            Some(XmlError::PolicyViolation(_))
        ));
    }

    // CORE-XML-11: nesting depth; the stream is depth 0, stanzas depth 1.
    #[test]
    fn core_xml_11_depth_limit() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let ok = in_stream("<a><b><c/></b></a><a><b><c></c></b></a>");
        assert_eq!(run_all_splits(limits, ok.as_bytes()).1, None);
        let deep = in_stream("<a><b><c><d/></c></b></a>");
        let (_, err) = run_all_splits(limits, deep.as_bytes());
        assert!(matches!(err, Some(XmlError::PolicyViolation(_))));
    }

    /// CORE-XML-05: a mismatched end tag is refused when it arrives, not when (if ever) the
    /// stanza completes.
    #[test]
    fn core_xml_05_mismatched_end_tag_detected_early() {
        let input = in_stream("<message><body>oops</message>");
        let (frames, err) = run_all_splits(Limits::default(), input.as_bytes());
        assert_eq!(err, Some(XmlError::NotWellFormed("end tag does not match")));
        assert_eq!(frames.len(), 1, "only the stream header: {frames:?}");
        let ok = in_stream("<a:x xmlns:a='u'><b >t</b ><a:y/></a:x >");
        let (frames, err) = run_all_splits(Limits::default(), ok.as_bytes());
        assert_eq!(err, None);
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn resumption_does_not_rescan() {
        let body = format!("<message><body>{}</body></message>", "é".repeat(50_000));
        let input = in_stream(&body);
        let mut framer = Framer::new(Limits::default());
        let mut buf = Vec::new();
        let mut frames = 0;
        for chunk in input.as_bytes().chunks(7) {
            buf.extend_from_slice(chunk);
            while let Some((_, used)) = framer.next(&buf).expect("ok") {
                buf.drain(..used);
                frames += 1;
            }
        }
        assert_eq!(frames, 2);
        assert!(
            framer.lexed <= input.len(),
            "{} > {}",
            framer.lexed,
            input.len()
        );
    }

    #[test]
    fn reset_expects_new_header() {
        let mut framer = Framer::new(Limits::default());
        let input = in_stream("<auth/>");
        let (_, used) = framer.next(input.as_bytes()).expect("ok").expect("open");
        let rest = &input.as_bytes()[used..];
        assert_eq!(framer.next(rest), Ok(Some((Frame::Element(b"<auth/>"), 7))));
        framer.reset();
        assert_eq!(framer.stream_ns(), &StreamNs::default());
        let (frame, _) = framer.next(HEADER.as_bytes()).expect("ok").expect("open");
        assert_eq!(frame, Frame::StreamOpen(client_header()));
        assert_eq!(framer.stream_ns().default_ns(), "jabber:client");
    }

    #[test]
    fn errors_are_final() {
        let mut framer = Framer::new(Limits::default());
        let input = in_stream("<!-- x --><message/>");
        let (_, used) = framer.next(input.as_bytes()).expect("ok").expect("open");
        let rest = &input.as_bytes()[used..];
        let err = framer.next(rest);
        assert!(matches!(err, Err(XmlError::RestrictedXml(_))));
        assert_eq!(framer.next(b"<message/>"), err.map(|_| None));
        framer.reset();
        assert!(framer.next(HEADER.as_bytes()).expect("ok").is_some());
    }

    #[test]
    fn shrinking_buffer_does_not_panic() {
        let mut framer = Framer::new(Limits::default());
        assert_eq!(framer.next(&HEADER.as_bytes()[..20]), Ok(None));
        assert_eq!(framer.next(&HEADER.as_bytes()[..5]), Ok(None));
        let (frame, _) = framer.next(HEADER.as_bytes()).expect("ok").expect("open");
        assert_eq!(frame, Frame::StreamOpen(client_header()));
    }

    #[test]
    fn stream_ns_builder() {
        let ns = StreamNs::new("jabber:server").with_prefix("db", "jabber:server:dialback");
        assert_eq!(ns.default_ns(), "jabber:server");
        assert_eq!(ns.resolve("db"), Some("jabber:server:dialback"));
        assert_eq!(StreamNs::default().resolve(""), None);
    }
}
