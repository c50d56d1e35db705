//! The `jabber:iq:privacy` (XEP-0016 §2.3–2.8) and `urn:xmpp:blocking` (XEP-0191 §3) IQs:
//! every change is committed to LMDB under the account's lock, then applied to the sessions'
//! lists in force, pushed, and its presence effects sent (PRIV-20/21, BLOCK-05/08), all
//! before the result.

use std::future::Future;
use std::rc::Rc;

use xmppd_storage::{PrivacyList, RosterItem, StorageError, Subscription, WriteTxn};

use super::list::{self, RosterFacts, What, NS_PRIVACY};
use super::{AccountState, InForce, Privacy, SessionState, NS_BLOCKING};
use crate::core::{storage_failure, Ctx, IqReply, IqRequest, Registry, Route, Scope};
use crate::xml::{self, Element};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::{Jid, JidStr};
use crate::xmpp::ns;
use crate::xmpp::stanza::{write_presence, IqType, PresenceType, StanzaType};

pub(super) fn register(r: &mut Registry, p: &Rc<Privacy>) {
    let handlers: [(IqType, &'static str, &'static str, Handler); 5] = [
        (IqType::Get, NS_PRIVACY, "query", privacy_get),
        (IqType::Set, NS_PRIVACY, "query", privacy_set),
        (IqType::Get, NS_BLOCKING, "blocklist", blocklist_get),
        (IqType::Set, NS_BLOCKING, "block", block),
        (IqType::Set, NS_BLOCKING, "unblock", unblock),
    ];
    for (ty, namespace, name, handler) in handlers {
        let p = p.clone();
        r.iq(Scope::Account, ty, namespace, name, move |ctx, req| {
            if !req.own() {
                return IqReply::Error(StanzaError::with_text(
                    StanzaCondition::Forbidden,
                    "privacy lists and blocklists are their owner's",
                ));
            }
            handler(&p, ctx, req)
        });
    }
}

