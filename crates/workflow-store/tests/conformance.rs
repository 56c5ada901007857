//! The conformance suite of workflow-worker-core, run against every store in this crate.

workflow_worker_core::conformance_tests!(postgres, async {
    let db = workflow_worker_store::testing::TestDatabase::create().await;
    let store = db.store.clone();
    (db, store)
});

workflow_worker_core::conformance_tests!(sqlite, async {
    let db = workflow_worker_store::testing::TestSqlite::create().await;
    let store = db.store.clone();
    (db, store)
});

// Every case again through PgBouncer in transaction mode (what Supabase's port 6543 is):
// unprepared statements, one transaction each, no LISTEN.
workflow_worker_core::conformance_tests!(pgbouncer, async {
    let bouncer = workflow_worker_store::testing::TestPgBouncer::start().await;
    let store = bouncer.store.clone();
    (bouncer, store)
});
