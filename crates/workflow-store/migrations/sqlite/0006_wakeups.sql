-- Wake-up hints are PostgreSQL's LISTEN/NOTIFY; SQLite workers poll. This version exists so
-- both stores keep the same migration versions.
select 1;
