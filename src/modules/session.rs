//! RFC 3921 §3 session establishment, kept for old clients: the `<session/>` IQ is accepted
//! and answered with an empty result, and never required (CORE-SESS-01..03). The stream
//! feature itself is written by the negotiator next to `<bind/>`.

use crate::config::Config;
use crate::core::{IqReply, Registry, Scope};
use crate::xmpp::ns;
use crate::xmpp::stanza::IqType;

/// Register the session handler.
pub fn register(r: &mut Registry, _config: &Config) {
    r.module("session");
    r.iq(
        Scope::Server,
        IqType::Set,
        ns::SESSION,
        "session",
        |_, _| IqReply::Result(None),
    );
}
