//! The web UI over real HTTP on PostgreSQL: pages escape what executions hold, actions need
//! the page's token from the same origin, read-only hides and refuses them, and the UI works
//! mounted under a prefix. Then a real browser (headless Chromium through chromedriver)
//! approves a waiting execution and retries a failed one by clicking, as an operator would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use fantoccini::{ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use workflow_worker_core::http::{self, ApiOptions};
use workflow_worker_core::{
    Client, ExecutionId, ExecutionStatus, StartExecutionParams, Store, WorkflowWorker,
};
use workflow_worker_store::testing::TestDatabase;

mod common;

const WAIT: Duration = Duration::from_secs(60);

/// The approval workflow, and a step that fails until a file exists.
async fn save_workflows(client: &Client, fixed: &std::path::Path) {
    let approval = common::approval_workflow();
    let flaky = json!({
        "name": "nightly_export",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "export", "type": "code",
             "config": {"language": "shell",
                        "code": format!("test -f {} || {{ echo 'bucket missing' >&2; exit 1; }}; echo exported", fixed.display())}}
        ],
        "edges": [{"from": "start", "to": "export"}]
    });
    for definition in [approval, flaky] {
        client
            .save_workflow(serde_json::from_value(definition).unwrap())
            .await
            .unwrap();
    }
}

/// Serves `app` on a loopback port and returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn start(client: &Client, workflow: &str) -> ExecutionId {
    client
        .start(StartExecutionParams::new(workflow, json!({"order": 7})))
        .await
        .unwrap()
        .execution
        .id
}

async fn wait_status(store: &impl Store, id: ExecutionId, status: ExecutionStatus) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = store.get_execution(id).await.unwrap().execution.status;
        if now == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} is still {now}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn worker(
    db: &TestDatabase,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = WorkflowWorker::new(db.store.clone()).poll_interval(Duration::from_millis(50));
    let run = worker.run_until(stop.clone().cancelled_owned());
    (stop, tokio::spawn(async move { run.await.unwrap() }))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wfw-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The value of the cookie a response sets.
fn set_cookie(response: &reqwest::Response) -> String {
    let header = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        header.contains("SameSite=Strict") && header.contains("HttpOnly"),
        "{header}"
    );
    header.split(';').next().unwrap().to_owned()
}

