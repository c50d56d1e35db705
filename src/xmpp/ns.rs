//! Namespaces: every XML namespace the server speaks, in one table.

/// RFC 6120 §4.8.1 stream namespace.
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// RFC 6120 §4.8.2 content namespace for client streams.
pub const CLIENT: &str = "jabber:client";
/// RFC 6120 §4.8.2 content namespace for server streams.
pub const SERVER: &str = "jabber:server";
/// XEP-0114 content namespace for external components connecting to the server.
pub const COMPONENT_ACCEPT: &str = "jabber:component:accept";
/// RFC 6120 §4.9.2 stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// RFC 6120 §8.3.2 stanza error conditions.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// RFC 6120 §5 STARTTLS.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// RFC 6120 §6 SASL.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// RFC 6120 §7 resource binding.
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// RFC 3921 §3 session establishment (kept as an optional no-op).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0440 SASL channel-binding type capability.
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// The predefined `xml` prefix namespace.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// XEP-0030 service discovery (info).
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 service discovery (items).
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0199 XMPP ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0092 software version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0078 non-SASL authentication.
pub const IQ_AUTH: &str = "jabber:iq:auth";
/// XEP-0078 §4 stream feature announcing non-SASL authentication.
pub const IQ_AUTH_FEATURE: &str = "http://jabber.org/features/iq-auth";
/// XEP-0203 delayed delivery.
pub const DELAY: &str = "urn:xmpp:delay";
