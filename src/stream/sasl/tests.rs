//! Exchange-level tests: RFC test vectors, a test client for every SCRAM variant, every
//! failure path, PLAIN, and the payload codec. Named after the checklist IDs they cover.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::crypto::{hash, hmac, salted_password};
use super::*;

const DOMAIN: &str = "example.com";
const SECRET: &[u8] = b"server secret for fake salts";
/// Small, to keep debug-build tests fast; the RFC vectors use 4096.
const ITER: u32 = 64;
const EXPORTER: &[u8] = b"tls-exporter value of this connection";
const END_POINT: &[u8] = b"hash of the server certificate";

#[derive(Default)]
struct Creds {
    accounts: HashMap<String, (ScramKeys, ScramKeys, bool)>,
    unavailable: bool,
}

impl Creds {
    fn with(mut self, user: &str, password: &str, disabled: bool) -> Creds {
        let sha1 = derive_keys(
            HashAlg::Sha1,
            password,
            format!("sha1 {user}").as_bytes(),
            ITER,
        );
        let sha256 = derive_keys(
            HashAlg::Sha256,
            password,
            format!("sha256 {user}").as_bytes(),
            ITER,
        );
        self.accounts
            .insert(user.to_owned(), (sha1, sha256, disabled));
        self
    }

    fn standard() -> Creds {
        Creds::default()
            .with("user", "pencil", false)
            .with("locked", "pencil", true)
            .with("a,b=c", "secret", false)
            .with("ix", "secret", false)
    }
}

impl CredentialSource for Creds {
    fn lookup(&self, username: &str) -> Lookup {
        if self.unavailable {
            return Lookup::Unavailable;
        }
        match self.accounts.get(username) {
            Some((sha1, sha256, disabled)) => Lookup::Found {
                sha1: sha1.clone(),
                sha256: sha256.clone(),
                disabled: *disabled,
            },
            None => Lookup::NotFound,
        }
    }
}

fn both_bindings() -> ChannelBindings {
    ChannelBindings {
        tls_server_end_point: Some(END_POINT.to_vec()),
        tls_exporter: Some(EXPORTER.to_vec()),
    }
}

fn config(bindings: &ChannelBindings) -> SaslConfig<'_> {
    SaslConfig {
        domain: DOMAIN,
        secure: true,
        plus_offered: bindings.any(),
        bindings,
        fake_salt_secret: SECRET,
        default_iterations: ITER,
    }
}

/// A minimal SCRAM client, written from RFC 5802 §3 independently of the server code paths.
struct Client {
    alg: HashAlg,
    password: String,
    gs2_header: String,
    bare: String,
    /// Channel-binding data the client appends to the GS2 header in `c=`.
    cb_data: Vec<u8>,
}

impl Client {
    fn new(
        mech: Mechanism,
        user: &str,
        password: &str,
        gs2_header: &str,
        cb_data: &[u8],
    ) -> Client {
        Client {
            alg: mech.hash_alg().expect("SCRAM"),
            password: password.to_owned(),
            gs2_header: gs2_header.to_owned(),
            bare: format!("n={user},r=Cl1ent+N0nce"),
            cb_data: cb_data.to_vec(),
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.bare).into_bytes()
    }

    /// Client-final with a proof valid for the message actually sent, plus the expected `v=`.
    /// `c`/`r`/`ext` override the channel binding input, the nonce, and add extensions.
    fn finish(
        &self,
        server_first: &[u8],
        c: Option<&[u8]>,
        r: Option<&str>,
        ext: &str,
    ) -> (Vec<u8>, Vec<u8>) {
        let server_first = std::str::from_utf8(server_first).expect("utf-8");
        let attr = |name: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(name))
                .expect("attribute")
                .to_owned()
        };
        let nonce = attr("r=");
        assert!(
            nonce.starts_with("Cl1ent+N0nce"),
            "CORE-SASL-15: nonce starts with the client's"
        );
        let salt = STANDARD.decode(attr("s=")).expect("salt");
        let iterations: u32 = attr("i=").parse().expect("iterations");

        let password = stringprep::saslprep(&self.password).expect("saslprep");
        let salted = salted_password(self.alg, password.as_bytes(), &salt, iterations);
        let client_key = hmac(self.alg, &salted, &[b"Client Key"]);
        let stored_key = hash(self.alg, &client_key);
        let server_key = hmac(self.alg, &salted, &[b"Server Key"]);

        let mut cbind = self.gs2_header.clone().into_bytes();
        cbind.extend_from_slice(&self.cb_data);
        let cbind = c.map_or(cbind, <[u8]>::to_vec);
        let without_proof = format!(
            "c={},r={}{ext}",
            STANDARD.encode(cbind),
            r.unwrap_or(&nonce)
        );
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let signature = hmac(self.alg, &stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let verifier = hmac(self.alg, &server_key, &[auth_message.as_bytes()]);
        (
            format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes(),
            format!("v={}", STANDARD.encode(verifier)).into_bytes(),
        )
    }
}

