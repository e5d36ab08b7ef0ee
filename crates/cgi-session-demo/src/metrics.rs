//! `GET /metrics`: the store's metrics (see `cgi_session::observe`) in Prometheus's text
//! format, from a `metrics-exporter-prometheus` recorder installed by the binary at start-up
//! ([`install`]; no HTTP listener of its own: the demo's server answers the route).

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Upper bounds of the latency histograms' buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Installs the Prometheus recorder as the process's `metrics` recorder, and a task that
/// runs its upkeep (draining histogram samples) every 5 s. Call it once, from within a
/// Tokio runtime, before the store is used.
///
/// # Errors
/// When another recorder is installed already.
pub fn install() -> Result<(), metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = HANDLE.set(handle);
    Ok(())
}

/// The handler of `GET /metrics`: 404 when no recorder was installed (the app run as a
/// library, e.g. in tests).
pub async fn metrics() -> Response {
    match HANDLE.get() {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not recorded: no recorder is installed (the binary installs one)\n",
        )
            .into_response(),
    }
}
