//! [`GraphCache`]: each workflow version's validated graph, loaded once per worker.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::execution::WorkflowId;
use crate::graph::WorkflowGraph;
use crate::store::StoreError;

/// A version's graph, or why this worker cannot run it.
pub(super) type Loaded = Result<Arc<WorkflowGraph>, String>;

/// Validated graphs by workflow version. Versions are immutable, so an entry is never
/// invalidated; one load per version, however many executions of it are claimed at once.
#[derive(Debug, Default)]
pub(super) struct GraphCache(Mutex<HashMap<(WorkflowId, i32), Arc<Cell>>>);

/// One version's entry, loaded once.
type Cell = tokio::sync::OnceCell<Loaded>;

impl GraphCache {
    /// The graph of `version` of `workflow`, loading it with `load` if no one has. A store
    /// error is not kept: the next execution of this version tries again.
    pub(super) async fn get<F, Fut>(
        &self,
        workflow: WorkflowId,
        version: i32,
        load: F,
    ) -> Result<Loaded, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded, StoreError>>,
    {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((workflow, version))
            .or_default()
            .clone();
        cell.get_or_try_init(load).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_version_is_loaded_once_however_many_ask_at_once_and_errors_are_not_kept() {
        let cache = GraphCache::default();
        let workflow = WorkflowId::new();
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(Err("cannot run here".to_owned()))
        };
        let (a, b) = tokio::join!(cache.get(workflow, 1, load), cache.get(workflow, 1, load));
        assert_eq!(a.unwrap().unwrap_err(), "cannot run here");
        assert_eq!(b.unwrap().unwrap_err(), "cannot run here");
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        // Another version is another load; a store error is retried by the next caller.
        let failing = || async { Err(StoreError::Unavailable("gone".into())) };
        assert!(cache.get(workflow, 2, failing).await.is_err());
        assert!(cache.get(workflow, 2, load).await.unwrap().is_err());
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }
}
