//! SCRAM server (RFC 5802, RFC 7677), including the `-PLUS` channel-binding variants.
//!
//! Condition choices: syntax errors (missing or misplaced attributes, bad GS2 flag, bad `=XX`
//! escape, undecodable base64 inside the message, `m=`, a cb-name on a non-PLUS mechanism, no
//! cb-name on a PLUS mechanism) are `malformed-request`; everything about the credentials or
//! the binding itself (downgrade `y`, unsupported cb type, `c=` or `r=` mismatch, wrong proof,
//! unknown user) is `not-authorized`. The downgrade `y` and an unsupported cb type also carry
//! their RFC 5802 `e=` value ([`ScramError`]).
//!
//! An unsupported cb type (one this connection has no data for: unknown, like `tls-unique`,
//! or not available on this TLS version) does not end the exchange at client-first: it goes on
//! so that the client can prove its password, and only then fails with
//! `e=unsupported-channel-binding-type` and a [`BindingFallback`]. Before the proof it fails
//! like any wrong password, with no `e=`.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::crypto::{ct_eq, hash, hmac, random};
use super::{
    check_authzid, fail, prep_username, Account, BindingFallback, CredentialSource, HashAlg,
    SaslConfig, SaslFailure, ScramError, ScramKeys, State, Step,
};

/// Random bytes in the server nonce (base64-encoded: 24 printable characters).
const SERVER_NONCE_BYTES: usize = 18;

/// State after server-first: everything needed to check client-final.
pub(super) struct ExpectClientFinal {
    alg: HashAlg,
    /// The GS2 header followed by the channel-binding data: what `c=` must decode to. Just
    /// the GS2 header when the binding type is unsupported.
    cbind_input: Vec<u8>,
    /// The client binds to a type this connection cannot provide: `c=` can only be checked
    /// up to the GS2 header, and a proven password ends in `e=unsupported-channel-binding-type`.
    binding_unsupported: bool,
    /// `client-first-message-bare "," server-first-message ","`: the AuthMessage prefix.
    auth_prefix: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    username: String,
    keys: ScramKeys,
    exists: bool,
    disabled: bool,
}

