//! XEP-0402 PEP native bookmarks kept in step with XEP-0048 bookmarks in XEP-0049 private XML
//! storage (XEP-0402 §6.3 "Compatibility", announced as `urn:xmpp:bookmarks:1#compat`; the
//! older XEP-0411 described the same bridge): what a client stores one way, a client of the
//! other kind reads.
//!
//! The conversions are pure. A legacy `<storage xmlns='storage:bookmarks'>` holds
//! `<conference jid name autojoin><nick/><password/></conference>` and `<url/>` elements; a
//! native bookmark is one item of node `urn:xmpp:bookmarks:1` whose id is the room JID and
//! whose payload is `<conference xmlns='urn:xmpp:bookmarks:1' name autojoin><nick/>
//! <password/><extensions/></conference>`. URLs have no native form: a legacy list rebuilt from
//! the native items keeps the URLs the stored legacy list had.

use crate::xml::{self, Element, Limits, StreamNs};

/// XEP-0048's namespace in private XML storage.
pub const NS_LEGACY: &str = "storage:bookmarks";
/// XEP-0402's node, and its payload's namespace.
pub const NS_NATIVE: &str = "urn:xmpp:bookmarks:1";
/// The account feature announcing the bridge (XEP-0402 §6.3).
pub const FEATURE_COMPAT: &str = "urn:xmpp:bookmarks:1#compat";

/// One native bookmark: the item id (the room JID) and the serialized payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Native {
    pub id: String,
    pub payload: Vec<u8>,
}

/// The native bookmarks a legacy `<storage/>` describes, in its order; a conference without a
/// `jid` is skipped (it names no room), and a repeated JID keeps its last occurrence's place
/// and content.
pub fn legacy_to_native(storage: &Element) -> Vec<Native> {
    let mut out: Vec<Native> = Vec::new();
    for c in storage.elements().filter(|e| e.is("conference", NS_LEGACY)) {
        let Some(jid) = c.attr("jid").filter(|j| !j.is_empty()) else {
            continue;
        };
        let mut conf = Element::new("conference", NS_NATIVE);
        if let Some(name) = c.attr("name") {
            conf.set_attr("name", name);
        }
        let autojoin = matches!(c.attr("autojoin"), Some("true" | "1"));
        conf.set_attr("autojoin", if autojoin { "true" } else { "false" });
        for child in ["nick", "password"] {
            if let Some(v) = c.child(child, NS_LEGACY) {
                conf.push_child(Element::new(child, NS_NATIVE).with_text(v.text()));
            }
        }
        let mut payload = Vec::new();
        conf.write_to(&mut payload, "");
        out.retain(|n| n.id != jid);
        out.push(Native {
            id: jid.to_string(),
            payload,
        });
    }
    out
}

/// The legacy `<storage/>` for the native bookmarks `items` (id, payload), in their order,
/// with the `<url/>` elements of `previous` (the stored legacy list, if any) after them. A
/// payload that is not a native `<conference/>` is skipped.
pub fn native_to_legacy(
    items: &[(&str, &[u8])],
    previous: Option<&Element>,
    limits: &Limits,
) -> Vec<u8> {
    let mut storage = Element::new("storage", NS_LEGACY);
    for (id, payload) in items {
        let Ok(conf) = xml::parse_element(payload, &StreamNs::new(NS_NATIVE), limits) else {
            continue;
        };
        if !conf.is("conference", NS_NATIVE) {
            continue;
        }
        let mut legacy = Element::new("conference", NS_LEGACY).with_attr("jid", *id);
        if let Some(name) = conf.attr("name") {
            legacy.set_attr("name", name);
        }
        let autojoin = matches!(conf.attr("autojoin"), Some("true" | "1"));
        legacy.set_attr("autojoin", if autojoin { "true" } else { "false" });
        for child in ["nick", "password"] {
            if let Some(v) = conf.child(child, NS_NATIVE) {
                legacy.push_child(Element::new(child, NS_LEGACY).with_text(v.text()));
            }
        }
        storage.push_child(legacy);
    }
    if let Some(prev) = previous {
        for url in prev.elements().filter(|e| e.is("url", NS_LEGACY)) {
            storage.push_child(url.clone());
        }
    }
    let mut out = Vec::new();
    storage.write_to(&mut out, "");
    out
}

/// The legacy `<storage/>` element in a stored private XML fragment (the fragment is the
/// serialized children of `<query/>` for the namespace).
pub fn stored_legacy(fragment: &[u8], limits: &Limits) -> Option<Element> {
    let mut wrapped = Vec::with_capacity(fragment.len() + 48);
    wrapped.extend_from_slice(b"<query xmlns='jabber:iq:private'>");
    wrapped.extend_from_slice(fragment);
    wrapped.extend_from_slice(b"</query>");
    let q = xml::parse_element(&wrapped, &StreamNs::new("jabber:iq:private"), limits).ok()?;
    q.child("storage", NS_LEGACY).cloned()
}

