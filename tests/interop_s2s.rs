//! Interop: federation (RFC 6120 server-to-server, XEP-0220 dialback over STARTTLS) between
//! xmppd and Prosody 0.12 and ejabberd 23.01 (Debian's packages), in both directions:
//! subscription handshake (RFC 6121 §3.1) each way, presence each way (the contact's presence
//! after `subscribed`, a broadcast status change, unavailable), chat each way, with the `from`
//! each client sees checked.
//!
//! Each test starts its own xmppd (`--domain xmppd.test`) and its own peer (`prosody.test`
//! or `ejabberd.test`) as child processes with private config, data and logs
//! (tests/interop/s2s_peers.sh, templates in tests/interop/s2s/), on two random loopback
//! addresses of 127.0.0.0/8 (tests run in parallel), and kills them when it ends.
//!
//! Name resolution, without touching the machine's /etc:
//! - xmppd reaches the peer through a static route, `--s2s-route PEER=IP:5269`;
//! - the peer runs in a private mount namespace (`unshare -m`) where /etc/hosts (the
//!   machine's plus `xmppd.test` -> xmppd's address) and /etc/resolv.conf (naming a DNS
//!   responder the test runs on xmppd's address, port 53: SRV `_xmpp-server._tcp.xmppd.test`
//!   -> `xmppd.test:5269`, A `xmppd.test`, NXDOMAIN for the rest) are bind-mounted from its
//!   directory; xmppd listens on that address, port 5269.
//! - ejabberd asks the SRV record of the responder (Erlang inet_res reads resolv.conf) and
//!   resolves its target with getaddrinfo (hosts file). Prosody's libunbound never queries a
//!   nameserver on 127.0.0.0/8 (its do-not-query-localhost default), so Prosody reads the
//!   hosts file (`unbound = { hoststxt = true }`): its SRV lookups get NXDOMAIN and it falls
//!   back to the A record on port 5269. The DNS queries seen are in the logs of each test.
//!
//! The peers' clients are the harness's raw client on the peer's c2s port without TLS
//! (SASL PLAIN on loopback; the peers' c2s is not under test). The link between the servers
//! is encrypted: all three require TLS on s2s, and the self-signed certificates of all three
//! fall back to dialback.
//!
//! XEP-0288 (bidirectional streams, `xep0288_*`): Prosody with its mod_s2s_bidi (off by
//! default; `s2s_peers.sh setup --modules s2s_bidi`), the same exchange, then the evidence
//! that bidi was negotiated and used (see `check_bidi`): Prosody's debug log (mod_s2s_bidi
//! logs both sides of the negotiation) and the TCP connections seen between the two s2s
//! ports during the exchange. Those are only telling without dialback, whose verification
//! connection becomes the receiving server's own outgoing stream; so the main two tests
//! have each side trust the other's certificate (SASL EXTERNAL), and expect exactly one
//! connection, the initiator's, and two more check the negotiation alongside dialback.
//!
//! Needs root (namespaces, port 53) or passwordless sudo; installs the peers with apt-get
//! when missing. A peer that cannot be installed or started fails the test. On failure the
//! logs of both sides (and the DNS queries seen) are printed and kept under
//! `$CARGO_TARGET_TMPDIR/interop_s2s/TEST/`.

mod common;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{is_presence, status_of, Client, Server, User};
use xmppd::xml::Element;

const XMPPD_DOMAIN: &str = "xmppd.test";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/s2s_peers.sh");
/// How long a peer may take to listen (ejabberd's VM starts slowly on a loaded machine).
const PEER_START: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Installation (once per test binary).

/// Runs `s2s_peers.sh install` once; panics (fails the test) when the peers are missing and
/// cannot be installed.
fn install() -> &'static str {
    static V: OnceLock<Result<String, String>> = OnceLock::new();
    let r = V.get_or_init(|| {
        let out = run_bounded(
            Command::new(SCRIPT).arg("install"),
            Duration::from_secs(900),
        );
        match out {
            Ok((true, stdout, _)) => Ok(stdout),
            Ok((false, stdout, stderr)) => Err(format!("{stdout}{stderr}")),
            Err(e) => Err(e),
        }
    });
    match r {
        Ok(v) => v,
        Err(e) => panic!(
            "the federation peers (Prosody, ejabberd) could not be installed by \
             {SCRIPT} install (needs root or passwordless sudo, and apt-get):\n{e}"
        ),
    }
}