type Handler = fn(&Rc<Privacy>, &Ctx, &IqRequest<'_>) -> IqReply;

fn error(condition: StanzaCondition, text: &str) -> IqReply {
    IqReply::Error(StanzaError::with_text(condition, text))
}

fn policy(text: String) -> StanzaError {
    StanzaError::with_text(StanzaCondition::PolicyViolation, text)
}

/// Mark what the requesting session asked for (pushes it gets).
fn note_session(ctx: &Ctx, from: &Jid, f: impl FnOnce(&mut SessionState)) {
    let mut sessions = ctx.sessions().borrow_mut();
    if let Some(r) = from
        .resource()
        .and_then(|res| sessions.account_mut(from.bare_str())?.get_mut(res))
    {
        f(r.ext.get_or_default::<SessionState>());
    }
}

/// PRIV-02, PRIV-03.
fn privacy_get(_: &Rc<Privacy>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    note_session(ctx, req.from, |s| s.privacy = true);
    let user = req.from.bare_str();
    let stored = match ctx.storage().privacy().load(user) {
        Ok(s) => s,
        Err(e) => return IqReply::Error(storage_failure("reading privacy lists", user, &e)),
    };
    let children: Vec<&Element> = req.payload.elements().collect();
    let mut query = Element::new("query", NS_PRIVACY);
    match children[..] {
        [] => {
            let active = {
                let sessions = ctx.sessions().borrow();
                req.from
                    .resource()
                    .and_then(|r| sessions.account(user)?.get(r))
                    .and_then(super::active_of)
                    .map(|l| l.name.to_string())
            };
            let mut a = Element::new("active", NS_PRIVACY);
            if let Some(name) = active {
                a.set_attr("name", name);
            }
            let mut d = Element::new("default", NS_PRIVACY);
            if let Some(name) = &stored.default {
                d.set_attr("name", name.as_str());
            }
            query.push_child(a);
            query.push_child(d);
            for l in &stored.lists {
                query.push_child(
                    Element::new("list", NS_PRIVACY).with_attr("name", l.name.as_str()),
                );
            }
        }
        [one] if one.is("list", NS_PRIVACY) => {
            let name = match list::list_name(one) {
                Ok(n) => n,
                Err(e) => return IqReply::Error(e),
            };
            match stored.list(name) {
                Some(l) => query.push_child(list::list_element(l)),
                None => return error(StanzaCondition::ItemNotFound, "no such list"),
            }
        }
        [_] => return error(StanzaCondition::BadRequest, "expected <list/>"),
        _ => return error(StanzaCondition::BadRequest, "one list at a time"),
    }
    IqReply::Result(Some(query))
}

/// PRIV-04..10.
fn privacy_set(p: &Rc<Privacy>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    note_session(ctx, req.from, |s| s.privacy = true);
    let children: Vec<&Element> = req.payload.elements().collect();
    let [one] = children[..] else {
        return error(
            StanzaCondition::BadRequest,
            "a privacy set carries exactly one of <active/>, <default/>, <list/>",
        );
    };
    let named = match one.attr("name") {
        None => None,
        Some(_) => match list::list_name(one) {
            Ok(n) => Some(n.to_string()),
            Err(e) => return IqReply::Error(e),
        },
    };
    let from = req.from.clone();
    match one.name.as_str() {
        _ if one.ns != NS_PRIVACY => error(StanzaCondition::BadRequest, "unknown element"),
        "active" => p.locked(ctx, req.from, move |p, ctx| async move {
            set_active(&p, &ctx, &from, named)
        }),
        "default" => p.locked(ctx, req.from, move |p, ctx| async move {
            set_default(&p, &ctx, &from, named).await
        }),
        "list" => {
            if named.is_none() {
                return error(StanzaCondition::BadRequest, "a list needs a name");
            }
            if one.elements().next().is_none() {
                let name = named.unwrap_or_default();
                return p.locked(ctx, req.from, move |p, ctx| async move {
                    remove_list(&p, &ctx, &from, name).await
                });
            }
            let parsed = match list::parse_list(one) {
                Ok(l) => l,
                Err(e) => return IqReply::Error(e),
            };
            p.locked(ctx, req.from, move |p, ctx| async move {
                put_list(&p, &ctx, &from, parsed).await
            })
        }
        _ => error(StanzaCondition::BadRequest, "unknown element"),
    }
}

/// BLOCK-02.
fn blocklist_get(_: &Rc<Privacy>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    note_session(ctx, req.from, |s| s.blocklist = true);
    let user = req.from.bare_str();
    let default = match ctx.storage().privacy().default_list(user) {
        Ok(d) => d,
        Err(e) => return IqReply::Error(storage_failure("reading the blocklist", user, &e)),
    };
    let mut out = Element::new("blocklist", NS_BLOCKING);
    for j in default.iter().flat_map(list::blocked) {
        out.push_child(Element::new("item", NS_BLOCKING).with_attr("jid", j));
    }
    IqReply::Result(Some(out))
}

/// The JIDs of a block or unblock command, normalized.
fn command_jids(el: &Element) -> Result<Vec<String>, StanzaError> {
    let mut jids = Vec::new();
    for item in el.elements() {
        if !item.is("item", NS_BLOCKING) {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "only <item/> elements",
            ));
        }
        let Some(j) = item.attr("jid") else {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "an item needs a jid",
            ));
        };
        let j = list::parse_jid(j)?;
        if !jids.contains(&j) {
            jids.push(j);
        }
    }
    Ok(jids)
}

/// BLOCK-03/04.
fn block(p: &Rc<Privacy>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    let jids = match command_jids(req.payload) {
        Ok(j) if j.is_empty() => {
            return error(StanzaCondition::BadRequest, "nothing to block: no <item/>")
        }
        Ok(j) => j,
        Err(e) => return IqReply::Error(e),
    };
    let from = req.from.clone();
    p.locked(ctx, req.from, move |p, ctx| async move {
        blocking(&p, &ctx, &from, Some(jids), true).await
    })
}

