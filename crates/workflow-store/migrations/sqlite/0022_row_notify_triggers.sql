-- PostgreSQL's notifications of ended and cancelled executions move from statement triggers to
-- row triggers (postgres/0022). SQLite has no NOTIFY: nothing changes here; this keeps the two
-- stores' migration versions in step.
select 1;
