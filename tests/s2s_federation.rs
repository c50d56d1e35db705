//! Server-to-server federation between two xmppd processes on loopback (RFC 6120 s2s,
//! XEP-0220 dialback, XEP-0178 SASL EXTERNAL): each serves its own domain, and static
//! routes (`--s2s-route`) point each at the other's port (for the domain and for its
//! `conference.` service, which opens its own stream).
//!
//! Everything a single server does for two local users is checked here across the two
//! domains: subscriptions and presence (IM-SUB-*, IM-PRES-*), messages and offline storage
//! (IM-MSG-*), vCard, disco, MUC, PEP, and the errors a remote server answers with; then how
//! the streams authenticate (SASL EXTERNAL with a test CA, dialback with self-signed
//! certificates, and the policies that refuse one or the other), a restart of one side, and
//! several shards on both sides.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::s2s::{eprint_log_tail, exchange, s2s_lines, strip_ansi};
use common::*;
use xmppd::xml::Element;
use xmppd::xmpp::caps::{ver_hash, CapsAlgo};

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const VCARD: &str = "vcard-temp";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const TUNE: &str = "http://jabber.org/protocol/tune";
const CAPS_NODE: &str = "https://xmppd.test/s2s-client";

/// A free loopback port (bound and released: the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The flags of one side: its domain, its s2s listener, routes to the other side (the
/// domain and its `conference.` service).
fn side_args(domain: &str, port: u16, peer: &str, peer_port: u16) -> Vec<String> {
    vec![
        "--domain".into(),
        domain.into(),
        "--s2s-listen".into(),
        format!("127.0.0.1:{port}"),
        "--s2s-route".into(),
        format!("{peer}=127.0.0.1:{peer_port}"),
        "--s2s-route".into(),
        format!("conference.{peer}=127.0.0.1:{peer_port}"),
    ]
}

fn with(base: &[String], extra: &[&str]) -> Vec<String> {
    let mut v = base.to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Two servers, `a.test` and `b.test`, routed to each other, with `extra` flags on both.
pub fn pair(extra: &[&str]) -> (Server, Server) {
    pair_with(extra, extra)
}

/// Two servers with different extra flags.
pub fn pair_with(a_extra: &[&str], b_extra: &[&str]) -> (Server, Server) {
    let (pa, pb) = (free_port(), free_port());
    let a = with(&side_args("a.test", pa, "b.test", pb), a_extra);
    let b = with(&side_args("b.test", pb, "a.test", pa), b_extra);
    (Server::start(&strs(&a)), Server::start(&strs(&b)))
}

/// A ping round trip with the client's own server (`Client::sync` pings `localhost`, which is
/// a remote domain here).
fn sync(c: &mut Client) -> Vec<Element> {
    let id = next_id("sync");
    let to = c.domain.clone();
    c.send(&format!(
        "<iq type='get' id='{id}' to='{to}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    c.recv_until("ping answer", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    })
    .1
}

fn body(e: &Element) -> Option<String> {
    e.child("body", "jabber:client").map(|b| b.text())
}

fn is_msg_body(e: &Element, text: &str) -> bool {
    e.name == "message" && body(e).as_deref() == Some(text)
}

/// The item of a roster push about `contact` with this subscription.
fn is_push(e: &Element, contact: &str, sub: &str) -> bool {
    roster_push_item(e)
        .is_some_and(|i| i.attr("jid") == Some(contact) && i.attr("subscription") == Some(sub))
}

fn push_item(e: &Element) -> Element {
    roster_push_item(e).cloned().expect("a roster push")
}

/// An IQ `id` answered with an error: (condition, type).
fn iq_error(c: &mut Client, id: &str) -> (Element, String, String) {
    let (e, _) = c.recv_until(id, |e| e.attr("id") == Some(id));
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    let (cond, ty, _) = stanza_error(&e).unwrap_or_else(|| panic!("no condition in {e:?}"));
    (e, cond, ty)
}

/// The first line of `log` containing every one of `needles`.
fn log_line(log: &str, needles: &[&str]) -> Option<String> {
    strip_ansi(log)
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
}

/// The first log line of `s` holding every needle, waited for a few seconds: the harness
/// copies the server's log on a thread of its own, so a line may trail what the test saw on
/// the wire.
fn wait_line(s: &Server, needles: &[&str]) -> Option<String> {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let l = log_line(&s.log(), needles);
        if l.is_some() || std::time::Instant::now() >= until {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints the servers' logs when the test fails (the server side of the exchange).
struct DumpOnPanic<'a>(Vec<(&'static str, &'a Server)>);

impl Drop for DumpOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, s) in &self.0 {
                eprint_log_tail(&format!("{name} ({})", s.domain), s, 120);
            }
        }
    }
}

fn dump<'a>(a: &'a Server, b: &'a Server) -> DumpOnPanic<'a> {
    DumpOnPanic(vec![("A", a), ("B", b)])
}

// ---------------------------------------------------------------------------------------------
// Everything across domains: dialback over TLS with the generated self-signed certificates.

/// CORE-S2S-01/02/04, DB-RECV-03: a chat message crosses by dialback over TLS with
/// self-signed certificates, both ways, with `from` the sender's full JID.
#[test]
fn s2s_dialback_chat_both_ways_with_self_signed_certificates() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = Client::online(&a, &alice.local, &alice.pw, Some("phone"));
    let mut cb = Client::online(&b, &bob.local, &bob.pw, Some("laptop"));
    ca.send(&format!(
        "<message to='{}/laptop' type='chat' id='m1'><body>hello b</body></message>",
        bob.jid
    ));
    let (m, _) = cb.recv_until("alice's message", |e| e.name == "message");
    assert_eq!(
        m.attr("from"),
        Some(format!("{}/phone", alice.jid).as_str()),
        "{m:?}"
    );
    assert_eq!(body(&m).as_deref(), Some("hello b"));
    cb.send(&format!(
        "<message to='{}/phone' type='chat' id='m2'><body>hello a</body></message>",
        alice.jid
    ));
    let (m, _) = ca.recv_until("bob's message", |e| e.name == "message");
    assert_eq!(
        m.attr("from"),
        Some(format!("{}/laptop", bob.jid).as_str()),
        "{m:?}"
    );
    let la = wait_line(&a, &["s2s outgoing stream up", "dialback"]);
    let lb = wait_line(&b, &["s2s outgoing stream up", "dialback"]);
    assert!(la.is_some(), "A's s2s log:\n{}", s2s_lines(&a));
    assert!(lb.is_some(), "B's s2s log:\n{}", s2s_lines(&b));
}

