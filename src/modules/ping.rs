//! XEP-0199: XMPP Ping — the server answers pings addressed to it. (Server-initiated pings
//! that find dead connections are the c2s sweeper's job: `--keepalive-interval`.)

use crate::config::Config;
use crate::core::{IqReply, Registry, Scope};
use crate::xmpp::ns;
use crate::xmpp::stanza::IqType;

/// Register the ping handler.
pub fn register(r: &mut Registry, _config: &Config) {
    r.module("ping");
    r.server_feature(ns::PING);
    r.iq(Scope::Server, IqType::Get, ns::PING, "ping", |_, _| {
        IqReply::Result(None)
    });
}
