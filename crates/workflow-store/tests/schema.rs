//! Invariants of the PostgreSQL schema that no single statement's test would notice.

use std::time::{Duration, Instant};

use workflow_worker_core::Store;
use workflow_worker_core::store::{ClaimParams, RescueFilter};
use workflow_worker_store::testing::TestDatabase;

/// Every foreign key's (first) referencing column leads an index that its action's lookup can
/// use (no predicate but the column being non-null): deleting a referenced row (a prune
/// deletes executions by the thousand) otherwise reads the whole referring table once per row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_foreign_key_has_an_index_its_lookups_can_use() {
    let db = TestDatabase::create().await;
    let unindexed: Vec<String> = sqlx::query_scalar(
        r#"
        select c.conname::text
        from pg_constraint c
        join pg_attribute a
          on a.attrelid = c.conrelid
         and a.attnum = c.conkey[1]
        where c.contype = 'f'
          and c.connamespace = 'public'::regnamespace
          and not exists (
              select 1
              from pg_index i
              where i.indrelid = c.conrelid
                and i.indkey[0] = c.conkey[1]
                and (i.indpred is null
                     or pg_get_expr(i.indpred, i.indrelid)
                        = format('(%I IS NOT NULL)', a.attname))
          )
        order by 1
        "#,
    )
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index on their columns: {unindexed:?}"
    );
}

/// The columns a claim writes on every execution it takes (a rescue also bumps
/// `rescue_count`): while no index reads one of them, a claim is a HOT update that adds no
/// index entry (migration 0024).
const CLAIM_WRITES: [&str; 6] = [
    "status",
    "lease_owner",
    "lease_expires_at",
    "lease_token",
    "started_at",
    "updated_at",
];

/// No index of `workflow_executions` reads a column a claim writes, in its key, an
/// expression or its predicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_index_reads_a_column_a_claim_writes() {
    let db = TestDatabase::create().await;
    let reading: Vec<(String, String)> = sqlx::query_as(
        r#"
        select i.indexrelid::regclass::text, a.attname::text
        from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid
        where i.indrelid = 'workflow_executions'::regclass
          and a.attname = any($1)
          and (a.attnum = any(i.indkey)
               or pg_get_indexdef(i.indexrelid) ~ ('\m' || a.attname || '\M'))
        order by 1, 2
        "#,
    )
    .bind(CLAIM_WRITES)
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    assert!(
        reading.is_empty(),
        "indexes reading a column a claim writes: {reading:?}"
    );
}

/// A claim through the store is a HOT update: the claimed rows' new versions stay on their
/// pages, save the few that do not fit (a claimed row is larger: its lease is set). Read from the table's statistics, which the claiming connection reports within about
/// ten seconds once idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_hot_updates() {
    let db = TestDatabase::create().await;
    save_one_node_workflow(&db, "hot").await;
    assert_eq!(db.seed_pending("hot", 40, &serde_json::json!({})).await, 40);
    let claimed = db
        .store
        .claim_executions(ClaimParams {
            worker_id: "hot".into(),
            limit: 40,
            lease_duration: Duration::from_secs(60),
            rescues: RescueFilter::Any,
            node_types: None,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 40);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (updated, hot) = loop {
        let (updated, hot): (i64, i64) = sqlx::query_as(
            "select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables \
             where relid = 'workflow_executions'::regclass",
        )
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        if updated >= 40 || Instant::now() > deadline {
            break (updated, hot);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(updated, 40, "the claim's updates were not reported in time");
    // 36 here; 0 while indexes read `status`.
    assert!(hot >= 30, "of the claim's 40 updates, only {hot} were HOT");
}

/// An execution's node runs go with it however it is deleted: by a prune, by an application's
/// own `delete`, by a `truncate … cascade`. A trigger does it since migration 0025 (the
/// foreign key it replaces cost every node run written a check); no node run is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executions_node_runs_are_deleted_with_it() {
    let db = TestDatabase::create().await;
    save_one_node_workflow(&db, "history").await;
    assert_eq!(db.seed_executions("history", 10, true).await, 10);
    let counts = || async {
        sqlx::query_as::<_, (i64, i64)>(
            r#"
            select count(*),
                   count(*) filter (where not exists (
                       select 1 from workflow_executions e where e.id = r.execution_id))
            from workflow_node_runs r
            "#,
        )
        .fetch_one(db.store.pool())
        .await
        .unwrap()
    };
    assert_eq!(counts().await, (10, 0), "(node runs, orphans) as seeded");

    let pruned = db
        .store
        .prune_executions(Duration::from_secs(3600), 4)
        .await
        .unwrap();
    assert_eq!(pruned, 4);
    assert_eq!(
        counts().await,
        (6, 0),
        "(node runs, orphans) after a prune of 4"
    );

    let deleted = sqlx::query(
        "delete from workflow_executions \
         where id in (select id from workflow_executions order by id limit 2)",
    )
    .execute(db.store.pool())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(deleted, 2);
    assert_eq!(
        counts().await,
        (4, 0),
        "(node runs, orphans) after deleting 2"
    );

    sqlx::query("truncate workflow_executions cascade")
        .execute(db.store.pool())
        .await
        .unwrap();
    assert_eq!(
        counts().await,
        (0, 0),
        "(node runs, orphans) after a truncate"
    );
}

/// Saves `name`, a workflow of one trigger node, with plain SQL.
async fn save_one_node_workflow(db: &TestDatabase, name: &str) {
    let id = uuid::Uuid::new_v4();
    sqlx::query("insert into workflows (id, name, latest_version) values ($1, $2, 1)")
        .bind(id)
        .bind(name)
        .execute(db.store.pool())
        .await
        .unwrap();
    sqlx::query(
        "insert into workflow_versions (workflow_id, version, definition) \
         values ($1, 1, '{\"nodes\": [{\"id\": \"n1\", \"type\": \"trigger\"}], \"edges\": []}')",
    )
    .bind(id)
    .execute(db.store.pool())
    .await
    .unwrap();
}
