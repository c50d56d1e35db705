//! XMPP over WebSocket (RFC 7395) as a framing of the client connection: what turns the
//! client's WebSocket messages into stream frames, and the stream the negotiator and session
//! write into WebSocket messages, so that `conn` drives the same negotiator, session, TLS and
//! shard hand-off as on the XMPP ports.
//!
//! In: each text message holds exactly one element (RFC 7395 §3.3.3): `<open/>` and
//! `<close/>` in the framing namespace stand for the stream header and close; anything else is
//! a stanza or nonza in `jabber:client`, framed by the same [`Framer`] as on TCP (opened on a
//! header-less stream, so its limits and well-formedness checks apply to every message).
//!
//! Out: what the connection queued (our stream header, elements, `</stream:stream>`) is cut at
//! element boundaries by a second framer and sent one element per text message (§3.3.3): the
//! header as `<open/>`, the close tag as `<close/>`, `stream:`-prefixed elements with their
//! namespace declared (§3.3.3: each message is namespace-complete).

use tungstenite::protocol::frame::coding::CloseCode;

use crate::core::sessions::{give_buffer, take_buffer};
use crate::http::ws::{self as wsp, Decoder};
use crate::xml::{self, Frame, Framer, Limits, StreamHeader, StreamNs};
use crate::xmpp::error::{StreamCondition, StreamError};
use crate::xmpp::ns;

