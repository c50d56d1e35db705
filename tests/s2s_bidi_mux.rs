//! XEP-0288 (bidirectional server-to-server connections) and XEP-0220 §2.6 (sender
//! multiplexing), end to end, with the test playing the remote server over raw sockets (TLS by
//! rustls on both sides, certificates from a test CA made here).
//!
//! The local server serves `a.test` (and `a2.test` for multiplexing). The raw peer plays
//! `b.test` (and `b2.test`, `b3.test`):
//!
//! - xmppd as Receiving Server (sections A, D): the test connects to the s2s port, negotiates
//!   STARTTLS and authenticates by SASL EXTERNAL with a client certificate from the test CA
//!   (`--s2s-ca`), or by dialback with a fake authoritative server ([`Authoritative`]) that
//!   answers xmppd's `db:verify`;
//! - xmppd as Initiating Server (sections B, C): `--s2s-route b.test=…` points xmppd at a
//!   listener of the test; a local user's message makes xmppd connect; the test answers as
//!   the Receiving Server (STARTTLS as TLS server, then the features the case needs).
//!
//! `--s2s-no-bidi` turns XEP-0288 off in both directions. Every read is bounded (`WAIT`);
//! "nothing happens" is watched for `QUIET`. Each test runs its own server.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::ca::{Ca, Leaf};
use common::s2s::*;
use common::{stanza_error, Client, Server, User};
use rustls::pki_types::CertificateDer;
use xmppd::xml::{Element, StreamHeader};

const LOCAL: &str = "a.test";
const LOCAL2: &str = "a2.test";
const REMOTE: &str = "b.test";

const NS_CLIENT: &str = "jabber:client";
const NS_BIDI: &str = "urn:xmpp:bidi";
const NS_BIDI_FEATURES: &str = "urn:xmpp:features:bidi";
const NS_PING: &str = "urn:xmpp:ping";

/// The request to use the stream both ways (XEP-0288 §2).
const BIDI: &str = "<bidi xmlns='urn:xmpp:bidi'/>";
/// The stream feature announcing XEP-0288.
const BIDI_FEATURE: &str = "<bidi xmlns='urn:xmpp:features:bidi'/>";
/// The dialback feature without error support.
const DIALBACK_FEATURE_NO_ERRORS: &str = "<dialback xmlns='urn:xmpp:features:dialback'/>";
/// SASL EXTERNAL offered (XEP-0178).
const EXTERNAL_FEATURE: &str = "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                                <mechanism>EXTERNAL</mechanism></mechanisms>";
const STARTTLS_REQUIRED: &str =
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>";

// ---------------------------------------------------------------------------------------------
// Certificates: a test CA, leaves for the peer's domains, rustls configurations
// ---------------------------------------------------------------------------------------------

/// The name of the test CA.
const TEST_CA: &str = "xmppd bidi/mux test CA";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS as the Initiating Server towards xmppd: trust xmppd's own certificate, present
/// `client` (if any) as client certificate.
fn client_tls(server: &Server, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server.cert_path()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some(l) => b
            .with_client_auth_cert(l.chain.clone(), l.key.clone_key())
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// TLS as the Receiving Server of xmppd's connection (xmppd accepts any certificate without
/// `--s2s-require-valid-cert`; this one is from the test CA).
fn server_tls(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
            .unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// A fake authoritative server (answers xmppd's db:verify over TLS)
// ---------------------------------------------------------------------------------------------

/// What the fake authoritative server saw on xmppd's connection.
#[derive(Debug)]
#[allow(dead_code)]
enum AuthEv {
    /// A `db:verify` (answered `valid` if the key is the good one, else `invalid`).
    Verify(Element),
    /// xmppd's own `db:result` on its outgoing stream (never answered: the stream stays
    /// unauthenticated).
    Result(Element),
    /// Anything else (stanzas).
    Other(Element, String),
    /// The connection ended.
    Closed,
    /// The fake's own negotiation failed (message).
    Failed(String),
}

/// Plays `me` on a loopback port (route xmppd to it with `--s2s-route me=127.0.0.1:PORT`):
/// STARTTLS as server, the dialback feature, `db:verify` answered, `db:result` never.
struct Authoritative {
    port: u16,
    events: mpsc::Receiver<AuthEv>,
    stop: Arc<AtomicBool>,
}

impl Authoritative {
    fn start(me: &str, tls: Arc<rustls::ServerConfig>, good_key: &str) -> Authoritative {
        let (l, port) = listen();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (me, good_key) = (me.to_string(), good_key.to_string());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut n = 0;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Some(s) = accept_within(&l, Duration::from_millis(100)) else {
                    continue;
                };
                n += 1;
                let (tx2, stop3, tls2) = (tx.clone(), stop2.clone(), tls.clone());
                let (me2, key2) = (me.clone(), good_key.clone());
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    Authoritative::serve(s, n, &me2, &key2, tls2, &tx2, &stop3, deadline)
                }));
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let _ = tx.send(AuthEv::Failed(msg));
                }
            }
        });
        Authoritative {
            port,
            events: rx,
            stop,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn serve(
        s: TcpStream,
        n: usize,
        me: &str,
        good_key: &str,
        tls: Arc<rustls::ServerConfig>,
        tx: &mpsc::Sender<AuthEv>,
        stop: &AtomicBool,
        deadline: Instant,
    ) {
        let mut p = Peer::new(&format!("xmppd → {me} (fake authoritative)"), s);
        p.answer_header(me, &format!("auth-pre-{n}"), STARTTLS_REQUIRED, true);
        p.accept_starttls(tls);
        p.answer_header(me, &format!("auth-{n}"), DIALBACK_FEATURE, true);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let Some(ev) = p.try_recv(Duration::from_millis(100)) else {
                continue;
            };
            match ev {
                Ev::El(e, _) if e.is("verify", NS_DB) => {
                    let (from, to, id) = (
                        e.attr("from").unwrap_or_default().to_string(),
                        e.attr("to").unwrap_or_default().to_string(),
                        e.attr("id").unwrap_or_default().to_string(),
                    );
                    let ty = if e.text().trim() == good_key {
                        "valid"
                    } else {
                        "invalid"
                    };
                    let _ = tx.send(AuthEv::Verify(e));
                    p.send_lossy(&format!(
                        "<db:verify from='{to}' to='{from}' id='{id}' type='{ty}'/>"
                    ));
                }
                Ev::El(e, _) if e.is("result", NS_DB) => {
                    let _ = tx.send(AuthEv::Result(e));
                }
                Ev::El(e, raw) => {
                    let _ = tx.send(AuthEv::Other(e, raw));
                }
                Ev::Header(_) => {}
                Ev::Close | Ev::Eof | Ev::Reset(_) => {
                    p.send_lossy("</stream:stream>");
                    let _ = tx.send(AuthEv::Closed);
                    return;
                }
            }
        }
    }

    fn route(&self, domain: &str) -> String {
        format!("{domain}=127.0.0.1:{}", self.port)
    }

    /// The next event that satisfies `pred`.
    fn next_where(&self, what: &str, pred: impl Fn(&AuthEv) -> bool) -> AuthEv {
        next_event_where(&self.events, what, pred)
    }

    /// Everything seen so far (without waiting).
    fn seen(&self) -> Vec<AuthEv> {
        self.events.try_iter().collect()
    }
}

