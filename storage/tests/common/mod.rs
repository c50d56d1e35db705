//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use xmppd_storage::{Account, Completion, Options, ScramKeys, Storage};

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
