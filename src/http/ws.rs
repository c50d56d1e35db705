//! RFC 6455 WebSocket for RFC 7395 (XMPP over WebSocket): the opening handshake and the frame
//! codec, sans-I/O.
