//! Worker processes dying, stopping and restarting against a real PostgreSQL: graceful
//! shutdown, poison executions, and the chaos test (ignored by default; `.ci/run` runs it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use workflow_worker_core::{
    ExecutionDetail, ExecutionId, ExecutionStatus, LeaseToken, NodeRunStatus, StartExecutionParams,
    Store,
};
use workflow_worker_store::testing::TestDatabase;

mod common;

use common::{Worker, save, wait_for};
use workflow_worker_core::testing::processes_with;

const WAIT: Duration = Duration::from_secs(60);

/// trigger -> `work` (a shell snippet) -> `after` (`echo after`).
fn two_steps(name: &str, work: &str) -> serde_json::Value {
    json!({
        "name": name,
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "work", "type": "code", "config": {"language": "shell", "code": work}},
            {"id": "after", "type": "code", "config": {"language": "shell", "code": "echo after"}}
        ],
        "edges": [{"from": "start", "to": "work"}, {"from": "work", "to": "after"}]
    })
}

async fn start(store: &impl Store, workflow: &str) -> ExecutionId {
    store
        .start_execution(StartExecutionParams::new(workflow, json!({})))
        .await
        .unwrap()
        .execution
        .id
}

async fn all_terminal(store: &impl Store, ids: &[ExecutionId]) -> Option<Vec<ExecutionDetail>> {
    let mut details = Vec::new();
    for id in ids {
        let detail = store.get_execution(*id).await.unwrap();
        if !detail.execution.status.is_terminal() {
            return None;
        }
        details.push(detail);
    }
    Some(details)
}

