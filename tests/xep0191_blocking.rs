//! XEP-0191 blocking command end to end (checklist BLOCK-01..14): the blocklist IQs and their
//! pushes, what a block does to stanzas in both directions and to presence, persistence, the
//! bounds, and the one store it shares with XEP-0016 privacy lists (docs/DESIGN.md, "Privacy
//! lists and blocking": the blocklist is the `jid`/`deny` entries at the front of the default
//! privacy list). The user who blocks is homed on shard 0 of the shared 2-shard server and the
//! peers mostly on shard 1, so most exchanges cross shards.
//!
//! "Nothing arrives" is checked after a synchronising ping (and, for stanzas that cross
//! shards, a short quiet period), with predicates on content so that a late stanza of the
//! set-up cannot be mistaken for a violation.

mod common;

use common::*;
use std::time::Duration;
use xmppd::xml::Element;

const NS_BLOCKING: &str = "urn:xmpp:blocking";
const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
const NS_PRIVACY: &str = "jabber:iq:privacy";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const CLIENT: &str = "jabber:client";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// How long "nothing arrives" is watched after a synchronising ping.
const QUIET: Duration = Duration::from_millis(350);

// ---------------------------------------------------------------------------------------------
// Accounts and clients.

fn user(s: &Server, prefix: &str, shard: usize) -> User {
    User::on_shard(s, prefix, shard, 2)
}

/// An account on a server with one shard (or whose shard does not matter).
fn plain_user(s: &Server, prefix: &str) -> User {
    User::new(s, prefix)
}

/// Everything `c` gets up to a ping round trip and then within `QUIET`.
fn settle(c: &mut Client) -> Vec<Element> {
    let mut seen = c.sync();
    seen.extend(c.collect_for(QUIET));
    seen
}

/// Send an IQ (its id is made here) and wait for the answer; returns it and the elements
/// that arrived before it.
fn iq(c: &mut Client, ty: &str, to: Option<&str>, payload: &str) -> (Element, Vec<Element>) {
    let id = next_id("iq");
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    c.send(&format!("<iq type='{ty}' id='{id}'{to}>{payload}</iq>"));
    c.recv_until(&format!("answer to iq {id}"), |e| {
        e.name == "iq"
            && e.attr("id") == Some(id.as_str())
            && matches!(e.attr("type"), Some("result" | "error"))
    })
}

fn assert_result(r: &Element, what: &str) {
    assert_eq!(r.attr("type"), Some("result"), "{what}: {r:?}");
}

/// The defined condition of an error stanza, and the error type.
fn condition(e: &Element) -> (String, String) {
    let (cond, ty, _) = stanza_error(e).unwrap_or_else(|| panic!("not an error: {e:?}"));
    (cond, ty)
}

fn error_text(e: &Element) -> String {
    e.child("error", CLIENT)
        .and_then(|err| err.child("text", NS_STANZAS))
        .map(|t| t.text())
        .unwrap_or_default()
}

/// XEP-0191 §3.3: `<not-acceptable/>` with `<blocked xmlns='urn:xmpp:blocking:errors'/>`.
fn assert_blocked_error(e: &Element, what: &str) {
    assert_eq!(e.attr("type"), Some("error"), "{what}: {e:?}");
    assert_eq!(condition(e).0, "not-acceptable", "{what}: {e:?}");
    assert!(
        e.child("error", CLIENT)
            .and_then(|err| err.child("blocked", NS_BLOCKING_ERRORS))
            .is_some(),
        "{what}: no <blocked xmlns='{NS_BLOCKING_ERRORS}'/>: {e:?}"
    );
}

fn has_blocked_payload(e: &Element) -> bool {
    e.child("error", CLIENT)
        .and_then(|err| err.child("blocked", NS_BLOCKING_ERRORS))
        .is_some()
}

fn items_xml(jids: &[&str]) -> String {
    jids.iter()
        .map(|j| format!("<item jid='{j}'/>"))
        .collect::<String>()
}

/// Ask for the blocklist (which also subscribes this resource to pushes); the JIDs, sorted.
fn blocklist(c: &mut Client) -> Vec<String> {
    let (r, _) = iq(
        c,
        "get",
        None,
        &format!("<blocklist xmlns='{NS_BLOCKING}'/>"),
    );
    assert_result(&r, "blocklist get");
    let list = r
        .child("blocklist", NS_BLOCKING)
        .unwrap_or_else(|| panic!("no <blocklist/> in {r:?}"));
    let mut jids: Vec<String> = list
        .elements()
        .map(|i| {
            assert!(i.is("item", NS_BLOCKING), "{i:?}");
            i.attr("jid").expect("item jid").to_string()
        })
        .collect();
    jids.sort();
    jids
}

/// Send `<block/>` with these items; the answer and what arrived before it.
fn block(c: &mut Client, jids: &[&str]) -> (Element, Vec<Element>) {
    iq(
        c,
        "set",
        None,
        &format!("<block xmlns='{NS_BLOCKING}'>{}</block>", items_xml(jids)),
    )
}

/// Block, expecting a result.
fn block_ok(c: &mut Client, jids: &[&str]) -> Vec<Element> {
    let (r, before) = block(c, jids);
    assert_result(&r, &format!("block {jids:?}"));
    before
}

/// Send `<unblock/>` with these items (none: unblock all).
fn unblock(c: &mut Client, jids: &[&str]) -> (Element, Vec<Element>) {
    iq(
        c,
        "set",
        None,
        &format!(
            "<unblock xmlns='{NS_BLOCKING}'>{}</unblock>",
            items_xml(jids)
        ),
    )
}

fn unblock_ok(c: &mut Client, jids: &[&str]) -> Vec<Element> {
    let (r, before) = unblock(c, jids);
    assert_result(&r, &format!("unblock {jids:?}"));
    before
}

/// If `e` is a blocking push of `kind` (`block` or `unblock`), its item JIDs, sorted.
fn push_items(e: &Element, kind: &str) -> Option<Vec<String>> {
    if e.name != "iq" || e.attr("type") != Some("set") {
        return None;
    }
    let payload = e.child(kind, NS_BLOCKING)?;
    let mut jids: Vec<String> = payload
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect();
    jids.sort();
    Some(jids)
}

fn is_blocking_push(e: &Element) -> bool {
    push_items(e, "block").is_some() || push_items(e, "unblock").is_some()
}

/// Wait for a blocking push of `kind`; returns its items.
fn expect_push(c: &mut Client, kind: &str) -> Vec<String> {
    let (e, _) = c.recv_until(&format!("<{kind}/> push"), |e| {
        push_items(e, kind).is_some()
    });
    assert_eq!(e.attr("to"), c.jid.as_deref(), "push addressed: {e:?}");
    push_items(&e, kind).unwrap()
}

