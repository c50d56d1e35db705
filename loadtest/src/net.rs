//! Per-thread socket loop: nonblocking TCP sockets under edge-triggered epoll, one timerfd for
//! scheduled sends, optional rustls client TLS. Reads and writes are batched: one read drains
//! the socket into the connection's buffer, every stanza in it is handled, and each touched
//! connection is flushed once per loop turn.
//!
//! Transports: XMPP over TCP (RFC 6120 stream framing), or XMPP over WebSocket (RFC 7395):
//! an HTTP/1.1 upgrade, then one element per masked text frame each way. The scenarios do not
//! see the difference: [`Net::send`] and [`Net::send_with`] take exactly one element per
//! call, which a WebSocket connection sends as one message, and every server message is
//! handed to the driver as one stanza. Or XMPP over BOSH (XEP-0124/XEP-0206, plain http://):
//! a connection is then a BOSH session of up to two HTTP/1.1 keep-alive connections ("links",
//! epoll tokens `id` and `id | LINK1`), one request held by the server at all times
//! ([`crate::bosh`]); the stanzas sent in one loop turn go out together in one request body,
//! and every child of a response's `<body/>` is handed to the driver as one stanza.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::bosh;
use crate::framing::{attr, name, Frame, Splitter};
use crate::login::{stream_header, Account, Action, Login, LoginConfig, LoginError};
use crate::ws;

/// Connection handle: index into the worker's slab.
pub type Id = usize;

/// What the scenario does with connections; called by [`Net::run`].
pub trait Driver {
    /// Called once per loop turn; returns the next time (ns since epoch) it wants a tick, and
    /// whether the run is over for this thread.
    fn tick(&mut self, net: &mut Net, now_ns: u64) -> (Option<u64>, bool);
    /// A connection finished login.
    fn established(&mut self, net: &mut Net, id: Id, now_ns: u64);
    /// A stanza arrived on an established connection.
    fn stanza(&mut self, net: &mut Net, id: Id, stanza: &[u8], now_ns: u64);
    /// A connection closed or failed (`err` is set for failures).
    fn closed(&mut self, net: &mut Net, id: Id, err: Option<String>);
}

/// Where a WebSocket connection is (TCP connections are [`WsState::Off`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WsState {
    /// XMPP over TCP.
    Off,
    /// The upgrade request is out, the 101 not yet in.
    Handshake,
    /// Upgraded: frames each way.
    Open,
}

/// The reading side of a WebSocket connection.
struct WsRead {
    reader: ws::Reader,
    /// The `Sec-WebSocket-Accept` the server must answer.
    accept: String,
}

/// A plain socket with its buffers: a BOSH session's second HTTP connection.
struct Link {
    sock: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    writable: bool,
}

/// The BOSH side of a connection: the session's request bookkeeping and its second link (the
/// first is the [`Conn`]'s own socket).
struct BoshConn {
    sess: bosh::Session,
    /// The second HTTP connection, opened when a request must go out while the first holds
    /// one (an idle session never opens it).
    second: Option<Box<Link>>,
    /// The server closed the first link between requests: it is reopened for the next one.
    first_dead: bool,
}

/// One client connection (over BOSH: one session).
pub struct Conn {
    sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// TCP: the XMPP stream's bytes; WebSocket: the raw bytes (response head, frames).
    rbuf: Vec<u8>,
    split: Splitter,
    ws: WsState,
    /// WebSocket decoder (taken out while the connection's input is processed).
    wsr: Option<Box<WsRead>>,
    /// BOSH session (XMPP over BOSH only).
    bosh: Option<Box<BoshConn>>,
    wbuf: Vec<u8>,
    wpos: usize,
    login: Option<Login>,
    writable: bool,
    dirty: bool,
    close_after_flush: bool,
    /// Account index (1-based user number).
    pub user: usize,
    /// Login start time (intended or actual), ns since epoch.
    pub t_start_ns: u64,
}

/// Accepts any server certificate: loopback test servers use self-signed ones.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client configuration that trusts any certificate.
pub fn tls_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("rustls: {e}"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// How XMPP is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// RFC 6120 over TCP.
    Tcp,
    /// RFC 7395 over WebSocket (plain `ws://`) at this HTTP path.
    WebSocket {
        /// Endpoint path, e.g. `/xmpp-websocket`.
        path: String,
    },
    /// XEP-0124/XEP-0206 BOSH (plain `http://`) at this HTTP path.
    Bosh {
        /// Endpoint path, e.g. `/http-bind`.
        path: String,
        /// The `wait` of the session creation request: the longest the server holds a
        /// request (seconds).
        wait: u32,
    },
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// Server address.
    pub host: Ipv4Addr,
    /// Server port.
    pub port: u16,
    /// Number of 127.0.0.x source addresses to spread over (1 = let the kernel choose).
    pub src_ips: u32,
    /// Login settings.
    pub login: LoginConfig,
    /// `{prefix}` of account names.
    pub prefix: String,
    /// Password of every account.
    pub password: String,
    /// TLS client config (used with STARTTLS).
    pub tls: Arc<ClientConfig>,
    /// Poll without sleeping (`--spin`).
    pub spin: bool,
    /// TCP or WebSocket.
    pub transport: Transport,
    /// A second server (federation): users from [`Peer::first_user`] on log in there.
    pub peer: Option<Peer>,
}

