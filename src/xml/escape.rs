//! Escaping and unescaping of character data and attribute values (XML 1.0 §2.4, §4.1, §4.6).

use std::borrow::Cow;

use xmlparser::XmlCharExt;

use super::XmlError;

/// Appends `s` as character data: `&`, `<` and `>` become references, `\r` becomes `&#13;` so
/// that it survives line-end normalization, and characters XML forbids become U+FFFD.
pub fn escape_text(s: &str, out: &mut Vec<u8>) {
    escape(s, out, false);
}

/// Appends `s` as an attribute value for either quote style: `&`, `<`, `>`, `'` and `"` become
/// references, as do tab, LF and CR (which attribute normalization would otherwise turn into
/// spaces); characters XML forbids become U+FFFD.
pub fn escape_attr(s: &str, out: &mut Vec<u8>) {
    escape(s, out, true);
}

/// Unescapes character data or an attribute value: the five predefined entities and numeric
/// character references to XML `Char`s. Any other entity is [`XmlError::RestrictedXml`]
/// (CORE-XML-04); a malformed reference is [`XmlError::NotWellFormed`].
///
/// No whitespace normalization is applied; borrowed when `s` holds no reference.
pub fn unescape(s: &str) -> Result<Cow<'_, str>, XmlError> {
    decode(s, Normalize::None)
}

/// Whitespace normalization applied while decoding (XML 1.0 §2.11, §3.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Normalize {
    /// References only.
    None,
    /// Character data: CR LF and lone CR become LF.
    Text,
    /// Attribute values: CR LF becomes one space; tab, LF and CR become spaces.
    Attr,
}

/// Unescapes `s`, normalizing literal whitespace as `mode` says; borrowed when nothing changes.
pub(crate) fn decode(s: &str, mode: Normalize) -> Result<Cow<'_, str>, XmlError> {
    let special = |b: u8| match mode {
        Normalize::None => b == b'&',
        Normalize::Text => b == b'&' || b == b'\r',
        Normalize::Attr => matches!(b, b'&' | b'\t' | b'\n' | b'\r'),
    };
    if !s.bytes().any(special) {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.bytes().position(special) {
        // `at` is an ASCII byte, hence a char boundary.
        let (plain, tail) = rest.split_at(at);
        out.push_str(plain);
        let (ch, len) = match tail.as_bytes() {
            [b'&', ..] => parse_ref(tail)?,
            [b'\r', b'\n', ..] if mode == Normalize::Text => ('\n', 2),
            [b'\r', b'\n', ..] => (' ', 2),
            [b'\r', ..] if mode == Normalize::Text => ('\n', 1),
            _ => (' ', 1),
        };
        out.push(ch);
        rest = tail.get(len..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Validates every reference in `s` without allocating.
pub(crate) fn check_refs(s: &str) -> Result<(), XmlError> {
    let mut rest = s;
    while let Some(at) = memchr::memchr(b'&', rest.as_bytes()) {
        let tail = rest.get(at..).unwrap_or("");
        let (_, len) = parse_ref(tail)?;
        rest = tail.get(len..).unwrap_or("");
    }
    Ok(())
}

/// Whether `c` matches the XML 1.0 `Char` production.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Parses the reference at the start of `s` (which begins with `&`): the character it stands
/// for and the reference's length in bytes.
fn parse_ref(s: &str) -> Result<(char, usize), XmlError> {
    const MALFORMED: XmlError = XmlError::NotWellFormed("malformed entity reference");
    let body = s.get(1..).ok_or(MALFORMED)?;
    let mut semi = None;
    for (i, c) in body.char_indices() {
        if c == ';' {
            semi = Some(i);
            break;
        }
        if !(c == '#' || c.is_xml_name()) {
            return Err(MALFORMED);
        }
    }
    let semi = semi.ok_or(MALFORMED)?;
    let name = body.get(..semi).ok_or(MALFORMED)?;
    let ch =
        match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            _ => {
                if let Some(num) = name.strip_prefix('#') {
                    let code = match num.strip_prefix('x') {
                        Some(hex) => parse_number(hex, 16),
                        None => parse_number(num, 10),
                    }
                    .ok_or(MALFORMED)?;
                    char::from_u32(code).filter(|c| is_xml_char(*c)).ok_or(
                        XmlError::NotWellFormed("character reference to a forbidden character"),
                    )?
                } else if is_name(name) {
                    return Err(XmlError::RestrictedXml(
                        "entity reference other than the predefined five",
                    ));
                } else {
                    return Err(MALFORMED);
                }
            }
        };
    Ok((ch, semi + 2))
}

fn parse_number(digits: &str, radix: u32) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.chars().try_fold(0u32, |acc, c| {
        acc.checked_mul(radix)?.checked_add(c.to_digit(radix)?)
    })
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c != ':' && c.is_xml_name_start())
        && chars.all(|c| c.is_xml_name())
}

