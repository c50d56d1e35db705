//! The gate as a table: every stanza shape the session can see, with the requirement each
//! row shows.

use super::*;
use crate::xmpp::stanza::{MessageType, PresenceType};

const IQ_SET: Result<StanzaType, ()> = Ok(StanzaType::Iq(IqType::Set));
const IQ_GET: Result<StanzaType, ()> = Ok(StanzaType::Iq(IqType::Get));
const IQ_RESULT: Result<StanzaType, ()> = Ok(StanzaType::Iq(IqType::Result));
const IQ_ERROR: Result<StanzaType, ()> = Ok(StanzaType::Iq(IqType::Error));
const CHAT: Result<StanzaType, ()> = Ok(StanzaType::Message(MessageType::Chat));
const MSG_ERROR: Result<StanzaType, ()> = Ok(StanzaType::Message(MessageType::Error));
const PRESENCE: Result<StanzaType, ()> = Ok(StanzaType::Presence(PresenceType::Available));

/// A well-formed, bound, routable stanza of type `ty`; rows change one thing.
fn ok(ty: Result<StanzaType, ()>) -> GateInput {
    GateInput {
        bound: true,
        ty,
        has_id: true,
        children: 1,
        bind_child: false,
        from: Claim::Absent,
        to: Claim::Valid,
    }
}

#[test]
fn session_gate_table() {
    let not_bound = Gate::Close(StreamCondition::NotAuthorized, "bind a resource first");
    let invalid_from = Gate::Close(
        StreamCondition::InvalidFrom,
        "from does not match the bound JID",
    );
    let one_payload = Gate::Reply(
        StanzaCondition::BadRequest,
        "an IQ request carries exactly one payload",
    );
    #[rustfmt::skip]
    let rows: Vec<(&str, GateInput, Gate)> = vec![
        // CORE-STREAM-15 / CORE-BIND-01: before binding, only a bind.
        ("bind first", GateInput { bound: false, bind_child: true, ..ok(IQ_SET) }, Gate::Bind),
        ("bind as get", GateInput { bound: false, bind_child: true, ..ok(IQ_GET) }, not_bound),
        ("message before bind", GateInput { bound: false, ..ok(CHAT) }, not_bound),
        ("presence before bind", GateInput { bound: false, ..ok(PRESENCE) }, not_bound),
        ("bad type before bind", GateInput { bound: false, ..ok(Err(())) }, not_bound),
        // CORE-BIND-10
        ("second bind", GateInput { bind_child: true, ..ok(IQ_SET) },
            Gate::Reply(StanzaCondition::NotAllowed, "a resource is already bound")),
        // CORE-STANZA-06, IM-PRES-12
        ("undefined type", ok(Err(())), Gate::Reply(StanzaCondition::BadRequest, "unknown type")),
        ("request without id", GateInput { has_id: false, ..ok(IQ_GET) },
            Gate::Reply(StanzaCondition::BadRequest, "missing id")),
        ("result without id", GateInput { has_id: false, ..ok(IQ_RESULT) }, Gate::Drop),
        ("error without id", GateInput { has_id: false, ..ok(IQ_ERROR) }, Gate::Drop),
        ("message without id", GateInput { has_id: false, ..ok(CHAT) }, Gate::Route),
        // CORE-STANZA-05
        ("get without payload", GateInput { children: 0, ..ok(IQ_GET) }, one_payload),
        ("set with two payloads", GateInput { children: 2, ..ok(IQ_SET) }, one_payload),
        ("result without payload", GateInput { children: 0, ..ok(IQ_RESULT) }, Gate::Route),
        ("result with two", GateInput { children: 2, ..ok(IQ_RESULT) }, Gate::Route),
        ("message with many", GateInput { children: 5, ..ok(CHAT) }, Gate::Route),
        // CORE-STANZA-01/02
        ("own from", GateInput { from: Claim::Valid, ..ok(CHAT) }, Gate::Route),
        ("other from", GateInput { from: Claim::Invalid, ..ok(CHAT) }, invalid_from),
        ("other from on an error", GateInput { from: Claim::Invalid, ..ok(MSG_ERROR) },
            invalid_from),
        // CORE-STANZA-11; never an error to an error (CORE-STANZA-09)
        ("malformed to", GateInput { to: Claim::Invalid, ..ok(CHAT) },
            Gate::Reply(StanzaCondition::JidMalformed, "")),
        ("malformed to on an error", GateInput { to: Claim::Invalid, ..ok(MSG_ERROR) },
            Gate::Drop),
        ("malformed to on an IQ", GateInput { to: Claim::Invalid, ..ok(IQ_GET) },
            Gate::Reply(StanzaCondition::JidMalformed, "")),
        // CORE-STANZA-14 (the router addresses it), §10.3.3
        ("no to", GateInput { to: Claim::Absent, ..ok(CHAT) }, Gate::Route),
        ("iq without to", GateInput { to: Claim::Absent, ..ok(IQ_GET) }, Gate::Route),
        ("presence", ok(PRESENCE), Gate::Route),
    ];
    for (what, input, want) in rows {
        assert_eq!(gate(input), want, "{what}: {input:?}");
    }
}

#[test]
fn gate_checks_apply_in_order() {
    // An undefined type is reported before a missing id or a bad `from`.
    let g = GateInput {
        has_id: false,
        from: Claim::Invalid,
        ..ok(Err(()))
    };
    assert_eq!(
        gate(g),
        Gate::Reply(StanzaCondition::BadRequest, "unknown type")
    );
    // A bad `from` closes the stream before a malformed `to` is answered.
    let g = GateInput {
        from: Claim::Invalid,
        to: Claim::Invalid,
        ..ok(CHAT)
    };
    assert!(matches!(
        gate(g),
        Gate::Close(StreamCondition::InvalidFrom, _)
    ));
}