impl Drop for Authoritative {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Set-ups and small checks
// ---------------------------------------------------------------------------------------------

/// A server for `a.test` with `extra` flags.
fn server(extra: &[&str]) -> Server {
    if extra.contains(&"--s2s-no-bidi") {
        require_flag("--s2s-no-bidi");
    }
    let mut args = vec!["--domain", LOCAL];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Fails clearly if `xmppd serve` does not know `flag` (rather than as a server that did
/// not start).
fn require_flag(flag: &str) {
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--help"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xmppd serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.split_whitespace().any(|w| w == flag),
        "`xmppd serve` has no {flag} flag (specified: it turns XEP-0288 off in both directions)"
    );
}

fn has_bidi_feature(f: &Element) -> bool {
    f.child("bidi", NS_BIDI_FEATURES).is_some()
}

fn offers_external(f: &Element) -> bool {
    f.child("mechanisms", NS_SASL).is_some_and(|m| {
        m.elements()
            .any(|e| e.name == "mechanism" && e.text().trim() == "EXTERNAL")
    })
}

fn body(e: &Element, ns: &str) -> Option<String> {
    e.child("body", ns).map(|b| b.text())
}

/// A user of `domain` (a served domain other than the server's first): (localpart, password).
fn user_of(s: &Server, local: &str, domain: &str) -> (String, String) {
    let pw = format!("pw-{local}-secret");
    let jid = format!("{local}@{domain}");
    let out = s.admin(
        &["adduser", &jid, "--password-stdin", "--domain", domain],
        &format!("{pw}\n"),
    );
    assert!(
        out.status.success(),
        "adduser {jid} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (local.to_string(), pw)
}

/// That user logged in on `domain` with `<presence/>` sent and echoed.
fn online_on(s: &Server, local: &str, pw: &str, domain: &str, resource: &str) -> Client {
    let mut c = Client::plain(s);
    c.domain = domain.to_string();
    let mut c = Client::login_on(c, local, pw, Some(resource));
    c.send("<presence/>");
    let me = c.full();
    c.recv_until("own presence echo", |e| {
        e.name == "presence" && e.attr("from") == Some(me.as_str())
    });
    c
}

/// The client's error bounce for message `id` (a bounded wait).
fn expect_bounce(c: &mut Client, id: &str, why: &str) -> Element {
    c.recv_until(&format!("the error bounce of message {id} ({why})"), |e| {
        is_bounce(e, id)
    })
    .0
}

// ---- xmppd as Receiving Server ---------------------------------------------------------------

/// An incoming stream `remote` → a.test: STARTTLS with `remote`'s CA-signed client
/// certificate, `<bidi/>` if `bidi`, SASL EXTERNAL, the restarted stream. Returns the peer
/// and the restarted stream's header and features.
fn incoming_external(
    s: &Server,
    ca: &Ca,
    remote: &str,
    bidi: bool,
) -> (Peer, StreamHeader, Element) {
    let mut p = Peer::connect(
        &format!("{remote} → {LOCAL} (xmppd's incoming stream, SASL EXTERNAL)"),
        s2s_addr(s),
    );
    p.open(remote, LOCAL);
    p.starttls_client(client_tls(s, Some(&ca.leaf(remote))), LOCAL);
    let (_, f) = p.open(remote, LOCAL);
    assert!(
        offers_external(&f),
        "EXTERNAL must be offered for a certificate from the --s2s-ca CA: {f:?}\n{}",
        p.transcript()
    );
    if bidi {
        p.send(BIDI);
    }
    p.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>"
    ));
    let what = if bidi {
        "SASL <success/> (after <bidi xmlns='urn:xmpp:bidi'/>, which gets no answer)"
    } else {
        "SASL <success/>"
    };
    p.expect_el(what, |e| e.is("success", NS_SASL));
    let (h, f) = p.open(remote, LOCAL);
    (p, h, f)
}

/// b.test connected to a.test and authenticated by SASL EXTERNAL; xmppd's own route to
/// b.test is a closed port (an outgoing stream would fail: remote-server-not-found).
struct BidiIn {
    _server: Server,
    _ca: Ca,
    peer: Peer,
    alice: User,
    client: Client,
}

fn bidi_in(bidi: bool, extra: &[&str]) -> BidiIn {
    let ca = Ca::new(TEST_CA);
    let ca_arg = ca.pem_arg();
    let route = format!("{REMOTE}=127.0.0.1:{}", closed_tcp_port());
    let mut args = vec!["--s2s-ca", &ca_arg, "--s2s-route", &route];
    args.extend_from_slice(extra);
    let server = server(&args);
    let alice = User::new(&server, "alice");
    let client = alice.online(&server, "r");
    let (peer, _, _) = incoming_external(&server, &ca, REMOTE, bidi);
    BidiIn {
        _server: server,
        _ca: ca,
        peer,
        alice,
        client,
    }
}

impl BidiIn {
    /// Alice sends a chat message `id` to x@b.test/r.
    fn alice_sends(&mut self, id: &str, text: &str) {
        self.client.send(&format!(
            "<message to='x@{REMOTE}/r' type='chat' id='{id}'><body>{text}</body></message>"
        ));
    }

    /// Alice's message `id` arrives on the incoming connection.
    fn expect_on_incoming(&mut self, id: &str, why: &str) -> Element {
        match self.peer.try_recv(WAIT) {
            Some(Ev::El(m, _)) if m.name == "message" && m.attr("id") == Some(id) => m,
            other => {
                let alice_got = self.client.collect_for(Duration::from_millis(300));
                panic!(
                    "{why}: expected alice's <message id='{id}'> on the incoming connection, \
                     got {other:?}; meanwhile alice received {alice_got:?}\n{}",
                    self.peer.transcript()
                )
            }
        }
    }
}

/// RFC 6120 §6.4.6 with XEP-0288: after SASL `<success/>` the peer restarts the stream, and
/// nothing of ours may come before our new stream header. Alice's message, sent while the
/// peer has not restarted yet, waits (our own route to b.test is closed, so it has nowhere
/// else to go); it follows our header and features.
#[test]
fn xep0288_receiving_nothing_before_the_restart_header_after_sasl() {
    let ca = Ca::new(TEST_CA);
    let ca_arg = ca.pem_arg();
    let route = format!("{REMOTE}=127.0.0.1:{}", closed_tcp_port());
    let server = server(&["--s2s-ca", &ca_arg, "--s2s-route", &route]);
    let alice = User::new(&server, "alice");
    let mut client = alice.online(&server, "r");
    let mut p = Peer::connect(
        &format!("{REMOTE} → {LOCAL} (bidi, SASL EXTERNAL, late restart)"),
        s2s_addr(&server),
    );
    p.open(REMOTE, LOCAL);
    p.starttls_client(client_tls(&server, Some(&ca.leaf(REMOTE))), LOCAL);
    let (_, f) = p.open(REMOTE, LOCAL);
    assert!(offers_external(&f), "{f:?}\n{}", p.transcript());
    p.send(BIDI);
    p.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>"
    ));
    p.expect_el("SASL <success/>", |e| e.is("success", NS_SASL));
    client.send(&format!(
        "<message to='x@{REMOTE}/r' type='chat' id='early'><body>too early?</body></message>"
    ));
    p.expect_silence(
        QUIET,
        "nothing may follow <success/> before the peer's restart header",
    );
    let (_, _) = p.open(REMOTE, LOCAL);
    let m = p.expect_el("alice's message after our restarted header", |e| {
        e.name == "message"
    });
    assert_eq!(m.attr("id"), Some("early"), "{}", p.transcript());
}

// ---- xmppd as Initiating Server --------------------------------------------------------------

/// A server routed to a listener playing b.test, with alice@a.test online; `extra_domains`
/// are served too.
struct Out {
    server: Server,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    alice: User,
    client: Client,
}

fn out_setup(extra: &[&str]) -> Out {
    out_setup_trusting(extra, false)
}

/// [`out_setup`]; with `trust`, xmppd trusts the test CA (`--s2s-ca`), so the peer's
/// certificate validates for b.test.
fn out_setup_trusting(extra: &[&str], trust: bool) -> Out {
    let (listener, port) = listen();
    let route = format!("{REMOTE}=127.0.0.1:{port}");
    let ca = Ca::new(TEST_CA);
    let tls = server_tls(&ca.leaf(REMOTE));
    let ca_arg = ca.pem_arg();
    let mut args = vec!["--s2s-route", &route];
    if trust {
        args.extend(["--s2s-ca", &ca_arg]);
    }
    args.extend_from_slice(extra);
    let server = server(&args);
    let alice = User::new(&server, "alice");
    let client = alice.online(&server, "r");
    Out {
        server,
        listener,
        tls,
        alice,
        client,
    }
}

