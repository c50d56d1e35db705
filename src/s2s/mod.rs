//! Server-to-server federation (RFC 6120 over `jabber:server`): outgoing streams homed on
//! the shard of their remote domain, incoming streams served where they were accepted,
//! authentication by certificate (SASL EXTERNAL, XEP-0178) or by dialback (XEP-0220), and
//! DNS resolution off the shards.
//!
//! - [`config`]: flags and the `[s2s]` table.
//! - [`resolve`]: SRV (`_xmpps-server`, `_xmpp-server`) and address lookups on a resolver
//!   thread, static routes.
//! - [`identity`]: certificate chains and RFC 6125 identities; TLS verifiers that leave the
//!   verdict to the stream (a certificate that does not validate may still be dialed back).
//! - [`dialback`]: XEP-0220/0185 as pure state: keys, elements, the three roles.
//! - [`link`]: socket, TLS, framing of one stream.
//! - `outgoing`, `incoming`: the two stream tasks.
//!
//! # Where things live
//!
//! A stanza for a remote domain is routed (like any stanza) to the home shard of that
//! domain, `shard_of(domain)`, where [`S2s`] keeps one outgoing stream per (local domain,
//! remote domain) pair ([`Out`]). While the stream is set up, stanzas wait in the pair's
//! queue (bounded by `--s2s-max-queue`; beyond it `resource-constraint`); if set-up fails
//! they are bounced with the failure's condition (`remote-server-not-found`,
//! `remote-server-timeout`, ...) and, for a short while, so is every new stanza for the
//! pair. Once up, the stream writes through a [`ClientHandle`] like a client's.
//!
//! An incoming stream lives on the shard that accepted it and routes what it receives from
//! there. A dialback verification it needs (`db:verify` to the authoritative server) goes
//! to the home shard of the sender domain and out on the outgoing stream to that domain;
//! the verdict comes back over a oneshot channel.

pub mod config;
pub mod dialback;
pub mod identity;
mod incoming;
pub mod link;
mod outgoing;
pub mod resolve;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use futures_channel::oneshot;
use glommio::net::TcpListener;

pub use config::{S2sArgs, S2sConfig};

use crate::config::Config;
use crate::core::{ClientHandle, Remote, Route};
use crate::router::Router;
use crate::shard::{Links, ShardMsg};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::stanza::StanzaType;

/// How long a pair whose stream failed bounces new stanzas at once before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What every shard shares: the resolver, TLS settings, trust anchors, the dialback secret
/// and the incoming connection count.
pub struct Shared {
    /// The resolver thread.
    pub resolver: resolve::Resolver,
    /// TLS client settings for outgoing streams (our certificate as client certificate).
    pub client_tls: Arc<rustls::ClientConfig>,
    /// TLS server settings for incoming streams (a client certificate is asked for).
    pub server_tls: Arc<rustls::ServerConfig>,
    /// Trust anchors for peer certificates.
    pub anchors: identity::TrustAnchors,
    /// The dialback secret (XEP-0185), derived from the install's secret.
    pub secret: Vec<u8>,
    /// Incoming connections now (all shards).
    pub incoming: AtomicUsize,
    /// The authenticated domain pairs, for `xmppd_s2s_pairs` in the metrics.
    pub book: PairBook,
}

/// The authenticated domain pairs of every shard, for operators: written when a pair is
/// authenticated or its stream ends, read at a metrics scrape; never on the stanza path.
#[derive(Default)]
pub struct PairBook {
    next: std::sync::atomic::AtomicU64,
    open: std::sync::Mutex<std::collections::BTreeMap<u64, Listed>>,
}

/// One authenticated pair on one stream.
struct Listed {
    direction: &'static str,
    local: String,
    remote: String,
    auth: &'static str,
}

