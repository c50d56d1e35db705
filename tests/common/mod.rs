//! End-to-end test harness: starts the real `xmppd` binary on ephemeral loopback ports with a
//! temporary data directory, creates accounts with the real admin CLI, and speaks raw XML over
//! TCP/TLS. Assertions are on what comes back on the wire.
#![allow(dead_code)]

pub mod ca;
pub mod dns;
pub mod s2s;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;
use xmppd::xml::{self, Element, Frame, Framer, StreamHeader, StreamNs};

/// Parses `text`, one element in the `jabber:client` namespace (a test's own fixture).
pub fn parse_client(text: &str) -> Element {
    xml::parse_element(
        text.as_bytes(),
        &StreamNs::new("jabber:client"),
        &xml::Limits::default(),
    )
    .unwrap()
}

/// How long to wait for any expected data.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub const DOMAIN: &str = "localhost";

/// A running server.
pub struct Server {
    child: Mutex<Child>,
    _stdin: Mutex<Option<ChildStdin>>,
    pub c2s: SocketAddr,
    pub c2s_tls: Option<SocketAddr>,
    /// The HTTP port (WebSocket, BOSH, XEP-0156), unless turned off.
    pub http: Option<SocketAddr>,
    /// The HTTPS port, unless turned off.
    pub https: Option<SocketAddr>,
    /// The metrics port, with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
    /// The XEP-0114 component port, when components are configured (`--component`).
    pub component: Option<SocketAddr>,
    /// The server-to-server port, unless federation is off.
    pub s2s: Option<SocketAddr>,
    /// The direct-TLS server-to-server port, with `--s2s-tls-listen`.
    pub s2s_tls: Option<SocketAddr>,
    /// The data directory.
    pub data: PathBuf,
    /// The first served domain (`--domain`, else `localhost`).
    pub domain: String,
    _tmp: Option<tempfile::TempDir>,
    pub log: Arc<Mutex<String>>,
    users: AtomicUsize,
    args: Vec<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_xmppd")
}

