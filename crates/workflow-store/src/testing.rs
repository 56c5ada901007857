//! Test support: a fresh, migrated database per test, so tests run in parallel.
//!
//! [`TestDatabase`] is a PostgreSQL database on the server at `DATABASE_URL` (default
//! [`DEFAULT_TEST_DATABASE_URL`]); [`TestSqlite`] is an SQLite file in a fresh temporary
//! directory. Both are removed when dropped; set `KEEP_TEST_DATABASES=1` to keep them for
//! inspection.

use std::path::PathBuf;

use crate::{PgStore, SqliteStore, redact_url};

fn keep() -> bool {
    std::env::var_os("KEEP_TEST_DATABASES").is_some()
}

/// The server tests use when `DATABASE_URL` is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the new database (pass it to the binary under test).
    pub url: String,
    /// A migrated store on it.
    pub store: PgStore,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates and migrates a new database. Panics with instructions when no server answers.
    pub async fn create() -> Self {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let admin = match sqlx::PgPool::connect(&admin_url).await {
            Ok(pool) => pool,
            Err(err) => panic!(
                "cannot reach PostgreSQL at {} ({err}).\n\
                 The tests need a PostgreSQL server (13 or newer) they may create databases on.\n\
                 Point DATABASE_URL at one, for example\n  \
                 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test --workspace\n\
                 or start one locally, for example\n  \
                 docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16\n  \
                 (or: sudo apt install postgresql)",
                redact_url(&admin_url)
            ),
        };
        let name = format!("wfw_test_{}", uuid::Uuid::new_v4().simple());
        let create = format!("create database {name}");
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&admin)
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        admin.close().await;

        let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a valid URL");
        url.set_path(&name);
        let url = url.to_string();
        let store = PgStore::connect(&url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to test database {name}: {err}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|err| panic!("cannot migrate test database {name}: {err:?}"));
        Self {
            url,
            store,
            name,
            admin_url,
        }
    }
}

/// Inserts `count` executions of workflow `workflow` (by name) in one statement: pending
/// (runnable now) or, with `finished`, completed a day ago. For benchmarks that need a large
/// backlog or history quickly; the rows are what plain-SQL inserts and the worker write.
const SEED_POSTGRES: &str = r#"
insert into workflow_executions
    (workflow_id, workflow_version, status, run_at, output, started_at, finished_at)
select w.id, w.latest_version,
       case when $3 then 'completed' else 'pending' end,
       case when $3 then null else now() end,
       case when $3 then '{}'::jsonb end,
       case when $3 then now() - interval '1 day' end,
       case when $3 then now() - interval '1 day' end
from workflows w, generate_series(1, $2)
where w.name = $1
"#;

const SEED_SQLITE: &str = r#"
with recursive n(i) as (select 1 union all select i + 1 from n where i < $2)
insert into workflow_executions
    (workflow_id, workflow_version, status, run_at, output, started_at, finished_at)
select w.id, w.latest_version,
       case when $3 then 'completed' else 'pending' end,
       case when $3 then null else cast(unixepoch('subsec') * 1000 as integer) end,
       case when $3 then '{}' end,
       case when $3 then cast((unixepoch('subsec') - 86400) * 1000 as integer) end,
       case when $3 then cast((unixepoch('subsec') - 86400) * 1000 as integer) end
from workflows w, n
where w.name = $1
"#;

impl TestDatabase {
    /// Inserts `count` pending executions of `workflow`, or with `finished` completed ones,
    /// in one statement; returns how many rows it inserted.
    pub async fn seed_executions(&self, workflow: &str, count: u64, finished: bool) -> u64 {
        let count = i64::try_from(count).expect("count fits in i64");
        let seeded = sqlx::query(SEED_POSTGRES)
            .bind(workflow)
            .bind(count)
            .bind(finished)
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|err| panic!("cannot seed executions: {err}"))
            .rows_affected();
        // What autovacuum would do soon after a bulk load: fresh statistics for the planner.
        sqlx::query("analyze workflow_executions")
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|err| panic!("cannot analyze: {err}"));
        seeded
    }
}

impl TestSqlite {
    /// Inserts `count` pending executions of `workflow`, or with `finished` completed ones,
    /// in one statement; returns how many rows it inserted.
    pub async fn seed_executions(&self, workflow: &str, count: u64, finished: bool) -> u64 {
        let count = i64::try_from(count).expect("count fits in i64");
        let seeded = sqlx::query(SEED_SQLITE)
            .bind(workflow)
            .bind(count)
            .bind(finished)
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|err| panic!("cannot seed executions: {err}"))
            .rows_affected();
        // What autovacuum would do soon after a bulk load: fresh statistics for the planner.
        sqlx::query("analyze workflow_executions")
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|err| panic!("cannot analyze: {err}"));
        seeded
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if keep() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let admin_url = self.admin_url.clone();
        let drop = format!("drop database if exists {} with (force)", self.name);
        // Drop runs inside the test's runtime, which cannot block on async work: use a
        // runtime of its own on a plain thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(drop))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// An SQLite database file created for one test.
#[derive(Debug)]
pub struct TestSqlite {
    /// The URL of the file (pass it to the binary under test).
    pub url: String,
    /// A migrated store on it.
    pub store: SqliteStore,
    dir: PathBuf,
}

impl TestSqlite {
    /// Creates and migrates a new database file in a fresh temporary directory.
    pub async fn create() -> Self {
        let dir = std::env::temp_dir().join(format!("wfw_test_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let url = format!("sqlite://{}", dir.join("workflows.db").display());
        let store = SqliteStore::connect(&url)
            .await
            .unwrap_or_else(|err| panic!("cannot open {url}: {err:?}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|err| panic!("cannot migrate {url}: {err:?}"));
        Self { url, store, dir }
    }
}

impl Drop for TestSqlite {
    fn drop(&mut self) {
        if keep() {
            eprintln!("keeping test database {}", self.url);
        } else if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {err}", self.dir.display());
        }
    }
}
