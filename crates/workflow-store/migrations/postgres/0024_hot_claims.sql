-- Claims become HOT updates: no index of workflow_executions reads `status` any more, so a
-- claim, which changes the status (pending to running) and the lease and no indexed column,
-- writes its new row version beside the old one on the same page and adds no index entry.
-- Before, each claim added five or six (the primary key, both list indexes, the status list,
-- the runnable index, the deadline index), which made the claim the dearest statement of the
-- hot path. Measured in docs/BENCHMARKS.md ("HOT claims").
--
-- The partial indexes that read "not ended" from the status now read `finished_at is null`,
-- the same rows: the check workflow_executions_finished_at_iff_terminal (0002) makes
-- finished_at set exactly when the status is completed, failed, cancelled or timed_out.
-- Where an index left out a non-terminal status (paused, or running), the statements using it
-- check the status on the row. A statement reaches these indexes only if its own conditions
-- imply the predicate, so the store's statements and the functions below say
-- `finished_at is null`; so must an application's `on conflict` on the business key:
-- `on conflict (workflow_id, key) where key is not null and finished_at is null`.
--
-- This rewrites the table once (the stored column) and rebuilds its indexes: plan for it on a
-- large history (about a minute per few million executions; docs/BENCHMARKS.md).

-- Two facts of the status that indexes may read, kept by PostgreSQL from the row and read-only:
-- neither changes when a claim takes a pending execution, so neither stops a HOT update.
-- * ended_status: the status an execution ended with, null while it has not ended; what the
--   Executions view's filter by failed, cancelled or timed out reads.
-- * pending_or_running: whether it counts against its concurrency group's window (0020), so
--   that a group's count reads those executions only, not the ones waiting or paused beside
--   them (a group may hold thousands waiting for approval).
alter table workflow_executions
    add column ended_status text
        generated always as (case when finished_at is not null then status end) stored,
    add column pending_or_running boolean
        generated always as (status in ('pending', 'running')) stored;

-- A claim takes the runnable rows of a page together, in one transaction, so each page keeps
-- half its space for their new versions: with less, the versions that do not fit move to other
-- pages and add their index entries after all. Finished rows are kept at the same density,
-- which roughly doubles the table's size per execution kept; pruning bounds it.
alter table workflow_executions set (fillfactor = 50);

-- Status filters of the Executions view: the executions that have not ended (the status is
-- checked on the row), and the ones that ended other than completed.
drop index workflow_executions_status_list_idx;
create index workflow_executions_unended_list_idx
    on workflow_executions (created_at desc, id desc)
    where finished_at is null;
create index workflow_executions_ended_list_idx
    on workflow_executions (ended_status, created_at desc, id desc)
    where ended_status <> 'completed';

-- Paused executions are in the two claim indexes now; the claim reads them and skips them.
drop index workflow_executions_runnable_idx;
create index workflow_executions_runnable_idx
    on workflow_executions (priority desc, run_at)
    where finished_at is null
      and held_since is null;

drop index workflow_executions_rescued_idx;
create index workflow_executions_rescued_idx
    on workflow_executions (priority desc, run_at)
    where rescue_count > 0
      and finished_at is null;

drop index workflow_executions_deadline_idx;
create index workflow_executions_deadline_idx
    on workflow_executions (deadline)
    where deadline is not null
      and finished_at is null;

drop index workflow_executions_active_key;
create unique index workflow_executions_active_key
    on workflow_executions (workflow_id, key)
    where key is not null
      and finished_at is null;

drop index workflow_executions_unended_children_idx;
create index workflow_executions_unended_children_idx
    on workflow_executions (parent_execution_id)
    where parent_execution_id is not null
      and finished_at is null;

-- The admitted executions of a group that are pending or running, as before; a fair window's
-- count (pending ones) checks the status on the row.
drop index workflow_executions_group_idx;
create index workflow_executions_group_idx
    on workflow_executions (workflow_id, concurrency_key)
    where concurrency_key is not null
      and held_since is null
      and pending_or_running;

drop index workflow_executions_held_idx;
create index workflow_executions_held_idx
    on workflow_executions (workflow_id, concurrency_key, priority desc, created_at, id)
    where held_since is not null
      and finished_at is null;

-- The functions of 0020 that read these indexes, in the terms of their predicates.

create or replace function workflow_concurrency_admitted(
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
          and e.pending_or_running
          and (not fair or e.status = 'pending')
        limit up_to
    ) admitted
$$;

create or replace function workflow_concurrency_admit() returns trigger
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
      and e.pending_or_running
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

create or replace function workflow_concurrency_release(group_workflow uuid, group_key text) returns integer
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
              and h.finished_at is null
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

create or replace function workflow_concurrency_release_held(only_workflow uuid default null) returns integer
language sql as $$
    with recursive held_groups(workflow_id, concurrency_key) as (
        (
            select h.workflow_id, h.concurrency_key
            from workflow_executions h
            where h.held_since is not null
              and h.finished_at is null
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
              and h.finished_at is null
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

create or replace function workflow_start_or_get(
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
              and (reuse = 'never' or e.finished_at is null)
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
              and finished_at is null
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
