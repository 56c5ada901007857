-- Where a benchmark's database time goes: samples pg_stat_activity every 4 ms (1,500 times,
-- about 6 s plus the sampling's own time) and counts, per statement, the samples in which it
-- was active on CPU or waiting, and on what. Run it from another terminal while a scenario
-- runs (the harness's databases are named wfw_test_*):
--
--   cargo run --release -p workflow-bench -- drain --store postgres --executions 80000 &
--   sleep 5; psql "$DATABASE_URL" -f crates/workflow-bench/wait_events.sql
create temp table samples (n int, what text);
do $$
begin
  for i in 1..1500 loop
    perform pg_stat_clear_snapshot();
    insert into samples
    select i, coalesce(wait_event_type, 'cpu') || ':' || coalesce(wait_event, '-') || ' '
              || left(regexp_replace(query, '\s+', ' ', 'g'), 25)
    from pg_stat_activity
    where state = 'active' and pid <> pg_backend_pid() and datname like 'wfw_test%';
    perform pg_sleep(0.004);
  end loop;
end $$;
select count(distinct n) as samples_with_a_statement_active from samples;
select what, count(*) as samples from samples group by 1 order by 2 desc limit 12;
