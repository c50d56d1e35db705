//! XEP-0060 node configuration: the `pubsub#node_config` form (§8.2, §8.3, fields as
//! registered in §17.4.4) and `pubsub#publish-options` preconditions (§7.1.5), with the PEP
//! defaults of XEP-0163 §5.
//!
//! Section numbers are those of the XEP-0060 source kept with the project (1.30.0), where the
//! field registry is §17.4.4 (§16.4.3 in versions before "Data Versioning" was added).
//!
//! Decisions (each also noted where it is made):
//! - Only the fields of [`NodeConfig`] are offered. In a configuration form other fields are
//!   ignored (XEP-0004 §3.1: the processor MUST ignore fields it does not understand); in
//!   publish-options they are refused ([`FormError::Unsupported`]), since §7.1.5 says the
//!   publication MUST be rejected on unknown fields.
//! - The `authorize` access model is not implemented: refused as §8.1.2 refuses an
//!   unsupported access model, `not-acceptable` with `<unsupported-access-model/>`.
//! - `pubsub#max_items` `max` means [`Bounds::max_items`]; a number above it is refused, not
//!   clamped (the service may refuse, and a client asking for 1000 items should learn it
//!   gets fewer). `0` is not a valid value: the XEP's schema makes it a positive integer.
//! - The default `max_items` is 1: XEP-0163 leaves it to "smart defaults" (§2.5), and most
//!   PEP payloads (tune, mood, avatar metadata, nick...) are a single current value, the
//!   singleton node of XEP-0060 §13.21. Clients wanting more (XEP-0402 bookmarks, XEP-0223
//!   private storage) ask for it with publish-options.
//! - `persist_items` false is accepted and recorded; what it changes is the caller's to
//!   decide.
//! - A missing FORM_TYPE is accepted (the form's context, `<configure/>` or
//!   `<publish-options/>`, already says what it is); a different one is refused.
//! - A malformed value is `not-acceptable` (XEP-0004 §4: data found invalid, and XEP-0060
//!   §8.2.5.2: a configuration change that cannot be processed); only a request that is not
//!   a submitted form of the right FORM_TYPE at all is `bad-request`.

use crate::xml::Element;
use crate::xmpp::dataform::{self, Field, Form, FormType};
use crate::xmpp::error::{StanzaCondition, StanzaError};

/// `pubsub#node_config` FORM_TYPE (§8.2, §17.4.4).
pub const NS_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// `pubsub#publish-options` FORM_TYPE (§7.1.5).
pub const NS_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// Application-specific error conditions (§12, schema `pubsub#errors`).
const NS_PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

/// Who may subscribe and retrieve items (`pubsub#access_model`), in the registry's order;
/// `authorize` is not implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessModel {
    /// `open`: anyone.
    Open,
    /// `presence`: contacts with a presence subscription of `from` or `both` (the PEP
    /// default, XEP-0163 §5).
    Presence,
    /// `roster`: contacts in [`NodeConfig::roster_groups_allowed`].
    Roster,
    /// `whitelist`: only those on the whitelist (the owner; XEP-0223's private storage).
    Whitelist,
}

/// Who may publish (`pubsub#publish_model`), in the registry's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishModel {
    /// `publishers`: owners and publishers.
    Publishers,
    /// `subscribers`: subscribers too.
    Subscribers,
    /// `open`: anyone.
    Open,
}

/// When to send the last published item (`pubsub#send_last_published_item`), in the
/// registry's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendLast {
    /// `never`.
    Never,
    /// `on_sub`: when a subscription is processed.
    OnSub,
    /// `on_sub_and_presence`: also whenever a subscriber comes online (the PEP default,
    /// XEP-0163 §5).
    OnSubAndPresence,
}

/// A node's configuration. [`NodeConfig::pep_default`] gives a new PEP node's (see the field
/// docs for the defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// `pubsub#title` (default empty).
    pub title: String,
    /// `pubsub#max_items`, at least 1 (default 1; `max` is [`Bounds::max_items`]).
    pub max_items: u32,
    /// `pubsub#access_model` (default presence, XEP-0163 §5).
    pub access_model: AccessModel,
    /// `pubsub#roster_groups_allowed`: the groups of [`AccessModel::Roster`], unique and
    /// non-empty, in the order submitted (default none).
    pub roster_groups_allowed: Vec<String>,
    /// `pubsub#publish_model` (default publishers).
    pub publish_model: PublishModel,
    /// `pubsub#persist_items` (default true).
    pub persist_items: bool,
    /// `pubsub#send_last_published_item` (default on_sub_and_presence, XEP-0163 §5).
    pub send_last_published_item: SendLast,
    /// `pubsub#notify_retract` (default true).
    pub notify_retract: bool,
    /// `pubsub#notify_delete` (default true).
    pub notify_delete: bool,
    /// `pubsub#deliver_payloads` (default true).
    pub deliver_payloads: bool,
    /// `pubsub#deliver_notifications` (default true, XEP-0163 §5).
    pub deliver_notifications: bool,
}

/// What the service allows, checked when a form is submitted.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Largest `max_items`, and what `max` means; at least 1.
    pub max_items: u32,
    /// Largest title, and largest roster group name, in bytes.
    pub max_title: usize,
    /// Most roster groups in `roster_groups_allowed`.
    pub max_groups: usize,
}

/// A submitted form was refused; [`FormError::stanza_error`] gives the wire error.
#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    /// Not a `jabber:x:data` form of type submit (or not readable as one), or a FORM_TYPE
    /// other than the expected one: `bad-request`.
    NotAForm,
    /// A known field whose value does not parse (not a boolean, not an option of the list,
    /// not a positive number or `max`, several values in a single-valued field):
    /// `not-acceptable`.
    BadValue {
        /// The field.
        var: String,
        /// What is wrong, for the error text.
        why: String,
    },
    /// A value we do not implement (`access_model` `authorize`: `not-acceptable` with
    /// `<unsupported-access-model/>`, §8.1.2), or a field we do not know in publish-options
    /// (`feature-not-implemented`, §7.1.5).
    Unsupported {
        /// The field.
        var: String,
    },
    /// Above what the service allows (`max_items`, title length, roster group count or
    /// length): `not-acceptable` (§8.2.5.2).
    TooLarge {
        /// The field.
        var: String,
    },
}

/// A publish-options precondition was not met, or the form was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PreconditionError {
    /// The form was refused, as a configuration form would be.
    Form(FormError),
    /// The first field (in the form's order) whose value differs from the node's:
    /// `conflict` with `<precondition-not-met/>` (§7.1.5).
    Differs(String),
}

// The pubsub#node_config field vars (§17.4.4).
const TITLE: &str = "pubsub#title";
const MAX_ITEMS: &str = "pubsub#max_items";
const ACCESS_MODEL: &str = "pubsub#access_model";
const ROSTER_GROUPS_ALLOWED: &str = "pubsub#roster_groups_allowed";
const PUBLISH_MODEL: &str = "pubsub#publish_model";
const PERSIST_ITEMS: &str = "pubsub#persist_items";
const SEND_LAST_PUBLISHED_ITEM: &str = "pubsub#send_last_published_item";
const NOTIFY_RETRACT: &str = "pubsub#notify_retract";
const NOTIFY_DELETE: &str = "pubsub#notify_delete";
const DELIVER_PAYLOADS: &str = "pubsub#deliver_payloads";
const DELIVER_NOTIFICATIONS: &str = "pubsub#deliver_notifications";

/// The `max_items` value for "the server's maximum" (§17.7, `config-node-max`).
const MAX: &str = "max";

impl FormError {
    /// The stanza error to answer with (see the variants).
    pub fn stanza_error(&self) -> StanzaError {
        match self {
            FormError::NotAForm => StanzaError::with_text(
                StanzaCondition::BadRequest,
                "expected a submitted pubsub#node_config or pubsub#publish-options data form",
            ),
            FormError::BadValue { var, why } => {
                StanzaError::with_text(StanzaCondition::NotAcceptable, format!("{var}: {why}"))
            }
            // §8.1.2: an unsupported access model MUST be not-acceptable with this condition.
            FormError::Unsupported { var } if var == ACCESS_MODEL => StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                format!("{var}: access model not supported"),
            )
            .with_app("unsupported-access-model", NS_PUBSUB_ERRORS),
            // §7.1.5 names no error for an unknown field. `<unsupported feature=.../>` would
            // need an attribute, which StanzaError's application condition cannot carry.
            FormError::Unsupported { var } => StanzaError::with_text(
                StanzaCondition::FeatureNotImplemented,
                format!("{var}: option not supported"),
            ),
            FormError::TooLarge { var } => StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                format!("{var}: above the server's limit"),
            ),
        }
    }
}

impl PreconditionError {
    /// The stanza error to answer a publish with: a refused form as
    /// [`FormError::stanza_error`], an unmet precondition as `conflict` with
    /// `<precondition-not-met/>` (§7.1.5).
    pub fn stanza_error(&self) -> StanzaError {
        match self {
            PreconditionError::Form(e) => e.stanza_error(),
            PreconditionError::Differs(var) => StanzaError::with_text(
                StanzaCondition::Conflict,
                format!("{var} differs from the node's configuration"),
            )
            .with_app("precondition-not-met", NS_PUBSUB_ERRORS),
        }
    }
}

impl AccessModel {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }
}

