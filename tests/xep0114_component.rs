//! XEP-0114 Jabber Component Protocol (`jabber:component:accept`) end to end: stream opening,
//! handshake, addressing rules and routing between external components and local users
//! (COMP-01..COMP-10), across two shards.
//!
//! Each test starts its own server (components are exclusive per domain, so tests sharing one
//! server would conflict with each other) with two components configured:
//! `irc.localhost` (secret `s3cret`) and `comp.example` (secret `0ther`).

mod common;

use common::*;
use sha2::Digest;
use std::time::{Duration, Instant};
use xmppd::xml::Element;

const COMP: &str = "irc.localhost";
const SECRET: &str = "s3cret";
const COMP2: &str = "comp.example";
const SECRET2: &str = "0ther";
const NS_ACCEPT: &str = "jabber:component:accept";
const NS_STREAM: &str = "http://etherx.jabber.org/streams";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";
const SHARDS: usize = 2;

/// How long "nothing arrives" is watched for (a negative check, not a timing assertion).
const QUIET: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Harness helpers (component side).

/// A test's server; when the test fails, its log is printed (the routing decisions behind a
/// stanza that never arrived).
struct Srv(Server);

impl std::ops::Deref for Srv {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.0.log());
        }
    }
}

fn server() -> Srv {
    Srv(Server::start(&[
        "--shards",
        "2",
        "--component",
        &format!("{COMP}={SECRET}"),
        "--component",
        &format!("{COMP2}={SECRET2}"),
        "--component-listen",
        "127.0.0.1:0",
    ]))
}

fn comp_addr(s: &Server) -> std::net::SocketAddr {
    s.component
        .expect("the ready line names the component listener (component=ADDR)")
}

