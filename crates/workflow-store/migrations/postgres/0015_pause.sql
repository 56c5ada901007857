-- Pausing: an operator stops an execution where it is, to resume it later.
--
-- A paused execution is in status 'paused': never claimed (it is not in the runnable
-- predicate), still cancellable, still timed out by its deadline, and it still receives
-- signals into its inbox. A pending, retrying or waiting execution is paused at once. A
-- running one held under a lease is asked to pause: `pause_requested_at` is set, its holder
-- lets the nodes in flight finish and record, starts no new one, and then records the pause
-- (its step statement tells it of the request). Resuming makes a paused execution pending,
-- or withdraws a request not yet honoured.
alter table workflow_executions
    add column pause_requested_at timestamptz;

alter table workflow_executions
    drop constraint workflow_executions_status_check,
    add constraint workflow_executions_status_check check (
        status in ('pending', 'running', 'retrying', 'waiting', 'paused',
                   'completed', 'failed', 'cancelled', 'timed_out')
    );

-- The deadline sweep reads paused executions too.
drop index workflow_executions_deadline_idx;

create index workflow_executions_deadline_idx
    on workflow_executions (deadline)
    where deadline is not null
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused');

-- An execution paused because a node failed for good (its retry policy says "on_failure":
-- "pause") is resumed through a retry of the nodes that did not complete, recorded here.
alter table workflow_execution_retries
    drop constraint workflow_execution_retries_from_status_check,
    add constraint workflow_execution_retries_from_status_check check (
        from_status in ('failed', 'cancelled', 'timed_out', 'paused')
    );

-- The SQL API's cancel (migration 0008) cancels paused executions too.
create or replace function workflow_cancel_execution(
    execution_id uuid,
    reason text default 'cancelled by request'
) returns text
language plpgsql as $$
declare
    result text;
begin
    if execution_id is null then
        raise exception 'execution_id is required'
            using errcode = 'null_value_not_allowed';
    end if;

    -- The store's CANCEL_EXECUTION.
    update workflow_executions e
    set status = 'cancelled',
        error = coalesce(reason, 'cancelled by request'),
        run_at = null,
        finished_at = now(),
        lease_owner = null,
        lease_expires_at = null,
        pause_requested_at = null,
        updated_at = now()
    where e.id = workflow_cancel_execution.execution_id
      and e.status in ('pending', 'running', 'retrying', 'waiting', 'paused')
    returning e.status
    into result;

    -- Not cancelled: unknown, or already ended (ended is final, so this read is current).
    if result is null then
        select e.status
        into result
        from workflow_executions e
        where e.id = workflow_cancel_execution.execution_id;
        if result is null then
            raise exception 'execution % does not exist', execution_id
                using errcode = 'no_data_found';
        end if;
    end if;
    return result;
end;
$$;
