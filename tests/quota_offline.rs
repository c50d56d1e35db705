//! Issue 8 (B): offline storage quotas. No user can fill the disk or evict another user: a
//! per-user byte quota besides the count limit, a smaller size limit for stored stanzas than
//! for routed ones, and a reserve of the LMDB map that only essential writes (accounts,
//! rosters) may use. Every refusal reaches the sender as a stanza error, never silence; the
//! operator is warned in the log and by `xmppd check` as the map fills.

mod common;

use common::*;
use std::time::Duration;
use xmppd::xml::Element;

/// Messages of this body size fit the default offline stanza limit (64 KiB).
const BODY: usize = 60_000;

fn message(to: &str, id: &str, body_len: usize) -> String {
    let body = "q".repeat(body_len);
    format!("<message to='{to}@localhost' type='chat' id='{id}'><body>{body}</body></message>")
}

/// The stanza errors among `els`, as (id, condition, type).
fn errors(els: &[Element]) -> Vec<(String, String, String)> {
    els.iter()
        .filter(|e| e.attr("type") == Some("error"))
        .map(|e| {
            let (cond, ty, _) = stanza_error(e).expect("a stanza error");
            (e.attr("id").unwrap_or_default().to_string(), cond, ty)
        })
        .collect()
}

#[test]
fn issue_8b_offline_byte_quota_bounces_and_spares_other_users() {
    // Defaults: 1000 messages and 4 MiB per user.
    let s = Server::start(&["--shards", "1"]);
    for (u, p) in [
        ("qsend", "qsendpw"),
        ("qfull", "qfullpw"),
        ("qother", "qotherpw"),
    ] {
        s.adduser(u, p);
    }
    let mut a = Client::online(&s, "qsend", "qsendpw", None);
    // 6 MB for one recipient: far below the count limit, above the byte quota.
    let mut seen = Vec::new();
    for i in 0..100 {
        a.send(&message("qfull", &format!("f{i}"), BODY));
        if i % 10 == 9 {
            seen.extend(a.sync());
        }
    }
    let refused = errors(&seen);
    assert!(!refused.is_empty(), "6 MB stored for one user, no refusal");
    for (id, cond, ty) in &refused {
        assert_eq!(
            (cond.as_str(), ty.as_str()),
            ("resource-constraint", "wait"),
            "{id}"
        );
    }
    // Refused from the first refusal on (the quota does not free itself), and only after
    // most of the quota was used.
    let first: usize = refused[0].0[1..].parse().unwrap();
    assert!(first >= 50, "refused from message {first}");
    assert_eq!(refused.len(), 100 - first, "{refused:?}");
    // Another user is unaffected.
    a.send(&message("qother", "o1", BODY));
    assert!(errors(&a.sync()).is_empty());
    let mut o = Client::login(&s, "qother", "qotherpw", None);
    o.send("<presence/>");
    let (m, _) = o.recv_until("the stored message", |e| e.name == "message");
    assert_eq!(m.attr("id"), Some("o1"));
}

#[test]
fn issue_8b_offline_stanza_size_is_below_the_routed_limit() {
    let s = Server::start(&["--shards", "1"]);
    for (u, p) in [("zsend", "zsendpw"), ("zoff", "zoffpw"), ("zon", "zonpw")] {
        s.adduser(u, p);
    }
    let mut a = Client::online(&s, "zsend", "zsendpw", None);
    // 100 KB: routed to an online user, too large to keep for an offline one.
    let mut on = Client::online(&s, "zon", "zonpw", None);
    a.send(&message("zon", "big-online", 100_000));
    let (m, _) = on.recv_until("the large message", |e| e.name == "message");
    assert_eq!(m.attr("id"), Some("big-online"));
    a.send(&message("zoff", "big-offline", 100_000));
    let refused = errors(&a.sync());
    assert_eq!(
        refused,
        vec![(
            "big-offline".to_string(),
            "policy-violation".to_string(),
            "modify".to_string()
        )]
    );
    // A message within the limit is still stored.
    a.send(&message("zoff", "small", 1000));
    assert!(errors(&a.sync()).is_empty());
}

#[test]
fn issue_8b_map_reserve_refuses_offline_keeps_accounts_and_warns() {
    // A 16 MiB map, several recipients: together they could store far more than it holds.
    let s = Server::start(&["--shards", "1", "--lmdb-map-size-mib", "16"]);
    s.adduser("msend", "msendpw");
    let users: Vec<String> = (0..6).map(|i| format!("mfill{i}")).collect();
    for u in &users {
        s.adduser(u, "mfillpw");
    }
    let mut a = Client::online(&s, "msend", "msendpw", None);
    let mut seen = Vec::new();
    for i in 0..300 {
        a.send(&message(&users[i % users.len()], &format!("m{i}"), BODY));
        if i % 10 == 9 {
            seen.extend(a.sync());
        }
    }
    let refused = errors(&seen);
    assert!(!refused.is_empty(), "18 MB stored in a 16 MiB map");
    for (id, cond, ty) in &refused {
        assert_eq!(
            (cond.as_str(), ty.as_str()),
            ("resource-constraint", "wait"),
            "{id}"
        );
    }
    // Essential writes still succeed: a new account, and its roster.
    s.adduser("late", "latepw1");
    let mut late = Client::login(&s, "late", "latepw1", None);
    late.send(
        "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='msend@localhost'/></query></iq>",
    );
    let (r, _) = late.recv_until("roster set result", |e| e.attr("id") == Some("r1"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // The operator is told: in the log as the map fills, and by `xmppd check`.
    assert!(s.log().contains("LMDB map"), "{}", s.log());
    let out = s.admin(&["check", "--lmdb-map-size-mib", "16"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map_line = text
        .lines()
        .find(|l| l.starts_with("map:"))
        .unwrap_or_else(|| panic!("no map line: {text}"));
    assert!(map_line.contains("of 16.0 MiB"), "{map_line}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("warning: the LMDB map is")),
        "{text}"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn issue_8b_check_reports_map_usage() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("cu", "cupw1");
    let out = s.admin(&["check"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let map_line = text
        .lines()
        .find(|l| l.starts_with("map:"))
        .unwrap_or_else(|| panic!("no map line: {text}"));
    assert!(map_line.contains("of 1024.0 MiB"), "{map_line}");
    assert!(!text.contains("warning:"), "{text}");
}
