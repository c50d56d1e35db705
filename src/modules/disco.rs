//! XEP-0030: Service Discovery — the server's identities, features and items, built from what
//! the registered modules declare.

use crate::config::Config;
use crate::core::{storage_failure, Identity, IqReply, Registry, Scope};
use crate::xml::Element;
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::ns;
use crate::xmpp::stanza::IqType;

/// Register disco#info and disco#items for the server and for accounts.
pub fn register(r: &mut Registry, _config: &Config) {
    r.module("disco");
    r.server_feature(ns::DISCO_INFO);
    r.server_feature(ns::DISCO_ITEMS);
    r.server_identity(Identity {
        category: "server",
        kind: "im",
        name: Some("xmppd"),
    });
    r.iq(
        Scope::Server,
        IqType::Get,
        ns::DISCO_INFO,
        "query",
        |ctx, req| {
            // DISCO-04: no nodes are defined on the server yet.
            if req.payload.attr("node").is_some() {
                return item_not_found();
            }
            IqReply::Result(Some(info(
                ctx.registry().server_identities(),
                &ctx.registry().server_features(),
            )))
        },
    );
    r.iq(
        Scope::Server,
        IqType::Get,
        ns::DISCO_ITEMS,
        "query",
        |ctx, req| {
            if req.payload.attr("node").is_some() {
                return item_not_found();
            }
            // DISCO-03: the in-process services hosted under this domain (an empty list,
            // never an error, when there are none).
            let mut q = Element::new("query", ns::DISCO_ITEMS);
            for s in ctx.registry().services() {
                if s.parent == req.to.domain() {
                    let mut item =
                        Element::new("item", ns::DISCO_ITEMS).with_attr("jid", s.domain.as_str());
                    if let Some(name) = s.identity.name {
                        item.set_attr("name", name);
                    }
                    q.push_child(item);
                }
            }
            IqReply::Result(Some(q))
        },
    );
    r.iq(
        Scope::Account,
        IqType::Get,
        ns::DISCO_INFO,
        "query",
        |ctx, req| {
            // DISCO-05/06: the owner and contacts with a presence subscription
            // (`from`/`both`) may look; everyone else, and every request about a missing
            // account, gets the same answer.
            if !req.own() {
                match subscribed(ctx, req.to.bare_str(), req.from.bare_str()) {
                    Ok(true) => {}
                    Ok(false) => {
                        return IqReply::Error(StanzaError::new(
                            StanzaCondition::ServiceUnavailable,
                        ))
                    }
                    // Issue 8: a failure is not "no such account".
                    Err(e) => {
                        let user = req.to.bare_str();
                        return IqReply::Error(storage_failure("disco#info", user, &e));
                    }
                }
            }
            if req.payload.attr("node").is_some() {
                return item_not_found();
            }
            // DISCO-05; PEP-01 adds pubsub/pep (a module's account identity).
            let mut identities = vec![Identity {
                category: "account",
                kind: "registered",
                name: None,
            }];
            identities.extend_from_slice(ctx.registry().account_identities());
            IqReply::Result(Some(info(&identities, &ctx.registry().account_features())))
        },
    );
    r.iq(
        Scope::Account,
        IqType::Get,
        ns::DISCO_ITEMS,
        "query",
        |ctx, req| {
            // DISCO-07: a list (empty without modules' items) for every account, existing or
            // not. Modules list what they keep for the account (PEP-14: the nodes the
            // requester may see), each checking the requester; a node no module knows is
            // item-not-found.
            let node = req.payload.attr("node");
            let mut q = Element::new("query", ns::DISCO_ITEMS);
            if let Some(node) = node {
                q.set_attr("node", node);
            }
            let mut known = node.is_none();
            for provider in ctx.registry().account_item_providers() {
                match provider(ctx, req, node) {
                    Ok(Some(items)) => {
                        known = true;
                        for item in items {
                            q.push_child(item);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return IqReply::Error(e),
                }
            }
            if !known {
                return item_not_found();
            }
            IqReply::Result(Some(q))
        },
    );
}

/// Whether `user` shares its presence with `contact`.
fn subscribed(
    ctx: &crate::core::Ctx,
    user: &str,
    contact: &str,
) -> Result<bool, xmppd_storage::StorageError> {
    let item = ctx.storage().rosters().item(user, contact)?;
    Ok(item.is_some_and(|i| {
        matches!(
            i.subscription,
            xmppd_storage::Subscription::From | xmppd_storage::Subscription::Both
        )
    }))
}

fn item_not_found() -> IqReply {
    IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound))
}

/// A disco#info result: identities, then features.
fn info(identities: &[Identity], features: &[&str]) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO);
    for id in identities {
        let mut e = Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", id.category)
            .with_attr("type", id.kind);
        if let Some(name) = id.name {
            e.set_attr("name", name);
        }
        q.push_child(e);
    }
    for var in features {
        q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", *var));
    }
    q
}
