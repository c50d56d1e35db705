//! XEP-0016 privacy lists and XEP-0191 blocking: one filter on the account's home shard.
//!
//! # One store
//!
//! The blocklist is the set of *blocklist entries* (items with `type='jid'`,
//! `action='deny'` and no child elements) of the user's **default** privacy list (XEP-0191
//! §5). Blocking puts new entries first in the default list (creating a default list named
//! [`list::BLOCKLIST_NAME`] when there is none); unblocking removes them; a JID denied that
//! way through XEP-0016 shows in the blocklist. So both protocols read and write one record
//! and one filter decides every stanza.
//!
//! # Which list decides
//!
//! A session with an active list uses only that list, any other session the default list
//! (no layering, PRIV-11); so a session that activated another list is not filtered by the
//! blocklist (XEP-0191 §5 says so). Inbound, a stanza for a connected full JID is decided by
//! that resource's list; anything for the account as a whole (the bare JID, a resource that
//! is not connected, the offline account: subscriptions, probes, offline storage, IQs the
//! server answers for it) by the default list, on the `DeliverBare`/`DeliverFull` chains at
//! `POLICY` priority, before RFC 6121 processing (PRIV-15). When a session of the account
//! has an active list, stanzas for the bare JID that are delivered to sessions (messages,
//! availability presence) are decided per session instead: a normal or chat message is
//! refused when every resource it would go to denies it, and `BeforeWrite` keeps each
//! session's denied stanzas from it. Outbound, the sending session's list decides on the
//! `ClientStanza` chain; presence broadcasts are narrowed per contact on `PresenceOut`.
//! Stanzas between the user's own resources are never filtered (PRIV-18).
//!
//! # Cost
//!
//! An account's lists are read from LMDB when its first session binds: the default list
//! (compiled, see [`list::Compiled`]) is kept in the account's `AccountSessions::ext` slot
//! and an active list in the resource's `Resource::ext` slot. Inbound to an online account
//! without lists costs the session-table lookup and nothing else; a blocklist costs a
//! 256-bit filter test of the peer's bare JID and, when that passes, one hash lookup,
//! whatever its size. Outbound, the sending session reaches the list that decides for it
//! through its own connection handle (`ClientHandle::ext`, a copy kept in step with the
//! session table), so its own stanzas cost no session-table lookup. The outbound,
//! `PresenceOut` and `BeforeWrite` links are armed only while some account on the shard has
//! a list (an active list, for `BeforeWrite`). For an offline account, each stanza the
//! server acts on (messages, subscriptions, probes, IQ requests) is checked against a
//! compiled copy of its default list kept while the stored record is unchanged
//! ([`OfflineLists`]).

pub mod list;
mod protocol;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ahash::AHashSet;

use crate::config::{pick, Config, ConfigError};
use crate::core::events::{
    priority, Audience, ClientStanza, DeliverBare, DeliverFull, Kinds, NotifyOut, PresenceOut,
    Recipients, SessionBound, SessionEnded, ToClient,
};
use crate::core::sessions::{AccountSessions, Resource};
use crate::core::{storage_failure, Ctx, Flow, FromClient, Inbound, Refused, Registry, Route};
use crate::xml::{self, StreamNs};
use crate::xmpp::error::{ErrorType, StanzaCondition, StanzaError};
use crate::xmpp::jid::JidStr;
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, MessageType, PresenceType, StanzaType};
use list::{Compiled, RosterFacts, Verdict, What};
use xmppd_storage::{DefaultList, StorageError};

/// The blocking command's namespace.
pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
/// XEP-0191's application error namespace (`<blocked/>`).
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

/// XEP-0016/0191 flags (`[modules.privacy]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyArgs {
    /// Most privacy lists one account keeps [default: 16].
    #[arg(long)]
    pub max_privacy_lists: Option<usize>,
    /// Most rules in one privacy list, not counting blocklist entries [default: 250].
    #[arg(long)]
    pub max_privacy_items: Option<usize>,
    /// Most blocked JIDs (XEP-0191 blocklist entries of the default list) [default: 1000].
    #[arg(long)]
    pub max_blocklist_items: Option<usize>,
}

/// XEP-0016/0191 resolved settings.
#[derive(Debug, Clone)]
pub struct PrivacyConfig {
    /// Most lists per account.
    pub max_lists: usize,
    /// Most rules per list (blocklist entries not counted).
    pub max_items: usize,
    /// Most blocklist entries.
    pub max_blocked: usize,
}

