//! RFC 6121 §2: roster get, set and remove, versioning (§2.6), and roster pushes.

use std::rc::Rc;

use xmppd_storage::{RosterItem, Subscription};

use super::{sub_state, subscription_of, Change, Im, ImResource, NS_ROSTER};
use crate::core::{storage_failure, Ctx, IqReply, IqRequest, Route};
use crate::xml::{self, Element};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::{Jid, JidStr};
use crate::xmpp::ns;
use crate::xmpp::stanza::{write_presence, PresenceType, StanzaType};

/// `<item/>` for a roster result or push.
pub(super) fn item_element(item: &RosterItem) -> Element {
    let sub = match item.subscription {
        Subscription::None => "none",
        Subscription::To => "to",
        Subscription::From => "from",
        Subscription::Both => "both",
    };
    let mut e = Element::new("item", NS_ROSTER)
        .with_attr("jid", item.jid.as_str())
        .with_attr("subscription", sub);
    if let Some(name) = &item.name {
        e.set_attr("name", name.as_str());
    }
    if item.ask {
        e.set_attr("ask", "subscribe");
    }
    if item.approved {
        e.set_attr("approved", "true");
    }
    for g in &item.groups {
        e.push_child(Element::new("group", NS_ROSTER).with_text(g.as_str()));
    }
    e
}

fn error(cond: StanzaCondition, text: &str) -> IqReply {
    IqReply::Error(StanzaError::with_text(cond, text))
}

/// A roster get (§2.2, §2.6): the full roster with its version, or an empty result when the
/// client's version is current. The requesting resource becomes "interested".
pub(super) fn get(im: &Rc<Im>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    // IM-ROSTER-08 / IM-IQ-03
    if !req.own() {
        return error(StanzaCondition::Forbidden, "not your roster");
    }
    let user = req.from.bare_str();
    let client_ver = req.payload.attr("ver");
    if let Some(resource) = req.from.resource() {
        let mut sessions = ctx.sessions().borrow_mut();
        if let Some(r) = sessions.account_mut(user).and_then(|a| a.get_mut(resource)) {
            let st = r.ext.get_or_default::<ImResource>();
            st.interested = true;
            st.rosterver = client_ver.is_some();
        }
    }
    // Issue 8: a roster that cannot be read is an error, never an empty roster (a client
    // would take it as the truth and, with versioning, keep it).
    let roster = match im.roster(ctx, user) {
        Ok(r) => r,
        Err(e) => return IqReply::Error(storage_failure("reading the roster", user, &e)),
    };
    let roster = roster.borrow();
    let ver = roster.version.to_string();
    // IM-RVER-03: nothing changed since the client's version.
    if client_ver == Some(ver.as_str()) {
        return IqReply::Result(None);
    }
    // IM-RVER-02/04/06, IM-ROSTER-01
    let mut q = Element::new("query", NS_ROSTER).with_attr("ver", ver);
    for item in roster.items.values() {
        q.push_child(item_element(item));
    }
    IqReply::Result(Some(q))
}

/// A validated roster set.
struct SetRequest {
    jid: Jid,
    remove: bool,
    name: Option<String>,
    groups: Vec<String>,
}

