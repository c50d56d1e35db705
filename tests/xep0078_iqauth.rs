//! XEP-0078 Non-SASL Authentication (`jabber:iq:auth`) end to end: the stream feature, the
//! get, logins that bind without `<bind/>` (on the accepting shard or after the hand-off to
//! the home shard), every error path, the `--iq-auth` modes and pre-1.0 streams.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use xmppd::xml::Element;

const IQ_AUTH: &str = "jabber:iq:auth";
const FEATURE: &str = "http://jabber.org/features/iq-auth";
const SHARDS: usize = 2;

/// The header of a pre-1.0 stream (no `version`).
const PRE_1_0_HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' \
     xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn login_set(id: &str, user: &str, password: &str, resource: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><query xmlns='{IQ_AUTH}'><username>{user}</username>\
         <password>{password}</password><resource>{resource}</resource></query></iq>"
    )
}

fn set_with(id: &str, fields: &str) -> String {
    format!("<iq type='set' id='{id}'><query xmlns='{IQ_AUTH}'>{fields}</query></iq>")
}

fn get(id: &str, user: &str) -> String {
    format!(
        "<iq type='get' id='{id}'><query xmlns='{IQ_AUTH}'><username>{user}</username></query></iq>"
    )
}

/// The error condition, type and code of an IQ error with this id.
fn error_of(e: &Element, id: &str) -> (String, String, Option<String>) {
    assert_eq!(e.name, "iq", "{e:?}");
    assert_eq!(e.attr("id"), Some(id), "{e:?}");
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    stanza_error(e).expect("error condition")
}

fn assert_result(e: &Element, id: &str) {
    assert_eq!(e.name, "iq", "{e:?}");
    assert_eq!(e.attr("id"), Some(id), "{e:?}");
    assert_eq!(e.attr("type"), Some("result"), "{e:?}");
    // §3.1: the login's result is empty.
    assert_eq!(e.elements().count(), 0, "{e:?}");
}

/// A STARTTLS stream ready to log in, and its features after TLS.
fn secured(s: &Server) -> (Client, Element) {
    let mut c = Client::plain(s);
    c.negotiate();
    let (_, features) = c.starttls();
    (c, features)
}

/// Log in with `jabber:iq:auth` over STARTTLS.
fn iq_login(s: &Server, user: &str, password: &str, resource: &str) -> Client {
    let (mut c, _) = secured(s);
    c.send(&login_set("l1", user, password, resource));
    assert_result(&c.recv_el(), "l1");
    c.jid = Some(format!("{user}@{DOMAIN}/{resource}"));
    c
}

/// `from` sends `to` a chat message, which arrives stamped with `from`'s full JID.
fn message_round_trip(from: &mut Client, to: &mut Client, body: &str) {
    from.send(&format!(
        "<message to='{}' type='chat'><body>{body}</body></message>",
        to.full()
    ));
    let (m, _) = to.recv_until("the message", |e| e.name == "message");
    assert_eq!(m.attr("from"), Some(from.full().as_str()), "{m:?}");
    assert_eq!(
        m.child("body", "jabber:client").map(|b| b.text()),
        Some(body.into())
    );
}

fn has_feature(features: &Element) -> bool {
    features.child("auth", FEATURE).is_some()
}

#[test]
fn iqauth_01_feature_listed_over_tls_and_not_on_plaintext_by_default() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    let (_, before_tls) = c.negotiate();
    assert!(!has_feature(&before_tls), "{before_tls:?}");
    let (_, after_tls) = c.starttls();
    assert!(has_feature(&after_tls), "{after_tls:?}");
    let mut d = Client::direct_tls(s, None).expect("direct TLS");
    let (_, direct) = d.negotiate();
    assert!(has_feature(&direct), "{direct:?}");
    // Never after SASL.
    let (u, p) = s.new_user("feat");
    let r = c.auth_scram("SCRAM-SHA-256", &u, &p);
    assert_eq!(r.name, "success");
    let (_, after_sasl) = c.negotiate();
    assert!(!has_feature(&after_sasl), "{after_sasl:?}");
}

