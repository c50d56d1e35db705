//! Interop with a real web client nobody here wrote: Converse.js (the pinned npm release in
//! `tests/webclient/package-lock.json`) in Debian's headless Chromium, driven by
//! playwright-core, logging in over XMPP on WebSocket (RFC 7395) and over BOSH (XEP-0124/0206)
//! on the HTTP listener.
//!
//! `tests/webclient/setup.sh` installs what it needs when missing: Debian's `chromium` with
//! apt-get, and the npm packages with `npm ci` into `tests/webclient/node_modules` (ignored by
//! git, kept for the next run). `tests/webclient/run.mjs` serves a minimal page with
//! Converse's own `dist/` from loopback and opens it twice, once per account, each in its own
//! browser context: both log in with `auto_login`, A types a chat message to B and presses
//! Enter, B's page shows it, B replies, A's shows it; A creates `room1@conference.localhost` by
//! joining it, B joins, A sees B among the occupants, and each one's groupchat message shows in
//! the other's room; A logs out (Converse sends the framing's `<close/>`), and B sees A leave
//! the room. One test does it over `ws://` (the server with `--allow-plaintext`, so
//! SCRAM works without TLS), one over `wss://` (the server's self-signed certificate accepted
//! by Chromium), and one over BOSH at `http://…/http-bind` (`--allow-plaintext`; Converse's
//! XHRs from the page's origin go through CORS). Screenshots of both pages are left in
//! `target/interop-artifacts/conversejs-{ws,wss,bosh}/`.
//!
//! The script prints `conversejs ok` only when all of that worked; it bounds every wait, and
//! this test bounds the whole run and kills the script's process group (Node and Chromium)
//! when it overruns or fails. It also lists every IQ error the pages got (with what was asked)
//! for diagnosis; Converse copes with those.

mod common;

use common::*;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The whole browser run, installed: about 10 s on a quiet machine; `run.mjs` gives up after
/// 100 s by itself, this is the backstop.
const RUN_TIMEOUT: Duration = Duration::from_secs(150);

const ROOM: &str = "room1@conference.localhost";

fn webclient_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webclient")
}

/// Where screenshots go: `target/interop-artifacts/` in the repository (beside
/// `target/interop-venv/` of the Python interop tests), wherever the build itself goes.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-artifacts")
}

/// What `setup.sh` set up: (chromium, node).
fn setup() -> (String, String) {
    let started = Instant::now();
    let out = Command::new(webclient_dir().join("setup.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("run tests/webclient/setup.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "setting up Converse.js and Chromium failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    if !stderr.trim().is_empty() {
        eprintln!("{stderr}");
    }
    eprintln!("setup took {:.1?}", started.elapsed());
    let field = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in setup.sh's output {stdout:?}"))
            .to_string()
    };
    (field("chromium="), field("node="))
}

/// Kills the script's process group (Node) and the process groups of Node's children when
/// dropped, unless Node exited by itself. Playwright starts Chromium detached, in a process
/// group of its own, so killing Node's group alone would leave the browser to notice its
/// closed pipe by itself.
struct Group(Child);

impl Group {
    fn kill(&mut self) {
        let pid = self.0.id() as i32;
        // Node's children (the browser), found before Node dies and they are re-parented.
        let children = children_of(pid);
        // SAFETY: kill(2) on the process group of our own child (its leader, made so by
        // `process_group(0)`), and on the groups our child's own children lead (Chromium's
        // main process leads its group; its helpers are in it).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            for c in children {
                if libc::kill(-c, libc::SIGKILL) != 0 {
                    libc::kill(c, libc::SIGKILL);
                }
            }
        }
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.kill();
        }
    }
}

/// The processes whose parent is `pid` (from /proc/*/stat).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let child: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces and parentheses, so after the last ')'.
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid).then_some(child)
    })
    .collect()
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Which endpoint Converse logs in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// `ws://` on `--http-listen`, the server started with `--allow-plaintext` (SCRAM only).
    Ws,
    /// `wss://` on `--https-listen` with the server's self-signed certificate (Chromium told to
    /// accept it), the server started without `--allow-plaintext`.
    Wss,
    /// BOSH at `http://…/http-bind` on `--http-listen`, the server with `--allow-plaintext`.
    Bosh,
}

/// What one run showed.
struct Run {
    stdout: String,
    out_dir: PathBuf,
}

impl Run {
    /// The mechanisms the server offered `who` ("A" or "B"), as `run.mjs` read them off the
    /// wire.
    fn offered(&self, who: &str) -> Vec<&str> {
        let prefix = format!("{who} SASL mechanisms offered: ");
        self.stdout
            .lines()
            .find_map(|l| l.split_once(&prefix).map(|(_, m)| m))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{}", self.stdout))
            .split_whitespace()
            .collect()
    }

    /// The mechanism `who` authenticated with, read off the wire.
    fn used(&self, who: &str) -> &str {
        let prefix = format!("{who} SASL mechanism on the wire: ");
        self.stdout
            .lines()
            .find_map(|l| l.split_once(&prefix).map(|(_, m)| m.trim()))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{}", self.stdout))
    }
}

