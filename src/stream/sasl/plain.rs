//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, checked against the stored SCRAM keys.

use super::{
    check_authzid, fail, fake_keys, prep_username, CredentialSource, HashAlg, Lookup, SaslConfig,
    SaslFailure, State, Step,
};

/// State after [`Step::VerifyPlain`]: waits for the verification result.
pub(super) struct ExpectVerified {
    username: String,
    exists: bool,
    disabled: bool,
}

impl ExpectVerified {
    /// Succeeds only for an existing, enabled account whose password verified.
    pub(super) fn handle(self, ok: bool) -> Step {
        if !ok || !self.exists {
            Step::Failure(SaslFailure::NotAuthorized)
        } else if self.disabled {
            Step::Failure(SaslFailure::AccountDisabled)
        } else {
            Step::Success {
                username: self.username,
                additional: None,
            }
        }
    }
}

/// Handles the PLAIN message: asks for verification, or fails.
pub(super) fn handle(
    message: &[u8],
    cfg: &SaslConfig,
    creds: &dyn CredentialSource,
) -> (State, Step) {
    match plain(message, cfg, creds) {
        Ok((expect, step)) => (State::ExpectPlainVerified(expect), step),
        Err(failure) => fail(failure),
    }
}

fn plain(
    message: &[u8],
    cfg: &SaslConfig,
    creds: &dyn CredentialSource,
) -> Result<(ExpectVerified, Step), SaslFailure> {
    const MALFORMED: SaslFailure = SaslFailure::MalformedRequest;
    let message = std::str::from_utf8(message).map_err(|_| MALFORMED)?;
    // CORE-SASL-23: exactly two NULs; authcid and passwd are 1*SAFE.
    let mut parts = message.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(MALFORMED);
    }

    let username = prep_username(authcid)?;
    check_authzid(Some(authzid).filter(|a| !a.is_empty()), &username, cfg)?;
    let (keys, exists, disabled) = match creds.lookup(&username) {
        // SHA-256 keys; SHA-1 ones only for an account that has no others.
        Lookup::Found {
            sha1,
            sha256,
            disabled,
        } if sha256.stored_key.is_empty() => (sha1, true, disabled),
        Lookup::Found {
            sha256, disabled, ..
        } => (sha256, true, disabled),
        Lookup::NotFound => (fake_keys(HashAlg::Sha256, &username, cfg), false, false),
        Lookup::Unavailable => return Err(SaslFailure::TemporaryAuthFailure),
    };
    let step = Step::VerifyPlain {
        username: username.clone(),
        password: password.to_owned(),
        keys,
    };
    Ok((
        ExpectVerified {
            username,
            exists,
            disabled,
        },
        step,
    ))
}