/// IM-SUB-01/02/08/09/11, IM-ROSTER-13, IM-PRES-01/02/06/08/09/14 across domains: the
/// subscription handshake both ways with the roster pushes on both servers, then presence
/// broadcast, the probe answered at login, and unavailable presence.
#[test]
fn im_sub_01_02_08_09_11_pres_01_02_06_09_subscription_and_presence_across_domains() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let mut cb = bob.online(&b, "laptop");
    // Both ask for the roster: interested resources get pushes (RFC 6121 §2.1.6).
    ca.roster_items();
    cb.roster_items();
    let (aj, bj) = (alice.jid.clone(), bob.jid.clone());
    let (af, bf) = (alice.full("phone"), bob.full("laptop"));

    // IM-SUB-02: alice's server pushes the item with ask='subscribe' before routing.
    ca.send(&format!("<presence to='{bf}' type='subscribe' id='sub1'/>"));
    let (p, _) = ca.recv_until("push none+ask", |e| is_push(e, &bj, "none"));
    let it = push_item(&p);
    assert_eq!(it.attr("ask"), Some("subscribe"), "IM-SUB-02: {p:?}");
    assert_eq!(p.attr("to"), Some(af.as_str()), "{p:?}");
    // IM-SUB-01/16: routed from alice's bare JID to bob's bare JID, even though she wrote
    // his full JID.
    let (s, _) = cb.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some(&aj))
    });
    assert_eq!(s.attr("to"), Some(bj.as_str()), "IM-SUB-01: {s:?}");
    assert_eq!(s.attr("id"), Some("sub1"), "{s:?}");
    // IM-SUB-08: a pending request alone makes no roster item on bob's side.
    let (items, _) = cb.roster_items();
    assert!(
        items.iter().all(|i| i.attr("jid") != Some(aj.as_str())),
        "IM-SUB-08: {items:?}"
    );

    // IM-SUB-09/11: bob approves; both servers push, alice gets `subscribed` and bob's
    // current presence.
    cb.send(&format!("<presence to='{aj}' type='subscribed'/>"));
    let (got, _) = cb.recv_all(&[("push from", &|e: &Element| is_push(e, &aj, "from"))]);
    assert_eq!(push_item(&got[0]).attr("ask"), None, "{:?}", got[0]);
    let (got, _) = ca.recv_all(&[
        ("push to", &|e: &Element| is_push(e, &bj, "to")),
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&bj))
        }),
        ("bob's presence", &|e: &Element| {
            is_presence(e, None, Some(&bf))
        }),
    ]);
    assert_eq!(
        push_item(&got[0]).attr("ask"),
        None,
        "IM-SUB-11: {:?}",
        got[0]
    );
    assert_eq!(got[1].attr("to"), Some(aj.as_str()), "{:?}", got[1]);

    // The other way: bob subscribes to alice; alice approves.
    cb.send(&format!("<presence to='{aj}' type='subscribe'/>"));
    let (p, _) = cb.recv_until("push from+ask", |e| is_push(e, &aj, "from"));
    assert_eq!(push_item(&p).attr("ask"), Some("subscribe"), "{p:?}");
    ca.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some(&bj))
    });
    ca.send(&format!("<presence to='{bj}' type='subscribed'/>"));
    ca.recv_until("push both", |e| is_push(e, &bj, "both"));
    let (got, _) = cb.recv_all(&[
        ("push both", &|e: &Element| is_push(e, &aj, "both")),
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&aj))
        }),
        ("alice's presence", &|e: &Element| {
            is_presence(e, None, Some(&af))
        }),
    ]);
    assert_eq!(push_item(&got[0]).attr("ask"), None, "{:?}", got[0]);
    // Both rosters agree after the handshake.
    let (items, _) = ca.roster_items();
    let it = items.iter().find(|i| i.attr("jid") == Some(bj.as_str()));
    assert_eq!(
        it.and_then(|i| i.attr("subscription")),
        Some("both"),
        "{items:?}"
    );
    let (items, _) = cb.roster_items();
    let it = items.iter().find(|i| i.attr("jid") == Some(aj.as_str()));
    assert_eq!(
        it.and_then(|i| i.attr("subscription")),
        Some("both"),
        "{items:?}"
    );

    // IM-PRES-08/14: a broadcast reaches the remote contact, from alice's full JID, payload
    // intact.
    ca.send("<presence id='p2'><show>away</show><status>in a meeting</status><priority>5</priority></presence>");
    let (p, _) = cb.recv_until("alice away", |e| {
        is_presence(e, None, Some(&af)) && status_of(e).is_some()
    });
    assert_eq!(status_of(&p).as_deref(), Some("in a meeting"));
    assert_eq!(
        p.child("show", "jabber:client")
            .map(|s| s.text())
            .as_deref(),
        Some("away")
    );
    assert_eq!(p.attr("to"), Some(bj.as_str()), "{p:?}");
    assert_eq!(p.attr("id"), Some("p2"), "{p:?}");

    // IM-PRES-01/06: bob logs in from a second device: his server probes alice's, which
    // answers with her last presence (status kept), and alice gets bob's new resource
    // (IM-PRES-02).
    let tf = bob.full("tablet");
    let mut ct = bob.login(&b, "tablet");
    ct.send("<presence/>");
    let (got, _) = ct.recv_all(&[
        ("own echo", &|e: &Element| is_presence(e, None, Some(&tf))),
        ("alice via probe", &|e: &Element| {
            is_presence(e, None, Some(&af))
        }),
    ]);
    assert_eq!(
        status_of(&got[1]).as_deref(),
        Some("in a meeting"),
        "IM-PRES-06: the last presence: {:?}",
        got[1]
    );
    ca.recv_until("bob's tablet", |e| is_presence(e, None, Some(&tf)));

    // IM-PRES-10: bob's tablet disconnects without unavailable presence: his server tells
    // alice's.
    ct.drop_tcp();
    let (p, _) = ca.recv_until("tablet gone", |e| {
        is_presence(e, Some("unavailable"), Some(&tf))
    });
    assert_eq!(p.attr("to"), Some(aj.as_str()), "{p:?}");
    // IM-PRES-09: alice goes unavailable: bob hears it.
    ca.send("<presence type='unavailable'><status>bye</status></presence>");
    let (p, _) = cb.recv_until("alice unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&af))
    });
    assert_eq!(status_of(&p).as_deref(), Some("bye"), "{p:?}");
}

/// IM-PRES-07/06 at login: a contact who logs in while the other side is offline gets no
/// available presence (an unavailable from the bare JID at most); once the other is online
/// and the contact logs in again, the probe answer carries the current presence.
#[test]
fn im_pres_06_07_probe_answers_at_login_across_domains() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let mut cb = bob.online(&b, "laptop");
    befriend(&mut ca, &mut cb);
    let (aj, af) = (alice.jid.clone(), alice.full("phone"));
    cb.close();
    // Alice alone sees bob leave.
    ca.recv_until("bob unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&bob.full("laptop")))
    });
    ca.close();
    std::thread::sleep(Duration::from_millis(300));
    // IM-PRES-07: alice is offline: at most an unavailable presence from her bare JID.
    let mut cb = bob.online(&b, "laptop");
    let got = cb.collect_for(Duration::from_millis(1500));
    for p in presence_from(&got, &aj) {
        assert_eq!(p.attr("type"), Some("unavailable"), "IM-PRES-07: {p:?}");
        assert_eq!(p.attr("from"), Some(aj.as_str()), "IM-PRES-07: {p:?}");
    }
    // IM-PRES-06: alice comes back with a status; bob's next login learns it by probe.
    let mut ca = alice.available(&a, "phone", "<presence><status>back</status></presence>");
    let (p, _) = cb.recv_until("alice back", |e| is_presence(e, None, Some(&af)));
    assert_eq!(status_of(&p).as_deref(), Some("back"));
    cb.close();
    ca.recv_until("bob gone", |e| {
        is_presence(e, Some("unavailable"), Some(&bob.full("laptop")))
    });
    let mut cb = bob.login(&b, "desk");
    cb.send("<presence/>");
    let (p, _) = cb.recv_until("alice via probe", |e| is_presence(e, None, Some(&af)));
    assert_eq!(status_of(&p).as_deref(), Some("back"), "{p:?}");
    assert_eq!(
        p.attr("to"),
        Some(bob.jid.as_str()),
        "answered to the prober's bare JID"
    );
}

/// IM-PRES-05/16: probes from a remote user who is not authorized reveal nothing (an
/// `unsubscribed` at most), for an existing account and a missing one alike; a client's own
/// probe is not answered beyond what RFC 6121 allows.
#[test]
fn im_pres_05_16_unauthorized_remote_probe_reveals_nothing() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let carol = User::new(&a, "carol");
    let bob = User::new(&b, "bob");
    let mut cc = carol.online(&a, "pc");
    let mut cb = bob.available(&b, "laptop", "<presence><status>secret</status></presence>");
    // First make sure the streams are up, so that silence below is not a slow set-up.
    cc.send(&format!(
        "<message to='{}' type='chat'><body>hi</body></message>",
        bob.jid
    ));
    cb.recv_until("carol's message", |e| is_msg_body(e, "hi"));
    for to in [bob.jid.clone(), "nobody@b.test".to_string()] {
        cc.send(&format!("<presence type='probe' to='{to}'/>"));
        let got = cc.collect_for(Duration::from_millis(1500));
        for p in got.iter().filter(|e| e.name == "presence") {
            assert!(
                !p.attr("from").is_some_and(|f| f.starts_with(&to))
                    || p.attr("type") == Some("unsubscribed"),
                "IM-PRES-05/16: probe to {to} answered with {p:?}"
            );
        }
    }
    // Bob's resource did not see the probes either.
    let got = cb.collect_for(Duration::from_millis(300));
    assert!(
        got.iter().all(|e| e.attr("type") != Some("probe")),
        "probes are handled by the server: {got:?}"
    );
}

