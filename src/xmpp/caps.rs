//! XEP-0115: Entity Capabilities — reading `<c/>`, computing and checking the verification
//! string, and a bounded cache of verified capabilities with query de-duplication.
//!
//! Everything here is pure: the caller sends the disco#info query when
//! [`CapsCache::begin_query`] says [`QueryStart::Send`], checks the answer with [`verify`] and
//! reports it with [`CapsCache::finish_query`] or [`CapsCache::fail_query`].

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use ahash::AHashMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::dataform::{self, FormType};
use super::ns::DISCO_INFO;
use crate::xml::Element;

/// The `http://jabber.org/protocol/caps` namespace of the `<c/>` element (XEP-0115 §4).
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";

/// Most waiters queued behind one outstanding query; later ones are refused.
pub const MAX_WAITERS: usize = 64;

/// The attributes of a `<c xmlns='http://jabber.org/protocol/caps'/>` element (XEP-0115 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    /// The hash function's IANA name; empty for the legacy format (§13), which cannot be
    /// verified and should be ignored.
    pub hash: String,
    /// The URI identifying the software.
    pub node: String,
    /// The verification string.
    pub ver: String,
}

/// A hash function usable for the verification string, by its IANA "Hash Function Textual
/// Names" name (§5.1 step 9, §9.1: SHA-1 is mandatory to implement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapsAlgo {
    /// `sha-1`.
    Sha1,
    /// `sha-256`.
    Sha256,
}

/// Why a disco#info response cannot yield a verification string (§5.4 step 3: the response
/// is "ill-formed"), in the order the steps are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapsError {
    /// The element is not `<query xmlns='http://jabber.org/protocol/disco#info'/>`.
    NotDiscoInfo,
    /// §5.4 3.3: two identities with the same category/type/lang/name.
    DuplicateIdentity,
    /// §5.4 3.4: two features with the same `var`.
    DuplicateFeature,
    /// §5.4 3.5: two extended forms with the same FORM_TYPE.
    DuplicateFormType,
    /// §5.4 3.5: a FORM_TYPE field with `<value/>` elements of different character data.
    ConflictingFormTypeValues,
}

impl fmt::Display for CapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapsError::NotDiscoInfo => "not a disco#info query",
            CapsError::DuplicateIdentity => "duplicate identity",
            CapsError::DuplicateFeature => "duplicate feature",
            CapsError::DuplicateFormType => "two forms with the same FORM_TYPE",
            CapsError::ConflictingFormTypeValues => "FORM_TYPE with different values",
        })
    }
}

impl std::error::Error for CapsError {}

impl CapsAlgo {
    /// The algorithm for an IANA hash name as used in the `hash` attribute (case-sensitive;
    /// None for names we do not implement).
    pub fn from_name(name: &str) -> Option<CapsAlgo> {
        match name {
            "sha-1" => Some(CapsAlgo::Sha1),
            "sha-256" => Some(CapsAlgo::Sha256),
            _ => None,
        }
    }

    /// The IANA name, as written in the `hash` attribute.
    pub fn name(self) -> &'static str {
        match self {
            CapsAlgo::Sha1 => "sha-1",
            CapsAlgo::Sha256 => "sha-256",
        }
    }
}

/// Reads a `<c xmlns='http://jabber.org/protocol/caps'/>` element (§4).
///
/// None when `c` is another element or lacks `node` or `ver` (both REQUIRED, also in the
/// legacy format). A `<c/>` without `hash` is the legacy format (§13) and comes back with an
/// empty [`Caps::hash`], so the caller can ignore it; an unknown hash name is kept as is
/// ([`verify`] refuses it).
pub fn parse_c(c: &Element) -> Option<Caps> {
    if !c.is("c", NS_CAPS) {
        return None;
    }
    Some(Caps {
        hash: c.attr("hash").unwrap_or_default().to_owned(),
        node: c.attr("node")?.to_owned(),
        ver: c.attr("ver")?.to_owned(),
    })
}

/// Whether the disco#info response `info` hashes to `caps.ver` with `caps.hash` (§5.4 step 3).
///
/// False for an unsupported or absent (legacy) hash name, an ill-formed response (see
/// [`ver_string`]) and a mismatch.
pub fn verify(info: &Element, caps: &Caps) -> bool {
    CapsAlgo::from_name(&caps.hash)
        .is_some_and(|algo| ver_hash(info, algo).is_ok_and(|ver| ver == caps.ver))
}

/// The verification string of a disco#info response: base64 (RFC 4648 §4, padded) of the
/// `algo` digest of [`ver_string`] (§5.1 steps 8 and 9).
pub fn ver_hash(info: &Element, algo: CapsAlgo) -> Result<String, CapsError> {
    let s = ver_string(info)?;
    Ok(match algo {
        CapsAlgo::Sha1 => STANDARD.encode(Sha1::digest(s.as_bytes())),
        CapsAlgo::Sha256 => STANDARD.encode(Sha256::digest(s.as_bytes())),
    })
}

