//! One incoming server-to-server stream, on the shard that accepted it: our header and
//! features (STARTTLS, then SASL EXTERNAL when the peer's certificate validates for its
//! domain, and dialback), TLS, authentication of domain pairs, and the stanzas the peer
//! sends for them, routed from here.
//!
//! | element | answer |
//! |---|---|
//! | header, `to` not ours | `host-unknown` (CORE-S2S-03) |
//! | header, other namespace | `invalid-namespace` |
//! | `<starttls/>` | `<proceed/>`, TLS, a new header |
//! | `<auth mechanism='EXTERNAL'/>`, certificate valid for the header's `from`, authzid empty or that domain | `<success/>`, a new header; stanzas from that domain (EXT-S2S-02) |
//! | `db:result` | verified through the authoritative server, then `valid`/`invalid`/`error` (DB-RECV-*) |
//! | `db:verify` | `valid`/`invalid`/`error` at once (DB-AUTH-*) |
//! | `<bidi xmlns='urn:xmpp:bidi'/>` after TLS (XEP-0288) | nothing; once a pair is authenticated, our stanzas for its reverse may go out on this stream |
//! | stanza without `to` or `from` | `improper-addressing` (CORE-S2S-05) |
//! | stanza from a domain not authenticated on this stream | `invalid-from` (CORE-S2S-06) |
//! | stanza to a domain not ours, or not authenticated for | `host-unknown` (CORE-S2S-07) |

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;
use futures_lite::FutureExt;
use glommio::net::TcpStream;

use super::dialback::{self, Action, Inbound, Policy};
use super::link::{Link, LinkError, Owned};
use super::{identity, InHandoff, Out, S2s};
use crate::core::{ClientHandle, Pending};
use crate::xml::{self, escape_attr, Element, StreamHeader};
use crate::xmpp::error::{StreamCondition, StreamError};
use crate::xmpp::jid::{nameprep_domain, Jid};
use crate::xmpp::ns;
use crate::xmpp::stanza::{Kind, StanzaType};

const TICK: Duration = Duration::from_secs(1);

enum End {
    Error(StreamError),
    PeerClosed,
    Lost,
    /// Close after what is queued (a refused dialback key, DB-RECV-04).
    Close,
    Idle,
    /// The first header names a domain homed on shard `.0`, not this one: the stream moves
    /// there.
    HandOff(usize, Box<StreamHeader>),
}

/// Verdicts that came back for this stream's pending pairs.
pub(super) type Outcomes = Rc<RefCell<Vec<(dialback::Pair, dialback::VerifyOutcome)>>>;

struct In {
    s2s: Rc<S2s>,
    peer: SocketAddr,
    handle: Rc<ClientHandle>,
    /// The header's `to`, once a header was accepted.
    local: Option<String>,
    /// The header's `from`.
    remote: Option<String>,
    /// The domain SASL EXTERNAL authenticated, for stanzas to `local`.
    sasl: Option<String>,
    db: Inbound,
    outcomes: Outcomes,
    /// A `<proceed/>` went out: start TLS once it is flushed.
    start_tls: bool,
    /// SASL succeeded: the next frame is a new stream's header.
    restart: bool,
    /// Authentication must be done by then.
    deadline: Instant,
    last_stanza: Instant,
    /// The certificate verdict for `remote`, once TLS is up.
    cert: Option<identity::CertStatus>,
    /// The stream came from another shard (it is home).
    adopted: bool,
    /// The peer made the stream bidirectional (XEP-0288).
    bidi: bool,
    /// The pairs this stream carries from us to the peer (bidi).
    carried: Vec<Rc<Out>>,
    /// Its authenticated pairs' entries in the [`super::PairBook`].
    listed: Vec<u64>,
}

/// XEP-0288 namespaces.
pub(super) const BIDI_FEATURE: &str = "urn:xmpp:features:bidi";
pub(super) const BIDI: &str = "urn:xmpp:bidi";

