//! Typed configuration: command-line flags, an optional TOML file, and embedded defaults, with
//! every default and bound in one place. Flags win over the file; the file wins over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// Default `--io-uring-depth`: the smallest depth at which the kernel gives a ring its largest
/// cancellation hash (see the flag).
pub const DEFAULT_IO_URING_DEPTH: usize = 4096;

/// What happens when a client binds a resource another session of the same account holds
/// (RFC 6120 §7.7.2.2, CORE-BIND-06).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The newer session wins; the older one gets a `<conflict/>` stream error.
    KickOld,
    /// The bind is refused with a `<conflict/>` stanza error; the older session stays.
    Refuse,
    /// The newer session gets a server-modified resource.
    Rename,
}

/// When XEP-0078 non-SASL authentication (`jabber:iq:auth`) is offered (IQAUTH-01, -09, -11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IqAuthMode {
    /// Never: `jabber:iq:auth` requests get `service-unavailable` (IQAUTH-09).
    Off,
    /// On encrypted streams only (after STARTTLS, or on the direct-TLS port).
    Tls,
    /// On every stream, unencrypted ones included: the password crosses the network in the
    /// clear (legacy LANs and tests only).
    On,
}

/// Command line.
///
/// The options of every command ([`CommonArgs`]) are global: they may come before or after the
/// subcommand (`xmppd --data-dir D adduser JID`, `xmppd adduser JID --data-dir D`). The
/// server's own options ([`ServeArgs`]) come without a subcommand (`xmppd --shards 2` runs the
/// server) or after `serve`; before a subcommand they are refused rather than ignored. clap's
/// `args_conflicts_with_subcommands` cannot say this (it refuses global options too), so
/// [`RawCli`] is parsed and checked by hand.
#[derive(Debug)]
pub struct Cli {
    /// What to do (default: serve).
    pub command: Option<Command>,
    /// Options shared by every command.
    pub common: CommonArgs,
    /// Server options (also accepted without the `serve` subcommand).
    pub serve: ServeArgs,
}

/// What clap parses into a [`Cli`].
#[derive(Debug, Parser)]
#[command(name = "xmppd", version, about = "A thread-per-core XMPP server")]
struct RawCli {
    /// What to do (default: serve).
    #[command(subcommand)]
    command: Option<Command>,
    /// Options shared by every command.
    #[command(flatten)]
    common: CommonArgs,
    /// Server options (also accepted without the `serve` subcommand).
    #[command(flatten)]
    serve: ServeArgs,
}

impl Parser for Cli {}

impl CommandFactory for Cli {
    fn command() -> clap::Command {
        RawCli::command()
    }

    fn command_for_update() -> clap::Command {
        RawCli::command_for_update()
    }
}

