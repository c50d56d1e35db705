//! Fuzz harnesses, one per parser a peer feeds (not part of the API).
//!
//! The targets in `fuzz/fuzz_targets/` are one-line calls to these functions, and
//! `tests/fuzz_corpus.rs` replays the committed corpora through the same functions on stable
//! Rust, so an input that once broke an invariant keeps failing CI without a fuzzer. Each
//! harness takes arbitrary bytes and panics when an invariant breaks; that is what the fuzzer
//! looks for. Input layouts are documented on each function; `fuzz/seeds/` has examples.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::stream::sasl::{
    decode_payload, derive_keys, encode_payload, verify_plain, BindingFallback, ChannelBindings,
    CredentialSource, HashAlg, Lookup, Mechanism, SaslConfig, SaslExchange, SaslFailure,
    ScramError, ScramKeys, Step,
};
use crate::xml::{
    self, parse_element, scan_stanza, write_with_attrs, Frame, Framer, Limits, StreamNs, XmlError,
};
use crate::xmpp::jid::{self, Jid, JidError, MAX_PART_LEN};

/// The c2s stream header the framer and stanza harnesses may prepend, so the fuzzer does not
/// have to find one before it can reach stanzas.
const CLIENT_HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>";

/// Limits small enough that the fuzzer reaches every bound with short inputs.
const FUZZ_LIMITS: Limits = Limits {
    max_stanza_bytes: 4096,
    max_depth: 16,
    max_attrs: 16,
};

/// [`Framer`] on arbitrary bytes.
///
/// Runs [`xml::fuzz::framer`] (frames independent of one cut, scan and parse agree on every
/// element frame, serialization round trip), then checks that the frames are the same when
/// the input arrives whole or one byte at a time; that every frame makes progress (only the
/// close reported after a self-closing header consumes nothing), never consumes more than it
/// was given, and comes in stream order; that an error is final; and that a reset framer
/// frames the same input the same way.
///
/// Layout: byte 0 bit 0 prepends a c2s stream header; byte 0 also seeds the cut.
pub fn framer(data: &[u8]) {
    xml::fuzz::framer(data);
    let Some((&opts, body)) = data.split_first() else {
        return;
    };
    let input = if opts & 1 == 1 {
        [CLIENT_HEADER, body].concat()
    } else {
        body.to_vec()
    };
    let mut framer = Framer::new(FUZZ_LIMITS);
    let whole = frames(&mut framer, &input, input.len());
    let bytewise = frames(&mut Framer::new(FUZZ_LIMITS), &input, 1);
    assert_eq!(whole, bytewise, "frames depend on how the input arrives");
    framer.reset();
    let again = frames(&mut framer, &input, input.len());
    assert_eq!(whole, again, "a reset framer frames differently");
}

/// What a framer returned, with adjacent whitespace frames merged (they may be coalesced or
/// not depending on how the bytes arrive).
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Open(String),
    Element(Vec<u8>),
    Whitespace,
    Close,
}

/// Feeds `input` to `framer` `chunk` bytes more at a time, as a connection does: the bytes not
/// yet consumed are passed again with the new ones.
fn frames(framer: &mut Framer, input: &[u8], chunk: usize) -> (Vec<Seen>, Option<XmlError>) {
    let mut seen: Vec<Seen> = Vec::new();
    let mut start = 0;
    let mut end = 0;
    let (mut opened, mut closed, mut stalled) = (false, false, false);
    while end < input.len() {
        end = end.saturating_add(chunk.max(1)).min(input.len());
        loop {
            let buf = input.get(start..end).unwrap_or_default();
            let (frame, used) = match framer.next(buf) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(framer.next(buf), Err(e), "an error is not final");
                    return (seen, Some(e));
                }
            };
            assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
            let consumed = buf.get(..used).unwrap_or_default();
            if used == 0 {
                assert!(
                    !stalled && frame == Frame::StreamClose,
                    "no progress: {frame:?}"
                );
            }
            stalled = used == 0;
            let next = match frame {
                Frame::StreamOpen(header) => {
                    assert!(seen.is_empty(), "a second stream header was framed");
                    opened = true;
                    Seen::Open(format!("{header:?}"))
                }
                Frame::Element(raw) => {
                    assert!(opened && !closed, "an element outside the stream");
                    assert_eq!(raw, consumed, "an element is not the bytes consumed");
                    assert!(raw.first() == Some(&b'<') && raw.last() == Some(&b'>'));
                    Seen::Element(raw.to_vec())
                }
                Frame::Whitespace => {
                    assert!(opened, "whitespace frame before the header");
                    assert!(!consumed.is_empty(), "an empty whitespace frame");
                    assert!(
                        consumed
                            .iter()
                            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
                        "a whitespace frame that is not whitespace: {consumed:?}"
                    );
                    Seen::Whitespace
                }
                Frame::StreamClose => {
                    assert!(opened && !closed, "a close without an open stream");
                    closed = true;
                    Seen::Close
                }
            };
            if !(next == Seen::Whitespace && seen.last() == Some(&Seen::Whitespace)) {
                seen.push(next);
            }
            start += used;
        }
    }
    (seen, None)
}

