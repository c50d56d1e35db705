//! XEP-0045 §6 (room disco), §8 (moderators), §9 (admins) and §10 (owners): the IQs a room
//! answers, and how a persistent room is stored.
//!
//! A change that must outlive a crash (configuration, affiliations, the subject of a
//! persistent room) is applied to the room at once, so the stanzas that follow see it, and
//! acknowledged (the IQ result) only once the room's record is durable.

use smallvec::SmallVec;
use xmppd_storage::{MucAffiliation, MucRoom};

use super::config::{FormError, RoomConfig};
use super::perm::{self, Affiliation, Denied, Role};
use super::room::{Affil, Extra, Room, Subject};
use super::{refused, Muc, NS_ADMIN, NS_MUC, NS_OWNER, NS_STABLE_ID, NS_USER};
use crate::core::events::Inbound;
use crate::core::{Ctx, Pending};
use crate::xml::Element;
use crate::xml::{escape_text, write_attr};
use crate::xmpp::dataform;
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::Jid;
use crate::xmpp::ns;
use crate::xmpp::stanza::{IqType, MessageType, StanzaType};

impl From<Denied> for StanzaError {
    fn from(d: Denied) -> StanzaError {
        StanzaError::new(match d {
            Denied::Forbidden => StanzaCondition::Forbidden,
            Denied::NotAllowed => StanzaCondition::NotAllowed,
            Denied::Conflict => StanzaCondition::Conflict,
            Denied::BadRequest => StanzaCondition::BadRequest,
        })
    }
}

/// A room's write: resolves once durable, or with the error to answer.
pub(crate) type Durable =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StanzaError>>>>;

/// One change of a muc#admin set, checked.
enum Change {
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    Affiliation {
        jid: String,
        aff: Affiliation,
        reason: Option<String>,
    },
}

impl Muc {
    /// An IQ get or set to `room@service`.
    pub(crate) fn room_iq(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        exists: bool,
        el: &Element,
    ) -> Option<Pending> {
        let id = el.attr("id").map(str::to_owned);
        let Some(q) = el.elements().next() else {
            ctx.bounce(
                refused(s, id.as_deref()),
                StanzaError::new(StanzaCondition::BadRequest),
            );
            return None;
        };
        let from_bare = s.route.from.bare().as_str().to_owned();
        let hidden = !exists
            || self
                .rooms
                .borrow()
                .get(local)
                .is_none_or(|r| r.locked_for(s));
        if hidden {
            // A room that does not exist, or is locked for this user (§10.1.3).
            ctx.bounce(
                refused(s, id.as_deref()),
                StanzaError::new(StanzaCondition::ItemNotFound),
            );
            return None;
        }
        let get = s.ty == StanzaType::Iq(IqType::Get);
        let reply: Result<Option<Element>, StanzaError> =
            match (get, q.name.as_str(), q.ns.as_str()) {
                (true, "query", ns::DISCO_INFO) => self.room_info(local, &from_bare, q),
                (true, "query", ns::DISCO_ITEMS) => Ok(Some(self.room_items(local))),
                (true, "ping", ns::PING) => Ok(None),
                (true, "query", NS_ADMIN) => self.admin_get(local, s.route.from.as_str(), q),
                (false, "query", NS_ADMIN) => {
                    return self.admin_set(ctx, s, local, id, q);
                }
                (true, "query", NS_OWNER) => self.owner_get(local, &from_bare),
                (false, "query", NS_OWNER) => {
                    return self.owner_set(ctx, s, local, id, q);
                }
                // MUC-REG-01: registration is not offered.
                _ => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
            };
        self.answer(ctx, s.route, id.as_deref(), reply);
        None
    }

