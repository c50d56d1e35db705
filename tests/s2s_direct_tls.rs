//! XEP-0368 for outgoing server-to-server streams, end to end: two xmppd processes on
//! loopback, `a.test` and `b.test`, where `a.test` finds `b.test` only through DNS, asking a
//! DNS responder this test runs (`--s2s-dns`), never through a static route.
//!
//! The responder serves a zone the test fills once both servers listen (their ports are
//! only known then): SRV `_xmpps-server._tcp.b.test` (direct TLS) and `_xmpp-server._tcp.b.test`
//! (STARTTLS) as each test needs, A records for the SRV targets (127.0.0.1), no AAAA, and
//! NXDOMAIN for every name it does not hold (`b.test` itself included, so the RFC 6120
//! A/AAAA fallback to port 5269 leads nowhere). It records every question.
//!
//! `b.test` listens for direct TLS (`--s2s-tls-listen`) and for STARTTLS on a port the DNS
//! never names unless a test says so; it reaches `a.test` (dialback verification, replies)
//! by a static route to a's STARTTLS port. The certificates are the generated self-signed
//! ones (dialback, XEP-0220) except where a test brings its own CA.
//!
//! What is checked (XEP-0368 §3, "Requirements"):
//! - a `_xmpps-server` record is connected to with direct TLS (rule 2), and the stream
//!   carries stanzas both ways;
//! - both record sets are one RFC 2782 set (rule 1): priority decides between them, and at
//!   equal priority and weight 0 xmppd tries direct TLS first (the preference rule 1 allows;
//!   see src/s2s/resolve.rs); a direct-TLS target whose port is closed falls back to the
//!   STARTTLS record;
//! - the ClientHello names the JID's domain in SNI (rule 6) and offers ALPN `xmpp-server`
//!   (rules 7, 9);
//! - the certificate is validated for the domain, not for the SRV target (rule 4).

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::s2s::{eprint_log_tail, exchange, s2s_lines, strip_ansi};
use common::*;

const DIRECT_TLS_SRV: &str = "_xmpps-server._tcp.b.test";
const STARTTLS_SRV: &str = "_xmpp-server._tcp.b.test";
/// DNS record types.
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;

// ---------------------------------------------------------------------------------------------
// A DNS responder over UDP.

/// One resource record of the test zone.
#[derive(Clone, Debug)]
enum Rr {
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    A(Ipv4Addr),
}

impl Rr {
    fn rtype(&self) -> u16 {
        match self {
            Rr::Srv { .. } => TYPE_SRV,
            Rr::A(_) => TYPE_A,
        }
    }

    fn rdata(&self) -> Vec<u8> {
        match self {
            Rr::A(ip) => ip.octets().to_vec(),
            Rr::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                let mut r = Vec::new();
                r.extend_from_slice(&priority.to_be_bytes());
                r.extend_from_slice(&weight.to_be_bytes());
                r.extend_from_slice(&port.to_be_bytes());
                dns::encode_name(target, &mut r);
                r
            }
        }
    }
}

type Zone = Arc<Mutex<Vec<(String, Rr)>>>;

