//! Server-to-server flags (`[s2s]` in the configuration file) and their resolved form.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{pick, ConfigError};

/// Flags of federation. Every field is optional so that "not given" can fall back to the
/// file.
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S2sArgs {
    /// Turn federation off: no server-to-server listener, and stanzas for other domains are
    /// answered with `remote-server-not-found`.
    #[arg(long)]
    #[serde(default)]
    pub no_s2s: bool,
    /// Server-to-server listen address (STARTTLS); repeat for several
    /// [default: 0.0.0.0:5269].
    #[arg(long)]
    #[serde(default)]
    pub s2s_listen: Vec<SocketAddr>,
    /// Direct-TLS server-to-server listen address (XEP-0368, advertised as
    /// `_xmpps-server._tcp`); repeat for several [default: none].
    #[arg(long)]
    #[serde(default)]
    pub s2s_tls_listen: Vec<SocketAddr>,
    /// Where to connect for a remote domain instead of asking DNS: `DOMAIN=HOST:PORT`
    /// (HOST a name, an IPv4 address or `[IPv6]`); repeat for several [default: none].
    #[arg(long = "s2s-route", value_name = "DOMAIN=HOST:PORT")]
    #[serde(default)]
    pub s2s_route: Vec<String>,
    /// DNS server to ask for SRV and address records (`IP:PORT`) instead of the system's
    /// (/etc/resolv.conf); repeat for several [default: system].
    #[arg(long)]
    #[serde(default)]
    pub s2s_dns: Vec<SocketAddr>,
    /// PEM file of the certificate authorities that server certificates are checked
    /// against [default: the system's roots].
    #[arg(long)]
    pub s2s_ca: Option<PathBuf>,
    /// Refuse a peer whose certificate does not validate for its domain, instead of
    /// falling back to dialback (XEP-0220).
    #[arg(long)]
    #[serde(default)]
    pub s2s_require_valid_cert: bool,
    /// Never authenticate a peer by dialback (XEP-0220): only a certificate that
    /// validates (SASL EXTERNAL, XEP-0178) is accepted.
    #[arg(long)]
    #[serde(default)]
    pub s2s_no_dialback: bool,
    /// Allow server-to-server streams without TLS (dialback in the clear). For tests on
    /// loopback only: the stanzas and the dialback keys cross the network in the clear.
    #[arg(long)]
    #[serde(default)]
    pub s2s_allow_plaintext: bool,
    /// Never use a stream in both directions (XEP-0288): neither offer nor ask for
    /// bidirectional streams.
    #[arg(long)]
    #[serde(default)]
    pub s2s_no_bidi: bool,
    /// Seconds a stream may carry no stanza before it is closed [default: 600].
    #[arg(long)]
    pub s2s_idle_timeout: Option<u64>,
    /// Seconds to resolve, connect and authenticate an outgoing stream before its queued
    /// stanzas bounce with `remote-server-timeout` [default: 30].
    #[arg(long)]
    pub s2s_connect_timeout: Option<u64>,
    /// Bytes of stanzas queued for one remote domain while its stream is set up; more are
    /// bounced with `resource-constraint` [default: 1048576].
    #[arg(long)]
    pub s2s_max_queue: Option<usize>,
    /// Incoming server-to-server connections at once, per process [default: 1000].
    #[arg(long)]
    pub s2s_max_incoming: Option<usize>,
    /// The file form of `--s2s-route`: `"example.net" = "xmpp.example.net:5269"`.
    #[arg(skip)]
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
}

/// The resolved federation settings.
#[derive(Debug, Clone, Default)]
pub struct S2sConfig {
    /// Federation is on.
    pub enabled: bool,
    /// STARTTLS listeners.
    pub listen: Vec<SocketAddr>,
    /// Direct-TLS listeners.
    pub tls_listen: Vec<SocketAddr>,
    /// Static routes, `(domain, "HOST:PORT")`, checked by the resolver.
    pub routes: Vec<(String, String)>,
    /// DNS servers (empty: the system's).
    pub dns: Vec<SocketAddr>,
    /// Trust anchors file (None: the system's roots).
    pub ca: Option<PathBuf>,
    /// A peer's certificate must validate.
    pub require_valid_cert: bool,
    /// Dialback may authenticate a peer.
    pub dialback: bool,
    /// Streams without TLS are allowed (tests).
    pub allow_plaintext: bool,
    /// Bidirectional streams (XEP-0288) are offered and asked for.
    pub bidi: bool,
    /// Idle stream timeout.
    pub idle_timeout: Duration,
    /// Outgoing stream set-up timeout.
    pub connect_timeout: Duration,
    /// Queue bound per outgoing stream being set up.
    pub max_queue: usize,
    /// Incoming connections per process.
    pub max_incoming: usize,
}

