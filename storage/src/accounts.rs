//! Accounts: SCRAM credentials per bare JID, never a plaintext password.

use crate::codec::{Decoder, Encoder};
use crate::revocations::{self, RevocationsAfter, RevokeReason};
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::{key, offline, privacy, private, pubsub, roster, vcard};
use crate::{Completion, Storage, StorageError};

/// SCRAM credentials for one hash function (RFC 5802 §3): what the server needs to verify a
/// client proof, and nothing that lets it log in as the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    /// The salt given to the client.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count given to the client.
    pub iterations: u32,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

/// One account's stored state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Credentials for SCRAM-SHA-1.
    pub sha1: ScramKeys,
    /// Credentials for SCRAM-SHA-256.
    pub sha256: ScramKeys,
    /// When the account was created, seconds since the Unix epoch.
    pub created_unix: u64,
    /// A disabled account exists but may not log in.
    pub disabled: bool,
}

/// Accounts keyed by normalized bare JID (`user@domain`; the caller normalizes).
///
/// Reads run a read transaction on the calling thread. The plain writes are synchronous and
/// durable before they return (for the admin CLI, possibly while the server runs); the
/// `*_async` writes are group-committed (for the server).
#[derive(Clone)]
pub struct AccountStore {
    storage: Storage,
}

impl AccountStore {
    pub(crate) fn new(storage: Storage) -> AccountStore {
        AccountStore { storage }
    }

    /// The account of `bare_jid`, if it exists.
    pub fn get(&self, bare_jid: &str) -> Result<Option<Account>, StorageError> {
        self.storage.read(|txn| {
            txn.get(Table::Accounts, bare_jid.as_bytes())?
                .map(decode)
                .transpose()
        })
    }

    /// The account of `bare_jid`, if it exists, and the last revocation sequence number, both
    /// from one snapshot: a login checked against this account is invalidated exactly by the
    /// revocations after that number (see [`revocations_after`](Self::revocations_after)).
    pub fn get_with_revocation_seq(
        &self,
        bare_jid: &str,
    ) -> Result<(Option<Account>, u64), StorageError> {
        self.storage.read(|txn| {
            let account = txn
                .get(Table::Accounts, bare_jid.as_bytes())?
                .map(decode)
                .transpose()?;
            Ok((account, revocations::last_seq(txn)?))
        })
    }

    /// The last revocation sequence number (0 if there was none): one lookup, so a server can
    /// poll it cheaply.
    pub fn revocation_seq(&self) -> Result<u64, StorageError> {
        self.storage.read(|txn| revocations::last_seq(txn))
    }

    /// The revocations after sequence number `after` that are still kept (at most
    /// [`REVOCATIONS_KEEP_MAX`](crate::REVOCATIONS_KEEP_MAX)), and whether any were already
    /// dropped.
    pub fn revocations_after(&self, after: u64) -> Result<RevocationsAfter, StorageError> {
        self.storage.read(|txn| revocations::after(txn, after))
    }

    /// Whether `bare_jid` has an account.
    pub fn exists(&self, bare_jid: &str) -> Result<bool, StorageError> {
        crate::fault::read(bare_jid)?;
        self.storage
            .read(|txn| Ok(txn.get(Table::Accounts, bare_jid.as_bytes())?.is_some()))
    }

    /// Every account's bare JID, sorted.
    pub fn list(&self) -> Result<Vec<String>, StorageError> {
        self.list_matching(|_| true)
    }

    /// The bare JIDs of `domain`'s accounts, sorted.
    pub fn list_domain(&self, domain: &str) -> Result<Vec<String>, StorageError> {
        // A localpart cannot contain '@' (RFC 7622 §3.3.1), so the suffix is unambiguous.
        let suffix = format!("@{domain}");
        self.list_matching(|jid| jid.ends_with(&suffix))
    }

