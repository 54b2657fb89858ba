//! PostgreSQL's planner statistics, kept fresh by the gateway whether or not autovacuum runs.

use super::*;

/// How often PostgreSQL's planner statistics are checked for staleness.
const STATISTICS_EVERY: Duration = Duration::from_secs(60);

/// Keeps PostgreSQL's planner statistics fresh while the store lives (`alive`: a value only the
/// store holds), whether or not autovacuum runs: at start and every [`STATISTICS_EVERY`].
/// Without statistics, after a bulk load into new tables, the planner took every table for one
/// row and answered a CPR chain search with a nested loop over all 10,000 CarePlans: 165 ms a
/// search, 138 requests/s for the realistic workload (docs/benchmarks.md).
pub(super) async fn keep_statistics(
    alive: std::sync::Weak<crate::store::DiskState>,
    pool: AnyPool,
) {
    loop {
        if alive.upgrade().is_none() {
            return;
        }
        match analyze_stale(&pool).await {
            Ok(tables) if !tables.is_empty() => {
                tracing::info!(?tables, "PostgreSQL planner statistics refreshed");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot refresh PostgreSQL planner statistics"),
        }
        // In steps, so that a closed store lets its pool go within a second.
        for _ in 0..STATISTICS_EVERY.as_secs() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if alive.upgrade().is_none() {
                return;
            }
        }
    }
}

/// `ANALYZE` the tables of the store's schema changed by more than a tenth (and a thousand
/// rows) since their statistics were taken: autovacuum's rule, with a margin so that where it
/// runs, it is left to do its work. Returns the tables analyzed.
pub(crate) async fn analyze_stale(pool: &AnyPool) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT relname::text FROM pg_stat_user_tables WHERE schemaname = current_schema() \
         AND n_mod_since_analyze > 1000 + n_live_tup / 10 ORDER BY relname",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut analyzed = Vec::new();
    for row in rows {
        let table: String = row.try_get(0).map_err(db_err)?;
        // Our own tables' names; anything else is not ours to quote.
        if !table
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        let mut tx = pool.begin().await.map_err(db_err)?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        analyzed.push(table);
    }
    Ok(analyzed)
}

#[cfg(test)]
mod tests {
    /// Tables loaded since their statistics were taken are analyzed; fresh ones are left alone
    /// (PostgreSQL, when `SEKTORBRO_TEST_POSTGRES_URL` is set).
    #[tokio::test]
    async fn stale_postgres_statistics_are_refreshed() {
        let Some(pg) =
            crate::store::test_pg::PgSchema::create("t_stats", "PostgreSQL statistics test").await
        else {
            return;
        };
        let pool = sqlx::AnyPool::connect(&pg.url).await.expect("schema pool");
        for table in ["loaded", "quiet"] {
            sqlx::query(&format!("CREATE TABLE {table} (n BIGINT)"))
                .execute(&pool)
                .await
                .expect("table");
        }
        sqlx::query("INSERT INTO loaded SELECT g FROM generate_series(1, 5000) g")
            .execute(&pool)
            .await
            .expect("load");
        // The server counts changes asynchronously (a backend reports them within a second or
        // so of going idle): ask until it has, and the table is analyzed.
        let mut analyzed = Vec::new();
        for _ in 0..100 {
            analyzed = super::analyze_stale(&pool).await.expect("analyze");
            if !analyzed.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(analyzed, vec!["loaded".to_string()]);
        assert!(super::analyze_stale(&pool).await.expect("again").is_empty());
        pool.close().await;
        pg.drop().await;
    }
}
