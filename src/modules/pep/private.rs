//! XEP-0049 private XML storage (`jabber:iq:private`): XML a user keeps on the server for
//! itself, by namespace. Older clients keep their bookmarks (XEP-0048) here.
//!
//! One stored fragment per namespace: a set stores each namespace's children of `<query/>`
//! together (the XEP allows several elements of one namespace), replacing what that namespace
//! held; a get returns them as stored, or the requested element empty when nothing is
//! stored. Every write is durable before its result.

use std::rc::Rc;

use super::bookmarks::{self, NS_LEGACY};
use super::compat;
use super::service::Pep;
use crate::core::{storage_failure, Ctx, IqReply, IqRequest};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError};

/// The `jabber:iq:private` namespace.
pub const NS_PRIVATE: &str = "jabber:iq:private";

/// XEP-0049 §3: namespaces no one may store under ("namespaces beginning with 'jabber:' or
/// 'http://jabber.org/', as well as 'vcard-temp'"); the XEP makes refusing them optional,
/// with `not-acceptable`.
pub fn reserved(ns: &str) -> bool {
    ns.is_empty()
        || ns.starts_with("jabber:")
        || ns.starts_with("http://jabber.org/")
        || ns == "vcard-temp"
}

/// What a request's `<query/>` asks for, checked (XEP-0049 §2-3): a get names exactly one
/// namespace; a set stores one or more, grouped by namespace in the order they came.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Get the fragment of this namespace; the element is the requested (empty) one.
    Get(&'a Element),
    /// Store, per namespace, the serialized children of that namespace.
    Set(Vec<(&'a str, Vec<u8>)>),
}

/// Check a request's `<query/>`: `forbidden` for someone else's storage (§3, "Forbidden"),
/// `bad-request` for a get without exactly one child (§3 "Bad Format"; the XEP-0086 condition
/// of that name), `not-acceptable` for a set without a child (§2) or any reserved
/// namespace (§3).
pub fn parse<'a>(own: bool, get: bool, query: &'a Element) -> Result<Parsed<'a>, StanzaError> {
    if !own {
        return Err(StanzaError::with_text(
            StanzaCondition::Forbidden,
            "private XML belongs to its owner only",
        ));
    }
    let mut children = query.elements();
    if get {
        let (Some(one), None) = (children.next(), children.next()) else {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "a get names exactly one element",
            ));
        };
        if reserved(&one.ns) {
            return Err(reserved_error(&one.ns));
        }
        return Ok(Parsed::Get(one));
    }
    let mut groups: Vec<(&str, Vec<u8>)> = Vec::new();
    for child in query.elements() {
        if reserved(&child.ns) {
            return Err(reserved_error(&child.ns));
        }
        let at = match groups.iter().position(|(ns, _)| *ns == child.ns) {
            Some(at) => at,
            None => {
                groups.push((&child.ns, Vec::new()));
                groups.len() - 1
            }
        };
        child.write_to(&mut groups[at].1, "");
    }
    if groups.is_empty() {
        return Err(StanzaError::with_text(
            StanzaCondition::NotAcceptable,
            "nothing to store: the query has no child element",
        ));
    }
    Ok(Parsed::Set(groups))
}

fn reserved_error(ns: &str) -> StanzaError {
    StanzaError::with_text(
        StanzaCondition::NotAcceptable,
        format!("the namespace '{ns}' is reserved"),
    )
}

/// The bounds of one account's private storage.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest fragment (one namespace's serialized elements), bytes.
    pub max_bytes: usize,
    /// Most namespaces stored per account.
    pub max_namespaces: usize,
}

