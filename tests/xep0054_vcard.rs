//! XEP-0054 vcard-temp on the wire (VCARD-01..09).

mod common;

use common::*;

const VCARD: &str = "vcard-temp";

#[test]
fn vcard_02_03_05_07_set_get_own_and_others() {
    let s = Server::shared();
    let (u, p) = s.new_user("card");
    let (o, op) = s.new_user("reader");
    let mut c = Client::login(s, &u, &p, None);
    // VCARD-02: none yet.
    c.send(&format!(
        "<iq type='get' id='g0'><vCard xmlns='{VCARD}'/></iq>"
    ));
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
    let card = "<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N><X-CUSTOM xmlns='urn:example:x'>kept &amp; sound</X-CUSTOM><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard>";
    c.send(&format!("<iq type='set' id='s1'>{card}</iq>"));
    let r = c.recv_el();
    assert_eq!((r.attr("id"), r.attr("type")), (Some("s1"), Some("result")));
    // VCARD-03/07: the same content comes back, unknown elements included, names verbatim.
    c.send(&format!(
        "<iq type='get' id='g1'><vCard xmlns='{VCARD}'/></iq>"
    ));
    let r = c.recv_el();
    let v = r.child("vCard", VCARD).expect("vCard");
    assert_eq!(v.child("FN", VCARD).unwrap().text(), "Juliet Capulet");
    assert_eq!(
        v.child("X-CUSTOM", "urn:example:x").unwrap().text(),
        "kept & sound"
    );
    assert_eq!(
        v.child("PHOTO", VCARD)
            .unwrap()
            .child("BINVAL", VCARD)
            .unwrap()
            .text(),
        "iVBORw0KGgo="
    );
    // A replacement is whole, not merged.
    c.send("<iq type='set' id='s2'><vCard xmlns='vcard-temp'><NICKNAME>J</NICKNAME></vCard></iq>");
    assert_eq!(c.recv_el().attr("type"), Some("result"));
    // VCARD-05: another user reads it from storage (the owner's resources see nothing).
    let mut other = Client::login(s, &o, &op, None);
    other.send(&format!(
        "<iq type='get' id='g2' to='{u}@localhost'><vCard xmlns='{VCARD}'/></iq>"
    ));
    let r = other.recv_el();
    assert_eq!(r.attr("from"), Some(format!("{u}@localhost").as_str()));
    let v = r.child("vCard", VCARD).unwrap();
    assert_eq!(v.child("NICKNAME", VCARD).unwrap().text(), "J");
    assert!(v.child("FN", VCARD).is_none());
    c.expect_silence(std::time::Duration::from_millis(200));
}

#[test]
fn vcard_04_cannot_set_anothers() {
    let s = Server::shared();
    let (u, p) = s.new_user("vandal");
    let (v, vp) = s.new_user("target");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!(
        "<iq type='set' id='x' to='{v}@localhost'><vCard xmlns='{VCARD}'><FN>pwned</FN></vCard></iq>"
    ));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "forbidden");
    let mut t = Client::login(s, &v, &vp, None);
    t.send(&format!(
        "<iq type='get' id='g'><vCard xmlns='{VCARD}'/></iq>"
    ));
    let r = t.recv_el();
    assert!(r.child("vCard", VCARD).unwrap().elements().next().is_none());
}

#[test]
fn vcard_06_missing_vcard_and_missing_account_look_the_same() {
    let s = Server::shared();
    let (u, p) = s.new_user("asker");
    let (n, _) = s.new_user("nocard");
    let mut c = Client::login(s, &u, &p, None);
    let mut answers = Vec::new();
    for to in [
        format!("{n}@localhost"),
        "no-such-account@localhost".to_string(),
    ] {
        c.send(&format!(
            "<iq type='get' id='v' to='{to}'><vCard xmlns='{VCARD}'/></iq>"
        ));
        let (e, raw) = c.recv_raw();
        assert_eq!(stanza_error(&e).unwrap().0, "service-unavailable");
        answers.push(raw.replace(&to, "X"));
    }
    assert_eq!(
        answers[0], answers[1],
        "responses must not reveal which account exists"
    );
}

#[test]
fn vcard_size_limit_stores_nothing() {
    let s = Server::start(&["--max-vcard-size", "2000"]);
    s.adduser("big", "bigpw1");
    let mut c = Client::login(&s, "big", "bigpw1", None);
    let photo = "A".repeat(3000);
    c.send(&format!("<iq type='set' id='b'><vCard xmlns='{VCARD}'><PHOTO><BINVAL>{photo}</BINVAL></PHOTO></vCard></iq>"));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "not-acceptable");
    c.send(&format!(
        "<iq type='get' id='g'><vCard xmlns='{VCARD}'/></iq>"
    ));
    let r = c.recv_el();
    assert!(r.child("vCard", VCARD).unwrap().elements().next().is_none());
}

#[test]
fn vcard_01_09_disco_and_server_vcard() {
    let s = Server::shared();
    let (u, p) = s.new_user("vd");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let r = c.recv_el();
    let q = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q.elements().any(|f| f.attr("var") == Some(VCARD)));
    c.send(&format!(
        "<iq type='get' id='sv' to='localhost'><vCard xmlns='{VCARD}'/></iq>"
    ));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "service-unavailable");
}