impl Out {
    /// Alice sends chat message `id` to x@b.test/r.
    fn alice_sends(&mut self, id: &str, text: &str) {
        self.client.send(&format!(
            "<message to='x@{REMOTE}/r' type='chat' id='{id}'><body>{text}</body></message>"
        ));
    }

    /// Accept xmppd's next connection to b.test and negotiate STARTTLS as b.test; the TLS
    /// stream gets id `id` and `features` (the header declares `xmlns:db` if `declare_db`).
    fn accept(&self, id: &str, features: &str, declare_db: bool) -> (Peer, StreamHeader) {
        let s = accept_within(&self.listener, WAIT)
            .unwrap_or_else(|| panic!("xmppd did not connect to {REMOTE} within {WAIT:?}"));
        let mut p = Peer::new(&format!("{LOCAL} → {REMOTE} (xmppd's outgoing stream)"), s);
        p.answer_header(REMOTE, &format!("{id}-pre"), STARTTLS_REQUIRED, declare_db);
        p.accept_starttls(self.tls.clone());
        let h = p.answer_header(REMOTE, id, features, declare_db);
        (p, h)
    }

    /// Alice's message `m1` opens xmppd's stream; the peer offers dialback and bidi; xmppd
    /// sends `<bidi/>` and `<db:result/>`; the peer answers valid; the message arrives.
    fn bidi_dialback_up(&mut self) -> Peer {
        self.alice_sends("m1", "opens the stream");
        let features = format!("{DIALBACK_FEATURE}{BIDI_FEATURE}");
        let (mut p, _) = self.accept("out-1", &features, true);
        p.expect_el(
            "<bidi xmlns='urn:xmpp:bidi'/> before <db:result/> (XEP-0288 §2: the peer offered \
             bidi)",
            |e| e.is("bidi", NS_BIDI),
        );
        let r = p.expect_el("xmppd's <db:result/>", |e| e.is("result", NS_DB));
        assert_db(&r, "result", LOCAL, REMOTE, None, &p.transcript());
        p.send(&format!(
            "<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>"
        ));
        p.expect_el("alice's queued message m1", |e| {
            e.name == "message" && e.attr("id") == Some("m1")
        });
        p
    }

    /// No further connection to b.test was attempted.
    fn assert_no_new_connection(&self, why: &str) {
        assert!(
            accept_within(&self.listener, Duration::from_millis(300)).is_none(),
            "{why}: xmppd opened another TCP connection to {REMOTE}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A. XEP-0288, xmppd as Receiving Server
// ---------------------------------------------------------------------------------------------

/// XEP-0288 §2 (A1): with TLS required (the default), the features of the stream after
/// STARTTLS, not yet authenticated, include `<bidi xmlns='urn:xmpp:features:bidi'/>`.
#[test]
fn xep0288_receiving_advertises_bidi_feature_after_starttls() {
    let s = server(&[]);
    let mut p = Peer::connect("b.test → a.test", s2s_addr(&s));
    p.open(REMOTE, LOCAL);
    p.starttls_client(client_tls(&s, None), LOCAL);
    let (_, f) = p.open(REMOTE, LOCAL);
    assert!(
        has_bidi_feature(&f),
        "XEP-0288 §2: expected {BIDI_FEATURE} in the features after STARTTLS, got {f:?}\n{}",
        p.transcript()
    );
}

/// XEP-0288 §2 (A1): with `--s2s-allow-plaintext`, `<bidi/>` is offered before and after
/// STARTTLS.
#[test]
fn xep0288_receiving_advertises_bidi_feature_before_and_after_starttls_when_plaintext_allowed() {
    let s = server(&["--s2s-allow-plaintext"]);
    let mut p = Peer::connect("b.test → a.test", s2s_addr(&s));
    let (_, f) = p.open(REMOTE, LOCAL);
    assert!(
        has_bidi_feature(&f),
        "XEP-0288 §2: expected {BIDI_FEATURE} before STARTTLS (--s2s-allow-plaintext), got \
         {f:?}\n{}",
        p.transcript()
    );
    p.starttls_client(client_tls(&s, None), LOCAL);
    let (_, f) = p.open(REMOTE, LOCAL);
    assert!(
        has_bidi_feature(&f),
        "XEP-0288 §2: expected {BIDI_FEATURE} after STARTTLS, got {f:?}\n{}",
        p.transcript()
    );
}

/// A1: `--s2s-no-bidi`: no `<bidi/>` feature, neither before nor after STARTTLS.
#[test]
fn xep0288_receiving_no_bidi_feature_with_s2s_no_bidi() {
    let s = server(&["--s2s-no-bidi", "--s2s-allow-plaintext"]);
    let mut p = Peer::connect("b.test → a.test", s2s_addr(&s));
    let (_, f) = p.open(REMOTE, LOCAL);
    assert!(
        !has_bidi_feature(&f),
        "--s2s-no-bidi: bidi offered before STARTTLS: {f:?}"
    );
    p.starttls_client(client_tls(&s, None), LOCAL);
    let (_, f) = p.open(REMOTE, LOCAL);
    assert!(
        !has_bidi_feature(&f),
        "--s2s-no-bidi: bidi offered after STARTTLS: {f:?}"
    );
    assert!(
        f.child("dialback", NS_DB_FEATURES).is_some(),
        "dialback still offered: {f:?}"
    );
}

/// XEP-0288 §2 (A2): `<bidi xmlns='urn:xmpp:bidi'/>` after TLS, before authenticating, gets
/// no answer and the stream goes on (a `db:verify` after it is answered).
#[test]
fn xep0288_receiving_bidi_request_after_tls_gets_no_answer() {
    let s = server(&[]);
    let mut p = Peer::connect("b.test → a.test", s2s_addr(&s));
    p.open(REMOTE, LOCAL);
    p.starttls_client(client_tls(&s, None), LOCAL);
    p.open(REMOTE, LOCAL);
    p.send(BIDI);
    p.expect_silence(
        QUIET,
        "XEP-0288 §2: <bidi xmlns='urn:xmpp:bidi'/> is not answered",
    );
    p.send(&format!(
        "<db:verify from='{REMOTE}' to='{LOCAL}' id='x1'>wrongkey</db:verify>"
    ));
    let v = p.expect_el("the db:verify answer (the stream is still open)", |e| {
        e.is("verify", NS_DB)
    });
    assert_db(
        &v,
        "verify",
        LOCAL,
        REMOTE,
        Some("invalid"),
        &p.transcript(),
    );
}

/// A2: with `--s2s-no-bidi`, `<bidi/>` is an unexpected element: `unsupported-stanza-type`.
#[test]
fn xep0288_receiving_bidi_request_with_s2s_no_bidi_is_unsupported_stanza_type() {
    let s = server(&["--s2s-no-bidi"]);
    let mut p = Peer::connect("b.test → a.test", s2s_addr(&s));
    p.open(REMOTE, LOCAL);
    p.starttls_client(client_tls(&s, None), LOCAL);
    p.open(REMOTE, LOCAL);
    p.send(BIDI);
    p.expect_stream_error(
        "unsupported-stanza-type",
        "<bidi/> with XEP-0288 turned off",
    );
}

/// XEP-0288 §2 (A2): STARTTLS must complete before bidi: `<bidi/>` in the clear while TLS is
/// required is a `policy-violation`.
#[test]
fn xep0288_receiving_bidi_request_before_required_tls_is_policy_violation() {
    let s = server(&[]);
    let mut p = Peer::connect("b.test → a.test (clear)", s2s_addr(&s));
    p.open(REMOTE, LOCAL);
    p.send(BIDI);
    p.expect_stream_error(
        "policy-violation",
        "<bidi/> before the required STARTTLS (XEP-0288 §2)",
    );
}

/// XEP-0288 §2 (A3): b.test asked for bidi and authenticated by SASL EXTERNAL; xmppd has no
/// outgoing stream to b.test (its route is a closed port): alice's message to x@b.test goes
/// out on the incoming connection, in `jabber:server` with `from`/`to` set.
#[test]
fn xep0288_receiving_sasl_external_bidi_sends_local_stanzas_on_incoming_stream() {
    let mut x = bidi_in(true, &[]);
    x.alice_sends("bidi1", "over bidi");
    let m = x.expect_on_incoming(
        "bidi1",
        "XEP-0288 (A3): the stream is bidirectional and xmppd has no outgoing stream to b.test",
    );
    let t = x.peer.transcript();
    assert_eq!(m.ns, NS_SERVER, "{t}");
    assert_eq!(m.attr("from"), Some(x.alice.full("r").as_str()), "{t}");
    assert_eq!(m.attr("to"), Some("x@b.test/r"), "{t}");
    assert_eq!(body(&m, NS_SERVER).as_deref(), Some("over bidi"), "{t}");
}

/// XEP-0288 §4 (A3): an iq the bidi peer sends to a.test is answered on the same incoming
/// connection (xmppd has no outgoing stream to b.test).
#[test]
fn xep0288_receiving_bidi_answers_peer_iq_on_incoming_stream() {
    let mut x = bidi_in(true, &[]);
    x.peer.send(&format!(
        "<iq from='juliet@{REMOTE}/balcony' to='{LOCAL}' type='get' id='ping1'>\
         <ping xmlns='{NS_PING}'/></iq>"
    ));
    let r = x.peer.expect_el(
        "the ping result on the incoming bidi connection (XEP-0288 §4 example)",
        |e| e.name == "iq" && e.attr("id") == Some("ping1"),
    );
    let t = x.peer.transcript();
    assert_eq!(r.attr("type"), Some("result"), "{t}");
    assert_eq!(r.attr("from"), Some(LOCAL), "{t}");
    assert_eq!(r.attr("to"), Some("juliet@b.test/balcony"), "{t}");
}

/// XEP-0288 §2 (A3) with dialback: b.test asks for bidi, then authenticates b.test → a.test
/// by dialback (the fake authoritative server answers xmppd's db:verify, and never answers
/// xmppd's own db:result, so xmppd's outgoing stream to b.test is not established): alice's
/// message goes out on the incoming connection.
#[test]
fn xep0288_receiving_dialback_bidi_sends_local_stanzas_on_incoming_stream() {
    let ca = Ca::new(TEST_CA);
    let auth = Authoritative::start(REMOTE, server_tls(&ca.leaf(REMOTE)), "goodkey");
    let route = auth.route(REMOTE);
    let s = server(&["--s2s-route", &route]);
    let alice = User::new(&s, "alice");
    let mut c = alice.online(&s, "r");
    let mut p = Peer::connect("b.test → a.test (dialback)", s2s_addr(&s));
    p.open(REMOTE, LOCAL);
    p.starttls_client(client_tls(&s, None), LOCAL);
    let (_, f) = p.open(REMOTE, LOCAL);
    assert!(f.child("dialback", NS_DB_FEATURES).is_some(), "{f:?}");
    p.send(BIDI);
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL}'>goodkey</db:result>"
    ));
    let r = p.expect_el(
        "<db:result type='valid'/> (after <bidi/>, which gets no answer)",
        |e| e.is("result", NS_DB),
    );
    assert_db(&r, "result", LOCAL, REMOTE, Some("valid"), &p.transcript());
    c.send("<message to='x@b.test/r' type='chat' id='bidi-db1'><body>via db</body></message>");
    match p.try_recv(WAIT) {
        Some(Ev::El(m, raw)) if m.name == "message" => {
            assert_eq!(m.attr("id"), Some("bidi-db1"), "{raw}");
            assert_eq!(m.ns, NS_SERVER, "{raw}");
            assert_eq!(m.attr("from"), Some(alice.full("r").as_str()), "{raw}");
            assert_eq!(m.attr("to"), Some("x@b.test/r"), "{raw}");
        }
        other => panic!(
            "XEP-0288 (A3, dialback): expected alice's message on the incoming bidi \
             connection, got {other:?}; the fake authoritative server saw {:?}\n{}",
            auth.seen(),
            p.transcript()
        ),
    }
}

