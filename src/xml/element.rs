//! Owned element tree for the stanzas the server answers itself, and its serializer.

use super::escape::{decode, escape_attr, escape_text, Normalize};
use super::scan::{walk, Sink, Start};
use super::{Limits, StreamNs, XmlError, NS_XML};

/// An element with its namespace resolved.
///
/// Attribute keys: the local name for unprefixed attributes, `xml:local` for the `xml` prefix,
/// `{namespace}local` (Clark notation) for other namespaced attributes. Values are unescaped;
/// namespace declarations are not kept (the writer emits what is needed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Namespace.
    pub ns: String,
    /// Attributes as (key, value), in document order.
    pub attrs: Vec<(String, String)>,
    /// Child nodes in document order; adjacent text (including CDATA) is merged.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, unescaped.
    Text(String),
}

/// Parses one complete stanza into an owned tree, with the same validation as
/// [`scan_stanza`](super::scan_stanza). `ns` is the stream's namespace context.
///
/// The tree owns at most a fixed multiple (32) of `limits.max_stanza_bytes`, capacity slack
/// aside: namespaces are copied into every element and attribute key that uses them, so a
/// stanza that would need more is refused with [`XmlError::PolicyViolation`] (issue 8; the
/// walk charges the tree as it goes, so `scan_stanza` refuses the same stanzas).
pub fn parse_element(raw: &[u8], ns: &StreamNs, limits: &Limits) -> Result<Element, XmlError> {
    let mut sink = TreeSink {
        stack: Vec::new(),
        root: None,
    };
    walk(raw, ns, limits, &mut sink)?;
    sink.root
        .ok_or(XmlError::NotWellFormed("incomplete element"))
}

impl Element {
    /// An element with no attributes or children.
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.to_owned(),
            ns: ns.to_owned(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The value of the attribute with this key.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, replacing any existing value.
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((name.to_owned(), value)),
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let at = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(at).1)
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: &str, value: impl Into<String>) -> Element {
        self.set_attr(name, value);
        self
    }

    /// Builder form of [`Element::push_child`].
    pub fn with_child(mut self, child: Element) -> Element {
        self.push_child(child);
        self
    }

    /// Appends character data (builder).
    pub fn with_text(mut self, text: impl Into<String>) -> Element {
        push_text(&mut self.children, &text.into());
        self
    }

    /// Appends a child element.
    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// The first child element with this local name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// Mutable form of [`Element::child`].
    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// The child elements, skipping text.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The direct text children, concatenated.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Put this element and every descendant in namespace `from` into `to` instead: a
    /// stanza moves between streams whose content namespaces differ (a component's
    /// `jabber:component:accept`, a server's `jabber:server`, a client's `jabber:client`).
    pub fn rename_ns(&mut self, from: &str, to: &str) {
        if self.ns == from {
            self.ns = to.to_string();
        }
        for child in &mut self.children {
            if let Node::Element(e) = child {
                e.rename_ns(from, to);
            }
        }
    }

    /// Whether this element has this local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Serializes the element. `parent_ns` is the default namespace in scope where it is written
    /// (e.g. `jabber:client` on a c2s stream): `xmlns` is written only where an element's
    /// namespace differs from its parent's. Clark-notation attributes get generated prefixes,
    /// each declared on the first element that needs it and reused below it, so a parsed tree
    /// writes no more prefixes in scope than its stanza had (see `MAX_PREFIXES_IN_SCOPE`).
    /// Text and values are escaped (CORE-XML-10).
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        self.write_scoped(out, parent_ns, &mut Vec::new());
    }

    /// [`Element::write_to`] with the namespaces of the prefixes `ns0`, `ns1`… declared by the
    /// ancestors.
    fn write_scoped<'e>(&'e self, out: &mut Vec<u8>, parent_ns: &str, declared: &mut Vec<&'e str>) {
        let inherited = declared.len();
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns {
            out.extend_from_slice(b" xmlns=");
            write_ns_value(&self.ns, out);
        }
        for (key, value) in &self.attrs {
            out.push(b' ');
            match clark(key) {
                Some((NS_XML, local)) => {
                    out.extend_from_slice(b"xml:");
                    out.extend_from_slice(local.as_bytes());
                }
                Some((uri, local)) => {
                    let index = match declared.iter().position(|d| *d == uri) {
                        Some(i) => i,
                        None => {
                            declared.push(uri);
                            let i = declared.len() - 1;
                            out.extend_from_slice(format!("xmlns:ns{i}=").as_bytes());
                            write_ns_value(uri, out);
                            out.push(b' ');
                            i
                        }
                    };
                    out.extend_from_slice(format!("ns{index}:").as_bytes());
                    out.extend_from_slice(local.as_bytes());
                }
                None => out.extend_from_slice(key.as_bytes()),
            }
            out.extend_from_slice(b"='");
            escape_attr(value, out);
            out.push(b'\'');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            for child in &self.children {
                match child {
                    Node::Element(e) => e.write_scoped(out, &self.ns, declared),
                    Node::Text(t) => escape_text(t, out),
                }
            }
            out.extend_from_slice(b"</");
            out.extend_from_slice(self.name.as_bytes());
            out.push(b'>');
        }
        declared.truncate(inherited);
    }

    /// [`Element::write_to`] into a new string.
    pub fn to_string_in(&self, parent_ns: &str) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out, parent_ns);
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Writes a quoted namespace name, escaping as little as possible: the parser refuses
/// references in namespace names, so the quote is chosen to avoid one where it can.
fn write_ns_value(uri: &str, out: &mut Vec<u8>) {
    let quote = if uri.contains('\'') && !uri.contains('"') {
        b'"'
    } else {
        b'\''
    };
    out.push(quote);
    let mut start = 0;
    for (i, b) in uri.bytes().enumerate() {
        // Only reachable for names built by the server, never for parsed ones.
        if matches!(b, b'&' | b'<' | b'\t' | b'\n' | b'\r') || b == quote {
            out.extend_from_slice(uri.as_bytes().get(start..i).unwrap_or_default());
            escape_attr(uri.get(i..i + 1).unwrap_or_default(), out);
            start = i + 1;
        }
    }
    out.extend_from_slice(uri.as_bytes().get(start..).unwrap_or_default());
    out.push(quote);
}