/// BLOCK-08/09.
fn unblock(p: &Rc<Privacy>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    let jids = match command_jids(req.payload) {
        Ok(j) if j.is_empty() => None,
        Ok(j) => Some(j),
        Err(e) => return IqReply::Error(e),
    };
    let from = req.from.clone();
    p.locked(ctx, req.from, move |p, ctx| async move {
        blocking(&p, &ctx, &from, jids, false).await
    })
}

impl Privacy {
    /// Run `f` holding the account's lock (taken now, so requests are served in order).
    fn locked<F, Fut>(self: &Rc<Self>, ctx: &Ctx, from: &Jid, f: F) -> IqReply
    where
        F: FnOnce(Rc<Privacy>, Ctx) -> Fut + 'static,
        Fut: Future<Output = IqReply> + 'static,
    {
        let user = from.bare_str().to_string();
        let lock = self.locks.handle(&user);
        let (p, ctx) = (self.clone(), ctx.clone());
        IqReply::Later(Box::pin(async move {
            let permit = lock.acquire_static_permit(1).await;
            let reply = f(p.clone(), ctx).await;
            drop(permit);
            p.locks.release(&user, lock);
            reply
        }))
    }
}

/// What the sessions of an account use, before a change: each resource's list in force.
struct Before {
    lists: Vec<(Jid, Option<Rc<InForce>>)>,
    default: Option<Rc<InForce>>,
}

fn snapshot(ctx: &Ctx, user: &str) -> Before {
    let sessions = ctx.sessions().borrow();
    match sessions.account(user) {
        Some(acct) => Before {
            lists: acct
                .resources
                .iter()
                .map(|r| (r.jid.clone(), super::effective(acct, r).cloned()))
                .collect(),
            default: super::default_of(acct).cloned(),
        },
        None => Before {
            lists: Vec::new(),
            default: None,
        },
    }
}

/// Another connected resource than `from` uses the default list (no active list of its
/// own), while there is one (PRIV-09, PRIV-10).
fn default_used_by_others(ctx: &Ctx, from: &Jid) -> bool {
    let sessions = ctx.sessions().borrow();
    let Some(acct) = sessions.account(from.bare_str()) else {
        return false;
    };
    super::default_of(acct).is_some()
        && acct
            .resources
            .iter()
            .any(|r| r.jid != *from && super::active_of(r).is_none())
}

/// Another connected resource than `from` has `name` active (PRIV-10).
fn active_elsewhere(ctx: &Ctx, from: &Jid, name: &str) -> bool {
    let sessions = ctx.sessions().borrow();
    sessions.account(from.bare_str()).is_some_and(|acct| {
        acct.resources
            .iter()
            .any(|r| r.jid != *from && super::active_of(r).is_some_and(|l| &*l.name == name))
    })
}

/// Set (or clear) one session's active list (PRIV-08); in force before the result.
fn set_active(p: &Rc<Privacy>, ctx: &Ctx, from: &Jid, name: Option<String>) -> IqReply {
    let user = from.bare_str();
    let new = match &name {
        None => None,
        Some(n) => match ctx.storage().privacy().load(user) {
            Ok(stored) => match stored.list(n) {
                Some(l) => Some(InForce::new(l)),
                None => return error(StanzaCondition::ItemNotFound, "no such list"),
            },
            Err(e) => return IqReply::Error(storage_failure("reading a privacy list", user, &e)),
        },
    };
    let before = snapshot(ctx, user);
    let had = {
        let mut sessions = ctx.sessions().borrow_mut();
        let Some(r) = from
            .resource()
            .and_then(|res| sessions.account_mut(user)?.get_mut(res))
        else {
            return IqReply::Result(None);
        };
        let st = r.ext.get_or_default::<SessionState>();
        let had = std::mem::replace(&mut st.active, new.clone()).is_some();
        if let Some(acct) = sessions.account(user) {
            super::sync(acct);
        }
        had
    };
    match (had, new.is_some()) {
        (false, true) => p.count_active(true),
        (true, false) => p.count_active(false),
        _ => {}
    }
    if new.is_some() {
        p.mark(user);
    }
    p.effects(ctx, user, before);
    IqReply::Result(None)
}

