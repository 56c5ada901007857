-- What a claim and a finish cost per row, and how much of it is which index: replays the
-- worker's two updates of workflow_executions in batches of 250 over 20,000 pending
-- executions and 100,000 finished ones, then rolls everything back. Run it on a scratch
-- database migrated by the binary (it truncates the tables inside its transaction):
--
--   createdb rowcost && workflow-worker migrate --database-url postgres:///rowcost
--   psql postgres:///rowcost -f crates/workflow-bench/row_costs.sql
--
-- To see what an index costs, uncomment its `drop index` below and run it again: the
-- timings of the three `do` blocks are the claim, the finish and the node-run inserts.
\set ON_ERROR_STOP on
begin;
-- drop index workflow_executions_list_idx;
-- drop index workflow_executions_workflow_list_idx;
-- drop index workflow_executions_unended_list_idx;
-- drop index workflow_executions_ended_list_idx;
-- drop index workflow_executions_finished_idx;
\ir row_costs_seed.sql
create temp table batches on commit drop as
select (row_number() over () - 1) / 250 as b, id
from workflow_executions
where status = 'pending';
\timing on
-- The claim: runnable rows in priority order, skip locked, under a new lease.
do $$ begin for i in 1..80 loop
  update workflow_executions e
  set status = 'running', lease_owner = 'w', lease_expires_at = now() + interval '30 s',
      lease_token = lease_token + 1, started_at = now(), updated_at = now()
  where id = any(array(
      select id from workflow_executions
      where status in ('pending', 'running', 'retrying', 'waiting') and finished_at is null
        and held_since is null
        and run_at <= now() and (lease_expires_at is null or lease_expires_at < now())
      order by priority desc, run_at
      limit 250
      for update skip locked));
end loop; end $$;
-- The finish, by primary key.
do $$ declare ids uuid[]; begin for i in 0..79 loop
  ids := array(select id from batches where b = i);
  update workflow_executions
  set status = 'completed', output = '{}', run_at = null, finished_at = now(),
      lease_owner = null, lease_expires_at = null, updated_at = now()
  where id = any(ids);
end loop; end $$;
-- One node run each.
do $$ begin for i in 0..79 loop
  insert into workflow_node_runs (execution_id, node_id, node_type, attempt, status, input,
                                  output, started_at, finished_at)
  select id, 'n1', 'trigger', 1, 'completed', '{}', '{}', now(), now()
  from batches
  where b = i;
end loop; end $$;
\timing off
rollback;
