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

use common::{account, item, opts, TempDir};
use xmppd_storage::{Storage, Subscription};

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
        "ack-user-data" => ack_user_data(&dir),
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

/// Runs the child `role` against `dir` until it has acknowledged at least `min` writes,
/// kills it with SIGKILL mid-stream, and returns every complete acknowledgement line
/// (without the `ACK ` prefix).
fn acks_until_killed(role: &str, dir: &Path, min: usize) -> HashSet<String> {
    let mut child = spawn_child(role, dir, Stdio::piped());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acked = HashSet::new();
    let read_ack = |out: &mut BufReader<_>, acked: &mut HashSet<String>| -> bool {
        let mut line = Vec::new();
        if out.read_until(b'\n', &mut line).unwrap() == 0 {
            return false;
        }
        // A line cut short by the kill is not an acknowledgement.
        if let Some(ack) = line
            .strip_prefix(b"ACK ")
            .and_then(|l| l.strip_suffix(b"\n"))
        {
            acked.insert(String::from_utf8(ack.to_vec()).unwrap());
        }
        true
    };
    while acked.len() < min {
        assert!(
            read_ack(&mut out, &mut acked),
            "child stopped before acknowledging {min} writes"
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
    acked
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let tmp = TempDir::new("kill9");
    let dir = tmp.path().join("data");
    // Like a running server while an admin tool gets killed.
    let server = Storage::open(&dir, &opts()).unwrap();
    let acked = acks_until_killed("ack-writes", &dir, 200);

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

/// The contact, group-committed roster change, vCard and offline message of user `n` of
/// thread `t` in `ack_user_data`.
fn user_of(t: u64, n: u64) -> String {
    format!("u{t}-{n}@example.org")
}

fn stanza_of(user: &str, k: u64) -> Vec<u8> {
    format!("<message to='{user}'><body>{k}</body></message>").into_bytes()
}

/// Like a server: roster changes (item + version bump + pending request in one write),
/// offline pushes and vCard sets through the group-commit writer from several threads;
/// prints each as `ACK <kind> <user> <value>` only after its Completion resolved Ok.
fn ack_user_data(dir: &Path) {
    let s = Storage::open(dir, &opts()).unwrap();
    let start = Instant::now();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while start.elapsed() < CHILD_DEADLINE {
                    let user = user_of(t, n);
                    let mut pending = Vec::new();
                    let u = user.clone();
                    pending.push((
                        "roster",
                        s.submit(move |txn| {
                            txn.create_account(&u, &account(n))?;
                            let mut contact = item("contact@example.net");
                            contact.subscription = Subscription::To;
                            txn.put_roster_item(&u, &contact)?;
                            txn.put_sub_request(&u, "fan@example.net", b"<presence/>")?;
                            txn.bump_roster_version(&u)
                        }),
                    ));
                    for k in 0..2 {
                        let u = user.clone();
                        pending.push((
                            "offline",
                            s.submit(move |txn| {
                                txn.push_offline(&u, k, "from@example.net", &stanza_of(&u, k), 10)
                                    .map(|seq| seq.expect("quota of 10 full"))
                            }),
                        ));
                    }
                    let u = user.clone();
                    pending.push((
                        "vcard",
                        s.submit(move |txn| txn.put_vcard(&u, u.as_bytes()).map(|()| 0)),
                    ));
                    for (kind, done) in pending {
                        let value = done.wait().unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {kind} {user} {value}").unwrap();
                        out.flush().unwrap();
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn acknowledged_roster_offline_and_vcard_writes_survive_kill_9() {
    let tmp = TempDir::new("kill9-user-data");
    let dir = tmp.path().join("data");
    let server = Storage::open(&dir, &opts()).unwrap();
    let acked = acks_until_killed("ack-user-data", &dir, 400);
    assert_user_data_present(&server, &acked);
    drop(server);
    let reopened = Storage::open(&dir, &opts()).unwrap();
    assert_user_data_present(&reopened, &acked);
    // The writer still works, and sequence numbers go on from where the child left them.
    let user = user_of(0, 0);
    let u = user.clone();
    let seq = reopened
        .submit(move |txn| txn.push_offline(&u, 9, "x@y", b"after", 10))
        .wait()
        .unwrap()
        .unwrap();
    let list = reopened.offline().list(&user).unwrap();
    assert_eq!(list.last().map(|m| m.seq), Some(seq));
    assert!(list.windows(2).all(|w| w[0].seq < w[1].seq));
}

fn assert_user_data_present(s: &Storage, acked: &HashSet<String>) {
    let mut kinds = HashSet::new();
    for ack in acked {
        let mut parts = ack.split(' ');
        let (Some(kind), Some(user), Some(value), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("malformed acknowledgement {ack:?}");
        };
        let value: u64 = value.parse().unwrap();
        kinds.insert(kind);
        match kind {
            "roster" => {
                let roster = s.rosters().load(user).unwrap();
                assert_eq!(roster.version, value, "{ack}");
                assert!(value >= 1 << 63, "{ack}");
                let mut want = item("contact@example.net");
                want.subscription = Subscription::To;
                assert_eq!(roster.items, [want], "{ack}");
                assert_eq!(
                    roster.pending_in,
                    [("fan@example.net".to_owned(), b"<presence/>".to_vec())],
                    "{ack}"
                );
            }
            "offline" => {
                let list = s.offline().list(user).unwrap();
                let m = list.iter().find(|m| m.seq == value);
                let m = m.unwrap_or_else(|| panic!("lost {ack}: {list:?}"));
                assert_eq!(m.stanza, stanza_of(user, m.stamp_unix_ms), "{ack}");
                assert_eq!(s.offline().count(user).unwrap(), list.len());
            }
            "vcard" => {
                assert_eq!(
                    s.vcards().get(user).unwrap().as_deref(),
                    Some(user.as_bytes())
                );
            }
            other => panic!("unknown acknowledgement kind {other}"),
        }
    }
    assert_eq!(kinds.len(), 3, "not every kind of write was acknowledged");
}