/// Set (or decline) the default list (PRIV-09).
async fn set_default(p: &Rc<Privacy>, ctx: &Ctx, from: &Jid, name: Option<String>) -> IqReply {
    let user = from.bare_str().to_string();
    let before = snapshot(ctx, &user);
    let current = before.default.as_ref().map(|l| l.name.to_string());
    if current == name {
        return IqReply::Result(None);
    }
    if default_used_by_others(ctx, from) {
        return error(
            StanzaCondition::Conflict,
            "the default list applies to another of your sessions",
        );
    }
    let op = {
        let (user, name) = (user.clone(), name.clone());
        move |txn: &mut WriteTxn<'_>| -> Result<Result<Option<PrivacyList>, StanzaError>, StorageError> {
            let stored = txn.privacy(&user)?;
            let new = match &name {
                None => None,
                Some(n) => match stored.list(n) {
                    Some(l) => Some(l.clone()),
                    None => {
                        return Ok(Err(StanzaError::with_text(
                            StanzaCondition::ItemNotFound,
                            "no such list",
                        )))
                    }
                },
            };
            txn.set_privacy_default(&user, name.as_deref())?;
            Ok(Ok(new))
        }
    };
    let new = match ctx.storage().submit(op).await {
        Ok(Ok(new)) => new,
        Ok(Err(e)) => return IqReply::Error(e),
        Err(e) => return IqReply::Error(storage_failure("setting the default list", &user, &e)),
    };
    let old_blocked = blocked_of(before.default.as_deref());
    p.set_account_default(ctx, &user, new.as_ref().map(InForce::new));
    p.blocklist_diff(ctx, &user, &old_blocked, new.as_ref());
    p.effects(ctx, &user, before);
    IqReply::Result(None)
}

/// The JIDs the blocklist held, from a list in force.
fn blocked_of(l: Option<&InForce>) -> Vec<String> {
    l.map(|l| l.list.blocked().map(|j| j.into_owned()).collect())
        .unwrap_or_default()
}

/// Create or replace a list (PRIV-05..07, PRIV-19).
async fn put_list(p: &Rc<Privacy>, ctx: &Ctx, from: &Jid, new: PrivacyList) -> IqReply {
    let user = from.bare_str().to_string();
    let before = snapshot(ctx, &user);
    let bounds = p.config.clone();
    let op = {
        let (user, new) = (user.clone(), new.clone());
        move |txn: &mut WriteTxn<'_>| -> Result<Result<(), StanzaError>, StorageError> {
            let stored = txn.privacy(&user)?;
            if stored.list(&new.name).is_none() && stored.lists.len() >= bounds.max_lists {
                return Ok(Err(policy(format!(
                    "at most {} privacy lists (--max-privacy-lists)",
                    bounds.max_lists
                ))));
            }
            if let Err(e) = check_sizes(&new, &bounds) {
                return Ok(Err(e));
            }
            // PRIV-06: groups must be in the roster.
            let groups: Vec<&str> = new
                .items
                .iter()
                .filter_map(|i| match &i.what {
                    xmppd_storage::PrivacyMatch::Group(g) => Some(g.as_str()),
                    _ => None,
                })
                .collect();
            if !groups.is_empty() {
                let roster = txn.roster_items(&user)?;
                if let Some(g) = groups
                    .iter()
                    .find(|g| !roster.iter().any(|i| i.groups.iter().any(|x| x == *g)))
                {
                    return Ok(Err(StanzaError::with_text(
                        StanzaCondition::ItemNotFound,
                        format!("no roster group {g:?}"),
                    )));
                }
            }
            txn.put_privacy_list(&user, &new)?;
            Ok(Ok(()))
        }
    };
    match ctx.storage().submit(op).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return IqReply::Error(e),
        Err(e) => return IqReply::Error(storage_failure("storing a privacy list", &user, &e)),
    }
    let old_blocked = blocked_of(before.default.as_deref());
    let in_force = InForce::new(&new);
    let is_default = p.replace_in_force(ctx, &user, &in_force);
    if is_default {
        p.blocklist_diff(ctx, &user, &old_blocked, Some(&new));
    }
    p.push_list(ctx, &user, &new.name, false);
    p.effects(ctx, &user, before);
    IqReply::Result(None)
}

