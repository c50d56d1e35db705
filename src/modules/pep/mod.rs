//! Personal data an account keeps on the server: PEP (XEP-0163), every account a pubsub
//! service (XEP-0060 subset) at its bare JID ([`service`], with the node configuration in
//! [`config`] and the wire format in [`wire`]), and XEP-0049 private XML storage
//! ([`private`]).

pub mod bookmarks;
pub mod compat;
pub mod config;
pub mod private;
pub mod service;
pub mod wire;

use std::rc::Rc;

use crate::config::{pick, Config, ConfigError};
use crate::core::events::{priority, ClientStanza, DeliverBare, DeliverFull, Kinds, SessionEnded};
use crate::core::{Flow, Identity, Registry, Scope};
use crate::xmpp::stanza::{IqType, StanzaType};

use private::NS_PRIVATE;
use service::Pep;
use wire::{NS_PUBSUB, NS_PUBSUB_OWNER};

/// The module's flags (`[modules.pep]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PepArgs {
    /// Largest private XML fragment (one namespace's elements, XEP-0049) in bytes
    /// [default: 65536, or less to fit --max-stanza-size]; beyond it `not-acceptable`.
    #[arg(long)]
    pub private_max_bytes: Option<usize>,
    /// Most namespaces of private XML per account [default: 64]; beyond it
    /// `resource-constraint`. At most 10000.
    #[arg(long)]
    pub private_max_namespaces: Option<usize>,
    /// Most PEP nodes per account [default: 64]; beyond it `not-allowed` with
    /// `<max-nodes-exceeded/>`. Between 1 and 10000.
    #[arg(long)]
    pub pep_max_nodes: Option<usize>,
    /// Most items one PEP node keeps (the ceiling of `pubsub#max_items`) [default: 256];
    /// a node keeps its newest. Between 1 and 100000.
    #[arg(long)]
    pub pep_max_items: Option<u32>,
    /// Largest PEP item payload, serialized, in bytes [default: 65536, or less to fit
    /// --max-stanza-size]; beyond it `not-acceptable` with `<payload-too-big/>`.
    #[arg(long)]
    pub pep_max_item_bytes: Option<usize>,
    /// Verified entity-capabilities hashes (XEP-0115) cached per shard [default: 4096];
    /// the least recently used go first. Between 16 and 1000000.
    #[arg(long)]
    pub caps_cache: Option<usize>,
    /// Available full JIDs one account's PEP service tracks for notifications (its own
    /// resources and contacts' clients) [default: 4096]; presence beyond it is not tracked.
    /// Between 16 and 1000000.
    #[arg(long)]
    pub pep_max_tracked: Option<usize>,
    /// Explicit subscriptions (XEP-0060 §6.1) one PEP node keeps [default: 1024]; beyond it
    /// `policy-violation` with `<too-many-subscriptions/>`. Between 1 and 100000.
    #[arg(long)]
    pub pep_max_subscribers: Option<usize>,
}

/// The module's resolved settings.
#[derive(Debug, Clone)]
pub struct PepConfig {
    /// XEP-0049 bounds.
    pub private: private::Bounds,
    /// PEP bounds.
    pub pep: service::Bounds,
}

impl PepArgs {
    /// Flag over the file over the default, with bounds (`max_stanza_size`: the routed limit).
    pub fn resolve(
        &self,
        file: &PepArgs,
        max_stanza_size: usize,
    ) -> Result<PepConfig, ConfigError> {
        let room = max_stanza_size.saturating_sub(1024);
        let c = PepConfig {
            private: private::Bounds {
                max_bytes: pick(
                    self.private_max_bytes,
                    file.private_max_bytes,
                    (64 * 1024).min(room),
                ),
                max_namespaces: pick(self.private_max_namespaces, file.private_max_namespaces, 64),
            },
            pep: service::Bounds {
                max_nodes: pick(self.pep_max_nodes, file.pep_max_nodes, 64),
                max_item_bytes: pick(
                    self.pep_max_item_bytes,
                    file.pep_max_item_bytes,
                    (64 * 1024).min(room),
                ),
                config: config::Bounds {
                    max_items: pick(self.pep_max_items, file.pep_max_items, 256),
                    max_title: 1024,
                    max_groups: 64,
                },
                caps_cache: pick(self.caps_cache, file.caps_cache, 4096),
                caps_pending: 256,
                max_tracked: pick(self.pep_max_tracked, file.pep_max_tracked, 4096),
                max_subscribers: pick(self.pep_max_subscribers, file.pep_max_subscribers, 1024),
            },
        };
        if c.private.max_bytes == 0 || c.private.max_bytes > room {
            return Err(ConfigError(
                "--private-max-bytes must be positive and leave 1024 bytes under --max-stanza-size"
                    .into(),
            ));
        }
        if !(1..=10_000).contains(&c.private.max_namespaces) {
            return Err(ConfigError(
                "--private-max-namespaces must be between 1 and 10000".into(),
            ));
        }
        if !(1..=10_000).contains(&c.pep.max_nodes) {
            return Err(ConfigError(
                "--pep-max-nodes must be between 1 and 10000".into(),
            ));
        }
        if !(1..=100_000).contains(&c.pep.config.max_items) {
            return Err(ConfigError(
                "--pep-max-items must be between 1 and 100000".into(),
            ));
        }
        if c.pep.max_item_bytes == 0 || c.pep.max_item_bytes > room {
            return Err(ConfigError(
                "--pep-max-item-bytes must be positive and leave 1024 bytes under --max-stanza-size"
                    .into(),
            ));
        }
        if !(16..=1_000_000).contains(&c.pep.caps_cache) {
            return Err(ConfigError(
                "--caps-cache must be between 16 and 1000000".into(),
            ));
        }
        if !(16..=1_000_000).contains(&c.pep.max_tracked) {
            return Err(ConfigError(
                "--pep-max-tracked must be between 16 and 1000000".into(),
            ));
        }
        if !(1..=100_000).contains(&c.pep.max_subscribers) {
            return Err(ConfigError(
                "--pep-max-subscribers must be between 1 and 100000".into(),
            ));
        }
        Ok(c)
    }
}