/// Runs a command with a deadline: (success, stdout, stderr).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<(bool, String, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut se, &mut s);
        s
    });
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(st) => {
            let ok = st.map(|s| s.success()).unwrap_or(false);
            Ok((ok, t1.join().unwrap(), t2.join().unwrap()))
        }
        Err(_) => {
            // SAFETY: kill(2) on the process group of our own child.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            Err(format!("{cmd:?} did not finish within {limit:?}"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Addresses.

/// A random number (no rand crate among the dev-dependencies).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::SeqCst));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Two loopback addresses nobody uses on the ports we need: xmppd's (s2s 5269, and the DNS
/// responder's UDP 53, returned bound) and the peer's (c2s 5222, s2s 5269).
fn pick_addresses() -> (Ipv4Addr, Ipv4Addr, UdpSocket) {
    let free = |ip: Ipv4Addr, port: u16| TcpListener::bind((ip, port)).is_ok();
    for _ in 0..50 {
        let r = random();
        let a = 100 + (r % 150) as u8;
        let b = ((r >> 8) % 250) as u8 + 1;
        let c = ((r >> 16) % 120) as u8 * 2 + 2;
        let xmppd = Ipv4Addr::new(127, a, b, c);
        let peer = Ipv4Addr::new(127, a, b, c + 1);
        let dns = match UdpSocket::bind((xmppd, 53)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => panic!(
                "cannot bind the test's DNS responder to {xmppd}:53 ({e}): the s2s interop \
                 tests need root (private mount namespaces, port 53)"
            ),
            Err(_) => continue,
        };
        if free(xmppd, 5269) && free(peer, 5269) && free(peer, 5222) {
            return (xmppd, peer, dns);
        }
    }
    panic!("no free pair of loopback addresses in 127.0.0.0/8");
}

// ---------------------------------------------------------------------------------------
// A DNS responder for the peer's resolver.

/// Answers, over UDP: SRV `_xmpp-server._tcp.ZONE` -> `ZONE:port`; A `ZONE` -> addr; no
/// data for other types of those names; NXDOMAIN for everything else (`_xmpps-server`
/// included). Every question is recorded for the diagnostics.
struct Dns {
    stop: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Dns {
    fn start(sock: UdpSocket, zone: &str, addr: Ipv4Addr, port: u16) -> Dns {
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (stop2, queries2, zone) = (stop.clone(), queries.clone(), zone.to_ascii_lowercase());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((answer, what)) = dns_answer(&buf[..n], &zone, addr, port) {
                    queries2.lock().unwrap().push(format!("{from}: {what}"));
                    let _ = sock.send_to(&answer, from);
                }
            }
        });
        Dns {
            stop,
            queries,
            thread: Some(thread),
        }
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The response to one query, and a line describing it.
fn dns_answer(q: &[u8], zone: &str, addr: Ipv4Addr, port: u16) -> Option<(Vec<u8>, String)> {
    let question = common::dns::question(q)?;
    let (name, qtype) = (question.name.as_str(), question.qtype);
    let srv_name = format!("_xmpp-server._tcp.{zone}");
    let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
    let rcode = if name == zone {
        if qtype == 1 {
            answers.push((1, addr.octets().to_vec()));
        }
        0
    } else if name == srv_name {
        if qtype == 33 {
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&0u16.to_be_bytes()); // priority
            rdata.extend_from_slice(&0u16.to_be_bytes()); // weight
            rdata.extend_from_slice(&port.to_be_bytes());
            common::dns::encode_name(zone, &mut rdata);
            answers.push((33, rdata));
        }
        0
    } else {
        3 // NXDOMAIN
    };
    let mut r = common::dns::response_start(q, &question, rcode, answers.len(), 0);
    for (ty, rdata) in &answers {
        common::dns::push_answer(&mut r, *ty, rdata);
    }
    if question.edns {
        common::dns::push_opt(&mut r);
    }
    let what = format!(
        "type {qtype} {name} -> {}",
        match (rcode, answers.len()) {
            (3, _) => "NXDOMAIN".to_string(),
            (_, 0) => "no data".to_string(),
            _ if qtype == 1 => addr.to_string(),
            _ => format!("{zone}:{port}"),
        }
    );
    Some((r, what))
}

// ---------------------------------------------------------------------------------------
// The peers.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Prosody,
    Ejabberd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Prosody => "prosody",
            Kind::Ejabberd => "ejabberd",
        }
    }
    fn domain(self) -> &'static str {
        match self {
            Kind::Prosody => "prosody.test",
            Kind::Ejabberd => "ejabberd.test",
        }
    }
}