impl Server {
    /// Start a server with extra flags on a fresh temporary data directory.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_on(dir.path(), extra);
        s._tmp = Some(dir);
        s
    }

    /// Start a server on a data directory the caller owns (it survives the server).
    pub fn start_on(data: &Path, extra: &[&str]) -> Server {
        Server::start_full(data, extra, &[])
    }

    /// Start a server on a fresh temporary data directory with the per-address limits
    /// applied to loopback too (every other start exempts loopback, since the tests connect
    /// from it, often and with failures on purpose).
    pub fn start_strict(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_inner(dir.path(), extra, &[], true);
        s._tmp = Some(dir);
        s
    }

    /// Start a server with extra flags and environment variables on a data directory the
    /// caller owns: to restart on the state of an earlier run (stop that one first, e.g. with
    /// `signal_and_wait(libc::SIGTERM)`), with or without test hooks.
    pub fn start_on_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_full(data, extra, env)
    }

    /// Start a server with extra flags and environment variables on a fresh temporary data
    /// directory.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_full(dir.path(), extra, env);
        s._tmp = Some(dir);
        s
    }

    fn start_full(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_inner(data, extra, env, false)
    }

    fn start_inner(data: &Path, extra: &[&str], env: &[(&str, &str)], strict: bool) -> Server {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data.to_str().unwrap().into(),
            "--c2s-listen".into(),
            "127.0.0.1:0".into(),
            "--c2s-tls-listen".into(),
            "127.0.0.1:0".into(),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--https-listen".into(),
            "127.0.0.1:0".into(),
            "--component-listen".into(),
            "127.0.0.1:0".into(),
            "--log".into(),
            "xmppd=debug,warn".into(),
        ];
        if !strict {
            args.push("--exempt-loopback".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        if !args.iter().any(|a| a == "--s2s-listen") {
            args.extend(["--s2s-listen".into(), "127.0.0.1:0".into()]);
        }
        let mut child = Command::new(bin())
            .arg("serve")
            .args(&args)
            .arg("--exit-on-stdin-eof")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xmppd");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("xmppd ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        let field = |name: &str| -> Vec<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().unwrap())
                        .collect()
                })
                .unwrap_or_default()
        };
        let stdin = child.stdin.take();
        let domain = args
            .iter()
            .position(|a| a == "--domain")
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| DOMAIN.to_string());
        Server {
            domain,
            c2s: field("c2s=")[0],
            c2s_tls: field("c2s_tls=").first().copied(),
            http: field("http=").first().copied(),
            https: field("https=").first().copied(),
            metrics: field("metrics=").first().copied(),
            component: field("component=").first().copied(),
            s2s: field("s2s=").first().copied(),
            s2s_tls: field("s2s_tls=").first().copied(),
            child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
            data: data.to_path_buf(),
            _tmp: None,
            log,
            users: AtomicUsize::new(0),
            args,
        }
    }

    /// A server shared by all tests of one test binary (it exits with the binary).
    pub fn shared() -> &'static Server {
        static S: OnceLock<Server> = OnceLock::new();
        S.get_or_init(|| Server::start(&["--shards", "2"]))
    }

    pub fn cert_path(&self) -> PathBuf {
        self.data.join("tls").join("cert.pem")
    }

    /// Run an admin command against this server's data directory.
    pub fn admin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut child = Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .args(match self.domain.as_str() {
                DOMAIN => Vec::new(),
                d => vec!["--domain", d],
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn admin");
        // The command may exit before reading (e.g. a refused JID): ignore a broken pipe.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    /// Create an account.
    pub fn adduser(&self, local: &str, password: &str) {
        let out = self.admin(
            &[
                "adduser",
                &format!("{local}@{}", self.domain),
                "--password-stdin",
            ],
            &format!("{password}\n"),
        );
        assert!(
            out.status.success(),
            "adduser failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh account with a unique name: (localpart, password).
    pub fn new_user(&self, prefix: &str) -> (String, String) {
        let n = self.users.fetch_add(1, Ordering::SeqCst);
        let local = format!("{prefix}{n}");
        let pw = format!("pw-{local}-secret");
        self.adduser(&local, &pw);
        (local, pw)
    }

    /// A fresh account homed on the given shard (with `shards` shards).
    pub fn new_user_on_shard(&self, prefix: &str, shard: usize, shards: usize) -> (String, String) {
        loop {
            let n = self.users.fetch_add(1, Ordering::SeqCst);
            let local = format!("{prefix}{n}");
            if xmppd::shard::shard_of(&format!("{local}@{}", self.domain), shards) == shard {
                let pw = format!("pw-{local}-secret");
                self.adduser(&local, &pw);
                return (local, pw);
            }
        }
    }

    /// Close the server's standard input (with `--exit-on-stdin-eof`, a stop request).
    pub fn close_stdin(&self) {
        drop(self._stdin.lock().unwrap().take());
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Send a signal and wait for exit (bounded).
    pub fn signal_and_wait(&self, sig: i32) -> Option<std::process::ExitStatus> {
        let pid = self.pid() as i32;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, sig);
        }
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.lock().unwrap().try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the client read.
#[derive(Debug)]
pub enum Event {
    Header(StreamHeader),
    El(Element, String),
    Close,
    Eof,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => t.get_ref(),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(b),
            Transport::Tls(t) => t.read(b),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(b),
            Transport::Tls(t) => t.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}

/// A raw XML client.
pub struct Client {
    io: Option<Transport>,
    framer: Framer,
    buf: Vec<u8>,
    ns: Option<StreamNs>,
    pub jid: Option<String>,
    pub stream_id: Option<String>,
    /// Everything received, for diagnostics.
    pub transcript: String,
    cert: Option<PathBuf>,
    /// The domain the stream is opened to (the server's first `--domain`).
    pub domain: String,
}

pub fn tls_config(cert: &Path, alpn: Option<&[u8]>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(a) = alpn {
        cfg.alpn_protocols = vec![a.to_vec()];
    }
    Arc::new(cfg)
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client::connect_stream(s)
    }

    fn connect_stream(s: TcpStream) -> Client {
        Client {
            io: Some(Transport::Plain(s)),
            framer: Framer::new(xml::Limits::default()),
            buf: Vec::new(),
            ns: None,
            jid: None,
            stream_id: None,
            transcript: String::new(),
            cert: None,
            domain: DOMAIN.to_string(),
        }
    }

    /// Connect with a small, fixed receive buffer (kernel autotuning off), to play a client
    /// that stops reading.
    pub fn plain_small_rcvbuf(server: &Server) -> Client {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(16 * 1024).unwrap();
        sock.connect(&server.c2s.into()).unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client::connect_stream(s);
        c.cert = Some(server.cert_path());
        c.domain = server.domain.clone();
        c
    }

    /// Connect to the plain port of `server` from the loopback address `src` (e.g.
    /// 127.0.0.2: another address for the per-address limits).
    pub fn plain_from(server: &Server, src: std::net::Ipv4Addr) -> std::io::Result<Client> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        sock.bind(&SocketAddr::from((src, 0)).into())?;
        sock.connect(&server.c2s.into())?;
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_nodelay(true)?;
        let mut c = Client::connect_stream(s);
        c.cert = Some(server.cert_path());
        c.domain = server.domain.clone();
        Ok(c)
    }

    /// Connect to the plain port of `server`.
    pub fn plain(server: &Server) -> Client {
        let mut c = Client::connect(server.c2s);
        c.cert = Some(server.cert_path());
        c.domain = server.domain.clone();
        c
    }

    /// Connect to the plain port, open the stream and negotiate STARTTLS.
    pub fn secured(server: &Server) -> Client {
        let mut c = Client::plain(server);
        c.negotiate();
        c.starttls();
        c
    }

    /// Connect to the direct-TLS port (XEP-0368).
    pub fn direct_tls(server: &Server, alpn: Option<&[u8]>) -> std::io::Result<Client> {
        let mut c = Client::connect(server.c2s_tls.expect("direct TLS port"));
        c.cert = Some(server.cert_path());
        c.domain = server.domain.clone();
        c.upgrade(alpn)?;
        Ok(c)
    }

    /// Wrap the TCP stream in TLS and complete the handshake.
    pub fn upgrade(&mut self, alpn: Option<&[u8]>) -> std::io::Result<()> {
        let cfg = tls_config(self.cert.as_ref().expect("cert"), alpn);
        let name = self.domain.clone();
        self.upgrade_with(cfg, &name)
    }

    /// Wrap the TCP stream in TLS with `cfg`, for server name `name`, and complete the
    /// handshake.
    pub fn upgrade_with(
        &mut self,
        cfg: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> std::io::Result<()> {
        let Some(Transport::Plain(tcp)) = self.io.take() else {
            panic!("already TLS");
        };
        let name = name.to_string().try_into().unwrap();
        let conn = rustls::ClientConnection::new(cfg, name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.io = Some(Transport::Tls(Box::new(tls)));
        self.framer.reset();
        self.buf.clear();
        Ok(())
    }

    pub fn tls_conn(&self) -> Option<&rustls::ClientConnection> {
        match self.io.as_ref()? {
            Transport::Tls(t) => Some(&t.conn),
            Transport::Plain(_) => None,
        }
    }

    pub fn send(&mut self, s: &str) {
        let io = self.io.as_mut().expect("open");
        io.write_all(s.as_bytes()).expect("write");
        io.flush().expect("flush");
    }

    /// Answers the disco#info request `iq` (a XEP-0115 caps query, say) with `info`, a
    /// `<query xmlns='http://jabber.org/protocol/disco#info'>` element, given the asked `node`.
    pub fn answer_disco_info(&mut self, iq: &Element, info: &str, node: &str) {
        let (id, to) = (iq.attr("id").unwrap(), iq.attr("from").unwrap());
        let mut answer = info.to_string();
        answer.insert_str(answer.find('>').unwrap(), &format!(" node='{node}'"));
        self.send(&format!(
            "<iq type='result' id='{id}' to='{to}'>{answer}</iq>"
        ));
    }

    /// Send raw bytes, ignoring errors (the server may have closed already).
    pub fn send_bytes(&mut self, b: &[u8]) {
        if let Some(io) = self.io.as_mut() {
            let _ = io.write_all(b);
            let _ = io.flush();
        }
    }

    /// Send, giving up after `d` (the peer stopped reading): true if everything was written.
    pub fn send_within(&mut self, b: &[u8], d: Duration) -> bool {
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        io.tcp().set_write_timeout(Some(d)).unwrap();
        let ok = io.write_all(b).and_then(|()| io.flush()).is_ok();
        let _ = io.tcp().set_write_timeout(None);
        ok
    }

    pub fn open_stream(&mut self) {
        // Every stream (including a restart) is a new XML document.
        self.framer.reset();
        let domain = self.domain.clone();
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        ));
    }

    /// Read the next event, or None on timeout.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.framer.next(&self.buf) {
                Ok(Some((frame, used))) => {
                    let ev = match frame {
                        Frame::StreamOpen(h) => {
                            self.stream_id = h.id.clone();
                            Event::Header(h)
                        }
                        Frame::Element(raw) => {
                            let raw_s = String::from_utf8_lossy(raw).into_owned();
                            let el = xml::parse_element(
                                raw,
                                self.framer.stream_ns(),
                                &xml::Limits::default(),
                            )
                            .unwrap_or_else(|e| panic!("server sent bad XML {raw_s}: {e}"));
                            if el.name == "success" && el.ns == "urn:ietf:params:xml:ns:xmpp-sasl" {
                                // The server's next stream header starts a new document.
                                self.framer.reset();
                            }
                            Event::El(el, raw_s)
                        }
                        Frame::Whitespace => {
                            self.buf.drain(..used);
                            continue;
                        }
                        Frame::StreamClose => Event::Close,
                    };
                    self.buf.drain(..used);
                    return Some(ev);
                }
                Ok(None) => {}
                Err(e) => panic!(
                    "server output not well-formed: {e}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let io = self.io.as_mut()?;
            io.tcp().set_read_timeout(Some(deadline - now)).unwrap();
            let mut chunk = [0u8; 16384];
            match io.read(&mut chunk) {
                Ok(0) => return Some(Event::Eof),
                Ok(n) => {
                    self.transcript
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(_) => return Some(Event::Eof),
            }
        }
    }

    pub fn recv(&mut self) -> Event {
        match self.try_recv(TIMEOUT) {
            Some(e) => e,
            None => panic!("timed out; transcript: {}", self.transcript),
        }
    }

    pub fn recv_header(&mut self) -> StreamHeader {
        match self.recv() {
            Event::Header(h) => h,
            e => panic!("expected a stream header, got {e:?}"),
        }
    }

    pub fn recv_el(&mut self) -> Element {
        match self.recv() {
            Event::El(e, _) => e,
            e => panic!(
                "expected an element, got {e:?}; transcript: {}",
                self.transcript
            ),
        }
    }

    /// The next element and its raw text.
    pub fn recv_raw(&mut self) -> (Element, String) {
        match self.recv() {
            Event::El(e, raw) => (e, raw),
            e => panic!("expected an element, got {e:?}"),
        }
    }

    /// Expect a stream error with `condition`, then the close and the end of the connection.
    pub fn expect_stream_error(&mut self, condition: &str) {
        loop {
            match self.recv() {
                Event::Header(_) => continue,
                Event::El(e, raw) => {
                    if e.name == "error" && e.ns == "http://etherx.jabber.org/streams" {
                        let cond = e
                            .elements()
                            .find(|c| {
                                c.ns == "urn:ietf:params:xml:ns:xmpp-streams" && c.name != "text"
                            })
                            .map(|c| c.name.clone());
                        assert_eq!(cond.as_deref(), Some(condition), "stream error: {raw}");
                        break;
                    }
                    panic!(
                        "expected stream error {condition}, got {raw}; transcript {}",
                        self.transcript
                    );
                }
                e => panic!(
                    "expected stream error {condition}, got {e:?}; transcript {}",
                    self.transcript
                ),
            }
        }
        match self.recv() {
            Event::Close => {}
            e => panic!("expected </stream:stream> after the error, got {e:?}"),
        }
        self.expect_eof();
    }

    /// The server closes the TCP connection (bounded wait).
    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            match self.try_recv(Duration::from_millis(200)) {
                Some(Event::Eof) => return,
                Some(e) => panic!("expected the connection to close, got {e:?}"),
                None => {}
            }
        }
        panic!("connection not closed");
    }

    /// Nothing arrives within `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        if let Some(e) = self.try_recv(d) {
            panic!("expected silence, got {e:?}");
        }
    }

    /// Open a stream and read the header and features.
    pub fn negotiate(&mut self) -> (StreamHeader, Element) {
        self.open_stream();
        let h = self.recv_header();
        let f = self.recv_el();
        assert_eq!(f.name, "features", "{f:?}");
        (h, f)
    }

    /// STARTTLS on the current stream, then open the encrypted stream.
    pub fn starttls(&mut self) -> (StreamHeader, Element) {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let p = self.recv_el();
        assert_eq!(p.name, "proceed", "{p:?}");
        self.upgrade(None).expect("TLS handshake");
        self.negotiate()
    }

    /// SASL PLAIN; returns the server's answer element (success or failure).
    pub fn auth_plain(&mut self, user: &str, password: &str) -> Element {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
        ));
        self.recv_el()
    }

    /// A SCRAM exchange; returns the final element (success or failure).
    pub fn auth_scram(&mut self, mech: &str, user: &str, password: &str) -> Element {
        let plus = mech.ends_with("-PLUS");
        let cb = if plus {
            let conn = self.tls_conn().expect("TLS for PLUS");
            if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                let mut out = [0u8; 32];
                conn.export_keying_material(&mut out, b"EXPORTER-Channel-Binding", Some(&[]))
                    .unwrap();
                Some(("tls-exporter", out.to_vec()))
            } else {
                let der = std::fs::read(self.cert.as_ref().unwrap()).unwrap();
                let _ = der;
                panic!("TLS 1.2 PLUS not exercised here")
            }
        } else {
            None
        };
        let mut s = Scram::new(mech, user, password, cb);
        let first = s.client_first();
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            b64(first.as_bytes())
        ));
        let ch = self.recv_el();
        if ch.name != "challenge" {
            return ch;
        }
        let server_first = unb64(&ch.text());
        let Some(fin) = s.client_final(&server_first) else {
            panic!("bad server-first {server_first:?}");
        };
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            b64(fin.as_bytes())
        ));
        let end = self.recv_el();
        if end.name == "success" {
            let v = unb64(&end.text());
            assert_eq!(v, s.expected_v(), "server signature");
        }
        end
    }

    /// Bind a resource; returns the bound JID.
    pub fn bind(&mut self, resource: Option<&str>) -> String {
        let res = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>"
        ));
        let r = self.recv_el();
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        let jid = r
            .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(|j| j.text())
            .expect("jid");
        self.jid = Some(jid.clone());
        jid
    }

    /// STARTTLS + SCRAM-SHA-256 + restart + bind.
    pub fn login(server: &Server, user: &str, password: &str, resource: Option<&str>) -> Client {
        Client::login_on(Client::plain(server), user, password, resource)
    }

    /// Log in on an already connected client.
    pub fn login_on(mut c: Client, user: &str, password: &str, resource: Option<&str>) -> Client {
        c.negotiate();
        c.starttls();
        let r = c.auth_scram("SCRAM-SHA-256", user, password);
        assert_eq!(r.name, "success", "{r:?}");
        let (_, f) = c.negotiate();
        assert!(f
            .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .is_some());
        c.bind(resource);
        c
    }

    /// Log in and send initial presence; consumes the presence echo.
    pub fn online(server: &Server, user: &str, password: &str, resource: Option<&str>) -> Client {
        let mut c = Client::login(server, user, password, resource);
        c.send("<presence/>");
        let p = c.recv_el();
        assert_eq!(p.name, "presence", "{p:?}");
        c
    }

    /// Close the stream politely and expect the server's closing tag.
    pub fn close(&mut self) {
        self.send("</stream:stream>");
        loop {
            match self.recv() {
                Event::Close => break,
                Event::Eof => return,
                _ => continue,
            }
        }
        self.expect_eof();
    }

    /// Drop the TCP connection without closing the stream.
    pub fn drop_tcp(mut self) {
        if let Some(io) = self.io.take() {
            let _ = io.tcp().shutdown(std::net::Shutdown::Both);
        }
    }
}

