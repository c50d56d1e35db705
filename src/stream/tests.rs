//! Negotiator unit tests: byte vectors in, actions and bytes out.

use super::*;
use crate::xml::StreamHeader;

/// alice@example.com (password "secret"), disabled dave@example.com (the same password), and
/// broken@example.com, whose lookup fails; nobody else.
pub(super) struct NoAccounts;

impl Accounts for NoAccounts {
    fn lookup(&self, bare: &str) -> Lookup {
        let disabled = match bare {
            "alice@example.com" => false,
            "dave@example.com" => true,
            "broken@example.com" => return Lookup::Unavailable,
            _ => return Lookup::NotFound,
        };
        let sha1 = sasl::derive_keys(sasl::HashAlg::Sha1, "secret", b"salt1salt1salt1!", 4096);
        let sha256 = sasl::derive_keys(sasl::HashAlg::Sha256, "secret", b"salt2salt2salt2!", 4096);
        Lookup::Found {
            sha1,
            sha256,
            disabled,
        }
    }
}

pub(super) fn header(to: Option<&str>, version: Option<&str>, ns: &str) -> StreamHeader {
    StreamHeader {
        to: to.map(str::to_string),
        from: None,
        id: None,
        version: version.map(str::to_string),
        lang: Some("en".into()),
        default_ns: Some(ns.to_string()),
        prefix: Some("stream".into()),
        extra: Vec::new(),
    }
}

pub(super) fn client_header() -> StreamHeader {
    header(Some("example.com"), Some("1.0"), ns::CLIENT)
}

pub(super) struct Fixture {
    pub(super) domains: Vec<String>,
    pub(super) bindings: ChannelBindings,
    pub(super) require_tls: bool,
    pub(super) iq_auth: bool,
    pub(super) iq_auth_without_tls: bool,
    pub(super) legacy_error_codes: bool,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        Fixture {
            domains: vec!["example.com".to_string()],
            bindings: ChannelBindings::default(),
            require_tls: true,
            iq_auth: true,
            iq_auth_without_tls: false,
            legacy_error_codes: true,
        }
    }

    pub(super) fn env(&self) -> Env<'_> {
        Env {
            domains: &self.domains,
            require_tls: self.require_tls,
            plain_without_tls: false,
            tls_available: true,
            bindings: &self.bindings,
            max_auth_failures: 2,
            post_auth_features: &[],
            accounts: &NoAccounts,
            fake_salt_secret: b"0123456789abcdef0123456789abcdef",
            scram_iterations: 4096,
            auth_backoff: None,
            iq_auth: self.iq_auth,
            iq_auth_without_tls: self.iq_auth_without_tls,
            legacy_error_codes: self.legacy_error_codes,
        }
    }
}

pub(super) fn text(out: &[u8]) -> String {
    String::from_utf8(out.to_vec()).unwrap()
}

pub(super) fn plain_auth(user: &str, pw: &str) -> Element {
    Element::new("auth", ns::SASL)
        .with_attr("mechanism", "PLAIN")
        .with_text(sasl::encode_payload(format!("\0{user}\0{pw}").as_bytes()))
}

