//! RFC 6121 §2 rosters and XEP-0237 roster versioning, on the wire.

mod common;

use common::*;
use std::time::Duration;
use xmppd::xml::Element;

const ROSTER: &str = "jabber:iq:roster";

fn roster_get(c: &mut Client, ver: Option<&str>) -> Element {
    let ver = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    c.send(&format!(
        "<iq type='get' id='rg'><query xmlns='{ROSTER}'{ver}/></iq>"
    ));
    let r = c.recv_el();
    assert_eq!(r.attr("id"), Some("rg"), "{r:?}");
    r
}

fn items(result: &Element) -> Vec<Element> {
    result
        .child("query", ROSTER)
        .map(|q| q.elements().cloned().collect())
        .unwrap_or_default()
}

/// Send a roster set and collect the result and the push, in whatever order they come.
fn roster_set(c: &mut Client, item: &str) -> (Element, Option<Element>) {
    c.send(&format!(
        "<iq type='set' id='rs'><query xmlns='{ROSTER}'>{item}</query></iq>"
    ));
    let mut result = None;
    let mut push = None;
    for _ in 0..2 {
        let e = c.recv_el();
        if e.attr("id") == Some("rs") {
            result = Some(e);
            if result.as_ref().unwrap().attr("type") == Some("error") {
                break;
            }
        } else {
            push = Some(e);
        }
        if result.is_some() && push.is_some() {
            break;
        }
    }
    (result.expect("roster set result"), push)
}

fn pushed_item(push: &Element) -> Element {
    assert_eq!(push.attr("type"), Some("set"));
    // IM-ROSTER-04: no from, or the user's bare JID.
    if let Some(from) = push.attr("from") {
        assert!(!from.contains('/'), "push from a full JID: {from}");
    }
    let q = push.child("query", ROSTER).expect("query");
    let items: Vec<&Element> = q.elements().collect();
    assert_eq!(items.len(), 1, "a push carries exactly one item");
    items[0].clone()
}

#[test]
fn im_roster_01_empty_roster_and_version() {
    let s = Server::shared();
    let (u, p) = s.new_user("empty");
    let mut c = Client::login(s, &u, &p, None);
    let r = roster_get(&mut c, None);
    assert_eq!(r.attr("type"), Some("result"));
    let q = r.child("query", ROSTER).expect("query");
    assert!(q.elements().next().is_none());
}

#[test]
fn im_roster_03_set_pushes_to_interested_resources_then_11_persists() {
    let s = Server::shared();
    let (u, p) = s.new_user("setter");
    let mut a = Client::login(s, &u, &p, Some("a"));
    let mut b = Client::login(s, &u, &p, Some("b"));
    let mut uninterested = Client::login(s, &u, &p, Some("c"));
    roster_get(&mut a, None);
    roster_get(&mut b, None);
    let (res, push) = roster_set(
        &mut a,
        "<item jid='Romeo@Example.NET' name='Romeo &amp; co'><group>Friends</group><group>Verona</group></item>",
    );
    assert_eq!(res.attr("type"), Some("result"), "{res:?}");
    let item = pushed_item(&push.expect("push to the sender"));
    assert_eq!(item.attr("jid"), Some("romeo@example.net"));
    assert_eq!(item.attr("name"), Some("Romeo & co"));
    assert_eq!(item.attr("subscription"), Some("none"));
    let groups: Vec<String> = item.elements().map(|g| g.text()).collect();
    assert_eq!(groups, vec!["Friends", "Verona"]);
    // The other interested resource gets the push too.
    let pb = b.recv_el();
    assert_eq!(pushed_item(&pb).attr("jid"), Some("romeo@example.net"));
    // IM-ROSTER-02: a resource that never asked for the roster gets no pushes.
    uninterested.expect_silence(Duration::from_millis(300));
    // IM-ROSTER-11: the next session sees it.
    let mut later = Client::login(s, &u, &p, Some("later"));
    let all = items(&roster_get(&mut later, None));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].attr("name"), Some("Romeo & co"));
}

#[test]
fn im_roster_05_06_12_bad_roster_sets() {
    let s = Server::shared();
    let (u, p) = s.new_user("badset");
    let mut c = Client::login(s, &u, &p, None);
    let cases = [
        ("<item jid='a@b'/><item jid='c@d'/>", "bad-request"),
        ("", "bad-request"),
        (
            "<item jid='a@b'><group>g</group><group>g</group></item>",
            "bad-request",
        ),
        ("<item jid='a@b'><group/></item>", "not-acceptable"),
        ("<item jid='a@b@c'/>", "jid-malformed"),
        ("<item/>", "bad-request"),
        ("<item jid='a@b' subscription='bogus'/>", "bad-request"),
        (
            &format!("<item jid='a@b' name='{}'/>", "n".repeat(2000)),
            "not-acceptable",
        ),
    ];
    for (item, cond) in cases {
        c.send(&format!(
            "<iq type='set' id='bad'><query xmlns='{ROSTER}'>{item}</query></iq>"
        ));
        let e = c.recv_el();
        assert_eq!(
            stanza_error(&e).map(|x| x.0).as_deref(),
            Some(cond),
            "{item}: {e:?}"
        );
    }
    // Nothing was stored.
    assert!(items(&roster_get(&mut c, None)).is_empty());
}

