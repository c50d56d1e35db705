//! End-to-end tests of BOSH (XEP-0124, checklist BOSH-*) and XMPP over BOSH (XEP-0206,
//! checklist XBOSH-*): a raw HTTP/1.1 client (httparse over std TcpStream, or rustls for
//! HTTPS) POSTs `<body/>` wrappers to `/http-bind` on the real server and asserts what comes
//! back. TCP clients of the harness play the other side of conversations.
//!
//! Each request goes on a fresh TCP connection unless a test says otherwise (BOSH-HTTP-05:
//! the connection manager tolerates that), so concurrent requests of one session are
//! concurrent connections, as a browser makes them.

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use xmppd::xml::{self, Element, StreamNs};

const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const NS_XBOSH: &str = "urn:xmpp:xbosh";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_COMPRESS_FEATURE: &str = "http://jabber.org/features/compress";
const JC: &str = "jabber:client";

/// The largest valid rid (XEP-0124 §14.1).
const MAX_RID: u64 = (1 << 53) - 1;

/// How long a response is waited for (above every `wait` a session here asks for).
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The `wait` of sessions that are not about waiting: output they expect comes well before.
const WAIT: u32 = 10;

/// The terminal binding conditions of XEP-0124 §17.2.
const CONDITIONS: [&str; 13] = [
    "bad-request",
    "host-gone",
    "host-unknown",
    "improper-addressing",
    "internal-server-error",
    "item-not-found",
    "other-request",
    "policy-violation",
    "remote-connection-failed",
    "remote-stream-error",
    "see-other-uri",
    "system-shutdown",
    "undefined-condition",
];

// ---------------------------------------------------------------------------------------------
// HTTP

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// What BOSH tests read off a response (`Resp` is the harness's).
impl Resp {
    /// The `<body/>` wrapper of a 200 response, parsed.
    fn el(&self) -> Element {
        assert_eq!(self.status, 200, "{self:?}: {}", self.text());
        parse_wrapper(&self.text())
    }
}

/// Parses a response's `<body/>` wrapper (namespace declarations of its own only).
fn parse_wrapper(text: &str) -> Element {
    let e = xml::parse_element(text.as_bytes(), &StreamNs::new(""), &xml::Limits::default())
        .unwrap_or_else(|e| panic!("the response is not one XML element ({e}): {text}"));
    assert_eq!(
        (e.name.as_str(), e.ns.as_str()),
        ("body", NS_HTTPBIND),
        "{text}"
    );
    e
}

/// BOSH-HTTP-01/05: HTTP 200, a length (no chunked coding), a content type.
fn check_http(r: &Resp) {
    assert_eq!(r.status, 200, "{r:?}: {}", r.text());
    assert!(r.header("content-length").is_some(), "{:?}", r.headers);
    assert!(r.header("transfer-encoding").is_none(), "{:?}", r.headers);
    assert!(r.header("content-type").is_some(), "{:?}", r.headers);
}

/// A raw HTTP client over a plain or TLS stream.
struct Http {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Http {
    fn send(&mut self, raw: &[u8]) {
        self.s.write_all(raw).unwrap();
        self.s.flush().unwrap();
    }

    /// Reads one response.
    fn recv(&mut self) -> std::io::Result<Resp> {
        loop {
            if let Some(r) = take_http_response(&mut self.buf, false) {
                return Ok(r);
            }
            let mut tmp = [0u8; 8192];
            let k = self.s.read(&mut tmp)?;
            if k == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed before a whole response: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
            self.buf.extend_from_slice(&tmp[..k]);
        }
    }

    fn request(&mut self, raw: &str) -> Resp {
        self.send(raw.as_bytes());
        self.recv().expect("a response")
    }

    /// The server closes the connection without a response.
    fn expect_closed_silently(&mut self) {
        let mut tmp = [0u8; 4096];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("the server did not close the connection: {e}"),
            }
        }
        assert!(
            self.buf.is_empty(),
            "expected no response, got {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// A `POST /http-bind` request carrying `body`.
fn post_raw(body: &str, extra_headers: &str) -> String {
    format!(
        "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

/// The HTTP or HTTPS port of a server.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    fn http(s: &Server) -> Endpoint {
        Endpoint {
            addr: s.http.expect("HTTP port"),
            tls: None,
        }
    }

    fn https(s: &Server) -> Endpoint {
        Endpoint {
            addr: s.https.expect("HTTPS port"),
            tls: Some(tls_config(&s.cert_path(), Some(b"http/1.1"))),
        }
    }

    fn connect(&self) -> Http {
        let sock = TcpStream::connect(self.addr).unwrap();
        sock.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
        sock.set_nodelay(true).unwrap();
        let s: Box<dyn Stream> = match &self.tls {
            None => Box::new(sock),
            Some(cfg) => {
                let conn =
                    rustls::ClientConnection::new(cfg.clone(), DOMAIN.try_into().unwrap()).unwrap();
                Box::new(rustls::StreamOwned::new(conn, sock))
            }
        };
        Http { s, buf: Vec::new() }
    }

    /// POSTs `body` on a fresh connection and reads the response.
    fn post(&self, body: &str) -> Resp {
        self.connect().request(&post_raw(body, ""))
    }

    /// POSTs `body` on a fresh connection now; the response is read on a thread.
    fn fire(&self, body: &str) -> Pending {
        let mut c = self.connect();
        c.send(post_raw(body, "").as_bytes());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(c.recv());
        });
        Pending {
            rx,
            sent: Instant::now(),
        }
    }
}

/// A request whose response is read on a thread.
struct Pending {
    rx: mpsc::Receiver<std::io::Result<Resp>>,
    sent: Instant,
}

impl Pending {
    fn wait(self) -> Resp {
        self.wait_within(HTTP_TIMEOUT).0
    }

