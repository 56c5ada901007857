-- Pausing; see the PostgreSQL migration of the same version. SQLite has no notifications: a
-- SqliteStore tells the workers built on it (or its clones) in-process when it asks a running
-- execution to pause, and workers of other processes on the file notice at their next
-- heartbeat.
alter table workflow_executions
    add column pause_requested_at integer;

-- SQLite cannot alter a constraint, and rebuilding workflow_executions would mean dropping
-- the table its history references. Allowing one more status only loosens the check, which
-- every stored row still passes, so the check's text is edited in place: the procedure
-- SQLite documents for such changes (lang_altertable.html, "Making Other Kinds Of Table
-- Schema Changes"). `reset` makes this connection read the schema again; the index changes
-- below bump the schema version, so every other connection reads it again too.
pragma writable_schema = on;

update sqlite_schema
set sql = replace(
    sql,
    'status in (''pending'', ''running'', ''retrying'', ''waiting'',',
    'status in (''pending'', ''running'', ''retrying'', ''waiting'', ''paused'','
)
where type = 'table'
  and name = 'workflow_executions';

update sqlite_schema
set sql = replace(
    sql,
    'from_status in (''failed'', ''cancelled'', ''timed_out'')',
    'from_status in (''failed'', ''cancelled'', ''timed_out'', ''paused'')'
)
where type = 'table'
  and name = 'workflow_execution_retries';

pragma writable_schema = reset;

-- The deadline sweep reads paused executions too.
drop index workflow_executions_deadline_idx;

create index workflow_executions_deadline_idx
    on workflow_executions (deadline)
    where deadline is not null
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused');