/// HMAC-SHA-256 (or HMAC-SHA-1) as SCRAM uses it.
pub fn scram_hmac(sha256: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    if sha256 {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn unb64(s: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .unwrap(),
    )
    .unwrap()
}

/// A SCRAM client (RFC 5802) for tests.
pub struct Scram {
    sha256: bool,
    user: String,
    password: String,
    nonce: String,
    gs2: String,
    cb: Option<Vec<u8>>,
    first_bare: String,
    auth_message: String,
    salted: Vec<u8>,
}

impl Scram {
    pub fn new(mech: &str, user: &str, password: &str, cb: Option<(&str, Vec<u8>)>) -> Scram {
        let gs2 = match &cb {
            Some((name, _)) => format!("p={name},,"),
            None => "n,,".to_string(),
        };
        Scram {
            sha256: mech.starts_with("SCRAM-SHA-256"),
            user: user.into(),
            password: password.into(),
            nonce: format!("cnonce{}", std::process::id()),
            gs2,
            cb: cb.map(|(_, d)| d),
            first_bare: String::new(),
            auth_message: String::new(),
            salted: Vec::new(),
        }
    }

    pub fn client_first(&mut self) -> String {
        self.first_bare = format!("n={},r={}", self.user, self.nonce);
        format!("{}{}", self.gs2, self.first_bare)
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        scram_hmac(self.sha256, key, data)
    }

    fn h(&self, data: &[u8]) -> Vec<u8> {
        if self.sha256 {
            sha2::Sha256::digest(data).to_vec()
        } else {
            sha1::Sha1::digest(data).to_vec()
        }
    }

    pub fn client_final(&mut self, server_first: &str) -> Option<String> {
        let mut r = None;
        let mut s = None;
        let mut i = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                r = Some(v.to_string());
            } else if let Some(v) = part.strip_prefix("s=") {
                s = Some(base64::engine::general_purpose::STANDARD.decode(v).ok()?);
            } else if let Some(v) = part.strip_prefix("i=") {
                i = Some(v.parse::<u32>().ok()?);
            }
        }
        let (r, s, i) = (r?, s?, i?);
        if !r.starts_with(&self.nonce) {
            return None;
        }
        self.salted = vec![0u8; if self.sha256 { 32 } else { 20 }];
        if self.sha256 {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(self.password.as_bytes(), &s, i, &mut self.salted);
        } else {
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(self.password.as_bytes(), &s, i, &mut self.salted);
        }
        let mut cbind = self.gs2.as_bytes().to_vec();
        if let Some(cb) = &self.cb {
            cbind.extend_from_slice(cb);
        }
        let without_proof = format!("c={},r={r}", b64(&cbind));
        self.auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_key = self.hmac(&self.salted, b"Client Key");
        let stored = self.h(&client_key);
        let sig = self.hmac(&stored, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        Some(format!("{without_proof},p={}", b64(&proof)))
    }

    pub fn expected_v(&self) -> String {
        let server_key = self.hmac(&self.salted, b"Server Key");
        format!(
            "v={}",
            b64(&self.hmac(&server_key, self.auth_message.as_bytes()))
        )
    }
}

