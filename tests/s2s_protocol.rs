//! Server-to-server protocol tests where the test itself plays the remote server over raw
//! sockets (RFC 6120 §4/§13 s2s, XEP-0220 dialback, XEP-0185 keys): the exact elements the
//! server sends on its inbound and outbound streams, and what it does with ours.
//!
//! The local server always serves `a.test`. A raw peer plays `peer.test` (or other domains):
//!
//! - incoming side: the test connects to the server's s2s port as the Initiating Server; to
//!   authenticate a pair by dialback it also plays the Authoritative Server ([`Auth`]): a
//!   listener that `--s2s-route peer.test=…` points the server at, which answers the
//!   server's `db:verify`;
//! - outgoing side: the test listens as `peer.test` ([`listen`]) and a local client sends a
//!   message to `x@peer.test`; the test answers the server's header and `db:result`.
//!
//! `--s2s-allow-plaintext` lets the raw peers skip TLS (dialback in the clear). Every wait is
//! bounded; every test runs its own server on ephemeral ports.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::s2s::*;
use common::{stanza_error, Client, Server, User};
use xmppd::xml::{Element, StreamHeader};

const LOCAL: &str = "a.test";

// ---------------------------------------------------------------------------------------------
// The fake Authoritative Server (and receiving end of the server's outgoing stream)
// ---------------------------------------------------------------------------------------------

/// What the fake authoritative server saw.
#[derive(Debug)]
#[allow(dead_code)]
enum AuthEv {
    /// The server connected; its header.
    Connected(StreamHeader),
    /// A `db:verify` request (answered per the configuration).
    Verify(Element),
    /// The server's own `db:result` request on its outgoing stream.
    Result(Element),
    /// Anything else (stanzas).
    Other(Element, String),
    /// The server closed its stream.
    Closed,
}

struct AuthCfg {
    /// The domain played.
    me: String,
    /// `db:verify` with this key is answered `valid`, any other `invalid`.
    good_key: String,
    /// Answer the server's own `db:result` with `type='valid'`.
    answer_results: bool,
    /// Before answering a `db:verify`, wait for a signal on this channel.
    hold: Option<mpsc::Receiver<()>>,
    /// Instead of the real answer to a `db:verify`, send an unsolicited `type='valid'` one
    /// with this id (DB-SEC-01).
    forge_id: Option<String>,
}

/// A fake remote server listening on a loopback port (route the server to it with
/// `--s2s-route DOMAIN=127.0.0.1:PORT`).
struct Auth {
    port: u16,
    events: mpsc::Receiver<AuthEv>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl Auth {
    fn start(cfg: AuthCfg) -> Auth {
        let (l, port) = listen();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, acc2) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || Auth::run(l, cfg, tx, stop2, acc2));
        Auth {
            port,
            events: rx,
            stop,
            accepted,
        }
    }

    fn route(&self) -> String {
        format!("{}=127.0.0.1:{}", "peer.test", self.port)
    }

    fn route_for(&self, domain: &str) -> String {
        format!("{domain}=127.0.0.1:{}", self.port)
    }

    fn run(
        l: TcpListener,
        mut cfg: AuthCfg,
        tx: mpsc::Sender<AuthEv>,
        stop: Arc<AtomicBool>,
        accepted: Arc<AtomicUsize>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let Some(s) = accept_within(&l, Duration::from_millis(100)) else {
                continue;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            n += 1;
            let mut p = Peer::new(&format!("fake {} (authoritative)", cfg.me), s);
            let h = p.accept_stream(&cfg.me, &format!("auth-{n}"), DIALBACK_FEATURE);
            let _ = tx.send(AuthEv::Connected(h));
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let ev = match p.try_recv(Duration::from_millis(100)) {
                    None => continue,
                    Some(ev) => ev,
                };
                match ev {
                    Ev::El(e, _) if e.is("verify", NS_DB) => {
                        let (from, to, id) = (
                            e.attr("from").unwrap_or_default().to_string(),
                            e.attr("to").unwrap_or_default().to_string(),
                            e.attr("id").unwrap_or_default().to_string(),
                        );
                        let ty = if e.text().trim() == cfg.good_key {
                            "valid"
                        } else {
                            "invalid"
                        };
                        let _ = tx.send(AuthEv::Verify(e));
                        if let Some(forged) = &cfg.forge_id {
                            p.send_lossy(&format!(
                                "<db:verify from='{to}' to='{from}' id='{forged}' type='valid'/>"
                            ));
                            continue;
                        }
                        if let Some(h) = cfg.hold.take() {
                            if h.recv_timeout(Duration::from_secs(20)).is_err() {
                                continue; // never answered
                            }
                        }
                        p.send_lossy(&format!(
                            "<db:verify from='{to}' to='{from}' id='{id}' type='{ty}'/>"
                        ));
                    }
                    Ev::El(e, _) if e.is("result", NS_DB) => {
                        let (from, to) = (
                            e.attr("from").unwrap_or_default().to_string(),
                            e.attr("to").unwrap_or_default().to_string(),
                        );
                        let _ = tx.send(AuthEv::Result(e));
                        if cfg.answer_results {
                            p.send_lossy(&format!(
                                "<db:result from='{to}' to='{from}' type='valid'/>"
                            ));
                        }
                    }
                    Ev::El(e, raw) => {
                        let _ = tx.send(AuthEv::Other(e, raw));
                    }
                    Ev::Header(_) => {}
                    Ev::Close => {
                        p.send_lossy("</stream:stream>");
                        let _ = tx.send(AuthEv::Closed);
                        break;
                    }
                    Ev::Eof | Ev::Reset(_) => {
                        let _ = tx.send(AuthEv::Closed);
                        break;
                    }
                }
            }
        }
    }

    /// The next event, skipping those `skip` says to.
    fn next_where(&self, what: &str, pred: impl Fn(&AuthEv) -> bool) -> AuthEv {
        next_event_where(&self.events, what, pred)
    }
}