/// Answers from [`Zone`]: the records of the asked name and type; "no data" (NOERROR, SOA
/// in the authority section) when the name holds records of other types only; NXDOMAIN
/// (with the SOA) when it holds none. Every question is recorded.
struct Dns {
    addr: SocketAddr,
    zone: Zone,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dns {
    fn start() -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let zone: Zone = Arc::default();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (zone, queries, stop) = (zone.clone(), queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Acquire) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let zone = zone.lock().unwrap().clone();
                    if let Some((answer, name, qtype)) = dns_answer(&buf[..n], &zone) {
                        queries.lock().unwrap().push((name, qtype));
                        let _ = sock.send_to(&answer, from);
                    }
                }
            })
        };
        Dns {
            addr,
            zone,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    fn add(&self, name: &str, rr: Rr) {
        self.zone
            .lock()
            .unwrap()
            .push((name.to_ascii_lowercase(), rr));
    }

    /// An SRV record with weight 0 whose target `host` has the A record 127.0.0.1.
    fn srv(&self, service: &str, priority: u16, port: u16, host: &str) {
        self.add(
            service,
            Rr::Srv {
                priority,
                weight: 0,
                port,
                target: host.into(),
            },
        );
        let known = self
            .zone
            .lock()
            .unwrap()
            .iter()
            .any(|(n, rr)| n == host && matches!(rr, Rr::A(_)));
        if !known {
            self.add(host, Rr::A(Ipv4Addr::LOCALHOST));
        }
    }

    fn asked(&self, name: &str, qtype: u16) -> bool {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .any(|(n, t)| n == name && *t == qtype)
    }

    /// The questions asked, one per line, for failure messages.
    fn questions(&self) -> String {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .map(|(n, t)| format!("type {t} {n}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The response to one query, with the asked name (lowercase, no trailing dot) and type.
fn dns_answer(q: &[u8], zone: &[(String, Rr)]) -> Option<(Vec<u8>, String, u16)> {
    let question = dns::question(q)?;
    let (name, qtype) = (question.name.clone(), question.qtype);
    let held: Vec<&Rr> = zone
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, rr)| rr)
        .collect();
    let answers: Vec<&Rr> = held
        .iter()
        .copied()
        .filter(|rr| rr.rtype() == qtype)
        .collect();
    let nxdomain = held.is_empty();
    let mut r = dns::response_start(
        q,
        &question,
        if nxdomain { 3 } else { 0 },
        answers.len(),
        usize::from(answers.is_empty()),
    );
    for rr in &answers {
        dns::push_answer(&mut r, rr.rtype(), &rr.rdata());
    }
    if answers.is_empty() {
        // A negative answer carries the zone's SOA (RFC 2308); the root stands for the zone.
        let mut rdata = Vec::new();
        dns::encode_name("ns.test", &mut rdata);
        dns::encode_name("hostmaster.test", &mut rdata);
        for v in [1u32, 3600, 600, 86400, 30] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        r.push(0); // the root
        r.extend_from_slice(&TYPE_SOA.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&30u32.to_be_bytes());
        r.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    if question.edns {
        dns::push_opt(&mut r);
    }
    Some((r, name, qtype))
}

// ---------------------------------------------------------------------------------------------
// The servers.

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `a.test`, resolving remote domains with `dns` only, with `extra` flags.
fn start_a(dns: &Dns, extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec![
        "--domain".into(),
        "a.test".into(),
        "--s2s-dns".into(),
        dns.addr.to_string(),
        // A wrong first choice (a port that never answers) fails the test in seconds.
        "--s2s-connect-timeout".into(),
        "8".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(&strs(&args))
}

/// `b.test` with a direct-TLS listener and a route to `a`'s STARTTLS port.
fn b_args(a: &Server) -> Vec<String> {
    vec![
        "--domain".into(),
        "b.test".into(),
        "--s2s-tls-listen".into(),
        "127.0.0.1:0".into(),
        "--s2s-route".into(),
        format!("a.test=127.0.0.1:{}", a.s2s.expect("a's s2s port").port()),
    ]
}

fn start_b(a: &Server) -> Server {
    Server::start(&strs(&b_args(a)))
}

/// b's direct-TLS port and STARTTLS port.
fn ports(b: &Server) -> (u16, u16) {
    (
        b.s2s_tls.expect("b's direct TLS port").port(),
        b.s2s.expect("b's STARTTLS port").port(),
    )
}

/// A loopback port that refuses connections: bound, never listening (so no other test can
/// take it while the socket lives).
fn closed_port() -> (socket2::Socket, u16) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (s, port)
}

/// A listener that accepts TCP connections (the kernel completes them) and never speaks:
/// a stream set up there could never come up. [`Trap::connections`] counts them.
struct Trap {
    listener: TcpListener,
    port: u16,
}

impl Trap {
    fn new() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        Trap { listener, port }
    }

    fn connections(&self) -> usize {
        std::iter::from_fn(|| self.listener.accept().ok()).count()
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// The first line of `s`'s log containing every one of `needles`, waiting up to [`TIMEOUT`]
/// for it: the harness reads the server's stderr on a thread of its own, so a line written
/// before a stanza went out may be captured after the stanza arrived.
fn log_line(s: &Server, needles: &[&str]) -> Option<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = strip_ansi(&s.log())
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string);
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// a's line "s2s resolved" for b.test: the addresses in connection order (their `Debug`).
fn resolved_b(a: &Server) -> String {
    log_line(a, &["s2s resolved", "b.test"])
        .unwrap_or_else(|| panic!("a never resolved b.test:\n{}", s2s_lines(a)))
}

/// On a failing test: the DNS questions and the tail of each server's log.
struct DumpOnPanic<'a> {
    dns: &'a Dns,
    servers: Vec<&'a Server>,
}

impl Drop for DumpOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== DNS questions =====\n{}", self.dns.questions());
            for s in &self.servers {
                eprint_log_tail(&s.domain, s, 100);
            }
        }
    }
}

