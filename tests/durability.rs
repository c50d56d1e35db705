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