impl Drop for Auth {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn auth(me: &str, good_key: &str) -> AuthCfg {
    AuthCfg {
        me: me.into(),
        good_key: good_key.into(),
        answer_results: true,
        hold: None,
        forge_id: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Set-ups
// ---------------------------------------------------------------------------------------------

/// A server for `a.test` with `extra` flags.
fn server(extra: &[&str]) -> Server {
    let mut args = vec!["--domain", LOCAL];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The condition (and error type) of a dialback `type='error'` answer.
fn db_error(e: &Element) -> Option<(String, String)> {
    let err = e.elements().find(|c| c.name == "error")?;
    let cond = err.elements().find(|c| c.ns == NS_STANZAS)?;
    Some((
        cond.name.clone(),
        err.attr("type").unwrap_or_default().to_string(),
    ))
}

/// An incoming stream from `peer.test` with that pair authenticated by dialback: the fake
/// authoritative server said `valid` to the server's `db:verify` (DB-RECV-02/03).
struct Authed {
    server: Server,
    auth: Auth,
    peer: Peer,
    /// The id of the server's header on our stream.
    sid: String,
}

fn authed(extra: &[&str], cfg: AuthCfg) -> Authed {
    let auth = Auth::start(cfg);
    let route = auth.route();
    let mut args = vec!["--s2s-allow-plaintext", "--s2s-route", &route];
    args.extend_from_slice(extra);
    let server = server(&args);
    let mut peer = Peer::connect("peer.test → a.test (inbound)", s2s_addr(&server));
    let (h, _) = peer.open(Some("peer.test"), LOCAL);
    let sid = h.id.clone().expect("a stream id");
    peer.send("<db:result from='peer.test' to='a.test'>goodkey</db:result>");
    let r = peer.recv_el("the db:result answer");
    assert_db(
        &r,
        "result",
        LOCAL,
        "peer.test",
        Some("valid"),
        &peer.transcript(),
    );
    Authed {
        server,
        auth,
        peer,
        sid,
    }
}

/// The messages among what a client got.
fn messages(got: &[Element]) -> Vec<&Element> {
    got.iter().filter(|e| e.name == "message").collect()
}

// ---------------------------------------------------------------------------------------------
// Incoming side: the stream header and features
// ---------------------------------------------------------------------------------------------

/// CORE-S2S-02, DB-ADV-01: the answer header is in `jabber:server`, declares
/// `xmlns:db='jabber:server:dialback'`, swaps from/to, carries an id and version 1.0; without
/// `--s2s-allow-plaintext` the features require STARTTLS and do not offer dialback in the
/// clear.
#[test]
fn core_s2s_02_header_and_features_require_starttls() {
    let s = server(&[]);
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    let (h, f) = p.open(Some("peer.test"), LOCAL);
    let t = p.transcript();
    assert_eq!(h.default_ns.as_deref(), Some(NS_SERVER), "{t}");
    assert!(
        p.declares("db", NS_DB),
        "DB-ADV-01: xmlns:db on the header\n{t}"
    );
    assert_eq!(h.from.as_deref(), Some(LOCAL), "{t}");
    assert_eq!(h.to.as_deref(), Some("peer.test"), "{t}");
    assert_eq!(h.version.as_deref(), Some("1.0"), "{t}");
    assert!(h.id.as_deref().is_some_and(|i| !i.is_empty()), "{t}");
    let tls = f.child("starttls", NS_TLS).expect("STARTTLS offered");
    assert!(
        tls.child("required", NS_TLS).is_some(),
        "STARTTLS required without --s2s-allow-plaintext\n{t}"
    );
    assert!(
        f.child("dialback", NS_DB_FEATURES).is_none(),
        "no dialback in the clear when TLS is required\n{t}"
    );
}

/// CORE-S2S-02, DB-ADV-01/02: with `--s2s-allow-plaintext`, STARTTLS is offered but not
/// required, and the dialback feature with error support is listed.
#[test]
fn core_s2s_02_db_adv_02_plaintext_allowed_offers_dialback_feature() {
    let s = server(&["--s2s-allow-plaintext"]);
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    let (h, f) = p.open(Some("peer.test"), LOCAL);
    let t = p.transcript();
    assert_eq!(h.default_ns.as_deref(), Some(NS_SERVER), "{t}");
    assert!(p.declares("db", NS_DB), "{t}");
    let tls = f.child("starttls", NS_TLS).expect("STARTTLS offered");
    assert!(tls.child("required", NS_TLS).is_none(), "{t}");
    let db = f
        .child("dialback", NS_DB_FEATURES)
        .unwrap_or_else(|| panic!("DB-ADV-02: dialback feature\n{t}"));
    assert!(db.child("errors", NS_DB_FEATURES).is_some(), "{t}");
    assert!(
        t.contains("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"),
        "{t}"
    );
}

/// CORE-S2S-02, DB-ADV-02: after STARTTLS (trusting the server's self-signed certificate),
/// the new stream's features offer dialback and no longer STARTTLS; no client certificate, so
/// no SASL EXTERNAL (EXT-S2S-01).
#[test]
fn core_s2s_02_features_after_starttls_offer_dialback() {
    let s = server(&[]);
    let mut p = Peer::connect("peer.test → a.test (TLS)", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.starttls(&s.cert_path(), LOCAL);
    let (h, f) = p.open(Some("peer.test"), LOCAL);
    let t = p.transcript();
    assert_eq!(h.default_ns.as_deref(), Some(NS_SERVER), "{t}");
    assert!(p.declares("db", NS_DB), "{t}");
    assert!(f.child("starttls", NS_TLS).is_none(), "{f:?}");
    assert!(
        f.child("dialback", NS_DB_FEATURES)
            .and_then(|d| d.child("errors", NS_DB_FEATURES))
            .is_some(),
        "dialback feature over TLS: {f:?}"
    );
    assert!(
        f.child("mechanisms", NS_SASL).is_none(),
        "EXTERNAL without a client certificate: {f:?}"
    );
}

/// XEP-0368 for servers: on the direct-TLS s2s port the stream starts inside TLS (ALPN
/// `xmpp-server`), and the features offer dialback without STARTTLS.
#[test]
fn xep0368_direct_tls_s2s_port_starts_inside_tls() {
    let s = server(&["--s2s-tls-listen", "127.0.0.1:0"]);
    let addr = s.s2s_tls.expect("the direct-TLS s2s port");
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let cfg = common::tls_config(&s.cert_path(), Some(b"xmpp-server"));
    let conn = rustls::ClientConnection::new(cfg, LOCAL.to_string().try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .unwrap_or_else(|e| panic!("TLS handshake on the direct-TLS s2s port: {e}"));
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"xmpp-server"[..]));
    let mut p = Peer::new(
        "peer.test → a.test (direct TLS)",
        tls.sock.try_clone().unwrap(),
    );
    p.io = Some(Io::TlsClient(Box::new(tls)));
    let (h, f) = p.open(Some("peer.test"), LOCAL);
    let t = p.transcript();
    assert_eq!(h.default_ns.as_deref(), Some(NS_SERVER), "{t}");
    assert_eq!(h.from.as_deref(), Some(LOCAL), "{t}");
    assert!(
        f.child("starttls", NS_TLS).is_none(),
        "no STARTTLS inside TLS: {f:?}"
    );
    assert!(
        f.child("dialback", NS_DB_FEATURES).is_some(),
        "dialback offered over TLS: {f:?}"
    );
}

/// A second server on an address another server listens on refuses to start with a clear
/// error, instead of silently sharing the port through SO_REUSEPORT (the load measurement saw
/// streams land in another process that way).
#[test]
fn a_second_server_on_the_same_s2s_address_refuses_to_start() {
    let first = server(&[]);
    let addr = s2s_addr(&first).to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--domain",
            "b.test",
            "--c2s-listen",
            "127.0.0.1:0",
            "--no-c2s-tls",
            "--no-http",
        ])
        .args(["--s2s-listen", &addr])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a second xmppd");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second server started on {addr} and kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "the second server started: {err}");
    assert!(
        err.contains(&format!("listening on {addr}")),
        "the error names the address: {err}"
    );
    // The first server still owns its port.
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&first));
    let (h, _) = p.open(Some("peer.test"), LOCAL);
    assert_eq!(h.from.as_deref(), Some(LOCAL));
}