/// Splits a `{uri}local` key.
fn clark(key: &str) -> Option<(&str, &str)> {
    // Local names cannot contain '}', namespace names can.
    key.strip_prefix('{')?.rsplit_once('}')
}

fn push_text(children: &mut Vec<Node>, text: &str) {
    if text.is_empty() {
        return;
    }
    match children.last_mut() {
        Some(Node::Text(t)) => t.push_str(text),
        _ => children.push(Node::Text(text.to_owned())),
    }
}

struct TreeSink {
    stack: Vec<Element>,
    root: Option<Element>,
}

impl<'a> Sink<'a> for TreeSink {
    fn start(&mut self, el: &Start<'a, '_>) -> Result<(), XmlError> {
        let mut e = Element::new(el.local, el.ns);
        for a in el.attrs.iter().filter(|a| !a.is_decl) {
            let key = match a.ns {
                None => a.local.to_owned(),
                Some(NS_XML) => format!("xml:{}", a.local),
                Some(uri) => {
                    // Exactly sized: the namespace may be long and is copied into every key.
                    let mut key = String::with_capacity(uri.len() + a.local.len() + 2);
                    key.push('{');
                    key.push_str(uri);
                    key.push('}');
                    key.push_str(a.local);
                    key
                }
            };
            e.attrs
                .push((key, decode(a.value, Normalize::Attr)?.into_owned()));
        }
        self.stack.push(e);
        Ok(())
    }

    fn text(&mut self, text: &'a str, cdata: bool) -> Result<(), XmlError> {
        let Some(top) = self.stack.last_mut() else {
            return Err(XmlError::NotWellFormed("text outside the stanza element"));
        };
        let decoded = if cdata {
            // References are literal inside CDATA; only line ends are normalized.
            decode_cdata(text)
        } else {
            decode(text, Normalize::Text)?.into_owned()
        };
        push_text(&mut top.children, &decoded);
        Ok(())
    }

    fn end(&mut self) {
        if let Some(done) = self.stack.pop() {
            match self.stack.last_mut() {
                Some(parent) => parent.push_child(done),
                None => self.root = Some(done),
            }
        }
    }
}

