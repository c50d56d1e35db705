//! The client side of BOSH (XEP-0124) for XMPP over BOSH (XEP-0206), plain `http://`: the
//! `<body/>` wrappers of the session creation, restart, payload and terminate requests, the
//! HTTP/1.1 POSTs that carry them, the parsing of the server's responses (`httparse`, the body
//! by its `Content-Length`) and of their `<body/>`, and [`Session`], which decides when a
//! request goes out and on which of the session's two connections.
//!
//! The client keeps one request held by the server at all times (`hold='1'`), so that the
//! server can push stanzas in its response; stanzas go out in the body of a new request on the
//! session's other connection, upon which the server answers the held one (at once, empty if
//! it has nothing) and holds the new one. So a session has at most two requests outstanding
//! (XEP-0124 §7: `requests` = `hold` + 1), one per HTTP/1.1 keep-alive connection, and never
//! pipelines. Stanzas that are sent while both requests are out wait in [`Session::pending`]
//! and go out together in the next request (XEP-0124 §8). A session that only waits for pushes
//! (an idle one) uses one connection: the second is opened when a stanza is sent while the
//! first holds a request.

use std::ops::Range;

use crate::framing::{attr, Frame, Splitter};
use crate::ws::{client_ns_at, CLIENT_NS_ATTR};

/// Set when a server answered a session creation request with 404, 405 or 501: it has no
/// BOSH endpoint at that path (the run is then "not supported", exit status 3).
static NO_ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The HTTP error of a session creation request that says there is no BOSH endpoint
/// (remembered for [`no_endpoint`]), or none.
pub fn missing_endpoint(status: u16, path: &str) -> Option<String> {
    if !matches!(status, 404 | 405 | 501) {
        return None;
    }
    let why = format!("no BOSH endpoint at {path}: HTTP {status} to the session creation request");
    let _ = NO_ENDPOINT.set(why.clone());
    Some(why)
}

/// Why the server has no BOSH endpoint, if a session creation request found so.
pub fn no_endpoint() -> Option<&'static str> {
    NO_ENDPOINT.get().map(String::as_str)
}

/// The `<body/>` namespace (XEP-0124 §4).
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";

/// The XMPP-specific BOSH attributes' namespace (XEP-0206 §3).
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// The first `rid`s are at most this (XEP-0124 §14.1: a client keeps them below 2^53 for the
/// whole session, so it starts well below).
const RID_MAX_START: u64 = 1 << 32;

/// A random start `rid` from `r` (any random number).
pub fn first_rid(r: u64) -> u64 {
    1 + r % (RID_MAX_START - 1)
}

// --------------------------------------------------------------------------------- requests

/// The fixed part of a request head, around the path, host and length.
const HEAD: [&[u8]; 4] = [
    b"POST ",
    b" HTTP/1.1\r\nHost: ",
    b"\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: ",
    b"\r\n\r\n",
];

