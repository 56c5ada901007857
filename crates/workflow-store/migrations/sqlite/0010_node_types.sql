-- The node types each workflow version uses (a JSON array), so that a worker claims only
-- executions it can run. Filled by a trigger from the definition, for versions inserted by
-- any program; existing versions are filled here.
alter table workflow_versions
    add column node_types text not null default '[]';

update workflow_versions
set node_types = (
    select json_group_array(json_extract(n.value, '$.type'))
    from json_each(workflow_versions.definition, '$.nodes') n
);

create trigger workflow_versions_node_types
    after insert on workflow_versions
    for each row
begin
    update workflow_versions
    set node_types = (
        select json_group_array(json_extract(n.value, '$.type'))
        from json_each(new.definition, '$.nodes') n
    )
    where workflow_id = new.workflow_id
      and version = new.version;
end;