fn check_sizes(l: &PrivacyList, bounds: &super::PrivacyConfig) -> Result<(), StanzaError> {
    match bounds.over_bounds(l) {
        Some(why) => Err(policy(format!("the privacy list {why}"))),
        None => Ok(()),
    }
}

/// Remove a list (PRIV-10).
async fn remove_list(p: &Rc<Privacy>, ctx: &Ctx, from: &Jid, name: String) -> IqReply {
    let user = from.bare_str().to_string();
    let before = snapshot(ctx, &user);
    let is_default = before.default.as_ref().is_some_and(|d| *d.name == *name);
    if active_elsewhere(ctx, from, &name) || (is_default && default_used_by_others(ctx, from)) {
        return error(
            StanzaCondition::Conflict,
            "the list applies to another of your sessions",
        );
    }
    let op = {
        let (user, name) = (user.clone(), name.clone());
        move |txn: &mut WriteTxn<'_>| -> Result<Result<(), StanzaError>, StorageError> {
            if !txn.delete_privacy_list(&user, &name)? {
                return Ok(Err(StanzaError::with_text(
                    StanzaCondition::ItemNotFound,
                    "no such list",
                )));
            }
            if txn.privacy(&user)?.default.as_deref() == Some(name.as_str()) {
                txn.set_privacy_default(&user, None)?;
            }
            Ok(Ok(()))
        }
    };
    match ctx.storage().submit(op).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return IqReply::Error(e),
        Err(e) => return IqReply::Error(storage_failure("removing a privacy list", &user, &e)),
    }
    // The sender's own active list, if it was this one, is gone too.
    let had_active = {
        let mut sessions = ctx.sessions().borrow_mut();
        let had = from
            .resource()
            .and_then(|res| sessions.account_mut(&user)?.get_mut(res))
            .and_then(|r| r.ext.get_mut::<SessionState>())
            .filter(|st| st.active.as_ref().is_some_and(|l| *l.name == *name))
            .map(|st| st.active.take())
            .is_some();
        if let Some(acct) = sessions.account(&user) {
            super::sync(acct);
        }
        had
    };
    if had_active {
        p.count_active(false);
    }
    if is_default {
        let old_blocked = blocked_of(before.default.as_deref());
        p.set_account_default(ctx, &user, None);
        p.blocklist_diff(ctx, &user, &old_blocked, None);
    }
    p.push_list(ctx, &user, &name, false);
    p.effects(ctx, &user, before);
    IqReply::Result(None)
}

