//! XEP-0114 component flags (`[components]` in the configuration file) and their resolved
//! form.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::config::ConfigError;

/// Flags of the component listener. Every field is optional so that "not given" can fall
/// back to the file.
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentArgs {
    /// An external component (XEP-0114) allowed to connect: `DOMAIN=SECRET`; repeat for
    /// several. Its domain and the subdomains under it are routed to its stream. A secret on
    /// the command line is visible to other local users (`ps`): prefer the file's
    /// `[components.secrets]` table [default: none].
    #[arg(long = "component", value_name = "DOMAIN=SECRET")]
    #[serde(skip)]
    pub component: Vec<String>,
    /// Component listen address; repeat for several. Opened only when a component is
    /// configured; keep it on loopback or a private network (the handshake is not
    /// encrypted) [default: 127.0.0.1:5347].
    #[arg(long)]
    #[serde(default)]
    pub component_listen: Vec<SocketAddr>,
    /// Seconds a component may take to complete its handshake [default: 10].
    #[arg(long)]
    pub component_handshake_timeout: Option<u64>,
    /// Unsent bytes queued for one component: stanzas beyond it are bounced to their
    /// senders with `resource-constraint` [default: 4194304].
    #[arg(long)]
    pub component_max_send_queue: Option<usize>,
    /// The file form of `--component`: `"irc.example.org" = "secret"`.
    #[arg(skip)]
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// The resolved component settings.
#[derive(Debug, Clone, Default)]
pub struct ComponentConfig {
    /// Listen addresses (empty when no component is configured).
    pub listen: Vec<SocketAddr>,
    /// (normalized domain, secret), sorted by domain.
    pub secrets: Vec<(String, String)>,
    /// Time allowed for the handshake.
    pub handshake_timeout: std::time::Duration,
    /// Send queue bound per component stream.
    pub max_send_queue: usize,
}

impl ComponentConfig {
    /// The secret of a configured component domain (normalized).
    pub fn secret(&self, domain: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(d, _)| d == domain)
            .map(|(_, s)| s.as_str())
    }
}

impl ComponentArgs {
    /// Resolve the flags over the file's table. `taken` says whether a domain is already
    /// served or a service's (a component may not take it).
    pub fn resolve(
        &self,
        file: &ComponentArgs,
        taken: &dyn Fn(&str) -> bool,
    ) -> Result<ComponentConfig, ConfigError> {
        let bad = |msg: String| Err(ConfigError(msg));
        let mut pairs: Vec<(String, String)> = Vec::new();
        let flags = self.component.iter().map(|c| match c.split_once('=') {
            Some((d, s)) => Ok((d.to_string(), s.to_string())),
            None => Err(ConfigError(format!(
                "--component {c:?}: expected DOMAIN=SECRET"
            ))),
        });
        let from_file = file.secrets.iter().map(|(d, s)| Ok((d.clone(), s.clone())));
        // Flags first: a flag overrides the file's secret for the same domain.
        for pair in flags.chain(from_file) {
            let (raw, secret) = pair?;
            let domain = match crate::xmpp::jid::nameprep_domain(raw.trim()) {
                Ok(d) => d.into_owned(),
                Err(e) => return bad(format!("component domain {raw:?}: {e}")),
            };
            if secret.is_empty() {
                return bad(format!("component {domain}: the secret is empty"));
            }
            if taken(&domain) {
                return bad(format!(
                    "component {domain}: the domain is already served by this server"
                ));
            }
            if !pairs.iter().any(|(d, _)| *d == domain) {
                pairs.push((domain, secret));
            }
        }
        pairs.sort();
        let listen = if pairs.is_empty() {
            Vec::new()
        } else if !self.component_listen.is_empty() {
            self.component_listen.clone()
        } else if !file.component_listen.is_empty() {
            file.component_listen.clone()
        } else {
            vec![SocketAddr::from(([127, 0, 0, 1], 5347))]
        };
        let timeout = self
            .component_handshake_timeout
            .or(file.component_handshake_timeout)
            .unwrap_or(10);
        if !(1..=3600).contains(&timeout) {
            return bad("--component-handshake-timeout must be between 1 and 3600".into());
        }
        let max_send_queue = self
            .component_max_send_queue
            .or(file.component_max_send_queue)
            .unwrap_or(4 << 20);
        if max_send_queue < 64 * 1024 {
            return bad("--component-max-send-queue must be at least 65536".into());
        }
        Ok(ComponentConfig {
            listen,
            secrets: pairs,
            handshake_timeout: std::time::Duration::from_secs(timeout),
            max_send_queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn no_component_no_listener() {
        let c = ComponentArgs::default()
            .resolve(&ComponentArgs::default(), &none)
            .unwrap();
        assert!(c.listen.is_empty());
        assert!(c.secrets.is_empty());
    }

    #[test]
    fn flags_and_file_merge_with_flags_first_and_domains_normalized() {
        let flags = ComponentArgs {
            component: vec!["IRC.Example.org=flag".into()],
            ..Default::default()
        };
        let mut file = ComponentArgs::default();
        file.secrets.insert("irc.example.org".into(), "file".into());
        file.secrets.insert("gw.example.org".into(), "g".into());
        let c = flags.resolve(&file, &none).unwrap();
        assert_eq!(
            c.secrets,
            vec![
                ("gw.example.org".to_string(), "g".to_string()),
                ("irc.example.org".to_string(), "flag".to_string()),
            ]
        );
        assert_eq!(c.secret("irc.example.org"), Some("flag"));
        assert_eq!(c.listen, vec!["127.0.0.1:5347".parse().unwrap()]);
    }

    #[test]
    fn bad_pairs_are_refused_with_a_reason() {
        let bad = |v: &str, taken: &dyn Fn(&str) -> bool| {
            ComponentArgs {
                component: vec![v.into()],
                ..Default::default()
            }
            .resolve(&ComponentArgs::default(), taken)
            .unwrap_err()
            .0
        };
        assert!(bad("irc.example.org", &none).contains("DOMAIN=SECRET"));
        assert!(bad("irc.example.org=", &none).contains("empty"));
        assert!(bad("a b=c", &none).contains("component domain"));
        assert!(bad("localhost=x", &|d| d == "localhost").contains("already served"));
    }
}
