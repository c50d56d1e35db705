//! Operator metrics in the Prometheus text exposition format (version 0.0.4), served on
//! `--metrics-listen` by a thread of its own (issue 13). Every metric is listed in
//! `docs/METRICS.md`.
//!
//! Each shard writes only its own [`ShardMetrics`] (a cache line apart from the others') with
//! relaxed single-writer updates, a load and a store, no locked instruction; the metrics
//! thread reads them all at a scrape. Nothing on the stanza path waits on a scrape.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xmppd_storage::{HistogramSnapshot, LatencyHistogram, LATENCY_BOUNDS_US};

use crate::shard::Links;
use crate::xmpp::stanza::StanzaType;

/// Transports a client connection can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The XMPP ports (STARTTLS or direct TLS).
    Tcp = 0,
    /// RFC 7395 on the HTTP ports.
    WebSocket = 1,
    /// XEP-0124/0206 sessions on the HTTP ports.
    Bosh = 2,
}

/// Where a client connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Negotiating: TLS, SASL, until bound.
    Authenticating = 0,
    /// Authenticated (on the account's home shard).
    Established = 1,
}

const TRANSPORTS: [&str; 3] = ["tcp", "websocket", "bosh"];
const STATES: [&str; 2] = ["authenticating", "established"];
const KINDS: [&str; 3] = ["message", "presence", "iq"];
/// Authentication methods counted, by the names the negotiator reports; the last is any
/// other (an unknown or refused mechanism).
const METHODS: [&str; 7] = [
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
    "iq-auth",
    "other",
];

/// A stream with another server or a component, as the `xmppd_peer_streams` gauge counts it.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// An incoming server-to-server stream (accepted, any state).
    S2sIn = 0,
    /// An outgoing server-to-server stream (being set up or up).
    S2sOut = 1,
    /// An XEP-0114 component stream (authenticated).
    Component = 2,
}

const PEERS: [&str; 3] = ["s2s_in", "s2s_out", "component"];

/// One shard's counters; written by that shard only.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct ShardMetrics {
    conns: [[AtomicI64; 2]; 3],
    http_conns: AtomicI64,
    /// Server-to-server streams (incoming, outgoing) and component streams.
    peers: [AtomicI64; 3],
    stanzas_in: [AtomicU64; 3],
    stanzas_out: [AtomicU64; 3],
    auth_ok: [AtomicU64; METHODS.len()],
    auth_failed: [AtomicU64; METHODS.len()],
    congestion: AtomicU64,
    /// Cross-shard batches: from the sending shard's flush to the receiving shard's handling.
    pub hop: LatencyHistogram,
}