impl PairBook {
    /// A pair is authenticated: its entry's number, for [`PairBook::remove`].
    pub fn add(
        &self,
        direction: &'static str,
        local: &str,
        remote: &str,
        auth: &'static str,
    ) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let l = Listed {
            direction,
            local: local.to_string(),
            remote: remote.to_string(),
            auth,
        };
        if let Ok(mut m) = self.open.lock() {
            m.insert(id, l);
        }
        id
    }

    /// Its stream ended (0: nothing listed).
    pub fn remove(&self, id: u64) {
        if id == 0 {
            return;
        }
        if let Ok(mut m) = self.open.lock() {
            m.remove(&id);
        }
    }

    /// `xmppd_s2s_pairs{direction,local,remote,auth}`: streams per authenticated pair.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let mut counts: std::collections::BTreeMap<(&str, &str, &str, &str), u64> =
            std::collections::BTreeMap::new();
        let Ok(m) = self.open.lock() else {
            return;
        };
        for l in m.values() {
            *counts
                .entry((l.direction, &l.local, &l.remote, l.auth))
                .or_default() += 1;
        }
        out.push_str(
            "# HELP xmppd_s2s_pairs Authenticated server-to-server domain pairs: streams per \
             direction (in: the remote domain sends to the local one; out: we send), local \
             domain, remote domain and authentication (sasl-external, dialback, bidi: carried by \
             the peer's bidirectional stream).\n# TYPE xmppd_s2s_pairs gauge\n",
        );
        for ((dir, local, remote, auth), n) in counts {
            let _ = writeln!(
                out,
                "xmppd_s2s_pairs{{direction=\"{dir}\",local=\"{}\",remote=\"{}\",auth=\"{auth}\"}} {n}",
                label(local),
                label(remote)
            );
        }
    }
}

#[cfg(test)]
mod book_tests {
    use super::PairBook;

    #[test]
    fn pairs_are_counted_by_labels_and_leave_when_removed() {
        let b = PairBook::default();
        let x = b.add("out", "a.test", "b.test", "dialback");
        let y = b.add("out", "a.test", "b.test", "dialback");
        let z = b.add("in", "a.test", "we\"ird", "sasl-external");
        let mut out = String::new();
        b.render(&mut out);
        let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "xmppd_s2s_pairs{direction=\"in\",local=\"a.test\",remote=\"we\\\"ird\",auth=\"sasl-external\"} 1",
                "xmppd_s2s_pairs{direction=\"out\",local=\"a.test\",remote=\"b.test\",auth=\"dialback\"} 2",
            ]
        );
        for id in [x, y, z, 0] {
            b.remove(id);
        }
        let mut out = String::new();
        b.render(&mut out);
        assert!(out.lines().all(|l| l.starts_with('#')), "{out}");
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    std::borrow::Cow::Owned(
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

impl Shared {
    /// Build the shared state: TLS configs from our certificate, trust anchors from
    /// `--s2s-ca` or the system, the resolver thread.
    pub fn new(
        config: &Config,
        tls: &crate::tls::TlsSetup,
        install_secret: &[u8],
    ) -> Result<Shared, String> {
        let s2s = &config.s2s;
        let anchors = match &s2s.ca {
            Some(path) => identity::TrustAnchors::from_pem_file(path)
                .map_err(|e| format!("--s2s-ca {}: {e}", path.display()))?,
            None => identity::TrustAnchors::from_system().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no system trust anchors: peer certificates will not validate");
                identity::TrustAnchors::empty()
            }),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let client_tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(identity::DeferredServerCertVerifier::new(
                &provider,
            )))
            .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())
            .map_err(|e| format!("s2s client certificate: {e}"))?;
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(
                // No root hints: the system roots' names are over 10 KiB in every
                // CertificateRequest, and peers send their certificate regardless.
                identity::DeferredClientCertVerifier::new(&provider),
            ))
            .with_single_cert(tls.chain.clone(), tls.key.clone_key())
            .map_err(|e| format!("s2s server certificate: {e}"))?;
        server_tls.alpn_protocols = vec![b"xmpp-server".to_vec()];
        let mut rcfg = resolve::ResolverConfig::default();
        if !s2s.dns.is_empty() {
            rcfg.nameservers = Some(s2s.dns.clone());
        }
        for (domain, target) in &s2s.routes {
            let (d, t) = resolve::parse_route(&format!("{domain}={target}"))?;
            rcfg.add_route(d, t);
        }
        let resolver =
            resolve::Resolver::start(rcfg).map_err(|e| format!("resolver thread: {e}"))?;
        let mut secret = Vec::with_capacity(32);
        {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(b"xmppd dialback secret\0");
            h.update(install_secret);
            secret.extend_from_slice(&h.finalize());
        }
        Ok(Shared {
            resolver,
            client_tls: Arc::new(client_tls),
            server_tls: Arc::new(server_tls),
            anchors,
            secret,
            incoming: AtomicUsize::new(0),
            book: PairBook::default(),
        })
    }
}

