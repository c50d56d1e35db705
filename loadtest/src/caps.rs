//! XEP-0115 entity capabilities for the `pep` scenario: the disco#info the generator's clients
//! advertise and answer with, its `ver` (§5.1, SHA-1), and XEP-0163 notification recognition.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::framing::{attr, child, name};

/// The caps namespace.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// Service discovery, info.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// The PEP node the scenario publishes to (XEP-0118 User Tune).
pub const NS_TUNE: &str = "http://jabber.org/protocol/tune";
/// PubSub (requests).
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// PubSub event notifications.
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// The caps `node` of the generator's clients (the software's URI).
pub const CAPS_NODE: &str = "https://xmppd.invalid/xmppd-loadtest";

/// A disco#info identity.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// `category`.
    pub category: &'a str,
    /// `type`.
    pub kind: &'a str,
    /// `xml:lang` ("" for none).
    pub lang: &'a str,
    /// `name` ("" for none).
    pub name: &'a str,
}

/// The generator's client identity.
pub const IDENTITY: Identity<'static> = Identity {
    category: "client",
    kind: "pc",
    lang: "",
    name: "xmppd-loadtest",
};

/// The generator's client features: it wants tune notifications (`+notify`, XEP-0163 §4).
pub const FEATURES: [&str; 4] = [
    NS_CAPS,
    NS_DISCO_INFO,
    NS_TUNE,
    "http://jabber.org/protocol/tune+notify",
];

