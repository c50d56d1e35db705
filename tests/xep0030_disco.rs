//! XEP-0030 Service Discovery on the wire.

mod common;

use common::*;

const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";

#[test]
fn disco_01_02_server_info_lists_identity_and_features() {
    let s = Server::shared();
    let (u, p) = s.new_user("disco");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!(
        "<iq type='get' id='d1' to='localhost'><query xmlns='{INFO}'/></iq>"
    ));
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.attr("from"), Some("localhost"));
    let q = r.child("query", INFO).unwrap();
    let ids: Vec<_> = q.elements().filter(|e| e.name == "identity").collect();
    assert!(ids
        .iter()
        .any(|i| i.attr("category") == Some("server") && i.attr("type") == Some("im")));
    let features: Vec<&str> = q
        .elements()
        .filter(|e| e.name == "feature")
        .map(|f| {
            // DISCO-02: only a var attribute, no children.
            assert!(f.elements().next().is_none());
            f.attr("var").unwrap()
        })
        .collect();
    for f in [INFO, ITEMS, "urn:xmpp:ping", "jabber:iq:version"] {
        assert!(features.contains(&f), "{f} missing: {features:?}");
    }
    let mut dedup = features.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), features.len());
}

#[test]
fn disco_03_server_items_empty_not_error() {
    let s = Server::shared();
    let (u, p) = s.new_user("items");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!(
        "<iq type='get' id='d2' to='localhost'><query xmlns='{ITEMS}'/></iq>"
    ));
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
    assert!(r.child("query", ITEMS).is_some());
}

#[test]
fn disco_04_unknown_node_is_item_not_found() {
    let s = Server::shared();
    let (u, p) = s.new_user("node");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!(
        "<iq type='get' id='d3' to='localhost'><query xmlns='{INFO}' node='nope'/></iq>"
    ));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "item-not-found");
}

#[test]
fn disco_05_06_account_info_owner_only_and_no_harvesting() {
    let s = Server::shared();
    let (u, p) = s.new_user("acct");
    let (o, op) = s.new_user("other");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!(
        "<iq type='get' id='d4' to='{u}@localhost'><query xmlns='{INFO}'/></iq>"
    ));
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let q = r.child("query", INFO).unwrap();
    assert!(q
        .elements()
        .any(|i| i.attr("category") == Some("account") && i.attr("type") == Some("registered")));
    // Another user's account and a missing account give the same answer.
    let mut other = Client::login(s, &o, &op, None);
    for target in [
        format!("{u}@localhost"),
        "missing-account@localhost".to_string(),
    ] {
        other.send(&format!(
            "<iq type='get' id='d5' to='{target}'><query xmlns='{INFO}'/></iq>"
        ));
        assert_eq!(
            stanza_error(&other.recv_el()).unwrap().0,
            "service-unavailable"
        );
    }
}

#[test]
fn disco_07_items_of_missing_account_are_empty() {
    let s = Server::shared();
    let (u, p) = s.new_user("itm");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!(
        "<iq type='get' id='d6' to='missing-account@localhost'><query xmlns='{ITEMS}'/></iq>"
    ));
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
}

#[test]
fn disco_05_subscriber_may_query_account_info() {
    let s = Server::shared();
    let (u, p) = s.new_user("host");
    let (f, fp) = s.new_user("fan");
    let mut host = Client::online(s, &u, &p, None);
    let mut fan = Client::online(s, &f, &fp, None);
    // host pre-approves fan; fan subscribes: host's item for fan is `from`.
    host.send(&format!("<presence to='{f}@localhost' type='subscribed'/>"));
    host.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    while host.recv_el().attr("id") != Some("sync") {}
    fan.send(&format!("<presence to='{u}@localhost' type='subscribe'/>"));
    loop {
        let e = fan.recv_el();
        if e.name == "presence" && e.attr("type") == Some("subscribed") {
            break;
        }
    }
    fan.send(&format!(
        "<iq type='get' id='d9' to='{u}@localhost'><query xmlns='{INFO}'/></iq>"
    ));
    loop {
        let r = fan.recv_el();
        if r.attr("id") == Some("d9") {
            assert_eq!(r.attr("type"), Some("result"), "{r:?}");
            break;
        }
    }
}