/// Decimal digits of `n`.
fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Appends an HTTP/1.1 POST to `path` on `host` whose body `f` writes (straight into `out`; the
/// head, whose `Content-Length` is known only then, is put in front of it afterwards).
pub fn post(out: &mut Vec<u8>, path: &str, host: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    f(out);
    let n = out.len() - at;
    let head = HEAD.iter().map(|p| p.len()).sum::<usize>() + path.len() + host.len() + digits(n);
    out.resize(out.len() + head, 0);
    out.copy_within(at..at + n, at + head);
    let mut w = at;
    let mut put = |b: &[u8]| {
        out[w..w + b.len()].copy_from_slice(b);
        w += b.len();
    };
    put(HEAD[0]);
    put(path.as_bytes());
    put(HEAD[1]);
    put(host.as_bytes());
    put(HEAD[2]);
    let mut num = [0u8; 20];
    let d = digits(n);
    let mut v = n;
    for slot in num[..d].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    put(&num[..d]);
    put(HEAD[3]);
}

/// Writes `v` in decimal.
fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut num = [0u8; 20];
    let mut i = num.len();
    loop {
        i -= 1;
        num[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&num[i..]);
}

/// Writes `rid='R'` (with a leading space).
fn put_rid(out: &mut Vec<u8>, rid: u64) {
    out.extend_from_slice(b" rid='");
    put_u64(out, rid);
    out.push(b'\'');
}

/// Writes ` rid='R' sid='S'`.
fn put_rid_sid(out: &mut Vec<u8>, rid: u64, sid: &str) {
    put_rid(out, rid);
    out.extend_from_slice(b" sid='");
    out.extend_from_slice(sid.as_bytes());
    out.push(b'\'');
}

/// The session creation request (XEP-0124 §7.1, XEP-0206 §4): one held request (`hold='1'`)
/// that the server answers after at most `wait` seconds.
pub fn session_body(out: &mut Vec<u8>, rid: u64, domain: &str, wait: u32) {
    out.extend_from_slice(b"<body content='text/xml; charset=utf-8' hold='1'");
    put_rid(out, rid);
    out.extend_from_slice(b" to='");
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(b"' ver='1.6' wait='");
    put_u64(out, u64::from(wait));
    out.extend_from_slice(b"' xml:lang='en' xmpp:version='1.0' xmlns='");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    out.extend_from_slice(b"' xmlns:xmpp='");
    out.extend_from_slice(NS_XBOSH.as_bytes());
    out.extend_from_slice(b"'/>");
}

/// The restart request after SASL success (XEP-0206 §5): empty.
pub fn restart_body(out: &mut Vec<u8>, rid: u64, sid: &str, domain: &str) {
    out.extend_from_slice(b"<body");
    put_rid_sid(out, rid, sid);
    out.extend_from_slice(b" to='");
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(b"' xml:lang='en' xmpp:restart='true' xmlns='");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    out.extend_from_slice(b"' xmlns:xmpp='");
    out.extend_from_slice(NS_XBOSH.as_bytes());
    out.extend_from_slice(b"'/>");
}

/// A request carrying `payload` (zero or more complete elements; XEP-0124 §8); an empty one
/// (only there to be held) when `payload` is empty.
pub fn payload_body(out: &mut Vec<u8>, rid: u64, sid: &str, payload: &[u8]) {
    out.extend_from_slice(b"<body");
    put_rid_sid(out, rid, sid);
    out.extend_from_slice(b" xmlns='");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    if payload.is_empty() {
        out.extend_from_slice(b"'/>");
    } else {
        out.extend_from_slice(b"'>");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"</body>");
    }
}

/// The terminate request (XEP-0124 §13), with `payload` and an unavailable presence.
pub fn terminate_body(out: &mut Vec<u8>, rid: u64, sid: &str, payload: &[u8]) {
    out.extend_from_slice(b"<body");
    put_rid_sid(out, rid, sid);
    out.extend_from_slice(b" type='terminate' xmlns='");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    out.extend_from_slice(b"'>");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"<presence type='unavailable' xmlns='jabber:client'/></body>");
}

/// Appends the one element `f` writes, with `xmlns='jabber:client'` added to a stanza that has
/// no default namespace (XEP-0206 §3: stanzas in a `<body/>` are qualified by `jabber:client`;
/// the `<body/>`'s own default namespace is `httpbind`).
pub fn push_element(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    f(out);
    if let Some(i) = client_ns_at(&out[at..]) {
        let pos = at + i;
        let old = out.len();
        out.extend_from_slice(CLIENT_NS_ATTR);
        out.copy_within(pos..old, pos + CLIENT_NS_ATTR.len());
        out[pos..pos + CLIENT_NS_ATTR.len()].copy_from_slice(CLIENT_NS_ATTR);
    }
}

// -------------------------------------------------------------------------------- responses

/// A complete HTTP response at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Where the body is.
    pub body: Range<usize>,
    /// The server closes the connection after it (`Connection: close`, or HTTP/1.0 without
    /// `keep-alive`).
    pub close: bool,
}

impl Response {
    /// Bytes of the response (head and body).
    pub fn len(&self) -> usize {
        self.body.end
    }
}