/// A running peer server (a child process group, killed on drop).
struct Peer {
    kind: Kind,
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Peer {
    /// Writes the peer's private state (`s2s_peers.sh setup`, with `options` for a variant of
    /// the config); [`Peer::run`] starts it.
    fn setup(kind: Kind, ip: Ipv4Addr, xmppd_ip: Ipv4Addr, options: &[String]) -> Peer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("xmppd-s2s-{}-", kind.name()))
            .tempdir()
            .expect("tempdir");
        let d = dir.path().to_str().unwrap().to_string();
        let out = run_bounded(
            Command::new(SCRIPT).arg("setup").args(options).args([
                kind.name(),
                &d,
                kind.domain(),
                &ip.to_string(),
                &xmppd_ip.to_string(),
                &format!("{XMPPD_DOMAIN}={xmppd_ip}"),
            ]),
            Duration::from_secs(60),
        );
        match out {
            Ok((true, _, _)) => {}
            Ok((false, o, e)) => panic!("{} setup failed:\n{o}{e}", kind.name()),
            Err(e) => panic!("{} setup: {e}", kind.name()),
        }
        Peer {
            kind,
            ip,
            dir,
            child: None,
        }
    }

    /// Starts the peer set up by [`Peer::setup`]; returns once its c2s and s2s ports accept
    /// connections.
    fn run(&mut self) {
        let d = self.path().to_str().unwrap().to_string();
        let log = File::create(self.path().join("run.out")).unwrap();
        let child = Command::new(SCRIPT)
            .args(["run", self.kind.name(), &d])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.kind.name()));
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + PEER_START;
        let up = |port: u16| {
            TcpStream::connect_timeout(&SocketAddr::from((self.ip, port)), Duration::from_secs(1))
                .is_ok()
        };
        loop {
            if up(5222) && up(5269) {
                return;
            }
            if let Ok(Some(st)) = self.child.as_mut().unwrap().try_wait() {
                panic!(
                    "{} exited during start-up ({st}); its logs:\n{}",
                    self.kind.name(),
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not listening on {}:5222 and :5269 after {PEER_START:?}; its logs:\n{}",
                    self.kind.name(),
                    self.ip,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates an account on the peer (ejabberd: through its running node; retried while the
    /// node finishes starting).
    fn register(&self, user: &str, pw: &str) {
        let d = self.path().to_str().unwrap();
        let mut last = String::new();
        for _ in 0..3 {
            match run_bounded(
                Command::new(SCRIPT).args([
                    "register",
                    self.kind.name(),
                    d,
                    self.kind.domain(),
                    user,
                    pw,
                ]),
                Duration::from_secs(90),
            ) {
                Ok((true, _, _)) => return,
                Ok((false, o, e)) => last = format!("{o}{e}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!(
            "cannot register {user}@{} on {}: {last}\nits logs:\n{}",
            self.kind.domain(),
            self.kind.name(),
            self.logs()
        );
    }

    /// The peer's log files, as (name, content).
    fn log_files(&self) -> Vec<(String, String)> {
        let names: &[&str] = match self.kind {
            Kind::Prosody => &["run.out", "prosody.err", "prosody.log"],
            Kind::Ejabberd => &["run.out", "logs/error.log", "logs/ejabberd.log"],
        };
        names
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.path().join(n))
                    .unwrap_or_else(|e| format!("(unreadable: {e})"));
                (
                    format!("{}-{}", self.kind.name(), n.replace('/', "-")),
                    text,
                )
            })
            .collect()
    }

    /// The tails of the peer's logs, for a panic message.
    fn logs(&self) -> String {
        self.log_files()
            .into_iter()
            .map(|(n, t)| format!("---- {n} (last lines)\n{}\n", tail(&t, 60)))
            .collect()
    }

    /// A client logged in on the peer's c2s port: SASL PLAIN without TLS (loopback), bound to
    /// `resource`.
    fn client(&self, user: &str, pw: &str, resource: &str) -> Client {
        let mut c = Client::connect(SocketAddr::from((self.ip, 5222)));
        c.domain = self.kind.domain().to_string();
        let (_, f) = c.negotiate();
        let mechs: Vec<String> = f
            .child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
            .map(|m| m.elements().map(|e| e.text()).collect())
            .unwrap_or_default();
        assert!(
            mechs.iter().any(|m| m == "PLAIN"),
            "{} offers no PLAIN on loopback: {f:?}",
            self.kind.name()
        );
        let r = c.auth_plain(user, pw);
        assert_eq!(
            r.name,
            "success",
            "{} login of {user}: {r:?}",
            self.kind.name()
        );
        c.negotiate();
        c.bind(Some(resource));
        c
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // SAFETY: kill(2) on the process group of our own child (process_group(0)).
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; whatever of the group is left (the VM of ejabberd).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        // Leftovers of a run under sudo (not ours to signal directly).
        if let Some(d) = self.path().to_str() {
            let _ = run_bounded(
                Command::new(SCRIPT).args(["stop", d]),
                Duration::from_secs(10),
            );
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// The scenario.

/// One side of the conversation: a logged-in, available client and its JIDs.
struct Side {
    name: &'static str,
    c: Client,
}

impl Side {
    fn bare(&self) -> String {
        self.c.bare()
    }
    fn full(&self) -> String {
        self.c.full()
    }
}

/// Fetches the roster (Prosody delivers subscription requests only to resources that did)
/// and sends initial presence; waits for the echo of its own presence.
fn go_online(c: &mut Client) {
    c.roster_items();
    c.send("<presence/>");
    let me = c.full();
    c.recv_until("own presence echo", |e| is_presence(e, None, Some(&me)));
}

/// `a` subscribes to `b`'s presence and `b` approves (RFC 6121 §3.1): `b` sees `subscribe`
/// from `a`'s bare JID, `a` sees `subscribed` from `b`'s bare JID and then `b`'s presence
/// (from its full JID).
fn subscribe(a: &mut Side, b: &mut Side) {
    let (ja, jb, fb) = (a.bare(), b.bare(), b.full());
    a.c.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    let (s, _) =
        b.c.recv_until(&format!("subscribe from {ja} at {}", b.name), |e| {
            e.name == "presence" && e.attr("type") == Some("subscribe")
        });
    assert_eq!(
        s.attr("from"),
        Some(ja.as_str()),
        "subscribe at {}: {s:?}",
        b.name
    );
    b.c.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    a.c.recv_all(&[
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&jb))
        }),
        ("contact's presence", &|e: &Element| {
            is_presence(e, None, Some(&fb))
        }),
    ]);
}

/// `from` changes its status; `to` (a subscriber) sees it with `from`'s full JID.
fn status_change(from: &mut Side, to: &mut Side, status: &str) {
    let f = from.full();
    from.c
        .send(&format!("<presence><status>{status}</status></presence>"));
    let (p, _) =
        to.c.recv_until(&format!("{status:?} from {f} at {}", to.name), |e| {
            is_presence(e, None, Some(&f)) && status_of(e).as_deref() == Some(status)
        });
    assert_eq!(p.attr("from"), Some(f.as_str()));
}

/// `from` sends a chat message to `to`'s full JID; `to` receives it from `from`'s full JID.
fn chat(from: &mut Side, to: &mut Side, body: &str) {
    let (f, t) = (from.full(), to.full());
    let id = common::next_id("chat");
    from.c.send(&format!(
        "<message to='{t}' type='chat' id='{id}'><body>{body}</body></message>"
    ));
    let (m, _) =
        to.c.recv_until(&format!("message {body:?} at {}", to.name), |e| {
            e.name == "message" && e.child("body", "jabber:client").is_some()
        });
    assert_eq!(
        m.attr("from"),
        Some(f.as_str()),
        "message at {}: {m:?}",
        to.name
    );
    assert_eq!(m.attr("type"), Some("chat"), "{m:?}");
    assert_eq!(
        m.child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some(body),
        "{m:?}"
    );
}

/// The subscription state of `contact` in `c`'s roster.
fn subscription_of(c: &mut Client, contact: &str) -> Option<String> {
    let (items, _) = c.roster_items();
    items
        .iter()
        .find(|i| i.attr("jid") == Some(contact))
        .and_then(|i| i.attr("subscription").map(str::to_string))
}

/// Where the logs of a test are kept.
fn log_dir(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("interop_s2s")
        .join(test)
}

/// The whole exchange between an xmppd user and a peer user, with the peer's default
/// config; `xmppd_first`: the xmppd user initiates everything (so the first stream is
/// xmppd's outgoing one), else the peer user.
fn federate(kind: Kind, xmppd_first: bool, test: &str) {
    federate_variant(kind, Variant::Default, xmppd_first, test);
}

/// [`federate`] with a variant of the peer's config, and for the XEP-0288 variants the
/// evidence that bidirectional streams were negotiated (and used).
fn federate_variant(kind: Kind, variant: Variant, xmppd_first: bool, test: &str) {
    assert!(
        variant == Variant::Default || kind == Kind::Prosody,
        "the {variant:?} variant is for Prosody"
    );
    let t0 = Instant::now();
    let versions = install();
    let (xip, pip, dns_sock) = pick_addresses();
    let dns = Dns::start(dns_sock, XMPPD_DOMAIN, xip, 5269);
    let listen = format!("{xip}:5269");
    let route = format!("{}={pip}:5269", kind.domain());
    // The peer is set up before xmppd starts and started after it: with trusted
    // certificates each side names the other's certificate (xmppd writes its own into its
    // data directory when it starts; the peer reads it when it starts).
    let xmppd_data = tempfile::tempdir().expect("tempdir");
    let xmppd_cert = xmppd_data.path().join("tls").join("cert.pem");
    let mut options: Vec<String> = Vec::new();
    if variant != Variant::Default {
        options.extend(["--modules".into(), "s2s_bidi".into()]);
    }
    if variant == Variant::BidiCerts {
        options.extend(["--trust".into(), xmppd_cert.to_str().unwrap().into()]);
    }
    let mut peer = Peer::setup(kind, pip, xip, &options);
    let peer_cert = peer.path().join("cert.pem");
    let mut args = vec![
        "--domain",
        XMPPD_DOMAIN,
        "--s2s-listen",
        &listen,
        "--s2s-route",
        &route,
    ];
    if variant == Variant::BidiCerts {
        args.extend(["--s2s-ca", peer_cert.to_str().unwrap()]);
    }
    let server = Server::start_on(xmppd_data.path(), &args);
    assert!(
        variant != Variant::BidiCerts || xmppd_cert.exists(),
        "xmppd wrote no certificate at {} for the peer to trust",
        xmppd_cert.display()
    );
    peer.run();
    let started = t0.elapsed();
    eprintln!(
        "{test}: {} started in {started:?} (xmppd {xip}, {} {pip}); {}",
        kind.name(),
        kind.name(),
        versions.replace('\n', ", ")
    );
    let keep = log_dir(test);
    let _ = std::fs::remove_dir_all(&keep);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if variant != Variant::Default {
            // The setup is right: the peer offers XEP-0288 on an encrypted incoming stream.
            let f = s2s_features_after_tls(pip, kind.domain());
            assert!(
                f.child("bidi", NS_BIDI_FEATURE).is_some(),
                "{} with s2s_bidi offers no <bidi xmlns='{NS_BIDI_FEATURE}'/> after STARTTLS: \
                 {f:?}",
                kind.name()
            );
        }
        let user = User::new(&server, "anna");
        let (pu, ppw) = ("bert", "pw-bert-secret");
        peer.register(pu, ppw);
        let mut xc = user.login(&server, "desk");
        go_online(&mut xc);
        let mut pc = peer.client(pu, ppw, "phone");
        go_online(&mut pc);
        let mut x = Side {
            name: "xmppd",
            c: xc,
        };
        let mut p = Side {
            name: kind.name(),
            c: pc,
        };
        // Every connection between the two s2s ports from here on (the probe above is closed).
        let watch = ConnWatch::start(SocketAddr::from((xip, 5269)), SocketAddr::from((pip, 5269)));
        let t1 = Instant::now();
        let (first, second) = if xmppd_first {
            (&mut x, &mut p)
        } else {
            (&mut p, &mut x)
        };
        // The first stanza over the link opens the initiator's outgoing stream.
        subscribe(first, second);
        eprintln!(
            "{test}: {} -> {} subscription approved in {:?}",
            first.name,
            second.name,
            t1.elapsed()
        );
        subscribe(second, first);
        status_change(first, second, "first status");
        status_change(second, first, "second status");
        chat(first, second, "hello from the initiator");
        chat(second, first, "hello back");
        // Both rosters agree: subscription both.
        let (fb, sb) = (first.bare(), second.bare());
        let sub = subscription_of(&mut first.c, &sb);
        assert_eq!(
            sub.as_deref(),
            Some("both"),
            "{} roster item for {sb}",
            first.name
        );
        let sub = subscription_of(&mut second.c, &fb);
        assert_eq!(
            sub.as_deref(),
            Some("both"),
            "{} roster item for {fb}",
            second.name
        );
        // Going offline (and back) is seen on the other side too.
        let (ff, sf) = (first.full(), second.full());
        second.c.send("<presence type='unavailable'/>");
        first
            .c
            .recv_until(&format!("unavailable from {sf} at {}", first.name), |e| {
                is_presence(e, Some("unavailable"), Some(&sf))
            });
        second.c.send("<presence/>");
        first.c.recv_until(
            &format!("available again from {sf} at {}", first.name),
            |e| is_presence(e, None, Some(&sf)),
        );
        first.c.send("<presence type='unavailable'/>");
        second
            .c
            .recv_until(&format!("unavailable from {ff} at {}", second.name), |e| {
                is_presence(e, Some("unavailable"), Some(&ff))
            });
        let exchange = t1.elapsed();
        let (to_peer, to_xmppd) = watch.finish();
        eprintln!(
            "{test}: s2s connections seen established: xmppd -> {} {to_peer:?}, {} -> xmppd \
             {to_xmppd:?}",
            kind.name(),
            kind.name()
        );
        if variant != Variant::Default {
            check_bidi(
                variant,
                xmppd_first,
                &peer,
                &server.log(),
                &to_peer,
                &to_xmppd,
            );
        }
        exchange
    }));
    // Keep the logs of both sides (always: they are small).
    let _ = std::fs::create_dir_all(&keep);
    let _ = std::fs::write(keep.join("xmppd.log"), server.log());
    let _ = std::fs::write(keep.join("dns-queries.txt"), dns.queries().join("\n"));
    for (n, t) in peer.log_files() {
        let _ = std::fs::write(keep.join(n), t);
    }
    match result {
        Ok(exchange) => eprintln!(
            "{test}: passed: start-up {started:?}, exchange {exchange:?}, total {:?}",
            t0.elapsed()
        ),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{test} failed: {msg}\n\n==== DNS queries seen\n{}\n==== xmppd log (last lines)\n{}\n==== {}\n{}\nFull logs in {}",
                dns.queries().join("\n"),
                tail(&server.log(), 120),
                kind.name(),
                peer.logs(),
                keep.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// XEP-0288: bidirectional server-to-server streams.

/// The peer's config.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    /// The default: self-signed certificates that do not validate, dialback (XEP-0220).
    Default,
    /// Prosody with mod_s2s_bidi (XEP-0288), dialback as in the default.
    BidiDialback,
    /// Prosody with mod_s2s_bidi, and each side trusting the other's certificate
    /// (`s2s_peers.sh setup --trust`, `--s2s-ca`): every stream authenticates with SASL
    /// EXTERNAL (XEP-0178), so no dialback verification connections.
    BidiCerts,
}

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_BIDI_FEATURE: &str = "urn:xmpp:features:bidi";
/// Prosody's debug log (mod_s2s_bidi): an incoming stream asked for bidi (`<bidi/>` from
/// xmppd as initiating server).
const PROSODY_REQUESTED: &str = "Requested bidirectional stream";
/// Prosody's debug log (mod_s2s_bidi): its outgoing stream saw the bidi feature (offered by
/// xmppd as receiving server) and asked for bidi.
const PROSODY_REQUESTING: &str = "Requesting bidirectional stream";