/// The string S of §5.1 for `<query xmlns='http://jabber.org/protocol/disco#info'/>`, before
/// hashing, after the well-formedness checks of §5.4 step 3.
///
/// All sorting is bytewise ("i;octet", RFC 4790 §9.3), which is how `str` compares. Every
/// factor is the parsed (unescaped) text, taken once: `&amp;lt;` on the wire is the four
/// characters `&lt;` in S, never `<` (the warning after §5.1).
///
/// - Identities, sorted by category, type, `xml:lang` and then name (only so that the order
///   never depends on the document), each `category/type/lang/name<`; a missing attribute is
///   empty. Two equal identities are [`CapsError::DuplicateIdentity`] (§5.4 3.3).
/// - Features, sorted, each `var<`; a `<feature/>` without `var` is skipped. Two equal are
///   [`CapsError::DuplicateFeature`] (§5.4 3.4).
/// - XEP-0128 forms (`<x xmlns='jabber:x:data' type='result'/>` children of the query),
///   sorted by FORM_TYPE: the FORM_TYPE value `<`, then the other fields with a `var`, sorted
///   by `var` (then by values, for the same reason as names), each `var<` and its values
///   sorted, each `value<`. Fields without `var` and `<reported/>`/`<item/>` are not part of
///   it. Following §5.4 in its order: step 3.5 first — two forms with the same FORM_TYPE are
///   [`CapsError::DuplicateFormType`], a FORM_TYPE field whose `<value/>`s differ is
///   [`CapsError::ConflictingFormTypeValues`] (repeated equal values are fine); then step 3.6
///   — a form without a FORM_TYPE field (or with one without a value), or whose FORM_TYPE
///   field is not `type='hidden'`, is ignored and the rest is processed. Forms of another
///   `type` are not XEP-0128 forms and are ignored likewise.
pub fn ver_string(info: &Element) -> Result<String, CapsError> {
    if !info.is("query", DISCO_INFO) {
        return Err(CapsError::NotDiscoInfo);
    }
    let mut identities: Vec<[&str; 4]> = info
        .elements()
        .filter(|e| e.is("identity", DISCO_INFO))
        .map(|e| {
            let attr = |name| e.attr(name).unwrap_or_default();
            [
                attr("category"),
                attr("type"),
                attr("xml:lang"),
                attr("name"),
            ]
        })
        .collect();
    identities.sort_unstable();
    if identities.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
        return Err(CapsError::DuplicateIdentity);
    }
    let mut features: Vec<&str> = info
        .elements()
        .filter(|e| e.is("feature", DISCO_INFO))
        .filter_map(|e| e.attr("var"))
        .collect();
    features.sort_unstable();
    if features.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
        return Err(CapsError::DuplicateFeature);
    }
    let mut forms = Vec::new();
    for x in info.elements().filter(|e| e.is("x", dataform::NS)) {
        if x.attr("type").and_then(FormType::parse) == Some(FormType::Result) {
            if let Some(form) = extended_form(x)? {
                forms.push(form);
            }
        }
    }
    forms.sort_unstable_by(|a, b| a.form_type.cmp(&b.form_type));
    if forms
        .windows(2)
        .any(|w| matches!(w, [a, b] if a.form_type == b.form_type))
    {
        return Err(CapsError::DuplicateFormType);
    }

    let mut s = String::new();
    for [category, ty, lang, name] in identities {
        for part in [category, "/", ty, "/", lang, "/", name, "<"] {
            s.push_str(part);
        }
    }
    for feature in features {
        s.push_str(feature);
        s.push('<');
    }
    for form in forms.iter().filter(|f| f.hidden) {
        s.push_str(&form.form_type);
        s.push('<');
        for (var, values) in &form.fields {
            s.push_str(var);
            s.push('<');
            for value in values {
                s.push_str(value);
                s.push('<');
            }
        }
    }
    Ok(s)
}

/// The node names N of every `N+notify` feature of a disco#info response (XEP-0163 §4,
/// "filtered notifications"), sorted and without duplicates; an empty N is not a node.
pub fn notify_nodes(info: &Element) -> Vec<String> {
    let mut nodes: Vec<String> = info
        .elements()
        .filter(|e| e.is("feature", DISCO_INFO))
        .filter_map(|e| e.attr("var")?.strip_suffix("+notify"))
        .filter(|node| !node.is_empty())
        .map(str::to_owned)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// One XEP-0128 form as §5.1 step 7 reads it.
struct ExtendedForm<'a> {
    form_type: String,
    /// Whether every FORM_TYPE field is `type='hidden'` (§5.4 3.6).
    hidden: bool,
    /// (var, values sorted) other than FORM_TYPE, sorted.
    fields: Vec<(&'a str, Vec<String>)>,
}

/// Reads `x` for §5.1 step 7; None when it has no FORM_TYPE value (§5.4 3.6).
///
/// `dataform::Form::parse` does not fit: it refuses a repeated `var` (XEP-0115 hashes every
/// field), keeps one FORM_TYPE value (§5.4 3.5 needs them all) and drops the field's type.
fn extended_form(x: &Element) -> Result<Option<ExtendedForm<'_>>, CapsError> {
    let mut form_type: Vec<String> = Vec::new();
    let mut hidden = true;
    let mut fields = Vec::new();
    for field in x.elements().filter(|e| e.is("field", dataform::NS)) {
        let Some(var) = field.attr("var") else {
            continue;
        };
        let mut values: Vec<String> = field
            .elements()
            .filter(|e| e.is("value", dataform::NS))
            .map(Element::text)
            .collect();
        if var == "FORM_TYPE" {
            hidden &= field.attr("type") == Some("hidden");
            form_type.append(&mut values);
        } else {
            values.sort_unstable();
            fields.push((var, values));
        }
    }
    let mut values = form_type.into_iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|v| v != first) {
        return Err(CapsError::ConflictingFormTypeValues);
    }
    fields.sort_unstable();
    Ok(Some(ExtendedForm {
        form_type: first,
        hidden,
        fields,
    }))
}

/// What a verified capability set means to the server: the PEP nodes it wants notifications
/// for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapsInfo {
    /// Nodes with a `+notify` feature, sorted and without duplicates ([`CapsInfo::wants`]
    /// relies on it; [`CapsInfo::new`] ensures it).
    pub notify: Vec<String>,
}

