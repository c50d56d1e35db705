//! RFC 6120 §8 and §10 stanza semantics and routing, and the RFC 6121 §8.5 delivery rules
//! that do not depend on rosters; users homed on different shards.

mod common;

use common::*;
use std::time::Duration;

/// Two online users homed on different shards of the shared two-shard server.
fn pair() -> (Client, Client, String, String) {
    let s = Server::shared();
    let (u1, p1) = s.new_user_on_shard("s0u", 0, 2);
    let (u2, p2) = s.new_user_on_shard("s1u", 1, 2);
    let a = Client::online(s, &u1, &p1, Some("r"));
    let b = Client::online(s, &u2, &p2, Some("r"));
    (a, b, format!("{u1}@localhost"), format!("{u2}@localhost"))
}

#[test]
fn core_stanza_01_from_is_stamped_across_shards() {
    let (mut a, mut b, ja, jb) = pair();
    a.send(&format!(
        "<message to='{jb}/r' type='chat' id='m1'><body>hello</body></message>"
    ));
    let m = b.recv_el();
    assert_eq!(m.attr("from"), Some(format!("{ja}/r").as_str()));
    assert_eq!(m.attr("id"), Some("m1"));
    b.send(&format!(
        "<message to='{ja}' type='chat'><body>back</body></message>"
    ));
    let m = a.recv_el();
    assert_eq!(m.attr("from"), Some(format!("{jb}/r").as_str()));
}

#[test]
fn core_stanza_02_spoofed_from_closes_the_stream() {
    let (mut a, mut b, _ja, jb) = pair();
    a.send(&format!(
        "<message to='{jb}/r' from='mallory@localhost/x'><body>x</body></message>"
    ));
    a.expect_stream_error("invalid-from");
    // The recipient never sees the spoofed address: only a's unavailable presence could come,
    // and that goes to a's own resources (none).
    b.expect_silence(Duration::from_millis(300));
}

