//! The `workflow-worker` binary end to end against a real PostgreSQL: migrate, save, start,
//! run, show; and one clear error line for bad input.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use workflow_core::{ListExecutionsParams, Store, StoreError, WorkflowRef};
use workflow_store::testing::TestDatabase;

fn bin(database_url: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workflow-worker"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("SUPABASE_DB_URL")
        .env_remove("WORKFLOW_WORKER_CONCURRENCY")
        .env_remove("WORKFLOW_POLL_INTERVAL")
        .env_remove("RUST_LOG");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

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
async fn hello_workflow_runs_end_to_end_through_the_binary() {
    let db = TestDatabase::create().await;
    let url = db.url.as_str();
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
    let worker = bin(Some(&with_password))
        .args(["run", "--poll-interval", "0.1"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker");
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
    assert!(
        shown.contains("start  trigger  attempt 1  completed"),
        "{shown}"
    );
    assert!(
        shown.contains("say_hello  code  attempt 1  completed"),
        "{shown}"
    );
    assert!(
        shown.contains(r#""stdout":"Hello from workflow!\n""#),
        "{shown}"
    );

    let listed = succeed(url, &["executions", "list", "--status", "completed"]);
    assert!(listed.contains(&id), "{listed}");
    assert!(succeed(url, &["executions", "list", "--status", "failed"]).is_empty());

    // SIGTERM stops the worker cleanly, and its log told the story one line per event.
    let term = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let output = worker.wait_with_output().unwrap();
    assert!(output.status.success(), "worker exit: {:?}", output.status);
    let log = stderr(&output);
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
            r#"node "x": unknown node type "teleport" (known: code, trigger)"#,
        ),
        (
            "malformed",
            r#"{"name": "malformed", "nodes": [{"id": "t", "type": "trigger"}"#,
            "is not a valid workflow definition: EOF while parsing",
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

    let err = fail(url, &["start", "nope"]);
    assert!(err.contains("workflow \"nope\" not found"), "{err}");
    let err = fail(url, &["start", "nope", "--input", "{broken"]);
    assert!(err.contains("invalid JSON"), "{err}");
    let err = fail(url, &["executions", "show", "not-a-uuid"]);
    assert!(err.contains("invalid execution id \"not-a-uuid\""), "{err}");
    let unknown = uuid::Uuid::new_v4();
    let err = fail(url, &["executions", "show", &unknown.to_string()]);
    assert!(
        err.contains(&format!("execution {unknown} not found")),
        "{err}"
    );
    let err = fail(url, &["executions", "list", "--status", "done"]);
    assert!(err.contains("unknown execution status \"done\""), "{err}");
    let err = fail(url, &["run", "--concurrency", "0"]);
    assert!(err.contains("concurrency must be at least 1"), "{err}");

    // SUPABASE_DB_URL is the fallback when DATABASE_URL is not set.
    let output = bin(None)
        .env("SUPABASE_DB_URL", &db.url)
        .args(["executions", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let err = fail(None, &["executions", "list"]);
    assert!(
        err.contains("no database configured: set DATABASE_URL"),
        "{err}"
    );
    let err = fail(
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

    let nothing = db
        .store
        .list_executions(ListExecutionsParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(nothing.is_empty());
}
