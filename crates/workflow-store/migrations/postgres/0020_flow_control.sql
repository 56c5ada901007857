-- Flow control (docs/ARCHITECTURE.md, "Flow control"): a workflow's default priority, and its
-- concurrency: a limit on its running executions, per workflow or per key, or fair dequeue
-- across keys. The definition says what (its "priority" and "concurrency"); the columns
-- below carry it where the claim can read it, and the triggers keep every way in (the store,
-- the SQL functions, a plain insert, a status change by any program) under the same rules.

-- An integral JSON number that fits an integer, as one; null for anything else.
create function workflow_json_integer(value jsonb) returns integer
language sql immutable as $$
    select case
        when jsonb_typeof(value) = 'number'
         and value::text ~ '^-?[0-9]{1,10}$'
         and value::text::bigint between -2147483648 and 2147483647
        then value::text::integer
    end
$$;

-- Each version's settings, generated from its definition so versions saved by any program
-- carry them. The claim reads the workflow's latest version's: a limit belongs to the
-- workflow, and saving a new version changes it for every execution of the workflow.
alter table workflow_versions
    add column default_priority integer
        generated always as (workflow_json_integer(definition -> 'priority')) stored,
    add column concurrency_limit integer
        generated always as (
            workflow_json_integer(definition -> 'concurrency' -> 'limit')
        ) stored,
    -- The key's path into the input: '' for a limit per workflow, null with no concurrency.
    add column concurrency_key_path text
        generated always as (
            case when jsonb_typeof(definition -> 'concurrency') = 'object'
                 then coalesce(definition -> 'concurrency' ->> 'key', '')
            end
        ) stored;

-- A priority left out takes the workflow's default (the insert trigger below), so a plain
-- insert gets it too.
alter table workflow_executions
    alter column priority drop default,
    -- The execution's group: with its workflow, at most the limit of them run at once. Null
    -- for a workflow without concurrency; '' for a limit per workflow.
    add column concurrency_key text,
    -- Set while the execution is held back by its group (not runnable); cleared when it is
    -- let go (the release trigger below) or claimed.
    add column held_since timestamptz,
    add constraint workflow_executions_concurrency_key_length
        check (char_length(concurrency_key) <= 512);

-- Held executions are not runnable, so the claim's index leaves them out: a key with
-- 100,000 executions held behind its limit costs the claim nothing.
drop index workflow_executions_runnable_idx;
create index workflow_executions_runnable_idx
    on workflow_executions (priority desc, run_at)
    where status in ('pending', 'running', 'retrying', 'waiting')
      and held_since is null;

-- The executions of a group that are admitted (not held) and pending or running: what the
-- claim counts against the limit, and what the release counts against the window.
create index workflow_executions_group_idx
    on workflow_executions (workflow_id, concurrency_key, status)
    where concurrency_key is not null
      and held_since is null
      and status in ('pending', 'running');

-- The held executions of a group, in the order they are let go.
create index workflow_executions_held_idx
    on workflow_executions (workflow_id, concurrency_key, priority desc, created_at, id)
    where held_since is not null
      and status in ('pending', 'retrying', 'waiting');

-- How many executions of a group of group_workflow may be admitted at once: the limit, or the
-- fair window (10, FAIR_WINDOW in the core crate) with a key and no limit; null when the
-- workflow no longer has concurrency (all may go).
create function workflow_concurrency_window(group_workflow uuid, out size integer, out fair boolean)
language sql stable as $$
    select case
               when v.concurrency_key_path is null then null
               else coalesce(v.concurrency_limit, 10)
           end,
           v.concurrency_limit is null
    from workflows w
    join workflow_versions v
      on v.workflow_id = w.id
     and v.version = w.latest_version
    where w.id = group_workflow
$$;

-- How many executions of a group are admitted: pending ones (fair) or pending and running
-- ones (a limit), counting up to `up_to`.
create function workflow_concurrency_admitted(
    group_workflow uuid, group_key text, fair boolean, up_to integer
) returns integer
language sql stable as $$
    select count(*)::integer
    from (
        select 1
        from workflow_executions e
        where e.workflow_id = group_workflow
          and e.concurrency_key = group_key
          and e.held_since is null
          and e.status in ('pending', 'running')
          and (not fair or e.status = 'pending')
        limit up_to
    ) admitted
$$;

-- Pins plain-SQL inserts to the workflow's latest version (0001), takes the workflow's
-- timeout (0003) and default priority, and puts the execution in its concurrency group:
-- the key given, else the value at the workflow's key path in its input (a string as is,
-- anything else as JSON), else '' for a limit per workflow. An input without the key's value
-- is refused (WW001), as is a key for a workflow without concurrency. The execution is held
-- at once when its group's window is full.
create or replace function workflow_executions_pin_version() returns trigger
language plpgsql as $$
declare
    workflow_name text;
    timeout_text text;
    version_priority integer;
    key_path text;
    win record;
