//! XEP-0352 Client State Indication (CSI-01..05): the stream feature, `<active/>` and
//! `<inactive/>` answered by nothing, presence and chat states held back while inactive and
//! sent in order before anything that cannot wait, and everything held flushed on `<active/>`.

mod common;

use common::*;
use std::time::Duration;

const NS_CSI: &str = "urn:xmpp:csi:0";

fn presence_from(b: &mut Client, a_full: &str, status: &str) {
    b.send(&format!(
        "<presence to='{a_full}'><status>{status}</status></presence>"
    ));
}

#[test]
fn csi_01_feature_offered_after_authentication() {
    let s = Server::shared();
    let (u, p) = s.new_user("csif");
    let mut c = Client::plain(s);
    let (_, before) = c.negotiate();
    assert!(before.child("csi", NS_CSI).is_none(), "{before:?}");
    c.starttls();
    let r = c.auth_scram("SCRAM-SHA-256", &u, &p);
    assert_eq!(r.name, "success");
    let (_, f) = c.negotiate();
    assert!(f.child("csi", NS_CSI).is_some(), "{f:?}");
    // CSI-02 before bind: accepted silently (nothing to hold yet), and binding still works.
    c.send(&format!("<inactive xmlns='{NS_CSI}'/>"));
    c.bind(None);
    assert!(c.sync().is_empty());
}

#[test]
fn csi_02_04_held_while_inactive_in_order_and_flushed() {
    let s = Server::shared();
    let (ua, pa) = s.new_user("csia");
    let (ub, pb) = s.new_user("csib");
    let mut a = Client::online(s, &ua, &pa, Some("phone"));
    let mut b = Client::online(s, &ub, &pb, Some("desk"));
    let a_full = a.full();

    // CSI-02: no answer, no error.
    a.send(&format!("<inactive xmlns='{NS_CSI}'/>"));
    assert!(a.sync().is_empty());

    // Presence and a chat-state-only message wait.
    presence_from(&mut b, &a_full, "one");
    b.send(&format!(
        "<message type='chat' to='{a_full}' id='cs1'>\
         <composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    ));
    // CSI-05: the sender learns nothing.
    assert!(b.sync().is_empty());
    a.expect_silence(Duration::from_millis(300));

    // A message with a body cannot wait: what waited comes first, in order.
    b.send(&format!(
        "<message type='chat' to='{a_full}' id='m1'><body>hi</body></message>"
    ));
    let got = a.drain(Duration::from_millis(500));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(is_presence(&got[0], None, Some(&b.full())), "{got:?}");
    assert_eq!(status_of(&got[0]).as_deref(), Some("one"));
    assert_eq!(got[1].attr("id"), Some("cs1"));
    assert_eq!(got[2].attr("id"), Some("m1"));

    // CSI-04: held again, then `<active/>` and a ping: everything held arrives before the
    // ping's answer.
    presence_from(&mut b, &a_full, "two");
    presence_from(&mut b, &a_full, "three");
    assert!(b.sync().is_empty());
    a.expect_silence(Duration::from_millis(200));
    a.send(&format!("<active xmlns='{NS_CSI}'/>"));
    let before = a.sync();
    let statuses: Vec<_> = before.iter().filter_map(status_of).collect();
    assert_eq!(statuses, vec!["two", "three"], "{before:?}");

    // Active again: presence flows at once.
    presence_from(&mut b, &a_full, "four");
    let (p, _) = a.recv_until("presence", |e| e.name == "presence");
    assert_eq!(status_of(&p).as_deref(), Some("four"));
}

#[test]
fn csi_03_every_stream_starts_active() {
    let s = Server::shared();
    let (ua, pa) = s.new_user("csin");
    let (ub, pb) = s.new_user("csim");
    let mut a = Client::online(s, &ua, &pa, Some("r"));
    a.send(&format!("<inactive xmlns='{NS_CSI}'/>"));
    assert!(a.sync().is_empty());
    a.close();
    // A new stream for the same resource: active, presence is not held.
    let mut a = Client::online(s, &ua, &pa, Some("r"));
    let mut b = Client::online(s, &ub, &pb, None);
    presence_from(&mut b, &a.full(), "now");
    let (p, _) = a.recv_until("presence", |e| e.name == "presence");
    assert_eq!(status_of(&p).as_deref(), Some("now"));
}

#[test]
fn unknown_element_in_the_csi_namespace_closes_the_stream() {
    let s = Server::shared();
    let (u, p) = s.new_user("csix");
    let mut c = Client::login(s, &u, &p, None);
    c.send(&format!("<sleepy xmlns='{NS_CSI}'/>"));
    c.expect_stream_error("unsupported-stanza-type");
}
