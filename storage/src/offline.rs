//! Offline messages (XEP-0160): stanzas kept for a user until a resource comes online.
//!
//! Each user has a bounded queue: [`WriteTxn::push_offline_within`] refuses a message once the
//! user holds `max_messages` of them or `max_bytes` of stored records, or when the map's free
//! space would fall under a reserve kept for essential writes, so the caller can bounce it
//! (`resource-constraint`). The refusal is decided in the same write transaction as the
//! insert, so concurrent senders cannot overshoot a user's quota. Messages are keyed by a
//! per-user sequence number that only ever increases, even across deletions and restarts, so
//! the stored order is the arrival order. The stanza is opaque bytes.
//!
//! A message's size for the byte quota is its key plus its record (stamp, sender, stanza):
//! what it adds to the table, without LMDB's page overhead. The per-user counters keep the
//! sum; counters written before the byte quota existed (format 1) lack it, and it is
//! computed once from the stored messages when they are next read.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::quota::MapGauge;
use crate::table::Table;
use crate::txn::{Reader, WriteTxn};
use crate::{Storage, StorageError};

/// The limits [`WriteTxn::push_offline_within`] enforces.
#[derive(Clone)]
pub struct OfflineQuota {
    /// Most messages one user may have stored.
    pub max_messages: usize,
    /// Most bytes (keys and records) one user may have stored.
    pub max_bytes: u64,
    /// With a gauge: refuse while the map would have fewer than `reserve_bytes` free after the
    /// message, leaving that space to essential writes (accounts, rosters).
    pub reserve: Option<(MapGauge, u64)>,
}

/// What [`WriteTxn::push_offline_within`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflinePush {
    /// Stored under this sequence number.
    Stored(u64),
    /// Not stored: a limit was reached.
    Full(OfflineFull),
}

/// Which limit refused an offline message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineFull {
    /// The user has `max_messages` messages stored.
    Messages,
    /// The message would take the user over `max_bytes`.
    Bytes,
    /// The map's free space would fall under the reserve.
    Map,
}

/// One stored offline message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Its position in the user's queue: strictly increasing in arrival order, never reused.
    pub seq: u64,
    /// When it was stored, milliseconds since the Unix epoch (for the XEP-0203 delay stamp).
    pub stamp_unix_ms: u64,
    /// The sender's JID, as the caller gave it.
    pub from: String,
    /// The stanza, as the caller gave it.
    pub stanza: Vec<u8>,
}

/// Read access to offline messages, keyed by the recipient's normalized bare JID. Each call
/// is one read transaction on the calling thread. Writes are [`WriteTxn`] methods
/// ([`push_offline`](WriteTxn::push_offline), [`delete_offline`](WriteTxn::delete_offline)).
#[derive(Clone)]
pub struct OfflineStore {
    storage: Storage,
}

impl OfflineStore {
    pub(crate) fn new(storage: Storage) -> OfflineStore {
        OfflineStore { storage }
    }

    /// The user's messages, oldest first.
    pub fn list(&self, user: &str) -> Result<Vec<OfflineMessage>, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| {
            let prefix = key::prefix(user)?;
            let mut out = Vec::new();
            for entry in txn.entries(Table::Offline, &prefix)? {
                let (k, v) = entry?;
                out.push(decode_message(key::seq_of("offline", &prefix, k)?, v)?);
            }
            Ok(out)
        })
    }

    /// The user's oldest messages after sequence number `after` (0: from the first), at most
    /// `max_count` of them and, past the first, at most `max_bytes` of stanzas: a bounded
    /// chunk of the queue, so a large backlog is never read (nor held) at once.
    pub fn list_after(
        &self,
        user: &str,
        after: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<OfflineMessage>, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| {
            let prefix = key::prefix(user)?;
            let mut out: Vec<OfflineMessage> = Vec::new();
            let mut bytes = 0usize;
            for entry in txn.entries(Table::Offline, &prefix)? {
                let (k, v) = entry?;
                let seq = key::seq_of("offline", &prefix, k)?;
                if seq <= after {
                    // Keys only: already delivered and not yet deleted (a short run).
                    continue;
                }
                if out.len() >= max_count || (!out.is_empty() && bytes + v.len() > max_bytes) {
                    break;
                }
                bytes += v.len();
                out.push(decode_message(seq, v)?);
            }
            Ok(out)
        })
    }

    /// How many messages the user has: O(1), read from a counter.
    pub fn count(&self, user: &str) -> Result<usize, StorageError> {
        crate::fault::read(user)?;
        self.storage
            .read(|txn| Ok(meta_in(txn, user)?.count_usize()))
    }

    /// How many bytes the user's messages take for the byte quota (keys and records).
    pub fn bytes(&self, user: &str) -> Result<u64, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| Ok(meta_in(txn, user)?.bytes))
    }
}

