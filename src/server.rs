//! `xmppd serve`: open storage, load TLS, bind the listeners, start one shard per core, and
//! stop cleanly on SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::c2s::limits::{IpLimits, Policy};
use crate::c2s::{C2s, Handoff};
use crate::config::Config;
use crate::core::{RegisterFn, Registry};
use crate::router::Router;
use crate::shard::{self, Links, ShardMsg};
use crate::tls::TlsSetup;

/// A start-up failure, reported on stderr with a non-zero exit.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The longest a stopping shard waits for every shard's services to tell their users, and
/// for what they sent to arrive, before it closes its streams.
const STOP_NOTICE: Duration = Duration::from_millis(500);

/// How often a stopping shard looks again while it waits for that.
const STOP_POLL: Duration = Duration::from_millis(10);

/// After a stop request, how much longer than `--shutdown-grace` the shards get before the
/// process exits without them (a connection's farewell is bounded by the grace; this covers
/// the executor's own teardown).
const STOP_MARGIN: Duration = Duration::from_millis(1500);

/// One listening socket per shard for each address (SO_REUSEPORT).
struct Listeners {
    /// `[shard][i] = (fd, what it serves)`
    per_shard: Vec<Vec<(RawFd, Port)>>,
    c2s: Vec<SocketAddr>,
    c2s_tls: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    component: Vec<SocketAddr>,
    s2s: Vec<SocketAddr>,
    s2s_tls: Vec<SocketAddr>,
}

/// What a listening socket serves.
#[derive(Debug, Clone, Copy)]
enum Port {
    /// XMPP, STARTTLS.
    C2s,
    /// XMPP, direct TLS (XEP-0368).
    C2sTls,
    /// HTTP.
    Http,
    /// HTTPS.
    Https,
    /// XEP-0114 components.
    Component,
    /// Server-to-server, STARTTLS.
    S2s,
    /// Server-to-server, direct TLS (XEP-0368).
    S2sTls,
}