    /// MUC-DISCO-03, MUC-DISCO-06.
    fn room_info(
        &self,
        local: &str,
        from_bare: &str,
        q: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let room = self.room(local)?;
        let mut out = Element::new("query", ns::DISCO_INFO);
        match q.attr("node") {
            None => {}
            Some("x-roomuser-item") => {
                out.set_attr("node", "x-roomuser-item");
                if let Some(nick) = room
                    .affiliations
                    .get(from_bare)
                    .and_then(|a| a.nick.clone())
                {
                    out.push_child(
                        Element::new("identity", ns::DISCO_INFO)
                            .with_attr("category", "conference")
                            .with_attr("type", "text")
                            .with_attr("name", nick),
                    );
                }
                return Ok(Some(out));
            }
            Some(_) => return Err(StanzaError::new(StanzaCondition::ItemNotFound)),
        }
        let name = if room.config.name.is_empty() {
            room.local.clone()
        } else {
            room.config.name.clone()
        };
        out.push_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr("name", name),
        );
        let mut features: Vec<&str> = vec![
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            NS_MUC,
            NS_STABLE_ID,
            super::NS_SELF_PING,
            super::NS_REQUEST,
        ];
        features.extend(room.config.features());
        for f in features {
            out.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        out.push_child(
            room.config
                .roominfo(room.occupants.len(), &room.subject.text),
        );
        Ok(Some(out))
    }