impl FromArgMatches for Cli {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Cli, clap::Error> {
        Cli::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Cli, clap::Error> {
        check_serve_flags(matches)?;
        let raw = RawCli::from_arg_matches_mut(matches)?;
        Ok(Cli {
            command: raw.command,
            common: raw.common,
            serve: raw.serve,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        check_serve_flags(matches)?;
        let mut raw = RawCli {
            command: self.command.take(),
            common: std::mem::take(&mut self.common),
            serve: std::mem::take(&mut self.serve),
        };
        let result = raw.update_from_arg_matches(matches);
        (self.command, self.common, self.serve) = (raw.command, raw.common, raw.serve);
        result
    }
}

/// Refuses a server option given on the command line before a subcommand (where it would be
/// ignored: a subcommand other than `serve` does not run the server, and `serve` has its own).
fn check_serve_flags(matches: &ArgMatches) -> Result<(), clap::Error> {
    let Some((subcommand, _)) = matches.subcommand() else {
        return Ok(());
    };
    let serve = ServeArgs::augment_args(clap::Command::new("serve"));
    let given = serve
        .get_arguments()
        .find(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine));
    match given {
        Some(arg) => Err(clap::Error::raw(
            ErrorKind::ArgumentConflict,
            format!(
                "the server option '--{}' cannot come before the subcommand '{subcommand}': \
                 give it after 'serve', or give no subcommand",
                arg.get_long().unwrap_or_default()
            ),
        )),
        None => Ok(()),
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Create an account. The password comes from a prompt, `--password-file` or `--password-stdin`.
    Adduser(UserArgs),
    /// Change an account's password. A running server ends the account's sessions within
    /// about a second (`not-authorized`).
    Passwd(UserArgs),
    /// Delete an account with its roster, offline messages and vCard. A running server ends
    /// its sessions within about a second (`not-authorized`).
    Deluser {
        /// The account's bare JID, e.g. alice@localhost.
        jid: String,
    },
    /// Disable an account: it keeps its data but cannot log in (SASL `account-disabled`). A
    /// running server ends its sessions within about a second (`not-authorized`).
    Disable {
        /// The account's bare JID, e.g. alice@localhost.
        jid: String,
    },
    /// Enable a disabled account.
    Enable {
        /// The account's bare JID, e.g. alice@localhost.
        jid: String,
    },
    /// List accounts.
    Users {
        /// Only accounts of this domain.
        #[arg(long)]
        only_domain: Option<String>,
    },
    /// Validate the configuration, the TLS certificate and the data directory, then exit.
    Check,
    /// Generate a self-signed certificate for the served domains into the data directory.
    GenCert {
        /// Replace an existing certificate.
        #[arg(long)]
        force: bool,
    },
    /// Create accounts with their rosters (and vCards, privacy lists) in bulk from a file.
    ///
    /// Formats: XEP-0227 (`<server-data xmlns='urn:xmpp:pie:0'>`, users with a plaintext
    /// `password`, `jabber:iq:roster` items with groups, a `vcard-temp` vCard, a
    /// `jabber:iq:privacy` query with `<list/>`s and `<default name=''/>` (`<active/>` is
    /// ignored; empty lists are skipped with a warning; a default list named
    /// `urn:xmpp:blocking` is the XEP-0191 blocklist); offline messages and other elements
    /// are skipped and counted) or a list, one user per line:
    /// `user@domain password [contact@domain,contact2@domain]` (the contacts get subscription
    /// both; `#` comments and blank lines are ignored; a password cannot contain spaces).
    ///
    /// The whole file is validated before anything is written; an error names `file:line`.
    /// Privacy lists are checked as a `jabber:iq:privacy` set would check them (syntax, group
    /// items naming a group of the user's roster in the file, the default one of the lists)
    /// and against the bounds of the configuration file's `[modules.privacy]`
    /// (max_privacy_lists, max_privacy_items, max_blocklist_items); an error names the user
    /// and the list.
    /// An account that already exists is an error unless --skip-existing or --replace is given.
    /// Writes are durable when the command returns. Works while the server runs; --replace
    /// gives an existing account new credentials, which ends its sessions on a running server
    /// (`not-authorized`), and the user sees the replaced roster at the next login.
    Import(ImportArgs),
    /// Print the home shard of each bare JID for a given shard count.
    ShardOf {
        /// Shard count to compute for.
        #[arg(long)]
        shards: usize,
        /// Bare JIDs.
        jids: Vec<String>,
    },
}

/// Arguments of the account commands that take a password.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The account's bare JID, e.g. alice@localhost.
    pub jid: String,
    /// Read the password from the first line of this file.
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// The file format of `xmppd import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// XEP-0227 Portable Import/Export XML (`urn:xmpp:pie:0`).
    Xep0227,
    /// One user per line: `user@domain password [contact@domain,...]`.
    List,
}

/// Arguments of `xmppd import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import.
    pub file: PathBuf,
    /// The file format [default: xep0227 if the file starts with `<`, else list].
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Leave accounts that already exist untouched (their roster, vCard and privacy lists
    /// too) and import the others.
    #[arg(long, conflicts_with = "replace")]
    pub skip_existing: bool,
    /// Replace accounts that already exist: new credentials, the file's roster items instead
    /// of theirs, the file's vCard if it has one, and the file's privacy lists and default
    /// instead of theirs if it has a privacy element for the user.
    #[arg(long)]
    pub replace: bool,
    /// Threads deriving SCRAM keys (PBKDF2) [default: available cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// FOR LOAD TESTS ONLY: users with equal passwords share one salt and the same stored
    /// keys, so keys are derived once per distinct password. Weakens stored credentials.
    #[arg(long)]
    pub shared_salt: bool,
}

/// Options every command needs.
#[derive(Debug, Args, Default)]
pub struct CommonArgs {
    /// TOML configuration file; keys are the long flag names with `-` replaced by `_` (the
    /// list of domains is `domains`).
    #[arg(long, global = true, env = "XMPPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (accounts, TLS certificate) [default: ./data].
    #[arg(long, global = true, env = "XMPPD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A served domain; repeat for several [default: localhost].
    #[arg(long = "domain", global = true)]
    pub domains: Vec<String>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `xmppd=debug`) [default: info].
    #[arg(long, global = true, env = "XMPPD_LOG")]
    pub log: Option<String>,
    /// LMDB map size in MiB (the most the data can grow to) [default: 1024].
    #[arg(long, global = true)]
    pub lmdb_map_size_mib: Option<usize>,
    /// Percent of the LMDB map kept for essential writes (accounts, rosters): offline
    /// messages are refused with `resource-constraint` once less than this is free
    /// (1 to 50) [default: 10].
    #[arg(long, global = true)]
    pub lmdb_reserve_percent: Option<u8>,
    /// PBKDF2 iteration count for newly stored SCRAM credentials (min 4096) [default: 4096].
    #[arg(long, global = true)]
    pub scram_iterations: Option<u32>,
}

/// Options of `serve`. Every field is optional so that "not given" can fall back to the file.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Client-to-server listen address (STARTTLS); repeat for several [default: 127.0.0.1:5222].
    #[arg(long = "c2s-listen")]
    pub c2s_listen: Vec<SocketAddr>,
    /// Direct-TLS (XEP-0368) client listen address; repeat for several [default: 127.0.0.1:5223].
    #[arg(long = "c2s-tls-listen")]
    pub c2s_tls_listen: Vec<SocketAddr>,
    /// Disable the direct-TLS client listener.
    #[arg(long)]
    pub no_c2s_tls: bool,
    /// PEM certificate chain [default: <data-dir>/tls/cert.pem, generated on first start].
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// PEM private key [default: <data-dir>/tls/key.pem].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Number of shards (executor threads) [default: one per available core].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Pin shard N to CPU N.
    #[arg(long)]
    pub pin: bool,
    /// Allow authentication without TLS (SCRAM only; for loopback benchmarks).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Also allow SASL PLAIN without TLS (implies --allow-plaintext; never on a network).
    #[arg(long)]
    pub allow_plain_without_tls: bool,
    /// Largest stanza in bytes (>= 10000) [default: 262144].
    #[arg(long)]
    pub max_stanza_size: Option<usize>,
    /// Deepest element nesting in a stanza [default: 32].
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Most attributes on one element [default: 64].
    #[arg(long)]
    pub max_attrs: Option<usize>,
    /// Seconds a connection may take to authenticate and bind [default: 30].
    #[arg(long)]
    pub auth_timeout: Option<u64>,
    /// Seconds of silence after which the server pings a client (0 = never) [default: 240].
    #[arg(long)]
    pub keepalive_interval: Option<u64>,
    /// Seconds to wait for any data after a keepalive ping before closing [default: 60].
    #[arg(long)]
    pub keepalive_timeout: Option<u64>,
    /// SASL failures allowed on one stream before it is closed [default: 3].
    #[arg(long)]
    pub max_auth_failures: Option<u32>,
    /// Largest element before authentication, in bytes (SASL needs a few KiB)
    /// [default: 8192].
    #[arg(long)]
    pub max_preauth_stanza_size: Option<usize>,
    /// Connections from one address (IPv4, or IPv6 /64) that may be authenticating at once
    /// (0 = unlimited) [default: 16].
    #[arg(long)]
    pub max_unauth_per_ip: Option<u32>,
    /// New connections per second from one address, sustained (0 = unlimited) [default: 10].
    #[arg(long)]
    pub conn_rate_per_ip: Option<u32>,
    /// New connections from one address in a burst [default: 20].
    #[arg(long)]
    pub conn_burst_per_ip: Option<u32>,
    /// Failed logins from one address before each further attempt must wait (1 s, doubling)
    /// [default: 5].
    #[arg(long)]
    pub auth_failures_per_ip: Option<u32>,
    /// Seconds after which an address's failed logins are forgotten [default: 600].
    #[arg(long)]
    pub auth_failure_window: Option<u64>,
    /// Longest wait, in seconds, between login attempts from an address under backoff
    /// [default: 30].
    #[arg(long)]
    pub auth_backoff_max: Option<u64>,
    /// Do not apply the per-address limits to loopback addresses (for local load tests).
    #[arg(long)]
    pub exempt_loopback: bool,
    /// Resources one account may bind at once [default: 16].
    #[arg(long)]
    pub max_resources: Option<usize>,
    /// Resource conflict policy [default: kick-old].
    #[arg(long, value_enum)]
    pub resource_conflict: Option<ConflictPolicy>,
    /// Do not add XEP-0086 legacy `code` attributes to stanza errors (XEP-0078 errors keep
    /// theirs).
    #[arg(long)]
    pub no_legacy_error_codes: bool,
    /// XEP-0078 non-SASL authentication: `off`, `tls` (encrypted streams only) or `on` (also
    /// unencrypted streams: passwords in the clear) [default: tls].
    #[arg(long, value_enum)]
    pub iq_auth: Option<IqAuthMode>,
    /// Unsent bytes queued for one client: stanzas from other users beyond it are bounced
    /// with `resource-constraint` (its own traffic may reach 4x this) [default: 1048576].
    #[arg(long)]
    pub max_send_queue: Option<usize>,
    /// Seconds a client may stay over --max-send-queue writing nothing before it is
    /// disconnected [default: 10].
    #[arg(long)]
    pub slow_client_grace: Option<u64>,
    /// Cross-shard channel capacity in batches per shard [default: 1024].
    #[arg(long)]
    pub shard_queue: Option<usize>,
    /// Cross-shard bound per destination shard, in bytes [default: 4194304]: a shard sends
    /// to another at most this much not yet delivered, and connections whose stanzas wait
    /// beyond it for that shard stop being read. Between 65536 and 1073741824.
    #[arg(long)]
    pub shard_queue_bytes: Option<usize>,
    /// Microseconds an idle shard keeps polling before it sleeps in the kernel [default: 0].
    /// Spinning trades CPU for latency at low load: a sleeping CPU (above all a virtual one)
    /// can take a millisecond to wake. 0 sleeps at once; at most 10000.
    #[arg(long)]
    pub spin_before_park_us: Option<u64>,
    /// io_uring submission queue depth of each shard [default: 4096].
    ///
    /// The kernel sizes a ring's cancellation hash from it (2^(log2(2 x depth) - 5) buckets,
    /// at most 256, reached at 4096), and every connection's pending read poll sits in that
    /// hash. The runtime cancels and re-arms a timer on every loop turn, and each cancel walks
    /// one bucket: at depth 128 (8 buckets) that walk grows with the connection count. At
    /// 4096 it stays short; the rings cost about 1.4 MiB more per shard.
    #[arg(long)]
    pub io_uring_depth: Option<usize>,
    /// Most simultaneous client connections per process (0 = derived from the open-files limit).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR/metrics (docs/METRICS.md); keep it on loopback
    /// or a private network [default: off].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// The HTTP listener's flags (`http::HttpArgs`).
    #[command(flatten)]
    pub http: crate::http::HttpArgs,
    /// The XEP-0114 component listener's flags (`component::ComponentArgs`).
    #[command(flatten)]
    pub components: crate::component::ComponentArgs,
    /// Federation's flags (`s2s::S2sArgs`).
    #[command(flatten)]
    pub s2s: crate::s2s::S2sArgs,
    /// Every protocol module's own flags (`modules::ModuleArgs`).
    #[command(flatten)]
    pub modules: crate::modules::ModuleArgs,
    /// Seconds to wait for clients to receive `system-shutdown` before exiting [default: 3].
    #[arg(long)]
    pub shutdown_grace: Option<u64>,
    /// Exit when standard input reaches end of file (for supervisors and test harnesses).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// The configuration file: the same names as the flags, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    domains: Option<Vec<String>>,
    log: Option<String>,
    lmdb_map_size_mib: Option<usize>,
    lmdb_reserve_percent: Option<u8>,
    scram_iterations: Option<u32>,
    c2s_listen: Option<Vec<SocketAddr>>,
    c2s_tls_listen: Option<Vec<SocketAddr>>,
    no_c2s_tls: Option<bool>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    shards: Option<usize>,
    pin: Option<bool>,
    allow_plaintext: Option<bool>,
    allow_plain_without_tls: Option<bool>,
    max_stanza_size: Option<usize>,
    max_depth: Option<usize>,
    max_attrs: Option<usize>,
    auth_timeout: Option<u64>,
    keepalive_interval: Option<u64>,
    keepalive_timeout: Option<u64>,
    max_auth_failures: Option<u32>,
    max_preauth_stanza_size: Option<usize>,
    max_unauth_per_ip: Option<u32>,
    conn_rate_per_ip: Option<u32>,
    conn_burst_per_ip: Option<u32>,
    auth_failures_per_ip: Option<u32>,
    auth_failure_window: Option<u64>,
    auth_backoff_max: Option<u64>,
    exempt_loopback: Option<bool>,
    max_resources: Option<usize>,
    resource_conflict: Option<ConflictPolicy>,
    no_legacy_error_codes: Option<bool>,
    iq_auth: Option<IqAuthMode>,
    max_send_queue: Option<usize>,
    slow_client_grace: Option<u64>,
    shard_queue: Option<usize>,
    shard_queue_bytes: Option<usize>,
    spin_before_park_us: Option<u64>,
    io_uring_depth: Option<usize>,
    max_connections: Option<usize>,
    shutdown_grace: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    /// The HTTP listener's table: `[http]`.
    #[serde(default)]
    http: crate::http::HttpArgs,
    /// The component listener's table: `[components]`, secrets in `[components.secrets]`.
    #[serde(default)]
    components: crate::component::ComponentArgs,
    /// Federation's table: `[s2s]`, static routes in `[s2s.routes]`.
    #[serde(default)]
    s2s: crate::s2s::S2sArgs,
    /// The modules' tables: `[modules.roster]`, `[modules.offline]`, ...
    #[serde(default)]
    modules: crate::modules::ModuleArgs,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Served domains, normalized (lowercase); the first is the primary.
    pub domains: Vec<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log filter.
    pub log: String,
    /// LMDB map size in bytes.
    pub lmdb_map_size: usize,
    /// Percent of the map kept free for essential writes.
    pub lmdb_reserve_percent: u8,
    /// PBKDF2 iterations for new credentials.
    pub scram_iterations: u32,
    /// STARTTLS client listeners.
    pub c2s_listen: Vec<SocketAddr>,
    /// Direct-TLS client listeners.
    pub c2s_tls_listen: Vec<SocketAddr>,
    /// Certificate chain path.
    pub cert: PathBuf,
    /// Private key path.
    pub key: PathBuf,
    /// True when the certificate paths are the generated defaults (generate when missing).
    pub generate_cert: bool,
    /// Shard count.
    pub shards: usize,
    /// Pin shards to CPUs.
    pub pin: bool,
    /// TLS is required before authentication.
    pub require_tls: bool,
    /// PLAIN is allowed without TLS.
    pub plain_without_tls: bool,
    /// XML limits.
    pub max_stanza_size: usize,
    /// Deepest nesting.
    pub max_depth: usize,
    /// Most attributes per element.
    pub max_attrs: usize,
    /// Time to authenticate and bind.
    pub auth_timeout: Duration,
    /// Silence before a keepalive ping (None = never).
    pub keepalive_interval: Option<Duration>,
    /// Wait after the ping.
    pub keepalive_timeout: Duration,
    /// SASL failures per stream.
    pub max_auth_failures: u32,
    /// Largest element before authentication.
    pub max_preauth_stanza_size: usize,
    /// Unauthenticated connections per address (0: unlimited).
    pub max_unauth_per_ip: u32,
    /// New connections per second per address (0: unlimited).
    pub conn_rate_per_ip: u32,
    /// Connection burst per address.
    pub conn_burst_per_ip: u32,
    /// Failed logins per address before backoff.
    pub auth_failures_per_ip: u32,
    /// How long failed logins are remembered.
    pub auth_failure_window: Duration,
    /// Longest backoff between login attempts.
    pub auth_backoff_max: Duration,
    /// Loopback addresses are exempt from the per-address limits.
    pub exempt_loopback: bool,
    /// Resources per account.
    pub max_resources: usize,
    /// Resource conflict policy.
    pub resource_conflict: ConflictPolicy,
    /// Add XEP-0086 codes to stanza errors.
    pub legacy_error_codes: bool,
    /// When XEP-0078 non-SASL authentication is offered.
    pub iq_auth: IqAuthMode,
    /// Per-connection send queue soft bound in bytes.
    pub max_send_queue: usize,
    /// How long a client may stay over the soft bound.
    pub slow_client_grace: Duration,
    /// Cross-shard channel capacity.
    pub shard_queue: usize,
    /// Cross-shard byte bound per destination.
    pub shard_queue_bytes: usize,
    /// How long an idle shard polls before sleeping (None: sleep at once).
    pub spin_before_park: Option<Duration>,
    /// io_uring queue depth of each shard.
    pub io_uring_depth: usize,
    /// Connection limit per process.
    pub max_connections: usize,
    /// The metrics listener, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// The HTTP listener's settings.
    pub http: crate::http::HttpConfig,
    /// XEP-0114 components.
    pub components: crate::component::ComponentConfig,
    /// Federation.
    pub s2s: crate::s2s::S2sConfig,
    /// Every module's resolved settings.
    pub modules: crate::modules::ModuleConfig,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Exit when stdin closes.
    pub exit_on_stdin_eof: bool,
}

