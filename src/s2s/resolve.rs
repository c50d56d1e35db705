//! Where to connect for a remote XMPP domain (RFC 6120 §3.2, RFC 2782, XEP-0368;
//! CORE-S2S-01).
//!
//! # The order of connection attempts
//!
//! 1. A static route for the domain (`DOMAIN=HOST:PORT`, [`parse_route`]) overrides DNS: its
//!    targets are used in the order given. A route host that is an IP address is used as it is;
//!    a name is resolved by A/AAAA.
//! 2. A domain that is itself an IP address (a JID domainpart may be one) is connected to on
//!    port 5269, STARTTLS, without any DNS.
//! 3. Otherwise `_xmpps-server._tcp.DOMAIN` (direct TLS, XEP-0368) and
//!    `_xmpp-server._tcp.DOMAIN` (STARTTLS) are looked up concurrently and merged into one list
//!    by [`merge_srv`]:
//!    - **Interleaving rule**: the records of both services form *one* set, ordered per RFC 2782
//!      as if they were one RRset: ascending priority; within one priority, weighted random
//!      selection over all records of that priority regardless of service (so the operator's
//!      priorities and weights decide between STARTTLS and direct TLS, as XEP-0368 asks).
//!      Before the weighted draw each priority group is laid out as: weight-0 records first
//!      (RFC 2782), then the rest; within those two, `_xmpps-server` records before
//!      `_xmpp-server` ones, each in DNS answer order. That layout only matters where the draw
//!      leaves a choice (all weights 0: the layout order is the result).
//!    - A record whose target is `.` means "service decidedly not available": it contributes no
//!      target. If that leaves nothing from either service, the domain has no s2s service
//!      ([`ResolveError::NotFound`]); XEP-0368 forbids the A/AAAA fallback once SRV records
//!      exist.
//!    - Only when *neither* service has any SRV record (NXDOMAIN or no SRV records) does the
//!      resolver fall back to the domain itself, port 5269, STARTTLS.
//!    - If one SRV lookup fails (timeout, SERVFAIL) while the other has records, those records
//!      are used. If one fails and the other has no records, the failure is the answer: without
//!      both answers the A/AAAA fallback cannot be decided.
//! 4. Each target's addresses come from A/AAAA lookups (run concurrently, one per target). The
//!    result lists, for each target in the order above, its IPv6 addresses first and then its
//!    IPv4 addresses (hickory's `Ipv6AndIpv4` strategy: both queried in parallel; a family that
//!    fails or has no records is left out). Duplicate `(ip, port, direct_tls)` entries keep
//!    their first place. A target whose name does not resolve is skipped; if no target yields
//!    an address, the error is `Timeout` if any lookup timed out, else `Other` if any failed
//!    otherwise, else `NotFound`.
//!
//! # Threading
//!
//! `hickory-resolver` runs on tokio, which must not run on the glommio shard threads. The
//! [`Resolver`] therefore owns one dedicated thread, `xmppd-resolver`, running a
//! current-thread tokio runtime. Handles ([`Resolver`] is `Clone + Send + Sync`) send requests
//! over an unbounded channel (a non-blocking push from any thread); each request is served by
//! its own tokio task and answered over a `futures_channel::oneshot`, which a glommio task
//! `.await`s without blocking. At most [`ResolverConfig::max_in_flight`] requests are in
//! flight; beyond that [`Resolver::resolve`] fails at once. Dropping the last handle (or
//! [`Resolver::stop`]) closes the channel; the thread then lets the requests in flight finish
//! (each is bounded by the deadline) and exits.
//!
//! # Caching and time limits
//!
//! Answers are cached by hickory's response cache ([`ResolverConfig::cache_size`] responses),
//! positive and negative, for the record's TTL (for a negative answer: the SOA minimum), capped
//! at [`ResolverConfig::max_ttl`]; negative answers are kept at least
//! [`ResolverConfig::negative_min_ttl`] so that an unreachable domain does not cost a query per
//! queued stanza. Route hosts and domains that are IP addresses need no query at all.
//!
//! Each DNS query waits [`ResolverConfig::timeout`] and is tried [`ResolverConfig::attempts`]
//! times in all. A whole resolution (two rounds of queries: SRV, then A/AAAA) is bounded by
//! [`ResolverConfig::deadline`]; past it the answer is [`ResolveError::Timeout`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_lite::StreamExt;
use hickory_resolver::config as hconfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

/// The s2s port of RFC 6120 §3.2 (used for the A/AAAA fallback and routes without a port).
pub const DEFAULT_PORT: u16 = 5269;
/// SRV service and protocol labels for STARTTLS s2s (RFC 6120 §3.2.1).
pub const SERVICE_STARTTLS: &str = "_xmpp-server._tcp";
/// SRV service and protocol labels for direct-TLS s2s (XEP-0368).
pub const SERVICE_DIRECT_TLS: &str = "_xmpps-server._tcp";

/// A host and port to connect to, before address resolution.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// A DNS name (lowercase, no trailing dot) or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Connect with TLS at once (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
}

/// One SRV record as received (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target name without trailing dot; `.` or empty for "decidedly not available".
    pub target: String,
}

impl SrvRecord {
    /// The RFC 2782 "service decidedly not available" target.
    pub fn is_unavailable(&self) -> bool {
        self.target.is_empty() || self.target == "."
    }
}

/// The outcome of one SRV lookup that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrvAnswer {
    /// NXDOMAIN or no SRV records (an empty `Records` means the same).
    Absent,
    /// The SRV records in answer order.
    Records(Vec<SrvRecord>),
}

impl SrvAnswer {
    fn is_absent(&self) -> bool {
        match self {
            SrvAnswer::Absent => true,
            SrvAnswer::Records(r) => r.is_empty(),
        }
    }
}