/// The condition child of a stanza error.
pub fn stanza_error(el: &Element) -> Option<(String, String, Option<String>)> {
    let e = el.child("error", &el.ns)?;
    let cond = e
        .elements()
        .find(|c| c.ns == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name != "text")?;
    Some((
        cond.name.clone(),
        e.attr("type").unwrap_or_default().to_string(),
        e.attr("code").map(str::to_string),
    ))
}

// ---------------------------------------------------------------------------------------------
// RFC 6121 helpers: waiting on content rather than order, draining, rosters.

/// The roster namespace.
pub const NS_ROSTER: &str = "jabber:iq:roster";

/// A named test on a received element, for [`Client::recv_all`].
pub type Wanted<'a> = (&'a str, &'a dyn Fn(&Element) -> bool);

/// How many stanzas a content-matching wait may skip before it gives up.
const MAX_SKIPPED: usize = 200;

impl Client {
    /// The bare JID of the bound resource.
    pub fn bare(&self) -> String {
        let jid = self.jid.as_deref().expect("bound");
        jid.split('/').next().unwrap_or(jid).to_string()
    }

    /// The full JID of the bound resource.
    pub fn full(&self) -> String {
        self.jid.clone().expect("bound")
    }

    /// Receive until an element matches `pred` (each read bounded by `TIMEOUT`); returns it
    /// and the elements skipped on the way.
    pub fn recv_until(
        &mut self,
        what: &str,
        pred: impl Fn(&Element) -> bool,
    ) -> (Element, Vec<Element>) {
        let mut skipped = Vec::new();
        while skipped.len() < MAX_SKIPPED {
            match self.try_recv(TIMEOUT) {
                Some(Event::El(e, _)) if pred(&e) => return (e, skipped),
                Some(Event::El(e, _)) => skipped.push(e),
                other => panic!(
                    "waiting for {what} on {:?}: got {other:?}; skipped {skipped:?}",
                    self.jid
                ),
            }
        }
        panic!("never got {what} on {:?}; skipped {skipped:?}", self.jid);
    }