/// The second server of a federation run: the accounts `{prefix}{first_user..}` live there
/// (their domain is `domain`); the others on [`Target::host`]. TCP only.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Peer server address.
    pub host: Ipv4Addr,
    /// Peer c2s port.
    pub port: u16,
    /// Peer's XMPP domain (stream `to`, account domain).
    pub domain: String,
    /// First user (1-based) homed on the peer.
    pub first_user: usize,
}

impl Target {
    /// The peer when `user` is homed there.
    fn peer_of(&self, user: usize) -> Option<&Peer> {
        self.peer.as_ref().filter(|p| user >= p.first_user)
    }
    /// The XMPP domain of `user`'s server.
    pub fn domain_of(&self, user: usize) -> &str {
        self.peer_of(user).map_or(&self.login.domain, |p| &p.domain)
    }
    /// The c2s address of `user`'s server.
    fn addr_of(&self, user: usize) -> (Ipv4Addr, u16) {
        self.peer_of(user)
            .map_or((self.host, self.port), |p| (p.host, p.port))
    }
}

/// The socket loop of one worker thread.
pub struct Net {
    epfd: i32,
    timerfd: i32,
    conns: Vec<Option<Conn>>,
    free: Vec<Id>,
    dirty: Vec<Id>,
    scratch: Vec<u8>,
    target: Target,
    epoch: Instant,
    nonce_seed: u64,
    /// xorshift state for WebSocket mask keys.
    mask_seed: u64,
    /// WebSocket: the login's output before it is framed.
    login_out: Vec<u8>,
    /// WebSocket and BOSH: the `Host` of the HTTP requests.
    ws_host: String,
    /// BOSH: the children of the response being handled (kept for the next).
    bosh_children: Vec<std::ops::Range<usize>>,
    /// Connections currently logging in.
    pub logging_in: usize,
    /// Connections open.
    pub open: usize,
}

const TIMER_TOKEN: u64 = u64::MAX;
/// Bytes read from one connection before they are handed to the stanza handlers.
const READ_BATCH: usize = 1 << 20;
/// The most unconsumed bytes (one incomplete stanza) a connection may hold.
const MAX_PENDING: usize = 4 << 20;
/// Epoll token bit of a BOSH session's second link (the first's token is the bare id).
const LINK1: u64 = 1 << 48;

