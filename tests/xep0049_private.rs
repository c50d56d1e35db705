//! XEP-0049 private XML storage on the wire (`jabber:iq:private`), by section: store and
//! retrieve (§2), errors (§3), the server's bounds, durability across `kill -9`, and a storage
//! failure answered as an error, never as a result.

mod common;

use common::*;
use xmppd::xml::Element;

const NS: &str = "jabber:iq:private";

fn get(c: &mut Client, id: &str, inner: &str) -> Element {
    c.send(&format!(
        "<iq type='get' id='{id}'><query xmlns='{NS}'>{inner}</query></iq>"
    ));
    c.recv_el()
}

fn set(c: &mut Client, id: &str, inner: &str) -> Element {
    c.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='{NS}'>{inner}</query></iq>"
    ));
    c.recv_el()
}

#[test]
fn xep0049_2_store_then_retrieve_exactly_what_was_stored() {
    let s = Server::shared();
    let (u, p) = s.new_user("priv");
    let mut c = Client::login(s, &u, &p, None);
    // Nothing stored: the requested element comes back empty.
    let r = get(&mut c, "g0", "<exodus xmlns='exodus:prefs'/>");
    assert_eq!((r.attr("id"), r.attr("type")), (Some("g0"), Some("result")));
    let q = r.child("query", NS).expect("query");
    let e = q.child("exodus", "exodus:prefs").expect("empty exodus");
    assert!(e.elements().next().is_none() && e.text().is_empty());
    // Two namespaces in one set, one of them with two elements (§2 allows several).
    let r = set(
        &mut c,
        "s1",
        "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>\
         <storage xmlns='storage:bookmarks'><conference jid='a@conference.localhost' name='A &amp; B'/></storage>\
         <exodus2 xmlns='exodus:prefs'>second</exodus2>",
    );
    assert_eq!((r.attr("id"), r.attr("type")), (Some("s1"), Some("result")));
    let r = get(&mut c, "g1", "<exodus xmlns='exodus:prefs'/>");
    let q = r.child("query", NS).unwrap();
    let names: Vec<&str> = q.elements().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["exodus", "exodus2"],
        "both elements of the namespace, in order"
    );
    assert_eq!(
        q.child("exodus", "exodus:prefs")
            .unwrap()
            .child("defaultnick", "exodus:prefs")
            .unwrap()
            .text(),
        "Hamlet"
    );
    let r = get(&mut c, "g2", "<storage xmlns='storage:bookmarks'/>");
    let conf = r
        .child("query", NS)
        .unwrap()
        .child("storage", "storage:bookmarks")
        .unwrap()
        .child("conference", "storage:bookmarks")
        .expect("the bookmark");
    assert_eq!(conf.attr("name"), Some("A & B"));
    // A later set of one namespace replaces that namespace only, whole.
    set(&mut c, "s2", "<exodus xmlns='exodus:prefs'><x/></exodus>");
    let r = get(&mut c, "g3", "<exodus xmlns='exodus:prefs'/>");
    assert_eq!(r.child("query", NS).unwrap().elements().count(), 1);
    let r = get(&mut c, "g4", "<storage xmlns='storage:bookmarks'/>");
    assert!(r
        .child("query", NS)
        .unwrap()
        .child("storage", "storage:bookmarks")
        .unwrap()
        .child("conference", "storage:bookmarks")
        .is_some());
    // Addressed to one's own bare JID, the same.
    c.send(&format!(
        "<iq type='get' id='g5' to='{u}@localhost'><query xmlns='{NS}'><exodus xmlns='exodus:prefs'/></query></iq>"
    ));
    let r = c.recv_el();
    assert_eq!(r.attr("type"), Some("result"));
    // Another resource of the same account sees it too.
    let mut c2 = Client::login(s, &u, &p, Some("other"));
    let r = get(&mut c2, "g6", "<exodus xmlns='exodus:prefs'/>");
    assert!(r
        .child("query", NS)
        .unwrap()
        .child("exodus", "exodus:prefs")
        .is_some());
}

#[test]
fn xep0049_3_someone_elses_private_data_is_forbidden() {
    let s = Server::shared();
    let (u, p) = s.new_user("privowner");
    let (v, vp) = s.new_user("privsnoop");
    let mut owner = Client::login(s, &u, &p, None);
    set(&mut owner, "s", "<secret xmlns='x:secret'>42</secret>");
    let mut snoop = Client::login(s, &v, &vp, None);
    for ty in ["get", "set"] {
        snoop.send(&format!(
            "<iq type='{ty}' id='x' to='{u}@localhost'><query xmlns='{NS}'><secret xmlns='x:secret'>0</secret></query></iq>"
        ));
        let r = snoop.recv_el();
        assert_eq!(stanza_error(&r).unwrap().0, "forbidden", "{ty}");
    }
    // Unchanged.
    let r = get(&mut owner, "g", "<secret xmlns='x:secret'/>");
    assert_eq!(
        r.child("query", NS)
            .unwrap()
            .child("secret", "x:secret")
            .unwrap()
            .text(),
        "42"
    );
}

