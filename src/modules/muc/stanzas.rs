//! XEP-0045 §7 and §17: what a room does with the presence, messages and IQs addressed to it
//! (`room@service`) and to its occupants (`room@service/nick`).

use smallvec::SmallVec;

use super::directory::Refusal;
use super::perm::{self, Affiliation, Role};
use super::room::{
    self, presence_payload, random_id, route, write_message_head, Extra, Hist, HistoryRequest,
    Occupant, Room, Session,
};
use super::{refused, Muc, NS_MUC, NS_REQUEST, NS_USER};
use crate::core::events::Inbound;
use crate::core::{Ctx, Pending};
use crate::xml::{escape_attr, escape_text, write_attr};
use crate::xml::{Element, Node};
use crate::xmpp::dataform::{self, Form};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::JidStr;
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, MessageType, PresenceType, StanzaType};

/// Error conditions that show an occupant's session is gone (§18.1.2, MUC-EXIT-06). Our own
/// router answers a groupchat message for a session that no longer exists with
/// `service-unavailable` (RFC 6121 §8.5.3.2.1), so that counts too.
const GHOST_CONDITIONS: &[&str] = &[
    "gone",
    "item-not-found",
    "recipient-unavailable",
    "redirect",
    "remote-server-not-found",
    "remote-server-timeout",
    "service-unavailable",
];

/// The most mediated invitations one message may carry.
const MAX_INVITES: usize = 16;

/// The longest `service \0 room` a new room may have (LMDB's key limit is 511 bytes).
const MAX_ROOM_KEY: usize = 511;

impl Muc {
    /// Makes sure a stored room is in memory; whether the room exists.
    pub(crate) fn load(&self, ctx: &Ctx, local: &str) -> Result<bool, StanzaError> {
        if self.rooms.borrow().contains_key(local) {
            return Ok(true);
        }
        let stored = ctx
            .storage()
            .muc()
            .room(&self.domain, local)
            .map_err(|e| crate::core::storage_failure("reading a room", local, &e))?;
        let Some(record) = stored else {
            return Ok(false);
        };
        let room = self.room_from_record(local, &record).ok_or_else(|| {
            tracing::warn!(
                room = local,
                service = self.domain,
                "stored room unreadable"
            );
            StanzaError::new(StanzaCondition::InternalServerError)
        })?;
        self.rooms.borrow_mut().insert(local.into(), room);
        Ok(true)
    }

    /// A stanza for `room@service`.
    pub(crate) fn to_room(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        exists: bool,
        el: &Element,
    ) -> Option<Pending> {
        let id = el.attr("id");
        match s.ty {
            StanzaType::Presence(PresenceType::Available) => {
                // MUC-JOIN-05: a join needs a nick.
                let e = StanzaError::with_text(
                    StanzaCondition::JidMalformed,
                    "join with room@service/nick",
                );
                join_error(ctx, s, id, &e);
                None
            }
            // §7.14 addresses the occupant JID; clients such as aioxmpp send it to the room
            // itself, and it means the same from an occupant's session.
            StanzaType::Presence(PresenceType::Unavailable) => {
                if exists {
                    self.leave(ctx, local, s.route.from.as_str(), el);
                }
                None
            }
            StanzaType::Presence(_) => None,
            StanzaType::Message(MessageType::Error) => {
                self.ghost(ctx, s, local, el);
                None
            }
            StanzaType::Message(ty) => {
                let mut rooms = self.rooms.borrow_mut();
                let Some(room) = rooms.get_mut(local).filter(|r| exists && !r.locked_for(s)) else {
                    // MUC-MSG-05.
                    ctx.bounce(
                        refused(s, id),
                        StanzaError::new(StanzaCondition::ItemNotFound),
                    );
                    return None;
                };
                if ty == MessageType::Groupchat {
                    return self.groupchat(ctx, s, room, el);
                }
                drop(rooms);
                self.room_message(ctx, s, local, el);
                None
            }
            StanzaType::Iq(IqType::Get | IqType::Set) => self.room_iq(ctx, s, local, exists, el),
            StanzaType::Iq(_) => None,
        }
    }

    /// A stanza for `room@service/nick`.
    pub(crate) fn to_occupant(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        nick: &str,
        exists: bool,
        el: &Element,
    ) -> Option<Pending> {
        match s.ty {
            StanzaType::Presence(PresenceType::Available) => {
                self.presence_available(ctx, s, local, nick, exists, el)
            }
            StanzaType::Presence(PresenceType::Unavailable) => {
                if exists {
                    self.leave(ctx, local, s.route.from.as_str(), el);
                }
                None
            }
            StanzaType::Presence(PresenceType::Error) | StanzaType::Message(MessageType::Error) => {
                self.ghost(ctx, s, local, el);
                None
            }
            // MUC-EXIT-04: probes and subscriptions are neither joins nor exits.
            StanzaType::Presence(_) => None,
            StanzaType::Message(ty) => {
                self.private_message(ctx, s, local, nick, exists, ty, el);
                None
            }
            StanzaType::Iq(_) => {
                self.occupant_iq(ctx, s, local, nick, exists, el);
                None
            }
        }
    }