/// CORE-S2S-08 (A4): without `<bidi/>` from the peer, nothing goes out on its incoming
/// stream: alice's message bounces (the route to b.test is closed).
#[test]
fn xep0288_receiving_without_bidi_request_stanzas_not_sent_on_incoming_stream() {
    let mut x = bidi_in(false, &[]);
    x.alice_sends("nobidi1", "must bounce");
    let b = expect_bounce(
        &mut x.client,
        "nobidi1",
        "no bidi and the route to b.test is closed",
    );
    let cond = stanza_error(&b).map(|(c, _, _)| c).unwrap_or_default();
    assert!(
        cond == "remote-server-not-found" || cond == "remote-server-timeout",
        "{b:?}"
    );
    x.peer.expect_silence(
        Duration::from_millis(500),
        "CORE-S2S-08: nothing on the incoming stream without bidi",
    );
}

/// A5: once the bidi connection is closed, a later stanza to b.test no longer goes there:
/// it bounces (xmppd tries its own stream; the route is closed).
#[test]
fn xep0288_receiving_bidi_closed_connection_no_longer_used() {
    let mut x = bidi_in(true, &[]);
    x.alice_sends("before-close", "first");
    x.expect_on_incoming("before-close", "XEP-0288 (A5, before the close)");
    x.peer.send("</stream:stream>");
    match x.peer.recv("xmppd's </stream:stream>") {
        Ev::Close => {}
        other => panic!(
            "expected </stream:stream>, got {other:?}\n{}",
            x.peer.transcript()
        ),
    }
    x.peer.expect_end();
    x.alice_sends("after-close", "second");
    let b = expect_bounce(
        &mut x.client,
        "after-close",
        "the bidi connection is closed and the route to b.test is a closed port",
    );
    let cond = stanza_error(&b).map(|(c, _, _)| c).unwrap_or_default();
    assert!(
        cond == "remote-server-not-found" || cond == "remote-server-timeout",
        "{b:?}"
    );
}

/// A6: on a bidi incoming stream the peer's stanzas are processed as before: a message from
/// x@b.test to alice is delivered.
#[test]
fn xep0288_receiving_bidi_peer_stanzas_still_delivered() {
    let mut x = bidi_in(true, &[]);
    x.peer.send(&format!(
        "<message from='x@{REMOTE}/r' to='{}' type='chat' id='in1'><body>to alice</body></message>",
        x.alice.full("r")
    ));
    let (m, _) = x
        .client
        .recv_until("the message b.test sent on its bidi stream (A6)", |e| {
            e.name == "message" && e.attr("id") == Some("in1")
        });
    assert_eq!(m.attr("from"), Some("x@b.test/r"), "{m:?}");
    assert_eq!(body(&m, NS_CLIENT).as_deref(), Some("to alice"), "{m:?}");
}

// ---------------------------------------------------------------------------------------------
// B. XEP-0288, xmppd as Initiating Server
// ---------------------------------------------------------------------------------------------

