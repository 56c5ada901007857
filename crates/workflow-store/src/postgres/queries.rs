//! Every SQL statement `PgStore` sends, one named query per `Store` step.

/// Columns of an execution row joined with its workflow (`e` and `w`), in `ExecutionRow` order.
/// JSON columns come as text, so a value the database accepted but serde cannot read fails
/// that one row's conversion, not the statement.
macro_rules! execution_columns {
    () => {
        "e.id, e.workflow_id, w.name as workflow_name, e.workflow_version, e.status, \
         e.input::text as input, e.output::text as output, e.error, e.priority, e.run_at, e.deadline, e.schedule_id, e.scheduled_for, e.lease_owner, e.lease_expires_at, \
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

/// Adds a version of a workflow (creating the workflow on its first save) in one statement.
pub(super) const SAVE_WORKFLOW: &str = r#"
with w as (
    insert into workflows (name, latest_version)
    values ($1, 1)
    on conflict (name) do update
    set latest_version = workflows.latest_version + 1,
        updated_at = now()
    returning id, name, latest_version
)
insert into workflow_versions (workflow_id, version, definition)
select w.id, w.latest_version, $2
from w
returning workflow_id, (select name from w) as name, version, definition, created_at
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

/// Inserts a pending execution of the latest version of a workflow named by id ($1) or name
/// ($2), with concurrency key $6; a null deadline ($5, seconds from now), priority ($4) or
/// concurrency key takes the workflow's (see the insert trigger).
pub(super) const START_EXECUTION: &str = concat!(
    r#"
with w as (
    select id, name, latest_version
    from workflows
    where id = $1
       or name = $2
),
e as (
    insert into workflow_executions (
        workflow_id, workflow_version, input, priority, deadline, concurrency_key
    )
    select w.id, w.latest_version, $3, $4, now() + make_interval(secs => $5), $6
    from w
    returning *
)
select "#,
    execution_columns!(),
    r#"
from e
join w on w.id = e.workflow_id
"#
);

/// A start with a business key: the SQL API's function (migration 0017), which returns the
/// execution holding the key, or starts one, and says which.
pub(super) const START_OR_GET: &str = r#"
select execution_id, created
from workflow_start_or_get($1, $2, $3, $4, $5, $6, $7)
"#;

/// Signal-with-start: the SQL API's function (migration 0017).
pub(super) const SIGNAL_WITH_START: &str = r#"
select execution_id, signal_id, created
from workflow_signal_with_start($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"#;

/// The latest execution of workflow $1 with key $2, ended or not.
pub(super) const EXECUTION_BY_KEY: &str = concat!(
    "select ",
    execution_columns!(),
    r#"
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.workflow_id = $1
  and e.key = $2
order by e.created_at desc, e.id desc
limit 1
"#
);

/// Whether execution $1 is running under lease token $2, locking its row until the
/// transaction ends (a child start is fenced by its parent's lease).
pub(super) const HOLD_PARENT: &str = r#"
select id
from workflow_executions
where id = $1
  and lease_token = $2
  and status = 'running'
for no key update
"#;

/// Starts the child of node attempt ($5 execution, $6 node, $9 item or null, $7 attempt): a
/// pending execution of the latest version of a workflow named by id ($1) or name ($2), with
/// input $3, priority $4 and depth $8, and marks the parent as having children. No row if
/// the workflow is unknown. The caller holds the parent's row and found no child.
pub(super) const START_CHILD_EXECUTION: &str = concat!(
    r#"
with w as (
    select id, name, latest_version
    from workflows
    where id = $1
       or name = $2
),
marked as (
    update workflow_executions
    set has_children = true
    where id = $5
      and not has_children
),
e as (
    insert into workflow_executions (
        workflow_id, workflow_version, input, priority,
        parent_execution_id, parent_node_id, parent_attempt, depth, parent_item
    )
    select w.id, w.latest_version, $3, $4, $5, $6, $7, $8, $9
    from w
    returning *
)
select "#,
    execution_columns!(),
    r#"
from e
join w on w.id = e.workflow_id
"#
);

/// The child of node attempt ($1 execution, $2 node, $4 item or null, $3 attempt).
pub(super) const CHILD_OF: &str = concat!(
    "select ",
    execution_columns!(),
    r#"
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.parent_execution_id = $1
  and e.parent_node_id = $2
  and coalesce(e.parent_item, -1) = coalesce($4, -1)
  and e.parent_attempt = $3
  and e.detached_by_retry is null
"#
);

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

/// The children of execution $1, oldest first.
pub(super) const CHILDREN_OF: &str = r#"
select e.id, w.name as workflow_name, e.status, e.parent_node_id, e.parent_item,
       e.parent_attempt, e.detached_by_retry, e.created_at
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.parent_execution_id = $1
order by e.created_at, e.id
"#;

/// The runnable predicate (docs/ARCHITECTURE.md): not ended, not held back by its
/// concurrency group, due, and with a free or expired lease. Every claim reads executions
/// through it.
macro_rules! runnable {
    () => {
        "status in ('pending', 'running', 'retrying', 'waiting')
      and finished_at is null
      and held_since is null
      and run_at <= now()
      and (lease_expires_at is null or lease_expires_at < now())"
    };
}

/// Only executions whose workflow version uses no node type outside the JSON array `$n` (the
/// claiming worker's), unless `$n` is null. A version that is missing is claimed, to fail
/// with the reason.
macro_rules! can_run {
    ($n:literal) => {
        concat!(
            "
      and (",
            $n,
            "::jsonb is null or coalesce((
          select v.node_types <@ ",
            $n,
            "::jsonb
          from workflow_versions v
          where v.workflow_id = workflow_executions.workflow_id
            and v.version = workflow_executions.workflow_version
      ), true))"
        )
    };
}

/// The update of a claim: takes the rows of a `runnable` CTE (id, previous status) under a
/// new lease for worker $2 lasting $3 seconds.
macro_rules! claim_runnable {
    () => {
        concat!(
            r#"
update workflow_executions e
set status = 'running',
    lease_owner = $2,
    lease_expires_at = now() + make_interval(secs => $3),
    lease_token = e.lease_token + 1,
    -- A running execution with a lease still set was abandoned by a worker that died.
    rescue_count = case
        when e.status = 'running' and e.lease_expires_at is not null then e.rescue_count + 1
        else e.rescue_count
    end,
    started_at = coalesce(e.started_at, now()),
    updated_at = now()
from runnable, workflows w
where e.id = runnable.id
  -- Reads the claimed rows by primary key: joined on `id` alone, a claim of a hundred
  -- rows from a small table planned a scan of the whole table.
  and e.id = any(array(select id from runnable))
  and w.id = e.workflow_id
returning runnable.previous_status, "#,
            execution_columns!()
        )
    };
}

/// Claims runnable executions: non-terminal, due, and with a free or expired lease. `skip
/// locked` lets concurrent claims pass each other without ever returning the same row.
pub(super) const CLAIM_EXECUTIONS: &str = concat!(
    r#"
with runnable as (
    select id, status as previous_status
    from workflow_executions
    where "#,
    runnable!(),
    r#"
      -- $4: leave out suspects (expired, rescued at least $4 times); $5: only suspects.
      and ($4::int is null or lease_expires_at is null or rescue_count < $4)
      and ($5::int is null or (lease_expires_at is not null and rescue_count >= $5))"#,
    can_run!("$6"),
    r#"
    order by priority desc, run_at
    limit $1
    for update skip locked
)
"#,
    claim_runnable!()
);

/// An idle worker's claim: one suspect (expired, rescued at least $4 times, $4 >= 1) alone if
/// one is runnable, else up to $1 of the others. One statement: `others` reads nothing once
/// `suspect` found a row. `rescue_count > 0` lets `suspect` read the small index of rescued
/// executions (migration 0012) rather than every runnable row.
pub(super) const CLAIM_SUSPECT_FIRST: &str = concat!(
    r#"
with suspect as (
    select id, status as previous_status
    from workflow_executions
    where "#,
    runnable!(),
    r#"
      and lease_expires_at is not null
      and rescue_count > 0
      and rescue_count >= $4"#,
    can_run!("$5"),
    r#"
    order by priority desc, run_at
    limit 1
    for update skip locked
),
others as (
    select id, status as previous_status
    from workflow_executions
    where not exists (select from suspect)
      and "#,
    runnable!(),
    r#"
      and (lease_expires_at is null or rescue_count < $4)"#,
    can_run!("$5"),
    r#"
    order by priority desc, run_at
    limit $1
    for update skip locked
),
runnable as (
    select * from suspect
    union all
    select * from others
)
"#,
    claim_runnable!()
);

pub(super) const NODE_RUNS_OF_MANY: &str = concat!(
    "select ",
    node_run_columns!(),
    r#"
from workflow_node_runs
where execution_id = any($1)
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

macro_rules! signal_columns {
    () => {
        "id, execution_id, name, payload::text as payload, idempotency_key, created_at, \
         consumed_at, consumed_by_node"
    };
}

/// Signals not yet consumed of executions given as ids ($1), oldest first.
pub(super) const PENDING_SIGNALS_OF_MANY: &str = concat!(
    "select ",
    signal_columns!(),
    r#"
from workflow_signals
where execution_id = any($1)
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

/// Stores a signal through the SQL API's function (migration 0008); returns its id.
pub(super) const SEND_SIGNAL: &str = r#"
select workflow_send_signal($1, $2, $3, $4)
"#;

pub(super) const SIGNAL_BY_ID: &str = concat!(
    "select ",
    signal_columns!(),
    r#"
from workflow_signals
where id = $1
"#
);

/// Extends the leases ($1 ids, $2 tokens) still held by $3 seconds. Rows are locked in id
/// order, like [`RECORD_STEPS`], so the two never deadlock.
pub(super) const RENEW_LEASES: &str = r#"
with held as (
    select e.id
    from workflow_executions e
    join unnest($1::uuid[], $2::int8[]) as l(id, token)
      on e.id = l.id
     and e.lease_token = l.token
    where e.status = 'running'
      and e.id = any($1::uuid[])
    order by e.id
    for no key update of e
)
update workflow_executions e
set lease_expires_at = now() + make_interval(secs => $3),
    updated_at = now()
from held
where e.id = held.id
returning e.id
"#;

/// Fenced steps of many executions in one statement, each at most once (the store splits a
/// batch that holds an execution twice). The only statement that records steps: what each
/// advance means is written here once.
///
/// Steps are parallel arrays $1..$8: id, lease token, advance, status, output, error, seconds,
/// worker id. Their node runs are $9..$19, keyed by execution id, in the order they are
/// recorded (the order histories are read back in); a run may name the signal it consumed
/// ($19) and says how long before the write it ended ($20, seconds). The signals waiting steps
/// wait for are pairs $21 (execution id), $22 (name).
///
/// Records a batch of steps in one statement; the one template of [`RECORD_STEPS`] and
/// [`RECORD_STEPS_WITHOUT_SIGNALS`]. The fragments given add the signal parts: the steps
/// they drop (`$taken`: a signal to consume is no longer pending), the filter that drops them
/// (`$held`), the run time of a waiting step (`$wait`), and the consumption (`$consume`).
///
/// A step is recorded only if its token still holds the running execution and every signal it
/// consumes is still pending; otherwise nothing of it is written (the store asks why). Rows are
/// locked in id order so concurrent batches and lease renewals never deadlock. Advances:
/// - `continue`: stays running; the lease is renewed for `seconds`.
/// - `finish`: ends in `status` with `output` and `error`; the lease is released.
/// - `retry`: `retrying`, runnable after `seconds`; the lease is released.
/// - `wait`: `waiting`, runnable after `seconds` (never, for null), or at once if a signal it
///   waits for is pending (other than those this very step consumes); the lease is released.
/// - `release`: stays running, runnable at once by anyone; not progress, so `rescue_count`
///   stays.
/// - `pause`: `paused` with `error`, never runnable until resumed; the lease is released. A
///   pause with no error honours an operator's request, so if a resume withdrew the request
///   meanwhile it releases the execution instead.
///
/// A pause asked of the execution (`pause_requested_at`) turns `retry`, `wait` and `release`
/// into a pause too (with no error); `continue` keeps the request for the holder to honour.
///
/// Every advance but `release` resets `rescue_count`. The ids returned are the steps recorded,
/// each with whether a pause is asked of its execution (only a `continue` keeps the request).
macro_rules! record_steps {
    (taken: $taken:expr, held: $held:expr, wait: $wait:expr, consume: $consume:expr $(,)?) => {
        concat!(
            r#"
with step as (
    select *
    from unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
                $7::float8[], $8::text[])
        as s(id, lease_token, advance, status, output, error, seconds, worker_id)
),
run as (
    select *
    from unnest($9::uuid[], $10::text[], $11::text[], $12::int4[], $13::text[], $14::jsonb[],
                $15::jsonb[], $16::text[], $17::text[], $18::float8[], $19::int8[],
                $20::float8[])
        with ordinality as r(execution_id, node_id, node_type, attempt, status, input, output,
                             branch, error, duration, consumed_signal, ago, n)
),"#,
            $taken,
            r#"
-- The batch's executions, locked in id order so concurrent batches and lease renewals never
-- deadlock. Read by primary key alone, whatever their state: with a status condition here the
-- planner read every running execution through the status index, as stale statistics of a
-- hot table told it there were none.
locked as (
    select e.id, e.lease_token, e.status, e.pause_requested_at
    from workflow_executions e
    where e.id = any($1::uuid[])
    order by e.id
    for no key update
),
held as (
    -- Whether the step pauses the execution: a pause with an error always; one without (an
    -- operator's) only while still asked for (a resume since withdrew it, and the step then
    -- releases the execution instead); a retry, wait or release when a pause was asked.
    select l.id,
           case s.advance
               when 'pause' then s.error is not null or l.pause_requested_at is not null
               when 'continue' then false
               when 'finish' then false
               else l.pause_requested_at is not null
           end as pausing
    from locked l
    join step s
      on s.id = l.id
     and s.lease_token = l.lease_token
    where l.status = 'running'"#,
            $held,
            r#"
),
fenced as (
    update workflow_executions e
    set status = case
            when held.pausing then 'paused'
            when s.advance = 'finish' then s.status
            when s.advance = 'retry' then 'retrying'
            when s.advance = 'wait' then 'waiting'
            else e.status
        end,
        output = case when s.advance = 'finish' then s.output else e.output end,
        error = case when s.advance = 'finish' or held.pausing then s.error else e.error end,
        pause_requested_at = case when s.advance = 'continue' then e.pause_requested_at end,
        run_at = case
            when s.advance = 'finish' or held.pausing then null
            when s.advance = 'continue' then e.run_at
            else case s.advance
            when 'pause' then now()
            when 'retry' then now() + make_interval(secs => s.seconds)
            when 'release' then now()"#,
            $wait,
            r#"
            end
        end,
        finished_at = case when s.advance = 'finish' then now() else e.finished_at end,
        lease_owner = case when s.advance = 'continue' then e.lease_owner end,
        lease_expires_at = case
            when s.advance = 'continue' then now() + make_interval(secs => s.seconds)
        end,
        rescue_count = case when s.advance = 'release' then e.rescue_count else 0 end,
        updated_at = now()
    from held, step s
    -- One primary-key lookup per held row. (With `e.id = any($1)` here too, each lookup
    -- sorted the whole array again: a tenth of the database's time in a drain.)
    where e.id = held.id
      and s.id = held.id
    returning e.id, e.pause_requested_at is not null as pause_requested
),"#,
            $consume,
            r#"
runs as (
    insert into workflow_node_runs (
        execution_id, node_id, node_type, attempt, status, input, output, branch, error,
        worker_id, started_at, finished_at
    )
    select r.execution_id, r.node_id, r.node_type, r.attempt, r.status, r.input, r.output,
           r.branch, r.error, s.worker_id,
           clock_timestamp() - make_interval(secs => r.ago + r.duration),
           clock_timestamp() - make_interval(secs => r.ago)
    from run r
    join fenced f on f.id = r.execution_id
    join step s on s.id = r.execution_id
    order by r.n
)
select id, pause_requested from fenced
"#
        )
    };
}

/// Records steps that may wait for signals ($21 execution ids, $22 signal names, one pair
/// per signal awaited) or consume them (a run's `consumed_signal`).
pub(super) const RECORD_STEPS: &str = record_steps!(
    taken: r#"
awaited as (
    select * from unnest($21::uuid[], $22::text[]) as a(execution_id, name)
),
-- The steps that consume a signal no longer pending: they are not recorded.
taken as (
    select distinct r.execution_id
    from run r
    where r.consumed_signal is not null
      and not exists (
          select 1
          from workflow_signals g
          where g.id = r.consumed_signal
            and g.execution_id = r.execution_id
            and g.consumed_at is null
      )
),"#,
    held: r#"
      and l.id not in (select execution_id from taken)"#,
    wait: r#"
            when 'wait' then case
                when exists (
                    select 1
                    from workflow_signals g
                    join awaited a
                      on a.execution_id = g.execution_id
                     and a.name = g.name
                    where g.execution_id = e.id
                      and g.consumed_at is null
                      and g.id not in (
                          select r.consumed_signal
                          from run r
                          where r.execution_id = e.id
                            and r.consumed_signal is not null
                      )
                ) then now()
                else now() + make_interval(secs => s.seconds)
            end"#,
    consume: r#"
consumed as (
    update workflow_signals g
    set consumed_at = now(),
        consumed_by_node = r.node_id
    from run r
    join fenced f on f.id = r.execution_id
    where r.consumed_signal is not null
      and g.id = r.consumed_signal
      and g.execution_id = r.execution_id
    returning g.id
),"#,
);

/// Records steps that neither wait nor consume a signal, the common case (a node finished,
/// the execution continues, ends, retries or is released), with $1 to $20 as
/// [`RECORD_STEPS`]: a statement a fraction as costly to plan, which a busy worker sends
/// many times a second.
pub(super) const RECORD_STEPS_WITHOUT_SIGNALS: &str =
    record_steps!(taken: "", held: "", wait: "", consume: "");

/// Right after [`RECORD_STEPS`], in a statement of its own (so with a fresh snapshot) in the
/// same transaction: makes each parked execution of pairs $1 (id), $2 (signal name)
/// runnable at once, with a wake-up hint, if a signal it waits for was stored after the park
/// read the inbox. Migration 0009 explains the race.
pub(super) const WAKE_IF_SIGNALLED: &str = r#"
with woken as (
    update workflow_executions e
    set run_at = now()
    where e.id in (select unnest($1::uuid[]))
      and e.status = 'waiting'
      and (e.run_at is null or e.run_at > now())
      and exists (
          select 1
          from workflow_signals g
          join unnest($1::uuid[], $2::text[]) as a(execution_id, name)
            on a.execution_id = g.execution_id
           and a.name = g.name
          where g.execution_id = e.id
            and g.consumed_at is null
      )
    returning e.id
)
select pg_notify('workflow_worker_wakeup', '')
from woken
"#;

/// Of the executions and tokens $1, $2, those whose lease the token still holds: for a step
/// [`RECORD_STEPS`] did not record, whether the lease was lost (or a signal consumed).
pub(super) const LEASES_HELD: &str = r#"
select e.id
from workflow_executions e
join unnest($1::uuid[], $2::int8[]) as l(id, token)
  on e.id = l.id
 and e.lease_token = l.token
where e.status = 'running'
  and e.id = any($1::uuid[])
"#;

/// Of the signals $1, those consumed already.
pub(super) const SIGNALS_CONSUMED: &str = r#"
select id
from workflow_signals
where id = any($1)
  and consumed_at is not null
"#;

/// Cancels an execution ($1) that has not ended, with reason $2.
pub(super) const CANCEL_EXECUTION: &str = concat!(
    r#"
with e as (
    update workflow_executions
    set status = 'cancelled',
        error = $2,
        run_at = null,
        finished_at = now(),
        lease_owner = null,
        lease_expires_at = null,
        pause_requested_at = null,
        updated_at = now()
    where id = $1
      and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
    returning *
)
select "#,
    execution_columns!(),
    r#"
from e
join workflows w on w.id = e.workflow_id
"#
);

/// Runs execution $1 again if it failed, timed out, was cancelled or is paused: records the retry (asked
/// by $2, mode $3, node $4, on version $5), supersedes the runs of the nodes in $6, and makes
/// it pending with its deadline taken anew from that version's timeout. No row: it does not
/// exist or has another status. The pending-wakeup trigger (migration 0014) wakes the workers.
pub(super) const RETRY_EXECUTION: &str = concat!(
    r#"
with target as (
    select id, status
    from workflow_executions
    where id = $1
      and status in ('failed', 'cancelled', 'timed_out', 'paused')
    for update
),
retry as (
    insert into workflow_execution_retries (
        execution_id, requested_by, from_status, mode, from_node, workflow_version
    )
    select id, $2, status, $3, $4, $5
    from target
    returning id, execution_id
),
superseded as (
    update workflow_node_runs r
    set superseded_by = retry.id
    from retry
    where r.execution_id = retry.execution_id
      and r.superseded_by is null
      and r.node_id = any($6)
),
superseded_items as (
    update workflow_item_runs r
    set superseded_by = retry.id
    from retry
    where r.execution_id = retry.execution_id
      and r.superseded_by is null
      and r.node_id = any($6)
),
detached as (
    update workflow_executions c
    set detached_by_retry = retry.id
    from retry
    where c.parent_execution_id = retry.execution_id
      and c.detached_by_retry is null
      and c.parent_node_id = any($6)
),
e as (
    update workflow_executions e
    set status = 'pending',
        workflow_version = $5,
        output = null,
        error = null,
        run_at = now(),
        finished_at = null,
        lease_owner = null,
        lease_expires_at = null,
        rescue_count = 0,
        deadline = now() + make_interval(secs => (v.definition ->> 'timeout')::float8),
        updated_at = now()
    from retry, workflow_versions v
    where e.id = retry.execution_id
      and v.workflow_id = e.workflow_id
      and v.version = $5
    returning e.*
)
select "#,
    execution_columns!(),
    r#"
from e
join workflows w on w.id = e.workflow_id
"#
);

/// Pauses execution $1 if it has not ended: a pending, retrying or waiting one at once, a
/// running one by asking its holder (`pause_requested_at`, which its next step reports). No
/// row if it is paused already or ended.
pub(super) const PAUSE_EXECUTION: &str = concat!(
    r#"
with e as (
    update workflow_executions
    set status = case when status = 'running' then status else 'paused' end,
        run_at = case when status = 'running' then run_at end,
        pause_requested_at = case
            when status = 'running' then coalesce(pause_requested_at, now())
        end,
        updated_at = now()
    where id = $1
      and status in ('pending', 'running', 'retrying', 'waiting')
    returning *
)
select "#,
    execution_columns!(),
    r#"
from e
join workflows w on w.id = e.workflow_id
"#
);

/// Resumes execution $1: a paused one becomes pending, runnable now (the trigger of migration
/// 0014 wakes the workers); a running one asked to pause is asked no more. No row if it was
/// neither.
pub(super) const RESUME_EXECUTION: &str = concat!(
    r#"
with e as (
    update workflow_executions
    set status = case when status = 'paused' then 'pending' else status end,
        run_at = case when status = 'paused' then now() else run_at end,
        pause_requested_at = null,
        updated_at = now()
    where id = $1
      and (status = 'paused' or pause_requested_at is not null)
    returning *
)
select "#,
    execution_columns!(),
    r#"
from e
join workflows w on w.id = e.workflow_id
"#
);

pub(super) const RETRIES_OF: &str = r#"
select id, requested_by, requested_at, from_status, mode, from_node, workflow_version
from workflow_execution_retries
where execution_id = $1
order by id
"#;

/// Ends every execution past its deadline.
pub(super) const TIME_OUT_EXECUTIONS: &str = r#"
with ended as (
    update workflow_executions
    set status = 'timed_out',
        error = 'deadline passed at '
            || to_char(deadline at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS "UTC"'),
        run_at = null,
        finished_at = now(),
        lease_owner = null,
        lease_expires_at = null,
        pause_requested_at = null,
        updated_at = now()
    where id in (
        -- Rows another statement holds (a step being recorded) are left for the next sweep,
        -- so the sweep never waits and never deadlocks with a batch of steps.
        select id
        from workflow_executions
        where deadline < now()
          and finished_at is null
          and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
        for update skip locked
    )
    returning id, workflow_id
),
-- Children whose parent ended and that its trigger skipped (their row was held then).
orphans as (
    update workflow_executions c
    set status = 'cancelled',
        error = 'parent execution ' || c.parent_execution_id || ' ended',
        run_at = null,
        finished_at = now(),
        lease_owner = null,
        lease_expires_at = null,
        pause_requested_at = null,
        updated_at = now()
    where c.id in (
        select child.id
        from workflow_executions child
        join workflow_executions parent on parent.id = child.parent_execution_id
        where child.parent_execution_id is not null
          and child.finished_at is null
          and child.status in ('pending', 'running', 'retrying', 'waiting', 'paused')
          and parent.status in ('completed', 'failed', 'cancelled', 'timed_out')
          and not (child.deadline is not null and child.deadline < now())
        for update of child skip locked
    )
)
select now() as now,
       -- The statement sees the rows as they were before `ended` changed them.
       (select min(deadline)
        from workflow_executions
        where deadline is not null
          and finished_at is null
          and status in ('pending', 'running', 'retrying', 'waiting', 'paused')
          and id not in (select id from ended)) as next_deadline,
       coalesce((select json_agg(json_build_array(ended.id, w.name))
                 from ended
                 join workflows w on w.id = ended.workflow_id), '[]'::json) as ended
"#;

/// Runnable, waiting and running executions and the oldest runnable one's age in seconds,
/// read from the non-terminal rows only. Counted per workflow version first, so the live
/// workers' node types are compared once per version, not once per row (which also made the
/// planner's estimate big enough to compile the query on every call).
pub(super) const QUEUE_STATS: &str = r#"
with counts as (
    select e.workflow_id, e.workflow_version,
           count(*) filter (where runnable) as runnable,
           min(run_at) filter (where runnable) as oldest_run_at,
           count(*) filter (where status = 'waiting' and not runnable) as waiting,
           count(*) filter (where status = 'running' and lease_expires_at >= now()) as running
    from (
        select e.workflow_id, e.workflow_version, e.status, e.run_at, e.lease_expires_at,
               coalesce(e.run_at <= now()
                        and (e.lease_expires_at is null or e.lease_expires_at < now()),
                        false) as runnable
        from workflow_executions e
        -- Held executions are counted apart (HELD_BY_WORKFLOW); leaving them out here lets
        -- this read the runnable index rather than the table.
        where e.finished_at is null
          and e.status in ('pending', 'running', 'retrying', 'waiting')
          and e.held_since is null
    ) e
    group by e.workflow_id, e.workflow_version
)
select
    coalesce(sum(c.runnable), 0)::int8 as runnable,
    coalesce(extract(epoch from now() - min(c.oldest_run_at)), 0)::float8
        as oldest_runnable_age,
    coalesce(sum(c.waiting), 0)::int8 as waiting,
    coalesce(sum(c.running), 0)::int8 as running,
    -- Runnable, and no live worker has every node type the version uses.
    coalesce(sum(c.runnable) filter (
        where not exists (
            select 1
            from workflow_workers w
            where w.expires_at > now()
              and w.node_types @> coalesce(v.node_types, '[]')
        )
    ), 0)::int8 as unrunnable
from counts c
left join workflow_versions v
  on v.workflow_id = c.workflow_id
 and v.version = c.workflow_version
"#;

/// Held executions by workflow name (the held index).
pub(super) const HELD_BY_WORKFLOW: &str = r#"
select w.name, count(*)
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.held_since is not null
  and e.finished_at is null
  and e.status in ('pending', 'retrying', 'waiting')
group by w.name
"#;

/// Lets go the held executions of workflow $1 (every workflow if null) that their groups'
/// windows have room for (migration 0020); returns how many.
pub(super) const RELEASE_HELD: &str = "select workflow_concurrency_release_held($1)";

/// Priority ageing: raises up to $2 executions runnable (not held) for more than $1 seconds,
/// oldest first, to the highest priority among the executions that have not ended. The
/// distinct priorities below the top are found by skipping through the runnable index, and
/// each one's oldest executions read from it, so the statement reads a few index entries per
/// priority level, not the backlog. Rows another statement holds are left for next time.
pub(super) const AGE_PRIORITIES: &str = r#"
with recursive levels(priority) as (
    (
        select priority
        from workflow_executions
        where finished_at is null
          and status in ('pending', 'running', 'retrying', 'waiting')
          and held_since is null
        order by priority desc
        limit 1
    )
    union all
    select (
        select e.priority
        from workflow_executions e
        where e.finished_at is null
          and e.status in ('pending', 'running', 'retrying', 'waiting')
          and e.held_since is null
          and e.priority < levels.priority
        order by e.priority desc
        limit 1
    )
    from levels
    where levels.priority is not null
),
top as (
    select max(priority) as priority from levels
),
starved as (
    select candidate.id, candidate.priority as was, candidate.run_at
    from levels
    cross join top
    cross join lateral (
        select e.id, e.priority, e.run_at
        from workflow_executions e
        where e.priority = levels.priority
          and e.finished_at is null
          and e.status in ('pending', 'running', 'retrying', 'waiting')
          and e.held_since is null
          and e.run_at < now() - make_interval(secs => $1)
          and (e.lease_expires_at is null or e.lease_expires_at < now())
        order by e.run_at
        limit $2
        for update skip locked
    ) candidate
    where levels.priority < top.priority
    order by candidate.run_at
    limit $2
)
update workflow_executions e
set priority = top.priority,
    updated_at = now()
from starved, top
where e.id = starved.id
returning e.id, starved.was, e.priority
"#;

/// Deletes up to $2 executions that ended more than $1 seconds ago, oldest first; their node
/// runs and signals go with them (on delete cascade).
pub(super) const PRUNE_EXECUTIONS: &str = r#"
with doomed as (
    select id
    from workflow_executions
    where finished_at < now() - make_interval(secs => $1)
    order by finished_at
    limit $2
    for update skip locked
)
delete from workflow_executions e
using doomed
where e.id = doomed.id
"#;

pub(super) const GET_EXECUTION: &str = concat!(
    "select ",
    execution_columns!(),
    r#"
from workflow_executions e
join workflows w on w.id = e.workflow_id
where e.id = $1
"#
);

/// Newest first, optionally filtered by status ($1) and workflow id ($2) or name ($3).
pub(super) const LIST_EXECUTIONS: &str = concat!(
    "select ",
    execution_columns!(),
    r#"
from workflow_executions e
join workflows w on w.id = e.workflow_id
where ($1::text is null or e.status = $1)
  -- The same filter in the terms of the status list indexes (migration 0024), which cannot
  -- read `status`: an ended status other than completed, or one that has not ended.
  -- Completed ones, most of a history, are read from the list index.
  and ($1::text is null
       or $1 = 'completed'
       or ($1 in ('failed', 'cancelled', 'timed_out') and e.ended_status = $1)
       or ($1 not in ('completed', 'failed', 'cancelled', 'timed_out')
           and e.finished_at is null))
  and ($2::uuid is null or w.id = $2)
  and ($3::text is null or w.name = $3)
  -- After the cursor ($5, $6) in this order: a row comparison, so the scan of the list
  -- index (migration 0016) starts there however deep it is.
  and ($5::timestamptz is null or (e.created_at, e.id) < ($5, $6::uuid))
order by e.created_at desc, e.id desc
limit $4
"#
);

macro_rules! schedule_columns {
    () => {
        "s.id, s.workflow_id, w.name as workflow_name, s.cron, s.timezone, s.input, s.enabled, \
         s.catch_up, s.next_fire_at, s.last_fire_at, s.created_at"
    };
}

pub(super) const NOW: &str = "select now()";

/// Takes a start from rate limit $1 for key $2, at most $3 per $4 seconds: null when taken,
/// else the seconds until one can be.
pub(super) const TAKE_RATE: &str =
    "select workflow_rate_take($1, $2, $3, make_interval(secs => $4))";

/// Stores a schedule of a workflow named by id ($1) or name ($2).
pub(super) const CREATE_SCHEDULE: &str = concat!(
    r#"
with w as (
    select id, name
    from workflows
    where id = $1
       or name = $2
),
s as (
    insert into workflow_schedules (workflow_id, cron, timezone, input, catch_up, next_fire_at)
    select w.id, $3, $4, $5, $6, $7
    from w
    returning *
)
select "#,
    schedule_columns!(),
    r#"
from s
join w on w.id = s.workflow_id
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

/// One schedule ($1).
pub(super) const GET_SCHEDULE: &str = concat!(
    "select ",
    schedule_columns!(),
    r#"
from workflow_schedules s
join workflows w on w.id = s.workflow_id
where s.id = $1
"#
);

/// Pauses a schedule ($1), keeping its next tick.
pub(super) const PAUSE_SCHEDULE: &str = concat!(
    r#"
with s as (
    update workflow_schedules
    set enabled = false, updated_at = now()
    where id = $1
    returning *
)
select "#,
    schedule_columns!(),
    r#"
from s
join workflows w on w.id = s.workflow_id
"#
);

/// Resumes a paused schedule ($1) with its next tick ($2); an enabled one is returned as it
/// is (the second branch reads the row as it was before the statement, which is the row
/// when the update matched nothing).
pub(super) const RESUME_SCHEDULE: &str = concat!(
    r#"
with resumed as (
    update workflow_schedules
    set enabled = true, next_fire_at = $2, updated_at = now()
    where id = $1 and not enabled
    returning *
), s as (
    select * from resumed
    union all
    select * from workflow_schedules
    where id = $1 and not exists (select from resumed)
)
select "#,
    schedule_columns!(),
    r#"
from s
join workflows w on w.id = s.workflow_id
"#
);

pub(super) const DELETE_SCHEDULE: &str = r#"
delete from workflow_schedules
where id = $1
"#;

/// Starts an execution of schedule $1 now ("trigger now"), paused or not; the insert trigger
/// pins the latest version and takes its deadline, as for any start. No tick: `scheduled_for`
/// stays null, so the tick key never refuses it nor a tick after it. Returns its id.
pub(super) const TRIGGER_SCHEDULE: &str = r#"
insert into workflow_executions (workflow_id, input, schedule_id)
select workflow_id, input, id
from workflow_schedules
where id = $1
returning id
"#;

/// Enabled schedules due now, or whose next tick is not computed yet.
pub(super) const DUE_SCHEDULES: &str = concat!(
    "select ",
    schedule_columns!(),
    r#"
from workflow_schedules s
join workflows w on w.id = s.workflow_id
where s.enabled
  and (s.next_fire_at is null or s.next_fire_at <= now())
order by s.next_fire_at nulls first
limit $1
"#
);

/// The database clock and the earliest future tick of enabled schedules.
pub(super) const NEXT_SCHEDULE_TICK: &str = r#"
select now(), min(next_fire_at)
from workflow_schedules
where enabled
  and next_fire_at > now()
"#;

/// Fenced on the next tick as read ($2): moves a schedule ($1) to its next tick ($3) and
/// records the last tick fired ($4).
pub(super) const ADVANCE_SCHEDULE: &str = r#"
update workflow_schedules
set next_fire_at = $3,
    last_fire_at = coalesce($4, last_fire_at),
    updated_at = now()
where id = $1
  and enabled
  and next_fire_at is not distinct from $2
returning workflow_id, input
"#;

/// One execution per tick ($4) of a schedule ($1) of a workflow ($2) with input $3; a tick
/// that already has one is skipped.
pub(super) const START_SCHEDULED: &str = r#"
insert into workflow_executions (workflow_id, input, schedule_id, scheduled_for)
select $2, $3, $1, tick
from unnest($4::timestamptz[]) as tick
on conflict (schedule_id, scheduled_for) where schedule_id is not null do nothing
"#;

// --- migrations (see migrate.rs) ---

/// Serialises migrations across workers for the rest of the transaction; unlike a session
/// lock it cannot outlive the transaction behind a transaction-mode pooler.
pub(super) const MIGRATIONS_LOCK: &str = r#"
select pg_advisory_xact_lock(hashtextextended('workflow-worker migrations', 0))
"#;

/// The history table, in sqlx's layout.
pub(super) const MIGRATIONS_TABLE_CREATE: &str = r#"
create table if not exists _workflow_worker_migrations (
    version bigint primary key,
    description text not null,
    installed_on timestamptz not null default now(),
    success boolean not null,
    checksum bytea not null,
    execution_time bigint not null
)
"#;

/// Whether our history table and sqlx's default one exist.
pub(super) const MIGRATIONS_TABLES_EXIST: &str = r#"
select to_regclass('_workflow_worker_migrations') is not null,
       to_regclass('_sqlx_migrations') is not null
"#;

pub(super) const MIGRATIONS_APPLIED: &str = r#"
select version, description, checksum
from _workflow_worker_migrations
order by version
"#;

pub(super) const MIGRATIONS_RECORD: &str = r#"
insert into _workflow_worker_migrations (version, description, success, checksum, execution_time)
values ($1, $2, true, $3, $4)
"#;

pub(super) const MIGRATIONS_VERSION: &str = r#"
select max(version)
from _workflow_worker_migrations
"#;

/// Rows in sqlx's default table, where releases before our own table kept our history.
pub(super) const MIGRATIONS_LEGACY_ROWS: &str = r#"
select version, checksum
from _sqlx_migrations
where success
"#;

pub(super) const MIGRATIONS_LEGACY_VERSION: &str = r#"
select max(version)
from _sqlx_migrations
where success
"#;

/// Moves the rows $1 (versions) of sqlx's default table into ours.
pub(super) const MIGRATIONS_ADOPT_LEGACY: &str = r#"
with moved as (
    delete from _sqlx_migrations
    where version = any($1)
    returning version, description, installed_on, success, checksum, execution_time
)
insert into _workflow_worker_migrations
select *
from moved
on conflict (version) do nothing
"#;

// --- worker presence ---

/// Records worker $1 running the node types $2 (a JSON array) as alive for $3 seconds, and
/// forgets workers gone for over a day.
pub(super) const RECORD_WORKER: &str = r#"
with forgotten as (
    delete from workflow_workers
    where expires_at < now() - interval '1 day'
)
insert into workflow_workers (id, node_types, expires_at)
values ($1, $2, now() + make_interval(secs => $3))
on conflict (id) do update
set node_types = excluded.node_types,
    expires_at = excluded.expires_at
"#;

pub(super) const REMOVE_WORKER: &str = r#"
delete from workflow_workers
where id = $1
"#;

pub(super) const LIVE_WORKERS: &str = r#"
select id, node_types, expires_at
from workflow_workers
where expires_at > now()
order by id
"#;

/// An [`ExecutionFilter`](workflow_worker_core::ExecutionFilter) on executions `e`: statuses
/// ($1, any when null), workflow id ($2) or name ($3), created before $4 and at or after $5,
/// error containing $6 ignoring case.
macro_rules! execution_filter {
    () => {
        r#"($1::text[] is null or e.status = any($1))
  and ($2::uuid is null or e.workflow_id = $2)
  and ($3::text is null or e.workflow_id = (select id from workflows where name = $3))
  and ($4::timestamptz is null or e.created_at < $4)
  and ($5::timestamptz is null or e.created_at >= $5)
  and ($6::text is null or strpos(lower(e.error), lower($6)) > 0)"#
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
  and ($7::uuid is null or e.id > $7)
order by e.id
limit $8
"#
);

/// Deletes those of the executions $7 that ended and still match the filter ($1 to $6); their
/// node runs, signals and retries go with them (on delete cascade).
pub(super) const DELETE_EXECUTIONS: &str = concat!(
    r#"
delete from workflow_executions e
where e.id = any($7)
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
  and h.finished_at is null
  and h.status in ('pending', 'running', 'retrying', 'waiting', 'paused')
"#;

/// Records item runs of execution $1 held with lease token $2 by worker $3 (the runs as
/// arrays $4..$15; $12 how long each ran, $13 how long ago it ended, $14 the signal it
/// consumed, $15 whether it failed for good), under the execution's row lock so no claim can take it meanwhile, and says
/// whether a pause is asked of it. No row if the lease was lost.
pub(super) const RECORD_ITEM_RUNS: &str = r#"
with held as (
    select id, pause_requested_at is not null as pause_requested
    from workflow_executions
    where id = $1
      and lease_token = $2
      and status = 'running'
    for no key update
),
runs as (
    insert into workflow_item_runs (
        execution_id, node_id, item, node_type, attempt, status, input, output, error,
        fatal, worker_id, started_at, finished_at
    )
    select held.id, r.node_id, r.item, r.node_type, r.attempt, r.status, r.input, r.output,
           r.error, r.fatal, $3,
           clock_timestamp() - make_interval(secs => r.ago + r.duration),
           clock_timestamp() - make_interval(secs => r.ago)
    from held,
         unnest($4::text[], $5::int4[], $6::text[], $7::int4[], $8::text[], $9::jsonb[],
                $10::jsonb[], $11::text[], $12::float8[], $13::float8[], $15::bool[])
             as r(node_id, item, node_type, attempt, status, input, output, error, duration, ago,
                  fatal)
),
consumed as (
    update workflow_signals g
    set consumed_at = now(),
        consumed_by_node = r.node_id || '[' || r.item || ']'
    from held,
         unnest($4::text[], $5::int4[], $14::int8[]) as r(node_id, item, signal)
    where g.id = r.signal
      and g.execution_id = held.id
      and g.consumed_at is null
)
select pause_requested
from held
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