fn decode_cdata(text: &str) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{scan_stanza, NS_STREAMS};

    fn client() -> StreamNs {
        StreamNs::new("jabber:client").with_prefix("stream", NS_STREAMS)
    }

    fn parse(s: &str) -> Result<Element, XmlError> {
        parse_element(s.as_bytes(), &client(), &Limits::default())
    }

    #[test]
    fn parse_tree() {
        let e = parse(
            "<iq type='set' id='r&amp;1' xml:lang='en' xmlns:x='urn:x' x:flag='on'>\
             <query xmlns='jabber:iq:roster'><item jid='a@b' name='Ann &lt;3'>\
             <group>Friends</group><group>Héllo ☃ 🎉</group></item></query></iq>",
        )
        .expect("valid");
        assert!(e.is("iq", "jabber:client"));
        assert_eq!(e.attr("type"), Some("set"));
        assert_eq!(e.attr("id"), Some("r&1"));
        assert_eq!(e.attr("xml:lang"), Some("en"));
        assert_eq!(e.attr("{urn:x}flag"), Some("on"));
        assert_eq!(e.attrs.len(), 4, "declarations are not kept");
        let query = e.child("query", "jabber:iq:roster").expect("query");
        let item = query.child("item", "jabber:iq:roster").expect("item");
        assert_eq!(item.attr("name"), Some("Ann <3"));
        let groups: Vec<String> = item.elements().map(Element::text).collect();
        assert_eq!(groups, ["Friends", "Héllo ☃ 🎉"]);
        assert!(e.child("query", "jabber:client").is_none());
    }

    #[test]
    fn text_cdata_and_entities_merge() {
        let e = parse("<m><body>a &amp; <![CDATA[<b>&amp;</b>]]> &#x1F389;\r\nz</body></m>")
            .expect("valid");
        let body = e.child("body", "jabber:client").expect("body");
        assert_eq!(
            body.children,
            vec![Node::Text("a & <b>&amp;</b> 🎉\nz".into())]
        );
        assert_eq!(body.text(), "a & <b>&amp;</b> 🎉\nz");
    }

    #[test]
    fn parse_rejects_what_scan_rejects() {
        for s in [
            "<m><a></m>",
            "<m a='1' a='1'/>",
            "<m><x:y/></m>",
            "<m>&nbsp;</m>",
            "<m><!-- c --></m>",
        ] {
            let ns = client();
            let l = Limits::default();
            let parsed = parse_element(s.as_bytes(), &ns, &l);
            let scanned = scan_stanza(s.as_bytes(), &ns, &l);
            assert!(parsed.is_err(), "{s}");
            assert_eq!(parsed.err(), scanned.err(), "{s}");
        }
    }

    // CORE-XML-12: equivalent forms give equal trees.
    #[test]
    fn core_xml_12_equivalent_forms_equal_trees() {
        let forms = [
            "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
            "<iq id=\"1\" type=\"get\"><query xmlns=\"jabber:iq:roster\"></query></iq>",
            "<iq type='get' id='1'><r:query xmlns:r='jabber:iq:roster'/></iq>",
            "<c:iq xmlns:c='jabber:client' type='get' id='1'><query xmlns='jabber:iq:roster'/></c:iq>",
        ];
        let first = parse(forms[0]).expect("valid");
        for f in &forms[1..] {
            let mut e = parse(f).expect("valid");
            e.attrs.sort();
            let mut want = first.clone();
            want.attrs.sort();
            assert_eq!(e, want, "{f}");
        }
    }

    #[test]
    fn builder_and_accessors() {
        let mut e = Element::new("iq", "jabber:client")
            .with_attr("type", "result")
            .with_attr("id", "1")
            .with_child(
                Element::new("query", "jabber:iq:version")
                    .with_child(Element::new("name", "jabber:iq:version").with_text("xmppd")),
            )
            .with_text("a")
            .with_text("b");
        assert_eq!(e.text(), "ab");
        e.set_attr("id", "2");
        e.set_attr("to", String::from("x@y"));
        assert_eq!(e.attr("id"), Some("2"));
        assert_eq!(e.remove_attr("to"), Some("x@y".into()));
        assert_eq!(e.remove_attr("to"), None);
        e.child_mut("query", "jabber:iq:version")
            .expect("query")
            .push_child(Element::new("version", "jabber:iq:version").with_text("0.1"));
        assert_eq!(e.elements().count(), 1);
        assert_eq!(
            e.to_string_in("jabber:client"),
            "<iq type='result' id='2'><query xmlns='jabber:iq:version'><name>xmppd</name>\
             <version>0.1</version></query>ab</iq>"
        );
    }

    // CORE-XML-10
    #[test]
    fn core_xml_10_writer_escapes() {
        let e = Element::new("item", "jabber:iq:roster")
            .with_attr("name", "<'\"&>")
            .with_text("a < b & c > d");
        assert_eq!(
            e.to_string_in("jabber:client"),
            "<item xmlns='jabber:iq:roster' name='&lt;&apos;&quot;&amp;&gt;'>a &lt; b &amp; c &gt; d</item>"
        );
    }

    #[test]
    fn writer_namespaces() {
        let e = Element::new("message", "jabber:client")
            .with_attr("xml:lang", "en")
            .with_attr("{urn:a}x", "1")
            .with_attr("{urn:b}y", "2")
            .with_attr("{urn:a}z", "3")
            .with_child(Element::new("plain", ""))
            .with_child(Element::new("same", "jabber:client"));
        let s = e.to_string_in("jabber:server");
        assert_eq!(
            s,
            "<message xmlns='jabber:client' xml:lang='en' xmlns:ns0='urn:a' ns0:x='1' \
             xmlns:ns1='urn:b' ns1:y='2' ns0:z='3'><plain xmlns=''/><same/></message>"
        );
        let back = parse_element(
            s.as_bytes(),
            &StreamNs::new("jabber:server"),
            &Limits::default(),
        )
        .expect("valid");
        assert_eq!(back, e);
    }

    #[test]
    fn writer_namespace_quoting() {
        for ns in ["urn:a>b", "urn:a'b", "urn:a\"b", "h}tp://x/{a}"] {
            let e = Element::new("x", ns).with_attr(&format!("{{{ns}}}y"), "1");
            let s = e.to_string_in("jabber:client");
            let back = parse_element(
                s.as_bytes(),
                &StreamNs::new("jabber:client"),
                &Limits::default(),
            );
            assert_eq!(back, Ok(e), "{s}");
        }
        let e = Element::new("x", "a'\"&<");
        assert_eq!(e.to_string_in(""), "<x xmlns='a&apos;\"&amp;&lt;'/>");
    }

    #[test]
    fn round_trip_through_writer() {
        let src = "<message to='a@b' type='chat'><body>héllo ☃ 🎉 &amp; &lt;x&gt;\ttab</body>\
                   <html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>\
                   <p style='a:b'>x<br/>y</p></body></html><x xmlns='urn:x' a='&#10;' xml:lang='fr'/></message>";
        let e = parse(src).expect("valid");
        let written = e.to_string_in("jabber:client");
        let again = parse(&written).expect("valid");
        assert_eq!(again, e);
        assert_eq!(
            again.child("x", "urn:x").and_then(|x| x.attr("a")),
            Some("\n")
        );
    }

    const TOO_LARGE: XmlError = XmlError::PolicyViolation("element tree too large");

    /// Parses with `limits`, checking that scan agrees.
    fn parse_with(raw: &str, limits: &Limits) -> Result<Element, XmlError> {
        let ns = client();
        let parsed = parse_element(raw.as_bytes(), &ns, limits);
        let scanned = scan_stanza(raw.as_bytes(), &ns, limits);
        assert_eq!(
            scanned.err().as_ref(),
            parsed.as_ref().err(),
            "scan and parse disagree"
        );
        parsed
    }

    // Issue 8: a namespace declared once was copied into every element and attribute key below
    // it, so one 256 KiB stanza could make the tree allocate 4.3 GB.
    #[test]
    fn parsed_tree_memory_is_bounded() {
        let l = Limits::default();
        // The worst cases for the old code, just under the stanza limit: all refused.
        let long = "n".repeat(l.max_stanza_bytes / 2);
        let room = l.max_stanza_bytes / 2 - 64;
        let children = "<y/>".repeat(room / 4);
        let inherited = format!("<m><x xmlns='urn:{long}'>{children}</x></m>");
        assert_eq!(parse_with(&inherited, &l).err(), Some(TOO_LARGE));
        let prefixed = format!("<m xmlns:p='urn:{long}'>{}</m>", "<p:y/>".repeat(room / 6));
        assert_eq!(parse_with(&prefixed, &l).err(), Some(TOO_LARGE));
        let attrs: String = (0..64).map(|i| format!(" p:a{i}=''")).collect();
        let keys = format!(
            "<m xmlns:p='urn:{long}'>{}</m>",
            format!("<y{attrs}/>").repeat(room / (attrs.len() + 4))
        );
        assert_eq!(parse_with(&keys, &l).err(), Some(TOO_LARGE));

        // The boundary: 32 × max_stanza_bytes. An element is charged its Node, name and
        // namespace; a text node its Node and bytes.
        let small = Limits {
            max_stanza_bytes: 4096,
            ..l
        };
        let budget = 32 * 4096;
        let node = std::mem::size_of::<Node>();
        let uri = format!("urn:{}", "u".repeat(196));
        let element = node + 1 + uri.len();
        let k = (budget - element - node - 1) / element;
        let text = budget - element - k * element - node;
        let stanza = |text: usize| {
            format!(
                "<m xmlns='{uri}'>{}{}</m>",
                "<y/>".repeat(k),
                "t".repeat(text)
            )
        };
        assert!(stanza(text + 1).len() <= small.max_stanza_bytes);
        assert!(parse_with(&stanza(text), &small).is_ok());
        assert_eq!(parse_with(&stanza(text + 1), &small).err(), Some(TOO_LARGE));
        // Attributes: a (String, String), the key (`{ns}local`) and the raw value.
        let attr = std::mem::size_of::<(String, String)>() + (uri.len() + 2 + 1) + 1;
        let base = element + attr; // <m xmlns='…' xmlns:p='…' p:a='v'>
        let k = (budget - base - node - 1) / element;
        let text = budget - base - k * element - node;
        let stanza = |text: usize| {
            format!(
                "<m xmlns='{uri}' xmlns:p='{uri}' p:a='v'>{}{}</m>",
                "<y/>".repeat(k),
                "t".repeat(text)
            )
        };
        assert!(parse_with(&stanza(text), &small).is_ok());
        assert_eq!(parse_with(&stanza(text + 1), &small).err(), Some(TOO_LARGE));

        // Legitimate large stanzas are far from it.
        let mut roster = String::from("<iq type='set' id='p'><query xmlns='jabber:iq:roster'>");
        for i in 0..1000 {
            roster.push_str(&format!(
                "<item jid='contact{i}@example.org' name='Contact {i}' subscription='both'>\
                 <group>Friends</group><group>Work</group></item>"
            ));
        }
        roster.push_str("</query></iq>");
        let e = parse_with(&roster, &l).expect("roster push");
        assert_eq!(e.elements().flat_map(Element::elements).count(), 1000);
        let body = format!("<message><body>{}</body></message>", "b".repeat(200_000));
        assert!(parse_with(&body, &l).is_ok());
        let mut form =
            String::from("<iq type='set' id='f'><x xmlns='jabber:x:data' type='submit'>");
        let mut i = 0;
        while form.len() < 250_000 {
            form.push_str(&format!("<field var='f{i}'><value>{i}</value></field>"));
            i += 1;
        }
        form.push_str("</x></iq>");
        assert!(parse_with(&form, &l).is_ok());
        let mut xhtml = String::from(
            "<message><html xmlns='http://jabber.org/protocol/xhtml-im'>\
             <body xmlns='http://www.w3.org/1999/xhtml'>",
        );
        while xhtml.len() < 60_000 {
            xhtml.push_str("<span style='color:red'>word</span> <b>x</b> ");
        }
        xhtml.push_str("</body></html></message>");
        assert!(parse_with(&xhtml, &l).is_ok());
        // Even a stanza of nothing but empty elements.
        let tiny = format!("<m>{}</m>", "<a/>".repeat((l.max_stanza_bytes - 16) / 4));
        assert!(parse_with(&tiny, &l).is_ok());
    }

    // A tree parsed from a stanza writes no more prefixes in scope than the stanza had, so it
    // parses back under `MAX_PREFIXES_IN_SCOPE`.
    #[test]
    fn writer_declares_each_attribute_namespace_once_per_scope() {
        let depth = 40;
        let src = format!(
            "<m xmlns:p='urn:p'>{}{}</m>",
            "<x p:a='1'>".repeat(depth),
            "</x>".repeat(depth)
        );
        let e = parse(&src).expect("valid");
        let written = e.to_string_in("jabber:client");
        assert_eq!(written.matches("xmlns:").count(), 1, "{written}");
        assert_eq!(parse(&written), Ok(e));
        let e = parse(
            "<m xmlns:p='urn:p' xmlns:q='urn:q'><x p:a='1'><y q:b='2' p:c='3'/></x>\
             <z q:d='4' p:e='5'/></m>",
        )
        .expect("valid");
        assert_eq!(
            e.to_string_in("jabber:client"),
            "<m><x xmlns:ns0='urn:p' ns0:a='1'><y xmlns:ns1='urn:q' ns1:b='2' ns0:c='3'/></x>\
             <z xmlns:ns0='urn:q' ns0:d='4' xmlns:ns1='urn:p' ns1:e='5'/></m>"
        );
        // The most a stanza may have: 32 namespaces, one more on each nested element.
        let n = 32;
        let open: String = (0..n)
            .map(|i| format!("<x xmlns:p{i}='urn:{i}' p{i}:a='{i}'>"))
            .collect();
        let src = format!("<m>{open}{}</m>", "</x>".repeat(n));
        let e = parse(&src).expect("valid");
        assert_eq!(parse(&e.to_string_in("jabber:client")), Ok(e));
    }
}