/// Lowercase hex SHA-1 of `id` + `secret` (XEP-0114 §3).
fn handshake_hash(id: &str, secret: &str) -> String {
    let d = sha1::Sha1::digest(format!("{id}{secret}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stream header a component sends.
fn header(to: &str, ns: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{ns}' \
         xmlns:stream='{NS_STREAM}' to='{to}'>"
    )
}

/// Connect to the component port and send a stream header for `to` in namespace `ns`.
fn open(s: &Server, to: &str, ns: &str) -> Client {
    let mut c = Client::connect(comp_addr(s));
    c.send(&header(to, ns));
    c
}

/// Read the server's answering header; it must be a component header for `domain`.
fn recv_comp_header(c: &mut Client, domain: &str) -> String {
    let h = c.recv_header();
    assert_eq!(h.from.as_deref(), Some(domain), "header from: {h:?}");
    assert_eq!(h.default_ns.as_deref(), Some(NS_ACCEPT), "header ns: {h:?}");
    let id = h.id.clone().expect("stream id");
    assert!(!id.is_empty(), "empty stream id: {h:?}");
    id
}

/// Send the handshake for stream `id` with `secret`.
fn send_handshake(c: &mut Client, id: &str, secret: &str) {
    c.send(&format!(
        "<handshake>{}</handshake>",
        handshake_hash(id, secret)
    ));
}

/// Expect the empty `<handshake/>` of an accepted component.
fn expect_handshake_ok(c: &mut Client) {
    let (e, raw) = c.recv_raw();
    assert_eq!(
        (e.name.as_str(), e.ns.as_str()),
        ("handshake", NS_ACCEPT),
        "{raw}"
    );
    assert!(e.children.is_empty(), "handshake reply not empty: {raw}");
    assert!(e.attrs.is_empty(), "handshake reply has attributes: {raw}");
}

/// An authenticated component connection for `domain`.
fn component(s: &Server, domain: &str, secret: &str) -> Client {
    let mut c = open(s, domain, NS_ACCEPT);
    let id = recv_comp_header(&mut c, domain);
    send_handshake(&mut c, &id, secret);
    expect_handshake_ok(&mut c);
    c
}

/// An authenticated component connection for `domain`, retrying (bounded) while an earlier
/// connection for the domain may not have been released yet by the server (it closed or
/// dropped its TCP; the test cannot observe when the server noticed). Returns the connection
/// and how many `<conflict/>` refusals came before it.
fn component_eventually(s: &Server, domain: &str, secret: &str) -> (Client, usize) {
    let deadline = Instant::now() + TIMEOUT;
    let mut refusals = 0;
    loop {
        let mut c = open(s, domain, NS_ACCEPT);
        let id = recv_comp_header(&mut c, domain);
        send_handshake(&mut c, &id, secret);
        let (e, raw) = c.recv_raw();
        if e.name == "handshake" && e.ns == NS_ACCEPT {
            assert!(e.children.is_empty(), "{raw}");
            return (c, refusals);
        }
        assert_eq!(
            stream_error_condition(&e).as_deref(),
            Some("conflict"),
            "reconnecting {domain}: {raw}"
        );
        refusals += 1;
        assert!(
            Instant::now() < deadline,
            "{domain} never released after the old connection ended ({refusals} conflicts)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The condition of a stream error element, if `e` is one.
fn stream_error_condition(e: &Element) -> Option<String> {
    if e.name != "error" || e.ns != NS_STREAM {
        return None;
    }
    e.elements()
        .find(|c| c.ns == "urn:ietf:params:xml:ns:xmpp-streams" && c.name != "text")
        .map(|c| c.name.clone())
}

/// The server sends its opening header first, then the stream error `cond`, the close and
/// closes TCP (RFC 6120 §4.7.1 as XEP-0114 §3 requires for header errors).
fn expect_header_then_error(c: &mut Client, cond: &str) -> common::Event {
    let first = c.recv();
    assert!(
        matches!(first, Event::Header(_)),
        "expected an opening header before the {cond} error, got {first:?}; transcript {}",
        c.transcript
    );
    c.expect_stream_error(cond);
    first
}

/// The stanza error condition and type of `e`, in any namespace of the stanza.
fn error_of(e: &Element) -> Option<(String, String)> {
    let err = e.elements().find(|c| c.name == "error")?;
    let cond = err
        .elements()
        .find(|c| c.ns == NS_STANZAS && c.name != "text")?;
    Some((
        cond.name.clone(),
        err.attr("type").unwrap_or_default().to_string(),
    ))
}

/// Body text of a stanza (its `<body/>` in the stanza's own namespace).
fn body(e: &Element) -> Option<String> {
    e.child("body", &e.ns).map(|b| b.text())
}

/// Two users homed on different shards, logged in and available.
fn two_users(s: &Server) -> ((User, Client), (User, Client)) {
    let a = User::on_shard(s, "ca", 0, SHARDS);
    let b = User::on_shard(s, "cb", 1, SHARDS);
    let ca = a.online(s, "r");
    let cb = b.online(s, "r");
    ((a, ca), (b, cb))
}

/// disco#items of `localhost` as `c` sees it: the item JIDs.
fn server_items(c: &mut Client) -> Vec<String> {
    let id = next_id("items");
    c.send(&format!(
        "<iq type='get' id='{id}' to='{DOMAIN}'><query xmlns='{ITEMS}'/></iq>"
    ));
    let (r, _) = c.recv_until("disco#items result", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r.child("query", ITEMS)
        .expect("query")
        .elements()
        .filter(|i| i.name == "item")
        .map(|i| i.attr("jid").unwrap_or_default().to_string())
        .collect()
}

/// The stanza `name` with `id` that `sender` (a local client) sent, as component `c` gets
/// it. If it does not arrive, the failure says what the sender got instead (a bounce?).
fn relayed(c: &mut Client, sender: &mut Client, name: &str, id: &str) -> Element {
    let mut skipped = Vec::new();
    loop {
        match c.try_recv(TIMEOUT) {
            Some(Event::El(e, _)) if e.name == name && e.attr("id") == Some(id) => return e,
            Some(Event::El(e, _)) if skipped.len() < 100 => skipped.push(e),
            other => {
                let sender_got = sender.drain(QUIET);
                panic!(
                    "the component never got {name} {id} from {:?}: got {other:?} \
                     (skipped {skipped:?}); meanwhile the sender got {sender_got:?}",
                    sender.jid
                );
            }
        }
    }
}

/// The next element with `id` on `c` and its raw text as the server wrote it.
fn recv_raw_with_id(c: &mut Client, id: &str) -> (Element, String) {
    for _ in 0..100 {
        match c.try_recv(TIMEOUT) {
            Some(Event::El(e, raw)) if e.attr("id") == Some(id) => return (e, raw),
            Some(Event::El(..)) => continue,
            other => panic!("waiting for {id} on {:?}: got {other:?}", c.jid),
        }
    }
    panic!("never got {id} on {:?}", c.jid);
}

/// Next stanza on component `c` that matches `pred`.
fn comp_recv(c: &mut Client, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
    c.recv_until(what, pred).0
}

// ---------------------------------------------------------------------------------------------
// COMP-01

/// COMP-01: the server answers a component header with `from` = the component name, a fresh
/// `id`, no `version` and no stream features.
#[test]
fn comp_01_header_from_component_with_fresh_id() {
    let s = server();
    let mut c1 = open(&s, COMP, NS_ACCEPT);
    let h1 = c1.recv_header();
    assert_eq!(h1.from.as_deref(), Some(COMP), "{h1:?}");
    assert_eq!(h1.default_ns.as_deref(), Some(NS_ACCEPT), "{h1:?}");
    assert_eq!(h1.version, None, "no version on a component stream: {h1:?}");
    let id1 = h1.id.clone().expect("id");
    assert!(!id1.is_empty());
    // No <stream:features/> (nor anything else) before the handshake.
    c1.expect_silence(QUIET);

    // Another connection (same name, not yet authenticated) gets a different id.
    let mut c2 = open(&s, COMP, NS_ACCEPT);
    let id2 = recv_comp_header(&mut c2, COMP);
    assert_ne!(id1, id2, "stream ids must be fresh");
    // And the other configured component name is served too.
    let mut c3 = open(&s, COMP2, NS_ACCEPT);
    let id3 = recv_comp_header(&mut c3, COMP2);
    assert!(id3 != id1 && id3 != id2);
}

// ---------------------------------------------------------------------------------------------
// COMP-02

/// COMP-02: a component name the server does not serve gets header, `<host-unknown/>`, close.
/// The served domain itself and a subdomain of a component are not component names.
#[test]
fn comp_02_unknown_name_host_unknown() {
    let s = server();
    for name in [
        "nope.localhost",
        "sub.irc.localhost",
        DOMAIN,
        "IRC.localhost.evil",
    ] {
        let mut c = open(&s, name, NS_ACCEPT);
        expect_header_then_error(&mut c, "host-unknown");
    }
    // The refusals did not disturb a real component.
    let _c = component(&s, COMP, SECRET);
}

/// COMP-02: a second connection for a domain already connected gets header, `<conflict/>`,
/// close; the first connection stays up and keeps receiving.
#[test]
fn comp_02_second_connection_conflict_first_keeps_working() {
    let s = server();
    let a = User::on_shard(&s, "cf", 1, SHARDS);
    let mut ca = a.online(&s, "r");
    let mut first = component(&s, COMP, SECRET);

    let mut second = open(&s, COMP, NS_ACCEPT);
    let id = recv_comp_header(&mut second, COMP);
    // Whether the server refuses at the header or at the handshake, the correct handshake
    // is ignored or refused: either way the next thing is <conflict/>.
    send_handshake(&mut second, &id, SECRET);
    second.expect_stream_error("conflict");

    // The first one still gets traffic for the domain...
    ca.send(&format!(
        "<message to='{COMP}' id='still1' type='chat'><body>still there?</body></message>"
    ));
    let m = relayed(&mut first, &mut ca, "message", "still1");
    assert_eq!(m.attr("from"), Some(ca.full().as_str()));
    // ... and can still send.
    first.send(&format!(
        "<message from='{COMP}' to='{}' id='still2' type='chat'><body>yes</body></message>",
        ca.full()
    ));
    let (m, _) = ca.recv_until("reply from the first connection", |e| {
        e.name == "message" && e.attr("id") == Some("still2")
    });
    assert_eq!(m.attr("from"), Some(COMP));
}

// ---------------------------------------------------------------------------------------------
// COMP-03

/// COMP-03: a stream namespace the server does not support on the component port
/// (`jabber:component:connect`, `jabber:client`) gets header, `<invalid-namespace/>`, close.
#[test]
fn comp_03_wrong_namespace_invalid_namespace() {
    let s = server();
    for ns in ["jabber:component:connect", "jabber:client", "jabber:server"] {
        let mut c = open(&s, COMP, ns);
        expect_header_then_error(&mut c, "invalid-namespace");
    }
    // None of them took the name.
    let _c = component(&s, COMP, SECRET);
}

// ---------------------------------------------------------------------------------------------
// COMP-04

/// COMP-04: a handshake with lowercase hex SHA-1(stream id + secret) gets an empty
/// `<handshake/>`; each component has its own secret.
#[test]
fn comp_04_handshake_accepted() {
    let s = server();
    let mut c = open(&s, COMP, NS_ACCEPT);
    let id = recv_comp_header(&mut c, COMP);
    c.send(&format!(
        "<handshake>{}</handshake>",
        handshake_hash(&id, SECRET)
    ));
    expect_handshake_ok(&mut c);
    // Nothing else is sent after the handshake (no features, no stanzas).
    c.expect_silence(QUIET);

    let mut c2 = open(&s, COMP2, NS_ACCEPT);
    let id2 = recv_comp_header(&mut c2, COMP2);
    send_handshake(&mut c2, &id2, SECRET2);
    expect_handshake_ok(&mut c2);
}

// ---------------------------------------------------------------------------------------------
// COMP-05

/// COMP-05: a wrong handshake gets `<not-authorized/>`, the close, and the TCP connection
/// ends: a wrong secret, another component's secret, a hash for another stream id (replay),
/// an empty handshake.
#[test]
fn comp_05_wrong_handshake_not_authorized() {
    let s = server();
    // Wrong secret.
    let mut c = open(&s, COMP, NS_ACCEPT);
    let id = recv_comp_header(&mut c, COMP);
    send_handshake(&mut c, &id, "wrong");
    c.expect_stream_error("not-authorized");

    // Another component's secret.
    let mut c = open(&s, COMP, NS_ACCEPT);
    let id = recv_comp_header(&mut c, COMP);
    send_handshake(&mut c, &id, SECRET2);
    c.expect_stream_error("not-authorized");

    // The right secret with an earlier stream's id (a replayed handshake).
    let mut c = open(&s, COMP, NS_ACCEPT);
    let _ = recv_comp_header(&mut c, COMP);
    send_handshake(&mut c, &id, SECRET);
    c.expect_stream_error("not-authorized");

    // The secret itself, unhashed.
    let mut c = open(&s, COMP, NS_ACCEPT);
    let _ = recv_comp_header(&mut c, COMP);
    c.send(&format!("<handshake>{SECRET}</handshake>"));
    c.expect_stream_error("not-authorized");

    // Empty.
    let mut c = open(&s, COMP, NS_ACCEPT);
    let _ = recv_comp_header(&mut c, COMP);
    c.send("<handshake/>");
    c.expect_stream_error("not-authorized");

    // The failures neither took the name nor locked it.
    let _c = component(&s, COMP, SECRET);
}

// ---------------------------------------------------------------------------------------------
// COMP-06

/// COMP-06: a stanza without `to` gets `<improper-addressing/>`.
#[test]
fn comp_06_missing_to_improper_addressing() {
    let s = server();
    let mut c = component(&s, COMP, SECRET);
    c.send(&format!(
        "<message from='bot@{COMP}' type='chat'><body>nowhere</body></message>"
    ));
    c.expect_stream_error("improper-addressing");
}

/// COMP-06: a stanza without `from` gets `<improper-addressing/>` and is not routed.
#[test]
fn comp_06_missing_from_improper_addressing_not_routed() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    for (victim, kind) in [(&mut ca, "message"), (&mut cb, "iq")] {
        // The previous round's connection was closed by the server; it may take a moment
        // to release the name (bounded retry).
        let (mut c, _) = component_eventually(&s, COMP, SECRET);
        let to = victim.full();
        let stanza = if kind == "message" {
            format!("<message to='{to}' type='chat' id='nofrom'><body>anon</body></message>")
        } else {
            format!("<iq to='{to}' type='get' id='nofrom'><ping xmlns='urn:xmpp:ping'/></iq>")
        };
        c.send(&stanza);
        c.expect_stream_error("improper-addressing");
        let got = victim.collect_for(QUIET);
        assert!(
            got.iter().all(|e| e.attr("id") != Some("nofrom")),
            "a stanza without from was routed: {got:?}"
        );
    }
}

/// COMP-06: a `from` outside the component's domain gets `<invalid-from/>` and the stanza is
/// not routed: a local user's JID (spoofing), the server's domain, another component's domain,
/// and look-alike names that merely end with the component's name.
#[test]
fn comp_06_foreign_from_invalid_from_not_routed() {
    let s = server();
    let ((a, mut ca), (b, mut cb)) = two_users(&s);
    let spoofs = [
        a.full("r"),
        b.jid.clone(),
        DOMAIN.to_string(),
        format!("x@{COMP2}"),
        "x@xirc.localhost".to_string(),
        format!("x@{COMP}.evil"),
    ];
    for (i, from) in spoofs.iter().enumerate() {
        // Alternate victims on the two shards.
        let victim = if i % 2 == 0 { &mut cb } else { &mut ca };
        let to = victim.full();
        let (mut c, _) = component_eventually(&s, COMP, SECRET);
        c.send(&format!(
            "<message from='{from}' to='{to}' type='chat' id='spoof{i}'><body>spoof</body></message>"
        ));
        c.expect_stream_error("invalid-from");
        let got = victim.collect_for(QUIET);
        assert!(
            got.iter()
                .all(|e| e.attr("id") != Some(format!("spoof{i}").as_str())),
            "spoofed from {from} was routed: {got:?}"
        );
    }
}

/// COMP-06: the component's domain includes its subdomains: `x@sub.irc.localhost` is a valid
/// `from`, and the stanza is delivered with it.
#[test]
fn comp_06_subdomain_from_allowed() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let mut c = component(&s, COMP, SECRET);
    for (i, user) in [&mut ca, &mut cb].into_iter().enumerate() {
        let from = format!("x@sub.{COMP}/res");
        c.send(&format!(
            "<message from='{from}' to='{}' type='chat' id='sub{i}'><body>from sub</body></message>",
            user.full()
        ));
        let (m, _) = user.recv_until("message from a subdomain", |e| {
            e.name == "message" && e.attr("id") == Some(format!("sub{i}").as_str())
        });
        assert_eq!(m.attr("from"), Some(from.as_str()));
        assert_eq!(body(&m).as_deref(), Some("from sub"));
    }
    // The component is still connected (no stream error).
    c.expect_silence(QUIET);
}

// ---------------------------------------------------------------------------------------------
// COMP-07

/// COMP-07: the component may send from any `local@irc.localhost/res` (and the bare domain);
/// local users (on both shards) get the stanzas with that `from`, and their replies to any
/// JID at the domain reach the component with `to`/`from` intact.
#[test]
fn comp_07_any_jid_at_domain_and_replies() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let mut c = component(&s, COMP, SECRET);
    let froms = [
        format!("alice@{COMP}/irssi"),
        format!("bob@{COMP}"),
        COMP.to_string(),
        format!("#chan@{COMP}/nick"),
    ];
    for (u, user) in [&mut ca, &mut cb].into_iter().enumerate() {
        let me = user.full();
        for (i, from) in froms.iter().enumerate() {
            let id = format!("out{u}-{i}");
            c.send(&format!(
                "<message from='{from}' to='{me}' type='chat' id='{id}'><body>hi {i}</body></message>"
            ));
            let (m, _) = user.recv_until("message from the component", |e| {
                e.name == "message" && e.attr("id") == Some(id.as_str())
            });
            assert_eq!(m.attr("from"), Some(from.as_str()), "{m:?}");
            assert_eq!(m.attr("to"), Some(me.as_str()), "{m:?}");
            assert_eq!(m.ns, "jabber:client");
            assert_eq!(body(&m).as_deref(), Some(format!("hi {i}").as_str()));

            // The reply goes back to exactly that JID.
            let rid = format!("back{u}-{i}");
            user.send(&format!(
                "<message to='{from}' type='chat' id='{rid}'><body>re {i}</body></message>"
            ));
            let r = relayed(&mut c, user, "message", &rid);
            assert_eq!(r.ns, NS_ACCEPT, "{r:?}");
            assert_eq!(r.attr("to"), Some(from.as_str()), "{r:?}");
            assert_eq!(r.attr("from"), Some(me.as_str()), "{r:?}");
            assert_eq!(body(&r).as_deref(), Some(format!("re {i}").as_str()));
        }
    }
}

/// COMP-07: replies to a JID at a subdomain of the component's domain reach the component.
#[test]
fn comp_07_reply_to_subdomain_reaches_component() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let mut c = component(&s, COMP, SECRET);
    for (u, user) in [&mut ca, &mut cb].into_iter().enumerate() {
        let to = format!("x@sub.{COMP}/res");
        let id = format!("tosub{u}");
        user.send(&format!(
            "<message to='{to}' type='chat' id='{id}'><body>to sub</body></message>"
        ));
        let r = relayed(&mut c, user, "message", &id);
        assert_eq!(r.attr("to"), Some(to.as_str()));
        assert_eq!(r.attr("from"), Some(user.full().as_str()));
    }
}

/// COMP-07: errors the server generates for a component's stanzas go back to the component's
/// JID: a message and an IQ to a local account that does not exist get `service-unavailable`
/// (RFC 6121 §8.5.1 / RFC 6120 §8.3.3) on the component stream, addressed to the sender.
#[test]
fn comp_07_server_errors_return_to_component() {
    let s = server();
    let mut c = component(&s, COMP, SECRET);
    let from = format!("alice@{COMP}/irssi");
    c.send(&format!(
        "<iq from='{from}' to='nosuchuser@{DOMAIN}' type='get' id='ghost1'>\
         <query xmlns='jabber:iq:version'/></iq>"
    ));
    let r = comp_recv(&mut c, "IQ error", |e| {
        e.name == "iq" && e.attr("id") == Some("ghost1")
    });
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    assert_eq!(r.attr("to"), Some(from.as_str()), "{r:?}");
    assert_eq!(
        r.attr("from"),
        Some(format!("nosuchuser@{DOMAIN}").as_str())
    );
    assert_eq!(
        error_of(&r),
        Some(("service-unavailable".into(), "cancel".into())),
        "{r:?}"
    );
    c.send(&format!(
        "<message from='{from}' to='nosuchuser@{DOMAIN}' type='chat' id='ghost2'><body>x</body></message>"
    ));
    let r = comp_recv(&mut c, "message error", |e| {
        e.name == "message" && e.attr("id") == Some("ghost2")
    });
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    assert_eq!(r.attr("to"), Some(from.as_str()), "{r:?}");
    assert_eq!(
        error_of(&r).map(|e| e.0).as_deref(),
        Some("service-unavailable")
    );
}

/// COMP-07: the component can talk to the server itself: a ping to `localhost` from a JID at
/// the component's domain is answered on the component stream.
#[test]
fn comp_07_server_answers_component_iq() {
    let s = server();
    let mut c = component(&s, COMP, SECRET);
    let from = format!("bot@{COMP}/x");
    c.send(&format!(
        "<iq from='{from}' to='{DOMAIN}' type='get' id='cping'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let r = comp_recv(&mut c, "ping result", |e| {
        e.name == "iq" && e.attr("id") == Some("cping")
    });
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(r.attr("to"), Some(from.as_str()));
    assert_eq!(r.attr("from"), Some(DOMAIN));
}

// ---------------------------------------------------------------------------------------------
// COMP-08

/// COMP-08: a local client's message, IQ and presence to `irc.localhost` and to
/// `#chan@irc.localhost/nick` arrive on the component stream, in the component namespace,
/// with `to`, `from` (the client's full JID), `id`, `type` and payload intact; the
/// component's IQ result reaches the client. Users on both shards.
#[test]
fn comp_08_client_stanzas_reach_component_intact() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let mut c = component(&s, COMP, SECRET);
    for (u, user) in [&mut ca, &mut cb].into_iter().enumerate() {
        let me = user.full();
        for to in [COMP.to_string(), format!("#chan@{COMP}/nick")] {
            // Message.
            let id = next_id("m");
            user.send(&format!(
                "<message to='{to}' type='groupchat' id='{id}'><body>hello {u}</body>\
                 <x xmlns='urn:example:payload' a='1'><y/></x></message>"
            ));
            let m = relayed(&mut c, user, "message", &id);
            assert_eq!(m.ns, NS_ACCEPT, "{m:?}");
            assert_eq!(m.attr("to"), Some(to.as_str()), "{m:?}");
            assert_eq!(m.attr("from"), Some(me.as_str()), "{m:?}");
            assert_eq!(m.attr("type"), Some("groupchat"));
            assert_eq!(body(&m).as_deref(), Some(format!("hello {u}").as_str()));
            let x = m.child("x", "urn:example:payload").expect("payload kept");
            assert_eq!(x.attr("a"), Some("1"));
            assert!(x.child("y", "urn:example:payload").is_some());

            // IQ, answered by the component.
            let id = next_id("q");
            user.send(&format!(
                "<iq to='{to}' type='get' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            ));
            let q = relayed(&mut c, user, "iq", &id);
            assert_eq!(q.ns, NS_ACCEPT);
            assert_eq!(q.attr("to"), Some(to.as_str()), "{q:?}");
            assert_eq!(q.attr("from"), Some(me.as_str()), "{q:?}");
            assert_eq!(q.attr("type"), Some("get"));
            assert!(q
                .child("query", "http://jabber.org/protocol/disco#info")
                .is_some());
            c.send(&format!(
                "<iq from='{to}' to='{me}' type='result' id='{id}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='conference' type='irc' name='IRC'/></query></iq>"
            ));
            let (r, _) = user.recv_until("iq result from the component", |e| {
                e.name == "iq" && e.attr("id") == Some(id.as_str())
            });
            assert_eq!(r.attr("type"), Some("result"), "{r:?}");
            assert_eq!(r.attr("from"), Some(to.as_str()));
            let ident = r
                .child("query", "http://jabber.org/protocol/disco#info")
                .and_then(|q| q.child("identity", "http://jabber.org/protocol/disco#info"))
                .expect("identity");
            assert_eq!(ident.attr("type"), Some("irc"));

            // Directed presence.
            let id = next_id("p");
            user.send(&format!(
                "<presence to='{to}' id='{id}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ));
            let p = relayed(&mut c, user, "presence", &id);
            assert_eq!(p.ns, NS_ACCEPT);
            assert_eq!(p.attr("to"), Some(to.as_str()), "{p:?}");
            assert_eq!(p.attr("from"), Some(me.as_str()), "{p:?}");
            assert_eq!(p.attr("type"), None);
            assert!(p.child("x", "http://jabber.org/protocol/muc").is_some());
        }
    }
}

/// Expect `c` to get a `service-unavailable` error for stanza `id` from `to`.
fn expect_unavailable(c: &mut Client, name: &str, id: &str, to: &str) {
    let (r, _) = c.recv_until("service-unavailable", |e| {
        e.name == name && e.attr("id") == Some(id)
    });
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    assert_eq!(r.attr("from"), Some(to), "{r:?}");
    assert_eq!(
        error_of(&r).map(|e| e.0).as_deref(),
        Some("service-unavailable"),
        "{r:?}"
    );
}

/// Client stanzas to a configured component that is not connected: IQ get and chat message
/// get `service-unavailable`, presence is dropped silently.
fn check_unavailable(user: &mut Client) {
    for to in [COMP.to_string(), format!("#chan@{COMP}/nick")] {
        let id = next_id("uq");
        user.send(&format!(
            "<iq to='{to}' type='get' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ));
        expect_unavailable(user, "iq", &id, &to);
        let id = next_id("um");
        user.send(&format!(
            "<message to='{to}' type='chat' id='{id}'><body>anyone?</body></message>"
        ));
        expect_unavailable(user, "message", &id, &to);
        let id = next_id("up");
        user.send(&format!("<presence to='{to}' id='{id}'/>"));
        let before = user.sync();
        assert!(
            before.iter().all(|e| e.attr("id") != Some(id.as_str())),
            "presence to a disconnected component bounced: {before:?}"
        );
    }
    user.expect_silence(QUIET);
}

/// COMP-08: while the component is not connected (never yet, and after it left), a client's
/// IQ get and chat message to it get `service-unavailable`; presence is dropped silently.
#[test]
fn comp_08_disconnected_component_service_unavailable() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    check_unavailable(&mut ca);
    check_unavailable(&mut cb);

    // Connected: the same IQ reaches it.
    let mut c = component(&s, COMP, SECRET);
    ca.send(&format!(
        "<iq to='{COMP}' type='get' id='live'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    relayed(&mut c, &mut ca, "iq", "live");
    c.close();

    // Gone again (the server may notice the close a moment after answering it: bounded wait
    // until the first IQ bounces, then every check must hold).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let id = next_id("gone");
        cb.send(&format!(
            "<iq to='{COMP}' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let (r, _) = cb.recv_until("answer after the component left", |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str())
        });
        if r.attr("type") == Some("error") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "IQ never bounced after close: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    check_unavailable(&mut ca);
    check_unavailable(&mut cb);
}

/// COMP-08: a component is reachable as soon as its `<handshake/>` was answered: a client
/// stanza sent after that (from either shard) reaches it rather than bouncing. Repeated over
/// several connections, since a registration that lags the answer is a race.
#[test]
fn comp_08_reachable_once_handshake_answered() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    for round in 0..10 {
        let (mut c, _) = component_eventually(&s, COMP, SECRET);
        for (u, user) in [&mut ca, &mut cb].into_iter().enumerate() {
            let id = format!("at{round}-{u}");
            user.send(&format!(
                "<iq to='{COMP}' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ));
            match c.try_recv(TIMEOUT) {
                Some(Event::El(e, _)) if e.attr("id") == Some(id.as_str()) => {}
                other => {
                    let bounced = user.drain(QUIET);
                    panic!(
                        "round {round}, user {u}: the component got {other:?}; \
                         the client got {bounced:?}"
                    );
                }
            }
        }
        c.close();
    }
}

/// COMP-08 (with RFC 6120 §8.2.3 / §8.3.1): while the component is not connected, stanzas
/// that must not be answered are not: an IQ result, an IQ error and a message error to it
/// get nothing back.
#[test]
fn comp_08_disconnected_component_results_and_errors_not_answered() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    for user in [&mut ca, &mut cb] {
        let to = format!("bot@{COMP}/r");
        let (r, ie, me) = (next_id("nr"), next_id("ni"), next_id("nm"));
        user.send(&format!("<iq to='{to}' type='result' id='{r}'/>"));
        user.send(&format!(
            "<iq to='{to}' type='error' id='{ie}'><error type='cancel'>\
             <item-not-found xmlns='{NS_STANZAS}'/></error></iq>"
        ));
        user.send(&format!(
            "<message to='{to}' type='error' id='{me}'><error type='cancel'>\
             <item-not-found xmlns='{NS_STANZAS}'/></error></message>"
        ));
        let before = user.sync();
        let mut seen = before;
        seen.extend(user.collect_for(QUIET));
        for id in [&r, &ie, &me] {
            assert!(
                seen.iter().all(|e| e.attr("id") != Some(id.as_str())),
                "stanza {id} to a disconnected component was answered: {seen:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// COMP-09

/// COMP-09: disco#items of the server lists a connected component's domain, and not after
/// it disconnects.
#[test]
fn comp_09_disco_items_lists_connected_component() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let c = component(&s, COMP, SECRET);
    for user in [&mut ca, &mut cb] {
        let items = server_items(user);
        assert!(
            items.iter().any(|j| j == COMP),
            "{COMP} not listed: {items:?}"
        );
        assert!(
            !items.iter().any(|j| j == COMP2),
            "{COMP2} is not connected: {items:?}"
        );
    }
    let mut c2 = component(&s, COMP2, SECRET2);
    let items = server_items(&mut cb);
    assert!(items.iter().any(|j| j == COMP2), "{items:?}");
    c2.close();
    c.drop_tcp();
    // Bounded wait for the server to notice both departures.
    for user in [&mut ca, &mut cb] {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let items = server_items(user);
            if !items.iter().any(|j| j == COMP || j == COMP2) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "components still listed after disconnecting: {items:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// COMP-10

/// COMP-10: a stanza before the handshake gets `<not-authorized/>` and is not routed (sent
/// after the server's header, and sent together with the opening header).
#[test]
fn comp_10_stanza_before_handshake_not_authorized() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let to = cb.full();
    let mut c = open(&s, COMP, NS_ACCEPT);
    recv_comp_header(&mut c, COMP);
    c.send(&format!(
        "<message from='bot@{COMP}' to='{to}' type='chat' id='early1'><body>early</body></message>"
    ));
    c.expect_stream_error("not-authorized");

    let to = ca.full();
    let mut c = Client::connect(comp_addr(&s));
    c.send(&format!(
        "{}<iq from='bot@{COMP}' to='{to}' type='get' id='early2'><ping xmlns='urn:xmpp:ping'/></iq>",
        header(COMP, NS_ACCEPT)
    ));
    expect_header_then_error(&mut c, "not-authorized");

    for (user, id) in [(&mut ca, "early2"), (&mut cb, "early1")] {
        let got = user.collect_for(QUIET);
        assert!(
            got.iter().all(|e| e.attr("id") != Some(id)),
            "a stanza before the handshake was routed: {got:?}"
        );
    }
    // The name was not taken by the unauthenticated streams.
    let _c = component(&s, COMP, SECRET);
}

// ---------------------------------------------------------------------------------------------
// Delivery to local users

/// Stanzas from the component reach local users' clients with the component's `from`, as
/// proper `jabber:client` stanzas even when the component wrote
/// `xmlns='jabber:component:accept'` on the top element explicitly.
#[test]
fn comp_07_explicit_accept_namespace_becomes_jabber_client() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let mut c = component(&s, COMP, SECRET);
    for (u, user) in [&mut ca, &mut cb].into_iter().enumerate() {
        let me = user.full();
        let id = format!("ns{u}");
        c.send(&format!(
            "<message xmlns='{NS_ACCEPT}' from='bot@{COMP}' to='{me}' type='chat' id='{id}'>\
             <body>x</body><thread>t1</thread></message>"
        ));
        let (m, raw) = recv_raw_with_id(user, &id);
        // The client's own parser (stream default jabber:client) decides.
        assert_eq!(
            (m.name.as_str(), m.ns.as_str()),
            ("message", "jabber:client"),
            "{m:?}"
        );
        assert_eq!(m.attr("from"), Some(format!("bot@{COMP}").as_str()));
        assert_eq!(
            m.child("body", "jabber:client")
                .map(|b| b.text())
                .as_deref(),
            Some("x"),
            "{m:?}"
        );
        assert!(m.child("thread", "jabber:client").is_some(), "{m:?}");
        assert!(
            !raw.contains(NS_ACCEPT),
            "the component namespace leaked to the client: {raw}"
        );

        // Presence and IQ the same way.
        let id = format!("nsp{u}");
        c.send(&format!(
            "<presence xmlns='{NS_ACCEPT}' from='bot@{COMP}/r' to='{me}' id='{id}'><status>on</status></presence>"
        ));
        let (p, _) = user.recv_until("presence with explicit namespace", |e| {
            e.attr("id") == Some(id.as_str())
        });
        assert_eq!(
            (p.name.as_str(), p.ns.as_str()),
            ("presence", "jabber:client")
        );
        assert_eq!(status_of(&p).as_deref(), Some("on"));

        let id = format!("nsi{u}");
        c.send(&format!(
            "<iq xmlns='{NS_ACCEPT}' from='bot@{COMP}/r' to='{me}' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let (q, _) = user.recv_until("iq with explicit namespace", |e| {
            e.attr("id") == Some(id.as_str())
        });
        assert_eq!((q.name.as_str(), q.ns.as_str()), ("iq", "jabber:client"));
        assert!(q.child("ping", "urn:xmpp:ping").is_some());
        // The client's answer goes back.
        user.send(&format!("<iq to='bot@{COMP}/r' type='result' id='{id}'/>"));
        let r = relayed(&mut c, user, "iq", &id);
        assert_eq!(r.attr("type"), Some("result"));
        assert_eq!(r.attr("from"), Some(me.as_str()));
    }
}

/// A component's message to an offline local user is stored offline and delivered at the
/// user's next login, with the component's `from`. Users on both shards.
#[test]
fn comp_07_message_to_offline_user_stored() {
    let s = server();
    let mut c = component(&s, COMP, SECRET);
    for shard in 0..SHARDS {
        let off = User::on_shard(&s, "off", shard, SHARDS);
        // A witness on the same shard: once it got the later message, the earlier one to the
        // offline user has been dispatched on that shard.
        let w = User::on_shard(&s, "wit", shard, SHARDS);
        let mut cw = w.online(&s, "w");
        let from = format!("alice@{COMP}/irssi");
        let id = format!("offl{shard}");
        c.send(&format!(
            "<message from='{from}' to='{}' type='chat' id='{id}'><body>while you were out</body></message>",
            off.jid
        ));
        let wid = format!("wit{shard}");
        c.send(&format!(
            "<message from='{from}' to='{}' type='chat' id='{wid}'><body>w</body></message>",
            cw.full()
        ));
        cw.recv_until("witness message", |e| e.attr("id") == Some(wid.as_str()));
        // Not bounced to the component.
        let back = c.collect_for(QUIET);
        assert!(
            back.iter().all(|e| e.attr("id") != Some(id.as_str())),
            "offline message bounced: {back:?}"
        );

        let mut co = off.login(&s, "later");
        co.send("<presence/>");
        let (m, _) = co.recv_until("stored message", |e| {
            e.name == "message" && e.attr("id") == Some(id.as_str())
        });
        assert_eq!(m.attr("from"), Some(from.as_str()), "{m:?}");
        assert_eq!(body(&m).as_deref(), Some("while you were out"));
        assert!(
            m.child("delay", "urn:xmpp:delay").is_some(),
            "delay stamp: {m:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reconnecting

/// After the component closes its stream, the server closes too and the domain can connect
/// again; traffic goes to the new connection.
#[test]
fn comp_02_reconnect_after_close() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let mut c = component(&s, COMP, SECRET);
    c.close();
    let (mut c, _refusals) = component_eventually(&s, COMP, SECRET);
    for user in [&mut ca, &mut cb] {
        let id = next_id("rc");
        user.send(&format!(
            "<message to='{COMP}' type='chat' id='{id}'><body>new link</body></message>"
        ));
        let m = relayed(&mut c, user, "message", &id);
        assert_eq!(m.attr("from"), Some(user.full().as_str()));
    }
}

/// After the component's TCP connection drops without a close, the domain can connect again;
/// traffic goes to the new connection.
#[test]
fn comp_02_reconnect_after_tcp_drop() {
    let s = server();
    let ((_a, mut ca), (_b, mut cb)) = two_users(&s);
    let c = component(&s, COMP, SECRET);
    c.drop_tcp();
    let (mut c, _refusals) = component_eventually(&s, COMP, SECRET);
    for user in [&mut ca, &mut cb] {
        let id = next_id("rd");
        user.send(&format!(
            "<iq to='{COMP}' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let q = relayed(&mut c, user, "iq", &id);
        assert_eq!(q.attr("from"), Some(user.full().as_str()));
    }
}

/// A component that is refused for `<conflict/>`, then reconnects after the first one
/// closed, gets the domain (the refused attempt left no trace).
#[test]
fn comp_02_conflict_then_takeover_after_close() {
    let s = server();
    let a = User::on_shard(&s, "tk", 0, SHARDS);
    let mut ca = a.online(&s, "r");
    let mut first = component(&s, COMP, SECRET);
    let mut second = open(&s, COMP, NS_ACCEPT);
    let id = recv_comp_header(&mut second, COMP);
    send_handshake(&mut second, &id, SECRET);
    second.expect_stream_error("conflict");
    first.close();
    let (mut third, _) = component_eventually(&s, COMP, SECRET);
    ca.send(&format!(
        "<message to='bot@{COMP}' type='chat' id='tk1'><body>x</body></message>"
    ));
    let m = relayed(&mut third, &mut ca, "message", "tk1");
    assert_eq!(m.attr("to"), Some(format!("bot@{COMP}").as_str()));
}