/// Parses the HTTP/1.1 response at the front of `buf`: `None` until its head and its
/// `Content-Length` bytes of body are all there. A body over `max` bytes, a chunked body or
/// one without a length (delimited by the close) is an error.
pub fn response(buf: &[u8], max: usize) -> Result<Option<Response>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bosh: bad HTTP response: {e}")),
    };
    let status = r.code.unwrap_or(0);
    let mut len = None;
    let mut close = r.version == Some(0);
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
            len = Some(v.parse::<usize>().map_err(|_| {
                format!(
                    "bosh: bad Content-Length {:?}",
                    String::from_utf8_lossy(h.value)
                )
            })?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "bosh: Transfer-Encoding {} in a response (only Content-Length is read)",
                String::from_utf8_lossy(h.value)
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    let len = match (len, status) {
        (Some(n), _) => n,
        // No body by definition (RFC 9112 §6.3).
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => {
            return Err(format!(
                "bosh: HTTP {status} response without Content-Length"
            ))
        }
    };
    if len > max {
        return Err(format!("bosh: {len}-byte response body over the limit"));
    }
    if buf.len() < head + len {
        return Ok(None);
    }
    Ok(Some(Response {
        status,
        body: head..head + len,
        close,
    }))
}

/// Parses a response's `<body/>`: returns the range of its start tag (for its attributes) and
/// puts the ranges of its child elements (the stanzas, with or without their own
/// `xmlns='jabber:client'`) into `children`, both relative to `body`.
pub fn parse_body(body: &[u8], children: &mut Vec<Range<usize>>) -> Result<Range<usize>, String> {
    children.clear();
    let mut split = Splitter::new();
    let bad = || {
        let n = body.len().min(200);
        format!(
            "bosh: response is not a complete <body/>: {}",
            String::from_utf8_lossy(&body[..n])
        )
    };
    let tag = match split.next(body) {
        Some(Frame::StreamOpen(r)) => r,
        _ => return Err(bad()),
    };
    if crate::framing::name(&body[tag.clone()]) != b"body" {
        return Err(bad());
    }
    if body[..tag.end].ends_with(b"/>") {
        return Ok(tag);
    }
    loop {
        match split.next(body) {
            Some(Frame::Stanza(r)) => children.push(r),
            Some(Frame::StreamClose) => return Ok(tag),
            Some(Frame::StreamOpen(_)) | None => return Err(bad()),
        }
    }
}

/// The error a `<body/>` start tag ends the session with: `type='terminate'` (XEP-0124 §13,
/// §17.2; with a `<stream:error/>` child if `remote-stream-error`, XEP-0206 §3) or the legacy
/// `type='error'`.
pub fn terminated(tag: &[u8], body: &[u8], children: &[Range<usize>]) -> Option<String> {
    let ty = attr(tag, b"type")?;
    if ty != b"terminate" && ty != b"error" {
        return None;
    }
    let cond = attr(tag, b"condition").unwrap_or(b"none");
    let mut msg = format!(
        "bosh: session terminated by the server (type='{}', condition='{}')",
        String::from_utf8_lossy(ty),
        String::from_utf8_lossy(cond)
    );
    if let Some(r) = children.first() {
        let el = &body[r.clone()];
        msg.push_str(": ");
        msg.push_str(&String::from_utf8_lossy(&el[..el.len().min(300)]));
    }
    Some(msg)
}

// ---------------------------------------------------------------------------------- session

/// What a [`Session`] sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The restart request.
    Restart,
    /// [`Session::pending`] (possibly nothing: then only to keep a request held).
    Payload,
}

/// The request bookkeeping of one BOSH session over its two connections (links 0 and 1).
#[derive(Debug)]
pub struct Session {
    /// The `sid` from the session creation response.
    pub sid: Option<Box<str>>,
    /// The next request's `rid`.
    rid: u64,
    /// Stanzas waiting for the next request.
    pub pending: Vec<u8>,
    /// Which links have a request outstanding.
    busy: [bool; 2],
    /// A restart request is due (SASL succeeded).
    pub restart: bool,
}

/// Most bytes [`Session::pending`] keeps allocated once it was sent (a burst's buffer is
/// given back; an idle session keeps none).
const PENDING_KEEP: usize = 16 * 1024;

impl Session {
    /// A session whose creation request (`rid`) goes out on link 0.
    pub fn new(rid: u64) -> Self {
        Self {
            sid: None,
            rid,
            pending: Vec::new(),
            busy: [false; 2],
            restart: false,
        }
    }

