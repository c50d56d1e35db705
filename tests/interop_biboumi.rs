//! Interop with a real XEP-0114 component nobody here wrote: biboumi, the XMPP–IRC gateway
//! Debian ships (9.0 on Debian 12), installed by `tests/interop/biboumi.sh` when missing.
//!
//! Each test starts its own server with `--component irc.localhost=SECRET` and runs biboumi
//! with a configuration file in a temporary directory that points it at the server's
//! component port (`Server::component`): biboumi opens a `jabber:component:accept` stream,
//! sends its handshake and, once accepted, answers what local clients send to
//! `irc.localhost` and to JIDs at it. What biboumi 9.0 really answers (learned from it):
//!
//! - disco#info on `irc.localhost`: identity `conference/irc` named "Biboumi XMPP-IRC
//!   gateway", features disco#info, muc, commands, ping, mam:2, version, muc#stable_id;
//! - disco#items on `irc.localhost` without a node: a `feature-not-implemented` error (an
//!   answer only biboumi gives: the server itself would not);
//! - disco#items on the commands node: its ad-hoc commands (configure, hello, ping, ...);
//! - a wrong password: it logs the stream error it got and exits with status 1, no retry.
//!
//! The IRC test runs a tiny IRC server in a thread on an ephemeral loopback port, configures
//! biboumi's port for it with biboumi's own ad-hoc command, joins `#test%127.0.0.1@irc.localhost`
//! and exchanges a message each way.
//!
//! biboumi runs with `log_level=0`: its output (every XMPP element it sends and receives) is
//! in the failure messages, with the server's log.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use xmppd::xml::Element;

const COMPONENT: &str = "irc.localhost";
const SECRET: &str = "biboumi-interop-s3cret";
const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS: &str = "http://jabber.org/protocol/disco#items";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// How long biboumi may take to connect, or to give up.
const BIBOUMI_TIMEOUT: Duration = Duration::from_secs(20);

fn interop_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The biboumi binary, installed (once per test binary) by `tests/interop/biboumi.sh`. A
/// machine where it cannot be installed fails the test: CI installs it through that script.
fn biboumi_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(interop_dir().join("biboumi.sh"))
            .output()
            .expect("run tests/interop/biboumi.sh");
        assert!(
            out.status.success(),
            "biboumi is not installed and tests/interop/biboumi.sh could not install it \
             (apt-get install biboumi, as root or with sudo -n): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            std::path::Path::new(&bin).is_file(),
            "tests/interop/biboumi.sh printed {bin:?}, not a binary"
        );
        bin
    })
}