/// An incoming stream on its way to the home shard of the domain it comes from (the
/// `from` of its first header), where our own streams to that domain live.
pub struct InHandoff {
    link: link::Parts,
    peer: std::net::SocketAddr,
    hdr: crate::xml::StreamHeader,
}

/// A stanza waiting for its stream.
struct Queued {
    ty: StanzaType,
    to: String,
    from: String,
    bytes: Vec<u8>,
}

/// Where an outgoing stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// Resolving, connecting, negotiating, authenticating: stanzas queue.
    Connecting,
    /// Authenticated: stanzas go to the send queue.
    Up,
    /// Set-up failed: stanzas bounce with this condition until `retry`.
    Failed(StanzaCondition),
}

/// One outgoing stream (local domain → remote domain), on the remote domain's home shard.
pub struct Out {
    local: String,
    remote: String,
    state: Cell<OutState>,
    retry: Cell<Option<Instant>>,
    queue: RefCell<VecDeque<Queued>>,
    queued_bytes: Cell<usize>,
    handle: Rc<ClientHandle>,
    /// `db:verify` requests to send on this stream, with where to answer.
    verifies: RefCell<Vec<VerifyAsk>>,
    /// When a stanza last went out (idle timeout).
    last_used: Cell<Instant>,
    /// How it was authenticated, for the metrics and logs.
    auth: Cell<&'static str>,
    /// Its entry in the [`PairBook`] while up (0: none).
    listed: Cell<u64>,
}

impl Out {
    fn new(local: &str, remote: &str, handle: Rc<ClientHandle>) -> Out {
        Out {
            local: local.to_string(),
            remote: remote.to_string(),
            state: Cell::new(OutState::Connecting),
            retry: Cell::new(None),
            queue: RefCell::default(),
            queued_bytes: Cell::new(0),
            handle,
            verifies: RefCell::default(),
            last_used: Cell::new(Instant::now()),
            auth: Cell::new("none"),
            listed: Cell::new(0),
        }
    }

    /// What waited for the stream, taken.
    fn take_queue(&self) -> Vec<Queued> {
        self.queued_bytes.set(0);
        self.queue.borrow_mut().drain(..).collect()
    }

    /// The pair may send: it is up, and what waited goes out first, in order.
    fn release(&self) {
        self.state.set(OutState::Up);
        self.last_used.set(Instant::now());
        for q in self.take_queue() {
            self.handle.send(&q.bytes);
        }
    }
}

/// A verification asked of another shard: send `req` to the authoritative server of
/// `req.pair.sender` from the home shard of that domain.
pub struct VerifyAsk {
    req: dialback::VerifyRequest,
    reply: oneshot::Sender<dialback::VerifyOutcome>,
}

/// Streams by (local domain, remote domain), found without building a key: by remote
/// domain, then among its few local domains. An entry is keyed by its `Out`'s domains.
#[derive(Default)]
struct PairTable(AHashMap<Box<str>, smallvec::SmallVec<[Rc<Out>; 2]>>);

impl PairTable {
    fn get(&self, local: &str, remote: &str) -> Option<&Rc<Out>> {
        self.0.get(remote)?.iter().find(|o| o.local == local)
    }

    /// Add `o`, replacing the pair's entry if there is one.
    fn insert(&mut self, o: Rc<Out>) {
        let v = match self.0.get_mut(o.remote.as_str()) {
            Some(v) => v,
            None => self.0.entry(o.remote.as_str().into()).or_default(),
        };
        match v.iter_mut().find(|x| x.local == o.local) {
            Some(x) => *x = o,
            None => v.push(o),
        }
    }

    /// Remove `o` itself (not a newer entry for its pair).
    fn remove(&mut self, o: &Rc<Out>) {
        let Some(v) = self.0.get_mut(o.remote.as_str()) else {
            return;
        };
        v.retain(|x| !Rc::ptr_eq(x, o));
        if v.is_empty() {
            self.0.remove(o.remote.as_str());
        }
    }

    fn values(&self) -> impl Iterator<Item = &Rc<Out>> {
        self.0.values().flatten()
    }
}