    /// The response if it comes within `d` (else the test fails), and how long it took.
    fn wait_within(self, d: Duration) -> (Resp, Duration) {
        match self.rx.recv_timeout(d) {
            Ok(Ok(r)) => (r, self.sent.elapsed()),
            Ok(Err(e)) => panic!("no response: {e}"),
            Err(_) => panic!("no response within {d:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// BOSH

/// A `<body/>` wrapper with `attrs` around `payload`.
fn wrapper(attrs: &str, payload: &str) -> String {
    if payload.is_empty() {
        format!("<body xmlns='{NS_HTTPBIND}' {attrs}/>")
    } else {
        format!("<body xmlns='{NS_HTTPBIND}' {attrs}>{payload}</body>")
    }
}

/// A session-creation request (XEP-0124 §7.1 with XEP-0206's `xmpp:version`).
fn creation(rid: u64, wait: u32, hold: u32, extra: &str) -> String {
    wrapper(
        &format!(
            "rid='{rid}' to='{DOMAIN}' xml:lang='en' wait='{wait}' hold='{hold}' ver='1.6' \
             xmpp:version='1.0' xmlns:xmpp='{NS_XBOSH}' {extra}"
        ),
        "",
    )
}

/// A first rid for a new session (distinct per session, far from 2^53).
fn fresh_rid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1_000_000);
    NEXT.fetch_add(1_000_000, Ordering::SeqCst)
}

/// `Some(condition)` (possibly "") for a `type='terminate'` wrapper.
fn terminal(el: &Element) -> Option<String> {
    (el.attr("type") == Some("terminate"))
        .then(|| el.attr("condition").unwrap_or_default().to_string())
}

/// The response is `<body type='terminate' condition='cond'/>`.
fn assert_terminal(r: &Resp, cond: &str) {
    check_http(r);
    let el = r.el();
    assert_eq!(
        terminal(&el).as_deref(),
        Some(cond),
        "expected terminate/{cond}: {}",
        r.text()
    );
    assert!(CONDITIONS.contains(&cond));
}

/// `hex(SHA-1(s))`.
fn sha1_hex(s: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A key sequence (XEP-0124 §15): K1 = SHA-1(seed), K(n) = SHA-1(K(n-1)); the client uses
/// K(n) as the first `newkey` and then the keys backwards.
fn key_chain(seed: &str, n: usize) -> Vec<String> {
    let mut keys = vec![sha1_hex(seed)];
    while keys.len() < n {
        let k = sha1_hex(keys.last().unwrap());
        keys.push(k);
    }
    keys
}

/// A message stanza in the client namespace.
fn message(to: &str, text: &str) -> String {
    format!("<message xmlns='{JC}' to='{to}' type='chat'><body>{text}</body></message>")
}

/// The text of a message's `<body/>`, in whatever namespace.
fn body_text(e: &Element) -> Option<String> {
    e.elements().find(|c| c.name == "body").map(|b| b.text())
}

fn is_msg(e: &Element, text: &str) -> bool {
    e.name == "message" && body_text(e).as_deref() == Some(text)
}

fn bare_of(jid: &str) -> String {
    jid.split('/').next().unwrap().to_string()
}

/// One BOSH session, from the client's side.
struct Bosh {
    ep: Endpoint,
    sid: String,
    /// The last rid used.
    rid: u64,
    /// Keys still to use (§15), the next one last.
    keys: Vec<String>,
    /// Payload elements received and not consumed yet.
    inbox: VecDeque<Element>,
    /// The bound full JID.
    jid: Option<String>,
    /// The session-creation response.
    created: Element,
}

impl Bosh {
    /// Creates a session (`extra`: more creation attributes).
    fn create(ep: &Endpoint, wait: u32, hold: u32, extra: &str) -> Bosh {
        Bosh::create_at(ep, fresh_rid(), wait, hold, extra)
    }

    fn create_at(ep: &Endpoint, rid: u64, wait: u32, hold: u32, extra: &str) -> Bosh {
        let r = ep.post(&creation(rid, wait, hold, extra));
        check_http(&r);
        let created = r.el();
        assert_eq!(terminal(&created), None, "{}", r.text());
        let sid = created
            .attr("sid")
            .unwrap_or_else(|| panic!("no sid: {}", r.text()))
            .to_string();
        let mut b = Bosh {
            ep: ep.clone(),
            sid,
            rid,
            keys: Vec::new(),
            inbox: VecDeque::new(),
            jid: None,
            created: created.clone(),
        };
        b.inbox.extend(created.elements().cloned());
        b
    }

    /// Creation, SASL PLAIN, restart and bind (XBOSH-03).
    fn login(ep: &Endpoint, user: &User, resource: &str) -> Bosh {
        Bosh::login_with(ep, user, resource, WAIT, 1, "")
    }

    fn login_with(
        ep: &Endpoint,
        user: &User,
        resource: &str,
        wait: u32,
        hold: u32,
        extra: &str,
    ) -> Bosh {
        let mut b = Bosh::create(ep, wait, hold, extra);
        b.authenticate(&user.local, &user.pw);
        b.restart("");
        b.bind(resource);
        b
    }

    fn next_rid(&mut self) -> u64 {
        self.rid += 1;
        self.rid
    }

    /// Request `rid` of this session (with the next key when a key sequence is in use).
    fn body(&mut self, rid: u64, attrs: &str, payload: &str) -> String {
        let key = self
            .keys
            .pop()
            .map(|k| format!(" key='{k}'"))
            .unwrap_or_default();
        wrapper(
            &format!("rid='{rid}' sid='{}'{key} {attrs}", self.sid),
            payload,
        )
    }

    /// The next request, answered (HTTP checked), parsed.
    fn request(&mut self, attrs: &str, payload: &str) -> Element {
        let r = self.request_resp(attrs, payload);
        check_http(&r);
        r.el()
    }

    fn request_resp(&mut self, attrs: &str, payload: &str) -> Resp {
        let rid = self.next_rid();
        let b = self.body(rid, attrs, payload);
        self.ep.post(&b)
    }

    /// The next request on the keep-alive connection `c`.
    fn request_on(&mut self, c: &mut Http, attrs: &str, payload: &str) -> Element {
        let rid = self.next_rid();
        let b = self.body(rid, attrs, payload);
        let r = c.request(&post_raw(&b, ""));
        check_http(&r);
        let el = r.el();
        assert_eq!(terminal(&el), None, "{}", r.text());
        self.inbox.extend(el.elements().cloned());
        el
    }

    /// The next request, sent now, its response read on a thread.
    fn fire(&mut self, attrs: &str, payload: &str) -> Pending {
        let rid = self.next_rid();
        let b = self.body(rid, attrs, payload);
        self.ep.fire(&b)
    }

    /// A normal request: its payload elements go to the inbox.
    fn exchange_attrs(&mut self, attrs: &str, payload: &str) -> Element {
        let el = self.request(attrs, payload);
        assert_eq!(el.attr("type"), None, "the session ended: {el:?}");
        self.inbox.extend(el.elements().cloned());
        el
    }

    fn exchange(&mut self, payload: &str) -> Element {
        self.exchange_attrs("", payload)
    }

    /// The first element of the inbox matching `pred`, polling for more while there is none.
    fn recv_until(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        let deadline = Instant::now() + 2 * TIMEOUT;
        loop {
            if let Some(i) = self.inbox.iter().position(&pred) {
                return self.inbox.remove(i).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "never got {what}; received {:?}",
                self.inbox
            );
            self.exchange("");
        }
    }

    /// Sends `payload` and a ping, and waits for the pong: what the payload caused before it
    /// is in the inbox, and no request is left held.
    fn send(&mut self, payload: &str) {
        let id = next_id("bping");
        let ping = format!(
            "<iq xmlns='{JC}' type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        self.exchange(&format!("{payload}{ping}"));
        let pong = self.recv_until("ping answer", |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str())
        });
        assert_eq!(pong.attr("type"), Some("result"), "{pong:?}");
    }

    fn authenticate(&mut self, user: &str, pw: &str) {
        let cred = b64(format!("\0{user}\0{pw}").as_bytes());
        self.exchange(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{cred}</auth>"
        ));
        let r = self.recv_until("SASL outcome", |e| e.ns == NS_SASL);
        assert_eq!(r.name, "success", "{r:?}");
    }

    /// A stream restart (XBOSH-03) carrying `payload`; returns the new stream features.
    fn restart(&mut self, payload: &str) -> Element {
        // The features of the stream before are stale.
        self.inbox
            .retain(|e| !(e.name == "features" && e.ns == NS_STREAMS));
        self.exchange_attrs(
            &format!("to='{DOMAIN}' xml:lang='en' xmpp:restart='true' xmlns:xmpp='{NS_XBOSH}'"),
            payload,
        );
        self.recv_until("stream features", |e| {
            e.name == "features" && e.ns == NS_STREAMS
        })
    }

    fn bind(&mut self, resource: &str) -> String {
        let id = next_id("bind");
        self.exchange(&format!(
            "<iq xmlns='{JC}' type='set' id='{id}'><bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>"
        ));
        let r = self.recv_until("bind result", |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str())
        });
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        let jid = r
            .child("bind", NS_BIND)
            .and_then(|b| b.child("jid", NS_BIND))
            .map(|j| j.text())
            .expect("bound JID");
        self.jid = Some(jid.clone());
        jid
    }

    fn full(&self) -> String {
        self.jid.clone().expect("bound")
    }

    fn bare(&self) -> String {
        bare_of(&self.full())
    }
}

/// A server that lets the tests use SASL PLAIN over plain HTTP.
fn plain_server(extra: &[&str]) -> Server {
    let mut args = vec!["--allow-plain-without-tls"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The TCP client `b` subscribes to the presence of the BOSH client `a` (who approves), and
/// sees it available.
fn contact_subscribes(a: &mut Bosh, b: &mut Client) {
    let (afull, abare, bbare) = (a.full(), a.bare(), b.bare());
    a.send(&format!("<presence xmlns='{JC}'/>"));
    a.recv_until("own presence", |e| is_presence(e, None, Some(&afull)));
    b.send(&format!("<presence to='{abare}' type='subscribe'/>"));
    a.recv_until("subscription request", |e| {
        is_presence(e, Some("subscribe"), Some(&bbare))
    });
    a.send(&format!(
        "<presence xmlns='{JC}' to='{bbare}' type='subscribed'/>"
    ));
    b.recv_all(&[
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&abare))
        }),
        ("the BOSH client's presence", &|e: &Element| {
            is_presence(e, None, Some(&afull))
        }),
    ]);
}

// ---------------------------------------------------------------------------------------------
// BOSH-HTTP

/// BOSH-HTTP-01/05: every valid request is answered HTTP 200 with one `<body/>`, with a
/// length and no chunked coding, on separate connections per request or on one keep-alive
/// connection.
#[test]
fn bosh_http_01_05_post_answered_200_with_body_wrapper() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let u = User::new(&s, "bhttp");
    // Every request of a whole login on its own connection; `check_http` on each.
    let mut b = Bosh::login(&ep, &u, "r");
    b.send("");
    // Several requests on one keep-alive connection.
    let mut c = ep.connect();
    for _ in 0..3 {
        let id = next_id("ka");
        let el = b.request_on(
            &mut c,
            "",
            &format!(
                "<iq xmlns='{JC}' type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ),
        );
        assert_eq!(el.name, "body");
        b.recv_until("ping answer", |e| e.attr("id") == Some(id.as_str()));
    }
}

