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
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
#[cfg(unix)]
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};

#[cfg(unix)]
mod fork_server;

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
///
/// On Unix, Python snippets are forked from one warm interpreter per worker (a fork server)
/// rather than each starting Python: a snippet starts in about a millisecond, in a process
/// of its own as before (see [`CodeNode::python_fork_server`]).
#[derive(Debug, Clone)]
pub struct CodeNode {
    python: String,
    shell: String,
    #[cfg(unix)]
    fork_server: Option<Arc<fork_server::ForkServer>>,
}

impl Default for CodeNode {
    fn default() -> Self {
        Self {
            python: "python3".into(),
            shell: "sh".into(),
            #[cfg(unix)]
            fork_server: None,
        }
        .python_fork_server(true)
    }
}

impl CodeNode {
    /// Uses `program` to run Python snippets. Defaults to `python3` on `PATH`.
    #[must_use]
    pub fn python(mut self, program: impl Into<String>) -> Self {
        self.python = program.into();
        // A server of the new program, if there was one.
        #[cfg(unix)]
        let on = self.fork_server.is_some();
        #[cfg(not(unix))]
        let on = false;
        self.python_fork_server(on)
    }

    /// Uses `program` to run shell snippets. Defaults to `sh` on `PATH`.
    #[must_use]
    pub fn shell(mut self, program: impl Into<String>) -> Self {
        self.shell = program.into();
        self
    }

    /// Whether Python snippets are forked from a warm interpreter (the default on Unix) or
    /// each spawned as a new `python -c` process.
    ///
    /// The fork server is one Python process per `CodeNode`, started on first use with the
    /// worker's clean environment. Each snippet runs in a process it forks: the leader of a
    /// process group of its own, with a fresh `__main__`, the node's environment, and its
    /// streams on pipes of the worker's; timeouts and cancellation kill it and what it
    /// started, as they kill a spawned one. A snippet whose node sets a variable Python
    /// reads at start-up (`PYTHON*`, `LANG`, `LC_*`, `TZ`) is spawned, and so is every
    /// snippet if the program does not run the server (not CPython 3). Off, every snippet
    /// pays the interpreter's start (50 ms for `/usr/bin/python3` here, 170 ms through a
    /// pyenv shim). Has no effect elsewhere than on Unix.
    #[must_use]
    pub fn python_fork_server(mut self, on: bool) -> Self {
        #[cfg(unix)]
        {
            self.fork_server =
                on.then(|| Arc::new(fork_server::ForkServer::new(self.python.clone())));
        }
        #[cfg(not(unix))]
        let _ = on;
        self
    }

    /// Starts `config`'s snippet: forked by the fork server where it can be, else spawned.
    async fn start(
        &self,
        config: &CodeConfig,
        env: &[(String, String)],
    ) -> Result<Process, NodeError> {
        #[cfg(unix)]
        if let (Language::Python, Some(server)) = (config.language, &self.fork_server)
            && !config
                .env
                .keys()
                .any(|name| fork_server::changes_startup(name))
            && let Some(process) = server.spawn(&config.code, env).await
        {
            return Ok(process);
        }
        let program = self.program(config.language);
        let mut command = Command::new(program);
        command
            .arg("-c")
            .arg(&config.code)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| NodeError::fatal(format!("cannot start {program}: {e}")))?;
        let group = ProcessGroup::new(child.id());
        let stdin = child.stdin.take().ok_or("stdin not captured").fatal()?;
        let stdout = child.stdout.take().ok_or("stdout not captured").fatal()?;
        let stderr = child.stderr.take().ok_or("stderr not captured").fatal()?;
        Ok(Process {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            exit: Box::pin(async move { child.wait().await.map(Exit::from) }),
            group,
        })
    }

    fn program(&self, language: Language) -> &str {
        match language {
            Language::Python => &self.python,
            Language::Shell => &self.shell,
        }
    }
}

fn parse_config(config: &Value) -> Result<CodeConfig, serde_json::Error> {
    CodeConfig::deserialize(config)
}

