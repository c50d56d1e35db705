//! Issue 8, account lifecycle: `xmppd passwd`, `deluser` and `disable`, run as separate
//! processes while the server runs, end the account's live sessions on whichever shard they
//! are (stream error `not-authorized` with a text that says why), and a live session of a
//! deleted account cannot recreate records that a later account with the same JID inherits.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SHARDS: usize = 2;

fn start() -> Server {
    Server::start(&["--shards", "2"])
}

fn jid(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

fn admin_ok(s: &Server, args: &[&str], stdin: &str) {
    let out = s.admin(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The session ends with a `not-authorized` stream error whose text contains `why` (after any
/// stanzas still in flight), then the closing tag and the end of the connection; within the
/// harness's timeout, although the server acts within about a second.
fn expect_revoked(c: &mut Client, why: &str) {
    const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    let (e, _) = c.recv_until("stream error", |e| {
        e.name == "error" && e.ns == "http://etherx.jabber.org/streams"
    });
    let condition = e.elements().find(|c| c.ns == STREAMS && c.name != "text");
    assert_eq!(
        condition.map(|c| c.name.as_str()),
        Some("not-authorized"),
        "{e:?}"
    );
    let text = e
        .child("text", STREAMS)
        .map(|t| t.text())
        .unwrap_or_default();
    assert!(
        text.contains(why),
        "stream error text {text:?} lacks {why:?}"
    );
    match c.recv() {
        Event::Close => {}
        other => panic!("expected </stream:stream> after the error, got {other:?}"),
    }
    c.expect_eof();
}

/// A fresh secured stream's SASL PLAIN answer.
fn plain_answer(s: &Server, local: &str, password: &str) -> xmppd::xml::Element {
    let mut c = Client::plain(s);
    c.negotiate();
    c.starttls();
    c.auth_plain(local, password)
}

fn sasl_condition(answer: &xmppd::xml::Element) -> Option<String> {
    (answer.name == "failure").then(|| answer.elements().next().map(|e| e.name.clone()))?
}

#[test]
fn passwd_while_logged_in_ends_the_sessions_on_every_shard_issue_8() {
    let s = start();
    let mut sessions = Vec::new();
    let mut users = Vec::new();
    for shard in 0..SHARDS {
        let (local, pw) = s.new_user_on_shard("pwchange", shard, SHARDS);
        // Two resources of each account: both end.
        for res in ["a", "b"] {
            sessions.push(Client::online(&s, &local, &pw, Some(res)));
        }
        users.push((local, pw));
    }
    for (local, _) in &users {
        admin_ok(
            &s,
            &["passwd", &jid(local), "--password-stdin"],
            &format!("new-{local}\n"),
        );
    }
    for c in &mut sessions {
        expect_revoked(c, "password was changed");
    }
    for (local, old) in &users {
        assert_eq!(
            sasl_condition(&plain_answer(&s, local, old)).as_deref(),
            Some("not-authorized")
        );
        // A session that logs in with the new password is not ended by the old change.
        let mut fresh = Client::login(&s, local, &format!("new-{local}"), None);
        fresh.expect_silence(Duration::from_millis(2500));
        fresh.sync();
    }
}

#[test]
fn a_login_revoked_between_sasl_and_bind_is_refused_issue_8() {
    let s = start();
    for shard in 0..SHARDS {
        let (local, pw) = s.new_user_on_shard("prebind", shard, SHARDS);
        let mut c = Client::plain(&s);
        c.negotiate();
        c.starttls();
        assert_eq!(c.auth_scram("SCRAM-SHA-256", &local, &pw).name, "success");
        // Authenticated with the old password, not bound yet: the sweeper cannot see it.
        admin_ok(
            &s,
            &["passwd", &jid(&local), "--password-stdin"],
            "changed-meanwhile\n",
        );
        c.negotiate();
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
        expect_revoked(&mut c, "password was changed");
    }
}

#[test]
fn deluser_while_logged_in_ends_the_session_and_racing_writes_recreate_nothing_issue_8() {
    let s = start();
    for shard in 0..SHARDS {
        let (local, pw) = s.new_user_on_shard("deleted", shard, SHARDS);
        let mut c = Client::online(&s, &local, &pw, None);
        c.send("<iq type='set' id='v0'><vCard xmlns='vcard-temp'><FN>Before</FN></vCard></iq>");
        c.send(&format!(
            "<iq type='set' id='r0'><query xmlns='{NS_ROSTER}'><item jid='before@example.net'/></query></iq>"
        ));
        c.sync();

        let mut deluser = std::process::Command::new(bin())
            .args(["deluser", &jid(&local), "--data-dir"])
            .arg(&s.data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn deluser");
        // Roster and vCard writes racing the deletion, until the server ends the session.
        let deadline = Instant::now() + TIMEOUT;
        let mut n = 0;
        let mut ended = false;
        while Instant::now() < deadline {
            n += 1;
            c.send_bytes(
                format!(
                    "<iq type='set' id='v{n}'><vCard xmlns='vcard-temp'><FN>Racer {n}</FN></vCard></iq>\
                     <iq type='set' id='r{n}'><query xmlns='{NS_ROSTER}'><item jid='racer{n}@example.net'/></query></iq>\
                     <presence to='contact{n}@example.net' type='subscribe'/>"
                )
                .as_bytes(),
            );
            match c.try_recv(Duration::from_millis(20)) {
                Some(Event::El(e, _)) if e.name == "error" => {
                    ended = true;
                    break;
                }
                Some(Event::Close | Event::Eof) => {
                    ended = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(deluser.wait().unwrap().success());
        assert!(ended, "the deleted account's session was not ended");
        drop(c);

        // A new account with the same JID starts empty.
        s.adduser(&local, "a-new-owner");
        let mut again = Client::login(&s, &local, "a-new-owner", None);
        let (items, _) = again.roster_items();
        assert!(items.is_empty(), "inherited roster items: {items:?}");
        again.send("<iq type='get' id='vget'><vCard xmlns='vcard-temp'/></iq>");
        let (v, _) = again.recv_until("vCard result", |e| e.attr("id") == Some("vget"));
        let card = v.child("vCard", "vcard-temp").expect("vCard");
        assert_eq!(card.elements().count(), 0, "inherited vCard: {v:?}");
        // No pending subscription requests were recreated either (they come at availability).
        again.send("<presence/>");
        let got = again.collect_for(Duration::from_millis(500));
        assert!(
            got.iter().all(|e| e.attr("type") != Some("subscribe")),
            "{got:?}"
        );
    }
}

#[test]
fn disable_ends_the_session_and_refuses_logins_until_enabled_issue_8() {
    let s = start();
    for shard in 0..SHARDS {
        let (local, pw) = s.new_user_on_shard("disabled", shard, SHARDS);
        let mut c = Client::online(&s, &local, &pw, None);
        admin_ok(&s, &["disable", &jid(&local)], "");
        expect_revoked(&mut c, "disabled");
        // Only the right password learns that the account is disabled (RFC 6120 §6.5.2).
        assert_eq!(
            sasl_condition(&plain_answer(&s, &local, &pw)).as_deref(),
            Some("account-disabled")
        );
        assert_eq!(
            sasl_condition(&plain_answer(&s, &local, "wrong")).as_deref(),
            Some("not-authorized")
        );
        admin_ok(&s, &["enable", &jid(&local)], "");
        let mut back = Client::login(&s, &local, &pw, None);
        back.sync();
    }
    let out = s.admin(&["disable", "nobody@localhost"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