fn challenge(step: Step) -> Vec<u8> {
    match step {
        Step::Challenge(data) => data,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

/// Runs a full exchange; on success also checks `v=` against the client's expectation.
fn run(mech: Mechanism, client: &Client, cfg: &SaslConfig, creds: &Creds) -> Step {
    let (mut exchange, step) = SaslExchange::start(mech, Some(&client.first()), cfg, creds);
    let Step::Challenge(server_first) = step else {
        return step;
    };
    let (final_message, verifier) = client.finish(&server_first, None, None, "");
    let step = exchange.step(&final_message, cfg, creds);
    if let Step::Success { additional, .. } = &step {
        assert_eq!(
            additional.as_deref(),
            Some(&verifier[..]),
            "CORE-SASL-13: v= verifies"
        );
    }
    assert!(exchange.is_done());
    step
}

fn success(username: &str) -> impl Fn(&Step) -> bool + '_ {
    move |step| matches!(step, Step::Success { username: u, additional: Some(_) } if u == username)
}

const SCRAM: [Mechanism; 2] = [Mechanism::ScramSha1, Mechanism::ScramSha256];
const PLUS: [Mechanism; 2] = [Mechanism::ScramSha1Plus, Mechanism::ScramSha256Plus];

// ---------------------------------------------------------------- RFC test vectors

#[test]
fn core_sasl_15_rfc5802_test_vector() {
    let salt = STANDARD.decode("QSXCR+Q6sek8bf92").expect("b64");
    let keys = derive_keys(HashAlg::Sha1, "pencil", &salt, 4096);
    let mut creds = Creds::default();
    creds
        .accounts
        .insert("user".into(), (keys.clone(), keys, false));
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);

    let (mut exchange, step) = SaslExchange::start_with_nonce(
        Mechanism::ScramSha1,
        Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"),
        &cfg,
        &creds,
        "3rfcNHYJY1ZVvWVs7j",
    );
    assert_eq!(
        step,
        Step::Challenge(
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".to_vec()
        )
    );
    let step = exchange.step(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        &cfg,
        &creds,
    );
    assert_eq!(
        step,
        Step::Success {
            username: "user".into(),
            additional: Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()),
        }
    );
}

#[test]
fn core_sasl_15_rfc7677_test_vector() {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
    let keys = derive_keys(HashAlg::Sha256, "pencil", &salt, 4096);
    let mut creds = Creds::default();
    creds
        .accounts
        .insert("user".into(), (keys.clone(), keys, false));
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);

    let (mut exchange, step) = SaslExchange::start_with_nonce(
        Mechanism::ScramSha256,
        Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
        &cfg,
        &creds,
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    assert_eq!(
        step,
        Step::Challenge(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec()
        )
    );
    let step = exchange.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        &cfg,
        &creds,
    );
    assert_eq!(
        step,
        Step::Success {
            username: "user".into(),
            additional: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
        }
    );
}

// ---------------------------------------------------------------- round trips

#[test]
fn core_sasl_13_round_trip_without_channel_binding() {
    let creds = Creds::standard();
    for bindings in [ChannelBindings::default(), both_bindings()] {
        let cfg = config(&bindings);
        for mech in SCRAM {
            let client = Client::new(mech, "user", "pencil", "n,,", b"");
            assert!(
                success("user")(&run(mech, &client, &cfg, &creds)),
                "{mech:?}"
            );
        }
    }
}

#[test]
fn core_sasl_13_round_trip_with_channel_binding() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    for mech in PLUS {
        for (name, data) in [
            ("tls-exporter", EXPORTER),
            ("tls-server-end-point", END_POINT),
        ] {
            let client = Client::new(mech, "user", "pencil", &format!("p={name},,"), data);
            assert!(
                success("user")(&run(mech, &client, &cfg, &creds)),
                "{mech:?} {name}"
            );
            let gs2 = format!("p={name},a=user@example.com,");
            let client = Client::new(mech, "user", "pencil", &gs2, data);
            assert!(
                success("user")(&run(mech, &client, &cfg, &creds)),
                "{mech:?} {name} authzid"
            );
        }
    }
}

#[test]
fn core_sasl_10_no_initial_response_then_client_first() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    for mech in [Mechanism::ScramSha1, Mechanism::ScramSha256Plus] {
        let gs2 = if mech.is_plus() {
            "p=tls-exporter,,"
        } else {
            "n,,"
        };
        let client = Client::new(
            mech,
            "user",
            "pencil",
            gs2,
            if mech.is_plus() { EXPORTER } else { b"" },
        );
        let (mut exchange, step) = SaslExchange::start(mech, None, &cfg, &creds);
        assert_eq!(step, Step::Challenge(Vec::new()));
        let server_first = challenge(exchange.step(&client.first(), &cfg, &creds));
        let (final_message, verifier) = client.finish(&server_first, None, None, "");
        let step = exchange.step(&final_message, &cfg, &creds);
        assert_eq!(
            step,
            Step::Success {
                username: "user".into(),
                additional: Some(verifier)
            }
        );
    }
}

#[test]
fn core_sasl_10_empty_initial_response_is_not_absent() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    for mech in Mechanism::ALL {
        let (mut exchange, step) = SaslExchange::start(mech, Some(b""), &cfg, &creds);
        assert_eq!(
            step,
            Step::Failure(SaslFailure::MalformedRequest),
            "{mech:?}"
        );
        assert!(exchange.is_done());
        assert_eq!(
            exchange.step(b"n,,n=user,r=x", &cfg, &creds),
            Step::Failure(SaslFailure::MalformedRequest)
        );
    }
}

#[test]
fn scram_extensions_in_client_final_are_accepted() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let client = Client::new(Mechanism::ScramSha256, "user", "pencil", "n,,", b"");
    let (mut exchange, step) =
        SaslExchange::start(Mechanism::ScramSha256, Some(&client.first()), &cfg, &creds);
    let (final_message, verifier) = client.finish(&challenge(step), None, None, ",x=ext");
    let step = exchange.step(&final_message, &cfg, &creds);
    assert_eq!(
        step,
        Step::Success {
            username: "user".into(),
            additional: Some(verifier)
        }
    );
}

// ---------------------------------------------------------------- SCRAM failures

#[test]
fn core_sasl_12_malformed_client_first() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let bad: &[&[u8]] = &[
        b"n,,r=abc",
        b"n,,n=user",
        b"n,,n=user,r=",
        b"n,,r=abc,n=user",
        b"n,,n=user,r=a,b",
        b"x,,n=user,r=abc",
        b"n,n=user,r=abc",
        b"n=user,r=abc",
        b"n,,n=us\xffer,r=abc",
        b"\xff",
    ];
    for mech in SCRAM {
        for message in bad {
            let (_, step) = SaslExchange::start(mech, Some(message), &cfg, &creds);
            assert_eq!(
                step,
                Step::Failure(SaslFailure::MalformedRequest),
                "{}",
                String::from_utf8_lossy(message)
            );
        }
    }
}

