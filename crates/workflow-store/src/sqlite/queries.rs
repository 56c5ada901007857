//! Every SQL statement `SqliteStore` sends, one named query per `Store` step.
//!
//! Times are Unix milliseconds; `now` is the database clock, read once per statement.

/// The database's clock in Unix milliseconds.
macro_rules! now_ms {
    () => {
        "cast(unixepoch('subsec') * 1000 as integer)"
    };
}

/// The runnable predicate (docs/ARCHITECTURE.md): not ended, not held back by its
/// concurrency group, due, and with a free or expired lease. Every claim reads executions
/// through it.
macro_rules! runnable {
    () => {
        concat!(
            "status in ('pending', 'running', 'retrying', 'waiting')
  and held_since is null
  and run_at <= ",
            now_ms!(),
            "
  and (lease_expires_at is null or lease_expires_at < ",
            now_ms!(),
            ")"
        )
    };
}

/// The default priority of workflow `$id`'s latest version (0 without one): SQLite's column
/// default cannot read it, so the store's inserts that leave the priority out say it.
macro_rules! default_priority {
    ($id:literal) => {
        concat!(
            "coalesce((
    select v.default_priority
    from workflows w
    join workflow_versions v
      on v.workflow_id = w.id
     and v.version = w.latest_version
    where w.id = ",
            $id,
            "
), 0)"
        )
    };
}

/// Columns of an execution row joined with its workflow (`e` and `w`), in `ExecutionRow` order.
macro_rules! execution_columns {
    () => {
        "e.id, e.workflow_id, w.name as workflow_name, e.workflow_version, e.status, e.input, \
         e.output, e.error, e.priority, e.run_at, e.deadline, e.schedule_id, e.scheduled_for, e.lease_owner, e.lease_expires_at, \
         e.lease_token, e.rescue_count, e.created_at, e.started_at, e.finished_at, e.pause_requested_at, e.key, \
         e.parent_execution_id, e.parent_node_id, e.parent_item, e.parent_attempt, e.depth, e.concurrency_key, e.held_since"
    };
}

macro_rules! node_run_columns {
    () => {
        "execution_id, node_id, node_type, attempt, status, input, output, branch, error, \
         worker_id, started_at, finished_at, superseded_by"
    };
}

/// Creates the workflow on its first save ($1 new id, $2 name), else bumps its version.
pub(super) const UPSERT_WORKFLOW: &str = concat!(
    r#"
insert into workflows (id, name, latest_version)
values ($1, $2, 1)
on conflict (name) do update
set latest_version = latest_version + 1,
    updated_at = "#,
    now_ms!(),
    r#"
returning id, latest_version
"#
);

pub(super) const INSERT_WORKFLOW_VERSION: &str = r#"
insert into workflow_versions (workflow_id, version, definition)
values ($1, $2, $3)
"#;

/// The latest version of a workflow named by id ($1) or name ($2).
pub(super) const GET_WORKFLOW: &str = r#"
select w.id as workflow_id, w.name, v.version, v.definition, v.created_at
from workflows w
join workflow_versions v
  on v.workflow_id = w.id
 and v.version = w.latest_version
where w.id = $1
   or w.name = $2
"#;

/// Every workflow, by name.
pub(super) const LIST_WORKFLOWS: &str = r#"
select id, name, latest_version, created_at, updated_at
from workflows
order by name
"#;

pub(super) const GET_WORKFLOW_VERSION: &str = r#"
select w.id as workflow_id, w.name, v.version, v.definition, v.created_at
from workflows w
join workflow_versions v
  on v.workflow_id = w.id
where w.id = $1
  and v.version = $2
"#;

/// Inserts a pending execution ($1 id) of the latest version of a workflow named by id ($2)
/// or name ($3), with business key $7 (or none) and concurrency key $8; a null deadline ($6,
/// milliseconds from now), priority ($5) or concurrency key takes the workflow's.
pub(super) const START_EXECUTION: &str = concat!(
    r#"
insert into workflow_executions (
    id, workflow_id, workflow_version, input, priority, deadline, key, concurrency_key
)
select $1, w.id, w.latest_version, $4, coalesce($5, v.default_priority, 0), "#,
    now_ms!(),
    r#" + $6, $7, $8
from workflows w
join workflow_versions v
  on v.workflow_id = w.id
 and v.version = w.latest_version
where w.id = $2
   or w.name = $3
"#
);

/// Inserts the child ($1 id) of node attempt ($6 execution, $7 node, $10 item or null, $8
/// attempt): pending, of the latest version of a workflow named by id ($2) or name ($3), with
/// input $4, priority $5 and depth $9.
pub(super) const START_CHILD_EXECUTION: &str = r#"
insert into workflow_executions (
    id, workflow_id, workflow_version, input, priority,
    parent_execution_id, parent_node_id, parent_attempt, depth, parent_item
)
select $1, w.id, w.latest_version, $4, $5, $6, $7, $8, $9, $10
from workflows w
where w.id = $2
   or w.name = $3
"#;

/// Marks execution $1 as having children, so its end cancels those that have not ended.
pub(super) const MARK_PARENT: &str = r#"
update workflow_executions
set has_children = 1
where id = $1
  and not has_children
"#;

