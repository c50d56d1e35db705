//! HTTP transports (issue 13): one HTTP/1.1 listener per shard that carries XMPP over
//! WebSocket (RFC 7395) and BOSH (XEP-0124/0206), XEP-0156 discovery, and CORS.

pub mod ws;
