//! The PostgreSQL store's connection pool against a real server. Connections in steady use go
//! out without a ping (a round trip saved per statement); this checks the other half of that
//! bargain: one the server closed while it sat idle is noticed and replaced before use.

use std::time::{Duration, Instant};

use sqlx::Connection;
use workflow_worker_core::Store;
use workflow_worker_store::postgres::PING_IF_IDLE_FOR;
use workflow_worker_store::testing::TestDatabase;
use workflow_worker_store::{PgStore, PgStoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closed_while_idle_is_replaced_before_use() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect_with(&db.url, PgStoreOptions::default().max_connections(1))
        .await
        .unwrap();
    store
        .queue_stats()
        .await
        .expect("the first call opens the connection");

    // The server closes every other connection to the database, as a restart, an idle
    // timeout or a pooler would.
    let mut killer = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = current_database() and pid <> pg_backend_pid()",
    )
    .execute(&mut killer)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and pid <> pg_backend_pid()",
        )
        .fetch_one(&mut killer)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} connections outlived their termination"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // What is under test is the pool's wall-clock idle time: wait it out for real.
    tokio::time::sleep(PING_IF_IDLE_FOR + Duration::from_millis(200)).await;
    store
        .queue_stats()
        .await
        .expect("the dead connection is pinged, dropped and replaced, not handed out");
}