impl PrivacyArgs {
    /// Flags over the file over defaults, with bounds.
    pub fn resolve(&self, file: &PrivacyArgs) -> Result<PrivacyConfig, ConfigError> {
        let c = PrivacyConfig {
            max_lists: pick(self.max_privacy_lists, file.max_privacy_lists, 16),
            max_items: pick(self.max_privacy_items, file.max_privacy_items, 250),
            max_blocked: pick(self.max_blocklist_items, file.max_blocklist_items, 1000),
        };
        if c.max_lists == 0 || c.max_items == 0 || c.max_blocked == 0 {
            return Err(ConfigError(
                "--max-privacy-lists, --max-privacy-items and --max-blocklist-items must be at \
                 least 1"
                    .into(),
            ));
        }
        Ok(c)
    }
}

impl PrivacyConfig {
    /// The per-list bound `l` is over, if any, as text that names the flag: "has N rules,
    /// more than M (--max-privacy-items)" or "blocks N JIDs, more than M
    /// (--max-blocklist-items)". A live set and `xmppd import` both check lists with it.
    pub fn over_bounds(&self, l: &xmppd_storage::PrivacyList) -> Option<String> {
        let rules = list::rule_count(l);
        if rules > self.max_items {
            return Some(format!(
                "has {rules} rules, more than {} (--max-privacy-items)",
                self.max_items
            ));
        }
        let blocked = list::block_count(l);
        if blocked > self.max_blocked {
            return Some(format!(
                "blocks {blocked} JIDs, more than {} (--max-blocklist-items)",
                self.max_blocked
            ));
        }
        None
    }
}

/// A list in force for an account or a session: its compiled form (first, so the check's
/// first cache line starts the allocation) and its name.
#[repr(C)]
struct InForce {
    list: Compiled,
    name: Box<str>,
}

impl InForce {
    fn new(list: &xmppd_storage::PrivacyList) -> Rc<InForce> {
        Rc::new(InForce {
            name: list.name.as_str().into(),
            list: Compiled::new(list),
        })
    }
}

/// An account's state while it has sessions on its home shard (`AccountSessions::ext`), once
/// it has had a default list in force (absent: no default list).
#[derive(Default)]
struct AccountState {
    default: Option<Rc<InForce>>,
    /// Reading the lists failed at bind: they are read again before the next decision, and
    /// while that fails every decision refuses (fail closed).
    unknown: bool,
}

/// A session's state (`Resource::ext`).
#[derive(Default)]
struct SessionState {
    /// The active list (XEP-0016 §2.4).
    active: Option<Rc<InForce>>,
    /// Asked for the blocklist: gets XEP-0191 pushes (BLOCK-02).
    blocklist: bool,
    /// Used `jabber:iq:privacy`: gets privacy list pushes for changes made by the blocking
    /// command (changes made through XEP-0016 are pushed to every resource, PRIV-07).
    privacy: bool,
}

/// The list that decides a session's own (outbound) stanzas, kept on its connection handle
/// (`ClientHandle::ext`) so that the outbound check needs no session-table lookup: a copy of
/// [`effective`] that [`sync`] keeps in step whenever the account's default list, a session's
/// active list or the account's `unknown` flag changes. Absent or not `known` (before the
/// first sync, or while the lists cannot be read): the outbound check takes the session
/// table's path.
#[derive(Default)]
struct Outgoing {
    known: bool,
    list: Option<Rc<InForce>>,
}

/// Bring every session's [`Outgoing`] copy in step with the account's state.
fn sync(acct: &AccountSessions) {
    let unknown = acct.ext.get::<AccountState>().is_some_and(|s| s.unknown);
    for r in &acct.resources {
        let mut ext = r.handle.ext.borrow_mut();
        let o = ext.get_or_default::<Outgoing>();
        o.known = !unknown;
        o.list = match unknown {
            true => None,
            false => effective(acct, r).cloned(),
        };
    }
}

/// The default list of an account's sessions, if any.
fn default_of(acct: &AccountSessions) -> Option<&Rc<InForce>> {
    acct.ext.get::<AccountState>()?.default.as_ref()
}

/// The active list of a session, if any.
fn active_of(r: &Resource) -> Option<&Rc<InForce>> {
    r.ext.get::<SessionState>()?.active.as_ref()
}

/// The list that decides for a session: its active list, else the default (PRIV-11).
fn effective<'s>(acct: &'s AccountSessions, r: &'s Resource) -> Option<&'s Rc<InForce>> {
    active_of(r).or_else(|| default_of(acct))
}

