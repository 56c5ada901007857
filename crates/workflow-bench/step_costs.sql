-- What the worker's step costs: replays its step statement's writes (lock the executions in
-- id order, finish them, write each one's node run) in batches of 250, each batch its own
-- transaction as in the worker, over 20,000 running executions beside 100,000 finished ones,
-- and prints the time of the 80 batches. It deletes every row: run it on a scratch database
-- migrated by the binary:
--
--   createdb stepcost && workflow-worker migrate --database-url postgres:///stepcost
--   psql postgres:///stepcost -f crates/workflow-bench/step_costs.sql
--
-- To see what a part costs, uncomment its line below on a freshly migrated database and run it
-- again (docs/BENCHMARKS.md, "Fifth round", interleaves five runs of each):
-- alter table workflow_node_runs add foreign key (execution_id) references workflow_executions (id) on delete cascade;
-- drop trigger workflow_executions_ended_notify on workflow_executions;
-- drop index workflow_executions_finished_idx;
\set ON_ERROR_STOP on
\ir row_costs_seed.sql
update workflow_executions
set status = 'running', lease_owner = 'w', lease_expires_at = now() + interval '1 hour',
    started_at = now()
where status = 'pending';
vacuum analyze workflow_executions;
drop table if exists step_cost_batches;
create table step_cost_batches as
select (row_number() over () - 1) / 250 as b, id
from workflow_executions
where status = 'running';
checkpoint;
\timing on
do $$ declare ids uuid[]; begin for i in 0..79 loop
  ids := array(select id from step_cost_batches where b = i);
  with locked as (
      select e.id
      from workflow_executions e
      where e.id = any(ids) and e.status = 'running'
      order by e.id
      for no key update
  ),
  fenced as (
      update workflow_executions e
      set status = 'completed', output = '{}', run_at = null, finished_at = now(),
          lease_owner = null, lease_expires_at = null, rescue_count = 0, updated_at = now()
      from locked
      where e.id = locked.id
      returning e.id
  )
  insert into workflow_node_runs (execution_id, node_id, node_type, attempt, status, input,
                                  output, started_at, finished_at)
  select id, 'n1', 'noop', 1, 'completed', '{}', '{}', clock_timestamp(), clock_timestamp()
  from fenced;
  commit;
end loop; end $$;
\timing off
select count(*) as finished_by_the_replay
from workflow_node_runs;
drop table step_cost_batches;