#[test]
fn core_sasl_12_malformed_client_final() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let client = Client::new(Mechanism::ScramSha1, "user", "pencil", "n,,", b"");
    let (_, step) = SaslExchange::start(Mechanism::ScramSha1, Some(&client.first()), &cfg, &creds);
    let server_first = challenge(step);
    let (good, _) = client.finish(&server_first, None, None, "");
    let good = String::from_utf8(good).expect("utf-8");
    let (without_proof, proof) = good.rsplit_once(",p=").expect("proof");
    let (c, r) = without_proof.split_once(',').expect("c,r");
    let bad = [
        String::new(),
        without_proof.to_owned(),
        format!("{r},{c},p={proof}"),
        format!("{c},p={proof}"),
        format!("{good},x=1"),
        format!("{without_proof},p={proof} "),
        format!("c=!!!!,{r},p={proof}"),
        format!("{without_proof},p=!!!!"),
        format!("{without_proof},1=x,p={proof}"),
        format!("{without_proof},m=x,p={proof}"),
    ];
    for message in bad {
        let (mut exchange, _) =
            SaslExchange::start(Mechanism::ScramSha1, Some(&client.first()), &cfg, &creds);
        let step = exchange.step(message.as_bytes(), &cfg, &creds);
        assert_eq!(
            step,
            Step::Failure(SaslFailure::MalformedRequest),
            "{message}"
        );
    }
}

#[test]
fn core_sasl_21_reserved_m_attribute() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for message in [&b"n,,m=ext,n=user,r=abc"[..], b"n,,n=user,r=abc,m=ext"] {
        let (_, step) = SaslExchange::start(Mechanism::ScramSha256, Some(message), &cfg, &creds);
        assert_eq!(step, Step::Failure(SaslFailure::MalformedRequest));
    }
}

#[test]
fn core_sasl_22_username_escapes_and_saslprep() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for mech in SCRAM {
        let client = Client::new(mech, "a=2Cb=3Dc", "secret", "n,,", b"");
        assert!(success("a,b=c")(&run(mech, &client, &cfg, &creds)));
        // SASLprep (NFKC: U+2168 ROMAN NUMERAL NINE → "IX"), then Nodeprep lowercases.
        let client = Client::new(mech, "\u{2168}", "secret", "n,,", b"");
        assert!(success("ix")(&run(mech, &client, &cfg, &creds)));
        let client = Client::new(mech, "USER", "pencil", "n,,", b"");
        assert!(success("user")(&run(mech, &client, &cfg, &creds)));
        for bad in ["a=2cb=3Dc", "a=41", "a=", "=", "a=2"] {
            let client = Client::new(mech, bad, "secret", "n,,", b"");
            assert_eq!(
                run(mech, &client, &cfg, &creds),
                Step::Failure(SaslFailure::MalformedRequest),
                "{bad}"
            );
        }
        // Usernames SASLprep/Nodeprep reject name no account: not-authorized.
        for bad in ["us\u{A0}er", "us@er", "us:er", "\u{E000}"] {
            let client = Client::new(mech, bad, "pencil", "n,,", b"");
            assert_eq!(
                run(mech, &client, &cfg, &creds),
                Step::Failure(SaslFailure::NotAuthorized),
                "{bad}"
            );
        }
    }
}

#[test]
fn core_sasl_19_downgrade_detection() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    assert!(cfg.plus_offered);
    for mech in SCRAM {
        let client = Client::new(mech, "user", "pencil", "y,,", b"");
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
    }
    // Without -PLUS advertised, `y` is the client's honest report and succeeds.
    let cfg = SaslConfig {
        plus_offered: false,
        ..cfg
    };
    for mech in SCRAM {
        let client = Client::new(mech, "user", "pencil", "y,,", b"");
        assert!(success("user")(&run(mech, &client, &cfg, &creds)));
    }
}

#[test]
fn core_sasl_20_channel_binding_rules() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    for mech in SCRAM {
        // A cb-name on a non-PLUS mechanism.
        let client = Client::new(mech, "user", "pencil", "p=tls-exporter,,", EXPORTER);
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::MalformedRequest)
        );
    }
    for mech in PLUS {
        // No binding on a PLUS mechanism.
        for gs2 in ["n,,", "y,,"] {
            let client = Client::new(mech, "user", "pencil", gs2, b"");
            assert_eq!(
                run(mech, &client, &cfg, &creds),
                Step::Failure(SaslFailure::MalformedRequest)
            );
        }
        // A type the server does not support.
        let client = Client::new(mech, "user", "pencil", "p=tls-unique,,", b"unique");
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        // Binding data that is not this connection's.
        let client = Client::new(mech, "user", "pencil", "p=tls-exporter,,", END_POINT);
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        let client = Client::new(mech, "user", "pencil", "p=tls-exporter,,", b"");
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
    }
    // A type this connection has no data for.
    let only_end_point = ChannelBindings {
        tls_server_end_point: Some(END_POINT.to_vec()),
        tls_exporter: None,
    };
    let cfg = config(&only_end_point);
    for mech in PLUS {
        let client = Client::new(mech, "user", "pencil", "p=tls-exporter,,", EXPORTER);
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        let client = Client::new(
            mech,
            "user",
            "pencil",
            "p=tls-server-end-point,,",
            END_POINT,
        );
        assert!(success("user")(&run(mech, &client, &cfg, &creds)));
    }
    // No binding data at all: -PLUS was not offered.
    let none = ChannelBindings::default();
    let cfg = config(&none);
    for mech in PLUS {
        let client = Client::new(mech, "user", "pencil", "p=tls-exporter,,", EXPORTER);
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::InvalidMechanism)
        );
        let (_, step) = SaslExchange::start(mech, None, &cfg, &creds);
        assert_eq!(step, Step::Failure(SaslFailure::InvalidMechanism));
    }
}

