//! JIDs (RFC 7622 / RFC 6122 stringprep profiles).
//!
//! A [`Jid`] is stored as one normalized string plus two offsets, so the bare and full forms
//! are slices of it and comparison is a string comparison: localpart and domainpart are
//! normalized to lowercase (they compare case-insensitively), the resource keeps its case
//! (CORE-STANZA-20).
//!
//! JIDs are parsed on every routed stanza, so pure-ASCII parts are prepared here without
//! calling into `stringprep` (and without allocating when already normalized); only
//! non-ASCII parts take the full stringprep path.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Maximum length of each JID part in bytes, after preparation (RFC 7622 §3.2–3.4).
pub const MAX_PART_LEN: usize = 1023;

/// A normalized JID: `[localpart@]domainpart[/resourcepart]`.
///
/// Equality, ordering and hashing are those of the normalized string form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    /// The normalized full form. Invariant: the offsets below sit on the ASCII `@` and `/`
    /// separators (or the ends), so slicing at them cannot split a character.
    full: Box<str>,
    /// Byte offset where the domainpart starts (0 when there is no localpart).
    domain_start: u16,
    /// Byte offset where the domainpart ends (`full.len()` when there is no resource).
    domain_end: u16,
}

/// Why a string is not a valid JID (each maps to `<jid-malformed/>` or, for a resource
/// at bind time, `<bad-request/>`; CORE-STANZA-11, CORE-BIND-05).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JidError {
    /// The whole input is empty.
    Empty,
    /// The localpart is longer than 1023 bytes after preparation.
    LocalTooLong,
    /// The domainpart is longer than 1023 bytes after preparation.
    DomainTooLong,
    /// The resourcepart is longer than 1023 bytes after preparation.
    ResourceTooLong,
    /// An `@` with nothing before it, or a localpart that prepares to nothing.
    EmptyLocal,
    /// No domainpart (`a@`, `/r`), or one that prepares to nothing.
    EmptyDomain,
    /// A `/` with nothing after it, or a resourcepart that prepares to nothing.
    EmptyResource,
    /// The localpart fails Nodeprep (forbidden or unassigned code point, bidi rule).
    BadLocal,
    /// The domainpart fails Nameprep or contains a character not allowed in a hostname.
    BadDomain,
    /// The resourcepart fails Resourceprep.
    BadResource,
}

impl fmt::Display for JidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JidError::Empty => "empty JID",
            JidError::LocalTooLong => "localpart longer than 1023 bytes",
            JidError::DomainTooLong => "domainpart longer than 1023 bytes",
            JidError::ResourceTooLong => "resourcepart longer than 1023 bytes",
            JidError::EmptyLocal => "empty localpart",
            JidError::EmptyDomain => "empty domainpart",
            JidError::EmptyResource => "empty resourcepart",
            JidError::BadLocal => "localpart violates nodeprep",
            JidError::BadDomain => "domainpart violates nameprep",
            JidError::BadResource => "resourcepart violates resourceprep",
        })
    }
}

impl std::error::Error for JidError {}

