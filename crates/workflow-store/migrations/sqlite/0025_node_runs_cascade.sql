-- PostgreSQL stops checking a node run's execution with a foreign key when the run is written,
-- and deletes an execution's node runs with a trigger instead (postgres/0025). SQLite keeps its
-- foreign key, whose check is a lookup in the same file: nothing changes here; this keeps the
-- two stores' migration versions in step.
select 1;
