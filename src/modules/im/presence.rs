//! RFC 6121 §3 and §4: presence broadcast, probes, directed presence, and the processing of
//! subscription stanzas on both sides.

use std::rc::Rc;

use super::roster::{item_after, send_subscription};
use super::subscription::{self, InboundAction, SubKind, SubState};
use super::{sub_state, Change, Im, ImResource};
use crate::core::events::{Audience, Available, PresenceOut, ResourceAvailable};
use crate::core::sessions::Resource;
use crate::core::{storage_failure, Ctx, Flow, FromClient, Inbound, Pending, Refused, Route};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::{bare_of, Jid, JidStr};
use crate::xmpp::ns;
use crate::xmpp::stanza::{write_presence, Kind, PresenceType, StanzaType};

/// Most entities one resource's directed presence is remembered for (RFC 6121 §4.6.3);
/// beyond it presence is still routed but not withdrawn automatically.
const MAX_DIRECTED: usize = 1000;

fn kind_of(ty: PresenceType) -> Option<SubKind> {
    match ty {
        PresenceType::Subscribe => Some(SubKind::Subscribe),
        PresenceType::Subscribed => Some(SubKind::Subscribed),
        PresenceType::Unsubscribe => Some(SubKind::Unsubscribe),
        PresenceType::Unsubscribed => Some(SubKind::Unsubscribed),
        _ => None,
    }
}

/// RFC 6121 §4.7.2.3: a missing priority is 0; otherwise an integer from -128 to 127
/// (None when it is not).
pub fn priority_of(presence: &Element) -> Option<i8> {
    match presence.child("priority", &presence.ns) {
        None => Some(0),
        Some(p) => p.text().trim().parse::<i8>().ok(),
    }
}

/// The contacts among `targets` that may get presence of type `ty` from `from`: the
/// `PresenceOut` chain narrows them (privacy lists' `presence-out`); with no link armed it
/// costs nothing.
fn allowed<'a>(
    ctx: &Ctx,
    from: JidStr<'a>,
    ty: PresenceType,
    targets: Vec<&'a str>,
) -> Vec<&'a str> {
    let chain = ctx.registry().chain::<PresenceOut>();
    if targets.is_empty() || !chain.wants(Kind::Presence) {
        return targets;
    }
    let audience = Audience {
        from,
        ty,
        to: std::cell::RefCell::new(targets),
    };
    chain.run(ctx, Kind::Presence, &audience);
    audience.to.into_inner()
}

/// Presence a bound client sent (stamped with its full JID).
struct ClientPresence<'a> {
    from: &'a Jid,
    ty: PresenceType,
    to: Option<&'a Jid>,
    id: Option<&'a str>,
    stanza: &'a [u8],
}

/// Presence from a bound client.
pub(super) fn from_client(
    im: &Rc<Im>,
    ctx: &Ctx,
    s: &FromClient<'_>,
    ty: PresenceType,
) -> Option<Pending> {
    let p = &ClientPresence {
        from: s.from,
        ty,
        to: s.to,
        id: s.id,
        stanza: s.stamped,
    };
    match (p.ty, p.to) {
        (PresenceType::Available | PresenceType::Unavailable, None) => broadcast(im, ctx, p),
        (PresenceType::Available | PresenceType::Unavailable, Some(to)) => {
            directed(im, ctx, p, to);
            None
        }
        (ty, Some(to)) if kind_of(ty).is_some() => outbound_subscription(im, ctx, p, to),
        (PresenceType::Error, Some(to)) => {
            ctx.route(StanzaType::Presence(p.ty), Route::new(p.from, to), p.stanza);
            None
        }
        (PresenceType::Probe, Some(to)) => {
            client_probe(im, ctx, p, to);
            None
        }
        // Subscription stanzas and errors without an addressee mean nothing.
        _ => None,
    }
}

