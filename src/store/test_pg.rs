//! A fresh PostgreSQL schema for the store's unit tests, on the server named by
//! `SEKTORBRO_TEST_POSTGRES_URL` (tests/common has the same for the integration tests).

use sqlx::AnyPool;

pub(crate) const PG_ENV: &str = "SEKTORBRO_TEST_POSTGRES_URL";

/// A schema of its own, dropped by [`PgSchema::drop`].
pub(crate) struct PgSchema {
    /// The server's URL with the schema as its search path.
    pub url: String,
    admin: AnyPool,
    name: String,
}

impl PgSchema {
    /// A new schema named `{prefix}_{uuid}`, or `None` (and a line saying what `what` skips)
    /// when no server is configured.
    pub async fn create(prefix: &str, what: &str) -> Option<PgSchema> {
        let Ok(server) = std::env::var(PG_ENV) else {
            eprintln!("{PG_ENV} is not set: {what} skipped");
            return None;
        };
        sqlx::any::install_default_drivers();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = AnyPool::connect(&server).await.expect("PostgreSQL");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .expect("schema");
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{name}");
        Some(PgSchema { url, admin, name })
    }

    pub async fn drop(self) {
        let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&self.admin)
            .await;
    }
}
