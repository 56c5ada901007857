-- PostgreSQL's migration 0013 notifies the worker holding a running execution that was
-- cancelled. SQLite has no notifications: a SqliteStore tells the workers built on it (or its
-- clones) in-process when it cancels one, and workers of other processes on the file notice
-- at their next heartbeat. This migration exists so both stores list the same versions, and
-- changes nothing.
select 1;
