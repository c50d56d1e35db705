//! Client-to-server connections: the listeners, the per-shard connection table, the sweeper
//! that enforces timeouts and sends keepalive pings, and the adoption of connections that
//! moved here after authentication. One task per connection (`conn.rs`) owns the socket.

pub mod bosh;
mod conn;
pub(crate) use conn::linger_close;
pub mod limits;
pub mod ws;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

use crate::config::Config;
use crate::core::ClientHandle;
use crate::router::Router;
use crate::shard::Links;
use crate::stream::sasl::Lookup;
use crate::stream::Accounts;
use crate::tls::TlsSetup;
use crate::xmpp::error::{StreamCondition, StreamError};
use crate::xmpp::jid::Jid;

pub use conn::Handoff;

/// The next accepted connection and its peer address; None once the server is stopping. A
/// failed accept (EMFILE and friends) is logged and retried after a pause instead of
/// spinning. For the listeners whose loops need nothing more (components, s2s).
pub async fn accept_next(
    listener: &TcpListener,
    links: &Links,
    what: &str,
) -> Option<(glommio::net::TcpStream, SocketAddr)> {
    loop {
        match listener.accept().await {
            Ok(s) if !links.stopping() => {
                let peer = s
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let _ = s.set_nodelay(true);
                return Some((s, peer));
            }
            Ok(_) => return None,
            Err(_) if links.stopping() => return None,
            Err(e) => {
                tracing::warn!(error = %e, listener = what, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Size of the shard's socket read buffer (and of its decrypted-data buffer).
const READ_CHUNK: usize = 64 * 1024;

/// The client-to-server service of one shard.
pub struct C2s {
    router: Rc<Router>,
    config: Arc<Config>,
    tls: Option<TlsSetup>,
    links: Arc<Links>,
    secret: Arc<[u8]>,
    /// The process-wide per-address limits before authentication.
    ip_limits: Arc<limits::IpLimits>,
    conns: RefCell<Slab>,
    read_buf: RefCell<Box<[u8]>>,
    plain_buf: RefCell<Box<[u8]>>,
    max_conns: usize,
    /// Connections of other transports on this shard (HTTP), which share `max_conns`.
    other_conns: Rc<Cell<usize>>,
    shutting_down: Cell<bool>,
    /// The last account revocation this shard acted on (see [`C2s::end_revoked_sessions`]).
    revocations_seen: Cell<u64>,
    /// The BOSH sessions living on (or moved away from) this shard.
    pub bosh: bosh::Table,
}

/// A connection of another transport counted under the shard's connection limit (see
/// [`C2s::other_connection`]); dropping it gives the place back.
pub struct OtherConn(Rc<Cell<usize>>, Arc<crate::metrics::ShardMetrics>);

impl Drop for OtherConn {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
        self.1.http_conn(-1);
    }
}

/// A minimal slab of connection handles: stable indices, O(1) insert and remove.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Rc<ClientHandle>>>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    fn insert(&mut self, h: Rc<ClientHandle>) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(h);
                i
            }
            None => {
                self.slots.push(Some(h));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.take().is_some() {
                self.len -= 1;
                self.free.push(i);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Rc<ClientHandle>> {
        self.slots.iter().flatten()
    }
}

impl Accounts for xmppd_storage::AccountStore {
    fn lookup(&self, bare: &str) -> Lookup {
        match self.get(bare) {
            Ok(Some(a)) => Lookup::Found {
                sha1: scram_keys(a.sha1),
                sha256: scram_keys(a.sha256),
                disabled: a.disabled,
            },
            Ok(None) => Lookup::NotFound,
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                Lookup::Unavailable
            }
        }
    }
}

/// SASL's account lookups that remember the revocation sequence number read in the same
/// snapshot as the account (issue 8): a login is invalidated exactly by the revocations after
/// it, whichever process records them.
pub(crate) struct Lookups<'a> {
    store: &'a xmppd_storage::AccountStore,
    seq: Cell<Option<u64>>,
}

impl<'a> Lookups<'a> {
    fn new(store: &'a xmppd_storage::AccountStore) -> Lookups<'a> {
        Lookups {
            store,
            seq: Cell::new(None),
        }
    }

    /// The sequence number of the last lookup, if one was made.
    fn seq(&self) -> Option<u64> {
        self.seq.get()
    }
}

impl Accounts for Lookups<'_> {
    fn lookup(&self, bare: &str) -> Lookup {
        match self.store.get_with_revocation_seq(bare) {
            Ok((account, seq)) => {
                self.seq.set(Some(seq));
                match account {
                    Some(a) => Lookup::Found {
                        sha1: scram_keys(a.sha1),
                        sha256: scram_keys(a.sha256),
                        disabled: a.disabled,
                    },
                    None => Lookup::NotFound,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                Lookup::Unavailable
            }
        }
    }
}

/// The stream error that ends a session whose login was revoked (issue 8). RFC 6120 has no
/// `account-disabled` stream condition (it is a SASL failure, §6.5.2, which a later login
/// gets), so every reason is `not-authorized` (§4.9.3.12: the entity is no longer authorized
/// on this stream) with a text that says why.
fn scram_keys(k: xmppd_storage::ScramKeys) -> crate::stream::sasl::ScramKeys {
    crate::stream::sasl::ScramKeys {
        salt: k.salt,
        iterations: k.iterations,
        stored_key: k.stored_key,
        server_key: k.server_key,
    }
}

impl C2s {
    /// The service for one shard; `max_conns` bounds its connections.
    pub fn new(
        router: Rc<Router>,
        tls: Option<TlsSetup>,
        links: Arc<Links>,
        secret: Arc<[u8]>,
        ip_limits: Arc<limits::IpLimits>,
        max_conns: usize,
    ) -> C2s {
        // Revocations recorded before this shard started end no session of it.
        let revocations_seen = router
            .storage
            .accounts()
            .revocation_seq()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading the account revocation log failed");
                0
            });
        C2s {
            revocations_seen: Cell::new(revocations_seen),
            config: router.config.clone(),
            router,
            tls,
            links,
            secret,
            ip_limits,
            conns: RefCell::new(Slab::default()),
            read_buf: RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice()),
            plain_buf: RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice()),
            max_conns,
            other_conns: Rc::new(Cell::new(0)),
            shutting_down: Cell::new(false),
            bosh: bosh::Table::default(),
        }
    }

    /// Accept connections on `listener` until shutdown; `direct_tls` for XEP-0368 ports.
    pub async fn accept_loop(self: Rc<Self>, listener: TcpListener, direct_tls: bool) {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    if self.shutting_down.get() || self.links.stopping() {
                        return;
                    }
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.shutting_down.get() || self.links.stopping() {
                return;
            }
            let peer = stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            if self.conns.borrow().len + self.other_conns.get() >= self.max_conns {
                tracing::warn!(%peer, "connection limit reached");
                self.refuse(
                    stream,
                    direct_tls,
                    StreamCondition::ResourceConstraint,
                    "too many connections",
                );
                continue;
            }
            // Issue 8: per-address limits. Over the rate, the connection is closed without a
            // word (a flood must not cost a task and a lingering socket each); over the
            // unauthenticated count, it learns why (that path is itself rate-limited).
            let preauth = match self.ip_limits.admit(peer.ip(), Instant::now()) {
                Ok(p) => p,
                Err(limits::Refusal::Rate) => {
                    tracing::debug!(%peer, "connection rate limit");
                    drop(stream);
                    continue;
                }
                Err(why) => {
                    tracing::info!(%peer, ?why, "per-address connection limit");
                    self.refuse(
                        stream,
                        direct_tls,
                        StreamCondition::PolicyViolation,
                        "too many connections authenticating from your address",
                    );
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let tls = if direct_tls {
                match self.new_tls(true) {
                    Some(t) => Some(t),
                    None => continue,
                }
            } else {
                None
            };
            let c = conn::Conn::accepted(self.clone(), stream, peer, tls, direct_tls, preauth);
            glommio::spawn_local(c.run()).detach();
        }
    }

    /// Refuse a new connection: with a stream error on a plain port, by closing it on a
    /// direct-TLS port (no XML in the clear there).
    fn refuse(
        &self,
        stream: glommio::net::TcpStream,
        direct_tls: bool,
        cond: StreamCondition,
        text: &str,
    ) {
        if direct_tls {
            return;
        }
        let err = StreamError::with_text(cond, text);
        glommio::spawn_local(conn::refuse(stream, self.config.domains.clone(), err)).detach();
    }

    /// A fresh rustls server connection (direct TLS or after STARTTLS).
    fn new_tls(&self, direct: bool) -> Option<Box<rustls::ServerConnection>> {
        let setup = self.tls.as_ref()?;
        let config = if direct {
            setup.direct.clone()
        } else {
            setup.starttls.clone()
        };
        match rustls::ServerConnection::new(config) {
            Ok(c) => Some(Box::new(c)),
            Err(e) => {
                tracing::error!(error = %e, "creating a TLS session failed");
                None
            }
        }
    }

    /// Whether the server is stopping (accept loops end).
    pub fn stopping(&self) -> bool {
        self.shutting_down.get() || self.links.stopping()
    }

    /// A place for a connection of another transport (HTTP) under this shard's connection
    /// limit, held until the guard drops; `None` when the limit is reached.
    pub fn other_connection(&self) -> Option<OtherConn> {
        if self.conns.borrow().len + self.other_conns.get() >= self.max_conns {
            return None;
        }
        self.other_conns.set(self.other_conns.get() + 1);
        let metrics = self.router.outbox.metrics().clone();
        metrics.http_conn(1);
        Some(OtherConn(self.other_conns.clone(), metrics))
    }

    /// The per-address admission of a new connection (issue 8), as for XMPP connections: the
    /// guard holds the address's place among connections not yet authenticated.
    pub fn admit(&self, peer: SocketAddr) -> Result<Option<limits::Preauth>, limits::Refusal> {
        self.ip_limits.admit(peer.ip(), Instant::now())
    }

    /// Serve an XMPP-over-WebSocket connection (RFC 7395) that the HTTP listener upgraded:
    /// `unread` holds the client's frames that followed the handshake. It runs like a
    /// connection of the XMPP ports (negotiation, shard hand-off, session), on a WebSocket.
    pub fn websocket(
        self: &Rc<Self>,
        sock: glommio::net::TcpStream,
        peer: SocketAddr,
        tls: Option<Box<rustls::ServerConnection>>,
        preauth: Option<limits::Preauth>,
        unread: Vec<u8>,
    ) -> impl std::future::Future<Output = ()> {
        conn::Conn::upgraded(self.clone(), sock, peer, tls, preauth, unread).run()
    }

    /// Start a BOSH session (XEP-0124/0206) that the HTTP listener created: its connection
    /// task reads the requests' payloads from `link` and writes its output there.
    pub fn bosh_session(
        self: &Rc<Self>,
        handle: Rc<ClientHandle>,
        link: Rc<bosh::BoshLink>,
        peer: SocketAddr,
        secure: bool,
        preauth: Option<limits::Preauth>,
    ) {
        self.bosh.set(&link.sid(), bosh::Entry::Local(link.clone()));
        let c = conn::Conn::bosh(self.clone(), handle, link, peer, secure, preauth);
        glommio::spawn_local(c.run()).detach();
    }

    /// A BOSH session living here ended: its last answers go out, and its sid is forgotten
    /// (after a while when a last answer waits for the client's next request), here and on
    /// the shard that created it.
    fn bosh_ended(self: &Rc<Self>, link: &Rc<bosh::BoshLink>, how: bosh::Ending) {
        link.end(how);
        let sid = link.sid();
        let origin = link.origin();
        let this = self.clone();
        // The ended session answers its sid for a while: its last words (a stream error) for
        // a client that had no request held, and `item-not-found` in the form the client
        // understands (an HTTP status for one without `ver`, §17.1).
        let linger = Some(link.farewell_kept());
        glommio::spawn_local(async move {
            if let Some(d) = linger {
                glommio::timer::sleep(d).await;
            }
            this.bosh.remove(&sid);
            if origin != this.router.shard() {
                let gone = bosh::Gone { sid };
                this.links
                    .send(origin, crate::shard::ShardMsg::Adopt(Box::new(gone)))
                    .await;
            }
        })
        .detach();
    }

    /// Sends `msg` to shard `dst` (waiting while its inbox is full); false if the server is
    /// stopping.
    pub async fn send_to_shard(&self, dst: usize, msg: crate::shard::ShardMsg) -> bool {
        self.links.send(dst, msg).await
    }

    /// The shard this service runs on.
    pub fn shard(&self) -> usize {
        self.router.shard()
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.links.shards()
    }

    /// The shard's connection limit is reached.
    pub fn full(&self) -> bool {
        self.conns.borrow().len + self.other_conns.get() >= self.max_conns
    }

    /// A new client handle (send queue) for a session starting now.
    pub fn new_handle(&self) -> Rc<ClientHandle> {
        Rc::new(ClientHandle::new(
            self.config.max_send_queue,
            Instant::now(),
        ))
    }

    /// Take over a connection that authenticated on another shard.
    pub fn adopt(self: &Rc<Self>, h: Handoff) {
        let c = conn::Conn::adopted(self.clone(), h);
        glommio::spawn_local(c.run()).detach();
    }

    fn register(&self, h: Rc<ClientHandle>) -> usize {
        self.conns.borrow_mut().insert(h)
    }

    fn unregister(&self, slot: usize) {
        self.conns.borrow_mut().remove(slot);
    }

    /// Enforce the authentication timeout and the slow-client grace period, and send keepalive
    /// pings; runs once a second.
    pub async fn sweeper(self: Rc<Self>) {
        let mut ping_id: u64 = 0;
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            if self.shutting_down.get() {
                return;
            }
            self.end_revoked_sessions();
            let now = Instant::now();
            let conns = self.conns.borrow();
            for h in conns.iter() {
                if h.slow_since()
                    .is_some_and(|t| now.duration_since(t) >= self.config.slow_client_grace)
                {
                    h.request_close(StreamError::with_text(
                        StreamCondition::PolicyViolation,
                        "send queue overflow: the client does not read",
                    ));
                    continue;
                }
                let jid = h.jid.borrow();
                let Some(jid) = jid.as_ref() else {
                    if now.duration_since(h.created) >= self.config.auth_timeout {
                        h.request_close(StreamError::with_text(
                            StreamCondition::ConnectionTimeout,
                            "authentication timed out",
                        ));
                    }
                    continue;
                };
                let Some(interval) = self.config.keepalive_interval else {
                    continue;
                };
                match h.ping_sent.get() {
                    None if now.duration_since(h.last_rx.get()) >= interval => {
                        ping_id += 1;
                        h.ping_sent.set(Some(now));
                        h.send_with(|out| write_ping(out, jid, ping_id));
                    }
                    Some(sent) if now.duration_since(sent) >= self.config.keepalive_timeout => {
                        // CORE-STREAM-19
                        h.request_close(StreamError::with_text(
                            StreamCondition::ConnectionTimeout,
                            "no answer to keepalive",
                        ));
                    }
                    _ => {}
                }
            }
        }
    }

    /// End the sessions on this shard whose login an account change revoked (issue 8): new
    /// credentials, deletion or disabling, recorded in storage by this or another process (the
    /// admin CLI). One lookup when nothing changed. An account's sessions all live on its home
    /// shard; a session that logged in after the change (its `auth_seq` is not older) stays.
    /// Connections authenticated but not bound yet are checked at bind
    /// (`session::check_login`).
    fn end_revoked_sessions(&self) {
        let accounts = self.router.storage.accounts();
        let seen = self.revocations_seen.get();
        let found = match accounts.revocation_seq() {
            Ok(last) if last <= seen => return,
            Ok(_) => accounts.revocations_after(seen),
            Err(e) => Err(e),
        };
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "reading the account revocation log failed");
                return;
            }
        };
        self.revocations_seen.set(found.last);
        let mut ending: Vec<(Jid, Rc<ClientHandle>, StreamError)> = Vec::new();
        if found.complete {
            let sessions = self.router.sessions.borrow();
            for r in &found.entries {
                let Some(account) = sessions.account(&r.jid) else {
                    continue;
                };
                for res in &account.resources {
                    if res.handle.auth_seq.get() < r.seq {
                        let err = crate::session::revoked_error(r.reason);
                        ending.push((res.jid.clone(), res.handle.clone(), err));
                    }
                }
            }
        } else {
            // Revocations were dropped from the bounded log before this shard read them (it
            // stalled, or a bulk change outran the log): which accounts they named is
            // unknown, so every session that logged in before them ends.
            tracing::warn!(
                seen,
                last = found.last,
                "account revocations were missed; ending every session that logged in before them"
            );
            for h in self.conns.borrow().iter() {
                let Some(jid) = h.jid.borrow().clone() else {
                    continue;
                };
                if h.auth_seq.get() < found.last {
                    let err = StreamError::with_text(
                        StreamCondition::NotAuthorized,
                        "account changes were missed; log in again",
                    );
                    ending.push((jid, h.clone(), err));
                }
            }
        }
        for (jid, h, err) in ending {
            h.request_close(err);
            // The session ends here and now, as a displaced one does: nothing more is routed
            // to it, contacts learn it is gone, and the account's cached state goes with its
            // last session, so a new account with the same JID starts from storage.
            self.router.session_ended(&jid, &h);
        }
    }

    /// Close every stream with `system-shutdown` (CORE-SERR-20) and wait (bounded) for them
    /// to finish.
    pub async fn shutdown(&self) {
        self.shutting_down.set(true);
        for h in self.conns.borrow().iter() {
            h.request_close(StreamError::new(StreamCondition::SystemShutdown));
        }
        let deadline = Instant::now() + self.config.shutdown_grace;
        while self.conns.borrow().len > 0 && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Number of connections on this shard.
    pub fn connections(&self) -> usize {
        self.conns.borrow().len
    }
}

fn write_ping(out: &mut Vec<u8>, to: &Jid, id: u64) {
    out.extend_from_slice(b"<iq type='get' id='ka");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"' from='");
    crate::xml::escape_attr(to.domain(), out);
    out.extend_from_slice(b"' to='");
    crate::xml::escape_attr(to.as_str(), out);
    out.extend_from_slice(b"'><ping xmlns='urn:xmpp:ping'/></iq>");
}
