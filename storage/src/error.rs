//! The one error type of the crate.

use std::fmt;
use std::path::PathBuf;

/// Everything a storage call can fail with.
#[derive(Debug)]
pub enum StorageError {
    /// LMDB itself reported an error (map full, I/O failure, reader table full, ...).
    Lmdb(LmdbError),
    /// The record to change or delete does not exist.
    NotFound,
    /// The record to create already exists.
    AlreadyExists,
    /// A write for a user's records (roster, subscription requests, offline messages, vCard)
    /// found no account for the user: it was deleted (or never existed), and the write would
    /// recreate records that a later account with the same JID would inherit. Nothing was
    /// written.
    NoSuchAccount,
    /// Stored bytes could not be decoded; the string says which record and why.
    Corrupt(String),
    /// A JID or name given as (part of) a key is empty or contains a NUL byte, which
    /// composite keys (`user \0 contact`) reserve as their separator, or makes the key longer
    /// than the 511 bytes LMDB allows; the string names the argument and the problem.
    InvalidKey(String),
    /// A record to write is larger than the storage accepts for its kind (a persistent MUC
    /// room's encoding above 4 MiB, a pubsub item's or node's above 1 MiB): the storage's own
    /// backstop behind the server's bounds, so no single value outgrows what LMDB handles
    /// comfortably. Nothing was written. Counts as a capacity limit ([`is_full`](Self::is_full)).
    TooLarge {
        /// The kind of record.
        what: &'static str,
        /// Its encoded size in bytes.
        size: usize,
        /// The most this kind of record may take.
        limit: usize,
    },
    /// The data directory was written by a newer xmppd; this build refuses to open it.
    SchemaTooNew {
        /// Schema version recorded in the data directory.
        found: u32,
        /// Newest schema version this build understands.
        supported: u32,
    },
    /// A read-only handle found an older schema; open it read-write once to migrate it.
    NeedsMigration {
        /// Schema version recorded in the data directory.
        found: u32,
        /// Schema version this build would migrate it to.
        supported: u32,
    },
    /// The storage is shutting down (or has shut down) and accepts no more queued writes.
    ShuttingDown,
    /// The handle was opened read-only and cannot write.
    ReadOnly,
    /// This process already has the data directory open; LMDB forbids opening an
    /// environment twice in one process (closing either copy would drop the other's locks).
    AlreadyOpen(PathBuf),
    /// The write closure panicked; its changes were rolled back and the batch went on.
    Panicked(String),
    /// An operating-system call around the environment failed: creating the data directory,
    /// or reading the OS random source (for a user's first roster version).
    Io(std::io::Error),
}

impl StorageError {
    /// True when the failure is a capacity limit (map full, transaction too large, reader
    /// table full, a record above its kind's limit) rather than bad data: the caller should
    /// answer "resource constraint".
    pub fn is_full(&self) -> bool {
        matches!(
            self,
            StorageError::Lmdb(LmdbError(
                lmdb::Error::MapFull | lmdb::Error::TxnFull | lmdb::Error::ReadersFull
            )) | StorageError::TooLarge { .. }
        )
    }

    /// Errors that may come from the size of a whole batch rather than from one operation,
    /// so the writer commits what it has and starts a fresh transaction for the rest.
    pub(crate) fn is_batch_capacity(&self) -> bool {
        matches!(
            self,
            StorageError::Lmdb(LmdbError(lmdb::Error::MapFull | lmdb::Error::TxnFull))
        )
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Lmdb(e) => write!(f, "LMDB: {e}"),
            StorageError::NotFound => f.write_str("record not found"),
            StorageError::AlreadyExists => f.write_str("record already exists"),
            StorageError::NoSuchAccount => f.write_str("the account does not exist"),
            StorageError::Corrupt(what) => write!(f, "corrupt record: {what}"),
            StorageError::InvalidKey(why) => write!(f, "invalid key: {why}"),
            StorageError::TooLarge { what, size, limit } => {
                write!(
                    f,
                    "{what} record of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            StorageError::SchemaTooNew { found, supported } => write!(
                f,
                "data directory written by a newer xmppd (schema version {found}, this build \
                 supports up to {supported}); refusing to open"
            ),
            StorageError::NeedsMigration { found, supported } => write!(
                f,
                "data directory has schema version {found}, this build uses {supported}; open it \
                 read-write (start the server once) to migrate"
            ),
            StorageError::ShuttingDown => f.write_str("storage is shutting down"),
            StorageError::ReadOnly => f.write_str("storage was opened read-only"),
            StorageError::AlreadyOpen(dir) => {
                write!(f, "{} is already open in this process", dir.display())
            }
            StorageError::Panicked(msg) => write!(f, "write operation panicked: {msg}"),
            StorageError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Lmdb(e) => Some(e),
            StorageError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<lmdb::Error> for StorageError {
    fn from(e: lmdb::Error) -> Self {
        StorageError::Lmdb(LmdbError(e))
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError::Io(e)
    }
}

/// An error code from LMDB, kept opaque so callers need not depend on the binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LmdbError(pub(crate) lmdb::Error);

impl LmdbError {
    /// True when the memory map is full (raise `Options::map_size`).
    pub fn is_map_full(&self) -> bool {
        self.0 == lmdb::Error::MapFull
    }

    /// The raw LMDB (or errno) code, for logs.
    pub fn code(&self) -> i32 {
        self.0.to_err_code()
    }
}

impl fmt::Display for LmdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for LmdbError {}
