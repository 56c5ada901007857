-- A node run's execution is no longer checked by a foreign key when the run is written; a
-- trigger deletes an execution's node runs with it, as the key's `on delete cascade` did.
--
-- The key's check ran once per node run written, on the hot path: a query through SPI that
-- read the execution by its primary key and locked it (for key share, a WAL record of its
-- own), in the statement that had just locked and updated that same execution. Measured on a
-- replay of the worker's step (finish an execution and write its node run, batches of 250):
-- 16 % of the statement's time; in a drain, about 7 % more executions a second
-- (docs/BENCHMARKS.md, "Fifth round").
--
-- What the key guaranteed still holds:
-- * A node run names an execution that exists: the worker writes node runs in the statement
--   that fences the step, only for the executions it updated there (so locked until it
--   commits: a delete of one waits for that, then finds the runs below).
-- * Deleting an execution (a prune, or an application's own `delete`) deletes its node runs,
--   in the same statement, through the trigger below. A truncate of the executions needs
--   `cascade` (signals, retries and item runs still refer to them by foreign key), and that
--   reaches the node runs too, through their key to the retries that superseded them.
-- Applications read node runs; they do not write them.

alter table workflow_node_runs drop constraint workflow_node_runs_execution_id_fkey;

create function workflow_delete_node_runs() returns trigger
language plpgsql as $$
begin
    -- Planned on each call (a static statement's plan would be kept for the session, made for
    -- however many rows the first call deleted): a few rows are found through the node runs'
    -- execution index, a whole table's worth by a join.
    execute 'delete from workflow_node_runs r
             using deleted_executions d
             where r.execution_id = d.id';
    return null;
end;
$$;

-- Once per statement, over the rows it deleted: a prune of a thousand executions deletes their
-- node runs in one statement instead of a thousand lookups.
create trigger workflow_executions_delete_node_runs
    after delete on workflow_executions
    referencing old table as deleted_executions
    for each statement
    execute function workflow_delete_node_runs();
