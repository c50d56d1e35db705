//! vCards (XEP-0054): one opaque vCard per user, as the caller stored it.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::{Storage, StorageError};

/// Read access to vCards, keyed by the user's normalized bare JID. Writes are [`WriteTxn`]
/// methods ([`put_vcard`](WriteTxn::put_vcard), [`delete_vcard`](WriteTxn::delete_vcard)).
#[derive(Clone)]
pub struct VcardStore {
    storage: Storage,
}

impl VcardStore {
    pub(crate) fn new(storage: Storage) -> VcardStore {
        VcardStore { storage }
    }

    /// The user's vCard bytes, if one is stored.
    pub fn get(&self, user: &str) -> Result<Option<Vec<u8>>, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| {
            txn.get(Table::Vcards, key::user(user)?)?
                .map(decode)
                .transpose()
        })
    }
}

/// vCard writes inside a write transaction.
impl WriteTxn<'_> {
    /// Stores `vcard` as the user's vCard, replacing any previous one;
    /// [`StorageError::NoSuchAccount`] if the user has no account.
    pub fn put_vcard(&mut self, user: &str, vcard: &[u8]) -> Result<(), StorageError> {
        crate::fault::write(user)?;
        let key = key::user(user)?;
        self.require_account(user)?;
        self.put(Table::Vcards, key, &encode(vcard))
    }

    /// Removes the user's vCard; returns whether there was one.
    pub fn delete_vcard(&mut self, user: &str) -> Result<bool, StorageError> {
        crate::fault::write(user)?;
        self.delete(Table::Vcards, key::user(user)?)
    }
}

/// Removes the user's vCard (account deletion).
pub(crate) fn purge(txn: &mut WriteTxn<'_>, user: &str) -> Result<(), StorageError> {
    txn.delete_vcard(user)?;
    Ok(())
}

/// vCard record format 1: `u8 1 | bytes vcard`.
const VCARD_V1: u8 = 1;

pub(crate) fn encode(vcard: &[u8]) -> Vec<u8> {
    Encoder::new(VCARD_V1).bytes(vcard).finish()
}

pub(crate) fn decode(buf: &[u8]) -> Result<Vec<u8>, StorageError> {
    let (mut d, version) = Decoder::new(buf, "vcard")?;
    if version != VCARD_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let vcard = d.bytes()?.to_vec();
    d.finish()?;
    Ok(vcard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};

    #[test]
    fn record_round_trips_truncations_garbage() {
        for vcard in [
            &b""[..],
            b"<vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard>",
        ] {
            let buf = encode(vcard);
            assert_eq!(decode(&buf).unwrap(), vcard);
            every_truncation_is_corrupt(&buf, decode);
        }
        garbage_never_panics(&encode(b"<vCard/>"), decode);
        let mut v2 = encode(b"x");
        v2[0] = 2;
        assert!(matches!(decode(&v2), Err(StorageError::Corrupt(_))));
    }
}