    /// Available presence to an occupant JID: a join, a nick change, a presence update or a
    /// resync.
    fn presence_available(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        nick: &str,
        exists: bool,
        el: &Element,
    ) -> Option<Pending> {
        let from = s.route.from.as_str();
        let id = el.attr("id");
        let muc_x = el.child("x", NS_MUC);
        let mut rooms = self.rooms.borrow_mut();
        let current = rooms.get(local).and_then(|r| r.sessions.get(from).cloned());
        match (current, exists) {
            (Some(cur), true) => {
                let room = rooms.get_mut(local)?;
                if cur == nick {
                    if muc_x.is_some() {
                        // MUC-JOIN-18: a full resync.
                        let role = room.occupant(nick).map_or(Role::None, |o| o.role);
                        let hist =
                            HistoryRequest::parse(muc_x.and_then(|x| x.child("history", NS_MUC)));
                        self.send_join_sequence(ctx, room, nick, from, role, &hist, &[], false);
                    } else {
                        // MUC-NICK-03: a status change.
                        let payload = presence_payload(el);
                        let role = match room.occupants.iter_mut().find(|o| o.nick == nick) {
                            Some(o) => {
                                o.payload = payload;
                                o.role
                            }
                            None => return None,
                        };
                        room.broadcast_presence(ctx, nick, role, false, &Extra::default(), &[]);
                    }
                } else {
                    self.change_nick(ctx, s, room, &cur, nick, el);
                }
                None
            }
            _ if muc_x.is_none() => {
                // MUC-JOIN-19: not an occupant and no muc <x/>: told it is not in the room.
                drop(rooms);
                let mut out = Vec::with_capacity(256);
                let occ = format!("{local}@{}/{nick}", self.domain);
                out.extend_from_slice(b"<presence type='unavailable' from='");
                escape_attr(&occ, &mut out);
                out.extend_from_slice(b"' to='");
                escape_attr(from, &mut out);
                out.extend_from_slice(b"'><x xmlns='");
                out.extend_from_slice(NS_USER.as_bytes());
                out.extend_from_slice(
                    b"'><item affiliation='none' role='none'/><status code='110'/>\
                      <status code='307'/><status code='333'/></x></presence>",
                );
                route(
                    ctx,
                    StanzaType::Presence(PresenceType::Unavailable),
                    &occ,
                    from,
                    &out,
                );
                None
            }
            _ => {
                drop(rooms);
                if let Err(e) = self.join(ctx, s, local, nick, exists, el) {
                    join_error(ctx, s, id, &e);
                }
                None
            }
        }
    }

