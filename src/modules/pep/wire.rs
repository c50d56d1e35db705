//! XEP-0060 Publish-Subscribe on the wire, as PEP (XEP-0163) speaks it: reading requests,
//! writing results and event notifications.
//!
//! Pure: an element in, a [`Request`] or a [`PubsubError`] out; strings and stored bytes in,
//! bytes or elements out. Section numbers are those of XEP-0060 version 1.30.0 (anchors in
//! parentheses where it helps), whose §10 is Data Versioning, so the error table is §12.
//!
//! What the XEP leaves to the service is settled here for PEP: nodes are leaf nodes with
//! persistent items and a NodeID (no instant nodes, no collections, no subscription options,
//! no SubIDs). Children of `<pubsub/>` in other namespaces (XEP-0059 `<set/>`) are ignored, as
//! XEP-0059 §4 requires of a responder without result set management.

use crate::xml::{self, Element, Limits, StreamNs};
use crate::xmpp::dataform;
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::Jid;

/// The pubsub namespace (requests and results).
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// The pubsub event namespace (notifications).
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// The pubsub owner namespace (configure, default, delete, purge).
pub const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// The namespace of pubsub-specific error conditions.
pub const NS_PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

/// Most item ids one items request may name (§6.5.8 lets a request name items; the XEP sets no
/// bound). More is `not-acceptable`: a request should not make us look up an unbounded list.
pub const MAX_REQUESTED_IDS: usize = 100;

/// One parsed request. `'a` borrows the IQ payload element (`<pubsub xmlns=NS_PUBSUB>` or
/// `<pubsub xmlns=NS_PUBSUB_OWNER>`).
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// §7.1: publish one item; `id` is `None` when the publisher gave none (or an empty one)
    /// and the service must generate it; `payload` is the item's one child element.
    Publish {
        /// The NodeID.
        node: &'a str,
        /// The ItemID the publisher chose.
        id: Option<&'a str>,
        /// The payload element.
        payload: &'a Element,
        /// §7.1.5: the `jabber:x:data` form inside `<publish-options/>`, unchecked.
        options: Option<&'a Element>,
    },
    /// §7.2: delete one item.
    Retract {
        /// The NodeID.
        node: &'a str,
        /// The ItemID.
        id: &'a str,
        /// §7.2.2.1: notify subscribers (`notify` is "true" or "1").
        notify: bool,
    },
    /// §6.5: retrieve items.
    Items {
        /// The NodeID.
        node: &'a str,
        /// §6.5.7: the most recent N only.
        max_items: Option<usize>,
        /// §6.5.8: these items only (none: all), duplicates removed, in request order; at
        /// most [`MAX_REQUESTED_IDS`].
        ids: Vec<&'a str>,
    },
    /// §8.1: create a node.
    Create {
        /// The NodeID.
        node: &'a str,
        /// §8.1.3: the form inside `<configure/>`, if any, unchecked.
        config: Option<&'a Element>,
    },
    /// §6.1: subscribe `jid` (syntactically valid; whether the requester may is the
    /// caller's check, §6.1.3.1).
    Subscribe {
        /// The NodeID.
        node: &'a str,
        /// The JID to subscribe, as sent.
        jid: &'a str,
    },
    /// §6.2: unsubscribe `jid` (syntactically valid; §6.2.3.3 is the caller's check).
    Unsubscribe {
        /// The NodeID.
        node: &'a str,
        /// The JID to unsubscribe, as sent.
        jid: &'a str,
    },
    /// §5.6: the requester's own subscriptions at the service, to `node` or to every node.
    Subscriptions {
        /// The NodeID, if the request names one.
        node: Option<&'a str>,
    },
    /// §8.8.1: the owner lists a node's subscriptions.
    OwnerSubscriptionsGet {
        /// The NodeID.
        node: &'a str,
    },
    /// §8.8.2: the owner changes subscriptions: each JID (syntactically valid, in request
    /// order, at most [`MAX_REQUESTED_IDS`]) to `subscribed` (true) or `none` (false).
    OwnerSubscriptionsSet {
        /// The NodeID.
        node: &'a str,
        /// The JIDs and their new states.
        changes: Vec<(&'a str, bool)>,
    },
    /// §8.2.1: the owner asks for the configuration form.
    ConfigureGet {
        /// The NodeID.
        node: &'a str,
    },
    /// §8.2.4: the owner submits (or cancels, `type='cancel'`) the configuration form.
    ConfigureSet {
        /// The NodeID.
        node: &'a str,
        /// The `jabber:x:data` form, unchecked.
        form: &'a Element,
    },
    /// §8.3: the owner asks for the default configuration of a leaf node.
    DefaultGet,
    /// §8.4: the owner deletes a node (a `<redirect/>` is ignored: optional, §8.4.1).
    Delete {
        /// The NodeID.
        node: &'a str,
    },
    /// §8.5: the owner removes every item of a node.
    Purge {
        /// The NodeID.
        node: &'a str,
    },
}

/// A refused request: an RFC 6120 condition with the pubsub-specific one (§12 and each use
/// case's error section).
///
/// [`StanzaError`] carries an application element by name and namespace only, so the
/// `feature` attribute of `<unsupported/>` lives here; [`PubsubError::app_element`] has it,
/// [`PubsubError::to_stanza_error`] keeps it in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubError {
    /// The RFC 6120 condition.
    pub condition: StanzaCondition,
    /// The name of the element in [`NS_PUBSUB_ERRORS`], if any.
    pub app: Option<&'static str>,
    /// The `feature` attribute, with `app` `unsupported` (one of the schema's enumeration).
    pub feature: Option<&'static str>,
    /// Human-readable text.
    pub text: Option<String>,
}

impl PubsubError {
    /// An error with `condition` and, if given, the pubsub#errors element `app`.
    pub fn new(condition: StanzaCondition, app: Option<&'static str>) -> PubsubError {
        PubsubError {
            condition,
            app,
            feature: None,
            text: None,
        }
    }

    /// `feature-not-implemented` with `<unsupported feature='…'/>` (§12: "the error SHOULD
    /// also specify which feature is unsupported").
    pub fn unsupported(feature: &'static str) -> PubsubError {
        PubsubError {
            feature: Some(feature),
            ..PubsubError::new(StanzaCondition::FeatureNotImplemented, Some("unsupported"))
        }
    }

    /// The same error with an explanatory text.
    pub fn with_text(self, text: impl Into<String>) -> PubsubError {
        PubsubError {
            text: Some(text.into()),
            ..self
        }
    }

    /// The error as the crate writes it: condition, text and the pubsub#errors element
    /// without attributes. An `<unsupported/>` feature no text explains becomes the text.
    pub fn to_stanza_error(&self) -> StanzaError {
        let text = match (&self.text, self.feature) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(format!("unsupported pubsub feature: {f}")),
            (None, None) => None,
        };
        let e = StanzaError {
            text,
            ..StanzaError::new(self.condition)
        };
        match self.app {
            Some(name) => e.with_app(name, NS_PUBSUB_ERRORS),
            None => e,
        }
    }

    /// The pubsub#errors element, with its `feature` attribute.
    pub fn app_element(&self) -> Option<Element> {
        let mut e = Element::new(self.app?, NS_PUBSUB_ERRORS);
        if let Some(f) = self.feature {
            e.set_attr("feature", f);
        }
        Some(e)
    }
}

impl std::fmt::Display for PubsubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.name())?;
        if let Some(app) = self.app {
            write!(f, " ({app}")?;
            if let Some(feature) = self.feature {
                write!(f, " {feature}")?;
            }
            f.write_str(")")?;
        }
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