/// CORE-S2S-03: a header whose `to` is not hosted gets our header, then host-unknown.
#[test]
fn core_s2s_03_unhosted_to_is_host_unknown() {
    let s = server(&["--s2s-allow-plaintext"]);
    let mut p = Peer::connect("peer.test → nothere.test", s2s_addr(&s));
    p.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' xmlns:stream='{NS_STREAMS}' \
         xmlns:db='{NS_DB}' from='peer.test' to='nothere.test' version='1.0'>"
    ));
    let h = p.recv_header("our header first");
    assert_eq!(h.default_ns.as_deref(), Some(NS_SERVER));
    p.expect_stream_error("host-unknown", "");
}

/// RFC 6120 §4.9.3.10: a stream whose content namespace is not `jabber:server` gets
/// invalid-namespace.
#[test]
fn s2s_wrong_content_namespace_is_invalid_namespace() {
    let s = server(&["--s2s-allow-plaintext"]);
    let mut p = Peer::connect("peer.test (jabber:client)", s2s_addr(&s));
    p.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' \
         from='peer.test' to='{LOCAL}' version='1.0'>"
    ));
    p.expect_stream_error("invalid-namespace", "");
}

// ---------------------------------------------------------------------------------------------
// Incoming side: dialback as Receiving Server
// ---------------------------------------------------------------------------------------------

/// DB-RECV-05: a `db:result` to a domain not ours gets `type='error'` with
/// `<error type='cancel'><item-not-found/></error>`, and the stream stays open: a `db:verify`
/// sent after it is answered.
#[test]
fn db_recv_05_result_to_unhosted_is_item_not_found_and_stream_stays() {
    let s = server(&["--s2s-allow-plaintext"]);
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='other.test'>somekey</db:result>");
    let r = p.recv_el("the db:result error");
    let t = p.transcript();
    assert_db(&r, "result", "other.test", "peer.test", Some("error"), &t);
    assert_eq!(
        db_error(&r),
        Some(("item-not-found".into(), "cancel".into())),
        "{t}"
    );
    // Still open: another element is answered.
    p.send("<db:verify from='peer.test' to='a.test' id='x1'>wrongkey</db:verify>");
    let v = p.recv_el("the db:verify answer after the error");
    let t = p.transcript();
    assert_db(&v, "verify", LOCAL, "peer.test", Some("invalid"), &t);
    assert_eq!(v.attr("id"), Some("x1"), "{t}");
}

/// DB-RECV-01, CORE-S2S-06: a stanza from a domain not verified on the stream closes it with
/// invalid-from and is not delivered to the local user.
#[test]
fn db_recv_01_core_s2s_06_unverified_from_is_invalid_from_not_delivered() {
    let s = server(&["--s2s-allow-plaintext"]);
    let bob = User::new(&s, "bob");
    let mut cb = bob.online(&s, "r");
    let mut p = Peer::connect("evil.test → a.test", s2s_addr(&s));
    p.open(Some("evil.test"), LOCAL);
    p.send(&format!(
        "<message from='mallory@evil.test/x' to='{}/r' type='chat' id='spoof1'>\
         <body>spoofed</body></message>",
        bob.jid
    ));
    p.expect_stream_error("invalid-from", "");
    let got = cb.collect_for(QUIET);
    assert!(messages(&got).is_empty(), "delivered: {got:?}");
}

/// DB-SEC-02: a `db:result` carrying `type` on an inbound stream is unsolicited: no answer,
/// nothing authorized (a stanza for the pair after it is refused with invalid-from and not
/// delivered).
#[test]
fn db_sec_02_typed_result_on_inbound_authorizes_nothing() {
    let a = Auth::start(auth("peer.test", "goodkey"));
    let route = a.route();
    let s = server(&["--s2s-allow-plaintext", "--s2s-route", &route]);
    let bob = User::new(&s, "bob");
    let mut cb = bob.online(&s, "r");
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='a.test' type='valid'/>");
    p.expect_silence(QUIET, "a typed db:result on an inbound stream");
    p.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='chat' id='m1'><body>hi</body></message>",
        bob.jid
    ));
    p.expect_stream_error("invalid-from", "");
    let got = cb.collect_for(QUIET);
    assert!(messages(&got).is_empty(), "delivered: {got:?}");
    assert_eq!(
        a.accepted.load(Ordering::SeqCst),
        0,
        "a typed db:result must not start a verification"
    );
}

/// DB-POL-01: without `--s2s-allow-plaintext`, a `db:result` in the clear is refused with a
/// `type='error'` result carrying policy-violation, and no verification is started.
#[test]
fn db_pol_01_plaintext_dialback_refused_with_policy_violation() {
    let a = Auth::start(auth("peer.test", "goodkey"));
    let route = a.route();
    let s = server(&["--s2s-route", &route]);
    let mut p = Peer::connect("peer.test → a.test (clear)", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='a.test'>goodkey</db:result>");
    let r = p.recv_el("the db:result answer");
    let t = p.transcript();
    assert_db(&r, "result", LOCAL, "peer.test", Some("error"), &t);
    assert_eq!(
        db_error(&r).map(|(c, _)| c).as_deref(),
        Some("policy-violation"),
        "{t}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.accepted.load(Ordering::SeqCst), 0, "no verification");
}

/// DB-POL-01 for `db:verify` too: a verification asked in the clear, where TLS is required
/// before dialback, is answered `type='error'` with `<policy-violation/>`, not with a verdict
/// (which would tell an eavesdropper whether a key is right).
#[test]
fn db_pol_01_plaintext_db_verify_refused_with_policy_violation() {
    let s = server(&[]);
    let mut p = Peer::connect("peer.test → a.test (clear)", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:verify from='peer.test' to='a.test' id='some-stream'>somekey</db:verify>");
    let r = p.recv_el("the db:verify answer");
    let t = p.transcript();
    assert_db(&r, "verify", LOCAL, "peer.test", Some("error"), &t);
    assert_eq!(r.attr("id"), Some("some-stream"), "{t}");
    assert_eq!(
        db_error(&r).map(|(c, _)| c).as_deref(),
        Some("policy-violation"),
        "{t}"
    );
}

/// DB-RECV-02/03, CORE-S2S-04: the server verifies our key with the authoritative server
/// (`db:verify from='a.test' to='peer.test' id='<our stream id>'>KEY`), answers
/// `type='valid'` on our stream, and then delivers our stanza to the local user with `from`
/// unchanged.
#[test]
fn db_recv_02_03_verified_pair_delivers_stanzas() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    let v = x
        .auth
        .next_where("db:verify", |e| matches!(e, AuthEv::Verify(_)));
    let AuthEv::Verify(v) = v else { unreachable!() };
    assert_db(&v, "verify", LOCAL, "peer.test", None, "DB-RECV-02");
    assert_eq!(v.attr("id"), Some(x.sid.as_str()), "the inbound stream id");
    assert_eq!(v.text().trim(), "goodkey");
    let bob = User::new(&x.server, "bob");
    let mut cb = bob.online(&x.server, "r");
    x.peer.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='chat' id='m1'><body>hi bob</body></message>",
        bob.jid
    ));
    let (m, _) = cb.recv_until("the message from peer.test", |e| e.name == "message");
    assert_eq!(m.attr("from"), Some("x@peer.test/r"), "{m:?}");
    assert_eq!(m.attr("id"), Some("m1"));
    assert_eq!(
        m.child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("hi bob"),
        "{m:?}"
    );
}