fn escape(s: &str, out: &mut Vec<u8>, attr: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut skip_to = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i < skip_to {
            continue;
        }
        let (rep, len): (&[u8], usize) = match b {
            b'&' => (b"&amp;", 1),
            b'<' => (b"&lt;", 1),
            b'>' => (b"&gt;", 1),
            b'\'' if attr => (b"&apos;", 1),
            b'"' if attr => (b"&quot;", 1),
            b'\t' if attr => (b"&#9;", 1),
            b'\n' if attr => (b"&#10;", 1),
            b'\r' => (b"&#13;", 1),
            b'\t' | b'\n' => continue,
            0x00..=0x1F => ("\u{FFFD}".as_bytes(), 1),
            // U+FFFE and U+FFFF are EF BF BE / EF BF BF.
            0xEF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => {
                ("\u{FFFD}".as_bytes(), 3)
            }
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        out.extend_from_slice(rep);
        start = i + len;
        skip_to = start;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        let mut out = Vec::new();
        escape_text(s, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    fn attr(s: &str) -> String {
        let mut out = Vec::new();
        escape_attr(s, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    // CORE-XML-10: user data is escaped on the way out.
    #[test]
    fn core_xml_10_escape_text() {
        assert_eq!(text("a<b>&c 'q' \"d\""), "a&lt;b&gt;&amp;c 'q' \"d\"");
        assert_eq!(text("héllo ☃ 🎉\n\t"), "héllo ☃ 🎉\n\t");
        assert_eq!(text("a\rb"), "a&#13;b");
        assert_eq!(text(""), "");
    }

    #[test]
    fn core_xml_10_escape_attr() {
        assert_eq!(
            attr("a<b>&c 'q' \"d\""),
            "a&lt;b&gt;&amp;c &apos;q&apos; &quot;d&quot;"
        );
        assert_eq!(attr("x\ty\nz\r"), "x&#9;y&#10;z&#13;");
    }

    #[test]
    fn core_xml_10_forbidden_chars_are_replaced() {
        assert_eq!(text("a\u{1}b\u{0}"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(
            attr("a\u{FFFE}b\u{FFFF}c\u{FFFD}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(text("\u{FFBF}\u{EFBF}"), "\u{FFBF}\u{EFBF}");
    }

    #[test]
    fn unescape_predefined_and_numeric() {
        assert_eq!(unescape("plain").expect("ok"), Cow::Borrowed("plain"));
        assert_eq!(unescape("&lt;&gt;&amp;&apos;&quot;").expect("ok"), "<>&'\"");
        assert_eq!(unescape("&#x41;&#66;&#x1F389;&#xe9;").expect("ok"), "AB🎉é");
        assert_eq!(unescape("a&#10;b").expect("ok"), "a\nb");
        assert_eq!(unescape("héllo &amp; ☃").expect("ok"), "héllo & ☃");
    }

    // CORE-XML-04: only the five predefined entities.
    #[test]
    fn core_xml_04_other_entities_are_restricted() {
        assert!(matches!(
            unescape("&nbsp;"),
            Err(XmlError::RestrictedXml(_))
        ));
        assert!(matches!(
            unescape("x &custom; y"),
            Err(XmlError::RestrictedXml(_))
        ));
        assert!(matches!(unescape("&é;"), Err(XmlError::RestrictedXml(_))));
    }

    #[test]
    fn core_xml_05_malformed_references() {
        for bad in [
            "&",
            "&amp",
            "a & b",
            "&;",
            "&#;",
            "&#x;",
            "&#xZZ;",
            "&#12a;",
            "&1a;",
            "&a b;",
            "&#99999999999;",
            "&:a;",
        ] {
            assert!(
                matches!(unescape(bad), Err(XmlError::NotWellFormed(_))),
                "{bad}"
            );
            assert!(
                matches!(check_refs(bad), Err(XmlError::NotWellFormed(_))),
                "{bad}"
            );
        }
    }

    // CORE-XML-08: references cannot smuggle in forbidden characters.
    #[test]
    fn core_xml_08_references_to_forbidden_chars() {
        for bad in [
            "&#0;",
            "&#x1;",
            "&#xFFFE;",
            "&#xFFFF;",
            "&#xD800;",
            "&#x110000;",
        ] {
            assert!(
                matches!(unescape(bad), Err(XmlError::NotWellFormed(_))),
                "{bad}"
            );
        }
        assert_eq!(unescape("&#9;&#xD;").expect("ok"), "\t\r");
    }

    #[test]
    fn normalization() {
        assert_eq!(
            decode("a\r\nb\rc\nd", Normalize::Text).expect("ok"),
            "a\nb\nc\nd"
        );
        assert_eq!(
            decode("a\r\nb\tc\nd&#10;", Normalize::Attr).expect("ok"),
            "a b c d\n"
        );
        assert_eq!(decode("a\r\nb", Normalize::None).expect("ok"), "a\r\nb");
    }

    #[test]
    fn round_trip() {
        let s = "<'\"&> \t\n\r héllo ☃ 🎉 &amp;";
        let mut out = Vec::new();
        escape_attr(s, &mut out);
        let escaped = String::from_utf8(out).expect("utf-8");
        assert_eq!(decode(&escaped, Normalize::Attr).expect("ok"), s);
        let mut out = Vec::new();
        escape_text(s, &mut out);
        let escaped = String::from_utf8(out).expect("utf-8");
        assert_eq!(decode(&escaped, Normalize::Text).expect("ok"), s);
    }
}