/// Reads a request. `set` is whether the IQ type is set (publish, retract, create, subscribe,
/// unsubscribe, configure-set, delete and purge are sets; items, configure-get and default are
/// gets).
///
/// Refused: a request the XEP defines but PEP does not implement (`feature-not-implemented`
/// with `<unsupported feature/>`); an element the XEP does not define in the namespace
/// (`feature-not-implemented`, RFC 6120 §8.3.3.3: "understands the namespace but does not
/// recognize the element name"); no request, several, or one in the wrong IQ type
/// (`bad-request`, RFC 6120 §8.3.3.1: not the schema); a missing or invalid attribute or child,
/// as each use case's error section says.
pub fn parse(set: bool, pubsub: &Element) -> Result<Request<'_>, PubsubError> {
    let owner = match pubsub.ns.as_str() {
        NS_PUBSUB => false,
        NS_PUBSUB_OWNER => true,
        _ => return Err(bad_request(None, "not a pubsub request")),
    };
    if pubsub.name != "pubsub" {
        return Err(bad_request(None, "not a pubsub request"));
    }
    let mut children = pubsub.elements().filter(|e| e.ns == pubsub.ns);
    let Some(first) = children.next() else {
        return Err(bad_request(None, "the pubsub element holds no request"));
    };
    let second = children.next();
    if children.next().is_some() {
        return Err(bad_request(None, "more than one pubsub request"));
    }
    let verb = if owner {
        owner_verb(first, second)?
    } else {
        user_verb(first, second)?
    };
    if let Some(wanted) = verb.set() {
        if wanted != set {
            let ty = if wanted { "set" } else { "get" };
            return Err(bad_request(
                None,
                format!("<{}/> goes in an IQ of type {ty}", first.name),
            ));
        }
    }
    match verb {
        Verb::Publish => publish(first, second),
        Verb::Retract => retract(first),
        Verb::Items => items(first),
        Verb::Create => create(first, second),
        Verb::Subscribe => {
            let (node, jid) = subscriber(first)?;
            Ok(Request::Subscribe { node, jid })
        }
        Verb::Unsubscribe => {
            let (node, jid) = subscriber(first)?;
            Ok(Request::Unsubscribe { node, jid })
        }
        Verb::Subscriptions => Ok(Request::Subscriptions {
            node: first.attr("node").filter(|n| !n.is_empty()),
        }),
        Verb::OwnerSubscriptions => owner_subscriptions(set, first),
        Verb::Configure => configure(set, first),
        Verb::Default => default(first),
        Verb::Delete => Ok(Request::Delete {
            node: node_of(first, bad_nodeid)?,
        }),
        Verb::Purge => Ok(Request::Purge {
            node: node_of(first, bad_nodeid)?,
        }),
    }
}

/// Bytes to store for a payload: the element with its own `xmlns`, as [`items_result`] and
/// [`write_item_event`] expect.
pub fn serialize_payload(payload: &Element) -> Vec<u8> {
    let mut out = Vec::new();
    payload.write_to(&mut out, "");
    out
}

/// §7.1.2.1 (§7.1.2.2 without payload, §7.1.2.3 with publisher):
/// `<event xmlns=NS_PUBSUB_EVENT><items node='N'><item id='I' [publisher='P']>PAYLOAD</item>
/// </items></event>`. `payload` is written as given (serialized by [`serialize_payload`]);
/// `None` (deliver_payloads false) gives an empty `<item/>`.
pub fn write_item_event(
    out: &mut Vec<u8>,
    node: &str,
    id: &str,
    publisher: Option<&str>,
    payload: Option<&[u8]>,
) {
    open_event_items(out, node);
    out.extend_from_slice(b"<item");
    attr(out, "id", id);
    if let Some(p) = publisher {
        attr(out, "publisher", p);
    }
    match payload {
        Some(bytes) => {
            out.push(b'>');
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"</item>");
        }
        None => out.extend_from_slice(b"/>"),
    }
    out.extend_from_slice(b"</items></event>");
}

/// §7.2.2.1: `<event xmlns=NS_PUBSUB_EVENT><items node='N'><retract id='I'/></items></event>`.
pub fn write_retract_event(out: &mut Vec<u8>, node: &str, id: &str) {
    open_event_items(out, node);
    out.extend_from_slice(b"<retract");
    attr(out, "id", id);
    out.extend_from_slice(b"/></items></event>");
}

/// §8.4.2: `<event xmlns=NS_PUBSUB_EVENT><delete node='N'/></event>`.
pub fn write_delete_event(out: &mut Vec<u8>, node: &str) {
    write_node_event(out, "delete", node);
}

/// §8.5.2: `<event xmlns=NS_PUBSUB_EVENT><purge node='N'/></event>`.
pub fn write_purge_event(out: &mut Vec<u8>, node: &str) {
    write_node_event(out, "purge", node);
}

/// §7.1.2: the publish result payload,
/// `<pubsub xmlns=NS_PUBSUB><publish node='N'><item id='I'/></publish></pubsub>`.
pub fn publish_result(node: &str, id: &str) -> Element {
    Element::new("pubsub", NS_PUBSUB).with_child(
        Element::new("publish", NS_PUBSUB)
            .with_attr("node", node)
            .with_child(Element::new("item", NS_PUBSUB).with_attr("id", id)),
    )
}

/// §6.5.3 (§7.1.2.3 with publishers, §6.5.9.12 when empty): the items result,
/// `<pubsub xmlns=NS_PUBSUB><items node='N'><item id='I' [publisher='P']>payload</item>…
/// </items></pubsub>`. `items` are (id, publisher, payload as stored by
/// [`serialize_payload`]), newest first, and keep that order; an empty payload gives an empty
/// `<item/>`. Err names the item whose payload does not parse.
pub fn items_result(
    node: &str,
    items: &[(&str, Option<&str>, &[u8])],
    limits: &Limits,
) -> Result<Element, String> {
    let mut list = Element::new("items", NS_PUBSUB).with_attr("node", node);
    // The context the payload was written for: no default namespace in scope.
    let ns = StreamNs::new("");
    for &(id, publisher, payload) in items {
        let mut item = Element::new("item", NS_PUBSUB).with_attr("id", id);
        if let Some(p) = publisher {
            item.set_attr("publisher", p);
        }
        if !payload.is_empty() {
            let parsed = xml::parse_element(payload, &ns, limits)
                .map_err(|e| format!("stored item '{id}' of node '{node}' does not parse: {e}"))?;
            item.push_child(parsed);
        }
        list.push_child(item);
    }
    Ok(Element::new("pubsub", NS_PUBSUB).with_child(list))
}

/// §5.6.2: `<pubsub xmlns=NS_PUBSUB><subscriptions [node='N']><subscription node jid
/// subscription='subscribed'/>…</subscriptions></pubsub>` for `(node, jid)` pairs.
pub fn subscriptions_result(node: Option<&str>, subs: &[(&str, &str)]) -> Element {
    let mut list = Element::new("subscriptions", NS_PUBSUB);
    if let Some(node) = node {
        list.set_attr("node", node);
    }
    for (node, jid) in subs {
        list.push_child(
            Element::new("subscription", NS_PUBSUB)
                .with_attr("node", *node)
                .with_attr("jid", *jid)
                .with_attr("subscription", "subscribed"),
        );
    }
    Element::new("pubsub", NS_PUBSUB).with_child(list)
}

/// §8.8.1.2: `<pubsub xmlns=NS_PUBSUB_OWNER><subscriptions node='N'><subscription jid
/// subscription='subscribed'/>…</subscriptions></pubsub>`.
pub fn owner_subscriptions_result(node: &str, jids: &[&str]) -> Element {
    let mut list = Element::new("subscriptions", NS_PUBSUB_OWNER).with_attr("node", node);
    for jid in jids {
        list.push_child(
            Element::new("subscription", NS_PUBSUB_OWNER)
                .with_attr("jid", *jid)
                .with_attr("subscription", "subscribed"),
        );
    }
    Element::new("pubsub", NS_PUBSUB_OWNER).with_child(list)
}

/// §6.1.2 / §6.2.2: `<pubsub xmlns=NS_PUBSUB><subscription node='N' jid='J'
/// subscription='subscribed'|'none'/></pubsub>`.
pub fn subscription_result(node: &str, jid: &str, subscribed: bool) -> Element {
    Element::new("pubsub", NS_PUBSUB).with_child(
        Element::new("subscription", NS_PUBSUB)
            .with_attr("node", node)
            .with_attr("jid", jid)
            .with_attr(
                "subscription",
                if subscribed { "subscribed" } else { "none" },
            ),
    )
}

