-- Business keys; see the PostgreSQL migration of the same version. SQLite has no stored
-- functions: the store's start and signal-with-start read and insert in one immediate
-- transaction, and other programs on the file insert with a key into the table, where the
-- unique index refuses a key held by an execution that has not ended.
alter table workflow_executions
    add column key text
        constraint workflow_executions_key_length
        check (key is null or length(key) between 1 and 512);

create unique index workflow_executions_active_key
    on workflow_executions (workflow_id, key)
    where key is not null
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused');

-- The latest execution with a key, ended or not.
create index workflow_executions_key_idx
    on workflow_executions (workflow_id, key, created_at desc, id desc)
    where key is not null;