fn runs_of<'a>(detail: &'a ExecutionDetail, node: &str) -> Vec<(NodeRunStatus, i32, &'a str)> {
    detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == node)
        .map(|r| (r.status, r.attempt, r.worker_id.as_deref().unwrap_or("")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_nodes_finish_within_the_grace_period_and_hands_the_rest_over() {
    let db = TestDatabase::create().await;
    // Each `work` node leaves a mark as it starts.
    let marks = std::env::temp_dir().join(format!("wfw-sigterm-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&marks).unwrap();
    let work =
        |name: &str, seconds: u32| format!("touch '{}/{name}' && sleep {seconds}", marks.display());
    save(&db.store, two_steps("quick", &work("quick", 1))).await;
    save(&db.store, two_steps("slow", &work("slow", 30))).await;
    let quick = start(&db.store, "quick").await;
    let slow = start(&db.store, "slow").await;

    let first = Worker::run(
        &db.url,
        &[
            "--worker-id",
            "first",
            "--poll-interval",
            "0.1",
            "--shutdown-grace",
            "4",
        ],
    );
    wait_for("both work nodes to start", WAIT, || async {
        (marks.join("quick").exists() && marks.join("slow").exists()).then_some(())
    })
    .await;
    let poll_interval = Duration::from_secs(1);
    let second = Worker::run(
        &db.url,
        &[
            "--worker-id",
            "second",
            "--poll-interval",
            "1",
            "--shutdown-grace",
            "1",
        ],
    );

    let signalled = Instant::now();
    let log = first.stop();
    let exited = Instant::now();
    assert!(
        exited - signalled < Duration::from_secs(15),
        "the worker waited for the 30 s node instead of interrupting it"
    );
    for line in [
        "worker stopping",
        "grace period exceeded; interrupting the nodes still running",
        "execution released for another worker",
        "finished=0 released=2 dropped=0",
        "worker stopped",
    ] {
        assert!(log.contains(line), "log lacks \"{line}\":\n{log}");
    }

    // Released, not left to expire: the other worker claims both within a poll interval
    // (plus slack for a loaded machine), far sooner than the 30 s lease.
    let taken_over = |detail: &ExecutionDetail| {
        detail.execution.lease_owner.as_deref() == Some("second")
            || detail
                .node_runs
                .iter()
                .any(|r| r.worker_id.as_deref() == Some("second"))
    };
    wait_for(
        "the second worker to take both over",
        poll_interval + Duration::from_secs(3),
        || async {
            let mut both = true;
            for id in [quick, slow] {
                both &= taken_over(&db.store.get_execution(id).await.unwrap());
            }
            both.then_some(())
        },
    )
    .await;

    let quick_only = [quick];
    let details = wait_for("the quick one to finish", WAIT, || {
        all_terminal(&db.store, &quick_only)
    })
    .await;
    let quick_detail = &details[0];
    assert_eq!(quick_detail.execution.status, ExecutionStatus::Completed);
    assert_eq!(
        runs_of(quick_detail, "work"),
        vec![(NodeRunStatus::Completed, 1, "first")],
        "the node finished within the grace period on the first worker"
    );
    assert_eq!(
        runs_of(quick_detail, "after"),
        vec![(NodeRunStatus::Completed, 1, "second")]
    );

    let slow_detail = db.store.get_execution(slow).await.unwrap();
    assert_eq!(
        runs_of(&slow_detail, "work"),
        vec![(NodeRunStatus::Interrupted, 1, "first")],
        "interrupted at the end of the grace period; running again as attempt 1"
    );
    second.stop();
    std::fs::remove_dir_all(&marks).unwrap();
}

/// A SIGTERM is heard from the moment the worker starts, whatever it is doing: opening the
/// store, or between that and its first poll. A signal in between was once caught and heard by
/// nobody (the listener of the store's opening was gone, the poll loop's not yet there), and
/// the worker ran on: it showed as a worker that a test could not stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_while_the_worker_starts_stops_it() {
    let postgres = TestDatabase::create().await;
    let sqlite = workflow_worker_store::testing::TestSqlite::create().await;
    for url in [&postgres.url, &sqlite.url] {
        for stage in ["applying migrations", "database ready", "worker started"] {
            // Several times at each: the signal lands a few milliseconds after the log line.
            for _ in 0..3 {
                let worker = Worker::run(url, &["--poll-interval", "0.1"]);
                let deadline = Instant::now() + WAIT;
                while !worker.log().contains(stage) {
                    assert!(Instant::now() < deadline, "no {stage:?}:\n{}", worker.log());
                    std::thread::sleep(Duration::from_millis(1));
                }
                common::signal(worker.pid(), "TERM");
                let log = worker.stopped();
                assert!(log.contains("shutdown requested"), "{log}");
            }
        }
    }
}

/// Ctrl-C at a terminal signals the worker's whole process group. Code nodes run in groups
/// of their own, so they are not killed with it: a node that ends within the grace period
/// completes; one still running past it is stopped with everything it started.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_lets_code_nodes_finish_and_past_the_grace_period_leaves_no_process() {
    use std::os::unix::process::CommandExt;

    let db = TestDatabase::create().await;
    let marker = format!("{}", 800_000 + uuid::Uuid::new_v4().as_u128() % 99_999);
    save(&db.store, two_steps("brief", "sleep 2; echo slept")).await;
    save(
        &db.store,
        two_steps("endless", &format!("sleep {marker} & sleep {marker}")),
    )
    .await;
    let brief = start(&db.store, "brief").await;
    let endless = start(&db.store, "endless").await;
    let mut command = common::bin(Some(&db.url));
    command
        .args(["run", "--worker-id", "first", "--poll-interval", "0.1"])
        .args(["--shutdown-grace", "15"])
        // A terminal's foreground job: its own group, which Ctrl-C signals as a whole.
        .process_group(0);
    let worker = Worker::spawn(&mut command);
    wait_for("both nodes to run", WAIT, || async {
        let brief_started = !db
            .store
            .get_execution(brief)
            .await
            .ok()?
            .node_runs
            .is_empty();
        (brief_started && processes_with(&marker).len() >= 2).then_some(())
    })
    .await;
    common::signal_group(worker.pid(), "INT");
    let log = worker.wait_dead();
    assert!(log.contains("worker stopped"), "{log}");

    let detail = db.store.get_execution(brief).await.unwrap();
    assert_eq!(
        runs_of(&detail, "work"),
        vec![(NodeRunStatus::Completed, 1, "first")],
        "the node finished within the grace period:\n{log}"
    );
    let endless_detail = db.store.get_execution(endless).await.unwrap();
    assert_eq!(
        runs_of(&endless_detail, "work"),
        vec![(NodeRunStatus::Interrupted, 1, "first")],
        "{log}"
    );
    let deadline = Instant::now() + WAIT;
    while !processes_with(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the interrupted node's processes are left: {:?}",
            processes_with(&marker)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `systemctl stop` must treat code nodes as Ctrl-C does: SIGTERM to the worker alone
/// (`KillMode=mixed`), and SIGKILL for the rest only after the grace period.
#[test]
fn the_systemd_unit_signals_the_worker_alone_and_outwaits_the_grace_period() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/workflow-worker.service"
    ))
    .unwrap();
    let setting = |key: &str| {
        unit.lines()
            .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
            .next_back()
            .map(str::trim)
    };
    assert_eq!(setting("KillMode"), Some("mixed"));
    assert_eq!(setting("KillSignal"), Some("SIGTERM"));
    let grace: u64 = unit
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Environment=WORKFLOW_SHUTDOWN_GRACE=")
        })
        .and_then(|value| value.trim_end_matches('s').parse().ok())
        .expect("the unit sets WORKFLOW_SHUTDOWN_GRACE");
    let stop: u64 = setting("TimeoutStopSec").unwrap().parse().unwrap();
    assert!(
        stop > grace,
        "TimeoutStopSec {stop} must outlast the grace period {grace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_kills_its_worker_is_quarantined_while_other_executions_complete() {
    let db = TestDatabase::create().await;
    save(
        &db.store,
        json!({
            "name": "poison",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "crash", "type": "code",
                 "config": {"language": "shell", "code": "kill -9 $PPID; sleep 5"}}
            ],
            "edges": [{"from": "start", "to": "crash"}]
        }),
    )
    .await;
    save(&db.store, two_steps("fine", "echo fine")).await;
    let poison = start(&db.store, "poison").await;
    let mut fine = Vec::new();
    for _ in 0..20 {
        fine.push(start(&db.store, "fine").await);
    }

    // A supervisor: restart the worker whenever it dies, like systemd would.
    let args = [
        "--lease-duration",
        "1",
        "--heartbeat-interval",
        "0.3",
        "--poll-interval",
        "0.1",
        "--max-rescues",
        "2",
    ];
    let mut worker = Worker::run(&db.url, &args);
    let mut deaths = 0;
    let started = Instant::now();
    let mut all = fine.clone();
    all.push(poison);
    let details = loop {
        if let Some(details) = all_terminal(&db.store, &all).await {
            break details;
        }
        if worker.exited() {
            worker.wait_dead();
            deaths += 1;
            assert!(
                deaths <= 10,
                "the worker keeps dying: the poison was never quarantined"
            );
            worker = Worker::run(&db.url, &args);
        }
        assert!(
            started.elapsed() < WAIT,
            "executions still open after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = worker.stop();

    // The first death leaves the trigger's run unwritten (it waits for the next write); the
    // rescuer records it before `crash` starts again. Then two deaths make it a suspect that
    // runs alone, and two more alone quarantine it.
    assert_eq!(
        deaths, 5,
        "the poison node should kill 5 workers, then be quarantined"
    );
    let poisoned = details.last().unwrap();
    assert_eq!(poisoned.execution.status, ExecutionStatus::Failed);
    let error = poisoned.execution.error.clone().unwrap_or_default();
    assert!(
        error.starts_with(
            "quarantined: its worker died (lease expired) 4 times in a row while running it, \
             2 of them while it ran alone"
        ),
        "{error}"
    );
    assert!(
        runs_of(poisoned, "crash")
            .iter()
            .all(|r| r.0 == NodeRunStatus::Abandoned)
    );
    assert!(log.contains("execution failed"), "{log}");
    for detail in &details[..fine.len()] {
        assert_eq!(
            detail.execution.status,
            ExecutionStatus::Completed,
            "{detail:?}"
        );
    }
}

/// Three worker processes run 1,000 executions of a 3-node workflow while one random worker
/// is killed with SIGKILL about every 2 s and restarted. Run by `.ci/run`:
/// `cargo test --workspace --test durability -- --ignored --nocapture`.
/// A worker SIGKILLed in the middle of a 500-item map: the worker that rescues the execution
/// runs only the items not recorded, and every item is recorded completed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_in_the_middle_of_a_map_leaves_every_item_recorded_once() {
    let db = TestDatabase::create().await;
    save(
        &db.store,
        json!({
            "name": "fan_out",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "each", "type": "map", "config": {
                    "items": {"$template": "{{ input.list }}"},
                    "node": {"type": "code", "config": {"language": "shell", "code": "sleep 0.01; cat"}},
                    "max_parallel": 8
                }}
            ],
            "edges": [{"from": "start", "to": "each"}]
        }),
    )
    .await;
    let list: Vec<usize> = (0..500).collect();
    let id = db
        .store
        .start_execution(StartExecutionParams::new(
            "fan_out",
            json!({ "list": list }),
        ))
        .await
        .unwrap()
        .execution
        .id;
    let lease = ["--lease-duration", "3", "--heartbeat-interval", "1"];
    let first = Worker::run(
        &db.url,
        &[
            &["--worker-id", "first", "--poll-interval", "0.1"][..],
            &lease,
        ]
        .concat(),
    );
    let recorded = || async {
        let (count,): (i64,) =
            sqlx::query_as("select count(*) from workflow_item_runs where execution_id = $1")
                .bind(id.0)
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        count
    };
    wait_for("a hundred items to be recorded", WAIT, || async {
        (recorded().await >= 100).then_some(())
    })
    .await;
    first.kill();
    let at_kill = recorded().await;
    assert!(at_kill < 500, "the map finished before the kill");

    let second = Worker::run(
        &db.url,
        &[
            &["--worker-id", "second", "--poll-interval", "0.2"][..],
            &lease,
        ]
        .concat(),
    );
    let detail = wait_for("the map to finish", WAIT * 2, || async {
        all_terminal(&db.store, &[id])
            .await
            .map(|mut d| d.remove(0))
    })
    .await;
    second.stop();
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{:?}",
        detail.execution.error
    );
    let mut completed: Vec<u32> = detail
        .item_runs
        .iter()
        .filter(|r| r.status == NodeRunStatus::Completed)
        .map(|r| r.item)
        .collect();
    completed.sort_unstable();
    assert_eq!(completed, (0..500).collect::<Vec<u32>>(), "each item once");
    let by_worker = |worker: &str| {
        detail
            .item_runs
            .iter()
            .filter(|r| r.worker_id.as_deref() == Some(worker))
            .count()
    };
    assert!(by_worker("first") >= 100 && by_worker("second") > 0);
    let results: Vec<serde_json::Value> = detail
        .execution
        .output
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["result"].clone())
        .collect();
    assert_eq!(results, (0..500).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute of killing workers; run by .ci/run"]
async fn chaos_kill_random_workers_until_all_executions_are_done() {
    const EXECUTIONS: usize = 1000;
    const WORKERS: usize = 3;
    let db = TestDatabase::create().await;
    save(&db.store, two_steps("chaos", "sleep 0.15; echo work")).await;
    let mut ids = Vec::with_capacity(EXECUTIONS);
    for _ in 0..EXECUTIONS {
        ids.push(start(&db.store, "chaos").await);
    }
    // One real poison among them: it kills whichever worker runs it.
    save(&db.store, two_steps("poison", "kill -9 $PPID; sleep 5")).await;
    let poison = start(&db.store, "poison").await;

    let mut generation = 0;
    let mut spawn = |slot: usize| {
        generation += 1;
        let id = format!("chaos-{slot}-{generation}");
        let worker = Worker::run(
            &db.url,
            &[
                "--worker-id",
                &id,
                "--concurrency",
                "4",
                "--poll-interval",
                "0.1",
                "--lease-duration",
                "2",
                "--heartbeat-interval",
                "0.5",
                // The default --max-rescues: random kills that hit executions sharing a worker
                // must not quarantine them, while the poison is quarantined.
            ],
        );
        (id, worker)
    };
    let mut workers: Vec<(String, Worker)> = (0..WORKERS).map(&mut spawn).collect();
    let mut logs = Vec::new();
    let mut kills = 0;
    let mut poison_kills = 0;
    // Per kill: when it happened, and the executions the victim held (with their tokens).
    let mut awaiting_rescue: Vec<(Instant, HashMap<ExecutionId, LeaseToken>)> = Vec::new();
    let mut longest_rescue = Duration::ZERO;
    let started = Instant::now();
    let mut last_kill = Instant::now();
    let deadline = Duration::from_secs(600);
    loop {
        let executions = db
            .store
            .list_executions(workflow_worker_core::ListExecutionsParams {
                limit: EXECUTIONS as u32 + 1,
                before: None,
                ..Default::default()
            })
            .await
            .unwrap();
        // A supervisor restarts workers the poison killed, as systemd would.
        for (slot, worker) in workers.iter_mut().enumerate() {
            if worker.1.exited() {
                let (_, dead) = std::mem::replace(worker, spawn(slot));
                logs.push(dead.wait_dead());
                poison_kills += 1;
            }
        }
        let open = executions
            .iter()
            .filter(|e| !e.status.is_terminal())
            .count();
        // An execution is rescued once another claim took it (new token) or it ended.
        let current: HashMap<ExecutionId, (LeaseToken, bool)> = executions
            .iter()
            .map(|e| (e.id, (e.lease_token, e.status.is_terminal())))
            .collect();
        awaiting_rescue.retain_mut(|(killed_at, held)| {
            held.retain(|id, token| {
                let (now_token, ended) = current[id];
                now_token == *token && !ended
            });
            if held.is_empty() {
                longest_rescue = longest_rescue.max(killed_at.elapsed());
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(60),
                "not rescued: {held:?}"
            );
            !held.is_empty()
        });
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "{open} executions still open after {deadline:?}"
        );

        if last_kill.elapsed() >= Duration::from_secs(2) {
            // Kill a random worker, noting what it held, and start a fresh one in its place.
            let slot = usize::from(uuid::Uuid::new_v4().as_bytes()[0]) % WORKERS;
            let held: HashMap<ExecutionId, LeaseToken> = executions
                .iter()
                .filter(|e| {
                    e.status == ExecutionStatus::Running
                        && e.lease_owner.as_deref() == Some(workers[slot].0.as_str())
                })
                .map(|e| (e.id, e.lease_token))
                .collect();
            let (_, victim) = std::mem::replace(&mut workers[slot], spawn(slot));
            logs.push(victim.kill());
            last_kill = Instant::now();
            kills += 1;
            if !held.is_empty() {
                awaiting_rescue.push((last_kill, held));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, worker) in workers {
        logs.push(worker.stop());
    }

    let mut lost = 0;
    let mut duplicated_results = 0;
    let mut re_executed = 0;
    for id in &ids {
        let detail = db.store.get_execution(*id).await.unwrap();
        if detail.execution.status != ExecutionStatus::Completed {
            lost += 1;
        }
        let mut completed: HashMap<&str, usize> = HashMap::new();
        for run in &detail.node_runs {
            match run.status {
                NodeRunStatus::Completed => {
                    *completed.entry(run.node_id.as_str()).or_default() += 1
                }
                NodeRunStatus::Abandoned | NodeRunStatus::Interrupted => re_executed += 1,
                _ => {}
            }
        }
        duplicated_results += completed.values().filter(|&&n| n > 1).count();
    }
    let mut finishes: HashMap<String, usize> = HashMap::new();
    for log in &logs {
        for line in log
            .lines()
            .filter(|l| l.contains("execution completed") || l.contains("execution failed"))
        {
            if let Some(id) = line
                .split("execution.id=")
                .nth(1)
                .and_then(|s| s.split([' ', '}']).next())
            {
                *finishes.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    let finished_twice = finishes.values().filter(|&&n| n > 1).count();
    let poisoned = db.store.get_execution(poison).await.unwrap().execution;
    // Only an end logged by a worker killed right after its commit can be missing.
    assert!(
        finishes.len() >= EXECUTIONS * 9 / 10,
        "the logs hold too few ends to judge"
    );

    println!(
        "chaos: executions={EXECUTIONS} workers={WORKERS} kills={kills} elapsed={:.1}s \
         lost={lost} finished_twice={finished_twice} node_results_recorded_twice={duplicated_results} \
         node_runs_re_executed_after_a_kill={re_executed} longest_rescue_wait={:.2}s \
         workers_killed_by_the_poison={poison_kills}",
        started.elapsed().as_secs_f64(),
        longest_rescue.as_secs_f64()
    );
    assert!(
        kills >= 3,
        "the run ended before enough kills to mean anything ({kills})"
    );
    assert_eq!(lost, 0, "executions lost (or quarantined though innocent)");
    assert_eq!(poisoned.status, ExecutionStatus::Failed, "{poisoned:?}");
    assert!(
        poisoned
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("quarantined")),
        "{poisoned:?}"
    );
    assert_eq!(finished_twice, 0, "executions finished twice");
    assert_eq!(
        duplicated_results, 0,
        "node runs recorded as completed more than once"
    );
}