/// The requests PEP implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Publish,
    Retract,
    Items,
    Create,
    Subscribe,
    Unsubscribe,
    Subscriptions,
    OwnerSubscriptions,
    Configure,
    Default,
    Delete,
    Purge,
}

impl Verb {
    /// Whether the request is an IQ set (`None`: either; configure is a get or a set).
    fn set(self) -> Option<bool> {
        match self {
            Verb::Items | Verb::Default | Verb::Subscriptions => Some(false),
            Verb::Configure | Verb::OwnerSubscriptions => None,
            Verb::Publish
            | Verb::Retract
            | Verb::Create
            | Verb::Subscribe
            | Verb::Unsubscribe
            | Verb::Delete
            | Verb::Purge => Some(true),
        }
    }
}

/// The request in the pubsub namespace, by the schema's `<pubsub/>` choice (§18.1): `create`
/// then optional `configure`, `subscribe` then optional `options`, `publish` then optional
/// `publish-options`, or exactly one of the others.
fn user_verb(first: &Element, second: Option<&Element>) -> Result<Verb, PubsubError> {
    let (verb, companion) = match first.name.as_str() {
        "publish" => (Verb::Publish, Some("publish-options")),
        "retract" => (Verb::Retract, None),
        "items" => (Verb::Items, None),
        "create" => (Verb::Create, Some("configure")),
        "subscribe" => (Verb::Subscribe, Some("options")),
        "unsubscribe" => (Verb::Unsubscribe, None),
        "subscriptions" => (Verb::Subscriptions, None),
        // §5.7.
        "affiliations" => return Err(PubsubError::unsupported("retrieve-affiliations")),
        // §6.3.4.6 (subscriber-configure-error-options).
        "options" => return Err(PubsubError::unsupported("subscription-options")),
        // §6.4.3.2 (subscriber-default-error-notsupported).
        "default" => return Err(PubsubError::unsupported("retrieve-default-sub")),
        // §8.1.3: "The <configure/> element MUST follow the <create/> element"; the others
        // follow their request too.
        "configure" | "publish-options" => {
            return Err(bad_request(
                None,
                format!("<{}/> without the request it belongs to", first.name),
            ))
        }
        _ => return Err(unknown_element(first)),
    };
    match second {
        None => Ok(verb),
        // §6.3.7 subscribe-and-configure: subscription options are not supported (§6.3.4.6).
        Some(s) if verb == Verb::Subscribe && s.name == "options" => {
            Err(PubsubError::unsupported("subscription-options"))
        }
        Some(s) if Some(s.name.as_str()) == companion => Ok(verb),
        Some(s) => Err(bad_request(
            None,
            format!("<{}/> cannot go with <{}/>", s.name, first.name),
        )),
    }
}

/// The request in the owner namespace: exactly one child (§18.4, the schema's choice).
fn owner_verb(first: &Element, second: Option<&Element>) -> Result<Verb, PubsubError> {
    let verb = match first.name.as_str() {
        "configure" => Verb::Configure,
        "default" => Verb::Default,
        "delete" => Verb::Delete,
        "purge" => Verb::Purge,
        "subscriptions" => Verb::OwnerSubscriptions,
        // §8.9.1.3 (owner-affiliations-retrieve-error).
        "affiliations" => return Err(PubsubError::unsupported("modify-affiliations")),
        _ => return Err(unknown_element(first)),
    };
    match second {
        None => Ok(verb),
        Some(_) => Err(bad_request(None, "more than one pubsub#owner request")),
    }
}

/// §7.1.
fn publish<'a>(
    publish: &'a Element,
    options: Option<&'a Element>,
) -> Result<Request<'a>, PubsubError> {
    // §7.1.1: "The <publish/> element MUST possess a 'node' attribute"; the condition is the
    // one §7.2.3.3 and §8.2.3.3 give for a missing NodeID.
    let node = node_of(publish, bad_nodeid)?;
    let mut items = publish.elements().filter(|e| e.is("item", NS_PUBSUB));
    // §7.1.3.7: PEP nodes persist items, so "the publisher does not include an item" is
    // bad-request + item-required.
    let Some(item) = items.next() else {
        return Err(bad_request(
            Some("item-required"),
            "a publish to a persistent node carries an item",
        ));
    };
    // §7.1.1: "The inclusion of more than one <item/> element is no longer allowed" (batch
    // publishing was removed in 1.13); the XEP names no condition, so §7.1.3.6's.
    if items.next().is_some() {
        return Err(bad_request(
            Some("invalid-payload"),
            "a publish carries one item",
        ));
    }
    let mut payloads = item.elements();
    // §7.1.3.7: PEP nodes deliver payloads, so a publish without one is bad-request +
    // payload-required.
    let Some(payload) = payloads.next() else {
        return Err(bad_request(
            Some("payload-required"),
            "the item carries no payload",
        ));
    };
    // §7.1.3.6: "does not contain exactly one payload element".
    if payloads.next().is_some() {
        return Err(bad_request(
            Some("invalid-payload"),
            "an item carries exactly one payload element",
        ));
    }
    // §18.1: the payload is `xs:any namespace='##other'` (neither pubsub nor no namespace);
    // §7.1.3.6 is the condition for a payload namespace that does not fit.
    if payload.ns.is_empty() || payload.ns == NS_PUBSUB {
        return Err(bad_request(
            Some("invalid-payload"),
            "the payload needs a namespace of its own",
        ));
    }
    // §7.1.1: without an ItemID "the pubsub service MUST generate one"; an empty one
    // identifies nothing, so it gets one too.
    let id = item.attr("id").filter(|id| !id.is_empty());
    // §7.1.5: the data form inside <publish-options/>; an empty one asks nothing.
    let options = options.and_then(|o| o.child("x", dataform::NS));
    Ok(Request::Publish {
        node,
        id,
        payload,
        options,
    })
}

/// §7.2.
fn retract(retract: &Element) -> Result<Request<'_>, PubsubError> {
    // §7.2.3.3.
    let node = node_of(retract, bad_nodeid)?;
    // §7.2.1: "MUST contain one <item/> element … MUST possess an 'id' attribute"; §7.2.3.4 is
    // the condition for no item or no ItemID.
    let mut items = retract.elements().filter(|e| e.is("item", NS_PUBSUB));
    let id = items
        .next()
        .and_then(|i| i.attr("id"))
        .filter(|id| !id.is_empty());
    let Some(id) = id else {
        return Err(bad_request(
            Some("item-required"),
            "a retract names one item by its id",
        ));
    };
    if items.next().is_some() {
        return Err(bad_request(None, "a retract names one item"));
    }
    // §7.2.2.1: "a 'notify' attribute with a value of "true" or "1"" (xs:boolean).
    let notify = match retract.attr("notify") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(bad_request(None, "notify is true, 1, false or 0")),
    };
    Ok(Request::Retract { node, id, notify })
}

/// §6.5.
fn items(items: &Element) -> Result<Request<'_>, PubsubError> {
    // §18.1: `node` is required on <items/>; the condition is §7.2.3.3's.
    let node = node_of(items, bad_nodeid)?;
    // §6.5.7; §18.1: `max_items` is an xs:positiveInteger.
    let max_items = match items.attr("max_items") {
        None => None,
        Some(v) => Some(
            positive_integer(v)
                .ok_or_else(|| bad_request(None, "max_items is a positive integer"))?,
        ),
    };
    let mut ids: Vec<&str> = Vec::new();
    let requested = items.elements().filter(|e| e.is("item", NS_PUBSUB));
    for (n, item) in requested.enumerate() {
        if n == MAX_REQUESTED_IDS {
            return Err(
                PubsubError::new(StanzaCondition::NotAcceptable, None).with_text(format!(
                    "at most {MAX_REQUESTED_IDS} items can be requested by id"
                )),
            );
        }
        // §6.5.8 names an item by its ItemID; the condition is §7.2.3.4's.
        let Some(id) = item.attr("id").filter(|id| !id.is_empty()) else {
            return Err(bad_request(
                Some("item-required"),
                "a requested item needs its id",
            ));
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(Request::Items {
        node,
        max_items,
        ids,
    })
}

/// §8.1.
fn create<'a>(
    create: &'a Element,
    configure: Option<&'a Element>,
) -> Result<Request<'a>, PubsubError> {
    // §8.1.1: no NodeID and no instant nodes (PEP nodes are named by their payload
    // namespace): "a <not-acceptable/> error, specifying … <nodeid-required/>".
    let node = node_of(create, |why| {
        PubsubError::new(StanzaCondition::NotAcceptable, Some("nodeid-required"))
            .with_text(format!("{why}: instant nodes are not supported"))
    })?;
    let config = match configure {
        None => None,
        // §8.1.3: <configure/> "MUST NOT possess a 'node' attribute … the service MUST return a
        // <bad-request/> error".
        Some(c) if c.attr("node").is_some() => {
            return Err(bad_request(
                None,
                "the <configure/> of a create has no node attribute",
            ))
        }
        Some(c) => c.child("x", dataform::NS),
    };
    Ok(Request::Create { node, config })
}

