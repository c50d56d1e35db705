//! Private XML storage (XEP-0049): opaque XML a user keeps on the server, one fragment per
//! namespace, keyed by `user \0 namespace` so one prefix scan lists (and account deletion
//! removes) a user's fragments.
//!
//! Namespaces are checked like JIDs (not empty, no NUL) and must fit LMDB's 511-byte keys
//! together with the user ([`StorageError::InvalidKey`] otherwise). The crate does not
//! bound the fragment's size: the server does.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::{Storage, StorageError};

/// Read access to private XML, keyed by the user's normalized bare JID and the fragment's
/// namespace. Writes are [`WriteTxn`] methods ([`put_private`](WriteTxn::put_private),
/// [`delete_private`](WriteTxn::delete_private)).
#[derive(Clone)]
pub struct PrivateStore {
    storage: Storage,
}

impl PrivateStore {
    pub(crate) fn new(storage: Storage) -> PrivateStore {
        PrivateStore { storage }
    }

    /// The user's fragment for `namespace`, as stored, if any.
    pub fn get(&self, user: &str, namespace: &str) -> Result<Option<Vec<u8>>, StorageError> {
        crate::fault::read(user)?;
        let key = key::named(user, "namespace", namespace)?;
        self.storage
            .read(|txn| txn.get(Table::PrivateXml, &key)?.map(decode).transpose())
    }

    /// How many namespaces the user has a fragment stored for.
    pub fn count(&self, user: &str) -> Result<usize, StorageError> {
        crate::fault::read(user)?;
        let prefix = key::prefix(user)?;
        self.storage.read(|txn| {
            txn.entries(Table::PrivateXml, &prefix)?
                .try_fold(0, |n, entry| entry.map(|_| n + 1))
        })
    }
}

/// Private XML writes inside a write transaction.
impl WriteTxn<'_> {
    /// Stores `xml` as the user's fragment for `namespace`, replacing any previous one;
    /// [`StorageError::NoSuchAccount`] if the user has no account.
    pub fn put_private(
        &mut self,
        user: &str,
        namespace: &str,
        xml: &[u8],
    ) -> Result<(), StorageError> {
        crate::fault::write(user)?;
        let key = key::named(user, "namespace", namespace)?;
        self.require_account(user)?;
        self.put(Table::PrivateXml, &key, &encode(xml))
    }

    /// Stores every `(namespace, xml)` fragment like [`put_private`](WriteTxn::put_private),
    /// all or none: when they would give the user fragments for more than `max_namespaces`
    /// namespaces, nothing is written and the result is `false`. Counted inside the
    /// transaction, so concurrent writes cannot overshoot.
    pub fn put_private_within(
        &mut self,
        user: &str,
        fragments: &[(&str, &[u8])],
        max_namespaces: usize,
    ) -> Result<bool, StorageError> {
        crate::fault::write(user)?;
        let mut added = 0;
        for (i, (namespace, _)) in fragments.iter().enumerate() {
            let key = key::named(user, "namespace", namespace)?;
            let repeated = fragments[..i].iter().any(|(n, _)| n == namespace);
            if !repeated && self.get(Table::PrivateXml, &key)?.is_none() {
                added += 1;
            }
        }
        if added > 0
            && self.count_prefix(Table::PrivateXml, &key::prefix(user)?)? + added > max_namespaces
        {
            return Ok(false);
        }
        for (namespace, xml) in fragments {
            self.put_private(user, namespace, xml)?;
        }
        Ok(true)
    }

    /// The user's fragment for `namespace`, read inside this transaction.
    pub fn private_fragment(
        &self,
        user: &str,
        namespace: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        crate::fault::read(user)?;
        let key = key::named(user, "namespace", namespace)?;
        self.get(Table::PrivateXml, &key)?.map(decode).transpose()
    }

    /// Removes the user's fragment for `namespace`; returns whether there was one.
    pub fn delete_private(&mut self, user: &str, namespace: &str) -> Result<bool, StorageError> {
        crate::fault::write(user)?;
        self.delete(
            Table::PrivateXml,
            &key::named(user, "namespace", namespace)?,
        )
    }
}

/// Removes every fragment of the user (account deletion).
pub(crate) fn purge(txn: &mut WriteTxn<'_>, user: &str) -> Result<(), StorageError> {
    txn.delete_prefix(Table::PrivateXml, &key::prefix(user)?)?;
    Ok(())
}

/// Private XML record format 1 (user and namespace are the key): `u8 1 | bytes xml`.
const PRIVATE_V1: u8 = 1;

pub(crate) fn encode(xml: &[u8]) -> Vec<u8> {
    Encoder::new(PRIVATE_V1).bytes(xml).finish()
}