    /// MUC-DISCO-04: occupants of a public room (occupant JIDs only), nothing otherwise.
    fn room_items(&self, local: &str) -> Element {
        let mut out = Element::new("query", ns::DISCO_ITEMS);
        let rooms = self.rooms.borrow();
        if let Some(room) = rooms.get(local).filter(|r| r.config.public) {
            for o in &room.occupants {
                out.push_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", o.jid.clone())
                        .with_attr("name", o.nick.clone()),
                );
            }
        }
        out
    }

    /// §8.5, §9.2, §9.5, §9.8, §10.5, §10.8: role and affiliation lists.
    fn admin_get(
        &self,
        local: &str,
        from: &str,
        q: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let room = self.room(local)?;
        let item = q
            .child("item", NS_ADMIN)
            .ok_or_else(|| StanzaError::new(StanzaCondition::BadRequest))?;
        let bare = crate::xmpp::jid::bare_of(from);
        let actor_aff = room.affiliation(bare);
        let actor_role = room.occupant_of(from).map_or(Role::None, |o| o.role);
        let mut out = Element::new("query", NS_ADMIN);
        match (item.attr("role"), item.attr("affiliation")) {
            (Some(_), Some(_)) => return Err(StanzaError::new(StanzaCondition::BadRequest)),
            (Some(role), None) => {
                let role = Role::parse(role)
                    .ok_or_else(|| StanzaError::new(StanzaCondition::BadRequest))?;
                perm::check_role_list_read((actor_aff, actor_role), role)?;
                for o in room.occupants.iter().filter(|o| o.role == role) {
                    // MUC-MOD-09: nick, role, affiliation and the full JID.
                    let mut i = Element::new("item", NS_ADMIN)
                        .with_attr("affiliation", room.affiliation(&o.bare).as_str())
                        .with_attr("nick", o.nick.clone())
                        .with_attr("role", role.as_str());
                    if let Some(s) = o.sessions.first() {
                        i.set_attr("jid", s.jid.clone());
                    }
                    out.push_child(i);
                }
            }
            (None, Some(aff)) => {
                let aff = Affiliation::parse(aff)
                    .ok_or_else(|| StanzaError::new(StanzaCondition::BadRequest))?;
                if aff == Affiliation::None {
                    return Err(StanzaError::new(StanzaCondition::BadRequest));
                }
                let members_public = room.config.get_member_list.contains(actor_role);
                perm::check_list_read((actor_aff, actor_role), aff, members_public)?;
                let mut list: Vec<(&String, &Affil)> = room
                    .affiliations
                    .iter()
                    .filter(|(_, a)| a.aff == aff)
                    .collect();
                list.sort_by(|a, b| a.0.cmp(b.0));
                for (jid, a) in list {
                    // MUC-MOD-09: affiliation and bare JID, the nick if reserved, no role.
                    let mut i = Element::new("item", NS_ADMIN)
                        .with_attr("affiliation", aff.as_str())
                        .with_attr("jid", jid.clone());
                    if let Some(n) = &a.nick {
                        i.set_attr("nick", n.clone());
                    }
                    if let Some(r) = &a.reason {
                        i.push_child(Element::new("reason", NS_ADMIN).with_text(r.clone()));
                    }
                    out.push_child(i);
                }
            }
            (None, None) => return Err(StanzaError::new(StanzaCondition::BadRequest)),
        }
        Ok(Some(out))
    }

    /// §8–§9: role and affiliation changes, checked as a batch (MUC-AFF-03) and applied in
    /// order.
    fn admin_set(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        id: Option<String>,
        q: &Element,
    ) -> Option<Pending> {
        let from = s.route.from.as_str();
        let checked = {
            let rooms = self.rooms.borrow();
            let room = rooms.get(local)?;
            self.check_changes(room, from, q)
        };
        let changes = match checked {
            Ok(c) => c,
            Err(e) => {
                ctx.bounce(refused(s, id.as_deref()), e);
                return None;
            }
        };
        let mut rooms = self.rooms.borrow_mut();
        let room = rooms.get_mut(local)?;
        let actor = room.occupant_of(from).map(|o| o.nick.clone());
        let mut affiliations_changed = false;
        for change in changes {
            match change {
                Change::Role { nick, role, reason } => {
                    apply_role(ctx, room, &nick, role, actor.as_deref(), reason.as_deref());
                }
                Change::Affiliation { jid, aff, reason } => {
                    affiliations_changed = true;
                    self.apply_affiliation(ctx, room, &jid, aff, actor.as_deref(), reason);
                }
            }
        }
        if !affiliations_changed {
            drop(rooms);
            self.answer(ctx, s.route, id.as_deref(), Ok(None));
            return None;
        }
        self.cfg.directory.update(
            &self.domain,
            local,
            room.config.public,
            &room.config.name,
            room.owner_list(),
        );
        let done = self.persist(ctx, room);
        drop(rooms);
        self.answer_after(ctx, s, id, done)
    }

    /// Checks every item of a muc#admin set against the room as it would be after the items
    /// before it; any refusal refuses the whole batch (MUC-AFF-03).
    fn check_changes(
        &self,
        room: &Room,
        from: &str,
        q: &Element,
    ) -> Result<Vec<Change>, StanzaError> {
        let bare = crate::xmpp::jid::bare_of(from);
        let actor_aff = room.affiliation(bare);
        let actor_role = room.occupant_of(from).map_or(Role::None, |o| o.role);
        let actor_nick = room.occupant_of(from).map(|o| o.nick.as_str());
        let mut affs: ahash::AHashMap<String, Affiliation> = ahash::AHashMap::new();
        let mut owners = room.owners();
        let mut count = room.affiliations.len();
        let mut changes = Vec::new();
        let items: Vec<&Element> = q.elements().filter(|e| e.is("item", NS_ADMIN)).collect();
        if items.is_empty() {
            return Err(StanzaError::new(StanzaCondition::BadRequest));
        }
        for item in items {
            let reason = item
                .child("reason", NS_ADMIN)
                .map(|r| r.text())
                .filter(|r| !r.is_empty());
            if reason.as_ref().is_some_and(|r| r.len() > self.cfg.max_text) {
                return Err(StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    "reason too long",
                ));
            }
            match (item.attr("role"), item.attr("affiliation")) {
                // MUC-MOD-08.
                (Some(_), Some(_)) | (None, None) => {
                    return Err(StanzaError::new(StanzaCondition::BadRequest))
                }
                (Some(role), None) => {
                    let role = Role::parse(role)
                        .ok_or_else(|| StanzaError::new(StanzaCondition::BadRequest))?;
                    let nick = item
                        .attr("nick")
                        .ok_or_else(|| StanzaError::new(StanzaCondition::BadRequest))?;
                    let target = room
                        .occupant(nick)
                        .ok_or_else(|| StanzaError::new(StanzaCondition::ItemNotFound))?;
                    let target_aff = affs
                        .get(&target.bare)
                        .copied()
                        .unwrap_or_else(|| room.affiliation(&target.bare));
                    perm::check_role_change(
                        (actor_aff, actor_role),
                        (target_aff, target.role),
                        role,
                        actor_nick == Some(nick),
                    )?;
                    changes.push(Change::Role {
                        nick: nick.to_owned(),
                        role,
                        reason,
                    });
                }
                (None, Some(aff)) => {
                    let aff = Affiliation::parse(aff)
                        .ok_or_else(|| StanzaError::new(StanzaCondition::BadRequest))?;
                    // MUC-AFF-08: a full JID means its bare JID.
                    let jid = item
                        .attr("jid")
                        .and_then(|j| Jid::parse(j).ok())
                        .ok_or_else(|| StanzaError::new(StanzaCondition::BadRequest))?;
                    let jid = jid.bare_str().to_owned();
                    let target = affs
                        .get(&jid)
                        .copied()
                        .unwrap_or_else(|| room.affiliation(&jid));
                    perm::check_affiliation_change(actor_aff, target, aff, jid == bare, owners)?;
                    if target == Affiliation::Owner && aff != Affiliation::Owner {
                        owners -= 1;
                    }
                    if aff == Affiliation::Owner && target != Affiliation::Owner {
                        owners += 1;
                    }
                    match (target == Affiliation::None, aff == Affiliation::None) {
                        (true, false) => count += 1,
                        (false, true) => count -= 1,
                        _ => {}
                    }
                    if count > self.cfg.max_affiliations {
                        return Err(StanzaError::with_text(
                            StanzaCondition::ResourceConstraint,
                            "the room keeps as many affiliations as it may",
                        ));
                    }
                    affs.insert(jid.clone(), aff);
                    changes.push(Change::Affiliation { jid, aff, reason });
                }
            }
        }
        Ok(changes)
    }

    /// Applies an affiliation change and tells the room (MUC-AFF-01, 04, 05).
    fn apply_affiliation(
        &self,
        ctx: &Ctx,
        room: &mut Room,
        jid: &str,
        aff: Affiliation,
        actor: Option<&str>,
        reason: Option<String>,
    ) {
        let old = room.affiliation(jid);
        room.set_affiliation(jid, aff, reason.clone());
        if old == aff {
            return;
        }
        let in_room: Vec<String> = room
            .occupants
            .iter()
            .filter(|o| o.bare == jid)
            .map(|o| o.nick.clone())
            .collect();
        for nick in in_room {
            let removal = if aff == Affiliation::Outcast {
                Some(301)
            } else if room.config.members_only && aff < Affiliation::Member {
                Some(321)
            } else {
                None
            };
            if let Some(code) = removal {
                let extra_codes = [code];
                if let Some(o) = room.remove_occupant(&nick) {
                    let extra = Extra {
                        codes: &extra_codes,
                        actor,
                        reason: reason.as_deref(),
                        ..Extra::default()
                    };
                    room.broadcast_presence_of(ctx, &o, Role::None, true, &extra, &[], true);
                }
            } else {
                let role = match aff {
                    Affiliation::Owner | Affiliation::Admin => Role::Moderator,
                    _ => {
                        let current = room.occupant(&nick).map_or(Role::None, |o| o.role);
                        if old >= Affiliation::Admin {
                            perm::default_role(aff, room.config.moderated)
                        } else {
                            current.max(perm::default_role(aff, room.config.moderated))
                        }
                    }
                };
                room.set_role(&nick, role);
                room.broadcast_presence(ctx, &nick, role, false, &Extra::default(), &[]);
            }
        }
    }

    /// MUC-OWN-03/06: the configuration form, for owners.
    fn owner_get(&self, local: &str, from_bare: &str) -> Result<Option<Element>, StanzaError> {
        let room = self.room(local)?;
        if room.affiliation(from_bare) != Affiliation::Owner {
            return Err(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "only owners configure the room",
            ));
        }
        let owners = room.list(Affiliation::Owner);
        let admins = room.list(Affiliation::Admin);
        let o: Vec<&str> = owners.iter().map(String::as_str).collect();
        let a: Vec<&str> = admins.iter().map(String::as_str).collect();
        let form = room.config.form(&self.cfg.bounds(), &o, &a);
        Ok(Some(Element::new("query", NS_OWNER).with_child(form)))
    }

    /// §10.1.2–§10.2, §10.9: configuration submitted or cancelled, or the room destroyed.
    fn owner_set(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        id: Option<String>,
        q: &Element,
    ) -> Option<Pending> {
        let from_bare = s.route.from.bare().as_str();
        let is_owner = self
            .rooms
            .borrow()
            .get(local)
            .is_some_and(|r| r.affiliation(from_bare) == Affiliation::Owner);
        if !is_owner {
            // MUC-OWN-06, MUC-OWN-10.
            ctx.bounce(
                refused(s, id.as_deref()),
                StanzaError::with_text(
                    StanzaCondition::Forbidden,
                    "only owners configure the room",
                ),
            );
            return None;
        }
        if let Some(d) = q.child("destroy", NS_OWNER) {
            return self.destroy_by_owner(ctx, s, local, id, d);
        }
        let Some(x) = q.child("x", dataform::NS) else {
            ctx.bounce(
                refused(s, id.as_deref()),
                StanzaError::new(StanzaCondition::BadRequest),
            );
            return None;
        };
        if x.attr("type") == Some("cancel") {
            let locked = self.rooms.borrow().get(local).is_some_and(|r| r.locked);
            if locked {
                // MUC-OWN-05: cancelling the initial configuration destroys the room.
                self.destroy_with_notice(ctx, local, None, None);
            }
            self.answer(ctx, s.route, id.as_deref(), Ok(None));
            return None;
        }
        let submitted = {
            let rooms = self.rooms.borrow();
            let room = rooms.get(local)?;
            room.config.apply(x, &self.cfg.bounds())
        };
        let sub = match submitted {
            Ok(sub) => sub,
            Err(FormError::BadRequest(t)) => {
                ctx.bounce(
                    refused(s, id.as_deref()),
                    StanzaError::with_text(StanzaCondition::BadRequest, &t),
                );
                return None;
            }
            Err(FormError::NotAcceptable(t)) => {
                // MUC-OWN-04.
                ctx.bounce(
                    refused(s, id.as_deref()),
                    StanzaError::with_text(StanzaCondition::NotAcceptable, &t),
                );
                return None;
            }
        };
        let mut rooms = self.rooms.borrow_mut();
        let room = rooms.get_mut(local)?;
        if affiliations_after(room, &sub) > self.cfg.max_affiliations {
            drop(rooms);
            ctx.bounce(
                refused(s, id.as_deref()),
                StanzaError::with_text(
                    StanzaCondition::ResourceConstraint,
                    "the room keeps as many affiliations as it may",
                ),
            );
            return None;
        }
        let old = std::mem::replace(&mut room.config, sub.config);
        let was_locked = std::mem::replace(&mut room.locked, false);
        // MUC-OWN-09: owner and admin lists given whole.
        for (list, aff) in [
            (&sub.owners, Affiliation::Owner),
            (&sub.admins, Affiliation::Admin),
        ] {
            let Some(list) = list else { continue };
            let keep: ahash::AHashSet<&str> = list.iter().map(String::as_str).collect();
            for jid in room.list(aff) {
                if !keep.contains(jid.as_str()) {
                    self.apply_affiliation(ctx, room, &jid, Affiliation::None, None, None);
                }
            }
            for jid in list {
                if room.affiliation(jid) != aff {
                    self.apply_affiliation(ctx, room, jid, aff, None, None);
                }
            }
        }
        // MUC-OWN-11: never without an owner.
        if room.owners() == 0 {
            room.set_affiliation(from_bare, Affiliation::Owner, None);
        }
        room.trim_history();
        // MUC-OWN-08: a room made members-only removes non-members with 322.
        if room.config.members_only && !old.members_only {
            let out: Vec<String> = room
                .occupants
                .iter()
                .filter(|o| room.affiliation(&o.bare) < Affiliation::Member)
                .map(|o| o.nick.clone())
                .collect();
            for nick in out {
                if let Some(o) = room.remove_occupant(&nick) {
                    let extra = Extra {
                        codes: &[322],
                        ..Extra::default()
                    };
                    room.broadcast_presence_of(ctx, &o, Role::None, true, &extra, &[], true);
                }
            }
        }
        // MUC-OWN-07.
        if !was_locked {
            let codes = room.config.change_codes(&old);
            if !codes.is_empty() {
                notify_codes(ctx, room, &codes);
            }
        }
        self.cfg.directory.update(
            &self.domain,
            local,
            room.config.public,
            &room.config.name,
            room.owner_list(),
        );
        let done = self.persist(ctx, room);
        let empty_temporary = room.occupants.is_empty() && !room.config.persistent;
        drop(rooms);
        if empty_temporary {
            self.destroy(ctx, local);
        }
        self.answer_after(ctx, s, id, done)
    }

    /// MUC-OWN-10: the owner destroys the room.
    fn destroy_by_owner(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        local: &str,
        id: Option<String>,
        d: &Element,
    ) -> Option<Pending> {
        let alt = d.attr("jid").and_then(|j| Jid::parse(j).ok());
        let reason = d.child("reason", NS_OWNER).map(|r| r.text());
        self.destroy_with_notice(ctx, local, alt.as_ref().map(Jid::as_str), reason.as_deref());
        self.answer(ctx, s.route, id.as_deref(), Ok(None));
        None
    }

    /// Tells every occupant the room is gone (one unavailable presence with `<destroy/>`
    /// each) and forgets it.
    pub(crate) fn destroy_with_notice(
        &self,
        ctx: &Ctx,
        local: &str,
        alt: Option<&str>,
        reason: Option<&str>,
    ) {
        let mut d = Vec::with_capacity(128);
        d.extend_from_slice(b"<destroy");
        if let Some(a) = alt {
            d.push(b' ');
            write_attr("jid", a, &mut d);
        }
        match reason {
            Some(r) => {
                d.extend_from_slice(b"><reason>");
                escape_text(r, &mut d);
                d.extend_from_slice(b"</reason></destroy>");
            }
            None => d.extend_from_slice(b"/>"),
        }
        {
            let rooms = self.rooms.borrow();
            if let Some(room) = rooms.get(local) {
                for o in &room.occupants {
                    let extra = Extra {
                        destroy: Some(&d),
                        ..Extra::default()
                    };
                    // Each occupant once: its own (self) presence, nobody else's.
                    room.broadcast_presence_of(ctx, o, Role::None, true, &extra, &[], false);
                }
            }
        }
        self.destroy(ctx, local);
    }

    /// Writes a persistent room's record (or removes a room's that is no longer
    /// persistent): the completion resolves once it is durable.
    pub(crate) fn persist(&self, ctx: &Ctx, room: &mut Room) -> Option<Durable> {
        if !room.config.persistent && !room.stored {
            return None;
        }
        let (service, local) = (self.domain.clone(), room.local.clone());
        let done = if room.config.persistent {
            room.stored = true;
            let record = record_of(room);
            ctx.storage()
                .submit(move |txn| txn.put_muc_room(&service, &local, &record))
        } else {
            room.stored = false;
            ctx.storage()
                .submit(move |txn| txn.delete_muc_room(&service, &local).map(|_| ()))
        };
        let what = room.jid.clone();
        Some(Box::pin(async move {
            done.await
                .map_err(|e| crate::core::storage_failure("storing a room", &what, &e))
        }))
    }

    /// Answers an IQ with a result once `done` (a room's write) is durable, or with the
    /// storage failure's error.
    fn answer_after(
        &self,
        ctx: &Ctx,
        s: &Inbound<'_>,
        id: Option<String>,
        done: Option<Durable>,
    ) -> Option<Pending> {
        let Some(done) = done else {
            self.answer(ctx, s.route, id.as_deref(), Ok(None));
            return None;
        };
        let (ctx, from, to) = (
            ctx.clone(),
            s.route.from.as_str().to_owned(),
            s.route.to.as_str().to_owned(),
        );
        Some(Box::pin(async move {
            let route = crate::core::Route::new(
                crate::xmpp::jid::JidStr::trusted(&from),
                crate::xmpp::jid::JidStr::trusted(&to),
            );
            match done.await {
                Ok(()) => {
                    let mut out = Vec::with_capacity(128);
                    super::write_iq_result(&mut out, &to, &from, id.as_deref(), None);
                    ctx.route(StanzaType::Iq(IqType::Result), route.reply(), &out);
                }
                Err(e) => ctx.bounce(
                    crate::core::Refused {
                        ty: StanzaType::Iq(IqType::Set),
                        id: id.as_deref(),
                        route,
                    },
                    e,
                ),
            }
        }))
    }

    /// A room from its stored record (not locked, no occupants).
    pub(crate) fn room_from_record(&self, local: &str, r: &MucRoom) -> Option<Room> {
        let config = RoomConfig::decode(&r.config)?;
        let mut room = Room::new(local, &self.domain, config);
        room.locked = false;
        room.stored = true;
        for a in &r.affiliations {
            let aff = Affiliation::from_u8(a.affiliation)?;
            room.affiliations.insert(
                a.jid.clone(),
                Affil {
                    aff,
                    nick: a.nick.clone(),
                    reason: a.reason.clone(),
                },
            );
        }
        if let Some((by, text)) = &r.subject {
            room.subject = Subject {
                text: text.clone(),
                by: by.clone(),
                at: r.subject_at.saturating_mul(1000),
            };
        }
        Some(room)
    }
}