/// §6.1 and §6.2: the node and the subscriber's JID.
fn subscriber(el: &Element) -> Result<(&str, &str), PubsubError> {
    // §6.1.1: the node "SHOULD" be there; without it the request is for the service's root
    // collection, which PEP has not (no collections): the condition is §7.2.3.3's.
    let node = node_of(el, bad_nodeid)?;
    // §18.1: `jid` is required. The condition for no subscriber JID is §6.3.4.3's
    // (subscriber-configure-error-jid): bad-request + jid-required.
    let jid = match el.attr("jid") {
        None | Some("") => {
            return Err(bad_request(
                Some("jid-required"),
                format!("<{}/> names the subscriber's jid", el.name),
            ))
        }
        Some(j) => j,
    };
    // §6.1.3.1: a JID that cannot be the requester's is bad-request + invalid-jid.
    if Jid::parse(jid).is_err() {
        return Err(bad_request(
            Some("invalid-jid"),
            "the jid is not a valid JID",
        ));
    }
    Ok((node, jid))
}

/// §8.8 (owner namespace): a get lists, a set changes `<subscription jid subscription/>`
/// children.
fn owner_subscriptions(set: bool, el: &Element) -> Result<Request<'_>, PubsubError> {
    // §8.8.1.3 names no condition for a missing node; §8.2.3.3's is the owner namespace's.
    let node = node_of(el, bad_nodeid)?;
    if !set {
        return Ok(Request::OwnerSubscriptionsGet { node });
    }
    let mut changes: Vec<(&str, bool)> = Vec::new();
    for sub in el.elements() {
        if !sub.is("subscription", NS_PUBSUB_OWNER) {
            return Err(bad_request(
                None,
                format!("<{}/> in <subscriptions/>", sub.name),
            ));
        }
        let jid = match sub.attr("jid") {
            Some(j) if Jid::parse(j).is_ok() => j,
            Some(_) => return Err(bad_request(Some("invalid-jid"), "a jid is not a valid JID")),
            None => {
                return Err(bad_request(
                    Some("jid-required"),
                    "a <subscription/> has no jid",
                ))
            }
        };
        // §8.8.2: the owner sets a state; PEP keeps no pending or unconfigured ones.
        let subscribed = match sub.attr("subscription") {
            Some("subscribed") => true,
            Some("none") => false,
            Some("pending" | "unconfigured") => {
                return Err(PubsubError::unsupported("subscription-options")
                    .with_text("only 'subscribed' and 'none' can be set"))
            }
            _ => return Err(bad_request(None, "subscription is 'subscribed' or 'none'")),
        };
        changes.retain(|(j, _)| *j != jid);
        changes.push((jid, subscribed));
        if changes.len() > MAX_REQUESTED_IDS {
            return Err(
                PubsubError::new(StanzaCondition::NotAcceptable, None).with_text(format!(
                    "at most {MAX_REQUESTED_IDS} subscriptions per request"
                )),
            );
        }
    }
    if changes.is_empty() {
        return Err(bad_request(None, "<subscriptions/> changes nothing"));
    }
    Ok(Request::OwnerSubscriptionsSet { node, changes })
}

/// §8.2 (owner namespace).
fn configure(set: bool, configure: &Element) -> Result<Request<'_>, PubsubError> {
    // §8.2.3.3.
    let node = node_of(configure, bad_nodeid)?;
    if !set {
        return Ok(Request::ConfigureGet { node });
    }
    // §8.2.4: a set carries the submitted (or cancelled) form.
    match configure.child("x", dataform::NS) {
        Some(form) => Ok(Request::ConfigureSet { node, form }),
        None => Err(bad_request(None, "a configure set carries a data form")),
    }
}

/// §8.3 (owner namespace).
fn default(default: &Element) -> Result<Request<'_>, PubsubError> {
    // §8.3.2: "If the attribute is not provided, the service MUST return the configuration for
    // the 'leaf' type"; other node types are XEP-0248 collections.
    match default.attr("type") {
        None | Some("leaf") => Ok(Request::DefaultGet),
        Some(_) => Err(PubsubError::unsupported("collections")),
    }
}

/// The `node` attribute; absent or empty is `missing(what)`.
fn node_of(el: &Element, missing: impl FnOnce(String) -> PubsubError) -> Result<&str, PubsubError> {
    match el.attr("node") {
        Some(node) if !node.is_empty() => Ok(node),
        _ => Err(missing(format!("<{}/> has no node", el.name))),
    }
}

/// §7.2.3.3 / §8.2.3.3: bad-request + nodeid-required.
fn bad_nodeid(why: String) -> PubsubError {
    bad_request(Some("nodeid-required"), why)
}

fn bad_request(app: Option<&'static str>, text: impl Into<String>) -> PubsubError {
    PubsubError::new(StanzaCondition::BadRequest, app).with_text(text)
}

/// RFC 6120 §8.3.3.3: "the entity understands the namespace but does not recognize the
/// element name". No `<unsupported/>`: its feature must be one the XEP lists.
fn unknown_element(el: &Element) -> PubsubError {
    PubsubError::new(StanzaCondition::FeatureNotImplemented, None)
        .with_text(format!("<{}/> is not a pubsub request", el.name))
}

/// An xs:positiveInteger (optional `+`, digits, not zero); beyond `usize` saturates, which
/// asks for everything either way.
fn positive_integer(v: &str) -> Option<usize> {
    let digits = v.strip_prefix('+').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(digits.parse().unwrap_or(usize::MAX))
}

fn open_event_items(out: &mut Vec<u8>, node: &str) {
    open_event(out);
    out.extend_from_slice(b"<items");
    attr(out, "node", node);
    out.push(b'>');
}

fn write_node_event(out: &mut Vec<u8>, name: &str, node: &str) {
    open_event(out);
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    attr(out, "node", node);
    out.extend_from_slice(b"/></event>");
}

fn open_event(out: &mut Vec<u8>) {
    out.extend_from_slice(b"<event xmlns='");
    out.extend_from_slice(NS_PUBSUB_EVENT.as_bytes());
    out.extend_from_slice(b"'>");
}

