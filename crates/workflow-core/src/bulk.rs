//! Bulk actions by filter: count, cancel, retry or delete every execution an
//! [`ExecutionFilter`] matches, as an operator does after an incident.
//!
//! Each action walks the matching ids in pages of [`BULK_BATCH`] (in id order, so a page
//! never repeats or skips an execution), and acts on each page: a cancel or a retry reads
//! every execution again right before it acts and leaves it alone unless it still matches
//! (and can still be cancelled or retried), so nothing that stopped matching since the page
//! was read is touched; a delete is one statement per page that re-checks the filter and
//! deletes only executions that ended. Running one again finds nothing left to do for what
//! it did: the actions are idempotent.

use crate::client::Client;
use crate::execution::{ExecutionDetail, ExecutionId};
use crate::retry::RetryRequest;
use crate::state::ExecutionStatus;
use crate::store::{ExecutionFilter, StoreError};

/// Executions read per page of a bulk action.
pub const BULK_BATCH: u32 = 500;

/// What a bulk action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, schemars::JsonSchema)]
pub struct BulkOutcome {
    /// Executions the filter matched when their page was read.
    pub matched: u64,
    /// Those the action changed (cancelled, retried, deleted); the others had stopped
    /// matching or could not take the action (a completed one is never retried, a running
    /// one never deleted).
    pub affected: u64,
}

impl Client {
    /// How many executions match `filter` now: what a bulk action would consider.
    pub async fn count_matching(&self, filter: &ExecutionFilter) -> crate::Result<u64> {
        let outcome = self.each_page(filter, |_| async { Ok(0) }).await?;
        Ok(outcome.matched)
    }

    /// Cancels every execution `filter` matches that has not ended, with `reason` as its
    /// error; a running one is stopped as by [`Client::cancel`].
    pub async fn cancel_matching(
        &self,
        filter: &ExecutionFilter,
        reason: &str,
    ) -> crate::Result<BulkOutcome> {
        let not_ended = |status: ExecutionStatus| !status.is_terminal();
        self.each_page(filter, |ids| {
            self.each_still_matching(ids, filter, not_ended, |detail| async move {
                match self.cancel(detail.execution.id, reason).await {
                    Ok(_) => Ok(true),
                    // It ended meanwhile (completed, say): nothing to cancel.
                    Err(StoreError::AlreadyEnded { .. } | StoreError::NotFound { .. }) => Ok(false),
                    Err(err) => Err(err.into()),
                }
            })
        })
        .await
    }

    /// Retries every failed, timed-out or cancelled execution `filter` matches, each as
    /// [`Client::retry`] does with `request`.
    pub async fn retry_matching(
        &self,
        filter: &ExecutionFilter,
        request: &RetryRequest,
    ) -> crate::Result<BulkOutcome> {
        self.each_page(filter, |ids| {
            self.each_still_matching(ids, filter, ExecutionStatus::is_retryable, |detail| {
                async move {
                    match self.retry_read(detail, request.clone()).await {
                        Ok(_) => Ok(true),
                        // Retried by someone else meanwhile, or deleted.
                        Err(crate::Error::Store(
                            StoreError::NotRetryable { .. } | StoreError::NotFound { .. },
                        )) => Ok(false),
                        Err(err) => Err(err),
                    }
                }
            })
        })
        .await
    }

    /// Deletes every execution `filter` matches that has ended, with its node runs, signals
    /// and retries; running, waiting and pending ones stay.
    pub async fn delete_matching(&self, filter: &ExecutionFilter) -> crate::Result<BulkOutcome> {
        self.each_page(filter, |ids| async move {
            Ok(self.store().delete_executions(&ids, filter).await?)
        })
        .await
    }

