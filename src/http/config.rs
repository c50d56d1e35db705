//! The HTTP listener's flags (`[http]` in the configuration file) and their resolved form.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{pick, ConfigError};

/// Flags of the HTTP listener (issue 13). Every field is optional so that "not given" can fall
/// back to the file.
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpArgs {
    /// HTTP listen address (WebSocket, BOSH, XEP-0156); repeat for several
    /// [default: 127.0.0.1:5280].
    #[arg(long)]
    #[serde(default)]
    pub http_listen: Vec<SocketAddr>,
    /// HTTPS listen address, with the XMPP certificate; repeat for several
    /// [default: 127.0.0.1:5443].
    #[arg(long)]
    #[serde(default)]
    pub https_listen: Vec<SocketAddr>,
    /// Run no HTTP or HTTPS listener.
    #[arg(long)]
    #[serde(default)]
    pub no_http: bool,
    /// Longest HTTP request line in bytes; longer gets 414 [default: 8192].
    #[arg(long)]
    pub http_max_request_line: Option<usize>,
    /// Most bytes of HTTP request head (request line and headers); more gets 431
    /// [default: 16384].
    #[arg(long)]
    pub http_max_header_bytes: Option<usize>,
    /// Largest HTTP request body in bytes; larger gets 413 [default: 1048576].
    #[arg(long)]
    pub http_max_body: Option<usize>,
    /// Seconds a client may take to send a whole request once it started one; then 408
    /// [default: 30].
    #[arg(long)]
    pub http_request_timeout: Option<u64>,
    /// Seconds an idle keep-alive connection stays open [default: 60].
    #[arg(long)]
    pub http_idle_timeout: Option<u64>,
    /// An origin (`https://app.example.com`) whose web pages may use the XMPP endpoints
    /// (CORS); repeat for several, `*` for any [default: *].
    #[arg(long)]
    #[serde(default)]
    pub http_cors_origin: Vec<String>,
    /// The URL clients reach this listener at, as XEP-0156 discovery advertises it
    /// (`https://xmpp.example.com`, or with a path prefix behind a reverse proxy)
    /// [default: the scheme of the port and the request's Host].
    #[arg(long)]
    pub public_http_url: Option<String>,
    /// Send every WebSocket client elsewhere: `<close see-other-uri='URL'/>` answers its
    /// `<open/>` (RFC 7395 §3.6.1), e.g. `wss://xmpp2.example.com/xmpp-websocket` while this
    /// host is drained [default: none].
    #[arg(long)]
    pub websocket_see_other_uri: Option<String>,
    /// BOSH (XEP-0124): the longest `wait` granted, seconds a request may be held
    /// [default: 60].
    #[arg(long)]
    pub bosh_max_wait: Option<u32>,
    /// BOSH: the most requests held at once per session (`hold`; `requests` is one more)
    /// [default: 2].
    #[arg(long)]
    pub bosh_max_hold: Option<u32>,
    /// BOSH: seconds without a request after which a session ends (`inactivity`)
    /// [default: 60].
    #[arg(long)]
    pub bosh_inactivity: Option<u32>,
    /// BOSH: the shortest interval in seconds between two empty requests (`polling`, §12)
    /// [default: 2].
    #[arg(long)]
    pub bosh_polling: Option<u32>,
    /// BOSH: the longest pause in seconds a client may ask for (`maxpause`) [default: 120].
    #[arg(long)]
    pub bosh_max_pause: Option<u32>,
}

/// The HTTP listener's resolved settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Plain HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners.
    pub tls_listen: Vec<SocketAddr>,
    /// Request-line bound.
    pub max_request_line: usize,
    /// Request-head bound.
    pub max_header_bytes: usize,
    /// Request-body bound.
    pub max_body: usize,
    /// Time to receive one whole request.
    pub request_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Who may call the endpoints from a browser.
    pub cors: Cors,
    /// The advertised base URL (no trailing slash), if configured.
    pub public_url: Option<String>,
    /// Where WebSocket clients are redirected, if anywhere.
    pub see_other_uri: Option<String>,
    /// BOSH session bounds.
    pub bosh: super::bosh::Policy,
}

/// The CORS policy: which origins get `Access-Control-Allow-Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Any origin (`*`).
    Any,
    /// These origins exactly (scheme, host and port, as browsers send them).
    Only(Vec<String>),
}