impl Net {
    /// A new loop. `epoch` is the time base shared by all threads.
    pub fn new(target: Target, epoch: Instant, seed: u64) -> io::Result<Self> {
        // SAFETY: plain syscalls; results checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let timerfd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if timerfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: TIMER_TOKEN,
        };
        // SAFETY: valid fds and event pointer.
        unsafe {
            libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, timerfd, &mut ev);
            // Scheduled sends want µs precision, not the default 50 µs timer slack.
            libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
        }
        Ok(Self {
            epfd,
            timerfd,
            conns: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            scratch: vec![0u8; 256 * 1024],
            ws_host: format!("{}:{}", target.login.domain, target.port),
            target,
            epoch,
            nonce_seed: seed,
            mask_seed: seed ^ 0x2545_f491_4f6c_dd1d | 1,
            login_out: Vec::new(),
            bosh_children: Vec::new(),
            logging_in: 0,
            open: 0,
        })
    }

    /// ns since the shared epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Starts connecting and logging in user `user` (1-based); `seq` picks the source address.
    pub fn connect(&mut self, user: usize, seq: usize, t_start_ns: u64) -> io::Result<Id> {
        let sock = self.open_socket(seq, user)?;
        let mut wbuf = Vec::with_capacity(4096);
        let (ws, wsr, bosh) = match &self.target.transport {
            Transport::Tcp => {
                stream_header(&mut wbuf, self.target.domain_of(user));
                (WsState::Off, None, None)
            }
            Transport::Bosh { path, wait } => {
                let rid = bosh::first_rid(xorshift(&mut self.mask_seed));
                let mut sess = bosh::Session::new(rid);
                sess.create(
                    &mut wbuf,
                    path,
                    &self.ws_host,
                    &self.target.login.domain,
                    *wait,
                );
                let b = BoshConn {
                    sess,
                    second: None,
                    first_dead: false,
                };
                (WsState::Off, None, Some(Box::new(b)))
            }
            Transport::WebSocket { path } => {
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&xorshift(&mut self.mask_seed).to_ne_bytes());
                key[8..].copy_from_slice(&xorshift(&mut self.mask_seed).to_ne_bytes());
                let accept = ws::request(&mut wbuf, &self.ws_host, path, &key);
                let reader = ws::Reader::new(MAX_PENDING);
                (
                    WsState::Handshake,
                    Some(Box::new(WsRead { reader, accept })),
                    None,
                )
            }
        };
        let conn = Conn {
            sock,
            tls: None,
            rbuf: Vec::with_capacity(4096),
            split: Splitter::new(),
            ws,
            wsr,
            bosh,
            wbuf,
            wpos: 0,
            login: Some(Login::start()),
            writable: false,
            dirty: false,
            close_after_flush: false,
            user,
            t_start_ns,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.conns[id] = Some(conn);
                id
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        let fd = self.conns[id].as_ref().map_or(-1, |c| c.sock.as_raw_fd());
        if let Err(e) = self.register(fd, id as u64) {
            self.conns[id] = None;
            self.free.push(id);
            return Err(e);
        }
        self.logging_in += 1;
        self.open += 1;
        Ok(id)
    }

    /// Adds socket `fd` to the epoll set under `token`.
    fn register(&self, fd: i32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: valid fds and event pointer.
        if unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// BOSH: (re)opens `link` of session `id`: the second link, or the first one after the
    /// server closed it.
    fn open_link(&mut self, id: Id, link: usize) -> io::Result<()> {
        let Some(user) = self.conn(id).map(|c| c.user) else {
            return Ok(());
        };
        let sock = self.open_socket(user + link * 7919, user)?;
        self.register(
            sock.as_raw_fd(),
            id as u64 | if link == 1 { LINK1 } else { 0 },
        )?;
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Ok(());
        };
        let Some(b) = c.bosh.as_mut() else {
            return Ok(());
        };
        if link == 1 {
            b.second = Some(Box::new(Link {
                sock,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
                wpos: 0,
                writable: false,
            }));
        } else {
            b.first_dead = false;
            c.sock = sock;
            c.rbuf.clear();
            c.wbuf.clear();
            c.wpos = 0;
            c.writable = false;
        }
        Ok(())
    }

    fn open_socket(&self, seq: usize, user: usize) -> io::Result<TcpStream> {
        // SAFETY: socket/bind/connect on a fresh fd we own; errors checked.
        unsafe {
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let sock = TcpStream::from_raw_fd(fd);
            let one: libc::c_int = 1;
            let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let p = &one as *const libc::c_int as *const libc::c_void;
            libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, p, sz);
            if self.target.src_ips > 1 {
                libc::setsockopt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, p, sz);
                let ip = Ipv4Addr::new(127, 0, 0, 1 + (seq as u32 % self.target.src_ips) as u8);
                let sa = sockaddr(ip, 0);
                let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let (host, port) = self.target.addr_of(user);
            let sa = sockaddr(host, port);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len) < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINPROGRESS) {
                    return Err(e);
                }
            }
            Ok(sock)
        }
    }

    /// Queues one element, `bytes`, on connection `id` (flushed at the end of the loop turn).
    pub fn send(&mut self, id: Id, bytes: &[u8]) {
        self.send_with(id, |w| w.extend_from_slice(bytes));
    }

    /// Queues one element on connection `id`, written by `f` straight into the write buffer
    /// (no intermediate allocation). Over WebSocket it becomes one masked text message, so `f`
    /// must write exactly one element.
    pub fn send_with(&mut self, id: Id, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) {
            if let Some(b) = c.bosh.as_mut() {
                bosh::push_element(&mut b.sess.pending, f);
            } else if c.ws == WsState::Off {
                f(&mut c.wbuf);
            } else {
                let key = mask_key(&mut self.mask_seed);
                ws::encode_element(&mut c.wbuf, key, f);
            }
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Queues a WebSocket frame (no-op on TCP).
    fn send_frame(&mut self, id: Id, opcode: u8, payload: &[u8]) {
        if let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) {
            if c.ws == WsState::Off {
                return;
            }
            ws::encode(&mut c.wbuf, opcode, payload, mask_key(&mut self.mask_seed));
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Ends the stream (`</stream:stream>`; over WebSocket `<close/>` and a Close frame,
    /// RFC 7395 §3.6; over BOSH a terminate request, with the stanzas not sent yet, if a link
    /// has no request out, else nothing: the server times the session out) and closes once it
    /// is written.
    pub fn close_gracefully(&mut self, id: Id) {
        let is_bosh = self.conn(id).is_some_and(|c| c.bosh.is_some());
        match self.conn(id).map(|c| c.ws) {
            None => return,
            Some(_) if is_bosh => self.bosh_terminate(id),
            Some(WsState::Off) => self.send(id, b"</stream:stream>"),
            Some(WsState::Open) => {
                self.send(id, ws::CLOSE_ELEMENT);
                self.send_frame(id, ws::op::CLOSE, &1000u16.to_be_bytes());
            }
            Some(WsState::Handshake) => {}
        }
        if let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) {
            c.close_after_flush = true;
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// The connection (if open).
    pub fn conn(&self, id: Id) -> Option<&Conn> {
        self.conns.get(id).and_then(Option::as_ref)
    }

    /// Closes every connection gracefully and flushes.
    pub fn close_all(&mut self) {
        for id in 0..self.conns.len() {
            if self.conns[id].is_some() {
                self.close_gracefully(id);
            }
        }
        self.flush_dirty_silent();
    }

    fn flush_dirty_silent(&mut self) {
        while let Some(id) = self.dirty.pop() {
            let _ = self.flush(id);
        }
    }

    /// Runs the loop until the driver says it is done.
    pub fn run<D: Driver>(&mut self, d: &mut D) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut armed: Option<u64> = None;
        loop {
            let now = self.now_ns();
            let (next, done) = d.tick(self, now);
            self.flush_all(d);
            if done {
                return;
            }
            if next != armed {
                self.arm(next, now);
                armed = next;
            }
            // Bounded wait so phase changes made by the main thread are seen promptly; none
            // with --spin (a sleeping receiver makes each of the server's loopback sends also
            // pay for waking it).
            let wait_ms = if self.target.spin { 0 } else { 5 };
            // SAFETY: valid epoll fd and buffer.
            let n = unsafe {
                libc::epoll_wait(self.epfd, events.as_mut_ptr(), events.len() as i32, wait_ms)
            };
            for ev in events.iter().take(n.max(0) as usize) {
                let (token, flags) = (ev.u64, ev.events);
                if token == TIMER_TOKEN {
                    let mut b = [0u8; 8];
                    // SAFETY: reading 8 bytes into an 8-byte buffer.
                    unsafe { libc::read(self.timerfd, b.as_mut_ptr().cast(), 8) };
                    armed = None;
                    continue;
                }
                let (id, link) = ((token & (LINK1 - 1)) as usize, (token / LINK1) as usize);
                if flags & libc::EPOLLOUT as u32 != 0 {
                    if let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) {
                        if link == 0 {
                            c.writable = true;
                        } else if let Some(l) = c.bosh.as_mut().and_then(|b| b.second.as_mut()) {
                            l.writable = true;
                        }
                        if !c.dirty {
                            c.dirty = true;
                            self.dirty.push(id);
                        }
                    }
                }
                if flags
                    & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                    != 0
                {
                    self.readable(id, link, d);
                }
            }
            self.flush_all(d);
        }
    }

    fn arm(&self, at_ns: Option<u64>, now: u64) {
        let mut spec: libc::itimerspec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        };
        if let Some(at) = at_ns {
            let d = at.saturating_sub(now).max(1000);
            spec.it_value.tv_sec = (d / 1_000_000_000) as libc::time_t;
            spec.it_value.tv_nsec = (d % 1_000_000_000) as libc::c_long;
        }
        // SAFETY: valid timerfd and spec.
        unsafe { libc::timerfd_settime(self.timerfd, 0, &spec, std::ptr::null_mut()) };
    }

    fn flush_all<D: Driver>(&mut self, d: &mut D) {
        while let Some(id) = self.dirty.pop() {
            if let Err(e) = self.flush(id) {
                self.kill(id, d, Some(format!("write: {e}")));
            }
        }
    }

    /// Writes pending bytes of `id`; closes it if it asked to be closed and all is written.
    /// Over BOSH it first sends the requests that are due (the stanzas queued since the last
    /// request, or an empty one to keep one held).
    fn flush(&mut self, id: Id) -> io::Result<()> {
        if self.conn(id).is_some_and(|c| c.bosh.is_some()) {
            return self.flush_bosh(id);
        }
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Ok(());
        };
        c.dirty = false;
        if !c.writable {
            return Ok(());
        }
        if let Some(tls) = c.tls.as_mut() {
            if c.wbuf.len() > c.wpos {
                tls.writer().write_all(&c.wbuf[c.wpos..])?;
                c.wbuf.clear();
                c.wpos = 0;
            }
            while tls.wants_write() {
                match tls.write_tls(&mut c.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.writable = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            write_plain(&mut c.sock, &mut c.wbuf, &mut c.wpos, &mut c.writable)?;
        }
        let all_out = c.wbuf.is_empty() && c.tls.as_ref().is_none_or(|t| !t.wants_write());
        if c.close_after_flush && all_out {
            let _ = c.sock.shutdown(std::net::Shutdown::Write);
            self.drop_conn(id);
        }
        Ok(())
    }

    /// [`Net::flush`] of a BOSH session: the due requests, then both links.
    fn flush_bosh(&mut self, id: Id) -> io::Result<()> {
        self.bosh_pump(id)?;
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Ok(());
        };
        c.dirty = false;
        let Some(b) = c.bosh.as_mut() else {
            return Ok(());
        };
        if c.writable && !b.first_dead {
            write_plain(&mut c.sock, &mut c.wbuf, &mut c.wpos, &mut c.writable)?;
        }
        if let Some(l) = b.second.as_mut().filter(|l| l.writable) {
            write_plain(&mut l.sock, &mut l.wbuf, &mut l.wpos, &mut l.writable)?;
        }
        let all_out = c.wbuf.is_empty() && b.second.as_ref().is_none_or(|l| l.wbuf.is_empty());
        if c.close_after_flush && all_out {
            let _ = c.sock.shutdown(std::net::Shutdown::Write);
            if let Some(l) = b.second.as_ref() {
                let _ = l.sock.shutdown(std::net::Shutdown::Write);
            }
            self.drop_conn(id);
        }
        Ok(())
    }

    /// BOSH: writes the requests that are due into their links' buffers, opening a link
    /// first if it is needed and not open.
    fn bosh_pump(&mut self, id: Id) -> io::Result<()> {
        let Transport::Bosh { path, .. } = &self.target.transport else {
            return Ok(());
        };
        loop {
            let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
                return Ok(());
            };
            if c.close_after_flush {
                return Ok(());
            }
            let Some(b) = c.bosh.as_mut() else {
                return Ok(());
            };
            let Some((link, what)) = b.sess.due() else {
                return Ok(());
            };
            let out = match (link, b.second.as_mut()) {
                (0, _) if !b.first_dead => &mut c.wbuf,
                (1, Some(l)) => &mut l.wbuf,
                _ => {
                    self.open_link(id, link).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("bosh: opening HTTP connection {link}: {e}"),
                        )
                    })?;
                    return self.bosh_pump(id);
                }
            };
            let host = &self.ws_host;
            b.sess
                .send(link, what, out, path, host, &self.target.login.domain);
        }
    }

    /// BOSH: the terminate request on a link without a request out, if there is one.
    fn bosh_terminate(&mut self, id: Id) {
        let Transport::Bosh { path, .. } = &self.target.transport else {
            return;
        };
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let Some(b) = c.bosh.as_mut() else {
            return;
        };
        let first = (!b.first_dead).then_some(&mut c.wbuf);
        let second = b.second.as_mut().map(|l| &mut l.wbuf);
        b.sess.terminate(&mut [first, second], path, &self.ws_host);
    }

    fn drop_conn(&mut self, id: Id) {
        if let Some(c) = self.conns.get_mut(id).and_then(Option::take) {
            if c.login.is_some() {
                self.logging_in -= 1;
            }
            self.open -= 1;
            self.free.push(id);
        }
    }

    fn kill<D: Driver>(&mut self, id: Id, d: &mut D, err: Option<String>) {
        let closing = self
            .conns
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.close_after_flush);
        if self.conns.get(id).is_some_and(Option::is_some) {
            self.drop_conn(id);
            if !closing {
                d.closed(self, id, err);
            }
        }
    }

    fn readable<D: Driver>(&mut self, id: Id, link: usize, d: &mut D) {
        // Edge-triggered: read until the socket is drained, but hand what was read to the
        // stanza handlers every READ_BATCH bytes, so a fast server cannot grow the buffer
        // without bound; a single stanza larger than MAX_PENDING is an error.
        loop {
            let (more, pending) = self.read_some(id, link, d);
            if !more {
                return;
            }
            if pending > MAX_PENDING {
                self.kill(
                    id,
                    d,
                    Some(format!("server stanza over {MAX_PENDING} bytes")),
                );
                return;
            }
        }
    }

    /// One bounded round of `readable`: (the socket may hold more, unconsumed bytes left).
    fn read_some<D: Driver>(&mut self, id: Id, link: usize, d: &mut D) -> (bool, usize) {
        let mut eof = false;
        let mut err = None;
        let mut more = false;
        {
            let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
                return (false, 0);
            };
            if link == 1 {
                let Some(l) = c.bosh.as_mut().and_then(|b| b.second.as_mut()) else {
                    return (false, 0);
                };
                (eof, err, more) = read_plain(&mut l.sock, &mut l.rbuf, &mut self.scratch);
            } else if c.tls.is_none() {
                (eof, err, more) = read_plain(&mut c.sock, &mut c.rbuf, &mut self.scratch);
            }
            while let Some(tls) = c.tls.as_mut().filter(|_| link == 0) {
                if c.rbuf.len() >= READ_BATCH {
                    more = true;
                    break;
                }
                {
                    match tls.read_tls(&mut c.sock) {
                        Ok(0) => eof = true,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            err = Some(format!("read: {e}"));
                            break;
                        }
                    }
                    if let Err(e) = tls.process_new_packets() {
                        err = Some(format!("tls: {e}"));
                        break;
                    }
                    loop {
                        match tls.reader().read(&mut self.scratch) {
                            Ok(0) => {
                                eof = true;
                                break;
                            }
                            Ok(n) => c.rbuf.extend_from_slice(&self.scratch[..n]),
                            Err(_) => break,
                        }
                    }
                    if tls.wants_write() && !c.dirty {
                        c.dirty = true;
                        self.dirty.push(id);
                    }
                    if eof {
                        break;
                    }
                }
            }
        }
        self.process(id, link, d);
        if let Some(e) = err {
            self.kill(id, d, Some(e));
        } else if eof && self.conn(id).is_some_and(|c| c.bosh.is_some()) {
            self.bosh_eof(id, link, d);
        } else if eof {
            let during_login = self.conn(id).is_some_and(|c| c.login.is_some());
            let e = during_login.then(|| "server closed during login".to_string());
            self.kill(id, d, e);
        } else if more {
            if let Some(c) = self.conn(id) {
                let l1 = c.bosh.as_ref().and_then(|b| b.second.as_ref());
                let n = match (link, l1) {
                    (0, _) => c.rbuf.len(),
                    (_, Some(l)) => l.rbuf.len(),
                    _ => return (false, 0),
                };
                return (true, n);
            }
        }
        (false, 0)
    }

    /// BOSH: the server closed `link`: between requests it is reopened when next needed;
    /// with a request out, the session fails.
    fn bosh_eof<D: Driver>(&mut self, id: Id, link: usize, d: &mut D) {
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let Some(b) = c.bosh.as_mut() else {
            return;
        };
        if c.close_after_flush || b.sess.busy(link) {
            let msg = "bosh: the server closed an HTTP connection with a request out";
            self.kill(id, d, Some(msg.into()));
        } else if link == 0 {
            b.first_dead = true;
        } else {
            b.second = None;
        }
    }

    /// Splits and handles every complete stanza buffered on `id` (BOSH: on its `link`).
    fn process<D: Driver>(&mut self, id: Id, link: usize, d: &mut D) {
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if c.bosh.is_some() {
            self.process_bosh(id, link, d);
            return;
        }
        if c.ws != WsState::Off {
            self.process_ws(id, d);
            return;
        }
        let mut rbuf = std::mem::take(&mut c.rbuf);
        let mut split = std::mem::take(&mut c.split);
        let mut restart = false;
        while let Some(frame) = split.next(&rbuf) {
            match frame {
                Frame::StreamOpen(_) => {}
                Frame::StreamClose => {
                    let during_login = self.conn(id).is_some_and(|c| c.login.is_some());
                    let e = during_login.then(|| "stream closed during login".to_string());
                    self.kill(id, d, e);
                    return;
                }
                Frame::Stanza(r) => match self.element(id, d, &rbuf[r]) {
                    Flow::Go => {}
                    Flow::Restart => {
                        restart = true;
                        break;
                    }
                    Flow::Gone => return,
                },
            }
        }
        if restart {
            rbuf.clear();
            split = Splitter::new();
        } else {
            let n = split.consumable();
            if n > 0 {
                rbuf.drain(..n);
                split.consume(n);
            }
        }
        if let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) {
            c.rbuf = rbuf;
            c.split = split;
        }
    }

    /// Handles one stanza (or nonza) of `id`: a login step or the driver's.
    fn element<D: Driver>(&mut self, id: Id, d: &mut D, stanza: &[u8]) -> Flow {
        let in_login = self.conn(id).is_some_and(|c| c.login.is_some());
        let mut flow = Flow::Go;
        if in_login {
            match self.login_step(id, stanza) {
                Ok(Action::None) => {}
                Ok(Action::Established) => {
                    let now = self.now_ns();
                    d.established(self, id, now);
                }
                Ok(Action::StartTls | Action::Restart) => flow = Flow::Restart,
                Err(e) => {
                    self.kill(id, d, Some(format!("login: {e:?}")));
                    return Flow::Gone;
                }
            }
        } else {
            let now = self.now_ns();
            d.stanza(self, id, stanza, now);
        }
        if self.conn(id).is_none() {
            Flow::Gone
        } else {
            flow
        }
    }

    /// BOSH: handles every complete HTTP response buffered on `link` of session `id`: the link
    /// has no request out any more, and each child of the `<body/>` is one element (a login
    /// step or the driver's). A `type='terminate'` body, an HTTP error status or an
    /// unparsable response ends the session with an error.
    fn process_bosh<D: Driver>(&mut self, id: Id, link: usize, d: &mut D) {
        let mut children = std::mem::take(&mut self.bosh_children);
        while let Some(rbuf) = self.bosh_take_rbuf(id, link) {
            let (rbuf, resp) = match bosh::response(&rbuf, MAX_PENDING) {
                Ok(Some(r)) => (rbuf, r),
                Ok(None) => {
                    if let Some(dest) = self.bosh_rbuf(id, link) {
                        *dest = rbuf;
                    }
                    break;
                }
                Err(e) => {
                    self.kill(id, d, Some(e));
                    break;
                }
            };
            match self.bosh_response(id, link, &rbuf, &resp, &mut children) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.kill(id, d, Some(e));
                    break;
                }
            }
            let body = &rbuf[resp.body.clone()];
            let mut gone = false;
            for r in &children {
                if self.conn(id).is_none_or(|c| c.close_after_flush) {
                    gone = true;
                    break;
                }
                if let Flow::Gone = self.element(id, d, &body[r.clone()]) {
                    gone = true;
                    break;
                }
            }
            if gone {
                break;
            }
            let mut rbuf = rbuf;
            rbuf.drain(..resp.len());
            match self.bosh_rbuf(id, link) {
                Some(dest) => *dest = rbuf,
                None => break,
            }
        }
        self.bosh_children = children;
    }

    /// BOSH: the read buffer of `link` of session `id`.
    fn bosh_rbuf(&mut self, id: Id, link: usize) -> Option<&mut Vec<u8>> {
        let c = self.conns.get_mut(id).and_then(Option::as_mut)?;
        if link == 0 {
            return Some(&mut c.rbuf);
        }
        Some(&mut c.bosh.as_mut()?.second.as_mut()?.rbuf)
    }

    /// BOSH: takes the read buffer of `link` out, if it has bytes.
    fn bosh_take_rbuf(&mut self, id: Id, link: usize) -> Option<Vec<u8>> {
        let rbuf = self.bosh_rbuf(id, link)?;
        (!rbuf.is_empty()).then(|| std::mem::take(rbuf))
    }

    /// BOSH: the bookkeeping of one response on `link` (its request is answered, the session
    /// created, the link closed if the server says so), the response's `<body/>` parsed into
    /// `children`. Ok(false): the session was closing and is now gone; Err: it fails.
    fn bosh_response(
        &mut self,
        id: Id,
        link: usize,
        rbuf: &[u8],
        resp: &bosh::Response,
        children: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<bool, String> {
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Ok(false);
        };
        let Some(b) = c.bosh.as_mut() else {
            return Ok(false);
        };
        b.sess.answered(link)?;
        if c.close_after_flush {
            self.drop_conn(id);
            return Ok(false);
        }
        let body = &rbuf[resp.body.clone()];
        if b.sess.sid.is_none() {
            if let Transport::Bosh { path, .. } = &self.target.transport {
                if let Some(why) = bosh::missing_endpoint(resp.status, path) {
                    return Err(format!("bosh: {why}"));
                }
            }
        }
        if resp.status != 200 {
            let n = body.len().min(200);
            return Err(format!(
                "bosh: HTTP {} (body: {})",
                resp.status,
                String::from_utf8_lossy(&body[..n])
            ));
        }
        let tag = bosh::parse_body(body, children)?;
        let tag = &body[tag];
        if let Some(e) = bosh::terminated(tag, body, children) {
            return Err(e);
        }
        if b.sess.sid.is_none() {
            let sid = attr(tag, b"sid").ok_or("bosh: session creation response without sid")?;
            b.sess.sid = Some(String::from_utf8_lossy(sid).into());
        }
        if resp.close {
            if link == 0 {
                b.first_dead = true;
            } else {
                b.second = None;
            }
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(id);
        }
        Ok(true)
    }

    /// WebSocket: completes the upgrade, then decodes every complete frame buffered on `id`
    /// and handles each text message as one element.
    fn process_ws<D: Driver>(&mut self, id: Id, d: &mut D) {
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let Some(mut wsr) = c.wsr.take() else {
            return;
        };
        let mut rbuf = std::mem::take(&mut c.rbuf);
        let mut pos = 0;
        if c.ws == WsState::Handshake {
            let Some(end) = ws::head_end(&rbuf) else {
                if rbuf.len() > 64 * 1024 {
                    self.kill(
                        id,
                        d,
                        Some("websocket upgrade: response head too long".into()),
                    );
                } else {
                    c.rbuf = rbuf;
                    c.wsr = Some(wsr);
                }
                return;
            };
            if let Err(e) = ws::check_response(&rbuf[..end], &wsr.accept) {
                self.kill(id, d, Some(e));
                return;
            }
            c.ws = WsState::Open;
            pos = end;
            let domain = &self.target.login.domain;
            let key = mask_key(&mut self.mask_seed);
            ws::encode_with(&mut c.wbuf, ws::op::TEXT, key, |w| {
                ws::open_element(w, domain)
            });
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
        }
        loop {
            let ev = match wsr.reader.next(&rbuf, &mut pos) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    self.kill(id, d, Some(e.to_string()));
                    return;
                }
            };
            match ev {
                ws::Event::Text(t) => {
                    let el = t.trim_ascii();
                    match name(el) {
                        b"" => {}
                        b"open" => {}
                        b"close" => {
                            let during_login = self.conn(id).is_some_and(|c| c.login.is_some());
                            let e = during_login.then(|| "stream closed during login".to_string());
                            self.kill(id, d, e);
                            return;
                        }
                        _ => {
                            if let Flow::Gone = self.element(id, d, el) {
                                return;
                            }
                        }
                    }
                }
                ws::Event::Ping(p) => self.send_frame(id, ws::op::PONG, p),
                ws::Event::Pong => {}
                ws::Event::Close(code) => {
                    let during_login = self.conn(id).is_some_and(|c| c.login.is_some());
                    let e = during_login
                        .then(|| format!("websocket closed during login (code {code:?})"));
                    self.kill(id, d, e);
                    return;
                }
            }
        }
        rbuf.drain(..pos);
        if let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) {
            c.rbuf = rbuf;
            c.wsr = Some(wsr);
        }
    }

    fn login_step(&mut self, id: Id, stanza: &[u8]) -> Result<Action, LoginError> {
        self.nonce_seed = self
            .nonce_seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let nonce = format!("{:016x}{:08x}", self.nonce_seed, id);
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Ok(Action::None);
        };
        let Some(state) = c.login.take() else {
            return Ok(Action::None);
        };
        let acct = Account {
            user: format!("{}{}", self.target.prefix, c.user),
            password: self.target.password.clone(),
        };
        let websocket = c.ws != WsState::Off;
        // WebSocket and BOSH frame what a login step writes; TCP takes it as it is.
        self.login_out.clear();
        let out = if websocket || c.bosh.is_some() {
            &mut self.login_out
        } else {
            &mut c.wbuf
        };
        let (next, action) = state.handle(stanza, &self.target.login, &acct, &nonce, out)?;
        if let Some(b) = c.bosh.as_mut() {
            if !self.login_out.is_empty() {
                let el = &self.login_out;
                bosh::push_element(&mut b.sess.pending, |w| w.extend_from_slice(el));
            }
            match action {
                Action::StartTls => {
                    return Err(LoginError::StreamError("STARTTLS over BOSH".into()))
                }
                Action::Restart => b.sess.restart = true,
                _ => {}
            }
        } else if websocket {
            // One element per message: a login step writes at most one, a restart one more.
            if !self.login_out.is_empty() {
                let key = mask_key(&mut self.mask_seed);
                let el = &self.login_out;
                ws::encode_element(&mut c.wbuf, key, |w| w.extend_from_slice(el));
            }
            match action {
                Action::StartTls => {
                    return Err(LoginError::StreamError(
                        "STARTTLS inside a WebSocket stream".into(),
                    ))
                }
                Action::Restart => {
                    let domain = &self.target.login.domain;
                    let key = mask_key(&mut self.mask_seed);
                    ws::encode_with(&mut c.wbuf, ws::op::TEXT, key, |w| {
                        ws::open_element(w, domain)
                    });
                }
                _ => {}
            }
        } else {
            match action {
                Action::StartTls => {
                    let domain = self.target.domain_of(c.user);
                    let name = ServerName::try_from(domain.to_string())
                        .unwrap_or_else(|_| ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()));
                    let tls = ClientConnection::new(self.target.tls.clone(), name)
                        .map_err(|e| LoginError::StreamError(format!("tls: {e}")))?;
                    c.tls = Some(Box::new(tls));
                    c.wbuf.clear();
                    c.wpos = 0;
                    stream_header(&mut c.wbuf, domain);
                }
                Action::Restart => stream_header(&mut c.wbuf, self.target.domain_of(c.user)),
                _ => {}
            }
        }
        if action == Action::Established {
            self.logging_in -= 1;
        } else {
            c.login = Some(next);
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(id);
        }
        Ok(action)
    }
}

