//! RFC 6120 §4 and §11: stream headers, features, restricted XML, limits and stream errors,
//! checked on the wire against the real server.

mod common;

use common::*;
use std::time::Duration;

const HDR_TAIL: &str =
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

fn open_raw(c: &mut Client, attrs: &str) {
    c.send(&format!("<stream:stream {attrs} {HDR_TAIL}"));
}

#[test]
fn core_stream_01_header_and_features() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    let (h, f) = c.negotiate();
    assert_eq!(h.from.as_deref(), Some(DOMAIN));
    assert_eq!(h.version.as_deref(), Some("1.0"));
    assert_eq!(h.default_ns.as_deref(), Some("jabber:client"));
    assert!(h.id.as_deref().is_some_and(|i| i.len() >= 16));
    // CORE-TLS-01/02: TLS is required by default, so only STARTTLS is offered.
    let tls = f
        .child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .expect("starttls");
    assert!(tls
        .child("required", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_some());
    assert!(f
        .child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_none());
    // CORE-STREAM-12
    assert!(h.lang.is_some());
}

#[test]
fn core_stream_02_03_new_unpredictable_id_after_each_restart() {
    let s = Server::shared();
    let (user, pw) = s.new_user("sid");
    let mut c = Client::plain(s);
    let (h1, _) = c.negotiate();
    let (h2, _) = c.starttls();
    let r = c.auth_scram("SCRAM-SHA-256", &user, &pw);
    assert_eq!(r.name, "success");
    let (h3, _) = c.negotiate();
    let ids = [h1.id.unwrap(), h2.id.unwrap(), h3.id.unwrap()];
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    assert_ne!(ids[0], ids[2]);
    for id in &ids {
        assert!(id.len() >= 32, "128 bits of randomness: {id}");
    }
}

#[test]
fn core_stream_04_response_to_matches_initial_from() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    open_raw(&mut c, "to='localhost' from='juliet@localhost'");
    let h = c.recv_header();
    assert_eq!(h.to.as_deref(), Some("juliet@localhost"));
}

#[test]
fn core_stream_05_host_unknown() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    open_raw(&mut c, "to='not-hosted.example'");
    // CORE-STREAM-07: a header first, then the error, then the close.
    let _ = c.recv_header();
    c.expect_stream_error("host-unknown");
}

#[test]
fn core_stream_06_missing_to_is_host_unknown() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    open_raw(&mut c, "");
    let _ = c.recv_header();
    c.expect_stream_error("host-unknown");
}

#[test]
fn core_stream_08_wrong_content_namespace() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<stream:stream to='localhost' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    c.expect_stream_error("invalid-namespace");
}

#[test]
fn core_stream_08_wrong_stream_namespace() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://wrong.example/streams' version='1.0'>");
    c.expect_stream_error("invalid-namespace");
}

#[test]
fn core_stream_09_undeclared_stream_prefix() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<stream:stream to='localhost' xmlns='jabber:client' version='1.0'>");
    c.expect_stream_error("bad-namespace-prefix");
}

#[test]
fn core_stream_10_unsupported_version() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='2.0'>");
    c.expect_stream_error("unsupported-version");
}

#[test]
fn core_stream_10_minor_version_answered_with_1_0() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.5'>");
    let h = c.recv_header();
    assert_eq!(h.version.as_deref(), Some("1.0"));
    assert_eq!(c.recv_el().name, "features");
}

#[test]
fn core_stream_11_pre_1_0_client_gets_no_features() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    let h = c.recv_header();
    assert_eq!(h.version, None);
    c.expect_silence(Duration::from_millis(300));
    // XEP-0078 is its only way to log in, and by default (`--iq-auth tls`) it needs TLS,
    // which a pre-1.0 stream gets only on the direct-TLS port (IQAUTH-11;
    // tests/xep0078_iqauth.rs has the rest).
    c.send(
        "<iq type='get' id='a1'><query xmlns='jabber:iq:auth'><username>x</username></query></iq>",
    );
    let e = c.recv_el();
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(stanza_error(&e).unwrap().0, "not-acceptable");
}

#[test]
fn core_stream_15_stanza_before_auth_is_not_authorized() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<message to='someone@localhost'><body>hi</body></message>");
    c.expect_stream_error("not-authorized");
}

#[test]
fn core_stream_16_close_handshake() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.close();
}

#[test]
fn core_stream_18_whitespace_keepalive_is_ignored() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send(" \n ");
    c.open_stream();
    let _ = c.recv_header();
    let _ = c.recv_el();
    c.send("\n \t \r\n");
    c.expect_silence(Duration::from_millis(300));
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(c.recv_el().name, "proceed");
}

#[test]
fn core_stream_20_unsupported_first_level_element() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<foo xmlns='jabber:client'/>");
    c.expect_stream_error("unsupported-stanza-type");
}

#[test]
fn core_stream_23_xml_declaration_accepted() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<?xml version='1.0' encoding='UTF-8'?>");
    open_raw(&mut c, "to='localhost'");
    let _ = c.recv_header();
    assert_eq!(c.recv_el().name, "features");
}

#[test]
fn core_stream_24_second_header_mid_stream() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    open_raw(&mut c, "to='localhost'");
    c.expect_stream_error("not-well-formed");
}

#[test]
fn core_xml_01_comment_is_restricted() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<!-- hello -->");
    c.expect_stream_error("restricted-xml");
}

#[test]
fn core_xml_02_processing_instruction_is_restricted() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<?foo bar?>");
    c.expect_stream_error("restricted-xml");
}

