//! End-to-end tests of XMPP over WebSocket (RFC 7395, checklist WS-*) on the HTTP listener:
//! a raw WebSocket client (RFC 6455 framing written here) speaks to the real server.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine;
use common::*;
use xmppd::xml::Element;

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// A server frame.
#[derive(Debug)]
struct WsFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

struct Ws<S: Read + Write> {
    s: S,
    buf: Vec<u8>,
}

fn ws_connect(addr: std::net::SocketAddr) -> Ws<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    Ws { s, buf: Vec::new() }
}

fn wss_connect(server: &Server) -> Ws<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let config = tls_config(&server.cert_path(), Some(b"http/1.1"));
    let sock = TcpStream::connect(server.https.unwrap()).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let conn = rustls::ClientConnection::new(config, DOMAIN.try_into().unwrap()).unwrap();
    Ws {
        s: rustls::StreamOwned::new(conn, sock),
        buf: Vec::new(),
    }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn handshake_request(extra: &str) -> String {
    format!(
        "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

impl<S: Read + Write> Ws<S> {
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 8192];
        match self.s.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Sends the handshake; returns the status and the raw response head.
    fn handshake(&mut self, extra: &str) -> (u16, String) {
        self.handshake_raw(&handshake_request(extra))
    }

    fn handshake_raw(&mut self, request: &str) -> (u16, String) {
        self.s.write_all(request.as_bytes()).unwrap();
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end + 4].to_vec()).unwrap();
                let status = head[9..12].parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    assert!(self.fill(), "closed inside a response");
                }
                self.buf.drain(..end + 4 + len);
                return (status, head);
            }
            assert!(self.fill(), "closed before the handshake answer");
        }
    }

    /// An XMPP WebSocket: handshake with the `xmpp` subprotocol.
    fn open_xmpp(mut self) -> Ws<S> {
        let (status, head) = self.handshake("Sec-WebSocket-Protocol: xmpp\r\n");
        assert_eq!(status, 101, "{head}");
        self
    }

    fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x37, 0xfa, 0x21, 0x3d];
        if masked {
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        self.s.write_all(&f).unwrap();
        self.s.flush().unwrap();
    }

    fn send(&mut self, text: &str) {
        self.send_frame(true, 1, text.as_bytes(), true);
    }

    /// The next frame, or None when the server closed the connection.
    fn recv_frame(&mut self) -> Option<WsFrame> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are not masked");
                let (len, hdr) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if hdr > 0 && self.buf.len() >= hdr + len {
                    let payload = self.buf[hdr..hdr + len].to_vec();
                    self.buf.drain(..hdr + len);
                    return Some(WsFrame {
                        fin: b0 & 0x80 != 0,
                        opcode: b0 & 0x0f,
                        payload,
                    });
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next text message (each one element, WS-03), parsed; pings are answered.
    fn recv_text(&mut self) -> String {
        loop {
            let f = self.recv_frame().expect("a message, not the end");
            match f.opcode {
                1 => {
                    assert!(f.fin, "one message per frame");
                    return String::from_utf8(f.payload).unwrap();
                }
                9 => self.send_frame(true, 10, &f.payload, true),
                op => panic!("unexpected frame {op}: {:?}", f.payload),
            }
        }
    }

    fn recv_el(&mut self) -> Element {
        let t = self.recv_text();
        parse_client(&t)
    }

    /// Waits for the Close frame and returns its code; then the connection ends.
    fn expect_close(&mut self) -> u16 {
        loop {
            let f = self.recv_frame().expect("a Close frame");
            if f.opcode == 8 {
                let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                while self.recv_frame().is_some() {}
                return code;
            }
        }
    }

    /// `<open/>` → the server's `<open/>` and features (WS-02).
    fn open_stream(&mut self) -> (Element, Element) {
        self.send(&format!(
            "<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
        ));
        let open = self.recv_el();
        let features = self.recv_el();
        (open, features)
    }
}

