-- See the PostgreSQL migration of the same version: every foreign key gets an index its
-- action's lookup can use, so deleting a referenced row (a prune deletes executions by the
-- thousand) does not read the whole referring table once per row.
create index workflow_executions_parent_idx
    on workflow_executions (parent_execution_id)
    where parent_execution_id is not null;

create index workflow_item_runs_execution_idx
    on workflow_item_runs (execution_id);

create index workflow_node_runs_superseded_idx
    on workflow_node_runs (superseded_by)
    where superseded_by is not null;

create index workflow_item_runs_superseded_idx
    on workflow_item_runs (superseded_by)
    where superseded_by is not null;

create index workflow_schedules_workflow_idx
    on workflow_schedules (workflow_id);
