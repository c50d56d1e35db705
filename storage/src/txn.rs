//! Typed access to tables inside one transaction.

use lmdb::{
    Cursor, Database, Iter, RoCursor, RoTransaction, RwTransaction, Transaction, WriteFlags,
};
use lmdb_sys::{MDB_LAST, MDB_PREV, MDB_SET_RANGE};

use crate::table::{Dbs, Table};
use crate::StorageError;

/// A read-write transaction, as handed to a write closure.
///
/// Inside a group-committed batch each closure runs in its own nested transaction: if the
/// closure returns an error (or panics) everything it wrote is rolled back and the other
/// writes of the batch are unaffected. Nothing is durable until the batch commits, which is
/// when the submitter's [`Completion`](crate::Completion) resolves.
pub struct WriteTxn<'a> {
    txn: RwTransaction<'a>,
    dbs: &'a Dbs,
}

impl<'a> WriteTxn<'a> {
    pub(crate) fn new(txn: RwTransaction<'a>, dbs: &'a Dbs) -> WriteTxn<'a> {
        WriteTxn { txn, dbs }
    }

    pub(crate) fn into_inner(self) -> RwTransaction<'a> {
        self.txn
    }

    fn db(&self, table: Table) -> Result<Database, StorageError> {
        // Read-write environments create every table on open, so this only fails for a
        // read-only handle, which never builds a WriteTxn.
        self.dbs.get(table).ok_or(StorageError::ReadOnly)
    }

    /// The value stored under `key`, if any (including this transaction's own writes).
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>, StorageError> {
        get_in(&self.txn, self.dbs.get(table), key)
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let db = self.db(table)?;
        Ok(self.txn.put(db, &key, &value, WriteFlags::empty())?)
    }

    /// Stores `value` under a `key` that must not exist yet ([`StorageError::AlreadyExists`]).
    pub fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let db = self.db(table)?;
        match self.txn.put(db, &key, &value, WriteFlags::NO_OVERWRITE) {
            Ok(()) => Ok(()),
            Err(lmdb::Error::KeyExist) => Err(StorageError::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool, StorageError> {
        let db = self.db(table)?;
        match self.txn.del(db, &key, None) {
            Ok(()) => Ok(true),
            Err(lmdb::Error::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The entries whose key starts with `prefix`, in key order (all of them for `b""`).
    pub fn entries<'s>(
        &'s self,
        table: Table,
        prefix: &'s [u8],
    ) -> Result<Entries<'s>, StorageError> {
        entries_in(&self.txn, self.dbs.get(table), prefix)
    }

    /// Removes every entry whose key starts with `prefix`; returns how many there were.
    pub(crate) fn delete_prefix(
        &mut self,
        table: Table,
        prefix: &[u8],
    ) -> Result<usize, StorageError> {
        let keys = self
            .entries(table, prefix)?
            .map(|entry| entry.map(|(key, _)| key.to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        for key in &keys {
            self.delete(table, key)?;
        }
        Ok(keys.len())
    }

    /// The number of entries whose key starts with `prefix`: a cursor walk over the keys,
    /// O(n) in the entries counted, without decoding any value.
    pub(crate) fn count_prefix(&self, table: Table, prefix: &[u8]) -> Result<usize, StorageError> {
        self.entries(table, prefix)?
            .try_fold(0, |n, entry| entry.map(|_| n + 1))
    }
}

/// What the typed stores need from a transaction to read, so one helper serves both the
/// store's read snapshots and the write closures.
pub(crate) trait Reader {
    /// The value stored under `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>, StorageError>;
    /// The entries whose key starts with `prefix`, in key order.
    fn entries<'s>(&'s self, table: Table, prefix: &'s [u8]) -> Result<Entries<'s>, StorageError>;
}

impl Reader for WriteTxn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>, StorageError> {
        WriteTxn::get(self, table, key)
    }

    fn entries<'s>(&'s self, table: Table, prefix: &'s [u8]) -> Result<Entries<'s>, StorageError> {
        WriteTxn::entries(self, table, prefix)
    }
}

impl Reader for ReadTxn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>, StorageError> {
        ReadTxn::get(self, table, key)
    }

    fn entries<'s>(&'s self, table: Table, prefix: &'s [u8]) -> Result<Entries<'s>, StorageError> {
        ReadTxn::entries(self, table, prefix)
    }
}

/// A read-only snapshot, taken on the calling thread.
pub(crate) struct ReadTxn<'a> {
    txn: RoTransaction<'a>,
    dbs: &'a Dbs,
}

impl<'a> ReadTxn<'a> {
    pub(crate) fn new(txn: RoTransaction<'a>, dbs: &'a Dbs) -> ReadTxn<'a> {
        ReadTxn { txn, dbs }
    }

    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<&[u8]>, StorageError> {
        get_in(&self.txn, self.dbs.get(table), key)
    }

    pub(crate) fn entries<'s>(
        &'s self,
        table: Table,
        prefix: &'s [u8],
    ) -> Result<Entries<'s>, StorageError> {
        entries_in(&self.txn, self.dbs.get(table), prefix)
    }

    /// The entries whose key starts with `prefix`, in reverse key order (all of them for
    /// `b""`): the cursor starts after the last such key and steps back, so taking the first
    /// `n` reads only those `n` entries.
    pub(crate) fn entries_rev<'s>(
        &'s self,
        table: Table,
        prefix: &'s [u8],
    ) -> Result<EntriesRev<'s>, StorageError> {
        entries_rev_in(&self.txn, self.dbs.get(table), prefix)
    }

    /// Every entry from the first key at or after `start` to the end of the table.
    pub(crate) fn entries_from<'s>(
        &'s self,
        table: Table,
        start: &[u8],
    ) -> Result<Entries<'s>, StorageError> {
        entries_from_in(&self.txn, self.dbs.get(table), start)
    }
}