/// WS-01: the handshake needs the `xmpp` subprotocol, which the 101 names; other handshakes
/// are refused with a status that says why.
#[test]
fn ws_01_handshake_selects_xmpp_and_refuses_others() {
    let server = Server::start(&[]);
    let addr = server.http.unwrap();
    let mut c = ws_connect(addr);
    let (status, head) = c.handshake("Sec-WebSocket-Protocol: mqtt, xmpp\r\n");
    assert_eq!(status, 101, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("sec-websocket-protocol: xmpp\r\n"), "{head}");
    // RFC 6455 §1.3's example key and answer.
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    let mut c = ws_connect(addr);
    assert_eq!(c.handshake("").0, 400, "no subprotocol");
    let mut c = ws_connect(addr);
    assert_eq!(c.handshake("Sec-WebSocket-Protocol: chat\r\n").0, 400);
    let mut c = ws_connect(addr);
    let (status, head) = c.handshake_raw(
        "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n",
    );
    assert_eq!(status, 426, "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
}

/// WS-02, WS-04, WS-05: `<open/>` is answered with `<open/>` (from, a fresh id, version) and
/// the features in their own message, the streams prefix declared; no STARTTLS inside a
/// WebSocket.
#[test]
fn ws_02_04_05_open_answers_open_then_features_without_starttls() {
    let server = Server::start(&["--allow-plaintext"]);
    let mut c = ws_connect(server.http.unwrap()).open_xmpp();
    c.send(&format!(
        "<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
    ));
    let open = c.recv_text();
    let el = parse_client(&open);
    assert_eq!((el.name.as_str(), el.ns.as_str()), ("open", FRAMING));
    assert_eq!(el.attr("from"), Some("localhost"));
    assert_eq!(el.attr("version"), Some("1.0"));
    let id1 = el.attr("id").unwrap().to_string();
    let features = c.recv_text();
    assert!(
        features.starts_with("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"),
        "{features}"
    );
    let f = parse_client(&features);
    assert!(f
        .child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());
    assert!(f
        .child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_some());
    // STARTTLS asked for anyway: refused, the stream ends.
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    let failure = c.recv_el();
    assert_eq!(failure.name, "failure");
    assert_eq!(c.recv_el().name, "close");
    assert_eq!(c.expect_close(), 1000);
    // A second connection gets another id.
    let mut c = ws_connect(server.http.unwrap()).open_xmpp();
    let (open, _) = c.open_stream();
    assert_ne!(open.attr("id").unwrap(), id1);
}

/// WS-06, XBOSH-05's WebSocket twin: SASL over wss://, the restart with a new `<open/>` (a
/// fresh id, bind offered), bind, and chat with a client on the XMPP port, on two shards so
/// that logins move between them.
#[test]
fn ws_06_login_restart_bind_and_chat_across_shards() {
    let server = Server::start(&["--shards", "2"]);
    for shard in 0..2 {
        let web = User::on_shard(&server, "web", shard, 2);
        let tcp = User::new(&server, "tcp");
        let mut c = wss_connect(&server).open_xmpp();
        let (open1, _) = c.open_stream();
        let jid = {
            let payload = base64::engine::general_purpose::STANDARD
                .encode(format!("\0{}\0{}", web.local, web.pw));
            c.send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
            ));
            assert_eq!(c.recv_el().name, "success");
            let (open2, features) = c.open_stream();
            assert_ne!(open2.attr("id"), open1.attr("id"), "a fresh stream id");
            assert!(features
                .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
                .is_some());
            c.send(
                "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>web</resource></bind></iq>",
            );
            let r = c.recv_el();
            r.child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
                .and_then(|b| b.child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
                .map(|j| j.text())
                .unwrap()
        };
        assert_eq!(jid, web.full("web"));
        let mut t = tcp.login(&server, "desk");
        t.send(&format!(
            "<message to='{jid}' type='chat' id='m1'><body>hello web</body></message>"
        ));
        let m = c.recv_el();
        assert_eq!(m.name, "message");
        assert_eq!(m.attr("from"), Some(t.full().as_str()));
        assert_eq!(
            m.child("body", "jabber:client").unwrap().text(),
            "hello web"
        );
        c.send(&format!(
            "<message to='{}' type='chat'><body>hello tcp</body></message>",
            t.full()
        ));
        let back = t.recv_until("reply", |e| e.name == "message");
        assert_eq!(back.0.attr("from"), Some(jid.as_str()));
        // WS-07: <close/> is answered with <close/> and the Close frame.
        c.send(&format!("<close xmlns='{FRAMING}'/>"));
        let close = c.recv_el();
        assert_eq!((close.name.as_str(), close.ns.as_str()), ("close", FRAMING));
        assert_eq!(c.expect_close(), 1000);
    }
}

