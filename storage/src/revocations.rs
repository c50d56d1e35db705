//! Revocations: the log through which a running server learns that an account's credentials
//! were changed, or the account deleted or disabled, by another process (the admin CLI) or by
//! itself, so that it ends the sessions that logged in with the old state.
//!
//! Every change that invalidates a login appends one record in the same write transaction as
//! the change itself (see `accounts.rs`): key the sequence number (`u64` big-endian, so a scan
//! returns records in order), value the bare JID, the reason and the time. The last sequence
//! number handed out is kept in [`Table::Meta`], so a reader learns in one lookup whether
//! anything happened since it last looked. Sequence numbers are contiguous: a reader that
//! finds the record after the one it saw last missing knows that it missed records (they were
//! trimmed), and must assume the worst.
//!
//! The log is bounded: each append drops records older than [`KEEP_SECS`] and all but the
//! newest [`KEEP_MAX`]. A server reads it once a second, so only a shard that stalls for
//! minutes, or a burst of more than [`KEEP_MAX`] changes between two of its reads (a bulk
//! re-import), makes it miss records.

use crate::codec::{Decoder, Encoder};
use crate::table::Table;
use crate::txn::{ReadTxn, Reader, WriteTxn};
use crate::StorageError;

/// Records older than this many seconds are dropped at the next append.
pub const KEEP_SECS: u64 = 600;
/// At most this many records are kept.
pub const KEEP_MAX: u64 = 10_000;

/// Key in [`Table::Meta`] holding the last sequence number handed out (`u64` little-endian;
/// absent means 0).
const SEQ_KEY: &[u8] = b"revocation_seq";

/// Why an account's sessions must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    /// The credentials (SCRAM keys) were replaced.
    PasswordChanged,
    /// The account was deleted.
    Deleted,
    /// The account was disabled.
    Disabled,
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Its sequence number: every change gets the next one.
    pub seq: u64,
    /// The account's normalized bare JID.
    pub jid: String,
    /// What happened.
    pub reason: RevokeReason,
    /// When, seconds since the Unix epoch.
    pub unix: u64,
}

/// What [`AccountStore::revocations_after`](crate::AccountStore::revocations_after) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationsAfter {
    /// The records after the given sequence number that are still kept, in order.
    pub entries: Vec<Revocation>,
    /// The last sequence number handed out, as of the same snapshot: pass it next time.
    pub last: u64,
    /// False when records after the given sequence number were already dropped: the caller
    /// cannot tell which accounts they named.
    pub complete: bool,
}

impl RevocationsAfter {
    /// The strongest reason recorded for `bare_jid` in these records (deletion over disabling
    /// over a password change), if any names it.
    pub fn reason_for(&self, bare_jid: &str) -> Option<RevokeReason> {
        self.entries
            .iter()
            .filter(|r| r.jid == bare_jid)
            .map(|r| r.reason)
            .max_by_key(|r| match r {
                RevokeReason::PasswordChanged => 0,
                RevokeReason::Disabled => 1,
                RevokeReason::Deleted => 2,
            })
    }
}

/// The last sequence number handed out (0: none yet).
pub(crate) fn last_seq(txn: &impl Reader) -> Result<u64, StorageError> {
    match txn.get(Table::Meta, SEQ_KEY)? {
        None => Ok(0),
        Some(raw) => <[u8; 8]>::try_from(raw)
            .map(u64::from_le_bytes)
            .map_err(|_| StorageError::Corrupt(format!("revocation seq is {} bytes", raw.len()))),
    }
}

/// The records after `after` (see [`RevocationsAfter`]).
pub(crate) fn after(txn: &ReadTxn<'_>, after: u64) -> Result<RevocationsAfter, StorageError> {
    let last = last_seq(txn)?;
    if last <= after {
        return Ok(RevocationsAfter {
            entries: Vec::new(),
            last,
            complete: true,
        });
    }
    let mut entries = Vec::new();
    let start = after.saturating_add(1);
    for entry in txn.entries_from(Table::Revocations, &start.to_be_bytes())? {
        let (k, v) = entry?;
        let seq = <[u8; 8]>::try_from(k)
            .map(u64::from_be_bytes)
            .map_err(|_| StorageError::Corrupt("revocation key is not 8 bytes".into()))?;
        entries.push(decode(seq, v)?);
    }
    let complete = entries.first().map(|r| r.seq) == Some(start);
    Ok(RevocationsAfter {
        entries,
        last,
        complete,
    })
}

