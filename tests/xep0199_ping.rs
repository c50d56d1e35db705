//! XEP-0199 XMPP Ping: client-to-server pings, and server-initiated keepalive pings that find
//! dead connections (CORE-STREAM-19).

mod common;

use common::*;
use std::time::Duration;

#[test]
fn ping_to_server_and_without_to() {
    let s = Server::shared();
    let (u, p) = s.new_user("ping");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    let r = c.recv_el();
    assert_eq!((r.attr("type"), r.attr("id")), (Some("result"), Some("p1")));
    c.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
    let r = c.recv_el();
    assert_eq!((r.attr("type"), r.attr("id")), (Some("result"), Some("p2")));
}

#[test]
fn keepalive_ping_then_connection_timeout_for_silent_client() {
    let s = Server::start(&["--keepalive-interval", "1", "--keepalive-timeout", "1"]);
    s.adduser("quiet", "quietpw");
    s.adduser("alive", "alivepw");
    let mut quiet = Client::login(&s, "quiet", "quietpw", Some("q"));
    let ping = quiet.recv_el();
    assert_eq!(ping.attr("type"), Some("get"));
    assert_eq!(ping.attr("to"), Some("quiet@localhost/q"));
    assert!(ping.child("ping", "urn:xmpp:ping").is_some());
    // No answer: the server gives up.
    quiet.expect_stream_error("connection-timeout");

    // A client that answers stays connected.
    let mut alive = Client::login(&s, "alive", "alivepw", Some("a"));
    for _ in 0..2 {
        let ping = alive.recv_el();
        let id = ping.attr("id").unwrap().to_string();
        alive.send(&format!("<iq type='result' id='{id}' to='localhost'/>"));
    }
    alive.send(" ");
    alive.send("<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    loop {
        let r = alive.recv_el();
        if r.attr("id") == Some("still") {
            assert_eq!(r.attr("type"), Some("result"));
            break;
        }
    }
    let _ = Duration::ZERO;
}
