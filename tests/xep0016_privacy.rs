//! XEP-0016 privacy lists on the wire (PRIV-01..22): the `jabber:iq:privacy` protocol with its
//! errors and pushes, and the filter as stanzas meet it: inbound and outbound, presence
//! effects of a change, the offline account, persistence across sessions and restarts.
//!
//! Where a test asserts that something did *not* arrive, it waits for a later stanza from the
//! same sender that must arrive (or be bounced) first; stanzas between two sessions keep their
//! order, so the earlier one was decided by then. Short silences only confirm.

mod common;

use common::*;
use std::time::Duration;
use xmppd::xml::Element;

const NS: &str = "jabber:iq:privacy";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// How long nothing must arrive to count as "nothing else arrives".
const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Accounts and sessions.

/// A fresh account homed on `shard` of the shared server (2 shards).
fn user(s: &Server, prefix: &str, shard: usize) -> User {
    user_of(s, prefix, shard, 2)
}

fn user_of(s: &Server, prefix: &str, shard: usize, shards: usize) -> User {
    User::on_shard(s, prefix, shard, shards)
}

// ---------------------------------------------------------------------------------------------
// IQs.

/// Send an IQ and wait for its answer; returns it and what arrived before it.
fn iq(c: &mut Client, ty: &str, to: Option<&str>, payload: &str) -> (Element, Vec<Element>) {
    let id = next_id("iq");
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    c.send(&format!("<iq type='{ty}' id='{id}'{to}>{payload}</iq>"));
    c.recv_until("the IQ answer", |e| {
        e.name == "iq"
            && e.attr("id") == Some(id.as_str())
            && matches!(e.attr("type"), Some("result" | "error"))
    })
}

/// A privacy request (`inner` goes inside `<query/>`).
fn privacy(c: &mut Client, ty: &str, inner: &str) -> (Element, Vec<Element>) {
    iq(c, ty, None, &format!("<query xmlns='{NS}'>{inner}</query>"))
}

/// A privacy request that must succeed.
fn ok(c: &mut Client, ty: &str, inner: &str) -> (Element, Vec<Element>) {
    let (r, before) = privacy(c, ty, inner);
    assert_eq!(r.attr("type"), Some("result"), "{ty} {inner}: {r:?}");
    (r, before)
}

/// A privacy request that must fail with `cond`; returns what arrived before the answer.
fn fails(c: &mut Client, ty: &str, inner: &str, cond: &str) -> Vec<Element> {
    let (r, before) = privacy(c, ty, inner);
    assert_eq!(r.attr("type"), Some("error"), "{ty} {inner}: {r:?}");
    assert_eq!(condition(&r).as_deref(), Some(cond), "{ty} {inner}: {r:?}");
    before
}

fn condition(e: &Element) -> Option<String> {
    stanza_error(e).map(|(c, _, _)| c)
}

/// Create or replace list `name`; returns what arrived before the result (pushes).
fn set_list(c: &mut Client, name: &str, items: &str) -> Vec<Element> {
    ok(c, "set", &format!("<list name='{name}'>{items}</list>")).1
}

/// Set or decline the active list; returns what arrived before the result (presence effects
/// of the change come before it).
fn set_active(c: &mut Client, name: Option<&str>) -> Vec<Element> {
    match name {
        Some(n) => ok(c, "set", &format!("<active name='{n}'/>")).1,
        None => ok(c, "set", "<active/>").1,
    }
}

fn set_default(c: &mut Client, name: Option<&str>) {
    match name {
        Some(n) => ok(c, "set", &format!("<default name='{n}'/>")),
        None => ok(c, "set", "<default/>"),
    };
}

/// The items of the stored list `name`.
fn get_list(c: &mut Client, name: &str) -> Vec<Element> {
    let (r, _) = ok(c, "get", &format!("<list name='{name}'/>"));
    let q = r.child("query", NS).expect("query");
    let lists: Vec<&Element> = q.elements().collect();
    assert_eq!(lists.len(), 1, "{r:?}");
    assert!(lists[0].is("list", NS), "{r:?}");
    assert_eq!(lists[0].attr("name"), Some(name), "{r:?}");
    lists[0].elements().cloned().collect()
}

/// What the summary get says: (active, default, list names).
fn summary(c: &mut Client) -> (Option<String>, Option<String>, Vec<String>) {
    let (r, _) = ok(c, "get", "");
    let q = r.child("query", NS).expect("query");
    let name_of = |n: &str| {
        q.child(n, NS)
            .and_then(|e| e.attr("name"))
            .map(str::to_string)
    };
    let mut lists: Vec<String> = q
        .elements()
        .filter(|e| e.is("list", NS))
        .map(|e| e.attr("name").expect("list name").to_string())
        .collect();
    lists.sort();
    (name_of("active"), name_of("default"), lists)
}