/// The GS2 channel-binding flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CbFlag<'a> {
    /// `n`: the client does not support channel binding.
    None,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=<cb-name>`: the client binds to this type.
    Bind(&'a str),
}

/// How client-first or client-final failed.
#[derive(Debug)]
enum Failed {
    /// An RFC 6120 condition and nothing more.
    Condition(SaslFailure),
    /// `not-authorized` with an RFC 5802 `e=` value, and for an unsupported channel-binding
    /// type the account that proved its password.
    Scram(ScramError, Option<BindingFallback>),
}

impl From<SaslFailure> for Failed {
    fn from(failure: SaslFailure) -> Failed {
        Failed::Condition(failure)
    }
}

impl Failed {
    /// The exchange's end.
    fn end(self) -> (State, Step) {
        match self {
            Failed::Condition(failure) => fail(failure),
            Failed::Scram(error, fallback) => (
                State::Refused(error, fallback),
                Step::Failure(SaslFailure::NotAuthorized),
            ),
        }
    }
}

/// A syntactically valid client-first message.
#[derive(Debug)]
struct ClientFirst<'a> {
    /// `gs2-cbind-flag "," [authzid] ","`.
    gs2_header: &'a str,
    cb: CbFlag<'a>,
    /// The decoded authzid.
    authzid: Option<Cow<'a, str>>,
    /// The decoded (not yet prepared) username.
    username: Cow<'a, str>,
    nonce: &'a str,
    /// `client-first-message-bare`.
    bare: &'a str,
}

/// Handles client-first: answers server-first, or fails.
pub(super) fn handle_client_first(
    alg: HashAlg,
    plus: bool,
    message: &[u8],
    cfg: &SaslConfig,
    creds: &dyn CredentialSource,
    fallback: Option<&BindingFallback>,
    server_nonce: Option<&str>,
) -> (State, Step) {
    match client_first(alg, plus, message, cfg, creds, fallback, server_nonce) {
        Ok((expect, server_first)) => (
            State::ExpectClientFinal(Box::new(expect)),
            Step::Challenge(server_first.into_bytes()),
        ),
        Err(failed) => failed.end(),
    }
}

fn client_first(
    alg: HashAlg,
    plus: bool,
    message: &[u8],
    cfg: &SaslConfig,
    creds: &dyn CredentialSource,
    fallback: Option<&BindingFallback>,
    server_nonce: Option<&str>,
) -> Result<(ExpectClientFinal, String), Failed> {
    let message = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let first = parse_client_first(message)?;

    // RFC 5802 §6 (CORE-SASL-19, -20). `None` data: a type this connection cannot provide.
    let cb_data: Option<&[u8]> = match (first.cb, plus) {
        (CbFlag::None | CbFlag::ClientOnly, false) => Some(&[]),
        (CbFlag::Bind(_), false) | (CbFlag::None | CbFlag::ClientOnly, true) => {
            return Err(SaslFailure::MalformedRequest.into())
        }
        (CbFlag::Bind(name), true) => cfg.bindings.data(name),
    };

    let username = prep_username(&first.username)?;
    // A `y` while -PLUS is advertised is a downgrade, unless this account proved its password
    // in a -PLUS exchange on this stream that failed only for its channel-binding type.
    let fallback_account = fallback.is_some_and(|f| f.username == username);
    if first.cb == CbFlag::ClientOnly && cfg.plus_offered && !fallback_account {
        return Err(Failed::Scram(
            ScramError::ServerDoesSupportChannelBinding,
            None,
        ));
    }
    check_authzid(first.authzid.as_deref(), &username, cfg)?;
    let account = Account::lookup(alg, &username, cfg, creds)?;

    let server_nonce = match server_nonce {
        Some(nonce) => nonce.to_owned(),
        None => new_server_nonce()?,
    };
    let nonce = format!("{}{}", first.nonce, server_nonce);
    let server_first = format!(
        "r={nonce},s={},i={}",
        STANDARD.encode(&account.keys.salt),
        account.keys.iterations
    );
    let cb_data_missing = cb_data.is_none();
    let cb_data = cb_data.unwrap_or_default();
    let mut cbind_input = Vec::with_capacity(first.gs2_header.len() + cb_data.len());
    cbind_input.extend_from_slice(first.gs2_header.as_bytes());
    cbind_input.extend_from_slice(cb_data);
    let expect = ExpectClientFinal {
        alg,
        cbind_input,
        binding_unsupported: cb_data_missing,
        auth_prefix: format!("{},{server_first},", first.bare),
        nonce,
        username,
        keys: account.keys,
        exists: account.exists,
        disabled: account.disabled,
    };
    Ok((expect, server_first))
}

/// `client-first-message = gs2-header client-first-message-bare` (RFC 5802 §7).
fn parse_client_first(message: &str) -> Result<ClientFirst<'_>, SaslFailure> {
    const MALFORMED: SaslFailure = SaslFailure::MalformedRequest;
    let (flag, rest) = message.split_once(',').ok_or(MALFORMED)?;
    let (authzid, bare) = rest.split_once(',').ok_or(MALFORMED)?;
    let gs2_header = message
        .get(..flag.len() + authzid.len() + 2)
        .ok_or(MALFORMED)?;

    let cb = match flag {
        "n" => CbFlag::None,
        "y" => CbFlag::ClientOnly,
        _ => match flag.strip_prefix("p=") {
            Some(name) if is_cb_name(name) => CbFlag::Bind(name),
            _ => return Err(MALFORMED),
        },
    };
    let authzid = match authzid {
        "" => None,
        _ => Some(decode_saslname(
            authzid.strip_prefix("a=").ok_or(MALFORMED)?,
        )?),
    };

    let mut attrs = bare.split(',');
    // Mandatory extension `m=` (CORE-SASL-21): none is supported, so it fails.
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or(MALFORMED)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(MALFORMED)?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(MALFORMED);
    }
    for ext in attrs {
        check_extension(ext)?;
    }
    Ok(ClientFirst {
        gs2_header,
        cb,
        authzid,
        username: decode_saslname(user)?,
        nonce,
        bare,
    })
}

impl ExpectClientFinal {
    /// Handles client-final: `<success>` with `v=`, or a failure.
    pub(super) fn handle(self, message: &[u8]) -> (State, Step) {
        match self.client_final(message) {
            Ok(step) => (State::Done, step),
            Err(failed) => failed.end(),
        }
    }

    fn client_final(self, message: &[u8]) -> Result<Step, Failed> {
        const MALFORMED: SaslFailure = SaslFailure::MalformedRequest;
        let message = std::str::from_utf8(message).map_err(|_| MALFORMED)?;
        // client-final-message = client-final-message-without-proof "," proof
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or(MALFORMED)?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(MALFORMED)?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(MALFORMED)?;
        for ext in attrs {
            check_extension(ext)?;
        }
        let cbind = STANDARD.decode(cbind).map_err(|_| MALFORMED)?;
        // A ',' in the proof means an attribute after p=, which base64 rejects too.
        let proof = STANDARD.decode(proof).map_err(|_| MALFORMED)?;

        // CORE-SASL-17, -20: the GS2 header and binding data must be exactly those of
        // client-first and this connection; the nonce exactly the combined one. Data for an
        // unsupported type describes a channel this server cannot see: only the header counts
        // (the proof covers the `c=` as sent all the same).
        let cbind_ok = if self.binding_unsupported {
            cbind.starts_with(&self.cbind_input)
        } else {
            ct_eq(&cbind, &self.cbind_input)
        };
        if !cbind_ok || nonce != self.nonce {
            return Err(SaslFailure::NotAuthorized.into());
        }

        // CORE-SASL-18: ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must
        // be StoredKey.
        let auth_message = [self.auth_prefix.as_bytes(), without_proof.as_bytes()];
        let signature = hmac(self.alg, &self.keys.stored_key, &auth_message);
        if proof.len() != signature.len() {
            return Err(SaslFailure::NotAuthorized.into());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let proven = ct_eq(&hash(self.alg, &client_key), &self.keys.stored_key);
        if !proven || !self.exists {
            return Err(SaslFailure::NotAuthorized.into());
        }
        if self.disabled {
            return Err(SaslFailure::AccountDisabled.into());
        }
        // RFC 5802 §6: "p" with a type the server does not support MUST fail, proof or not.
        if self.binding_unsupported {
            let fallback = BindingFallback {
                username: self.username,
            };
            return Err(Failed::Scram(
                ScramError::UnsupportedChannelBindingType,
                Some(fallback),
            ));
        }

        // CORE-SASL-13: v=ServerSignature as <success> additional data.
        let server_signature = hmac(self.alg, &self.keys.server_key, &auth_message);
        let verifier = format!("v={}", STANDARD.encode(server_signature));
        Ok(Step::Success {
            username: self.username,
            additional: Some(verifier.into_bytes()),
        })
    }
}

/// `saslname` (RFC 5802 §7): `=2C` → `,`, `=3D` → `=`, any other `=` fails (CORE-SASL-22).
fn decode_saslname(name: &str) -> Result<Cow<'_, str>, SaslFailure> {
    if name.is_empty() || name.contains('\0') {
        return Err(SaslFailure::MalformedRequest);
    }
    if !name.contains('=') {
        return Ok(Cow::Borrowed(name));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some((before, after)) = rest.split_once('=') {
        out.push_str(before);
        rest = if let Some(after) = after.strip_prefix("2C") {
            out.push(',');
            after
        } else if let Some(after) = after.strip_prefix("3D") {
            out.push('=');
            after
        } else {
            return Err(SaslFailure::MalformedRequest);
        };
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// `cb-name = 1*(ALPHA / DIGIT / "." / "-")`.
fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// An optional extension `ALPHA "=" value`; `m=` (mandatory extension) fails anywhere.
fn check_extension(attr: &str) -> Result<(), SaslFailure> {
    match attr.as_bytes() {
        [b'm', b'=', ..] => Err(SaslFailure::MalformedRequest),
        [a, b'=', ..] if a.is_ascii_alphabetic() => Ok(()),
        _ => Err(SaslFailure::MalformedRequest),
    }
}

/// 18 random bytes, base64: printable and free of ','.
fn new_server_nonce() -> Result<String, SaslFailure> {
    let mut bytes = [0u8; SERVER_NONCE_BYTES];
    if !random(&mut bytes) {
        return Err(SaslFailure::TemporaryAuthFailure);
    }
    Ok(STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_sasl_22_saslname_escapes() {
        assert_eq!(decode_saslname("plain").as_deref(), Ok("plain"));
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Ok("a,b=c"));
        assert_eq!(decode_saslname("=3D=2C").as_deref(), Ok("=,"));
        for bad in ["", "=", "a=", "a=2", "a=2c", "a=3d", "a=41", "=20", "a\0b"] {
            assert_eq!(
                decode_saslname(bad),
                Err(SaslFailure::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn core_sasl_12_parse_client_first() {
        let first = parse_client_first("p=tls-exporter,a=u@d,n=user,r=abc,x=ext").expect("valid");
        assert_eq!(first.gs2_header, "p=tls-exporter,a=u@d,");
        assert_eq!(first.cb, CbFlag::Bind("tls-exporter"));
        assert_eq!(first.authzid.as_deref(), Some("u@d"));
        assert_eq!(first.username, "user");
        assert_eq!(first.nonce, "abc");
        assert_eq!(first.bare, "n=user,r=abc,x=ext");
        for bad in [
            "",
            "n",
            "n,",
            "n,,",
            "x,,n=u,r=a",
            "p=,,n=u,r=a",
            "p=tls_unique,,n=u,r=a",
            "n,u,n=u,r=a",
            "n,a=,n=u,r=a",
            "n,,r=a",
            "n,,n=u",
            "n,,n=u,r=",
            "n,,r=a,n=u",
            "n,,n=u,r=a b",
            "n,,n=u,r=a,=x",
            "n,,n=u,r=a,1=x",
            "n,,n=u,r=a,",
            "n,,n=,r=a",
        ] {
            assert_eq!(
                parse_client_first(bad).map(|_| ()),
                Err(SaslFailure::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn core_sasl_21_reserved_m() {
        for bad in ["n,,m=x,n=u,r=a", "n,,n=u,r=a,m=x"] {
            assert_eq!(
                parse_client_first(bad).map(|_| ()),
                Err(SaslFailure::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn core_sasl_15_server_nonce_shape() {
        let a = new_server_nonce().expect("random");
        let b = new_server_nonce().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c) && c != b','));
    }
}
