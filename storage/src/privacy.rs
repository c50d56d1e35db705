//! Privacy lists (XEP-0016), which also hold the blocklist (XEP-0191 §5: the blocklist is
//! the `jid`/`deny` items of the default list, so both protocols share one store).
//!
//! Each list is one record keyed `user \0 name`; the name of the user's default list, if
//! any, is a per-user record. The crate stores what the caller built and checks nothing of
//! XEP-0016's rules (unique orders, known groups, bounds): the server's module does, inside
//! the same write transaction when a rule depends on stored state.

use crate::codec::{Decoder, Encoder};
use crate::key;
use crate::roster::Subscription;
use crate::table::Table;
use crate::txn::{Reader, WriteTxn};
use crate::{Storage, StorageError};

/// What a privacy list item matches (XEP-0016 §2.1 `type` and `value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivacyMatch {
    /// No `type`: the fall-through item, matching everything.
    Any,
    /// `type='jid'`: a normalized JID of any of the four forms (domain, domain/resource,
    /// user@domain, user@domain/resource).
    Jid(String),
    /// `type='group'`: a roster group name.
    Group(String),
    /// `type='subscription'`: a subscription state (`none` includes JIDs not in the roster).
    Subscription(Subscription),
}

/// The stanza kinds of an item (`<message/>`, `<iq/>`, `<presence-in/>`, `<presence-out/>`);
/// empty means every stanza in both directions.
pub mod stanzas {
    /// Inbound messages.
    pub const MESSAGE: u8 = 1;
    /// Inbound IQs.
    pub const IQ: u8 = 2;
    /// Inbound presence notifications.
    pub const PRESENCE_IN: u8 = 4;
    /// Outbound presence notifications.
    pub const PRESENCE_OUT: u8 = 8;
    /// Every bit a record may hold.
    pub const KNOWN: u8 = MESSAGE | IQ | PRESENCE_IN | PRESENCE_OUT;
}

/// One rule of a privacy list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyItem {
    /// The `order` attribute: items are evaluated in ascending order.
    pub order: u32,
    /// `action='allow'` (true) or `deny` (false).
    pub allow: bool,
    /// What the item matches.
    pub what: PrivacyMatch,
    /// The stanza kinds it applies to ([`stanzas`] bits; 0: all).
    pub stanzas: u8,
}

impl PrivacyItem {
    /// A blocklist entry: `jid`, `deny`, every stanza (XEP-0191 §5).
    pub fn is_block(&self) -> bool {
        !self.allow && self.stanzas == 0 && matches!(self.what, PrivacyMatch::Jid(_))
    }
}

/// A named privacy list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyList {
    /// The list's name.
    pub name: String,
    /// Its items, in ascending `order`.
    pub items: Vec<PrivacyItem>,
}

/// Everything a user's privacy settings hold, read in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privacy {
    /// The default list's name, if the user set one.
    pub default: Option<String>,
    /// Every list, sorted by name.
    pub lists: Vec<PrivacyList>,
}

impl Privacy {
    /// The list named `name`.
    pub fn list(&self, name: &str) -> Option<&PrivacyList> {
        self.lists.iter().find(|l| l.name == name)
    }

    /// The default list, if one is set.
    pub fn default_list(&self) -> Option<&PrivacyList> {
        self.list(self.default.as_deref()?)
    }
}

/// Read access to privacy lists, keyed by the user's normalized bare JID. Writes are
/// [`WriteTxn`] methods.
#[derive(Clone)]
pub struct PrivacyStore {
    storage: Storage,
}

impl PrivacyStore {
    pub(crate) fn new(storage: Storage) -> PrivacyStore {
        PrivacyStore { storage }
    }

    /// The user's lists and default, from one snapshot.
    pub fn load(&self, user: &str) -> Result<Privacy, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| load_in(txn, user))
    }

    /// The user's default list, if one is set (what applies while the user is offline).
    pub fn default_list(&self, user: &str) -> Result<Option<PrivacyList>, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| match default_in(txn, user)? {
            Some(name) => list_in(txn, user, &name),
            None => Ok(None),
        })
    }
}

/// The user's default list, as [`PrivacyStore::default_list_since`] finds it against a copy
/// the caller keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultList {
    /// No default list.
    None,
    /// The same name and record bytes as the caller's copy.
    Unchanged,
    /// Another list, or the caller had none: decoded, with the record bytes to compare next
    /// time.
    Changed {
        /// The list.
        list: PrivacyList,
        /// Its record as stored.
        record: Box<[u8]>,
    },
}

