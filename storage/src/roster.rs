//! Rosters (RFC 6121): each user's contacts, the roster version (§2.6) and the inbound
//! subscription requests still waiting for the user's answer (§3.1.3).
//!
//! Reads that serve a client (the whole roster at login, one item, the version) go through
//! [`RosterStore`]. Everything a roster change must read and then write runs as methods of
//! [`WriteTxn`] inside a [`Storage::submit`](crate::Storage::submit) closure, so the
//! read-modify-write (e.g. "set the subscription, bump the version") is one atomic,
//! group-committed step. The crate does not interpret stanzas: a stored subscription request
//! is the opaque bytes the caller hands in.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::table::Table;
use crate::txn::{Reader, WriteTxn};
use crate::{Storage, StorageError};

/// The subscription state of a roster item (RFC 6121 §2.1.2.5), from the user's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Neither receives the other's presence.
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    /// Both receive each other's presence.
    Both,
}

/// One contact in a user's roster (RFC 6121 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's normalized bare JID; the item's key.
    pub jid: String,
    /// The name the user gave the contact, if any.
    pub name: Option<String>,
    /// The groups the item is in, as the user gave them.
    pub groups: Vec<String>,
    /// The subscription state.
    pub subscription: Subscription,
    /// The user asked to subscribe to the contact and has no answer yet (`ask='subscribe'`).
    pub ask: bool,
    /// The user pre-approved a subscription request from the contact (RFC 6121 §3.4).
    pub approved: bool,
}

/// Everything a user's roster holds, read in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    /// The items, sorted by contact JID.
    pub items: Vec<RosterItem>,
    /// The roster version; 0 if it was never bumped.
    pub version: u64,
    /// Inbound subscription requests awaiting an answer: (contact bare JID, the stored
    /// subscribe stanza), sorted by contact JID.
    pub pending_in: Vec<(String, Vec<u8>)>,
}

/// Read access to rosters, keyed by the user's normalized bare JID. Each call is one read
/// transaction on the calling thread. Writes are [`WriteTxn`] methods (see the module docs).
#[derive(Clone)]
pub struct RosterStore {
    storage: Storage,
}

impl RosterStore {
    pub(crate) fn new(storage: Storage) -> RosterStore {
        RosterStore { storage }
    }

    /// The user's items, version and pending inbound requests, from one snapshot.
    pub fn load(&self, user: &str) -> Result<Roster, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| {
            Ok(Roster {
                items: items_in(txn, user)?,
                version: version_in(txn, user)?,
                pending_in: sub_requests_in(txn, user)?,
            })
        })
    }

    /// The user's item for `contact`, if any.
    pub fn item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| item_in(txn, user, contact))
    }

    /// The user's roster version; 0 if it was never bumped.
    pub fn version(&self, user: &str) -> Result<u64, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| version_in(txn, user))
    }
}