impl PublishModel {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishModel::Publishers => "publishers",
            PublishModel::Subscribers => "subscribers",
            PublishModel::Open => "open",
        }
    }
}

impl SendLast {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }
}

/// `access_model` options offered, (label, value), labels from the registry (§17.4.4).
const ACCESS_OPTIONS: [(&str, &str); 4] = [
    ("Anyone may subscribe and retrieve items", "open"),
    (
        "Anyone with a presence subscription of both or from may subscribe and retrieve items",
        "presence",
    ),
    (
        "Anyone in the specified roster group(s) may subscribe and retrieve items",
        "roster",
    ),
    (
        "Only those on a whitelist may subscribe and retrieve items",
        "whitelist",
    ),
];

/// `publish_model` options, (label, value).
const PUBLISH_OPTIONS: [(&str, &str); 3] = [
    ("Only publishers may publish", "publishers"),
    ("Subscribers may publish", "subscribers"),
    ("Anyone may publish", "open"),
];

/// `send_last_published_item` options, (label, value).
const SEND_LAST_OPTIONS: [(&str, &str); 3] = [
    ("Never", "never"),
    ("When a new subscription is processed", "on_sub"),
    (
        "When a new subscription is processed and whenever a subscriber comes online",
        "on_sub_and_presence",
    ),
];

fn parse_access_model(s: &str) -> Option<AccessModel> {
    match s {
        "open" => Some(AccessModel::Open),
        "presence" => Some(AccessModel::Presence),
        "roster" => Some(AccessModel::Roster),
        "whitelist" => Some(AccessModel::Whitelist),
        _ => None,
    }
}

fn parse_publish_model(s: &str) -> Option<PublishModel> {
    match s {
        "publishers" => Some(PublishModel::Publishers),
        "subscribers" => Some(PublishModel::Subscribers),
        "open" => Some(PublishModel::Open),
        _ => None,
    }
}

fn parse_send_last(s: &str) -> Option<SendLast> {
    match s {
        "never" => Some(SendLast::Never),
        "on_sub" => Some(SendLast::OnSub),
        "on_sub_and_presence" => Some(SendLast::OnSubAndPresence),
        _ => None,
    }
}

/// Which form is read: the FORM_TYPE expected, and whether unknown fields are refused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `pubsub#node_config` (§8.2.4): unknown fields ignored.
    NodeConfig,
    /// `pubsub#publish-options` (§7.1.5): unknown fields refused.
    PublishOptions,
}

/// A submitted `max_items`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaxItems {
    /// `max`: the service's maximum.
    Max,
    /// A number within bounds.
    Count(u32),
}

/// The known fields of a submitted form, each `None` when not submitted, and the vars in
/// document order (for "the first that differs").
#[derive(Default)]
struct Submitted {
    vars: Vec<&'static str>,
    title: Option<String>,
    max_items: Option<MaxItems>,
    access_model: Option<AccessModel>,
    roster_groups_allowed: Option<Vec<String>>,
    publish_model: Option<PublishModel>,
    persist_items: Option<bool>,
    send_last_published_item: Option<SendLast>,
    notify_retract: Option<bool>,
    notify_delete: Option<bool>,
    deliver_payloads: Option<bool>,
    deliver_notifications: Option<bool>,
}

fn bad_value(var: &str, why: impl Into<String>) -> FormError {
    FormError::BadValue {
        var: var.to_owned(),
        why: why.into(),
    }
}

fn too_large(var: &str) -> FormError {
    FormError::TooLarge {
        var: var.to_owned(),
    }
}

/// XML whitespace trimmed, as xs:boolean and list values are compared.
fn xml_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// The value of a single-valued field (None without `<value/>`); several values are a bad
/// value (XEP-0004 §3.2).
fn single<'v>(var: &str, values: &'v [String]) -> Result<Option<&'v str>, FormError> {
    match values {
        [] => Ok(None),
        [v] => Ok(Some(v.as_str())),
        _ => Err(bad_value(var, "more than one value")),
    }
}

/// A boolean field (`1`/`true`, `0`/`false`); without a value it is false, the type's
/// default (XEP-0004 §3.3), as [`Form::boolean`] reads it.
fn boolean(var: &str, values: &[String]) -> Result<bool, FormError> {
    match single(var, values)?.map(xml_trim) {
        None => Ok(false),
        Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(other) => Err(bad_value(var, format!("'{other}' is not a boolean"))),
    }
}

/// A single value compared as a token (list-single, `max_items`), whitespace trimmed; no
/// value is a bad value.
fn list_value<'v>(var: &str, values: &'v [String]) -> Result<&'v str, FormError> {
    single(var, values)?
        .map(xml_trim)
        .ok_or_else(|| bad_value(var, "no value"))
}

/// A list-single field's value through `parse`; no value, or one not among the options, is
/// a bad value.
fn list_single<T>(
    var: &str,
    values: &[String],
    parse: fn(&str) -> Option<T>,
) -> Result<T, FormError> {
    let value = list_value(var, values)?;
    parse(value).ok_or_else(|| unknown_value(var, value))
}

fn unknown_value(var: &str, value: &str) -> FormError {
    bad_value(var, format!("unknown value '{value}'"))
}

fn parse_max_items(values: &[String], bounds: &Bounds) -> Result<MaxItems, FormError> {
    let value = list_value(MAX_ITEMS, values)?;
    if value == MAX {
        return Ok(MaxItems::Max);
    }
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_value(
            MAX_ITEMS,
            format!("'{value}' is neither a positive number nor 'max'"),
        ));
    }
    // Digits only, so a parse failure is an overflow: above every bound.
    let n: u64 = value.parse().unwrap_or(u64::MAX);
    if n == 0 {
        return Err(bad_value(MAX_ITEMS, "must be at least 1"));
    }
    match u32::try_from(n) {
        // Refused rather than clamped: the owner should learn the node keeps fewer items.
        Ok(n) if n <= bounds.max_items => Ok(MaxItems::Count(n)),
        _ => Err(too_large(MAX_ITEMS)),
    }
}

/// Roster group names: empty values skipped, duplicates dropped (the first kept), each at
/// most `max_title` bytes and at most `max_groups` of them.
fn parse_groups(values: &[String], bounds: &Bounds) -> Result<Vec<String>, FormError> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        if value.is_empty() {
            continue;
        }
        if value.len() > bounds.max_title {
            return Err(too_large(ROSTER_GROUPS_ALLOWED));
        }
        if !out.contains(value) {
            if out.len() >= bounds.max_groups {
                return Err(too_large(ROSTER_GROUPS_ALLOWED));
            }
            out.push(value.clone());
        }
    }
    Ok(out)
}

/// Reads a submitted form of `kind`: type submit, the FORM_TYPE absent or `kind`'s, every
/// known field's value checked.
fn read(x: &Element, kind: Kind, bounds: &Bounds) -> Result<Submitted, FormError> {
    let form = Form::parse(x).map_err(|_| FormError::NotAForm)?;
    if form.ty != FormType::Submit {
        return Err(FormError::NotAForm);
    }
    let expected = match kind {
        Kind::NodeConfig => NS_NODE_CONFIG,
        Kind::PublishOptions => NS_PUBLISH_OPTIONS,
    };
    if form.form_type.as_deref().is_some_and(|ft| ft != expected) {
        return Err(FormError::NotAForm);
    }
    let mut s = Submitted::default();
    // Form::parse has refused repeated vars, so each field is set at most once.
    for (var, values) in &form.fields {
        let var: &'static str = match var.as_str() {
            TITLE => {
                let title = single(TITLE, values)?.unwrap_or("");
                if title.len() > bounds.max_title {
                    return Err(too_large(TITLE));
                }
                s.title = Some(title.to_owned());
                TITLE
            }
            MAX_ITEMS => {
                s.max_items = Some(parse_max_items(values, bounds)?);
                MAX_ITEMS
            }
            ACCESS_MODEL => {
                let value = list_value(ACCESS_MODEL, values)?;
                // Registered but not implemented: told apart from a typo.
                if value == "authorize" {
                    return Err(FormError::Unsupported {
                        var: ACCESS_MODEL.to_owned(),
                    });
                }
                let model =
                    parse_access_model(value).ok_or_else(|| unknown_value(ACCESS_MODEL, value))?;
                s.access_model = Some(model);
                ACCESS_MODEL
            }
            ROSTER_GROUPS_ALLOWED => {
                s.roster_groups_allowed = Some(parse_groups(values, bounds)?);
                ROSTER_GROUPS_ALLOWED
            }
            PUBLISH_MODEL => {
                s.publish_model = Some(list_single(PUBLISH_MODEL, values, parse_publish_model)?);
                PUBLISH_MODEL
            }
            SEND_LAST_PUBLISHED_ITEM => {
                s.send_last_published_item = Some(list_single(
                    SEND_LAST_PUBLISHED_ITEM,
                    values,
                    parse_send_last,
                )?);
                SEND_LAST_PUBLISHED_ITEM
            }
            PERSIST_ITEMS => {
                s.persist_items = Some(boolean(PERSIST_ITEMS, values)?);
                PERSIST_ITEMS
            }
            NOTIFY_RETRACT => {
                s.notify_retract = Some(boolean(NOTIFY_RETRACT, values)?);
                NOTIFY_RETRACT
            }
            NOTIFY_DELETE => {
                s.notify_delete = Some(boolean(NOTIFY_DELETE, values)?);
                NOTIFY_DELETE
            }
            DELIVER_PAYLOADS => {
                s.deliver_payloads = Some(boolean(DELIVER_PAYLOADS, values)?);
                DELIVER_PAYLOADS
            }
            DELIVER_NOTIFICATIONS => {
                s.deliver_notifications = Some(boolean(DELIVER_NOTIFICATIONS, values)?);
                DELIVER_NOTIFICATIONS
            }
            // §7.1.5: a service "MUST reject the publication upon encountering unknown
            // fields".
            other if kind == Kind::PublishOptions => {
                return Err(FormError::Unsupported {
                    var: other.to_owned(),
                })
            }
            // XEP-0004 §3.1: fields the processor does not understand are ignored.
            _ => continue,
        };
        s.vars.push(var);
    }
    Ok(s)
}

