//! Privacy lists as data (XEP-0016 §2.1): a `<list/>` read from the wire and written back,
//! the blocklist view of a list (XEP-0191 §5), and the two evaluators: [`evaluate`] over a
//! stored list (the reference: items in order, first match decides) and [`Compiled`], the
//! form sessions keep, which answers the blocklist part of a list with O(1) hash lookups.
//! Pure functions; the tests below are the tables.

use std::borrow::Cow;

use ahash::{AHashMap, AHashSet};
use xmppd_storage::{
    privacy_stanzas as bits, PrivacyItem, PrivacyList, PrivacyMatch, Subscription,
};

use crate::xml::Element;
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::{Jid, JidStr};
use crate::xmpp::stanza::{PresenceType, StanzaType};

/// The privacy namespace.
pub const NS_PRIVACY: &str = "jabber:iq:privacy";
/// Longest list name, in bytes (a list is keyed by `user \0 name` in LMDB).
pub const MAX_NAME: usize = 255;
/// The name of the default list the blocking command creates when there is none.
pub const BLOCKLIST_NAME: &str = "urn:xmpp:blocking";

/// What is being decided: the stanza's kind as an item's child elements name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// An inbound message (`<message/>`).
    Message,
    /// An inbound IQ (`<iq/>`).
    Iq,
    /// Inbound availability presence: no type, or unavailable (`<presence-in/>`).
    PresenceIn,
    /// Outbound availability presence (`<presence-out/>`).
    PresenceOut,
    /// Anything else (subscriptions, probes, presence errors in either direction, outbound
    /// messages and IQs): only items without child elements match it.
    Other,
}

impl What {
    /// The kind of an inbound stanza.
    pub fn inbound(ty: StanzaType) -> What {
        match ty {
            StanzaType::Message(_) => What::Message,
            StanzaType::Iq(_) => What::Iq,
            StanzaType::Presence(PresenceType::Available | PresenceType::Unavailable) => {
                What::PresenceIn
            }
            StanzaType::Presence(_) => What::Other,
        }
    }

    /// The kind of an outbound stanza.
    pub fn outbound(ty: StanzaType) -> What {
        match ty {
            StanzaType::Presence(PresenceType::Available | PresenceType::Unavailable) => {
                What::PresenceOut
            }
            _ => What::Other,
        }
    }

    fn bit(self) -> u8 {
        match self {
            What::Message => bits::MESSAGE,
            What::Iq => bits::IQ,
            What::PresenceIn => bits::PRESENCE_IN,
            What::PresenceOut => bits::PRESENCE_OUT,
            What::Other => 0,
        }
    }
}

/// A list's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed (an allow item matched, or nothing did).
    Allow,
    /// Denied; `blocked` when the deciding item is a blocklist entry (jid, deny, every
    /// stanza), for XEP-0191's `<blocked/>` error payload.
    Deny {
        /// Decided by a blocklist entry.
        blocked: bool,
    },
}

impl Verdict {
    /// True when denied.
    pub fn denies(self) -> bool {
        matches!(self, Verdict::Deny { .. })
    }
}

/// The peer as the user's roster sees it (group and subscription items).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosterFacts {
    /// The subscription (None when the peer is not in the roster: `none`).
    pub subscription: Option<Subscription>,
    /// The roster groups the peer is in.
    pub groups: Vec<String>,
}

/// Reads the roster facts of a peer's bare JID when an item needs them (at most once per
/// decision); Err: the roster could not be read.
pub type RosterLookup<'a> = dyn FnMut(&str) -> Result<RosterFacts, ()> + 'a;

/// Does a `jid` item value (normalized) match the peer? XEP-0016 §2.1's four forms; a
/// `domain/resource` item matches that resource at the domain, with or without a localpart
/// (as ejabberd matches it).
pub fn jid_matches(value: &str, peer: JidStr<'_>) -> bool {
    let v = JidStr::trusted(value);
    match (v.local(), v.resource()) {
        (Some(_), Some(_)) => peer.as_str() == value,
        (Some(_), None) => peer.bare().as_str() == value,
        (None, Some(r)) => peer.domain() == v.domain() && peer.resource() == Some(r),
        (None, None) => peer.domain() == value,
    }
}

/// Decide with the stored list: items in ascending order, the first match decides (PRIV-12).
/// A roster that cannot be read when an item needs it denies (fail closed).
pub fn evaluate(
    list: &PrivacyList,
    what: What,
    peer: JidStr<'_>,
    roster: &mut RosterLookup<'_>,
) -> Verdict {
    evaluate_items(&list.items, what, peer, roster)
}