/// Runs `tests/webclient/run.mjs` against a fresh server with two fresh accounts; panics with
/// the script's output (pages' console, page errors, every WebSocket frame) and the server's
/// log unless it printed `conversejs ok`.
fn run(transport: Transport) -> Run {
    // One browser at a time: two cores, and each run starts two pages.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static SETUP: OnceLock<(String, String)> = OnceLock::new();
    let (chromium, node) = SETUP.get_or_init(setup);

    let s = match transport {
        Transport::Ws | Transport::Bosh => Server::start(&["--allow-plaintext"]),
        Transport::Wss => Server::start(&[]),
    };
    let url = match transport {
        Transport::Ws => format!("ws://{}/xmpp-websocket", s.http.expect("the HTTP listener")),
        Transport::Wss => format!(
            "wss://{}/xmpp-websocket",
            s.https.expect("the HTTPS listener")
        ),
        Transport::Bosh => format!("http://{}/http-bind", s.http.expect("the HTTP listener")),
    };
    let url_var = match transport {
        Transport::Bosh => "XMPPD_BOSH_URL",
        _ => "XMPPD_WS_URL",
    };
    let (a, pa) = s.new_user("cjsa");
    let (b, pb) = s.new_user("cjsb");
    let name = format!("{transport:?}").to_lowercase();
    let out_dir = artifacts_dir().join(format!("conversejs-{name}"));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();

    let started = Instant::now();
    let mut child = Command::new(node)
        .arg(webclient_dir().join("run.mjs"))
        .current_dir(webclient_dir())
        .env(url_var, &url)
        .env("XMPPD_A_JID", format!("{a}@{DOMAIN}"))
        .env("XMPPD_A_PW", &pa)
        .env("XMPPD_B_JID", format!("{b}@{DOMAIN}"))
        .env("XMPPD_B_PW", &pb)
        .env("XMPPD_ROOM", ROOM)
        .env("XMPPD_OUT", &out_dir)
        .env(
            "XMPPD_IGNORE_CERT",
            if transport == Transport::Wss {
                "1"
            } else {
                "0"
            },
        )
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map(Group)
        .expect("start node tests/webclient/run.mjs");
    let stdout = read_all(child.0.stdout.take().unwrap());
    let stderr = read_all(child.0.stderr.take().unwrap());
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break Some(st);
        }
        if started.elapsed() > RUN_TIMEOUT {
            child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(child);
    let elapsed = started.elapsed();
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let ok = status.is_some_and(|st| st.success()) && stdout.contains("conversejs ok");
    if !ok {
        panic!(
            "Converse.js over {url} failed ({}; after {elapsed:.1?})\n--- run.mjs stdout:\n\
             {stdout}\n--- run.mjs stderr (pages' console, page errors, WebSocket frames):\n\
             {stderr}\n--- server log:\n{}",
            match status {
                Some(st) => format!("{st}"),
                None => format!("killed after {RUN_TIMEOUT:?}"),
            },
            s.log()
        );
    }
    // Shown with --nocapture (or when an assertion below fails).
    eprintln!("--- run.mjs stderr:\n{stderr}");
    println!("--- run.mjs stdout ({url}, {elapsed:.1?}):\n{stdout}");
    for line in [
        "B got A's chat message",
        "A got B's reply",
        "B got A's groupchat message",
        "A got B's groupchat message",
        "A logged out",
        "B saw",
    ] {
        assert!(stdout.contains(line), "no {line:?} in\n{stdout}");
    }
    for who in ["A", "B"] {
        let png = out_dir.join(format!("conversejs-{who}.png"));
        let len = std::fs::metadata(&png)
            .unwrap_or_else(|e| panic!("no screenshot {png:?}: {e}"))
            .len();
        assert!(len > 1000, "{png:?} is only {len} bytes");
        println!("screenshot: {}", png.display());
    }
    Run { stdout, out_dir }
}

/// Over `ws://`, without TLS: the server offers only SCRAM (no PLAIN, and no `-PLUS` without a
/// channel to bind to), and Converse logs in with SCRAM-SHA-256.
#[test]
fn interop_conversejs_websocket_login_chat_and_muc() {
    let r = run(Transport::Ws);
    for who in ["A", "B"] {
        let offered = r.offered(who);
        assert!(
            !offered.is_empty() && offered.iter().all(|m| m.starts_with("SCRAM-SHA-")),
            "over ws:// the server offered {who} {offered:?}"
        );
        assert!(
            !offered
                .iter()
                .any(|m| *m == "PLAIN" || m.ends_with("-PLUS")),
            "{offered:?}"
        );
        assert_eq!(r.used(who), "SCRAM-SHA-256", "{who} in {:?}", r.out_dir);
    }
}

/// Over `wss://`: the server counts the WebSocket's TLS as the stream's (there is no STARTTLS
/// over WebSocket), so it offers what it offers on TLS, PLAIN too, without
/// `--allow-plaintext`; Converse still prefers SCRAM-SHA-256 (Strophe has no `-PLUS`
/// mechanisms).
#[test]
fn interop_conversejs_secure_websocket_login_chat_and_muc() {
    let r = run(Transport::Wss);
    for who in ["A", "B"] {
        let offered = r.offered(who);
        assert!(
            offered.contains(&"PLAIN") && offered.contains(&"SCRAM-SHA-256"),
            "over wss:// the server offered {who} {offered:?}"
        );
        assert_eq!(r.used(who), "SCRAM-SHA-256", "{who} in {:?}", r.out_dir);
    }
}

/// Over BOSH (`http://`, no TLS): the same scenario on XEP-0124/0206 sessions: session
/// creation and `xmpp:restart` (checked by `run.mjs` on the wire), SCRAM as over `ws://`, and
/// the logout's `type='terminate'` request ending A's session, which B's room sees.
#[test]
fn interop_conversejs_bosh_login_chat_and_muc() {
    let r = run(Transport::Bosh);
    for who in ["A", "B"] {
        let offered = r.offered(who);
        assert!(
            !offered.is_empty() && offered.iter().all(|m| m.starts_with("SCRAM-SHA-")),
            "over BOSH on http:// the server offered {who} {offered:?}"
        );
        assert_eq!(r.used(who), "SCRAM-SHA-256", "{who} in {:?}", r.out_dir);
    }
}