impl HttpArgs {
    /// Resolve flags over the file's `[http]` table; check bounds.
    pub fn resolve(&self, file: &HttpArgs) -> Result<HttpConfig, ConfigError> {
        let bad = |msg: &str| Err(ConfigError(msg.to_string()));
        let off = self.no_http || file.no_http;
        let addrs = |flag: &[SocketAddr], file: &[SocketAddr], default: u16| {
            if off {
                Vec::new()
            } else if !flag.is_empty() {
                flag.to_vec()
            } else if !file.is_empty() {
                file.to_vec()
            } else {
                vec![SocketAddr::from(([127, 0, 0, 1], default))]
            }
        };
        let origins = if self.http_cors_origin.is_empty() {
            &file.http_cors_origin
        } else {
            &self.http_cors_origin
        };
        let cors = if origins.is_empty() || origins.iter().any(|o| o == "*") {
            Cors::Any
        } else {
            for o in origins {
                let host = o
                    .strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"));
                if host.is_none_or(|h| {
                    h.is_empty()
                        || h.contains('/')
                        || h.bytes()
                            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
                }) {
                    return Err(ConfigError(format!(
                        "--http-cors-origin {o:?}: an origin is scheme://host[:port], \
                         without a path, or *"
                    )));
                }
            }
            Cors::Only(origins.clone())
        };
        let public_url = match self
            .public_http_url
            .as_ref()
            .or(file.public_http_url.as_ref())
        {
            None => None,
            Some(u) => {
                let rest = u
                    .strip_prefix("http://")
                    .or_else(|| u.strip_prefix("https://"));
                let authority = rest.map(|r| r.split('/').next().unwrap_or_default());
                if authority.is_none_or(|a| a.is_empty())
                    || u.bytes().any(|b| {
                        b.is_ascii_whitespace()
                            || b.is_ascii_control()
                            || matches!(b, b'\'' | b'"' | b'<' | b'>' | b'?' | b'#')
                    })
                {
                    return Err(ConfigError(format!(
                        "--public-http-url {u:?}: expected http(s)://host[:port][/path]"
                    )));
                }
                Some(u.trim_end_matches('/').to_string())
            }
        };
        let see_other_uri = self
            .websocket_see_other_uri
            .clone()
            .or_else(|| file.websocket_see_other_uri.clone());
        if let Some(u) = &see_other_uri {
            let ok = (u.starts_with("ws://") || u.starts_with("wss://"))
                && u.len() <= 1024
                && !u.bytes().any(|b| {
                    b.is_ascii_whitespace()
                        || b.is_ascii_control()
                        || matches!(b, b'\'' | b'"' | b'<' | b'>')
                });
            if !ok {
                return Err(ConfigError(format!(
                    "--websocket-see-other-uri {u:?}: expected a ws:// or wss:// URL"
                )));
            }
        }
        let c = HttpConfig {
            listen: addrs(&self.http_listen, &file.http_listen, 5280),
            tls_listen: addrs(&self.https_listen, &file.https_listen, 5443),
            max_request_line: pick(self.http_max_request_line, file.http_max_request_line, 8192),
            max_header_bytes: pick(
                self.http_max_header_bytes,
                file.http_max_header_bytes,
                16384,
            ),
            max_body: pick(self.http_max_body, file.http_max_body, 1 << 20),
            request_timeout: Duration::from_secs(pick(
                self.http_request_timeout,
                file.http_request_timeout,
                30,
            )),
            idle_timeout: Duration::from_secs(pick(
                self.http_idle_timeout,
                file.http_idle_timeout,
                60,
            )),
            cors,
            public_url,
            see_other_uri,
            bosh: {
                let d = super::bosh::Policy::default();
                super::bosh::Policy {
                    max_wait: pick(self.bosh_max_wait, file.bosh_max_wait, d.max_wait),
                    max_hold: pick(self.bosh_max_hold, file.bosh_max_hold, d.max_hold),
                    inactivity: pick(self.bosh_inactivity, file.bosh_inactivity, d.inactivity),
                    polling: pick(self.bosh_polling, file.bosh_polling, d.polling),
                    maxpause: pick(self.bosh_max_pause, file.bosh_max_pause, d.maxpause),
                }
            },
        };
        if !(256..=1 << 20).contains(&c.max_request_line) {
            return bad("--http-max-request-line must be between 256 and 1048576");
        }
        if !(1024..=1 << 20).contains(&c.max_header_bytes) {
            return bad("--http-max-header-bytes must be between 1024 and 1048576");
        }
        if c.max_header_bytes < c.max_request_line {
            return bad("--http-max-header-bytes must be at least --http-max-request-line");
        }
        if !(1024..=64 << 20).contains(&c.max_body) {
            return bad("--http-max-body must be between 1024 and 64 MiB");
        }
        if !(1..=3600).contains(&c.request_timeout.as_secs()) {
            return bad("--http-request-timeout must be between 1 and 3600 seconds");
        }
        if !(1..=3600).contains(&c.idle_timeout.as_secs()) {
            return bad("--http-idle-timeout must be between 1 and 3600 seconds");
        }
        let b = &c.bosh;
        if !(1..=3600).contains(&b.max_wait) {
            return bad("--bosh-max-wait must be between 1 and 3600 seconds");
        }
        if !(1..=16).contains(&b.max_hold) {
            return bad("--bosh-max-hold must be between 1 and 16");
        }
        if !(1..=86400).contains(&b.inactivity) || b.inactivity <= b.polling {
            return bad(
                "--bosh-inactivity must be between 1 and 86400 seconds and above --bosh-polling",
            );
        }
        if b.polling > 3600 {
            return bad("--bosh-polling must be at most 3600 seconds");
        }
        if b.maxpause > 86400 {
            return bad("--bosh-max-pause must be at most 86400 seconds");
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(flags: HttpArgs) -> Result<HttpConfig, ConfigError> {
        flags.resolve(&HttpArgs::default())
    }

    #[test]
    fn defaults_listen_on_loopback_5280_and_5443_with_any_origin() {
        let c = resolve(HttpArgs::default()).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:5280".parse().unwrap()]);
        assert_eq!(c.tls_listen, vec!["127.0.0.1:5443".parse().unwrap()]);
        assert_eq!(c.cors, Cors::Any);
        assert_eq!(c.max_body, 1 << 20);
    }

    #[test]
    fn no_http_turns_both_listeners_off() {
        let c = resolve(HttpArgs {
            no_http: true,
            http_listen: vec!["127.0.0.1:1".parse().unwrap()],
            ..HttpArgs::default()
        })
        .unwrap();
        assert!(c.listen.is_empty() && c.tls_listen.is_empty());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = HttpArgs {
            http_max_body: Some(5000),
            http_cors_origin: vec!["https://a.example".into()],
            ..HttpArgs::default()
        };
        let flags = HttpArgs {
            http_max_body: Some(9000),
            ..HttpArgs::default()
        };
        let c = flags.resolve(&file).unwrap();
        assert_eq!(c.max_body, 9000);
        assert_eq!(c.cors, Cors::Only(vec!["https://a.example".into()]));
    }

    #[test]
    fn bad_origins_and_bounds_are_refused() {
        for o in [
            "a.example",
            "https://a.example/",
            "https://a.example/x",
            "https://a b",
        ] {
            let r = resolve(HttpArgs {
                http_cors_origin: vec![o.into()],
                ..HttpArgs::default()
            });
            assert!(r.is_err(), "{o}");
        }
        assert!(resolve(HttpArgs {
            http_max_request_line: Some(100),
            ..HttpArgs::default()
        })
        .is_err());
        assert!(resolve(HttpArgs {
            http_max_request_line: Some(20000),
            ..HttpArgs::default()
        })
        .is_err());
        for u in ["example.com", "https://", "https://a b", "https://a/'x"] {
            let r = resolve(HttpArgs {
                public_http_url: Some(u.into()),
                ..HttpArgs::default()
            });
            assert!(r.is_err(), "{u}");
        }
        for u in ["https://x.example/ws", "wss://a b", "wss://x/'"] {
            let r = resolve(HttpArgs {
                websocket_see_other_uri: Some(u.into()),
                ..HttpArgs::default()
            });
            assert!(r.is_err(), "{u}");
        }
        let c = resolve(HttpArgs {
            public_http_url: Some("https://x.example/xmpp/".into()),
            ..HttpArgs::default()
        })
        .unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://x.example/xmpp"));
        assert!(resolve(HttpArgs {
            http_request_timeout: Some(0),
            ..HttpArgs::default()
        })
        .is_err());
    }
}