/// The stream headers [`stanza`] chooses from: c2s, s2s with the dialback prefix, no default
/// namespace, and c2s with an extra prefix and a language.
const STANZA_HEADERS: [&[u8]; 4] = [
    CLIENT_HEADER,
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
      xmlns:db='jabber:server:dialback' version='1.0'>",
    b"<s:stream xmlns:s='http://etherx.jabber.org/streams'>",
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
      xmlns:x='urn:x' xml:lang='en' to='example.com' version='1.0'>",
];

/// [`scan_stanza`] and [`parse_element`] on arbitrary bytes, both as given and on every element
/// the framer cuts from them after a stream header.
///
/// On every input: scan and parse accept and refuse alike (with the same error). On every
/// accepted stanza: the scanned head agrees with the tree (name, namespace, attributes and
/// their spans, children); the tree parses the same with larger limits and, when the head says
/// it is self-contained, without the stream's prefixes; the serialized tree is self-contained
/// and parses back to the same tree; and rewriting `from`/`to`/`id` with
/// [`write_with_attrs`] keeps the stanza valid with only those attributes changed.
///
/// Layout: byte 0 bits 0–1 pick the stream header (see `STANZA_HEADERS`); the rest is the
/// stanza, or several.
pub fn stanza(data: &[u8]) {
    let Some((&opts, body)) = data.split_first() else {
        return;
    };
    let header = STANZA_HEADERS
        .get(usize::from(opts & 3))
        .copied()
        .unwrap_or(CLIENT_HEADER);
    check_stanza(body, &StreamNs::new("jabber:client"), &FUZZ_LIMITS);

    let input = [header, body].concat();
    let mut framer = Framer::new(FUZZ_LIMITS);
    let mut start = 0;
    // Progress is the framer harness's business; this bound only keeps a bug from hanging here.
    for _ in 0..=input.len() {
        let buf = input.get(start..).unwrap_or_default();
        match framer.next(buf) {
            Ok(Some((Frame::Element(raw), used))) => {
                check_stanza(raw, framer.stream_ns(), &FUZZ_LIMITS);
                start += used;
            }
            Ok(Some((_, used))) => start += used,
            Ok(None) | Err(_) => break,
        }
    }
}

