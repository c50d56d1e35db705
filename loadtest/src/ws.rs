//! The client side of WebSocket (RFC 6455) for XMPP over WebSocket (RFC 7395): the opening
//! handshake, masked client frames and an incremental decoder of the server's frames.
//!
//! Hot path: a client frame is written straight into the connection's write buffer (the
//! element is written after a reserved header, which is then filled in and the payload masked
//! in place: no temporary buffer), and a server text message is handed out as a slice of the
//! connection's read buffer. Only a fragmented message is copied (into the reader's own buffer,
//! which is kept for the next one).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::framing::find;

/// The framing namespace of `<open/>` and `<close/>` (RFC 7395 §3.3.1).
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// RFC 6455 §1.3: appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Frame opcodes (RFC 6455 §5.2).
pub mod op {
    /// Continuation of a fragmented message.
    pub const CONT: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Writes the RFC 7395 `<open/>` for `domain`.
pub fn open_element(out: &mut Vec<u8>, domain: &str) {
    out.extend_from_slice(b"<open xmlns='");
    out.extend_from_slice(NS_FRAMING.as_bytes());
    out.extend_from_slice(b"' to='");
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(b"' version='1.0'/>");
}

/// The RFC 7395 `<close/>`.
pub const CLOSE_ELEMENT: &[u8] = b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

/// The default namespace of stanzas. Over TCP a stanza inherits it from the stream header;
/// over WebSocket each message is parsed on its own below `<open/>`, whose namespace is the
/// framing one, so stanzas carry it themselves (RFC 7395 §3.3.3 and its examples: Prosody
/// 0.12 refuses an `<iq/>` without it, `unsupported-stanza-type`).
pub const CLIENT_NS_ATTR: &[u8] = b" xmlns='jabber:client'";

/// Where [`CLIENT_NS_ATTR`] goes in `el`: after the name of a `message`, `presence` or `iq`
/// whose start tag declares no default namespace; `None` for anything else.
pub fn client_ns_at(el: &[u8]) -> Option<usize> {
    let rest = el.strip_prefix(b"<")?;
    let name_len = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))?;
    if !matches!(&rest[..name_len], b"message" | b"presence" | b"iq") {
        return None;
    }
    let mut quote = 0u8;
    for (i, &b) in rest[name_len..].iter().enumerate() {
        if quote != 0 {
            if b == quote {
                quote = 0;
            }
            continue;
        }
        match b {
            b'\'' | b'"' => quote = b,
            b'>' => break,
            b'=' if rest[..name_len + i].trim_ascii_end().ends_with(b" xmlns") => return None,
            _ => {}
        }
    }
    Some(1 + name_len)
}

// ------------------------------------------------------------------------------ handshake

/// Appends the opening handshake (RFC 6455 §4.1, RFC 7395 §3.1: subprotocol `xmpp`) for
/// `path` on `host` with the 16-byte nonce `key`; returns the `Sec-WebSocket-Accept` the
/// server must answer with.
pub fn request(out: &mut Vec<u8>, host: &str, path: &str, key: &[u8; 16]) -> String {
    let key = STANDARD.encode(key);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: xmpp\r\nSec-WebSocket-Key: ",
    );
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    accept_key(&key)
}

/// `Sec-WebSocket-Accept` for a base64 `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key_b64: &str) -> String {
    let mut h = Sha1::new();
    h.update(key_b64.as_bytes());
    h.update(GUID);
    STANDARD.encode(h.finalize())
}