/// Runs a full exchange like [`run`], optionally after a fallback, and returns the exchange
/// too, for its `scram_error` and `binding_fallback`.
fn run_on_stream(
    mech: Mechanism,
    client: &Client,
    cfg: &SaslConfig,
    creds: &Creds,
    fallback: Option<&BindingFallback>,
) -> (SaslExchange, Step) {
    let (mut exchange, step) =
        SaslExchange::start_with_fallback(mech, Some(&client.first()), cfg, creds, fallback);
    let Step::Challenge(server_first) = step else {
        return (exchange, step);
    };
    let (final_message, _) = client.finish(&server_first, None, None, "");
    let step = exchange.step(&final_message, cfg, creds);
    assert!(exchange.is_done());
    (exchange, step)
}

/// The fallback a client that knows only `tls-unique` earns by proving its password in a
/// -PLUS exchange.
fn tls_unique_fallback(
    user: &str,
    password: &str,
    cfg: &SaslConfig,
    creds: &Creds,
) -> BindingFallback {
    let mech = Mechanism::ScramSha256Plus;
    let client = Client::new(mech, user, password, "p=tls-unique,,", b"tls-unique data");
    let (exchange, _) = run_on_stream(mech, &client, cfg, creds, None);
    exchange.binding_fallback().expect("a fallback").clone()
}

/// Issue 8: a -PLUS exchange with a channel-binding type this connection cannot provide goes on
/// to the proof; a proven password then fails with `e=unsupported-channel-binding-type` and
/// a fallback for that account.
#[test]
fn core_sasl_20_unsupported_channel_binding_type_is_e_unsupported_channel_binding_type() {
    let creds = Creds::standard();
    let both = both_bindings();
    let only_end_point = ChannelBindings {
        tls_server_end_point: Some(END_POINT.to_vec()),
        tls_exporter: None,
    };
    let cases: [(&ChannelBindings, &str); 3] = [
        (&both, "p=tls-unique,,"),
        (&both, "p=x-made-up.1,,"),
        (&only_end_point, "p=tls-exporter,,"),
    ];
    for (bindings, gs2) in cases {
        let cfg = config(bindings);
        for mech in PLUS {
            let client = Client::new(mech, "user", "pencil", gs2, b"some channel");
            let (exchange, step) = run_on_stream(mech, &client, &cfg, &creds, None);
            assert_eq!(step, Step::Failure(SaslFailure::NotAuthorized), "{gs2}");
            assert_eq!(
                exchange.scram_error(),
                Some(ScramError::UnsupportedChannelBindingType),
                "{gs2}"
            );
            assert_eq!(
                exchange.binding_fallback(),
                Some(&BindingFallback {
                    username: "user".into()
                }),
                "{gs2}"
            );
            assert_eq!(
                format!("{exchange:?}"),
                "SaslExchange { state: \"Refused\" }"
            );
            // Without binding data at all, too.
            let client = Client::new(mech, "user", "pencil", gs2, b"");
            let (exchange, _) = run_on_stream(mech, &client, &cfg, &creds, None);
            assert!(exchange.binding_fallback().is_some(), "{gs2}");
        }
    }
    assert_eq!(
        ScramError::UnsupportedChannelBindingType.value(),
        "unsupported-channel-binding-type"
    );
}

/// Before the password is proven, an unsupported type fails like any wrong password: no `e=`,
/// no fallback (nothing tells a guesser the type is the problem).
#[test]
fn core_sasl_20_unsupported_channel_binding_type_without_proof_is_plain_not_authorized() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    for mech in PLUS {
        for (user, password, failure) in [
            ("user", "wrong", SaslFailure::NotAuthorized),
            ("nobody", "pencil", SaslFailure::NotAuthorized),
            ("locked", "pencil", SaslFailure::AccountDisabled),
        ] {
            let client = Client::new(mech, user, password, "p=tls-unique,,", b"data");
            let (exchange, step) = run_on_stream(mech, &client, &cfg, &creds, None);
            assert_eq!(step, Step::Failure(failure), "{user}");
            assert_eq!(exchange.scram_error(), None, "{user}");
            assert_eq!(exchange.binding_fallback(), None, "{user}");
        }
        // The GS2 header in c= must still be client-first's, even with a valid proof.
        let client = Client::new(mech, "user", "pencil", "p=tls-unique,,", b"data");
        for c in [&b"p=tls-exporter,,data"[..], b"p=tls-uniq", b"n,,", b""] {
            let (mut exchange, step) =
                SaslExchange::start(mech, Some(&client.first()), &cfg, &creds);
            let (message, _) = client.finish(&challenge(step), Some(c), None, "");
            assert_eq!(
                exchange.step(&message, &cfg, &creds),
                Step::Failure(SaslFailure::NotAuthorized)
            );
            assert_eq!(exchange.binding_fallback(), None);
        }
    }
}