/// The id of the child of node attempt ($1 execution, $2 node, $4 item or null, $3 attempt).
pub(super) const CHILD_OF: &str = r#"
select id
from workflow_executions
where parent_execution_id = $1
  and parent_node_id = $2
  and coalesce(parent_item, -1) = coalesce($4, -1)
  and parent_attempt = $3
  and detached_by_retry is null
"#;

/// The oldest signal named $2 in execution $1's inbox that is not consumed yet: the one a
/// child's end stored, found in the transaction that read the child as ended.
pub(super) const PENDING_SIGNAL_NAMED: &str = r#"
select id
from workflow_signals
where execution_id = $1
  and name = $2
  and consumed_at is null
order by id
limit 1
"#;

/// The children of execution $1, oldest first: `created_at` counts milliseconds, so children
/// started within one come in the order they were inserted (`rowid`), not by their random ids.
pub(super) const CHILDREN_OF: &str = r#"
select e.id, w.name as workflow_name, e.status, e.parent_node_id, e.parent_item,
       e.parent_attempt, e.detached_by_retry, e.created_at
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.parent_execution_id = $1
order by e.created_at, e.rowid
"#;

/// The id of the latest execution with key $3 of a workflow named by id ($1) or name ($2):
/// any, ended or not, when $4 is true; else only one that has not ended.
pub(super) const EXECUTION_WITH_KEY: &str = r#"
select e.id
from workflow_executions e
join workflows w on w.id = e.workflow_id
where (w.id = $1 or w.name = $2)
  and e.key = $3
  and ($4 or e.status in ('pending', 'running', 'retrying', 'waiting', 'paused'))
order by e.created_at desc, e.id desc
limit 1
"#;

/// Only executions whose workflow version uses no node type outside the JSON array `$n` (the
/// claiming worker's), unless `$n` is null.
macro_rules! can_run {
    ($n:literal) => {
        concat!(
            "
  and (",
            $n,
            " is null or not exists (
      select 1
      from workflow_versions v, json_each(v.node_types) t
      where v.workflow_id = workflow_executions.workflow_id
        and v.version = workflow_executions.workflow_version
        and t.value not in (select value from json_each(",
            $n,
            "))
  ))"
        )
    };
}

/// An execution's concurrency group and its workflow's limit (null without one), for the
/// claim to admit or hold it (`workflow_concurrency`: migration 0020).
macro_rules! group_columns {
    () => {
        "workflow_id, concurrency_key, case when concurrency_key is not null then (
    select c.\"limit\"
    from workflow_concurrency c
    where c.workflow_id = workflow_executions.workflow_id
) end as concurrency_limit"
    };
}

/// The runnable executions a claim takes, with their status before it: non-terminal, due,
/// and with a free or expired lease. Runs in an immediate transaction with the update below,
/// so claims on one file never interleave.
pub(super) const RUNNABLE: &str = concat!(
    "select id, status, ",
    group_columns!(),
    r#"
from workflow_executions
where "#,
    runnable!(),
    r#"
  -- $2: leave out suspects (expired, rescued at least $2 times); $3: only suspects.
  and ($2 is null or lease_expires_at is null or rescue_count < $2)
  and ($3 is null or (lease_expires_at is not null and rescue_count >= $3))"#,
    can_run!("$4"),
    r#"
order by priority desc, run_at
limit $1
"#
);

/// An idle worker's claim looks for a suspect first (expired, rescued at least $1 times, $1 >=
/// 1): one, to run alone. `rescue_count > 0` lets it read the small index of rescued
/// executions (migration 0012) rather than every runnable row.
pub(super) const RUNNABLE_SUSPECT: &str = concat!(
    "select id, status, ",
    group_columns!(),
    r#"
from workflow_executions
where "#,
    runnable!(),
    r#"
  and lease_expires_at is not null
  and rescue_count > 0
  and rescue_count >= $1"#,
    can_run!("$2"),
    r#"
order by priority desc, run_at
limit 1
"#
);