/// A ping answered from the user's own bare JID (no `to`): no privacy list can hold the answer
/// back. Everything queued for `c` before it has been read; returns that.
fn sync_own(c: &mut Client) -> Vec<Element> {
    let (r, before) = iq(c, "get", None, "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    before
}

/// A privacy list push naming `name` (and nothing else).
fn is_list_push(e: &Element, name: &str) -> bool {
    e.name == "iq"
        && e.attr("type") == Some("set")
        && e.child("query", NS).is_some_and(|q| {
            let v: Vec<&Element> = q.elements().collect();
            v.len() == 1 && v[0].is("list", NS) && v[0].attr("name") == Some(name)
        })
}

/// `c` got (or gets) the push for list `name`: it names the list only, with no items.
fn expect_push(c: &mut Client, seen: &[Element], name: &str) {
    let push = match seen.iter().find(|e| is_list_push(e, name)) {
        Some(p) => p.clone(),
        None => {
            c.recv_until("privacy list push", |e| is_list_push(e, name))
                .0
        }
    };
    let list = push
        .child("query", NS)
        .and_then(|q| q.child("list", NS))
        .unwrap();
    assert_eq!(
        list.elements().count(),
        0,
        "a push names the list only: {push:?}"
    );
    if let Some(to) = push.attr("to") {
        assert_eq!(Some(to), c.jid.as_deref(), "{push:?}");
    }
}

/// The element matching `pred` among `seen`, or the next one `c` receives that does.
fn seen_or_recv(
    c: &mut Client,
    seen: &[Element],
    what: &str,
    pred: impl Fn(&Element) -> bool,
) -> Element {
    match seen.iter().find(|e| pred(e)) {
        Some(e) => e.clone(),
        None => c.recv_until(what, pred).0,
    }
}

/// Offline messages sent by `sender` to the account `u` (offline) are stored before the
/// account's next session reads them: a request to the bare JID is answered by the account's
/// home shard after `sender`'s earlier stanzas were handled there (their writes queued), and
/// a roster write by `reader`, a session of `u` that has not sent presence yet, commits after
/// them (one LMDB writer, first in first out).
fn offline_settled(sender: &mut Client, u: &User, reader: &mut Client) {
    iq(sender, "get", Some(&u.jid), "<vCard xmlns='vcard-temp'/>");
    roster_set(
        reader,
        &format!("{}@elsewhere.example", next_id("settle")),
        &[],
    );
}

/// Roster set of `jid` with `groups`.
fn roster_set(c: &mut Client, jid: &str, groups: &[&str]) {
    let g: String = groups
        .iter()
        .map(|g| format!("<group>{g}</group>"))
        .collect();
    let (r, _) = iq(
        c,
        "set",
        None,
        &format!("<query xmlns='{NS_ROSTER}'><item jid='{jid}'>{g}</item></query>"),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

fn mutual(a: &mut Client, b: &mut Client) {
    subscribe_to(a, b);
    subscribe_to(b, a);
}

// ---------------------------------------------------------------------------------------------
// Stanzas through the filter.

fn send_msg(c: &mut Client, to: &str, id: &str) {
    c.send(&format!(
        "<message to='{to}' id='{id}' type='chat'><body>hello</body></message>"
    ));
}

/// `rcv` gets the stanza `id` (not an error); returns it and what arrived before it.
fn delivered(rcv: &mut Client, id: &str) -> (Element, Vec<Element>) {
    rcv.recv_until(&format!("stanza {id}"), |e| {
        e.attr("id") == Some(id) && e.attr("type") != Some("error")
    })
}

/// `sender` gets an error with `cond` for its stanza `id`.
fn bounced(sender: &mut Client, id: &str, cond: &str) -> Element {
    let (e, _) = sender.recv_until(&format!("the error for {id}"), |e| {
        e.attr("id") == Some(id) && e.attr("type") == Some("error")
    });
    assert_eq!(condition(&e).as_deref(), Some(cond), "{e:?}");
    e
}

/// Nothing with id `id` reached `c` (everything queued for it has been read).
fn not_received(c: &mut Client, id: &str) {
    let before = sync_own(c);
    assert!(
        !before.iter().any(|e| e.attr("id") == Some(id)),
        "{id} reached {:?}: {before:?}",
        c.jid
    );
}

/// `from` sends a chat message to `to`: `rcv` gets it (allowed), or `from` gets
/// `service-unavailable` and `rcv` nothing.
fn check_msg(from: &mut Client, to: &str, rcv: &mut Client, allowed: bool) {
    let id = next_id("m");
    send_msg(from, to, &id);
    if allowed {
        delivered(rcv, &id);
    } else {
        bounced(from, &id, "service-unavailable");
        not_received(rcv, &id);
    }
}

fn answer(c: &mut Client, iq: &Element) {
    let id = iq.attr("id").unwrap_or_default();
    let to = iq.attr("from").unwrap_or(DOMAIN);
    c.send(&format!("<iq type='result' id='{id}' to='{to}'/>"));
}

/// Offline delivery: read until the message `id` arrived, answering the server's IQ requests
/// (acknowledgements), then until quiet. Returns every message seen.
fn read_offline(c: &mut Client, id: &str) -> Vec<Element> {
    let mut msgs = Vec::new();
    let mut got = false;
    loop {
        let ev = match got {
            true => c.try_recv(QUIET),
            false => Some(c.recv()),
        };
        match ev {
            None => return msgs,
            Some(Event::El(e, _)) => {
                if e.name == "iq" && matches!(e.attr("type"), Some("get" | "set")) {
                    answer(c, &e);
                } else if e.name == "message" {
                    got |= e.attr("id") == Some(id);
                    msgs.push(e);
                }
            }
            Some(other) => panic!("reading offline messages: {other:?}"),
        }
    }
}

fn from_of(e: &Element) -> &str {
    e.attr("from").unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// PRIV-01..07: the protocol.

#[test]
fn priv_01_disco_info_lists_privacy_feature() {
    let s = Server::shared();
    let u = user(s, "p01u", 0);
    let mut c = u.login(s, "r");
    let (r, _) = iq(
        &mut c,
        "get",
        Some(DOMAIN),
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let q = r.child("query", DISCO_INFO).expect("disco query");
    assert!(
        q.elements()
            .any(|f| f.name == "feature" && f.attr("var") == Some(NS)),
        "{r:?}"
    );
}

#[test]
fn priv_02_get_names_active_default_and_every_list() {
    let s = Server::shared();
    let u = user(s, "p02u", 0);
    let mut r1 = u.login(s, "r1");
    let mut r2 = u.login(s, "r2");
    // Nothing stored: no names, no lists.
    let (r, _) = ok(&mut r1, "get", "");
    let q = r.child("query", NS).expect("query");
    assert!(q.elements().all(|e| e.attr("name").is_none()), "{r:?}");
    assert!(q.elements().all(|e| !e.is("list", NS)), "{r:?}");
    assert_eq!(summary(&mut r1), (None, None, vec![]));

    set_list(
        &mut r1,
        "alpha",
        "<item type='jid' value='a.example' action='deny' order='1'/>",
    );
    set_list(
        &mut r1,
        "beta",
        "<item type='jid' value='b.example' action='deny' order='1'/>",
    );
    set_default(&mut r1, Some("beta"));
    set_active(&mut r1, Some("alpha"));
    let names = vec!["alpha".to_string(), "beta".to_string()];
    assert_eq!(
        summary(&mut r1),
        (Some("alpha".into()), Some("beta".into()), names.clone())
    );
    // The active list is per session: r2 has none.
    assert_eq!(summary(&mut r2), (None, Some("beta".into()), names));
}

#[test]
fn priv_03_get_one_list_in_order_unknown_and_two_lists() {
    let s = Server::shared();
    let u = user(s, "p03u", 0);
    let mut c = u.login(s, "r");
    // Given out of order; stored and returned in ascending order.
    set_list(
        &mut c,
        "ordered",
        "<item type='jid' value='c@localhost' action='deny' order='30'><message/><presence-in/></item>\
         <item action='allow' order='40'/>\
         <item type='subscription' value='both' action='allow' order='5'/>\
         <item type='jid' value='x.example' action='deny' order='10'><presence-out/></item>",
    );
    set_list(&mut c, "other", "<item action='allow' order='1'/>");
    let items = get_list(&mut c, "ordered");
    let orders: Vec<&str> = items.iter().map(|i| i.attr("order").unwrap()).collect();
    assert_eq!(orders, ["5", "10", "30", "40"], "{items:?}");
    let row = |i: &Element| {
        (
            i.attr("type").map(str::to_string),
            i.attr("value").map(str::to_string),
            i.attr("action").unwrap().to_string(),
            i.elements().map(|k| k.name.clone()).collect::<Vec<_>>(),
        )
    };
    let s_ = |v: &str| Some(v.to_string());
    assert_eq!(
        items.iter().map(row).collect::<Vec<_>>(),
        vec![
            (s_("subscription"), s_("both"), "allow".into(), vec![]),
            (
                s_("jid"),
                s_("x.example"),
                "deny".into(),
                vec!["presence-out".into()]
            ),
            (
                s_("jid"),
                s_("c@localhost"),
                "deny".into(),
                vec!["message".into(), "presence-in".into()]
            ),
            (None, None, "allow".into(), vec![]),
        ]
    );
    fails(&mut c, "get", "<list name='nope'/>", "item-not-found");
    fails(
        &mut c,
        "get",
        "<list name='ordered'/><list name='other'/>",
        "bad-request",
    );
}

#[test]
fn priv_04_set_with_several_children_is_bad_request_and_changes_nothing() {
    let s = Server::shared();
    let u = user(s, "p04u", 0);
    let mut c = u.login(s, "r");
    set_list(&mut c, "one", "<item action='allow' order='1'/>");
    fails(
        &mut c,
        "set",
        "<active name='one'/><default name='one'/>",
        "bad-request",
    );
    fails(
        &mut c,
        "set",
        "<list name='x'><item action='deny' order='1'/></list>\
         <list name='y'><item action='deny' order='1'/></list>",
        "bad-request",
    );
    fails(
        &mut c,
        "set",
        "<default name='one'/><list name='one'/>",
        "bad-request",
    );
    assert_eq!(summary(&mut c), (None, None, vec!["one".to_string()]));
    assert_eq!(get_list(&mut c, "one").len(), 1);
    fails(&mut c, "get", "<list name='x'/>", "item-not-found");
}

#[test]
fn priv_05_duplicate_missing_or_negative_order_is_bad_request() {
    let s = Server::shared();
    let u = user(s, "p05u", 0);
    let mut c = u.login(s, "r");
    let bad = [
        "<item type='jid' value='a.example' action='deny' order='1'/>\
         <item type='jid' value='b.example' action='deny' order='1'/>",
        "<item type='jid' value='a.example' action='deny'/>",
        "<item type='jid' value='a.example' action='deny' order='-1'/>",
        "<item type='jid' value='a.example' action='deny' order='one'/>",
    ];
    for items in bad {
        fails(
            &mut c,
            "set",
            &format!("<list name='l'>{items}</list>"),
            "bad-request",
        );
    }
    fails(&mut c, "get", "<list name='l'/>", "item-not-found");
    // Editing an existing list the same way leaves it as it was.
    set_list(
        &mut c,
        "l",
        "<item type='jid' value='keep.example' action='deny' order='0'/>",
    );
    for items in bad {
        fails(
            &mut c,
            "set",
            &format!("<list name='l'>{items}</list>"),
            "bad-request",
        );
    }
    let items = get_list(&mut c, "l");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].attr("value"), Some("keep.example"));
    assert_eq!(items[0].attr("order"), Some("0"));
}

#[test]
fn priv_06_unknown_roster_group_is_item_not_found() {
    let s = Server::shared();
    let u = user(s, "p06u", 0);
    let mut c = u.login(s, "r");
    let group_item = |g: &str| format!("<item type='group' value='{g}' action='deny' order='1'/>");
    fails(
        &mut c,
        "set",
        &format!("<list name='g'>{}</list>", group_item("Friends")),
        "item-not-found",
    );
    fails(&mut c, "get", "<list name='g'/>", "item-not-found");
    roster_set(&mut c, "friend@localhost", &["Friends"]);
    set_list(&mut c, "g", &group_item("Friends"));
    // An edit naming a group nobody is in fails and leaves the list alone.
    fails(
        &mut c,
        "set",
        &format!("<list name='g'>{}</list>", group_item("Enemies")),
        "item-not-found",
    );
    let items = get_list(&mut c, "g");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].attr("value"), Some("Friends"));
}

#[test]
fn priv_07_set_replaces_whole_list_and_pushes_every_resource() {
    let s = Server::shared();
    let u = user(s, "p07u", 0);
    let mut r1 = u.online(s, "r1");
    let mut r2 = u.online(s, "r2");
    // A resource that never sent presence gets pushes too.
    let mut r3 = u.login(s, "r3");
    let before = set_list(
        &mut r1,
        "work",
        "<item type='jid' value='a.example' action='deny' order='1'/>\
         <item type='jid' value='b.example' action='deny' order='2'/>",
    );
    expect_push(&mut r1, &before, "work");
    expect_push(&mut r2, &[], "work");
    expect_push(&mut r3, &[], "work");
    assert_eq!(get_list(&mut r2, "work").len(), 2);
    // Set again with one item: the list is that one item, not the old ones plus it.
    let before = set_list(
        &mut r2,
        "work",
        "<item type='jid' value='c.example' action='allow' order='7'/>",
    );
    expect_push(&mut r2, &before, "work");
    expect_push(&mut r1, &[], "work");
    expect_push(&mut r3, &[], "work");
    let items = get_list(&mut r1, "work");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].attr("value"), Some("c.example"));
    assert_eq!(items[0].attr("action"), Some("allow"));
    assert_eq!(items[0].attr("order"), Some("7"));
}