fn sorted(jids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = jids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// Messages.

fn send_chat(c: &mut Client, to: &str, body: &str) -> String {
    let id = next_id("m");
    c.send(&format!(
        "<message type='chat' id='{id}' to='{to}'><body>{body}</body></message>"
    ));
    id
}

fn is_message_with(e: &Element, body: &str) -> bool {
    e.name == "message"
        && e.attr("type") != Some("error")
        && e.child("body", CLIENT).is_some_and(|b| b.text() == body)
}

fn expect_message(c: &mut Client, from: &str, body: &str) -> Element {
    let (m, _) = c.recv_until(&format!("message {body:?}"), |e| is_message_with(e, body));
    assert_eq!(m.attr("from"), Some(from), "{m:?}");
    m
}

/// Wait for the error answer to the stanza `id`.
fn expect_error(c: &mut Client, kind: &str, id: &str) -> Element {
    let (e, _) = c.recv_until(&format!("error for {kind} {id}"), |e| {
        e.name == kind && e.attr("id") == Some(id)
    });
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    e
}

/// A message from `from` to the blocking user, refused with `<service-unavailable/>` (BLOCK-06).
fn expect_refused_inbound(from: &mut Client, to: &str, body: &str) {
    let id = send_chat(from, to, body);
    let e = expect_error(from, "message", &id);
    assert_eq!(condition(&e).0, "service-unavailable", "{e:?}");
    assert_eq!(
        e.attr("from"),
        Some(to),
        "the error comes from the addressee: {e:?}"
    );
    assert!(
        !has_blocked_payload(&e),
        "the blocked JID must not learn it is blocked: {e:?}"
    );
}

fn assert_nothing_from(seen: &[Element], bare: &str, ctx: &str) {
    let got = from_account(seen, bare);
    assert!(
        got.is_empty(),
        "{ctx}: unexpected stanzas from {bare}: {got:?}"
    );
}

// Presence subscriptions (RFC 6121 §3.1).

/// The subscription state of `contact` in `c`'s roster.
fn subscription_of(c: &mut Client, contact: &str) -> Option<String> {
    let (items, _) = c.roster_items();
    items
        .iter()
        .find(|i| i.attr("jid") == Some(contact))
        .and_then(|i| i.attr("subscription").map(str::to_string))
}

// Privacy lists (XEP-0016), the other view of the same store.

/// `<default name=…/>` of a privacy get, and the names of the lists.
fn privacy_overview(c: &mut Client) -> (Option<String>, Vec<String>) {
    let (r, _) = iq(c, "get", None, &format!("<query xmlns='{NS_PRIVACY}'/>"));
    assert_result(&r, "privacy get");
    let q = r.child("query", NS_PRIVACY).expect("query");
    let default = q
        .child("default", NS_PRIVACY)
        .and_then(|d| d.attr("name").map(str::to_string));
    let lists = q
        .elements()
        .filter(|e| e.name == "list")
        .filter_map(|l| l.attr("name").map(str::to_string))
        .collect();
    (default, lists)
}

/// The items of a privacy list, in the order the server returns them.
fn privacy_items(c: &mut Client, name: &str) -> Vec<Element> {
    let (r, _) = iq(
        c,
        "get",
        None,
        &format!("<query xmlns='{NS_PRIVACY}'><list name='{name}'/></query>"),
    );
    assert_result(&r, &format!("privacy list {name}"));
    let list = r
        .child("query", NS_PRIVACY)
        .and_then(|q| q.child("list", NS_PRIVACY))
        .expect("list");
    list.elements().cloned().collect()
}

fn privacy_set(c: &mut Client, inner: &str) -> Element {
    let (r, _) = iq(
        c,
        "set",
        None,
        &format!("<query xmlns='{NS_PRIVACY}'>{inner}</query>"),
    );
    r
}

fn order_of(item: &Element) -> u32 {
    item.attr("order").expect("order").parse().expect("number")
}

/// The item is a blocklist entry for `jid`: type jid, action deny, no child elements.
fn is_block_entry(item: &Element, jid: &str) -> bool {
    item.attr("type") == Some("jid")
        && item.attr("value") == Some(jid)
        && item.attr("action") == Some("deny")
        && item.elements().next().is_none()
}

// ---------------------------------------------------------------------------------------------
// BLOCK-01

#[test]
fn block_01_disco_info_advertises_urn_xmpp_blocking() {
    let s = Server::shared();
    let a = user(s, "bdisco", 0);
    let mut c = a.login(s, "r");
    let (r, _) = iq(
        &mut c,
        "get",
        Some(DOMAIN),
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    );
    assert_result(&r, "disco#info");
    let features: Vec<&str> = r
        .child("query", DISCO_INFO)
        .expect("query")
        .elements()
        .filter(|e| e.name == "feature")
        .filter_map(|f| f.attr("var"))
        .collect();
    assert!(features.contains(&NS_BLOCKING), "{features:?}");
}

// ---------------------------------------------------------------------------------------------
// BLOCK-02

#[test]
fn block_02_blocklist_get_is_empty_then_lists_every_blocked_jid() {
    let s = Server::shared();
    let a = user(s, "bget", 0);
    let mut c = a.login(s, "r");
    // A fresh account: an empty <blocklist/>, not an error.
    assert!(blocklist(&mut c).is_empty());
    let jids = [
        "tybalt@example.net",
        "example.org",
        "nurse@example.com/balcony",
    ];
    block_ok(&mut c, &jids);
    assert_eq!(blocklist(&mut c), sorted(&jids));
    // A second session of the account sees the same list.
    let mut c2 = a.login(s, "other");
    assert_eq!(blocklist(&mut c2), sorted(&jids));
}

// ---------------------------------------------------------------------------------------------
// BLOCK-03

#[test]
fn block_03_block_one_and_several_pushes_only_to_resources_that_asked_for_the_blocklist() {
    let s = Server::shared();
    let a = user(s, "bpush", 0);
    let mut r1 = a.login(s, "one");
    let mut r2 = a.login(s, "two");
    let mut r3 = a.login(s, "three"); // never asks for the blocklist
    assert!(blocklist(&mut r1).is_empty());
    assert!(blocklist(&mut r2).is_empty());

    // One item: a result, and the push to both interested resources (the requester too).
    let before = block_ok(&mut r1, &["romeo@example.net"]);
    let pushes: Vec<_> = before
        .iter()
        .filter_map(|e| push_items(e, "block"))
        .collect();
    assert_eq!(pushes, [sorted(&["romeo@example.net"])], "{before:?}");
    assert_eq!(
        expect_push(&mut r2, "block"),
        sorted(&["romeo@example.net"])
    );

    // Several items in one command: one push carrying them all.
    let several = [
        "mercutio@example.net",
        "example.com",
        "benvolio@example.org/r",
    ];
    let before = block_ok(&mut r2, &several);
    let pushes: Vec<_> = before
        .iter()
        .filter_map(|e| push_items(e, "block"))
        .collect();
    assert_eq!(pushes, [sorted(&several)], "{before:?}");
    assert_eq!(expect_push(&mut r1, "block"), sorted(&several));

    // The resource that never asked got no push: its ping answer comes first.
    let seen = r3.sync();
    assert!(
        !seen.iter().any(is_blocking_push),
        "push to a resource that did not ask for the blocklist: {seen:?}"
    );
    let mut all = vec!["romeo@example.net"];
    all.extend(several);
    assert_eq!(blocklist(&mut r3), sorted(&all));
}

#[test]
fn block_03_items_are_normalized_and_blocking_twice_adds_nothing() {
    let s = Server::shared();
    let a = user(s, "bnorm", 0);
    let mut c = a.login(s, "r");
    block_ok(&mut c, &["Tybalt@Example.NET", "tybalt@example.net"]);
    assert_eq!(blocklist(&mut c), ["tybalt@example.net"]);
    block_ok(&mut c, &["tybalt@example.net"]);
    assert_eq!(blocklist(&mut c), ["tybalt@example.net"]);
    // One privacy item, not two.
    let (default, _) = privacy_overview(&mut c);
    let items = privacy_items(&mut c, default.as_deref().expect("a default list"));
    assert_eq!(items.len(), 1, "{items:?}");
}

#[test]
fn block_03_blocklist_bound_is_policy_violation_and_changes_nothing() {
    let s = Server::start(&["--max-blocklist-items", "3"]);
    let a = plain_user(&s, "bbound");
    let mut c = a.login(&s, "r");
    let mut other = a.login(&s, "watcher");
    assert!(blocklist(&mut c).is_empty());
    assert!(blocklist(&mut other).is_empty());
    block_ok(&mut c, &["x1@example.net", "x2@example.net"]);
    expect_push(&mut other, "block");

    // Two more would make four: refused, with a text naming the flag; nothing blocked.
    let (r, before) = block(&mut c, &["x3@example.net", "x4@example.net"]);
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    assert_eq!(condition(&r).0, "policy-violation", "{r:?}");
    assert!(
        error_text(&r).contains("--max-blocklist-items"),
        "the error should say which bound: {r:?}"
    );
    assert!(!before.iter().any(is_blocking_push), "{before:?}");
    assert_eq!(
        blocklist(&mut c),
        sorted(&["x1@example.net", "x2@example.net"])
    );
    let seen = other.sync();
    assert!(!seen.iter().any(is_blocking_push), "{seen:?}");
    // The refused JIDs are really not blocked: no <blocked/> for them.
    let id = send_chat(&mut c, "x3@example.net", "not blocked");
    let e = expect_error(&mut c, "message", &id);
    assert!(!has_blocked_payload(&e), "{e:?}");

    // Up to the bound is fine, and JIDs already blocked do not count again.
    block_ok(&mut c, &["x1@example.net", "x3@example.net"]);
    block_ok(&mut c, &["x2@example.net"]);
    assert_eq!(blocklist(&mut c).len(), 3);
    let (r, _) = block(&mut c, &["x5@example.net"]);
    assert_eq!(condition(&r).0, "policy-violation", "{r:?}");
    assert_eq!(blocklist(&mut c).len(), 3);
}

// ---------------------------------------------------------------------------------------------
// BLOCK-04

#[test]
fn block_04_block_without_items_is_bad_request_and_changes_nothing() {
    let s = Server::shared();
    let a = user(s, "bempty", 0);
    let mut c = a.login(s, "r");
    assert!(blocklist(&mut c).is_empty());
    let (r, before) = block(&mut c, &[]);
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    assert_eq!(condition(&r).0, "bad-request", "{r:?}");
    assert!(!before.iter().any(is_blocking_push), "{before:?}");
    assert!(blocklist(&mut c).is_empty());
    // The same with a list already there: it stays as it was.
    block_ok(&mut c, &["a@example.net"]);
    let (r, _) = block(&mut c, &[]);
    assert_eq!(condition(&r).0, "bad-request", "{r:?}");
    assert_eq!(blocklist(&mut c), ["a@example.net"]);
    // No privacy list appeared from the refused command on a fresh account either.
    let b = user(s, "bempty", 0);
    let mut d = b.login(s, "r");
    let (r, _) = block(&mut d, &[]);
    assert_eq!(condition(&r).0, "bad-request", "{r:?}");
    assert_eq!(privacy_overview(&mut d), (None, vec![]));
}

#[test]
fn block_04_malformed_items_are_refused_and_block_nothing() {
    let s = Server::shared();
    let a = user(s, "bbadjid", 0);
    let mut c = a.login(s, "r");
    assert!(blocklist(&mut c).is_empty());
    // (payload, condition): JIDs that are not JIDs are jid-malformed; a missing jid or an
    // element that is not an item is a bad request. A good item beside a bad one is not
    // blocked either: the command is all or nothing.
    let cases = [
        ("<item jid='a@b@c'/>", "jid-malformed"),
        (
            "<item jid='ok@example.net'/><item jid='@example.net'/>",
            "jid-malformed",
        ),
        ("<item jid='ok@example.net/'/>", "jid-malformed"),
        ("<item jid=''/>", "jid-malformed"),
        ("<item/>", "bad-request"),
        ("<item jid='ok@example.net'/><item/>", "bad-request"),
        ("<thing jid='ok@example.net'/>", "bad-request"),
    ];
    for (items, want) in cases {
        for kind in ["block", "unblock"] {
            let (r, before) = iq(
                &mut c,
                "set",
                None,
                &format!("<{kind} xmlns='{NS_BLOCKING}'>{items}</{kind}>"),
            );
            assert_eq!(r.attr("type"), Some("error"), "{kind} {items}: {r:?}");
            assert_eq!(condition(&r).0, want, "{kind} {items}: {r:?}");
            assert!(!before.iter().any(is_blocking_push), "{before:?}");
        }
    }
    assert!(blocklist(&mut c).is_empty());
}

// ---------------------------------------------------------------------------------------------
// BLOCK-05, BLOCK-08, BLOCK-14: presence effects.

/// A (shard 0) with two available resources (statuses "one" and "two") and one connected
/// but not available; B (shard 1) in `both` with A, available, having seen both of A's
/// available resources.
struct Pair {
    a: User,
    a1: Client,
    a2: Client,
    a3: Client,
    b: User,
    b1: Client,
}

fn pair(s: &Server) -> Pair {
    let a = user(s, "blkA", 0);
    let b = user(s, "blkB", 1);
    let mut a1 = a.available(s, "one", "<presence><status>one</status></presence>");
    let mut b1 = b.online(s, "b");
    befriend(&mut a1, &mut b1);
    let mut a2 = a.available(s, "two", "<presence><status>two</status></presence>");
    let (a2_full, b1_full) = (a2.full(), b1.full());
    b1.recv_until("A's second resource", |e| {
        is_presence(e, None, Some(&a2_full))
    });
    a2.recv_until("B's presence (probe answer)", |e| {
        is_presence(e, None, Some(&b1_full))
    });
    let a3 = a.login(s, "three");
    Pair {
        a,
        a1,
        a2,
        a3,
        b,
        b1,
    }
}

#[test]
fn block_05_blocking_a_contact_sends_unavailable_from_every_available_resource() {
    let s = Server::shared();
    let mut p = pair(s);
    let (a1_full, a2_full, a3_full) = (p.a1.full(), p.a2.full(), p.a3.full());
    block_ok(&mut p.a1, &[&p.b.jid]);
    // BLOCK-05: unavailable from each available resource, routed before the result.
    let (got, _) = p.b1.recv_all(&[
        ("unavailable from A/one", &|e: &Element| {
            is_presence(e, Some("unavailable"), Some(&a1_full))
        }),
        ("unavailable from A/two", &|e: &Element| {
            is_presence(e, Some("unavailable"), Some(&a2_full))
        }),
    ]);
    assert_eq!(got.len(), 2);
    // Not from the resource that never was available, and nothing else from A.
    let seen = settle(&mut p.b1);
    assert_nothing_from(&seen, &p.a.jid, "B after the block");
    assert!(
        !seen
            .iter()
            .any(|e| e.attr("from") == Some(a3_full.as_str())),
        "{seen:?}"
    );
    // A's later broadcasts do not reach B.
    p.a1.send("<presence><status>after the block</status></presence>");
    p.a1.recv_until("echo", |e| {
        is_presence(e, None, Some(&a1_full)) && status_of(e).as_deref() == Some("after the block")
    });
    let seen = settle(&mut p.b1);
    assert_nothing_from(&seen, &p.a.jid, "B after A's new presence");
}

#[test]
fn block_05_blocking_a_jid_not_allowed_to_see_presence_sends_it_nothing() {
    let s = Server::shared();
    let a = user(s, "bnosub", 0);
    let c = user(s, "bnosubC", 1);
    let mut a1 = a.online(s, "r");
    let mut c1 = c.online(s, "c");
    // c subscribed to nothing of a's: blocking c sends c no presence.
    block_ok(&mut a1, &[&c.jid]);
    let seen = settle(&mut c1);
    assert_nothing_from(&seen, &a.jid, "C (no subscription)");
    // A `to` contact (A sees C's presence, C does not see A's) gets nothing either.
    unblock_ok(&mut a1, &[&c.jid]);
    subscribe_to(&mut a1, &mut c1);
    block_ok(&mut a1, &[&c.jid]);
    let seen = settle(&mut c1);
    let presence: Vec<&Element> = from_account(&seen, &a.jid)
        .into_iter()
        .filter(|e| e.name == "presence")
        .collect();
    assert!(
        presence.is_empty(),
        "C has no subscription to A's presence: {presence:?}"
    );
}

#[test]
fn block_08_unblock_pushes_resumes_delivery_and_sends_current_presence() {
    let s = Server::shared();
    let mut p = pair(s);
    let (a1_full, a2_full, a3_full) = (p.a1.full(), p.a2.full(), p.a3.full());
    assert!(blocklist(&mut p.a2).is_empty()); // a2 gets the pushes
    block_ok(&mut p.a1, &[&p.b.jid]);
    assert_eq!(
        expect_push(&mut p.a2, "block"),
        std::slice::from_ref(&p.b.jid)
    );
    for full in [&a1_full, &a2_full] {
        p.b1.recv_until("unavailable", |e| {
            is_presence(e, Some("unavailable"), Some(full))
        });
    }
    expect_refused_inbound(&mut p.b1, &p.a.jid, "while blocked");

    // Unblock: a result, the same unblock pushed, and B gets A's current presence from each
    // available resource (with its status), none from the unavailable one.
    unblock_ok(&mut p.a1, &[&p.b.jid]);
    assert_eq!(
        expect_push(&mut p.a2, "unblock"),
        std::slice::from_ref(&p.b.jid)
    );
    let (got, _) = p.b1.recv_all(&[
        ("A/one available", &|e: &Element| {
            is_presence(e, None, Some(&a1_full))
        }),
        ("A/two available", &|e: &Element| {
            is_presence(e, None, Some(&a2_full))
        }),
    ]);
    assert_eq!(status_of(&got[0]).as_deref(), Some("one"), "{:?}", got[0]);
    assert_eq!(status_of(&got[1]).as_deref(), Some("two"), "{:?}", got[1]);
    // Delivery resumes both ways.
    send_chat(&mut p.b1, &a1_full, "after unblock");
    expect_message(&mut p.a1, &p.b1.full(), "after unblock");
    send_chat(&mut p.a2, &p.b.jid, "to you again");
    expect_message(&mut p.b1, &a2_full, "to you again");
    // And A's broadcasts reach B again.
    p.a1.send("<presence><status>back</status></presence>");
    p.b1.recv_until("A's new presence", |e| {
        is_presence(e, None, Some(&a1_full)) && status_of(e).as_deref() == Some("back")
    });
    let seen = settle(&mut p.b1);
    assert!(
        !seen
            .iter()
            .any(|e| e.name == "presence" && e.attr("from") == Some(a3_full.as_str())),
        "{seen:?}"
    );
}

#[test]
fn block_14_polite_blocking_keeps_the_subscription_and_sends_no_notice() {
    let s = Server::shared();
    let mut p = pair(s);
    block_ok(&mut p.a1, &[&p.b.jid]);
    // What B sees: unavailable presence from A's resources and nothing else (no unsubscribe,
    // unsubscribed, message or roster push).
    let seen = settle(&mut p.b1);
    let from_a = from_account(&seen, &p.a.jid);
    assert!(
        from_a
            .iter()
            .all(|e| is_presence(e, Some("unavailable"), None)),
        "B got more than unavailable from A: {from_a:?}"
    );
    assert!(
        !seen.iter().any(|e| is_push_for(e, &p.a.jid)),
        "B's roster changed: {seen:?}"
    );
    // Both rosters keep `both`, and A's resources got no roster push about B.
    assert_eq!(
        subscription_of(&mut p.b1, &p.a.jid).as_deref(),
        Some("both")
    );
    let (items, before) = p.a2.roster_items();
    assert!(
        !before.iter().any(|e| is_push_for(e, &p.b.jid)),
        "{before:?}"
    );
    let item = items
        .iter()
        .find(|i| i.attr("jid") == Some(p.b.jid.as_str()))
        .expect("B still in A's roster");
    assert_eq!(item.attr("subscription"), Some("both"), "{item:?}");
    // Unblocking needs no new handshake: presence flows again.
    unblock_ok(&mut p.a1, &[&p.b.jid]);
    let a1_full = p.a1.full();
    p.b1.recv_until("A's presence again", |e| {
        is_presence(e, None, Some(&a1_full))
    });
    assert_eq!(
        subscription_of(&mut p.b1, &p.a.jid).as_deref(),
        Some("both")
    );
}

// ---------------------------------------------------------------------------------------------
// BLOCK-06: inbound from a blocked JID.

#[test]
fn block_06_inbound_message_from_blocked_gets_service_unavailable_and_is_not_delivered() {
    let s = Server::shared();
    let a = user(s, "binmsg", 0);
    let b = user(s, "binmsgB", 1);
    let mut a1 = a.online(s, "r");
    let mut b1 = b.online(s, "b");
    block_ok(&mut a1, &[&b.jid]);
    // chat to the bare JID, normal to the full JID, headline: each refused.
    expect_refused_inbound(&mut b1, &a.jid, "chat to bare");
    let id = next_id("m");
    b1.send(&format!(
        "<message id='{id}' to='{}'><body>normal to full</body></message>",
        a1.full()
    ));
    let e = expect_error(&mut b1, "message", &id);
    assert_eq!(condition(&e).0, "service-unavailable", "{e:?}");
    // A message error from the blocked JID is dropped without an answer.
    let id = next_id("m");
    b1.send(&format!(
        "<message type='error' id='{id}' to='{}'><error type='cancel'>\
         <item-not-found xmlns='{NS_STANZAS}'/></error></message>",
        a1.full()
    ));
    let seen = settle(&mut b1);
    assert!(
        !seen.iter().any(|e| e.attr("id") == Some(id.as_str())),
        "{seen:?}"
    );
    let seen = settle(&mut a1);
    assert_nothing_from(&seen, &b.jid, "A");
    // Someone not blocked still gets through.
    let c = user(s, "binmsgC", 1);
    let mut c1 = c.login(s, "c");
    send_chat(&mut c1, &a.jid, "from C");
    expect_message(&mut a1, &c1.full(), "from C");
}

#[test]
fn block_06_inbound_iq_get_set_from_blocked_get_service_unavailable_results_dropped() {
    let s = Server::shared();
    let a = user(s, "biniq", 0);
    let b = user(s, "biniqB", 1);
    let mut a1 = a.online(s, "r");
    let mut b1 = b.online(s, "b");
    let a_full = a1.full();
    block_ok(&mut a1, &[&b.jid]);
    // get and set to the full JID (would be delivered to the client), and a get to the bare
    // JID (answered by the server for the account): service-unavailable.
    for (ty, to, payload) in [
        ("get", a_full.as_str(), "<ping xmlns='urn:xmpp:ping'/>"),
        ("set", a_full.as_str(), "<query xmlns='jabber:iq:x-test'/>"),
        ("get", a.jid.as_str(), "<vCard xmlns='vcard-temp'/>"),
        (
            "get",
            a.jid.as_str(),
            &format!("<query xmlns='{DISCO_INFO}'/>"),
        ),
    ] {
        let (r, _) = iq(&mut b1, ty, Some(to), payload);
        assert_eq!(r.attr("type"), Some("error"), "{ty} {to} {payload}: {r:?}");
        assert_eq!(
            condition(&r).0,
            "service-unavailable",
            "{ty} {to} {payload}: {r:?}"
        );
        assert!(!has_blocked_payload(&r), "{r:?}");
    }
    // result and error: dropped, no answer either way.
    let (rid, eid) = (next_id("res"), next_id("err"));
    b1.send(&format!("<iq type='result' id='{rid}' to='{a_full}'/>"));
    b1.send(&format!(
        "<iq type='error' id='{eid}' to='{a_full}'><error type='cancel'>\
         <service-unavailable xmlns='{NS_STANZAS}'/></error></iq>"
    ));
    let seen = settle(&mut b1);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e.attr("id"), Some(i) if i == rid || i == eid)),
        "{seen:?}"
    );
    let seen = settle(&mut a1);
    assert_nothing_from(&seen, &b.jid, "A");
}