/// ` name='value'`, the value escaped.
fn attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    xml::write_attr(name, value, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(text: &str) -> Element {
        xml::parse_element(
            text.as_bytes(),
            &StreamNs::new("jabber:client"),
            &Limits::default(),
        )
        .expect("test XML parses")
    }

    fn ps(body: &str) -> Element {
        el(&format!("<pubsub xmlns='{NS_PUBSUB}'>{body}</pubsub>"))
    }

    fn owner(body: &str) -> Element {
        el(&format!(
            "<pubsub xmlns='{NS_PUBSUB_OWNER}'>{body}</pubsub>"
        ))
    }

    /// (condition, pubsub#errors element, feature) of a refusal.
    fn refusal(
        r: Result<Request<'_>, PubsubError>,
    ) -> (StanzaCondition, Option<&'static str>, Option<&'static str>) {
        let e = r.expect_err("refused");
        (e.condition, e.app, e.feature)
    }

    const BAD: StanzaCondition = StanzaCondition::BadRequest;
    const FNI: StanzaCondition = StanzaCondition::FeatureNotImplemented;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    // ---- §6.1 subscribe, §6.2 unsubscribe

    #[test]
    fn xep0060_6_1_1_subscribe() {
        let p = ps("<subscribe node='princely_musings' jid='francisco@denmark.lit'/>");
        assert_eq!(
            parse(true, &p).unwrap(),
            Request::Subscribe {
                node: "princely_musings",
                jid: "francisco@denmark.lit"
            }
        );
    }

    #[test]
    fn xep0060_6_2_1_unsubscribe() {
        let p = ps("<unsubscribe node='princely_musings' jid='francisco@denmark.lit/x'/>");
        assert_eq!(
            parse(true, &p).unwrap(),
            Request::Unsubscribe {
                node: "princely_musings",
                jid: "francisco@denmark.lit/x"
            }
        );
    }

    #[test]
    fn xep0060_6_3_4_3_subscribe_without_jid_is_jid_required() {
        for body in [
            "<subscribe node='n'/>",
            "<subscribe node='n' jid=''/>",
            "<unsubscribe node='n'/>",
        ] {
            assert_eq!(
                refusal(parse(true, &ps(body))),
                (BAD, Some("jid-required"), None),
                "{body}"
            );
        }
    }

    #[test]
    fn xep0060_6_1_3_1_malformed_jid_is_invalid_jid() {
        for body in [
            "<subscribe node='n' jid='@denmark.lit'/>",
            "<unsubscribe node='n' jid='a@b/'/>",
        ] {
            assert_eq!(
                refusal(parse(true, &ps(body))),
                (BAD, Some("invalid-jid"), None),
                "{body}"
            );
        }
    }

    #[test]
    fn xep0060_6_1_1_subscribe_without_node_is_nodeid_required() {
        for body in ["<subscribe jid='a@b'/>", "<unsubscribe node='' jid='a@b'/>"] {
            assert_eq!(
                refusal(parse(true, &ps(body))),
                (BAD, Some("nodeid-required"), None),
                "{body}"
            );
        }
    }

    #[test]
    fn xep0060_6_3_subscription_options_are_unsupported() {
        let both = ps("<subscribe node='n' jid='a@b'/><options jid='a@b'/>");
        assert_eq!(
            refusal(parse(true, &both)),
            (FNI, Some("unsupported"), Some("subscription-options"))
        );
        let alone = ps("<options node='n' jid='a@b'/>");
        assert_eq!(
            refusal(parse(false, &alone)),
            (FNI, Some("unsupported"), Some("subscription-options"))
        );
        assert_eq!(
            refusal(parse(false, &ps("<default/>"))),
            (FNI, Some("unsupported"), Some("retrieve-default-sub"))
        );
    }

    #[test]
    fn xep0060_5_6_subscriptions_retrieval() {
        assert_eq!(
            parse(false, &ps("<subscriptions/>")).unwrap(),
            Request::Subscriptions { node: None }
        );
        assert_eq!(
            parse(false, &ps("<subscriptions node='n'/>")).unwrap(),
            Request::Subscriptions { node: Some("n") }
        );
        assert_eq!(refusal(parse(true, &ps("<subscriptions/>"))).0, BAD);
        assert_eq!(
            subscriptions_result(Some("n"), &[("n", "a@b/c")]).to_string_in("jabber:client"),
            format!(
                "<pubsub xmlns='{NS_PUBSUB}'><subscriptions node='n'><subscription node='n' \
                 jid='a@b/c' subscription='subscribed'/></subscriptions></pubsub>"
            )
        );
    }

    #[test]
    fn xep0060_5_7_affiliations_retrieval_is_unsupported() {
        assert_eq!(
            refusal(parse(false, &ps("<affiliations/>"))),
            (FNI, Some("unsupported"), Some("retrieve-affiliations"))
        );
    }

    // ---- §6.5 retrieve items

    #[test]
    fn xep0060_6_5_2_all_items() {
        assert_eq!(
            parse(false, &ps("<items node='princely_musings'/>")).unwrap(),
            Request::Items {
                node: "princely_musings",
                max_items: None,
                ids: vec![]
            }
        );
    }

    #[test]
    fn xep0060_6_5_7_most_recent_items() {
        for (v, n) in [
            ("2", 2),
            ("+3", 3),
            ("007", 7),
            ("99999999999999999999999", usize::MAX),
        ] {
            let p = ps(&format!("<items node='n' max_items='{v}'/>"));
            assert_eq!(
                parse(false, &p).unwrap(),
                Request::Items {
                    node: "n",
                    max_items: Some(n),
                    ids: vec![]
                },
                "{v}"
            );
        }
        for v in ["0", "000", "-1", "", "+", "1.5", " 2", "two", "0x10"] {
            let p = ps(&format!("<items node='n' max_items='{v}'/>"));
            assert_eq!(refusal(parse(false, &p)), (BAD, None, None), "{v:?}");
        }
    }

    #[test]
    fn xep0060_6_5_8_particular_items() {
        let p = ps(
            "<items node='n' max_items='5'><item id='a'/><item id='b'/><item id='a'/>\
                    </items><set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>",
        );
        assert_eq!(
            parse(false, &p).unwrap(),
            Request::Items {
                node: "n",
                max_items: Some(5),
                ids: vec!["a", "b"]
            }
        );
        for body in [
            "<items node='n'><item/></items>",
            "<items node='n'><item id=''/></items>",
        ] {
            assert_eq!(
                refusal(parse(false, &ps(body))),
                (BAD, Some("item-required"), None),
                "{body}"
            );
        }
    }

    #[test]
    fn xep0060_6_5_8_requested_ids_are_bounded() {
        let list = |n: usize| -> String { (0..n).map(|i| format!("<item id='i{i}'/>")).collect() };
        let p = ps(&format!(
            "<items node='n'>{}</items>",
            list(MAX_REQUESTED_IDS)
        ));
        match parse(false, &p).unwrap() {
            Request::Items { ids, .. } => assert_eq!(ids.len(), MAX_REQUESTED_IDS),
            other => panic!("{other:?}"),
        }
        let p = ps(&format!(
            "<items node='n'>{}</items>",
            list(MAX_REQUESTED_IDS + 1)
        ));
        assert_eq!(
            refusal(parse(false, &p)),
            (StanzaCondition::NotAcceptable, None, None)
        );
    }

    #[test]
    fn xep0060_18_1_items_without_node_is_nodeid_required() {
        for body in ["<items/>", "<items node=''/>"] {
            assert_eq!(
                refusal(parse(false, &ps(body))),
                (BAD, Some("nodeid-required"), None)
            );
        }
    }

    // ---- §7.1 publish

    #[test]
    fn xep0060_7_1_1_publish() {
        let p = ps(
            "<publish node='princely_musings'><item id='bnd81g37d61f49fgn581'>\n  \
                    <entry xmlns='http://www.w3.org/2005/Atom'><title>Soliloquy</title></entry>\n\
                    </item></publish>",
        );
        let Request::Publish {
            node,
            id,
            payload,
            options,
        } = parse(true, &p).unwrap()
        else {
            panic!("a publish")
        };
        assert_eq!(
            (node, id, options),
            ("princely_musings", Some("bnd81g37d61f49fgn581"), None)
        );
        assert!(payload.is("entry", "http://www.w3.org/2005/Atom"));
    }

    #[test]
    fn xep0060_7_1_1_publish_without_item_id_lets_the_service_choose() {
        for item in ["<item>", "<item id=''>"] {
            let p = ps(&format!(
                "<publish node='n'>{item}<x xmlns='urn:x'/></item></publish>"
            ));
            assert!(
                matches!(parse(true, &p), Ok(Request::Publish { id: None, .. })),
                "{item}"
            );
        }
    }

    #[test]
    fn xep0060_7_1_1_publish_without_node_is_nodeid_required() {
        for publish in ["<publish>", "<publish node=''>"] {
            let p = ps(&format!(
                "{publish}<item><x xmlns='urn:x'/></item></publish>"
            ));
            assert_eq!(
                refusal(parse(true, &p)),
                (BAD, Some("nodeid-required"), None)
            );
        }
    }

    #[test]
    fn xep0060_7_1_1_publish_of_two_items_is_invalid_payload() {
        let p = ps("<publish node='n'><item id='1'><x xmlns='urn:x'/></item>\
                    <item id='2'><x xmlns='urn:x'/></item></publish>");
        assert_eq!(
            refusal(parse(true, &p)),
            (BAD, Some("invalid-payload"), None)
        );
    }

    #[test]
    fn xep0060_7_1_3_6_two_payloads_are_invalid_payload() {
        let p = ps("<publish node='n'><item><x xmlns='urn:x'/><y xmlns='urn:x'/></item></publish>");
        assert_eq!(
            refusal(parse(true, &p)),
            (BAD, Some("invalid-payload"), None)
        );
    }

    #[test]
    fn xep0060_18_1_payload_in_no_or_the_pubsub_namespace_is_invalid_payload() {
        for payload in ["<entry/>", "<entry xmlns=''/>"] {
            let p = ps(&format!(
                "<publish node='n'><item>{payload}</item></publish>"
            ));
            assert_eq!(
                refusal(parse(true, &p)),
                (BAD, Some("invalid-payload"), None),
                "{payload}"
            );
        }
    }

    #[test]
    fn xep0060_7_1_3_7_no_item_is_item_required() {
        let p = ps("<publish node='n'/>");
        assert_eq!(refusal(parse(true, &p)), (BAD, Some("item-required"), None));
    }

    #[test]
    fn xep0060_7_1_3_7_no_payload_is_payload_required() {
        for item in ["<item id='1'/>", "<item id='1'> text only </item>"] {
            let p = ps(&format!("<publish node='n'>{item}</publish>"));
            assert_eq!(
                refusal(parse(true, &p)),
                (BAD, Some("payload-required"), None),
                "{item}"
            );
        }
    }

    #[test]
    fn xep0060_7_1_5_publish_options() {
        let p = ps(
            "<publish node='n'><item id='1'><x xmlns='urn:x'/></item></publish>\
                    <publish-options><x xmlns='jabber:x:data' type='submit'>\
                    <field var='FORM_TYPE' type='hidden'>\
                    <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                    <field var='pubsub#access_model'><value>presence</value></field>\
                    </x></publish-options>",
        );
        let Ok(Request::Publish {
            options: Some(form),
            payload,
            ..
        }) = parse(true, &p)
        else {
            panic!("a publish with options")
        };
        assert!(form.is("x", dataform::NS));
        assert!(payload.is("x", "urn:x"));
        let empty = ps(
            "<publish node='n'><item><x xmlns='urn:x'/></item></publish>\
                        <publish-options/>",
        );
        assert!(matches!(
            parse(true, &empty),
            Ok(Request::Publish { options: None, .. })
        ));
        // Options belong after a publish, alone or first they are not a request.
        for body in [
            "<publish-options/>",
            "<publish-options/><publish node='n'><item><x xmlns='urn:x'/></item></publish>",
        ] {
            assert_eq!(refusal(parse(true, &ps(body))), (BAD, None, None), "{body}");
        }
    }

    #[test]
    fn xep0060_7_1_2_3_publisher_attribute_is_not_taken_from_the_publisher() {
        // The Request has no publisher: the caller stamps it (MUST be generated by the service).
        let p = ps(
            "<publish node='n'><item publisher='spoof@x'><x xmlns='urn:x'/></item>\
                    </publish>",
        );
        assert!(matches!(parse(true, &p), Ok(Request::Publish { .. })));
    }

    // ---- §7.2 retract

    #[test]
    fn xep0060_7_2_1_retract() {
        let p = ps(
            "<retract node='princely_musings'><item id='ae890ac52d0df67ed7cfdf51b644e901'/>\
                    </retract>",
        );
        assert_eq!(
            parse(true, &p).unwrap(),
            Request::Retract {
                node: "princely_musings",
                id: "ae890ac52d0df67ed7cfdf51b644e901",
                notify: false
            }
        );
    }

    #[test]
    fn xep0060_7_2_2_1_notify_is_a_boolean() {
        for (v, notify) in [("true", true), ("1", true), ("false", false), ("0", false)] {
            let p = ps(&format!(
                "<retract node='n' notify='{v}'><item id='i'/></retract>"
            ));
            assert_eq!(
                parse(true, &p).unwrap(),
                Request::Retract {
                    node: "n",
                    id: "i",
                    notify
                },
                "{v}"
            );
        }
        for v in ["yes", "TRUE", "", "2"] {
            let p = ps(&format!(
                "<retract node='n' notify='{v}'><item id='i'/></retract>"
            ));
            assert_eq!(refusal(parse(true, &p)), (BAD, None, None), "{v:?}");
        }
    }

    #[test]
    fn xep0060_7_2_3_3_retract_without_node_is_nodeid_required() {
        for retract in ["<retract>", "<retract node=''>"] {
            let p = ps(&format!("{retract}<item id='i'/></retract>"));
            assert_eq!(
                refusal(parse(true, &p)),
                (BAD, Some("nodeid-required"), None)
            );
        }
    }

    #[test]
    fn xep0060_7_2_3_4_retract_without_item_id_is_item_required() {
        for body in [
            "<retract node='n'/>",
            "<retract node='n'><item/></retract>",
            "<retract node='n'><item id=''/></retract>",
        ] {
            assert_eq!(
                refusal(parse(true, &ps(body))),
                (BAD, Some("item-required"), None),
                "{body}"
            );
        }
    }

    #[test]
    fn xep0060_7_2_1_retract_names_one_item() {
        let p = ps("<retract node='n'><item id='a'/><item id='b'/></retract>");
        assert_eq!(refusal(parse(true, &p)), (BAD, None, None));
    }

    // ---- §8.1 create

    #[test]
    fn xep0060_8_1_2_create() {
        assert_eq!(
            parse(true, &ps("<create node='princely_musings'/>")).unwrap(),
            Request::Create {
                node: "princely_musings",
                config: None
            }
        );
        // An empty <configure/> configures nothing.
        assert_eq!(
            parse(true, &ps("<create node='n'/><configure/>")).unwrap(),
            Request::Create {
                node: "n",
                config: None
            }
        );
    }

    #[test]
    fn xep0060_8_1_3_create_and_configure() {
        let p = ps(
            "<create node='n'/><configure><x xmlns='jabber:x:data' type='submit'>\
                    <field var='pubsub#access_model'><value>whitelist</value></field>\
                    </x></configure>",
        );
        let Ok(Request::Create {
            node: "n",
            config: Some(form),
        }) = parse(true, &p)
        else {
            panic!("a create with a form")
        };
        assert!(form.is("x", dataform::NS));
    }

    #[test]
    fn xep0060_8_1_3_configure_must_follow_create_without_node() {
        for body in [
            "<configure/><create node='n'/>",
            "<configure/>",
            "<create node='n'/><configure node='n'/>",
            "<create node='n'/><publish-options/>",
        ] {
            assert_eq!(refusal(parse(true, &ps(body))), (BAD, None, None), "{body}");
        }
    }

    #[test]
    fn xep0060_8_1_1_instant_nodes_are_not_acceptable_nodeid_required() {
        for body in ["<create/>", "<create node=''/>"] {
            assert_eq!(
                refusal(parse(true, &ps(body))),
                (
                    StanzaCondition::NotAcceptable,
                    Some("nodeid-required"),
                    None
                ),
                "{body}"
            );
        }
    }

    // ---- §8.2 configure, §8.3 default, §8.4 delete, §8.5 purge

    #[test]
    fn xep0060_8_2_1_configure_get() {
        assert_eq!(
            parse(false, &owner("<configure node='princely_musings'/>")).unwrap(),
            Request::ConfigureGet {
                node: "princely_musings"
            }
        );
    }

    #[test]
    fn xep0060_8_2_4_configure_set() {
        for ty in ["submit", "cancel"] {
            let p = owner(&format!(
                "<configure node='n'><x xmlns='jabber:x:data' type='{ty}'/></configure>"
            ));
            let Ok(Request::ConfigureSet { node: "n", form }) = parse(true, &p) else {
                panic!("a configure set")
            };
            assert_eq!(form.attr("type"), Some(ty));
        }
        assert_eq!(
            refusal(parse(true, &owner("<configure node='n'/>"))),
            (BAD, None, None)
        );
    }

    #[test]
    fn xep0060_8_2_3_3_configure_without_node_is_nodeid_required() {
        for (set, body) in [
            (false, "<configure/>"),
            (
                true,
                "<configure><x xmlns='jabber:x:data' type='submit'/></configure>",
            ),
        ] {
            assert_eq!(
                refusal(parse(set, &owner(body))),
                (BAD, Some("nodeid-required"), None),
                "{body}"
            );
        }
    }

    #[test]
    fn xep0060_8_3_default() {
        assert_eq!(
            parse(false, &owner("<default/>")).unwrap(),
            Request::DefaultGet
        );
        assert_eq!(
            parse(false, &owner("<default type='leaf'/>")).unwrap(),
            Request::DefaultGet
        );
        assert_eq!(
            refusal(parse(false, &owner("<default type='collection'/>"))),
            (FNI, Some("unsupported"), Some("collections"))
        );
    }

    #[test]
    fn xep0060_8_4_1_delete() {
        assert_eq!(
            parse(true, &owner("<delete node='princely_musings'/>")).unwrap(),
            Request::Delete {
                node: "princely_musings"
            }
        );
        let redirect = owner("<delete node='n'><redirect uri='xmpp:h@d?;node=blog'/></delete>");
        assert_eq!(
            parse(true, &redirect).unwrap(),
            Request::Delete { node: "n" }
        );
        assert_eq!(
            refusal(parse(true, &owner("<delete/>"))),
            (BAD, Some("nodeid-required"), None)
        );
    }

    #[test]
    fn xep0060_8_5_1_purge() {
        assert_eq!(
            parse(true, &owner("<purge node='princely_musings'/>")).unwrap(),
            Request::Purge {
                node: "princely_musings"
            }
        );
        assert_eq!(
            refusal(parse(true, &owner("<purge node=''/>"))),
            (BAD, Some("nodeid-required"), None)
        );
    }

    #[test]
    fn xep0060_8_8_owner_subscriptions() {
        assert_eq!(
            parse(false, &owner("<subscriptions node='n'/>")).unwrap(),
            Request::OwnerSubscriptionsGet { node: "n" }
        );
        assert_eq!(
            refusal(parse(false, &owner("<subscriptions/>"))),
            (BAD, Some("nodeid-required"), None)
        );
        let set = owner(
            "<subscriptions node='n'><subscription jid='a@b' subscription='none'/>\
             <subscription jid='c@d/e' subscription='subscribed'/>\
             <subscription jid='a@b' subscription='subscribed'/></subscriptions>",
        );
        assert_eq!(
            parse(true, &set).unwrap(),
            Request::OwnerSubscriptionsSet {
                node: "n",
                changes: vec![("c@d/e", true), ("a@b", true)]
            }
        );
        for (bad, app) in [
            ("<subscription subscription='none'/>", Some("jid-required")),
            (
                "<subscription jid='@' subscription='none'/>",
                Some("invalid-jid"),
            ),
            ("<subscription jid='a@b' subscription='maybe'/>", None),
            ("<subscription jid='a@b'/>", None),
            ("<item jid='a@b' subscription='none'/>", None),
            ("", None),
        ] {
            let el = owner(&format!("<subscriptions node='n'>{bad}</subscriptions>"));
            assert_eq!(refusal(parse(true, &el)), (BAD, app, None), "{bad}");
        }
        let pending = owner(
            "<subscriptions node='n'><subscription jid='a@b' subscription='pending'/>\
             </subscriptions>",
        );
        assert_eq!(
            refusal(parse(true, &pending)),
            (FNI, Some("unsupported"), Some("subscription-options"))
        );
        let many: String = (0..=MAX_REQUESTED_IDS)
            .map(|i| format!("<subscription jid='u{i}@b' subscription='none'/>"))
            .collect();
        let el = owner(&format!("<subscriptions node='n'>{many}</subscriptions>"));
        assert_eq!(refusal(parse(true, &el)).0, StanzaCondition::NotAcceptable);
        assert_eq!(
            owner_subscriptions_result("n", &["a@b", "c@d/e"]).to_string_in("jabber:client"),
            format!(
                "<pubsub xmlns='{NS_PUBSUB_OWNER}'><subscriptions node='n'>\
                 <subscription jid='a@b' subscription='subscribed'/>\
                 <subscription jid='c@d/e' subscription='subscribed'/></subscriptions></pubsub>"
            )
        );
    }

    #[test]
    fn xep0060_8_9_owner_affiliations_are_unsupported() {
        assert_eq!(
            refusal(parse(true, &owner("<affiliations node='n'/>"))),
            (FNI, Some("unsupported"), Some("modify-affiliations"))
        );
    }

    // ---- the request as a whole

    #[test]
    fn rfc6120_8_3_3_3_unknown_element_is_feature_not_implemented() {
        assert_eq!(
            refusal(parse(true, &ps("<frobnicate/>"))),
            (FNI, None, None)
        );
        assert_eq!(
            refusal(parse(true, &owner("<publish node='n'/>"))),
            (FNI, None, None)
        );
    }

    #[test]
    fn verb_in_the_wrong_iq_type_is_bad_request() {
        let cases = [
            (
                false,
                ps("<publish node='n'><item><x xmlns='urn:x'/></item></publish>"),
            ),
            (false, ps("<retract node='n'><item id='i'/></retract>")),
            (false, ps("<create node='n'/>")),
            (false, ps("<subscribe node='n' jid='a@b'/>")),
            (false, ps("<unsubscribe node='n' jid='a@b'/>")),
            (true, ps("<items node='n'/>")),
            (true, owner("<default/>")),
            (false, owner("<delete node='n'/>")),
            (false, owner("<purge node='n'/>")),
        ];
        for (set, p) in &cases {
            assert_eq!(refusal(parse(*set, p)), (BAD, None, None), "{p:?}");
        }
        // The IQ type is checked before the attributes.
        assert_eq!(refusal(parse(false, &ps("<publish/>"))), (BAD, None, None));
    }

    #[test]
    fn several_or_no_requests_are_bad_request() {
        for p in [
            ps("<items node='n'/><items node='m'/>"),
            ps("<retract node='n'><item id='i'/></retract><create node='n'/>"),
            ps("<create node='n'/><configure/><configure/>"),
            owner("<delete node='n'/><purge node='n'/>"),
            ps(""),
            ps("<set xmlns='http://jabber.org/protocol/rsm'/>"),
            el("<query xmlns='jabber:iq:private'/>"),
            el(&format!(
                "<notpubsub xmlns='{NS_PUBSUB}'><items node='n'/></notpubsub>"
            )),
        ] {
            assert_eq!(refusal(parse(true, &p)), (BAD, None, None), "{p:?}");
        }
    }

    #[test]
    fn foreign_children_are_ignored_xep0059_4() {
        let p = ps(
            "<set xmlns='http://jabber.org/protocol/rsm'/><create node='n'/>\
                    <x xmlns='urn:other'/>",
        );
        assert_eq!(
            parse(true, &p).unwrap(),
            Request::Create {
                node: "n",
                config: None
            }
        );
    }

    // ---- errors

    #[test]
    fn pubsub_error_to_the_wire() {
        let mut out = Vec::new();
        PubsubError::new(BAD, Some("invalid-jid"))
            .to_stanza_error()
            .write_element(false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <invalid-jid xmlns='http://jabber.org/protocol/pubsub#errors'/></error>"
        );

        let e = PubsubError::unsupported("publish");
        assert_eq!(
            e.app_element().unwrap().to_string_in("jabber:client"),
            "<unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='publish'/>"
        );
        let s = e.to_stanza_error();
        assert_eq!(s.condition, FNI);
        assert_eq!(s.app, Some(("unsupported", NS_PUBSUB_ERRORS)));
        assert_eq!(
            s.text.as_deref(),
            Some("unsupported pubsub feature: publish")
        );
        assert_eq!(
            e.to_string(),
            "feature-not-implemented (unsupported publish)"
        );

        let plain = PubsubError::new(StanzaCondition::ItemNotFound, None).with_text("no node");
        assert_eq!(plain.app_element(), None);
        assert_eq!(plain.to_stanza_error().app, None);
        assert_eq!(plain.to_stanza_error().text.as_deref(), Some("no node"));
        assert_eq!(plain.to_string(), "item-not-found: no node");
    }

    // ---- writers

    const AWKWARD: &str = "it's <a&b>";
    const AWKWARD_ESC: &str = "it&apos;s &lt;a&amp;b&gt;";

    #[test]
    fn xep0060_7_1_2_1_item_event() {
        let payload = serialize_payload(&el(
            "<tune xmlns='http://jabber.org/protocol/tune'><title>A &amp; B</title></tune>",
        ));
        assert_eq!(
            text(|o| write_item_event(
                o,
                "http://jabber.org/protocol/tune",
                "i1",
                None,
                Some(&payload)
            )),
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <items node='http://jabber.org/protocol/tune'><item id='i1'>\
             <tune xmlns='http://jabber.org/protocol/tune'><title>A &amp; B</title></tune>\
             </item></items></event>"
        );
    }

    #[test]
    fn xep0060_7_1_2_2_and_7_1_2_3_item_event_without_payload_with_publisher() {
        assert_eq!(
            text(|o| write_item_event(o, "n", "ae89", Some("hamlet@denmark.lit"), None)),
            "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'>\
             <item id='ae89' publisher='hamlet@denmark.lit'/></items></event>"
        );
    }

    #[test]
    fn xep0060_7_2_2_1_retract_event() {
        assert_eq!(
            text(|o| write_retract_event(o, "princely_musings", "ae89")),
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <items node='princely_musings'><retract id='ae89'/></items></event>"
        );
    }

    #[test]
    fn xep0060_8_4_2_delete_and_8_5_2_purge_events() {
        assert_eq!(
            text(|o| write_delete_event(o, "princely_musings")),
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <delete node='princely_musings'/></event>"
        );
        assert_eq!(
            text(|o| write_purge_event(o, "princely_musings")),
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <purge node='princely_musings'/></event>"
        );
    }

    #[test]
    fn writers_escape_attribute_values() {
        let e = format!("<event xmlns='{NS_PUBSUB_EVENT}'>");
        assert_eq!(
            text(|o| write_item_event(
                o,
                AWKWARD,
                AWKWARD,
                Some(AWKWARD),
                Some(b"<x xmlns='urn:x'/>")
            )),
            format!(
                "{e}<items node='{AWKWARD_ESC}'><item id='{AWKWARD_ESC}' \
                 publisher='{AWKWARD_ESC}'><x xmlns='urn:x'/></item></items></event>"
            )
        );
        assert_eq!(
            text(|o| write_retract_event(o, AWKWARD, AWKWARD)),
            format!("{e}<items node='{AWKWARD_ESC}'><retract id='{AWKWARD_ESC}'/></items></event>")
        );
        assert_eq!(
            text(|o| write_delete_event(o, AWKWARD)),
            format!("{e}<delete node='{AWKWARD_ESC}'/></event>")
        );
        assert_eq!(
            text(|o| write_purge_event(o, AWKWARD)),
            format!("{e}<purge node='{AWKWARD_ESC}'/></event>")
        );
        // Every event parses back to the values written.
        let mut out = Vec::new();
        write_item_event(&mut out, AWKWARD, AWKWARD, Some(AWKWARD), None);
        let back =
            xml::parse_element(&out, &StreamNs::new("jabber:client"), &Limits::default()).unwrap();
        let items = back.child("items", NS_PUBSUB_EVENT).unwrap();
        assert_eq!(items.attr("node"), Some(AWKWARD));
        let item = items.child("item", NS_PUBSUB_EVENT).unwrap();
        assert_eq!(
            (item.attr("id"), item.attr("publisher")),
            (Some(AWKWARD), Some(AWKWARD))
        );
    }

    #[test]
    fn xep0060_7_1_2_publish_result() {
        assert_eq!(
            publish_result("princely_musings", "ae89").to_string_in("jabber:client"),
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='princely_musings'><item id='ae89'/></publish></pubsub>"
        );
        assert_eq!(
            publish_result(AWKWARD, AWKWARD).to_string_in("jabber:client"),
            format!(
                "<pubsub xmlns='{NS_PUBSUB}'><publish node='{AWKWARD_ESC}'>\
                 <item id='{AWKWARD_ESC}'/></publish></pubsub>"
            )
        );
    }

    #[test]
    fn xep0060_6_1_2_and_6_2_2_subscription_results() {
        assert_eq!(
            subscription_result("princely_musings", "francisco@denmark.lit", true)
                .to_string_in("jabber:client"),
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <subscription node='princely_musings' jid='francisco@denmark.lit' \
             subscription='subscribed'/></pubsub>"
        );
        assert_eq!(
            subscription_result(AWKWARD, "a@b", false).to_string_in("jabber:client"),
            format!(
                "<pubsub xmlns='{NS_PUBSUB}'><subscription node='{AWKWARD_ESC}' jid='a@b' \
                 subscription='none'/></pubsub>"
            )
        );
    }

    #[test]
    fn xep0060_6_5_3_items_result_round_trip() {
        // What a publish stores is what the items result gives back.
        let p = ps(
            "<publish node='n'><item id='2'><entry xmlns='http://www.w3.org/2005/Atom' \
                    xmlns:p='urn:p' p:a='v' xml:lang='en'><title>x &lt; y</title>\
                    <link xmlns='urn:other' href='h'/></entry></item></publish>",
        );
        let Ok(Request::Publish { payload, .. }) = parse(true, &p) else {
            panic!("a publish")
        };
        let stored = serialize_payload(payload);
        let older = serialize_payload(&el("<tune xmlns='http://jabber.org/protocol/tune'/>"));
        let items: [(&str, Option<&str>, &[u8]); 3] = [
            ("2", Some("hamlet@denmark.lit"), &stored),
            ("1", None, &older),
            ("0", None, b""),
        ];
        let result = items_result(AWKWARD, &items, &Limits::default()).unwrap();
        let wire = result.to_string_in("jabber:client");
        assert_eq!(
            wire,
            format!(
                "<pubsub xmlns='{NS_PUBSUB}'><items node='{AWKWARD_ESC}'>\
                 <item id='2' publisher='hamlet@denmark.lit'>\
                 <entry xmlns='http://www.w3.org/2005/Atom' xmlns:ns0='urn:p' ns0:a='v' \
                 xml:lang='en'><title>x &lt; y</title><link xmlns='urn:other' href='h'/></entry>\
                 </item><item id='1'><tune xmlns='http://jabber.org/protocol/tune'/></item>\
                 <item id='0'/></items></pubsub>"
            )
        );
        // Through the crate's parser and back: the same tree, the payload equal to the one
        // published.
        let back = el(&wire);
        assert_eq!(back, result);
        let first = back
            .child("items", NS_PUBSUB)
            .and_then(|i| i.child("item", NS_PUBSUB))
            .and_then(|i| i.elements().next())
            .unwrap();
        assert_eq!(first, payload);
    }

    #[test]
    fn xep0060_6_5_9_12_empty_items_result() {
        assert_eq!(
            items_result("n", &[], &Limits::default())
                .unwrap()
                .to_string_in("jabber:client"),
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/></pubsub>"
        );
    }

    #[test]
    fn items_result_names_the_damaged_item() {
        let items: [(&str, Option<&str>, &[u8]); 2] = [
            ("good", None, b"<x xmlns='urn:x'/>"),
            ("bad", None, b"<x xmlns='urn:x'>"),
        ];
        let err = items_result("n", &items, &Limits::default()).unwrap_err();
        assert!(err.contains("'bad'"), "{err}");
    }
}