    /// Receive until every named predicate matched once, in any order; returns the matches
    /// (in the order of `wanted`) and the other elements seen meanwhile.
    pub fn recv_all(&mut self, wanted: &[Wanted<'_>]) -> (Vec<Element>, Vec<Element>) {
        let mut found: Vec<Option<Element>> = vec![None; wanted.len()];
        let mut others = Vec::new();
        while found.iter().any(Option::is_none) {
            let missing: Vec<&str> = wanted
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|((w, _), _)| *w)
                .collect();
            assert!(
                others.len() < MAX_SKIPPED,
                "never got {missing:?} on {:?}; saw {others:?}",
                self.jid
            );
            let e = match self.try_recv(TIMEOUT) {
                Some(Event::El(e, _)) => e,
                other => panic!(
                    "waiting for {missing:?} on {:?}: got {other:?}; saw {others:?}",
                    self.jid
                ),
            };
            match wanted
                .iter()
                .zip(found.iter_mut())
                .find(|((_, pred), f)| f.is_none() && pred(&e))
            {
                Some((_, slot)) => *slot = Some(e),
                None => others.push(e),
            }
        }
        (found.into_iter().map(Option::unwrap).collect(), others)
    }

    /// Every element that arrives within `d`.
    pub fn collect_for(&mut self, d: Duration) -> Vec<Element> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return out;
            }
            match self.try_recv(deadline - now) {
                Some(Event::El(e, _)) => out.push(e),
                None => return out,
                Some(other) => panic!("collecting on {:?}: got {other:?}", self.jid),
            }
        }
    }

    /// Read until nothing arrives for `quiet`; returns what was read.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Element> {
        let mut out = Vec::new();
        loop {
            match self.try_recv(quiet) {
                Some(Event::El(e, _)) => out.push(e),
                None => return out,
                Some(other) => panic!("draining {:?}: got {other:?}", self.jid),
            }
        }
    }

    /// A ping round trip with the server: everything the client sent before has been read
    /// and dispatched by it. Returns the elements that arrived before the answer.
    pub fn sync(&mut self) -> Vec<Element> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!("sync{}", N.fetch_add(1, Ordering::SeqCst));
        self.send(&format!(
            "<iq type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let (_, before) = self.recv_until("ping answer", |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str())
        });
        before
    }

    /// A roster get: the items, and the other elements that arrived before the result.
    pub fn roster_items(&mut self) -> (Vec<Element>, Vec<Element>) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!("roster{}", N.fetch_add(1, Ordering::SeqCst));
        self.send(&format!(
            "<iq type='get' id='{id}'><query xmlns='{NS_ROSTER}'/></iq>"
        ));
        let (r, before) = self.recv_until("roster result", |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str())
        });
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        let items = r
            .child("query", NS_ROSTER)
            .map(|q| q.elements().cloned().collect())
            .unwrap_or_default();
        (items, before)
    }
}

