//! One outgoing server-to-server stream (local domain → remote domain), on the home shard of
//! the remote domain: resolve, connect, stream header, STARTTLS (or direct TLS), then SASL
//! EXTERNAL when the peer offers it (it does when our certificate validated, XEP-0178) or
//! dialback (XEP-0220), then stanzas. The same stream carries our `db:verify` requests for
//! incoming streams from the remote domain.

use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;
use futures_lite::FutureExt;
use glommio::net::TcpStream;

use std::cell::{Cell, RefCell};

use super::dialback::{self, Action, Inbound, Outbound, OutboundEvent, Policy, Refusal};
use super::incoming::{Outcomes, BIDI_FEATURE};
use super::link::{Link, LinkError, Owned};
use super::{identity, Conn, Out, OutState, S2s};
use crate::core::{ClientHandle, Pending};
use crate::xml::{self, escape_attr, Element, StreamHeader};
use crate::xmpp::error::{StanzaCondition, StreamCondition, StreamError};
use crate::xmpp::ns;
use crate::xmpp::stanza::Kind;

/// How often an established stream looks at its clocks.
const TICK: Duration = Duration::from_secs(1);
/// Silence after which a whitespace keepalive goes out.
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Longest wait for one TCP connection attempt.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(10);

/// Why set-up failed: the condition queued stanzas bounce with, and a reason for the log.
pub(super) struct Fail {
    cond: StanzaCondition,
    why: String,
}

fn fail(cond: StanzaCondition, why: impl Into<String>) -> Fail {
    Fail {
        cond,
        why: why.into(),
    }
}

fn lost(e: LinkError) -> Fail {
    match e {
        LinkError::Xml(e) => fail(
            StanzaCondition::RemoteServerNotFound,
            format!("the remote server sent bad XML: {e}"),
        ),
        LinkError::Io => fail(
            StanzaCondition::RemoteServerNotFound,
            "the connection closed during set-up",
        ),
    }
}

/// How the stream authenticated, or is authenticating.
enum Auth {
    /// SASL EXTERNAL succeeded: up.
    Sasl,
    /// Our `db:result` is out; its answer decides.
    Dialback,
}

/// Run the stream until it fails, idles out or the server stops.
pub(super) async fn run(s2s: Rc<S2s>, o: Rc<Out>) {
    let metrics = s2s.router.outbox.metrics().clone();
    metrics.peer(crate::metrics::Peer::S2sOut, 1);
    run_counted(&s2s, o).await;
    metrics.peer(crate::metrics::Peer::S2sOut, -1);
}

