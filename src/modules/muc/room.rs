//! XEP-0045 §7: a room's occupancy, presence, messages, history and subject.
//!
//! A room is homed on one shard and handles its stanzas one at a time, so its state is plain
//! data. Everything it sends is written per recipient session (the recipient's real full
//! JID as `to`) and routed like any stanza: one batch per destination shard per tick, by the
//! outbox.

use std::collections::VecDeque;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::config::{RoomConfig, Whois};
use super::perm::{self, Affiliation, Role};
use super::NS_USER;
use crate::core::{Ctx, Route};
use crate::xml::{escape_attr, escape_text, write_attr};
use crate::xml::{Element, Node};
use crate::xmpp::jid::JidStr;
use crate::xmpp::ns;
use crate::xmpp::stanza::{MessageType, PresenceType, StanzaType};

/// An affiliation record (§5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affil {
    /// The affiliation (never `None`: such records are removed).
    pub aff: Affiliation,
    /// The reserved nick, if any.
    pub nick: Option<String>,
    /// The reason given with the change.
    pub reason: Option<String>,
}

/// One occupant: a nick held by one user, with one or more of its sessions (MUC-JOIN-10).
#[derive(Clone, Debug)]
pub struct Occupant {
    /// The nick.
    pub nick: String,
    /// `room@service/nick`.
    pub jid: String,
    /// The user's bare JID.
    pub bare: String,
    /// The user's sessions in the room, oldest first; never empty.
    pub sessions: SmallVec<[Session; 1]>,
    /// The role.
    pub role: Role,
    /// The children of the occupant's last presence (show, status, priority, caps...),
    /// serialized, without MUC elements.
    pub payload: Vec<u8>,
}

/// One session of an occupant: its full JID, and the JID escaped as an attribute value once,
/// at join, so that nothing is escaped per delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The full JID.
    pub jid: String,
    /// `jid` escaped for an attribute value.
    pub attr: String,
}

impl Session {
    /// A session of `jid`.
    pub fn new(jid: &str) -> Session {
        let mut attr = Vec::with_capacity(jid.len());
        escape_attr(jid, &mut attr);
        Session {
            jid: jid.to_owned(),
            attr: String::from_utf8(attr).unwrap_or_default(),
        }
    }
}

impl std::ops::Deref for Session {
    type Target = str;
    fn deref(&self) -> &str {
        &self.jid
    }
}

/// A message kept for history (§7.2.13).
#[derive(Clone, Debug)]
pub struct Hist {
    /// When it was reflected (Unix ms).
    pub at: u64,
    /// The sender's occupant JID.
    pub from: String,
    /// The reflected id.
    pub id: String,
    /// `xml:lang`, if the message had one.
    pub lang: Option<String>,
    /// The children as reflected, serialized.
    pub payload: Vec<u8>,
}

impl Hist {
    fn cost(&self) -> usize {
        self.from.len() + self.id.len() + self.payload.len() + 64
    }
}

/// The subject (§8.1).
#[derive(Clone, Debug, Default)]
pub struct Subject {
    /// Its text ("" when none is set).
    pub text: String,
    /// The nick of who set it ("" for the room).
    pub by: String,
    /// When it was set (Unix ms; 0 when never).
    pub at: u64,
}

/// A room.
pub struct Room {
    /// Its localpart.
    pub local: String,
    /// `room@service`.
    pub jid: String,
    /// Its configuration.
    pub config: RoomConfig,
    /// Created and not configured yet (§10.1): only owners may enter.
    pub locked: bool,
    /// Whether storage holds a record of it.
    pub stored: bool,
    /// Affiliations other than `none`, by bare JID.
    pub affiliations: AHashMap<String, Affil>,
    /// Occupants in join order.
    pub occupants: Vec<Occupant>,
    /// Each session in the room (full JID) → its occupant's nick.
    pub sessions: AHashMap<String, String>,
    /// Recent messages, oldest first.
    pub history: VecDeque<Hist>,
    /// Bytes of `history`.
    pub history_bytes: usize,
    /// The subject.
    pub subject: Subject,
}

