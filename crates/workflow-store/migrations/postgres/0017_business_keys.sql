-- Business keys: an execution may carry a key (an order number, a request id) that is unique
-- among the executions of its workflow that have not ended. A start with the key of such an
-- execution returns it instead of creating another (an idempotent start); once it ended, the
-- start's key_reuse says whether the key names it for good ('never', the default: the start
-- returns it) or may start a new execution ('after_end').
--
-- The unique index below is the whole guarantee, for every way in: the store, the SQL
-- functions, and a plain insert (which fails with a unique violation on
-- workflow_executions_active_key when the key is held). Only keyed rows are in either index,
-- so executions without a key cost nothing more.
alter table workflow_executions
    add column key text,
    add constraint workflow_executions_key_length
        check (key is null or char_length(key) between 1 and 512);

create unique index workflow_executions_active_key
    on workflow_executions (workflow_id, key)
    where key is not null
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused');

-- The latest execution with a key, ended or not.
create index workflow_executions_key_idx
    on workflow_executions (workflow_id, key, created_at desc, id desc)
    where key is not null;

-- Starts an execution of the latest version of a workflow, or returns the one that holds the
-- key: the keyed start the store and the functions below share. The workflow is named by id
-- when the text is a UUID, else by name, as in workflow_start_execution. Returns the
-- execution's id and whether this call created it.
--
-- Two calls with one key at once, from any sessions, create one execution: the second
-- insert waits for the first's transaction, finds the key taken when it commits, and reads
-- the winner on the next turn of the loop (each statement of this function sees what
-- committed before it began). Under repeatable read the snapshot cannot move, so after a
-- few turns it gives up with serialization_failure (40001): retry the transaction.
create function workflow_start_or_get(
    workflow text,
    input jsonb default '{}'::jsonb,
    timeout_seconds double precision default null,
    priority integer default 0,
    key text default null,
    key_reuse text default 'never'
) returns table (execution_id uuid, created boolean)
language plpgsql as $$
-- The parameters `key`, `input` and `priority` are also column names: unqualified, a name
-- means the column (the conflict target), and the parameters are qualified where used.
#variable_conflict use_column
declare
    by_id uuid;
    workflow_uuid uuid;
    reuse text := coalesce(key_reuse, 'never');
    held uuid;
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
    if reuse not in ('never', 'after_end') then
        raise exception 'key_reuse (%) must be never or after_end', reuse
            using errcode = 'invalid_parameter_value';
    end if;
    if key is not null and char_length(key) not between 1 and 512 then
        raise exception 'key must be 1 to 512 characters, not %', char_length(key)
            using errcode = 'invalid_parameter_value';
    end if;
    -- Hyphenated, hyphenated in braces, or 32 hex digits: ids as the Rust API reads them.
    if workflow ~* ('^(\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\}'
                    || '|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}'
                    || '|[0-9a-f]{32})$') then
        by_id := workflow::uuid;
    end if;
    select w.id
    into workflow_uuid
    from workflows w
    where (by_id is not null and w.id = by_id)
       or (by_id is null and w.name = workflow);
    if workflow_uuid is null then
        raise exception 'workflow % does not exist',
                        case when by_id is null then '"' || workflow || '"' else by_id::text end
            using errcode = 'no_data_found';
    end if;

    for turn in 1..5 loop
        if key is not null then
            select e.id
            into held
            from workflow_executions e
            where e.workflow_id = workflow_uuid
              and e.key = workflow_start_or_get.key
              and (reuse = 'never'
                   or e.status in ('pending', 'running', 'retrying', 'waiting', 'paused'))
            order by e.created_at desc, e.id desc
            limit 1;
            if held is not null then
                return query select held, false;
                return;
            end if;
        end if;

        -- Pinned to the version read here; a null deadline takes the workflow's timeout
        -- (the insert trigger of migration 0003).
        insert into workflow_executions (
            workflow_id, workflow_version, input, priority, deadline, key
        )
        select w.id,
               w.latest_version,
               coalesce(workflow_start_or_get.input, '{}'::jsonb),
               coalesce(workflow_start_or_get.priority, 0),
               now() + make_interval(secs => timeout_seconds),
               workflow_start_or_get.key
        from workflows w
        where w.id = workflow_uuid
        on conflict (workflow_id, key)
            where key is not null
              and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
            do nothing
        returning id
        into started;
        if started is not null then
            return query select started, true;
            return;
        end if;
        -- Another start took the key after this turn's read: read it on the next turn.
    end loop;
    raise exception 'key % of workflow % kept changing hands; try again', key, workflow
        using errcode = 'serialization_failure';
