//! XMPP stream framing (RFC 6120 §4): finds top-level stanza boundaries in a byte buffer.
//!
//! The splitter never allocates and never copies: it reports byte ranges into the caller's
//! buffer. It counts element depth over `<` … `>` (minding quoted attribute values, `/>`,
//! end tags, `<?…?>` declarations and `<!…>` sections), with the stream header at depth 1 and
//! stanzas as its direct children. It does not validate XML: the server under test does that.

use std::ops::Range;

/// One complete top-level item found in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The `<stream:stream …>` open tag (the range covers the tag).
    StreamOpen(Range<usize>),
    /// A complete stanza (or nonza such as `<stream:features/>`) at depth 1.
    Stanza(Range<usize>),
    /// The `</stream:stream>` close tag.
    StreamClose,
}

/// Where the lexer is between two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data between tags.
    Text,
    /// Just after `<`.
    Open,
    /// Inside a start or end tag; `quote` is the open quote byte or 0.
    Tag { quote: u8, end: bool },
    /// Inside `<?…?>`.
    Pi,
    /// Inside `<!…>` (CDATA is skipped to `]]>`, anything else to `>`).
    Bang,
}

/// Incremental splitter. Positions are relative to the start of the caller's buffer; call
/// [`Splitter::consume`] when bytes are removed from its front.
#[derive(Debug, Clone)]
pub struct Splitter {
    lex: Lex,
    depth: u32,
    /// Next byte to examine.
    pos: usize,
    /// Start of the current tag (`<`).
    tag_start: usize,
    /// Start of the current depth-1 stanza.
    stanza_start: usize,
    /// Everything before this offset has been reported and may be dropped.
    done: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Splitter {
    /// A splitter at the start of a stream.
    pub fn new() -> Self {
        Self {
            lex: Lex::Text,
            depth: 0,
            pos: 0,
            tag_start: 0,
            stanza_start: 0,
            done: 0,
        }
    }

    /// Bytes at the front of the buffer that belong to reported frames (or to whitespace
    /// between them) and may be removed.
    pub fn consumable(&self) -> usize {
        if self.depth <= 1 && self.lex == Lex::Text {
            self.pos
        } else {
            self.done
        }
    }

    /// Tells the splitter that `n` bytes (at most [`Splitter::consumable`]) were removed from
    /// the front of the buffer.
    pub fn consume(&mut self, n: usize) {
        self.pos -= n;
        self.tag_start = self.tag_start.saturating_sub(n);
        self.stanza_start = self.stanza_start.saturating_sub(n);
        self.done = self.done.saturating_sub(n);
    }

    /// Returns the next complete frame in `buf`, or `None` when more bytes are needed.
    /// `buf` must be the same buffer (grown at the back, shrunk by [`Splitter::consume`]).
    pub fn next(&mut self, buf: &[u8]) -> Option<Frame> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            match self.lex {
                Lex::Text => {
                    match memchr(b'<', &buf[self.pos..]) {
                        Some(off) => {
                            self.tag_start = self.pos + off;
                            self.pos += off + 1;
                            self.lex = Lex::Open;
                        }
                        None => self.pos = buf.len(),
                    }
                    continue;
                }
                Lex::Open => {
                    self.lex = match b {
                        b'?' => Lex::Pi,
                        b'!' => Lex::Bang,
                        b'/' => Lex::Tag {
                            quote: 0,
                            end: true,
                        },
                        _ => Lex::Tag {
                            quote: 0,
                            end: false,
                        },
                    };
                }
                Lex::Pi => {
                    if b == b'>' && self.pos > 0 && buf[self.pos - 1] == b'?' {
                        self.lex = Lex::Text;
                        if self.depth == 0 {
                            self.done = self.pos + 1;
                        }
                    }
                }
                Lex::Bang => {
                    if b == b'>' {
                        let sect = &buf[self.tag_start..=self.pos];
                        let cdata = sect.starts_with(b"<![CDATA[");
                        if !cdata || sect.ends_with(b"]]>") {
                            self.lex = Lex::Text;
                        }
                    }
                }
                Lex::Tag { quote, end } => {
                    if quote != 0 {
                        match memchr(quote, &buf[self.pos..]) {
                            Some(off) => {
                                self.pos += off;
                                self.lex = Lex::Tag { quote: 0, end };
                            }
                            None => {
                                self.pos = buf.len();
                                continue;
                            }
                        }
                    } else if b == b'\'' || b == b'"' {
                        self.lex = Lex::Tag { quote: b, end };
                    } else if b == b'>' {
                        self.lex = Lex::Text;
                        let at = self.pos;
                        self.pos += 1;
                        if let Some(f) = self.close_tag(buf, at, end) {
                            return Some(f);
                        }
                        continue;
                    }
                }
            }
            self.pos += 1;
        }
        None
    }

    /// Handles the `>` at `at` that closes a tag.
    fn close_tag(&mut self, buf: &[u8], at: usize, end: bool) -> Option<Frame> {
        if end {
            self.depth = self.depth.saturating_sub(1);
            return match self.depth {
                0 => {
                    self.done = at + 1;
                    Some(Frame::StreamClose)
                }
                1 => {
                    self.done = at + 1;
                    Some(Frame::Stanza(self.stanza_start..at + 1))
                }
                _ => None,
            };
        }
        let self_closing = at > 0 && buf[at - 1] == b'/';
        match (self.depth, self_closing) {
            (0, _) => {
                self.depth = 1;
                self.done = at + 1;
                Some(Frame::StreamOpen(self.tag_start..at + 1))
            }
            (1, true) => {
                self.done = at + 1;
                Some(Frame::Stanza(self.tag_start..at + 1))
            }
            (1, false) => {
                self.stanza_start = self.tag_start;
                self.depth = 2;
                None
            }
            (_, true) => None,
            (_, false) => {
                self.depth += 1;
                None
            }
        }
    }
}

