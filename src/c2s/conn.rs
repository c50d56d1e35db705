//! One client connection: the task that owns the socket and the TLS state, reads and frames
//! bytes, drives the negotiator, gates and stamps stanzas, and writes whatever the shard queued
//! for this client.
//!
//! Reads go into the shard's read buffer and are processed in place; only an incomplete frame
//! is copied into the connection's own buffer, so an idle connection holds no buffer at all.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use glommio::net::TcpStream;

use super::bosh::{BoshLink, BoshMove, Ending};
use super::ws::{Message, WsLink};
use super::C2s;
use crate::config::IqAuthMode;
use crate::core::{sessions, ClientHandle, Pending};
use crate::metrics::{ConnState, Transport};
use crate::session::{self, Session};
use crate::stream::sasl::{self, ChannelBindings, ScramKeys};
use crate::stream::{Action, Env, Negotiator};
use crate::xml::{self, Frame, Framer, StreamNs};
use crate::xmpp::error::{StreamCondition, StreamError};
use crate::xmpp::jid::Jid;
use crate::xmpp::ns;
use crate::xmpp::stanza::MessageType;
use tungstenite::protocol::frame::coding::CloseCode;

/// Reads per poll before the task yields to others.
const READS_PER_POLL: usize = 16;
/// How long closing a stream may take to flush its last words.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// How long a closed stream keeps reading (and discarding) the peer's input so that the peer
/// is not reset while our last words are in flight (see [`linger_close`]).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A connection moving to its home shard after authentication.
pub struct Handoff {
    /// The socket (a dup of the original descriptor); `None` for a BOSH session.
    pub fd: Option<OwnedFd>,
    /// TLS state, if TLS is on.
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// Decrypted bytes received but not processed yet (e.g. the pipelined restart header).
    pub unread: Vec<u8>,
    /// The authenticated account.
    pub user: Jid,
    /// The stream is encrypted.
    pub secured: bool,
    /// The stream arrived on the direct-TLS port.
    pub direct_tls: bool,
    /// The client's `xml:lang`.
    pub lang: Option<String>,
    /// The peer address.
    pub peer: SocketAddr,
    /// When the connection was accepted (the authentication deadline counts from here).
    pub created: Instant,
    /// The account revocation sequence number the credentials were checked at.
    pub auth_seq: u64,
    /// A XEP-0078 login: its stream continues as it is (no restart) and binds on arrival.
    pub iq_auth: Option<Box<IqAuthHandoff>>,
    /// An RFC 7395 WebSocket connection: its framing state, undecoded input included.
    pub ws: Option<Box<WsLink>>,
    /// A BOSH session (XEP-0124/0206): its state; it has no socket of its own.
    pub bosh: Option<Box<BoshMove>>,
}

/// What a XEP-0078 login carries to the home shard besides the SASL hand-off's data.
pub struct IqAuthHandoff {
    /// Waiting to bind ([`Negotiator::iq_auth_pending`]).
    neg: Negotiator,
    /// Inside the open stream, at a frame boundary.
    framer: Framer,
    /// The login is not complete until its bind succeeds.
    preauth: Option<super::limits::Preauth>,
}

/// Why a connection ends.
enum End {
    /// We close with this stream error.
    Error(StreamError),
    /// The client sent `</stream:stream>`.
    ClientClosed,
    /// Final bytes are already queued (e.g. a TLS `<failure/>`).
    Written,
    /// The peer closed TCP (or TLS) without closing the stream, or an I/O error occurred.
    Lost,
    /// The connection moved to another shard.
    HandedOff,
    /// WebSocket: the client sent a Close frame or broke RFC 6455; answer with this Close.
    WsClose(CloseCode),
}

/// Asynchronous work that interrupts input processing.
enum Job {
    StartTls,
    Authenticated(Jid),
    VerifyPlain { password: String, keys: ScramKeys },
    Pending(Pending),
}

enum Ev {
    Job(Job),
    End(End),
}

pub struct Conn {
    c2s: Rc<C2s>,
    /// The socket (`None` for a BOSH session, whose requests arrive on HTTP connections).
    sock: Option<TcpStream>,
    /// A BOSH session: where its input comes from and its output goes.
    bosh: Option<Rc<BoshLink>>,
    tls: Option<Box<rustls::ServerConnection>>,
    tls_out: Vec<u8>,
    tls_out_pos: usize,
    /// Ciphertext read but not yet fed to rustls (processing was interrupted by a job).
    tls_in: Vec<u8>,
    inbuf: Vec<u8>,
    reprocess: bool,
    framer: Framer,
    /// The namespace context of the current stream header (shared so that a stanza view can
    /// borrow it while the connection is mutated).
    ns: std::sync::Arc<StreamNs>,
    neg: Negotiator,
    handle: Rc<ClientHandle>,
    slot: usize,
    /// The session after negotiation (gate, bind, stamping, routing).
    session: Session,
    peer: SocketAddr,
    /// Channel-binding data, once the TLS handshake is done (boxed: rare and post-login dead
    /// weight in a long-lived connection).
    bindings: Option<Box<ChannelBindings>>,
    /// Shards (bits, see `Outbox::take_touched`) that the last read queued stanzas for.
    sent_to: u64,
    /// This task's registration round with the outbox's congestion waiters.
    mesh_ticket: u32,
    /// The connection's place among its address's unauthenticated connections, until it
    /// authenticates or closes (`None` once authenticated, or for an exempt address).
    preauth: Option<super::limits::Preauth>,
    /// RFC 7395: the stream travels in WebSocket messages (`None` on the XMPP ports; taken
    /// out while its input is processed).
    ws: Option<Box<WsLink>>,
    /// A WebSocket connection (`ws` may be momentarily taken).
    websocket: bool,
    /// How the connections gauge counts this one (metrics).
    counted: Option<(Transport, ConnState)>,
}

