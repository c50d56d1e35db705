//! RFC 6121 §3 presence subscriptions on the wire: the handshake, resynchronisation,
//! pre-approval, cancellation, and requests stored for offline contacts. The state tables
//! themselves are unit-tested row by row in `src/modules/im/subscription.rs`.

mod common;

use common::*;
use std::time::Duration;
use xmppd::xml::Element;

const ROSTER: &str = "jabber:iq:roster";

/// Receive until an element matches, returning it and the others seen before it.
fn until(c: &mut Client, what: &str, pred: impl Fn(&Element) -> bool) -> (Element, Vec<Element>) {
    let mut skipped = Vec::new();
    for _ in 0..20 {
        let e = c.recv_el();
        if pred(&e) {
            return (e, skipped);
        }
        skipped.push(e);
    }
    panic!("never got {what}; saw {skipped:?}");
}

fn push_for<'a>(contact: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e: &Element| {
        e.name == "iq"
            && e.attr("type") == Some("set")
            && e.child("query", ROSTER)
                .and_then(|q| q.elements().next())
                .is_some_and(|i| i.attr("jid") == Some(contact))
    }
}

fn presence_of<'a>(ty: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e: &Element| e.name == "presence" && e.attr("type") == Some(ty)
}

fn item_of(push: &Element) -> Element {
    push.child("query", ROSTER)
        .unwrap()
        .elements()
        .next()
        .unwrap()
        .clone()
}

/// Two online users who requested their rosters.
fn online_pair(s: &Server) -> (Client, Client, String, String) {
    let (u1, p1) = s.new_user_on_shard("juliet", 0, 2);
    let (u2, p2) = s.new_user_on_shard("romeo", 1, 2);
    let mut a = Client::online(s, &u1, &p1, Some("balcony"));
    let mut b = Client::online(s, &u2, &p2, Some("garden"));
    for c in [&mut a, &mut b] {
        c.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
        let r = c.recv_el();
        assert_eq!(r.attr("id"), Some("r0"));
    }
    (a, b, format!("{u1}@localhost"), format!("{u2}@localhost"))
}

/// The full handshake: a subscribes to b, b approves; both directions.
#[test]
fn im_sub_01_02_06_09_11_handshake() {
    let s = Server::shared();
    let (mut a, mut b, ja, jb) = online_pair(s);
    // IM-SUB-01/02: a's request goes to b's bare JID from a's bare JID, after a push with ask.
    a.send(&format!(
        "<presence to='{jb}/ignored' type='subscribe'><status>hi</status></presence>"
    ));
    let (push, _) = until(&mut a, "push with ask", push_for(&jb));
    let item = item_of(&push);
    assert_eq!(item.attr("subscription"), Some("none"));
    assert_eq!(item.attr("ask"), Some("subscribe"));
    // IM-SUB-06: delivered to b's available resource.
    let (req, _) = until(&mut b, "subscribe", presence_of("subscribe"));
    assert_eq!(req.attr("from"), Some(ja.as_str()));
    assert_eq!(req.attr("to"), Some(jb.as_str()));
    assert!(req.child("status", "jabber:client").is_some());
    // IM-SUB-08: no item on b's side until b approves.
    b.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    let (r, _) = until(&mut b, "roster", |e| e.attr("id") == Some("r1"));
    assert_eq!(r.child("query", ROSTER).unwrap().elements().count(), 0);
    // IM-SUB-09: b approves: b's push (from), a's push (to), a gets subscribed and b's presence.
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    let (push, _) = until(&mut b, "b push", push_for(&ja));
    assert_eq!(item_of(&push).attr("subscription"), Some("from"));
    let mut seen = Vec::new();
    let mut got_push = false;
    let mut got_subscribed = false;
    let mut got_presence = false;
    while !(got_push && got_subscribed && got_presence) {
        let e = a.recv_el();
        if push_for(&jb)(&e) {
            let item = item_of(&e);
            // IM-SUB-11
            assert_eq!(item.attr("subscription"), Some("to"));
            assert_eq!(item.attr("ask"), None);
            got_push = true;
        } else if presence_of("subscribed")(&e) {
            assert_eq!(e.attr("from"), Some(jb.as_str()));
            got_subscribed = true;
        } else if e.name == "presence" && e.attr("type").is_none() {
            assert_eq!(e.attr("from"), Some(format!("{jb}/garden").as_str()));
            got_presence = true;
        }
        seen.push(e);
        assert!(seen.len() < 10, "{seen:?}");
    }
}