fn evaluate_items(
    items: &[PrivacyItem],
    what: What,
    peer: JidStr<'_>,
    roster: &mut RosterLookup<'_>,
) -> Verdict {
    let mut facts: Option<Result<RosterFacts, ()>> = None;
    for item in items {
        if item.stanzas != 0 && item.stanzas & what.bit() == 0 {
            continue;
        }
        let matched = match &item.what {
            PrivacyMatch::Any => true,
            PrivacyMatch::Jid(v) => jid_matches(v, peer),
            PrivacyMatch::Group(_) | PrivacyMatch::Subscription(_) => {
                match facts.get_or_insert_with(|| roster(peer.bare().as_str())) {
                    Ok(f) => match &item.what {
                        PrivacyMatch::Group(g) => f.groups.iter().any(|x| x == g),
                        PrivacyMatch::Subscription(s) => {
                            f.subscription.unwrap_or(Subscription::None) == *s
                        }
                        _ => false,
                    },
                    Err(()) => return Verdict::Deny { blocked: false },
                }
            }
        };
        if matched {
            return match item.allow {
                true => Verdict::Allow,
                false => Verdict::Deny {
                    blocked: item.is_block(),
                },
            };
        }
    }
    Verdict::Allow
}

/// A list as sessions keep it: its leading blocklist entries as hash sets (all of them deny
/// every stanza, so any match among them is the first match), then the other items in order.
#[derive(Debug, Default)]
#[repr(C)] // `hot` first
pub struct Compiled {
    /// What a check reads first.
    hot: Hot,
    /// `user@domain` and `user@domain/resource` entries, by bare JID: a peer costs one hash
    /// lookup of its bare JID, whether or not it is a full JID.
    exact: AHashMap<Box<str>, Blocked>,
    /// `domain` entries.
    domains: AHashSet<Box<str>>,
    /// `domain/resource` entries (rare).
    domain_resources: Vec<(Box<str>, Box<str>)>,
    /// Everything from the first item that is not a blocklist entry on.
    rest: Vec<PrivacyItem>,
}

/// A 256-bit Bloom filter over the bare JIDs of [`Compiled::exact`], two bits per JID from
/// one multiply-xor hash of its bytes ([`sieve_hash`]: a few instructions for a JID, where
/// the map's keyed hash and probe cost several times that, plus a cache line of its own when
/// the account's list is not in cache). A peer with either bit clear is in no entry, which
/// is what nearly every stanza finds; the map is consulted only for the rest: blocked JIDs,
/// and about 2 % of the others with 20 entries. Past a few hundred entries the filter fills
/// up and passes everything on to the map: slower, never wrong. The hash is not keyed: a peer
/// that picks its JIDs to pass the filter only makes its own stanzas take the map lookup.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Sieve([u64; 4]);

/// What a check reads first, in one cache line of its own (so the compiled list is
/// allocated at a cache-line boundary): the sieve over `exact`, and whether the list is
/// `user@domain[/resource]` blocklist entries and nothing else, in which case a peer the
/// sieve rules out is allowed without reading anything more. Lists are checked on every
/// stanza of every account that has one, mostly not from cache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[repr(C, align(64))]
struct Hot {
    sieve: Sieve,
    users_only: bool,
}

impl Sieve {
    /// The two bit positions of a JID: the hash's top two bytes.
    fn bits(jid: &str) -> [usize; 2] {
        let h = sieve_hash(jid.as_bytes());
        [(h >> 56) as usize, (h >> 48) as u8 as usize]
    }

    fn insert(&mut self, jid: &str) {
        for b in Sieve::bits(jid) {
            self.0[b >> 6] |= 1 << (b & 63);
        }
    }

    /// False when `jid` was never inserted.
    fn may_contain(&self, jid: &str) -> bool {
        Sieve::bits(jid)
            .iter()
            .all(|&b| self.0[b >> 6] & (1 << (b & 63)) != 0)
    }
}

/// The sieve's hash: 8 bytes at a time, xor then multiply by an odd constant (the top bits of
/// a product depend on every bit of its operand), folded between words; the last word is the
/// last 8 bytes, overlapping the one before (no copy of a short tail).
#[inline]
fn sieve_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let n = bytes.len();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let mut h = (n as u64).wrapping_mul(K);
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            h = (h ^ word(i)).wrapping_mul(K);
            h ^= h >> 32;
            i += 8;
        }
        h ^= word(n - 8);
    } else {
        h ^= bytes
            .iter()
            .enumerate()
            .fold(0u64, |t, (k, &b)| t | u64::from(b) << (8 * k));
    }
    h.wrapping_mul(K)
}

/// A bare JID's blocklist entries.
#[derive(Debug, Default)]
struct Blocked {
    /// `user@domain` itself: every resource, and the bare JID.
    whole: bool,
    /// `user@domain/resource` entries.
    resources: Vec<Box<str>>,
}

impl Compiled {
    /// Compile a stored list.
    pub fn new(list: &PrivacyList) -> Compiled {
        let mut c = Compiled::default();
        let lead = list.items.iter().take_while(|i| i.is_block()).count();
        for item in &list.items[..lead] {
            let PrivacyMatch::Jid(v) = &item.what else {
                continue;
            };
            let j = JidStr::trusted(v);
            match (j.local(), j.resource()) {
                (Some(_), None) => {
                    c.hot.sieve.insert(v);
                    c.exact.entry(v.as_str().into()).or_default().whole = true;
                }
                (Some(_), Some(r)) => {
                    c.hot.sieve.insert(j.bare().as_str());
                    let e = c.exact.entry(j.bare().as_str().into()).or_default();
                    e.resources.push(r.into());
                }
                (None, Some(r)) => c.domain_resources.push((j.domain().into(), r.into())),
                (None, None) => {
                    c.domains.insert(v.as_str().into());
                }
            }
        }
        c.rest = list.items[lead..].to_vec();
        c.hot.users_only =
            c.domains.is_empty() && c.domain_resources.is_empty() && c.rest.is_empty();
        c
    }