/// The size bounds (`--max-privacy-lists`, `--max-privacy-items`, `--max-blocklist-items`):
/// beyond them a set fails with `policy-violation`, stores nothing and pushes nothing.
#[test]
fn priv_07_size_bounds_are_policy_violation_and_change_nothing() {
    let s = Server::start(&[
        "--shards",
        "1",
        "--max-privacy-lists",
        "2",
        "--max-privacy-items",
        "3",
        "--max-blocklist-items",
        "2",
    ]);
    let u = user_of(&s, "p07b", 0, 1);
    let mut c = u.login(&s, "r1");
    let mut other = u.login(&s, "r2");
    let rule =
        |n: u32| format!("<item type='jid' value='r{n}.example' action='allow' order='{n}'/>");
    let block =
        |n: u32| format!("<item type='jid' value='b{n}.example' action='deny' order='{n}'/>");
    set_list(&mut c, "one", &rule(1));
    set_list(&mut c, "two", &rule(1));
    let names = vec!["one".to_string(), "two".to_string()];
    // A third list.
    fails(
        &mut c,
        "set",
        &format!("<list name='three'>{}</list>", rule(1)),
        "policy-violation",
    );
    assert_eq!(summary(&mut c), (None, None, names.clone()));
    // Replacing one of the two is fine at the bound.
    set_list(&mut c, "two", &format!("{}{}", rule(1), rule(2)));
    // Four rules in a list.
    let four: String = (1..=4).map(rule).collect();
    fails(
        &mut c,
        "set",
        &format!("<list name='one'>{four}</list>"),
        "policy-violation",
    );
    // Three blocklist entries (jid, deny, no children).
    let three_blocks: String = (1..=3).map(block).collect();
    fails(
        &mut c,
        "set",
        &format!("<list name='one'>{three_blocks}</list>"),
        "policy-violation",
    );
    let items = get_list(&mut c, "one");
    assert_eq!(items.len(), 1, "unchanged: {items:?}");
    assert_eq!(items[0].attr("value"), Some("r1.example"));
    assert_eq!(summary(&mut c), (None, None, names));
    // Blocklist entries do not count as rules: three rules and two entries fit.
    let fits: String = (1..=3).map(rule).chain((4..=5).map(block)).collect();
    set_list(&mut c, "one", &fits);
    assert_eq!(get_list(&mut c, "one").len(), 5);
    // The other resource got the pushes of the three successful sets, and nothing for the
    // refused ones.
    let seen = sync_own(&mut other);
    let pushes: Vec<&str> = seen
        .iter()
        .filter(|e| is_list_push(e, "one") || is_list_push(e, "two") || is_list_push(e, "three"))
        .map(|e| {
            e.child("query", NS)
                .and_then(|q| q.child("list", NS))
                .and_then(|l| l.attr("name"))
                .unwrap()
        })
        .collect();
    assert_eq!(pushes, ["one", "two", "two", "one"], "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// PRIV-08..11: which list is in force.

#[test]
fn priv_08_active_list_applies_before_result() {
    let s = Server::shared();
    let u = user(s, "p08u", 0);
    let c = user(s, "p08c", 1);
    let mut r1 = u.online(s, "r1");
    let mut cc = c.online(s, "c");
    set_list(
        &mut r1,
        "noc",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><message/></item>",
            c.jid
        ),
    );
    // Stored but not in force yet.
    check_msg(&mut cc, &u.full("r1"), &mut r1, true);
    set_active(&mut r1, Some("noc"));
    // Every stanza after the result is filtered, to the full and the bare JID.
    check_msg(&mut cc, &u.full("r1"), &mut r1, false);
    check_msg(&mut cc, &u.jid, &mut r1, false);
    // An unknown list: item-not-found, and the active list stays.
    fails(&mut r1, "set", "<active name='ghost'/>", "item-not-found");
    assert_eq!(summary(&mut r1).0.as_deref(), Some("noc"));
    check_msg(&mut cc, &u.full("r1"), &mut r1, false);
    // For this session only.
    let mut r2 = u.online(s, "r2");
    check_msg(&mut cc, &u.full("r2"), &mut r2, true);
    check_msg(&mut cc, &u.full("r1"), &mut r1, false);
    // An empty <active/> declines it.
    set_active(&mut r1, None);
    assert_eq!(summary(&mut r1).0, None);
    check_msg(&mut cc, &u.full("r1"), &mut r1, true);
}

#[test]
fn priv_09_default_unknown_and_conflict_while_another_resource_uses_it() {
    let s = Server::shared();
    let u = user(s, "p09u", 0);
    let c = user(s, "p09c", 1);
    let mut r1 = u.online(s, "r1");
    let mut r2 = u.online(s, "r2");
    let mut cc = c.online(s, "c");
    set_list(
        &mut r1,
        "d1",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><message/></item>",
            c.jid
        ),
    );
    set_list(
        &mut r1,
        "d2",
        "<item type='jid' value='x.example' action='deny' order='1'/>",
    );
    fails(&mut r1, "set", "<default name='ghost'/>", "item-not-found");
    assert_eq!(summary(&mut r1).1, None);
    // No default yet: setting one is fine with r2 connected.
    set_default(&mut r1, Some("d1"));
    check_msg(&mut cc, &u.full("r2"), &mut r2, false);
    // r2 uses the default: changing or declining it is a conflict, and nothing changes.
    fails(&mut r1, "set", "<default name='d2'/>", "conflict");
    fails(&mut r1, "set", "<default/>", "conflict");
    assert_eq!(summary(&mut r1).1.as_deref(), Some("d1"));
    assert_eq!(summary(&mut r2).1.as_deref(), Some("d1"));
    check_msg(&mut cc, &u.full("r2"), &mut r2, false);
    check_msg(&mut cc, &u.full("r1"), &mut r1, false);
    // Once r2 has an active list of its own, the default no longer applies to it.
    set_active(&mut r2, Some("d2"));
    set_default(&mut r1, Some("d2"));
    assert_eq!(summary(&mut r2).1.as_deref(), Some("d2"));
    check_msg(&mut cc, &u.full("r1"), &mut r1, true);
    // r2 back on the default: conflict again; gone: declining works.
    set_active(&mut r2, None);
    fails(&mut r1, "set", "<default/>", "conflict");
    let r2_full = r2.full();
    r2.close();
    r1.recv_until("r2's unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&r2_full))
    });
    set_default(&mut r1, None);
    assert_eq!(summary(&mut r1).1, None);
}

