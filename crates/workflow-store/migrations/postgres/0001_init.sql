-- workflow-worker schema, version 1.
--
-- workflow_executions is a public contract: other programs may start an execution with
--   insert into workflow_executions (workflow_id, input) values ($1, $2);
-- Every other column has a default; workflow_version is pinned to the workflow's latest
-- version by a trigger when not given. A row inserted with status = 'running' (and no
-- lease) is picked up like a pending one.

create table workflows (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    latest_version integer not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint workflows_name_key unique (name),
    constraint workflows_name_not_empty check (btrim(name) <> ''),
    constraint workflows_latest_version_positive check (latest_version >= 1)
);

-- Saved versions are immutable: executions run the version they were started with.
create table workflow_versions (
    workflow_id uuid not null references workflows (id) on delete cascade,
    version integer not null,
    definition jsonb not null,
    created_at timestamptz not null default now(),
    primary key (workflow_id, version)
);

create table workflow_executions (
    id uuid primary key default gen_random_uuid(),
    workflow_id uuid not null,
    workflow_version integer not null,
    status text not null default 'pending',
    input jsonb not null default '{}'::jsonb,
    output jsonb,
    error text,
    -- Higher runs first among runnable executions.
    priority integer not null default 0,
    -- When the execution may next be advanced; null while it waits with no timer.
    run_at timestamptz default now(),
    lease_owner text,
    lease_expires_at timestamptz,
    -- Increments on every claim; every write a worker makes is conditional on it.
    lease_token bigint not null default 0,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint workflow_executions_version_fkey
        foreign key (workflow_id, workflow_version)
        references workflow_versions (workflow_id, version),
    constraint workflow_executions_status_check check (
        status in ('pending', 'running', 'retrying', 'waiting',
                   'completed', 'failed', 'cancelled', 'timed_out')
    ),
    constraint workflow_executions_finished_at_iff_terminal check (
        (status in ('completed', 'failed', 'cancelled', 'timed_out')) = (finished_at is not null)
    ),
    constraint workflow_executions_terminal_unleased check (
        finished_at is null or lease_owner is null
    )
);

-- The claim query reads only non-terminal rows, so its cost does not grow with history.
create index workflow_executions_runnable_idx
    on workflow_executions (priority desc, run_at)
    where status in ('pending', 'running', 'retrying', 'waiting');

create index workflow_executions_workflow_idx
    on workflow_executions (workflow_id, created_at desc);

create index workflow_executions_created_idx
    on workflow_executions (created_at desc);

-- Pins plain-SQL inserts to the workflow's latest version.
create function workflow_executions_pin_version() returns trigger
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
    return new;
end;
$$;

create trigger workflow_executions_pin_version
    before insert on workflow_executions
    for each row execute function workflow_executions_pin_version();

-- One row per node attempt; the history of an execution lives here, not in the hot row.
create table workflow_node_runs (
    id bigint generated always as identity primary key,
    execution_id uuid not null references workflow_executions (id) on delete cascade,
    node_id text not null,
    node_type text not null,
    attempt integer not null,
    status text not null,
    input jsonb,
    output jsonb,
    branch text,
    error text,
    worker_id text,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    -- A node attempt is recorded at most once.
    constraint workflow_node_runs_attempt_key unique (execution_id, node_id, attempt),
    constraint workflow_node_runs_attempt_positive check (attempt >= 1),
    constraint workflow_node_runs_status_check check (
        status in ('completed', 'failed', 'timed_out', 'skipped')
    )
);
