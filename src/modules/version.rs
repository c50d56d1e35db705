//! XEP-0092: Software Version of the server (name and version; the OS is not disclosed).

use crate::config::Config;
use crate::core::{IqReply, Registry, Scope};
use crate::xml::Element;
use crate::xmpp::ns;
use crate::xmpp::stanza::IqType;

/// Register the version handler.
pub fn register(r: &mut Registry, _config: &Config) {
    r.module("version");
    r.server_feature(ns::VERSION);
    r.iq(Scope::Server, IqType::Get, ns::VERSION, "query", |_, _| {
        IqReply::Result(Some(
            Element::new("query", ns::VERSION)
                .with_child(Element::new("name", ns::VERSION).with_text("xmppd"))
                .with_child(
                    Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")),
                ),
        ))
    });
}
