//! `cargo xtask`: the maintainers' tools. They derive the compact machine-facts files in
//! `profiles/` from published FHIR packages; the gateway embeds those files and never runs these.

mod definitions;
mod packages;
mod search_params;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "Sektorbro maintainers' tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Derive the compact machine-facts files in profiles/ from a published FHIR package.
    Derive {
        #[command(subcommand)]
        what: Derive,
    },
}

#[derive(Debug, Subcommand)]
enum Derive {
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
    /// The IG packages the gateway needs at run time (dk-core, KL, MedCom, se-base), each at
    /// every version one of them declares, reduced to machine facts.
    Packages {
        /// The folder beside the checkout holding fhir-ig/ and fhir-packages/, e.g. ../shared
        #[arg(long, default_value = "../shared")]
        shared: PathBuf,
        #[arg(long, default_value = "profiles/ig")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Derive { what } = cli.command;
    match what {
        Derive::SearchParams { package, out } => {
            search_params::write_search_parameters(&package, &out)?;
            println!("wrote {}", out.display());
        }
        Derive::Definitions { package, out } => {
            definitions::write_definitions(&package, &out)?;
            println!(
                "wrote {}/structure-definitions.json.gz, terminology.json.gz and summary-elements.json",
                out.display()
            );
        }
        Derive::Terminology { igs, out } => {
            let text = definitions::derive_danish_terminology(&igs)?;
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, text)?;
            println!("wrote {}", out.display());
        }
        Derive::Packages { shared, out } => {
            let d = packages::write_packages(&shared, &out)?;
            for p in &d.packages {
                println!("wrote {}/{}", out.display(), p.file);
            }
            for (name, why) in packages::NOT_EMBEDDED {
                println!("not embedded: {name}: {why}");
            }
            for m in &d.missing {
                println!("declared but not available (the nearest loaded version is used): {m}");
            }
        }
    }
    Ok(())
}