impl Jid {
    /// Parses and normalizes a JID (RFC 7622 §3.1): the resource starts after the first `/`
    /// (so it may contain `@` and `/`), the localpart ends at the first `@` before that.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        let (head, resource) = match split_once_byte(s, b'/') {
            Some((head, resource)) => (head, Some(resource)),
            None => (s, None),
        };
        let (local, domain) = match split_once_byte(head, b'@') {
            Some((local, domain)) => (Some(local), domain),
            None => (None, head),
        };
        Jid::new(local, domain, resource)
    }

    /// Builds a JID from its parts, preparing each (Nodeprep, Nameprep, Resourceprep).
    pub fn new(local: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        let local = local.map(nodeprep).transpose()?;
        let domain = nameprep_domain(domain)?;
        let resource = resource.map(resourceprep).transpose()?;
        Ok(Jid::assemble(
            local.as_deref(),
            &domain,
            resource.as_deref(),
        ))
    }

    /// The localpart, if any.
    pub fn local(&self) -> Option<&str> {
        match self.domain_start {
            0 => None,
            start => Some(&self.full[..usize::from(start) - 1]),
        }
    }

    /// The domainpart.
    pub fn domain(&self) -> &str {
        &self.full[usize::from(self.domain_start)..usize::from(self.domain_end)]
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.full.get(usize::from(self.domain_end) + 1..)
    }

    /// The normalized full form.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The bare form, `local@domain` or `domain`, as a slice of the full form.
    pub fn bare_str(&self) -> &str {
        &self.full[..usize::from(self.domain_end)]
    }

    /// The bare JID (a clone when `self` is already bare).
    pub fn to_bare(&self) -> Jid {
        Jid {
            full: self.bare_str().into(),
            domain_start: self.domain_start,
            domain_end: self.domain_end,
        }
    }

    /// Whether the JID has no resourcepart.
    pub fn is_bare(&self) -> bool {
        usize::from(self.domain_end) == self.full.len()
    }

    /// This JID's bare form with `resource` (Resourceprep'd) as its resourcepart.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        let resource = resourceprep(resource)?;
        Ok(Jid::assemble(self.local(), self.domain(), Some(&resource)))
    }

    /// Joins already prepared, length-checked parts.
    fn assemble(local: Option<&str>, domain: &str, resource: Option<&str>) -> Jid {
        let local_len = local.map_or(0, |l| l.len() + 1);
        let resource_len = resource.map_or(0, |r| r.len() + 1);
        let mut full = String::with_capacity(local_len + domain.len() + resource_len);
        if let Some(local) = local {
            full.push_str(local);
            full.push('@');
        }
        full.push_str(domain);
        if let Some(resource) = resource {
            full.push('/');
            full.push_str(resource);
        }
        // Both offsets are at most 1024 + 1023: every part was checked against MAX_PART_LEN.
        #[allow(clippy::cast_possible_truncation)]
        Jid {
            full: full.into_boxed_str(),
            domain_start: local_len as u16,
            domain_end: (local_len + domain.len()) as u16,
        }
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Jid").field(&self.as_str()).finish()
    }
}

impl FromStr for Jid {
    type Err = JidError;

    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

impl AsRef<str> for Jid {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A normalized JID as a borrowed string: what routing passes around (a [`Jid`]'s text, or
/// a routing key the router wrote from one). It is never parsed again: the bare part,
/// domain and resource are found by the separators, which normalization leaves unambiguous
/// (the resource starts at the first `/`, the localpart ends at the first `@` before it).
///
/// Only text that came from a [`Jid`] (directly, from storage that stored one, or through
/// the shard mesh) may be wrapped: see [`JidStr::trusted`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JidStr<'a>(&'a str);

impl<'a> JidStr<'a> {
    /// Wrap text known to be a normalized JID (the form [`Jid::as_str`] returns).
    pub fn trusted(s: &'a str) -> JidStr<'a> {
        debug_assert!(!s.is_empty(), "an empty JID");
        JidStr(s)
    }

    /// The text.
    pub fn as_str(self) -> &'a str {
        self.0
    }

    /// The bare JID (`local@domain` or `domain`).
    pub fn bare(self) -> JidStr<'a> {
        JidStr(bare_of(self.0))
    }

    /// The resourcepart, if any.
    pub fn resource(self) -> Option<&'a str> {
        split_jid(self.0).1
    }

    /// True without a resourcepart.
    pub fn is_bare(self) -> bool {
        memchr::memchr(b'/', self.0.as_bytes()).is_none()
    }

    /// The localpart, if any.
    pub fn local(self) -> Option<&'a str> {
        split_once_byte(bare_of(self.0), b'@').map(|(l, _)| l)
    }

