-- What a claim and a finish would cost if the claim were a HOT update: replays the worker's
-- two updates of workflow_executions, each batch of 250 its own transaction as in the worker,
-- over 20,000 pending executions beside 100,000 finished ones, and prints their times and how
-- many updates were HOT. A claim can be HOT only if it changes no column any index reads (key
-- or predicate) and the row's page has room for the new version; today every claim changes
-- `status`, which most of the table's indexes read.
--
-- It changes the schema and deletes every row: run it on a scratch database migrated by the
-- binary, as is (today's schema), then again with `-v hot=1`, which first moves every index
-- predicate from `status` to `finished_at is null`, drops the status list index (the one
-- index that has `status` as a key) and leaves 40 % of each page free:
--
--   createdb hotclaim && workflow-worker migrate --database-url postgres:///hotclaim
--   psql postgres:///hotclaim -f crates/workflow-bench/hot_claim.sql
--   psql postgres:///hotclaim -v hot=1 -f crates/workflow-bench/hot_claim.sql
\set ON_ERROR_STOP on
\if :{?hot}
drop index if exists workflow_executions_status_list_idx;
drop index workflow_executions_rescued_idx;
create index workflow_executions_rescued_idx on workflow_executions (priority desc, run_at)
    where rescue_count > 0 and finished_at is null;
drop index workflow_executions_deadline_idx;
create index workflow_executions_deadline_idx on workflow_executions (deadline)
    where deadline is not null and finished_at is null;
drop index workflow_executions_active_key;
create unique index workflow_executions_active_key on workflow_executions (workflow_id, key)
    where key is not null and finished_at is null;
drop index workflow_executions_unended_children_idx;
create index workflow_executions_unended_children_idx
    on workflow_executions (parent_execution_id)
    where parent_execution_id is not null and finished_at is null;
drop index workflow_executions_runnable_idx;
create index workflow_executions_runnable_idx on workflow_executions (priority desc, run_at)
    where finished_at is null and held_since is null;
drop index workflow_executions_group_idx;
create index workflow_executions_group_idx on workflow_executions (workflow_id, concurrency_key)
    where concurrency_key is not null and held_since is null and finished_at is null;
drop index workflow_executions_held_idx;
create index workflow_executions_held_idx
    on workflow_executions (workflow_id, concurrency_key, priority desc, created_at, id)
    where held_since is not null and finished_at is null;
alter table workflow_executions set (fillfactor = 60);
\endif
\ir row_costs_seed.sql
vacuum analyze workflow_executions;
select pg_stat_reset_single_table_counters('workflow_executions'::regclass);
drop table if exists hot_claim_batches;
create table hot_claim_batches as
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
      where status in ('pending', 'running', 'retrying', 'waiting') and held_since is null
        and finished_at is null
        and run_at <= now() and (lease_expires_at is null or lease_expires_at < now())
      order by priority desc, run_at
      limit 250
      for update skip locked));
  commit;
end loop; end $$;
-- The finish, by primary key.
do $$ begin for i in 0..79 loop
  update workflow_executions
  set status = 'completed', output = '{}', run_at = null, finished_at = now(),
      lease_owner = null, lease_expires_at = null, updated_at = now()
  where id = any(array(select id from hot_claim_batches where b = i));
  commit;
end loop; end $$;
\timing off
-- The statistics collector reports within a second or so.
select pg_sleep(1);
select n_tup_upd as updates, n_tup_hot_upd as hot_updates
from pg_stat_user_tables
where relname = 'workflow_executions';
drop table hot_claim_batches;
