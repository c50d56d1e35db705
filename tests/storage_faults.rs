//! Issue 8: a storage failure is answered as one, never as a protocol statement. Before, a
//! failed LMDB read (say, reader slots exhausted) made an account "not exist" and a roster
//! "empty": a probe or a subscribe was answered `unsubscribed`, cancelling a real
//! subscription, a roster get returned an empty roster, and a failed subscription write made
//! the stanza vanish. Failures are injected with the debug-build hook
//! `XMPPD_TEST_FAIL_STORAGE` (storage crate, `fault.rs`).

mod common;

use std::time::Duration;

use common::*;
use xmppd::xml::Element;

const FAIL: &str = "XMPPD_TEST_FAIL_STORAGE";
const ALICE: &str = "alice@localhost";
const BOB: &str = "bob@localhost";
const ALICE_PW: &str = "alice-secret";
const BOB_PW: &str = "bob-secret";

fn start(dir: &std::path::Path, fail: Option<&str>) -> Server {
    let env: Vec<(&str, &str)> = fail.map(|f| (FAIL, f)).into_iter().collect();
    Server::start_on_env(dir, &["--shards", "1"], &env)
}

/// Stop a server cleanly (queued writes are committed before it exits).
fn stop(s: Server) {
    let status = s.signal_and_wait(libc::SIGTERM).expect("server stops");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        s.log()
    );
}

fn is_presence_from(ty: &'static str, from: &'static str) -> impl Fn(&Element) -> bool {
    move |e| is_presence(e, Some(ty), Some(from))
}

fn push_with(contact: &'static str, sub: &'static str) -> impl Fn(&Element) -> bool {
    move |e| {
        roster_push_item(e)
            .is_some_and(|i| i.attr("jid") == Some(contact) && i.attr("subscription") == Some(sub))
    }
}

/// The roster item for `contact`'s subscription value, from a roster get.
fn subscription_of(c: &mut Client, contact: &str) -> Option<String> {
    let (items, _) = c.roster_items();
    items
        .iter()
        .find(|i| i.attr("jid") == Some(contact))
        .map(|i| i.attr("subscription").unwrap_or_default().to_string())
}

/// The condition of a stanza error, asserting that `e` is an error.
fn condition(e: &Element) -> String {
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    stanza_error(e).expect("a stanza error").0
}

/// A fresh data directory where alice and bob are subscribed to each other both ways.
fn mutual_subscription() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), None);
    s.adduser("alice", ALICE_PW);
    s.adduser("bob", BOB_PW);
    let mut a = Client::online(&s, "alice", ALICE_PW, Some("a"));
    let mut b = Client::online(&s, "bob", BOB_PW, Some("b"));
    a.roster_items();
    b.roster_items();
    a.send(&format!("<presence type='subscribe' to='{BOB}'/>"));
    b.recv_until("subscribe from alice", is_presence_from("subscribe", ALICE));
    b.send(&format!("<presence type='subscribed' to='{ALICE}'/>"));
    a.recv_until("push: bob is 'to'", push_with(BOB, "to"));
    b.send(&format!("<presence type='subscribe' to='{ALICE}'/>"));
    a.recv_until("subscribe from bob", is_presence_from("subscribe", BOB));
    a.send(&format!("<presence type='subscribed' to='{BOB}'/>"));
    a.recv_until("push: bob is 'both'", push_with(BOB, "both"));
    b.recv_until("push: alice is 'both'", push_with(ALICE, "both"));
    stop(s);
    dir
}

/// Bob's storage fails to read: alice's initial presence (which probes bob), her own probe
/// and a subscribe resync toward bob must not be answered `unsubscribed` (which would cancel
/// her real subscription); once storage works again both sides still have `both`.
#[test]
fn storage_failure_is_not_answered_unsubscribed() {
    let dir = mutual_subscription();
    {
        let s = start(dir.path(), Some(&format!("read:{BOB}")));
        let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
        a.roster_items();
        // Initial presence probes bob (IM-PRES-01); then a client probe and a resync.
        a.send("<presence/>");
        a.send(&format!("<presence type='probe' to='{BOB}'/>"));
        a.send(&format!("<presence type='subscribe' to='{BOB}'/>"));
        let mut seen = a.sync();
        // Answers come from other tasks than the ping's: give them a generous while.
        seen.extend(a.collect_for(Duration::from_secs(2)));
        for e in &seen {
            assert!(
                !is_presence(e, Some("unsubscribed"), None),
                "a storage failure was answered as a cancellation: {e:?}"
            );
            if let Some(item) = roster_push_item(e) {
                assert_eq!(item.attr("subscription"), Some("both"), "push {e:?}");
            }
        }
        assert_eq!(subscription_of(&mut a, BOB).as_deref(), Some("both"));
        a.close();
        stop(s);
    }
    let s = start(dir.path(), None);
    let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
    let mut b = Client::login(&s, "bob", BOB_PW, Some("b"));
    assert_eq!(subscription_of(&mut a, BOB).as_deref(), Some("both"));
    assert_eq!(subscription_of(&mut b, ALICE).as_deref(), Some("both"));
}

