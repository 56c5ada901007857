-- The executions that were rescued (claimed again after their lease expired) and have not
-- recorded a step since: the only ones an idle worker's claim asks for first, as suspects.
-- They are few, so the suspect half of that claim reads this small index instead of every
-- runnable row (with a backlog of 20,000 it took 50-70 ms, and an idle worker sends it on
-- every poll). Rows with no rescue are not in it, so the hot path's updates do not touch it.
create index workflow_executions_rescued_idx
    on workflow_executions (priority desc, run_at)
    where rescue_count > 0
      and status in ('pending', 'running', 'retrying', 'waiting');
