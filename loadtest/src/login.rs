//! Client login procedure (RFC 6120 §5–§7, RFC 3921 §3): stream open, STARTTLS, SASL, bind,
//! optional session. Sans-I/O: each state consumes one stanza and says what the socket loop
//! must do next.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::framing::{attr, child, find, name};
use crate::scram::{Alg, ScramClient, ScramError};

/// `urn:ietf:params:xml:ns:xmpp-sasl`
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// SASL mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mech {
    /// PLAIN (RFC 4616).
    Plain,
    /// SCRAM-SHA-1 (RFC 5802).
    #[value(name = "scram-sha-1")]
    ScramSha1,
    /// SCRAM-SHA-256 (RFC 7677).
    #[value(name = "scram-sha-256")]
    ScramSha256,
}

impl Mech {
    fn wire_name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::ScramSha256 => "SCRAM-SHA-256",
        }
    }
}

/// What one connection logs in as.
#[derive(Debug, Clone)]
pub struct Account {
    /// Localpart.
    pub user: String,
    /// Password.
    pub password: String,
}

/// Settings shared by all connections.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The `to` of the stream header.
    pub domain: String,
    /// Negotiate STARTTLS.
    pub starttls: bool,
    /// SASL mechanism.
    pub mech: Mech,
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// `--starttls` but the server does not offer it.
    NoStartTls,
    /// The server does not offer the chosen mechanism.
    MechanismNotOffered(&'static str),
    /// SASL `<failure/>`.
    AuthFailed(String),
    /// SCRAM protocol error (bad nonce, bad server signature, …).
    Scram(ScramError),
    /// Resource binding or session failed.
    BindFailed,
    /// `<stream:error/>` or the stream closed during login.
    StreamError(String),
}

/// What the socket loop must do after a stanza was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond sending what was written.
    None,
    /// Start TLS now, then open a new stream.
    StartTls,
    /// Open a new stream (after SASL success).
    Restart,
    /// Bound (and session established if needed): the session is usable.
    Established,
}

/// Login state, named after what it waits for.
// The shared `Expect` prefix is the point: each state says what it waits for.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
pub enum Login {
    /// `<stream:features>` of the current stream.
    ExpectFeatures {
        /// TLS is already on.
        tls: bool,
        /// SASL succeeded.
        authed: bool,
    },
    /// `<proceed/>` after `<starttls/>`.
    ExpectProceed,
    /// `<challenge/>` with server-first-message.
    ExpectChallenge(Box<ScramClient>),
    /// `<success/>` (SCRAM: with server-final-message).
    ExpectSuccess(Option<Box<ScramClient>>),
    /// The bind result; `session` when the server requires the session iq.
    ExpectBind {
        /// Session iq required afterwards.
        session: bool,
    },
    /// The session result.
    ExpectSession,
}

