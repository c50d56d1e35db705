//! Several processes on one data directory, and durability across `kill -9`.
//!
//! The child processes are this test binary itself, re-executed with `CHILD_ROLE` set so
//! that only `child_process_entry` runs and plays the requested role.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{account, opts, TempDir};
use xmppd_storage::Storage;

const CHILD_ROLE: &str = "XMPPD_STORAGE_TEST_CHILD_ROLE";
const CHILD_DIR: &str = "XMPPD_STORAGE_TEST_CHILD_DIR";

/// The child side; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("child without a directory"));
    match role.as_str() {
        "write-accounts" => write_accounts(&dir),
        "ack-writes" => ack_writes(&dir),
        other => panic!("unknown child role {other}"),
    }
}

fn spawn_child(role: &str, dir: &Path, stdout: Stdio) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .env(CHILD_DIR, dir)
        .stdout(stdout)
        .spawn()
        .unwrap()
}

/// Like the admin CLI: a synchronous write, plus one through the group-commit writer.
fn write_accounts(dir: &Path) {
    let s = Storage::open(dir, &opts()).unwrap();
    s.accounts().create("cli@example.org", &account(1)).unwrap();
    s.accounts()
        .create_async("queued@example.org", account(2))
        .wait()
        .unwrap();
    s.shutdown();
}

#[test]
fn writes_from_another_process_are_visible_to_an_open_handle() {
    let tmp = TempDir::new("multiproc");
    let dir = tmp.path().join("data");
    let s = Storage::open(&dir, &opts()).unwrap();
    let a = s.accounts();
    assert!(!a.exists("cli@example.org").unwrap());

    let status = spawn_child("write-accounts", &dir, Stdio::null())
        .wait()
        .unwrap();
    assert!(status.success(), "child failed: {status}");

    assert_eq!(a.get("cli@example.org").unwrap(), Some(account(1)));
    assert_eq!(a.get("queued@example.org").unwrap(), Some(account(2)));
    assert_eq!(a.list().unwrap(), ["cli@example.org", "queued@example.org"]);
    // And this process can still write after the other one did.
    a.create_async("server@example.org", account(3))
        .wait()
        .unwrap();
    assert!(a.exists("server@example.org").unwrap());
}

/// How long a child keeps writing if nobody kills it: a guard against a stuck parent, not
/// an expectation about speed.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// Writes accounts through the group-commit writer from several threads and prints each
/// key only after its Completion resolved Ok, until killed.
fn ack_writes(dir: &Path) {
    let s = Storage::open(dir, &opts()).unwrap();
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let accounts = s.accounts();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while start.elapsed() < CHILD_DEADLINE {
                    let batch: Vec<_> = (i..i + 8)
                        .map(|n| {
                            let jid = format!("t{t}-{n}@example.org");
                            (accounts.create_async(&jid, account(n)), jid)
                        })
                        .collect();
                    for (done, jid) in batch {
                        done.wait().unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {jid}").unwrap();
                        out.flush().unwrap();
                    }
                    i += 8;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let tmp = TempDir::new("kill9");
    let dir = tmp.path().join("data");
    // Like a running server while an admin tool gets killed.
    let server = Storage::open(&dir, &opts()).unwrap();
    let mut child = spawn_child("ack-writes", &dir, Stdio::piped());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acked = HashSet::new();
    let read_ack = |out: &mut BufReader<_>, acked: &mut HashSet<String>| -> bool {
        let mut line = Vec::new();
        if out.read_until(b'\n', &mut line).unwrap() == 0 {
            return false;
        }
        // A line cut short by the kill is not an acknowledgement.
        if let Some(jid) = line
            .strip_prefix(b"ACK ")
            .and_then(|l| l.strip_suffix(b"\n"))
        {
            acked.insert(String::from_utf8(jid.to_vec()).unwrap());
        }
        true
    };
    while acked.len() < 200 {
        assert!(
            read_ack(&mut out, &mut acked),
            "child stopped before acknowledging 200 writes"
        );
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    // Acknowledgements already in the pipe count too.
    while read_ack(&mut out, &mut acked) {}
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "child was not killed mid-stream: {status}"
        );
    }

    // The handle that was open all along sees every acknowledged write and can still write,
    // even if the child died holding LMDB's writer lock.
    assert_all_present(&server, &acked);
    server
        .accounts()
        .create_async("after-crash@example.org", account(0))
        .wait()
        .unwrap();
    drop(server);

    // So does a fresh open of the environment.
    let reopened = Storage::open(&dir, &opts()).unwrap();
    assert_all_present(&reopened, &acked);
    assert!(reopened
        .accounts()
        .exists("after-crash@example.org")
        .unwrap());
    reopened
        .accounts()
        .create_async("after-reopen@example.org", account(0))
        .wait()
        .unwrap();
}

fn assert_all_present(s: &Storage, acked: &HashSet<String>) {
    let a = s.accounts();
    let missing: Vec<_> = acked.iter().filter(|jid| !a.exists(jid).unwrap()).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {missing:?}",
        missing.len(),
        acked.len()
    );
}
