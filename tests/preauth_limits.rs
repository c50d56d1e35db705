//! Issue 8, "Abuse before authentication": per-address limits on connections authenticating,
//! connection rate and failed logins (with backoff), failures that count, the smaller element
//! limit before authentication, and loopback exempt only by flag. The servers here are started
//! strict (loopback is limited like any address) unless the test says otherwise; a second
//! loopback address (127.0.0.2) plays another host.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const OTHER_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn failure_condition(el: &xmppd::xml::Element) -> String {
    assert_eq!(el.name, "failure", "{el:?}");
    assert_eq!(el.ns, SASL);
    el.elements().next().expect("condition").name.clone()
}

/// A client from `src` with its stream open and the features read.
fn negotiated_from(s: &Server, src: Ipv4Addr) -> Client {
    let mut c = Client::plain_from(s, src).expect("connect");
    c.negotiate();
    c
}

/// STARTTLS on a fresh connection from `src`.
fn secured_from(s: &Server, src: Ipv4Addr) -> Client {
    let mut c = negotiated_from(s, src);
    c.starttls();
    c
}

/// Retry `f` for up to 5 s (the server notices a close asynchronously).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within 5 s");
}

/// True if a new connection from 127.0.0.1 is served (gets a stream header); false if it is
/// refused with a stream error.
fn admitted(s: &Server) -> bool {
    let mut c = Client::plain(s);
    c.open_stream();
    c.recv_header();
    let el = c.recv_el();
    if el.name == "features" {
        return true;
    }
    assert_eq!(el.name, "error", "{el:?}");
    false
}

/// The default of 16 connections authenticating from one address, the 17th refused with
/// `policy-violation`; another address is not affected; a place is given back when a
/// connection authenticates or closes. (The connection burst is raised so that the retries
/// below are never refused for the rate instead.)
#[test]
fn per_ip_unauthenticated_connections_are_limited_policy_violation() {
    let s = Server::start_strict(&["--shards", "2", "--conn-burst-per-ip", "1000"]);
    let (user, pw) = s.new_user("unauth");
    let mut held: Vec<Client> = (0..16)
        .map(|_| negotiated_from(&s, Ipv4Addr::LOCALHOST))
        .collect();
    let mut c = Client::plain(&s);
    c.open_stream();
    c.expect_stream_error("policy-violation");
    assert!(c
        .transcript
        .contains("too many connections authenticating from your address"));
    // Another host is not affected.
    let _other = negotiated_from(&s, OTHER_HOST);
    // One of the 16 logs in: its place is free.
    let mut first = held.remove(0);
    first.starttls();
    assert_eq!(
        first.auth_scram("SCRAM-SHA-256", &user, &pw).name,
        "success"
    );
    held.push(negotiated_from(&s, Ipv4Addr::LOCALHOST));
    assert!(!admitted(&s), "16 authenticating again");
    // One closes: its place is free once the server saw it.
    held.pop().unwrap().drop_tcp();
    eventually("a place freed by a close", || admitted(&s));
}

/// Over `--conn-rate-per-ip`, a connection is closed without a word; other addresses go on,
/// and tokens come back with time.
#[test]
fn per_ip_connection_rate_is_limited_closed_unanswered() {
    let s = Server::start_strict(&[
        "--conn-rate-per-ip",
        "1",
        "--conn-burst-per-ip",
        "3",
        "--max-unauth-per-ip",
        "0",
    ]);
    let _held: Vec<Client> = (0..3)
        .map(|_| negotiated_from(&s, Ipv4Addr::LOCALHOST))
        .collect();
    let mut raw = TcpStream::connect(s.c2s).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = raw.write_all(
        b"<stream:stream to='localhost' xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    );
    let mut buf = [0u8; 256];
    match raw.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed unanswered, got {other:?}"),
    }
    let _other = negotiated_from(&s, OTHER_HOST);
    // One token per second comes back.
    eventually("a connection token back", || {
        let mut c = Client::connect(s.c2s);
        c.open_stream();
        matches!(c.try_recv(Duration::from_secs(2)), Some(Event::Header(_)))
    });
}

