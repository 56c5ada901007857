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

/// The command lines (arguments joined by spaces) of the processes on this machine that
/// contain `marker`, read from `/proc` (Linux; elsewhere none): for tests that check no
/// process of a node is left.
pub fn processes_with(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            path.file_name()?.to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(path.join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(marker).then_some(cmdline)
        })
        .collect()
}