    /// Writes the session creation request (on link 0).
    pub fn create(&mut self, out: &mut Vec<u8>, path: &str, host: &str, domain: &str, wait: u32) {
        let rid = self.take_rid(0);
        post(out, path, host, |w| session_body(w, rid, domain, wait));
    }

    fn take_rid(&mut self, link: usize) -> u64 {
        self.busy[link] = true;
        self.rid += 1;
        self.rid - 1
    }

    /// Requests outstanding.
    pub fn outstanding(&self) -> usize {
        self.busy.iter().filter(|b| **b).count()
    }

    /// Whether `link` has a request outstanding.
    pub fn busy(&self, link: usize) -> bool {
        self.busy[link]
    }

    /// The link that the next request goes on, and what it carries, if one is due: a restart,
    /// or pending stanzas, on a link without a request; or an empty request when none is out
    /// (one must always be held). Nothing before the session exists.
    pub fn due(&self) -> Option<(usize, Next)> {
        self.sid.as_ref()?;
        let out = self.outstanding();
        let what = if self.restart {
            Next::Restart
        } else if !self.pending.is_empty() || out == 0 {
            Next::Payload
        } else {
            return None;
        };
        let link = self.busy.iter().position(|b| !b)?;
        Some((link, what))
    }

    /// Writes the request [`Session::due`] said, on `link`.
    pub fn send(
        &mut self,
        link: usize,
        what: Next,
        out: &mut Vec<u8>,
        path: &str,
        host: &str,
        domain: &str,
    ) {
        let rid = self.take_rid(link);
        let sid = self.sid.as_deref().unwrap_or("");
        match what {
            Next::Restart => {
                self.restart = false;
                post(out, path, host, |w| restart_body(w, rid, sid, domain));
            }
            Next::Payload => {
                let p = &self.pending;
                post(out, path, host, |w| payload_body(w, rid, sid, p));
                self.clear_pending();
            }
        }
    }

    /// Writes the terminate request (with the pending stanzas) on a link without a request;
    /// false when there is none (or no session yet).
    pub fn terminate(
        &mut self,
        out: &mut [Option<&mut Vec<u8>>; 2],
        path: &str,
        host: &str,
    ) -> bool {
        if self.sid.is_none() {
            return false;
        }
        let Some(link) = (0..2).find(|&k| !self.busy[k] && out[k].is_some()) else {
            return false;
        };
        let rid = self.take_rid(link);
        let sid = self.sid.as_deref().unwrap_or("");
        let p = &self.pending;
        if let Some(w) = out[link].as_mut() {
            post(w, path, host, |w| terminate_body(w, rid, sid, p));
        }
        self.clear_pending();
        true
    }

