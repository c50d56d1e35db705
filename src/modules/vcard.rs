//! XEP-0054: vcard-temp — an account's vCard, stored whole as opaque bytes.

use crate::config::{pick, Config, ConfigError};
use crate::core::{storage_failure, IqReply, Registry, Scope};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::ns;
use crate::xmpp::stanza::IqType;

/// The vcard-temp namespace.
pub const NS_VCARD: &str = "vcard-temp";

/// XEP-0054's flags (`[modules.vcard]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcardArgs {
    /// Largest stored vCard in bytes [default: 131072, or less to fit --max-stanza-size].
    #[arg(long)]
    pub max_vcard_size: Option<usize>,
}

/// XEP-0054's resolved settings.
#[derive(Debug, Clone)]
pub struct VcardConfig {
    /// Largest vCard in bytes.
    pub max_vcard_size: usize,
}

impl VcardArgs {
    /// Flag over the file over the default, with bounds (`max_stanza_size`: the routed limit).
    pub fn resolve(
        &self,
        file: &VcardArgs,
        max_stanza_size: usize,
    ) -> Result<VcardConfig, ConfigError> {
        let c = VcardConfig {
            max_vcard_size: pick(
                self.max_vcard_size,
                file.max_vcard_size,
                (128 * 1024).min(max_stanza_size.saturating_sub(1024)),
            ),
        };
        if c.max_vcard_size + 1024 > max_stanza_size {
            return Err(ConfigError(
                "--max-vcard-size must leave 1024 bytes under --max-stanza-size".into(),
            ));
        }
        Ok(c)
    }
}

/// Register vCard get and set.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("vcard-temp");
    r.server_feature(NS_VCARD);
    r.account_feature(NS_VCARD);
    let max = config.modules.vcard.max_vcard_size;
    r.iq(
        Scope::Account,
        IqType::Get,
        NS_VCARD,
        "vCard",
        |ctx, req| {
            let user = req.to.bare_str();
            let stored = match ctx.storage().vcards().get(user) {
                Ok(v) => v,
                Err(e) => return IqReply::Error(storage_failure("reading a vCard", user, &e)),
            };
            let limits = ctx.config().xml_limits();
            let card = stored.and_then(|bytes| {
                xml::parse_element(&bytes, &StreamNs::new(ns::CLIENT), &limits).ok()
            });
            match card {
                // VCARD-03/05/07: exactly what was stored.
                Some(card) => IqReply::Result(Some(card)),
                // VCARD-02: one's own missing vCard is empty.
                None if req.own() => IqReply::Result(Some(Element::new("vCard", NS_VCARD))),
                // VCARD-06: no vCard and no account look the same.
                None => IqReply::Error(StanzaError::new(StanzaCondition::ServiceUnavailable)),
            }
        },
    );
    r.iq(
        Scope::Account,
        IqType::Set,
        NS_VCARD,
        "vCard",
        move |ctx, req| {
            // VCARD-04
            if !req.own() {
                return IqReply::Error(StanzaError::with_text(
                    StanzaCondition::Forbidden,
                    "only the owner sets a vCard",
                ));
            }
            let mut bytes = Vec::new();
            req.payload.write_to(&mut bytes, "");
            if bytes.len() > max {
                return IqReply::Error(StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    format!("vCard larger than {max} bytes"),
                ));
            }
            let user = req.from.bare_str().to_string();
            let owner = user.clone();
            let done = ctx
                .storage()
                .submit(move |txn| txn.put_vcard(&user, &bytes));
            IqReply::Later(Box::pin(async move {
                match done.await {
                    // Durable before the result (issue: "nothing acknowledged is lost").
                    Ok(()) => IqReply::Result(None),
                    Err(e) => IqReply::Error(storage_failure("storing a vCard", &owner, &e)),
                }
            }))
        },
    );
}