/// BOSH-HTTP-02: responses are `text/xml; charset=utf-8` whatever the request's type, or the
/// `content` the client asked for at creation, for the whole session.
#[test]
fn bosh_http_02_content_type_default_and_content_attribute() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    // The request's Content-Type is ignored.
    let mut c = ep.connect();
    let body = creation(fresh_rid(), WAIT, 1, "");
    let r = c.request(&format!(
        "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    check_http(&r);
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    assert!(r.el().attr("sid").is_some(), "{}", r.text());

    // `content` at creation: the creation response and the later ones carry it.
    let rid = fresh_rid();
    let r = ep.post(&creation(
        rid,
        WAIT,
        1,
        "content='application/xml; charset=utf-8'",
    ));
    check_http(&r);
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    let sid = r.el().attr("sid").unwrap().to_string();
    // A pause is answered at once (BOSH-INACT-03).
    let r = ep.post(&wrapper(
        &format!("rid='{}' sid='{sid}' pause='5'", rid + 1),
        "",
    ));
    check_http(&r);
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    // So is a terminal error of that session.
    let r = ep.post(&wrapper(&format!("rid='{}' sid='{sid}'", rid + 50), ""));
    assert_terminal(&r, "item-not-found");
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
}

/// BOSH-HTTP-03/04: a body with comments, processing instructions, a DTD, partial elements,
/// undefined entity references, character data of its own, or more than one `<body/>` gets
/// the terminal condition `bad-request`.
#[test]
fn bosh_http_03_04_malformed_bodies_get_bad_request() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let attrs = format!(
        "rid='{}' to='{DOMAIN}' xml:lang='en' wait='{WAIT}' hold='1' ver='1.6'",
        fresh_rid()
    );
    let ns = format!("xmlns='{NS_HTTPBIND}'");
    let cases = [
        (
            "comment",
            format!("<body {ns} {attrs}><!-- note --></body>"),
        ),
        (
            "comment in a payload",
            format!("<body {ns} {attrs}><message><!-- x --></message></body>"),
        ),
        (
            "processing instruction",
            format!("<?pi data?><body {ns} {attrs}/>"),
        ),
        (
            "processing instruction inside",
            format!("<body {ns} {attrs}><?pi data?></body>"),
        ),
        ("DTD", format!("<!DOCTYPE body><body {ns} {attrs}/>")),
        (
            "partial element",
            format!("<body {ns} {attrs}><message><body>hi</body></body>"),
        ),
        ("unclosed body", format!("<body {ns} {attrs}>")),
        ("truncated tag", format!("<body {ns} {attrs}")),
        (
            "undefined entity",
            format!("<body {ns} {attrs}><message><body>&custom;</body></message></body>"),
        ),
        (
            "text in the wrapper",
            format!("<body {ns} {attrs}>hello</body>"),
        ),
        (
            "text beside a payload",
            format!("<body {ns} {attrs}><presence/>text</body>"),
        ),
        (
            "two bodies",
            format!("<body {ns} {attrs}/><body {ns} {attrs}/>"),
        ),
        ("not XML", "hello".to_string()),
        ("no namespace", format!("<body {attrs}/>")),
        ("another root", format!("<wrapper {ns} {attrs}/>")),
    ];
    for (what, body) in cases {
        let r = ep.post(&body);
        check_http(&r);
        let el = r.el();
        assert_eq!(
            terminal(&el).as_deref(),
            Some("bad-request"),
            "{what}: {body} → {}",
            r.text()
        );
    }
    // The same request, well-formed, with predefined and numeric references, is fine.
    let r = ep.post(&format!(
        "<?xml version='1.0' encoding='UTF-8'?><body {ns} {attrs} from='a&amp;b&#x41;'/>"
    ));
    check_http(&r);
    assert!(r.el().attr("sid").is_some(), "{}", r.text());
}

/// BOSH-HTTP-06: responses to `/http-bind` carry CORS headers for a page on another origin,
/// and the preflight `OPTIONS /http-bind` allows POST with a Content-Type header.
#[test]
fn bosh_http_06_cors_headers_and_preflight() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let mut c = ep.connect();
    let r = c.request(
        "OPTIONS /http-bind HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
    );
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
    assert!(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{r:?}"
    );
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("content-type")),
        "{r:?}"
    );
    let body = creation(fresh_rid(), WAIT, 1, "");
    let r = c.request(&post_raw(&body, "Origin: https://app.example\r\n"));
    check_http(&r);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
    // An error answer too.
    let r = c.request(&post_raw(
        &wrapper(&format!("rid='5' sid='{}'", "0".repeat(34)), ""),
        "Origin: https://app.example\r\n",
    ));
    assert_terminal(&r, "item-not-found");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// BOSH-SESS

/// BOSH-SESS-01: the creation response carries a new, unpredictable `sid`, `wait` at most
/// the requested value and `requests` above `hold`.
#[test]
fn bosh_sess_01_creation_grants_sid_wait_requests() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let mut sids = Vec::new();
    for (wait, hold) in [(45u32, 1u32), (600, 1), (30, 5), (20, 2)] {
        let b = Bosh::create(&ep, wait, hold, "");
        let el = &b.created;
        let num = |name: &str| -> u64 {
            el.attr(name)
                .unwrap_or_else(|| panic!("no {name}: {el:?}"))
                .parse()
                .unwrap()
        };
        assert!(num("wait") <= u64::from(wait), "{el:?}");
        assert!(num("wait") > 0, "{el:?}");
        let granted_hold = el
            .attr("hold")
            .map_or(u64::from(hold), |h| h.parse().unwrap());
        assert!(num("requests") > granted_hold, "{el:?}");
        assert!(b.sid.len() >= 16, "a guessable sid: {}", b.sid);
        sids.push(b.sid);
    }
    let mut unique = sids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sids.len(), "{sids:?}");
}

/// BOSH-SESS-02: the creation response carries `ver` (the lower version), `polling`,
/// `inactivity`, `hold` (≤ requested) and `from`; later responses carry none of these.
#[test]
fn bosh_sess_02_creation_attributes_only_in_creation_response() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let b = Bosh::create(&ep, WAIT, 1, "");
    let el = &b.created;
    assert_eq!(el.attr("ver"), Some("1.6"), "{el:?}");
    assert_eq!(el.attr("from"), Some(DOMAIN), "{el:?}");
    assert_eq!(el.attr("hold"), Some("1"), "{el:?}");
    for a in ["polling", "inactivity"] {
        let v: u64 = el
            .attr(a)
            .unwrap_or_else(|| panic!("no {a}"))
            .parse()
            .unwrap();
        assert!(v > 0, "{el:?}");
    }
    // A client newer than the server gets the server's version.
    let rid = fresh_rid();
    let r = ep.post(&wrapper(
        &format!("rid='{rid}' to='{DOMAIN}' xml:lang='en' wait='{WAIT}' hold='9' ver='1.99'"),
        "",
    ));
    check_http(&r);
    let newer = r.el();
    let ver = newer.attr("ver").expect("ver");
    let (maj, min) = ver.split_once('.').expect("major.minor");
    let (maj, min): (u32, u32) = (maj.parse().unwrap(), min.parse().unwrap());
    assert!(maj == 1 && (6..99).contains(&min), "{ver}");
    let hold: u32 = newer.attr("hold").expect("hold").parse().unwrap();
    assert!(hold <= 9, "{newer:?}");

    // A later response (a pause is answered at once).
    let r = ep.post(&wrapper(
        &format!("rid='{}' sid='{}' pause='5'", b.rid + 1, b.sid),
        "",
    ));
    check_http(&r);
    let later = r.el();
    for a in [
        "sid",
        "wait",
        "requests",
        "hold",
        "polling",
        "inactivity",
        "maxpause",
        "ver",
        "accept",
        "charsets",
    ] {
        assert_eq!(later.attr(a), None, "{a} in {}", r.text());
    }
}

/// BOSH-SESS-03: a creation request without `to` gets `improper-addressing`; a `to` the
/// server does not serve gets `host-unknown`.
#[test]
fn bosh_sess_03_improper_addressing_and_host_unknown() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let r = ep.post(&wrapper(
        &format!(
            "rid='{}' xml:lang='en' wait='{WAIT}' hold='1' ver='1.6'",
            fresh_rid()
        ),
        "",
    ));
    assert_terminal(&r, "improper-addressing");
    let r = ep.post(&wrapper(
        &format!(
            "rid='{}' to='elsewhere.example' xml:lang='en' wait='{WAIT}' hold='1' ver='1.6'",
            fresh_rid()
        ),
        "",
    ));
    assert_terminal(&r, "host-unknown");
}

