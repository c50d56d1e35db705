//! Interop with a real client library nobody here wrote: slixmpp (PyPI), set up by
//! `tests/interop/setup.sh`. Two clients homed on different shards log in with SCRAM-SHA-256
//! over STARTTLS, chat both ways and ping the server.

mod common;

use common::*;
use std::process::Command;

#[test]
fn interop_slixmpp_scram_sha256_starttls_two_shards() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let setup = Command::new(here.join("setup.sh"))
        .output()
        .expect("run tests/interop/setup.sh");
    assert!(
        setup.status.success(),
        "setting up slixmpp failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8(setup.stdout).unwrap().trim().to_string();

    let s = Server::start(&["--shards", "2"]);
    let (a, pa) = s.new_user_on_shard("ia", 0, 2);
    let (b, pb) = s.new_user_on_shard("ib", 1, 2);
    let out = Command::new(&python)
        .arg(here.join("chat.py"))
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
        .expect("run chat.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "slixmpp interop failed\nstdout: {stdout}\nstderr: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
}
