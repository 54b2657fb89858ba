//! Embedded schema migrations, applied in order at start, each in its own transaction.
//!
//! sqlx's migrator needs its macros (compile-time database access) or migration files on disk at run
//! time; a dozen lines here keep the schema inside the binary for both dialects.

use sqlx::AnyPool;

use super::sql::db_err;
use super::{Backend, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "resources",
        sqlite: include_str!("migrations/sqlite/0001_resources.sql"),
        postgres: include_str!("migrations/postgres/0001_resources.sql"),
    },
    Migration {
        version: 2,
        name: "outbox",
        sqlite: include_str!("migrations/sqlite/0002_outbox.sql"),
        postgres: include_str!("migrations/postgres/0002_outbox.sql"),
    },
    Migration {
        version: 3,
        name: "tenancy",
        sqlite: include_str!("migrations/sqlite/0003_tenancy.sql"),
        postgres: include_str!("migrations/postgres/0003_tenancy.sql"),
    },
    Migration {
        version: 4,
        name: "outbox_sender",
        sqlite: include_str!("migrations/sqlite/0004_outbox_sender.sql"),
        postgres: include_str!("migrations/postgres/0004_outbox_sender.sql"),
    },
    Migration {
        version: 5,
        name: "hospital_events",
        sqlite: include_str!("migrations/sqlite/0005_hospital_events.sql"),
        postgres: include_str!("migrations/postgres/0005_hospital_events.sql"),
    },
    Migration {
        version: 6,
        name: "audit_log",
        sqlite: include_str!("migrations/sqlite/0006_audit_log.sql"),
        postgres: include_str!("migrations/postgres/0006_audit_log.sql"),
    },
    Migration {
        version: 7,
        name: "bulk_export",
        sqlite: include_str!("migrations/sqlite/0007_bulk_export.sql"),
        postgres: include_str!("migrations/postgres/0007_bulk_export.sql"),
    },
    Migration {
        version: 8,
        name: "kpi_facts",
        sqlite: include_str!("migrations/sqlite/0008_kpi_facts.sql"),
        postgres: include_str!("migrations/postgres/0008_kpi_facts.sql"),
    },
    Migration {
        version: 9,
        name: "report_facts",
        sqlite: include_str!("migrations/sqlite/0009_report_facts.sql"),
        postgres: include_str!("migrations/postgres/0009_report_facts.sql"),
    },
    Migration {
        version: KPI_TABLE,
        name: "kpi_table",
        sqlite: include_str!("migrations/sqlite/0010_kpi_table.sql"),
        postgres: include_str!("migrations/postgres/0010_kpi_table.sql"),
    },
    Migration {
        version: 11,
        name: "outbox_citizen",
        sqlite: include_str!("migrations/sqlite/0011_outbox_citizen.sql"),
        postgres: include_str!("migrations/postgres/0011_outbox_citizen.sql"),
    },
    Migration {
        version: 12,
        name: "audit_journal",
        sqlite: include_str!("migrations/sqlite/0012_audit_journal.sql"),
        postgres: include_str!("migrations/postgres/0012_audit_journal.sql"),
    },
    Migration {
        version: 13,
        name: "audit_keys",
        sqlite: include_str!("migrations/sqlite/0013_audit_keys.sql"),
        postgres: include_str!("migrations/postgres/0013_audit_keys.sql"),
    },
    Migration {
        version: 14,
        name: "date_index_partial",
        sqlite: include_str!("migrations/sqlite/0014_date_index_partial.sql"),
        postgres: include_str!("migrations/postgres/0014_date_index_partial.sql"),
    },
];

/// The migration after whose script the rows of `kpi_facts` are derived from the stored
/// resources by the writer's own code (`kpis::backfill`), which SQL alone could not do the same
/// way (dates with zone offsets to milliseconds).
const KPI_TABLE: i64 = 10;

/// Bring the schema up to date. On PostgreSQL an advisory lock keeps two starting instances from
/// migrating at once.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    if backend == Backend::Postgres {
        // A migration (or waiting for another instance's) may take longer than a request may.
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock(7351902211)")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let script = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        for statement in statements(script) {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        if m.version == KPI_TABLE {
            super::kpis::backfill(&mut tx).await?;
            if backend == Backend::Postgres {
                // Statistics for the back-filled table at once: without them the planner cannot
                // tell the Goals' look-up by record from a scan (docs/kpis.md, Speed).
                sqlx::query("ANALYZE kpi_facts")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    tx.commit().await.map_err(db_err)
}

/// A migration script's statements: split at `;` outside string literals, with `--` comments
/// dropped first (a `;` in a comment used to split a statement in two).
pub(super) fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_string = false;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_string = !in_string;
                current.push(c);
            }
            '-' if !in_string && chars.peek() == Some(&'-') => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            ';' if !in_string => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A fresh in-memory SQLite database with every migration applied, on one connection (the
/// unit tests' database).
#[cfg(test)]
pub(crate) async fn memory_sqlite() -> AnyPool {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite");
    run(&pool, Backend::Sqlite).await.expect("migrations");
    pool
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn comments_and_strings_do_not_split_statements() {
        let script = "-- one; two\nCREATE TABLE t (a TEXT DEFAULT 'x;y'); -- done;\n\nCREATE INDEX i ON t (a);\n-- only a comment;\n";
        assert_eq!(
            statements(script),
            [
                "CREATE TABLE t (a TEXT DEFAULT 'x;y')",
                "CREATE INDEX i ON t (a)"
            ]
        );
    }

    #[test]
    fn every_embedded_script_splits_into_statements() {
        for m in super::MIGRATIONS {
            for script in [m.sqlite, m.postgres] {
                for s in statements(script) {
                    assert!(!s.starts_with("--") && !s.is_empty(), "{}: {s}", m.name);
                }
            }
        }
    }
}
