//! One component connection: the handshake on the accepting shard, then the stream on the
//! home shard of the component's domain. The task owns the socket; the router writes to the
//! component through its [`ClientHandle`] (the same bounded send queue as a client's, so a
//! component that does not read gets its senders' stanzas bounced with
//! `resource-constraint`, and is disconnected after `--slow-client-grace` without progress).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use glommio::net::TcpStream;

use super::handshake::{self, Handshake, Secrets};
use super::{Components, Handoff};
use crate::core::components::{Claim, Directory};
use crate::core::{ClientHandle, Pending};
use crate::xml::{self, Frame, Framer, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::Jid;
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, Kind, StanzaType};

/// Bytes read per system call.
const READ_CHUNK: usize = 16 * 1024;
/// How long closing a stream may take to flush its last words.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// How often an established stream checks for a slow reader and for silence.
const TICK: Duration = Duration::from_secs(1);

/// Why a stream ends.
enum End {
    /// We close with this stream error.
    Error(StreamError),
    /// The component sent `</stream:stream>`.
    PeerClosed,
    /// TCP closed or failed.
    Lost,
    /// The stream moved to its home shard.
    HandedOff,
}

struct Conn {
    comps: Rc<Components>,
    sock: TcpStream,
    peer: SocketAddr,
    framer: Framer,
    ns: std::sync::Arc<StreamNs>,
    /// An incomplete frame.
    inbuf: Vec<u8>,
    /// The read buffer (allocated while the stream lives: components are few).
    rbuf: Vec<u8>,
    handle: Rc<ClientHandle>,
    hs: Handshake,
    /// The component's domain and its claim, once the handshake succeeded.
    domain: Option<(Jid, Claim)>,
    /// Shards (bits, see `Outbox::take_touched`) that the last read queued stanzas for.
    sent_to: u64,
    mesh_ticket: u32,
}

/// The handshake's view of the settings and the directory.
struct View<'a> {
    config: &'a super::ComponentConfig,
    dir: &'a Directory,
}

impl Secrets for View<'_> {
    fn secret(&self, domain: &str) -> Option<&str> {
        self.config.secret(domain)
    }
    fn connected(&self, domain: &str) -> bool {
        self.dir.connected().iter().any(|d| d == domain)
    }
}

/// Counts a connection among the shard's handshaking ones while it lives.
struct Handshaking(Rc<Components>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        let c = &self.0.handshaking;
        c.set(c.get().saturating_sub(1));
    }
}

/// A new connection on this shard: handshake here, then the stream on its home shard.
pub(super) async fn accepted(comps: Rc<Components>, sock: TcpStream, peer: SocketAddr) {
    comps.handshaking.set(comps.handshaking.get() + 1);
    let counted = Handshaking(comps.clone());
    let mut c = Conn::new(
        comps.clone(),
        sock,
        peer,
        Framer::new(preauth_limits(&comps)),
    );
    let limit = comps.config.components.handshake_timeout;
    let r = c
        .handshake()
        .or(async {
            glommio::timer::sleep(limit).await;
            Err(End::Error(StreamError::with_text(
                StreamCondition::ConnectionTimeout,
                "the handshake took too long",
            )))
        })
        .await;
    drop(counted);
    let end = match r {
        Ok(()) => {
            let domain = c.domain.as_ref().map(|(d, _)| d.as_str()).unwrap_or("");
            let home = comps.router.home_of(domain);
            if home != comps.router.shard() {
                c.hand_off(home).await
            } else {
                c.session().await
            }
        }
        Err(end) => end,
    };
    c.finish(end).await;
}