impl CapsInfo {
    /// A set from any list of notify nodes (sorted and deduplicated here).
    pub fn new(mut notify: Vec<String>) -> CapsInfo {
        notify.sort_unstable();
        notify.dedup();
        CapsInfo { notify }
    }

    /// The set a disco#info response describes ([`notify_nodes`]).
    pub fn from_disco(info: &Element) -> CapsInfo {
        CapsInfo {
            notify: notify_nodes(info),
        }
    }

    /// Whether `node+notify` is among the features.
    pub fn wants(&self, node: &str) -> bool {
        self.notify
            .binary_search_by(|n| n.as_str().cmp(node))
            .is_ok()
    }
}

/// The answer of [`CapsCache::begin_query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryStart {
    /// The verification string is cached: use this.
    AlreadyKnown(Rc<CapsInfo>),
    /// The waiter is the first: the caller sends the disco#info query and later reports it
    /// with [`CapsCache::finish_query`] or [`CapsCache::fail_query`].
    Send,
    /// A query for this verification string is already out; the waiter is queued behind it.
    Joined,
    /// Too many distinct queries pending, or [`MAX_WAITERS`] already waiting on this one; the
    /// waiter was not kept.
    Refused,
}

/// A bounded cache of verified capabilities, keyed by (algorithm, verification string), with
/// the queries in flight and who waits on each (§8.2: cache globally, query once).
///
/// At most `max_entries` entries (the least recently used go first; [`CapsCache::get`],
/// [`CapsCache::begin_query`] on a hit and [`CapsCache::insert`] count as use), at most
/// `max_pending` verification strings being queried, at most [`MAX_WAITERS`] waiters on each.
/// Every operation is O(log n). `W` is whatever identifies a waiter to the caller.
#[derive(Debug)]
pub struct CapsCache<W> {
    max_entries: usize,
    max_pending: usize,
    entries: PerAlgo<AHashMap<String, Entry>>,
    /// Last use → key; the first entry is the least recently used.
    lru: BTreeMap<u64, (CapsAlgo, String)>,
    clock: u64,
    pending: PerAlgo<AHashMap<String, Vec<W>>>,
}

#[derive(Debug)]
struct Entry {
    info: Rc<CapsInfo>,
    /// Its key in `lru`.
    stamp: u64,
}

/// One map per algorithm, so that lookups borrow the `&str` instead of building a key.
#[derive(Debug, Default)]
struct PerAlgo<T> {
    sha1: T,
    sha256: T,
}

impl<T> PerAlgo<T> {
    fn of_mut(&mut self, algo: CapsAlgo) -> &mut T {
        match algo {
            CapsAlgo::Sha1 => &mut self.sha1,
            CapsAlgo::Sha256 => &mut self.sha256,
        }
    }
}

impl<W> CapsCache<W> {
    /// An empty cache holding at most `max_entries` verified entries and `max_pending`
    /// verification strings being queried.
    pub fn new(max_entries: usize, max_pending: usize) -> CapsCache<W> {
        CapsCache {
            max_entries,
            max_pending,
            entries: PerAlgo::default(),
            lru: BTreeMap::new(),
            clock: 0,
            pending: PerAlgo::default(),
        }
    }

    /// The cached capabilities for `ver`, marking them used.
    pub fn get(&mut self, algo: CapsAlgo, ver: &str) -> Option<Rc<CapsInfo>> {
        let entry = self.entries.of_mut(algo).get_mut(ver)?;
        let stamp = self.clock;
        self.clock += 1;
        if let Some(key) = self.lru.remove(&entry.stamp) {
            self.lru.insert(stamp, key);
        }
        entry.stamp = stamp;
        Some(Rc::clone(&entry.info))
    }

    /// Caches verified capabilities for `ver` (replacing any), as the most recently used, and
    /// evicts the least recently used beyond `max_entries`. Returns the shared value (also
    /// when `max_entries` is 0 and nothing is kept).
    pub fn insert(&mut self, algo: CapsAlgo, ver: &str, info: CapsInfo) -> Rc<CapsInfo> {
        let info = Rc::new(info);
        let stamp = self.clock;
        self.clock += 1;
        let map = self.entries.of_mut(algo);
        match map.get_mut(ver) {
            Some(entry) => {
                let key = self
                    .lru
                    .remove(&entry.stamp)
                    .unwrap_or_else(|| (algo, ver.to_owned()));
                self.lru.insert(stamp, key);
                entry.info = Rc::clone(&info);
                entry.stamp = stamp;
            }
            None => {
                map.insert(
                    ver.to_owned(),
                    Entry {
                        info: Rc::clone(&info),
                        stamp,
                    },
                );
                self.lru.insert(stamp, (algo, ver.to_owned()));
            }
        }
        while self.lru.len() > self.max_entries {
            let Some((_, (algo, ver))) = self.lru.pop_first() else {
                break;
            };
            self.entries.of_mut(algo).remove(&ver);
        }
        info
    }

    /// Starts resolving `ver` for `waiter`: the cached value, or whether the caller must send
    /// the query ([`QueryStart::Send`], first waiter), joins one already out, or is refused.
    ///
    /// A waiter that is refused is dropped; the same waiter may join twice (the caller
    /// decides whether that matters).
    pub fn begin_query(&mut self, algo: CapsAlgo, ver: &str, waiter: W) -> QueryStart {
        if let Some(info) = self.get(algo, ver) {
            return QueryStart::AlreadyKnown(info);
        }
        let pending = self.pending_len();
        let map = self.pending.of_mut(algo);
        if let Some(waiters) = map.get_mut(ver) {
            if waiters.len() >= MAX_WAITERS {
                return QueryStart::Refused;
            }
            waiters.push(waiter);
            return QueryStart::Joined;
        }
        if pending >= self.max_pending {
            return QueryStart::Refused;
        }
        map.insert(ver.to_owned(), vec![waiter]);
        QueryStart::Send
    }