/// Adds `n` to a counter that only this thread writes (no locked instruction needed).
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn shift(a: &AtomicI64, n: i64) {
    a.store(a.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

fn kind(ty: StanzaType) -> usize {
    match ty {
        StanzaType::Message(_) => 0,
        StanzaType::Presence(_) => 1,
        StanzaType::Iq(_) => 2,
    }
}

fn method(m: Option<&str>) -> usize {
    m.and_then(|m| METHODS.iter().position(|x| *x == m))
        .unwrap_or(METHODS.len() - 1)
}

impl ShardMetrics {
    /// A client connection came (`+1`) or went (`-1`) in this transport and state.
    pub fn conn(&self, t: Transport, s: ConnState, delta: i64) {
        shift(&self.conns[t as usize][s as usize], delta);
    }

    /// An HTTP connection (not upgraded) came or went.
    pub fn http_conn(&self, delta: i64) {
        shift(&self.http_conns, delta);
    }

    /// A peer stream opened (`delta` 1) or closed (-1) on this shard.
    pub fn peer(&self, p: Peer, delta: i64) {
        shift(&self.peers[p as usize], delta);
    }

    /// A stanza from a client of this shard.
    pub fn stanza_in(&self, ty: StanzaType) {
        bump(&self.stanzas_in[kind(ty)], 1);
    }

    /// A stanza delivered to a session of this shard.
    pub fn stanza_out(&self, ty: StanzaType) {
        bump(&self.stanzas_out[kind(ty)], 1);
    }

    /// A login by `method` succeeded.
    pub fn auth_ok(&self, m: Option<&str>) {
        bump(&self.auth_ok[method(m)], 1);
    }

    /// `n` login attempts by `method` failed.
    pub fn auth_failed(&self, m: Option<&str>, n: u64) {
        bump(&self.auth_failed[method(m)], n);
    }

    /// A destination shard became congested (its queue over `--shard-queue-bytes`).
    pub fn congested(&self) {
        bump(&self.congestion, 1);
    }
}

/// Everything a scrape reads.
pub struct Metrics {
    /// One per shard.
    pub shards: Box<[Arc<ShardMetrics>]>,
    links: Arc<Links>,
    storage: xmppd_storage::Storage,
    /// Families another part of the server renders (the federation's domain pairs).
    extra: std::sync::OnceLock<Section>,
}

/// A part of the exposition rendered by its owner at each scrape.
pub type Section = Arc<dyn Fn(&mut String) + Send + Sync>;

impl Metrics {
    /// Metrics for `shards` shards.
    pub fn new(shards: usize, links: Arc<Links>, storage: xmppd_storage::Storage) -> Metrics {
        Metrics {
            shards: (0..shards).map(|_| Arc::default()).collect(),
            links,
            storage,
            extra: std::sync::OnceLock::new(),
        }
    }

    /// Add the families that `f` renders (set once, at start-up).
    pub fn add_section(&self, f: Section) {
        let _ = self.extra.set(f);
    }

    /// The exposition text (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let sum = |f: &dyn Fn(&ShardMetrics) -> i64| self.shards.iter().map(|s| f(s)).sum::<i64>();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;

        family(
            &mut out,
            "xmppd_connections",
            "gauge",
            "Client connections by transport and state.",
        );
        for (t, tn) in TRANSPORTS.iter().enumerate() {
            for (s, sn) in STATES.iter().enumerate() {
                let v = sum(&|m| m.conns[t][s].load(Ordering::Relaxed));
                sample(
                    &mut out,
                    "xmppd_connections",
                    &[("transport", tn), ("state", sn)],
                    v as f64,
                );
            }
        }
        let v = sum(&|m| m.http_conns.load(Ordering::Relaxed));
        sample(
            &mut out,
            "xmppd_connections",
            &[("transport", "http"), ("state", "open")],
            v as f64,
        );

        family(
            &mut out,
            "xmppd_peer_streams",
            "gauge",
            "Streams with other servers (s2s_in, s2s_out) and components.",
        );
        for (p, pn) in PEERS.iter().enumerate() {
            let v = sum(&|m| m.peers[p].load(Ordering::Relaxed));
            sample(&mut out, "xmppd_peer_streams", &[("kind", pn)], v as f64);
        }

        for (name, help, pick) in [
            (
                "xmppd_stanzas_in_total",
                "Stanzas received from clients, by kind.",
                (|m: &ShardMetrics, k: usize| &m.stanzas_in[k])
                    as fn(&ShardMetrics, usize) -> &AtomicU64,
            ),
            (
                "xmppd_stanzas_out_total",
                "Stanzas delivered to client sessions, by kind.",
                |m: &ShardMetrics, k: usize| &m.stanzas_out[k],
            ),
        ] {
            family(&mut out, name, "counter", help);
            for (k, kn) in KINDS.iter().enumerate() {
                let v = sum(&|m| load(pick(m, k)));
                sample(&mut out, name, &[("kind", kn)], v as f64);
            }
        }
        let name = "xmppd_auth_total";
        family(
            &mut out,
            name,
            "counter",
            "Login attempts by method and outcome.",
        );
        for (i, mn) in METHODS.iter().enumerate() {
            let ok = sum(&|m| load(&m.auth_ok[i]));
            let failed = sum(&|m| load(&m.auth_failed[i]));
            sample(
                &mut out,
                name,
                &[("method", mn), ("outcome", "success")],
                ok as f64,
            );
            sample(
                &mut out,
                name,
                &[("method", mn), ("outcome", "failure")],
                failed as f64,
            );
        }

        family(
            &mut out,
            "xmppd_shard_congestion_events_total",
            "counter",
            "Times a shard found a destination shard's queue over --shard-queue-bytes.",
        );
        for (i, m) in self.shards.iter().enumerate() {
            let shard = i.to_string();
            sample(
                &mut out,
                "xmppd_shard_congestion_events_total",
                &[("shard", &shard)],
                load(&m.congestion) as f64,
            );
        }
        family(
            &mut out,
            "xmppd_shard_inbox_bytes",
            "gauge",
            "Bytes of stanzas sent to a shard and not yet handled by it.",
        );
        for i in 0..self.shards.len() {
            let shard = i.to_string();
            sample(
                &mut out,
                "xmppd_shard_inbox_bytes",
                &[("shard", &shard)],
                self.links.in_flight(i) as f64,
            );
        }
        family(
            &mut out,
            "xmppd_shard_inbox_messages",
            "gauge",
            "Batches waiting in a shard's inbox.",
        );
        for i in 0..self.shards.len() {
            let shard = i.to_string();
            sample(
                &mut out,
                "xmppd_shard_inbox_messages",
                &[("shard", &shard)],
                self.links.inbox_len(i) as f64,
            );
        }

        let mut hop = HistogramSnapshot::default();
        for m in self.shards.iter() {
            hop.add(&m.hop.snapshot());
        }
        histogram(
            &mut out,
            "xmppd_routing_hop_seconds",
            "Cross-shard routing latency: a batch of stanzas from its flush by one shard to its handling by another.",
            &hop,
        );
        histogram(
            &mut out,
            "xmppd_storage_commit_seconds",
            "Durable commits of the group-commit writer (fsync included).",
            &self.storage.commit_latency(),
        );
        let stats = self.storage.stats();
        family(
            &mut out,
            "xmppd_storage_commits_total",
            "counter",
            "Group commits.",
        );
        sample(
            &mut out,
            "xmppd_storage_commits_total",
            &[],
            stats.commits as f64,
        );
        if let Ok(u) = self.storage.map_usage() {
            family(
                &mut out,
                "xmppd_lmdb_used_bytes",
                "gauge",
                "Bytes of LMDB pages in use.",
            );
            sample(&mut out, "xmppd_lmdb_used_bytes", &[], u.used_bytes as f64);
            family(
                &mut out,
                "xmppd_lmdb_map_bytes",
                "gauge",
                "The LMDB map size (--lmdb-map-size-mib).",
            );
            sample(&mut out, "xmppd_lmdb_map_bytes", &[], u.map_bytes as f64);
        }
        if let Some((cpu, rss)) = process_usage() {
            family(
                &mut out,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time of the process.",
            );
            sample(&mut out, "process_cpu_seconds_total", &[], cpu);
            family(
                &mut out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident set size of the process.",
            );
            sample(&mut out, "process_resident_memory_bytes", &[], rss);
        }
        if let Some(f) = self.extra.get() {
            f(&mut out);
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    use std::fmt::Write as _;
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{val}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {v}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    family(out, name, "histogram", help);
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le = match LATENCY_BOUNDS_US.get(i) {
            Some(us) => format!("{}", *us as f64 / 1e6),
            None => "+Inf".to_string(),
        };
        sample(out, &bucket, &[("le", &le)], cumulative as f64);
    }
    sample(out, &format!("{name}_sum"), &[], h.sum_ns as f64 / 1e9);
    sample(out, &format!("{name}_count"), &[], h.count as f64);
}

/// CPU seconds (user + system) and resident bytes of this process, from /proc.
fn process_usage() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    Some((ticks / hz, pages * page))
}

/// Serves `GET /metrics` on `addr` from a thread of its own until the process exits. One
/// request per connection, each bounded in size and time.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("xmppd-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => answer(c, &metrics),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    Ok(())
}

/// Binds the metrics listener (before the shards start, so a bad address fails the start).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

fn answer(mut c: TcpStream, metrics: &Metrics) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
    let limits = crate::http::request::Limits {
        max_request_line: 1024,
        max_header_bytes: 8192,
        max_body: 0,
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let (status, body): (u16, String) = loop {
        let mut headers = [httparse::EMPTY_HEADER; crate::http::request::MAX_HEADERS];
        match crate::http::request::parse(&buf, &mut headers, &limits) {
            Ok(Some(r)) if r.path == "/metrics" && (r.method == "GET" || r.method == "HEAD") => {
                break (200, metrics.render())
            }
            Ok(Some(r)) if r.path == "/metrics" => break (405, "GET only\n".into()),
            Ok(Some(_)) => break (404, "see /metrics\n".into()),
            Ok(None) => {}
            Err(rej) => break (rej.status, format!("{}\n", rej.reason)),
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let date = crate::util::http_date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    let mut out = Vec::with_capacity(body.len() + 256);
    crate::http::response::Response::new(status)
        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .write(
            &mut out,
            &date,
            body.as_bytes(),
            false,
            buf.starts_with(b"HEAD"),
        );
    let _ = c.write_all(&out);
}