#[test]
fn core_xml_03_doctype_is_restricted() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY lol 'lol'>]>");
    c.expect_stream_error("restricted-xml");
}

#[test]
fn core_xml_04_undeclared_entity_is_rejected() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls' a='&nbsp;'/>");
    c.expect_stream_error("restricted-xml");
}

#[test]
fn core_xml_05_mismatched_tag() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<a xmlns='x'><b></a></b>");
    c.expect_stream_error("not-well-formed");
}

#[test]
fn core_xml_05_duplicate_attribute() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls' a='1' a='2'/>");
    c.expect_stream_error("not-well-formed");
}

#[test]
fn core_xml_06_undeclared_prefix_on_child() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><foo:bar/></starttls>");
    c.expect_stream_error("not-well-formed");
}

#[test]
fn core_xml_07_invalid_utf8() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send_bytes(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls' a='\xff\xfe'/>");
    c.expect_stream_error("not-well-formed");
}

#[test]
fn core_xml_07_non_utf8_declaration() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.send("<?xml version='1.0' encoding='ISO-8859-1'?>");
    open_raw(&mut c, "to='localhost'");
    c.expect_stream_error("unsupported-encoding");
}

#[test]
fn core_xml_08_forbidden_control_character() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>\u{1}</starttls>");
    c.expect_stream_error("not-well-formed");
}

#[test]
fn core_xml_09_oversized_stanza_is_policy_violation() {
    let s = Server::start(&["--max-stanza-size", "10000"]);
    let mut c = Client::plain(&s);
    c.negotiate();
    // Never completes: the server must not wait for the end (CORE-XML-11).
    let big = format!(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>{}",
        "x".repeat(12_000)
    );
    c.send_bytes(big.as_bytes());
    c.expect_stream_error("policy-violation");
}

#[test]
fn core_xml_11_depth_limit() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    let deep = "<a>".repeat(200);
    c.send_bytes(format!("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>{deep}").as_bytes());
    c.expect_stream_error("policy-violation");
}

#[test]
fn core_xml_12_equivalent_forms_accepted() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    // Double quotes, a custom prefix for the streams namespace.
    c.send("<s:stream to=\"localhost\" xmlns=\"jabber:client\" xmlns:s=\"http://etherx.jabber.org/streams\" version=\"1.0\">");
    let _ = c.recv_header();
    assert_eq!(c.recv_el().name, "features");
    // An empty element pair instead of a self-closing tag, with a prefix for the TLS namespace.
    c.send("<t:starttls xmlns:t='urn:ietf:params:xml:ns:xmpp-tls'></t:starttls>");
    assert_eq!(c.recv_el().name, "proceed");
}

#[test]
fn core_xml_split_across_reads_byte_by_byte() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    let hdr = format!("<stream:stream to='localhost' {HDR_TAIL}");
    for b in hdr.as_bytes() {
        c.send_bytes(&[*b]);
    }
    let _ = c.recv_header();
    let _ = c.recv_el();
    for b in "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".as_bytes() {
        c.send_bytes(&[*b]);
    }
    assert_eq!(c.recv_el().name, "proceed");
}

#[test]
fn core_serr_text_before_stanza_is_bad_format() {
    let s = Server::shared();
    let mut c = Client::plain(s);
    c.negotiate();
    c.send("hello");
    c.expect_stream_error("bad-format");
}

#[test]
fn core_stream_19_unauthenticated_stream_times_out() {
    let s = Server::start(&["--auth-timeout", "1"]);
    let mut c = Client::plain(&s);
    c.negotiate();
    c.expect_stream_error("connection-timeout");
}

#[test]
fn core_serr_17_connection_limit_is_resource_constraint() {
    let s = Server::start(&["--shards", "1", "--max-connections", "2"]);
    let mut a = Client::plain(&s);
    a.negotiate();
    let mut b = Client::plain(&s);
    b.negotiate();
    let mut c = Client::plain(&s);
    let _ = c.recv_header();
    c.expect_stream_error("resource-constraint");
    // Closing one frees a slot.
    a.close();
    std::thread::sleep(Duration::from_millis(200));
    let mut d = Client::plain(&s);
    d.negotiate();
    b.close();
}

/// Issue 8: a stream error must reach a client that is still sending when it is raised. The
/// server used to close the socket at once, with the rest of the client's oversized stanza
/// unread: Linux answers that (and every later segment) with a RST, so a client that is still
/// writing gets a connection reset, and clients that stop at the first socket error never
/// process the error that was in flight. The server must write the error and
/// `</stream:stream>`, shut down its write side, and keep reading (discarding) for a while:
/// the client's writes keep succeeding, and it sees the error, then a clean end of stream.
#[test]
fn core_serr_policy_violation_reaches_client_still_sending_oversized_stanza() {
    use std::io::{Read, Write};
    let s = Server::shared();
    for run in 0..10 {
        let mut tcp = std::net::TcpStream::connect(s.c2s).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(
            format!(
                "<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
            )
            .as_bytes(),
        )
        .unwrap();
        // More than the stanza limit.
        tcp.write_all(b"<message><body>").unwrap();
        let chunk = vec![b'a'; 16 * 1024];
        for _ in 0..20 {
            tcp.write_all(&chunk).unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("run {run}: read failed ({e}) after {got:?}"),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("<policy-violation") && text.ends_with("</stream:stream>"),
            "run {run}: received {text}"
        );
        // The client is still sending the rest of its stanza: not reset.
        for i in 0..3 {
            if let Err(e) = tcp.write_all(&chunk) {
                panic!("run {run}: write {i} after the stream error was reset: {e}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