impl PrivacyStore {
    /// The user's default list, compared with `known` (the name and record bytes of the copy
    /// the caller decoded last): while it is unchanged this costs one read snapshot and a
    /// byte comparison, not a decode. Exact whoever wrote the list (this process, `xmppd
    /// import`, account deletion), since it compares what is stored.
    pub fn default_list_since(
        &self,
        user: &str,
        known: Option<(&str, &[u8])>,
    ) -> Result<DefaultList, StorageError> {
        crate::fault::read(user)?;
        self.storage.read(|txn| {
            let Some(name) = default_in(txn, user)? else {
                return Ok(DefaultList::None);
            };
            let Some(raw) = txn.get(Table::PrivacyLists, &key::contact(user, &name)?)? else {
                return Ok(DefaultList::None); // a default naming no list (as default_list)
            };
            if known.is_some_and(|(n, r)| n == name && r == raw) {
                return Ok(DefaultList::Unchanged);
            }
            Ok(DefaultList::Changed {
                list: decode_list(&name, raw)?,
                record: raw.into(),
            })
        })
    }
}

/// Privacy list reads and writes inside a write transaction.
impl WriteTxn<'_> {
    /// The user's lists and default (including this transaction's own writes).
    pub fn privacy(&self, user: &str) -> Result<Privacy, StorageError> {
        crate::fault::read(user)?;
        load_in(self, user)
    }

    /// Stores `list` under its name, replacing any list of that name;
    /// [`StorageError::NoSuchAccount`] if the user has no account.
    pub fn put_privacy_list(&mut self, user: &str, list: &PrivacyList) -> Result<(), StorageError> {
        crate::fault::write(user)?;
        let key = key::contact(user, &list.name)?;
        self.require_account(user)?;
        self.put(Table::PrivacyLists, &key, &encode_list(list))
    }

    /// Removes the list named `name`; returns whether it existed. The default is not touched:
    /// the caller clears it when it named this list.
    pub fn delete_privacy_list(&mut self, user: &str, name: &str) -> Result<bool, StorageError> {
        crate::fault::write(user)?;
        self.delete(Table::PrivacyLists, &key::contact(user, name)?)
    }

    /// Sets (Some) or clears (None) the user's default list name.
    pub fn set_privacy_default(
        &mut self,
        user: &str,
        name: Option<&str>,
    ) -> Result<(), StorageError> {
        crate::fault::write(user)?;
        let key = key::user(user)?;
        match name {
            Some(name) => {
                self.require_account(user)?;
                self.put(Table::PrivacyDefault, key, &encode_default(name))
            }
            None => self.delete(Table::PrivacyDefault, key).map(|_| ()),
        }
    }
}

/// Removes the user's lists and default (account deletion).
pub(crate) fn purge(txn: &mut WriteTxn<'_>, user: &str) -> Result<(), StorageError> {
    txn.delete_prefix(Table::PrivacyLists, &key::prefix(user)?)?;
    txn.delete(Table::PrivacyDefault, key::user(user)?)?;
    Ok(())
}

fn load_in(txn: &impl Reader, user: &str) -> Result<Privacy, StorageError> {
    let prefix = key::prefix(user)?;
    let mut lists = Vec::new();
    for entry in txn.entries(Table::PrivacyLists, &prefix)? {
        let (k, v) = entry?;
        lists.push(decode_list(
            key::contact_of("privacy list", &prefix, k)?,
            v,
        )?);
    }
    Ok(Privacy {
        default: default_in(txn, user)?,
        lists,
    })
}

fn default_in(txn: &impl Reader, user: &str) -> Result<Option<String>, StorageError> {
    txn.get(Table::PrivacyDefault, key::user(user)?)?
        .map(decode_default)
        .transpose()
}

fn list_in(txn: &impl Reader, user: &str, name: &str) -> Result<Option<PrivacyList>, StorageError> {
    txn.get(Table::PrivacyLists, &key::contact(user, name)?)?
        .map(|raw| decode_list(name, raw))
        .transpose()
}

/// Privacy list record format 1 (the name is the key): `u8 1 | u32 item count | item...`,
/// each item `u32 order | u8 action (0 deny, 1 allow) | u8 stanzas | u8 type (0 any, 1 jid,
/// 2 group, 3 subscription) | [bytes value] or [u8 subscription (0 none, 1 to, 2 from,
/// 3 both)]`.
const LIST_V1: u8 = 1;
/// Default record format 1: `u8 1 | bytes name`.
const DEFAULT_V1: u8 = 1;