/// A probe sent by a client (RFC 6121 §4.3): processed on the client's behalf when the user
/// is subscribed to the contact's presence (`to`/`both`), so that the contact's server answers
/// the probing resource with the contact's current presence, as Prosody and ejabberd do.
/// Otherwise ignored (IM-PRES-16): the answer could only be `unsubscribed`, which the user's
/// own client must not be able to trigger.
fn client_probe(im: &Rc<Im>, ctx: &Ctx, p: &ClientPresence<'_>, to: &Jid) {
    if to.resource().is_some() {
        return;
    }
    let subscribed = match im.roster(ctx, p.from.bare_str()) {
        Ok(roster) => roster.borrow().state_of(to.bare_str()).to,
        Err(e) => {
            tracing::warn!(user = p.from.bare_str(), error = %e,
                "probe from a client dropped: reading its roster failed");
            return;
        }
    };
    if subscribed {
        let route = Route::new(p.from, JidStr::trusted(to.bare_str()));
        ctx.route(StanzaType::Presence(PresenceType::Probe), route, p.stanza);
    }
}

/// Presence without `to` (§4.2, §4.4, §4.5): update the resource, send it to the account's
/// available resources and to contacts with a `from`/`both` subscription; on initial presence
/// also probe contacts, redeliver pending subscription requests and run the availability hooks.
fn broadcast(im: &Rc<Im>, ctx: &Ctx, p: &ClientPresence<'_>) -> Option<Pending> {
    let from = p.from;
    let (user, resource) = (from.bare_str(), from.resource()?);
    let priority = if p.ty == PresenceType::Available {
        match xml::parse_element(
            p.stanza,
            &StreamNs::new(ns::CLIENT),
            &ctx.config().xml_limits(),
        )
        .ok()
        .and_then(|el| priority_of(&el))
        {
            Some(prio) => Some(prio),
            None => {
                // IM-PRES-12
                ctx.bounce(
                    Refused {
                        ty: StanzaType::Presence(p.ty),
                        id: p.id,
                        route: Route::new(from, JidStr::trusted(user)),
                    },
                    StanzaError::with_text(
                        StanzaCondition::BadRequest,
                        "priority must be an integer from -128 to 127",
                    ),
                );
                return None;
            }
        }
    } else {
        None
    };

    // Own resources first (IM-PRES-03/04/09).
    let (was_available, directed) = {
        let mut sessions = ctx.sessions().borrow_mut();
        let account = sessions.account_mut(user)?;
        let me = account.get_mut(resource)?;
        let was_available = me.priority.is_some();
        me.priority = priority;
        let st = me.ext.get_or_default::<ImResource>();
        st.last_presence = priority.map(|_| p.stanza.into());
        let directed = if priority.is_none() {
            std::mem::take(&mut st.directed)
        } else {
            Vec::new()
        };
        let me_handle = me.handle.clone();
        for r in account.resources.iter() {
            let to_self = Rc::ptr_eq(&r.handle, &me_handle);
            if to_self || r.priority.is_some() {
                r.handle.send(p.stanza);
            }
            if !to_self && !was_available && priority.is_some() {
                if let Some(sibling) = ImResource::of(r).and_then(|s| s.last_presence.as_ref()) {
                    me_handle.send(sibling);
                }
            }
        }
        (was_available, directed)
    };
    let ty = StanzaType::Presence(p.ty);
    // IM-PRES-09/11: withdraw directed presence, also from a resource that never sent initial
    // presence (edge case 17: e.g. a room joined before going available).
    let targets: Vec<&str> = directed.iter().map(|d| &**d).collect();
    ctx.fanout(ty, from.into(), &targets, p.stanza);
    if !was_available && priority.is_none() {
        // Unavailable from an unavailable resource: nothing changes for contacts.
        return None;
    }

    let roster = match im.roster(ctx, user) {
        Ok(r) => r,
        Err(e) => {
            // Issue 8: contacts cannot be found, so the client learns its presence did not
            // reach them; its own resources have it, and what waits for it still comes.
            let err = storage_failure("presence broadcast: reading the roster", user, &e);
            let route = Route::new(from, JidStr::trusted(user));
            ctx.bounce(
                Refused {
                    ty,
                    id: p.id,
                    route,
                },
                err,
            );
            return match (priority, was_available) {
                (Some(prio), false) => available(ctx, from, prio),
                _ => None,
            };
        }
    };
    let roster = roster.borrow();
    // IM-PRES-02/08/09: contacts that may see the user's presence.
    let audience = allowed(ctx, from.into(), p.ty, roster.presence_audience());
    ctx.fanout(ty, from.into(), &audience, p.stanza);

    let prio = priority?;
    if was_available {
        return None;
    }
    // IM-PRES-01: probes from the bare JID to contacts whose presence the user receives.
    for contact in roster.presence_sources() {
        let mut out = Vec::with_capacity(96);
        write_presence(&mut out, PresenceType::Probe, user, Some(contact));
        let route = Route::new(JidStr::trusted(user), JidStr::trusted(contact));
        ctx.route(StanzaType::Presence(PresenceType::Probe), route, &out);
    }
    // IM-SUB-06/07: pending subscription requests, again, until answered.
    if let Some(handle) = ctx
        .sessions()
        .borrow()
        .account(user)
        .and_then(|a| a.get(resource))
        .map(|r| r.handle.clone())
    {
        for stanza in roster.pending_in.values() {
            handle.send(stanza);
        }
    }
    drop(roster);
    available(ctx, from, prio)
}

