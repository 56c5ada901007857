-- Typed node outcomes and poison executions.
--
-- A node attempt may now also end 'interrupted' (the worker shut down and released the
-- execution) or 'abandoned' (its worker died; found when another worker rescued the
-- execution). Such an attempt runs again with the same attempt number, so the one-row-per-
-- attempt rule applies to the other outcomes only.

alter table workflow_node_runs
    drop constraint workflow_node_runs_status_check,
    add constraint workflow_node_runs_status_check check (
        status in ('completed', 'failed', 'timed_out', 'skipped', 'interrupted', 'abandoned')
    ),
    drop constraint workflow_node_runs_attempt_key;

create unique index workflow_node_runs_attempt_key
    on workflow_node_runs (execution_id, node_id, attempt)
    where status not in ('interrupted', 'abandoned');

create index workflow_node_runs_execution_idx
    on workflow_node_runs (execution_id, id);

-- Claims in a row that found the previous lease expired, with no step recorded since: an
-- execution whose worker keeps dying while running it is failed once this reaches the
-- worker's limit, instead of being rescued forever.
alter table workflow_executions
    add column rescue_count integer not null default 0;
