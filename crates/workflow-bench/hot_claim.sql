-- What a claim and a finish cost, and how many claims are HOT updates: replays the worker's
-- two updates of workflow_executions, each batch of 250 its own transaction as in the worker,
-- over 20,000 pending executions beside 100,000 finished ones, and prints their times and how
-- many updates were HOT. A claim is HOT when it changes no column an index reads (key,
-- expression or predicate; migration 0024 made it so) and its row's page has room for the new
-- version (the table's fillfactor keeps half of each page for them).
--
-- It deletes every row: run it on a scratch database migrated by the binary:
--
--   createdb hotclaim && workflow-worker migrate --database-url postgres:///hotclaim
--   psql postgres:///hotclaim -f crates/workflow-bench/hot_claim.sql
\set ON_ERROR_STOP on
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
