//! Graphs: linear, diamond, skipped branches and conditions, run to the end; chains of quick
//! nodes interleaved within the concurrency.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::testing::conformance::{WAIT, start, worker};
use crate::testing::fixture::{self, run_until_terminal, workflow};
use crate::testing::nodes::{self, Between};
use crate::{ExecutionStatus, NodeRunStatus, Store};

/// The seed's scenario: trigger -> code; both node runs completed, the greeting in the output.
pub async fn hello_workflow_completes_with_its_node_history(store: impl Store + Clone) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({"who": "tests"})).await;
    let claimed = worker(store.clone()).run_once().await.unwrap();
    assert_eq!(claimed, 1);

    let detail = store.get_execution(id).await.unwrap();
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:?}"
    );
    let runs: Vec<(&str, NodeRunStatus)> = detail
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(
        runs,
        vec![
            ("start", NodeRunStatus::Completed),
            ("say_hello", NodeRunStatus::Completed)
        ]
    );
    assert_eq!(detail.node_runs[0].output, Some(json!({"who": "tests"})));
    let stdout = &detail.node_runs[1].output.as_ref().unwrap()["stdout"];
    assert_eq!(stdout, "Hello from workflow!\n");
    assert_eq!(detail.execution.output.as_ref().unwrap()["stdout"], *stdout);
}

/// Independent branches overlap in time, and the join receives both outputs keyed by parent.
pub async fn diamond_runs_branches_concurrently_and_joins_their_outputs(store: impl Store + Clone) {
    fixture::diamond(400).save(&store, &nodes::registry()).await;
    let id = start(&store, "diamond", json!({})).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:?}"
    );

    let run = |node: &str| {
        detail
            .node_runs
            .iter()
            .find(|r| r.node_id == node)
            .unwrap_or_else(|| panic!("no run of {node}"))
    };
    let (a, b, c) = (run("a"), run("b"), run("c"));
    assert!(
        a.started_at < b.finished_at && b.started_at < a.finished_at,
        "a ({} - {}) and b ({} - {}) did not overlap",
        a.started_at,
        a.finished_at,
        b.started_at,
        b.finished_at
    );
    let expected = json!({"a": {"slept_ms": 400}, "b": {"slept_ms": 400}});
    assert_eq!(c.input, Some(expected.clone()));
    assert_eq!(detail.execution.output, Some(expected));
    assert!(c.started_at >= a.finished_at && c.started_at >= b.finished_at);
}

/// Edges on branches not chosen are not followed; nodes behind them are skipped, and a join
/// with one path taken still runs.
pub async fn branches_not_taken_are_skipped_and_joins_still_run(store: impl Store + Clone) {
    workflow("branching")
        .node("pick", "branch", json!({"branch": "yes"}))
        .node("yes", "echo", Value::Null)
        .node("no", "echo", Value::Null)
        .node("after_no", "echo", Value::Null)
        .node("join", "echo", Value::Null)
        .edge("start", "pick")
        .branch_edge("pick", "yes", "yes")
        .branch_edge("pick", "no", "no")
        .edge("no", "after_no")
        .edge("yes", "join")
        .edge("after_no", "join")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "branching", json!({"v": 1})).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:?}"
    );
    let status: HashMap<&str, NodeRunStatus> = detail
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(status["pick"], NodeRunStatus::Completed);
    assert_eq!(status["yes"], NodeRunStatus::Completed);
    assert_eq!(status["no"], NodeRunStatus::Skipped);
    assert_eq!(status["after_no"], NodeRunStatus::Skipped);
    assert_eq!(status["join"], NodeRunStatus::Completed);
    let join = detail
        .node_runs
        .iter()
        .find(|r| r.node_id == "join")
        .unwrap();
    assert_eq!(join.input, Some(json!({"yes": {"v": 1}})));
    let pick = detail
        .node_runs
        .iter()
        .find(|r| r.node_id == "pick")
        .unwrap();
    assert_eq!(pick.branch.as_deref(), Some("yes"));
}

/// The built-in condition node picks `true` or `false` from its input; a path missing from
/// the input fails the execution with an error naming it.
pub async fn condition_node_routes_each_execution_down_one_branch(store: impl Store + Clone) {
    workflow("routing")
        .node(
            "check",
            "condition",
            json!({"path": "order.total", "op": ">", "value": 100}),
        )
        .node("big", "echo", Value::Null)
        .node("small", "echo", Value::Null)
        .edge("start", "check")
        .branch_edge("check", "big", "true")
        .branch_edge("check", "small", "false")
        .save(&store, &nodes::registry())
        .await;
    let big = start(&store, "routing", json!({"order": {"total": 150}})).await;
    let small = start(&store, "routing", json!({"order": {"total": 50}})).await;
    let missing = start(&store, "routing", json!({"order": {}})).await;
    let details =
        run_until_terminal(worker(store.clone()), &store, &[big, small, missing], WAIT).await;
    let ran =
        |detail: &crate::ExecutionDetail| -> std::collections::BTreeMap<String, NodeRunStatus> {
            detail
                .node_runs
                .iter()
                .filter(|r| r.node_id == "big" || r.node_id == "small")
                .map(|r| (r.node_id.clone(), r.status))
                .collect()
        };
    let expect = |big, small| {
        std::collections::BTreeMap::from([("big".to_owned(), big), ("small".to_owned(), small)])
    };
    assert_eq!(
        ran(&details[0]),
        expect(NodeRunStatus::Completed, NodeRunStatus::Skipped)
    );
    assert_eq!(
        ran(&details[1]),
        expect(NodeRunStatus::Skipped, NodeRunStatus::Completed)
    );
    assert_eq!(details[2].execution.status, ExecutionStatus::Failed);
    assert_eq!(
        details[2].execution.error.as_deref(),
        Some("node \"check\" failed: path \"order.total\" not found in the input")
    );
}

