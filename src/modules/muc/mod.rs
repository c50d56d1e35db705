//! XEP-0045: multi-user chat, as an in-process service on the host table.
//!
//! Every served domain `D` gets a service at `SUBDOMAIN.D` (`--muc-subdomain`, default
//! `conference`; `--no-muc` turns the service off). The router hands the service every
//! stanza for its domain and the JIDs under it on the home shard of the addressed bare JID
//! (`shard_of(room@service)`), so each room lives on one shard with all of its state, and its
//! occupants' sessions may live on any shard. The service's own domain (disco, unique room
//! names) is served on `shard_of(service)`.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | settings, registration, dispatch by addressee, the process-wide directory |
//! | `room.rs` | a room: occupancy, presence, messages, history, subject (§7) |
//! | `admin.rs` | the moderator, admin and owner IQs (§8–§10) and persistence |
//! | `perm.rs` | roles, affiliations and who may change what (§5), pure |
//! | `config.rs` | the room configuration and its forms (§10.1–§10.2, §16.5.3), pure |
//!
//! Rooms are sent stanzas in order (one shard, one thread), so a room never locks. Stanzas
//! for occupants are routed like any other: a room never waits on a slow occupant (the
//! occupant's send queue refuses what does not fit, and the router answers the room, which
//! ignores it). What a client can grow is bounded, each with a flag and an error: rooms per
//! service (`--muc-max-rooms`, `resource-constraint`), rooms owned per user
//! (`--muc-max-rooms-per-user`, `not-allowed`), occupants per room
//! (`--muc-max-occupants` and the room's `maxusers`, `service-unavailable`), history per room
//! (`--muc-max-history` messages and `--muc-max-history-bytes`), and the configuration
//! (`--muc-max-text` bytes per text field, `--muc-max-affiliations` per room,
//! `not-acceptable`/`resource-constraint`).

pub mod admin;
pub mod config;
pub mod directory;
pub mod perm;
pub mod room;
mod stanzas;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;

use crate::config::{pick, Config, ConfigError};
use crate::core::events::Inbound;
use crate::core::{Ctx, Identity, Pending, Refused, Registry, Route, Service, ServiceHost};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, StanzaType};

pub use directory::Directory;
use room::Room;

/// `http://jabber.org/protocol/muc`: joining (§7.2).
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// `http://jabber.org/protocol/muc#user`: occupant data the room adds (§7, §17.3).
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
/// `http://jabber.org/protocol/muc#admin`: moderator and admin use cases (§8, §9).
pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// `http://jabber.org/protocol/muc#owner`: owner use cases (§10).
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// `http://jabber.org/protocol/muc#unique`: unique room names (§10.1.4).
pub const NS_UNIQUE: &str = "http://jabber.org/protocol/muc#unique";
/// `http://jabber.org/protocol/muc#request`: voice requests (§7.13, §8.6).
pub const NS_REQUEST: &str = "http://jabber.org/protocol/muc#request";
/// `http://jabber.org/protocol/muc#stable_id`: client message ids are reflected (§7.4).
pub const NS_STABLE_ID: &str = "http://jabber.org/protocol/muc#stable_id";
/// XEP-0059 result set management.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
/// The most rooms one disco#items page lists (and the page without `<set/>`).
pub const MAX_PAGE: usize = 500;
/// XEP-0410: self-pings are answered by the room.
pub const NS_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";

/// XEP-0045's flags (`[modules.muc]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MucArgs {
    /// Run no multi-user chat service.
    #[arg(long)]
    #[serde(default)]
    pub no_muc: bool,
    /// The service of each served domain D is SUBDOMAIN.D [default: conference].
    #[arg(long)]
    pub muc_subdomain: Option<String>,
    /// Most rooms one service holds, temporary and persistent [default: 10000].
    #[arg(long)]
    pub muc_max_rooms: Option<usize>,
    /// Most rooms one user may own when creating another [default: 100].
    #[arg(long)]
    pub muc_max_rooms_per_user: Option<usize>,
    /// Most occupants in one room; also the largest `maxusers` an owner may set
    /// [default: 1000].
    #[arg(long)]
    pub muc_max_occupants: Option<u32>,
    /// History messages a new room keeps [default: 20].
    #[arg(long)]
    pub muc_history: Option<u32>,
    /// Most history messages a room may be configured to keep [default: 200].
    #[arg(long)]
    pub muc_max_history: Option<u32>,
    /// Most bytes of history one room keeps; older messages are dropped first
    /// [default: 262144].
    #[arg(long)]
    pub muc_max_history_bytes: Option<usize>,
    /// Most affiliations (members, admins, owners, outcasts) one room keeps [default: 10000].
    #[arg(long)]
    pub muc_max_affiliations: Option<usize>,
    /// Largest room name, description, password or reason in bytes [default: 1024].
    #[arg(long)]
    pub muc_max_text: Option<usize>,
}

