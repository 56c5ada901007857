-- Sub-workflows per map item: a map whose item node is a `subworkflow` starts one child per
-- item (and attempt). The child records the item too, and one child per (node, item,
-- attempt) is what the unique index keeps; its end is signalled to the parent as
-- "child:<node>[<item>]:<attempt>", the node id the item's attempt runs under.
alter table workflow_executions
    add column parent_item integer;

drop index workflow_executions_parent_key;

create unique index workflow_executions_parent_key
    on workflow_executions (parent_execution_id, parent_node_id, coalesce(parent_item, -1), parent_attempt)
    where parent_execution_id is not null;

create or replace function workflow_child_ended() returns trigger
language plpgsql as $$
begin
    insert into workflow_signals (execution_id, name, payload)
    select p.id,
           'child:' || new.parent_node_id
               || coalesce('[' || new.parent_item || ']', '')
               || ':' || new.parent_attempt,
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
