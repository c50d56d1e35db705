//! The XEP-0114 accept handshake, sans I/O: the component's stream header, our header, and
//! `<handshake>hex(SHA-1(stream id ‖ secret))</handshake>`. The connection feeds it the
//! header and the elements before the handshake and obeys the result; every path is a unit
//! test on bytes.
//!
//! | input | answer |
//! |---|---|
//! | header in `jabber:component:accept` for a configured domain not connected now | our header, `from` the domain, a fresh `id` (COMP-01) |
//! | header for a domain not configured | our header, `<host-unknown/>` (COMP-02) |
//! | header for a connected domain | our header, `<conflict/>` (COMP-02; the connected stream stays) |
//! | header in another namespace | our header, `<invalid-namespace/>` (COMP-03) |
//! | `<handshake>` with the right digest (hex, any case) | `<handshake/>`: authenticated (COMP-04) |
//! | `<handshake>` with a wrong digest | `<not-authorized/>` and close (COMP-05) |
//! | any other element before the handshake | `<not-authorized/>`, not routed (COMP-10) |

use sha1::{Digest, Sha1};

use crate::xml::{escape_attr, StanzaHead, StreamHeader};
use crate::xmpp::error::{StreamCondition, StreamError};
use crate::xmpp::jid::nameprep_domain;
use crate::xmpp::ns;

/// What the component settings say about a domain, as the handshake needs it.
pub trait Secrets {
    /// The secret of a configured component domain (normalized), if any.
    fn secret(&self, domain: &str) -> Option<&str>;
    /// True while another stream serves `domain`.
    fn connected(&self, domain: &str) -> bool;
}

/// The handshake state of one component stream.
#[derive(Debug, Default)]
pub struct Handshake {
    stream_id: String,
    /// The component's domain, once its header named a configured one.
    domain: Option<String>,
    header_sent: bool,
    done: bool,
}

