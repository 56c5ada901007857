-- Map items; see the PostgreSQL migration of the same version.
create table workflow_item_runs (
    id integer primary key autoincrement,
    execution_id text not null references workflow_executions (id) on delete cascade,
    node_id text not null,
    item integer not null,
    node_type text not null,
    attempt integer not null,
    status text not null,
    input text,
    output text,
    error text,
    -- A failure no attempt of this item can fix: the item is not run again.
    fatal integer not null default 0,
    worker_id text,
    started_at integer not null,
    finished_at integer not null,
    superseded_by integer references workflow_execution_retries (id) on delete cascade,
    constraint workflow_item_runs_status_check check (
        status in ('completed', 'failed', 'timed_out')
    ),
    constraint workflow_item_runs_numbers_check check (item >= 0 and attempt >= 1)
);

create unique index workflow_item_runs_attempt_key
    on workflow_item_runs (execution_id, node_id, item, attempt)
    where superseded_by is null;

create unique index workflow_item_runs_completed_key
    on workflow_item_runs (execution_id, node_id, item)
    where status = 'completed'
      and superseded_by is null;
