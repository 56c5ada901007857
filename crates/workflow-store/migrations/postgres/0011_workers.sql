-- Live workers and the node types they run, so that an execution no live worker can run is
-- told apart from one waiting its turn (`executions show`, the unrunnable-executions gauge).
-- Each worker replaces its row when it starts and on every heartbeat; a row past its expiry
-- is a worker that stopped without saying so, and a clean stop deletes it.
create table workflow_workers (
    id text primary key,
    node_types jsonb not null,
    expires_at timestamptz not null
);
