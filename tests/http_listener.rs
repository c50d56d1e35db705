//! End-to-end tests of the HTTP listener (issue 13): HTTP/1.1 message handling (RFC 9112,
//! RFC 9110), its bounds and timeouts, CORS, HTTPS, and XEP-0156 discovery documents.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use common::*;

/// A raw HTTP client over any byte stream.
struct Http<S: Read + Write> {
    s: S,
    buf: Vec<u8>,
}

impl Http<TcpStream> {
    fn connect(addr: SocketAddr) -> Http<TcpStream> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        Http { s, buf: Vec::new() }
    }
}

impl<S: Read + Write> Http<S> {
    fn send(&mut self, raw: &[u8]) {
        self.s.write_all(raw).unwrap();
        self.s.flush().unwrap();
    }

    /// Reads one response (a HEAD's has no body: `head`).
    fn recv_response(&mut self, head: bool) -> Resp {
        loop {
            if let Some(r) = take_http_response(&mut self.buf, head) {
                return r;
            }
            let mut tmp = [0u8; 4096];
            let k = self.s.read(&mut tmp).expect("read");
            assert!(k > 0, "closed before a whole response: {:?}", self.buf);
            self.buf.extend_from_slice(&tmp[..k]);
        }
    }

    fn request(&mut self, raw: &str) -> Resp {
        self.send(raw.as_bytes());
        self.recv_response(raw.starts_with("HEAD "))
    }