#[test]
fn iqauth_02_get_returns_username_password_resource_and_no_digest() {
    let s = Server::shared();
    let (u, _) = s.new_user("get");
    let (mut c, _) = secured(s);
    c.send(&get("a1", &u));
    let (r, raw) = c.recv_raw();
    assert_eq!(r.attr("type"), Some("result"), "{raw}");
    assert_eq!(r.attr("id"), Some("a1"));
    let q = r.child("query", IQ_AUTH).expect("query");
    let fields: Vec<&str> = q.elements().map(|e| e.name.as_str()).collect();
    assert_eq!(fields, ["username", "password", "resource"], "{raw}");
    assert!(!raw.contains("digest"), "{raw}");
}

#[test]
fn iqauth_03_get_for_unknown_user_is_the_same_answer() {
    let s = Server::shared();
    let (u, _) = s.new_user("known");
    let (mut c, _) = secured(s);
    c.send(&get("a1", &u));
    let (_, known) = c.recv_raw();
    c.send(&get("a1", "nobody-here"));
    let (_, unknown) = c.recv_raw();
    assert_eq!(known, unknown);
}

#[test]
fn iqauth_04_set_binds_the_resource_without_bind() {
    let s = Server::shared();
    let (u, p) = s.new_user("legacy");
    let (v, q) = s.new_user("modern");
    let mut a = iq_login(s, &u, &p, "globe");
    // The session is bound: a second bind is refused as on any bound stream (CORE-BIND-10),
    // and no restart or features come.
    a.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    assert_eq!(error_of(&a.recv_el(), "b2").0, "not-allowed");
    let mut b = Client::login(s, &v, &q, Some("desk"));
    message_round_trip(&mut a, &mut b, "from the legacy client");
    message_round_trip(&mut b, &mut a, "and back");
    // Presence and the roster work as for any session.
    a.send("<presence/>");
    let (echo, _) = a.recv_until("the presence echo", |e| e.name == "presence");
    assert_eq!(echo.attr("from"), Some(a.full().as_str()));
}

#[test]
fn iqauth_04_login_on_another_shard_is_handed_off_with_pipelined_stanzas() {
    let s = Server::shared();
    // Each account's connections land on either shard: of these logins, about half are
    // handed off to the home shard (with the bytes pipelined behind the set), the others
    // bind where they were accepted.
    let mut users = Vec::new();
    for home in 0..SHARDS {
        users.push(s.new_user_on_shard("homed", home, SHARDS));
    }
    let (w, wp) = s.new_user("witness");
    let mut witness = Client::login(s, &w, &wp, Some("w"));
    for round in 0..8 {
        for (u, p) in &users {
            let (mut c, _) = secured(s);
            let res = format!("r{round}");
            c.send(&format!(
                "{}<message to='{w}@{DOMAIN}/w' type='chat' id='m{round}'><body>{u} {round}</body></message>",
                login_set("l1", u, p, &res)
            ));
            assert_result(&c.recv_el(), "l1");
            c.jid = Some(format!("{u}@{DOMAIN}/{res}"));
            let (m, _) = witness.recv_until("the pipelined message", |e| e.name == "message");
            assert_eq!(m.attr("from"), Some(c.full().as_str()), "{m:?}");
            message_round_trip(&mut witness, &mut c, "reply");
        }
    }
    // Some of them moved (the chance that none of 16 did is 2^-16).
    let moved = |u: &str| {
        s.log()
            .lines()
            .any(|l| l.contains("XEP-0078 login moved here") && l.contains(&format!("{u}@")))
    };
    assert!(users.iter().any(|(u, _)| moved(u)), "no hand-off happened");
}

#[test]
fn iqauth_06_wrong_password_is_not_authorized_401() {
    let s = Server::shared();
    let (u, _) = s.new_user("wrongpw");
    let (mut c, _) = secured(s);
    c.send(&login_set("a2", &u, "not-the-password", "globe"));
    let (cond, ty, code) = error_of(&c.recv_el(), "a2");
    assert_eq!(
        (cond.as_str(), ty.as_str(), code.as_deref()),
        ("not-authorized", "auth", Some("401"))
    );
    // The stream stays usable.
    c.send(&get("a3", &u));
    assert_eq!(c.recv_el().attr("type"), Some("result"));
}

