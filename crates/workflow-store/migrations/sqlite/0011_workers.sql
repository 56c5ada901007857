-- Live workers and the node types they run (see the PostgreSQL migration of the same number).
create table workflow_workers (
    id text primary key not null,
    node_types text not null,
    expires_at integer not null
);
