//! XEP-0045 §10.1–§10.2 and §16.5.3: a room's configuration and the `muc#roomconfig` form,
//! plus the `muc#roominfo` form (XEP-0128, §6.4) and the room's disco features.
//!
//! Decisions (each also noted where it is made):
//! - `enablelogging` is not offered and ignored when submitted: the server does not log rooms.
//! - `maxhistoryfetch` above the service's maximum is clamped, not refused.
//! - `maxusers` `none` and `0` both mean "no room limit" (the service's limit only).
//! - Texts are checked against [`Bounds::max_text`] only when submitted, so a room whose
//!   values predate a lowered bound can still be configured.
//! - Privacy changes give 172/173, and 104 is added when anything else changed too.

use crate::xml::Element;
use crate::xmpp::dataform::{self, Field, Form, FormParseError, FormType};
use crate::xmpp::jid::Jid;

use super::perm::{AllowPm, Role};

/// `muc#roomconfig` FORM_TYPE.
pub const NS_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
/// `muc#roominfo` FORM_TYPE.
pub const NS_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";

/// Who may see occupants' real JIDs (`muc#roomconfig_whois`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whois {
    /// Moderators only: semi-anonymous.
    Moderators,
    /// Everyone: non-anonymous.
    Anyone,
}

/// A set of roles (`presencebroadcast`, `getmemberlist`), as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles(pub u8);

impl Roles {
    /// Moderator, participant and visitor.
    pub const ALL: Roles = Roles(0b111);
    /// Whether `role` is in the set (`Role::None` never is): moderator is bit 1, participant
    /// bit 2, visitor bit 4.
    pub fn contains(self, role: Role) -> bool {
        match role_bit(role) {
            Some(bit) => self.0 & bit != 0,
            None => false,
        }
    }
}

/// A room's configuration. [`RoomConfig::new`] gives the configuration of a new room (see the
/// field docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomConfig {
    /// `muc#roomconfig_roomname` (default empty: the room's localpart is shown).
    pub name: String,
    /// `muc#roomconfig_roomdesc`.
    pub description: String,
    /// `muc#roomconfig_lang`.
    pub lang: String,
    /// `muc#roomconfig_persistentroom` (default false).
    pub persistent: bool,
    /// `muc#roomconfig_publicroom` (default true).
    pub public: bool,
    /// `muc#roomconfig_membersonly` (default false).
    pub members_only: bool,
    /// `muc#roomconfig_moderatedroom` (default false).
    pub moderated: bool,
    /// `muc#roomconfig_passwordprotectedroom` + `muc#roomconfig_roomsecret`: `Some` when
    /// protected (never an empty secret).
    pub password: Option<String>,
    /// `muc#roomconfig_maxusers` (`None`: the service's limit only).
    pub max_users: Option<u32>,
    /// `muc#roomconfig_whois` (default moderators).
    pub whois: Whois,
    /// `muc#roomconfig_presencebroadcast` (default all roles).
    pub presence_broadcast: Roles,
    /// `muc#roomconfig_changesubject`: occupants (participants) may change the subject
    /// (default false).
    pub change_subject: bool,
    /// `muc#roomconfig_allowinvites`: occupants may invite others (default false).
    pub allow_invites: bool,
    /// `muc#roomconfig_allowpm` (default anyone).
    pub allow_pm: AllowPm,
    /// `muc#roomconfig_getmemberlist` (default all roles).
    pub get_member_list: Roles,
    /// `muc#maxhistoryfetch`: messages kept for history (default: the service's default,
    /// bounded by the service's maximum).
    pub history_length: u32,
}

/// What the service allows, used to fill defaults and to refuse a submitted form.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Largest `maxusers` (the service's `--muc-max-occupants`).
    pub max_users: u32,
    /// Default and largest history length (`--muc-history`, `--muc-max-history`).
    pub default_history: u32,
    /// Largest history length.
    pub max_history: u32,
    /// Largest name, description, language or password in bytes (checked when submitted).
    pub max_text: usize,
}

/// A submitted configuration: the new configuration, and the owner and admin lists when the
/// form carried `muc#roomconfig_roomowners` / `roomadmins` (full lists of bare JIDs, §10.2,
/// MUC-OWN-09).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The configuration after the form was applied.
    pub config: RoomConfig,
    /// The full owner list, if submitted (normalized bare JIDs).
    pub owners: Option<Vec<String>>,
    /// The full admin list, if submitted (normalized bare JIDs).
    pub admins: Option<Vec<String>>,
}

/// A submitted form was refused; the text goes into the `<not-acceptable/>` or
/// `<bad-request/>` error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormError {
    /// Malformed (not a submit form, wrong FORM_TYPE, a field with an unparseable value):
    /// `<bad-request/>`.
    BadRequest(String),
    /// Well-formed but against policy (password protection without a secret, maxusers
    /// above the service's bound, an owner list left empty...): `<not-acceptable/>`.
    NotAcceptable(String),
}

// The muc#roomconfig and muc#roominfo field vars (§15.5.3, §15.5.4).
const ROOMNAME: &str = "muc#roomconfig_roomname";
const ROOMDESC: &str = "muc#roomconfig_roomdesc";
const LANG: &str = "muc#roomconfig_lang";
const PERSISTENT: &str = "muc#roomconfig_persistentroom";
const PUBLIC: &str = "muc#roomconfig_publicroom";
const MEMBERS_ONLY: &str = "muc#roomconfig_membersonly";
const MODERATED: &str = "muc#roomconfig_moderatedroom";
const PASSWORD_PROTECTED: &str = "muc#roomconfig_passwordprotectedroom";
const ROOMSECRET: &str = "muc#roomconfig_roomsecret";
const MAXUSERS: &str = "muc#roomconfig_maxusers";
const WHOIS: &str = "muc#roomconfig_whois";
const PRESENCE_BROADCAST: &str = "muc#roomconfig_presencebroadcast";
const CHANGE_SUBJECT: &str = "muc#roomconfig_changesubject";
const ALLOW_INVITES: &str = "muc#roomconfig_allowinvites";
const ALLOW_PM: &str = "muc#roomconfig_allowpm";
const GET_MEMBER_LIST: &str = "muc#roomconfig_getmemberlist";
const MAX_HISTORY_FETCH: &str = "muc#maxhistoryfetch";
const ROOMOWNERS: &str = "muc#roomconfig_roomowners";
const ROOMADMINS: &str = "muc#roomconfig_roomadmins";
const INFO_DESCRIPTION: &str = "muc#roominfo_description";
const INFO_SUBJECT: &str = "muc#roominfo_subject";
const INFO_SUBJECTMOD: &str = "muc#roominfo_subjectmod";
const INFO_OCCUPANTS: &str = "muc#roominfo_occupants";
const INFO_LANG: &str = "muc#roominfo_lang";

/// The `maxusers` value for "no room limit".
const NO_LIMIT: &str = "none";

/// The roles of `presencebroadcast` / `getmemberlist`: (form value, label, bit).
const ROLE_OPTIONS: [(&str, &str, u8); 3] = [
    ("moderator", "Moderator", 1),
    ("participant", "Participant", 2),
    ("visitor", "Visitor", 4),
];

/// A role's bit in [`Roles`]; `Role::None` has none.
fn role_bit(role: Role) -> Option<u8> {
    match role {
        Role::Moderator => Some(1),
        Role::Participant => Some(2),
        Role::Visitor => Some(4),
        Role::None => None,
    }
}

/// The form values of a role set, in the options' order.
fn roles_values(roles: Roles) -> Vec<&'static str> {
    ROLE_OPTIONS
        .iter()
        .filter(|(_, _, bit)| roles.0 & bit != 0)
        .map(|(value, _, _)| *value)
        .collect()
}

/// Parses the values of a list-multi role field; an unknown role is a bad request.
fn parse_roles(var: &str, values: &[String]) -> Result<Roles, FormError> {
    let mut bits = 0;
    for value in values {
        let Some((_, _, bit)) = ROLE_OPTIONS.iter().find(|(v, _, _)| v == value) else {
            return Err(FormError::BadRequest(format!(
                "{var}: unknown role '{value}'"
            )));
        };
        bits |= bit;
    }
    Ok(Roles(bits))
}

fn whois_str(whois: Whois) -> &'static str {
    match whois {
        Whois::Moderators => "moderators",
        Whois::Anyone => "anyone",
    }
}

fn parse_whois(s: &str) -> Option<Whois> {
    match s {
        "moderators" => Some(Whois::Moderators),
        "anyone" => Some(Whois::Anyone),
        _ => None,
    }
}