/// CORE-S2S-05: on an authenticated pair, a stanza without `from` closes the stream with
/// improper-addressing.
#[test]
fn core_s2s_05_stanza_without_from_is_improper_addressing() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    x.peer
        .send("<message to='bob@a.test' type='chat' id='m1'><body>x</body></message>");
    x.peer.expect_stream_error("improper-addressing", "");
}

/// CORE-S2S-05: on an authenticated pair, a stanza without `to` closes the stream with
/// improper-addressing.
#[test]
fn core_s2s_05_stanza_without_to_is_improper_addressing() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    x.peer
        .send("<iq from='x@peer.test/r' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>");
    x.peer.expect_stream_error("improper-addressing", "");
}

/// CORE-S2S-07: on an authenticated pair, a stanza to a domain that is not ours gets
/// host-unknown.
#[test]
fn core_s2s_07_stanza_to_unhosted_domain_is_host_unknown() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    x.peer.send(
        "<message from='x@peer.test/r' to='y@other.test' type='chat' id='m1'><body>x</body></message>",
    );
    x.peer.expect_stream_error("host-unknown", "");
}

/// CORE-S2S-07: with two hosted domains and only (peer.test, a.test) verified, a stanza to
/// the other hosted domain (b.test) is not accepted (host-unknown) and not delivered.
#[test]
fn core_s2s_07_stanza_to_hosted_but_unverified_target_is_refused() {
    let mut x = authed(&["--domain", "b.test"], auth("peer.test", "goodkey"));
    x.peer.send(
        "<message from='x@peer.test/r' to='carol@b.test' type='chat' id='m1'><body>x</body></message>",
    );
    x.peer.expect_stream_error("host-unknown", "");
}

/// DB-RECV-04: the authoritative server says `invalid`: `type='invalid'` on our stream, then
/// the stream closes (no other pair is verified on it).
#[test]
fn db_recv_04_invalid_key_gets_invalid_and_close() {
    let a = Auth::start(auth("peer.test", "goodkey"));
    let route = a.route();
    let s = server(&["--s2s-allow-plaintext", "--s2s-route", &route]);
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='a.test'>badkey</db:result>");
    let r = p.recv_el("the db:result answer");
    let t = p.transcript();
    assert_db(&r, "result", LOCAL, "peer.test", Some("invalid"), &t);
    match p.recv("</stream:stream> after invalid") {
        Ev::Close => {}
        other => panic!(
            "expected </stream:stream>, got {other:?}\n{}",
            p.transcript()
        ),
    }
    p.expect_end();
}

/// DB-RECV-07: the authoritative server is unreachable (its route points at a closed port):
/// `type='error'` with remote-server-not-found, remote-connection-failed or
/// remote-server-timeout; the stream stays open.
#[test]
fn db_recv_07_unreachable_authoritative_is_dialback_error() {
    let route = format!("peer.test=127.0.0.1:{}", closed_tcp_port());
    let s = server(&[
        "--s2s-allow-plaintext",
        "--s2s-route",
        &route,
        "--s2s-connect-timeout",
        "3",
    ]);
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='a.test'>somekey</db:result>");
    let r = p.recv_el("the db:result answer");
    let t = p.transcript();
    assert_db(&r, "result", LOCAL, "peer.test", Some("error"), &t);
    let cond = db_error(&r).map(|(c, _)| c).unwrap_or_default();
    assert!(
        [
            "remote-server-not-found",
            "remote-connection-failed",
            "remote-server-timeout"
        ]
        .contains(&cond.as_str()),
        "condition {cond:?}\n{t}"
    );
    p.send("<db:verify from='peer.test' to='a.test' id='x1'>wrongkey</db:verify>");
    let v = p.recv_el("an answer after the dialback error");
    assert_db(
        &v,
        "verify",
        LOCAL,
        "peer.test",
        Some("invalid"),
        &p.transcript(),
    );
}

/// DB-RECV-06: while the verification of a second pair (peer2.test → a.test) is pending,
/// stanzas of the verified pair are delivered and other dialback elements answered; then the
/// second pair is answered `valid` too.
#[test]
fn db_recv_06_second_pair_pending_while_first_flows() {
    let (release, hold) = mpsc::channel();
    let a2 = Auth::start(AuthCfg {
        hold: Some(hold),
        ..auth("peer2.test", "key2")
    });
    let route2 = a2.route_for("peer2.test");
    let mut x = authed(&["--s2s-route", &route2], auth("peer.test", "goodkey"));
    let bob = User::new(&x.server, "bob");
    let mut cb = bob.online(&x.server, "r");
    x.peer
        .send("<db:result from='peer2.test' to='a.test'>key2</db:result>");
    a2.next_where("the held db:verify for peer2.test", |e| {
        matches!(e, AuthEv::Verify(_))
    });
    x.peer.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='chat' id='m1'><body>during</body></message>",
        bob.jid
    ));
    let (m, _) = cb.recv_until("the message while peer2 is pending", |e| {
        e.name == "message"
    });
    assert_eq!(m.attr("from"), Some("x@peer.test/r"));
    x.peer
        .send("<db:verify from='peer.test' to='a.test' id='x1'>wrongkey</db:verify>");
    let v = x
        .peer
        .recv_el("the db:verify answer while peer2 is pending");
    assert_db(
        &v,
        "verify",
        LOCAL,
        "peer.test",
        Some("invalid"),
        &x.peer.transcript(),
    );
    release.send(()).unwrap();
    let r = x.peer.recv_el("peer2's db:result answer");
    assert_db(
        &r,
        "result",
        LOCAL,
        "peer2.test",
        Some("valid"),
        &x.peer.transcript(),
    );
    x.peer.send(&format!(
        "<message from='y@peer2.test/r' to='{}/r' type='chat' id='m2'><body>peer2</body></message>",
        bob.jid
    ));
    let (m, _) = cb.recv_until("the message from peer2", |e| e.name == "message");
    assert_eq!(m.attr("from"), Some("y@peer2.test/r"));
}

/// CORE-S2S-08: the server never sends stanzas on the peer's inbound stream: a local user's
/// message to the verified peer goes out on the server's own outgoing stream (to the fake
/// peer.test listener), and nothing arrives on our inbound stream.
#[test]
fn core_s2s_08_replies_go_on_own_outgoing_stream() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    let bob = User::new(&x.server, "bob");
    let mut cb = bob.online(&x.server, "r");
    cb.send("<message to='x@peer.test/r' type='chat' id='out1'><body>reply</body></message>");
    let ev = x.auth.next_where(
        "bob's message on the outgoing stream",
        |e| matches!(e, AuthEv::Other(el, _) if el.name == "message"),
    );
    let AuthEv::Other(m, raw) = ev else {
        unreachable!()
    };
    assert_eq!(m.ns, NS_SERVER, "{raw}");
    assert_eq!(m.attr("to"), Some("x@peer.test/r"), "{raw}");
    assert_eq!(m.attr("from"), Some(bob.full("r").as_str()), "{raw}");
    x.peer
        .expect_silence(QUIET, "CORE-S2S-08: nothing on the peer's inbound stream");
}

// ---------------------------------------------------------------------------------------------
// Incoming side: the server as Authoritative Server
// ---------------------------------------------------------------------------------------------