#[test]
fn im_pres_01_02_06_presence_flows_after_subscription_both_ways() {
    let s = Server::shared();
    let (u1, p1) = s.new_user_on_shard("pa", 0, 2);
    let (u2, p2) = s.new_user_on_shard("pb", 1, 2);
    let (ja, jb) = (format!("{u1}@localhost"), format!("{u2}@localhost"));
    {
        let (mut a, mut b) = (
            Client::online(s, &u1, &p1, Some("x")),
            Client::online(s, &u2, &p2, Some("y")),
        );
        a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
        until(&mut b, "subscribe", presence_of("subscribe"));
        b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
        b.send(&format!("<presence to='{ja}' type='subscribe'/>"));
        until(&mut a, "subscribe from b", presence_of("subscribe"));
        a.send(&format!("<presence to='{jb}' type='subscribed'/>"));
        until(&mut b, "subscribed", presence_of("subscribed"));
        a.close();
        // b sees a go offline.
        let (gone, _) = until(&mut b, "a unavailable", presence_of("unavailable"));
        assert_eq!(gone.attr("from"), Some(format!("{ja}/x").as_str()));
        b.close();
    }
    // Now both have `both`. a logs in: probes b (offline) and broadcasts to b (offline).
    let mut a = Client::online(s, &u1, &p1, Some("x"));
    // IM-PRES-07: b is offline: the probe is answered with unavailable from b's bare JID.
    let (u, _) = until(&mut a, "unavailable for probe", presence_of("unavailable"));
    assert_eq!(u.attr("from"), Some(jb.as_str()));
    // b logs in: a gets b's initial presence (IM-PRES-02) and b gets a's via probe (IM-PRES-06).
    let mut b = Client::online(s, &u2, &p2, Some("y"));
    let (p, _) = until(&mut a, "b available", |e| {
        e.name == "presence" && e.attr("type").is_none()
    });
    assert_eq!(p.attr("from"), Some(format!("{jb}/y").as_str()));
    let (p, _) = until(&mut b, "a available", |e| {
        e.name == "presence"
            && e.attr("type").is_none()
            && e.attr("from") == Some(&format!("{ja}/x"))
    });
    assert!(p.attr("from").is_some());
    // IM-PRES-08: later broadcasts reach contacts.
    a.send("<presence><show>away</show></presence>");
    let (p, _) = until(&mut b, "a away", |e| {
        e.child("show", "jabber:client").is_some()
    });
    assert_eq!(p.child("show", "jabber:client").unwrap().text(), "away");
}

#[test]
fn im_sub_04_already_approved_is_answered_for_the_user() {
    let s = Server::shared();
    let (mut a, mut b, ja, jb) = online_pair(s);
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    until(&mut b, "subscribe", presence_of("subscribe"));
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    until(&mut a, "subscribed", presence_of("subscribed"));
    until(&mut b, "b's approval push", push_for(&ja));
    // a asks again (resync, IM-SUB-03): it is routed, and b's server answers `subscribed` on
    // b's behalf without delivering the request to b. (a's server drops that answer: a has no
    // pending request, Table B row "To".)
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    b.expect_silence(Duration::from_millis(400));
}

#[test]
fn im_sub_05_15_pre_approval() {
    let s = Server::shared();
    let (mut a, mut b, ja, jb) = online_pair(s);
    // b pre-approves a: pushed with approved='true', nothing routed (IM-SUB-10).
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    let (push, _) = until(&mut b, "pre-approval push", push_for(&ja));
    assert_eq!(item_of(&push).attr("approved"), Some("true"));
    a.expect_silence(Duration::from_millis(300));
    // a subscribes: approved automatically; b's item becomes `from` without `approved`.
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    let (e, _) = until(&mut a, "auto subscribed", presence_of("subscribed"));
    assert_eq!(e.attr("from"), Some(jb.as_str()));
    let (push, _) = until(&mut b, "from push", push_for(&ja));
    let item = item_of(&push);
    assert_eq!(item.attr("subscription"), Some("from"));
    assert_eq!(item.attr("approved"), None);
}

#[test]
fn im_sub_06_07_request_for_offline_contact_is_stored_once_and_redelivered() {
    let s = Server::shared();
    let (u1, p1) = s.new_user("asker");
    let (u2, p2) = s.new_user("sleeper");
    let (ja, jb) = (format!("{u1}@localhost"), format!("{u2}@localhost"));
    let mut a = Client::online(s, &u1, &p1, None);
    a.send(&format!(
        "<presence to='{jb}' type='subscribe'><status>first</status></presence>"
    ));
    a.send(&format!(
        "<presence to='{jb}' type='subscribe'><status>second</status></presence>"
    ));
    a.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    until(&mut a, "ping", |e| e.attr("id") == Some("sync"));
    for _ in 0..2 {
        let mut b = Client::online(s, &u2, &p2, None);
        let (req, _) = until(&mut b, "stored subscribe", presence_of("subscribe"));
        assert_eq!(req.attr("from"), Some(ja.as_str()));
        // The first request is kept; the duplicate was not stored.
        assert_eq!(
            req.child("status", "jabber:client").unwrap().text(),
            "first"
        );
        b.expect_silence(Duration::from_millis(300));
        b.close();
    }
    // Answered: not delivered again.
    let mut b = Client::online(s, &u2, &p2, None);
    let _ = until(&mut b, "stored subscribe", presence_of("subscribe"));
    b.send(&format!("<presence to='{ja}' type='unsubscribed'/>"));
    b.close();
    let mut b = Client::online(s, &u2, &p2, None);
    b.expect_silence(Duration::from_millis(400));
}

