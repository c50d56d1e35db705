//! Interop with a real client library nobody here wrote: slixmpp (PyPI), set up by
//! `tests/interop/setup.sh`. Two clients homed on different shards log in with SCRAM-SHA-256
//! over STARTTLS; `chat.py` chats both ways and pings the server, `im.py` adds a roster item,
//! completes a subscription handshake, sees presence, round-trips a vCard and receives an
//! offline message after reconnecting.

mod common;

use common::*;
use std::process::Command;

/// The virtualenv's interpreter, set up once per test binary.
fn python() -> String {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let setup = Command::new(interop_dir().join("setup.sh"))
                .output()
                .expect("run tests/interop/setup.sh");
            assert!(
                setup.status.success(),
                "setting up slixmpp failed: {}",
                String::from_utf8_lossy(&setup.stderr)
            );
            String::from_utf8(setup.stdout).unwrap().trim().to_string()
        })
        .clone()
}

fn interop_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Run one interop script against a fresh two-shard server with two accounts on different
/// shards; it must print `interop ok`.
fn run(script: &str) {
    let python = python();
    let s = Server::start(&["--shards", "2"]);
    let (a, pa) = s.new_user_on_shard("ia", 0, 2);
    let (b, pb) = s.new_user_on_shard("ib", 1, 2);
    let out = Command::new(&python)
        .arg(interop_dir().join(script))
        .args([
            "127.0.0.1",
            &s.c2s.port().to_string(),
            s.cert_path().to_str().unwrap(),
            &format!("{a}@localhost"),
            &format!("{b}@localhost"),
            &pa,
            &pb,
        ])
        .output()
        .expect("run the interop script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "slixmpp interop ({script}) failed\nstdout: {stdout}\nstderr: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
}

#[test]
fn interop_slixmpp_scram_sha256_starttls_two_shards() {
    run("chat.py");
}

#[test]
fn interop_slixmpp_roster_subscription_presence_vcard_offline() {
    run("im.py");
}
