//! XEP-0160 offline messages with XEP-0203 delay stamps (IM-MSG-07, -11, -12, -13).

mod common;

use common::*;
use std::time::Duration;
use xmppd::xml::Element;

fn sync(c: &mut Client) {
    c.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    loop {
        if c.recv_el().attr("id") == Some("sync") {
            return;
        }
    }
}

#[test]
fn im_msg_07_12_stored_and_delivered_in_order_with_delay() {
    let s = Server::shared();
    let (u1, p1) = s.new_user_on_shard("osend", 0, 2);
    let (u2, p2) = s.new_user_on_shard("orecv", 1, 2);
    let mut a = Client::online(s, &u1, &p1, Some("a"));
    for i in 0..3 {
        a.send(&format!(
            "<message to='{u2}@localhost' type='chat' id='off{i}'><body>message {i}</body><x xmlns='urn:example:keep'/></message>"
        ));
    }
    a.send(&format!(
        "<message to='{u2}@localhost' type='headline'><body>not kept</body></message>"
    ));
    a.send(&format!("<message to='{u2}@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    sync(&mut a);
    // Nothing bounced back to the sender.
    a.expect_silence(Duration::from_millis(200));
    // A negative-priority resource does not get them (edge case 32).
    let mut neg = Client::login(s, &u2, &p2, Some("neg"));
    neg.send("<presence><priority>-5</priority></presence>");
    assert_eq!(neg.recv_el().name, "presence");
    neg.expect_silence(Duration::from_millis(300));
    let mut b = Client::login(s, &u2, &p2, Some("b"));
    b.send("<presence/>");
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = b.recv_el();
        if e.name == "message" {
            got.push(e);
        }
    }
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.attr("id"), Some(format!("off{i}").as_str()));
        assert_eq!(m.attr("from"), Some(format!("{u1}@localhost/a").as_str()));
        assert!(m.child("x", "urn:example:keep").is_some(), "payload kept");
        let delay = m.child("delay", "urn:xmpp:delay").expect("delay stamp");
        assert_eq!(delay.attr("from"), Some("localhost"));
        let stamp = delay.attr("stamp").unwrap();
        assert!(stamp.len() == 24 && stamp.ends_with('Z'), "{stamp}");
    }
    // IM-MSG-11: the headline and the chat state were not stored. The server asks for an
    // acknowledgement of the delivery (issue 8): nothing else arrives.
    answer_until_quiet(&mut b, Duration::from_millis(300));
    // Acknowledged means deleted.
    wait_for_log(s, "offline delivery finished", 1);
    b.close();
    neg.close();
    let mut again = Client::online(s, &u2, &p2, Some("c"));
    again.expect_silence(Duration::from_millis(300));
}

#[test]
fn im_msg_13_quota_full_bounces_resource_constraint() {
    let s = Server::start(&["--max-offline-messages", "2", "--shards", "1"]);
    s.adduser("qs", "qspw1");
    s.adduser("qr", "qrpw1");
    let mut a = Client::online(&s, "qs", "qspw1", None);
    for i in 0..3 {
        a.send(&format!(
            "<message to='qr@localhost' type='normal' id='q{i}'><body>{i}</body></message>"
        ));
    }
    let e = a.recv_el();
    assert_eq!(e.attr("id"), Some("q2"));
    let (cond, ty, _) = stanza_error(&e).unwrap();
    assert_eq!(
        (cond.as_str(), ty.as_str()),
        ("resource-constraint", "wait")
    );
}

#[test]
fn core_stanza_19_missing_account_is_never_stored() {
    let s = Server::shared();
    let (u, p) = s.new_user("ghostwriter");
    let mut a = Client::online(s, &u, &p, None);
    a.send("<message to='never-existed@localhost' type='chat' id='g'><body>x</body></message>");
    assert_eq!(stanza_error(&a.recv_el()).unwrap().0, "service-unavailable");
}

#[test]
fn disco_advertises_msgoffline() {
    let s = Server::shared();
    let (u, p) = s.new_user("mo");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let r = c.recv_el();
    let q = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(q.elements().any(|f| f.attr("var") == Some("msgoffline")));
}

// ---------------------------------------------------------------------------------------------
// Issue 8 (A): a large backlog is delivered in flow-controlled chunks and deleted only once the
// client has acknowledged it, so nothing is lost however slowly the client reads or whenever
// it disconnects.

/// The flags of the backlog tests: room for 20 stored messages of 250 KB per user.
const BACKLOG_FLAGS: &[&str] = &[
    "--shards",
    "1",
    "--max-offline-bytes",
    "8388608",
    "--max-offline-stanza-size",
    "262144",
];
const BACKLOG: usize = 20;
const BACKLOG_BODY: usize = 250_000;