    fn list_matching(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, StorageError> {
        self.storage.read(|txn| {
            let mut out = Vec::new();
            // Keys come out in byte order, which for UTF-8 is the order of `str`.
            for entry in txn.entries(Table::Accounts, b"")? {
                let (key, _) = entry?;
                let jid = std::str::from_utf8(key)
                    .map_err(|_| StorageError::Corrupt("account key is not UTF-8".into()))?;
                if keep(jid) {
                    out.push(jid.to_owned());
                }
            }
            Ok(out)
        })
    }

    /// Creates the account, durably, before returning; [`StorageError::AlreadyExists`] if
    /// `bare_jid` has one.
    pub fn create(&self, bare_jid: &str, account: &Account) -> Result<(), StorageError> {
        self.storage
            .write_sync(|txn| create_in(txn, bare_jid, account))
    }

    /// Replaces the account's credentials, durably, before returning, keeping everything else
    /// (read and written in one transaction, so a concurrent disable is not undone);
    /// [`StorageError::NotFound`] if `bare_jid` has none. Records a revocation.
    pub fn set_password(
        &self,
        bare_jid: &str,
        sha1: ScramKeys,
        sha256: ScramKeys,
    ) -> Result<(), StorageError> {
        self.storage.write_sync(|txn| {
            let mut account = txn.account(bare_jid)?.ok_or(StorageError::NotFound)?;
            account.sha1 = sha1;
            account.sha256 = sha256;
            set_in(txn, bare_jid, &account)
        })
    }

    /// Disables or enables the account, durably, before returning; returns whether it changed.
    /// [`StorageError::NotFound`] if `bare_jid` has none. Disabling records a revocation.
    pub fn set_disabled(&self, bare_jid: &str, disabled: bool) -> Result<bool, StorageError> {
        self.storage.write_sync(|txn| {
            let mut account = txn.account(bare_jid)?.ok_or(StorageError::NotFound)?;
            if account.disabled == disabled {
                return Ok(false);
            }
            account.disabled = disabled;
            set_in(txn, bare_jid, &account)?;
            Ok(true)
        })
    }

    /// Replaces the account, durably, before returning; [`StorageError::NotFound`] if
    /// `bare_jid` has none. New credentials or disabling record a revocation.
    pub fn set(&self, bare_jid: &str, account: &Account) -> Result<(), StorageError> {
        self.storage
            .write_sync(|txn| set_in(txn, bare_jid, account))
    }

    /// Deletes the account, durably, before returning; [`StorageError::NotFound`] if
    /// `bare_jid` has none. In the same transaction it deletes the user's roster (items,
    /// version, pending inbound requests), offline messages and their counters, privacy
    /// lists, personal eventing nodes with their items, private XML and vCard; other users'
    /// roster items that name the user stay. Records a revocation.
    pub fn delete(&self, bare_jid: &str) -> Result<(), StorageError> {
        self.storage.write_sync(|txn| delete_in(txn, bare_jid))
    }

    /// Group-committed [`create`](Self::create), e.g. for in-band registration.
    pub fn create_async(&self, bare_jid: &str, account: Account) -> Completion<()> {
        let jid = bare_jid.to_owned();
        self.storage
            .submit(move |txn| create_in(txn, &jid, &account))
    }

    /// Group-committed [`set`](Self::set), e.g. for an in-band password change.
    pub fn set_async(&self, bare_jid: &str, account: Account) -> Completion<()> {
        let jid = bare_jid.to_owned();
        self.storage.submit(move |txn| set_in(txn, &jid, &account))
    }

    /// Group-committed [`delete`](Self::delete) (with the same cascade), e.g. for in-band
    /// account removal.
    pub fn delete_async(&self, bare_jid: &str) -> Completion<()> {
        let jid = bare_jid.to_owned();
        self.storage.submit(move |txn| delete_in(txn, &jid))
    }
}

/// Account reads and writes inside a write transaction (bulk imports that write accounts
/// with their rosters atomically).
impl WriteTxn<'_> {
    /// [`StorageError::NoSuchAccount`] unless `user` has an account (including this
    /// transaction's own writes). Every write that creates or changes a user's records calls
    /// it first, so a write racing the account's deletion fails instead of recreating them.
    pub fn require_account(&self, user: &str) -> Result<(), StorageError> {
        match self.get(Table::Accounts, user.as_bytes())? {
            Some(_) => Ok(()),
            None => Err(StorageError::NoSuchAccount),
        }
    }

    /// The account of `bare_jid`, if it exists (including this transaction's own writes).
    pub fn account(&self, bare_jid: &str) -> Result<Option<Account>, StorageError> {
        self.get(Table::Accounts, bare_jid.as_bytes())?
            .map(decode)
            .transpose()
    }

    /// Creates the account; [`StorageError::AlreadyExists`] if `bare_jid` has one.
    pub fn create_account(
        &mut self,
        bare_jid: &str,
        account: &Account,
    ) -> Result<(), StorageError> {
        create_in(self, bare_jid, account)
    }

    /// Replaces the account; [`StorageError::NotFound`] if `bare_jid` has none.
    pub fn set_account(&mut self, bare_jid: &str, account: &Account) -> Result<(), StorageError> {
        set_in(self, bare_jid, account)
    }
}

fn create_in(
    txn: &mut WriteTxn<'_>,
    bare_jid: &str,
    account: &Account,
) -> Result<(), StorageError> {
    txn.insert(Table::Accounts, bare_jid.as_bytes(), &encode(account))
}