/// Orders `items` per RFC 2782: ascending priority; within one priority, repeated weighted
/// random selection. `key` gives `(priority, weight)`. `pick(max)` must return a uniformly
/// random number in `0..=max` (values above `max` are clamped); tests inject a deterministic
/// one. Items of one priority keep their relative input order as the layout of the draw, except
/// that weight-0 items are moved to the front (RFC 2782), which gives them a small chance: they
/// are drawn when `pick` returns 0.
pub fn rfc2782_order<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> (u16, u16),
    pick: &mut dyn FnMut(u32) -> u32,
) -> Vec<T> {
    let mut items = items;
    // Stable: equal priorities keep their input order.
    items.sort_by_key(|t| key(t).0);
    let mut out = Vec::with_capacity(items.len());
    let mut rest = items.into_iter().peekable();
    while let Some(first) = rest.next() {
        let priority = key(&first).0;
        let mut group = vec![first];
        while let Some(next) = rest.next_if(|t| key(t).0 == priority) {
            group.push(next);
        }
        // Weight 0 first (stable partition).
        let (mut zero, nonzero): (Vec<T>, Vec<T>) = group.into_iter().partition(|t| key(t).1 == 0);
        zero.extend(nonzero);
        let mut group = zero;
        while !group.is_empty() {
            let total: u32 = group.iter().map(|t| u32::from(key(t).1)).sum();
            let r = pick(total).min(total);
            let mut running = 0u32;
            let mut chosen = group.len() - 1;
            for (i, t) in group.iter().enumerate() {
                running += u32::from(key(t).1);
                if running >= r {
                    chosen = i;
                    break;
                }
            }
            out.push(group.remove(chosen));
        }
    }
    out
}

/// Orders one service's SRV records (RFC 2782), dropping `.` targets.
pub fn order_srv(records: &[SrvRecord], pick: &mut dyn FnMut(u32) -> u32) -> Vec<SrvRecord> {
    let usable = records
        .iter()
        .filter(|r| !r.is_unavailable())
        .cloned()
        .collect();
    rfc2782_order(usable, |r| (r.priority, r.weight), pick)
}

/// Merges the `_xmpps-server._tcp` (direct TLS) and `_xmpp-server._tcp` (STARTTLS) answers for
/// `domain` into one connection order (see the module docs for the interleaving rule). Both
/// absent: the domain itself on port 5269, STARTTLS. An empty result means the domain has SRV
/// records but no usable target (all `.`): no s2s service.
pub fn merge_srv(
    domain: &str,
    direct_tls: &SrvAnswer,
    starttls: &SrvAnswer,
    pick: &mut dyn FnMut(u32) -> u32,
) -> Vec<Target> {
    if direct_tls.is_absent() && starttls.is_absent() {
        return vec![Target {
            host: normalize_domain(domain),
            port: DEFAULT_PORT,
            direct_tls: false,
        }];
    }
    let mut set: Vec<(&SrvRecord, bool)> = Vec::new();
    for (answer, tls) in [(direct_tls, true), (starttls, false)] {
        if let SrvAnswer::Records(records) = answer {
            set.extend(
                records
                    .iter()
                    .filter(|r| !r.is_unavailable())
                    .map(|r| (r, tls)),
            );
        }
    }
    rfc2782_order(set, |(r, _)| (r.priority, r.weight), pick)
        .into_iter()
        .map(|(r, tls)| Target {
            host: normalize_domain(&r.target),
            port: r.port,
            direct_tls: tls,
        })
        .collect()
}

/// Lowercase, without a trailing dot.
fn normalize_domain(domain: &str) -> String {
    domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase()
}

/// An IP address in `host` as written in a domain or route: `1.2.3.4`, `[::1]` or `::1`.
fn ip_literal(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    host.parse().ok()
}

/// Parses a static route `DOMAIN=HOST:PORT` (the `--s2s-route` flag and the TOML routes).
/// HOST is a DNS name, an IPv4 address or a bracketed IPv6 address (`[2001:db8::1]:5269`).
/// `:PORT` may be left out for 5269. The domain is returned lowercase without trailing dot; the
/// target uses STARTTLS.
pub fn parse_route(s: &str) -> Result<(String, Target), String> {
    let s = s.trim();
    let (domain, hostport) = s
        .split_once('=')
        .ok_or_else(|| format!("s2s route {s:?}: expected DOMAIN=HOST:PORT"))?;
    let domain = normalize_domain(domain.trim());
    let hostport = hostport.trim();
    if domain.is_empty() {
        return Err(format!("s2s route {s:?}: empty domain"));
    }
    if let Some(bad) = domain
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | '@' | '=' | ':' | '[' | ']'))
    {
        return Err(format!(
            "s2s route {s:?}: domain {domain:?} contains {bad:?}"
        ));
    }
    let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
        let (addr, tail) = after
            .split_once(']')
            .ok_or_else(|| format!("s2s route {s:?}: '[' without ']'"))?;
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("s2s route {s:?}: {addr:?} is not an IPv6 address"))?;
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or_else(|| {
                format!("s2s route {s:?}: expected ':PORT' after ']', found {t:?}")
            })?),
        };
        (ip.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!(
                    "s2s route {s:?}: an IPv6 address must be in brackets, as [ADDRESS]:PORT"
                ))
            }
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("s2s route {s:?}: empty host"));
    }
    if let Some(bad) = host
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | '@' | '=' | '[' | ']'))
    {
        return Err(format!("s2s route {s:?}: host {host:?} contains {bad:?}"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "s2s route {s:?}: port {p:?} is not a number from 1 to 65535"
                ))
            }
            Ok(n) => n,
        },
    };
    let host = if ip_literal(&host).is_some() {
        host
    } else {
        normalize_domain(&host)
    };
    Ok((
        domain,
        Target {
            host,
            port,
            direct_tls: false,
        },
    ))
}

/// One address to connect to, in connection order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub ip: IpAddr,
    pub port: u16,
    /// TLS at once (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
    /// The name the address came from: the SRV target, the route host, or the domain itself
    /// (for logs; TLS SNI and certificate identity use the remote *domain*, XEP-0368).
    pub host: String,
}

impl Addr {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// Why a domain has no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// NXDOMAIN, no records, or SRV records that all say "not available"
    /// (`<remote-server-not-found/>`).
    NotFound,
    /// The DNS did not answer within the limits (`<remote-server-timeout/>`).
    Timeout,
    /// Anything else: a DNS server failure, a bad name, the resolver stopped or overloaded.
    Other(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound => f.write_str("domain not found"),
            ResolveError::Timeout => f.write_str("DNS lookup timed out"),
            ResolveError::Other(m) => write!(f, "DNS lookup failed: {m}"),
        }
    }
}

impl std::error::Error for ResolveError {}

impl ResolveError {
    fn from_net(e: &NetError) -> Self {
        if e.is_no_records_found() {
            ResolveError::NotFound
        } else if matches!(e, NetError::Timeout) {
            ResolveError::Timeout
        } else {
            ResolveError::Other(e.to_string())
        }
    }

