-- Every foreign key gets an index its action's lookup can use (tests/schema.rs checks it).
-- Deleting a referenced row looks up the rows referring to it by their column alone; where no
-- index can answer that (an index with another predicate cannot), each row deleted reads the
-- whole referring table. A prune deletes executions by the thousand:
--
-- * the children of a deleted execution get parent_execution_id set to null (0018): with
--   200,000 executions in the table, 26 ms per execution deleted, 0.04 ms with the index; a
--   prune of 1,000 beside 1,200,000 outlasted the statement timeout. Only children are in
--   the index, so executions started otherwise cost it nothing.
-- * a deleted execution's item runs go with it (0019): their unique indexes leave out
--   superseded runs, so they could not find them all.
-- * a deleted execution's retries go with it (0014), and the node and item runs they
--   superseded have superseded_by to look up: only those runs are in these indexes.
-- * a schedule refers to its workflow: a workflow deleted by hand finds its schedules.
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
