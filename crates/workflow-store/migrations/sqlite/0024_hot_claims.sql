-- PostgreSQL's claims become HOT updates (postgres/0024): its indexes stop reading `status`,
-- and a stored column keeps the status an execution ended with for the status filters. SQLite
-- has no HOT updates and keeps its indexes; it gets the same column, computed when read, so
-- that both stores show applications the same table.
alter table workflow_executions
    add column ended_status text
        generated always as (case when finished_at is not null then status end) virtual;