/// The pubsub features PEP-01 lists (XEP-0060 §10, XEP-0163 §6.1).
const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    // `max` for `pubsub#max_items` (§17.7). Clients look for it before asking for `max`
    // instead of a number (Converse.js asks for 9999 bookmarks otherwise, over the bound).
    "http://jabber.org/protocol/pubsub#config-node-max",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
];

/// Register PEP and private XML storage.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("pep");
    r.server_feature(NS_PRIVATE);
    let bounds = config.modules.pep.private;
    // Addressed to the account (no `to`, or one's own bare JID); someone else's gets
    // `forbidden` from the handler.
    let pep = Rc::new(Pep::new(config.modules.pep.pep));
    r.iq(
        Scope::Account,
        IqType::Get,
        NS_PRIVATE,
        "query",
        private::get,
    );
    let p = pep.clone();
    r.iq(
        Scope::Account,
        IqType::Set,
        NS_PRIVATE,
        "query",
        move |ctx, req| private::set(ctx, req, bounds, &p),
    );
    // XEP-0402 §6.3: bookmarks in private XML and in PEP are one list.
    r.account_feature(bookmarks::FEATURE_COMPAT);
    // XEP-0402 §6.3: and with XEP-0048 bookmarks in PEP (XEP-0223).
    r.account_feature(compat::FEATURE_COMPAT_PEP);

    // PEP (XEP-0163).
    r.account_identity(Identity {
        category: "pubsub",
        kind: "pep",
        name: None,
    });
    for f in FEATURES {
        r.account_feature(f);
    }
    for ns in [NS_PUBSUB, NS_PUBSUB_OWNER] {
        for ty in [IqType::Get, IqType::Set] {
            let p = pep.clone();
            r.iq(Scope::Account, ty, ns, "pubsub", move |ctx, req| {
                p.request(ctx, req)
            });
        }
    }
    let p = pep.clone();
    r.account_items(move |ctx, req, node| p.disco_items(ctx, req, node));
    let p = pep.clone();
    r.iq_responses(service::CAPS_QUERY_PREFIX, move |ctx, a| {
        p.caps_answer(ctx, a)
    });

    // What the service knows of presence (PEP-05/07): contacts' presence reaching the owner's
    // home shard, to the bare or a full JID, whether the owner is online or not.
    for deliver in [0, 1] {
        let p = pep.clone();
        let f = move |ctx: &crate::core::Ctx, s: &crate::core::Inbound<'_>| {
            let StanzaType::Presence(ty) = s.ty else {
                return Flow::Continue;
            };
            let (owner, from) = (s.route.to.bare().as_str(), s.route.from.as_str());
            if from.contains('/') && crate::xmpp::jid::bare_of(from) != owner {
                p.presence(ctx, owner, from, ty, s.stanza);
            }
            Flow::Continue
        };
        if deliver == 0 {
            r.hook_for::<DeliverBare>(Kinds::PRESENCE, priority::OBSERVE, f);
        } else {
            r.hook_for::<DeliverFull>(Kinds::PRESENCE, priority::OBSERVE, f);
        }
    }
    // The owner's own resources (PEP-04/08): their presence broadcasts.
    let p = pep.clone();
    r.hook_for::<ClientStanza>(Kinds::PRESENCE, priority::OBSERVE, move |ctx, s| {
        if let (StanzaType::Presence(ty), None) = (s.ty, s.to) {
            p.presence(ctx, s.from.bare_str(), s.from.as_str(), ty, s.stamped);
        }
        Flow::Continue
    });
    let p = pep;
    r.hook::<SessionEnded>(priority::OBSERVE, move |_, res| {
        p.unavailable(res.jid.bare_str(), res.jid.as_str());
        None
    });
}
