//! Administrative commands: accounts, certificate generation, configuration checks. They open
//! the same LMDB environment as the server, so they work while it runs: `passwd`, `deluser`
//! and `disable` record a revocation in the transaction that changes the account, and every
//! shard of a running server ends the account's sessions at its next sweep (about a second;
//! issue 8).

use std::io::{BufRead, IsTerminal};
use std::path::Path;

pub mod import;

use crate::config::{Config, UserArgs};
use crate::stream::sasl::{self, HashAlg};
use crate::xmpp::jid::Jid;

/// An administrative command failed; the message is for the operator.
#[derive(Debug)]
pub struct AdminError(pub String);

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AdminError {}

fn err(msg: impl Into<String>) -> AdminError {
    AdminError(msg.into())
}

fn open(config: &Config) -> Result<xmppd_storage::Storage, AdminError> {
    xmppd_storage::Storage::open(&config.data_dir, &config.storage_options())
        .map_err(|e| err(format!("opening {}: {e}", config.data_dir.display())))
}

/// Parse a bare JID of a served domain.
fn account_jid(config: &Config, jid: &str) -> Result<Jid, AdminError> {
    let j = Jid::parse(jid).map_err(|e| err(format!("{jid:?} is not a valid JID: {e}")))?;
    if j.local().is_none() || j.resource().is_some() {
        return Err(err(format!("{jid:?} must be a bare JID like user@domain")));
    }
    if !config.serves(j.domain()) {
        return Err(err(format!(
            "{} is not a served domain (served: {}); pass --domain",
            j.domain(),
            config.domains.join(", ")
        )));
    }
    Ok(j)
}

/// Read a password: the first line of a file, of stdin, or a prompt (never argv).
fn read_password(args: &UserArgs, confirm: bool) -> Result<String, AdminError> {
    let pw = if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        text.lines().next().unwrap_or_default().to_string()
    } else if args.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| err(format!("reading stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let pw = rpassword::prompt_password("Password: ")
            .map_err(|e| err(format!("reading password: {e}")))?;
        if confirm {
            let again = rpassword::prompt_password("Again: ")
                .map_err(|e| err(format!("reading password: {e}")))?;
            if again != pw {
                return Err(err("the passwords differ"));
            }
        }
        pw
    };
    if pw.is_empty() {
        return Err(err("empty password"));
    }
    if pw.len() > 1024 {
        return Err(err("password longer than 1024 bytes"));
    }
    Ok(pw)
}