/// Issue 8: after a proven -PLUS attempt with an unsupported type, `y` from the same account
/// on the same stream is accepted; every other `y` while -PLUS is advertised is a downgrade.
#[test]
fn core_sasl_19_y_after_unsupported_channel_binding_type_is_a_fallback() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    let fallback = tls_unique_fallback("user", "pencil", &cfg, &creds);
    for mech in SCRAM {
        let client = Client::new(mech, "user", "pencil", "y,,", b"");
        let (_, step) = run_on_stream(mech, &client, &cfg, &creds, Some(&fallback));
        assert!(success("user")(&step), "{mech:?}: {step:?}");
        // Also when client-first comes in a <response> after an empty challenge.
        let (mut exchange, step) =
            SaslExchange::start_with_fallback(mech, None, &cfg, &creds, Some(&fallback));
        assert_eq!(step, Step::Challenge(Vec::new()));
        let server_first = challenge(exchange.step(&client.first(), &cfg, &creds));
        let (final_message, _) = client.finish(&server_first, None, None, "");
        assert!(success("user")(&exchange.step(
            &final_message,
            &cfg,
            &creds
        )));

        // Another account, no fallback, or a fallback from another account: a downgrade.
        for (user, password, fallback) in
            [("ix", "secret", Some(&fallback)), ("user", "pencil", None)]
        {
            let client = Client::new(mech, user, password, "y,,", b"");
            let (exchange, step) = run_on_stream(mech, &client, &cfg, &creds, fallback);
            assert_eq!(step, Step::Failure(SaslFailure::NotAuthorized), "{user}");
            assert_eq!(
                exchange.scram_error(),
                Some(ScramError::ServerDoesSupportChannelBinding),
                "{user}"
            );
            assert_eq!(exchange.binding_fallback(), None);
        }
        // The fallback is only about `y`: the proof still has to be right.
        let client = Client::new(mech, "user", "wrong", "y,,", b"");
        let (_, step) = run_on_stream(mech, &client, &cfg, &creds, Some(&fallback));
        assert_eq!(step, Step::Failure(SaslFailure::NotAuthorized));
    }
    // A fallback for the account earned by someone who could not prove the password: none.
    let mech = Mechanism::ScramSha1Plus;
    let client = Client::new(mech, "ix", "guess", "p=tls-unique,,", b"x");
    let (exchange, _) = run_on_stream(mech, &client, &cfg, &creds, None);
    assert_eq!(exchange.binding_fallback(), None);
    assert_eq!(
        ScramError::ServerDoesSupportChannelBinding.value(),
        "server-does-support-channel-binding"
    );
}

#[test]
fn core_sasl_17_nonce_and_gs2_header_must_match() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    for mech in SCRAM.into_iter().chain(PLUS) {
        let (gs2, data): (&str, &[u8]) = if mech.is_plus() {
            ("p=tls-exporter,,", EXPORTER)
        } else {
            ("n,,", b"")
        };
        let client = Client::new(mech, "user", "pencil", gs2, data);
        let start = || SaslExchange::start(mech, Some(&client.first()), &cfg, &creds);

        let (mut exchange, step) = start();
        let server_first = challenge(step);
        let nonce = std::str::from_utf8(&server_first)
            .expect("utf-8")
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .expect("nonce")
            .to_owned();
        let (message, _) = client.finish(&server_first, None, Some(&format!("{nonce}x")), "");
        assert_eq!(
            exchange.step(&message, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );

        let (mut exchange, step) = start();
        let (message, _) = client.finish(&challenge(step), None, Some("Cl1ent+N0nce"), "");
        assert_eq!(
            exchange.step(&message, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );

        for c in [
            &b"y,,"[..],
            b"n,a=user@example.com,",
            b"",
            b"p=tls-server-end-point,,",
        ] {
            let (mut exchange, step) = start();
            let (message, _) = client.finish(&challenge(step), Some(c), None, "");
            assert_eq!(
                exchange.step(&message, &cfg, &creds),
                Step::Failure(SaslFailure::NotAuthorized)
            );
        }
        if !mech.is_plus() {
            // The GS2 header without the channel-binding data the PLUS client appended, and
            // vice versa.
            let (mut exchange, step) = start();
            let (message, _) = client.finish(&challenge(step), Some(b"n,,extra"), None, "");
            assert_eq!(
                exchange.step(&message, &cfg, &creds),
                Step::Failure(SaslFailure::NotAuthorized)
            );
        } else {
            let (mut exchange, step) = start();
            let (message, _) = client.finish(&challenge(step), Some(gs2.as_bytes()), None, "");
            assert_eq!(
                exchange.step(&message, &cfg, &creds),
                Step::Failure(SaslFailure::NotAuthorized)
            );
        }
    }
}

#[test]
fn core_sasl_18_wrong_proof() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for mech in SCRAM {
        let client = Client::new(mech, "user", "wrong", "n,,", b"");
        let step = run(mech, &client, &cfg, &creds);
        assert_eq!(step, Step::Failure(SaslFailure::NotAuthorized), "and no v=");

        // A proof of the wrong length.
        let client = Client::new(mech, "user", "pencil", "n,,", b"");
        let (mut exchange, step) = SaslExchange::start(mech, Some(&client.first()), &cfg, &creds);
        let (message, _) = client.finish(&challenge(step), None, None, "");
        let message = String::from_utf8(message).expect("utf-8");
        let (without_proof, _) = message.rsplit_once(",p=").expect("proof");
        let short = format!("{without_proof},p={}", STANDARD.encode([0u8; 8]));
        assert_eq!(
            exchange.step(short.as_bytes(), &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
    }
}

#[test]
fn core_sasl_17_18_any_corrupted_client_final_fails() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    let mech = Mechanism::ScramSha1Plus;
    let client = Client::new(mech, "user", "pencil", "p=tls-exporter,,", EXPORTER);
    let (exchange, step) = SaslExchange::start(mech, Some(&client.first()), &cfg, &creds);
    let server_first = challenge(step);
    let (message, _) = client.finish(&server_first, None, None, "");
    let replay = |message: &[u8]| {
        let (mut exchange, _) = SaslExchange::start_with_nonce(
            mech,
            Some(&client.first()),
            &cfg,
            &creds,
            std::str::from_utf8(&server_first)
                .ok()
                .and_then(|s| s.split(',').next())
                .and_then(|r| r.strip_prefix("r=Cl1ent+N0nce"))
                .expect("server nonce"),
        );
        exchange.step(message, &cfg, &creds)
    };
    drop(exchange);
    assert!(success("user")(&replay(&message)));
    for cut in 0..message.len() {
        assert!(
            matches!(replay(&message[..cut]), Step::Failure(_)),
            "cut at {cut}"
        );
    }
    for i in 0..message.len() {
        let mut corrupted = message.clone();
        corrupted[i] ^= 0x01;
        assert!(
            matches!(replay(&corrupted), Step::Failure(_)),
            "byte {i} flipped"
        );
    }
}

#[test]
fn scram_client_first_cut_at_every_offset_never_panics() {
    let creds = Creds::standard();
    let bindings = both_bindings();
    let cfg = config(&bindings);
    let message = b"p=tls-exporter,a=user@example.com,n=user,r=abc,x=1";
    for cut in 0..=message.len() {
        for mech in Mechanism::ALL {
            let (_, step) = SaslExchange::start(mech, Some(&message[..cut]), &cfg, &creds);
            assert!(matches!(
                step,
                Step::Challenge(_) | Step::Failure(_) | Step::VerifyPlain { .. }
            ));
        }
    }
}

#[test]
fn core_sasl_11_authzid() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for mech in SCRAM {
        for ok in [
            "n,a=user@example.com,",
            "n,a=USER@Example.COM,",
            "n,a=user@example.com.,",
        ] {
            let client = Client::new(mech, "user", "pencil", ok, b"");
            assert!(success("user")(&run(mech, &client, &cfg, &creds)), "{ok}");
        }
        for bad in [
            "n,a=other@example.com,",
            "n,a=user@example.com/res,",
            "n,a=user@other.org,",
            "n,a=example.com,",
            "n,a=a@b@c,",
            "n,a=locked@example.com,",
        ] {
            let client = Client::new(mech, "user", "pencil", bad, b"");
            assert_eq!(
                run(mech, &client, &cfg, &creds),
                Step::Failure(SaslFailure::InvalidAuthzid),
                "{bad}"
            );
        }
    }
}

