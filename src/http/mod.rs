//! HTTP transports (issue 13): one HTTP/1.1 listener per shard (SO_REUSEPORT, like the XMPP
//! ports) that serves XEP-0156 discovery and, next, XMPP over WebSocket (RFC 7395) and BOSH
//! (XEP-0124/0206), with CORS for browser clients.
//!
//! A connection task reads one request at a time (keep-alive, pipelined requests answered in
//! order), each within `--http-request-timeout` from its first byte; an idle keep-alive
//! connection closes after `--http-idle-timeout`. What a peer can make the task buffer is
//! bounded by the request-line, head and body limits ([`request::Limits`]), each refusal with
//! its status, after which the connection closes. HTTP connections count against
//! `--max-connections` and the per-address limits like XMPP connections.

mod bind;
pub mod bosh;
mod config;
pub mod io;
pub mod request;
pub mod response;
pub mod ws;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use glommio::net::{TcpListener, TcpStream};

pub use bind::{Handoff, BOSH_PATH};
pub use config::{Cors, HttpArgs, HttpConfig};

use crate::c2s::limits::Preauth;
use crate::c2s::C2s;
use crate::config::Config;
use io::Io;
use request::{Limits, Reject, Request, MAX_HEADERS};
use response::Response;

/// How long a closing connection waits for its last response to leave.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The XRD namespace of host-meta (RFC 6415).
const XRD_NS: &str = "http://docs.oasis-open.org/ns/xri/xrd-1.0";

/// The HTTP service of one shard.
pub struct Http {
    config: Arc<Config>,
    c2s: Rc<C2s>,
    /// The HTTPS TLS configuration (ALPN `http/1.1`), if TLS is set up.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The `Date` of this second, formatted once.
    date: RefCell<(u64, String)>,
}

/// What a connection does after a response.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close after the response.
    Close,
    /// The response switched to XMPP over WebSocket (RFC 7395).
    WebSocket,
    /// A BOSH request: what to do with it, the request's Origin and keep-alive.
    Bosh(bind::Step, Option<String>, bool),
}

/// The WebSocket endpoint (RFC 7395; advertised by XEP-0156).
pub const WEBSOCKET_PATH: &str = "/xmpp-websocket";

impl Http {
    /// The service for one shard; connections count against `c2s`'s limits.
    pub fn new(config: Arc<Config>, c2s: Rc<C2s>, tls: Option<Arc<rustls::ServerConfig>>) -> Http {
        Http {
            config,
            c2s,
            tls,
            date: RefCell::new((u64::MAX, String::new())),
        }
    }