/// Claims the executions given as a JSON array of ids ($1) for worker $2 with a lease of $3
/// milliseconds.
pub(super) const CLAIM_EXECUTIONS: &str = concat!(
    r#"
update workflow_executions
set status = 'running',
    lease_owner = $2,
    lease_expires_at = "#,
    now_ms!(),
    r#" + $3,
    lease_token = lease_token + 1,
    -- A running execution with a lease still set was abandoned by a worker that died.
    rescue_count = case
        when status = 'running' and lease_expires_at is not null then rescue_count + 1
        else rescue_count
    end,
    started_at = coalesce(started_at, "#,
    now_ms!(),
    r#"),
    updated_at = "#,
    now_ms!(),
    r#"
where id in (select value from json_each($1))
returning id
"#
);

/// Executions by id, given as a JSON array ($1).
pub(super) const EXECUTIONS_BY_IDS: &str = concat!(
    "select ",
    execution_columns!(),
    r#"
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.id in (select value from json_each($1))
order by e.priority desc, e.run_at
"#
);

/// Node runs of executions given as a JSON array of ids ($1).
pub(super) const NODE_RUNS_OF_MANY: &str = concat!(
    "select ",
    node_run_columns!(),
    r#"
from workflow_node_runs
where execution_id in (select value from json_each($1))
  and superseded_by is null
order by id
"#
);

pub(super) const NODE_RUNS_OF: &str = concat!(
    "select ",
    node_run_columns!(),
    r#"
from workflow_node_runs
where execution_id = $1
order by id
"#
);

/// Fenced: keeps the execution running and extends its lease by $3 milliseconds. Every
/// fenced advance returns whether a pause is still asked of the execution afterwards, which
/// only this one keeps.
pub(super) const ADVANCE_CONTINUE: &str = concat!(
    r#"
update workflow_executions
set lease_expires_at = "#,
    now_ms!(),
    r#" + $3,
    rescue_count = 0,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and lease_token = $2
  and status = 'running'
returning pause_requested_at is not null
"#
);

macro_rules! signal_columns {
    () => {
        "id, execution_id, name, payload, idempotency_key, created_at, consumed_at, \
         consumed_by_node"
    };
}

/// Signals not yet consumed of executions given as a JSON array of ids ($1), oldest first.
pub(super) const PENDING_SIGNALS_OF_MANY: &str = concat!(
    "select ",
    signal_columns!(),
    r#"
from workflow_signals
where execution_id in (select value from json_each($1))
  and consumed_at is null
order by id
"#
);

/// Every signal of an execution ($1), oldest first.
pub(super) const SIGNALS_OF: &str = concat!(
    "select ",
    signal_columns!(),
    r#"
from workflow_signals
where execution_id = $1
order by id
"#
);

/// Stores a signal; a repeated idempotency key stores nothing (and returns no row). The
/// trigger on the table wakes the execution if it waits.
pub(super) const INSERT_SIGNAL: &str = concat!(
    r#"
insert into workflow_signals (execution_id, name, payload, idempotency_key)
values ($1, $2, $3, $4)
on conflict (execution_id, idempotency_key) do nothing
returning "#,
    signal_columns!()
);

/// The signal stored earlier with an idempotency key.
pub(super) const SIGNAL_BY_KEY: &str = concat!(
    "select ",
    signal_columns!(),
    r#"
from workflow_signals
where execution_id = $1
  and idempotency_key = $2
"#
);

pub(super) const EXECUTION_STATUS: &str = r#"
select status
from workflow_executions
where id = $1
"#;

/// Marks a signal ($1) of an execution ($2) consumed by a node ($3), unless it already was.
pub(super) const CONSUME_SIGNAL: &str = concat!(
    r#"
update workflow_signals
set consumed_at = "#,
    now_ms!(),
    r#",
    consumed_by_node = $3
where id = $1
  and execution_id = $2
  and consumed_at is null
returning id
"#
);

/// Fenced: parks the execution to wait and releases the lease. It is due after $3
/// milliseconds (never, for null), or at once if a signal it waits for (a JSON array of
/// names, $4) is already pending. If a pause was asked of it, it is paused instead.
pub(super) const ADVANCE_WAIT: &str = concat!(
    r#"
update workflow_executions
set status = case when pause_requested_at is null then 'waiting' else 'paused' end,
    run_at = case
        when pause_requested_at is not null then null
        when exists (
            select 1
            from workflow_signals s
            where s.execution_id = $1
              and s.consumed_at is null
              and s.name in (select value from json_each($4))
        ) then "#,
    now_ms!(),
    r#"
        else "#,
    now_ms!(),
    r#" + $3
    end,
    pause_requested_at = null,
    lease_owner = null,
    lease_expires_at = null,
    rescue_count = 0,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and lease_token = $2
  and status = 'running'
returning pause_requested_at is not null, concurrency_key is not null
"#
);

/// Fenced: parks the execution for a retry in $3 milliseconds and releases the lease (or
/// pauses it, if a pause was asked of it).
pub(super) const ADVANCE_RETRY: &str = concat!(
    r#"
update workflow_executions
set status = case when pause_requested_at is null then 'retrying' else 'paused' end,
    run_at = case when pause_requested_at is null then "#,
    now_ms!(),
    r#" + $3 end,
    pause_requested_at = null,
    lease_owner = null,
    lease_expires_at = null,
    rescue_count = 0,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and lease_token = $2
  and status = 'running'
returning pause_requested_at is not null, concurrency_key is not null
"#
);

/// Fenced: releases the lease of a running execution so any worker may claim it now (or
/// pauses it, if a pause was asked of it).
pub(super) const ADVANCE_RELEASE: &str = concat!(
    r#"
update workflow_executions
set status = case when pause_requested_at is null then status else 'paused' end,
    lease_owner = null,
    lease_expires_at = null,
    run_at = case when pause_requested_at is null then "#,
    now_ms!(),
    r#" end,
    pause_requested_at = null,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and lease_token = $2
  and status = 'running'
returning pause_requested_at is not null
"#
);

/// Fenced: ends the execution in terminal status $3 and releases the lease.
pub(super) const ADVANCE_FINISH: &str = concat!(
    r#"
update workflow_executions
set status = $3,
    output = $4,
    error = $5,
    run_at = null,
    pause_requested_at = null,
    finished_at = "#,
    now_ms!(),
    r#",
    lease_owner = null,
    lease_expires_at = null,
    rescue_count = 0,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and lease_token = $2
  and status = 'running'
returning pause_requested_at is not null, parent_execution_id is not null,
          concurrency_key is not null
"#
);

/// Fenced: pauses the execution with error $3 and releases the lease. With no error (a pause
/// an operator asked for) it pauses only while the pause is still asked for: if a resume
/// withdrew the request meanwhile, it releases the execution for any worker instead.
pub(super) const ADVANCE_PAUSE: &str = concat!(
    r#"
update workflow_executions
set status = case
        when $3 is not null or pause_requested_at is not null then 'paused'
        else status
    end,
    error = case when $3 is not null or pause_requested_at is not null then $3 else error end,
    run_at = case when $3 is null and pause_requested_at is null then "#,
    now_ms!(),
    r#" end,
    pause_requested_at = null,
    lease_owner = null,
    lease_expires_at = null,
    rescue_count = 0,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and lease_token = $2
  and status = 'running'
returning pause_requested_at is not null, concurrency_key is not null
"#
);

/// Inserts one node run; it ended $12 milliseconds ago, after running for $11.
pub(super) const INSERT_NODE_RUN: &str = concat!(
    r#"
insert into workflow_node_runs (
    execution_id, node_id, node_type, attempt, status, input, output, branch, error,
    worker_id, started_at, finished_at
)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "#,
    now_ms!(),
    " - $11 - $12, ",
    now_ms!(),
    r#" - $12)
"#
);

/// Extends the lease of one execution ($1) still held with token $2 by $3 milliseconds.
pub(super) const RENEW_LEASE: &str = concat!(
    r#"
update workflow_executions
set lease_expires_at = "#,
    now_ms!(),
    r#" + $3,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and lease_token = $2
  and status = 'running'
"#
);

/// Cancels an execution ($1) that has not ended, with reason $2.
pub(super) const CANCEL_EXECUTION: &str = concat!(
    r#"
update workflow_executions
set status = 'cancelled',
    error = $2,
    run_at = null,
    finished_at = "#,
    now_ms!(),
    r#",
    lease_owner = null,
    lease_expires_at = null,
    pause_requested_at = null,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
"#
);

/// The descendants of execution $1 that have not ended: the children its cancel cancels (by
/// trigger), their children, and so on.
pub(super) const UNENDED_DESCENDANTS: &str = r#"
with recursive tree(id) as (
    select id
    from workflow_executions
    where parent_execution_id = $1
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
    union all
    select e.id
    from workflow_executions e
    join tree on e.parent_execution_id = tree.id
    where e.status in ('pending', 'running', 'retrying', 'waiting', 'paused')
)
select id
from tree
"#;

/// Pauses execution $1 if it has not ended: a pending, retrying or waiting one at once, a
/// running one by asking its holder (`pause_requested_at`). Returns its status before; no row
/// if it is paused already or ended.
pub(super) const PAUSE_EXECUTION: &str = concat!(
    r#"
update workflow_executions
set status = case when status = 'running' then status else 'paused' end,
    run_at = case when status = 'running' then run_at end,
    pause_requested_at = case
        when status = 'running' then coalesce(pause_requested_at, "#,
    now_ms!(),
    r#")
    end,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and status in ('pending', 'running', 'retrying', 'waiting')
returning status
"#
);

/// Resumes execution $1: a paused one becomes pending, runnable now; a running one asked to
/// pause is asked no more. Returns its status after; no row if it was neither.
pub(super) const RESUME_EXECUTION: &str = concat!(
    r#"
update workflow_executions
set status = case when status = 'paused' then 'pending' else status end,
    run_at = case when status = 'paused' then "#,
    now_ms!(),
    r#" else run_at end,
    pause_requested_at = null,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and (status = 'paused' or pause_requested_at is not null)
returning status
"#
);

/// Records a retry of execution $1 if it failed, timed out, was cancelled or is paused (asked by $2, mode
/// $3, node $4, on version $5), returning its id; no row if it has another status. The rest of
/// the retry follows in the same transaction.
pub(super) const INSERT_RETRY: &str = r#"
insert into workflow_execution_retries (
    execution_id, requested_by, from_status, mode, from_node, workflow_version
)
select id, $2, status, $3, $4, $5
from workflow_executions
where id = $1
  and status in ('failed', 'cancelled', 'timed_out', 'paused')
returning id
"#;

/// Supersedes, by retry $2, the runs of execution $1 of the nodes in the JSON array $3.
pub(super) const SUPERSEDE_RUNS: &str = r#"
update workflow_node_runs
set superseded_by = $2
where execution_id = $1
  and superseded_by is null
  and node_id in (select value from json_each($3))
"#;

/// Makes execution $1 pending on version $2, its deadline taken anew from the version's
/// timeout.
pub(super) const RESET_FOR_RETRY: &str = concat!(
    r#"
update workflow_executions
set status = 'pending',
    workflow_version = $2,
    output = null,
    error = null,
    run_at = "#,
    now_ms!(),
    r#",
    finished_at = null,
    lease_owner = null,
    lease_expires_at = null,
    rescue_count = 0,
    deadline = "#,
    now_ms!(),
    r#" + cast(1000 * (
        select json_extract(v.definition, '$.timeout')
        from workflow_versions v
        where v.workflow_id = workflow_executions.workflow_id
          and v.version = $2
    ) as integer),
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
"#
);

