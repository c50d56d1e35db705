//! Validation of one stanza without building a tree, and forwarding it with rewritten attributes.
//!
//! [`walk`] is the single validator behind both [`scan_stanza`] and
//! [`parse_element`](super::parse_element): well-formedness, restricted XML, references,
//! namespaces and limits. What each caller keeps is decided by its [`Sink`].
//!
//! Besides [`Limits`], the walk bounds what namespaces may cost (issue 8): at most
//! [`MAX_PREFIXES_IN_SCOPE`] prefix bindings in scope, so resolving a prefix reads a bounded
//! list; namespace names compared by address, not content, when checking for duplicate
//! attributes; and the tree [`parse_element`](super::parse_element) would build charged against
//! [`TREE_BYTES_PER_STANZA_BYTE`] × `max_stanza_bytes`, so a namespace declared once cannot be
//! copied into thousands of elements. Each is enforced here, for both callers, so that scan and
//! parse keep accepting and refusing the same stanzas.

use std::borrow::Cow;
use std::ops::Range;

use smallvec::SmallVec;
use xmlparser::{ElementEnd, StrSpan, Token, Tokenizer};

use super::escape::{check_refs, decode, escape_attr, Normalize};
use super::{
    check_default_decl, check_prefix_decl, classify_parse_error, Limits, Node, StreamNs, XmlError,
    NS_STREAMS, NS_XML,
};

/// Most namespace prefix bindings a stanza may have in scope at once: its declarations on the
/// open elements (shadowed ones included) plus the stream header's prefixes it has used there.
/// Every prefixed name is resolved by reading this list, so the bound caps the cost of a name
/// (it was `max_depth` × `max_attrs`, about 4000, before issue 8). XMPP stanzas use a handful.
/// One more is [`XmlError::PolicyViolation`]`("too many namespace prefixes in scope")`.
///
/// No bound on the total number of declarations in a stanza is needed: each one costs a check
/// of its own bytes, a push and a pop, and a search for an equal name among the at most
/// `MAX_PREFIXES_IN_SCOPE` bindings in scope and the stream header's (reading at most its own
/// length from each), so their cost is linear in the stanza's size.
pub(crate) const MAX_PREFIXES_IN_SCOPE: usize = 32;

/// The tree [`parse_element`](super::parse_element) builds from one stanza may own at most
/// this many times [`Limits::max_stanza_bytes`] (8 MiB by default). Each element is charged
/// its [`Node`] plus its name, namespace and attributes (a `(String, String)` each, key and
/// raw value bytes), each text or CDATA section a `Node` plus its raw bytes; capacity slack is
/// not counted. One byte more is [`XmlError::PolicyViolation`]`("element tree too large")`.
///
/// What this stops is a namespace declared once and copied into every element and attribute
/// key below it (a 256 KiB stanza could allocate 4 GiB). Legitimate stanzas stay far below:
/// a roster push charges about 6 bytes per byte of XML, a message body about 1, and even a
/// stanza of nothing but tiny elements about 27.
pub(crate) const TREE_BYTES_PER_STANZA_BYTE: usize = 32;

/// What the tree is charged per element (its place in the parent's children) or text node.
const NODE_BYTES: usize = std::mem::size_of::<Node>();
/// What the tree is charged per attribute, besides its bytes.
const ATTR_BYTES: usize = std::mem::size_of::<(String, String)>();

/// What routing needs from one stanza or nonza, borrowed from its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaHead<'a> {
    /// The whole element, validated UTF-8.
    pub raw: &'a str,
    /// Local name of the top element.
    pub name: &'a str,
    /// Resolved namespace of the top element.
    pub ns: &'a str,
    /// Attributes of the top element except namespace declarations, in document order.
    pub attrs: SmallVec<[RawAttr<'a>; 8]>,
    /// Byte offset in `raw` just after the element name, where new attributes go.
    pub name_end: usize,
    /// (namespace, local name) of the first child element.
    pub first_child: Option<(&'a str, &'a str)>,
    /// Number of direct child elements.
    pub child_elements: u32,
    /// False if any element or attribute relied on a prefix declared on the stream header
    /// (other than `xml`): its raw bytes would then mean something else on another stream.
    pub self_contained: bool,
}

/// One attribute as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAttr<'a> {
    /// Qualified name as written.
    pub name: &'a str,
    /// Value, still escaped.
    pub value: &'a str,
    /// The whole `name='value'` in `raw`.
    pub span: Range<usize>,
}

impl StanzaHead<'_> {
    /// The unescaped value of the attribute with this qualified name.
    pub fn attr(&self, name: &str) -> Option<Cow<'_, str>> {
        let a = self.attrs.iter().find(|a| a.name == name)?;
        // Validated by the scan, so decoding cannot fail.
        Some(decode(a.value, Normalize::Attr).unwrap_or(Cow::Borrowed(a.value)))
    }
}