fn get_in<'t>(
    txn: &'t impl Transaction,
    db: Option<Database>,
    key: &[u8],
) -> Result<Option<&'t [u8]>, StorageError> {
    let Some(db) = db else { return Ok(None) };
    match txn.get(db, &key) {
        Ok(v) => Ok(Some(v)),
        Err(lmdb::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn entries_in<'t>(
    txn: &'t impl Transaction,
    db: Option<Database>,
    prefix: &'t [u8],
) -> Result<Entries<'t>, StorageError> {
    let Some(db) = db else {
        return Ok(Entries { scan: None, prefix });
    };
    let mut cursor = txn.open_ro_cursor(db)?;
    let iter = if prefix.is_empty() {
        cursor.iter_start()
    } else {
        cursor.iter_from(prefix)
    };
    Ok(Entries {
        scan: Some((iter, cursor)),
        prefix,
    })
}

fn entries_from_in<'t>(
    txn: &'t impl Transaction,
    db: Option<Database>,
    start: &[u8],
) -> Result<Entries<'t>, StorageError> {
    let Some(db) = db else {
        return Ok(Entries {
            scan: None,
            prefix: b"",
        });
    };
    let mut cursor = txn.open_ro_cursor(db)?;
    let iter = cursor.iter_from(start);
    Ok(Entries {
        scan: Some((iter, cursor)),
        prefix: b"",
    })
}

fn entries_rev_in<'t>(
    txn: &'t impl Transaction,
    db: Option<Database>,
    prefix: &'t [u8],
) -> Result<EntriesRev<'t>, StorageError> {
    let Some(db) = db else {
        return Ok(EntriesRev {
            cursor: None,
            op: MDB_LAST,
            prefix,
        });
    };
    let cursor = txn.open_ro_cursor(db)?;
    // Position at the first key past every key with the prefix and step back from there; when
    // there is no such key (or no upper bound: an empty or all-0xff prefix), start at the
    // table's last key.
    let op = match successor(prefix) {
        Some(upper) => match cursor.get(Some(&upper), None, MDB_SET_RANGE) {
            Ok(_) => MDB_PREV,
            Err(lmdb::Error::NotFound) => MDB_LAST,
            Err(e) => return Err(e.into()),
        },
        None => MDB_LAST,
    };
    Ok(EntriesRev {
        cursor: Some(cursor),
        op,
        prefix,
    })
}

/// The smallest key greater than every key starting with `prefix`, if there is one: the
/// prefix with its last byte below 0xff incremented and everything after that byte dropped.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut upper = prefix[..=last].to_vec();
    upper[last] += 1;
    Some(upper)
}

/// Key/value pairs of one table whose key starts with a prefix, in reverse key order.
pub(crate) struct EntriesRev<'t> {
    /// `None` once the scan is over (or for a table a read-only handle lacks).
    cursor: Option<RoCursor<'t>>,
    /// The cursor operation that yields the next entry.
    op: std::os::raw::c_uint,
    prefix: &'t [u8],
}

