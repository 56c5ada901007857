-- Pruning finished executions by age reads this index, which covers ended rows only.
create index workflow_executions_finished_idx
    on workflow_executions (finished_at)
    where finished_at is not null;