/// XEP-0288 §2 (B1): the peer's features after TLS offer bidi and dialback: xmppd sends
/// `<bidi xmlns='urn:xmpp:bidi'/>` before its `<db:result/>`.
#[test]
fn xep0288_initiating_sends_bidi_before_dialback() {
    let mut o = out_setup(&[]);
    o.alice_sends("m1", "hello");
    let (mut p, _) = o.accept("out-1", &format!("{DIALBACK_FEATURE}{BIDI_FEATURE}"), true);
    p.expect_el(
        "<bidi xmlns='urn:xmpp:bidi'/> as xmppd's first element after the features \
         (XEP-0288 §2: before dialback)",
        |e| e.is("bidi", NS_BIDI),
    );
    let r = p.expect_el("xmppd's <db:result/> after <bidi/>", |e| {
        e.is("result", NS_DB)
    });
    assert_db(&r, "result", LOCAL, REMOTE, None, &p.transcript());
}

/// XEP-0288 §2 (B1): the peer offers bidi and SASL EXTERNAL: xmppd sends `<bidi/>` before
/// `<auth mechanism='EXTERNAL'>`.
#[test]
fn xep0288_initiating_sends_bidi_before_sasl_external() {
    let mut o = out_setup(&[]);
    o.alice_sends("m1", "hello");
    let (mut p, _) = o.accept("out-1", &format!("{EXTERNAL_FEATURE}{BIDI_FEATURE}"), true);
    p.expect_el(
        "<bidi xmlns='urn:xmpp:bidi'/> as xmppd's first element after the features \
         (XEP-0288 §2: before SASL)",
        |e| e.is("bidi", NS_BIDI),
    );
    let a = p.expect_el("xmppd's <auth/> after <bidi/>", |e| e.is("auth", NS_SASL));
    assert_eq!(a.attr("mechanism"), Some("EXTERNAL"), "{a:?}");
}

/// B1 with `--s2s-no-dialback`: only a certificate may authenticate a peer, and b.test's
/// does not validate for xmppd (no `--s2s-ca`): xmppd does not ask for a bidirectional
/// stream, since it could not accept b.test's stanzas on it; `<auth/>` comes first.
#[test]
fn xep0288_initiating_no_bidi_when_peer_certificate_invalid_and_dialback_off() {
    let mut o = out_setup(&["--s2s-no-dialback"]);
    o.alice_sends("m1", "hello");
    let (mut p, _) = o.accept("out-1", &format!("{EXTERNAL_FEATURE}{BIDI_FEATURE}"), true);
    let a = p.expect_el(
        "xmppd's <auth/> first (no <bidi/>: b.test's certificate does not validate and \
         dialback is off)",
        |e| e.is("auth", NS_SASL) || e.is("bidi", NS_BIDI),
    );
    assert!(a.is("auth", NS_SASL), "{a:?}\n{}", p.transcript());
}

/// B1 with `--s2s-no-dialback` and b.test's certificate valid (`--s2s-ca`): `<bidi/>` goes
/// out before `<auth/>`.
#[test]
fn xep0288_initiating_bidi_when_peer_certificate_valid_and_dialback_off() {
    let mut o = out_setup_trusting(&["--s2s-no-dialback"], true);
    o.alice_sends("m1", "hello");
    let (mut p, _) = o.accept("out-1", &format!("{EXTERNAL_FEATURE}{BIDI_FEATURE}"), true);
    p.expect_el("<bidi/> before <auth/>", |e| e.is("bidi", NS_BIDI));
    p.expect_el("xmppd's <auth/>", |e| e.is("auth", NS_SASL));
}

/// B1: without the bidi feature, xmppd sends no `<bidi/>`: its first element is the
/// `<db:result/>`, and the stream works as before.
#[test]
fn xep0288_initiating_sends_no_bidi_without_feature() {
    let mut o = out_setup(&[]);
    o.alice_sends("m1", "hello");
    let (mut p, _) = o.accept("out-1", DIALBACK_FEATURE, true);
    let r = p.expect_el(
        "xmppd's <db:result/> first (no <bidi/>: the peer did not offer it)",
        |e| e.is("result", NS_DB),
    );
    assert_db(&r, "result", LOCAL, REMOTE, None, &p.transcript());
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>"
    ));
    p.expect_el("alice's queued message", |e| e.name == "message");
    assert!(
        !p.got.contains(NS_BIDI),
        "no bidi without the feature\n{}",
        p.transcript()
    );
}

/// B1: with `--s2s-no-bidi`, xmppd sends no `<bidi/>` even when the peer offers it.
#[test]
fn xep0288_initiating_sends_no_bidi_with_s2s_no_bidi() {
    let mut o = out_setup(&["--s2s-no-bidi"]);
    o.alice_sends("m1", "hello");
    let (mut p, _) = o.accept("out-1", &format!("{DIALBACK_FEATURE}{BIDI_FEATURE}"), true);
    let r = p.expect_el(
        "xmppd's <db:result/> first (no <bidi/> with --s2s-no-bidi)",
        |e| e.is("result", NS_DB),
    );
    assert_db(&r, "result", LOCAL, REMOTE, None, &p.transcript());
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>"
    ));
    p.expect_el("alice's queued message", |e| e.name == "message");
    assert!(
        !p.got.contains(NS_BIDI),
        "no bidi with --s2s-no-bidi\n{}",
        p.transcript()
    );
}

/// XEP-0288 §2 (B2): after dialback on a bidi stream, the peer sends a message from b.test to
/// alice on xmppd's own outgoing connection: it is delivered.
#[test]
fn xep0288_initiating_bidi_dialback_delivers_peer_stanzas_to_local_user() {
    let mut o = out_setup(&[]);
    let mut p = o.bidi_dialback_up();
    p.send(&format!(
        "<message from='x@{REMOTE}/r' to='{}' type='chat' id='back1'><body>the other way</body></message>",
        o.alice.full("r")
    ));
    let (m, _) = o.client.recv_until(
        "the message b.test sent on xmppd's outgoing bidi stream (XEP-0288, B2)",
        |e| e.name == "message" && e.attr("id") == Some("back1"),
    );
    assert_eq!(m.attr("from"), Some("x@b.test/r"), "{m:?}");
    assert_eq!(
        body(&m, NS_CLIENT).as_deref(),
        Some("the other way"),
        "{m:?}"
    );
}

/// XEP-0288 §4 (B2): a ping from b.test to a.test on xmppd's bidi outgoing stream is
/// answered, on that same connection (the only stream for the pair), and no new connection is
/// opened.
#[test]
fn xep0288_initiating_bidi_answers_peer_iq_on_same_connection() {
    let mut o = out_setup(&[]);
    let mut p = o.bidi_dialback_up();
    p.send(&format!(
        "<iq from='juliet@{REMOTE}/balcony' to='{LOCAL}' type='get' id='ping1'>\
         <ping xmlns='{NS_PING}'/></iq>"
    ));
    let r = p.expect_el(
        "the ping result on the same (bidi) connection (XEP-0288, B2)",
        |e| e.name == "iq" && e.attr("id") == Some("ping1"),
    );
    let t = p.transcript();
    assert_eq!(r.attr("type"), Some("result"), "{t}");
    assert_eq!(r.attr("from"), Some(LOCAL), "{t}");
    assert_eq!(r.attr("to"), Some("juliet@b.test/balcony"), "{t}");
    o.assert_no_new_connection("the answer must use the bidi stream");
}