    /// The domainpart.
    pub fn domain(self) -> &'a str {
        let bare = bare_of(self.0);
        split_once_byte(bare, b'@').map_or(bare, |(_, d)| d)
    }

    /// An owned copy, without preparing it again: the text is already normalized, so only
    /// its separators are looked up. None if the text breaks that promise so badly that its
    /// offsets do not fit (normalized parts are at most [`MAX_PART_LEN`] bytes).
    pub fn to_jid(self) -> Option<Jid> {
        let bare = bare_of(self.0);
        let domain_start = memchr::memchr(b'@', bare.as_bytes()).map_or(0, |at| at + 1);
        Some(Jid {
            full: self.0.into(),
            domain_start: u16::try_from(domain_start).ok()?,
            domain_end: u16::try_from(bare.len()).ok()?,
        })
    }
}

impl<'a> From<&'a Jid> for JidStr<'a> {
    fn from(j: &'a Jid) -> JidStr<'a> {
        JidStr(j.as_str())
    }
}

impl fmt::Display for JidStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for JidStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JidStr").field(&self.0).finish()
    }
}

impl PartialEq<str> for JidStr<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for JidStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The bare part of a normalized JID string.
pub fn bare_of(jid: &str) -> &str {
    split_jid(jid).0
}

/// `s` split around the first `sep`, an ASCII separator (`/`, `@`): found with a SIMD byte
/// search, which `str::split_once(char)` is not for strings this short, and an ASCII byte's
/// offset is always a character boundary. JIDs are split on every routed stanza.
#[inline]
pub fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    debug_assert!(sep.is_ascii());
    let i = memchr::memchr(sep, s.as_bytes())?;
    Some((&s[..i], &s[i + 1..]))
}

/// Split a normalized JID string into bare part and resource.
pub fn split_jid(jid: &str) -> (&str, Option<&str>) {
    match split_once_byte(jid, b'/') {
        Some((bare, res)) => (bare, Some(res)),
        None => (jid, None),
    }
}

/// True if `s` has a code point unassigned in Unicode 3.2. JIDs are stored strings, for which
/// RFC 3454 §7 prohibits unassigned code points; the `stringprep` crate checks for them only
/// after normalization, so e.g. U+03F9 (assigned later) was case-folded and normalized into
/// a JID that prepared differently the second time (found by the `jid` fuzz target).
fn has_unassigned(s: &str) -> bool {
    s.chars().any(stringprep::tables::unassigned_code_point)
}

/// Prepares a localpart with RFC 6122 Nodeprep: case-folds, forbids `"&'/:<>@`, spaces
/// and controls; 1..=1023 bytes after preparation.
pub fn nodeprep(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    let out = if s.is_ascii() {
        if s.len() > MAX_PART_LEN {
            return Err(JidError::LocalTooLong);
        }
        let mut upper = false;
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' => upper = true,
                0x00..=0x20 | 0x7f => return Err(JidError::BadLocal),
                b'"' | b'&' | b'\'' | b'/' | b':' | b'<' | b'>' | b'@' => {
                    return Err(JidError::BadLocal)
                }
                _ => {}
            }
        }
        if upper {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        if has_unassigned(s) {
            return Err(JidError::BadLocal);
        }
        stringprep::nodeprep(s).map_err(|_| JidError::BadLocal)?
    };
    check_len(out, JidError::EmptyLocal, JidError::LocalTooLong)
}

/// Prepares a domainpart: Nameprep (lowercases), strips one trailing `.`, rejects empty
/// labels and any ASCII other than letters, digits, `-` and `.`; IP literals (`[::1]`,
/// `127.0.0.1`) are accepted. 1..=1023 bytes after preparation.
pub fn nameprep_domain(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    if s.is_ascii() {
        if let Some(inner) = s.strip_prefix('[') {
            return ip6_literal(s, inner);
        }
        let d = s.strip_suffix('.').unwrap_or(s);
        if d.len() > MAX_PART_LEN {
            return Err(JidError::DomainTooLong);
        }
        if d.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        check_labels(d)?;
        if d.bytes().any(|b| b.is_ascii_uppercase()) {
            Ok(Cow::Owned(d.to_ascii_lowercase()))
        } else {
            Ok(Cow::Borrowed(d))
        }
    } else {
        if has_unassigned(s) {
            return Err(JidError::BadDomain);
        }
        let prepped = stringprep::nameprep(s).map_err(|_| JidError::BadDomain)?;
        // U+3002 IDEOGRAPHIC FULL STOP is a label separator (RFC 3490 §3.1); Nameprep's NFKC
        // has already folded U+FF0E and U+FF61 into '.' and U+3002.
        let mut d = prepped.replace('\u{3002}', ".");
        if d.ends_with('.') {
            d.pop();
        }
        if d.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if d.len() > MAX_PART_LEN {
            return Err(JidError::DomainTooLong);
        }
        check_labels(&d)?;
        Ok(Cow::Owned(d))
    }
}