/// A stream whose handshake succeeded on another shard.
pub(super) async fn adopted(comps: Rc<Components>, mut h: Handoff) {
    // SAFETY: the descriptor was dup'ed for this hand-off and is owned by nobody else.
    let sock = unsafe { TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(h.fd)) };
    let domain = match Jid::parse(&h.domain) {
        Ok(d) => d,
        Err(_) => {
            comps.router.component_dir.release(&h.domain, h.claim);
            return;
        }
    };
    let framer = std::mem::replace(&mut h.framer, Framer::new(xml::Limits::default()));
    let mut c = Conn::new(comps, sock, h.peer, framer);
    c.ns = c.framer.stream_ns_shared();
    c.inbuf = std::mem::take(&mut h.unread);
    c.hs = Handshake::established(&h.domain);
    c.domain = Some((domain, h.claim));
    let end = c.session().await;
    c.finish(end).await;
}

fn preauth_limits(comps: &Components) -> xml::Limits {
    comps.config.preauth_xml_limits()
}

impl Conn {
    fn new(comps: Rc<Components>, sock: TcpStream, peer: SocketAddr, framer: Framer) -> Conn {
        let handle = Rc::new(ClientHandle::new(
            comps.config.components.max_send_queue,
            Instant::now(),
        ));
        Conn {
            comps,
            sock,
            peer,
            ns: framer.stream_ns_shared(),
            framer,
            inbuf: Vec::new(),
            rbuf: vec![0u8; READ_CHUNK],
            handle,
            hs: Handshake::new(),
            domain: None,
            sent_to: 0,
            mesh_ticket: 0,
        }
    }

    /// Read until the handshake succeeds and the domain is claimed (Ok), or the stream
    /// fails. Bytes after the handshake stay in `inbuf`.
    async fn handshake(&mut self) -> Result<(), End> {
        loop {
            self.flush().await?;
            let n = self.read().await?;
            let mut data = std::mem::take(&mut self.inbuf);
            data.extend_from_slice(&self.rbuf[..n]);
            let mut pos = 0;
            let done = loop {
                let (frame, used) = match self.framer.next(&data[pos..]) {
                    Ok(Some(f)) => f,
                    Ok(None) => break false,
                    Err(e) => return Err(End::Error(StreamError::from(&e))),
                };
                pos += used;
                if self.handshake_frame(frame)? {
                    break true;
                }
            };
            data.drain(..pos);
            self.inbuf = data;
            if done {
                self.flush().await?;
                return Ok(());
            }
        }
    }

    /// One frame before the handshake completed; true once it has.
    fn handshake_frame(&mut self, frame: Frame<'_>) -> Result<bool, End> {
        let comps = self.comps.clone();
        let view = View {
            config: &comps.config.components,
            dir: &comps.router.component_dir,
        };
        match frame {
            Frame::Whitespace => Ok(false),
            Frame::StreamClose => Err(End::PeerClosed),
            Frame::StreamOpen(hdr) => {
                self.ns = self.framer.stream_ns_shared();
                let r = self.hs.on_header(&hdr, &view, &mut self.handle.out());
                r.map(|()| false).map_err(End::Error)
            }
            Frame::Element(raw) => {
                let limits = *self.framer.limits();
                let ns = self.ns.clone();
                let head = xml::scan_stanza(raw, &ns, &limits)
                    .map_err(|e| End::Error(StreamError::from(&e)))?;
                let text = if handshake::is_handshake(&head) {
                    xml::parse_element(raw, &ns, &limits)
                        .map_err(|e| End::Error(StreamError::from(&e)))?
                        .text()
                } else {
                    String::new()
                };
                // `<handshake/>` is written once the stream is attached on its home shard
                // (`session`): before that, stanzas for the component would find no link.
                let mut greeting = Vec::new();
                let domain = self
                    .hs
                    .on_element(&head, &text, &view, &mut greeting)
                    .map_err(|e| {
                        tracing::info!(peer = %self.peer, domain = ?self.hs.domain(),
                            error = %e.condition.name(), "component handshake refused");
                        End::Error(e)
                    })?;
                // COMP-02: the header was checked, but another stream may have claimed the
                // domain since.
                let claim = comps.router.component_dir.claim(&domain).ok_or_else(|| {
                    End::Error(StreamError::with_text(
                        StreamCondition::Conflict,
                        "another stream serves this component",
                    ))
                })?;
                let jid = match Jid::parse(&domain) {
                    Ok(j) => j,
                    Err(_) => {
                        comps.router.component_dir.release(&domain, claim);
                        return Err(End::Error(StreamError::new(
                            StreamCondition::InternalServerError,
                        )));
                    }
                };
                tracing::info!(peer = %self.peer, %domain, "component connected");
                self.domain = Some((jid, claim));
                self.framer.set_limits(comps.config.xml_limits());
                Ok(true)
            }
        }
    }

