//! Python snippets forked from a warm interpreter.
//!
//! Starting Python costs tens of milliseconds (170 ms through a pyenv shim), far more than
//! a short snippet's own work. A code node therefore starts one Python process per worker,
//! the fork server (`fork_server.py`), and has it fork a fresh process for each snippet:
//! about a millisecond. The forked process is what a spawned one would be: the leader of a
//! process group of its own (killed on timeout, cancellation and shutdown as before, with
//! whatever it started), stdin, stdout and stderr on pipes of this worker's (so the output
//! caps hold), the same clean environment, and nothing shared with any other snippet: it
//! is a copy of a server that never runs snippets itself, with a fresh `__main__`.
//!
//! The server gets its requests on a `SOCK_SEQPACKET` socket, each with the snippet's four
//! pipes as file descriptors (`SCM_RIGHTS`), and answers on its stdout with the snippet's
//! pid once forked and its exit status once reaped. If the server cannot be started or does
//! not speak the protocol (not CPython 3), or it dies, snippets are spawned one process
//! each, as without it; a dead server is started again for the next snippet.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sendmsg, socketpair,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::sync::oneshot;

use super::{Exit, Process, ProcessGroup};

/// The server's program, sent over the socket so that `ps` shows a short command line.
const SOURCE: &str = include_str!("fork_server.py");

/// Reads `SOURCE` from fd 0 and runs it, keeping the socket in `c`.
const BOOTSTRAP: &str = "import socket; c = socket.socket(fileno=0); exec(c.recv(1 << 20))";

/// How long the server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables that change how Python starts (or what it read at start-up): a
/// snippet whose node sets one is spawned, not forked.
pub(super) fn changes_startup(name: &str) -> bool {
    name.starts_with("PYTHON") || name.starts_with("LC_") || name == "LANG" || name == "TZ"
}

/// The fork server of one Python program, started on first use and again after it died.
pub(crate) struct ForkServer {
    program: String,
    state: tokio::sync::Mutex<State>,
}