    fn clear_pending(&mut self) {
        if self.pending.capacity() > PENDING_KEEP {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
    }

    /// The response to `link`'s request arrived; an error if it had none.
    pub fn answered(&mut self, link: usize) -> Result<(), String> {
        if !self.busy[link] {
            return Err("bosh: a response without a request".into());
        }
        self.busy[link] = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    /// Splits a request written by [`post`] into (request line and headers, body) and checks
    /// its Content-Length.
    fn request_parts(req: &[u8]) -> (Vec<String>, String) {
        let text = s(req);
        let (head, body) = text.split_once("\r\n\r\n").expect("head end");
        let lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
        let len: usize = lines
            .iter()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert_eq!(len, body.len(), "Content-Length matches the body");
        (lines, body.to_string())
    }

    #[test]
    fn post_puts_the_head_in_front_of_the_body() {
        for n in [0usize, 1, 9, 10, 99, 100, 12_345] {
            let mut out = b"earlier".to_vec();
            post(&mut out, "/http-bind", "localhost:5280", |w| {
                w.extend(std::iter::repeat_n(b'x', n))
            });
            assert!(out.starts_with(b"earlier"));
            let (lines, body) = request_parts(&out[7..]);
            assert_eq!(
                lines[..3],
                [
                    "POST /http-bind HTTP/1.1",
                    "Host: localhost:5280",
                    "Content-Type: text/xml; charset=utf-8"
                ]
            );
            assert_eq!(body.len(), n);
        }
    }

    #[test]
    fn xep0206_session_creation_request() {
        let mut out = Vec::new();
        let mut sess = Session::new(1573741820);
        sess.create(&mut out, "/http-bind", "h:1", "example.com", 60);
        let (_, body) = request_parts(&out);
        assert_eq!(
            body,
            "<body content='text/xml; charset=utf-8' hold='1' rid='1573741820' \
             to='example.com' ver='1.6' wait='60' xml:lang='en' xmpp:version='1.0' \
             xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        );
        assert_eq!(sess.outstanding(), 1);
        assert!(sess.busy(0));
        // Nothing more until the sid is known.
        assert_eq!(sess.due(), None);
    }

    #[test]
    fn restart_payload_and_terminate_bodies() {
        let mut o = Vec::new();
        restart_body(&mut o, 7, "s1", "localhost");
        assert_eq!(
            s(&o),
            "<body rid='7' sid='s1' to='localhost' xml:lang='en' xmpp:restart='true' \
             xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        );
        o.clear();
        payload_body(&mut o, 8, "s1", b"");
        assert_eq!(
            s(&o),
            "<body rid='8' sid='s1' xmlns='http://jabber.org/protocol/httpbind'/>"
        );
        o.clear();
        payload_body(&mut o, 9, "s1", b"<presence xmlns='jabber:client'/>");
        assert_eq!(
            s(&o),
            "<body rid='9' sid='s1' xmlns='http://jabber.org/protocol/httpbind'>\
             <presence xmlns='jabber:client'/></body>"
        );
        o.clear();
        terminate_body(&mut o, 10, "s1", b"");
        assert_eq!(
            s(&o),
            "<body rid='10' sid='s1' type='terminate' xmlns='http://jabber.org/protocol/httpbind'>\
             <presence type='unavailable' xmlns='jabber:client'/></body>"
        );
    }

    #[test]
    fn stanzas_are_qualified_by_jabber_client() {
        let mut p = Vec::new();
        push_element(&mut p, |w| {
            w.extend_from_slice(b"<message to='a@b' id='1'><body>x</body></message>")
        });
        push_element(&mut p, |w| {
            w.extend_from_slice(
                b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>",
            )
        });
        push_element(&mut p, |w| {
            w.extend_from_slice(b"<iq xmlns='jabber:client' type='get' id='q'/>")
        });
        assert_eq!(
            s(&p),
            "<message xmlns='jabber:client' to='a@b' id='1'><body>x</body></message>\
             <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>\
             <iq xmlns='jabber:client' type='get' id='q'/>"
        );
    }

    fn http(body: &str, extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn responses_are_complete_only_with_their_whole_body() {
        let body = "<body xmlns='http://jabber.org/protocol/httpbind'/>";
        let one = http(body, "");
        let mut two = one.clone();
        two.extend(http(
            "<body xmlns='http://jabber.org/protocol/httpbind'><message/></body>",
            "Connection: close\r\n",
        ));
        for cut in 0..one.len() {
            assert_eq!(response(&one[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
        let r = response(&two, 1 << 20).unwrap().unwrap();
        assert_eq!((r.status, r.close), (200, false));
        assert_eq!(&two[r.body.clone()], body.as_bytes());
        assert_eq!(r.len(), one.len());
        let r2 = response(&two[r.len()..], 1 << 20).unwrap().unwrap();
        assert!(r2.close);
        assert_eq!(r2.len(), two.len() - one.len());
        // Case-insensitive header names; HTTP/1.0 closes unless keep-alive.
        let lower = b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: Keep-Alive\r\n\r\nab";
        let r = response(lower, 100).unwrap().unwrap();
        assert_eq!(
            (r.body.clone(), r.close),
            (lower.len() - 2..lower.len(), false)
        );
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(response(old, 100).unwrap().unwrap().close);
    }

    #[test]
    fn bad_responses() {
        let err = |b: &[u8]| response(b, 1000).unwrap_err();
        assert!(err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").contains("chunked"));
        assert!(err(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").contains("Content-Length"));
        assert!(err(b"HTTP/1.1 200 OK\r\n\r\n").contains("without Content-Length"));
        assert!(err(b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n").contains("limit"));
        assert!(err(b"<body/>\r\n\r\n").contains("bad HTTP"));
        let nf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!";
        assert_eq!(response(nf, 1000).unwrap().unwrap().status, 404);
    }

    fn children_of(body: &str) -> (String, Vec<String>) {
        let mut ch = Vec::new();
        let tag = parse_body(body.as_bytes(), &mut ch).unwrap();
        (
            body[tag].to_string(),
            ch.into_iter().map(|r| body[r].to_string()).collect(),
        )
    }

    #[test]
    fn body_children_with_or_without_their_namespace() {
        // Prosody's creation response shape: features in the first response.
        let (tag, ch) = children_of(
            "<body xmlns='http://jabber.org/protocol/httpbind' sid='ab-1' wait='60' \
             requests='2' hold='1' xmlns:xmpp='urn:xmpp:xbosh' \
             xmlns:stream='http://etherx.jabber.org/streams'><stream:features>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1\
             </mechanism></mechanisms></stream:features></body>",
        );
        assert_eq!(attr(tag.as_bytes(), b"sid"), Some(&b"ab-1"[..]));
        assert_eq!(ch.len(), 1);
        assert!(ch[0].starts_with("<stream:features>") && ch[0].ends_with("</stream:features>"));
        let (_, ch) = children_of(
            "<?xml version='1.0'?>\n<body xmlns=\"http://jabber.org/protocol/httpbind\">\
             <message xmlns='jabber:client' id='1.2' to='a@b/lt'><body>x/></body></message>\n\
             <message id='3.4'><body>y</body></message><presence/></body>",
        );
        assert_eq!(
            ch,
            [
                "<message xmlns='jabber:client' id='1.2' to='a@b/lt'><body>x/></body></message>",
                "<message id='3.4'><body>y</body></message>",
                "<presence/>",
            ]
        );
        let (tag, ch) = children_of("<body xmlns='http://jabber.org/protocol/httpbind' />");
        assert!(ch.is_empty());
        assert!(tag.ends_with("/>"));
        let (_, ch) = children_of("<body xmlns='http://jabber.org/protocol/httpbind'></body>");
        assert!(ch.is_empty());
    }

    #[test]
    fn bodies_that_are_not_one() {
        let mut ch = Vec::new();
        for bad in [
            "",
            "<html><p>no</p></html>",
            "<body xmlns='http://jabber.org/protocol/httpbind'><message>",
            "<body xmlns='http://jabber.org/protocol/httpbind'><message/>",
        ] {
            assert!(parse_body(bad.as_bytes(), &mut ch).is_err(), "{bad}");
        }
    }

    #[test]
    fn terminate_responses_are_errors() {
        let body = "<body type='terminate' condition='remote-stream-error' \
                    xmlns='http://jabber.org/protocol/httpbind' \
                    xmlns:stream='http://etherx.jabber.org/streams'><stream:error>\
                    <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></body>";
        let mut ch = Vec::new();
        let tag = parse_body(body.as_bytes(), &mut ch).unwrap();
        let e = terminated(&body.as_bytes()[tag], body.as_bytes(), &ch).unwrap();
        assert!(e.contains("condition='remote-stream-error'"), "{e}");
        assert!(e.contains("<conflict"), "{e}");
        let plain = "<body type='terminate' condition='item-not-found' xmlns='x'/>";
        let tag = parse_body(plain.as_bytes(), &mut ch).unwrap();
        let e = terminated(&plain.as_bytes()[tag], plain.as_bytes(), &ch).unwrap();
        assert!(e.contains("item-not-found"));
        let ok = "<body sid='s' xmlns='x'/>";
        let tag = parse_body(ok.as_bytes(), &mut ch).unwrap();
        assert_eq!(terminated(&ok.as_bytes()[tag], ok.as_bytes(), &ch), None);
    }

    /// The rid and payload of a request written by [`Session::send`].
    fn sent(out: &[u8]) -> (u64, String) {
        let (_, body) = request_parts(out);
        let rid = attr(body.as_bytes(), b"rid").unwrap();
        let rid = s(rid).parse().unwrap();
        (rid, body)
    }

    #[test]
    fn one_request_is_held_and_stanzas_take_the_other_link() {
        let mut sess = Session::new(100);
        let mut out = Vec::new();
        sess.create(&mut out, "/b", "h", "d", 60);
        sess.answered(0).unwrap();
        assert!(
            sess.answered(0).is_err(),
            "no second response to one request"
        );
        sess.sid = Some("S".into());
        // Nothing outstanding: an empty request, to be held.
        let (link, what) = sess.due().unwrap();
        assert_eq!((link, what), (0, Next::Payload));
        out.clear();
        sess.send(link, what, &mut out, "/b", "h", "d");
        assert_eq!(
            sent(&out),
            (
                101,
                "<body rid='101' sid='S' xmlns='http://jabber.org/protocol/httpbind'/>".into()
            )
        );
        assert_eq!(sess.due(), None, "one held is enough");
        // Stanzas go out on the other link at once, batched.
        push_element(&mut sess.pending, |w| {
            w.extend_from_slice(b"<message id='1'/>")
        });
        push_element(&mut sess.pending, |w| {
            w.extend_from_slice(b"<message id='2'/>")
        });
        let (link, what) = sess.due().unwrap();
        assert_eq!((link, what), (1, Next::Payload));
        out.clear();
        sess.send(link, what, &mut out, "/b", "h", "d");
        let (rid, body) = sent(&out);
        assert_eq!(rid, 102);
        assert!(body.contains(
            ">\
            <message xmlns='jabber:client' id='1'/><message xmlns='jabber:client' id='2'/></body>"
        ));
        assert!(sess.pending.is_empty());
        // Both out: more stanzas wait.
        push_element(&mut sess.pending, |w| {
            w.extend_from_slice(b"<message id='3'/>")
        });
        assert_eq!(sess.outstanding(), 2);
        assert_eq!(sess.due(), None);
        // The server answers the held one: the waiting stanza goes on link 0.
        sess.answered(0).unwrap();
        assert_eq!(sess.due(), Some((0, Next::Payload)));
        out.clear();
        sess.send(0, Next::Payload, &mut out, "/b", "h", "d");
        assert_eq!(sent(&out).0, 103);
        // Both answered: an empty one to be held again.
        sess.answered(0).unwrap();
        sess.answered(1).unwrap();
        assert_eq!(sess.due(), Some((0, Next::Payload)));
    }

    #[test]
    fn restart_is_an_empty_request_of_its_own() {
        let mut sess = Session::new(1);
        sess.sid = Some("S".into());
        sess.restart = true;
        let mut out = Vec::new();
        let (link, what) = sess.due().unwrap();
        assert_eq!(what, Next::Restart);
        sess.send(link, what, &mut out, "/b", "h", "d");
        let (rid, body) = sent(&out);
        assert_eq!(rid, 1);
        assert!(body.contains("xmpp:restart='true'") && body.ends_with("/>"));
        assert!(!sess.restart);
        assert_eq!(sess.due(), None);
    }

    #[test]
    fn terminate_goes_on_a_free_open_link() {
        let mut sess = Session::new(5);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(
            !sess.terminate(&mut [Some(&mut a), None], "/b", "h"),
            "no session yet"
        );
        sess.sid = Some("S".into());
        sess.send(0, Next::Payload, &mut a, "/b", "h", "d");
        // Link 0 holds a request and link 1 is not open: no way to send it.
        assert!(!sess.terminate(&mut [Some(&mut a), None], "/b", "h"));
        push_element(&mut sess.pending, |w| w.extend_from_slice(b"<presence/>"));
        assert!(sess.terminate(&mut [Some(&mut a), Some(&mut b)], "/b", "h"));
        let (rid, body) = sent(&b);
        assert_eq!(rid, 6);
        assert!(body.contains("type='terminate'"));
        assert!(body.contains("<presence xmlns='jabber:client'/><presence type='unavailable'"));
        assert_eq!(sess.outstanding(), 2);
    }

    #[test]
    fn first_rids_leave_room_below_2_pow_53() {
        for r in [0, 1, u64::MAX, 1 << 32, (1 << 32) - 1] {
            let rid = first_rid(r);
            assert!((1..1 << 32).contains(&rid), "{r} -> {rid}");
        }
    }
}
