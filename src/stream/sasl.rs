//! SASL mechanisms (RFC 6120 §6): SCRAM-SHA-1/256 (+PLUS), PLAIN.
//!
//! Server side, sans-I/O: the I/O layer decodes the base64 of `<auth>`/`<response>` with
//! [`decode_payload`], feeds the raw bytes to a [`SaslExchange`] and writes out the [`Step`]
//! it gets back. Account data comes through the narrow [`CredentialSource`] trait.
//!
//! Decisions that hold across mechanisms:
//! - A username that SASLprep or Nodeprep rejects fails with `not-authorized` (it names no
//!   account); a message that breaks the mechanism syntax (including a bad `=XX` escape in a
//!   SCRAM name) fails with `malformed-request`.
//! - Account existence never shows: an unknown SCRAM user gets a normal server-first with a
//!   fake salt derived from [`SaslConfig::fake_salt_secret`] and fails at the final message
//!   with `not-authorized`; an unknown PLAIN user still gets [`Step::VerifyPlain`] against fake
//!   keys (same PBKDF2 cost) and then `not-authorized`, whatever the verification says.
//! - `account-disabled` is only reported after the password was proven, so it does not reveal
//!   a disabled account to someone without the password.
//! - A failure that RFC 5802 §7 gives a `server-error-value` (see [`ScramError`]) is
//!   `not-authorized` with `e=<value>` as the `<text>` of the `<failure>`: RFC 6120 §6.4.5
//!   allows additional data only on `<success>`, and `<text>` is the one place a `<failure>`
//!   can carry the SCRAM server-final-message. Prosody answers an unsupported channel-binding
//!   type alike (a `<text>` on the failure), with `malformed-request`; the request is
//!   well-formed, so here it is `not-authorized`, the generic condition of §6.5.10.
//! - Channel-binding fallback (issue 8): a client that knows only channel-binding types this
//!   server does not support (slixmpp 1.8 binds to `tls-unique`, which TLS 1.3 does not
//!   define) tries `-PLUS`, fails, and falls back to plain SCRAM with the GS2 flag `y`, which
//!   is refused as a downgrade while `-PLUS` is advertised. So a `-PLUS` exchange with an
//!   unsupported type is carried to the end: when the client proves its password it fails
//!   with `e=unsupported-channel-binding-type` and yields a [`BindingFallback`] for that
//!   account, and a later `y` on the same stream for the same account is accepted. The proof
//!   is what makes this safe: anyone, a man in the middle included, can send a `-PLUS`
//!   attempt, but only the account's owner can prove the password in one, and a client that
//!   tried `-PLUS` saw it advertised, so nothing was stripped. Every other `y` while `-PLUS`
//!   is advertised stays a downgrade (`e=server-does-support-channel-binding`).

mod crypto;
mod plain;
mod scram;

#[cfg(test)]
mod tests;

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::xmpp::jid::{self, Jid};

pub use self::crypto::{derive_keys, new_keys, verify_plain};

/// A SASL mechanism the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// SCRAM-SHA-1-PLUS: SCRAM-SHA-1 with channel binding (RFC 5802).
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-256-PLUS: SCRAM-SHA-256 with channel binding (RFC 7677).
    ScramSha256Plus,
    /// PLAIN (RFC 4616); only over TLS.
    Plain,
}