/// BOSH-SESS-04: a request whose `sid` is unknown gets `item-not-found`.
#[test]
fn bosh_sess_04_unknown_sid_gets_item_not_found() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    // A real session exists; its sid with one digit changed does not.
    let b = Bosh::create(&ep, WAIT, 1, "");
    let mut wrong = b.sid.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    for sid in [wrong.as_str(), "nonsense", &"0".repeat(34), ""] {
        let r = ep.post(&wrapper(&format!("rid='{}' sid='{sid}'", b.rid + 1), ""));
        assert_terminal(&r, "item-not-found");
    }
}

/// BOSH-SESS-05: a client that sent no `ver` gets HTTP error statuses instead of terminal
/// binding conditions (§17.1: 400 bad-request, 403 policy-violation, 404 item-not-found).
#[test]
fn bosh_sess_05_legacy_client_gets_http_status_codes() {
    // A long `polling`, so that "closer than `polling`" holds on a loaded machine too.
    let s = Server::start(&["--bosh-polling", "20"]);
    let ep = Endpoint::http(&s);
    let legacy = |rid: u64, hold: u32| {
        wrapper(
            &format!("rid='{rid}' to='{DOMAIN}' xml:lang='en' wait='{WAIT}' hold='{hold}'"),
            "",
        )
    };
    let rid = fresh_rid();
    let r = ep.post(&legacy(rid, 1));
    check_http(&r);
    let el = r.el();
    let sid = el.attr("sid").expect("sid").to_string();
    assert_eq!(el.attr("ver"), None, "{}", r.text());
    // Beyond the window: 404.
    let r = ep.post(&wrapper(&format!("rid='{}' sid='{sid}'", rid + 10), ""));
    assert_eq!(r.status, 404, "{r:?} {}", r.text());
    // The session is over; its sid stays known for a while as an ended legacy session, so a
    // later request gets 404 too (not a binding condition the client does not speak).
    let r = ep.post(&wrapper(&format!("rid='{}' sid='{sid}'", rid + 1), ""));
    assert_eq!(r.status, 404, "{r:?} {}", r.text());
    // Polling too frequently: 403.
    let rid = fresh_rid();
    let r = ep.post(&legacy(rid, 0));
    let sid = r.el().attr("sid").expect("sid").to_string();
    let r = ep.post(&wrapper(&format!("rid='{}' sid='{sid}'", rid + 1), ""));
    check_http(&r);
    let r = ep.post(&wrapper(&format!("rid='{}' sid='{sid}'", rid + 2), ""));
    assert_eq!(r.status, 403, "{r:?} {}", r.text());
    // A creation request without `to`: a client error status.
    let r = ep.post(&wrapper(
        &format!("rid='{}' xml:lang='en' wait='{WAIT}' hold='1'", fresh_rid()),
        "",
    ));
    assert_eq!(r.status, 400, "{r:?} {}", r.text());
    let r = ep.post(&wrapper(
        &format!(
            "rid='{}' to='elsewhere.example' wait='{WAIT}' hold='1'",
            fresh_rid()
        ),
        "",
    ));
    assert!((400..500).contains(&r.status), "{r:?} {}", r.text());
}

/// BOSH-SESS-06: with `ack='1'` at creation, the creation response acknowledges its rid, and
/// a response to an older request acknowledges the highest rid received.
#[test]
fn bosh_sess_06_ack_in_creation_and_later_responses() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let u = User::new(&s, "back");
    let mut b = Bosh::create(&ep, WAIT, 1, "ack='1'");
    let first = b.rid.to_string();
    assert_eq!(
        b.created.attr("ack"),
        Some(first.as_str()),
        "{:?}",
        b.created
    );
    b.authenticate(&u.local, &u.pw);
    b.restart("");
    b.bind("r");
    // An empty request held, then a ping: the held one is answered with ack = the ping's rid.
    let held = b.fire("", "");
    let id = next_id("p");
    let ping_rid = b.rid + 1;
    let r = b.request(
        "",
        &format!(
            "<iq xmlns='{JC}' type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ),
    );
    let h = held.wait();
    check_http(&h);
    let h = h.el();
    assert_eq!(terminal(&h), None, "{h:?}");
    assert_eq!(h.attr("ack"), Some(ping_rid.to_string().as_str()), "{h:?}");
    // The ping's own response: no ack, or its own rid.
    assert!(
        r.attr("ack").is_none() || r.attr("ack") == Some(ping_rid.to_string().as_str()),
        "{r:?}"
    );
}

/// BOSH-SESS-06 (§9.2): when the client's `ack` shows that a response it was sent long ago
/// did not arrive, the next response carries `report` (that rid) and `time`.
#[test]
fn bosh_sess_06_report_names_a_lost_response() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let mut b = Bosh::create(&ep, 1, 1, "ack='1'");
    let first = b.rid;
    // rid first+1: held for `wait`, answered empty.
    let r = b.fire("", "").wait();
    check_http(&r);
    assert_eq!(r.el().attr("report"), None, "{}", r.text());
    // The client acts as if that response was lost, well after it was sent (the server
    // reports after `wait` plus a few seconds; the XEP leaves the delay to it).
    std::thread::sleep(Duration::from_secs(8));
    let r = b.fire(&format!("ack='{first}'"), "").wait();
    check_http(&r);
    let el = r.el();
    assert_eq!(terminal(&el), None, "{}", r.text());
    assert_eq!(
        el.attr("report"),
        Some((first + 1).to_string().as_str()),
        "{}",
        r.text()
    );
    let time: u64 = el
        .attr("time")
        .unwrap_or_else(|| panic!("no time: {}", r.text()))
        .parse()
        .unwrap();
    assert!(time > 0, "{}", r.text());
}

// ---------------------------------------------------------------------------------------------
// BOSH-HOLD

/// BOSH-HOLD-01: payloads are forwarded in rid order even when the requests arrive out of
/// order: rid N+2 is sent before N+1, yet the recipient gets N+1's message first.
#[test]
fn bosh_hold_01_payloads_forwarded_in_rid_order() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "bho1a"), User::new(&s, "bho1b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login(&ep, &ua, "r");
    let n = a.rid;
    let second = a.body(n + 2, "", &message(&tcp.full(), "second"));
    let first = a.body(n + 1, "", &message(&tcp.full(), "first"));
    a.rid = n + 2;
    let p2 = a.ep.fire(&second);
    // Setting up the scenario only (the assertion holds whatever the arrival order): let the
    // later rid reach the server first.
    std::thread::sleep(Duration::from_millis(300));
    let p1 = a.ep.fire(&first);
    let (m1, _) = tcp.recv_until("a message", |e| e.name == "message");
    let (m2, _) = tcp.recv_until("a message", |e| e.name == "message");
    assert_eq!(body_text(&m1).as_deref(), Some("first"), "{m1:?}");
    assert_eq!(body_text(&m2).as_deref(), Some("second"), "{m2:?}");
    // hold=1: N+1 is answered once N+2 is processed.
    let r = p1.wait();
    check_http(&r);
    assert_eq!(terminal(&r.el()), None, "{}", r.text());
    drop(p2);
}

/// BOSH-HOLD-02/05: a stanza for the client is returned in the held request at once (not
/// after `wait`), and the held requests are answered oldest first.
#[test]
fn bosh_hold_02_05_held_request_gets_stanza_at_once_oldest_first() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "bho2a"), User::new(&s, "bho2b"));
    let mut tcp = ub.online(&s, "tcp");
    // wait=60: an answer within TIMEOUT (10 s) is "at once".
    let mut a = Bosh::login_with(&ep, &ua, "r", 60, 2, "");
    let to = a.full();
    let e1 = a.fire("", "");
    let e2 = a.fire("", "");
    tcp.send(&message(&to, "one"));
    let (r1, _) = e1.wait_within(TIMEOUT);
    check_http(&r1);
    let el1 = r1.el();
    assert!(
        el1.elements().any(|e| is_msg(e, "one")),
        "the oldest request: {}",
        r1.text()
    );
    tcp.send(&message(&to, "two"));
    let (r2, _) = e2.wait_within(TIMEOUT);
    check_http(&r2);
    let el2 = r2.el();
    assert!(
        el2.elements().any(|e| is_msg(e, "two")),
        "the next request: {}",
        r2.text()
    );
    assert!(!el2.elements().any(|e| is_msg(e, "one")), "{}", r2.text());
}

