-- workflow-worker schema, version 1, for SQLite. Same tables, columns and rules as the
-- PostgreSQL schema, in SQLite's types: ids are UUID text, JSON is text, and times are Unix
-- milliseconds (integer).
--
-- Another program on the same machine may start an execution with
--   insert into workflow_executions (workflow_id, input) values (?, ?);
-- workflow_version is pinned to the workflow's latest version by a trigger when not given.

create table workflows (
    id text primary key not null,
    name text not null,
    latest_version integer not null,
    created_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    updated_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    constraint workflows_name_key unique (name),
    constraint workflows_name_not_empty check (trim(name) <> ''),
    constraint workflows_latest_version_positive check (latest_version >= 1)
);

-- Saved versions are immutable: executions run the version they were started with.
create table workflow_versions (
    workflow_id text not null references workflows (id) on delete cascade,
    version integer not null,
    definition text not null,
    created_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    primary key (workflow_id, version)
);

create table workflow_executions (
    -- A random (version 4) UUID as text.
    id text primary key not null default (
        lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
        || substr(lower(hex(randomblob(2))), 2) || '-'
        || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2)
        || '-' || lower(hex(randomblob(6)))
    ),
    workflow_id text not null references workflows (id),
    -- Filled by the trigger below when an insert leaves it out.
    workflow_version integer,
    status text not null default 'pending',
    input text not null default '{}',
    output text,
    error text,
    -- Higher runs first among runnable executions.
    priority integer not null default 0,
    -- When the execution may next be advanced; null while it waits with no timer.
    run_at integer default (cast(unixepoch('subsec') * 1000 as integer)),
    lease_owner text,
    lease_expires_at integer,
    -- Increments on every claim; every write a worker makes is conditional on it.
    lease_token integer not null default 0,
    created_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
    started_at integer,
    finished_at integer,
    updated_at integer not null default (cast(unixepoch('subsec') * 1000 as integer)),
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
    ),
    constraint workflow_executions_input_is_json check (json_valid(input))
);

-- The claim query reads only non-terminal rows, so its cost does not grow with history.
create index workflow_executions_runnable_idx
    on workflow_executions (priority desc, run_at)
    where status in ('pending', 'running', 'retrying', 'waiting');

create index workflow_executions_workflow_idx
    on workflow_executions (workflow_id, created_at desc);

create index workflow_executions_created_idx
    on workflow_executions (created_at desc);

-- SQLite triggers cannot assign NEW: reject inserts naming an unknown workflow before the
-- row exists, then pin the version of inserts that left it out.
create trigger workflow_executions_check_workflow
    before insert on workflow_executions
    when new.workflow_version is null
     and not exists (select 1 from workflows where id = new.workflow_id)
begin
    select raise(abort, 'workflow does not exist');
end;

create trigger workflow_executions_pin_version
    after insert on workflow_executions
    when new.workflow_version is null
begin
    update workflow_executions
    set workflow_version = (select latest_version from workflows where id = new.workflow_id)
    where id = new.id;
end;

-- One row per node attempt; the history of an execution lives here, not in the hot row.
create table workflow_node_runs (
    id integer primary key autoincrement,
    execution_id text not null references workflow_executions (id) on delete cascade,
    node_id text not null,
    node_type text not null,
    attempt integer not null,
    status text not null,
    input text,
    output text,
    branch text,
    error text,
    worker_id text,
    started_at integer not null,
    finished_at integer not null,
    -- A node attempt is recorded at most once.
    constraint workflow_node_runs_attempt_key unique (execution_id, node_id, attempt),
    constraint workflow_node_runs_attempt_positive check (attempt >= 1),
    constraint workflow_node_runs_status_check check (
        status in ('completed', 'failed', 'timed_out', 'skipped')
    )
);
