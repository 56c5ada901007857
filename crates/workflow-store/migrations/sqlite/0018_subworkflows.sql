-- Sub-workflows; see the PostgreSQL migration of the same version. The SQLite store turns on
-- recursive_triggers on its connections, so a cancelled child's own children are cancelled
-- by the same trigger. Writes are serialised, so no child is skipped.
alter table workflow_executions
    add column parent_execution_id text
        references workflow_executions (id) on delete set null;

alter table workflow_executions
    add column parent_node_id text;

alter table workflow_executions
    add column parent_item integer;

alter table workflow_executions
    add column parent_attempt integer;

alter table workflow_executions
    add column detached_by_retry integer;

alter table workflow_executions
    add column depth integer not null default 0
        constraint workflow_executions_depth_check check (depth >= 0);

alter table workflow_executions
    add column has_children integer not null default 0;

create unique index workflow_executions_parent_key
    on workflow_executions (
        parent_execution_id, parent_node_id, coalesce(parent_item, -1), parent_attempt
    )
    where parent_execution_id is not null
      and detached_by_retry is null;

create index workflow_executions_unended_children_idx
    on workflow_executions (parent_execution_id)
    where parent_execution_id is not null
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused');

create trigger workflow_executions_child_ended
    after update of status on workflow_executions
    when new.parent_execution_id is not null
     and new.status in ('completed', 'failed', 'cancelled', 'timed_out')
     and old.status not in ('completed', 'failed', 'cancelled', 'timed_out')
begin
    insert into workflow_signals (execution_id, name, payload)
    select p.id,
           'child:' || new.id,
           json_object(
               'execution_id', new.id,
               'status', new.status,
               'output', json(coalesce(new.output, 'null')),
               'error', new.error
           )
    from workflow_executions p
    where p.id = new.parent_execution_id
      and new.detached_by_retry is null
      and p.status not in ('completed', 'failed', 'cancelled', 'timed_out');
end;

create trigger workflow_executions_parent_ended
    after update of status on workflow_executions
    when new.has_children
     and new.status in ('completed', 'failed', 'cancelled', 'timed_out')
     and old.status not in ('completed', 'failed', 'cancelled', 'timed_out')
begin
    update workflow_executions
    set status = 'cancelled',
        error = 'parent execution ' || new.id || ' ended (' || new.status || ')',
        run_at = null,
        finished_at = cast(unixepoch('subsec') * 1000 as integer),
        lease_owner = null,
        lease_expires_at = null,
        pause_requested_at = null,
        updated_at = cast(unixepoch('subsec') * 1000 as integer)
    where parent_execution_id = new.id
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused');
end;