/// `<history/>` limits of a join (§7.2.14).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    /// `maxchars`.
    pub maxchars: Option<usize>,
    /// `maxstanzas`.
    pub maxstanzas: Option<usize>,
    /// `seconds`.
    pub seconds: Option<u64>,
    /// `since` (Unix ms).
    pub since: Option<u64>,
}

impl HistoryRequest {
    /// Reads `<history/>` (absent: the room's default, MUC-HIST-03).
    pub fn parse(history: Option<&Element>) -> HistoryRequest {
        let Some(h) = history else {
            return HistoryRequest::default();
        };
        let num = |a: &str| h.attr(a).and_then(|v| v.trim().parse::<u64>().ok());
        HistoryRequest {
            maxchars: num("maxchars").map(|v| v as usize),
            maxstanzas: num("maxstanzas").map(|v| v as usize),
            seconds: num("seconds"),
            since: h.attr("since").and_then(parse_datetime),
        }
    }
}

/// Parses a XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss](Z|(+|-)hh:mm)`) into Unix ms.
pub fn parse_datetime(s: &str) -> Option<u64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits];
        ms = f.get(..3.min(digits))?.parse::<i64>().ok()? * 10i64.pow(3 - 3.min(digits) as u32);
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(secs * 1000 + ms).ok()
}

/// Codes and extra content of one presence the room writes.
#[derive(Default)]
pub struct Extra<'a> {
    /// `<status code/>`s.
    pub codes: &'a [u16],
    /// `nick` on the item (a nick change, 303).
    pub new_nick: Option<&'a str>,
    /// `<actor nick/>` in the item.
    pub actor: Option<&'a str>,
    /// `<reason/>` in the item.
    pub reason: Option<&'a str>,
    /// `<destroy/>` (serialized, inside the muc#user `x`).
    pub destroy: Option<&'a [u8]>,
}

impl Room {
    /// A new room (created by a join, locked until configured).
    pub fn new(local: &str, service: &str, config: RoomConfig) -> Room {
        Room {
            local: local.to_owned(),
            jid: format!("{local}@{service}"),
            config,
            locked: true,
            stored: false,
            affiliations: AHashMap::new(),
            occupants: Vec::new(),
            sessions: AHashMap::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            subject: Subject::default(),
        }
    }