// Our own mapping rather than `AllowPm::as_str`/`parse`: perm.rs is written in parallel, and
// the form's values are fixed by the XEP anyway.
fn allow_pm_str(pm: AllowPm) -> &'static str {
    match pm {
        AllowPm::Anyone => "anyone",
        AllowPm::Participants => "participants",
        AllowPm::Moderators => "moderators",
        AllowPm::None => "none",
    }
}

fn parse_allow_pm(s: &str) -> Option<AllowPm> {
    match s {
        "anyone" => Some(AllowPm::Anyone),
        "participants" => Some(AllowPm::Participants),
        "moderators" => Some(AllowPm::Moderators),
        "none" => Some(AllowPm::None),
        _ => None,
    }
}

fn bad(e: FormParseError) -> FormError {
    FormError::BadRequest(e.0)
}

/// The value of a single-valued field: None when absent, "" when present without a value;
/// several values are a bad request (XEP-0004 §3.2).
fn single<'f>(form: &'f Form, var: &str) -> Result<Option<&'f str>, FormError> {
    match form.values(var) {
        None => Ok(None),
        Some([]) => Ok(Some("")),
        Some([v]) => Ok(Some(v.as_str())),
        Some(_) => Err(FormError::BadRequest(format!("{var}: more than one value"))),
    }
}

/// Refuses a submitted text longer than the service allows.
fn check_len(var: &str, text: &str, bounds: &Bounds) -> Result<(), FormError> {
    if text.len() > bounds.max_text {
        return Err(FormError::NotAcceptable(format!(
            "{var}: longer than {} bytes",
            bounds.max_text
        )));
    }
    Ok(())
}

/// A non-negative decimal number; values beyond `u64` saturate (they are above every bound).
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// Whether `s` looks like a language tag (RFC 5646 characters only; empty clears it).
fn is_language_tag(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A submitted jid-multi list as normalized bare JIDs: blank lines skipped, full JIDs reduced
/// to their bare form (§10.5), duplicates dropped (XEP-0004 §3.3); an invalid JID is not
/// acceptable.
fn jid_list(form: &Form, var: &str) -> Result<Option<Vec<String>>, FormError> {
    let Some(values) = form.values(var) else {
        return Ok(None);
    };
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let jid = Jid::parse(value).map_err(|e| {
            FormError::NotAcceptable(format!("{var}: '{value}' is not a valid JID ({e})"))
        })?;
        let bare = jid.bare_str();
        if !out.iter().any(|j| j == bare) {
            out.push(bare.to_owned());
        }
    }
    Ok(Some(out))
}

/// The `maxusers` options under `limit`: 10, 20, 30, 50, 100, 200, 300, 500, 1000... up to
/// `limit`, then `limit` itself so the service's maximum can be chosen.
fn max_users_ladder(limit: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut scale: u32 = 10;
    'ladder: loop {
        for step in [1u32, 2, 3, 5] {
            match step.checked_mul(scale) {
                Some(v) if v <= limit => out.push(v),
                _ => break 'ladder,
            }
        }
        match scale.checked_mul(10) {
            Some(next) => scale = next,
            None => break,
        }
    }
    if limit > 0 && out.last() != Some(&limit) {
        out.push(limit);
    }
    out
}