async fn run_counted(s2s: &Rc<S2s>, o: Rc<Out>) {
    let limit = s2s.config.s2s.connect_timeout;
    let started = Instant::now();
    let setup = set_up(s2s, &o)
        .or(async {
            glommio::timer::sleep(limit).await;
            Err(fail(
                StanzaCondition::RemoteServerTimeout,
                "setting up the stream took too long",
            ))
        })
        .await;
    let ready = match setup {
        Ok(x) => x,
        Err(f) => {
            s2s.out_failed(&o, f.cond, &f.why);
            s2s.out_ended(&o);
            return;
        }
    };
    let mut link = ready.link;
    let conn = Rc::new(Conn {
        handle: o.handle.clone(),
        joining: RefCell::default(),
        riders: Cell::new(1),
    });
    let mut stream = Stream {
        s2s: s2s.clone(),
        conn: conn.clone(),
        remote: o.remote.clone(),
        riders: vec![Rider {
            o: o.clone(),
            deadline: started + limit,
        }],
        rev: Inbound::new(ready.db_stream_id.clone(), Policy::default()),
        db: ready.db,
        waiting: Vec::new(),
        last_write: Instant::now(),
        mux: ready.mux && s2s.config.s2s.dialback,
        bidi: ready.bidi,
        sasl: false,
        outcomes: Rc::default(),
        listed: Vec::new(),
    };
    if let Auth::Sasl = ready.auth {
        stream.sasl = true;
        stream.up(0, "sasl-external");
    }
    let end = stream.established(&mut link).await;
    s2s.conn_closed(&stream.remote, &conn);
    for id in stream.listed.drain(..) {
        s2s.shared.book.remove(id);
    }
    // Whatever still waits for this stream learns it is gone.
    for (_, _, reply) in stream.waiting.drain(..) {
        let _ = reply.send(dialback::VerifyOutcome::Failed(
            dialback::VerifyFailure::Timeout,
        ));
    }
    let joining: Vec<_> = conn.joining.borrow_mut().drain(..).collect();
    let riders = std::mem::take(&mut stream.riders);
    for (i, o) in riders.into_iter().map(|r| r.o).chain(joining).enumerate() {
        if o.state.get() == OutState::Connecting {
            if i == 0 {
                s2s.out_failed(
                    &o,
                    StanzaCondition::RemoteServerTimeout,
                    "the stream ended before dialback completed",
                );
            } else {
                // A domain that was joining: it gets a stream of its own.
                s2s.out_restart(&o);
                continue;
            }
        }
        for ask in o.verifies.borrow_mut().drain(..) {
            let _ = ask.reply.send(dialback::VerifyOutcome::Failed(
                dialback::VerifyFailure::Timeout,
            ));
        }
        if o.state.get() == OutState::Up {
            // Closed: the next stanza opens a new stream.
            o.state
                .set(OutState::Failed(StanzaCondition::RemoteServerTimeout));
            o.retry.set(Some(Instant::now()));
        }
        s2s.out_ended(&o);
    }
    finish(&mut link, &conn.handle, end).await;
    tracing::debug!(local = %o.local, remote = %o.remote, "s2s outgoing stream closed");
}

/// A stream set up: authenticated (SASL) or with our `db:result` sent.
struct Ready {
    link: Link,
    db: Outbound,
    /// The id of the stream (the peer's), for reverse dialback keys.
    db_stream_id: String,
    auth: Auth,
    /// The peer offered dialback on the stream: further local domains may join it.
    mux: bool,
    /// XEP-0288 negotiated.
    bidi: bool,
}

/// Resolve, connect, negotiate TLS, and authenticate (or send our `db:result`).
async fn set_up(s2s: &Rc<S2s>, o: &Out) -> Result<Ready, Fail> {
    let addrs = s2s
        .shared
        .resolver
        .resolve(&o.remote)
        .await
        .map_err(|e| match e {
            super::resolve::ResolveError::Timeout => fail(
                StanzaCondition::RemoteServerTimeout,
                format!("resolving {}: timed out", o.remote),
            ),
            e => fail(
                StanzaCondition::RemoteServerNotFound,
                format!("resolving {}: {e}", o.remote),
            ),
        })?;
    // RFC 6120 §3.2.1: the addresses in order; a connection that fails, or whose TLS or
    // stream set-up fails, passes to the next.
    let mut last = fail(
        StanzaCondition::RemoteServerNotFound,
        format!("connecting to {}: no address", o.remote),
    );
    for a in addrs.iter().take(8) {
        let attempt = TcpStream::connect(a.socket_addr()).or(async {
            glommio::timer::sleep(CONNECT_ATTEMPT).await;
            Err(glommio::GlommioError::IoError(
                std::io::ErrorKind::TimedOut.into(),
            ))
        });
        let sock = match attempt.await {
            Ok(sock) => sock,
            Err(e) => {
                last = fail(
                    StanzaCondition::RemoteServerNotFound,
                    format!("connecting to {} at {}: {e}", o.remote, a.socket_addr()),
                );
                continue;
            }
        };
        match negotiate(s2s, o, sock, a.direct_tls).await {
            Ok(ready) => return Ok(ready),
            Err(f) => {
                tracing::debug!(remote = %o.remote, addr = %a.socket_addr(), why = %f.why, "s2s: set-up failed at this address");
                last = f;
            }
        }
    }
    Err(last)
}