/// The hex SHA-1 of the stream id and the secret, as the component sends it.
pub fn digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    let d = h.finalize();
    let mut s = String::with_capacity(40);
    for b in d.iter() {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// Whether `claimed` is the digest for `stream_id` and `secret`: hex in either case, compared
/// in time that does not depend on where it differs.
pub fn verify(stream_id: &str, secret: &str, claimed: &str) -> bool {
    let want = digest(stream_id, secret);
    let claimed = claimed.trim().as_bytes();
    if claimed.len() != want.len() {
        return false;
    }
    let diff = want
        .bytes()
        .zip(claimed)
        .fold(0u8, |acc, (w, c)| acc | (w ^ c.to_ascii_lowercase()));
    diff == 0
}

impl Handshake {
    /// A new stream, waiting for the component's header.
    pub fn new() -> Handshake {
        Handshake::default()
    }

    /// A stream whose handshake succeeded elsewhere (it moved to its home shard): our
    /// header was sent.
    pub fn established(domain: &str) -> Handshake {
        Handshake {
            stream_id: String::new(),
            domain: Some(domain.to_string()),
            header_sent: true,
            done: true,
        }
    }

    /// The stream id we sent.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The component's domain, once its header named a configured one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// True once the handshake succeeded.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The component's stream header: answer with ours, or fail (the caller writes the error
    /// with [`Handshake::write_error`] and closes).
    pub fn on_header(
        &mut self,
        hdr: &StreamHeader,
        secrets: &dyn Secrets,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        if self.header_sent {
            return Err(StreamError::with_text(
                StreamCondition::NotAuthorized,
                "a component stream does not restart",
            ));
        }
        self.stream_id = crate::util::stream_id();
        let to = hdr
            .to
            .as_deref()
            .and_then(|t| nameprep_domain(t).ok())
            .map(|d| d.into_owned());
        self.write_header(out, to.as_deref());
        // COMP-03: only the accept protocol.
        if hdr.default_ns.as_deref() != Some(ns::COMPONENT_ACCEPT) {
            return Err(StreamError::with_text(
                StreamCondition::InvalidNamespace,
                format!("the content namespace must be {}", ns::COMPONENT_ACCEPT),
            ));
        }
        // COMP-02: a domain we serve for a component, and no other stream serving it.
        let Some(domain) = to.filter(|d| secrets.secret(d).is_some()) else {
            return Err(StreamError::with_text(
                StreamCondition::HostUnknown,
                "no component is configured for this name",
            ));
        };
        if secrets.connected(&domain) {
            return Err(StreamError::with_text(
                StreamCondition::Conflict,
                "another stream serves this component",
            ));
        }
        self.domain = Some(domain);
        Ok(())
    }

    /// An element before the handshake completed: the handshake itself, or anything else
    /// (COMP-10). `text` is the element's character data (the caller parses it only for a
    /// `<handshake/>`). Ok(domain) when authenticated; `<handshake/>` is written.
    pub fn on_element(
        &mut self,
        head: &StanzaHead<'_>,
        text: &str,
        secrets: &dyn Secrets,
        out: &mut Vec<u8>,
    ) -> Result<String, StreamError> {
        let (Some(domain), false) = (self.domain.as_deref(), self.done) else {
            return Err(StreamError::new(StreamCondition::NotAuthorized));
        };
        if !is_handshake(head) {
            return Err(StreamError::with_text(
                StreamCondition::NotAuthorized,
                "complete the handshake first",
            ));
        }
        let ok = secrets
            .secret(domain)
            .is_some_and(|secret| verify(&self.stream_id, secret, text));
        if !ok {
            // COMP-05
            return Err(StreamError::with_text(
                StreamCondition::NotAuthorized,
                "handshake failed",
            ));
        }
        self.done = true;
        out.extend_from_slice(b"<handshake/>");
        Ok(domain.to_string())
    }

    /// Write a stream error, after our header if it was not sent yet (RFC 6120 §4.7.1).
    pub fn write_error(&mut self, err: &StreamError, out: &mut Vec<u8>) {
        if !self.header_sent {
            if self.stream_id.is_empty() {
                self.stream_id = crate::util::stream_id();
            }
            let domain = self.domain.clone();
            self.write_header(out, domain.as_deref());
        }
        err.write_to(out);
    }

    fn write_header(&mut self, out: &mut Vec<u8>, from: Option<&str>) {
        out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
        out.extend_from_slice(ns::COMPONENT_ACCEPT.as_bytes());
        out.extend_from_slice(b"' xmlns:stream='");
        out.extend_from_slice(ns::STREAMS.as_bytes());
        out.extend_from_slice(b"' id='");
        out.extend_from_slice(self.stream_id.as_bytes());
        out.push(b'\'');
        if let Some(from) = from {
            out.extend_from_slice(b" from='");
            escape_attr(from, out);
            out.push(b'\'');
        }
        out.push(b'>');
        self.header_sent = true;
    }
}

/// `<handshake/>` in the component namespace.
pub fn is_handshake(head: &StanzaHead<'_>) -> bool {
    head.name == "handshake" && head.ns == ns::COMPONENT_ACCEPT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Frame, Framer, Limits};

    struct Conf {
        connected: bool,
    }

    impl Secrets for Conf {
        fn secret(&self, domain: &str) -> Option<&str> {
            (domain == "irc.example.org").then_some("s3cret")
        }
        fn connected(&self, _: &str) -> bool {
            self.connected
        }
    }

    const FREE: Conf = Conf { connected: false };

    fn header(ns: &str, to: Option<&str>) -> StreamHeader {
        let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
        let raw = format!(
            "<stream:stream xmlns='{ns}' xmlns:stream='http://etherx.jabber.org/streams'{to}>"
        );
        let mut f = Framer::new(Limits::default());
        match f.next(raw.as_bytes()) {
            Ok(Some((Frame::StreamOpen(h), _))) => h,
            other => panic!("{other:?}"),
        }
    }

    fn head(raw: &str) -> StanzaHead<'_> {
        static NS: std::sync::OnceLock<crate::xml::StreamNs> = std::sync::OnceLock::new();
        let ns = NS.get_or_init(|| crate::xml::StreamNs::new(ns::COMPONENT_ACCEPT));
        crate::xml::scan_stanza(raw.as_bytes(), ns, &Limits::default()).unwrap()
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn digest_is_lowercase_hex_sha1_of_id_and_secret() {
        let d = digest("3BF96D32", "secret");
        assert_eq!(d.len(), 40);
        assert!(d
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Known vector: sha1("abc") = a9993e36...
        assert_eq!(
            digest("a", "bc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert!(verify(
            "a",
            "bc",
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        ));
        assert!(verify(
            "a",
            "bc",
            " a9993e364706816aba3e25717850c26c9cd0d89d\n"
        ));
        assert!(!verify(
            "a",
            "bc",
            "a9993e364706816aba3e25717850c26c9cd0d89e"
        ));
        assert!(!verify("a", "bc", "a9993e36"));
        assert!(!verify("a", "bc", ""));
    }

    #[test]
    fn comp_01_header_for_a_configured_domain_gets_ours_with_from_and_id() {
        let mut h = Handshake::new();
        let mut out = Vec::new();
        h.on_header(
            &header(ns::COMPONENT_ACCEPT, Some("IRC.example.org")),
            &FREE,
            &mut out,
        )
        .unwrap();
        let s = text(&out);
        assert!(s.contains("xmlns='jabber:component:accept'"), "{s}");
        assert!(s.contains("from='irc.example.org'"), "{s}");
        assert!(s.contains(&format!("id='{}'", h.stream_id())), "{s}");
        assert!(!h.stream_id().is_empty());
        let open = s.split("<stream:stream").nth(1).unwrap_or_default();
        assert!(
            !open.contains("version"),
            "no version on a component stream: {s}"
        );
        assert_eq!(h.domain(), Some("irc.example.org"));
        let other = {
            let mut h2 = Handshake::new();
            h2.on_header(
                &header(ns::COMPONENT_ACCEPT, Some("irc.example.org")),
                &FREE,
                &mut Vec::new(),
            )
            .unwrap();
            h2.stream_id().to_string()
        };
        assert_ne!(other, h.stream_id(), "a fresh id per stream");
    }

    #[test]
    fn comp_02_unknown_or_connected_domain_is_refused_after_our_header() {
        for (to, conf, cond) in [
            (Some("nope.example.org"), FREE, StreamCondition::HostUnknown),
            (None, FREE, StreamCondition::HostUnknown),
            (
                Some("irc.example.org"),
                Conf { connected: true },
                StreamCondition::Conflict,
            ),
        ] {
            let mut h = Handshake::new();
            let mut out = Vec::new();
            let err = h
                .on_header(&header(ns::COMPONENT_ACCEPT, to), &conf, &mut out)
                .unwrap_err();
            assert_eq!(err.condition, cond, "{to:?}");
            assert!(text(&out).starts_with("<?xml version='1.0'?><stream:stream "));
            h.write_error(&err, &mut out);
            let s = text(&out);
            assert_eq!(s.matches("<stream:stream").count(), 1, "one header: {s}");
            assert_eq!(s.matches("</stream:stream>").count(), 1, "one close: {s}");
            assert!(s.contains(cond.name()), "{s}");
        }
    }

    #[test]
    fn comp_03_another_namespace_is_invalid_namespace() {
        for ns in ["jabber:component:connect", "jabber:client", "jabber:server"] {
            let mut h = Handshake::new();
            let mut out = Vec::new();
            let err = h
                .on_header(&header(ns, Some("irc.example.org")), &FREE, &mut out)
                .unwrap_err();
            assert_eq!(err.condition, StreamCondition::InvalidNamespace, "{ns}");
        }
    }

    #[test]
    fn comp_04_05_10_the_handshake_decides() {
        let start = || {
            let mut h = Handshake::new();
            h.on_header(
                &header(ns::COMPONENT_ACCEPT, Some("irc.example.org")),
                &FREE,
                &mut Vec::new(),
            )
            .unwrap();
            h
        };
        // COMP-04
        let mut h = start();
        let good = digest(h.stream_id(), "s3cret");
        let mut out = Vec::new();
        let domain = h
            .on_element(&head("<handshake/>"), &good, &FREE, &mut out)
            .unwrap();
        assert_eq!(domain, "irc.example.org");
        assert_eq!(out, b"<handshake/>");
        assert!(h.done());
        // A second handshake on an authenticated stream is not accepted.
        assert!(h
            .on_element(&head("<handshake/>"), &good, &FREE, &mut Vec::new())
            .is_err());
        // COMP-05: a wrong digest, or the right digest of another stream id.
        for bad in [
            digest("other", "s3cret"),
            digest("x", "wrong"),
            String::new(),
        ] {
            let mut h = start();
            let mut out = Vec::new();
            let err = h
                .on_element(&head("<handshake/>"), &bad, &FREE, &mut out)
                .unwrap_err();
            assert_eq!(err.condition, StreamCondition::NotAuthorized);
            assert!(out.is_empty());
            assert!(!h.done());
        }
        // COMP-10: a stanza before the handshake.
        let mut h = start();
        let err = h
            .on_element(
                &head("<message to='a@example.org' from='x@irc.example.org'/>"),
                "",
                &FREE,
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!(err.condition, StreamCondition::NotAuthorized);
        // And an element in another namespace named handshake is not the handshake.
        let mut h = start();
        let good = digest(h.stream_id(), "s3cret");
        assert!(h
            .on_element(
                &head("<handshake xmlns='urn:x'/>"),
                &good,
                &FREE,
                &mut Vec::new()
            )
            .is_err());
    }

    #[test]
    fn a_second_header_is_refused() {
        let mut h = Handshake::new();
        let hdr = header(ns::COMPONENT_ACCEPT, Some("irc.example.org"));
        h.on_header(&hdr, &FREE, &mut Vec::new()).unwrap();
        let mut out = Vec::new();
        assert!(h.on_header(&hdr, &FREE, &mut out).is_err());
        assert!(out.is_empty(), "no second header");
    }
}
