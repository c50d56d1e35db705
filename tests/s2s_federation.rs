//! Server-to-server federation between two xmppd processes on loopback (RFC 6120 s2s,
//! XEP-0220 dialback, XEP-0178 SASL EXTERNAL): each serves its own domain, and a static
//! route (`--s2s-route`) points each at the other's port.

mod common;

use common::{Client, Server, User};

/// A free loopback port (bound and released: the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two servers, `a.test` and `b.test`, routed to each other, with `extra` flags on both.
pub fn pair(extra: &[&str]) -> (Server, Server) {
    let (pa, pb) = (free_port(), free_port());
    let la = format!("127.0.0.1:{pa}");
    let lb = format!("127.0.0.1:{pb}");
    let ra = format!("b.test=127.0.0.1:{pb}");
    let rb = format!("a.test=127.0.0.1:{pa}");
    let mut a_args = vec![
        "--domain",
        "a.test",
        "--s2s-listen",
        &la,
        "--s2s-route",
        &ra,
    ];
    a_args.extend_from_slice(extra);
    let mut b_args = vec![
        "--domain",
        "b.test",
        "--s2s-listen",
        &lb,
        "--s2s-route",
        &rb,
    ];
    b_args.extend_from_slice(extra);
    (Server::start(&a_args), Server::start(&b_args))
}

/// CORE-S2S-01/02/04, DB-RECV-03: a chat message crosses by dialback over TLS with
/// self-signed certificates, both ways, with `from` the sender's full JID.
#[test]
fn s2s_dialback_chat_both_ways_with_self_signed_certificates() {
    let (a, b) = pair(&[]);
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
    assert_eq!(
        m.child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("hello b")
    );
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
    assert!(
        a.log.lock().unwrap().contains("s2s outgoing stream up"),
        "A's log"
    );
}