/// Prepares a resourcepart with RFC 6122 Resourceprep: case-preserving, spaces allowed,
/// controls forbidden; 1..=1023 bytes after preparation.
pub fn resourceprep(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyResource);
    }
    let out = if s.is_ascii() {
        if s.len() > MAX_PART_LEN {
            return Err(JidError::ResourceTooLong);
        }
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(JidError::BadResource);
        }
        Cow::Borrowed(s)
    } else {
        if has_unassigned(s) {
            return Err(JidError::BadResource);
        }
        stringprep::resourceprep(s).map_err(|_| JidError::BadResource)?
    };
    check_len(out, JidError::EmptyResource, JidError::ResourceTooLong)
}

fn check_len(
    s: Cow<'_, str>,
    empty: JidError,
    too_long: JidError,
) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        Err(empty)
    } else if s.len() > MAX_PART_LEN {
        Err(too_long)
    } else {
        Ok(s)
    }
}

/// Every label non-empty; ASCII characters limited to letters, digits and `-`.
fn check_labels(d: &str) -> Result<(), JidError> {
    for label in d.split('.') {
        if label.is_empty() {
            return Err(JidError::BadDomain);
        }
        let ok = label
            .chars()
            .all(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(JidError::BadDomain);
        }
    }
    Ok(())
}

