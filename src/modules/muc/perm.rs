//! XEP-0045 §5: roles, affiliations and who may change them, as pure functions.
//!
//! INTERFACE FROZEN: every rule of §5.1–§5.2 and of the moderator (§8), admin (§9) and owner
//! (§10) use cases that decides whether a change is allowed, and with which error, lives here
//! and nowhere else. The functions are pure: the caller looks the actor and the target up,
//! and maps [`Denied`] to the stanza error of the same name.
//!
//! Where the XEP leaves a choice open, the choice is stated on the function that makes it,
//! with the reason. Each check runs its rules in the order its doc lists, so a request that
//! breaks several rules gets one well-defined error.

/// An affiliation (§5.2), ordered by rank: `Outcast < None < Member < Admin < Owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No affiliation.
    None,
    /// A member.
    Member,
    /// A room admin.
    Admin,
    /// A room owner.
    Owner,
}

/// A role (§5.1), ordered by rank: `None < Visitor < Participant < Moderator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not in the room.
    None,
    /// In the room without voice.
    Visitor,
    /// In the room with voice.
    Participant,
    /// A moderator.
    Moderator,
}

/// Why a change is refused; the module maps it to the stanza error of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// `<forbidden/>`: the actor lacks the privilege for this kind of change.
    Forbidden,
    /// `<not-allowed/>`: the actor has the privilege, but not over this target.
    NotAllowed,
    /// `<conflict/>`: the change would leave the room without an owner, or is aimed at
    /// oneself where the XEP says so (self-ban) or lets us refuse (self-kick).
    Conflict,
    /// `<bad-request/>`: the request itself is malformed: a list of role or affiliation
    /// `none` (there is no such list, §5.2), or a role change aimed at someone who is not an
    /// occupant (roles exist only in the room, §5.1).
    BadRequest,
}

impl Affiliation {
    /// The wire name, as in `affiliation='member'`.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }
    /// Parses a wire name (exact, case-sensitive, as XML attribute values are).
    pub fn parse(s: &str) -> Option<Affiliation> {
        match s {
            "outcast" => Some(Affiliation::Outcast),
            "none" => Some(Affiliation::None),
            "member" => Some(Affiliation::Member),
            "admin" => Some(Affiliation::Admin),
            "owner" => Some(Affiliation::Owner),
            _ => None,
        }
    }
    /// A stable byte for storage (never renumber): outcast 0, none 1, member 2, admin 3,
    /// owner 4.
    pub fn to_u8(self) -> u8 {
        match self {
            Affiliation::Outcast => 0,
            Affiliation::None => 1,
            Affiliation::Member => 2,
            Affiliation::Admin => 3,
            Affiliation::Owner => 4,
        }
    }
    /// Inverse of [`Affiliation::to_u8`]; `None` for any other byte.
    pub fn from_u8(v: u8) -> Option<Affiliation> {
        match v {
            0 => Some(Affiliation::Outcast),
            1 => Some(Affiliation::None),
            2 => Some(Affiliation::Member),
            3 => Some(Affiliation::Admin),
            4 => Some(Affiliation::Owner),
            _ => None,
        }
    }

    /// Admin or owner: the affiliations that carry moderator status with them and whose
    /// voice and moderator status nobody may take away (§5.1.1, §8.4, §9.7).
    fn is_admin_or_owner(self) -> bool {
        self >= Affiliation::Admin
    }
}

impl Role {
    /// The wire name, as in `role='participant'`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }
    /// Parses a wire name (exact, case-sensitive, as XML attribute values are).
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "none" => Some(Role::None),
            "visitor" => Some(Role::Visitor),
            "participant" => Some(Role::Participant),
            "moderator" => Some(Role::Moderator),
            _ => None,
        }
    }
}

/// The role an occupant gets on entering, by affiliation (§5.1.2, MUC-CFG-02): in a moderated
/// room none → visitor; otherwise none/member → participant; admin/owner → moderator.
/// Outcasts never enter (`Role::None`). Whether a non-member may enter a members-only room
/// at all is the caller's check, not this one.
pub fn default_role(aff: Affiliation, moderated: bool) -> Role {
    match aff {
        Affiliation::Outcast => Role::None,
        Affiliation::None if moderated => Role::Visitor,
        Affiliation::None | Affiliation::Member => Role::Participant,
        Affiliation::Admin | Affiliation::Owner => Role::Moderator,
    }
}