/// The framing namespace of `<open/>` and `<close/>` (RFC 7395 §3.3.1).
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Framed output waiting for the socket beyond this is not added to (the connection's send
/// queue keeps the rest, under its own bound).
const OUT_HIGH: usize = 64 * 1024;

/// The WebSocket side of one client connection.
pub struct WsLink {
    /// Client frames.
    pub decoder: Decoder,
    /// Raw bytes received and not yet decoded (an incomplete frame, or frames behind a job).
    pub input: Vec<u8>,
    /// Frames the element of each message.
    pub inframer: Framer,
    /// Cuts the connection's output at element boundaries.
    outframer: Framer,
    /// WebSocket frames ready for the socket, from `out_pos` on.
    pub out: Vec<u8>,
    /// What of `out` was written.
    pub out_pos: usize,
    /// A Close frame went out: nothing more is sent.
    pub closed: bool,
}

/// One client message, classified.
pub enum Message<'a> {
    /// `<open/>`: the stream header it stands for.
    Open(StreamHeader),
    /// `<close/>`.
    Close,
    /// A stanza or nonza: its bytes.
    Element(&'a [u8]),
}

impl WsLink {
    /// A link whose messages may be as large as `limits` allow.
    pub fn new(limits: Limits) -> WsLink {
        WsLink {
            decoder: Decoder::new(message_limits(&limits)),
            input: Vec::new(),
            inframer: Framer::open_with(client_ns(), limits),
            // Our own output was checked when it came in or is ours: only framed here, so
            // no bound of the client's applies to it.
            outframer: Framer::new(Limits {
                max_stanza_bytes: usize::MAX,
                max_depth: 4096,
                max_attrs: 1 << 16,
            }),
            out: Vec::new(),
            out_pos: 0,
            closed: false,
        }
    }

    /// Holds messages to `limits` from the next frame on (the larger limit after
    /// authentication).
    pub fn set_limits(&mut self, limits: Limits) {
        self.decoder.set_limits(message_limits(&limits));
    }

    /// Classifies one text message (with the link's `inframer`) under the connection's current `limits`. A message that is
    /// not exactly one complete element is a `not-well-formed` stream error (§3.3.3).
    pub fn classify<'a>(
        inframer: &mut Framer,
        msg: &'a [u8],
        limits: &Limits,
    ) -> Result<Message<'a>, StreamError> {
        let start = msg.iter().take_while(|b| is_ws(**b)).count();
        let end = msg.len() - msg.iter().rev().take_while(|b| is_ws(**b)).count();
        let body = msg.get(start..end.max(start)).unwrap_or_default();
        let one_element = || {
            StreamError::with_text(
                StreamCondition::NotWellFormed,
                "a WebSocket message holds exactly one complete element (RFC 7395 §3.3.3)",
            )
        };
        if body.is_empty() {
            return Err(one_element());
        }
        // After a whole element the framer is at a boundary; anything else ends the stream.
        inframer.set_limits(*limits);
        let raw = match inframer.next(body) {
            Ok(Some((Frame::Element(raw), used))) if used == body.len() => raw,
            Ok(_) => return Err(one_element()),
            Err(e) => return Err(StreamError::from(&e)),
        };
        let is_framing = |name: &str| {
            // Cheap check first: only `<open` and `<close` can be framing elements.
            raw.strip_prefix(b"<")
                .and_then(|r| r.strip_prefix(name.as_bytes()))
                .is_some_and(|r| {
                    r.first()
                        .is_some_and(|b| is_ws(*b) || *b == b'/' || *b == b'>')
                })
        };
        if !(is_framing("open") || is_framing("close")) {
            return Ok(Message::Element(raw));
        }
        let el =
            xml::parse_element(raw, &client_ns(), limits).map_err(|e| StreamError::from(&e))?;
        if el.ns != NS_FRAMING {
            return Ok(Message::Element(raw));
        }
        match el.name.as_str() {
            "open" => Ok(Message::Open(StreamHeader {
                to: el.attr("to").map(str::to_string),
                from: el.attr("from").map(str::to_string),
                id: el.attr("id").map(str::to_string),
                version: el.attr("version").map(str::to_string),
                lang: el.attr("xml:lang").map(str::to_string),
                // Stanzas are in jabber:client, implicitly (§3.3.3).
                default_ns: Some(ns::CLIENT.to_string()),
                prefix: None,
                extra: Vec::new(),
            })),
            "close" => Ok(Message::Close),
            _ => Err(StreamError::with_text(
                StreamCondition::UnsupportedStanzaType,
                format!("unexpected <{}/> in {NS_FRAMING}", el.name),
            )),
        }
    }

    /// Frames what of `unsent` (the connection's queued stream output) forms complete units,
    /// one WebSocket text message each; returns how many bytes were taken. Takes nothing while
    /// more than [`OUT_HIGH`] framed bytes wait for the socket.
    pub fn frame_output(&mut self, unsent: &[u8]) -> usize {
        let mut used = 0;
        while self.pending() < OUT_HIGH && !self.closed {
            let rest = unsent.get(used..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            // Our own stream output restarts with a new header (after SASL): at a boundary,
            // a declaration or header starts a new stream for the output framer too.
            if rest.starts_with(b"<?xml") || rest.starts_with(b"<stream:stream") {
                self.outframer.reset();
            }
            match self.outframer.next(rest) {
                Ok(Some((frame, n))) => {
                    used += n;
                    self.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    // Our own output is well-formed, so this is a bug: end the WebSocket
                    // (1011) rather than send a message that is not one element.
                    tracing::error!(error = %e, "WebSocket output framing failed");
                    self.close(CloseCode::Error, "internal error");
                    used = unsent.len();
                    break;
                }
            }
        }
        used
    }

    fn push(&mut self, frame: Frame<'_>) {
        if self.out.capacity() == 0 {
            self.out = take_buffer();
        }
        match frame {
            Frame::StreamOpen(h) => {
                let mut open = Vec::with_capacity(160);
                open.extend_from_slice(b"<open xmlns='");
                open.extend_from_slice(NS_FRAMING.as_bytes());
                open.push(b'\'');
                for (name, value) in [
                    ("from", &h.from),
                    ("id", &h.id),
                    ("version", &h.version),
                    ("xml:lang", &h.lang),
                ] {
                    if let Some(v) = value {
                        open.push(b' ');
                        open.extend_from_slice(name.as_bytes());
                        open.extend_from_slice(b"='");
                        xml::escape_attr(v, &mut open);
                        open.push(b'\'');
                    }
                }
                open.extend_from_slice(b"/>");
                wsp::text_frame(&mut self.out, &open);
            }
            Frame::Element(raw) => {
                if let Some(rest) = raw.strip_prefix(b"<stream:") {
                    // `<stream:features>`, `<stream:error>`: declare the prefix (§3.3.3).
                    let name_len = rest
                        .iter()
                        .position(|b| is_ws(*b) || *b == b'/' || *b == b'>')
                        .unwrap_or(rest.len());
                    let decl = b" xmlns:stream='http://etherx.jabber.org/streams'";
                    let split = "<stream:".len() + name_len;
                    wsp::text_header(&mut self.out, raw.len() + decl.len());
                    self.out.extend_from_slice(&raw[..split]);
                    self.out.extend_from_slice(decl);
                    self.out.extend_from_slice(&raw[split..]);
                } else {
                    wsp::text_frame(&mut self.out, raw);
                }
            }
            // Keepalive whitespace is not a complete element (§3.4): pings do that job.
            Frame::Whitespace => {}
            Frame::StreamClose => {
                let close = format!("<close xmlns='{NS_FRAMING}'/>");
                wsp::text_frame(&mut self.out, close.as_bytes());
            }
        }
    }

    /// Queues `<close see-other-uri='URI'/>` (RFC 7395 §3.6.1): the client should reconnect
    /// there.
    pub fn redirect(&mut self, uri: &str) {
        if !self.closed {
            let mut close = format!("<close xmlns='{NS_FRAMING}' see-other-uri='").into_bytes();
            xml::escape_attr(uri, &mut close);
            close.extend_from_slice(b"'/>");
            if self.out.capacity() == 0 {
                self.out = take_buffer();
            }
            wsp::text_frame(&mut self.out, &close);
        }
    }

    /// Queues `<close/>` (RFC 7395 §3.6), unless the Close frame went out.
    pub fn close_stream(&mut self) {
        if !self.closed {
            self.push(Frame::StreamClose);
        }
    }

    /// Queues a Close frame (RFC 6455 §5.5.1); nothing is sent after it.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.out.capacity() == 0 {
            self.out = take_buffer();
        }
        if !self.closed {
            wsp::close_frame(&mut self.out, code, reason);
            self.closed = true;
        }
    }

    /// Takes `data`, raw bytes from the client, behind what is not decoded yet.
    pub fn receive(&mut self, data: &[u8]) {
        if self.input.capacity() == 0 {
            self.input = take_buffer();
        }
        self.input.extend_from_slice(data);
    }

    /// After decoding: an empty input buffer goes back to the shard's pool.
    pub fn release_input(&mut self) {
        if self.input.is_empty() {
            give_buffer(std::mem::take(&mut self.input));
        }
    }

    /// Queues a Pong for a Ping's payload (§5.5.3).
    pub fn pong(&mut self, payload: &[u8]) {
        if self.out.capacity() == 0 {
            self.out = take_buffer();
        }
        if !self.closed {
            wsp::pong_frame(&mut self.out, payload);
        }
    }

    /// Framed bytes not yet written.
    pub fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// `n` framed bytes were written.
    pub fn wrote(&mut self, n: usize) {
        self.out_pos += n;
        if self.out_pos >= self.out.len() {
            // All written: the buffer goes back to the shard's pool, so an idle connection
            // holds none.
            give_buffer(std::mem::take(&mut self.out));
            self.out_pos = 0;
        }
    }
}