    /// §7.2: a user enters (or creates, §10.1.1) a room.
    fn join(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        nick: &str,
        exists: bool,
        el: &Element,
    ) -> Result<(), StanzaError> {
        let from = s.route.from.as_str();
        let bare = s.route.from.bare().as_str();
        // MUC-JOIN-21: a nick of spaces only is no nick.
        if nick.trim().is_empty() {
            return Err(StanzaError::with_text(
                StanzaCondition::JidMalformed,
                "empty nick",
            ));
        }
        let x = el.child("x", NS_MUC);
        let password = x
            .and_then(|x| x.child("password", NS_MUC))
            .map(Element::text);
        let hist = HistoryRequest::parse(x.and_then(|x| x.child("history", NS_MUC)));
        let mut created = false;
        if !exists {
            self.create_room(ctx, local, bare)?;
            created = true;
        }
        let mut rooms = self.rooms.borrow_mut();
        let room = rooms
            .get_mut(local)
            .ok_or_else(|| StanzaError::new(StanzaCondition::ItemNotFound))?;
        let aff = room.affiliation(bare);
        // MUC-JOIN-12: a locked room exists for its owners only.
        if room.locked && aff != Affiliation::Owner {
            return Err(StanzaError::with_text(
                StanzaCondition::ItemNotFound,
                "the room is not configured yet",
            ));
        }
        // MUC-JOIN-08.
        if aff == Affiliation::Outcast {
            return Err(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "you are banned from this room",
            ));
        }
        // MUC-JOIN-07.
        if room.config.members_only && aff < Affiliation::Member {
            return Err(StanzaError::with_text(
                StanzaCondition::RegistrationRequired,
                "members only",
            ));
        }
        // MUC-JOIN-09.
        if room.nick_conflict(nick, bare) {
            return Err(StanzaError::with_text(
                StanzaCondition::Conflict,
                "that nick is taken",
            ));
        }
        let multi = room.occupant(nick).is_some_and(|o| o.bare == bare);
        if !multi {
            // MUC-JOIN-11: full for ordinary users; admins and owners get some overflow, never
            // past the service's bound plus the same margin.
            let svc = self.cfg.max_occupants as usize;
            let limit = room.config.max_users.map_or(svc, |m| (m as usize).min(svc));
            let privileged = aff >= Affiliation::Admin;
            let cap = if privileged {
                limit + (limit / 10).max(5)
            } else {
                limit
            };
            if room.occupants.len() >= cap {
                return Err(StanzaError::with_text(
                    StanzaCondition::ServiceUnavailable,
                    "the room is full",
                ));
            }
        }
        // MUC-JOIN-06 (owners and admins are not asked).
        if let Some(secret) = &room.config.password {
            if aff < Affiliation::Admin && password.as_deref() != Some(secret.as_str()) {
                return Err(StanzaError::with_text(
                    StanzaCondition::NotAuthorized,
                    "a password is required",
                ));
            }
        }
        let payload = presence_payload(el);
        let role = if multi {
            room.occupant(nick).map_or(Role::None, |o| o.role)
        } else {
            room.default_role(bare)
        };
        if multi {
            if let Some(o) = room.occupants.iter_mut().find(|o| o.nick == nick) {
                o.sessions.push(Session::new(from));
                o.payload = payload;
            }
            room.sessions.insert(from.to_owned(), nick.to_owned());
        } else {
            room.add_occupant(Occupant {
                nick: nick.to_owned(),
                jid: room.occupant_jid(nick),
                bare: bare.to_owned(),
                sessions: SmallVec::from_iter([Session::new(from)]),
                role,
                payload,
            });
        }
        let mut codes: SmallVec<[u16; 4]> = SmallVec::new();
        if room.config.whois == super::config::Whois::Anyone {
            codes.push(100);
        }
        if created {
            codes.push(201);
        }
        self.send_join_sequence(ctx, room, nick, from, role, &hist, &codes, !multi);
        Ok(())
    }

    /// MUC-JOIN-01: the others' presence, then the joiner's (broadcast when `broadcast`, with
    /// its self-presence last), then history, then the subject.
    #[allow(clippy::too_many_arguments)]
    fn send_join_sequence(
        &self,
        ctx: &Ctx,
        room: &Room,
        nick: &str,
        session: &str,
        role: Role,
        hist: &HistoryRequest,
        codes: &[u16],
        broadcast: bool,
    ) {
        room.send_occupants_to(ctx, session, role, nick);
        let Some(o) = room.occupant(nick) else {
            return;
        };
        if broadcast {
            room.broadcast_presence(ctx, nick, role, false, &Extra::default(), codes);
        } else {
            // One session resynchronizing or joining as another session of the same nick:
            // only it gets the self-presence.
            let only = Occupant {
                sessions: SmallVec::from_iter([Session::new(session)]),
                ..o.clone()
            };
            room.broadcast_presence_of(ctx, &only, role, false, &Extra::default(), codes, false);
        }
        room.send_history_to(ctx, session, hist, crate::util::now_unix_ms());
        room.send_subject_to(ctx, session);
    }

    /// §10.1.1: a new room, locked, with its creator as owner.
    fn create_room(&self, ctx: &Ctx, local: &str, creator: &str) -> Result<(), StanzaError> {
        // A room is stored under `service \0 room`, and LMDB keys hold at most 511 bytes.
        if local.len() + self.domain.len() + 1 > MAX_ROOM_KEY {
            return Err(StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                "room name too long",
            ));
        }
        // MUC-JOIN-13: only users of a served domain create rooms.
        let creator_domain = JidStr::trusted(creator).domain();
        if !ctx.config().domains.iter().any(|d| d == creator_domain) {
            return Err(StanzaError::with_text(
                StanzaCondition::NotAllowed,
                "only local users create rooms",
            ));
        }
        let verdict = self
            .cfg
            .directory
            .create(
                ctx.storage(),
                &self.domain,
                local,
                creator,
                self.cfg.max_rooms,
                self.cfg.max_rooms_per_user,
            )
            .map_err(|e| crate::core::storage_failure("creating a room", local, &e))?;
        match verdict {
            Ok(()) => {}
            Err(Refusal::ServiceFull) => {
                return Err(StanzaError::with_text(
                    StanzaCondition::ResourceConstraint,
                    "the service holds as many rooms as it may",
                ))
            }
            Err(Refusal::UserFull) => {
                return Err(StanzaError::with_text(
                    StanzaCondition::NotAllowed,
                    "you own as many rooms as you may",
                ))
            }
        }
        let mut room = Room::new(
            local,
            &self.domain,
            super::config::RoomConfig::new(&self.cfg.bounds()),
        );
        room.set_affiliation(creator, Affiliation::Owner, None);
        self.rooms.borrow_mut().insert(local.into(), room);
        Ok(())
    }

    /// §7.6: a nick change.
    fn change_nick(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        room: &mut Room,
        old: &str,
        new: &str,
        el: &Element,
    ) {
        let bare = s.route.from.bare().as_str();
        if new.trim().is_empty() {
            join_error(
                ctx,
                s,
                el.attr("id"),
                &StanzaError::new(StanzaCondition::JidMalformed),
            );
            return;
        }
        // MUC-NICK-02 (the XEP's example carries the muc <x/> like a join error).
        if room.nick_conflict(new, bare) || room.occupant(new).is_some() {
            let e = StanzaError::with_text(StanzaCondition::Conflict, "that nick is taken");
            join_error(ctx, s, el.attr("id"), &e);
            return;
        }
        let Some(o) = room.occupant(old).cloned() else {
            return;
        };
        // MUC-NICK-01: unavailable from the old nick with 303 and the new nick, then available
        // from the new one.
        room.broadcast_presence(
            ctx,
            old,
            o.role,
            true,
            &Extra {
                codes: &[303],
                new_nick: Some(new),
                ..Extra::default()
            },
            &[],
        );
        room.rename(old, new);
        if let Some(o) = room.occupants.iter_mut().find(|o| o.nick == new) {
            o.payload = presence_payload(el);
        }
        room.broadcast_presence(ctx, new, o.role, false, &Extra::default(), &[]);
    }

    /// §7.14: a session leaves (MUC-EXIT-01/02); the room goes when it is temporary and
    /// empty (MUC-EXIT-05), or locked and left by its owner (MUC-OWN-05).
    pub(crate) fn leave(&self, ctx: &Ctx, local: &str, from: &str, el: &Element) {
        let mut rooms = self.rooms.borrow_mut();
        let Some(room) = rooms.get_mut(local) else {
            return;
        };
        let Some(nick) = room.sessions.get(from).cloned() else {
            // MUC-EXIT-03.
            return;
        };
        let payload = presence_payload(el);
        let Some(gone) = room.remove_session(from) else {
            return;
        };
        match gone {
            Some(mut o) => {
                // The leaving session hears it too (MUC-EXIT-01).
                o.sessions = SmallVec::from_iter([Session::new(from)]);
                o.payload = payload;
                let extra = Extra::default();
                room.broadcast_presence_of(ctx, &o, Role::None, true, &extra, &[], true);
            }
            None => {
                // Another session keeps the nick: only this one is told it left.
                if let Some(o) = room.occupant(&nick) {
                    let only = Occupant {
                        sessions: SmallVec::from_iter([Session::new(from)]),
                        payload,
                        ..o.clone()
                    };
                    room.broadcast_presence_of(
                        ctx,
                        &only,
                        Role::None,
                        true,
                        &Extra::default(),
                        &[],
                        false,
                    );
                }
            }
        }
        if room.occupants.is_empty() && (room.locked || !room.config.persistent) {
            drop(rooms);
            self.destroy(ctx, local);
        }
    }

    /// Forgets a room (its occupants must have been told).
    pub(crate) fn destroy(&self, ctx: &Ctx, local: &str) {
        let Some(room) = self.rooms.borrow_mut().remove(local) else {
            return;
        };
        self.cfg.directory.remove(&self.domain, local);
        if room.stored {
            let (service, local) = (self.domain.clone(), local.to_owned());
            let done = ctx
                .storage()
                .submit(move |txn| txn.delete_muc_room(&service, &local).map(|_| ()));
            glommio::spawn_local(async move {
                if let Err(e) = done.await {
                    tracing::warn!(error = %e, "a destroyed room's record was not removed");
                }
            })
            .detach();
        }
    }

    /// MUC-EXIT-06: an error from an occupant's session removes it with status 333: any
    /// presence error (a client that lost track of the room says so this way, as aioxmpp
    /// does), and a message error whose condition says the session is gone. The session is
    /// told too, in case it still exists.
    fn ghost(&self, ctx: &Ctx, s: &Inbound<'_>, local: &str, el: &Element) {
        let from = s.route.from.as_str();
        if s.ty == StanzaType::Message(MessageType::Error) {
            let cond = el
                .child("error", ns::CLIENT)
                .and_then(|e| e.elements().find(|c| c.ns == ns::STANZAS))
                .map(|c| c.name.clone());
            if !cond.is_some_and(|c| GHOST_CONDITIONS.contains(&c.as_str())) {
                return;
            }
        }
        let mut rooms = self.rooms.borrow_mut();
        let Some(room) = rooms.get_mut(local) else {
            return;
        };
        let Some(nick) = room.sessions.get(from).cloned() else {
            return;
        };
        let extra = Extra {
            codes: &[333],
            ..Extra::default()
        };
        match room.remove_session(from) {
            Some(Some(mut o)) => {
                o.sessions = SmallVec::from_iter([Session::new(from)]);
                room.broadcast_presence_of(ctx, &o, Role::None, true, &extra, &[], true);
            }
            Some(None) => {
                if let Some(o) = room.occupant(&nick) {
                    let only = Occupant {
                        sessions: SmallVec::from_iter([Session::new(from)]),
                        ..o.clone()
                    };
                    room.broadcast_presence_of(ctx, &only, Role::None, true, &extra, &[], false);
                }
            }
            None => return,
        }
        if room.occupants.is_empty() && (room.locked || !room.config.persistent) {
            drop(rooms);
            self.destroy(ctx, local);
        }
    }

    /// §7.4: a groupchat message, reflected to every occupant (MUC-MSG-01..04, 07), or a
    /// subject change (§8.1).
    fn groupchat(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        room: &mut Room,
        el: &Element,
    ) -> Option<Pending> {
        let from = s.route.from.as_str();
        let id = el.attr("id");
        let Some(o) = room.occupant_of(from) else {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    "only occupants may send to the room",
                ),
            );
            return None;
        };
        let (role, occ_jid, nick) = (o.role, o.jid.clone(), o.nick.clone());
        let subject = el.child("subject", ns::CLIENT);
        let has_body = el.child("body", ns::CLIENT).is_some();
        if let (Some(subject), false) = (subject, has_body) {
            // MUC-SUBJ-02/03.
            if !perm::may_change_subject(role, room.config.change_subject) {
                ctx.bounce(
                    refused(s, id),
                    StanzaError::with_text(
                        StanzaCondition::Forbidden,
                        "you may not change the subject",
                    ),
                );
                return None;
            }
            room.subject = room::Subject {
                text: subject.text(),
                by: nick,
                at: crate::util::now_unix_ms(),
            };
            return self.reflect_subject(ctx, s, room, &occ_jid, el);
        }
        // MUC-MSG-03.
        if !perm::may_speak(role) {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(
                    StanzaCondition::Forbidden,
                    "you have no voice in this room",
                ),
            );
            return None;
        }
        self.reflect(ctx, room, &occ_jid, el, has_body);
        None
    }

    /// Sends a groupchat message from `occ_jid` to every occupant, keeping its id
    /// (MUC-MSG-02) and dropping client-supplied muc#user data (MUC-MSG-07).
    fn reflect(&self, ctx: &Ctx, room: &mut Room, occ_jid: &str, el: &Element, keep: bool) {
        let r = Reflection::new(occ_jid, el);
        let ty = StanzaType::Message(MessageType::Groupchat);
        room.to_all(ctx, ty, occ_jid, |out, to| r.write(out, to));
        if keep {
            let h = Hist {
                at: crate::util::now_unix_ms(),
                from: occ_jid.to_owned(),
                id: r.id,
                lang: r.lang,
                payload: r.payload,
            };
            room.remember(h, self.cfg.max_history_bytes);
        }
    }

    /// Reflects a subject change. A persistent room's is reflected (acknowledged) once it is
    /// durable; the room holds the new subject already, so joins meanwhile see it.
    fn reflect_subject(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        room: &mut Room,
        occ_jid: &str,
        el: &Element,
    ) -> Option<Pending> {
        let Some(done) = self.persist(ctx, room) else {
            self.reflect(ctx, room, occ_jid, el, false);
            return None;
        };
        let r = Reflection::new(occ_jid, el);
        let mut copies: Vec<(String, Vec<u8>)> = Vec::new();
        for to in room.occupants.iter().flat_map(|o| &o.sessions) {
            let mut out = Vec::with_capacity(r.head.len() + r.tail.len() + to.attr.len());
            r.write(&mut out, to);
            copies.push((to.jid.clone(), out));
        }
        let (ctx, ty, occ_jid) = (ctx.clone(), s.ty, occ_jid.to_owned());
        let (from, room_jid) = (s.route.from.as_str().to_owned(), room.jid.clone());
        let id = el.attr("id").map(str::to_owned);
        Some(Box::pin(async move {
            match done.await {
                Ok(()) => {
                    let ty = StanzaType::Message(MessageType::Groupchat);
                    for (to, out) in copies {
                        route(&ctx, ty, &occ_jid, &to, &out);
                    }
                }
                // Not stored, so not acknowledged: the sender learns it failed.
                Err(e) => ctx.bounce(
                    crate::core::Refused {
                        ty,
                        id: id.as_deref(),
                        route: crate::core::Route::new(
                            JidStr::trusted(&from),
                            JidStr::trusted(&room_jid),
                        ),
                    },
                    e,
                ),
            }
        }))
    }

    /// A message of another type to the room: mediated invitations and declines (§7.8.2);
    /// anything else is `bad-request` (MUC-MSG-06).
    fn room_message(&self, ctx: &Ctx, s: &Inbound<'_>, local: &str, el: &Element) {
        let id = el.attr("id");
        let from = s.route.from.as_str();
        if let Some(form) = el
            .child("x", dataform::NS)
            .and_then(|x| Form::parse(x).ok())
            .filter(|f| f.form_type.as_deref() == Some(NS_REQUEST))
        {
            self.voice_request(ctx, s, local, &form);
            return;
        }
        let Some(x) = el.child("x", NS_USER) else {
            ctx.bounce(
                refused(s, id),
                StanzaError::new(StanzaCondition::BadRequest),
            );
            return;
        };
        let mut rooms = self.rooms.borrow_mut();
        let Some(room) = rooms.get_mut(local) else {
            return;
        };
        if let Some(decline) = x.child("decline", NS_USER) {
            // MUC-INV-03.
            let Some(to) = decline
                .attr("to")
                .and_then(|t| crate::xmpp::jid::Jid::parse(t).ok())
            else {
                ctx.bounce(
                    refused(s, id),
                    StanzaError::new(StanzaCondition::JidMalformed),
                );
                return;
            };
            let mut out = Vec::with_capacity(256);
            write_message_head(&mut out, &room.jid, to.as_str(), "normal", id, None);
            out.extend_from_slice(b"<x xmlns='");
            out.extend_from_slice(NS_USER.as_bytes());
            out.extend_from_slice(b"'><decline from='");
            escape_attr(s.route.from.bare().as_str(), &mut out);
            out.push(b'\'');
            write_reason_close(&mut out, decline, "decline");
            out.extend_from_slice(b"</x></message>");
            route(
                ctx,
                StanzaType::Message(MessageType::Normal),
                &room.jid,
                to.as_str(),
                &out,
            );
            return;
        }
        let invites: Vec<&Element> = x.elements().filter(|e| e.is("invite", NS_USER)).collect();
        if invites.is_empty() {
            ctx.bounce(
                refused(s, id),
                StanzaError::new(StanzaCondition::BadRequest),
            );
            return;
        }
        // One stanza may not fan out into thousands of invitations.
        if invites.len() > MAX_INVITES {
            let text = format!("at most {MAX_INVITES} invitations in one message");
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(StanzaCondition::NotAcceptable, &text),
            );
            return;
        }
        // MUC-INV-01/02.
        let Some(o) = room.occupant_of(from) else {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(StanzaCondition::NotAcceptable, "only occupants invite"),
            );
            return;
        };
        let inviter_aff = room.affiliation(&o.bare);
        if !perm::may_invite(
            inviter_aff,
            o.role,
            room.config.members_only,
            room.config.allow_invites,
        ) {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(
                    StanzaCondition::Forbidden,
                    "you may not invite to this room",
                ),
            );
            return;
        }
        let mut targets = Vec::new();
        for inv in &invites {
            match inv
                .attr("to")
                .and_then(|t| crate::xmpp::jid::Jid::parse(t).ok())
            {
                Some(j) => targets.push((j, *inv)),
                None => {
                    ctx.bounce(
                        refused(s, id),
                        StanzaError::new(StanzaCondition::JidMalformed),
                    );
                    return;
                }
            }
        }
        // Invitees of a members-only room become members: within the affiliation bound.
        let new_members = targets
            .iter()
            .filter(|(to, _)| room.affiliation(to.bare_str()) == Affiliation::None)
            .count();
        if room.config.members_only
            && room.affiliations.len() + new_members > self.cfg.max_affiliations
        {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(
                    StanzaCondition::ResourceConstraint,
                    "the room keeps as many affiliations as it may",
                ),
            );
            return;
        }
        let mut changed = false;
        for (to, inv) in targets {
            if room.config.members_only && room.affiliation(to.bare_str()) == Affiliation::None {
                room.set_affiliation(to.bare_str(), Affiliation::Member, None);
                changed = true;
            }
            let mut out = Vec::with_capacity(256);
            write_message_head(&mut out, &room.jid, to.as_str(), "normal", id, None);
            out.extend_from_slice(b"<x xmlns='");
            out.extend_from_slice(NS_USER.as_bytes());
            out.extend_from_slice(b"'><invite from='");
            escape_attr(from, &mut out);
            out.push(b'\'');
            write_reason_close(&mut out, inv, "invite");
            if let Some(p) = &room.config.password {
                out.extend_from_slice(b"<password>");
                escape_text(p, &mut out);
                out.extend_from_slice(b"</password>");
            }
            out.extend_from_slice(b"</x><body>");
            escape_text(
                &format!("{} invites you to the room {}", bare_of(from), room.jid),
                &mut out,
            );
            out.extend_from_slice(b"</body></message>");
            route(
                ctx,
                StanzaType::Message(MessageType::Normal),
                &room.jid,
                to.as_str(),
                &out,
            );
        }
        if changed {
            if let Some(done) = self.persist(ctx, room) {
                // The invitations went out at once (they are not acknowledgements); a failed
                // write of the new member is logged by storage_failure.
                glommio::spawn_local(async move {
                    let _ = done.await;
                })
                .detach();
            }
        }
    }

    /// §7.13 and §8.6 (MUC-MOD-07): a visitor's voice request goes to every moderator as an
    /// approval form; a moderator's submitted approval grants voice.
    fn voice_request(&self, ctx: &Ctx, s: &Inbound<'_>, local: &str, form: &Form) {
        let from = s.route.from.as_str();
        let mut rooms = self.rooms.borrow_mut();
        let Some(room) = rooms.get_mut(local) else {
            return;
        };
        let Some(sender) = room.occupant_of(from).cloned() else {
            ctx.bounce(
                refused(s, None),
                StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    "only occupants request voice",
                ),
            );
            return;
        };
        match form.boolean("muc#request_allow") {
            // An approval (or a refusal) from a moderator.
            Ok(Some(allow)) => {
                if sender.role != Role::Moderator {
                    ctx.bounce(
                        refused(s, None),
                        StanzaError::with_text(
                            StanzaCondition::Forbidden,
                            "only moderators approve voice",
                        ),
                    );
                    return;
                }
                let Some(nick) = form.value("muc#roomnick") else {
                    ctx.bounce(
                        refused(s, None),
                        StanzaError::new(StanzaCondition::BadRequest),
                    );
                    return;
                };
                let Some(target) = room.occupant(nick).cloned() else {
                    return;
                };
                if !allow || target.role != Role::Visitor {
                    return;
                }
                let actor = (room.affiliation(&sender.bare), sender.role);
                let subject = (room.affiliation(&target.bare), target.role);
                if perm::check_role_change(actor, subject, Role::Participant, false).is_err() {
                    return;
                }
                room.set_role(nick, Role::Participant);
                room.broadcast_presence(
                    ctx,
                    nick,
                    Role::Participant,
                    false,
                    &Extra::default(),
                    &[],
                );
            }
            Ok(None) => {
                // A request: only a visitor has something to ask for.
                if sender.role != Role::Visitor
                    || form.value("muc#role").is_some_and(|r| r != "participant")
                {
                    return;
                }
                let mut x = Vec::with_capacity(512);
                x.extend_from_slice(
                    b"<x xmlns='jabber:x:data' type='form'><title>Voice request</title>\
                      <instructions>To approve this request for voice, select the &quot;Grant \
                      voice to this person?&quot; checkbox and submit the form.</instructions>\
                      <field var='FORM_TYPE' type='hidden'><value>",
                );
                x.extend_from_slice(NS_REQUEST.as_bytes());
                x.extend_from_slice(
                    b"</value></field><field var='muc#role' type='list-single' \
                      label='Requested role'><value>participant</value></field>\
                      <field var='muc#jid' type='jid-single' label='User ID'><value>",
                );
                escape_text(
                    sender.sessions.first().map_or(&sender.bare, |j| &j.jid),
                    &mut x,
                );
                x.extend_from_slice(
                    b"</value></field><field var='muc#roomnick' type='text-single' \
                      label='Room Nickname'><value>",
                );
                escape_text(&sender.nick, &mut x);
                x.extend_from_slice(
                    b"</value></field><field var='muc#request_allow' type='boolean' \
                      label='Grant voice to this person?'><value>false</value></field></x>",
                );
                let id = random_id();
                let ty = StanzaType::Message(MessageType::Normal);
                for m in room.occupants.iter().filter(|o| o.role == Role::Moderator) {
                    for to in &m.sessions {
                        let mut out = Vec::with_capacity(x.len() + 128);
                        write_message_head(&mut out, &room.jid, to, "normal", Some(&id), None);
                        out.extend_from_slice(&x);
                        out.extend_from_slice(b"</message>");
                        route(ctx, ty, &room.jid, to, &out);
                    }
                }
            }
            Err(_) => ctx.bounce(
                refused(s, None),
                StanzaError::new(StanzaCondition::BadRequest),
            ),
        }
    }

    /// §7.5: a private message to an occupant (MUC-PM-01..05).
    #[allow(clippy::too_many_arguments)]
    fn private_message(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        nick: &str,
        exists: bool,
        ty: MessageType,
        el: &Element,
    ) {
        let id = el.attr("id");
        let from = s.route.from.as_str();
        let rooms = self.rooms.borrow();
        let Some(room) = rooms.get(local).filter(|r| exists && !r.locked_for(s)) else {
            ctx.bounce(
                refused(s, id),
                StanzaError::new(StanzaCondition::ItemNotFound),
            );
            return;
        };
        if ty == MessageType::Groupchat {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(StanzaCondition::BadRequest, "groupchat goes to the room"),
            );
            return;
        }
        let Some(sender) = room.occupant_of(from) else {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    "only occupants send private messages",
                ),
            );
            return;
        };
        let Some(target) = room.occupant(nick) else {
            ctx.bounce(
                refused(s, id),
                StanzaError::new(StanzaCondition::ItemNotFound),
            );
            return;
        };
        if !room.config.allow_pm.allows(sender.role) {
            ctx.bounce(
                refused(s, id),
                StanzaError::with_text(
                    StanzaCondition::Forbidden,
                    "private messages are not allowed here",
                ),
            );
            return;
        }
        let payload = reflected_payload(el);
        let lang = el.attr("xml:lang");
        let ty_name = ty_name(ty);
        let mut out = Vec::with_capacity(256);
        for to in &target.sessions {
            out.clear();
            write_message_head(&mut out, &sender.jid, to, ty_name, id, lang);
            out.extend_from_slice(&payload);
            out.extend_from_slice(b"<x xmlns='");
            out.extend_from_slice(NS_USER.as_bytes());
            out.extend_from_slice(b"'/></message>");
            route(ctx, StanzaType::Message(ty), &sender.jid, to, &out);
        }
    }

    /// IQs to an occupant JID: self-pings (XEP-0410), vCards (to the user's account) and
    /// anything else forwarded to the occupant's session, responses back (§17.4, MUC-IQ-01).
    fn occupant_iq(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        nick: &str,
        exists: bool,
        el: &Element,
    ) {
        let id = el.attr("id");
        let from = s.route.from.as_str();
        let rooms = self.rooms.borrow();
        let room = rooms.get(local).filter(|_| exists);
        let is_ping = el.child("ping", ns::PING).is_some();
        match s.ty {
            StanzaType::Iq(IqType::Result | IqType::Error) => {
                // A response from an occupant (its session, or its account for a vCard),
                // for the occupant `nick` who asked.
                let Some(room) = room else { return };
                let responder = room
                    .occupant_of(from)
                    .or_else(|| room.occupant_of_bare(from));
                let (Some(responder), Some(asker)) = (responder, room.occupant(nick)) else {
                    return;
                };
                let Some(to) = asker.sessions.first() else {
                    return;
                };
                let mut fwd = el.clone();
                fwd.set_attr("from", responder.jid.clone());
                fwd.set_attr("to", to.jid.clone());
                let mut out = Vec::with_capacity(256);
                fwd.write_to(&mut out, ns::CLIENT);
                route(ctx, s.ty, &responder.jid, to, &out);
            }
            _ => {
                let Some(room) = room.filter(|r| !r.locked_for(s)) else {
                    ctx.bounce(
                        refused(s, id),
                        StanzaError::new(StanzaCondition::ItemNotFound),
                    );
                    return;
                };
                let Some(sender) = room.occupant_of(from) else {
                    // MUC-SELFPING-01, MUC-DISCO-05.
                    let c = if is_ping {
                        StanzaCondition::NotAcceptable
                    } else {
                        StanzaCondition::BadRequest
                    };
                    ctx.bounce(
                        refused(s, id),
                        StanzaError::with_text(c, "not an occupant of this room"),
                    );
                    return;
                };
                let Some(target) = room.occupant(nick) else {
                    ctx.bounce(
                        refused(s, id),
                        StanzaError::new(StanzaCondition::ItemNotFound),
                    );
                    return;
                };
                if is_ping && target.nick == sender.nick {
                    // XEP-0410 §3.1: the room answers a self-ping itself.
                    self.answer(ctx, s.route, id, Ok(None));
                    return;
                }
                // A vCard request goes to the user's account, which answers for the user.
                let to = if el.child("vCard", "vcard-temp").is_some() {
                    target.bare.clone()
                } else {
                    match target.sessions.first() {
                        Some(t) => t.jid.clone(),
                        None => return,
                    }
                };
                let mut fwd = el.clone();
                fwd.set_attr("from", sender.jid.clone());
                fwd.set_attr("to", to.clone());
                let mut out = Vec::with_capacity(256);
                fwd.write_to(&mut out, ns::CLIENT);
                route(ctx, s.ty, &sender.jid, &to, &out);
            }
        }
    }
}

