//! RFC 6455 WebSocket for RFC 7395 (XMPP over WebSocket): the opening handshake and the frame
//! codec, sans-I/O.
//!
//! [`accept`] checks a client's opening handshake (RFC 6455 §4.2.1, RFC 7395 §3.1) and
//! [`Accepted::write_head`] writes the `101` answer. After it, a transport feeds the bytes it
//! reads to a [`Decoder`] (client frames: always masked, text messages only) and writes what the
//! `*_frame` functions append (server frames: never masked). Neither side does I/O.
//!
//! What a peer can make us buffer is bounded: the caller's read buffer never needs more than
//! [`Decoder::max_buffered`] bytes (one frame header and one data frame, unmasked in place), and
//! the decoder itself holds at most [`Limits::max_message`] bytes of a fragmented message.
//! Every peer error is a [`WsError`] that names the close code (RFC 6455 §7.4.1) to answer
//! with.
//!
//! Header parsing and the accept key come from `tungstenite`; the decoder, which is on the hot
//! path, is ours.

use std::io::Cursor;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The WebSocket subprotocol RFC 7395 §3.1 requires (`Sec-WebSocket-Protocol: xmpp`).
pub const SUBPROTOCOL: &str = "xmpp";

/// The longest frame header: 2 bytes, a 64-bit length and the 4-byte mask (RFC 6455 §5.2).
pub const MAX_HEADER: usize = 14;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The only protocol version (RFC 6455 §4.1, §4.4).
const VERSION: &str = "13";

// ---------------------------------------------------------------------------------------------
// Opening handshake (RFC 6455 §4.2)

/// A client handshake the server accepts: what the `101` response needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted<'b> {
    /// `Sec-WebSocket-Accept`: the client's key hashed with the RFC 6455 GUID (§4.2.2).
    pub accept_key: String,
    /// The `Origin` header, trimmed, when it is text; not checked here (the caller's CORS
    /// policy decides).
    pub origin: Option<&'b str>,
}

/// Why a client handshake is refused: the status, a short text for the body and the log, and
/// header fields the response must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// A short text for the body and the log.
    pub reason: &'static str,
    /// Header fields the response needs (`Sec-WebSocket-Version` with a 426, RFC 6455 §4.4).
    pub headers: &'static [(&'static str, &'static str)],
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal {
        status,
        reason,
        headers: &[],
    }
}

/// Checks a client's opening handshake (RFC 6455 §4.2.1) for XMPP (RFC 7395 §3.1).
///
/// `http_minor_version` is `x` of `HTTP/1.x`. Header names are matched case-insensitively and a
/// list-valued header may be split over several fields. The `Origin` is not checked, only
/// returned. `Sec-WebSocket-Extensions` is ignored: no extension is ever negotiated.
pub fn accept<'b>(
    method: &str,
    http_minor_version: u8,
    headers: &[httparse::Header<'b>],
) -> Result<Accepted<'b>, Refusal> {
    if method != "GET" {
        return Err(Refusal {
            status: 405,
            reason: "a WebSocket handshake is a GET request",
            headers: &[("Allow", "GET")],
        });
    }
    if http_minor_version < 1 {
        return Err(refuse(400, "a WebSocket handshake needs HTTP/1.1"));
    }
    let mut hosts = fields(headers, "host");
    match (hosts.next(), hosts.next()) {
        (Some(h), None) if !h.trim_ascii().is_empty() => {}
        _ => return Err(refuse(400, "a request needs exactly one Host header")),
    }
    if !tokens(headers, "upgrade").any(|t| t.eq_ignore_ascii_case(b"websocket")) {
        return Err(Refusal {
            status: 426,
            reason: "this resource needs a WebSocket upgrade",
            headers: &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
        });
    }
    if !tokens(headers, "connection").any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
        return Err(refuse(400, "Connection must list \"Upgrade\""));
    }
    let mut keys = fields(headers, "sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.trim_ascii(),
        (None, _) => return Err(refuse(400, "Sec-WebSocket-Key is missing")),
        (Some(_), Some(_)) => return Err(refuse(400, "more than one Sec-WebSocket-Key")),
    };
    if STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(refuse(400, "Sec-WebSocket-Key is not 16 bytes in base64"));
    }
    let mut versions = tokens(headers, "sec-websocket-version");
    if (versions.next(), versions.next()) != (Some(VERSION.as_bytes()), None) {
        return Err(Refusal {
            status: 426,
            reason: "only WebSocket version 13 is supported",
            headers: &[("Sec-WebSocket-Version", VERSION)],
        });
    }
    // RFC 6455 §4.1: subprotocol names are compared case-sensitively.
    if !tokens(headers, "sec-websocket-protocol").any(|t| t == SUBPROTOCOL.as_bytes()) {
        return Err(refuse(
            400,
            "RFC 7395 requires the \"xmpp\" WebSocket subprotocol (Sec-WebSocket-Protocol)",
        ));
    }
    let origin = fields(headers, "origin")
        .next()
        .and_then(|o| std::str::from_utf8(o).ok())
        .map(str::trim);
    Ok(Accepted {
        accept_key: derive_accept_key(key),
        origin,
    })
}