/// Writes the stream header.
pub fn stream_header(out: &mut Vec<u8>, domain: &str) {
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream to='");
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(
        b"' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    );
}

impl Login {
    /// The state right after the first stream header was sent.
    pub fn start() -> Self {
        Login::ExpectFeatures {
            tls: false,
            authed: false,
        }
    }

    /// Consumes one top-level stanza; writes any reply into `out`.
    pub fn handle(
        self,
        stanza: &[u8],
        cfg: &LoginConfig,
        acct: &Account,
        nonce: &str,
        out: &mut Vec<u8>,
    ) -> Result<(Login, Action), LoginError> {
        // Over WebSocket (RFC 7395 §3.3.3) a server may also send these unprefixed, with the
        // streams namespace as the default one.
        let n = match name(stanza) {
            b"features" => &b"stream:features"[..],
            b"error" => b"stream:error",
            n => n,
        };
        if n == b"stream:error" {
            return Err(LoginError::StreamError(
                String::from_utf8_lossy(stanza).into_owned(),
            ));
        }
        match self {
            Login::ExpectFeatures { tls, authed } => {
                if n != b"stream:features" {
                    return Ok((self, Action::None));
                }
                if cfg.starttls && !tls {
                    if child(stanza, b"starttls").is_none() {
                        return Err(LoginError::NoStartTls);
                    }
                    out.extend_from_slice(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                    return Ok((Login::ExpectProceed, Action::None));
                }
                if !authed {
                    let mech = cfg.mech.wire_name();
                    let offered = format!("<mechanism>{mech}</mechanism>");
                    if find(stanza, offered.as_bytes()).is_none() {
                        return Err(LoginError::MechanismNotOffered(mech));
                    }
                    let (payload, next) = match cfg.mech {
                        Mech::Plain => {
                            let raw = format!("\0{}\0{}", acct.user, acct.password);
                            (raw, Login::ExpectSuccess(None))
                        }
                        Mech::ScramSha1 | Mech::ScramSha256 => {
                            let alg = if cfg.mech == Mech::ScramSha1 {
                                Alg::Sha1
                            } else {
                                Alg::Sha256
                            };
                            let c = ScramClient::new(alg, &acct.user, &acct.password, nonce);
                            (c.client_first(), Login::ExpectChallenge(Box::new(c)))
                        }
                    };
                    let auth = format!(
                        "<auth xmlns='{NS_SASL}' mechanism='{mech}'>{}</auth>",
                        STANDARD.encode(payload)
                    );
                    out.extend_from_slice(auth.as_bytes());
                    return Ok((next, Action::None));
                }
                if child(stanza, b"bind").is_none() {
                    return Err(LoginError::BindFailed);
                }
                out.extend_from_slice(
                    b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                      <resource>lt</resource></bind></iq>",
                );
                Ok((
                    Login::ExpectBind {
                        session: session_required(stanza),
                    },
                    Action::None,
                ))
            }
            Login::ExpectProceed => match n {
                b"proceed" => Ok((
                    Login::ExpectFeatures {
                        tls: true,
                        authed: false,
                    },
                    Action::StartTls,
                )),
                b"failure" => Err(LoginError::NoStartTls),
                _ => Ok((Login::ExpectProceed, Action::None)),
            },
            Login::ExpectChallenge(mut scram) => match n {
                b"challenge" => {
                    let first = decode_text(stanza)?;
                    let fin = scram.client_final(&first).map_err(LoginError::Scram)?;
                    let resp = format!(
                        "<response xmlns='{NS_SASL}'>{}</response>",
                        STANDARD.encode(fin)
                    );
                    out.extend_from_slice(resp.as_bytes());
                    Ok((Login::ExpectSuccess(Some(scram)), Action::None))
                }
                b"failure" => Err(failure(stanza)),
                _ => Ok((Login::ExpectChallenge(scram), Action::None)),
            },
            Login::ExpectSuccess(scram) => match n {
                b"success" => {
                    if let Some(scram) = &scram {
                        let fin = decode_text(stanza)?;
                        scram.verify_final(&fin).map_err(LoginError::Scram)?;
                    }
                    Ok((
                        Login::ExpectFeatures {
                            tls: true,
                            authed: true,
                        },
                        Action::Restart,
                    ))
                }
                b"failure" => Err(failure(stanza)),
                _ => Ok((Login::ExpectSuccess(scram), Action::None)),
            },
            Login::ExpectBind { session } => {
                if n != b"iq" || attr(stanza, b"id") != Some(b"b") {
                    return Ok((self, Action::None));
                }
                if attr(stanza, b"type") != Some(b"result") {
                    return Err(LoginError::BindFailed);
                }
                if session {
                    out.extend_from_slice(
                        b"<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
                    );
                    return Ok((Login::ExpectSession, Action::None));
                }
                Ok((self, Action::Established))
            }
            Login::ExpectSession => {
                if n != b"iq" || attr(stanza, b"id") != Some(b"s") {
                    return Ok((self, Action::None));
                }
                if attr(stanza, b"type") != Some(b"result") {
                    return Err(LoginError::BindFailed);
                }
                Ok((self, Action::Established))
            }
        }
    }
}

/// The server advertises `<session/>` without `<optional/>`.
fn session_required(features: &[u8]) -> bool {
    let Some(sess) = child(features, b"session") else {
        return false;
    };
    let end = find(sess, b"</session>").unwrap_or(sess.len());
    let head_end = sess.iter().position(|&b| b == b'>').unwrap_or(0);
    if head_end > 0 && sess[head_end - 1] == b'/' {
        return true;
    }
    find(&sess[..end], b"<optional").is_none()
}

fn decode_text(stanza: &[u8]) -> Result<Vec<u8>, LoginError> {
    let tag_end = stanza.iter().position(|&b| b == b'>').unwrap_or(0);
    let body = if tag_end > 0 && stanza[tag_end - 1] == b'/' {
        &stanza[..0]
    } else {
        let rest = &stanza[tag_end + 1..];
        &rest[..rest.iter().position(|&b| b == b'<').unwrap_or(rest.len())]
    };
    let body: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if body == b"=" {
        return Ok(Vec::new());
    }
    STANDARD
        .decode(&body)
        .map_err(|_| LoginError::Scram(ScramError::MalformedServerFirst))
}

fn failure(stanza: &[u8]) -> LoginError {
    let cond = stanza
        .split(|&b| b == b'<')
        .nth(2)
        .map(|s| String::from_utf8_lossy(name(s)).into_owned())
        .unwrap_or_default();
    LoginError::AuthFailed(cond)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mech: Mech, starttls: bool) -> LoginConfig {
        LoginConfig {
            domain: "localhost".into(),
            starttls,
            mech,
        }
    }

    fn acct() -> Account {
        Account {
            user: "user".into(),
            password: "pencil".into(),
        }
    }

    #[test]
    fn rfc6120_plain_login_then_bind_without_session() {
        let c = cfg(Mech::Plain, false);
        let mut out = Vec::new();
        let f = b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                  <mechanism>PLAIN</mechanism></mechanisms></stream:features>";
        let (s, a) = Login::start()
            .handle(f, &c, &acct(), "n", &mut out)
            .unwrap();
        assert_eq!(a, Action::None);
        assert!(String::from_utf8_lossy(&out).contains("mechanism='PLAIN'>AHVzZXIAcGVuY2ls<"));
        let (s, a) = s
            .handle(b"<success xmlns='x'/>", &c, &acct(), "n", &mut out)
            .unwrap();
        assert_eq!(a, Action::Restart);
        out.clear();
        let f2 = b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
                   <session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>\
                   </stream:features>";
        let (s, _) = s.handle(f2, &c, &acct(), "n", &mut out).unwrap();
        assert!(matches!(s, Login::ExpectBind { session: false }));
        let (_, a) = s
            .handle(
                b"<iq type='result' id='b'><bind><jid>u@l/lt</jid></bind></iq>",
                &c,
                &acct(),
                "n",
                &mut out,
            )
            .unwrap();
        assert_eq!(a, Action::Established);
    }

    #[test]
    fn rfc5802_scram_login_and_required_session() {
        let c = cfg(Mech::ScramSha1, false);
        let mut out = Vec::new();
        let f = b"<stream:features><mechanisms><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
        let nonce = "fyko+d2lbbFgONRv9qkxdawL";
        let (s, _) = Login::start()
            .handle(f, &c, &acct(), nonce, &mut out)
            .unwrap();
        let sf = STANDARD
            .encode("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
        let ch = format!("<challenge xmlns='x'>{sf}</challenge>");
        let (s, _) = s
            .handle(ch.as_bytes(), &c, &acct(), nonce, &mut out)
            .unwrap();
        let bad = format!("<success xmlns='x'>{}</success>", STANDARD.encode("v=AAAA"));
        let mut other = ScramClient::new(Alg::Sha1, "user", "pencil", nonce);
        other
            .client_final(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        let wrong = Login::ExpectSuccess(Some(Box::new(other)));
        assert!(matches!(
            wrong.handle(bad.as_bytes(), &c, &acct(), nonce, &mut out),
            Err(LoginError::Scram(ScramError::BadServerSignature))
        ));
        let ok = format!(
            "<success xmlns='x'>{}</success>",
            STANDARD.encode("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
        );
        let (s, a) = s
            .handle(ok.as_bytes(), &c, &acct(), nonce, &mut out)
            .unwrap();
        assert_eq!(a, Action::Restart);
        let f2 = b"<stream:features><bind xmlns='b'/><session xmlns='s'/></stream:features>";
        let (s, _) = s.handle(f2, &c, &acct(), nonce, &mut out).unwrap();
        let (s, a) = s
            .handle(b"<iq type='result' id='b'/>", &c, &acct(), nonce, &mut out)
            .unwrap();
        assert_eq!(a, Action::None);
        assert!(matches!(s, Login::ExpectSession));
        let (_, a) = s
            .handle(b"<iq type='result' id='s'/>", &c, &acct(), nonce, &mut out)
            .unwrap();
        assert_eq!(a, Action::Established);
    }

    #[test]
    fn starttls_requested_but_not_offered_fails() {
        let c = cfg(Mech::Plain, true);
        let mut out = Vec::new();
        let f = b"<stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
        assert_eq!(
            Login::start().handle(f, &c, &acct(), "n", &mut out).err(),
            Some(LoginError::NoStartTls)
        );
        let f = b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";
        let (s, _) = Login::start()
            .handle(f, &c, &acct(), "n", &mut out)
            .unwrap();
        let (_, a) = s
            .handle(b"<proceed xmlns='x'/>", &c, &acct(), "n", &mut out)
            .unwrap();
        assert_eq!(a, Action::StartTls);
    }
}