/// A configuration problem, reported before anything starts.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A flag, else the file's value, else the default.
pub(crate) fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

fn pick_vec<T>(flag: Vec<T>, file: Option<Vec<T>>, default: Vec<T>) -> Vec<T> {
    if !flag.is_empty() {
        flag
    } else {
        file.unwrap_or(default)
    }
}

fn flag(set: bool, file: Option<bool>) -> bool {
    set || file.unwrap_or(false)
}

impl Config {
    /// Resolve flags, the optional file and defaults; check bounds.
    pub fn resolve(common: &CommonArgs, serve: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &common.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = pick(
            common.data_dir.clone(),
            file.data_dir.clone(),
            PathBuf::from("./data"),
        );
        let domains_raw = pick_vec(
            common.domains.clone(),
            file.domains.clone(),
            vec!["localhost".to_string()],
        );
        let mut domains = Vec::with_capacity(domains_raw.len());
        for d in &domains_raw {
            let n = crate::xmpp::jid::nameprep_domain(d)
                .map_err(|e| ConfigError(format!("domain {d:?}: {e}")))?
                .into_owned();
            if !domains.contains(&n) {
                domains.push(n);
            }
        }
        let (cert, key, generate_cert) = match (
            serve.cert.clone().or(file.cert.clone()),
            serve.key.clone().or(file.key.clone()),
        ) {
            (Some(c), Some(k)) => (c, k, false),
            (None, None) => (
                data_dir.join("tls").join("cert.pem"),
                data_dir.join("tls").join("key.pem"),
                true,
            ),
            _ => {
                return Err(ConfigError(
                    "--cert and --key must be given together".to_string(),
                ))
            }
        };
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let shards = pick(serve.shards, file.shards, 0);
        let shards = if shards == 0 { cores } else { shards };
        let plain_without_tls = flag(serve.allow_plain_without_tls, file.allow_plain_without_tls);
        let require_tls = !(flag(serve.allow_plaintext, file.allow_plaintext) || plain_without_tls);
        let keepalive = pick(serve.keepalive_interval, file.keepalive_interval, 240);
        let no_c2s_tls = flag(serve.no_c2s_tls, file.no_c2s_tls);
        let c2s_tls_listen = if no_c2s_tls {
            Vec::new()
        } else {
            pick_vec(
                serve.c2s_tls_listen.clone(),
                file.c2s_tls_listen.clone(),
                vec![SocketAddr::from(([127, 0, 0, 1], 5223))],
            )
        };
        let max_stanza_size = pick(serve.max_stanza_size, file.max_stanza_size, 262_144);
        let modules = serve.modules.resolve(&file.modules, max_stanza_size)?;
        let muc_sub = modules
            .muc
            .enabled
            .then_some(modules.muc.subdomain.as_str());
        let components = serve.components.resolve(&file.components, &|d| {
            domains.iter().any(|s| {
                s == d
                    || muc_sub.is_some_and(|m| d.strip_suffix(s.as_str()) == Some(&format!("{m}.")))
            })
        })?;
        let config = Config {
            domains,
            data_dir,
            log: pick(common.log.clone(), file.log.clone(), "info".to_string()),
            lmdb_map_size: pick(common.lmdb_map_size_mib, file.lmdb_map_size_mib, 1024)
                .saturating_mul(1 << 20),
            lmdb_reserve_percent: pick(common.lmdb_reserve_percent, file.lmdb_reserve_percent, 10),
            scram_iterations: pick(common.scram_iterations, file.scram_iterations, 4096),
            c2s_listen: pick_vec(
                serve.c2s_listen.clone(),
                file.c2s_listen.clone(),
                vec![SocketAddr::from(([127, 0, 0, 1], 5222))],
            ),
            c2s_tls_listen,
            cert,
            key,
            generate_cert,
            shards,
            pin: flag(serve.pin, file.pin),
            require_tls,
            plain_without_tls,
            max_stanza_size,
            max_depth: pick(serve.max_depth, file.max_depth, 32),
            max_attrs: pick(serve.max_attrs, file.max_attrs, 64),
            auth_timeout: Duration::from_secs(pick(serve.auth_timeout, file.auth_timeout, 30)),
            keepalive_interval: (keepalive > 0).then(|| Duration::from_secs(keepalive)),
            keepalive_timeout: Duration::from_secs(pick(
                serve.keepalive_timeout,
                file.keepalive_timeout,
                60,
            )),
            max_auth_failures: pick(serve.max_auth_failures, file.max_auth_failures, 3),
            max_preauth_stanza_size: pick(
                serve.max_preauth_stanza_size,
                file.max_preauth_stanza_size,
                8192,
            ),
            max_unauth_per_ip: pick(serve.max_unauth_per_ip, file.max_unauth_per_ip, 16),
            conn_rate_per_ip: pick(serve.conn_rate_per_ip, file.conn_rate_per_ip, 10),
            conn_burst_per_ip: pick(serve.conn_burst_per_ip, file.conn_burst_per_ip, 20),
            auth_failures_per_ip: pick(serve.auth_failures_per_ip, file.auth_failures_per_ip, 5),
            auth_failure_window: Duration::from_secs(pick(
                serve.auth_failure_window,
                file.auth_failure_window,
                600,
            )),
            auth_backoff_max: Duration::from_secs(pick(
                serve.auth_backoff_max,
                file.auth_backoff_max,
                30,
            )),
            exempt_loopback: flag(serve.exempt_loopback, file.exempt_loopback),
            max_resources: pick(serve.max_resources, file.max_resources, 16),
            resource_conflict: pick(
                serve.resource_conflict,
                file.resource_conflict,
                ConflictPolicy::KickOld,
            ),
            legacy_error_codes: !flag(serve.no_legacy_error_codes, file.no_legacy_error_codes),
            iq_auth: pick(serve.iq_auth, file.iq_auth, IqAuthMode::Tls),
            max_send_queue: pick(serve.max_send_queue, file.max_send_queue, 1 << 20),
            slow_client_grace: Duration::from_secs(pick(
                serve.slow_client_grace,
                file.slow_client_grace,
                10,
            )),
            shard_queue: pick(serve.shard_queue, file.shard_queue, 1024),
            shard_queue_bytes: pick(serve.shard_queue_bytes, file.shard_queue_bytes, 4 << 20),
            spin_before_park: match pick(serve.spin_before_park_us, file.spin_before_park_us, 0) {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
            io_uring_depth: pick(
                serve.io_uring_depth,
                file.io_uring_depth,
                DEFAULT_IO_URING_DEPTH,
            ),
            max_connections: pick(serve.max_connections, file.max_connections, 0),
            metrics_listen: serve.metrics_listen.or(file.metrics_listen),
            http: serve.http.resolve(&file.http)?,
            components,
            s2s: serve.s2s.resolve(&file.s2s)?,
            modules,
            shutdown_grace: Duration::from_secs(pick(serve.shutdown_grace, file.shutdown_grace, 3)),
            exit_on_stdin_eof: serve.exit_on_stdin_eof,
        };
        config.check_bounds()?;
        Ok(config)
    }

    fn check_bounds(&self) -> Result<(), ConfigError> {
        let bad = |msg: &str| Err(ConfigError(msg.to_string()));
        if self.domains.is_empty() {
            return bad("at least one --domain is required");
        }
        if self.max_stanza_size < 10_000 {
            return bad("--max-stanza-size must be at least 10000 (RFC 6120 §13.12)");
        }
        if self.max_stanza_size > 64 << 20 {
            return bad("--max-stanza-size must be at most 64 MiB");
        }
        if !(4..=1024).contains(&self.max_depth) {
            return bad("--max-depth must be between 4 and 1024");
        }
        if !(8..=4096).contains(&self.max_attrs) {
            return bad("--max-attrs must be between 8 and 4096");
        }
        if !(1..=1024).contains(&self.shards) {
            return bad("--shards must be between 1 and 1024");
        }
        if !(1..=100).contains(&self.max_auth_failures) {
            return bad("--max-auth-failures must be between 1 and 100");
        }
        if self.max_preauth_stanza_size < 2048
            || self.max_preauth_stanza_size > self.max_stanza_size
        {
            return bad("--max-preauth-stanza-size must be between 2048 and --max-stanza-size");
        }
        if self.conn_rate_per_ip > 0 && self.conn_burst_per_ip == 0 {
            return bad("--conn-burst-per-ip must be at least 1");
        }
        if self.auth_failures_per_ip == 0 {
            return bad("--auth-failures-per-ip must be at least 1");
        }
        if self.auth_backoff_max.is_zero() || self.auth_backoff_max > Duration::from_secs(3600) {
            return bad("--auth-backoff-max must be between 1 and 3600 seconds");
        }
        if self.auth_failure_window.is_zero() {
            return bad("--auth-failure-window must be positive");
        }
        if self.max_resources == 0 {
            return bad("--max-resources must be at least 1");
        }
        if self.scram_iterations < 4096 {
            return bad("--scram-iterations must be at least 4096 (RFC 7677)");
        }
        if self.max_send_queue < 64 * 1024 {
            return bad("--max-send-queue must be at least 65536");
        }
        if !(65_536..=1 << 30).contains(&self.shard_queue_bytes) {
            return bad("--shard-queue-bytes must be between 65536 and 1073741824");
        }
        if self.shard_queue < 16 {
            return bad("--shard-queue must be at least 16");
        }
        if self
            .spin_before_park
            .is_some_and(|d| d > Duration::from_millis(10))
        {
            return bad("--spin-before-park-us must be at most 10000");
        }
        if !(8..=32768).contains(&self.io_uring_depth) {
            return bad("--io-uring-depth must be between 8 and 32768");
        }
        if self.lmdb_map_size < 16 << 20 {
            return bad("--lmdb-map-size-mib must be at least 16");
        }
        if self.auth_timeout.is_zero() || self.keepalive_timeout.is_zero() {
            return bad("--auth-timeout and --keepalive-timeout must be positive");
        }
        if !(1..=50).contains(&self.lmdb_reserve_percent) {
            return bad("--lmdb-reserve-percent must be between 1 and 50");
        }
        if self.c2s_listen.is_empty() && self.c2s_tls_listen.is_empty() {
            return bad("no client listener configured");
        }
        Ok(())
    }

    /// True if `domain` (already normalized) is served here.
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    /// The XML limits for client streams before authentication: the same, with the smaller
    /// `--max-preauth-stanza-size`.
    pub fn preauth_xml_limits(&self) -> crate::xml::Limits {
        crate::xml::Limits {
            max_stanza_bytes: self.max_preauth_stanza_size,
            ..self.xml_limits()
        }
    }

    /// The XML limits for client streams.
    pub fn xml_limits(&self) -> crate::xml::Limits {
        crate::xml::Limits {
            max_stanza_bytes: self.max_stanza_size,
            max_depth: self.max_depth,
            max_attrs: self.max_attrs,
        }
    }

    /// Bytes of the LMDB map kept for essential writes (see `--lmdb-reserve-percent`).
    pub fn lmdb_reserve_bytes(&self) -> u64 {
        self.lmdb_map_size as u64 / 100 * u64::from(self.lmdb_reserve_percent)
    }

    /// Storage options derived from the configuration.
    pub fn storage_options(&self) -> xmppd_storage::Options {
        xmppd_storage::Options {
            map_size: self.lmdb_map_size,
            ..xmppd_storage::Options::default()
        }
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("xmppd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn embedded_defaults() {
        let cli = parse(&[]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.domains, vec!["localhost"]);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.require_tls);
        assert!(c.generate_cert);
        assert_eq!(c.c2s_listen[0].port(), 5222);
        assert_eq!(c.c2s_tls_listen[0].port(), 5223);
        assert_eq!(c.resource_conflict, ConflictPolicy::KickOld);
        assert_eq!(c.iq_auth, IqAuthMode::Tls);
    }

    #[test]
    fn iq_auth_from_flag_or_file() {
        let cli = parse(&["--iq-auth", "off"]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.iq_auth, IqAuthMode::Off);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "iq_auth = \"on\"\n").unwrap();
        let cli = parse(&["--config", path.to_str().unwrap()]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.iq_auth, IqAuthMode::On);
        assert!(Cli::try_parse_from(["xmppd", "--iq-auth", "digest"]).is_err());
    }