/// RFC 6121 §2.3.3 / §2.5.3 validation: exactly one item, a bare JID, a known subscription
/// value, bounded name and groups without duplicates.
fn validate(im: &Im, payload: &Element) -> Result<SetRequest, IqReply> {
    let mut items = payload.elements().filter(|e| e.is("item", NS_ROSTER));
    let (Some(item), None) = (items.next(), items.next()) else {
        // IM-ROSTER-05
        return Err(error(
            StanzaCondition::BadRequest,
            "a roster set carries exactly one item",
        ));
    };
    if payload.elements().count() != 1 {
        return Err(error(
            StanzaCondition::BadRequest,
            "a roster set carries exactly one item",
        ));
    }
    // IM-ROSTER-12
    let jid = match item.attr("jid").map(Jid::parse) {
        Some(Ok(j)) => j,
        Some(Err(_)) => return Err(error(StanzaCondition::JidMalformed, "invalid jid")),
        None => return Err(error(StanzaCondition::BadRequest, "missing jid")),
    };
    if !jid.is_bare() {
        return Err(error(
            StanzaCondition::BadRequest,
            "roster items are bare JIDs",
        ));
    }
    // IM-ROSTER-07: values other than "remove" are ignored; undefined values are malformed.
    let remove = match item.attr("subscription") {
        None | Some("none" | "to" | "from" | "both") => false,
        Some("remove") => true,
        Some(_) => {
            return Err(error(
                StanzaCondition::BadRequest,
                "unknown subscription value",
            ))
        }
    };
    let name = item
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if name.as_ref().is_some_and(|n| n.len() > im.limits.text) {
        return Err(error(StanzaCondition::NotAcceptable, "name too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for g in item.elements().filter(|e| e.is("group", NS_ROSTER)) {
        let text = g.text();
        // IM-ROSTER-06
        if text.is_empty() {
            return Err(error(StanzaCondition::NotAcceptable, "empty group"));
        }
        if text.len() > im.limits.text {
            return Err(error(StanzaCondition::NotAcceptable, "group name too long"));
        }
        if groups.contains(&text) {
            return Err(error(StanzaCondition::BadRequest, "duplicate group"));
        }
        groups.push(text);
    }
    if groups.len() > im.limits.groups {
        return Err(error(StanzaCondition::NotAcceptable, "too many groups"));
    }
    Ok(SetRequest {
        jid,
        remove,
        name,
        groups,
    })
}

/// What a roster set did.
enum SetOutcome {
    Updated,
    /// Removed; the state the item had (for the unsubscribe/unsubscribed side effects).
    Removed(super::subscription::SubState),
    Refused(StanzaCondition, &'static str),
}

/// A roster set (§2.3, §2.5): the change is durable before the pushes and the result.
pub(super) fn set(im: &Rc<Im>, ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    if !req.own() {
        return error(StanzaCondition::Forbidden, "not your roster");
    }
    let set = match validate(im, req.payload) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let user = req.from.bare_str().to_string();
    let contact = set.jid.as_str().to_string();
    let max_items = im.limits.items;
    let op = {
        let user = user.clone();
        let contact = contact.clone();
        move |txn: &mut xmppd_storage::WriteTxn<'_>| {
            let existing = txn.roster_item(&user, &contact)?;
            let mut change = Change {
                contact: contact.clone(),
                ..Change::default()
            };
            if set.remove {
                let Some(old) = existing else {
                    // IM-ROSTER-09
                    return Ok((
                        change,
                        SetOutcome::Refused(StanzaCondition::ItemNotFound, "no such item"),
                    ));
                };
                let pending_in = txn.delete_sub_request(&user, &contact)?;
                txn.delete_roster_item(&user, &contact)?;
                change.item = Some(None);
                if pending_in {
                    change.pending_in = Some(None);
                }
                change.version = Some(txn.bump_roster_version(&user)?);
                return Ok((
                    change,
                    SetOutcome::Removed(sub_state(Some(&old), pending_in)),
                ));
            }
            let item = match existing {
                Some(mut item) => {
                    item.name = set.name;
                    item.groups = set.groups;
                    item
                }
                None => {
                    if txn.roster_len(&user)? >= max_items {
                        return Ok((
                            change,
                            SetOutcome::Refused(StanzaCondition::NotAllowed, "roster full"),
                        ));
                    }
                    RosterItem {
                        jid: contact.clone(),
                        name: set.name,
                        groups: set.groups,
                        subscription: Subscription::None,
                        ask: false,
                        approved: false,
                    }
                }
            };
            txn.put_roster_item(&user, &item)?;
            change.item = Some(Some(item));
            change.version = Some(txn.bump_roster_version(&user)?);
            Ok((change, SetOutcome::Updated))
        }
    };
    let from = req.from.clone();
    let after = move |ctx: &Ctx, outcome: &SetOutcome| {
        if let SetOutcome::Removed(old) = outcome {
            removal_side_effects(ctx, &from, &contact, *old);
        }
    };
    let owner = user.clone();
    let done = im.clone().mutate(ctx.clone(), user, op, after);
    IqReply::Later(Box::pin(async move {
        match done.await {
            Ok(SetOutcome::Refused(cond, text)) => error(cond, text),
            Ok(_) => IqReply::Result(None),
            Err(e) => IqReply::Error(storage_failure("a roster set", &owner, &e)),
        }
    }))
}

/// IM-ROSTER-10: cancel both directions of a removed subscription and withdraw presence.
fn removal_side_effects(ctx: &Ctx, from: &Jid, contact: &str, old: super::subscription::SubState) {
    let user = from.bare_str();
    if old.to || old.pending_out {
        send_subscription(ctx, user, contact, PresenceType::Unsubscribe);
    }
    if old.from || old.pending_in {
        send_subscription(ctx, user, contact, PresenceType::Unsubscribed);
    }
    if old.from {
        super::presence::withdraw(ctx, user, contact);
    }
}

/// Route `<presence type=ty from=user to=contact/>` (a subscription stanza the server sends
/// on the user's behalf).
pub(super) fn send_subscription(ctx: &Ctx, user: &str, contact: &str, ty: PresenceType) {
    let mut out = Vec::with_capacity(96);
    write_presence(&mut out, ty, user, Some(contact));
    let route = Route::new(JidStr::trusted(user), JidStr::trusted(contact));
    ctx.route(StanzaType::Presence(ty), route, &out);
}

/// Push one item (or its removal) to every interested resource of `user` (IM-ROSTER-02/03/04,
/// IM-RVER-05).
pub(super) fn push(
    im: &Im,
    ctx: &Ctx,
    user: &str,
    contact: &str,
    item: Option<&RosterItem>,
    version: u64,
) {
    let element = match item {
        Some(i) => item_element(i),
        None => Element::new("item", NS_ROSTER)
            .with_attr("jid", contact)
            .with_attr("subscription", "remove"),
    };
    let ver = version.to_string();
    let sessions = ctx.sessions().borrow();
    let Some(account) = sessions.account(user) else {
        return;
    };
    for (r, st) in account
        .resources
        .iter()
        .filter_map(|r| Some((r, ImResource::of(r)?)))
        .filter(|(_, st)| st.interested)
    {
        let id = im.push_id.get().wrapping_add(1);
        im.push_id.set(id);
        let mut q = Element::new("query", NS_ROSTER).with_child(element.clone());
        if st.rosterver {
            q.set_attr("ver", ver.as_str());
        }
        r.handle.send_with(|out| {
            out.extend_from_slice(b"<iq type='set' id='push");
            out.extend_from_slice(id.to_string().as_bytes());
            out.extend_from_slice(b"' to='");
            xml::escape_attr(r.jid.as_str(), out);
            out.extend_from_slice(b"'>");
            q.write_to(out, ns::CLIENT);
            out.extend_from_slice(b"</iq>");
        });
    }
}

/// The roster item a subscription change leaves, or None if no item should exist.
pub(super) fn item_after(
    existing: Option<RosterItem>,
    contact: &str,
    state: super::subscription::SubState,
    approved: bool,
) -> Option<RosterItem> {
    let needed = state.to || state.from || state.pending_out || approved;
    match existing {
        Some(mut item) => {
            item.subscription = subscription_of(state);
            item.ask = state.pending_out;
            item.approved = approved;
            Some(item)
        }
        None if needed => Some(RosterItem {
            jid: contact.to_string(),
            name: None,
            groups: Vec::new(),
            subscription: subscription_of(state),
            ask: state.pending_out,
            approved,
        }),
        None => None,
    }
}