/// Raise `ResourceAvailable` (offline delivery waits for it).
fn available(ctx: &Ctx, jid: &Jid, priority: i8) -> Option<Pending> {
    ctx.registry()
        .chain::<ResourceAvailable>()
        .notify(ctx, &Available { jid, priority })
}

/// Directed presence (§4.6): routed only to its addressee, and remembered so that the
/// addressee learns when the resource goes away.
fn directed(im: &Rc<Im>, ctx: &Ctx, p: &ClientPresence<'_>, to: &Jid) {
    let from = p.from;
    ctx.route(StanzaType::Presence(p.ty), Route::new(from, to), p.stanza);
    let Some(resource) = from.resource() else {
        return;
    };
    // When the roster cannot be read, the presence is remembered as directed: the addressee
    // then gets unavailable when the resource goes (at worst twice), never a stale presence.
    let is_audience = match im.roster(ctx, from.bare_str()) {
        Ok(roster) => roster.borrow().state_of(to.bare_str()).from,
        Err(e) => {
            tracing::warn!(user = from.bare_str(), error = %e,
                "directed presence: reading the roster failed");
            false
        }
    };
    let mut sessions = ctx.sessions().borrow_mut();
    let Some(me) = sessions
        .account_mut(from.bare_str())
        .and_then(|a| a.get_mut(resource))
    else {
        return;
    };
    let directed = &mut me.ext.get_or_default::<ImResource>().directed;
    let pos = directed.iter().position(|d| &**d == to.as_str());
    match (p.ty, pos) {
        (PresenceType::Available, None) if !is_audience && directed.len() < MAX_DIRECTED => {
            directed.push(to.as_str().into());
        }
        (PresenceType::Unavailable, Some(i)) => {
            directed.swap_remove(i);
        }
        _ => {}
    }
}

/// A resource went away (§4.5.2, IM-PRES-10): if it was available, everyone who could see it
/// gets unavailable presence from it.
pub(super) fn session_ended(im: &Rc<Im>, ctx: &Ctx, resource: &Resource) {
    let jid = &resource.jid;
    let user = jid.bare_str();
    let directed = ImResource::of(resource).map_or(&[][..], |s| &s.directed[..]);
    if resource.priority.is_some() || !directed.is_empty() {
        let mut out = Vec::with_capacity(80);
        write_presence(&mut out, PresenceType::Unavailable, jid.as_str(), None);
        let ty = StanzaType::Presence(PresenceType::Unavailable);
        // Directed presence is withdrawn even from a resource that was never available
        // (edge case 17).
        let targets: Vec<&str> = directed.iter().map(|d| &**d).collect();
        ctx.fanout(ty, jid.into(), &targets, &out);
        if resource.priority.is_some() {
            if let Some(account) = ctx.sessions().borrow().account(user) {
                for r in account.available() {
                    r.handle.send(&out);
                }
            }
            match im.roster(ctx, user) {
                Ok(roster) => {
                    let roster = roster.borrow();
                    let audience = allowed(
                        ctx,
                        jid.into(),
                        PresenceType::Unavailable,
                        roster.presence_audience(),
                    );
                    ctx.fanout(ty, jid.into(), &audience, &out)
                }
                Err(e) => tracing::warn!(user, error = %e,
                    "contacts not told of a resource going away: reading the roster failed"),
            }
        }
    }
    im.evict(ctx, user);
}

