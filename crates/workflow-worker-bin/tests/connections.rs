//! Where users' PostgreSQL lives: TLS as libpq reads `sslmode`, a transaction-mode pooler
//! (PgBouncer, as Supabase's port 6543 is), a server that never answers, and connections an
//! operator can find in `pg_stat_activity`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Worker, bin, get, save, wait_for};
use serde_json::json;
use workflow_worker_core::{ExecutionStatus, StartExecutionParams, Store};
use workflow_worker_store::PgStore;
use workflow_worker_store::testing::{TestDatabase, TestPgBouncer};

/// How a connection attempt ended: refused, or connected with or without TLS.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Refused,
    Connected { ssl: bool },
}

/// What libpq (through `psql`) makes of `url`: the reference for `sslmode`.
fn libpq(url: &str) -> Outcome {
    let output = Command::new("psql")
        .args([
            url,
            "-XAtc",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ])
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .output()
        .expect(
            "psql (libpq's client) is needed as the reference: apt-get install postgresql-client",
        );
    if output.status.success() {
        Outcome::Connected {
            ssl: String::from_utf8_lossy(&output.stdout).trim() == "t",
        }
    } else {
        Outcome::Refused
    }
}

/// What our store makes of `url`.
async fn ours(url: &str) -> Outcome {
    match PgStore::connect(url).await {
        Ok(store) => {
            let ssl: bool =
                sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            store.pool().close().await;
            Outcome::Connected { ssl }
        }
        Err(_) => Outcome::Refused,
    }
}

/// Every `sslmode`, with and without the server's certificate as `sslrootcert`, by IP and
/// by the name in the certificate: our connection ends as libpq's does, encrypted or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_and_sslrootcert_mean_what_they_mean_to_libpq() {
    let db = TestDatabase::create().await;
    let ssl_on: String = sqlx::query_scalar("show ssl")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(ssl_on, "on", "this test needs a server with ssl = on");
    let cert: String = sqlx::query_scalar("show ssl_cert_file")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    let base = url::Url::parse(&db.url).unwrap();
    let mut hosts = vec![base.host_str().unwrap().to_owned()];
    if hosts[0] == "127.0.0.1" {
        // The name a certificate for this machine carries.
        hosts.push("localhost".to_owned());
    }
    let mut root_certs = vec![None];
    if std::fs::metadata(&cert).is_ok() {
        root_certs.push(Some(cert.clone()));
    }
    let mut compared = 0;
    let mut encrypted = 0;
    for host in &hosts {
        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            for root in &root_certs {
                let mut url = base.clone();
                url.set_host(Some(host)).unwrap();
                url.query_pairs_mut().append_pair("sslmode", mode);
                if let Some(root) = root {
                    url.query_pairs_mut().append_pair("sslrootcert", root);
                }
                let url = url.to_string();
                let expected = libpq(&url);
                assert_eq!(ours(&url).await, expected, "{url}");
                compared += 1;
                if expected == (Outcome::Connected { ssl: true }) {
                    encrypted += 1;
                }
            }
        }
    }
    assert!(compared >= 12, "{compared} cases");
    assert!(encrypted >= 4, "only {encrypted} cases were encrypted");
}

/// A worker connected with `sslmode=require` runs an execution, and every connection it
/// holds is encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_sslmode_require_runs_over_encrypted_connections() {
    let db = TestDatabase::create().await;
    save(
        &db.store,
        json!({
            "name": "tls",
            "nodes": [{"id": "start", "type": "trigger"}, {"id": "wait", "type": "delay", "config": {"seconds": 0}}],
            "edges": [{"from": "start", "to": "wait"}]
        }),
    )
    .await;
    let url = format!("{}?sslmode=require", db.url);
    let worker_id = format!("tls-{}", uuid::Uuid::new_v4().simple());
    let worker = Worker::run(&url, &["--poll-interval", "0.1", "--worker-id", &worker_id]);
    let started = db
        .store
        .start_execution(StartExecutionParams::new("tls", json!({})))
        .await
        .unwrap();
    wait_for(
        "the execution to complete",
        Duration::from_secs(60),
        || async {
            let execution = db
                .store
                .get_execution(started.execution.id)
                .await
                .ok()?
                .execution;
            (execution.status == ExecutionStatus::Completed).then_some(())
        },
    )
    .await;
    let (connections, encrypted): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where s.ssl)
         from pg_stat_activity a
         join pg_stat_ssl s on s.pid = a.pid
         where a.application_name = $1",
    )
    .bind(&worker_id)
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    worker.stop();
    assert!(connections > 0, "no connection named {worker_id}");
    assert_eq!(
        encrypted, connections,
        "plaintext connections of {worker_id}"
    );
}