impl RoomConfig {
    /// A new room's configuration under `bounds`: the defaults documented on the fields,
    /// with `history_length` the service's default history capped by its maximum.
    pub fn new(bounds: &Bounds) -> RoomConfig {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            lang: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_users: None,
            whois: Whois::Moderators,
            presence_broadcast: Roles::ALL,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            get_member_list: Roles::ALL,
            history_length: bounds.default_history.min(bounds.max_history),
        }
    }

    /// The `muc#roomconfig` form (`<x xmlns='jabber:x:data' type='form'>`) with the current
    /// values, `owners` and `admins` (bare JIDs) listed in their fields.
    ///
    /// `maxusers` offers only values up to `bounds.max_users` (and `none`: the service's limit
    /// only); a room limit above a since-lowered bound is shown as the bound, which is what is
    /// in force. The secret is shown to the owner, as in §10.2's example. `enablelogging` is
    /// not offered: the server does not log rooms.
    pub fn form(&self, bounds: &Bounds, owners: &[&str], admins: &[&str]) -> Element {
        let mut max_users = max_users_ladder(bounds.max_users);
        let shown = self.max_users.map(|n| n.min(bounds.max_users));
        if let Some(n) = shown {
            if !max_users.contains(&n) {
                max_users.push(n);
                max_users.sort_unstable();
            }
        }
        let max_users: Vec<String> = max_users.iter().map(u32::to_string).collect();
        let mut max_users_options: Vec<(&str, &str)> =
            max_users.iter().map(|n| (n.as_str(), n.as_str())).collect();
        max_users_options.push(("No limit", NO_LIMIT));
        let max_users_value = shown.map_or_else(|| NO_LIMIT.to_owned(), |n| n.to_string());
        let role_options: Vec<(&str, &str)> = ROLE_OPTIONS
            .iter()
            .map(|(value, label, _)| (*label, *value))
            .collect();
        let presence_broadcast = roles_values(self.presence_broadcast);
        let get_member_list = roles_values(self.get_member_list);
        let history = self.history_length.to_string();
        let fields = [
            Field::FormType(NS_ROOMCONFIG),
            Field::Text {
                var: ROOMNAME,
                label: "Natural-Language Room Name",
                value: &self.name,
            },
            Field::Text {
                var: ROOMDESC,
                label: "Short Description of Room",
                value: &self.description,
            },
            Field::Text {
                var: LANG,
                label: "Natural Language for Room Discussions",
                value: &self.lang,
            },
            Field::Boolean {
                var: PERSISTENT,
                label: "Make Room Persistent?",
                value: self.persistent,
            },
            Field::Boolean {
                var: PUBLIC,
                label: "Make Room Publicly Searchable?",
                value: self.public,
            },
            Field::Boolean {
                var: MEMBERS_ONLY,
                label: "Make Room Members-Only?",
                value: self.members_only,
            },
            Field::Boolean {
                var: MODERATED,
                label: "Make Room Moderated?",
                value: self.moderated,
            },
            Field::Boolean {
                var: PASSWORD_PROTECTED,
                label: "Password Required for Entry?",
                value: self.password.is_some(),
            },
            Field::Private {
                var: ROOMSECRET,
                label: "Password",
                value: self.password.as_deref().unwrap_or(""),
            },
            Field::ListSingle {
                var: MAXUSERS,
                label: "Maximum Number of Occupants",
                value: &max_users_value,
                options: &max_users_options,
            },
            Field::ListSingle {
                var: WHOIS,
                label: "Who May Discover Real JIDs?",
                value: whois_str(self.whois),
                options: &[("Moderators Only", "moderators"), ("Anyone", "anyone")],
            },
            Field::ListMulti {
                var: PRESENCE_BROADCAST,
                label: "Roles for which Presence is Broadcasted",
                values: &presence_broadcast,
                options: &role_options,
            },
            Field::Boolean {
                var: CHANGE_SUBJECT,
                label: "Allow Occupants to Change Subject?",
                value: self.change_subject,
            },
            Field::Boolean {
                var: ALLOW_INVITES,
                label: "Allow Occupants to Invite Others?",
                value: self.allow_invites,
            },
            Field::ListSingle {
                var: ALLOW_PM,
                label: "Who Can Send Private Messages?",
                value: allow_pm_str(self.allow_pm),
                options: &[
                    ("Anyone", "anyone"),
                    ("Anyone with Voice", "participants"),
                    ("Moderators Only", "moderators"),
                    ("Nobody", "none"),
                ],
            },
            Field::ListMulti {
                var: GET_MEMBER_LIST,
                label: "Roles that May Retrieve Member List",
                values: &get_member_list,
                options: &role_options,
            },
            Field::Text {
                var: MAX_HISTORY_FETCH,
                label: "Maximum Number of History Messages Returned by Room",
                value: &history,
            },
            Field::JidMulti {
                var: ROOMOWNERS,
                label: "Full List of Room Owners",
                values: owners,
            },
            Field::JidMulti {
                var: ROOMADMINS,
                label: "Full List of Room Admins",
                values: admins,
            },
        ];
        dataform::write(FormType::Form, Some("Room configuration"), &fields)
    }

    /// Applies a submitted form (`x`, the `<x xmlns='jabber:x:data'/>` element) to this
    /// configuration: fields not in the form keep their values; unknown fields are ignored.
    /// An empty submit form (an instant room, §10.1.2) changes nothing.
    ///
    /// Bad request: not a readable form, not `type='submit'` (the caller handles `cancel`
    /// first), a FORM_TYPE other than `muc#roomconfig`, several values in a single-valued
    /// field, a value that does not parse (boolean, list option, number, language tag).
    ///
    /// Not acceptable: password protection left without a secret (the submitted
    /// `roomsecret`, else the current one; a `roomsecret` while protection stays off is
    /// ignored), a submitted text longer than `bounds.max_text`, `maxusers` above
    /// `bounds.max_users`, an empty owner list (MUC-OWN-11), an invalid JID in the owner or
    /// admin list, or a JID in both lists. `maxhistoryfetch` above `bounds.max_history` is
    /// clamped to it rather than refused: it is a ceiling, and the service's is lower.
    pub fn apply(&self, x: &Element, bounds: &Bounds) -> Result<Submitted, FormError> {
        let form = Form::parse(x).map_err(bad)?;
        if form.ty != FormType::Submit {
            return Err(FormError::BadRequest(
                "the configuration form must be of type submit".into(),
            ));
        }
        if let Some(ft) = &form.form_type {
            if ft != NS_ROOMCONFIG {
                return Err(FormError::BadRequest(format!(
                    "unexpected FORM_TYPE '{ft}'"
                )));
            }
        }
        let mut c = self.clone();

        if let Some(name) = single(&form, ROOMNAME)? {
            check_len(ROOMNAME, name, bounds)?;
            c.name = name.to_owned();
        }
        if let Some(lines) = form.values(ROOMDESC) {
            // Clients showing it as text-multi send one value per line (XEP-0004 §3.3).
            let description = lines.join("\n");
            check_len(ROOMDESC, &description, bounds)?;
            c.description = description;
        }
        if let Some(lang) = single(&form, LANG)? {
            let lang = lang.trim();
            if !is_language_tag(lang) {
                return Err(FormError::BadRequest(format!(
                    "{LANG}: '{lang}' is not a language tag"
                )));
            }
            check_len(LANG, lang, bounds)?;
            c.lang = lang.to_owned();
        }
        for (var, slot) in [
            (PERSISTENT, &mut c.persistent),
            (PUBLIC, &mut c.public),
            (MEMBERS_ONLY, &mut c.members_only),
            (MODERATED, &mut c.moderated),
            (CHANGE_SUBJECT, &mut c.change_subject),
            (ALLOW_INVITES, &mut c.allow_invites),
        ] {
            if let Some(value) = form.boolean(var).map_err(bad)? {
                *slot = value;
            }
        }

        // Without passwordprotectedroom the protection stays as it was ("fields not in the
        // form keep their values"); a secret alone does not switch it on.
        let protected = form
            .boolean(PASSWORD_PROTECTED)
            .map_err(bad)?
            .unwrap_or(self.password.is_some());
        let secret = single(&form, ROOMSECRET)?;
        c.password = if protected {
            let secret = match secret {
                Some(s) => {
                    check_len(ROOMSECRET, s, bounds)?;
                    s
                }
                None => self.password.as_deref().unwrap_or(""),
            };
            if secret.is_empty() {
                return Err(FormError::NotAcceptable(
                    "a password-protected room needs a non-empty secret".into(),
                ));
            }
            Some(secret.to_owned())
        } else {
            None
        };

        if let Some(value) = single(&form, MAXUSERS)? {
            let value = value.trim();
            // "0" as "no limit": a limit of zero would lock everyone out, which no owner means.
            c.max_users = if value == NO_LIMIT || value == "0" {
                None
            } else {
                let n = parse_number(value).ok_or_else(|| {
                    FormError::BadRequest(format!("{MAXUSERS}: '{value}' is not a number"))
                })?;
                match u32::try_from(n) {
                    Ok(n) if n <= bounds.max_users => Some(n),
                    _ => {
                        return Err(FormError::NotAcceptable(format!(
                            "{MAXUSERS}: at most {}",
                            bounds.max_users
                        )))
                    }
                }
            };
        }
        if let Some(value) = single(&form, WHOIS)? {
            c.whois = parse_whois(value.trim()).ok_or_else(|| {
                FormError::BadRequest(format!("{WHOIS}: unknown value '{value}'"))
            })?;
        }
        if let Some(values) = form.values(PRESENCE_BROADCAST) {
            c.presence_broadcast = parse_roles(PRESENCE_BROADCAST, values)?;
        }
        if let Some(value) = single(&form, ALLOW_PM)? {
            c.allow_pm = parse_allow_pm(value.trim()).ok_or_else(|| {
                FormError::BadRequest(format!("{ALLOW_PM}: unknown value '{value}'"))
            })?;
        }
        if let Some(values) = form.values(GET_MEMBER_LIST) {
            c.get_member_list = parse_roles(GET_MEMBER_LIST, values)?;
        }
        if let Some(value) = single(&form, MAX_HISTORY_FETCH)? {
            let value = value.trim();
            let n = parse_number(value).ok_or_else(|| {
                FormError::BadRequest(format!("{MAX_HISTORY_FETCH}: '{value}' is not a number"))
            })?;
            // Clamped, not refused: the value is a ceiling and the service's is lower.
            c.history_length = u32::try_from(n).unwrap_or(u32::MAX).min(bounds.max_history);
        }

        let owners = jid_list(&form, ROOMOWNERS)?;
        if owners.as_ref().is_some_and(Vec::is_empty) {
            return Err(FormError::NotAcceptable(
                "a room keeps at least one owner".into(),
            ));
        }
        let admins = jid_list(&form, ROOMADMINS)?;
        if let (Some(owners), Some(admins)) = (&owners, &admins) {
            // One affiliation per JID: which list should win would be a guess.
            if let Some(both) = owners.iter().find(|o| admins.contains(o)) {
                return Err(FormError::NotAcceptable(format!(
                    "{both} is in both the owner and the admin list"
                )));
            }
        }
        Ok(Submitted {
            config: c,
            owners,
            admins,
        })
    }

    /// The room's disco#info features beyond `http://jabber.org/protocol/muc` (§6.4,
    /// MUC-DISCO-03), in this order: `muc_public`/`muc_hidden`,
    /// `muc_persistent`/`muc_temporary`, `muc_open`/`muc_membersonly`,
    /// `muc_moderated`/`muc_unmoderated`, `muc_nonanonymous`/`muc_semianonymous`,
    /// `muc_passwordprotected`/`muc_unsecured`.
    pub fn features(&self) -> [&'static str; 6] {
        [
            if self.public {
                "muc_public"
            } else {
                "muc_hidden"
            },
            if self.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if self.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if self.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            match self.whois {
                Whois::Anyone => "muc_nonanonymous",
                Whois::Moderators => "muc_semianonymous",
            },
            if self.password.is_some() {
                "muc_passwordprotected"
            } else {
                "muc_unsecured"
            },
        ]
    }

    /// The `muc#roominfo` form (XEP-0128, `type='result'`, §6.4): `muc#roominfo_description`,
    /// `_subject`, whether the subject may be changed by participants (both the example's
    /// `muc#roomconfig_changesubject` and the registry's `muc#roominfo_subjectmod`),
    /// `_occupants`, `_lang` when set, `muc#maxhistoryfetch`, and `muc#roomconfig_roomname`
    /// when set. Contact JIDs are left out: the room's owners are not known here.
    pub fn roominfo(&self, occupants: usize, subject: &str) -> Element {
        let occupants = occupants.to_string();
        let history = self.history_length.to_string();
        let changesubject = if self.change_subject { "1" } else { "0" };
        let description = [self.description.as_str()];
        let subject = [subject];
        let changesubject = [changesubject];
        let occupants = [occupants.as_str()];
        let lang = [self.lang.as_str()];
        let history = [history.as_str()];
        let name = [self.name.as_str()];
        let mut fields = vec![
            Field::FormType(NS_ROOMINFO),
            Field::Value {
                var: INFO_DESCRIPTION,
                values: &description,
            },
            Field::Value {
                var: INFO_SUBJECT,
                values: &subject,
            },
            Field::Value {
                var: CHANGE_SUBJECT,
                values: &changesubject,
            },
            Field::Value {
                var: INFO_SUBJECTMOD,
                values: &changesubject,
            },
            Field::Value {
                var: INFO_OCCUPANTS,
                values: &occupants,
            },
        ];
        if !self.lang.is_empty() {
            fields.push(Field::Value {
                var: INFO_LANG,
                values: &lang,
            });
        }
        fields.push(Field::Value {
            var: MAX_HISTORY_FETCH,
            values: &history,
        });
        if !self.name.is_empty() {
            fields.push(Field::Value {
                var: ROOMNAME,
                values: &name,
            });
        }
        dataform::write(FormType::Result, None, &fields)
    }

    /// The muc#user status codes the occupants are sent after a change from `old` to `self`
    /// (§10.2.1, MUC-OWN-07): 172 when the room became non-anonymous, 173 when it became
    /// semi-anonymous, and 104 when any other field changed (alone or besides 172/173: every
    /// field is either in disco#info or in the configuration an occupant may re-read, so any
    /// change is worth the re-query). Empty when nothing changed. No 170/171: rooms are never
    /// logged.
    pub fn change_codes(&self, old: &RoomConfig) -> Vec<u16> {
        let mut codes = Vec::new();
        match (old.whois, self.whois) {
            (Whois::Moderators, Whois::Anyone) => codes.push(172),
            (Whois::Anyone, Whois::Moderators) => codes.push(173),
            _ => {}
        }
        let others_changed = RoomConfig {
            whois: self.whois,
            ..old.clone()
        } != *self;
        if others_changed {
            codes.push(104);
        }
        codes
    }

    /// Encodes for storage (a versioned byte record; the module stores it opaquely).
    ///
    /// Format 1: the version byte `1`, then every field in declaration order: strings as a
    /// big-endian u32 byte length and UTF-8; booleans, [`Whois`] (0 moderators, 1 anyone),
    /// [`AllowPm`] (0 anyone, 1 participants, 2 moderators, 3 none) and [`Roles`] (its three
    /// bits; others are dropped) as one byte; `password` and `max_users` as a presence byte
    /// (0/1) followed by the value; `history_length` as a big-endian u32.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.name.len()
                + self.description.len()
                + self.lang.len()
                + self.password.as_ref().map_or(0, String::len),
        );
        out.push(FORMAT_VERSION);
        put_str(&mut out, &self.name);
        put_str(&mut out, &self.description);
        put_str(&mut out, &self.lang);
        out.push(u8::from(self.persistent));
        out.push(u8::from(self.public));
        out.push(u8::from(self.members_only));
        out.push(u8::from(self.moderated));
        match &self.password {
            Some(p) => {
                out.push(1);
                put_str(&mut out, p);
            }
            None => out.push(0),
        }
        match self.max_users {
            Some(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_be_bytes());
            }
            None => out.push(0),
        }
        out.push(match self.whois {
            Whois::Moderators => 0,
            Whois::Anyone => 1,
        });
        out.push(self.presence_broadcast.0 & Roles::ALL.0);
        out.push(u8::from(self.change_subject));
        out.push(u8::from(self.allow_invites));
        out.push(match self.allow_pm {
            AllowPm::Anyone => 0,
            AllowPm::Participants => 1,
            AllowPm::Moderators => 2,
            AllowPm::None => 3,
        });
        out.push(self.get_member_list.0 & Roles::ALL.0);
        out.extend_from_slice(&self.history_length.to_be_bytes());
        out
    }

    /// Decodes [`RoomConfig::encode`]'s output; `None` for a corrupt or unknown record: an
    /// unknown version, a truncated field, invalid UTF-8, a byte out of its range (a boolean
    /// other than 0/1, an unknown role bit...), an empty password, or trailing bytes.
    pub fn decode(buf: &[u8]) -> Option<RoomConfig> {
        let mut r = Reader(buf);
        if r.u8()? != FORMAT_VERSION {
            return None;
        }
        let name = r.string()?;
        let description = r.string()?;
        let lang = r.string()?;
        let persistent = r.bool()?;
        let public = r.bool()?;
        let members_only = r.bool()?;
        let moderated = r.bool()?;
        let password = match r.bool()? {
            true => {
                let p = r.string()?;
                if p.is_empty() {
                    return None;
                }
                Some(p)
            }
            false => None,
        };
        let max_users = match r.bool()? {
            true => Some(r.u32()?),
            false => None,
        };
        let whois = match r.u8()? {
            0 => Whois::Moderators,
            1 => Whois::Anyone,
            _ => return None,
        };
        let presence_broadcast = r.roles()?;
        let change_subject = r.bool()?;
        let allow_invites = r.bool()?;
        let allow_pm = match r.u8()? {
            0 => AllowPm::Anyone,
            1 => AllowPm::Participants,
            2 => AllowPm::Moderators,
            3 => AllowPm::None,
            _ => return None,
        };
        let get_member_list = r.roles()?;
        let history_length = r.u32()?;
        if !r.0.is_empty() {
            return None;
        }
        Some(RoomConfig {
            name,
            description,
            lang,
            persistent,
            public,
            members_only,
            moderated,
            password,
            max_users,
            whois,
            presence_broadcast,
            change_subject,
            allow_invites,
            allow_pm,
            get_member_list,
            history_length,
        })
    }
}

