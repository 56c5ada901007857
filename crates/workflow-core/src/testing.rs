//! Test support for stores and embedders (feature `testing`): workflow fixtures, node types
//! built for tests, and the conformance suite every [`Store`](crate::Store) must pass.
//!
//! A store crate stamps the suite into its tests with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```text
//! workflow_worker_core::conformance_tests!(postgres, async {
//!     let db = workflow_worker_store::testing::TestDatabase::create().await;
//!     let store = db.store.clone();
//!     (db, store)
//! });
//! ```
//!
//! which yields one test per case, named `postgres::claim_respects_the_limit` and so on.

pub mod conformance;
pub mod fixture;
pub mod nodes;