begin
    if new.workflow_version is null then
        select latest_version into new.workflow_version
        from workflows
        where id = new.workflow_id;
        if new.workflow_version is null then
            raise exception 'workflow % does not exist', new.workflow_id
                using errcode = 'foreign_key_violation';
        end if;
    end if;
    select w.name, v.definition ->> 'timeout', v.default_priority, latest.concurrency_key_path
    into workflow_name, timeout_text, version_priority, key_path
    from workflows w
    join workflow_versions v
      on v.workflow_id = w.id
     and v.version = new.workflow_version
    join workflow_versions latest
      on latest.workflow_id = w.id
     and latest.version = w.latest_version
    where w.id = new.workflow_id;
    if new.deadline is null then
        new.deadline := new.created_at + make_interval(secs => timeout_text::float8);
    end if;
    if new.priority is null then
        new.priority := coalesce(version_priority, 0);
    end if;

    if key_path is null then
        if new.concurrency_key is not null then
            raise exception 'workflow "%" has no concurrency setting, so its executions take no concurrency key',
                            workflow_name
                using errcode = 'WW001';
        end if;
        return new;
    end if;
    if new.concurrency_key is null then
        if key_path = '' then
            new.concurrency_key := '';
        else
            new.concurrency_key := new.input #>> string_to_array(key_path, '.');
            if new.concurrency_key is null then
                raise exception 'the input has no value at "%", the concurrency key of workflow "%"',
                                key_path, workflow_name
                    using errcode = 'WW001';
            end if;
        end if;
    end if;
    if char_length(new.concurrency_key) > 512 then
        raise exception 'concurrency key is % characters; at most 512',
                        char_length(new.concurrency_key)
            using errcode = 'WW001';
    end if;
    if new.status in ('pending', 'retrying', 'waiting') and new.held_since is null then
        win := workflow_concurrency_window(new.workflow_id);
        if workflow_concurrency_admitted(new.workflow_id, new.concurrency_key, win.fair, win.size)
           >= win.size then
            new.held_since := now();
        end if;
    end if;
    return new;
end;
$$;

