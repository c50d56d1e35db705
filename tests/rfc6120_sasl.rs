//! RFC 6120 §6 SASL with SCRAM (RFC 5802/7677) and PLAIN (RFC 4616), on the wire.

mod common;

use base64::Engine as _;
use common::*;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn failure_condition(el: &xmppd::xml::Element) -> String {
    assert_eq!(el.name, "failure", "{el:?}");
    assert_eq!(el.ns, SASL);
    el.elements().next().expect("condition").name.clone()
}

/// The `<text/>` of a SASL failure.
fn failure_text(el: &xmppd::xml::Element) -> Option<String> {
    el.child("text", SASL).map(|t| t.text())
}

/// One SCRAM exchange with any GS2 header and channel-binding data, as sent by a client that
/// may know channel-binding types the server does not (the harness's client binds only to
/// tls-exporter). Returns the server's last element: its answer to client-first when that is
/// not a challenge, else its answer to client-final.
fn scram_exchange(
    c: &mut Client,
    mech: &str,
    user: &str,
    password: &str,
    gs2: &str,
    cb_data: &[u8],
) -> xmppd::xml::Element {
    use sha2::Digest;
    let sha256 = mech.starts_with("SCRAM-SHA-256");
    let hmac = |key: &[u8], data: &[u8]| scram_hmac(sha256, key, data);
    let bare = format!("n={user},r=fallbackclientnonce");
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='{mech}'>{}</auth>",
        b64(format!("{gs2}{bare}").as_bytes())
    ));
    let challenge = c.recv_el();
    if challenge.name != "challenge" {
        return challenge;
    }
    let server_first = unb64(&challenge.text());
    let attr = |name: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(name))
            .expect("server-first attribute")
            .to_string()
    };
    let salt = base64::engine::general_purpose::STANDARD
        .decode(attr("s="))
        .unwrap();
    let iterations: u32 = attr("i=").parse().unwrap();
    let mut salted = vec![0u8; if sha256 { 32 } else { 20 }];
    if sha256 {
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    } else {
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password.as_bytes(), &salt, iterations, &mut salted);
    }
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = if sha256 {
        sha2::Sha256::digest(&client_key).to_vec()
    } else {
        sha1::Sha1::digest(&client_key).to_vec()
    };
    let cbind = [gs2.as_bytes(), cb_data].concat();
    let without_proof = format!("c={},r={}", b64(&cbind), attr("r="));
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    c.send(&format!(
        "<response xmlns='{SASL}'>{}</response>",
        b64(format!("{without_proof},p={}", b64(&proof)).as_bytes())
    ));
    c.recv_el()
}

#[test]
fn core_sasl_scram_sha_1_and_256_succeed_with_server_signature() {
    let s = Server::shared();
    let (user, pw) = s.new_user("scram");
    for mech in [
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
    ] {
        let mut c = Client::secured(s);
        // auth_scram checks the v= server signature (CORE-SASL-13).
        let r = c.auth_scram(mech, &user, &pw);
        assert_eq!(r.name, "success", "{mech}: {r:?}");
        // CORE-SASL-13: after success, no mechanisms and no STARTTLS.
        let (_, f) = c.negotiate();
        assert!(f.child("mechanisms", SASL).is_none());
        assert!(f
            .child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
            .is_none());
        assert!(f
            .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .is_some());
    }
}

#[test]
fn core_sasl_05_invalid_mechanism_keeps_stream_open() {
    let s = Server::shared();
    let (user, pw) = s.new_user("mech");
    let mut c = Client::secured(s);
    c.send(&format!("<auth xmlns='{SASL}' mechanism='NOPE'/>"));
    assert_eq!(failure_condition(&c.recv_el()), "invalid-mechanism");
    c.send(&format!("<auth xmlns='{SASL}'/>"));
    assert_eq!(failure_condition(&c.recv_el()), "invalid-mechanism");
    let r = c.auth_plain(&user, &pw);
    assert_eq!(r.name, "success");
}