    /// `bare`'s affiliation.
    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .map_or(Affiliation::None, |a| a.aff)
    }

    /// How many owners the room has.
    pub fn owners(&self) -> usize {
        self.affiliations
            .values()
            .filter(|a| a.aff == Affiliation::Owner)
            .count()
    }

    /// The owners' bare JIDs, sorted.
    pub fn owner_list(&self) -> Vec<String> {
        self.list(Affiliation::Owner)
    }

    /// The bare JIDs with affiliation `aff`, sorted.
    pub fn list(&self, aff: Affiliation) -> Vec<String> {
        let mut v: Vec<String> = self
            .affiliations
            .iter()
            .filter(|(_, a)| a.aff == aff)
            .map(|(j, _)| j.clone())
            .collect();
        v.sort_unstable();
        v
    }

    /// Sets `bare`'s affiliation (`None` removes the record, keeping nothing).
    pub fn set_affiliation(&mut self, bare: &str, aff: Affiliation, reason: Option<String>) {
        if aff == Affiliation::None {
            self.affiliations.remove(bare);
            return;
        }
        let nick = match aff {
            // MUC-AFF-01: an outcast loses its reserved nick.
            Affiliation::Outcast => None,
            _ => self.affiliations.get(bare).and_then(|a| a.nick.clone()),
        };
        self.affiliations
            .insert(bare.to_owned(), Affil { aff, nick, reason });
    }

    /// The occupant with this nick.
    pub fn occupant(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }

    fn occupant_index(&self, nick: &str) -> Option<usize> {
        self.occupants.iter().position(|o| o.nick == nick)
    }

    /// The occupant a session belongs to.
    pub fn occupant_of(&self, full: &str) -> Option<&Occupant> {
        let nick = self.sessions.get(full)?;
        self.occupant(nick)
    }

    /// The occupant of a user (any session).
    pub fn occupant_of_bare(&self, bare: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.bare == bare)
    }

    /// Whether `nick` is taken by, or reserved for, someone other than `bare` (MUC-JOIN-09).
    /// Nicks are compared case-insensitively, so "Nick" cannot pass for "nick".
    pub fn nick_conflict(&self, nick: &str, bare: &str) -> bool {
        let key = nick.to_lowercase();
        self.occupants
            .iter()
            .any(|o| o.bare != bare && o.nick.to_lowercase() == key)
            || self.affiliations.iter().any(|(j, a)| {
                j != bare && a.nick.as_deref().is_some_and(|n| n.to_lowercase() == key)
            })
    }

    /// Whether `viewer` (a role) sees real JIDs.
    fn sees_jids(&self, viewer: Role) -> bool {
        self.config.whois == Whois::Anyone || viewer == Role::Moderator
    }

    /// The occupant JID of a nick.
    pub fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    /// Writes the presence of occupant `o` for a recipient session `to` (`with_jid`: include
    /// the real JID).
    #[allow(clippy::too_many_arguments)]
    fn write_presence(
        &self,
        out: &mut Vec<u8>,
        o: &Occupant,
        role: Role,
        to: &str,
        unavailable: bool,
        with_jid: bool,
        extra: &Extra<'_>,
        self_codes: &[u16],
    ) {
        out.extend_from_slice(b"<presence from='");
        escape_attr(&o.jid, out);
        out.extend_from_slice(b"' to='");
        escape_attr(to, out);
        out.push(b'\'');
        if unavailable {
            out.extend_from_slice(b" type='unavailable'");
        }
        out.push(b'>');
        out.extend_from_slice(&o.payload);
        out.extend_from_slice(b"<x xmlns='");
        out.extend_from_slice(NS_USER.as_bytes());
        out.extend_from_slice(b"'><item affiliation='");
        out.extend_from_slice(self.affiliation(&o.bare).as_str().as_bytes());
        out.extend_from_slice(b"' role='");
        out.extend_from_slice(role.as_str().as_bytes());
        out.push(b'\'');
        if with_jid {
            // MUC-JOIN-20: the full JID.
            out.push(b' ');
            write_attr("jid", o.sessions.first().map_or(&o.bare, |s| &s.jid), out);
        }
        if let Some(n) = extra.new_nick {
            out.push(b' ');
            write_attr("nick", n, out);
        }
        if extra.actor.is_none() && extra.reason.is_none() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            if let Some(a) = extra.actor {
                out.extend_from_slice(b"<actor nick='");
                escape_attr(a, out);
                out.extend_from_slice(b"'/>");
            }
            if let Some(r) = extra.reason {
                out.extend_from_slice(b"<reason>");
                escape_text(r, out);
                out.extend_from_slice(b"</reason>");
            }
            out.extend_from_slice(b"</item>");
        }
        for code in extra.codes.iter().chain(self_codes) {
            out.extend_from_slice(format!("<status code='{code}'/>").as_bytes());
        }
        if let Some(d) = extra.destroy {
            out.extend_from_slice(d);
        }
        out.extend_from_slice(b"</x></presence>");
    }

    /// Sends occupant `nick`'s presence (with `role`) to every occupant who gets it, and its
    /// self-presence (status 110 plus `self_codes`) to its own sessions. `only_self` sends
    /// nothing to the others.
    pub fn broadcast_presence(
        &self,
        ctx: &Ctx,
        nick: &str,
        role: Role,
        unavailable: bool,
        extra: &Extra<'_>,
        self_codes: &[u16],
    ) {
        let Some(o) = self.occupant(nick) else {
            return;
        };
        self.broadcast_presence_of(ctx, o, role, unavailable, extra, self_codes, true);
    }

    /// [`Room::broadcast_presence`] for an occupant that may already have been removed.
    #[allow(clippy::too_many_arguments)]
    pub fn broadcast_presence_of(
        &self,
        ctx: &Ctx,
        o: &Occupant,
        role: Role,
        unavailable: bool,
        extra: &Extra<'_>,
        self_codes: &[u16],
        to_others: bool,
    ) {
        let mut out = Vec::with_capacity(256);
        let ty = StanzaType::Presence(if unavailable {
            PresenceType::Unavailable
        } else {
            PresenceType::Available
        });
        // MUC-JOIN-04: the others, unless presencebroadcast leaves this role out (an
        // unavailable presence is always sent: occupants must learn who left).
        let to_others = to_others
            && (unavailable
                || self.config.presence_broadcast.contains(role)
                || self.config.presence_broadcast.contains(o.role));
        for r in &self.occupants {
            if r.nick == o.nick {
                continue;
            }
            if !to_others {
                break;
            }
            let with_jid = self.sees_jids(r.role);
            for s in &r.sessions {
                out.clear();
                self.write_presence(&mut out, o, role, s, unavailable, with_jid, extra, &[]);
                route(ctx, ty, &o.jid, s, &out);
            }
        }
        // MUC-JOIN-03: 110 on the self-presence, which the user always sees with its JID.
        let mut codes: SmallVec<[u16; 4]> = SmallVec::new();
        codes.push(110);
        codes.extend_from_slice(self_codes);
        for s in &o.sessions {
            out.clear();
            self.write_presence(&mut out, o, role, s, unavailable, true, extra, &codes);
            route(ctx, ty, &o.jid, s, &out);
        }
    }

    /// Sends the presence of every other occupant to one session (a join, MUC-JOIN-01).
    pub fn send_occupants_to(&self, ctx: &Ctx, session: &str, viewer: Role, except: &str) {
        let mut out = Vec::with_capacity(256);
        let with_jid = self.sees_jids(viewer);
        let ty = StanzaType::Presence(PresenceType::Available);
        for o in &self.occupants {
            if o.nick == except || !self.config.presence_broadcast.contains(o.role) {
                continue;
            }
            out.clear();
            self.write_presence(
                &mut out,
                o,
                o.role,
                session,
                false,
                with_jid,
                &Extra::default(),
                &[],
            );
            route(ctx, ty, &o.jid, session, &out);
        }
    }

    /// Sends history by `req` to one session (MUC-HIST-01/02/03).
    pub fn send_history_to(&self, ctx: &Ctx, session: &str, req: &HistoryRequest, now: u64) {
        // The room keeps at most its history length, which is the default amount
        // (MUC-HIST-03): no request gets more than that.
        let maxstanzas = req.maxstanzas.unwrap_or(usize::MAX);
        let mut chars = 0usize;
        let mut picked = 0usize;
        for h in self.history.iter().rev() {
            if picked >= maxstanzas {
                break;
            }
            if let Some(sec) = req.seconds {
                if h.at + sec.saturating_mul(1000) < now {
                    break;
                }
            }
            if let Some(since) = req.since {
                if h.at <= since {
                    break;
                }
            }
            if let Some(max) = req.maxchars {
                // Whole stanzas only: the one that would pass the limit is not sent.
                let len = self.history_stanza_len(h, session);
                if chars + len > max {
                    break;
                }
                chars += len;
            }
            picked += 1;
        }
        let start = self.history.len() - picked;
        let mut out = Vec::with_capacity(512);
        for h in self.history.iter().skip(start) {
            out.clear();
            self.write_history(&mut out, h, session);
            route(
                ctx,
                StanzaType::Message(MessageType::Groupchat),
                &h.from,
                session,
                &out,
            );
        }
    }

    fn history_stanza_len(&self, h: &Hist, to: &str) -> usize {
        let mut out = Vec::with_capacity(256);
        self.write_history(&mut out, h, to);
        String::from_utf8_lossy(&out).chars().count()
    }

    fn write_history(&self, out: &mut Vec<u8>, h: &Hist, to: &str) {
        write_message_head(
            out,
            &h.from,
            to,
            "groupchat",
            Some(&h.id),
            h.lang.as_deref(),
        );
        out.extend_from_slice(&h.payload);
        write_delay(out, &self.jid, h.at);
        out.extend_from_slice(b"</message>");
    }

    /// Sends the subject to one session (MUC-SUBJ-01).
    pub fn send_subject_to(&self, ctx: &Ctx, session: &str) {
        let from = if self.subject.by.is_empty() {
            self.jid.clone()
        } else {
            self.occupant_jid(&self.subject.by)
        };
        let mut out = Vec::with_capacity(256);
        let id = random_id();
        write_message_head(&mut out, &from, session, "groupchat", Some(&id), None);
        if self.subject.text.is_empty() {
            out.extend_from_slice(b"<subject/>");
        } else {
            out.extend_from_slice(b"<subject>");
            escape_text(&self.subject.text, &mut out);
            out.extend_from_slice(b"</subject>");
        }
        if self.subject.at != 0 {
            write_delay(&mut out, &self.jid, self.subject.at);
        }
        out.extend_from_slice(b"</message>");
        route(
            ctx,
            StanzaType::Message(MessageType::Groupchat),
            &from,
            session,
            &out,
        );
    }

    /// Adds a reflected message to the history, within the room's length and `max_bytes`.
    pub fn remember(&mut self, h: Hist, max_bytes: usize) {
        let keep = self.config.history_length as usize;
        if keep == 0 || h.cost() > max_bytes {
            return;
        }
        self.history_bytes += h.cost();
        self.history.push_back(h);
        while self.history.len() > keep || self.history_bytes > max_bytes {
            match self.history.pop_front() {
                Some(old) => self.history_bytes -= old.cost(),
                None => break,
            }
        }
    }

    /// Trims the history to a new length.
    pub fn trim_history(&mut self) {
        let keep = self.config.history_length as usize;
        while self.history.len() > keep {
            match self.history.pop_front() {
                Some(old) => self.history_bytes -= old.cost(),
                None => break,
            }
        }
    }

    /// Sends a message written per recipient by `write(out, to)` to every session.
    pub fn to_all(
        &self,
        ctx: &Ctx,
        ty: StanzaType,
        from: &str,
        mut write: impl FnMut(&mut Vec<u8>, &Session),
    ) {
        let mut out = Vec::with_capacity(512);
        for o in &self.occupants {
            for s in &o.sessions {
                out.clear();
                write(&mut out, s);
                route(ctx, ty, from, &s.jid, &out);
            }
        }
    }

    /// Adds an occupant (a join).
    pub fn add_occupant(&mut self, o: Occupant) {
        for s in &o.sessions {
            self.sessions.insert(s.jid.clone(), o.nick.clone());
        }
        self.occupants.push(o);
    }

    /// Removes an occupant with all its sessions.
    pub fn remove_occupant(&mut self, nick: &str) -> Option<Occupant> {
        let i = self.occupant_index(nick)?;
        let o = self.occupants.remove(i);
        for s in &o.sessions {
            self.sessions.remove(&s.jid);
        }
        Some(o)
    }

    /// Removes one session; returns the occupant if it was the last one (removed too).
    pub fn remove_session(&mut self, full: &str) -> Option<Option<Occupant>> {
        let nick = self.sessions.remove(full)?;
        let i = self.occupant_index(&nick)?;
        let o = self.occupants.get_mut(i)?;
        o.sessions.retain(|s| s.jid != full);
        if o.sessions.is_empty() {
            return Some(Some(self.occupants.remove(i)));
        }
        Some(None)
    }

    /// Renames an occupant.
    pub fn rename(&mut self, old: &str, new: &str) {
        let jid = self.occupant_jid(new);
        if let Some(o) = self.occupants.iter_mut().find(|o| o.nick == old) {
            o.nick = new.to_owned();
            o.jid = jid;
            for s in &o.sessions {
                self.sessions.insert(s.jid.clone(), new.to_owned());
            }
        }
    }

    /// Sets an occupant's role.
    pub fn set_role(&mut self, nick: &str, role: Role) {
        if let Some(o) = self.occupants.iter_mut().find(|o| o.nick == nick) {
            o.role = role;
        }
    }

    /// The role an occupant of `bare` gets on entering.
    pub fn default_role(&self, bare: &str) -> Role {
        perm::default_role(self.affiliation(bare), self.config.moderated)
    }
}