/// Answer a get.
pub fn get(ctx: &Ctx, req: &IqRequest<'_>) -> IqReply {
    let wanted = match parse(req.own(), true, req.payload) {
        Ok(Parsed::Get(el)) => el,
        Ok(Parsed::Set(_)) => unreachable!("parse(get) returns Get"),
        Err(e) => return IqReply::Error(e),
    };
    let user = req.from.bare_str();
    let stored = match ctx.storage().private().get(user, &wanted.ns) {
        Ok(v) => v,
        Err(e) => return IqReply::Error(storage_failure("reading private XML", user, &e)),
    };
    let mut query = Element::new("query", super::private::NS_PRIVATE);
    match stored {
        Some(bytes) => {
            // What was stored is a run of elements: parse it inside a query wrapper.
            let mut wrapped = Vec::with_capacity(bytes.len() + 64);
            wrapped.extend_from_slice(b"<query xmlns='jabber:iq:private'>");
            wrapped.extend_from_slice(&bytes);
            wrapped.extend_from_slice(b"</query>");
            let limits = ctx.config().xml_limits();
            match xml::parse_element(&wrapped, &StreamNs::new(NS_PRIVATE), &limits) {
                Ok(parsed) => query = parsed,
                Err(e) => {
                    tracing::warn!(user, error = %e, "stored private XML does not parse");
                    return IqReply::Error(StanzaError::with_text(
                        StanzaCondition::InternalServerError,
                        "stored private XML is damaged",
                    ));
                }
            }
        }
        // §2: nothing stored: the requested element, empty.
        None => query.push_child(Element::new(&wanted.name, &wanted.ns)),
    }
    IqReply::Result(Some(query))
}

/// Answer a set: durable before the result; all namespaces of one set are stored in one
/// transaction (all or none).
///
/// A set of XEP-0048 bookmarks (`storage:bookmarks`) also updates the XEP-0402 node and the
/// XEP-0048 PEP node in the same transaction (`compat`; XEP-0402 §6.3.2: only the changed
/// items are published, the removed ones retracted), and the owner's resources that want them
/// are notified.
pub fn set(ctx: &Ctx, req: &IqRequest<'_>, bounds: Bounds, pep: &Rc<Pep>) -> IqReply {
    let groups = match parse(req.own(), false, req.payload) {
        Ok(Parsed::Set(groups)) => groups,
        Ok(Parsed::Get(_)) => unreachable!("parse(set) returns Set"),
        Err(e) => return IqReply::Error(e),
    };
    if let Some((ns, _)) = groups.iter().find(|(_, b)| b.len() > bounds.max_bytes) {
        return IqReply::Error(StanzaError::with_text(
            StanzaCondition::NotAcceptable,
            format!("the '{ns}' data is larger than {} bytes", bounds.max_bytes),
        ));
    }
    let owner = req.from.bare_str().to_string();
    let limits = ctx.config().xml_limits();
    // XEP-0402 §6.3: a legacy bookmarks list goes to the native node and the legacy PEP node
    // too, in the same transaction; which nodes exist or may be created is read first.
    let compat = match groups.iter().find(|(ns, _)| *ns == NS_LEGACY) {
        None => None,
        Some((_, bytes)) => {
            let Some(storage) = bookmarks::stored_legacy(bytes, &limits) else {
                // Not a <storage/> list: stored as sent, nothing to bridge.
                return store(ctx, req, groups, bounds, None, pep);
            };
            match compat::Plan::read(pep, ctx, &owner) {
                Ok(plan) => Some((plan, storage)),
                Err(e) => return IqReply::Error(e),
            }
        }
    };
    store(ctx, req, groups, bounds, compat, pep)
}