/// The single item of a roster push, if `e` is a roster push.
pub fn roster_push_item(e: &Element) -> Option<&Element> {
    if e.name != "iq" || e.attr("type") != Some("set") {
        return None;
    }
    e.child("query", NS_ROSTER)?.elements().next()
}

/// True for a roster push about `contact`.
pub fn is_push_for(e: &Element, contact: &str) -> bool {
    roster_push_item(e).is_some_and(|i| i.attr("jid") == Some(contact))
}
/// The stanzas in `seen` from the account `bare` (its bare JID or any of its resources).
pub fn from_account<'a>(seen: &'a [Element], bare: &str) -> Vec<&'a Element> {
    let resource = format!("{bare}/");
    seen.iter()
        .filter(|e| {
            e.attr("from")
                .is_some_and(|f| f == bare || f.starts_with(&resource))
        })
        .collect()
}

/// The presence stanzas in `seen` from the account `bare`.
pub fn presence_from<'a>(seen: &'a [Element], bare: &str) -> Vec<&'a Element> {
    let mut got = from_account(seen, bare);
    got.retain(|e| e.name == "presence");
    got
}

/// A fresh id with `prefix`, unique in this test binary.
pub fn next_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::SeqCst))
}

/// A test account: localpart, password, bare JID.
pub struct User {
    pub local: String,
    pub pw: String,
    pub jid: String,
}

