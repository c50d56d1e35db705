//! XEP-0016 privacy lists and XEP-0191 blocking.

pub mod list;

use crate::config::{pick, ConfigError};

/// XEP-0016/0191 flags (`[modules.privacy]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyArgs {
    /// Most privacy lists one account keeps [default: 16].
    #[arg(long)]
    pub max_privacy_lists: Option<usize>,
    /// Most rules in one privacy list, not counting blocklist entries [default: 250].
    #[arg(long)]
    pub max_privacy_items: Option<usize>,
    /// Most blocked JIDs (XEP-0191 blocklist entries of the default list) [default: 1000].
    #[arg(long)]
    pub max_blocklist_items: Option<usize>,
}

/// XEP-0016/0191 resolved settings.
#[derive(Debug, Clone)]
pub struct PrivacyConfig {
    /// Most lists per account.
    pub max_lists: usize,
    /// Most rules per list (blocklist entries not counted).
    pub max_items: usize,
    /// Most blocklist entries.
    pub max_blocked: usize,
}

impl PrivacyArgs {
    /// Flags over the file over defaults, with bounds.
    pub fn resolve(&self, file: &PrivacyArgs) -> Result<PrivacyConfig, ConfigError> {
        let c = PrivacyConfig {
            max_lists: pick(self.max_privacy_lists, file.max_privacy_lists, 16),
            max_items: pick(self.max_privacy_items, file.max_privacy_items, 250),
            max_blocked: pick(self.max_blocklist_items, file.max_blocklist_items, 1000),
        };
        if c.max_lists == 0 || c.max_items == 0 || c.max_blocked == 0 {
            return Err(ConfigError(
                "--max-privacy-lists, --max-privacy-items and --max-blocklist-items must be at \
                 least 1"
                    .into(),
            ));
        }
        Ok(c)
    }
}