#[test]
fn im_sub_12_13_14_cancel_and_unsubscribe() {
    let s = Server::shared();
    let (mut a, mut b, ja, jb) = online_pair(s);
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    until(&mut b, "subscribe", presence_of("subscribe"));
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    until(&mut a, "b's presence", |e| {
        e.name == "presence" && e.attr("type").is_none()
    });
    let (push, _) = until(&mut b, "b's approval push", push_for(&ja));
    assert_eq!(item_of(&push).attr("subscription"), Some("from"));
    // IM-SUB-14: b cancels a's subscription: a gets unsubscribed and b's unavailable.
    b.send(&format!("<presence to='{ja}' type='unsubscribed'/>"));
    let (push, _) = until(&mut b, "b push", push_for(&ja));
    assert_eq!(item_of(&push).attr("subscription"), Some("none"));
    let mut got = (false, false, false);
    while !(got.0 && got.1 && got.2) {
        let e = a.recv_el();
        if presence_of("unsubscribed")(&e) {
            got.0 = true;
        } else if presence_of("unavailable")(&e) {
            assert_eq!(e.attr("from"), Some(format!("{jb}/garden").as_str()));
            got.1 = true;
        } else if push_for(&jb)(&e) && item_of(&e).attr("subscription") == Some("none") {
            // (the earlier push to `to` may still be unread)
            got.2 = true;
        }
    }
    // IM-SUB-10: a second unsubscribed changes nothing and is not routed.
    b.send(&format!("<presence to='{ja}' type='unsubscribed'/>"));
    a.expect_silence(Duration::from_millis(300));
}

#[test]
fn im_roster_10_removing_an_item_cancels_both_directions() {
    let s = Server::shared();
    let (mut a, mut b, ja, jb) = online_pair(s);
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    until(&mut b, "subscribe", presence_of("subscribe"));
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    b.send(&format!("<presence to='{ja}' type='subscribe'/>"));
    until(&mut a, "subscribe", presence_of("subscribe"));
    a.send(&format!("<presence to='{jb}' type='subscribed'/>"));
    until(&mut b, "a's presence", |e| {
        e.name == "presence" && e.attr("type").is_none()
    });
    // Both now. a removes b.
    a.send(&format!(
        "<iq type='set' id='rm'><query xmlns='{ROSTER}'><item jid='{jb}' subscription='remove'/></query></iq>"
    ));
    until(&mut a, "remove result", |e| e.attr("id") == Some("rm"));
    // b sees a's withdrawal: unsubscribe, unsubscribed and a's unavailable presence.
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let e = b.recv_el();
        if e.name == "presence" && e.attr("from").is_some_and(|f| f.starts_with(&ja)) {
            if let Some(t @ ("unsubscribe" | "unsubscribed" | "unavailable")) = e.attr("type") {
                kinds.push(t.to_string());
            }
        }
    }
    kinds.sort();
    assert_eq!(kinds, vec!["unavailable", "unsubscribe", "unsubscribed"]);
}

#[test]
fn im_pres_05_probe_from_unauthorized_reveals_nothing() {
    let s = Server::shared();
    let (mut a, _b, _ja, jb) = online_pair(s);
    // a is not subscribed to b: a directed probe from a client is ignored (IM-PRES-16), so ask
    // as the server would: subscribe-less presence to b's bare JID reveals nothing either.
    a.send(&format!("<presence to='{jb}' type='probe'/>"));
    a.expect_silence(Duration::from_millis(300));
}

#[test]
fn im_pres_11_directed_presence_is_withdrawn_on_disconnect() {
    let s = Server::shared();
    let (mut a, mut b, ja, jb) = online_pair(s);
    a.send(&format!(
        "<presence to='{jb}/garden'><status>psst</status></presence>"
    ));
    let (p, _) = until(&mut b, "directed", |e| e.name == "presence");
    assert_eq!(p.attr("from"), Some(format!("{ja}/balcony").as_str()));
    a.drop_tcp();
    let (u, _) = until(&mut b, "withdrawal", presence_of("unavailable"));
    assert_eq!(u.attr("from"), Some(format!("{ja}/balcony").as_str()));
}

#[test]
fn subscribe_to_missing_account_is_answered_unsubscribed() {
    let s = Server::shared();
    let (u, p) = s.new_user("lonely");
    let mut c = Client::online(s, &u, &p, None);
    c.send("<presence to='nobody-at-all@localhost' type='subscribe'/>");
    let (e, _) = until(&mut c, "unsubscribed", presence_of("unsubscribed"));
    assert_eq!(e.attr("from"), Some("nobody-at-all@localhost"));
}