/// Block (`block`) or unblock JIDs (None: every blocked JID) in the default list
/// (XEP-0191 §3.3–3.5, §5).
async fn blocking(
    p: &Rc<Privacy>,
    ctx: &Ctx,
    from: &Jid,
    jids: Option<Vec<String>>,
    block: bool,
) -> IqReply {
    let user = from.bare_str().to_string();
    let before = snapshot(ctx, &user);
    let bounds = p.config.clone();
    let op = {
        let (user, jids) = (user.clone(), jids.clone());
        move |txn: &mut WriteTxn<'_>| -> Result<Result<Option<PrivacyList>, StanzaError>, StorageError> {
            let stored = txn.privacy(&user)?;
            let default = stored.default_list();
            let new = if block {
                let jids = jids.as_deref().unwrap_or_default();
                // Without a default list, a list of that name is taken over, else created.
                let base = default.or_else(|| stored.list(list::BLOCKLIST_NAME));
                if base.is_none() && stored.lists.len() >= bounds.max_lists {
                    return Ok(Err(policy(format!(
                        "at most {} privacy lists (--max-privacy-lists)",
                        bounds.max_lists
                    ))));
                }
                let new = list::with_blocked(base, jids);
                if let Err(e) = check_sizes(&new, &bounds) {
                    return Ok(Err(e));
                }
                Some(new)
            } else {
                default.map(|d| list::without_blocked(d, jids.as_deref()))
            };
            match &new {
                Some(l) if l.items.is_empty() => {
                    // Nothing left: no default list.
                    txn.delete_privacy_list(&user, &l.name)?;
                    txn.set_privacy_default(&user, None)?;
                    return Ok(Ok(None));
                }
                Some(l) => {
                    txn.put_privacy_list(&user, l)?;
                    if stored.default.as_deref() != Some(l.name.as_str()) {
                        txn.set_privacy_default(&user, Some(&l.name))?;
                    }
                }
                None => {}
            }
            Ok(Ok(new))
        }
    };
    let new = match ctx.storage().submit(op).await {
        Ok(Ok(new)) => new,
        Ok(Err(e)) => return IqReply::Error(e),
        Err(e) => return IqReply::Error(storage_failure("changing the blocklist", &user, &e)),
    };
    let changed_name = new
        .as_ref()
        .map(|l| l.name.clone())
        .or_else(|| before.default.as_ref().map(|d| d.name.to_string()));
    match &new {
        Some(l) => {
            let in_force = InForce::new(l);
            if !p.replace_in_force(ctx, &user, &in_force) {
                p.set_account_default(ctx, &user, Some(in_force));
            }
        }
        None => p.set_account_default(ctx, &user, None),
    }
    // XEP-0191 pushes carry the command's items; XEP-0016 clients learn the list changed.
    p.push_blocking(ctx, &user, block, jids.as_deref().unwrap_or_default());
    if let Some(name) = changed_name {
        p.push_list(ctx, &user, &name, true);
    }
    p.effects(ctx, &user, before);
    IqReply::Result(None)
}

impl Privacy {
    /// Set the account's default list in force (None: declined).
    fn set_account_default(&self, ctx: &Ctx, user: &str, new: Option<Rc<InForce>>) {
        let has = new.is_some();
        if let Some(acct) = ctx.sessions().borrow_mut().account_mut(user) {
            acct.ext.get_or_default::<AccountState>().default = new;
            super::sync(acct);
        }
        if has {
            self.mark(user);
        }
    }

    /// A list was replaced: the default and the sessions' active lists of that name now use
    /// `new` (PRIV-19). Returns whether it is the default list.
    fn replace_in_force(&self, ctx: &Ctx, user: &str, new: &Rc<InForce>) -> bool {
        let mut sessions = ctx.sessions().borrow_mut();
        let Some(acct) = sessions.account_mut(user) else {
            // No session here (cannot happen for a request from one): nothing in force.
            return false;
        };
        let mut is_default = false;
        if let Some(st) = acct.ext.get_mut::<AccountState>() {
            if st.default.as_ref().is_some_and(|d| d.name == new.name) {
                st.default = Some(new.clone());
                is_default = true;
            }
        }
        for r in acct.resources.iter_mut() {
            if let Some(st) = r.ext.get_mut::<SessionState>() {
                if st.active.as_ref().is_some_and(|a| a.name == new.name) {
                    st.active = Some(new.clone());
                }
            }
        }
        super::sync(acct);
        is_default
    }