/// The length of the response head (through the empty line), once it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// Checks the server's response head: `101`, `Upgrade: websocket`, the expected
/// `Sec-WebSocket-Accept` and the `xmpp` subprotocol (RFC 6455 §4.1, RFC 7395 §3.1).
pub fn check_response(head: &[u8], accept: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("101") {
        return Err(format!("websocket upgrade refused: {status}"));
    }
    let (mut upgrade, mut got_accept, mut proto) = (false, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "sec-websocket-accept" => got_accept = Some(value.to_string()),
            "sec-websocket-protocol" => proto = Some(value.to_string()),
            _ => {}
        }
    }
    if !upgrade {
        return Err("websocket upgrade: no `Upgrade: websocket` in the 101 response".into());
    }
    if got_accept.as_deref() != Some(accept) {
        return Err(format!(
            "websocket upgrade: Sec-WebSocket-Accept {got_accept:?}, expected {accept}"
        ));
    }
    if proto.as_deref() != Some("xmpp") {
        return Err(format!(
            "websocket upgrade: the server did not select subprotocol xmpp (got {proto:?})"
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------- client frames

/// XORs `buf` with the repeating 4-byte `key`, `key[0]` on `buf[0]` (RFC 6455 §5.3).
pub fn mask(buf: &mut [u8], key: [u8; 4]) {
    let k8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ k8).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key's phase is 0 again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The header bytes (mask key included) of a client frame with `n` payload bytes.
fn header_len(n: usize) -> usize {
    match n {
        0..=125 => 2 + 4,
        126..=0xffff => 4 + 4,
        _ => 10 + 4,
    }
}

/// Header bytes reserved before a payload is written: a 16-bit length and the mask key,
/// what a chat message needs.
const GUESS: usize = 4 + 4;

/// Appends one complete (FIN) client frame with `opcode` whose payload `f` writes, masked with
/// `key` (RFC 6455 §5.2, §5.3). The payload is written in place: room for a 16-bit length
/// header is reserved first and the payload moved only when the length needs a shorter or
/// longer header.
pub fn encode_with(out: &mut Vec<u8>, opcode: u8, key: [u8; 4], f: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0u8; GUESS]);
    f(out);
    finish(out, at, opcode, key);
}

/// [`encode_with`] for one XML element in a text frame, with `xmlns='jabber:client'` added
/// to a stanza that has no default namespace ([`client_ns_at`]).
pub fn encode_element(out: &mut Vec<u8>, key: [u8; 4], f: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0u8; GUESS]);
    f(out);
    if let Some(i) = client_ns_at(&out[at + GUESS..]) {
        let pos = at + GUESS + i;
        let old = out.len();
        out.extend_from_slice(CLIENT_NS_ATTR);
        out.copy_within(pos..old, pos + CLIENT_NS_ATTR.len());
        out[pos..pos + CLIENT_NS_ATTR.len()].copy_from_slice(CLIENT_NS_ATTR);
    }
    finish(out, at, op::TEXT, key);
}

/// Turns `out[at..]`, [`GUESS`] reserved bytes and a payload, into a masked frame.
fn finish(out: &mut Vec<u8>, at: usize, opcode: u8, key: [u8; 4]) {
    let n = out.len() - at - GUESS;
    let h = header_len(n);
    if h < GUESS {
        out.copy_within(at + GUESS.., at + h);
        out.truncate(at + h + n);
    } else if h > GUESS {
        out.resize(at + h + n, 0);
        out.copy_within(at + GUESS..at + GUESS + n, at + h);
    }
    let hd = &mut out[at..at + h];
    hd[0] = 0x80 | opcode;
    match h {
        6 => hd[1] = 0x80 | n as u8,
        8 => {
            hd[1] = 0x80 | 126;
            hd[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            hd[1] = 0x80 | 127;
            hd[2..10].copy_from_slice(&(n as u64).to_be_bytes());
        }
    }
    hd[h - 4..].copy_from_slice(&key);
    mask(&mut out[at + h..], key);
}

/// Appends one complete client frame with `opcode` and `payload`, masked with `key`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    encode_with(out, opcode, key, |o| o.extend_from_slice(payload));
}

// ------------------------------------------------------------------------- server frames

