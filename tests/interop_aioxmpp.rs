//! Interop with a real peer's own test suite: aioxmpp's upstream end-to-end tests (every
//! `aioxmpp.e2etest.TestCase` in the release's `tests/`), run by its pytest plugin against a
//! two-shard xmppd. `tests/interop/aioxmpp/setup.sh` installs the pinned aioxmpp from PyPI in a
//! virtualenv and unpacks the same release's tests (see there for where they come from).
//!
//! xmppd has neither SASL ANONYMOUS nor in-band registration, so the suite uses aioxmpp's
//! `StaticPasswordProvisioner` with accounts made here by the admin CLI, half of them on each
//! shard, through a subclass that never hands one account to two tests
//! (`tests/interop/aioxmpp/xmppd_provision.py`: upstream's tests assume clean accounts). It trusts the server's self-signed certificate by pinning it (aioxmpp's certificate
//! pin store), so TLS is verified, not switched off.
//!
//! aioxmpp discovers what the server offers with XEP-0030 and skips the tests of what xmppd
//! does not advertise (a pubsub service, ad-hoc commands, HTTP upload). The test
//! fails if any upstream test fails or errors, if the run does not finish in time, or if fewer
//! tests pass than did when this harness was written (a feature silently no longer offered).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Accounts for the provisioner, each handed to one test only
/// (`tests/interop/aioxmpp/xmppd_provision.py`): upstream's 70 end-to-end tests use at most
/// four each (tests/entitycaps), so this is more than the whole suite needs, and a test left
/// without one fails loudly instead of being skipped.
const ACCOUNTS: usize = 320;

/// The whole suite takes under 15 s on a quiet machine; this bounds a hang.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// The timeout aioxmpp gives each `@blocking_timed` test (upstream's default is 1 s, 4 s when
/// `CI=true`): generous for a loaded 2-core CI machine; passing tests do not wait for it.
const TEST_TIMEOUT_SECS: u32 = 20;

/// Upstream tests that pass against xmppd (aioxmpp 0.13.3): 31 when this harness was written,
/// 32 since XEP-0191 blocking (`tests/blocking`), 49 since XEP-0045 (`tests/muc`: its 17
/// tests, voice requests included), 64 since XEP-0049 private XML storage (tests/private_xml,
/// tests/bookmarks), PEP and entity capabilities (tests/pep, tests/entitycaps) with a fresh
/// account for every test. Fewer now means a feature stopped being advertised or a test is
/// no longer collected.
const MIN_PASSED: usize = 64;

/// What `setup.sh` set up.
struct Suite {
    python: PathBuf,
    tests: PathBuf,
}

fn setup() -> Suite {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aioxmpp/setup.sh");
    let out = Command::new(&script)
        .output()
        .expect("run tests/interop/aioxmpp/setup.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "setting up aioxmpp's test suite failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> PathBuf {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in setup.sh's output {stdout:?}"))
            .into()
    };
    Suite {
        python: field("python="),
        tests: field("tests="),
    }
}

/// The features the server advertises in disco#info, as an account sees them.
fn server_features(s: &Server, user: &str, password: &str) -> Vec<String> {
    let mut c = Client::login(s, user, password, Some("features"));
    c.send(&format!(
        "<iq type='get' id='features' to='{DOMAIN}'>\
         <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let (r, _) = c.recv_until("disco#info result", |e| {
        e.name == "iq" && e.attr("id") == Some("features")
    });
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let features = r
        .child("query", "http://jabber.org/protocol/disco#info")
        .expect("disco#info query")
        .elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.attr("var").map(str::to_string))
        .collect();
    c.close();
    features
}

/// An aioxmpp certificate pin store (`pin_type=1`, whole certificates) pinning the server's
/// certificate for the domain: the base64 DER of each certificate in the PEM file.
fn pin_store(cert_pem: &Path) -> String {
    let pem = std::fs::read_to_string(cert_pem).expect("read the server certificate");
    let certs: Vec<String> = pem
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|c| {
            let body = c.split("-----END CERTIFICATE-----").next().unwrap();
            format!("\"{}\"", body.split_whitespace().collect::<String>())
        })
        .collect();
    assert!(!certs.is_empty(), "no certificate in {cert_pem:?}");
    format!("{{\"{DOMAIN}\": [{}]}}\n", certs.join(", "))
}

/// pytest's outcome counts, from its closing line
/// (`===== 31 passed, 39 skipped, 4460 deselected, 1 warning in 8.12s =====`).
#[derive(Debug, Default)]
struct Counts {
    passed: usize,
    failed: usize,
    errors: usize,
    skipped: usize,
    deselected: usize,
    /// Anything else counted (xfailed, xpassed, …), as (word, count).
    other: Vec<(String, usize)>,
}

fn parse_counts(output: &str) -> Option<Counts> {
    let line = output
        .lines()
        .rev()
        .map(|l| l.trim().trim_matches('=').trim())
        .find(|l| {
            l.contains(" in ")
                && l.split(' ')
                    .next()
                    .is_some_and(|n| n.parse::<usize>().is_ok())
        })?;
    let (counts, _) = line.rsplit_once(" in ")?;
    let mut c = Counts::default();
    for part in counts.split(", ") {
        let (n, word) = part.split_once(' ')?;
        let n: usize = n.parse().ok()?;
        match word {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "error" | "errors" => c.errors = n,
            "skipped" => c.skipped = n,
            "deselected" => c.deselected = n,
            "warning" | "warnings" => {}
            w => c.other.push((w.to_string(), n)),
        }
    }
    Some(c)
}

