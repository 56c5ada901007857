-- Cron schedules; see the PostgreSQL migration of the same version.

create table workflow_schedules (
    id text primary key not null,
    workflow_id text not null references workflows (id) on delete cascade,
    cron text not null,
    timezone text not null default 'UTC',
    input text not null default '{}',
    enabled integer not null default 1,
    catch_up integer not null default 1,
    next_fire_at integer,
    last_fire_at integer,
    created_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    updated_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    constraint workflow_schedules_catch_up_positive check (catch_up >= 1)
);

create index workflow_schedules_due_idx
    on workflow_schedules (next_fire_at)
    where enabled;

alter table workflow_executions
    add column schedule_id text references workflow_schedules (id) on delete set null;

alter table workflow_executions
    add column scheduled_for integer;

create unique index workflow_executions_schedule_tick_key
    on workflow_executions (schedule_id, scheduled_for)
    where schedule_id is not null;