impl Accepted<'_> {
    /// Appends the `101 Switching Protocols` head (RFC 6455 §4.2.2) selecting the `xmpp`
    /// subprotocol, with the `extra` fields (CORS, `Date`, ...) before the empty line.
    ///
    /// An `extra` field whose name or value holds CR or LF is left out: it would split the
    /// response.
    pub fn write_head(&self, out: &mut Vec<u8>, extra: &[(&str, &str)]) {
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: ",
        );
        out.extend_from_slice(self.accept_key.as_bytes());
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(SUBPROTOCOL.as_bytes());
        out.extend_from_slice(b"\r\n");
        let breaks = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
        for (name, value) in extra {
            if breaks(name) || breaks(value) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The values of every field named `name`.
fn fields<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The non-empty, trimmed elements of the comma-separated lists in every field named `name`
/// (RFC 9110 §5.6.1).
fn tokens<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    fields(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Decoder (client to server, RFC 6455 §5, §6.2)

/// What a client may make the decoder accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Payload bytes of one data frame (1009 beyond). Control frames have their own limit,
    /// [`MAX_CONTROL_PAYLOAD`].
    pub max_frame: usize,
    /// Payload bytes of one text message, all its fragments together (1009 beyond).
    pub max_message: usize,
}

/// One thing a client said, borrowed from the caller's buffer or the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message, unmasked and reassembled; valid UTF-8 (RFC 7395 §3.3: one
    /// message carries one XML element).
    Text(&'a str),
    /// A Ping (§5.5.2), to answer with a Pong carrying the same payload.
    Ping(&'a [u8]),
    /// A Pong (§5.5.3), solicited or not.
    Pong(&'a [u8]),
    /// A Close (§5.5.1), with its code and reason when it has a body; the decoder ignores what
    /// follows.
    Close(Option<CloseFrame<'a>>),
}

/// The body of a Close frame (RFC 6455 §5.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code, one that may appear on the wire (§7.4).
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: &'a str,
}

/// The result of [`Decoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Bytes at the front of the buffer that were used, fragments before `event` included; the
    /// caller drops them once done with `event`.
    pub consumed: usize,
    /// The event; `None` when more bytes are needed (a normal result).
    pub event: Option<Event<'a>>,
}

/// A client broke RFC 6455 or RFC 7395, or went over a [`Limits`] bound. Each variant names the
/// close code to answer with ([`WsError::close_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// An RSV bit is set, but no extension was negotiated (§5.2): 1002.
    ReservedBits,
    /// A reserved opcode, 0x3–0x7 or 0xB–0xF (§5.2): 1002.
    ReservedOpcode,
    /// A client frame without a mask (§5.1): 1002.
    Unmasked,
    /// A 64-bit payload length with the most significant bit set (§5.2): 1002.
    BadLength,
    /// A fragmented control frame or one with more than 125 bytes of payload (§5.5): 1002.
    BadControlFrame,
    /// A continuation frame with no message in progress (§5.4): 1002.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (§5.4): 1002.
    UnfinishedMessage,
    /// A binary message; RFC 7395 §3.3 uses text frames only: 1003.
    Binary,
    /// A text message that is not UTF-8 (§5.6, §8.1): 1007.
    InvalidUtf8,
    /// A data frame over [`Limits::max_frame`]: 1009.
    FrameTooBig,
    /// A message over [`Limits::max_message`]: 1009.
    MessageTooBig,
    /// A Close frame with a 1-byte payload, too short for a status code (§5.5.1): 1002.
    ShortClose,
    /// A Close frame with a status code that may not be sent (§7.4.1, §7.4.2): 1002.
    BadCloseCode(u16),
    /// A Close frame whose reason is not UTF-8 (§5.5.1): 1007.
    CloseReasonUtf8,
}

impl WsError {
    /// The status code of the Close frame to answer with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::ReservedBits
            | WsError::ReservedOpcode
            | WsError::Unmasked
            | WsError::BadLength
            | WsError::BadControlFrame
            | WsError::UnexpectedContinuation
            | WsError::UnfinishedMessage
            | WsError::ShortClose
            | WsError::BadCloseCode(_) => CloseCode::Protocol,
            WsError::Binary => CloseCode::Unsupported,
            WsError::InvalidUtf8 | WsError::CloseReasonUtf8 => CloseCode::Invalid,
            WsError::FrameTooBig | WsError::MessageTooBig => CloseCode::Size,
        }
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::ReservedBits => f.write_str("reserved bits set"),
            WsError::ReservedOpcode => f.write_str("reserved opcode"),
            WsError::Unmasked => f.write_str("unmasked client frame"),
            WsError::BadLength => f.write_str("payload length with the high bit set"),
            WsError::BadControlFrame => f.write_str("fragmented or oversized control frame"),
            WsError::UnexpectedContinuation => f.write_str("continuation without a message"),
            WsError::UnfinishedMessage => f.write_str("new message before the last one ended"),
            WsError::Binary => f.write_str("binary message (RFC 7395 uses text)"),
            WsError::InvalidUtf8 => f.write_str("text message is not UTF-8"),
            WsError::FrameTooBig => f.write_str("frame too large"),
            WsError::MessageTooBig => f.write_str("message too large"),
            WsError::ShortClose => f.write_str("close frame with a 1-byte payload"),
            WsError::BadCloseCode(c) => write!(f, "close code {c} may not be sent"),
            WsError::CloseReasonUtf8 => f.write_str("close reason is not UTF-8"),
        }
    }
}

impl std::error::Error for WsError {}

/// Resumable decoder of client frames. It owns no input buffer: see [`Decoder::decode`].
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    phase: Phase,
    /// The unmasked payload of the fragmented message being reassembled, or of the one just
    /// returned (cleared on the next call).
    message: Vec<u8>,
}

/// Where the client's frame sequence is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between messages: a text frame or a control frame.
    ExpectMessage,
    /// Inside a fragmented message: a continuation or a control frame (§5.4).
    ExpectContinuation,
    /// A Close arrived or the client broke the protocol: input is ignored.
    Closed,
}

/// One frame handled by [`Decoder::step`]; ranges index the slice it was given.
enum Step {
    /// The frame is not complete yet.
    NeedMore,
    /// A non-final fragment of this many bytes went into the message.
    Fragment(usize),
    /// A frame of this many bytes that makes an event.
    Frame(usize, Raw),
}

/// An event before its UTF-8 is checked.
enum Raw {
    /// An unfragmented text message, the payload at this range.
    Text(std::ops::Range<usize>),
    /// The end of a fragmented message, in `Decoder::message`.
    Message,
    Ping(std::ops::Range<usize>),
    Pong(std::ops::Range<usize>),
    Close(Option<(u16, std::ops::Range<usize>)>),
}