/// Roster reads and writes inside a write transaction.
impl WriteTxn<'_> {
    /// The user's item for `contact`, if any (including this transaction's own writes).
    pub fn roster_item(
        &self,
        user: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StorageError> {
        crate::fault::read(user)?;
        item_in(self, user, contact)
    }

    /// Stores `item` in the user's roster under `item.jid`, replacing any item there.
    /// Does not bump the roster version; call [`bump_roster_version`](Self::bump_roster_version).
    /// [`StorageError::NoSuchAccount`] if the user has no account.
    pub fn put_roster_item(&mut self, user: &str, item: &RosterItem) -> Result<(), StorageError> {
        crate::fault::write(user)?;
        let key = key::contact(user, &item.jid)?;
        self.require_account(user)?;
        self.put(Table::Roster, &key, &encode_item(item))
    }

    /// Removes the user's item for `contact`; returns whether it existed. Does not bump the
    /// roster version.
    pub fn delete_roster_item(&mut self, user: &str, contact: &str) -> Result<bool, StorageError> {
        crate::fault::write(user)?;
        let key = key::contact(user, contact)?;
        self.delete(Table::Roster, &key)
    }

    /// The number of items in the user's roster. Counted by walking the user's keys (no
    /// counter is kept, and no value is decoded): O(items), a few microseconds for the
    /// hundreds of items a roster typically has, so cheap enough to enforce a size limit on
    /// every roster set.
    pub fn roster_len(&self, user: &str) -> Result<usize, StorageError> {
        crate::fault::read(user)?;
        self.count_prefix(Table::Roster, &key::prefix(user)?)
    }

    /// The user's items, sorted by contact JID.
    pub fn roster_items(&self, user: &str) -> Result<Vec<RosterItem>, StorageError> {
        crate::fault::read(user)?;
        items_in(self, user)
    }

    /// Increments and returns the user's roster version. The first version of a user is a
    /// random 64-bit starting point in the upper half of the range (so that a stale client
    /// version from a deleted and re-created account never matches), then +1 per call.
    /// [`StorageError::NoSuchAccount`] if the user has no account.
    pub fn bump_roster_version(&mut self, user: &str) -> Result<u64, StorageError> {
        crate::fault::write(user)?;
        key::user(user)?;
        self.require_account(user)?;
        let next = match version_in(self, user)? {
            0 => first_version()?,
            v => v.checked_add(1).ok_or_else(|| {
                StorageError::Corrupt("roster version: at u64::MAX, never handed out".into())
            })?,
        };
        self.put(
            Table::RosterVersion,
            key::user(user)?,
            &Encoder::new(VERSION_V1).u64(next).finish(),
        )?;
        Ok(next)
    }

    /// The user's roster version; 0 if it was never bumped.
    pub fn roster_version(&self, user: &str) -> Result<u64, StorageError> {
        crate::fault::read(user)?;
        version_in(self, user)
    }

    /// The stored subscribe stanza of `contact`'s pending request to the user, if any.
    pub fn sub_request(&self, user: &str, contact: &str) -> Result<Option<Vec<u8>>, StorageError> {
        crate::fault::read(user)?;
        self.get(Table::SubRequests, &key::contact(user, contact)?)?
            .map(decode_request)
            .transpose()
    }

    /// Records `contact`'s pending subscription request to the user, keeping `stanza` (the
    /// subscribe stanza to redeliver at the user's next login); replaces an earlier one.
    /// [`StorageError::NoSuchAccount`] if the user has no account.
    pub fn put_sub_request(
        &mut self,
        user: &str,
        contact: &str,
        stanza: &[u8],
    ) -> Result<(), StorageError> {
        crate::fault::write(user)?;
        let key = key::contact(user, contact)?;
        self.require_account(user)?;
        self.put(Table::SubRequests, &key, &encode_request(stanza))
    }

    /// Removes `contact`'s pending request to the user; returns whether it existed.
    pub fn delete_sub_request(&mut self, user: &str, contact: &str) -> Result<bool, StorageError> {
        crate::fault::write(user)?;
        let key = key::contact(user, contact)?;
        self.delete(Table::SubRequests, &key)
    }

    /// The number of pending inbound requests of the user; like
    /// [`roster_len`](Self::roster_len), O(requests) by walking the keys.
    pub fn sub_request_count(&self, user: &str) -> Result<usize, StorageError> {
        crate::fault::read(user)?;
        self.count_prefix(Table::SubRequests, &key::prefix(user)?)
    }
}

/// Removes the user's items, version and pending requests (account deletion). Other users'
/// items naming the user stay: they are the other users' data.
pub(crate) fn purge(txn: &mut WriteTxn<'_>, user: &str) -> Result<(), StorageError> {
    let prefix = key::prefix(user)?;
    txn.delete_prefix(Table::Roster, &prefix)?;
    txn.delete_prefix(Table::SubRequests, &prefix)?;
    txn.delete(Table::RosterVersion, key::user(user)?)?;
    Ok(())
}

fn item_in(
    txn: &impl Reader,
    user: &str,
    contact: &str,
) -> Result<Option<RosterItem>, StorageError> {
    txn.get(Table::Roster, &key::contact(user, contact)?)?
        .map(|raw| decode_item(contact, raw))
        .transpose()
}

