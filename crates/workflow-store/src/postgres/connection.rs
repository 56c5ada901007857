//! How a [`PgStore`](super::PgStore) reaches its server: connection options (TLS as libpq
//! reads `sslmode`, timeouts, pool size, `application_name`) and the statement path that works
//! behind a transaction-mode pooler.
//!
//! Behind PgBouncer or Supavisor in transaction mode, consecutive statements of one client
//! connection may reach different server connections whenever no transaction is open. sqlx
//! prepares a statement and executes it in two round trips, and caches named prepared
//! statements per client connection; both break there (`prepared statement "sqlx_s_1"
//! already exists`). In [`PoolerMode::Transaction`] every statement is unnamed and runs inside
//! a transaction of its own (or of its store call), so its parse and execute reach one server
//! and nothing outlives the transaction; nothing depends on session state either (no LISTEN,
//! no session settings: the statement timeout is `set local` in each transaction).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Connection, Database, Either, Execute, Executor, Postgres, Transaction};

/// How many connections a [`PgStore`](super::PgStore) opens at most by default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// How long connecting (TCP, TLS, authentication) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one statement may run by default before the server cancels it.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled connection that sat idle longer than this is pinged before it is handed out, as
/// pgx's pool does: the server, a pooler or a firewall may have closed it meanwhile. One in
/// steady use was just proven alive by its last statement, so it goes out at once (sqlx's
/// default pings before every use: a round trip more for every statement of a busy worker).
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The pool of at most `max_connections`, waiting up to `acquire_timeout` for a connection,
/// pinging those idle for [`PING_IF_IDLE_FOR`] or more before use.
pub(super) fn pool_options(max_connections: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    // A dead connection fails here and is closed; the pool takes another.
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Whether the connection goes through a pooler that does not keep a server connection for a
/// client between transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PoolerMode {
    /// [`Transaction`](Self::Transaction) when the URL names a known transaction pooler
    /// (Supabase's pooler on port 6543, a Neon `-pooler` host) or carries `pgbouncer=true`;
    /// [`Direct`](Self::Direct) otherwise.
    #[default]
    Detect,
    /// A direct connection, or a session-mode pooler: prepared statements are cached and
    /// LISTEN works.
    Direct,
    /// A transaction-mode pooler (PgBouncer `pool_mode = transaction`, Supabase port 6543):
    /// unnamed statements, each inside a transaction; no wake-ups (LISTEN), so workers poll.
    Transaction,
}

impl FromStr for PoolerMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "detect" | "auto" => Ok(Self::Detect),
            "direct" | "none" | "session" => Ok(Self::Direct),
            "transaction" => Ok(Self::Transaction),
            other => Err(format!(
                "unknown pooler mode \"{other}\": expected detect, direct or transaction"
            )),
        }
    }
}

/// How a [`PgStore`](super::PgStore) connects. `PgStoreOptions::default()` is what
/// [`PgStore::connect`](super::PgStore::connect) uses.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    max_connections: u32,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
    application_name: Option<String>,
    pooler: PoolerMode,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            application_name: None,
            pooler: PoolerMode::Detect,
        }
    }
}

impl PgStoreOptions {
    /// Connections the pool opens at most. Size it for the worker's concurrency plus a few.
    /// Defaults to [`DEFAULT_MAX_CONNECTIONS`]; at least 1.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long connecting and waiting for a free pooled connection may take before the
    /// call fails as unavailable. Defaults to [`DEFAULT_CONNECT_TIMEOUT`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one statement may run before the server cancels it (`statement_timeout`);
    /// `None` for no limit. Migrations are not limited. Defaults to
    /// [`DEFAULT_STATEMENT_TIMEOUT`].
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// The `application_name` of every connection, shown in `pg_stat_activity`; an
    /// `application_name` in the URL wins. The binary passes its worker id.
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Whether a transaction-mode pooler is in the way. Defaults to [`PoolerMode::Detect`].
    #[must_use]
    pub fn pooler(mut self, mode: PoolerMode) -> Self {
        self.pooler = mode;
        self
    }

    /// The connect timeout these options set.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(super) fn max_connections_value(&self) -> u32 {
        self.max_connections
    }

    pub(super) fn statement_timeout_value(&self) -> Option<Duration> {
        self.statement_timeout
    }
}

/// What [`parse`] makes of a URL and options.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) connect: PgConnectOptions,
    /// The same server without the statement timeout, for migrations.
    pub(super) migrate: PgConnectOptions,
    pub(super) transaction_pooler: bool,
}

