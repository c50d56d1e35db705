//! Personal data an account keeps on the server: XEP-0049 private XML storage
//! ([`private`]); PEP (XEP-0163) on a pubsub core follows in this module.

pub mod config;
pub mod private;
pub mod wire;

use crate::config::{pick, Config, ConfigError};
use crate::core::{Registry, Scope};
use crate::xmpp::stanza::IqType;

use private::NS_PRIVATE;

/// The module's flags (`[modules.pep]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PepArgs {
    /// Largest private XML fragment (one namespace's elements, XEP-0049) in bytes
    /// [default: 65536, or less to fit --max-stanza-size]; beyond it `not-acceptable`.
    #[arg(long)]
    pub private_max_bytes: Option<usize>,
    /// Most namespaces of private XML per account [default: 64]; beyond it
    /// `resource-constraint`. At most 10000.
    #[arg(long)]
    pub private_max_namespaces: Option<usize>,
}

/// The module's resolved settings.
#[derive(Debug, Clone)]
pub struct PepConfig {
    /// XEP-0049 bounds.
    pub private: private::Bounds,
}

impl PepArgs {
    /// Flag over the file over the default, with bounds (`max_stanza_size`: the routed limit).
    pub fn resolve(
        &self,
        file: &PepArgs,
        max_stanza_size: usize,
    ) -> Result<PepConfig, ConfigError> {
        let room = max_stanza_size.saturating_sub(1024);
        let c = PepConfig {
            private: private::Bounds {
                max_bytes: pick(
                    self.private_max_bytes,
                    file.private_max_bytes,
                    (64 * 1024).min(room),
                ),
                max_namespaces: pick(self.private_max_namespaces, file.private_max_namespaces, 64),
            },
        };
        if c.private.max_bytes == 0 || c.private.max_bytes > room {
            return Err(ConfigError(
                "--private-max-bytes must be positive and leave 1024 bytes under --max-stanza-size"
                    .into(),
            ));
        }
        if !(1..=10_000).contains(&c.private.max_namespaces) {
            return Err(ConfigError(
                "--private-max-namespaces must be between 1 and 10000".into(),
            ));
        }
        Ok(c)
    }
}

/// Register private XML storage.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("pep");
    r.server_feature(NS_PRIVATE);
    let bounds = config.modules.pep.private;
    // Addressed to the account (no `to`, or one's own bare JID); someone else's gets
    // `forbidden` from the handler.
    r.iq(
        Scope::Account,
        IqType::Get,
        NS_PRIVATE,
        "query",
        private::get,
    );
    r.iq(
        Scope::Account,
        IqType::Set,
        NS_PRIVATE,
        "query",
        move |ctx, req| private::set(ctx, req, bounds),
    );
}