/// Send unavailable presence from each of `user`'s available resources to `contact`
/// (IM-SUB-13/14, IM-ROSTER-10).
pub(super) fn withdraw(ctx: &Ctx, user: &str, contact: &str) {
    let resources: Vec<String> = match ctx.sessions().borrow().account(user) {
        Some(a) => a.available().map(|r| r.jid.as_str().to_string()).collect(),
        None => return,
    };
    for full in resources {
        let mut out = Vec::with_capacity(96);
        write_presence(&mut out, PresenceType::Unavailable, &full, Some(contact));
        let route = Route::new(JidStr::trusted(&full), JidStr::trusted(contact));
        ctx.route(StanzaType::Presence(PresenceType::Unavailable), route, &out);
    }
}

/// Send the current presence of each of `user`'s available resources to `to`
/// (IM-SUB-09, IM-PRES-06).
fn share(ctx: &Ctx, user: &str, to: &str) {
    let presences: Vec<(String, Box<[u8]>)> = match ctx.sessions().borrow().account(user) {
        Some(a) => a
            .available()
            .filter_map(|r| {
                let last = ImResource::of(r)?.last_presence.clone()?;
                Some((r.jid.as_str().to_string(), last))
            })
            .collect(),
        None => return,
    };
    for (full, stanza) in presences {
        let from = JidStr::trusted(&full);
        if allowed(ctx, from, PresenceType::Available, vec![to]).is_empty() {
            continue;
        }
        let route = Route::new(from, JidStr::trusted(to));
        ctx.route(
            StanzaType::Presence(PresenceType::Available),
            route,
            &stanza,
        );
    }
}

/// Rewrite a subscription stanza's addresses to bare JIDs (IM-SUB-01, IM-SUB-16).
fn restamp(stanza: &[u8], from: &str, to: &str, limits: &xml::Limits) -> Option<Vec<u8>> {
    let ns = StreamNs::new(ns::CLIENT);
    let head = xml::scan_stanza(stanza, &ns, limits).ok()?;
    let mut out = Vec::with_capacity(stanza.len() + 32);
    xml::write_with_attrs(&head, &[("from", from), ("to", to)], &mut out);
    Some(out)
}

/// A subscription state change of one roster item, as the RFC 6121 §3 tables computed it.
struct SubWrite<'a> {
    user: &'a str,
    contact: &'a str,
    /// The item before.
    existing: Option<xmppd_storage::RosterItem>,
    /// An inbound request was pending before.
    pending_in: bool,
    /// The state after.
    after: SubState,
    /// The pre-approval after.
    approved: bool,
}

/// Write a subscription change, in either direction (the one place that does): the roster
/// item created, updated or removed with a new roster version, and the stored inbound
/// request kept (`request`, the stanza to store, when one starts pending) or deleted. Returns
/// what changed, for the cache and the pushes.
fn write_subscription(
    txn: &mut xmppd_storage::WriteTxn<'_>,
    w: SubWrite<'_>,
    request: Option<Vec<u8>>,
) -> Result<Change, xmppd_storage::StorageError> {
    let mut change = Change {
        contact: w.contact.to_string(),
        ..Change::default()
    };
    let item = item_after(w.existing.clone(), w.contact, w.after, w.approved);
    if item != w.existing {
        match &item {
            Some(i) => txn.put_roster_item(w.user, i)?,
            None => {
                txn.delete_roster_item(w.user, w.contact)?;
            }
        }
        change.version = Some(txn.bump_roster_version(w.user)?);
        change.item = Some(item);
    }
    match (w.pending_in, w.after.pending_in, request) {
        (false, true, Some(stanza)) => {
            txn.put_sub_request(w.user, w.contact, &stanza)?;
            change.pending_in = Some(Some(stanza));
        }
        (true, false, _) => {
            txn.delete_sub_request(w.user, w.contact)?;
            change.pending_in = Some(None);
        }
        _ => {}
    }
    Ok(change)
}