/// Why the server's frames cannot be read (the connection fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// RSV1-3 set: no extension was negotiated.
    Reserved,
    /// A server frame with the mask bit (RFC 6455 §5.1: the client must fail).
    Masked,
    /// An opcode RFC 6455 does not define.
    BadOpcode(u8),
    /// A fragmented control frame or one over 125 bytes.
    BadControl,
    /// A frame or message over the limit.
    TooLarge(u64),
    /// A binary message (RFC 7395 §3.2: XMPP is text).
    Binary,
    /// A continuation frame without a message to continue.
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is unfinished.
    Interleaved,
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Reserved => write!(f, "websocket: reserved bits set"),
            WsError::Masked => write!(f, "websocket: masked server frame"),
            WsError::BadOpcode(o) => write!(f, "websocket: unknown opcode {o:#x}"),
            WsError::BadControl => write!(f, "websocket: fragmented or oversized control frame"),
            WsError::TooLarge(n) => {
                write!(f, "websocket: {n}-byte frame or message over the limit")
            }
            WsError::Binary => write!(f, "websocket: binary message (XMPP is text)"),
            WsError::UnexpectedContinuation => {
                write!(f, "websocket: continuation without a message")
            }
            WsError::Interleaved => write!(f, "websocket: new message inside a fragmented one"),
        }
    }
}

/// A server frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Header bytes.
    pub len: usize,
    /// Payload bytes.
    pub payload: usize,
}

/// Parses the frame header at the front of `buf`; `None` until all of it is there.
pub fn head(buf: &[u8], max: usize) -> Result<Option<Head>, WsError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Reserved);
    }
    if b1 & 0x80 != 0 {
        return Err(WsError::Masked);
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
    let (len, n) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                (10, u64::from_be_bytes(w))
            }
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    match opcode {
        op::CONT | op::TEXT | op::BINARY => {}
        op::CLOSE | op::PING | op::PONG => {
            if !fin || n > 125 {
                return Err(WsError::BadControl);
            }
        }
        o => return Err(WsError::BadOpcode(o)),
    }
    if n > max as u64 {
        return Err(WsError::TooLarge(n));
    }
    Ok(Some(Head {
        fin,
        opcode,
        len,
        payload: n as usize,
    }))
}

/// What the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (one XML element, RFC 7395 §3.3.3).
    Text(&'a [u8]),
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame, with its status code if it had one.
    Close(Option<u16>),
}

/// Incremental decoder of the server's frames. The caller keeps the bytes: [`Reader::next`]
/// reads from `buf[*pos..]` and moves `pos` past what it consumed, so the caller drops
/// `buf[..pos]` when it is done with the events.
#[derive(Debug)]
pub struct Reader {
    frag: Vec<u8>,
    in_msg: bool,
    max: usize,
}

