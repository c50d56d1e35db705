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
//! Needs root (namespaces, port 53) or passwordless sudo; installs the peers with apt-get
//! when missing. A peer that cannot be installed or started fails the test. On failure the
//! logs of both sides (and the DNS queries seen) are printed and kept under
//! `$CARGO_TARGET_TMPDIR/interop_s2s/TEST/`.

mod common;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
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
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([q[4], q[5]]);
    let arcount = u16::from_be_bytes([q[10], q[11]]);
    // The question: labels (no compression in a question), type, class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let q_end = i + 4;
    if qdcount != 1 || q.len() < q_end {
        return None;
    }
    let name = labels.join(".");
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
            for l in zone.split('.') {
                rdata.push(l.len() as u8);
                rdata.extend_from_slice(l.as_bytes());
            }
            rdata.push(0);
            answers.push((33, rdata));
        }
        0
    } else {
        3 // NXDOMAIN
    };
    let mut r = Vec::with_capacity(512);
    r.extend_from_slice(&q[0..2]); // id
    let rd = q[2] & 0x01;
    r.push(0x80 | 0x04 | rd); // QR, AA, RD echoed (opcode 0)
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&u16::from(arcount > 0).to_be_bytes());
    r.extend_from_slice(&q[12..q_end]);
    for (ty, rdata) in &answers {
        r.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        r.extend_from_slice(&ty.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes()); // IN
        r.extend_from_slice(&30u32.to_be_bytes()); // TTL
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
    }
    if arcount > 0 {
        // EDNS(0) asked: answer with an OPT record of our own (1232-byte payload).
        r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
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
    /// Writes the peer's private state and starts it; returns once its c2s and s2s ports
    /// accept connections.
    fn start(kind: Kind, ip: Ipv4Addr, xmppd_ip: Ipv4Addr) -> Peer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("xmppd-s2s-{}-", kind.name()))
            .tempdir()
            .expect("tempdir");
        let d = dir.path().to_str().unwrap().to_string();
        let out = run_bounded(
            Command::new(SCRIPT).args([
                "setup",
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
        let log = File::create(dir.path().join("run.out")).unwrap();
        let child = Command::new(SCRIPT)
            .args(["run", kind.name(), &d])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
        let mut p = Peer {
            kind,
            ip,
            dir,
            child: Some(child),
        };
        p.wait_listening();
        p
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

/// The whole exchange between an xmppd user and a peer user; `xmppd_first`: the xmppd user
/// initiates everything (so the first stream is xmppd's outgoing one), else the peer user.
fn federate(kind: Kind, xmppd_first: bool, test: &str) {
    let t0 = Instant::now();
    let versions = install();
    let (xip, pip, dns_sock) = pick_addresses();
    let dns = Dns::start(dns_sock, XMPPD_DOMAIN, xip, 5269);
    let listen = format!("{xip}:5269");
    let route = format!("{}={pip}:5269", kind.domain());
    let server = Server::start(&[
        "--domain",
        XMPPD_DOMAIN,
        "--s2s-listen",
        &listen,
        "--s2s-route",
        &route,
    ]);
    let peer = Peer::start(kind, pip, xip);
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
        t1.elapsed()
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