/// Opens a server-to-server stream to the peer at `ip` as a server would (no `from`),
/// negotiates STARTTLS (any certificate: only the features matter) and returns the features
/// of the encrypted stream; then closes the stream.
fn s2s_features_after_tls(ip: Ipv4Addr, domain: &str) -> Element {
    let mut c = Client::connect(SocketAddr::from((ip, 5269)));
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         to='{domain}' version='1.0'>"
    );
    c.send(&header);
    c.recv_header();
    let f = c.recv_el();
    assert!(
        f.name == "features" && f.child("starttls", NS_TLS).is_some(),
        "{domain} offers no STARTTLS on s2s: {f:?}"
    );
    c.send(&format!("<starttls xmlns='{NS_TLS}'/>"));
    let p = c.recv_el();
    assert_eq!(p.name, "proceed", "{domain} STARTTLS: {p:?}");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(
            xmppd::s2s::identity::DeferredServerCertVerifier::new(&provider),
        ))
        .with_no_client_auth();
    c.upgrade_with(Arc::new(cfg), domain)
        .unwrap_or_else(|e| panic!("TLS with {domain} on s2s: {e}"));
    c.send(&header);
    c.recv_header();
    let f = c.recv_el();
    assert_eq!(f.name, "features", "{domain} after STARTTLS: {f:?}");
    c.send("</stream:stream>");
    f
}