#[test]
fn iqauth_06_unknown_user_gets_the_same_error() {
    let s = Server::shared();
    let (u, _) = s.new_user("exists");
    let (mut c, _) = secured(s);
    c.send(&login_set("a2", &u, "wrong", "globe"));
    let (_, known) = c.recv_raw();
    let (mut d, _) = secured(s);
    d.send(&login_set("a2", "no-such-user", "wrong", "globe"));
    let (_, unknown) = d.recv_raw();
    assert_eq!(known, unknown);
    assert!(known.contains("code='401'"), "{known}");
}

#[test]
fn iqauth_06_disabled_account_is_not_authorized() {
    let s = Server::shared();
    let (u, p) = s.new_user("off");
    let out = s.admin(&["disable", &format!("{u}@{DOMAIN}")], "");
    assert!(out.status.success(), "{out:?}");
    let (mut c, _) = secured(s);
    c.send(&login_set("a2", &u, &p, "globe"));
    let (cond, _, code) = error_of(&c.recv_el(), "a2");
    assert_eq!(
        (cond.as_str(), code.as_deref()),
        ("not-authorized", Some("401"))
    );
}

#[test]
fn iqauth_06_missing_resource_is_not_acceptable_406() {
    let s = Server::shared();
    let (u, p) = s.new_user("nores");
    let (mut c, _) = secured(s);
    c.send(&set_with(
        "a2",
        &format!("<username>{u}</username><password>{p}</password>"),
    ));
    let (cond, ty, code) = error_of(&c.recv_el(), "a2");
    assert_eq!(
        (cond.as_str(), ty.as_str(), code.as_deref()),
        ("not-acceptable", "modify", Some("406"))
    );
}

#[test]
fn iqauth_06_missing_username_is_not_acceptable_406() {
    let s = Server::shared();
    let (_, p) = s.new_user("nouser");
    let (mut c, _) = secured(s);
    c.send(&set_with(
        "a2",
        &format!("<password>{p}</password><resource>globe</resource>"),
    ));
    let (cond, ty, code) = error_of(&c.recv_el(), "a2");
    assert_eq!(
        (cond.as_str(), ty.as_str(), code.as_deref()),
        ("not-acceptable", "modify", Some("406"))
    );
}

#[test]
fn iqauth_06_invalid_resource_is_not_acceptable_406() {
    let s = Server::shared();
    let (u, p) = s.new_user("badres");
    let (mut c, _) = secured(s);
    c.send(&login_set("a2", &u, &p, &"r".repeat(1024)));
    let (cond, _, code) = error_of(&c.recv_el(), "a2");
    assert_eq!(
        (cond.as_str(), code.as_deref()),
        ("not-acceptable", Some("406"))
    );
}

