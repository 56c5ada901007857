//! The conformance suite of workflow-core, run against every store in this crate.

workflow_core::conformance_tests!(postgres, async {
    let db = workflow_store::testing::TestDatabase::create().await;
    let store = db.store.clone();
    (db, store)
});

workflow_core::conformance_tests!(sqlite, async {
    let db = workflow_store::testing::TestSqlite::create().await;
    let store = db.store.clone();
    (db, store)
});

// Every case again through PgBouncer in transaction mode (what Supabase's port 6543 is):
// unprepared statements, one transaction each, no LISTEN.
workflow_core::conformance_tests!(pgbouncer, async {
    let bouncer = workflow_store::testing::TestPgBouncer::start().await;
    let store = bouncer.store.clone();
    (bouncer, store)
});