/// Watches the TCP connections between the two servers' s2s ports: samples the established
/// connections to either s2s port (/proc/net/tcp and tcp6) every 50 ms, and keeps each one
/// seen once, by its initiating end (its local address) and the s2s port it goes to.
struct ConnWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(SocketAddr, SocketAddr)>>>,
    thread: Option<JoinHandle<()>>,
    xmppd: SocketAddr,
    peer: SocketAddr,
}

impl ConnWatch {
    fn start(xmppd: SocketAddr, peer: SocketAddr) -> ConnWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || loop {
            // One last sample after the stop.
            let last = stop2.load(Ordering::SeqCst);
            for c in established_to(&[xmppd, peer]) {
                let mut s = seen2.lock().unwrap();
                if !s.contains(&c) {
                    s.push(c);
                }
            }
            if last {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        ConnWatch {
            stop,
            seen,
            thread: Some(thread),
            xmppd,
            peer,
        }
    }

    /// Stops watching: the initiating ends of the connections seen to the peer's s2s port
    /// (xmppd -> peer) and to xmppd's (peer -> xmppd).
    fn finish(mut self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let seen = self.seen.lock().unwrap();
        let to = |port: SocketAddr| -> Vec<SocketAddr> {
            seen.iter()
                .filter(|(_, r)| *r == port)
                .map(|(l, _)| *l)
                .collect()
        };
        (to(self.peer), to(self.xmppd))
    }
}

impl Drop for ConnWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The established TCP connections (of this network namespace) whose remote end is one of
/// `targets`: (local, remote) of the connecting side.
fn established_to(targets: &[SocketAddr]) -> Vec<(SocketAddr, SocketAddr)> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st ...; st 01 is ESTABLISHED.
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "01" {
                continue;
            }
            if let (Some(local), Some(remote)) = (proc_addr(f[1]), proc_addr(f[2])) {
                if targets.contains(&remote) {
                    out.push((local, remote));
                }
            }
        }
    }
    out
}