/// A role change by an occupant (§8.2 kick, §8.3/§8.4 voice, §9.6/§9.7 moderator status):
/// `actor` is the actor's (affiliation, role), `target` the target occupant's, `new` the
/// requested role, `is_self` whether the target is the actor.
///
/// In this order:
/// 1. An actor who is not a moderator → [`Denied::Forbidden`] (§8: all muc#admin role
///    requests need the moderator role).
/// 2. A target whose role is `none` is not an occupant → [`Denied::BadRequest`] (roles exist
///    only in the room; the caller answers an unknown nick itself).
/// 3. `new` equal to the target's role → allowed (a no-op).
/// 4. Kick (`new` = none): of oneself → [`Denied::Conflict`] (MUC-MOD-04: the XEP lets us
///    choose; we refuse, as for a self-ban). Of an admin or owner → [`Denied::NotAllowed`], by
///    anyone, owners included. Of a target whose affiliation is equal to or above the
///    actor's → [`Denied::NotAllowed`] (MUC-MOD-03). Of a moderator by an actor who is not
///    admin or owner → [`Denied::NotAllowed`] (§5.1.3 chart: moderators are kicked by admins
///    or owners).
/// 5. Granting moderator (`new` = moderator) or revoking it (target is a moderator): an actor
///    who is not admin or owner → [`Denied::Forbidden`] (§9.6/§9.7 are admin use cases);
///    revoking it from an admin or owner → [`Denied::NotAllowed`] (§9.7, MUC-AFF-05), for
///    owners too.
/// 6. Revoking voice (participant → visitor): from an admin or owner, or from a target whose
///    affiliation is equal to or above the actor's → [`Denied::NotAllowed`] (§8.4, MUC-MOD-03).
/// 7. Granting voice (visitor → participant) → allowed for any moderator (§8.3).
///
/// Decisions where the XEP is open or inconsistent:
/// - §8.2 only forbids kicking someone of *higher* affiliation, which would let an owner
///   kick an admin; §8.4 forbids anyone to take an admin's or owner's voice, and a kick takes
///   it too. We follow §8.4 (as Prosody does): admins and owners are never kicked; an owner
///   who wants one out changes the affiliation first (§10.4, §10.7).
/// - "Equal or above" (MUC-MOD-03, §8.4) applies to kicks as well as to voice, so a member
///   moderator cannot kick or silence another member, and an unaffiliated moderator cannot
///   kick or silence anyone in the room (every occupant has at least affiliation none).
/// - A mere moderator cannot step down to participant or visitor themself: only admins and
///   owners change moderator status, and an admin's or owner's cannot be changed at all.
/// - Inputs are taken as given: `is_self` only matters for a kick.
pub fn check_role_change(
    actor: (Affiliation, Role),
    target: (Affiliation, Role),
    new: Role,
    is_self: bool,
) -> Result<(), Denied> {
    let (actor_aff, actor_role) = actor;
    let (target_aff, target_role) = target;
    if actor_role != Role::Moderator {
        return Err(Denied::Forbidden);
    }
    if target_role == Role::None {
        return Err(Denied::BadRequest);
    }
    if new == target_role {
        return Ok(());
    }
    // Whether the actor may act against the target's standing at all (§8.2, §8.4): never
    // against an admin or owner, never against an equal or higher affiliation.
    let outranks = !target_aff.is_admin_or_owner() && target_aff < actor_aff;
    if new == Role::None {
        if is_self {
            return Err(Denied::Conflict);
        }
        if !outranks || (target_role == Role::Moderator && !actor_aff.is_admin_or_owner()) {
            return Err(Denied::NotAllowed);
        }
        return Ok(());
    }
    if new == Role::Moderator || target_role == Role::Moderator {
        if !actor_aff.is_admin_or_owner() {
            return Err(Denied::Forbidden);
        }
        if target_role == Role::Moderator && target_aff.is_admin_or_owner() {
            return Err(Denied::NotAllowed);
        }
        return Ok(());
    }
    if new == Role::Visitor && !outranks {
        return Err(Denied::NotAllowed);
    }
    Ok(())
}

