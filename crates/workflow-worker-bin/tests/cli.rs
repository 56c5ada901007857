//! The `workflow-worker` binary end to end against a real PostgreSQL: migrate, save, start,
//! run, show; and one clear error line for bad input.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use workflow_worker_core::{
    ListExecutionsParams, Store, StoreError, WorkflowDefinition, WorkflowRef,
};
use workflow_worker_store::testing::{TestDatabase, TestSqlite};

mod common;

use common::{Worker, bin};

fn run(database_url: Option<&str>, args: &[&str]) -> Output {
    bin(database_url)
        .args(args)
        .output()
        .expect("run workflow-worker")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeed(database_url: &str, args: &[&str]) -> String {
    let output = run(Some(database_url), args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Runs a failing command and returns its error line.
fn fail(database_url: Option<&str>, args: &[&str]) -> String {
    let output = run(database_url, args);
    assert!(
        !output.status.success(),
        "{args:?} should fail: {}",
        stdout(&output)
    );
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

/// Runs a command with bad input and returns its error, checking it is one line.
fn fail_one_line(database_url: Option<&str>, args: &[&str]) -> String {
    let err = fail(database_url, args);
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.starts_with("workflow-worker: error: "),
        "{args:?}: {err}"
    );
    err
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wfw-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_workflow_runs_end_to_end_through_the_binary_on_postgres() {
    let db = TestDatabase::create().await;
    hello_workflow_runs_end_to_end(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_workflow_runs_end_to_end_through_the_binary_on_sqlite() {
    let db = TestSqlite::create().await;
    hello_workflow_runs_end_to_end(&db.url).await;
}

/// The seed's scenario: migrate, save examples/hello.json, start it, run the worker: completed
/// within 3 s, with both node runs and the greeting shown.
async fn hello_workflow_runs_end_to_end(url: &str) {
    assert!(succeed(url, &["migrate"]).starts_with("migrations applied"));
    let hello = examples_dir().join("hello.json");
    let saved = succeed(url, &["workflow", "save", hello.to_str().unwrap()]);
    assert!(
        saved.starts_with("saved workflow \"hello\" version 1"),
        "{saved}"
    );
    let id = succeed(url, &["start", "hello", "--input", r#"{"who": "cli"}"#])
        .trim()
        .to_owned();

    // The server trusts local connections, so a password can be added to check it never
    // shows in the log.
    let with_password = url.replacen("postgres@", "postgres:s3cret-pw@", 1);
    let worker = Worker::spawn(bin(Some(&with_password)).args(["run", "--poll-interval", "0.1"]));
    let started = Instant::now();
    let detail = loop {
        let detail: Value =
            serde_json::from_str(&succeed(url, &["executions", "show", &id, "--json"])).unwrap();
        if detail["status"] == "completed" || started.elapsed() > Duration::from_secs(3) {
            break detail;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        detail["status"], "completed",
        "not completed within 3 s: {detail:#}"
    );

    let shown = succeed(url, &["executions", "show", &id]);
    assert!(shown.contains("status:    completed"), "{shown}");
    assert!(shown.contains("node runs (2):"), "{shown}");
    // The node runs are a table: node, type, attempt, status, duration, output.
    let row = |node: &str| -> Vec<String> {
        shown
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("no row for {node}:\n{shown}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        row("NODE")[..6],
        ["NODE", "TYPE", "ATTEMPT", "STATUS", "DURATION", "OUTPUT"]
    );
    assert_eq!(row("start")[..4], ["start", "trigger", "1", "completed"]);
    assert_eq!(
        row("say_hello")[..4],
        ["say_hello", "code", "1", "completed"]
    );
    assert!(row("say_hello")[4].ends_with('s'), "{shown}");
    assert!(
        shown.contains(r#""stdout":"Hello from workflow!\n""#),
        "{shown}"
    );

    let listed = succeed(url, &["executions", "list", "--status", "completed"]);
    assert!(listed.contains(&id), "{listed}");
    assert!(succeed(url, &["executions", "list", "--status", "failed"]).is_empty());

    // SIGTERM stops the worker cleanly, and its log told the story one line per event.
    let log = worker.stop();
    assert!(
        !log.contains("s3cret-pw"),
        "the password leaked into the log:\n{log}"
    );
    for event in [
        "database ready",
        "worker started",
        "poll_interval=100ms",
        "concurrency=10",
        "execution started",
        "node executing",
        "node completed",
        "execution completed",
        "worker stopped",
    ] {
        assert!(log.contains(event), "log lacks \"{event}\":\n{log}");
    }

    // Signals to a pending execution are kept in its inbox, once per idempotency key.
    let pending = succeed(url, &["start", "hello"]);
    for _ in 0..2 {
        let sent = succeed(
            url,
            &[
                "signal",
                pending.trim(),
                "approval",
                "--payload",
                r#"{"approved": true}"#,
                "--idempotency-key",
                "k1",
            ],
        );
        assert!(
            sent.starts_with("signal ") && sent.contains("\"approval\" sent"),
            "{sent}"
        );
    }
    let shown = succeed(url, &["executions", "show", pending.trim()]);
    assert_eq!(shown.matches("signal:    approval").count(), 1, "{shown}");
    assert!(shown.contains(r#"{"approved":true} (pending)"#), "{shown}");
    assert!(
        shown.contains("status:    pending") && shown.contains("run at:"),
        "{shown}"
    );

    // Schedules: add, list, pause, resume, delete; bad expressions and zones are refused.
    let err = fail(Some(url), &["schedule", "add", "hello", "every day"]);
    assert!(
        err.contains("invalid cron expression \"every day\""),
        "{err}"
    );
    let err = fail(
        Some(url),
        &["schedule", "add", "hello", "0 9 * * *", "--tz", "Mars/Base"],
    );
    assert!(err.contains("unknown time zone \"Mars/Base\""), "{err}");
    let added = succeed(
        url,
        &[
            "schedule",
            "add",
            "hello",
            "0 9 * * Mon-Fri",
            "--tz",
            "Europe/Berlin",
        ],
    );
    let schedule_id = added.split_whitespace().next().unwrap().to_owned();
    assert!(
        added.contains("enabled") && added.contains("Europe/Berlin"),
        "{added}"
    );
    assert!(succeed(url, &["schedule", "pause", &schedule_id]).contains("paused"));
    assert!(succeed(url, &["schedule", "list"]).contains(&schedule_id));
    // Trigger now, paused as it is: one pending execution of hello, the schedule unchanged.
    let triggered = succeed(url, &["schedule", "trigger", &schedule_id]);
    let shown = succeed(url, &["executions", "show", triggered.trim()]);
    assert!(
        shown.contains("status:    pending")
            && shown.contains(&format!("schedule:  {schedule_id} (triggered)")),
        "{shown}"
    );
    assert!(succeed(url, &["schedule", "list"]).contains("paused"));
    assert!(succeed(url, &["schedule", "resume", &schedule_id]).contains("enabled"));
    assert_eq!(
        succeed(url, &["schedule", "delete", &schedule_id]).trim(),
        format!("deleted schedule {schedule_id}")
    );
    assert!(succeed(url, &["schedule", "list"]).is_empty());

    // With the worker stopped, a new execution stays pending until it is cancelled.
    let err = fail(Some(url), &["cancel", &id]);
    assert!(err.contains("already ended (completed)"), "{err}");
    let pending = succeed(url, &["start", "hello", "--timeout", "3600"]);
    let cancelled = succeed(
        url,
        &["cancel", pending.trim(), "--reason", "changed my mind"],
    );
    assert_eq!(
        cancelled.trim(),
        format!("cancelled execution {}", pending.trim())
    );
    let shown = succeed(url, &["executions", "show", pending.trim()]);
    assert!(
        shown.contains("status:    cancelled") && shown.contains("error:     changed my mind"),
        "{shown}"
    );
    assert!(shown.contains("deadline:"), "{shown}");

    // A retry makes the cancelled execution pending again and says who asked; a completed
    // one is refused.
    let retried = succeed(url, &["retry", pending.trim(), "--by", "ops ada"]);
    assert_eq!(
        retried.trim(),
        format!("retrying execution {} on hello v1", pending.trim())
    );
    let shown = succeed(url, &["executions", "show", pending.trim()]);
    assert!(shown.contains("status:    pending"), "{shown}");
    assert!(
        shown.contains("retry 1:   from stopped of cancelled on v1, by ops ada at"),
        "{shown}"
    );
    let err = fail_one_line(Some(url), &["retry", &id]);
    assert!(
        err.contains(
            "is completed: only a failed, timed-out or cancelled execution can be retried"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_are_rejected_at_save_and_nothing_is_written() {
    let db = TestDatabase::create().await;
    let cases = [
        (
            "cycle",
            r#"{"name": "cycle", "nodes": [{"id": "t", "type": "trigger"}, {"id": "a", "type": "code", "config": {"language": "shell", "code": "true"}}, {"id": "b", "type": "code", "config": {"language": "shell", "code": "true"}}],
                "edges": [{"from": "t", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "a"}]}"#,
            r#"invalid workflow: cycle: "a" -> "b" -> "a""#,
        ),
        (
            "duplicate",
            r#"{"name": "duplicate", "nodes": [{"id": "t", "type": "trigger"}, {"id": "t", "type": "trigger"}]}"#,
            r#"node "t": duplicate node id"#,
        ),
        (
            "missing",
            r#"{"name": "missing", "nodes": [{"id": "t", "type": "trigger"}], "edges": [{"from": "t", "to": "nowhere"}]}"#,
            r#"edge "t" -> "nowhere": unknown node "nowhere""#,
        ),
        (
            "unknown_type",
            r#"{"name": "unknown_type", "nodes": [{"id": "t", "type": "trigger"}, {"id": "x", "type": "teleport"}], "edges": [{"from": "t", "to": "x"}]}"#,
            r#"node "x": unknown node type "teleport" (known: code, condition, delay, http, map, subworkflow, trigger, wait_for_signal)"#,
        ),
        (
            "malformed",
            r#"{"name": "malformed", "nodes": [{"id": "t", "type": "trigger"}"#,
            "is not a valid workflow definition: nodes: EOF while parsing a list (line 1, column 62)",
        ),
        (
            "misspelled",
            r#"{"name": "misspelled", "nodes": [{"id": "t", "type": "trigger"}, {"id": "a", "type": "code", "config": {"language": "shell", "code": "true"}, "retries": {"max_attempts": 3}}], "edges": [{"from": "t", "to": "a"}]}"#,
            r#"nodes[1]: unknown key "retries" (did you mean "retry"?)"#,
        ),
        (
            "misspelled_edges",
            r#"{"name": "misspelled_edges", "nodes": [{"id": "t", "type": "trigger"}], "edge": []}"#,
            r#"the definition: unknown key "edge" (did you mean "edges"?)"#,
        ),
    ];
    for (name, json, expected) in cases {
        let file = temp_file(&format!("{name}.json"), json);
        let err = fail(Some(&db.url), &["workflow", "save", file.to_str().unwrap()]);
        assert!(
            err.contains(expected),
            "{name}: expected \"{expected}\" in: {err}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{name}: one line expected: {err}"
        );
        let stored = db.store.get_workflow(&WorkflowRef::Name(name.into())).await;
        assert!(
            matches!(stored, Err(StoreError::NotFound { .. })),
            "{name} was written: {stored:?}"
        );
    }
    // The schema of the format, for editors and frontends; no database needed.
    let schema = bin(Some("postgres://nobody@127.0.0.1:1/none"))
        .args(["workflow", "schema"])
        .output()
        .unwrap();
    assert!(schema.status.success(), "{}", stderr(&schema));
    let schema: Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let missing_file = fail(Some(&db.url), &["workflow", "save", "/no/such/file.json"]);
    assert!(
        missing_file.contains("cannot read /no/such/file.json"),
        "{missing_file}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_a_failing_exit_code() {
    let db = TestDatabase::create().await;
    let url = Some(db.url.as_str());

    let err = fail_one_line(url, &["start", "nope"]);
    assert!(err.contains("workflow \"nope\" not found"), "{err}");
    let err = fail_one_line(url, &["start", "nope", "--input", "{broken"]);
    assert!(err.contains("invalid JSON"), "{err}");
    let err = fail_one_line(url, &["executions", "show", "not-a-uuid"]);
    assert!(err.contains("invalid execution id \"not-a-uuid\""), "{err}");
    let unknown = uuid::Uuid::new_v4();
    let err = fail_one_line(url, &["executions", "show", &unknown.to_string()]);
    assert!(
        err.contains(&format!("execution {unknown} not found")),
        "{err}"
    );
    let err = fail_one_line(url, &["signal", &unknown.to_string(), "approval"]);
    assert!(
        err.contains(&format!("execution {unknown} not found")),
        "{err}"
    );
    let err = fail_one_line(
        url,
        &["signal", &unknown.to_string(), "approval", "--payload", "{"],
    );
    assert!(err.contains("invalid JSON"), "{err}");
    let err = fail_one_line(url, &["schedule", "add", "nope", "* * * * *"]);
    assert!(err.contains("workflow \"nope\" not found"), "{err}");
    let err = fail_one_line(url, &["schedule", "pause", "abc"]);
    assert!(err.contains("invalid schedule id \"abc\""), "{err}");
    let err = fail_one_line(url, &["schedule", "resume", &unknown.to_string()]);
    assert!(
        err.contains(&format!("schedule {unknown} not found")),
        "{err}"
    );
    let err = fail_one_line(url, &["schedule", "trigger", &unknown.to_string()]);
    assert!(
        err.contains(&format!("schedule {unknown} not found")),
        "{err}"
    );
    let err = fail_one_line(url, &["cancel", &unknown.to_string()]);
    assert!(
        err.contains(&format!("execution {unknown} not found")),
        "{err}"
    );
    let err = fail_one_line(url, &["retry", "nope"]);
    assert!(err.contains("invalid execution id \"nope\""), "{err}");
    let err = fail_one_line(
        url,
        &["retry", &unknown.to_string(), "--from-start", "--from", "a"],
    );
    assert!(err.contains("cannot be used with"), "{err}");
    let err = fail_one_line(url, &["cancel", "nope"]);
    assert!(err.contains("invalid execution id \"nope\""), "{err}");
    let err = fail_one_line(url, &["start", "nope", "--timeout", "soon"]);
    assert!(err.contains("\"soon\" is not a duration"), "{err}");
    let err = fail_one_line(url, &["executions", "list", "--status", "done"]);
    assert!(err.contains("unknown execution status \"done\""), "{err}");
    let err = fail_one_line(url, &["run", "--concurrency", "0"]);
    assert!(err.contains("concurrency (0) must be at least 1"), "{err}");
    let err = fail_one_line(url, &["cancel"]);
    assert!(
        err.contains("required arguments were not provided: <ID>"),
        "{err}"
    );
    let err = fail_one_line(url, &["signal", &unknown.to_string()]);
    assert!(err.contains("<NAME>"), "{err}");
    let err = fail_one_line(url, &["prune"]);
    assert!(err.contains("--older-than"), "{err}");
    let err = fail_one_line(url, &["prune", "--older-than", "banana"]);
    assert!(err.contains("\"banana\" is not a duration"), "{err}");
    let err = fail_one_line(url, &["prune", "--older-than", "1d", "--batch-size", "0"]);
    assert!(err.contains("--batch-size must be at least 1"), "{err}");
    for busy in ["0", "101"] {
        let err = fail_one_line(
            url,
            &["prune", "--older-than", "1d", "--busy-percent", busy],
        );
        assert!(
            err.contains(&format!("invalid value '{busy}' for '--busy-percent")),
            "{err}"
        );
    }
    let err = fail_one_line(url, &["run", "--metrics-addr", "localhost"]);
    assert!(
        err.contains("invalid value 'localhost' for '--metrics-addr"),
        "{err}"
    );
    let err = fail_one_line(url, &["frobnicate"]);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );

    // SUPABASE_DB_URL is the fallback when DATABASE_URL is not set.
    let output = bin(None)
        .env("SUPABASE_DB_URL", &db.url)
        .args(["executions", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let err = fail_one_line(
        Some("postgres://postgres:hunter2@127.0.0.1:1/nothing"),
        &["executions", "list"],
    );
    assert!(
        err.contains("cannot open database postgres://postgres:***@127.0.0.1:1/nothing"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
    let err = fail(Some("mysql://root@localhost/db"), &["executions", "list"]);
    assert!(err.contains("unsupported database URL"), "{err}");
    // A password with characters a URL must escape: recognisable, redacted, and told why.
    let err = fail_one_line(
        Some("postgresql://postgres.abcd:p@ss#w0rd@db.example:6543/postgres"),
        &["executions", "list"],
    );
    assert!(
        err.contains("postgresql://postgres.abcd:***@db.example:6543/postgres"),
        "{err}"
    );
    assert!(err.contains("percent-encoded"), "{err}");
    assert!(!err.contains("w0rd"), "the password leaked: {err}");

    let nothing = db
        .store
        .list_executions(ListExecutionsParams {
            limit: 10,
            before: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(nothing.is_empty());
}

/// `prune` deletes ended executions older than the cut-off and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_ended_executions_and_keeps_the_rest() {
    let db = TestSqlite::create().await;
    let url = db.url.as_str();
    let hello = examples_dir().join("hello.json");
    succeed(url, &["workflow", "save", hello.to_str().unwrap()]);
    let ended = succeed(url, &["start", "hello"]).trim().to_owned();
    let pending = succeed(url, &["start", "hello"]).trim().to_owned();
    succeed(url, &["cancel", &ended]);

    let kept = succeed(url, &["prune", "--older-than", "1h"]);
    assert_eq!(
        kept.trim(),
        "pruned 0 executions that ended more than 1h ago"
    );
    std::thread::sleep(Duration::from_millis(20));
    let pruned = succeed(
        url,
        &[
            "prune",
            "--older-than",
            "10ms",
            "--batch-size",
            "1",
            "--busy-percent",
            "50",
        ],
    );
    assert_eq!(
        pruned.trim(),
        "pruned 1 executions that ended more than 10ms ago"
    );
    let listed = succeed(url, &["executions", "list"]);
    assert!(listed.contains(&pending), "{listed}");
    assert!(!listed.contains(&ended), "{listed}");
}

/// `executions cancel|retry|delete` act on what the filter matches, say how many, count with
/// `--dry-run`, and refuse a missing filter or a bad one in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_by_filter_count_cancel_retry_and_delete() {
    let db = TestSqlite::create().await;
    let url = db.url.as_str();
    let hello = examples_dir().join("hello.json");
    succeed(url, &["workflow", "save", hello.to_str().unwrap()]);
    let ids: Vec<String> = (0..3)
        .map(|_| succeed(url, &["start", "hello"]).trim().to_owned())
        .collect();
    let bulk = |args: &[&str]| succeed(url, &[&["executions"][..], args].concat());

    assert_eq!(
        bulk(&["cancel", "--workflow", "hello", "--dry-run"]).trim(),
        "3 executions match (dry run: nothing changed)"
    );
    let shown = succeed(url, &["executions", "show", &ids[0]]);
    assert!(shown.contains("status:    pending"), "{shown}");
    assert_eq!(
        bulk(&["cancel", "--status", "pending", "--reason", "outage"]).trim(),
        "cancelled 3 of 3 matching executions"
    );
    assert_eq!(
        bulk(&["cancel", "--status", "pending"]).trim(),
        "cancelled 0 of 0 matching executions"
    );
    let before = "2999-01-01T00:00:00Z";
    assert_eq!(
        bulk(&[
            "retry", "--error", "OUTAGE", "--before", before, "--by", "ops"
        ])
        .trim(),
        "retried 3 of 3 matching executions"
    );
    let shown = succeed(url, &["executions", "show", &ids[1]]);
    assert!(
        shown.contains("status:    pending") && shown.contains("by ops"),
        "{shown}"
    );
    assert_eq!(
        bulk(&["delete", "--all"]).trim(),
        "deleted 0 of 3 matching executions",
        "pending executions are never deleted"
    );
    bulk(&["cancel", "--all"]);
    assert_eq!(
        bulk(&["delete", "--status", "cancelled", "--status", "failed"]).trim(),
        "deleted 3 of 3 matching executions"
    );
    assert_eq!(succeed(url, &["executions", "list"]).trim(), "");

    let err = fail_one_line(Some(url), &["executions", "delete"]);
    assert!(err.contains("no filter given"), "{err}");
    let err = fail_one_line(
        Some(url),
        &["executions", "delete", "--all", "--status", "failed"],
    );
    assert!(
        err.contains("--all cannot be combined with a filter"),
        "{err}"
    );
    let err = fail_one_line(Some(url), &["executions", "retry", "--before", "yesterday"]);
    assert!(
        err.contains("\"yesterday\" is not an RFC 3339 time"),
        "{err}"
    );
    let err = fail_one_line(Some(url), &["executions", "cancel", "--workflow", "nope"]);
    assert!(err.contains("workflow \"nope\" not found"), "{err}");
    let err = fail_one_line(Some(url), &["executions", "cancel", "--status", "sleeping"]);
    assert!(err.contains("sleeping"), "{err}");
}

/// `executions pause|resume|cancel|retry ID` (and top-level `pause`/`resume`) act on one
/// execution, say what they did, and refuse an id given with a filter, or an ended execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_execution_is_paused_resumed_cancelled_and_retried_by_id() {
    let db = TestSqlite::create().await;
    let url = db.url.as_str();
    let hello = examples_dir().join("hello.json");
    succeed(url, &["workflow", "save", hello.to_str().unwrap()]);
    let id = succeed(url, &["start", "hello"]).trim().to_owned();
    let id = id.as_str();

    assert_eq!(
        succeed(url, &["executions", "pause", id]).trim(),
        format!("paused execution {id}")
    );
    let shown = succeed(url, &["executions", "show", id]);
    assert!(
        shown.contains("status:    paused")
            && shown.contains(&format!(
                "no worker runs it until `workflow-worker executions resume {id}`"
            )),
        "{shown}"
    );
    let listed = succeed(url, &["executions", "list", "--status", "paused"]);
    assert!(listed.contains(id), "{listed}");
    assert_eq!(
        succeed(url, &["resume", id]).trim(),
        format!("resumed execution {id}")
    );
    assert_eq!(
        succeed(url, &["executions", "resume", id]).trim(),
        format!("execution {id} is pending, not paused: nothing to resume")
    );
    assert_eq!(
        succeed(url, &["pause", id]).trim(),
        format!("paused execution {id}")
    );
    assert_eq!(
        succeed(url, &["executions", "cancel", id, "--reason", "no"]).trim(),
        format!("cancelled execution {id}")
    );
    assert_eq!(
        succeed(url, &["executions", "retry", id, "--by", "ops"]).trim(),
        format!("retrying execution {id} on hello v1")
    );
    let err = fail_one_line(
        Some(url),
        &["executions", "retry", id, "--status", "failed"],
    );
    assert!(err.contains("cannot be used with"), "{err}");
    succeed(url, &["cancel", id]);
    let err = fail_one_line(Some(url), &["executions", "pause", id]);
    assert!(
        err.contains(&format!("execution {id} already ended (cancelled)")),
        "{err}"
    );
    let err = fail_one_line(Some(url), &["resume", "nope"]);
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_a_key_and_signal_with_start_find_the_execution_holding_it() {
    let db = TestSqlite::create().await;
    let url = db.url.as_str();
    let hello = examples_dir().join("hello.json");
    succeed(url, &["workflow", "save", hello.to_str().unwrap()]);

    let first = run(Some(url), &["start", "hello", "--key", "order-7"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let id = stdout(&first).trim().to_owned();
    assert_eq!(stderr(&first), "");
    // Again: the same id, and a note on stderr that none was started.
    let again = run(
        Some(url),
        &["start", "hello", "--key", "order-7", "--priority", "5"],
    );
    assert_eq!(stdout(&again).trim(), id);
    assert_eq!(
        stderr(&again).trim(),
        format!("execution {id} (pending) holds key \"order-7\": none started")
    );
    let shown = succeed(url, &["executions", "show", &id]);
    assert!(shown.contains("  key:       order-7"), "{shown}");

    let sent = succeed(
        url,
        &[
            "signal-with-start",
            "hello",
            "--key",
            "order-7",
            "--signal",
            "note",
            "--payload",
            r#"{"n": 1}"#,
        ],
    );
    assert!(sent.contains("holds key \"order-7\""), "{sent}");
    assert!(
        sent.contains(&format!("\"note\" sent to execution {id}")),
        "{sent}"
    );
    let fresh = succeed(
        url,
        &[
            "signal-with-start",
            "hello",
            "--key",
            "order-8",
            "--signal",
            "note",
            "--input",
            r#"{"who": "signal"}"#,
        ],
    );
    assert!(fresh.starts_with("started execution "), "{fresh}");

    succeed(url, &["cancel", &id]);
    assert_eq!(
        succeed(url, &["start", "hello", "--key", "order-7"]).trim(),
        id
    );
    let renewed = succeed(
        url,
        &[
            "start",
            "hello",
            "--key",
            "order-7",
            "--key-reuse",
            "after_end",
        ],
    );
    assert_ne!(renewed.trim(), id);

    let err = fail_one_line(
        Some(url),
        &["signal-with-start", "hello", "--signal", "note"],
    );
    assert!(err.contains("needs --key"), "{err}");
    let err = fail_one_line(Some(url), &["start", "hello", "--key", ""]);
    assert!(
        err.contains("a business key must be 1 to 512 characters, not 0"),
        "{err}"
    );
    let err = fail(
        Some(url),
        &["start", "hello", "--key", "k", "--key-reuse", "twice"],
    );
    assert!(err.contains("unknown key reuse \"twice\""), "{err}");
}

#[test]
fn without_a_database_url_the_embedded_sqlite_file_is_used() {
    let dir = std::env::temp_dir().join(format!("wfw-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let in_dir = |args: &[&str]| {
        let output = bin(None).current_dir(&dir).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    let hello = examples_dir().join("hello.json");
    in_dir(&["workflow", "save", hello.to_str().unwrap()]);
    let id = in_dir(&["start", "hello"]);
    assert!(dir.join("workflow-worker.db").exists());
    assert!(in_dir(&["executions", "list"]).contains(id.trim()));

    // The worker says which store it uses before it starts.
    let worker = Worker::spawn(
        bin(None)
            .current_dir(&dir)
            .args(["run", "--poll-interval", "0.1"]),
    );
    let started = Instant::now();
    while !in_dir(&["executions", "show", id.trim()]).contains("status:    completed") {
        assert!(started.elapsed() < Duration::from_secs(30), "not completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = worker.stop();
    assert!(
        log.contains(
            "no DATABASE_URL set: using the embedded SQLite store in the working directory"
        ) && log.contains("sqlite://workflow-worker.db"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_sqlite_paths_fail_at_start_with_a_clear_error() {
    let err = fail(Some("sqlite:///no/such/dir/workflows.db"), &["migrate"]);
    assert!(
        err.contains("cannot open database sqlite:///no/such/dir/workflows.db")
            && err.contains("unable to open database file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let corrupt = temp_file(
        "corrupt.db",
        &"this is not an SQLite database\n".repeat(200),
    );
    let url = format!("sqlite://{}", corrupt.display());
    let err = fail(Some(&url), &["run"]);
    assert!(
        err.contains(&format!("cannot open database {url}"))
            && err.contains("file is not a database"),
        "{err}"
    );
    assert!(!err.contains("worker started"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_one_sqlite_file() {
    let db = TestSqlite::create().await;
    let definition: workflow_worker_core::WorkflowDefinition =
        serde_json::from_value(serde_json::json!({
            "name": "shared",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "work", "type": "code", "config": {"language": "shell", "code": "echo done"}}
            ],
            "edges": [{"from": "start", "to": "work"}]
        }))
        .unwrap();
    let graph = workflow_worker_core::WorkflowGraph::validate(
        definition,
        &workflow_worker_core::NodeRegistry::builtin(),
    )
    .unwrap();
    db.store.save_workflow(&graph).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..300 {
        let params =
            workflow_worker_core::StartExecutionParams::new("shared", serde_json::json!({"i": i}));
        ids.push(db.store.start_execution(params).await.unwrap().execution.id);
    }

    let workers: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|name| {
            Worker::spawn(bin(Some(&db.url)).args([
                "run",
                "--poll-interval",
                "0.05",
                "--concurrency",
                "8",
                "--worker-id",
                name,
            ]))
        })
        .collect();
    let started = Instant::now();
    loop {
        let open = db
            .store
            .list_executions(ListExecutionsParams {
                limit: 1000,
                before: None,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|e| !e.status.is_terminal())
            .count();
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{open} executions still open after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for worker in workers {
        let log = worker.stop();
        assert!(!log.contains("lease lost"), "{log}");
    }

    let mut owners = std::collections::HashSet::new();
    for id in ids {
        let detail = db.store.get_execution(id).await.unwrap();
        assert_eq!(
            detail.execution.status,
            workflow_worker_core::ExecutionStatus::Completed,
            "{detail:?}"
        );
        let nodes: Vec<(&str, i32)> = detail
            .node_runs
            .iter()
            .map(|r| (r.node_id.as_str(), r.attempt))
            .collect();
        assert_eq!(
            nodes,
            vec![("start", 1), ("work", 1)],
            "each node run recorded once"
        );
        owners.extend(detail.node_runs.iter().filter_map(|r| r.worker_id.clone()));
    }
    assert_eq!(owners.len(), 2, "both workers took part: {owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_execution_in_its_span() {
    let db = TestSqlite::create().await;
    let url = db.url.as_str();
    let hello = examples_dir().join("hello.json");
    succeed(url, &["workflow", "save", hello.to_str().unwrap()]);
    let id = succeed(url, &["start", "hello"]).trim().to_owned();
    let worker = Worker::spawn(bin(Some(url)).args([
        "--log-format",
        "json",
        "run",
        "--poll-interval",
        "0.1",
    ]));
    let started = Instant::now();
    while !succeed(url, &["executions", "show", &id]).contains("status:    completed") {
        assert!(started.elapsed() < Duration::from_secs(30), "not completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = worker.stop();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let completed = lines
        .iter()
        .find(|line| line["fields"]["message"] == "execution completed")
        .expect("an execution completed line");
    let span = &completed["spans"][0];
    assert_eq!(span["execution.id"], id.as_str(), "{completed}");
    assert_eq!(span["workflow"], "hello");
    assert!(span["worker.id"].is_string());
    let node = lines
        .iter()
        .find(|line| line["fields"]["message"] == "node completed")
        .expect("a node completed line");
    assert!(node["fields"]["node.id"].is_string(), "{node}");
}

/// The worker's options before `run` are applied, and refused (one line, exit 2) on other
/// commands instead of being ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_flags_before_the_command_are_applied_or_refused() {
    let db = TestSqlite::create().await;
    let url = db.url.as_str();
    let worker_id = format!("before-run-{}", uuid::Uuid::new_v4().simple());
    let worker = Worker::spawn(bin(Some(url)).args([
        "--concurrency",
        "5",
        "--worker-id",
        &worker_id,
        "--poll-interval",
        "250ms",
        "run",
    ]));
    let log = common::wait_for("the worker to start", Duration::from_secs(60), || {
        let log = worker.log();
        async move { log.contains("worker started").then_some(log) }
    })
    .await;
    worker.stop();
    assert!(log.contains(&format!("worker.id={worker_id}")), "{log}");
    assert!(log.contains("concurrency=5"), "{log}");
    assert!(log.contains("poll_interval=250ms"), "{log}");

    let output = run(Some(url), &["--concurrency", "5", "executions", "list"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("--concurrency is an option of `workflow-worker run`, not of `executions`"),
        "{err}"
    );
    let err = fail_one_line(Some(url), &["executions", "list", "--lease-duration", "5s"]);
    assert!(
        err.contains("--lease-duration is an option of `workflow-worker run`"),
        "{err}"
    );
    // Environment variables configure every command's process alike and are not refused.
    let output = bin(Some(url))
        .env("WORKFLOW_WORKER_CONCURRENCY", "3")
        .args(["executions", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

/// Read-only commands never migrate and never create a file: a missing SQLite file stays
/// missing, and a database without the current schema gets a message naming `migrate`.
/// `workflow list` shows each saved workflow with its latest version; `workflow show` prints
/// a version's definition as JSON that reads back as the definition saved, by name or id, the
/// latest by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_listed_and_shown_at_any_version() {
    let db = TestDatabase::create().await;
    let url = db.url.as_str();
    assert!(succeed(url, &["workflow", "list"]).starts_with("no workflows saved yet"));
    let hello = examples_dir().join("hello.json");
    succeed(url, &["workflow", "save", hello.to_str().unwrap()]);
    let mut second: Value =
        serde_json::from_str(&std::fs::read_to_string(&hello).unwrap()).unwrap();
    second["description"] = json!("the second version");
    let second_file = temp_file("hello-v2.json", &second.to_string());
    succeed(url, &["workflow", "save", second_file.to_str().unwrap()]);

    let listed = succeed(url, &["workflow", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert!(lines[0].starts_with("hello  v2  "), "{listed}");
    let id = lines[0].split_whitespace().nth(2).unwrap().to_owned();

    let definition = |shown: &str| -> Value {
        let (header, json) = shown.split_once('\n').unwrap();
        assert!(header.starts_with("workflow \"hello\" ("), "{header}");
        serde_json::from_str(json).unwrap()
    };
    let latest = succeed(url, &["workflow", "show", "hello"]);
    assert!(latest.contains("version 2 of 2"), "{latest}");
    assert_eq!(definition(&latest)["description"], "the second version");
    let first = succeed(url, &["workflow", "show", &id, "--version", "1"]);
    assert!(first.contains("version 1 of 2"), "{first}");
    let saved = WorkflowDefinition::from_json(&std::fs::read_to_string(&hello).unwrap()).unwrap();
    let shown = WorkflowDefinition::from_json(&definition(&first).to_string()).unwrap();
    assert_eq!(shown, saved);

    let err = fail_one_line(Some(url), &["workflow", "show", "hello", "--version", "3"]);
    assert!(err.contains("not found"), "{err}");
    let err = fail_one_line(Some(url), &["workflow", "show", "nope"]);
    assert!(
        err.contains("workflow \"nope\" not found") || err.contains("nope"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_do_not_migrate_or_create_databases() {
    let dir = std::env::temp_dir().join(format!("wfw-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("absent.db");
    let url = format!("sqlite://{}", file.display());
    for args in [
        &["executions", "list"][..],
        &["executions", "show", &uuid::Uuid::new_v4().to_string()],
        &["schedule", "list"],
    ] {
        let err = fail_one_line(Some(&url), args);
        assert!(
            err.contains(&format!(
                "no database at {url}: run `workflow-worker migrate`"
            )),
            "{args:?}: {err}"
        );
        assert!(!file.exists(), "{args:?} created {}", file.display());
    }
    // Commands that write create the embedded file, as `migrate` would.
    let hello = examples_dir().join("hello.json");
    succeed(&url, &["workflow", "save", hello.to_str().unwrap()]);
    assert!(file.exists());
    succeed(&url, &["executions", "list"]);

    let empty = TestDatabase::create_empty().await;
    let err = fail_one_line(Some(&empty.url), &["executions", "list"]);
    assert!(
        err.contains("has no workflow-worker schema")
            && err.contains("run `workflow-worker migrate` first"),
        "{err}"
    );
    let tables: i64 =
        sqlx::query_scalar("select count(*) from pg_tables where schemaname = 'public'")
            .fetch_one(empty.store.pool())
            .await
            .unwrap();
    assert_eq!(tables, 0, "a read-only command created tables");
    let err = fail_one_line(Some(&empty.url), &["start", "hello"]);
    assert!(err.contains("run `workflow-worker migrate` first"), "{err}");
    assert!(succeed(&empty.url, &["migrate"]).contains("migrations applied"));
    assert!(succeed(&empty.url, &["executions", "list"]).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An execution whose workflow uses a node type the running workers lack waits, and
/// `executions show` says so instead of leaving the operator to guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_show_says_when_no_live_worker_can_run_an_execution() {
    use workflow_worker_core::testing::{fixture::workflow, nodes};

    let db = TestDatabase::create().await;
    // Saved by an application whose own worker has the `echo` type; the binary has not.
    workflow("custom")
        .node("special", "echo", serde_json::Value::Null)
        .edge("start", "special")
        .save(&db.store, &nodes::registry())
        .await;
    let id = db
        .store
        .start_execution(workflow_worker_core::StartExecutionParams::new(
            "custom",
            serde_json::json!({}),
        ))
        .await
        .unwrap()
        .execution
        .id
        .to_string();
    let shown = succeed(&db.url, &["executions", "show", &id]);
    assert!(
        shown.contains("run by:    no live worker (it needs node types echo, trigger)"),
        "{shown}"
    );
    let worker_id = format!("plain-{}", uuid::Uuid::new_v4().simple());
    let worker = Worker::run(
        &db.url,
        &["--poll-interval", "0.1", "--worker-id", &worker_id],
    );
    common::wait_for("the worker's presence", Duration::from_secs(60), || async {
        let live = db.store.live_workers().await.ok()?;
        live.iter().any(|w| w.id == worker_id).then_some(())
    })
    .await;
    let shown = succeed(&db.url, &["executions", "show", &id]);
    worker.stop();
    assert!(shown.contains("status:    pending"), "{shown}");
    assert!(
        shown.contains(
            "run by:    no live worker has all of its node types (echo, trigger); it waits for one that does"
        ),
        "{shown}"
    );
    // A clean stop removes the worker's presence.
    assert!(db.store.live_workers().await.unwrap().is_empty());
}