/// A kick or a role change (MUC-MOD-02, MUC-MOD-05).
fn apply_role(
    ctx: &Ctx,
    room: &mut Room,
    nick: &str,
    role: Role,
    actor: Option<&str>,
    reason: Option<&str>,
) {
    if role == Role::None {
        if let Some(o) = room.remove_occupant(nick) {
            let extra = Extra {
                codes: &[307],
                actor,
                reason,
                ..Extra::default()
            };
            room.broadcast_presence_of(ctx, &o, Role::None, true, &extra, &[], true);
        }
        return;
    }
    room.set_role(nick, role);
    let extra = Extra {
        actor,
        reason,
        ..Extra::default()
    };
    room.broadcast_presence(ctx, nick, role, false, &extra, &[]);
}

/// MUC-OWN-07: a message from the room with status codes to every occupant.
fn notify_codes(ctx: &Ctx, room: &Room, codes: &[u16]) {
    let ty = StanzaType::Message(MessageType::Groupchat);
    let mut x = Vec::with_capacity(96);
    x.extend_from_slice(b"<x xmlns='");
    x.extend_from_slice(NS_USER.as_bytes());
    x.extend_from_slice(b"'>");
    for c in codes {
        x.extend_from_slice(format!("<status code='{c}'/>").as_bytes());
    }
    x.extend_from_slice(b"</x>");
    let id = super::room::random_id();
    room.to_all(ctx, ty, &room.jid, |out, to| {
        super::room::write_message_head(out, &room.jid, to, "groupchat", Some(&id), None);
        out.extend_from_slice(&x);
        out.extend_from_slice(b"</message>");
    });
}