#[test]
fn block_06_inbound_presence_from_blocked_is_dropped_without_any_answer() {
    let s = Server::shared();
    let mut p = pair(s);
    block_ok(&mut p.a1, &[&p.b.jid]);
    for full in [p.a1.full(), p.a2.full()] {
        p.b1.recv_until("unavailable", |e| {
            is_presence(e, Some("unavailable"), Some(&full))
        });
    }
    // What the block itself sent A's resources (B shown unavailable) is not B's doing.
    for c in [&mut p.a1, &mut p.a2, &mut p.a3] {
        settle(c);
    }
    // B's broadcast, a directed presence, a probe, a subscribe and an unsubscribe: A's
    // resources see none of them and B gets no answer, not even an error.
    p.b1.send("<presence><status>b changed</status></presence>");
    let b_full = p.b1.full();
    p.b1.recv_until("own echo", |e| is_presence(e, None, Some(&b_full)));
    for stanza in [
        format!(
            "<presence to='{}'><status>directed</status></presence>",
            p.a1.full()
        ),
        format!("<presence type='probe' to='{}'/>", p.a.jid),
        format!("<presence type='subscribe' to='{}'/>", p.a.jid),
        format!("<presence type='unsubscribe' to='{}'/>", p.a.jid),
    ] {
        p.b1.send(&stanza);
    }
    let seen = settle(&mut p.b1);
    assert_nothing_from(&seen, &p.a.jid, "B");
    for c in [&mut p.a1, &mut p.a2, &mut p.a3] {
        let seen = settle(c);
        assert_nothing_from(&seen, &p.b.jid, "A's resource");
    }
    // The refused unsubscribe left no trace: the subscription is still `both`.
    assert_eq!(
        subscription_of(&mut p.a1, &p.b.jid).as_deref(),
        Some("both")
    );
    // B reconnecting (its server probes A, and broadcasts to A): nothing from A to B,
    // nothing from B to A.
    p.b1.close();
    let mut b2 = p.b.online(s, "again");
    let seen = settle(&mut b2);
    assert_nothing_from(&seen, &p.a.jid, "B's new session");
    let seen = settle(&mut p.a1);
    assert_nothing_from(&seen, &p.b.jid, "A after B came back");
}