#[test]
fn parse_counts_reads_pytests_closing_line() {
    let c = parse_counts(
        "x\n== 8 failed, 31 passed, 31 skipped, 4460 deselected, 3 warnings, 1 error in 6.19s ==\n",
    )
    .unwrap();
    assert_eq!(
        (c.passed, c.failed, c.errors, c.skipped, c.deselected),
        (31, 8, 1, 31, 4460)
    );
    assert!(c.other.is_empty());
    assert!(parse_counts("no summary here\n").is_none());
}

#[test]
fn aioxmpp_upstream_e2e_suite_passes() {
    let suite = setup();
    let s = Server::start(&["--shards", "2"]);
    // Accounts alternate between the two shards; one `xmppd import` makes them all.
    let mut accounts: Vec<(String, String)> = Vec::with_capacity(ACCOUNTS);
    let mut n = 0;
    while accounts.len() < ACCOUNTS {
        let local = format!("aioxmpp{n}");
        n += 1;
        if xmppd::shard::shard_of(&format!("{local}@{DOMAIN}"), 2) == accounts.len() % 2 {
            let pw = format!("pw-{local}-secret");
            accounts.push((local, pw));
        }
    }
    let list = tempfile::NamedTempFile::new().expect("account list");
    let lines: String = accounts
        .iter()
        .map(|(u, p)| format!("{u}@{DOMAIN} {p}\n"))
        .collect();
    std::fs::write(list.path(), lines).unwrap();
    let out = s.admin(&["import", list.path().to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // aioxmpp's quirks: what the server lacks that the tests cannot learn from disco. None
    // since XEP-0049 (aioxmpp skipped tests/private_xml and tests/bookmarks through its own
    // quirk `no-xep-0049` while xmppd did not advertise `jabber:iq:private`).
    let features = server_features(&s, &accounts[0].0, &accounts[0].1);
    assert!(
        features.iter().any(|f| f == "jabber:iq:private"),
        "{features:?}"
    );
    let quirks: Vec<&str> = Vec::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let pins = dir.path().join("pins.json");
    std::fs::write(&pins, pin_store(&s.cert_path())).unwrap();
    let config = dir.path().join("e2etest.ini");
    let accounts_literal = accounts
        .iter()
        .map(|(u, p)| format!("(\"{u}\", \"{p}\")"))
        .collect::<Vec<_>>()
        .join(", ");
    let quirks_literal = quirks
        .iter()
        .map(|q| format!("\"{q}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aioxmpp/e2etest.ini"),
    )
    .expect("read tests/interop/aioxmpp/e2etest.ini");
    let filled = [
        ("@TIMEOUT@", TEST_TIMEOUT_SECS.to_string()),
        ("@HOST@", s.c2s.ip().to_string()),
        ("@PORT@", s.c2s.port().to_string()),
        ("@DOMAIN@", DOMAIN.to_string()),
        ("@PIN_STORE@", pins.display().to_string()),
        ("@ACCOUNTS@", accounts_literal),
        ("@QUIRKS@", quirks_literal),
    ]
    .iter()
    .fold(template, |t, (k, v)| t.replace(k, v));
    assert!(
        filled
            .lines()
            .all(|l| l.starts_with(';') || !l.contains('@')),
        "unfilled placeholder in {filled}"
    );
    std::fs::write(&config, filled).unwrap();

    // Every e2etest.TestCase under upstream's tests/ (the marker the plugin puts on them);
    // the thousands of unit tests there are deselected.
    let log = dir.path().join("pytest.log");
    let started = Instant::now();
    let mut child = Command::new(&suite.python)
        .args(["-m", "pytest", "-p", "aioxmpp.e2etest"])
        .arg(format!("--e2etest-config={}", config.display()))
        .args(["-m", "aioxmpp_e2etest", "-p", "no:cacheprovider", "-rfEsp"])
        .args(["-W", "ignore::DeprecationWarning", "tests"])
        .current_dir(&suite.tests)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The provisioner class (tests/interop/aioxmpp/xmppd_provision.py).
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aioxmpp"),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("pytest.err")).unwrap())
        .spawn()
        .expect("run pytest");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if started.elapsed() > SUITE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let stderr = std::fs::read_to_string(dir.path().join("pytest.err")).unwrap_or_default();
    let report = || {
        format!(
            "pytest output:\n{output}\npytest stderr:\n{stderr}\nquirks: {quirks:?}\n\
             server log:\n{}",
            s.log()
        )
    };
    let Some(status) = status else {
        panic!(
            "aioxmpp's suite did not finish within {SUITE_TIMEOUT:?}\n{}",
            report()
        );
    };
    let Some(counts) = parse_counts(&output) else {
        panic!("no pytest summary (exit {status})\n{}", report());
    };
    // The summary, for the log of a passing run too (`cargo test -- --nocapture`).
    let summary = output.find("short test summary info").map_or("", |i| {
        &output[output[..i].rfind('\n').map_or(0, |j| j + 1)..]
    });
    println!("{summary}");
    println!(
        "aioxmpp upstream e2e suite: {} passed, {} failed, {} errors, {} skipped \
         ({} unit tests deselected) in {:.1} s; quirks {quirks:?}",
        counts.passed,
        counts.failed,
        counts.errors,
        counts.skipped,
        counts.deselected,
        elapsed.as_secs_f64()
    );
    assert!(
        counts.failed == 0 && counts.errors == 0 && counts.other.is_empty() && status.success(),
        "aioxmpp's suite failed (exit {status}): {counts:?}\n{}",
        report()
    );
    assert!(
        counts.passed >= MIN_PASSED,
        "only {} of aioxmpp's tests passed, {MIN_PASSED} did before: {counts:?}\n{}",
        counts.passed,
        report()
    );
}