/// Serializes a presence's children for rebroadcast: everything but MUC elements (the room
/// writes its own muc#user data, MUC-MSG-07).
pub fn presence_payload(p: &Element) -> Vec<u8> {
    let mut out = Vec::new();
    for c in &p.children {
        if let Node::Element(e) = c {
            if e.ns == super::NS_MUC || e.ns == NS_USER {
                continue;
            }
            e.write_to(&mut out, ns::CLIENT);
        }
    }
    out
}

/// `<message from to type id xml:lang>` (open).
pub fn write_message_head(
    out: &mut Vec<u8>,
    from: &str,
    to: &str,
    ty: &str,
    id: Option<&str>,
    lang: Option<&str>,
) {
    out.extend_from_slice(b"<message from='");
    escape_attr(from, out);
    out.extend_from_slice(b"' to='");
    escape_attr(to, out);
    out.extend_from_slice(b"' type='");
    out.extend_from_slice(ty.as_bytes());
    out.push(b'\'');
    if let Some(id) = id {
        out.push(b' ');
        write_attr("id", id, out);
    }
    if let Some(l) = lang {
        out.push(b' ');
        write_attr("xml:lang", l, out);
    }
    out.push(b'>');
}

/// `<delay xmlns='urn:xmpp:delay' from stamp/>` (XEP-0203).
pub fn write_delay(out: &mut Vec<u8>, from: &str, at_ms: u64) {
    out.extend_from_slice(b"<delay xmlns='urn:xmpp:delay' from='");
    escape_attr(from, out);
    out.extend_from_slice(b"' stamp='");
    out.extend_from_slice(crate::util::xep0082_datetime(at_ms).as_bytes());
    out.extend_from_slice(b"'/>");
}