/// What an outbound subscription stanza did.
struct OutboundResult {
    routed: bool,
    before: SubState,
    refused: bool,
}

/// Table A (§3, IM-SUBTAB-01): a subscription stanza from the user.
fn outbound_subscription(
    im: &Rc<Im>,
    ctx: &Ctx,
    p: &ClientPresence<'_>,
    to: &Jid,
) -> Option<Pending> {
    let kind = kind_of(p.ty)?;
    let user = p.from.bare_str().to_string();
    let contact = to.bare_str().to_string();
    let stanza = restamp(p.stanza, &user, &contact, &ctx.config().xml_limits())?;
    let max_items = im.limits.items;
    let op = {
        let (user, contact) = (user.clone(), contact.clone());
        move |txn: &mut xmppd_storage::WriteTxn<'_>| {
            let existing = txn.roster_item(&user, &contact)?;
            let pending_in = txn.sub_request(&user, &contact)?.is_some();
            let before = sub_state(existing.as_ref(), pending_in);
            let (routed, after) = subscription::outbound(before, kind);
            let mut approved = existing.as_ref().is_some_and(|i| i.approved);
            match kind {
                // IM-SUB-15: subscribed with no request pending pre-approves.
                SubKind::Subscribed if !routed && !before.from => approved = true,
                // Unsubscribed withdraws a pre-approval (§3.4).
                SubKind::Unsubscribed if !routed => approved = false,
                _ => {}
            }
            if after.from {
                approved = false;
            }
            let mut change = Change {
                contact: contact.clone(),
                ..Change::default()
            };
            let creates =
                existing.is_none() && item_after(None, &contact, after, approved).is_some();
            if creates && txn.roster_len(&user)? >= max_items {
                let r = OutboundResult {
                    routed: false,
                    before,
                    refused: true,
                };
                return Ok((change, r));
            }
            let sub = SubWrite {
                user: &user,
                contact: &contact,
                existing,
                pending_in,
                after,
                approved,
            };
            change = write_subscription(txn, sub, None)?;
            Ok((
                change,
                OutboundResult {
                    routed,
                    before,
                    refused: false,
                },
            ))
        }
    };
    let full = p.from.as_str().to_string();
    let ty = StanzaType::Presence(p.ty);
    let owner = user.clone();
    let id = p.id.map(str::to_string);
    let failed = (full.clone(), contact.clone(), id.clone());
    let after = move |ctx: &Ctx, r: &OutboundResult| {
        if r.refused {
            let route = Route::new(JidStr::trusted(&full), JidStr::trusted(&contact));
            let id = id.as_deref();
            ctx.bounce(
                Refused { ty, id, route },
                StanzaError::with_text(StanzaCondition::NotAllowed, "roster full"),
            );
            return;
        }
        if !r.routed {
            return;
        }
        // IM-SUB-01/02/03: pushed (in apply) before it is routed.
        let route = Route::new(JidStr::trusted(&user), JidStr::trusted(&contact));
        ctx.route(ty, route, &stanza);
        match kind {
            // IM-SUB-09: the contact now sees the user.
            SubKind::Subscribed => share(ctx, &user, &contact),
            // IM-SUB-14: the contact no longer sees the user.
            SubKind::Unsubscribed if r.before.from => withdraw(ctx, &user, &contact),
            _ => {}
        }
    };
    // Take the account's lock now, so that what arrives next for it waits behind this.
    let done = im.clone().mutate(ctx.clone(), owner.clone(), op, after);
    let ctx = ctx.clone();
    Some(Box::pin(async move {
        if let Err(e) = done.await {
            // Issue 8: nothing was recorded or routed; the client learns it, never silence.
            let (full, contact, id) = failed;
            let err = storage_failure("an outbound subscription change", &owner, &e);
            let route = Route::new(JidStr::trusted(&full), JidStr::trusted(&contact));
            let id = id.as_deref();
            ctx.bounce(Refused { ty, id, route }, err);
        }
    }))
}

