//! The environment handle: opening, reads, synchronous and group-committed writes, shutdown.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};

use lmdb::{Environment, EnvironmentFlags, Transaction};

use crate::accounts::AccountStore;
use crate::muc::MucStore;
use crate::offline::OfflineStore;
use crate::privacy::PrivacyStore;
use crate::private::PrivateStore;
use crate::pubsub::PubsubStore;
use crate::quota::{FillAlarm, MapGauge, MapUsage};
use crate::roster::RosterStore;
use crate::schema;
use crate::table::{Dbs, TABLE_COUNT};
use crate::txn::{ReadTxn, WriteTxn};
use crate::vcard::VcardStore;
use crate::writer::{self, Completion, Queue, WriterStats};
use crate::StorageError;

/// Limits of one environment. Every process opening the same data directory (server and
/// admin CLI) should use the same `map_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Size of the memory map in bytes: the most data the environment can hold. LMDB only
    /// reserves address space, so a generous value costs nothing. Rounded up to 64 KiB.
    pub map_size: usize,
    /// Most concurrent read transactions over all processes (LMDB reader slots).
    pub max_readers: u32,
    /// Most group-committed writes waiting for the writer thread; at the bound a new
    /// submission's [`Completion`] waits for space instead of queuing (at least 1).
    pub queue_capacity: usize,
    /// Most writes applied in one write transaction (at least 1): bounds the size of one
    /// transaction and how long one commit holds the writer lock.
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            map_size: 1 << 30,
            max_readers: 256,
            queue_capacity: 4096,
            max_batch: 1024,
        }
    }
}

/// Handle to one LMDB environment in a data directory. Cheap to clone (an `Arc` inside);
/// `Send + Sync`, so every shard keeps a clone and reads on its own thread.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

/// Shuts the writer down when the last handle goes away.
struct Inner {
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    writer: Mutex<Option<JoinHandle<()>>>,
    writer_id: Option<ThreadId>,
}

/// What both the handles and the writer thread use.
pub(crate) struct Shared {
    // Field order matters: the environment closes before the directory is released.
    env: Environment,
    dbs: Dbs,
    read_only: bool,
    /// Map-fill thresholds already reported (see [`MapGauge::observe`]).
    fill: FillAlarm,
    dir: OpenDir,
}