/// The storage format written by [`RoomConfig::encode`].
const FORMAT_VERSION: u8 = 1;

/// Appends a u32-length-prefixed UTF-8 string.
fn put_str(out: &mut Vec<u8>, s: &str) {
    // Texts are bounded by the stanza size, far below 4 GiB; were one longer, only the bytes
    // its length covers are written, so the record's framing stays intact.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    let n = usize::try_from(len).unwrap_or(usize::MAX);
    out.extend_from_slice(s.as_bytes().get(..n).unwrap_or(s.as_bytes()));
}

/// A cursor over a stored record; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        let bytes: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).ok()
    }

    fn roles(&mut self) -> Option<Roles> {
        let bits = self.u8()?;
        (bits & !Roles::ALL.0 == 0).then_some(Roles(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_element, Limits, StreamNs};
    use crate::xmpp::dataform::NS;

    const B: Bounds = Bounds {
        max_users: 200,
        default_history: 20,
        max_history: 50,
        max_text: 64,
    };

    /// A submit form with these fields, built by hand (not with the code under test).
    fn submit(fields: &[(&str, &[&str])]) -> Element {
        submit_typed("submit", Some(NS_ROOMCONFIG), fields)
    }

    fn submit_typed(ty: &str, form_type: Option<&str>, fields: &[(&str, &[&str])]) -> Element {
        let mut x = Element::new("x", NS).with_attr("type", ty);
        if let Some(ft) = form_type {
            x.push_child(
                Element::new("field", NS)
                    .with_attr("var", "FORM_TYPE")
                    .with_attr("type", "hidden")
                    .with_child(Element::new("value", NS).with_text(ft)),
            );
        }
        for (var, values) in fields {
            let mut f = Element::new("field", NS).with_attr("var", *var);
            for v in *values {
                f.push_child(Element::new("value", NS).with_text(*v));
            }
            x.push_child(f);
        }
        x
    }

    fn apply(c: &RoomConfig, fields: &[(&str, &[&str])]) -> Result<Submitted, FormError> {
        c.apply(&submit(fields), &B)
    }

    fn applied(c: &RoomConfig, fields: &[(&str, &[&str])]) -> RoomConfig {
        apply(c, fields).expect("accepted").config
    }

    fn is_bad(r: Result<Submitted, FormError>) -> bool {
        matches!(r, Err(FormError::BadRequest(_)))
    }

    fn is_unacceptable(r: Result<Submitted, FormError>) -> bool {
        matches!(r, Err(FormError::NotAcceptable(_)))
    }

    /// A configuration with every field away from its default.
    fn custom() -> RoomConfig {
        RoomConfig {
            name: "A Dark Cave ☃".into(),
            description: "The place\nfor all good witches!".into(),
            lang: "en-GB".into(),
            persistent: true,
            public: false,
            members_only: true,
            moderated: true,
            password: Some("cauldron burn".into()),
            max_users: Some(30),
            whois: Whois::Anyone,
            presence_broadcast: Roles(0b011),
            change_subject: true,
            allow_invites: true,
            allow_pm: AllowPm::Moderators,
            get_member_list: Roles(0b001),
            history_length: 42,
        }
    }

    #[test]
    fn roles_contains() {
        let cases = [
            (Role::Moderator, 0b001),
            (Role::Participant, 0b010),
            (Role::Visitor, 0b100),
        ];
        for bits in 0..=0b111u8 {
            let roles = Roles(bits);
            for (role, bit) in cases {
                assert_eq!(roles.contains(role), bits & bit != 0, "{bits:b} {role:?}");
            }
            assert!(!roles.contains(Role::None));
        }
        assert!(!Roles(0xff).contains(Role::None));
        for (role, _) in cases {
            assert!(Roles::ALL.contains(role));
        }
    }

    #[test]
    fn new_room_defaults() {
        let c = RoomConfig::new(&B);
        assert_eq!(
            c,
            RoomConfig {
                name: String::new(),
                description: String::new(),
                lang: String::new(),
                persistent: false,
                public: true,
                members_only: false,
                moderated: false,
                password: None,
                max_users: None,
                whois: Whois::Moderators,
                presence_broadcast: Roles::ALL,
                change_subject: false,
                allow_invites: false,
                allow_pm: AllowPm::Anyone,
                get_member_list: Roles::ALL,
                history_length: 20,
            }
        );
        let capped = RoomConfig::new(&Bounds {
            default_history: 100,
            ..B
        });
        assert_eq!(
            capped.history_length, 50,
            "the default is capped by the maximum"
        );
    }

    #[test]
    fn form_offers_the_standard_fields() {
        let c = custom();
        let x = c.form(
            &B,
            &["crone1@shakespeare.lit"],
            &["wiccarocks@shakespeare.lit"],
        );
        assert!(x.is("x", NS));
        assert_eq!(x.attr("type"), Some("form"));
        let types: Vec<(&str, &str)> = x
            .elements()
            .filter(|e| e.is("field", NS))
            .map(|f| (f.attr("var").unwrap_or(""), f.attr("type").unwrap_or("")))
            .collect();
        assert_eq!(
            types,
            [
                ("FORM_TYPE", "hidden"),
                (ROOMNAME, "text-single"),
                (ROOMDESC, "text-single"),
                (LANG, "text-single"),
                (PERSISTENT, "boolean"),
                (PUBLIC, "boolean"),
                (MEMBERS_ONLY, "boolean"),
                (MODERATED, "boolean"),
                (PASSWORD_PROTECTED, "boolean"),
                (ROOMSECRET, "text-private"),
                (MAXUSERS, "list-single"),
                (WHOIS, "list-single"),
                (PRESENCE_BROADCAST, "list-multi"),
                (CHANGE_SUBJECT, "boolean"),
                (ALLOW_INVITES, "boolean"),
                (ALLOW_PM, "list-single"),
                (GET_MEMBER_LIST, "list-multi"),
                (MAX_HISTORY_FETCH, "text-single"),
                (ROOMOWNERS, "jid-multi"),
                (ROOMADMINS, "jid-multi"),
            ]
        );
        assert!(!x.to_string_in("").contains("enablelogging"));
        // Every typed field has a label.
        for f in x.elements().filter(|e| e.is("field", NS)) {
            if f.attr("var") != Some("FORM_TYPE") {
                assert!(f.attr("label").is_some_and(|l| !l.is_empty()), "{f:?}");
            }
        }
        let form = Form::parse(&x).expect("readable");
        assert_eq!(form.form_type.as_deref(), Some(NS_ROOMCONFIG));
        let one = |var: &str| form.value(var).map(str::to_owned);
        assert_eq!(one(ROOMNAME).as_deref(), Some("A Dark Cave ☃"));
        assert_eq!(
            one(ROOMDESC).as_deref(),
            Some("The place\nfor all good witches!")
        );
        assert_eq!(one(LANG).as_deref(), Some("en-GB"));
        assert_eq!(form.boolean(PERSISTENT), Ok(Some(true)));
        assert_eq!(form.boolean(PUBLIC), Ok(Some(false)));
        assert_eq!(form.boolean(PASSWORD_PROTECTED), Ok(Some(true)));
        assert_eq!(one(ROOMSECRET).as_deref(), Some("cauldron burn"));
        assert_eq!(one(MAXUSERS).as_deref(), Some("30"));
        assert_eq!(one(WHOIS).as_deref(), Some("anyone"));
        assert_eq!(one(ALLOW_PM).as_deref(), Some("moderators"));
        assert_eq!(one(MAX_HISTORY_FETCH).as_deref(), Some("42"));
        assert_eq!(
            form.values(PRESENCE_BROADCAST),
            Some(&["moderator".to_owned(), "participant".into()][..])
        );
        assert_eq!(
            form.values(GET_MEMBER_LIST),
            Some(&["moderator".to_owned()][..])
        );
        assert_eq!(
            form.values(ROOMOWNERS),
            Some(&["crone1@shakespeare.lit".to_owned()][..])
        );
        assert_eq!(
            form.values(ROOMADMINS),
            Some(&["wiccarocks@shakespeare.lit".to_owned()][..])
        );
    }

    fn options(x: &Element, var: &str) -> Vec<String> {
        x.elements()
            .find(|f| f.attr("var") == Some(var))
            .map(|f| {
                f.elements()
                    .filter(|o| o.is("option", NS))
                    .filter_map(|o| o.child("value", NS).map(Element::text))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn form_max_users_options() {
        let c = RoomConfig::new(&B);
        let x = c.form(&B, &[], &[]);
        assert_eq!(
            options(&x, MAXUSERS),
            ["10", "20", "30", "50", "100", "200", "none"]
        );
        let form = Form::parse(&x).expect("readable");
        assert_eq!(form.value(MAXUSERS), Some("none"));
        assert_eq!(form.boolean(PASSWORD_PROTECTED), Ok(Some(false)));
        assert_eq!(form.value(ROOMSECRET), Some(""));
        assert_eq!(form.values(ROOMOWNERS), Some(&[][..]));
        // The service's maximum is offered even off the ladder, and nothing above it.
        let odd = Bounds { max_users: 75, ..B };
        assert_eq!(
            options(&c.form(&odd, &[], &[]), MAXUSERS),
            ["10", "20", "30", "50", "75", "none"]
        );
        let tiny = Bounds { max_users: 5, ..B };
        assert_eq!(options(&c.form(&tiny, &[], &[]), MAXUSERS), ["5", "none"]);
        let zero = Bounds { max_users: 0, ..B };
        assert_eq!(options(&c.form(&zero, &[], &[]), MAXUSERS), ["none"]);
        let huge = Bounds {
            max_users: u32::MAX,
            ..B
        };
        let opts = options(&c.form(&huge, &[], &[]), MAXUSERS);
        assert!(opts.contains(&"3000000000".to_owned()), "{opts:?}");
        assert_eq!(
            opts.get(opts.len() - 2).map(String::as_str),
            Some("4294967295")
        );
        // The current value is among the options; one above a lowered bound shows the bound.
        let c = RoomConfig {
            max_users: Some(42),
            ..c
        };
        let x = c.form(&B, &[], &[]);
        assert_eq!(
            options(&x, MAXUSERS),
            ["10", "20", "30", "42", "50", "100", "200", "none"]
        );
        let low = Bounds { max_users: 25, ..B };
        let x = c.form(&low, &[], &[]);
        assert_eq!(options(&x, MAXUSERS), ["10", "20", "25", "none"]);
        assert_eq!(
            Form::parse(&x).expect("readable").value(MAXUSERS),
            Some("25")
        );
        // Fixed option lists.
        assert_eq!(options(&x, WHOIS), ["moderators", "anyone"]);
        assert_eq!(
            options(&x, ALLOW_PM),
            ["anyone", "participants", "moderators", "none"]
        );
        for var in [PRESENCE_BROADCAST, GET_MEMBER_LIST] {
            assert_eq!(options(&x, var), ["moderator", "participant", "visitor"]);
        }
    }

    /// The form, filled in as given and submitted back, yields the same configuration.
    fn resubmit(c: &RoomConfig, owners: &[&str], admins: &[&str]) -> Submitted {
        let mut x = c.form(&B, owners, admins);
        x.set_attr("type", "submit");
        // Through the wire, as a client would send it.
        let s = x.to_string_in("jabber:client");
        let x = parse_element(
            s.as_bytes(),
            &StreamNs::new("jabber:client"),
            &Limits::default(),
        )
        .expect("well-formed");
        c.apply(&x, &B)
            .expect("the server's own form is acceptable")
    }

    #[test]
    fn form_submitted_back_round_trips() {
        let owners = ["crone1@shakespeare.lit", "x@y"];
        let admins = ["wiccarocks@shakespeare.lit"];
        for c in [
            RoomConfig::new(&B),
            custom(),
            RoomConfig {
                description: String::new(),
                max_users: Some(200),
                whois: Whois::Moderators,
                allow_pm: AllowPm::None,
                presence_broadcast: Roles(0),
                get_member_list: Roles(0b110),
                ..custom()
            },
            RoomConfig {
                allow_pm: AllowPm::Participants,
                max_users: None,
                ..custom()
            },
        ] {
            let s = resubmit(&c, &owners, &admins);
            assert_eq!(s.config, c);
            assert_eq!(
                s.owners,
                Some(owners.iter().map(|s| s.to_string()).collect())
            );
            assert_eq!(
                s.admins,
                Some(admins.iter().map(|s| s.to_string()).collect())
            );
        }
    }

    #[test]
    fn empty_submit_is_an_instant_room() {
        let c = custom();
        for x in [
            submit_typed("submit", None, &[]),
            submit_typed("submit", Some(NS_ROOMCONFIG), &[]),
        ] {
            assert_eq!(
                c.apply(&x, &B),
                Ok(Submitted {
                    config: c.clone(),
                    owners: None,
                    admins: None
                })
            );
        }
        // Unknown fields are ignored, enablelogging included.
        let s = apply(
            &c,
            &[
                ("muc#roomconfig_enablelogging", &["1"]),
                ("x-custom", &["?"]),
            ],
        )
        .expect("accepted");
        assert_eq!(s.config, c);
    }

    #[test]
    fn apply_refuses_what_is_not_a_roomconfig_submission() {
        let c = RoomConfig::new(&B);
        for ty in ["form", "result", "cancel"] {
            assert!(
                is_bad(c.apply(&submit_typed(ty, Some(NS_ROOMCONFIG), &[]), &B)),
                "{ty}"
            );
        }
        assert!(is_bad(c.apply(&submit_typed("bogus", None, &[]), &B)));
        assert!(is_bad(
            c.apply(&submit_typed("submit", Some(NS_ROOMINFO), &[]), &B)
        ));
        assert!(is_bad(c.apply(&submit_typed("submit", Some(""), &[]), &B)));
        let wrong_ns = Element::new("x", "urn:other").with_attr("type", "submit");
        assert!(is_bad(c.apply(&wrong_ns, &B)));
        let wrong_name = Element::new("query", NS).with_attr("type", "submit");
        assert!(is_bad(c.apply(&wrong_name, &B)));
        assert!(is_bad(apply(&c, &[(ROOMNAME, &["a"]), (ROOMNAME, &["b"])])));
    }

    #[test]
    fn apply_texts() {
        let c = custom();
        let n = applied(
            &c,
            &[(ROOMNAME, &["New"]), (ROOMDESC, &["d"]), (LANG, &["fr"])],
        );
        assert_eq!(
            (n.name.as_str(), n.description.as_str(), n.lang.as_str()),
            ("New", "d", "fr")
        );
        assert_eq!(
            n,
            RoomConfig {
                name: "New".into(),
                description: "d".into(),
                lang: "fr".into(),
                ..c.clone()
            }
        );
        // Present without a value clears; a multi-line description is joined.
        let n = applied(
            &c,
            &[(ROOMNAME, &[]), (ROOMDESC, &["l1", "", "l3"]), (LANG, &[])],
        );
        assert_eq!(n.name, "");
        assert_eq!(n.description, "l1\n\nl3");
        assert_eq!(n.lang, "");
        let n = applied(&c, &[(ROOMDESC, &[]), (LANG, &[" de "])]);
        assert_eq!(n.description, "");
        assert_eq!(n.lang, "de");
        // Single-valued fields with several values.
        assert!(is_bad(apply(&c, &[(ROOMNAME, &["a", "b"])])));
        assert!(is_bad(apply(&c, &[(LANG, &["en", "fr"])])));
        // Language tags.
        for bad in ["en gb", "e n", "-en", "en-", "en--gb", "ën", "en_GB"] {
            assert!(is_bad(apply(&c, &[(LANG, &[bad])])), "{bad}");
        }
    }

    #[test]
    fn apply_text_lengths() {
        let c = RoomConfig::new(&B);
        let at = "é".repeat(B.max_text / 2);
        let over = format!("{at}x");
        assert_eq!(at.len(), B.max_text);
        assert_eq!(applied(&c, &[(ROOMNAME, &[&at])]).name, at);
        assert_eq!(applied(&c, &[(ROOMDESC, &[&at])]).description, at);
        assert!(is_unacceptable(apply(&c, &[(ROOMNAME, &[&over])])));
        assert!(is_unacceptable(apply(&c, &[(ROOMDESC, &[&over])])));
        // Joined lines count with their separators.
        let half = "a".repeat(B.max_text / 2);
        assert!(is_unacceptable(apply(&c, &[(ROOMDESC, &[&half, &half])])));
        let lang = "a".repeat(B.max_text);
        assert_eq!(applied(&c, &[(LANG, &[&lang])]).lang, lang);
        assert!(is_unacceptable(apply(
            &c,
            &[(LANG, &[&format!("{lang}b")])]
        )));
        let s = applied(&c, &[(PASSWORD_PROTECTED, &["1"]), (ROOMSECRET, &[&at])]);
        assert_eq!(s.password.as_deref(), Some(at.as_str()));
        assert!(is_unacceptable(apply(
            &c,
            &[(PASSWORD_PROTECTED, &["1"]), (ROOMSECRET, &[&over])]
        )));
        // Values already stored are not re-checked against a lowered bound.
        let long = RoomConfig {
            name: over.clone(),
            ..c
        };
        assert_eq!(applied(&long, &[(PERSISTENT, &["1"])]).name, over);
    }

    #[test]
    fn apply_booleans() {
        let vars = [
            PERSISTENT,
            PUBLIC,
            MEMBERS_ONLY,
            MODERATED,
            CHANGE_SUBJECT,
            ALLOW_INVITES,
        ];
        let get = |c: &RoomConfig| {
            [
                c.persistent,
                c.public,
                c.members_only,
                c.moderated,
                c.change_subject,
                c.allow_invites,
            ]
        };
        for start in [RoomConfig::new(&B), custom()] {
            for (i, var) in vars.iter().enumerate() {
                for (value, want) in [("1", true), ("true", true), ("0", false), ("false", false)] {
                    let n = applied(&start, &[(var, &[value])]);
                    let mut expect = get(&start);
                    if let Some(slot) = expect.get_mut(i) {
                        *slot = want;
                    }
                    assert_eq!(get(&n), expect, "{var}={value}");
                    // Nothing else moved.
                    let mut back = n.clone();
                    back.persistent = start.persistent;
                    back.public = start.public;
                    back.members_only = start.members_only;
                    back.moderated = start.moderated;
                    back.change_subject = start.change_subject;
                    back.allow_invites = start.allow_invites;
                    assert_eq!(back, start);
                }
                // A boolean without a value is false (XEP-0004's default).
                assert_eq!(get(&applied(&start, &[(var, &[])])).get(i), Some(&false));
                for bad in ["yes", "", "2", "on"] {
                    assert!(is_bad(apply(&start, &[(var, &[bad])])), "{var}={bad}");
                }
                assert!(is_bad(apply(&start, &[(var, &["1", "0"])])));
            }
        }
    }

    #[test]
    fn apply_password() {
        let open = RoomConfig::new(&B);
        let locked = RoomConfig {
            password: Some("old".into()),
            ..open.clone()
        };
        let pw = |c: &RoomConfig, f: &[(&str, &[&str])]| applied(c, f).password;
        // Turning protection on needs a secret, from the form or already set.
        assert_eq!(
            pw(&open, &[(PASSWORD_PROTECTED, &["1"]), (ROOMSECRET, &["s"])]),
            Some("s".into())
        );
        assert!(is_unacceptable(apply(
            &open,
            &[(PASSWORD_PROTECTED, &["1"])]
        )));
        assert!(is_unacceptable(apply(
            &open,
            &[(PASSWORD_PROTECTED, &["1"]), (ROOMSECRET, &[""])]
        )));
        assert!(is_unacceptable(apply(
            &open,
            &[(PASSWORD_PROTECTED, &["true"]), (ROOMSECRET, &[])]
        )));
        assert_eq!(
            pw(&locked, &[(PASSWORD_PROTECTED, &["1"])]),
            Some("old".into())
        );
        assert_eq!(
            pw(
                &locked,
                &[(PASSWORD_PROTECTED, &["1"]), (ROOMSECRET, &["new"])]
            ),
            Some("new".into())
        );
        // An explicitly emptied secret is refused even though one was set.
        assert!(is_unacceptable(apply(
            &locked,
            &[(PASSWORD_PROTECTED, &["1"]), (ROOMSECRET, &[""])]
        )));
        // Off: no password, whatever the secret field says.
        assert_eq!(pw(&locked, &[(PASSWORD_PROTECTED, &["0"])]), None);
        assert_eq!(
            pw(
                &locked,
                &[(PASSWORD_PROTECTED, &["0"]), (ROOMSECRET, &["x"])]
            ),
            None
        );
        // Protection field absent: unchanged state; a secret replaces only while protected.
        assert_eq!(pw(&locked, &[(ROOMSECRET, &["new"])]), Some("new".into()));
        assert!(is_unacceptable(apply(&locked, &[(ROOMSECRET, &[""])])));
        assert_eq!(pw(&open, &[(ROOMSECRET, &["ignored"])]), None);
        assert_eq!(pw(&locked, &[(ROOMNAME, &["n"])]), Some("old".into()));
        // Malformed.
        assert!(is_bad(apply(&open, &[(PASSWORD_PROTECTED, &["maybe"])])));
        assert!(is_bad(apply(
            &open,
            &[(PASSWORD_PROTECTED, &["1"]), (ROOMSECRET, &["a", "b"])]
        )));
    }

    #[test]
    fn apply_max_users() {
        let c = custom();
        let mu = |v: &[&str]| apply(&c, &[(MAXUSERS, v)]).map(|s| s.config.max_users);
        assert_eq!(mu(&["none"]), Ok(None));
        assert_eq!(mu(&["0"]), Ok(None));
        assert_eq!(mu(&["10"]), Ok(Some(10)));
        assert_eq!(mu(&["1"]), Ok(Some(1)));
        assert_eq!(mu(&[" 50 "]), Ok(Some(50)));
        assert_eq!(mu(&["200"]), Ok(Some(200)), "the bound itself");
        assert_eq!(mu(&["042"]), Ok(Some(42)));
        for over in ["201", "4294967296", "99999999999999999999999999"] {
            assert!(
                matches!(mu(&[over]), Err(FormError::NotAcceptable(_))),
                "{over}"
            );
        }
        for bad in ["", "abc", "-1", "+5", "1.5", "None", "1e3"] {
            assert!(
                matches!(mu(&[bad]), Err(FormError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(mu(&[]), Err(FormError::BadRequest(_))), "no value");
        assert!(matches!(mu(&["10", "20"]), Err(FormError::BadRequest(_))));
    }

    #[test]
    fn apply_history() {
        let c = custom();
        let h = |v: &[&str]| apply(&c, &[(MAX_HISTORY_FETCH, v)]).map(|s| s.config.history_length);
        assert_eq!(h(&["0"]), Ok(0));
        assert_eq!(h(&["7"]), Ok(7));
        assert_eq!(h(&["50"]), Ok(50));
        // Clamped to the service's maximum rather than refused.
        assert_eq!(h(&["51"]), Ok(50));
        assert_eq!(h(&["4294967296"]), Ok(50));
        assert_eq!(h(&["999999999999999999999999999"]), Ok(50));
        for bad in ["", "x", "-1", "2.5", "ten"] {
            assert!(
                matches!(h(&[bad]), Err(FormError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(h(&["1", "2"]), Err(FormError::BadRequest(_))));
    }

    #[test]
    fn apply_lists() {
        let c = RoomConfig::new(&B);
        for (value, want) in [("moderators", Whois::Moderators), ("anyone", Whois::Anyone)] {
            assert_eq!(applied(&custom(), &[(WHOIS, &[value])]).whois, want);
            assert_eq!(applied(&c, &[(WHOIS, &[value])]).whois, want);
        }
        for bad in ["", "Anyone", "participants", "none"] {
            assert!(is_bad(apply(&c, &[(WHOIS, &[bad])])), "{bad}");
        }
        assert!(is_bad(apply(&c, &[(WHOIS, &[])])));
        for (value, want) in [
            ("anyone", AllowPm::Anyone),
            ("participants", AllowPm::Participants),
            ("moderators", AllowPm::Moderators),
            ("none", AllowPm::None),
        ] {
            assert_eq!(applied(&c, &[(ALLOW_PM, &[value])]).allow_pm, want);
            assert_eq!(applied(&custom(), &[(ALLOW_PM, &[value])]).allow_pm, want);
            // The writer's mapping is the parser's inverse.
            assert_eq!(parse_allow_pm(allow_pm_str(want)), Some(want));
        }
        for bad in ["", "all", "Moderators", "visitors"] {
            assert!(is_bad(apply(&c, &[(ALLOW_PM, &[bad])])), "{bad}");
        }
        assert!(is_bad(apply(&c, &[(ALLOW_PM, &["anyone", "none"])])));
    }

    #[test]
    fn apply_role_sets() {
        let c = RoomConfig::new(&B);
        for var in [PRESENCE_BROADCAST, GET_MEMBER_LIST] {
            let get = |n: &RoomConfig| {
                if var == PRESENCE_BROADCAST {
                    n.presence_broadcast
                } else {
                    n.get_member_list
                }
            };
            for (values, want) in [
                (&[][..], 0),
                (&["moderator"][..], 0b001),
                (&["participant"][..], 0b010),
                (&["visitor"][..], 0b100),
                (&["visitor", "moderator"][..], 0b101),
                (&["moderator", "participant", "visitor"][..], 0b111),
                (&["visitor", "visitor"][..], 0b100),
            ] {
                assert_eq!(
                    get(&applied(&c, &[(var, values)])),
                    Roles(want),
                    "{values:?}"
                );
            }
            for bad in ["", "none", "Moderator", "owner", "moderators"] {
                assert!(is_bad(apply(&c, &[(var, &["visitor", bad])])), "{bad}");
            }
        }
    }

    #[test]
    fn apply_owner_and_admin_lists() {
        let c = RoomConfig::new(&B);
        let s = apply(
            &c,
            &[
                (
                    ROOMOWNERS,
                    &[
                        "Crone1@Shakespeare.LIT/desktop",
                        "",
                        " x@y ",
                        "crone1@shakespeare.lit",
                    ],
                ),
                (ROOMADMINS, &[]),
            ],
        )
        .expect("accepted");
        assert_eq!(
            s.owners,
            Some(vec!["crone1@shakespeare.lit".to_owned(), "x@y".into()]),
            "bare, normalized, blank lines and duplicates dropped"
        );
        assert_eq!(s.admins, Some(vec![]), "an empty admin list is fine");
        assert_eq!(s.config, c);
        let s = apply(&c, &[(ROOMADMINS, &["a@b", "server.example"])]).expect("accepted");
        assert_eq!(s.owners, None);
        assert_eq!(
            s.admins,
            Some(vec!["a@b".to_owned(), "server.example".into()])
        );
        // A room keeps an owner.
        assert!(is_unacceptable(apply(&c, &[(ROOMOWNERS, &[])])));
        assert!(is_unacceptable(apply(&c, &[(ROOMOWNERS, &["", "  "])])));
        // Invalid JIDs.
        for bad in ["@b", "a@", "a@b/", "a b@c", "a@b@c/"] {
            let r = apply(&c, &[(ROOMOWNERS, &["ok@x", bad])]);
            assert!(is_unacceptable(r), "{bad}");
            assert!(is_unacceptable(apply(&c, &[(ROOMADMINS, &[bad])])), "{bad}");
        }
        // One JID in both lists.
        assert!(is_unacceptable(apply(
            &c,
            &[(ROOMOWNERS, &["a@b"]), (ROOMADMINS, &["c@d", "A@B/x"])]
        )));
    }

    #[test]
    fn features_follow_the_config() {
        let c = RoomConfig::new(&B);
        assert_eq!(
            c.features(),
            [
                "muc_public",
                "muc_temporary",
                "muc_open",
                "muc_unmoderated",
                "muc_semianonymous",
                "muc_unsecured"
            ]
        );
        assert_eq!(
            custom().features(),
            [
                "muc_hidden",
                "muc_persistent",
                "muc_membersonly",
                "muc_moderated",
                "muc_nonanonymous",
                "muc_passwordprotected"
            ]
        );
        // Each feature follows its own field only.
        let flips: [fn(&mut RoomConfig); 6] = [
            |c| c.public = !c.public,
            |c| c.persistent = !c.persistent,
            |c| c.members_only = !c.members_only,
            |c| c.moderated = !c.moderated,
            |c| c.whois = Whois::Anyone,
            |c| c.password = Some("p".into()),
        ];
        for (i, flip) in flips.iter().enumerate() {
            let mut n = c.clone();
            flip(&mut n);
            let (a, b) = (c.features(), n.features());
            for j in 0..6 {
                assert_eq!(a.get(j) != b.get(j), i == j, "flip {i}, feature {j}");
            }
        }
    }

    #[test]
    fn roominfo_form() {
        let x = custom().roominfo(3, "Spells");
        assert_eq!(x.attr("type"), Some("result"));
        let f = Form::parse(&x).expect("readable");
        assert_eq!(f.ty, FormType::Result);
        assert_eq!(f.form_type.as_deref(), Some(NS_ROOMINFO));
        let vars: Vec<&str> = f.fields.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(
            vars,
            [
                INFO_DESCRIPTION,
                INFO_SUBJECT,
                CHANGE_SUBJECT,
                INFO_SUBJECTMOD,
                INFO_OCCUPANTS,
                INFO_LANG,
                MAX_HISTORY_FETCH,
                ROOMNAME
            ]
        );
        assert_eq!(
            f.value(INFO_DESCRIPTION),
            Some("The place\nfor all good witches!")
        );
        assert_eq!(f.value(INFO_SUBJECT), Some("Spells"));
        assert_eq!(f.boolean(CHANGE_SUBJECT), Ok(Some(true)));
        assert_eq!(f.boolean(INFO_SUBJECTMOD), Ok(Some(true)));
        assert_eq!(f.value(INFO_OCCUPANTS), Some("3"));
        assert_eq!(f.value(INFO_LANG), Some("en-GB"));
        assert_eq!(f.value(MAX_HISTORY_FETCH), Some("42"));
        assert_eq!(f.value(ROOMNAME), Some("A Dark Cave ☃"));
        // A new room: no language or name, empty description and subject still given.
        let f = Form::parse(&RoomConfig::new(&B).roominfo(0, "")).expect("readable");
        assert_eq!(f.values(INFO_LANG), None);
        assert_eq!(f.values(ROOMNAME), None);
        assert_eq!(f.value(INFO_DESCRIPTION), Some(""));
        assert_eq!(f.value(INFO_SUBJECT), Some(""));
        assert_eq!(f.value(INFO_OCCUPANTS), Some("0"));
        assert_eq!(f.boolean(CHANGE_SUBJECT), Ok(Some(false)));
        assert_eq!(f.value(MAX_HISTORY_FETCH), Some("20"));
    }

    #[test]
    fn change_codes() {
        let old = RoomConfig::new(&B);
        assert!(old.change_codes(&old).is_empty());
        assert!(custom().change_codes(&custom()).is_empty());
        let non_anon = RoomConfig {
            whois: Whois::Anyone,
            ..old.clone()
        };
        assert_eq!(non_anon.change_codes(&old), [172]);
        assert_eq!(old.change_codes(&non_anon), [173]);
        let renamed = RoomConfig {
            name: "x".into(),
            ..non_anon.clone()
        };
        assert_eq!(renamed.change_codes(&old), [172, 104]);
        assert_eq!(old.change_codes(&renamed), [173, 104]);
        assert_eq!(renamed.change_codes(&non_anon), [104]);
        // Any single change other than whois gives 104.
        let changes: [fn(&mut RoomConfig); 15] = [
            |c| c.name = "n".into(),
            |c| c.description = "d".into(),
            |c| c.lang = "en".into(),
            |c| c.persistent = true,
            |c| c.public = false,
            |c| c.members_only = true,
            |c| c.moderated = true,
            |c| c.password = Some("p".into()),
            |c| c.max_users = Some(10),
            |c| c.presence_broadcast = Roles(1),
            |c| c.change_subject = true,
            |c| c.allow_invites = true,
            |c| c.allow_pm = AllowPm::None,
            |c| c.get_member_list = Roles(1),
            |c| c.history_length = 0,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut n = old.clone();
            change(&mut n);
            assert_ne!(n, old, "change {i} changes something");
            assert_eq!(n.change_codes(&old), [104], "change {i}");
            assert_eq!(old.change_codes(&n), [104], "change {i} undone");
        }
    }

    #[test]
    fn encode_decode_round_trips() {
        let configs = [
            RoomConfig::new(&B),
            custom(),
            RoomConfig {
                name: String::new(),
                password: Some("x".into()),
                max_users: Some(0),
                allow_pm: AllowPm::Participants,
                presence_broadcast: Roles(0),
                history_length: u32::MAX,
                ..custom()
            },
            RoomConfig {
                max_users: Some(u32::MAX),
                allow_pm: AllowPm::None,
                whois: Whois::Moderators,
                ..custom()
            },
        ];
        for c in &configs {
            let bytes = c.encode();
            assert_eq!(bytes.first(), Some(&1), "format version 1");
            assert_eq!(RoomConfig::decode(&bytes).as_ref(), Some(c));
        }
        // Unknown role bits are not stored.
        let stray = RoomConfig {
            presence_broadcast: Roles(0xf9),
            get_member_list: Roles(0x82),
            ..custom()
        };
        let back = RoomConfig::decode(&stray.encode()).expect("decodes");
        assert_eq!(back.presence_broadcast, Roles(0b001));
        assert_eq!(back.get_member_list, Roles(0b010));
    }

    #[test]
    fn encoding_layout() {
        let c = RoomConfig {
            name: "n".into(),
            description: String::new(),
            lang: "en".into(),
            persistent: true,
            public: false,
            members_only: true,
            moderated: false,
            password: Some("pw".into()),
            max_users: Some(0x0102_0304),
            whois: Whois::Anyone,
            presence_broadcast: Roles(5),
            change_subject: true,
            allow_invites: false,
            allow_pm: AllowPm::Moderators,
            get_member_list: Roles(2),
            history_length: 0x0a0b_0c0d,
        };
        let want: Vec<u8> = [
            &[1u8][..],
            &[0, 0, 0, 1, b'n'],
            &[0, 0, 0, 0],
            &[0, 0, 0, 2, b'e', b'n'],
            &[1, 0, 1, 0],
            &[1, 0, 0, 0, 2, b'p', b'w'],
            &[1, 1, 2, 3, 4],
            &[1, 5, 1, 0, 2, 2],
            &[0x0a, 0x0b, 0x0c, 0x0d],
        ]
        .concat();
        assert_eq!(c.encode(), want);
        assert_eq!(RoomConfig::decode(&want), Some(c));
    }

    #[test]
    fn decode_refuses_corruption() {
        let c = custom();
        let bytes = c.encode();
        // Every truncation.
        for n in 0..bytes.len() {
            assert_eq!(
                RoomConfig::decode(bytes.get(..n).unwrap_or_default()),
                None,
                "{n}"
            );
        }
        // Trailing bytes.
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(RoomConfig::decode(&long), None);
        // Unknown versions.
        for v in [0u8, 2, 255] {
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() {
                *first = v;
            }
            assert_eq!(RoomConfig::decode(&b), None, "version {v}");
        }
        // Bytes out of range, at known offsets of a minimal record.
        let plain = RoomConfig::new(&B).encode();
        // version, 3 empty strings (12), 4 bools, password tag, max_users tag, whois, roles,
        // 2 bools, allow_pm, roles, history.
        let at = |i: usize, v: u8| {
            let mut b = plain.clone();
            if let Some(x) = b.get_mut(i) {
                *x = v;
            }
            RoomConfig::decode(&b)
        };
        assert!(RoomConfig::decode(&plain).is_some());
        for i in [13, 14, 15, 16, 21, 22] {
            assert_eq!(at(i, 2), None, "bool at {i}");
        }
        assert_eq!(at(19, 2), None, "whois");
        assert_eq!(at(20, 0b1000), None, "presence roles");
        assert_eq!(at(23, 4), None, "allow_pm");
        assert_eq!(at(24, 0x10), None, "member list roles");
        assert!(at(20, 0b111).is_some() && at(23, 3).is_some());
        // A password tag with an empty password.
        let mut empty_pw = plain.get(..17).unwrap_or_default().to_vec();
        empty_pw.extend_from_slice(&[1, 0, 0, 0, 0]);
        empty_pw.extend_from_slice(plain.get(18..).unwrap_or_default());
        assert_eq!(RoomConfig::decode(&empty_pw), None);
        // Invalid UTF-8 in a string.
        let mut bad_utf8 = vec![1u8, 0, 0, 0, 1, 0xff];
        bad_utf8.extend_from_slice(plain.get(5..).unwrap_or_default());
        assert_eq!(RoomConfig::decode(&bad_utf8), None);
        let mut good = vec![1u8, 0, 0, 0, 1, b'a'];
        good.extend_from_slice(plain.get(5..).unwrap_or_default());
        assert_eq!(RoomConfig::decode(&good).map(|c| c.name), Some("a".into()));
        // A length beyond the buffer, up to u32::MAX.
        let mut huge = vec![1u8, 0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(plain.get(5..).unwrap_or_default());
        assert_eq!(RoomConfig::decode(&huge), None);
    }

    #[test]
    fn decode_garbage_never_panics() {
        // A deterministic xorshift; no dependency needed.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Keep many of them past the version check.
            if next() % 2 == 0 {
                if let Some(first) = buf.first_mut() {
                    *first = 1;
                }
            }
            if let Some(c) = RoomConfig::decode(&buf) {
                assert_eq!(c.encode(), buf, "whatever decodes re-encodes identically");
            }
        }
        // Every single-byte change of a valid record: decodes to something that re-encodes
        // to the same bytes, or to nothing.
        let bytes = custom().encode();
        for i in 0..bytes.len() {
            for v in [0u8, 1, 2, 3, 7, 8, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(i) {
                    *x = v;
                }
                if let Some(c) = RoomConfig::decode(&b) {
                    assert_eq!(c.encode(), b, "byte {i} = {v}");
                }
            }
        }
    }
}