/// Templates in a node's config are filled from its input, the execution and upstream
/// outputs, with their JSON types when a template is one expression; a name that is not there
/// fails the node for good, naming where; a rendered config its type refuses fails the same
/// way.
pub async fn templates_fill_configs_from_the_input_and_upstream_outputs(store: impl Store + Clone) {
    let registry = nodes::registry();
    workflow("templated")
        .node("fetch", "echo", Value::Null)
        .node(
            "use",
            "config",
            json!({
                "url": {"$template": "https://api.example.com/customers/{{ input.customer.id }}"},
                "total": {"$template": "{{ nodes.fetch.output.order.total * 2 }}"},
                "items": {"$template": "{{ execution.input.order.items }}"},
                "who": {"$template": "{{ execution.workflow }} {{ execution.id }}"},
                "plain": "{{ not a template }}"
            }),
        )
        .edge("start", "fetch")
        .edge("fetch", "use")
        .save(&store, &registry)
        .await;
    workflow("missing")
        .node(
            "use",
            "config",
            json!({"headers": {"X-Id": {"$template": "{{ input.nope }}"}}}),
        )
        .edge("start", "use")
        .save(&store, &registry)
        .await;
    workflow("refused")
        .node(
            "use",
            "config",
            json!({"reject": {"$template": "{{ input.why }}"}}),
        )
        .edge("start", "use")
        .save(&store, &registry)
        .await;
    let input = json!({"customer": {"id": 42}, "order": {"total": 9.5, "items": ["a", "b"]}});
    let ok = start(&store, "templated", input).await;
    let missing = start(&store, "missing", json!({})).await;
    let refused = start(&store, "refused", json!({"why": "no"})).await;
    let ended =
        run_until_terminal(worker(store.clone()), &store, &[ok, missing, refused], WAIT).await;

    assert_eq!(
        ended[0].execution.status,
        ExecutionStatus::Completed,
        "{:?}",
        ended[0]
    );
    assert_eq!(
        ended[0].execution.output,
        Some(json!({
            "url": "https://api.example.com/customers/42",
            "total": 19.0,
            "items": ["a", "b"],
            "who": format!("templated {ok}"),
            "plain": "{{ not a template }}"
        }))
    );
    for (detail, error) in [
        (
            &ended[1],
            "node \"use\" failed: template at config.headers.X-Id failed: \"input.nope\" is undefined",
        ),
        (
            &ended[2],
            "node \"use\" failed: invalid config once its templates were rendered: rejected: \"no\"",
        ),
    ] {
        assert_eq!(detail.execution.status, ExecutionStatus::Failed);
        assert_eq!(detail.execution.error.as_deref(), Some(error));
        let failed = detail
            .node_runs
            .iter()
            .find(|r| r.node_id == "use")
            .unwrap();
        assert_eq!(failed.status, NodeRunStatus::Failed);
    }
}

/// While an execution writes the step between two quick nodes, its slot runs a node of an
/// execution claimed ahead; it takes a slot back before its next node. More executions are
/// between their nodes than the concurrency, never more nodes run at once than it, and each
/// execution runs each node once, in order.
pub async fn quick_chains_interleave_while_writing_but_never_exceed_the_concurrency(
    store: impl Store + Clone,
) {
    let between = Between::default();
    let registry = nodes::registry().with("between", between.clone());
    workflow("chain")
        .node("enter", "between", json!({"leave": false}))
        .node("leave", "between", json!({"leave": true}))
        .edge("start", "enter")
        .edge("enter", "leave")
        .save(&store, &registry)
        .await;
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(start(&store, "chain", json!({"i": i})).await);
    }
    let details = run_until_terminal(
        worker(store.clone())
            .concurrency(2)
            .node("between", between.clone()),
        &store,
        &ids,
        WAIT,
    )
    .await;
    for detail in &details {
        assert_eq!(detail.execution.status, ExecutionStatus::Completed);
        let nodes: Vec<&str> = detail
            .node_runs
            .iter()
            .map(|r| r.node_id.as_str())
            .collect();
        assert_eq!(
            nodes,
            ["start", "enter", "leave"],
            "{}",
            detail.execution.id
        );
    }
    assert!(
        between.peak_running() <= 2,
        "{} nodes ran at once with 2 slots",
        between.peak_running()
    );
    assert!(
        between.peak_between() > 2,
        "at most {} executions were between their nodes at once: no slot was lent",
        between.peak_between()
    );
}