/// A roster that cannot be read is `internal-server-error`, not an empty roster; the failure
/// is not cached: once storage works again (the hook fails only the first read), a roster
/// get shows the items.
#[test]
fn roster_read_failure_is_an_error_not_an_empty_roster() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start(dir.path(), None);
        s.adduser("alice", ALICE_PW);
        let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
        a.send(&format!(
            "<iq type='set' id='add'><query xmlns='{NS_ROSTER}'><item jid='{BOB}'/></query></iq>"
        ));
        let (r, _) = a.recv_until("roster set result", |e| e.attr("id") == Some("add"));
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        a.close();
        stop(s);
    }
    // Two failed reads: the privacy lists read at bind (then read again later), and the
    // roster.
    let s = start(dir.path(), Some(&format!("read:2:{ALICE}")));
    let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
    a.send(&format!(
        "<iq type='get' id='r1'><query xmlns='{NS_ROSTER}'/></iq>"
    ));
    let (r, _) = a.recv_until("roster get answer", |e| e.attr("id") == Some("r1"));
    assert!(
        r.child("query", NS_ROSTER).is_none(),
        "a failed read was answered as a roster: {r:?}"
    );
    assert_eq!(condition(&r), "internal-server-error");
    // The fault is gone: the roster is read again, not taken from a cache.
    assert_eq!(subscription_of(&mut a, BOB).as_deref(), Some("none"));
}

/// A message for an offline account whose storage fails is bounced `internal-server-error`:
/// not `service-unavailable` (which says there is no such account), not dropped.
#[test]
fn message_to_account_with_failing_storage_bounces_internal_server_error() {
    let s = Server::start_env(
        &["--shards", "1"],
        &[(FAIL, "bob@localhost,write:carol@localhost")],
    );
    s.adduser("alice", ALICE_PW);
    s.adduser("bob", BOB_PW);
    s.adduser("carol", "carol-secret");
    let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
    // Bob's account cannot be looked up; carol's offline store cannot be written.
    for (to, id) in [(BOB, "m1"), ("carol@localhost", "m2")] {
        a.send(&format!(
            "<message to='{to}' type='chat' id='{id}'><body>hello</body></message>"
        ));
        let (e, _) = a.recv_until("the bounce", |e| e.attr("id") == Some(id));
        assert_eq!(e.name, "message", "{e:?}");
        assert_eq!(condition(&e), "internal-server-error", "to {to}");
    }
}

/// A subscription change that cannot be written is answered with an error to the client that
/// sent it (before, it was only logged and the stanza vanished), and nothing is routed.
#[test]
fn subscription_write_failure_answers_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Bob asks alice; the request is stored for her (IM-SUB-06).
        let s = start(dir.path(), None);
        s.adduser("alice", ALICE_PW);
        s.adduser("bob", BOB_PW);
        let mut a = Client::online(&s, "alice", ALICE_PW, Some("a"));
        let mut b = Client::online(&s, "bob", BOB_PW, Some("b"));
        b.send(&format!("<presence type='subscribe' to='{ALICE}'/>"));
        a.recv_until("subscribe from bob", is_presence_from("subscribe", BOB));
        a.close();
        b.close();
        stop(s);
    }
    let s = start(dir.path(), Some(&format!("write:{ALICE}")));
    let mut b = Client::online(&s, "bob", BOB_PW, Some("b"));
    let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
    a.roster_items();
    a.send("<presence/>");
    a.recv_until(
        "the pending request again",
        is_presence_from("subscribe", BOB),
    );
    // Approving it, and asking someone, both need writes to alice's roster.
    a.send(&format!("<presence type='subscribed' to='{BOB}' id='ok'/>"));
    let (e, _) = a.recv_until("error for subscribed", |e| e.attr("id") == Some("ok"));
    assert_eq!(e.name, "presence", "{e:?}");
    assert_eq!(condition(&e), "internal-server-error");
    a.send("<presence type='subscribe' to='carol@localhost' id='ask'/>");
    let (e, _) = a.recv_until("error for subscribe", |e| e.attr("id") == Some("ask"));
    assert_eq!(condition(&e), "internal-server-error");
    // A roster set fails the same way.
    a.send(&format!(
        "<iq type='set' id='set'><query xmlns='{NS_ROSTER}'><item jid='dave@localhost'/></query></iq>"
    ));
    let (e, _) = a.recv_until("roster set answer", |e| e.attr("id") == Some("set"));
    assert_eq!(condition(&e), "internal-server-error");
    // Nothing reached bob: the approval was not recorded, so it was not routed.
    for e in b.sync() {
        assert!(
            !is_presence(&e, Some("subscribed"), None),
            "an unrecorded approval was routed: {e:?}"
        );
    }
}

/// XEP-0016/0191: a blocklist that cannot be read is never taken for an empty one. Reading
/// it fails at bind and at the first message: that message is refused with
/// `internal-server-error` (fail closed, not delivered); the next reads the list again and is
/// refused as blocked (`service-unavailable`); and the session itself went on meanwhile.
#[test]
fn blocklist_read_failure_fails_closed_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start(dir.path(), None);
        s.adduser("alice", ALICE_PW);
        s.adduser("bob", BOB_PW);
        let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
        a.send(&format!(
            "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='{BOB}'/></block></iq>"
        ));
        let (r, _) = a.recv_until("block result", |e| e.attr("id") == Some("b"));
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        a.close();
        stop(s);
    }
    // Two failed reads of alice's data: the lists at bind, then at bob's first message (alice
    // stays unavailable, so nothing else of hers is read in between).
    let s = start(dir.path(), Some(&format!("read:2:{ALICE}")));
    let mut a = Client::login(&s, "alice", ALICE_PW, Some("a"));
    let mut b = Client::online(&s, "bob", BOB_PW, Some("b"));
    let send = |b: &mut Client, id: &str| {
        b.send(&format!(
            "<message to='{ALICE}' type='chat' id='{id}'><body>hi</body></message>"
        ));
        let (e, _) = b.recv_until("the answer", |e| e.attr("id") == Some(id));
        condition(&e)
    };
    assert_eq!(send(&mut b, "m1"), "internal-server-error");
    assert_eq!(send(&mut b, "m2"), "service-unavailable");
    let got = a.sync();
    assert!(
        !got.iter().any(|e| e.name == "message"),
        "a blocked message was delivered: {got:?}"
    );
}
