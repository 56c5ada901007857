//! Applying `migrations/postgres/` with the history in a table of our own,
//! [`MIGRATIONS_TABLE`](crate::MIGRATIONS_TABLE), so an embedding application's own sqlx migrations (in
//! `_sqlx_migrations`) live beside ours in one database.
//!
//! This is sqlx's migrator's job done in a way that also works behind a transaction-mode
//! pooler: every pending migration is applied in one transaction that holds a
//! transaction-level advisory lock (a session-level lock, as sqlx takes, would stay on
//! whichever server connection the pooler picked), statements are unnamed, and the migration
//! scripts go over the simple query protocol. Installs from before the table existed keep
//! their history: the rows of ours found in `_sqlx_migrations` move over on the first run.

use std::time::Instant;

use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnection;

use super::connection::Db;
use super::queries;

use crate::MIGRATIONS_TABLE;

/// Why migrating failed, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub(super) enum MigrateError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(
        "the database has migration {version} ({description}), which this build does not know: \
         it was migrated by a newer workflow-worker"
    )]
    Unknown { version: i64, description: String },
    #[error(
        "migration {version} ({description}) was applied with different contents than this \
         build's: the migration files were edited after they were applied"
    )]
    Changed { version: i64, description: String },
    #[error("migration {version} ({description}) failed")]
    Failed {
        version: i64,
        description: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Applies every migration of `migrator` that `conn`'s database lacks, in one transaction.
pub(super) async fn run(conn: &mut PgConnection, migrator: &Migrator) -> Result<(), MigrateError> {
    let mut tx = conn.begin().await?;
    sqlx::query(queries::MIGRATIONS_LOCK)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(queries::MIGRATIONS_TABLE_CREATE)
        .execute(&mut *tx)
        .await?;
    adopt_legacy_history(&mut tx, migrator).await?;
    let applied: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(queries::MIGRATIONS_APPLIED)
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
    for (version, description, checksum) in &applied {
        match migrator.iter().find(|m| m.version == *version) {
            None => {
                return Err(MigrateError::Unknown {
                    version: *version,
                    description: description.clone(),
                });
            }
            Some(known) if *known.checksum != checksum[..] => {
                return Err(MigrateError::Changed {
                    version: *version,
                    description: description.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for migration in migrator.iter() {
        if applied.iter().any(|(v, _, _)| *v == migration.version) {
            continue;
        }
        let started = Instant::now();
        sqlx::raw_sql(sqlx::AssertSqlSafe(migration.sql.as_str().to_owned()))
            .execute(&mut *tx)
            .await
            .map_err(|source| MigrateError::Failed {
                version: migration.version,
                description: migration.description.to_string(),
                source,
            })?;
        sqlx::query(queries::MIGRATIONS_RECORD)
            .persistent(false)
            .bind(migration.version)
            .bind(&*migration.description)
            .bind(&*migration.checksum)
            .bind(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            "migration applied"
        );
    }
    tx.commit().await?;
    Ok(())
}

/// Moves the rows of our migrations from sqlx's default table, where versions before 0.2
/// kept them, into ours: same version and checksum only, so an application's own rows there
/// stay untouched.
async fn adopt_legacy_history(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<(), sqlx::Error> {
    let (_, legacy): (bool, bool) = sqlx::query_as(queries::MIGRATIONS_TABLES_EXIST)
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    if !legacy {
        return Ok(());
    }
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(queries::MIGRATIONS_LEGACY_ROWS)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    let ours: Vec<i64> = rows
        .iter()
        .filter(|(version, checksum)| {
            migrator
                .iter()
                .any(|m| m.version == *version && *m.checksum == checksum[..])
        })
        .map(|(version, _)| *version)
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    sqlx::query(queries::MIGRATIONS_ADOPT_LEGACY)
        .persistent(false)
        .bind(&ours)
        .execute(&mut *conn)
        .await?;
    tracing::info!(
        migrations = ours.len(),
        "moved workflow-worker's migration history from _sqlx_migrations to {MIGRATIONS_TABLE}"
    );
    Ok(())
}

/// The newest migration version the database has, `None` when it has none of ours.
pub(super) async fn applied_version(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    let (ours, legacy): (bool, bool) = sqlx::query_as(queries::MIGRATIONS_TABLES_EXIST)
        .fetch_one(db)
        .await?;
    let query = match (ours, legacy) {
        (true, _) => queries::MIGRATIONS_VERSION,
        (false, true) => queries::MIGRATIONS_LEGACY_VERSION,
        (false, false) => return Ok(None),
    };
    sqlx::query_scalar(query).fetch_one(db).await
}