#[test]
fn core_sasl_06_incorrect_encoding() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNl\nAHB3</auth>"
    ));
    assert_eq!(failure_condition(&c.recv_el()), "incorrect-encoding");
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>!!!</auth>"
    ));
    assert_eq!(failure_condition(&c.recv_el()), "incorrect-encoding");
}

#[test]
fn core_sasl_07_08_wrong_password_retries_then_policy_violation() {
    let s = Server::shared();
    let (user, pw) = s.new_user("wrong");
    let mut c = Client::secured(s);
    assert_eq!(
        failure_condition(&c.auth_plain(&user, "nope")),
        "not-authorized"
    );
    assert_eq!(
        failure_condition(&c.auth_scram("SCRAM-SHA-256", &user, "nope")),
        "not-authorized"
    );
    // The stream is still usable for a correct attempt...
    let mut ok = Client::secured(s);
    assert_eq!(ok.auth_plain(&user, &pw).name, "success");
    // ...but the third failure on one stream closes it (default --max-auth-failures 3).
    assert_eq!(
        failure_condition(&c.auth_plain(&user, "nope")),
        "not-authorized"
    );
    c.expect_stream_error("policy-violation");
}

#[test]
fn core_sasl_09_abort() {
    let s = Server::shared();
    let (user, pw) = s.new_user("abort");
    let mut c = Client::secured(s);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{}</auth>",
        b64(format!("n,,n={user},r=abcdefgh").as_bytes())
    ));
    assert_eq!(c.recv_el().name, "challenge");
    c.send(&format!("<abort xmlns='{SASL}'/>"));
    assert_eq!(failure_condition(&c.recv_el()), "aborted");
    assert_eq!(c.auth_scram("SCRAM-SHA-256", &user, &pw).name, "success");
}

#[test]
fn core_sasl_10_empty_initial_response_differs_from_none() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    // No initial response: the server sends an empty challenge.
    c.send(&format!("<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'/>"));
    let ch = c.recv_el();
    assert_eq!(ch.name, "challenge");
    assert!(ch.text().is_empty() || ch.text() == "=");
    c.send(&format!("<abort xmlns='{SASL}'/>"));
    assert_eq!(failure_condition(&c.recv_el()), "aborted");
    // "=" is an empty initial response, which SCRAM cannot accept.
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>=</auth>"
    ));
    assert_eq!(failure_condition(&c.recv_el()), "malformed-request");
}

#[test]
fn core_sasl_11_foreign_authzid_is_invalid() {
    let s = Server::shared();
    let (user, pw) = s.new_user("authz");
    let mut c = Client::secured(s);
    let payload = b64(format!("someoneelse@localhost\0{user}\0{pw}").as_bytes());
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{payload}</auth>"
    ));
    assert_eq!(failure_condition(&c.recv_el()), "invalid-authzid");
    let payload = b64(format!("{user}@localhost\0{user}\0{pw}").as_bytes());
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{payload}</auth>"
    ));
    assert_eq!(c.recv_el().name, "success");
}

#[test]
fn core_sasl_12_malformed_scram() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{}</auth>",
        b64(b"n,,x=nobody")
    ));
    assert_eq!(failure_condition(&c.recv_el()), "malformed-request");
}

#[test]
fn core_sasl_14_no_second_authentication() {
    let s = Server::shared();
    let (user, pw) = s.new_user("twice");
    let mut c = Client::secured(s);
    assert_eq!(c.auth_plain(&user, &pw).name, "success");
    c.negotiate();
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{}</auth>",
        b64(b"\0x\0y")
    ));
    c.expect_stream_error("unsupported-stanza-type");
}

#[test]
fn core_sasl_15_16_server_first_format() {
    let s = Server::shared();
    let (user, _) = s.new_user("first");
    let mut c = Client::secured(s);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{}</auth>",
        b64(format!("n,,n={user},r=clientnonce").as_bytes())
    ));
    let first = unb64(&c.recv_el().text());
    let parts: Vec<&str> = first.split(',').collect();
    assert!(parts[0].starts_with("r=clientnonce") && parts[0].len() > "r=clientnonce".len() + 8);
    assert!(parts[1].starts_with("s="));
    let iters: u32 = parts[2].strip_prefix("i=").unwrap().parse().unwrap();
    assert!(iters >= 4096);
}