/// WS-03, WS-08: a message that is not exactly one complete element is a stream error, sent
/// as `<stream:error>` (prefix declared) and followed by `<close/>` and the Close frame.
#[test]
fn ws_03_08_partial_or_several_elements_are_a_stream_error() {
    let server = Server::start(&["--allow-plaintext"]);
    for bad in [
        "<message to='a@localhost'><body>half",
        "<presence/><presence/>",
        "just text",
    ] {
        let mut c = ws_connect(server.http.unwrap()).open_xmpp();
        c.open_stream();
        c.send(bad);
        let err = c.recv_text();
        assert!(
            err.starts_with("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"),
            "{err}"
        );
        let e = parse_client(&err);
        // Text outside an element is `bad-format`, as on the XMPP ports.
        let want = if bad == "just text" {
            "bad-format"
        } else {
            "not-well-formed"
        };
        assert!(
            e.child(want, "urn:ietf:params:xml:ns:xmpp-streams")
                .is_some(),
            "{bad}: {err}"
        );
        assert_eq!(c.recv_el().name, "close");
        assert_eq!(c.expect_close(), 1000);
    }
    // A fragmented message is one message: the element may span frames.
    let mut c = ws_connect(server.http.unwrap()).open_xmpp();
    c.send_frame(
        false,
        1,
        b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' ",
        true,
    );
    c.send_frame(true, 9, b"are you there", true);
    c.send_frame(true, 0, b"to='localhost' version='1.0'/>", true);
    let pong = c.recv_frame().unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (10, &b"are you there"[..])
    );
    assert_eq!(c.recv_el().name, "open");
}

/// WS-10 and RFC 6455 errors: a Ping gets a Pong with its payload; a binary message closes
/// with 1003, an unmasked frame with 1002, a Close is answered with a Close.
#[test]
fn ws_10_ping_pong_and_rfc6455_errors_close_with_their_codes() {
    let server = Server::start(&["--allow-plaintext"]);
    let mut c = ws_connect(server.http.unwrap()).open_xmpp();
    c.open_stream();
    c.send_frame(true, 9, b"ping-1", true);
    let f = c.recv_frame().unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (10, &b"ping-1"[..]));
    c.send_frame(true, 2, b"<presence/>", true);
    assert_eq!(c.expect_close(), 1003);

    let mut c = ws_connect(server.http.unwrap()).open_xmpp();
    c.send_frame(
        true,
        1,
        b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        false,
    );
    assert_eq!(c.expect_close(), 1002);

    let mut c = ws_connect(server.http.unwrap()).open_xmpp();
    c.open_stream();
    c.send_frame(true, 8, &1000u16.to_be_bytes(), true);
    assert_eq!(c.expect_close(), 1000);
}