fn check_stanza(raw: &[u8], ns: &StreamNs, limits: &Limits) {
    let scanned = scan_stanza(raw, ns, limits);
    let parsed = parse_element(raw, ns, limits);
    assert_eq!(
        scanned.as_ref().err(),
        parsed.as_ref().err(),
        "scan and parse disagree"
    );
    let (Ok(head), Ok(tree)) = (scanned, parsed) else {
        return;
    };

    assert_eq!(head.raw.as_bytes(), raw, "the head is not the whole stanza");
    assert_eq!((head.name, head.ns), (tree.name.as_str(), tree.ns.as_str()));
    assert_eq!(head.child_elements as usize, tree.elements().count());
    assert_eq!(
        head.first_child,
        tree.elements()
            .next()
            .map(|e| (e.ns.as_str(), e.name.as_str()))
    );
    let qname = head.raw.get(1..head.name_end).unwrap_or_default();
    assert!(
        qname == head.name
            || qname
                .strip_suffix(head.name)
                .is_some_and(|p| p.ends_with(':')),
        "name_end {} does not end the name {:?}",
        head.name_end,
        head.name
    );
    assert_eq!(head.attrs.len(), tree.attrs.len(), "attribute count");
    for a in &head.attrs {
        let span = head.raw.get(a.span.clone()).unwrap_or_default();
        assert!(
            span.starts_with(a.name) && span.contains(a.value),
            "attribute span {:?} is not {}={:?}",
            a.span,
            a.name,
            a.value
        );
        let key = match a.name.split_once(':') {
            None => Some(Cow::Borrowed(a.name)),
            Some(("xml", local)) => Some(Cow::Owned(format!("xml:{local}"))),
            Some(_) => None,
        };
        if let Some(key) = key {
            assert_eq!(head.attr(a.name).as_deref(), tree.attr(&key), "{key}");
        }
    }

    // Written output may be longer and declare more prefixes than the input did.
    let unbounded = Limits {
        max_stanza_bytes: usize::MAX,
        max_attrs: usize::MAX,
        ..*limits
    };
    assert_eq!(
        parse_element(raw, ns, &unbounded).as_ref(),
        Ok(&tree),
        "larger limits change the tree"
    );
    let bare_ns = StreamNs::new(ns.default_ns());
    if head.self_contained {
        assert_eq!(
            parse_element(raw, &bare_ns, limits).as_ref(),
            Ok(&tree),
            "a self-contained stanza depends on the stream's prefixes"
        );
    }

    let written = tree.to_string_in(ns.default_ns());
    let rescanned = scan_stanza(written.as_bytes(), &bare_ns, &unbounded);
    assert!(
        rescanned.as_ref().is_ok_and(|h| h.self_contained),
        "serialized stanza is not valid and self-contained: {rescanned:?} {written}"
    );
    assert_eq!(
        parse_element(written.as_bytes(), &bare_ns, &unbounded).as_ref(),
        Ok(&tree),
        "serialized stanza does not parse back: {written}"
    );

    let set = [("from", "a@b/<'\"&>"), ("to", "c@d"), ("id", "x\u{E9}")];
    let mut out = Vec::new();
    write_with_attrs(&head, &set, &mut out);
    let rewritten = match scan_stanza(&out, ns, &unbounded) {
        Ok(h) => h,
        Err(e) => panic!(
            "rewritten stanza is invalid ({e}): {}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!((rewritten.name, rewritten.ns), (head.name, head.ns));
    assert_eq!(rewritten.child_elements, head.child_elements);
    for (name, value) in set {
        assert_eq!(rewritten.attr(name).as_deref(), Some(value), "{name}");
    }
    let kept = head
        .attrs
        .iter()
        .filter(|a| set.iter().all(|(n, _)| *n != a.name));
    for a in kept.clone() {
        assert_eq!(rewritten.attr(a.name), head.attr(a.name), "{}", a.name);
    }
    assert_eq!(rewritten.attrs.len(), kept.count() + set.len());
    let retree = parse_element(&out, ns, &unbounded);
    assert_eq!(
        retree.as_ref().map(|t| &t.children),
        Ok(&tree.children),
        "rewriting attributes changed the content"
    );
}

/// [`Jid::parse`] and the three preparation profiles on arbitrary text (invalid UTF-8 is
/// replaced).
///
/// A parsed JID re-parses to itself, rebuilds from its parts, has non-empty parts within
/// 1023 bytes with no separator in the localpart or domainpart, and its bare form and
/// [`Jid::with_resource`] agree with it. Each preparation is idempotent, and its ASCII fast
/// path gives what the `stringprep` path gives (reached by prefixing U+00AD, which every
/// profile maps to nothing). Input with a code point unassigned in Unicode 3.2 is refused by
/// every profile (the bug behind `tests/fuzz_corpus.rs::jid_unassigned_code_points`), so no
/// input is exempt.
pub fn jid(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let stable = true;
    if let Ok(j) = Jid::parse(&text) {
        check_jid(&j, stable);
    }
    check_prep("nodeprep", jid::nodeprep, &text, stable);
    check_prep("nameprep", jid::nameprep_domain, &text, stable);
    check_prep("resourceprep", jid::resourceprep, &text, stable);
}

/// Whether `text` has a code point unassigned in Unicode 3.2, the version of stringprep's
/// tables. The `stringprep` crate looks for those after NFKC (of the current Unicode) instead
/// of in its input, so some pass as what they normalize to, unprepared: U+03F9 comes out as an
/// uppercase Σ, which a second preparation folds to σ, so `Jid::parse("sϹ2")` does not
/// re-parse to itself. `xmpp::jid` now refuses them (reproducer `jid_unassigned_code_points`
/// in `tests/fuzz_corpus.rs`); SASLprep of usernames still gets them, so the `sasl` harness
/// does not assert what depends on preparing such a username twice.
fn has_unassigned(text: &str) -> bool {
    text.chars().any(stringprep::tables::unassigned_code_point)
}

/// `stable`: the input has no code point unassigned in Unicode 3.2 (see [`has_unassigned`]),
/// so preparing the prepared parts again must change nothing.
fn check_jid(j: &Jid, stable: bool) {
    let full = j.as_str();
    if stable {
        assert_eq!(
            Jid::parse(full).as_ref(),
            Ok(j),
            "does not re-parse to itself"
        );
    }
    assert_eq!(j.to_string(), full);
    let (local, domain, resource) = (j.local(), j.domain(), j.resource());
    let rebuilt = format!(
        "{}{domain}{}",
        local.map(|l| format!("{l}@")).unwrap_or_default(),
        resource.map(|r| format!("/{r}")).unwrap_or_default()
    );
    assert_eq!(rebuilt, full, "parts do not make up the JID");
    for part in [local, Some(domain), resource].into_iter().flatten() {
        assert!(
            !part.is_empty() && part.len() <= MAX_PART_LEN,
            "part {part:?}"
        );
    }
    for part in [local, Some(domain)].into_iter().flatten() {
        assert!(!part.contains(['@', '/']), "separator in {part:?}");
    }
    assert_eq!(j.is_bare(), resource.is_none());
    let bare = j.to_bare();
    assert_eq!(bare.as_str(), j.bare_str());
    assert!(bare.is_bare());
    if !stable {
        return;
    }
    assert_eq!(Jid::new(local, domain, resource).as_ref(), Ok(j), "new");
    assert_eq!(Jid::parse(j.bare_str()).as_ref(), Ok(&bare), "bare form");
    if let Some(resource) = resource {
        assert_eq!(
            bare.with_resource(resource).as_ref(),
            Ok(j),
            "with_resource"
        );
    }
}

fn check_prep(
    name: &str,
    prep: fn(&str) -> Result<Cow<'_, str>, JidError>,
    text: &str,
    stable: bool,
) {
    let once = prep(text);
    if let (Ok(prepared), true) = (&once, stable) {
        assert_eq!(
            prep(prepared).as_deref(),
            Ok(&**prepared),
            "{name} is not idempotent on {text:?}"
        );
    }
    // IPv6 literals are only recognized on the ASCII path.
    if text.is_ascii() && !(name == "nameprep" && text.starts_with('[')) {
        let prefixed = format!("\u{AD}{text}");
        let slow = prep(&prefixed);
        assert_eq!(
            once.as_deref().ok(),
            slow.as_deref().ok(),
            "{name}: the ASCII path and stringprep disagree on {text:?}"
        );
    }
}

const DOMAIN: &str = "example.com";
const SECRET: &[u8] = b"fuzzing secret for fake salts";
/// Iteration counts small enough for a fuzzer: the account's, and the one shown for unknown
/// users.
const ACCOUNT_ITER: u32 = 2;
const FAKE_ITER: u32 = 3;
const PASSWORD: &str = "pencil";
const EXPORTER: &[u8] = b"tls-exporter value";
const END_POINT: &[u8] = b"tls-server-end-point value";

/// [`SaslExchange`] driven through `start_with_fallback`, `step` and `plain_verified` with
/// arbitrary messages, one exchange after another on one stream, and [`decode_payload`] /
/// [`encode_payload`] on each message.
///
/// There is one account, `user`, password `pencil`. Checked: the payload codec round-trips and
/// accepts only canonical base64; the account source is only asked about prepared usernames;
/// a challenge answering a client-first starts with its nonce and shows a known iteration
/// count; `Success` comes only for the existing, enabled account after a valid proof (SCRAM,
/// with the `v=` the client expects, the harness playing the client) or a verified password
/// (PLAIN), and then always, unless a `-PLUS` exchange names a binding type the connection
/// lacks: then a valid proof ends in `e=unsupported-channel-binding-type`, the only way to a
/// binding fallback. A GS2 `y` while `-PLUS` is offered gets a server-first only for the
/// account of the stream's fallback, and `e=server-does-support-channel-binding` comes only for
/// such a `y`. An exchange reports done exactly after `Success` or `Failure`; afterwards, or out
/// of turn, every call fails (`plain_verified(true)` included) and `abort` is `aborted`.
///
/// Layout: byte 0 = mechanism index mod 5 in `Mechanism::ALL` (bits 0–2), TLS (bit 3),
/// tls-exporter (bit 4) and tls-server-end-point (bit 5) data available, a `-PLUS` mechanism
/// offered (bit 6), an initial response (bit 7). Byte 1 = account state (bits 0–1: enabled,
/// disabled, store unavailable, SHA-1 keys only); the harness answers server-first itself with
/// a correct proof for the next message as password (bit 2); messages are base64 text (bit 3).
/// The rest: exchanges separated by 0xFE, each after the first starting with a byte that picks
/// its mechanism and initial response as byte 0 does; in each, messages separated by 0xFF
/// (neither byte occurs in UTF-8).
pub fn sasl(data: &[u8]) {
    let [opts, more, rest @ ..] = data else {
        return;
    };
    let mut stable = true;
    for m in rest.split(|&b| b == 0xFE || b == 0xFF) {
        check_payload_codec(m);
        stable &= !message_has_unassigned(m);
    }
    let bindings = ChannelBindings {
        tls_exporter: (opts & 0x10 != 0).then(|| EXPORTER.to_vec()),
        tls_server_end_point: (opts & 0x20 != 0).then(|| END_POINT.to_vec()),
    };
    let cfg = SaslConfig {
        domain: DOMAIN,
        secure: opts & 0x08 != 0,
        plus_offered: opts & 0x40 != 0,
        bindings: &bindings,
        fake_salt_secret: SECRET,
        default_iterations: FAKE_ITER,
    };
    let creds = FuzzCreds {
        state: match more & 3 {
            0 => AccountState::Enabled,
            1 => AccountState::Disabled,
            2 => AccountState::Unavailable,
            _ => AccountState::Sha1Only,
        },
        asked: RefCell::new(Vec::new()),
        stable,
    };
    let mut stream = SaslStream {
        cfg: &cfg,
        creds: &creds,
        auto_final: more & 4 != 0,
        base64: more & 8 != 0,
        fallback: None,
        fallback_user: None,
    };
    for (i, exchange) in rest.split(|&b| b == 0xFE).enumerate() {
        let (choice, body) = match (i, exchange.split_first()) {
            (0, _) => (*opts, exchange),
            (_, Some((&choice, body))) => (choice, body),
            (_, None) => continue,
        };
        let mech = Mechanism::ALL
            .get(usize::from(choice & 7) % Mechanism::ALL.len())
            .copied()
            .unwrap_or(Mechanism::Plain);
        let messages: Vec<&[u8]> = body.split(|&b| b == 0xFF).collect();
        stream.exchange(mech, choice & 0x80 != 0, &messages);
    }
}

/// [`has_unassigned`] for a message as sent or as base64-decoded.
fn message_has_unassigned(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(message);
    let decoded = decode_payload(&text).ok().flatten().unwrap_or_default();
    has_unassigned(&text) || has_unassigned(&String::from_utf8_lossy(&decoded))
}

/// One fuzzed stream's SASL settings and what carries over between its exchanges.
struct SaslStream<'a> {
    cfg: &'a SaslConfig<'a>,
    creds: &'a FuzzCreds,
    auto_final: bool,
    base64: bool,
    /// The binding fallback of the stream's latest exchange that yielded one, as the
    /// negotiator keeps it.
    fallback: Option<BindingFallback>,
    /// The account that proved its password to earn `fallback`, by the harness's account.
    fallback_user: Option<String>,
}

impl SaslStream<'_> {
    fn exchange(&mut self, mech: Mechanism, initial_response: bool, messages: &[&[u8]]) {
        let mut messages = messages.iter().copied();
        let initial = if initial_response {
            match self.decode(messages.next().unwrap_or_default()) {
                Some(initial) => initial,
                None => return,
            }
        } else {
            None
        };
        let (mut exchange, mut step) = SaslExchange::start_with_fallback(
            mech,
            initial.as_deref(),
            self.cfg,
            self.creds,
            self.fallback.as_ref(),
        );
        let mut sent = initial.unwrap_or_default();
        let mut expect: Option<Expected> = None;
        loop {
            let done = matches!(step, Step::Success { .. } | Step::Failure(_));
            assert_eq!(exchange.is_done(), done, "is_done after {step:?}");
            match step {
                Step::Success { .. } | Step::Failure(_) => {
                    if let Some(expected) = expect.take() {
                        expected.check(&step, &exchange);
                    } else {
                        self.check_unexpected_end(&step, &exchange, &sent);
                    }
                    if let Some(fallback) = exchange.binding_fallback() {
                        self.fallback = Some(fallback.clone());
                        self.fallback_user = self.creds.asked.borrow().last().cloned();
                    }
                    break;
                }
                Step::VerifyPlain {
                    username,
                    password,
                    keys,
                } => {
                    assert_eq!(mech, Mechanism::Plain);
                    assert_eq!(Some(&username), self.creds.asked.borrow().last());
                    let ok = verify_plain(&password, &keys);
                    let exists = username == "user" && self.creds.state.exists();
                    let disabled = self.creds.state == AccountState::Disabled;
                    expect = Some(Expected::outcome(
                        exists, ok, disabled, true, &username, None,
                    ));
                    step = exchange.plain_verified(ok);
                }
                Step::Challenge(challenge) if !challenge.is_empty() => {
                    let Some(alg) = mech.hash_alg() else {
                        panic!("PLAIN sent a challenge: {challenge:?}");
                    };
                    let server_first = std::str::from_utf8(&challenge).expect("UTF-8");
                    let client_first = std::str::from_utf8(&sent).expect("accepted as UTF-8");
                    if client_first.starts_with("y,") && self.cfg.plus_offered {
                        assert_eq!(
                            self.fallback_user.as_ref(),
                            self.creds.asked.borrow().last(),
                            "a downgrade y was accepted for an account without a fallback"
                        );
                    }
                    let next = if self.auto_final {
                        let password = messages.next().unwrap_or_default();
                        let client = ScramClient::new(alg, client_first, server_first);
                        let password = String::from_utf8_lossy(password);
                        let (message, expected) = client.finish(&password, self);
                        expect = Some(expected);
                        message
                    } else {
                        let Some(next) = messages.next() else { break };
                        match self.decode(next) {
                            Some(decoded) => decoded.unwrap_or_default(),
                            None => break,
                        }
                    };
                    step = exchange.step(&next, self.cfg, self.creds);
                    sent = next;
                }
                Step::Challenge(_) => {
                    let Some(next) = messages.next() else { break };
                    let Some(next) = self.decode(next) else { break };
                    let next = next.unwrap_or_default();
                    step = exchange.step(&next, self.cfg, self.creds);
                    sent = next;
                }
            }
        }
        // Out of turn or after the end, nothing succeeds; abort always ends it.
        let late = exchange.plain_verified(true);
        assert_eq!(late, Step::Failure(SaslFailure::MalformedRequest));
        assert!(exchange.is_done());
        let late = exchange.step(&sent, self.cfg, self.creds);
        assert_eq!(late, Step::Failure(SaslFailure::MalformedRequest));
        assert_eq!(exchange.abort(), Step::Failure(SaslFailure::Aborted));
    }

    /// An end the harness did not prepare with a proof: never a success, never a fallback, and
    /// an `e=` only for a downgrade `y`.
    fn check_unexpected_end(&self, step: &Step, exchange: &SaslExchange, sent: &[u8]) {
        assert!(
            matches!(step, Step::Failure(_)),
            "success without a valid proof: {step:?}"
        );
        assert!(
            exchange.binding_fallback().is_none(),
            "a binding fallback without a valid proof"
        );
        match exchange.scram_error() {
            None => {}
            Some(ScramError::ServerDoesSupportChannelBinding) => {
                assert!(self.cfg.plus_offered && sent.starts_with(b"y,"));
                assert_eq!(*step, Step::Failure(SaslFailure::NotAuthorized));
            }
            Some(error) => panic!("{error:?} without a valid proof"),
        }
    }

    /// The message as the I/O layer hands it over: `None` when its base64 is refused (the
    /// exchange would end with `incorrect-encoding`), `Some(None)` for no data.
    fn decode(&self, message: &[u8]) -> Option<Option<Vec<u8>>> {
        if !self.base64 {
            return Some(Some(message.to_vec()));
        }
        decode_payload(std::str::from_utf8(message).ok()?).ok()
    }
}

