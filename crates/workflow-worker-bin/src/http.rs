//! The operator endpoint of `--metrics-addr`: Prometheus metrics, liveness and readiness.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use workflow_worker_core::Store;

/// How long `/readyz` and the queue gauges of `/metrics` wait for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often histogram buckets are rolled over (the exporter's upkeep).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Histogram buckets in seconds, for node runs (up to minutes) and claims (milliseconds).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// What the handlers read. The store is set once the database is open: until then (and
/// while the database hangs) `/healthz` and `/metrics` answer and `/readyz` says why not.
#[derive(Clone)]
pub(crate) struct Endpoint {
    store: Arc<OnceLock<Arc<dyn Store>>>,
    metrics: PrometheusHandle,
}

impl Endpoint {
    /// Gives the handlers the open store.
    pub(crate) fn set_store(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }
}

/// A bound endpoint, serving once [`serve`](Self::serve) is called.
pub(crate) struct MetricsServer {
    listener: TcpListener,
    endpoint: Endpoint,
}

impl MetricsServer {
    /// Installs the Prometheus recorder and binds `addr`, so a taken port fails at start.
    pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let metrics = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .context("cannot install the metrics recorder")?;
        workflow_worker_core::metrics::describe();
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
        Ok(Self {
            listener,
            endpoint: Endpoint {
                store: Arc::new(OnceLock::new()),
                metrics,
            },
        })
    }

    /// A handle to give the handlers the store once it is open.
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// The address it listens on (the port is chosen by the system when 0 was asked for).
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` until `stop` is cancelled.
    pub(crate) async fn serve(self, stop: CancellationToken) -> std::io::Result<()> {
        let upkeep = {
            let metrics = self.endpoint.metrics.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = ticker.tick() => metrics.run_upkeep(),
                    }
                }
            })
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(self.endpoint);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        upkeep.abort();
        served
    }
}

/// The metrics, with the queue gauges read from the database first. If the database does not
/// answer, the gauges keep their last values and the rest is still served.
async fn metrics(State(endpoint): State<Endpoint>) -> String {
    let Some(store) = endpoint.store.get() else {
        return endpoint.metrics.render();
    };
    let stats = tokio::time::timeout(
        DATABASE_TIMEOUT,
        workflow_worker_core::metrics::record_queue_stats(&**store),
    )
    .await;
    match stats {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::debug!(error = %err, "reading queue stats for metrics failed"),
        Err(_) => tracing::debug!("reading queue stats for metrics timed out"),
    }
    endpoint.metrics.render()
}

/// 200 when the database answers within [`DATABASE_TIMEOUT`], else 503 saying why.
async fn ready(State(endpoint): State<Endpoint>) -> (StatusCode, String) {
    let Some(store) = endpoint.store.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "connecting to the database\n".to_owned(),
        );
    };
    match tokio::time::timeout(DATABASE_TIMEOUT, store.now()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(err)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {err}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database did not answer within {DATABASE_TIMEOUT:?}\n"),
        ),
    }
}
