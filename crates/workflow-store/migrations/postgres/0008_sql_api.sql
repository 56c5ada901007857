-- The SQL API: functions that start, signal and cancel executions, and a channel that reports
-- each execution's end. A public contract beside the tables', for programs in any language:
--
--   select workflow_start_execution('hello', '{"who": "py"}');          -- its id
--   select workflow_send_signal($1, 'approval', '{"approved": true}');  -- the signal's id
--   select workflow_cancel_execution($1);                               -- the status after
--   listen workflow_execution_ended;  -- payload {"id": "<execution id>", "status": "<status>"}
--
-- Each function does what the Rust store's call of the same name does (Store::start_execution,
-- send_signal, cancel_execution), in one statement or under one row lock, so it is safe from
-- any number of sessions at once. A SQL null passed for an optional argument means its
-- default. Errors are raised with a SQLSTATE to match on:
--   no_data_found (P0002)                     the workflow or the execution does not exist;
--   object_not_in_prerequisite_state (55000)  a signal to an execution that already ended;
--   invalid_parameter_value (22023)           a timeout that is not 0 or more seconds;
--   null_value_not_allowed (22004)            a required argument is null.
--
-- To wait for a result without polling: listen on the channel, then start the execution (or,
-- for one started earlier, read its status once: it may have ended before the listen), then
-- wait for the notification carrying its id. Notifications are sent when the transaction
-- that ended the execution commits, so its output and node runs are readable by then. A
-- session that was not listening (or lost its connection) misses them: read the status.

-- Starts an execution of the latest version of a workflow and returns its id. The workflow
-- is named by id when the text is a UUID (8-4-4-4-12 hex digits, optionally in braces, or 32
-- hex digits), else by name. The deadline is timeout_seconds from now; null takes the
-- workflow's "timeout" from the execution's creation, or none (the insert trigger sets it).
create function workflow_start_execution(
    workflow text,
    input jsonb default '{}'::jsonb,
    timeout_seconds double precision default null,
    priority integer default 0
) returns uuid
language plpgsql as $$
declare
    by_id uuid;
    started uuid;
begin
    if workflow is null then
        raise exception 'workflow is required: a workflow name or id'
            using errcode = 'null_value_not_allowed';
    end if;
    -- NaN and infinity fail this too.
    if not (timeout_seconds >= 0 and timeout_seconds < 'infinity') then
        raise exception 'timeout_seconds (%) must be a number of seconds, 0 or more',
                        timeout_seconds
            using errcode = 'invalid_parameter_value';
    end if;
    -- Hyphenated, hyphenated in braces, or 32 hex digits: ids as the Rust API reads them.
    if workflow ~* ('^(\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\}'
                    || '|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}'
                    || '|[0-9a-f]{32})$') then
        by_id := workflow::uuid;
    end if;

    -- One statement, as the store's START_EXECUTION: pinned to the version read here.
    insert into workflow_executions (workflow_id, workflow_version, input, priority, deadline)
    select w.id,
           w.latest_version,
           coalesce(workflow_start_execution.input, '{}'::jsonb),
           coalesce(workflow_start_execution.priority, 0),
           now() + make_interval(secs => timeout_seconds)
    from workflows w
    where (by_id is not null and w.id = by_id)
       or (by_id is null and w.name = workflow)
    returning id
    into started;

    if started is null then
        raise exception 'workflow % does not exist',
                        case when by_id is null then '"' || workflow || '"' else by_id::text end
            using errcode = 'no_data_found';
    end if;
    return started;
end;
$$;

comment on function workflow_start_execution(text, jsonb, double precision, integer) is
    'Starts an execution of a workflow (name or id) and returns its id; see migration 0008.';