#[test]
fn priv_10_remove_list_push_conflict_unknown_and_two() {
    let s = Server::shared();
    let u = user(s, "p10u", 0);
    let mut r1 = u.online(s, "r1");
    let mut r2 = u.online(s, "r2");
    for name in ["x", "y", "z"] {
        set_list(
            &mut r1,
            name,
            "<item type='jid' value='q.example' action='deny' order='1'/>",
        );
        expect_push(&mut r2, &[], name);
    }
    // Remove x: result, pushed to both resources.
    let (_, before) = ok(&mut r1, "set", "<list name='x'/>");
    expect_push(&mut r1, &before, "x");
    expect_push(&mut r2, &[], "x");
    fails(&mut r1, "get", "<list name='x'/>", "item-not-found");
    fails(&mut r1, "set", "<list name='ghost'/>", "item-not-found");
    fails(
        &mut r1,
        "set",
        "<list name='y'/><list name='z'/>",
        "bad-request",
    );
    assert_eq!(summary(&mut r1).2, vec!["y".to_string(), "z".to_string()]);
    // y is r2's active list: conflict.
    set_active(&mut r2, Some("y"));
    fails(&mut r1, "set", "<list name='y'/>", "conflict");
    // z is the default and r2 (declining its active list) uses it: conflict.
    set_default(&mut r1, Some("z"));
    set_active(&mut r2, None);
    fails(&mut r1, "set", "<list name='z'/>", "conflict");
    assert_eq!(
        summary(&mut r1),
        (
            None,
            Some("z".to_string()),
            vec!["y".to_string(), "z".to_string()]
        )
    );
    // r2 gone: both can go.
    let r2_full = r2.full();
    r2.close();
    r1.recv_until("r2's unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&r2_full))
    });
    ok(&mut r1, "set", "<list name='z'/>");
    ok(&mut r1, "set", "<list name='y'/>");
    assert_eq!(summary(&mut r1), (None, None, vec![]));
}

/// `sender`'s message to `u`'s bare JID reaches `taker` and not `other` (whose list refuses
/// the sender's messages), and the sender is not refused.
fn bare_split(sender: &mut Client, u: &User, taker: &mut Client, other: &mut Client) {
    let id = next_id("m");
    send_msg(sender, &u.jid, &id);
    delivered(taker, &id);
    // A later message of the same sender that `other` refuses: once it is bounced, the bare
    // one was decided for `other` too.
    let marker = next_id("m");
    send_msg(sender, &other.full(), &marker);
    let (_, before) = sender.recv_until("the marker's error", |e| {
        e.attr("id") == Some(marker.as_str()) && e.attr("type") == Some("error")
    });
    assert!(
        before.iter().all(|e| e.attr("id") != Some(id.as_str())),
        "the bare-JID message was refused: {before:?}"
    );
    not_received(other, &id);
}