impl Room {
    /// Whether a locked room hides itself from this sender (everyone but its owners).
    pub(crate) fn locked_for(&self, s: &Inbound<'_>) -> bool {
        self.locked && self.affiliation(s.route.from.bare().as_str()) != Affiliation::Owner
    }
}

/// Refuses a join with a presence error that carries the muc `<x/>`, as the XEP's examples
/// do (§7.2.5–§7.2.10): clients such as slixmpp tell a join error from any other presence
/// error by it.
fn join_error(ctx: &Ctx, s: &Inbound<'_>, id: Option<&str>, e: &StanzaError) {
    let back = s.route.reply();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"<presence type='error' from='");
    escape_attr(back.from.as_str(), &mut out);
    out.extend_from_slice(b"' to='");
    escape_attr(back.to.as_str(), &mut out);
    out.push(b'\'');
    if let Some(id) = id {
        out.push(b' ');
        write_attr("id", id, &mut out);
    }
    out.extend_from_slice(b"><x xmlns='");
    out.extend_from_slice(NS_MUC.as_bytes());
    out.extend_from_slice(b"'/>");
    e.write_element(ctx.config().legacy_error_codes, &mut out);
    out.extend_from_slice(b"</presence>");
    ctx.route(StanzaType::Presence(PresenceType::Error), back, &out);
}

