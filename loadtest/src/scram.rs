//! SCRAM client (RFC 5802, RFC 7677) with a process-wide SaltedPassword cache.
//!
//! The cache is keyed by (password, salt, iterations) so that logging the same account in again
//! does not pay PBKDF2 on the client: the generator's CPU must not dominate login measurements.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// SCRAM-SHA-1 (RFC 5802).
    Sha1,
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
}

/// Why a SCRAM exchange failed; all are the server's fault (or a wrong password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// server-first-message is not `r=…,s=…,i=…`.
    MalformedServerFirst,
    /// The server nonce does not start with ours.
    NonceMismatch,
    /// server-final-message carries `e=…` or no `v=`.
    ServerError(String),
    /// The server signature does not verify.
    BadServerSignature,
}

/// Client side of one exchange, between client-first and server-final.
#[derive(Debug)]
pub struct ScramClient {
    alg: Alg,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// ServerSignature expected in server-final, once client-final is built.
    expected_server_sig: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange for `user` with the given client nonce.
    pub fn new(alg: Alg, user: &str, password: &str, nonce: &str) -> Self {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            alg,
            password: password.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_owned(),
            expected_server_sig: Vec::new(),
        }
    }

    /// client-first-message (GS2 header `n,,`: no channel binding, no authzid).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Builds client-final-message from server-first-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let sf = std::str::from_utf8(server_first).map_err(|_| ScramError::MalformedServerFirst)?;
        let (mut r, mut s, mut i) = (None, None, None);
        for part in sf.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => r = Some(v),
                Some(("s=", v)) => s = Some(v),
                Some(("i=", v)) => i = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(r), Some(s), Some(i)) = (r, s, i) else {
            return Err(ScramError::MalformedServerFirst);
        };
        if !r.starts_with(&self.nonce) || r.len() <= self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = STANDARD
            .decode(s)
            .map_err(|_| ScramError::MalformedServerFirst)?;
        if i == 0 {
            return Err(ScramError::MalformedServerFirst);
        }
        let salted = cached_salted_password(self.alg, &self.password, &salt, i);
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{},{},{}", self.client_first_bare, sf, without_proof);
        let client_key = hmac(self.alg, &salted, b"Client Key");
        let stored_key = hash(self.alg, &client_key);
        let client_sig = hmac(self.alg, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_sig)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(self.alg, &salted, b"Server Key");
        self.expected_server_sig = hmac(self.alg, &server_key, auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// Verifies server-final-message (`v=…`).
    pub fn verify_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let sf = std::str::from_utf8(server_final).unwrap_or("");
        if let Some(e) = sf.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_owned()));
        }
        let Some(v) = sf.split(',').find_map(|p| p.strip_prefix("v=")) else {
            return Err(ScramError::ServerError("no verifier".into()));
        };
        match STANDARD.decode(v) {
            Ok(sig) if !self.expected_server_sig.is_empty() && sig == self.expected_server_sig => {
                Ok(())
            }
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

/// Cache key: algorithm, password, salt, iterations.
type CacheKey = (Alg, String, Vec<u8>, u32);

/// SaltedPassword from the process-wide cache, computing it on a miss.
fn cached_salted_password(alg: Alg, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (alg, password.to_owned(), salt.to_vec(), iterations);
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return v;
    }
    let mut out = vec![0u8; alg.len()];
    match alg {
        Alg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out),
        Alg::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out)
        }
    }
    if let Ok(mut c) = cache.lock() {
        c.insert(key, out.clone());
    }
    out
}

impl Alg {
    fn len(self) -> usize {
        match self {
            Alg::Sha1 => 20,
            Alg::Sha256 => 32,
        }
    }
}

fn hmac(alg: Alg, key: &[u8], data: &[u8]) -> Vec<u8> {
    match alg {
        Alg::Sha1 => hmac_with::<Sha1>(key, data),
        Alg::Sha256 => hmac_with::<Sha256>(key, data),
    }
}

fn hmac_with<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<D> as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hash(alg: Alg, data: &[u8]) -> Vec<u8> {
    match alg {
        Alg::Sha1 => Sha1::digest(data).to_vec(),
        Alg::Sha256 => Sha256::digest(data).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_scram_sha1_example() {
        let mut c = ScramClient::new(Alg::Sha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(c.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = c
            .client_final(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        assert_eq!(c.verify_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), Ok(()));
        assert_eq!(
            c.verify_final(b"v=AAAApqV8S7suAoZWja4dJRkFsKQ="),
            Err(ScramError::BadServerSignature)
        );
    }

    #[test]
    fn rfc7677_scram_sha256_example() {
        let mut c = ScramClient::new(Alg::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .client_final(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            c.verify_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
    }

    #[test]
    fn nonce_must_extend_ours() {
        let mut c = ScramClient::new(Alg::Sha1, "user", "pencil", "abc");
        assert_eq!(
            c.client_final(b"r=xyz123,s=QSXCR+Q6sek8bf92,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            c.client_final(b"s=QSXCR+Q6sek8bf92"),
            Err(ScramError::MalformedServerFirst)
        );
        assert!(matches!(
            c.verify_final(b"e=invalid-proof"),
            Err(ScramError::ServerError(_))
        ));
    }

    #[test]
    fn username_is_escaped() {
        let c = ScramClient::new(Alg::Sha1, "a,b=c", "p", "n");
        assert_eq!(c.client_first(), "n,,n=a=2Cb=3Dc,r=n");
    }
}