#[test]
fn core_sasl_15_16_unknown_user_gets_stable_fake_salt() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = SaslConfig {
        default_iterations: 4096,
        ..config(&bindings)
    };
    let server_first = |mech: Mechanism, user: &str| {
        let message = format!("n,,n={user},r=Cl1ent+N0nce");
        let (_, step) = SaslExchange::start(mech, Some(message.as_bytes()), &cfg, &creds);
        let data = String::from_utf8(challenge(step)).expect("utf-8");
        let attrs: Vec<String> = data.split(',').map(str::to_owned).collect();
        assert_eq!(attrs.len(), 3, "{data}");
        let nonce = attrs[0]
            .strip_prefix("r=Cl1ent+N0nce")
            .expect("client nonce first")
            .to_owned();
        assert!(nonce.len() >= 24, "server nonce of 18 random bytes");
        let salt = STANDARD
            .decode(attrs[1].strip_prefix("s=").expect("salt"))
            .expect("b64");
        (nonce, salt, attrs[2].clone())
    };
    let (nonce1, salt1, iterations) = server_first(Mechanism::ScramSha1, "nobody");
    assert_eq!(iterations, "i=4096", "CORE-SASL-16: the configured default");
    let (nonce2, salt2, _) = server_first(Mechanism::ScramSha1, "nobody");
    assert_eq!(salt1.len(), 16);
    assert_eq!(salt1, salt2, "the same fake salt on every probe");
    assert_ne!(nonce1, nonce2, "fresh server nonce each time");
    let (_, salt3, _) = server_first(Mechanism::ScramSha256, "nobody");
    assert_ne!(salt1, salt3, "per-hash salts, like real accounts");
    let (_, salt4, _) = server_first(Mechanism::ScramSha1, "somebody");
    assert_ne!(salt1, salt4);
    let (_, real, iterations) = server_first(Mechanism::ScramSha1, "user");
    assert_eq!(real, b"sha1 user", "a real account shows its own salt");
    assert_eq!(
        iterations,
        format!("i={ITER}"),
        "and its own iteration count"
    );

    // The final fails exactly like a wrong password.
    let cfg = config(&bindings);
    for mech in SCRAM {
        let client = Client::new(mech, "nobody", "pencil", "n,,", b"");
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
    }
}

#[test]
fn core_sasl_25_disabled_and_unavailable() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for mech in SCRAM {
        let client = Client::new(mech, "locked", "pencil", "n,,", b"");
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::AccountDisabled)
        );
        // Without the password, a disabled account looks like any other failure.
        let client = Client::new(mech, "locked", "wrong", "n,,", b"");
        assert_eq!(
            run(mech, &client, &cfg, &creds),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        let down = Creds {
            unavailable: true,
            ..Creds::standard()
        };
        let client = Client::new(mech, "user", "pencil", "n,,", b"");
        assert_eq!(
            run(mech, &client, &cfg, &down),
            Step::Failure(SaslFailure::TemporaryAuthFailure)
        );
    }
}

#[test]
fn responses_after_the_end_are_malformed() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let client = Client::new(Mechanism::ScramSha256, "user", "pencil", "n,,", b"");
    let (mut exchange, step) =
        SaslExchange::start(Mechanism::ScramSha256, Some(&client.first()), &cfg, &creds);
    assert!(!exchange.is_done());
    let (message, _) = client.finish(&challenge(step), None, None, "");
    assert!(success("user")(&exchange.step(&message, &cfg, &creds)));
    assert_eq!(
        exchange.step(&message, &cfg, &creds),
        Step::Failure(SaslFailure::MalformedRequest)
    );
    assert_eq!(
        exchange.step(b"", &cfg, &creds),
        Step::Failure(SaslFailure::MalformedRequest)
    );
    assert_eq!(
        exchange.plain_verified(true),
        Step::Failure(SaslFailure::MalformedRequest)
    );
    assert_eq!(format!("{exchange:?}"), "SaslExchange { state: \"Done\" }");
}

