-- Rate limits (workflow-core's `flow` module): for each limit name and key, the times of the
-- node starts in its recent window, oldest first. `workflow_rate_take` takes a place under
-- the row's lock, reading the clock once it holds it, so two workers never both take the
-- last place of a window, and the recorded starts of one name and key are in order.

create table workflow_rate_limits (
    name text not null,
    key text not null,
    starts timestamptz[] not null default '{}',
    primary key (name, key)
);

-- Takes a start from `p_name` for `p_key`: null when taken (fewer than `p_limit` starts in
-- the last `p_period`), else the seconds until the oldest start that must leave the window
-- for one to be taken has left it.
create function workflow_rate_take(p_name text, p_key text, p_limit integer, p_period interval)
returns double precision
language plpgsql as $$
declare
    now_at timestamptz;
    recent timestamptz[];
    taken integer;
begin
    insert into workflow_rate_limits (name, key) values (p_name, p_key)
    on conflict (name, key) do nothing;
    perform 1 from workflow_rate_limits
     where name = p_name and key = p_key
       for update;
    now_at := clock_timestamp();
    select array(select s from unnest(r.starts) as s where s > now_at - p_period order by s)
      into recent
      from workflow_rate_limits as r
     where r.name = p_name and r.key = p_key;
    taken := cardinality(recent);
    if taken < p_limit then
        update workflow_rate_limits set starts = recent || now_at
         where name = p_name and key = p_key;
        return null;
    end if;
    update workflow_rate_limits set starts = recent
     where name = p_name and key = p_key;
    return greatest(
        extract(epoch from recent[taken - p_limit + 1] + p_period - now_at)::double precision,
        0.001
    );
end
$$;
