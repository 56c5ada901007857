//! Test support for stores and embedders (feature `testing`): workflow fixtures, node types
//! built for tests, and the conformance suite every [`Store`] must pass.
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
//! which yields one test per case, named after where the case lives in [`conformance`]:
//! `postgres::store::claims::claim_respects_the_limit`, `postgres::worker::graphs::...` and so on.

use std::time::Duration;

use async_trait::async_trait;

use crate::{ExecutionId, ScheduleId, Store};

pub mod conformance;
pub mod fixture;
pub mod nodes;

/// What a test database can do beyond [`Store`]: move an execution's times (which are the
/// database's), so lease expiry, backoff and pruning are tested without sleeping. Test stores
/// implement it; each method panics if the database refuses.
#[async_trait]
pub trait TestStore: Store + Clone {
    /// Makes the lease of execution `id` expired now, as if its worker had died.
    async fn expire_lease(&self, id: ExecutionId);

    /// Moves when execution `id` is runnable (`run_at`) back by `by`: a backoff or a timer
    /// that has passed, or an execution that has been runnable that long.
    async fn backdate_run_at(&self, id: ExecutionId, by: Duration);

    /// Moves when execution `id` ended (`finished_at`) back by `by`.
    async fn backdate_finished_at(&self, id: ExecutionId, by: Duration);

    /// Moves the next tick of schedule `id` (`next_fire_at`) back by `by`, as if no worker
    /// had looked at it for that long.
    async fn backdate_next_fire_at(&self, id: ScheduleId, by: Duration);
}

/// The process id a test's node wrote to `path` (`echo $$ > path`), once it is there; panics
/// if none is there within `within`.
pub async fn pid_written_to(path: &std::path::Path, within: Duration) -> u32 {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            return pid;
        }
        assert!(
            started.elapsed() < within,
            "no process id in {} within {within:?}: the node never started",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether process `pid` runs: it exists and is not a zombie (killed, not yet reaped by its
/// parent). Read from `/proc` (Linux; elsewhere never).
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.split(") ")
            .nth(1)
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

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