/// TLS, stream header and features, and authentication (or our `db:result`) over one
/// connection.
async fn negotiate(
    s2s: &Rc<S2s>,
    o: &Out,
    sock: TcpStream,
    direct_tls: bool,
) -> Result<Ready, Fail> {
    let cfg = &s2s.config.s2s;
    let _ = sock.set_nodelay(true);
    let limits = s2s.config.xml_limits();
    let mut link = Link::new(sock, None, limits);
    if direct_tls {
        start_tls(s2s, o, &mut link, true)?;
        link.handshake().await.map_err(lost)?;
    }
    loop {
        let (hdr, features) = open(&mut link, o).await?;
        if !link.secured() {
            if features.child("starttls", ns::TLS).is_some() {
                link.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                    .await
                    .map_err(|_| lost(LinkError::Io))?;
                match link.next_frame().await.map_err(lost)? {
                    Owned::Element(raw) if element(&link, &raw)?.is("proceed", ns::TLS) => {}
                    _ => {
                        return Err(fail(
                            StanzaCondition::RemoteServerNotFound,
                            "the remote server refused STARTTLS",
                        ))
                    }
                }
                start_tls(s2s, o, &mut link, false)?;
                link.handshake().await.map_err(lost)?;
                continue;
            }
            if !cfg.allow_plaintext {
                return Err(fail(
                    StanzaCondition::RemoteServerNotFound,
                    "the remote server does not offer TLS",
                ));
            }
        } else {
            let status = peer_status(s2s, &link, &o.remote);
            if cfg.require_valid_cert && !status.is_valid() {
                return Err(fail(
                    StanzaCondition::RemoteServerNotFound,
                    format!("the remote server's certificate is {status}"),
                ));
            }
        }
        let stream_id = hdr.id.clone().unwrap_or_default();
        let mut db = Outbound::new(stream_id.clone(), dialback::DEFAULT_MAX_PAIRS);
        db.set_peer_features(&features);
        // XEP-0288: asked for before authenticating, once TLS is up, and only when we would
        // accept stanzas from the peer's domain on this stream: by dialback's standard (we
        // found the peer through DNS), or, when dialback is off, by its certificate.
        let trusted =
            cfg.dialback || (link.secured() && peer_status(s2s, &link, &o.remote).is_valid());
        let bidi = cfg.bidi
            && trusted
            && (link.secured() || cfg.allow_plaintext)
            && features.child("bidi", BIDI_FEATURE).is_some();
        if bidi {
            link.write_all(b"<bidi xmlns='urn:xmpp:bidi'/>")
                .await
                .map_err(|_| lost(LinkError::Io))?;
        }
        // XEP-0178: the peer offers EXTERNAL when our certificate validated for us.
        if link.secured() && offers_external(&features) {
            let mut auth = Vec::new();
            auth.extend_from_slice(
                b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>",
            );
            // EXT-S2S-03: our domain as authzid.
            auth.extend_from_slice(base64_encode(o.local.as_bytes()).as_bytes());
            auth.extend_from_slice(b"</auth>");
            link.write_all(&auth)
                .await
                .map_err(|_| lost(LinkError::Io))?;
            let answer = match link.next_frame().await.map_err(lost)? {
                Owned::Element(raw) => element(&link, &raw)?,
                _ => return Err(lost(LinkError::Io)),
            };
            if answer.is("success", ns::SASL) {
                // A new stream: a new XML document.
                link.framer.reset();
                let (hdr, features) = open(&mut link, o).await?;
                let id = hdr.id.unwrap_or_default();
                let mut db = Outbound::new(id.clone(), dialback::DEFAULT_MAX_PAIRS);
                db.set_peer_features(&features);
                return Ok(Ready {
                    link,
                    db,
                    db_stream_id: id,
                    auth: Auth::Sasl,
                    mux: offers_dialback(&features),
                    bidi,
                });
            }
            tracing::info!(local = %o.local, remote = %o.remote, "SASL EXTERNAL refused: trying dialback");
        }
        let dialback_offered = offers_dialback(&features) || hdr_declares_dialback(&link);
        if !cfg.dialback || !dialback_offered {
            return Err(fail(
                StanzaCondition::RemoteServerNotFound,
                "no authentication method in common with the remote server",
            ));
        }
        let req = db
            .request_result(&s2s.shared.secret, &o.local, &o.remote)
            .map_err(|e| fail(StanzaCondition::RemoteServerNotFound, format!("{e:?}")))?;
        link.write_all(&req)
            .await
            .map_err(|_| lost(LinkError::Io))?;
        return Ok(Ready {
            link,
            db,
            db_stream_id: stream_id,
            auth: Auth::Dialback,
            mux: offers_dialback(&features),
            bidi,
        });
    }
}