#[test]
fn core_tls_01_02_only_starttls_before_tls_when_required() {
    let f = Fixture::new();
    let mut n = Negotiator::new(false);
    let mut out = Vec::new();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    let s = text(&out);
    assert!(s.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"));
    assert!(!s.contains("mechanisms"));
    assert!(s.contains("version='1.0'"));
}

#[test]
fn core_stream_07_08_error_after_our_header() {
    let f = Fixture::new();
    let mut n = Negotiator::new(false);
    let mut out = Vec::new();
    let err = n
        .on_header(
            &header(Some("example.com"), Some("1.0"), ns::SERVER),
            &f.env(),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(err.condition, StreamCondition::InvalidNamespace);
    n.write_error(&err, &f.domains, &mut out);
    let s = text(&out);
    let hdr = s.find("<stream:stream").unwrap();
    let e = s.find("<stream:error>").unwrap();
    assert!(hdr < e);
    assert_eq!(s.matches("<stream:stream").count(), 1);
}

#[test]
fn write_error_without_any_header_writes_one() {
    let mut n = Negotiator::new(false);
    let mut out = Vec::new();
    n.write_error(
        &StreamError::new(StreamCondition::NotWellFormed),
        &["example.com".to_string()],
        &mut out,
    );
    let s = text(&out);
    assert!(s.starts_with("<?xml version='1.0'?><stream:stream"));
    assert!(s.ends_with("</stream:error></stream:stream>"));
}

#[test]
fn core_stream_05_10_11_header_checks() {
    let f = Fixture::new();
    let mut out = Vec::new();
    let e = Negotiator::new(false)
        .on_header(
            &header(Some("other.org"), Some("1.0"), ns::CLIENT),
            &f.env(),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::HostUnknown);
    let e = Negotiator::new(false)
        .on_header(
            &header(Some("example.com"), Some("2.0"), ns::CLIENT),
            &f.env(),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::UnsupportedVersion);
    let e = Negotiator::new(false)
        .on_header(
            &header(Some("example.com"), Some("one"), ns::CLIENT),
            &f.env(),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::UnsupportedVersion);
    let mut legacy = Negotiator::new(false);
    out.clear();
    legacy
        .on_header(
            &header(Some("example.com"), None, ns::CLIENT),
            &f.env(),
            &mut out,
        )
        .unwrap();
    assert!(legacy.is_legacy());
    let s = text(&out);
    let hdr = s.split("<stream:stream").nth(1).unwrap();
    assert!(!hdr.contains("version="));
    assert!(!s.contains("features"));
    let mut minor = Negotiator::new(false);
    out.clear();
    minor
        .on_header(
            &header(Some("Example.COM"), Some("1.5"), ns::CLIENT),
            &f.env(),
            &mut out,
        )
        .unwrap();
    assert!(text(&out).contains("version='1.0'"));
}

#[test]
fn core_tls_03_starttls_then_07_auth_refused_in_clear() {
    let f = Fixture::new();
    let mut n = Negotiator::new(false);
    let mut out = Vec::new();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    out.clear();
    let a = n
        .on_nonza(&plain_auth("alice", "secret"), &f.env(), &mut out)
        .unwrap();
    assert!(matches!(a, Action::Continue));
    assert!(text(&out).contains("<encryption-required/>"));
    out.clear();
    let a = n
        .on_nonza(&Element::new("starttls", ns::TLS), &f.env(), &mut out)
        .unwrap();
    assert!(matches!(a, Action::StartTls));
    assert_eq!(
        text(&out),
        "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    assert!(n.secured());
    // After TLS: mechanisms, no STARTTLS; a second STARTTLS fails (CORE-TLS-11).
    out.clear();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    let s = text(&out);
    assert!(s.contains("<mechanism>PLAIN</mechanism>"));
    assert!(!s.contains("starttls"));
    out.clear();
    let a = n
        .on_nonza(&Element::new("starttls", ns::TLS), &f.env(), &mut out)
        .unwrap();
    assert!(matches!(a, Action::Close));
    assert!(text(&out).starts_with("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"));
}

pub(super) fn secured(f: &Fixture) -> Negotiator {
    let mut n = Negotiator::new(true);
    let mut out = Vec::new();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    n
}

#[test]
fn plain_success_moves_to_restart_then_bind_features() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    let a = n
        .on_nonza(&plain_auth("alice", "secret"), &f.env(), &mut out)
        .unwrap();
    let Action::VerifyPlain { password, keys } = a else {
        panic!("{a:?}");
    };
    assert!(sasl::verify_plain(&password, &keys));
    let a = n.plain_verified(true, &f.env(), &mut out).unwrap();
    let Action::Authenticated(user) = a else {
        panic!("{a:?}");
    };
    assert_eq!(user.as_str(), "alice@example.com");
    assert!(text(&out).contains("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"));
    let first_id = n.stream_id().to_string();
    out.clear();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    assert_ne!(n.stream_id(), first_id);
    let s = text(&out);
    assert!(s.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"));
    assert!(!s.contains("mechanisms"));
    assert_eq!(
        n.authenticated().map(|j| j.as_str()),
        Some("alice@example.com")
    );
    // CORE-SASL-14
    let e = n
        .on_nonza(&plain_auth("alice", "secret"), &f.env(), &mut out)
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::UnsupportedStanzaType);
}

#[test]
fn core_sasl_05_07_08_failures_are_counted() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    // Issue 8: an invalid mechanism counts like a wrong password.
    let nope = Element::new("auth", ns::SASL).with_attr("mechanism", "NOPE");
    n.on_nonza(&nope, &f.env(), &mut out).unwrap();
    assert!(text(&out).contains("<invalid-mechanism/>"));
    assert_eq!(n.attempts_failed(), 1);
    out.clear();
    let Action::VerifyPlain { .. } = n
        .on_nonza(&plain_auth("alice", "wrong"), &f.env(), &mut out)
        .unwrap()
    else {
        panic!()
    };
    let e = n.plain_verified(false, &f.env(), &mut out).unwrap_err();
    assert!(text(&out).contains("<not-authorized/>"));
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
    assert_eq!(n.attempts_failed(), 2);
}

#[test]
fn encryption_required_counts_as_a_failure() {
    let f = Fixture::new();
    let mut n = Negotiator::new(false);
    let mut out = Vec::new();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    n.on_nonza(&plain_auth("alice", "secret"), &f.env(), &mut out)
        .unwrap();
    assert_eq!(n.attempts_failed(), 1);
    let e = n
        .on_nonza(&plain_auth("alice", "secret"), &f.env(), &mut out)
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
}

#[test]
fn auth_during_per_address_backoff_is_temporary_auth_failure_and_checks_nothing() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    let mut env = f.env();
    env.auth_backoff = Some(std::time::Duration::from_secs(4));
    // PLAIN would ask for a PBKDF2 verification; under backoff it gets none.
    let a = n
        .on_nonza(&plain_auth("alice", "secret"), &env, &mut out)
        .unwrap();
    assert!(matches!(a, Action::Continue), "{a:?}");
    assert!(text(&out).contains("<temporary-auth-failure/>"));
    // Not a failed attempt for the address (that would extend its own backoff), but it
    // counts on the stream.
    assert_eq!(n.attempts_failed(), 0);
    let e = n
        .on_nonza(&plain_auth("alice", "secret"), &env, &mut out)
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
}