impl Reader {
    /// A decoder refusing frames and messages over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            frag: Vec::new(),
            in_msg: false,
            max,
        }
    }

    /// The next event in `buf[*pos..]`, `None` when more bytes are needed (`pos` then points
    /// at the start of the incomplete frame).
    pub fn next<'a>(
        &'a mut self,
        buf: &'a [u8],
        pos: &mut usize,
    ) -> Result<Option<Event<'a>>, WsError> {
        loop {
            let Some(h) = head(&buf[*pos..], self.max)? else {
                return Ok(None);
            };
            let start = *pos + h.len;
            let end = start + h.payload;
            if end > buf.len() {
                return Ok(None);
            }
            *pos = end;
            let p = &buf[start..end];
            match h.opcode {
                op::TEXT if self.in_msg => return Err(WsError::Interleaved),
                op::TEXT if h.fin => return Ok(Some(Event::Text(p))),
                op::TEXT => {
                    if self.frag.capacity() > 4 * self.max.min(1 << 16) {
                        self.frag = Vec::new();
                    }
                    self.frag.clear();
                    self.frag.extend_from_slice(p);
                    self.in_msg = true;
                }
                op::CONT if !self.in_msg => return Err(WsError::UnexpectedContinuation),
                op::CONT => {
                    let total = self.frag.len() + p.len();
                    if total > self.max {
                        return Err(WsError::TooLarge(total as u64));
                    }
                    self.frag.extend_from_slice(p);
                    if h.fin {
                        self.in_msg = false;
                        return Ok(Some(Event::Text(&self.frag)));
                    }
                }
                op::BINARY => return Err(WsError::Binary),
                op::PING => return Ok(Some(Event::Ping(p))),
                op::PONG => return Ok(Some(Event::Pong)),
                _ => {
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    return Ok(Some(Event::Close(code)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a client frame (as the server would): (fin, opcode, key, unmasked payload,
    /// frame length).
    fn decode_client(buf: &[u8]) -> (bool, u8, [u8; 4], Vec<u8>, usize) {
        assert_eq!(buf[1] & 0x80, 0x80, "client frames are masked");
        let (hl, n) = match buf[1] & 0x7f {
            126 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            ),
            n => (2, n as usize),
        };
        let key: [u8; 4] = buf[hl..hl + 4].try_into().unwrap();
        let payload: Vec<u8> = buf[hl + 4..hl + 4 + n]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        (buf[0] & 0x80 != 0, buf[0] & 0x0f, key, payload, hl + 4 + n)
    }

    /// An unmasked server frame.
    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        let n = payload.len();
        if n < 126 {
            f.push(n as u8);
        } else if n <= 0xffff {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        // RFC 6455 §5.7: "A single-frame masked text message".
        let mut out = Vec::new();
        encode(&mut out, op::TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn encode_every_length_class_round_trips() {
        let key = [0xa1, 0x02, 0xf3, 0x44];
        for n in [0, 1, 7, 8, 9, 125, 126, 127, 200, 0xffff, 0x10000, 70_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let mut out = b"prefix".to_vec();
            encode(&mut out, op::TEXT, &payload, key);
            let (fin, opcode, k, got, len) = decode_client(&out[6..]);
            assert!(fin);
            assert_eq!(opcode, op::TEXT);
            assert_eq!(k, key);
            assert_eq!(got, payload, "length {n}");
            assert_eq!(len, out.len() - 6, "length {n}: no stray bytes");
            assert_eq!(len, header_len(n) + n, "minimal header for {n}");
            assert_eq!(&out[..6], b"prefix");
        }
    }

    #[test]
    fn frames_append_back_to_back() {
        let mut out = Vec::new();
        encode_with(&mut out, op::TEXT, [1, 2, 3, 4], |w| {
            w.extend_from_slice(b"<a/>")
        });
        encode(&mut out, op::PONG, b"p", [5, 6, 7, 8]);
        encode(&mut out, op::CLOSE, &1000u16.to_be_bytes(), [9, 9, 9, 9]);
        let (_, o1, _, p1, l1) = decode_client(&out);
        let (_, o2, _, p2, l2) = decode_client(&out[l1..]);
        let (_, o3, _, p3, l3) = decode_client(&out[l1 + l2..]);
        assert_eq!((o1, p1.as_slice()), (op::TEXT, &b"<a/>"[..]));
        assert_eq!((o2, p2.as_slice()), (op::PONG, &b"p"[..]));
        assert_eq!((o3, p3.as_slice()), (op::CLOSE, &[0x03, 0xe8][..]));
        assert_eq!(l1 + l2 + l3, out.len());
    }

    #[test]
    fn mask_matches_bytewise_xor_at_every_length() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut got = data.clone();
            mask(&mut got, key);
            let want: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(got, want, "length {n}");
        }
    }

    /// A server stream with every length class, a ping, a fragmented message split by a
    /// control frame, and a close.
    fn server_stream() -> (Vec<u8>, Vec<String>, std::ops::Range<usize>) {
        let long16 = format!("<message><body>{}</body></message>", "y".repeat(300));
        let long64 = format!("<message><body>{}</body></message>", "z".repeat(70_000));
        let mut s = Vec::new();
        s.extend(server_frame(
            0x81,
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ));
        s.extend(server_frame(0x81, long16.as_bytes()));
        s.extend(server_frame(0x89, b"pi"));
        let big = s.len() + 10..s.len() + 10 + long64.len();
        s.extend(server_frame(0x81, long64.as_bytes()));
        s.extend(server_frame(0x01, b"<presence"));
        s.extend(server_frame(0x8A, b""));
        s.extend(server_frame(0x00, b" type='una"));
        s.extend(server_frame(0x80, b"vailable'/>"));
        s.extend(server_frame(0x81, b""));
        s.extend(server_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
        let want = vec![
            "text <open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>".to_string(),
            format!("text {long16}"),
            "ping pi".into(),
            format!("text {long64}"),
            "pong".into(),
            "text <presence type='unavailable'/>".into(),
            "text ".into(),
            "close Some(1000)".into(),
        ];
        (s, want, big)
    }

    /// Feeds `chunks` one after another as a socket loop would (append, decode, drop what
    /// was consumed); the events, owned.
    fn events(chunks: &[&[u8]]) -> Vec<String> {
        let mut rd = Reader::new(1 << 20);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            let mut pos = 0;
            while let Some(ev) = rd.next(&buf, &mut pos).expect("valid stream") {
                got.push(match ev {
                    Event::Text(t) => format!("text {}", String::from_utf8_lossy(t)),
                    Event::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                    Event::Pong => "pong".into(),
                    Event::Close(c) => format!("close {c:?}"),
                });
            }
            buf.drain(..pos);
        }
        got
    }

    #[test]
    fn server_frames_decode_with_16_and_64_bit_lengths() {
        let (s, want, _) = server_stream();
        assert_eq!(events(&[&s]), want);
    }

    #[test]
    fn server_frames_cut_at_every_offset_decode_the_same() {
        let (s, want, big) = server_stream();
        // Every offset of the stream, except inside the 64-bit frame's payload, which is cut
        // every 997 bytes and around its ends.
        let inner = big.start + 8..big.end - 8;
        for cut in (0..=s.len()).filter(|c| !inner.contains(c) || c % 997 == 0) {
            let (a, b) = s.split_at(cut);
            assert_eq!(events(&[a, b]), want, "cut at {cut}");
        }
        let small: Vec<u8> = [
            server_frame(0x81, b"<a/>"),
            server_frame(0x81, &[b'x'; 130]),
            server_frame(0x89, b""),
            server_frame(0x01, b"<b"),
            server_frame(0x80, b"/>"),
        ]
        .concat();
        let whole = events(&[&small]);
        assert_eq!(whole.len(), 4);
        for cut in 0..=small.len() {
            for cut2 in cut..=small.len() {
                let parts = [&small[..cut], &small[cut..cut2], &small[cut2..]];
                assert_eq!(events(&parts), whole, "cuts at {cut}, {cut2}");
            }
        }
        let bytes: Vec<&[u8]> = small.chunks(1).collect();
        assert_eq!(events(&bytes), whole);
    }

    #[test]
    fn incomplete_headers_wait_for_more() {
        let mut rd = Reader::new(1 << 20);
        let f = server_frame(0x81, &[b'q'; 70_000]);
        for n in [0, 1, 2, 5, 9, 10, 11, 70_009] {
            let mut pos = 0;
            assert_eq!(rd.next(&f[..n], &mut pos), Ok(None), "{n} bytes");
            assert_eq!(pos, 0);
        }
        let mut pos = 0;
        assert!(matches!(rd.next(&f, &mut pos), Ok(Some(Event::Text(t))) if t.len() == 70_000));
        assert_eq!(pos, f.len());
    }

    #[test]
    fn protocol_errors() {
        let bad = |b: &[u8]| {
            let mut rd = Reader::new(1000);
            let mut pos = 0;
            rd.next(b, &mut pos).err()
        };
        assert_eq!(bad(&[0x81, 0x81, 1, 2, 3, 4, b'x']), Some(WsError::Masked));
        assert_eq!(bad(&[0xC1, 0x00]), Some(WsError::Reserved));
        assert_eq!(bad(&[0x83, 0x00]), Some(WsError::BadOpcode(3)));
        assert_eq!(bad(&[0x09, 0x00]), Some(WsError::BadControl));
        assert_eq!(bad(&[0x89, 126, 0, 126]), Some(WsError::BadControl));
        assert_eq!(bad(&[0x82, 0x01, b'x']), Some(WsError::Binary));
        assert_eq!(
            bad(&[0x80, 0x01, b'x']),
            Some(WsError::UnexpectedContinuation)
        );
        assert_eq!(
            bad(&[0x01, 0x01, b'x', 0x81, 0x00]),
            Some(WsError::Interleaved)
        );
        assert_eq!(bad(&[0x81, 126, 0x03, 0xe9]), Some(WsError::TooLarge(1001)));
        let huge = [0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(bad(&huge), Some(WsError::TooLarge(0xff00_0000_0000_0000)));
        let frag = [
            server_frame(0x01, &[b'a'; 600]),
            server_frame(0x80, &[b'a'; 401]),
        ]
        .concat();
        assert_eq!(bad(&frag), Some(WsError::TooLarge(1001)));
    }

    #[test]
    fn rfc6455_handshake_key_and_response() {
        // RFC 6455 §1.3's example key.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut out = Vec::new();
        let key = *b"the sample nonce";
        let acc = request(&mut out, "localhost:5280", "/xmpp-websocket", &key);
        assert_eq!(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let req = String::from_utf8(out).unwrap();
        assert!(req.starts_with("GET /xmpp-websocket HTTP/1.1\r\nHost: localhost:5280\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Protocol: xmpp\r\n"));
        assert!(req.ends_with("\r\n\r\n"));

        let ok = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                   Sec-WebSocket-Protocol: xmpp\r\n\r\n\x81\x00";
        let n = head_end(ok).unwrap();
        assert_eq!(&ok[n..], b"\x81\x00");
        assert_eq!(check_response(&ok[..n], &acc), Ok(()));
        assert_eq!(head_end(&ok[..n - 1]), None);
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(check_response(refused, &acc)
            .unwrap_err()
            .contains("404 Not Found"));
        let no_proto = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(no_proto, &acc)
            .unwrap_err()
            .contains("subprotocol"));
        let bad_key = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                        Sec-WebSocket-Accept: AAAA\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n";
        assert!(check_response(bad_key, &acc)
            .unwrap_err()
            .contains("Accept"));
    }

    #[test]
    fn stanzas_get_the_client_namespace() {
        let el = |s: &[u8]| {
            let mut out = Vec::new();
            encode_element(&mut out, [7, 0, 9, 1], |w| w.extend_from_slice(s));
            let (_, opcode, _, p, len) = decode_client(&out);
            assert_eq!((opcode, len), (op::TEXT, out.len()));
            String::from_utf8(p).unwrap()
        };
        assert_eq!(el(b"<presence/>"), "<presence xmlns='jabber:client'/>");
        assert_eq!(
            el(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"),
            "<iq xmlns='jabber:client' type='set' id='b'><bind \
             xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
        );
        let long = format!(
            "<message to='u@d/lt' id='1'><body>{}</body></message>",
            "x".repeat(60)
        );
        let want = long.replacen("<message", "<message xmlns='jabber:client'", 1);
        assert!(
            long.len() < 126 && want.len() >= 126,
            "crosses a length class"
        );
        assert_eq!(el(long.as_bytes()), want);
        for same in [
            &b"<iq xmlns='jabber:client' type='get'/>"[..],
            b"<message xmlns = \"jabber:client\"><body/></message>",
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>",
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
            b"<messages/>",
        ] {
            assert_eq!(el(same).as_bytes(), same);
        }
        // An attribute value that merely mentions xmlns= does not count.
        assert_eq!(
            el(b"<message id=' xmlns=x'/>"),
            "<message xmlns='jabber:client' id=' xmlns=x'/>"
        );
    }

    #[test]
    fn open_element_is_rfc7395() {
        let mut o = Vec::new();
        open_element(&mut o, "localhost");
        assert_eq!(
            o,
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"
        );
    }
}
