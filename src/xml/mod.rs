//! XML stream layer: framer, stanza scanner, element tree and writer (RFC 6120 §11).
//!
//! Bytes from a socket go through [`Framer::next`], which splits the stream into its header,
//! complete top-level elements (as slices of the input), whitespace keepalives and the close
//! tag, enforcing restricted XML as it goes. A stanza that is only routed gets a cheap
//! [`scan_stanza`] (full validation, no tree, no heap in the common case) and is forwarded with
//! [`write_with_attrs`]; only stanzas the server answers are parsed with [`parse_element`].
//!
//! Nothing here sees a socket, timer or executor: byte slices in, values out.

mod element;
mod escape;
mod framer;
#[doc(hidden)]
pub mod fuzz;
mod scan;

pub use element::{parse_element, Element, Node};
pub use escape::{escape_attr, escape_text, unescape};
pub use framer::{Frame, Framer, StreamHeader, StreamNs};
pub use scan::{scan_stanza, write_attr, write_with_attrs, RawAttr, StanzaHead};

use std::fmt;

/// The namespace bound to the reserved `xml` prefix (Namespaces in XML 1.0 §3).
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of the `<stream:stream/>` element (RFC 6120 §4.8.1).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// Bounds on what a peer may make us buffer or walk (RFC 6120 §13.12, CORE-XML-09/11).
///
/// Stanzas also have fixed bounds on what their namespaces may cost (issue 8): at most 32
/// prefix bindings in scope at once, a parsed tree owning at most 32 × `max_stanza_bytes`
/// (namespaces are copied into every element and key that uses them), and at most as many
/// bytes of the stream header's namespace names compared as the stanza has. Scan and parse
/// enforce all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest stanza (or stream header, XML declaration included) in bytes.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting; the stream element is depth 0, stanzas are depth 1.
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_stanza_bytes: 262_144,
            max_depth: 64,
            max_attrs: 64,
        }
    }
}

/// Why input was rejected. The caller maps each variant to a stream error condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XmlError {
    /// `<not-well-formed/>`: mismatched tags, duplicate or unquoted attributes, bad UTF-8,
    /// characters XML forbids, malformed entity references, undeclared prefixes in a stanza.
    NotWellFormed(&'static str),
    /// `<restricted-xml/>`: comments, processing instructions, DTDs, non-predefined entities.
    RestrictedXml(&'static str),
    /// `<unsupported-encoding/>`: an XML declaration naming an encoding other than UTF-8.
    UnsupportedEncoding,
    /// `<bad-namespace-prefix/>`: the stream element or its attributes use an undeclared or
    /// reserved prefix.
    BadNamespacePrefix,
    /// `<invalid-namespace/>`: the stream element is not `stream` in the streams namespace.
    InvalidNamespace,
    /// `<policy-violation/>`: a [`Limits`] bound, or one of the fixed namespace bounds described
    /// there, was exceeded.
    PolicyViolation(&'static str),
    /// `<bad-format/>`: well-formed but unacceptable, such as text directly inside the stream.
    BadFormat(&'static str),
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XmlError::NotWellFormed(why) => write!(f, "not well-formed: {why}"),
            XmlError::RestrictedXml(why) => write!(f, "restricted XML: {why}"),
            XmlError::UnsupportedEncoding => f.write_str("unsupported encoding"),
            XmlError::BadNamespacePrefix => {
                f.write_str("bad namespace prefix on the stream element")
            }
            XmlError::InvalidNamespace => f.write_str("invalid namespace for the stream element"),
            XmlError::PolicyViolation(why) => write!(f, "limit exceeded: {why}"),
            XmlError::BadFormat(why) => write!(f, "bad format: {why}"),
        }
    }
}

impl std::error::Error for XmlError {}

/// Checks one `xmlns:prefix='uri'` declaration against Namespaces in XML 1.0 §3.
///
/// Values that attribute-value normalization would change (references, literal tab, LF, CR)
/// are refused rather than decoded so that resolved namespaces can stay borrowed slices of the
/// input; no namespace name XMPP uses needs them.
fn check_prefix_decl(prefix: &str, uri: &str) -> Result<(), XmlError> {
    check_ns_chars(uri)?;
    match prefix {
        "xmlns" => Err(XmlError::NotWellFormed(
            "the xmlns prefix cannot be declared",
        )),
        "xml" if uri != NS_XML => Err(XmlError::NotWellFormed("the xml prefix cannot be rebound")),
        "xml" => Ok(()),
        _ if uri.is_empty() => Err(XmlError::NotWellFormed("empty namespace for a prefix")),
        _ if uri == NS_XML => Err(XmlError::NotWellFormed(
            "the XML namespace bound to another prefix",
        )),
        _ => Ok(()),
    }
}

/// Checks one `xmlns='uri'` declaration; an empty value undeclares the default namespace.
fn check_default_decl(uri: &str) -> Result<(), XmlError> {
    check_ns_chars(uri)?;
    if uri == NS_XML {
        return Err(XmlError::NotWellFormed(
            "the XML namespace cannot be the default",
        ));
    }
    Ok(())
}

fn check_ns_chars(uri: &str) -> Result<(), XmlError> {
    if uri
        .bytes()
        .any(|b| matches!(b, b'&' | b'\t' | b'\n' | b'\r'))
    {
        return Err(XmlError::BadFormat(
            "reference or whitespace in a namespace name",
        ));
    }
    Ok(())
}

/// Maps an xmlparser error to ours by looking at what starts where the last good token ended:
/// a comment, PI or DTD attempt is restricted XML even when it is also malformed.
fn classify_parse_error(text: &str, at: usize) -> XmlError {
    let rest = text.get(at..).unwrap_or("").trim_start();
    let b = rest.as_bytes();
    if b.starts_with(b"<!--") {
        XmlError::RestrictedXml("comment")
    } else if b.starts_with(b"<?") {
        XmlError::RestrictedXml("processing instruction")
    } else if b.starts_with(b"<!") && b.get(2).is_some_and(|c| c.is_ascii_uppercase()) {
        XmlError::RestrictedXml("document type declaration")
    } else {
        XmlError::NotWellFormed("malformed markup")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits() {
        let l = Limits::default();
        assert_eq!(
            (l.max_stanza_bytes, l.max_depth, l.max_attrs),
            (262_144, 64, 64)
        );
    }

    #[test]
    fn errors_display() {
        let e: Box<dyn std::error::Error> = Box::new(XmlError::NotWellFormed("x"));
        assert_eq!(e.to_string(), "not well-formed: x");
        assert_eq!(
            XmlError::UnsupportedEncoding.to_string(),
            "unsupported encoding"
        );
    }

    #[test]
    fn prefix_declarations() {
        assert!(check_prefix_decl("a", "urn:a").is_ok());
        assert!(check_prefix_decl("xml", NS_XML).is_ok());
        assert!(matches!(
            check_prefix_decl("xml", "urn:a"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            check_prefix_decl("xmlns", "urn:a"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            check_prefix_decl("a", ""),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            check_prefix_decl("a", NS_XML),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            check_prefix_decl("a", "a&amp;b"),
            Err(XmlError::BadFormat(_))
        ));
        assert!(check_default_decl("").is_ok());
        assert!(check_default_decl(NS_XML).is_err());
    }
}