/// XEP-0288 §2 (B2): bidi with SASL EXTERNAL: after `<success/>` and the restarted stream,
/// the peer's message to alice on xmppd's outgoing connection is delivered.
#[test]
fn xep0288_initiating_bidi_sasl_external_delivers_peer_stanzas_to_local_user() {
    let mut o = out_setup(&[]);
    o.alice_sends("m1", "opens the stream");
    let (mut p, _) = o.accept("out-1", &format!("{EXTERNAL_FEATURE}{BIDI_FEATURE}"), true);
    p.expect_el(
        "<bidi xmlns='urn:xmpp:bidi'/> before <auth/> (XEP-0288 §2)",
        |e| e.is("bidi", NS_BIDI),
    );
    p.expect_el("xmppd's <auth mechanism='EXTERNAL'/>", |e| {
        e.is("auth", NS_SASL)
    });
    p.send(&format!("<success xmlns='{NS_SASL}'/>"));
    p.framer.reset();
    let h = p.answer_header(REMOTE, "out-2", "", true);
    assert_eq!(h.from.as_deref(), Some(LOCAL), "{}", p.transcript());
    p.expect_el("alice's queued message m1", |e| {
        e.name == "message" && e.attr("id") == Some("m1")
    });
    p.send(&format!(
        "<message from='x@{REMOTE}/r' to='{}' type='chat' id='back1'><body>over sasl bidi</body></message>",
        o.alice.full("r")
    ));
    let (m, _) = o.client.recv_until(
        "the message b.test sent on xmppd's outgoing bidi stream after SASL (B2)",
        |e| e.name == "message" && e.attr("id") == Some("back1"),
    );
    assert_eq!(m.attr("from"), Some("x@b.test/r"), "{m:?}");
}

/// B3, CORE-S2S-06: on xmppd's bidi outgoing stream, a stanza from a domain that is not
/// authenticated (evil.test) closes the stream with `invalid-from` and is not delivered.
#[test]
fn xep0288_initiating_bidi_unauthenticated_from_is_invalid_from() {
    let mut o = out_setup(&[]);
    let mut p = o.bidi_dialback_up();
    p.send(&format!(
        "<message from='mallory@evil.test/x' to='{}' type='chat' id='spoof1'><body>spoof</body></message>",
        o.alice.full("r")
    ));
    p.expect_stream_error(
        "invalid-from",
        "B3/CORE-S2S-06: from a domain not authenticated on the bidi stream",
    );
    let got = o.client.collect_for(Duration::from_millis(500));
    assert!(
        !got.iter().any(|e| e.attr("id") == Some("spoof1")),
        "delivered: {got:?}"
    );
}

/// B3, CORE-S2S-07: on xmppd's bidi outgoing stream, a stanza to a domain that is not ours
/// closes the stream with `host-unknown`.
#[test]
fn xep0288_initiating_bidi_to_unhosted_domain_is_host_unknown() {
    let mut o = out_setup(&[]);
    let mut p = o.bidi_dialback_up();
    p.send(&format!(
        "<message from='x@{REMOTE}/r' to='y@other.test' type='chat' id='m2'><body>x</body></message>"
    ));
    p.expect_stream_error(
        "host-unknown",
        "B3/CORE-S2S-07: to a domain xmppd does not serve",
    );
}

/// B3, CORE-S2S-07: xmppd serves a.test and a2.test; the bidi stream authenticated only
/// (a.test, b.test): a stanza to a2.test gets `host-unknown` and is not delivered.
#[test]
fn xep0288_initiating_bidi_to_hosted_but_unauthenticated_domain_is_host_unknown() {
    let mut o = out_setup(&["--domain", LOCAL2]);
    let (carol, pw) = user_of(&o.server, "carol", LOCAL2);
    let mut cc = online_on(&o.server, &carol, &pw, LOCAL2, "r");
    let mut p = o.bidi_dialback_up();
    p.send(&format!(
        "<message from='x@{REMOTE}/r' to='{carol}@{LOCAL2}/r' type='chat' id='m2'><body>x</body></message>"
    ));
    p.expect_stream_error(
        "host-unknown",
        "B3/CORE-S2S-07: to a2.test, not the authenticated a.test",
    );
    let got = cc.collect_for(Duration::from_millis(500));
    assert!(
        !got.iter().any(|e| e.attr("id") == Some("m2")),
        "delivered: {got:?}"
    );
}

/// B3, CORE-S2S-05: on xmppd's bidi outgoing stream, a stanza without `from` closes the
/// stream with `improper-addressing`.
#[test]
fn xep0288_initiating_bidi_stanza_without_from_is_improper_addressing() {
    let mut o = out_setup(&[]);
    let mut p = o.bidi_dialback_up();
    p.send(&format!(
        "<message to='{}' type='chat' id='m2'><body>x</body></message>",
        o.alice.full("r")
    ));
    p.expect_stream_error(
        "improper-addressing",
        "B3/CORE-S2S-05: a stanza without from",
    );
}

/// B3, CORE-S2S-05: on xmppd's bidi outgoing stream, a stanza without `to` closes the stream
/// with `improper-addressing`.
#[test]
fn xep0288_initiating_bidi_stanza_without_to_is_improper_addressing() {
    let mut o = out_setup(&[]);
    let mut p = o.bidi_dialback_up();
    p.send(&format!(
        "<iq from='x@{REMOTE}/r' type='get' id='q1'><ping xmlns='{NS_PING}'/></iq>"
    ));
    p.expect_stream_error("improper-addressing", "B3/CORE-S2S-05: a stanza without to");
}

/// B3, XEP-0288 §2: on a bidi outgoing stream, a stanza before the peer's `type='valid'`
/// closes the stream with `not-authorized` and is not delivered.
#[test]
fn xep0288_initiating_bidi_stanza_before_authentication_is_not_authorized() {
    let mut o = out_setup(&[]);
    o.alice_sends("m1", "opens the stream");
    let (mut p, _) = o.accept("out-1", &format!("{DIALBACK_FEATURE}{BIDI_FEATURE}"), true);
    p.expect_el("<bidi xmlns='urn:xmpp:bidi'/>", |e| e.is("bidi", NS_BIDI));
    p.expect_el("xmppd's <db:result/>", |e| e.is("result", NS_DB));
    p.send(&format!(
        "<message from='x@{REMOTE}/r' to='{}' type='chat' id='early'><body>early</body></message>",
        o.alice.full("r")
    ));
    p.expect_stream_error(
        "not-authorized",
        "B3: a stanza on the bidi stream before dialback completed",
    );
    let got = o.client.collect_for(Duration::from_millis(500));
    assert!(
        !got.iter().any(|e| e.attr("id") == Some("early")),
        "delivered: {got:?}"
    );
}

/// B4 (CORE-S2S-08, to contrast with B3): without bidi, what the peer sends on xmppd's
/// outgoing stream is ignored, not a stream error: a spoofed stanza neither closes the
/// stream nor is delivered, and alice's next message still goes out on it.
#[test]
fn xep0288_initiating_without_bidi_peer_stanzas_ignored_not_stream_error() {
    let mut o = out_setup(&[]);
    o.alice_sends("m1", "opens the stream");
    let (mut p, _) = o.accept("out-1", DIALBACK_FEATURE, true);
    p.expect_el("xmppd's <db:result/>", |e| e.is("result", NS_DB));
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>"
    ));
    p.expect_el("alice's queued message m1", |e| e.name == "message");
    p.send(&format!(
        "<message from='mallory@evil.test/x' to='{}' type='chat' id='spoof1'><body>x</body></message>",
        o.alice.full("r")
    ));
    p.expect_silence(
        QUIET,
        "CORE-S2S-08: without bidi the peer's stanza is ignored",
    );
    let got = o.client.collect_for(Duration::from_millis(200));
    assert!(
        !got.iter().any(|e| e.attr("id") == Some("spoof1")),
        "delivered: {got:?}"
    );
    o.alice_sends("m2", "still open");
    p.expect_el("alice's second message on the same stream", |e| {
        e.name == "message" && e.attr("id") == Some("m2")
    });
}

// ---------------------------------------------------------------------------------------------
// C. XEP-0220 §2.6 sender multiplexing, xmppd as Initiating Server
// ---------------------------------------------------------------------------------------------

/// xmppd serving a.test and a2.test, routed to b.test; alice@a.test and carol@a2.test online.
struct Mux {
    o: Out,
    carol: String,
    carol_client: Client,
}