    /// Reads each of `ids` again and hands it to `act` if it still matches `filter` and its
    /// status is `eligible`; returns how many `act` changed (it says `false` when the
    /// execution moved on between the read and the action).
    async fn each_still_matching<A, Fut>(
        &self,
        ids: Vec<ExecutionId>,
        filter: &ExecutionFilter,
        eligible: fn(ExecutionStatus) -> bool,
        mut act: A,
    ) -> crate::Result<u64>
    where
        A: FnMut(ExecutionDetail) -> Fut,
        Fut: std::future::Future<Output = crate::Result<bool>>,
    {
        let mut changed = 0;
        for id in ids {
            let detail = match self.store().get_execution(id).await {
                Ok(detail) => detail,
                Err(StoreError::NotFound { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            let execution = &detail.execution;
            if filter.matches(execution) && eligible(execution.status) && act(detail).await? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Walks the ids `filter` matches page by page, handing each page to `act`, which says
    /// how many of it it changed. A filter naming a workflow that does not exist is an error,
    /// not an empty match.
    async fn each_page<F, Fut>(
        &self,
        filter: &ExecutionFilter,
        mut act: F,
    ) -> crate::Result<BulkOutcome>
    where
        F: FnMut(Vec<ExecutionId>) -> Fut,
        Fut: std::future::Future<Output = crate::Result<u64>>,
    {
        if let Some(workflow) = &filter.workflow {
            self.workflow(workflow.clone()).await?;
        }
        let mut outcome = BulkOutcome::default();
        let mut after = None;
        loop {
            let ids = self
                .store()
                .matching_executions(filter, after, BULK_BATCH)
                .await?;
            let Some(&last) = ids.last() else {
                return Ok(outcome);
            };
            let full = ids.len() >= BULK_BATCH as usize;
            outcome.matched += ids.len() as u64;
            outcome.affected += act(ids).await?;
            if !full {
                return Ok(outcome);
            }
            after = Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::Value;

    use super::*;
    use crate::execution::{Execution, LeaseToken, WorkflowId};
    use crate::store::WorkflowRef;

    fn execution(status: ExecutionStatus, error: Option<&str>, created_hour: u32) -> Execution {
        Execution {
            id: ExecutionId::new(),
            workflow_id: WorkflowId(uuid::Uuid::nil()),
            workflow_name: "report".into(),
            workflow_version: 1,
            status,
            input: Value::Null,
            output: None,
            error: error.map(str::to_owned),
            priority: 0,
            concurrency_key: None,
            held_since: None,
            key: None,
            run_at: None,
            deadline: None,
            schedule_id: None,
            scheduled_for: None,
            lease_owner: None,
            lease_expires_at: None,
            lease_token: LeaseToken(0),
            rescue_count: 0,
            created_at: Utc
                .with_ymd_and_hms(2026, 12, 1, created_hour, 0, 0)
                .unwrap(),
            started_at: None,
            finished_at: None,
            pause_requested_at: None,
            parent: None,
            depth: 0,
        }
    }

    #[test]
    fn a_filter_matches_only_when_every_condition_it_sets_holds() {
        let failed = execution(ExecutionStatus::Failed, Some("HTTP 503 from billing"), 10);
        assert!(ExecutionFilter::default().matches(&failed));
        assert!(ExecutionFilter::default().is_empty());

        let filter = ExecutionFilter {
            statuses: vec![ExecutionStatus::Failed, ExecutionStatus::TimedOut],
            workflow: Some(WorkflowRef::Name("report".into())),
            created_before: Some(Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap()),
            created_after: Some(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()),
            error_contains: Some("http 503".into()),
        };
        assert!(!filter.is_empty());
        assert!(filter.matches(&failed), "at the lower bound, ignoring case");
        let miss = |e: Execution| assert!(!filter.matches(&e), "{e:?}");
        miss(execution(ExecutionStatus::Completed, Some("HTTP 503"), 10));
        miss(execution(ExecutionStatus::Failed, Some("HTTP 404"), 10));
        miss(execution(ExecutionStatus::Failed, None, 10));
        miss(execution(ExecutionStatus::Failed, Some("HTTP 503"), 11));
        miss(execution(ExecutionStatus::Failed, Some("HTTP 503"), 9));
        let mut other = execution(ExecutionStatus::Failed, Some("HTTP 503"), 10);
        other.workflow_name = "invoice".into();
        miss(other);

        let by_id = ExecutionFilter {
            workflow: Some(WorkflowRef::Id(WorkflowId(uuid::Uuid::nil()))),
            ..Default::default()
        };
        assert!(by_id.matches(&failed));
    }
}