    /// Move the authenticated stream to the home shard of its domain.
    async fn hand_off(&mut self, home: usize) -> End {
        let Some((domain, claim)) = self.domain.take() else {
            return End::Lost;
        };
        // SAFETY: dup of a descriptor we own; the duplicate is owned by the hand-off.
        let fd = unsafe { libc::dup(self.sock.as_raw_fd()) };
        if fd < 0 {
            self.comps
                .router
                .component_dir
                .release(domain.as_str(), claim);
            return End::Error(StreamError::new(StreamCondition::InternalServerError));
        }
        let h = Handoff {
            // SAFETY: `fd` is a fresh descriptor from dup, owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            peer: self.peer,
            domain: domain.as_str().to_string(),
            claim,
            framer: std::mem::replace(&mut self.framer, Framer::new(xml::Limits::default())),
            unread: std::mem::take(&mut self.inbuf),
        };
        let links = self.comps.links.clone();
        if !links
            .send(home, crate::shard::ShardMsg::Adopt(Box::new(h)))
            .await
        {
            self.comps
                .router
                .component_dir
                .release(domain.as_str(), claim);
            return End::Error(StreamError::new(StreamCondition::SystemShutdown));
        }
        End::HandedOff
    }

    /// The established stream on the home shard of the component's domain.
    async fn session(&mut self) -> End {
        let Some(domain) = self.domain.as_ref().map(|(d, _)| d.clone()) else {
            return End::Lost;
        };
        *self.handle.jid.borrow_mut() = Some(domain.clone());
        let router = self.comps.router.clone();
        router
            .components
            .attach(domain.as_str(), self.handle.clone());
        // COMP-04: the component learns it is connected once stanzas can reach it.
        self.handle.out().extend_from_slice(b"<handshake/>");
        let metrics = router.outbox.metrics().clone();
        metrics.peer(crate::metrics::Peer::Component, 1);
        let end = self.stream().await;
        metrics.peer(crate::metrics::Peer::Component, -1);
        router.components.detach(domain.as_str(), &self.handle);
        if let Some((d, claim)) = self.domain.take() {
            router.component_dir.release(d.as_str(), claim);
            tracing::info!(peer = %self.peer, domain = %d, "component disconnected");
        }
        end
    }