/// Position of `needle` in `hay`.
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match memchr(first, &hay[i..=hay.len() - needle.len()]) {
            Some(off) => {
                i += off;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

/// The qualified name of the first element in `stanza` (`message`, `stream:features`, …).
pub fn name(stanza: &[u8]) -> &[u8] {
    let rest = stanza.strip_prefix(b"<").unwrap_or(stanza);
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The raw (unescaped) value of attribute `attr` on the first element of `stanza`.
pub fn attr<'a>(stanza: &'a [u8], attr: &[u8]) -> Option<&'a [u8]> {
    let mut i = 0;
    while i < stanza.len() {
        match stanza[i] {
            b'>' => return None,
            q @ (b'\'' | b'"') => i += 1 + memchr(q, &stanza[i + 1..])?,
            b' ' | b'\t' | b'\r' | b'\n' if stanza[i + 1..].starts_with(attr) => {
                let mut j = i + 1 + attr.len();
                while j < stanza.len() && matches!(stanza[j], b' ' | b'\t' | b'\r' | b'\n') {
                    j += 1;
                }
                if stanza.get(j) == Some(&b'=') {
                    j += 1;
                    while j < stanza.len() && matches!(stanza[j], b' ' | b'\t' | b'\r' | b'\n') {
                        j += 1;
                    }
                    let q = *stanza.get(j)?;
                    if q == b'\'' || q == b'"' {
                        let len = memchr(q, &stanza[j + 1..])?;
                        return Some(&stanza[j + 1..j + 1 + len]);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the `>` that closes the first tag of `stanza`.
fn open_tag_end(stanza: &[u8]) -> Option<usize> {
    let mut quote = 0u8;
    for (i, &b) in stanza.iter().enumerate() {
        if quote != 0 {
            if b == quote {
                quote = 0;
            }
        } else if b == b'\'' || b == b'"' {
            quote = b;
        } else if b == b'>' {
            return Some(i);
        }
    }
    None
}

/// The slice of `stanza` starting at the first descendant element named `child`.
pub fn child<'a>(stanza: &'a [u8], child: &[u8]) -> Option<&'a [u8]> {
    let body = &stanza[open_tag_end(stanza)? + 1..];
    let mut i = 0;
    while let Some(off) = memchr(b'<', &body[i..]) {
        let at = i + off;
        let rest = &body[at + 1..];
        if rest.starts_with(child)
            && matches!(
                rest.get(child.len()),
                Some(b' ' | b'>' | b'/' | b'\t' | b'\r' | b'\n')
            )
        {
            return Some(&body[at..]);
        }
        i = at + 1;
    }
    None
}

/// The character data (raw, not unescaped) of the first descendant element named `child`;
/// empty for `<child/>`.
pub fn child_text<'a>(stanza: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let el = child(stanza, name)?;
    let end = open_tag_end(el)?;
    if end > 0 && el[end - 1] == b'/' {
        return Some(&el[..0]);
    }
    let text = &el[end + 1..];
    let len = memchr(b'<', text).unwrap_or(text.len());
    Some(&text[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='a>b' version='1.0'>\
        <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>PLAIN</mechanism></mechanisms></stream:features>\n\
        <message to='a@b/c' id=\"x>'y\" type='chat'><body>hi &amp; &lt;there&gt;</body>\
        <x xmlns='u'><y a='/>'/><z/></x></message>\
        <presence/><presence from='q' />\
        <iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
        <jid>u@d/lt</jid></bind></iq><![CDATA[<x>]]></stream:stream>";

    /// Owned view of the frames for comparison.
    fn frames_of(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut buf = Vec::new();
        let mut sp = Splitter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = sp.next(&buf) {
                out.push(match f {
                    Frame::StreamOpen(r) => {
                        ("open".into(), String::from_utf8_lossy(&buf[r]).into_owned())
                    }
                    Frame::Stanza(r) => (
                        "stanza".into(),
                        String::from_utf8_lossy(&buf[r]).into_owned(),
                    ),
                    Frame::StreamClose => ("close".into(), String::new()),
                });
            }
            let n = sp.consumable();
            buf.drain(..n);
            sp.consume(n);
        }
        out
    }

    #[test]
    fn whole_stream_splits_into_expected_frames() {
        let f = frames_of(&[STREAM]);
        let kinds: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            ["open", "stanza", "stanza", "stanza", "stanza", "stanza", "close"],
            "{f:?}"
        );
        assert!(f[0].1.starts_with("<stream:stream") && f[0].1.ends_with("version='1.0'>"));
        assert!(f[1].1.starts_with("<stream:features>"));
        assert!(f[2].1.starts_with("<message") && f[2].1.ends_with("</message>"));
        assert_eq!(f[3].1, "<presence/>");
        assert_eq!(f[4].1, "<presence from='q' />");
        assert!(f[5].1.ends_with("</iq>"));
    }

    #[test]
    fn cut_at_every_offset_gives_same_frames() {
        let whole = frames_of(&[STREAM]);
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(frames_of(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_gives_same_frames() {
        let whole = frames_of(&[STREAM]);
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(frames_of(&chunks), whole);
    }

    #[test]
    fn incomplete_stanza_is_not_reported() {
        let mut sp = Splitter::new();
        let buf = b"<stream:stream><message><body>x</body>";
        assert!(matches!(sp.next(buf), Some(Frame::StreamOpen(_))));
        assert_eq!(sp.next(buf), None);
        assert_eq!(sp.consumable(), b"<stream:stream>".len());
    }

    #[test]
    fn attr_reads_values_and_ignores_quoted_lookalikes() {
        let s = b"<message to='a@b/c' id=\"x>'y\" type = 'chat' data-id='z'><body/></message>";
        assert_eq!(attr(s, b"to"), Some(&b"a@b/c"[..]));
        assert_eq!(attr(s, b"id"), Some(&b"x>'y"[..]));
        assert_eq!(attr(s, b"type"), Some(&b"chat"[..]));
        assert_eq!(attr(s, b"from"), None);
        let s2 = b"<iq x=' id=&apos;no&apos;' id='yes'/>";
        assert_eq!(attr(s2, b"id"), Some(&b"yes"[..]));
    }

    #[test]
    fn child_helpers_find_nested_elements() {
        let s = b"<message><bodyx>no</bodyx><body>hello</body><x><item/></x></message>";
        assert_eq!(child_text(s, b"body"), Some(&b"hello"[..]));
        assert_eq!(child_text(s, b"item"), Some(&b""[..]));
        assert_eq!(child_text(s, b"nope"), None);
        assert_eq!(name(s), b"message");
        assert_eq!(name(b"<stream:features/>"), b"stream:features");
        assert!(child(
            b"<f><session xmlns='x'><optional/></session></f>",
            b"optional"
        )
        .is_some());
        assert_eq!(find(b"hello world", b"o w"), Some(4));
        assert_eq!(find(b"hello", b"xyz"), None);
    }
}