/// Serve one accepted connection. False when it moved to another shard (which counts it
/// from then on).
pub(super) async fn serve(
    s2s: Rc<S2s>,
    sock: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
) -> bool {
    let limits = s2s.config.xml_limits();
    let mut link = Link::new(sock, None, limits);
    if direct_tls {
        match rustls::ServerConnection::new(s2s.shared.server_tls.clone()) {
            Ok(c) => link.start_tls(rustls::Connection::Server(c)),
            Err(_) => return true,
        }
    }
    let mut c = In::new(s2s.clone(), peer);
    let metrics = s2s.router.outbox.metrics().clone();
    metrics.peer(crate::metrics::Peer::S2sIn, 1);
    let end = c.run(&mut link).await;
    metrics.peer(crate::metrics::Peer::S2sIn, -1);
    if let End::HandOff(home, hdr) = end {
        match link.into_parts() {
            Ok(parts) => {
                let h = InHandoff {
                    link: parts,
                    peer,
                    hdr: *hdr,
                };
                let msg = crate::shard::ShardMsg::Adopt(Box::new(h));
                if s2s.links.send(home, msg).await {
                    return false;
                }
            }
            Err(e) => tracing::warn!(%peer, error = %e, "s2s: moving an incoming stream failed"),
        }
        return true;
    }
    c.finish(&mut link, end).await;
    true
}

/// A stream that moved here from the shard that accepted it: its first header is answered
/// here.
pub(super) async fn adopted(s2s: Rc<S2s>, h: InHandoff) {
    let mut link = Link::from_parts(h.link);
    let mut c = In::new(s2s.clone(), h.peer);
    c.adopted = true;
    let metrics = s2s.router.outbox.metrics().clone();
    metrics.peer(crate::metrics::Peer::S2sIn, 1);
    let end = match c.on_header(&h.hdr, &link) {
        Ok(()) => c.run(&mut link).await,
        Err(e) => End::Error(e),
    };
    c.finish(&mut link, end).await;
    metrics.peer(crate::metrics::Peer::S2sIn, -1);
}

impl In {
    fn new(s2s: Rc<S2s>, peer: SocketAddr) -> In {
        In {
            handle: Rc::new(ClientHandle::new(s2s.config.max_send_queue, Instant::now())),
            local: None,
            remote: None,
            sasl: None,
            db: Inbound::new(String::new(), Policy::default()),
            outcomes: Rc::default(),
            start_tls: false,
            restart: false,
            deadline: Instant::now() + s2s.config.s2s.connect_timeout,
            last_stanza: Instant::now(),
            cert: None,
            adopted: false,
            bidi: false,
            carried: Vec::new(),
            listed: Vec::new(),
            s2s,
            peer,
        }
    }