/// BOSH-HOLD-03: with nothing to send, a held request is answered with an empty `<body/>`
/// no later than `wait` seconds.
#[test]
fn bosh_hold_03_held_request_answered_empty_after_wait() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let mut b = Bosh::create(&ep, 2, 1, "");
    assert_eq!(b.created.attr("wait"), Some("2"));
    let (r, took) = b.fire("", "").wait_within(Duration::from_secs(2 + 8));
    check_http(&r);
    let el = r.el();
    assert_eq!(el.attr("type"), None, "{}", r.text());
    assert_eq!(el.elements().count(), 0, "{}", r.text());
    // It was held, not answered at once.
    assert!(took >= Duration::from_secs(1), "answered after {took:?}");
}

/// BOSH-HOLD-04: never more than `hold` requests are held: request hold+1 makes the server
/// answer the oldest at once.
#[test]
fn bosh_hold_04_request_beyond_hold_answers_the_oldest() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "bho4a"), User::new(&s, "bho4b"));
    let mut tcp = ub.online(&s, "tcp");
    for hold in [1u32, 2] {
        // wait=60: an answer within TIMEOUT (10 s) is "at once".
        let mut a = Bosh::login_with(&ep, &ua, &format!("h{hold}"), 60, hold, "");
        let mut held: Vec<Pending> = (0..hold).map(|_| a.fire("", "")).collect();
        // The next request carries a payload (a client with data to send, §8), which gives
        // the server nothing to answer with.
        let text = format!("hold {hold}");
        let last = a.fire("", &message(&tcp.full(), &text));
        tcp.recv_until("the message", |e| is_msg(e, &text));
        let (r, _) = held.remove(0).wait_within(TIMEOUT);
        check_http(&r);
        let el = r.el();
        assert_eq!(el.attr("type"), None, "{}", r.text());
        drop((held, last));
    }
}

// ---------------------------------------------------------------------------------------------
// BOSH-RID

/// BOSH-RID-01: a rid beyond the window (last rid + `requests`) ends the session with
/// `item-not-found`.
#[test]
fn bosh_rid_01_beyond_window_gets_item_not_found() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let b = Bosh::create(&ep, WAIT, 1, "");
    let requests: u64 = b.created.attr("requests").unwrap().parse().unwrap();
    let r = ep.post(&wrapper(
        &format!("rid='{}' sid='{}'", b.rid + requests + 1, b.sid),
        "",
    ));
    assert_terminal(&r, "item-not-found");
    // The session is over.
    let r = ep.post(&wrapper(
        &format!("rid='{}' sid='{}'", b.rid + 1, b.sid),
        "",
    ));
    assert_terminal(&r, "item-not-found");
}

/// BOSH-RID-02: a request repeating an answered rid gets the same response again, and its
/// payload is not processed twice.
#[test]
fn bosh_rid_02_replay_returns_identical_cached_response() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "brid2a"), User::new(&s, "brid2b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login(&ep, &ua, "r");
    let rid = a.next_rid();
    let body = a.body(
        rid,
        "",
        &format!(
            "{}<iq xmlns='{JC}' type='get' id='replay1' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>",
            message(&tcp.full(), "once")
        ),
    );
    let first = ep.post(&body);
    check_http(&first);
    assert!(
        first
            .el()
            .elements()
            .any(|e| e.attr("id") == Some("replay1")),
        "{}",
        first.text()
    );
    let again = ep.post(&body);
    check_http(&again);
    assert_eq!(again.text(), first.text());
    // The session goes on; the message was delivered once.
    a.send(&message(&tcp.full(), "after"));
    let (m, _) = tcp.recv_until("a message", |e| e.name == "message");
    assert_eq!(body_text(&m).as_deref(), Some("once"));
    let (m, _) = tcp.recv_until("a message", |e| e.name == "message");
    assert_eq!(body_text(&m).as_deref(), Some("after"));
}

/// BOSH-RID-03: a repeated rid still held makes the server answer the older request at once
/// with a recoverable `type='error'`, and hold the new one in its place.
#[test]
fn bosh_rid_03_repeated_pending_rid_older_gets_error() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "brid3a"), User::new(&s, "brid3b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login_with(&ep, &ua, "r", 60, 1, "");
    let rid = a.next_rid();
    let body = a.body(rid, "", &message(&tcp.full(), "m1"));
    let older = ep.fire(&body);
    // The recipient has it: the request was processed and is held.
    tcp.recv_until("m1", |e| is_msg(e, "m1"));
    let newer = ep.fire(&body);
    let (r, _) = older.wait_within(TIMEOUT);
    check_http(&r);
    assert_eq!(r.el().attr("type"), Some("error"), "{}", r.text());
    // The next request releases the newer one (hold=1), normally answered.
    let next = a.fire("", &message(&tcp.full(), "m2"));
    let (r, _) = newer.wait_within(TIMEOUT);
    check_http(&r);
    assert_eq!(r.el().attr("type"), None, "{}", r.text());
    // m1 was not forwarded twice.
    let (m, _) = tcp.recv_until("a message", |e| e.name == "message");
    assert_eq!(body_text(&m).as_deref(), Some("m2"));
    drop(next);
}

/// BOSH-RID-04 (and RID-02's buffer of `requests` responses): the last `requests` responses
/// are replayed; an older one is no longer buffered and ends the session with
/// `item-not-found`.
#[test]
fn bosh_rid_04_replay_no_longer_buffered_gets_item_not_found() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let ua = User::new(&s, "brid4");
    let mut a = Bosh::login(&ep, &ua, "r");
    let requests: u64 = a.created.attr("requests").unwrap().parse().unwrap();
    let mut sent = Vec::new();
    for _ in 0..requests + 1 {
        let rid = a.next_rid();
        let id = next_id("r4");
        let body = a.body(
            rid,
            "",
            &format!(
                "<iq xmlns='{JC}' type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ),
        );
        let r = ep.post(&body);
        check_http(&r);
        assert!(
            r.el().elements().any(|e| e.attr("id") == Some(id.as_str())),
            "{}",
            r.text()
        );
        sent.push((body, r.text()));
    }
    // The newest `requests` responses are buffered.
    for (body, text) in sent.iter().skip(1).rev() {
        let r = ep.post(body);
        check_http(&r);
        assert_eq!(&r.text(), text);
    }
    let r = ep.post(&sent[0].0);
    assert_terminal(&r, "item-not-found");
}

/// BOSH-RID-06: rids up to 2^53-1 are integers: a session whose rids reach 2^53-1 works, and
/// `ack` echoes them exactly.
#[test]
fn bosh_rid_06_rids_up_to_2_pow_53_minus_1() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let u = User::new(&s, "brid6");
    let start = MAX_RID - 12;
    let mut b = Bosh::create_at(&ep, start, WAIT, 1, "ack='1'");
    assert_eq!(b.created.attr("ack"), Some(start.to_string().as_str()));
    b.authenticate(&u.local, &u.pw);
    b.restart("");
    b.bind("r");
    while b.rid < MAX_RID - 1 {
        b.send("");
    }
    assert_eq!(b.rid, MAX_RID - 1);
    let body = b.body(
        MAX_RID,
        "",
        &format!(
            "<iq xmlns='{JC}' type='get' id='last' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ),
    );
    let r = ep.post(&body);
    check_http(&r);
    let el = r.el();
    assert!(
        el.elements().any(|e| e.attr("id") == Some("last")),
        "{}",
        r.text()
    );
    let replay = ep.post(&body);
    assert_eq!(replay.text(), r.text());
}

/// BOSH-RID-05: the response to a pause request is not buffered for replay: repeating its
/// rid is a repeat whose response is gone (BOSH-RID-04, `item-not-found`).
#[test]
fn bosh_rid_05_pause_response_not_replayed() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let mut b = Bosh::create(&ep, WAIT, 1, "");
    let rid = b.next_rid();
    let body = b.body(rid, "pause='30'", "");
    let r = ep.post(&body);
    check_http(&r);
    assert_eq!(terminal(&r.el()), None, "{}", r.text());
    let r = ep.post(&body);
    assert_terminal(&r, "item-not-found");
}

// ---------------------------------------------------------------------------------------------
// BOSH-INACT, BOSH-POLL

/// BOSH-INACT-01: no request within `inactivity` seconds after all were answered ends the
/// session (the contact sees the client go unavailable); its sid is then unknown.
#[test]
fn bosh_inact_01_inactive_session_terminated() {
    let s = plain_server(&["--bosh-inactivity", "4", "--bosh-polling", "1"]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "binact1a"), User::new(&s, "binact1b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login(&ep, &ua, "r");
    assert_eq!(a.created.attr("inactivity"), Some("4"));
    contact_subscribes(&mut a, &mut tcp);
    // No more requests.
    let afull = a.full();
    tcp.recv_until("unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&afull))
    });
    let r = ep.post(&a.body(a.rid + 1, "", ""));
    assert_terminal(&r, "item-not-found");
}