/// DB-AUTH-01, DB-KEY-01: a `db:verify` with the right XEP-0185 key (from the server's
/// secret) is answered `valid` with from/to swapped and the id copied; a wrong key `invalid`.
#[test]
fn db_auth_01_verify_valid_and_invalid_keys() {
    let s = server(&["--s2s-allow-plaintext"]);
    let secret = dialback_secret(&s);
    let mut p = Peer::connect("recv.test → a.test (asking)", s2s_addr(&s));
    p.open(Some("recv.test"), LOCAL);
    let key = db_key(&secret, "recv.test", LOCAL, "sid-4711");
    p.send(&format!(
        "<db:verify from='recv.test' to='a.test' id='sid-4711'>{key}</db:verify>"
    ));
    let v = p.recv_el("the valid answer");
    let t = p.transcript();
    assert_db(&v, "verify", LOCAL, "recv.test", Some("valid"), &t);
    assert_eq!(v.attr("id"), Some("sid-4711"), "{t}");
    // The same key for another stream id is wrong.
    p.send(&format!(
        "<db:verify from='recv.test' to='a.test' id='sid-4712'>{key}</db:verify>"
    ));
    let v = p.recv_el("the invalid answer");
    let t = p.transcript();
    assert_db(&v, "verify", LOCAL, "recv.test", Some("invalid"), &t);
    assert_eq!(v.attr("id"), Some("sid-4712"), "{t}");
}

/// DB-AUTH-02: a `db:verify` to a domain not ours gets `type='error'` item-not-found, and the
/// stream stays open.
#[test]
fn db_auth_02_verify_to_unhosted_is_item_not_found_and_stream_stays() {
    let s = server(&["--s2s-allow-plaintext"]);
    let secret = dialback_secret(&s);
    let mut p = Peer::connect("recv.test → a.test (asking)", s2s_addr(&s));
    p.open(Some("recv.test"), LOCAL);
    p.send("<db:verify from='recv.test' to='other.test' id='sid-1'>abc</db:verify>");
    let v = p.recv_el("the error answer");
    let t = p.transcript();
    assert_db(&v, "verify", "other.test", "recv.test", Some("error"), &t);
    assert_eq!(v.attr("id"), Some("sid-1"), "{t}");
    assert_eq!(
        db_error(&v).map(|(c, _)| c).as_deref(),
        Some("item-not-found"),
        "{t}"
    );
    let key = db_key(&secret, "recv.test", LOCAL, "sid-2");
    p.send(&format!(
        "<db:verify from='recv.test' to='a.test' id='sid-2'>{key}</db:verify>"
    ));
    let v = p.recv_el("an answer after the error");
    assert_db(
        &v,
        "verify",
        LOCAL,
        "recv.test",
        Some("valid"),
        &p.transcript(),
    );
}

// ---------------------------------------------------------------------------------------------
// Outgoing side: the test listens as peer.test
// ---------------------------------------------------------------------------------------------

/// A server routed to a listener playing peer.test, with a local user online.
struct Outgoing {
    server: Server,
    listener: TcpListener,
    user: User,
    client: Client,
}

fn outgoing(extra: &[&str]) -> Outgoing {
    let (listener, port) = listen();
    let route = format!("peer.test=127.0.0.1:{port}");
    let mut args = vec!["--s2s-allow-plaintext", "--s2s-route", &route];
    args.extend_from_slice(extra);
    let server = server(&args);
    let user = User::new(&server, "alice");
    let client = user.online(&server, "r");
    Outgoing {
        server,
        listener,
        user,
        client,
    }
}

impl Outgoing {
    /// The local user sends a chat message to x@peer.test; the test accepts the server's
    /// connection and answers its header with id `id` and the dialback feature; returns the
    /// peer and the server's header.
    fn send_and_accept(&mut self, msg_id: &str, id: &str) -> (Peer, StreamHeader) {
        self.client.send(&format!(
            "<message to='x@peer.test/r' type='chat' id='{msg_id}'><body>hello peer</body></message>"
        ));
        let s = accept_within(&self.listener, WAIT).expect("the server connects to peer.test");
        let mut p = Peer::new("a.test → peer.test (outgoing)", s);
        let h = p.accept_stream("peer.test", id, DIALBACK_FEATURE);
        (p, h)
    }
}

/// CORE-S2S-01 (static route), DB-ADV-01, DB-KEY-01: the server connects to the route's
/// address, opens `jabber:server` from a.test to peer.test declaring `xmlns:db`, sends
/// `db:result` with the XEP-0185 key for our stream id, and once we answer `valid` the
/// queued message arrives in `jabber:server` with `from` the sender's full JID.
#[test]
fn core_s2s_01_outgoing_header_dialback_key_and_delivery() {
    let mut o = outgoing(&[]);
    let (mut p, h) = o.send_and_accept("m1", "out-1");
    let t = p.transcript();
    assert_eq!(h.default_ns.as_deref(), Some(NS_SERVER), "{t}");
    assert!(p.declares("db", NS_DB), "DB-ADV-01\n{t}");
    assert_eq!(h.from.as_deref(), Some(LOCAL), "{t}");
    assert_eq!(h.to.as_deref(), Some("peer.test"), "{t}");
    assert_eq!(h.version.as_deref(), Some("1.0"), "{t}");
    let r = p.recv_el("the server's db:result");
    let t = p.transcript();
    assert_db(&r, "result", LOCAL, "peer.test", None, &t);
    let secret = dialback_secret(&o.server);
    assert_eq!(
        r.text().trim(),
        db_key(&secret, "peer.test", LOCAL, "out-1"),
        "DB-KEY-01\n{t}"
    );
    p.send("<db:result from='peer.test' to='a.test' type='valid'/>");
    let m = p.recv_el("the queued message");
    let t = p.transcript();
    assert!(m.is("message", NS_SERVER), "{m:?}\n{t}");
    assert_eq!(m.attr("to"), Some("x@peer.test/r"), "{t}");
    assert_eq!(m.attr("from"), Some(o.user.full("r").as_str()), "{t}");
    assert_eq!(m.attr("id"), Some("m1"), "{t}");
}

/// DB-OUT-01: `type='invalid'` for our key bounces the queued message with
/// internal-server-error.
#[test]
fn db_out_01_invalid_bounces_internal_server_error() {
    let mut o = outgoing(&[]);
    let (mut p, _) = o.send_and_accept("m1", "out-1");
    let r = p.recv_el("the server's db:result");
    assert_db(&r, "result", LOCAL, "peer.test", None, &p.transcript());
    p.send("<db:result from='peer.test' to='a.test' type='invalid'/>");
    let (b, _) = o.client.recv_until("the bounce", |e| is_bounce(e, "m1"));
    assert_eq!(
        stanza_error(&b).map(|(c, _, _)| c).as_deref(),
        Some("internal-server-error"),
        "{b:?}\n{}",
        p.transcript()
    );
    assert_eq!(b.attr("from"), Some("x@peer.test/r"), "{b:?}");
    let rest = p.collect_for(QUIET);
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, Ev::El(el, _) if el.name == "message")),
        "the message must not be sent after invalid: {rest:?}"
    );
}