/// One outgoing connection that further local domains may ride on (sender multiplexing,
/// XEP-0220 §2.6): every pair on it writes to the same send queue, and the stream task sends
/// the `db:result` of each pair that joins.
pub struct Conn {
    handle: Rc<ClientHandle>,
    /// Pairs that asked to ride on this connection and wait for their `db:result` to go out.
    joining: RefCell<Vec<Rc<Out>>>,
    /// Pairs on the connection (the one that opened it included).
    riders: Cell<usize>,
}

/// Most local domains on one outgoing connection; more get a connection of their own.
const MAX_RIDERS: usize = 16;

/// The federation service of one shard.
pub struct S2s {
    router: Rc<Router>,
    config: Arc<Config>,
    links: Arc<Links>,
    shared: Arc<Shared>,
    out: RefCell<PairTable>,
    /// Outgoing connections that further local domains may join, by remote domain.
    conns: RefCell<AHashMap<Box<str>, Rc<Conn>>>,
    /// Incoming streams the peer made bidirectional (XEP-0288), by the pair they may carry
    /// from us: used when the pair has no outgoing stream of its own that is up.
    bidi: RefCell<PairTable>,
    me: std::rc::Weak<S2s>,
}

impl S2s {
    /// The federation service of the shard whose router this is; installs itself as the
    /// router's [`Remote`].
    pub fn new(
        router: Rc<Router>,
        config: Arc<Config>,
        links: Arc<Links>,
        shared: Arc<Shared>,
    ) -> Rc<S2s> {
        let s = Rc::new_cyclic(|me| S2s {
            router: router.clone(),
            config,
            links,
            shared,
            out: RefCell::default(),
            conns: RefCell::default(),
            bidi: RefCell::default(),
            me: me.clone(),
        });
        router.set_remote(s.clone());
        s
    }