/// `[IPv6]` literal (RFC 7622 §3.2 via RFC 3986 IP-literal), hex digits lowercased.
fn ip6_literal<'a>(s: &'a str, inner: &str) -> Result<Cow<'a, str>, JidError> {
    let addr = inner.strip_suffix(']').ok_or(JidError::BadDomain)?;
    if addr.parse::<Ipv6Addr>().is_err() {
        return Err(JidError::BadDomain);
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(s.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_str_parts_match_the_parsed_jid() {
        for text in ["a@d/r/x@y", "a@d", "d/r@x", "d", "a@d/r"] {
            let jid = Jid::parse(text).unwrap();
            let s = JidStr::from(&jid);
            assert_eq!(s.bare().as_str(), jid.bare_str(), "{text}");
            assert_eq!(s.resource(), jid.resource(), "{text}");
            assert_eq!(s.local(), jid.local(), "{text}");
            assert_eq!(s.domain(), jid.domain(), "{text}");
            assert_eq!(s.is_bare(), jid.is_bare(), "{text}");
            let copy = s.to_jid().unwrap();
            assert_eq!(copy, jid, "{text}");
            assert_eq!(copy.domain(), jid.domain(), "{text}");
            assert_eq!(copy.resource(), jid.resource(), "{text}");
            assert_eq!(copy.local(), jid.local(), "{text}");
        }
        assert_eq!(split_jid("a@d/r/x"), ("a@d", Some("r/x")));
        assert_eq!(bare_of("d/r"), "d");
    }

    /// (input, normalized, local, domain, resource)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
    );

    const VALID: &[Case] = &[
        ("example.com", "example.com", None, "example.com", None),
        (
            "user@example.com",
            "user@example.com",
            Some("user"),
            "example.com",
            None,
        ),
        (
            "User@Example.COM/Res",
            "user@example.com/Res",
            Some("user"),
            "example.com",
            Some("Res"),
        ),
        (
            "JÜRGEN@Example.COM/Laptop",
            "jürgen@example.com/Laptop",
            Some("jürgen"),
            "example.com",
            Some("Laptop"),
        ),
        ("a@b/c/d", "a@b/c/d", Some("a"), "b", Some("c/d")),
        ("a@b/c@d", "a@b/c@d", Some("a"), "b", Some("c@d")),
        ("b/c@d", "b/c@d", None, "b", Some("c@d")),
        (
            "a@b/ spaced  resource ",
            "a@b/ spaced  resource ",
            Some("a"),
            "b",
            Some(" spaced  resource "),
        ),
        ("a@b/@", "a@b/@", Some("a"), "b", Some("@")),
        ("a@b//", "a@b//", Some("a"), "b", Some("/")),
        ("example.com.", "example.com", None, "example.com", None),
        (
            "u@Example.Com./r",
            "u@example.com/r",
            Some("u"),
            "example.com",
            Some("r"),
        ),
        ("u@127.0.0.1", "u@127.0.0.1", Some("u"), "127.0.0.1", None),
        ("u@[::1]/r", "u@[::1]/r", Some("u"), "[::1]", Some("r")),
        ("[::FFFF:A]", "[::ffff:a]", None, "[::ffff:a]", None),
        ("x-1.y-2", "x-1.y-2", None, "x-1.y-2", None),
        (
            "#$%()*+,-.;=?[\\]^_`{|}~!@d",
            "#$%()*+,-.;=?[\\]^_`{|}~!@d",
            Some("#$%()*+,-.;=?[\\]^_`{|}~!"),
            "d",
            None,
        ),
        ("ΣΑΣ@x", "σασ@x", Some("σασ"), "x", None),
        (
            "user@ÉXAMPLE.com",
            "user@éxample.com",
            Some("user"),
            "éxample.com",
            None,
        ),
        (
            "u@例え。テスト",
            "u@例え.テスト",
            Some("u"),
            "例え.テスト",
            None,
        ),
        (
            "u@例え．テスト．",
            "u@例え.テスト",
            Some("u"),
            "例え.テスト",
            None,
        ),
        ("a@b/ℌ", "a@b/H", Some("a"), "b", Some("H")),
        ("a@b/x\u{AD}y", "a@b/xy", Some("a"), "b", Some("xy")),
        (
            "a@b/Ünïcödé Résource",
            "a@b/Ünïcödé Résource",
            Some("a"),
            "b",
            Some("Ünïcödé Résource"),
        ),
    ];

    #[test]
    fn core_stanza_11_valid_table() {
        for &(input, norm, local, domain, resource) in VALID {
            let j = Jid::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(j.as_str(), norm, "{input:?}");
            assert_eq!(j.local(), local, "{input:?}");
            assert_eq!(j.domain(), domain, "{input:?}");
            assert_eq!(j.resource(), resource, "{input:?}");
            assert_eq!(j.is_bare(), resource.is_none(), "{input:?}");
            // A normalized JID is a fixed point.
            assert_eq!(Jid::parse(norm), Ok(j.clone()), "{input:?}");
            assert_eq!(Jid::new(local, domain, resource), Ok(j), "{input:?}");
        }
    }

    #[test]
    fn core_stanza_11_invalid_table() {
        let long = "a".repeat(1024);
        let long_u = "ü".repeat(512);
        let long_domain = format!("{}bb", "a.".repeat(511));
        let cases: Vec<(String, JidError)> = vec![
            ("".into(), JidError::Empty),
            ("@d".into(), JidError::EmptyLocal),
            ("@".into(), JidError::EmptyLocal),
            ("a@".into(), JidError::EmptyDomain),
            ("a@/r".into(), JidError::EmptyDomain),
            ("/r".into(), JidError::EmptyDomain),
            ("a@.".into(), JidError::EmptyDomain),
            ("a@b/".into(), JidError::EmptyResource),
            ("a@b@c".into(), JidError::BadDomain),
            ("\"a\"@b".into(), JidError::BadLocal),
            ("a b@c".into(), JidError::BadLocal),
            ("a&b@c".into(), JidError::BadLocal),
            ("a'b@c".into(), JidError::BadLocal),
            ("a:b@c".into(), JidError::BadLocal),
            ("a<b@c".into(), JidError::BadLocal),
            ("a>b@c".into(), JidError::BadLocal),
            ("a\u{7}@c".into(), JidError::BadLocal),
            ("a\u{A0}b@c".into(), JidError::BadLocal),
            ("\u{5D0}a@c".into(), JidError::BadLocal),
            ("a\u{E000}@c".into(), JidError::BadLocal),
            ("\u{AD}@c".into(), JidError::EmptyLocal),
            ("a@b c".into(), JidError::BadDomain),
            ("a@b_c".into(), JidError::BadDomain),
            ("a@b..c".into(), JidError::BadDomain),
            ("a@.b".into(), JidError::BadDomain),
            ("a@b..".into(), JidError::BadDomain),
            ("a@b:5222".into(), JidError::BadDomain),
            ("a@[::1".into(), JidError::BadDomain),
            ("a@[zz]".into(), JidError::BadDomain),
            ("a@[::1]x".into(), JidError::BadDomain),
            ("a@exa\u{A0}mple.com".into(), JidError::BadDomain),
            ("a@é xample".into(), JidError::BadDomain),
            ("a\u{FF20}b@c".into(), JidError::BadLocal),
            ("a@b\u{FF0F}c".into(), JidError::BadDomain),
            ("a@b\u{FF20}c".into(), JidError::BadDomain),
            ("a@b/x\u{0}".into(), JidError::BadResource),
            ("a@b/x\u{7f}".into(), JidError::BadResource),
            ("a@b/\u{E000}".into(), JidError::BadResource),
            ("a@b/\u{2028}".into(), JidError::BadResource),
            (format!("{long}@b"), JidError::LocalTooLong),
            (format!("{long_u}@b"), JidError::LocalTooLong),
            (format!("a@{long_domain}"), JidError::DomainTooLong),
            (format!("a@b/{long}"), JidError::ResourceTooLong),
            (format!("a@b/{long_u}"), JidError::ResourceTooLong),
        ];
        for (input, err) in cases {
            assert_eq!(Jid::parse(&input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn core_stanza_11_max_lengths_accepted() {
        let max = "a".repeat(MAX_PART_LEN);
        let max_domain = format!("{}b", "a.".repeat(511));
        assert_eq!(max_domain.len(), MAX_PART_LEN);
        let j = Jid::parse(&format!("{max}@{max_domain}/{max}")).expect("max lengths");
        assert_eq!(j.local(), Some(max.as_str()));
        assert_eq!(j.domain(), max_domain);
        assert_eq!(j.resource(), Some(max.as_str()));
        // A trailing dot does not count against the domain length.
        assert!(Jid::parse(&format!("{max_domain}.")).is_ok());
    }

    #[test]
    fn core_stanza_11_every_cut_parses_or_fails_cleanly() {
        let input = "JÜRGEN@Example.COM/Laptop/ü@x";
        for (cut, _) in input.char_indices() {
            for part in [&input[..cut], &input[cut..]] {
                if let Ok(j) = Jid::parse(part) {
                    assert_eq!(Jid::parse(j.as_str()), Ok(j.clone()), "{part:?}");
                    assert!(j.as_str().starts_with(j.bare_str()));
                }
            }
        }
    }

    #[test]
    fn core_stanza_20_case_rules() {
        let a = Jid::parse("USER@EXAMPLE.COM/Res").expect("valid");
        let b = Jid::parse("user@example.com/Res").expect("valid");
        let c = Jid::parse("user@example.com/res").expect("valid");
        assert_eq!(a, b);
        assert_ne!(b, c);
        assert_eq!(a.to_bare(), c.to_bare());
        let mut set = std::collections::HashSet::new();
        set.insert(a);
        assert!(set.contains(&b));
        assert!(!set.contains(&c));
    }

    #[test]
    fn core_stanza_20_ascii_fast_path_matches_stringprep() {
        for c in (0u8..0x80).map(char::from) {
            let s = format!("a{c}B");
            let ours = nodeprep(&s).ok().map(Cow::into_owned);
            let reference = stringprep::nodeprep(&s).ok().map(Cow::into_owned);
            assert_eq!(ours, reference, "nodeprep {s:?}");
            let ours = resourceprep(&s).ok().map(Cow::into_owned);
            let reference = stringprep::resourceprep(&s).ok().map(Cow::into_owned);
            assert_eq!(ours, reference, "resourceprep {s:?}");
        }
    }

    #[test]
    fn fast_path_borrows_when_normalized() {
        assert!(matches!(nodeprep("user"), Ok(Cow::Borrowed("user"))));
        assert!(matches!(nodeprep("User"), Ok(Cow::Owned(_))));
        assert!(matches!(
            nameprep_domain("example.com"),
            Ok(Cow::Borrowed("example.com"))
        ));
        assert!(matches!(
            nameprep_domain("example.com."),
            Ok(Cow::Borrowed("example.com"))
        ));
        assert!(matches!(
            resourceprep("Laptop"),
            Ok(Cow::Borrowed("Laptop"))
        ));
    }

    #[test]
    fn core_bind_05_resourceprep() {
        assert_eq!(resourceprep(""), Err(JidError::EmptyResource));
        assert_eq!(
            resourceprep(&"r".repeat(1024)),
            Err(JidError::ResourceTooLong)
        );
        assert_eq!(resourceprep("a\u{1}"), Err(JidError::BadResource));
        assert_eq!(resourceprep("\u{E000}"), Err(JidError::BadResource));
        assert_eq!(
            resourceprep("Mixed Case / with @"),
            Ok(Cow::Borrowed("Mixed Case / with @"))
        );
        let j = Jid::parse("u@d/old").expect("valid");
        let k = j.with_resource("Ｎｅｗ").expect("valid");
        assert_eq!(k.as_str(), "u@d/New");
        assert_eq!(j.with_resource(""), Err(JidError::EmptyResource));
        assert_eq!(
            Jid::parse("d")
                .expect("valid")
                .with_resource("r")
                .map(|j| j.to_string()),
            Ok("d/r".to_string())
        );
    }

    #[test]
    fn bare_forms() {
        let j = Jid::parse("u@d/r/x").expect("valid");
        assert_eq!(j.bare_str(), "u@d");
        assert!(std::ptr::eq(j.bare_str().as_ptr(), j.as_str().as_ptr()));
        let b = j.to_bare();
        assert!(b.is_bare());
        assert_eq!(b.as_str(), "u@d");
        assert_eq!(b.local(), Some("u"));
        assert_eq!(b.domain(), "d");
        assert_eq!(b.resource(), None);
        assert_eq!(b.to_bare(), b);
        let d = Jid::parse("d/r").expect("valid");
        assert_eq!(d.bare_str(), "d");
        assert_eq!(d.local(), None);
    }

    #[test]
    fn new_preps_parts() {
        let j = Jid::new(Some("Ü"), "EXAMPLE.org.", Some("R")).expect("valid");
        assert_eq!(j.as_str(), "ü@example.org/R");
        assert_eq!(Jid::new(Some(""), "d", None), Err(JidError::EmptyLocal));
        assert_eq!(Jid::new(None, "", None), Err(JidError::EmptyDomain));
        assert_eq!(Jid::new(Some("a@b"), "d", None), Err(JidError::BadLocal));
        assert_eq!(Jid::new(None, "d/r", None), Err(JidError::BadDomain));
    }

    #[test]
    fn traits() {
        let j: Jid = "A@B/C".parse().expect("valid");
        assert_eq!(j.to_string(), "a@b/C");
        assert_eq!(format!("{j:?}"), "Jid(\"a@b/C\")");
        assert_eq!(AsRef::<str>::as_ref(&j), "a@b/C");
        assert!(Jid::parse("a@b").expect("valid") < Jid::parse("a@b/c").expect("valid"));
        assert_eq!(
            JidError::BadLocal.to_string(),
            "localpart violates nodeprep"
        );
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn jid_size_is_pinned() {
        assert_eq!(std::mem::size_of::<Jid>(), 24);
        assert_eq!(std::mem::size_of::<Option<Jid>>(), 24);
        assert_eq!(std::mem::size_of::<Result<Jid, JidError>>(), 24);
    }
}