/// DB-ADV-01: the peer's header declared the dialback namespace.
fn hdr_declares_dialback(link: &Link) -> bool {
    link.ns.prefixes().any(|(_, uri)| uri == dialback::DIALBACK)
}

/// The peer's features offer dialback (DB-ADV-02): the condition for adding further local
/// domains to the stream (XEP-0220 §2.6).
fn offers_dialback(features: &Element) -> bool {
    features
        .child("dialback", dialback::DIALBACK_FEATURES)
        .is_some()
}

fn offers_external(features: &Element) -> bool {
    features.child("mechanisms", ns::SASL).is_some_and(|m| {
        m.elements()
            .any(|e| e.name == "mechanism" && e.text().trim() == "EXTERNAL")
    })
}

fn peer_status(s2s: &S2s, link: &Link, domain: &str) -> identity::CertStatus {
    let chain = link.peer_certificates().unwrap_or_default();
    identity::verify_peer(
        chain,
        domain,
        &s2s.shared.anchors,
        rustls::pki_types::UnixTime::now(),
    )
}

fn start_tls(s2s: &S2s, o: &Out, link: &mut Link, direct: bool) -> Result<(), Fail> {
    let ascii = identity::to_ascii_domain(&o.remote).unwrap_or_else(|| o.remote.clone());
    let name = rustls::pki_types::ServerName::try_from(ascii)
        .map_err(|_| fail(StanzaCondition::RemoteServerNotFound, "not a DNS name"))?;
    let config = if direct {
        let mut c = (*s2s.shared.client_tls).clone();
        c.alpn_protocols = vec![b"xmpp-server".to_vec()];
        std::sync::Arc::new(c)
    } else {
        s2s.shared.client_tls.clone()
    };
    let conn = rustls::ClientConnection::new(config, name)
        .map_err(|e| fail(StanzaCondition::RemoteServerNotFound, e.to_string()))?;
    link.start_tls(rustls::Connection::Client(conn));
    Ok(())
}

/// Send our header; read the peer's header and features.
async fn open(link: &mut Link, o: &Out) -> Result<(StreamHeader, Element), Fail> {
    let mut h = Vec::with_capacity(256);
    h.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'");
    h.extend_from_slice(dialback::STREAM_HEADER_DECL.as_bytes());
    h.extend_from_slice(b" from='");
    escape_attr(&o.local, &mut h);
    h.extend_from_slice(b"' to='");
    escape_attr(&o.remote, &mut h);
    h.extend_from_slice(b"' version='1.0'>");
    link.write_all(&h).await.map_err(|_| lost(LinkError::Io))?;
    let hdr = match link.next_frame().await.map_err(lost)? {
        Owned::Header(h) => h,
        _ => return Err(lost(LinkError::Io)),
    };
    if hdr.default_ns.as_deref() != Some(ns::SERVER) {
        return Err(fail(
            StanzaCondition::RemoteServerNotFound,
            "the remote server's stream is not jabber:server",
        ));
    }
    if hdr.version.as_deref().is_none_or(|v| !v.starts_with("1.")) {
        // A pre-1.0 server sends no features: dialback only, without TLS.
        return Ok((hdr, Element::new("features", ns::STREAMS)));
    }
    let features = match link.next_frame().await.map_err(lost)? {
        Owned::Element(raw) => element(link, &raw)?,
        _ => return Err(lost(LinkError::Io)),
    };
    if features.is("error", ns::STREAMS) {
        let cond = features
            .elements()
            .next()
            .map(|e| e.name.clone())
            .unwrap_or_default();
        return Err(fail(
            if cond == "host-unknown" {
                StanzaCondition::RemoteServerNotFound
            } else {
                StanzaCondition::RemoteServerTimeout
            },
            format!("the remote server answered with a stream error: {cond}"),
        ));
    }
    Ok((hdr, features))
}