/// Validates one complete stanza or nonza without building a tree and returns what routing
/// needs. `ns` is the stream's namespace context ([`Framer::stream_ns`](super::Framer::stream_ns)).
/// Does not allocate unless the stanza has more than 8 prefix bindings in scope at once
/// (see [`MAX_PREFIXES_IN_SCOPE`]), more than 8 attributes on one element, or elements nested
/// more than 16 deep.
///
/// `ns` shares the stanza's lifetime because a name resolved through a prefix declared on the
/// stream header (e.g. `db:` on s2s) borrows its namespace from there.
pub fn scan_stanza<'a>(
    raw: &'a [u8],
    ns: &'a StreamNs,
    limits: &Limits,
) -> Result<StanzaHead<'a>, XmlError> {
    let mut sink = HeadSink {
        head: StanzaHead {
            raw: "",
            name: "",
            ns: "",
            attrs: SmallVec::new(),
            name_end: 0,
            first_child: None,
            child_elements: 0,
            self_contained: true,
        },
    };
    let walked = walk(raw, ns, limits, &mut sink)?;
    sink.head.raw = walked.text;
    sink.head.self_contained = walked.self_contained;
    Ok(sink.head)
}

/// Writes `head.raw` to `out` with the listed attributes set: an existing attribute of that
/// qualified name is replaced in place, a new one is inserted after the element name; all other
/// bytes are copied unchanged. If a name is listed twice, the last value wins.
pub fn write_with_attrs(head: &StanzaHead<'_>, set: &[(&str, &str)], out: &mut Vec<u8>) {
    let raw = head.raw.as_bytes();
    out.reserve(
        raw.len()
            + set
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>(),
    );
    let name_end = head.name_end.min(raw.len());
    out.extend_from_slice(raw.get(..name_end).unwrap_or_default());
    for (i, (name, value)) in set.iter().enumerate() {
        let later = set.iter().skip(i + 1).any(|(n, _)| n == name);
        if later || head.attrs.iter().any(|a| a.name == *name) {
            continue;
        }
        out.push(b' ');
        write_attr(name, value, out);
    }
    let mut cursor = name_end;
    for a in &head.attrs {
        if let Some((name, value)) = set.iter().rev().find(|(n, _)| *n == a.name) {
            out.extend_from_slice(raw.get(cursor..a.span.start).unwrap_or_default());
            write_attr(name, value, out);
            cursor = a.span.end;
        }
    }
    out.extend_from_slice(raw.get(cursor..).unwrap_or_default());
}

/// Writes `name='value'`, the value escaped for an attribute.
pub fn write_attr(name: &str, value: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape_attr(value, out);
    out.push(b'\'');
}

struct HeadSink<'a> {
    head: StanzaHead<'a>,
}

impl<'a> Sink<'a> for HeadSink<'a> {
    fn start(&mut self, el: &Start<'a, '_>) -> Result<(), XmlError> {
        match el.depth {
            1 => {
                self.head.name = el.local;
                self.head.ns = el.ns;
                self.head.name_end = el.name_end;
                self.head.attrs = el
                    .attrs
                    .iter()
                    .filter(|a| !a.is_decl)
                    .map(|a| RawAttr {
                        name: a.qname,
                        value: a.value,
                        span: a.span.clone(),
                    })
                    .collect();
            }
            2 => {
                self.head.child_elements = self.head.child_elements.saturating_add(1);
                self.head.first_child.get_or_insert((el.ns, el.local));
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, _text: &'a str, _cdata: bool) -> Result<(), XmlError> {
        Ok(())
    }

    fn end(&mut self) {}
}

/// One attribute of the start tag being walked.
#[derive(Clone, Debug)]
pub(crate) struct Attr<'a> {
    pub qname: &'a str,
    pub prefix: &'a str,
    pub local: &'a str,
    /// Namespace of a prefixed attribute; unprefixed attributes are in no namespace.
    pub ns: Option<&'a str>,
    /// Value, still escaped (references already validated).
    pub value: &'a str,
    /// The whole `name='value'`.
    pub span: Range<usize>,
    /// A namespace declaration (`xmlns` or `xmlns:p`).
    pub is_decl: bool,
}

/// A validated start tag, handed to the sink.
pub(crate) struct Start<'a, 'b> {
    /// 1 for the stanza element.
    pub depth: usize,
    pub local: &'a str,
    pub ns: &'a str,
    /// Offset just after the element name.
    pub name_end: usize,
    pub attrs: &'b [Attr<'a>],
}

/// Receives the validated structure of a stanza, in document order.
pub(crate) trait Sink<'a> {
    fn start(&mut self, el: &Start<'a, '_>) -> Result<(), XmlError>;
    /// Character data (references validated but not decoded) or a CDATA section's content.
    fn text(&mut self, text: &'a str, cdata: bool) -> Result<(), XmlError>;
    fn end(&mut self);
}

/// The outcome of a successful walk.
pub(crate) struct Walked<'a> {
    pub text: &'a str,
    pub self_contained: bool,
}

/// Validates `raw` as exactly one element in the context of `sns`, feeding `sink`.
pub(crate) fn walk<'a, S: Sink<'a>>(
    raw: &'a [u8],
    sns: &'a StreamNs,
    limits: &Limits,
    sink: &mut S,
) -> Result<Walked<'a>, XmlError> {
    if raw.len() > limits.max_stanza_bytes {
        return Err(XmlError::PolicyViolation("stanza too large"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
    let mut w = Walker {
        text,
        limits,
        scope: Scope {
            text,
            sns,
            bindings: SmallVec::new(),
            self_contained: true,
            compare_left: text.len(),
        },
        open: SmallVec::new(),
        attrs: SmallVec::new(),
        pending: None,
        done: false,
        tree_left: limits
            .max_stanza_bytes
            .saturating_mul(TREE_BYTES_PER_STANZA_BYTE),
    };
    let mut last_end = 0;
    for token in Tokenizer::from_fragment(text, 0..text.len()) {
        let token = token.map_err(|_| classify_parse_error(text, last_end))?;
        last_end = w.token(token, sink)?;
    }
    if !w.done {
        return Err(XmlError::NotWellFormed("incomplete element"));
    }
    Ok(Walked {
        text,
        self_contained: w.scope.self_contained,
    })
}

/// An open element.
struct Open<'a> {
    qname: &'a str,
    /// Default namespace in scope inside it.
    default_ns: &'a str,
    /// Length of `Scope::bindings` before its declarations.
    bindings_len: usize,
}

/// A start tag whose attributes are still being read.
struct Pending<'a> {
    prefix: &'a str,
    local: &'a str,
    qname: &'a str,
    name_end: usize,
}

