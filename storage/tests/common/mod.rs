//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use xmppd_storage::{
    Account, Completion, Options, RosterItem, ScramKeys, Storage, StorageError, Subscription,
    Table, WriteTxn,
};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "xmppd-storage-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Small map so tests do not reserve a GiB of address space each.
pub fn opts() -> Options {
    Options {
        map_size: 64 << 20,
        ..Options::default()
    }
}

pub fn open(dir: &TempDir) -> Storage {
    Storage::open(&dir.path().join("data"), &opts()).unwrap()
}

pub fn account(n: u64) -> Account {
    let keys = |len: usize, fill: u8| ScramKeys {
        salt: n.to_le_bytes().to_vec(),
        iterations: 4096,
        stored_key: vec![fill; len],
        server_key: vec![fill ^ 0xff; len],
    };
    Account {
        sha1: keys(20, 1),
        sha256: keys(32, 2),
        created_unix: n,
        disabled: false,
    }
}

/// Occupies the writer thread until the returned sender is used (or dropped), so writes
/// submitted meanwhile queue up and land in one later batch. Returns once the writer is
/// inside the blocking job.
pub fn block_writer(storage: &Storage) -> (Completion<()>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let c = storage.submit(move |_| {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv();
        Ok(())
    });
    started_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("writer never ran the blocker");
    (c, release_tx)
}

/// `Completion::wait` with a hang guard: a lost wake-up fails the test instead of hanging it.
pub fn wait_all<T: Send + 'static>(
    completions: Vec<Completion<T>>,
) -> Vec<Result<T, xmppd_storage::StorageError>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out: Vec<_> = completions.into_iter().map(Completion::wait).collect();
        let _ = tx.send(out);
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("completions never resolved")
}

/// A roster item for `jid` with everything else at its default.
pub fn item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        name: None,
        groups: Vec::new(),
        subscription: Subscription::None,
        ask: false,
        approved: false,
    }
}

/// A group-committed write, waited for.
pub fn write<T: Send + 'static>(
    storage: &Storage,
    f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T, StorageError> + Send + 'static,
) -> T {
    storage.submit(f).wait().unwrap()
}

/// The raw value under `key` in `table`.
pub fn raw(storage: &Storage, table: Table, key: &[u8]) -> Option<Vec<u8>> {
    storage
        .write_sync(|t| Ok(t.get(table, key)?.map(<[u8]>::to_vec)))
        .unwrap()
}

/// Stores every proper prefix of the record at `table`/`key`, then a sample of random
/// bytes, and checks that `read` reports each truncation as `Corrupt` and never panics on
/// the garbage; finally puts the good record back.
pub fn check_stored_record<T: std::fmt::Debug>(
    storage: &Storage,
    table: Table,
    key: &[u8],
    read: impl Fn() -> Result<T, StorageError>,
) {
    let good = raw(storage, table, key).expect("no record to damage");
    let put = |value: Vec<u8>| storage.write_sync(|t| t.put(table, key, &value)).unwrap();
    for cut in 0..good.len() {
        put(good[..cut].to_vec());
        match read() {
            Err(StorageError::Corrupt(_)) => {}
            other => panic!("{table:?} cut at {cut}: {other:?}"),
        }
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut value = good.clone();
        let i = (x as usize) % value.len();
        value[i] ^= (x >> 32) as u8 | 1;
        value.truncate(value.len() - (x >> 40) as usize % 2);
        put(value);
        let _ = read();
    }
    put(good);
    read().unwrap();
}

/// Creates an account for each of `jids` that has none (writes of a user's records need
/// one).
pub fn users(storage: &Storage, jids: &[&str]) {
    for (n, jid) in jids.iter().enumerate() {
        match storage.accounts().create(jid, &account(n as u64)) {
            Ok(()) | Err(StorageError::AlreadyExists) => {}
            Err(e) => panic!("creating {jid}: {e}"),
        }
    }
}