/// BOSH-INACT-03: `pause` answers every held request at once, without payloads, and the
/// session survives the longer silence; after the next request the normal inactivity applies
/// again.
#[test]
fn bosh_inact_03_pause_answers_held_and_extends_inactivity() {
    let s = plain_server(&[
        "--bosh-inactivity",
        "4",
        "--bosh-polling",
        "1",
        "--bosh-max-pause",
        "20",
    ]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "binact3a"), User::new(&s, "binact3b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login_with(&ep, &ua, "r", 60, 1, "");
    assert_eq!(a.created.attr("maxpause"), Some("20"));
    contact_subscribes(&mut a, &mut tcp);
    let afull = a.full();
    let held = a.fire("", "");
    // The pause request carries a message to the client itself: it comes after the pause.
    let pause = a.fire("pause='15'", &message(&afull, "later"));
    for p in [held, pause] {
        let (r, _) = p.wait_within(TIMEOUT);
        check_http(&r);
        let el = r.el();
        assert_eq!(terminal(&el), None, "{}", r.text());
        assert_eq!(el.elements().count(), 0, "a payload: {}", r.text());
    }
    // Longer than `inactivity`, shorter than the pause.
    let seen = tcp.collect_for(Duration::from_secs(6));
    assert!(
        !seen
            .iter()
            .any(|e| is_presence(e, Some("unavailable"), Some(&afull))),
        "the session ended during its pause: {seen:?}"
    );
    a.recv_until("the message sent with the pause", |e| is_msg(e, "later"));
    // Inactivity is back to 4 s.
    tcp.recv_until("unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&afull))
    });
}

/// BOSH-POLL-01 (and POLL-04): a polling session (hold=0) gets an `inactivity` above
/// `polling`; two empty requests closer than `polling` when the first answer was empty end it
/// with `policy-violation`; requests `polling` seconds apart are fine.
#[test]
fn bosh_poll_01_04_too_frequent_empty_polls_policy_violation() {
    // A long `polling`, so that "closer than `polling`" holds on a loaded machine too.
    let s = Server::start(&["--bosh-polling", "20"]);
    let ep = Endpoint::http(&s);
    let mut b = Bosh::create(&ep, WAIT, 0, "");
    let el = &b.created;
    let polling: u64 = el.attr("polling").expect("polling").parse().unwrap();
    let inactivity: u64 = el.attr("inactivity").expect("inactivity").parse().unwrap();
    assert!(inactivity > polling, "{el:?}");
    let r = b.request_resp("", "");
    check_http(&r);
    assert_eq!(terminal(&r.el()), None, "{}", r.text());
    let r = b.request_resp("", "");
    assert_terminal(&r, "policy-violation");

    // Polls `polling` seconds apart are fine.
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let mut b = Bosh::create(&ep, WAIT, 0, "");
    let polling: u64 = b.created.attr("polling").unwrap().parse().unwrap();
    let r = b.request_resp("", "");
    assert_eq!(terminal(&r.el()), None, "{}", r.text());
    std::thread::sleep(Duration::from_millis(polling * 1000 + 500));
    let r = b.request_resp("", "");
    check_http(&r);
    assert_eq!(terminal(&r.el()), None, "{}", r.text());
}

/// BOSH-POLL-01 (§12: the period is between the two requests): in a long-polling session, a
/// request held for `wait` seconds (longer than `polling`) and answered empty is followed at
/// once by the next empty request, as every client does; that is not polling too
/// frequently.
#[test]
fn bosh_poll_01_long_poll_rerequest_after_wait_is_not_too_frequent() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let mut b = Bosh::create(&ep, 3, 1, "");
    let polling: u64 = b.created.attr("polling").unwrap().parse().unwrap();
    assert!(polling < 3, "polling {polling}");
    let r = b.fire("", "").wait();
    check_http(&r);
    let el = r.el();
    assert_eq!(el.attr("type"), None, "{}", r.text());
    // The requests are `wait` seconds apart.
    let r = b.fire("", "").wait();
    check_http(&r);
    assert_eq!(terminal(&r.el()), None, "{}", r.text());
}

/// BOSH-POLL-03: with `--bosh-polling 0` the creation response announces no `polling`, and
/// empty polls as frequent as the client likes are fine.
#[test]
fn bosh_poll_03_no_polling_announced_no_limit() {
    let s = Server::start(&["--bosh-polling", "0"]);
    let ep = Endpoint::http(&s);
    let mut b = Bosh::create(&ep, WAIT, 0, "");
    assert_eq!(b.created.attr("polling"), None, "{:?}", b.created);
    for _ in 0..4 {
        let r = b.request_resp("", "");
        check_http(&r);
        assert_eq!(terminal(&r.el()), None, "{}", r.text());
    }
}

/// BOSH-POLL-02: more than `requests` simultaneous unanswered requests end the session with
/// `policy-violation`.
#[test]
fn bosh_poll_02_too_many_simultaneous_requests_policy_violation() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "bpoll2a"), User::new(&s, "bpoll2b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login_with(&ep, &ua, "r", 60, 1, "");
    assert_eq!(a.created.attr("requests"), Some("2"));
    let n = a.rid;
    // N+1 held (processed: its message arrives), N+3 waiting for N+2: two unanswered.
    let p1 = ep.fire(&a.body(n + 1, "", &message(&tcp.full(), "held")));
    tcp.recv_until("held", |e| is_msg(e, "held"));
    let p3 = ep.fire(&a.body(n + 3, "", ""));
    // Setting up the scenario only: N+3 reaches the server before N+2.
    std::thread::sleep(Duration::from_millis(1000));
    let r = ep.post(&a.body(n + 2, "", &message(&tcp.full(), "third")));
    assert_terminal(&r, "policy-violation");
    drop((p1, p3));
}

// ---------------------------------------------------------------------------------------------
// BOSH-TERM, BOSH-ERR, BOSH-SEC

/// BOSH-TERM-01/02: `type='terminate'` with an unavailable presence: HTTP 200 with
/// `<body type='terminate'/>`, the contact sees the client go unavailable, and the sid is
/// invalid afterwards.
#[test]
fn bosh_term_01_02_terminate_with_unavailable_presence() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "bterma"), User::new(&s, "btermb"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login_with(&ep, &ua, "r", 60, 1, "");
    contact_subscribes(&mut a, &mut tcp);
    let afull = a.full();
    let held = a.fire("", "");
    let term = a.fire(
        "type='terminate'",
        &format!("<presence xmlns='{JC}' type='unavailable'><status>bye</status></presence>"),
    );
    let (rh, _) = held.wait_within(TIMEOUT);
    let (rt, _) = term.wait_within(TIMEOUT);
    check_http(&rh);
    check_http(&rt);
    let (eh, et) = (rh.el(), rt.el());
    assert!(
        terminal(&eh).as_deref() == Some("") || terminal(&et).as_deref() == Some(""),
        "no <body type='terminate'/>: {} / {}",
        rh.text(),
        rt.text()
    );
    let (p, _) = tcp.recv_until("unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&afull))
    });
    assert_eq!(status_of(&p).as_deref(), Some("bye"), "{p:?}");
    let r = ep.post(&a.body(a.rid + 1, "", ""));
    assert_terminal(&r, "item-not-found");
}

/// BOSH-ERR-01: fatal errors are `<body type='terminate' condition='…'/>` with a condition of
/// §17.2.
#[test]
fn bosh_err_01_terminal_conditions() {
    let s = Server::start(&[]);
    let ep = Endpoint::http(&s);
    let cases = [
        (
            format!("<body rid='1' to='{DOMAIN}' wait='5' hold='1'/>"),
            "bad-request",
        ),
        (
            wrapper(
                &format!(
                    "rid='{}' to='nope.example' wait='5' hold='1' ver='1.6'",
                    fresh_rid()
                ),
                "",
            ),
            "host-unknown",
        ),
        (
            wrapper(
                &format!("rid='{}' wait='5' hold='1' ver='1.6'", fresh_rid()),
                "",
            ),
            "improper-addressing",
        ),
        (
            wrapper(&format!("rid='7' sid='{}'", "1".repeat(34)), ""),
            "item-not-found",
        ),
    ];
    for (body, cond) in cases {
        let r = ep.post(&body);
        assert_terminal(&r, cond);
        assert_eq!(r.el().elements().count(), 0, "{}", r.text());
    }
}

