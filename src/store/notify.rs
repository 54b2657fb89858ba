//! PostgreSQL: telling the other instances on the same schema which resources were written, so
//! that their caches stop serving them.
//!
//! A write transaction sends `pg_notify(channel, 'Type/id\n…')` just before `COMMIT`;
//! PostgreSQL delivers it to every listener when, and only if, the transaction commits. Each
//! instance listens on the channel of its schema and bumps the written resources' generations
//! (see `cache.rs`). While the listener is not connected, or after it lost its connection (so
//! notifications may have been missed), the caches are bypassed and every entry is treated as
//! stale.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{AnyPool, Row};

use super::cache::Generations;
use super::sql::db_err;
use super::StoreError;

/// PostgreSQL's limit on a notification payload is 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// The channel of the schema this pool writes to: instances on one schema share it, instances on
/// different schemas (tests) do not disturb each other.
pub(crate) async fn channel_name(pool: &AnyPool) -> Result<String, StoreError> {
    let row = sqlx::query("SELECT current_schema()::text")
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    let schema: String = row
        .try_get(0)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // Channel names are identifiers of at most 63 bytes; a hash keeps any schema name valid.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in schema.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("sektorbro_writes_{h:016x}"))
}

/// `Type/id` lines, split into payloads PostgreSQL accepts. Identical payloads in one
/// transaction are folded by PostgreSQL, which is fine: they carry the same news.
pub(crate) fn payloads(written: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for (rtype, id) in written {
        if !current.is_empty() && current.len() + rtype.len() + id.len() + 2 > MAX_PAYLOAD {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(rtype);
        current.push('/');
        current.push_str(id);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Apply one notification's payload.
fn apply(generations: &Generations, payload: &str) {
    for line in payload.lines() {
        match line.split_once('/') {
            Some((rtype, id)) => generations.written(rtype, id),
            // Not ours to interpret: be safe.
            None => generations.everything_changed(),
        }
    }
}

/// Listen for other instances' writes for as long as the process runs, reconnecting as needed.
pub(crate) fn spawn_listener(url: &str, channel: String, generations: Arc<Generations>) {
    let url = url.to_string();
    tokio::spawn(async move {
        loop {
            let mut listener = match connect(&url, &channel).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cache invalidation listener cannot connect; caches bypassed");
                    generations.set_live(false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // Listening from here on: whatever was cached before may have changed unheard.
            generations.everything_changed();
            generations.set_live(true);
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => apply(&generations, n.payload()),
                    // The connection was lost and has been re-established (LISTEN included):
                    // notifications in between are lost.
                    Ok(None) => {
                        tracing::warn!("cache invalidation listener reconnected; caches reset");
                        generations.everything_changed();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cache invalidation listener failed; caches bypassed");
                        generations.set_live(false);
                        generations.everything_changed();
                        break;
                    }
                }
            }
        }
    });
}

async fn connect(url: &str, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit_and_keep_every_key() {
        let written: Vec<(String, String)> = (0..2000)
            .map(|n| ("Observation".to_string(), format!("{n:036}")))
            .collect();
        let p = payloads(&written);
        assert!(p.len() > 1);
        assert!(p.iter().all(|s| s.len() <= MAX_PAYLOAD));
        let lines: usize = p.iter().map(|s| s.lines().count()).sum();
        assert_eq!(lines, written.len());
        assert!(payloads(&[]).is_empty());
    }
}