fn dump<'a>(dns: &'a Dns, servers: &[&'a Server]) -> DumpOnPanic<'a> {
    DumpOnPanic {
        dns,
        servers: servers.to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// XEP-0368 rules 1-2: `b.test` publishes only `_xmpps-server._tcp` (its STARTTLS port is
/// in no record, `_xmpp-server._tcp.b.test` is NXDOMAIN): a.test connects to that port with
/// TLS at once, the stream authenticates (dialback over the direct-TLS stream) and the chat
/// crosses both ways. The port speaks TLS from its first byte, so a stream up there was
/// direct TLS.
#[test]
fn xep0368_outgoing_direct_tls_via_xmpps_server_srv() {
    let dns = Dns::start();
    let a = start_a(&dns, &[]);
    let b = start_b(&a);
    let _g = dump(&dns, &[&a, &b]);
    let (tls_port, _) = ports(&b);
    dns.srv(DIRECT_TLS_SRV, 0, tls_port, "xmpps.b.test");

    exchange(&a, &b);

    assert!(dns.asked(DIRECT_TLS_SRV, TYPE_SRV), "{}", dns.questions());
    assert!(dns.asked(STARTTLS_SRV, TYPE_SRV), "{}", dns.questions());
    assert!(dns.asked("xmpps.b.test", TYPE_A), "{}", dns.questions());
    assert!(
        !dns.asked("b.test", TYPE_A) && !dns.asked("b.test", TYPE_AAAA),
        "no A/AAAA fallback when SRV records exist:\n{}",
        dns.questions()
    );
    let resolved = resolved_b(&a);
    assert!(
        resolved.contains(&format!("port: {tls_port}, direct_tls: true")),
        "{resolved}"
    );
    assert!(!resolved.contains("direct_tls: false"), "{resolved}");
    let up = log_line(&a, &["s2s outgoing stream up", "b.test"])
        .unwrap_or_else(|| panic!("a's stream to b.test never came up:\n{}", s2s_lines(&a)));
    assert!(up.contains("dialback"), "{up}");
}

/// XEP-0368 rule 1 (and the preference it allows): both services at priority 0, weight 0.
/// xmppd lays a priority group out direct TLS first (src/s2s/resolve.rs), so the
/// `_xmpps-server` target is tried first; it answers, and the `_xmpp-server` target (a port
/// that accepts and never speaks) is never connected to.
#[test]
fn xep0368_direct_tls_record_tried_first_at_equal_priority_and_weight() {
    let dns = Dns::start();
    let a = start_a(&dns, &[]);
    let b = start_b(&a);
    let _g = dump(&dns, &[&a, &b]);
    let (tls_port, _) = ports(&b);
    let trap = Trap::new();
    dns.srv(STARTTLS_SRV, 0, trap.port, "xmpp.b.test");
    dns.srv(DIRECT_TLS_SRV, 0, tls_port, "xmpps.b.test");

    exchange(&a, &b);

    let resolved = resolved_b(&a);
    let tls_at = resolved.find(&format!("port: {tls_port}, direct_tls: true"));
    let trap_at = resolved.find(&format!("port: {}, direct_tls: false", trap.port));
    assert!(
        matches!((tls_at, trap_at), (Some(t), Some(s)) if t < s),
        "direct TLS first, then STARTTLS: {resolved}"
    );
    assert_eq!(
        trap.connections(),
        0,
        "the STARTTLS target was connected to"
    );
}

/// XEP-0368 rule 1: the records of both services are one RFC 2782 set, so priority decides
/// between them: `_xmpp-server` at priority 0 (b's STARTTLS port) is used before
/// `_xmpps-server` at priority 10 (a port that accepts and never speaks), which is never
/// connected to.
#[test]
fn xep0368_priority_decides_between_starttls_and_direct_tls_records() {
    let dns = Dns::start();
    let a = start_a(&dns, &[]);
    let b = start_b(&a);
    let _g = dump(&dns, &[&a, &b]);
    let (_, starttls_port) = ports(&b);
    let trap = Trap::new();
    dns.srv(DIRECT_TLS_SRV, 10, trap.port, "xmpps.b.test");
    dns.srv(STARTTLS_SRV, 0, starttls_port, "xmpp.b.test");

    exchange(&a, &b);

    let resolved = resolved_b(&a);
    let starttls_at = resolved.find(&format!("port: {starttls_port}, direct_tls: false"));
    let trap_at = resolved.find(&format!("port: {}, direct_tls: true", trap.port));
    assert!(
        matches!((starttls_at, trap_at), (Some(s), Some(t)) if s < t),
        "STARTTLS (priority 0) first, then direct TLS (priority 10): {resolved}"
    );
    assert_eq!(
        trap.connections(),
        0,
        "the direct-TLS target of the lower priority was connected to"
    );
}

/// XEP-0368 rule 1, RFC 2782: `_xmpps-server` (tried first at equal priority and weight)
/// points to a closed port; the next record of the merged list, `_xmpp-server` to b's
/// STARTTLS port, carries the stream.
#[test]
fn xep0368_falls_back_to_starttls_record_when_direct_tls_port_is_closed() {
    let dns = Dns::start();
    let a = start_a(&dns, &[]);
    let b = start_b(&a);
    let _g = dump(&dns, &[&a, &b]);
    let (_, starttls_port) = ports(&b);
    let (_closed, closed) = closed_port();
    dns.srv(DIRECT_TLS_SRV, 0, closed, "xmpps.b.test");
    dns.srv(STARTTLS_SRV, 0, starttls_port, "xmpp.b.test");

    exchange(&a, &b);

    // The closed direct-TLS address was first in line: the fallback happened.
    let resolved = resolved_b(&a);
    let closed_at = resolved.find(&format!("port: {closed}, direct_tls: true"));
    let starttls_at = resolved.find(&format!("port: {starttls_port}, direct_tls: false"));
    assert!(
        matches!((closed_at, starttls_at), (Some(c), Some(s)) if c < s),
        "the closed direct-TLS port first, then STARTTLS: {resolved}"
    );
    assert!(log_line(&a, &["s2s outgoing stream up", "b.test"]).is_some());
}

/// XEP-0368 rules 6, 7, 9: the ClientHello a.test sends to the `_xmpps-server` target names
/// the JID's domain (`b.test`) in SNI, not the SRV target, and offers exactly the ALPN
/// protocol `xmpp-server`. (The test's listener reads the ClientHello and closes: the set-up
/// fails and the message bounces with `remote-server-not-found`.)
#[test]
fn xep0368_direct_tls_client_hello_has_the_domain_as_sni_and_alpn_xmpp_server() {
    let dns = Dns::start();
    let a = start_a(&dns, &[]);
    let _g = dump(&dns, &[&a]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    dns.srv(
        DIRECT_TLS_SRV,
        0,
        listener.local_addr().unwrap().port(),
        "tls.hosting.example",
    );
    let alice = User::new(&a, "alice");
    let mut ca = alice.online(&a, "phone");
    ca.send("<message to='bob@b.test' type='chat' id='h1'><body>hello?</body></message>");

    let deadline = Instant::now() + TIMEOUT;
    let mut sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "a never connected");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut acceptor = rustls::server::Acceptor::default();
    let accepted = loop {
        let n = acceptor.read_tls(&mut sock).expect("the ClientHello");
        assert!(n > 0, "a closed before its ClientHello");
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => continue,
            Err((e, _)) => panic!("not a TLS ClientHello: {e}"),
        }
    };
    let hello = accepted.client_hello();
    assert_eq!(hello.server_name(), Some("b.test"), "SNI");
    let alpn: Vec<Vec<u8>> = hello
        .alpn()
        .map(|it| it.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    assert_eq!(alpn, [b"xmpp-server".to_vec()], "ALPN");
    drop(sock);

    let (e, _) = ca.recv_until("the bounce", |e| e.attr("id") == Some("h1"));
    assert_eq!(e.attr("type"), Some("error"), "{e:?}");
    assert_eq!(
        stanza_error(&e).map(|x| x.0).as_deref(),
        Some("remote-server-not-found"),
        "{e:?}"
    );
}

/// Certificates for exactly `a.test` and `b.test` (no other name), from one CA.
struct Certs {
    ca_pem: PathBuf,
    /// Per domain: the data directory (`tls/cert.pem`: leaf then CA, `tls/key.pem`).
    dirs: Vec<tempfile::TempDir>,
    _ca: ca::Ca,
}

fn certs(domains: &[&str]) -> Certs {
    let ca = ca::Ca::new("xmppd XEP-0368 test CA");
    let dirs = domains
        .iter()
        .map(|d| ca.data_dir(d, vec![d.to_string()]).0)
        .collect();
    Certs {
        ca_pem: ca.pem.clone(),
        dirs,
        _ca: ca,
    }
}

/// The flags that make a server present the certificate in `dir` and trust only the CA.
fn cert_args(certs: &Certs, dir: &Path) -> Vec<String> {
    let tls = dir.join("tls");
    vec![
        "--cert".into(),
        tls.join("cert.pem").to_str().unwrap().into(),
        "--key".into(),
        tls.join("key.pem").to_str().unwrap().into(),
        "--s2s-ca".into(),
        certs.ca_pem.to_str().unwrap().into(),
    ]
}

/// XEP-0368 rule 4 (and 6): over direct TLS the certificate is validated as for STARTTLS,
/// for the JID's domain: b's certificate names only `b.test`, the SRV target is
/// `xmpps.hosting.example`, and a.test requires a valid certificate and does no dialback.
/// The stream comes up by SASL EXTERNAL (XEP-0178) and the chat crosses both ways.
#[test]
fn xep0368_direct_tls_certificate_is_validated_for_the_domain_not_the_srv_target() {
    let certs = certs(&["a.test", "b.test"]);
    let dns = Dns::start();
    let (a_dir, b_dir) = (certs.dirs[0].path(), certs.dirs[1].path());
    let mut a_args: Vec<String> = vec![
        "--domain".into(),
        "a.test".into(),
        "--s2s-dns".into(),
        dns.addr.to_string(),
        "--s2s-connect-timeout".into(),
        "8".into(),
        "--s2s-require-valid-cert".into(),
        "--s2s-no-dialback".into(),
    ];
    a_args.extend(cert_args(&certs, a_dir));
    let a = Server::start_on(a_dir, &strs(&a_args));
    let mut b_args = b_args(&a);
    b_args.extend(cert_args(&certs, b_dir));
    let b = Server::start_on(b_dir, &strs(&b_args));
    let _g = dump(&dns, &[&a, &b]);
    let (tls_port, _) = ports(&b);
    dns.srv(DIRECT_TLS_SRV, 0, tls_port, "xmpps.hosting.example");

    exchange(&a, &b);

    let resolved = resolved_b(&a);
    assert!(
        resolved.contains(&format!("port: {tls_port}, direct_tls: true")),
        "{resolved}"
    );
    let up = log_line(&a, &["s2s outgoing stream up", "b.test"])
        .unwrap_or_else(|| panic!("a's stream to b.test never came up:\n{}", s2s_lines(&a)));
    assert!(up.contains("sasl-external"), "{up}");
    assert!(
        log_line(
            &b,
            &["incoming stream authenticated (SASL EXTERNAL)", "a.test"]
        )
        .is_some(),
        "b did not authenticate a.test by its certificate:\n{}",
        s2s_lines(&b)
    );
}

/// RFC 6120 §3.2.1 with XEP-0368: the first address (`_xmpps-server`, priority 0) accepts
/// the TCP connection and hangs up at once, so TLS fails there; the set-up goes on to the
/// next address (`_xmpp-server`, priority 10) instead of bouncing the message.
#[test]
fn rfc6120_3_2_1_tls_failure_at_first_address_tries_the_next() {
    let dns = Dns::start();
    let a = start_a(&dns, &[]);
    let b = start_b(&a);
    let _g = dump(&dns, &[&a, &b]);
    let (_, starttls_port) = ports(&b);
    // Accepts and closes every connection at once, counting them.
    let closer = TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_port = closer.local_addr().unwrap().port();
    let hung_up = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let hung_up = hung_up.clone();
        std::thread::spawn(move || {
            for c in closer.incoming() {
                drop(c);
                hung_up.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    dns.srv(DIRECT_TLS_SRV, 0, closer_port, "xmpps.b.test");
    dns.srv(STARTTLS_SRV, 10, starttls_port, "xmpp.b.test");

    exchange(&a, &b);

    assert!(
        hung_up.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the direct-TLS address was not tried first: {}",
        resolved_b(&a)
    );
    assert!(log_line(&a, &["s2s outgoing stream up", "b.test"]).is_some());
}
