//! XEP-0160 offline messages with XEP-0203 delay stamps (IM-MSG-07, -11, -12, -13).

mod common;

use common::*;
use std::time::Duration;

fn sync(c: &mut Client) {
    c.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    loop {
        if c.recv_el().attr("id") == Some("sync") {
            return;
        }
    }
}

#[test]
fn im_msg_07_12_stored_and_delivered_in_order_with_delay() {
    let s = Server::shared();
    let (u1, p1) = s.new_user_on_shard("osend", 0, 2);
    let (u2, p2) = s.new_user_on_shard("orecv", 1, 2);
    let mut a = Client::online(s, &u1, &p1, Some("a"));
    for i in 0..3 {
        a.send(&format!(
            "<message to='{u2}@localhost' type='chat' id='off{i}'><body>message {i}</body><x xmlns='urn:example:keep'/></message>"
        ));
    }
    a.send(&format!(
        "<message to='{u2}@localhost' type='headline'><body>not kept</body></message>"
    ));
    a.send(&format!("<message to='{u2}@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    sync(&mut a);
    // Nothing bounced back to the sender.
    a.expect_silence(Duration::from_millis(200));
    // A negative-priority resource does not get them (edge case 32).
    let mut neg = Client::login(s, &u2, &p2, Some("neg"));
    neg.send("<presence><priority>-5</priority></presence>");
    assert_eq!(neg.recv_el().name, "presence");
    neg.expect_silence(Duration::from_millis(300));
    let mut b = Client::login(s, &u2, &p2, Some("b"));
    b.send("<presence/>");
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = b.recv_el();
        if e.name == "message" {
            got.push(e);
        }
    }
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.attr("id"), Some(format!("off{i}").as_str()));
        assert_eq!(m.attr("from"), Some(format!("{u1}@localhost/a").as_str()));
        assert!(m.child("x", "urn:example:keep").is_some(), "payload kept");
        let delay = m.child("delay", "urn:xmpp:delay").expect("delay stamp");
        assert_eq!(delay.attr("from"), Some("localhost"));
        let stamp = delay.attr("stamp").unwrap();
        assert!(stamp.len() == 24 && stamp.ends_with('Z'), "{stamp}");
    }
    // IM-MSG-11: the headline and the chat state were not stored.
    b.expect_silence(Duration::from_millis(300));
    // Delivered means deleted.
    b.close();
    neg.close();
    let mut again = Client::online(s, &u2, &p2, Some("c"));
    again.expect_silence(Duration::from_millis(300));
}

#[test]
fn im_msg_13_quota_full_bounces_resource_constraint() {
    let s = Server::start(&["--max-offline-messages", "2", "--shards", "1"]);
    s.adduser("qs", "qspw1");
    s.adduser("qr", "qrpw1");
    let mut a = Client::online(&s, "qs", "qspw1", None);
    for i in 0..3 {
        a.send(&format!(
            "<message to='qr@localhost' type='normal' id='q{i}'><body>{i}</body></message>"
        ));
    }
    let e = a.recv_el();
    assert_eq!(e.attr("id"), Some("q2"));
    let (cond, ty, _) = stanza_error(&e).unwrap();
    assert_eq!(
        (cond.as_str(), ty.as_str()),
        ("resource-constraint", "wait")
    );
}

#[test]
fn core_stanza_19_missing_account_is_never_stored() {
    let s = Server::shared();
    let (u, p) = s.new_user("ghostwriter");
    let mut a = Client::online(s, &u, &p, None);
    a.send("<message to='never-existed@localhost' type='chat' id='g'><body>x</body></message>");
    assert_eq!(stanza_error(&a.recv_el()).unwrap().0, "service-unavailable");
}

#[test]
fn disco_advertises_msgoffline() {
    let s = Server::shared();
    let (u, p) = s.new_user("mo");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let r = c.recv_el();
    let q = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q.elements().any(|f| f.attr("var") == Some("msgoffline")));
}
