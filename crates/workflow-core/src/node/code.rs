//! The `code` node: runs a Python or shell snippet as a subprocess.
//!
//! The node input is written to the process's stdin as JSON; stdout and stderr are captured
//! into the node's output (`stdout`, `stderr`, `exit_code`, and `result` when stdout is a JSON
//! document). A non-zero exit fails the attempt (retryable) with stderr in the error. Each
//! stream holds at most `max_output_bytes`.
//!
//! On Unix the process runs in a process group of its own, which holds everything it starts
//! (a `sleep` in a shell snippet, a Python `subprocess`). A Ctrl-C at the worker's terminal
//! therefore reaches the worker alone, which lets running nodes finish within its shutdown
//! grace; and the whole group is killed when the attempt times out, is cancelled, or is
//! stopped past the grace period, and when the snippet exits leaving processes behind. No
//! process of a node outlives its attempt. It starts with an empty environment plus `PATH`, `HOME`,
//! `LANG`, `TZ`, `TMPDIR`, the `WORKFLOW_*` variables and the node's `env`: it never inherits
//! the worker's database credentials.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};

pub(crate) const CODE_TYPE: &str = "code";

/// Timeout of a code node whose definition sets none.
pub const DEFAULT_CODE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default cap on each of stdout and stderr of a code node: 1 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Variables passed through from the worker's environment; nothing else is inherited.
const PASSED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

/// How much of stderr a failure message quotes.
const ERROR_STDERR_CHARS: usize = 2000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeConfig {
    language: Language,
    code: String,
    #[serde(default)]
    max_output_bytes: Option<usize>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Language {
    Python,
    #[serde(alias = "sh", alias = "bash")]
    Shell,
}

/// Runs `config.code` with Python (`"language": "python"`) or `sh` (`"language": "shell"`).
///
/// ```json
/// {"id": "greet", "type": "code", "timeout": 10,
///  "config": {"language": "python", "code": "print('Hello from workflow!')"}}
/// ```
#[derive(Debug, Clone)]
pub struct CodeNode {
    python: String,
    shell: String,
}

impl Default for CodeNode {
    fn default() -> Self {
        Self {
            python: "python3".into(),
            shell: "sh".into(),
        }
    }
}

impl CodeNode {
    /// Uses `program` to run Python snippets. Defaults to `python3` on `PATH`.
    #[must_use]
    pub fn python(mut self, program: impl Into<String>) -> Self {
        self.python = program.into();
        self
    }

    /// Uses `program` to run shell snippets. Defaults to `sh` on `PATH`.
    #[must_use]
    pub fn shell(mut self, program: impl Into<String>) -> Self {
        self.shell = program.into();
        self
    }
}

fn parse_config(config: &Value) -> Result<CodeConfig, serde_json::Error> {
    CodeConfig::deserialize(config)
}

#[async_trait]
impl NodeExecutor for CodeNode {
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        if config.is_null() {
            return Err(
                r#"config is required: {"language": "python" or "shell", "code": "..."}"#.into(),
            );
        }
        let config = parse_config(config)?;
        if config.code.trim().is_empty() {
            return Err("code must not be empty".into());
        }
        if config.max_output_bytes == Some(0) {
            return Err("max_output_bytes must be at least 1".into());
        }
        Ok(())
    }

    fn default_timeout(&self) -> Option<Duration> {
        Some(DEFAULT_CODE_TIMEOUT)
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let config = parse_config(&ctx.config).fatal()?;
        let cap = config.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
        let program = match config.language {
            Language::Python => &self.python,
            Language::Shell => &self.shell,
        };
        let mut command = Command::new(program);
        command
            .arg("-c")
            .arg(&config.code)
            .env_clear()
            .envs(
                PASSED_ENV
                    .iter()
                    .filter_map(|key| Some((key, std::env::var_os(key)?))),
            )
            .env("WORKFLOW_EXECUTION_ID", ctx.execution_id.to_string())
            .env("WORKFLOW_NODE_ID", &ctx.node_id)
            .env("WORKFLOW_ATTEMPT", ctx.attempt.to_string())
            .env("WORKFLOW_IDEMPOTENCY_KEY", &ctx.idempotency_key)
            .envs(&config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| NodeError::fatal(format!("cannot start {program}: {e}")))?;
        // Killed when this attempt's future ends or is dropped (timeout, cancel, shutdown).
        let group = ProcessGroup::of(&child);

        let input = serde_json::to_vec(&ctx.input).fatal()?;
        let mut stdin = child.stdin.take().ok_or("stdin not captured").fatal()?;
        let stdout = child.stdout.take().ok_or("stdout not captured").fatal()?;
        let stderr = child.stderr.take().ok_or("stderr not captured").fatal()?;
        let write_stdin = async move {
            // A snippet that never reads stdin closes it early: that is not an error.
            match stdin.write_all(&input).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
                _ => Ok(()),
            }
        };
        let streams = async {
            tokio::try_join!(
                write_stdin,
                read_capped(stdout, cap, "stdout"),
                read_capped(stderr, cap, "stderr"),
            )
        };
        // Once the snippet's own process exits, what it left running goes too: it would
        // otherwise hold the pipes open and keep the attempt waiting.
        let exited = async {
            let status = child.wait().await;
            group.kill();
            status
        };
        let (streams, status) = tokio::join!(streams, exited);
        let (stdout, stderr) = match streams {
            Ok(((), stdout, stderr)) => (stdout, stderr),
            Err(message) => return Err(NodeError::fatal(message)),
        };
        let status = status.retryable()?;
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_owned(),
            };
            let detail = tail(stderr.trim(), ERROR_STDERR_CHARS);
            return Err(NodeError::retryable(if detail.is_empty() {
                format!("{program} failed with {how}")
            } else {
                format!("{program} failed with {how}: {detail}")
            }));
        }
        let mut output = json!({
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": status.code(),
        });
        if let Ok(result) = serde_json::from_str::<Value>(&stdout) {
            output["result"] = result;
        }
        Ok(NodeOutcome::complete(output))
    }
}

