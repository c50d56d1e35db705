//! Nothing acknowledged is lost: roster changes, a stored offline message and a vCard that the
//! server confirmed survive `kill -9` and a restart.

mod common;

use common::*;

#[test]
fn acknowledged_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Server::start_on(dir.path(), &["--shards", "1"]);
        s.adduser("alice", "alicepw");
        s.adduser("bob", "bobpw1");
        let mut a = Client::online(&s, "alice", "alicepw", None);
        a.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
        a.recv_el();
        for i in 0..5 {
            a.send(&format!(
                "<iq type='set' id='set{i}'><query xmlns='jabber:iq:roster'><item jid='friend{i}@example.org' name='F{i}'><group>G</group></item></query></iq>"
            ));
        }
        a.send("<iq type='set' id='vc'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>");
        // A subscription request for bob (offline) is stored too.
        a.send("<presence to='bob@localhost' type='subscribe'/>");
        // An offline message for bob; the ping answered after it proves it was stored: the
        // connection does not read past a stanza whose storage is not yet durable.
        a.send("<message to='bob@localhost' type='chat' id='keep'><body>survive</body></message>");
        a.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        let mut acked = 0;
        loop {
            let e = a.recv_el();
            match e.attr("id") {
                Some(id) if id.starts_with("set") || id == "vc" => {
                    assert_eq!(e.attr("type"), Some("result"), "{e:?}");
                    acked += 1;
                }
                Some("sync") => break,
                _ => {}
            }
        }
        assert_eq!(acked, 6);
        // No clean shutdown: SIGKILL right after the acknowledgements.
        let status = s.signal_and_wait(libc::SIGKILL).expect("killed");
        assert!(!status.success());
    }
    let s = Server::start_on(dir.path(), &["--shards", "1"]);
    let mut a = Client::login(&s, "alice", "alicepw", None);
    a.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
    let r = a.recv_el();
    let items: Vec<_> = r
        .child("query", "jabber:iq:roster")
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect();
    for i in 0..5 {
        assert!(
            items.contains(&format!("friend{i}@example.org")),
            "{items:?}"
        );
    }
    assert!(
        items.contains(&"bob@localhost".to_string()),
        "pending subscription item"
    );
    a.send("<iq type='get' id='v'><vCard xmlns='vcard-temp'/></iq>");
    let v = a.recv_el();
    assert_eq!(
        v.child("vCard", "vcard-temp")
            .unwrap()
            .child("FN", "vcard-temp")
            .unwrap()
            .text(),
        "Alice"
    );
    let mut b = Client::online(&s, "bob", "bobpw1", None);
    let mut got_message = false;
    let mut got_request = false;
    while !(got_message && got_request) {
        let e = b.recv_el();
        if e.name == "message" && e.attr("id") == Some("keep") {
            got_message = true;
        }
        if e.name == "presence" && e.attr("type") == Some("subscribe") {
            got_request = true;
        }
    }
}

/// PRIV-22, BLOCK-10: a privacy list and a blocklist the server confirmed survive `kill -9`.
#[test]
fn acknowledged_privacy_lists_and_blocklist_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Server::start_on(dir.path(), &["--shards", "1"]);
        s.adduser("alice", "alicepw");
        s.adduser("mallory", "mallorypw");
        let mut a = Client::login(&s, "alice", "alicepw", None);
        a.send(
            "<iq type='set' id='l'><query xmlns='jabber:iq:privacy'><list name='quiet'>\
             <item type='jid' value='noisy@example.org' action='deny' order='1'><message/></item>\
             <item action='allow' order='2'/></list></query></iq>",
        );
        a.send(
            "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>\
             <item jid='mallory@localhost'/></block></iq>",
        );
        for id in ["l", "b"] {
            let (r, _) = a.recv_until("privacy result", |e| {
                e.name == "iq" && e.attr("id") == Some(id)
            });
            assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        }
        let status = s.signal_and_wait(libc::SIGKILL).expect("killed");
        assert!(!status.success());
    }
    let s = Server::start_on(dir.path(), &["--shards", "1"]);
    let mut a = Client::online(&s, "alice", "alicepw", Some("back"));
    a.send("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
    let (r, _) = a.recv_until("blocklist", |e| e.attr("id") == Some("bl"));
    let blocked: Vec<_> = r
        .child("blocklist", "urn:xmpp:blocking")
        .expect("blocklist")
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect();
    assert_eq!(blocked, ["mallory@localhost"]);
    a.send(
        "<iq type='get' id='q'><query xmlns='jabber:iq:privacy'><list name='quiet'/></query></iq>",
    );
    let (r, _) = a.recv_until("the quiet list", |e| e.attr("id") == Some("q"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let items = r
        .child("query", "jabber:iq:privacy")
        .and_then(|q| q.child("list", "jabber:iq:privacy"))
        .expect("list")
        .elements()
        .count();
    assert_eq!(items, 2, "{r:?}");
    // And the blocklist is in force: mallory's message is refused.
    let mut m = Client::online(&s, "mallory", "mallorypw", None);
    m.send("<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>");
    let (e, _) = m.recv_until("the refusal", |e| e.attr("id") == Some("m1"));
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    assert!(
        e.child("error", "jabber:client")
            .and_then(|x| x.child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"))
            .is_some(),
        "{e:?}"
    );
}