/// IQAUTH-05 cannot be met: a digest is SHA1(stream id + password), and accounts keep only
/// SCRAM keys. The digest is not offered, and a set that carries only one lacks the password.
#[test]
fn iqauth_05_digest_only_is_not_acceptable_406() {
    let s = Server::shared();
    let (u, p) = s.new_user("digest");
    let (mut c, _) = secured(s);
    let digest = {
        use sha1::Digest;
        let sid = c.stream_id.clone().expect("stream id");
        let h = sha1::Sha1::digest(format!("{sid}{p}").as_bytes());
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    c.send(&set_with(
        "a2",
        &format!("<username>{u}</username><digest>{digest}</digest><resource>globe</resource>"),
    ));
    let (e, raw) = c.recv_raw();
    let (cond, _, code) = error_of(&e, "a2");
    assert_eq!(
        (cond.as_str(), code.as_deref()),
        ("not-acceptable", Some("406"))
    );
    assert!(
        raw.contains("digest authentication is not supported"),
        "{raw}"
    );
}

/// The default `--resource-conflict kick-old` is the XEP's recommendation: the existing
/// session ends with a `conflict` stream error and the new login succeeds.
#[test]
fn iqauth_07_conflict_kick_old_replaces_the_existing_session() {
    let s = Server::shared();
    let (u, p) = s.new_user("kick");
    let mut old = Client::login(s, &u, &p, Some("globe"));
    let _new = iq_login(s, &u, &p, "globe");
    old.expect_stream_error("conflict");
    let mut older = iq_login(s, &u, &p, "desk");
    let _newer = iq_login(s, &u, &p, "desk");
    older.expect_stream_error("conflict");
}

#[test]
fn iqauth_07_conflict_refuse_is_409_and_the_stream_may_try_again() {
    let s = Server::start(&["--shards", "2", "--resource-conflict", "refuse"]);
    let (u, p) = s.new_user("refuse");
    let mut old = iq_login(&s, &u, &p, "globe");
    let (mut c, _) = secured(&s);
    c.send(&login_set("a2", &u, &p, "globe"));
    let (cond, ty, code) = error_of(&c.recv_el(), "a2");
    assert_eq!(
        (cond.as_str(), ty.as_str(), code.as_deref()),
        ("conflict", "cancel", Some("409"))
    );
    // Still unauthenticated: only a login may follow, and one with a free resource works.
    c.send(&login_set("a3", &u, &p, "other"));
    assert_result(&c.recv_el(), "a3");
    c.jid = Some(format!("{u}@{DOMAIN}/other"));
    message_round_trip(&mut c, &mut old, "both sessions live");
}

/// `rename` would give the login a resource its result cannot tell it: refused like `refuse`.
#[test]
fn iqauth_07_conflict_rename_policy_is_409_for_iq_auth() {
    let s = Server::start(&["--shards", "2", "--resource-conflict", "rename"]);
    let (u, p) = s.new_user("rename");
    let _old = iq_login(&s, &u, &p, "globe");
    let (mut c, _) = secured(&s);
    c.send(&login_set("a2", &u, &p, "globe"));
    let (cond, _, code) = error_of(&c.recv_el(), "a2");
    assert_eq!((cond.as_str(), code.as_deref()), ("conflict", Some("409")));
}

#[test]
fn iqauth_08_after_failed_sasl_is_policy_violation() {
    let s = Server::shared();
    let (u, p) = s.new_user("sasl");
    let (mut c, _) = secured(s);
    let r = c.auth_plain(&u, "wrong");
    assert_eq!(r.name, "failure");
    c.send(&login_set("a2", &u, &p, "globe"));
    c.expect_stream_error("policy-violation");
    // The get too (§3.1).
    let (mut c, _) = secured(s);
    assert_eq!(c.auth_scram("SCRAM-SHA-256", &u, "wrong").name, "failure");
    c.send(&get("a1", &u));
    c.expect_stream_error("policy-violation");
}

#[test]
fn iqauth_09_off_is_service_unavailable() {
    let s = Server::start(&["--iq-auth", "off"]);
    let (u, p) = s.new_user("off");
    let (mut c, features) = secured(&s);
    assert!(!has_feature(&features), "{features:?}");
    c.send(&login_set("a2", &u, &p, "globe"));
    let (cond, _, code) = error_of(&c.recv_el(), "a2");
    assert_eq!(
        (cond.as_str(), code.as_deref()),
        ("service-unavailable", Some("503"))
    );
    // SASL still works on the same stream.
    assert_eq!(c.auth_scram("SCRAM-SHA-256", &u, &p).name, "success");
    // A pre-1.0 stream: no way to log in.
    let mut d = Client::direct_tls(&s, None).expect("direct TLS");
    d.send(PRE_1_0_HEADER);
    assert_eq!(d.recv_header().version, None);
    d.send(&get("a1", &u));
    assert_eq!(error_of(&d.recv_el(), "a1").0, "service-unavailable");
}

/// No error echoes the request (the credentials in particular).
#[test]
fn iqauth_10_errors_do_not_echo_credentials() {
    let s = Server::shared();
    let (u, p) = s.new_user("echo");
    let requests = [
        login_set("a2", &u, "Pa55-not-it", "globe"),
        set_with(
            "a2",
            &format!("<username>{u}</username><password>{p}</password>"),
        ),
        set_with(
            "a2",
            &format!("<username>{u}</username><digest>0123abc</digest><resource>globe</resource>"),
        ),
    ];
    for request in requests {
        let (mut c, _) = secured(s);
        c.send(&request);
        let (e, raw) = c.recv_raw();
        assert_eq!(e.attr("type"), Some("error"), "{raw}");
        for secret in [
            u.as_str(),
            p.as_str(),
            "Pa55-not-it",
            "0123abc",
            "globe",
            "query",
        ] {
            assert!(!raw.contains(secret), "{secret} echoed in {raw}");
        }
    }
}

#[test]
fn iqauth_11_plaintext_stream_refused_by_default() {
    let s = Server::shared();
    let (u, p) = s.new_user("clear");
    let mut c = Client::plain(s);
    let (_, features) = c.negotiate();
    assert!(!has_feature(&features));
    c.send(&get("a1", &u));
    let (cond, _, code) = error_of(&c.recv_el(), "a1");
    assert_eq!(
        (cond.as_str(), code.as_deref()),
        ("not-acceptable", Some("406"))
    );
    c.send(&login_set("a2", &u, &p, "globe"));
    let (e, raw) = c.recv_raw();
    assert_eq!(error_of(&e, "a2").0, "not-acceptable");
    assert!(raw.contains("encryption is required"), "{raw}");
    // A pre-1.0 stream on the plain port cannot negotiate TLS: refused too.
    let mut d = Client::plain(s);
    d.send(PRE_1_0_HEADER);
    d.recv_header();
    d.send(&login_set("a2", &u, &p, "globe"));
    assert_eq!(error_of(&d.recv_el(), "a2").0, "not-acceptable");
}

#[test]
fn iqauth_11_on_allows_plaintext_streams_with_a_warning() {
    let s = Server::start(&["--iq-auth", "on"]);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !s.log().contains("--iq-auth on") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (u, p) = s.new_user("lan");
    let mut c = Client::plain(&s);
    let (_, features) = c.negotiate();
    assert!(has_feature(&features), "{features:?}");
    c.send(&login_set("a2", &u, &p, "globe"));
    assert_result(&c.recv_el(), "a2");
    c.sync();
}

/// RFC 3920-era clients send no `version`: no features, no SASL, XEP-0078 only. Over direct
/// TLS (a pre-1.0 stream has no STARTTLS) they log in.
#[test]
fn iqauth_pre_1_0_stream_over_direct_tls_logs_in() {
    let s = Server::shared();
    let (u, p) = s.new_user("old");
    let (v, q) = s.new_user("new");
    let mut b = Client::login(s, &v, &q, Some("desk"));
    for home in 0..SHARDS {
        let (u, p) = s.new_user_on_shard("oldhome", home, SHARDS);
        let mut c = Client::direct_tls(s, None).expect("direct TLS");
        c.send(PRE_1_0_HEADER);
        assert_eq!(c.recv_header().version, None);
        c.send(&login_set("a2", &u, &p, "globe"));
        assert_result(&c.recv_el(), "a2");
        c.jid = Some(format!("{u}@{DOMAIN}/globe"));
        message_round_trip(&mut c, &mut b, "pre-1.0");
    }
    let mut c = Client::direct_tls(s, None).expect("direct TLS");
    c.send(PRE_1_0_HEADER);
    c.recv_header();
    c.expect_silence(Duration::from_millis(200));
    c.send(&get("a1", &u));
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    c.send(&login_set("a2", &u, &p, "globe"));
    assert_result(&c.recv_el(), "a2");
    c.jid = Some(format!("{u}@{DOMAIN}/globe"));
    message_round_trip(&mut b, &mut c, "to the old client");
    c.close();
}

/// After a successful login (either way), a second `jabber:iq:auth` set is refused: the
/// bound session's IQ goes to the server, which does not handle the namespace.
#[test]
fn iqauth_second_set_after_login_is_refused() {
    let s = Server::shared();
    let (u, p) = s.new_user("twice");
    let (v, q) = s.new_user("twice");
    let mut a = iq_login(s, &u, &p, "globe");
    a.send(&login_set("again", &v, &q, "other"));
    assert_eq!(error_of(&a.recv_el(), "again").0, "service-unavailable");
    let mut b = Client::login(s, &v, &q, Some("r"));
    b.send(&login_set("again", &u, &p, "other"));
    assert_eq!(error_of(&b.recv_el(), "again").0, "service-unavailable");
    // Between SASL success and bind, it is a stanza before bind.
    let (mut c, _) = secured(s);
    assert_eq!(c.auth_scram("SCRAM-SHA-256", &u, &p).name, "success");
    c.negotiate();
    c.send(&login_set("again", &u, &p, "other"));
    c.expect_stream_error("not-authorized");
    // The accounts' sessions are unaffected.
    a.sync();
    b.sync();
}

/// Failed sets count toward `--max-auth-failures` like SASL failures.
#[test]
fn iqauth_failures_count_toward_max_auth_failures() {
    let s = Server::shared();
    let (u, p) = s.new_user("many");
    let (mut c, _) = secured(s);
    c.send(&login_set("f1", &u, "wrong", "globe"));
    assert_eq!(error_of(&c.recv_el(), "f1").0, "not-authorized");
    c.send(&set_with(
        "f2",
        &format!("<username>{u}</username><password>{p}</password>"),
    ));
    assert_eq!(error_of(&c.recv_el(), "f2").0, "not-acceptable");
    c.send(&login_set("f3", "nobody", "wrong", "globe"));
    assert_eq!(error_of(&c.recv_el(), "f3").0, "not-authorized");
    c.expect_stream_error("policy-violation");
}

/// Failed sets count toward the address's backoff, and a set while it backs off checks
/// nothing (as SASL's `temporary-auth-failure`).
#[test]
fn iqauth_failures_count_toward_per_address_backoff() {
    let s = Server::start_strict(&["--auth-failures-per-ip", "2", "--max-auth-failures", "5"]);
    let (u, p) = s.new_user("backoff");
    let (mut c, _) = secured(&s);
    for id in ["f1", "f2"] {
        c.send(&login_set(id, &u, "wrong", "globe"));
        assert_eq!(error_of(&c.recv_el(), id).0, "not-authorized");
    }
    c.send(&login_set("f3", &u, &p, "globe"));
    let (cond, ty, _) = error_of(&c.recv_el(), "f3");
    assert_eq!((cond.as_str(), ty.as_str()), ("policy-violation", "wait"));
    // SASL from the same address is backing off too.
    let r = c.auth_plain(&u, &p);
    assert_eq!(
        r.elements().next().map(|e| e.name.clone()).as_deref(),
        Some("temporary-auth-failure")
    );
    // Another address is not affected.
    let mut other = Client::plain_from(&s, Ipv4Addr::new(127, 0, 0, 2)).expect("connect");
    other.negotiate();
    other.starttls();
    other.send(&login_set("ok", &u, &p, "globe"));
    assert_result(&other.recv_el(), "ok");
}

/// Before authentication elements are held to `--max-preauth-stanza-size`, XEP-0078's too.
#[test]
fn iqauth_set_larger_than_the_preauth_limit_is_policy_violation() {
    let s = Server::shared();
    let (u, _) = s.new_user("huge");
    let (mut c, _) = secured(s);
    c.send(&login_set("a2", &u, &"x".repeat(9000), "globe"));
    c.expect_stream_error("policy-violation");
}

/// A session that logged in with `jabber:iq:auth` ends when its password changes, like any
/// other (the login's revocation sequence number travels with the hand-off).
#[test]
fn iqauth_session_ends_when_the_password_changes() {
    let s = Server::start(&["--shards", "2"]);
    let mut sessions = Vec::new();
    for home in 0..SHARDS {
        let (u, p) = s.new_user_on_shard("revoked", home, SHARDS);
        sessions.push((iq_login(&s, &u, &p, "globe"), u));
    }
    for (_, u) in &sessions {
        let out = s.admin(
            &["passwd", &format!("{u}@{DOMAIN}"), "--password-stdin"],
            "changed\n",
        );
        assert!(out.status.success(), "{out:?}");
    }
    for (c, _) in &mut sessions {
        c.expect_stream_error("not-authorized");
    }
}
