//! A raw server-to-server peer for the s2s tests: one connection either direction, plain or
//! TLS (as client or as server), with a transcript for failure messages; loopback listeners;
//! XEP-0185 dialback keys computed independently of the server's code; small checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xmppd::xml::{self, Element, Frame, Framer, StreamHeader};

use super::{Server, User};

pub const NS_SERVER: &str = "jabber:server";
pub const NS_DB: &str = "jabber:server:dialback";
pub const NS_DB_FEATURES: &str = "urn:xmpp:features:dialback";
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// The dialback feature a peer offers.
pub const DIALBACK_FEATURE: &str =
    "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>";

/// How long to wait for anything expected.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing happens" is watched for.
pub const QUIET: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// A raw s2s peer (either direction, TLS as client or as server)
// ---------------------------------------------------------------------------------------------

/// What a raw peer read.
#[derive(Debug)]
pub enum Ev {
    Header(StreamHeader),
    El(Element, String),
    Close,
    /// The connection ended with a FIN.
    Eof,
    /// The connection ended with a reset (or another read error).
    Reset(String),
}

pub enum Io {
    Plain(TcpStream),
    TlsClient(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    TlsServer(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::TlsClient(t) => t.get_ref(),
            Io::TlsServer(t) => t.get_ref(),
        }
    }

    fn write_flush(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(t) => t.write_all(b).and_then(|_| t.flush()),
            Io::TlsClient(t) => t.write_all(b).and_then(|_| t.flush()),
            Io::TlsServer(t) => t.write_all(b).and_then(|_| t.flush()),
        }
    }

    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(t) => t.read(b),
            Io::TlsClient(t) => t.read(b),
            Io::TlsServer(t) => t.read(b),
        }
    }
}

/// One raw server-to-server connection.
pub struct Peer {
    name: String,
    pub io: Option<Io>,
    pub framer: Framer,
    buf: Vec<u8>,
    /// Everything sent, for failure messages.
    pub sent: String,
    /// Everything received (decrypted), for failure messages.
    pub got: String,
}

impl Peer {
    pub fn new(name: &str, s: TcpStream) -> Peer {
        s.set_nonblocking(false).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        Peer {
            name: name.to_string(),
            io: Some(Io::Plain(s)),
            framer: Framer::new(xml::Limits::default()),
            buf: Vec::new(),
            sent: String::new(),
            got: String::new(),
        }
    }

    pub fn connect(name: &str, addr: SocketAddr) -> Peer {
        Peer::new(
            name,
            TcpStream::connect(addr).expect("connect to the s2s port"),
        )
    }