/// Offline message writes inside a write transaction.
impl WriteTxn<'_> {
    /// Appends a message to the user's queue unless the user already has `max` messages:
    /// `Ok(Some(seq))` when stored, `Ok(None)` when the quota is full (nothing is stored).
    /// No byte quota and no map reserve: see [`push_offline_within`](Self::push_offline_within).
    pub fn push_offline(
        &mut self,
        user: &str,
        stamp_unix_ms: u64,
        from: &str,
        stanza: &[u8],
        max: usize,
    ) -> Result<Option<u64>, StorageError> {
        let quota = OfflineQuota {
            max_messages: max,
            max_bytes: u64::MAX,
            reserve: None,
        };
        Ok(
            match self.push_offline_within(user, stamp_unix_ms, from, stanza, &quota)? {
                OfflinePush::Stored(seq) => Some(seq),
                OfflinePush::Full(_) => None,
            },
        )
    }

    /// Appends a message to the user's queue unless a limit of `quota` refuses it (then
    /// nothing is stored). The limits are checked in this order: messages, bytes, map reserve.
    /// [`StorageError::NoSuchAccount`] if the user has no account.
    ///
    /// The map reserve is measured on the last committed state (see [`MapGauge`]): the other
    /// writes of the same group-committed batch are not counted, so a batch can use at most
    /// its own size of the reserve.
    pub fn push_offline_within(
        &mut self,
        user: &str,
        stamp_unix_ms: u64,
        from: &str,
        stanza: &[u8],
        quota: &OfflineQuota,
    ) -> Result<OfflinePush, StorageError> {
        crate::fault::write(user)?;
        key::user(user)?;
        self.require_account(user)?;
        let mut meta = meta_in(self, user)?;
        if meta.count_usize() >= quota.max_messages {
            return Ok(OfflinePush::Full(OfflineFull::Messages));
        }
        let seq = meta.next_seq;
        let key = key::seq(user, seq)?;
        let message = encode_message(stamp_unix_ms, from, stanza);
        let size = stored_size(&key, &message);
        if meta.bytes.saturating_add(size) > quota.max_bytes {
            return Ok(OfflinePush::Full(OfflineFull::Bytes));
        }
        if let Some((gauge, reserve)) = &quota.reserve {
            if gauge.usage()?.free_bytes() < reserve.saturating_add(size) {
                return Ok(OfflinePush::Full(OfflineFull::Map));
            }
        }
        meta.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| StorageError::Corrupt("offline counters: sequence exhausted".into()))?;
        meta.count += 1;
        meta.bytes = meta.bytes.saturating_add(size);
        self.insert(Table::Offline, &key, &message)
            .map_err(|e| match e {
                StorageError::AlreadyExists => StorageError::Corrupt(format!(
                    "offline counters: next sequence {seq} is already in use"
                )),
                e => e,
            })?;
        self.put(Table::OfflineMeta, key::user(user)?, &meta.encode())?;
        Ok(OfflinePush::Stored(seq))
    }

    /// Deletes the listed messages of the user (those delivered); returns how many of them
    /// existed. Unknown and repeated sequence numbers are ignored.
    pub fn delete_offline(&mut self, user: &str, seqs: &[u64]) -> Result<usize, StorageError> {
        crate::fault::write(user)?;
        // The counters first: format-1 counters learn their byte total from the messages.
        let mut meta = meta_in(self, user)?;
        let mut deleted = 0;
        let mut freed = 0u64;
        for &seq in seqs {
            let key = key::seq(user, seq)?;
            let Some(size) = self
                .get(Table::Offline, &key)?
                .map(|v| stored_size(&key, v))
            else {
                continue;
            };
            if self.delete(Table::Offline, &key)? {
                deleted += 1;
                freed += size;
            }
        }
        if deleted > 0 {
            meta.count = meta.count.checked_sub(deleted as u64).ok_or_else(|| {
                StorageError::Corrupt("offline counters: count below stored messages".into())
            })?;
            meta.bytes = meta.bytes.checked_sub(freed).ok_or_else(|| {
                StorageError::Corrupt("offline counters: bytes below stored messages".into())
            })?;
            // The record stays when the count reaches 0: it carries the next sequence number.
            self.put(Table::OfflineMeta, key::user(user)?, &meta.encode())?;
        }
        Ok(deleted)
    }
}

