-- Retries: a failed, timed-out or cancelled execution run again from where it stopped (or
-- from the start, or from a node), asked by an operator or an application. Each retry is a
-- row here: who asked, when, from which status and where, and the version it runs.
create table workflow_execution_retries (
    id bigint generated always as identity primary key,
    execution_id uuid not null references workflow_executions (id) on delete cascade,
    requested_by text not null,
    requested_at timestamptz not null default now(),
    from_status text not null,
    -- 'stopped' (the nodes that did not complete), 'start', or 'node' (from_node and what is
    -- downstream of it).
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

-- The runs of the nodes a retry runs again stay in the history, marked with the retry. They
-- no longer count for the execution's progress (a worker's claim reads only the others) or
-- for the one-record-per-attempt rule, so the nodes run again from attempt 1.
alter table workflow_node_runs
    add column superseded_by bigint references workflow_execution_retries (id) on delete cascade;

drop index workflow_node_runs_attempt_key;

create unique index workflow_node_runs_attempt_key
    on workflow_node_runs (execution_id, node_id, attempt)
    where status not in ('interrupted', 'abandoned', 'waiting')
      and superseded_by is null;

-- An execution made pending again (a retry, whoever makes it: the store, or a plain SQL
-- update) is runnable at once: wake the workers as for a new one.
create trigger workflow_executions_pending_wakeup
    after update of status on workflow_executions
    for each row
    when (new.status = 'pending' and old.status <> 'pending')
    execute function workflow_wakeup();