    /// Accept connections on `listener` until shutdown; `tls` for the HTTPS ports.
    pub async fn accept_loop(self: Rc<Self>, listener: TcpListener, tls: bool) {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    if self.c2s.stopping() {
                        return;
                    }
                    tracing::warn!(error = %e, "HTTP accept failed");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.c2s.stopping() {
                return;
            }
            let peer = stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            // The same bounds as XMPP connections: descriptors and per-address limits. A
            // refused connection is closed without a word (an HTTP answer would cost a task).
            let Some(slot) = self.c2s.other_connection() else {
                tracing::warn!(%peer, "connection limit reached (HTTP)");
                continue;
            };
            let preauth = match self.c2s.admit(peer) {
                Ok(p) => p,
                Err(why) => {
                    tracing::debug!(%peer, ?why, "per-address connection limit (HTTP)");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let tls = if tls {
                let Some(config) = self.tls.clone() else {
                    continue;
                };
                match rustls::ServerConnection::new(config) {
                    Ok(c) => Some(Box::new(c)),
                    Err(e) => {
                        tracing::error!(error = %e, "creating a TLS session failed");
                        continue;
                    }
                }
            } else {
                None
            };
            let this = self.clone();
            glommio::spawn_local(async move {
                this.serve(stream, peer, tls, slot, preauth, Vec::new(), 0)
                    .await;
            })
            .detach();
        }
    }

    /// Takes over an HTTP connection another shard handed here with a BOSH request for a
    /// session living here ([`Handoff`]).
    pub fn adopt(self: &Rc<Self>, h: Handoff) {
        // SAFETY: the descriptor was dup'ed for this hand-off and is owned by nobody else.
        let stream = unsafe { TcpStream::from_raw_fd(h.fd.into_raw_fd()) };
        // It counts on this shard now (the sending shard gave its place back).
        let Some(slot) = self.c2s.other_connection() else {
            tracing::warn!(peer = %h.peer, "connection limit reached (HTTP hand-off)");
            return;
        };
        let this = self.clone();
        glommio::spawn_local(async move {
            this.serve(stream, h.peer, h.tls, slot, h.preauth, h.buf, h.hops)
                .await;
        })
        .detach();
    }

    /// One connection: requests until it closes, times out or is refused. `buf` holds what
    /// was read already (a connection handed over from another shard: its BOSH request, which
    /// went through `hops` shards).
    #[allow(clippy::too_many_arguments)]
    async fn serve(
        self: Rc<Self>,
        sock: TcpStream,
        peer: SocketAddr,
        tls: Option<Box<rustls::ServerConnection>>,
        slot: crate::c2s::OtherConn,
        preauth: Option<Preauth>,
        mut buf: Vec<u8>,
        mut hops: u8,
    ) {
        let secure = tls.is_some();
        let mut io = Io::new(sock, tls);
        let h = &self.config.http;
        let limits = Limits {
            max_request_line: h.max_request_line,
            max_header_bytes: h.max_header_bytes,
            max_body: h.max_body,
        };
        loop {
            // The head: the idle timeout until its first byte, then the request timeout.
            let mut started = (!buf.is_empty()).then(Instant::now);
            let (head_len, body_len, expect_continue) = loop {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match request::parse(&buf, &mut headers, &limits) {
                    Ok(Some(r)) => break (r.head_len, r.body_len, r.expect_continue),
                    Ok(None) => {}
                    Err(rej) => return self.refuse(io, rej).await,
                }
                let deadline = match started {
                    Some(t) => t + h.request_timeout,
                    None => Instant::now() + h.idle_timeout,
                };
                match read_until(&mut io, &mut buf, deadline).await {
                    Read::Data => {
                        started.get_or_insert_with(Instant::now);
                    }
                    Read::Closed => return,
                    Read::TimedOut if started.is_none() => return io.close(CLOSE_LINGER).await,
                    Read::TimedOut => {
                        let rej = Reject {
                            status: 408,
                            reason: "the request took too long",
                        };
                        return self.refuse(io, rej).await;
                    }
                }
            };
            let started = started.unwrap_or_else(Instant::now);
            // The body (RFC 9110 §10.1.1: ask for it when the client waits to be asked).
            let total = head_len + body_len;
            if expect_continue
                && buf.len() < total
                && io
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                return;
            }
            while buf.len() < total {
                match read_until(&mut io, &mut buf, started + h.request_timeout).await {
                    Read::Data => {}
                    Read::Closed => return,
                    Read::TimedOut => {
                        let rej = Reject {
                            status: 408,
                            reason: "the request body took too long",
                        };
                        return self.refuse(io, rej).await;
                    }
                }
            }
            let mut out = Vec::new();
            let next = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let Ok(Some(req)) = request::parse(&buf, &mut headers, &limits) else {
                    return;
                };
                if req.path == BOSH_PATH && req.method == "POST" {
                    let body = buf.get(head_len..total).unwrap_or_default();
                    let step = self.bosh_request(body, secure, peer, hops);
                    let origin = req.header_str("origin").map(str::to_string);
                    Next::Bosh(step, origin, req.keep_alive)
                } else {
                    self.respond(&req, secure, &mut out)
                }
            };
            let step = match next {
                Next::Bosh(step, origin, keep_alive) => {
                    let (answer, content) = match step {
                        bind::Step::Answer(a, content) => (a, content),
                        bind::Step::Wait(link, wait_slot, wait, rid) => {
                            let content = link.content_type();
                            // A held request may wait long; the connection reads nothing
                            // meanwhile.
                            io.release_buffer();
                            (Http::bosh_wait(link, wait_slot, wait, rid).await, content)
                        }
                        bind::Step::Hop(shard) => {
                            drop(slot);
                            self.hop(io, buf, peer, preauth, hops, shard).await;
                            return;
                        }
                    };
                    if let crate::c2s::bosh::Answer::Moved(shard) = answer {
                        drop(slot);
                        self.hop(io, buf, peer, preauth, hops, shard).await;
                        return;
                    }
                    let written = self.bosh_response(
                        &answer,
                        content.as_deref(),
                        origin.as_deref(),
                        keep_alive,
                        &mut out,
                    );
                    // The next request on this connection starts counting hops afresh.
                    hops = 0;
                    if !written {
                        // BOSH-SEC-01: closed without an answer.
                        return io.close(CLOSE_LINGER).await;
                    }
                    self::next(keep_alive)
                }
                other => other,
            };
            if io.write_all(&out).await.is_err() {
                return;
            }
            buf.drain(..total);
            // A large body does not stay allocated for the connection's idle life.
            if buf.capacity() > 64 * 1024 && buf.len() <= 4096 {
                buf.shrink_to(4096);
            }
            match step {
                Next::KeepAlive => {}
                // Turned into KeepAlive or Close above.
                Next::Bosh(..) => return io.close(CLOSE_LINGER).await,
                Next::Close => return io.close(CLOSE_LINGER).await,
                Next::WebSocket => {
                    // The XMPP connection counts itself from here; what followed the
                    // handshake is its first frames.
                    drop(slot);
                    let (sock, tls) = io.into_parts();
                    return self.c2s.websocket(sock, peer, tls, preauth, buf).await;
                }
            }
        }
    }

    /// Answers a refused request and closes: what follows its head cannot be framed.
    async fn refuse(&self, mut io: Io, rej: Reject) {
        tracing::debug!(
            status = rej.status,
            reason = rej.reason,
            "HTTP request refused"
        );
        let mut out = Vec::new();
        Response::new(rej.status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .write(&mut out, &self.date(), rej.reason.as_bytes(), false, false);
        if io.write_all(&out).await.is_ok() {
            io.close(CLOSE_LINGER).await;
        }
    }

    /// Routes one complete request and writes its response.
    fn respond(&self, req: &Request<'_, '_>, secure: bool, out: &mut Vec<u8>) -> Next {
        let keep_alive = req.keep_alive;
        let date = self.date();
        let cors = &self.config.http.cors;
        let origin = req.header_str("origin");
        let head_only = req.method == "HEAD";
        if req.path == WEBSOCKET_PATH {
            return self.upgrade(req, out, &date);
        }
        let methods = match req.path {
            "/.well-known/host-meta" | "/.well-known/host-meta.json" => "GET, HEAD, OPTIONS",
            BOSH_PATH => "POST, OPTIONS",
            "*" => "GET, HEAD, POST, OPTIONS",
            _ => {
                Response::new(404)
                    .header("Content-Type", "text/plain; charset=utf-8")
                    .write(out, &date, b"not found", keep_alive, head_only);
                return next(keep_alive);
            }
        };
        match req.method {
            "OPTIONS" => {
                preflight(req, methods, cors, origin).write(out, &date, b"", keep_alive, false)
            }
            "GET" | "HEAD" if req.path != BOSH_PATH => {
                let (content_type, body) = if req.path.ends_with(".json") {
                    ("application/json", self.host_meta_json(req, secure))
                } else {
                    (
                        "application/xrd+xml; charset=utf-8",
                        self.host_meta_xrd(req, secure),
                    )
                };
                match body {
                    Some(body) => Response::new(200)
                        .header("Content-Type", content_type)
                        .cors(cors, origin)
                        .write(out, &date, body.as_bytes(), keep_alive, head_only),
                    None => Response::new(400)
                        .header("Content-Type", "text/plain; charset=utf-8")
                        .write(out, &date, b"bad Host", keep_alive, head_only),
                }
            }
            _ => Response::new(405)
                .header("Allow", methods)
                .header("Content-Type", "text/plain; charset=utf-8")
                .write(out, &date, b"method not allowed", keep_alive, false),
        }
        next(keep_alive)
    }

    /// `GET /xmpp-websocket`: the opening handshake (RFC 6455 §4.2, RFC 7395 §3.1). A page
    /// from an origin the CORS policy does not allow is refused (403): browsers let any page
    /// open a WebSocket, so the server is the one to check.
    fn upgrade(&self, req: &Request<'_, '_>, out: &mut Vec<u8>, date: &str) -> Next {
        let refused = |status: u16, reason: &str, extra: &[(&str, &str)], out: &mut Vec<u8>| {
            let mut r = Response::new(status).header("Content-Type", "text/plain; charset=utf-8");
            for (n, v) in extra {
                r = r.header(n, v);
            }
            r.write(out, date, reason.as_bytes(), req.keep_alive, false);
            next(req.keep_alive)
        };
        let accepted = match ws::accept(req.method, req.minor, req.headers) {
            Ok(a) => a,
            Err(r) => return refused(r.status, r.reason, r.headers, out),
        };
        if accepted.origin.is_some()
            && response::allowed(&self.config.http.cors, accepted.origin).is_none()
        {
            return refused(403, "this origin may not connect", &[], out);
        }
        accepted.write_head(out, &[("Date", date), ("Server", "xmppd")]);
        Next::WebSocket
    }

    /// The endpoints XEP-0156 advertises: (link relation, URL).
    fn links(&self, req: &Request<'_, '_>, secure: bool) -> Option<Vec<(&'static str, String)>> {
        let base = match &self.config.http.public_url {
            Some(u) => u.clone(),
            None => {
                // HTTP/1.0 may omit Host: the first served domain stands in.
                let host = match req.header_str("host") {
                    Some(h) => h.to_string(),
                    None => self.config.domains.first().cloned().unwrap_or_default(),
                };
                if !valid_authority(&host) {
                    return None;
                }
                format!("{}://{host}", if secure { "https" } else { "http" })
            }
        };
        let ws = match base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}{WEBSOCKET_PATH}"),
            Some((_, rest)) => format!("ws://{rest}{WEBSOCKET_PATH}"),
            None => return None,
        };
        let bosh = format!("{base}{BOSH_PATH}");
        Some(vec![
            ("urn:xmpp:alt-connections:xbosh", bosh),
            ("urn:xmpp:alt-connections:websocket", ws),
        ])
    }

    /// `/.well-known/host-meta` (XEP-0156 §3.2, RFC 6415): XRD.
    fn host_meta_xrd(&self, req: &Request<'_, '_>, secure: bool) -> Option<String> {
        let mut s = format!("<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='{XRD_NS}'>\n");
        for (rel, href) in self.links(req, secure)? {
            s.push_str(&format!("  <Link rel='{rel}' href='{href}'/>\n"));
        }
        s.push_str("</XRD>\n");
        Some(s)
    }

    /// `/.well-known/host-meta.json` (XEP-0156 §3.2, RFC 6415 JRD).
    fn host_meta_json(&self, req: &Request<'_, '_>, secure: bool) -> Option<String> {
        let links: Vec<String> = self
            .links(req, secure)?
            .into_iter()
            .map(|(rel, href)| format!("{{\"rel\":\"{rel}\",\"href\":\"{href}\"}}"))
            .collect();
        Some(format!("{{\"links\":[{}]}}", links.join(",")))
    }

    /// The `Date` header value, formatted once a second.
    fn date(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut d = self.date.borrow_mut();
        if d.0 != now {
            *d = (now, crate::util::http_date(now));
        }
        d.1.clone()
    }
}

