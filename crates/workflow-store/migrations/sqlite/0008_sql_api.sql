-- The SQL API (start, signal and cancel functions, and the workflow_execution_ended channel)
-- is PostgreSQL's only: SQLite has no stored functions and no LISTEN/NOTIFY. Programs sharing
-- an SQLite file use the table contract instead (insert into workflow_executions and
-- workflow_signals; read the status), as the README describes. This migration exists so both
-- stores list the same versions, and changes nothing.
select 1;