impl Conn {
    pub(super) fn accepted(
        c2s: Rc<C2s>,
        sock: TcpStream,
        peer: SocketAddr,
        tls: Option<Box<rustls::ServerConnection>>,
        direct_tls: bool,
        preauth: Option<super::limits::Preauth>,
    ) -> Conn {
        let mut conn = Conn::build(
            c2s,
            Some(sock),
            peer,
            tls,
            Negotiator::new(direct_tls),
            Instant::now(),
            Vec::new(),
        );
        // Issue 8: before authentication, elements are held to the smaller pre-auth limit.
        conn.framer.set_limits(conn.c2s.config.preauth_xml_limits());
        conn.preauth = preauth;
        conn.count_as(ConnState::Authenticating);
        conn
    }

    pub(super) fn adopted(c2s: Rc<C2s>, h: Handoff) -> Conn {
        // SAFETY: the descriptor was dup'ed for this hand-off and is owned by nobody else.
        let sock =
            h.fd.map(|fd| unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) });
        let (neg, iq_auth) = match h.iq_auth {
            Some(x) => {
                tracing::debug!(jid = %h.user, peer = %h.peer, "XEP-0078 login moved here");
                (x.neg, Some((x.framer, x.preauth)))
            }
            None => (
                Negotiator::resume(h.user, h.secured, h.direct_tls, h.lang),
                None,
            ),
        };
        let mut conn = Conn::build(c2s, sock, h.peer, h.tls, neg, h.created, h.unread);
        conn.handle.auth_seq.set(h.auth_seq);
        if let Some(m) = h.bosh {
            let link = BoshLink::arrive(conn.handle.clone(), m);
            conn.c2s
                .bosh
                .set(&link.sid(), super::bosh::Entry::Local(link.clone()));
            conn.bosh = Some(link);
        }
        if let Some(ws) = h.ws {
            conn.reprocess |= !ws.input.is_empty();
            conn.ns = std::sync::Arc::new(super::ws::client_ns());
            conn.ws = Some(ws);
            conn.websocket = true;
        }
        conn.count_as(ConnState::Established);
        if let Some((framer, preauth)) = iq_auth {
            conn.framer = framer;
            conn.ns = conn.framer.stream_ns_shared();
            conn.preauth = preauth;
            if let Err(e) = conn.iq_auth_bind() {
                conn.handle.request_close(e);
            }
        }
        conn
    }

    fn build(
        c2s: Rc<C2s>,
        sock: Option<TcpStream>,
        peer: SocketAddr,
        tls: Option<Box<rustls::ServerConnection>>,
        neg: Negotiator,
        created: Instant,
        unread: Vec<u8>,
    ) -> Conn {
        Conn::build_with(c2s, sock, peer, tls, neg, created, unread, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_with(
        c2s: Rc<C2s>,
        sock: Option<TcpStream>,
        peer: SocketAddr,
        tls: Option<Box<rustls::ServerConnection>>,
        neg: Negotiator,
        created: Instant,
        unread: Vec<u8>,
        handle: Option<Rc<ClientHandle>>,
    ) -> Conn {
        let handle = handle
            .unwrap_or_else(|| Rc::new(ClientHandle::new(c2s.config.max_send_queue, created)));
        let slot = c2s.register(handle.clone());
        let session = Session::new(c2s.router.clone(), handle.clone());
        Conn {
            session,
            framer: Framer::new(c2s.config.xml_limits()),
            ns: std::sync::Arc::new(StreamNs::new(ns::CLIENT)),
            c2s,
            sock,
            bosh: None,
            tls,
            tls_out: Vec::new(),
            tls_out_pos: 0,
            tls_in: Vec::new(),
            reprocess: !unread.is_empty(),
            inbuf: unread,
            neg,
            handle,
            slot,
            peer,
            bindings: None,
            sent_to: 0,
            mesh_ticket: 0,
            preauth: None,
            ws: None,
            websocket: false,
            counted: None,
        }
    }

    /// A connection upgraded to XMPP over WebSocket on the HTTP port (`tls` on HTTPS);
    /// `unread` holds the client's frames that followed its handshake.
    pub fn upgraded(
        c2s: Rc<C2s>,
        sock: TcpStream,
        peer: SocketAddr,
        tls: Option<Box<rustls::ServerConnection>>,
        preauth: Option<super::limits::Preauth>,
        unread: Vec<u8>,
    ) -> Conn {
        let secure = tls.is_some();
        let mut conn = Conn::build(
            c2s,
            Some(sock),
            peer,
            tls,
            // Over HTTPS the stream is encrypted from the start, as on a direct-TLS port.
            Negotiator::new(secure),
            Instant::now(),
            Vec::new(),
        );
        let limits = conn.c2s.config.preauth_xml_limits();
        conn.framer.set_limits(limits);
        conn.ns = std::sync::Arc::new(super::ws::client_ns());
        // Before authentication a message is held to the smaller limit, as on TCP.
        let mut ws = Box::new(WsLink::new(limits));
        conn.reprocess = !unread.is_empty();
        ws.input = unread;
        conn.ws = Some(ws);
        conn.websocket = true;
        conn.preauth = preauth;
        conn.count_as(ConnState::Authenticating);
        conn
    }

    /// A new BOSH session (XEP-0124/0206) whose requests the HTTP listener hands to `link`;
    /// `secure` when it was created over HTTPS (then it is an encrypted stream).
    pub fn bosh(
        c2s: Rc<C2s>,
        handle: Rc<ClientHandle>,
        link: Rc<BoshLink>,
        peer: SocketAddr,
        secure: bool,
        preauth: Option<super::limits::Preauth>,
    ) -> Conn {
        let mut conn = Conn::build_with(
            c2s,
            None,
            peer,
            None,
            Negotiator::new(secure),
            Instant::now(),
            Vec::new(),
            Some(handle),
        );
        conn.framer.set_limits(conn.c2s.config.preauth_xml_limits());
        conn.bosh = Some(link);
        conn.preauth = preauth;
        conn.count_as(ConnState::Authenticating);
        conn
    }

    /// The connection's task.
    ///
    /// The task's future stays small for the connection's idle life: the rare, larger futures
    /// (jobs at login, the farewell) are boxed only while they run.
    ///
    /// Written as an `async move` block over the connection (not an `async fn` taking `self`):
    /// an async fn keeps its by-value argument twice in its state, an async block once.
    pub fn run(self) -> impl std::future::Future<Output = ()> {
        let mut conn = self;
        async move {
            let end = conn.serve().await;
            Box::pin(conn.finish(end)).await;
        }
    }

    async fn serve(&mut self) -> End {
        loop {
            let ev = poll_fn(|cx| self.poll(cx)).await;
            let job = match ev {
                Ev::End(end) => return end,
                Ev::Job(job) => job,
            };
            if let Some(end) = Box::pin(self.run_job(job)).await {
                return end;
            }
            // What the job queued for other shards counts like what a read queued (see poll).
            self.sent_to |= self.c2s.router.outbox.take_touched();
        }
    }

    async fn run_job(&mut self, job: Job) -> Option<End> {
        match job {
            Job::Pending(fut) => {
                fut.await;
                // Stanzas pipelined behind the one that started the job are still buffered.
                self.reprocess = true;
                None
            }
            Job::StartTls => {
                if let Err(end) = self.flush_all().await {
                    return Some(end);
                }
                // CORE-TLS-06: nothing received before the handshake is processed after it.
                self.inbuf = Vec::new();
                self.reprocess = false;
                self.framer.reset();
                match self.c2s.new_tls(false) {
                    Some(t) => {
                        self.tls = Some(t);
                        None
                    }
                    None => Some(End::Lost),
                }
            }
            Job::VerifyPlain { password, keys } => {
                let ok = glommio::executor()
                    .spawn_blocking(move || sasl::verify_plain(&password, &keys))
                    .await;
                let action = {
                    let bindings = self.bindings.as_deref().cloned().unwrap_or_default();
                    let store = self.c2s.router.storage.accounts();
                    let accounts = super::Lookups::new(&store);
                    let env = env(
                        &self.c2s,
                        &bindings,
                        &accounts,
                        self.websocket || self.bosh.is_some(),
                    );
                    let mut out = self.handle.out();
                    let failed = self.neg.attempts_failed();
                    let action = self.neg.plain_verified(ok, &env, &mut out);
                    self.note_attempts(failed);
                    self.note_lookup(&accounts);
                    action
                };
                self.reprocess = true;
                match action {
                    Ok(Action::Authenticated(user)) => self.authenticated(user).await,
                    Ok(_) => None,
                    Err(e) => Some(End::Error(e)),
                }
            }
            Job::Authenticated(user) => {
                self.reprocess = true;
                self.authenticated(user).await
            }
        }
    }

    /// SASL succeeded: the next header restarts the stream, possibly on another shard. Or a
    /// XEP-0078 login succeeded: its resource is bound on the home shard, and the stream goes
    /// on there.
    async fn authenticated(&mut self, user: Jid) -> Option<End> {
        self.c2s
            .router
            .outbox
            .metrics()
            .auth_ok(self.neg.auth_method());
        let iq_auth = self.neg.iq_auth_pending().is_some();
        if !iq_auth {
            self.framer.reset();
            self.framer.set_limits(self.c2s.config.xml_limits());
            if let Some(ws) = self.ws.as_mut() {
                ws.set_limits(self.c2s.config.xml_limits());
            }
            // No longer one of its address's unauthenticated connections.
            self.preauth = None;
        }
        if let Err(end) = self.flush_all().await {
            return Some(end);
        }
        let home = self.c2s.router.home_of(user.bare_str());
        if home == self.c2s.router.shard() {
            self.count_as(ConnState::Established);
            return self.iq_auth_bind().err().map(End::Error);
        }
        // Whatever was received travels with the connection, decrypted.
        if let Some(tls) = self.tls.as_mut() {
            let cipher = std::mem::take(&mut self.tls_in);
            let mut rest: &[u8] = &cipher;
            let mut buf = [0u8; 4096];
            loop {
                loop {
                    match tls.reader().read(&mut buf) {
                        // The peer sent close_notify: nothing more will come, no hand-off.
                        Ok(0) => return Some(End::Lost),
                        Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return Some(End::Lost),
                    }
                }
                if rest.is_empty() {
                    break;
                }
                if let Err(end) = feed_tls(tls, &mut rest, self.peer) {
                    return Some(end);
                }
            }
        }
        if let Some(ws) = self.ws.as_mut() {
            // WebSocket input is raw frames: it travels in the link, not as stream bytes.
            ws.input.append(&mut self.inbuf);
        }
        let fd = match self.sock.as_ref() {
            Some(sock) => {
                // SAFETY: dup of a descriptor we own; the result is a new descriptor owned by
                // the OwnedFd.
                let raw = unsafe { libc::dup(sock.as_raw_fd()) };
                if raw < 0 {
                    tracing::error!(error = %std::io::Error::last_os_error(), "dup failed");
                    return Some(End::Error(StreamError::new(
                        StreamCondition::InternalServerError,
                    )));
                }
                // SAFETY: `raw` is a fresh descriptor returned by dup and owned by nobody else.
                Some(unsafe { OwnedFd::from_raw_fd(raw) })
            }
            None => None,
        };
        // A BOSH session's state travels instead of a socket: requests for it are handed
        // to the home shard from now on (the creating shard keeps a forwarding entry).
        let bosh = self.bosh.take().map(|link| {
            self.inbuf.extend_from_slice(&link.take_input());
            self.c2s
                .bosh
                .set(&link.sid(), super::bosh::Entry::Moved(home));
            link.depart(home)
        });
        let mut h = Handoff {
            fd,
            bosh,
            tls: self.tls.take(),
            unread: std::mem::take(&mut self.inbuf),
            user,
            secured: self.neg.secured(),
            direct_tls: self.neg.direct_tls(),
            lang: self.neg.lang().map(str::to_string),
            peer: self.peer,
            created: self.handle.created,
            auth_seq: self.handle.auth_seq.get(),
            iq_auth: None,
            ws: self.ws.take(),
        };
        if iq_auth {
            let limits = self.c2s.config.preauth_xml_limits();
            h.iq_auth = Some(Box::new(IqAuthHandoff {
                neg: std::mem::replace(&mut self.neg, Negotiator::new(false)),
                framer: std::mem::replace(&mut self.framer, Framer::new(limits)),
                preauth: self.preauth.take(),
            }));
        }
        let sent = self
            .c2s
            .links
            .send(home, crate::shard::ShardMsg::Adopt(Box::new(h)))
            .await;
        // Not sent: the server is stopping and the hand-off (socket dup, TLS state) was
        // dropped; the connection just closes.
        Some(if sent { End::HandedOff } else { End::Lost })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ev> {
        let c2s = self.c2s.clone();
        for _ in 0..READS_PER_POLL {
            if let Some(err) = self.handle.take_close() {
                return Poll::Ready(Ev::End(End::Error(err)));
            }
            if let Poll::Ready(Err(_)) = self.poll_flush(cx) {
                return Poll::Ready(Ev::End(End::Lost));
            }
            if self.reprocess {
                self.reprocess = false;
                c2s.router.outbox.take_touched();
                let r = self.on_input(&[]);
                self.sent_to |= c2s.router.outbox.take_touched();
                match r {
                    Ok(None) => continue,
                    Ok(Some(job)) => return Poll::Ready(Ev::Job(job)),
                    Err(end) => return Poll::Ready(Ev::End(end)),
                }
            }
            // Cross-shard back-pressure: while a shard that the last read sent stanzas to is
            // congested, read nothing more (TCP pushes back on the client). Traffic to
            // other shards, and this connection's output, go on.
            if self.sent_to != 0 {
                match c2s
                    .router
                    .outbox
                    .poll_clear(self.sent_to, cx, &mut self.mesh_ticket)
                {
                    Poll::Pending => {
                        self.handle.set_waker(cx.waker());
                        return Poll::Pending;
                    }
                    Poll::Ready(()) => self.sent_to = 0,
                }
            }
            let mut buf = c2s.read_buf.borrow_mut();
            let read = match (&mut self.sock, &self.bosh) {
                (_, Some(link)) => link.poll_read(cx, &mut buf).map(Ok),
                (Some(sock), None) => Pin::new(sock).poll_read(cx, &mut buf),
                (None, None) => Poll::Ready(Ok(0)),
            };
            let n = match read {
                Poll::Pending => {
                    self.handle.set_waker(cx.waker());
                    return Poll::Pending;
                }
                Poll::Ready(Err(_)) | Poll::Ready(Ok(0)) => return Poll::Ready(Ev::End(End::Lost)),
                Poll::Ready(Ok(n)) => n,
            };
            self.handle.last_rx.set(Instant::now());
            self.handle.ping_sent.set(None);
            c2s.router.outbox.take_touched();
            let r = self.on_input(&buf[..n]);
            self.sent_to = c2s.router.outbox.take_touched();
            match r {
                Ok(None) => {}
                Ok(Some(job)) => return Poll::Ready(Ev::Job(job)),
                Err(end) => return Poll::Ready(Ev::End(end)),
            }
        }
        // Fairness: let other connections run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Process newly read bytes (or, with `data` empty, whatever is still buffered after a
    /// job interrupted processing).
    fn on_input(&mut self, data: &[u8]) -> Result<Option<Job>, End> {
        if self.tls.is_none() {
            return self.on_plain(data);
        }
        // Decrypted bytes left over from before come first.
        if let Some(job) = self.on_plain(&[])? {
            self.tls_in.extend_from_slice(data);
            return Ok(Some(job));
        }
        if self.tls_in.is_empty() {
            return self.on_tls(data);
        }
        let mut pending = std::mem::take(&mut self.tls_in);
        pending.extend_from_slice(data);
        self.on_tls(&pending)
    }

    /// Feed ciphertext to rustls and process what it decrypts, draining the plaintext before
    /// feeding more (rustls bounds its plaintext buffer). Ciphertext not fed when a job
    /// interrupts is kept in `tls_in`.
    fn on_tls(&mut self, mut data: &[u8]) -> Result<Option<Job>, End> {
        let c2s = self.c2s.clone();
        let mut plain = c2s.plain_buf.borrow_mut();
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(None);
            };
            if self.bindings.is_none() && !tls.is_handshaking() {
                self.bindings = Some(Box::new(ChannelBindings {
                    tls_server_end_point: c2s
                        .tls
                        .as_ref()
                        .and_then(|t| t.server_end_point.as_deref())
                        .map(<[u8]>::to_vec),
                    tls_exporter: crate::tls::tls_exporter(tls),
                }));
            }
            match tls.reader().read(&mut plain) {
                Ok(0) => return Err(End::Lost),
                Ok(n) => {
                    if let Some(job) = self.on_plain(&plain[..n])? {
                        self.tls_in.extend_from_slice(data);
                        return Ok(Some(job));
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(End::Lost),
            }
            if data.is_empty() {
                return Ok(None);
            }
            feed_tls(tls, &mut data, self.peer)?;
        }
    }

    /// Process plaintext; an incomplete frame stays in `inbuf`.
    fn on_plain(&mut self, data: &[u8]) -> Result<Option<Job>, End> {
        if let Some(mut ws) = self.ws.take() {
            ws.receive(data);
            let r = self.on_ws(&mut ws);
            ws.release_input();
            self.ws = Some(ws);
            return r;
        }
        if self.inbuf.is_empty() {
            let (used, job) = self.process(data)?;
            if let Some(rest) = data.get(used..).filter(|r| !r.is_empty()) {
                if !matches!(job, Some(Job::StartTls)) {
                    self.inbuf.extend_from_slice(rest);
                }
            }
            return Ok(job);
        }
        let mut buf = std::mem::take(&mut self.inbuf);
        buf.extend_from_slice(data);
        let (used, job) = self.process(&buf)?;
        if matches!(job, Some(Job::StartTls)) {
            return Ok(job);
        }
        buf.drain(..used.min(buf.len()));
        if !buf.is_empty() {
            self.inbuf = buf;
        }
        Ok(job)
    }

    /// RFC 7395: decode the client's WebSocket frames and handle each message, until input
    /// runs out or a job interrupts (the rest stays in `ws.input`).
    fn on_ws(&mut self, ws: &mut WsLink) -> Result<Option<Job>, End> {
        loop {
            let limits = *self.framer.limits();
            let decoded = match ws.decoder.decode(&mut ws.input) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "WebSocket protocol error");
                    return Err(End::WsClose(e.close_code()));
                }
            };
            let consumed = decoded.consumed;
            let outcome = match decoded.event {
                None => Ok(None),
                Some(crate::http::ws::Event::Text(text)) => {
                    match WsLink::classify(&mut ws.inframer, text.as_bytes(), &limits) {
                        Err(e) => Err(End::Error(e)),
                        Ok(Message::Close) => Err(End::ClientClosed),
                        Ok(Message::Open(_)) if self.c2s.config.http.see_other_uri.is_some() => {
                            // WS-09: `<close see-other-uri/>` instead of `<open/>`.
                            let uri = self.c2s.config.http.see_other_uri.as_deref();
                            ws.redirect(uri.unwrap_or_default());
                            Err(End::WsClose(CloseCode::Normal))
                        }
                        Ok(Message::Open(hdr)) => self.on_frame(Frame::StreamOpen(hdr)),
                        Ok(Message::Element(raw)) => self.on_frame(Frame::Element(raw)),
                    }
                }
                Some(crate::http::ws::Event::Ping(payload)) => {
                    // At most 125 bytes (RFC 6455 §5.5): copied out of the input it borrows.
                    let mut copy = [0u8; crate::http::ws::MAX_CONTROL_PAYLOAD];
                    let n = payload.len().min(copy.len());
                    copy[..n].copy_from_slice(&payload[..n]);
                    ws.pong(&copy[..n]);
                    Ok(None)
                }
                Some(crate::http::ws::Event::Pong(_)) => Ok(None),
                Some(crate::http::ws::Event::Close(_)) => Err(End::WsClose(CloseCode::Normal)),
            };
            ws.input.drain(..consumed.min(ws.input.len()));
            match outcome {
                Ok(None) if consumed == 0 => return Ok(None),
                Ok(None) => {}
                other => return other,
            }
        }
    }

    /// Frame and handle as much of `data` as possible. Returns the bytes consumed and the job
    /// that interrupted processing, if any.
    fn process(&mut self, data: &[u8]) -> Result<(usize, Option<Job>), End> {
        let mut pos = 0;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            let (frame, used) = match self.framer.next(rest) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok((pos, None)),
                Err(e) => return Err(End::Error(StreamError::from(&e))),
            };
            pos += used;
            if let Some(job) = self.on_frame(frame)? {
                return Ok((pos, Some(job)));
            }
        }
    }

    fn on_frame(&mut self, frame: Frame<'_>) -> Result<Option<Job>, End> {
        match frame {
            Frame::Whitespace => Ok(None),
            Frame::StreamClose => Err(End::ClientClosed),
            Frame::StreamOpen(hdr) => {
                if !self.websocket {
                    self.ns = self.framer.stream_ns_shared();
                }
                let bindings = self.bindings.as_deref().cloned().unwrap_or_default();
                let store = self.c2s.router.storage.accounts();
                let accounts = super::Lookups::new(&store);
                let action = {
                    let env = env(
                        &self.c2s,
                        &bindings,
                        &accounts,
                        self.websocket || self.bosh.is_some(),
                    );
                    let mut out = self.handle.out();
                    self.neg.on_header(&hdr, &env, &mut out)
                };
                self.note_lookup(&accounts);
                self.action(action)
            }
            Frame::Element(raw) => {
                let limits = *self.framer.limits();
                let stream_ns = self.ns.clone();
                let head = xml::scan_stanza(raw, &stream_ns, &limits)
                    .map_err(|e| End::Error(StreamError::from(&e)))?;
                if let Some(user) = self.neg.authenticated() {
                    let stream = session::Stream {
                        user,
                        lang: self.neg.lang(),
                        ns: &stream_ns,
                        limits: &limits,
                    };
                    return match self.session.element(&stream, raw, &head) {
                        Ok(pending) => Ok(pending.map(Job::Pending)),
                        Err(e) => Err(End::Error(e)),
                    };
                }
                if let Some(err) = session::before_auth(&head) {
                    return Err(End::Error(err));
                }
                let el = xml::parse_element(raw, &stream_ns, &limits)
                    .map_err(|e| End::Error(StreamError::from(&e)))?;
                let bindings = self.bindings.as_deref().cloned().unwrap_or_default();
                let store = self.c2s.router.storage.accounts();
                let accounts = super::Lookups::new(&store);
                // Issue 8: an address backing off after failed logins may not try now.
                let backoff = if crate::stream::is_login_attempt(&el) {
                    self.c2s.ip_limits.auth_wait(self.peer.ip(), Instant::now())
                } else {
                    None
                };
                let failed = self.neg.attempts_failed();
                let action = {
                    let mut env = env(
                        &self.c2s,
                        &bindings,
                        &accounts,
                        self.websocket || self.bosh.is_some(),
                    );
                    env.auth_backoff = backoff;
                    let mut out = self.handle.out();
                    self.neg.on_nonza(&el, &env, &mut out)
                };
                self.note_attempts(failed);
                self.note_lookup(&accounts);
                self.action(action)
            }
        }
    }

    fn action(&mut self, action: Result<Action, StreamError>) -> Result<Option<Job>, End> {
        match action {
            Ok(Action::Continue) => Ok(None),
            Ok(Action::StartTls) => Ok(Some(Job::StartTls)),
            Ok(Action::Authenticated(user)) => Ok(Some(Job::Authenticated(user))),
            Ok(Action::VerifyPlain { password, keys }) => {
                Ok(Some(Job::VerifyPlain { password, keys }))
            }
            Ok(Action::Close) => Err(End::Written),
            Err(e) => Err(End::Error(e)),
        }
    }

    /// XEP-0078: bind the resource a `jabber:iq:auth` login proved its credentials for, on
    /// the account's home shard, and answer the login (IQAUTH-04, -07). Nothing to do for
    /// SASL. An account change since the credentials were checked ends the stream, as at a
    /// bind.
    fn iq_auth_bind(&mut self) -> Result<(), StreamError> {
        let Some((user, resource)) = self.neg.iq_auth_pending() else {
            return Ok(());
        };
        let (user, resource) = (user.clone(), resource.to_string());
        let result = match self.session.bind_exact(&user, &resource) {
            Ok(jid) => Ok(jid),
            Err(session::StreamErrorOr::Stream(e)) => return Err(e),
            Err(session::StreamErrorOr::Stanza(e)) => Err(e),
        };
        self.neg
            .iq_auth_bound(result.as_ref(), &mut self.handle.out());
        if result.is_ok() {
            self.framer.set_limits(self.c2s.config.xml_limits());
            self.preauth = None;
        }
        Ok(())
    }

    /// Counts this connection in the connections gauge as `state` (moving it from where it
    /// was counted).
    fn count_as(&mut self, state: ConnState) {
        let t = if self.bosh.is_some() {
            Transport::Bosh
        } else if self.websocket {
            Transport::WebSocket
        } else {
            Transport::Tcp
        };
        let m = self.c2s.router.outbox.metrics();
        if let Some((t0, s0)) = self.counted.take() {
            m.conn(t0, s0, -1);
        }
        m.conn(t, state, 1);
        self.counted = Some((t, state));
    }

    /// Remember the revocation sequence number of SASL's last account lookup (issue 8).
    /// Count the failed authentication attempts since the negotiator had `before` of them
    /// against the peer's address.
    fn note_attempts(&self, before: u32) {
        let n = self.neg.attempts_failed().saturating_sub(before);
        if n > 0 {
            self.c2s
                .router
                .outbox
                .metrics()
                .auth_failed(self.neg.auth_method(), u64::from(n));
            self.c2s
                .ip_limits
                .auth_failed(self.peer.ip(), n, Instant::now());
        }
    }

    fn note_lookup(&self, accounts: &super::Lookups<'_>) {
        if let Some(seq) = accounts.seq() {
            self.handle.auth_seq.set(seq);
        }
    }

    /// Write queued output. With TLS, plaintext is encrypted one record batch at a time, so
    /// the queue bound applies to unsent plaintext and at most one batch of ciphertext waits.
    /// On a WebSocket the queue is first cut into messages ([`WsLink::frame_output`]), at most
    /// a bounded batch ahead of the socket.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(link) = self.bosh.as_ref() {
            // BOSH: the queue is cut into the session's output, which requests take.
            let _ = self.handle.drain_with(|unsent| {
                Poll::Ready(Ok::<usize, std::convert::Infallible>(
                    link.write_output(unsent, cx),
                ))
            });
            return if self.handle.unsent() == 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        loop {
            if let Some(ws) = self.ws.as_mut() {
                let _ = self.handle.drain_with(|unsent| {
                    Poll::Ready(Ok::<usize, std::convert::Infallible>(
                        ws.frame_output(unsent),
                    ))
                });
            }
            let Some(sock) = self.sock.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let Some(tls) = self.tls.as_mut() else {
                match drain_plain(&self.handle, self.ws.as_deref_mut(), |unsent| {
                    Pin::new(&mut *sock).poll_write(cx, unsent)
                }) {
                    Poll::Ready(Ok(0)) if plain_left(&self.handle, self.ws.as_deref()) == 0 => {
                        return Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            };
            // Ciphertext first.
            if self.tls_out_pos < self.tls_out.len() {
                let pending = &self.tls_out[self.tls_out_pos..];
                match Pin::new(&mut *sock).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.tls_out_pos += n;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.tls_out_pos = 0;
            self.tls_out.clear();
            // Then encrypt the next batch of plaintext (none during the handshake).
            if !tls.is_handshaking() {
                let _ = drain_plain(&self.handle, self.ws.as_deref_mut(), |unsent| {
                    Poll::Ready(tls.writer().write(unsent))
                });
            }
            if tls.wants_write() {
                if self.tls_out.capacity() == 0 {
                    self.tls_out = sessions::take_buffer();
                }
                while tls.wants_write() {
                    match tls.write_tls(&mut self.tls_out) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                continue;
            }
            sessions::give_buffer(std::mem::take(&mut self.tls_out));
            return Poll::Ready(Ok(()));
        }
    }

    async fn flush_all(&mut self) -> Result<(), End> {
        poll_fn(|cx| self.poll_flush(cx))
            .await
            .map_err(|_| End::Lost)
    }

    /// Say goodbye as the end requires, then release everything this connection held.
    async fn finish(mut self, end: End) {
        let domains = self.c2s.config.domains.clone();
        // On a WebSocket every farewell ends with a Close frame (RFC 7395 §3.6).
        let ws_code = match &end {
            End::WsClose(code) => Some(*code),
            _ => Some(CloseCode::Normal),
        };
        let client_closed = matches!(end, End::ClientClosed);
        let bosh_ending = match &end {
            End::ClientClosed => Ending::Client,
            End::Error(_) | End::Written | End::WsClose(_) => Ending::Server,
            End::Lost | End::HandedOff => Ending::Silent,
        };
        let farewell = match end {
            End::Error(err) => {
                if err.condition != StreamCondition::SystemShutdown {
                    tracing::debug!(peer = %self.peer, error = %err, "closing stream");
                }
                let mut out = self.handle.out();
                self.neg.write_error(&err, &domains, &mut out);
                true
            }
            End::ClientClosed => {
                // On a WebSocket `<close/>` is answered below, whether or not our `<open/>`
                // went out.
                if self.ws.is_none() {
                    self.handle.out().extend_from_slice(b"</stream:stream>");
                }
                true
            }
            End::Written | End::WsClose(_) => true,
            End::Lost | End::HandedOff => false,
        };
        if farewell {
            let flush = async {
                // The last words, then (WebSocket) `<close/>` and the Close frame, then (TLS)
                // close_notify.
                let _ = self.flush_all().await;
                if let Some(ws) = self.ws.as_mut() {
                    if client_closed {
                        ws.close_stream();
                    }
                    if let Some(code) = ws_code {
                        ws.close(code, "");
                    }
                    let _ = self.flush_all().await;
                }
                if let Some(tls) = self.tls.as_mut() {
                    tls.send_close_notify();
                    let _ = self.flush_all().await;
                }
            };
            flush
                .or(async {
                    glommio::timer::sleep(CLOSE_FLUSH).await;
                })
                .await;
        }
        self.session.end();
        if let Some((t, s)) = self.counted.take() {
            self.c2s.router.outbox.metrics().conn(t, s, -1);
        }
        self.c2s.unregister(self.slot);
        self.handle.discard();
        // Its address's place among connections authenticating is free now, not after the
        // linger.
        self.preauth = None;
        if let Some(link) = self.bosh.take() {
            self.c2s.bosh_ended(&link, bosh_ending);
        }
        if let (true, Some(sock)) = (farewell, self.sock.as_mut()) {
            // The session and its slot are gone already; only the descriptor lingers, for a
            // bounded time.
            linger_close(sock).await;
        }
    }
}

/// Feed ciphertext from the front of `data` to rustls and process it: the one place where
/// bytes from the peer enter TLS, so every loop over it terminates.
///
/// rustls consumes nothing once it has received the peer's `close_notify` (`read_tls` returns
/// `Ok(0)`), and refuses input while its buffers are full; a caller that retried would spin
/// for good. No progress on non-empty input therefore ends the connection (`Lost`): the peer
/// closed TLS, so nothing after it can be processed. A TLS error ends it with the alert rustls
/// queued (`Written`; CORE-TLS-12: no XMPP data in the clear after a failed handshake).
fn feed_tls(
    tls: &mut rustls::ServerConnection,
    data: &mut &[u8],
    peer: SocketAddr,
) -> Result<(), End> {
    debug_assert!(!data.is_empty());
    match tls.read_tls(data) {
        Ok(0) | Err(_) => return Err(End::Lost),
        Ok(_) => {}
    }
    if let Err(e) = tls.process_new_packets() {
        tracing::debug!(%peer, error = %e, "TLS error");
        return Err(End::Written);
    }
    Ok(())
}

/// Hands the next plaintext to `write`: the framed WebSocket messages, or the send queue
/// itself on the XMPP ports.
fn drain_plain(
    handle: &ClientHandle,
    ws: Option<&mut WsLink>,
    write: impl FnOnce(&[u8]) -> Poll<std::io::Result<usize>>,
) -> Poll<std::io::Result<usize>> {
    let Some(ws) = ws else {
        return handle.drain_with(write);
    };
    let Some(unsent) = ws.out.get(ws.out_pos..).filter(|u| !u.is_empty()) else {
        return Poll::Ready(Ok(0));
    };
    let r = write(unsent);
    if let Poll::Ready(Ok(n)) = r {
        ws.wrote(n);
    }
    r
}

/// Plaintext still to write: framed messages on a WebSocket (a partial element in the queue
/// waits for the rest of it), the queue elsewhere.
fn plain_left(handle: &ClientHandle, ws: Option<&WsLink>) -> usize {
    match ws {
        Some(ws) => ws.pending(),
        None => handle.unsent(),
    }
}

fn env<'a>(
    c2s: &'a C2s,
    bindings: &'a ChannelBindings,
    accounts: &'a dyn crate::stream::Accounts,
    http: bool,
) -> Env<'a> {
    let config = &c2s.config;
    Env {
        domains: &config.domains,
        require_tls: config.require_tls,
        plain_without_tls: config.plain_without_tls,
        // WS-05, XBOSH-07: no STARTTLS inside WebSocket or BOSH; HTTPS is the encrypted form.
        tls_available: c2s.tls.is_some() && !http,
        bindings,
        max_auth_failures: config.max_auth_failures,
        post_auth_features: c2s.router.registry.stream_features(),
        accounts,
        fake_salt_secret: &c2s.secret,
        scram_iterations: config.scram_iterations,
        auth_backoff: None,
        iq_auth: config.iq_auth != IqAuthMode::Off,
        iq_auth_without_tls: config.iq_auth == IqAuthMode::On,
        legacy_error_codes: config.legacy_error_codes,
    }
}