fn mux_setup(extra: &[&str]) -> Mux {
    let mut args = vec!["--domain", LOCAL2];
    args.extend_from_slice(extra);
    let o = out_setup(&args);
    let (carol, pw) = user_of(&o.server, "carol", LOCAL2);
    let carol_client = online_on(&o.server, &carol, &pw, LOCAL2, "r");
    Mux {
        o,
        carol: format!("{carol}@{LOCAL2}"),
        carol_client,
    }
}

impl Mux {
    /// Alice's message opens the stream (features `features`, stream id `id`); xmppd's
    /// db:result for (a.test, b.test) carries the XEP-0185 key; valid; the message arrives.
    fn first_pair_up(&mut self, id: &str, features: &str) -> Peer {
        self.o.alice_sends("a1", "from a.test");
        let (mut p, _) = self.o.accept(id, features, true);
        let r = p.expect_el("xmppd's <db:result/> for (a.test, b.test)", |e| {
            e.is("result", NS_DB)
        });
        assert_db(&r, "result", LOCAL, REMOTE, None, &p.transcript());
        let secret = dialback_secret(&self.o.server);
        assert_eq!(
            r.text().trim(),
            db_key(&secret, REMOTE, LOCAL, id),
            "DB-KEY-01\n{}",
            p.transcript()
        );
        p.send(&format!(
            "<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>"
        ));
        let m = p.expect_el("alice's message a1", |e| e.name == "message");
        assert_eq!(m.attr("id"), Some("a1"), "{}", p.transcript());
        p
    }

    /// Carol sends chat message `id` to x@b.test/r.
    fn carol_sends(&mut self, id: &str) {
        self.carol_client.send(&format!(
            "<message to='x@{REMOTE}/r' type='chat' id='{id}'><body>from a2.test</body></message>"
        ));
    }

    /// Waits for xmppd's `<db:result from='a2.test' to='b.test'>` on `p`, failing clearly if
    /// xmppd opens a second TCP connection instead.
    fn expect_multiplexed_result(&mut self, p: &mut Peer, id: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            match p.try_recv(Duration::from_millis(100)) {
                Some(Ev::El(e, _)) if e.is("result", NS_DB) => {
                    assert_db(&e, "result", LOCAL2, REMOTE, None, &p.transcript());
                    let secret = dialback_secret(&self.o.server);
                    assert_eq!(
                        e.text().trim(),
                        db_key(&secret, REMOTE, LOCAL2, id),
                        "DB-KEY-01: the key for (a2.test, b.test) on this stream's id\n{}",
                        p.transcript()
                    );
                    return e;
                }
                Some(other) => panic!(
                    "XEP-0220 §2.6: expected <db:result from='a2.test' to='b.test'>KEY on the \
                     existing stream, got {other:?}\n{}",
                    p.transcript()
                ),
                None => {}
            }
            if let Some(s) = accept_within(&self.o.listener, Duration::ZERO) {
                let mut second = Peer::new("a2.test → b.test (second connection)", s);
                let h = second.recv_header("the second connection's header");
                panic!(
                    "XEP-0220 §2.6 (sender multiplexing): expected <db:result from='a2.test' \
                     to='b.test'> on the existing stream, but xmppd opened a second TCP \
                     connection (header from={:?} to={:?})\n{}",
                    h.from,
                    h.to,
                    p.transcript()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "XEP-0220 §2.6: no <db:result from='a2.test' to='b.test'> on the existing \
                     stream and no new connection within {WAIT:?}\n{}",
                    p.transcript()
                );
            }
        }
    }
}

/// XEP-0220 §2.6 (C1, C2): the stream a.test → b.test is up; carol@a2.test writes to b.test:
/// xmppd authenticates a2.test on the same TCP connection (`db:result from='a2.test'` with
/// the XEP-0185 key for that stream's id), and after `valid` carol's message arrives there; no
/// second connection is opened.
#[test]
fn xep0220_2_6_sender_multiplexing_reuses_stream() {
    let mut x = mux_setup(&[]);
    let mut p = x.first_pair_up("mux-1", DIALBACK_FEATURE);
    x.carol_sends("c1");
    x.expect_multiplexed_result(&mut p, "mux-1");
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL2}' type='valid'/>"
    ));
    let m = p.expect_el("carol's message on the multiplexed stream", |e| {
        e.name == "message"
    });
    let t = p.transcript();
    assert_eq!(m.attr("id"), Some("c1"), "{t}");
    assert_eq!(m.ns, NS_SERVER, "{t}");
    assert_eq!(
        m.attr("from"),
        Some(format!("{}/r", x.carol).as_str()),
        "{t}"
    );
    assert_eq!(m.attr("to"), Some("x@b.test/r"), "{t}");
    x.o.assert_no_new_connection("XEP-0220 §2.6: one TCP connection for both sender domains");
    // Both pairs keep flowing on it.
    x.o.alice_sends("a2", "again from a.test");
    p.expect_el("alice's second message on the same stream", |e| {
        e.name == "message" && e.attr("id") == Some("a2")
    });
}

/// XEP-0220 §2.6 (C2): the dialback feature without `<errors/>` is enough for sender
/// multiplexing.
#[test]
fn xep0220_2_6_sender_multiplexing_with_dialback_feature_without_errors() {
    let mut x = mux_setup(&[]);
    let mut p = x.first_pair_up("mux-1", DIALBACK_FEATURE_NO_ERRORS);
    x.carol_sends("c1");
    x.expect_multiplexed_result(&mut p, "mux-1");
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL2}' type='valid'/>"
    ));
    p.expect_el("carol's message on the multiplexed stream", |e| {
        e.name == "message" && e.attr("id") == Some("c1")
    });
    x.o.assert_no_new_connection("XEP-0220 §2.6: one TCP connection for both sender domains");
}

/// XEP-0220 §2.6 (C3), DB-OUT-01: the peer answers the multiplexed a2.test request
/// `type='invalid'`: carol's message bounces (internal-server-error), and the stream stays up
/// for a.test.
#[test]
fn xep0220_2_6_multiplexed_sender_invalid_bounces_and_stream_stays() {
    let mut x = mux_setup(&[]);
    let mut p = x.first_pair_up("mux-1", DIALBACK_FEATURE);
    x.carol_sends("c1");
    x.expect_multiplexed_result(&mut p, "mux-1");
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL2}' type='invalid'/>"
    ));
    let b = expect_bounce(
        &mut x.carol_client,
        "c1",
        "the multiplexed a2.test pair was refused",
    );
    assert_eq!(
        stanza_error(&b).map(|(c, _, _)| c).as_deref(),
        Some("internal-server-error"),
        "DB-OUT-01: invalid bounces with internal-server-error: {b:?}"
    );
    x.o.alice_sends("a2", "a.test still flows");
    p.expect_el(
        "alice's next message on the same stream (refusing a2.test must not close it)",
        |e| e.name == "message" && e.attr("id") == Some("a2"),
    );
}

/// XEP-0220 §2.6 (C3), DB-OUT-01: the peer answers the multiplexed a2.test request with a
/// dialback error: carol's message bounces (remote-server-timeout), and the stream stays up
/// for a.test.
#[test]
fn xep0220_2_6_multiplexed_sender_error_bounces_and_stream_stays() {
    let mut x = mux_setup(&[]);
    let mut p = x.first_pair_up("mux-1", DIALBACK_FEATURE);
    x.carol_sends("c1");
    x.expect_multiplexed_result(&mut p, "mux-1");
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL2}' type='error'><error type='cancel'>\
         <item-not-found xmlns='{NS_STANZAS}'/></error></db:result>"
    ));
    let b = expect_bounce(
        &mut x.carol_client,
        "c1",
        "the multiplexed a2.test pair got a dialback error",
    );
    assert_eq!(
        stanza_error(&b).map(|(c, _, _)| c).as_deref(),
        Some("remote-server-timeout"),
        "DB-OUT-01: a dialback error bounces with remote-server-timeout: {b:?}"
    );
    x.o.alice_sends("a2", "a.test still flows");
    p.expect_el(
        "alice's next message on the same stream (the a2.test error must not close it)",
        |e| e.name == "message" && e.attr("id") == Some("a2"),
    );
}

