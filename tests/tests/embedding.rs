//! An application that embeds the worker keeps its own sqlx migrations in the same database:
//! our history lives in `_workflow_worker_migrations`, theirs in `_sqlx_migrations`, in either
//! order and again on every start. Installs from before our own table move their history over.

use serde_json::json;
use workflow_worker_core::testing::fixture;
use workflow_worker_core::{NodeRegistry, StartExecutionParams, Store};
use workflow_worker_store::testing::{TestDatabase, TestSqlite};

/// The application's migrations (tests/fixtures/app_migrations).
static APP: sqlx::migrate::Migrator = sqlx::migrate!("fixtures/app_migrations");
/// Our PostgreSQL migrations as releases before our own table applied them: through sqlx's
/// migrator, into `_sqlx_migrations`.
static LEGACY_POSTGRES: sqlx::migrate::Migrator =
    sqlx::migrate!("../crates/workflow-store/migrations/postgres");
static LEGACY_SQLITE: sqlx::migrate::Migrator =
    sqlx::migrate!("../crates/workflow-store/migrations/sqlite");

async fn versions(pool: &sqlx::PgPool, table: &str) -> Vec<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select version from {table} order by version"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn works(store: &impl Store) {
    fixture::hello().save(store, &NodeRegistry::builtin()).await;
    store
        .start_execution(StartExecutionParams::new("hello", json!({})))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_migrations_and_ours_run_side_by_side() {
    let db = TestDatabase::create_empty().await;
    let pool = db.store.pool();
    // The application first, then us, then both again as on every restart.
    APP.run(pool).await.unwrap();
    db.store.migrate().await.unwrap();
    APP.run(pool).await.unwrap();
    db.store.migrate().await.unwrap();

    assert_eq!(versions(pool, "_sqlx_migrations").await, vec![1, 2]);
    let ours = versions(pool, workflow_worker_store::MIGRATIONS_TABLE).await;
    let schema = db.store.schema_version().await.unwrap();
    assert_eq!(ours, (1..=schema.required).collect::<Vec<_>>());
    assert!(schema.is_current());
    works(&db.store).await;
    sqlx::query("insert into accounts (id, name) values (1, 'Ada')")
        .execute(pool)
        .await
        .unwrap();

    // Us first on another database.
    let other = TestDatabase::create_empty().await;
    other.store.migrate().await.unwrap();
    APP.run(other.store.pool()).await.unwrap();
    assert_eq!(
        versions(other.store.pool(), "_sqlx_migrations").await,
        vec![1, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_from_before_our_own_table_keeps_its_history() {
    let db = TestDatabase::create_empty().await;
    let pool = db.store.pool();
    LEGACY_POSTGRES.run(pool).await.unwrap();
    works(&db.store).await;

    db.store.migrate().await.unwrap();
    // Every row moved: none applied twice (that would fail on existing tables), none lost.
    assert!(versions(pool, "_sqlx_migrations").await.is_empty());
    let ours = versions(pool, workflow_worker_store::MIGRATIONS_TABLE).await;
    let legacy: Vec<i64> = LEGACY_POSTGRES.iter().map(|m| m.version).collect();
    assert_eq!(ours, legacy);
    let executions: i64 = sqlx::query_scalar("select count(*) from workflow_executions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(executions, 1, "the data stayed");
    // Now the application can bring its own migrations.
    APP.run(pool).await.unwrap();
    db.store.migrate().await.unwrap();
    works(&db.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_file_from_before_our_own_table_keeps_its_history() {
    let db = TestSqlite::create().await;
    let pool = db.store.pool();
    // Make the file look like an old one: history in sqlx's default table only.
    sqlx::query("alter table _workflow_worker_migrations rename to _sqlx_migrations")
        .execute(pool)
        .await
        .unwrap();
    LEGACY_SQLITE.run(pool).await.unwrap();
    db.store.migrate().await.unwrap();

    let left: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let ours: Vec<i64> =
        sqlx::query_scalar("select version from _workflow_worker_migrations order by version")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        ours,
        LEGACY_SQLITE.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    works(&db.store).await;
}