impl<'t> Iterator for EntriesRev<'t> {
    type Item = Result<(&'t [u8], &'t [u8]), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let cursor = self.cursor.as_ref()?;
        let step = cursor.get(None, None, self.op);
        self.op = MDB_PREV;
        match step {
            Ok((Some(k), v)) if k.starts_with(self.prefix) => Some(Ok((k, v))),
            // Past the first key with the prefix, or past the table's first key.
            Ok((Some(_), _)) | Err(lmdb::Error::NotFound) => {
                self.cursor = None;
                None
            }
            Ok((None, _)) => {
                self.cursor = None;
                Some(Err(StorageError::Corrupt(
                    "LMDB cursor stepped back without returning a key".into(),
                )))
            }
            Err(e) => {
                self.cursor = None;
                Some(Err(e.into()))
            }
        }
    }
}

/// Key/value pairs of one table whose key starts with a prefix, in key order.
pub struct Entries<'t> {
    // The iterator only holds the cursor's raw pointer; keeping the cursor here keeps it
    // open exactly as long as the iterator.
    scan: Option<(Iter<'t>, RoCursor<'t>)>,
    prefix: &'t [u8],
}

impl<'t> Iterator for Entries<'t> {
    type Item = Result<(&'t [u8], &'t [u8]), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (iter, _) = self.scan.as_mut()?;
        match iter.next()? {
            Ok((k, v)) if k.starts_with(self.prefix) => Some(Ok((k, v))),
            Ok(_) => {
                self.scan = None;
                None
            }
            Err(e) => {
                self.scan = None;
                Some(Err(e.into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, Storage};

    #[test]
    fn successor_bounds_every_key_with_the_prefix() {
        assert_eq!(successor(b"a\0b\0"), Some(b"a\0b\x01".to_vec()));
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
    }

    #[test]
    fn entries_rev_lists_one_prefix_backwards() {
        let dir = std::env::temp_dir().join(format!(
            "xmppd-storage-txn-rev-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        let opts = Options {
            map_size: 64 << 20,
            ..Options::default()
        };
        {
            let s = Storage::open(&dir, &opts).unwrap();
            let keys: &[&[u8]] = &[
                b"a",
                b"a\0",
                b"a\0\0",
                b"a\0x",
                b"a\0\xff",
                b"a\0\xff\xff",
                b"a\x01",
                b"b",
                b"\xff",
                b"\xff\xff",
                b"\xff\xff\x01",
            ];
            s.write_sync(|t| {
                for k in keys {
                    t.put(Table::Vcards, k, k)?;
                }
                Ok(())
            })
            .unwrap();
            let rev = |prefix: &[u8]| -> Vec<Vec<u8>> {
                s.read(|txn| {
                    txn.entries_rev(Table::Vcards, prefix)?
                        .map(|e| {
                            e.map(|(k, v)| {
                                assert_eq!(k, v);
                                k.to_vec()
                            })
                        })
                        .collect()
                })
                .unwrap()
            };
            let fwd = |prefix: &[u8]| -> Vec<Vec<u8>> {
                s.read(|txn| {
                    txn.entries(Table::Vcards, prefix)?
                        .map(|e| e.map(|(k, _)| k.to_vec()))
                        .collect()
                })
                .unwrap()
            };
            for prefix in [
                &b""[..],
                b"a",
                b"a\0",
                b"a\0\xff",
                b"a\x01",
                b"b",
                b"c",
                b"0",
                b"\xff",
                b"\xff\xff",
                b"\xff\xff\x01\x02",
            ] {
                let mut expected = fwd(prefix);
                expected.reverse();
                assert_eq!(rev(prefix), expected, "prefix {prefix:?}");
            }
            assert_eq!(rev(b"a\0").len(), 5);
            assert_eq!(rev(b"").len(), keys.len());
            // Taking a few reads from the newest end.
            let first = s
                .read(|txn| {
                    txn.entries_rev(Table::Vcards, b"a\0")?
                        .next()
                        .transpose()
                        .map(|e| e.map(|(k, _)| k.to_vec()))
                })
                .unwrap();
            assert_eq!(first.as_deref(), Some(&b"a\0\xff\xff"[..]));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