#[test]
fn core_sasl_09_abort() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let (mut exchange, _) = SaslExchange::start(Mechanism::ScramSha1, None, &cfg, &creds);
    assert_eq!(exchange.abort(), Step::Failure(SaslFailure::Aborted));
    assert!(exchange.is_done());
    assert_eq!(
        exchange.step(b"n,,n=user,r=x", &cfg, &creds),
        Step::Failure(SaslFailure::MalformedRequest)
    );
}

// ---------------------------------------------------------------- PLAIN

fn plain(message: &[u8], cfg: &SaslConfig, creds: &Creds) -> (SaslExchange, Step) {
    SaslExchange::start(Mechanism::Plain, Some(message), cfg, creds)
}

#[test]
fn core_sasl_04_plain_needs_tls() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = SaslConfig {
        secure: false,
        ..config(&bindings)
    };
    for initial in [None, Some(&b"\0user\0pencil"[..])] {
        let (exchange, step) = SaslExchange::start(Mechanism::Plain, initial, &cfg, &creds);
        assert_eq!(step, Step::Failure(SaslFailure::EncryptionRequired));
        assert!(exchange.is_done());
    }
}

#[test]
fn core_sasl_23_plain_success_and_wrong_password() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for message in [
        &b"\0user\0pencil"[..],
        b"user@example.com\0user\0pencil",
        b"\0USER\0pencil",
    ] {
        let (mut exchange, step) = plain(message, &cfg, &creds);
        let Step::VerifyPlain {
            username,
            password,
            keys,
        } = step
        else {
            panic!("expected VerifyPlain, got {step:?}");
        };
        assert_eq!(username, "user");
        assert_eq!(password, "pencil");
        assert_eq!(keys.stored_key.len(), 32, "SHA-256 keys");
        assert!(verify_plain(&password, &keys));
        assert!(!verify_plain("pencil2", &keys));
        assert_eq!(
            exchange.step(b"\0user\0pencil", &cfg, &creds),
            Step::Failure(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            exchange.plain_verified(true),
            Step::Failure(SaslFailure::MalformedRequest)
        );
        let (mut exchange, _) = plain(message, &cfg, &creds);
        assert_eq!(
            exchange.plain_verified(true),
            Step::Success {
                username: "user".into(),
                additional: None
            }
        );
        let (mut exchange, _) = plain(message, &cfg, &creds);
        assert_eq!(
            exchange.plain_verified(false),
            Step::Failure(SaslFailure::NotAuthorized)
        );
    }
}

#[test]
fn core_sasl_23_plain_malformed() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for message in [
        &b"userpencil"[..],
        b"user\0pencil",
        b"\0\0pencil",
        b"\0user\0",
        b"\0user\0pen\0cil",
        b"\0us\xffer\0pencil",
        b"",
    ] {
        let (exchange, step) = plain(message, &cfg, &creds);
        assert_eq!(
            step,
            Step::Failure(SaslFailure::MalformedRequest),
            "{}",
            String::from_utf8_lossy(message)
        );
        assert!(exchange.is_done());
    }
}

#[test]
fn core_sasl_11_plain_authzid() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    for message in [
        &b"other@example.com\0user\0pencil"[..],
        b"user@example.com/r\0user\0pencil",
        b"user\0user\0pencil",
    ] {
        let (_, step) = plain(message, &cfg, &creds);
        assert_eq!(step, Step::Failure(SaslFailure::InvalidAuthzid));
    }
}

#[test]
fn core_sasl_22_plain_username_prep() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let (_, step) = plain("\0\u{2168}\0secret".as_bytes(), &cfg, &creds);
    assert!(matches!(step, Step::VerifyPlain { ref username, .. } if username == "ix"));
    let (_, step) = plain("\0us er\0secret".as_bytes(), &cfg, &creds);
    assert_eq!(step, Step::Failure(SaslFailure::NotAuthorized));
}

#[test]
fn plain_unknown_user_verifies_against_fake_keys() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let (mut exchange, step) = plain(b"\0nobody\0pencil", &cfg, &creds);
    let Step::VerifyPlain { username, keys, .. } = step else {
        panic!("expected VerifyPlain, got {step:?}");
    };
    assert_eq!(username, "nobody");
    assert_eq!(keys.iterations, ITER, "same PBKDF2 cost as real accounts");
    assert_eq!(keys.salt.len(), 16);
    assert_eq!(keys.stored_key.len(), 32);
    assert!(!verify_plain("pencil", &keys));
    // Even a (practically impossible) positive verification does not log anyone in.
    assert_eq!(
        exchange.plain_verified(true),
        Step::Failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn core_sasl_25_plain_disabled_and_unavailable() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let (mut exchange, _) = plain(b"\0locked\0pencil", &cfg, &creds);
    assert_eq!(
        exchange.plain_verified(true),
        Step::Failure(SaslFailure::AccountDisabled)
    );
    let (mut exchange, _) = plain(b"\0locked\0pencil", &cfg, &creds);
    assert_eq!(
        exchange.plain_verified(false),
        Step::Failure(SaslFailure::NotAuthorized)
    );
    let down = Creds {
        unavailable: true,
        ..Creds::standard()
    };
    let (_, step) = plain(b"\0user\0pencil", &cfg, &down);
    assert_eq!(step, Step::Failure(SaslFailure::TemporaryAuthFailure));
}

#[test]
fn core_sasl_10_plain_without_initial_response() {
    let creds = Creds::standard();
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let (mut exchange, step) = SaslExchange::start(Mechanism::Plain, None, &cfg, &creds);
    assert_eq!(step, Step::Challenge(Vec::new()));
    let step = exchange.step(b"\0user\0pencil", &cfg, &creds);
    assert!(matches!(step, Step::VerifyPlain { .. }));
    assert_eq!(
        exchange.plain_verified(true),
        Step::Success {
            username: "user".into(),
            additional: None
        }
    );
}