/// A reassembly buffer larger than this is freed after its message rather than kept.
const KEEP_MESSAGE_CAPACITY: usize = 4096;

impl Decoder {
    /// A decoder expecting a client's first frame.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            phase: Phase::ExpectMessage,
            message: Vec::new(),
        }
    }

    /// Applies `limits` from the next frame on (the larger stanza limit after authentication).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The most bytes the caller's buffer has to hold for the decoder to make progress: a
    /// header and the largest frame. A buffer this full always yields an event, a consumed
    /// fragment or an error.
    pub fn max_buffered(&self) -> usize {
        MAX_HEADER.saturating_add(self.limits.max_frame.max(MAX_CONTROL_PAYLOAD))
    }

    /// Decodes frames from the front of `buf` until one makes an event or more bytes are
    /// needed.
    ///
    /// `buf` holds all not-yet-consumed bytes. The decoder unmasks payloads in place, so the
    /// caller must drop the [`Decoded::consumed`] bytes (after using the event) before the next
    /// call, which passes what is left plus any new bytes. An unfragmented message is returned
    /// from `buf` itself, without a copy; a fragmented one is reassembled in the decoder.
    ///
    /// An error is final, and so is a Close: later calls consume and ignore all input.
    pub fn decode<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Decoded<'a>, WsError> {
        if self.phase != Phase::ExpectContinuation && !self.message.is_empty() {
            if self.message.capacity() > KEEP_MESSAGE_CAPACITY {
                self.message = Vec::new();
            } else {
                self.message.clear();
            }
        }
        let mut consumed = 0;
        let (len, raw) = loop {
            if self.phase == Phase::Closed {
                return Ok(Decoded {
                    consumed: buf.len(),
                    event: None,
                });
            }
            let rest = buf.get_mut(consumed..).unwrap_or_default();
            match self.step(rest) {
                Ok(Step::NeedMore) => {
                    return Ok(Decoded {
                        consumed,
                        event: None,
                    })
                }
                Ok(Step::Fragment(n)) => consumed += n,
                Ok(Step::Frame(n, raw)) => break (n, raw),
                Err(e) => {
                    self.phase = Phase::Closed;
                    return Err(e);
                }
            }
        };
        let frame: &'a [u8] = buf.get(consumed..consumed + len).unwrap_or_default();
        let Decoder { phase, message, .. } = self;
        let mut fail = |e| {
            *phase = Phase::Closed;
            Err(e)
        };
        let event = match raw {
            Raw::Text(r) => match std::str::from_utf8(frame.get(r).unwrap_or_default()) {
                Ok(s) => Event::Text(s),
                Err(_) => return fail(WsError::InvalidUtf8),
            },
            Raw::Message => match std::str::from_utf8(message) {
                Ok(s) => Event::Text(s),
                Err(_) => return fail(WsError::InvalidUtf8),
            },
            Raw::Ping(r) => Event::Ping(frame.get(r).unwrap_or_default()),
            Raw::Pong(r) => Event::Pong(frame.get(r).unwrap_or_default()),
            Raw::Close(None) => Event::Close(None),
            Raw::Close(Some((code, r))) => {
                match std::str::from_utf8(frame.get(r).unwrap_or_default()) {
                    Ok(reason) => Event::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason,
                    })),
                    Err(_) => return fail(WsError::CloseReasonUtf8),
                }
            }
        };
        Ok(Decoded {
            consumed: consumed + len,
            event: Some(event),
        })
    }

    /// Handles the frame at the start of `buf`, if it is complete.
    fn step(&mut self, buf: &mut [u8]) -> Result<Step, WsError> {
        let mut cursor = Cursor::new(&*buf);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Step::NeedMore),
            // The only error a parse from memory reports.
            Err(_) => return Err(WsError::ReservedOpcode),
        };
        let head_len = usize::try_from(cursor.position()).unwrap_or(MAX_HEADER);
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::ReservedBits);
        }
        let Some(mask) = header.mask else {
            return Err(WsError::Unmasked);
        };
        if len >> 63 != 0 {
            return Err(WsError::BadLength);
        }
        let in_message = self.phase == Phase::ExpectContinuation;
        match header.opcode {
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return Err(WsError::ReservedOpcode)
            }
            OpCode::Control(_) => {
                if !header.is_final || len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(WsError::BadControlFrame);
                }
            }
            OpCode::Data(Data::Continue) if !in_message => {
                return Err(WsError::UnexpectedContinuation)
            }
            OpCode::Data(Data::Text | Data::Binary) if in_message => {
                return Err(WsError::UnfinishedMessage)
            }
            OpCode::Data(Data::Binary) => return Err(WsError::Binary),
            OpCode::Data(_) => {
                if len > u64::try_from(self.limits.max_frame).unwrap_or(u64::MAX) {
                    return Err(WsError::FrameTooBig);
                }
                let so_far = u64::try_from(self.message.len()).unwrap_or(u64::MAX);
                if so_far.saturating_add(len)
                    > u64::try_from(self.limits.max_message).unwrap_or(u64::MAX)
                {
                    return Err(WsError::MessageTooBig);
                }
            }
        }
        // Within a limit that is a usize, or at most 125.
        let len = usize::try_from(len).map_err(|_| WsError::FrameTooBig)?;
        let end = head_len.checked_add(len).ok_or(WsError::FrameTooBig)?;
        let Some(payload) = buf.get_mut(head_len..end) else {
            return Ok(Step::NeedMore);
        };
        unmask(payload, mask);
        let range = head_len..end;
        let raw = match header.opcode {
            OpCode::Data(Data::Text) if header.is_final => Raw::Text(range),
            OpCode::Data(_) => {
                self.message.extend_from_slice(payload);
                if !header.is_final {
                    self.phase = Phase::ExpectContinuation;
                    return Ok(Step::Fragment(end));
                }
                self.phase = Phase::ExpectMessage;
                Raw::Message
            }
            OpCode::Control(Control::Ping) => Raw::Ping(range),
            OpCode::Control(Control::Pong) => Raw::Pong(range),
            OpCode::Control(_) => {
                self.phase = Phase::Closed;
                match *payload {
                    [] => Raw::Close(None),
                    [_] => return Err(WsError::ShortClose),
                    [hi, lo, ..] => {
                        let code = u16::from_be_bytes([hi, lo]);
                        if !close_code_allowed(code) {
                            return Err(WsError::BadCloseCode(code));
                        }
                        Raw::Close(Some((code, head_len + 2..end)))
                    }
                }
            }
        };
        Ok(Step::Frame(end, raw))
    }
}