/// What changes when the native items `old` (id, payload) become `new`: the items to publish
/// (new or changed), and the ids to retract. XEP-0402 §6.3.2: unchanged items are not
/// touched (no notification).
pub fn diff<'a>(old: &[(&str, &[u8])], new: &'a [Native]) -> (Vec<&'a Native>, Vec<String>) {
    let publish = new
        .iter()
        .filter(|n| {
            !old.iter()
                .any(|(id, p)| *id == n.id && *p == n.payload.as_slice())
        })
        .collect();
    let retract = old
        .iter()
        .filter(|(id, _)| !new.iter().any(|n| n.id == *id))
        .map(|(id, _)| id.to_string())
        .collect();
    (publish, retract)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(text: &str) -> Element {
        xml::parse_element(
            text.as_bytes(),
            &StreamNs::new("jabber:client"),
            &Limits::default(),
        )
        .unwrap()
    }

    const LEGACY: &str = "<storage xmlns='storage:bookmarks'>\
        <conference jid='council@conference.example' name='The Council' autojoin='true'>\
        <nick>JC</nick><password>secret</password></conference>\
        <conference name='no jid'/>\
        <url name='Home' url='https://example.org/'/>\
        <conference jid='lobby@conference.example' autojoin='0'/>\
        </storage>";

    #[test]
    fn xep0402_compat_legacy_becomes_one_item_per_room() {
        let n = legacy_to_native(&el(LEGACY));
        let ids: Vec<&str> = n.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            ["council@conference.example", "lobby@conference.example"]
        );
        assert_eq!(
            String::from_utf8(n[0].payload.clone()).unwrap(),
            "<conference xmlns='urn:xmpp:bookmarks:1' name='The Council' autojoin='true'>\
             <nick>JC</nick><password>secret</password></conference>"
        );
        assert_eq!(
            String::from_utf8(n[1].payload.clone()).unwrap(),
            "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='false'/>"
        );
    }

    #[test]
    fn xep0402_compat_round_trip_keeps_rooms_and_urls() {
        let legacy = el(LEGACY);
        let native = legacy_to_native(&legacy);
        let items: Vec<(&str, &[u8])> = native
            .iter()
            .map(|n| (n.id.as_str(), n.payload.as_slice()))
            .collect();
        let back = native_to_legacy(&items, Some(&legacy), &Limits::default());
        let back = el(std::str::from_utf8(&back).unwrap());
        let confs: Vec<(&str, Option<&str>)> = back
            .elements()
            .filter(|e| e.name == "conference")
            .map(|c| (c.attr("jid").unwrap(), c.attr("autojoin")))
            .collect();
        assert_eq!(
            confs,
            [
                ("council@conference.example", Some("true")),
                ("lobby@conference.example", Some("false"))
            ]
        );
        let council = back.elements().next().unwrap();
        assert_eq!(council.child("nick", NS_LEGACY).unwrap().text(), "JC");
        assert_eq!(
            council.child("password", NS_LEGACY).unwrap().text(),
            "secret"
        );
        assert_eq!(council.attr("name"), Some("The Council"));
        assert!(back.child("url", NS_LEGACY).is_some(), "URLs survive");
        // Converting again gives the same native items.
        assert_eq!(legacy_to_native(&back), native);
    }

    #[test]
    fn xep0402_compat_other_payloads_are_skipped_and_duplicates_keep_the_last() {
        let items: Vec<(&str, &[u8])> = vec![
            ("a@c.example", b"<other xmlns='urn:x'/>"),
            (
                "b@c.example",
                b"<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/>",
            ),
            ("c@c.example", b"not xml"),
        ];
        let out = native_to_legacy(&items, None, &Limits::default());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<storage xmlns='storage:bookmarks'><conference jid='b@c.example' autojoin='true'/></storage>"
        );
        let dup = el(
            "<storage xmlns='storage:bookmarks'><conference jid='r@c' name='1'/>\
            <conference jid='s@c'/><conference jid='r@c' name='2'/></storage>",
        );
        let n = legacy_to_native(&dup);
        let ids: Vec<&str> = n.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["s@c", "r@c"]);
        assert!(String::from_utf8_lossy(&n[1].payload).contains("name='2'"));
    }

    #[test]
    fn xep0402_6_3_2_unchanged_items_are_not_touched() {
        let new = vec![
            Native {
                id: "a".into(),
                payload: b"<x/>".to_vec(),
            },
            Native {
                id: "b".into(),
                payload: b"<y2/>".to_vec(),
            },
            Native {
                id: "d".into(),
                payload: b"<d/>".to_vec(),
            },
        ];
        let old: Vec<(&str, &[u8])> = vec![("a", b"<x/>"), ("b", b"<y/>"), ("c", b"<c/>")];
        let (publish, retract) = diff(&old, &new);
        let ids: Vec<&str> = publish.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["b", "d"]);
        assert_eq!(retract, ["c"]);
    }

    #[test]
    fn the_stored_fragment_yields_its_storage_element() {
        let frag = LEGACY.as_bytes();
        assert!(stored_legacy(frag, &Limits::default()).is_some());
        assert!(stored_legacy(b"<other xmlns='x'/>", &Limits::default()).is_none());
        assert!(stored_legacy(b"<broken", &Limits::default()).is_none());
    }
}
