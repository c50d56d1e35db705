//! Composite keys of the per-user tables: `user \0 contact` and `user \0 u64-BE`, and the
//! nested `user \0 name \0 leaf` and `user \0 name \0 u64-BE` of the pubsub tables.
//!
//! JIDs never contain a NUL byte (RFC 7622 disallows U+0000 in every part), so `user \0` is a
//! prefix that no other user's keys share, and a prefix scan over it returns one user's
//! records in order: contacts in byte (= `str`) order, sequence numbers ascending because they
//! are big-endian. Every JID that becomes part of a key is checked here, so a caller's bug
//! cannot make one user's records appear under another. Names below a user (pubsub node
//! names, item ids, XML namespaces) come from XML, which cannot carry U+0000 either, and are
//! checked the same way.
//!
//! The helpers that build keys of the newer tables ([`named`], [`nested`], ...) also refuse a
//! key longer than LMDB accepts ([`MAX_KEY`]) with [`StorageError::InvalidKey`], so an
//! oversized name is a clean error on reads and writes alike, never an LMDB failure halfway
//! through a write.

use crate::StorageError;

/// Separates the user from the rest of a composite key.
const SEP: u8 = 0;

/// The longest key LMDB stores (its compile-time `MDB_MAXKEYSIZE`, 511 in the bundled build).
pub(crate) const MAX_KEY: usize = 511;

/// `jid` as a key part: [`StorageError::InvalidKey`] if it is empty or contains NUL.
pub(crate) fn part<'a>(what: &str, jid: &'a str) -> Result<&'a [u8], StorageError> {
    if jid.is_empty() || jid.as_bytes().contains(&SEP) {
        return Err(StorageError::InvalidKey(format!(
            "{what} is empty or contains a NUL byte"
        )));
    }
    Ok(jid.as_bytes())
}

/// `key` if LMDB can store it; [`StorageError::InvalidKey`] naming `what` (the part that made
/// it long) if it is longer than [`MAX_KEY`].
fn fits(what: &str, key: Vec<u8>) -> Result<Vec<u8>, StorageError> {
    if key.len() > MAX_KEY {
        return Err(StorageError::InvalidKey(format!(
            "{what} makes a key of {} bytes, longer than the {MAX_KEY} bytes storage allows",
            key.len()
        )));
    }
    Ok(key)
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

/// `user \0 name`, `name` called `what` in errors; refused above [`MAX_KEY`] bytes.
pub(crate) fn named(user: &str, what: &str, name: &str) -> Result<Vec<u8>, StorageError> {
    let mut key = prefix(user)?;
    key.extend_from_slice(part(what, name)?);
    fits(what, key)
}

/// `user \0 name \0`: the prefix of every [`nested`] and [`seq_below`] key below `name`.
/// Refused when even the shortest key below it, a sequence number, would exceed [`MAX_KEY`]
/// bytes, so a prefix accepted here always has room for its [`seq_below`] keys.
pub(crate) fn nested_prefix(user: &str, what: &str, name: &str) -> Result<Vec<u8>, StorageError> {
    let mut key = prefix(user)?;
    key.extend_from_slice(part(what, name)?);
    key.push(SEP);
    if key.len() + 8 > MAX_KEY {
        // Reported with the length of the sequence key it would need.
        key.extend_from_slice(&[0; 8]);
        return fits(what, key);
    }
    Ok(key)
}

/// `user \0 name \0 leaf`, `name` called `what` and `leaf` called `leaf_what` in errors;
/// refused above [`MAX_KEY`] bytes.
pub(crate) fn nested(
    user: &str,
    what: &str,
    name: &str,
    leaf_what: &str,
    leaf: &str,
) -> Result<Vec<u8>, StorageError> {
    let mut key = nested_prefix(user, what, name)?;
    key.extend_from_slice(part(leaf_what, leaf)?);
    fits(leaf_what, key)
}

/// `prefix seq` with `seq` big-endian, for a `prefix` from [`nested_prefix`] (which leaves
/// room for it): `user \0 name \0 seq`.
pub(crate) fn seq_below(prefix: &[u8], seq: u64) -> Vec<u8> {
    [prefix, &seq.to_be_bytes()].concat()
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
    fn nested_layout() {
        assert_eq!(named("a@x", "node", "n").unwrap(), b"a@x\0n");
        assert_eq!(nested_prefix("a@x", "node", "n").unwrap(), b"a@x\0n\0");
        assert_eq!(
            nested("a@x", "node", "n", "item", "i").unwrap(),
            b"a@x\0n\0i"
        );
        assert_eq!(
            seq_below(&nested_prefix("a@x", "node", "n").unwrap(), 0x0102),
            b"a@x\0n\0\0\0\0\0\0\0\x01\x02"
        );
        for bad in ["", "a\0b"] {
            assert!(matches!(
                named(bad, "node", "n"),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                named("a@x", "node", bad),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                nested_prefix("a@x", "node", bad),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                nested("a@x", "node", "n", "item", bad),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                nested_prefix(bad, "node", "n"),
                Err(StorageError::InvalidKey(_))
            ));
        }
    }

    #[test]
    fn keys_longer_than_lmdb_allows_are_refused() {
        // "a@x" \0 name: 4 + name bytes.
        let at_limit = "n".repeat(MAX_KEY - 4);
        assert_eq!(named("a@x", "node", &at_limit).unwrap().len(), MAX_KEY);
        let over = "n".repeat(MAX_KEY - 3);
        match named("a@x", "node", &over) {
            Err(StorageError::InvalidKey(why)) => {
                assert!(why.starts_with("node ") && why.contains("512"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // A nested prefix must leave room for an 8-byte sequence number.
        let name = "n".repeat(MAX_KEY - 4 - 1 - 8);
        let prefix = nested_prefix("a@x", "node", &name).unwrap();
        assert_eq!(seq_below(&prefix, u64::MAX).len(), MAX_KEY);
        let name = "n".repeat(MAX_KEY - 4 - 1 - 8 + 1);
        assert!(matches!(
            nested_prefix("a@x", "node", &name),
            Err(StorageError::InvalidKey(_))
        ));
        // The leaf is checked against the whole key.
        let leaf = "i".repeat(MAX_KEY - 6);
        assert_eq!(
            nested("a@x", "node", "n", "item", &leaf).unwrap().len(),
            MAX_KEY
        );
        let leaf = "i".repeat(MAX_KEY - 5);
        match nested("a@x", "node", "n", "item", &leaf) {
            Err(StorageError::InvalidKey(why)) => assert!(why.starts_with("item "), "{why}"),
            other => panic!("{other:?}"),
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