    /// Accept incoming streams until the server stops.
    pub async fn accept_loop(self: Rc<Self>, listener: TcpListener, direct_tls: bool) {
        while let Some((stream, peer)) =
            crate::c2s::accept_next(&listener, &self.links, "s2s").await
        {
            let n = self.shared.incoming.fetch_add(1, Ordering::AcqRel);
            if n >= self.config.s2s.max_incoming {
                self.shared.incoming.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(%peer, "s2s: too many incoming streams");
                drop(stream);
                continue;
            }
            let me = self.clone();
            glommio::spawn_local(async move {
                if incoming::serve(me.clone(), stream, peer, direct_tls).await {
                    me.shared.incoming.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .detach();
        }
    }

    /// An incoming stream moved here, the home shard of the domain it comes from.
    pub fn adopt(self: &Rc<Self>, h: InHandoff) {
        let me = self.clone();
        glommio::spawn_local(async move {
            incoming::adopted(me.clone(), h).await;
            me.shared.incoming.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }

    /// True if `domain` is ours: served, a service's or a component's.
    fn hosted(&self, domain: &str) -> bool {
        self.router.hosts_domain(domain)
    }

    /// The outgoing stream for a pair, started if there is none (on this shard, the home
    /// shard of `remote`).
    /// `join`: a new pair may ride on an existing connection.
    fn out_for(self: &Rc<Self>, local: &str, remote: &str, join: bool) -> Rc<Out> {
        if let Some(o) = self.out.borrow().get(local, remote) {
            let retry_due = matches!(o.state.get(), OutState::Failed(_))
                && o.retry.get().is_some_and(|t| Instant::now() >= t);
            if !retry_due {
                return o.clone();
            }
        }
        // XEP-0220 §2.6: a connection to the remote domain that is up takes another local
        // domain; its stream task sends the pair's db:result.
        let joinable = self
            .conns
            .borrow()
            .get(remote)
            .filter(|c| join && c.riders.get() < MAX_RIDERS)
            .cloned();
        if let Some(c) = joinable {
            let o = Rc::new(Out::new(local, remote, c.handle.clone()));
            c.riders.set(c.riders.get() + 1);
            c.joining.borrow_mut().push(o.clone());
            c.handle.wake_task();
            self.out.borrow_mut().insert(o.clone());
            return o;
        }
        let o = Rc::new(Out::new(
            local,
            remote,
            Rc::new(ClientHandle::new(
                self.config.s2s.max_queue.max(self.config.max_send_queue),
                Instant::now(),
            )),
        ));
        self.out.borrow_mut().insert(o.clone());
        let me = self.clone();
        let task = o.clone();
        glommio::spawn_local(async move { outgoing::run(me, task).await }).detach();
        o
    }

    /// The stream of a pair is gone: forget it unless a newer one replaced it.
    fn out_ended(&self, o: &Rc<Out>) {
        self.shared.book.remove(o.listed.replace(0));
        if matches!(o.state.get(), OutState::Failed(_)) {
            return; // kept to bounce at once until the retry time (or replaced)
        }
        self.out.borrow_mut().remove(o);
    }

    /// A local domain that was joining a connection which ended, or that the peer would not
    /// take on it: it gets a connection of its own, with what waited for it.
    fn out_restart(self: &Rc<Self>, o: &Rc<Out>) {
        self.out.borrow_mut().remove(o);
        let fresh = self.out_for(&o.local, &o.remote, false);
        let moved = o.queued_bytes.get();
        fresh.queue.borrow_mut().extend(o.take_queue());
        fresh.queued_bytes.set(fresh.queued_bytes.get() + moved);
        fresh
            .verifies
            .borrow_mut()
            .extend(o.verifies.borrow_mut().drain(..));
        fresh.handle.wake_task();
    }

    /// Set-up failed: bounce what waited, refuse verifications, and bounce new stanzas
    /// for a while.
    fn out_failed(&self, o: &Out, cond: StanzaCondition, why: &str) {
        tracing::info!(local = %o.local, remote = %o.remote, condition = cond.name(), why, "s2s stream failed");
        o.state.set(OutState::Failed(cond));
        o.retry.set(Some(Instant::now() + RETRY_AFTER));
        for q in o.take_queue() {
            self.bounce_queued(&q, StanzaError::with_text(cond, why));
        }
        let failure = match cond {
            StanzaCondition::RemoteServerTimeout => dialback::VerifyFailure::Timeout,
            StanzaCondition::RemoteServerNotFound => dialback::VerifyFailure::NotFound,
            _ => dialback::VerifyFailure::ConnectionFailed,
        };
        for ask in o.verifies.borrow_mut().drain(..) {
            let _ = ask.reply.send(dialback::VerifyOutcome::Failed(failure));
        }
    }

    fn bounce_queued(&self, q: &Queued, err: StanzaError) {
        let id = self.router.id_of(&q.bytes);
        let route = Route::new(
            crate::xmpp::jid::JidStr::trusted(&q.from),
            crate::xmpp::jid::JidStr::trusted(&q.to),
        );
        let refused = crate::core::Refused {
            ty: q.ty,
            id: id.as_deref(),
            route,
        };
        crate::core::Services::bounce(&*self.router, refused, err);
    }

    /// Ask the authoritative server of `req.pair.sender` whether the key is right
    /// (DB-RECV-02), over the outgoing stream to that domain, wherever it lives.
    pub fn verify(
        self: &Rc<Self>,
        req: dialback::VerifyRequest,
    ) -> oneshot::Receiver<dialback::VerifyOutcome> {
        let (tx, rx) = oneshot::channel();
        let home = self.router.home_of(&req.pair.sender);
        if home == self.router.shard() {
            self.verify_here(VerifyAsk { req, reply: tx });
        } else {
            let links = self.links.clone();
            glommio::spawn_local(async move {
                // Not delivered (stopping): the sender is dropped and the waiter sees a
                // failure.
                let _ = links
                    .send(
                        home,
                        ShardMsg::Adopt(Box::new(VerifyAsk { req, reply: tx })),
                    )
                    .await;
            })
            .detach();
        }
        rx
    }

    /// A verification for a remote domain homed here.
    pub fn verify_here(self: &Rc<Self>, ask: VerifyAsk) {
        let o = self.out_for(&ask.req.pair.target, &ask.req.pair.sender, true);
        if let OutState::Failed(_) = o.state.get() {
            let _ = ask.reply.send(dialback::VerifyOutcome::Failed(
                dialback::VerifyFailure::NotFound,
            ));
            return;
        }
        o.verifies.borrow_mut().push(ask);
        o.handle.wake_task();
    }

    /// An outgoing connection is up and the peer offered dialback on it: further local
    /// domains may join it (XEP-0220 §2.6).
    fn conn_open(&self, remote: &str, c: &Rc<Conn>) {
        self.conns.borrow_mut().insert(remote.into(), c.clone());
    }

    /// The connection takes no further local domains (it is closing).
    fn conn_closed(&self, remote: &str, c: &Rc<Conn>) {
        let mut m = self.conns.borrow_mut();
        if m.get(remote).is_some_and(|x| Rc::ptr_eq(x, c)) {
            m.remove(remote);
        }
    }

    /// An incoming bidirectional stream (XEP-0288) authenticated for stanzas from `remote`
    /// to `local` may carry ours from `local` to `remote`; they queue until
    /// [`S2s::bidi_up`]. None when another stream carries the pair already.
    fn bidi_open(&self, local: &str, remote: &str, handle: &Rc<ClientHandle>) -> Option<Rc<Out>> {
        let mut m = self.bidi.borrow_mut();
        if m.get(local, remote).is_some() {
            return None;
        }
        let o = Rc::new(Out::new(local, remote, handle.clone()));
        o.auth.set("bidi");
        o.listed
            .set(self.shared.book.add("out", local, remote, "bidi"));
        m.insert(o.clone());
        tracing::info!(
            local,
            remote,
            "s2s: the incoming stream carries our stanzas too (bidi)"
        );
        Some(o)
    }

    /// The bidirectional stream may write our stanzas now: what waited goes first.
    fn bidi_up(&self, o: &Out) {
        if o.state.get() == OutState::Up {
            return;
        }
        o.release();
    }

    /// The incoming bidirectional stream is gone: what still waited for it bounces.
    fn bidi_closed(&self, o: &Rc<Out>) {
        self.shared.book.remove(o.listed.replace(0));
        for q in o.take_queue() {
            self.bounce_queued(
                &q,
                StanzaError::with_text(
                    StanzaCondition::RemoteServerTimeout,
                    "the remote server's stream closed",
                ),
            );
        }
        self.bidi.borrow_mut().remove(o);
    }

    /// The server is stopping: close every stream on this shard.
    pub fn shutdown(&self) {
        for o in self.out.borrow().values() {
            o.handle.request_close(crate::xmpp::error::StreamError::new(
                crate::xmpp::error::StreamCondition::SystemShutdown,
            ));
        }
    }
}

impl Remote for S2s {
    fn send(&self, ty: StanzaType, route: Route<'_>, stanza: &[u8]) -> Result<(), StanzaError> {
        let (local, remote) = (route.from.domain(), route.to.domain());
        if !self.hosted(local) {
            // Only our own domains' stanzas leave over our streams.
            return Err(StanzaError::new(StanzaCondition::NotAllowed));
        }
        let Some(me) = self.me.upgrade() else {
            return Err(StanzaError::new(StanzaCondition::RemoteServerNotFound));
        };
        let up = self
            .out
            .borrow()
            .get(local, remote)
            .filter(|o| o.state.get() == OutState::Up)
            .cloned();
        let o = match up {
            Some(o) => o,
            None => {
                // XEP-0288: the peer's bidirectional stream carries the pair while we have
                // no stream of our own up.
                let bidi = self.bidi.borrow().get(local, remote).cloned();
                match bidi {
                    Some(b) => b,
                    None => me.out_for(local, remote, true),
                }
            }
        };
        match o.state.get() {
            OutState::Failed(cond) => Err(StanzaError::new(cond)),
            OutState::Connecting => {
                let bytes = crate::xmpp::content::for_server_stream(
                    stanza,
                    route.to.as_str(),
                    route.from.as_str(),
                );
                let total = o.queued_bytes.get() + bytes.len();
                if total > self.config.s2s.max_queue && !o.queue.borrow().is_empty() {
                    return Err(StanzaError::with_text(
                        StanzaCondition::ResourceConstraint,
                        "too much waiting for the remote server",
                    ));
                }
                o.queued_bytes.set(total);
                o.queue.borrow_mut().push_back(Queued {
                    ty,
                    to: route.to.as_str().to_string(),
                    from: route.from.as_str().to_string(),
                    bytes: bytes.into_owned(),
                });
                Ok(())
            }
            OutState::Up => {
                o.last_used.set(Instant::now());
                let bytes = crate::xmpp::content::for_server_stream(
                    stanza,
                    route.to.as_str(),
                    route.from.as_str(),
                );
                o.handle
                    .offer(route.from.as_str(), &bytes)
                    .map_err(|_| StanzaError::new(StanzaCondition::ResourceConstraint))
            }
        }
    }
}