/// XEP-0045's resolved settings.
#[derive(Debug, Clone)]
pub struct MucConfig {
    /// Whether the service runs.
    pub enabled: bool,
    /// The services' subdomain.
    pub subdomain: String,
    /// Most rooms per service.
    pub max_rooms: usize,
    /// Most rooms one user owns.
    pub max_rooms_per_user: usize,
    /// Most occupants per room.
    pub max_occupants: u32,
    /// A new room's history length.
    pub history: u32,
    /// Largest history length.
    pub max_history: u32,
    /// Most bytes of history per room.
    pub max_history_bytes: usize,
    /// Most affiliations per room.
    pub max_affiliations: usize,
    /// Largest text field in bytes.
    pub max_text: usize,
    /// Rooms of every service, shared by the shards (see [`Directory`]).
    pub directory: Arc<Directory>,
}

impl MucArgs {
    /// Flags over the file over defaults, with bounds.
    pub fn resolve(&self, file: &MucArgs) -> Result<MucConfig, ConfigError> {
        let c = MucConfig {
            enabled: !(self.no_muc || file.no_muc),
            subdomain: pick(
                self.muc_subdomain.clone(),
                file.muc_subdomain.clone(),
                "conference".into(),
            ),
            max_rooms: pick(self.muc_max_rooms, file.muc_max_rooms, 10_000),
            max_rooms_per_user: pick(
                self.muc_max_rooms_per_user,
                file.muc_max_rooms_per_user,
                100,
            ),
            max_occupants: pick(self.muc_max_occupants, file.muc_max_occupants, 1000),
            history: pick(self.muc_history, file.muc_history, 20),
            max_history: pick(self.muc_max_history, file.muc_max_history, 200),
            max_history_bytes: pick(
                self.muc_max_history_bytes,
                file.muc_max_history_bytes,
                256 * 1024,
            ),
            max_affiliations: pick(self.muc_max_affiliations, file.muc_max_affiliations, 10_000),
            max_text: pick(self.muc_max_text, file.muc_max_text, 1024),
            directory: Arc::new(Directory::default()),
        };
        if c.subdomain.is_empty()
            || c.subdomain.contains(['@', '/'])
            || c.subdomain.starts_with('.')
            || c.subdomain.ends_with('.')
        {
            return Err(ConfigError(format!(
                "--muc-subdomain {:?}: a domain label such as `conference`",
                c.subdomain
            )));
        }
        if c.max_rooms == 0 || c.max_occupants == 0 || c.max_affiliations == 0 {
            return Err(ConfigError(
                "--muc-max-rooms, --muc-max-occupants and --muc-max-affiliations must be at \
                 least 1"
                    .into(),
            ));
        }
        if c.history > c.max_history {
            return Err(ConfigError(
                "--muc-history must not exceed --muc-max-history".into(),
            ));
        }
        if c.max_text < 16 {
            return Err(ConfigError("--muc-max-text must be at least 16".into()));
        }
        Ok(c)
    }
}

impl MucConfig {
    /// The bounds a room's configuration is checked against.
    pub fn bounds(&self) -> config::Bounds {
        config::Bounds {
            max_users: self.max_occupants,
            default_history: self.history,
            max_history: self.max_history,
            max_text: self.max_text,
        }
    }
}

/// Register a MUC service for every served domain.
pub fn register(r: &mut Registry, config: &Config) {
    let muc = &config.modules.muc;
    if !muc.enabled {
        return;
    }
    r.module("muc");
    for domain in &config.domains {
        let service = format!("{}.{}", muc.subdomain, domain);
        let Ok(service) = crate::xmpp::jid::nameprep_domain(&service).map(|d| d.into_owned())
        else {
            tracing::warn!(service, "no MUC service: not a valid domain");
            continue;
        };
        r.service(ServiceHost {
            domain: service.clone(),
            parent: domain.clone(),
            identity: Identity {
                category: "conference",
                kind: "text",
                name: Some("Chatrooms"),
            },
            service: Rc::new(Muc::new(service, muc.clone())),
        });
    }
}

/// One shard's part of one MUC service: the rooms homed on this shard.
pub struct Muc {
    /// The service's domain.
    pub(crate) domain: String,
    pub(crate) cfg: MucConfig,
    /// Rooms homed here, by localpart. A persistent room is loaded on its first stanza.
    pub(crate) rooms: RefCell<AHashMap<Box<str>, Room>>,
}

