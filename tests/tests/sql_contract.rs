//! The schema is a public contract: another program, with no Rust client, starts executions
//! with a plain SQL `insert into workflow_executions`, and the worker runs them.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;
use workflow_worker_core::testing::fixture::{self, run_until_terminal};
use workflow_worker_core::{
    ExecutionId, ExecutionStatus, NodeRunStatus, StartExecutionParams, Store, WorkflowWorker,
};
use workflow_worker_store::testing::TestDatabase;

const WAIT: Duration = Duration::from_secs(30);

/// Another program's connection: plain SQL only.
async fn other_program(db: &TestDatabase) -> sqlx::PgPool {
    sqlx::PgPool::connect(&db.url).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_inserted_with_plain_sql_are_picked_up_and_completed() {
    let db = TestDatabase::create().await;
    let saved = fixture::hello()
        .save(&db.store, &workflow_worker_core::NodeRegistry::builtin())
        .await;
    let sql = other_program(&db).await;

    // The minimal insert: a workflow and an input; everything else has a default.
    let (pending, status, version): (Uuid, String, i32) = sqlx::query_as(
        "insert into workflow_executions (workflow_id, input) values ($1, $2) \
         returning id, status, workflow_version",
    )
    .bind(saved.workflow_id.0)
    .bind(json!({"from": "sql"}))
    .fetch_one(&sql)
    .await
    .unwrap();
    assert_eq!((status.as_str(), version), ("pending", 1));

    // The seed's API inserts rows already marked running, with no lease.
    let (running,): (Uuid,) = sqlx::query_as(
        "insert into workflow_executions (workflow_id, input, status) \
         values ($1, '{}', 'running') returning id",
    )
    .bind(saved.workflow_id.0)
    .fetch_one(&sql)
    .await
    .unwrap();

    let ids = [ExecutionId(pending), ExecutionId(running)];
    let worker = WorkflowWorker::new(db.store.clone()).poll_interval(Duration::from_millis(50));
    let details = run_until_terminal(worker, &db.store, &ids, WAIT).await;
    for detail in &details {
        assert_eq!(
            detail.execution.status,
            ExecutionStatus::Completed,
            "{detail:?}"
        );
        assert_eq!(detail.node_runs.len(), 2);
        assert!(
            detail
                .node_runs
                .iter()
                .all(|r| r.status == NodeRunStatus::Completed)
        );
        assert_eq!(
            detail.node_runs[1].output.as_ref().unwrap()["stdout"],
            "Hello from workflow!\n"
        );
    }
    assert_eq!(details[0].node_runs[0].output, Some(json!({"from": "sql"})));

    // What the other program reads back is the documented columns.
    let (status, output, finished): (String, serde_json::Value, bool) = sqlx::query_as(
        "select status, output, finished_at is not null from workflow_executions where id = $1",
    )
    .bind(pending)
    .fetch_one(&sql)
    .await
    .unwrap();
    assert_eq!(status, "completed");
    assert_eq!(output["stdout"], "Hello from workflow!\n");
    assert!(finished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_inserts_are_pinned_to_the_latest_version_and_checked() {
    let db = TestDatabase::create().await;
    let registry = workflow_worker_core::NodeRegistry::builtin();
    let v1 = fixture::hello().save(&db.store, &registry).await;
    fixture::hello().save(&db.store, &registry).await;
    let sql = other_program(&db).await;

    let (version,): (i32,) = sqlx::query_as(
        "insert into workflow_executions (workflow_id) values ($1) returning workflow_version",
    )
    .bind(v1.workflow_id.0)
    .fetch_one(&sql)
    .await
    .unwrap();
    assert_eq!(version, 2, "pinned to the latest version at insert time");

    let unknown = sqlx::query("insert into workflow_executions (workflow_id) values ($1)")
        .bind(Uuid::new_v4())
        .execute(&sql)
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("does not exist"), "{unknown}");

    let bad_status = sqlx::query(
        "insert into workflow_executions (workflow_id, status) values ($1, 'sleeping')",
    )
    .bind(v1.workflow_id.0)
    .execute(&sql)
    .await
    .unwrap_err();
    assert!(
        bad_status
            .to_string()
            .contains("workflow_executions_status_check"),
        "{bad_status}"
    );
    let listed = db
        .store
        .list_executions(workflow_worker_core::ListExecutionsParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "only the valid insert was written");
}

/// JSON nested 200 deep: the databases accept it, serde_json (limit 128) cannot read it.
fn too_deep() -> String {
    format!("{}1{}", "[".repeat(200), "]".repeat(200))
}

/// A row the database accepts but the worker cannot read fails alone, at once, saying why:
/// the executions claimed with it complete as usual instead of waiting out a lease behind a
/// claim that failed as a whole.
async fn an_unreadable_row_fails_alone(
    store: impl Store + Clone,
    insert: impl AsyncFn(&str) -> Uuid,
) {
    let saved = fixture::hello()
        .save(&store, &workflow_worker_core::NodeRegistry::builtin())
        .await;
    let _ = saved;
    let mut ids = Vec::new();
    for input in ["{}", &too_deep(), "{}", "{}"] {
        ids.push(ExecutionId(insert(input).await));
    }
    // Shorter than the 30 s lease: a claim that failed after it committed would hold the
    // good executions that long.
    let worker = WorkflowWorker::new(store.clone()).poll_interval(Duration::from_millis(50));
    let details = run_until_terminal(worker, &store, &ids, Duration::from_secs(20)).await;
    let bad = &details[1].execution;
    assert_eq!(bad.status, ExecutionStatus::Failed, "{bad:?}");
    let error = bad.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("execution cannot be read: its input is JSON this worker cannot read (recursion limit exceeded"),
        "{error}"
    );
    assert!(details[1].node_runs.is_empty(), "no node ran for it");
    for (i, detail) in details.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(
            detail.execution.status,
            ExecutionStatus::Completed,
            "#{i}: {detail:?}"
        );
    }
    // Reading it back works too: the input shows as null, the error says why.
    let shown = store.get_execution(ids[1]).await.unwrap();
    assert_eq!(shown.execution.input, serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_fails_alone_on_postgres() {
    let db = TestDatabase::create().await;
    let sql = other_program(&db).await;
    let store = db.store.clone();
    an_unreadable_row_fails_alone(store, async |input: &str| {
        let (id,): (Uuid,) = sqlx::query_as(
            "insert into workflow_executions (workflow_id, input)
             select id, $1::jsonb from workflows where name = 'hello' returning id",
        )
        .bind(input)
        .fetch_one(&sql)
        .await
        .unwrap();
        id
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_fails_alone_on_sqlite() {
    let db = workflow_worker_store::testing::TestSqlite::create().await;
    let pool = db.store.pool().clone();
    an_unreadable_row_fails_alone(db.store.clone(), async |input: &str| {
        let (id,): (String,) = sqlx::query_as(
            "insert into workflow_executions (workflow_id, input)
             select id, $1 from workflows where name = 'hello' returning id",
        )
        .bind(input)
        .fetch_one(&pool)
        .await
        .unwrap();
        Uuid::parse_str(&id).unwrap()
    })
    .await;
}

/// Another program inserts with a business key: the worker's keyed start finds its execution,
/// and a second insert with the key while the first has not ended is refused by the schema.
async fn a_plain_insert_with_a_key_is_held_to_it(
    store: impl Store + Clone,
    insert: impl AsyncFn(&str) -> Result<Uuid, sqlx::Error>,
) {
    fixture::hello()
        .save(&store, &workflow_worker_core::NodeRegistry::builtin())
        .await;
    let inserted = ExecutionId(insert("order-1").await.expect("a keyed insert"));
    let started = store
        .start_execution(StartExecutionParams::new("hello", json!({})).key("order-1"))
        .await
        .unwrap();
    assert_eq!((started.created, started.execution.id), (false, inserted));

    let refused = insert("order-1").await.unwrap_err();
    assert!(
        refused.to_string().contains("UNIQUE constraint failed")
            || refused
                .to_string()
                .contains("workflow_executions_active_key"),
        "{refused}"
    );
    // Once it ended, another program may insert the key again.
    store.cancel_execution(inserted, "done").await.unwrap();
    let again = ExecutionId(insert("order-1").await.expect("the key is free again"));
    assert_ne!(again, inserted);
    let latest = store
        .start_execution(StartExecutionParams::new("hello", json!({})).key("order-1"))
        .await
        .unwrap();
    assert_eq!((latest.created, latest.execution.id), (false, again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_insert_with_a_key_is_held_to_it_on_postgres() {
    let db = TestDatabase::create().await;
    let sql = other_program(&db).await;
    a_plain_insert_with_a_key_is_held_to_it(db.store.clone(), async |key: &str| {
        let (id,): (Uuid,) = sqlx::query_as(
            "insert into workflow_executions (workflow_id, key)
             select id, $1 from workflows where name = 'hello' returning id",
        )
        .bind(key)
        .fetch_one(&sql)
        .await?;
        Ok(id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_insert_with_a_key_is_held_to_it_on_sqlite() {
    let db = workflow_worker_store::testing::TestSqlite::create().await;
    let pool = db.store.pool().clone();
    a_plain_insert_with_a_key_is_held_to_it(db.store.clone(), async |key: &str| {
        let (id,): (String,) = sqlx::query_as(
            "insert into workflow_executions (workflow_id, key)
             select id, $1 from workflows where name = 'hello' returning id",
        )
        .bind(key)
        .fetch_one(&pool)
        .await?;
        Ok(Uuid::parse_str(&id).unwrap())
    })
    .await;
}
