-- Signals (a durable inbox per execution) and waiting nodes.
--
-- Another program may send a signal with a plain insert:
--   insert into workflow_signals (execution_id, name, payload) values ($1, 'approval', $2);
-- The trigger below wakes the execution if it is waiting. A signal is consumed at most once,
-- by the node run recorded in the same transaction.

create table workflow_signals (
    id bigint generated always as identity primary key,
    execution_id uuid not null references workflow_executions (id) on delete cascade,
    name text not null,
    payload jsonb not null default 'null'::jsonb,
    -- A retried send with the same key is stored once.
    idempotency_key text,
    created_at timestamptz not null default now(),
    consumed_at timestamptz,
    consumed_by_node text,
    constraint workflow_signals_name_not_empty check (btrim(name) <> ''),
    constraint workflow_signals_idempotency_key unique (execution_id, idempotency_key),
    constraint workflow_signals_consumed_together check (
        (consumed_at is null) = (consumed_by_node is null)
    )
);

create index workflow_signals_pending_idx
    on workflow_signals (execution_id, id)
    where consumed_at is null;

create function workflow_signals_wake() returns trigger
language plpgsql as $$
begin
    update workflow_executions
    set run_at = now(),
        updated_at = now()
    where id = new.execution_id
      and status = 'waiting';
    return null;
end;
$$;

create trigger workflow_signals_wake
    after insert on workflow_signals
    for each row execute function workflow_signals_wake();

-- A node parked waiting for a signal or a timer has a 'waiting' row (its start, in database
-- time); its result, under the same attempt number, follows when it resumes.
alter table workflow_node_runs
    drop constraint workflow_node_runs_status_check,
    add constraint workflow_node_runs_status_check check (
        status in ('completed', 'failed', 'timed_out', 'skipped', 'interrupted', 'abandoned',
                   'waiting')
    );

drop index workflow_node_runs_attempt_key;

create unique index workflow_node_runs_attempt_key
    on workflow_node_runs (execution_id, node_id, attempt)
    where status not in ('interrupted', 'abandoned', 'waiting');