fn element(link: &Link, raw: &[u8]) -> Result<Element, Fail> {
    xml::parse_element(raw, &link.ns, link.framer.limits()).map_err(|e| {
        fail(
            StanzaCondition::RemoteServerNotFound,
            format!("the remote server sent bad XML: {e}"),
        )
    })
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Why an established stream ends.
enum End {
    Error(StreamError),
    PeerClosed,
    Lost,
    Idle,
}

/// A `db:verify` sent on this stream: the pair, the incoming stream's id, where the
/// verdict goes.
type Waiting = (
    dialback::Pair,
    String,
    futures_channel::oneshot::Sender<dialback::VerifyOutcome>,
);

/// A local domain on the connection, and when its dialback must have completed.
struct Rider {
    o: Rc<Out>,
    deadline: Instant,
}

struct Stream {
    s2s: Rc<S2s>,
    conn: Rc<Conn>,
    remote: String,
    /// The pairs on this connection; the first opened it.
    riders: Vec<Rider>,
    db: Outbound,
    /// Our `db:verify` requests sent on this stream, with where their verdict goes.
    waiting: Vec<Waiting>,
    last_write: Instant,
    /// The peer offered dialback: further local domains may join (XEP-0220 §2.6).
    mux: bool,
    /// XEP-0288: the peer may send stanzas for the reverse of authenticated pairs.
    bidi: bool,
    /// SASL EXTERNAL authenticated the first pair.
    sasl: bool,
    /// Dialback requests the peer sends on a bidirectional stream, for its other domains.
    rev: Inbound,
    /// Verdicts for those requests.
    outcomes: Outcomes,
    /// Reverse pairs verified, in the [`super::PairBook`].
    listed: Vec<u64>,
}

impl Stream {
    /// A pair is authenticated: what waited goes out, in order.
    fn up(&mut self, at: usize, how: &'static str) {
        let o = &self.riders[at].o;
        o.auth.set(how);
        o.listed
            .set(self.s2s.shared.book.add("out", &o.local, &o.remote, how));
        o.release();
        tracing::info!(local = %o.local, remote = %o.remote, auth = how, bidi = self.bidi, "s2s outgoing stream up");
        if at == 0 && self.mux {
            self.s2s.conn_open(&self.remote, &self.conn);
        }
    }

    /// True once a pair may send: before that the peer may send nothing either.
    fn authenticated(&self) -> bool {
        self.sasl || self.riders.iter().any(|r| r.o.state.get() == OutState::Up)
    }

    /// XEP-0288: what the peer may send on our stream. SASL authenticated the reverse of
    /// the first pair; dialback the reverse of each pair it authorized; the peer's own
    /// dialback requests on this stream further pairs.
    fn gate(&self, from: &str, to: &str) -> Result<(), StreamCondition> {
        let first = &self.riders[0].o;
        let sasl = self.sasl && from == first.remote && to == first.local;
        if sasl || self.db.is_authorized(to, from) || self.rev.is_verified(from, to) {
            return Ok(());
        }
        let known = from == self.remote && self.authenticated();
        match self.rev.gate(from, to) {
            Err(StreamCondition::HostUnknown) => Err(StreamCondition::HostUnknown),
            _ if known => Err(StreamCondition::HostUnknown),
            _ => Err(StreamCondition::InvalidFrom),
        }
    }

    async fn established(&mut self, link: &mut Link) -> End {
        let mut tick = Box::pin(glommio::timer::Timer::new(TICK));
        loop {
            let ev = poll_fn(|cx| self.poll(cx, link, &mut tick)).await;
            match ev {
                Ev::Tick => {
                    tick = Box::pin(glommio::timer::Timer::new(TICK));
                    if let Some(end) = self.on_tick() {
                        return end;
                    }
                }
                Ev::Input => {
                    if let Some(end) = self.frames(link).await {
                        return end;
                    }
                }
                Ev::End(end) => return end,
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        link: &mut Link,
        tick: &mut std::pin::Pin<Box<glommio::timer::Timer>>,
    ) -> Poll<Ev> {
        let handle = self.conn.handle.clone();
        handle.set_waker(cx.waker());
        self.join();
        self.send_verifies();
        if !self.outcomes.borrow().is_empty() {
            return Poll::Ready(Ev::Input);
        }
        if handle.unsent() > 0 {
            self.last_write = Instant::now();
        }
        if let Poll::Ready(Err(_)) = link.poll_flush(cx, &handle) {
            return Poll::Ready(Ev::End(End::Lost));
        }
        if let Some(e) = handle.take_close() {
            return Poll::Ready(Ev::End(End::Error(e)));
        }
        if tick.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ev::Tick);
        }
        match link.poll_fill(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Ev::End(End::Lost)),
            Poll::Ready(Ok(_)) => Poll::Ready(Ev::Input),
        }
    }

    /// Local domains that joined the connection send their `db:result` (XEP-0220 §2.6).
    fn join(&mut self) {
        let joining: Vec<_> = self.conn.joining.borrow_mut().drain(..).collect();
        let limit = self.s2s.config.s2s.connect_timeout;
        for o in joining {
            match self
                .db
                .request_result(&self.s2s.shared.secret, &o.local, &self.remote)
            {
                Ok(bytes) => {
                    self.conn.handle.send(&bytes);
                    tracing::debug!(local = %o.local, remote = %o.remote, "s2s: another local domain on the stream");
                    self.riders.push(Rider {
                        o,
                        deadline: Instant::now() + limit,
                    });
                }
                Err(e) => {
                    tracing::debug!(local = %o.local, remote = %o.remote, error = ?e, "s2s: joining the stream refused");
                    self.conn.riders.set(self.conn.riders.get() - 1);
                    self.s2s.out_failed(
                        &o,
                        StanzaCondition::InternalServerError,
                        "the stream could not take this domain",
                    );
                    self.s2s.out_ended(&o);
                }
            }
        }
    }

    /// Verifications asked of this stream go out (DB-RECV-02).
    fn send_verifies(&mut self) {
        for at in 0..self.riders.len() {
            let asks: Vec<_> = self.riders[at].o.verifies.borrow_mut().drain(..).collect();
            for super::VerifyAsk { req, reply } in asks {
                match self.db.send_verify(&req) {
                    Ok(bytes) => {
                        self.conn.handle.send(&bytes);
                        self.waiting.push((req.pair, req.stream_id, reply));
                    }
                    Err(e) => {
                        tracing::debug!(error = ?e, "db:verify not sent");
                        let _ = reply.send(dialback::VerifyOutcome::Failed(
                            dialback::VerifyFailure::ConnectionFailed,
                        ));
                    }
                }
            }
        }
    }

    fn on_tick(&mut self) -> Option<End> {
        let now = Instant::now();
        let first = &self.riders[0];
        if first.o.state.get() == OutState::Connecting && now >= first.deadline {
            return Some(End::Error(StreamError::with_text(
                StreamCondition::ConnectionTimeout,
                "no dialback answer",
            )));
        }
        // A joined domain whose answer does not come (a peer that ignores multiplexing):
        // it gets a connection of its own.
        let mut at = 1;
        while at < self.riders.len() {
            let r = &self.riders[at];
            if r.o.state.get() == OutState::Connecting && now >= r.deadline {
                let r = self.riders.swap_remove(at);
                self.db.cancel_result(&r.o.local, &self.remote);
                self.conn.riders.set(self.conn.riders.get() - 1);
                tracing::info!(local = %r.o.local, remote = %self.remote, "s2s: no answer for a domain on a shared stream: it gets its own");
                self.s2s.out_restart(&r.o);
                continue;
            }
            at += 1;
        }
        let handle = &self.conn.handle;
        let idle = self.s2s.config.s2s.idle_timeout;
        let last = self
            .riders
            .iter()
            .map(|r| r.o.last_used.get())
            .max()
            .unwrap_or(now);
        if self
            .riders
            .iter()
            .all(|r| r.o.state.get() != OutState::Connecting)
            && now.duration_since(last) >= idle
            && self.waiting.is_empty()
            && self.conn.joining.borrow().is_empty()
            && handle.unsent() == 0
        {
            return Some(End::Idle);
        }
        if now.duration_since(self.last_write) >= KEEPALIVE && handle.unsent() == 0 {
            // A whitespace keepalive (RFC 6120 §4.6.1).
            handle.out().push(b' ');
            self.last_write = now;
        }
        None
    }

    /// A joined domain is refused: its stanzas bounce; the stream carries on for the others.
    fn drop_rider(&mut self, o: &Rc<Out>, why: dialback::Refusal, text: &str) {
        self.conn.riders.set(self.conn.riders.get() - 1);
        self.s2s
            .out_failed(o, dialback::bounce_condition(why), text);
        self.s2s.out_ended(o);
    }

    /// Reverse verdicts, then everything complete that arrived; await what routing started.
    async fn frames(&mut self, link: &mut Link) -> Option<End> {
        let outcomes: Vec<_> = self.outcomes.borrow_mut().drain(..).collect();
        for (pair, outcome) in outcomes {
            let valid = outcome == dialback::VerifyOutcome::Valid;
            if let Some(reply) = self
                .rev
                .on_verify_outcome(&pair.sender, &pair.target, outcome)
            {
                // A refused key does not close a stream that carries our stanzas too.
                self.conn.handle.send(&reply.bytes);
                if valid {
                    let book = &self.s2s.shared.book;
                    self.listed
                        .push(book.add("in", &pair.target, &pair.sender, "dialback"));
                }
            }
        }
        let mut pending: Vec<Pending> = Vec::new();
        let r = loop {
            let frame = match link.take_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break None,
                Err(LinkError::Xml(e)) => break Some(End::Error(StreamError::from(&e))),
                Err(LinkError::Io) => break Some(End::Lost),
            };
            let raw = match frame {
                Owned::Close => break Some(End::PeerClosed),
                Owned::Header(_) => {
                    break Some(End::Error(StreamError::with_text(
                        StreamCondition::BadFormat,
                        "unexpected stream header",
                    )))
                }
                Owned::Element(raw) => raw,
            };
            if let Some(end) = self.on_element(&raw, link, &mut pending) {
                break Some(end);
            }
        };
        for p in pending {
            p.await;
        }
        r
    }

    fn on_element(&mut self, raw: &[u8], link: &Link, pending: &mut Vec<Pending>) -> Option<End> {
        let limits = *link.framer.limits();
        if self.bidi {
            let head = match xml::scan_stanza(raw, &link.ns, &limits) {
                Ok(h) => h,
                Err(e) => return Some(End::Error(StreamError::from(&e))),
            };
            let kind = (head.ns == ns::SERVER)
                .then(|| Kind::from_name(head.name))
                .flatten();
            if let Some(kind) = kind {
                if !self.authenticated() {
                    return Some(End::Error(StreamError::with_text(
                        StreamCondition::NotAuthorized,
                        "no stanza before authentication",
                    )));
                }
                let gate = |from: &str, to: &str| self.gate(from, to);
                let s2s = self.s2s.clone();
                if let Err(e) =
                    super::incoming::peer_stanza(&s2s, kind, &head, raw, link, gate, pending)
                {
                    return Some(End::Error(e));
                }
                self.riders[0].o.last_used.set(Instant::now());
                return None;
            }
        }
        let el = match xml::parse_element(raw, &link.ns, &limits) {
            Ok(e) => e,
            Err(e) => return Some(End::Error(StreamError::from(&e))),
        };
        if el.ns == dialback::DIALBACK {
            if self.bidi && el.attr("type").is_none() {
                return self.on_reverse_dialback(&el, link);
            }
            return self.on_dialback(&el);
        }
        if el.is("error", ns::STREAMS) {
            let cond = el.elements().next().map(|e| e.name.clone());
            tracing::info!(remote = %self.remote, condition = ?cond, "s2s stream error from the remote server");
            return Some(End::PeerClosed);
        }
        // CORE-S2S-08: without XEP-0288 the peer sends nothing on our stream.
        tracing::debug!(remote = %self.remote, element = %el.name, "ignored on an outgoing stream");
        None
    }

    /// XEP-0288: the peer asks, on our stream, to send from another of its domains.
    fn on_reverse_dialback(&mut self, el: &Element, link: &Link) -> Option<End> {
        let handle = self.conn.handle.clone();
        // The reverse of a pair we use is authenticated already; it must not be verified
        // over this very stream either.
        if let Ok(db) = dialback::parse(el) {
            if db.kind == dialback::Kind::Result && db.from == self.remote {
                let verdict = match self.gate(&db.from, &db.to) {
                    Ok(()) => dialback::Verdict::Valid,
                    Err(_) => dialback::Verdict::Error(StanzaCondition::NotAuthorized.into()),
                };
                let mut out = Vec::new();
                dialback::write_result(&db.to, &db.from, verdict, &mut out);
                handle.send(&out);
                return None;
            }
        }
        let s2s = self.s2s.clone();
        let hosted = |d: &str| s2s.hosted(d);
        match self
            .rev
            .on_element(el, &hosted, link.secured(), &s2s.shared.secret)
        {
            Action::Ignore(why) => {
                tracing::debug!(remote = %self.remote, ?why, "reverse dialback element ignored");
                None
            }
            Action::Answer(bytes) => {
                handle.send(&bytes);
                None
            }
            Action::Close(e) => Some(End::Error(e)),
            Action::Verify(req) => {
                super::incoming::spawn_verify(&s2s, req, self.outcomes.clone(), handle);
                None
            }
        }
    }

    fn on_dialback(&mut self, el: &Element) -> Option<End> {
        match self.db.on_answer(el) {
            OutboundEvent::Authorized(pair) => {
                if let Some(at) = self.riders.iter().position(|r| {
                    r.o.local == pair.sender && r.o.state.get() == OutState::Connecting
                }) {
                    self.up(at, "dialback");
                }
            }
            OutboundEvent::Refused(pair, why) => {
                let at = self.riders.iter().position(|r| r.o.local == pair.sender)?;
                if at == 0 && self.riders[0].o.state.get() == OutState::Connecting {
                    let cond = dialback::bounce_condition(why);
                    self.s2s.out_failed(
                        &self.riders[0].o,
                        cond,
                        "the remote server refused our dialback key",
                    );
                    return Some(End::PeerClosed);
                }
                let r = self.riders.swap_remove(at);
                if at != 0 && why == Refusal::Error(StanzaCondition::ResourceConstraint.into()) {
                    // XEP-0220 §2.5: the peer takes no more pairs on this stream; a new
                    // connection may be accepted.
                    self.conn.riders.set(self.conn.riders.get() - 1);
                    self.s2s.out_restart(&r.o);
                    return None;
                }
                self.drop_rider(&r.o, why, "the remote server refused our dialback key");
            }
            OutboundEvent::Verified { pair, id, outcome } => {
                if let Some(at) = self
                    .waiting
                    .iter()
                    .position(|(p, i, _)| *p == pair && *i == id)
                {
                    let (_, _, reply) = self.waiting.swap_remove(at);
                    let _ = reply.send(outcome);
                }
            }
            OutboundEvent::Unsolicited | OutboundEvent::UnexpectedRequest => {
                // DB-SEC-01/02: it authorizes nothing.
                tracing::info!(remote = %self.remote, "unsolicited dialback element ignored");
            }
            OutboundEvent::Close(e) => return Some(End::Error(e)),
        }
        None
    }
}

enum Ev {
    Input,
    Tick,
    End(End),
}

/// Say goodbye and close.
async fn finish(link: &mut Link, handle: &ClientHandle, end: End) {
    match end {
        End::Lost => {
            handle.discard();
            return;
        }
        End::Error(e) => {
            let mut out = Vec::new();
            e.write_to(&mut out);
            handle.out().extend_from_slice(&out);
        }
        End::PeerClosed | End::Idle => handle.out().extend_from_slice(b"</stream:stream>"),
    }
    let _ = poll_fn(|cx| link.poll_flush(cx, handle))
        .or(async {
            glommio::timer::sleep(Duration::from_secs(2)).await;
            Ok(())
        })
        .await;
    handle.discard();
    link.close().await;
}