/// What must follow a final message the harness built, or a verified PLAIN password.
#[derive(Debug)]
enum Expected {
    Success {
        username: String,
        verifier: Option<Vec<u8>>,
    },
    Failure(SaslFailure, Option<ScramError>),
}

impl Expected {
    fn outcome(
        exists: bool,
        proven: bool,
        disabled: bool,
        binding_supported: bool,
        username: &str,
        verifier: Option<Vec<u8>>,
    ) -> Expected {
        if !exists || !proven {
            Expected::Failure(SaslFailure::NotAuthorized, None)
        } else if disabled {
            Expected::Failure(SaslFailure::AccountDisabled, None)
        } else if !binding_supported {
            Expected::Failure(
                SaslFailure::NotAuthorized,
                Some(ScramError::UnsupportedChannelBindingType),
            )
        } else {
            Expected::Success {
                username: username.to_owned(),
                verifier,
            }
        }
    }

    fn check(self, step: &Step, exchange: &SaslExchange) {
        let fallback = exchange.binding_fallback().is_some();
        match (self, step) {
            (
                Expected::Success { username, verifier },
                Step::Success {
                    username: u,
                    additional,
                },
            ) => {
                assert_eq!(&username, u);
                assert_eq!(&verifier, additional, "v= is not what the client expects");
                assert!(!fallback);
            }
            (Expected::Failure(failure, error), Step::Failure(f)) => {
                assert_eq!((failure, error), (*f, exchange.scram_error()));
                assert_eq!(
                    fallback,
                    error == Some(ScramError::UnsupportedChannelBindingType),
                    "binding fallback"
                );
            }
            (expected, got) => panic!("expected {expected:?}, got {got:?}"),
        }
    }
}

