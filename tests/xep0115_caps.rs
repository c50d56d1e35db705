//! XEP-0115 Entity Capabilities, the server's own duties on the wire: CAPS-04 (§6.3, its caps
//! in the stream features) and CAPS-06 (`<c/>` forwarded in presence broadcasts). The caps
//! that PEP acts on (CAPS-01..03) are in `xep0163_pep.rs`.
//!
//! Verification strings are recomputed with the server's own §5.1 function, which unit tests
//! pin to the XEP's examples (src/xmpp/caps.rs).

mod common;

use common::*;
use xmppd::xml::Element;
use xmppd::xmpp::caps::{ver_hash, CapsAlgo};

const CAPS: &str = "http://jabber.org/protocol/caps";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A disco#info get to `to`, with `node`; returns the answer.
fn disco_info(c: &mut Client, to: &str, node: Option<&str>) -> Element {
    let id = next_id("caps");
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    c.send(&format!(
        "<iq type='get' id='{id}' to='{to}'><query xmlns='{DISCO_INFO}'{node}/></iq>"
    ));
    let (r, _) = c.recv_until("disco#info answer", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    r
}

/// §6.3: the stream features after authentication carry the server's `<c/>`; the response
/// header has a `from`; disco#info to that JID at `node#ver` hashes to `ver`.
#[test]
fn caps_04_server_advertises_its_caps_in_stream_features() {
    let s = Server::shared();
    let (u, p) = s.new_user("caps04");
    let mut c = Client::plain(s);
    c.negotiate();
    c.starttls();
    assert_eq!(c.auth_scram("SCRAM-SHA-256", &u, &p).name, "success");
    let (h, f) = c.negotiate();
    let server = h
        .from
        .clone()
        .expect("CAPS-04: the response header has a from");
    assert_eq!(server, DOMAIN);
    let caps = f
        .child("c", CAPS)
        .unwrap_or_else(|| panic!("CAPS-04: <c/> in the features: {f:?}"));
    assert_eq!(caps.attr("hash"), Some("sha-1"), "{caps:?}");
    let node = caps.attr("node").expect("node");
    let ver = caps.attr("ver").expect("ver");
    assert!(!node.is_empty() && !ver.is_empty(), "{caps:?}");
    assert!(f
        .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
        .is_some());
    c.bind(None);

    let caps_node = format!("{node}#{ver}");
    let r = disco_info(&mut c, &server, Some(&caps_node));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(r.attr("from"), Some(server.as_str()));
    let q = r.child("query", DISCO_INFO).expect("query");
    assert_eq!(q.attr("node"), Some(caps_node.as_str()), "node echoed");
    assert_eq!(ver_hash(q, CapsAlgo::Sha1).as_deref(), Ok(ver), "{q:?}");
    // §7: an entity that uses caps advertises the feature.
    assert!(
        q.elements()
            .any(|e| e.name == "feature" && e.attr("var") == Some(CAPS)),
        "{q:?}"
    );
    // The same data as without a node.
    let plain = disco_info(&mut c, &server, None);
    let plain = plain.child("query", DISCO_INFO).expect("query");
    assert_eq!(ver_hash(plain, CapsAlgo::Sha1).as_deref(), Ok(ver));

    // Any other node is still unknown (DISCO-04).
    for other in [
        format!("{node}#x{ver}"),
        format!("{node}#"),
        node.to_string(),
        format!("urn:other#{ver}"),
    ] {
        let r = disco_info(&mut c, &server, Some(&other));
        assert_eq!(
            stanza_error(&r).map(|e| e.0).as_deref(),
            Some("item-not-found"),
            "{other}: {r:?}"
        );
    }
}

/// A client's caps: its disco#info and the `<c/>` of its presence.
struct ClientCaps {
    info: String,
    c: String,
    ver: String,
}

impl ClientCaps {
    /// Caps unique to this test (`unique`), with a legacy `ext` besides the hash, which must
    /// pass unchanged too.
    fn new(unique: &str) -> ClientCaps {
        let info = format!(
            "<query xmlns='{DISCO_INFO}'><identity category='client' type='pc' name='t'/>\
             <feature var='{DISCO_INFO}'/><feature var='urn:test:{unique}'/></query>"
        );
        let ver = ver_hash(&parse_client(&info), CapsAlgo::Sha1).unwrap();
        let c = format!(
            "<c xmlns='{CAPS}' hash='sha-1' node='https://xmppd.test/{unique}' ver='{ver}' \
             ext='e1 e2'/>"
        );
        ClientCaps { info, c, ver }
    }

    /// Answer the server's caps queries (CAPS-01) that arrive within a short wait; returns
    /// how many.
    fn answer_queries(&self, c: &mut Client) -> usize {
        let mut answered = 0;
        for e in c.collect_for(std::time::Duration::from_millis(500)) {
            let Some(q) = e.child("query", DISCO_INFO) else {
                continue;
            };
            let Some(node) = q.attr("node").filter(|n| n.ends_with(&self.ver)) else {
                continue;
            };
            c.answer_disco_info(&e, &self.info, node);
            answered += 1;
        }
        answered
    }
}

/// Checklist CAPS-06: without caps optimization the server forwards `<c/>` in presence
/// broadcasts unchanged, whether or not it knows the `ver` yet.
#[test]
fn caps_06_presence_broadcasts_keep_c_unchanged() {
    let s = Server::shared();
    let (ua, pa) = s.new_user("caps06a");
    let (ub, pb) = s.new_user("caps06b");
    let mut a = Client::online(s, &ua, &pa, Some("a"));
    let mut b = Client::online(s, &ub, &pb, Some("b"));
    befriend(&mut a, &mut b);
    let caps = ClientCaps::new(&next_id("caps06-"));
    let sent = parse_client(&caps.c);
    let fa = a.full();

    // A `ver` the server has not seen, then (after answering its query) one it knows.
    for (round, show) in [(1, "away"), (2, "dnd")] {
        a.send(&format!(
            "<presence><show>{show}</show>{}</presence>",
            caps.c
        ));
        let (p, _) = b.recv_until("a's presence", |e| {
            is_presence(e, None, Some(&fa))
                && e.child("show", "jabber:client")
                    .map(|s| s.text())
                    .as_deref()
                    == Some(show)
        });
        let got = p
            .child("c", CAPS)
            .unwrap_or_else(|| panic!("round {round}: CAPS-06 <c/> forwarded: {p:?}"));
        assert_eq!(got, &sent, "round {round}: CAPS-06 unchanged");
        let answered = caps.answer_queries(&mut a);
        if round == 1 {
            assert!(
                answered > 0,
                "precondition (CAPS-01): the server asks for a new ver"
            );
        }
    }
}
