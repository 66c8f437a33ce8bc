//! The proxy's own metrics, next to the layer's `uma_*` series (see tower-uma's `metrics`
//! module docs for those).
//!
//! | Metric | Type | Labels | What is counted |
//! |---|---|---|---|
//! | `uma_proxy_upstream_requests_total` | counter | `outcome`: `ok` \| `error` \| `timeout` | Requests forwarded to the upstream, by result (`error`: answered `502`, `timeout`: `504`). |
//! | `uma_proxy_upstream_duration_seconds` | histogram | `outcome`: as above | Time from forwarding to the upstream's response head. |
//! | `uma_proxy_ready` | gauge | — | `1` once the first resource sync succeeded, `0` before. |
//!
//! The upstream series of the three outcomes are registered when the forwarding service is
//! built, so they are listed (at zero) before the first request.
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
/// The forwarding service records through its [`UpstreamMeters`], which come here when the
/// current recorder is not the one they were registered with.
pub(crate) fn upstream(outcome: &'static str, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    match static_keys(outcome) {
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

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The `static` keys of a known outcome's counter and histogram: the facade's macros would
/// build (allocate) a key per call for a label held in a variable.
fn static_keys(outcome: &str) -> Option<(&'static Key, &'static Key)> {
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
    static_keys!("ok", "error", "timeout")
}

/// The upstream series, registered once with the recorder that was current when the
/// forwarding service was built, so that a forwarded request records them without a registry
/// lookup (and the allocation of a handle) each time.
///
/// While another recorder is current (one installed later, or a test's local recorder), a
/// request is recorded through [`upstream`] instead: every request lands in the recorder
/// current at the time, as with the facade's macros.
pub(crate) struct UpstreamMeters {
    /// The address of the recorder the handles belong to.
    recorder: usize,
    /// Counter and histogram per known outcome, in the order of [`OUTCOMES`].
    handles: [(metrics::Counter, metrics::Histogram); 3],
}

/// The outcomes with pre-registered series.
const OUTCOMES: [&str; 3] = ["ok", "error", "timeout"];

/// The address of `recorder`, to tell recorders apart.
fn recorder_id(recorder: &dyn metrics::Recorder) -> usize {
    std::ptr::from_ref(recorder).cast::<()>() as usize
}

impl UpstreamMeters {
    /// Registers the upstream series with the current recorder.
    pub(crate) fn register() -> Self {
        metrics::with_recorder(|recorder| {
            let handles = OUTCOMES.map(|outcome| match static_keys(outcome) {
                Some((count, time)) => (
                    recorder.register_counter(count, &METADATA),
                    recorder.register_histogram(time, &METADATA),
                ),
                // Every entry of OUTCOMES has static keys.
                None => (metrics::Counter::noop(), metrics::Histogram::noop()),
            });
            Self {
                recorder: recorder_id(recorder),
                handles,
            }
        })
    }

    /// Records one upstream exchange; `outcome` is `ok`, `error` or `timeout`.
    pub(crate) fn record(&self, outcome: &'static str, elapsed: Duration) {
        let registered = OUTCOMES.iter().position(|o| *o == outcome);
        metrics::with_recorder(|recorder| match registered {
            Some(i) if recorder_id(recorder) == self.recorder => {
                let (count, time) = &self.handles[i];
                count.increment(1);
                time.record(elapsed.as_secs_f64());
            }
            _ => upstream(outcome, elapsed),
        });
    }
}

impl std::fmt::Debug for UpstreamMeters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamMeters").finish_non_exhaustive()
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
    fn meters_record_in_the_recorder_current_at_each_exchange() {
        let built_with = PrometheusBuilder::new().build_recorder();
        let later = PrometheusBuilder::new().build_recorder();
        let meters = metrics::with_local_recorder(&built_with, UpstreamMeters::register);
        metrics::with_local_recorder(&built_with, || {
            meters.record("ok", Duration::from_millis(2));
            meters.record("something_new", Duration::ZERO);
        });
        metrics::with_local_recorder(&later, || {
            meters.record("timeout", Duration::from_secs(30));
            meters.record("ok", Duration::from_millis(3));
        });
        let first = built_with.handle().render();
        let second = later.handle().render();
        for (text, line) in [
            (
                &first,
                r#"uma_proxy_upstream_requests_total{outcome="ok"} 1"#,
            ),
            (
                &first,
                r#"uma_proxy_upstream_requests_total{outcome="something_new"} 1"#,
            ),
            (
                &second,
                r#"uma_proxy_upstream_requests_total{outcome="timeout"} 1"#,
            ),
            (
                &second,
                r#"uma_proxy_upstream_requests_total{outcome="ok"} 1"#,
            ),
            (
                &second,
                r#"uma_proxy_upstream_duration_seconds_count{outcome="ok"} 1"#,
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // Registered up front: the outcome nobody met yet is there, at zero.
        let zero = r#"uma_proxy_upstream_requests_total{outcome="timeout"} 0"#;
        assert!(first.lines().any(|l| l == zero), "no `{zero}` in\n{first}");
    }

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