/// A running biboumi; killed when dropped.
struct Biboumi {
    child: Child,
    /// Its standard output and error (its log), as they arrive.
    out: Arc<Mutex<String>>,
    /// The configuration it runs with, for failure messages.
    config: String,
    status: Option<ExitStatus>,
    /// The threads reading its output (done once it exited and they read everything).
    readers: Vec<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Biboumi {
    /// Start biboumi serving `irc.localhost` on the component port `port` with `password`.
    fn start(port: SocketAddr, password: &str) -> Biboumi {
        let bin = biboumi_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        // identd_port=0: no identd (it would bind port 113 as root). policy_directory: the
        // temporary directory (no TLS policy files: no TLS is used). The database keeps the
        // per-IRC-server settings the IRC test makes with an ad-hoc command.
        let config = format!(
            "hostname={COMPONENT}\npassword={password}\nxmpp_server_ip={}\nport={}\n\
             db_name={}\nadmin=\nidentd_port=0\nlog_level=0\nlog_file=\n\
             realname_customization=true\nrealname_from_jid=false\npolicy_directory={}\n",
            port.ip(),
            port.port(),
            dir.path().join("biboumi.sqlite").display(),
            dir.path().display(),
        );
        let path = dir.path().join("biboumi.cfg");
        std::fs::write(&path, &config).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // BIBOUMI_* variables override the file: none from the environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BIBOUMI_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawn biboumi");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut readers = Vec::new();
        for stream in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(stderr) as Box<dyn Read + Send>,
        ] {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            }));
        }
        Biboumi {
            child,
            out,
            config,
            status: None,
            readers,
            _dir: dir,
        }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Everything worth printing when a test fails.
    fn diag(&self, s: &Server) -> String {
        format!(
            "\n--- biboumi config ---\n{}--- biboumi output ---\n{}--- server log ---\n{}",
            self.config,
            self.output(),
            s.log()
        )
    }

    /// Its exit status, if it exited (then its whole output is read, bounded).
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
            if self.status.is_some() {
                let deadline = Instant::now() + Duration::from_secs(2);
                while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        self.status
    }

    /// Wait (bounded) until its output contains `what`; panics if it exits or times out.
    fn wait_for_output(&mut self, s: &Server, what: &str) {
        let deadline = Instant::now() + BIBOUMI_TIMEOUT;
        while !self.output().contains(what) {
            if let Some(st) = self.exited() {
                if self.output().contains(what) {
                    return;
                }
                panic!(
                    "biboumi exited ({st}) before logging {what:?}{}",
                    self.diag(s)
                );
            }
            assert!(
                Instant::now() < deadline,
                "biboumi did not log {what:?} within {BIBOUMI_TIMEOUT:?}{}",
                self.diag(s)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) for it to exit by itself; its status.
    fn wait_exit(&mut self, s: &Server) -> ExitStatus {
        let deadline = Instant::now() + BIBOUMI_TIMEOUT;
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "biboumi still running after {BIBOUMI_TIMEOUT:?}{}",
                self.diag(s)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop it the way its documentation says (SIGTERM: it closes its stream and exits).
    fn terminate(&mut self, s: &Server) -> ExitStatus {
        if self.exited().is_none() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
        }
        self.wait_exit(s)
    }
}

impl Drop for Biboumi {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server serving the component `irc.localhost` with [`SECRET`]; its component port.
fn server() -> (Server, SocketAddr) {
    let s = Server::start(&["--component", &format!("{COMPONENT}={SECRET}")]);
    let port = s.component.unwrap_or_else(|| {
        panic!(
            "no component= in the ready line with --component; log:\n{}",
            s.log()
        )
    });
    (s, port)
}

/// Send an IQ get with `payload` to `to` and return the answer (matched by id).
fn iq_get(c: &mut Client, to: &str, payload: &str) -> Element {
    let id = next_id("bib");
    c.send(&format!(
        "<iq type='get' id='{id}' to='{to}'>{payload}</iq>"
    ));
    let (r, _) = c.recv_until("IQ answer", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    r
}

fn disco_info(c: &mut Client, to: &str) -> Element {
    iq_get(c, to, &format!("<query xmlns='{INFO}'/>"))
}

/// The component is not connected: the server answers for it with an error (COMP-08).
fn assert_unavailable(r: &Element, diag: &dyn Fn() -> String) {
    assert_eq!(r.attr("type"), Some("error"), "{r:?}{}", diag());
    assert_eq!(r.attr("from"), Some(COMPONENT), "{r:?}{}", diag());
    let cond = stanza_error(r).map(|e| e.0);
    assert!(
        matches!(
            cond.as_deref(),
            Some("service-unavailable") | Some("remote-server-not-found")
        ),
        "a disconnected component's IQ: {r:?}{}",
        diag()
    );
}

/// disco#info on `irc.localhost` answered by biboumi itself.
fn assert_biboumi_info(r: &Element, b: &Biboumi, s: &Server) {
    assert_eq!(r.attr("type"), Some("result"), "{r:?}{}", b.diag(s));
    assert_eq!(r.attr("from"), Some(COMPONENT), "{r:?}");
    let q = r.child("query", INFO).expect("disco#info query");
    let identity = q
        .elements()
        .find(|e| e.name == "identity")
        .unwrap_or_else(|| panic!("no identity: {r:?}"));
    assert_eq!(identity.attr("category"), Some("conference"), "{r:?}");
    assert_eq!(identity.attr("type"), Some("irc"), "{r:?}");
    assert_eq!(
        identity.attr("name"),
        Some("Biboumi XMPP-IRC gateway"),
        "{r:?}"
    );
    let features: Vec<&str> = q
        .elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.attr("var"))
        .collect();
    for f in [
        INFO,
        "http://jabber.org/protocol/muc",
        COMMANDS,
        "urn:xmpp:ping",
        "jabber:iq:version",
    ] {
        assert!(features.contains(&f), "{f} missing: {features:?}");
    }
}

/// Start biboumi with the right secret and wait until it is accepted.
fn connected_biboumi(s: &Server, port: SocketAddr) -> Biboumi {
    let mut b = Biboumi::start(port, SECRET);
    b.wait_for_output(s, "Authenticated with the XMPP server");
    b
}

#[test]
fn interop_biboumi_comp_01_04_08_connects_and_answers_disco() {
    let (s, port) = server();
    let u = User::new(&s, "bib");
    let mut c = u.login(&s, "disco");
    let nodiag = || s.log();

    // Not connected yet: the server answers for the component (COMP-08).
    let r = disco_info(&mut c, COMPONENT);
    assert_unavailable(&r, &nodiag);

    // COMP-01/04: biboumi's stream is accepted, its handshake answered with <handshake/>.
    let mut b = connected_biboumi(&s, port);
    let out = b.output();
    assert!(
        out.contains(&format!("XMPP RECEIVING: <stream from='{COMPONENT}' id='")),
        "the server's header must be from {COMPONENT} with an id{}",
        b.diag(&s)
    );
    assert!(
        out.contains("XMPP RECEIVING: <handshake xmlns='jabber:component:accept'/>"),
        "{}",
        b.diag(&s)
    );

    // COMP-08: a client's disco#info reaches biboumi with to/from intact; its answer comes back.
    let r = disco_info(&mut c, COMPONENT);
    assert_biboumi_info(&r, &b, &s);
    // (biboumi logs what it got before it answers; its output is read by another thread.)
    let me = c.full();
    b.wait_for_output(
        &s,
        &format!(
            "XMPP RECEIVING: <iq from='{me}' id='{}' to='{COMPONENT}' type='get'",
            r.attr("id").unwrap()
        ),
    );

    // disco#items without a node: biboumi 9.0 answers feature-not-implemented (its answer,
    // routed back: the server would not say that for a component domain).
    let r = iq_get(&mut c, COMPONENT, &format!("<query xmlns='{ITEMS}'/>"));
    assert_eq!(r.attr("type"), Some("error"), "{r:?}{}", b.diag(&s));
    assert_eq!(r.attr("from"), Some(COMPONENT), "{r:?}");
    assert_eq!(
        stanza_error(&r).map(|e| e.0).as_deref(),
        Some("feature-not-implemented"),
        "{r:?}{}",
        b.diag(&s)
    );

    // disco#items on the commands node: biboumi's ad-hoc commands.
    let r = iq_get(
        &mut c,
        COMPONENT,
        &format!("<query xmlns='{ITEMS}' node='{COMMANDS}'/>"),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}{}", b.diag(&s));
    let q = r.child("query", ITEMS).expect("disco#items query");
    assert_eq!(q.attr("node"), Some(COMMANDS), "{r:?}");
    let nodes: Vec<&str> = q
        .elements()
        .filter(|i| i.name == "item" && i.attr("jid") == Some(COMPONENT))
        .filter_map(|i| i.attr("node"))
        .collect();
    for n in ["configure", "hello", "ping"] {
        assert!(nodes.contains(&n), "command {n} missing: {r:?}");
    }

    // jabber:iq:version: it is biboumi 9.x.
    let r = iq_get(&mut c, COMPONENT, "<query xmlns='jabber:iq:version'/>");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}{}", b.diag(&s));
    let v = r.child("query", "jabber:iq:version").expect("version");
    assert_eq!(
        v.child("name", "jabber:iq:version")
            .map(|n| n.text())
            .as_deref(),
        Some("biboumi"),
        "{r:?}"
    );

    // An ad-hoc command round trip (a set, answered by biboumi).
    let id = next_id("ping");
    c.send(&format!(
        "<iq type='set' id='{id}' to='{COMPONENT}'>\
         <command xmlns='{COMMANDS}' node='ping' action='execute'/></iq>"
    ));
    let (r, _) = c.recv_until("ping command result", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    assert_eq!(r.attr("type"), Some("result"), "{r:?}{}", b.diag(&s));
    let cmd = r.child("command", COMMANDS).expect("command");
    assert_eq!(cmd.attr("status"), Some("completed"), "{r:?}");

    // biboumi leaves (SIGTERM: it closes its stream): the server answers for it again.
    let st = b.terminate(&s);
    assert!(
        st.success(),
        "biboumi's exit on SIGTERM: {st}{}",
        b.diag(&s)
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = disco_info(&mut c, COMPONENT);
        if r.attr("type") == Some("error") || Instant::now() > deadline {
            assert_unavailable(&r, &|| b.diag(&s));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn interop_biboumi_comp_09_domain_in_server_disco_items() {
    let (s, port) = server();
    let u = User::new(&s, "bib");
    let mut c = u.login(&s, "items");
    let b = connected_biboumi(&s, port);
    let r = iq_get(&mut c, DOMAIN, &format!("<query xmlns='{ITEMS}'/>"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}{}", b.diag(&s));
    let q = r.child("query", ITEMS).expect("disco#items query");
    let jids: Vec<&str> = q
        .elements()
        .filter(|i| i.name == "item")
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert!(
        jids.contains(&COMPONENT),
        "{COMPONENT} missing from the server's disco#items: {r:?}"
    );
    // And the listed item answers disco#info (through biboumi).
    let r = disco_info(&mut c, COMPONENT);
    assert_biboumi_info(&r, &b, &s);
}

/// `s` without ANSI colour sequences (the server's log is coloured).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            // ESC [ params letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// What biboumi logs when the server refuses its stream with a stream error.
const REFUSED: &str = "Stream error received from the XMPP server";

#[test]
fn interop_biboumi_comp_05_wrong_secret_refused() {
    let (s, port) = server();
    let u = User::new(&s, "bib");
    let mut c = u.login(&s, "wrong");

    // Alone, with a wrong secret: not-authorized, closed; biboumi gives up (status 1).
    let mut bad = Biboumi::start(port, "not-the-secret");
    let st = bad.wait_exit(&s);
    let out = bad.output();
    assert!(
        !st.success(),
        "biboumi with a wrong secret: {st}{}",
        bad.diag(&s)
    );
    assert!(
        out.contains("XMPP SENDING: <handshake"),
        "it must have sent a handshake{}",
        bad.diag(&s)
    );
    assert!(
        out.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "COMP-05: a wrong handshake gets <not-authorized/>{}",
        bad.diag(&s)
    );
    assert!(out.contains(REFUSED), "{}", bad.diag(&s));
    // The server closed the TCP connection (biboumi saw the end of it).
    assert!(
        out.contains("XMPP server closed connection"),
        "{}",
        bad.diag(&s)
    );
    // The server logs the refusal (its log is read by another thread: bounded wait).
    let deadline = Instant::now() + TIMEOUT;
    while !strip_ansi(&s.log())
        .lines()
        .any(|l| l.contains("component") && l.contains("not-authorized"))
    {
        assert!(
            Instant::now() < deadline,
            "the server's log must tell of the refused handshake{}",
            bad.diag(&s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !out.contains("Authenticated with the XMPP server"),
        "{}",
        bad.diag(&s)
    );
    // It did not take the domain: the server still answers for it.
    let r = disco_info(&mut c, COMPONENT);
    assert_unavailable(&r, &|| bad.diag(&s));

    // The right secret still works afterwards.
    let mut good = connected_biboumi(&s, port);
    let r = disco_info(&mut c, COMPONENT);
    assert_biboumi_info(&r, &good, &s);

    // A wrong secret while the real one is connected: refused, and it takes nothing over:
    // the connected biboumi still gets (and answers) what clients send.
    let mut bad2 = Biboumi::start(port, "still-not-the-secret");
    let st = bad2.wait_exit(&s);
    assert!(!st.success(), "{st}{}", bad2.diag(&s));
    let out2 = bad2.output();
    assert!(
        out2.contains(REFUSED) && !out2.contains("Authenticated with the XMPP server"),
        "{}",
        bad2.diag(&s)
    );
    let r = disco_info(&mut c, COMPONENT);
    assert_biboumi_info(&r, &good, &s);
    // The first biboumi still gets the client's IQs.
    good.wait_for_output(
        &s,
        &format!("id='{}' to='{COMPONENT}'", r.attr("id").unwrap()),
    );
    assert!(
        !bad2.output().contains("XMPP RECEIVING: <iq"),
        "the refused biboumi got a stanza{}",
        bad2.diag(&s)
    );
}

#[test]
fn interop_biboumi_comp_02_second_connection_for_the_domain_refused() {
    let (s, port) = server();
    let u = User::new(&s, "bib");
    let mut c = u.login(&s, "conflict");
    let mut first = connected_biboumi(&s, port);

    // The same domain with the right secret while it is connected: refused (COMP-02:
    // <conflict/> or <host-unknown/>); the first one keeps the domain.
    let mut second = Biboumi::start(port, SECRET);
    let st = second.wait_exit(&s);
    let out = second.output();
    assert!(!st.success(), "{st}{}", second.diag(&s));
    assert!(
        !out.contains("Authenticated with the XMPP server"),
        "a second connection for {COMPONENT} was accepted{}",
        second.diag(&s)
    );
    assert!(
        out.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
            || out.contains("<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "COMP-02: <conflict/> or <host-unknown/>{}",
        second.diag(&s)
    );
    let r = disco_info(&mut c, COMPONENT);
    assert_biboumi_info(&r, &first, &s);
    first.wait_for_output(
        &s,
        &format!("id='{}' to='{COMPONENT}'", r.attr("id").unwrap()),
    );
}

/// A tiny IRC server for one connection: registers the client, answers a JOIN with the
/// channel's topic, names and a message from `ircbob`, confirms a PART, and records every
/// line it gets.
struct FakeIrcd {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl FakeIrcd {
    fn start() -> FakeIrcd {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let lines2 = lines.clone();
        std::thread::spawn(move || {
            // Everything bounded: the thread ends by itself.
            let deadline = Instant::now() + Duration::from_secs(60);
            let sock = loop {
                match listener.accept() {
                    Ok((sock, _)) => break sock,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => return,
                }
            };
            sock.set_nonblocking(false).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut w = sock.try_clone().unwrap();
            let mut send = |l: String| {
                let _ = w.write_all(format!("{l}\r\n").as_bytes());
            };
            let mut r = BufReader::new(sock);
            let mut nick = String::from("*");
            let mut line = String::new();
            while Instant::now() < deadline {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        continue
                    }
                    Err(_) => return,
                }
                let l = line.trim_end().to_string();
                lines2.lock().unwrap().push(l.clone());
                let p: Vec<&str> = l.split(' ').collect();
                match p[0] {
                    "CAP" if p.get(1) == Some(&"REQ") => send(format!(
                        ":fake.irc CAP * NAK :{}",
                        p[2..].join(" ").trim_start_matches(':')
                    )),
                    "NICK" if p.len() > 1 => nick = p[1].trim_start_matches(':').to_string(),
                    "USER" => {
                        send(format!(
                            ":fake.irc 001 {nick} :Welcome to the fake IRC server"
                        ));
                        send(format!(":fake.irc 376 {nick} :End of MOTD"));
                    }
                    "JOIN" if p.len() > 1 => {
                        let ch = p[1].trim_start_matches(':');
                        send(format!(":{nick}!u@127.0.0.1 JOIN :{ch}"));
                        send(format!(":fake.irc 332 {nick} {ch} :the fake topic"));
                        send(format!(":fake.irc 353 {nick} = {ch} :{nick} ircbob"));
                        send(format!(":fake.irc 366 {nick} {ch} :End of /NAMES list."));
                        send(format!(":ircbob!b@127.0.0.1 PRIVMSG {ch} :hello from irc"));
                    }
                    "PART" if p.len() > 1 => send(format!(":{nick}!u@127.0.0.1 PART {}", p[1])),
                    "PING" if p.len() > 1 => send(format!(":fake.irc PONG fake.irc {}", p[1])),
                    "QUIT" => return,
                    _ => {}
                }
            }
        });
        FakeIrcd { port, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait (bounded) for a line.
    fn wait_line(&self, line: &str, diag: &dyn Fn() -> String) {
        self.wait_for(line, |l| l == line, diag)
    }

    /// Wait (bounded) for a line that starts with `prefix`.
    fn wait_prefix(&self, prefix: &str, diag: &dyn Fn() -> String) {
        self.wait_for(prefix, |l| l.starts_with(prefix), diag)
    }

    fn wait_for(&self, line: &str, pred: impl Fn(&str) -> bool, diag: &dyn Fn() -> String) {
        let deadline = Instant::now() + BIBOUMI_TIMEOUT;
        while !self.lines().iter().any(|l| pred(l)) {
            assert!(
                Instant::now() < deadline,
                "the IRC server never got {line:?}; got {:?}{}",
                self.lines(),
                diag()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn interop_biboumi_comp_07_irc_channel_round_trip() {
    let (s, port) = server();
    let ircd = FakeIrcd::start();
    let u = User::new(&s, "bib");
    let mut c = u.online(&s, "irc");
    let b = connected_biboumi(&s, port);
    let diag = || format!("{}\n--- IRC lines ---\n{:?}", b.diag(&s), ircd.lines());
    let irc_server = format!("127.0.0.1@{COMPONENT}");
    let room = format!("#test%127.0.0.1@{COMPONENT}");

    // biboumi's own ad-hoc command on the IRC server's JID: our port, plain text, no
    // throttling (biboumi otherwise sends one line a second).
    let id = next_id("cfg");
    c.send(&format!(
        "<iq type='set' id='{id}' to='{irc_server}'>\
         <command xmlns='{COMMANDS}' node='configure' action='execute'/></iq>"
    ));
    let (r, _) = c.recv_until("configure form", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    assert_eq!(r.attr("type"), Some("result"), "{r:?}{}", diag());
    assert_eq!(r.attr("from"), Some(irc_server.as_str()), "{r:?}");
    let cmd = r.child("command", COMMANDS).expect("command");
    let session = cmd.attr("sessionid").expect("sessionid").to_string();
    let id = next_id("cfg");
    c.send(&format!(
        "<iq type='set' id='{id}' to='{irc_server}'>\
         <command xmlns='{COMMANDS}' node='configure' sessionid='{session}' action='complete'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='ports'><value>{}</value></field>\
         <field var='tls_ports'/>\
         <field var='throttle_limit'><value>-1</value></field>\
         </x></command></iq>",
        ircd.port
    ));
    let (r, _) = c.recv_until("configure done", |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str())
    });
    assert_eq!(r.attr("type"), Some("result"), "{r:?}{}", diag());
    assert_eq!(
        r.child("command", COMMANDS).and_then(|c| c.attr("status")),
        Some("completed"),
        "{r:?}"
    );

    // Join: presence to an in-room JID (COMP-07: any JID at the component's domain).
    c.send(&format!(
        "<presence to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ));
    let from_room = |nick: &str| format!("{room}/{nick}");
    let (alice, bob) = (from_room("alice"), from_room("ircbob"));
    let is_self = |e: &Element| {
        e.name == "presence"
            && e.attr("from") == Some(alice.as_str())
            && e.attr("type").is_none()
            && e.child("x", MUC_USER).is_some_and(|x| {
                x.elements()
                    .any(|st| st.name == "status" && st.attr("code") == Some("110"))
            })
    };
    let is_bob = |e: &Element| {
        e.name == "presence" && e.attr("from") == Some(bob.as_str()) && e.attr("type").is_none()
    };
    let is_subject = |e: &Element| {
        e.name == "message"
            && e.child("subject", "jabber:client")
                .is_some_and(|s| s.text() == "the fake topic")
    };
    let is_hello = |e: &Element| {
        e.name == "message"
            && e.attr("type") == Some("groupchat")
            && e.attr("from") == Some(bob.as_str())
            && e.child("body", "jabber:client")
                .is_some_and(|b| b.text() == "hello from irc")
    };
    let (got, _) = c.recv_all(&[
        ("self presence (110)", &is_self),
        ("ircbob's presence", &is_bob),
        ("subject", &is_subject),
        ("ircbob's message", &is_hello),
    ]);
    assert_eq!(got[0].attr("to"), Some(c.full().as_str()), "{:?}", got[0]);
    ircd.wait_line("JOIN #test", &diag);
    assert!(
        ircd.lines().iter().any(|l| l == "NICK alice"),
        "{:?}",
        ircd.lines()
    );

    // XMPP → IRC, and biboumi's reflection of it back to the room.
    c.send(&format!(
        "<message type='groupchat' id='m1' to='{room}'><body>hello from xmpp</body></message>"
    ));
    ircd.wait_line("PRIVMSG #test :hello from xmpp", &diag);
    let (echo, _) = c.recv_until("reflected message", |e| {
        e.name == "message"
            && e.attr("from") == Some(alice.as_str())
            && e.child("body", "jabber:client")
                .is_some_and(|b| b.text() == "hello from xmpp")
    });
    assert_eq!(echo.attr("type"), Some("groupchat"), "{echo:?}");

    // Leave.
    c.send(&format!("<presence to='{room}/alice' type='unavailable'/>"));
    c.recv_until("own unavailable presence", |e| {
        e.name == "presence"
            && e.attr("from") == Some(alice.as_str())
            && e.attr("type") == Some("unavailable")
    });
    ircd.wait_prefix("PART #test", &diag);
}
