-- Wake-up hints: NOTIFY workflow_worker_wakeup when an execution may have become runnable
-- now, so idle workers listening on the channel claim at once. Polling stays the source of
-- truth: a lost notification costs at most one poll interval.
--
-- Inserts notify once per statement, not per row: NOTIFY takes a global lock at commit,
-- and a bulk insert of a million executions must not pay it a million times. PostgreSQL also
-- folds identical notifications of one transaction into one.

create function workflow_wakeup() returns trigger
language plpgsql as $$
begin
    perform pg_notify('workflow_worker_wakeup', '');
    return null;
end;
$$;

create trigger workflow_executions_wakeup
    after insert on workflow_executions
    for each statement execute function workflow_wakeup();

-- A released execution (graceful shutdown) is runnable at once.
create trigger workflow_executions_released_wakeup
    after update of lease_owner on workflow_executions
    for each row
    when (old.lease_owner is not null and new.lease_owner is null and new.status = 'running')
    execute function workflow_wakeup();

create or replace function workflow_signals_wake() returns trigger
language plpgsql as $$
begin
    update workflow_executions
    set run_at = now(),
        updated_at = now()
    where id = new.execution_id
      and status = 'waiting';
    if found then
        perform pg_notify('workflow_worker_wakeup', '');
    end if;
    return null;
end;
$$;
