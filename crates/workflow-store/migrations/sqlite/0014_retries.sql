-- Retries; see the PostgreSQL migration of the same version. Times are milliseconds since the
-- Unix epoch, as everywhere in this schema. Workers of the store that retries are woken
-- in-process; others notice at their next poll.
create table workflow_execution_retries (
    id integer primary key autoincrement,
    execution_id text not null references workflow_executions (id) on delete cascade,
    requested_by text not null,
    requested_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    from_status text not null,
    mode text not null,
    from_node text,
    workflow_version integer not null,
    constraint workflow_execution_retries_from_status_check check (
        from_status in ('failed', 'cancelled', 'timed_out')
    ),
    constraint workflow_execution_retries_mode_check check (
        mode in ('stopped', 'start', 'node') and (mode = 'node') = (from_node is not null)
    )
);

create index workflow_execution_retries_execution_idx
    on workflow_execution_retries (execution_id, id);

alter table workflow_node_runs
    add column superseded_by integer references workflow_execution_retries (id) on delete cascade;

drop index workflow_node_runs_attempt_key;

create unique index workflow_node_runs_attempt_key
    on workflow_node_runs (execution_id, node_id, attempt)
    where status not in ('interrupted', 'abandoned', 'waiting')
      and superseded_by is null;
