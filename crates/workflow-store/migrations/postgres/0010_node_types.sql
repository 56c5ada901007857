-- The node types each workflow version uses, so that a worker claims only executions it can
-- run: an application's worker with its own node types and the standalone binary can share a
-- database, each taking the executions whose every node type it has. Generated from the
-- definition, so versions inserted by any program carry it too.
alter table workflow_versions
    add column node_types jsonb
        generated always as (jsonb_path_query_array(definition, '$.nodes[*].type')) stored;