impl Service for Muc {
    /// MUC-STAT-02 (§11.2): every occupant is told it leaves because the service shuts down
    /// (status 332); the rooms are forgotten, so the sessions' own goodbyes that follow change
    /// nothing. Persistent rooms are in storage already.
    fn stopping(&self, ctx: &Ctx) {
        let rooms = std::mem::take(&mut *self.rooms.borrow_mut());
        let extra = room::Extra {
            codes: &[332],
            ..room::Extra::default()
        };
        for room in rooms.values() {
            for o in &room.occupants {
                room.broadcast_presence_of(ctx, o, perm::Role::None, true, &extra, &[], false);
            }
        }
    }

    fn stanza(&self, ctx: &Ctx, s: &Inbound<'_>) -> Option<Pending> {
        let to = s.route.to;
        let Some(local) = to.local() else {
            return self.to_service(ctx, s);
        };
        let stanza = self.parse(ctx, s)?;
        // A stored room is loaded on its first stanza after a start.
        let exists = match self.load(ctx, local) {
            Ok(e) => e,
            Err(e) => {
                ctx.bounce(refused(s, stanza.attr("id")), e);
                return None;
            }
        };
        match to.resource() {
            None => self.to_room(ctx, s, local, exists, &stanza),
            Some(nick) => self.to_occupant(ctx, s, local, nick, exists, &stanza),
        }
    }
}

impl Muc {
    fn new(domain: String, cfg: MucConfig) -> Muc {
        Muc {
            domain,
            cfg,
            rooms: RefCell::new(AHashMap::new()),
        }
    }

    /// The room `local` of this shard, borrowed; `item-not-found` when there is none.
    pub(crate) fn room(&self, local: &str) -> Result<std::cell::Ref<'_, Room>, StanzaError> {
        std::cell::Ref::filter_map(self.rooms.borrow(), |r| r.get(local))
            .map_err(|_| StanzaError::new(StanzaCondition::ItemNotFound))
    }

    /// The stanza as a tree (rooms rewrite what they reflect). A stanza that does not
    /// parse was validated by the router, so this only happens for one over the limits the
    /// tree has; it is refused.
    fn parse(&self, ctx: &Ctx, s: &Inbound<'_>) -> Option<Element> {
        let limits = ctx.config().xml_limits();
        match xml::parse_element(s.stanza, &StreamNs::new(ns::CLIENT), &limits) {
            Ok(el) => Some(el),
            Err(e) => {
                tracing::debug!(error = %e, "MUC: a routed stanza does not parse");
                let id = id_of(s.stanza);
                ctx.bounce(
                    refused(s, id.as_deref()),
                    StanzaError::new(StanzaCondition::BadRequest),
                );
                None
            }
        }
    }

    /// A stanza for the service's own domain: disco, unique names; nothing else is served.
    fn to_service(&self, ctx: &Ctx, s: &Inbound<'_>) -> Option<Pending> {
        let StanzaType::Iq(ty @ (IqType::Get | IqType::Set)) = s.ty else {
            // Messages and presence to the service itself mean nothing (§17.2): ignored,
            // errors never answered.
            return None;
        };
        let el = self.parse(ctx, s)?;
        let id = el.attr("id").map(str::to_owned);
        let payload = el.elements().next();
        let reply = match (ty, payload) {
            (IqType::Get, Some(q)) if q.is("query", ns::DISCO_INFO) && q.attr("node").is_none() => {
                Ok(Some(self.service_info()))
            }
            (IqType::Get, Some(q))
                if q.is("query", ns::DISCO_ITEMS) && q.attr("node").is_none() =>
            {
                self.service_items(ctx, q).map(Some)
            }
            (IqType::Get, Some(q)) if q.is("unique", NS_UNIQUE) => {
                let mut b = [0u8; 12];
                crate::util::random_bytes(&mut b);
                Ok(Some(
                    Element::new("unique", NS_UNIQUE).with_text(crate::util::hex(&b)),
                ))
            }
            _ => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
        };
        self.answer(ctx, s.route, id.as_deref(), reply);
        None
    }

    fn service_info(&self) -> Element {
        let mut q = Element::new("query", ns::DISCO_INFO);
        q.push_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr("name", "Chatrooms"),
        );
        for var in [
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            NS_MUC,
            NS_UNIQUE,
            NS_STABLE_ID,
            NS_SELF_PING,
        ] {
            q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var));
        }
        q
    }

    /// MUC-DISCO-02: the public rooms of every shard, from the directory (hidden rooms are
    /// never listed), a page at a time with XEP-0059 result set management: `max` (at most
    /// [`MAX_PAGE`], also the page without `<set/>`, so a large service never answers with
    /// more than a stanza holds) and `after` / `before` as the last / first JID of a page.
    fn service_items(&self, ctx: &Ctx, q: &Element) -> Result<Element, StanzaError> {
        let rooms = self
            .cfg
            .directory
            .public_rooms(ctx.storage(), &self.domain)
            .map_err(|e| crate::core::storage_failure("listing rooms", &self.domain, &e))?;
        let set = q.child("set", NS_RSM);
        let max = match set.and_then(|s| s.child("max", NS_RSM)) {
            Some(m) => m
                .text()
                .trim()
                .parse::<usize>()
                .map_err(|_| StanzaError::new(StanzaCondition::BadRequest))?
                .min(MAX_PAGE),
            None => MAX_PAGE,
        };
        let jid_of = |local: &str| format!("{local}@{}", self.domain);
        let after = set
            .and_then(|s| s.child("after", NS_RSM))
            .map(Element::text);
        let before = set
            .and_then(|s| s.child("before", NS_RSM))
            .map(Element::text);
        let (start, end) = match (after, before) {
            (Some(a), _) => {
                let start = rooms.partition_point(|(l, _)| jid_of(l) <= a);
                (start, (start + max).min(rooms.len()))
            }
            // An empty <before/> asks for the last page.
            (None, Some(b)) => {
                let end = if b.is_empty() {
                    rooms.len()
                } else {
                    rooms.partition_point(|(l, _)| jid_of(l) < b)
                };
                (end.saturating_sub(max), end)
            }
            (None, None) => (0, max.min(rooms.len())),
        };
        let page = rooms.get(start..end).unwrap_or_default();
        let mut out = Element::new("query", ns::DISCO_ITEMS);
        for (local, name) in page {
            let mut item = Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid_of(local));
            if !name.is_empty() {
                item.set_attr("name", name.clone());
            }
            out.push_child(item);
        }
        if set.is_some() || rooms.len() > page.len() {
            let mut rsm = Element::new("set", NS_RSM);
            if let (Some((first, _)), Some((last, _))) = (page.first(), page.last()) {
                rsm.push_child(
                    Element::new("first", NS_RSM)
                        .with_attr("index", start.to_string())
                        .with_text(jid_of(first)),
                );
                rsm.push_child(Element::new("last", NS_RSM).with_text(jid_of(last)));
            }
            rsm.push_child(Element::new("count", NS_RSM).with_text(rooms.len().to_string()));
            out.push_child(rsm);
        }
        Ok(out)
    }

    /// Answer an IQ with a result (its payload, if any) or an error.
    pub(crate) fn answer(
        &self,
        ctx: &Ctx,
        route: Route<'_>,
        id: Option<&str>,
        reply: Result<Option<Element>, StanzaError>,
    ) {
        match reply {
            Ok(payload) => {
                let mut out = Vec::with_capacity(128);
                let back = route.reply();
                write_iq_result(&mut out, back.from.as_str(), back.to.as_str(), id, payload);
                ctx.route(StanzaType::Iq(IqType::Result), back, &out);
            }
            Err(err) => ctx.bounce(
                Refused {
                    ty: StanzaType::Iq(IqType::Get),
                    id,
                    route,
                },
                err,
            ),
        }
    }
}