impl Storage {
    /// Opens (creating if needed, with owner-only permissions) the environment in `dir`,
    /// brings its schema to this build's version and starts the writer thread.
    pub fn open(dir: &Path, opts: &Options) -> Result<Storage, StorageError> {
        crate::fault::init();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let claim = OpenDir::claim(dir)?;
        let env = builder(opts, EnvironmentFlags::empty()).open_with_permissions(dir, 0o600)?;
        clear_stale_readers(&env);
        let dbs = {
            let txn = env.begin_rw_txn()?;
            let dbs = Dbs::create(&txn)?;
            let mut txn = WriteTxn::new(txn, &dbs);
            schema::prepare(&mut txn)?;
            txn.into_inner().commit()?;
            dbs
        };
        let shared = Arc::new(Shared {
            env,
            dbs,
            read_only: false,
            fill: FillAlarm::default(),
            dir: claim,
        });
        let (queue, rx) = Queue::new(opts.queue_capacity.max(1));
        let writer = std::thread::Builder::new()
            .name("xmppd-storage-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let queue = Arc::clone(&queue);
                let max_batch = opts.max_batch.max(1);
                move || writer::run(shared, queue, rx, max_batch)
            })?;
        let writer_id = Some(writer.thread().id());
        Ok(Storage {
            inner: Arc::new(Inner {
                shared,
                queue,
                writer: Mutex::new(Some(writer)),
                writer_id,
            }),
        })
    }

    /// Opens an existing environment for reading only (for `xmppd check`, `xmppd users`):
    /// no writer thread, every write fails with [`StorageError::ReadOnly`]. Refuses a schema
    /// other than this build's, since it cannot migrate.
    pub fn open_readonly(dir: &Path, opts: &Options) -> Result<Storage, StorageError> {
        if !dir.is_dir() {
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no data directory at {}", dir.display()),
            )));
        }
        let claim = OpenDir::claim(dir)?;
        let env = builder(opts, EnvironmentFlags::READ_ONLY).open(dir)?;
        let dbs = {
            let txn = env.begin_ro_txn()?;
            let dbs = Dbs::open(&txn)?;
            // Committing (not dropping) a read transaction keeps the handles it opened.
            txn.commit()?;
            dbs
        };
        let shared = Arc::new(Shared {
            env,
            dbs,
            read_only: true,
            fill: FillAlarm::default(),
            dir: claim,
        });
        shared.read(schema::check_readonly)?;
        Ok(Storage {
            inner: Arc::new(Inner {
                shared,
                queue: Queue::closed(),
                writer: Mutex::new(None),
                writer_id: None,
            }),
        })
    }

    /// The account store.
    pub fn accounts(&self) -> AccountStore {
        AccountStore::new(self.clone())
    }

    /// The roster store (reads; roster writes are [`WriteTxn`] methods).
    pub fn rosters(&self) -> RosterStore {
        RosterStore::new(self.clone())
    }

    /// The offline message store (reads; writes are [`WriteTxn`] methods).
    pub fn offline(&self) -> OfflineStore {
        OfflineStore::new(self.clone())
    }

    /// The vCard store (reads; writes are [`WriteTxn`] methods).
    pub fn vcards(&self) -> VcardStore {
        VcardStore::new(self.clone())
    }

    /// The privacy list store (reads; writes are [`WriteTxn`] methods).
    pub fn privacy(&self) -> PrivacyStore {
        PrivacyStore::new(self.clone())
    }

    /// The persistent MUC room store (reads; writes are [`WriteTxn`] methods).
    pub fn muc(&self) -> MucStore {
        MucStore::new(self.clone())
    }

    /// The publish-subscribe node and item store (reads; writes are [`WriteTxn`] methods).
    pub fn pubsub(&self) -> PubsubStore {
        PubsubStore::new(self.clone())
    }

    /// The private XML store (XEP-0049; reads; writes are [`WriteTxn`] methods).
    pub fn private(&self) -> PrivateStore {
        PrivateStore::new(self.clone())
    }

    /// The schema version recorded in the environment.
    pub fn schema_version(&self) -> Result<u32, StorageError> {
        Ok(self.read(schema::read_version)?.unwrap_or(0))
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.shared.dir.0
    }

    /// A gauge of the map's fill, for quotas that keep a reserve and for warnings.
    pub fn map_gauge(&self) -> MapGauge {
        MapGauge::new(Arc::clone(&self.inner.shared))
    }

    /// How much of the map the data uses now.
    pub fn map_usage(&self) -> Result<MapUsage, StorageError> {
        self.map_gauge().usage()
    }

    /// Counters of the group-commit writer.
    pub fn stats(&self) -> WriterStats {
        self.inner.queue.stats()
    }

    /// How long the group-commit writer's commits took (the durable write included).
    pub fn commit_latency(&self) -> crate::HistogramSnapshot {
        self.inner.queue.commit_latency.snapshot()
    }

    /// Stops accepting group-committed writes, lets the writer commit everything already
    /// queued, and joins it. Idempotent; also done when the last handle is dropped. Reads
    /// and synchronous writes keep working afterwards. Blocks while the queue drains, so
    /// call it from the main thread, not a shard.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Queues a write for the next group commit. `f` runs on the writer thread inside the
    /// batch transaction (in its own nested transaction: an `Err` or a panic rolls back only
    /// its own changes) and must not block or call this handle's synchronous writes. The
    /// returned [`Completion`] resolves with `f`'s result once the batch is durable.
    ///
    /// Never blocks: when the queue is full the write waits inside the Completion.
    pub fn submit<T, F>(&self, f: F) -> Completion<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTxn<'_>) -> Result<T, StorageError> + Send + 'static,
    {
        if self.inner.shared.read_only {
            return Completion::ready(Err(StorageError::ReadOnly));
        }
        let (job, rx) = writer::job(f);
        Completion::submitted(&self.inner.queue, job, rx)
    }

    /// Runs `f` in its own write transaction on the calling thread and commits it durably
    /// before returning; an `Err` from `f` rolls everything back. For admin tools (another
    /// process may be serving): it waits for LMDB's writer lock and for fsync, so never call
    /// it on a shard thread, nor from inside a [`submit`](Self::submit) closure (deadlock).
    pub fn write_sync<T>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let shared = &self.inner.shared;
        if shared.read_only {
            return Err(StorageError::ReadOnly);
        }
        debug_assert!(
            self.inner.writer_id != Some(std::thread::current().id()),
            "write_sync called on the storage writer thread"
        );
        let mut txn = WriteTxn::new(shared.env.begin_rw_txn()?, &shared.dbs);
        let out = f(&mut txn)?;
        txn.into_inner().commit()?;
        Ok(out)
    }

    /// Runs `f` on a fresh read snapshot taken on the calling thread.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTxn<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.inner.shared.read(f)
    }

    /// The second key parts under `owner \0` in `table` (node names, room names), in byte
    /// order, at most `limit`, starting after `after` (exclusive) when given: for paged
    /// listings (XEP-0059) and disco#items. `what` names the keys in corruption errors.
    pub(crate) fn names_under(
        &self,
        table: crate::table::Table,
        what: &str,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        crate::fault::read(owner)?;
        let prefix = crate::key::prefix(owner)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // `after` is a paging cursor, not a key, so it is not validated: the scan starts at
        // `prefix after \0`, the smallest key above `prefix after` (names hold no NUL).
        let start = match after {
            Some(after) => [&prefix[..], after.as_bytes(), &[0]].concat(),
            None => prefix.clone(),
        };
        self.read(|txn| {
            let mut names = Vec::new();
            for entry in txn.entries_from(table, &start)? {
                let (k, _) = entry?;
                if !k.starts_with(&prefix) {
                    break;
                }
                names.push(crate::key::contact_of(what, &prefix, k)?.to_owned());
                if names.len() == limit {
                    break;
                }
            }
            Ok(names)
        })
    }

    /// How many keys `table` holds under `owner \0`.
    pub(crate) fn count_under(
        &self,
        table: crate::table::Table,
        owner: &str,
    ) -> Result<usize, StorageError> {
        crate::fault::read(owner)?;
        let prefix = crate::key::prefix(owner)?;
        self.read(|txn| {
            txn.entries(table, &prefix)?
                .try_fold(0, |n, entry| entry.map(|_| n + 1))
        })
    }
}

