-- PostgreSQL's claims become HOT updates (postgres/0024): its indexes stop reading `status`,
-- and two stored columns keep what they need of it: the status an execution ended with, and
-- whether it is pending or running. SQLite has no HOT updates and keeps its indexes; it gets
-- the same columns, computed when read, so that both stores show applications the same table.
alter table workflow_executions
    add column ended_status text
        generated always as (case when finished_at is not null then status end) virtual;
alter table workflow_executions
    add column pending_or_running integer
        generated always as (status in ('pending', 'running')) virtual;