/// IM-SUB-12/13/14 across domains: unsubscribe and unsubscribed change both rosters, are
/// delivered, and the unavailable presences follow.
#[test]
fn im_sub_12_13_14_unsubscribe_and_unsubscribed_across_domains() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let mut cb = bob.online(&b, "laptop");
    ca.roster_items();
    cb.roster_items();
    befriend(&mut ca, &mut cb);
    let (aj, bj, af, bf) = (
        alice.jid.clone(),
        bob.jid.clone(),
        alice.full("phone"),
        bob.full("laptop"),
    );
    // IM-SUB-12/13: bob unsubscribes from alice: bob Both→From, alice Both→To; bob gets
    // unavailable from alice's resources.
    cb.send(&format!("<presence to='{aj}' type='unsubscribe'/>"));
    let (got, _) = cb.recv_all(&[
        ("push from", &|e: &Element| is_push(e, &aj, "from")),
        ("alice unavailable", &|e: &Element| {
            is_presence(e, Some("unavailable"), Some(&af))
        }),
    ]);
    assert_eq!(push_item(&got[0]).attr("ask"), None);
    let (got, _) = ca.recv_all(&[
        ("push to", &|e: &Element| is_push(e, &bj, "to")),
        ("unsubscribe", &|e: &Element| {
            is_presence(e, Some("unsubscribe"), Some(&bj))
        }),
    ]);
    assert_eq!(got[1].attr("to"), Some(aj.as_str()), "{:?}", got[1]);
    // Alice's presence no longer reaches bob; bob's still reaches alice.
    ca.send("<presence><status>hidden</status></presence>");
    ca.recv_until("own echo", |e| is_presence(e, None, Some(&af)));
    cb.send("<presence><status>visible</status></presence>");
    cb.recv_until("own echo", |e| is_presence(e, None, Some(&bf)));
    let (p, _) = ca.recv_until("bob visible", |e| is_presence(e, None, Some(&bf)));
    assert_eq!(status_of(&p).as_deref(), Some("visible"));
    let got = cb.collect_for(Duration::from_millis(800));
    assert!(
        presence_from(&got, &aj).is_empty(),
        "IM-PRES-08: no broadcast to a To-less contact: {got:?}"
    );
    // IM-SUB-14: bob cancels alice's subscription: bob From→None, alice To→None; alice gets
    // `unsubscribed` and unavailable from bob's resources.
    cb.send(&format!("<presence to='{aj}' type='unsubscribed'/>"));
    cb.recv_until("push none", |e| is_push(e, &aj, "none"));
    let (got, _) = ca.recv_all(&[
        ("push none", &|e: &Element| is_push(e, &bj, "none")),
        ("unsubscribed", &|e: &Element| {
            is_presence(e, Some("unsubscribed"), Some(&bj))
        }),
        ("bob unavailable", &|e: &Element| {
            is_presence(e, Some("unavailable"), Some(&bf))
        }),
    ]);
    assert_eq!(push_item(&got[0]).attr("ask"), None, "{:?}", got[0]);
    // IM-SUB-10: a repeated unsubscribed changes nothing and is not routed.
    cb.send(&format!("<presence to='{aj}' type='unsubscribed'/>"));
    sync(&mut cb);
    let got = ca.collect_for(Duration::from_millis(800));
    assert!(
        from_account(&got, &bj).is_empty(),
        "IM-SUB-10: nothing routed: {got:?}"
    );
}

/// IM-MSG-01/02/07/08/10/12 across domains: chat to bare and full JIDs both ways (payload
/// intact), a chat to a resource that is not connected goes to the bare JID, and a message
/// to an offline remote user is stored by its server and delivered with a delay stamp at the
/// next login.
#[test]
fn im_msg_01_02_07_08_12_messages_and_offline_storage_across_domains() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let mut cb = bob.online(&b, "laptop");
    let (aj, bj, af, bf) = (
        alice.jid.clone(),
        bob.jid.clone(),
        alice.full("phone"),
        bob.full("laptop"),
    );
    // To the bare JID, with an extension and a thread (IM-MSG-10).
    ca.send(&format!(
        "<message to='{bj}' type='chat' id='c1'><body>to bare &amp; more</body><thread>t1</thread><x xmlns='urn:example:x' a='1'>kept</x></message>"
    ));
    let (m, _) = cb.recv_until("c1", |e| e.attr("id") == Some("c1"));
    assert_eq!(m.attr("from"), Some(af.as_str()));
    assert_eq!(m.attr("to"), Some(bj.as_str()));
    assert_eq!(m.attr("type"), Some("chat"));
    assert_eq!(body(&m).as_deref(), Some("to bare & more"));
    assert_eq!(
        m.child("thread", "jabber:client")
            .map(|t| t.text())
            .as_deref(),
        Some("t1")
    );
    let x = m.child("x", "urn:example:x").expect("extension kept");
    assert_eq!((x.attr("a"), x.text().as_str()), (Some("1"), "kept"));
    // To the full JID, the other way, type normal.
    cb.send(&format!(
        "<message to='{af}' id='c2'><subject>s</subject><body>to full</body></message>"
    ));
    let (m, _) = ca.recv_until("c2", |e| e.attr("id") == Some("c2"));
    assert_eq!(m.attr("from"), Some(bf.as_str()));
    assert_eq!(m.attr("to"), Some(af.as_str()));
    assert_eq!(body(&m).as_deref(), Some("to full"));
    // IM-MSG-08: a chat to a resource that is not connected goes to the bare JID.
    ca.send(&format!(
        "<message to='{bj}/gone' type='chat' id='c3'><body>to a gone resource</body></message>"
    ));
    let (m, _) = cb.recv_until("c3", |e| e.attr("id") == Some("c3"));
    assert_eq!(body(&m).as_deref(), Some("to a gone resource"));
    assert_eq!(m.attr("from"), Some(af.as_str()));

    // IM-MSG-07/12: bob goes offline; alice's messages are stored by b.test.
    cb.close();
    for (i, to) in [bj.clone(), format!("{bj}/laptop")].iter().enumerate() {
        ca.send(&format!(
            "<message to='{to}' type='chat' id='off{i}'><body>offline {i}</body></message>"
        ));
    }
    // No error comes back (stored, not bounced).
    let got = ca.collect_for(Duration::from_millis(1500));
    assert!(
        got.iter().all(|e| e.attr("type") != Some("error")),
        "IM-MSG-07: stored, not bounced: {got:?}"
    );
    let mut cb = bob.login(&b, "laptop");
    cb.send("<presence/>");
    let mut got = Vec::new();
    for i in 0..2 {
        let text = format!("offline {i}");
        let (m, _) = cb.recv_until("offline message", |e| is_msg_body(e, &text));
        got.push(m);
    }
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.attr("id"), Some(format!("off{i}").as_str()), "{m:?}");
        assert_eq!(m.attr("from"), Some(af.as_str()), "{m:?}");
        let delay = m
            .child("delay", "urn:xmpp:delay")
            .unwrap_or_else(|| panic!("IM-MSG-12: no delay stamp on {m:?}"));
        assert_eq!(delay.attr("from"), Some("b.test"), "IM-MSG-12: {m:?}");
        assert!(
            delay.attr("stamp").is_some_and(|s| s.ends_with('Z')),
            "{m:?}"
        );
    }
    let _ = aj;
}

