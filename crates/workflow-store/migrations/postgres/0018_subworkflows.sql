-- Sub-workflows: a node of one execution (the parent) starts an execution of another workflow
-- (its child) and waits for it, holding no worker slot and no lease, as wait_for_signal does.
--
-- The child records its parent: the execution, the node and the attempt that started it. A
-- node attempt starts at most one child (the unique index below), so a node that runs again
-- after its worker died finds the child it started instead of starting another. depth counts
-- the parents above an execution (0 for one started otherwise); the worker refuses to start
-- a child past its depth limit, so a workflow calling itself without end fails instead.
alter table workflow_executions
    add column parent_execution_id uuid
        references workflow_executions (id) on delete set null,
    add column parent_node_id text,
    add column parent_attempt integer,
    add column depth integer not null default 0,
    -- Set once an execution starts a child: only then does its end look for children.
    add column has_children boolean not null default false,
    add constraint workflow_executions_depth_check check (depth >= 0);

-- One child per node attempt; also finds an execution's children.
create unique index workflow_executions_parent_key
    on workflow_executions (parent_execution_id, parent_node_id, parent_attempt)
    where parent_execution_id is not null;

-- A child that ends tells its parent: it stores the signal "child:<node>:<attempt>" in the
-- parent's inbox, with the child's id, status, output and error, which wakes the parent if it
-- waits (workflow_signals_wake). A parent that ended meanwhile gets nothing.
create function workflow_child_ended() returns trigger
language plpgsql as $$
begin
    insert into workflow_signals (execution_id, name, payload)
    select p.id,
           'child:' || new.parent_node_id || ':' || new.parent_attempt,
           jsonb_build_object(
               'execution_id', new.id,
               'status', new.status,
               'output', new.output,
               'error', new.error
           )
    from workflow_executions p
    where p.id = new.parent_execution_id
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
    where c.parent_execution_id = new.id
      and c.status in ('pending', 'running', 'retrying', 'waiting', 'paused');
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
