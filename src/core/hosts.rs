//! The host table: where a domain's stanzas go.
//!
//! Every domain the router may see maps to one [`Host`]:
//!
//! | host | what it is | stanzas for it |
//! |---|---|---|
//! | `Local` | a served domain (`--domain`) | accounts: delivered on the account's home shard; the bare domain: the server itself |
//! | `Service` | an in-process service (MUC is the first) | the service, on the home shard of the addressed entity |
//! | `Component` | an XEP-0114 component's domain, and its subdomains | the component's stream, on the home shard of its domain (`service-unavailable` while it is not connected) |
//! | (absent) | any other domain: remote | server-to-server, on the home shard of that domain |
//!
//! Each entity has a home shard, `shard_of(bare JID)`, for accounts, service entities (a
//! room) and service domains alike, so everything about one entity happens on one thread.
//! [`decide`] is the whole decision, as a pure function tested as a table.

use std::rc::Rc;

use ahash::AHashMap;

use super::events::Inbound;
use super::{Ctx, Identity, Pending};
use crate::shard::shard_of;
use crate::xmpp::jid::JidStr;

/// An in-process service: gets every stanza for its domain and the entities under it (e.g.
/// `room@conference.example.org/nick`), on the home shard of the addressed bare JID, and
/// sends through the same [`Services`](super::Services) as modules do. State per entity
/// lives on that entity's home shard.
pub trait Service {
    /// A stanza for the service's domain or one of its entities, on that JID's home shard.
    /// The future, if any, is awaited by a local sender's connection (as for modules).
    fn stanza(&self, ctx: &Ctx, s: &Inbound<'_>) -> Option<Pending>;

    /// The server is stopping: tell the entities' users (before their streams close).
    fn stopping(&self, _ctx: &Ctx) {}
}

/// A registered in-process service.
#[derive(Clone)]
pub struct ServiceHost {
    /// Its domain (normalized), e.g. `conference.example.org`.
    pub domain: String,
    /// The served domain it belongs to: listed in that domain's disco items (XEP-0030).
    pub parent: String,
    /// Its disco identity.
    pub identity: Identity,
    /// The service.
    pub service: Rc<dyn Service>,
}

/// Where a domain's stanzas go.
#[derive(Clone)]
pub enum Host {
    /// A served domain with local accounts.
    Local,
    /// An in-process service.
    Service(Rc<dyn Service>),
    /// An external component (XEP-0114): its domain and every subdomain of it that is not
    /// in the table itself.
    Component,
}

/// The host table of one shard (every shard builds the same one; read-only after start).
/// A handful of domains (the usual case) are compared in a list, which is cheaper per
/// stanza than hashing; many are looked up in a map.
#[derive(Default, Clone)]
pub struct HostTable {
    few: Vec<(Box<str>, Host)>,
    many: Option<AHashMap<Box<str>, Host>>,
    /// Some domain is a component's: a domain not in the table may be a subdomain of one.
    components: bool,
}

/// Up to this many domains the table is a list.
const FEW: usize = 8;

/// Where a stanza goes, by its addressee (RFC 6120 §10.4, §10.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A served domain itself (no localpart): the server answers.
    Server,
    /// A local account's JID, on this home shard.
    Account(usize),
    /// An in-process service's domain or entity, on this home shard.
    Service(usize),
    /// A component's domain (or a subdomain of it), on the home shard of the component's
    /// domain, where its stream lives.
    Component(usize),
    /// A domain this server does not host: server-to-server, on the home shard of that
    /// domain (where its outgoing streams live).
    Remote(usize),
}

impl HostTable {
    /// Add (or replace) a domain.
    pub fn insert(&mut self, domain: &str, host: Host) {
        self.components |= matches!(host, Host::Component);
        if let Some(map) = self.many.as_mut() {
            map.insert(domain.into(), host);
            return;
        }
        match self.few.iter_mut().find(|(d, _)| &**d == domain) {
            Some(slot) => slot.1 = host,
            None => self.few.push((domain.into(), host)),
        }
        if self.few.len() > FEW {
            self.many = Some(std::mem::take(&mut self.few).into_iter().collect());
        }
    }

    /// The host of a domain, if this server knows it.
    pub fn get(&self, domain: &str) -> Option<&Host> {
        match &self.many {
            Some(map) => map.get(domain),
            None => self
                .few
                .iter()
                .find(|(d, _)| &**d == domain)
                .map(|(_, h)| h),
        }
    }