/// The client side of SCRAM after server-first, from RFC 5802 §3.
struct ScramClient<'a> {
    alg: HashAlg,
    gs2_header: &'a str,
    bare: &'a str,
    server_first: &'a str,
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

impl<'a> ScramClient<'a> {
    /// Checks server-first against the client-first it answers.
    fn new(alg: HashAlg, client_first: &'a str, server_first: &'a str) -> ScramClient<'a> {
        let mut parts = client_first.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("server-first for a client-first without a GS2 header: {client_first:?}");
        };
        let gs2_header = client_first
            .get(..flag.len() + authzid.len() + 2)
            .unwrap_or_default();
        let client_nonce = bare
            .split(',')
            .nth(1)
            .and_then(|r| r.strip_prefix("r="))
            .unwrap_or_default();
        let mut attrs = server_first.split(',');
        let (Some(r), Some(s), Some(i), None) =
            (attrs.next(), attrs.next(), attrs.next(), attrs.next())
        else {
            panic!("server-first is not r=,s=,i=: {server_first:?}");
        };
        let nonce = r.strip_prefix("r=").unwrap_or_default();
        assert!(
            nonce.len() > client_nonce.len() && nonce.starts_with(client_nonce),
            "server nonce {nonce:?} does not extend the client's {client_nonce:?}"
        );
        let salt = s
            .strip_prefix("s=")
            .and_then(|s| STANDARD.decode(s).ok())
            .expect("s= is base64");
        let iterations = i.strip_prefix("i=").and_then(|i| i.parse().ok());
        let iterations = iterations.expect("i= is a number");
        assert!(
            [ACCOUNT_ITER, FAKE_ITER].contains(&iterations),
            "unexpected iteration count {iterations}"
        );
        ScramClient {
            alg,
            gs2_header,
            bare,
            server_first,
            nonce,
            salt,
            iterations,
        }
    }

    /// Client-final with a proof for `password`, and what the server must answer to it.
    fn finish(&self, password: &str, run: &SaslStream<'_>) -> (Vec<u8>, Expected) {
        let alg = self.alg;
        let prepared = stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password));
        let mut salted = vec![0u8; alg.output_len()];
        match alg {
            HashAlg::Sha1 => {
                pbkdf2::pbkdf2_hmac::<Sha1>(
                    prepared.as_bytes(),
                    &self.salt,
                    self.iterations,
                    &mut salted,
                );
            }
            HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(
                prepared.as_bytes(),
                &self.salt,
                self.iterations,
                &mut salted,
            ),
        }
        let client_key = mac(alg, &salted, b"Client Key");
        let stored_key = digest(alg, &client_key);
        let server_key = mac(alg, &salted, b"Server Key");

        // An unsupported type gets no data: the server checks `c=` up to the GS2 header.
        let cb_name = self
            .gs2_header
            .strip_prefix("p=")
            .and_then(|rest| rest.split(',').next());
        let cb_data = cb_name.map(|name| run.cfg.bindings.data(name));
        let binding_supported = !matches!(cb_data, Some(None));
        let cb_data = cb_data.flatten().unwrap_or_default();
        let cbind = [self.gs2_header.as_bytes(), cb_data].concat();
        let without_proof = format!("c={},r={}", STANDARD.encode(cbind), self.nonce);
        let auth_message = format!("{},{},{without_proof}", self.bare, self.server_first);
        let signature = mac(alg, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let verifier = format!(
            "v={}",
            STANDARD.encode(mac(alg, &server_key, auth_message.as_bytes()))
        );
        let message = format!("{without_proof},p={}", STANDARD.encode(proof));

        let asked = run.creds.asked.borrow();
        let username = asked.last().map_or("", String::as_str);
        let exists = username == "user" && run.creds.state.exists();
        let proven = exists && run.creds.keys(alg).stored_key == stored_key;
        let expected = Expected::outcome(
            exists,
            proven,
            run.creds.state == AccountState::Disabled,
            binding_supported,
            username,
            Some(verifier.into_bytes()),
        );
        (message.into_bytes(), expected)
    }
}