    /// Decide, as [`evaluate`] would on the list this was compiled from.
    pub fn check(&self, what: What, peer: JidStr<'_>, roster: &mut RosterLookup<'_>) -> Verdict {
        // The bare JID is looked for only where a user@domain entry could match it.
        let bare = match self.exact.is_empty() {
            true => "",
            false => peer.bare().as_str(),
        };
        self.check_bare(what, peer, bare, roster)
    }

    /// [`check`](Self::check) for a caller that has the peer's bare JID at hand already.
    #[inline]
    pub fn check_bare(
        &self,
        what: What,
        peer: JidStr<'_>,
        bare: &str,
        roster: &mut RosterLookup<'_>,
    ) -> Verdict {
        // An empty sieve (no user@domain entries) holds nothing, "" included.
        let in_sieve = self.hot.sieve.may_contain(bare);
        if !in_sieve && self.hot.users_only {
            return Verdict::Allow; // what nearly every stanza finds
        }
        if self.blocks(peer, bare, in_sieve) {
            return Verdict::Deny { blocked: true };
        }
        if self.rest.is_empty() {
            return Verdict::Allow; // a blocklist and nothing else
        }
        evaluate_items(&self.rest, what, peer, roster)
    }

    /// True when a leading blocklist entry matches the peer (`bare` is its bare JID,
    /// `in_sieve` whether the sieve passes it: the sieve is tested once per check).
    #[inline]
    fn blocks(&self, peer: JidStr<'_>, bare: &str, in_sieve: bool) -> bool {
        (in_sieve
            && self.exact.get(bare).is_some_and(|b| {
                b.whole
                    || peer
                        .as_str()
                        .get(bare.len() + 1..)
                        .is_some_and(|r| b.resources.iter().any(|x| **x == *r))
            }))
            || (!self.domains.is_empty() && self.domains.contains(peer.domain()))
            || (!self.domain_resources.is_empty()
                && peer.resource().is_some_and(|r| {
                    self.domain_resources
                        .iter()
                        .any(|(d, res)| **d == *peer.domain() && **res == *r)
                }))
    }

    /// The JIDs it blocks in XEP-0191's sense (its blocklist entries), in no order.
    pub fn blocked(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.exact
            .iter()
            .flat_map(|(bare, b)| {
                let whole = b.whole.then_some(Cow::Borrowed(&**bare));
                let full = b.resources.iter();
                whole
                    .into_iter()
                    .chain(full.map(move |r| Cow::Owned(format!("{bare}/{r}"))))
            })
            .chain(self.domains.iter().map(|j| Cow::Borrowed(&**j)))
            .chain(
                self.domain_resources
                    .iter()
                    .map(|(d, r)| Cow::Owned(format!("{d}/{r}"))),
            )
            .chain(
                self.rest
                    .iter()
                    .filter(|i| i.is_block())
                    .filter_map(|i| match &i.what {
                        PrivacyMatch::Jid(j) => Some(Cow::Borrowed(j.as_str())),
                        _ => None,
                    }),
            )
    }

    /// True when the list can deny nothing (no items).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.domains.is_empty()
            && self.domain_resources.is_empty()
            && self.rest.is_empty()
    }
}

/// A request's error: the condition with a text for the client.
fn bad(condition: StanzaCondition, text: impl Into<String>) -> StanzaError {
    StanzaError::with_text(condition, text)
}

/// Normalize a JID from a request (`jid-malformed` when it is not one).
pub fn parse_jid(value: &str) -> Result<String, StanzaError> {
    Jid::parse(value)
        .map(|j| j.as_str().to_owned())
        .map_err(|e| bad(StanzaCondition::JidMalformed, format!("{value:?}: {e}")))
}

/// Read a `<list name='…'>` with its items (XEP-0016 §2.1, PRIV-05): every item needs an
/// `action` and a unique non-negative `order`; `jid` values are normalized; items come back
/// sorted by order. Whether the named groups exist is the caller's check (it needs the
/// roster).
pub fn parse_list(el: &Element) -> Result<PrivacyList, StanzaError> {
    let name = list_name(el)?;
    let mut items: Vec<PrivacyItem> = Vec::new();
    for child in el.elements() {
        if !child.is("item", NS_PRIVACY) {
            return Err(bad(
                StanzaCondition::BadRequest,
                format!("unexpected <{}/> in a list", child.name),
            ));
        }
        let item = parse_item(child)?;
        if items.iter().any(|i| i.order == item.order) {
            return Err(bad(
                StanzaCondition::BadRequest,
                format!("order {} appears twice", item.order),
            ));
        }
        items.push(item);
    }
    items.sort_by_key(|i| i.order);
    Ok(PrivacyList {
        name: name.to_owned(),
        items,
    })
}

