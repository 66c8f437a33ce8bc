//! The proxy's own metrics, next to the layer's `uma_*` series (see tower-uma's `metrics`
//! module docs for those).
//!
//! | Metric | Type | Labels | What is counted |
//! |---|---|---|---|
//! | `uma_proxy_upstream_requests_total` | counter | `outcome`: `ok` \| `error` \| `timeout` | Requests forwarded to the upstream, by result (`error`: answered `502`, `timeout`: `504`). |
//! | `uma_proxy_upstream_duration_seconds` | histogram | `outcome`: as above | Time from forwarding to the upstream's response head. |
//! | `uma_proxy_ready` | gauge | — | `1` once the first resource sync succeeded, `0` before. |

use std::time::Duration;

/// Counter: requests forwarded to the upstream, by outcome.
pub const UPSTREAM_REQUESTS: &str = "uma_proxy_upstream_requests_total";
/// Histogram: upstream latency to the response head, by outcome.
pub const UPSTREAM_DURATION: &str = "uma_proxy_upstream_duration_seconds";
/// Gauge: 1 when ready.
pub const READY: &str = "uma_proxy_ready";

/// Records one upstream exchange; `outcome` is `ok`, `error` or `timeout`.
pub(crate) fn upstream(outcome: &'static str, elapsed: Duration) {
    metrics::counter!(UPSTREAM_REQUESTS, "outcome" => outcome).increment(1);
    metrics::histogram!(UPSTREAM_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
}

/// Records readiness.
pub(crate) fn ready(ready: bool) {
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// Describes the proxy's series (help texts in the Prometheus output).
pub(crate) fn describe() {
    metrics::describe_counter!(
        UPSTREAM_REQUESTS,
        "Requests forwarded to the upstream, by outcome"
    );
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Time from forwarding a request to the upstream's response head"
    );
    metrics::describe_gauge!(
        READY,
        "1 once the first resource sync with the AS succeeded"
    );
}