#[test]
fn block_06_blocked_while_offline_message_refused_and_not_stored() {
    let s = Server::shared();
    let a = user(s, "boff", 0);
    let b = user(s, "boffB", 1);
    {
        let mut a1 = a.login(s, "r");
        block_ok(&mut a1, &[&b.jid]);
        a1.close();
    }
    let mut b1 = b.online(s, "b");
    // The offline account's default list decides: refused, not stored.
    expect_refused_inbound(&mut b1, &a.jid, "while A is offline");
    b1.send(&format!("<presence type='subscribe' to='{}'/>", a.jid));
    let (r, _) = iq(&mut b1, "get", Some(&a.jid), "<vCard xmlns='vcard-temp'/>");
    assert_eq!(condition(&r).0, "service-unavailable", "{r:?}");
    let seen = settle(&mut b1);
    assert_nothing_from(&seen, &a.jid, "B");
    // A comes online: no offline message and no subscription request from B.
    let mut a1 = a.online(s, "r");
    let seen = settle(&mut a1);
    assert_nothing_from(&seen, &b.jid, "A's next session");
}

// ---------------------------------------------------------------------------------------------
// BLOCK-07: outbound to a blocked JID.

#[test]
fn block_07_outbound_to_blocked_gets_not_acceptable_with_blocked_payload() {
    let s = Server::shared();
    let a = user(s, "bout", 0);
    let b = user(s, "boutB", 1);
    let mut a1 = a.online(s, "r");
    let mut b1 = b.online(s, "b");
    let b_full = b1.full();
    block_ok(&mut a1, &[&b.jid]);
    // message (to bare and full), iq get and set, directed presence and subscribe.
    let stanzas = [
        (
            "message",
            format!(
                "<message type='chat' to='{}'><body>x</body></message>",
                b.jid
            ),
        ),
        (
            "message",
            format!("<message to='{b_full}'><body>y</body></message>"),
        ),
        (
            "iq",
            format!("<iq type='get' to='{b_full}'><ping xmlns='urn:xmpp:ping'/></iq>"),
        ),
        (
            "iq",
            format!("<iq type='set' to='{b_full}'><query xmlns='jabber:iq:x-test'/></iq>"),
        ),
        (
            "presence",
            format!("<presence to='{b_full}'><status>hi</status></presence>"),
        ),
        (
            "presence",
            format!("<presence type='subscribe' to='{}'/>", b.jid),
        ),
    ];
    for (kind, stanza) in stanzas {
        let id = next_id("o");
        let stanza = stanza.replacen(&format!("<{kind} "), &format!("<{kind} id='{id}' "), 1);
        a1.send(&stanza);
        let e = expect_error(&mut a1, kind, &id);
        assert_blocked_error(&e, &stanza);
        assert_eq!(condition(&e).1, "cancel", "{e:?}");
        assert_eq!(e.attr("to"), Some(a1.full().as_str()), "{e:?}");
    }
    // None of it reached B.
    let seen = settle(&mut b1);
    assert_nothing_from(&seen, &a.jid, "B");
    // An error stanza to the blocked JID is dropped, not answered.
    let id = next_id("oe");
    a1.send(&format!(
        "<message type='error' id='{id}' to='{b_full}'><error type='cancel'>\
         <item-not-found xmlns='{NS_STANZAS}'/></error></message>"
    ));
    let seen = settle(&mut a1);
    assert!(
        !seen.iter().any(|e| e.attr("id") == Some(id.as_str())),
        "{seen:?}"
    );
    let seen = settle(&mut b1);
    assert_nothing_from(&seen, &a.jid, "B");
}