#[test]
fn priv_11_active_list_replaces_default_without_layering_and_default_applies_offline() {
    let s = Server::shared();
    let u = user(s, "p11u", 0);
    let c1 = user(s, "p11a", 1);
    let c2 = user(s, "p11b", 1);
    let mut r1 = u.online(s, "r1");
    let mut r2 = u.online(s, "r2");
    let mut a = c1.online(s, "a");
    let mut b = c2.online(s, "b");
    let deny =
        |j: &str| format!("<item type='jid' value='{j}' action='deny' order='1'><message/></item>");
    set_list(&mut r1, "def", &deny(&c1.jid));
    set_list(&mut r1, "act", &deny(&c2.jid));
    set_default(&mut r1, Some("def"));
    set_active(&mut r1, Some("act"));
    // r1: only its active list.
    check_msg(&mut a, &u.full("r1"), &mut r1, true);
    check_msg(&mut b, &u.full("r1"), &mut r1, false);
    // r2: the default list.
    check_msg(&mut a, &u.full("r2"), &mut r2, false);
    check_msg(&mut b, &u.full("r2"), &mut r2, true);
    // To the bare JID (both resources have the top priority): each session's own list
    // decides what it gets, and the sender is not refused while one of them takes it.
    bare_split(&mut a, &u, &mut r1, &mut r2);
    bare_split(&mut b, &u, &mut r2, &mut r1);
    // Offline: the default list decides; c2's message is stored, c1's refused.
    r1.close();
    r2.close();
    let refused = next_id("off");
    send_msg(&mut a, &u.jid, &refused);
    bounced(&mut a, &refused, "service-unavailable");
    let kept = next_id("off");
    send_msg(&mut b, &u.jid, &kept);
    let mut r3 = u.login(s, "r3");
    offline_settled(&mut b, &u, &mut r3);
    r3.send("<presence/>");
    let msgs = read_offline(&mut r3, &kept);
    assert!(
        msgs.iter().all(|m| m.attr("id") != Some(refused.as_str())),
        "a refused message was stored: {msgs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// PRIV-12..14: evaluation.

#[test]
fn priv_12_items_in_ascending_order_first_match_decides_no_match_allows() {
    let s = Server::shared();
    let u = user(s, "p12u", 0);
    let c1 = user(s, "p12a", 1);
    let c2 = user(s, "p12b", 1);
    let c3 = user(s, "p12c", 1);
    let mut r = u.online(s, "r");
    let mut a = c1.online(s, "a");
    let mut b = c2.online(s, "b");
    let mut c = c3.online(s, "c");
    let to = u.full("r");
    // Listed out of order: allow c1 (10) comes before the fall-through deny (20).
    set_list(
        &mut r,
        "l",
        &format!(
            "<item action='deny' order='20'><message/></item>\
             <item type='jid' value='{}' action='allow' order='10'/>",
            c1.jid
        ),
    );
    set_active(&mut r, Some("l"));
    check_msg(&mut a, &to, &mut r, true);
    check_msg(&mut b, &to, &mut r, false);
    check_msg(&mut c, &to, &mut r, false);
    // The lower order wins whatever the document order.
    set_list(
        &mut r,
        "l",
        &format!(
            "<item type='jid' value='{0}' action='allow' order='2'/>\
             <item type='jid' value='{0}' action='deny' order='1'><message/></item>",
            c1.jid
        ),
    );
    check_msg(&mut a, &to, &mut r, false);
    check_msg(&mut b, &to, &mut r, true);
    // No item matches: allowed.
    set_list(
        &mut r,
        "l",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><message/></item>",
            c3.jid
        ),
    );
    check_msg(&mut a, &to, &mut r, true);
    check_msg(&mut b, &to, &mut r, true);
    check_msg(&mut c, &to, &mut r, false);
}

#[test]
fn priv_13_jid_item_forms() {
    let s = Server::shared();
    let u = user(s, "p13u", 0);
    let c = user(s, "p13c", 1);
    let d = user(s, "p13d", 1);
    let mut r = u.online(s, "r");
    let mut ca = c.online(s, "ca");
    let mut cb = c.online(s, "cb");
    let mut da = d.online(s, "ca");
    let to = u.full("r");
    let deny =
        |v: &str| format!("<item type='jid' value='{v}' action='deny' order='1'><message/></item>");
    let mut check = |items: &str, expect: [bool; 3]| {
        set_list(&mut r, "j", items);
        set_active(&mut r, Some("j"));
        check_msg(&mut ca, &to, &mut r, expect[0]);
        check_msg(&mut cb, &to, &mut r, expect[1]);
        check_msg(&mut da, &to, &mut r, expect[2]);
    };
    // user@domain/resource: that resource only.
    check(&deny(&c.full("ca")), [false, true, true]);
    // user@domain: any resource of it.
    check(&deny(&c.jid), [false, false, true]);
    // domain/resource: that resource at the domain.
    check(&deny(&format!("{DOMAIN}/ca")), [false, true, false]);
    // domain: the domain and everything at it.
    check(&deny(DOMAIN), [false, false, false]);
    // Another domain: nothing here.
    check(&deny("elsewhere.example"), [true, true, true]);
    // Overlapping forms: the item order decides.
    check(
        &format!(
            "<item type='jid' value='{}' action='allow' order='1'/>\
             <item type='jid' value='{}' action='deny' order='2'><message/></item>",
            c.full("ca"),
            c.jid
        ),
        [true, false, true],
    );
    check(
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><message/></item>\
             <item type='jid' value='{}' action='allow' order='2'/>",
            c.jid,
            c.full("ca")
        ),
        [false, false, true],
    );
}

#[test]
fn priv_13_subscription_values_match_exactly_and_none_covers_strangers() {
    let s = Server::shared();
    let u = user(s, "p13s", 0);
    let mut r = u.online(s, "r");
    // The user's subscription with each: to, from, both, none (in the roster), none (not).
    let names = ["to", "from", "both", "rost", "stranger"];
    let users: Vec<User> = names
        .iter()
        .map(|n| user(s, &format!("p13{n}"), 1))
        .collect();
    let mut cs: Vec<Client> = users.iter().map(|x| x.online(s, "c")).collect();
    subscribe_to(&mut r, &mut cs[0]);
    subscribe_to(&mut cs[1], &mut r);
    mutual(&mut r, &mut cs[2]);
    roster_set(&mut r, &users[3].jid, &[]);
    let (items, _) = r.roster_items();
    let sub_of = |j: &str| {
        items
            .iter()
            .find(|i| i.attr("jid") == Some(j))
            .map(|i| i.attr("subscription").unwrap_or("none").to_string())
    };
    assert_eq!(sub_of(&users[0].jid).as_deref(), Some("to"));
    assert_eq!(sub_of(&users[1].jid).as_deref(), Some("from"));
    assert_eq!(sub_of(&users[2].jid).as_deref(), Some("both"));
    assert_eq!(sub_of(&users[3].jid).as_deref(), Some("none"));
    assert_eq!(sub_of(&users[4].jid), None);
    let to = u.full("r");
    let cases: [(&str, [bool; 5]); 4] = [
        ("none", [true, true, true, false, false]),
        ("to", [false, true, true, true, true]),
        ("from", [true, false, true, true, true]),
        ("both", [true, true, false, true, true]),
    ];
    for (value, allowed) in cases {
        set_list(
            &mut r,
            "sub",
            &format!(
                "<item type='subscription' value='{value}' action='deny' order='1'><message/></item>"
            ),
        );
        set_active(&mut r, Some("sub"));
        for (c, allowed) in cs.iter_mut().zip(allowed) {
            check_msg(c, &to, &mut r, allowed);
        }
    }
}