/// The process group a code node's process leads; dropping it kills every process in it.
#[derive(Debug)]
struct ProcessGroup {
    #[cfg(unix)]
    id: Option<nix::unistd::Pid>,
    /// Killed once already: after that the id may name another group one day.
    killed: std::sync::atomic::AtomicBool,
}

impl ProcessGroup {
    fn of(child: &tokio::process::Child) -> Self {
        #[cfg(unix)]
        {
            Self {
                id: child
                    .id()
                    .and_then(|id| i32::try_from(id).ok())
                    .map(nix::unistd::Pid::from_raw),
                killed: false.into(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = child;
            Self {
                killed: false.into(),
            }
        }
    }

    /// Sends SIGKILL to the group; a group that is gone already is no error.
    fn kill(&self) {
        if self.killed.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        #[cfg(unix)]
        if let Some(id) = self.id {
            let _ = nix::sys::signal::killpg(id, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn read_capped(
    stream: impl AsyncRead + Unpin,
    cap: usize,
    name: &str,
) -> Result<Vec<u8>, String> {
    let mut buffer = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    stream
        .take(limit)
        .read_to_end(&mut buffer)
        .await
        .map_err(|e| format!("reading {name}: {e}"))?;
    if buffer.len() > cap {
        return Err(format!("{name} exceeded the output cap of {cap} bytes"));
    }
    Ok(buffer)
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    match text.char_indices().nth(count.saturating_sub(max)) {
        Some((start, _)) if count > max => &text[start..],
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::{ExecutionId, WorkflowId};
    use crate::node::ErrorKind;
    use crate::testing::processes_with;

    fn ctx(config: Value, input: Value) -> NodeContext {
        NodeContext::new(ExecutionId::new(), WorkflowId::new(), "n", CODE_TYPE, 1)
            .config(config)
            .input(input)
    }

    async fn run(config: Value, input: Value) -> Result<Value, NodeError> {
        match CodeNode::default().execute(ctx(config, input)).await? {
            NodeOutcome::Complete { output, .. } => Ok(output),
            other => panic!("a code node completes or fails, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn python_reads_input_and_prints_json() {
        let output = run(
            json!({"language": "python", "code": "import json,sys; d=json.load(sys.stdin); print(json.dumps({'n': d['n'] * 2}))"}),
            json!({"n": 21}),
        )
        .await
        .unwrap();
        assert_eq!(output["result"], json!({"n": 42}));
        assert_eq!(output["exit_code"], json!(0));
    }

    #[tokio::test]
    async fn shell_output_and_stderr_are_captured() {
        let output = run(
            json!({"language": "shell", "code": "echo out; echo err >&2"}),
            Value::Null,
        )
        .await
        .unwrap();
        assert_eq!(output["stdout"], json!("out\n"));
        assert_eq!(output["stderr"], json!("err\n"));
        assert!(output.get("result").is_none());
    }

    #[tokio::test]
    async fn non_zero_exit_is_a_retryable_failure_quoting_stderr() {
        let err = run(
            json!({"language": "shell", "code": "echo broken >&2; exit 3"}),
            Value::Null,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Retryable);
        assert_eq!(err.to_string(), "sh failed with exit status 3: broken");
    }

    #[tokio::test]
    async fn output_over_the_cap_fails() {
        let err = run(
            json!({"language": "shell", "code": "head -c 5000 /dev/zero", "max_output_bytes": 100}),
            Value::Null,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert_eq!(
            err.to_string(),
            "stdout exceeded the output cap of 100 bytes"
        );
    }

    #[tokio::test]
    async fn environment_is_not_inherited() {
        let (inherited, _) = std::env::vars()
            // The shell sets PWD, SHLVL and _ itself.
            .find(|(key, _)| {
                !PASSED_ENV.contains(&key.as_str())
                    && !["PWD", "OLDPWD", "SHLVL", "_"].contains(&key.as_str())
            })
            .expect("the test process has some environment variable");
        let output = run(
            json!({"language": "shell", "code": "env", "env": {"EXTRA": "1"}}),
            Value::Null,
        )
        .await
        .unwrap();
        let env = output["stdout"].as_str().unwrap();
        assert!(!env.contains(&format!("{inherited}=")), "{env}");
        assert!(env.contains("EXTRA=1"), "{env}");
        assert!(env.contains("WORKFLOW_NODE_ID=n"), "{env}");
    }

    #[tokio::test]
    async fn missing_interpreter_is_a_fatal_error_naming_it() {
        let err = CodeNode::default()
            .python("no-such-python-here")
            .execute(ctx(
                json!({"language": "python", "code": "print(1)"}),
                Value::Null,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert!(
            err.to_string()
                .starts_with("cannot start no-such-python-here"),
            "{err}"
        );
    }

    #[test]
    fn config_is_checked() {
        let node = CodeNode::default();
        assert!(
            node.validate_config(&json!({"language": "python", "code": "print(1)"}))
                .is_ok()
        );
        let err = node
            .validate_config(&json!({"language": "ruby", "code": "p 1"}))
            .unwrap_err();
        assert!(err.to_string().contains("unknown variant `ruby`"), "{err}");
        let err = node
            .validate_config(&json!({"language": "shell", "code": "  "}))
            .unwrap_err();
        assert_eq!(err.to_string(), "code must not be empty");
        let err = node.validate_config(&Value::Null).unwrap_err();
        assert!(err.to_string().starts_with("config is required"), "{err}");
    }

    /// Waits (generously) until no process carries `marker`.
    async fn none_left(marker: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = processes_with(marker);
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "processes of the node are left: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A unique `sleep` argument, so a test finds its own processes only.
    fn marker() -> String {
        format!("{}", 900_000 + uuid::Uuid::new_v4().as_u128() % 99_999)
    }

    async fn wait_started(marker: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while processes_with(marker).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{marker} never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_stopped_attempt_kills_everything_the_snippet_started() {
        for (language, code) in [
            ("shell", "sleep {m}1 & sleep {m}2"),
            (
                "python",
                "import subprocess, time\nsubprocess.Popen(['sleep', '{m}1'])\ntime.sleep({m}2)",
            ),
        ] {
            let m = marker();
            let code = code.replace("{m}", &m);
            let attempt = tokio::spawn(run(
                json!({"language": language, "code": code}),
                json!(null),
            ));
            wait_started(&format!("{m}1")).await;
            // What a timeout, a cancellation and a shutdown past the grace period do: drop
            // the attempt's future.
            attempt.abort();
            let _ = attempt.await;
            none_left(&m).await;
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn processes_left_behind_by_a_finished_snippet_are_stopped() {
        let m = marker();
        let started = std::time::Instant::now();
        let output = run(
            json!({"language": "shell", "code": format!("sleep {m} & echo done")}),
            json!(null),
        )
        .await
        .unwrap();
        assert_eq!(output["stdout"], "done\n");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the attempt waited for its background process"
        );
        none_left(&m).await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_snippet_leads_a_process_group_of_its_own() {
        // Field 5 of /proc/PID/stat is the process group: the shell's own pid, so a Ctrl-C
        // sent to the worker's group does not reach it.
        let output = run(
            json!({"language": "shell", "code": "echo $$; cut -d' ' -f5 /proc/$$/stat"}),
            json!(null),
        )
        .await
        .unwrap();
        let lines: Vec<&str> = output["stdout"].as_str().unwrap().lines().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], lines[1], "the snippet's group is its own pid");
        let ours = std::fs::read_to_string("/proc/self/stat").unwrap();
        let our_group = ours.split(' ').nth(4).unwrap();
        assert_ne!(lines[1], our_group);
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("ééé", 2), "éé");
    }
}