enum State {
    Idle,
    Running(Arc<Server>),
    /// The program ran but is not a Python that runs the server: never tried again.
    Unsupported,
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl ForkServer {
    pub(crate) fn new(program: String) -> Self {
        Self {
            program,
            state: tokio::sync::Mutex::new(State::Idle),
        }
    }

    /// Forks a process running `code` with exactly `env`; `None` when no server is available,
    /// and the caller spawns the snippet itself.
    pub(super) async fn spawn(&self, code: &str, env: &[(String, String)]) -> Option<Process> {
        let server = self.server().await?;
        match server.fork(code, env).await {
            Ok(process) => Some(process),
            Err(e) => {
                tracing::warn!(program = %self.program, error = %e,
                    "the Python fork server failed; spawning this snippet");
                server.alive.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    async fn server(&self) -> Option<Arc<Server>> {
        let mut state = self.state.lock().await;
        match &*state {
            State::Running(server) if server.alive.load(Ordering::Relaxed) => {
                return Some(server.clone());
            }
            State::Unsupported => return None,
            State::Running(_) | State::Idle => {}
        }
        match Server::start(&self.program).await {
            Ok(server) => {
                let server = Arc::new(server);
                *state = State::Running(server.clone());
                Some(server)
            }
            Err(StartError::Spawn) => {
                // Spawning the snippet reports why the program does not start.
                *state = State::Idle;
                None
            }
            Err(StartError::Unsupported(reason)) => {
                tracing::warn!(program = %self.program, %reason,
                    "no Python fork server: each Python snippet starts its own interpreter");
                *state = State::Unsupported;
                None
            }
        }
    }
}

enum StartError {
    Spawn,
    Unsupported(String),
}

/// What the server will tell about one request.
struct Pending {
    started: Option<oneshot::Sender<i32>>,
    ended: oneshot::Sender<Exit>,
}

type PendingMap = Arc<Mutex<HashMap<u64, Pending>>>;

/// A running fork server.
struct Server {
    /// The `SOCK_SEQPACKET` socket to the server. Tokio has no type for one; its
    /// `UnixStream` serves only to wait for the socket to be writable, and every message goes
    /// out through `sendmsg`.
    control: UnixStream,
    next_id: AtomicU64,
    pending: PendingMap,
    alive: Arc<AtomicBool>,
}

impl Server {
    async fn start(program: &str) -> Result<Self, StartError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| StartError::Unsupported(format!("socketpair: {e}")))?;
        let mut command = Command::new(program);
        command
            .arg("-c")
            .arg(BOOTSTRAP)
            .arg("workflow-worker-python-fork-server")
            .env_clear()
            .envs(super::passed_env())
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a Ctrl-C at the worker's terminal reaches the worker alone; the
            // server exits when its socket closes, killing the snippets it still runs.
            .process_group(0);
        let mut child = command.spawn().map_err(|_| StartError::Spawn)?;
        let unsupported = StartError::Unsupported;
        let control = std::os::unix::net::UnixStream::from(ours);
        let control = control
            .set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(control))
            .map_err(|e| unsupported(format!("registering the socket: {e}")))?;
        send(&control, SOURCE.as_bytes(), &[])
            .await
            .map_err(|e| unsupported(format!("sending the server: {e}")))?;
        let stdout = child.stdout.take().ok_or(StartError::Spawn)?;
        let stderr = child.stderr.take().ok_or(StartError::Spawn)?;
        tokio::spawn(log_stderr(stderr));
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(START_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with("R ") => {}
            Ok(Ok(Some(line))) => return Err(unsupported(format!("it answered {line:?}"))),
            Ok(Ok(None)) => {
                let status = child.wait().await.map(|s| s.to_string());
                return Err(unsupported(format!("it exited ({})", display(status))));
            }
            Ok(Err(e)) => return Err(unsupported(e.to_string())),
            Err(_) => {
                let _ = child.start_kill();
                return Err(unsupported(format!("not ready within {START_TIMEOUT:?}")));
            }
        }
        let pending = PendingMap::default();
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(answers(lines, child, pending.clone(), alive.clone()));
        Ok(Self {
            control,
            next_id: AtomicU64::new(1),
            pending,
            alive,
        })
    }

    async fn fork(&self, code: &str, env: &[(String, String)]) -> std::io::Result<Process> {
        let (request_r, request_w) = std::io::pipe()?;
        let (stdin_r, stdin_w) = std::io::pipe()?;
        let (stdout_r, stdout_w) = std::io::pipe()?;
        let (stderr_r, stderr_w) = std::io::pipe()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (started_tx, started_rx) = oneshot::channel();
        let (ended_tx, ended_rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("fork server pending map")
            .insert(
                id,
                Pending {
                    started: Some(started_tx),
                    ended: ended_tx,
                },
            );
        let theirs: [OwnedFd; 4] = [
            request_r.into(),
            stdin_r.into(),
            stdout_w.into(),
            stderr_w.into(),
        ];
        let sent = send(&self.control, &id.to_le_bytes(), &theirs).await;
        // The server holds its own copies now; ours would keep the pipes from ending.
        drop(theirs);
        if let Err(e) = sent {
            self.pending
                .lock()
                .expect("fork server pending map")
                .remove(&id);
            return Err(e);
        }
        let request = serde_json::to_vec(&serde_json::json!({
            "code": code,
            "env": env.iter().cloned().collect::<HashMap<_, _>>(),
        }))?;
        let mut request_w = pipe::Sender::from_owned_fd(request_w.into())?;
        // The child reads the request to its end before running anything; a child that
        // died first closes the pipe, and its exit status tells the rest.
        let _ = request_w.write_all(&request).await;
        drop(request_w);
        // Dropping `started_rx` before the pid arrives (a stopped attempt) lets the reader
        // of answers kill the process it is told about.
        let pid = started_rx.await.map_err(|_| server_gone())?;
        let group = ProcessGroup::new(u32::try_from(pid).ok());
        let ended = async move { ended_rx.await.map_err(|_| server_gone()) };
        Ok(Process {
            stdin: Box::pin(pipe::Sender::from_owned_fd(stdin_w.into())?),
            stdout: Box::pin(pipe::Receiver::from_owned_fd(stdout_r.into())?),
            stderr: Box::pin(pipe::Receiver::from_owned_fd(stderr_r.into())?),
            exit: Box::pin(ended),
            group,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the socket (with `control`) ends the server, which kills what it runs.
        self.alive.store(false, Ordering::Relaxed);
    }
}

fn server_gone() -> std::io::Error {
    std::io::Error::other("the Python fork server exited")
}

fn display(status: std::io::Result<String>) -> String {
    status.unwrap_or_else(|e| e.to_string())
}

/// Sends one message with `fds` attached, waiting while the socket is full.
async fn send(control: &UnixStream, data: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let messages: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    loop {
        control.writable().await?;
        match control.try_io(Interest::WRITABLE, || {
            sendmsg::<UnixAddr>(
                control.as_raw_fd(),
                &[IoSlice::new(data)],
                messages,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            result => return result.map(|_| ()),
        }
    }
}

/// Reads the server's answers until it exits, then fails whatever still waits on it.
async fn answers(
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    mut child: tokio::process::Child,
    pending: PendingMap,
    alive: Arc<AtomicBool>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let mut fields = line.split(' ');
        let (Some(kind), Some(Ok(id)), Some(Ok(value))) = (
            fields.next(),
            fields.next().map(str::parse::<u64>),
            fields.next().map(str::parse::<i32>),
        ) else {
            tracing::warn!(%line, "the Python fork server said something unexpected");
            continue;
        };
        let mut pending = pending.lock().expect("fork server pending map");
        match kind {
            "S" => {
                let started = pending.get_mut(&id).and_then(|p| p.started.take());
                if started.is_none_or(|started| started.send(value).is_err()) {
                    // Its attempt stopped before it learned the pid: nobody else will kill it.
                    ProcessGroup::new(u32::try_from(value).ok()).kill();
                }
            }
            "E" => {
                if let Some(p) = pending.remove(&id) {
                    let exit = if value < 0 {
                        Exit::Signal(-value)
                    } else {
                        Exit::Code(value)
                    };
                    let _ = p.ended.send(exit);
                }
            }
            _ => tracing::warn!(%line, "the Python fork server said something unexpected"),
        }
    }
    alive.store(false, Ordering::Relaxed);
    pending.lock().expect("fork server pending map").clear();
    let _ = child.wait().await;
}

/// Forwards what the server writes to stderr (it writes nothing unless it fails) to the log.
async fn log_stderr(stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(%line, "python fork server");
    }
}