/// BOSH-ERR-02: a recoverable error (`type='error'`: here a request that waited `wait` for
/// an earlier rid that never came) lets the client resend the unanswered bodies, which are
/// then processed normally and in order.
#[test]
fn bosh_err_02_recoverable_error_then_resend_is_processed() {
    // `wait` is short here: no polling limit, which is not what this is about (an empty answer
    // after `wait` followed at once by the next poll must not be refused; see
    // bosh_poll_01_long_poll_rerequest_after_wait_is_not_too_frequent).
    let s = plain_server(&["--bosh-polling", "0"]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "berr2a"), User::new(&s, "berr2b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login_with(&ep, &ua, "r", 2, 1, "");
    let n = a.rid;
    let first = a.body(n + 1, "", &message(&tcp.full(), "first"));
    let second = a.body(n + 2, "", &message(&tcp.full(), "second"));
    a.rid = n + 2;
    // N+1 is "lost": N+2 waits for it, then gets a recoverable error.
    let r = ep.fire(&second).wait();
    check_http(&r);
    assert_eq!(r.el().attr("type"), Some("error"), "{}", r.text());
    // The client resends both.
    let p1 = ep.fire(&first);
    let p2 = ep.fire(&second);
    let (m1, _) = tcp.recv_until("a message", |e| e.name == "message");
    let (m2, _) = tcp.recv_until("a message", |e| e.name == "message");
    assert_eq!(body_text(&m1).as_deref(), Some("first"));
    assert_eq!(body_text(&m2).as_deref(), Some("second"));
    for p in [p1, p2] {
        let r = p.wait();
        check_http(&r);
        assert_eq!(r.el().attr("type"), None, "{}", r.text());
    }
}

/// BOSH-SEC-01: a request over plain HTTP for a session created over HTTPS has its
/// connection closed without an answer, and the session goes on over HTTPS.
#[test]
fn bosh_sec_01_plain_http_request_for_https_session_is_dropped() {
    let s = Server::start(&[]);
    let https = Endpoint::https(&s);
    let u = User::new(&s, "bsec1");
    let mut a = Bosh::login(&https, &u, "r");
    a.send("");
    let id = next_id("sec");
    let ping = format!(
        "<iq xmlns='{JC}' type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
    let body = a.body(a.rid + 1, "", &ping);
    let mut plain = Endpoint::http(&s).connect();
    plain.send(post_raw(&body, "").as_bytes());
    plain.expect_closed_silently();
    // The same request over HTTPS is processed.
    let r = https.post(&body);
    check_http(&r);
    a.rid += 1;
    a.inbox.extend(r.el().elements().cloned());
    a.recv_until("ping answer", |e| e.attr("id") == Some(id.as_str()));
}

/// BOSH-SEC-02: with key sequencing (§15), each request's key must hash to the previous
/// one; a wrong key, or none once a sequence is in use, is not processed and ends the session
/// with `item-not-found`. A new sequence (`newkey` beside the last key) continues it.
#[test]
fn bosh_sec_02_key_sequencing() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let u = User::new(&s, "bsec2");
    let chain = key_chain("first seed", 40);
    let mut a = Bosh::create(&ep, WAIT, 1, &format!("newkey='{}'", chain[39]));
    a.keys = chain[..39].to_vec();
    a.authenticate(&u.local, &u.pw);
    a.restart("");
    a.bind("r");
    a.send("");
    // A new sequence: the last key of this one with the first newkey of the next.
    let chain2 = key_chain("second seed", 40);
    a.exchange_attrs(&format!("newkey='{}'", chain2[39]), "");
    a.keys = chain2[..39].to_vec();
    a.send("");
    // A wrong key.
    a.keys.push(sha1_hex("not in the sequence"));
    let r = a.request_resp("", "");
    assert_terminal(&r, "item-not-found");
    let r = a.request_resp("", "");
    assert_terminal(&r, "item-not-found");

    // No key although a sequence is in use.
    let chain = key_chain("third seed", 5);
    let mut b = Bosh::create(&ep, WAIT, 1, &format!("newkey='{}'", chain[4]));
    let r = b.request_resp("", "");
    assert_terminal(&r, "item-not-found");
}

/// BOSH-MULTI-01: multiple streams are not offered (no `stream` attribute at creation), so a
/// body carrying only `to` is a normal empty request: held, and answered with what arrives.
#[test]
fn bosh_multi_01_to_only_empty_body_is_a_normal_request() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "bmulti1a"), User::new(&s, "bmulti1b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login_with(&ep, &ua, "r", 60, 1, "");
    assert_eq!(a.created.attr("stream"), None, "{:?}", a.created);
    let held = a.fire(&format!("to='{DOMAIN}'"), "");
    tcp.send(&message(&a.full(), "for the held request"));
    let (r, _) = held.wait_within(TIMEOUT);
    check_http(&r);
    let el = r.el();
    assert_eq!(terminal(&el), None, "{}", r.text());
    assert_eq!(el.attr("stream"), None, "{}", r.text());
    assert!(
        el.elements().any(|e| is_msg(e, "for the held request")),
        "{}",
        r.text()
    );
}

// ---------------------------------------------------------------------------------------------
// XBOSH

/// XBOSH-01/02/03/07: the creation response carries `xmpp:version='1.0'`,
/// `xmpp:restartlogic='true'` and the stream features (with `xmlns:stream` declared), without
/// STARTTLS or stream compression; after SASL, a restart returns features with `<bind/>`.
#[test]
fn xbosh_01_02_03_07_creation_features_restart_and_bind() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let u = User::new(&s, "xb1");
    let rid = fresh_rid();
    let r = ep.post(&creation(rid, WAIT, 1, ""));
    check_http(&r);
    let text = r.text();
    let el = r.el();
    assert_eq!(
        el.attr(&format!("{{{NS_XBOSH}}}version")),
        Some("1.0"),
        "{text}"
    );
    assert_eq!(
        el.attr(&format!("{{{NS_XBOSH}}}restartlogic")),
        Some("true"),
        "{text}"
    );
    assert!(
        text.contains(&format!("xmlns:stream='{NS_STREAMS}'"))
            || text.contains(&format!("xmlns:stream=\"{NS_STREAMS}\"")),
        "{text}"
    );
    let features = el
        .child("features", NS_STREAMS)
        .unwrap_or_else(|| panic!("no stream features: {text}"));
    assert!(features.child("mechanisms", NS_SASL).is_some(), "{text}");
    assert!(features.child("starttls", NS_TLS).is_none(), "{text}");
    assert!(
        features.child("compression", NS_COMPRESS_FEATURE).is_none(),
        "{text}"
    );

    let mut b = Bosh::create(&ep, WAIT, 1, "");
    b.authenticate(&u.local, &u.pw);
    let f = b.restart("");
    assert!(f.child("bind", NS_BIND).is_some(), "{f:?}");
    assert!(f.child("mechanisms", NS_SASL).is_none(), "{f:?}");
    assert!(f.child("starttls", NS_TLS).is_none(), "{f:?}");
    let jid = b.bind("res");
    assert_eq!(jid, format!("{}/res", u.jid));

    // Without --allow-plain-without-tls, plain HTTP offers no STARTTLS either.
    let s = Server::start(&[]);
    let r = Endpoint::http(&s).post(&creation(fresh_rid(), WAIT, 1, ""));
    let el = r.el();
    let features = el.child("features", NS_STREAMS).expect("features");
    assert!(features.child("starttls", NS_TLS).is_none(), "{}", r.text());
}

/// XBOSH-04: a stanza inside a restart request is ignored.
#[test]
fn xbosh_04_stanza_in_restart_is_ignored() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "xb4a"), User::new(&s, "xb4b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::create(&ep, WAIT, 1, "");
    a.authenticate(&ua.local, &ua.pw);
    let f = a.restart(&message(&tcp.full(), "leak"));
    assert!(f.child("bind", NS_BIND).is_some(), "{f:?}");
    a.bind("r");
    a.send(&message(&tcp.full(), "after"));
    let (m, _) = tcp.recv_until("a message", |e| e.name == "message");
    assert_eq!(body_text(&m).as_deref(), Some("after"), "{m:?}");
}