pub(crate) fn decode(buf: &[u8]) -> Result<Vec<u8>, StorageError> {
    let (mut d, version) = Decoder::new(buf, "private xml")?;
    if version != PRIVATE_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let xml = d.bytes()?.to_vec();
    d.finish()?;
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};
    use crate::{Account, Options, ScramKeys};
    use std::path::{Path, PathBuf};

    const USER: &str = "juliet@capulet.lit";
    const NS: &str = "storage:bookmarks";

    #[test]
    fn record_round_trips_truncations_garbage() {
        for xml in [
            &b""[..],
            b"<storage xmlns='storage:bookmarks'><url name='x' url='http://x'/></storage>",
        ] {
            let buf = encode(xml);
            assert_eq!(decode(&buf).unwrap(), xml);
            every_truncation_is_corrupt(&buf, decode);
        }
        garbage_never_panics(&encode(b"<exodus xmlns='exodus:prefs'/>"), decode);
        let mut v2 = encode(b"x");
        v2[0] = 2;
        assert!(matches!(decode(&v2), Err(StorageError::Corrupt(_))));
    }

    /// A fresh data directory, removed on drop (after the storage using it is dropped).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let dir = std::env::temp_dir().join(format!(
                "xmppd-storage-private-{tag}-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn setup(dir: &TempDir, users: &[&str]) -> Storage {
        let opts = Options {
            map_size: 64 << 20,
            ..Options::default()
        };
        let s = Storage::open(dir.path(), &opts).unwrap();
        let keys = ScramKeys {
            salt: b"salt".to_vec(),
            iterations: 4096,
            stored_key: vec![1; 20],
            server_key: vec![2; 20],
        };
        let account = Account {
            sha1: keys.clone(),
            sha256: keys,
            created_unix: 1,
            disabled: false,
        };
        for user in users {
            s.accounts().create(user, &account).unwrap();
        }
        s
    }

    #[test]
    fn store_read_replace_delete() {
        let dir = TempDir::new("crud");
        // `USER` is a prefix of the neighbour's JID.
        let neighbour = "juliet@capulet.lit.x";
        let s = setup(&dir, &[USER, neighbour]);
        let p = s.private();
        assert_eq!(p.get(USER, NS).unwrap(), None);
        assert_eq!(p.count(USER).unwrap(), 0);
        s.write_sync(|t| t.put_private(USER, NS, b"<storage xmlns='storage:bookmarks'/>"))
            .unwrap();
        s.write_sync(|t| t.put_private(USER, "exodus:prefs", b"<exodus/>"))
            .unwrap();
        s.write_sync(|t| t.put_private(neighbour, NS, b"<other/>"))
            .unwrap();
        assert_eq!(
            p.get(USER, NS).unwrap().as_deref(),
            Some(&b"<storage xmlns='storage:bookmarks'/>"[..])
        );
        assert_eq!(p.count(USER).unwrap(), 2);
        assert_eq!(p.count(neighbour).unwrap(), 1);
        // Replacing keeps one fragment per namespace.
        s.submit(|t| t.put_private(USER, NS, b"<new/>"))
            .wait()
            .unwrap();
        assert_eq!(p.get(USER, NS).unwrap().as_deref(), Some(&b"<new/>"[..]));
        assert_eq!(p.count(USER).unwrap(), 2);
        // Read inside a write transaction: the same bytes.
        assert_eq!(
            s.write_sync(|t| t.private_fragment(USER, NS))
                .unwrap()
                .as_deref(),
            Some(&b"<new/>"[..])
        );
        assert_eq!(
            s.write_sync(|t| t.private_fragment(USER, "none")).unwrap(),
            None
        );

        assert!(s.write_sync(|t| t.delete_private(USER, NS)).unwrap());
        assert!(!s.write_sync(|t| t.delete_private(USER, NS)).unwrap());
        assert_eq!(p.get(USER, NS).unwrap(), None);
        assert_eq!(p.count(USER).unwrap(), 1);
        assert_eq!(
            p.get(neighbour, NS).unwrap().as_deref(),
            Some(&b"<other/>"[..])
        );
    }

    #[test]
    fn needs_an_account_and_valid_keys() {
        let dir = TempDir::new("keys");
        let s = setup(&dir, &[USER]);
        assert!(matches!(
            s.write_sync(|t| t.put_private("romeo@montague.lit", NS, b"<x/>")),
            Err(StorageError::NoSuchAccount)
        ));
        assert_eq!(s.private().count("romeo@montague.lit").unwrap(), 0);
        let long = "n".repeat(key::MAX_KEY - USER.len());
        for (user, ns) in [
            ("", NS),
            (USER, ""),
            ("a\0b", NS),
            (USER, "x\0y"),
            (USER, &long),
        ] {
            assert!(matches!(
                s.write_sync(|t| t.put_private(user, ns, b"<x/>")),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.private().get(user, ns),
                Err(StorageError::InvalidKey(_))
            ));
            assert!(matches!(
                s.write_sync(|t| t.delete_private(user, ns)),
                Err(StorageError::InvalidKey(_))
            ));
        }
        // Exactly LMDB's limit is stored.
        let longest = &long[1..];
        s.write_sync(|t| t.put_private(USER, longest, b"<x/>"))
            .unwrap();
        assert_eq!(
            s.private().get(USER, longest).unwrap().as_deref(),
            Some(&b"<x/>"[..])
        );
        assert_eq!(s.private().count(USER).unwrap(), 1);
    }

    #[test]
    fn put_within_bounds_the_namespace_count_all_or_none() {
        let dir = TempDir::new("within");
        let s = setup(&dir, &[USER]);
        let put = |frags: &'static [(&'static str, &'static [u8])]| {
            s.write_sync(move |t| t.put_private_within(USER, frags, 2))
                .unwrap()
        };
        assert!(put(&[("a", b"<a xmlns='a'/>")]));
        assert!(
            !put(&[("b", b"<b xmlns='b'/>"), ("c", b"<c xmlns='c'/>")]),
            "3 > 2"
        );
        assert_eq!(
            s.private().get(USER, "b").unwrap(),
            None,
            "none of a refused set"
        );
        assert!(put(&[
            ("b", b"<b xmlns='b'/>"),
            ("b", b"<b xmlns='b'>again</b>")
        ]));
        assert!(
            !put(&[("c", b"<c xmlns='c'/>")]),
            "a third namespace is refused"
        );
        assert!(
            put(&[("a", b"<a xmlns='a'>2</a>")]),
            "replacing is not a new namespace"
        );
        assert_eq!(
            s.private().get(USER, "a").unwrap().as_deref(),
            Some(&b"<a xmlns='a'>2</a>"[..])
        );
        assert_eq!(s.private().count(USER).unwrap(), 2);
    }
}