/// What [`Net::element`] left of the connection.
enum Flow {
    /// Go on with its next stanza.
    Go,
    /// Its stream restarts (TCP: drop the buffered bytes, a new header follows).
    Restart,
    /// It is closed.
    Gone,
}

impl Drop for Net {
    fn drop(&mut self) {
        // SAFETY: fds owned by this struct.
        unsafe {
            libc::close(self.epfd);
            libc::close(self.timerfd);
        }
    }
}

/// Reads `sock` into `rbuf` until it would block, hits EOF, fails, or `rbuf` holds
/// [`READ_BATCH`] bytes: (EOF, error, more may be there).
fn read_plain(
    sock: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    scratch: &mut [u8],
) -> (bool, Option<String>, bool) {
    loop {
        if rbuf.len() >= READ_BATCH {
            return (false, None, true);
        }
        match sock.read(scratch) {
            Ok(0) => return (true, None, false),
            Ok(n) => rbuf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (false, None, false),
            Err(e) => return (false, Some(format!("read: {e}")), false),
        }
    }
}

/// Writes `wbuf[*wpos..]` to `sock` until all is out or it would block (then `writable` is
/// cleared until the next EPOLLOUT).
fn write_plain(
    sock: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    wpos: &mut usize,
    writable: &mut bool,
) -> io::Result<()> {
    while *wpos < wbuf.len() {
        match sock.write(&wbuf[*wpos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *writable = false;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if *wpos == wbuf.len() {
        wbuf.clear();
        *wpos = 0;
    }
    Ok(())
}

/// The next xorshift64* value of `state` (WebSocket mask keys and handshake nonces: a client
/// must not let the server predict them, RFC 6455 §5.3; seeded from /dev/urandom).
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// A fresh WebSocket mask key.
fn mask_key(state: &mut u64) -> [u8; 4] {
    ((xorshift(state) >> 32) as u32).to_ne_bytes()
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}