struct Walker<'a, 'l> {
    text: &'a str,
    limits: &'l Limits,
    scope: Scope<'a>,
    open: SmallVec<[Open<'a>; 16]>,
    attrs: SmallVec<[Attr<'a>; 8]>,
    pending: Option<Pending<'a>>,
    /// The stanza element has been closed.
    done: bool,
    /// Bytes the tree may still be charged (see [`TREE_BYTES_PER_STANZA_BYTE`]).
    tree_left: usize,
}

/// The prefix bindings in scope, and what resolving through them found out.
///
/// Namespace names are kept canonical: a declared name equal to one already in scope, or to
/// one the stream header binds, is stored as that earlier slice. So two names of which one is
/// a slice of the stanza are equal exactly when they are the same slice, and comparing them
/// costs nothing however long they are; only two names both from the stream header need their
/// bytes compared (see [`Scope::same_ns`]).
struct Scope<'a> {
    /// The stanza.
    text: &'a str,
    sns: &'a StreamNs,
    /// (prefix, namespace) in scope, innermost last; at most [`MAX_PREFIXES_IN_SCOPE`].
    bindings: SmallVec<[(&'a str, &'a str); 8]>,
    /// No name was resolved through the stream header's prefixes.
    self_contained: bool,
    /// Bytes of stream-header namespace names the stanza may still make us compare.
    compare_left: usize,
}

impl<'a> Scope<'a> {
    fn push(&mut self, prefix: &'a str, uri: &'a str) -> Result<(), XmlError> {
        if self.bindings.len() >= MAX_PREFIXES_IN_SCOPE {
            return Err(XmlError::PolicyViolation(
                "too many namespace prefixes in scope",
            ));
        }
        self.bindings.push((prefix, uri));
        Ok(())
    }

    /// Binds `prefix` (already checked with `check_prefix_decl`) until `truncate`.
    fn declare(&mut self, prefix: &'a str, uri: &'a str) -> Result<(), XmlError> {
        // Reads at most `uri.len()` bytes per candidate: linear in the declaration's size.
        let sns = self.sns;
        let canonical = self
            .bindings
            .iter()
            .map(|&(_, u)| u)
            .chain(sns.prefixes().map(|(_, u)| u))
            .find(|u| *u == uri)
            .unwrap_or(uri);
        self.push(prefix, canonical)
    }

    fn truncate(&mut self, len: usize) {
        self.bindings.truncate(len);
    }