#[test]
fn core_sasl_09_abort_and_response_without_exchange() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    n.on_nonza(&Element::new("abort", ns::SASL), &f.env(), &mut out)
        .unwrap();
    assert!(text(&out).contains("<aborted/>"));
    out.clear();
    n.on_nonza(&Element::new("response", ns::SASL), &f.env(), &mut out)
        .unwrap();
    assert!(text(&out).contains("<malformed-request/>"));
}

#[test]
fn unknown_nonza_is_unsupported_stanza_type() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    let e = n
        .on_nonza(&Element::new("foo", "urn:example"), &f.env(), &mut out)
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::UnsupportedStanzaType);
}

#[test]
fn plus_and_channel_binding_advertised_with_bindings() {
    let mut f = Fixture::new();
    f.bindings.tls_server_end_point = Some(vec![1; 32]);
    let mut n = Negotiator::new(true);
    let mut out = Vec::new();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    let s = text(&out);
    assert!(s.contains("SCRAM-SHA-256-PLUS"));
    assert!(s.contains("<channel-binding type='tls-server-end-point'/>"));
}

/// The role decides the content namespace on both sides, and what is offered: a server or
/// component stream is refused a client's namespace, gets no SASL mechanism of ours and no
/// XEP-0078, and a client stream is refused theirs (CORE-STREAM-08).
#[test]
fn roles_decide_the_content_namespace_and_the_offer() {
    let f = Fixture::new();
    for role in [Role::Client, Role::Server, Role::Component] {
        for peer_ns in [ns::CLIENT, ns::SERVER, ns::COMPONENT_ACCEPT] {
            let mut n = Negotiator::with_role(role, true);
            assert_eq!(n.role(), role);
            let mut out = Vec::new();
            let r = n.on_header(
                &header(Some("example.com"), Some("1.0"), peer_ns),
                &f.env(),
                &mut out,
            );
            let s = text(&out);
            assert!(
                s.starts_with(&format!(
                    "<?xml version='1.0'?><stream:stream xmlns='{}'",
                    role.content_ns()
                )),
                "{role:?}: {s}"
            );
            if peer_ns != role.content_ns() {
                let e = r.unwrap_err();
                assert_eq!(e.condition, StreamCondition::InvalidNamespace, "{role:?}");
                continue;
            }
            r.unwrap();
            let offers_sasl = s.contains("<mechanisms");
            let offers_iq_auth = s.contains(ns::IQ_AUTH_FEATURE);
            assert_eq!(offers_sasl, role == Role::Client, "{role:?}: {s}");
            assert_eq!(offers_iq_auth, role == Role::Client, "{role:?}: {s}");
        }
    }
}
