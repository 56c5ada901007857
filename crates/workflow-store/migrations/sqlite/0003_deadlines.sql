-- Execution deadlines; see the PostgreSQL migration of the same version.

alter table workflow_executions
    add column deadline integer;

create index workflow_executions_deadline_idx
    on workflow_executions (deadline)
    where deadline is not null
      and status in ('pending', 'running', 'retrying', 'waiting');

-- Independent of the version-pinning trigger, whose order against this one is not defined.
create trigger workflow_executions_default_deadline
    after insert on workflow_executions
    when new.deadline is null
begin
    update workflow_executions
    set deadline = new.created_at + cast(1000 * (
        select json_extract(v.definition, '$.timeout')
        from workflow_versions v
        where v.workflow_id = new.workflow_id
          and v.version = coalesce(
              new.workflow_version,
              (select latest_version from workflows where id = new.workflow_id)
          )
    ) as integer)
    where id = new.id;
end;