    async fn stream(&mut self) -> End {
        // Bytes that arrived with the handshake come first.
        if !self.inbuf.is_empty() {
            if let Err(end) = self.input(0).await {
                return end;
            }
        }
        let mut tick = Box::pin(glommio::timer::Timer::new(TICK));
        loop {
            let ev = poll_fn(|cx| self.poll_event(cx, &mut tick)).await;
            let r = match ev {
                Ev::Input(n) => self.input(n).await,
                Ev::Tick => {
                    tick = Box::pin(glommio::timer::Timer::new(TICK));
                    self.on_tick()
                }
                Ev::End(end) => Err(end),
            };
            if let Err(end) = r {
                return end;
            }
        }
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        tick: &mut Pin<Box<glommio::timer::Timer>>,
    ) -> Poll<Ev> {
        self.handle.set_waker(cx.waker());
        if let Poll::Ready(Err(_)) = self.poll_flush(cx) {
            return Poll::Ready(Ev::End(End::Lost));
        }
        if let Some(e) = self.handle.take_close() {
            return Poll::Ready(Ev::End(End::Error(e)));
        }
        if tick.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ev::Tick);
        }
        // Back-pressure across shards: while a shard this stream's last read sent to is
        // congested, read nothing more.
        if self.sent_to != 0 {
            let outbox = &self.comps.router.outbox;
            match outbox.poll_clear(self.sent_to, cx, &mut self.mesh_ticket) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => self.sent_to = 0,
            }
        }
        match Pin::new(&mut self.sock).poll_read(cx, &mut self.rbuf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Ev::End(End::Lost)),
            Poll::Ready(Ok(n)) => Poll::Ready(Ev::Input(n)),
        }
    }

    /// A component that reads nothing while its queue is over the bound is disconnected
    /// after the grace period (as a client is by the sweeper).
    fn on_tick(&mut self) -> Result<(), End> {
        let grace = self.comps.config.slow_client_grace;
        if self
            .handle
            .slow_since()
            .is_some_and(|t| t.elapsed() >= grace)
        {
            return Err(End::Error(StreamError::with_text(
                StreamCondition::PolicyViolation,
                "the component does not read its stream",
            )));
        }
        Ok(())
    }

    /// Frame and route `n` newly read bytes (after what `inbuf` holds), then await what
    /// routing started (offline storage) before reading on.
    async fn input(&mut self, n: usize) -> Result<(), End> {
        self.handle.last_rx.set(Instant::now());
        let outbox = self.comps.router.outbox.clone();
        outbox.take_touched();
        let mut pending: Vec<Pending> = Vec::new();
        let r = self.frames(n, &mut pending);
        self.sent_to = outbox.take_touched();
        for p in pending {
            p.await;
        }
        r
    }

    fn frames(&mut self, n: usize, pending: &mut Vec<Pending>) -> Result<(), End> {
        let rbuf = std::mem::take(&mut self.rbuf);
        let owned;
        let data: &[u8] = if self.inbuf.is_empty() {
            &rbuf[..n]
        } else {
            self.inbuf.extend_from_slice(&rbuf[..n]);
            owned = std::mem::take(&mut self.inbuf);
            &owned
        };
        let mut pos = 0;
        let r = loop {
            let (frame, used) = match self.framer.next(&data[pos..]) {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(e) => break Err(End::Error(StreamError::from(&e))),
            };
            pos += used;
            match frame {
                Frame::Whitespace => {}
                Frame::StreamClose => break Err(End::PeerClosed),
                Frame::StreamOpen(_) => {
                    break Err(End::Error(StreamError::with_text(
                        StreamCondition::NotAuthorized,
                        "a component stream does not restart",
                    )))
                }
                Frame::Element(raw) => match self.stanza(raw) {
                    Ok(Some(p)) => pending.push(p),
                    Ok(None) => {}
                    Err(e) => break Err(End::Error(e)),
                },
            }
        };
        if r.is_ok() {
            if let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
                self.inbuf = rest.to_vec();
            }
        }
        self.rbuf = rbuf;
        r
    }

    /// One element from the authenticated component (COMP-06, COMP-07).
    fn stanza(&mut self, raw: &[u8]) -> Result<Option<Pending>, StreamError> {
        let limits = *self.framer.limits();
        let ns = self.ns.clone();
        let head = xml::scan_stanza(raw, &ns, &limits).map_err(|e| StreamError::from(&e))?;
        let kind = (head.ns == ns::COMPONENT_ACCEPT)
            .then(|| Kind::from_name(head.name))
            .flatten();
        let Some(kind) = kind else {
            return Err(StreamError::with_text(
                StreamCondition::UnsupportedStanzaType,
                format!("unexpected <{}/>", head.name),
            ));
        };
        let (Some(to_attr), Some(from_attr)) = (head.attr("to"), head.attr("from")) else {
            return Err(StreamError::with_text(
                StreamCondition::ImproperAddressing,
                "a component's stanza carries both to and from",
            ));
        };
        let router = self.comps.router.clone();
        let own = self.domain.as_ref().map(|(d, _)| d.as_str()).unwrap_or("");
        let from = match Jid::parse(&from_attr) {
            Ok(j) if router.component_of(j.domain()) == Some(own) => j,
            _ => {
                return Err(StreamError::with_text(
                    StreamCondition::InvalidFrom,
                    "from is not in the component's domain",
                ))
            }
        };
        let id = head.attr("id");
        let ty = StanzaType::parse(kind, head.attr("type").as_deref());
        let reply = |cond: StanzaCondition, text: &str| {
            let legacy = router.config.legacy_error_codes;
            let err = StanzaError::with_text(cond, text);
            self.handle.send_with(|out| {
                err.write_reply(
                    kind.name(),
                    id.as_deref(),
                    Some(from.as_str()),
                    Some(&to_attr),
                    legacy,
                    out,
                )
            });
        };
        let Ok(ty) = ty else {
            reply(StanzaCondition::BadRequest, "unknown type");
            return Ok(None);
        };
        let to = match Jid::parse(&to_attr) {
            Ok(j) => j,
            Err(_) if ty.is_error() => return Ok(None),
            Err(_) => {
                reply(StanzaCondition::JidMalformed, "malformed to");
                return Ok(None);
            }
        };
        if let StanzaType::Iq(it) = ty {
            // CORE-STANZA-05/06, as for clients.
            if id.is_none() {
                if ty.is_request() {
                    reply(StanzaCondition::BadRequest, "missing id");
                }
                return Ok(None);
            }
            if matches!(it, IqType::Get | IqType::Set) && head.child_elements != 1 {
                reply(
                    StanzaCondition::BadRequest,
                    "an IQ request carries exactly one payload",
                );
                return Ok(None);
            }
        }
        let mut buf = crate::core::sessions::take_buffer();
        let routed = crate::xmpp::content::routable(
            &head,
            raw,
            &ns,
            ns::COMPONENT_ACCEPT,
            &limits,
            &mut buf,
        )
        .map_err(|e| StreamError::from(&e))?;
        let p = router.from_peer(ty, &from, &to, id.as_deref(), routed);
        crate::core::sessions::give_buffer(buf);
        Ok(p)
    }

    async fn read(&mut self) -> Result<usize, End> {
        match futures_lite::AsyncReadExt::read(&mut self.sock, &mut self.rbuf).await {
            Ok(0) | Err(_) => Err(End::Lost),
            Ok(n) => Ok(n),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let sock = &mut self.sock;
            match self
                .handle
                .drain_with(|unsent| Pin::new(&mut *sock).poll_write(cx, unsent))
            {
                Poll::Ready(Ok(0)) if self.handle.unsent() == 0 => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        poll_fn(|cx| self.poll_flush(cx))
            .await
            .map_err(|_| End::Lost)
    }

    /// Say goodbye as `end` requires and close the socket.
    async fn finish(&mut self, end: End) {
        if let Some((d, claim)) = self.domain.take() {
            self.comps.router.component_dir.release(d.as_str(), claim);
        }
        match end {
            End::HandedOff | End::Lost => {
                self.handle.discard();
                return;
            }
            End::Error(e) => {
                tracing::debug!(peer = %self.peer, error = %e.condition.name(), "component stream error");
                // The error closes the stream (`</stream:stream>` included).
                let mut out = Vec::new();
                self.hs.write_error(&e, &mut out);
                self.handle.out().extend_from_slice(&out);
            }
            End::PeerClosed => self.handle.out().extend_from_slice(b"</stream:stream>"),
        }
        let _ = self
            .flush()
            .or(async {
                glommio::timer::sleep(CLOSE_FLUSH).await;
                Err(End::Lost)
            })
            .await;
        self.handle.discard();
        crate::c2s::linger_close(&mut self.sock).await;
    }
}

enum Ev {
    Input(usize),
    Tick,
    End(End),
}