    /// The server closes the connection (after whatever it still sends).
    fn expect_closed(&mut self) {
        let mut tmp = [0u8; 4096];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("the server did not close: {e}"),
            }
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// RFC 9112 §9.3: one connection carries several requests, pipelined ones answered in order;
/// `Connection: close` ends it after the response.
#[test]
fn rfc9112_9_3_keep_alive_pipelining_and_close() {
    let server = Server::start(&[]);
    let mut c = Http::connect(server.http.unwrap());
    let r = c.request(&get("/.well-known/host-meta"));
    assert_eq!(r.status, 200);
    assert!(r.header("connection").is_none(), "{:?}", r.headers);
    // Two requests in one write: two responses, in order.
    c.send(
        format!(
            "{}{}",
            get("/nothing-here"),
            get("/.well-known/host-meta.json")
        )
        .as_bytes(),
    );
    assert_eq!(c.recv_response(false).status, 404);
    let json = c.recv_response(false);
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let r = c.request(
        "GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed();
    // HTTP/1.0 closes unless asked to keep alive.
    let mut c = Http::connect(server.http.unwrap());
    let r = c.request("GET /.well-known/host-meta HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    c.expect_closed();
}

/// Each bound on what a request may make the server buffer has its own status, and the
/// connection closes after it (RFC 9112 §3 414, RFC 6585 §5 431, RFC 9110 §15.5.14 413,
/// §15.5.12 411, RFC 9112 §3.2 400 without Host, §6.3 400 on conflicting framing).
#[test]
fn rfc9112_request_bounds_answer_4xx_and_close() {
    let server = Server::start(&[
        "--http-max-request-line",
        "300",
        "--http-max-header-bytes",
        "2000",
        "--http-max-body",
        "5000",
    ]);
    let addr = server.http.unwrap();
    let cases: Vec<(String, u16)> = vec![
        (format!("GET /{} HTTP/1.1\r\n", "a".repeat(400)), 414),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
                "b".repeat(2100)
            ),
            431,
        ),
        (
            "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5001\r\n\r\n".into(),
            413,
        ),
        (
            "POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            411,
        ),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        (
            "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                .into(),
            400,
        ),
        ("GET / HTTP/3.0\r\nHost: localhost\r\n\r\n".into(), 505),
        ("NOT HTTP AT ALL\r\n\r\n".into(), 400),
    ];
    for (raw, status) in cases {
        let mut c = Http::connect(addr);
        let r = c.request(&raw);
        assert_eq!(r.status, status, "{}", &raw[..raw.len().min(60)]);
        assert_eq!(r.header("connection"), Some("close"));
        c.expect_closed();
    }
    // At the bounds, requests are served.
    let mut c = Http::connect(addr);
    let path = format!("/{}", "a".repeat(300 - "GET / HTTP/1.1".len()));
    assert_eq!(c.request(&get(&path)).status, 404);
    let body = "x".repeat(5000);
    let r = c.request(&format!(
        "POST /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n{body}"
    ));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(c.request(&get("/.well-known/host-meta")).status, 200);
}

/// A request that is not complete within `--http-request-timeout` gets 408 (RFC 9110
/// §15.5.9) and the connection closes; an idle keep-alive connection closes silently after
/// `--http-idle-timeout`.
#[test]
fn rfc9110_15_5_9_request_timeout_and_idle_close() {
    let server = Server::start(&["--http-request-timeout", "1", "--http-idle-timeout", "1"]);
    let addr = server.http.unwrap();
    let mut c = Http::connect(addr);
    c.send(b"GET /.well-known/host-meta HTTP/1.1\r\nHost: loc");
    let r = c.recv_response(false);
    assert_eq!(r.status, 408);
    c.expect_closed();
    // A body that never comes: the same.
    let mut c = Http::connect(addr);
    c.send(b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(c.recv_response(false).status, 408);
    c.expect_closed();
    // Idle after a response: closed without a word.
    let mut c = Http::connect(addr);
    assert_eq!(c.request(&get("/.well-known/host-meta")).status, 200);
    c.expect_closed();
    assert!(c.buf.is_empty(), "{:?}", String::from_utf8_lossy(&c.buf));
}

/// RFC 9110 §10.1.1: a client that expects `100 Continue` gets it before sending its body.
#[test]
fn rfc9110_10_1_1_expect_100_continue() {
    let server = Server::start(&[]);
    let mut c = Http::connect(server.http.unwrap());
    c.send(
        b"POST /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\
          Content-Length: 4\r\n\r\n",
    );
    assert_eq!(c.recv_response(true).status, 100);
    c.send(b"abcd");
    assert_eq!(c.recv_response(false).status, 405);
}

/// CORS: with `--http-cors-origin`, only the listed origins get
/// `Access-Control-Allow-Origin` (in a preflight and in the response), and every response
/// varies on `Origin`; by default any origin may (`*`).
#[test]
fn cors_preflight_and_responses_follow_the_allowed_origins() {
    let server = Server::start(&["--http-cors-origin", "https://app.example"]);
    let mut c = Http::connect(server.http.unwrap());
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
        )
    };
    let ok = c.request(&preflight("https://app.example"));
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        ok.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(ok
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    assert_eq!(ok.header("vary"), Some("Origin"));
    let other = c.request(&preflight("https://evil.example"));
    assert_eq!(other.status, 204);
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-methods"), None);
    let r = c.request(
        "GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\n\r\n",
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let r = c.request(
        "GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);

    let any = Server::start(&[]);
    let mut c = Http::connect(any.http.unwrap());
    let r = c.request(
        "GET /.well-known/host-meta.json HTTP/1.1\r\nHost: localhost\r\nOrigin: https://x.example\r\n\r\n",
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

/// XEP-0156 §3: `/.well-known/host-meta` (XRD) and `host-meta.json` (JRD), the URLs built
/// from `--public-http-url` when set, else from the port's scheme and the request's Host;
/// HEAD gets the head alone.
#[test]
fn xep0156_3_host_meta_documents() {
    let server = Server::start(&[]);
    let mut c = Http::connect(server.http.unwrap());
    let r = c.request(&get("/.well-known/host-meta"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/xrd+xml; charset=utf-8")
    );
    let xrd = r.text();
    assert!(
        xrd.contains("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"),
        "{xrd}"
    );
    let head = c.request("HEAD /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length").unwrap(),
        xrd.len().to_string()
    );
    let r = c.request(&get("/.well-known/host-meta.json"));
    assert!(r.text().starts_with("{\"links\":["), "{}", r.text());
    // A Host that cannot go into a URL is refused.
    let r = c.request("GET /.well-known/host-meta HTTP/1.1\r\nHost: a/b'c\r\n\r\n");
    assert_eq!(r.status, 400);
}

/// The HTTPS port serves the same over TLS with the XMPP certificate (ALPN `http/1.1`).
#[test]
fn https_port_serves_over_tls() {
    let server = Server::start(&[]);
    let config: Arc<rustls::ClientConfig> = tls_config(&server.cert_path(), Some(b"http/1.1"));
    let sock = TcpStream::connect(server.https.unwrap()).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let conn =
        rustls::ClientConnection::new(config, DOMAIN.try_into().unwrap()).expect("TLS client");
    let mut c = Http {
        s: rustls::StreamOwned::new(conn, sock),
        buf: Vec::new(),
    };
    let r = c.request(&get("/.well-known/host-meta.json"));
    assert_eq!(r.status, 200);
    assert_eq!(c.s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = c.request(&get("/elsewhere"));
    assert_eq!(r.status, 404);
    // Plain HTTP on the HTTPS port is a TLS error, not a response.
    let mut plain = Http::connect(server.https.unwrap());
    plain.send(get("/").as_bytes());
    let mut tmp = [0u8; 512];
    let n = plain.s.read(&mut tmp).unwrap_or(0);
    assert!(!tmp[..n].starts_with(b"HTTP/"), "{:?}", &tmp[..n]);
}
