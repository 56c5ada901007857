-- Rate limits; see the PostgreSQL migration of the same version. The store takes a place in
-- a write transaction (writes are serialised), keeping the recent starts of each name and
-- key as a JSON array of milliseconds since the epoch, oldest first.

create table workflow_rate_limits (
    name text not null,
    key text not null,
    starts text not null default '[]',
    primary key (name, key)
) without rowid;
