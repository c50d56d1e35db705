//! The server's CPU cost of a SCRAM login (RFC 5802, RFC 7677) and of making SCRAM keys.
//!
//! - `client_first`: [`SaslExchange::start`] on a client-first message: parse, SASLprep and
//!   Nodeprep the username, look the account up (an in-memory [`CredentialSource`] that clones
//!   the stored keys, as the LMDB-backed one does), draw the server nonce, write server-first.
//! - `client_final`: [`SaslExchange::step`] on the client-final message: check channel binding
//!   and nonce, verify the proof against the stored key (HMAC + hash) and compute the server
//!   signature (HMAC). The client's proof is computed outside the timed region.
//!
//! Together they are the per-login server cost: the server stores StoredKey and ServerKey,
//! so no PBKDF2 runs at login. `derive_keys` is that PBKDF2 at 4096 iterations, paid when an
//! account is created or its password set (and per PLAIN login, through `verify_plain`).
//!
//! Run with `cargo bench --bench scram`.

use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use divan::{black_box, Bencher};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use xmppd::stream::sasl::{
    derive_keys, ChannelBindings, CredentialSource, HashAlg, Lookup, Mechanism, SaslConfig,
    SaslExchange, ScramKeys, Step,
};

fn main() {
    divan::main();
}

/// The iteration count new accounts get (and the RFC 5802 example uses).
const ITERATIONS: u32 = 4096;
const USER: &str = "juliet";
const PASSWORD: &str = "r0m30-wherefore art thou";
const MECHANISMS: [&str; 2] = ["SCRAM-SHA-1", "SCRAM-SHA-256"];

/// One account with keys for both hashes.
struct Creds {
    sha1: ScramKeys,
    sha256: ScramKeys,
}

impl CredentialSource for Creds {
    fn lookup(&self, username: &str) -> Lookup {
        if username != USER {
            return Lookup::NotFound;
        }
        Lookup::Found {
            sha1: self.sha1.clone(),
            sha256: self.sha256.clone(),
            disabled: false,
        }
    }
}

static CREDS: LazyLock<Creds> = LazyLock::new(|| Creds {
    sha1: derive_keys(HashAlg::Sha1, PASSWORD, b"salt for sha-1 keys", ITERATIONS),
    sha256: derive_keys(
        HashAlg::Sha256,
        PASSWORD,
        b"salt for sha-256 keys",
        ITERATIONS,
    ),
});

static BINDINGS: LazyLock<ChannelBindings> = LazyLock::new(ChannelBindings::default);

fn config() -> SaslConfig<'static> {
    SaslConfig {
        domain: "example.com",
        secure: true,
        plus_offered: false,
        bindings: &BINDINGS,
        fake_salt_secret: b"fake salt secret",
        default_iterations: ITERATIONS,
    }
}

fn mechanism(name: &str) -> Mechanism {
    Mechanism::from_name(name).expect("a SCRAM mechanism")
}

const CLIENT_FIRST: &[u8] = b"n,,n=juliet,r=fyko+d2lbbFgONRv9qkxdawL";
const CLIENT_FIRST_BARE: &str = "n=juliet,r=fyko+d2lbbFgONRv9qkxdawL";

/// Client-first → server-first.
#[divan::bench(args = MECHANISMS)]
fn client_first(bencher: Bencher, mech: &str) {
    let mech = mechanism(mech);
    let (cfg, creds) = (config(), &*CREDS);
    bencher.bench(|| SaslExchange::start(mech, Some(black_box(CLIENT_FIRST)), &cfg, creds));
}

/// Client-final → success with `v=`, on an exchange that has sent server-first.
#[divan::bench(args = MECHANISMS)]
fn client_final(bencher: Bencher, mech: &str) {
    let mech = mechanism(mech);
    let (cfg, creds) = (config(), &*CREDS);
    let client = Client::new(mech, creds);
    let start = || {
        let (exchange, step) = SaslExchange::start(mech, Some(CLIENT_FIRST), &cfg, creds);
        let Step::Challenge(server_first) = step else {
            panic!("expected server-first, got {step:?}");
        };
        (exchange, client.finish(&server_first))
    };
    let (mut exchange, message) = start();
    let step = exchange.step(&message, &cfg, creds);
    assert!(
        matches!(&step, Step::Success { username, .. } if username == USER),
        "the benchmark login fails: {step:?}"
    );
    bencher
        .with_inputs(start)
        .bench_local_values(|(mut exchange, message)| exchange.step(&message, &cfg, creds));
}

/// PBKDF2 and the key HMACs at 4096 iterations: the cost of setting a password.
#[divan::bench(args = MECHANISMS)]
fn derive_keys_4096(bencher: Bencher, mech: &str) {
    let alg = mechanism(mech).hash_alg().expect("SCRAM");
    bencher.bench(|| derive_keys(alg, black_box(PASSWORD), b"0123456789abcdef", ITERATIONS));
}

/// The client side of RFC 5802 §3, written against the hash crates directly. ClientKey is
/// derived once; a proof costs one HMAC.
struct Client {
    alg: HashAlg,
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
}

impl Client {
    fn new(mech: Mechanism, creds: &Creds) -> Client {
        let alg = mech.hash_alg().expect("SCRAM");
        let keys = match alg {
            HashAlg::Sha1 => &creds.sha1,
            HashAlg::Sha256 => &creds.sha256,
        };
        let mut salted = vec![0u8; alg.output_len()];
        match alg {
            HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(
                PASSWORD.as_bytes(),
                &keys.salt,
                ITERATIONS,
                &mut salted,
            ),
            HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(
                PASSWORD.as_bytes(),
                &keys.salt,
                ITERATIONS,
                &mut salted,
            ),
        }
        let client_key = hmac(alg, &salted, b"Client Key");
        let stored_key = match alg {
            HashAlg::Sha1 => Sha1::digest(&client_key).to_vec(),
            HashAlg::Sha256 => Sha256::digest(&client_key).to_vec(),
        };
        assert_eq!(stored_key, keys.stored_key, "client and server disagree");
        Client {
            alg,
            client_key,
            stored_key,
        }
    }

    /// The client-final message answering `server_first`.
    fn finish(&self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).expect("UTF-8");
        let nonce = server_first
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .expect("r=");
        let without_proof = format!("c={},r={nonce}", STANDARD.encode("n,,"));
        let auth_message = format!("{CLIENT_FIRST_BARE},{server_first},{without_proof}");
        let signature = hmac(self.alg, &self.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = self
            .client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes()
    }
}

fn hmac(alg: HashAlg, key: &[u8], data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => {
            let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        HashAlg::Sha256 => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}