/// Defaults only: after 5 failed logins from one address, the next attempt, even with the
/// right password, gets `temporary-auth-failure` at once (no challenge: no credential is
/// looked at, no PBKDF2 runs for PLAIN), while another address logs in; after the backoff the
/// address may try again.
#[test]
fn failed_logins_per_ip_back_off_temporary_auth_failure_without_checking_password() {
    let s = Server::start_strict(&[]);
    let (user, pw) = s.new_user("guess");
    // Three failures close a stream (--max-auth-failures), so two streams make five.
    let mut a = secured_from(&s, Ipv4Addr::LOCALHOST);
    for _ in 0..2 {
        let r = a.auth_scram("SCRAM-SHA-256", &user, "wrong");
        assert_eq!(failure_condition(&r), "not-authorized");
    }
    let r = a.auth_plain(&user, "wrong");
    assert_eq!(failure_condition(&r), "not-authorized");
    a.expect_stream_error("policy-violation");
    let mut b = secured_from(&s, Ipv4Addr::LOCALHOST);
    for _ in 0..2 {
        let r = b.auth_plain(&user, "wrong");
        assert_eq!(failure_condition(&r), "not-authorized");
    }
    // Backing off: the right password is not even looked at.
    let mut c = secured_from(&s, Ipv4Addr::LOCALHOST);
    let first = Instant::now();
    let r = c.auth_scram("SCRAM-SHA-256", &user, &pw);
    assert_eq!(failure_condition(&r), "temporary-auth-failure", "{r:?}");
    let r = c.auth_plain(&user, &pw);
    assert_eq!(failure_condition(&r), "temporary-auth-failure", "{r:?}");
    // Another address is not affected.
    let mut other = secured_from(&s, OTHER_HOST);
    assert_eq!(
        other.auth_scram("SCRAM-SHA-256", &user, &pw).name,
        "success"
    );
    // After the backoff (1 s after the fifth failure), the address may try again; the
    // refusals above did not extend it.
    let mut d = secured_from(&s, Ipv4Addr::LOCALHOST);
    let wait = Duration::from_millis(1100).saturating_sub(first.elapsed());
    std::thread::sleep(wait);
    eventually("the end of the backoff", || {
        let r = d.auth_scram("SCRAM-SHA-256", &user, &pw);
        if r.name == "success" {
            return true;
        }
        assert_eq!(failure_condition(&r), "temporary-auth-failure");
        d = secured_from(&s, Ipv4Addr::LOCALHOST);
        false
    });
}

/// `invalid-mechanism` and `encryption-required` failures count toward the stream's
/// `--max-auth-failures` (they used to be free, so one stream could probe forever).
#[test]
fn invalid_mechanism_and_encryption_required_count_as_auth_failures() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    for mech in ["NOPE", "CRAM-MD5", "X-OTHER"] {
        c.send(&format!("<auth xmlns='{SASL}' mechanism='{mech}'/>"));
        assert_eq!(failure_condition(&c.recv_el()), "invalid-mechanism");
    }
    c.expect_stream_error("policy-violation");

    let (user, pw) = s.new_user("clear");
    let mut c = Client::plain(s);
    c.negotiate();
    for _ in 0..3 {
        let r = c.auth_plain(&user, &pw);
        assert_eq!(failure_condition(&r), "encryption-required");
    }
    c.expect_stream_error("policy-violation");
}

/// The same failures count toward the address's backoff.
#[test]
fn invalid_mechanism_failures_count_toward_per_ip_backoff() {
    let s = Server::start_strict(&["--auth-failures-per-ip", "2", "--max-auth-failures", "5"]);
    let (user, pw) = s.new_user("probe");
    let mut c = secured_from(&s, Ipv4Addr::LOCALHOST);
    for _ in 0..2 {
        c.send(&format!("<auth xmlns='{SASL}' mechanism='NOPE'/>"));
        assert_eq!(failure_condition(&c.recv_el()), "invalid-mechanism");
    }
    let r = c.auth_scram("SCRAM-SHA-256", &user, &pw);
    assert_eq!(failure_condition(&r), "temporary-auth-failure", "{r:?}");
}

/// Defaults only: before authentication an element may be 8 KiB (`--max-preauth-stanza-size`),
/// not the 256 KiB of `--max-stanza-size`; after it, large stanzas pass.
#[test]
fn preauth_element_larger_than_8k_is_policy_violation() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![b'a'; 9000]);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{payload}</auth>"
    ));
    c.expect_stream_error("policy-violation");

    // Just under the limit is processed (and fails as a login).
    let mut c = Client::secured(s);
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![b'a'; 5000]);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{payload}</auth>"
    ));
    assert_eq!(c.recv_el().name, "failure");

    // After authentication the full limit applies.
    let (alice, apw) = s.new_user("big");
    let (bob, bpw) = s.new_user("big");
    let mut a = Client::online(s, &alice, &apw, Some("a"));
    let mut b = Client::online(s, &bob, &bpw, Some("b"));
    let body = "x".repeat(100_000);
    a.send(&format!(
        "<message to='{bob}@{DOMAIN}' type='chat' id='big1'><body>{body}</body></message>"
    ));
    let (got, _) = b.recv_until("the big message", |e| e.name == "message");
    assert_eq!(
        got.child("body", "jabber:client").map(|b| b.text().len()),
        Some(100_000)
    );
}

/// Loopback is exempt only with `--exempt-loopback` (which the test harness passes to every
/// server not started strict).
#[test]
fn loopback_exempt_only_with_flag() {
    let s = Server::start(&["--max-unauth-per-ip", "1", "--conn-burst-per-ip", "1"]);
    let held: Vec<Client> = (0..5)
        .map(|_| negotiated_from(&s, Ipv4Addr::LOCALHOST))
        .collect();
    assert_eq!(held.len(), 5);
    let strict = Server::start_strict(&["--max-unauth-per-ip", "1"]);
    let _one = negotiated_from(&strict, Ipv4Addr::LOCALHOST);
    let mut c = Client::plain(&strict);
    c.open_stream();
    c.expect_stream_error("policy-violation");
}
