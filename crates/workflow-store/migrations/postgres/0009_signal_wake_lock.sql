-- A signal stored while a worker parks its execution must still wake it.
--
-- The wake trigger (0004, 0006) updates the execution only if it is 'waiting'. A worker parking
-- the execution reads the inbox in its park statement; a signal that commits after that read
-- but while the execution is still 'running' to the trigger was seen by neither, and the
-- execution slept until its wait timed out. Now the trigger locks the execution's row whatever
-- its status, so the two take turns: if the park holds the row, the trigger waits for it and
-- then finds the execution 'waiting'; if the trigger holds it, the park waits, and the
-- worker's next statement (a fresh snapshot, in the same transaction) finds the signal and
-- sets the execution runnable at once.

create or replace function workflow_signals_wake() returns trigger
language plpgsql as $$
begin
    perform 1
    from workflow_executions
    where id = new.execution_id
    for no key update;
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