impl User {
    /// A fresh account homed on `shard` of a server with `shards` shards.
    pub fn on_shard(s: &Server, prefix: &str, shard: usize, shards: usize) -> User {
        let (local, pw) = s.new_user_on_shard(prefix, shard, shards);
        let jid = format!("{local}@{}", s.domain).to_lowercase();
        User { local, pw, jid }
    }

    /// A fresh account, wherever it is homed.
    pub fn new(s: &Server, prefix: &str) -> User {
        let (local, pw) = s.new_user(prefix);
        let jid = format!("{local}@{}", s.domain).to_lowercase();
        User { local, pw, jid }
    }

    /// A bound resource that has not sent initial presence.
    pub fn login(&self, s: &Server, resource: &str) -> Client {
        Client::login(s, &self.local, &self.pw, Some(resource))
    }

    /// A bound resource that sent `presence` (initial presence) and got its own echo back
    /// (recognised by content: other resources' presence may come first).
    pub fn available(&self, s: &Server, resource: &str, presence: &str) -> Client {
        let mut c = self.login(s, resource);
        c.send(presence);
        let me = c.full();
        c.recv_until("own presence echo", |e| is_presence(e, None, Some(&me)));
        c
    }

    /// An available resource with plain `<presence/>`.
    pub fn online(&self, s: &Server, resource: &str) -> Client {
        self.available(s, resource, "<presence/>")
    }