/// An affiliation change by an occupant or a user (§9.1 ban, §9.3/§9.4 membership, §10.3–§10.8
/// admin and owner): `actor` the actor's affiliation, `target` the target's current
/// affiliation, `new` the requested one, `is_self` whether the target is the actor's bare JID,
/// `owners` how many owners the room has now.
///
/// In this order:
/// 1. An actor who is not admin or owner → [`Denied::Forbidden`] (§9: muc#admin affiliation
///    requests are for admins). Registering as a member (§7.10) does not come through here.
/// 2. `new` equal to `target` → allowed (a no-op).
/// 3. Banning oneself → [`Denied::Conflict`] (§9.1, MUC-AFF-02), owners included.
/// 4. An admin actor: granting admin or owner → [`Denied::Forbidden`] (§10.3/§10.6,
///    MUC-AFF-06); banning an admin or owner → [`Denied::NotAllowed`] (§9.1, MUC-AFF-02);
///    any other change of an admin's or owner's affiliation (revoking the status, to member
///    or none) → [`Denied::Forbidden`] (§10.4/§10.7: "MUST return forbidden" to non-owners,
///    MUC-AFF-06). Every other change (outcast, none, member among themselves) is allowed.
/// 5. An owner actor: any change that takes an owner's ownership away while the room has at
///    most one owner → [`Denied::Conflict`] (§10.4, MUC-AFF-07, MUC-OWN-11: a room always
///    keeps an owner). Everything else is allowed.
///
/// Decisions where the XEP is open:
/// - An admin banning another admin: §9.1 only names *lower* affiliations, but the §5.2.2
///   chart reserves bans of admins for owners. The ban is an admin's privilege, the target is
///   out of reach, so [`Denied::NotAllowed`], as for an owner.
/// - An admin dropping their own admin status gets [`Denied::Forbidden`], like any revocation
///   of admin status by a non-owner; an owner has to do it.
/// - An owner may revoke another owner's status (§10.4 MAY), and with other owners left may
///   drop their own (§10.4 SHOULD).
pub fn check_affiliation_change(
    actor: Affiliation,
    target: Affiliation,
    new: Affiliation,
    is_self: bool,
    owners: usize,
) -> Result<(), Denied> {
    if !actor.is_admin_or_owner() {
        return Err(Denied::Forbidden);
    }
    if new == target {
        return Ok(());
    }
    if is_self && new == Affiliation::Outcast {
        return Err(Denied::Conflict);
    }
    if actor == Affiliation::Admin {
        if new.is_admin_or_owner() {
            return Err(Denied::Forbidden);
        }
        if target.is_admin_or_owner() {
            // Why two errors: §9.1 names not-allowed for a ban, §10.4/§10.7 forbidden for a
            // revocation.
            return Err(if new == Affiliation::Outcast {
                Denied::NotAllowed
            } else {
                Denied::Forbidden
            });
        }
        return Ok(());
    }
    if target == Affiliation::Owner && owners <= 1 {
        return Err(Denied::Conflict);
    }
    Ok(())
}

