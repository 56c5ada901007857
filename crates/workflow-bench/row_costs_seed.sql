-- The rows row_costs.sql and hot_claim.sql replay the worker's updates over: 100,000
-- finished executions and 20,000 pending ones of a one-node workflow, in emptied tables.
truncate workflow_node_runs, workflow_executions, workflow_versions, workflows cascade;
insert into workflows (id, name, latest_version)
values ('00000000-0000-0000-0000-000000000001', 'row_costs', 1);
insert into workflow_versions (workflow_id, version, definition)
values ('00000000-0000-0000-0000-000000000001', 1,
        '{"nodes": [{"id": "n1", "type": "trigger"}], "edges": []}');
insert into workflow_executions (workflow_id, workflow_version, status, finished_at, run_at)
select '00000000-0000-0000-0000-000000000001', 1, 'completed', now(), null
from generate_series(1, 100000);
insert into workflow_executions (workflow_id, workflow_version)
select '00000000-0000-0000-0000-000000000001', 1
from generate_series(1, 20000);