    #[test]
    fn executor_options_defaults_and_bounds() {
        let cli = parse(&[]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.spin_before_park, None);
        assert_eq!(c.io_uring_depth, DEFAULT_IO_URING_DEPTH);
        let cli = parse(&["--spin-before-park-us", "250", "--io-uring-depth", "512"]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.spin_before_park, Some(Duration::from_micros(250)));
        assert_eq!(c.io_uring_depth, 512);
        for bad in [
            &["--spin-before-park-us", "10001"][..],
            &["--io-uring-depth", "4"][..],
            &["--io-uring-depth", "65536"][..],
        ] {
            let cli = parse(bad);
            let e = Config::resolve(&cli.common, &cli.serve).unwrap_err();
            assert!(e.to_string().contains(bad[0]), "{e}");
        }
    }

    #[test]
    fn offline_quota_defaults_and_bounds_issue_8b() {
        let cli = parse(&[]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.modules.offline.max_offline_bytes, 4 << 20);
        assert_eq!(c.modules.offline.max_offline_stanza_size, 64 * 1024);
        assert_eq!(c.lmdb_reserve_percent, 10);
        assert_eq!(c.lmdb_reserve_bytes(), (1u64 << 30) / 100 * 10);
        let cli = parse(&["--max-stanza-size", "20000"]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.modules.offline.max_offline_stanza_size, 20000);
        for (bad, flag) in [
            (
                &["--lmdb-reserve-percent", "0"][..],
                "--lmdb-reserve-percent",
            ),
            (
                &["--lmdb-reserve-percent", "51"][..],
                "--lmdb-reserve-percent",
            ),
            (
                &["--max-offline-stanza-size", "300000"][..],
                "--max-offline-stanza-size",
            ),
            (&["--max-offline-bytes", "1000"][..], "--max-offline-bytes"),
        ] {
            let cli = parse(bad);
            let e = Config::resolve(&cli.common, &cli.serve).unwrap_err();
            assert!(e.to_string().contains(flag), "{e}");
        }
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(
            &path,
            "domains = [\"Example.ORG\"]\nmax_auth_failures = 5\nshards = 3\n",
        )
        .unwrap();
        let cli = parse(&["--config", path.to_str().unwrap(), "--shards", "2"]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.domains, vec!["example.org"]);
        assert_eq!(c.max_auth_failures, 5);
        assert_eq!(c.shards, 2);
    }