/// Run the server until a signal (or, with `--exit-on-stdin-eof`, the end of stdin).
pub fn serve(config: Config, modules: &'static [RegisterFn]) -> Result<(), StartError> {
    let config = Arc::new(config);
    if config.iq_auth == crate::config::IqAuthMode::On {
        tracing::warn!(
            "--iq-auth on: XEP-0078 logins are accepted on unencrypted streams, so passwords \
             may cross the network in the clear"
        );
    }
    let nofile = raise_nofile_limit();
    let storage = xmppd_storage::Storage::open(&config.data_dir, &config.storage_options())
        .map_err(|e| StartError(format!("opening {}: {e}", config.data_dir.display())))?;
    let secret: Arc<[u8]> = load_secret(&config.data_dir)?.into();
    // One per-address table for all shards (issue 8): an address's connections land on every
    // shard, so per-shard tables would multiply the limits by the shard count.
    let ip_limits = Arc::new(IpLimits::new(Policy::from_config(&config)));
    let tls = TlsSetup::load(
        &config.cert,
        &config.key,
        config.generate_cert,
        &config.domains,
    )
    .map_err(|e| StartError(format!("TLS: {e}")))?;
    let listeners = bind_listeners(&config)?;
    let s2s_shared = match config.s2s.enabled {
        true => Some(Arc::new(
            crate::s2s::Shared::new(&config, &tls, &secret)
                .map_err(|e| StartError(format!("federation: {e}")))?,
        )),
        false => None,
    };
    let max_conns = match config.max_connections {
        0 => nofile.saturating_sub(256).max(16) as usize,
        n => n,
    };
    let per_shard_conns = max_conns.div_ceil(config.shards).max(1);
    let (links, receivers) = Links::new(config.shards, config.shard_queue);
    let component_dir = Arc::new(crate::core::components::Directory::default());
    let receivers = Arc::new(receivers);
    let metrics = Arc::new(crate::metrics::Metrics::new(
        config.shards,
        links.clone(),
        storage.clone(),
    ));
    if let Some(sh) = &s2s_shared {
        let sh = sh.clone();
        metrics.add_section(Arc::new(move |out: &mut String| sh.book.render(out)));
    }
    let metrics_addr = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let l = crate::metrics::bind(addr)
                .map_err(|e| StartError(format!("metrics listener on {addr}: {e}")))?;
            let bound = l.local_addr().unwrap_or(addr);
            crate::metrics::serve(l, metrics.clone())
                .map_err(|e| StartError(format!("metrics thread: {e}")))?;
            Some(bound)
        }
    };
    let per_shard = Arc::new(listeners.per_shard);

    install_stop_triggers(&links, config.exit_on_stdin_eof)?;
    install_panic_hook(&links);
    let (exited_tx, exited_rx) = crossbeam_channel::unbounded::<(usize, bool)>();

    let handles = {
        let config = config.clone();
        let storage = storage.clone();
        let links = links.clone();
        let exec = shard::ExecutorOptions {
            pin: config.pin,
            spin_before_park: config.spin_before_park,
            ring_depth: config.io_uring_depth,
        };
        shard::spawn(config.shards, exec, move |i| {
            let config = config.clone();
            let storage = storage.clone();
            let links = links.clone();
            let receivers = receivers.clone();
            let fds = per_shard.get(i).cloned().unwrap_or_default();
            let tls = tls.clone();
            let secret = secret.clone();
            let ip_limits = ip_limits.clone();
            let shard_metrics = metrics.shards[i].clone();
            let component_dir = component_dir.clone();
            let s2s_shared = s2s_shared.clone();
            let exited = ShardExit {
                index: i,
                tx: exited_tx.clone(),
                links: links.clone(),
            };
            async move {
                let _exited = exited;
                shard_main(ShardInit {
                    index: i,
                    config,
                    storage,
                    links,
                    rx: receivers[i].clone(),
                    fds,
                    https_tls: Some(tls.https.clone()),
                    metrics: shard_metrics,
                    tls,
                    secret,
                    ip_limits,
                    modules,
                    max_conns: per_shard_conns,
                    component_dir,
                    s2s_shared,
                })
                .await
            }
        })
        .map_err(|e| StartError(format!("starting shards: {e}")))?
    };

    let list = |v: &[SocketAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        domains = ?config.domains,
        shards = config.shards,
        c2s = %list(&listeners.c2s),
        c2s_tls = %list(&listeners.c2s_tls),
        http = %list(&listeners.http),
        https = %list(&listeners.https),
        component = %list(&listeners.component),
        s2s = %list(&listeners.s2s),
        max_connections = max_conns,
        "xmppd ready"
    );
    // A machine-readable line for supervisors and test harnesses.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "xmppd ready c2s={} c2s_tls={} http={} https={} metrics={} component={} s2s={} s2s_tls={}",
        list(&listeners.c2s),
        list(&listeners.c2s_tls),
        list(&listeners.http),
        list(&listeners.https),
        metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
        list(&listeners.component),
        list(&listeners.s2s),
        list(&listeners.s2s_tls),
    );
    let _ = stdout.flush();
    drop(stdout);

    let outcome = wait_for_shards(
        &links,
        &exited_rx,
        config.shards,
        config.shutdown_grace + STOP_MARGIN,
    );
    for (i, h) in handles.into_iter().enumerate() {
        // A shard that did not stop is left behind: the process exits without it.
        if outcome.ended.get(i).copied().unwrap_or(false) {
            let _ = h.join();
        }
    }
    storage.shutdown();
    if !outcome.failed.is_empty() || !outcome.stuck.is_empty() {
        tracing::error!(failed = ?outcome.failed, stuck = ?outcome.stuck, "stopped after a shard failure");
        return Err(StartError(format!(
            "shard(s) failed: {:?}, did not stop: {:?}",
            outcome.failed, outcome.stuck
        )));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Tells the main thread that a shard thread ended, and how. Dropped when the shard's future
/// completes or is dropped by the unwinding of a panic.
struct ShardExit {
    index: usize,
    tx: crossbeam_channel::Sender<(usize, bool)>,
    links: Arc<Links>,
}

impl Drop for ShardExit {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        if panicked {
            // The other shards keep queueing to this one otherwise: stop them all.
            self.links.request_stop();
        }
        let _ = self.tx.send((self.index, panicked));
    }
}

/// How the shards ended.
#[derive(Debug, Default)]
struct ShardsOutcome {
    /// `ended[i]`: shard `i`'s thread is done.
    ended: Vec<bool>,
    /// Shards that panicked or returned without being asked to stop.
    failed: Vec<usize>,
    /// Shards still running when the stop deadline passed.
    stuck: Vec<usize>,
}