fn items_in(txn: &impl Reader, user: &str) -> Result<Vec<RosterItem>, StorageError> {
    let prefix = key::prefix(user)?;
    let mut out = Vec::new();
    for entry in txn.entries(Table::Roster, &prefix)? {
        let (k, v) = entry?;
        out.push(decode_item(key::contact_of("roster", &prefix, k)?, v)?);
    }
    Ok(out)
}

fn version_in(txn: &impl Reader, user: &str) -> Result<u64, StorageError> {
    txn.get(Table::RosterVersion, key::user(user)?)?
        .map(decode_version)
        .transpose()
        .map(Option::unwrap_or_default)
}

fn sub_requests_in(txn: &impl Reader, user: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    let prefix = key::prefix(user)?;
    let mut out = Vec::new();
    for entry in txn.entries(Table::SubRequests, &prefix)? {
        let (k, v) = entry?;
        let contact = key::contact_of("subscription request", &prefix, k)?;
        out.push((contact.to_owned(), decode_request(v)?));
    }
    Ok(out)
}

/// A random version in `[2^63, 2^63 + 2^62)`: in the upper half, with 2^62 increments of
/// room before the counter could run out.
fn first_version() -> Result<u64, StorageError> {
    let random = getrandom::u64().map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
    Ok((1 << 63) | (random >> 2))
}

/// Roster item record format 1 (the contact JID is the key, not part of the record):
/// `u8 1 | u8 subscription (0 none, 1 to, 2 from, 3 both) | u8 flags (bit 0: ask,
/// bit 1: approved, bit 2: has name) | [bytes name] | u32 group count | bytes group...`.
const ITEM_V1: u8 = 1;
const FLAG_ASK: u8 = 1;
const FLAG_APPROVED: u8 = 2;
const FLAG_NAME: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_ASK | FLAG_APPROVED | FLAG_NAME;

pub(crate) fn encode_item(item: &RosterItem) -> Vec<u8> {
    let subscription = match item.subscription {
        Subscription::None => 0,
        Subscription::To => 1,
        Subscription::From => 2,
        Subscription::Both => 3,
    };
    let mut flags = 0;
    for (set, flag) in [
        (item.ask, FLAG_ASK),
        (item.approved, FLAG_APPROVED),
        (item.name.is_some(), FLAG_NAME),
    ] {
        if set {
            flags |= flag;
        }
    }
    let mut e = Encoder::new(ITEM_V1);
    e.u8(subscription).u8(flags);
    if let Some(name) = &item.name {
        e.bytes(name.as_bytes());
    }
    // Groups are bounded by the stanza size limit, far below u32::MAX.
    let groups = u32::try_from(item.groups.len()).expect("more than 4G roster groups");
    e.u32(groups);
    for group in &item.groups {
        e.bytes(group.as_bytes());
    }
    e.finish()
}

pub(crate) fn decode_item(jid: &str, buf: &[u8]) -> Result<RosterItem, StorageError> {
    let (mut d, version) = Decoder::new(buf, "roster item")?;
    if version != ITEM_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let subscription = match d.u8()? {
        0 => Subscription::None,
        1 => Subscription::To,
        2 => Subscription::From,
        3 => Subscription::Both,
        other => return Err(d.corrupt(&format!("unknown subscription {other}"))),
    };
    let flags = d.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(d.corrupt(&format!("unknown flags {flags:#x}")));
    }
    let name = if flags & FLAG_NAME != 0 {
        Some(d.str()?.to_owned())
    } else {
        None
    };
    let count = d.u32()?;
    // No preallocation from the untrusted count: each group consumes at least its 4-byte
    // length, so a lying count runs out of bytes and fails.
    let mut groups = Vec::new();
    for _ in 0..count {
        groups.push(d.str()?.to_owned());
    }
    d.finish()?;
    Ok(RosterItem {
        jid: jid.to_owned(),
        name,
        groups,
        subscription,
        ask: flags & FLAG_ASK != 0,
        approved: flags & FLAG_APPROVED != 0,
    })
}

/// Roster version record format 1: `u8 1 | u64 version`.
const VERSION_V1: u8 = 1;