#[test]
fn xep0049_3_bad_requests_are_refused_and_change_nothing() {
    let s = Server::shared();
    let (u, p) = s.new_user("privbad");
    let mut c = Client::login(s, &u, &p, None);
    // A get without a child: bad-request ("Bad Format").
    assert_eq!(
        stanza_error(&get(&mut c, "a", "")).unwrap().0,
        "bad-request"
    );
    // A get for two namespaces at once.
    let r = get(&mut c, "b", "<a xmlns='x:a'/><b xmlns='x:b'/>");
    assert_eq!(stanza_error(&r).unwrap().0, "bad-request");
    // A set without a child: not-acceptable (§2).
    assert_eq!(
        stanza_error(&set(&mut c, "c", "")).unwrap().0,
        "not-acceptable"
    );
    // Reserved namespaces (§3): refused in a get and in a set, and a set holding one stores
    // none of its other namespaces.
    for ns in [
        "jabber:iq:roster",
        "http://jabber.org/protocol/disco#info",
        "vcard-temp",
    ] {
        let r = get(&mut c, "d", &format!("<x xmlns='{ns}'/>"));
        assert_eq!(stanza_error(&r).unwrap().0, "not-acceptable", "{ns}");
        let r = set(&mut c, "e", &format!("<ok xmlns='x:ok'/><x xmlns='{ns}'/>"));
        assert_eq!(stanza_error(&r).unwrap().0, "not-acceptable", "{ns}");
    }
    let r = get(&mut c, "f", "<ok xmlns='x:ok'/>");
    let ok = r.child("query", NS).unwrap().child("ok", "x:ok").unwrap();
    assert!(
        ok.text().is_empty() && ok.elements().next().is_none(),
        "nothing was stored"
    );
}

#[test]
fn xep0049_bounds_fragment_size_and_namespace_count() {
    let s = Server::start(&[
        "--private-max-bytes",
        "200",
        "--private-max-namespaces",
        "2",
    ]);
    s.adduser("bound", "boundpw");
    let mut c = Client::login(&s, "bound", "boundpw", None);
    let big = "y".repeat(300);
    let r = set(&mut c, "big", &format!("<big xmlns='x:big'>{big}</big>"));
    assert_eq!(stanza_error(&r).unwrap().0, "not-acceptable");
    assert_eq!(
        set(&mut c, "1", "<a xmlns='x:1'/>").attr("type"),
        Some("result")
    );
    assert_eq!(
        set(&mut c, "2", "<a xmlns='x:2'/>").attr("type"),
        Some("result")
    );
    let r = set(&mut c, "3", "<a xmlns='x:3'/>");
    assert_eq!(stanza_error(&r).unwrap().0, "resource-constraint");
    // Replacing a stored namespace is still allowed.
    assert_eq!(
        set(&mut c, "4", "<a xmlns='x:1'>new</a>").attr("type"),
        Some("result")
    );
    let r = get(&mut c, "g", "<a xmlns='x:3'/>");
    assert!(r
        .child("query", NS)
        .unwrap()
        .child("a", "x:3")
        .unwrap()
        .text()
        .is_empty());
}

#[test]
fn xep0049_acknowledged_private_data_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Server::start_on(dir.path(), &["--shards", "1"]);
        s.adduser("keeper", "keeperpw");
        let mut c = Client::login(&s, "keeper", "keeperpw", None);
        let r = set(
            &mut c,
            "s",
            "<storage xmlns='storage:bookmarks'><conference jid='r@conference.localhost' autojoin='true'/></storage>",
        );
        assert_eq!(r.attr("type"), Some("result"));
        let status = s.signal_and_wait(libc::SIGKILL).expect("killed");
        assert!(!status.success());
    }
    let s = Server::start_on(dir.path(), &["--shards", "1"]);
    let mut c = Client::login(&s, "keeper", "keeperpw", None);
    let r = get(&mut c, "g", "<storage xmlns='storage:bookmarks'/>");
    let conf = r
        .child("query", NS)
        .unwrap()
        .child("storage", "storage:bookmarks")
        .unwrap()
        .child("conference", "storage:bookmarks")
        .expect("the bookmark survived");
    assert_eq!(conf.attr("autojoin"), Some("true"));
}

#[test]
fn xep0049_storage_failure_is_answered_not_acknowledged() {
    let s = Server::start_env(
        &[],
        &[("XMPPD_TEST_FAIL_STORAGE", "write:failing@localhost")],
    );
    s.adduser("failing", "failingpw");
    let mut c = Client::login(&s, "failing", "failingpw", None);
    let r = set(&mut c, "s", "<a xmlns='x:a'/>");
    assert_eq!(stanza_error(&r).unwrap().0, "internal-server-error");
}
