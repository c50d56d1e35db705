//! RFC 6120 §7 resource binding and RFC 3921 §3 session establishment, on the wire.

mod common;

use common::*;

const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

fn authenticated(s: &Server, user: &str, pw: &str) -> (Client, xmppd::xml::Element) {
    let mut c = Client::plain(s);
    c.negotiate();
    c.starttls();
    assert_eq!(c.auth_scram("SCRAM-SHA-256", user, pw).name, "success");
    let (_, f) = c.negotiate();
    (c, f)
}

#[test]
fn core_bind_01_sess_01_features_after_auth() {
    let s = Server::shared();
    let (u, p) = s.new_user("feat");
    let (_, f) = authenticated(s, &u, &p);
    assert!(f.child("bind", BIND).is_some());
    let sess = f
        .child("session", "urn:ietf:params:xml:ns:xmpp-session")
        .expect("session feature");
    assert!(sess
        .child("optional", "urn:ietf:params:xml:ns:xmpp-session")
        .is_some());
}

#[test]
fn core_bind_02_03_server_generated_resources_are_unique() {
    let s = Server::shared();
    let (u, p) = s.new_user("gen");
    let (mut a, _) = authenticated(s, &u, &p);
    let (mut b, _) = authenticated(s, &u, &p);
    let ja = a.bind(None);
    let jb = b.bind(None);
    assert!(ja.starts_with(&format!("{u}@localhost/")));
    assert_ne!(ja, jb);
    assert!(
        ja.len() > u.len() + 11 + 8,
        "resource long enough to be unpredictable: {ja}"
    );
}

#[test]
fn core_bind_04_requested_resource() {
    let s = Server::shared();
    let (u, p) = s.new_user("req");
    let (mut c, _) = authenticated(s, &u, &p);
    assert_eq!(c.bind(Some("laptop")), format!("{u}@localhost/laptop"));
}

#[test]
fn core_bind_05_invalid_resource_is_bad_request() {
    let s = Server::shared();
    let (u, p) = s.new_user("badres");
    let (mut c, _) = authenticated(s, &u, &p);
    let long = "r".repeat(1100);
    c.send(&format!(
        "<iq type='set' id='b'><bind xmlns='{BIND}'><resource>{long}</resource></bind></iq>"
    ));
    let e = c.recv_el();
    let (cond, ty, code) = stanza_error(&e).expect("error");
    assert_eq!((cond.as_str(), ty.as_str()), ("bad-request", "modify"));
    assert_eq!(code.as_deref(), Some("400"));
    // Still allowed to bind properly afterwards.
    c.bind(Some("ok"));
}

#[test]
fn core_bind_06_newer_session_wins_with_conflict() {
    let s = Server::shared();
    let (u, p) = s.new_user("conf");
    let (mut old, _) = authenticated(s, &u, &p);
    old.bind(Some("same"));
    let (mut new, _) = authenticated(s, &u, &p);
    assert_eq!(new.bind(Some("same")), format!("{u}@localhost/same"));
    old.expect_stream_error("conflict");
    // The new session works.
    new.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_eq!(new.recv_el().attr("type"), Some("result"));
}

#[test]
fn core_bind_06_refuse_policy() {
    let s = Server::start(&["--resource-conflict", "refuse"]);
    s.adduser("r1", "pw1pw1");
    let (mut old, _) = authenticated(&s, "r1", "pw1pw1");
    old.bind(Some("same"));
    let (mut new, _) = authenticated(&s, "r1", "pw1pw1");
    new.send(&format!(
        "<iq type='set' id='b'><bind xmlns='{BIND}'><resource>same</resource></bind></iq>"
    ));
    let e = new.recv_el();
    assert_eq!(stanza_error(&e).unwrap().0, "conflict");
}

#[test]
fn core_bind_07_resource_limit() {
    let s = Server::start(&["--max-resources", "1"]);
    s.adduser("lim", "limlimlim");
    let (mut a, _) = authenticated(&s, "lim", "limlimlim");
    a.bind(Some("one"));
    let (mut b, _) = authenticated(&s, "lim", "limlimlim");
    b.send(&format!(
        "<iq type='set' id='b'><bind xmlns='{BIND}'><resource>two</resource></bind></iq>"
    ));
    let (cond, ty, _) = stanza_error(&b.recv_el()).unwrap();
    assert_eq!(
        (cond.as_str(), ty.as_str()),
        ("resource-constraint", "wait")
    );
}

#[test]
fn core_bind_08_bind_before_sasl_is_not_authorized() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.starttls();
    c.send(&format!(
        "<iq type='set' id='b'><bind xmlns='{BIND}'/></iq>"
    ));
    c.expect_stream_error("not-authorized");
}

#[test]
fn core_bind_09_routed_stanzas_carry_the_bound_jid() {
    let s = Server::shared();
    let (u1, p1) = s.new_user("from");
    let (u2, p2) = s.new_user("to");
    let mut a = Client::online(s, &u1, &p1, Some("a"));
    let mut b = Client::online(s, &u2, &p2, Some("b"));
    a.send(&format!(
        "<message to='{u2}@localhost/b' type='chat'><body>x</body></message>"
    ));
    let m = b.recv_el();
    assert_eq!(m.attr("from"), Some(format!("{u1}@localhost/a").as_str()));
}

#[test]
fn core_bind_10_second_bind_is_refused() {
    let s = Server::shared();
    let (u, p) = s.new_user("second");
    let (mut c, _) = authenticated(s, &u, &p);
    c.bind(Some("one"));
    c.send(&format!(
        "<iq type='set' id='b2'><bind xmlns='{BIND}'><resource>two</resource></bind></iq>"
    ));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "not-allowed");
}

#[test]
fn core_stream_15_stanza_before_bind_is_not_authorized() {
    let s = Server::shared();
    let (u, p) = s.new_user("nobind");
    let (mut c, _) = authenticated(s, &u, &p);
    c.send("<message to='x@localhost'><body>hi</body></message>");
    c.expect_stream_error("not-authorized");
}

#[test]
fn core_sess_02_03_session_iq_answered_and_optional() {
    let s = Server::shared();
    let (u, p) = s.new_user("sess");
    let (mut c, _) = authenticated(s, &u, &p);
    c.bind(None);
    c.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.attr("id"), Some("s1"));
    // CORE-SESS-03: a resource that never sends it works too (covered by every other test).
}

#[test]
fn core_bind_pipelined_restart_and_bind_after_auth() {
    // A client that pipelines the restart header and the bind right after <success/>: the
    // bytes travel with the connection to its home shard.
    let s = Server::shared();
    for i in 0..6 {
        let (u, p) = s.new_user("pipe");
        let mut c = Client::plain(s);
        c.negotiate();
        c.starttls();
        let payload = b64(format!("\0{u}\0{p}").as_bytes());
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>\
             <stream:stream to='localhost' xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\
             <iq type='set' id='pb'><bind xmlns='{BIND}'><resource>p{i}</resource></bind></iq>"
        ));
        assert_eq!(c.recv_el().name, "success");
        let _ = c.recv_header();
        assert_eq!(c.recv_el().name, "features");
        let r = c.recv_el();
        assert_eq!(r.attr("id"), Some("pb"), "{r:?}");
        assert_eq!(r.attr("type"), Some("result"));
    }
}
