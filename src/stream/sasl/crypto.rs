//! SCRAM key derivation and the hash/HMAC/PBKDF2 primitives behind it (RFC 5802 §3).

use std::borrow::Cow;

use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{HashAlg, ScramKeys};

/// Derives the stored SCRAM keys for `password`: SaltedPassword = PBKDF2(SASLprep(password),
/// salt, iterations), ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
/// ServerKey = HMAC(SaltedPassword, "Server Key").
///
/// A password SASLprep rejects is used as its raw UTF-8 bytes, as common client libraries do,
/// so such a password still works consistently in SCRAM and PLAIN.
pub fn derive_keys(alg: HashAlg, password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
    let password = prepare_password(password);
    let salted = salted_password(alg, password.as_bytes(), salt, iterations);
    let client_key = hmac(alg, &salted, &[b"Client Key"]);
    ScramKeys {
        salt: salt.to_vec(),
        iterations,
        stored_key: hash(alg, &client_key),
        server_key: hmac(alg, &salted, &[b"Server Key"]),
    }
}

/// [`derive_keys`] with a fresh random 16-byte salt.
///
/// Should the OS random source fail, the salt is derived from the clock, the process id and a
/// counter instead: a salt must be unique, not secret.
pub fn new_keys(alg: HashAlg, password: &str, iterations: u32) -> ScramKeys {
    let mut salt = [0u8; 16];
    if getrandom::fill(&mut salt).is_err() {
        salt = fallback_salt();
    }
    derive_keys(alg, password, &salt, iterations)
}

/// Checks a PLAIN password against stored SCRAM keys: derives StoredKey with the stored salt
/// and iteration count and compares in constant time. Slow by design (PBKDF2): run it off the
/// shard thread.
///
/// The hash is chosen by the stored key's length (32 bytes: SHA-256, 20 bytes: SHA-1), so
/// either key set verifies; any other length never does.
pub fn verify_plain(password: &str, keys: &ScramKeys) -> bool {
    let alg = match keys.stored_key.len() {
        32 => HashAlg::Sha256,
        20 => HashAlg::Sha1,
        _ => return false,
    };
    let derived = derive_keys(alg, password, &keys.salt, keys.iterations);
    ct_eq(&derived.stored_key, &keys.stored_key)
}

/// SASLprep (RFC 4013) as a stored string, falling back to the raw password.
fn prepare_password(password: &str) -> Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password))
}

/// Hi(password, salt, i) of RFC 5802 §2.2, i.e. PBKDF2 with HMAC-H and dkLen = output size.
pub(super) fn salted_password(
    alg: HashAlg,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; alg.output_len()];
    match alg {
        HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
        HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
    }
    out
}

/// HMAC(key, concatenation of `parts`).
pub(super) fn hmac(alg: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => hmac_with::<Sha1>(key, parts),
        HashAlg::Sha256 => hmac_with::<Sha256>(key, parts),
    }
}

/// H(data).
pub(super) fn hash(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => Sha1::digest(data).to_vec(),
        HashAlg::Sha256 => Sha256::digest(data).to_vec(),
    }
}

fn hmac_with<D: EagerHash>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length; an empty result on the impossible error can only make a
    // comparison fail.
    let Ok(mut mac) = <Hmac<D> as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Equality whose running time depends only on the lengths.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Fills `buf` from the OS random source.
pub(super) fn random(buf: &mut [u8]) -> bool {
    getrandom::fill(buf).is_ok()
}

fn fallback_salt() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let digest = h.finalize();
    let mut salt = [0u8; 16];
    for (s, d) in salt.iter_mut().zip(digest.iter()) {
        *s = *d;
    }
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mac = hmac(
            HashAlg::Sha256,
            b"Jefe",
            &[b"what do ya want ", b"for nothing?"],
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn ct_eq_cases() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn fallback_salts_differ() {
        assert_ne!(fallback_salt(), fallback_salt());
    }
}
