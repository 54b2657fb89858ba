//! Command line: `serve` (the default) and `derive` (regenerate the compact R4 files in
//! `profiles/` from the published FHIR package).

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Validate FHIR JSON files (or folders of them) against R4 and profiles, offline.
    /// Exit code 0: all valid; 1: some invalid; 2: usage error.
    Validate {
        /// A FHIR package to load (.tgz, package folder or folder of JSON resources); repeatable.
        #[arg(long = "package", value_name = "PATH")]
        packages: Vec<PathBuf>,
        /// A profile every resource must conform to (canonical URL); repeatable.
        #[arg(long = "profile", value_name = "URL")]
        profiles: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: crate::validation::offline::Format,
        /// Files and folders (searched recursively for *.json).
        #[arg(value_name = "FILES_OR_DIRS")]
        inputs: Vec<PathBuf>,
    },
    /// Translate a municipal care record (v1 JSON) into the FHIR transaction Bundle the gateway
    /// would store, or with --reverse a Bundle back into the record. Exit code 0: translated;
    /// 1: the input is not a valid record or Bundle (the problems are printed); 2: usage error.
    Translate {
        /// Read a FHIR Bundle and print the municipal record it holds.
        #[arg(long)]
        reverse: bool,
        /// The input file (`-` for standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
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
    /// StructureDefinitions, ValueSets and CodeSystems reduced to machine facts, for the validator.
    Definitions {
        /// The R4 package (.tgz), e.g. ../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz
        #[arg(long)]
        package: PathBuf,
        /// The folder to write structure-definitions.json.gz and terminology.json.gz into.
        #[arg(long, default_value = "profiles/r4")]
        out: PathBuf,
    },
    /// The Danish code systems and value sets the gateway needs at run time (FSIII, municipality
    /// codes), reduced to codes, labels and hierarchy.
    Terminology {
        /// The folder of Danish IG artifacts, e.g. ../shared/fhir-ig
        #[arg(long)]
        igs: PathBuf,
        #[arg(long, default_value = "profiles/dk/terminology.json")]
        out: PathBuf,
    },
}

/// Run the command line; returns the process exit code.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Validate {
            packages,
            profiles,
            format,
            inputs,
        } => Ok(crate::validation::offline::run(
            crate::validation::offline::Options {
                packages,
                profiles,
                format,
                inputs,
            },
        )),
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            crate::app::init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::app::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Derive {
            what: DeriveCommand::SearchParams { package, out },
        } => {
            crate::fhir::derive::write_search_parameters(&package, &out)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Translate { reverse, file } => Ok(crate::municipal::translate_cli(&file, reverse)),
        Command::Derive {
            what: DeriveCommand::Terminology { igs, out },
        } => {
            let text = crate::validation::compact::derive_danish_terminology(&igs)?;
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, text)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Derive {
            what: DeriveCommand::Definitions { package, out },
        } => {
            crate::validation::compact::write_definitions(&package, &out)?;
            println!(
                "wrote {}/structure-definitions.json.gz and terminology.json.gz",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