impl NodeConfig {
    /// A new PEP node's configuration (XEP-0163 §5): presence access, last item sent on
    /// subscription and presence, notifications with payloads; `max_items` 1 (see the
    /// module doc); everything else as XEP-0060's defaults (publishers publish, items
    /// persist, retractions and deletion notified). The bounds are not consulted today (1 is
    /// within any); they are here so a default can follow the service's limits.
    pub fn pep_default(_bounds: &Bounds) -> NodeConfig {
        NodeConfig {
            title: String::new(),
            max_items: 1,
            access_model: AccessModel::Presence,
            roster_groups_allowed: Vec::new(),
            publish_model: PublishModel::Publishers,
            persist_items: true,
            send_last_published_item: SendLast::OnSubAndPresence,
            notify_retract: true,
            notify_delete: true,
            deliver_payloads: true,
            deliver_notifications: true,
        }
    }

    /// Applies a submitted `pubsub#node_config` form (`x`, the `<x xmlns='jabber:x:data'/>`
    /// element, type submit; the caller handles `cancel` first) on top of this
    /// configuration and returns the result. Fields not submitted keep their values
    /// (XEP-0004 §3.5); unknown fields, including registered ones this server does not
    /// implement (`pubsub#notify_config`, `pubsub#item_expire`...), are ignored (XEP-0004
    /// §3.1); known fields are validated (see [`FormError`]).
    pub fn apply_form(&self, x: &Element, bounds: &Bounds) -> Result<NodeConfig, FormError> {
        let s = read(x, Kind::NodeConfig, bounds)?;
        Ok(self.with(s, bounds))
    }

    /// A new node's configuration for a publish with publish-options (§7.1.5, auto-create):
    /// [`NodeConfig::pep_default`] with the options applied, read as [`NodeConfig::apply_form`]
    /// reads a configuration but with FORM_TYPE `pubsub#publish-options` and unknown fields
    /// refused ([`FormError::Unsupported`]).
    pub fn from_publish_options(x: &Element, bounds: &Bounds) -> Result<NodeConfig, FormError> {
        let s = read(x, Kind::PublishOptions, bounds)?;
        Ok(NodeConfig::pep_default(bounds).with(s, bounds))
    }

    /// Checks a publish's `pubsub#publish-options` form (§7.1.5) against this (existing)
    /// node's configuration: every submitted field must equal the node's value. The form is
    /// read as in [`NodeConfig::from_publish_options`] (a refused form is
    /// [`PreconditionError::Form`]); then the first field in the form's order whose value
    /// differs is [`PreconditionError::Differs`].
    ///
    /// Values are compared for meaning: booleans in any XEP-0004 spelling, list values with
    /// surrounding whitespace, roster groups as a set; `max_items` `max` is met when the node
    /// keeps at least [`Bounds::max_items`] (it was set to the service's maximum).
    pub fn check_preconditions(
        &self,
        x: &Element,
        bounds: &Bounds,
    ) -> Result<(), PreconditionError> {
        let s = read(x, Kind::PublishOptions, bounds).map_err(PreconditionError::Form)?;
        for &var in &s.vars {
            let met = match var {
                TITLE => s.title.as_deref() == Some(self.title.as_str()),
                MAX_ITEMS => match s.max_items {
                    Some(MaxItems::Max) => self.max_items >= bounds.max_items,
                    Some(MaxItems::Count(n)) => self.max_items == n,
                    None => true,
                },
                ACCESS_MODEL => s.access_model == Some(self.access_model),
                ROSTER_GROUPS_ALLOWED => s
                    .roster_groups_allowed
                    .as_deref()
                    .is_some_and(|groups| same_set(groups, &self.roster_groups_allowed)),
                PUBLISH_MODEL => s.publish_model == Some(self.publish_model),
                PERSIST_ITEMS => s.persist_items == Some(self.persist_items),
                SEND_LAST_PUBLISHED_ITEM => {
                    s.send_last_published_item == Some(self.send_last_published_item)
                }
                NOTIFY_RETRACT => s.notify_retract == Some(self.notify_retract),
                NOTIFY_DELETE => s.notify_delete == Some(self.notify_delete),
                DELIVER_PAYLOADS => s.deliver_payloads == Some(self.deliver_payloads),
                DELIVER_NOTIFICATIONS => {
                    s.deliver_notifications == Some(self.deliver_notifications)
                }
                _ => false,
            };
            if !met {
                return Err(PreconditionError::Differs(var.to_owned()));
            }
        }
        Ok(())
    }

    /// This configuration with the submitted fields replaced.
    fn with(&self, s: Submitted, bounds: &Bounds) -> NodeConfig {
        let mut c = self.clone();
        if let Some(title) = s.title {
            c.title = title;
        }
        if let Some(max_items) = s.max_items {
            c.max_items = match max_items {
                MaxItems::Max => bounds.max_items.max(1),
                MaxItems::Count(n) => n,
            };
        }
        if let Some(access_model) = s.access_model {
            c.access_model = access_model;
        }
        if let Some(groups) = s.roster_groups_allowed {
            c.roster_groups_allowed = groups;
        }
        if let Some(publish_model) = s.publish_model {
            c.publish_model = publish_model;
        }
        if let Some(send_last) = s.send_last_published_item {
            c.send_last_published_item = send_last;
        }
        for (value, slot) in [
            (s.persist_items, &mut c.persist_items),
            (s.notify_retract, &mut c.notify_retract),
            (s.notify_delete, &mut c.notify_delete),
            (s.deliver_payloads, &mut c.deliver_payloads),
            (s.deliver_notifications, &mut c.deliver_notifications),
        ] {
            if let Some(value) = value {
                *slot = value;
            }
        }
        c
    }

    /// The configuration form (`<x xmlns='jabber:x:data' type='form'>`, §8.2.2; also the
    /// default configuration of §8.3.3 when called on [`NodeConfig::pep_default`]): FORM_TYPE
    /// hidden, then every field with its current value, in the order of §8.2.2's example.
    ///
    /// `max_items` shows the value in force, `min(max_items, bounds.max_items)`, should the
    /// bound have been lowered since the node was configured. `access_model` offers the four
    /// implemented models; `roster_groups_allowed` offers the groups currently allowed (the
    /// account's other roster groups are not known here).
    pub fn form(&self, bounds: &Bounds) -> Element {
        let max_items = self.max_items.min(bounds.max_items).to_string();
        let groups: Vec<&str> = self
            .roster_groups_allowed
            .iter()
            .map(String::as_str)
            .collect();
        let group_options: Vec<(&str, &str)> = groups.iter().map(|g| ("", *g)).collect();
        let fields = [
            Field::FormType(NS_NODE_CONFIG),
            Field::Text {
                var: TITLE,
                label: "A friendly name for the node",
                value: &self.title,
            },
            Field::Boolean {
                var: DELIVER_NOTIFICATIONS,
                label: "Whether to deliver event notifications",
                value: self.deliver_notifications,
            },
            Field::Boolean {
                var: DELIVER_PAYLOADS,
                label: "Whether to deliver payloads with event notifications",
                value: self.deliver_payloads,
            },
            Field::Boolean {
                var: NOTIFY_DELETE,
                label: "Notify subscribers when the node is deleted",
                value: self.notify_delete,
            },
            Field::Boolean {
                var: NOTIFY_RETRACT,
                label: "Notify subscribers when items are removed from the node",
                value: self.notify_retract,
            },
            Field::Boolean {
                var: PERSIST_ITEMS,
                label: "Persist items to storage",
                value: self.persist_items,
            },
            Field::Text {
                var: MAX_ITEMS,
                label: "Max # of items to persist. `max` for no specific limit other than a \
                        server imposed maximum.",
                value: &max_items,
            },
            Field::ListSingle {
                var: ACCESS_MODEL,
                label: "Who may subscribe and retrieve items",
                value: self.access_model.as_str(),
                options: &ACCESS_OPTIONS,
            },
            Field::ListMulti {
                var: ROSTER_GROUPS_ALLOWED,
                label: "Roster groups allowed to subscribe",
                values: &groups,
                options: &group_options,
            },
            Field::ListSingle {
                var: PUBLISH_MODEL,
                label: "Specify the publisher model",
                value: self.publish_model.as_str(),
                options: &PUBLISH_OPTIONS,
            },
            Field::ListSingle {
                var: SEND_LAST_PUBLISHED_ITEM,
                label: "When to send the last published item",
                value: self.send_last_published_item.as_str(),
                options: &SEND_LAST_OPTIONS,
            },
        ];
        dataform::write(FormType::Form, None, &fields)
    }