    fn next_push_id(&self) -> String {
        let id = self.push_id.get().wrapping_add(1);
        self.push_id.set(id);
        format!("privacy-push-{id}")
    }

    /// PRIV-07: `<list name='x'/>` to every connected resource (only those that used
    /// XEP-0016 in this session when `users_only`).
    fn push_list(&self, ctx: &Ctx, user: &str, name: &str, users_only: bool) {
        let query = Element::new("query", NS_PRIVACY)
            .with_child(Element::new("list", NS_PRIVACY).with_attr("name", name));
        let sessions = ctx.sessions().borrow();
        let Some(acct) = sessions.account(user) else {
            return;
        };
        for r in acct
            .resources
            .iter()
            .filter(|r| !users_only || r.ext.get::<SessionState>().is_some_and(|s| s.privacy))
        {
            self.push(r, &query);
        }
    }

    /// BLOCK-03/08/09: the command to every resource that asked for the blocklist.
    fn push_blocking(&self, ctx: &Ctx, user: &str, block: bool, jids: &[String]) {
        let mut el = Element::new(if block { "block" } else { "unblock" }, NS_BLOCKING);
        for j in jids {
            el.push_child(Element::new("item", NS_BLOCKING).with_attr("jid", j.as_str()));
        }
        let sessions = ctx.sessions().borrow();
        let Some(acct) = sessions.account(user) else {
            return;
        };
        for r in acct
            .resources
            .iter()
            .filter(|r| r.ext.get::<SessionState>().is_some_and(|s| s.blocklist))
        {
            self.push(r, &el);
        }
    }

    /// A change of the default list made through XEP-0016 shows in the blocklist
    /// (XEP-0191 §5): pushes of what it added and removed.
    fn blocklist_diff(&self, ctx: &Ctx, user: &str, old: &[String], new: Option<&PrivacyList>) {
        let new: Vec<String> = new
            .map(|l| list::blocked(l).map(str::to_string).collect())
            .unwrap_or_default();
        let added: Vec<String> = new.iter().filter(|j| !old.contains(j)).cloned().collect();
        let removed: Vec<String> = old.iter().filter(|j| !new.contains(j)).cloned().collect();
        if !added.is_empty() {
            self.push_blocking(ctx, user, true, &added);
        }
        if !removed.is_empty() {
            self.push_blocking(ctx, user, false, &removed);
        }
    }