#[test]
fn core_sasl_unknown_user_is_indistinguishable_until_the_end() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    // An unknown user gets a normal server-first (no account harvesting), then not-authorized.
    let r = c.auth_scram("SCRAM-SHA-256", "nosuchuser", "whatever");
    assert_eq!(failure_condition(&r), "not-authorized");
}

#[test]
fn core_sasl_18_wrong_proof_gets_no_signature() {
    let s = Server::shared();
    let (user, _) = s.new_user("proof");
    let mut c = Client::secured(s);
    let r = c.auth_scram("SCRAM-SHA-1", &user, "wrong password");
    assert_eq!(failure_condition(&r), "not-authorized");
    assert!(r.text().is_empty());
}

#[test]
fn core_sasl_19_downgrade_detected() {
    let s = Server::shared();
    let (user, _) = s.new_user("down");
    let mut c = Client::secured(s);
    // "y": the client supports channel binding but thinks we do not; we advertised -PLUS.
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{}</auth>",
        b64(format!("y,,n={user},r=abcdefgh").as_bytes())
    ));
    let r = c.recv_el();
    assert_eq!(failure_condition(&r), "not-authorized");
    // RFC 5802 §7's server-error, in <text> (RFC 6120 has no additional data on failure).
    assert_eq!(
        failure_text(&r).as_deref(),
        Some("e=server-does-support-channel-binding")
    );
}

/// Issue 8: a client that knows only `tls-unique` (slixmpp 1.8.3, Debian 12) tries
/// SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS with `p=tls-unique`, then SCRAM-SHA-256 with `y`.
/// The -PLUS attempts fail with `e=unsupported-channel-binding-type` once the client proved
/// its password; the `y` that follows on the same stream is its fallback, not a downgrade.
#[test]
fn core_sasl_20_tls_unique_client_falls_back_to_y_on_the_same_stream() {
    let s = Server::shared();
    let (user, pw) = s.new_user("unique");
    let mut c = Client::secured(s);
    let plus: Vec<_> = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
        .into_iter()
        .map(|mech| scram_exchange(&mut c, mech, &user, &pw, "p=tls-unique,,", b"finished"))
        .collect();
    // The third attempt on the stream (default --max-auth-failures 3) succeeds.
    let r = scram_exchange(&mut c, "SCRAM-SHA-256", &user, &pw, "y,,", b"");
    assert_eq!(r.name, "success", "{r:?} after {plus:?}");
    for r in &plus {
        assert_eq!(failure_condition(r), "not-authorized", "{r:?}");
        assert_eq!(
            failure_text(r).as_deref(),
            Some("e=unsupported-channel-binding-type"),
            "{r:?}"
        );
    }
    let (_, f) = c.negotiate();
    assert!(f
        .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
        .is_some());
}

/// Issue 8: an unsupported channel-binding type after a proven password is not an
/// authentication failure: it does not count toward --max-auth-failures.
#[test]
fn core_sasl_20_unsupported_channel_binding_type_does_not_count_as_a_failure() {
    let s = Server::start(&["--max-auth-failures", "1"]);
    s.adduser("uniq", "uniq-pw");
    let mut c = Client::secured(&s);
    for mech in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        let r = scram_exchange(&mut c, mech, "uniq", "uniq-pw", "p=tls-unique,,", b"x");
        assert_eq!(
            failure_text(&r).as_deref(),
            Some("e=unsupported-channel-binding-type"),
            "{mech}: {r:?}"
        );
    }
    let r = scram_exchange(&mut c, "SCRAM-SHA-1", "uniq", "uniq-pw", "y,,", b"");
    assert_eq!(r.name, "success", "{r:?}");
    // A wrong password in a -PLUS attempt is an ordinary failure, and counts.
    let mut c = Client::secured(&s);
    let r = scram_exchange(
        &mut c,
        "SCRAM-SHA-256-PLUS",
        "uniq",
        "nope",
        "p=tls-unique,,",
        b"x",
    );
    assert_eq!(failure_condition(&r), "not-authorized");
    assert_eq!(failure_text(&r), None);
    c.expect_stream_error("policy-violation");
}