/// Through PgBouncer in transaction mode (two server connections shared by every client),
/// the binary migrates, saves, starts and runs with two workers, which poll with wake-ups off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_run_through_a_transaction_mode_pooler() {
    let bouncer = TestPgBouncer::start().await;
    let url = bouncer.url.as_str();
    let run = |args: &[&str]| {
        let output = bin(Some(url)).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(&["migrate"]);
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hello.json");
    run(&["workflow", "save", hello]);
    let ids: Vec<String> = (0..20)
        .map(|_| run(&["start", "hello"]).trim().to_owned())
        .collect();
    let workers = [
        Worker::run(url, &["--poll-interval", "0.1", "--concurrency", "4"]),
        Worker::run(url, &["--poll-interval", "0.1", "--concurrency", "4"]),
    ];
    for id in &ids {
        let id = id.parse().unwrap();
        wait_for(
            "every execution to complete",
            Duration::from_secs(120),
            || async {
                let execution = bouncer.store.get_execution(id).await.ok()?.execution;
                (execution.status == ExecutionStatus::Completed).then_some(())
            },
        )
        .await;
    }
    let listed = run(&[
        "executions",
        "list",
        "--status",
        "completed",
        "--limit",
        "100",
    ]);
    assert_eq!(listed.lines().count(), ids.len(), "{listed}");
    for worker in workers {
        let log = worker.stop();
        assert!(log.contains("transaction-mode pooler"), "{log}");
        assert!(!log.contains("ERROR"), "{log}");
        assert!(!log.contains("prepared statement"), "{log}");
    }
}

/// A server that accepts connections and never answers: `migrate` fails within its connect
/// timeout naming what it waited for, a worker's `/healthz` answers while it waits, with
/// `/readyz` saying it is still connecting, and a SIGTERM stops the worker, or `ui`, waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_health_still_answers() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accept and hold every connection without a word, counting them.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(16) {
            held.push(stream);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        held
    });
    let url = format!("postgres://postgres:s3cret@127.0.0.1:{port}/app");

    let started = Instant::now();
    let output = bin(Some(&url))
        .args(["migrate", "--connect-timeout", "1s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&format!(
            "no answer from 127.0.0.1:{port} within 1s (connect timeout)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("postgres://postgres:***@127.0.0.1:{port}/app")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let worker = Worker::run(
        &url,
        &[
            "--metrics-addr",
            &addr.to_string(),
            "--connect-timeout",
            "10m",
        ],
    );
    let health = wait_for("/healthz", Duration::from_secs(30), || {
        get(addr, "/healthz")
    })
    .await;
    assert_eq!(health.0, 200);
    let ready = get(addr, "/readyz").await.unwrap();
    assert_eq!(ready, (503, "connecting to the database\n".to_owned()));
    let log = worker.stop();
    assert!(
        log.contains("connecting to the database and applying migrations"),
        "{log}"
    );

    // `ui` logs nothing before it connects: its connection reaching the server says it is
    // waiting there.
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let ui = Worker::spawn(bin(Some(&url)).args([
        "ui",
        "--addr",
        "127.0.0.1:0",
        "--connect-timeout",
        "10m",
    ]));
    wait_for("ui to connect", Duration::from_secs(30), || async {
        (accepted.load(std::sync::atomic::Ordering::SeqCst) > before).then_some(())
    })
    .await;
    common::signal(ui.pid(), "TERM");
    let log = ui.stopped();
    assert!(log.contains("shutdown requested"), "{log}");
    drop(held);
}

/// `--max-connections` and the worker id as `application_name`: an operator finds the
/// worker's connections in `pg_stat_activity`, never more than the pool allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_connections_carry_the_worker_id_and_respect_max_connections() {
    let db = TestDatabase::create().await;
    let worker_id = format!("pool-{}", uuid::Uuid::new_v4().simple());
    let worker = Worker::run(
        &db.url,
        &[
            "--poll-interval",
            "0.05",
            "--worker-id",
            &worker_id,
            "--max-connections",
            "2",
            "--wakeups",
            "false",
        ],
    );
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && seen == 0 {
        seen = count_named(&db, &worker_id).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut most = seen;
    for _ in 0..20 {
        most = most.max(count_named(&db, &worker_id).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    worker.stop();
    assert!(seen > 0, "no connection named {worker_id}");
    assert!(most <= 2, "{most} connections with --max-connections 2");
}

async fn count_named(db: &TestDatabase, name: &str) -> i64 {
    sqlx::query_scalar("select count(*) from pg_stat_activity where application_name = $1")
        .bind(name)
        .fetch_one(db.store.pool())
        .await
        .unwrap()
}