/// A groupchat message as the room reflects it: everything but `to` is the same for every
/// copy, so it is written (and escaped) once, and a copy is head, the recipient's escaped JID
/// and tail.
struct Reflection {
    head: Vec<u8>,
    tail: Vec<u8>,
    id: String,
    lang: Option<String>,
    payload: Vec<u8>,
}

impl Reflection {
    /// `el` from occupant JID `occ_jid`, with the client's id or a generated one (MUC-MSG-02)
    /// and without client-supplied muc#user data (MUC-MSG-07).
    fn new(occ_jid: &str, el: &Element) -> Reflection {
        let id = el.attr("id").map_or_else(random_id, str::to_owned);
        let lang = el.attr("xml:lang").map(str::to_owned);
        let payload = reflected_payload(el);
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(b"<message from='");
        escape_attr(occ_jid, &mut head);
        head.extend_from_slice(b"' to='");
        let mut tail = Vec::with_capacity(payload.len() + 96);
        tail.extend_from_slice(b"' type='groupchat' id='");
        escape_attr(&id, &mut tail);
        tail.push(b'\'');
        if let Some(l) = &lang {
            tail.push(b' ');
            write_attr("xml:lang", l, &mut tail);
        }
        tail.push(b'>');
        tail.extend_from_slice(&payload);
        tail.extend_from_slice(b"</message>");
        Reflection {
            head,
            tail,
            id,
            lang,
            payload,
        }
    }