    /// The exchange so far, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "[{}]\n  sent:     {}\n  received: {}",
            self.name, self.sent, self.got
        )
    }

    pub fn send(&mut self, s: &str) {
        self.sent.push_str(s);
        let r = self.io.as_mut().expect("open").write_flush(s.as_bytes());
        r.unwrap_or_else(|e| panic!("write failed: {e}\n{}", self.transcript()));
    }

    /// Send, ignoring errors (the other side may have closed).
    pub fn send_lossy(&mut self, s: &str) {
        self.sent.push_str(s);
        if let Some(io) = self.io.as_mut() {
            let _ = io.write_flush(s.as_bytes());
        }
    }

    /// The next event, or None after `timeout`.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<Ev> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.framer.next(&self.buf) {
                Ok(Some((frame, used))) => {
                    let ev = match frame {
                        Frame::StreamOpen(h) => Some(Ev::Header(h)),
                        Frame::Element(raw) => {
                            let raw_s = String::from_utf8_lossy(raw).into_owned();
                            let el = xml::parse_element(
                                raw,
                                self.framer.stream_ns(),
                                &xml::Limits::default(),
                            )
                            .unwrap_or_else(|e| {
                                panic!("bad XML {raw_s}: {e}\n{}", self.transcript())
                            });
                            Some(Ev::El(el, raw_s))
                        }
                        Frame::Whitespace => None,
                        Frame::StreamClose => Some(Ev::Close),
                    };
                    self.buf.drain(..used);
                    match ev {
                        Some(ev) => return Some(ev),
                        None => continue,
                    }
                }
                Ok(None) => {}
                Err(e) => panic!("not well-formed: {e}\n{}", self.transcript()),
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let io = self.io.as_mut()?;
            io.tcp().set_read_timeout(Some(deadline - now)).unwrap();
            let mut chunk = [0u8; 16384];
            match io.read(&mut chunk) {
                Ok(0) => return Some(Ev::Eof),
                Ok(n) => {
                    self.got.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Err(e) => return Some(Ev::Reset(e.to_string())),
            }
        }
    }

    pub fn recv(&mut self, what: &str) -> Ev {
        match self.try_recv(WAIT) {
            Some(ev) => ev,
            None => panic!(
                "timed out ({WAIT:?}) waiting for {what}\n{}",
                self.transcript()
            ),
        }
    }

    pub fn recv_header(&mut self, what: &str) -> StreamHeader {
        match self.recv(what) {
            Ev::Header(h) => h,
            other => panic!("expected {what}, got {other:?}\n{}", self.transcript()),
        }
    }

    /// The next element, whatever it is.
    pub fn recv_el(&mut self, what: &str) -> Element {
        match self.recv(what) {
            Ev::El(e, _) => e,
            other => panic!("expected {what}, got {other:?}\n{}", self.transcript()),
        }
    }

    /// The next element, which must satisfy `pred`; `what` says what was expected.
    pub fn expect_el(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        match self.recv(what) {
            Ev::El(e, _) if pred(&e) => e,
            Ev::El(_, raw) => panic!("expected {what}, got {raw}\n{}", self.transcript()),
            other => panic!("expected {what}, got {other:?}\n{}", self.transcript()),
        }
    }

    /// True if the stream header we received declares `prefix` for `uri`.
    pub fn declares(&self, prefix: &str, uri: &str) -> bool {
        self.framer.stream_ns().resolve(prefix) == Some(uri)
    }

    /// A stream error with `condition`, `</stream:stream>` and the end of the connection;
    /// `why` (may be empty) says why it is expected.
    pub fn expect_stream_error(&mut self, condition: &str, why: &str) {
        let (what, ctx) = if why.is_empty() {
            (format!("stream error {condition}"), String::new())
        } else {
            (
                format!("stream error <{condition}/> ({why})"),
                format!("{why}: "),
            )
        };
        loop {
            match self.recv(&what) {
                Ev::Header(_) => continue,
                Ev::El(e, raw) if e.is("error", NS_STREAMS) => {
                    let cond = e
                        .elements()
                        .find(|c| c.ns == NS_STREAM_ERRORS && c.name != "text")
                        .map(|c| c.name.clone());
                    assert_eq!(
                        cond.as_deref(),
                        Some(condition),
                        "{ctx}stream error {raw}\n{}",
                        self.transcript()
                    );
                    break;
                }
                other => panic!("expected {what}, got {other:?}\n{}", self.transcript()),
            }
        }
        match self.recv("</stream:stream> after the stream error") {
            Ev::Close => {}
            other => panic!(
                "expected </stream:stream> after the error, got {other:?}\n{}",
                self.transcript()
            ),
        }
        self.expect_end();
    }

    /// The connection ends (FIN or reset) within the wait.
    pub fn expect_end(&mut self) {
        match self.recv("the end of the connection") {
            Ev::Eof | Ev::Reset(_) => {}
            other => panic!(
                "expected the connection to end, got {other:?}\n{}",
                self.transcript()
            ),
        }
    }

    /// Everything that arrives within `d` (stops at the end of the connection).
    pub fn collect_for(&mut self, d: Duration) -> Vec<Ev> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return out;
            }
            match self.try_recv(deadline - now) {
                None => return out,
                Some(ev @ (Ev::Eof | Ev::Reset(_))) => {
                    out.push(ev);
                    return out;
                }
                Some(ev) => out.push(ev),
            }
        }
    }

    /// Nothing at all arrives within `d`.
    pub fn expect_silence(&mut self, d: Duration, why: &str) {
        let got = self.collect_for(d);
        assert!(
            got.is_empty(),
            "{why}: expected nothing, got {got:?}\n{}",
            self.transcript()
        );
    }

    /// As the Initiating Server: open a stream `from` (if any) → `to` and read the answer
    /// header and (with version 1.0) the features.
    pub fn open<'a>(
        &mut self,
        from: impl Into<Option<&'a str>>,
        to: &str,
    ) -> (StreamHeader, Element) {
        let from = from
            .into()
            .map(|f| format!(" from='{f}'"))
            .unwrap_or_default();
        self.framer.reset();
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' \
             xmlns:stream='{NS_STREAMS}' xmlns:db='{NS_DB}'{from} to='{to}' version='1.0'>"
        ));
        let h = self.recv_header("the server's stream header");
        let f = self.expect_el("the server's stream features", |f| {
            f.is("features", NS_STREAMS)
        });
        (h, f)
    }

    /// As the Initiating Server: STARTTLS with `cfg` (server name `name`), then a new
    /// document.
    pub fn starttls_client(&mut self, cfg: Arc<rustls::ClientConfig>, name: &str) {
        self.send(&format!("<starttls xmlns='{NS_TLS}'/>"));
        self.expect_el("<proceed/>", |p| p.is("proceed", NS_TLS));
        let Some(Io::Plain(tcp)) = self.io.take() else {
            panic!("already TLS")
        };
        let conn =
            rustls::ClientConnection::new(cfg, name.to_string().try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                panic!("TLS handshake (as client): {e}\n{}", self.transcript());
            }
        }
        self.io = Some(Io::TlsClient(Box::new(tls)));
        self.framer.reset();
        self.buf.clear();
    }

    /// STARTTLS as the initiating side, trusting the server's own certificate `cert` for
    /// `name`, then a new document.
    pub fn starttls(&mut self, cert: &Path, name: &str) {
        self.starttls_client(super::tls_config(cert, None), name);
    }

    /// As the Receiving Server of xmppd's connection: read its header, answer with ours (`me`,
    /// id `id`, `xmlns:db` declared if `declare_db`) and `features`.
    pub fn answer_header(
        &mut self,
        me: &str,
        id: &str,
        features: &str,
        declare_db: bool,
    ) -> StreamHeader {
        let h = self.recv_header("xmppd's outgoing stream header");
        let to = h.from.clone().unwrap_or_default();
        let db = if declare_db {
            format!(" xmlns:db='{NS_DB}'")
        } else {
            String::new()
        };
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' \
             xmlns:stream='{NS_STREAMS}'{db} id='{id}' from='{me}' to='{to}' \
             version='1.0'><stream:features>{features}</stream:features>"
        ));
        h
    }

    /// As the Receiving Server of an incoming connection from the server: read its header,
    /// answer with ours (id `id`, from `me`, `xmlns:db` declared) and `features`.
    pub fn accept_stream(&mut self, me: &str, id: &str, features: &str) -> StreamHeader {
        self.answer_header(me, id, features, true)
    }

    /// As the Receiving Server: xmppd's `<starttls/>`, our `<proceed/>`, the TLS handshake as
    /// server, then a new document.
    pub fn accept_starttls(&mut self, cfg: Arc<rustls::ServerConfig>) {
        self.expect_el("xmppd's <starttls/>", |e| e.is("starttls", NS_TLS));
        self.send(&format!("<proceed xmlns='{NS_TLS}'/>"));
        let Some(Io::Plain(tcp)) = self.io.take() else {
            panic!("already TLS")
        };
        let conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                panic!("TLS handshake (as server): {e}\n{}", self.transcript());
            }
        }
        self.io = Some(Io::TlsServer(Box::new(tls)));
        self.framer.reset();
        self.buf.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Loopback ports
