//! XEP-0160: Best Practices for Handling Offline Messages, with XEP-0203 delay stamps.
//!
//! A normal or chat message for an account with no resource that can take it is stored
//! durably (the sending connection waits for the commit before reading on), up to a per-user
//! bound beyond which the sender gets `resource-constraint`. Stored messages are delivered,
//! oldest first and stamped with `<delay/>`, to the first resource that becomes available with
//! a non-negative priority, and then deleted.

use std::cell::RefCell;
use std::rc::Rc;

use ahash::AHashSet;

use crate::config::Config;
use crate::core::{Ctx, Inbound, Pending, Registry, Undeliverable};
use crate::router::bare_of;
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::Jid;
use crate::xmpp::ns;

/// XEP-0085 chat states: messages carrying only these are not worth storing.
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

/// Register offline storage and delivery.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("offline");
    r.server_feature("msgoffline");
    let max = config.max_offline_messages;
    // Accounts whose stored messages are being delivered (one resource gets them).
    let delivering: Rc<RefCell<AHashSet<String>>> = Rc::default();
    r.on_undeliverable(move |ctx, m| store(ctx, m, max));
    r.on_available(move |ctx, jid, priority| deliver(ctx, jid, priority, &delivering));
}

/// Store a message (IM-MSG-07/11/13).
fn store(ctx: &Ctx, m: &Inbound<'_>, max: usize) -> Undeliverable {
    let limits = ctx.config().xml_limits();
    let Ok(el) = xml::parse_element(m.stanza, &StreamNs::new(ns::CLIENT), &limits) else {
        return Undeliverable::Refused;
    };
    let only_chat_states =
        el.child("body", &el.ns).is_none() && el.elements().all(|c| c.ns == NS_CHATSTATES);
    if only_chat_states {
        // IM-MSG-11: ephemeral; dropping it is what the sender expects.
        return Undeliverable::Taken(None);
    }
    let user = bare_of(m.to).to_string();
    let from = m.from.to_string();
    let to = m.to.to_string();
    let stanza = m.stanza.to_vec();
    let id = el.attr("id").map(str::to_string);
    let stamp = crate::util::now_unix_ms();
    let done = ctx
        .storage()
        .submit(move |txn| txn.push_offline(&user, stamp, &from, &stanza, max));
    let ctx = ctx.clone();
    let ty = m.ty;
    let sender = m.from.to_string();
    Undeliverable::Taken(Some(Box::pin(async move {
        let err = match done.await {
            Ok(Some(_)) => return,
            // IM-MSG-13: never dropped silently.
            Ok(None) => StanzaError::with_text(
                StanzaCondition::ResourceConstraint,
                "the recipient's offline storage is full",
            ),
            Err(e) => {
                tracing::error!(error = %e, "storing an offline message failed");
                StanzaError::new(StanzaCondition::InternalServerError)
            }
        };
        ctx.bounce(ty, id.as_deref(), &sender, &to, err);
    })))
}

/// Deliver stored messages to a resource that became available (IM-MSG-12).
fn deliver(
    ctx: &Ctx,
    jid: &Jid,
    priority: i8,
    delivering: &Rc<RefCell<AHashSet<String>>>,
) -> Option<Pending> {
    // Edge case 32: never to a negative-priority resource.
    if priority < 0 {
        return None;
    }
    let user = jid.bare_str().to_string();
    if delivering.borrow().contains(&user) {
        return None;
    }
    let stored = match ctx.storage().offline().list(&user) {
        Ok(list) if !list.is_empty() => list,
        Ok(_) => return None,
        Err(e) => {
            tracing::error!(error = %e, "reading offline messages failed");
            return None;
        }
    };
    let handle = ctx
        .sessions()
        .borrow()
        .account(&user)
        .and_then(|a| a.get(jid.resource()?))
        .map(|r| r.handle.clone())?;
    let limits = ctx.config().xml_limits();
    let domain = jid.domain().to_string();
    let mut seqs = Vec::with_capacity(stored.len());
    for m in &stored {
        seqs.push(m.seq);
        let Ok(mut el) = xml::parse_element(&m.stanza, &StreamNs::new(ns::CLIENT), &limits) else {
            tracing::warn!(user, seq = m.seq, "dropping an unreadable offline message");
            continue;
        };
        el.push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", domain.as_str())
                .with_attr("stamp", crate::util::xep0082_datetime(m.stamp_unix_ms)),
        );
        handle.send_with(|out| el.write_to(out, ns::CLIENT));
    }
    delivering.borrow_mut().insert(user.clone());
    let done = {
        let user = user.clone();
        ctx.storage()
            .submit(move |txn| txn.delete_offline(&user, &seqs))
    };
    let delivering = delivering.clone();
    Some(Box::pin(async move {
        if let Err(e) = done.await {
            tracing::error!(error = %e, "deleting delivered offline messages failed");
        }
        delivering.borrow_mut().remove(&user);
    }))
}