#[test]
fn core_stanza_03_stream_language_is_added() {
    let s = Server::shared();
    let (u1, p1) = s.new_user("lang");
    let (u2, p2) = s.new_user("lang");
    let mut a = Client::plain(s);
    a.send("<stream:stream to='localhost' xml:lang='de' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    let _ = a.recv_header();
    let _ = a.recv_el();
    a.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(a.recv_el().name, "proceed");
    a.upgrade(None).unwrap();
    a.negotiate();
    assert_eq!(a.auth_scram("SCRAM-SHA-256", &u1, &p1).name, "success");
    a.negotiate();
    a.bind(None);
    let mut b = Client::online(s, &u2, &p2, None);
    a.send(&format!(
        "<message to='{u2}@localhost'><body>hallo</body></message>"
    ));
    let (m, raw) = b.recv_raw();
    assert_eq!(m.attr("xml:lang"), Some("de"), "{raw}");
}

#[test]
fn core_stanza_04_05_iq_id_and_payload_count() {
    let s = Server::shared();
    let (u, p) = s.new_user("iq");
    let mut c = Client::login(s, &u, &p, Some("r"));
    c.send("<iq type='get' id='zero' to='localhost'/>");
    let e = c.recv_el();
    assert_eq!(e.attr("id"), Some("zero"));
    assert_eq!(stanza_error(&e).unwrap().0, "bad-request");
    c.send("<iq type='get' id='two' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>");
    let e = c.recv_el();
    assert_eq!(e.attr("id"), Some("two"));
    assert_eq!(stanza_error(&e).unwrap().0, "bad-request");
}

#[test]
fn core_stanza_06_bad_iq_type_and_missing_id() {
    let s = Server::shared();
    let (u, p) = s.new_user("iqt");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='foo' id='f' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    let e = c.recv_el();
    assert_eq!(stanza_error(&e).unwrap().0, "bad-request");
    c.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    let e = c.recv_el();
    assert_eq!(stanza_error(&e).unwrap().0, "bad-request");
}

#[test]
fn core_stanza_07_15_unknown_namespace_to_server_is_service_unavailable() {
    let s = Server::shared();
    let (u, p) = s.new_user("unk");
    let mut c = Client::login(s, &u, &p, None);
    for to in ["to='localhost'", "", &format!("to='{u}@localhost'")] {
        c.send(&format!(
            "<iq type='get' id='u1' {to}><query xmlns='urn:example:nope'/></iq>"
        ));
        let e = c.recv_el();
        assert_eq!(e.attr("id"), Some("u1"));
        let (cond, ty, code) = stanza_error(&e).unwrap();
        assert_eq!(
            (cond.as_str(), ty.as_str()),
            ("service-unavailable", "cancel")
        );
        // LEGACYERR-01
        assert_eq!(code.as_deref(), Some("503"));
    }
}

#[test]
fn core_stanza_08_09_no_error_in_reply_to_result_or_error() {
    let s = Server::shared();
    let (u, p) = s.new_user("loop");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='result' id='r1' to='localhost'/>");
    c.send("<iq type='error' id='r2' to='localhost'><error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
    c.send("<message type='error' to='nobody@localhost'><error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>");
    c.send("<iq type='result' id='r3' to='nobody@localhost/x'/>");
    c.expect_silence(Duration::from_millis(400));
}

#[test]
fn core_stanza_10_extensions_pass_unchanged() {
    let (mut a, mut b, _ja, jb) = pair();
    let ext = "<x xmlns='urn:example:ext' a='1'><y>t&amp;t</y><![CDATA[<raw>]]></x>";
    a.send(&format!(
        "<message to='{jb}/r' type='chat'><body>b</body>{ext}</message>"
    ));
    let (m, raw) = b.recv_raw();
    assert!(raw.contains(ext), "{raw}");
    assert!(m.child("x", "urn:example:ext").is_some());
}

#[test]
fn core_stanza_11_malformed_to_is_jid_malformed() {
    let s = Server::shared();
    let (u, p) = s.new_user("mal");
    let mut c = Client::login(s, &u, &p, None);
    for bad in [
        "a@b@c",
        "@localhost",
        "x@",
        &format!("{}@localhost", "l".repeat(1100)),
    ] {
        c.send(&format!(
            "<message to='{bad}' id='j'><body>x</body></message>"
        ));
        let e = c.recv_el();
        let (cond, ty, _) = stanza_error(&e).unwrap();
        assert_eq!(
            (cond.as_str(), ty.as_str()),
            ("jid-malformed", "modify"),
            "{bad}"
        );
    }
}

#[test]
fn core_stanza_12_remote_domain_unreachable() {
    let s = Server::shared();
    let (u, p) = s.new_user("remote");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<message to='user@unresolvable.invalid' id='rm'><body>x</body></message>");
    let e = c.recv_el();
    assert_eq!(e.attr("from"), Some("user@unresolvable.invalid"));
    assert_eq!(stanza_error(&e).unwrap().0, "remote-server-not-found");
}

#[test]
fn core_stanza_13_order_is_preserved_across_shards() {
    let (mut a, mut b, _ja, jb) = pair();
    // Over 1 MB in one write: far more than one TLS record or one read.
    let pad = "p".repeat(6000);
    let mut batch = String::new();
    for i in 0..200 {
        batch.push_str(&format!(
            "<message to='{jb}/r' type='chat' id='o{i}'><body>{i}{pad}</body></message>"
        ));
    }
    a.send(&batch);
    for i in 0..200 {
        let (m, raw) = b.recv_raw();
        assert_eq!(
            m.attr("id"),
            Some(format!("o{i}").as_str()),
            "{}",
            &raw[..raw.len().min(300)]
        );
    }
}

#[test]
fn core_stanza_14_message_without_to_goes_to_own_bare_jid() {
    let s = Server::shared();
    let (u, p) = s.new_user("self");
    let mut a = Client::online(s, &u, &p, Some("one"));
    a.send("<message type='chat' id='me'><body>note to self</body></message>");
    let m = a.recv_el();
    assert_eq!(m.attr("id"), Some("me"));
    assert_eq!(m.attr("to"), Some(format!("{u}@localhost").as_str()));
}

#[test]
fn core_stanza_18_iq_to_offline_full_jid_or_missing_account() {
    let (mut a, _b, _ja, jb) = pair();
    a.send(&format!(
        "<iq type='get' id='off' to='{jb}/nosuchresource'><query xmlns='jabber:iq:version'/></iq>"
    ));
    let e = a.recv_el();
    assert_eq!(e.attr("id"), Some("off"));
    assert_eq!(stanza_error(&e).unwrap().0, "service-unavailable");
    a.send("<iq type='get' id='na' to='nobody-here@localhost'><query xmlns='urn:example:x'/></iq>");
    let e = a.recv_el();
    assert_eq!(stanza_error(&e).unwrap().0, "service-unavailable");
}

#[test]
fn core_stanza_18_iq_to_online_full_jid_is_routed_and_answered() {
    let (mut a, mut b, ja, jb) = pair();
    a.send(&format!(
        "<iq type='get' id='v1' to='{jb}/r'><query xmlns='jabber:iq:version'/></iq>"
    ));
    let q = b.recv_el();
    assert_eq!(q.attr("from"), Some(format!("{ja}/r").as_str()));
    b.send(&format!("<iq type='result' id='v1' to='{ja}/r'><query xmlns='jabber:iq:version'><name>b</name></query></iq>"));
    let r = a.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.attr("id"), Some("v1"));
}

#[test]
fn core_stanza_19_message_to_missing_account() {
    let (mut a, _b, _ja, _jb) = pair();
    a.send("<message to='ghost@localhost' type='chat' id='g'><body>x</body></message>");
    let e = a.recv_el();
    assert_eq!(e.attr("id"), Some("g"));
    assert_eq!(stanza_error(&e).unwrap().0, "service-unavailable");
}

#[test]
fn core_stanza_20_case_insensitive_localpart_and_domain() {
    let (mut a, mut b, _ja, jb) = pair();
    let upper = jb.to_uppercase();
    a.send(&format!(
        "<message to='{upper}/r' type='chat' id='c'><body>x</body></message>"
    ));
    assert_eq!(b.recv_el().attr("id"), Some("c"));
    // Resources compare case-sensitively: /R is not /r.
    a.send(&format!(
        "<iq type='get' id='cs' to='{jb}/R'><query xmlns='jabber:iq:version'/></iq>"
    ));
    assert_eq!(stanza_error(&a.recv_el()).unwrap().0, "service-unavailable");
}

#[test]
fn im_msg_01_02_bare_jid_goes_to_highest_priority_never_negative() {
    let s = Server::shared();
    let (u, p) = s.new_user("prio");
    let (us, ps) = s.new_user("sender");
    let mut hi = Client::login(s, &u, &p, Some("hi"));
    hi.send("<presence><priority>5</priority></presence>");
    let _ = hi.recv_el();
    let mut neg = Client::login(s, &u, &p, Some("neg"));
    neg.send("<presence><priority>-1</priority></presence>");
    // neg sees its own echo and hi's presence; hi sees neg's presence.
    for _ in 0..2 {
        let _ = neg.recv_el();
    }
    let _ = hi.recv_el();
    let mut sender = Client::online(s, &us, &ps, None);
    sender.send(&format!(
        "<message to='{u}@localhost' type='chat' id='b'><body>x</body></message>"
    ));
    assert_eq!(hi.recv_el().attr("id"), Some("b"));
    neg.expect_silence(Duration::from_millis(300));
    // IM-MSG-01: a full-JID message reaches the negative-priority resource.
    sender.send(&format!(
        "<message to='{u}@localhost/neg' type='chat' id='f'><body>x</body></message>"
    ));
    assert_eq!(neg.recv_el().attr("id"), Some("f"));
}

#[test]
fn im_msg_04_05_06_headline_groupchat_error_to_bare_jid() {
    let (mut a, mut b, _ja, jb) = pair();
    a.send(&format!(
        "<message to='{jb}' type='headline' id='h'><body>x</body></message>"
    ));
    assert_eq!(b.recv_el().attr("id"), Some("h"));
    a.send(&format!(
        "<message to='{jb}' type='groupchat' id='gc'><body>x</body></message>"
    ));
    let e = a.recv_el();
    assert_eq!(e.attr("id"), Some("gc"));
    assert_eq!(stanza_error(&e).unwrap().0, "service-unavailable");
    a.send(&format!("<message to='{jb}' type='error' id='er'><error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"));
    b.expect_silence(Duration::from_millis(300));
    a.expect_silence(Duration::from_millis(10));
}

#[test]
fn im_msg_08_chat_to_offline_resource_goes_to_bare_jid() {
    let (mut a, mut b, _ja, jb) = pair();
    a.send(&format!(
        "<message to='{jb}/gone' type='chat' id='rb'><body>x</body></message>"
    ));
    assert_eq!(b.recv_el().attr("id"), Some("rb"));
}

#[test]
fn im_pres_03_04_09_own_resources_see_each_other() {
    let s = Server::shared();
    let (u, p) = s.new_user("res");
    let mut one = Client::online(s, &u, &p, Some("one"));
    let mut two = Client::login(s, &u, &p, Some("two"));
    two.send("<presence><status>here</status></presence>");
    // two gets its own echo and one's presence, in either order.
    let mut froms = vec![
        two.recv_el().attr("from").unwrap().to_string(),
        two.recv_el().attr("from").unwrap().to_string(),
    ];
    froms.sort();
    assert_eq!(
        froms,
        vec![format!("{u}@localhost/one"), format!("{u}@localhost/two")]
    );
    let pres = one.recv_el();
    assert_eq!(
        pres.attr("from"),
        Some(format!("{u}@localhost/two").as_str())
    );
    // IM-PRES-10: losing the connection makes the server send unavailable.
    two.drop_tcp();
    let gone = one.recv_el();
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert_eq!(
        gone.attr("from"),
        Some(format!("{u}@localhost/two").as_str())
    );
}

#[test]
fn im_pres_12_bad_priority_is_bad_request() {
    let s = Server::shared();
    let (u, p) = s.new_user("bp");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<presence><priority>300</priority></presence>");
    let e = c.recv_el();
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(stanza_error(&e).unwrap().0, "bad-request");
    c.send("<presence type='bogus'/>");
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "bad-request");
}