/// The XEP-0115 §5.1 verification string of a disco#info without extended forms: identities
/// sorted by category, type and xml:lang, each `category/type/lang/name<`, then the features
/// sorted, each `var<` (i;octet ordering, that is bytewise).
pub fn ver_string(identities: &[Identity<'_>], features: &[&str]) -> String {
    let mut ids: Vec<&Identity<'_>> = identities.iter().collect();
    ids.sort_by(|a, b| {
        (a.category, a.kind, a.lang, a.name).cmp(&(b.category, b.kind, b.lang, b.name))
    });
    let mut feats: Vec<&str> = features.to_vec();
    feats.sort_unstable();
    let mut s = String::new();
    for i in ids {
        s.push_str(&format!("{}/{}/{}/{}<", i.category, i.kind, i.lang, i.name));
    }
    for f in feats {
        s.push_str(f);
        s.push('<');
    }
    s
}

/// The XEP-0115 `ver` with `hash='sha-1'`: Base64 of the SHA-1 of [`ver_string`].
pub fn ver(identities: &[Identity<'_>], features: &[&str]) -> String {
    STANDARD.encode(Sha1::digest(ver_string(identities, features).as_bytes()))
}

/// The initial presence of a generator client: caps with the `ver` of [`IDENTITY`] and
/// [`FEATURES`].
pub fn presence() -> Vec<u8> {
    format!(
        "<presence><c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' ver='{}'/></presence>",
        ver(&[IDENTITY], &FEATURES)
    )
    .into_bytes()
}

/// Appends ` name='value'` with `value` raw (as read from the wire, already escaped), quoted
/// with whichever quote it does not contain.
fn put_attr(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let q = if value.contains(&b'\'') { b'"' } else { b'\'' };
    w.push(b' ');
    w.extend_from_slice(name);
    w.push(b'=');
    w.push(q);
    w.extend_from_slice(value);
    w.push(q);
}

/// If `s` is a disco#info query (`<iq type='get'><query xmlns='…disco#info' …/></iq>`), the
/// answer: a result to its sender with the same id, echoing the query's `node`, holding
/// exactly the identity and features the `ver` was computed over.
pub fn disco_info_answer(s: &[u8]) -> Option<Vec<u8>> {
    if name(s) != b"iq" || attr(s, b"type") != Some(b"get") {
        return None;
    }
    let q = child(s, b"query")?;
    if attr(q, b"xmlns") != Some(NS_DISCO_INFO.as_bytes()) {
        return None;
    }
    let mut w = b"<iq type='result'".to_vec();
    if let Some(id) = attr(s, b"id") {
        put_attr(&mut w, b"id", id);
    }
    if let Some(from) = attr(s, b"from") {
        put_attr(&mut w, b"to", from);
    }
    w.extend_from_slice(b"><query xmlns='");
    w.extend_from_slice(NS_DISCO_INFO.as_bytes());
    w.push(b'\'');
    if let Some(node) = attr(q, b"node") {
        put_attr(&mut w, b"node", node);
    }
    let i = IDENTITY;
    w.extend_from_slice(
        format!(
            "><identity category='{}' type='{}' name='{}'/>",
            i.category, i.kind, i.name
        )
        .as_bytes(),
    );
    for f in FEATURES {
        w.extend_from_slice(format!("<feature var='{f}'/>").as_bytes());
    }
    w.extend_from_slice(b"</query></iq>");
    Some(w)
}

/// If `s` is an IQ request (`get`/`set`) the client does not handle, the
/// `service-unavailable` error RFC 6120 §8.4 asks for.
pub fn iq_unavailable(s: &[u8]) -> Option<Vec<u8>> {
    if name(s) != b"iq" || !matches!(attr(s, b"type"), Some(b"get" | b"set")) {
        return None;
    }
    let mut w = b"<iq type='error'".to_vec();
    if let Some(id) = attr(s, b"id") {
        put_attr(&mut w, b"id", id);
    }
    if let Some(from) = attr(s, b"from") {
        put_attr(&mut w, b"to", from);
    }
    w.extend_from_slice(
        b"><error type='cancel'><service-unavailable \
          xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    );
    Some(w)
}

/// A tune notification as the scenario publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification<'a> {
    /// The publisher: `from`, a bare JID.
    pub from: &'a [u8],
    /// The item id.
    pub item_id: &'a [u8],
}

/// If `s` is a XEP-0163 notification of a published tune item (`<message from='bare JID'>
/// <event xmlns='…pubsub#event'><items node='…tune'><item id='…'>`), its publisher and item id.
/// Not an error bounce, not a replayed item (`<delay/>`), not a retraction.
pub fn tune_notification(s: &[u8]) -> Option<Notification<'_>> {
    if name(s) != b"message" || attr(s, b"type") == Some(b"error") {
        return None;
    }
    let from = attr(s, b"from")?;
    if from.contains(&b'/') {
        return None;
    }
    let ev = child(s, b"event")?;
    if attr(ev, b"xmlns") != Some(NS_PUBSUB_EVENT.as_bytes()) {
        return None;
    }
    let items = child(ev, b"items")?;
    if attr(items, b"node") != Some(NS_TUNE.as_bytes()) {
        return None;
    }
    let item = child(items, b"item")?;
    if child(s, b"delay").is_some() {
        return None;
    }
    Some(Notification {
        from,
        item_id: attr(item, b"id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2: the simple example's verification string and `ver`.
    #[test]
    fn xep0115_5_2_example() {
        let exodus = Identity {
            category: "client",
            kind: "pc",
            lang: "",
            name: "Exodus 0.9.1",
        };
        let features = [
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#items",
        ];
        assert_eq!(
            ver_string(&[exodus], &features),
            "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
             http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
             http://jabber.org/protocol/muc<"
        );
        assert_eq!(ver(&[exodus], &features), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn identities_sort_by_category_type_lang() {
        let a = Identity {
            category: "client",
            kind: "pc",
            lang: "en",
            name: "B",
        };
        let b = Identity {
            category: "client",
            kind: "pc",
            lang: "de",
            name: "Z",
        };
        let c = Identity {
            category: "auth",
            kind: "x",
            lang: "",
            name: "",
        };
        assert_eq!(
            ver_string(&[a, b, c], &[]),
            "auth/x//<client/pc/de/Z<client/pc/en/B<"
        );
    }

    #[test]
    fn presence_carries_the_ver_of_the_answer() {
        let p = String::from_utf8(presence()).unwrap();
        let v = ver(&[IDENTITY], &FEATURES);
        assert!(p.contains(&format!("ver='{v}'")), "{p}");
        assert!(p.contains("hash='sha-1'") && p.contains(CAPS_NODE));
        // The answer lists exactly what the ver was computed over.
        let q = format!(
            "<iq type='get' from='p1@localhost' to='p2@localhost/lt' id='d1'>\
             <query xmlns='{NS_DISCO_INFO}' node='{CAPS_NODE}#{v}'/></iq>"
        );
        let a = String::from_utf8(disco_info_answer(q.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            a,
            format!(
                "<iq type='result' id='d1' to='p1@localhost'><query xmlns='{NS_DISCO_INFO}' \
                 node='{CAPS_NODE}#{v}'><identity category='client' type='pc' \
                 name='xmppd-loadtest'/><feature var='http://jabber.org/protocol/caps'/>\
                 <feature var='http://jabber.org/protocol/disco#info'/>\
                 <feature var='http://jabber.org/protocol/tune'/>\
                 <feature var='http://jabber.org/protocol/tune+notify'/></query></iq>"
            )
        );
    }

    #[test]
    fn disco_answers_echo_id_sender_and_node() {
        // Double quotes, no node, an id with an apostrophe, from the server's JID.
        let q = b"<iq from=\"localhost\" id=\"a'b\" type=\"get\"><query \
            xmlns=\"http://jabber.org/protocol/disco#info\"/></iq>";
        let a = String::from_utf8(disco_info_answer(q).unwrap()).unwrap();
        assert!(
            a.starts_with(&format!(
                "<iq type='result' id=\"a'b\" to='localhost'><query xmlns='{NS_DISCO_INFO}'>"
            )),
            "{a}"
        );
        // Not a disco#info get.
        assert!(disco_info_answer(
            b"<iq type='result' id='x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        .is_none());
        assert!(disco_info_answer(
            b"<iq type='get' id='x'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        )
        .is_none());
        assert!(disco_info_answer(
            b"<message><query xmlns='http://jabber.org/protocol/disco#info'/></message>"
        )
        .is_none());
        // Other requests get service-unavailable; results and errors get nothing.
        let e = iq_unavailable(
            b"<iq type='get' id='v' from='localhost'><query xmlns='jabber:iq:version'/></iq>",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(e).unwrap(),
            "<iq type='error' id='v' to='localhost'><error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
        assert!(iq_unavailable(b"<iq type='result' id='v'/>").is_none());
    }

    #[test]
    fn recognizes_tune_notifications() {
        // xmppd / Prosody style.
        let m = b"<message type='headline' from='p7@localhost' to='p8@localhost/lt' id='x'>\
            <event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='http://jabber.org/protocol/tune'><item id='3.123456'>\
            <tune xmlns='http://jabber.org/protocol/tune'><title>t</title></tune></item>\
            </items></event></message>";
        assert_eq!(
            tune_notification(m),
            Some(Notification {
                from: b"p7@localhost",
                item_id: b"3.123456"
            })
        );
        // ejabberd style: double quotes, an addresses element after the event.
        let m = b"<message from=\"p7@localhost\" to=\"p8@localhost/lt\" type=\"headline\">\
            <event xmlns=\"http://jabber.org/protocol/pubsub#event\"><items \
            node=\"http://jabber.org/protocol/tune\"><item id=\"1.2\"><tune \
            xmlns=\"http://jabber.org/protocol/tune\"/></item></items></event>\
            <addresses xmlns=\"http://jabber.org/protocol/address\"><address type=\"replyto\" \
            jid=\"p7@localhost/lt\"/></addresses></message>";
        assert_eq!(tune_notification(m).map(|n| n.item_id), Some(&b"1.2"[..]));
        // Not notifications of a published tune.
        let other_node =
            b"<message from='p7@localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='urn:xmpp:avatar:metadata'><item id='1.2'/></items></event></message>";
        let retract = b"<message from='p7@localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='http://jabber.org/protocol/tune'><retract id='1.2'/></items></event></message>";
        let full_from = b"<message from='p7@localhost/lt'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='http://jabber.org/protocol/tune'><item id='1.2'/></items></event></message>";
        let bounce = b"<message type='error' from='p7@localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='http://jabber.org/protocol/tune'><item id='1.2'/></items></event></message>";
        let delayed =
            b"<message from='p7@localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
            <items node='http://jabber.org/protocol/tune'><item id='1.2'/></items></event>\
            <delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>";
        let wrong_ns = b"<message from='p7@localhost'><event xmlns='urn:other'>\
            <items node='http://jabber.org/protocol/tune'><item id='1.2'/></items></event></message>";
        let chat = b"<message from='p7@localhost' type='chat'><body>hi</body></message>";
        for s in [
            &other_node[..],
            retract,
            full_from,
            bounce,
            delayed,
            wrong_ns,
            chat,
        ] {
            assert_eq!(tune_notification(s), None, "{}", String::from_utf8_lossy(s));
        }
    }
}