/// Some session of the account has an active list.
fn is_mixed(acct: &AccountSessions) -> bool {
    acct.resources.iter().any(|r| active_of(r).is_some())
}

/// Stanzas between the user's own resources, and between the user and the user's own
/// server (its domain JID, which answers the user's IQs), are never filtered, whatever the
/// lists say (PRIV-18, BLOCK-13).
fn exempt(own: JidStr<'_>, peer: JidStr<'_>) -> bool {
    exempt_bare(own.bare().as_str(), peer.bare().as_str())
}

/// [`exempt`] on bare JIDs: `peer` is `own`, or `own`'s domain.
fn exempt_bare(own: &str, peer: &str) -> bool {
    peer == own
        || (own.len() > peer.len()
            && own.ends_with(peer)
            && own.as_bytes()[own.len() - peer.len() - 1] == b'@')
}

/// Reads the roster facts of a peer for group and subscription items (one LMDB read, only
/// when a list has such an item and reaches it); a failure denies (logged).
fn roster_lookup<'a>(
    ctx: &'a Ctx,
    user: &'a str,
) -> impl FnMut(&str) -> Result<RosterFacts, ()> + 'a {
    move |peer: &str| match ctx.storage().rosters().item(user, peer) {
        Ok(item) => Ok(RosterFacts {
            subscription: item.as_ref().map(|i| i.subscription),
            groups: item.map(|i| i.groups).unwrap_or_default(),
        }),
        Err(e) => {
            tracing::warn!(user, peer, error = %e,
                "privacy list: reading the roster failed; the stanza is refused");
            Err(())
        }
    }
}

/// Per-shard state of the module.
struct Privacy {
    config: PrivacyConfig,
    /// Accounts on this shard with a default or an active list.
    stateful: RefCell<AHashSet<Box<str>>>,
    /// `stateful` is not empty: the outbound and `PresenceOut` links run.
    armed: Rc<Cell<bool>>,
    /// Sessions on this shard with an active list.
    actives: Cell<usize>,
    /// `actives > 0`: the `BeforeWrite` link runs.
    mixed: Rc<Cell<bool>>,
    /// Per-account locks: changes to one account's lists are serialized.
    locks: crate::core::locks::AccountLocks,
    push_id: Cell<u64>,
    client_ns: StreamNs,
    /// Default lists of accounts with no session here, compiled.
    offline_lists: RefCell<OfflineLists>,
}

/// The compiled default lists of offline accounts, each with the record it was decoded from:
/// while a list is unchanged, a stanza for its account costs one read snapshot and a byte
/// comparison (`PrivacyStore::default_list_since`) instead of a decode and an ordered walk.
/// Exact whoever changes the list (a session, `xmppd import`, account deletion), since it is
/// the stored record that is compared. Bounded by the records' total size: what does not fit
/// pushes others out, and a record over the whole bound is not kept.
#[derive(Default)]
struct OfflineLists {
    lists: ahash::AHashMap<Box<str>, OfflineList>,
    bytes: usize,
}

struct OfflineList {
    name: Box<str>,
    record: Box<[u8]>,
    list: Compiled,
}

/// [`OfflineLists`]' bound, in record bytes per shard (a 1000-entry blocklist is about 30
/// KiB of record and three times that compiled).
const OFFLINE_LISTS_BYTES: usize = 1 << 20;

impl OfflineLists {
    fn forget(&mut self, user: &str) {
        if let Some(old) = self.lists.remove(user) {
            self.bytes -= old.record.len();
        }
    }

    fn keep(&mut self, user: &str, name: &str, record: Box<[u8]>, list: Compiled) {
        self.forget(user);
        if record.len() > OFFLINE_LISTS_BYTES {
            return;
        }
        while self.bytes + record.len() > OFFLINE_LISTS_BYTES {
            let Some(other) = self.lists.keys().next().cloned() else {
                break;
            };
            self.forget(&other);
        }
        self.bytes += record.len();
        let entry = OfflineList {
            name: name.into(),
            record,
            list,
        };
        self.lists.insert(user.into(), entry);
    }
}

/// What decides an inbound stanza for an online account.
enum Decide<'s> {
    /// No list applies.
    Nothing,
    /// This list.
    List(&'s InForce),
    /// Decided already (per session).
    Verdict(Verdict),
}

