-- Cron schedules. Each due tick starts one execution: the unique key on
-- (schedule_id, scheduled_for) holds however many workers fire the schedule at once.

create table workflow_schedules (
    id uuid primary key default gen_random_uuid(),
    workflow_id uuid not null references workflows (id) on delete cascade,
    cron text not null,
    timezone text not null default 'UTC',
    input jsonb not null default '{}'::jsonb,
    enabled boolean not null default true,
    -- How many missed ticks to fire when several are due at once.
    catch_up integer not null default 1,
    -- The next tick; null until a worker computes it (after a resume).
    next_fire_at timestamptz,
    last_fire_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint workflow_schedules_catch_up_positive check (catch_up >= 1)
);

create index workflow_schedules_due_idx
    on workflow_schedules (next_fire_at)
    where enabled;

alter table workflow_executions
    add column schedule_id uuid references workflow_schedules (id) on delete set null,
    add column scheduled_for timestamptz;

create unique index workflow_executions_schedule_tick_key
    on workflow_executions (schedule_id, scheduled_for)
    where schedule_id is not null;