// ---------------------------------------------------------------------------------------------
// BLOCK-09

#[test]
fn block_09_empty_unblock_clears_everything_and_pushes_an_empty_unblock() {
    let s = Server::shared();
    let a = user(s, "ball", 0);
    let b = user(s, "ballB", 1);
    let c = user(s, "ballC", 1);
    let mut a1 = a.online(s, "r");
    let mut watcher = a.login(s, "watch");
    let mut quiet = a.login(s, "quiet");
    assert!(blocklist(&mut watcher).is_empty());
    let mut b1 = b.login(s, "b");
    let mut c1 = c.login(s, "c");
    block_ok(&mut a1, &[&b.jid, &c.jid, "example.org"]);
    expect_push(&mut watcher, "block");
    expect_refused_inbound(&mut b1, &a.jid, "b blocked");
    expect_refused_inbound(&mut c1, &a.jid, "c blocked");

    let before = unblock_ok(&mut a1, &[]);
    assert!(
        !before.iter().any(is_blocking_push),
        "a1 never asked: {before:?}"
    );
    // The push is an empty <unblock/>.
    assert_eq!(expect_push(&mut watcher, "unblock"), Vec::<String>::new());
    let seen = quiet.sync();
    assert!(!seen.iter().any(is_blocking_push), "{seen:?}");
    assert!(blocklist(&mut a1).is_empty());
    // Everyone gets through again.
    send_chat(&mut b1, &a1.full(), "b is back");
    expect_message(&mut a1, &b1.full(), "b is back");
    send_chat(&mut c1, &a1.full(), "c is back");
    expect_message(&mut a1, &c1.full(), "c is back");
    send_chat(&mut a1, &b1.full(), "hello b");
    expect_message(&mut b1, &a1.full(), "hello b");
    // Unblocking all with nothing blocked is still a result (with its push).
    unblock_ok(&mut a1, &[]);
    assert_eq!(expect_push(&mut watcher, "unblock"), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// BLOCK-10

#[test]
fn block_10_blocklist_persists_across_sessions() {
    let s = Server::shared();
    let a = user(s, "bpers", 0);
    let b = user(s, "bpersB", 1);
    {
        let mut a1 = a.login(s, "first");
        block_ok(&mut a1, &[&b.jid, "example.org"]);
        a1.close();
    }
    let mut b1 = b.online(s, "b");
    let mut a2 = a.online(s, "second");
    assert_eq!(blocklist(&mut a2), sorted(&[&b.jid, "example.org"]));
    expect_refused_inbound(&mut b1, &a.jid, "next session");
    expect_refused_inbound(&mut b1, &a2.full(), "next session, full JID");
    let id = send_chat(&mut a2, &b.jid, "x");
    assert_blocked_error(&expect_error(&mut a2, "message", &id), "outbound");
}

#[test]
fn block_10_blocklist_persists_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b);
    {
        let s = Server::start_on(dir.path(), &["--shards", "2"]);
        a = user(&s, "brestA", 0);
        b = user(&s, "brestB", 1);
        let mut a1 = a.login(&s, "r");
        block_ok(&mut a1, &[&b.jid, "example.org/bot"]);
        a1.close();
        let status = s.signal_and_wait(libc::SIGTERM).expect("server stops");
        assert!(status.success(), "{status:?}");
    }
    let s = Server::start_on(dir.path(), &["--shards", "2"]);
    let mut b1 = b.online(&s, "b");
    // While A is offline (the stored default list decides), then with A online.
    expect_refused_inbound(&mut b1, &a.jid, "after restart, A offline");
    let mut a1 = a.online(&s, "r");
    assert_eq!(blocklist(&mut a1), sorted(&[&b.jid, "example.org/bot"]));
    expect_refused_inbound(&mut b1, &a1.full(), "after restart, A online");
    let id = send_chat(&mut a1, &b.jid, "x");
    assert_blocked_error(&expect_error(&mut a1, "message", &id), "outbound");
    // And it can still be changed.
    unblock_ok(&mut a1, &[&b.jid]);
    send_chat(&mut b1, &a1.full(), "through");
    expect_message(&mut a1, &b1.full(), "through");
}