    #[test]
    fn module_settings_come_from_their_own_flags_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(
            &path,
            "[modules.offline]\nmax_offline_messages = 7\nmax_offline_bytes = 100000\n\
             [modules.roster]\nmax_roster_items = 50\n",
        )
        .unwrap();
        let cli = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--max-offline-messages",
            "9",
        ]);
        let c = Config::resolve(&cli.common, &cli.serve).unwrap();
        assert_eq!(c.modules.offline.max_offline_messages, 9);
        assert_eq!(c.modules.offline.max_offline_bytes, 100_000);
        assert_eq!(c.modules.roster.max_roster_items, 50);
        assert_eq!(c.modules.roster.max_roster_groups, 32);
        // A module's key outside its table, or an unknown one inside it, is refused.
        for text in [
            "max_offline_messages = 7\n",
            "[modules.offline]\nmax_messages = 7\n",
            "[modules.nosuch]\nx = 1\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let cli = parse(&["--config", path.to_str().unwrap()]);
            assert!(Config::resolve(&cli.common, &cli.serve).is_err(), "{text}");
        }
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "max_stanza = 5\n").unwrap();
        let cli = parse(&["--config", path.to_str().unwrap()]);
        assert!(Config::resolve(&cli.common, &cli.serve).is_err());
    }

    #[test]
    fn bounds_are_enforced() {
        let cli = parse(&["--max-stanza-size", "9999"]);
        assert!(Config::resolve(&cli.common, &cli.serve).is_err());
        let cli = parse(&["--cert", "/x.pem"]);
        assert!(Config::resolve(&cli.common, &cli.serve).is_err());
    }

    #[test]
    fn common_options_before_or_after_the_subcommand_issue_8() {
        Cli::command().debug_assert();
        for args in [
            &[
                "--data-dir",
                "/d",
                "--domain",
                "x.org",
                "adduser",
                "a@x.org",
            ][..],
            &[
                "adduser",
                "a@x.org",
                "--data-dir",
                "/d",
                "--domain",
                "x.org",
            ][..],
            &[
                "--data-dir",
                "/d",
                "adduser",
                "--domain",
                "x.org",
                "a@x.org",
            ][..],
        ] {
            let cli = parse(args);
            assert!(matches!(cli.command, Some(Command::Adduser(_))), "{args:?}");
            assert_eq!(cli.common.data_dir, Some(PathBuf::from("/d")), "{args:?}");
            assert_eq!(cli.common.domains, vec!["x.org"], "{args:?}");
        }
        // Server options without a subcommand run the server; after `serve` too.
        let cli = parse(&["--data-dir", "/d", "--shards", "3"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.shards, Some(3));
        let cli = parse(&["--log", "warn", "serve", "--shards", "3"]);
        let Some(Command::Serve(serve)) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(serve.shards, Some(3));
        assert_eq!(cli.common.log.as_deref(), Some("warn"));
        // Before a subcommand they would be ignored, so they are refused.
        for args in [&["--shards", "3", "users"][..], &["--pin", "serve"][..]] {
            let it = std::iter::once("xmppd").chain(args.iter().copied());
            let err = Cli::try_parse_from(it).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{args:?}");
            assert!(err.to_string().contains(args[0]), "{err}");
        }
    }
}