#[test]
fn priv_14_child_elements_limit_the_stanza_kinds() {
    let s = Server::shared();
    let u = user(s, "p14u", 0);
    let c = user(s, "p14c", 1);
    let mut r = u.online(s, "r");
    let mut cc = c.online(s, "c");
    let (to_u, to_c) = (u.full("r"), c.full("c"));
    let item = |kinds: &str| {
        format!(
            "<item type='jid' value='{}' action='deny' order='1'>{kinds}</item>",
            c.jid
        )
    };
    let inbound_iq = |cc: &mut Client, id: &str| {
        cc.send(&format!(
            "<iq type='get' id='{id}' to='{to_u}'><query xmlns='jabber:iq:version'/></iq>"
        ));
    };
    set_list(&mut r, "k", &item("<message/>"));
    set_active(&mut r, Some("k"));

    // <message/>: inbound messages only.
    check_msg(&mut cc, &to_u, &mut r, false);
    let id = next_id("iq");
    inbound_iq(&mut cc, &id);
    delivered(&mut r, &id);
    cc.send(&format!(
        "<presence to='{to_u}'><status>p1</status></presence>"
    ));
    r.recv_until("directed presence", |e| {
        is_presence(e, None, Some(&to_c)) && status_of(e).as_deref() == Some("p1")
    });
    check_msg(&mut r, &to_c, &mut cc, true); // outbound messages are not covered

    // <iq/>: inbound IQs only.
    set_list(&mut r, "k", &item("<iq/>"));
    let id = next_id("iq");
    inbound_iq(&mut cc, &id);
    bounced(&mut cc, &id, "service-unavailable");
    not_received(&mut r, &id);
    check_msg(&mut cc, &to_u, &mut r, true);

    // <presence-in/>: inbound availability presence, not subscriptions.
    set_list(&mut r, "k", &item("<presence-in/>"));
    cc.send(&format!(
        "<presence to='{to_u}'><status>p2</status></presence>"
    ));
    cc.send(&format!("<presence type='unavailable' to='{to_u}'/>"));
    let marker = next_id("m");
    send_msg(&mut cc, &to_u, &marker);
    let (_, before) = delivered(&mut r, &marker);
    assert!(presence_from(&before, &c.jid).is_empty(), "{before:?}");
    cc.send(&format!("<presence to='{}' type='subscribe'/>", u.jid));
    r.recv_until("subscribe (not presence-in)", |e| {
        is_presence(e, Some("subscribe"), Some(&c.jid))
    });

    // <presence-out/>: outbound availability presence, not subscriptions, nothing inbound.
    set_list(&mut r, "k", &item("<presence-out/>"));
    r.send(&format!(
        "<presence to='{to_c}'><status>p3</status></presence>"
    ));
    r.send(&format!("<presence type='unavailable' to='{to_c}'/>"));
    let marker = next_id("m");
    send_msg(&mut r, &to_c, &marker);
    let (_, before) = delivered(&mut cc, &marker);
    assert!(presence_from(&before, &u.jid).is_empty(), "{before:?}");
    r.send(&format!("<presence to='{}' type='subscribe'/>", c.jid));
    cc.recv_until("subscribe (not presence-out)", |e| {
        is_presence(e, Some("subscribe"), Some(&u.jid))
    });
    check_msg(&mut cc, &to_u, &mut r, true);

    // No children: every kind, both directions, subscriptions included.
    set_list(&mut r, "k", &item(""));
    check_msg(&mut cc, &to_u, &mut r, false);
    let id = next_id("iq");
    inbound_iq(&mut cc, &id);
    bounced(&mut cc, &id, "service-unavailable");
    cc.send(&format!(
        "<presence to='{to_u}'><status>p4</status></presence>"
    ));
    cc.send(&format!("<presence to='{}' type='subscribe'/>", u.jid));
    let marker = next_id("m");
    send_msg(&mut cc, &to_u, &marker);
    bounced(&mut cc, &marker, "service-unavailable");
    let seen = sync_own(&mut r);
    assert!(presence_from(&seen, &c.jid).is_empty(), "{seen:?}");
    let id = next_id("m");
    send_msg(&mut r, &to_c, &id);
    bounced(&mut r, &id, "not-acceptable");
    r.send(&format!("<presence to='{}' type='subscribe'/>", c.jid));
    let marker = next_id("m");
    send_msg(&mut r, &to_c, &marker);
    bounced(&mut r, &marker, "not-acceptable");
    let seen = sync_own(&mut cc);
    assert!(presence_from(&seen, &u.jid).is_empty(), "{seen:?}");
    assert!(seen.iter().all(|e| e.attr("id") != Some(marker.as_str())));
}

// ---------------------------------------------------------------------------------------------
// PRIV-15..18: what happens to a stanza.

#[test]
fn priv_15_denied_subscribe_leaves_no_pending_in_and_no_roster_push() {
    let s = Server::shared();
    let u = user(s, "p15u", 0);
    let c = user(s, "p15c", 1);
    let mut r1 = u.online(s, "r1");
    let _ = r1.roster_items(); // an interested resource: it would get roster pushes
    let mut cc = c.online(s, "c");
    set_list(
        &mut r1,
        "nosub",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'/>",
            c.jid
        ),
    );
    set_default(&mut r1, Some("nosub"));
    // Online: nothing delivered, no push.
    cc.send(&format!("<presence to='{}' type='subscribe'/>", u.jid));
    let marker = next_id("m");
    send_msg(&mut cc, &u.jid, &marker);
    bounced(&mut cc, &marker, "service-unavailable");
    let seen = sync_own(&mut r1);
    assert!(presence_from(&seen, &c.jid).is_empty(), "{seen:?}");
    assert!(!seen.iter().any(|e| is_push_for(e, &c.jid)), "{seen:?}");
    r1.expect_silence(QUIET);
    // Offline: nothing stored either.
    r1.close();
    cc.send(&format!("<presence to='{}' type='subscribe'/>", u.jid));
    let marker = next_id("m");
    send_msg(&mut cc, &u.jid, &marker);
    bounced(&mut cc, &marker, "service-unavailable");
    // Lift the list before initial presence: a stored request would come now.
    let mut r2 = u.login(s, "r2");
    let (items, _) = r2.roster_items();
    assert!(
        items.iter().all(|i| i.attr("jid") != Some(c.jid.as_str())),
        "{items:?}"
    );
    set_default(&mut r2, None);
    r2.send("<presence/>");
    let mut seen = sync_own(&mut r2);
    seen.extend(r2.collect_for(QUIET));
    assert!(
        !seen
            .iter()
            .any(|e| is_presence(e, Some("subscribe"), Some(&c.jid))),
        "a denied subscribe was kept: {seen:?}"
    );
    assert!(!seen.iter().any(|e| is_push_for(e, &c.jid)), "{seen:?}");
    // Control: not denied, the same request is delivered.
    cc.send(&format!("<presence to='{}' type='subscribe'/>", u.jid));
    r2.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some(&c.jid))
    });
}

#[test]
fn priv_16_blocked_inbound_message_iq_error_presence_silent() {
    let s = Server::shared();
    let u = user(s, "p16u", 0);
    let c = user(s, "p16c", 1);
    let mut r = u.online(s, "r");
    let mut cc = c.online(s, "c");
    set_list(
        &mut r,
        "block",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'/>",
            c.jid
        ),
    );
    set_default(&mut r, Some("block"));
    let to_u = u.full("r");
    // Messages (to the bare and the full JID) and IQ requests: service-unavailable.
    for (stanza, to) in [
        ("message type='chat'", u.jid.as_str()),
        ("message type='normal'", to_u.as_str()),
        ("message", u.jid.as_str()),
    ] {
        let id = next_id("m");
        cc.send(&format!(
            "<{stanza} to='{to}' id='{id}'><body>x</body></message>"
        ));
        let e = bounced(&mut cc, &id, "service-unavailable");
        assert_eq!(e.name, "message");
        assert_eq!(stanza_error(&e).unwrap().1, "cancel", "{e:?}");
    }
    for (ty, to, payload) in [
        ("get", to_u.as_str(), "<query xmlns='jabber:iq:version'/>"),
        ("set", to_u.as_str(), "<query xmlns='urn:example:x'/>"),
        // A request the server answers for the account (normally a vCard result).
        ("get", u.jid.as_str(), "<vCard xmlns='vcard-temp'/>"),
    ] {
        let (e, _) = iq(&mut cc, ty, Some(to), payload);
        assert_eq!(e.attr("type"), Some("error"), "{e:?}");
        assert_eq!(
            condition(&e).as_deref(),
            Some("service-unavailable"),
            "{e:?}"
        );
    }
    // Silently dropped: IQ results and errors, error messages, presence of every kind.
    let silent = [
        format!("<iq type='result' id='s1' to='{to_u}'/>"),
        format!(
            "<iq type='error' id='s2' to='{to_u}'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ),
        format!(
            "<message type='error' id='s3' to='{to_u}'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ),
        format!("<presence id='s4' to='{to_u}'/>"),
        format!("<presence id='s5' to='{}'/>", u.jid),
        format!("<presence id='s6' type='unavailable' to='{to_u}'/>"),
        format!("<presence id='s7' type='probe' to='{}'/>", u.jid),
        format!("<presence id='s8' type='subscribe' to='{}'/>", u.jid),
        format!("<presence id='s9' type='subscribed' to='{}'/>", u.jid),
        format!("<presence id='s10' type='unsubscribe' to='{}'/>", u.jid),
        format!("<presence id='s11' type='unsubscribed' to='{}'/>", u.jid),
    ];
    for st in &silent {
        cc.send(st);
    }
    let marker = next_id("m");
    send_msg(&mut cc, &u.jid, &marker);
    let (_, before) = cc.recv_until("the marker's error", |e| {
        e.attr("id") == Some(marker.as_str()) && e.attr("type") == Some("error")
    });
    let about_u: Vec<&Element> = before
        .iter()
        .filter(|e| from_of(e).starts_with(&u.jid))
        .collect();
    assert!(
        about_u.is_empty(),
        "answers to dropped stanzas: {about_u:?}"
    );
    let after = cc.collect_for(QUIET);
    assert!(
        after.iter().all(|e| !from_of(e).starts_with(&u.jid)),
        "{after:?}"
    );
    let seen = sync_own(&mut r);
    let from_c: Vec<&Element> = seen
        .iter()
        .filter(|e| from_of(e).starts_with(&c.jid))
        .collect();
    assert!(from_c.is_empty(), "delivered: {from_c:?}");
}

#[test]
fn priv_17_outbound_to_denied_jid_is_not_acceptable() {
    let s = Server::shared();
    let u = user(s, "p17u", 0);
    let c = user(s, "p17c", 1);
    let mut r1 = u.online(s, "r1");
    let mut r2 = u.online(s, "r2");
    let mut cc = c.online(s, "c");
    let to_c = c.full("c");
    set_list(
        &mut r1,
        "out",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'/>",
            c.jid
        ),
    );
    set_active(&mut r1, Some("out"));
    let id = next_id("m");
    send_msg(&mut r1, &c.jid, &id);
    let e = bounced(&mut r1, &id, "not-acceptable");
    assert_eq!(e.name, "message");
    let id = next_id("iq");
    r1.send(&format!(
        "<iq type='get' id='{id}' to='{to_c}'><query xmlns='jabber:iq:version'/></iq>"
    ));
    bounced(&mut r1, &id, "not-acceptable");
    let id = next_id("p");
    r1.send(&format!("<presence id='{id}' to='{to_c}'/>"));
    bounced(&mut r1, &id, "not-acceptable");
    let seen = sync_own(&mut cc);
    assert!(
        seen.iter().all(|e| !from_of(e).starts_with(&u.jid)),
        "routed: {seen:?}"
    );
    // The other session, without the list, is not filtered; with it as default, it is.
    check_msg(&mut r2, &to_c, &mut cc, true);
    set_default(&mut r2, Some("out"));
    let id = next_id("m");
    send_msg(&mut r2, &to_c, &id);
    bounced(&mut r2, &id, "not-acceptable");
    not_received(&mut cc, &id);
}

