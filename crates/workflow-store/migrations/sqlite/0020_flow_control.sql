-- Flow control; see the PostgreSQL migration of the same version. Writes are serialised,
-- so the claim (in the store) counts a group's running executions in its own transaction
-- with no lock of its own. SQLite triggers cannot assign NEW, so an execution is put in its
-- group by an update after its insert; and a plain insert that leaves the priority out gets
-- the column's 0, not the workflow's default (the store's starts give it).

alter table workflow_versions
    add column default_priority integer
        generated always as (
            case when json_type(definition, '$.priority') = 'integer'
                 then json_extract(definition, '$.priority')
            end
        ) virtual;

alter table workflow_versions
    add column concurrency_limit integer
        generated always as (
            case when json_type(definition, '$.concurrency.limit') = 'integer'
                 then json_extract(definition, '$.concurrency.limit')
            end
        ) virtual;

-- The key's path into the input: '' for a limit per workflow, null with no concurrency.
alter table workflow_versions
    add column concurrency_key_path text
        generated always as (
            case when json_type(definition, '$.concurrency') = 'object'
                 then coalesce(json_extract(definition, '$.concurrency.key'), '')
            end
        ) virtual;

-- At most 512 characters: the insert trigger below refuses longer ones.
alter table workflow_executions
    add column concurrency_key text;

alter table workflow_executions
    add column held_since integer;

drop index workflow_executions_runnable_idx;
create index workflow_executions_runnable_idx
    on workflow_executions (priority desc, run_at)
    where status in ('pending', 'running', 'retrying', 'waiting')
      and held_since is null;

create index workflow_executions_group_idx
    on workflow_executions (workflow_id, concurrency_key, status)
    where concurrency_key is not null
      and held_since is null
      and status in ('pending', 'running');

create index workflow_executions_held_idx
    on workflow_executions (workflow_id, concurrency_key, priority desc, created_at, id)
    where held_since is not null
      and status in ('pending', 'retrying', 'waiting');

-- Each workflow's concurrency, from its latest version.
create view workflow_concurrency as
select w.id as workflow_id,
       w.name as workflow_name,
       v.concurrency_key_path as key_path,
       v.concurrency_limit as "limit",
       -- How many of a group may be admitted at once: the limit, or the fair window (10,
       -- FAIR_WINDOW in the core crate) with a key and no limit.
       coalesce(v.concurrency_limit, 10) as window
from workflows w
join workflow_versions v
  on v.workflow_id = w.id
 and v.version = w.latest_version;

-- Puts an inserted execution in its group: the key given, else the value at the workflow's
-- key path in its input (json_tree names array items [n] and quotes some object keys, so its
-- paths are compared with those marks taken out), else '' for a limit per workflow; and holds
-- it when its group's window is full. Refuses a key for a workflow without concurrency and an
-- input without the key's value.
create trigger workflow_executions_concurrency_group
    after insert on workflow_executions
    for each row
begin
    select raise(abort, 'concurrency key: the workflow has no concurrency setting, so its executions take no concurrency key')
    where new.concurrency_key is not null
      and (select key_path from workflow_concurrency where workflow_id = new.workflow_id) is null;

    update workflow_executions
    set concurrency_key = (
        select case
            when c.key_path = '' then ''
            else (
                select case j.type
                           when 'true' then 'true'
                           when 'false' then 'false'
                           when 'null' then null
                           else j.value
                       end
                from json_tree(new.input) j
                where replace(replace(replace(j.fullkey, '"', ''), '[', '.'), ']', '')
                      = '$.' || c.key_path
            )
        end
        from workflow_concurrency c
        where c.workflow_id = new.workflow_id
    )
    where id = new.id
      and new.concurrency_key is null
      and (select key_path from workflow_concurrency where workflow_id = new.workflow_id)
          is not null;

    select raise(abort, 'concurrency key: the input has no value at the concurrency key path of its workflow')
    where (select key_path from workflow_concurrency where workflow_id = new.workflow_id)
          is not null
      and (select concurrency_key from workflow_executions where id = new.id) is null;

    select raise(abort, 'concurrency key: a concurrency key is at most 512 characters')
    where length((select concurrency_key from workflow_executions where id = new.id)) > 512;

    update workflow_executions
    set held_since = cast(unixepoch('subsec') * 1000 as integer)
    where id = new.id
      and concurrency_key is not null
      and status in ('pending', 'retrying', 'waiting')
      and held_since is null
      and (
          select count(*)
          from (
              select 1
              from workflow_executions e, workflow_concurrency c
              where c.workflow_id = new.workflow_id
                and e.workflow_id = new.workflow_id
                and e.concurrency_key = (
                    select concurrency_key from workflow_executions where id = new.id
                )
                and e.id <> new.id
                and e.held_since is null
                and e.status in ('pending', 'running')
                and (c."limit" is not null or e.status = 'pending')
              limit (select window from workflow_concurrency where workflow_id = new.workflow_id)
          )
      ) >= (select window from workflow_concurrency where workflow_id = new.workflow_id);
end;

-- Lets held executions of a group go while its window has room, best priority and oldest
-- first, each to the back of the queue; all of them once the workflow has no concurrency.
create trigger workflow_executions_concurrency_release
    after update of status on workflow_executions
    for each row
    when new.concurrency_key is not null and old.status is not new.status
begin
    update workflow_executions
    set held_since = null,
        run_at = case
            when run_at is not null
            then max(run_at, cast(unixepoch('subsec') * 1000 as integer))
        end,
        updated_at = cast(unixepoch('subsec') * 1000 as integer)
    where id in (
        select h.id
        from workflow_executions h
        where h.workflow_id = new.workflow_id
          and h.concurrency_key = new.concurrency_key
          and h.held_since is not null
          and h.status in ('pending', 'retrying', 'waiting')
        order by h.priority desc, h.created_at, h.id
        limit (
            select case
                when c.key_path is null then -1
                else max(0, c.window - (
                    select count(*)
                    from (
                        select 1
                        from workflow_executions e
                        where e.workflow_id = new.workflow_id
                          and e.concurrency_key = new.concurrency_key
                          and e.held_since is null
                          and e.status in ('pending', 'running')
                          and (c."limit" is not null or e.status = 'pending')
                        limit (
                            select window
                            from workflow_concurrency
                            where workflow_id = new.workflow_id
                        )
                    )
                ))
            end
            from workflow_concurrency c
            where c.workflow_id = new.workflow_id
        )
    );
end;