    /// The full JID of `resource`.
    pub fn full(&self, resource: &str) -> String {
        format!("{}/{resource}", self.jid)
    }
}

/// `a` gets a subscription to `b`'s presence with the RFC 6121 §3.1 handshake (a: to/both,
/// b: from/both). Both must be available; returns when `a` got `subscribed`, i.e. both sides
/// committed the change.
pub fn subscribe_to(a: &mut Client, b: &mut Client) {
    let (ja, jb) = (a.bare(), b.bare());
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    b.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some(&ja))
    });
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    a.recv_until("subscribed", |e| {
        is_presence(e, Some("subscribed"), Some(&jb))
    });
}

/// True for a presence of type `ty` (None: available) whose `from` is `from` (None: any).
pub fn is_presence(e: &Element, ty: Option<&str>, from: Option<&str>) -> bool {
    e.name == "presence" && e.attr("type") == ty && (from.is_none() || e.attr("from") == from)
}

/// The text of a presence's `<status/>`, if any.
pub fn status_of(e: &Element) -> Option<String> {
    e.child("status", "jabber:client").map(|s| s.text())
}

/// `a` and `b` subscribe to each other (RFC 6121 §3.1; both available, each has seen the
/// other's presence).
pub fn befriend(a: &mut Client, b: &mut Client) {
    let (ja, jb, fa, fb) = (a.bare(), b.bare(), a.full(), b.full());
    a.send(&format!("<presence to='{jb}' type='subscribe'/>"));
    b.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some(&ja))
    });
    b.send(&format!("<presence to='{ja}' type='subscribed'/>"));
    b.send(&format!("<presence to='{ja}' type='subscribe'/>"));
    a.recv_all(&[
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&jb))
        }),
        ("subscribe", &|e: &Element| {
            is_presence(e, Some("subscribe"), Some(&jb))
        }),
        ("contact's presence", &|e: &Element| {
            is_presence(e, None, Some(&fb))
        }),
    ]);
    a.send(&format!("<presence to='{jb}' type='subscribed'/>"));
    b.recv_all(&[
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&ja))
        }),
        ("contact's presence", &|e: &Element| {
            is_presence(e, None, Some(&fa))
        }),
    ]);
}

/// One HTTP response as the tests' raw HTTP clients read it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value (the first of that name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Takes one whole response (head and Content-Length body; none for a HEAD's, `head`) off the
/// front of `buf`; `None` while it is incomplete.
pub fn take_http_response(buf: &mut Vec<u8>, head: bool) -> Option<Resp> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = r.parse(buf).expect("an HTTP response") else {
        return None;
    };
    let status = r.code.expect("a status code");
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("a Content-Length"))
        .unwrap_or(0);
    let len = if head { 0 } else { len };
    if buf.len() < n + len {
        return None;
    }
    let body = buf[n..n + len].to_vec();
    buf.drain(..n + len);
    Some(Resp {
        status,
        headers,
        body,
    })
}
