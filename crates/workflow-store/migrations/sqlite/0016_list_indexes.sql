-- See the PostgreSQL migration of the same version.
-- Indexes for listing executions newest first, a page at a time (the Executions view and
-- `GET /api/v1/executions`), that stay fast with millions of rows.
--
-- Pages are ordered by (created_at desc, id desc) and continue after a cursor on both: executions
-- inserted by one statement share their created_at, and without the id in the index a page
-- among them sorted all of them. The old single-column indexes are replaced by the wider ones.
create index workflow_executions_list_idx
    on workflow_executions (created_at desc, id desc);

drop index workflow_executions_created_idx;

create index workflow_executions_workflow_list_idx
    on workflow_executions (workflow_id, created_at desc, id desc);

drop index workflow_executions_workflow_idx;

-- A status filter reads the executions of that status only. Completed ones, nearly all of a
-- long history, are left out (the list index finds them, since most rows match), so the
-- finish of an execution adds nothing to this index.
create index workflow_executions_status_list_idx
    on workflow_executions (status, created_at desc, id desc)
    where status <> 'completed';