fn next(keep_alive: bool) -> Next {
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) or a plain `OPTIONS`.
fn preflight<'a>(
    req: &Request<'_, 'a>,
    methods: &'a str,
    cors: &'a Cors,
    origin: Option<&'a str>,
) -> Response<'a> {
    let r = Response::new(204).header("Allow", methods);
    if origin.is_none() || req.header("access-control-request-method").is_none() {
        return r;
    }
    let r = r.cors(cors, origin);
    if response::allowed(cors, origin).is_none() {
        return r;
    }
    let headers = req
        .header_str("access-control-request-headers")
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b',' | b' ' | b'_'))
        })
        .unwrap_or("Content-Type");
    r.header("Access-Control-Allow-Methods", methods)
        .header("Access-Control-Allow-Headers", headers)
        .header("Access-Control-Max-Age", "86400")
}

/// A Host value that may be put into a URL: a name, an IPv4 or a bracketed IPv6 address, and
/// an optional port.
fn valid_authority(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 260
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

enum Read {
    Data,
    Closed,
    TimedOut,
}

/// Reads more into `buf` unless `deadline` passes first.
async fn read_until(io: &mut Io, buf: &mut Vec<u8>, deadline: Instant) -> Read {
    let wait = deadline.saturating_duration_since(Instant::now());
    let read = async {
        match io.read(buf).await {
            Ok(0) | Err(_) => Read::Closed,
            Ok(_) => Read::Data,
        }
    };
    read.or(async {
        glommio::timer::sleep(wait).await;
        Read::TimedOut
    })
    .await
}