// ---------------------------------------------------------------------------------------------
// BLOCK-11: one store with XEP-0016.

#[test]
fn block_11_blocked_jid_appears_as_jid_deny_item_in_the_default_privacy_list() {
    let s = Server::shared();
    let a = user(s, "bstore", 0);
    let mut a1 = a.login(s, "r");
    let mut lists = a.login(s, "lists"); // a privacy-list client
    assert_eq!(privacy_overview(&mut lists), (None, vec![]));

    block_ok(&mut a1, &["tybalt@example.net", "example.org"]);
    // The privacy client learns the list changed (XEP-0016 push), with the list's name.
    let (push, _) = lists.recv_until("privacy list push", |e| {
        e.name == "iq" && e.attr("type") == Some("set") && e.child("query", NS_PRIVACY).is_some()
    });
    let pushed = push
        .child("query", NS_PRIVACY)
        .and_then(|q| q.child("list", NS_PRIVACY))
        .and_then(|l| l.attr("name"))
        .map(str::to_string);
    // Without a default list, the blocking command made one and made it the default.
    let (default, names) = privacy_overview(&mut lists);
    let default = default.expect("a default list after blocking");
    assert!(names.contains(&default), "{names:?}");
    assert_eq!(pushed.as_deref(), Some(default.as_str()), "{push:?}");
    let items = privacy_items(&mut lists, &default);
    assert_eq!(items.len(), 2, "{items:?}");
    for jid in ["tybalt@example.net", "example.org"] {
        assert!(
            items.iter().any(|i| is_block_entry(i, jid)),
            "no jid/deny item for {jid}: {items:?}"
        );
    }
    // Unblocking one removes its item; the other stays.
    unblock_ok(&mut a1, &["tybalt@example.net"]);
    let items = privacy_items(&mut lists, &default);
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(is_block_entry(&items[0], "example.org"), "{items:?}");
    // Unblocking all leaves no blocklist entry in whatever default list remains.
    unblock_ok(&mut a1, &[]);
    if let (Some(d), _) = privacy_overview(&mut lists) {
        let items = privacy_items(&mut lists, &d);
        assert!(
            !items
                .iter()
                .any(|i| i.attr("type") == Some("jid") && i.attr("action") == Some("deny")),
            "{items:?}"
        );
    }
    assert!(blocklist(&mut a1).is_empty());
}

#[test]
fn block_11_jid_deny_items_of_the_default_privacy_list_are_the_blocklist() {
    let s = Server::shared();
    let a = user(s, "bstore2", 0);
    let c = user(s, "bstore2C", 1);
    let d = user(s, "bstore2D", 1);
    let mut a1 = a.online(s, "r");
    let mut watcher = a.login(s, "watch");
    assert!(blocklist(&mut watcher).is_empty());
    let mut c1 = c.online(s, "c");
    let mut d1 = d.online(s, "d");

    // A list with a blocklist entry for C, a jid/deny rule for D that covers messages only
    // (not a blocklist entry: it has a child element), and an allow-all.
    let r = privacy_set(
        &mut a1,
        &format!(
            "<list name='mine'>\
             <item type='jid' value='{}' action='deny' order='10'/>\
             <item type='jid' value='{}' action='deny' order='20'><message/></item>\
             <item action='allow' order='30'/>\
             </list>",
            c.jid, d.jid
        ),
    );
    assert_result(&r, "put list");
    // Not the default yet: no blocklist.
    assert!(blocklist(&mut a1).is_empty());
    let r = privacy_set(&mut a1, "<default name='mine'/>");
    assert_result(&r, "set default");
    // Now it is: C is blocked, D is not (the watcher is told of C only).
    assert_eq!(
        expect_push(&mut watcher, "block"),
        std::slice::from_ref(&c.jid)
    );
    assert_eq!(blocklist(&mut a1), std::slice::from_ref(&c.jid));
    expect_refused_inbound(&mut c1, &a.jid, "C via privacy list");
    let id = send_chat(&mut a1, &c.jid, "to C");
    assert_blocked_error(&expect_error(&mut a1, "message", &id), "outbound to C");
    // D's rule is a plain privacy rule: D's messages are refused, A's to D go out.
    let id = send_chat(&mut d1, &a.jid, "from D");
    let e = expect_error(&mut d1, "message", &id);
    assert_eq!(condition(&e).0, "service-unavailable", "{e:?}");
    send_chat(&mut a1, &d1.full(), "to D");
    expect_message(&mut d1, &a1.full(), "to D");

    // Unblocking C through XEP-0191 edits the privacy list: C's item goes, the rest stays.
    unblock_ok(&mut a1, &[&c.jid]);
    assert_eq!(
        expect_push(&mut watcher, "unblock"),
        std::slice::from_ref(&c.jid)
    );
    let items = privacy_items(&mut a1, "mine");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(!items
        .iter()
        .any(|i| i.attr("value") == Some(c.jid.as_str())));
    assert!(items.iter().any(
        |i| i.attr("value") == Some(d.jid.as_str()) && i.child("message", NS_PRIVACY).is_some()
    ));
    assert!(items
        .iter()
        .any(|i| i.attr("type").is_none() && i.attr("action") == Some("allow")));
    assert_eq!(privacy_overview(&mut a1).0.as_deref(), Some("mine"));
    send_chat(&mut c1, &a1.full(), "C again");
    expect_message(&mut a1, &c1.full(), "C again");

    // Adding a jid/deny item through XEP-0016 shows in the blocklist (with a push), and
    // removing it again unblocks.
    let r = privacy_set(
        &mut a1,
        &format!(
            "<list name='mine'>\
             <item type='jid' value='{}' action='deny' order='1'/>\
             <item action='allow' order='30'/>\
             </list>",
            c.jid
        ),
    );
    assert_result(&r, "edit default list");
    assert_eq!(
        expect_push(&mut watcher, "block"),
        std::slice::from_ref(&c.jid)
    );
    assert_eq!(blocklist(&mut a1), std::slice::from_ref(&c.jid));
    expect_refused_inbound(&mut c1, &a.jid, "C blocked again via XEP-0016");
    let r = privacy_set(
        &mut a1,
        "<list name='mine'><item action='allow' order='30'/></list>",
    );
    assert_result(&r, "edit default list");
    assert_eq!(
        expect_push(&mut watcher, "unblock"),
        std::slice::from_ref(&c.jid)
    );
    assert!(blocklist(&mut a1).is_empty());
    send_chat(&mut c1, &a1.full(), "C once more");
    expect_message(&mut a1, &c1.full(), "C once more");
}