    /// Several failures as one: any timeout wins, then any other failure, else not found.
    fn combine(errors: impl IntoIterator<Item = ResolveError>) -> Self {
        let mut out = ResolveError::NotFound;
        for e in errors {
            match (&out, e) {
                (_, ResolveError::Timeout) => return ResolveError::Timeout,
                (ResolveError::NotFound, e @ ResolveError::Other(_)) => out = e,
                _ => {}
            }
        }
        out
    }
}

/// Resolver settings.
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// DNS servers to ask (UDP, TCP on truncation); `None`: the system's `/etc/resolv.conf`.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// How long one DNS query waits for an answer.
    pub timeout: Duration,
    /// How many times one DNS query is sent in all (at least 1).
    pub attempts: usize,
    /// How many DNS responses the cache keeps.
    pub cache_size: usize,
    /// Static routes by domain, overriding DNS (see [`parse_route`], [`Self::add_route`]);
    /// keys are compared lowercase without trailing dot.
    pub routes: HashMap<String, Vec<Target>>,
    /// Requests in flight at most; more fail at once.
    pub max_in_flight: usize,
    /// Longest time any answer (positive or negative) is cached, whatever its TTL.
    pub max_ttl: Duration,
    /// Shortest time a negative answer (NXDOMAIN, no records) is cached.
    pub negative_min_ttl: Duration,
    /// Bound on a whole resolution; `None`: `2 × attempts × timeout + 500 ms` (two rounds of
    /// queries: SRV, then A/AAAA).
    pub deadline: Option<Duration>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: None,
            timeout: Duration::from_secs(3),
            attempts: 2,
            cache_size: 4096,
            routes: HashMap::new(),
            max_in_flight: 256,
            max_ttl: Duration::from_secs(3600),
            negative_min_ttl: Duration::from_secs(30),
            deadline: None,
        }
    }
}

impl ResolverConfig {
    /// The bound on one whole resolution.
    pub fn deadline(&self) -> Duration {
        self.deadline.unwrap_or_else(|| {
            let tries = u32::try_from(self.attempts.max(1)).unwrap_or(u32::MAX);
            self.timeout
                .saturating_mul(tries)
                .saturating_mul(2)
                .saturating_add(Duration::from_millis(500))
        })
    }

    /// Adds a static route (as parsed by [`parse_route`]); several routes for one domain are
    /// tried in the order added.
    pub fn add_route(&mut self, domain: String, target: Target) {
        self.routes
            .entry(normalize_domain(&domain))
            .or_default()
            .push(target);
    }
}

/// The outcome of [`Resolver::resolve`]: addresses in connection order, or why there are none.
pub type Answer = Result<Vec<Addr>, ResolveError>;

struct Request {
    domain: String,
    reply: oneshot::Sender<Answer>,
}

/// State shared by the handles and the resolver thread.
struct Shared {
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

/// Counts one request in flight until dropped (also when its task is cancelled).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Handle {
    tx: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Never joins: the last handle may be dropped on a shard thread.
        self.tx.close_channel();
    }
}

/// A handle to the resolver thread. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Handle>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field(
                "in_flight",
                &self.inner.shared.in_flight.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Starts the `xmppd-resolver` thread. Blocks until the DNS client is set up (reading
    /// `/etc/resolv.conf` when `cfg.nameservers` is `None`): call it at startup, not on a shard.
    pub fn start(cfg: ResolverConfig) -> std::io::Result<Resolver> {
        let (tx, rx) = mpsc::unbounded();
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            max_in_flight: cfg.max_in_flight.max(1),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("xmppd-resolver".into())
            .spawn(move || run(cfg, rx, thread_shared, ready_tx))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Resolver {
                inner: Arc::new(Handle {
                    tx,
                    shared,
                    thread: Mutex::new(Some(thread)),
                }),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(std::io::Error::other(e))
            }
            Err(_) => {
                let _ = thread.join();
                Err(std::io::Error::other(
                    "the resolver thread died while starting",
                ))
            }
        }
    }

    /// Where to connect for `domain`, in connection order. Never blocks: the returned future
    /// waits on a oneshot answered by the resolver thread, so a glommio task can `.await` it.
    /// It holds no handle: dropping every [`Resolver`] while it is pending ends it with
    /// `Other`, after the requests in flight finish.
    pub fn resolve(&self, domain: &str) -> impl Future<Output = Answer> + Send + 'static {
        let submitted = self.submit(domain);
        async move {
            match submitted {
                Ok(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(ResolveError::Other("resolver stopped".into()))),
                Err(e) => Err(e),
            }
        }
    }

    fn submit(&self, domain: &str) -> Result<oneshot::Receiver<Answer>, ResolveError> {
        let shared = &self.inner.shared;
        if shared.in_flight.fetch_add(1, Ordering::AcqRel) >= shared.max_in_flight {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(ResolveError::Other(format!(
                "resolver busy: {} lookups in flight",
                shared.max_in_flight
            )));
        }
        let (reply, rx) = oneshot::channel();
        let request = Request {
            domain: domain.to_owned(),
            reply,
        };
        if self.inner.tx.unbounded_send(request).is_err() {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(ResolveError::Other("resolver stopped".into()));
        }
        Ok(rx)
    }

    /// Stops taking requests (for every handle). The thread finishes the requests in flight
    /// and exits. Does not block.
    pub fn stop(&self) {
        self.inner.tx.close_channel();
    }

    /// Whether the resolver thread is still running.
    pub fn is_running(&self) -> bool {
        self.inner
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.shared.in_flight.load(Ordering::Acquire)
    }
}