/// An address of /proc/net/tcp{,6}: the address as 32-bit words printed in host byte order,
/// `:`, the port; IPv4-mapped IPv6 addresses as IPv4.
fn proc_addr(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..a.len()).step_by(8) {
        let w = u32::from_str_radix(a.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The evidence that XEP-0288 was negotiated, and with trusted certificates used, after the
/// exchange of [`federate_variant`]; `to_peer`, `to_xmppd`: the connections seen (their
/// initiating ends) to the peer's s2s port and to xmppd's.
///
/// With dialback, both servers open a connection each whether bidi is negotiated or not:
/// the receiving server verifies the initiator's key over a connection of its own to the
/// authoritative server (Prosody and xmppd alike send `db:verify` on their normal outgoing
/// stream), and that stream, authenticated in turn, is then its route for its own stanzas
/// (Prosody keeps an outgoing stream it has over an incoming bidi one; xmppd uses a bidi
/// stream only without an established outgoing one). So with dialback only the
/// negotiation is checked (bidi on both streams); with certificates there is no
/// verification connection, and the one the initiator opens must carry both directions.
fn check_bidi(
    variant: Variant,
    xmppd_first: bool,
    peer: &Peer,
    xmppd_log: &str,
    to_peer: &[SocketAddr],
    to_xmppd: &[SocketAddr],
) {
    let plog = std::fs::read_to_string(peer.path().join("prosody.log")).unwrap_or_default();
    let has = |line: &str| plog.contains(line);
    let (pn, pd) = (peer.kind.name(), peer.kind.domain());
    if variant == Variant::BidiCerts {
        // The premise of what follows: no dialback on the initiator's stream.
        let (line, stream) = if xmppd_first {
            (
                format!("Accepting SASL EXTERNAL identity from {XMPPD_DOMAIN}"),
                format!("xmppd's stream to {pn}"),
            )
        } else {
            (
                format!("SASL EXTERNAL with {XMPPD_DOMAIN} succeeded"),
                format!("{pn}'s stream to xmppd"),
            )
        };
        assert!(
            has(&line),
            "setup: {stream} did not authenticate by certificate (SASL EXTERNAL; no {line:?} \
             in {pn}'s log), so the XEP-0288 checks do not apply"
        );
    }
    let mut missing = Vec::new();
    let requested = (
        PROSODY_REQUESTED,
        format!("xmppd did not send <bidi/> on its stream to {pn} (which offers the feature)"),
    );
    let requesting = (
        PROSODY_REQUESTING,
        format!("xmppd did not offer the bidi feature on {pn}'s stream (so {pn} sent no <bidi/>)"),
    );
    let negotiated = match (variant, xmppd_first) {
        (Variant::BidiCerts, true) => vec![requested],
        (Variant::BidiCerts, false) => vec![requesting],
        _ => vec![requested, requesting],
    };
    for (line, what) in negotiated {
        if !has(line) {
            missing.push(format!(
                "not negotiated: {what} (no {line:?} in {pn}'s log)"
            ));
        }
    }
    if variant == Variant::BidiCerts {
        let (initiator, receiver, forward, back) = if xmppd_first {
            ("xmppd", pn, to_peer, to_xmppd)
        } else {
            (pn, "xmppd", to_xmppd, to_peer)
        };
        if forward.len() != 1 || !back.is_empty() {
            missing.push(format!(
                "not used: the one connection {initiator} opened should carry both directions \
                 and {receiver} should never connect to {initiator}; seen established: \
                 {initiator} -> {receiver} {forward:?}, {receiver} -> {initiator} {back:?}"
            ));
        }
        if xmppd_first {
            let route = format!("Setting up to handle route from {pd} to {XMPPD_DOMAIN}");
            if !has(&route) {
                missing.push(format!(
                    "not used: {pn} did not take xmppd's stream as its route to \
                     {XMPPD_DOMAIN} (no {route:?} in its log)"
                ));
            }
            let opened = "opening a new outgoing connection";
            if has(opened) {
                missing.push(format!(
                    "not used: {pn} opened an outgoing s2s connection ({opened:?} in its log)"
                ));
            }
        }
    }
    if !missing.is_empty() {
        let bidi_lines: Vec<&str> = xmppd_log
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("bidi"))
            .collect();
        panic!(
            "XEP-0288 evidence missing:\n- {}\nxmppd's log lines mentioning bidi: {bidi_lines:#?}",
            missing.join("\n- ")
        );
    }
}

#[test]
fn prosody_federation_initiated_by_xmppd() {
    federate(Kind::Prosody, true, "prosody_federation_initiated_by_xmppd");
}

#[test]
fn prosody_federation_initiated_by_prosody() {
    federate(
        Kind::Prosody,
        false,
        "prosody_federation_initiated_by_prosody",
    );
}

#[test]
fn ejabberd_federation_initiated_by_xmppd() {
    federate(
        Kind::Ejabberd,
        true,
        "ejabberd_federation_initiated_by_xmppd",
    );
}

#[test]
fn ejabberd_federation_initiated_by_ejabberd() {
    federate(
        Kind::Ejabberd,
        false,
        "ejabberd_federation_initiated_by_ejabberd",
    );
}

/// XEP-0288 with Prosody's mod_s2s_bidi and trusted certificates (SASL EXTERNAL): xmppd's
/// user starts, so xmppd opens the only connection, asks for bidi, and Prosody sends its
/// stanzas back over it without ever connecting to xmppd.
#[test]
fn xep0288_prosody_bidi_xmppd_initiates() {
    federate_variant(
        Kind::Prosody,
        Variant::BidiCerts,
        true,
        "xep0288_prosody_bidi_xmppd_initiates",
    );
}

/// XEP-0288 with Prosody's mod_s2s_bidi and trusted certificates (SASL EXTERNAL): Prosody's
/// user starts, so Prosody opens the only connection, asks for bidi (xmppd offers it), and
/// xmppd sends its stanzas back over it without ever connecting to Prosody.
#[test]
fn xep0288_prosody_bidi_prosody_initiates() {
    federate_variant(
        Kind::Prosody,
        Variant::BidiCerts,
        false,
        "xep0288_prosody_bidi_prosody_initiates",
    );
}

/// XEP-0288 with Prosody's mod_s2s_bidi and dialback: both streams (the initiator's and the
/// one the receiving server opens for the dialback verification) negotiate bidi, and the
/// federation works as without it.
#[test]
fn xep0288_prosody_bidi_dialback_xmppd_initiates() {
    federate_variant(
        Kind::Prosody,
        Variant::BidiDialback,
        true,
        "xep0288_prosody_bidi_dialback_xmppd_initiates",
    );
}

/// As [`xep0288_prosody_bidi_dialback_xmppd_initiates`], Prosody's user starting.
#[test]
fn xep0288_prosody_bidi_dialback_prosody_initiates() {
    federate_variant(
        Kind::Prosody,
        Variant::BidiDialback,
        false,
        "xep0288_prosody_bidi_dialback_prosody_initiates",
    );
}
