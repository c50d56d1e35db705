//! The schema version of an environment and the migrations between versions.
//!
//! To change the on-disk layout: bump [`SCHEMA_VERSION`], append one function to
//! [`MIGRATIONS`] that rewrites version `SCHEMA_VERSION - 1` data into the new form (it runs
//! inside the opening write transaction, so a failed migration leaves the old data intact),
//! and give the affected records a new format-version byte.

use crate::table::Table;
use crate::txn::{ReadTxn, WriteTxn};
use crate::StorageError;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 6;

/// Upgrades data of one version to the next, inside the opening write transaction.
type Migration = fn(&mut WriteTxn<'_>) -> Result<(), StorageError>;

/// `MIGRATIONS[i]` upgrades an environment from version `i + 1` to version `i + 2`.
const MIGRATIONS: &[Migration] = &[v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5, v5_to_v6];

const _: () = assert!(MIGRATIONS.len() as u32 == SCHEMA_VERSION - 1);

/// Key in [`Table::Meta`] holding the version as a little-endian `u32`.
const VERSION_KEY: &[u8] = b"schema_version";

/// Brings a freshly opened read-write environment to [`SCHEMA_VERSION`]: records it in an
/// empty environment, migrates an older one, refuses a newer one.
pub(crate) fn prepare(txn: &mut WriteTxn<'_>) -> Result<(), StorageError> {
    let found = decode_version(txn.get(Table::Meta, VERSION_KEY)?)?;
    match found {
        None => {
            for &table in Table::ALL {
                if table != Table::Meta && txn.entries(table, b"")?.next().is_some() {
                    return Err(StorageError::Corrupt(format!(
                        "table {} holds data but no schema version is recorded",
                        table.name()
                    )));
                }
            }
        }
        Some(v) if v == SCHEMA_VERSION => return Ok(()),
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StorageError::SchemaTooNew {
                found: v,
                supported: SCHEMA_VERSION,
            })
        }
        Some(0) => return Err(StorageError::Corrupt("schema version 0".into())),
        Some(v) => {
            for migrate in &MIGRATIONS[(v - 1) as usize..] {
                migrate(txn)?;
            }
        }
    }
    write_version(txn, SCHEMA_VERSION)
}

/// Accepts only the current version: a read-only handle can neither migrate nor understand
/// an older layout. An environment that never recorded a version reads as empty.
pub(crate) fn check_readonly(txn: &ReadTxn<'_>) -> Result<(), StorageError> {
    match read_version(txn)? {
        None => Ok(()),
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(StorageError::SchemaTooNew {
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Some(v) => Err(StorageError::NeedsMigration {
            found: v,
            supported: SCHEMA_VERSION,
        }),
    }
}

/// The recorded version, `None` for an environment that never recorded one.
pub(crate) fn read_version(txn: &ReadTxn<'_>) -> Result<Option<u32>, StorageError> {
    decode_version(txn.get(Table::Meta, VERSION_KEY)?)
}

pub(crate) fn write_version(txn: &mut WriteTxn<'_>, version: u32) -> Result<(), StorageError> {
    txn.put(Table::Meta, VERSION_KEY, &version.to_le_bytes())
}

/// Version 2 adds rosters, offline messages and vCards. Their tables (see `table.rs`) are
/// created empty by the opening transaction before migrations run, and no version 1 record
/// changes, so there is nothing left to do.
fn v1_to_v2(_txn: &mut WriteTxn<'_>) -> Result<(), StorageError> {
    Ok(())
}

/// Version 3 adds privacy lists (XEP-0016/0191): new tables, created empty by the opening
/// transaction; no existing record changes.
fn v2_to_v3(_txn: &mut WriteTxn<'_>) -> Result<(), StorageError> {
    Ok(())
}

/// Version 4 adds persistent multi-user chat rooms (XEP-0045): a new table, created empty by
/// the opening transaction; no existing record changes.
fn v3_to_v4(_txn: &mut WriteTxn<'_>) -> Result<(), StorageError> {
    Ok(())
}

/// Version 5 adds publish-subscribe nodes and items (XEP-0060/0163) and private XML storage
/// (XEP-0049): new tables, created empty by the opening transaction; no existing record
/// changes.
fn v4_to_v5(_txn: &mut WriteTxn<'_>) -> Result<(), StorageError> {
    Ok(())
}

/// Version 6 adds explicit pubsub subscriptions (XEP-0060 §6.1): a new table, created empty
/// by the opening transaction; no existing record changes.
fn v5_to_v6(_txn: &mut WriteTxn<'_>) -> Result<(), StorageError> {
    Ok(())
}

fn decode_version(raw: Option<&[u8]>) -> Result<Option<u32>, StorageError> {
    raw.map(|b| {
        <[u8; 4]>::try_from(b)
            .map(u32::from_le_bytes)
            .map_err(|_| StorageError::Corrupt(format!("schema version is {} bytes", b.len())))
    })
    .transpose()
}
