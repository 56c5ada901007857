-- NOTIFY workflow_execution_cancelled with the execution's id when a running execution held
-- under a lease is cancelled, however it was cancelled (the store, workflow_cancel_execution,
-- the CLI, a plain SQL update): the worker holding it LISTENs and stops its nodes at once,
-- instead of at its next heartbeat (which stays the fallback, for a worker that is not
-- listening, such as one behind a transaction pooler). Executions cancelled while pending,
-- retrying or waiting have no holder and send nothing.
--
-- One call per statement, as workflow_notify_ended: the transition tables hold the rows the
-- statement changed.
create function workflow_notify_cancelled() returns trigger
language plpgsql as $$
begin
    perform pg_notify('workflow_execution_cancelled', cancelled.id::text)
    from new_rows cancelled
    join old_rows before_update
      on before_update.id = cancelled.id
    where cancelled.status = 'cancelled'
      and before_update.status = 'running'
      and before_update.lease_owner is not null;
    return null;
end;
$$;

create trigger workflow_executions_cancelled_notify
    after update on workflow_executions
    referencing old table as old_rows new table as new_rows
    for each statement
    execute function workflow_notify_cancelled();