impl Mechanism {
    /// All mechanisms, strongest first (the order to advertise them in).
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA mechanism name, as in `<mechanism>` and `<auth mechanism='..'>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism with this exact (case-sensitive) name.
    pub fn from_name(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether this is a channel-binding (`-PLUS`) variant.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// The SCRAM hash, or `None` for PLAIN.
    pub fn hash_alg(self) -> Option<HashAlg> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(HashAlg::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(HashAlg::Sha256),
            Mechanism::Plain => None,
        }
    }
}

/// The hash function of a SCRAM family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-1 (20-byte keys).
    Sha1,
    /// SHA-256 (32-byte keys).
    Sha256,
}

impl HashAlg {
    /// Output (and key) length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
        }
    }
}

/// Salted SCRAM credentials of one account for one hash (RFC 5802 §3); never the password.
///
/// Placeholder until `xmppd-storage` exports the same struct.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// The per-user random salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// StoredKey = H(ClientKey).
    pub stored_key: Vec<u8>,
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramKeys")
            .field("salt", &encode_payload(&self.salt))
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Channel-binding data the TLS layer can provide for this connection (None = not available).
#[derive(Default, Clone)]
pub struct ChannelBindings {
    /// `tls-server-end-point` (RFC 5929 §4): hash of the server certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
    /// `tls-exporter` (RFC 9266): the TLS exporter value, for TLS 1.3.
    pub tls_exporter: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// Whether any channel-binding type is available (so `-PLUS` may be advertised).
    pub fn any(&self) -> bool {
        self.names().next().is_some()
    }

    /// The available channel-binding type names, for `<sasl-channel-binding>` (XEP-0440).
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        let exporter = self.data("tls-exporter").is_some();
        let end_point = self.data("tls-server-end-point").is_some();
        [
            (exporter, "tls-exporter"),
            (end_point, "tls-server-end-point"),
        ]
        .into_iter()
        .filter_map(|(available, name)| available.then_some(name))
    }

    /// The binding data for a cb-name; empty data counts as unavailable.
    pub fn data(&self, cb_name: &str) -> Option<&[u8]> {
        let data = match cb_name {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        };
        data.filter(|d| !d.is_empty())
    }
}

/// The RFC 5802 §7 `server-error-value`s this server reports, sent as `e=<value>` in the
/// `<text>` of a `not-authorized` failure (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramError {
    /// The client sent the GS2 flag `y` (it supports channel binding but thinks the server
    /// does not) although `-PLUS` was advertised: a downgrade.
    ServerDoesSupportChannelBinding,
    /// A `-PLUS` exchange named a channel-binding type this connection cannot provide; the
    /// client proved its password, which is what a [`BindingFallback`] records.
    UnsupportedChannelBindingType,
}

impl ScramError {
    /// The `server-error-value`, e.g. `unsupported-channel-binding-type`.
    pub fn value(self) -> &'static str {
        match self {
            ScramError::ServerDoesSupportChannelBinding => "server-does-support-channel-binding",
            ScramError::UnsupportedChannelBindingType => "unsupported-channel-binding-type",
        }
    }
}

/// An account that proved its password in a `-PLUS` exchange that failed only because this
/// server does not support the client's channel-binding type. Passed to the next exchange on
/// the same stream ([`SaslExchange::start_with_fallback`]): that account's GS2 flag `y` is a
/// fallback, not a downgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingFallback {
    /// The nodeprep'd localpart.
    username: String,
}

/// RFC 6120 §6.5 conditions, in spec order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    /// The client sent `<abort/>` (§6.5.1).
    Aborted,
    /// The account is disabled (§6.5.2).
    AccountDisabled,
    /// The credentials have expired (§6.5.3).
    CredentialsExpired,
    /// The mechanism needs an encrypted stream (§6.5.4).
    EncryptionRequired,
    /// The base64 could not be decoded (§6.5.5).
    IncorrectEncoding,
    /// The authzid is malformed or not permitted (§6.5.6).
    InvalidAuthzid,
    /// The mechanism is not offered (§6.5.7).
    InvalidMechanism,
    /// The request breaks the mechanism's syntax (§6.5.8).
    MalformedRequest,
    /// The mechanism is weaker than policy allows for this account (§6.5.9).
    MechanismTooWeak,
    /// Authentication failed (§6.5.10).
    NotAuthorized,
    /// A temporary server-side error, e.g. the account store is down (§6.5.11).
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The defined-condition element name, e.g. `not-authorized`.
    pub fn condition(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// What the server needs to look an account up. `username` is the SASLprep'd,
/// =2C/=3D-decoded, nodeprep'd localpart.
pub trait CredentialSource {
    /// Looks up the credentials of `username`.
    fn lookup(&self, username: &str) -> Lookup;
}

/// The result of [`CredentialSource::lookup`].
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The account exists.
    Found {
        /// Keys for SCRAM-SHA-1(-PLUS).
        sha1: ScramKeys,
        /// Keys for SCRAM-SHA-256(-PLUS) and PLAIN.
        sha256: ScramKeys,
        /// The account is locked (`account-disabled` once the password is proven).
        disabled: bool,
    },
    /// No such account.
    NotFound,
    /// Backend error: answered with `temporary-auth-failure`.
    Unavailable,
}

/// Per-connection settings of an exchange.
#[derive(Clone, Copy)]
pub struct SaslConfig<'a> {
    /// The local domain the account lives on (for authzid checks).
    pub domain: &'a str,
    /// TLS is on (PLAIN is refused otherwise).
    pub secure: bool,
    /// Some `-PLUS` mechanism was advertised (GS2 flag `y` is then a downgrade, except for
    /// the account of a [`BindingFallback`]).
    pub plus_offered: bool,
    /// Channel-binding data of this connection.
    pub bindings: &'a ChannelBindings,
    /// Server secret from which fake salts for unknown users are derived. Keep it secret and
    /// stable across restarts: a fake salt that changes, or that anyone can compute, tells
    /// unknown users apart from real ones.
    pub fake_salt_secret: &'a [u8],
    /// Iteration count shown for unknown users (should match what new accounts get).
    pub default_iterations: u32,
}

/// What the I/O layer must do next.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `<challenge>` with this data.
    Challenge(Vec<u8>),
    /// Send `<success>` (with the SCRAM `v=` as additional data); the stream restarts
    /// authenticated as `username` (the nodeprep'd localpart).
    Success {
        /// The authenticated localpart.
        username: String,
        /// Additional data for `<success>`, if any.
        additional: Option<Vec<u8>>,
    },
    /// Send `<failure>`; the exchange is over.
    Failure(SaslFailure),
    /// PLAIN: the password must be checked with PBKDF2, which is slow: the I/O layer runs
    /// `verify_plain` off the shard thread and then calls `SaslExchange::plain_verified`.
    VerifyPlain {
        /// The nodeprep'd localpart.
        username: String,
        /// The password as sent (SASLprep is applied by [`verify_plain`]).
        password: String,
        /// The keys to check against (fake ones for an unknown user).
        keys: ScramKeys,
    },
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Challenge(data) => f
                .debug_tuple("Challenge")
                .field(&String::from_utf8_lossy(data))
                .finish(),
            Step::Success {
                username,
                additional,
            } => f
                .debug_struct("Success")
                .field("username", username)
                .field(
                    "additional",
                    &additional.as_deref().map(String::from_utf8_lossy),
                )
                .finish(),
            Step::Failure(failure) => f.debug_tuple("Failure").field(failure).finish(),
            Step::VerifyPlain { username, keys, .. } => f
                .debug_struct("VerifyPlain")
                .field("username", username)
                .field("keys", keys)
                .finish_non_exhaustive(),
        }
    }
}

/// One server-side SASL exchange, from `<auth>` to `<success>` or `<failure>`.
pub struct SaslExchange {
    state: State,
    /// The account whose `y` is not a downgrade on this stream.
    fallback: Option<BindingFallback>,
}

/// What the exchange waits for.
enum State {
    /// SCRAM started without initial response: the client-first message.
    ExpectClientFirst { alg: HashAlg, plus: bool },
    /// SCRAM server-first sent: the client-final message.
    ExpectClientFinal(Box<scram::ExpectClientFinal>),
    /// PLAIN started without initial response: the PLAIN message.
    ExpectPlainMessage,
    /// PLAIN: the result of `verify_plain`.
    ExpectPlainVerified(plain::ExpectVerified),
    /// Over (success or failure): nothing more is accepted.
    Done,
    /// Over with a failure that has an RFC 5802 `e=` value (and, for an unsupported
    /// channel-binding type, the account that proved its password).
    Refused(ScramError, Option<BindingFallback>),
}

impl SaslExchange {
    /// Starts an exchange on `<auth mechanism='..'>`. `initial`: `None` = no initial response
    /// (`<auth/>` empty, answered with an empty challenge); `Some(empty)` = the client sent
    /// "=" (which no mechanism here accepts: `malformed-request`).
    ///
    /// A `-PLUS` mechanism on a connection without channel-binding data was not offered and
    /// fails with `invalid-mechanism`; PLAIN without TLS fails with `encryption-required`.
    pub fn start(
        mech: Mechanism,
        initial: Option<&[u8]>,
        cfg: &SaslConfig,
        creds: &dyn CredentialSource,
    ) -> (SaslExchange, Step) {
        SaslExchange::start_inner(mech, initial, cfg, creds, None, None)
    }

    /// [`SaslExchange::start`] on a stream where an earlier exchange ended with `fallback`
    /// ([`SaslExchange::binding_fallback`]): the GS2 flag `y` of that account is accepted
    /// although `-PLUS` is advertised.
    pub fn start_with_fallback(
        mech: Mechanism,
        initial: Option<&[u8]>,
        cfg: &SaslConfig,
        creds: &dyn CredentialSource,
        fallback: Option<&BindingFallback>,
    ) -> (SaslExchange, Step) {
        SaslExchange::start_inner(mech, initial, cfg, creds, fallback.cloned(), None)
    }

    /// [`SaslExchange::start`] with a fixed server nonce, for the RFC test vectors.
    #[cfg(test)]
    pub(crate) fn start_with_nonce(
        mech: Mechanism,
        initial: Option<&[u8]>,
        cfg: &SaslConfig,
        creds: &dyn CredentialSource,
        server_nonce: &str,
    ) -> (SaslExchange, Step) {
        SaslExchange::start_inner(mech, initial, cfg, creds, None, Some(server_nonce))
    }

    fn start_inner(
        mech: Mechanism,
        initial: Option<&[u8]>,
        cfg: &SaslConfig,
        creds: &dyn CredentialSource,
        fallback: Option<BindingFallback>,
        server_nonce: Option<&str>,
    ) -> (SaslExchange, Step) {
        let (state, step) = match (mech.hash_alg(), initial) {
            (None, _) if !cfg.secure => fail(SaslFailure::EncryptionRequired),
            (None, None) => (State::ExpectPlainMessage, Step::Challenge(Vec::new())),
            (None, Some(message)) => plain::handle(message, cfg, creds),
            (Some(_), _) if mech.is_plus() && !cfg.bindings.any() => {
                fail(SaslFailure::InvalidMechanism)
            }
            (Some(alg), None) => (
                State::ExpectClientFirst {
                    alg,
                    plus: mech.is_plus(),
                },
                Step::Challenge(Vec::new()),
            ),
            (Some(alg), Some(message)) => scram::handle_client_first(
                alg,
                mech.is_plus(),
                message,
                cfg,
                creds,
                fallback.as_ref(),
                server_nonce,
            ),
        };
        (SaslExchange { state, fallback }, step)
    }

    /// Handles a `<response>` (its decoded data). Anything after the exchange is over, or while
    /// a PLAIN verification is pending, fails with `malformed-request`.
    pub fn step(
        &mut self,
        response: &[u8],
        cfg: &SaslConfig,
        creds: &dyn CredentialSource,
    ) -> Step {
        let (state, step) = match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectClientFirst { alg, plus } => scram::handle_client_first(
                alg,
                plus,
                response,
                cfg,
                creds,
                self.fallback.as_ref(),
                None,
            ),
            State::ExpectClientFinal(expect) => expect.handle(response),
            State::ExpectPlainMessage => plain::handle(response, cfg, creds),
            State::ExpectPlainVerified(_) | State::Done | State::Refused(..) => {
                fail(SaslFailure::MalformedRequest)
            }
        };
        self.state = state;
        step
    }

    /// Finishes PLAIN with the result of [`verify_plain`] for the [`Step::VerifyPlain`] this
    /// exchange returned. Called in any other state, it fails with `malformed-request`.
    pub fn plain_verified(&mut self, ok: bool) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectPlainVerified(expect) => expect.handle(ok),
            _ => Step::Failure(SaslFailure::MalformedRequest),
        }
    }

    /// The client sent `<abort/>` (CORE-SASL-09): the exchange ends with `aborted`.
    pub fn abort(&mut self) -> Step {
        self.state = State::Done;
        Step::Failure(SaslFailure::Aborted)
    }

    /// Whether the exchange is over (a `Success` or `Failure` was returned).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done | State::Refused(..))
    }

    /// The RFC 5802 `e=` value of the failure the exchange just ended with, if it has one.
    pub fn scram_error(&self) -> Option<ScramError> {
        match self.state {
            State::Refused(error, _) => Some(error),
            _ => None,
        }
    }

    /// After a failure with [`ScramError::UnsupportedChannelBindingType`]: the account that
    /// proved its password, for [`SaslExchange::start_with_fallback`] on the same stream.
    pub fn binding_fallback(&self) -> Option<&BindingFallback> {
        match &self.state {
            State::Refused(_, fallback) => fallback.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Debug for SaslExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::ExpectClientFirst { .. } => "ExpectClientFirst",
            State::ExpectClientFinal(_) => "ExpectClientFinal",
            State::ExpectPlainMessage => "ExpectPlainMessage",
            State::ExpectPlainVerified(_) => "ExpectPlainVerified",
            State::Done => "Done",
            State::Refused(..) => "Refused",
        };
        f.debug_struct("SaslExchange")
            .field("state", &state)
            .finish()
    }
}

/// Strict base64 for `<auth>`/`<response>` text: `""` → `Ok(None)` (no data), `"="` →
/// `Ok(Some(empty))`, any whitespace or invalid character → `Err(IncorrectEncoding)`
/// (CORE-SASL-06, -10).
///
/// Padding must be canonical. For a `<response>`, `Ok(None)` means an empty response.
pub fn decode_payload(text: &str) -> Result<Option<Vec<u8>>, SaslFailure> {
    match text {
        "" => Ok(None),
        "=" => Ok(Some(Vec::new())),
        _ => STANDARD
            .decode(text)
            .map(Some)
            .map_err(|_| SaslFailure::IncorrectEncoding),
    }
}

/// Base64 for `<auth>`/`<challenge>`/`<success>` text; empty data becomes "=".
pub fn encode_payload(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        STANDARD.encode(data)
    }
}

/// Ends an exchange with a failure.
fn fail(failure: SaslFailure) -> (State, Step) {
    (State::Done, Step::Failure(failure))
}

/// SASLprep (RFC 4013, query string) then Nodeprep: the account's localpart.
fn prep_username(name: &str) -> Result<String, SaslFailure> {
    let prepped = if name.is_ascii() {
        // SASLprep maps no ASCII and rejects only controls, which Nodeprep rejects too.
        std::borrow::Cow::Borrowed(name)
    } else {
        stringprep::saslprep(name).map_err(|_| SaslFailure::NotAuthorized)?
    };
    jid::nodeprep(&prepped)
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| SaslFailure::NotAuthorized)
}

/// An authzid is allowed only when absent or naming the authenticating account's own bare JID
/// (CORE-SASL-11); there is no proxy authorization.
fn check_authzid(
    authzid: Option<&str>,
    username: &str,
    cfg: &SaslConfig,
) -> Result<(), SaslFailure> {
    let Some(authzid) = authzid else {
        return Ok(());
    };
    let own =
        Jid::new(Some(username), cfg.domain, None).map_err(|_| SaslFailure::InvalidAuthzid)?;
    match Jid::parse(authzid) {
        Ok(requested) if requested == own => Ok(()),
        _ => Err(SaslFailure::InvalidAuthzid),
    }
}

/// Credentials for `username` and whether the account really exists; fake (but stable) ones
/// for an unknown user so that neither the salt nor the timing reveals existence.
struct Account {
    keys: ScramKeys,
    exists: bool,
    disabled: bool,
}

impl Account {
    fn lookup(
        alg: HashAlg,
        username: &str,
        cfg: &SaslConfig,
        creds: &dyn CredentialSource,
    ) -> Result<Account, SaslFailure> {
        match creds.lookup(username) {
            Lookup::Found {
                sha1,
                sha256,
                disabled,
            } => {
                let keys = match alg {
                    HashAlg::Sha1 => sha1,
                    HashAlg::Sha256 => sha256,
                };
                Ok(Account {
                    keys,
                    exists: true,
                    disabled,
                })
            }
            Lookup::NotFound => Ok(Account {
                keys: fake_keys(alg, username, cfg),
                exists: false,
                disabled: false,
            }),
            Lookup::Unavailable => Err(SaslFailure::TemporaryAuthFailure),
        }
    }
}

/// Salt = HMAC-SHA-256(secret, hash name ‖ 0 ‖ username)[..16]: stable per user, so repeated
/// probes see the same salt, and different per hash, as real accounts' salts are.
fn fake_keys(alg: HashAlg, username: &str, cfg: &SaslConfig) -> ScramKeys {
    let label: &[u8] = match alg {
        HashAlg::Sha1 => b"SHA-1",
        HashAlg::Sha256 => b"SHA-256",
    };
    let secret = cfg.fake_salt_secret;
    let mut salt = crypto::hmac(
        HashAlg::Sha256,
        secret,
        &[b"salt\0", label, b"\0", username.as_bytes()],
    );
    salt.truncate(16);
    let mut stored_key = crypto::hmac(
        HashAlg::Sha256,
        secret,
        &[b"stored\0", label, b"\0", username.as_bytes()],
    );
    stored_key.truncate(alg.output_len());
    let mut server_key = crypto::hmac(
        HashAlg::Sha256,
        secret,
        &[b"server\0", label, b"\0", username.as_bytes()],
    );
    server_key.truncate(alg.output_len());
    ScramKeys {
        salt,
        iterations: cfg.default_iterations,
        stored_key,
        server_key,
    }
}