/// The `Refused` of an inbound stanza.
pub(crate) fn refused<'a>(s: &Inbound<'a>, id: Option<&'a str>) -> Refused<'a> {
    Refused {
        ty: s.ty,
        id,
        route: s.route,
    }
}

/// The `id` attribute of a stanza's start tag.
pub(crate) fn id_of(stanza: &[u8]) -> Option<String> {
    let end = memchr::memchr(b'>', stanza)?;
    let head = std::str::from_utf8(stanza.get(..end)?).ok()?;
    let mut rest = head;
    while let Some(i) = rest.find("id=") {
        let before = rest.as_bytes().get(i.wrapping_sub(1)).copied();
        let after = &rest[i + 3..];
        let q = after.chars().next()?;
        if i > 0 && matches!(before, Some(b' ' | b'\t' | b'\n' | b'\r')) && (q == '\'' || q == '"')
        {
            let value = &after[1..];
            let end = value.find(q)?;
            return xml::unescape(&value[..end]).ok().map(|v| v.into_owned());
        }
        rest = after;
    }
    None
}

/// Write `<iq type='result' from to id>payload</iq>`.
pub(crate) fn write_iq_result(
    out: &mut Vec<u8>,
    from: &str,
    to: &str,
    id: Option<&str>,
    payload: Option<Element>,
) {
    use crate::xml::{escape_attr, write_attr};
    out.extend_from_slice(b"<iq type='result' from='");
    escape_attr(from, out);
    out.extend_from_slice(b"' to='");
    escape_attr(to, out);
    out.push(b'\'');
    if let Some(id) = id {
        out.push(b' ');
        write_attr("id", id, out);
    }
    match payload {
        None => out.extend_from_slice(b"/>"),
        Some(p) => {
            out.push(b'>');
            p.write_to(out, ns::CLIENT);
            out.extend_from_slice(b"</iq>");
        }
    }
}
