-- Map items: a `map` node runs a node type once per item of a list, and each item's attempts
-- are recorded here as they finish, in batches, fenced by the execution's lease like a step.
-- The map node's own run (in workflow_node_runs) is recorded once every item is done, with
-- the items' results in order; until then an execution's map resumes from these rows: the
-- items that completed keep their output and do not run again.
--
-- Apart from workflow_node_runs so that a map of 10,000 items neither grows the rows every
-- claim reads nor rewrites anything per item.
create table workflow_item_runs (
    id bigint generated always as identity primary key,
    execution_id uuid not null references workflow_executions (id) on delete cascade,
    node_id text not null,
    item integer not null,
    node_type text not null,
    attempt integer not null,
    status text not null,
    input jsonb,
    output jsonb,
    error text,
    -- A failure no attempt of this item can fix: the item is not run again.
    fatal boolean not null default false,
    worker_id text,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    -- The retry that runs the map again, as for workflow_node_runs.superseded_by.
    superseded_by bigint references workflow_execution_retries (id) on delete cascade,
    constraint workflow_item_runs_status_check check (
        status in ('completed', 'failed', 'timed_out')
    ),
    constraint workflow_item_runs_numbers_check check (item >= 0 and attempt >= 1)
);

-- An attempt of an item is recorded once, and an item completes once.
create unique index workflow_item_runs_attempt_key
    on workflow_item_runs (execution_id, node_id, item, attempt)
    where superseded_by is null;

create unique index workflow_item_runs_completed_key
    on workflow_item_runs (execution_id, node_id, item)
    where status = 'completed'
      and superseded_by is null;