/// XEP-0220 §2.6 (C4): the peer declared `xmlns:db` in its header but offered no dialback
/// feature: no multiplexing, a2.test gets its own TCP connection (and nothing for a2.test is
/// sent on the first).
#[test]
fn xep0220_2_6_no_multiplexing_without_dialback_feature() {
    let mut x = mux_setup(&[]);
    let mut p = x.first_pair_up("mux-1", "");
    x.carol_sends("c1");
    expect_own_connection_for_a2(&x, &mut p, "mux-2-pre");
}

/// Waits for xmppd to open a second TCP connection for a2.test (header from a2.test to
/// b.test), failing if anything for a2.test comes on `p` first.
fn expect_own_connection_for_a2(x: &Mux, p: &mut Peer, id: &str) -> Peer {
    let deadline = Instant::now() + WAIT;
    let second = loop {
        if let Some(s) = accept_within(&x.o.listener, Duration::ZERO) {
            break s;
        }
        if let Some(ev) = p.try_recv(Duration::from_millis(100)) {
            panic!(
                "XEP-0220 §2.6: expected a connection of its own for a2.test, got {ev:?} on the \
                 first stream\n{}",
                p.transcript()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no second connection for a2.test within {WAIT:?}\n{}",
            p.transcript()
        );
    };
    let mut p2 = Peer::new("a2.test → b.test (second connection)", second);
    let h = p2.answer_header(REMOTE, id, STARTTLS_REQUIRED, true);
    assert_eq!(h.from.as_deref(), Some(LOCAL2), "{}", p2.transcript());
    assert_eq!(h.to.as_deref(), Some(REMOTE), "{}", p2.transcript());
    p2
}

/// XEP-0220 §2.5/§2.6: the peer refuses the multiplexed a2.test pair with
/// `resource-constraint` (it takes no more pairs on this stream): a2.test opens a connection
/// of its own instead of bouncing carol's message.
#[test]
fn xep0220_2_5_resource_constraint_on_multiplexed_sender_opens_own_connection() {
    let mut x = mux_setup(&[]);
    let mut p = x.first_pair_up("mux-1", DIALBACK_FEATURE);
    x.carol_sends("c1");
    x.expect_multiplexed_result(&mut p, "mux-1");
    p.send(&format!(
        "<db:result from='{REMOTE}' to='{LOCAL2}' type='error'><error type='wait'>\
         <resource-constraint xmlns='{NS_STANZAS}'/></error></db:result>"
    ));
    let _p2 = expect_own_connection_for_a2(&x, &mut p, "mux-2");
    let got = x.carol_client.collect_for(Duration::from_millis(300));
    assert!(
        !got.iter().any(|e| e.attr("type") == Some("error")),
        "carol's message must wait for the new connection, not bounce: {got:?}"
    );
}

/// XEP-0220 §2.6: a peer that never answers the multiplexed a2.test pair (it ignores
/// multiplexing): after the set-up timeout a2.test opens a connection of its own.
#[test]
fn xep0220_2_6_unanswered_multiplexed_sender_opens_own_connection() {
    let mut x = mux_setup(&["--s2s-connect-timeout", "2"]);
    let mut p = x.first_pair_up("mux-1", DIALBACK_FEATURE);
    x.carol_sends("c1");
    x.expect_multiplexed_result(&mut p, "mux-1");
    expect_own_connection_for_a2(&x, &mut p, "mux-2");
}

// ---------------------------------------------------------------------------------------------
// D. Sender multiplexing, xmppd as Receiving Server
// ---------------------------------------------------------------------------------------------

/// XEP-0220 §2.6 (D1): after SASL EXTERNAL, the restarted stream's features still offer
/// dialback, so the peer may authenticate more sender domains on it.
#[test]
fn xep0220_2_6_receiving_offers_dialback_after_sasl_external() {
    let ca = Ca::new(TEST_CA);
    let ca_arg = ca.pem_arg();
    let s = server(&["--s2s-ca", &ca_arg]);
    let (p, _, f) = incoming_external(&s, &ca, REMOTE, false);
    assert!(
        f.child("dialback", NS_DB_FEATURES).is_some(),
        "XEP-0220 §2.6 (D1): expected <dialback xmlns='{NS_DB_FEATURES}'> in the features after \
         SASL EXTERNAL, got {f:?}\n{}",
        p.transcript()
    );
}

/// XEP-0220 §2.6 (D2): b.test authenticated by SASL EXTERNAL adds b2.test on the same stream
/// by dialback; xmppd verifies it with b2.test's authoritative server (its db:verify carries
/// the restarted stream's id) and answers valid; b2.test's and b.test's stanzas are then
/// delivered, a third domain's is `invalid-from`.
#[test]
fn xep0220_2_6_receiving_sender_multiplexing_after_sasl_external() {
    let ca = Ca::new(TEST_CA);
    let ca_arg = ca.pem_arg();
    let auth2 = Authoritative::start("b2.test", server_tls(&ca.leaf("b2.test")), "key2");
    let route2 = auth2.route("b2.test");
    let route = format!("{REMOTE}=127.0.0.1:{}", closed_tcp_port());
    let s = server(&[
        "--s2s-ca",
        &ca_arg,
        "--s2s-route",
        &route2,
        "--s2s-route",
        &route,
    ]);
    let bob = User::new(&s, "bob");
    let mut cb = bob.online(&s, "r");
    let (mut p, h, _) = incoming_external(&s, &ca, REMOTE, false);
    let sid = h.id.clone().expect("a stream id");
    p.send(&format!(
        "<db:result from='b2.test' to='{LOCAL}'>key2</db:result>"
    ));
    let v = auth2.next_where("xmppd's db:verify for b2.test", |e| {
        matches!(e, AuthEv::Verify(_) | AuthEv::Failed(_))
    });
    let v = match v {
        AuthEv::Verify(v) => v,
        other => panic!("{other:?}"),
    };
    assert_db(&v, "verify", LOCAL, "b2.test", None, "DB-RECV-02");
    assert_eq!(
        v.attr("id"),
        Some(sid.as_str()),
        "the restarted stream's id"
    );
    let r = p.expect_el("the db:result answer for b2.test", |e| {
        e.is("result", NS_DB)
    });
    assert_db(
        &r,
        "result",
        LOCAL,
        "b2.test",
        Some("valid"),
        &p.transcript(),
    );
    p.send(&format!(
        "<message from='y@b2.test/r' to='{}' type='chat' id='m2'><body>from b2</body></message>",
        bob.full("r")
    ));
    let (m, _) = cb.recv_until("the message from b2.test", |e| e.name == "message");
    assert_eq!(m.attr("id"), Some("m2"), "{m:?}");
    assert_eq!(m.attr("from"), Some("y@b2.test/r"), "{m:?}");
    p.send(&format!(
        "<message from='x@{REMOTE}/r' to='{}' type='chat' id='m1'><body>from b</body></message>",
        bob.full("r")
    ));
    let (m, _) = cb.recv_until("the message from b.test", |e| e.name == "message");
    assert_eq!(m.attr("id"), Some("m1"), "{m:?}");
    p.send(&format!(
        "<message from='z@b3.test/r' to='{}' type='chat' id='m3'><body>spoof</body></message>",
        bob.full("r")
    ));
    p.expect_stream_error(
        "invalid-from",
        "CORE-S2S-06: b3.test is authenticated neither by SASL nor by dialback",
    );
    let got = cb.collect_for(Duration::from_millis(500));
    assert!(
        !got.iter().any(|e| e.attr("id") == Some("m3")),
        "delivered: {got:?}"
    );
}