impl S2sArgs {
    /// Resolve the flags over the file's table.
    pub fn resolve(&self, file: &S2sArgs) -> Result<S2sConfig, ConfigError> {
        let bad = |msg: String| Err(ConfigError(msg));
        let enabled = !(self.no_s2s || file.no_s2s);
        let either = |flag: &Vec<SocketAddr>, file: &Vec<SocketAddr>| {
            if flag.is_empty() {
                file.clone()
            } else {
                flag.clone()
            }
        };
        let mut listen = either(&self.s2s_listen, &file.s2s_listen);
        if listen.is_empty() {
            listen.push(SocketAddr::from(([0, 0, 0, 0], 5269)));
        }
        let tls_listen = either(&self.s2s_tls_listen, &file.s2s_tls_listen);
        let mut routes: Vec<(String, String)> = Vec::new();
        let flags = self.s2s_route.iter().map(|r| match r.split_once('=') {
            Some((d, t)) => Ok((d.to_string(), t.to_string())),
            None => Err(ConfigError(format!(
                "--s2s-route {r:?}: expected DOMAIN=HOST:PORT"
            ))),
        });
        let from_file = file.routes.iter().map(|(d, t)| Ok((d.clone(), t.clone())));
        for r in flags.chain(from_file) {
            let (raw, target) = r?;
            let domain = match crate::xmpp::jid::nameprep_domain(raw.trim()) {
                Ok(d) => d.into_owned(),
                Err(e) => return bad(format!("--s2s-route domain {raw:?}: {e}")),
            };
            if !valid_target(target.trim()) {
                return bad(format!(
                    "--s2s-route {domain}={target}: expected HOST:PORT (HOST a name, an IPv4 \
                     address or [IPv6])"
                ));
            }
            if !routes.iter().any(|(d, _)| *d == domain) {
                routes.push((domain, target.trim().to_string()));
            }
        }
        routes.sort();
        let idle = pick(self.s2s_idle_timeout, file.s2s_idle_timeout, 600);
        let connect = pick(self.s2s_connect_timeout, file.s2s_connect_timeout, 30);
        if !(5..=86_400).contains(&idle) {
            return bad("--s2s-idle-timeout must be between 5 and 86400".into());
        }
        if !(1..=600).contains(&connect) {
            return bad("--s2s-connect-timeout must be between 1 and 600".into());
        }
        let max_queue = pick(self.s2s_max_queue, file.s2s_max_queue, 1 << 20);
        if max_queue < 64 * 1024 {
            return bad("--s2s-max-queue must be at least 65536".into());
        }
        let max_incoming = pick(self.s2s_max_incoming, file.s2s_max_incoming, 1000);
        if max_incoming == 0 {
            return bad("--s2s-max-incoming must be at least 1".into());
        }
        let require_valid_cert = self.s2s_require_valid_cert || file.s2s_require_valid_cert;
        let dialback = !(self.s2s_no_dialback || file.s2s_no_dialback);
        Ok(S2sConfig {
            enabled,
            listen: if enabled { listen } else { Vec::new() },
            tls_listen: if enabled { tls_listen } else { Vec::new() },
            routes,
            dns: either(&self.s2s_dns, &file.s2s_dns),
            ca: self.s2s_ca.clone().or(file.s2s_ca.clone()),
            require_valid_cert,
            dialback: dialback && !require_valid_cert,
            allow_plaintext: self.s2s_allow_plaintext || file.s2s_allow_plaintext,
            bidi: !(self.s2s_no_bidi || file.s2s_no_bidi),
            idle_timeout: Duration::from_secs(idle),
            connect_timeout: Duration::from_secs(connect),
            max_queue,
            max_incoming,
        })
    }
}

/// `HOST:PORT` with HOST a name, an IPv4 address or `[IPv6]`, and a non-zero port.
fn valid_target(t: &str) -> bool {
    let Some((host, port)) = t.rsplit_once(':') else {
        return false;
    };
    if !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(a: S2sArgs) -> Result<S2sConfig, ConfigError> {
        a.resolve(&S2sArgs::default())
    }

    #[test]
    fn defaults_federate_on_5269_with_tls_and_dialback() {
        let c = resolve(S2sArgs::default()).unwrap();
        assert!(c.enabled);
        assert_eq!(c.listen, vec!["0.0.0.0:5269".parse().unwrap()]);
        assert!(c.tls_listen.is_empty());
        assert!(c.dialback && !c.require_valid_cert && !c.allow_plaintext);
        assert!(c.bidi);
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
    }

    #[test]
    fn no_s2s_opens_nothing() {
        let c = resolve(S2sArgs {
            no_s2s: true,
            s2s_listen: vec!["127.0.0.1:1".parse().unwrap()],
            ..Default::default()
        })
        .unwrap();
        assert!(!c.enabled && c.listen.is_empty());
    }

    #[test]
    fn routes_are_checked_and_normalized() {
        let c = resolve(S2sArgs {
            s2s_route: vec![
                "B.example=127.0.0.1:5269".into(),
                "c.example=[::1]:5270".into(),
                "d.example=xmpp.d.example:5269".into(),
            ],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.routes[0], ("b.example".into(), "127.0.0.1:5269".into()));
        assert_eq!(c.routes.len(), 3);
        for bad in [
            "b.example",
            "b.example=127.0.0.1",
            "b.example=127.0.0.1:0",
            "b.example=[::1:5269",
            "b.example=:5269",
            "b.example=a b:5269",
        ] {
            assert!(
                resolve(S2sArgs {
                    s2s_route: vec![bad.into()],
                    ..Default::default()
                })
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn requiring_valid_certificates_turns_dialback_off() {
        let c = resolve(S2sArgs {
            s2s_require_valid_cert: true,
            ..Default::default()
        })
        .unwrap();
        assert!(!c.dialback);
    }
}
