//! Validation of one stanza without building a tree, and forwarding it with rewritten attributes.
//!
//! [`walk`] is the single validator behind both [`scan_stanza`] and
//! [`parse_element`](super::parse_element): well-formedness, restricted XML, references,
//! namespaces and limits. What each caller keeps is decided by its [`Sink`].

use std::borrow::Cow;
use std::ops::Range;

use smallvec::SmallVec;
use xmlparser::{ElementEnd, StrSpan, Token, Tokenizer};

use super::escape::{check_refs, decode, escape_attr, Normalize};
use super::{
    check_default_decl, check_prefix_decl, classify_parse_error, Limits, StreamNs, XmlError,
    NS_STREAMS, NS_XML,
};

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
/// Does not allocate unless the stanza has more than 8 prefix declarations in scope at once,
/// more than 8 attributes on one element, or elements nested more than 16 deep.
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

fn write_attr(name: &str, value: &str, out: &mut Vec<u8>) {
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
        sns,
        limits,
        bindings: SmallVec::new(),
        open: SmallVec::new(),
        attrs: SmallVec::new(),
        pending: None,
        done: false,
        self_contained: true,
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
        self_contained: w.self_contained,
    })
}

/// An open element.
struct Open<'a> {
    qname: &'a str,
    /// Default namespace in scope inside it.
    default_ns: &'a str,
    /// Length of `Walker::bindings` before its declarations.
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
    sns: &'a StreamNs,
    limits: &'l Limits,
    /// Prefix declarations in scope, innermost last.
    bindings: SmallVec<[(&'a str, &'a str); 8]>,
    open: SmallVec<[Open<'a>; 16]>,
    attrs: SmallVec<[Attr<'a>; 8]>,
    pending: Option<Pending<'a>>,
    /// The stanza element has been closed.
    done: bool,
    self_contained: bool,
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
                self.bindings.truncate(open.bindings_len);
                sink.end();
                self.done = self.open.is_empty();
                Ok(span.end())
            }
            Token::Text { text } => {
                self.check_inside()?;
                check_refs(text.as_str())?;
                sink.text(text.as_str(), false)?;
                Ok(text.end())
            }
            Token::Cdata { text, span } => {
                self.check_inside()?;
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
        let bindings_len = self.bindings.len();
        let mut default_ns = self
            .open
            .last()
            .map_or(self.sns.default_ns(), |o| o.default_ns);
        for a in self.attrs.iter().filter(|a| a.is_decl) {
            if a.prefix.is_empty() {
                check_default_decl(a.value)?;
                default_ns = a.value;
            } else {
                check_prefix_decl(a.local, a.value)?;
                self.bindings.push((a.local, a.value));
            }
        }
        let ns = match p.prefix {
            "" => default_ns,
            // Legal in theory, never used, and no default declaration could reproduce it.
            "xml" => return Err(XmlError::NotWellFormed("the xml prefix on an element")),
            prefix => resolve(prefix, &self.bindings, self.sns, &mut self.self_contained)?,
        };
        for a in self
            .attrs
            .iter_mut()
            .filter(|a| !a.is_decl && !a.prefix.is_empty())
        {
            a.ns = Some(resolve(
                a.prefix,
                &self.bindings,
                self.sns,
                &mut self.self_contained,
            )?);
        }
        for (i, a) in self.attrs.iter().enumerate() {
            if a.ns.is_some()
                && self
                    .attrs
                    .iter()
                    .take(i)
                    .any(|b| b.ns == a.ns && b.local == a.local)
            {
                return Err(XmlError::NotWellFormed("duplicate attribute"));
            }
        }
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
            self.bindings.truncate(bindings_len);
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
    if prefix.is_empty() && qname.contains(':') {
        return Err(XmlError::NotWellFormed("malformed qualified name"));
    }
    Ok(())
}

/// Resolves a non-empty prefix: innermost declaration in the stanza, then the stream header
/// (which makes the stanza not self-contained). Undeclared is not well-formed (CORE-XML-06).
fn resolve<'a>(
    prefix: &str,
    bindings: &[(&'a str, &'a str)],
    sns: &'a StreamNs,
    self_contained: &mut bool,
) -> Result<&'a str, XmlError> {
    match prefix {
        "xml" => return Ok(NS_XML),
        "xmlns" => return Err(XmlError::NotWellFormed("the xmlns prefix on an element")),
        _ => {}
    }
    if let Some((_, uri)) = bindings.iter().rev().find(|(p, _)| *p == prefix) {
        return Ok(uri);
    }
    let uri = sns
        .resolve(prefix)
        .ok_or(XmlError::NotWellFormed("undeclared namespace prefix"))?;
    *self_contained = false;
    Ok(uri)
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
}