/// The resolver thread.
fn run(
    cfg: ResolverConfig,
    mut rx: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the resolver runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let dns = match build_dns(&cfg) {
            Ok(dns) => dns,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let deadline = cfg.deadline();
        let mut routes: HashMap<String, Vec<Target>> = HashMap::new();
        for (domain, targets) in cfg.routes {
            routes
                .entry(normalize_domain(domain.trim()))
                .or_default()
                .extend(targets);
        }
        let ctx = Arc::new(Ctx { dns, routes });
        while let Some(req) = rx.next().await {
            let guard = InFlight(Arc::clone(&shared));
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move {
                let _guard = guard;
                if req.reply.is_canceled() {
                    return;
                }
                let answer = tokio::time::timeout(deadline, ctx.lookup(&req.domain))
                    .await
                    .unwrap_or(Err(ResolveError::Timeout));
                match &answer {
                    Ok(addrs) => tracing::debug!(domain = %req.domain, ?addrs, "s2s resolved"),
                    Err(e) => {
                        tracing::debug!(domain = %req.domain, error = %e, "s2s resolve failed")
                    }
                }
                let _ = req.reply.send(answer);
            });
        }
        // Closed: let the requests in flight finish (each is bounded by the deadline).
        let give_up = tokio::time::Instant::now() + deadline + Duration::from_millis(100);
        while shared.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < give_up
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

fn build_dns(cfg: &ResolverConfig) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match &cfg.nameservers {
        None => TokioResolver::builder(provider)
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?,
        Some(servers) => {
            let servers = servers
                .iter()
                .map(|sa| {
                    let mut ns = hconfig::NameServerConfig::udp_and_tcp(sa.ip());
                    for c in &mut ns.connections {
                        c.port = sa.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                hconfig::ResolverConfig::from_name_servers(servers),
                provider,
            )
        }
    };
    let opts = builder.options_mut();
    opts.timeout = cfg.timeout;
    // hickory counts retries after the first try.
    opts.attempts = cfg.attempts.max(1) - 1;
    opts.cache_size = u64::try_from(cfg.cache_size).unwrap_or(u64::MAX);
    opts.positive_min_ttl = None;
    opts.positive_max_ttl = Some(cfg.max_ttl);
    opts.negative_min_ttl = Some(cfg.negative_min_ttl.min(cfg.max_ttl));
    opts.negative_max_ttl = Some(cfg.max_ttl);
    opts.ip_strategy = hconfig::LookupIpStrategy::Ipv6AndIpv4;
    builder
        .build()
        .map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

/// What each request task needs.
struct Ctx {
    dns: TokioResolver,
    routes: HashMap<String, Vec<Target>>,
}

impl Ctx {
    async fn lookup(&self, domain: &str) -> Answer {
        let domain = normalize_domain(domain.trim());
        if domain.is_empty() {
            return Err(ResolveError::Other("empty domain".into()));
        }
        let targets = if let Some(route) = self.routes.get(&domain) {
            route.clone()
        } else if ip_literal(&domain).is_some() {
            vec![Target {
                host: domain.clone(),
                port: DEFAULT_PORT,
                direct_tls: false,
            }]
        } else {
            self.srv_targets(&domain).await?
        };
        if targets.is_empty() {
            return Err(ResolveError::NotFound);
        }
        self.addresses(targets).await
    }

    async fn srv_targets(&self, domain: &str) -> Result<Vec<Target>, ResolveError> {
        let (direct, starttls) = futures_lite::future::zip(
            self.srv(&format!("{SERVICE_DIRECT_TLS}.{domain}.")),
            self.srv(&format!("{SERVICE_STARTTLS}.{domain}.")),
        )
        .await;
        let (direct, starttls) = match (direct, starttls) {
            (Ok(d), Ok(s)) => (d, s),
            (Ok(ok), Err(e)) | (Err(e), Ok(ok)) if ok.is_absent() => return Err(e),
            (Ok(d), Err(e)) => {
                tracing::debug!(%domain, error = %e, "{SERVICE_STARTTLS} lookup failed; using {SERVICE_DIRECT_TLS}");
                (d, SrvAnswer::Absent)
            }
            (Err(e), Ok(s)) => {
                tracing::debug!(%domain, error = %e, "{SERVICE_DIRECT_TLS} lookup failed; using {SERVICE_STARTTLS}");
                (SrvAnswer::Absent, s)
            }
            (Err(a), Err(b)) => return Err(ResolveError::combine([a, b])),
        };
        Ok(merge_srv(domain, &direct, &starttls, &mut os_pick))
    }

    async fn srv(&self, name: &str) -> Result<SrvAnswer, ResolveError> {
        match self.dns.lookup(name, RecordType::SRV).await {
            Ok(lookup) => Ok(SrvAnswer::Records(
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Some(SrvRecord {
                            priority: srv.priority,
                            weight: srv.weight,
                            port: srv.port,
                            target: srv.target.to_ascii(),
                        }),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) => match ResolveError::from_net(&e) {
                ResolveError::NotFound => Ok(SrvAnswer::Absent),
                other => Err(other),
            },
        }
    }

    async fn addresses(&self, targets: Vec<Target>) -> Answer {
        // One task per target that needs DNS, so that the lookups run concurrently.
        let lookups: Vec<_> = targets
            .into_iter()
            .map(|t| match ip_literal(&t.host) {
                Some(ip) => (t, None, Some(ip)),
                None => {
                    let dns = self.dns.clone();
                    let name = format!("{}.", t.host);
                    (
                        t,
                        Some(tokio::spawn(async move { dns.lookup_ip(name).await })),
                        None,
                    )
                }
            })
            .collect();
        let mut out: Vec<Addr> = Vec::new();
        let mut errors = Vec::new();
        for (t, task, literal) in lookups {
            let ips: Vec<IpAddr> = match (task, literal) {
                (_, Some(ip)) => vec![ip],
                (Some(task), None) => match task.await {
                    Ok(Ok(lookup)) => lookup.iter().collect(),
                    Ok(Err(e)) => {
                        tracing::debug!(host = %t.host, error = %e, "s2s target lookup failed");
                        errors.push(ResolveError::from_net(&e));
                        continue;
                    }
                    Err(e) => {
                        errors.push(ResolveError::Other(e.to_string()));
                        continue;
                    }
                },
                (None, None) => continue,
            };
            for ip in ips {
                let dup = out
                    .iter()
                    .any(|a| a.ip == ip && a.port == t.port && a.direct_tls == t.direct_tls);
                if !dup {
                    out.push(Addr {
                        ip,
                        port: t.port,
                        direct_tls: t.direct_tls,
                        host: t.host.clone(),
                    });
                }
            }
        }
        if out.is_empty() {
            return Err(ResolveError::combine(errors));
        }
        Ok(out)
    }
}

/// A uniformly random number in `0..=max` from the OS CSPRNG (the modulo bias is below
/// 2^-32: negligible for load spreading).
fn os_pick(max: u32) -> u32 {
    let mut b = [0u8; 8];
    crate::util::random_bytes(&mut b);
    let r = u64::from_le_bytes(b) % (u64::from(max) + 1);
    u32::try_from(r).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use futures_lite::future::block_on;
    use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, AAAA, SOA, SRV};
    use hickory_resolver::proto::rr::{Name, Record};

    // ---- pure parts ----

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn target(host: &str, port: u16, direct_tls: bool) -> Target {
        Target {
            host: host.into(),
            port,
            direct_tls,
        }
    }

    /// A `pick` that returns the given values in turn (clamped by `rfc2782_order`) and records
    /// the `max` it was asked for.
    fn script(
        values: &[u32],
    ) -> (
        impl FnMut(u32) -> u32 + '_,
        std::rc::Rc<std::cell::RefCell<Vec<u32>>>,
    ) {
        let asked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = asked.clone();
        let mut i = 0;
        let f = move |max: u32| {
            log.borrow_mut().push(max);
            let v = values.get(i).copied().unwrap_or(0);
            i += 1;
            v
        };
        (f, asked)
    }

    fn hosts(records: &[SrvRecord]) -> Vec<&str> {
        records.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn priorities_ascend() {
        let records = [
            srv(30, 0, 1, "c"),
            srv(10, 0, 1, "a"),
            srv(20, 0, 1, "b"),
            srv(10, 0, 1, "a2"),
        ];
        let (mut pick, _) = script(&[]);
        assert_eq!(
            hosts(&order_srv(&records, &mut pick)),
            ["a", "a2", "b", "c"]
        );
    }

    #[test]
    fn weighted_selection_follows_running_sums() {
        // One priority, weights 10, 20, 30 (running sums 10, 30, 60).
        let records = [
            srv(0, 10, 1, "w10"),
            srv(0, 20, 1, "w20"),
            srv(0, 30, 1, "w30"),
        ];
        let table: &[(&[u32], [&str; 3], &[u32])] = &[
            // r = 0..=10 → w10; then sums over (w20, w30) = 20, 50.
            (&[0, 0, 0], ["w10", "w20", "w30"], &[60, 50, 30]),
            (&[10, 21, 0], ["w10", "w30", "w20"], &[60, 50, 20]),
            (&[11, 0, 0], ["w20", "w10", "w30"], &[60, 40, 30]),
            (&[30, 11, 0], ["w20", "w30", "w10"], &[60, 40, 10]),
            (&[31, 0, 0], ["w30", "w10", "w20"], &[60, 30, 20]),
            (&[60, 30, 0], ["w30", "w20", "w10"], &[60, 30, 10]),
            // Out-of-range picks are clamped to the total.
            (&[1000, 1000, 1000], ["w30", "w20", "w10"], &[60, 30, 10]),
        ];
        for (picks, expected, asked) in table {
            let (mut pick, log) = script(picks);
            let got = order_srv(&records, &mut pick);
            assert_eq!(hosts(&got), expected, "picks {picks:?}");
            assert_eq!(&*log.borrow(), asked, "picks {picks:?}");
        }
    }

    #[test]
    fn weight_zero_goes_first_in_the_draw_and_wins_only_on_zero() {
        let records = [srv(0, 5, 1, "w5"), srv(0, 0, 1, "z")];
        let (mut pick, _) = script(&[0]);
        assert_eq!(hosts(&order_srv(&records, &mut pick)), ["z", "w5"]);
        let (mut pick, _) = script(&[1]);
        assert_eq!(hosts(&order_srv(&records, &mut pick)), ["w5", "z"]);
        // All weights 0: the answer order stands.
        let records = [srv(0, 0, 1, "a"), srv(0, 0, 1, "b"), srv(0, 0, 1, "c")];
        let (mut pick, asked) = script(&[]);
        assert_eq!(hosts(&order_srv(&records, &mut pick)), ["a", "b", "c"]);
        assert_eq!(*asked.borrow(), [0, 0, 0]);
    }

    #[test]
    fn weights_shape_the_distribution() {
        // A seeded xorshift (deterministic). Layout: zero (0), light (1), heavy (3); running
        // sums 0, 1, 4; the draw is uniform in 0..=4, so the first place goes to zero on 0,
        // light on 1, heavy on 2..=4: 1/5, 1/5, 3/5. (Weight 0 has "a very small chance" only
        // when the other weights are large; see the next check.)
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rng = move |max: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            u32::try_from(state % (u64::from(max) + 1)).unwrap()
        };
        let records = [
            srv(0, 1, 1, "light"),
            srv(0, 3, 1, "heavy"),
            srv(0, 0, 1, "zero"),
        ];
        let mut firsts = HashMap::new();
        for _ in 0..4000 {
            let first = order_srv(&records, &mut rng).remove(0).target;
            *firsts.entry(first).or_insert(0u32) += 1;
        }
        assert!((2200..=2600).contains(&firsts["heavy"]), "{firsts:?}");
        assert!((650..=950).contains(&firsts["light"]), "{firsts:?}");
        assert!((650..=950).contains(&firsts["zero"]), "{firsts:?}");
        // Weights 100 and 0: the weight-0 record comes first about 1 time in 101.
        let records = [srv(0, 100, 1, "big"), srv(0, 0, 1, "zero")];
        let zero_first = (0..10_100)
            .filter(|_| order_srv(&records, &mut rng)[0].target == "zero")
            .count();
        assert!((50..=150).contains(&zero_first), "{zero_first}");
    }

    #[test]
    fn dot_target_means_no_service() {
        let (mut pick, _) = script(&[]);
        assert!(order_srv(&[srv(0, 0, 0, ".")], &mut pick).is_empty());
        let dot = SrvAnswer::Records(vec![srv(0, 0, 0, ".")]);
        let (mut pick, _) = script(&[]);
        // Both services "not available": nothing, and no A/AAAA fallback.
        assert!(merge_srv("example.org", &dot, &dot, &mut pick).is_empty());
        assert!(merge_srv("example.org", &dot, &SrvAnswer::Absent, &mut pick).is_empty());
        assert!(merge_srv("example.org", &SrvAnswer::Absent, &dot, &mut pick).is_empty());
        // Direct TLS "not available", STARTTLS offered.
        let starttls = SrvAnswer::Records(vec![srv(0, 0, 5269, "xmpp.example.org.")]);
        assert_eq!(
            merge_srv("example.org", &dot, &starttls, &mut pick),
            [target("xmpp.example.org", 5269, false)]
        );
    }

    #[test]
    fn no_srv_falls_back_to_the_domain() {
        let (mut pick, _) = script(&[]);
        let want = [target("example.org", DEFAULT_PORT, false)];
        assert_eq!(
            merge_srv(
                "Example.ORG.",
                &SrvAnswer::Absent,
                &SrvAnswer::Absent,
                &mut pick
            ),
            want
        );
        let empty = SrvAnswer::Records(Vec::new());
        assert_eq!(
            merge_srv("example.org", &empty, &SrvAnswer::Absent, &mut pick),
            want
        );
    }

    #[test]
    fn merge_orders_both_services_as_one_set() {
        let direct = SrvAnswer::Records(vec![
            srv(10, 0, 5223, "tls1.example.org."),
            srv(0, 0, 443, "TLS0.example.org."),
        ]);
        let starttls = SrvAnswer::Records(vec![
            srv(5, 0, 5269, "xmpp5.example.org."),
            srv(10, 0, 5269, "xmpp10.example.org."),
        ]);
        let (mut pick, _) = script(&[]);
        assert_eq!(
            merge_srv("example.org", &direct, &starttls, &mut pick),
            [
                target("tls0.example.org", 443, true),
                target("xmpp5.example.org", 5269, false),
                // Equal priority, weights 0: direct TLS before STARTTLS in the layout.
                target("tls1.example.org", 5223, true),
                target("xmpp10.example.org", 5269, false),
            ]
        );
        // Equal priority with weights: the draw runs over both services together.
        let direct = SrvAnswer::Records(vec![srv(0, 1, 5223, "tls.example.org")]);
        let starttls = SrvAnswer::Records(vec![srv(0, 9, 5269, "xmpp.example.org")]);
        // Layout tls (1), xmpp (9): running sums 1, 10.
        let (mut pick, asked) = script(&[2, 0]);
        assert_eq!(
            merge_srv("example.org", &direct, &starttls, &mut pick),
            [
                target("xmpp.example.org", 5269, false),
                target("tls.example.org", 5223, true)
            ]
        );
        assert_eq!(*asked.borrow(), [10, 1]);
        let (mut pick, _) = script(&[1, 0]);
        assert_eq!(
            merge_srv("example.org", &direct, &starttls, &mut pick),
            [
                target("tls.example.org", 5223, true),
                target("xmpp.example.org", 5269, false)
            ]
        );
        // A "." among other records is skipped.
        let starttls =
            SrvAnswer::Records(vec![srv(0, 0, 0, "."), srv(1, 0, 5269, "x.example.org")]);
        assert_eq!(
            merge_srv("example.org", &SrvAnswer::Absent, &starttls, &mut pick),
            [target("x.example.org", 5269, false)]
        );
    }

    #[test]
    fn routes_parse() {
        let ok: &[(&str, &str, &str, u16)] = &[
            (
                "example.org=xmpp.example.net:5270",
                "example.org",
                "xmpp.example.net",
                5270,
            ),
            (
                "Example.ORG.=Host.Example.NET.:1",
                "example.org",
                "host.example.net",
                1,
            ),
            (
                " example.org = 127.0.0.1:5269 ",
                "example.org",
                "127.0.0.1",
                5269,
            ),
            ("example.org=[::1]:5270", "example.org", "::1", 5270),
            (
                "example.org=[2001:DB8::0:1]:65535",
                "example.org",
                "2001:db8::1",
                65535,
            ),
            (
                "example.org=xmpp.example.net",
                "example.org",
                "xmpp.example.net",
                5269,
            ),
            ("example.org=[::1]", "example.org", "::1", 5269),
            ("localhost=localhost:5299", "localhost", "localhost", 5299),
        ];
        for (input, domain, host, port) in ok {
            let (d, t) = parse_route(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (d.as_str(), t),
                (*domain, target(host, *port, false)),
                "{input}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("example.org", "expected DOMAIN=HOST:PORT"),
            ("=host:5269", "empty domain"),
            ("example.org=", "empty host"),
            ("example.org=:5269", "empty host"),
            ("example.org=host:", "not a number"),
            ("example.org=host:0", "not a number"),
            ("example.org=host:65536", "not a number"),
            ("example.org=host:http", "not a number"),
            ("example.org=::1:5269", "must be in brackets"),
            ("example.org=[::1:5269", "without ']'"),
            ("example.org=[nonsense]:5269", "not an IPv6 address"),
            ("example.org=[::1]5269", "expected ':PORT'"),
            ("exa mple.org=host:5269", "contains"),
            ("user@example.org=host:5269", "contains"),
            ("example.org=ho st:5269", "contains"),
        ];
        for (input, msg) in bad {
            let e = parse_route(input).expect_err(input);
            assert!(e.contains(msg), "{input}: {e}");
        }
    }

    #[test]
    fn ip_literals_and_errors() {
        assert_eq!(
            ip_literal("192.0.2.1"),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(ip_literal("[::1]"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(ip_literal("::1"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(ip_literal("example.org"), None);
        assert_eq!(ip_literal("[example.org]"), None);
        use ResolveError::*;
        assert_eq!(ResolveError::combine([]), NotFound);
        assert_eq!(
            ResolveError::combine([NotFound, Other("x".into())]),
            Other("x".into())
        );
        assert_eq!(ResolveError::combine([Other("x".into()), Timeout]), Timeout);
        let cfg = ResolverConfig {
            timeout: Duration::from_millis(300),
            attempts: 2,
            ..ResolverConfig::default()
        };
        assert_eq!(cfg.deadline(), Duration::from_millis(1700));
    }

    // ---- the service, against a DNS server in the test ----

    /// A tiny authoritative DNS server on UDP 127.0.0.1 for the `.test` names below.
    struct TestDns {
        addr: SocketAddr,
        queries: Arc<Mutex<Vec<(String, RecordType)>>>,
        silent: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    fn zone() -> Vec<(&'static str, RData)> {
        let srv =
            |p, w, port, t: &str| RData::SRV(SRV::new(p, w, port, Name::from_ascii(t).unwrap()));
        let a = |s: &str| RData::A(A(s.parse().unwrap()));
        let aaaa = |s: &str| RData::AAAA(AAAA(s.parse().unwrap()));
        vec![
            (
                "_xmpp-server._tcp.example.test.",
                srv(5, 0, 5269, "xmpp.example.test."),
            ),
            (
                "_xmpp-server._tcp.example.test.",
                srv(20, 0, 5270, "dead.example.test."),
            ),
            (
                "_xmpps-server._tcp.example.test.",
                srv(10, 0, 5223, "tls.example.test."),
            ),
            ("xmpp.example.test.", a("192.0.2.1")),
            ("xmpp.example.test.", aaaa("2001:db8::1")),
            ("tls.example.test.", a("192.0.2.2")),
            // No SRV: fallback to the domain's own addresses.
            ("nosrv.test.", a("192.0.2.10")),
            // "." for STARTTLS and nothing for direct TLS: no service, no fallback.
            ("_xmpp-server._tcp.dot.test.", srv(0, 0, 0, ".")),
            ("dot.test.", a("192.0.2.20")),
            // Direct TLS "not available", STARTTLS on a name with only AAAA.
            ("_xmpps-server._tcp.half.test.", srv(0, 0, 0, ".")),
            (
                "_xmpp-server._tcp.half.test.",
                srv(0, 0, 5269, "v6.half.test."),
            ),
            ("v6.half.test.", aaaa("2001:db8::6")),
            // SRV whose only target has no address.
            (
                "_xmpp-server._tcp.noaddr.test.",
                srv(0, 0, 5269, "gone.noaddr.test."),
            ),
            ("route-target.test.", a("192.0.2.30")),
        ]
    }

    impl TestDns {
        fn start() -> TestDns {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let addr = socket.local_addr().unwrap();
            let queries = Arc::new(Mutex::new(Vec::new()));
            let silent = Arc::new(AtomicBool::new(false));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (queries, silent, stop) = (queries.clone(), silent.clone(), stop.clone());
                std::thread::spawn(move || {
                    let zone = zone();
                    let mut buf = [0u8; 4096];
                    while !stop.load(Ordering::Acquire) {
                        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                            continue;
                        };
                        let Ok(query) = Message::from_vec(&buf[..n]) else {
                            continue;
                        };
                        let Some(q) = query.queries.first().cloned() else {
                            continue;
                        };
                        let name = q.name().to_ascii().to_ascii_lowercase();
                        queries.lock().unwrap().push((name.clone(), q.query_type()));
                        if silent.load(Ordering::Acquire) {
                            continue;
                        }
                        let mut resp =
                            Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                        resp.metadata.authoritative = true;
                        resp.metadata.recursion_desired = query.metadata.recursion_desired;
                        resp.metadata.recursion_available = true;
                        resp.add_query(q.clone());
                        let mut known = false;
                        for (owner, rdata) in &zone {
                            if *owner == name {
                                known = true;
                                if rdata.record_type() == q.query_type() {
                                    resp.add_answer(Record::from_rdata(
                                        q.name().clone(),
                                        300,
                                        rdata.clone(),
                                    ));
                                }
                            }
                        }
                        if name == "servfail.test." || name.ends_with(".servfail.test.") {
                            resp.metadata.response_code = ResponseCode::ServFail;
                        } else if resp.answers.is_empty() {
                            if !known {
                                resp.metadata.response_code = ResponseCode::NXDomain;
                            }
                            let soa = SOA::new(
                                Name::from_ascii("ns.test.").unwrap(),
                                Name::from_ascii("hostmaster.test.").unwrap(),
                                1,
                                3600,
                                600,
                                86400,
                                300,
                            );
                            resp.authorities.push(Record::from_rdata(
                                Name::from_ascii("test.").unwrap(),
                                300,
                                RData::SOA(soa),
                            ));
                        }
                        let _ = socket.send_to(&resp.to_vec().unwrap(), peer);
                    }
                })
            };
            TestDns {
                addr,
                queries,
                silent,
                stop,
                thread: Some(thread),
            }
        }

        fn query_count(&self) -> usize {
            self.queries.lock().unwrap().len()
        }

        fn queried(&self, name: &str) -> bool {
            self.queries.lock().unwrap().iter().any(|(n, _)| n == name)
        }

        fn config(&self) -> ResolverConfig {
            ResolverConfig {
                nameservers: Some(vec![self.addr]),
                timeout: Duration::from_millis(300),
                attempts: 1,
                ..ResolverConfig::default()
            }
        }
    }

    impl Drop for TestDns {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn addr(ip: &str, port: u16, direct_tls: bool, host: &str) -> Addr {
        Addr {
            ip: ip.parse().unwrap(),
            port,
            direct_tls,
            host: host.into(),
        }
    }

    #[test]
    fn srv_records_of_both_services_resolve_in_order() {
        let dns = TestDns::start();
        let r = Resolver::start(dns.config()).unwrap();
        let got = block_on(r.resolve("Example.TEST")).unwrap();
        assert_eq!(
            got,
            [
                addr("2001:db8::1", 5269, false, "xmpp.example.test"),
                addr("192.0.2.1", 5269, false, "xmpp.example.test"),
                addr("192.0.2.2", 5223, true, "tls.example.test"),
                // dead.example.test: NXDOMAIN, skipped.
            ]
        );
        assert!(dns.queried("_xmpps-server._tcp.example.test."));
        assert!(dns.queried("_xmpp-server._tcp.example.test."));
        assert!(dns.queried("dead.example.test."));
    }

    #[test]
    fn fallback_dot_and_not_found() {
        let dns = TestDns::start();
        let r = Resolver::start(dns.config()).unwrap();
        assert_eq!(
            block_on(r.resolve("nosrv.test")).unwrap(),
            [addr("192.0.2.10", 5269, false, "nosrv.test")]
        );
        assert_eq!(block_on(r.resolve("dot.test")), Err(ResolveError::NotFound));
        assert!(
            !dns.queried("dot.test."),
            "no A/AAAA fallback once SRV exists"
        );
        assert_eq!(
            block_on(r.resolve("half.test")).unwrap(),
            [addr("2001:db8::6", 5269, false, "v6.half.test")]
        );
        assert_eq!(
            block_on(r.resolve("nowhere.test")),
            Err(ResolveError::NotFound)
        );
        assert_eq!(
            block_on(r.resolve("noaddr.test")),
            Err(ResolveError::NotFound)
        );
        match block_on(r.resolve("servfail.test")) {
            Err(ResolveError::Other(_)) => {}
            other => panic!("servfail: {other:?}"),
        }
        assert!(matches!(
            block_on(r.resolve("")),
            Err(ResolveError::Other(_))
        ));
    }

    #[test]
    fn silent_server_times_out_within_the_deadline() {
        let dns = TestDns::start();
        dns.silent.store(true, Ordering::Release);
        let cfg = dns.config();
        let deadline = cfg.deadline();
        let r = Resolver::start(cfg).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            block_on(r.resolve("example.test")),
            Err(ResolveError::Timeout)
        );
        let took = t0.elapsed();
        assert!(
            took <= deadline + Duration::from_millis(300),
            "{took:?} > {deadline:?}"
        );
        assert!(dns.query_count() > 0);
        // A tighter overall deadline than the per-query limits allow is enforced too.
        let r = Resolver::start(ResolverConfig {
            timeout: Duration::from_secs(5),
            deadline: Some(Duration::from_millis(200)),
            ..dns.config()
        })
        .unwrap();
        let t0 = Instant::now();
        assert_eq!(
            block_on(r.resolve("example.test")),
            Err(ResolveError::Timeout)
        );
        assert!(
            t0.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn second_lookup_comes_from_the_cache() {
        let dns = TestDns::start();
        let r = Resolver::start(dns.config()).unwrap();
        let first = block_on(r.resolve("example.test")).unwrap();
        let after_first = dns.query_count();
        // 2 SRV + A and AAAA for three targets.
        assert_eq!(after_first, 8, "{:?}", dns.queries.lock().unwrap());
        let second = block_on(r.resolve("example.test")).unwrap();
        assert_eq!(dns.query_count(), after_first, "served from the cache");
        assert_eq!(first, second);
        // Negative answers are cached too.
        assert_eq!(
            block_on(r.resolve("nowhere.test")),
            Err(ResolveError::NotFound)
        );
        let n = dns.query_count();
        assert_eq!(
            block_on(r.resolve("nowhere.test")),
            Err(ResolveError::NotFound)
        );
        assert_eq!(dns.query_count(), n);
    }

    #[test]
    fn routes_and_ip_literals_skip_srv() {
        let dns = TestDns::start();
        let mut cfg = dns.config();
        for route in [
            "routed.test=route-target.test:5999",
            "routed.test=[::1]:5270",
            "ip.test=127.0.0.1:5271",
        ] {
            let (domain, target) = parse_route(route).unwrap();
            cfg.add_route(domain, target);
        }
        let r = Resolver::start(cfg).unwrap();
        assert_eq!(
            block_on(r.resolve("Routed.Test")).unwrap(),
            [
                addr("192.0.2.30", 5999, false, "route-target.test"),
                addr("::1", 5270, false, "::1"),
            ]
        );
        assert!(!dns.queried("_xmpp-server._tcp.routed.test."));
        let n = dns.query_count();
        assert_eq!(
            block_on(r.resolve("ip.test")).unwrap(),
            [addr("127.0.0.1", 5271, false, "127.0.0.1")]
        );
        assert_eq!(
            block_on(r.resolve("192.0.2.99")).unwrap(),
            [addr("192.0.2.99", 5269, false, "192.0.2.99")]
        );
        assert_eq!(
            block_on(r.resolve("[2001:db8::99]")).unwrap(),
            [addr("2001:db8::99", 5269, false, "[2001:db8::99]")]
        );
        assert_eq!(dns.query_count(), n, "no DNS for IP routes and IP domains");
    }

    #[test]
    fn requests_beyond_the_bound_fail_at_once() {
        let dns = TestDns::start();
        dns.silent.store(true, Ordering::Release);
        let r = Resolver::start(ResolverConfig {
            max_in_flight: 2,
            ..dns.config()
        })
        .unwrap();
        let a = r.resolve("a.example.test");
        let b = r.resolve("b.example.test");
        assert_eq!(r.in_flight(), 2);
        let t0 = Instant::now();
        match block_on(r.resolve("c.example.test")) {
            Err(ResolveError::Other(m)) => assert!(m.contains("busy"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_millis(500));
        let (a, b) = block_on(futures_lite::future::zip(a, b));
        assert_eq!(
            (a, b),
            (Err(ResolveError::Timeout), Err(ResolveError::Timeout))
        );
        let t0 = Instant::now();
        while r.in_flight() > 0 {
            assert!(t0.elapsed() < Duration::from_secs(2));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn many_concurrent_requests_run_together() {
        let dns = TestDns::start();
        let r = Resolver::start(dns.config()).unwrap();
        let t0 = Instant::now();
        let futures: Vec<_> = (0..50)
            .map(|i| r.resolve(&format!("n{i}.nowhere.test")))
            .collect();
        for f in futures {
            assert_eq!(block_on(f), Err(ResolveError::NotFound));
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    #[test]
    fn stop_and_last_drop_end_the_thread() {
        let dns = TestDns::start();
        let wait_until = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
            let t0 = Instant::now();
            while !done() {
                assert!(t0.elapsed() < Duration::from_secs(3), "{what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let r = Resolver::start(dns.config()).unwrap();
        assert!(r.is_running());
        r.stop();
        wait_until("stop", Box::new(|| !r.is_running()));
        assert_eq!(
            block_on(r.resolve("example.test")),
            Err(ResolveError::Other("resolver stopped".into()))
        );
        assert_eq!(r.in_flight(), 0);

        let r = Resolver::start(dns.config()).unwrap();
        let r2 = r.clone();
        let shared = Arc::downgrade(&r.inner.shared);
        // A request still pending when the last handle goes is finished, not dropped.
        dns.silent.store(true, Ordering::Release);
        let pending = r.resolve("example.test");
        drop(r);
        std::thread::sleep(Duration::from_millis(20));
        assert!(r2.is_running(), "one handle left");
        drop(r2);
        assert_eq!(block_on(pending), Err(ResolveError::Timeout));
        wait_until("last drop", Box::new(|| shared.upgrade().is_none()));
    }

    #[test]
    fn awaited_from_a_glommio_task() {
        let dns = TestDns::start();
        let r = Resolver::start(dns.config()).unwrap();
        let got = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move { r.resolve("nosrv.test").await })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            got.unwrap(),
            [addr("192.0.2.10", 5269, false, "nosrv.test")]
        );
    }

    #[test]
    fn system_configuration_starts() {
        // Only when the machine has a resolv.conf; no query is sent.
        if std::path::Path::new("/etc/resolv.conf").exists() {
            let r = Resolver::start(ResolverConfig::default()).unwrap();
            assert!(r.is_running());
            assert_eq!(
                block_on(r.resolve("127.0.0.1")).unwrap(),
                [addr("127.0.0.1", 5269, false, "127.0.0.1")]
            );
        }
    }
}
