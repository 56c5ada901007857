-- Sub-workflows: a node of one execution (the parent) starts an execution of another workflow
-- (its child) and waits for it, holding no worker slot and no lease, as wait_for_signal does.
-- A map's items may each start one.
--
-- The child records its parent: the execution, the node, the item (for a map) and the attempt
-- that started it. An attempt starts at most one child (the unique index below), so a node
-- that runs again after its worker died finds the child it started instead of starting
-- another. A retry of the parent that runs the node again detaches its children
-- (detached_by_retry), so the node's attempts, numbered from 1 again, start new ones. depth
-- counts the parents above an execution (0 for one started otherwise); the worker refuses to
-- start a child past its depth limit, so a workflow calling itself without end fails instead.
alter table workflow_executions
    add column parent_execution_id uuid
        references workflow_executions (id) on delete set null,
    add column parent_node_id text,
    add column parent_item integer,
    add column parent_attempt integer,
    add column detached_by_retry bigint,
    add column depth integer not null default 0,
    -- Set once an execution starts a child: only then does its end look for children.
    add column has_children boolean not null default false,
    add constraint workflow_executions_depth_check check (depth >= 0);

-- One child per node attempt (and item); also finds an execution's children.
create unique index workflow_executions_parent_key
    on workflow_executions (
        parent_execution_id, parent_node_id, coalesce(parent_item, -1), parent_attempt
    )
    where parent_execution_id is not null
      and detached_by_retry is null;

-- The children that have not ended, for the sweep that cancels those whose parent ended.
create index workflow_executions_unended_children_idx
    on workflow_executions (parent_execution_id)
    where parent_execution_id is not null
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused');

-- A child that ends wakes its parent: it stores the signal "child:<child id>" in the parent's
-- inbox, with the child's status, output and error, which wakes the parent if it waits
-- (workflow_signals_wake). The worker then reads the child itself. A parent that ended
-- meanwhile, or a detached child, wakes nothing.
create function workflow_child_ended() returns trigger
language plpgsql as $$
begin
    insert into workflow_signals (execution_id, name, payload)
    select p.id,
           'child:' || new.id,
           jsonb_build_object(
               'execution_id', new.id,
               'status', new.status,
               'output', new.output,
               'error', new.error
           )
    from workflow_executions p
    where p.id = new.parent_execution_id
      and new.detached_by_retry is null
      and p.status not in ('completed', 'failed', 'cancelled', 'timed_out');
    return null;
end;
$$;

create trigger workflow_executions_child_ended
    after update of status on workflow_executions
    for each row
    when (new.parent_execution_id is not null
          and new.status in ('completed', 'failed', 'cancelled', 'timed_out')
          and old.status not in ('completed', 'failed', 'cancelled', 'timed_out'))
    execute function workflow_child_ended();

-- A parent that ends, however it ends (a cancel, its deadline, a failure), cancels its
-- children that have not ended, and they theirs (this trigger fires again for each child
-- that has children). A running child's worker is told at once (migration 0013's trigger).
-- Children whose rows another transaction holds (their own worker recording a step) are
-- skipped rather than waited for, so a parent and a child ending at once never deadlock; the
-- deadline sweep cancels them shortly after.
create function workflow_parent_ended() returns trigger
language plpgsql as $$
begin
    update workflow_executions c
    set status = 'cancelled',
        error = 'parent execution ' || new.id || ' ended (' || new.status || ')',
        run_at = null,
        finished_at = now(),
        lease_owner = null,
        lease_expires_at = null,
        pause_requested_at = null,
        updated_at = now()
    where c.id in (
        select id
        from workflow_executions
        where parent_execution_id = new.id
          and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
        for update skip locked
    );
    return null;
end;
$$;

create trigger workflow_executions_parent_ended
    after update of status on workflow_executions
    for each row
    when (new.has_children
          and new.status in ('completed', 'failed', 'cancelled', 'timed_out')
          and old.status not in ('completed', 'failed', 'cancelled', 'timed_out'))
    execute function workflow_parent_ended();
