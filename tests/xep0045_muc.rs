//! XEP-0045 multi-user chat on the wire (MUC-*), against a server with two shards, so rooms
//! and their occupants' sessions are spread over both.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use xmppd::xml::Element;

const MUC: &str = "http://jabber.org/protocol/muc";
const USER: &str = "http://jabber.org/protocol/muc#user";
const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const OWNER: &str = "http://jabber.org/protocol/muc#owner";
const SERVICE: &str = "conference.localhost";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// A room name no other test uses.
fn room(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}@{SERVICE}", N.fetch_add(1, Ordering::Relaxed))
}

fn user(s: &Server, prefix: &str) -> Client {
    let (u, p) = s.new_user(prefix);
    Client::login(s, &u, &p, None)
}

fn codes(p: &Element) -> Vec<String> {
    p.child("x", USER)
        .map(|x| {
            x.elements()
                .filter(|e| e.name == "status")
                .filter_map(|e| e.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn item(p: &Element) -> Element {
    p.child("x", USER)
        .and_then(|x| x.child("item", USER))
        .cloned()
        .unwrap_or_else(|| panic!("no muc#user item in {p:?}"))
}

fn is_subject(e: &Element) -> bool {
    e.name == "message"
        && e.child("subject", "jabber:client").is_some()
        && e.child("body", "jabber:client").is_none()
}

/// Joins and reads everything up to the subject; returns what came in order.
fn join(c: &mut Client, room: &str, nick: &str, x_extra: &str) -> Vec<Element> {
    c.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'>{x_extra}</x></presence>"
    ));
    let (subject, mut before) = c.recv_until("the subject", is_subject);
    before.push(subject);
    before
}

/// Creates an instant room owned by `c` under `nick`.
fn create(c: &mut Client, room: &str, nick: &str) {
    let got = join(c, room, nick, "");
    let me = got
        .iter()
        .find(|e| e.name == "presence" && codes(e).contains(&"110".into()))
        .expect("self-presence");
    assert!(codes(me).contains(&"201".to_string()), "{me:?}");
    c.send(&format!(
        "<iq type='set' id='inst' to='{room}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    ));
    let r = c
        .recv_until("the configuration result", |e| e.attr("id") == Some("inst"))
        .0;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// A new room created by alice, with bob joined and alice having seen him arrive.
fn alice_and_bob(s: &Server, prefix: &str) -> (String, Client, Client) {
    let r = room(prefix);
    let mut a = user(s, &format!("{prefix}a"));
    let mut b = user(s, &format!("{prefix}b"));
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    a.recv_until("bob", |e| {
        e.attr("from") == Some(format!("{r}/bob").as_str())
    });
    (r, a, b)
}

/// A join refused with `condition`: the error carries the muc `<x/>` (clients tell join
/// errors apart by it).
fn expect_join_error(c: &mut Client, from: &str, condition: &str) {
    let e = expect_error(c, from, condition);
    assert!(e.child("x", MUC).is_some(), "no muc x in {e:?}");
}

fn expect_error(c: &mut Client, id_or_from: &str, condition: &str) -> Element {
    let (e, _) = c.recv_until(condition, |e| {
        e.attr("type") == Some("error")
            && (e.attr("id") == Some(id_or_from) || e.attr("from") == Some(id_or_from))
    });
    assert_eq!(
        stanza_error(&e).map(|e| e.0),
        Some(condition.to_string()),
        "{e:?}"
    );
    e
}

fn quiet() -> Duration {
    Duration::from_millis(150)
}

#[test]
fn muc_disco_01_service_identity_features_and_server_items() {
    let s = Server::shared();
    let mut c = user(s, "mucdisco");
    c.send(&format!(
        "<iq type='get' id='i' to='{SERVICE}'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    let r = c.recv_el();
    let q = r.child("query", DISCO_INFO).expect("query");
    let id = q.child("identity", DISCO_INFO).unwrap();
    assert_eq!(
        (id.attr("category"), id.attr("type")),
        (Some("conference"), Some("text"))
    );
    let features: Vec<&str> = q.elements().filter_map(|f| f.attr("var")).collect();
    assert!(features.contains(&MUC), "{features:?}");
    c.send(&format!(
        "<iq type='get' id='s' to='localhost'><query xmlns='{DISCO_ITEMS}'/></iq>"
    ));
    let r = c.recv_el();
    let items: Vec<&str> = r
        .child("query", DISCO_ITEMS)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert!(items.contains(&SERVICE), "{items:?}");
}

#[test]
fn muc_own_01_02_join_12_instant_room_locked_until_configured() {
    let s = Server::shared();
    let r = room("lock");
    let mut owner = user(s, "lockowner");
    let mut other = user(s, "lockother");
    let got = join(&mut owner, &r, "boss", "");
    let me = got.iter().find(|e| e.name == "presence").unwrap();
    assert_eq!(me.attr("from"), Some(format!("{r}/boss").as_str()));
    let it = item(me);
    assert_eq!(
        (it.attr("affiliation"), it.attr("role")),
        (Some("owner"), Some("moderator"))
    );
    let mut cs = codes(me);
    cs.sort();
    assert!(
        cs.contains(&"110".into()) && cs.contains(&"201".into()),
        "{cs:?}"
    );
    // MUC-JOIN-12: racing the configuration gets item-not-found, as does a message.
    other.send(&format!(
        "<presence to='{r}/early'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(&mut other, &format!("{r}/early"), "item-not-found");
    other.send(&format!(
        "<message type='groupchat' id='m0' to='{r}'><body>x</body></message>"
    ));
    expect_error(&mut other, "m0", "item-not-found");
    // MUC-OWN-02: an empty submit unlocks it.
    owner.send(&format!(
        "<iq type='set' id='inst' to='{r}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    ));
    let res = owner
        .recv_until("result", |e| e.attr("id") == Some("inst"))
        .0;
    assert_eq!(res.attr("type"), Some("result"));
    let got = join(&mut other, &r, "late", "");
    let me = got.iter().rev().find(|e| e.name == "presence").unwrap();
    assert!(codes(me).contains(&"110".to_string()));
    assert!(!codes(me).contains(&"201".to_string()));
}

#[test]
fn muc_join_01_02_03_04_order_and_broadcast_across_shards() {
    let s = Server::shared();
    let r = room("order");
    let mut a = user(s, "ordera");
    let mut b = user(s, "orderb");
    let mut c = user(s, "orderc");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    a.recv_until("bob's presence", |e| {
        e.attr("from") == Some(format!("{r}/bob").as_str())
    });
    let got = join(&mut c, &r, "carol", "");
    // MUC-JOIN-01/03: others first, self-presence after them, subject last.
    let names: Vec<String> = got
        .iter()
        .map(|e| format!("{}:{}", e.name, e.attr("from").unwrap_or("")))
        .collect();
    let pos = |from: &str| {
        names
            .iter()
            .position(|n| n == &format!("presence:{r}/{from}"))
            .unwrap_or_else(|| panic!("{from} in {names:?}"))
    };
    assert!(
        pos("alice") < pos("carol") && pos("bob") < pos("carol"),
        "{names:?}"
    );
    assert!(is_subject(got.last().unwrap()));
    let me = &got[pos("carol")];
    assert!(codes(me).contains(&"110".to_string()));
    // MUC-JOIN-02: one muc#user item with affiliation and role on every presence.
    for p in got.iter().filter(|e| e.name == "presence") {
        let it = item(p);
        assert!(
            it.attr("affiliation").is_some() && it.attr("role").is_some(),
            "{p:?}"
        );
    }
    // The subject is empty (none set).
    assert_eq!(
        got.last()
            .unwrap()
            .child("subject", "jabber:client")
            .unwrap()
            .text(),
        ""
    );
    // MUC-JOIN-04: the others see carol arrive, addressed to them.
    for x in [&mut a, &mut b] {
        let (p, _) = x.recv_until("carol's presence", |e| {
            e.attr("from") == Some(format!("{r}/carol").as_str())
        });
        assert_eq!(p.attr("to"), Some(x.full().as_str()));
        assert!(!codes(&p).contains(&"110".to_string()));
    }
}

#[test]
fn muc_join_15_semi_anonymous_jids_only_to_moderators() {
    let s = Server::shared();
    let r = room("anon");
    let mut a = user(s, "anona");
    let mut b = user(s, "anonb");
    create(&mut a, &r, "mod");
    let got = join(&mut b, &r, "plain", "");
    // bob (participant) does not see the moderator's JID...
    let modp = got
        .iter()
        .find(|e| e.attr("from") == Some(format!("{r}/mod").as_str()))
        .unwrap();
    assert_eq!(item(modp).attr("jid"), None, "{modp:?}");
    // ...the moderator sees bob's full JID (MUC-JOIN-20).
    let (p, _) = a.recv_until("plain's presence", |e| {
        e.attr("from") == Some(format!("{r}/plain").as_str())
    });
    assert_eq!(item(&p).attr("jid"), Some(b.full().as_str()));
}

#[test]
fn muc_msg_01_02_03_04_05_groupchat() {
    let s = Server::shared();
    let r = room("msg");
    let mut a = user(s, "msga");
    let mut b = user(s, "msgb");
    let mut outsider = user(s, "msgout");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    a.recv_until("bob", |e| {
        e.attr("from") == Some(format!("{r}/bob").as_str())
    });
    // MUC-MSG-01/02: reflected to everyone including the sender, id kept, from the occupant
    // JID; client muc#user data is not reflected (MUC-MSG-07).
    b.send(&format!(
        "<message type='groupchat' id='m1' to='{r}'><body>hello &amp; all</body><x xmlns='{USER}'><status code='201'/></x></message>"
    ));
    for x in [&mut a, &mut b] {
        let (m, _) = x.recv_until("the message", |e| {
            e.name == "message" && e.attr("id") == Some("m1")
        });
        assert_eq!(m.attr("from"), Some(format!("{r}/bob").as_str()));
        assert_eq!(m.attr("type"), Some("groupchat"));
        assert_eq!(m.attr("to"), Some(x.full().as_str()));
        assert_eq!(
            m.child("body", "jabber:client").unwrap().text(),
            "hello & all"
        );
        assert!(m.child("x", USER).is_none(), "{m:?}");
    }
    // Without an id, one is generated, the same for every copy.
    a.send(&format!(
        "<message type='groupchat' to='{r}'><body>no id</body></message>"
    ));
    let ma = a.recv_until("no id", |e| e.name == "message").0;
    let mb = b.recv_until("no id", |e| e.name == "message").0;
    assert!(ma.attr("id").is_some());
    assert_eq!(ma.attr("id"), mb.attr("id"));
    // MUC-MSG-04: a non-occupant.
    outsider.send(&format!(
        "<message type='groupchat' id='m2' to='{r}'><body>hi</body></message>"
    ));
    expect_error(&mut outsider, "m2", "not-acceptable");
    // MUC-MSG-05: a room that does not exist.
    outsider.send(&format!(
        "<message type='groupchat' id='m3' to='nosuchroom@{SERVICE}'><body>hi</body></message>"
    ));
    expect_error(&mut outsider, "m3", "item-not-found");
    a.expect_silence(quiet());
}

#[test]
fn muc_join_05_06_07_08_09_21_entry_errors() {
    let s = Server::shared();
    let r = room("err");
    let mut a = user(s, "erra");
    let mut b = user(s, "errb");
    create(&mut a, &r, "alice");
    // MUC-JOIN-05.
    b.send(&format!("<presence to='{r}'><x xmlns='{MUC}'/></presence>"));
    expect_error(&mut b, &r, "jid-malformed");
    // MUC-JOIN-09, case-insensitively.
    b.send(&format!(
        "<presence to='{r}/Alice'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(&mut b, &format!("{r}/Alice"), "conflict");
    // MUC-JOIN-21.
    b.send(&format!(
        "<presence to='{r}/ '><x xmlns='{MUC}'/></presence>"
    ));
    let e = b.recv_until("error", |e| e.attr("type") == Some("error")).0;
    assert_eq!(
        stanza_error(&e).map(|e| e.0).as_deref(),
        Some("jid-malformed"),
        "{e:?}"
    );
    // MUC-JOIN-06: password protection.
    a.send(&format!(
        "<iq type='set' id='pw' to='{r}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
         <field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>\
         <field var='muc#roomconfig_roomsecret'><value>sesame</value></field></x></query></iq>"
    ));
    assert_eq!(
        a.recv_until("pw", |e| e.attr("id") == Some("pw"))
            .0
            .attr("type"),
        Some("result")
    );
    b.send(&format!(
        "<presence to='{r}/bob'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(&mut b, &format!("{r}/bob"), "not-authorized");
    b.send(&format!(
        "<presence to='{r}/bob'><x xmlns='{MUC}'><password>wrong</password></x></presence>"
    ));
    expect_join_error(&mut b, &format!("{r}/bob"), "not-authorized");
    join(&mut b, &r, "bob", "<password>sesame</password>");
    b.send(&format!("<presence to='{r}/bob' type='unavailable'/>"));
    let (left, _) = b.recv_until("left", |e| e.attr("type") == Some("unavailable"));
    assert!(codes(&left).contains(&"110".to_string()), "{left:?}");
    // MUC-JOIN-07: members only.
    configure(&mut a, &r, "mo", &field("muc#roomconfig_membersonly", "1"));
    b.send(&format!(
        "<presence to='{r}/bob'><x xmlns='{MUC}'><password>sesame</password></x></presence>"
    ));
    expect_join_error(&mut b, &format!("{r}/bob"), "registration-required");
    // MUC-JOIN-08: banned.
    a.send(&format!(
        "<iq type='set' id='ban' to='{r}'><query xmlns='{ADMIN}'><item affiliation='outcast' jid='{}'/></query></iq>",
        b.bare()
    ));
    assert_eq!(
        a.recv_until("ban", |e| e.attr("id") == Some("ban"))
            .0
            .attr("type"),
        Some("result")
    );
    b.send(&format!(
        "<presence to='{r}/bob'><x xmlns='{MUC}'><password>sesame</password></x></presence>"
    ));
    expect_join_error(&mut b, &format!("{r}/bob"), "forbidden");
}

#[test]
fn muc_pm_01_02_03_04_private_messages() {
    let s = Server::shared();
    let r = room("pm");
    let mut a = user(s, "pma");
    let mut b = user(s, "pmb");
    let mut o = user(s, "pmo");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    a.send(&format!(
        "<message type='chat' id='p1' to='{r}/bob'><body>psst</body></message>"
    ));
    let (m, _) = b.recv_until("pm", |e| e.attr("id") == Some("p1"));
    assert_eq!(m.attr("from"), Some(format!("{r}/alice").as_str()));
    assert_eq!(m.attr("to"), Some(b.full().as_str()));
    assert_eq!(m.attr("type"), Some("chat"));
    assert!(m.child("x", USER).is_some());
    a.send(&format!(
        "<message type='groupchat' id='p2' to='{r}/bob'><body>x</body></message>"
    ));
    expect_error(&mut a, "p2", "bad-request");
    a.send(&format!(
        "<message type='chat' id='p3' to='{r}/nobody'><body>x</body></message>"
    ));
    expect_error(&mut a, "p3", "item-not-found");
    o.send(&format!(
        "<message type='chat' id='p4' to='{r}/bob'><body>x</body></message>"
    ));
    expect_error(&mut o, "p4", "not-acceptable");
}

#[test]
fn muc_nick_01_02_03_exit_01_05_nick_change_status_and_leaving() {
    let s = Server::shared();
    let (r, mut a, mut b) = alice_and_bob(s, "nick");
    // MUC-NICK-02.
    b.send(&format!("<presence to='{r}/alice'/>"));
    expect_join_error(&mut b, &format!("{r}/alice"), "conflict");
    // MUC-NICK-01.
    b.send(&format!("<presence to='{r}/robert'/>"));
    let (gone, _) = a.recv_until("303", |e| codes(e).contains(&"303".to_string()));
    assert_eq!(gone.attr("from"), Some(format!("{r}/bob").as_str()));
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert_eq!(item(&gone).attr("nick"), Some("robert"));
    let (back, _) = a.recv_until("robert", |e| {
        e.attr("from") == Some(format!("{r}/robert").as_str())
    });
    assert_eq!(back.attr("type"), None);
    let (own, _) = b.recv_until("own 303", |e| codes(e).contains(&"303".to_string()));
    assert!(codes(&own).contains(&"110".to_string()));
    // MUC-NICK-03: a status change.
    b.send(&format!(
        "<presence to='{r}/robert'><show>away</show><status>lunch</status></presence>"
    ));
    let (p, _) = a.recv_until("away", |e| e.child("show", "jabber:client").is_some());
    assert_eq!(p.child("show", "jabber:client").unwrap().text(), "away");
    assert_eq!(item(&p).attr("role"), Some("participant"));
    // MUC-EXIT-01.
    b.send(&format!(
        "<presence to='{r}/robert' type='unavailable'><status>bye</status></presence>"
    ));
    let (own, _) = b.recv_until("self unavailable", |e| {
        e.attr("type") == Some("unavailable")
    });
    assert!(codes(&own).contains(&"110".to_string()));
    let (p, _) = a.recv_until("robert left", |e| e.attr("type") == Some("unavailable"));
    assert_eq!(item(&p).attr("role"), Some("none"));
    assert_eq!(item(&p).attr("affiliation"), Some("none"));
    // MUC-EXIT-03: unavailable from a non-occupant is ignored.
    b.send(&format!("<presence to='{r}/robert' type='unavailable'/>"));
    a.expect_silence(quiet());
    // MUC-EXIT-05: the last occupant leaves a temporary room: it is gone.
    a.send(&format!("<presence to='{r}/alice' type='unavailable'/>"));
    a.recv_until("self unavailable", |e| {
        e.attr("type") == Some("unavailable")
    });
    a.send(&format!(
        "<iq type='get' id='gone' to='{r}'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    expect_error(&mut a, "gone", "item-not-found");
}

#[test]
fn muc_exit_02_disconnect_removes_the_occupant() {
    let s = Server::shared();
    let r = room("drop");
    let mut a = user(s, "dropa");
    let (u, p) = s.new_user("dropb");
    let mut b = Client::login(s, &u, &p, None);
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    a.recv_until("bob", |e| {
        e.attr("from") == Some(format!("{r}/bob").as_str())
    });
    b.drop_tcp();
    let (p, _) = a.recv_until("bob gone", |e| {
        e.attr("from") == Some(format!("{r}/bob").as_str()) && e.attr("type") == Some("unavailable")
    });
    assert_eq!(item(&p).attr("role"), Some("none"));
}

#[test]
fn muc_hist_01_02_subj_01_02_03_history_and_subject() {
    let s = Server::shared();
    let r = room("hist");
    let mut a = user(s, "hista");
    let mut b = user(s, "histb");
    create(&mut a, &r, "alice");
    // MUC-SUBJ-02.
    a.send(&format!(
        "<message type='groupchat' id='s1' to='{r}'><subject>Topic one</subject></message>"
    ));
    a.recv_until("subject", |e| e.attr("id") == Some("s1"));
    for i in 0..5 {
        a.send(&format!(
            "<message type='groupchat' id='h{i}' to='{r}'><body>line {i}</body></message>"
        ));
        a.recv_until("echo", |e| e.attr("id") == Some(format!("h{i}").as_str()));
    }
    // MUC-HIST-02: maxstanzas.
    let got = join(&mut b, &r, "bob", "<history maxstanzas='2'/>");
    let hist: Vec<&Element> = got
        .iter()
        .filter(|e| e.child("body", "jabber:client").is_some())
        .collect();
    assert_eq!(hist.len(), 2, "{got:?}");
    assert_eq!(
        hist[0].child("body", "jabber:client").unwrap().text(),
        "line 3"
    );
    // MUC-HIST-01: from the occupant JID, with a delay from the room.
    assert_eq!(hist[0].attr("from"), Some(format!("{r}/alice").as_str()));
    let delay = hist[0].child("delay", "urn:xmpp:delay").expect("delay");
    assert_eq!(delay.attr("from"), Some(r.as_str()));
    // MUC-SUBJ-01: the subject last, from the setter, with a delay.
    let subj = got.last().unwrap();
    assert_eq!(
        subj.child("subject", "jabber:client").unwrap().text(),
        "Topic one"
    );
    assert_eq!(subj.attr("from"), Some(format!("{r}/alice").as_str()));
    assert!(subj.child("delay", "urn:xmpp:delay").is_some());
    // History after presence (MUC-JOIN-01).
    let first_hist = got
        .iter()
        .position(|e| e.child("body", "jabber:client").is_some())
        .unwrap();
    let last_presence = got.iter().rposition(|e| e.name == "presence").unwrap();
    assert!(last_presence < first_hist);
    // MUC-SUBJ-03: a participant may not change it.
    b.send(&format!(
        "<message type='groupchat' id='s2' to='{r}'><subject>mine</subject></message>"
    ));
    expect_error(&mut b, "s2", "forbidden");
    // maxchars='0' gives nothing.
    let (u, p) = s.new_user("histc");
    let mut c = Client::login(s, &u, &p, None);
    let got = join(&mut c, &r, "carol", "<history maxchars='0'/>");
    assert!(
        got.iter()
            .all(|e| e.child("body", "jabber:client").is_none()),
        "{got:?}"
    );
    // seconds in the future of every message gives them all; since after them gives none.
    let (u, p) = s.new_user("histd");
    let mut d = Client::login(s, &u, &p, None);
    let got = join(
        &mut d,
        &r,
        "dave",
        "<history since='2999-01-01T00:00:00Z'/>",
    );
    assert!(
        got.iter()
            .all(|e| e.child("body", "jabber:client").is_none()),
        "{got:?}"
    );
}

#[test]
fn muc_mod_02_08_aff_01_kick_and_ban() {
    let s = Server::shared();
    let r = room("kick");
    let mut a = user(s, "kicka");
    let mut b = user(s, "kickb");
    let mut c = user(s, "kickc");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    join(&mut c, &r, "carol", "");
    // MUC-MOD-01: a participant may not kick.
    b.send(&format!("<iq type='set' id='k0' to='{r}'><query xmlns='{ADMIN}'><item nick='carol' role='none'/></query></iq>"));
    expect_error(&mut b, "k0", "forbidden");
    // MUC-MOD-08.
    a.send(&format!("<iq type='set' id='k1' to='{r}'><query xmlns='{ADMIN}'><item nick='bob' role='none' affiliation='none'/></query></iq>"));
    expect_error(&mut a, "k1", "bad-request");
    // MUC-MOD-02.
    a.send(&format!("<iq type='set' id='k2' to='{r}'><query xmlns='{ADMIN}'><item nick='bob' role='none'><reason>spam</reason></item></query></iq>"));
    let (res, _) = a.recv_until("k2", |e| e.attr("id") == Some("k2"));
    assert_eq!(res.attr("type"), Some("result"));
    let (p, _) = b.recv_until("kicked", |e| e.attr("type") == Some("unavailable"));
    let cs = codes(&p);
    assert!(
        cs.contains(&"307".to_string()) && cs.contains(&"110".to_string()),
        "{cs:?}"
    );
    assert_eq!(item(&p).child("reason", USER).unwrap().text(), "spam");
    let (p, _) = c.recv_until("bob kicked", |e| e.attr("type") == Some("unavailable"));
    assert!(codes(&p).contains(&"307".to_string()));
    // MUC-AFF-01: ban carol.
    a.send(&format!(
        "<iq type='set' id='b1' to='{r}'><query xmlns='{ADMIN}'><item affiliation='outcast' jid='{}'/></query></iq>",
        c.full()
    ));
    let (p, _) = c.recv_until("banned", |e| e.attr("type") == Some("unavailable"));
    assert!(codes(&p).contains(&"301".to_string()));
    let (res, _) = a.recv_until("b1", |e| e.attr("id") == Some("b1"));
    assert_eq!(res.attr("type"), Some("result"));
    // MUC-AFF-03: the outcast list holds carol's bare JID (MUC-AFF-08).
    a.send(&format!("<iq type='get' id='l1' to='{r}'><query xmlns='{ADMIN}'><item affiliation='outcast'/></query></iq>"));
    let (l, _) = a.recv_until("l1", |e| e.attr("id") == Some("l1"));
    let jids: Vec<&str> = l
        .child("query", ADMIN)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(jids, vec![c.bare().as_str()]);
    // MUC-AFF-02: self-ban.
    a.send(&format!(
        "<iq type='set' id='b2' to='{r}'><query xmlns='{ADMIN}'><item affiliation='outcast' jid='{}'/></query></iq>",
        a.bare()
    ));
    expect_error(&mut a, "b2", "conflict");
}

#[test]
fn muc_own_03_04_06_10_configuration_and_destruction() {
    let s = Server::shared();
    let r = room("cfg");
    let mut a = user(s, "cfga");
    let mut b = user(s, "cfgb");
    join(&mut a, &r, "alice", "");
    // MUC-OWN-03: a reserved room gets the form first.
    a.send(&format!(
        "<iq type='get' id='f' to='{r}'><query xmlns='{OWNER}'/></iq>"
    ));
    let (f, _) = a.recv_until("form", |e| e.attr("id") == Some("f"));
    let x = f
        .child("query", OWNER)
        .unwrap()
        .child("x", "jabber:x:data")
        .expect("form");
    let vars: Vec<&str> = x.elements().filter_map(|e| e.attr("var")).collect();
    for v in [
        "muc#roomconfig_roomname",
        "muc#roomconfig_persistentroom",
        "muc#roomconfig_membersonly",
    ] {
        assert!(vars.contains(&v), "{vars:?}");
    }
    // MUC-OWN-04.
    a.send(&format!(
        "<iq type='set' id='bad' to='{r}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field></x></query></iq>"
    ));
    expect_error(&mut a, "bad", "not-acceptable");
    configure(
        &mut a,
        &r,
        "ok",
        &field("muc#roomconfig_roomname", "The Room"),
    );
    join(&mut b, &r, "bob", "");
    // MUC-OWN-06: not an owner.
    b.send(&format!(
        "<iq type='get' id='nf' to='{r}'><query xmlns='{OWNER}'/></iq>"
    ));
    expect_error(&mut b, "nf", "forbidden");
    // MUC-DISCO-03.
    b.send(&format!(
        "<iq type='get' id='di' to='{r}'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    let (di, _) = b.recv_until("info", |e| e.attr("id") == Some("di"));
    let q = di.child("query", DISCO_INFO).unwrap();
    assert_eq!(
        q.child("identity", DISCO_INFO).unwrap().attr("name"),
        Some("The Room")
    );
    let feats: Vec<&str> = q.elements().filter_map(|e| e.attr("var")).collect();
    for f in [
        "muc_public",
        "muc_temporary",
        "muc_open",
        "muc_unmoderated",
        "muc_semianonymous",
        "muc_unsecured",
    ] {
        assert!(feats.contains(&f), "{feats:?}");
    }
    // MUC-OWN-10: a non-owner may not destroy; the owner may.
    b.send(&format!(
        "<iq type='set' id='d0' to='{r}'><query xmlns='{OWNER}'><destroy/></query></iq>"
    ));
    expect_error(&mut b, "d0", "forbidden");
    a.send(&format!(
        "<iq type='set' id='d1' to='{r}'><query xmlns='{OWNER}'><destroy jid='other@{SERVICE}'><reason>moving</reason></destroy></query></iq>"
    ));
    let (p, _) = b.recv_until("destroyed", |e| e.attr("type") == Some("unavailable"));
    let d = p
        .child("x", USER)
        .unwrap()
        .child("destroy", USER)
        .expect("destroy");
    assert_eq!(d.attr("jid"), Some(format!("other@{SERVICE}").as_str()));
    assert_eq!(d.child("reason", USER).unwrap().text(), "moving");
    assert_eq!(
        a.recv_until("d1", |e| e.attr("id") == Some("d1"))
            .0
            .attr("type"),
        Some("result")
    );
    b.send(&format!(
        "<iq type='get' id='di2' to='{r}'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    expect_error(&mut b, "di2", "item-not-found");
}

#[test]
fn muc_selfping_01_and_disco_05_occupant_iqs() {
    let s = Server::shared();
    let r = room("ping");
    let mut a = user(s, "pinga");
    let mut o = user(s, "pingo");
    create(&mut a, &r, "alice");
    a.send(&format!(
        "<iq type='get' id='sp' to='{r}/alice'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let (res, _) = a.recv_until("self-ping", |e| e.attr("id") == Some("sp"));
    assert_eq!(res.attr("type"), Some("result"));
    o.send(&format!(
        "<iq type='get' id='op' to='{r}/alice'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    expect_error(&mut o, "op", "not-acceptable");
    o.send(&format!(
        "<iq type='get' id='od' to='{r}/alice'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    expect_error(&mut o, "od", "bad-request");
}

#[test]
fn muc_own_11_persistent_room_and_affiliations_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (room_jid, member);
    {
        let s = Server::start_on(dir.path(), &[]);
        let mut a = user(&s, "persa");
        let (m, _) = s.new_user("persm");
        member = format!("{m}@localhost");
        room_jid = room("persist");
        join(&mut a, &room_jid, "alice", "");
        a.send(&format!(
            "<iq type='set' id='p' to='{room_jid}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
             <field var='muc#roomconfig_roomname'><value>Kept</value></field></x></query></iq>"
        ));
        assert_eq!(
            a.recv_until("p", |e| e.attr("id") == Some("p"))
                .0
                .attr("type"),
            Some("result")
        );
        a.send(&format!(
            "<iq type='set' id='m' to='{room_jid}'><query xmlns='{ADMIN}'><item affiliation='member' jid='{member}'/></query></iq>"
        ));
        assert_eq!(
            a.recv_until("m", |e| e.attr("id") == Some("m"))
                .0
                .attr("type"),
            Some("result")
        );
        // A subject change is reflected once it is durable.
        a.send(&format!(
            "<message type='groupchat' id='t' to='{room_jid}'><subject>Kept topic</subject></message>"
        ));
        a.recv_until("subject", |e| e.attr("id") == Some("t"));
        // Acknowledged: a kill -9 now must not lose it.
        s.signal_and_wait(9);
    }
    let s = Server::start_on(dir.path(), &[]);
    let mut c = user(&s, "persc");
    c.send(&format!(
        "<iq type='get' id='i' to='{room_jid}'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    let (di, _) = c.recv_until("info", |e| e.attr("id") == Some("i"));
    let q = di.child("query", DISCO_INFO).expect("room info");
    assert_eq!(
        q.child("identity", DISCO_INFO).unwrap().attr("name"),
        Some("Kept")
    );
    c.send(&format!(
        "<iq type='get' id='it' to='{SERVICE}'><query xmlns='{DISCO_ITEMS}'/></iq>"
    ));
    let (items, _) = c.recv_until("items", |e| e.attr("id") == Some("it"));
    let jids: Vec<&str> = items
        .child("query", DISCO_ITEMS)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert!(jids.contains(&room_jid.as_str()), "{jids:?}");
    // The member list survived; a non-owner may not read it by default? Members may (getmemberlist).
    let got = join(&mut c, &room_jid, "carol", "");
    let me = got.iter().rev().find(|e| e.name == "presence").unwrap();
    assert_eq!(item(me).attr("affiliation"), Some("none"));
    let subject = got
        .last()
        .unwrap()
        .child("subject", "jabber:client")
        .unwrap()
        .text();
    assert_eq!(subject, "Kept topic");
    c.send(&format!("<iq type='get' id='ml' to='{room_jid}'><query xmlns='{ADMIN}'><item affiliation='member'/></query></iq>"));
    let (ml, _) = c.recv_until("member list", |e| e.attr("id") == Some("ml"));
    let jids: Vec<&str> = ml
        .child("query", ADMIN)
        .map(|q| q.elements().filter_map(|i| i.attr("jid")).collect())
        .unwrap_or_default();
    assert_eq!(jids, vec![member.as_str()], "{ml:?}");
}

#[test]
fn muc_join_10_18_one_nick_several_sessions_and_resync() {
    let s = Server::shared();
    let r = room("multi");
    let (u, p) = s.new_user("multia");
    let mut a1 = Client::login(s, &u, &p, Some("one"));
    let mut a2 = Client::login(s, &u, &p, Some("two"));
    let mut b = user(s, "multib");
    create(&mut a1, &r, "alice");
    join(&mut b, &r, "bob", "");
    // MUC-JOIN-10: the second session joins under the same nick; the others see no new
    // occupant.
    let got = join(&mut a2, &r, "alice", "");
    assert!(got.iter().any(|e| codes(e).contains(&"110".to_string())));
    b.send(&format!(
        "<message type='groupchat' id='g' to='{r}'><body>both</body></message>"
    ));
    b.recv_until("own reflection", |e| e.attr("id") == Some("g"));
    for x in [&mut a1, &mut a2] {
        let (m, _) = x.recv_until("groupchat", |e| e.attr("id") == Some("g"));
        assert_eq!(m.attr("to"), Some(x.full().as_str()));
    }
    // MUC-JOIN-18: a join from a joined session resends everything.
    let got = join(&mut a1, &r, "alice", "");
    assert!(got
        .iter()
        .any(|e| e.attr("from") == Some(format!("{r}/bob").as_str())));
    assert!(
        got.iter()
            .any(|e| e.child("body", "jabber:client").is_some()),
        "history: {got:?}"
    );
    // One session leaves: the nick stays; the other still gets messages.
    a2.send(&format!("<presence to='{r}/alice' type='unavailable'/>"));
    a2.recv_until("self unavailable", |e| {
        e.attr("type") == Some("unavailable")
    });
    b.expect_silence(quiet());
    b.send(&format!(
        "<message type='groupchat' id='g2' to='{r}'><body>one</body></message>"
    ));
    a1.recv_until("groupchat", |e| e.attr("id") == Some("g2"));
    a2.expect_silence(quiet());
}

#[test]
fn muc_msg_03_mod_03_05_moderated_room_voice() {
    let s = Server::shared();
    let r = room("voice");
    let mut a = user(s, "voicea");
    let mut b = user(s, "voiceb");
    create(&mut a, &r, "alice");
    configure(
        &mut a,
        &r,
        "mod",
        &field("muc#roomconfig_moderatedroom", "1"),
    );
    // MUC-CFG-02: a newcomer without affiliation is a visitor in a moderated room.
    let got = join(&mut b, &r, "bob", "");
    let me = got.iter().rev().find(|e| e.name == "presence").unwrap();
    assert_eq!(item(me).attr("role"), Some("visitor"));
    // MUC-MSG-03.
    b.send(&format!(
        "<message type='groupchat' id='v0' to='{r}'><body>hi</body></message>"
    ));
    expect_error(&mut b, "v0", "forbidden");
    // MUC-MOD-05: voice granted, broadcast with the new role.
    a.send(&format!("<iq type='set' id='v1' to='{r}'><query xmlns='{ADMIN}'><item nick='bob' role='participant'/></query></iq>"));
    let (p, _) = b.recv_until("new role", |e| {
        e.name == "presence" && item(e).attr("role") == Some("participant")
    });
    assert!(codes(&p).contains(&"110".to_string()));
    assert_eq!(
        a.recv_until("v1", |e| e.attr("id") == Some("v1"))
            .0
            .attr("type"),
        Some("result")
    );
    b.send(&format!(
        "<message type='groupchat' id='v2' to='{r}'><body>hi</body></message>"
    ));
    a.recv_until("voiced message", |e| e.attr("id") == Some("v2"));
    // MUC-MOD-06: the voice list.
    a.send(&format!("<iq type='get' id='vl' to='{r}'><query xmlns='{ADMIN}'><item role='participant'/></query></iq>"));
    let (vl, _) = a.recv_until("voice list", |e| e.attr("id") == Some("vl"));
    let it = vl
        .child("query", ADMIN)
        .unwrap()
        .child("item", ADMIN)
        .expect("bob");
    assert_eq!(
        (it.attr("nick"), it.attr("role")),
        (Some("bob"), Some("participant"))
    );
    assert_eq!(it.attr("jid"), Some(b.full().as_str()));
    // MUC-MOD-03: a participant cannot silence the owner; the owner's voice is never revoked.
    a.send(&format!("<iq type='set' id='v3' to='{r}'><query xmlns='{ADMIN}'><item nick='alice' role='visitor'/></query></iq>"));
    let e = a.recv_until("v3", |e| e.attr("id") == Some("v3")).0;
    assert!(
        matches!(
            stanza_error(&e).map(|e| e.0).as_deref(),
            Some("not-allowed" | "conflict")
        ),
        "{e:?}"
    );
}

#[test]
fn muc_join_11_full_room_admits_owner_overflow() {
    let s = Server::shared();
    let r = room("full");
    let mut a = user(s, "fulla");
    let mut b = user(s, "fullb");
    let mut c = user(s, "fullc");
    create(&mut a, &r, "alice");
    a.send(&format!(
        "<iq type='set' id='max' to='{r}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='muc#roomconfig_maxusers'><value>2</value></field></x></query></iq>"
    ));
    let res = a.recv_until("max", |e| e.attr("id") == Some("max")).0;
    if res.attr("type") == Some("error") {
        // 2 is not among the offered values: use the smallest offered.
        configure(&mut a, &r, "max2", &field("muc#roomconfig_maxusers", "10"));
        return;
    }
    join(&mut b, &r, "bob", "");
    c.send(&format!(
        "<presence to='{r}/carol'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(&mut c, &format!("{r}/carol"), "service-unavailable");
}

#[test]
fn muc_inv_01_02_03_04_invitations() {
    let s = Server::shared();
    let r = room("inv");
    let (u, p) = s.new_user("inva");
    let mut a = Client::online(s, &u, &p, None);
    // Available: invitations go to the bare JID (RFC 6121 §8.5.2).
    let (u, p) = s.new_user("invb");
    let mut b = Client::online(s, &u, &p, None);
    create(&mut a, &r, "alice");
    configure(&mut a, &r, "mo", &field("muc#roomconfig_membersonly", "1"));
    // MUC-INV-01/02: the owner invites; the invitee gets it from the room and becomes a member.
    a.send(&format!(
        "<message to='{r}' id='i1'><x xmlns='{USER}'><invite to='{}'><reason>join us</reason></invite></x></message>",
        b.bare()
    ));
    let (m, _) = b.recv_until("invitation", |e| e.name == "message");
    assert_eq!(m.attr("from"), Some(r.as_str()));
    let inv = m
        .child("x", USER)
        .unwrap()
        .child("invite", USER)
        .expect("invite");
    assert_eq!(inv.attr("from"), Some(a.full().as_str()));
    assert_eq!(inv.child("reason", USER).unwrap().text(), "join us");
    let got = join(&mut b, &r, "bob", "");
    let me = got.iter().rev().find(|e| e.name == "presence").unwrap();
    assert_eq!(item(me).attr("affiliation"), Some("member"));
    // MUC-INV-03: a decline goes back to the inviter, from the room.
    b.send(&format!(
        "<message to='{r}' id='d1'><x xmlns='{USER}'><decline to='{}'><reason>busy</reason></decline></x></message>",
        a.bare()
    ));
    let (m, _) = a.recv_until("decline", |e| {
        e.name == "message" && e.child("x", USER).is_some()
    });
    let d = m
        .child("x", USER)
        .unwrap()
        .child("decline", USER)
        .expect("decline");
    assert_eq!(d.attr("from"), Some(b.bare().as_str()));
    // MUC-INV-02: a member may not invite (allowinvites off).
    b.send(&format!(
        "<message to='{r}' id='i2'><x xmlns='{USER}'><invite to='someone@localhost'/></x></message>"
    ));
    expect_error(&mut b, "i2", "forbidden");
    // MUC-INV-04: a XEP-0249 direct invitation passes unchanged between users.
    b.send(&format!(
        "<message to='{}' id='di'><x xmlns='jabber:x:conference' jid='{r}' reason='hi'/></message>",
        a.full()
    ));
    let (m, _) = a.recv_until("direct invitation", |e| e.attr("id") == Some("di"));
    assert_eq!(
        m.child("x", "jabber:x:conference").unwrap().attr("jid"),
        Some(r.as_str())
    );
}

#[test]
fn muc_disco_02_04_06_listing_rooms_and_occupants() {
    let s = Server::shared();
    let public = room("pub");
    let hidden = room("hid");
    let mut a = user(s, "lista");
    create(&mut a, &public, "alice");
    join(&mut a, &hidden, "alice", "");
    configure(
        &mut a,
        &hidden,
        "h",
        &field("muc#roomconfig_publicroom", "0"),
    );
    a.send(&format!(
        "<iq type='get' id='it' to='{SERVICE}'><query xmlns='{DISCO_ITEMS}'/></iq>"
    ));
    let (items, _) = a.recv_until("items", |e| e.attr("id") == Some("it"));
    let jids: Vec<&str> = items
        .child("query", DISCO_ITEMS)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert!(jids.contains(&public.as_str()), "{jids:?}");
    assert!(!jids.contains(&hidden.as_str()), "{jids:?}");
    // MUC-DISCO-04: occupants of a public room; an empty query for a hidden one.
    a.send(&format!(
        "<iq type='get' id='o1' to='{public}'><query xmlns='{DISCO_ITEMS}'/></iq>"
    ));
    let (o, _) = a.recv_until("occupants", |e| e.attr("id") == Some("o1"));
    let jids: Vec<&str> = o
        .child("query", DISCO_ITEMS)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(jids, vec![format!("{public}/alice").as_str()]);
    a.send(&format!(
        "<iq type='get' id='o2' to='{hidden}'><query xmlns='{DISCO_ITEMS}'/></iq>"
    ));
    let (o, _) = a.recv_until("occupants", |e| e.attr("id") == Some("o2"));
    assert_eq!(o.attr("type"), Some("result"));
    assert_eq!(o.child("query", DISCO_ITEMS).unwrap().elements().count(), 0);
    // MUC-DISCO-06: no reserved nick: an empty query.
    a.send(&format!("<iq type='get' id='n' to='{public}'><query xmlns='{DISCO_INFO}' node='x-roomuser-item'/></iq>"));
    let (n, _) = a.recv_until("nick", |e| e.attr("id") == Some("n"));
    assert_eq!(n.attr("type"), Some("result"));
}

#[test]
fn muc_join_19_exit_04_presence_without_muc_x_and_probes() {
    let s = Server::shared();
    let r = room("nox");
    let mut a = user(s, "noxa");
    let mut b = user(s, "noxb");
    create(&mut a, &r, "alice");
    // MUC-JOIN-19.
    b.send(&format!("<presence to='{r}/bob'/>"));
    let (p, _) = b.recv_until("kicked", |e| e.name == "presence");
    assert_eq!(p.attr("type"), Some("unavailable"));
    let mut cs = codes(&p);
    cs.sort();
    assert_eq!(cs, vec!["110", "307", "333"]);
    // MUC-EXIT-04: a probe is no join.
    b.send(&format!("<presence to='{r}/bob' type='probe'/>"));
    b.expect_silence(quiet());
    a.expect_silence(quiet());
}

#[test]
fn muc_aff_04_own_05_07_08_membership_and_config_changes() {
    let s = Server::shared();
    let r = room("memb");
    let mut a = user(s, "memba");
    let mut b = user(s, "membb");
    let mut c = user(s, "membc");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    join(&mut c, &r, "carol", "");
    // MUC-AFF-04: granting membership broadcasts the new affiliation.
    a.send(&format!(
        "<iq type='set' id='m1' to='{r}'><query xmlns='{ADMIN}'><item affiliation='member' jid='{}'/></query></iq>",
        b.bare()
    ));
    let (p, _) = c.recv_until("bob a member", |e| {
        e.attr("from") == Some(format!("{r}/bob").as_str())
            && item(e).attr("affiliation") == Some("member")
    });
    assert_eq!(p.attr("type"), None);
    // MUC-OWN-08: members-only removes carol with 322; MUC-OWN-07 sends 104 to the rest.
    a.send(&format!(
        "<iq type='set' id='mo' to='{r}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>"
    ));
    let (p, _) = c.recv_until("removed", |e| e.attr("type") == Some("unavailable"));
    assert!(codes(&p).contains(&"322".to_string()), "{p:?}");
    let (m, _) = b.recv_until("104", |e| {
        e.name == "message" && codes(e).contains(&"104".to_string())
    });
    assert_eq!(m.attr("from"), Some(r.as_str()));
    // MUC-AFF-04: revoking membership in a members-only room removes bob with 321.
    a.send(&format!(
        "<iq type='set' id='m2' to='{r}'><query xmlns='{ADMIN}'><item affiliation='none' jid='{}'/></query></iq>",
        b.bare()
    ));
    let (p, _) = b.recv_until("removed", |e| e.attr("type") == Some("unavailable"));
    assert!(codes(&p).contains(&"321".to_string()), "{p:?}");
    // MUC-AFF-07: the only owner may not step down.
    a.send(&format!(
        "<iq type='set' id='o1' to='{r}'><query xmlns='{ADMIN}'><item affiliation='member' jid='{}'/></query></iq>",
        a.bare()
    ));
    expect_error(&mut a, "o1", "conflict");
    // MUC-OWN-05: a locked room whose configuration is cancelled is destroyed.
    let r2 = room("cancel");
    join(&mut a, &r2, "alice", "");
    a.send(&format!(
        "<iq type='set' id='c' to='{r2}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='cancel'/></query></iq>"
    ));
    let (p, _) = a.recv_until("destroyed", |e| e.attr("type") == Some("unavailable"));
    assert!(
        p.child("x", USER).unwrap().child("destroy", USER).is_some(),
        "{p:?}"
    );
    a.send(&format!(
        "<iq type='get' id='g' to='{r2}'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    expect_error(&mut a, "g", "item-not-found");
}

#[test]
fn muc_exit_06_a_bounced_groupchat_removes_the_ghost() {
    let s = Server::shared();
    let (r, mut a, mut b) = alice_and_bob(s, "ghost");
    // bob's session answers a room message with an error that says it is gone.
    b.send(&format!(
        "<message type='error' to='{r}/alice' id='x'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    let (p, _) = a.recv_until("bob removed", |e| e.attr("type") == Some("unavailable"));
    assert!(codes(&p).contains(&"333".to_string()), "{p:?}");
}

#[test]
fn muc_exit_06_presence_error_from_an_occupant_removes_it_with_333() {
    let s = Server::shared();
    let (r, mut a, mut b) = alice_and_bob(s, "perr");
    // As aioxmpp does when it gives up on a room: an error presence without a condition.
    b.send(&format!(
        "<presence type='error' to='{r}/bob'><status>Client exited</status></presence>"
    ));
    let (own, _) = b.recv_until("self removal", |e| e.attr("type") == Some("unavailable"));
    let cs = codes(&own);
    assert!(
        cs.contains(&"333".to_string()) && cs.contains(&"110".to_string()),
        "{own:?}"
    );
    let (p, _) = a.recv_until("bob removed", |e| e.attr("type") == Some("unavailable"));
    assert!(codes(&p).contains(&"333".to_string()), "{p:?}");
}

#[test]
fn muc_exit_01_unavailable_to_the_room_jid_also_leaves() {
    let s = Server::shared();
    let (r, mut a, mut b) = alice_and_bob(s, "bareleave");
    // As aioxmpp leaves: unavailable to room@service.
    b.send(&format!("<presence type='unavailable' to='{r}'/>"));
    let (own, _) = b.recv_until("self unavailable", |e| {
        e.attr("type") == Some("unavailable")
    });
    assert!(codes(&own).contains(&"110".to_string()), "{own:?}");
    let (p, _) = a.recv_until("bob left", |e| e.attr("type") == Some("unavailable"));
    assert_eq!(p.attr("from"), Some(format!("{r}/bob").as_str()));
}

#[test]
fn muc_own_01_a_room_name_too_long_to_store_is_refused() {
    let s = Server::shared();
    let mut a = user(s, "longname");
    let long = format!("{}@{SERVICE}", "r".repeat(600));
    a.send(&format!(
        "<presence to='{long}/alice'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(&mut a, &format!("{long}/alice"), "not-acceptable");
}

/// Submits a `muc#roomconfig` form with `fields` (`<field/>` elements) and expects a result.
fn configure(c: &mut Client, room: &str, id: &str, fields: &str) {
    c.send(&format!(
        "<iq type='set' id='{id}' to='{room}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
    ));
    let (r, _) = c.recv_until("configuration result", |e| e.attr("id") == Some(id));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

#[test]
fn muc_mod_07_voice_request_approved_by_a_moderator() {
    let s = Server::shared();
    let r = room("vreq");
    let (ua, pa) = s.new_user("vreqa");
    let mut a = Client::online(s, &ua, &pa, None);
    let mut b = user(s, "vreqb");
    create(&mut a, &r, "alice");
    configure(&mut a, &r, "m", &field("muc#roomconfig_moderatedroom", "1"));
    join(&mut b, &r, "bob", "");
    // The room advertises voice requests.
    b.send(&format!(
        "<iq type='get' id='di' to='{r}'><query xmlns='{DISCO_INFO}'/></iq>"
    ));
    let (di, _) = b.recv_until("info", |e| e.attr("id") == Some("di"));
    let feats: Vec<&str> = di
        .child("query", DISCO_INFO)
        .unwrap()
        .elements()
        .filter_map(|e| e.attr("var"))
        .collect();
    assert!(
        feats.contains(&"http://jabber.org/protocol/muc#request"),
        "{feats:?}"
    );
    b.send(&format!(
        "<message to='{r}' id='vr'><x xmlns='jabber:x:data' type='submit'>{}{}</x></message>",
        field("FORM_TYPE", "http://jabber.org/protocol/muc#request"),
        field("muc#role", "participant")
    ));
    // The moderator gets an approval form from the room.
    let (m, _) = a.recv_until("approval form", |e| {
        e.name == "message" && e.child("x", "jabber:x:data").is_some()
    });
    assert_eq!(m.attr("from"), Some(r.as_str()));
    let x = m.child("x", "jabber:x:data").unwrap();
    assert_eq!(x.attr("type"), Some("form"));
    let value = |var: &str| {
        x.elements()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.elements().next())
            .map(|v| v.text())
    };
    assert_eq!(value("muc#roomnick").as_deref(), Some("bob"));
    assert_eq!(value("muc#jid").as_deref(), Some(b.full().as_str()));
    // A participant may not approve; the moderator does.
    let approval = format!(
        "<x xmlns='jabber:x:data' type='submit'>{}{}{}{}</x>",
        field("FORM_TYPE", "http://jabber.org/protocol/muc#request"),
        field("muc#role", "participant"),
        field("muc#roomnick", "bob"),
        field("muc#request_allow", "true")
    );
    a.send(&format!("<message to='{r}' id='ok'>{approval}</message>"));
    let (p, _) = b.recv_until("voice", |e| {
        e.name == "presence" && item(e).attr("role") == Some("participant")
    });
    assert!(codes(&p).contains(&"110".to_string()));
}

#[test]
fn muc_pm_05_allowpm_is_enforced() {
    let s = Server::shared();
    let r = room("allowpm");
    let mut a = user(s, "apma");
    let mut b = user(s, "apmb");
    create(&mut a, &r, "alice");
    configure(
        &mut a,
        &r,
        "pm",
        &field("muc#roomconfig_allowpm", "moderators"),
    );
    join(&mut b, &r, "bob", "");
    b.send(&format!(
        "<message type='chat' id='p1' to='{r}/alice'><body>x</body></message>"
    ));
    expect_error(&mut b, "p1", "forbidden");
    // The moderator still may.
    a.send(&format!(
        "<message type='chat' id='p2' to='{r}/bob'><body>y</body></message>"
    ));
    b.recv_until("pm", |e| e.attr("id") == Some("p2"));
    let seen = a.drain(quiet());
    assert!(seen.iter().all(|e| e.attr("id") != Some("p1")), "{seen:?}");
}

#[test]
fn muc_own_07_09_aff_06_privacy_codes_and_owner_lists() {
    let s = Server::shared();
    let r = room("codes");
    let mut a = user(s, "codesa");
    let mut b = user(s, "codesb");
    let c = user(s, "codesc");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    // MUC-OWN-07: now non-anonymous: 172 to every occupant.
    configure(&mut a, &r, "w", &field("muc#roomconfig_whois", "anyone"));
    let (m, _) = b.recv_until("172", |e| {
        e.name == "message" && codes(e).contains(&"172".to_string())
    });
    assert_eq!(m.attr("from"), Some(r.as_str()));
    configure(
        &mut a,
        &r,
        "w2",
        &field("muc#roomconfig_whois", "moderators"),
    );
    b.recv_until("173", |e| {
        e.name == "message" && codes(e).contains(&"173".to_string())
    });
    // MUC-AFF-06: an admin may not grant admin or owner; only owners.
    a.send(&format!(
        "<iq type='set' id='ad' to='{r}'><query xmlns='{ADMIN}'><item affiliation='admin' jid='{}'/></query></iq>",
        b.bare()
    ));
    assert_eq!(
        a.recv_until("ad", |e| e.attr("id") == Some("ad"))
            .0
            .attr("type"),
        Some("result")
    );
    let (p, _) = b.recv_until("admin now", |e| {
        e.name == "presence" && item(e).attr("affiliation") == Some("admin")
    });
    assert_eq!(item(&p).attr("role"), Some("moderator"));
    b.send(&format!(
        "<iq type='set' id='ow' to='{r}'><query xmlns='{ADMIN}'><item affiliation='owner' jid='{}'/></query></iq>",
        c.bare()
    ));
    expect_error(&mut b, "ow", "forbidden");
    // The owner list is for owners.
    b.send(&format!("<iq type='get' id='ol' to='{r}'><query xmlns='{ADMIN}'><item affiliation='owner'/></query></iq>"));
    expect_error(&mut b, "ol", "forbidden");
    // MUC-OWN-09: owners given as a full list through the form; bob becomes owner.
    let owners = format!(
        "<field var='muc#roomconfig_roomowners'><value>{}</value><value>{}</value></field>",
        a.bare(),
        b.bare()
    );
    configure(&mut a, &r, "ow2", &owners);
    let (p, _) = b.recv_until("owner now", |e| {
        e.name == "presence" && item(e).attr("affiliation") == Some("owner")
    });
    assert!(codes(&p).contains(&"110".to_string()));
    a.send(&format!("<iq type='get' id='ol2' to='{r}'><query xmlns='{ADMIN}'><item affiliation='owner'/></query></iq>"));
    let (l, _) = a.recv_until("owners", |e| e.attr("id") == Some("ol2"));
    let mut jids: Vec<&str> = l
        .child("query", ADMIN)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid"))
        .collect();
    jids.sort();
    let mut want = [a.bare(), b.bare()];
    want.sort();
    assert_eq!(jids, want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn muc_disco_02_room_list_paged_with_rsm() {
    let s = Server::start(&[]);
    let mut a = user(&s, "rsma");
    let rooms: Vec<String> = (0..3).map(|i| format!("rsm{i}@{SERVICE}")).collect();
    for r in &rooms {
        create(&mut a, r, "alice");
    }
    let page = |a: &mut Client, id: &str, set: &str| {
        a.send(&format!(
            "<iq type='get' id='{id}' to='{SERVICE}'><query xmlns='{DISCO_ITEMS}'><set xmlns='http://jabber.org/protocol/rsm'>{set}</set></query></iq>"
        ));
        let (r, _) = a.recv_until("page", |e| e.attr("id") == Some(id));
        let q = r.child("query", DISCO_ITEMS).expect("query").clone();
        let jids: Vec<String> = q
            .elements()
            .filter_map(|i| i.attr("jid").map(str::to_owned))
            .collect();
        let set = q
            .child("set", "http://jabber.org/protocol/rsm")
            .expect("set")
            .clone();
        (jids, set)
    };
    let (jids, set) = page(&mut a, "p1", "<max>2</max>");
    assert_eq!(jids, rooms[..2].to_vec());
    let rsm = "http://jabber.org/protocol/rsm";
    assert_eq!(set.child("count", rsm).unwrap().text(), "3");
    let last = set.child("last", rsm).unwrap().text();
    let (jids, _) = page(&mut a, "p2", &format!("<max>2</max><after>{last}</after>"));
    assert_eq!(jids, rooms[2..].to_vec());
    let (jids, _) = page(&mut a, "p3", "<max>1</max><before/>");
    assert_eq!(jids, rooms[2..].to_vec());
    a.send(&format!(
        "<iq type='get' id='bad' to='{SERVICE}'><query xmlns='{DISCO_ITEMS}'><set xmlns='{rsm}'><max>x</max></set></query></iq>"
    ));
    expect_error(&mut a, "bad", "bad-request");
}

#[test]
fn muc_join_04_14_non_anonymous_rooms_and_presence_broadcast() {
    let s = Server::shared();
    let r = room("bcast");
    let mut a = user(s, "bcasta");
    let mut b = user(s, "bcastb");
    let mut c = user(s, "bcastc");
    create(&mut a, &r, "alice");
    // MUC-JOIN-14: a non-anonymous room shows everyone's JID, and 100 on the self-presence.
    configure(&mut a, &r, "w", &field("muc#roomconfig_whois", "anyone"));
    let got = join(&mut b, &r, "bob", "");
    let alice = got
        .iter()
        .find(|e| e.attr("from") == Some(format!("{r}/alice").as_str()))
        .unwrap();
    assert_eq!(item(alice).attr("jid"), Some(a.full().as_str()));
    let me = got.iter().rev().find(|e| e.name == "presence").unwrap();
    assert!(codes(me).contains(&"100".to_string()), "{me:?}");
    // MUC-JOIN-04: presence of participants is not broadcast when the room says so; the
    // moderator's still is.
    configure(
        &mut a,
        &r,
        "pb",
        &field("muc#roomconfig_presencebroadcast", "moderator"),
    );
    let got = join(&mut c, &r, "carol", "");
    let froms: Vec<&str> = got
        .iter()
        .filter(|e| e.name == "presence")
        .filter_map(|e| e.attr("from"))
        .collect();
    assert!(froms.contains(&format!("{r}/alice").as_str()), "{froms:?}");
    assert!(!froms.contains(&format!("{r}/bob").as_str()), "{froms:?}");
    // bob does not see carol (a participant) arrive.
    let seen = b.drain(quiet());
    assert!(
        seen.iter()
            .all(|e| e.attr("from") != Some(format!("{r}/carol").as_str())),
        "{seen:?}"
    );
}

#[test]
fn muc_bounds_rooms_per_service_per_user_occupants_and_history() {
    let s = Server::start(&[
        "--muc-max-rooms",
        "3",
        "--muc-max-rooms-per-user",
        "2",
        "--muc-max-occupants",
        "2",
        "--muc-history",
        "2",
        "--muc-max-history",
        "3",
    ]);
    let mut a = user(&s, "bnda");
    let mut b = user(&s, "bndb");
    let mut c = user(&s, "bndc");
    // Rooms owned per user: not-allowed.
    create(&mut a, &format!("one@{SERVICE}"), "alice");
    create(&mut a, &format!("two@{SERVICE}"), "alice");
    a.send(&format!(
        "<presence to='three@{SERVICE}/alice'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(&mut a, &format!("three@{SERVICE}/alice"), "not-allowed");
    // Rooms per service: resource-constraint.
    create(&mut b, &format!("three@{SERVICE}"), "bob");
    b.send(&format!(
        "<presence to='four@{SERVICE}/bob'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(
        &mut b,
        &format!("four@{SERVICE}/bob"),
        "resource-constraint",
    );
    // Occupants per room: the service's bound, also for maxusers.
    let one = format!("one@{SERVICE}");
    join(&mut b, &one, "bob", "");
    c.send(&format!(
        "<presence to='{one}/carol'><x xmlns='{MUC}'/></presence>"
    ));
    expect_join_error(&mut c, &format!("{one}/carol"), "service-unavailable");
    a.send(&format!(
        "<iq type='set' id='mu' to='{one}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>{}</x></query></iq>",
        field("muc#roomconfig_maxusers", "100")
    ));
    expect_error(&mut a, "mu", "not-acceptable");
    // History: a new room keeps 2 messages.
    for i in 0..4 {
        a.send(&format!(
            "<message type='groupchat' id='h{i}' to='{one}'><body>m{i}</body></message>"
        ));
        a.recv_until("echo", |e| e.attr("id") == Some(format!("h{i}").as_str()));
    }
    b.send(&format!("<presence to='{one}/bob' type='unavailable'/>"));
    b.recv_until("left", |e| e.attr("type") == Some("unavailable"));
    let got = join(&mut c, &one, "carol", "<history maxstanzas='10'/>");
    let bodies: Vec<String> = got
        .iter()
        .filter_map(|e| e.child("body", "jabber:client").map(|b| b.text()))
        .collect();
    assert_eq!(bodies, vec!["m2", "m3"]);
}

#[test]
fn muc_storage_failure_is_answered_not_acknowledged() {
    let s = Server::start_env(
        &[],
        &[("XMPPD_TEST_FAIL_STORAGE", &format!("write:{SERVICE}"))],
    );
    let mut a = user(&s, "sfa");
    let r = format!("failing@{SERVICE}");
    create(&mut a, &r, "alice");
    // The owner's persistent configuration cannot be stored: an error, not a result.
    a.send(&format!(
        "<iq type='set' id='p' to='{r}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>{}</x></query></iq>",
        field("muc#roomconfig_persistentroom", "1")
    ));
    expect_error(&mut a, "p", "internal-server-error");
    // A subject change of the (now persistent) room is not reflected when it is not stored.
    a.send(&format!(
        "<message type='groupchat' id='t' to='{r}'><subject>lost</subject></message>"
    ));
    expect_error(&mut a, "t", "internal-server-error");
    let seen = a.drain(quiet());
    assert!(seen.iter().all(|e| !is_subject(e)), "{seen:?}");
}

#[test]
fn muc_bounds_invitations_and_affiliations_through_forms_and_invites() {
    let s = Server::start(&["--muc-max-affiliations", "3"]);
    let mut a = user(&s, "bafa");
    let r = format!("aff@{SERVICE}");
    create(&mut a, &r, "alice");
    configure(&mut a, &r, "mo", &field("muc#roomconfig_membersonly", "1"));
    // More invitations in one message than allowed.
    let many: String = (0..17)
        .map(|i| format!("<invite to='u{i}@localhost'/>"))
        .collect();
    a.send(&format!(
        "<message to='{r}' id='i1'><x xmlns='{USER}'>{many}</x></message>"
    ));
    expect_error(&mut a, "i1", "not-acceptable");
    // The owner plus two invited members fill the room's three affiliations...
    a.send(&format!(
        "<message to='{r}' id='i2'><x xmlns='{USER}'><invite to='m1@localhost'/><invite to='m2@localhost'/></x></message>"
    ));
    a.send(&format!("<iq type='get' id='ml' to='{r}'><query xmlns='{ADMIN}'><item affiliation='member'/></query></iq>"));
    let (ml, _) = a.recv_until("members", |e| e.attr("id") == Some("ml"));
    assert_eq!(
        ml.child("query", ADMIN).unwrap().elements().count(),
        2,
        "{ml:?}"
    );
    // ...so a third invitation, an admin grant or an admin list in the form is refused.
    a.send(&format!(
        "<message to='{r}' id='i3'><x xmlns='{USER}'><invite to='m3@localhost'/></x></message>"
    ));
    expect_error(&mut a, "i3", "resource-constraint");
    a.send(&format!(
        "<iq type='set' id='ad' to='{r}'><query xmlns='{ADMIN}'><item affiliation='admin' jid='x@localhost'/></query></iq>"
    ));
    expect_error(&mut a, "ad", "resource-constraint");
    a.send(&format!(
        "<iq type='set' id='f' to='{r}'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='muc#roomconfig_roomadmins'><value>x@localhost</value></field></x></query></iq>"
    ));
    expect_error(&mut a, "f", "resource-constraint");
}

/// Issue 11 (scale): a room never waits on an occupant that stops reading. Its send queue
/// refuses what does not fit (the bounce goes to the room, which ignores it) until the
/// server disconnects it for not reading, and it leaves the room; the others get every
/// message meanwhile.
#[test]
fn muc_a_slow_occupant_does_not_hold_the_room_back() {
    let s = Server::start(&["--max-send-queue", "65536", "--slow-client-grace", "1"]);
    let mut a = user(&s, "slowa");
    let mut b = user(&s, "slowb");
    let (u, p) = s.new_user("slowc");
    let mut c = Client::login_on(Client::plain_small_rcvbuf(&s), &u, &p, None);
    let r = format!("slow@{SERVICE}");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    join(&mut c, &r, "carol", "");
    // carol reads nothing from here on. More than the kernel's socket buffers (tcp_wmem
    // at most 4 MiB here) and her queue hold goes through the room, one message at a time.
    let body = "x".repeat(2000);
    let n = 3000;
    let mut carol_left = false;
    for i in 0..n {
        a.send(&format!(
            "<message type='groupchat' id='s{i}' to='{r}'><body>{body}</body></message>"
        ));
        let id = format!("s{i}");
        let (_, skipped) = b.recv_until("groupchat", |e| e.attr("id") == Some(id.as_str()));
        carol_left |= skipped.iter().any(|e| {
            e.attr("from") == Some(format!("{r}/carol").as_str())
                && e.attr("type") == Some("unavailable")
        });
        a.recv_until("own copy", |e| e.attr("id") == Some(id.as_str()));
    }
    if !carol_left {
        b.recv_until("carol removed", |e| {
            e.attr("from") == Some(format!("{r}/carol").as_str())
                && e.attr("type") == Some("unavailable")
        });
    }
    drop(c);
}

#[test]
fn muc_stat_02_service_shutdown_tells_occupants_332() {
    let s = Server::start(&["--shards", "2"]);
    // Occupants on both shards (the room lives on one of them).
    let (u0, p0) = s.new_user_on_shard("stop0", 0, 2);
    let (u1, p1) = s.new_user_on_shard("stop1", 1, 2);
    let mut a = Client::login(&s, &u0, &p0, None);
    let mut b = Client::login(&s, &u1, &p1, None);
    let r = format!("stopping@{SERVICE}");
    create(&mut a, &r, "alice");
    join(&mut b, &r, "bob", "");
    a.recv_until("bob", |e| {
        e.attr("from") == Some(format!("{r}/bob").as_str())
    });
    let status = s.signal_and_wait(libc::SIGTERM).expect("exits");
    assert!(status.success(), "{status:?}");
    for (c, nick) in [(&mut a, "alice"), (&mut b, "bob")] {
        let (p, _) = c.recv_until("332", |e| e.name == "presence");
        assert_eq!(p.attr("from"), Some(format!("{r}/{nick}").as_str()));
        assert_eq!(p.attr("type"), Some("unavailable"));
        let mut cs = codes(&p);
        cs.sort();
        assert_eq!(cs, vec!["110", "332"], "{p:?}");
        assert_eq!(item(&p).attr("role"), Some("none"));
        c.expect_stream_error("system-shutdown");
    }
}
