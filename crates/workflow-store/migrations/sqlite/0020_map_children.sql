-- Sub-workflows per map item; see the PostgreSQL migration of the same version.
alter table workflow_executions
    add column parent_item integer;

drop index workflow_executions_parent_key;

create unique index workflow_executions_parent_key
    on workflow_executions (parent_execution_id, parent_node_id, coalesce(parent_item, -1), parent_attempt)
    where parent_execution_id is not null;

drop trigger workflow_executions_child_ended;

create trigger workflow_executions_child_ended
    after update of status on workflow_executions
    when new.parent_execution_id is not null
     and new.status in ('completed', 'failed', 'cancelled', 'timed_out')
     and old.status not in ('completed', 'failed', 'cancelled', 'timed_out')
begin
    insert into workflow_signals (execution_id, name, payload)
    select p.id,
           'child:' || new.parent_node_id
               || coalesce('[' || new.parent_item || ']', '')
               || ':' || new.parent_attempt,
           json_object(
               'execution_id', new.id,
               'status', new.status,
               'output', json(coalesce(new.output, 'null')),
               'error', new.error
           )
    from workflow_executions p
    where p.id = new.parent_execution_id
      and p.status not in ('completed', 'failed', 'cancelled', 'timed_out');
end;