/// Store `BACKLOG` messages of `BACKLOG_BODY` bytes for `to` (offline), ids `bl0`...
fn store_backlog(s: &Server, from: &str, from_pw: &str, to: &str) {
    let mut a = Client::online(s, from, from_pw, Some("a"));
    let body = "b".repeat(BACKLOG_BODY);
    for i in 0..BACKLOG {
        a.send(&format!(
            "<message to='{to}@localhost' type='chat' id='bl{i}'><body>{body}</body></message>"
        ));
    }
    let before = a.sync();
    assert!(
        before.iter().all(|e| e.attr("type") != Some("error")),
        "a message was refused: {before:?}"
    );
}

/// The next element that is not an IQ request, answering IQ requests on the way as every
/// client must (RFC 6120 §8.2.3): the server asks for acknowledgements of offline delivery.
fn next_answering(c: &mut Client) -> Element {
    loop {
        let e = c.recv_el();
        if e.name == "iq" && matches!(e.attr("type"), Some("get" | "set")) {
            answer(c, &e);
            continue;
        }
        return e;
    }
}

fn answer(c: &mut Client, iq: &Element) {
    let id = iq.attr("id").unwrap_or_default();
    let to = iq.attr("from").unwrap_or(DOMAIN);
    c.send(&format!("<iq type='result' id='{id}' to='{to}'/>"));
}

/// Answer IQ requests until nothing arrives for `quiet`; any other stanza is an error.
fn answer_until_quiet(c: &mut Client, quiet: Duration) {
    while let Some(ev) = c.try_recv(quiet) {
        match ev {
            Event::El(e, _) if e.name == "iq" && matches!(e.attr("type"), Some("get" | "set")) => {
                answer(c, &e)
            }
            other => panic!("unexpected after the backlog: {other:?}"),
        }
    }
}

/// Read offline messages slowly (a small receive buffer and a pause per message), answering
/// acknowledgement requests; stops after `n` messages. Returns their ids in arrival order.
fn read_slowly(c: &mut Client, n: usize) -> Vec<usize> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let e = next_answering(c);
        assert_eq!(e.name, "message", "{e:?}");
        let id = e.attr("id").and_then(|i| i.strip_prefix("bl")).unwrap();
        assert_eq!(
            e.child("body", "jabber:client").unwrap().text().len(),
            BACKLOG_BODY
        );
        assert!(e.child("delay", "urn:xmpp:delay").is_some());
        ids.push(id.parse().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    ids
}

/// Wait (bounded) until the server logged `what` `n` times.
fn wait_for_log(s: &Server, what: &str, n: usize) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while s.log().matches(what).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "never logged {what:?} {n} times:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn issue_8a_large_backlog_reaches_a_slow_reader_whole() {
    let s = Server::start(BACKLOG_FLAGS);
    s.adduser("bls", "blspw1");
    s.adduser("blr", "blrpw1");
    store_backlog(&s, "bls", "blspw1", "blr");
    let mut r = Client::login_on(Client::plain_small_rcvbuf(&s), "blr", "blrpw1", Some("r"));
    r.send("<presence/>");
    assert_eq!(next_answering(&mut r).name, "presence");
    // Before the fix: 17 messages, then `policy-violation`, and the rest deleted unsent.
    let ids = read_slowly(&mut r, BACKLOG);
    assert_eq!(ids, (0..BACKLOG).collect::<Vec<_>>());
    answer_until_quiet(&mut r, Duration::from_millis(300));
    wait_for_log(&s, "offline delivery finished", 1);
    r.close();
    // Acknowledged means deleted: nothing comes again.
    let mut again = Client::online(&s, "blr", "blrpw1", Some("again"));
    again.expect_silence(Duration::from_millis(500));
}

#[test]
fn issue_8a_backlog_rest_arrives_after_a_disconnect_mid_delivery() {
    let s = Server::start(BACKLOG_FLAGS);
    s.adduser("bds", "bdspw1");
    s.adduser("bdr", "bdrpw1");
    store_backlog(&s, "bds", "bdspw1", "bdr");
    let mut r = Client::login_on(Client::plain_small_rcvbuf(&s), "bdr", "bdrpw1", Some("r"));
    r.send("<presence/>");
    assert_eq!(next_answering(&mut r).name, "presence");
    let first = read_slowly(&mut r, 6);
    assert_eq!(first, (0..6).collect::<Vec<_>>());
    // The connection is lost mid-delivery, with more in flight.
    r.drop_tcp();
    let mut again = Client::login(&s, "bdr", "bdrpw1", Some("again"));
    again.send("<presence/>");
    let mut second = Vec::new();
    while second.last() != Some(&(BACKLOG - 1)) {
        let e = next_answering(&mut again);
        if e.name == "message" {
            let id = e.attr("id").and_then(|i| i.strip_prefix("bl")).unwrap();
            second.push(id.parse::<usize>().unwrap());
        }
    }
    // No loss: the second session starts at or before the first message the first session
    // did not get, and continues in order. Duplicates are only messages the first session
    // received but had not yet acknowledged when it was lost.
    let k = second[0];
    assert!(k <= first.len(), "lost {k:?}..{}: {second:?}", first.len());
    assert_eq!(second, (k..BACKLOG).collect::<Vec<_>>());
    answer_until_quiet(&mut again, Duration::from_millis(300));
}
