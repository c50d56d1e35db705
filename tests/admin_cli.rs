//! The admin CLI: account commands work while the server runs (LMDB is multi-process), and
//! passwords never come from argv.

mod common;

use common::*;

#[test]
fn adduser_passwd_deluser_while_running() {
    let s = Server::start(&[]);
    s.adduser("carol", "first-password");
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_plain("carol", "first-password").name, "success");

    let out = s.admin(
        &["passwd", "carol@localhost", "--password-stdin"],
        "second-password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_plain("carol", "first-password").name, "failure");
    assert_eq!(c.auth_plain("carol", "second-password").name, "success");

    let out = s.admin(&["users"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("carol@localhost"));

    let out = s.admin(&["deluser", "carol@localhost"], "");
    assert!(out.status.success());
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_plain("carol", "second-password").name, "failure");
}

#[test]
fn adduser_refuses_duplicates_and_foreign_domains() {
    let s = Server::start(&[]);
    s.adduser("dave", "pw-dave-1");
    let out = s.admin(&["adduser", "dave@localhost", "--password-stdin"], "x\n");
    assert!(!out.status.success());
    let out = s.admin(
        &["adduser", "eve@elsewhere.example", "--password-stdin"],
        "x\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a served domain"));
    let out = s.admin(&["adduser", "frank@localhost", "--password-stdin"], "\n");
    assert!(!out.status.success(), "empty passwords are refused");
}

#[test]
fn password_file_is_read() {
    let s = Server::start(&[]);
    let pw = s.data.join("pw.txt");
    std::fs::write(&pw, "from-a-file\n").unwrap();
    let out = s.admin(
        &[
            "adduser",
            "gina@localhost",
            "--password-file",
            pw.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = Client::secured(&s);
    assert_eq!(c.auth_plain("gina", "from-a-file").name, "success");
}

#[test]
fn check_and_gen_cert() {
    let s = Server::start(&[]);
    let out = s.admin(&["check"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("schema") && text.contains("ok"), "{text}");
    let out = s.admin(&["gen-cert"], "");
    assert!(
        !out.status.success(),
        "refuses to overwrite without --force"
    );
    let out = s.admin(&["gen-cert", "--force"], "");
    assert!(out.status.success());
}

#[test]
fn shard_of_is_printed() {
    let out = std::process::Command::new(bin())
        .args(["shard-of", "--shards", "2", "alice@localhost"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = xmppd::shard::shard_of("alice@localhost", 2);
    assert_eq!(text.trim(), format!("alice@localhost {expected}"));
}

/// Issue 8: the options of every command (`--data-dir`, `--config`, `--domain`, `--log`, ...)
/// are accepted before the subcommand as well as after it.
#[test]
fn global_options_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(bin())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "xmppd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(
        &[
            "--data-dir",
            data,
            "adduser",
            "before@localhost",
            "--password-stdin",
        ],
        "pw-before\n",
    );
    run(
        &[
            "adduser",
            "after@localhost",
            "--password-stdin",
            "--data-dir",
            data,
        ],
        "pw-after\n",
    );
    run(
        &[
            "--data-dir",
            data,
            "--domain",
            "example.org",
            "--log",
            "warn",
            "adduser",
            "other@example.org",
            "--password-stdin",
        ],
        "pw-other\n",
    );
    let users = run(&["--data-dir", data, "users"], "");
    for jid in ["before@localhost", "after@localhost", "other@example.org"] {
        assert!(users.contains(jid), "{jid} missing from {users:?}");
    }
}

/// Server-run flags stay options of running the server: given before a subcommand, they are
/// refused rather than silently ignored.
#[test]
fn server_flags_before_a_subcommand_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--shards", "2", "users"][..],
        // Were it accepted, the server would start and exit at once (stdin is empty).
        &[
            "--shards",
            "2",
            "serve",
            "--c2s-listen",
            "127.0.0.1:0",
            "--no-c2s-tls",
            "--exit-on-stdin-eof",
        ][..],
    ] {
        let out = std::process::Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "xmppd {args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--shards"), "{err}");
    }
}
