//! Invariants of the PostgreSQL schema that no single statement's test would notice.

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