    /// Ends the query for `ver`: caches `result` when it is Some (the caller has verified it
    /// with [`verify`]; cached even if no query was pending) and returns the waiters, in the
    /// order they came. A second call for the same query returns none.
    pub fn finish_query(&mut self, algo: CapsAlgo, ver: &str, result: Option<CapsInfo>) -> Vec<W> {
        let waiters = self.pending.of_mut(algo).remove(ver).unwrap_or_default();
        if let Some(info) = result {
            self.insert(algo, ver, info);
        }
        waiters
    }

    /// Ends the query for `ver` without a result (no answer, an error, or a response that did
    /// not verify) and returns its waiters; nothing is cached.
    pub fn fail_query(&mut self, algo: CapsAlgo, ver: &str) -> Vec<W> {
        self.finish_query(algo, ver, None)
    }

    /// How many verified entries are cached.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Whether no verified entry is cached.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// How many verification strings are being queried.
    pub fn pending_len(&self) -> usize {
        self.pending.sha1.len() + self.pending.sha256.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_element, Limits, StreamNs};

    fn xml(s: &str) -> Element {
        parse_element(
            s.as_bytes(),
            &StreamNs::new("jabber:client"),
            &Limits::default(),
        )
        .expect("well-formed")
    }

    /// A disco#info query with these children.
    fn query(children: &str) -> Element {
        xml(&format!(
            "<query xmlns='http://jabber.org/protocol/disco#info'>{children}</query>"
        ))
    }

    const SIMPLE: &str = "<iq from='romeo@montague.lit/orchard' id='disco1' \
         to='juliet@capulet.lit/chamber' type='result'>\
         <query xmlns='http://jabber.org/protocol/disco#info' \
         node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
         <identity category='client' name='Exodus 0.9.1' type='pc'/>\
         <feature var='http://jabber.org/protocol/caps'/>\
         <feature var='http://jabber.org/protocol/disco#info'/>\
         <feature var='http://jabber.org/protocol/disco#items'/>\
         <feature var='http://jabber.org/protocol/muc'/>\
         </query></iq>";

    /// The §5.3 example as printed, whitespace and all.
    const COMPLEX: &str = "<iq from='benvolio@capulet.lit/230193'
    id='disco1'
    to='juliet@capulet.lit/chamber'
    type='result'>
  <query xmlns='http://jabber.org/protocol/disco#info'
         node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
    <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
    <identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
    <x xmlns='jabber:x:data' type='result'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:dataforms:softwareinfo</value>
      </field>
      <field var='ip_version' type='text-multi' >
        <value>ipv4</value>
        <value>ipv6</value>
      </field>
      <field var='os'>
        <value>Mac</value>
      </field>
      <field var='os_version'>
        <value>10.5.1</value>
      </field>
      <field var='software'>
        <value>Psi</value>
      </field>
      <field var='software_version'>
        <value>0.11</value>
      </field>
    </x>
  </query>
</iq>";

    const COMPLEX_S: &str = "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<\
        http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<\
        http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<\
        urn:xmpp:dataforms:softwareinfo<\
        ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<";

    fn info_of(iq: &str) -> Element {
        xml(iq)
            .child("query", DISCO_INFO)
            .cloned()
            .expect("a disco#info query")
    }

    fn caps(hash: &str, ver: &str) -> Caps {
        Caps {
            hash: hash.into(),
            node: "http://example.org".into(),
            ver: ver.into(),
        }
    }

    /// The §5.1 string of a query with one identity, one feature and these forms.
    fn with_forms(forms: &str) -> Result<String, CapsError> {
        ver_string(&query(&format!(
            "<identity category='client' type='pc'/><feature var='f'/>{forms}"
        )))
    }

    /// `<x type='result'>` with a FORM_TYPE field (`ft` is its attributes and children) and
    /// one field.
    fn form(ft: &str) -> String {
        format!(
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'{ft}</field>\
             <field var='a'><value>1</value></field></x>"
        )
    }

