//! Prometheus metrics, rendered by hand in the text exposition format: a
//! few counters do not justify a metrics framework.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::AppState;

#[derive(Default)]
pub struct Metrics {
    responses_2xx: AtomicU64,
    responses_4xx: AtomicU64,
    responses_5xx: AtomicU64,
    write_batches: AtomicU64,
    write_ops: AtomicU64,
}

impl Metrics {
    pub fn record_write(&self, ops: usize) {
        self.write_batches.fetch_add(1, Ordering::Relaxed);
        self.write_ops.fetch_add(ops as u64, Ordering::Relaxed);
    }

    fn record_status(&self, status: u16) {
        let counter = match status {
            200..=399 => &self.responses_2xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text: these counters plus the engine's `(name, help,
    /// value)` counters.
    pub fn render(&self, engine: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP tidemark_http_responses_total HTTP responses by status class."
        );
        let _ = writeln!(out, "# TYPE tidemark_http_responses_total counter");
        for (class, counter) in [
            ("2xx", &self.responses_2xx),
            ("4xx", &self.responses_4xx),
            ("5xx", &self.responses_5xx),
        ] {
            let _ = writeln!(
                out,
                "tidemark_http_responses_total{{class=\"{class}\"}} {}",
                load(counter)
            );
        }
        let own = [
            (
                "tidemark_write_batches_total",
                "Write batches acknowledged.",
                load(&self.write_batches),
            ),
            (
                "tidemark_write_ops_total",
                "Record writes in acknowledged batches.",
                load(&self.write_ops),
            ),
        ];
        for &(name, help, value) in own.iter().chain(engine) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out
    }
}

/// Counts every response by status class.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.record_status(response.status().as_u16());
    response
}