    /// The component domain that serves `domain`: itself, or the nearest parent domain that
    /// is a component's (`x.irc.example.org` belongs to `irc.example.org`) unless the
    /// table names `domain` as something else.
    pub fn component_of<'d>(&self, domain: &'d str) -> Option<&'d str> {
        match self.get(domain) {
            Some(Host::Component) => return Some(domain),
            Some(_) => return None,
            None if !self.components => return None,
            None => {}
        }
        let mut rest = domain;
        while let Some((_, parent)) = rest.split_once('.') {
            match self.get(parent) {
                Some(Host::Component) => return Some(parent),
                Some(_) => return None,
                None => rest = parent,
            }
        }
        None
    }

    /// True for a served domain with local accounts.
    pub fn is_local(&self, domain: &str) -> bool {
        matches!(self.get(domain), Some(Host::Local))
    }
}

/// Where a stanza for `to` goes on a server with `shards` shards.
pub fn decide(hosts: &HostTable, to: JidStr<'_>, shards: usize) -> Dest {
    let bare = to.bare().as_str();
    let (has_local, domain) = match crate::xmpp::jid::split_once_byte(bare, b'@') {
        Some((_, domain)) => (true, domain),
        None => (false, bare),
    };
    match hosts.get(domain) {
        None => match hosts.component_of(domain) {
            Some(c) => Dest::Component(shard_of(c, shards)),
            None => Dest::Remote(shard_of(domain, shards)),
        },
        Some(Host::Component) => Dest::Component(shard_of(domain, shards)),
        Some(Host::Service(_)) => Dest::Service(shard_of(bare, shards)),
        Some(Host::Local) if !has_local => Dest::Server,
        Some(Host::Local) => Dest::Account(shard_of(bare, shards)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Service for Nothing {
        fn stanza(&self, _: &Ctx, _: &Inbound<'_>) -> Option<Pending> {
            None
        }
    }

    #[test]
    fn every_domain_kind_routes_by_the_table() {
        let mut t = HostTable::default();
        t.insert("example.org", Host::Local);
        t.insert("conference.example.org", Host::Service(Rc::new(Nothing)));
        t.insert("irc.example.org", Host::Component);
        let home = |s: &str| shard_of(s, 4);
        let cases: &[(&str, Dest)] = &[
            ("example.org", Dest::Server),
            ("example.org/res", Dest::Server),
            (
                "alice@example.org",
                Dest::Account(home("alice@example.org")),
            ),
            (
                "alice@example.org/phone",
                Dest::Account(home("alice@example.org")),
            ),
            (
                "conference.example.org",
                Dest::Service(home("conference.example.org")),
            ),
            (
                "room@conference.example.org/nick",
                Dest::Service(home("room@conference.example.org")),
            ),
            ("irc.example.org", Dest::Component(home("irc.example.org"))),
            (
                "#chan@irc.example.org/nick",
                Dest::Component(home("irc.example.org")),
            ),
            // COMP-06/07: a subdomain of a component's domain is the component's.
            (
                "x@sub.irc.example.org",
                Dest::Component(home("irc.example.org")),
            ),
            (
                "deep.sub.irc.example.org",
                Dest::Component(home("irc.example.org")),
            ),
            // ... but a subdomain of a served domain or a service is not.
            (
                "x@room.conference.example.org",
                Dest::Remote(home("room.conference.example.org")),
            ),
            ("bob@elsewhere.net", Dest::Remote(home("elsewhere.net"))),
            ("elsewhere.net/r", Dest::Remote(home("elsewhere.net"))),
            // A subdomain of a served domain is a different domain.
            (
                "carol@sub.example.org",
                Dest::Remote(home("sub.example.org")),
            ),
        ];
        for (to, want) in cases {
            assert_eq!(decide(&t, JidStr::trusted(to), 4), *want, "{to}");
        }
        // Past a handful of domains the table is a map; the answers stay the same.
        let mut big = t.clone();
        for i in 0..20 {
            big.insert(&format!("d{i}.example"), Host::Local);
        }
        for (to, want) in cases {
            assert_eq!(decide(&big, JidStr::trusted(to), 4), *want, "{to}");
        }
        assert_eq!(
            decide(&big, JidStr::trusted("x@d7.example"), 4),
            Dest::Account(home("x@d7.example"))
        );
        // Every resource of one entity has the same home.
        assert_eq!(
            decide(&t, JidStr::trusted("room@conference.example.org/a"), 4),
            decide(&t, JidStr::trusted("room@conference.example.org/b"), 4)
        );
    }
}
