//! Composite keys of the per-user tables: `user \0 contact` and `user \0 u64-BE`.
//!
//! JIDs never contain a NUL byte (RFC 7622 disallows U+0000 in every part), so `user \0` is a
//! prefix that no other user's keys share, and a prefix scan over it returns one user's
//! records in order: contacts in byte (= `str`) order, sequence numbers ascending because they
//! are big-endian. Every JID that becomes part of a key is checked here, so a caller's bug
//! cannot make one user's records appear under another.

use crate::StorageError;

/// Separates the user from the rest of a composite key.
const SEP: u8 = 0;

/// `jid` as a key part: [`StorageError::InvalidKey`] if it is empty or contains NUL.
pub(crate) fn part<'a>(what: &str, jid: &'a str) -> Result<&'a [u8], StorageError> {
    if jid.is_empty() || jid.as_bytes().contains(&SEP) {
        return Err(StorageError::InvalidKey(what.to_owned()));
    }
    Ok(jid.as_bytes())
}

/// The key of a per-user singleton record (roster version, offline counters, vCard).
pub(crate) fn user(user: &str) -> Result<&[u8], StorageError> {
    part("user", user)
}

/// `user \0`: the prefix of all of `user`'s composite keys.
pub(crate) fn prefix(user: &str) -> Result<Vec<u8>, StorageError> {
    let user = part("user", user)?;
    let mut key = Vec::with_capacity(user.len() + 1 + 8);
    key.extend_from_slice(user);
    key.push(SEP);
    Ok(key)
}

/// `user \0 contact`.
pub(crate) fn contact(user: &str, contact: &str) -> Result<Vec<u8>, StorageError> {
    let mut key = prefix(user)?;
    key.extend_from_slice(part("contact", contact)?);
    Ok(key)
}

/// `user \0 seq` with `seq` big-endian.
pub(crate) fn seq(user: &str, seq: u64) -> Result<Vec<u8>, StorageError> {
    let mut key = prefix(user)?;
    key.extend_from_slice(&seq.to_be_bytes());
    Ok(key)
}

/// The contact part of `key`, a key found by scanning `prefix` in a table named `what`.
pub(crate) fn contact_of<'k>(
    what: &str,
    prefix: &[u8],
    key: &'k [u8],
) -> Result<&'k str, StorageError> {
    let rest = key.get(prefix.len()..).unwrap_or_default();
    match std::str::from_utf8(rest) {
        Ok(contact) if !contact.is_empty() && !rest.contains(&SEP) => Ok(contact),
        _ => Err(StorageError::Corrupt(format!(
            "{what} key has no valid contact JID"
        ))),
    }
}

/// The sequence number of `key`, a key found by scanning `prefix` in a table named `what`.
pub(crate) fn seq_of(what: &str, prefix: &[u8], key: &[u8]) -> Result<u64, StorageError> {
    key.get(prefix.len()..)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt(format!("{what} key has no 8-byte sequence number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(prefix("a@x").unwrap(), b"a@x\0");
        assert_eq!(contact("a@x", "b@y").unwrap(), b"a@x\0b@y");
        assert_eq!(seq("a@x", 0x0102).unwrap(), b"a@x\0\0\0\0\0\0\0\x01\x02");
    }

    #[test]
    fn nul_and_empty_jids_are_refused() {
        for bad in ["", "a\0b"] {
            assert!(matches!(user(bad), Err(StorageError::InvalidKey(_))));
            assert!(matches!(prefix(bad), Err(StorageError::InvalidKey(_))));
            assert!(matches!(
                contact(bad, "b@y"),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                contact("a@x", bad),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(seq(bad, 1), Err(StorageError::InvalidKey(_))));
        }
    }

    #[test]
    fn parts_round_trip_and_bad_keys_are_corrupt() {
        let p = prefix("a@x").unwrap();
        assert_eq!(
            contact_of("t", &p, &contact("a@x", "b@y").unwrap()).unwrap(),
            "b@y"
        );
        assert_eq!(seq_of("t", &p, &seq("a@x", 77).unwrap()).unwrap(), 77);
        for bad in [&b"a@x\0"[..], b"a@x\0\xff", b"a@x\0b\0c", b"a@"] {
            assert!(matches!(
                contact_of("t", &p, bad),
                Err(StorageError::Corrupt(_))
            ));
        }
        for bad in [&b"a@x\0"[..], b"a@x\x001234567", b"a@x\x00123456789", b"a"] {
            assert!(matches!(
                seq_of("t", &p, bad),
                Err(StorageError::Corrupt(_))
            ));
        }
    }
}
