//! `sektorbro audit verify` and `sektorbro audit export` (docs/audit.md): the audit trail's hash
//! chain checked, and its records written as IHE BALP AuditEvents, one per line, for a SIEM or a
//! log shipper. Both open the configured database directly (a running gateway may keep writing).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Config;
use crate::store::{audit_log::Verification, Storage};

/// Records read per round trip by `export`.
const EXPORT_PAGE: usize = 1000;

async fn open(config: &Config) -> anyhow::Result<std::sync::Arc<dyn Storage>> {
    crate::audit::set_observer(&crate::app::observer(config));
    crate::store::open(
        &config.database.url,
        2,
        crate::store::SqliteTuning {
            synchronous: &config.database.sqlite_synchronous,
            page_size: config.database.sqlite_page_size,
            direct_reads: config.database.sqlite_direct_reads,
            audit_sync_ms: 0,
        },
        0,
        &crate::config::CacheConfig {
            enabled: false,
            ..config.cache.clone()
        },
    )
    .await
    .context("cannot open the database")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The verification as text: what was checked, and the first break.
pub fn describe(v: &Verification) -> String {
    let mut out = format!(
        "checked {} sealed records from position {} (anchor); {} not yet sealed\nhead: position {} hash {}\n",
        v.checked, v.anchor, v.unsealed, v.head.0, v.head.1
    );
    match &v.first_break {
        None => out.push_str("the chain is intact\n"),
        Some(b) => out.push_str(&format!(
            "BROKEN at position {}{}: {}\n",
            b.chain_pos,
            b.seq
                .map(|s| format!(" (AuditEvent/{s})"))
                .unwrap_or_default(),
            b.reason
        )),
    }
    out
}

/// Exit code 0: the chain is intact; 1: it is broken (the first break printed); 2: usage error.
pub fn verify(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    runtime()?.block_on(async {
        let store = open(&config).await?;
        let v = store.audit_verify().await?;
        print!("{}", describe(&v));
        Ok(match v.first_break {
            None => ExitCode::SUCCESS,
            Some(_) => ExitCode::from(1),
        })
    })
}

/// Parse `--since`: an instant with a time zone or a date (midnight UTC).
pub fn parse_since(s: &str) -> Result<i64, String> {
    use fhir_core::fhir::datetime::{full_date, full_date_time};
    if let Some(t) = full_date_time(s) {
        return Ok(t.timestamp_millis());
    }
    if let Some(d) = full_date(s) {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or_default());
    }
    Err(format!(
        "{s:?} is neither an RFC 3339 instant (2026-12-01T00:00:00Z) nor a date (2026-12-01)"
    ))
}

/// Write every record recorded at or after `since_ms` as NDJSON to standard output.
pub fn export(config: Option<&Path>, since_ms: i64) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    runtime()?.block_on(async {
        let store = open(&config).await?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut after = 0;
        loop {
            let page = store.audit_export(after, since_ms, EXPORT_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            for (_, event) in &page {
                serde_json::to_writer(&mut out, event)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    })
}