/// Appends a record for `bare_jid` and trims the log; returns the record's sequence number.
pub(crate) fn append(
    txn: &mut WriteTxn<'_>,
    bare_jid: &str,
    reason: RevokeReason,
) -> Result<u64, StorageError> {
    let seq = last_seq(txn)?
        .checked_add(1)
        .ok_or_else(|| StorageError::Corrupt("revocation seq exhausted".into()))?;
    let now = now_unix();
    txn.put(Table::Meta, SEQ_KEY, &seq.to_le_bytes())?;
    txn.put(
        Table::Revocations,
        &seq.to_be_bytes(),
        &encode(bare_jid, reason, now),
    )?;
    trim(txn, seq, now)?;
    Ok(seq)
}

/// Drops the oldest records while they are older than [`KEEP_SECS`] or more than [`KEEP_MAX`]
/// are kept (`last` is the newest sequence number; sequence numbers are contiguous).
fn trim(txn: &mut WriteTxn<'_>, last: u64, now: u64) -> Result<(), StorageError> {
    let mut drop = Vec::new();
    for entry in txn.entries(Table::Revocations, b"")? {
        let (k, v) = entry?;
        let seq = <[u8; 8]>::try_from(k)
            .map(u64::from_be_bytes)
            .map_err(|_| StorageError::Corrupt("revocation key is not 8 bytes".into()))?;
        let too_many = last - seq >= KEEP_MAX;
        let too_old = decode(seq, v)?.unix.saturating_add(KEEP_SECS) < now;
        if !(too_many || too_old) {
            break;
        }
        drop.push(k.to_vec());
    }
    for key in drop {
        txn.delete(Table::Revocations, &key)?;
    }
    Ok(())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Revocation record format 1: `u8 1 | u64 unix | u8 reason (1 password changed, 2 deleted,
/// 3 disabled) | bytes jid`.
const REVOCATION_V1: u8 = 1;

fn encode(jid: &str, reason: RevokeReason, unix: u64) -> Vec<u8> {
    let reason = match reason {
        RevokeReason::PasswordChanged => 1,
        RevokeReason::Deleted => 2,
        RevokeReason::Disabled => 3,
    };
    Encoder::new(REVOCATION_V1)
        .u64(unix)
        .u8(reason)
        .bytes(jid.as_bytes())
        .finish()
}

fn decode(seq: u64, buf: &[u8]) -> Result<Revocation, StorageError> {
    let (mut d, version) = Decoder::new(buf, "revocation")?;
    if version != REVOCATION_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let unix = d.u64()?;
    let reason = match d.u8()? {
        1 => RevokeReason::PasswordChanged,
        2 => RevokeReason::Deleted,
        3 => RevokeReason::Disabled,
        other => return Err(d.corrupt(&format!("unknown reason {other}"))),
    };
    let jid = d.str()?.to_owned();
    d.finish()?;
    Ok(Revocation {
        seq,
        jid,
        reason,
        unix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};

    #[test]
    fn record_round_trips_truncations_garbage() {
        for reason in [
            RevokeReason::PasswordChanged,
            RevokeReason::Deleted,
            RevokeReason::Disabled,
        ] {
            let buf = encode("juliet@example.com", reason, 1_700_000_000);
            let r = decode(7, &buf).unwrap();
            assert_eq!(
                r,
                Revocation {
                    seq: 7,
                    jid: "juliet@example.com".into(),
                    reason,
                    unix: 1_700_000_000
                }
            );
            every_truncation_is_corrupt(&buf, |b| decode(7, b));
        }
        garbage_never_panics(&encode("a@b", RevokeReason::Deleted, 1), |b| decode(1, b));
        let mut bad_reason = encode("a@b", RevokeReason::Deleted, 1);
        bad_reason[9] = 9;
        assert!(matches!(
            decode(1, &bad_reason),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn strongest_reason_wins() {
        let r = |seq, jid: &str, reason| Revocation {
            seq,
            jid: jid.into(),
            reason,
            unix: 0,
        };
        let found = RevocationsAfter {
            entries: vec![
                r(1, "a@b", RevokeReason::PasswordChanged),
                r(2, "c@d", RevokeReason::Deleted),
                r(3, "a@b", RevokeReason::Disabled),
            ],
            last: 3,
            complete: true,
        };
        assert_eq!(found.reason_for("a@b"), Some(RevokeReason::Disabled));
        assert_eq!(found.reason_for("c@d"), Some(RevokeReason::Deleted));
        assert_eq!(found.reason_for("e@f"), None);
    }
}