impl Inner {
    fn shutdown(&self) {
        self.queue.close();
        // Held while joining, so a concurrent second caller returns only after the drain.
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = writer.take() {
            // The last handle may be dropped by a write closure on the writer thread itself;
            // it exits on its own once the queue is drained.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    pub(crate) fn env(&self) -> &Environment {
        &self.env
    }

    pub(crate) fn dbs(&self) -> &Dbs {
        &self.dbs
    }

    pub(crate) fn fill(&self) -> &FillAlarm {
        &self.fill
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTxn<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let txn = ReadTxn::new(self.env.begin_ro_txn()?, &self.dbs);
        f(&txn)
    }

    pub(crate) fn clear_stale_readers(&self) {
        clear_stale_readers(&self.env);
    }
}

fn builder(opts: &Options, flags: EnvironmentFlags) -> lmdb::EnvironmentBuilder {
    const MAP_GRANULE: usize = 64 * 1024;
    let map_size = opts.map_size.max(MAP_GRANULE).div_ceil(MAP_GRANULE) * MAP_GRANULE;
    let mut b = Environment::new();
    // NO_TLS: a read transaction belongs to the transaction object, not to a thread-local
    // reader slot, so shard threads (and any executor) can read freely.
    b.set_flags(flags | EnvironmentFlags::NO_TLS)
        .set_max_dbs(TABLE_COUNT as u32)
        .set_max_readers(opts.max_readers.max(1))
        .set_map_size(map_size);
    b
}

/// Frees reader slots whose process died (e.g. a CLI killed mid-read); best effort.
fn clear_stale_readers(env: &Environment) {
    let mut dead: std::os::raw::c_int = 0;
    // SAFETY: `env` is a live, opened environment; `dead` outlives the call.
    unsafe {
        lmdb_sys::mdb_reader_check(env.env(), &mut dead);
    }
}

/// Data directories open in this process. LMDB must not open one environment twice in a
/// process: closing either copy drops the POSIX locks the other relies on.
static OPEN_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// This process's claim on a data directory, released on drop.
struct OpenDir(PathBuf);

impl OpenDir {
    fn claim(dir: &Path) -> Result<OpenDir, StorageError> {
        let dir = dir.canonicalize()?;
        let mut open = OPEN_DIRS.lock().unwrap_or_else(PoisonError::into_inner);
        if open.contains(&dir) {
            return Err(StorageError::AlreadyOpen(dir));
        }
        open.push(dir.clone());
        Ok(OpenDir(dir))
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        OPEN_DIRS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|d| *d != self.0);
    }
}