/// How often [`wait_for_shards`] looks for a stop request while the server runs.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How often it looks again once stopping.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Wait for every shard to end. The wait is unbounded while the server runs; once a stop is
/// requested (signal, end of stdin, a shard's death) the shards get `limit` to finish, and
/// the ones still running are reported as stuck.
fn wait_for_shards(
    links: &Links,
    exited: &crossbeam_channel::Receiver<(usize, bool)>,
    shards: usize,
    limit: Duration,
) -> ShardsOutcome {
    let mut out = ShardsOutcome {
        ended: vec![false; shards],
        ..ShardsOutcome::default()
    };
    let mut left = shards;
    while left > 0 {
        // Nothing but a stop request or a shard's end concerns this thread: while the server
        // runs it looks for a stop once a second (an idle server should not wake 20 times a
        // second for it); once stopping, the deadline counts from the request itself.
        let wait = match links.stop_requested_at() {
            None => IDLE_CHECK,
            Some(at) => limit.saturating_sub(at.elapsed()).min(STOP_CHECK),
        };
        match exited.recv_timeout(wait) {
            Ok((i, panicked)) => {
                if let Some(e) = out.ended.get_mut(i).filter(|e| !**e) {
                    *e = true;
                    left -= 1;
                }
                if panicked || !links.stopping() {
                    tracing::error!(shard = i, panicked, "shard ended unexpectedly: stopping");
                    out.failed.push(i);
                    links.request_stop();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if links
            .stop_requested_at()
            .is_some_and(|at| at.elapsed() >= limit)
        {
            break;
        }
    }
    out.stuck = (0..shards).filter(|&i| !out.ended[i]).collect();
    out
}

/// A panic on a shard thread stops the whole server (the guard in [`ShardExit`] reports it),
/// rather than leaving a half-server whose other shards queue to a dead one. The default hook
/// still prints the message and backtrace first.
fn install_panic_hook(links: &Arc<Links>) {
    let links = Arc::downgrade(links);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let on_shard = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("xmppd-shard"));
        if on_shard {
            if let Some(l) = links.upgrade() {
                l.request_stop();
            }
        }
    }));
}

struct ShardInit {
    index: usize,
    config: Arc<Config>,
    storage: xmppd_storage::Storage,
    links: Arc<Links>,
    rx: crossbeam_channel::Receiver<ShardMsg>,
    fds: Vec<(RawFd, Port)>,
    tls: TlsSetup,
    /// The HTTPS ports' TLS configuration.
    https_tls: Option<Arc<rustls::ServerConfig>>,
    /// This shard's metrics.
    metrics: Arc<crate::metrics::ShardMetrics>,
    secret: Arc<[u8]>,
    ip_limits: Arc<IpLimits>,
    modules: &'static [RegisterFn],
    max_conns: usize,
    /// Which XEP-0114 components are connected (shared by the shards).
    component_dir: Arc<crate::core::components::Directory>,
    /// Federation's shared state, when it is on.
    s2s_shared: Option<Arc<crate::s2s::Shared>>,
}