#[test]
fn plain_falls_back_to_sha1_keys() {
    let sha1 = derive_keys(HashAlg::Sha1, "pencil", b"salt", ITER);
    let empty = ScramKeys {
        salt: Vec::new(),
        iterations: 0,
        stored_key: Vec::new(),
        server_key: Vec::new(),
    };
    let mut creds = Creds::default();
    creds
        .accounts
        .insert("old".into(), (sha1.clone(), empty, false));
    let bindings = ChannelBindings::default();
    let cfg = config(&bindings);
    let (_, step) = plain(b"\0old\0pencil", &cfg, &creds);
    let Step::VerifyPlain { keys, .. } = step else {
        panic!("expected VerifyPlain, got {step:?}");
    };
    assert_eq!(keys, sha1);
    assert!(verify_plain("pencil", &keys));
}

// ---------------------------------------------------------------- keys

#[test]
fn derive_and_verify_keys() {
    for alg in [HashAlg::Sha1, HashAlg::Sha256] {
        let keys = new_keys(alg, "correct horse", ITER);
        assert_eq!(keys.salt.len(), 16);
        assert_eq!(keys.iterations, ITER);
        assert_eq!(keys.stored_key.len(), alg.output_len());
        assert_eq!(keys.server_key.len(), alg.output_len());
        assert!(verify_plain("correct horse", &keys));
        assert!(!verify_plain("correct horsE", &keys));
        assert_ne!(
            new_keys(alg, "correct horse", ITER).salt,
            keys.salt,
            "random salt"
        );
        // SASLprep: U+00AD maps to nothing, U+2168 folds to "IX".
        assert_eq!(
            derive_keys(alg, "I\u{AD}X", b"s", ITER),
            derive_keys(alg, "IX", b"s", ITER)
        );
        assert_eq!(
            derive_keys(alg, "\u{2168}", b"s", ITER),
            derive_keys(alg, "IX", b"s", ITER)
        );
        // A password SASLprep rejects still derives and verifies consistently.
        let odd = derive_keys(alg, "bell\u{7}", b"s", ITER);
        assert!(verify_plain("bell\u{7}", &odd));
        assert!(!verify_plain("bell", &odd));
    }
    let bad = ScramKeys {
        salt: b"s".to_vec(),
        iterations: 1,
        stored_key: vec![0; 16],
        server_key: vec![0; 16],
    };
    assert!(!verify_plain("anything", &bad));
    assert!(
        !format!("{bad:?}").contains("stored_key"),
        "keys are not logged"
    );
}

// ---------------------------------------------------------------- vocabulary

#[test]
fn core_sasl_06_decode_payload() {
    assert_eq!(decode_payload(""), Ok(None));
    assert_eq!(decode_payload("="), Ok(Some(Vec::new())));
    assert_eq!(decode_payload("dXNlcg=="), Ok(Some(b"user".to_vec())));
    assert_eq!(decode_payload("biws"), Ok(Some(b"n,,".to_vec())));
    for bad in [
        "dXNl cg==",
        "dXNlcg==\n",
        "\ndXNlcg==",
        "dXNl\tcg==",
        "dXNlcg",
        "dXNlcg=",
        "dXNlcg===",
        "!!!!",
        "==",
        "dXNlcg==dXNl",
        "dXNlch==",
    ] {
        assert_eq!(
            decode_payload(bad),
            Err(SaslFailure::IncorrectEncoding),
            "{bad:?}"
        );
    }
}

#[test]
fn core_sasl_10_encode_payload() {
    assert_eq!(encode_payload(b""), "=");
    assert_eq!(encode_payload(b"n,,"), "biws");
    for data in [&b""[..], b"x", b"xy", b"xyz", b"\0\xff"] {
        let decoded = decode_payload(&encode_payload(data))
            .expect("round trip")
            .expect("data");
        assert_eq!(decoded, data);
    }
}

#[test]
fn core_sasl_02_03_mechanism_names() {
    for mech in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(mech.name()), Some(mech));
    }
    assert_eq!(Mechanism::ScramSha1.name(), "SCRAM-SHA-1");
    assert_eq!(Mechanism::ScramSha256Plus.name(), "SCRAM-SHA-256-PLUS");
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    assert_eq!(Mechanism::from_name(""), None);
    assert!(Mechanism::ScramSha1Plus.is_plus());
    assert!(!Mechanism::Plain.is_plus());
    assert_eq!(Mechanism::Plain.hash_alg(), None);
}

#[test]
fn core_sasl_05_failure_conditions_in_spec_order() {
    let all = [
        (SaslFailure::Aborted, "aborted"),
        (SaslFailure::AccountDisabled, "account-disabled"),
        (SaslFailure::CredentialsExpired, "credentials-expired"),
        (SaslFailure::EncryptionRequired, "encryption-required"),
        (SaslFailure::IncorrectEncoding, "incorrect-encoding"),
        (SaslFailure::InvalidAuthzid, "invalid-authzid"),
        (SaslFailure::InvalidMechanism, "invalid-mechanism"),
        (SaslFailure::MalformedRequest, "malformed-request"),
        (SaslFailure::MechanismTooWeak, "mechanism-too-weak"),
        (SaslFailure::NotAuthorized, "not-authorized"),
        (SaslFailure::TemporaryAuthFailure, "temporary-auth-failure"),
    ];
    for (failure, condition) in all {
        assert_eq!(failure.condition(), condition);
    }
}

#[test]
fn core_sasl_24_channel_binding_names() {
    let both = both_bindings();
    assert!(both.any());
    assert_eq!(
        both.names().collect::<Vec<_>>(),
        ["tls-exporter", "tls-server-end-point"]
    );
    assert_eq!(both.data("tls-exporter"), Some(EXPORTER));
    assert_eq!(both.data("tls-unique"), None);
    let none = ChannelBindings::default();
    assert!(!none.any());
    assert_eq!(none.names().count(), 0);
    let empty = ChannelBindings {
        tls_exporter: Some(Vec::new()),
        tls_server_end_point: None,
    };
    assert!(!empty.any(), "empty binding data is no binding");
}