/// A message is a stanza: the same bound for a frame and for the message.
fn message_limits(limits: &Limits) -> wsp::Limits {
    wsp::Limits {
        max_frame: limits.max_stanza_bytes,
        max_message: limits.max_stanza_bytes,
    }
}

/// The namespace context of a message: `jabber:client` by default, `stream:` declared.
pub(crate) fn client_ns() -> StreamNs {
    StreamNs::new(ns::CLIENT).with_prefix("stream", ns::STREAMS)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> WsLink {
        WsLink::new(Limits::default())
    }

    /// Decodes server frames (unmasked text) back to their payloads.
    fn messages(mut out: &[u8]) -> Vec<String> {
        let mut v = Vec::new();
        while !out.is_empty() {
            assert_eq!(out[0], 0x81, "a final text frame");
            let (len, hdr) = match out[1] {
                126 => (u16::from_be_bytes([out[2], out[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            v.push(String::from_utf8(out[hdr..hdr + len].to_vec()).unwrap());
            out = &out[hdr + len..];
        }
        v
    }

    #[test]
    fn rfc7395_3_3_output_one_element_per_message() {
        let mut l = link();
        let stream = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' \
            version='1.0' xml:lang='en'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
            </stream:features> <message to='a@b'><body>x</body></message>";
        let used = l.frame_output(stream);
        assert_eq!(used, stream.len());
        assert_eq!(
            messages(&l.out),
            [
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='abc' \
                 version='1.0' xml:lang='en'/>",
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind \
                 xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
                "<message to='a@b'><body>x</body></message>",
            ]
        );
        // A partial element stays queued until it is whole.
        let mut l2 = link();
        let cut = stream.len() - 10;
        let used = l2.frame_output(&stream[..cut]);
        assert!(used < cut);
        // The error and the close, then a restart with a new header.
        let mut l3 = link();
        let mut s = stream.to_vec();
        s.extend_from_slice(b"<stream:error><x/></stream:error></stream:stream>");
        assert_eq!(l3.frame_output(&s), s.len());
        let m = messages(&l3.out);
        assert_eq!(
            m[3],
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><x/></stream:error>"
        );
        assert_eq!(m[4], "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
        let mut l4 = link();
        let restart = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><?xml version='1.0'?>\
            <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
            id='def' from='localhost' version='1.0' xml:lang='en'>";
        l4.frame_output(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost'>");
        assert_eq!(l4.frame_output(restart), restart.len());
        let m = messages(&l4.out);
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[2].contains("id='def'"), "{m:?}");
    }

    #[test]
    fn rfc7395_3_3_3_input_classification() {
        let mut l = link();
        let limits = Limits::default();
        match WsLink::classify(
                &mut l.inframer,
                b" <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' xml:lang='de'/>\n",
                &limits,
            )
            .ok()
            .unwrap()
        {
            Message::Open(h) => {
                assert_eq!(h.to.as_deref(), Some("localhost"));
                assert_eq!(h.version.as_deref(), Some("1.0"));
                assert_eq!(h.lang.as_deref(), Some("de"));
                assert_eq!(h.default_ns.as_deref(), Some("jabber:client"));
            }
            _ => panic!("not an open"),
        }
        assert!(matches!(
            WsLink::classify(
                &mut l.inframer,
                b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
                &limits
            ),
            Ok(Message::Close)
        ));
        let msg = b"<message to='a@b'><body>hi</body></message>";
        assert!(
            matches!(WsLink::classify(&mut l.inframer, msg, &limits), Ok(Message::Element(r)) if r == msg)
        );
        // <open/> in another namespace is just an element.
        assert!(matches!(
            WsLink::classify(&mut l.inframer, b"<open xmlns='urn:x'/>", &limits),
            Ok(Message::Element(_))
        ));
        for bad in [
            &b"<message><body>hi</body>"[..],
            b"<a/><b/>",
            b"",
            b"   ",
            b"text",
            b"<a>x</b>",
        ] {
            let e = WsLink::classify(&mut link().inframer, bad, &limits)
                .err()
                .expect("refused");
            assert!(
                matches!(
                    e.condition,
                    StreamCondition::NotWellFormed | StreamCondition::BadFormat
                ),
                "{:?}: {e}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = Limits {
            max_stanza_bytes: 10_000,
            ..limits
        };
        let huge = format!("<message><body>{}</body></message>", "x".repeat(10_000));
        let e = WsLink::classify(&mut link().inframer, huge.as_bytes(), &big)
            .err()
            .unwrap();
        assert_eq!(e.condition, StreamCondition::PolicyViolation);
    }

    #[test]
    fn an_idle_link_holds_no_buffers() {
        let mut l = link();
        l.frame_output(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><presence/>");
        assert!(l.out.capacity() > 0);
        l.wrote(l.pending());
        assert_eq!(l.out.capacity(), 0, "written out: back to the pool");
        // A masked client frame holding <presence/>.
        let payload = b"<presence/>";
        let key = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        l.receive(&frame[..5]);
        l.release_input();
        assert!(l.input.capacity() > 0, "an incomplete frame is kept");
        l.receive(&frame[5..]);
        let d = l.decoder.decode(&mut l.input).unwrap();
        assert_eq!(d.event, Some(wsp::Event::Text("<presence/>")));
        let n = d.consumed;
        l.input.drain(..n);
        l.release_input();
        assert_eq!(l.input.capacity(), 0);
    }

    #[test]
    fn framed_output_is_bounded() {
        let mut l = link();
        l.frame_output(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        l.wrote(l.pending());
        let one = format!("<message><body>{}</body></message>", "y".repeat(1000));
        let many = one.repeat(200);
        let used = l.frame_output(many.as_bytes());
        assert!(used < many.len(), "stops at the high-water mark");
        assert!(l.pending() >= OUT_HIGH && l.pending() < OUT_HIGH + 2 * one.len());
        l.wrote(l.pending());
        assert_eq!(l.pending(), 0);
        let more = l.frame_output(&many.as_bytes()[used..]);
        assert!(more > 0);
    }
}
