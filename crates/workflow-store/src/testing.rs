//! Test support: a fresh, migrated database per test, so tests run in parallel.
//!
//! [`TestDatabase`] is a PostgreSQL database on the server at `DATABASE_URL` (default
//! [`DEFAULT_TEST_DATABASE_URL`]); [`TestSqlite`] is an SQLite file in a fresh temporary
//! directory. Both are removed when dropped; set `KEEP_TEST_DATABASES=1` to keep them for
//! inspection.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use workflow_worker_core::testing::TestStore;
use workflow_worker_core::{ExecutionId, ScheduleId};

use crate::{PgStore, PgStoreOptions, SqliteStore, redact_url};

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

/// How long the first test waits for the server before saying it is not there.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

/// The test server's URL: `DATABASE_URL`, else [`DEFAULT_TEST_DATABASE_URL`].
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// Checks once per test process, within seconds, that the test server answers. The first
/// test to ask prints how to get one when it does not; every other test fails at once with a
/// one-line pointer to that message instead of waiting out its own timeout.
fn require_server(admin_url: &str) {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let reached = REACHABLE.get_or_init(|| {
        let url = admin_url.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let options = PgStoreOptions::default().connect_timeout(REACH_TIMEOUT);
                match PgStore::connect_with(&url, options).await {
                    Ok(store) => {
                        store.pool().close().await;
                        Ok(())
                    }
                    Err(err) => {
                        let message = format!(
                            "cannot reach PostgreSQL at {} ({}).\n\
                             The tests need a PostgreSQL server (13 or newer) they may create \
                             databases on.\n\
                             Point DATABASE_URL at one, for example\n  \
                             DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test --workspace\n\
                             or start one locally, for example\n  \
                             docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16\n  \
                             (or: sudo apt install postgresql)",
                            redact_url(&url),
                            crate::error::chain(&err)
                        );
                        // Once per test run (all the test binaries cargo or nextest starts):
                        // the first to find no server explains, the others say one line.
                        if first_in_this_run(&url) {
                            eprintln!("\n{message}\n");
                        }
                        Err(message)
                    }
                }
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the server check panicked".to_owned()))
    });
    if let Err(message) = reached {
        let first_line = message.lines().next().unwrap_or_default();
        panic!("{first_line} (see the first failing test's output for how to get a server)");
    }
}

