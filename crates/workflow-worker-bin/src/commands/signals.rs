//! SIGINT and SIGTERM: the first asks a long-running command to stop gracefully, a second
//! exits at once.

use tokio_util::sync::CancellationToken;

/// Listens for SIGINT and SIGTERM from now until the process exits, and returns a token the
/// first one cancels, having logged `requested` (what stopping means for the command); a
/// second one exits the process at once with status 130.
///
/// One listener for a command's whole life, created before its first await: the runtime keeps
/// its signal handler once installed, so a listener dropped between two phases (connecting,
/// then running) would leave signals caught and delivered to nobody, and a SIGTERM in between
/// went unheard.
pub(super) fn shutdown_on_signal(requested: &'static str) -> std::io::Result<CancellationToken> {
    let mut signals = Signals::listen()?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutdown requested; {requested} (signal again to exit now)");
        cancel.cancel();
        signals.next().await;
        tracing::warn!("second signal; exiting now");
        std::process::exit(130);
    });
    Ok(token)
}

/// SIGINT and SIGTERM, each caught from the moment this is created.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Ctrl-C, where there is no SIGTERM.
#[cfg(not(unix))]
struct Signals(tokio::signal::windows::CtrlC);

#[cfg(not(unix))]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        tokio::signal::windows::ctrl_c().map(Self)
    }

    async fn next(&mut self) {
        self.0.recv().await;
    }
}