/// DB-OUT-01: `type='error'` for our key bounces the queued message with
/// remote-server-timeout.
#[test]
fn db_out_01_error_bounces_remote_server_timeout() {
    let mut o = outgoing(&[]);
    let (mut p, _) = o.send_and_accept("m1", "out-1");
    let r = p.recv_el("the server's db:result");
    assert_db(&r, "result", LOCAL, "peer.test", None, &p.transcript());
    p.send(&format!(
        "<db:result from='peer.test' to='a.test' type='error'><error type='cancel'>\
         <item-not-found xmlns='{NS_STANZAS}'/></error></db:result>"
    ));
    let (b, _) = o.client.recv_until("the bounce", |e| is_bounce(e, "m1"));
    assert_eq!(
        stanza_error(&b).map(|(c, _, _)| c).as_deref(),
        Some("remote-server-timeout"),
        "{b:?}\n{}",
        p.transcript()
    );
}

/// DB-SEC-01: unsolicited `type='valid'` answers (wrong sender, wrong target, reversed
/// direction, a `db:verify` never asked) authorize nothing: the queued message is neither
/// sent nor bounced; the right answer then releases it.
#[test]
fn db_sec_01_unsolicited_valid_authorizes_nothing() {
    let mut o = outgoing(&[]);
    let (mut p, _) = o.send_and_accept("m1", "out-1");
    let r = p.recv_el("the server's db:result");
    assert_db(&r, "result", LOCAL, "peer.test", None, &p.transcript());
    p.send("<db:result from='evil.test' to='a.test' type='valid'/>");
    p.send("<db:result from='peer.test' to='other.test' type='valid'/>");
    p.send("<db:result from='a.test' to='peer.test' type='valid'/>");
    p.send("<db:verify from='peer.test' to='a.test' id='out-1' type='valid'/>");
    let got = p.collect_for(QUIET);
    assert!(
        !got.iter()
            .any(|e| matches!(e, Ev::El(el, _) if el.name == "message")),
        "DB-SEC-01: sent on an unsolicited answer: {got:?}\n{}",
        p.transcript()
    );
    let c = o.client.collect_for(Duration::from_millis(200));
    assert!(messages(&c).is_empty(), "bounced early: {c:?}");
    // Positive control: the solicited answer releases the message.
    p.send("<db:result from='peer.test' to='a.test' type='valid'/>");
    let m = p.recv_el("the queued message after the right answer");
    assert!(m.is("message", NS_SERVER), "{m:?}\n{}", p.transcript());
    assert_eq!(m.attr("id"), Some("m1"));
}

/// CORE-S2S-09: no route and a domain that does not resolve (the DNS server is a closed UDP
/// port): the message bounces with remote-server-not-found or remote-server-timeout.
#[test]
fn core_s2s_09_unresolvable_domain_bounces() {
    let dns = format!("127.0.0.1:{}", closed_udp_port());
    let s = server(&[
        "--s2s-allow-plaintext",
        "--s2s-dns",
        &dns,
        "--s2s-connect-timeout",
        "2",
    ]);
    let alice = User::new(&s, "alice");
    let mut c = alice.online(&s, "r");
    c.send("<message to='x@nowhere.test' type='chat' id='m1'><body>hi</body></message>");
    let (b, _) = c.recv_until("the bounce", |e| is_bounce(e, "m1"));
    let cond = stanza_error(&b).map(|(c, _, _)| c).unwrap_or_default();
    assert!(
        cond == "remote-server-not-found" || cond == "remote-server-timeout",
        "{b:?}"
    );
    assert_eq!(b.attr("from"), Some("x@nowhere.test"), "{b:?}");
}

/// CORE-S2S-09: a route to a closed TCP port: the message bounces with
/// remote-server-not-found.
#[test]
fn core_s2s_09_connection_refused_bounces_remote_server_not_found() {
    let route = format!("peer.test=127.0.0.1:{}", closed_tcp_port());
    let s = server(&["--s2s-allow-plaintext", "--s2s-route", &route]);
    let alice = User::new(&s, "alice");
    let mut c = alice.online(&s, "r");
    c.send("<message to='x@peer.test' type='chat' id='m1'><body>hi</body></message>");
    let (b, _) = c.recv_until("the bounce", |e| is_bounce(e, "m1"));
    assert_eq!(
        stanza_error(&b).map(|(c, _, _)| c).as_deref(),
        Some("remote-server-not-found"),
        "{b:?}"
    );
}

/// CORE-S2S-08 (outgoing side): what the peer sends on the server's outgoing stream is not
/// taken as stanzas: a message from peer.test there is not delivered.
#[test]
fn core_s2s_08_stanzas_on_outgoing_stream_are_not_accepted() {
    let mut o = outgoing(&[]);
    let (mut p, _) = o.send_and_accept("m1", "out-1");
    p.recv_el("the server's db:result");
    p.send("<db:result from='peer.test' to='a.test' type='valid'/>");
    p.recv_el("the queued message");
    p.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='chat' id='back1'><body>wrong way</body></message>",
        o.user.jid
    ));
    let got = o.client.collect_for(QUIET);
    assert!(
        messages(&got).is_empty(),
        "delivered from the server's own outgoing stream: {got:?}"
    );
}

/// CORE-S2S-10: with `--s2s-idle-timeout 5`, an idle outgoing stream is closed with
/// `</stream:stream>` and a FIN, not a reset.
#[test]
fn core_s2s_10_idle_outgoing_stream_closes_cleanly() {
    let mut o = outgoing(&["--s2s-idle-timeout", "5"]);
    let (mut p, _) = o.send_and_accept("m1", "out-1");
    p.recv_el("the server's db:result");
    p.send("<db:result from='peer.test' to='a.test' type='valid'/>");
    p.recv_el("the queued message");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "the idle stream was not closed\n{}",
            p.transcript()
        );
        match p.try_recv(Duration::from_secs(1)) {
            None => continue,
            Some(Ev::Close) => break,
            Some(other) => panic!(
                "expected </stream:stream> on idle, got {other:?}\n{}",
                p.transcript()
            ),
        }
    }
    p.send_lossy("</stream:stream>");
    match p.recv("the end of the idle connection") {
        Ev::Eof => {}
        other => panic!(
            "expected a clean FIN after </stream:stream>, got {other:?}\n{}",
            p.transcript()
        ),
    }
}

/// `--no-s2s`: a message to a remote domain bounces with remote-server-not-found and no
/// connection is attempted (even with a route to a listener).
#[test]
fn no_s2s_bounces_remote_server_not_found_without_connecting() {
    let (l, port) = listen();
    let route = format!("peer.test=127.0.0.1:{port}");
    let s = server(&["--no-s2s", "--s2s-route", &route]);
    assert!(s.s2s.is_none(), "no s2s listener with --no-s2s");
    let alice = User::new(&s, "alice");
    let mut c = alice.online(&s, "r");
    c.send("<message to='x@peer.test' type='chat' id='m1'><body>hi</body></message>");
    let (b, _) = c.recv_until("the bounce", |e| is_bounce(e, "m1"));
    assert_eq!(
        stanza_error(&b).map(|(c, _, _)| c).as_deref(),
        Some("remote-server-not-found"),
        "{b:?}"
    );
    assert!(
        accept_within(&l, Duration::from_millis(500)).is_none(),
        "a connection was attempted with --no-s2s"
    );
}

