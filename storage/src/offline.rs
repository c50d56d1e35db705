//! Offline messages (XEP-0160): stanzas kept for a user until a resource comes online.
//!
//! Each user has a bounded queue: [`WriteTxn::push_offline`] refuses a message once the user
//! holds `max` of them, so the caller can bounce it (`resource-constraint`). Messages are keyed
//! by a per-user sequence number that only ever increases, even across deletions and
//! restarts, so the stored order is the arrival order. The stanza is opaque bytes.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::table::Table;
use crate::txn::{Reader, WriteTxn};
use crate::{Storage, StorageError};

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

    /// How many messages the user has: O(1), read from a counter.
    pub fn count(&self, user: &str) -> Result<usize, StorageError> {
        self.storage
            .read(|txn| Ok(meta_in(txn, user)?.count_usize()))
    }
}

/// Offline message writes inside a write transaction.
impl WriteTxn<'_> {
    /// Appends a message to the user's queue unless the user already has `max` messages:
    /// `Ok(Some(seq))` when stored, `Ok(None)` when the quota is full (nothing is stored).
    pub fn push_offline(
        &mut self,
        user: &str,
        stamp_unix_ms: u64,
        from: &str,
        stanza: &[u8],
        max: usize,
    ) -> Result<Option<u64>, StorageError> {
        let mut meta = meta_in(self, user)?;
        if meta.count_usize() >= max {
            return Ok(None);
        }
        let seq = meta.next_seq;
        meta.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| StorageError::Corrupt("offline counters: sequence exhausted".into()))?;
        meta.count += 1;
        let message = encode_message(stamp_unix_ms, from, stanza);
        self.insert(Table::Offline, &key::seq(user, seq)?, &message)
            .map_err(|e| match e {
                StorageError::AlreadyExists => StorageError::Corrupt(format!(
                    "offline counters: next sequence {seq} is already in use"
                )),
                e => e,
            })?;
        self.put(Table::OfflineMeta, key::user(user)?, &meta.encode())?;
        Ok(Some(seq))
    }

    /// Deletes the listed messages of the user (those delivered); returns how many of them
    /// existed. Unknown and repeated sequence numbers are ignored.
    pub fn delete_offline(&mut self, user: &str, seqs: &[u64]) -> Result<usize, StorageError> {
        let mut deleted = 0;
        for &seq in seqs {
            if self.delete(Table::Offline, &key::seq(user, seq)?)? {
                deleted += 1;
            }
        }
        if deleted > 0 {
            let mut meta = meta_in(self, user)?;
            meta.count = meta.count.checked_sub(deleted as u64).ok_or_else(|| {
                StorageError::Corrupt("offline counters: count below stored messages".into())
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
}

impl Meta {
    const EMPTY: Meta = Meta {
        count: 0,
        next_seq: 1,
    };

    fn count_usize(self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    /// Offline counters record format 1: `u8 1 | u64 count | u64 next_seq`.
    pub(crate) fn encode(self) -> Vec<u8> {
        Encoder::new(META_V1)
            .u64(self.count)
            .u64(self.next_seq)
            .finish()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Meta, StorageError> {
        let (mut d, version) = Decoder::new(buf, "offline counters")?;
        if version != META_V1 {
            return Err(d.corrupt(&format!("unknown record format {version}")));
        }
        let meta = Meta {
            count: d.u64()?,
            next_seq: d.u64()?,
        };
        d.finish()?;
        // Every stored message took a sequence number below next_seq, starting at 1.
        if meta.next_seq == 0 || meta.count > meta.next_seq - 1 {
            return Err(StorageError::Corrupt(format!(
                "offline counters: {} messages but next sequence {}",
                meta.count, meta.next_seq
            )));
        }
        Ok(meta)
    }
}

const META_V1: u8 = 1;

fn meta_in(txn: &impl Reader, user: &str) -> Result<Meta, StorageError> {
    txn.get(Table::OfflineMeta, key::user(user)?)?
        .map(Meta::decode)
        .unwrap_or(Ok(Meta::EMPTY))
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
            },
            Meta {
                count: u64::MAX - 1,
                next_seq: u64::MAX,
            },
        ] {
            let buf = meta.encode();
            assert_eq!(Meta::decode(&buf).unwrap(), meta);
            every_truncation_is_corrupt(&buf, Meta::decode);
        }
        garbage_never_panics(&Meta::EMPTY.encode(), Meta::decode);
        for bad in [
            Meta {
                count: 0,
                next_seq: 0,
            },
            Meta {
                count: 5,
                next_seq: 5,
            },
        ] {
            assert!(matches!(
                Meta::decode(&bad.encode()),
                Err(StorageError::Corrupt(_))
            ));
        }
    }
}