    #[test]
    fn section_5_2_simple_generation_example() {
        let info = info_of(SIMPLE);
        assert_eq!(
            ver_string(&info).as_deref(),
            Ok("client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
                http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
                http://jabber.org/protocol/muc<")
        );
        assert_eq!(
            ver_hash(&info, CapsAlgo::Sha1).as_deref(),
            Ok("QgayPKawpkPSDYmwT/WM94uAlu0=")
        );
        assert!(verify(
            &info,
            &caps("sha-1", "QgayPKawpkPSDYmwT/WM94uAlu0=")
        ));
        // Document order does not matter.
        let shuffled = query(
            "<feature var='http://jabber.org/protocol/muc'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/caps'/>",
        );
        assert_eq!(ver_string(&shuffled), ver_string(&info));
    }

    #[test]
    fn section_5_3_complex_generation_example() {
        let info = info_of(COMPLEX);
        assert_eq!(ver_string(&info).as_deref(), Ok(COMPLEX_S));
        assert_eq!(
            ver_hash(&info, CapsAlgo::Sha1).as_deref(),
            Ok("q07IKJEyjvHSyhy//CH0CxmKi8w=")
        );
        assert!(verify(
            &info,
            &caps("sha-1", "q07IKJEyjvHSyhy//CH0CxmKi8w=")
        ));
        // Re-serialized and parsed again: the same.
        let again = xml(&info.to_string_in("jabber:client"));
        assert_eq!(ver_string(&again).as_deref(), Ok(COMPLEX_S));
    }

    #[test]
    fn section_5_1_sorting_is_bytewise() {
        // i;octet: uppercase before lowercase, multi-byte UTF-8 after ASCII, a prefix first,
        // and identities by category, then type, then lang (absent = empty, first), then name.
        let info = query(
            "<identity category='client' type='pc' xml:lang='en' name='b'/>\
             <identity category='client' type='pc' name='z'/>\
             <identity category='client' type='pc' xml:lang='en' name='a'/>\
             <identity category='client' type='bot'/>\
             <identity category='automation' type='zz'/>\
             <feature var='é'/><feature var='z'/><feature var='Z'/><feature var='za'/>",
        );
        assert_eq!(
            ver_string(&info).as_deref(),
            Ok(
                "automation/zz//<client/bot//<client/pc//z<client/pc/en/a<client/pc/en/b<\
                Z<z<za<é<"
            )
        );
        // Components are compared one by one, not as the joined string ('-' < '/').
        let info = query(
            "<identity category='a' type='x'/><identity category='a-b' type='x'/>\
             <identity category='a' type='x-y'/>",
        );
        assert_eq!(ver_string(&info).as_deref(), Ok("a/x//<a/x-y//<a-b/x//<"));
    }

    #[test]
    fn section_5_1_forms_sorted_by_form_type_fields_by_var_values_sorted() {
        let s = with_forms(
            "<x xmlns='jabber:x:data' type='result'>\
             <field var='z'><value>2</value><value>10</value><value/></field>\
             <field var='FORM_TYPE' type='hidden'><value>urn:b</value></field>\
             <field var='a'/><field type='fixed'><value>no var</value></field>\
             <reported><field var='r'/></reported><item><field var='i'><value>x</value>\
             </field></item></x>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:a</value></field>\
             <field var='k'><value>v</value></field></x>",
        );
        assert_eq!(s.as_deref(), Ok("client/pc//<f<urn:a<k<v<urn:b<a<z<<10<2<"));
        // A var repeated: both hashed, in an order that does not depend on the document.
        let twice = |first: &str, second: &str| {
            with_forms(&format!(
                "<x xmlns='jabber:x:data' type='result'>\
                 <field var='FORM_TYPE' type='hidden'><value>u</value></field>\
                 {first}{second}</x>"
            ))
        };
        let a = "<field var='d'><value>2</value></field>";
        let b = "<field var='d'><value>1</value></field>";
        assert_eq!(twice(a, b).as_deref(), Ok("client/pc//<f<u<d<1<d<2<"));
        assert_eq!(twice(a, b), twice(b, a));
    }

    // The note after §5.1: factors are the character data, not re-escaped or decoded again.
    #[test]
    fn section_5_1_escaping_uses_the_raw_text() {
        let info = query(
            "<identity category='client' type='pc' name='a&lt;b &amp;lt; &gt;&amp;'/>\
             <feature var='urn:x&amp;lt;y'/>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:&lt;</value></field>\
             <field var='v&amp;'><value>&lt;&amp;lt;</value></field></x>",
        );
        assert_eq!(
            ver_string(&info).as_deref(),
            Ok("client/pc//a<b &lt; >&<urn:x&lt;y<urn:<<v&<<&lt;<")
        );
        // `&amp;lt;` and `&lt;` are different factors, so different hashes.
        let lt = query("<identity category='client' type='pc' name='&lt;'/>");
        let amp_lt = query("<identity category='client' type='pc' name='&amp;lt;'/>");
        assert_ne!(
            ver_hash(&lt, CapsAlgo::Sha1),
            ver_hash(&amp_lt, CapsAlgo::Sha1)
        );
    }

    #[test]
    fn section_5_1_sha_256() {
        // Computed independently (Python hashlib) from the §5.2 string.
        let info = info_of(SIMPLE);
        let want = "Wr6IGEKhx6b9627gBmi/cCmpxXBc/GYq5zWuYfWGWoc=";
        assert_eq!(ver_hash(&info, CapsAlgo::Sha256).as_deref(), Ok(want));
        assert!(verify(&info, &caps("sha-256", want)));
        assert!(!verify(&info, &caps("sha-1", want)));
        assert!(!verify(
            &info,
            &caps("sha-256", "QgayPKawpkPSDYmwT/WM94uAlu0=")
        ));
    }

    #[test]
    fn section_5_4_step_2_unknown_or_missing_hash_is_not_verified() {
        let info = info_of(SIMPLE);
        for hash in ["", "SHA-1", "sha1", "md5", "sha-512"] {
            assert!(
                !verify(&info, &caps(hash, "QgayPKawpkPSDYmwT/WM94uAlu0=")),
                "{hash}"
            );
        }
        assert!(!verify(
            &info,
            &caps("sha-1", "QgayPKawpkPSDYmwT/WM94uAlu0")
        ));
    }

    #[test]
    fn section_5_4_step_3_3_duplicate_identity() {
        let dup = "<identity category='client' type='pc' xml:lang='en' name='N'/>";
        let info = query(&format!("{dup}<feature var='f'/>{dup}"));
        assert_eq!(ver_string(&info), Err(CapsError::DuplicateIdentity));
        assert_eq!(
            ver_hash(&info, CapsAlgo::Sha1),
            Err(CapsError::DuplicateIdentity)
        );
        // Differing only in lang, or only in name: not duplicates.
        for other in [
            "<identity category='client' type='pc' xml:lang='de' name='N'/>",
            "<identity category='client' type='pc' name='N'/>",
            "<identity category='client' type='pc' xml:lang='en' name='M'/>",
        ] {
            assert!(
                ver_string(&query(&format!("{dup}{other}"))).is_ok(),
                "{other}"
            );
        }
    }

    #[test]
    fn section_5_4_step_3_4_duplicate_feature() {
        let info = query("<feature var='a'/><feature var='b'/><feature var='a'/>");
        assert_eq!(ver_string(&info), Err(CapsError::DuplicateFeature));
        // Features compare as character data: `&amp;` and `&#38;` are the same.
        let info = query("<feature var='a&amp;b'/><feature var='a&#38;b'/>");
        assert_eq!(ver_string(&info), Err(CapsError::DuplicateFeature));
    }

    #[test]
    fn section_5_4_step_3_5_duplicate_form_type() {
        let hidden = " type='hidden'><value>urn:t</value>";
        let twice = format!("{}{}", form(hidden), form(hidden));
        assert_eq!(with_forms(&twice), Err(CapsError::DuplicateFormType));
        // Step 3.5 comes before 3.6: a second form of that FORM_TYPE counts even when not
        // hidden.
        let mixed = format!("{}{}", form(hidden), form("><value>urn:t</value>"));
        assert_eq!(with_forms(&mixed), Err(CapsError::DuplicateFormType));
        // Forms of another type are not XEP-0128 forms: not counted.
        let submit = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' \
                      type='hidden'><value>urn:t</value></field></x>";
        assert_eq!(
            with_forms(&format!("{}{submit}", form(hidden))).as_deref(),
            Ok("client/pc//<f<urn:t<a<1<")
        );
    }

    #[test]
    fn section_5_4_step_3_5_form_type_values_differ() {
        let two = " type='hidden'><value>urn:a</value><value>urn:b</value>";
        assert_eq!(
            with_forms(&form(two)),
            Err(CapsError::ConflictingFormTypeValues)
        );
        // Also across two FORM_TYPE fields, and even when not hidden (3.5 before 3.6).
        let split = "<x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:a</value></field>\
             <field var='FORM_TYPE' type='hidden'><value>urn:b</value></field></x>";
        assert_eq!(with_forms(split), Err(CapsError::ConflictingFormTypeValues));
        let shown = "><value>urn:a</value><value>urn:b</value>";
        assert_eq!(
            with_forms(&form(shown)),
            Err(CapsError::ConflictingFormTypeValues)
        );
        // Only values with *different* character data make it ill-formed.
        let same = " type='hidden'><value>urn:a</value><value>urn:a</value>";
        assert_eq!(
            with_forms(&form(same)).as_deref(),
            Ok("client/pc//<f<urn:a<a<1<")
        );
    }

    #[test]
    fn section_5_4_step_3_6_forms_without_hidden_form_type_are_ignored() {
        let base = Ok("client/pc//<f<".to_owned());
        let kept = form(" type='hidden'><value>urn:k</value>");
        for ignored in [
            // FORM_TYPE of another type, or without one.
            form(" type='text-single'><value>urn:t</value>"),
            form("><value>urn:t</value>"),
            // One of two FORM_TYPE fields not hidden.
            "<x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>\
             <field var='FORM_TYPE'><value>urn:t</value></field></x>"
                .to_owned(),
            // No FORM_TYPE field, or one without a value.
            "<x xmlns='jabber:x:data' type='result'><field var='a'><value>1</value></field>\
             </x>"
                .to_owned(),
            form(" type='hidden'>"),
            // Not a result form (XEP-0128), or not a form.
            "<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE' type='hidden'>\
             <value>urn:t</value></field></x>"
                .to_owned(),
            "<x xmlns='jabber:x:data'><field var='FORM_TYPE' type='hidden'>\
             <value>urn:t</value></field></x>"
                .to_owned(),
            "<x xmlns='urn:other' type='result'><field var='FORM_TYPE' type='hidden'>\
             <value>urn:t</value></field></x>"
                .to_owned(),
        ] {
            assert_eq!(with_forms(&ignored), base, "{ignored}");
            // The rest is still processed.
            assert_eq!(
                with_forms(&format!("{ignored}{kept}")).as_deref(),
                Ok("client/pc//<f<urn:k<a<1<"),
                "{ignored}"
            );
        }
    }

    #[test]
    fn ver_string_needs_a_disco_info_query() {
        for other in [
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
            "<info xmlns='http://jabber.org/protocol/disco#info'/>",
            "<iq type='result'/>",
        ] {
            let e = xml(other);
            assert_eq!(ver_string(&e), Err(CapsError::NotDiscoInfo), "{other}");
            assert!(!verify(&e, &caps("sha-1", "2jmj7l5rSw0yVb/vlWAYkK/YBwk=")));
        }
        // An empty query hashes the empty string (SHA-1 of "" is 2jmj7l5r…).
        let empty = query("");
        assert_eq!(ver_string(&empty).as_deref(), Ok(""));
        assert!(verify(
            &empty,
            &caps("sha-1", "2jmj7l5rSw0yVb/vlWAYkK/YBwk=")
        ));
        // Children in other namespaces are not identities or features.
        let foreign = query("<identity xmlns='urn:x' category='a' type='b'/><feature xmlns='urn:x' var='f'/><feature/>");
        assert_eq!(ver_string(&foreign).as_deref(), Ok(""));
    }

    #[test]
    fn algo_names() {
        for algo in [CapsAlgo::Sha1, CapsAlgo::Sha256] {
            assert_eq!(CapsAlgo::from_name(algo.name()), Some(algo));
        }
        assert_eq!(CapsAlgo::Sha1.name(), "sha-1");
        assert_eq!(CapsAlgo::Sha256.name(), "sha-256");
        for bad in ["SHA-1", "sha1", "sha-224", "md5", ""] {
            assert_eq!(CapsAlgo::from_name(bad), None, "{bad}");
        }
    }

    // §4: hash, node and ver are REQUIRED; §13: no hash is the legacy format.
    #[test]
    fn section_4_parse_c() {
        let c = xml("<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
             node='http://code.google.com/p/exodus' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>");
        assert_eq!(
            parse_c(&c),
            Some(Caps {
                hash: "sha-1".into(),
                node: "http://code.google.com/p/exodus".into(),
                ver: "QgayPKawpkPSDYmwT/WM94uAlu0=".into(),
            })
        );
        let legacy = xml(
            "<c xmlns='http://jabber.org/protocol/caps' node='http://psi-im.org' ver='0.11' \
             ext='cs ep-notify'/>",
        );
        assert_eq!(
            parse_c(&legacy),
            Some(Caps {
                hash: String::new(),
                node: "http://psi-im.org".into(),
                ver: "0.11".into(),
            })
        );
        for bad in [
            "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' ver='v'/>",
            "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n'/>",
            "<c xmlns='urn:other' hash='sha-1' node='n' ver='v'/>",
            "<caps xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>",
        ] {
            assert_eq!(parse_c(&xml(bad)), None, "{bad}");
        }
        // Inside a presence, as §6.1 sends it.
        let p = xml(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-256' node='n' \
             ver='v'/></presence>",
        );
        let c = p.child("c", NS_CAPS).and_then(parse_c).expect("caps");
        assert_eq!(CapsAlgo::from_name(&c.hash), Some(CapsAlgo::Sha256));
    }

    // XEP-0163 §4: a `+notify` feature asks for notifications of the node before it.
    #[test]
    fn xep_0163_section_4_notify_nodes() {
        let info = query(
            "<identity category='client' type='pc'/>\
             <feature var='http://jabber.org/protocol/tune+notify'/>\
             <feature var='http://jabber.org/protocol/geoloc+notify'/>\
             <feature var='http://jabber.org/protocol/tune'/>\
             <feature var='urn:xmpp:avatar:metadata+notify'/>\
             <feature var='http://jabber.org/protocol/tune+notify'/>\
             <feature var='+notify'/><feature var='x+notify+notify'/>\
             <feature var='x+Notify'/><feature xmlns='urn:x' var='y+notify'/>",
        );
        let want = [
            "http://jabber.org/protocol/geoloc",
            "http://jabber.org/protocol/tune",
            "urn:xmpp:avatar:metadata",
            "x+notify",
        ];
        assert_eq!(notify_nodes(&info), want);
        let ci = CapsInfo::from_disco(&info);
        assert_eq!(ci.notify, want);
        assert!(ci.wants("http://jabber.org/protocol/tune"));
        assert!(ci.wants("x+notify"));
        assert!(!ci.wants("x"));
        assert!(!ci.wants("http://jabber.org/protocol/tune+notify"));
        assert!(!ci.wants("y"));
        assert!(!ci.wants(""));
        assert!(notify_nodes(&info_of(SIMPLE)).is_empty());
        let ci = CapsInfo::new(vec!["b".into(), "a".into(), "b".into()]);
        assert_eq!(ci.notify, ["a", "b"]);
        assert!(ci.wants("a") && ci.wants("b") && !ci.wants("c"));
        assert!(!CapsInfo::default().wants("a"));
    }

    fn info(node: &str) -> CapsInfo {
        CapsInfo::new(vec![node.to_owned()])
    }

    #[test]
    fn cache_get_insert_and_algorithms_apart() {
        let mut c: CapsCache<u32> = CapsCache::new(4, 4);
        assert!(c.is_empty());
        assert_eq!(c.get(CapsAlgo::Sha1, "v"), None);
        let rc = c.insert(CapsAlgo::Sha1, "v", info("a"));
        assert_eq!(c.get(CapsAlgo::Sha1, "v"), Some(Rc::clone(&rc)));
        assert!(Rc::ptr_eq(
            &rc,
            &c.get(CapsAlgo::Sha1, "v").expect("cached")
        ));
        assert_eq!(c.get(CapsAlgo::Sha256, "v"), None, "keyed by algorithm too");
        c.insert(CapsAlgo::Sha256, "v", info("b"));
        assert_eq!(c.len(), 2);
        // Replacing keeps one entry.
        c.insert(CapsAlgo::Sha1, "v", info("c"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(CapsAlgo::Sha1, "v"), Some(Rc::new(info("c"))));
        assert_eq!(c.get(CapsAlgo::Sha256, "v"), Some(Rc::new(info("b"))));
        assert!(!c.is_empty());
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let mut c: CapsCache<u32> = CapsCache::new(3, 4);
        c.insert(CapsAlgo::Sha1, "1", info("1"));
        c.insert(CapsAlgo::Sha256, "2", info("2"));
        c.insert(CapsAlgo::Sha1, "3", info("3"));
        // Use "1", so "2" is now the least recently used.
        assert!(c.get(CapsAlgo::Sha1, "1").is_some());
        c.insert(CapsAlgo::Sha1, "4", info("4"));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(CapsAlgo::Sha256, "2"), None);
        // Order of use now: 3, 4, then 1 and 4 again (gets), then re-insert of 3.
        assert!(c.get(CapsAlgo::Sha1, "1").is_some());
        assert!(c.get(CapsAlgo::Sha1, "4").is_some());
        c.insert(CapsAlgo::Sha1, "3", info("3b"));
        // A hit in begin_query is a use too: 1 becomes the newest, 4 the oldest.
        assert!(matches!(
            c.begin_query(CapsAlgo::Sha1, "1", 0),
            QueryStart::AlreadyKnown(_)
        ));
        c.insert(CapsAlgo::Sha256, "5", info("5"));
        assert_eq!(c.get(CapsAlgo::Sha1, "4"), None);
        c.insert(CapsAlgo::Sha256, "6", info("6"));
        assert_eq!(c.get(CapsAlgo::Sha1, "3"), None);
        assert_eq!(c.len(), 3);
        for (algo, ver) in [
            (CapsAlgo::Sha1, "1"),
            (CapsAlgo::Sha256, "5"),
            (CapsAlgo::Sha256, "6"),
        ] {
            assert!(c.get(algo, ver).is_some(), "{ver}");
        }
        // The maps and the order stay in step.
        assert_eq!(c.entries.sha1.len() + c.entries.sha256.len(), c.lru.len());
    }

    #[test]
    fn cache_of_zero_entries_keeps_nothing() {
        let mut c: CapsCache<u32> = CapsCache::new(0, 1);
        let rc = c.insert(CapsAlgo::Sha1, "v", info("a"));
        assert_eq!(*rc, info("a"));
        assert!(c.is_empty());
        assert_eq!(c.get(CapsAlgo::Sha1, "v"), None);
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "v", 1), QueryStart::Send);
        assert_eq!(c.finish_query(CapsAlgo::Sha1, "v", Some(info("a"))), [1]);
        assert!(c.is_empty());
    }