impl Privacy {
    fn new(config: &Config) -> Privacy {
        Privacy {
            config: config.modules.privacy.clone(),
            stateful: RefCell::default(),
            armed: Rc::new(Cell::new(false)),
            actives: Cell::new(0),
            mixed: Rc::new(Cell::new(false)),
            locks: Default::default(),
            push_id: Cell::new(0),
            client_ns: StreamNs::new(ns::CLIENT),
            offline_lists: RefCell::default(),
        }
    }

    /// The account has a list in force on this shard.
    fn mark(&self, user: &str) {
        let mut s = self.stateful.borrow_mut();
        if !s.contains(user) {
            s.insert(user.into());
        }
        self.armed.set(true);
    }

    fn unmark(&self, user: &str) {
        let mut s = self.stateful.borrow_mut();
        s.remove(user);
        self.armed.set(!s.is_empty());
    }

    /// One more (`true`) or one fewer session with an active list.
    fn count_active(&self, more: bool) {
        let n = match more {
            true => self.actives.get() + 1,
            false => self.actives.get().saturating_sub(1),
        };
        self.actives.set(n);
        self.mixed.set(n > 0);
    }

    /// Runs `f` on the account's sessions and its default list, with one session-table
    /// lookup; `Ok(None)` when the account has no session on this shard. When reading the
    /// lists failed at bind (`AccountState::unknown`), they are read again first; while that
    /// fails, the error is returned (fail closed).
    fn with_account<R>(
        &self,
        ctx: &Ctx,
        user: &str,
        f: impl FnOnce(&AccountSessions, Option<&Rc<InForce>>) -> R,
    ) -> Result<Option<R>, StorageError> {
        {
            let sessions = ctx.sessions().borrow();
            let Some(acct) = sessions.account(user) else {
                return Ok(None);
            };
            let st = acct.ext.get::<AccountState>();
            if !st.is_some_and(|s| s.unknown) {
                return Ok(Some(f(acct, st.and_then(|s| s.default.as_ref()))));
            }
        }
        self.reload(ctx, user)?;
        let sessions = ctx.sessions().borrow();
        Ok(sessions.account(user).map(|acct| f(acct, default_of(acct))))
    }

    /// Reads the account's default list again after a failed read (see `bound`).
    fn reload(&self, ctx: &Ctx, user: &str) -> Result<(), StorageError> {
        let default = ctx.storage().privacy().default_list(user)?;
        if let Some(acct) = ctx.sessions().borrow_mut().account_mut(user) {
            let st = acct.ext.get_or_default::<AccountState>();
            st.unknown = false;
            st.default = default.as_ref().map(InForce::new);
            sync(acct);
        }
        Ok(())
    }

    /// The stanza's id, read from its bytes.
    fn id_of(&self, ctx: &Ctx, stanza: &[u8]) -> Option<String> {
        let head = xml::scan_stanza(stanza, &self.client_ns, &ctx.config().xml_limits()).ok()?;
        head.attr("id").map(|c| c.into_owned())
    }

    /// A stanza for a local account on its home shard (`DeliverBare`, `DeliverFull`).
    fn inbound(&self, ctx: &Ctx, p: &Inbound<'_>) -> Flow {
        let user = p.route.to.bare().as_str();
        let peer = p.route.from;
        let peer_bare = peer.bare().as_str();
        if exempt_bare(user, peer_bare) {
            return Flow::Continue; // PRIV-18, BLOCK-13
        }
        let what = What::inbound(p.ty);
        let decided = self.with_account(ctx, user, |acct, default| {
            let target = p.route.to.resource().and_then(|r| acct.get(r));
            let decide = match target {
                Some(r) => active_of(r)
                    .or(default)
                    .map_or(Decide::Nothing, |l| Decide::List(l)),
                None if self.actives.get() > 0 && is_mixed(acct) => {
                    self.per_session(ctx, acct, user, p.ty, peer)
                }
                None => default.map_or(Decide::Nothing, |l| Decide::List(l)),
            };
            match decide {
                Decide::Nothing => Verdict::Allow,
                Decide::Verdict(v) => v,
                Decide::List(l) => {
                    let mut roster = roster_lookup(ctx, user);
                    l.list.check_bare(what, peer, peer_bare, &mut roster)
                }
            }
        });
        match decided {
            Err(e) => self.failed(ctx, p, &e),
            Ok(None) => self.offline(ctx, p, what),
            Ok(Some(Verdict::Allow)) => Flow::Continue,
            Ok(Some(Verdict::Deny { .. })) => {
                self.refuse_inbound(ctx, p);
                Flow::Handled(None)
            }
        }
    }