#[test]
fn slow_reader_is_disconnected_not_buffered_forever() {
    let s = Server::start(&[
        "--max-send-queue",
        "65536",
        "--shards",
        "1",
        "--slow-client-grace",
        "1",
    ]);
    s.adduser("flood", "floodpw");
    s.adduser("sink", "sinkpw");
    let mut sink = Client::login_on(Client::plain_small_rcvbuf(&s), "sink", "sinkpw", Some("r"));
    sink.send("<presence/>");
    let _ = sink.recv_el();
    let mut src = Client::online(&s, "flood", "floodpw", Some("r"));
    // The sink stops reading; the flood must not grow the server's memory without bound.
    let body = "z".repeat(4000);
    let mut sent = 0;
    for i in 0..100_000 {
        src.send_bytes(format!("<message to='sink@localhost/r' type='chat' id='f{i}'><body>{body}</body></message>").as_bytes());
        sent += 1;
        if s.log().contains("send queue overflow") {
            break;
        }
    }
    assert!(sent > 10);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !s.log().contains("send queue overflow") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.log().contains("send queue overflow"), "{}", s.log());
    drop(sink.try_recv(Duration::from_millis(10)));
}

/// Issue 8 (aioxmpp's e2e suite waited forever): a reply on behalf of an account comes from
/// the addressed bare JID (RFC 6120 §8.1.2.1, §10.3.3), including `service-unavailable` for
/// an unhandled request with no `to` or to one's own bare JID; for one's own account, no
/// `from` is allowed too. Requests to the domain are answered by the domain. The addressee is
/// on the same shard and on the other one.
#[test]
fn reply_on_behalf_of_account_comes_from_bare_jid() {
    let (mut a, _b, a_bare, b_bare) = pair();
    let cases = [
        (String::new(), Some(a_bare.as_str())),
        (format!("to='{a_bare}'"), Some(a_bare.as_str())),
        (format!("to='{b_bare}'"), Some(b_bare.as_str())),
        ("to='localhost'".to_string(), Some("localhost")),
    ];
    for (i, (to, want_from)) in cases.iter().enumerate() {
        for payload in [
            "<query xmlns='urn:example:nope'/>",
            // XEP-0012 last activity, which no module handles (this was XEP-0049 private
            // storage until it was built; its own replies are checked below).
            "<query xmlns='jabber:iq:last'/>",
        ] {
            let id = format!("ob{i}");
            a.send(&format!("<iq type='get' id='{id}' {to}>{payload}</iq>"));
            let e = a.recv_el();
            assert_eq!(e.attr("id"), Some(id.as_str()), "{e:?}");
            assert_eq!(e.attr("type"), Some("error"), "{e:?}");
            let from = e.attr("from");
            let ok = from == *want_from || (to.is_empty() && from.is_none());
            assert!(
                ok,
                "reply to {to:?} came from {from:?}, want {want_from:?}: {e:?}"
            );
        }
    }
    // A handled request on behalf of an account: XEP-0049 answers one's own from the bare JID
    // (result) and someone else's too (forbidden), also across shards.
    let payload = "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>";
    for (to, want_from, want_type) in [
        (format!("to='{a_bare}'"), a_bare.as_str(), "result"),
        (format!("to='{b_bare}'"), b_bare.as_str(), "error"),
    ] {
        a.send(&format!("<iq type='get' id='priv' {to}>{payload}</iq>"));
        let e = a.recv_el();
        assert_eq!(e.attr("type"), Some(want_type), "{e:?}");
        assert_eq!(e.attr("from"), Some(want_from), "{e:?}");
    }
}