/// The `name` of a `<list/>`, `<active/>` or `<default/>` (required, at most [`MAX_NAME`]
/// bytes).
pub fn list_name(el: &Element) -> Result<&str, StanzaError> {
    match el.attr("name") {
        Some(n) if !n.is_empty() && n.len() <= MAX_NAME => Ok(n),
        Some(n) if !n.is_empty() => Err(bad(
            StanzaCondition::BadRequest,
            format!("list names are at most {MAX_NAME} bytes"),
        )),
        _ => Err(bad(StanzaCondition::BadRequest, "a list needs a name")),
    }
}

fn parse_item(el: &Element) -> Result<PrivacyItem, StanzaError> {
    let allow = match el.attr("action") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return Err(bad(
                StanzaCondition::BadRequest,
                "an item needs action='allow' or action='deny'",
            ))
        }
    };
    let order = el
        .attr("order")
        .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|o| o.parse::<u32>().ok())
        .ok_or_else(|| {
            bad(
                StanzaCondition::BadRequest,
                "an item needs an order: a non-negative integer below 2^32",
            )
        })?;
    let value = || {
        el.attr("value")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(StanzaCondition::BadRequest, "a typed item needs a value"))
    };
    let what = match el.attr("type") {
        None => PrivacyMatch::Any,
        Some("jid") => PrivacyMatch::Jid(parse_jid(value()?)?),
        Some("group") => PrivacyMatch::Group(value()?.to_owned()),
        Some("subscription") => PrivacyMatch::Subscription(match value()? {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            other => {
                return Err(bad(
                    StanzaCondition::BadRequest,
                    format!("unknown subscription {other:?}"),
                ))
            }
        }),
        Some(other) => {
            return Err(bad(
                StanzaCondition::BadRequest,
                format!("unknown item type {other:?}"),
            ))
        }
    };
    let mut stanzas = 0;
    for child in el.elements() {
        let bit = match (child.name.as_str(), child.ns.as_str()) {
            ("message", NS_PRIVACY) => bits::MESSAGE,
            ("iq", NS_PRIVACY) => bits::IQ,
            ("presence-in", NS_PRIVACY) => bits::PRESENCE_IN,
            ("presence-out", NS_PRIVACY) => bits::PRESENCE_OUT,
            (other, _) => {
                return Err(bad(
                    StanzaCondition::BadRequest,
                    format!("unknown stanza kind <{other}/>"),
                ))
            }
        };
        stanzas |= bit;
    }
    Ok(PrivacyItem {
        order,
        allow,
        what,
        stanzas,
    })
}

/// The `<list/>` element of a stored list, items in order (PRIV-03).
pub fn list_element(list: &PrivacyList) -> Element {
    let mut el = Element::new("list", NS_PRIVACY).with_attr("name", list.name.as_str());
    for item in &list.items {
        let mut i = Element::new("item", NS_PRIVACY);
        let (ty, value): (Option<&str>, Option<Cow<'_, str>>) = match &item.what {
            PrivacyMatch::Any => (None, None),
            PrivacyMatch::Jid(j) => (Some("jid"), Some(j.as_str().into())),
            PrivacyMatch::Group(g) => (Some("group"), Some(g.as_str().into())),
            PrivacyMatch::Subscription(s) => (
                Some("subscription"),
                Some(
                    match s {
                        Subscription::None => "none",
                        Subscription::To => "to",
                        Subscription::From => "from",
                        Subscription::Both => "both",
                    }
                    .into(),
                ),
            ),
        };
        if let Some(ty) = ty {
            i.set_attr("type", ty);
        }
        if let Some(v) = value {
            i.set_attr("value", v.into_owned());
        }
        i.set_attr("action", if item.allow { "allow" } else { "deny" });
        i.set_attr("order", item.order.to_string());
        for (bit, name) in [
            (bits::MESSAGE, "message"),
            (bits::IQ, "iq"),
            (bits::PRESENCE_IN, "presence-in"),
            (bits::PRESENCE_OUT, "presence-out"),
        ] {
            if item.stanzas & bit != 0 {
                i.push_child(Element::new(name, NS_PRIVACY));
            }
        }
        el.push_child(i);
    }
    el
}

/// The JIDs a list blocks in XEP-0191's sense (its blocklist entries), in order.
pub fn blocked(list: &PrivacyList) -> impl Iterator<Item = &str> {
    list.items.iter().filter_map(|i| match &i.what {
        PrivacyMatch::Jid(j) if i.is_block() => Some(j.as_str()),
        _ => None,
    })
}

/// Items that are not blocklist entries (what `--max-privacy-items` bounds).
pub fn rule_count(list: &PrivacyList) -> usize {
    list.items.iter().filter(|i| !i.is_block()).count()
}

/// Blocklist entries (what `--max-blocklist-items` bounds).
pub fn block_count(list: &PrivacyList) -> usize {
    list.items.iter().filter(|i| i.is_block()).count()
}

