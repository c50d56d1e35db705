//! XEP-0078 through the negotiator: byte vectors in, actions and bytes out.

use super::super::tests::{client_header, header, plain_auth, secured, text, Fixture};
use super::*;
use crate::stream::sasl;
use crate::xml::{self, StreamNs};

fn iq(s: &str) -> Element {
    xml::parse_element(
        s.as_bytes(),
        &StreamNs::new(ns::CLIENT),
        &xml::Limits::default(),
    )
    .unwrap()
}

fn get(id: &str, user: &str) -> Element {
    iq(&format!(
        "<iq type='get' id='{id}'><query xmlns='jabber:iq:auth'><username>{user}</username></query></iq>"
    ))
}

fn set(id: &str, fields: &str) -> Element {
    iq(&format!(
        "<iq type='set' id='{id}'><query xmlns='jabber:iq:auth'>{fields}</query></iq>"
    ))
}

fn login(user: &str, password: &str, resource: &str) -> Element {
    set(
        "a2",
        &format!(
            "<username>{user}</username><password>{password}</password><resource>{resource}</resource>"
        ),
    )
}

const FIELDS: &str = "<iq type='result' id='a1'><query xmlns='jabber:iq:auth'>\
                      <username/><password/><resource/></query></iq>";
const NOT_AUTHORIZED: &str = "<iq type='error' id='a2'><error type='auth' code='401'>\
     <not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>";

/// Run a set through the verification it asks for (the real PBKDF2).
fn verify(n: &mut Negotiator, f: &Fixture, el: &Element, out: &mut Vec<u8>) -> Action {
    match n.on_nonza(el, &f.env(), out).unwrap() {
        Action::VerifyPlain { password, keys } => {
            let ok = sasl::verify_plain(&password, &keys);
            n.plain_verified(ok, &f.env(), out).unwrap()
        }
        other => other,
    }
}

fn features(n: &mut Negotiator, f: &Fixture) -> String {
    let mut out = Vec::new();
    n.on_header(&client_header(), &f.env(), &mut out).unwrap();
    text(&out)
}

const FEATURE: &str = "<auth xmlns='http://jabber.org/features/iq-auth'/>";

#[test]
fn is_request_recognizes_gets_and_sets_only() {
    let ns = StreamNs::new(ns::CLIENT);
    let limits = xml::Limits::default();
    let head = |s: &'static str| xml::scan_stanza(s.as_bytes(), &ns, &limits).unwrap();
    assert!(is_request(&head(
        "<iq type='get' id='1'><query xmlns='jabber:iq:auth'/></iq>"
    )));
    assert!(is_request(&head(
        "<iq type='set' id='1'><query xmlns='jabber:iq:auth'/></iq>"
    )));
    assert!(!is_request(&head(
        "<iq type='result' id='1'><query xmlns='jabber:iq:auth'/></iq>"
    )));
    assert!(!is_request(&head(
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"
    )));
    assert!(!is_request(&head(
        "<message><query xmlns='jabber:iq:auth'/></message>"
    )));
}

#[test]
fn iqauth_01_feature_on_encrypted_streams_only_and_never_after_auth() {
    let f = Fixture::new();
    assert!(features(&mut Negotiator::new(true), &f).contains(FEATURE));
    // Not on a plaintext stream by default (IQAUTH-11), with or without TLS required.
    assert!(!features(&mut Negotiator::new(false), &f).contains(FEATURE));
    let mut lax = Fixture::new();
    lax.require_tls = false;
    assert!(!features(&mut Negotiator::new(false), &lax).contains(FEATURE));
    // `--iq-auth on`
    lax.iq_auth_without_tls = true;
    assert!(features(&mut Negotiator::new(false), &lax).contains(FEATURE));
    // `--iq-auth off`
    let mut off = Fixture::new();
    off.iq_auth = false;
    assert!(!features(&mut Negotiator::new(true), &off).contains(FEATURE));
    // After SASL: bind, not iq-auth.
    let mut n = secured(&f);
    let mut out = Vec::new();
    let a = n
        .on_nonza(&plain_auth("alice", "secret"), &f.env(), &mut out)
        .unwrap();
    assert!(matches!(a, Action::VerifyPlain { .. }));
    n.plain_verified(true, &f.env(), &mut out).unwrap();
    let s = features(&mut n, &f);
    assert!(s.contains("<bind "), "{s}");
    assert!(!s.contains("iq-auth"), "{s}");
}