/// XBOSH-05: session IQ, roster, presence and messages over BOSH behave as over TCP.
#[test]
fn xbosh_05_session_roster_presence_messages() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "xb5a"), User::new(&s, "xb5b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login(&ep, &ua, "r");
    a.exchange(&format!(
        "<iq xmlns='{JC}' type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
    ));
    let r = a.recv_until("session result", |e| e.attr("id") == Some("sess"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    contact_subscribes(&mut a, &mut tcp);
    a.exchange(&format!(
        "<iq xmlns='{JC}' type='get' id='roster'><query xmlns='{NS_ROSTER}'/></iq>"
    ));
    let r = a.recv_until("roster result", |e| e.attr("id") == Some("roster"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let items: Vec<&Element> = r
        .child("query", NS_ROSTER)
        .expect("query")
        .elements()
        .collect();
    let b_item = items
        .iter()
        .find(|i| i.attr("jid") == Some(tcp.bare().as_str()))
        .unwrap_or_else(|| panic!("{items:?}"));
    assert_eq!(b_item.attr("subscription"), Some("from"), "{b_item:?}");
    // Messages both ways.
    tcp.send(&message(&a.bare(), "to bosh"));
    let m = a.recv_until("message", |e| is_msg(e, "to bosh"));
    assert_eq!(m.attr("from"), Some(tcp.full().as_str()));
    a.send(&message(&tcp.full(), "to tcp"));
    let (m, _) = tcp.recv_until("message", |e| e.name == "message");
    assert_eq!(body_text(&m).as_deref(), Some("to tcp"));
    assert_eq!(m.attr("from"), Some(a.full().as_str()));
    // A presence update reaches the contact.
    a.send(&format!(
        "<presence xmlns='{JC}'><show>away</show></presence>"
    ));
    let afull = a.full();
    let (p, _) = tcp.recv_until("presence update", |e| is_presence(e, None, Some(&afull)));
    assert!(
        p.child("show", JC).is_some_and(|s| s.text() == "away"),
        "{p:?}"
    );
}

/// XBOSH-06: a stream error from the server reaches the client as
/// `<body type='terminate' condition='remote-stream-error'>` with the `<stream:error/>`:
/// a login with the same resource over TCP (conflict), and the account's deletion.
#[test]
fn xbosh_06_stream_error_becomes_remote_stream_error() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let ua = User::new(&s, "xb6a");
    let mut a = Bosh::login_with(&ep, &ua, "same", 60, 1, "");
    let held = a.fire("", "");
    let _tcp = ua.login(&s, "same");
    let (r, _) = held.wait_within(TIMEOUT);
    assert_terminal(&r, "remote-stream-error");
    let el = r.el();
    let err = el
        .child("error", NS_STREAMS)
        .unwrap_or_else(|| panic!("no stream error: {}", r.text()));
    assert!(
        err.child("conflict", NS_STREAM_ERRORS).is_some(),
        "{}",
        r.text()
    );
    let r = ep.post(&a.body(a.rid + 1, "", ""));
    assert_terminal(&r, "item-not-found");

    // The account is deleted while the client holds a request.
    let ub = User::new(&s, "xb6b");
    let mut b = Bosh::login_with(&ep, &ub, "r", 60, 1, "");
    b.send("");
    let held = b.fire("", "");
    let out = s.admin(&["deluser", &ub.jid], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (r, _) = held.wait_within(TIMEOUT);
    assert_terminal(&r, "remote-stream-error");
    assert!(r.el().child("error", NS_STREAMS).is_some(), "{}", r.text());
}

/// XBOSH-08: stanzas in a body without a namespace of their own are `jabber:client`; those
/// sent to the client are in `jabber:client` inside the httpbind wrapper too.
#[test]
fn xbosh_08_stanzas_without_namespace_are_jabber_client() {
    let s = plain_server(&[]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "xb8a"), User::new(&s, "xb8b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login(&ep, &ua, "r");
    // No xmlns on the stanzas (the ping too).
    let r = a.request(
        "",
        &format!(
            "<message to='{}' type='chat'><body>bare</body></message>\
             <iq type='get' id='nons' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>",
            tcp.full()
        ),
    );
    a.inbox.extend(r.elements().cloned());
    let pong = a.recv_until("ping answer", |e| e.attr("id") == Some("nons"));
    assert_eq!(pong.attr("type"), Some("result"), "{pong:?}");
    assert_eq!(pong.ns, JC, "{pong:?}");
    let (m, _) = tcp.recv_until("a message", |e| e.name == "message");
    assert_eq!(m.ns, JC);
    assert_eq!(
        m.child("body", JC).map(|b| b.text()).as_deref(),
        Some("bare")
    );
    // Toward the client.
    tcp.send(&message(&a.full(), "back"));
    let m = a.recv_until("a message", |e| e.name == "message");
    assert_eq!(m.ns, JC, "{m:?}");
    assert_eq!(
        m.child("body", JC).map(|b| b.text()).as_deref(),
        Some("back")
    );
}

/// XBOSH-09: stanzas for a BOSH client that is gone (its session timed out): an IQ is
/// answered with an error, and a message is kept offline for the account.
#[test]
fn xbosh_09_stanzas_for_a_client_that_is_gone() {
    let s = plain_server(&["--bosh-inactivity", "4", "--bosh-polling", "1"]);
    let ep = Endpoint::http(&s);
    let (ua, ub) = (User::new(&s, "xb9a"), User::new(&s, "xb9b"));
    let mut tcp = ub.online(&s, "tcp");
    let mut a = Bosh::login(&ep, &ua, "r");
    contact_subscribes(&mut a, &mut tcp);
    let afull = a.full();
    tcp.recv_until("unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&afull))
    });
    tcp.send(&format!(
        "<iq type='get' id='gone' to='{afull}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let (r, _) = tcp.recv_until("IQ answer", |e| e.attr("id") == Some("gone"));
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
    assert_eq!(
        stanza_error(&r).map(|e| e.0).as_deref(),
        Some("service-unavailable"),
        "{r:?}"
    );
    tcp.send(&message(&afull, "while away"));
    tcp.sync();
    // The account's next session gets it.
    let mut again = Bosh::login(&ep, &ua, "r2");
    again.send(&format!("<presence xmlns='{JC}'/>"));
    again.recv_until("the offline message", |e| is_msg(e, "while away"));
}

// ---------------------------------------------------------------------------------------------
// Shards

/// A session created on one shard, whose account lives on the other, works with every
/// request on a fresh connection (so requests land on both shards) and on one keep-alive
/// connection; after termination its sid is unknown wherever the request lands.
#[test]
fn bosh_shards_session_created_away_from_the_account_home_shard() {
    let s = plain_server(&["--shards", "2"]);
    let ep = Endpoint::http(&s);
    let peer = User::new(&s, "bshpeer");
    let mut tcp = peer.online(&s, "tcp");
    for home in 0..2usize {
        let u = User::on_shard(&s, "bsh", home, 2);
        let mut a = None;
        for _ in 0..64 {
            let b = Bosh::create(&ep, WAIT, 1, "");
            let created_on = usize::from_str_radix(&b.sid[..2], 16).expect("hex sid prefix");
            if created_on != home {
                a = Some(b);
                break;
            }
        }
        let mut a = a.expect("no session was created on the other shard");
        a.authenticate(&u.local, &u.pw);
        a.restart("");
        a.bind("r");
        for _ in 0..6 {
            a.send("");
        }
        let mut c = ep.connect();
        for _ in 0..4 {
            let id = next_id("ka");
            a.request_on(
                &mut c,
                "",
                &format!(
                    "<iq xmlns='{JC}' type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
                ),
            );
            a.recv_until("ping answer", |e| e.attr("id") == Some(id.as_str()));
        }
        tcp.send(&message(&a.full(), &format!("hello {home}")));
        let text = format!("hello {home}");
        a.recv_until("message", |e| is_msg(e, &text));
        a.send(&message(&tcp.full(), &format!("reply {home}")));
        let (m, _) = tcp.recv_until("reply", |e| e.name == "message");
        assert_eq!(body_text(&m), Some(format!("reply {home}")));
        let r = a.request("type='terminate'", "");
        assert_eq!(terminal(&r).as_deref(), Some(""), "{r:?}");
        for _ in 0..6 {
            let r = ep.post(&a.body(a.rid + 1, "", ""));
            assert_terminal(&r, "item-not-found");
        }
    }
}

/// A sid that names a shard (its first two hex digits) but does not exist gets
/// `item-not-found`, from whichever shard the request lands on.
#[test]
fn bosh_shards_unknown_sid_of_either_shard_gets_item_not_found() {
    let s = Server::start(&["--shards", "2"]);
    let ep = Endpoint::http(&s);
    for prefix in ["00", "01", "02", "ff"] {
        let sid = format!("{prefix}{}", "ab".repeat(16));
        for _ in 0..6 {
            let r = ep.post(&wrapper(&format!("rid='100' sid='{sid}'"), ""));
            assert_terminal(&r, "item-not-found");
        }
    }
}