// ---------------------------------------------------------------------------------------------
// More edges
// ---------------------------------------------------------------------------------------------

/// CORE-S2S-03, RFC 6120 §4.7.1: the response header sent before host-unknown names one of
/// the server's own domains in `from` (as the c2s port does), never the unhosted `to` the
/// peer asked for.
#[test]
fn core_s2s_03_host_unknown_header_claims_only_our_domain() {
    let s = server(&["--s2s-allow-plaintext"]);
    let mut p = Peer::connect("peer.test → nothere.test", s2s_addr(&s));
    p.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' xmlns:stream='{NS_STREAMS}' \
         xmlns:db='{NS_DB}' from='peer.test' to='nothere.test' version='1.0'>"
    ));
    let h = p.recv_header("our header first");
    p.expect_stream_error("host-unknown", "");
    assert_eq!(
        h.from.as_deref(),
        Some(LOCAL),
        "the response header's from must be a domain the server serves\n{}",
        p.transcript()
    );
}

/// DB-RECV-01: a stanza for a pair whose verification is still pending is refused
/// (invalid-from) and not delivered.
#[test]
fn db_recv_01_stanza_while_pending_is_invalid_from() {
    let (_release, hold) = mpsc::channel::<()>();
    let a = Auth::start(AuthCfg {
        hold: Some(hold),
        ..auth("peer.test", "goodkey")
    });
    let route = a.route();
    let s = server(&["--s2s-allow-plaintext", "--s2s-route", &route]);
    let bob = User::new(&s, "bob");
    let mut cb = bob.online(&s, "r");
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='a.test'>goodkey</db:result>");
    a.next_where("the held db:verify", |e| matches!(e, AuthEv::Verify(_)));
    p.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='chat' id='early'><body>early</body></message>",
        bob.jid
    ));
    p.expect_stream_error("invalid-from", "");
    let got = cb.collect_for(QUIET);
    assert!(messages(&got).is_empty(), "delivered: {got:?}");
}

/// DB-SEC-01 (as Receiving Server): on the server's outgoing stream to the authoritative
/// server, a `db:verify type='valid'` whose id is not the one asked for authorizes nothing:
/// no `valid` on the inbound stream, and a stanza for the pair is refused.
#[test]
fn db_sec_01_forged_verify_answer_authorizes_nothing() {
    let a = Auth::start(AuthCfg {
        forge_id: Some("forged-id".into()),
        ..auth("peer.test", "goodkey")
    });
    let route = a.route();
    let s = server(&["--s2s-allow-plaintext", "--s2s-route", &route]);
    let bob = User::new(&s, "bob");
    let mut cb = bob.online(&s, "r");
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='a.test'>goodkey</db:result>");
    a.next_where("the db:verify", |e| matches!(e, AuthEv::Verify(_)));
    p.expect_silence(QUIET, "DB-SEC-01: a forged db:verify answer");
    p.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='chat' id='m1'><body>x</body></message>",
        bob.jid
    ));
    p.expect_stream_error("invalid-from", "");
    let got = cb.collect_for(QUIET);
    assert!(messages(&got).is_empty(), "delivered: {got:?}");
}

/// DB-RECV-04 (XEP-0220 §2.2.1): a second pair refused by its authoritative server while the
/// first is verified: `type='error'` forbidden (or `invalid`), the stream stays open and the
/// first pair keeps flowing; the refused sender's stanzas are not accepted.
#[test]
fn db_recv_04_invalid_second_pair_keeps_stream_for_first() {
    let a2 = Auth::start(auth("peer2.test", "key2"));
    let route2 = a2.route_for("peer2.test");
    let mut x = authed(&["--s2s-route", &route2], auth("peer.test", "goodkey"));
    let bob = User::new(&x.server, "bob");
    let mut cb = bob.online(&x.server, "r");
    x.peer
        .send("<db:result from='peer2.test' to='a.test'>badkey</db:result>");
    let r = x.peer.recv_el("peer2's db:result answer");
    let t = x.peer.transcript();
    assert!(r.is("result", NS_DB), "{t}");
    assert_eq!(r.attr("from"), Some(LOCAL), "{t}");
    assert_eq!(r.attr("to"), Some("peer2.test"), "{t}");
    match r.attr("type") {
        Some("error") => assert_eq!(
            db_error(&r).map(|(c, _)| c).as_deref(),
            Some("forbidden"),
            "{t}"
        ),
        Some("invalid") => {}
        other => panic!("type {other:?}\n{t}"),
    }
    x.peer.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='chat' id='m1'><body>still</body></message>",
        bob.jid
    ));
    let (m, _) = cb.recv_until("the first pair's message", |e| e.name == "message");
    assert_eq!(m.attr("from"), Some("x@peer.test/r"));
    x.peer.send(&format!(
        "<message from='y@peer2.test/r' to='{}/r' type='chat' id='m2'><body>spoof</body></message>",
        bob.jid
    ));
    x.peer.expect_stream_error("invalid-from", "");
    let got = cb.collect_for(QUIET);
    assert!(messages(&got).is_empty(), "delivered: {got:?}");
}

/// DB-RECV-07: the authoritative server accepts the connection but never answers the
/// `db:verify`: after `--s2s-connect-timeout`, `type='error'` with remote-server-timeout (or
/// another remote-… condition).
#[test]
fn db_recv_07_silent_authoritative_is_dialback_error() {
    let (_release, hold) = mpsc::channel::<()>();
    let a = Auth::start(AuthCfg {
        hold: Some(hold),
        ..auth("peer.test", "goodkey")
    });
    let route = a.route();
    let s = server(&[
        "--s2s-allow-plaintext",
        "--s2s-route",
        &route,
        "--s2s-connect-timeout",
        "2",
    ]);
    let mut p = Peer::connect("peer.test → a.test", s2s_addr(&s));
    p.open(Some("peer.test"), LOCAL);
    p.send("<db:result from='peer.test' to='a.test'>goodkey</db:result>");
    let r = p.recv_el("the db:result answer");
    let t = p.transcript();
    assert_db(&r, "result", LOCAL, "peer.test", Some("error"), &t);
    let cond = db_error(&r).map(|(c, _)| c).unwrap_or_default();
    assert!(
        [
            "remote-server-not-found",
            "remote-connection-failed",
            "remote-server-timeout"
        ]
        .contains(&cond.as_str()),
        "condition {cond:?}\n{t}"
    );
}