// ---------------------------------------------------------------------------------------------
// BLOCK-12: blocklist entries first, JID order.

#[test]
fn block_12_blocklist_entries_go_first_and_win_over_later_allow_rules() {
    let s = Server::shared();
    let a = user(s, "bfirst", 0);
    let b = user(s, "bfirstB", 1);
    let c = user(s, "bfirstC", 1);
    let mut a1 = a.online(s, "r");
    let mut b1 = b.online(s, "b");
    let mut c1 = c.online(s, "c");
    // The default list allows B explicitly and denies every other message.
    let r = privacy_set(
        &mut a1,
        &format!(
            "<list name='strict'>\
             <item type='jid' value='{}' action='allow' order='5'/>\
             <item action='deny' order='10'><message/></item>\
             </list>",
            b.jid
        ),
    );
    assert_result(&r, "put list");
    assert_result(&privacy_set(&mut a1, "<default name='strict'/>"), "default");
    send_chat(&mut b1, &a1.full(), "allowed");
    expect_message(&mut a1, &b1.full(), "allowed");
    let id = send_chat(&mut c1, &a.jid, "denied by rule");
    assert_eq!(
        condition(&expect_error(&mut c1, "message", &id)).0,
        "service-unavailable"
    );

    // Blocking B puts a jid/deny entry in front of the allow rule, in the same list.
    block_ok(&mut a1, &[&b.jid]);
    let (default, _) = privacy_overview(&mut a1);
    assert_eq!(
        default.as_deref(),
        Some("strict"),
        "no new list: the default is edited"
    );
    let items = privacy_items(&mut a1, "strict");
    assert_eq!(items.len(), 3, "{items:?}");
    let entry = items
        .iter()
        .find(|i| is_block_entry(i, &b.jid))
        .expect("blocklist entry");
    let allow = items
        .iter()
        .find(|i| i.attr("action") == Some("allow"))
        .expect("allow rule");
    let deny_all = items
        .iter()
        .find(|i| i.attr("type").is_none())
        .expect("deny rule");
    assert!(
        order_of(entry) < order_of(allow) && order_of(allow) < order_of(deny_all),
        "blocklist entry first, rules keep their order: {items:?}"
    );
    // The entry decides before the allow rule, both ways.
    expect_refused_inbound(&mut b1, &a.jid, "blocked despite the allow rule");
    let id = send_chat(&mut a1, &b.jid, "x");
    assert_blocked_error(&expect_error(&mut a1, "message", &id), "outbound");
    // Unblocking restores the list's own rules.
    unblock_ok(&mut a1, &[&b.jid]);
    let items = privacy_items(&mut a1, "strict");
    assert_eq!(items.len(), 2, "{items:?}");
    send_chat(&mut b1, &a1.full(), "allowed again");
    expect_message(&mut a1, &b1.full(), "allowed again");
    let id = send_chat(&mut c1, &a.jid, "still denied");
    assert_eq!(
        condition(&expect_error(&mut c1, "message", &id)).0,
        "service-unavailable"
    );
}

#[test]
fn block_12_jid_forms_match_in_xep0016_order_outbound() {
    let s = Server::shared();
    let a = user(s, "bforms", 0);
    let mut a1 = a.online(s, "r");
    block_ok(
        &mut a1,
        &[
            "x@example.org",    // user@domain: any resource
            "example.net",      // domain: the domain, its users, its resources
            "example.com/bot",  // domain/resource: only that resource
            "y@example.edu/r1", // user@domain/resource: only that resource
        ],
    );
    // (addressee, blocked)
    let table = [
        ("x@example.org", true),
        ("x@example.org/any", true),
        ("z@example.org", false),
        ("example.org", false),
        ("example.net", true),
        ("example.net/res", true),
        ("anyone@example.net/r", true),
        ("sub.example.net", false),
        ("someone@sub.example.net", false),
        ("example.com/bot", true),
        ("example.com/other", false),
        ("example.com", false),
        ("y@example.edu/r1", true),
        ("y@example.edu/r2", false),
        ("y@example.edu", false),
    ];
    for (to, blocked) in table {
        let id = send_chat(&mut a1, to, "probe");
        let e = expect_error(&mut a1, "message", &id);
        if blocked {
            assert_blocked_error(&e, to);
        } else {
            // Routed: no server-to-server here, so some other error, without <blocked/>.
            assert!(
                !has_blocked_payload(&e),
                "{to} should not be blocked: {e:?}"
            );
            assert_ne!(condition(&e).0, "not-acceptable", "{to}: {e:?}");
        }
    }
}

#[test]
fn block_12_full_jid_blocks_one_resource_bare_jid_all_inbound() {
    let s = Server::shared();
    let a = user(s, "bfull", 0);
    let b = user(s, "bfullB", 1);
    let mut a1 = a.online(s, "r");
    let mut b1 = b.online(s, "one");
    let mut b2 = b.online(s, "two");
    let a_full = a1.full();
    // Only B/one.
    block_ok(&mut a1, &[&b.full("one")]);
    expect_refused_inbound(&mut b1, &a_full, "B/one");
    send_chat(&mut b2, &a_full, "from two");
    expect_message(&mut a1, &b2.full(), "from two");
    let id = send_chat(&mut a1, &b.full("one"), "x");
    assert_blocked_error(&expect_error(&mut a1, "message", &id), "to B/one");
    send_chat(&mut a1, &b.full("two"), "to two");
    expect_message(&mut b2, &a_full, "to two");
    // The bare JID: every resource.
    block_ok(&mut a1, &[&b.jid]);
    expect_refused_inbound(&mut b2, &a_full, "B/two after blocking the bare JID");
    let id = send_chat(&mut a1, &b.full("two"), "x");
    assert_blocked_error(&expect_error(&mut a1, "message", &id), "to B/two");
    // Unblocking the bare JID leaves the full-JID entry in force.
    unblock_ok(&mut a1, &[&b.jid]);
    assert_eq!(blocklist(&mut a1), [b.full("one")]);
    send_chat(&mut b2, &a_full, "two again");
    expect_message(&mut a1, &b2.full(), "two again");
    expect_refused_inbound(&mut b1, &a_full, "B/one still");
}