/// Refuse a connection before reading anything: our header, the error, close.
pub(super) async fn refuse(mut sock: TcpStream, domains: Vec<String>, err: StreamError) {
    let mut out = Vec::new();
    Negotiator::new(false).write_error(&err, &domains, &mut out);
    let write = async {
        let _ = futures_lite::AsyncWriteExt::write_all(&mut sock, &out).await;
    };
    write
        .or(async {
            glommio::timer::sleep(CLOSE_FLUSH).await;
        })
        .await;
    linger_close(&mut sock).await;
}

/// Close after our last words the way that lets them arrive: shut down the write side (a FIN
/// after the error), then read and discard whatever the peer is still sending until it closes
/// too or [`CLOSE_LINGER`] passes. Closing with unread input makes Linux send a RST, which
/// discards data still in flight and resets a peer that is still writing, so that it may never
/// process the stream error. The caller drops the socket afterwards.
pub(crate) async fn linger_close(sock: &mut TcpStream) {
    let _ = sock.shutdown(Shutdown::Write).await;
    let drain = async {
        let mut buf = [0u8; 2048];
        while let Ok(n) = futures_lite::AsyncReadExt::read(sock, &mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    drain
        .or(async {
            glommio::timer::sleep(CLOSE_LINGER).await;
        })
        .await;
}

#[allow(dead_code)]
fn _assert_send(h: Handoff) -> impl Send {
    h
}

#[allow(dead_code)]
fn _future_is_local(c: Conn) -> impl Future<Output = ()> {
    c.run()
}

#[allow(dead_code)]
const _: Option<MessageType> = None;