/// The CSRF token of a page's forms.
fn form_token(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("an action form") + 19;
    page[at..at + 32].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_what_they_show_and_actions_need_the_pages_token_from_this_origin() {
    let db = TestDatabase::create().await;
    let client = Client::new(db.store.clone());
    let dir = temp_dir("ui");
    save_workflows(&client, &dir.join("fixed")).await;
    let id = start(&client, "order_approval").await;
    let (stop, running) = worker(&db);
    wait_status(&db.store, id, ExecutionStatus::Waiting).await;
    client
        .signal(workflow_worker_core::SendSignalParams {
            execution_id: id,
            name: "approval".into(),
            payload: json!({"approved": true}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    wait_status(&db.store, id, ExecutionStatus::Completed).await;
    stop.cancel();
    running.await.unwrap();
    let pending = start(&client, "order_approval").await;

    // Mounted under a prefix, as an embedding service would.
    let app = Router::new().nest("/ops", http::router(client.clone(), ApiOptions::default()));
    let base = format!("{}/ops", serve(app).await);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let list = http.get(format!("{base}/executions")).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let csp = list.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let cookie = set_cookie(&list);
    let list = list.text().await.unwrap();
    assert!(
        list.contains(&format!("href=\"/ops/executions/{id}\"")),
        "links keep the prefix"
    );
    assert!(list.contains("href=\"/ops/ui/style.css\""));

    let page = http
        .get(format!("{base}/executions/{id}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the output shows as text"
    );
    assert!(!page.contains("<script>alert"), "no output is markup");
    assert!(page.contains("class=\"node completed\" data-node=\"ship\""));
    assert!(page.contains("class=\"node skipped\" data-node=\"refund\""));

    // Pausing the pending one: the page's token and origin are needed.
    let page = http
        .get(format!("{base}/executions/{pending}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = form_token(&page);
    let pause = format!("{base}/executions/{pending}/pause");
    let host = base
        .trim_start_matches("http://")
        .trim_end_matches("/ops")
        .to_owned();
    let refused = [
        http.post(&pause).form(&[("csrf", token.as_str())]), // no cookie
        http.post(&pause)
            .header("cookie", &cookie)
            .form(&[("csrf", "0".repeat(32).as_str())]),
        http.post(&pause)
            .header("cookie", &cookie)
            .header("origin", "http://evil.example")
            .form(&[("csrf", token.as_str())]),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.text().await.unwrap().contains("reload the page"));
    }
    assert_eq!(
        db.store
            .get_execution(pending)
            .await
            .unwrap()
            .execution
            .status,
        ExecutionStatus::Pending
    );
    let done = http
        .post(&pause)
        .header("cookie", &cookie)
        .header("origin", format!("http://{host}"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()["location"],
        format!("/ops/executions/{pending}?done=paused").as_str()
    );
    assert_eq!(
        db.store
            .get_execution(pending)
            .await
            .unwrap()
            .execution
            .status,
        ExecutionStatus::Paused
    );
    let missing = http
        .get(format!("{base}/executions/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.unwrap().contains("not found"));
    for path in [
        "/workflows",
        "/workflows/order_approval",
        "/schedules",
        "/health",
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    // Read-only: no action is shown, and none is accepted.
    let read_only = ApiOptions {
        read_only: true,
        ..ApiOptions::default()
    };
    let base = serve(http::router(client.clone(), read_only)).await;
    let page = http
        .get(format!("{base}/executions/{pending}"))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&page);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("read-only") && !page.contains("data-action"),
        "{page}"
    );
    let refused = http
        .post(format!("{base}/executions/{pending}/resume"))
        .header("cookie", &cookie)
        .form(&[("csrf", cookie.trim_start_matches("wfw_csrf="))])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An execution's page shows its priority and its concurrency group, and since when it is
/// held back by its workflow's limit.
#[tokio::test]
async fn an_execution_page_shows_its_priority_and_concurrency_group() {
    let db = TestDatabase::create().await;
    let client = Client::new(db.store.clone());
    client
        .save_workflow(
            serde_json::from_value(json!({
                "name": "sync",
                "concurrency": {"limit": 1, "key": "customer"},
                "nodes": [{"id": "start", "type": "trigger"}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for priority in [1, 2] {
        let params =
            StartExecutionParams::new("sync", json!({"customer": "acme-<b>"})).priority(priority);
        ids.push(client.start(params).await.unwrap().execution.id);
    }
    let base = serve(http::router(client.clone(), ApiOptions::default())).await;
    let page = |id: ExecutionId| {
        let base = base.clone();
        async move {
            reqwest::get(format!("{base}/executions/{id}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let admitted = page(ids[0]).await;
    assert!(
        admitted.contains("<dt>Priority</dt><dd>1</dd>"),
        "{admitted}"
    );
    assert!(admitted.contains("acme-&lt;b&gt;"), "the key, as text");
    assert!(!admitted.contains("held back"));
    let held = page(ids[1]).await;
    assert!(held.contains("<dt>Priority</dt><dd>2</dd>"), "{held}");
    assert!(held.contains("held back by its limit since"), "{held}");
}

/// A chromedriver on a free loopback port, killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start chromedriver ({err}): the browser test needs Chromium and its \
                     driver (Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer in {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }
}

impl Drop for Chromedriver {
    /// Kills the browsers it started too, so none outlives a test that failed before closing
    /// its session. (Not through a process group of its own: a browser in a background group
    /// of a terminal stops at its first terminal access.)
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the element `css` has `class` among its classes, the page refreshing itself.
async fn wait_class(browser: &fantoccini::Client, css: &str, class: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(Some(classes)) = element.attr("class").await
            && classes.split_whitespace().any(|c| c == class)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} is not {class} after {WAIT:?}: {}",
            browser.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves a screenshot to `docs/screenshots/NAME.png` when `UPDATE_SCREENSHOTS` is set.
async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// An operator in a browser: opens the executions page, opens the waiting approval, approves
/// it and sees it complete down the approved branch with the HTML output shown as text; opens
/// a failed execution, fixes its cause, retries it and sees it complete; and on a phone-width
/// screen nothing overflows sideways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_approves_and_retries_executions_in_a_browser() {
    let db = TestDatabase::create().await;
    let client = Client::new(db.store.clone());
    let dir = temp_dir("browser");
    let fixed = dir.join("fixed");
    save_workflows(&client, &fixed).await;
    let approval = start(&client, "order_approval").await;
    let failing = start(&client, "nightly_export").await;
    let (stop, running) = worker(&db);
    wait_status(&db.store, approval, ExecutionStatus::Waiting).await;
    wait_status(&db.store, failing, ExecutionStatus::Failed).await;
    let base = serve(http::router(client.clone(), ApiOptions::default())).await;

    let driver = Chromedriver::start().await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,1000"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = tokio::time::timeout(
        WAIT,
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url),
    )
    .await
    .expect("Chromium started within a minute")
    .expect("a headless Chromium session");

    browser.goto(&format!("{base}/executions")).await.unwrap();
    let link = format!("a[href=\"/executions/{approval}\"]");
    browser.find(Locator::Css(&link)).await.unwrap();
    screenshot(&browser, "executions").await;
    browser
        .find(Locator::Css(&link))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_class(&browser, "g[data-node=\"approval\"]", "waiting").await;
    screenshot(&browser, "execution-waiting").await;
    browser
        .find(Locator::Css("button[data-action=\"approve\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_class(&browser, "g[data-node=\"ship\"]", "completed").await;
    wait_class(&browser, "g[data-node=\"refund\"]", "skipped").await;
    wait_class(&browser, "h1 .badge", "completed").await;
    let buttons = browser
        .find_all(Locator::Css("button[data-action]"))
        .await
        .unwrap();
    assert!(
        buttons.is_empty(),
        "a completed execution offers no action: {} buttons",
        buttons.len()
    );
    // What the browser shows as text, read from the page as it rendered it.
    let shown: Vec<String> = serde_json::from_value(
        browser
            .execute(
                "return [...document.querySelectorAll('pre.output')].map(e => e.textContent)",
                vec![],
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        shown
            .iter()
            .any(|text| text.contains("<script>alert(1)</script>")),
        "the HTML output shows as text: {shown:?}"
    );
    let scripts = browser
        .execute("return document.scripts.length", vec![])
        .await
        .unwrap();
    assert_eq!(scripts, json!(1), "only the UI's own script is on the page");
    screenshot(&browser, "execution-completed").await;

    // The failed one: fix the cause, retry, see it complete.
    browser
        .goto(&format!("{base}/executions?status=failed"))
        .await
        .unwrap();
    browser
        .find(Locator::Css(&format!("a[href=\"/executions/{failing}\"]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_class(&browser, "g[data-node=\"export\"]", "failed").await;
    let error = browser.find(Locator::Css("dd.error")).await.unwrap();
    assert!(error.text().await.unwrap().contains("bucket missing"));
    screenshot(&browser, "execution-failed").await;
    std::fs::write(&fixed, "").unwrap();
    browser
        .find(Locator::Css("button[data-action=\"retry\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_class(&browser, "g[data-node=\"export\"]", "completed").await;
    wait_class(&browser, "h1 .badge", "completed").await;
    let notice = browser.find(Locator::Css("p.notice")).await.unwrap();
    assert!(notice.text().await.unwrap().starts_with("Retrying"));

    for (path, name) in [
        ("/workflows/order_approval", "workflow"),
        ("/health", "health"),
    ] {
        browser.goto(&format!("{base}{path}")).await.unwrap();
        screenshot(&browser, name).await;
    }

    // A phone-width screen: pages fit the width, tables scroll inside their box.
    browser.set_window_size(390, 844).await.unwrap();
    for path in [
        "/executions".to_owned(),
        format!("/executions/{approval}"),
        "/health".to_owned(),
    ] {
        browser.goto(&format!("{base}{path}")).await.unwrap();
        let overflow: Value = browser
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{path} overflows by {overflow} px"
        );
    }
    browser
        .goto(&format!("{base}/executions/{approval}"))
        .await
        .unwrap();
    screenshot(&browser, "execution-phone").await;

    browser.close().await.unwrap();
    stop.cancel();
    running.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