/// Which affiliation list an actor may read (§9.2 outcasts, §9.5 members, §10.5 owners, §10.8
/// admins); `members_public` is the room's `getmemberlist` allowing the actor's role.
///
/// - The list `none` does not exist (§5.2: no "none list") → [`Denied::BadRequest`].
/// - Outcasts may read no list (they are out of the room; `members_public` does not help).
/// - Outcast list: admins and owners (§9.2).
/// - Member list: admins and owners, or anyone when `members_public` (§9.5,
///   `muc#roomconfig_getmemberlist`; the caller decides, e.g. by role and anonymity).
/// - Admin and owner lists: owners only. §10.5/§10.8 require forbidden for non-owners in
///   semi-anonymous rooms and only permit (MAY) serving them in non-anonymous ones; this
///   function does not know the room's anonymity, so it takes the answer that is right in
///   both.
///
/// Anything else → [`Denied::Forbidden`]. The actor's role plays no part here beyond what the
/// caller folds into `members_public`: affiliation lists are managed by bare JID, from inside
/// or outside the room.
pub fn check_list_read(
    actor: (Affiliation, Role),
    list: Affiliation,
    members_public: bool,
) -> Result<(), Denied> {
    let (aff, _role) = actor;
    let allowed = match list {
        Affiliation::None => return Err(Denied::BadRequest),
        _ if aff == Affiliation::Outcast => false,
        Affiliation::Outcast => aff.is_admin_or_owner(),
        Affiliation::Member => aff.is_admin_or_owner() || members_public,
        Affiliation::Admin | Affiliation::Owner => aff == Affiliation::Owner,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

/// Whether an occupant may read the list of occupants with role `list` (§8.5 voice list:
/// moderators; §9.8 moderator list: admins and owners).
///
/// - The list `none` does not exist (nobody in the room has that role) →
///   [`Denied::BadRequest`].
/// - Voice (participant) and visitor lists: the moderator role (§8: moderator use cases).
/// - Moderator list: admin or owner affiliation, whatever the actor's role (§9: admin use
///   cases are checked against the bare JID).
///
/// Anything else → [`Denied::Forbidden`].
pub fn check_role_list_read(actor: (Affiliation, Role), list: Role) -> Result<(), Denied> {
    let (aff, role) = actor;
    let allowed = match list {
        Role::None => return Err(Denied::BadRequest),
        Role::Visitor | Role::Participant => role == Role::Moderator,
        Role::Moderator => aff.is_admin_or_owner(),
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

/// Who may send private messages (`muc#roomconfig_allowpm`, §7.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowPm {
    /// Anyone in the room.
    Anyone,
    /// Participants and moderators.
    Participants,
    /// Moderators only.
    Moderators,
    /// Nobody.
    None,
}

impl AllowPm {
    /// The form value (`anyone`, `participants`, `moderators`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }
    /// Parses a form value (exact, case-sensitive).
    pub fn parse(s: &str) -> Option<AllowPm> {
        match s {
            "anyone" => Some(AllowPm::Anyone),
            "participants" => Some(AllowPm::Participants),
            "moderators" => Some(AllowPm::Moderators),
            "none" => Some(AllowPm::None),
            _ => None,
        }
    }
    /// Whether an occupant with `role` may send a private message: `anyone` is every
    /// occupant (never `Role::None`, who is not in the room), `participants` those with voice
    /// (participants and moderators), `moderators` moderators, `none` nobody.
    pub fn allows(self, role: Role) -> bool {
        match self {
            AllowPm::Anyone => role != Role::None,
            AllowPm::Participants => role >= Role::Participant,
            AllowPm::Moderators => role == Role::Moderator,
            AllowPm::None => false,
        }
    }
}

/// Whether an occupant may send a groupchat message (§7.4: visitors in a moderated room may
/// not; in an unmoderated room every occupant has voice unless revoked, i.e. is a
/// participant or moderator).
pub fn may_speak(role: Role) -> bool {
    role >= Role::Participant
}

/// Whether an occupant may change the subject (§8.1): moderators always; participants when
/// the room's `changesubject` allows it (`occupants_may`); visitors and non-occupants never.
/// (§8.1 lets the option reach visitors too; we do not: a visitor has no voice, and a
/// subject change is a message to all.)
pub fn may_change_subject(role: Role, occupants_may: bool) -> bool {
    match role {
        Role::Moderator => true,
        Role::Participant => occupants_may,
        Role::Visitor | Role::None => false,
    }
}

/// Whether an occupant may send a mediated invitation (§7.8.2); `allow_invites` is the
/// room's `muc#roomconfig_allowinvites`.
///
/// - Only occupants invite (`Role::None` never may, §5.1.1), and never an outcast.
/// - Members-only room: admins and owners always; members too when `allow_invites` (§9.5:
///   invitations there add the invitee to the member list, which is the admins' to edit, and
///   the option "opens invitation privileges to any member"). An unaffiliated occupant never.
/// - Open room: every occupant, visitors included, whatever `allow_invites` says. Why: the
///   §5.1.1 table grants invitations to visitors and participants by default, while the
///   option is "Whether to Allow Members to Invite Others" (§16.5.3), defaults to off and,
///   since 1.35.3, only adds members' permissions; gating open rooms on it would take the
///   default privilege away (MUC-INV-02 only restricts members-only rooms).
pub fn may_invite(aff: Affiliation, role: Role, members_only: bool, allow_invites: bool) -> bool {
    if role == Role::None || aff == Affiliation::Outcast {
        return false;
    }
    if !members_only {
        return true;
    }
    aff.is_admin_or_owner() || (allow_invites && aff == Affiliation::Member)
}

#[cfg(test)]
mod tests {
    //! Every function over its whole input space. The two change checks are compared with
    //! explicit grids written from the XEP's charts and the decisions documented above (not
    //! derived from the code), cell by cell; the self-directed cases are also checked against
    //! a rule stated independently of the code ("same as for someone else, except ...");
    //! named rows pin the checklist items.

    use super::*;
    use Affiliation as A;
    use Role as R;

    /// All affiliations, by rank.
    const AFFS: [Affiliation; 5] = [A::Outcast, A::None, A::Member, A::Admin, A::Owner];
    /// All roles, by rank.
    const ROLES: [Role; 4] = [R::None, R::Visitor, R::Participant, R::Moderator];

    /// A grid cell: `o` allowed, `F` forbidden, `N` not-allowed, `C` conflict, `B` bad-request.
    fn cell(c: u8) -> Result<(), Denied> {
        match c {
            b'o' => Ok(()),
            b'F' => Err(Denied::Forbidden),
            b'N' => Err(Denied::NotAllowed),
            b'C' => Err(Denied::Conflict),
            b'B' => Err(Denied::BadRequest),
            other => panic!("unknown cell {}", other as char),
        }
    }

    /// A boolean cell: `y` true, `.` false.
    fn yes(c: u8) -> bool {
        match c {
            b'y' => true,
            b'.' => false,
            other => panic!("unknown cell {}", other as char),
        }
    }

    /// The cells of a row, checked to be exactly `n` long.
    fn cells(row: &str, n: usize) -> std::str::Bytes<'_> {
        assert_eq!(row.len(), n, "row {row:?}");
        row.bytes()
    }

    // ---- names and bytes -------------------------------------------------------------------

    #[test]
    fn affiliation_names() {
        let table = [
            (A::Outcast, "outcast"),
            (A::None, "none"),
            (A::Member, "member"),
            (A::Admin, "admin"),
            (A::Owner, "owner"),
        ];
        for (aff, name) in table {
            assert_eq!(aff.as_str(), name);
            assert_eq!(Affiliation::parse(name), Some(aff));
        }
        for bad in [
            "",
            "Owner",
            "OWNER",
            " owner",
            "owner ",
            "moderator",
            "outcasts",
        ] {
            assert_eq!(Affiliation::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn affiliation_bytes_are_stable() {
        let table = [
            (A::Outcast, 0),
            (A::None, 1),
            (A::Member, 2),
            (A::Admin, 3),
            (A::Owner, 4),
        ];
        for (aff, byte) in table {
            assert_eq!(aff.to_u8(), byte, "{aff:?}");
            assert_eq!(Affiliation::from_u8(byte), Some(aff));
        }
        for v in 5..=u8::MAX {
            assert_eq!(Affiliation::from_u8(v), None, "{v}");
        }
    }

    #[test]
    fn role_names() {
        let table = [
            (R::None, "none"),
            (R::Visitor, "visitor"),
            (R::Participant, "participant"),
            (R::Moderator, "moderator"),
        ];
        for (role, name) in table {
            assert_eq!(role.as_str(), name);
            assert_eq!(Role::parse(name), Some(role));
        }
        for bad in ["", "Moderator", "visitors", "owner", "participant\0"] {
            assert_eq!(Role::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ranks_are_ordered() {
        assert!(AFFS.windows(2).all(|w| w[0] < w[1]));
        assert!(ROLES.windows(2).all(|w| w[0] < w[1]));
    }

    // ---- default roles ---------------------------------------------------------------------

    #[test]
    fn muc_cfg_02_default_roles() {
        // (affiliation, moderated room, unmoderated room): §5.1.2 table.
        let table = [
            (A::Outcast, R::None, R::None),
            (A::None, R::Visitor, R::Participant),
            (A::Member, R::Participant, R::Participant),
            (A::Admin, R::Moderator, R::Moderator),
            (A::Owner, R::Moderator, R::Moderator),
        ];
        for (aff, moderated, unmoderated) in table {
            assert_eq!(default_role(aff, true), moderated, "{aff:?} moderated");
            assert_eq!(default_role(aff, false), unmoderated, "{aff:?} unmoderated");
        }
    }

    // ---- role changes ----------------------------------------------------------------------

    /// One grid per (target role, new role): rows are the actor's affiliation, columns the
    /// target's (outcast, none, member, admin, owner); the actor is a moderator acting on
    /// someone else.
    fn role_grid(target_role: Role, new: Role, rows: [&str; 5]) {
        for (actor_aff, row) in AFFS.into_iter().zip(rows) {
            for (target_aff, c) in AFFS.into_iter().zip(cells(row, 5)) {
                assert_eq!(
                    check_role_change(
                        (actor_aff, R::Moderator),
                        (target_aff, target_role),
                        new,
                        false
                    ),
                    cell(c),
                    "{actor_aff:?} moderator sets {target_aff:?} {target_role:?} to {new:?}"
                );
            }
        }
    }

    /// Nothing changes.
    const ALL_OK: [&str; 5] = ["ooooo"; 5];
    /// Only admins and owners may (moderator status, §9.6/§9.7).
    const ADMINS_ONLY: [&str; 5] = ["FFFFF", "FFFFF", "FFFFF", "ooooo", "ooooo"];
    /// Kick or voice revocation: only of targets ranked strictly below the actor, and never
    /// of admins or owners (§8.2, §8.4, MUC-MOD-03).
    const BELOW_ACTOR_NOT_ADMIN: [&str; 5] = ["NNNNN", "oNNNN", "ooNNN", "oooNN", "oooNN"];

    #[test]
    fn muc_mod_01_role_change_needs_the_moderator_role() {
        for actor_aff in AFFS {
            for actor_role in [R::None, R::Visitor, R::Participant] {
                for target_aff in AFFS {
                    for target_role in ROLES {
                        for new in ROLES {
                            for is_self in [false, true] {
                                assert_eq!(
                                    check_role_change(
                                        (actor_aff, actor_role),
                                        (target_aff, target_role),
                                        new,
                                        is_self
                                    ),
                                    Err(Denied::Forbidden),
                                    "{actor_aff:?} {actor_role:?} sets {target_aff:?} \
                                     {target_role:?} to {new:?} (self: {is_self})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn role_change_of_a_non_occupant_is_a_bad_request() {
        for new in ROLES {
            role_grid(R::None, new, ["BBBBB"; 5]);
        }
    }

    #[test]
    fn muc_mod_02_03_kick() {
        role_grid(R::Visitor, R::None, BELOW_ACTOR_NOT_ADMIN);
        role_grid(R::Participant, R::None, BELOW_ACTOR_NOT_ADMIN);
        // Moderators are kicked only by admins and owners (§5.1.3 chart), and still only
        // below the actor and never admins or owners.
        role_grid(
            R::Moderator,
            R::None,
            ["NNNNN", "NNNNN", "NNNNN", "oooNN", "oooNN"],
        );
    }

    #[test]
    fn muc_mod_05_voice() {
        // Granting voice: any moderator (§8.3); no-ops allowed.
        role_grid(R::Visitor, R::Participant, ALL_OK);
        role_grid(R::Visitor, R::Visitor, ALL_OK);
        role_grid(R::Participant, R::Participant, ALL_OK);
        // Revoking voice (§8.4).
        role_grid(R::Participant, R::Visitor, BELOW_ACTOR_NOT_ADMIN);
    }

    #[test]
    fn muc_aff_05_moderator_status() {
        role_grid(R::Visitor, R::Moderator, ADMINS_ONLY);
        role_grid(R::Participant, R::Moderator, ADMINS_ONLY);
        role_grid(R::Moderator, R::Moderator, ALL_OK);
        // Revoking: admins and owners only, and never from an admin or owner (§9.7).
        let revoke = ["FFFFF", "FFFFF", "FFFFF", "oooNN", "oooNN"];
        role_grid(R::Moderator, R::Participant, revoke);
        role_grid(R::Moderator, R::Visitor, revoke);
    }

    #[test]
    fn muc_mod_04_role_change_of_oneself() {
        // A moderator acting on themself (target = actor); columns: new role none, visitor,
        // participant, moderator.
        let table = [
            (A::Outcast, "CFFo"),
            (A::None, "CFFo"),
            (A::Member, "CFFo"),
            (A::Admin, "CNNo"),
            (A::Owner, "CNNo"),
        ];
        for (aff, row) in table {
            for (new, c) in ROLES.into_iter().zip(cells(row, 4)) {
                let me = (aff, R::Moderator);
                assert_eq!(
                    check_role_change(me, me, new, true),
                    cell(c),
                    "{aff:?} moderator sets self to {new:?}"
                );
            }
        }
        // Over the whole space: acting on oneself is acting on anyone else, except that a
        // moderator's kick of an occupant is a conflict.
        for actor in AFFS.into_iter().flat_map(|a| ROLES.map(|r| (a, r))) {
            for target in AFFS.into_iter().flat_map(|a| ROLES.map(|r| (a, r))) {
                for new in ROLES {
                    let expected =
                        if actor.1 == R::Moderator && target.1 != R::None && new == R::None {
                            Err(Denied::Conflict)
                        } else {
                            check_role_change(actor, target, new, false)
                        };
                    assert_eq!(
                        check_role_change(actor, target, new, true),
                        expected,
                        "{actor:?} sets self {target:?} to {new:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn role_change_checklist_rows() {
        use Denied::*;
        let m = R::Moderator;
        // (actor, target, new role, expected)
        let rows = [
            // MUC-MOD-01: a participant cannot kick.
            (
                (A::None, R::Participant),
                (A::None, R::Visitor),
                R::None,
                Err(Forbidden),
            ),
            // MUC-MOD-02: a kick of a participant by an admin.
            ((A::Admin, m), (A::None, R::Participant), R::None, Ok(())),
            // MUC-MOD-03: member moderator vs admin; admin vs owner; equal rank; admins' and
            // owners' voice.
            ((A::Member, m), (A::Admin, m), R::None, Err(NotAllowed)),
            ((A::Admin, m), (A::Owner, m), R::None, Err(NotAllowed)),
            (
                (A::Member, m),
                (A::Member, R::Participant),
                R::None,
                Err(NotAllowed),
            ),
            (
                (A::Member, m),
                (A::Member, R::Participant),
                R::Visitor,
                Err(NotAllowed),
            ),
            (
                (A::Owner, m),
                (A::Admin, R::Participant),
                R::Visitor,
                Err(NotAllowed),
            ),
            // Decision: not even an owner kicks an admin.
            ((A::Owner, m), (A::Admin, m), R::None, Err(NotAllowed)),
            // MUC-MOD-05: granting and revoking voice.
            ((A::None, m), (A::None, R::Visitor), R::Participant, Ok(())),
            (
                (A::Member, m),
                (A::None, R::Participant),
                R::Visitor,
                Ok(()),
            ),
            // MUC-AFF-05: moderator status.
            ((A::Admin, m), (A::Member, R::Participant), m, Ok(())),
            (
                (A::Owner, m),
                (A::Admin, m),
                R::Participant,
                Err(NotAllowed),
            ),
            ((A::Admin, m), (A::Member, m), R::Participant, Ok(())),
            ((A::Member, m), (A::None, R::Participant), m, Err(Forbidden)),
        ];
        for (actor, target, new, expected) in rows {
            assert_eq!(
                check_role_change(actor, target, new, false),
                expected,
                "{actor:?} sets {target:?} to {new:?}"
            );
        }
        // MUC-MOD-04.
        let me = (A::Admin, m);
        assert_eq!(check_role_change(me, me, R::None, true), Err(Conflict));
    }

    // ---- affiliation changes ---------------------------------------------------------------

    /// Owner counts tried everywhere: none (inconsistent, must not panic), the last owner,
    /// and more.
    const OWNER_COUNTS: [usize; 4] = [0, 1, 2, 3];

    /// One grid per actor affiliation and owner count: rows are the target's affiliation,
    /// columns the new one (outcast, none, member, admin, owner); the target is someone else.
    fn aff_grid(actor: Affiliation, owners: usize, rows: [&str; 5]) {
        for (target, row) in AFFS.into_iter().zip(rows) {
            for (new, c) in AFFS.into_iter().zip(cells(row, 5)) {
                assert_eq!(
                    check_affiliation_change(actor, target, new, false, owners),
                    cell(c),
                    "{actor:?} sets {target:?} to {new:?} ({owners} owners)"
                );
            }
        }
    }

    #[test]
    fn muc_mod_01_affiliation_change_needs_admin() {
        for actor in [A::Outcast, A::None, A::Member] {
            for owners in OWNER_COUNTS {
                aff_grid(actor, owners, ["FFFFF"; 5]);
                for target in AFFS {
                    for new in AFFS {
                        assert_eq!(
                            check_affiliation_change(actor, target, new, true, owners),
                            Err(Denied::Forbidden)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn muc_aff_01_02_06_affiliation_change_by_admin() {
        for owners in OWNER_COUNTS {
            aff_grid(
                A::Admin,
                owners,
                [
                    // Outcasts, unaffiliated users and members: anything but admin or owner.
                    "oooFF", "oooFF", "oooFF",
                    // Admins and owners: ban not-allowed (§9.1), revocation and promotion
                    // forbidden (§10.3–§10.7).
                    "NFFoF", "NFFFo",
                ],
            );
        }
    }

    #[test]
    fn muc_aff_07_own_11_affiliation_change_by_owner() {
        for owners in [2, 3] {
            aff_grid(A::Owner, owners, ALL_OK);
        }
        // With at most one owner, no owner may lose ownership.
        for owners in [0, 1] {
            aff_grid(
                A::Owner,
                owners,
                ["ooooo", "ooooo", "ooooo", "ooooo", "CCCCo"],
            );
        }
    }

    #[test]
    fn muc_aff_02_07_affiliation_change_of_oneself() {
        // An actor acting on their own bare JID (target = actor); columns: new outcast, none,
        // member, admin, owner.
        for owners in OWNER_COUNTS {
            let owner_row = if owners <= 1 { "CCCCo" } else { "Coooo" };
            let table = [
                (A::Outcast, "FFFFF"),
                (A::None, "FFFFF"),
                (A::Member, "FFFFF"),
                (A::Admin, "CFFoF"),
                (A::Owner, owner_row),
            ];
            for (aff, row) in table {
                for (new, c) in AFFS.into_iter().zip(cells(row, 5)) {
                    assert_eq!(
                        check_affiliation_change(aff, aff, new, true, owners),
                        cell(c),
                        "{aff:?} sets self to {new:?} ({owners} owners)"
                    );
                }
            }
        }
        // Over the whole space: acting on oneself is acting on anyone else, except that an
        // admin's or owner's real ban of themself is a conflict.
        for actor in AFFS {
            for target in AFFS {
                for new in AFFS {
                    for owners in OWNER_COUNTS {
                        let expected = if actor >= A::Admin && new == A::Outcast && target != new {
                            Err(Denied::Conflict)
                        } else {
                            check_affiliation_change(actor, target, new, false, owners)
                        };
                        assert_eq!(
                            check_affiliation_change(actor, target, new, true, owners),
                            expected,
                            "{actor:?} sets self ({target:?}) to {new:?} ({owners} owners)"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn affiliation_change_checklist_rows() {
        use Denied::*;
        // (actor, target, new, is_self, owners, expected)
        let rows = [
            // MUC-AFF-01: bans.
            (A::Admin, A::None, A::Outcast, false, 1, Ok(())),
            (A::Admin, A::Member, A::Outcast, false, 1, Ok(())),
            // MUC-AFF-02.
            (A::Admin, A::Owner, A::Outcast, false, 1, Err(NotAllowed)),
            (A::Admin, A::Admin, A::Outcast, false, 1, Err(NotAllowed)),
            (A::Admin, A::Admin, A::Outcast, true, 1, Err(Conflict)),
            (A::Owner, A::Owner, A::Outcast, true, 3, Err(Conflict)),
            // MUC-AFF-04: membership.
            (A::Admin, A::None, A::Member, false, 1, Ok(())),
            (A::Admin, A::Member, A::None, false, 1, Ok(())),
            // MUC-AFF-06: only owners grant or revoke admin and owner.
            (A::Admin, A::Member, A::Admin, false, 1, Err(Forbidden)),
            (A::Admin, A::None, A::Owner, false, 1, Err(Forbidden)),
            (A::Admin, A::Admin, A::None, false, 1, Err(Forbidden)),
            (A::Admin, A::Owner, A::Member, false, 1, Err(Forbidden)),
            (A::Member, A::None, A::Member, false, 1, Err(Forbidden)),
            (A::Owner, A::Member, A::Admin, false, 1, Ok(())),
            (A::Owner, A::Admin, A::None, false, 1, Ok(())),
            // MUC-AFF-07: the last owner stays.
            (A::Owner, A::Owner, A::Admin, true, 1, Err(Conflict)),
            (A::Owner, A::Owner, A::None, true, 1, Err(Conflict)),
            (A::Owner, A::Owner, A::Admin, true, 2, Ok(())),
            // MUC-OWN-11: an owner removes another while one remains.
            (A::Owner, A::Owner, A::None, false, 2, Ok(())),
            (A::Owner, A::Owner, A::Outcast, false, 2, Ok(())),
        ];
        for (actor, target, new, is_self, owners, expected) in rows {
            assert_eq!(
                check_affiliation_change(actor, target, new, is_self, owners),
                expected,
                "{actor:?} sets {target:?} to {new:?} (self: {is_self}, {owners} owners)"
            );
        }
    }

    // ---- list reads ------------------------------------------------------------------------

    #[test]
    fn muc_aff_03_affiliation_list_read() {
        // (list, members_public, by actor affiliation: outcast, none, member, admin, owner);
        // the actor's role never matters.
        let table = [
            (A::Outcast, false, "FFFoo"),
            (A::Outcast, true, "FFFoo"),
            (A::None, false, "BBBBB"),
            (A::None, true, "BBBBB"),
            (A::Member, false, "FFFoo"),
            (A::Member, true, "Foooo"),
            (A::Admin, false, "FFFFo"),
            (A::Admin, true, "FFFFo"),
            (A::Owner, false, "FFFFo"),
            (A::Owner, true, "FFFFo"),
        ];
        for (list, public, row) in table {
            for (aff, c) in AFFS.into_iter().zip(cells(row, 5)) {
                for role in ROLES {
                    assert_eq!(
                        check_list_read((aff, role), list, public),
                        cell(c),
                        "{aff:?} {role:?} reads {list:?} list (public: {public})"
                    );
                }
            }
        }
    }

    #[test]
    fn muc_mod_06_role_list_read() {
        // Rows: actor affiliation; columns: actor role none, visitor, participant, moderator.
        let by_moderators = ["FFFo"; 5];
        let table = [
            (R::None, ["BBBB"; 5]),
            (R::Visitor, by_moderators),
            (R::Participant, by_moderators),
            (R::Moderator, ["FFFF", "FFFF", "FFFF", "oooo", "oooo"]),
        ];
        for (list, rows) in table {
            for (aff, row) in AFFS.into_iter().zip(rows) {
                for (role, c) in ROLES.into_iter().zip(cells(row, 4)) {
                    assert_eq!(
                        check_role_list_read((aff, role), list),
                        cell(c),
                        "{aff:?} {role:?} reads {list:?} list"
                    );
                }
            }
        }
    }

    // ---- messages, subject, invitations ----------------------------------------------------

    #[test]
    fn muc_pm_05_allow_pm() {
        // (value, name, by sender role: none, visitor, participant, moderator).
        let table = [
            (AllowPm::Anyone, "anyone", ".yyy"),
            (AllowPm::Participants, "participants", "..yy"),
            (AllowPm::Moderators, "moderators", "...y"),
            (AllowPm::None, "none", "...."),
        ];
        for (pm, name, row) in table {
            assert_eq!(pm.as_str(), name);
            assert_eq!(AllowPm::parse(name), Some(pm));
            for (role, c) in ROLES.into_iter().zip(cells(row, 4)) {
                assert_eq!(pm.allows(role), yes(c), "{pm:?} {role:?}");
            }
        }
        for bad in ["", "Anyone", "nobody", "participant", "all"] {
            assert_eq!(AllowPm::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn may_speak_by_role() {
        for (role, c) in ROLES.into_iter().zip(cells("..yy", 4)) {
            assert_eq!(may_speak(role), yes(c), "{role:?}");
        }
    }

    #[test]
    fn muc_subj_02_03_may_change_subject() {
        // (changesubject, by role: none, visitor, participant, moderator).
        for (occupants_may, row) in [(false, "...y"), (true, "..yy")] {
            for (role, c) in ROLES.into_iter().zip(cells(row, 4)) {
                assert_eq!(
                    may_change_subject(role, occupants_may),
                    yes(c),
                    "{role:?} (changesubject: {occupants_may})"
                );
            }
        }
    }

    #[test]
    fn muc_inv_02_may_invite() {
        // (members-only, allowinvites, rows by affiliation, columns by role: none, visitor,
        // participant, moderator).
        let open = ["....", ".yyy", ".yyy", ".yyy", ".yyy"];
        let table = [
            (false, false, open),
            (false, true, open),
            (true, false, ["....", "....", "....", ".yyy", ".yyy"]),
            (true, true, ["....", "....", ".yyy", ".yyy", ".yyy"]),
        ];
        for (members_only, allow_invites, rows) in table {
            for (aff, row) in AFFS.into_iter().zip(rows) {
                for (role, c) in ROLES.into_iter().zip(cells(row, 4)) {
                    assert_eq!(
                        may_invite(aff, role, members_only, allow_invites),
                        yes(c),
                        "{aff:?} {role:?} (members-only: {members_only}, \
                         allowinvites: {allow_invites})"
                    );
                }
            }
        }
    }
}
