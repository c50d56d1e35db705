//! RFC 6120 §5 STARTTLS, RFC 7590 and XEP-0368 direct TLS, on the wire.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn core_tls_03_05_starttls_then_new_stream_without_starttls() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    let (h1, _) = c.negotiate();
    let (h2, f) = c.starttls();
    assert_ne!(h1.id, h2.id);
    assert!(f
        .child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());
    let mechs: Vec<String> = f
        .child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .expect("mechanisms after TLS")
        .elements()
        .map(|m| m.text())
        .collect();
    // CORE-SASL-02/03/04
    for m in [
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256-PLUS",
        "PLAIN",
    ] {
        assert!(mechs.iter().any(|x| x == m), "{m} missing from {mechs:?}");
    }
    // CORE-SASL-24 (XEP-0440): tls-server-end-point is mandatory; tls-exporter with TLS 1.3.
    let cb: Vec<&str> = f
        .child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .expect("sasl-channel-binding")
        .elements()
        .filter_map(|e| e.attr("type"))
        .collect();
    assert!(cb.contains(&"tls-server-end-point"), "{cb:?}");
    assert!(cb.contains(&"tls-exporter"), "{cb:?}");
}

#[test]
fn core_tls_06_plaintext_pipelined_after_starttls_is_discarded() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    // The injected stream header and stanza must not be processed inside TLS.
    c.send(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
         <stream:stream to='localhost' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    );
    assert_eq!(c.recv_el().name, "proceed");
    c.upgrade(None).expect("handshake");
    // Nothing arrives until we open the encrypted stream ourselves.
    c.expect_silence(Duration::from_millis(300));
    let (_, f) = c.negotiate();
    assert!(f
        .child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_some());
}

#[test]
fn core_tls_07_auth_in_the_clear_is_refused() {
    let s = Server::shared();
    let (user, pw) = s.new_user("clear");
    let mut c = Client::plain(s);
    c.negotiate();
    let r = c.auth_plain(&user, &pw);
    assert_eq!(r.name, "failure");
    assert!(r
        .child("encryption-required", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_some());
}

#[test]
fn core_tls_11_second_starttls_fails() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.starttls();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    let f = c.recv_el();
    assert_eq!(f.name, "failure");
    assert_eq!(f.ns, "urn:ietf:params:xml:ns:xmpp-tls");
    match c.recv() {
        Event::Close => {}
        e => panic!("expected close, got {e:?}"),
    }
    c.expect_eof();
}

#[test]
fn core_tls_08_refuses_tls_1_1_and_below() {
    let s = Server::shared();
    let mut tcp = std::net::TcpStream::connect(s.c2s).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.write_all(b"<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("<proceed") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    // A TLS 1.1-only ClientHello (legacy_version 0x0302, no supported_versions extension).
    let hello: Vec<u8> = {
        let mut body = vec![0x03, 0x02];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
        body.extend_from_slice(&[0x01, 0x00]);
        body.extend_from_slice(&[0x00, 0x00]);
        let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    };
    tcp.write_all(&hello).unwrap();
    // CORE-TLS-12: an alert (or nothing), then the connection closes; never XMPP in the clear.
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest[0] == 0x15,
        "expected a TLS alert, got {rest:?}"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("stream"));
}

#[test]
fn core_tls_12_garbage_handshake_closes_without_plaintext() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(c.recv_el().name, "proceed");
    c.send_bytes(b"this is not a TLS record at all\r\n\r\n");
    c.expect_eof_tolerating_tls_alert();
}

#[test]
fn dtls_01_03_direct_tls_stream_offers_no_starttls() {
    let s = Server::shared();
    let mut c = Client::direct_tls(s, None).expect("direct TLS");
    let (_, f) = c.negotiate();
    assert!(f
        .child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());
    assert!(f
        .child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_some());
}

#[test]
fn dtls_02_alpn_xmpp_client_accepted_mismatch_rejected() {
    let s = Server::shared();
    let c = Client::direct_tls(s, Some(b"xmpp-client")).expect("xmpp-client ALPN");
    assert_eq!(
        c.tls_conn().unwrap().alpn_protocol(),
        Some(&b"xmpp-client"[..])
    );
    assert!(Client::direct_tls(s, Some(b"xmpp-server")).is_err());
}

#[test]
fn direct_tls_login_and_bind() {
    let s = Server::shared();
    let (user, pw) = s.new_user("dtls");
    let mut c = Client::direct_tls(s, Some(b"xmpp-client")).unwrap();
    c.negotiate();
    let r = c.auth_scram("SCRAM-SHA-256-PLUS", &user, &pw);
    assert_eq!(r.name, "success", "{r:?}");
    c.negotiate();
    let jid = c.bind(Some("dt"));
    assert_eq!(jid, format!("{user}@localhost/dt"));
}

trait TlsAlertEof {
    fn expect_eof_tolerating_tls_alert(&mut self);
}

impl TlsAlertEof for Client {
    fn expect_eof_tolerating_tls_alert(&mut self) {
        // The server may send a TLS alert record, which is not XML; only the close matters.
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.try_recv(Duration::from_millis(200))
            })) {
                Ok(Some(Event::Eof)) | Err(_) => return,
                Ok(Some(e)) => panic!("unexpected {e:?}"),
                Ok(None) => {}
            }
        }
        panic!("connection not closed");
    }
}

/// Issue 8 (critical): SASL succeeding on a shard that is not the account's home, with a TLS
/// `close_notify` and more than 4 KiB of further bytes in the same burst, made the hand-off
/// loop spin for good (rustls consumes nothing after close_notify), freezing the shard. Every
/// combination of accepting shard and home shard is tried; afterwards both shards must still
/// serve logins.
#[test]
fn tls_close_notify_in_auth_burst_does_not_freeze_a_shard() {
    let s = Server::start(&["--shards", "2"]);
    let users: Vec<(String, String)> = (0..2)
        .map(|shard| s.new_user_on_shard("cn", shard, 2))
        .collect();
    let cfg = tls_config(&s.cert_path(), None);
    // The kernel spreads connections over the shards' listeners: several tries per account
    // make a cross-shard case (almost) certain.
    for (user, pw) in users.iter().cycle().take(12) {
        let mut tcp = std::net::TcpStream::connect(s.c2s_tls.unwrap()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls =
            rustls::ClientConnection::new(cfg.clone(), DOMAIN.try_into().unwrap()).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
        stream
            .write_all(
                format!(
                    "<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' \
                     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
                )
                .as_bytes(),
            )
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("</stream:features>") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed before features");
            got.extend_from_slice(&buf[..n]);
        }
        // One burst: the auth, close_notify, then more than 4 KiB of further bytes.
        let payload = b64(format!("\0{user}\0{pw}").as_bytes());
        tls.writer()
            .write_all(
                format!(
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
                )
                .as_bytes(),
            )
            .unwrap();
        tls.send_close_notify();
        let mut burst = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut burst).unwrap();
        }
        burst.extend(std::iter::repeat_n(0x17u8, 6000));
        let _ = tcp.write_all(&burst);
        drop(tcp);
    }
    // Both shards still serve: a login homed on each, several times.
    for (user, pw) in users.iter().cycle().take(6) {
        let mut c = Client::login(&s, user, pw, None);
        c.close();
    }
    let status = s
        .signal_and_wait(libc::SIGTERM)
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}