fn credentials(
    config: &Config,
    password: &str,
) -> (xmppd_storage::ScramKeys, xmppd_storage::ScramKeys) {
    let conv = |k: sasl::ScramKeys| xmppd_storage::ScramKeys {
        salt: k.salt,
        iterations: k.iterations,
        stored_key: k.stored_key,
        server_key: k.server_key,
    };
    (
        conv(sasl::new_keys(
            HashAlg::Sha1,
            password,
            config.scram_iterations,
        )),
        conv(sasl::new_keys(
            HashAlg::Sha256,
            password,
            config.scram_iterations,
        )),
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `xmppd adduser JID`
pub fn adduser(config: &Config, args: &UserArgs) -> Result<(), AdminError> {
    let jid = account_jid(config, &args.jid)?;
    let storage = open(config)?;
    if storage
        .accounts()
        .exists(jid.as_str())
        .map_err(|e| err(e.to_string()))?
    {
        return Err(err(format!("{jid} already exists")));
    }
    let password = read_password(args, true)?;
    let (sha1, sha256) = credentials(config, &password);
    let account = xmppd_storage::Account {
        sha1,
        sha256,
        created_unix: now_unix(),
        disabled: false,
    };
    storage
        .accounts()
        .create(jid.as_str(), &account)
        .map_err(|e| err(format!("creating {jid}: {e}")))?;
    storage.shutdown();
    println!("created {jid}");
    Ok(())
}

/// `xmppd passwd JID`
pub fn passwd(config: &Config, args: &UserArgs) -> Result<(), AdminError> {
    let jid = account_jid(config, &args.jid)?;
    let storage = open(config)?;
    if !storage
        .accounts()
        .exists(jid.as_str())
        .map_err(|e| err(e.to_string()))?
    {
        return Err(err(format!("{jid} does not exist")));
    }
    let password = read_password(args, true)?;
    let (sha1, sha256) = credentials(config, &password);
    // One transaction reads and writes the account (a concurrent disable is kept) and records
    // the revocation that ends the account's sessions on a running server.
    storage
        .accounts()
        .set_password(jid.as_str(), sha1, sha256)
        .map_err(|e| match e {
            xmppd_storage::StorageError::NotFound => err(format!("{jid} does not exist")),
            e => err(format!("updating {jid}: {e}")),
        })?;
    storage.shutdown();
    println!("password of {jid} changed; its sessions end");
    Ok(())
}

/// `xmppd deluser JID`
pub fn deluser(config: &Config, jid: &str) -> Result<(), AdminError> {
    let jid = account_jid(config, jid)?;
    let storage = open(config)?;
    storage
        .accounts()
        .delete(jid.as_str())
        .map_err(|e| match e {
            xmppd_storage::StorageError::NotFound => err(format!("{jid} does not exist")),
            e => err(format!("deleting {jid}: {e}")),
        })?;
    storage.shutdown();
    println!("deleted {jid}; its sessions end");
    Ok(())
}

/// `xmppd disable JID` / `xmppd enable JID`. Disabling records a revocation in the same
/// transaction, which ends the account's sessions on a running server; later logins fail with
/// SASL `account-disabled` (after the password was proven).
pub fn set_disabled(config: &Config, jid: &str, disabled: bool) -> Result<(), AdminError> {
    let jid = account_jid(config, jid)?;
    let storage = open(config)?;
    let changed = storage
        .accounts()
        .set_disabled(jid.as_str(), disabled)
        .map_err(|e| match e {
            xmppd_storage::StorageError::NotFound => err(format!("{jid} does not exist")),
            e => err(format!("updating {jid}: {e}")),
        })?;
    storage.shutdown();
    match (changed, disabled) {
        (true, true) => println!("disabled {jid}; its sessions end"),
        (true, false) => println!("enabled {jid}"),
        (false, true) => println!("{jid} was already disabled"),
        (false, false) => println!("{jid} was not disabled"),
    }
    Ok(())
}

/// `xmppd users`
pub fn users(config: &Config, domain: Option<&str>) -> Result<(), AdminError> {
    let storage = open(config)?;
    let list = match domain {
        Some(d) => storage.accounts().list_domain(d),
        None => storage.accounts().list(),
    }
    .map_err(|e| err(e.to_string()))?;
    for u in list {
        println!("{u}");
    }
    storage.shutdown();
    Ok(())
}

/// `xmppd gen-cert`
pub fn gen_cert(config: &Config, force: bool) -> Result<(), AdminError> {
    if !force && (config.cert.exists() || config.key.exists()) {
        return Err(err(format!(
            "{} or {} exists; pass --force to replace",
            config.cert.display(),
            config.key.display()
        )));
    }
    crate::tls::generate_self_signed(&config.domains, &config.cert, &config.key)
        .map_err(|e| err(e.to_string()))?;
    println!(
        "wrote {} and {} for {}",
        config.cert.display(),
        config.key.display(),
        config.domains.join(", ")
    );
    Ok(())
}

/// `xmppd check`: configuration, certificate and data directory.
pub fn check(config: &Config) -> Result<(), AdminError> {
    println!("domains: {}", config.domains.join(", "));
    println!("shards: {}", config.shards);
    check_dir(&config.data_dir)?;
    let storage = open(config)?;
    let version = storage.schema_version().map_err(|e| err(e.to_string()))?;
    let users = storage.accounts().list().map_err(|e| err(e.to_string()))?;
    let usage = storage.map_usage().map_err(|e| err(e.to_string()))?;
    storage.shutdown();
    println!(
        "data: {} (schema {version}, {} accounts)",
        config.data_dir.display(),
        users.len()
    );
    for line in map_report(
        &usage,
        config.lmdb_reserve_bytes(),
        config.lmdb_reserve_percent,
    ) {
        println!("{line}");
    }
    if config.generate_cert && !config.cert.exists() && !config.key.exists() {
        println!(
            "certificate: none yet; a self-signed one is generated at {} on first start",
            config.cert.display()
        );
    } else {
        let setup = crate::tls::TlsSetup::load(&config.cert, &config.key, false, &config.domains)
            .map_err(|e| err(format!("certificate: {e}")))?;
        println!(
            "certificate: {} (tls-server-end-point {})",
            config.cert.display(),
            if setup.server_end_point.is_some() {
                "available"
            } else {
                "undefined for its signature algorithm"
            }
        );
    }
    println!("ok");
    Ok(())
}

/// The `map:` line of `xmppd check` and its warnings: the LMDB map's fill (issue 8), against
/// the thresholds at which the server warns and the reserve under which it refuses offline
/// messages.
fn map_report(usage: &xmppd_storage::MapUsage, reserve: u64, reserve_percent: u8) -> Vec<String> {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20));
    let mut lines = vec![format!(
        "map: {} of {} used ({}%), high-water mark {} ({}%); offline messages are refused \
         under {reserve_percent}% free",
        mib(usage.used_bytes),
        mib(usage.map_bytes),
        usage.percent_used(),
        mib(usage.high_water_bytes),
        usage.percent_high_water(),
    )];
    if usage.free_bytes() < reserve {
        lines.push(format!(
            "warning: the LMDB map is {}% full, down to its reserve: offline messages are being \
             refused; raise --lmdb-map-size-mib",
            usage.percent_used()
        ));
    } else if usage.warning_level().is_some() {
        lines.push(format!(
            "warning: the LMDB map is {}% full; raise --lmdb-map-size-mib before it reaches \
             its reserve",
            usage.percent_used()
        ));
    } else if usage.percent_high_water() >= xmppd_storage::FILL_WARNINGS[2] {
        lines.push(format!(
            "warning: the LMDB file reached {}% of the map (pages are free, but large values \
             need contiguous ones); raise --lmdb-map-size-mib",
            usage.percent_high_water()
        ));
    }
    lines
}