#[test]
fn iqauth_02_03_get_lists_the_fields_for_anyone() {
    let f = Fixture::new();
    let mut n = secured(&f);
    for user in ["alice", "nobody", ""] {
        let mut out = Vec::new();
        let a = n.on_nonza(&get("a1", user), &f.env(), &mut out).unwrap();
        assert!(matches!(a, Action::Continue));
        // No <digest/>: SCRAM-only storage cannot check one.
        assert_eq!(text(&out), FIELDS);
    }
    assert_eq!(n.attempts_failed(), 0);
    assert!(n.before_auth());
}

#[test]
fn iqauth_04_set_authenticates_and_waits_for_the_bind() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    let a = verify(&mut n, &f, &login("alice", "secret", "globe"), &mut out);
    let Action::Authenticated(user) = a else {
        panic!("{a:?}");
    };
    assert_eq!(user.as_str(), "alice@example.com");
    // Nothing is answered before the bind; stanzas are not a session's yet.
    assert!(out.is_empty(), "{}", text(&out));
    assert!(n.authenticated().is_none());
    let (u, r) = n.iq_auth_pending().unwrap();
    assert_eq!((u.as_str(), r), ("alice@example.com", "globe"));
    let full = u.with_resource(r).unwrap();
    n.iq_auth_bound(Ok(&full), &mut out);
    assert_eq!(text(&out), "<iq type='result' id='a2'/>");
    assert_eq!(
        n.authenticated().map(|j| j.as_str()),
        Some("alice@example.com")
    );
    assert!(n.iq_auth_pending().is_none());
    // No restart follows: a header now would be a new stream, not this one's restart.
    assert!(!n.before_auth());
}

#[test]
fn iqauth_04_resource_is_resourceprepped() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    let a = verify(&mut n, &f, &login("Alice", "secret", "G\u{2126}"), &mut out);
    assert!(matches!(a, Action::Authenticated(_)), "{a:?}");
    let (u, r) = n.iq_auth_pending().unwrap();
    assert_eq!((u.as_str(), r), ("alice@example.com", "G\u{3a9}"));
}

#[test]
fn iqauth_06_10_wrong_password_unknown_user_and_bad_username_are_identical() {
    let f = Fixture::new();
    let cases = [
        ("alice", "wrong"),
        ("nobody", "secret"),
        ("bad@name", "secret"),
    ];
    for (user, password) in cases {
        let mut n = secured(&f);
        let mut out = Vec::new();
        let a = verify(&mut n, &f, &login(user, password, "globe"), &mut out);
        assert!(matches!(a, Action::Continue), "{a:?}");
        let s = text(&out);
        // IQAUTH-10: nothing of the request comes back.
        assert_eq!(s, NOT_AUTHORIZED, "{user}");
        assert_eq!(n.attempts_failed(), 1, "{user}");
        assert!(n.iq_auth_pending().is_none());
        assert!(n.before_auth());
    }
}

#[test]
fn iqauth_06_disabled_account_is_not_authorized_with_a_text_only_after_the_password() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    verify(&mut n, &f, &login("dave", "wrong", "globe"), &mut out);
    assert_eq!(text(&out), NOT_AUTHORIZED);
    let mut n = secured(&f);
    out.clear();
    verify(&mut n, &f, &login("dave", "secret", "globe"), &mut out);
    let s = text(&out);
    assert!(s.contains("code='401'><not-authorized "), "{s}");
    assert!(s.contains("the account is disabled"), "{s}");
    assert_eq!(n.attempts_failed(), 1);
}