/// The default list after blocking `jids` (normalized) (XEP-0191 §3.3, §5): entries for the
/// JIDs not blocked yet go first, in the order given, then every existing item; orders are
/// renumbered from 0 keeping that order. Without a default list: a new list
/// [`BLOCKLIST_NAME`].
pub fn with_blocked(list: Option<&PrivacyList>, jids: &[String]) -> PrivacyList {
    let mut out = PrivacyList {
        name: list.map_or(BLOCKLIST_NAME, |l| &l.name).to_owned(),
        items: Vec::new(),
    };
    let existing = list.map_or(&[][..], |l| &l.items[..]);
    for j in jids {
        let already = existing
            .iter()
            .chain(&out.items)
            .any(|i| i.is_block() && i.what == PrivacyMatch::Jid(j.clone()));
        if !already {
            out.items.push(PrivacyItem {
                order: 0,
                allow: false,
                what: PrivacyMatch::Jid(j.clone()),
                stanzas: 0,
            });
        }
    }
    out.items.extend(existing.iter().cloned());
    for (n, item) in out.items.iter_mut().enumerate() {
        item.order = u32::try_from(n).unwrap_or(u32::MAX);
    }
    out
}

/// The list after unblocking `jids` (None: every blocklist entry) (XEP-0191 §3.4, §3.5);
/// other items keep their orders.
pub fn without_blocked(list: &PrivacyList, jids: Option<&[String]>) -> PrivacyList {
    PrivacyList {
        name: list.name.clone(),
        items: list
            .items
            .iter()
            .filter(|i| {
                !i.is_block()
                    || match (&i.what, jids) {
                        (_, None) => false,
                        (PrivacyMatch::Jid(j), Some(jids)) => !jids.contains(j),
                        _ => true,
                    }
            })
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{self, StreamNs};
    use crate::xmpp::ns;
    use crate::xmpp::stanza::{IqType, MessageType};

    fn item(order: u32, allow: bool, what: PrivacyMatch, stanzas: u8) -> PrivacyItem {
        PrivacyItem {
            order,
            allow,
            what,
            stanzas,
        }
    }

    fn jid(v: &str) -> PrivacyMatch {
        PrivacyMatch::Jid(v.into())
    }

    fn list(items: Vec<PrivacyItem>) -> PrivacyList {
        PrivacyList {
            name: "l".into(),
            items,
        }
    }

    /// Roster: romeo is `both` in Friends, nurse is `to` in Family; anyone else is unknown.
    fn roster(bare: &str) -> Result<RosterFacts, ()> {
        Ok(match bare {
            "romeo@example.net" => RosterFacts {
                subscription: Some(Subscription::Both),
                groups: vec!["Friends".into()],
            },
            "nurse@example.com" => RosterFacts {
                subscription: Some(Subscription::To),
                groups: vec!["Family".into()],
            },
            _ => RosterFacts::default(),
        })
    }

    fn both(l: &PrivacyList, what: What, peer: &str) -> Verdict {
        let p = JidStr::trusted(peer);
        let by_list = evaluate(l, what, p, &mut roster);
        let compiled = Compiled::new(l).check(what, p, &mut roster);
        assert_eq!(
            by_list, compiled,
            "evaluate and Compiled disagree on {peer} {what:?}"
        );
        by_list
    }

    const DENY: Verdict = Verdict::Deny { blocked: false };
    const BLOCKED: Verdict = Verdict::Deny { blocked: true };

    #[test]
    fn jid_forms_match_in_the_four_ways_priv_13_block_03() {
        // (item value, peer, matches)
        let table = [
            (
                "romeo@example.net/orchard",
                "romeo@example.net/orchard",
                true,
            ),
            (
                "romeo@example.net/orchard",
                "romeo@example.net/garden",
                false,
            ),
            ("romeo@example.net/orchard", "romeo@example.net", false),
            ("romeo@example.net", "romeo@example.net/garden", true),
            ("romeo@example.net", "romeo@example.net", true),
            ("romeo@example.net", "juliet@example.net", false),
            ("example.net/bot", "example.net/bot", true),
            ("example.net/bot", "romeo@example.net/bot", true),
            ("example.net/bot", "example.net/other", false),
            ("example.net/bot", "example.net", false),
            ("example.net", "example.net", true),
            ("example.net", "romeo@example.net/x", true),
            ("example.net", "example.net/x", true),
            ("example.net", "sub.example.net", false),
            ("example.net", "romeo@example.org", false),
        ];
        for (value, peer, expected) in table {
            assert_eq!(
                jid_matches(value, JidStr::trusted(peer)),
                expected,
                "{value} vs {peer}"
            );
            // As a blocklist entry (hash sets) and as a rule behind an allow item (in order).
            let blocked = list(vec![item(0, false, jid(value), 0)]);
            let want = if expected { BLOCKED } else { Verdict::Allow };
            assert_eq!(
                both(&blocked, What::Message, peer),
                want,
                "{value} vs {peer}"
            );
            let ruled = list(vec![
                item(0, true, jid("nobody@nowhere"), 0),
                item(1, false, jid(value), bits::MESSAGE),
            ]);
            let want = if expected { DENY } else { Verdict::Allow };
            assert_eq!(both(&ruled, What::Message, peer), want, "{value} vs {peer}");
        }
    }

    #[test]
    fn first_match_in_order_decides_and_no_match_allows_priv_12() {
        let l = list(vec![
            item(1, true, jid("romeo@example.net"), 0),
            item(2, false, jid("example.net"), 0),
            item(5, true, PrivacyMatch::Subscription(Subscription::To), 0),
            item(9, false, PrivacyMatch::Any, 0),
        ]);
        assert_eq!(
            both(&l, What::Message, "romeo@example.net/a"),
            Verdict::Allow
        );
        assert_eq!(both(&l, What::Message, "tybalt@example.net/a"), BLOCKED);
        assert_eq!(both(&l, What::Message, "nurse@example.com"), Verdict::Allow);
        assert_eq!(both(&l, What::Message, "stranger@example.org"), DENY);
        assert_eq!(both(&list(vec![]), What::Message, "x@y"), Verdict::Allow);
        let l = list(vec![item(3, false, jid("tybalt@example.net"), 0)]);
        assert_eq!(both(&l, What::Iq, "mercutio@example.net"), Verdict::Allow);
    }

    #[test]
    fn group_and_subscription_items_use_the_roster_priv_13() {
        let friends = list(vec![item(
            0,
            false,
            PrivacyMatch::Group("Friends".into()),
            0,
        )]);
        assert_eq!(both(&friends, What::Message, "romeo@example.net/x"), DENY);
        assert_eq!(
            both(&friends, What::Message, "nurse@example.com"),
            Verdict::Allow
        );
        // "none" includes JIDs not in the roster; values match exactly (both is not to).
        let none = list(vec![item(
            0,
            false,
            PrivacyMatch::Subscription(Subscription::None),
            0,
        )]);
        assert_eq!(both(&none, What::Message, "stranger@example.org"), DENY);
        assert_eq!(
            both(&none, What::Message, "romeo@example.net"),
            Verdict::Allow
        );
        let to = list(vec![item(
            0,
            false,
            PrivacyMatch::Subscription(Subscription::To),
            0,
        )]);
        assert_eq!(both(&to, What::Message, "nurse@example.com"), DENY);
        assert_eq!(
            both(&to, What::Message, "romeo@example.net"),
            Verdict::Allow
        );
        // An unreadable roster denies (fail closed), but only when an item needs it.
        let mut broken = |_: &str| Err(());
        let p = JidStr::trusted("romeo@example.net");
        assert_eq!(evaluate(&to, What::Message, p, &mut broken), DENY);
        let by_jid = list(vec![item(0, true, jid("romeo@example.net"), 0)]);
        assert_eq!(
            evaluate(&by_jid, What::Message, p, &mut broken),
            Verdict::Allow
        );
    }

    #[test]
    fn child_elements_pick_the_stanza_kinds_priv_14() {
        use What::*;
        let kinds = [Message, Iq, PresenceIn, PresenceOut, Other];
        // (item stanzas, the kinds it denies)
        let table: [(u8, &[What]); 6] = [
            (0, &[Message, Iq, PresenceIn, PresenceOut, Other]),
            (bits::MESSAGE, &[Message]),
            (bits::IQ, &[Iq]),
            (bits::PRESENCE_IN, &[PresenceIn]),
            (bits::PRESENCE_OUT, &[PresenceOut]),
            (bits::MESSAGE | bits::PRESENCE_OUT, &[Message, PresenceOut]),
        ];
        for (stanzas, denied) in table {
            let l = list(vec![item(0, false, PrivacyMatch::Any, stanzas)]);
            for what in kinds {
                assert_eq!(
                    both(&l, what, "x@y").denies(),
                    denied.contains(&what),
                    "{stanzas:#x} {what:?}"
                );
            }
        }
        // Stanza types to kinds: subscriptions, probes and errors are Other.
        use crate::xmpp::stanza::PresenceType as P;
        assert_eq!(
            What::inbound(StanzaType::Message(MessageType::Chat)),
            Message
        );
        assert_eq!(What::inbound(StanzaType::Iq(IqType::Result)), Iq);
        assert_eq!(
            What::inbound(StanzaType::Presence(P::Available)),
            PresenceIn
        );
        assert_eq!(
            What::inbound(StanzaType::Presence(P::Unavailable)),
            PresenceIn
        );
        for t in [
            P::Subscribe,
            P::Subscribed,
            P::Unsubscribe,
            P::Unsubscribed,
            P::Probe,
            P::Error,
        ] {
            assert_eq!(What::inbound(StanzaType::Presence(t)), Other);
            assert_eq!(What::outbound(StanzaType::Presence(t)), Other);
        }
        assert_eq!(
            What::outbound(StanzaType::Presence(P::Unavailable)),
            PresenceOut
        );
        assert_eq!(
            What::outbound(StanzaType::Message(MessageType::Chat)),
            Other
        );
        assert_eq!(What::outbound(StanzaType::Iq(IqType::Get)), Other);
    }

    #[test]
    fn compiled_agrees_with_the_list_on_mixed_lists() {
        // Blocklist entries first, then rules, then entries again (those are rules now).
        let l = list(vec![
            item(0, false, jid("tybalt@example.net"), 0),
            item(1, false, jid("example.org"), 0),
            item(2, false, jid("example.com/bot"), 0),
            item(3, true, jid("capulet.example"), 0),
            item(4, false, jid("nurse@example.com"), 0),
            item(
                5,
                false,
                PrivacyMatch::Group("Friends".into()),
                bits::PRESENCE_OUT,
            ),
            item(6, true, PrivacyMatch::Any, bits::IQ),
            item(
                7,
                false,
                PrivacyMatch::Subscription(Subscription::None),
                bits::MESSAGE,
            ),
        ]);
        let peers = [
            "tybalt@example.net",
            "tybalt@example.net/r",
            "x@example.org/r",
            "example.org",
            "a@example.com/bot",
            "example.com/bot",
            "x@capulet.example",
            "nurse@example.com/r",
            "romeo@example.net/r",
            "stranger@example.edu",
        ];
        for peer in peers {
            for what in [
                What::Message,
                What::Iq,
                What::PresenceIn,
                What::PresenceOut,
                What::Other,
            ] {
                both(&l, what, peer);
            }
        }
        assert_eq!(both(&l, What::Other, "tybalt@example.net/r"), BLOCKED);
        // The jid/deny entry after an allow item is a rule, still a blocklist entry.
        assert_eq!(both(&l, What::Other, "nurse@example.com/r"), BLOCKED);
        assert_eq!(both(&l, What::Message, "stranger@example.edu"), DENY);
        assert_eq!(both(&l, What::PresenceOut, "romeo@example.net"), DENY);
        assert_eq!(both(&l, What::Message, "romeo@example.net"), Verdict::Allow);
    }

    #[test]
    fn compiled_full_jid_entries_block_that_resource_only_block_12() {
        let l = list(vec![
            item(0, false, jid("juliet@capulet.example/balcony"), 0),
            item(1, false, jid("romeo@montague.example/garden"), 0),
            item(2, false, jid("romeo@montague.example"), 0),
            item(3, false, jid("juliet@capulet.example/tomb"), 0),
            item(4, true, jid("capulet.example"), 0),
            item(5, false, PrivacyMatch::Any, bits::MESSAGE),
        ]);
        let peers = [
            "juliet@capulet.example/balcony",
            "juliet@capulet.example/tomb",
            "juliet@capulet.example/balcony2",
            "juliet@capulet.example/balc",
            "juliet@capulet.example",
            "romeo@montague.example",
            "romeo@montague.example/garden",
            "romeo@montague.example/other",
            "montague.example",
        ];
        for peer in peers {
            for what in [What::Message, What::Iq, What::PresenceOut] {
                both(&l, what, peer);
            }
        }
        assert_eq!(
            both(&l, What::Iq, "juliet@capulet.example/balcony"),
            BLOCKED
        );
        assert_eq!(both(&l, What::Iq, "juliet@capulet.example/tomb"), BLOCKED);
        assert_eq!(
            both(&l, What::Message, "juliet@capulet.example/balcony2"),
            Verdict::Allow
        );
        assert_eq!(
            both(&l, What::Message, "juliet@capulet.example"),
            Verdict::Allow
        );
        assert_eq!(both(&l, What::Iq, "romeo@montague.example/other"), BLOCKED);
        assert_eq!(both(&l, What::Message, "montague.example"), DENY);
        // The blocklist lists every entry, the bare and the full one of romeo both.
        let mut blocked: Vec<String> = Compiled::new(&l).blocked().map(Cow::into_owned).collect();
        blocked.sort();
        assert_eq!(
            blocked,
            [
                "juliet@capulet.example/balcony",
                "juliet@capulet.example/tomb",
                "romeo@montague.example",
                "romeo@montague.example/garden",
            ]
        );
    }

    /// JIDs of every length from 1 to 70 bytes (both sides of each 8-byte word boundary),
    /// ASCII and not.
    fn sample_jids(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let local = "x".repeat(i % 40);
                match i % 3 {
                    0 => format!("{local}{i}@example.net"),
                    1 => format!("u{i}{local}@m\u{00fc}nchen.example"),
                    _ => format!("{i}@{local}d.example"),
                }
            })
            .collect()
    }

    #[test]
    fn the_sieve_passes_every_jid_it_holds_and_few_others() {
        let jids = sample_jids(2000);
        // No false negatives, at any fill (entries 0..n inserted, each checked at once and
        // again at the end).
        let mut sieve = Sieve::default();
        for j in &jids {
            sieve.insert(j);
            assert!(sieve.may_contain(j), "{j}");
        }
        assert!(jids.iter().all(|j| sieve.may_contain(j)));
        // 20 entries: about 2 % of other JIDs pass (the hash is not keyed, so this count is
        // the same on every run); 256 bits cannot all be set by 20 entries.
        let mut twenty = Sieve::default();
        jids[..20].iter().for_each(|j| twenty.insert(j));
        let passed = jids[20..].iter().filter(|j| twenty.may_contain(j)).count();
        assert!(
            passed * 100 < (jids.len() - 20) * 5,
            "{passed} false positives"
        );
        assert_ne!(twenty, Sieve([u64::MAX; 4]));
    }

    #[test]
    fn compiled_agrees_with_the_list_when_the_sieve_is_full_block_03() {
        // 1000 entries fill the sieve: every check goes on to the map, and decides the same.
        let jids = sample_jids(1200);
        let l = list(
            jids[..1000]
                .iter()
                .enumerate()
                .map(|(n, j)| item(n as u32, false, jid(j), 0))
                .collect(),
        );
        let c = Compiled::new(&l);
        assert_eq!(c.hot.sieve, Sieve([u64::MAX; 4]));
        assert!(c.hot.users_only);
        for (n, j) in jids.iter().enumerate() {
            let full = format!("{j}/r");
            for peer in [j.as_str(), full.as_str()] {
                let want = match n < 1000 {
                    true => BLOCKED,
                    false => Verdict::Allow,
                };
                let p = JidStr::trusted(peer);
                assert_eq!(c.check(What::Message, p, &mut roster), want, "{peer}");
                assert_eq!(evaluate(&l, What::Message, p, &mut roster), want, "{peer}");
            }
        }
    }

    fn el(s: &str) -> Element {
        xml::parse_element(
            s.as_bytes(),
            &StreamNs::new(ns::CLIENT),
            &xml::Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn lists_parse_and_write_back_priv_03_05() {
        let l = parse_list(&el("<list xmlns='jabber:iq:privacy' name='public'>\
             <item type='jid' value='Tybalt@Example.COM' action='deny' order='10'/>\
             <item action='allow' order='3'><message/><presence-out/></item>\
             <item type='subscription' value='none' action='deny' order='7'><iq/></item>\
             <item type='group' value='Friends' action='allow' order='0'><presence-in/></item>\
             </list>"))
        .unwrap();
        assert_eq!(l.name, "public");
        let orders: Vec<u32> = l.items.iter().map(|i| i.order).collect();
        assert_eq!(orders, [0, 3, 7, 10]);
        assert_eq!(l.items[3].what, jid("tybalt@example.com"));
        assert_eq!(l.items[1].stanzas, bits::MESSAGE | bits::PRESENCE_OUT);
        // Written back and read again: the same list.
        let back = parse_list(&list_element(&l)).unwrap();
        assert_eq!(back, l);

        let bad_lists = [
            // PRIV-05: duplicate order; missing or negative order; missing action.
            (
                "<item action='deny' order='1'/><item action='allow' order='1'/>",
                "bad-request",
            ),
            ("<item action='deny'/>", "bad-request"),
            ("<item action='deny' order='-1'/>", "bad-request"),
            ("<item action='deny' order='4294967296'/>", "bad-request"),
            ("<item order='1'/>", "bad-request"),
            ("<item action='block' order='1'/>", "bad-request"),
            (
                "<item type='subscription' value='some' action='deny' order='1'/>",
                "bad-request",
            ),
            (
                "<item type='colour' value='x' action='deny' order='1'/>",
                "bad-request",
            ),
            ("<item type='jid' action='deny' order='1'/>", "bad-request"),
            (
                "<item type='jid' value='a@b@c' action='deny' order='1'/>",
                "jid-malformed",
            ),
            (
                "<item action='deny' order='1'><video/></item>",
                "bad-request",
            ),
            ("<other/>", "bad-request"),
        ];
        for (items, condition) in bad_lists {
            let e = parse_list(&el(&format!(
                "<list xmlns='jabber:iq:privacy' name='x'>{items}</list>"
            )))
            .unwrap_err();
            assert_eq!(e.condition.name(), condition, "{items}");
        }
        let long = "n".repeat(MAX_NAME + 1);
        for named in ["", " name=''", &format!(" name='{long}'")] {
            let e = parse_list(&el(&format!("<list xmlns='jabber:iq:privacy'{named}/>")));
            assert_eq!(
                e.unwrap_err().condition,
                StanzaCondition::BadRequest,
                "{named}"
            );
        }
    }

    #[test]
    fn blocking_edits_the_default_list_first_block_11_12() {
        let j = |s: &str| s.to_string();
        // No default list: a new one with the entries.
        let l = with_blocked(None, &[j("a@x"), j("b@x"), j("a@x")]);
        assert_eq!(l.name, BLOCKLIST_NAME);
        assert_eq!(blocked(&l).collect::<Vec<_>>(), ["a@x", "b@x"]);
        // A default list with rules: new entries first, renumbered; known ones not repeated.
        let public = list(vec![
            item(0, true, jid("romeo@example.net"), 0),
            item(5, false, jid("tybalt@example.net"), 0),
            item(9, false, PrivacyMatch::Any, bits::MESSAGE),
        ]);
        let l = with_blocked(Some(&public), &[j("c@x"), j("tybalt@example.net")]);
        assert_eq!(l.name, "l");
        let orders: Vec<u32> = l.items.iter().map(|i| i.order).collect();
        assert_eq!(orders, [0, 1, 2, 3]);
        assert_eq!(l.items[0].what, jid("c@x"));
        assert_eq!(l.items[1].what, jid("romeo@example.net"));
        assert_eq!(
            blocked(&l).collect::<Vec<_>>(),
            ["c@x", "tybalt@example.net"]
        );
        assert_eq!((rule_count(&l), block_count(&l)), (2, 2));
        // Unblock one, then all: rules stay with their orders.
        let one = without_blocked(&l, Some(&[j("tybalt@example.net")]));
        assert_eq!(blocked(&one).collect::<Vec<_>>(), ["c@x"]);
        let none = without_blocked(&l, None);
        assert_eq!(blocked(&none).count(), 0);
        let orders: Vec<u32> = none.items.iter().map(|i| i.order).collect();
        assert_eq!(orders, [1, 3]);
    }
}