    fn push(&self, r: &crate::core::sessions::Resource, payload: &Element) {
        let id = self.next_push_id();
        r.handle.send_with(|out| {
            out.extend_from_slice(b"<iq type='set' id='");
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"' to='");
            xml::escape_attr(r.jid.as_str(), out);
            out.extend_from_slice(b"'>");
            payload.write_to(out, ns::CLIENT);
            out.extend_from_slice(b"</iq>");
        });
    }

    /// Presence effects of a change of the lists in force (PRIV-20, PRIV-21, BLOCK-05,
    /// BLOCK-08): for each available resource whose list changed, a contact that may see its
    /// presence (`from`/`both`) and is now denied `presence-out` gets unavailable, one that
    /// is allowed again gets its current presence; a contact whose presence it receives
    /// (`to`/`both`) and is now denied `presence-in` is shown unavailable to it, and one
    /// allowed again is probed.
    fn effects(&self, ctx: &Ctx, user: &str, before: Before) {
        struct Changed {
            jid: Jid,
            old: Option<Rc<InForce>>,
            new: Option<Rc<InForce>>,
            last: Option<Box<[u8]>>,
            /// Who got directed presence from it (not contacts).
            directed: Vec<Box<str>>,
            handle: Rc<crate::core::ClientHandle>,
        }
        let changed: Vec<Changed> = {
            let sessions = ctx.sessions().borrow();
            let Some(acct) = sessions.account(user) else {
                return;
            };
            acct.resources
                .iter()
                .filter(|r| {
                    r.priority.is_some() || !crate::modules::im::directed_presence(r).is_empty()
                })
                .filter_map(|r| {
                    let new = super::effective(acct, r).cloned();
                    let old = before
                        .lists
                        .iter()
                        .find(|(j, _)| *j == r.jid)
                        .and_then(|(_, l)| l.clone());
                    let same = match (&old, &new) {
                        (None, None) => true,
                        (Some(a), Some(b)) => Rc::ptr_eq(a, b),
                        _ => false,
                    };
                    (!same).then(|| Changed {
                        jid: r.jid.clone(),
                        old,
                        new,
                        last: crate::modules::im::last_presence(r).map(Into::into),
                        directed: crate::modules::im::directed_presence(r).to_vec(),
                        handle: r.handle.clone(),
                    })
                })
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        let roster = match ctx.storage().rosters().load(user) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user, error = %e,
                    "privacy change: contacts not told (reading the roster failed)");
                return;
            }
        };
        // Every contact may be looked up once per changed session: index the roster once.
        let index: ahash::AHashMap<&str, &RosterItem> =
            roster.items.iter().map(|i| (i.jid.as_str(), i)).collect();
        let mut lookup = |peer: &str| -> Result<RosterFacts, ()> {
            let item = index.get(peer).copied();
            Ok(RosterFacts {
                subscription: item.map(|i| i.subscription),
                groups: item.map(|i| i.groups.clone()).unwrap_or_default(),
            })
        };
        for c in &changed {
            let allows =
                |l: &Option<Rc<InForce>>,
                 what: What,
                 peer: &str,
                 lookup: &mut dyn FnMut(&str) -> Result<RosterFacts, ()>| {
                    l.as_ref()
                        .is_none_or(|l| !l.list.check(what, JidStr::trusted(peer), lookup).denies())
                };
            // PRIV-20: whoever could see the session's presence (contacts with `from` or
            // `both`, and entities it sent directed presence to) and now may not gets
            // unavailable from it; whoever may again gets its current presence.
            let presence_out =
                |to: &str, lookup: &mut dyn FnMut(&str) -> Result<RosterFacts, ()>| {
                    let was = allows(&c.old, What::PresenceOut, to, lookup);
                    let is = allows(&c.new, What::PresenceOut, to, lookup);
                    let route = Route::new(&c.jid, JidStr::trusted(to));
                    if was && !is {
                        let mut out = Vec::with_capacity(96);
                        write_presence(
                            &mut out,
                            PresenceType::Unavailable,
                            c.jid.as_str(),
                            Some(to),
                        );
                        ctx.route(StanzaType::Presence(PresenceType::Unavailable), route, &out);
                    } else if !was && is {
                        if let Some(last) = &c.last {
                            ctx.route(StanzaType::Presence(PresenceType::Available), route, last);
                        }
                    }
                };
            for to in &c.directed {
                presence_out(to, &mut lookup);
            }
            for item in &roster.items {
                let contact = item.jid.as_str();
                if matches!(item.subscription, Subscription::From | Subscription::Both) {
                    presence_out(contact, &mut lookup);
                }
                if matches!(item.subscription, Subscription::To | Subscription::Both) {
                    let was = allows(&c.old, What::PresenceIn, contact, &mut lookup);
                    let is = allows(&c.new, What::PresenceIn, contact, &mut lookup);
                    if was && !is {
                        let mut out = Vec::with_capacity(96);
                        write_presence(
                            &mut out,
                            PresenceType::Unavailable,
                            contact,
                            Some(c.jid.as_str()),
                        );
                        c.handle.send(&out);
                    } else if !was && is {
                        let mut out = Vec::with_capacity(96);
                        write_presence(&mut out, PresenceType::Probe, user, Some(contact));
                        let route = Route::new(JidStr::trusted(user), JidStr::trusted(contact));
                        ctx.route(StanzaType::Presence(PresenceType::Probe), route, &out);
                    }
                }
            }
        }
    }
}