/// docs/DESIGN.md: a session with an active list is decided by that list only, so the
/// blocklist (the default list) does not filter it (XEP-0191 §5 item 5).
#[test]
fn block_12_session_with_an_active_list_is_not_filtered_by_the_blocklist() {
    let s = Server::shared();
    let a = user(s, "bactive", 0);
    let b = user(s, "bactiveB", 1);
    let mut a1 = a.available(s, "plain", "<presence><priority>0</priority></presence>");
    let mut a2 = a.available(s, "open", "<presence><priority>5</priority></presence>");
    let mut b1 = b.online(s, "b");
    let r = privacy_set(
        &mut a2,
        "<list name='open'><item action='allow' order='1'/></list>",
    );
    assert_result(&r, "put list");
    assert_result(&privacy_set(&mut a2, "<active name='open'/>"), "activate");
    block_ok(&mut a1, &[&b.jid]);
    // The blocklist is the same for both sessions.
    assert_eq!(blocklist(&mut a2), std::slice::from_ref(&b.jid));
    // The default list (with the blocklist) decides for a1, the active list for a2.
    expect_refused_inbound(&mut b1, &a1.full(), "to the default-list session");
    send_chat(&mut b1, &a2.full(), "to the open session");
    expect_message(&mut a2, &b1.full(), "to the open session");
    let id = send_chat(&mut a1, &b.jid, "x");
    assert_blocked_error(&expect_error(&mut a1, "message", &id), "from a1");
    send_chat(&mut a2, &b.jid, "from the open session");
    expect_message(&mut b1, &a2.full(), "from the open session");
    // To the bare JID: delivered to the highest-priority session (a2, open), not to a1.
    send_chat(&mut b1, &a.jid, "to the bare JID");
    expect_message(&mut a2, &b1.full(), "to the bare JID");
    let seen = settle(&mut a1);
    assert_nothing_from(&seen, &b.jid, "a1 (blocklist in force)");
    // Deactivating: a2 falls back to the default list, and so to the blocklist.
    assert_result(&privacy_set(&mut a2, "<active/>"), "decline active");
    expect_refused_inbound(&mut b1, &a2.full(), "after deactivating");
}

// ---------------------------------------------------------------------------------------------
// BLOCK-13

#[test]
fn block_13_own_resources_never_blocked_even_when_blocking_own_bare_jid_and_domain() {
    let s = Server::shared();
    let a = user(s, "bself", 0);
    let c = user(s, "bselfC", 1);
    let mut a1 = a.online(s, "one");
    let mut a2 = a.online(s, "two");
    let (a1_full, a2_full) = (a1.full(), a2.full());
    a1.recv_until("a2's presence", |e| is_presence(e, None, Some(&a2_full)));
    let mut c1 = c.online(s, "c");
    block_ok(&mut a1, &[&a.jid, &a2_full, DOMAIN]);
    assert_eq!(blocklist(&mut a1), sorted(&[&a.jid, &a2_full, DOMAIN]));
    // The block is real for others at the domain, both ways.
    expect_refused_inbound(&mut c1, &a.jid, "C at the blocked domain");
    let id = send_chat(&mut a1, &c.jid, "x");
    assert_blocked_error(&expect_error(&mut a1, "message", &id), "to C");
    // Own resources: messages both ways, an IQ and its answer, presence.
    send_chat(&mut a2, &a1_full, "two to one");
    expect_message(&mut a1, &a2_full, "two to one");
    send_chat(&mut a1, &a2_full, "one to two");
    expect_message(&mut a2, &a1_full, "one to two");
    let id = next_id("self");
    a2.send(&format!(
        "<iq type='get' id='{id}' to='{a1_full}'><query xmlns='jabber:iq:version'/></iq>"
    ));
    let (q, _) = a1.recv_until("own resource's iq", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    assert_eq!(q.attr("from"), Some(a2_full.as_str()));
    a1.send(&format!(
        "<iq type='result' id='{id}' to='{a2_full}'><query xmlns='jabber:iq:version'>\
         <name>t</name><version>1</version></query></iq>"
    ));
    let (r, _) = a2.recv_until("own resource's answer", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    a2.send("<presence><status>two moved</status></presence>");
    a1.recv_until("a2's new presence", |e| {
        is_presence(e, None, Some(&a2_full)) && status_of(e).as_deref() == Some("two moved")
    });
    // A third resource coming online sees the others and is seen by them.
    let mut a3 = a.login(s, "three");
    a3.send("<presence/>");
    let a3_full = a3.full();
    a3.recv_all(&[
        ("a1's presence", &|e: &Element| {
            is_presence(e, None, Some(&a1_full))
        }),
        ("a2's presence", &|e: &Element| {
            is_presence(e, None, Some(&a2_full))
        }),
    ]);
    a1.recv_until("a3's presence", |e| is_presence(e, None, Some(&a3_full)));
}

/// KNOWN BUG (being fixed in src/modules/privacy/mod.rs): with the server's own domain
/// blocked, the server's answers (from the domain JID `localhost`) must still reach the user:
/// the server is part of the user's own account service, not a blocked peer.
#[test]
fn block_13_server_replies_from_domain_jid_reach_user_who_blocked_own_domain() {
    let s = Server::shared();
    let a = user(s, "bsrv", 0);
    let mut a1 = a.online(s, "r");
    block_ok(&mut a1, &[DOMAIN, &a.jid]);
    for (what, payload) in [
        ("ping", "<ping xmlns='urn:xmpp:ping'/>".to_string()),
        ("disco#info", format!("<query xmlns='{DISCO_INFO}'/>")),
        ("version", "<query xmlns='jabber:iq:version'/>".to_string()),
    ] {
        let id = next_id("srv");
        a1.send(&format!(
            "<iq type='get' id='{id}' to='{DOMAIN}'>{payload}</iq>"
        ));
        let mut seen = Vec::new();
        let answer = loop {
            match a1.try_recv(TIMEOUT) {
                Some(Event::El(e, _)) if e.attr("id") == Some(id.as_str()) => break Some(e),
                Some(Event::El(e, _)) => seen.push(e),
                _ => break None,
            }
        };
        let answer = answer.unwrap_or_else(|| {
            panic!(
                "{what} to {DOMAIN}: the server's answer never arrived (dropped by the \
                 blocklist entry for the domain?); saw {seen:?}"
            )
        });
        assert_eq!(answer.attr("type"), Some("result"), "{what}: {answer:?}");
        assert_eq!(answer.attr("from"), Some(DOMAIN), "{what}: {answer:?}");
    }
    // Answers from the own bare JID (the server on the account's behalf) too.
    let (r, _) = iq(&mut a1, "get", Some(&a.jid), "<vCard xmlns='vcard-temp'/>");
    assert_ne!(
        stanza_error(&r).map(|e| e.0).as_deref(),
        Some("service-unavailable"),
        "{r:?}"
    );
    let (r, _) = iq(&mut a1, "get", None, "<query xmlns='jabber:iq:roster'/>");
    assert_result(&r, "roster get");
}