/// DB-ADV-03: dialback elements are accepted under any prefix bound to the dialback
/// namespace, or with it as default namespace; answers use the `db:` prefix.
#[test]
fn db_adv_03_any_prefix_accepted_inbound() {
    let s = server(&["--s2s-allow-plaintext"]);
    let secret = dialback_secret(&s);
    let mut p = Peer::connect("recv.test → a.test (prefix dbx)", s2s_addr(&s));
    p.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' xmlns:stream='{NS_STREAMS}' \
         xmlns:dbx='{NS_DB}' from='recv.test' to='{LOCAL}' version='1.0'>"
    ));
    p.recv_header("header");
    p.recv_el("features");
    let k1 = db_key(&secret, "recv.test", LOCAL, "id-a");
    p.send(&format!(
        "<dbx:verify from='recv.test' to='a.test' id='id-a'>{k1}</dbx:verify>"
    ));
    let (v, raw) = match p.recv("answer to dbx:verify") {
        Ev::El(e, raw) => (e, raw),
        other => panic!("{other:?}\n{}", p.transcript()),
    };
    assert_db(
        &v,
        "verify",
        LOCAL,
        "recv.test",
        Some("valid"),
        &p.transcript(),
    );
    assert!(raw.starts_with("<db:verify"), "answers use db: {raw}");
    let k2 = db_key(&secret, "recv.test", LOCAL, "id-b");
    p.send(&format!(
        "<verify xmlns='{NS_DB}' from='recv.test' to='a.test' id='id-b'>{k2}</verify>"
    ));
    let v = p.recv_el("answer to the default-namespace verify");
    assert_db(
        &v,
        "verify",
        LOCAL,
        "recv.test",
        Some("valid"),
        &p.transcript(),
    );
    assert_eq!(v.attr("id"), Some("id-b"));
}

/// DB-ADV-03 (outgoing side): our `valid` answer with the dialback namespace as default
/// namespace (no `db:` prefix) authorizes the pair.
#[test]
fn db_adv_03_unprefixed_answer_accepted_outgoing() {
    let mut o = outgoing(&[]);
    let (mut p, _) = o.send_and_accept("m1", "out-1");
    p.recv_el("the server's db:result");
    p.send(&format!(
        "<result xmlns='{NS_DB}' from='peer.test' to='a.test' type='valid'/>"
    ));
    let m = p.recv_el("the queued message");
    assert!(m.is("message", NS_SERVER), "{m:?}\n{}", p.transcript());
}

/// CORE-S2S-10 (inbound): with `--s2s-idle-timeout 5`, an authenticated idle inbound stream
/// is closed with `</stream:stream>` and a FIN.
#[test]
fn core_s2s_10_idle_inbound_stream_closes_cleanly() {
    let mut x = authed(&["--s2s-idle-timeout", "5"], auth("peer.test", "goodkey"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "the idle inbound stream was not closed\n{}",
            x.peer.transcript()
        );
        match x.peer.try_recv(Duration::from_secs(1)) {
            None => continue,
            Some(Ev::Close) => break,
            Some(other) => panic!(
                "expected </stream:stream> on idle, got {other:?}\n{}",
                x.peer.transcript()
            ),
        }
    }
    x.peer.send_lossy("</stream:stream>");
    match x.peer.recv("the end of the idle connection") {
        Ev::Eof => {}
        other => panic!(
            "expected a clean FIN, got {other:?}\n{}",
            x.peer.transcript()
        ),
    }
}

/// CORE-S2S-09 / DB-POL-01 (outgoing): without `--s2s-allow-plaintext`, a peer that offers no
/// STARTTLS gets no dialback key in the clear and the message bounces with
/// remote-server-not-found.
#[test]
fn core_s2s_09_outgoing_refuses_plaintext_peer_without_flag() {
    let (listener, port) = listen();
    let route = format!("peer.test=127.0.0.1:{port}");
    let s = server(&["--s2s-route", &route]);
    let alice = User::new(&s, "alice");
    let mut c = alice.online(&s, "r");
    c.send("<message to='x@peer.test' type='chat' id='m1'><body>hi</body></message>");
    let sock = accept_within(&listener, WAIT).expect("the server connects");
    let mut p = Peer::new("a.test → peer.test (no TLS offered)", sock);
    p.accept_stream("peer.test", "out-1", DIALBACK_FEATURE);
    let (b, _) = c.recv_until("the bounce", |e| is_bounce(e, "m1"));
    assert_eq!(
        stanza_error(&b).map(|(c, _, _)| c).as_deref(),
        Some("remote-server-not-found"),
        "{b:?}"
    );
    let rest = p.collect_for(Duration::from_millis(500));
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, Ev::El(el, _) if el.ns == NS_DB || el.name == "message")),
        "sent in the clear: {rest:?}\n{}",
        p.transcript()
    );
}

/// CORE-S2S-08: a server-generated reply (the result of a ping iq from the verified peer to
/// the server's domain) goes out on the server's own outgoing stream, not on the inbound
/// stream the iq came on.
#[test]
fn core_s2s_08_server_reply_to_peer_iq_goes_on_outgoing_stream() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    x.peer.send(
        "<iq from='x@peer.test/r' to='a.test' type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    let ev = x.auth.next_where(
        "the ping result on the outgoing stream",
        |e| matches!(e, AuthEv::Other(el, _) if el.name == "iq"),
    );
    let AuthEv::Other(r, raw) = ev else {
        unreachable!()
    };
    assert_eq!(r.attr("type"), Some("result"), "{raw}");
    assert_eq!(r.attr("id"), Some("ping1"), "{raw}");
    assert_eq!(r.attr("to"), Some("x@peer.test/r"), "{raw}");
    assert_eq!(r.attr("from"), Some(LOCAL), "{raw}");
    x.peer
        .expect_silence(QUIET, "CORE-S2S-08: nothing on the peer's inbound stream");
}

/// CORE-S2S-06 / RFC 6120 §3.2: the gate compares prepared domains: a stanza whose `from`
/// spells the verified domain in upper case is the same pair and is delivered.
#[test]
fn core_s2s_06_verified_domain_compared_after_preparation() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    let bob = User::new(&x.server, "bob");
    let mut cb = bob.online(&x.server, "r");
    x.peer.send(&format!(
        "<message from='x@PEER.Test/r' to='{}/r' type='chat' id='m1'><body>case</body></message>",
        bob.jid
    ));
    let (m, _) = cb.recv_until("the message", |e| e.name == "message");
    assert_eq!(m.attr("id"), Some("m1"), "{m:?}\n{}", x.peer.transcript());
}

/// RFC 6120 §8.3: a message of an undefined type from the verified peer is answered with a
/// bad-request error message, sent back to the peer on the server's outgoing stream.
#[test]
fn s2s_undefined_message_type_is_bounced_to_peer_as_bad_request() {
    let mut x = authed(&[], auth("peer.test", "goodkey"));
    let bob = User::new(&x.server, "bob");
    let _cb = bob.online(&x.server, "r");
    x.peer.send(&format!(
        "<message from='x@peer.test/r' to='{}/r' type='bogus' id='b1'><body>x</body></message>",
        bob.jid
    ));
    let ev = x.auth.next_where(
        "the bad-request bounce",
        |e| matches!(e, AuthEv::Other(el, _) if el.attr("id") == Some("b1")),
    );
    let AuthEv::Other(r, raw) = ev else {
        unreachable!()
    };
    assert_eq!(r.name, "message", "{raw}");
    assert_eq!(r.attr("type"), Some("error"), "{raw}");
    assert_eq!(r.attr("to"), Some("x@peer.test/r"), "{raw}");
    let cond = r
        .elements()
        .find(|c| c.name == "error")
        .and_then(|e| e.elements().find(|c| c.ns == NS_STANZAS))
        .map(|c| c.name.clone());
    assert_eq!(cond.as_deref(), Some("bad-request"), "{raw}");
    x.peer
        .expect_silence(QUIET, "nothing on the peer's inbound stream");
}