/// Reads `url` the way libpq does where sqlx differs, and applies `options`.
///
/// - `sslmode` defaults to `prefer`; `verify-ca` and `verify-full` without `sslrootcert` use
///   `~/.postgresql/root.crt` as libpq does (and fail naming it when it is missing);
///   `sslrootcert=system` trusts the system's root certificates (libpq 16).
/// - `pgbouncer=true` (the marker Supabase's and Prisma's pooler URLs carry) selects
///   [`PoolerMode::Transaction`] and is not sent to the server.
pub(super) fn parse(url: &str, options: &PgStoreOptions) -> Result<Target, sqlx::Error> {
    let before_query = url.split('?').next().unwrap_or(url);
    if url.contains('#') || before_query.matches('@').count() > 1 {
        return Err(sqlx::Error::Configuration(
            "the URL has a character that must be percent-encoded, probably in the password \
             (# as %23, @ as %40, / as %2F, ? as %3F)"
                .into(),
        ));
    }
    let mut parsed = url::Url::parse(url).map_err(|err| sqlx::Error::Configuration(err.into()))?;
    let mut pgbouncer = false;
    let mut system_roots = false;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(key, value)| match key.as_ref() {
            "pgbouncer" => {
                pgbouncer = value == "true" || value == "1";
                false
            }
            "sslrootcert" if value == "system" => {
                system_roots = true;
                false
            }
            _ => true,
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    let mut connect = PgConnectOptions::from_str(parsed.as_str())?;
    if system_roots {
        connect = connect.ssl_root_cert_from_pem(system_root_certificates()?);
    } else if matches!(
        connect.get_ssl_mode(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull
    ) && !has_root_cert(&parsed)
    {
        let default = default_root_cert().ok_or_else(|| {
            sqlx::Error::Configuration(
                "sslmode verify-ca and verify-full need sslrootcert (a file, or \"system\") \
                 when there is no home directory"
                    .into(),
            )
        })?;
        if !default.exists() {
            return Err(sqlx::Error::Configuration(
                format!(
                    "root certificate file \"{}\" does not exist; set sslrootcert to the \
                     server's CA certificate, or sslrootcert=system for the system's roots",
                    default.display()
                )
                .into(),
            ));
        }
        connect = connect.ssl_root_cert(default);
    }
    let host = connect.get_host().to_owned();
    let transaction_pooler = match options.pooler {
        PoolerMode::Transaction => true,
        PoolerMode::Direct => false,
        PoolerMode::Detect => {
            pgbouncer
                || (host.ends_with(".pooler.supabase.com") && connect.get_port() == 6543)
                || host
                    .split('.')
                    .next()
                    .is_some_and(|h| h.ends_with("-pooler"))
        }
    };
    if connect.get_application_name().is_none()
        && let Some(name) = &options.application_name
    {
        connect = connect.application_name(name);
    }
    let migrate = connect.clone();
    if transaction_pooler {
        // PgBouncer refuses startup parameters it does not know, such as these.
        connect = connect.extra_float_digits(None);
    } else if let Some(timeout) = options.statement_timeout {
        connect = connect.options([("statement_timeout", timeout.as_millis().to_string())]);
    }
    let migrate = if transaction_pooler {
        migrate.extra_float_digits(None)
    } else {
        migrate
    };
    Ok(Target {
        connect,
        migrate,
        transaction_pooler,
    })
}

fn has_root_cert(url: &url::Url) -> bool {
    url.query_pairs()
        .any(|(k, _)| matches!(k.as_ref(), "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
        || std::env::var_os("PGSSLROOTCERT").is_some()
}

/// libpq's default root certificate file.
fn default_root_cert() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
}

/// The system's trusted roots as PEM, for `sslrootcert=system`.
fn system_root_certificates() -> Result<Vec<u8>, sqlx::Error> {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
        "/etc/ssl/ca-bundle.pem",
    ];
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .or_else(|| BUNDLES.iter().map(PathBuf::from).find(|path| path.exists()))
        .ok_or_else(|| {
            sqlx::Error::Configuration(
                "sslrootcert=system: no system certificate bundle found (set SSL_CERT_FILE)".into(),
            )
        })?;
    std::fs::read(&path).map_err(|err| {
        sqlx::Error::Configuration(format!("cannot read {}: {err}", path.display()).into())
    })
}

/// The pool and the way statements are sent through it. `&Db` is a sqlx [`Executor`]:
/// directly the pool's, or behind a transaction pooler one transaction per statement.
#[derive(Debug, Clone)]
pub(super) struct Db {
    pub(super) pool: PgPool,
    /// Behind a transaction-mode pooler: unnamed statements inside transactions.
    pub(super) transaction_pooler: bool,
    /// `begin` plus `set local statement_timeout`, behind a transaction pooler.
    begin: Option<String>,
}

impl Db {
    pub(super) fn new(
        pool: PgPool,
        transaction_pooler: bool,
        statement_timeout: Option<Duration>,
    ) -> Self {
        let begin = statement_timeout.filter(|_| transaction_pooler).map(|t| {
            format!(
                "begin; set local statement_timeout = {}",
                t.as_millis().max(1)
            )
        });
        Self {
            pool,
            transaction_pooler,
            begin,
        }
    }

    /// Begins a transaction whose statements are sent the way this connection needs.
    pub(super) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let tx = match &self.begin {
            Some(begin) => {
                self.pool
                    .begin_with(sqlx::AssertSqlSafe(begin.clone()))
                    .await?
            }
            None => self.pool.begin().await?,
        };
        Ok(Tx {
            tx,
            prepared: !self.transaction_pooler,
        })
    }
}

/// A transaction of a [`Db`]; `&mut Tx` is an [`Executor`] like `&mut PgConnection`.
#[derive(Debug)]
pub(super) struct Tx {
    tx: Transaction<'static, Postgres>,
    prepared: bool,
}

impl Tx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// A query sent as an unnamed statement: nothing of it stays on the server connection.
struct Unprepared<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unprepared<E> {
    fn sql(self) -> sqlx::SqlStr {
        self.0.sql()
    }

    fn statement(&self) -> Option<&<Postgres as Database>::Statement> {
        None
    }

    fn take_arguments(
        &mut self,
    ) -> Result<Option<<Postgres as Database>::Arguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

type Step = Either<<Postgres as Database>::QueryResult, <Postgres as Database>::Row>;

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooler {
            return self.pool.fetch_many(query);
        }
        Box::pin(
            futures_util::stream::once(async move {
                let mut tx = self.begin().await?;
                let steps: Vec<Step> = (&mut tx).fetch_many(query).try_collect().await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(futures_util::stream::iter(steps).map(Ok))
            })
            .try_flatten(),
        )
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<<Postgres as Database>::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooler {
            return self.pool.fetch_optional(query);
        }
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let row = (&mut tx).fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [<Postgres as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Postgres as Database>::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}

impl<'c> Executor<'c> for &'c mut Tx {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.prepared {
            (&mut *self.tx).fetch_many(query)
        } else {
            (&mut *self.tx).fetch_many(Unprepared(query))
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<<Postgres as Database>::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.prepared {
            (&mut *self.tx).fetch_optional(query)
        } else {
            (&mut *self.tx).fetch_optional(Unprepared(query))
        }
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [<Postgres as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Postgres as Database>::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.tx).prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.tx).describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        parse(url, &PgStoreOptions::default()).unwrap()
    }

    #[test]
    fn transaction_poolers_are_detected_from_the_url() {
        for url in [
            "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
            "postgres://app:pw@ep-cool-name-123456-pooler.us-east-2.aws.neon.tech/db",
            "postgres://app@127.0.0.1:6432/db?pgbouncer=true",
        ] {
            assert!(target(url).transaction_pooler, "{url}");
        }
        for url in [
            // Supabase's session-mode pooler port and its direct host keep sessions.
            "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
            "postgresql://postgres:pw@db.abcd.supabase.co:5432/postgres",
            "postgres://app@127.0.0.1:5432/db",
        ] {
            assert!(!target(url).transaction_pooler, "{url}");
        }
        let forced = parse(
            "postgres://app@127.0.0.1/db",
            &PgStoreOptions::default().pooler(PoolerMode::Transaction),
        )
        .unwrap();
        assert!(forced.transaction_pooler);
        let direct = parse(
            "postgres://app@127.0.0.1/db?pgbouncer=true",
            &PgStoreOptions::default().pooler(PoolerMode::Direct),
        )
        .unwrap();
        assert!(!direct.transaction_pooler);
    }

    #[test]
    fn the_pooler_marker_is_not_sent_and_the_statement_timeout_is_a_startup_option() {
        let direct = target("postgres://app@127.0.0.1/db?sslmode=disable&pgbouncer=false");
        assert!(matches!(direct.connect.get_ssl_mode(), PgSslMode::Disable));
        assert_eq!(
            direct.connect.get_options(),
            Some("-c statement_timeout=30000")
        );
        // Migrations are not limited.
        assert_eq!(direct.migrate.get_options(), None);
        // Behind a pooler the timeout is `set local` per transaction instead.
        let pooled = target("postgres://app@127.0.0.1/db?pgbouncer=true");
        assert_eq!(pooled.connect.get_options(), None);
    }

    #[test]
    fn verify_modes_without_a_root_certificate_name_libpqs_default_file() {
        let default = default_root_cert().unwrap();
        let parsed = parse(
            "postgres://app@127.0.0.1/db?sslmode=verify-full",
            &PgStoreOptions::default(),
        );
        if default.exists() {
            assert!(parsed.is_ok());
        } else {
            let message = parsed.unwrap_err().to_string();
            assert!(
                message.contains(&format!(
                    "root certificate file \"{}\" does not exist",
                    default.display()
                )),
                "{message}"
            );
        }
        // libpq 16's `sslrootcert=system`: the system's roots, no file of one's own.
        if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
            let system = parse(
                "postgres://app@127.0.0.1/db?sslmode=verify-full&sslrootcert=system",
                &PgStoreOptions::default(),
            );
            assert!(system.is_ok(), "{system:?}");
        }
    }

    #[test]
    fn unescaped_password_characters_are_refused_with_a_hint() {
        let err = parse(
            "postgresql://postgres.abcd:p@ss#w0rd@db.example:6543/postgres",
            &PgStoreOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("percent-encoded"), "{err}");
    }

    #[test]
    fn pooler_modes_parse_by_name() {
        assert_eq!("transaction".parse(), Ok(PoolerMode::Transaction));
        assert_eq!("direct".parse(), Ok(PoolerMode::Direct));
        assert_eq!("detect".parse(), Ok(PoolerMode::Detect));
        assert!(
            "statement"
                .parse::<PoolerMode>()
                .unwrap_err()
                .contains("expected detect")
        );
    }
}
