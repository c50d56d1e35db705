//! How full the LMDB map is: the measure, a gauge any thread can read it with, and the fill
//! thresholds at which the operator is warned.
//!
//! *Used* space is every page of every table's B-tree, of the catalog of tables, and the two
//! meta pages. Pages on LMDB's free list are reused before the file grows, so they count as
//! free (pages freed while an old read snapshot still needs them are reusable once it ends;
//! reads are short). The *high-water mark* is the last page ever allocated: LMDB stores a large
//! value in a run of contiguous pages, so once the high-water mark reaches the map size a large
//! write can fail with `MapFull` while some scattered pages are still free. That is why
//! non-essential writes (offline messages) stop at a reserve well before the map is full, and
//! why `xmppd check` reports both figures.
//!
//! Measuring costs one read transaction and one `mdb_stat` per table: O(tables), independent
//! of the amount of data.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use lmdb::Transaction;

use crate::storage::Shared;
use crate::table::Table;
use crate::StorageError;

/// Percentages of the map at which the server warns the operator, in increasing order.
pub const FILL_WARNINGS: [u8; 3] = [80, 90, 95];

/// LMDB's catalog of named databases (`MAIN_DBI` in lmdb.h).
const MAIN_DBI: lmdb_sys::MDB_dbi = 1;
/// The two meta pages at the start of the file.
const META_PAGES: u64 = 2;

/// How much of the map the data uses (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapUsage {
    /// Bytes in pages that hold data (every table's tree, the catalog, the meta pages).
    pub used_bytes: u64,
    /// Bytes up to the last page ever allocated (the file's high-water mark).
    pub high_water_bytes: u64,
    /// The size of the map: the most the data can ever use.
    pub map_bytes: u64,
}

impl MapUsage {
    /// Bytes that new data can still use.
    pub fn free_bytes(&self) -> u64 {
        self.map_bytes.saturating_sub(self.used_bytes)
    }

    /// Used space in percent of the map, rounded down (0..=100).
    pub fn percent_used(&self) -> u8 {
        percent(self.used_bytes, self.map_bytes)
    }

    /// The high-water mark in percent of the map, rounded down (0..=100).
    pub fn percent_high_water(&self) -> u8 {
        percent(self.high_water_bytes, self.map_bytes)
    }

    /// The highest of [`FILL_WARNINGS`] that the used space has reached, if any.
    pub fn warning_level(&self) -> Option<u8> {
        warning_level(self.percent_used())
    }
}

fn percent(part: u64, whole: u64) -> u8 {
    if whole == 0 {
        return 100;
    }
    let p = u128::from(part) * 100 / u128::from(whole);
    u8::try_from(p.min(100)).unwrap_or(100)
}

fn warning_level(percent: u8) -> Option<u8> {
    FILL_WARNINGS.iter().rev().copied().find(|t| percent >= *t)
}

/// Reads the map's fill from any thread (shards, the writer thread inside a write closure,
/// admin tools). Cheap to clone; it keeps the environment open while it lives.
///
/// A reading reflects the last committed write transaction: inside a group-committed batch it
/// does not include the batch's own earlier writes.
#[derive(Clone)]
pub struct MapGauge {
    shared: Arc<Shared>,
}

impl MapGauge {
    pub(crate) fn new(shared: Arc<Shared>) -> MapGauge {
        MapGauge { shared }
    }

    /// The current usage.
    pub fn usage(&self) -> Result<MapUsage, StorageError> {
        usage(&self.shared)
    }

    /// The current usage and, if it has reached a threshold of [`FILL_WARNINGS`] that was not
    /// reported yet, that threshold. Each threshold is reported once per process (over every
    /// clone of the gauge and every thread) until the usage falls below it again, so the
    /// caller can log every `Some` without flooding the log.
    pub fn observe(&self) -> Result<(MapUsage, Option<u8>), StorageError> {
        let usage = self.usage()?;
        Ok((usage, self.shared.fill().observe(usage.percent_used())))
    }
}

/// The highest fill threshold already reported (0 for none), shared by every handle of one
/// environment in the process.
#[derive(Debug, Default)]
pub(crate) struct FillAlarm {
    reported: AtomicU8,
}

impl FillAlarm {
    /// The threshold newly reached at `percent`, if any; falling below a threshold re-arms it.
    pub(crate) fn observe(&self, percent: u8) -> Option<u8> {
        let level = warning_level(percent).unwrap_or(0);
        let before = self.reported.swap(level, Ordering::Relaxed);
        (level > before).then_some(level)
    }
}

fn usage(shared: &Shared) -> Result<MapUsage, StorageError> {
    let env = shared.env();
    let info = env.info()?;
    let txn = env.begin_ro_txn()?;
    let dbis = std::iter::once(MAIN_DBI).chain(
        Table::ALL
            .iter()
            .filter_map(|t| shared.dbs().get(*t))
            .map(|db| db.dbi()),
    );
    let mut pages = META_PAGES;
    let mut page_size = 0u64;
    for dbi in dbis {
        // SAFETY: an all-zero MDB_stat is a valid value of the plain C struct that mdb_stat
        // fills in.
        let mut stat: lmdb_sys::MDB_stat = unsafe { std::mem::zeroed() };
        // SAFETY: `txn` is a live read transaction of this environment and `dbi` a handle
        // opened in it (the catalog, or a table opened when the environment was opened);
        // `stat` outlives the call.
        let rc = unsafe { lmdb_sys::mdb_stat(txn.txn(), dbi, &mut stat) };
        if rc != 0 {
            return Err(lmdb::Error::from_err_code(rc).into());
        }
        page_size = u64::from(stat.ms_psize);
        pages += [
            stat.ms_branch_pages,
            stat.ms_leaf_pages,
            stat.ms_overflow_pages,
        ]
        .into_iter()
        .map(|n| n as u64)
        .sum::<u64>();
    }
    drop(txn);
    let high_water_pages = info.last_pgno() as u64 + 1;
    Ok(MapUsage {
        used_bytes: pages.saturating_mul(page_size),
        high_water_bytes: high_water_pages.saturating_mul(page_size),
        map_bytes: info.map_size() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_down_and_saturate() {
        let u = MapUsage {
            used_bytes: 799,
            high_water_bytes: 1000,
            map_bytes: 1000,
        };
        assert_eq!(u.percent_used(), 79);
        assert_eq!(u.percent_high_water(), 100);
        assert_eq!(u.free_bytes(), 201);
        assert_eq!(u.warning_level(), None);
        let over = MapUsage {
            used_bytes: 2000,
            high_water_bytes: 2000,
            map_bytes: 1000,
        };
        assert_eq!(over.percent_used(), 100);
        assert_eq!(over.free_bytes(), 0);
        assert_eq!(over.warning_level(), Some(95));
        assert_eq!(percent(1, 0), 100);
    }

    #[test]
    fn each_threshold_is_reported_once_until_usage_falls_below_it() {
        let alarm = FillAlarm::default();
        assert_eq!(alarm.observe(50), None);
        assert_eq!(alarm.observe(80), Some(80));
        assert_eq!(alarm.observe(85), None);
        // Jumping two thresholds reports the higher one.
        assert_eq!(alarm.observe(96), Some(95));
        assert_eq!(alarm.observe(99), None);
        assert_eq!(alarm.observe(91), None);
        assert_eq!(alarm.observe(96), Some(95));
        assert_eq!(alarm.observe(10), None);
        assert_eq!(alarm.observe(81), Some(80));
    }
}