/// A random stanza id.
pub fn random_id() -> String {
    let mut b = [0u8; 8];
    crate::util::random_bytes(&mut b);
    crate::util::hex(&b)
}

/// Routes one stanza the room wrote.
pub fn route(ctx: &Ctx, ty: StanzaType, from: &str, to: &str, stanza: &[u8]) {
    ctx.route(
        ty,
        Route::new(JidStr::trusted(from), JidStr::trusted(to)),
        stanza,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0082_datetimes_parse_to_unix_ms() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_datetime("2002-10-13T23:58:37Z"),
            Some(1_034_553_517_000)
        );
        assert_eq!(
            parse_datetime("2002-10-13T23:58:37.250Z"),
            Some(1_034_553_517_250)
        );
        assert_eq!(
            parse_datetime("2002-10-14T01:58:37+02:00"),
            Some(1_034_553_517_000)
        );
        for bad in [
            "",
            "2002-10-13",
            "2002-13-13T00:00:00Z",
            "2002-10-13T00:00:00",
            "x002-10-13T00:00:00Z",
            "2002-10-13T00:00:00.Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        // Round trip with the writer.
        let t = 1_796_000_123_456;
        assert_eq!(parse_datetime(&crate::util::xep0082_datetime(t)), Some(t));
    }
}