    #[test]
    fn cache_query_send_join_finish() {
        let mut c: CapsCache<&str> = CapsCache::new(8, 8);
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "v", "a"), QueryStart::Send);
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "v", "b"), QueryStart::Joined);
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "v", "c"), QueryStart::Joined);
        // Another algorithm is another query.
        assert_eq!(c.begin_query(CapsAlgo::Sha256, "v", "d"), QueryStart::Send);
        assert_eq!(c.pending_len(), 2);
        assert_eq!(
            c.finish_query(CapsAlgo::Sha1, "v", Some(info("n"))),
            ["a", "b", "c"]
        );
        // Exactly once.
        assert_eq!(
            c.finish_query(CapsAlgo::Sha1, "v", Some(info("n"))),
            [""; 0]
        );
        assert_eq!(c.fail_query(CapsAlgo::Sha1, "v"), [""; 0]);
        assert_eq!(c.pending_len(), 1);
        assert_eq!(
            c.begin_query(CapsAlgo::Sha1, "v", "e"),
            QueryStart::AlreadyKnown(Rc::new(info("n")))
        );
        assert_eq!(c.pending_len(), 1, "a hit queues nothing");
        assert_eq!(c.fail_query(CapsAlgo::Sha256, "v"), ["d"]);
        assert_eq!(c.fail_query(CapsAlgo::Sha256, "v"), [""; 0]);
        assert_eq!(c.pending_len(), 0);
        assert_eq!(
            c.get(CapsAlgo::Sha256, "v"),
            None,
            "a failure caches nothing"
        );
        // After a failure the next waiter sends again (§5.4 3.9: ask another entity).
        assert_eq!(c.begin_query(CapsAlgo::Sha256, "v", "f"), QueryStart::Send);
        assert_eq!(c.finish_query(CapsAlgo::Sha256, "v", None), ["f"]);
        // A result with nobody waiting is still cached.
        assert_eq!(
            c.finish_query(CapsAlgo::Sha256, "w", Some(info("w"))),
            [""; 0]
        );
        assert_eq!(c.get(CapsAlgo::Sha256, "w"), Some(Rc::new(info("w"))));
    }

    #[test]
    fn cache_bounds_pending_queries() {
        let mut c: CapsCache<u32> = CapsCache::new(8, 2);
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "a", 1), QueryStart::Send);
        assert_eq!(c.begin_query(CapsAlgo::Sha256, "b", 2), QueryStart::Send);
        // Two distinct vers pending, across both algorithms: a third is refused…
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "c", 3), QueryStart::Refused);
        assert_eq!(c.begin_query(CapsAlgo::Sha256, "c", 3), QueryStart::Refused);
        // …but joining one already out is not, and a cached ver is still answered.
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "a", 4), QueryStart::Joined);
        c.insert(CapsAlgo::Sha1, "k", info("k"));
        assert!(matches!(
            c.begin_query(CapsAlgo::Sha1, "k", 5),
            QueryStart::AlreadyKnown(_)
        ));
        assert_eq!(c.pending_len(), 2);
        assert_eq!(c.fail_query(CapsAlgo::Sha1, "a"), [1, 4]);
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "c", 3), QueryStart::Send);
        assert_eq!(
            c.fail_query(CapsAlgo::Sha1, "c"),
            [3],
            "the refused waiter was not kept"
        );
        let mut none: CapsCache<u32> = CapsCache::new(8, 0);
        assert_eq!(
            none.begin_query(CapsAlgo::Sha1, "a", 1),
            QueryStart::Refused
        );
        assert_eq!(none.pending_len(), 0);
    }

    #[test]
    fn cache_bounds_waiters_per_query() {
        let mut c: CapsCache<usize> = CapsCache::new(8, 8);
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "v", 0), QueryStart::Send);
        for i in 1..MAX_WAITERS {
            assert_eq!(
                c.begin_query(CapsAlgo::Sha1, "v", i),
                QueryStart::Joined,
                "{i}"
            );
        }
        assert_eq!(
            c.begin_query(CapsAlgo::Sha1, "v", MAX_WAITERS),
            QueryStart::Refused
        );
        // Other vers are unaffected.
        assert_eq!(c.begin_query(CapsAlgo::Sha1, "w", 0), QueryStart::Send);
        let waiters = c.finish_query(CapsAlgo::Sha1, "v", Some(info("n")));
        assert_eq!(waiters, (0..MAX_WAITERS).collect::<Vec<_>>());
        assert_eq!(c.finish_query(CapsAlgo::Sha1, "v", None), [0usize; 0]);
    }
}