/// Removes the user's messages and counters (account deletion).
pub(crate) fn purge(txn: &mut WriteTxn<'_>, user: &str) -> Result<(), StorageError> {
    txn.delete_prefix(Table::Offline, &key::prefix(user)?)?;
    txn.delete(Table::OfflineMeta, key::user(user)?)?;
    Ok(())
}

/// A user's queue bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Messages stored.
    pub(crate) count: u64,
    /// The sequence number of the next message; 1 for a user who never had one.
    pub(crate) next_seq: u64,
    /// Bytes of the stored messages (keys and records), for the byte quota.
    pub(crate) bytes: u64,
}

impl Meta {
    const EMPTY: Meta = Meta {
        count: 0,
        next_seq: 1,
        bytes: 0,
    };

    fn count_usize(self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    /// Offline counters record format 2: `u8 2 | u64 count | u64 next_seq | u64 bytes`.
    pub(crate) fn encode(self) -> Vec<u8> {
        Encoder::new(META_V2)
            .u64(self.count)
            .u64(self.next_seq)
            .u64(self.bytes)
            .finish()
    }

    /// Decodes format 2, or format 1 (no byte total: `bytes` is None).
    pub(crate) fn decode(buf: &[u8]) -> Result<(Meta, Option<u64>), StorageError> {
        let (mut d, version) = Decoder::new(buf, "offline counters")?;
        if version != META_V1 && version != META_V2 {
            return Err(d.corrupt(&format!("unknown record format {version}")));
        }
        let count = d.u64()?;
        let next_seq = d.u64()?;
        let bytes = if version == META_V2 {
            Some(d.u64()?)
        } else {
            None
        };
        d.finish()?;
        // Every stored message took a sequence number below next_seq, starting at 1.
        if next_seq == 0 || count > next_seq - 1 {
            return Err(StorageError::Corrupt(format!(
                "offline counters: {count} messages but next sequence {next_seq}"
            )));
        }
        if count == 0 && bytes.is_some_and(|b| b != 0) {
            return Err(StorageError::Corrupt(
                "offline counters: bytes without messages".into(),
            ));
        }
        let meta = Meta {
            count,
            next_seq,
            bytes: bytes.unwrap_or(0),
        };
        Ok((meta, bytes))
    }
}

const META_V1: u8 = 1;
const META_V2: u8 = 2;

fn meta_in(txn: &impl Reader, user: &str) -> Result<Meta, StorageError> {
    let Some(raw) = txn.get(Table::OfflineMeta, key::user(user)?)? else {
        return Ok(Meta::EMPTY);
    };
    let (mut meta, bytes) = Meta::decode(raw)?;
    if bytes.is_none() && meta.count > 0 {
        // Format 1: the byte total is the sum over the stored messages (bounded by the
        // count limit); it is written back with the next change of the counters.
        let prefix = key::prefix(user)?;
        for entry in txn.entries(Table::Offline, &prefix)? {
            let (k, v) = entry?;
            meta.bytes = meta.bytes.saturating_add(stored_size(k, v));
        }
    }
    Ok(meta)
}

/// A message's size for the byte quota: its key and its record.
fn stored_size(key: &[u8], record: &[u8]) -> u64 {
    (key.len() + record.len()) as u64
}

/// Offline message record format 1 (the sequence number is the key, not part of the
/// record): `u8 1 | u64 stamp_unix_ms | bytes from | bytes stanza`.
const MESSAGE_V1: u8 = 1;

pub(crate) fn encode_message(stamp_unix_ms: u64, from: &str, stanza: &[u8]) -> Vec<u8> {
    Encoder::new(MESSAGE_V1)
        .u64(stamp_unix_ms)
        .bytes(from.as_bytes())
        .bytes(stanza)
        .finish()
}

pub(crate) fn decode_message(seq: u64, buf: &[u8]) -> Result<OfflineMessage, StorageError> {
    let (mut d, version) = Decoder::new(buf, "offline message")?;
    if version != MESSAGE_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let stamp_unix_ms = d.u64()?;
    let from = d.str()?.to_owned();
    let stanza = d.bytes()?.to_vec();
    d.finish()?;
    Ok(OfflineMessage {
        seq,
        stamp_unix_ms,
        from,
        stanza,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};

    #[test]
    fn message_round_trips_truncations_garbage() {
        let buf = encode_message(
            1_700_000_000_123,
            "romeo@example.net/orchard",
            b"<message/>",
        );
        assert_eq!(
            decode_message(9, &buf).unwrap(),
            OfflineMessage {
                seq: 9,
                stamp_unix_ms: 1_700_000_000_123,
                from: "romeo@example.net/orchard".into(),
                stanza: b"<message/>".to_vec(),
            }
        );
        let decode = |b: &[u8]| decode_message(1, b);
        every_truncation_is_corrupt(&buf, decode);
        every_truncation_is_corrupt(&encode_message(0, "", b""), decode);
        garbage_never_panics(&buf, decode);
        let mut v2 = buf.clone();
        v2[0] = 2;
        let mut utf8 = buf;
        utf8[13] = 0xff; // first byte of `from`
        for bad in [v2, utf8] {
            assert!(matches!(decode(&bad), Err(StorageError::Corrupt(_))));
        }
    }

    #[test]
    fn meta_round_trips_truncations_garbage() {
        for meta in [
            Meta::EMPTY,
            Meta {
                count: 3,
                next_seq: 10,
                bytes: 700,
            },
            Meta {
                count: u64::MAX - 1,
                next_seq: u64::MAX,
                bytes: u64::MAX,
            },
        ] {
            let buf = meta.encode();
            assert_eq!(Meta::decode(&buf).unwrap(), (meta, Some(meta.bytes)));
            every_truncation_is_corrupt(&buf, Meta::decode);
        }
        garbage_never_panics(&Meta::EMPTY.encode(), Meta::decode);
        for bad in [
            Meta {
                count: 0,
                next_seq: 0,
                bytes: 0,
            },
            Meta {
                count: 5,
                next_seq: 5,
                bytes: 10,
            },
            Meta {
                count: 0,
                next_seq: 5,
                bytes: 10,
            },
        ] {
            assert!(matches!(
                Meta::decode(&bad.encode()),
                Err(StorageError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn format_1_counters_decode_without_a_byte_total() {
        let v1 = Encoder::new(META_V1).u64(3).u64(10).finish();
        let (meta, bytes) = Meta::decode(&v1).unwrap();
        assert_eq!((meta.count, meta.next_seq, bytes), (3, 10, None));
        every_truncation_is_corrupt(&v1, Meta::decode);
        let mut v3 = v1;
        v3[0] = 3;
        assert!(matches!(Meta::decode(&v3), Err(StorageError::Corrupt(_))));
    }
}
