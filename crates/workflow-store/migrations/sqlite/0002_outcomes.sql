-- Typed node outcomes and poison executions; see the PostgreSQL migration of the same
-- version. SQLite cannot alter constraints, so workflow_node_runs is rebuilt.

create table workflow_node_runs_new (
    id integer primary key autoincrement,
    execution_id text not null references workflow_executions (id) on delete cascade,
    node_id text not null,
    node_type text not null,
    attempt integer not null,
    status text not null,
    input text,
    output text,
    branch text,
    error text,
    worker_id text,
    started_at integer not null,
    finished_at integer not null,
    constraint workflow_node_runs_attempt_positive check (attempt >= 1),
    constraint workflow_node_runs_status_check check (
        status in ('completed', 'failed', 'timed_out', 'skipped', 'interrupted', 'abandoned')
    )
);

insert into workflow_node_runs_new
select id, execution_id, node_id, node_type, attempt, status, input, output, branch, error,
       worker_id, started_at, finished_at
from workflow_node_runs;

drop table workflow_node_runs;

alter table workflow_node_runs_new rename to workflow_node_runs;

create unique index workflow_node_runs_attempt_key
    on workflow_node_runs (execution_id, node_id, attempt)
    where status not in ('interrupted', 'abandoned');

create index workflow_node_runs_execution_idx
    on workflow_node_runs (execution_id, id);

alter table workflow_executions
    add column rescue_count integer not null default 0;