/// The fallback is bound to a proven password: anyone can send a -PLUS attempt, so `y` stays
/// a downgrade after an unproven one, and after one proven for another account.
#[test]
fn core_sasl_19_y_stays_a_downgrade_without_a_proven_plus_attempt() {
    let s = Server::shared();
    let (user, pw) = s.new_user("mitm");
    let (other, other_pw) = s.new_user("mitm");
    let mut c = Client::secured(s);
    let r = scram_exchange(
        &mut c,
        "SCRAM-SHA-256-PLUS",
        &user,
        "guess",
        "p=tls-unique,,",
        b"x",
    );
    assert_eq!(failure_condition(&r), "not-authorized");
    let r = scram_exchange(&mut c, "SCRAM-SHA-256", &user, &pw, "y,,", b"");
    assert_eq!(
        failure_text(&r).as_deref(),
        Some("e=server-does-support-channel-binding"),
        "{r:?}"
    );

    let mut c = Client::secured(s);
    let r = scram_exchange(
        &mut c,
        "SCRAM-SHA-256-PLUS",
        &other,
        &other_pw,
        "p=tls-unique,,",
        b"x",
    );
    assert_eq!(
        failure_text(&r).as_deref(),
        Some("e=unsupported-channel-binding-type"),
        "{r:?}"
    );
    let r = scram_exchange(&mut c, "SCRAM-SHA-256", &user, &pw, "y,,", b"");
    assert_eq!(
        failure_text(&r).as_deref(),
        Some("e=server-does-support-channel-binding"),
        "{r:?}"
    );
    // A -PLUS attempt with a supported type and `y` afterwards: still refused.
    let mut c = Client::secured(s);
    assert_eq!(
        c.auth_scram("SCRAM-SHA-256-PLUS", &user, "guess").name,
        "failure"
    );
    let r = scram_exchange(&mut c, "SCRAM-SHA-256", &user, &pw, "y,,", b"");
    assert_eq!(failure_condition(&r), "not-authorized");
}

#[test]
fn core_sasl_21_reserved_m_attribute() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{}</auth>",
        b64(b"n,,m=ext,n=user,r=abcdefgh")
    ));
    assert_eq!(failure_condition(&c.recv_el()), "malformed-request");
}

#[test]
fn core_sasl_23_plain_missing_separator() {
    let s = Server::shared();
    let mut c = Client::secured(s);
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{}</auth>",
        b64(b"userpassword")
    ));
    assert_eq!(failure_condition(&c.recv_el()), "malformed-request");
}

#[test]
fn allow_plaintext_flag_permits_scram_without_tls_but_not_plain() {
    let s = Server::start(&["--allow-plaintext"]);
    s.adduser("bench", "benchpw");
    let mut c = Client::plain(&s);
    let (_, f) = c.negotiate();
    let mechs: Vec<String> = f
        .child("mechanisms", SASL)
        .expect("mechanisms without TLS")
        .elements()
        .map(|m| m.text())
        .collect();
    assert!(mechs.contains(&"SCRAM-SHA-256".to_string()));
    // CORE-SASL-04: PLAIN only over TLS.
    assert!(!mechs.contains(&"PLAIN".to_string()));
    assert!(!mechs.iter().any(|m| m.ends_with("-PLUS")));
    // STARTTLS is offered but not required.
    let tls = f
        .child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .unwrap();
    assert!(tls
        .child("required", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());
    assert_eq!(
        c.auth_scram("SCRAM-SHA-256", "bench", "benchpw").name,
        "success"
    );
}