async fn shard_main(init: ShardInit) {
    let i = init.index;
    let outbox = Rc::new(
        shard::Outbox::new(i, init.links.clone(), init.config.shard_queue_bytes)
            .with_metrics(init.metrics.clone()),
    );
    let registry = Registry::build(init.modules, &init.config);
    let router = Router::new(
        init.config.clone(),
        init.storage,
        registry,
        outbox.clone(),
        init.component_dir,
    );
    let components =
        crate::component::Components::new(router.clone(), init.config.clone(), init.links.clone());
    let s2s = init.s2s_shared.map(|shared| {
        crate::s2s::S2s::new(
            router.clone(),
            init.config.clone(),
            init.links.clone(),
            shared,
        )
    });
    let c2s = Rc::new(C2s::new(
        router.clone(),
        Some(init.tls),
        init.links.clone(),
        init.secret,
        init.ip_limits,
        init.max_conns,
    ));
    glommio::spawn_local(outbox.run_flusher()).detach();
    glommio::spawn_local(c2s.clone().sweeper()).detach();
    let http = Rc::new(crate::http::Http::new(
        init.config.clone(),
        c2s.clone(),
        init.https_tls,
    ));
    for (fd, port) in init.fds {
        // SAFETY: each listening descriptor was created for this shard alone and is owned here.
        let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
        match port {
            Port::C2s | Port::C2sTls => {
                let direct = matches!(port, Port::C2sTls);
                glommio::spawn_local(c2s.clone().accept_loop(listener, direct)).detach();
            }
            Port::Http | Port::Https => {
                let tls = matches!(port, Port::Https);
                glommio::spawn_local(http.clone().accept_loop(listener, tls)).detach();
            }
            Port::Component => {
                glommio::spawn_local(components.clone().accept_loop(listener)).detach();
            }
            Port::S2s | Port::S2sTls => {
                if let Some(s2s) = &s2s {
                    let direct = matches!(port, Port::S2sTls);
                    glommio::spawn_local(s2s.clone().accept_loop(listener, direct)).detach();
                }
            }
        }
    }
    tracing::debug!(shard = i, "shard started");

    #[cfg(debug_assertions)]
    freeze_for_tests(i);

    // The inbox loop runs in a latency-sensitive task queue: glommio then always notifies the
    // sleeping executor of a wake-up from another thread (it may skip the notification for
    // other queues), and the periodic poll bounds the damage of any that is still lost.
    let mesh_tq = glommio::executor().create_task_queue(
        glommio::Shares::default(),
        glommio::Latency::Matters(Duration::from_millis(10)),
        "mesh",
    );
    let links = init.links.clone();
    let inbox = async move {
        // A stop runs in two steps: every shard's services tell their users (MUC rooms send
        // their occupants status 332), the shards go on delivering until all have and their
        // stanzas arrived (bounded by STOP_NOTICE), then every shard closes its streams.
        let mut told_at: Option<Instant> = None;
        loop {
            let poll = match told_at {
                Some(_) => STOP_POLL,
                None => shard::mesh::MESH_POLL,
            };
            futures_lite::future::or(links.inbox_bell(i).wait(), async {
                glommio::timer::sleep(poll).await;
            })
            .await;
            if links.stopping() {
                let since = *told_at.get_or_insert_with(|| {
                    router.services_stopping();
                    links.services_told();
                    Instant::now()
                });
                let delivered = links.all_services_told()
                    && init.rx.is_empty()
                    && since.elapsed() >= STOP_POLL * 2;
                if delivered || since.elapsed() >= STOP_NOTICE {
                    components.shutdown();
                    if let Some(s2s) = &s2s {
                        s2s.shutdown();
                    }
                    c2s.shutdown().await;
                    tracing::debug!(shard = i, "shard stopped");
                    return;
                }
            }
            let mut handled = 0usize;
            while let Ok(msg) = init.rx.try_recv() {
                handled += 1;
                match msg {
                    ShardMsg::Stanzas(batch) => {
                        init.metrics.hop.record(batch.age());
                        for e in batch.iter() {
                            router.deliver_entry(&e);
                        }
                        links.delivered(i, batch.bytes());
                    }
                    ShardMsg::Adopt(any) => {
                        // A client connection, an HTTP connection carrying a BOSH request, or
                        // the end of a BOSH session created here.
                        match any.downcast::<Handoff>() {
                            Ok(h) => c2s.adopt(*h),
                            Err(any) => match any.downcast::<crate::http::Handoff>() {
                                Ok(h) => http.adopt(*h),
                                Err(any) => match any.downcast::<crate::c2s::bosh::Gone>() {
                                    Ok(g) => c2s.bosh.remove(&g.sid),
                                    Err(any) => match any.downcast::<crate::component::Handoff>() {
                                        Ok(h) => components.adopt(*h),
                                        Err(any) => {
                                            match (any.downcast::<crate::s2s::VerifyAsk>(), &s2s) {
                                                (Ok(ask), Some(s2s)) => s2s.verify_here(*ask),
                                                (Err(any), Some(s2s)) => {
                                                    match any.downcast::<crate::s2s::InHandoff>() {
                                                        Ok(h) => s2s.adopt(*h),
                                                        Err(_) => {
                                                            tracing::error!("unknown hand-off type")
                                                        }
                                                    }
                                                }
                                                _ => tracing::error!("unknown hand-off type"),
                                            }
                                        }
                                    },
                                },
                            },
                        }
                    }
                    // Kept for callers that stop one shard by message: same as a stop request.
                    ShardMsg::Shutdown => links.request_stop(),
                }
                if handled.is_multiple_of(64) {
                    links.announce_space();
                    futures_lite::future::yield_now().await;
                }
            }
            links.announce_space();
        }
    };
    match glommio::spawn_local_into(inbox, mesh_tq) {
        Ok(task) => task.await,
        Err(e) => tracing::error!(shard = i, error = %e, "starting the inbox loop failed"),
    }
}

