//! The web UI and HTTP API (`workflow_worker_core::http`) as the binary serves them: `ui --addr` alone,
//! or `run --ui-addr` beside the worker. Safe by default: a non-loopback address needs a
//! token, which every request must then carry.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use workflow_worker_core::Client;
use workflow_worker_core::http::{self, ApiOptions};

/// The environment variable holding the token. Never a flag, so it never shows in a
/// process list.
pub(crate) const TOKEN_VAR: &str = "WORKFLOW_UI_TOKEN";

/// A bound address, serving once [`serve`](Self::serve) is called.
pub(crate) struct UiServer {
    listener: TcpListener,
    options: ApiOptions,
}

impl UiServer {
    /// Checks the settings and binds `addr` (named `flag` in errors), so a taken port or an
    /// exposed address without a token fails at start.
    pub(crate) async fn bind(
        addr: SocketAddr,
        flag: &str,
        read_only: bool,
    ) -> anyhow::Result<Self> {
        let token = std::env::var(TOKEN_VAR)
            .ok()
            .filter(|token| !token.is_empty());
        if !addr.ip().is_loopback() && token.is_none() {
            anyhow::bail!(
                "{flag} {addr} is not a loopback address: set {TOKEN_VAR} to a secret that every \
                 request must then carry, or listen on 127.0.0.1"
            );
        }
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {flag} {addr}"))?;
        Ok(Self {
            listener,
            options: ApiOptions { read_only, token },
        })
    }

    /// Where it listens.
    pub(crate) fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves the API over `client` until `stop`.
    pub(crate) async fn serve(self, client: Client, stop: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(
            addr = %addr,
            read_only = self.options.read_only,
            token = self.options.token.is_some(),
            "serving the web UI at / and the HTTP API at /api/v1 (its OpenAPI document at /api/openapi.json)"
        );
        axum::serve(self.listener, http::router(client, self.options))
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("the HTTP API stopped")
    }
}