    /// Resolves a non-empty prefix: innermost declaration in the stanza, then the stream header
    /// (which makes the stanza not self-contained, and stays in scope like a declaration so that
    /// it counts toward [`MAX_PREFIXES_IN_SCOPE`]). Undeclared is not well-formed
    /// (CORE-XML-06).
    fn resolve(&mut self, prefix: &'a str) -> Result<&'a str, XmlError> {
        match prefix {
            "xml" => return Ok(NS_XML),
            "xmlns" => return Err(XmlError::NotWellFormed("the xmlns prefix on an element")),
            _ => {}
        }
        if let Some(&(_, uri)) = self.bindings.iter().rev().find(|(p, _)| *p == prefix) {
            return Ok(uri);
        }
        let sns = self.sns;
        let uri = sns
            .resolve(prefix)
            .ok_or(XmlError::NotWellFormed("undeclared namespace prefix"))?;
        self.self_contained = false;
        self.push(prefix, uri)?;
        Ok(uri)
    }

    /// Whether two resolved namespace names are equal. Canonical names (see [`Scope`]) are
    /// compared by address; two from the stream header by content, at most as many bytes in
    /// all as the stanza has (legitimate stanzas never need it), else policy-violation.
    fn same_ns(&mut self, a: &str, b: &str) -> Result<bool, XmlError> {
        if a.len() != b.len() {
            return Ok(false);
        }
        if a.as_ptr() == b.as_ptr() {
            return Ok(true);
        }
        let stanza = self.text.as_bytes().as_ptr_range();
        if stanza.contains(&a.as_ptr()) || stanza.contains(&b.as_ptr()) {
            return Ok(false);
        }
        self.compare_left =
            self.compare_left
                .checked_sub(a.len())
                .ok_or(XmlError::PolicyViolation(
                    "namespace names too costly to compare",
                ))?;
        Ok(a == b)
    }
}

impl<'a> Walker<'a, '_> {
    /// Handles one token; returns the offset where it ended.
    fn token<S: Sink<'a>>(&mut self, token: Token<'a>, sink: &mut S) -> Result<usize, XmlError> {
        if self.done {
            return Err(XmlError::NotWellFormed("content after the stanza element"));
        }
        match token {
            Token::ElementStart {
                prefix,
                local,
                span,
            } => {
                if self.open.len() + 1 > self.limits.max_depth {
                    return Err(XmlError::PolicyViolation("elements nested too deep"));
                }
                let qname = span.as_str().get(1..).unwrap_or_default();
                check_qname(prefix, qname)?;
                self.pending = Some(Pending {
                    prefix: prefix.as_str(),
                    local: local.as_str(),
                    qname,
                    name_end: span.end(),
                });
                self.attrs.clear();
                Ok(span.end())
            }
            Token::Attribute {
                prefix,
                local,
                value,
                span,
            } => {
                if self.attrs.len() >= self.limits.max_attrs {
                    return Err(XmlError::PolicyViolation("too many attributes"));
                }
                let qname = self.text.get(span.start()..local.end()).unwrap_or_default();
                check_qname(prefix, qname)?;
                if self.attrs.iter().any(|a| a.qname == qname) {
                    return Err(XmlError::NotWellFormed("duplicate attribute"));
                }
                check_refs(value.as_str())?;
                let is_decl = prefix.as_str() == "xmlns" || qname == "xmlns";
                self.attrs.push(Attr {
                    qname,
                    prefix: prefix.as_str(),
                    local: local.as_str(),
                    ns: None,
                    value: value.as_str(),
                    span: span.range(),
                    is_decl,
                });
                Ok(span.end())
            }
            Token::ElementEnd {
                end: ElementEnd::Open,
                span,
            } => {
                self.start(false, sink)?;
                Ok(span.end())
            }
            Token::ElementEnd {
                end: ElementEnd::Empty,
                span,
            } => {
                self.start(true, sink)?;
                Ok(span.end())
            }
            Token::ElementEnd {
                end: ElementEnd::Close(_, local),
                span,
            } => {
                let qname = self
                    .text
                    .get(span.start() + 2..local.end())
                    .unwrap_or_default();
                let open = self
                    .open
                    .pop()
                    .ok_or(XmlError::NotWellFormed("close tag without an open element"))?;
                if open.qname != qname {
                    return Err(XmlError::NotWellFormed("mismatched close tag"));
                }
                self.scope.truncate(open.bindings_len);
                sink.end();
                self.done = self.open.is_empty();
                Ok(span.end())
            }
            Token::Text { text } => {
                self.check_inside()?;
                check_refs(text.as_str())?;
                self.charge(NODE_BYTES.saturating_add(text.len()))?;
                sink.text(text.as_str(), false)?;
                Ok(text.end())
            }
            Token::Cdata { text, span } => {
                self.check_inside()?;
                self.charge(NODE_BYTES.saturating_add(text.len()))?;
                sink.text(text.as_str(), true)?;
                Ok(span.end())
            }
            Token::Comment { .. } => Err(XmlError::RestrictedXml("comment")),
            Token::ProcessingInstruction { .. } | Token::Declaration { .. } => {
                Err(XmlError::RestrictedXml("processing instruction"))
            }
            Token::DtdStart { .. }
            | Token::EmptyDtd { .. }
            | Token::EntityDeclaration { .. }
            | Token::DtdEnd { .. } => Err(XmlError::RestrictedXml("document type declaration")),
        }
    }

    /// Charges the tree `bytes` (see [`TREE_BYTES_PER_STANZA_BYTE`]).
    fn charge(&mut self, bytes: usize) -> Result<(), XmlError> {
        self.tree_left = self
            .tree_left
            .checked_sub(bytes)
            .ok_or(XmlError::PolicyViolation("element tree too large"))?;
        Ok(())
    }

    fn check_inside(&self) -> Result<(), XmlError> {
        if self.open.is_empty() {
            return Err(XmlError::NotWellFormed("text outside the stanza element"));
        }
        Ok(())
    }

