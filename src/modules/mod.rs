//! Protocol modules, one file per specification. Each has a `register` function that declares
//! its handlers and features; `main.rs` lists them.

pub mod csi;
pub mod disco;
pub mod im;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod privacy;
pub mod session;
pub mod vcard;
pub mod version;

use serde::Deserialize;

use crate::config::ConfigError;

/// Every module's flags: each module owns a clap group (flattened into the server's flags)
/// and a table in the configuration file (`[modules.<name>]`, keys named like the flags).
/// Adding a module with settings is one field here.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleArgs {
    /// RFC 6121 rosters and subscriptions.
    #[command(flatten)]
    #[serde(default)]
    pub roster: im::RosterArgs,
    /// XEP-0160 offline storage.
    #[command(flatten)]
    #[serde(default)]
    pub offline: offline::OfflineArgs,
    /// XEP-0054 vCards.
    #[command(flatten)]
    #[serde(default)]
    pub vcard: vcard::VcardArgs,
    /// XEP-0016 privacy lists and XEP-0191 blocking.
    #[command(flatten)]
    #[serde(default)]
    pub privacy: privacy::PrivacyArgs,
    /// XEP-0045 multi-user chat.
    #[command(flatten)]
    #[serde(default)]
    pub muc: muc::MucArgs,
    /// XEP-0049 private XML storage (and PEP, XEP-0163).
    #[command(flatten)]
    #[serde(default)]
    pub pep: pep::PepArgs,
}

/// Every module's resolved settings.
#[derive(Debug, Clone)]
pub struct ModuleConfig {
    /// RFC 6121.
    pub roster: im::RosterConfig,
    /// XEP-0160.
    pub offline: offline::OfflineConfig,
    /// XEP-0054.
    pub vcard: vcard::VcardConfig,
    /// XEP-0016/0191.
    pub privacy: privacy::PrivacyConfig,
    /// XEP-0045.
    pub muc: muc::MucConfig,
    /// XEP-0049 (and XEP-0163).
    pub pep: pep::PepConfig,
}

impl ModuleArgs {
    /// Flags over the file's tables over defaults, with each module's bounds checked.
    /// `max_stanza_size` is the server's routed stanza limit.
    pub fn resolve(
        &self,
        file: &ModuleArgs,
        max_stanza_size: usize,
    ) -> Result<ModuleConfig, ConfigError> {
        Ok(ModuleConfig {
            roster: self.roster.resolve(&file.roster)?,
            offline: self.offline.resolve(&file.offline, max_stanza_size)?,
            vcard: self.vcard.resolve(&file.vcard, max_stanza_size)?,
            privacy: self.privacy.resolve(&file.privacy)?,
            muc: self.muc.resolve(&file.muc)?,
            pep: self.pep.resolve(&file.pep, max_stanza_size)?,
        })
    }
}