#[test]
fn iqauth_06_missing_fields_are_not_acceptable() {
    let f = Fixture::new();
    let cases = [
        (
            "<password>secret</password><resource>globe</resource>",
            "a username is required",
        ),
        (
            "<username>alice</username><password>secret</password>",
            "a resource is required",
        ),
        (
            "<username>alice</username><password>secret</password><resource/>",
            "a resource is required",
        ),
        (
            "<username>alice</username><resource>globe</resource>",
            "a password is required",
        ),
        (
            "<username>alice</username><password/><resource>globe</resource>",
            "a password is required",
        ),
        // IQAUTH-05 cannot be met: SCRAM keys cannot check SHA1(stream id + password).
        (
            "<username>alice</username><digest>48fc78be9ec8f86d8ce1c39c320c97c21d62334d</digest>\
             <resource>globe</resource>",
            "digest authentication is not supported",
        ),
        (
            "<username>alice</username><password>secret</password><resource>a\u{fffd}</resource>",
            "invalid resource",
        ),
    ];
    for (fields, why) in cases {
        let mut n = secured(&f);
        let mut out = Vec::new();
        let a = n.on_nonza(&set("a2", fields), &f.env(), &mut out).unwrap();
        assert!(matches!(a, Action::Continue), "{a:?}");
        let s = text(&out);
        assert!(
            s.starts_with(
                "<iq type='error' id='a2'><error type='modify' code='406'>\
                 <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            ),
            "{s}"
        );
        assert!(s.contains(why), "{s}");
        assert!(!s.contains("secret") && !s.contains("alice"), "{s}");
        assert_eq!(n.attempts_failed(), 1);
    }
    // A set without any query payload in jabber:iq:auth's `query` is missing everything.
    let mut n = secured(&f);
    let mut out = Vec::new();
    let el = iq("<iq type='set' id='a2'><x xmlns='jabber:iq:auth'/></iq>");
    n.on_nonza(&el, &f.env(), &mut out).unwrap();
    assert!(text(&out).contains("code='406'"));
}

#[test]
fn iqauth_06_codes_are_sent_whatever_the_legacy_codes_setting() {
    let mut f = Fixture::new();
    f.legacy_error_codes = false;
    let mut n = secured(&f);
    let mut out = Vec::new();
    verify(&mut n, &f, &login("alice", "wrong", "globe"), &mut out);
    assert_eq!(text(&out), NOT_AUTHORIZED);
}

#[test]
fn iqauth_07_bind_failure_answers_the_login_and_allows_another() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    verify(&mut n, &f, &login("alice", "secret", "globe"), &mut out);
    let conflict = StanzaError::with_text(StanzaCondition::Conflict, "resource in use");
    n.iq_auth_bound(Err(&conflict), &mut out);
    let s = text(&out);
    assert!(
        s.starts_with(
            "<iq type='error' id='a2'><error type='cancel' code='409'>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        ),
        "{s}"
    );
    // The credentials were right: not a failed attempt.
    assert_eq!(n.attempts_failed(), 0);
    assert!(n.before_auth());
    assert!(n.authenticated().is_none());
    out.clear();
    let a = verify(&mut n, &f, &login("alice", "secret", "other"), &mut out);
    assert!(matches!(a, Action::Authenticated(_)), "{a:?}");
    assert_eq!(n.iq_auth_pending().unwrap().1, "other");
}

#[test]
fn iqauth_08_after_any_sasl_attempt_is_policy_violation() {
    let f = Fixture::new();
    // A failed attempt, an aborted one, one still running.
    let attempts: [&[Element]; 3] = [
        &[plain_auth("alice", "wrong")],
        &[Element::new("abort", ns::SASL)],
        &[Element::new("auth", ns::SASL).with_attr("mechanism", "SCRAM-SHA-1")],
    ];
    for sasl in attempts {
        for request in [get("a1", "alice"), login("alice", "secret", "globe")] {
            let mut n = secured(&f);
            let mut out = Vec::new();
            for el in sasl {
                if let Action::VerifyPlain { .. } = n.on_nonza(el, &f.env(), &mut out).unwrap() {
                    n.plain_verified(false, &f.env(), &mut out).unwrap();
                }
            }
            out.clear();
            let e = n.on_nonza(&request, &f.env(), &mut out).unwrap_err();
            assert_eq!(e.condition, StreamCondition::PolicyViolation);
            assert!(out.is_empty());
        }
    }
}

#[test]
fn iqauth_09_off_is_service_unavailable_on_any_stream() {
    let mut f = Fixture::new();
    f.iq_auth = false;
    for legacy in [false, true] {
        for request in [get("a1", "alice"), login("alice", "secret", "globe")] {
            let mut n = Negotiator::new(true);
            let version = (!legacy).then_some("1.0");
            let hdr = header(Some("example.com"), version, ns::CLIENT);
            n.on_header(&hdr, &f.env(), &mut Vec::new()).unwrap();
            assert_eq!(n.is_legacy(), legacy);
            let mut out = Vec::new();
            let a = n.on_nonza(&request, &f.env(), &mut out).unwrap();
            assert!(matches!(a, Action::Continue));
            let s = text(&out);
            assert!(s.contains("code='503'><service-unavailable "), "{s}");
            assert_eq!(n.attempts_failed(), 0);
        }
    }
    // Not a XEP-0078 answer: the flag decides about its code.
    f.legacy_error_codes = false;
    let mut n = secured(&f);
    let mut out = Vec::new();
    n.on_nonza(&get("a1", "alice"), &f.env(), &mut out).unwrap();
    assert!(!text(&out).contains("code="));
}

#[test]
fn iqauth_11_refused_on_plaintext_streams_unless_on() {
    let f = Fixture::new();
    let mut n = Negotiator::new(false);
    n.on_header(&client_header(), &f.env(), &mut Vec::new())
        .unwrap();
    let mut out = Vec::new();
    n.on_nonza(&get("a1", "alice"), &f.env(), &mut out).unwrap();
    let s = text(&out);
    assert!(s.contains("code='406'><not-acceptable "), "{s}");
    assert!(s.contains("encryption is required"), "{s}");
    // The get tested nothing; the set sent a password in the clear, and counts.
    assert_eq!(n.attempts_failed(), 0);
    out.clear();
    let a = n
        .on_nonza(&login("alice", "secret", "globe"), &f.env(), &mut out)
        .unwrap();
    assert!(matches!(a, Action::Continue), "{a:?}");
    assert!(text(&out).contains("encryption is required"));
    assert_eq!(n.attempts_failed(), 1);
    // `--iq-auth on`
    let mut on = Fixture::new();
    on.iq_auth_without_tls = true;
    let mut n = Negotiator::new(false);
    n.on_header(&client_header(), &on.env(), &mut Vec::new())
        .unwrap();
    let a = verify(&mut n, &on, &login("alice", "secret", "globe"), &mut out);
    assert!(matches!(a, Action::Authenticated(_)), "{a:?}");
}

#[test]
fn pre_1_0_stream_logs_in_and_returns_to_legacy_after_a_failure() {
    let f = Fixture::new();
    let mut n = Negotiator::new(true);
    let mut out = Vec::new();
    n.on_header(
        &header(Some("example.com"), None, ns::CLIENT),
        &f.env(),
        &mut out,
    )
    .unwrap();
    assert!(!text(&out).contains("features"));
    out.clear();
    n.on_nonza(&get("a1", "alice"), &f.env(), &mut out).unwrap();
    assert_eq!(text(&out), FIELDS);
    out.clear();
    verify(&mut n, &f, &login("alice", "wrong", "globe"), &mut out);
    assert_eq!(text(&out), NOT_AUTHORIZED);
    assert!(n.is_legacy());
    // Still no SASL on a pre-1.0 stream.
    let e = n
        .on_nonza(&plain_auth("alice", "secret"), &f.env(), &mut out)
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::UnsupportedStanzaType);
    let a = verify(&mut n, &f, &login("alice", "secret", "globe"), &mut out);
    assert!(matches!(a, Action::Authenticated(_)), "{a:?}");
    let conflict = StanzaError::new(StanzaCondition::Conflict);
    n.iq_auth_bound(Err(&conflict), &mut out);
    assert!(n.is_legacy());
}

