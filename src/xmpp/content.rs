//! Content namespaces: a stanza keeps its bytes as it moves between streams whose default
//! namespace differs (`jabber:client`, `jabber:server`, `jabber:component:accept`), unless
//! it names its stream's namespace itself, or relies on a prefix of its stream's header; then
//! it is written again. Routed stanzas are kept in `jabber:client` terms (no declaration of
//! their own); `jabber:server` streams get a client's explicit declaration rewritten.

use crate::xml::{self, StanzaHead, StreamNs};
use crate::xmpp::ns;

/// The bytes of a routed stanza as they go on a `jabber:server` stream: unchanged, unless
/// the stanza names its content namespace itself (a client's explicit
/// `xmlns='jabber:client'`), which is then written in `jabber:server`.
pub fn for_server_stream(stanza: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let start = match memchr::memchr(b'>', stanza) {
        Some(i) => &stanza[..i],
        None => stanza,
    };
    if memchr::memmem::find(start, b"xmlns").is_none() {
        return std::borrow::Cow::Borrowed(stanza);
    }
    let client = StreamNs::new(ns::CLIENT);
    let ns = &client;
    let limits = xml::Limits {
        max_stanza_bytes: stanza.len().max(1),
        max_depth: 1024,
        max_attrs: 4096,
    };
    let declares = xml::scan_stanza(stanza, ns, &limits).is_ok_and(|h| declares_default_ns(&h));
    match declares {
        true => match xml::parse_element(stanza, ns, &limits) {
            Ok(mut el) => {
                el.rename_ns(ns::CLIENT, ns::SERVER);
                let mut out = Vec::with_capacity(stanza.len());
                el.write_to(&mut out, ns::SERVER);
                std::borrow::Cow::Owned(out)
            }
            Err(_) => std::borrow::Cow::Borrowed(stanza),
        },
        false => std::borrow::Cow::Borrowed(stanza),
    }
}

/// True when the stanza's start tag declares the default namespace itself (`xmlns='…'`).
pub fn declares_default_ns(head: &StanzaHead<'_>) -> bool {
    let start = head.raw.split('>').next().unwrap_or_default();
    let mut rest = start;
    while let Some(i) = rest.find("xmlns") {
        let after = rest[i + 5..].trim_start();
        if after.starts_with('=') {
            return true;
        }
        rest = &rest[i + 5..];
    }
    false
}

/// A stanza received from a peer (component or server) as it is routed: unchanged, or,
/// when it names the stream's content namespace itself or relies on the stream header's
/// prefixes, written again in `jabber:client` (the namespace routed stanzas are kept in).
pub fn routable<'a>(
    head: &StanzaHead<'_>,
    raw: &'a [u8],
    stream_ns: &StreamNs,
    content_ns: &str,
    limits: &xml::Limits,
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], xml::XmlError> {
    if head.self_contained && !declares_default_ns(head) {
        return Ok(raw);
    }
    let mut el = xml::parse_element(raw, stream_ns, limits)?;
    el.rename_ns(content_ns, ns::CLIENT);
    el.write_to(buf, ns::CLIENT);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_namespace_declaration_is_seen_on_the_start_tag_only() {
        let ns = StreamNs::new(ns::COMPONENT_ACCEPT);
        let l = xml::Limits::default();
        let yes = [
            "<message xmlns='jabber:component:accept' to='a@b'/>",
            "<message to='a@b' xmlns = 'jabber:client'><body/></message>",
        ];
        let no = [
            "<message to='a@b'><x xmlns='urn:x'/></message>",
            "<message xmlns:p='urn:p' p:a='1'/>",
            "<message id='xmlns'/>",
        ];
        for s in yes {
            let h = xml::scan_stanza(s.as_bytes(), &ns, &l).unwrap();
            assert!(declares_default_ns(&h), "{s}");
        }
        for s in no {
            let h = xml::scan_stanza(s.as_bytes(), &ns, &l).unwrap();
            assert!(!declares_default_ns(&h), "{s}");
        }
    }

    #[test]
    fn client_stanzas_go_on_server_streams_in_jabber_server() {
        let plain = b"<message to='a@b.example' from='c@d.example'><body>x</body></message>";
        assert!(matches!(
            for_server_stream(plain),
            std::borrow::Cow::Borrowed(_)
        ));
        let explicit =
            b"<message xmlns='jabber:client' to='a@b.example'><body>x</body><x xmlns='urn:x'/></message>";
        let out = for_server_stream(explicit);
        let s = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            s,
            "<message to='a@b.example'><body>x</body><x xmlns='urn:x'/></message>"
        );
    }
}
