//! The composition root: command line → configuration → the command. The list of protocol
//! modules lives here and nowhere else.

use std::process::ExitCode;

use clap::Parser;
use xmppd::config::{Cli, Command, Config};
use xmppd::core::RegisterFn;
use xmppd::{admin, modules, server};

/// Every protocol module the server runs, in registration order.
const MODULES: &[RegisterFn] = &[
    modules::disco::register,
    modules::im::register,
    modules::offline::register,
    modules::vcard::register,
    modules::ping::register,
    modules::version::register,
    modules::session::register,
    modules::csi::register,
    modules::privacy::register,
    modules::muc::register,
    modules::pep::register,
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serve_args = match &cli.command {
        Some(Command::Serve(args)) => args.as_ref(),
        _ => &cli.serve,
    };
    let config = match Config::resolve(&cli.common, serve_args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xmppd: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log);
    let result: Result<(), Box<dyn std::error::Error>> = match &cli.command {
        None | Some(Command::Serve(_)) => server::serve(config, MODULES).map_err(Into::into),
        Some(Command::Adduser(args)) => admin::adduser(&config, args).map_err(Into::into),
        Some(Command::Passwd(args)) => admin::passwd(&config, args).map_err(Into::into),
        Some(Command::Deluser { jid }) => admin::deluser(&config, jid).map_err(Into::into),
        Some(Command::Disable { jid }) => {
            admin::set_disabled(&config, jid, true).map_err(Into::into)
        }
        Some(Command::Enable { jid }) => {
            admin::set_disabled(&config, jid, false).map_err(Into::into)
        }
        Some(Command::Users { only_domain }) => {
            admin::users(&config, only_domain.as_deref()).map_err(Into::into)
        }
        Some(Command::Check) => admin::check(&config).map_err(Into::into),
        Some(Command::GenCert { force }) => admin::gen_cert(&config, *force).map_err(Into::into),
        Some(Command::Import(args)) => admin::import::import(&config, args).map_err(Into::into),
        Some(Command::ShardOf { shards, jids }) => {
            admin::shard_of(*shards, jids).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmppd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