/// Whether no test binary of this run (the processes sharing our parent) reported `url`
/// unreachable yet; marks it reported.
fn first_in_this_run(url: &str) -> bool {
    #[cfg(unix)]
    let run = std::os::unix::process::parent_id();
    #[cfg(not(unix))]
    let run = std::process::id();
    let key: u64 = url.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let marker = std::env::temp_dir().join(format!("wfw-no-postgres-{run}-{key:x}"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(marker)
        .is_ok()
}

/// The completed run of one node for each completed execution without runs (see
/// [`SEED_POSTGRES`]).
const SEED_SQLITE_RUNS: &str = r#"
insert into workflow_node_runs
    (execution_id, node_id, node_type, attempt, status, output, started_at, finished_at)
select e.id, 'seeded', 'noop', 1, 'completed', '{}', e.finished_at, e.finished_at
from workflow_executions e
where e.status = 'completed'
  and not exists (select 1 from workflow_node_runs r where r.execution_id = e.id)
"#;

impl TestDatabase {
    /// Creates and migrates a new database. Panics with instructions when no server answers.
    pub async fn create() -> Self {
        let db = Self::create_empty().await;
        db.store
            .migrate()
            .await
            .unwrap_or_else(|err| panic!("cannot migrate test database {}: {err:?}", db.name));
        db
    }

    /// Creates a new database without migrating it.
    pub async fn create_empty() -> Self {
        let admin_url = server_url();
        require_server(&admin_url);
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to {}: {err}", redact_url(&admin_url)));
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
        Self {
            url,
            store,
            name,
            admin_url,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A PgBouncer in transaction mode on a loopback port, in front of a fresh database: what
/// Supabase's pooler (port 6543) is to a Supabase database. Stopped when dropped.
#[derive(Debug)]
pub struct TestPgBouncer {
    /// The database behind it (direct connections).
    pub database: TestDatabase,
    /// `postgres://…` through the pooler, with `pgbouncer=true`.
    pub url: String,
    /// A store connected through the pooler, migrated through it.
    pub store: PgStore,
    process: Child,
    dir: PathBuf,
}

impl TestPgBouncer {
    /// Starts PgBouncer (`pool_mode = transaction`, two server connections, so clients
    /// share them) in front of a new database, and migrates it through the pooler. Panics
    /// naming the package when `pgbouncer` is not installed.
    pub async fn start() -> Self {
        let database = TestDatabase::create_empty().await;
        let server = url::Url::parse(&database.url).expect("test URL parses");
        let dir =
            std::env::temp_dir().join(format!("wfw_bouncer_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let port = free_port();
        let user = server.username();
        let config = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             default_pool_size = 2\n\
             max_client_conn = 200\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            host = server.host_str().unwrap_or("127.0.0.1"),
            server_port = server.port().unwrap_or(5432),
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), config).expect("write pgbouncer.ini");
        std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n"))
            .expect("write userlist");
        let mut command = Command::new("pgbouncer");
        // PgBouncer refuses to run as root; as root, it is told to switch to postgres.
        if is_root() {
            open_to_everyone(&dir);
            command.arg("--user").arg("postgres");
        }
        let process = command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start pgbouncer ({err}): install it (apt-get install pgbouncer)")
            });
        let mut url = server.clone();
        url.set_port(Some(port)).expect("URL takes a port");
        url.set_query(Some("pgbouncer=true"));
        let url = url.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let store = loop {
            match PgStore::connect(&url).await {
                Ok(store) => break store,
                Err(err) if Instant::now() < deadline => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => {
                    let log =
                        std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
                    panic!("pgbouncer did not accept connections: {err}\n{log}")
                }
            }
        };
        assert!(
            store.behind_transaction_pooler(),
            "pgbouncer=true selects transaction mode"
        );
        store
            .migrate()
            .await
            .unwrap_or_else(|err| panic!("cannot migrate through pgbouncer: {err:?}"));
        Self {
            database,
            url,
            store,
            process,
            dir,
        }
    }
}

impl Drop for TestPgBouncer {
    fn drop(&mut self) {
        // Close our connections first, so the database can be dropped.
        let _ = self.process.kill();
        let _ = self.process.wait();
        if !keep() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn open_to_everyone(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for path in [
        dir.to_path_buf(),
        dir.join("pgbouncer.ini"),
        dir.join("userlist.txt"),
    ] {
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
    }
}

/// Inserts `count` executions of workflow `workflow` (by name) with input $4 in one statement:
/// pending (runnable now) or, with `finished`, completed a day ago, each with the completed
/// run of one node, as a history has. For benchmarks and tests that need a large backlog or
/// history quickly; the rows are what plain-SQL inserts and the worker write (the insert
/// triggers put them in their concurrency groups). Returns the number of executions.
const SEED_POSTGRES: &str = r#"
with seeded as (
    insert into workflow_executions
        (workflow_id, workflow_version, status, run_at, output, started_at, finished_at, input)
    select w.id, w.latest_version,
           case when $3 then 'completed' else 'pending' end,
           case when $3 then null else now() end,
           case when $3 then '{}'::jsonb end,
           case when $3 then now() - interval '1 day' end,
           case when $3 then now() - interval '1 day' end,
           $4
    from workflows w, generate_series(1, $2)
    where w.name = $1
    returning id, finished_at
), runs as (
    insert into workflow_node_runs
        (execution_id, node_id, node_type, attempt, status, output, started_at, finished_at)
    select id, 'seeded', 'noop', 1, 'completed', '{}'::jsonb, finished_at, finished_at
    from seeded
    where finished_at is not null
)
select count(*) from seeded
"#;

const SEED_SQLITE: &str = r#"
with recursive n(i) as (select 1 union all select i + 1 from n where i < $2)
insert into workflow_executions
    (workflow_id, workflow_version, status, run_at, output, started_at, finished_at, input)
select w.id, w.latest_version,
       case when $3 then 'completed' else 'pending' end,
       case when $3 then null else cast(unixepoch('subsec') * 1000 as integer) end,
       case when $3 then '{}' end,
       case when $3 then cast((unixepoch('subsec') - 86400) * 1000 as integer) end,
       case when $3 then cast((unixepoch('subsec') - 86400) * 1000 as integer) end,
       $4
from workflows w, n
where w.name = $1
"#;

impl TestDatabase {
    /// Inserts `count` pending executions of `workflow`, or with `finished` completed ones
    /// (each with the completed run of one node); returns how many executions it inserted.
    pub async fn seed_executions(&self, workflow: &str, count: u64, finished: bool) -> u64 {
        self.seed(workflow, count, finished, &serde_json::json!({}))
            .await
    }

    /// Inserts `count` pending executions of `workflow` with `input` in one statement.
    pub async fn seed_pending(&self, workflow: &str, count: u64, input: &serde_json::Value) -> u64 {
        self.seed(workflow, count, false, input).await
    }

    async fn seed(
        &self,
        workflow: &str,
        count: u64,
        finished: bool,
        input: &serde_json::Value,
    ) -> u64 {
        let count = i64::try_from(count).expect("count fits in i64");
        // A million rows take longer than the store's statement timeout allows.
        let mut tx = self.store.pool().begin().await.expect("begin");
        sqlx::query("set local statement_timeout = 0")
            .execute(&mut *tx)
            .await
            .expect("lift the statement timeout");
        let seeded: i64 = sqlx::query_scalar(SEED_POSTGRES)
            .bind(workflow)
            .bind(count)
            .bind(finished)
            .bind(input)
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|err| panic!("cannot seed executions: {err}"));
        let seeded = u64::try_from(seeded).expect("a count");
        // What autovacuum would do soon after a bulk load: fresh statistics for the planner.
        sqlx::query("analyze workflow_executions, workflow_node_runs")
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|err| panic!("cannot analyze: {err}"));
        tx.commit().await.expect("commit the seed");
        seeded
    }
}

impl TestSqlite {
    /// Inserts `count` pending executions of `workflow`, or with `finished` completed ones
    /// (each with the completed run of one node); returns how many executions it inserted.
    pub async fn seed_executions(&self, workflow: &str, count: u64, finished: bool) -> u64 {
        self.seed(workflow, count, finished, &serde_json::json!({}))
            .await
    }

    /// Inserts `count` pending executions of `workflow` with `input` in one statement.
    pub async fn seed_pending(&self, workflow: &str, count: u64, input: &serde_json::Value) -> u64 {
        self.seed(workflow, count, false, input).await
    }

    async fn seed(
        &self,
        workflow: &str,
        count: u64,
        finished: bool,
        input: &serde_json::Value,
    ) -> u64 {
        let count = i64::try_from(count).expect("count fits in i64");
        let seeded = sqlx::query(SEED_SQLITE)
            .bind(workflow)
            .bind(count)
            .bind(finished)
            .bind(input.to_string())
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|err| panic!("cannot seed executions: {err}"))
            .rows_affected();
        if finished {
            sqlx::query(SEED_SQLITE_RUNS)
                .execute(self.store.pool())
                .await
                .unwrap_or_else(|err| panic!("cannot seed node runs: {err}"));
        }
        // What autovacuum would do soon after a bulk load: fresh statistics for the planner.
        sqlx::query("analyze")
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

/// PostgreSQL moves times with plain statements: one simple-protocol statement each, so they
/// work through a transaction-mode pooler too. The ids are UUIDs, safe to inline.
#[async_trait::async_trait]
impl TestStore for PgStore {
    async fn expire_lease(&self, id: ExecutionId) {
        self.move_time(id, "lease_expires_at = now() - interval '1 millisecond'")
            .await;
    }

    async fn backdate_run_at(&self, id: ExecutionId, by: Duration) {
        let set = format!(
            "run_at = run_at - make_interval(secs => {})",
            by.as_secs_f64()
        );
        self.move_time(id, &set).await;
    }

    async fn backdate_finished_at(&self, id: ExecutionId, by: Duration) {
        let set = format!(
            "finished_at = finished_at - make_interval(secs => {})",
            by.as_secs_f64()
        );
        self.move_time(id, &set).await;
    }

    async fn backdate_next_fire_at(&self, id: ScheduleId, by: Duration) {
        let set = format!(
            "next_fire_at = next_fire_at - make_interval(secs => {})",
            by.as_secs_f64()
        );
        self.move_time_of("workflow_schedules", &id.to_string(), &set)
            .await;
    }
}

impl PgStore {
    async fn move_time(&self, id: ExecutionId, set: &str) {
        self.move_time_of("workflow_executions", &id.to_string(), set)
            .await;
    }

    async fn move_time_of(&self, table: &str, id: &str, set: &str) {
        let sql = format!("update {table} set {set} where id = '{id}'");
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(self.pool())
            .await
            .unwrap_or_else(|err| panic!("moving the time of execution {id}: {err}"));
        assert_eq!(done.rows_affected(), 1, "no execution {id}");
    }
}

/// SQLite keeps times as Unix milliseconds.
#[async_trait::async_trait]
impl TestStore for SqliteStore {
    async fn expire_lease(&self, id: ExecutionId) {
        self.move_time(
            id,
            "lease_expires_at = cast(unixepoch('subsec') * 1000 as integer) - 1",
            0,
        )
        .await;
    }

    async fn backdate_run_at(&self, id: ExecutionId, by: Duration) {
        self.move_time(id, "run_at = run_at - ?", millis(by)).await;
    }

    async fn backdate_finished_at(&self, id: ExecutionId, by: Duration) {
        self.move_time(id, "finished_at = finished_at - ?", millis(by))
            .await;
    }

    async fn backdate_next_fire_at(&self, id: ScheduleId, by: Duration) {
        self.move_time_of(
            "workflow_schedules",
            &id.to_string(),
            "next_fire_at = next_fire_at - ?",
            millis(by),
        )
        .await;
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteStore {
    async fn move_time(&self, id: ExecutionId, set: &str, millis: i64) {
        self.move_time_of("workflow_executions", &id.to_string(), set, millis)
            .await;
    }

    async fn move_time_of(&self, table: &str, id: &str, set: &str, millis: i64) {
        let sql = format!("update {table} set {set} where id = '{id}'");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if set.contains('?') {
            query = query.bind(millis);
        }
        let done = query
            .execute(self.pool())
            .await
            .unwrap_or_else(|err| panic!("moving the time of execution {id}: {err}"));
        assert_eq!(done.rows_affected(), 1, "no execution {id}");
    }
}
