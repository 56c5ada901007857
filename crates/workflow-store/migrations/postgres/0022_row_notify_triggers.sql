-- The notifications of ended executions (0008) and of cancelled running ones (0013) move from
-- statement triggers to row triggers, with the same channels and payloads, one notification
-- per execution as before.
--
-- The statement triggers had transition tables: every update of workflow_executions, so
-- every claim, step batch and lease renewal of the hot path, copied its old and new rows
-- into two tuplestores and hash-joined them, twice, to find the few rows that ended or were
-- cancelled. Profiled during a drain, that was about 6 % of the database's CPU. A row
-- trigger's WHEN is checked on the row in hand, so the rows that do not end cost nothing.

create or replace function workflow_notify_ended() returns trigger
language plpgsql as $$
begin
    perform pg_notify(
        'workflow_execution_ended',
        jsonb_build_object('id', new.id, 'status', new.status)::text
    );
    return null;
end;
$$;

drop trigger workflow_executions_ended_notify on workflow_executions;
create trigger workflow_executions_ended_notify
    after update on workflow_executions
    for each row
    when (new.status in ('completed', 'failed', 'cancelled', 'timed_out')
          and old.status not in ('completed', 'failed', 'cancelled', 'timed_out'))
    execute function workflow_notify_ended();

create or replace function workflow_notify_cancelled() returns trigger
language plpgsql as $$
begin
    perform pg_notify('workflow_execution_cancelled', new.id::text);
    return null;
end;
$$;

drop trigger workflow_executions_cancelled_notify on workflow_executions;
create trigger workflow_executions_cancelled_notify
    after update on workflow_executions
    for each row
    when (new.status = 'cancelled'
          and old.status = 'running'
          and old.lease_owner is not null)
    execute function workflow_notify_cancelled();