/// Presence for a local account on its home shard.
pub(super) fn inbound(im: &Rc<Im>, ctx: &Ctx, p: &Inbound<'_>) -> Flow {
    let StanzaType::Presence(ty) = p.ty else {
        return Flow::Continue;
    };
    match ty {
        PresenceType::Probe => {
            probe(im, ctx, p);
            Flow::Handled(None)
        }
        t if kind_of(t).is_some() => Flow::Handled(inbound_subscription(im, ctx, p, t)),
        // Available, unavailable and errors follow the delivery rules (IM-PRES-14/15/18), in
        // order behind any subscription change still being committed for the account
        // (RFC 6120 §10.1: a contact's `subscribed` must not be overtaken by its presence).
        // With none pending, the router delivers it by those rules now.
        _ => match im.pending_lock(p.route.to.bare().as_str()) {
            None => Flow::Continue,
            Some(lock) => {
                let (ctx, ty, stanza) = (ctx.clone(), p.ty, p.stanza.to_vec());
                let (to, from) = (p.route.to.to_string(), p.route.from.to_string());
                let im = im.clone();
                Flow::Handled(Some(Box::pin(async move {
                    let permit = lock.acquire_static_permit(1).await;
                    let route = Route::new(JidStr::trusted(&from), JidStr::trusted(&to));
                    ctx.deliver_to_sessions(ty, route, &stanza);
                    drop(permit);
                    im.release_lock(bare_of(&to), lock);
                })))
            }
        },
    }
}

/// A probe (§4.3.2): the latest presence of each available resource for an authorized
/// prober, unavailable when there is none, and `unsubscribed` for anyone else (IM-PRES-05..07,
/// 17).
///
/// When storage fails the probe is dropped (and logged): an answer could only be a guess, and
/// `unsubscribed` would cancel a subscription the prober really has (issue 8).
fn probe(im: &Rc<Im>, ctx: &Ctx, p: &Inbound<'_>) {
    let user = p.route.to.bare().as_str();
    let prober = p.route.from.as_str();
    let authorized = match ctx.account_exists(user) {
        Ok(false) => false,
        Ok(true) => match im.roster(ctx, user) {
            Ok(roster) => roster.borrow().state_of(bare_of(prober)).from,
            Err(e) => {
                tracing::warn!(user, prober, error = %e,
                    "probe dropped: reading the roster failed");
                return;
            }
        },
        Err(e) => {
            tracing::warn!(user, prober, error = %e, "probe dropped: account lookup failed");
            return;
        }
    };
    if !authorized {
        send_subscription(ctx, user, bare_of(prober), PresenceType::Unsubscribed);
        return;
    }
    let online = ctx
        .sessions()
        .borrow()
        .account(user)
        .is_some_and(|a| a.available().next().is_some());
    if online {
        share(ctx, user, prober);
    } else {
        let mut out = Vec::with_capacity(96);
        write_presence(&mut out, PresenceType::Unavailable, user, Some(prober));
        let route = Route::new(JidStr::trusted(user), p.route.from);
        ctx.route(StanzaType::Presence(PresenceType::Unavailable), route, &out);
    }
}

/// What an inbound subscription stanza did.
struct InboundResult {
    action: InboundAction,
    before: SubState,
    refused: bool,
}