/// Whether `code` may appear in a Close frame (RFC 6455 §7.4.1, §7.4.2 and the IANA registry):
/// not 1004 (reserved), 1005, 1006 and 1015 (local only), nor other unassigned codes below
/// 3000.
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `buf` with the masking key (RFC 6455 §5.3), eight bytes at a time.
fn unmask(buf: &mut [u8], key: [u8; 4]) {
    let [a, b, c, d] = key;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so at key byte 0.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder (server to client, unmasked, RFC 6455 §5.1)

/// Appends an unfragmented text frame carrying `payload`, which must be UTF-8 (one XML element,
/// RFC 7395 §3.3).
pub fn text_frame(out: &mut Vec<u8>, payload: &[u8]) {
    text_header(out, payload.len());
    out.extend_from_slice(payload);
}

/// Appends the header of an unfragmented text frame of `len` payload bytes, for a transport
/// that writes the payload itself.
pub fn text_header(out: &mut Vec<u8>, len: usize) {
    header(out, OpCode::Data(Data::Text), len);
}

/// Appends a Ping with `payload` cut to [`MAX_CONTROL_PAYLOAD`] bytes.
pub fn ping_frame(out: &mut Vec<u8>, payload: &[u8]) {
    control(out, Control::Ping, payload);
}

/// Appends a Pong with `payload` (a Ping's, §5.5.3) cut to [`MAX_CONTROL_PAYLOAD`] bytes.
pub fn pong_frame(out: &mut Vec<u8>, payload: &[u8]) {
    control(out, Control::Pong, payload);
}

/// Appends a Close with `code` and `reason`, the reason cut at a character boundary to fit the
/// 125 bytes of a control frame. `code` must be one that may be sent (not 1005, 1006 or 1015,
/// §7.4.1).
pub fn close_frame(out: &mut Vec<u8>, code: CloseCode, reason: &str) {
    let reason = truncate(reason, MAX_CONTROL_PAYLOAD - 2);
    header(out, OpCode::Control(Control::Close), 2 + reason.len());
    out.extend_from_slice(&u16::from(code).to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

fn control(out: &mut Vec<u8>, control: Control, payload: &[u8]) {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    header(out, OpCode::Control(control), payload.len());
    out.extend_from_slice(payload);
}

fn header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Writing to a Vec cannot fail; usize fits in u64 on every target.
    let _ = header.format(len as u64, out);
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // -----------------------------------------------------------------------------------------
    // Helpers, written independently of the code under test.

    fn h<'b>(name: &'static str, value: &'b str) -> httparse::Header<'b> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    /// The RFC 6455 §1.3 handshake, with the RFC 7395 subprotocol.
    fn good() -> Vec<httparse::Header<'static>> {
        vec![
            h("Host", "server.example.com"),
            h("Upgrade", "websocket"),
            h("Connection", "Upgrade"),
            h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            h("Origin", "http://example.com"),
            h("Sec-WebSocket-Protocol", "xmpp"),
            h("Sec-WebSocket-Version", "13"),
        ]
    }

    fn without(name: &str) -> Vec<httparse::Header<'static>> {
        good()
            .into_iter()
            .filter(|x| !x.name.eq_ignore_ascii_case(name))
            .collect()
    }

    fn with(name: &'static str, value: &'static str) -> Vec<httparse::Header<'static>> {
        let mut v = without(name);
        v.push(h(name, value));
        v
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: `first` is FIN/RSV/opcode, the payload masked with `key` byte by byte.
    fn frame_with(first: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![first];
        let m = if key.is_some() { 0x80 } else { 0 };
        let n = payload.len();
        if n < 126 {
            f.push(m | n as u8);
        } else if n <= 0xffff {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        match key {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        frame_with(first, payload, Some(KEY))
    }

    fn text(s: &str) -> Vec<u8> {
        frame(0x81, s.as_bytes())
    }

    fn close(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        frame(0x88, &p)
    }

    const LIMITS: Limits = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };

    /// An owned [`Event`] or the error that ended decoding.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Got {
        Text(String),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
        Err(WsError),
    }

    fn own(e: Event<'_>) -> Got {
        match e {
            Event::Text(s) => Got::Text(s.to_owned()),
            Event::Ping(p) => Got::Ping(p.to_vec()),
            Event::Pong(p) => Got::Pong(p.to_vec()),
            Event::Close(c) => Got::Close(c.map(|c| (u16::from(c.code), c.reason.to_owned()))),
        }
    }

    /// Feeds `input` in pieces ending at `cuts` (then the rest), as a transport would, and
    /// checks the buffering bound after every piece.
    fn run_cut(limits: Limits, input: &[u8], cuts: &[usize]) -> Vec<Got> {
        let mut dec = Decoder::new(limits);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[start..end]);
            start = end;
            loop {
                match dec.decode(&mut buf) {
                    Ok(Decoded {
                        consumed,
                        event: Some(e),
                    }) => {
                        got.push(own(e));
                        buf.drain(..consumed);
                    }
                    Ok(Decoded {
                        consumed,
                        event: None,
                    }) => {
                        buf.drain(..consumed);
                        break;
                    }
                    Err(e) => {
                        got.push(Got::Err(e));
                        // Further input is ignored.
                        let left = buf.len();
                        let d = dec.decode(&mut buf).expect("ignored after an error");
                        assert_eq!((d.consumed, d.event), (left, None));
                        return got;
                    }
                }
            }
            assert!(buf.len() < dec.max_buffered(), "{} buffered", buf.len());
            assert!(dec.message.len() <= limits.max_message);
        }
        got
    }

    fn run(input: &[u8]) -> Vec<Got> {
        run_cut(LIMITS, input, &[])
    }

    /// Decodes `input` whole, byte by byte and cut in two at every offset; all must agree.
    fn run_all(limits: Limits, input: &[u8]) -> Vec<Got> {
        let whole = run_cut(limits, input, &[]);
        let bytes: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run_cut(limits, input, &bytes), whole, "byte by byte");
        for i in 0..=input.len() {
            assert_eq!(run_cut(limits, input, &[i]), whole, "cut at {i}");
        }
        whole
    }

    fn err(input: &[u8]) -> WsError {
        match run(input).pop() {
            Some(Got::Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn t(s: &str) -> Got {
        Got::Text(s.to_owned())
    }

    // -----------------------------------------------------------------------------------------
    // Handshake

    #[test]
    fn rfc6455_1_3_key_is_accepted() {
        let headers = good();
        let a = accept("GET", 1, &headers).expect("accepted");
        assert_eq!(a.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(a.origin, Some("http://example.com"));
    }

    #[test]
    fn write_head_is_the_101_response() {
        let headers = good();
        let a = accept("GET", 1, &headers).unwrap();
        let mut out = b"x".to_vec();
        a.write_head(
            &mut out,
            &[
                ("Access-Control-Allow-Origin", "*"),
                ("Bad", "a\r\nInjected: 1"),
                ("Server", "xmppd"),
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "xHTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: xmpp\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Server: xmppd\r\n\
             \r\n"
        );
    }

    #[test]
    fn handshake_names_are_case_insensitive_and_lists_split_over_fields() {
        let headers = vec![
            h("HOST", "a"),
            h("upgrade", "h2c, WebSocket"),
            h("connection", "keep-alive"),
            h("CONNECTION", " UPGRADE "),
            h("sec-websocket-key", " dGhlIHNhbXBsZSBub25jZQ== "),
            h("SEC-WEBSOCKET-VERSION", " 13 "),
            h("Sec-WebSocket-Protocol", "chat, superchat"),
            h("sec-websocket-protocol", "foo ,xmpp"),
            h("Sec-WebSocket-Extensions", "permessage-deflate"),
        ];
        let a = accept("GET", 1, &headers).expect("accepted");
        assert_eq!(a.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(a.origin, None);
        // A later HTTP/1.x is fine too.
        assert!(accept("GET", 2, &good()).is_ok());
    }

    #[test]
    fn handshake_refusals() {
        let r = |m: &str, v: u8, hs: Vec<httparse::Header<'static>>| {
            accept(m, v, &hs).expect_err("refused")
        };
        let e = r("POST", 1, good());
        assert_eq!((e.status, e.headers), (405, &[("Allow", "GET")][..]));
        assert_eq!(r("get", 1, good()).status, 405);
        assert_eq!(r("GET", 0, good()).status, 400);
        assert_eq!(r("GET", 1, without("host")).status, 400);
        assert_eq!(r("GET", 1, with("Host", " ")).status, 400);
        let mut two_hosts = good();
        two_hosts.push(h("Host", "b"));
        assert_eq!(r("GET", 1, two_hosts).status, 400);

        for hs in [
            without("upgrade"),
            with("Upgrade", "h2c"),
            with("Upgrade", "websockets"),
        ] {
            let e = r("GET", 1, hs);
            assert_eq!(e.status, 426);
            assert!(e.headers.contains(&("Upgrade", "websocket")));
        }
        assert_eq!(r("GET", 1, without("connection")).status, 400);
        assert_eq!(r("GET", 1, with("Connection", "keep-alive")).status, 400);
        assert_eq!(r("GET", 1, with("Connection", "upgrades")).status, 400);

        assert_eq!(r("GET", 1, without("sec-websocket-key")).status, 400);
        for key in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",       // no padding
            "dGhlIHNhbXBsZSBub25jZQ=",      // short padding
            "dGhlIHNhbXBsZSBub25j",         // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ==AAAA", // 19 bytes
            "dGhlIHNhbXBsZSBub25jZR==",     // non-canonical trailing bits
            "dGhlIHNhbXBsZSBub25jZQ!=",
            "AAAAAAAAAAAAAAAAAAAAAAAA", // 18 bytes
        ] {
            let e = r("GET", 1, with("Sec-WebSocket-Key", key));
            assert_eq!(e.status, 400, "{key:?}");
        }
        let mut two_keys = good();
        two_keys.push(h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(r("GET", 1, two_keys).status, 400);

        for hs in [
            without("sec-websocket-version"),
            with("Sec-WebSocket-Version", "8"),
            with("Sec-WebSocket-Version", "13, 8"),
            with("Sec-WebSocket-Version", "14"),
        ] {
            let e = r("GET", 1, hs);
            assert_eq!(
                (e.status, e.headers),
                (426, &[("Sec-WebSocket-Version", "13")][..])
            );
        }

        for hs in [
            without("sec-websocket-protocol"),
            with("Sec-WebSocket-Protocol", "XMPP"),
            with("Sec-WebSocket-Protocol", "xmpp2, chat"),
            with("Sec-WebSocket-Protocol", ""),
        ] {
            let e = r("GET", 1, hs);
            assert_eq!(e.status, 400);
            assert!(e.reason.contains("RFC 7395") && e.reason.contains("xmpp"));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Decoder: RFC 6455 §5.7 examples

    #[test]
    fn rfc6455_5_7_single_masked_text_frame() {
        let input = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(text("Hello"), input);
        assert_eq!(run_all(LIMITS, &input), [t("Hello")]);
        // The same frame unmasked is refused from a client.
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(err(&unmasked), WsError::Unmasked);
        assert_eq!(err(&unmasked).close_code(), CloseCode::Protocol);
    }

    #[test]
    fn rfc6455_5_7_fragmented_text() {
        let mut input = frame(0x01, b"Hel");
        input.extend(frame(0x80, b"lo"));
        assert_eq!(run_all(LIMITS, &input), [t("Hello")]);
    }

    #[test]
    fn rfc6455_5_7_ping_and_masked_pong() {
        let mut input = frame(0x89, b"Hello");
        input.extend([
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(
            run_all(LIMITS, &input),
            [Got::Ping(b"Hello".to_vec()), Got::Pong(b"Hello".to_vec())]
        );
    }

    #[test]
    fn rfc6455_5_7_16_and_64_bit_lengths() {
        for n in [125, 126, 256, 0xffff, 0x10000, 100_000] {
            let payload: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let input = text(&payload);
            let expect_len = match n {
                0..=125 => 2,
                126..=0xffff => 4,
                _ => 10,
            } + 4
                + n;
            assert_eq!(input.len(), expect_len);
            assert_eq!(run(&input), [t(&payload)], "{n}");
        }
        // Byte by byte and every cut on the 256-byte example.
        let payload = "x".repeat(256);
        assert_eq!(run_all(LIMITS, &text(&payload)), [t(&payload)]);
    }

    // -----------------------------------------------------------------------------------------
    // Decoder: sequences

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut input = frame(0x01, b"<message>");
        input.extend(frame(0x89, b"p1"));
        input.extend(frame(0x00, b"<body>hi"));
        input.extend(frame(0x8a, b""));
        input.extend(frame(0x89, b""));
        input.extend(frame(0x80, b"</body></message>"));
        input.extend(text("<r/>"));
        assert_eq!(
            run_all(LIMITS, &input),
            [
                Got::Ping(b"p1".to_vec()),
                Got::Pong(vec![]),
                Got::Ping(vec![]),
                t("<message><body>hi</body></message>"),
                t("<r/>"),
            ]
        );
    }

    #[test]
    fn utf8_split_across_fragments() {
        // "é" (C3 A9) and "😀" (F0 9F 98 80) split at every inner boundary.
        let mut input = frame(0x01, b"a\xC3");
        input.extend(frame(0x00, b"\xA9\xF0"));
        input.extend(frame(0x00, b"\x9F"));
        input.extend(frame(0x00, b"\x98"));
        input.extend(frame(0x80, b"\x80z"));
        assert_eq!(run_all(LIMITS, &input), [t("aé😀z")]);
        // A code point left incomplete at the end of the message.
        let mut bad = frame(0x01, b"a");
        bad.extend(frame(0x80, b"\xC3"));
        assert_eq!(run_all(LIMITS, &bad), [Got::Err(WsError::InvalidUtf8)]);
    }

    #[test]
    fn a_rich_stream_decodes_the_same_however_it_is_cut() {
        let mut input = text("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a'/>");
        input.extend(frame(0x81, b""));
        input.extend(frame(0x01, "<m>ü".as_bytes()));
        input.extend(frame(0x89, b"keepalive"));
        input.extend(frame(0x80, b"</m>"));
        input.extend(frame_with(0x81, b"<iq/>", Some([0, 0, 0, 0])));
        input.extend(frame_with(0x81, b"<x/>", Some([0xff; 4])));
        input.extend(close(1000, b"bye"));
        // Ignored: after the Close, even garbage.
        input.extend(text("<late/>"));
        input.extend([0xff, 0xff, 0xff]);
        assert_eq!(
            run_all(LIMITS, &input),
            [
                t("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a'/>"),
                t(""),
                Got::Ping(b"keepalive".to_vec()),
                t("<m>ü</m>"),
                t("<iq/>"),
                t("<x/>"),
                Got::Close(Some((1000, "bye".to_owned()))),
            ]
        );
    }

    #[test]
    fn close_bodies() {
        assert_eq!(run(&frame(0x88, b"")), [Got::Close(None)]);
        assert_eq!(
            run(&close(1001, b"")),
            [Got::Close(Some((1001, String::new())))]
        );
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let input = close(code, "ça va".as_bytes());
            assert_eq!(
                run_all(LIMITS, &input),
                [Got::Close(Some((code, "ça va".to_owned())))],
                "{code}"
            );
        }
        let reason = "r".repeat(123);
        assert_eq!(
            run(&close(1000, reason.as_bytes())),
            [Got::Close(Some((1000, reason)))]
        );
    }

    #[test]
    fn a_multi_frame_read_returns_one_event_per_call() {
        let mut input = text("a");
        input.extend(text("bc"));
        let mut dec = Decoder::new(LIMITS);
        let mut buf = input.clone();
        let d = dec.decode(&mut buf).unwrap();
        assert_eq!((d.consumed, d.event), (7, Some(Event::Text("a"))));
        let d = dec.decode(&mut buf[7..]).unwrap();
        assert_eq!((d.consumed, d.event), (8, Some(Event::Text("bc"))));
        let d = dec.decode(&mut []).unwrap();
        assert_eq!((d.consumed, d.event), (0, None));
    }

    #[test]
    fn fragments_are_consumed_before_the_message_is_complete() {
        let mut input = frame(0x01, b"ab");
        input.extend(frame(0x00, b"cd"));
        input.extend(&frame(0x80, b"ef")[..3]);
        let mut dec = Decoder::new(LIMITS);
        let d = dec.decode(&mut input).unwrap();
        // Two fragments (8 bytes each) went into the decoder; the partial third stays.
        assert_eq!((d.consumed, d.event), (16, None));
    }

    #[test]
    fn a_large_reassembly_buffer_is_released() {
        let big = "x".repeat(KEEP_MESSAGE_CAPACITY + 1);
        let mut input = frame(0x01, big.as_bytes());
        input.extend(frame(0x80, b""));
        input.extend(text("y"));
        let mut dec = Decoder::new(LIMITS);
        let d = dec.decode(&mut input).unwrap();
        assert_eq!(d.event, Some(Event::Text(big.as_str())));
        let n = d.consumed;
        let d = dec.decode(&mut input[n..]).unwrap();
        assert_eq!(d.event, Some(Event::Text("y")));
        assert_eq!(dec.message.capacity(), 0);
    }

    // -----------------------------------------------------------------------------------------
    // Decoder: errors and their close codes

    #[test]
    fn each_error_has_its_close_code() {
        let mut in_message = frame(0x01, b"a");
        let cases: Vec<(Vec<u8>, WsError, CloseCode)> = vec![
            (
                frame(0xC1, b"a"),
                WsError::ReservedBits,
                CloseCode::Protocol,
            ),
            (
                frame(0xA1, b"a"),
                WsError::ReservedBits,
                CloseCode::Protocol,
            ),
            (
                frame(0x91, b"a"),
                WsError::ReservedBits,
                CloseCode::Protocol,
            ),
            (
                frame_with(0x81, b"a", None),
                WsError::Unmasked,
                CloseCode::Protocol,
            ),
            (
                frame_with(0x89, b"", None),
                WsError::Unmasked,
                CloseCode::Protocol,
            ),
            (
                frame(0x09, b"p"),
                WsError::BadControlFrame,
                CloseCode::Protocol,
            ),
            (
                frame(0x89, &[0; 126]),
                WsError::BadControlFrame,
                CloseCode::Protocol,
            ),
            (
                frame(0x88, &[3; 130]),
                WsError::BadControlFrame,
                CloseCode::Protocol,
            ),
            (
                frame(0x80, b"a"),
                WsError::UnexpectedContinuation,
                CloseCode::Protocol,
            ),
            (
                frame(0x82, b"\x00"),
                WsError::Binary,
                CloseCode::Unsupported,
            ),
            (
                frame(0x02, b"\x00"),
                WsError::Binary,
                CloseCode::Unsupported,
            ),
            (
                frame(0x81, b"\xff"),
                WsError::InvalidUtf8,
                CloseCode::Invalid,
            ),
            (
                frame(0x81, b"\xed\xa0\x80"), // a surrogate
                WsError::InvalidUtf8,
                CloseCode::Invalid,
            ),
            (
                frame(0x88, b"\x03"),
                WsError::ShortClose,
                CloseCode::Protocol,
            ),
            (
                close(1000, b"\xc3"),
                WsError::CloseReasonUtf8,
                CloseCode::Invalid,
            ),
        ];
        for op in (3..=7).chain(11..=15) {
            let e = err(&frame(0x80 | op, b""));
            assert_eq!(
                (e, e.close_code()),
                (WsError::ReservedOpcode, CloseCode::Protocol)
            );
        }
        for (input, want, code) in cases {
            let got = run_all(LIMITS, &input);
            assert_eq!(got, [Got::Err(want)], "{input:02x?}");
            assert_eq!(want.close_code(), code);
        }
        in_message.extend(frame(0x81, b"b"));
        assert_eq!(err(&in_message), WsError::UnfinishedMessage);
        let mut binary_in_message = frame(0x01, b"a");
        binary_in_message.extend(frame(0x82, b"b"));
        assert_eq!(err(&binary_in_message), WsError::UnfinishedMessage);
        assert_eq!(WsError::UnfinishedMessage.close_code(), CloseCode::Protocol);
    }

    #[test]
    fn invalid_close_codes_are_refused() {
        for code in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let e = err(&close(code, b""));
            assert_eq!(
                (e, e.close_code()),
                (WsError::BadCloseCode(code), CloseCode::Protocol)
            );
        }
    }

    #[test]
    fn an_error_ends_decoding_after_earlier_events() {
        let mut input = text("ok");
        input.extend(frame(0x82, b"bin"));
        input.extend(text("ignored"));
        assert_eq!(
            run_all(LIMITS, &input),
            [t("ok"), Got::Err(WsError::Binary)]
        );
    }

    #[test]
    fn limits_exactly_at_and_one_over() {
        let l = Limits {
            max_frame: 10,
            max_message: 25,
        };
        let ten = "0123456789";
        assert_eq!(run_all(l, &text(ten)), [t(ten)]);
        assert_eq!(
            run_cut(l, &text("0123456789a"), &[]),
            [Got::Err(WsError::FrameTooBig)]
        );
        // The frame limit is enforced from the header: no need to wait for the payload.
        assert_eq!(
            run_cut(l, &text("0123456789a")[..6], &[]),
            [Got::Err(WsError::FrameTooBig)]
        );
        assert_eq!(WsError::FrameTooBig.close_code(), CloseCode::Size);

        let mut at = frame(0x01, ten.as_bytes());
        at.extend(frame(0x00, ten.as_bytes()));
        at.extend(frame(0x80, b"abcde"));
        assert_eq!(run_all(l, &at), [t("01234567890123456789abcde")]);
        let mut over = frame(0x01, ten.as_bytes());
        over.extend(frame(0x00, ten.as_bytes()));
        over.extend(frame(0x80, b"abcdef"));
        assert_eq!(run_all(l, &over), [Got::Err(WsError::MessageTooBig)]);
        assert_eq!(WsError::MessageTooBig.close_code(), CloseCode::Size);

        // A single frame is a message too.
        let l = Limits {
            max_frame: 100,
            max_message: 5,
        };
        assert_eq!(run_cut(l, &text("12345"), &[]), [t("12345")]);
        assert_eq!(
            run_cut(l, &text("123456"), &[]),
            [Got::Err(WsError::MessageTooBig)]
        );

        // Control frames have their own limit, whatever max_frame is.
        let l = Limits {
            max_frame: 0,
            max_message: 0,
        };
        let p = [7; 125];
        assert_eq!(run_all(l, &frame(0x89, &p)), [Got::Ping(p.to_vec())]);
        assert_eq!(run_all(l, &text("")), [t("")]);
    }

    #[test]
    fn huge_lengths_neither_overflow_nor_panic() {
        let header = |len: u64| {
            let mut f = vec![0x81, 0xff];
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&KEY);
            f
        };
        assert_eq!(run(&header(u64::MAX)), [Got::Err(WsError::BadLength)]);
        assert_eq!(run(&header(1 << 63)), [Got::Err(WsError::BadLength)]);
        assert_eq!(
            run(&header((1 << 63) - 1)),
            [Got::Err(WsError::FrameTooBig)]
        );
        assert_eq!(
            run(&header((1 << 32) + 5)),
            [Got::Err(WsError::FrameTooBig)]
        );
        let unbounded = Limits {
            max_frame: usize::MAX,
            max_message: usize::MAX,
        };
        for len in [(1 << 63) - 1, (1 << 32) + 5, u64::from(u32::MAX)] {
            let mut dec = Decoder::new(unbounded);
            let mut buf = header(len);
            buf.extend_from_slice(b"abc");
            let d = dec.decode(&mut buf).expect("waits for the payload");
            assert_eq!((d.consumed, d.event), (0, None));
        }
        // A continuation that would overflow the message length.
        let mut dec = Decoder::new(unbounded);
        let mut buf = frame(0x01, b"ab");
        let d = dec.decode(&mut buf).unwrap();
        assert_eq!(d.consumed, buf.len());
        let mut buf = header((1 << 63) - 1);
        buf[0] = 0x80;
        let d = dec.decode(&mut buf).unwrap();
        assert_eq!((d.consumed, d.event), (0, None));
    }

    #[test]
    fn a_close_ends_decoding() {
        let mut dec = Decoder::new(LIMITS);
        let mut buf = close(1000, b"");
        buf.extend(text("after"));
        let d = dec.decode(&mut buf).unwrap();
        assert_eq!(d.consumed, 8);
        assert!(matches!(d.event, Some(Event::Close(Some(_)))));
        let d = dec.decode(&mut buf[8..]).unwrap();
        assert_eq!((d.consumed, d.event), (11, None));
    }

    #[test]
    fn unmask_matches_bytewise_xor_at_every_length() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, [1, 2, 0x80, 0xff]);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 0x80, 0xff][i % 4])
                .collect();
            assert_eq!(fast, slow, "{n}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Encoder

    #[test]
    fn rfc6455_5_7_server_frames() {
        let mut out = Vec::new();
        text_frame(&mut out, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        ping_frame(&mut out, b"Hello");
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        pong_frame(&mut out, b"Hello");
        assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn text_header_lengths() {
        let hdr = |n| {
            let mut out = Vec::new();
            text_header(&mut out, n);
            out
        };
        assert_eq!(hdr(0), [0x81, 0x00]);
        assert_eq!(hdr(125), [0x81, 125]);
        assert_eq!(hdr(126), [0x81, 0x7e, 0x00, 0x7e]);
        assert_eq!(hdr(256), [0x81, 0x7e, 0x01, 0x00]);
        assert_eq!(hdr(0xffff), [0x81, 0x7e, 0xff, 0xff]);
        assert_eq!(hdr(0x10000), [0x81, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut out = b"prefix".to_vec();
        text_frame(&mut out, &[b'a'; 300]);
        assert_eq!(out.len(), 6 + 4 + 300);
        assert_eq!(out[6..10], [0x81, 0x7e, 0x01, 0x2c]);
    }

    #[test]
    fn control_frames_are_capped() {
        let mut out = Vec::new();
        ping_frame(&mut out, &[9; 200]);
        assert_eq!(out[..2], [0x89, 125]);
        assert_eq!(out.len(), 127);
        out.clear();
        pong_frame(&mut out, &[9; 125]);
        assert_eq!(out.len(), 127);

        out.clear();
        close_frame(&mut out, CloseCode::Away, "bye");
        assert_eq!(out, [0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']);
        // 122 ASCII bytes then "é": it does not fit whole in 123 bytes and is left out.
        let reason = format!("{}é", "r".repeat(122));
        out.clear();
        close_frame(&mut out, CloseCode::Normal, &reason);
        assert_eq!(out[1], 124);
        assert_eq!(&out[4..], "r".repeat(122).as_bytes());
        let reason = "é".repeat(100);
        out.clear();
        close_frame(&mut out, CloseCode::Normal, &reason);
        assert_eq!(out[1], 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    /// What a client does to a server frame before sending it: set the mask bit and mask.
    fn as_client(server: &[u8], key: [u8; 4]) -> Vec<u8> {
        let ext = match server[1] {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let head = 2 + ext;
        let mut f = server[..head].to_vec();
        f[1] |= 0x80;
        f.extend_from_slice(&key);
        f.extend(
            server[head..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4]),
        );
        f
    }

    #[test]
    fn encoder_round_trips_through_the_decoder() {
        let long = "<message>ü€😀</message>".repeat(3000);
        let mut wire = Vec::new();
        for frame in [
            {
                let mut o = Vec::new();
                text_frame(&mut o, b"<open/>");
                o
            },
            {
                let mut o = Vec::new();
                text_frame(&mut o, long.as_bytes());
                o
            },
            {
                let mut o = Vec::new();
                text_header(&mut o, 3);
                o.extend_from_slice(b"<a>");
                o
            },
            {
                let mut o = Vec::new();
                ping_frame(&mut o, b"abc");
                o
            },
            {
                let mut o = Vec::new();
                pong_frame(&mut o, b"");
                o
            },
            {
                let mut o = Vec::new();
                close_frame(&mut o, CloseCode::Policy, "policy");
                o
            },
        ] {
            wire.extend(as_client(&frame, [0xde, 0xad, 0xbe, 0xef]));
        }
        assert_eq!(
            run(&wire),
            [
                t("<open/>"),
                t(&long),
                t("<a>"),
                Got::Ping(b"abc".to_vec()),
                Got::Pong(vec![]),
                Got::Close(Some((1008, "policy".to_owned()))),
            ]
        );
    }
}