    async fn run(&mut self, link: &mut Link) -> End {
        let mut tick = Box::pin(glommio::timer::Timer::new(TICK));
        loop {
            let ev = poll_fn(|cx| self.poll(cx, link, &mut tick)).await;
            let r = match ev {
                Ev::Tick => {
                    tick = Box::pin(glommio::timer::Timer::new(TICK));
                    self.on_tick()
                }
                Ev::Input => self.frames(link).await,
                Ev::End(end) => Err(end),
            };
            if let Err(end) = r {
                return end;
            }
            if self.start_tls {
                self.start_tls = false;
                if poll_fn(|cx| link.poll_flush(cx, &self.handle))
                    .await
                    .is_err()
                {
                    return End::Lost;
                }
                match rustls::ServerConnection::new(self.s2s.shared.server_tls.clone()) {
                    Ok(c) => link.start_tls(rustls::Connection::Server(c)),
                    Err(_) => return End::Lost,
                }
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        link: &mut Link,
        tick: &mut std::pin::Pin<Box<glommio::timer::Timer>>,
    ) -> Poll<Ev> {
        self.handle.set_waker(cx.waker());
        if !self.outcomes.borrow().is_empty() {
            return Poll::Ready(Ev::Input);
        }
        if let Poll::Ready(Err(_)) = link.poll_flush(cx, &self.handle) {
            return Poll::Ready(Ev::End(End::Lost));
        }
        if let Some(e) = self.handle.take_close() {
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

    fn on_tick(&mut self) -> Result<(), End> {
        let authenticated = self.sasl.is_some() || self.db_verified();
        if !authenticated && self.db.pending().next().is_none() && Instant::now() >= self.deadline {
            return Err(End::Error(StreamError::with_text(
                StreamCondition::ConnectionTimeout,
                "authenticate first",
            )));
        }
        let last = self
            .carried
            .iter()
            .map(|o| o.last_used.get())
            .fold(self.last_stanza, Instant::max);
        if authenticated
            && last.elapsed() >= self.s2s.config.s2s.idle_timeout
            && self.handle.unsent() == 0
        {
            return Err(End::Idle);
        }
        Ok(())
    }

    fn db_verified(&self) -> bool {
        match (&self.remote, &self.local) {
            (Some(r), Some(l)) => self.db.is_verified(r, l),
            _ => false,
        }
    }

    /// Verdicts, then every complete frame; await what routing started.
    async fn frames(&mut self, link: &mut Link) -> Result<(), End> {
        let outcomes: Vec<_> = self.outcomes.borrow_mut().drain(..).collect();
        for (pair, outcome) in outcomes {
            let valid = outcome == dialback::VerifyOutcome::Valid;
            if let Some(reply) = self
                .db
                .on_verify_outcome(&pair.sender, &pair.target, outcome)
            {
                self.handle.send(&reply.bytes);
                if reply.close {
                    return Err(End::Close);
                }
                if valid {
                    let book = &self.s2s.shared.book;
                    self.listed
                        .push(book.add("in", &pair.target, &pair.sender, "dialback"));
                    self.carry(&pair.target, &pair.sender, true);
                }
            }
        }
        let mut pending: Vec<Pending> = Vec::new();
        let r = loop {
            if self.start_tls {
                break Ok(());
            }
            let frame = match link.take_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(LinkError::Xml(e)) => break Err(End::Error(StreamError::from(&e))),
                Err(LinkError::Io) => break Err(End::Lost),
            };
            let r = match frame {
                Owned::Close => Err(End::PeerClosed),
                Owned::Header(hdr) => match self.moves(&hdr) {
                    Some(home) => Err(End::HandOff(home, Box::new(hdr))),
                    None => self.on_header(&hdr, link).map_err(End::Error),
                },
                Owned::Element(raw) => {
                    let r = self.on_element(&raw, link, &mut pending);
                    if std::mem::take(&mut self.restart) {
                        // After SASL success the peer opens a new stream (a new document).
                        link.framer.reset();
                    }
                    r
                }
            };
            if r.is_err() {
                break r;
            }
        };
        for p in pending {
            p.await;
        }
        r
    }

    /// The first header names a sender domain homed on another shard: the stream moves
    /// there, next to our own streams to that domain (XEP-0288 needs them together; it
    /// also keeps dialback verification local).
    fn moves(&self, hdr: &StreamHeader) -> Option<usize> {
        if self.adopted || self.local.is_some() {
            return None;
        }
        let router = &self.s2s.router;
        let from = nameprep_domain(hdr.from.as_deref()?).ok()?;
        Some(router.home_of(&from)).filter(|&home| home != router.shard())
    }

    /// The peer may receive our stanzas from `local` to `remote` on this stream (XEP-0288,
    /// once it authenticated the reverse pair). Only pairs homed here: a multiplexed sender
    /// domain homed on another shard keeps its own streams. Until `up`, our stanzas queue.
    fn carry(&mut self, local: &str, remote: &str, up: bool) {
        if !self.bidi || self.s2s.router.home_of(remote) != self.s2s.router.shard() {
            return;
        }
        if self
            .carried
            .iter()
            .any(|o| o.local == local && o.remote == remote)
        {
            return;
        }
        if let Some(o) = self.s2s.bidi_open(local, remote, &self.handle) {
            if up {
                self.s2s.bidi_up(&o);
            }
            self.carried.push(o);
        }
    }

    fn on_header(&mut self, hdr: &StreamHeader, link: &Link) -> Result<(), StreamError> {
        let to = hdr
            .to
            .as_deref()
            .and_then(|t| nameprep_domain(t).ok())
            .map(|d| d.into_owned());
        let from = hdr
            .from
            .as_deref()
            .and_then(|f| nameprep_domain(f).ok())
            .map(|d| d.into_owned());
        let id = crate::util::stream_id();
        let version = hdr.version.as_deref().is_some_and(|v| v.starts_with("1."));
        // RFC 6120 §4.7.1: our header names one of our domains, the asked one if it is ours.
        let ours = to
            .clone()
            .filter(|d| self.s2s.hosted(d))
            .or_else(|| self.s2s.config.domains.first().cloned());
        {
            let mut out = self.handle.out();
            out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'");
            out.extend_from_slice(dialback::STREAM_HEADER_DECL.as_bytes());
            out.extend_from_slice(b" id='");
            out.extend_from_slice(id.as_bytes());
            out.push(b'\'');
            if let Some(ours) = &ours {
                out.extend_from_slice(b" from='");
                escape_attr(ours, &mut out);
                out.push(b'\'');
            }
            if let Some(from) = &from {
                out.extend_from_slice(b" to='");
                escape_attr(from, &mut out);
                out.push(b'\'');
            }
            if version {
                out.extend_from_slice(b" version='1.0'");
            }
            out.push(b'>');
        }
        if hdr.default_ns.as_deref() != Some(ns::SERVER) {
            return Err(StreamError::new(StreamCondition::InvalidNamespace));
        }
        // CORE-S2S-03
        let Some(to) = to.filter(|d| self.s2s.hosted(d)) else {
            return Err(StreamError::new(StreamCondition::HostUnknown));
        };
        if self.local.as_ref().is_some_and(|l| *l != to) {
            return Err(StreamError::with_text(
                StreamCondition::HostUnknown,
                "the domain changed on a restart",
            ));
        }
        self.local = Some(to);
        if from.is_some() {
            self.remote = from;
        }
        let cfg = &self.s2s.config.s2s;
        self.db = Inbound::new(
            id,
            Policy {
                require_tls: !cfg.allow_plaintext,
                ..Policy::default()
            },
        );
        if link.secured() {
            self.cert = self.remote.as_deref().map(|r| {
                identity::verify_peer(
                    link.peer_certificates().unwrap_or_default(),
                    r,
                    &self.s2s.shared.anchors,
                    rustls::pki_types::UnixTime::now(),
                )
            });
        }
        if !version {
            return Ok(());
        }
        let mut out = self.handle.out();
        out.extend_from_slice(b"<stream:features>");
        if !link.secured() {
            out.extend_from_slice(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>");
            if !cfg.allow_plaintext {
                out.extend_from_slice(b"<required/>");
            }
            out.extend_from_slice(b"</starttls>");
        }
        if self.sasl.is_none() {
            // EXT-S2S-01: EXTERNAL only when the certificate names the stream's `from`.
            if self.cert.as_ref().is_some_and(|c| c.is_valid()) {
                out.extend_from_slice(b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>");
            }
            if cfg.bidi && !self.bidi && (link.secured() || cfg.allow_plaintext) {
                out.extend_from_slice(b"<bidi xmlns='urn:xmpp:features:bidi'/>");
            }
        }
        // DB-ADV-02; after SASL too, so that the peer may add sender domains (XEP-0220 §2.6).
        if cfg.dialback && (link.secured() || cfg.allow_plaintext) {
            dialback::write_feature(&mut out);
        }
        out.extend_from_slice(b"</stream:features>");
        drop(out);
        // After SASL the restarted stream's header is out: only now may our stanzas that
        // waited for it follow.
        for o in &self.carried {
            self.s2s.bidi_up(o);
        }
        Ok(())
    }

    fn on_element(
        &mut self,
        raw: &[u8],
        link: &Link,
        pending: &mut Vec<Pending>,
    ) -> Result<(), End> {
        if self.local.is_none() {
            return Err(End::Error(StreamError::new(StreamCondition::NotAuthorized)));
        }
        let limits = *link.framer.limits();
        let ns_ctx = link.ns.clone();
        let head = xml::scan_stanza(raw, &ns_ctx, &limits)
            .map_err(|e| End::Error(StreamError::from(&e)))?;
        let kind = (head.ns == ns::SERVER)
            .then(|| Kind::from_name(head.name))
            .flatten();
        if let Some(kind) = kind {
            return self.on_stanza(kind, &head, raw, link, pending);
        }
        let el = xml::parse_element(raw, &ns_ctx, &limits)
            .map_err(|e| End::Error(StreamError::from(&e)))?;
        if el.is("starttls", ns::TLS) {
            if link.secured() {
                self.handle
                    .send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>");
                return Err(End::Close);
            }
            self.handle
                .send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            self.start_tls = true;
            return Ok(());
        }
        if el.is("auth", ns::SASL) {
            return self.on_auth(&el, link);
        }
        if el.is("bidi", BIDI) && self.s2s.config.s2s.bidi {
            if !link.secured() && !self.s2s.config.s2s.allow_plaintext {
                return Err(End::Error(StreamError::with_text(
                    StreamCondition::PolicyViolation,
                    "bidirectional streams need TLS first",
                )));
            }
            self.bidi = true;
            // A pair authenticated by SASL before the request may be carried too (the
            // restarted stream's header is out by now: the request comes on it).
            if let (Some(l), Some(r)) = (self.local.clone(), self.sasl.clone()) {
                self.carry(&l, &r, true);
            }
            tracing::debug!(peer = %self.peer, remote = ?self.remote, "s2s: bidirectional stream requested");
            return Ok(());
        }
        if el.ns == dialback::DIALBACK {
            return self.on_dialback(&el, link);
        }
        if el.is("error", ns::STREAMS) {
            tracing::info!(peer = %self.peer, remote = ?self.remote, error = ?el.elements().next().map(|e| e.name.clone()), "s2s stream error from the peer");
            return Err(End::PeerClosed);
        }
        Err(End::Error(StreamError::with_text(
            StreamCondition::UnsupportedStanzaType,
            format!("unexpected <{}/>", el.name),
        )))
    }

    /// EXT-S2S-02: SASL EXTERNAL with a certificate valid for the stream's `from`.
    fn on_auth(&mut self, el: &Element, link: &Link) -> Result<(), End> {
        let authzid = el.text();
        let authzid = authzid.trim();
        let claimed = match authzid {
            "" | "=" => self.remote.clone(),
            b64 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|d| nameprep_domain(&d).ok().map(|d| d.into_owned()))
            }
        };
        let ok = el.attr("mechanism") == Some("EXTERNAL")
            && link.secured()
            && self.sasl.is_none()
            && claimed.is_some()
            && claimed == self.remote
            && self.cert.as_ref().is_some_and(|c| c.is_valid());
        if !ok {
            self.handle.send(
                b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
            );
            return Ok(());
        }
        self.sasl = claimed;
        self.restart = true;
        if let (Some(l), Some(r)) = (self.local.clone(), self.sasl.clone()) {
            let book = &self.s2s.shared.book;
            self.listed.push(book.add("in", &l, &r, "sasl-external"));
            // Our stanzas wait for the restarted stream's header (RFC 6120 §6.4.6).
            self.carry(&l, &r, false);
        }
        self.handle
            .send(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        tracing::info!(peer = %self.peer, remote = ?self.sasl, "s2s incoming stream authenticated (SASL EXTERNAL)");
        Ok(())
    }

    fn on_dialback(&mut self, el: &Element, link: &Link) -> Result<(), End> {
        let cfg = &self.s2s.config.s2s;
        let s2s = self.s2s.clone();
        let hosted = |d: &str| s2s.hosted(d);
        if !cfg.dialback {
            // Not offered: answered like a refused pair, the stream stays.
            if let Ok(db) = dialback::parse(el) {
                if db.verdict.is_none() {
                    let mut out = Vec::new();
                    let v = dialback::Verdict::Error(
                        crate::xmpp::error::StanzaCondition::PolicyViolation.into(),
                    );
                    match db.kind {
                        dialback::Kind::Result => {
                            dialback::write_result(&db.to, &db.from, v, &mut out)
                        }
                        dialback::Kind::Verify => dialback::write_verify(
                            &db.to,
                            &db.from,
                            db.id.as_deref().unwrap_or_default(),
                            v,
                            &mut out,
                        ),
                    }
                    self.handle.send(&out);
                }
            }
            return Ok(());
        }
        match self
            .db
            .on_element(el, &hosted, link.secured(), &s2s.shared.secret)
        {
            Action::Ignore(why) => {
                tracing::debug!(peer = %self.peer, ?why, "dialback element ignored");
                Ok(())
            }
            Action::Answer(bytes) => {
                self.handle.send(&bytes);
                Ok(())
            }
            Action::Close(e) => Err(End::Error(e)),
            Action::Verify(req) => {
                spawn_verify(&s2s, req, self.outcomes.clone(), self.handle.clone());
                Ok(())
            }
        }
    }

    fn on_stanza(
        &mut self,
        kind: Kind,
        head: &xml::StanzaHead<'_>,
        raw: &[u8],
        link: &Link,
        pending: &mut Vec<Pending>,
    ) -> Result<(), End> {
        let (sasl, local, db) = (&self.sasl, &self.local, &self.db);
        // CORE-S2S-06/07, DB-RECV-01: the pair must be authenticated on this stream.
        let gate = |from: &str, to: &str| {
            if sasl.as_deref() == Some(from) && local.as_deref() == Some(to) {
                return Ok(());
            }
            db.gate(from, to)
        };
        peer_stanza(&self.s2s, kind, head, raw, link, gate, pending).map_err(End::Error)?;
        self.last_stanza = Instant::now();
        Ok(())
    }

    async fn finish(&mut self, link: &mut Link, end: End) {
        let why = match &end {
            End::Error(e) => e.condition.name(),
            End::PeerClosed => "closed by the peer",
            End::Lost => "connection lost",
            End::Close => "refused dialback key",
            End::Idle => "idle",
            End::HandOff(..) => "moved",
        };
        tracing::debug!(peer = %self.peer, remote = ?self.remote, local = ?self.local, why, "s2s incoming stream ends");
        // Our stanzas for these pairs take an outgoing stream from now on.
        for o in self.carried.drain(..) {
            self.s2s.bidi_closed(&o);
        }
        for id in self.listed.drain(..) {
            self.s2s.shared.book.remove(id);
        }
        match end {
            End::Lost | End::HandOff(..) => {
                self.handle.discard();
                return;
            }
            End::Error(e) => {
                tracing::debug!(peer = %self.peer, error = e.condition.name(), "s2s incoming stream error");
                let mut out = Vec::new();
                e.write_to(&mut out);
                self.handle.out().extend_from_slice(&out);
            }
            End::PeerClosed | End::Close | End::Idle => {
                self.handle.out().extend_from_slice(b"</stream:stream>")
            }
        }
        let handle = self.handle.clone();
        let _ = poll_fn(|cx| link.poll_flush(cx, &handle))
            .or(async {
                glommio::timer::sleep(Duration::from_secs(2)).await;
                Ok(())
            })
            .await;
        self.handle.discard();
        link.close().await;
    }
}

/// Ask the authoritative server (DB-RECV-02); the verdict, or a timeout, lands in
/// `outcomes` and wakes the stream's task.
pub(super) fn spawn_verify(
    s2s: &Rc<S2s>,
    req: dialback::VerifyRequest,
    outcomes: Outcomes,
    handle: Rc<ClientHandle>,
) {
    let pair = req.pair.clone();
    let rx = s2s.verify(req);
    let limit = s2s.config.s2s.connect_timeout;
    glommio::spawn_local(async move {
        let outcome = async { rx.await.ok() }
            .or(async {
                glommio::timer::sleep(limit).await;
                None
            })
            .await
            .unwrap_or(dialback::VerifyOutcome::Failed(
                dialback::VerifyFailure::Timeout,
            ));
        outcomes.borrow_mut().push((pair, outcome));
        handle.wake_task();
    })
    .detach();
}

/// A stanza a peer sent on a server stream, either direction: addressing (CORE-S2S-05),
/// the stream's `gate` for the pair of domains (CORE-S2S-06/07), our domain (CORE-S2S-07),
/// then routed from here. The error closes the stream.
pub(super) fn peer_stanza(
    s2s: &S2s,
    kind: Kind,
    head: &xml::StanzaHead<'_>,
    raw: &[u8],
    link: &Link,
    gate: impl FnOnce(&str, &str) -> Result<(), StreamCondition>,
    pending: &mut Vec<Pending>,
) -> Result<(), StreamError> {
    let close = |c: StreamCondition, t: &str| Err(StreamError::with_text(c, t));
    // CORE-S2S-05
    let (Some(to), Some(from)) = (head.attr("to"), head.attr("from")) else {
        return close(
            StreamCondition::ImproperAddressing,
            "a stanza between servers carries to and from",
        );
    };
    let (Ok(to), Ok(from)) = (Jid::parse(&to), Jid::parse(&from)) else {
        return close(StreamCondition::ImproperAddressing, "malformed to or from");
    };
    if let Err(cond) = gate(from.domain(), to.domain()) {
        return close(cond, "not authenticated for this pair of domains");
    }
    if !s2s.hosted(to.domain()) {
        return close(StreamCondition::HostUnknown, "not a domain of this server");
    }
    let Ok(ty) = StanzaType::parse(kind, head.attr("type").as_deref()) else {
        // An undefined type: answered like a client's.
        let err = crate::xmpp::error::StanzaError::with_text(
            crate::xmpp::error::StanzaCondition::BadRequest,
            "unknown type",
        );
        let id = head.attr("id");
        let mut buf = Vec::new();
        err.write_reply(
            kind.name(),
            id.as_deref(),
            Some(from.as_str()),
            Some(to.as_str()),
            s2s.router.config.legacy_error_codes,
            &mut buf,
        );
        s2s.router.route(
            StanzaType::Iq(crate::xmpp::stanza::IqType::Error),
            crate::core::Route::new(&to, &from),
            &buf,
        );
        return Ok(());
    };
    let id = head.attr("id");
    let limits = *link.framer.limits();
    let mut buf = crate::core::sessions::take_buffer();
    let routed = crate::xmpp::content::routable(head, raw, &link.ns, ns::SERVER, &limits, &mut buf)
        .map_err(|e| StreamError::from(&e))?;
    let p = s2s.router.from_peer(ty, &from, &to, id.as_deref(), routed);
    crate::core::sessions::give_buffer(buf);
    if let Some(p) = p {
        pending.push(p);
    }
    Ok(())
}

enum Ev {
    Input,
    Tick,
    End(End),
}
