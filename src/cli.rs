//! Command line: `serve` (the default) and `derive` (regenerate the compact R4 files in
//! `profiles/` from the published FHIR package).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "sektorbro",
    version,
    about = "FHIR R4 gateway for cross-sector care"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default when no command is given).
    Serve {
        /// A TOML file overriding config/default.toml (only the keys it names).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Derive the compact machine-facts files in profiles/ from a published FHIR package.
    Derive {
        #[command(subcommand)]
        what: DeriveCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeriveCommand {
    /// Search parameters (code, type, compiled paths, targets) for the served resource types.
    SearchParams {
        /// The R4 package (.tgz), e.g. ../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz
        #[arg(long)]
        package: PathBuf,
        /// Where to write the JSON.
        #[arg(long, default_value = "profiles/r4/search-parameters.json")]
        out: PathBuf,
    },
}

/// Run the command line; returns the process exit code.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            crate::app::init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::app::serve(config))
        }
        Command::Derive {
            what: DeriveCommand::SearchParams { package, out },
        } => {
            crate::fhir::derive::write_search_parameters(&package, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}