pub(super) const RETRIES_OF: &str = r#"
select id, requested_by, requested_at, from_status, mode, from_node, workflow_version
from workflow_execution_retries
where execution_id = $1
order by id
"#;

/// Ends every execution past its deadline.
pub(super) const TIME_OUT_EXECUTIONS: &str = concat!(
    r#"
update workflow_executions
set status = 'timed_out',
    error = 'deadline passed at '
        || strftime('%Y-%m-%d %H:%M:%f UTC', deadline / 1000.0, 'unixepoch'),
    run_at = null,
    finished_at = "#,
    now_ms!(),
    r#",
    lease_owner = null,
    lease_expires_at = null,
    pause_requested_at = null,
    updated_at = "#,
    now_ms!(),
    r#"
where deadline < "#,
    now_ms!(),
    r#"
  and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
returning id, (select name from workflows w where w.id = workflow_id) as workflow_name
"#
);

/// The database clock and the earliest deadline of executions that have not ended.
pub(super) const NEXT_DEADLINE: &str = concat!(
    "select ",
    now_ms!(),
    r#", min(deadline)
from workflow_executions
where deadline is not null
  and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
"#
);

/// Runnable, waiting and running executions and the oldest runnable one's age in
/// milliseconds, read from the non-terminal rows only.
pub(super) const QUEUE_STATS: &str = concat!(
    r#"
with clock(now) as (select "#,
    now_ms!(),
    r#"),
e as (
    select e.status, e.run_at, e.lease_expires_at, e.held_since, v.node_types, now,
           coalesce(e.held_since is null
                    and e.run_at <= now
                    and (e.lease_expires_at is null or e.lease_expires_at < now), 0)
               as runnable
    from workflow_executions e
    join workflow_versions v
      on v.workflow_id = e.workflow_id
     and v.version = e.workflow_version,
         clock
    -- Held executions are counted apart (HELD_BY_WORKFLOW); leaving them out here lets
    -- this read the runnable index rather than the table.
    where e.status in ('pending', 'running', 'retrying', 'waiting')
      and e.held_since is null
)
select
    coalesce(sum(runnable), 0) as runnable,
    coalesce(max(now - min(case when runnable then run_at end), 0), 0) as oldest_runnable_age,
    coalesce(sum(status = 'waiting' and not runnable and held_since is null), 0) as waiting,
    coalesce(sum(status = 'running' and lease_expires_at >= now), 0) as running,
    -- Runnable, and no live worker has every node type the version uses.
    coalesce(sum(runnable and not exists (
        select 1
        from workflow_workers w
        where w.expires_at > e.now
          and not exists (
              select 1
              from json_each(e.node_types) t
              where t.value not in (select value from json_each(w.node_types))
          )
    )), 0) as unrunnable
from e
"#
);

/// The name and concurrency key path of a workflow named by id ($1) or name ($2).
pub(super) const WORKFLOW_CONCURRENCY: &str = r#"
select workflow_name, key_path
from workflow_concurrency
where workflow_id = $1
   or workflow_name = $2
"#;

/// How many executions of group ($1 workflow, $2 key) run (the claim's count against the
/// limit; the claim's immediate transaction keeps it true until it commits).
pub(super) const RUNNING_IN_GROUP: &str = r#"
select count(*)
from workflow_executions
where workflow_id = $1
  and concurrency_key = $2
  and held_since is null
  -- The index's own terms, so SQLite reads the group's partial index.
  and status in ('pending', 'running')
  and status = 'running'
"#;

/// Holds back execution $1: its group is full.
pub(super) const HOLD_EXECUTION: &str = concat!(
    "update workflow_executions set held_since = ",
    now_ms!(),
    ", updated_at = ",
    now_ms!(),
    " where id = $1"
);

/// The groups of workflow $1 (every workflow if null) with held executions.
pub(super) const HELD_GROUPS: &str = r#"
select distinct workflow_id, concurrency_key
from workflow_executions
where held_since is not null
  and status in ('pending', 'retrying', 'waiting')
  and ($1 is null or workflow_id = $1)
"#;

/// Lets go the held executions of group ($1 workflow, $2 key) its window has room for, as
/// the release trigger of migration 0020 does on a status change (this is the same statement,
/// for the sweep and a save, where no status changed).
pub(super) const RELEASE_GROUP: &str = concat!(
    r#"
update workflow_executions
set held_since = null,
    run_at = case when run_at is not null then max(run_at, "#,
    now_ms!(),
    r#") end,
    updated_at = "#,
    now_ms!(),
    r#"
where id in (
    select h.id
    from workflow_executions h
    where h.workflow_id = $1
      and h.concurrency_key = $2
      and h.held_since is not null
      and h.status in ('pending', 'retrying', 'waiting')
    order by h.priority desc, h.created_at, h.id
    limit (
        select case
            when c.key_path is null then -1
            else max(0, c.window - (
                select count(*)
                from (
                    select 1
                    from workflow_executions e
                    where e.workflow_id = $1
                      and e.concurrency_key = $2
                      and e.held_since is null
                      and e.status in ('pending', 'running')
                      and (c."limit" is not null or e.status = 'pending')
                    limit (select window from workflow_concurrency where workflow_id = $1)
                )
            ))
        end
        from workflow_concurrency c
        where c.workflow_id = $1
    )
)
"#
);

/// Held executions by workflow name.
pub(super) const HELD_BY_WORKFLOW: &str = r#"
select w.name, count(*)
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.held_since is not null
  and e.status in ('pending', 'retrying', 'waiting')
group by w.name
"#;

/// Priority ageing, in the caller's immediate transaction: up to $2 executions runnable (not
/// held) for more than $1 milliseconds below the highest priority among the executions that
/// have not ended, oldest first: each one's id and priority, and that highest priority.
pub(super) const STARVED: &str = concat!(
    r#"
with top(priority) as (
    select max(priority)
    from workflow_executions
    where status in ('pending', 'running', 'retrying', 'waiting')
      and held_since is null
)
select e.id, e.priority, top.priority
from workflow_executions e, top
where e.priority < top.priority
  and e.status in ('pending', 'running', 'retrying', 'waiting')
  and e.held_since is null
  and e.run_at < "#,
    now_ms!(),
    r#" - $1
  and (e.lease_expires_at is null or e.lease_expires_at < "#,
    now_ms!(),
    r#")
order by e.run_at
limit $2
"#
);

/// Raises the executions given as a JSON array of ids ($1) to priority $2.
pub(super) const RAISE_PRIORITY: &str = concat!(
    "update workflow_executions set priority = $2, updated_at = ",
    now_ms!(),
    " where id in (select value from json_each($1))"
);

/// Deletes up to $2 executions that ended more than $1 milliseconds ago, oldest first; their
/// node runs and signals go with them (on delete cascade).
pub(super) const PRUNE_EXECUTIONS: &str = concat!(
    r#"
delete from workflow_executions
where id in (
    select id
    from workflow_executions
    where finished_at < "#,
    now_ms!(),
    r#" - $1
    order by finished_at
    limit $2
)
"#
);

pub(super) const GET_EXECUTION: &str = concat!(
    "select ",
    execution_columns!(),
    r#"
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.id = $1
"#
);

/// Which conditions a list of executions has: the statement [`list_executions`] builds.
#[derive(Debug, Clone, Copy)]
pub(super) struct ListShape {
    /// By status (a parameter).
    pub(super) status: Option<&'static str>,
    /// By workflow id or name (a parameter).
    pub(super) workflow: Option<WorkflowKey>,
    /// After a cursor (two parameters).
    pub(super) cursor: bool,
}

/// How a list names its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WorkflowKey {
    Id,
    Name,
}

/// Newest first with only the conditions `shape` has, bound in order (status, workflow,
/// created_at and id of the cursor, then the limit). SQLite plans a statement without
/// knowing its parameters, so a condition written `($1 is null or …)` would keep it from
/// the indexes of migration 0016; each shape gets a statement of its own instead. A status
/// other than `completed` repeats the partial index's condition, which SQLite only uses
/// when the query states it.
pub(super) fn list_executions(shape: ListShape) -> String {
    let mut conditions = Vec::new();
    if let Some(status) = shape.status {
        conditions.push("e.status = ?".to_owned());
        if status != "completed" {
            conditions.push("e.status <> 'completed'".to_owned());
        }
    }
    match shape.workflow {
        Some(WorkflowKey::Id) => conditions.push("e.workflow_id = ?".to_owned()),
        Some(WorkflowKey::Name) => {
            conditions.push("e.workflow_id = (select id from workflows where name = ?)".to_owned())
        }
        None => {}
    }
    if shape.cursor {
        conditions.push("(e.created_at, e.id) < (?, ?)".to_owned());
    }
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!("where {}\n", conditions.join("\n  and ")),
    };
    format!(
        "select {}\nfrom workflow_executions e\njoin workflows w on w.id = e.workflow_id\n{filter}order by e.created_at desc, e.id desc\nlimit ?",
        execution_columns!()
    )
}

macro_rules! schedule_columns {
    () => {
        "s.id, s.workflow_id, w.name as workflow_name, s.cron, s.timezone, s.input, s.enabled, \
         s.catch_up, s.next_fire_at, s.last_fire_at, s.created_at"
    };
}

pub(super) const NOW: &str = concat!("select ", now_ms!());

/// The recent starts of rate limit $1 for key $2 (a JSON array of milliseconds), if any.
pub(super) const RATE_STARTS: &str =
    "select starts from workflow_rate_limits where name = $1 and key = $2";

/// Stores the recent starts ($3) of rate limit $1 for key $2.
pub(super) const SET_RATE_STARTS: &str = r#"
insert into workflow_rate_limits (name, key, starts) values ($1, $2, $3)
on conflict (name, key) do update set starts = excluded.starts
"#;

/// Stores a schedule ($1 id) of a workflow named by id ($2) or name ($3).
pub(super) const CREATE_SCHEDULE: &str = r#"
insert into workflow_schedules (id, workflow_id, cron, timezone, input, catch_up, next_fire_at)
select $1, w.id, $4, $5, $6, $7, $8
from workflows w
where w.id = $2
   or w.name = $3
"#;

pub(super) const GET_SCHEDULE: &str = concat!(
    "select ",
    schedule_columns!(),
    r#"
from workflow_schedules s
join workflows w on w.id = s.workflow_id
where s.id = $1
"#
);

pub(super) const LIST_SCHEDULES: &str = concat!(
    "select ",
    schedule_columns!(),
    r#"
from workflow_schedules s
join workflows w on w.id = s.workflow_id
order by s.created_at, s.id
"#
);

/// Pauses a schedule ($1), keeping its next tick.
pub(super) const PAUSE_SCHEDULE: &str = concat!(
    r#"
update workflow_schedules
set enabled = 0,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
"#
);

/// Resumes a paused schedule ($1) with its next tick ($2, epoch milliseconds); an enabled
/// one is left as it is.
pub(super) const RESUME_SCHEDULE: &str = concat!(
    r#"
update workflow_schedules
set enabled = 1,
    next_fire_at = $2,
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1 and not enabled
"#
);

pub(super) const DELETE_SCHEDULE: &str = r#"
delete from workflow_schedules
where id = $1
"#;

/// Starts an execution of schedule $1 now ("trigger now"), paused or not; the insert
/// triggers pin the latest version and take its deadline, as for any start. No tick:
/// `scheduled_for` stays null, so the tick key never refuses it nor a tick after it. Returns
/// its id.
pub(super) const TRIGGER_SCHEDULE: &str = concat!(
    r#"
insert into workflow_executions (workflow_id, input, schedule_id, priority)
select s.workflow_id, s.input, s.id, "#,
    default_priority!("s.workflow_id"),
    r#"
from workflow_schedules s
where s.id = $1
returning id
"#
);

/// Enabled schedules due now, or whose next tick is not computed yet.
pub(super) const DUE_SCHEDULES: &str = concat!(
    "select ",
    schedule_columns!(),
    r#"
from workflow_schedules s
join workflows w on w.id = s.workflow_id
where s.enabled
  and (s.next_fire_at is null or s.next_fire_at <= "#,
    now_ms!(),
    r#")
order by s.next_fire_at nulls first
limit $1
"#
);

/// The database clock and the earliest future tick of enabled schedules.
pub(super) const NEXT_SCHEDULE_TICK: &str = concat!(
    "select ",
    now_ms!(),
    r#", min(next_fire_at)
from workflow_schedules
where enabled
  and next_fire_at > "#,
    now_ms!(),
    r#"
"#
);

/// Fenced on the next tick as read ($2): moves a schedule ($1) to its next tick ($3) and
/// records the last tick fired ($4).
pub(super) const ADVANCE_SCHEDULE: &str = concat!(
    r#"
update workflow_schedules
set next_fire_at = $3,
    last_fire_at = coalesce($4, last_fire_at),
    updated_at = "#,
    now_ms!(),
    r#"
where id = $1
  and enabled
  and next_fire_at is $2
returning workflow_id, input
"#
);

/// One execution for a tick ($4) of a schedule ($1) of a workflow ($2) with input $3; a tick
/// that already has one is skipped.
pub(super) const START_SCHEDULED: &str = concat!(
    r#"
insert into workflow_executions (workflow_id, input, schedule_id, scheduled_for, priority)
select $2, $3, $1, $4, "#,
    default_priority!("$2"),
    r#"
-- Without a WHERE, SQLite would read ON CONFLICT as part of the SELECT.
where true
on conflict do nothing
"#
);

// --- migrations ---

/// Whether our history table and sqlx's default one exist.
pub(super) const MIGRATIONS_TABLES_EXIST: &str = r#"
select exists (select 1 from sqlite_master where type = 'table' and name = '_workflow_worker_migrations'),
       exists (select 1 from sqlite_master where type = 'table' and name = '_sqlx_migrations')
"#;

/// Our history table, exactly as sqlx's migrator creates it.
pub(super) const MIGRATIONS_TABLE_CREATE: &str = r#"
create table if not exists _workflow_worker_migrations (
    version bigint primary key,
    description text not null,
    installed_on timestamp not null default current_timestamp,
    success boolean not null,
    checksum blob not null,
    execution_time bigint not null
)
"#;

/// Rows in sqlx's default table, where releases before our own table kept our history.
pub(super) const MIGRATIONS_LEGACY_ROWS: &str = r#"
select version, checksum
from _sqlx_migrations
where success
"#;

/// Copies row $1 (a version) of sqlx's default table into ours.
pub(super) const MIGRATIONS_ADOPT_LEGACY: &str = r#"
insert or ignore into _workflow_worker_migrations
select version, description, installed_on, success, checksum, execution_time
from _sqlx_migrations
where version = $1
"#;

pub(super) const MIGRATIONS_DROP_LEGACY_ROW: &str = r#"
delete from _sqlx_migrations
where version = $1
"#;

pub(super) const MIGRATIONS_VERSION: &str = r#"
select max(version)
from _workflow_worker_migrations
"#;

pub(super) const MIGRATIONS_LEGACY_VERSION: &str = r#"
select max(version)
from _sqlx_migrations
where success
"#;

// --- worker presence ---

/// Records worker $1 running the node types $2 (a JSON array) as alive for $3 milliseconds.
pub(super) const RECORD_WORKER: &str = concat!(
    r#"
insert into workflow_workers (id, node_types, expires_at)
values ($1, $2, "#,
    now_ms!(),
    r#" + $3)
on conflict (id) do update
set node_types = excluded.node_types,
    expires_at = excluded.expires_at
"#
);

/// Forgets workers gone for over a day.
pub(super) const FORGET_WORKERS: &str = concat!(
    r#"
delete from workflow_workers
where expires_at < "#,
    now_ms!(),
    r#" - 86400000
"#
);

pub(super) const REMOVE_WORKER: &str = r#"
delete from workflow_workers
where id = $1
"#;

pub(super) const LIVE_WORKERS: &str = concat!(
    r#"
select id, node_types, expires_at
from workflow_workers
where expires_at > "#,
    now_ms!(),
    r#"
order by id
"#
);

/// An [`ExecutionFilter`](workflow_worker_core::ExecutionFilter) on executions `e`: statuses
/// (a JSON array $1, any when null), workflow id ($2) or name ($3), created before $4 and at
/// or after $5 (milliseconds), error containing $6 ignoring ASCII case.
macro_rules! execution_filter {
    () => {
        r#"($1 is null or e.status in (select value from json_each($1)))
  and ($2 is null or e.workflow_id = $2)
  and ($3 is null or e.workflow_id = (select id from workflows where name = $3))
  and ($4 is null or e.created_at < $4)
  and ($5 is null or e.created_at >= $5)
  and ($6 is null or instr(lower(e.error), lower($6)) > 0)"#
    };
}

/// Up to $8 ids of executions matching the filter ($1 to $6), in id order after $7.
pub(super) const MATCHING_EXECUTIONS: &str = concat!(
    r#"
select e.id
from workflow_executions e
where "#,
    execution_filter!(),
    r#"
  and ($7 is null or e.id > $7)
order by e.id
limit $8
"#
);

/// Deletes those of the executions in the JSON array $7 that ended and still match the
/// filter ($1 to $6); their node runs, signals and retries go with them (on delete cascade).
pub(super) const DELETE_EXECUTIONS: &str = concat!(
    r#"
delete from workflow_executions as e
where e.id in (select value from json_each($7))
  and e.status in ('completed', 'failed', 'cancelled', 'timed_out')
  and "#,
    execution_filter!(),
    "\n"
);

/// The execution other than $1 that holds $1's business key (it has not ended), with the
/// workflow and the key: what a retry of $1 would collide with.
pub(super) const KEY_HOLDER: &str = r#"
select h.id, e.workflow_id, e.key
from workflow_executions e
join workflow_executions h
  on h.workflow_id = e.workflow_id
 and h.key = e.key
 and h.id <> e.id
where e.id = $1
  and h.status in ('pending', 'running', 'retrying', 'waiting', 'paused')
"#;

/// Records one item run of execution $1 by worker $2 ($3 node, $4 item, $5 type, $6 attempt,
/// $7 status, $8 input, $9 output, $10 error, $11 how long it ran and $12 how long ago it
/// ended, in milliseconds, $13 whether it failed for good). The caller holds the write lock
/// and checked the lease.
pub(super) const INSERT_ITEM_RUN: &str = concat!(
    r#"
insert into workflow_item_runs (
    execution_id, worker_id, node_id, item, node_type, attempt, status, input, output, error,
    fatal, started_at, finished_at
)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $13, "#,
    now_ms!(),
    " - $12 - $11, ",
    now_ms!(),
    r#" - $12)
"#
);

/// Whether a pause is asked of execution $1, if it is running under lease token $2 (no row
/// otherwise).
pub(super) const HOLDS_LEASE: &str = r#"
select pause_requested_at is not null
from workflow_executions
where id = $1
  and lease_token = $2
  and status = 'running'
"#;

macro_rules! item_run_columns {
    () => {
        "execution_id, node_id, item, node_type, attempt, status, input, output, error, \
         fatal, worker_id, started_at, finished_at"
    };
}

/// The item runs of map node $2 of execution $1 that no retry superseded.
pub(super) const ITEM_RUNS_OF_NODE: &str = concat!(
    "select ",
    item_run_columns!(),
    r#"
from workflow_item_runs
where execution_id = $1
  and node_id = $2
  and superseded_by is null
order by item, attempt
"#
);

/// The item runs of execution $1 that no retry superseded.
pub(super) const ITEM_RUNS_OF: &str = concat!(
    "select ",
    item_run_columns!(),
    r#"
from workflow_item_runs
where execution_id = $1
  and superseded_by is null
order by node_id, item, attempt
"#
);

/// Marks the item runs of the nodes in the JSON array $3 of execution $1 superseded by retry
/// $2.
pub(super) const SUPERSEDE_ITEM_RUNS: &str = r#"
update workflow_item_runs
set superseded_by = $2
where execution_id = $1
  and superseded_by is null
  and node_id in (select value from json_each($3))
"#;

/// Detaches the children of execution $1 started by the nodes in the JSON array $3: the
/// retry $2 runs those nodes again, and their attempts start new children.
pub(super) const DETACH_CHILDREN: &str = r#"
update workflow_executions
set detached_by_retry = $2
where parent_execution_id = $1
  and detached_by_retry is null
  and parent_node_id in (select value from json_each($3))
"#;