#[test]
fn priv_18_own_resources_are_never_blocked() {
    let s = Server::shared();
    let u = user(s, "p18u", 0);
    let mut r1 = u.online(s, "r1");
    let mut r2 = u.online(s, "r2");
    r1.recv_until("r2's presence", |e| {
        is_presence(e, None, Some(&u.full("r2")))
    });
    set_list(
        &mut r1,
        "all",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'/>\
             <item type='jid' value='{}' action='deny' order='2'/>\
             <item type='jid' value='{DOMAIN}' action='deny' order='3'/>\
             <item action='deny' order='4'/>",
            u.full("r2"),
            u.jid
        ),
    );
    set_default(&mut r1, Some("all"));
    set_active(&mut r1, Some("all"));
    check_msg(&mut r2, &u.full("r1"), &mut r1, true);
    check_msg(&mut r1, &u.full("r2"), &mut r2, true);
    // IQ both ways.
    let (q, _) = {
        let id = next_id("iq");
        r1.send(&format!(
            "<iq type='get' id='{id}' to='{}'><query xmlns='jabber:iq:version'/></iq>",
            u.full("r2")
        ));
        delivered(&mut r2, &id)
    };
    answer(&mut r2, &q);
    delivered(&mut r1, q.attr("id").unwrap());
    // Presence between them.
    r2.send("<presence><status>own</status></presence>");
    r1.recv_until("r2's new presence", |e| {
        is_presence(e, None, Some(&u.full("r2"))) && status_of(e).as_deref() == Some("own")
    });
}

/// PRIV-18: the server's own answers (from the domain JID) to the user's requests reach the
/// user even when the list denies the domain.
#[test]
fn priv_18_server_domain_answers_are_not_blocked() {
    let s = Server::shared();
    let u = user(s, "p18d", 0);
    let mut r = u.online(s, "r");
    set_list(
        &mut r,
        "dom",
        &format!(
            "<item type='jid' value='{DOMAIN}' action='deny' order='1'/>\
             <item action='deny' order='2'/>"
        ),
    );
    set_default(&mut r, Some("dom"));
    let (e, _) = iq(&mut r, "get", Some(DOMAIN), "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(e.attr("type"), Some("result"), "{e:?}");
    let (e, _) = iq(
        &mut r,
        "get",
        Some(DOMAIN),
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    );
    assert_eq!(e.attr("type"), Some("result"), "{e:?}");
    assert!(e.child("query", DISCO_INFO).is_some(), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// PRIV-19..22: changes and their effects.

#[test]
fn priv_19_list_edits_and_roster_changes_take_effect_immediately() {
    let s = Server::shared();
    let u = user(s, "p19u", 0);
    let c = user(s, "p19c", 1);
    let d = user(s, "p19d", 1);
    let mut r = u.online(s, "r");
    let mut cc = c.online(s, "c");
    let mut dd = d.online(s, "d");
    let to = u.full("r");
    // Groups: the default list denies group G.
    roster_set(&mut r, &c.jid, &["G"]);
    set_list(
        &mut r,
        "def",
        "<item type='group' value='G' action='deny' order='1'><message/></item>",
    );
    set_default(&mut r, Some("def"));
    check_msg(&mut cc, &to, &mut r, false);
    roster_set(&mut r, &c.jid, &["H"]);
    check_msg(&mut cc, &to, &mut r, true);
    roster_set(&mut r, &c.jid, &["H", "G"]);
    check_msg(&mut cc, &to, &mut r, false);
    // Subscription: deny 'none'; c is in the roster with none, then the user subscribes.
    set_list(
        &mut r,
        "def",
        "<item type='subscription' value='none' action='deny' order='1'><message/></item>",
    );
    check_msg(&mut cc, &to, &mut r, false);
    subscribe_to(&mut r, &mut cc);
    check_msg(&mut cc, &to, &mut r, true);
    // Edits of the default list.
    check_msg(&mut dd, &to, &mut r, false); // d is a stranger: none
    set_list(
        &mut r,
        "def",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><message/></item>",
            c.jid
        ),
    );
    check_msg(&mut dd, &to, &mut r, true);
    check_msg(&mut cc, &to, &mut r, false);
    // Edits of the active list.
    set_list(
        &mut r,
        "act",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><message/></item>",
            d.jid
        ),
    );
    set_active(&mut r, Some("act"));
    check_msg(&mut dd, &to, &mut r, false);
    check_msg(&mut cc, &to, &mut r, true);
    set_list(
        &mut r,
        "act",
        "<item type='jid' value='elsewhere.example' action='deny' order='1'/>",
    );
    check_msg(&mut dd, &to, &mut r, true);
}

#[test]
fn priv_20_presence_out_deny_sends_unavailable_and_lifting_it_sends_presence() {
    let s = Server::shared();
    let u = user(s, "p20u", 0);
    let c = user(s, "p20c", 1);
    let mut r = u.online(s, "r");
    let mut cc = c.online(s, "c");
    mutual(&mut r, &mut cc);
    let (me, to_c) = (u.full("r"), c.full("c"));
    r.send("<presence><status>here</status></presence>");
    cc.recv_until("u's presence", |e| {
        is_presence(e, None, Some(&me)) && status_of(e).as_deref() == Some("here")
    });
    let hide = format!(
        "<item type='jid' value='{}' action='deny' order='1'><presence-out/></item>",
        c.jid
    );
    // An active list: unavailable at once.
    set_list(&mut r, "hide", &hide);
    set_active(&mut r, Some("hide"));
    cc.recv_until("unavailable from u", |e| {
        is_presence(e, Some("unavailable"), Some(&me))
    });
    // Later broadcasts do not reach c.
    r.send("<presence><status>hidden</status></presence>");
    let marker = next_id("m");
    send_msg(&mut r, &to_c, &marker);
    let (_, before) = delivered(&mut cc, &marker);
    assert!(presence_from(&before, &u.jid).is_empty(), "{before:?}");
    // Lifted: c gets the current presence.
    set_active(&mut r, None);
    cc.recv_until("u's current presence", |e| {
        is_presence(e, None, Some(&me)) && status_of(e).as_deref() == Some("hidden")
    });
    // The same through the default list and an edit of it.
    set_list(&mut r, "d", &hide);
    set_default(&mut r, Some("d"));
    cc.recv_until("unavailable from u (default)", |e| {
        is_presence(e, Some("unavailable"), Some(&me))
    });
    set_list(
        &mut r,
        "d",
        "<item type='jid' value='elsewhere.example' action='deny' order='1'/>",
    );
    cc.recv_until("u's current presence (edit)", |e| {
        is_presence(e, None, Some(&me)) && status_of(e).as_deref() == Some("hidden")
    });
}

/// PRIV-20 reaches whoever could see the presence: an entity that got directed presence and
/// is no contact gets unavailable when `presence-out` starts denying it, current presence
/// when the denial is lifted.
#[test]
fn priv_20_presence_out_deny_reaches_directed_presence_recipients() {
    let s = Server::shared();
    let u = user(s, "p20du", 0);
    let x = user(s, "p20dx", 1);
    let mut r = u.online(s, "r");
    let mut xx = x.online(s, "x");
    let (me, to_x) = (u.full("r"), x.full("x"));
    r.send("<presence><status>here</status></presence>");
    r.send(&format!(
        "<presence to='{to_x}'><status>for x</status></presence>"
    ));
    xx.recv_until("u's directed presence", |e| {
        is_presence(e, None, Some(&me)) && status_of(e).as_deref() == Some("for x")
    });
    set_list(
        &mut r,
        "hide",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><presence-out/></item>",
            x.jid
        ),
    );
    set_active(&mut r, Some("hide"));
    xx.recv_until("unavailable from u", |e| {
        is_presence(e, Some("unavailable"), Some(&me))
    });
    set_active(&mut r, None);
    xx.recv_until("u's current presence", |e| {
        is_presence(e, None, Some(&me)) && status_of(e).as_deref() == Some("here")
    });
    // A contact-free stranger u never sent presence to hears nothing of either change.
    let y = user(s, "p20dy", 0);
    let mut yy = y.online(s, "y");
    set_active(&mut r, Some("hide"));
    set_active(&mut r, None);
    let marker = next_id("m");
    send_msg(&mut r, &y.full("y"), &marker);
    let (_, before) = delivered(&mut yy, &marker);
    assert!(presence_from(&before, &u.jid).is_empty(), "{before:?}");
}