end;
$$;

comment on function workflow_start_or_get(text, jsonb, double precision, integer, text, text) is
    'Starts an execution of a workflow, or returns the one holding the key, and says which; see migration 0017.';

-- workflow_start_execution (migration 0008) takes a key too; calls without one are unchanged.
drop function workflow_start_execution(text, jsonb, double precision, integer);

create function workflow_start_execution(
    workflow text,
    input jsonb default '{}'::jsonb,
    timeout_seconds double precision default null,
    priority integer default 0,
    key text default null,
    key_reuse text default 'never'
) returns uuid
language sql as $$
    select s.execution_id
    from workflow_start_or_get(workflow, input, timeout_seconds, priority, key, key_reuse) s
$$;

comment on function workflow_start_execution(text, jsonb, double precision, integer, text, text) is
    'Starts an execution of a workflow (name or id), or returns the one holding the key, and returns its id; see migrations 0008 and 0017.';

-- Signal-with-start: sends a signal to the execution of a workflow that holds a key,
-- starting it first (with input) if none does, in one transaction. Two calls with one key at
-- once create one execution holding both signals. If the key's execution ended, a
-- key_reuse of 'never' refuses the signal (object_not_in_prerequisite_state, as
-- workflow_send_signal does) and 'after_end' starts a new execution for it. Returns the
-- execution's id, the signal's id, and whether this call started the execution.
create function workflow_signal_with_start(
    workflow text,
    key text,
    name text,
    payload jsonb default 'null'::jsonb,
    input jsonb default '{}'::jsonb,
    idempotency_key text default null,
    key_reuse text default 'never',
    timeout_seconds double precision default null,
    priority integer default 0
) returns table (execution_id uuid, signal_id bigint, created boolean)
language plpgsql as $$
declare
    target uuid;
    started boolean;
    current_status text;
begin
    if key is null or name is null then
        raise exception 'key and name are required'
            using errcode = 'null_value_not_allowed';
    end if;
    for turn in 1..5 loop
        select s.execution_id, s.created
        into target, started
        from workflow_start_or_get(workflow, input, timeout_seconds, priority, key, key_reuse) s;

        -- It may have ended since it was read: look again under its row lock, which
        -- workflow_send_signal takes too, so it cannot end before the signal is stored.
        select e.status
        into current_status
        from workflow_executions e
        where e.id = target
        for no key update;

        if current_status not in ('completed', 'failed', 'cancelled', 'timed_out') then
            return query
            select target,
                   workflow_send_signal(target, name, payload, idempotency_key),
                   started;
            return;
        end if;
        if coalesce(key_reuse, 'never') = 'never' then
            raise exception 'execution % (key %) already ended (%); signals are not accepted',
                            target, key, current_status
                using errcode = 'object_not_in_prerequisite_state';
        end if;
        -- after_end: it ended after the start read it; the next turn starts a new one.
    end loop;
    raise exception 'key % of workflow % kept changing hands; try again', key, workflow
        using errcode = 'serialization_failure';
end;
$$;

comment on function workflow_signal_with_start(text, text, text, jsonb, jsonb, text, text, double precision, integer) is
    'Sends a signal to the execution holding a key, starting it first if none does; see migration 0017.';