pub(crate) fn encode_list(list: &PrivacyList) -> Vec<u8> {
    let mut e = Encoder::new(LIST_V1);
    // Bounded by the module's item limit, far below u32::MAX.
    e.u32(u32::try_from(list.items.len()).expect("more than 4G privacy items"));
    for item in &list.items {
        e.u32(item.order).u8(item.allow as u8).u8(item.stanzas);
        match &item.what {
            PrivacyMatch::Any => {
                e.u8(0);
            }
            PrivacyMatch::Jid(j) => {
                e.u8(1).bytes(j.as_bytes());
            }
            PrivacyMatch::Group(g) => {
                e.u8(2).bytes(g.as_bytes());
            }
            PrivacyMatch::Subscription(s) => {
                let s = match s {
                    Subscription::None => 0,
                    Subscription::To => 1,
                    Subscription::From => 2,
                    Subscription::Both => 3,
                };
                e.u8(3).u8(s);
            }
        }
    }
    e.finish()
}

pub(crate) fn decode_list(name: &str, buf: &[u8]) -> Result<PrivacyList, StorageError> {
    let (mut d, version) = Decoder::new(buf, "privacy list")?;
    if version != LIST_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let count = d.u32()?;
    let mut items = Vec::new();
    for _ in 0..count {
        let order = d.u32()?;
        let allow = match d.u8()? {
            0 => false,
            1 => true,
            a => return Err(d.corrupt(&format!("unknown action {a}"))),
        };
        let stanzas = d.u8()?;
        if stanzas & !stanzas::KNOWN != 0 {
            return Err(d.corrupt(&format!("unknown stanza bits {stanzas:#x}")));
        }
        let what = match d.u8()? {
            0 => PrivacyMatch::Any,
            1 => PrivacyMatch::Jid(d.str()?.to_owned()),
            2 => PrivacyMatch::Group(d.str()?.to_owned()),
            3 => PrivacyMatch::Subscription(match d.u8()? {
                0 => Subscription::None,
                1 => Subscription::To,
                2 => Subscription::From,
                3 => Subscription::Both,
                s => return Err(d.corrupt(&format!("unknown subscription {s}"))),
            }),
            t => return Err(d.corrupt(&format!("unknown item type {t}"))),
        };
        items.push(PrivacyItem {
            order,
            allow,
            what,
            stanzas,
        });
    }
    d.finish()?;
    Ok(PrivacyList {
        name: name.to_owned(),
        items,
    })
}

pub(crate) fn encode_default(name: &str) -> Vec<u8> {
    Encoder::new(DEFAULT_V1).bytes(name.as_bytes()).finish()
}

pub(crate) fn decode_default(buf: &[u8]) -> Result<String, StorageError> {
    let (mut d, version) = Decoder::new(buf, "privacy default")?;
    if version != DEFAULT_V1 {
        return Err(d.corrupt(&format!("unknown record format {version}")));
    }
    let name = d.str()?.to_owned();
    d.finish()?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testing::{every_truncation_is_corrupt, garbage_never_panics};

    fn sample() -> PrivacyList {
        PrivacyList {
            name: "public".into(),
            items: vec![
                PrivacyItem {
                    order: 1,
                    allow: false,
                    what: PrivacyMatch::Jid("tybalt@example.com".into()),
                    stanzas: 0,
                },
                PrivacyItem {
                    order: 2,
                    allow: true,
                    what: PrivacyMatch::Group("Friends".into()),
                    stanzas: stanzas::MESSAGE | stanzas::PRESENCE_OUT,
                },
                PrivacyItem {
                    order: 3,
                    allow: false,
                    what: PrivacyMatch::Subscription(Subscription::None),
                    stanzas: stanzas::IQ | stanzas::PRESENCE_IN,
                },
                PrivacyItem {
                    order: u32::MAX,
                    allow: true,
                    what: PrivacyMatch::Any,
                    stanzas: 0,
                },
            ],
        }
    }

    #[test]
    fn records_round_trip_truncations_garbage() {
        for list in [
            sample(),
            PrivacyList {
                name: "empty".into(),
                items: vec![],
            },
        ] {
            let buf = encode_list(&list);
            assert_eq!(decode_list(&list.name, &buf).unwrap(), list);
            every_truncation_is_corrupt(&buf, |b| decode_list(&list.name, b));
        }
        garbage_never_panics(&encode_list(&sample()), |b| decode_list("x", b));
        let buf = encode_default("public");
        assert_eq!(decode_default(&buf).unwrap(), "public");
        every_truncation_is_corrupt(&buf, decode_default);
        garbage_never_panics(&buf, decode_default);
        let mut v2 = encode_list(&sample());
        v2[0] = 2;
        assert!(matches!(
            decode_list("x", &v2),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn block_items_are_jid_deny_all() {
        let l = sample();
        assert!(l.items[0].is_block());
        assert!(!l.items[1].is_block() && !l.items[2].is_block() && !l.items[3].is_block());
    }
}
