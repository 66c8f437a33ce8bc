//! The proxy's own metrics, next to the layer's `uma_*` series (see tower-uma's `metrics`
//! module docs for those).
//!
//! | Metric | Type | Labels | What is counted |
//! |---|---|---|---|
//! | `uma_proxy_upstream_requests_total` | counter | `outcome`: `ok` \| `error` \| `timeout` | Requests forwarded to the upstream, by result (`error`: answered `502`, `timeout`: `504`). |
//! | `uma_proxy_upstream_duration_seconds` | histogram | `outcome`: as above | Time from forwarding to the upstream's response head. |
//! | `uma_proxy_ready` | gauge | — | `1` once the first resource sync succeeded, `0` before. |
//!
//! # Memory
//!
//! The Prometheus recorder keeps every histogram sample in a buffer until its handle's
//! `run_upkeep` folds the buffer into the summaries, which are bounded (per series, three
//! quantile sketches of at most 256 KiB covering a sliding minute). [`run`](crate::run)
//! therefore runs the upkeep every [`UPKEEP_INTERVAL`] from a task of its own, so memory stays
//! flat whether or not anything reads `/metrics` (a scrape runs it too). The binary installs
//! the recorder only when `admin_listen` is set: without it nothing could read the series, and
//! the layer's and the proxy's metric calls cost nothing.

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

/// Counter: requests forwarded to the upstream, by outcome.
pub const UPSTREAM_REQUESTS: &str = "uma_proxy_upstream_requests_total";
/// Histogram: upstream latency to the response head, by outcome.
pub const UPSTREAM_DURATION: &str = "uma_proxy_upstream_duration_seconds";
/// Gauge: 1 when ready.
pub const READY: &str = "uma_proxy_ready";

/// How often [`run`](crate::run) drains the recorder's histogram samples (see
/// [Memory](self#memory)). Between two runs the buffer holds at most this long's samples
/// (16 bytes each).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The task running the recorder's upkeep; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Upkeep(JoinHandle<()>);

impl Upkeep {
    /// Runs `handle.run_upkeep()` every `every` on the current runtime until the returned
    /// value is dropped.
    pub(crate) fn spawn(handle: PrometheusHandle, every: Duration) -> Self {
        Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                handle.run_upkeep();
            }
        }))
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records one upstream exchange; `outcome` is `ok`, `error` or `timeout`.
///
/// Every forwarded request comes here, so the three known outcomes use `static` keys: the
/// facade's macros would build (allocate) a key per call for a label held in a variable.
pub(crate) fn upstream(outcome: &'static str, elapsed: Duration) {
    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
    macro_rules! static_keys {
        ($($value:literal),+) => {
            match outcome {
                $($value => {
                    static LABELS: [Label; 1] = [Label::from_static_parts("outcome", $value)];
                    static COUNT: Key = Key::from_static_parts(UPSTREAM_REQUESTS, &LABELS);
                    static TIME: Key = Key::from_static_parts(UPSTREAM_DURATION, &LABELS);
                    Some((&COUNT, &TIME))
                })+
                _ => None,
            }
        };
    }
    let keys: Option<(&'static Key, &'static Key)> = static_keys!("ok", "error", "timeout");
    let seconds = elapsed.as_secs_f64();
    match keys {
        Some((count, time)) => metrics::with_recorder(|recorder| {
            recorder.register_counter(count, &METADATA).increment(1);
            recorder.register_histogram(time, &METADATA).record(seconds);
        }),
        None => {
            metrics::counter!(UPSTREAM_REQUESTS, "outcome" => outcome).increment(1);
            metrics::histogram!(UPSTREAM_DURATION, "outcome" => outcome).record(seconds);
        }
    }
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

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    #[test]
    fn upstream_exchanges_are_counted_and_timed_by_outcome() {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            upstream("ok", Duration::from_millis(2));
            upstream("ok", Duration::from_millis(4));
            upstream("timeout", Duration::from_secs(30));
            upstream("something_new", Duration::ZERO);
        });
        let text = recorder.handle().render();
        for line in [
            r#"uma_proxy_upstream_requests_total{outcome="ok"} 2"#,
            r#"uma_proxy_upstream_requests_total{outcome="timeout"} 1"#,
            r#"uma_proxy_upstream_requests_total{outcome="something_new"} 1"#,
            r#"uma_proxy_upstream_duration_seconds_count{outcome="ok"} 2"#,
            r#"uma_proxy_upstream_duration_seconds_sum{outcome="timeout"} 30"#,
            r#"uma_proxy_upstream_duration_seconds_count{outcome="something_new"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