/// Table B (§3, IM-SUBTAB-02): a subscription stanza from a contact arrives for the user.
fn inbound_subscription(
    im: &Rc<Im>,
    ctx: &Ctx,
    p: &Inbound<'_>,
    ty: PresenceType,
) -> Option<Pending> {
    let kind = kind_of(ty)?;
    let user = p.route.to.bare().as_str().to_string();
    let contact = p.route.from.bare().as_str().to_string();
    match ctx.account_exists(&user) {
        Ok(true) => {}
        Ok(false) => {
            if kind == SubKind::Subscribe {
                send_subscription(ctx, &user, &contact, PresenceType::Unsubscribed);
            }
            return None;
        }
        // Issue 8: not known to be missing, so never `unsubscribed` (it would cancel the
        // contact's real subscription); the sender gets an error that changes no state.
        Err(e) => {
            let err = storage_failure("an inbound subscription: account lookup", &user, &e);
            let route = Route::new(JidStr::trusted(&contact), JidStr::trusted(&user));
            ctx.bounce(
                Refused {
                    ty: p.ty,
                    id: None,
                    route,
                },
                err,
            );
            return None;
        }
    }
    // IM-SUB-16: addressed to the bare JID whatever the sender used.
    let stanza = restamp(p.stanza, &contact, &user, &ctx.config().xml_limits())?;
    let max_requests = im.limits.requests;
    let op = {
        let (user, contact, stored) = (user.clone(), contact.clone(), stanza.clone());
        move |txn: &mut xmppd_storage::WriteTxn<'_>| {
            let existing = txn.roster_item(&user, &contact)?;
            let pending_in = txn.sub_request(&user, &contact)?.is_some();
            let before = sub_state(existing.as_ref(), pending_in);
            let (mut action, mut after) = subscription::inbound(before, kind);
            let mut approved = existing.as_ref().is_some_and(|i| i.approved);
            let mut change = Change {
                contact: contact.clone(),
                ..Change::default()
            };
            if kind == SubKind::Subscribe && action == InboundAction::Deliver {
                if approved {
                    // IM-SUB-05: pre-approved.
                    action = InboundAction::AutoReply;
                    after.from = true;
                    after.pending_in = false;
                    approved = false;
                } else if txn.sub_request_count(&user)? >= max_requests {
                    let r = InboundResult {
                        action: InboundAction::Drop,
                        before,
                        refused: true,
                    };
                    return Ok((change, r));
                }
            }
            let sub = SubWrite {
                user: &user,
                contact: &contact,
                existing,
                pending_in,
                after,
                approved,
            };
            // IM-SUB-06: a request is kept until answered, delivered again at each login.
            change = write_subscription(txn, sub, Some(stored))?;
            Ok((
                change,
                InboundResult {
                    action,
                    before,
                    refused: false,
                },
            ))
        }
    };
    let pty = StanzaType::Presence(ty);
    let owner = user.clone();
    let failed = contact.clone();
    let after = move |ctx: &Ctx, r: &InboundResult| {
        let route = Route::new(JidStr::trusted(&contact), JidStr::trusted(&user));
        if r.refused {
            ctx.bounce(
                Refused {
                    ty: pty,
                    id: None,
                    route,
                },
                StanzaError::with_text(
                    StanzaCondition::ResourceConstraint,
                    "too many pending subscription requests",
                ),
            );
            return;
        }
        match r.action {
            InboundAction::Deliver => {
                ctx.deliver_to_sessions(pty, route, &stanza);
                // IM-SUB-13: the contact no longer sees the user.
                if kind == SubKind::Unsubscribe && r.before.from {
                    withdraw(ctx, &user, &contact);
                }
            }
            // IM-SUB-04/05: answered on the user's behalf, not delivered.
            InboundAction::AutoReply => {
                send_subscription(ctx, &user, &contact, PresenceType::Subscribed);
                if !r.before.from {
                    share(ctx, &user, &contact);
                }
            }
            InboundAction::Drop => {}
        }
    };
    // Take the account's lock now, so that what arrives next for it waits behind this.
    let done = im.clone().mutate(ctx.clone(), owner.clone(), op, after);
    let ctx = ctx.clone();
    Some(Box::pin(async move {
        if let Err(e) = done.await {
            // Issue 8: nothing changed here; the sender learns it, never silence.
            let err = storage_failure("an inbound subscription change", &owner, &e);
            let route = Route::new(JidStr::trusted(&failed), JidStr::trusted(&owner));
            ctx.bounce(
                Refused {
                    ty: pty,
                    id: None,
                    route,
                },
                err,
            );
        }
    }))
}
