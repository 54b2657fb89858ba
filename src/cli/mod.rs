//! Command line: `serve` (the default), `validate` ([`validate`]), `translate` and
//! `report kl-gateway` ([`report`]), `audit verify|export` ([`audit`]), `healthcheck`
//! ([`healthcheck`]). The tools that
//! derive `profiles/` from published packages are in the `xtask` crate (`cargo xtask derive …`).

pub mod audit;
pub mod healthcheck;
pub mod report;
pub mod validate;

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
        #[arg(long, value_name = "FILE", env = "SEKTORBRO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Ask the gateway this configuration describes for /healthz on its own address (loopback
    /// for 0.0.0.0), e.g. as a container's HEALTHCHECK. Exit code 0: healthy; 1: not.
    Healthcheck {
        /// A TOML file overriding config/default.toml (the listen address and TLS).
        #[arg(long, value_name = "FILE", env = "SEKTORBRO_CONFIG")]
        config: Option<PathBuf>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Validate FHIR JSON files (or folders of them) against R4, the embedded IG packages
    /// (dk-core, KL, MedCom, se-base) and the profiles they claim, offline.
    /// Exit code 0: all valid; 1: some invalid; 2: usage error.
    Validate {
        /// A FHIR package to load besides the embedded ones (.tgz, package folder or folder of
        /// JSON resources, recognised by content); repeatable.
        #[arg(long = "package", value_name = "PATH")]
        packages: Vec<PathBuf>,
        /// Treat anything in the given packages that cannot be loaded or compiled (a file, a
        /// profile, a value set, a FHIRPath expression) as a usage error instead of a warning.
        #[arg(long)]
        strict: bool,
        /// Accept extensions whose definition is not loaded when their url starts with this
        /// prefix (`http://example.org/fhir/`) or their host is this domain (`example.org`), with
        /// a warning instead of an error; repeatable. Without it every unknown extension is an
        /// error, as in HL7's reference validator.
        #[arg(long = "allow-extension-domain", value_name = "DOMAIN_OR_URL")]
        allowed_extension_domains: Vec<String>,
        /// A profile every resource must conform to (canonical URL); repeatable.
        #[arg(long = "profile", value_name = "URL")]
        profiles: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: validate::Format,
        /// How many files to validate at once (default: one per core). The output keeps the
        /// files' order whatever the number.
        #[arg(long, value_name = "N")]
        jobs: Option<std::num::NonZeroUsize>,
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
    /// Reports for national receivers, built from municipal care records.
    Report {
        #[command(subcommand)]
        report: ReportCommand,
    },
    /// The audit trail in the configured database (docs/audit.md).
    Audit {
        #[command(subcommand)]
        audit: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain from its anchor and report the first break.
    /// Exit code 0: intact; 1: broken; 2: usage error.
    Verify {
        /// A TOML file overriding config/default.toml (the database to check).
        #[arg(long, value_name = "FILE", env = "SEKTORBRO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write the records as IHE BALP AuditEvents, one JSON object per line (NDJSON).
    Export {
        /// A TOML file overriding config/default.toml (the database to read).
        #[arg(long, value_name = "FILE", env = "SEKTORBRO_CONFIG")]
        config: Option<PathBuf>,
        /// Only records recorded at or after this instant (RFC 3339) or date (UTC midnight).
        #[arg(long, value_parser = audit::parse_since, default_value = "1970-01-01")]
        since: i64,
        /// The output format; `ndjson` is the only one.
        #[arg(long, value_parser = ["ndjson"], default_value = "ndjson")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// KL Gateway delivery reports (§140 rehabilitation, FSIII care) for the given records,
    /// one Bundle per line: without --kind, §140 courses go to the 140 report and the others to
    /// the care report. Exit code 0: reported; 1: a record is not valid; 2: usage error.
    KlGateway {
        /// Only this report: `140` or `care`.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<crate::report::kl_gateway::Kind>,
        /// Municipal care record files (v1 JSON).
        #[arg(value_name = "RECORD.json")]
        records: Vec<PathBuf>,
    },
}

fn parse_kind(s: &str) -> Result<crate::report::kl_gateway::Kind, String> {
    crate::report::kl_gateway::Kind::parse(s).ok_or_else(|| format!("{s:?} is not 140 or care"))
}

/// Run the command line; returns the process exit code.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // No command is `serve`, with SEKTORBRO_CONFIG read as `serve` reads it.
    let serve = || Command::Serve {
        config: std::env::var_os("SEKTORBRO_CONFIG").map(PathBuf::from),
    };
    match cli.command.unwrap_or_else(serve) {
        Command::Validate {
            packages,
            strict,
            allowed_extension_domains,
            profiles,
            format,
            jobs,
            inputs,
        } => Ok(validate::run(validate::Options {
            packages,
            strict,
            allowed_extension_domains,
            profiles,
            format,
            jobs,
            inputs,
        })),
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let telemetry = crate::app::init_logging(&config, runtime.handle().clone())?;
            let served = runtime.block_on(crate::app::serve(config));
            // The last spans are sent while the runtime that posts them still runs.
            if let Some(t) = telemetry {
                let _ = runtime.block_on(tokio::task::spawn_blocking(move || t.shutdown()));
            }
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { config, timeout } => {
            healthcheck::run(config.as_deref(), std::time::Duration::from_secs(timeout))
        }
        Command::Translate { reverse, file } => Ok(crate::municipal::translate_cli(&file, reverse)),
        Command::Report {
            report: ReportCommand::KlGateway { kind, records },
        } => Ok(report::run(report::Options { kind, records })),
        Command::Audit {
            audit: AuditCommand::Verify { config },
        } => audit::verify(config.as_deref()),
        Command::Audit {
            audit: AuditCommand::Export { config, since, .. },
        } => audit::export(config.as_deref(), since),
    }
}