fn check_dir(dir: &Path) -> Result<(), AdminError> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"x")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| err(format!("{} is not writable: {e}", dir.display())))
}

/// `xmppd shard-of --shards N JID...`
pub fn shard_of(shards: usize, jids: &[String]) -> Result<(), AdminError> {
    if shards == 0 {
        return Err(err("--shards must be at least 1"));
    }
    for j in jids {
        let jid = Jid::parse(j).map_err(|e| err(format!("{j:?}: {e}")))?;
        println!(
            "{} {}",
            jid.bare_str(),
            crate::shard::shard_of(jid.bare_str(), shards)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_report_warns_as_the_map_fills_issue_8b() {
        let usage = |used: u64, high_water: u64| xmppd_storage::MapUsage {
            used_bytes: used << 20,
            high_water_bytes: high_water << 20,
            map_bytes: 100 << 20,
        };
        let reserve = 10 << 20;
        let calm = map_report(&usage(50, 60), reserve, 10);
        assert_eq!(
            calm,
            [
                "map: 50.0 MiB of 100.0 MiB used (50%), high-water mark 60.0 MiB (60%); offline \
              messages are refused under 10% free"
            ]
        );
        let filling = map_report(&usage(85, 85), reserve, 10);
        assert!(
            filling[1].starts_with("warning: the LMDB map is 85% full;"),
            "{filling:?}"
        );
        let reserve_hit = map_report(&usage(95, 95), reserve, 10);
        assert!(reserve_hit[1].contains("offline messages are being refused"));
        let fragmented = map_report(&usage(40, 97), reserve, 10);
        assert!(
            fragmented[1].contains("reached 97% of the map"),
            "{fragmented:?}"
        );
    }
}