    /// A stanza for the bare JID of an account one of whose sessions has an active list:
    /// what is delivered to sessions is decided per session; the rest by the default list.
    fn per_session<'s>(
        &self,
        ctx: &Ctx,
        acct: &'s AccountSessions,
        user: &str,
        ty: StanzaType,
        peer: JidStr<'_>,
    ) -> Decide<'s> {
        let default = || default_of(acct).map_or(Decide::Nothing, |l| Decide::List(l));
        match ty {
            StanzaType::Message(MessageType::Normal | MessageType::Chat) => {
                let mut best = acct.best().peekable();
                if best.peek().is_none() {
                    return default(); // offline storage: the account's list
                }
                let mut roster = roster_lookup(ctx, user);
                let allowed = best.any(|r| {
                    effective(acct, r)
                        .is_none_or(|l| !l.list.check(What::Message, peer, &mut roster).denies())
                });
                Decide::Verdict(match allowed {
                    true => Verdict::Allow,
                    false => Verdict::Deny { blocked: false },
                })
            }
            // Each session's own list, as it is offered the stanza (`BeforeWrite`).
            StanzaType::Message(_)
            | StanzaType::Presence(PresenceType::Available | PresenceType::Unavailable) => {
                Decide::Nothing
            }
            _ => default(),
        }
    }

    /// A stanza for an account with no session here: its default list as stored now (see
    /// [`OfflineLists`]). Only what the server acts on for an offline account is checked
    /// (availability presence and IQ answers are dropped anyway).
    fn offline(&self, ctx: &Ctx, p: &Inbound<'_>, what: What) -> Flow {
        match p.ty {
            StanzaType::Presence(
                PresenceType::Available | PresenceType::Unavailable | PresenceType::Error,
            )
            | StanzaType::Iq(IqType::Result | IqType::Error)
            | StanzaType::Message(MessageType::Error) => return Flow::Continue,
            _ => {}
        }
        let user = p.route.to.bare().as_str();
        let now = {
            let kept = self.offline_lists.borrow();
            let known = kept.lists.get(user).map(|l| (&*l.name, &*l.record));
            ctx.storage().privacy().default_list_since(user, known)
        };
        let mut roster = roster_lookup(ctx, user);
        let verdict = match now {
            Err(e) => return self.failed(ctx, p, &e),
            Ok(DefaultList::None) => {
                self.offline_lists.borrow_mut().forget(user);
                return Flow::Continue;
            }
            Ok(DefaultList::Unchanged) => match self.offline_lists.borrow().lists.get(user) {
                Some(l) => l.list.check(what, p.route.from, &mut roster),
                // Not possible (`known` came from the kept copy, nothing ran since); read
                // afresh rather than decide without a list.
                None => match ctx.storage().privacy().default_list(user) {
                    Ok(l) => l.map_or(Verdict::Allow, |l| {
                        list::evaluate(&l, what, p.route.from, &mut roster)
                    }),
                    Err(e) => return self.failed(ctx, p, &e),
                },
            },
            Ok(DefaultList::Changed { list: l, record }) => {
                let compiled = Compiled::new(&l);
                let v = compiled.check(what, p.route.from, &mut roster);
                let mut kept = self.offline_lists.borrow_mut();
                kept.keep(user, &l.name, record, compiled);
                v
            }
        };
        if verdict.denies() {
            self.refuse_inbound(ctx, p);
            return Flow::Handled(None);
        }
        Flow::Continue
    }

    /// The account's lists cannot be read: fail closed. Nothing from outside reaches the
    /// account; the sender of a message or IQ request learns the server failed (issue 8).
    fn failed(&self, ctx: &Ctx, p: &Inbound<'_>, e: &StorageError) -> Flow {
        let err = storage_failure("privacy list check", p.route.to.bare().as_str(), e);
        match p.ty {
            StanzaType::Presence(_) | StanzaType::Iq(IqType::Result | IqType::Error) => {}
            ty => {
                let id = self.id_of(ctx, p.stanza);
                let id = id.as_deref();
                ctx.bounce(
                    Refused {
                        ty,
                        id,
                        route: p.route,
                    },
                    err,
                );
            }
        }
        Flow::Handled(None)
    }

    /// PRIV-16, BLOCK-06: presence and IQ answers vanish; messages and IQ requests get
    /// `service-unavailable`, as if the account were not there.
    fn refuse_inbound(&self, ctx: &Ctx, p: &Inbound<'_>) {
        match p.ty {
            StanzaType::Message(MessageType::Error)
            | StanzaType::Presence(_)
            | StanzaType::Iq(IqType::Result | IqType::Error) => {}
            ty => {
                let id = self.id_of(ctx, p.stanza);
                let id = id.as_deref();
                ctx.bounce(
                    Refused {
                        ty,
                        id,
                        route: p.route,
                    },
                    StanzaError::new(StanzaCondition::ServiceUnavailable),
                );
            }
        }
    }

    /// A stanza from a bound client (`ClientStanza`): its session's list, outbound
    /// (PRIV-17, BLOCK-07).
    fn outbound(&self, ctx: &Ctx, s: &FromClient<'_>) -> Flow {
        let Some(to) = s.to else {
            return Flow::Continue;
        };
        let from = s.from;
        let user = from.bare_str();
        if exempt_bare(user, to.bare_str()) {
            return Flow::Continue; // PRIV-18
        }
        let what = What::outbound(s.ty);
        let check = |l: &InForce| {
            let mut roster = roster_lookup(ctx, user);
            l.list
                .check_bare(what, to.into(), to.bare_str(), &mut roster)
        };
        let decided = {
            let ext = s.handle.ext.borrow();
            match ext.get::<Outgoing>() {
                Some(o) if o.known => {
                    #[cfg(debug_assertions)]
                    self.assert_in_step(ctx, from, o.list.as_ref());
                    Ok(o.list.as_deref().map(check))
                }
                _ => self
                    .with_account(ctx, user, |acct, default| {
                        let r = from.resource().and_then(|r| acct.get(r))?;
                        active_of(r).or(default).map(|l| check(l))
                    })
                    .map(Option::flatten),
            }
        };
        let verdict = match decided {
            Ok(Some(v)) => v,
            Ok(None) => return Flow::Continue,
            Err(e) => {
                let err = storage_failure("privacy list check", user, &e);
                let route = Route::new(from, to);
                ctx.bounce(
                    Refused {
                        ty: s.ty,
                        id: s.id,
                        route,
                    },
                    err,
                );
                return Flow::Handled(None);
            }
        };
        let Verdict::Deny { blocked } = verdict else {
            return Flow::Continue;
        };
        if s.ty.is_error() {
            return Flow::Handled(None);
        }
        let mut err = StanzaError {
            error_type: ErrorType::Cancel,
            ..StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                "your privacy list blocks this addressee",
            )
        };
        if blocked {
            err = err.with_app("blocked", NS_BLOCKING_ERRORS);
        }
        // Straight to the sending session: routed, the error would come from the blocked
        // JID and be refused by the very list that refused the stanza.
        let legacy = ctx.config().legacy_error_codes;
        s.handle.send_with(|out| {
            err.write_reply(
                s.ty.kind().name(),
                s.id,
                Some(from.as_str()),
                Some(to.as_str()),
                legacy,
                out,
            )
        });
        Flow::Handled(None)
    }

    /// Debug builds: the session's [`Outgoing`] copy is the list the session table says is in
    /// force (every end-to-end test checks that [`sync`] ran wherever the state changed).
    #[cfg(debug_assertions)]
    fn assert_in_step(&self, ctx: &Ctx, from: &crate::xmpp::jid::Jid, copy: Option<&Rc<InForce>>) {
        let sessions = ctx.sessions().borrow();
        let Some(acct) = sessions.account(from.bare_str()) else {
            return;
        };
        let Some(r) = from.resource().and_then(|r| acct.get(r)) else {
            return;
        };
        let table = effective(acct, r);
        assert!(
            match (copy, table) {
                (None, None) => true,
                (Some(a), Some(b)) => Rc::ptr_eq(a, b),
                _ => false,
            },
            "privacy: the outbound copy of {from}'s list is out of step with the session table"
        );
    }

    /// Presence notifications to contacts (`PresenceOut`): the sender's list, `presence-out`.
    fn presence_out(&self, ctx: &Ctx, a: &Audience<'_>) -> Flow {
        let user = a.from.bare().as_str();
        let narrowed = self.with_account(ctx, user, |acct, default| {
            let l = match a.from.resource().and_then(|r| acct.get(r)) {
                Some(r) => active_of(r).or(default),
                None => default,
            };
            if let Some(l) = l {
                let mut roster = roster_lookup(ctx, user);
                a.to.borrow_mut().retain(|to| {
                    let to = JidStr::trusted(to);
                    exempt(a.from, to) || !l.list.check(What::PresenceOut, to, &mut roster).denies()
                });
            }
        });
        if let Err(e) = narrowed {
            a.to.borrow_mut().clear(); // fail closed
            tracing::warn!(user, error = %e, "presence not sent: privacy lists cannot be read");
        }
        Flow::Continue
    }

    /// PEP notifications the account's service sends (`NotifyOut`, PEP-09): recipients its
    /// default list refuses messages from are dropped (a XEP-0191 blocklist refuses
    /// everything). Online or not: an offline owner's service still replays last items. Fails
    /// closed.
    fn notify_out(&self, ctx: &Ctx, r: &Recipients<'_>) -> Flow {
        let user = r.from.bare().as_str();
        let what = What::inbound(StanzaType::Message(MessageType::Headline));
        let online = self.with_account(ctx, user, |_, default| {
            if let Some(l) = default {
                let mut roster = roster_lookup(ctx, user);
                r.to.borrow_mut().retain(|to| {
                    let to = JidStr::trusted(to);
                    exempt(r.from, to) || !l.list.check(what, to, &mut roster).denies()
                });
            }
        });
        let done = match online {
            Ok(Some(())) => Ok(()),
            Ok(None) => ctx.storage().privacy().default_list(user).map(|l| {
                if let Some(l) = l {
                    let mut roster = roster_lookup(ctx, user);
                    r.to.borrow_mut().retain(|to| {
                        let to = JidStr::trusted(to);
                        exempt(r.from, to) || !list::evaluate(&l, what, to, &mut roster).denies()
                    });
                }
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            r.to.borrow_mut().clear();
            tracing::warn!(user, error = %e, "notification not sent: privacy lists cannot be read");
        }
        Flow::Continue
    }

    /// A stanza for the bare JID offered to one session of an account with active lists
    /// (`BeforeWrite`): that session's own list.
    fn before_write(&self, ctx: &Ctx, w: &ToClient<'_>) -> Flow {
        if w.route.to.as_str() == w.resource.as_str() {
            return Flow::Continue; // addressed to this resource: decided on DeliverFull
        }
        let user = w.resource.bare_str();
        let peer = w.route.from;
        if exempt(w.resource.into(), peer) {
            return Flow::Continue;
        }
        let decided = self.with_account(ctx, user, |acct, default| {
            if !is_mixed(acct) {
                return Verdict::Allow; // the default list decided for every session already
            }
            let l = w.resource.resource().and_then(|r| acct.get(r));
            match l.and_then(|r| active_of(r).or(default)) {
                Some(l) => l
                    .list
                    .check(What::inbound(w.ty), peer, &mut roster_lookup(ctx, user)),
                None => Verdict::Allow,
            }
        });
        match decided {
            Ok(None | Some(Verdict::Allow)) => Flow::Continue,
            Ok(Some(Verdict::Deny { .. })) | Err(_) => Flow::Handled(None), // fail closed
        }
    }

    /// A session bound: the account's default list, read when a session binds while none is
    /// in force (an account without lists keeps no state: it is read again at its next bind,
    /// one LMDB lookup). A failed read leaves the account's lists unknown: they are read
    /// again before the next decision, which refuses while they cannot be (fail closed; the
    /// session itself goes on, as its roster would).
    fn bound(&self, ctx: &Ctx, b: &crate::core::events::Bound<'_>) {
        let user = b.jid.bare_str();
        {
            let sessions = ctx.sessions().borrow();
            let Some(acct) = sessions.account(user) else {
                return;
            };
            if acct.ext.get::<AccountState>().is_some() {
                sync(acct); // the new session's copy
                return;
            }
        }
        let state = match ctx.storage().privacy().default_list(user) {
            Ok(None) => {
                if let Some(acct) = ctx.sessions().borrow().account(user) {
                    sync(acct); // no list: the outbound check is skipped
                }
                return;
            }
            Ok(Some(default)) => AccountState {
                default: Some(InForce::new(&default)),
                unknown: false,
            },
            Err(e) => {
                tracing::warn!(user, error = %e,
                    "reading privacy lists at bind failed; read again at the next stanza");
                AccountState {
                    default: None,
                    unknown: true,
                }
            }
        };
        if let Some(acct) = ctx.sessions().borrow_mut().account_mut(user) {
            *acct.ext.get_or_default::<AccountState>() = state;
            sync(acct);
        }
        self.mark(user);
    }

    /// A session ended.
    fn ended(&self, ctx: &Ctx, r: &Resource) {
        if active_of(r).is_some() {
            self.count_active(false);
        }
        let user = r.jid.bare_str();
        if ctx.sessions().borrow().account(user).is_none() {
            self.unmark(user);
        }
    }
}

/// Register privacy lists and the blocking command.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("privacy");
    r.server_feature(list::NS_PRIVACY);
    r.server_feature(NS_BLOCKING);
    let p = Rc::new(Privacy::new(config));
    protocol::register(r, &p);
    {
        let p = p.clone();
        r.hook_for::<DeliverBare>(Kinds::ALL, priority::POLICY, move |ctx, s| {
            p.inbound(ctx, s)
        });
    }
    {
        let p = p.clone();
        r.hook_for::<DeliverFull>(Kinds::ALL, priority::POLICY, move |ctx, s| {
            p.inbound(ctx, s)
        });
    }
    {
        let (p, armed) = (p.clone(), p.armed.clone());
        r.hook_armed::<ClientStanza>(Kinds::ALL, priority::POLICY, armed, move |ctx, s| {
            p.outbound(ctx, s)
        });
    }
    {
        let (p, armed) = (p.clone(), p.armed.clone());
        r.hook_armed::<PresenceOut>(Kinds::PRESENCE, priority::POLICY, armed, move |ctx, a| {
            p.presence_out(ctx, a)
        });
    }
    {
        // Not armed: an offline owner's lists count too (last-item replays).
        let p = p.clone();
        r.hook_for::<NotifyOut>(Kinds::MESSAGE, priority::POLICY, move |ctx, n| {
            p.notify_out(ctx, n)
        });
    }
    {
        let (p, mixed) = (p.clone(), p.mixed.clone());
        r.hook_armed::<crate::core::events::BeforeWrite>(
            Kinds::ALL,
            priority::POLICY,
            mixed,
            move |ctx, w| p.before_write(ctx, w),
        );
    }
    {
        let p = p.clone();
        r.hook::<SessionBound>(priority::POLICY, move |ctx, b| {
            p.bound(ctx, b);
            None
        });
    }
    r.hook::<SessionEnded>(priority::POLICY, move |ctx, res| {
        p.ended(ctx, res);
        None
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_lists_stay_within_their_bound() {
        let mut kept = OfflineLists::default();
        let record = |n: usize| vec![7u8; n].into_boxed_slice();
        let half = OFFLINE_LISTS_BYTES / 2;
        kept.keep("a@x", "l", record(half), Compiled::default());
        kept.keep("b@x", "l", record(half), Compiled::default());
        assert_eq!((kept.lists.len(), kept.bytes), (2, 2 * half));
        // Replacing a user's copy does not count it twice.
        kept.keep("b@x", "m", record(half), Compiled::default());
        assert_eq!((kept.lists.len(), kept.bytes), (2, 2 * half));
        // A third pushes one out; the total stays within the bound.
        kept.keep("c@x", "l", record(half), Compiled::default());
        assert!(kept.lists.contains_key("c@x"));
        assert_eq!((kept.lists.len(), kept.bytes), (2, 2 * half));
        // A record over the whole bound is not kept (and drops the user's old copy).
        kept.keep(
            "c@x",
            "l",
            record(OFFLINE_LISTS_BYTES + 1),
            Compiled::default(),
        );
        assert!(!kept.lists.contains_key("c@x"));
        assert_eq!((kept.lists.len(), kept.bytes), (1, half));
        kept.forget("a@x");
        kept.forget("b@x");
        kept.forget("nobody@x");
        assert_eq!((kept.lists.len(), kept.bytes), (0, 0));
    }

    #[test]
    fn own_resources_and_own_server_are_exempt_priv_18_block_13() {
        let own = "juliet@capulet.example";
        for (peer, exempt) in [
            ("juliet@capulet.example", true),
            ("capulet.example", true),
            ("romeo@capulet.example", false),
            ("example", false),
            ("t.example", false),
            ("juliet@capulet.example.evil", false),
            ("let.example", false),
            ("montague.example", false),
        ] {
            assert_eq!(exempt_bare(own, peer), exempt, "{peer}");
        }
        let j = JidStr::trusted;
        assert!(exempt(
            j("juliet@capulet.example/balcony"),
            j("capulet.example")
        ));
        assert!(exempt(
            j("juliet@capulet.example"),
            j("juliet@capulet.example/r")
        ));
        assert!(exempt(
            j("juliet@capulet.example/a"),
            j("capulet.example/admin")
        ));
        assert!(!exempt(
            j("juliet@capulet.example/a"),
            j("nurse@capulet.example/a")
        ));
    }
}
