//! The telemetry endpoint: `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (source, target and broker reachable now; the body says which is not).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::job::handle::JobHandle;

/// How long one readiness probe of a dependency may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a `/readyz` answer is reused: probes reach three servers, and a scraper (or
/// anyone who can reach the port) calling in a loop must not multiply that load.
const READY_CACHE: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Ctx {
    job: JobHandle,
    prometheus: Option<PrometheusHandle>,
    /// The last readiness answer and when it was made; the lock also makes probes run one at
    /// a time (a caller arriving during a probe waits for it and reuses its answer).
    ready: std::sync::Arc<tokio::sync::Mutex<Option<(std::time::Instant, StatusCode, String)>>>,
}

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, job: JobHandle, prometheus: Option<PrometheusHandle>, stop: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Ctx { job, prometheus, ready: Default::default() });
    let shutdown = stop.cancelled_owned();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "telemetry endpoint stopped");
    }
}

async fn metrics(State(ctx): State<Ctx>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    // Fresh gauges for every scrape, not only every sampler second.
    let _ = ctx.job.status();
    let body = ctx.prometheus.as_ref().map(|p| p.render()).unwrap_or_default();
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], body)
}

/// One line per dependency; 200 only when all answer. Answers are cached for
/// [`READY_CACHE`] and probes never overlap.
async fn readyz(State(ctx): State<Ctx>) -> (StatusCode, String) {
    let mut cached = ctx.ready.lock().await;
    if let Some((at, code, body)) = cached.as_ref() {
        if at.elapsed() < READY_CACHE {
            return (*code, body.clone());
        }
    }
    let (code, body) = probe(&ctx).await;
    *cached = Some((std::time::Instant::now(), code, body.clone()));
    (code, body)
}

async fn probe(ctx: &Ctx) -> (StatusCode, String) {
    let Some(live) = ctx.job.live() else {
        // Still connecting or planning: the last error says which server stands in the way.
        let last = ctx.job.errors().ok().and_then(|e| e.last().cloned());
        let why = last.map(|e| format!("last error ({}): {}\n", e.kind, e.message)).unwrap_or_default();
        return (StatusCode::SERVICE_UNAVAILABLE, format!("job not started yet (connecting, planning)\n{why}"));
    };
    let c = &live.context;
    let (source, target, wal) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, c.source.server_version()),
        tokio::time::timeout(PROBE_TIMEOUT, c.target.server_version()),
        tokio::time::timeout(PROBE_TIMEOUT, c.reader.probe()),
    );
    let line = |name: &str, r: Result<Result<String, String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(detail)) => (true, format!("{name}: {detail}\n")),
        Ok(Err(e)) => (false, format!("{name}: unreachable: {e}\n")),
        Err(_) => (false, format!("{name}: no answer within {}s\n", PROBE_TIMEOUT.as_secs())),
    };
    let checks = [
        line("source", source.map(|r| r.map(|_| "ok".to_string()).map_err(|e| e.to_string()))),
        line("target", target.map(|r| r.map(|_| "ok".to_string()).map_err(|e| e.to_string()))),
        // The WAL's transport by name: "wal (Kafka at host:9092)", "wal (RocksMQ at /path)".
        line(&format!("wal ({})", c.reader.describe()), wal.map(|r| r.map_err(|e| e.to_string()))),
    ];
    let ok = checks.iter().all(|(ok, _)| *ok);
    let body: String = checks.into_iter().map(|(_, l)| l).collect();
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}