-- The claim of an execution of a group with a limit (a row going to 'running' from another
-- status): admitted only while fewer than the limit run. The count runs after the group's
-- advisory lock, in a statement of its own, so it sees every claim that committed before
-- (a claim holds its groups' locks until it commits) and this claim's earlier rows: two
-- claims never together pass the limit. A claim that finds the lock taken leaves the row
-- for a later claim; one that finds the group full holds the row instead of claiming it
-- (the update keeps the row as it was, with held_since set).
create function workflow_concurrency_admit() returns trigger
language plpgsql as $$
declare
    win record;
    running integer;
begin
    win := workflow_concurrency_window(new.workflow_id);
    if win.size is null or win.fair then
        return new;
    end if;
    if not pg_try_advisory_xact_lock(
        hashtext('workflow-worker concurrency'),
        hashtext(new.workflow_id::text || '/' || new.concurrency_key)
    ) then
        return null;
    end if;
    select count(*)::integer into running
    from workflow_executions e
    where e.workflow_id = new.workflow_id
      and e.concurrency_key = new.concurrency_key
      and e.held_since is null
      and e.status = 'running';
    if running < win.size then
        -- Its start, after the count: an execution that ended before this claim saw it end
        -- has a finished_at before this.
        new.started_at := coalesce(old.started_at, clock_timestamp());
        new.held_since := null;
        return new;
    end if;
    new := old;
    new.held_since := now();
    new.updated_at := now();
    return new;
end;
$$;

create trigger workflow_executions_concurrency_admit
    before update of status on workflow_executions
    for each row
    when (new.concurrency_key is not null
          and new.status = 'running'
          and old.status <> 'running')
    execute function workflow_concurrency_admit();

-- Lets held executions of a group go while its window has room, best priority and oldest
-- first, each to the back of the queue (run_at now, unless later). Runs whenever an
-- execution of a group changes status: a claim makes room in a fair window, an end, a wait
-- or a retry in a limit's.
create function workflow_concurrency_release(group_workflow uuid, group_key text) returns integer
language plpgsql as $$
declare
    win record;
    room integer;
    released integer;
begin
    win := workflow_concurrency_window(group_workflow);
    if win.size is not null then
        room := win.size
            - workflow_concurrency_admitted(group_workflow, group_key, win.fair, win.size);
        if room <= 0 then
            return 0;
        end if;
    end if;
    with let_go as (
        update workflow_executions e
        set held_since = null,
            run_at = case when e.run_at is not null then greatest(e.run_at, now()) end,
            updated_at = now()
        where e.id in (
            select h.id
            from workflow_executions h
            where h.workflow_id = group_workflow
              and h.concurrency_key = group_key
              and h.held_since is not null
              and h.status in ('pending', 'retrying', 'waiting')
            order by h.priority desc, h.created_at, h.id
            limit room
            for update skip locked
        )
        returning 1
    )
    select count(*)::integer into released from let_go;
    if released > 0 then
        perform pg_notify('workflow_worker_wakeup', '');
    end if;
    return released;
end;
$$;

-- Lets go what the windows of every group with held executions (of one workflow, or all)
-- have room for: after a save changed a limit, and in the deadline sweep, for what no status
-- change released (a limit raised, a release that skipped a locked row). Reads one index
-- entry per group.
create function workflow_concurrency_release_held(only_workflow uuid default null) returns integer
language sql as $$
    with recursive held_groups(workflow_id, concurrency_key) as (
        (
            select h.workflow_id, h.concurrency_key
            from workflow_executions h
            where h.held_since is not null
              and h.status in ('pending', 'retrying', 'waiting')
              and (only_workflow is null or h.workflow_id = only_workflow)
            order by h.workflow_id, h.concurrency_key
            limit 1
        )
        union all
        select next_group.workflow_id, next_group.concurrency_key
        from held_groups g
        cross join lateral (
            select h.workflow_id, h.concurrency_key
            from workflow_executions h
            where h.held_since is not null
              and h.status in ('pending', 'retrying', 'waiting')
              and (only_workflow is null or h.workflow_id = only_workflow)
              and (h.workflow_id, h.concurrency_key) > (g.workflow_id, g.concurrency_key)
            order by h.workflow_id, h.concurrency_key
            limit 1
        ) next_group
    )
    select coalesce(sum(workflow_concurrency_release(workflow_id, concurrency_key)), 0)::integer
    from held_groups
$$;

create function workflow_executions_concurrency_release() returns trigger
language plpgsql as $$
begin
    -- Becoming running frees no place of a limit, whose window counts running executions
    -- too (a fair window, counting pending ones only, gains one): a claim skips the count.
    if new.status = 'running'
       and not coalesce((workflow_concurrency_window(new.workflow_id)).fair, true) then
        return null;
    end if;
    perform workflow_concurrency_release(new.workflow_id, new.concurrency_key);
    return null;
end;
$$;

create trigger workflow_executions_concurrency_release
    after update of status on workflow_executions
    for each row
    when (new.concurrency_key is not null and old.status is distinct from new.status)
    execute function workflow_executions_concurrency_release();

-- The SQL functions take a concurrency key, and a priority left out (null) takes the
-- workflow's default; calls without them are unchanged.
drop function workflow_signal_with_start(
    text, text, text, jsonb, jsonb, text, text, double precision, integer
);
drop function workflow_start_execution(text, jsonb, double precision, integer, text, text);
drop function workflow_start_or_get(text, jsonb, double precision, integer, text, text);

create function workflow_start_or_get(
    workflow text,
    input jsonb default '{}'::jsonb,
    timeout_seconds double precision default null,
    priority integer default null,
    key text default null,
    key_reuse text default 'never',
    concurrency_key text default null
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

        -- Pinned to the version read here; a null deadline takes the workflow's timeout, a
        -- null priority its default, and a null concurrency key the one its input holds
        -- (the insert trigger).
        insert into workflow_executions (
            workflow_id, workflow_version, input, priority, deadline, key, concurrency_key
        )
        select w.id,
               w.latest_version,
               coalesce(workflow_start_or_get.input, '{}'::jsonb),
               workflow_start_or_get.priority,
               now() + make_interval(secs => timeout_seconds),
               workflow_start_or_get.key,
               workflow_start_or_get.concurrency_key
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

comment on function workflow_start_or_get(text, jsonb, double precision, integer, text, text, text) is
    'Starts an execution of a workflow, or returns the one holding the key, and says which; see migrations 0017 and 0020.';

create function workflow_start_execution(
    workflow text,
    input jsonb default '{}'::jsonb,
    timeout_seconds double precision default null,
    priority integer default null,
    key text default null,
    key_reuse text default 'never',
    concurrency_key text default null
) returns uuid
language sql as $$
    select s.execution_id
    from workflow_start_or_get(
        workflow, input, timeout_seconds, priority, key, key_reuse, concurrency_key
    ) s
$$;

comment on function workflow_start_execution(text, jsonb, double precision, integer, text, text, text) is
    'Starts an execution of a workflow (name or id), or returns the one holding the key, and returns its id; see migrations 0008, 0017 and 0020.';

create function workflow_signal_with_start(
    workflow text,
    key text,
    name text,
    payload jsonb default 'null'::jsonb,
    input jsonb default '{}'::jsonb,
    idempotency_key text default null,
    key_reuse text default 'never',
    timeout_seconds double precision default null,
    priority integer default null,
    concurrency_key text default null
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
        from workflow_start_or_get(
            workflow, input, timeout_seconds, priority, key, key_reuse, concurrency_key
        ) s;

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

comment on function workflow_signal_with_start(text, text, text, jsonb, jsonb, text, text, double precision, integer, text) is
    'Sends a signal to the execution holding a key, starting it first if none does; see migrations 0017 and 0020.';