/// Replaces the account; a change that invalidates logins made with the old record (other
/// credentials, or disabling) records a revocation in the same transaction.
fn set_in(txn: &mut WriteTxn<'_>, bare_jid: &str, account: &Account) -> Result<(), StorageError> {
    let old = txn.account(bare_jid)?.ok_or(StorageError::NotFound)?;
    txn.put(Table::Accounts, bare_jid.as_bytes(), &encode(account))?;
    let reason = if account.disabled && !old.disabled {
        Some(RevokeReason::Disabled)
    } else if account.sha1 != old.sha1 || account.sha256 != old.sha256 {
        Some(RevokeReason::PasswordChanged)
    } else {
        None
    };
    if let Some(reason) = reason {
        revocations::append(txn, bare_jid, reason)?;
    }
    Ok(())
}

fn delete_in(txn: &mut WriteTxn<'_>, bare_jid: &str) -> Result<(), StorageError> {
    if !txn.delete(Table::Accounts, bare_jid.as_bytes())? {
        return Err(StorageError::NotFound);
    }
    revocations::append(txn, bare_jid, RevokeReason::Deleted)?;
    if key::user(bare_jid).is_err() {
        // A JID that cannot be a key part can have no per-user records to cascade to.
        return Ok(());
    }
    roster::purge(txn, bare_jid)?;
    offline::purge(txn, bare_jid)?;
    privacy::purge(txn, bare_jid)?;
    pubsub::purge(txn, bare_jid)?;
    private::purge(txn, bare_jid)?;
    vcard::purge(txn, bare_jid)
}

/// Account record format 1:
/// `u8 1 | scram(sha1) | scram(sha256) | u64 created_unix | u8 flags (bit 0: disabled)`,
/// where `scram = bytes salt | u32 iterations | bytes stored_key | bytes server_key`.
const ACCOUNT_V1: u8 = 1;
const FLAG_DISABLED: u8 = 1;

pub(crate) fn encode(a: &Account) -> Vec<u8> {
    let mut e = Encoder::new(ACCOUNT_V1);
    for keys in [&a.sha1, &a.sha256] {
        e.bytes(&keys.salt)
            .u32(keys.iterations)
            .bytes(&keys.stored_key)
            .bytes(&keys.server_key);
    }
    e.u64(a.created_unix)
        .u8(if a.disabled { FLAG_DISABLED } else { 0 });
    e.finish()
}

pub(crate) fn decode(buf: &[u8]) -> Result<Account, StorageError> {
    let (mut d, version) = Decoder::new(buf, "account")?;
    if version != ACCOUNT_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    fn scram(d: &mut Decoder<'_>) -> Result<ScramKeys, StorageError> {
        Ok(ScramKeys {
            salt: d.bytes()?.to_vec(),
            iterations: d.u32()?,
            stored_key: d.bytes()?.to_vec(),
            server_key: d.bytes()?.to_vec(),
        })
    }
    let sha1 = scram(&mut d)?;
    let sha256 = scram(&mut d)?;
    let created_unix = d.u64()?;
    let flags = d.u8()?;
    if flags & !FLAG_DISABLED != 0 {
        return Err(d.corrupt(&format!("unknown flags {flags:#x}")));
    }
    d.finish()?;
    Ok(Account {
        sha1,
        sha256,
        created_unix,
        disabled: flags & FLAG_DISABLED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing;

    pub(crate) fn sample() -> Account {
        Account {
            sha1: ScramKeys {
                salt: b"salt-1".to_vec(),
                iterations: 4096,
                stored_key: vec![1; 20],
                server_key: vec![2; 20],
            },
            sha256: ScramKeys {
                salt: b"salt-256".to_vec(),
                iterations: 8192,
                stored_key: vec![3; 32],
                server_key: vec![4; 32],
            },
            created_unix: 1_700_000_000,
            disabled: true,
        }
    }

    #[test]
    fn record_round_trips() {
        let a = sample();
        assert_eq!(decode(&encode(&a)).unwrap(), a);
        let b = Account {
            disabled: false,
            ..a
        };
        assert_eq!(decode(&encode(&b)).unwrap(), b);
    }

    #[test]
    fn every_truncation_is_corrupt() {
        testing::every_truncation_is_corrupt(&encode(&sample()), decode);
    }

    #[test]
    fn unknown_version_flags_and_trailing_bytes_are_corrupt() {
        let good = encode(&sample());
        let mut v2 = good.clone();
        v2[0] = 2;
        let mut flags = good.clone();
        *flags.last_mut().unwrap() = 0x80;
        let mut trailing = good;
        trailing.push(0);
        for bad in [v2, flags, trailing] {
            assert!(matches!(decode(&bad), Err(StorageError::Corrupt(_))));
        }
    }

    #[test]
    fn garbage_never_panics() {
        testing::garbage_never_panics(&encode(&sample()), decode);
    }
}