#[test]
fn failures_count_toward_max_auth_failures_then_policy_violation() {
    let f = Fixture::new(); // max_auth_failures: 2
    let mut n = secured(&f);
    let mut out = Vec::new();
    n.on_nonza(&set("a2", "<username>alice</username>"), &f.env(), &mut out)
        .unwrap();
    out.clear();
    let a = n
        .on_nonza(&login("alice", "wrong", "globe"), &f.env(), &mut out)
        .unwrap();
    let Action::VerifyPlain { password, keys } = a else {
        panic!("{a:?}");
    };
    assert!(!sasl::verify_plain(&password, &keys));
    let e = n.plain_verified(false, &f.env(), &mut out).unwrap_err();
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
    // The login's answer comes before the stream error.
    assert_eq!(text(&out), NOT_AUTHORIZED);
    assert_eq!(n.attempts_failed(), 2);
}

#[test]
fn sasl_and_iq_auth_failures_add_up() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    verify(&mut n, &f, &login("alice", "wrong", "globe"), &mut out);
    // SASL after a failed XEP-0078 login is fine (SASL is preferred), and its failure is
    // the stream's second.
    let a = n
        .on_nonza(&plain_auth("alice", "wrong"), &f.env(), &mut out)
        .unwrap();
    assert!(matches!(a, Action::VerifyPlain { .. }));
    let e = n.plain_verified(false, &f.env(), &mut out).unwrap_err();
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
}

