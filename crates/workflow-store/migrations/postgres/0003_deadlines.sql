-- Execution deadlines.
--
-- An execution past its deadline ends 'timed_out', whichever worker holds it and even if its
-- worker died. The deadline comes from the start call, else from the workflow's "timeout"
-- (seconds from creation), else there is none. Plain-SQL inserts get the workflow's timeout
-- the same way.

alter table workflow_executions
    add column deadline timestamptz;

create index workflow_executions_deadline_idx
    on workflow_executions (deadline)
    where deadline is not null
      and status in ('pending', 'running', 'retrying', 'waiting');

create or replace function workflow_executions_pin_version() returns trigger
language plpgsql as $$
begin
    if new.workflow_version is null then
        select latest_version into new.workflow_version
        from workflows
        where id = new.workflow_id;
        if new.workflow_version is null then
            raise exception 'workflow % does not exist', new.workflow_id
                using errcode = 'foreign_key_violation';
        end if;
    end if;
    if new.deadline is null then
        select new.created_at + make_interval(secs => (definition ->> 'timeout')::float8)
        into new.deadline
        from workflow_versions
        where workflow_id = new.workflow_id
          and version = new.workflow_version;
    end if;
    return new;
end;
$$;