/// VCARD-05/06 across domains: a remote user's vCard is answered by their server from
/// storage (never forwarded to the resource); a missing remote account and a remote account
/// without a vCard give the same error.
#[test]
fn vcard_05_06_remote_vcard_answered_by_the_remote_server() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let nocard = User::new(&b, "nocard");
    let mut ca = alice.login(&a, "phone");
    let mut cb = bob.login(&b, "laptop");
    let card = "<vCard xmlns='vcard-temp'><FN>Bob Builder</FN><NICKNAME>bob</NICKNAME><X-CUSTOM xmlns='urn:example:x'>kept</X-CUSTOM></vCard>";
    cb.send(&format!("<iq type='set' id='vs'>{card}</iq>"));
    let (r, _) = cb.recv_until("vcard set", |e| e.attr("id") == Some("vs"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    ca.send(&format!(
        "<iq type='get' id='vg' to='{}'><vCard xmlns='{VCARD}'/></iq>",
        bob.jid
    ));
    let (r, _) = ca.recv_until("vcard", |e| e.attr("id") == Some("vg"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(r.attr("from"), Some(bob.jid.as_str()), "{r:?}");
    assert_eq!(r.attr("to"), Some(alice.full("phone").as_str()), "{r:?}");
    let v = r.child("vCard", VCARD).expect("vCard");
    assert_eq!(
        v.child("FN", VCARD).map(|f| f.text()).as_deref(),
        Some("Bob Builder")
    );
    assert_eq!(
        v.child("X-CUSTOM", "urn:example:x")
            .map(|f| f.text())
            .as_deref(),
        Some("kept")
    );
    // VCARD-05: answered from storage; bob's resource saw nothing.
    let got = cb.collect_for(Duration::from_millis(300));
    assert!(got.iter().all(|e| e.name != "iq"), "{got:?}");
    // VCARD-06: no vCard and no account look the same.
    let mut answers = Vec::new();
    for to in [nocard.jid.clone(), "nobody@b.test".to_string()] {
        let id = next_id("vx");
        ca.send(&format!(
            "<iq type='get' id='{id}' to='{to}'><vCard xmlns='{VCARD}'/></iq>"
        ));
        let (e, cond, ty) = iq_error(&mut ca, &id);
        assert_eq!(e.attr("from"), Some(to.as_str()), "{e:?}");
        assert_eq!(cond, "service-unavailable", "VCARD-06 (v1.3): {e:?}");
        assert_eq!(ty, "cancel", "{e:?}");
        answers.push(cond);
    }
}

/// DISCO-01/05/06 across domains: disco#info to the remote server domain; to a remote
/// account, refused to a stranger and answered for a subscriber.
#[test]
fn disco_01_05_06_remote_server_and_remote_account() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let mut cb = bob.online(&b, "laptop");
    ca.send(&format!(
        "<iq type='get' id='d1' to='b.test'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    let (r, _) = ca.recv_until("disco b.test", |e| e.attr("id") == Some("d1"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(r.attr("from"), Some("b.test"));
    assert_eq!(r.attr("to"), Some(alice.full("phone").as_str()));
    let q = r.child("query", DISCO_INFO).expect("query");
    assert!(
        q.elements().any(|i| i.name == "identity"
            && i.attr("category") == Some("server")
            && i.attr("type") == Some("im")),
        "DISCO-01: {q:?}"
    );
    assert!(q.elements().any(|f| f.attr("var") == Some(VCARD)), "{q:?}");
    // DISCO-06: a stranger's disco#info to bob's account, and to a missing account.
    for to in [bob.jid.clone(), "nobody@b.test".to_string()] {
        let id = next_id("dx");
        ca.send(&format!(
            "<iq type='get' id='{id}' to='{to}'><query xmlns='{DISCO_INFO}'/></iq>"
        ));
        let (e, cond, _) = iq_error(&mut ca, &id);
        assert_eq!(cond, "service-unavailable", "DISCO-06: {e:?}");
        assert_eq!(e.attr("from"), Some(to.as_str()), "{e:?}");
    }
    // DISCO-05: once alice is subscribed to bob, his server answers for his account.
    befriend(&mut ca, &mut cb);
    ca.send(&format!(
        "<iq type='get' id='d5' to='{}'><query xmlns='{DISCO_INFO}'/></iq>",
        bob.jid
    ));
    let (r, _) = ca.recv_until("disco bob", |e| e.attr("id") == Some("d5"));
    assert_eq!(r.attr("type"), Some("result"), "DISCO-05: {r:?}");
    assert_eq!(r.attr("from"), Some(bob.jid.as_str()));
    let q = r.child("query", DISCO_INFO).expect("query");
    assert!(
        q.elements().any(|i| i.name == "identity"
            && i.attr("category") == Some("account")
            && i.attr("type") == Some("registered")),
        "DISCO-05: {q:?}"
    );
}

/// CORE-STANZA errors from the remote server: an IQ to a missing remote account or to a
/// remote resource that is not connected gets `service-unavailable` from the remote server,
/// with the original id and `from` the addressee; an IQ error is not answered.
#[test]
fn iq_errors_come_back_from_the_remote_server() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let _cb = bob.online(&b, "laptop");
    for to in [
        "nobody@b.test".to_string(),
        "nobody@b.test/res".to_string(),
        bob.full("not-connected"),
    ] {
        let id = next_id("e");
        ca.send(&format!(
            "<iq type='get' id='{id}' to='{to}'><query xmlns='jabber:iq:version'/></iq>"
        ));
        let (e, cond, ty) = iq_error(&mut ca, &id);
        assert_eq!(cond, "service-unavailable", "to {to}: {e:?}");
        assert_eq!(ty, "cancel", "{e:?}");
        assert_eq!(e.attr("from"), Some(to.as_str()), "{e:?}");
        assert_eq!(e.attr("to"), Some(alice.full("phone").as_str()), "{e:?}");
        let err = e.child("error", "jabber:client").unwrap();
        assert!(
            err.elements()
                .any(|c| c.ns == STANZAS && c.name == "service-unavailable"),
            "{e:?}"
        );
    }
    // A message to a missing remote account bounces (it is never silently lost).
    ca.send("<message to='nobody@b.test' type='chat' id='mx'><body>anyone?</body></message>");
    let (e, _) = ca.recv_until("bounce", |e| e.attr("id") == Some("mx"));
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    assert_eq!(e.attr("from"), Some("nobody@b.test"), "{e:?}");
    assert_eq!(
        stanza_error(&e).map(|x| x.0).as_deref(),
        Some("service-unavailable"),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// MUC and PEP across domains.

fn muc_codes(p: &Element) -> Vec<String> {
    p.child("x", MUC_USER)
        .map(|x| {
            x.elements()
                .filter(|e| e.name == "status")
                .filter_map(|e| e.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn muc_item(p: &Element) -> Element {
    p.child("x", MUC_USER)
        .and_then(|x| x.child("item", MUC_USER))
        .cloned()
        .unwrap_or_else(|| panic!("no muc#user item in {p:?}"))
}

fn is_subject(e: &Element) -> bool {
    e.name == "message"
        && e.child("subject", "jabber:client").is_some()
        && e.child("body", "jabber:client").is_none()
}

/// MUC-JOIN-01/02/04/20, MUC-MSG-01/02 across domains: bob@b.test joins a room on
/// conference.a.test created by alice; both see each other's presence (alice, the
/// moderator, with bob's full JID) and each other's groupchat messages.
#[test]
fn muc_join_msg_remote_occupant_on_conference_a_test() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.login(&a, "phone");
    let mut cb = bob.login(&b, "laptop");
    let room = "lounge@conference.a.test";
    // alice creates an instant room.
    ca.send(&format!(
        "<presence to='{room}/alice'><x xmlns='{MUC}'/></presence>"
    ));
    let (_, before) = ca.recv_until("the subject", is_subject);
    let me = before
        .iter()
        .find(|e| e.name == "presence" && muc_codes(e).contains(&"110".into()))
        .expect("self-presence");
    assert!(muc_codes(me).contains(&"201".to_string()), "{me:?}");
    ca.send(&format!(
        "<iq type='set' id='inst' to='{room}'><query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    ));
    let (r, _) = ca.recv_until("configuration result", |e| e.attr("id") == Some("inst"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // bob joins from b.test.
    cb.send(&format!(
        "<presence to='{room}/bob'><x xmlns='{MUC}'/></presence>"
    ));
    let (subj, got) = cb.recv_until("the subject", is_subject);
    assert_eq!(subj.attr("from"), Some(room), "{subj:?}");
    assert_eq!(
        subj.attr("to"),
        Some(bob.full("laptop").as_str()),
        "{subj:?}"
    );
    let alice_p = got
        .iter()
        .find(|e| e.name == "presence" && e.attr("from") == Some(&format!("{room}/alice")))
        .unwrap_or_else(|| panic!("alice's occupant presence in {got:?}"));
    assert_eq!(alice_p.attr("to"), Some(bob.full("laptop").as_str()));
    let it = muc_item(alice_p);
    assert_eq!(it.attr("affiliation"), Some("owner"), "{alice_p:?}");
    assert_eq!(it.attr("role"), Some("moderator"), "{alice_p:?}");
    let self_p = got
        .iter()
        .find(|e| e.name == "presence" && e.attr("from") == Some(&format!("{room}/bob")))
        .unwrap_or_else(|| panic!("bob's self-presence in {got:?}"));
    assert!(muc_codes(self_p).contains(&"110".to_string()), "{self_p:?}");
    let it = muc_item(self_p);
    assert_eq!(it.attr("affiliation"), Some("none"), "{self_p:?}");
    assert_eq!(it.attr("role"), Some("participant"), "{self_p:?}");
    // alice (moderator) sees bob arrive with his real full JID (MUC-JOIN-20).
    let (p, _) = ca.recv_until("bob's presence", |e| {
        e.name == "presence" && e.attr("from") == Some(&format!("{room}/bob"))
    });
    assert_eq!(
        muc_item(&p).attr("jid"),
        Some(bob.full("laptop").as_str()),
        "{p:?}"
    );
    // Groupchat both ways, reflected to everyone with the sender's occupant JID.
    cb.send(&format!(
        "<message type='groupchat' id='g1' to='{room}'><body>hi from b</body></message>"
    ));
    ca.send(&format!(
        "<message type='groupchat' id='g2' to='{room}'><body>hi from a</body></message>"
    ));
    for (c, me) in [
        (&mut ca, alice.full("phone")),
        (&mut cb, bob.full("laptop")),
    ] {
        let (got, _) = c.recv_all(&[
            ("g1", &|e: &Element| {
                e.name == "message" && e.attr("id") == Some("g1")
            }),
            ("g2", &|e: &Element| {
                e.name == "message" && e.attr("id") == Some("g2")
            }),
        ]);
        for (m, nick, text) in [
            (&got[0], "bob", "hi from b"),
            (&got[1], "alice", "hi from a"),
        ] {
            assert_eq!(m.attr("type"), Some("groupchat"), "{m:?}");
            assert_eq!(
                m.attr("from"),
                Some(format!("{room}/{nick}").as_str()),
                "{m:?}"
            );
            assert_eq!(m.attr("to"), Some(me.as_str()), "{m:?}");
            assert_eq!(body(m).as_deref(), Some(text), "{m:?}");
        }
    }
    // bob leaves: alice sees him go with unavailable, bob gets his own with 110.
    cb.send(&format!("<presence to='{room}/bob' type='unavailable'/>"));
    let (p, _) = cb.recv_until("own exit", |e| {
        is_presence(e, Some("unavailable"), Some(&format!("{room}/bob")))
    });
    assert!(muc_codes(&p).contains(&"110".to_string()), "{p:?}");
    ca.recv_until("bob left", |e| {
        is_presence(e, Some("unavailable"), Some(&format!("{room}/bob")))
    });
}

/// A client's disco#info and its caps `ver`.
struct ClientCaps {
    info: String,
    ver: String,
}

impl ClientCaps {
    fn new(unique: &str, features: &[&str]) -> ClientCaps {
        let mut info = format!(
            "<query xmlns='{DISCO_INFO}'><identity category='client' type='pc' name='test'/>\
             <feature var='{DISCO_INFO}'/><feature var='urn:test:{unique}'/>"
        );
        for f in features {
            info.push_str(&format!("<feature var='{f}'/>"));
        }
        info.push_str("</query>");
        let ver = ver_hash(&parse_client(&info), CapsAlgo::Sha1).expect("valid disco#info");
        ClientCaps { info, ver }
    }

    fn presence(&self) -> String {
        format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{}'/></presence>",
            self.ver
        )
    }
}

fn is_caps_query(e: &Element) -> bool {
    e.name == "iq"
        && e.attr("type") == Some("get")
        && e.child("query", DISCO_INFO)
            .and_then(|q| q.attr("node"))
            .is_some_and(|n| n.starts_with(CAPS_NODE))
}

/// Answer every caps query arriving within `d`; returns who asked (the `from`s).
fn answer_caps_for(c: &mut Client, caps: &ClientCaps, d: Duration) -> Vec<String> {
    let mut askers = Vec::new();
    for e in c.collect_for(d) {
        if is_caps_query(&e) {
            let node = e.child("query", DISCO_INFO).unwrap().attr("node").unwrap();
            assert_eq!(
                node,
                format!("{CAPS_NODE}#{}", caps.ver),
                "CAPS-01 node#ver"
            );
            c.answer_disco_info(&e, &caps.info, node);
            askers.push(e.attr("from").unwrap_or_default().to_string());
        }
    }
    askers
}

fn notified_title(e: &Element) -> Option<String> {
    let items = e.child("event", EVENT)?.child("items", EVENT)?;
    let item = items.child("item", EVENT)?;
    Some(item.child("tune", TUNE)?.child("title", TUNE)?.text())
}

/// PEP-03/05 (and CAPS-01) across domains: bob@b.test, a mutual contact whose caps ask for
/// tune+notify, is asked for his caps by alice's server over s2s and gets alice's tune
/// notification, from her bare JID.
#[test]
fn pep_03_05_remote_contact_gets_notifications() {
    let (a, b) = pair(&[]);
    let _g = dump(&a, &b);
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let mut cb = bob.online(&b, "laptop");
    befriend(&mut ca, &mut cb);
    let notify = format!("{TUNE}+notify");
    let caps = ClientCaps::new("s2spep", &[&notify]);
    cb.send(&caps.presence());
    let askers = answer_caps_for(&mut cb, &caps, Duration::from_millis(2500));
    assert!(
        askers.iter().any(|f| f == "a.test" || f == &alice.jid),
        "CAPS-01: alice's server asks bob's client over s2s; askers {askers:?}"
    );
    let _ = ca.collect_for(Duration::from_millis(200));
    ca.send(&format!(
        "<iq type='set' id='pub'><pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item id='t1'><tune xmlns='{TUNE}'><title>Federated</title></tune></item></publish></pubsub></iq>"
    ));
    let (r, _) = ca.recv_until("publish result", |e| e.attr("id") == Some("pub"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let (m, _) = cb.recv_until("tune notification", |e| notified_title(e).is_some());
    assert_eq!(m.attr("from"), Some(alice.jid.as_str()), "PEP-03: {m:?}");
    assert_eq!(notified_title(&m).as_deref(), Some("Federated"));
    let items = m
        .child("event", EVENT)
        .unwrap()
        .child("items", EVENT)
        .unwrap();
    assert_eq!(items.attr("node"), Some(TUNE));
    assert_eq!(items.child("item", EVENT).unwrap().attr("id"), Some("t1"));
    let to = m.attr("to").unwrap_or_default();
    assert!(
        to == bob.full("laptop") || to == bob.jid,
        "PEP-05/06: to bob: {m:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Authentication of the streams: SASL EXTERNAL with a CA, and the policies.

/// A test CA and, for each domain, a certificate signed by it (DNS-IDs: the domain, its
/// `conference.` service and the wildcard), written as PEM in a data directory of its own:
/// `tls/cert.pem` (leaf then CA: the harness's clients trust what that file holds) and
/// `tls/key.pem`.
struct CaSetup {
    ca_pem: PathBuf,
    dirs: Vec<(tempfile::TempDir, PathBuf, PathBuf)>,
    _ca: ca::Ca,
}

fn ca_setup(domains: &[&str]) -> CaSetup {
    let ca = ca::Ca::new("xmppd s2s test CA");
    let dirs = domains
        .iter()
        .map(|d| {
            ca.data_dir(
                d,
                vec![d.to_string(), format!("conference.{d}"), format!("*.{d}")],
            )
        })
        .collect();
    CaSetup {
        ca_pem: ca.pem.clone(),
        dirs,
        _ca: ca,
    }
}

/// Two servers with the CA's certificates (`--cert/--key`, `--s2s-ca`) and `extra` flags.
fn ca_pair(setup: &CaSetup, extra: &[&str]) -> (Server, Server) {
    let (pa, pb) = (free_port(), free_port());
    let ca = setup.ca_pem.to_str().unwrap().to_string();
    let mk = |i: usize, domain: &str, port: u16, peer: &str, peer_port: u16| {
        let (dir, cert, key) = &setup.dirs[i];
        let mut args = side_args(domain, port, peer, peer_port);
        args.extend([
            "--cert".into(),
            cert.to_str().unwrap().into(),
            "--key".into(),
            key.to_str().unwrap().into(),
            "--s2s-ca".into(),
            ca.clone(),
        ]);
        let args = with(&args, extra);
        Server::start_on(dir.path(), &strs(&args))
    };
    (
        mk(0, "a.test", pa, "b.test", pb),
        mk(1, "b.test", pb, "a.test", pa),
    )
}

/// EXT-S2S-01/02/03, CORE-S2S-04/09: with certificates from a CA both trust (`--s2s-ca`),
/// the streams authenticate by SASL EXTERNAL, not dialback, both ways (bidirectional streams
/// off, so that each side opens its own).
#[test]
fn ext_s2s_01_02_03_sasl_external_with_a_test_ca() {
    let setup = ca_setup(&["a.test", "b.test"]);
    let (a, b) = ca_pair(&setup, &["--s2s-no-bidi"]);
    let _g = dump(&a, &b);
    exchange(&a, &b);
    for (s, name) in [(&a, "A"), (&b, "B")] {
        let up = wait_line(s, &["s2s outgoing stream up"])
            .unwrap_or_else(|| panic!("{name}: no stream up; s2s log:\n{}", s2s_lines(s)));
        assert!(
            up.contains("sasl-external"),
            "{name}'s outgoing stream authenticated otherwise: {up}\n{}",
            s2s_lines(s)
        );
        assert!(
            log_line(&s.log(), &["s2s outgoing stream up", "dialback"]).is_none(),
            "{name}: a dialback stream:\n{}",
            s2s_lines(s)
        );
        assert!(
            wait_line(s, &["incoming stream authenticated (SASL EXTERNAL)"]).is_some(),
            "{name}: the incoming stream did not authenticate by EXTERNAL:\n{}",
            s2s_lines(s)
        );
    }
}

/// The metrics body of `s` (`--metrics-listen`).
fn metrics_text(s: &Server) -> String {
    use std::io::{Read, Write};
    let addr = s.metrics.expect("--metrics-listen");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    let _ = c.read_to_string(&mut body);
    body
}

/// The `xmppd_s2s_pairs` lines of `s`, waited for until `want` holds (a pair is listed when
/// its stream's task gets to it, a moment after the first stanza crossed).
fn pairs_until(s: &Server, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> = metrics_text(s)
            .lines()
            .filter(|l| l.starts_with("xmppd_s2s_pairs{"))
            .map(str::to_string)
            .collect();
        if want(&lines) || std::time::Instant::now() >= until {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `xmppd s2s` as a metrics family: every authenticated pair, by direction, domains and
/// authentication, with dialback (bidirectional streams off: each side opens its own); gone
/// when the streams close.
#[test]
fn s2s_open_streams_listed_in_metrics_by_pair() {
    let (a, b) = pair_with(
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--s2s-no-bidi",
            "--s2s-idle-timeout",
            "5",
        ],
        &["--s2s-no-bidi", "--s2s-idle-timeout", "5"],
    );
    let _g = dump(&a, &b);
    exchange(&a, &b);
    let out =
        "xmppd_s2s_pairs{direction=\"out\",local=\"a.test\",remote=\"b.test\",auth=\"dialback\"} 1";
    let inc =
        "xmppd_s2s_pairs{direction=\"in\",local=\"a.test\",remote=\"b.test\",auth=\"dialback\"} 1";
    let lines = pairs_until(&a, |l| {
        l.iter().any(|x| x == out) && l.iter().any(|x| x == inc)
    });
    assert!(lines.iter().any(|x| x == out), "{lines:#?}");
    assert!(lines.iter().any(|x| x == inc), "{lines:#?}");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    // Idle streams close (5 s without stanzas); their pairs leave the list.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let mut lines = lines;
    while !lines.is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        lines = pairs_until(&a, |_| true);
    }
    assert!(
        lines.is_empty(),
        "still listed after the idle timeout: {lines:#?}"
    );
}

/// XEP-0288 with SASL EXTERNAL: A's stream to B asks for bidirectionality, and B answers
/// over it: one connection carries both ways, B opens none (the reverse pair is
/// authenticated by the stream's certificate and `to`).
#[test]
fn xep0288_bidi_one_connection_both_ways_with_sasl_external() {
    let setup = ca_setup(&["a.test", "b.test"]);
    let (a, b) = ca_pair(&setup, &[]);
    let _g = dump(&a, &b);
    exchange(&a, &b);
    let up = wait_line(&a, &["s2s outgoing stream up"]).unwrap_or_default();
    assert!(
        up.contains("sasl-external") && up.contains("bidi=true"),
        "A's stream: {up}\n{}",
        s2s_lines(&a)
    );
    assert!(
        wait_line(
            &b,
            &[
                "carries our stanzas too (bidi)",
                "local=\"b.test\"",
                "remote=\"a.test\""
            ]
        )
        .is_some(),
        "B did not use A's stream:\n{}",
        s2s_lines(&b)
    );
    assert!(
        log_line(&b.log(), &["s2s outgoing stream up"]).is_none(),
        "B opened a stream of its own:\n{}",
        s2s_lines(&b)
    );
    assert!(
        log_line(&a.log(), &["incoming stream authenticated"]).is_none(),
        "B connected to A:\n{}",
        s2s_lines(&a)
    );
}

/// CORE-S2S-09, EXT-S2S-01: with valid certificates, dialback off and valid certificates
/// required on both sides, SASL EXTERNAL alone carries the messages.
#[test]
fn ext_s2s_01_sasl_external_alone_when_dialback_is_off() {
    let setup = ca_setup(&["a.test", "b.test"]);
    let (a, b) = ca_pair(&setup, &["--s2s-no-dialback", "--s2s-require-valid-cert"]);
    let _g = dump(&a, &b);
    exchange(&a, &b);
    let up = wait_line(&a, &["s2s outgoing stream up"]).unwrap_or_default();
    assert!(up.contains("sasl-external"), "{up}\n{}", s2s_lines(&a));
}

/// A message from a fresh alice to a fresh bob bounces with `condition`, from bob's JID.
fn expect_bounce(a: &Server, b: &Server, condition: &str) -> Element {
    let alice = User::new(a, "alice");
    let bob = User::new(b, "bob");
    let mut ca = alice.online(a, "phone");
    let mut cb = bob.online(b, "laptop");
    ca.send(&format!(
        "<message to='{}' type='chat' id='nb'><body>can you hear me</body></message>",
        bob.jid
    ));
    let (e, _) = ca.recv_until("bounce", |e| e.attr("id") == Some("nb"));
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    assert_eq!(e.attr("from"), Some(bob.jid.as_str()), "{e:?}");
    assert_eq!(e.attr("to"), Some(alice.full("phone").as_str()), "{e:?}");
    assert_eq!(
        stanza_error(&e).map(|x| x.0).as_deref(),
        Some(condition),
        "{e:?}\nA's s2s log:\n{}",
        s2s_lines(a)
    );
    let got = cb.collect_for(Duration::from_millis(300));
    assert!(got.iter().all(|e| e.name != "message"), "{got:?}");
    e
}

/// CORE-S2S-09: `--s2s-no-dialback` with self-signed certificates: no method in common
/// (EXTERNAL is not offered for a certificate that does not validate), so the message
/// bounces with remote-server-not-found.
#[test]
fn core_s2s_09_no_dialback_with_self_signed_certificates_bounces() {
    let (a, b) = pair(&["--s2s-no-dialback", "--s2s-connect-timeout", "8"]);
    let _g = dump(&a, &b);
    expect_bounce(&a, &b, "remote-server-not-found");
    assert!(
        log_line(&a.log(), &["s2s outgoing stream up"]).is_none(),
        "{}",
        s2s_lines(&a)
    );
    assert!(
        wait_line(
            &a,
            &["s2s stream failed", "no authentication method in common"]
        )
        .is_some(),
        "the reason: {}",
        s2s_lines(&a)
    );
}

/// CORE-S2S-09, EXT-S2S-04: `--s2s-require-valid-cert` with self-signed certificates: the
/// peer's certificate does not validate, so the message bounces.
#[test]
fn core_s2s_09_require_valid_cert_with_self_signed_certificates_bounces() {
    let (a, b) = pair(&["--s2s-require-valid-cert", "--s2s-connect-timeout", "8"]);
    let _g = dump(&a, &b);
    expect_bounce(&a, &b, "remote-server-not-found");
    assert!(
        log_line(&a.log(), &["s2s outgoing stream up"]).is_none(),
        "{}",
        s2s_lines(&a)
    );
    assert!(
        wait_line(&a, &["s2s stream failed", "certificate is"]).is_some(),
        "the reason: {}",
        s2s_lines(&a)
    );
}

/// The sending side alone requires valid certificates: its own outgoing stream refuses
/// B's self-signed certificate (B would have accepted dialback).
#[test]
fn core_s2s_09_require_valid_cert_on_the_sender_only_bounces() {
    let (a, b) = pair_with(
        &["--s2s-require-valid-cert", "--s2s-connect-timeout", "8"],
        &[],
    );
    let _g = dump(&a, &b);
    expect_bounce(&a, &b, "remote-server-not-found");
}

// ---------------------------------------------------------------------------------------------
// Restart of one side, several shards.

/// CORE-S2S-09 (durability): B restarts (a new process on the same data directory and
/// port); A's next message still gets through on a new outgoing stream. Twice: after a
/// clean stop (SIGTERM) and after a crash (SIGKILL).
#[test]
fn s2s_new_outgoing_stream_after_the_peer_restarts() {
    let (pa, pb) = (free_port(), free_port());
    let a_args = side_args("a.test", pa, "b.test", pb);
    let b_args = side_args("b.test", pb, "a.test", pa);
    let b_dir = tempfile::tempdir().unwrap();
    let a = Server::start(&strs(&a_args));
    let mut b = Server::start_on(b_dir.path(), &strs(&b_args));
    let alice = User::new(&a, "alice");
    let bob = User::new(&b, "bob");
    let mut ca = alice.online(&a, "phone");
    let mut round = 0;
    for sig in [None, Some(libc::SIGTERM), Some(libc::SIGKILL)] {
        if let Some(sig) = sig {
            let t = Instant::now();
            assert!(b.signal_and_wait(sig).is_some(), "B did not stop");
            drop(b);
            // A notices the stream is gone (closed or reset) before the next message.
            std::thread::sleep(Duration::from_millis(300));
            b = Server::start_on(b_dir.path(), &strs(&b_args));
            eprintln!("restart with signal {sig}: {:?}", t.elapsed());
        }
        let mut cb = bob.online(&b, "laptop");
        round += 1;
        let text = format!("round {round}");
        let t = Instant::now();
        ca.send(&format!(
            "<message to='{}' type='chat' id='r{round}'><body>{text}</body></message>",
            bob.jid
        ));
        let got = cb.try_recv(Duration::from_secs(15));
        let m = match got {
            Some(Event::El(m, _)) => m,
            other => panic!(
                "round {round}: got {other:?}; alice saw {:?}\nA's s2s log:\n{}\nB's s2s log:\n{}",
                ca.collect_for(Duration::from_millis(200)),
                s2s_lines(&a),
                s2s_lines(&b)
            ),
        };
        assert!(is_msg_body(&m, &text), "round {round}: {m:?}");
        eprintln!("round {round}: delivered in {:?}", t.elapsed());
        // And back.
        cb.send(&format!(
            "<message to='{}' type='chat'><body>ack {round}</body></message>",
            alice.full("phone")
        ));
        let ack = format!("ack {round}");
        ca.recv_until("ack", |e| is_msg_body(e, &ack));
    }
    let ups = a
        .log()
        .lines()
        .filter(|l| l.contains("s2s outgoing stream up"))
        .count();
    assert!(
        ups >= 3,
        "A opened a new stream each time: {ups}\n{}",
        s2s_lines(&a)
    );
}

/// Shards: with `--shards 2` on both servers and users homed on both shards, messages cross
/// in both directions between every pair (the incoming stream's shard, the remote domain's
/// home shard and the users' shards differ: the cross-shard dialback verification path).
#[test]
fn s2s_two_shards_each_side_all_pairs_both_ways() {
    let (a, b) = pair(&["--shards", "2"]);
    let _g = dump(&a, &b);
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for shard in 0..2 {
        let u = User::on_shard(&a, "alice", shard, 2);
        let c = u.online(&a, "r");
        alices.push((u, c));
        let u = User::on_shard(&b, "bob", shard, 2);
        let c = u.online(&b, "r");
        bobs.push((u, c));
    }
    // Indices, not iterators: each step borrows one alice and one bob mutably.
    #[allow(clippy::needless_range_loop)]
    for i in 0..2 {
        for j in 0..2 {
            let text = format!("a{i} to b{j}");
            let to = bobs[j].0.jid.clone();
            alices[i].1.send(&format!(
                "<message to='{to}' type='chat'><body>{text}</body></message>"
            ));
            let from = alices[i].0.full("r");
            let (m, _) = bobs[j].1.recv_until(&text, |e| is_msg_body(e, &text));
            assert_eq!(m.attr("from"), Some(from.as_str()), "{m:?}");
            let text = format!("b{j} to a{i}");
            let to = alices[i].0.jid.clone();
            bobs[j].1.send(&format!(
                "<message to='{to}' type='chat'><body>{text}</body></message>"
            ));
            let from = bobs[j].0.full("r");
            let (m, _) = alices[i].1.recv_until(&text, |e| is_msg_body(e, &text));
            assert_eq!(m.attr("from"), Some(from.as_str()), "{m:?}");
        }
    }
    // IQ round trips from every shard too (answers take the other stream back).
    for (u, c) in alices.iter_mut() {
        let id = next_id("v");
        c.send(&format!(
            "<iq type='get' id='{id}' to='b.test'><query xmlns='jabber:iq:version'/></iq>"
        ));
        let (r, _) = c.recv_until("version", |e| e.attr("id") == Some(id.as_str()));
        assert_eq!(r.attr("type"), Some("result"), "{}: {r:?}", u.jid);
    }
}

// ---------------------------------------------------------------------------------------------
// A raw peer server (`c.test`, played by the test) for what two xmppd cannot show: probes
// from a full JID as older servers send them (IM-PRES-17).

/// What a raw s2s connection read.
#[derive(Debug)]
enum RawEv {
    Header(xmppd::xml::StreamHeader),
    El(Element),
    Close,
    Eof,
}

/// One raw server-to-server TCP connection (plaintext: the server runs with
/// `--s2s-allow-plaintext`).
struct RawPeer {
    s: std::net::TcpStream,
    framer: xmppd::xml::Framer,
    buf: Vec<u8>,
    transcript: String,
}

impl RawPeer {
    fn new(s: std::net::TcpStream) -> RawPeer {
        s.set_nodelay(true).unwrap();
        RawPeer {
            s,
            framer: xmppd::xml::Framer::new(xmppd::xml::Limits::default()),
            buf: Vec::new(),
            transcript: String::new(),
        }
    }

    fn send(&mut self, x: &str) {
        use std::io::Write;
        self.s.write_all(x.as_bytes()).unwrap();
    }

    fn next(&mut self, d: Duration) -> Option<RawEv> {
        use std::io::Read;
        let deadline = Instant::now() + d;
        loop {
            let ev = match self.framer.next(&self.buf).expect("well-formed") {
                Some((frame, used)) => {
                    let ev = match frame {
                        xmppd::xml::Frame::StreamOpen(h) => Some(RawEv::Header(h)),
                        xmppd::xml::Frame::Element(raw) => Some(RawEv::El(
                            xmppd::xml::parse_element(
                                raw,
                                self.framer.stream_ns(),
                                &xmppd::xml::Limits::default(),
                            )
                            .unwrap(),
                        )),
                        xmppd::xml::Frame::Whitespace => None,
                        xmppd::xml::Frame::StreamClose => Some(RawEv::Close),
                    };
                    self.buf.drain(..used);
                    ev
                }
                None => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.s.set_read_timeout(Some(deadline - now)).unwrap();
                    let mut chunk = [0u8; 16384];
                    match self.s.read(&mut chunk) {
                        Ok(0) => return Some(RawEv::Eof),
                        Ok(n) => {
                            self.transcript
                                .push_str(&String::from_utf8_lossy(&chunk[..n]));
                            self.buf.extend_from_slice(&chunk[..n]);
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut =>
                        {
                            return None
                        }
                        Err(_) => return Some(RawEv::Eof),
                    }
                    None
                }
            };
            if let Some(ev) = ev {
                return Some(ev);
            }
        }
    }

    fn header(&mut self) -> xmppd::xml::StreamHeader {
        match self.next(TIMEOUT) {
            Some(RawEv::Header(h)) => h,
            other => panic!("expected a header, got {other:?}; {}", self.transcript),
        }
    }

    /// The next element matching `pred` (others are collected); bounded.
    fn until(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> (Element, Vec<Element>) {
        let mut skipped = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(RawEv::El(e)) if pred(&e) => return (e, skipped),
                Some(RawEv::El(e)) => skipped.push(e),
                other => panic!(
                    "waiting for {what}: got {other:?}; skipped {skipped:?}; transcript {}",
                    self.transcript
                ),
            }
        }
    }

    /// Elements arriving within `d`.
    fn collect_for(&mut self, d: Duration) -> Vec<Element> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left) {
                Some(RawEv::El(e)) => out.push(e),
                None => return out,
                Some(other) => panic!("collecting: got {other:?}; {}", self.transcript),
            }
        }
    }
}

const DB: &str = "jabber:server:dialback";
const S2S_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'";

/// `b.test` (plaintext allowed, `c.test` routed to a listener of the test) with both streams
/// to the fake `c.test` authenticated by dialback: (server, our incoming stream to B, B's
/// outgoing stream to us).
fn fake_c_test() -> (Server, RawPeer, RawPeer) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pc = listener.local_addr().unwrap().port();
    let route = format!("c.test=127.0.0.1:{pc}");
    let b = Server::start(&[
        "--domain",
        "b.test",
        "--s2s-allow-plaintext",
        "--s2s-route",
        &route,
    ]);
    // Our stream to B: header, features, our db:result.
    let mut inc = RawPeer::new(std::net::TcpStream::connect(b.s2s.expect("s2s port")).unwrap());
    inc.send(&format!(
        "{S2S_HEADER} from='c.test' to='b.test' version='1.0'>"
    ));
    let h = inc.header();
    assert_eq!(h.from.as_deref(), Some("b.test"), "CORE-S2S-02: {h:?}");
    assert_eq!(h.default_ns.as_deref(), Some("jabber:server"), "{h:?}");
    let in_id = h.id.clone().expect("stream id");
    let (f, _) = inc.until("features", |e| e.name == "features");
    let _ = f;
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    inc.send(&format!(
        "<db:result from='c.test' to='b.test'>{key}</db:result>"
    ));
    // B dials "back" to us: accept its outgoing stream (bounded).
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "B never connected to c.test");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    sock.set_nonblocking(false).unwrap();
    let mut out = RawPeer::new(sock);
    let h = out.header();
    assert_eq!(
        (h.from.as_deref(), h.to.as_deref()),
        (Some("b.test"), Some("c.test")),
        "{h:?}"
    );
    out.send(&format!(
        "{S2S_HEADER} from='c.test' to='b.test' id='fake-out-1' version='1.0'>\
         <stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"
    ));
    // B's own db:result for b.test→c.test and its db:verify of our key (DB-RECV-02), in
    // either order.
    let mut verified = false;
    let mut resulted = false;
    while !(verified && resulted) {
        let (e, _) = out.until("dialback", |e| e.ns == DB);
        match e.name.as_str() {
            "verify" => {
                assert_eq!(e.attr("from"), Some("b.test"), "DB-RECV-02: {e:?}");
                assert_eq!(e.attr("to"), Some("c.test"), "DB-RECV-02: {e:?}");
                assert_eq!(e.attr("id"), Some(in_id.as_str()), "DB-RECV-02: {e:?}");
                assert_eq!(e.text(), key, "DB-RECV-02: {e:?}");
                out.send(&format!(
                    "<db:verify from='c.test' to='b.test' id='{in_id}' type='valid'/>"
                ));
                verified = true;
            }
            "result" => {
                assert_eq!(e.attr("from"), Some("b.test"), "{e:?}");
                assert_eq!(e.attr("to"), Some("c.test"), "{e:?}");
                assert_eq!(e.attr("type"), None, "{e:?}");
                out.send("<db:result from='c.test' to='b.test' type='valid'/>");
                resulted = true;
            }
            _ => panic!("unexpected {e:?}"),
        }
    }
    // DB-RECV-03: our pair is valid on our stream.
    let (r, _) = inc.until("db:result valid", |e| e.ns == DB && e.name == "result");
    assert_eq!(r.attr("type"), Some("valid"), "DB-RECV-03: {r:?}");
    assert_eq!(
        (r.attr("from"), r.attr("to")),
        (Some("b.test"), Some("c.test")),
        "{r:?}"
    );
    (b, inc, out)
}

/// IM-PRES-17 (and IM-PRES-05/06, IM-SUB-09 from the remote side): an older server's probe
/// from a full JID is accepted and answered to that full JID; a bare-JID probe to the bare
/// JID; an unauthorized prober and a missing account reveal nothing.
#[test]
fn im_pres_17_probe_from_a_full_jid_is_answered_to_that_jid() {
    let (b, mut inc, mut out) = fake_c_test();
    let bob = User::new(&b, "bob");
    let bf = bob.full("laptop");
    let mut cb = bob.available(&b, "laptop", "<presence><status>here</status></presence>");
    // carol@c.test subscribes to bob, bob approves.
    inc.send(&format!(
        "<presence type='subscribe' from='carol@c.test' to='{}'/>",
        bob.jid
    ));
    cb.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some("carol@c.test"))
    });
    cb.send("<presence to='carol@c.test' type='subscribed'/>");
    let (got, _) = {
        let mut got = Vec::new();
        let (s, skipped) = out.until("subscribed", |e| {
            e.name == "presence" && e.attr("type") == Some("subscribed")
        });
        got.push(s);
        (got, skipped)
    };
    assert_eq!(got[0].attr("from"), Some(bob.jid.as_str()), "{:?}", got[0]);
    assert_eq!(got[0].attr("to"), Some("carol@c.test"), "{:?}", got[0]);
    // Every presence B sends us must carry `to` (CORE-S2S-05: we would be right to close the
    // stream otherwise): what is wrong is collected, so one run shows every path.
    let mut problems = Vec::new();
    let mut check_to = |what: &str, p: &Element, want: &str| {
        if p.attr("to") != Some(want) {
            problems.push(format!("{what}: expected to='{want}', got {p:?}"));
        }
    };
    // IM-SUB-09: then bob's current presence.
    let (p, _) = out.until("bob's presence", |e| {
        e.name == "presence" && e.attr("type").is_none() && e.attr("from") == Some(bf.as_str())
    });
    check_to("IM-SUB-09 presence after approval", &p, "carol@c.test");
    // IM-PRES-08: a broadcast to the new subscriber.
    cb.send("<presence><status>here</status></presence>");
    let (p, _) = out.until("bob's broadcast", |e| {
        e.name == "presence" && e.attr("type").is_none() && e.attr("from") == Some(bf.as_str())
    });
    check_to("IM-PRES-08 broadcast", &p, "carol@c.test");
    // IM-PRES-17: a probe from a full JID, answered to that full JID.
    inc.send(&format!(
        "<presence type='probe' from='carol@c.test/oldserver' to='{}' id='pr1'/>",
        bob.jid
    ));
    let (p, _) = out.until("probe answer", |e| {
        e.name == "presence" && e.attr("from") == Some(bf.as_str())
    });
    assert_eq!(p.attr("type"), None, "{p:?}");
    check_to(
        "IM-PRES-17 answer to a full-JID probe",
        &p,
        "carol@c.test/oldserver",
    );
    assert_eq!(
        p.child("status", "jabber:server")
            .or(p.child("status", "jabber:client"))
            .map(|s| s.text())
            .as_deref(),
        Some("here"),
        "IM-PRES-06: {p:?}"
    );
    // And from the bare JID, to the bare JID.
    inc.send(&format!(
        "<presence type='probe' from='carol@c.test' to='{}'/>",
        bob.jid
    ));
    let (p, _) = out.until("probe answer", |e| {
        e.name == "presence" && e.attr("from") == Some(bf.as_str())
    });
    check_to("IM-PRES-06 answer to a bare-JID probe", &p, "carol@c.test");
    // IM-PRES-09: unavailable.
    cb.send("<presence type='unavailable'/>");
    let (p, _) = out.until("bob unavailable", |e| {
        e.name == "presence" && e.attr("type") == Some("unavailable")
    });
    check_to("IM-PRES-09 unavailable broadcast", &p, "carol@c.test");
    cb.send("<presence><status>here</status></presence>");
    let _ = out.collect_for(Duration::from_millis(300));
    assert!(
        problems.is_empty(),
        "presence sent on s2s without its addressee:\n{}",
        problems.join("\n")
    );
    // IM-PRES-05: an unauthorized prober (bare or full) and a missing account reveal
    // nothing: `unsubscribed` at most.
    for (from, to) in [
        ("dave@c.test", bob.jid.as_str()),
        ("dave@c.test/old", bob.jid.as_str()),
        ("carol@c.test", "nobody@b.test"),
    ] {
        inc.send(&format!("<presence type='probe' from='{from}' to='{to}'/>"));
        for e in out.collect_for(Duration::from_millis(800)) {
            assert!(
                e.name != "presence" || e.attr("type") == Some("unsubscribed"),
                "IM-PRES-05: probe from {from} to {to} answered with {e:?}"
            );
        }
    }
    // The probes never reached bob's client.
    let got = cb.collect_for(Duration::from_millis(200));
    assert!(
        got.iter().all(|e| e.attr("type") != Some("probe")),
        "{got:?}"
    );
    // CORE-S2S-06: a stanza from a domain not verified on our stream closes it.
    inc.send(&format!(
        "<message from='eve@d.test' to='{}'><body>spoof</body></message>",
        bob.jid
    ));
    let (e, _) = inc.until("stream error", |e| e.name == "error");
    assert!(
        e.elements().any(|c| c.name == "invalid-from"),
        "CORE-S2S-06: {e:?}"
    );
    let got = cb.collect_for(Duration::from_millis(300));
    assert!(
        got.iter().all(|e| body(e).is_none()),
        "not delivered: {got:?}"
    );
}