#[test]
fn set_during_per_address_backoff_checks_nothing() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut env = f.env();
    env.auth_backoff = Some(std::time::Duration::from_secs(4));
    let mut out = Vec::new();
    let a = n
        .on_nonza(&login("alice", "secret", "globe"), &env, &mut out)
        .unwrap();
    assert!(matches!(a, Action::Continue), "{a:?}");
    let s = text(&out);
    assert!(
        s.starts_with("<iq type='error' id='a2'><error type='wait'><policy-violation "),
        "{s}"
    );
    // Not the address's failure (that would extend its own backoff); the stream's.
    assert_eq!(n.attempts_failed(), 0);
    let e = n
        .on_nonza(&login("alice", "secret", "globe"), &env, &mut out)
        .unwrap_err();
    assert_eq!(e.condition, StreamCondition::PolicyViolation);
    // The get is not a login attempt.
    assert!(!crate::stream::is_login_attempt(&get("a1", "alice")));
    assert!(crate::stream::is_login_attempt(&login("a", "b", "c")));
}

#[test]
fn storage_failure_is_internal_server_error_and_tests_nothing() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    let a = n
        .on_nonza(&login("broken", "secret", "globe"), &f.env(), &mut out)
        .unwrap();
    assert!(matches!(a, Action::Continue), "{a:?}");
    let s = text(&out);
    assert!(
        s.contains("<error type='wait' code='500'><internal-server-error "),
        "{s}"
    );
    assert_eq!(n.attempts_failed(), 0);
}

#[test]
fn missing_id_is_bad_request() {
    let f = Fixture::new();
    let mut n = secured(&f);
    let mut out = Vec::new();
    let el = iq("<iq type='get'><query xmlns='jabber:iq:auth'/></iq>");
    n.on_nonza(&el, &f.env(), &mut out).unwrap();
    let s = text(&out);
    assert!(
        s.starts_with("<iq type='error'><error type='modify' code='400'><bad-request "),
        "{s}"
    );
    assert_eq!(n.attempts_failed(), 0);
}