fn mac(alg: HashAlg, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn with<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let Ok(mut mac) = <Hmac<D> as KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        HashAlg::Sha1 => with::<Sha1>(key, data),
        HashAlg::Sha256 => with::<Sha256>(key, data),
    }
}

fn digest(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => Sha1::digest(data).to_vec(),
        HashAlg::Sha256 => Sha256::digest(data).to_vec(),
    }
}

/// `decode_payload` accepts exactly canonical base64 (plus `""` and `"="`), and
/// `encode_payload` output always decodes back.
fn check_payload_codec(message: &[u8]) {
    if let Ok(text) = std::str::from_utf8(message) {
        match decode_payload(text) {
            Ok(None) => assert!(text.is_empty()),
            Ok(Some(bytes)) => assert_eq!(encode_payload(&bytes), text, "not canonical"),
            Err(failure) => assert_eq!(failure, SaslFailure::IncorrectEncoding),
        }
    }
    let encoded = encode_payload(message);
    assert_eq!(decode_payload(&encoded), Ok(Some(message.to_vec())));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AccountState {
    Enabled,
    Disabled,
    Unavailable,
    /// Only SCRAM-SHA-1 keys are stored (an account from an old import).
    Sha1Only,
}

impl AccountState {
    fn exists(self) -> bool {
        self != AccountState::Unavailable
    }
}

/// The one account, `user`, in the state the input picked; records every lookup.
struct FuzzCreds {
    state: AccountState,
    /// No message has a code point unassigned in Unicode 3.2 (see [`has_unassigned`]), so the
    /// username asked about must be prepared.
    stable: bool,
    asked: RefCell<Vec<String>>,
}

impl FuzzCreds {
    fn keys(&self, alg: HashAlg) -> ScramKeys {
        static KEYS: OnceLock<(ScramKeys, ScramKeys)> = OnceLock::new();
        let (sha1, sha256) = KEYS.get_or_init(|| {
            (
                derive_keys(HashAlg::Sha1, PASSWORD, b"sha1 salt", ACCOUNT_ITER),
                derive_keys(HashAlg::Sha256, PASSWORD, b"sha256 salt", ACCOUNT_ITER),
            )
        });
        match (alg, self.state) {
            (HashAlg::Sha1, _) => sha1.clone(),
            (HashAlg::Sha256, AccountState::Sha1Only) => ScramKeys {
                salt: Vec::new(),
                iterations: ACCOUNT_ITER,
                stored_key: Vec::new(),
                server_key: Vec::new(),
            },
            (HashAlg::Sha256, _) => sha256.clone(),
        }
    }
}

impl CredentialSource for FuzzCreds {
    fn lookup(&self, username: &str) -> Lookup {
        if self.stable {
            assert_eq!(
                jid::nodeprep(username).as_deref(),
                Ok(username),
                "asked about an unprepared username"
            );
        }
        self.asked.borrow_mut().push(username.to_owned());
        match self.state {
            AccountState::Unavailable => Lookup::Unavailable,
            _ if username != "user" => Lookup::NotFound,
            state => Lookup::Found {
                sha1: self.keys(HashAlg::Sha1),
                sha256: self.keys(HashAlg::Sha256),
                disabled: state == AccountState::Disabled,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke() {
        super::framer(b"\x01<message><body>hi</body></message> <iq/></stream:stream>");
        super::stanza(b"\x01<db:result from='a' to='b'>key</db:result>");
        super::jid("JÜRGEN@Example.COM/Laptop".as_bytes());
        // SCRAM-SHA-256 with an initial response; the harness proves the password.
        super::sasl(b"\x8a\x04n,,n=user,r=abc\xffpencil");
        // PLAIN over TLS.
        super::sasl(b"\x8c\x00\x00user\x00pencil");
    }
}