#[test]
fn priv_21_presence_in_deny_shows_contact_unavailable() {
    let s = Server::shared();
    let u = user(s, "p21u", 0);
    let c = user(s, "p21c", 1);
    let mut r = u.online(s, "r");
    let mut cc = c.online(s, "c");
    mutual(&mut r, &mut cc);
    let to_u = u.full("r");
    let c_full = c.full("c");
    cc.send("<presence><status>one</status></presence>");
    r.recv_until("c's presence", |e| {
        is_presence(e, None, Some(&c_full)) && status_of(e).as_deref() == Some("one")
    });
    set_list(
        &mut r,
        "deaf",
        &format!(
            "<item type='jid' value='{}' action='deny' order='1'><presence-in/></item>",
            c.jid
        ),
    );
    let seen = set_active(&mut r, Some("deaf"));
    seen_or_recv(&mut r, &seen, "c shown unavailable", |e| {
        e.name == "presence"
            && e.attr("type") == Some("unavailable")
            && from_of(e).starts_with(&c.jid)
    });
    // c's later presence does not reach the user.
    cc.send("<presence><status>two</status></presence>");
    let marker = next_id("m");
    send_msg(&mut cc, &to_u, &marker);
    let (_, before) = delivered(&mut r, &marker);
    assert!(presence_from(&before, &c.jid).is_empty(), "{before:?}");
    // Lifted: the user learns c's current presence.
    let seen = set_active(&mut r, None);
    seen_or_recv(&mut r, &seen, "c's current presence", |e| {
        is_presence(e, None, Some(&c_full)) && status_of(e).as_deref() == Some("two")
    });
}

#[test]
fn priv_22_lists_persist_and_default_filters_offline_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--shards", "2"];
    let s = Server::start_on(dir.path(), &flags);
    let u = user_of(&s, "p22u", 0, 2);
    let c = user_of(&s, "p22c", 1, 2);
    let k = user_of(&s, "p22k", 1, 2);
    let items = format!(
        "<item type='jid' value='{}' action='deny' order='1'><message/></item>\
         <item type='jid' value='elsewhere.example' action='deny' order='2'/>",
        c.jid
    );
    let check_stored = |r: &mut Client| {
        assert_eq!(
            summary(r),
            (None, Some("keep".to_string()), vec!["keep".to_string()])
        );
        let got = get_list(r, "keep");
        let values: Vec<&str> = got.iter().map(|i| i.attr("value").unwrap()).collect();
        assert_eq!(values, [c.jid.as_str(), "elsewhere.example"], "{got:?}");
    };
    {
        let mut r1 = u.login(&s, "r1");
        set_list(&mut r1, "keep", &items);
        set_default(&mut r1, Some("keep"));
        r1.close();
    }
    // While u is offline, c's message is refused and k's stored; u's next session (`res`)
    // finds the lists and only k's message. Returns c's, k's and that session's clients.
    let offline_round = |s: &Server, res: &str| {
        let mut cc = c.online(s, "c");
        let mut kk = k.online(s, "k");
        let refused = next_id("off");
        send_msg(&mut cc, &u.jid, &refused);
        bounced(&mut cc, &refused, "service-unavailable");
        let kept = next_id("off");
        send_msg(&mut kk, &u.jid, &kept);
        let mut r = u.login(s, res);
        offline_settled(&mut kk, &u, &mut r);
        check_stored(&mut r);
        r.send("<presence/>");
        let msgs = read_offline(&mut r, &kept);
        assert!(
            msgs.iter().all(|m| !from_of(m).starts_with(&c.jid)),
            "{msgs:?}"
        );
        (cc, kk, r)
    };
    let (mut cc, mut kk, mut r2) = offline_round(&s, "r2");
    r2.close();
    cc.close();
    kk.close();
    // Restart on the same data.
    s.signal_and_wait(libc::SIGTERM).expect("server stopped");
    drop(s);
    let s = Server::start_on(dir.path(), &flags);
    let (mut cc, mut kk, mut r3) = offline_round(&s, "r3");
    // And online, the default list is in force.
    check_msg(&mut cc, &u.full("r3"), &mut r3, false);
    check_msg(&mut kk, &u.full("r3"), &mut r3, true);
}