/// How many affiliations the room would keep after a submitted form's owner and admin lists.
fn affiliations_after(room: &Room, sub: &super::config::Submitted) -> usize {
    let mut affs: ahash::AHashMap<&str, Affiliation> = room
        .affiliations
        .iter()
        .map(|(j, a)| (j.as_str(), a.aff))
        .collect();
    for (list, aff) in [
        (&sub.owners, Affiliation::Owner),
        (&sub.admins, Affiliation::Admin),
    ] {
        let Some(list) = list else { continue };
        let keep: ahash::AHashSet<&str> = list.iter().map(String::as_str).collect();
        affs.retain(|j, a| *a != aff || keep.contains(j));
        for jid in list {
            affs.insert(jid.as_str(), aff);
        }
    }
    affs.len()
}

/// A room's stored record.
fn record_of(room: &Room) -> MucRoom {
    let mut affiliations: SmallVec<[MucAffiliation; 8]> = room
        .affiliations
        .iter()
        .map(|(jid, a)| MucAffiliation {
            jid: jid.clone(),
            affiliation: a.aff.to_u8(),
            nick: a.nick.clone(),
            reason: a.reason.clone(),
        })
        .collect();
    affiliations.sort_by(|a, b| a.jid.cmp(&b.jid));
    MucRoom {
        config: room.config.encode(),
        subject: (room.subject.at != 0)
            .then(|| (room.subject.by.clone(), room.subject.text.clone())),
        subject_at: room.subject.at / 1000,
        affiliations: affiliations.into_vec(),
    }
}