    /// Encodes for storage (a versioned byte record; storage keeps it opaquely).
    ///
    /// Format 1: the version byte `1`; a flags byte (bit 0 `persist_items`, 1
    /// `notify_retract`, 2 `notify_delete`, 3 `deliver_payloads`, 4 `deliver_notifications`);
    /// one byte each for the access model (0 open, 1 presence, 2 roster, 3 whitelist), the
    /// publish model (0 publishers, 1 subscribers, 2 open) and send-last (0 never, 1 on_sub,
    /// 2 on_sub_and_presence); `max_items` as a big-endian u32; the title; the number of
    /// roster groups as a big-endian u32, then each group. Strings are a big-endian u32 byte
    /// length and UTF-8.
    pub fn encode(&self) -> Vec<u8> {
        let groups: usize = self.roster_groups_allowed.iter().map(|g| 4 + g.len()).sum();
        let mut out = Vec::with_capacity(17 + self.title.len() + groups);
        out.push(FORMAT_VERSION);
        let flags = [
            self.persist_items,
            self.notify_retract,
            self.notify_delete,
            self.deliver_payloads,
            self.deliver_notifications,
        ]
        .iter()
        .enumerate()
        .fold(0u8, |acc, (bit, &on)| acc | (u8::from(on) << bit));
        out.push(flags);
        out.push(match self.access_model {
            AccessModel::Open => 0,
            AccessModel::Presence => 1,
            AccessModel::Roster => 2,
            AccessModel::Whitelist => 3,
        });
        out.push(match self.publish_model {
            PublishModel::Publishers => 0,
            PublishModel::Subscribers => 1,
            PublishModel::Open => 2,
        });
        out.push(match self.send_last_published_item {
            SendLast::Never => 0,
            SendLast::OnSub => 1,
            SendLast::OnSubAndPresence => 2,
        });
        out.extend_from_slice(&self.max_items.to_be_bytes());
        put_str(&mut out, &self.title);
        let count = u32::try_from(self.roster_groups_allowed.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        let written = usize::try_from(count).unwrap_or(usize::MAX);
        for group in self.roster_groups_allowed.iter().take(written) {
            put_str(&mut out, group);
        }
        out
    }

    /// Decodes [`NodeConfig::encode`]'s output; `None` for a corrupt or unknown record: an
    /// unknown version, a truncated field, invalid UTF-8, a byte out of its range (an unknown
    /// flag bit or enum value), `max_items` 0, an empty roster group, or trailing bytes.
    pub fn decode(buf: &[u8]) -> Option<NodeConfig> {
        let mut r = Reader(buf);
        if r.u8()? != FORMAT_VERSION {
            return None;
        }
        let flags = r.u8()?;
        if flags & !FLAGS_ALL != 0 {
            return None;
        }
        let flag = |bit: u8| flags & (1 << bit) != 0;
        let access_model = match r.u8()? {
            0 => AccessModel::Open,
            1 => AccessModel::Presence,
            2 => AccessModel::Roster,
            3 => AccessModel::Whitelist,
            _ => return None,
        };
        let publish_model = match r.u8()? {
            0 => PublishModel::Publishers,
            1 => PublishModel::Subscribers,
            2 => PublishModel::Open,
            _ => return None,
        };
        let send_last_published_item = match r.u8()? {
            0 => SendLast::Never,
            1 => SendLast::OnSub,
            2 => SendLast::OnSubAndPresence,
            _ => return None,
        };
        let max_items = r.u32()?;
        if max_items == 0 {
            return None;
        }
        let title = r.string()?;
        let count = usize::try_from(r.u32()?).ok()?;
        // Each group takes at least its 4-byte length: no more room than the bytes left.
        let mut roster_groups_allowed = Vec::with_capacity(count.min(r.0.len() / 4));
        for _ in 0..count {
            let group = r.string()?;
            if group.is_empty() {
                return None;
            }
            roster_groups_allowed.push(group);
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(NodeConfig {
            title,
            max_items,
            access_model,
            roster_groups_allowed,
            publish_model,
            persist_items: flag(0),
            send_last_published_item,
            notify_retract: flag(1),
            notify_delete: flag(2),
            deliver_payloads: flag(3),
            deliver_notifications: flag(4),
        })
    }
}

/// Whether two group lists hold the same groups, order and repetition aside.
fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|g| b.contains(g)) && b.iter().all(|g| a.contains(g))
}

/// The storage format written by [`NodeConfig::encode`].
const FORMAT_VERSION: u8 = 1;

/// The flag bits in use.
const FLAGS_ALL: u8 = 0b1_1111;