    /// The copy for session `to`.
    fn write(&self, out: &mut Vec<u8>, to: &Session) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(to.attr.as_bytes());
        out.extend_from_slice(&self.tail);
    }
}

/// A message's children as a room reflects them: elements only, without muc#user data
/// (MUC-MSG-07).
pub(crate) fn reflected_payload(el: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for c in &el.children {
        if let Node::Element(e) = c {
            if e.ns == NS_USER {
                continue;
            }
            e.write_to(&mut out, ns::CLIENT);
        }
    }
    out
}

/// Closes an `<invite>`/`<decline>` start tag, with the `<reason/>` of `src` if it has one.
fn write_reason_close(out: &mut Vec<u8>, src: &Element, name: &str) {
    match src.child("reason", NS_USER) {
        Some(r) => {
            out.extend_from_slice(b"><reason>");
            escape_text(&r.text(), out);
            out.extend_from_slice(b"</reason></");
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
        }
        None => out.extend_from_slice(b"/>"),
    }
}

fn bare_of(jid: &str) -> &str {
    crate::xmpp::jid::bare_of(jid)
}

fn ty_name(ty: MessageType) -> &'static str {
    match ty {
        MessageType::Chat => "chat",
        MessageType::Groupchat => "groupchat",
        MessageType::Headline => "headline",
        MessageType::Error => "error",
        MessageType::Normal => "normal",
    }
}