    /// Completes the pending start tag: namespace declarations, resolution, duplicate check.
    fn start<S: Sink<'a>>(&mut self, empty: bool, sink: &mut S) -> Result<(), XmlError> {
        let p = self
            .pending
            .take()
            .ok_or(XmlError::NotWellFormed("malformed tag"))?;
        let bindings_len = self.scope.bindings.len();
        let mut default_ns = self
            .open
            .last()
            .map_or(self.scope.sns.default_ns(), |o| o.default_ns);
        for a in self.attrs.iter().filter(|a| a.is_decl) {
            if a.prefix.is_empty() {
                check_default_decl(a.value)?;
                default_ns = a.value;
            } else {
                check_prefix_decl(a.local, a.value)?;
                self.scope.declare(a.local, a.value)?;
            }
        }
        let ns = match p.prefix {
            "" => default_ns,
            // Legal in theory, never used, and no default declaration could reproduce it.
            "xml" => return Err(XmlError::NotWellFormed("the xml prefix on an element")),
            prefix => self.scope.resolve(prefix)?,
        };
        for a in self
            .attrs
            .iter_mut()
            .filter(|a| !a.is_decl && !a.prefix.is_empty())
        {
            a.ns = Some(self.scope.resolve(a.prefix)?);
        }
        // Local names first: cheap, and namespace names are only compared (by address, see
        // `Scope`) for attributes that share one.
        for (i, a) in self.attrs.iter().enumerate() {
            let Some(a_ns) = a.ns else { continue };
            for b in self.attrs.iter().take(i) {
                let Some(b_ns) = b.ns else { continue };
                if b.local == a.local && self.scope.same_ns(a_ns, b_ns)? {
                    return Err(XmlError::NotWellFormed("duplicate attribute"));
                }
            }
        }
        let mut tree = NODE_BYTES
            .saturating_add(p.local.len())
            .saturating_add(ns.len());
        for a in self.attrs.iter().filter(|a| !a.is_decl) {
            // The key is `local`, `xml:local` or `{ns}local`; the value at most its raw bytes.
            let key = a.ns.map_or(0, |uri| uri.len().saturating_add(2));
            tree = tree
                .saturating_add(ATTR_BYTES)
                .saturating_add(key)
                .saturating_add(a.local.len())
                .saturating_add(a.value.len());
        }
        self.charge(tree)?;
        let depth = self.open.len() + 1;
        if depth == 1 && ns == NS_STREAMS && p.local == "stream" {
            // CORE-STREAM-24, however the stream prefix is spelled.
            return Err(XmlError::NotWellFormed(
                "stream header inside an open stream",
            ));
        }
        sink.start(&Start {
            depth,
            local: p.local,
            ns,
            name_end: p.name_end,
            attrs: &self.attrs,
        })?;
        if empty {
            self.scope.truncate(bindings_len);
            sink.end();
            self.done = self.open.is_empty();
        } else {
            self.open.push(Open {
                qname: p.qname,
                default_ns,
                bindings_len,
            });
        }
        Ok(())
    }
}

