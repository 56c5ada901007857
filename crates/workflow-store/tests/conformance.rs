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