#[test]
fn im_roster_07_client_cannot_set_subscription_state() {
    let s = Server::shared();
    let (u, p) = s.new_user("sneaky");
    let mut c = Client::login(s, &u, &p, None);
    roster_get(&mut c, None);
    let (res, push) = roster_set(
        &mut c,
        "<item jid='x@example.org' subscription='both' ask='subscribe' approved='true'/>",
    );
    assert_eq!(res.attr("type"), Some("result"));
    let item = pushed_item(&push.unwrap());
    assert_eq!(item.attr("subscription"), Some("none"));
    assert_eq!(item.attr("ask"), None);
    assert_eq!(item.attr("approved"), None);
}

#[test]
fn im_roster_08_others_roster_is_forbidden() {
    let s = Server::shared();
    let (u, p) = s.new_user("nosy");
    let (v, _) = s.new_user("victim");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!(
        "<iq type='get' id='o' to='{v}@localhost'><query xmlns='{ROSTER}'/></iq>"
    ));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "forbidden");
    c.send(&format!(
        "<iq type='set' id='o2' to='{v}@localhost'><query xmlns='{ROSTER}'><item jid='z@z'/></query></iq>"
    ));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "forbidden");
}

#[test]
fn im_roster_09_remove_and_missing_item() {
    let s = Server::shared();
    let (u, p) = s.new_user("remover");
    let mut c = Client::login(s, &u, &p, None);
    roster_get(&mut c, None);
    roster_set(&mut c, "<item jid='gone@example.org'/>");
    let (res, push) = roster_set(
        &mut c,
        "<item jid='gone@example.org' subscription='remove'/>",
    );
    assert_eq!(res.attr("type"), Some("result"));
    let item = pushed_item(&push.unwrap());
    assert_eq!(item.attr("subscription"), Some("remove"));
    assert!(items(&roster_get(&mut c, None)).is_empty());
    let (res, _) = roster_set(
        &mut c,
        "<item jid='gone@example.org' subscription='remove'/>",
    );
    assert_eq!(stanza_error(&res).unwrap().0, "item-not-found");
}

#[test]
fn roster_size_limit_refuses_and_stores_nothing() {
    let s = Server::start(&["--max-roster-items", "2"]);
    s.adduser("full", "fullpw");
    let mut c = Client::login(&s, "full", "fullpw", None);
    roster_get(&mut c, None);
    roster_set(&mut c, "<item jid='a@x'/>");
    roster_set(&mut c, "<item jid='b@x'/>");
    let (res, push) = roster_set(&mut c, "<item jid='c@x'/>");
    assert_eq!(stanza_error(&res).unwrap().0, "not-allowed");
    assert!(push.is_none());
    // Updating an existing item is still fine.
    let (res, _) = roster_set(&mut c, "<item jid='a@x' name='A'/>");
    assert_eq!(res.attr("type"), Some("result"));
    assert_eq!(items(&roster_get(&mut c, None)).len(), 2);
}

#[test]
fn im_rver_01_to_05_versioning() {
    let s = Server::shared();
    let (u, p) = s.new_user("ver");
    let mut c = Client::plain(s);
    c.negotiate();
    c.starttls();
    assert_eq!(c.auth_scram("SCRAM-SHA-256", &u, &p).name, "success");
    let (_, features) = c.negotiate();
    // IM-RVER-01, IM-SUB-15
    assert!(features
        .child("ver", "urn:xmpp:features:rosterver")
        .is_some());
    assert!(features
        .child("sub", "urn:xmpp:features:pre-approval")
        .is_some());
    c.bind(None);
    // IM-RVER-02
    let r = roster_get(&mut c, Some(""));
    let v0 = r
        .child("query", ROSTER)
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_string();
    // IM-RVER-05: pushes carry the new version.
    let (_, push) = roster_set(&mut c, "<item jid='v@example.org'/>");
    let push = push.unwrap();
    let v1 = push
        .child("query", ROSTER)
        .unwrap()
        .attr("ver")
        .unwrap()
        .to_string();
    assert_ne!(v0, v1);
    // IM-RVER-03: current version → empty result.
    let r = roster_get(&mut c, Some(&v1));
    assert_eq!(r.attr("type"), Some("result"));
    assert!(r.child("query", ROSTER).is_none());
    // IM-RVER-04: stale version → the full roster with the current version.
    let r = roster_get(&mut c, Some(&v0));
    let q = r.child("query", ROSTER).unwrap();
    assert_eq!(q.attr("ver"), Some(v1.as_str()));
    assert_eq!(q.elements().count(), 1);
    let r = roster_get(&mut c, Some("garbage"));
    assert_eq!(r.child("query", ROSTER).unwrap().elements().count(), 1);
}