-- Stores a signal for an execution and returns the signal's id (workflow_signals.id). The
-- insert trigger wakes the execution at once if it waits. With an idempotency key, a send
-- repeated with the same key stores nothing and returns the id stored the first time (its
-- name and payload are the first send's). Refused for an unknown execution and for one that
-- already ended, as the store's send_signal; the execution's row is locked from the check to
-- the insert, so no execution ends in between. "for no key update" is enough for that (every
-- status change conflicts with it) and, unlike "for update", does not hold up workers
-- inserting node runs of the same execution.
create function workflow_send_signal(
    execution_id uuid,
    name text,
    payload jsonb default 'null'::jsonb,
    idempotency_key text default null
) returns bigint
language plpgsql as $$
declare
    current_status text;
    signal_id bigint;
begin
    if execution_id is null or name is null then
        raise exception 'execution_id and name are required'
            using errcode = 'null_value_not_allowed';
    end if;

    select e.status
    into current_status
    from workflow_executions e
    where e.id = workflow_send_signal.execution_id
    for no key update;

    if current_status is null then
        raise exception 'execution % does not exist', execution_id
            using errcode = 'no_data_found';
    end if;
    if current_status in ('completed', 'failed', 'cancelled', 'timed_out') then
        raise exception 'execution % already ended (%); signals are not accepted',
                        execution_id, current_status
            using errcode = 'object_not_in_prerequisite_state';
    end if;

    -- The store's INSERT_SIGNAL. The constraint is named rather than its columns, which
    -- would clash with this function's parameters.
    insert into workflow_signals (execution_id, name, payload, idempotency_key)
    values (workflow_send_signal.execution_id,
            workflow_send_signal.name,
            coalesce(workflow_send_signal.payload, 'null'::jsonb),
            workflow_send_signal.idempotency_key)
    on conflict on constraint workflow_signals_idempotency_key do nothing
    returning id
    into signal_id;

    -- A repeated key: the store's SIGNAL_BY_KEY.
    if signal_id is null then
        select s.id
        into signal_id
        from workflow_signals s
        where s.execution_id = workflow_send_signal.execution_id
          and s.idempotency_key = workflow_send_signal.idempotency_key;
    end if;
    return signal_id;
end;
$$;

comment on function workflow_send_signal(uuid, text, jsonb, text) is
    'Sends a signal to an execution that has not ended and returns its id; see migration 0008.';

-- Cancels an execution that has not ended, recording the reason as its error, and returns
-- its status afterwards: 'cancelled', or, for an execution that had already ended, the status
-- it ended with, unchanged (so a repeated cancel is harmless and the caller learns how it
-- ended). The store's cancel_execution reports that case as a conflict instead. A worker
-- running the execution stops its nodes at its next heartbeat.
create function workflow_cancel_execution(
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
        updated_at = now()
    where e.id = workflow_cancel_execution.execution_id
      and e.status in ('pending', 'running', 'retrying', 'waiting')
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

comment on function workflow_cancel_execution(uuid, text) is
    'Cancels an execution that has not ended and returns its resulting status; see migration 0008.';

-- NOTIFY workflow_execution_ended with {"id": "<uuid>", "status": "<status>"} for each
-- execution whose status became terminal (completed, failed, cancelled, timed_out): however it
-- ended (a worker, a deadline sweep, a cancel by function, CLI or plain SQL), exactly once,
-- since no status leaves the terminal ones. An execution inserted already ended is not
-- reported.
--
-- One call per statement, not per row: a worker finishes a batch of executions in one update,
-- and the transition tables hold the rows that statement changed. Statements that end nothing
-- (claims, lease renewals, steps) find no row and send nothing. Unlike the wake-up hints,
-- each notification is distinct (PostgreSQL folds only identical ones): a waiter needs its id.
create function workflow_notify_ended() returns trigger
language plpgsql as $$
begin
    perform pg_notify(
        'workflow_execution_ended',
        jsonb_build_object('id', ended.id, 'status', ended.status)::text
    )
    from new_rows ended
    join old_rows before_update
      on before_update.id = ended.id
    where ended.status in ('completed', 'failed', 'cancelled', 'timed_out')
      and before_update.status not in ('completed', 'failed', 'cancelled', 'timed_out');
    return null;
end;
$$;

create trigger workflow_executions_ended_notify
    after update on workflow_executions
    referencing old table as old_rows new table as new_rows
    for each statement
    execute function workflow_notify_ended();