/// Test builds only: `XMPPD_TEST_FREEZE_SHARD=i` blocks shard `i`'s thread for good, to test
/// that the process still stops on SIGTERM with a frozen shard.
#[cfg(debug_assertions)]
fn freeze_for_tests(i: usize) {
    if std::env::var("XMPPD_TEST_FREEZE_SHARD").ok() == Some(i.to_string()) {
        tracing::warn!(shard = i, "XMPPD_TEST_FREEZE_SHARD: freezing this shard");
        loop {
            std::thread::park();
        }
    }
}

/// Bind every listen address once per shard with SO_REUSEPORT; port 0 is resolved by the
/// first bind so that all shards share the same ephemeral port.
fn bind_listeners(config: &Config) -> Result<Listeners, StartError> {
    let mut per_shard = vec![Vec::new(); config.shards];
    let mut bound = |addrs: &[SocketAddr], port: Port| -> Result<Vec<SocketAddr>, StartError> {
        let mut out = Vec::new();
        for addr in addrs {
            // SO_REUSEPORT lets every shard share the port, and would as silently let a
            // second process (another xmppd on the same address) take half the connections:
            // a plain bind first proves nobody else listens there.
            if addr.port() != 0 {
                exclusive_probe(*addr).map_err(|e| {
                    StartError(format!(
                        "listening on {addr}: {e} (is another server already listening there?)"
                    ))
                })?;
            }
            let mut actual = *addr;
            for slot in per_shard.iter_mut() {
                let s = listen_socket(actual)
                    .map_err(|e| StartError(format!("listening on {actual}: {e}")))?;
                actual = s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(actual);
                slot.push((s.into_raw_fd(), port));
            }
            out.push(actual);
        }
        Ok(out)
    };
    let c2s = bound(&config.c2s_listen, Port::C2s)?;
    let c2s_tls = bound(&config.c2s_tls_listen, Port::C2sTls)?;
    let http = bound(&config.http.listen, Port::Http)?;
    let https = bound(&config.http.tls_listen, Port::Https)?;
    let component = bound(&config.components.listen, Port::Component)?;
    let s2s = bound(&config.s2s.listen, Port::S2s)?;
    let s2s_tls = bound(&config.s2s.tls_listen, Port::S2sTls)?;
    Ok(Listeners {
        per_shard,
        c2s,
        c2s_tls,
        http,
        https,
        component,
        s2s,
        s2s_tls,
    })
}

/// Bind `addr` without SO_REUSEPORT and let it go: fails with `AddrInUse` while any other
/// socket listens there, including another process's SO_REUSEPORT listener.
fn exclusive_probe(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
}

fn listen_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s)
}

/// SIGTERM and SIGINT (and optionally the end of stdin) ask every shard to shut down. The stop
/// request comes first and cannot block ([`Links::request_stop`]); logging comes after.
fn install_stop_triggers(links: &Arc<Links>, stdin_eof: bool) -> Result<(), StartError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| StartError(format!("signals: {e}")))?;
    let l = links.clone();
    std::thread::Builder::new()
        .name("xmppd-signals".into())
        .spawn(move || {
            // Every signal (re)requests the stop: harmless, and robust to a lost wake-up.
            for sig in signals.forever() {
                l.request_stop();
                tracing::info!(signal = sig, "shutting down");
            }
        })
        .map_err(|e| StartError(format!("signal thread: {e}")))?;
    if stdin_eof {
        let l = links.clone();
        std::thread::Builder::new()
            .name("xmppd-stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 256];
                let mut stdin = std::io::stdin();
                loop {
                    match std::io::Read::read(&mut stdin, &mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                l.request_stop();
                tracing::info!("stdin closed: shutting down");
            })
            .map_err(|e| StartError(format!("stdin thread: {e}")))?;
    }
    Ok(())
}

/// Raise the open-files soft limit to the hard limit; return the resulting limit.
fn raise_nofile_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur
}

/// The server secret (fake SCRAM salts for unknown users): 32 random bytes in
/// `<data-dir>/secret`, created on first start.
pub fn load_secret(data_dir: &Path) -> Result<Vec<u8>, StartError> {
    let path = data_dir.join("secret");
    match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => return Ok(b),
        Ok(_) => {
            return Err(StartError(format!(
                "{} is corrupt (expected 32 bytes)",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError(format!("reading {}: {e}", path.display()))),
    }
    let mut secret = vec![0u8; 32];
    crate::util::random_bytes(&mut secret);
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StartError(format!("creating {}: {e}", data_dir.display())))?;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = data_dir.join("secret.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StartError(format!("writing {}: {e}", tmp.display())))?;
    f.write_all(&secret)
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| StartError(format!("writing {}: {e}", path.display())))?;
    Ok(secret)
}
