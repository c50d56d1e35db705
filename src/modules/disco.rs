//! XEP-0030: Service Discovery — the server's identities, features and items, built from what
//! the registered modules declare.

use crate::config::Config;
use crate::core::{Identity, IqReply, Registry, Scope};
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
                return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
            }
            let mut q = Element::new("query", ns::DISCO_INFO);
            for id in ctx.registry.server_identities() {
                q.push_child(identity(id));
            }
            for var in ctx.registry.server_features() {
                q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var));
            }
            IqReply::Result(Some(q))
        },
    );
    r.iq(
        Scope::Server,
        IqType::Get,
        ns::DISCO_ITEMS,
        "query",
        |_, req| {
            if req.payload.attr("node").is_some() {
                return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
            }
            // DISCO-03: an empty list, never an error, while no services are hosted.
            IqReply::Result(Some(Element::new("query", ns::DISCO_ITEMS)))
        },
    );
    r.iq(
        Scope::Account,
        IqType::Get,
        ns::DISCO_INFO,
        "query",
        |ctx, req| {
            // DISCO-06: only the owner (and, with rosters, subscribers) may look; everyone else,
            // and every request about a missing account, gets the same answer.
            if !req.own() {
                return IqReply::Error(StanzaError::new(StanzaCondition::ServiceUnavailable));
            }
            if req.payload.attr("node").is_some() {
                return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
            }
            // DISCO-05
            let mut q = Element::new("query", ns::DISCO_INFO).with_child(identity(&Identity {
                category: "account",
                kind: "registered",
                name: None,
            }));
            for var in ctx.registry.account_features() {
                q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var));
            }
            IqReply::Result(Some(q))
        },
    );
    r.iq(
        Scope::Account,
        IqType::Get,
        ns::DISCO_ITEMS,
        "query",
        |_, req| {
            // DISCO-07: an empty list for every account, existing or not, unless a node was asked.
            if req.payload.attr("node").is_some() {
                return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
            }
            IqReply::Result(Some(Element::new("query", ns::DISCO_ITEMS)))
        },
    );
}

fn identity(id: &Identity) -> Element {
    let mut e = Element::new("identity", ns::DISCO_INFO)
        .with_attr("category", id.category)
        .with_attr("type", id.kind);
    if let Some(name) = id.name {
        e.set_attr("name", name);
    }
    e
}