/// Refuses `:local` and other names with an empty prefix but a colon.
fn check_qname(prefix: StrSpan<'_>, qname: &str) -> Result<(), XmlError> {
    if prefix.is_empty() && memchr::memchr(b':', qname.as_bytes()).is_some() {
        return Err(XmlError::NotWellFormed("malformed qualified name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> StreamNs {
        StreamNs::new("jabber:client").with_prefix("stream", NS_STREAMS)
    }

    fn server() -> StreamNs {
        StreamNs::new("jabber:server")
            .with_prefix("stream", NS_STREAMS)
            .with_prefix("db", "jabber:server:dialback")
    }

    fn scan_err(s: &str) -> XmlError {
        let ns = client();
        let err = scan_stanza(s.as_bytes(), &ns, &Limits::default()).err();
        err.unwrap_or_else(|| panic!("accepted {s:?}"))
    }

    #[test]
    fn head_of_a_message() {
        let raw = "<message from='a@b/c' to=\"d@e\" type='chat' xml:lang='en' \
                   xmlns:x='urn:x' x:y='1' id='m&amp;1'>\
                   <body>héllo ☃ 🎉</body><x:thing/><active xmlns='http://jabber.org/protocol/chatstates'/>\
                   </message>";
        let ns = client();
        let head = scan_stanza(raw.as_bytes(), &ns, &Limits::default()).expect("valid");
        assert_eq!(head.raw, raw);
        assert_eq!((head.name, head.ns), ("message", "jabber:client"));
        assert_eq!(head.name_end, "<message".len());
        let names: Vec<_> = head.attrs.iter().map(|a| a.name).collect();
        assert_eq!(names, ["from", "to", "type", "xml:lang", "x:y", "id"]);
        let to = &head.attrs[1];
        assert_eq!((to.value, &raw[to.span.clone()]), ("d@e", "to=\"d@e\""));
        assert_eq!(head.attr("id").as_deref(), Some("m&1"));
        assert_eq!(head.attr("xml:lang").as_deref(), Some("en"));
        assert_eq!(head.attr("nope"), None);
        assert_eq!(head.first_child, Some(("jabber:client", "body")));
        assert_eq!(head.child_elements, 3);
        assert!(head.self_contained);
    }

    #[test]
    fn empty_stanza_and_nonza() {
        let ns = client();
        let head = scan_stanza(b"<presence/>", &ns, &Limits::default()).expect("valid");
        assert_eq!(
            (head.name, head.ns, head.name_end),
            ("presence", "jabber:client", 9)
        );
        assert_eq!((head.first_child, head.child_elements), (None, 0));
        let raw = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>";
        let head = scan_stanza(raw, &ns, &Limits::default()).expect("valid");
        assert_eq!(head.ns, "urn:ietf:params:xml:ns:xmpp-tls");
        assert_eq!(
            head.first_child,
            Some(("urn:ietf:params:xml:ns:xmpp-tls", "required"))
        );
        assert!(head.attrs.is_empty());
    }

    #[test]
    fn stream_prefixes_make_stanzas_not_self_contained() {
        let ns = server();
        let l = Limits::default();
        let raw = b"<db:result from='a' to='b'>key</db:result>";
        let head = scan_stanza(raw, &ns, &l).expect("valid");
        assert_eq!((head.name, head.ns), ("result", "jabber:server:dialback"));
        assert!(!head.self_contained);
        let head = scan_stanza(b"<stream:features/>", &ns, &l).expect("valid");
        assert_eq!((head.name, head.ns), ("features", NS_STREAMS));
        assert!(!head.self_contained);
        let head = scan_stanza(b"<message><db:x/></message>", &ns, &l).expect("valid");
        assert!(!head.self_contained);
        let head = scan_stanza(
            b"<message><x db:a='1' xmlns:db='urn:x'/></message>",
            &ns,
            &l,
        )
        .expect("valid");
        assert!(head.self_contained);
        let head = scan_stanza(
            b"<message xml:lang='en'><x xml:lang='fr'/></message>",
            &ns,
            &l,
        )
        .expect("valid");
        assert!(head.self_contained);
    }

    // CORE-XML-06
    #[test]
    fn core_xml_06_undeclared_prefix() {
        for s in [
            "<message><foo:bar/></message>",
            "<message><x foo:a='1'/></message>",
            "<foo:message/>",
            "<message><x xmlns:foo='urn:foo'/><foo:y/></message>",
            "<message><db:result/></message>",
            "<xmlns:a/>",
            "<xml:a/>",
        ] {
            assert!(matches!(scan_err(s), XmlError::NotWellFormed(_)), "{s}");
        }
    }

    // CORE-XML-05
    #[test]
    fn core_xml_05_not_well_formed() {
        for s in [
            "<message><body></message></body>",
            "<message></presence>",
            "<message a='1' a='2'/>",
            "<message xmlns:p='urn:x' xmlns:q='urn:x' p:a='1' q:a='2'/>",
            "<message a=1/>",
            "<message a/>",
            "<message a='x<y'/>",
            "<message a='1'b='2'/>",
            "<message>",
            "<message/><message/>",
            "<message/> ",
            " <message/>",
            "text",
            "",
            "<message><body>a]]>b</body></message>",
            "<message>&amp</message>",
            "<message>& </message>",
            "<message a='&#0;'/>",
            "<message>&#xFFFE;</message>",
            "<:message/>",
            "<message :a='1'/>",
            "<message xmlns:a=''/>",
            "<message xmlns:xml='urn:x'/>",
            "<1message/>",
            "<message></message >x",
        ] {
            assert!(matches!(scan_err(s), XmlError::NotWellFormed(_)), "{s}");
        }
        assert!(matches!(
            scan_err("<message xmlns='a&amp;b'/>"),
            XmlError::BadFormat(_)
        ));
        let bad_utf8 = b"<message><body>\xC3(</body></message>";
        let ns = client();
        assert!(matches!(
            scan_stanza(bad_utf8, &ns, &Limits::default()),
            Err(XmlError::NotWellFormed(_))
        ));
    }

    // CORE-XML-01..04
    #[test]
    fn core_xml_01_to_04_restricted() {
        for s in [
            "<message><!-- x --></message>",
            "<message><!-- x -- y --></message>",
            "<message><?pi x?></message>",
            "<message><?xml version='1.0'?></message>",
            "<message><!DOCTYPE x></message>",
            "<message><body>&nbsp;</body></message>",
            "<message to='&custom;'/>",
        ] {
            assert!(matches!(scan_err(s), XmlError::RestrictedXml(_)), "{s}");
        }
    }

    // CORE-XML-08
    #[test]
    fn core_xml_08_forbidden_chars() {
        for s in [
            "<m>\u{1}</m>",
            "<m a='\u{0}'/>",
            "<m><![CDATA[\u{FFFF}]]></m>",
            "<m>\u{FFFE}</m>",
        ] {
            assert!(matches!(scan_err(s), XmlError::NotWellFormed(_)), "{s:?}");
        }
    }

    // CORE-STREAM-24: a stream header under any prefix is not a stanza.
    #[test]
    fn core_stream_24_stream_element_as_stanza() {
        let s = "<s:stream xmlns:s='http://etherx.jabber.org/streams'></s:stream>";
        assert!(matches!(scan_err(s), XmlError::NotWellFormed(_)));
        let ns = client();
        let nested = b"<message><stream:stream/></message>";
        assert!(scan_stanza(nested, &ns, &Limits::default()).is_ok());
    }

    // CORE-XML-09/11
    #[test]
    fn core_xml_11_limits() {
        let ns = client();
        let l = Limits {
            max_stanza_bytes: 20,
            max_depth: 3,
            max_attrs: 2,
        };
        assert!(scan_stanza(b"<a><b><c/></b></a>", &ns, &l).is_ok());
        assert!(matches!(
            scan_stanza(b"<a><b><c><d/></c></b></a>", &ns, &l),
            Err(XmlError::PolicyViolation(_))
        ));
        assert!(scan_stanza(b"<a x='1' y='2'/>", &ns, &l).is_ok());
        assert!(matches!(
            scan_stanza(b"<a x='1' y='2' z=''/>", &ns, &l),
            Err(XmlError::PolicyViolation(_))
        ));
        assert!(matches!(
            scan_stanza(b"<a xmlns='u' y='2' z=''/>", &ns, &l),
            Err(XmlError::PolicyViolation(_))
        ));
        assert!(matches!(
            scan_stanza(b"<message><body/></message>", &ns, &l),
            Err(XmlError::PolicyViolation(_))
        ));
    }

    // CORE-XML-12
    #[test]
    fn core_xml_12_equivalent_forms() {
        let ns = client();
        let l = Limits::default();
        for s in [
            "<iq type='get'><query xmlns='jabber:iq:roster'/></iq>",
            "<iq type=\"get\"><query xmlns=\"jabber:iq:roster\"></query></iq>",
            "<iq type='get'><r:query xmlns:r='jabber:iq:roster'/></iq>",
            "<c:iq xmlns:c='jabber:client' type='get'><c:query xmlns:c='jabber:iq:roster'/></c:iq>",
            "<iq type = 'get' ><query xmlns='jabber:iq:roster' ></query ></iq >",
        ] {
            let head = scan_stanza(s.as_bytes(), &ns, &l).expect(s);
            assert_eq!((head.name, head.ns), ("iq", "jabber:client"), "{s}");
            assert_eq!(head.first_child, Some(("jabber:iq:roster", "query")), "{s}");
            assert_eq!(head.attr("type").as_deref(), Some("get"), "{s}");
            assert!(head.self_contained, "{s}");
        }
    }

    #[test]
    fn namespace_scoping() {
        let ns = client();
        let l = Limits::default();
        let s = b"<message><a xmlns='urn:a'><b/></a><c/><p:d xmlns:p='urn:p'><p:e/></p:d><f xmlns=''/></message>";
        assert!(scan_stanza(s, &ns, &l).is_ok());
        let out_of_scope = b"<message><p:d xmlns:p='urn:p'/><p:e/></message>";
        assert!(scan_stanza(out_of_scope, &ns, &l).is_err());
        // The binding ends with the element even when it is self-closing.
        let empty_scope = b"<message><x xmlns:p='urn:p'/><p:e/></message>";
        assert!(scan_stanza(empty_scope, &ns, &l).is_err());
    }

    #[test]
    fn write_with_attrs_replaces_and_inserts() {
        let ns = client();
        let raw = "<message to='juliet@example.com' from=\"evil@x\" type='chat'><body>héllo &amp; ☃</body></message>";
        let head = scan_stanza(raw.as_bytes(), &ns, &Limits::default()).expect("valid");
        let mut out = Vec::new();
        write_with_attrs(&head, &[("from", "romeo@example.net/o'rchard")], &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "<message to='juliet@example.com' from='romeo@example.net/o&apos;rchard' type='chat'>\
             <body>héllo &amp; ☃</body></message>"
        );
        let mut out = Vec::new();
        write_with_attrs(&head, &[("id", "1"), ("to", "a<b"), ("id", "2")], &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "<message id='2' to='a&lt;b' from=\"evil@x\" type='chat'><body>héllo &amp; ☃</body></message>"
        );
        let head = scan_stanza(b"<presence/>", &ns, &Limits::default()).expect("valid");
        let mut out = Vec::new();
        write_with_attrs(&head, &[("from", "a@b/c")], &mut out);
        assert_eq!(out, b"<presence from='a@b/c'/>");
        let mut out = Vec::new();
        write_with_attrs(&head, &[], &mut out);
        assert_eq!(out, b"<presence/>");
    }

    #[test]
    fn write_with_attrs_output_rescans() {
        let ns = client();
        let l = Limits::default();
        let raw = b"<iq type='get' id='x'><query xmlns='jabber:iq:version'/></iq>";
        let head = scan_stanza(raw, &ns, &l).expect("valid");
        let mut out = Vec::new();
        write_with_attrs(&head, &[("from", "\"q\"\t&"), ("id", "y")], &mut out);
        let again = scan_stanza(&out, &ns, &l).expect("valid");
        assert_eq!(again.attr("from").as_deref(), Some("\"q\"\t&"));
        assert_eq!(again.attr("id").as_deref(), Some("y"));
        assert_eq!(again.first_child, head.first_child);
    }

    #[test]
    fn attr_normalizes_whitespace() {
        let ns = client();
        let head = scan_stanza(b"<m a='x\r\ny\tz&#10;'/>", &ns, &Limits::default()).expect("valid");
        assert_eq!(head.attr("a").as_deref(), Some("x y z\n"));
    }

    // STYLE habit 11: StanzaHead crosses the routing path; keep it small.
    #[test]
    fn stanza_head_size() {
        // 488 bytes on 64-bit targets, most of it the eight inline attributes.
        let size = std::mem::size_of::<StanzaHead<'_>>();
        assert!(size <= 576, "StanzaHead grew to {size} bytes");
    }

    /// Scan and parse agree on `raw`; returns their verdict.
    fn walk_both(raw: &str, ns: &StreamNs) -> Result<(), XmlError> {
        let l = Limits::default();
        let scanned = scan_stanza(raw.as_bytes(), ns, &l).map(|_| ());
        let parsed = super::super::parse_element(raw.as_bytes(), ns, &l).map(|_| ());
        assert_eq!(scanned, parsed, "scan and parse disagree on {raw}");
        scanned
    }

    /// A message with a chain of `n` nested elements declaring `p0`… (one each); the innermost
    /// uses `p0`, the outermost, so all `n` are in scope at once.
    fn nested_prefixes(n: usize) -> String {
        let mut s = String::from("<message>");
        for i in 0..n {
            s.push_str(&format!("<p{i}:x xmlns:p{i}='urn:n:{i}'>"));
        }
        s.push_str("<p0:y p0:a='1'/>");
        for i in (0..n).rev() {
            s.push_str(&format!("</p{i}:x>"));
        }
        s.push_str("</message>");
        s
    }

    /// `n` prefix declarations on one element.
    fn flat_prefixes(n: usize, extra: &str) -> String {
        let decls: String = (0..n).map(|i| format!(" xmlns:p{i}='urn:f:{i}'")).collect();
        format!("<message{decls}{extra}><p0:x/></message>")
    }

    const TOO_MANY: XmlError = XmlError::PolicyViolation("too many namespace prefixes in scope");

    // Issue 8: a stanza nested deep with 64 declarations per level used to have about 4000
    // bindings in scope, read for every prefixed name (84 ms for one 256 KiB stanza).
    #[test]
    fn namespace_declarations_in_scope_are_bounded() {
        assert_eq!(MAX_PREFIXES_IN_SCOPE, 32);
        let ns = client();
        // Nested, one per level: 32 accepted, 33 refused.
        assert_eq!(walk_both(&nested_prefixes(32), &ns), Ok(()));
        assert_eq!(walk_both(&nested_prefixes(33), &ns), Err(TOO_MANY));
        // On one element.
        assert_eq!(walk_both(&flat_prefixes(32, ""), &ns), Ok(()));
        assert_eq!(walk_both(&flat_prefixes(33, ""), &ns), Err(TOO_MANY));
        // Shadowed declarations are still in scope (and still read).
        let shadowed = format!(
            "<message>{}<p:y/>{}</message>",
            "<x xmlns:p='urn:p'>".repeat(33),
            "</x>".repeat(33)
        );
        assert_eq!(walk_both(&shadowed, &ns), Err(TOO_MANY));
        // A binding leaves scope with its element, self-closing or not: siblings do not add up.
        let siblings = format!(
            "<message>{}{}</message>",
            flat_prefixes(32, "").replace("message", "a"),
            "<b xmlns:q='urn:q'><q:c/></b><d xmlns:q='urn:q'/>".repeat(40)
        );
        assert_eq!(walk_both(&siblings, &ns), Ok(()));
        // A stream-header prefix the stanza uses is in scope too.
        let s2s = server();
        assert_eq!(walk_both(&flat_prefixes(31, " db:a='1'"), &s2s), Ok(()));
        assert_eq!(
            walk_both(&flat_prefixes(32, " db:a='1'"), &s2s),
            Err(TOO_MANY)
        );
        let nested_db = format!("<message><db:x>{}</db:x></message>", flat_prefixes(32, ""));
        assert_eq!(walk_both(&nested_db, &s2s), Err(TOO_MANY));
        // Unused header prefixes are not counted.
        assert_eq!(walk_both(&flat_prefixes(32, ""), &s2s), Ok(()));
        // The stream error is policy-violation.
        assert!(matches!(TOO_MANY, XmlError::PolicyViolation(_)));
    }

    // Issue 8: attribute namespaces used to be compared byte by byte, pair by pair: 64
    // attributes in one 128 KiB namespace cost 2016 comparisons of 128 KiB per element.
    #[test]
    fn duplicate_attribute_check_does_not_read_namespace_names() {
        let long = "n".repeat(100_000);
        let ns = client();
        let attrs: String = (0..64).map(|i| format!(" p:a{i}=''")).collect();
        let raw = format!("<m xmlns:p='urn:{long}'><y{attrs}/></m>");
        assert_eq!(walk_both(&raw, &ns), Ok(()));
        // Two names of equal length are still told apart, and equal ones are duplicates however
        // they were bound: in the stanza, on the stream header, or one of each.
        let pairs = format!(
            "<m xmlns:p='urn:{long}1' xmlns:q='urn:{long}2'><y p:a='' q:a='' p:b='' q:b=''/></m>"
        );
        assert_eq!(walk_both(&pairs, &ns), Ok(()));
        let dup = XmlError::NotWellFormed("duplicate attribute");
        let same = format!("<m xmlns:p='urn:{long}' xmlns:q='urn:{long}' p:a='' q:a=''/>");
        assert_eq!(walk_both(&same, &ns), Err(dup));
        let nested = format!("<m xmlns:p='urn:{long}'><y xmlns:q='urn:{long}' q:a='' p:a=''/></m>");
        assert_eq!(walk_both(&nested, &ns), Err(dup));
        let s2s = server();
        for raw in [
            "<m xmlns:d='jabber:server:dialback' d:a='1' db:a='2'/>",
            "<m xmlns:d='jabber:server:dialback' db:a='1' d:a='2'/>",
            "<m db:a='1'><y xmlns:d='jabber:server:dialback' d:a='1' db:a='2'/></m>",
        ] {
            assert_eq!(walk_both(raw, &s2s), Err(dup), "{raw}");
        }
        assert_eq!(
            walk_both(
                "<m xmlns:d='jabber:server:dialbacK' d:a='1' db:a='2'/>",
                &s2s
            ),
            Ok(())
        );
        // Two stream-header prefixes for one namespace: compared by content, which a stanza
        // may make us do for at most as many bytes as it has.
        let twins = StreamNs::new("jabber:client")
            .with_prefix("x", "urn:twin")
            .with_prefix("y", "urn:twin")
            .with_prefix("z", "urn:twiN");
        assert_eq!(walk_both("<m x:a='' y:a=''/>", &twins), Err(dup));
        assert_eq!(walk_both("<m x:a='' z:a=''/>", &twins), Ok(()));
        let long_twins = StreamNs::new("jabber:client")
            .with_prefix("x", &format!("urn:{long}1"))
            .with_prefix("y", &format!("urn:{long}2"));
        assert_eq!(
            walk_both("<m x:a='' y:a=''/>", &long_twins),
            Err(XmlError::PolicyViolation(
                "namespace names too costly to compare"
            ))
        );
        assert_eq!(walk_both("<m x:a='' y:b=''/>", &long_twins), Ok(()));
    }
}