/// Writes the fragments (and bridges a bookmarks list, `compat`), durable before the result.
fn store(
    ctx: &Ctx,
    req: &IqRequest<'_>,
    groups: Vec<(&str, Vec<u8>)>,
    bounds: Bounds,
    compat: Option<(compat::Plan, Element)>,
    pep: &Rc<Pep>,
) -> IqReply {
    let owner = req.from.bare_str().to_string();
    let publisher = req.from.as_str().to_string();
    let groups: Vec<(String, Vec<u8>)> = groups
        .into_iter()
        .map(|(ns, b)| (ns.to_string(), b))
        .collect();
    let max = bounds.max_namespaces;
    let bridge = compat
        .as_ref()
        .map(|(plan, storage)| (plan.clone(), storage.clone()));
    let (user, by) = (owner.clone(), publisher.clone());
    let done = ctx.storage().submit(move |txn| {
        let fragments: Vec<(&str, &[u8])> = groups
            .iter()
            .map(|(ns, b)| (ns.as_str(), b.as_slice()))
            .collect();
        if !txn.put_private_within(&user, &fragments, max)? {
            return Ok(None);
        }
        match &bridge {
            Some((plan, storage)) => {
                let now = compat::unix_ms();
                compat::apply_legacy(txn, &user, plan, storage, false, &by, now).map(Some)
            }
            None => Ok(Some(compat::Changes::default())),
        }
    });
    let (pep, ctx) = (pep.clone(), ctx.clone());
    IqReply::Later(Box::pin(async move {
        match done.await {
            Ok(Some(changes)) => {
                if let Some((plan, _)) = &compat {
                    compat::notify(&pep, &ctx, &owner, plan, &changes, Some(&publisher));
                }
                IqReply::Result(None)
            }
            Ok(None) => IqReply::Error(StanzaError::with_text(
                StanzaCondition::ResourceConstraint,
                format!("at most {max} namespaces of private XML per account"),
            )),
            Err(e) => IqReply::Error(storage_failure("storing private XML", &owner, &e)),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Limits;

    fn el(text: &str) -> Element {
        xml::parse_element(
            text.as_bytes(),
            &StreamNs::new("jabber:client"),
            &Limits::default(),
        )
        .unwrap()
    }

    fn cond(r: Result<Parsed<'_>, StanzaError>) -> StanzaCondition {
        r.unwrap_err().condition
    }

    #[test]
    fn xep0049_3_someone_elses_storage_is_forbidden() {
        let q = el("<query xmlns='jabber:iq:private'><a xmlns='x:a'/></query>");
        assert_eq!(cond(parse(false, true, &q)), StanzaCondition::Forbidden);
        assert_eq!(cond(parse(false, false, &q)), StanzaCondition::Forbidden);
    }

    #[test]
    fn xep0049_3_a_get_names_exactly_one_element() {
        let none = el("<query xmlns='jabber:iq:private'/>");
        assert_eq!(cond(parse(true, true, &none)), StanzaCondition::BadRequest);
        let two = el("<query xmlns='jabber:iq:private'><a xmlns='x:a'/><b xmlns='x:b'/></query>");
        assert_eq!(cond(parse(true, true, &two)), StanzaCondition::BadRequest);
        let one = el("<query xmlns='jabber:iq:private'><a xmlns='x:a'/></query>");
        assert!(matches!(parse(true, true, &one), Ok(Parsed::Get(e)) if e.ns == "x:a"));
    }

    #[test]
    fn xep0049_2_a_set_without_a_child_is_not_acceptable() {
        let none = el("<query xmlns='jabber:iq:private'/>");
        assert_eq!(
            cond(parse(true, false, &none)),
            StanzaCondition::NotAcceptable
        );
    }

    #[test]
    fn xep0049_3_reserved_namespaces_are_not_acceptable() {
        for ns in [
            "jabber:client",
            "jabber:iq:private",
            "http://jabber.org/protocol/x",
            "vcard-temp",
        ] {
            let q = el(&format!(
                "<query xmlns='jabber:iq:private'><a xmlns='{ns}'/></query>"
            ));
            assert_eq!(
                cond(parse(true, true, &q)),
                StanzaCondition::NotAcceptable,
                "{ns}"
            );
            assert_eq!(
                cond(parse(true, false, &q)),
                StanzaCondition::NotAcceptable,
                "{ns}"
            );
        }
        // The default namespace of the query itself is reserved too.
        let q = el("<query xmlns='jabber:iq:private'><a/></query>");
        assert_eq!(cond(parse(true, false, &q)), StanzaCondition::NotAcceptable);
        assert!(!reserved("storage:bookmarks"));
        assert!(!reserved("exodus:prefs"));
    }

    #[test]
    fn xep0049_2_a_set_groups_children_by_namespace_in_order() {
        let q = el("<query xmlns='jabber:iq:private'><a xmlns='x:a'>1</a>\
            <b xmlns='x:b'/><a2 xmlns='x:a'>2</a2></query>");
        let Ok(Parsed::Set(groups)) = parse(true, false, &q) else {
            panic!("a set");
        };
        let groups: Vec<(&str, String)> = groups
            .iter()
            .map(|(ns, b)| (*ns, String::from_utf8(b.clone()).unwrap()))
            .collect();
        assert_eq!(
            groups,
            [
                (
                    "x:a",
                    "<a xmlns='x:a'>1</a><a2 xmlns='x:a'>2</a2>".to_string()
                ),
                ("x:b", "<b xmlns='x:b'/>".to_string()),
            ]
        );
    }
}