/// The variables of the worker's environment a snippet gets.
fn passed_env() -> impl Iterator<Item = (&'static str, std::ffi::OsString)> {
    PASSED_ENV
        .iter()
        .filter_map(|key| Some((*key, std::env::var_os(key)?)))
}

/// A snippet's process, however it was started.
struct Process {
    stdin: Pin<Box<dyn AsyncWrite + Send>>,
    stdout: Pin<Box<dyn AsyncRead + Send>>,
    stderr: Pin<Box<dyn AsyncRead + Send>>,
    exit: Pin<Box<dyn Future<Output = std::io::Result<Exit>> + Send>>,
    /// Killed when the attempt's future ends or is dropped (timeout, cancel, shutdown).
    group: ProcessGroup,
}

/// How a snippet's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

impl From<std::process::ExitStatus> for Exit {
    fn from(status: std::process::ExitStatus) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                return Self::Signal(signal);
            }
        }
        Self::Code(status.code().unwrap_or(-1))
    }
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
        let program = self.program(config.language);
        let env: Vec<(String, String)> = passed_env()
            .map(|(key, value)| (key.to_owned(), value.to_string_lossy().into_owned()))
            .chain([
                ("WORKFLOW_EXECUTION_ID".into(), ctx.execution_id.to_string()),
                ("WORKFLOW_NODE_ID".into(), ctx.node_id.clone()),
                ("WORKFLOW_ATTEMPT".into(), ctx.attempt.to_string()),
                (
                    "WORKFLOW_IDEMPOTENCY_KEY".into(),
                    ctx.idempotency_key.clone(),
                ),
            ])
            .chain(config.env.clone())
            .collect();
        let Process {
            mut stdin,
            stdout,
            stderr,
            exit,
            group,
        } = self.start(&config, &env).await?;

        let input = serde_json::to_vec(&ctx.input).fatal()?;
        let write_stdin = async move {
            // A snippet that never reads stdin closes it early: that is not an error.
            let written = stdin.write_all(&input).await;
            drop(stdin);
            match written {
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
            let status = exit.await;
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
        let code = match status {
            Exit::Code(code) => code,
            Exit::Signal(_) => -1,
        };
        if status != Exit::Code(0) {
            let how = match status {
                Exit::Code(code) => format!("exit status {code}"),
                Exit::Signal(_) => "killed by a signal".to_owned(),
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
            "exit_code": code,
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
    /// The group led by the process `id` (unknown: `None`, and nothing to kill).
    fn new(id: Option<u32>) -> Self {
        #[cfg(unix)]
        {
            Self {
                id: id
                    .and_then(|id| i32::try_from(id).ok())
                    .map(nix::unistd::Pid::from_raw),
                killed: false.into(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = id;
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
            // The snippet's group: a forked Python snippet's own command line is its server's,
            // so what it leaves is found by its group.
            let group = group_of(&format!("{m}1"));
            assert!(!in_group(&group).is_empty());
            // What a timeout, a cancellation and a shutdown past the grace period do: drop
            // the attempt's future.
            attempt.abort();
            let _ = attempt.await;
            none_left(&m).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !in_group(&group).is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{language}: processes of the group are left: {:?}",
                    in_group(&group)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Field 5 of `/proc/PID/stat`: the process group.
    fn stat_group(stat: &str) -> Option<String> {
        // The command name (field 2) is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(2).map(str::to_owned)
    }

    /// The process group of the process whose command line holds `marker`.
    fn group_of(marker: &str) -> String {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let path = entry.path();
            let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmdline).contains(marker)
                && let Ok(stat) = std::fs::read_to_string(path.join("stat"))
                && let Some(group) = stat_group(&stat)
            {
                return group;
            }
        }
        panic!("no process holds {marker}");
    }

    /// The processes (their `stat` lines) of process group `group`.
    fn in_group(group: &str) -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            .filter(|stat| stat_group(stat).as_deref() == Some(group))
            .collect()
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

    async fn run_with(node: &CodeNode, config: Value, input: Value) -> Result<Value, NodeError> {
        match node.execute(ctx(config, input)).await? {
            NodeOutcome::Complete { output, .. } => Ok(output),
            other => panic!("a code node completes or fails, got {other:?}"),
        }
    }

    fn python(code: &str) -> Value {
        json!({"language": "python", "code": code})
    }

    /// The pid of the process that started a snippet printing `os.getppid()`.
    async fn parent_of_snippet(node: &CodeNode, env: Value) -> u32 {
        let output = run_with(
            node,
            json!({"language": "python", "code": "import os; print(os.getppid())", "env": env}),
            Value::Null,
        )
        .await
        .unwrap();
        output["stdout"].as_str().unwrap().trim().parse().unwrap()
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn python_snippets_are_forked_by_one_server_and_share_nothing() {
        let node = CodeNode::default();
        let first = run_with(
            &node,
            python("import os, json\njson.leaked = 1\nx = 1\nos.environ['LEAK'] = '1'\nprint(os.getppid())"),
            Value::Null,
        )
        .await
        .unwrap();
        let server: u32 = first["stdout"].as_str().unwrap().trim().parse().unwrap();
        assert_ne!(
            server,
            std::process::id(),
            "forked by the server, not spawned"
        );
        let second = run_with(
            &node,
            python(
                "import os, sys, json\nprint(json.dumps([os.getppid(), hasattr(json, 'leaked'), \
                 'x' in globals(), 'LEAK' in os.environ, __name__, sys.argv, \
                 os.getpgid(0) == os.getpid(), os.environ['WORKFLOW_NODE_ID']]))",
            ),
            Value::Null,
        )
        .await
        .unwrap();
        assert_eq!(
            second["result"],
            json!([server, false, false, false, "__main__", ["-c"], true, "n"]),
            "{second}"
        );
        // A variable Python reads at start-up makes the snippet a process of its own.
        let spawned = parent_of_snippet(&node, json!({"PYTHONDONTWRITEBYTECODE": "1"})).await;
        assert_eq!(spawned, std::process::id());
        // Off, every snippet is spawned.
        let off = CodeNode::default().python_fork_server(false);
        assert_eq!(parent_of_snippet(&off, json!({})).await, std::process::id());
    }

    /// `python -c` itself is the reference: a forked snippet's stdout, stderr and exit status
    /// are what a spawned one's are.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_forked_snippet_ends_as_python_c_does() {
        let forked = CodeNode::default();
        let spawned = CodeNode::default().python_fork_server(false);
        for code in [
            "print('out'); import sys; print('err', file=sys.stderr)",
            "import sys; sys.exit(3)",
            "import sys; sys.exit('bye')",
            "import sys; sys.exit(None)",
            "raise ValueError('boom')",
            "def f():\n    raise KeyError(1)\nf()",
            "print(1 +)",
            "import atexit; atexit.register(lambda: print('at exit'))",
            "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.05), print('thread'))).start()",
            "import os; os.kill(os.getpid(), 15)",
            "import sys, json; print(json.dumps(json.load(sys.stdin)))",
            "import sys; sys.stdout.write('no newline')",
        ] {
            let a = run_with(&forked, python(code), json!({"k": [1, "é"]})).await;
            let b = run_with(&spawned, python(code), json!({"k": [1, "é"]})).await;
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{code}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{code}");
                    assert_eq!(a.to_string(), b.to_string(), "{code}");
                }
                (a, b) => panic!("{code}: forked {a:?}, spawned {b:?}"),
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_dead_fork_server_is_started_again() {
        let node = CodeNode::default();
        let server = parent_of_snippet(&node, json!({})).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(server).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Until the worker has seen it die, a snippet may be spawned; then a new server.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let parent = parent_of_snippet(&node, json!({})).await;
            if parent != server && parent != std::process::id() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no new fork server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("ééé", 2), "éé");
    }
}