/// Appends a u32-length-prefixed UTF-8 string.
fn put_str(out: &mut Vec<u8>, s: &str) {
    // Texts are bounded far below 4 GiB; were one longer, only the bytes its length covers
    // are written, so the record's framing stays intact.
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

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_element, Limits, StreamNs};
    use crate::xmpp::dataform::NS;
    use crate::xmpp::error::ErrorType;

    const B: Bounds = Bounds {
        max_items: 256,
        max_title: 32,
        max_groups: 3,
    };

    /// A submit form with this FORM_TYPE and fields, built by hand (not with the code under
    /// test).
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

    fn config_form(fields: &[(&str, &[&str])]) -> Element {
        submit_typed("submit", Some(NS_NODE_CONFIG), fields)
    }

    fn options_form(fields: &[(&str, &[&str])]) -> Element {
        submit_typed("submit", Some(NS_PUBLISH_OPTIONS), fields)
    }

    fn apply(c: &NodeConfig, fields: &[(&str, &[&str])]) -> Result<NodeConfig, FormError> {
        c.apply_form(&config_form(fields), &B)
    }

    fn applied(c: &NodeConfig, fields: &[(&str, &[&str])]) -> NodeConfig {
        apply(c, fields).expect("accepted")
    }

    fn check(c: &NodeConfig, fields: &[(&str, &[&str])]) -> Result<(), PreconditionError> {
        c.check_preconditions(&options_form(fields), &B)
    }

    fn xml(s: &str) -> Element {
        parse_element(
            s.as_bytes(),
            &StreamNs::new("jabber:client"),
            &Limits::default(),
        )
        .expect("well-formed")
    }

    fn is_bad_value(r: Result<NodeConfig, FormError>, var: &str) -> bool {
        matches!(r, Err(FormError::BadValue { var: v, .. }) if v == var)
    }

    fn is_too_large(r: Result<NodeConfig, FormError>, var: &str) -> bool {
        r == Err(FormError::TooLarge { var: var.into() })
    }

    fn default() -> NodeConfig {
        NodeConfig::pep_default(&B)
    }

    /// A configuration with every field away from its default.
    fn custom() -> NodeConfig {
        NodeConfig {
            title: "Princely Musings ☃ <&>".into(),
            max_items: 10,
            access_model: AccessModel::Roster,
            roster_groups_allowed: vec!["friends".into(), "servants".into(), "court iers".into()],
            publish_model: PublishModel::Subscribers,
            persist_items: false,
            send_last_published_item: SendLast::Never,
            notify_retract: false,
            notify_delete: false,
            deliver_payloads: false,
            deliver_notifications: false,
        }
    }

    /// `form()` turned into what a client submits: type submit, values kept, options and
    /// labels ignored by the reader.
    fn as_submitted(mut x: Element) -> Element {
        x.set_attr("type", "submit");
        x
    }

    // --- Defaults ---

    #[test]
    fn pep_defaults_xep0163_5() {
        let c = default();
        assert_eq!(c.access_model, AccessModel::Presence, "presence by default");
        assert!(c.deliver_notifications);
        assert_eq!(c.send_last_published_item, SendLast::OnSubAndPresence);
        // XEP-0060's own defaults, and a singleton node (§13.21).
        assert_eq!(c.max_items, 1);
        assert_eq!(c.title, "");
        assert!(c.roster_groups_allowed.is_empty());
        assert_eq!(c.publish_model, PublishModel::Publishers);
        assert!(c.persist_items && c.notify_retract && c.notify_delete && c.deliver_payloads);
        // Whatever the bounds.
        let tight = Bounds {
            max_items: 1,
            max_title: 0,
            max_groups: 0,
        };
        assert_eq!(NodeConfig::pep_default(&tight), c);
    }

    // --- §8.2.4 form submission: each field ---

    #[test]
    fn xep0060_8_2_4_submission_example() {
        // §8.2.4's example, less the fields not implemented (ignored), plus ours.
        let x = xml("<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'>\
             <value>http://jabber.org/protocol/pubsub#node_config</value></field>\
             <field var='pubsub#title'><value>Princely Musings (Atom)</value></field>\
             <field var='pubsub#deliver_notifications'><value>1</value></field>\
             <field var='pubsub#deliver_payloads'><value>1</value></field>\
             <field var='pubsub#persist_items'><value>1</value></field>\
             <field var='pubsub#max_items'><value>10</value></field>\
             <field var='pubsub#item_expire'><value>604800</value></field>\
             <field var='pubsub#access_model'><value>roster</value></field>\
             <field var='pubsub#roster_groups_allowed'><value>friends</value>\
             <value>servants</value><value>courtiers</value></field>\
             <field var='pubsub#publish_model'><value>publishers</value></field>\
             <field var='pubsub#purge_offline'><value>0</value></field>\
             <field var='pubsub#send_last_published_item'><value>never</value></field>\
             <field var='pubsub#presence_based_delivery'><value>false</value></field>\
             <field var='pubsub#notification_type'><value>headline</value></field>\
             <field var='pubsub#notify_config'><value>0</value></field>\
             <field var='pubsub#notify_delete'><value>0</value></field>\
             <field var='pubsub#notify_retract'><value>0</value></field>\
             <field var='pubsub#notify_sub'><value>0</value></field>\
             <field var='pubsub#max_payload_size'><value>1028</value></field>\
             <field var='pubsub#type'><value>urn:example:e2ee:bundle</value></field>\
             <field var='pubsub#body_xslt'>\
             <value>http://jabxslt.jabberstudio.org/atom_body.xslt</value></field>\
             </x>");
        let c = default().apply_form(&x, &B).expect("accepted");
        assert_eq!(
            c,
            NodeConfig {
                title: "Princely Musings (Atom)".into(),
                max_items: 10,
                access_model: AccessModel::Roster,
                roster_groups_allowed: vec![
                    "friends".into(),
                    "servants".into(),
                    "courtiers".into()
                ],
                publish_model: PublishModel::Publishers,
                persist_items: true,
                send_last_published_item: SendLast::Never,
                notify_retract: false,
                notify_delete: false,
                deliver_payloads: true,
                deliver_notifications: true,
            }
        );
    }

    #[test]
    fn xep0004_3_5_incomplete_submission_keeps_values() {
        assert_eq!(applied(&custom(), &[]), custom());
        assert_eq!(applied(&default(), &[]), default());
        let c = applied(&custom(), &[(PUBLISH_MODEL, &["open"])]);
        assert_eq!(
            c,
            NodeConfig {
                publish_model: PublishModel::Open,
                ..custom()
            }
        );
    }

    #[test]
    fn xep0004_3_1_unknown_fields_ignored_in_node_config() {
        let c = applied(
            &custom(),
            &[
                ("pubsub#notify_config", &["maybe"]),
                ("pubsub#item_expire", &["max"]),
                ("urn:x:unknown", &["a", "b"]),
                ("", &[]),
            ],
        );
        assert_eq!(c, custom());
        // A field without var is skipped too.
        let mut x = config_form(&[(TITLE, &["t"])]);
        x.push_child(Element::new("field", NS).with_child(Element::new("value", NS)));
        assert_eq!(
            default().apply_form(&x, &B).map(|c| c.title),
            Ok("t".into())
        );
    }

    #[test]
    fn field_title_17_4_4() {
        let c = default();
        assert_eq!(applied(&c, &[(TITLE, &["Musings"])]).title, "Musings");
        // Not trimmed: a title is text.
        assert_eq!(applied(&c, &[(TITLE, &[" a b "])]).title, " a b ");
        // Empty, or without a value: cleared (XEP-0004 §3.6).
        assert_eq!(applied(&custom(), &[(TITLE, &[""])]).title, "");
        assert_eq!(applied(&custom(), &[(TITLE, &[])]).title, "");
        // Exactly at the bound in bytes; one byte over is too large.
        let at = "é".repeat(16);
        assert_eq!(at.len(), 32);
        assert_eq!(applied(&c, &[(TITLE, &[&at])]).title, at);
        assert!(is_too_large(
            apply(&c, &[(TITLE, &[&format!("{at}x")])]),
            TITLE
        ));
        assert!(is_bad_value(apply(&c, &[(TITLE, &["a", "b"])]), TITLE));
    }

    #[test]
    fn field_max_items_17_4_4() {
        let c = default();
        for (value, want) in [
            ("1", 1),
            ("10", 10),
            (" 42\n", 42),
            ("007", 7),
            ("256", 256),
            ("max", 256),
            ("\tmax ", 256),
        ] {
            assert_eq!(
                applied(&c, &[(MAX_ITEMS, &[value])]).max_items,
                want,
                "{value}"
            );
        }
        // Above the bound: refused, not clamped.
        for value in [
            "257",
            "4294967295",
            "4294967296",
            "99999999999999999999999999",
        ] {
            assert!(
                is_too_large(apply(&c, &[(MAX_ITEMS, &[value])]), MAX_ITEMS),
                "{value}"
            );
        }
        // Zero, signs, decimals, words, empty, several values.
        for value in ["0", "000", "-1", "+1", "1.5", "1e3", "MAX", "none", "", " "] {
            assert!(
                is_bad_value(apply(&c, &[(MAX_ITEMS, &[value])]), MAX_ITEMS),
                "{value:?}"
            );
        }
        assert!(is_bad_value(apply(&c, &[(MAX_ITEMS, &[])]), MAX_ITEMS));
        assert!(is_bad_value(
            apply(&c, &[(MAX_ITEMS, &["1", "2"])]),
            MAX_ITEMS
        ));
        // "max" follows the bound.
        let small = Bounds { max_items: 5, ..B };
        let x = config_form(&[(MAX_ITEMS, &["max"])]);
        assert_eq!(c.apply_form(&x, &small).map(|c| c.max_items), Ok(5));
    }

    #[test]
    fn field_access_model_17_4_4() {
        let c = custom();
        for (value, want) in [
            ("open", AccessModel::Open),
            ("presence", AccessModel::Presence),
            ("roster", AccessModel::Roster),
            ("whitelist", AccessModel::Whitelist),
            (" whitelist\n", AccessModel::Whitelist),
        ] {
            assert_eq!(applied(&c, &[(ACCESS_MODEL, &[value])]).access_model, want);
            assert_eq!(parse_access_model(want.as_str()), Some(want));
        }
        // Registered but not implemented.
        assert_eq!(
            apply(&c, &[(ACCESS_MODEL, &["authorize"])]),
            Err(FormError::Unsupported {
                var: ACCESS_MODEL.into()
            })
        );
        for value in ["", "Open", "public", "authorise"] {
            assert!(is_bad_value(
                apply(&c, &[(ACCESS_MODEL, &[value])]),
                ACCESS_MODEL
            ));
        }
        assert!(is_bad_value(
            apply(&c, &[(ACCESS_MODEL, &[])]),
            ACCESS_MODEL
        ));
        assert!(is_bad_value(
            apply(&c, &[(ACCESS_MODEL, &["open", "open"])]),
            ACCESS_MODEL
        ));
    }

    #[test]
    fn field_roster_groups_allowed_17_4_4() {
        let c = default();
        let groups = |fields: &[(&str, &[&str])]| applied(&c, fields).roster_groups_allowed;
        assert_eq!(
            groups(&[(ROSTER_GROUPS_ALLOWED, &["b", "a", " c "])]),
            ["b", "a", " c "],
            "order kept, names not trimmed"
        );
        // Duplicates dropped (the first kept), empty values skipped, and neither counts
        // against the bound of 3.
        assert_eq!(
            groups(&[(ROSTER_GROUPS_ALLOWED, &["a", "", "b", "a", "", "c", "b"])]),
            ["a", "b", "c"]
        );
        assert!(groups(&[(ROSTER_GROUPS_ALLOWED, &[])]).is_empty());
        assert!(applied(&custom(), &[(ROSTER_GROUPS_ALLOWED, &[""])])
            .roster_groups_allowed
            .is_empty());
        // Too many, too long.
        assert!(is_too_large(
            apply(&c, &[(ROSTER_GROUPS_ALLOWED, &["a", "b", "c", "d"])]),
            ROSTER_GROUPS_ALLOWED
        ));
        let long = "g".repeat(33);
        assert!(is_too_large(
            apply(&c, &[(ROSTER_GROUPS_ALLOWED, &["a", &long])]),
            ROSTER_GROUPS_ALLOWED
        ));
        assert_eq!(
            groups(&[(ROSTER_GROUPS_ALLOWED, &[&long[1..]])]),
            [&long[1..]]
        );
        // Groups are kept whatever the access model.
        let c = applied(
            &c,
            &[(ACCESS_MODEL, &["open"]), (ROSTER_GROUPS_ALLOWED, &["x"])],
        );
        assert_eq!(
            (c.access_model, c.roster_groups_allowed),
            (AccessModel::Open, vec!["x".into()])
        );
    }

    #[test]
    fn field_publish_model_17_4_4() {
        let c = default();
        for (value, want) in [
            ("publishers", PublishModel::Publishers),
            ("subscribers", PublishModel::Subscribers),
            ("open", PublishModel::Open),
        ] {
            assert_eq!(
                applied(&c, &[(PUBLISH_MODEL, &[value])]).publish_model,
                want
            );
            assert_eq!(parse_publish_model(want.as_str()), Some(want));
        }
        for value in ["", "publisher", "owners", "Open"] {
            assert!(is_bad_value(
                apply(&c, &[(PUBLISH_MODEL, &[value])]),
                PUBLISH_MODEL
            ));
        }
    }

    #[test]
    fn field_send_last_published_item_17_4_4() {
        let c = default();
        for (value, want) in [
            ("never", SendLast::Never),
            ("on_sub", SendLast::OnSub),
            ("on_sub_and_presence", SendLast::OnSubAndPresence),
        ] {
            assert_eq!(
                applied(&custom(), &[(SEND_LAST_PUBLISHED_ITEM, &[value])])
                    .send_last_published_item,
                want
            );
            assert_eq!(parse_send_last(want.as_str()), Some(want));
        }
        for value in ["", "on-sub", "always", "on_sub_and_presence "] {
            // Surrounding whitespace is fine; the rest is not.
            let r = apply(&c, &[(SEND_LAST_PUBLISHED_ITEM, &[value])]);
            if value.trim() == "on_sub_and_presence" {
                assert!(r.is_ok());
            } else {
                assert!(is_bad_value(r, SEND_LAST_PUBLISHED_ITEM), "{value}");
            }
        }
    }

    #[test]
    fn field_booleans_17_4_4_xep0004_3_3() {
        type Get = fn(&NodeConfig) -> bool;
        let fields: [(&str, Get); 5] = [
            (PERSIST_ITEMS, |c| c.persist_items),
            (NOTIFY_RETRACT, |c| c.notify_retract),
            (NOTIFY_DELETE, |c| c.notify_delete),
            (DELIVER_PAYLOADS, |c| c.deliver_payloads),
            (DELIVER_NOTIFICATIONS, |c| c.deliver_notifications),
        ];
        for (var, get) in fields {
            for (value, want) in [
                ("1", true),
                ("true", true),
                (" true\n", true),
                ("0", false),
                ("false", false),
                ("\tfalse", false),
            ] {
                for start in [default(), custom()] {
                    let c = applied(&start, &[(var, &[value])]);
                    assert_eq!(get(&c), want, "{var}={value}");
                    // Only that field changes: setting it back gives the start.
                    let was = if get(&start) { "1" } else { "0" };
                    assert_eq!(applied(&c, &[(var, &[was])]), start, "{var}={value}");
                }
            }
            // No value: false, the type's default.
            assert!(!get(&applied(&default(), &[(var, &[])])));
            for value in ["", "yes", "True", "2", "on"] {
                assert!(
                    is_bad_value(apply(&default(), &[(var, &[value])]), var),
                    "{value:?}"
                );
            }
            assert!(is_bad_value(apply(&default(), &[(var, &["1", "1"])]), var));
        }
        // persist_items false is accepted and recorded (the caller decides what it means).
        assert!(!applied(&default(), &[(PERSIST_ITEMS, &["0"])]).persist_items);
    }

    // --- The form itself ---

    #[test]
    fn not_a_form_or_wrong_form_type() {
        let c = default();
        for ty in ["form", "cancel", "result"] {
            let x = submit_typed(ty, Some(NS_NODE_CONFIG), &[(TITLE, &["t"])]);
            assert_eq!(c.apply_form(&x, &B), Err(FormError::NotAForm), "{ty}");
        }
        for ft in [
            NS_PUBLISH_OPTIONS,
            "",
            "urn:other",
            "http://jabber.org/protocol/pubsub",
        ] {
            let x = submit_typed("submit", Some(ft), &[]);
            assert_eq!(c.apply_form(&x, &B), Err(FormError::NotAForm), "{ft}");
        }
        for bad in [
            "<x xmlns='urn:other' type='submit'/>",
            "<y xmlns='jabber:x:data' type='submit'/>",
            "<x xmlns='jabber:x:data'/>",
            "<x xmlns='jabber:x:data' type='Submit'/>",
            // A var twice is not a form Form::parse reads.
            "<x xmlns='jabber:x:data' type='submit'><field var='pubsub#title'/>\
             <field var='pubsub#title'/></x>",
        ] {
            assert_eq!(
                c.apply_form(&xml(bad), &B),
                Err(FormError::NotAForm),
                "{bad}"
            );
        }
        // Without FORM_TYPE: accepted (the <configure/> context says what it is).
        let x = submit_typed("submit", None, &[(TITLE, &["t"])]);
        assert_eq!(c.apply_form(&x, &B).map(|c| c.title), Ok("t".into()));
    }

    #[test]
    fn the_first_error_in_document_order_wins() {
        let r = apply(
            &default(),
            &[(MAX_ITEMS, &["1000"]), (PERSIST_ITEMS, &["maybe"])],
        );
        assert!(is_too_large(r, MAX_ITEMS));
        let r = apply(
            &default(),
            &[(PERSIST_ITEMS, &["maybe"]), (MAX_ITEMS, &["1000"])],
        );
        assert!(is_bad_value(r, PERSIST_ITEMS));
    }

    #[test]
    fn stanza_errors_per_section() {
        let cond = |e: FormError| e.stanza_error();
        let e = cond(FormError::NotAForm);
        assert_eq!(
            (e.condition, e.error_type),
            (StanzaCondition::BadRequest, ErrorType::Modify)
        );
        assert_eq!(e.app, None);
        // XEP-0004 §4, XEP-0060 §8.2.5.2.
        let e = cond(FormError::BadValue {
            var: PERSIST_ITEMS.into(),
            why: "'maybe' is not a boolean".into(),
        });
        assert_eq!(e.condition, StanzaCondition::NotAcceptable);
        assert_eq!(
            e.text.as_deref(),
            Some("pubsub#persist_items: 'maybe' is not a boolean")
        );
        // §8.1.2.
        let e = cond(FormError::Unsupported {
            var: ACCESS_MODEL.into(),
        });
        assert_eq!(
            (e.condition, e.error_type),
            (StanzaCondition::NotAcceptable, ErrorType::Modify)
        );
        assert_eq!(e.app, Some(("unsupported-access-model", NS_PUBSUB_ERRORS)));
        let e = cond(FormError::Unsupported {
            var: "pubsub#notify_sub".into(),
        });
        assert_eq!(
            (e.condition, e.error_type),
            (StanzaCondition::FeatureNotImplemented, ErrorType::Cancel)
        );
        assert!(e.text.is_some_and(|t| t.contains("pubsub#notify_sub")));
        let e = cond(FormError::TooLarge {
            var: MAX_ITEMS.into(),
        });
        assert_eq!(e.condition, StanzaCondition::NotAcceptable);
        assert!(e.text.is_some_and(|t| t.contains(MAX_ITEMS)));
        // §7.1.5.
        let e = PreconditionError::Differs(ACCESS_MODEL.into()).stanza_error();
        assert_eq!(
            (e.condition, e.error_type),
            (StanzaCondition::Conflict, ErrorType::Cancel)
        );
        assert_eq!(e.app, Some(("precondition-not-met", NS_PUBSUB_ERRORS)));
        assert_eq!(
            PreconditionError::Form(FormError::NotAForm).stanza_error(),
            FormError::NotAForm.stanza_error()
        );
        // The wire form.
        let mut out = Vec::new();
        e.write_element(false, &mut out);
        let s = String::from_utf8(out).expect("utf-8");
        assert!(
            s.contains("<precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>"),
            "{s}"
        );
    }

    #[test]
    fn form_8_2_2_fields_types_and_options() {
        let x = custom().form(&B);
        assert_eq!(x.attr("type"), Some("form"));
        let fields: Vec<&Element> = x.elements().filter(|e| e.is("field", NS)).collect();
        let summary: Vec<(Option<&str>, Option<&str>)> = fields
            .iter()
            .map(|f| (f.attr("var"), f.attr("type")))
            .collect();
        assert_eq!(
            summary,
            [
                (Some("FORM_TYPE"), Some("hidden")),
                (Some(TITLE), Some("text-single")),
                (Some(DELIVER_NOTIFICATIONS), Some("boolean")),
                (Some(DELIVER_PAYLOADS), Some("boolean")),
                (Some(NOTIFY_DELETE), Some("boolean")),
                (Some(NOTIFY_RETRACT), Some("boolean")),
                (Some(PERSIST_ITEMS), Some("boolean")),
                (Some(MAX_ITEMS), Some("text-single")),
                (Some(ACCESS_MODEL), Some("list-single")),
                (Some(ROSTER_GROUPS_ALLOWED), Some("list-multi")),
                (Some(PUBLISH_MODEL), Some("list-single")),
                (Some(SEND_LAST_PUBLISHED_ITEM), Some("list-single")),
            ]
        );
        let options = |var: &str| -> Vec<String> {
            fields
                .iter()
                .find(|f| f.attr("var") == Some(var))
                .map(|f| {
                    f.elements()
                        .filter(|o| o.is("option", NS))
                        .filter_map(|o| o.child("value", NS).map(Element::text))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            options(ACCESS_MODEL),
            ["open", "presence", "roster", "whitelist"]
        );
        assert_eq!(
            options(PUBLISH_MODEL),
            ["publishers", "subscribers", "open"]
        );
        assert_eq!(
            options(SEND_LAST_PUBLISHED_ITEM),
            ["never", "on_sub", "on_sub_and_presence"]
        );
        assert_eq!(
            options(ROSTER_GROUPS_ALLOWED),
            ["friends", "servants", "court iers"]
        );
        // Every non-hidden field is labelled.
        assert!(fields.iter().skip(1).all(|f| f.attr("label").is_some()));
        let f = Form::parse(&x).expect("readable");
        assert_eq!(f.ty, FormType::Form);
        assert_eq!(f.form_type.as_deref(), Some(NS_NODE_CONFIG));
        assert_eq!(f.value(TITLE), Some("Princely Musings ☃ <&>"));
        assert_eq!(f.value(MAX_ITEMS), Some("10"));
        assert_eq!(f.value(ACCESS_MODEL), Some("roster"));
        assert_eq!(f.value(PUBLISH_MODEL), Some("subscribers"));
        assert_eq!(f.value(SEND_LAST_PUBLISHED_ITEM), Some("never"));
        assert_eq!(f.boolean(PERSIST_ITEMS), Ok(Some(false)));
        assert_eq!(f.boolean(DELIVER_NOTIFICATIONS), Ok(Some(false)));
        let d = Form::parse(&default().form(&B)).expect("readable");
        assert_eq!(d.value(TITLE), Some(""));
        assert_eq!(d.value(MAX_ITEMS), Some("1"));
        assert_eq!(d.value(ACCESS_MODEL), Some("presence"));
        assert_eq!(
            d.value(SEND_LAST_PUBLISHED_ITEM),
            Some("on_sub_and_presence")
        );
        assert_eq!(d.values(ROSTER_GROUPS_ALLOWED), Some(&[][..]));
        assert_eq!(d.boolean(DELIVER_NOTIFICATIONS), Ok(Some(true)));
    }

    #[test]
    fn form_round_trips_through_apply_form() {
        let configs = [
            default(),
            custom(),
            NodeConfig {
                max_items: B.max_items,
                access_model: AccessModel::Open,
                publish_model: PublishModel::Open,
                send_last_published_item: SendLast::OnSub,
                roster_groups_allowed: vec![],
                title: "x".repeat(32),
                ..default()
            },
            NodeConfig {
                access_model: AccessModel::Whitelist,
                ..custom()
            },
        ];
        for c in &configs {
            let submitted = as_submitted(c.form(&B));
            // From another configuration, so every field must come from the form.
            for start in [default(), custom()] {
                assert_eq!(start.apply_form(&submitted, &B).as_ref(), Ok(c));
            }
            // The same through the wire.
            let wire = xml(&submitted.to_string_in("jabber:client"));
            assert_eq!(default().apply_form(&wire, &B).as_ref(), Ok(c));
        }
        // A node whose max_items predates a lowered bound shows (and keeps, once submitted)
        // the bound.
        let big = NodeConfig {
            max_items: 1000,
            ..custom()
        };
        let f = Form::parse(&big.form(&B)).expect("readable");
        assert_eq!(f.value(MAX_ITEMS), Some("256"));
        let back = default().apply_form(&as_submitted(big.form(&B)), &B);
        assert_eq!(back.map(|c| c.max_items), Ok(256));
    }

    // --- §7.1.5 publish-options ---

    #[test]
    fn preconditions_7_1_5_equal() {
        let c = custom();
        assert_eq!(check(&c, &[]), Ok(()));
        assert_eq!(
            check(
                &c,
                &[
                    (TITLE, &["Princely Musings ☃ <&>"]),
                    (MAX_ITEMS, &["10"]),
                    (ACCESS_MODEL, &["roster"]),
                    (
                        ROSTER_GROUPS_ALLOWED,
                        &["court iers", "friends", "servants", "friends"]
                    ),
                    (PUBLISH_MODEL, &["subscribers"]),
                    (PERSIST_ITEMS, &["0"]),
                    (SEND_LAST_PUBLISHED_ITEM, &["never"]),
                    (NOTIFY_RETRACT, &["false"]),
                    (NOTIFY_DELETE, &[]),
                    (DELIVER_PAYLOADS, &[" 0 "]),
                    (DELIVER_NOTIFICATIONS, &["false"]),
                ]
            ),
            Ok(())
        );
        // The §7.1.5 example on a PEP default node.
        let x = xml("<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'>\
             <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#access_model'><value>presence</value></field></x>");
        assert_eq!(default().check_preconditions(&x, &B), Ok(()));
    }

    #[test]
    fn preconditions_7_1_5_boolean_normalized() {
        let c = default();
        for value in ["1", "true", " true "] {
            assert_eq!(check(&c, &[(PERSIST_ITEMS, &[value])]), Ok(()), "{value}");
            assert_eq!(
                check(&c, &[(DELIVER_NOTIFICATIONS, &[value])]),
                Ok(()),
                "{value}"
            );
        }
        for value in ["0", "false"] {
            assert_eq!(
                check(&c, &[(PERSIST_ITEMS, &[value])]),
                Err(PreconditionError::Differs(PERSIST_ITEMS.into()))
            );
        }
    }

    #[test]
    fn preconditions_7_1_5_max_items_max() {
        let at_max = NodeConfig {
            max_items: B.max_items,
            ..default()
        };
        assert_eq!(check(&at_max, &[(MAX_ITEMS, &["max"])]), Ok(()));
        assert_eq!(check(&at_max, &[(MAX_ITEMS, &["256"])]), Ok(()));
        // Kept from a larger bound: still "the maximum".
        let above = NodeConfig {
            max_items: 1000,
            ..default()
        };
        assert_eq!(check(&above, &[(MAX_ITEMS, &["max"])]), Ok(()));
        let d = Err(PreconditionError::Differs(MAX_ITEMS.into()));
        assert_eq!(check(&default(), &[(MAX_ITEMS, &["max"])]), d);
        assert_eq!(check(&default(), &[(MAX_ITEMS, &["2"])]), d);
        assert_eq!(check(&default(), &[(MAX_ITEMS, &["1"])]), Ok(()));
        // Values the node could never have are refused as forms.
        assert_eq!(
            check(&above, &[(MAX_ITEMS, &["1000"])]),
            Err(PreconditionError::Form(FormError::TooLarge {
                var: MAX_ITEMS.into()
            }))
        );
        assert!(matches!(
            check(&default(), &[(MAX_ITEMS, &["0"])]),
            Err(PreconditionError::Form(FormError::BadValue { .. }))
        ));
    }

    #[test]
    fn preconditions_7_1_5_differs() {
        let c = custom();
        let differs = |fields: &[(&str, &[&str])], var: &str| {
            assert_eq!(
                check(&c, fields),
                Err(PreconditionError::Differs(var.into())),
                "{fields:?}"
            );
        };
        differs(&[(TITLE, &["Princely Musings"])], TITLE);
        differs(&[(TITLE, &[])], TITLE);
        differs(&[(MAX_ITEMS, &["11"])], MAX_ITEMS);
        differs(&[(ACCESS_MODEL, &["whitelist"])], ACCESS_MODEL);
        differs(
            &[(ROSTER_GROUPS_ALLOWED, &["friends", "servants"])],
            ROSTER_GROUPS_ALLOWED,
        );
        differs(
            &[(ROSTER_GROUPS_ALLOWED, &["friends", "servants", "x"])],
            ROSTER_GROUPS_ALLOWED,
        );
        differs(&[(ROSTER_GROUPS_ALLOWED, &[])], ROSTER_GROUPS_ALLOWED);
        differs(&[(PUBLISH_MODEL, &["publishers"])], PUBLISH_MODEL);
        differs(&[(PERSIST_ITEMS, &["1"])], PERSIST_ITEMS);
        differs(
            &[(SEND_LAST_PUBLISHED_ITEM, &["on_sub"])],
            SEND_LAST_PUBLISHED_ITEM,
        );
        differs(&[(NOTIFY_RETRACT, &["true"])], NOTIFY_RETRACT);
        differs(&[(NOTIFY_DELETE, &["1"])], NOTIFY_DELETE);
        differs(&[(DELIVER_PAYLOADS, &["1"])], DELIVER_PAYLOADS);
        differs(&[(DELIVER_NOTIFICATIONS, &["1"])], DELIVER_NOTIFICATIONS);
        // The first that differs, in the form's order.
        differs(
            &[(ACCESS_MODEL, &["roster"]), (PERSIST_ITEMS, &["1"])],
            PERSIST_ITEMS,
        );
        differs(
            &[
                (NOTIFY_DELETE, &["1"]),
                (PERSIST_ITEMS, &["1"]),
                (TITLE, &["x"]),
            ],
            NOTIFY_DELETE,
        );
        differs(&[(TITLE, &["x"]), (NOTIFY_DELETE, &["1"])], TITLE);
    }

    #[test]
    fn preconditions_7_1_5_form_errors() {
        let c = default();
        let form_err = |x: &Element| match c.check_preconditions(x, &B) {
            Err(PreconditionError::Form(e)) => Some(e),
            _ => None,
        };
        // A node_config FORM_TYPE, or a form that is not submitted.
        assert_eq!(form_err(&config_form(&[])), Some(FormError::NotAForm));
        assert_eq!(
            form_err(&submit_typed("form", Some(NS_PUBLISH_OPTIONS), &[])),
            Some(FormError::NotAForm)
        );
        // Without FORM_TYPE: read as publish-options.
        let x = submit_typed("submit", None, &[(ACCESS_MODEL, &["presence"])]);
        assert_eq!(c.check_preconditions(&x, &B), Ok(()));
        // An unknown field: "MUST reject the publication", even before a differing one.
        assert_eq!(
            form_err(&options_form(&[
                (ACCESS_MODEL, &["open"]),
                ("pubsub#notify_sub", &["0"])
            ])),
            Some(FormError::Unsupported {
                var: "pubsub#notify_sub".into()
            })
        );
        assert_eq!(
            form_err(&options_form(&[(ACCESS_MODEL, &["authorize"])])),
            Some(FormError::Unsupported {
                var: ACCESS_MODEL.into()
            })
        );
        assert!(matches!(
            form_err(&options_form(&[(PERSIST_ITEMS, &["yes"])])),
            Some(FormError::BadValue { .. })
        ));
        assert_eq!(
            form_err(&options_form(&[(TITLE, &[&"t".repeat(33)])])),
            Some(FormError::TooLarge { var: TITLE.into() })
        );
    }

    #[test]
    fn from_publish_options_xep0223_and_7_1_5() {
        // XEP-0223 §3's example.
        let x = xml("<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'>\
             <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#persist_items'><value>true</value></field>\
             <field var='pubsub#access_model'><value>whitelist</value></field></x>");
        let c = NodeConfig::from_publish_options(&x, &B).expect("accepted");
        assert_eq!(
            c,
            NodeConfig {
                access_model: AccessModel::Whitelist,
                ..default()
            }
        );
        // The new node meets its own preconditions.
        assert_eq!(c.check_preconditions(&x, &B), Ok(()));
        // XEP-0402-style bookmarks: max items, never send the last one.
        let x = options_form(&[
            (PERSIST_ITEMS, &["1"]),
            (MAX_ITEMS, &["max"]),
            (SEND_LAST_PUBLISHED_ITEM, &["never"]),
            (ACCESS_MODEL, &["whitelist"]),
        ]);
        let c = NodeConfig::from_publish_options(&x, &B).expect("accepted");
        assert_eq!(
            (c.max_items, c.send_last_published_item, c.access_model),
            (256, SendLast::Never, AccessModel::Whitelist)
        );
        assert_eq!(c.check_preconditions(&x, &B), Ok(()));
        // Empty options: the default.
        assert_eq!(
            NodeConfig::from_publish_options(&options_form(&[]), &B),
            Ok(default())
        );
        // Refusals as in check_preconditions.
        for (x, want) in [
            (config_form(&[]), FormError::NotAForm),
            (
                options_form(&[("pubsub#item_expire", &["max"])]),
                FormError::Unsupported {
                    var: "pubsub#item_expire".into(),
                },
            ),
            (
                options_form(&[(ACCESS_MODEL, &["authorize"])]),
                FormError::Unsupported {
                    var: ACCESS_MODEL.into(),
                },
            ),
            (
                options_form(&[(MAX_ITEMS, &["257"])]),
                FormError::TooLarge {
                    var: MAX_ITEMS.into(),
                },
            ),
        ] {
            assert_eq!(NodeConfig::from_publish_options(&x, &B), Err(want));
        }
    }

    // --- Storage ---

    #[test]
    fn encode_decode_round_trips() {
        let configs = [
            default(),
            custom(),
            NodeConfig {
                max_items: u32::MAX,
                access_model: AccessModel::Open,
                publish_model: PublishModel::Open,
                send_last_published_item: SendLast::OnSub,
                persist_items: true,
                deliver_notifications: true,
                ..custom()
            },
            NodeConfig {
                access_model: AccessModel::Whitelist,
                notify_retract: true,
                deliver_payloads: true,
                roster_groups_allowed: vec!["ü".into()],
                ..default()
            },
        ];
        for c in &configs {
            let bytes = c.encode();
            assert_eq!(bytes.first(), Some(&1), "format version 1");
            assert_eq!(NodeConfig::decode(&bytes).as_ref(), Some(c));
        }
    }

    #[test]
    fn encoding_layout() {
        let c = NodeConfig {
            title: "t".into(),
            max_items: 0x0102_0304,
            access_model: AccessModel::Roster,
            roster_groups_allowed: vec!["ab".into(), "c".into()],
            publish_model: PublishModel::Subscribers,
            persist_items: true,
            send_last_published_item: SendLast::OnSubAndPresence,
            notify_retract: false,
            notify_delete: true,
            deliver_payloads: false,
            deliver_notifications: true,
        };
        let want: Vec<u8> = [
            &[1u8][..],
            &[0b1_0101, 2, 1, 2],
            &[1, 2, 3, 4],
            &[0, 0, 0, 1, b't'],
            &[0, 0, 0, 2],
            &[0, 0, 0, 2, b'a', b'b'],
            &[0, 0, 0, 1, b'c'],
        ]
        .concat();
        assert_eq!(c.encode(), want);
        assert_eq!(NodeConfig::decode(&want), Some(c));
        // The default is 17 bytes.
        assert_eq!(
            default().encode(),
            [1, 0b1_1111, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn decode_refuses_corruption() {
        let bytes = custom().encode();
        // Every truncation.
        for n in 0..bytes.len() {
            assert_eq!(
                NodeConfig::decode(bytes.get(..n).unwrap_or_default()),
                None,
                "{n}"
            );
        }
        // Trailing bytes.
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(NodeConfig::decode(&long), None);
        // Unknown versions.
        for v in [0u8, 2, 255] {
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() {
                *first = v;
            }
            assert_eq!(NodeConfig::decode(&b), None, "version {v}");
        }
        // Bytes out of range, at known offsets of the default record.
        let plain = default().encode();
        let at = |i: usize, v: u8| {
            let mut b = plain.clone();
            if let Some(x) = b.get_mut(i) {
                *x = v;
            }
            NodeConfig::decode(&b)
        };
        assert!(NodeConfig::decode(&plain).is_some());
        for bit in 5..8 {
            assert_eq!(at(1, 1 << bit), None, "flag bit {bit}");
        }
        assert_eq!(at(1, 0).map(|c| c.persist_items), Some(false));
        assert_eq!(at(2, 4), None, "access model");
        assert_eq!(
            at(2, 3).map(|c| c.access_model),
            Some(AccessModel::Whitelist)
        );
        assert_eq!(at(3, 3), None, "publish model");
        assert_eq!(at(4, 3), None, "send last");
        assert_eq!(at(8, 0), None, "max_items 0");
        // An empty roster group.
        let mut empty_group = plain.get(..13).unwrap_or_default().to_vec();
        empty_group.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(NodeConfig::decode(&empty_group), None);
        let mut one_group = plain.get(..13).unwrap_or_default().to_vec();
        one_group.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, b'g']);
        assert_eq!(
            NodeConfig::decode(&one_group).map(|c| c.roster_groups_allowed),
            Some(vec!["g".into()])
        );
        // Invalid UTF-8 in the title and in a group.
        let mut bad_title = plain.get(..9).unwrap_or_default().to_vec();
        bad_title.extend_from_slice(&[0, 0, 0, 1, 0xff, 0, 0, 0, 0]);
        assert_eq!(NodeConfig::decode(&bad_title), None);
        let mut bad_group = plain.get(..13).unwrap_or_default().to_vec();
        bad_group.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0xc3]);
        assert_eq!(NodeConfig::decode(&bad_group), None);
        // Lengths and counts beyond the buffer, up to u32::MAX.
        let mut huge_title = plain.get(..9).unwrap_or_default().to_vec();
        huge_title.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(NodeConfig::decode(&huge_title), None);
        let mut huge_count = plain.get(..13).unwrap_or_default().to_vec();
        huge_count.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, b'g']);
        assert_eq!(NodeConfig::decode(&huge_count), None);
    }

    /// `min..=max` random lowercase letters.
    fn text(next: &mut impl FnMut() -> u64, min: u64, max: u64) -> String {
        let n = min + next() % (max - min + 1);
        (0..n)
            .map(|_| char::from(b'a' + (next() % 26) as u8))
            .collect()
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
            let len = (next() % 48) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                if let Some(first) = buf.first_mut() {
                    *first = 1;
                }
            }
            if let Some(c) = NodeConfig::decode(&buf) {
                assert_eq!(c.encode(), buf, "whatever decodes re-encodes identically");
            }
        }
        // Random valid records, then one or two random bytes changed and maybe cut short.
        let mut decoded = 0;
        for _ in 0..20_000 {
            let title = text(&mut next, 0, 5);
            let groups = (0..next() % 4).map(|_| text(&mut next, 1, 4)).collect();
            let bits = next();
            let c = NodeConfig {
                title,
                max_items: (next() as u32).max(1),
                access_model: [
                    AccessModel::Open,
                    AccessModel::Presence,
                    AccessModel::Roster,
                    AccessModel::Whitelist,
                ][(bits % 4) as usize],
                roster_groups_allowed: groups,
                publish_model: [
                    PublishModel::Publishers,
                    PublishModel::Subscribers,
                    PublishModel::Open,
                ][(bits / 4 % 3) as usize],
                persist_items: bits & 0x100 != 0,
                send_last_published_item: [
                    SendLast::Never,
                    SendLast::OnSub,
                    SendLast::OnSubAndPresence,
                ][(bits / 16 % 3) as usize],
                notify_retract: bits & 0x200 != 0,
                notify_delete: bits & 0x400 != 0,
                deliver_payloads: bits & 0x800 != 0,
                deliver_notifications: bits & 0x1000 != 0,
            };
            let mut buf = c.encode();
            assert_eq!(NodeConfig::decode(&buf).as_ref(), Some(&c));
            for _ in 0..1 + next() % 2 {
                let at = (next() % buf.len() as u64) as usize;
                if let Some(x) = buf.get_mut(at) {
                    *x = next() as u8;
                }
            }
            if next() % 4 == 0 {
                buf.truncate((next() % (buf.len() as u64 + 1)) as usize);
            }
            if let Some(c) = NodeConfig::decode(&buf) {
                decoded += 1;
                assert_eq!(c.encode(), buf, "whatever decodes re-encodes identically");
            }
        }
        assert!(
            decoded > 1000,
            "changed records still decode often: {decoded}"
        );
        // Every single-byte change of a valid record: decodes to something that re-encodes
        // to the same bytes, or to nothing.
        let bytes = custom().encode();
        for i in 0..bytes.len() {
            for v in [0u8, 1, 2, 3, 4, 7, 8, 0x1f, 0x20, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(i) {
                    *x = v;
                }
                if let Some(c) = NodeConfig::decode(&b) {
                    assert_eq!(c.encode(), b, "byte {i} = {v}");
                }
            }
        }
    }
}
