//! The group-commit writer: batching, per-write failure isolation, back-pressure, shutdown.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use common::{account, block_writer, open, wait_all, TempDir};
use xmppd_storage::{Options, Storage, StorageError, Table};

fn put(storage: &Storage, key: String) -> xmppd_storage::Completion<()> {
    storage.submit(move |t| t.put(Table::Accounts, key.as_bytes(), b"v"))
}

fn stored(storage: &Storage, key: &[u8]) -> Option<Vec<u8>> {
    storage
        .write_sync(|t| Ok(t.get(Table::Accounts, key)?.map(<[u8]>::to_vec)))
        .unwrap()
}

#[test]
fn many_concurrent_submitters_all_complete_and_are_visible() {
    let dir = TempDir::new("concurrent");
    let s = open(&dir);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let accounts = s.accounts();
                if t % 2 == 0 {
                    // Many writes in flight from one thread.
                    let pending: Vec<_> = (0..250)
                        .map(|i| accounts.create_async(&format!("u{i}@t{t}.example"), account(i)))
                        .collect();
                    wait_all(pending).into_iter().for_each(|r| r.unwrap());
                } else {
                    // One write at a time.
                    for i in 0..100 {
                        accounts
                            .create_async(&format!("u{i}@t{t}.example"), account(i))
                            .wait()
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let a = s.accounts();
    for t in 0..8u64 {
        let n = if t % 2 == 0 { 250 } else { 100 };
        let jids = a.list_domain(&format!("t{t}.example")).unwrap();
        assert_eq!(jids.len(), n);
        for i in 0..n as u64 {
            assert_eq!(
                a.get(&format!("u{i}@t{t}.example")).unwrap(),
                Some(account(i))
            );
        }
    }
    let stats = s.stats();
    assert_eq!(stats.jobs, 4 * 250 + 4 * 100);
    assert!(stats.commits >= 1 && stats.commits <= stats.jobs);
}

#[test]
fn queued_writes_share_one_commit() {
    let dir = TempDir::new("batch");
    let s = open(&dir);
    let (blocker, release) = block_writer(&s);
    let before = s.stats();
    let pending: Vec<_> = (0..100).map(|i| put(&s, format!("k{i}"))).collect();
    release.send(()).unwrap();
    blocker.wait().unwrap();
    wait_all(pending).into_iter().for_each(|r| r.unwrap());
    let after = s.stats();
    // The blocker was counted as a job when taken, its commit once done; then all 100
    // queued writes went into one transaction.
    assert_eq!(after.jobs - before.jobs, 100);
    assert_eq!(after.commits - before.commits, 2);
}

#[test]
fn a_failing_write_fails_alone_and_is_rolled_back() {
    let dir = TempDir::new("isolation");
    let s = open(&dir);
    let (blocker, release) = block_writer(&s);
    let before = put(&s, "before".into());
    let failing = s.submit(|t| {
        t.put(Table::Accounts, b"half-written", b"x")?;
        Err::<(), _>(StorageError::NotFound)
    });
    let panicking = s.submit(|t| -> Result<(), StorageError> {
        t.put(Table::Accounts, b"panicked", b"x")?;
        panic!("deliberate test panic");
    });
    let value = s.submit(|t| {
        t.put(Table::Accounts, b"after", b"v")?;
        Ok(42)
    });
    release.send(()).unwrap();
    blocker.wait().unwrap();
    before.wait().unwrap();
    assert!(matches!(failing.wait(), Err(StorageError::NotFound)));
    match panicking.wait() {
        Err(StorageError::Panicked(msg)) => assert!(msg.contains("deliberate"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(value.wait().unwrap(), 42);
    assert_eq!(stored(&s, b"before").as_deref(), Some(&b"v"[..]));
    assert_eq!(stored(&s, b"after").as_deref(), Some(&b"v"[..]));
    assert_eq!(stored(&s, b"half-written"), None);
    assert_eq!(stored(&s, b"panicked"), None);
    // The writer thread survived the panic.
    put(&s, "later".into()).wait().unwrap();
}

#[test]
fn a_write_that_fills_the_map_fails_alone() {
    let dir = TempDir::new("mapfull");
    let s = Storage::open(
        &dir.path().join("data"),
        &Options {
            map_size: 1 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    let (blocker, release) = block_writer(&s);
    let small: Vec<_> = (0..10).map(|i| put(&s, format!("small{i}"))).collect();
    let huge = s.submit(|t| t.put(Table::Accounts, b"huge", &vec![7u8; 4 << 20]));
    let more: Vec<_> = (10..20).map(|i| put(&s, format!("small{i}"))).collect();
    release.send(()).unwrap();
    blocker.wait().unwrap();
    match huge.wait() {
        Err(e) => assert!(e.is_full(), "{e}"),
        Ok(()) => panic!("a 4 MiB value fit in a 1 MiB map"),
    }
    wait_all(small)
        .into_iter()
        .chain(wait_all(more))
        .for_each(|r| r.unwrap());
    for i in 0..20 {
        assert!(stored(&s, format!("small{i}").as_bytes()).is_some());
    }
    assert_eq!(stored(&s, b"huge"), None);
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_full_queue_parks_the_submitter_without_blocking() {
    let dir = TempDir::new("backpressure");
    let s = Storage::open(
        &dir.path().join("data"),
        &Options {
            queue_capacity: 2,
            map_size: 64 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    let (blocker, release) = block_writer(&s);
    // Two fill the queue; the rest are returned at once, waiting inside their Completion.
    let queued: Vec<_> = (0..2).map(|i| put(&s, format!("q{i}"))).collect();
    let mut parked = put(&s, "parked".into());
    let more: Vec<_> = (0..10).map(|i| put(&s, format!("m{i}"))).collect();

    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&counter));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut parked).poll(&mut cx).is_pending());
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);

    release.send(()).unwrap();
    blocker.wait().unwrap();
    // Taking the queued batch frees space and wakes the parked submitter.
    wait_all(queued).into_iter().for_each(|r| r.unwrap());
    assert!(counter.0.load(Ordering::SeqCst) >= 1);
    wait_all(vec![parked])
        .into_iter()
        .chain(wait_all(more))
        .for_each(|r| r.unwrap());
    for key in ["q0", "q1", "parked", "m0", "m9"] {
        assert!(stored(&s, key.as_bytes()).is_some(), "{key}");
    }
}

#[test]
fn shutdown_drains_the_queue_then_refuses() {
    let dir = TempDir::new("shutdown");
    let s = open(&dir);
    let (blocker, release) = block_writer(&s);
    let pending: Vec<_> = (0..50).map(|i| put(&s, format!("d{i}"))).collect();
    let stopper = {
        let s = s.clone();
        std::thread::spawn(move || s.shutdown())
    };
    release.send(()).unwrap();
    stopper.join().unwrap();
    blocker.wait().unwrap();
    // Everything queued before shutdown was committed.
    wait_all(pending).into_iter().for_each(|r| r.unwrap());
    assert!(matches!(
        put(&s, "late".into()).wait(),
        Err(StorageError::ShuttingDown)
    ));
    s.shutdown();
    // Reads and synchronous writes still work.
    assert!(stored(&s, b"d49").is_some());
    s.accounts()
        .create("sync@example.org", &account(1))
        .unwrap();
}

#[test]
fn dropping_the_last_handle_commits_queued_writes() {
    let dir = TempDir::new("drop");
    let pending: Vec<_> = {
        let s = open(&dir);
        (0..50).map(|i| put(&s, format!("p{i}"))).collect()
    };
    wait_all(pending).into_iter().for_each(|r| r.unwrap());
    let s = open(&dir);
    for i in 0..50 {
        assert!(stored(&s, format!("p{i}").as_bytes()).is_some());
    }
}

#[test]
fn a_closure_may_hold_the_last_handle() {
    let dir = TempDir::new("self-drop");
    let s = open(&dir);
    let inner = s.clone();
    let c = s.submit(move |t| {
        let _keep = &inner;
        t.put(Table::Accounts, b"k", b"v")
    });
    drop(s);
    // The closure (and with it the last handle) is dropped on the writer thread.
    c.wait().unwrap();
    let s = open_when_released(&dir);
    assert!(stored(&s, b"k").is_some());
}

/// The writer thread may still be releasing the environment when the last Completion
/// resolves; retry the open until this process no longer holds the directory.
fn open_when_released(dir: &TempDir) -> Storage {
    for _ in 0..10_000 {
        match Storage::open(&dir.path().join("data"), &common::opts()) {
            Ok(s) => return s,
            Err(StorageError::AlreadyOpen(_)) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("environment never released");
}
