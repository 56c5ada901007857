-- Signals and waiting nodes; see the PostgreSQL migration of the same version.

create table workflow_signals (
    id integer primary key autoincrement,
    execution_id text not null references workflow_executions (id) on delete cascade,
    name text not null,
    payload text not null default 'null',
    idempotency_key text,
    created_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    consumed_at integer,
    consumed_by_node text,
    constraint workflow_signals_name_not_empty check (trim(name) <> ''),
    constraint workflow_signals_idempotency_key unique (execution_id, idempotency_key),
    constraint workflow_signals_consumed_together check (
        (consumed_at is null) = (consumed_by_node is null)
    ),
    constraint workflow_signals_payload_is_json check (json_valid(payload))
);

create index workflow_signals_pending_idx
    on workflow_signals (execution_id, id)
    where consumed_at is null;

create trigger workflow_signals_wake
    after insert on workflow_signals
begin
    update workflow_executions
    set run_at = cast(unixepoch('subsec') * 1000 as integer),
        updated_at = cast(unixepoch('subsec') * 1000 as integer)
    where id = new.execution_id
      and status = 'waiting';
end;

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
        status in ('completed', 'failed', 'timed_out', 'skipped', 'interrupted', 'abandoned',
                   'waiting')
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
    where status not in ('interrupted', 'abandoned', 'waiting');

create index workflow_node_runs_execution_idx
    on workflow_node_runs (execution_id, id);
