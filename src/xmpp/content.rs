//! Content namespaces: a stanza keeps its bytes as it moves between streams whose default
//! namespace differs (`jabber:client`, `jabber:server`, `jabber:component:accept`), unless
//! it names its stream's namespace itself, or relies on a prefix of its stream's header; then
//! it is written again. Routed stanzas are kept in `jabber:client` terms (no declaration of
//! their own); `jabber:server` streams get a client's explicit declaration rewritten.

use std::borrow::Cow;

use crate::xml::{self, StanzaHead, StreamNs};
use crate::xmpp::ns;

/// The bytes of a routed stanza as they go on a `jabber:server` stream, addressed `to` from
/// `from`: unchanged when they carry both addresses and no content namespace of their own.
/// Otherwise written again: a missing `to` or `from` is added (a client's broadcast presence
/// is stored without `to`; RFC 6120 §4.9.3.7 requires both between servers), and a client's
/// explicit `xmlns='jabber:client'` becomes `jabber:server`. Every stanza is scanned (a
/// substring test could be fooled by an attribute value).
pub fn for_server_stream<'a>(stanza: &'a [u8], to: &str, from: &str) -> Cow<'a, [u8]> {
    let client = StreamNs::new(ns::CLIENT);
    let limits = xml::Limits {
        max_stanza_bytes: stanza.len().max(1),
        max_depth: 1024,
        max_attrs: 4096,
    };
    let Ok(head) = xml::scan_stanza(stanza, &client, &limits) else {
        return Cow::Borrowed(stanza);
    };
    let (has_to, has_from) = (head.attr("to").is_some(), head.attr("from").is_some());
    if declares_default_ns(&head) || !head.self_contained {
        let Ok(mut el) = xml::parse_element(stanza, &client, &limits) else {
            return Cow::Borrowed(stanza);
        };
        el.rename_ns(ns::CLIENT, ns::SERVER);
        if !has_to {
            el.set_attr("to", to);
        }
        if !has_from {
            el.set_attr("from", from);
        }
        let mut out = Vec::with_capacity(stanza.len() + 64);
        el.write_to(&mut out, ns::SERVER);
        return Cow::Owned(out);
    }
    if has_to && has_from {
        return Cow::Borrowed(stanza);
    }
    let mut set: smallvec::SmallVec<[(&str, &str); 2]> = smallvec::SmallVec::new();
    if !has_to {
        set.push(("to", to));
    }
    if !has_from {
        set.push(("from", from));
    }
    let mut out = Vec::with_capacity(stanza.len() + to.len() + from.len() + 16);
    xml::write_with_attrs(&head, &set, &mut out);
    Cow::Owned(out)
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
            for_server_stream(plain, "a@b.example", "c@d.example"),
            std::borrow::Cow::Borrowed(_)
        ));
        let explicit =
            b"<message xmlns='jabber:client' to='a@b.example'><body>x</body><x xmlns='urn:x'/></message>";
        let out = for_server_stream(explicit, "a@b.example", "c@d.example");
        let s = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            s,
            "<message to='a@b.example' from='c@d.example'><body>x</body><x xmlns='urn:x'/></message>"
        );
    }

    #[test]
    fn stanzas_between_servers_always_carry_to_and_from() {
        // A broadcast presence is stored without `to`: it gets the route's addresses.
        let p = b"<presence from='bob@b.example/r'><status>here</status></presence>";
        let out = for_server_stream(p, "carol@c.example", "bob@b.example/r");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "<presence to='carol@c.example' from='bob@b.example/r'><status>here</status></presence>"
        );
        // An attribute value that looks like an address does not count as one.
        let tricky = b"<presence id=\" to='x@y' from='z@w'\"/>";
        let out = for_server_stream(tricky, "carol@c.example", "bob@b.example/r");
        let s = std::str::from_utf8(&out).unwrap();
        assert!(
            s.starts_with("<presence to='carol@c.example' from='bob@b.example/r' id="),
            "{s}"
        );
    }
}