// ---------------------------------------------------------------------------------------------

/// A listener on a free loopback port.
pub fn listen() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Accept one connection within `d`.
pub fn accept_within(l: &TcpListener, d: Duration) -> Option<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + d;
    loop {
        match l.accept() {
            Ok((s, _)) => return Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback TCP port nothing listens on.
pub fn closed_tcp_port() -> u16 {
    listen().1
}

/// A loopback UDP port nothing listens on.
pub fn closed_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// Dialback keys (XEP-0185), computed independently of the server's code
// ---------------------------------------------------------------------------------------------

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The server's dialback secret: SHA256("xmppd dialback secret\0" || the data dir's secret).
pub fn dialback_secret(server: &Server) -> Vec<u8> {
    use sha2::Digest;
    let raw = std::fs::read(server.data.join("secret")).expect("the server's secret file");
    let mut h = sha2::Sha256::new();
    h.update(b"xmppd dialback secret\0");
    h.update(&raw);
    h.finalize().to_vec()
}

/// XEP-0185 §3: HMAC-SHA256(hex(SHA256(secret)), receiving ' ' originating ' ' id), hex.
pub fn db_key(secret: &[u8], receiving: &str, originating: &str, id: &str) -> String {
    use hmac::{KeyInit, Mac};
    use sha2::Digest;
    let k = hex(&sha2::Sha256::digest(secret));
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(k.as_bytes()).unwrap();
    m.update(format!("{receiving} {originating} {id}").as_bytes());
    hex(&m.finalize().into_bytes())
}

// ---------------------------------------------------------------------------------------------
// Small checks
// ---------------------------------------------------------------------------------------------

pub fn s2s_addr(s: &Server) -> SocketAddr {
    s.s2s.expect("the server has an s2s port")
}

/// The dialback element `name` in the dialback namespace, with these attributes.
pub fn assert_db(e: &Element, name: &str, from: &str, to: &str, ty: Option<&str>, ctx: &str) {
    assert!(e.is(name, NS_DB), "expected db:{name}, got {e:?}\n{ctx}");
    assert_eq!(e.attr("from"), Some(from), "from of {e:?}\n{ctx}");
    assert_eq!(e.attr("to"), Some(to), "to of {e:?}\n{ctx}");
    assert_eq!(e.attr("type"), ty, "type of {e:?}\n{ctx}");
}

/// True for a message of type error with this id.
pub fn is_bounce(e: &Element, id: &str) -> bool {
    e.name == "message" && e.attr("type") == Some("error") && e.attr("id") == Some(id)
}

// ---------------------------------------------------------------------------------------------
// Two real servers federating
// ---------------------------------------------------------------------------------------------

/// A chat message from a fresh user on `a` to a fresh user on `b` and the reply, each with
/// the sender's full JID as `from`.
pub fn exchange(a: &Server, b: &Server) {
    let body = |e: &Element| e.child("body", "jabber:client").map(|b| b.text());
    let alice = User::new(a, "alice");
    let bob = User::new(b, "bob");
    let mut ca = alice.online(a, "phone");
    let mut cb = bob.online(b, "laptop");
    ca.send(&format!(
        "<message to='{}' type='chat' id='x1'><body>a to b</body></message>",
        bob.jid
    ));
    let (m, _) = cb.recv_until("alice's message (a to b)", |e| e.name == "message");
    assert_eq!(body(&m).as_deref(), Some("a to b"), "{m:?}");
    assert_eq!(m.attr("from"), Some(alice.full("phone").as_str()), "{m:?}");
    cb.send(&format!(
        "<message to='{}' type='chat' id='x2'><body>b to a</body></message>",
        alice.jid
    ));
    let (m, _) = ca.recv_until("bob's reply (b to a)", |e| e.name == "message");
    assert_eq!(body(&m).as_deref(), Some("b to a"), "{m:?}");
    assert_eq!(m.attr("from"), Some(bob.full("laptop").as_str()), "{m:?}");
}

/// The log without terminal colours.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for c in it.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The federation lines of a log, for failure messages.
pub fn s2s_lines(s: &Server) -> String {
    strip_ansi(&s.log())
        .lines()
        .filter(|l| l.contains("s2s") || l.contains("dialback") || l.contains("SASL"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints the last `n` lines of `s`'s log (for a failing test) under `title`.
pub fn eprint_log_tail(title: &str, s: &Server, n: usize) {
    let log = strip_ansi(&s.log());
    let lines: Vec<&str> = log.lines().collect();
    let from = lines.len().saturating_sub(n);
    eprintln!("===== {title} log, last {} lines =====", lines.len() - from);
    for l in &lines[from..] {
        eprintln!("{l}");
    }
}

/// The next event of a fake authoritative server on `events` that satisfies `pred` (those
/// before it are dropped), waiting up to [`WAIT`].
pub fn next_event_where<T: std::fmt::Debug>(
    events: &std::sync::mpsc::Receiver<T>,
    what: &str,
    pred: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return ev,
            Ok(ev) => seen.push(ev),
            Err(_) => panic!("the fake authoritative server never saw {what}; saw {seen:?}"),
        }
    }
}
