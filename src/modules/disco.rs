//! XEP-0030: Service Discovery — the server's identities, features and items, built from what
//! the registered modules declare; and the server's own XEP-0115 entity capabilities, which
//! hash them (§6.3: advertised in the post-authentication stream features).

use std::cell::OnceCell;
use std::rc::Rc;

use crate::config::Config;
use crate::core::{storage_failure, Identity, IqReply, Registry, Scope};
use crate::xml::Element;
use crate::xmpp::caps::{self, CapsAlgo};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::ns;
use crate::xmpp::stanza::IqType;

/// The `node` of the server's own caps (XEP-0115 §4: a URI naming the software). Its
/// disco#info node is `CAPS_NODE#ver`.
pub const CAPS_NODE: &str = "https://xmppd.org";

/// Register disco#info and disco#items for the server and for accounts.
pub fn register(r: &mut Registry, _config: &Config) {
    r.module("disco");
    r.server_feature(ns::DISCO_INFO);
    r.server_feature(ns::DISCO_ITEMS);
    // XEP-0115 §7: an entity that speaks caps says so (the server sends its own, CAPS-04,
    // and reads its users', CAPS-01).
    r.server_feature(caps::NS_CAPS);
    r.server_identity(Identity {
        category: "server",
        kind: "im",
        name: Some("xmppd"),
    });
    // CAPS-04: the server's `ver`, set once every module has declared its features (they do
    // not change afterwards). The same for every served domain: their disco#info is one.
    let ver: Rc<OnceCell<String>> = Rc::default();
    r.when_complete({
        let ver = Rc::clone(&ver);
        move |r| {
            let info = info(r.server_identities(), &r.server_features());
            // The registry keeps identities and features unique, so this cannot fail; if it
            // did, advertising no caps beats advertising a wrong one.
            let Ok(v) = caps::ver_hash(&info, CapsAlgo::Sha1) else {
                return;
            };
            r.stream_feature(
                Element::new("c", caps::NS_CAPS)
                    .with_attr("hash", CapsAlgo::Sha1.name())
                    .with_attr("node", CAPS_NODE)
                    .with_attr("ver", v.as_str()),
            );
            let _ = ver.set(v);
        }
    });
    r.iq(
        Scope::Server,
        IqType::Get,
        ns::DISCO_INFO,
        "query",
        move |ctx, req| {
            // DISCO-04: the only node on the server is its caps node (CAPS-04), answered
            // with the same info and the node echoed so that it hashes to the `ver`.
            let node = req.payload.attr("node");
            if node.is_some_and(|n| !is_caps_node(n, ver.get())) {
                return item_not_found();
            }
            let mut q = info(
                ctx.registry().server_identities(),
                &ctx.registry().server_features(),
            );
            if let Some(node) = node {
                q.set_attr("node", node);
            }
            IqReply::Result(Some(q))
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
            // COMP-09: the connected components under this domain (a subdomain of it), or
            // under the primary domain when a component's name is not one.
            let primary = ctx.config().domains.first().map(String::as_str);
            for c in ctx.connected_components() {
                let under = |d: &str| c.strip_suffix(d).is_some_and(|p| p.ends_with('.'));
                let parent = ctx.config().domains.iter().find(|d| under(d));
                let listed = match parent {
                    Some(p) => p.as_str() == req.to.domain(),
                    None => primary == Some(req.to.domain()),
                };
                if listed {
                    q.push_child(
                        Element::new("item", ns::DISCO_ITEMS).with_attr("jid", c.as_str()),
                    );
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

/// Whether `node` is `CAPS_NODE#ver` (XEP-0115 §6.2) for the server's `ver`.
fn is_caps_node(node: &str, ver: Option<&String>) -> bool {
    let asked = node
        .strip_prefix(CAPS_NODE)
        .and_then(|r| r.strip_prefix('#'));
    ver.is_some_and(|v| asked == Some(v.as_str()))
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Cli;

    /// A module registered after disco.
    fn late(r: &mut Registry, _config: &Config) {
        r.module("late");
        r.server_feature("urn:test:late");
    }

    // XEP-0115 §6.3: the `<c/>` in the stream features hashes every module's features, also
    // those registered after disco, and is serialized once.
    #[test]
    fn caps_04_stream_feature_hashes_the_complete_registry() {
        let cli = Cli::try_parse_from(["xmppd"]).unwrap();
        let config = Config::resolve(&cli.common, &cli.serve).unwrap();
        let r = Registry::build(&[register, late], &config);
        let features = r.server_features();
        assert!(features.contains(&"urn:test:late"));
        assert!(features.contains(&caps::NS_CAPS));
        let ver = caps::ver_hash(&info(r.server_identities(), &features), CapsAlgo::Sha1).unwrap();
        assert_eq!(
            std::str::from_utf8(r.stream_features()).unwrap(),
            format!(
                "<c xmlns='{}' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/>",
                caps::NS_CAPS
            )
        );
    }

    #[test]
    fn caps_04_only_node_hash_ver_is_the_caps_node() {
        let ver = "ItBTI0XLDFvVxZ72NQElAzKS9sU=".to_owned();
        assert!(is_caps_node(&format!("{CAPS_NODE}#{ver}"), Some(&ver)));
        for other in [
            CAPS_NODE.to_owned(),
            format!("{CAPS_NODE}#"),
            format!("{CAPS_NODE}{ver}"),
            format!("{CAPS_NODE}#{ver}x"),
            format!("{CAPS_NODE}/#{ver}"),
            format!("http://other#{ver}"),
            ver.clone(),
        ] {
            assert!(!is_caps_node(&other, Some(&ver)), "{other}");
        }
        assert!(!is_caps_node(&format!("{CAPS_NODE}#{ver}"), None));
    }
}