pub(crate) fn decode_version(buf: &[u8]) -> Result<u64, StorageError> {
    let (mut d, version) = Decoder::new(buf, "roster version")?;
    if version != VERSION_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let v = d.u64()?;
    d.finish()?;
    if v == 0 {
        // 0 means "never bumped", so it is never stored.
        return Err(StorageError::Corrupt(
            "roster version: stored version 0".into(),
        ));
    }
    Ok(v)
}

/// Subscription request record format 1: `u8 1 | bytes stanza`.
const REQUEST_V1: u8 = 1;

pub(crate) fn encode_request(stanza: &[u8]) -> Vec<u8> {
    Encoder::new(REQUEST_V1).bytes(stanza).finish()
}

pub(crate) fn decode_request(buf: &[u8]) -> Result<Vec<u8>, StorageError> {
    let (mut d, version) = Decoder::new(buf, "subscription request")?;
    if version != REQUEST_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let stanza = d.bytes()?.to_vec();
    d.finish()?;
    Ok(stanza)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};

    fn samples() -> Vec<RosterItem> {
        let full = RosterItem {
            jid: "juliet@example.com".into(),
            name: Some("Juliet ☀".into()),
            groups: vec!["Friends".into(), "".into(), "Капулетти".into()],
            subscription: Subscription::Both,
            ask: true,
            approved: true,
        };
        let bare = RosterItem {
            jid: "nurse@example.com".into(),
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            ask: false,
            approved: false,
        };
        let mut out = vec![full.clone(), bare.clone()];
        for subscription in [Subscription::To, Subscription::From] {
            out.push(RosterItem {
                subscription,
                name: Some(String::new()),
                ..bare.clone()
            });
        }
        out.push(RosterItem {
            ask: false,
            ..full.clone()
        });
        out.push(RosterItem {
            approved: false,
            ..full
        });
        out
    }

    #[test]
    fn item_round_trips() {
        for item in samples() {
            assert_eq!(decode_item(&item.jid, &encode_item(&item)).unwrap(), item);
        }
    }

    #[test]
    fn item_truncations_and_garbage() {
        let decode = |b: &[u8]| decode_item("a@b", b);
        for item in samples() {
            every_truncation_is_corrupt(&encode_item(&item), decode);
        }
        garbage_never_panics(&encode_item(&samples()[0]), decode);
    }

    #[test]
    fn item_unknown_format_subscription_flags_and_utf8_are_corrupt() {
        let good = encode_item(&samples()[0]);
        let mut bad = Vec::new();
        for (i, byte) in [(0, 2), (1, 4), (2, 0x08)] {
            let mut b = good.clone();
            b[i] = byte;
            bad.push(b);
        }
        // The name "Juliet ☀" starts at offset 7 (after version, subscription, flags, length).
        let mut utf8 = good.clone();
        utf8[7] = 0xff;
        bad.push(utf8);
        for b in bad {
            assert!(matches!(
                decode_item("a@b", &b),
                Err(StorageError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn version_record() {
        let buf = Encoder::new(VERSION_V1).u64(u64::MAX - 3).finish();
        assert_eq!(decode_version(&buf).unwrap(), u64::MAX - 3);
        every_truncation_is_corrupt(&buf, decode_version);
        garbage_never_panics(&buf, decode_version);
        let zero = Encoder::new(VERSION_V1).u64(0).finish();
        assert!(matches!(
            decode_version(&zero),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn first_version_is_in_the_upper_half_with_headroom() {
        for _ in 0..1000 {
            let v = first_version().unwrap();
            assert!((1 << 63..(1 << 63) + (1 << 62)).contains(&v), "{v:#x}");
        }
    }

    #[test]
    fn request_record() {
        for stanza in [&b""[..], b"<presence type='subscribe'/>"] {
            let buf = encode_request(stanza);
            assert_eq!(decode_request(&buf).unwrap(), stanza);
            every_truncation_is_corrupt(&buf, decode_request);
        }
        garbage_never_panics(&encode_request(b"<presence/>"), decode_request);
        let mut v2 = encode_request(b"x");
        v2[0] = 2;
        assert!(matches!(decode_request(&v2), Err(StorageError::Corrupt(_))));
    }
}