/// WS-11 (XEP-0156): host-meta advertises the WebSocket endpoint, `wss://` on the HTTPS
/// port and with a public https URL; and the BOSH endpoint beside it (XEP-0156 §3.2,
/// `urn:xmpp:alt-connections:xbosh`).
#[test]
fn ws_11_host_meta_advertises_the_websocket_endpoint() {
    let server = Server::start(&[]);
    let get = |addr| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(b"GET /.well-known/host-meta HTTP/1.0\r\nHost: chat.example:5280\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let xrd = get(server.http.unwrap());
    assert!(
        xrd.contains(
            "<Link rel='urn:xmpp:alt-connections:websocket' href='ws://chat.example:5280/xmpp-websocket'/>"
        ),
        "{xrd}"
    );
    assert!(
        xrd.contains(
            "<Link rel='urn:xmpp:alt-connections:xbosh' href='http://chat.example:5280/http-bind'/>"
        ),
        "{xrd}"
    );
    let public = Server::start(&["--public-http-url", "https://xmpp.example/base/"]);
    let xrd = get(public.http.unwrap());
    assert!(
        xrd.contains("href='wss://xmpp.example/base/xmpp-websocket'"),
        "{xrd}"
    );
    assert!(
        xrd.contains("href='https://xmpp.example/base/http-bind'"),
        "{xrd}"
    );
}

/// A page from an origin outside `--http-cors-origin` may not open the WebSocket (403);
/// a listed origin may.
#[test]
fn ws_origins_outside_the_cors_policy_are_refused() {
    let server = Server::start(&["--http-cors-origin", "https://app.example"]);
    let mut c = ws_connect(server.http.unwrap());
    let (status, _) =
        c.handshake("Sec-WebSocket-Protocol: xmpp\r\nOrigin: https://evil.example\r\n");
    assert_eq!(status, 403);
    let mut c = ws_connect(server.http.unwrap());
    let (status, _) =
        c.handshake("Sec-WebSocket-Protocol: xmpp\r\nOrigin: https://app.example\r\n");
    assert_eq!(status, 101);
}

/// Before authentication a message is held to `--max-preauth-stanza-size` (a larger one
/// closes the WebSocket with 1009, RFC 6455 §7.4.1); after it, to `--max-stanza-size`.
#[test]
fn ws_messages_are_bounded_by_the_stanza_limits_before_and_after_login() {
    let server = Server::start(&[]);
    let mut c = wss_connect(&server).open_xmpp();
    c.open_stream();
    let big = format!(
        "<iq type='get' id='x'><query xmlns='urn:x'>{}</query></iq>",
        "a".repeat(9000)
    );
    c.send(&big);
    assert_eq!(c.expect_close(), 1009);

    let web = User::new(&server, "big");
    let tcp = User::new(&server, "peer");
    let mut c = wss_connect(&server).open_xmpp();
    c.open_stream();
    let payload =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{}", web.local, web.pw));
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
    ));
    assert_eq!(c.recv_el().name, "success");
    c.open_stream();
    c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    assert_eq!(c.recv_el().attr("type"), Some("result"));
    let mut t = tcp.login(&server, "desk");
    let body = "b".repeat(20_000);
    c.send(&format!(
        "<message to='{}' type='chat'><body>{body}</body></message>",
        t.full()
    ));
    let (m, _) = t.recv_until("big message", |e| e.name == "message");
    assert_eq!(m.child("body", "jabber:client").unwrap().text(), body);
}

/// WS-09: with `--websocket-see-other-uri`, `<open/>` is answered with
/// `<close see-other-uri='…'/>` and the WebSocket closes.
#[test]
fn ws_09_see_other_uri_redirects_instead_of_open() {
    let server = Server::start(&[
        "--websocket-see-other-uri",
        "wss://xmpp2.example/xmpp-websocket",
    ]);
    let mut c = ws_connect(server.http.unwrap()).open_xmpp();
    c.send(&format!(
        "<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
    ));
    let close = c.recv_el();
    assert_eq!((close.name.as_str(), close.ns.as_str()), ("close", FRAMING));
    assert_eq!(
        close.attr("see-other-uri"),
        Some("wss://xmpp2.example/xmpp-websocket")
    );
    assert_eq!(c.expect_close(), 1000);
}
