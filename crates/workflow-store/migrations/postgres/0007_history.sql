-- Pruning finished executions by age reads this index, which covers ended rows only.
create index workflow_executions_finished_idx
    on workflow_executions (finished_at)
    where finished_at is not null;

-- workflow_executions is small and hot: every step updates its row. Vacuum it as soon as a
-- small share of its rows is dead, so the runnable index stays compact between prunes.
alter table workflow_executions set (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    fillfactor = 80
);

-- A schedule added, resumed or moved wakes idle workers, which look at schedules at once
-- instead of at their next periodic look.
create trigger workflow_schedules_wakeup
    after insert or update of enabled, next_fire_at on workflow_schedules
    for each statement execute function workflow_wakeup();
