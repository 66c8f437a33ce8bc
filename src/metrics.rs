//! Metric names and recording helpers for the whole crate, through the [`metrics`] facade.
//!
//! tower-uma records metrics but installs no exporter. Install a recorder in the application
//! (for example `metrics-exporter-prometheus`) and the series below appear; without one every
//! call here is a no-op costing a thread-local read and an atomic load.
//!
//! | Metric | Type | Labels | What is counted |
//! |---|---|---|---|
//! | `uma_cache_hits_total` | counter | — | Requests answered from a fresh positive cache entry. |
//! | `uma_cache_misses_total` | counter | — | Introspection calls started by the cache (one per single-flight group). |
//! | `uma_cache_coalesced_total` | counter | — | Requests that waited for an introspection call another request had started. |
//! | `uma_cache_stale_served_total` | counter | — | Requests answered from an expired positive entry because the AS call failed (stale-if-error). |
//! | `uma_cache_negative_hits_total` | counter | — | Requests answered from the negative (`active: false`) cache. |
//! | `uma_cache_evictions_total` | counter | `cache`: `positive` \| `negative`; `cause`: `expired` \| `size` \| `explicit` \| `replaced` | Entries removed from a cache, by reason: past their stale end (`expired`), evicted for the bound (`size`), forgotten (`explicit`), or stored again (`replaced`). |
//! | `uma_introspection_requests_total` | counter | `outcome`: `active` \| `inactive` \| `unreachable` \| `timeout` \| `status` \| `unparsable` \| `no_pat` | Calls to the AS introspection endpoint, by result (`status`: an answer other than 200). |
//! | `uma_introspection_duration_seconds` | histogram | `outcome`: as above | Latency of those calls, in seconds. |
//! | `uma_tickets_total` | counter | `outcome`: `issued` \| `failed` | Permission-ticket requests to the AS. |
//! | `uma_decisions_total` | counter | `outcome`: `allowed` \| `challenged` \| `unreachable` \| `unmapped` \| `bad_request` \| `method_not_allowed` \| `public` \| `permissive` \| `disabled` \| `denied` (\| `no_tenant` under a `TenantLayer`); `tenant` (only under a `TenantLayer`): a configured tenant's name \| `other` | Access decisions, one per request the layer sees (`denied`: permission exchange refused, `403` without a ticket; `no_tenant`: no tenant took it, `404`). |
//! | `uma_pat_refreshes_total` | counter | `outcome`: `ok` \| `error` | Attempts to obtain a new PAT. |
//! | `uma_as_calls_in_flight` | gauge | — | Calls to the AS in flight (all endpoints), against the layer's cap (`max_as_calls_in_flight`). |
//! | `uma_as_calls_shed_total` | counter | `endpoint`: `token` \| `introspection` \| `permission` \| `resource_registration` \| `jwks` | AS calls not made because the cap was reached (the request was answered `403` + `Warning`). |
//! | `uma_as_calls_short_circuited_total` | counter | `endpoint`: as above | AS calls not made because the endpoint's circuit was open (answered at once, or from a stale entry under stale-if-error). |
//! | `uma_as_breaker_state` | gauge | `endpoint`: as above | The endpoint's circuit: `0` closed, `1` half-open (one probe allowed), `2` open. |
//! | `uma_as_breaker_transitions_total` | counter | `endpoint`: as above; `to`: `open` \| `half_open` \| `closed` | Changes of a circuit's state. |
//! | `uma_resource_resyncs_total` | counter | `outcome`: `registered` \| `found` \| `missing` \| `failed` | Attempts to recover a resource the AS said it does not know (`invalid_resource_id`): registered again from its declaration, found again by name, not listed by the AS, or the AS call failed. |
//! | `uma_shared_cache_hits_total` | counter | — | Local misses answered from the fleet's shared cache on Redis (feature `redis`). |
//! | `uma_shared_cache_misses_total` | counter | — | Local misses the shared cache did not answer. |
//! | `uma_shared_cache_errors_total` | counter | `op`: `get` \| `put` \| `forget` \| `subscribe` | Redis calls that failed or timed out. |
//! | `uma_shared_cache_skipped_total` | counter | — | Redis reads or writes not made: its circuit is open, or the revocation channel is not subscribed. |
//! | `uma_shared_cache_rejected_total` | counter | — | Shared-cache values refused: their MAC did not verify, or they could not be read. |
//! | `uma_shared_cache_revocations_total` | counter | `direction`: `sent` \| `received` | Revocations broadcast and heard on the Redis channel. |
//! | `uma_shared_cache_up` | gauge | — | `1` while Redis answers and the revocation channel is subscribed, else `0`. |
//!
//! A request served through the cache increments exactly one of hits, misses, coalesced and
//! negative hits; a stale serve additionally increments `uma_cache_stale_served_total` (the
//! request was first counted as a miss or coalesced). A disabled cache records no cache
//! metrics.
//!
//! # Why the helpers look like this
//!
//! The facade's macros build their [`Key`] at every call unless name and labels are literals,
//! and a label whose value is a variable costs a `Vec` allocation. The decision counter is
//! recorded on every request, so each helper maps the known label values onto `static` keys
//! (no allocation, no hashing) and falls back to a dynamic key only for a value outside the
//! table above.

use metrics::{Key, Label, Level, Metadata};

use crate::pipeline::Outcome;

/// Counter: requests answered from a fresh positive cache entry.
pub(crate) const CACHE_HITS: &str = "uma_cache_hits_total";
/// Counter: introspection calls started by the cache.
pub(crate) const CACHE_MISSES: &str = "uma_cache_misses_total";
/// Counter: requests coalesced onto another request's introspection call.
pub(crate) const CACHE_COALESCED: &str = "uma_cache_coalesced_total";
/// Counter: stale entries served because the AS call failed.
pub(crate) const CACHE_STALE_SERVED: &str = "uma_cache_stale_served_total";
/// Counter: requests answered from the negative cache.
pub(crate) const CACHE_NEGATIVE_HITS: &str = "uma_cache_negative_hits_total";
/// Counter with labels `cache` and `cause`: entries removed from a cache.
pub(crate) const CACHE_EVICTIONS: &str = "uma_cache_evictions_total";
/// Counter with label `outcome`: introspection calls.
pub(crate) const INTROSPECTION_REQUESTS: &str = "uma_introspection_requests_total";
/// Histogram with label `outcome`: introspection call latency in seconds.
pub(crate) const INTROSPECTION_DURATION: &str = "uma_introspection_duration_seconds";
/// Counter with label `outcome`: permission-ticket requests.
pub(crate) const TICKETS: &str = "uma_tickets_total";
/// Counter with label `outcome`: access decisions.
pub(crate) const DECISIONS: &str = "uma_decisions_total";
/// Counter with label `outcome`: PAT refresh attempts.
pub(crate) const PAT_REFRESHES: &str = "uma_pat_refreshes_total";
/// Gauge: AS calls in flight.
pub(crate) const AS_CALLS_IN_FLIGHT: &str = "uma_as_calls_in_flight";
/// Counter with label `endpoint`: AS calls not made because the cap was reached.
pub(crate) const AS_CALLS_SHED: &str = "uma_as_calls_shed_total";
/// Counter with label `endpoint`: AS calls not made because the circuit was open.
pub(crate) const AS_CALLS_SHORT_CIRCUITED: &str = "uma_as_calls_short_circuited_total";
/// Gauge with label `endpoint`: the circuit's state (0 closed, 1 half-open, 2 open).
pub(crate) const AS_BREAKER_STATE: &str = "uma_as_breaker_state";
/// Counter with labels `endpoint` and `to`: changes of a circuit's state.
pub(crate) const AS_BREAKER_TRANSITIONS: &str = "uma_as_breaker_transitions_total";

/// Counter with label `outcome`: attempts to recover a resource the AS forgot.
pub(crate) const RESOURCE_RESYNCS: &str = "uma_resource_resyncs_total";

/// The label name used by every per-outcome metric.
const OUTCOME: &str = "outcome";
/// The label naming an AS endpoint.
const ENDPOINT: &str = "endpoint";

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A `static` key without labels.
macro_rules! static_key {
    ($name:expr) => {{
        static KEY: Key = Key::from_static_name($name);
        &KEY
    }};
}

/// A function mapping each known value of one label to a `static` key.
macro_rules! label_keys {
    ($(#[$meta:meta])* fn $fn_name:ident($metric:expr, $label:expr) { $($value:literal),+ $(,)? }) => {
        $(#[$meta])*
        fn $fn_name(value: &str) -> Option<&'static Key> {
            match value {
                $($value => {
                    static LABELS: [Label; 1] = [Label::from_static_parts($label, $value)];
                    static KEY: Key = Key::from_static_parts($metric, &LABELS);
                    Some(&KEY)
                })+
                _ => None,
            }
        }
    };
}

/// A counter every request may increment (cache hits, allowed decisions), registered once
/// with the recorder current when the cache or the layer was built, so that a request
/// increments it without a registry lookup, and the allocation of a handle, each time.
///
/// While another recorder is current (one installed after the layer was built, or a test's
/// local recorder), each increment goes to that recorder through its key, as the facade's
/// macros would: every count lands in the recorder current at the time.
pub(crate) struct HotCounter {
    /// The address of the recorder `counter` belongs to.
    recorder: usize,
    counter: metrics::Counter,
    key: Key,
}

impl HotCounter {
    /// Registers `key` with the current recorder.
    fn register(key: Key) -> Self {
        metrics::with_recorder(|recorder| Self {
            recorder: recorder_id(recorder),
            counter: recorder.register_counter(&key, &METADATA),
            key,
        })
    }

    /// `uma_cache_hits_total`.
    pub(crate) fn cache_hits() -> Self {
        Self::register(static_key!(CACHE_HITS).clone())
    }

    /// `uma_decisions_total{outcome="allowed"}`.
    pub(crate) fn allowed_decisions() -> Self {
        match decision_key(Outcome::Allowed.as_str()) {
            Some(key) => Self::register(key.clone()),
            // `allowed` is one of the static keys.
            None => Self::register(static_key!(DECISIONS).clone()),
        }
    }

    /// Increments the counter by one, in the current recorder.
    pub(crate) fn increment(&self) {
        metrics::with_recorder(|recorder| {
            if recorder_id(recorder) == self.recorder {
                self.counter.increment(1);
            } else {
                recorder.register_counter(&self.key, &METADATA).increment(1);
            }
        });
    }
}

impl std::fmt::Debug for HotCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotCounter")
            .field("key", &self.key.name())
            .finish_non_exhaustive()
    }
}

/// The address of `recorder`, to tell recorders apart.
fn recorder_id(recorder: &dyn metrics::Recorder) -> usize {
    std::ptr::from_ref(recorder).cast::<()>() as usize
}

/// Increments a counter by one.
fn increment(key: &Key) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
}

/// Increments a one-label counter, through a `static` key when the value is a known one.
fn increment_labelled(
    known: fn(&str) -> Option<&'static Key>,
    metric: &'static str,
    label: &'static str,
    value: &'static str,
) {
    match known(value) {
        Some(key) => increment(key),
        None => increment(&Key::from_parts(
            metric,
            vec![Label::from_static_parts(label, value)],
        )),
    }
}

/// Sets a gauge to `value`, or moves it by `delta`.
fn gauge(key: &Key, value: GaugeChange) {
    let gauge = metrics::with_recorder(|recorder| recorder.register_gauge(key, &METADATA));
    match value {
        GaugeChange::Set(v) => gauge.set(v),
        GaugeChange::Add(d) => gauge.increment(d),
    }
}

/// How a gauge changes.
#[derive(Clone, Copy)]
enum GaugeChange {
    Set(f64),
    Add(f64),
}

/// Registers the descriptions (and the histogram's unit) of every metric above with the
/// installed recorder, if any. Called whenever an [`IntrospectionCache`] is made, which every
/// layer does once; the helpers work without it.
///
/// [`IntrospectionCache`]: crate::IntrospectionCache
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};

    describe_counter!(
        CACHE_HITS,
        "Requests answered from a fresh positive introspection-cache entry"
    );
    describe_counter!(
        CACHE_MISSES,
        "Introspection calls started by the cache (one per single-flight group)"
    );
    describe_counter!(
        CACHE_COALESCED,
        "Requests that waited for an introspection call started by another request"
    );
    describe_counter!(
        CACHE_STALE_SERVED,
        "Expired positive entries served because the AS call failed (stale-if-error)"
    );
    describe_counter!(
        CACHE_NEGATIVE_HITS,
        "Requests answered from the negative (inactive token) cache"
    );
    describe_counter!(
        CACHE_EVICTIONS,
        "Entries removed from an introspection cache, by cache and cause"
    );
    describe_counter!(
        INTROSPECTION_REQUESTS,
        "Calls to the AS introspection endpoint, by outcome"
    );
    describe_histogram!(
        INTROSPECTION_DURATION,
        Unit::Seconds,
        "Latency of AS introspection calls, by outcome"
    );
    describe_counter!(TICKETS, "Permission-ticket requests to the AS, by outcome");
    describe_counter!(DECISIONS, "Access decisions made by the layer, by outcome");
    describe_counter!(
        PAT_REFRESHES,
        "Attempts to obtain a new protection API token, by outcome"
    );
    metrics::describe_gauge!(
        AS_CALLS_IN_FLIGHT,
        "Calls to the authorization server in flight, all endpoints together"
    );
    describe_counter!(
        AS_CALLS_SHED,
        "Authorization server calls not made because too many were in flight, by endpoint"
    );
    describe_counter!(
        AS_CALLS_SHORT_CIRCUITED,
        "Authorization server calls not made because the endpoint's circuit was open"
    );
    metrics::describe_gauge!(
        AS_BREAKER_STATE,
        "Circuit breaker state per authorization server endpoint: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        AS_BREAKER_TRANSITIONS,
        "Circuit breaker state changes per authorization server endpoint, by new state"
    );
    describe_counter!(
        RESOURCE_RESYNCS,
        "Attempts to register again, or find again, a resource the AS said it does not know"
    );
}

/// One introspection call started by the cache.
pub(crate) fn cache_miss() {
    increment(static_key!(CACHE_MISSES));
}

/// One request coalesced onto an introspection call already in flight.
pub(crate) fn cache_coalesced() {
    increment(static_key!(CACHE_COALESCED));
}

/// One expired positive entry served because the AS call failed.
pub(crate) fn cache_stale_served() {
    increment(static_key!(CACHE_STALE_SERVED));
}

/// One request answered from the negative cache.
pub(crate) fn cache_negative_hit() {
    increment(static_key!(CACHE_NEGATIVE_HITS));
}

/// One entry removed from the `cache` (`"positive"` or `"negative"`) for `cause`
/// (`"expired"`, `"size"`, `"explicit"` or `"replaced"`).
pub(crate) fn cache_eviction(cache: &'static str, cause: &'static str) {
    macro_rules! pairs {
        ($($c:literal, $r:literal);+ $(;)?) => {
            match (cache, cause) {
                $(($c, $r) => {
                    static LABELS: [Label; 2] =
                        [Label::from_static_parts("cache", $c), Label::from_static_parts("cause", $r)];
                    static KEY: Key = Key::from_static_parts(CACHE_EVICTIONS, &LABELS);
                    increment(&KEY);
                })+
                _ => increment(&Key::from_parts(
                    CACHE_EVICTIONS,
                    vec![Label::from_static_parts("cache", cache), Label::from_static_parts("cause", cause)],
                )),
            }
        };
    }
    pairs!(
        "positive", "expired"; "positive", "size"; "positive", "explicit"; "positive", "replaced";
        "negative", "expired"; "negative", "size"; "negative", "explicit"; "negative", "replaced";
    );
}

label_keys!(
    /// Static keys of `uma_introspection_requests_total`.
    fn introspection_request_key(INTROSPECTION_REQUESTS, OUTCOME) {
        "active", "inactive", "unreachable", "timeout", "status",
        "unparsable", "no_pat",
    }
);
label_keys!(
    /// Static keys of `uma_introspection_duration_seconds`.
    fn introspection_duration_key(INTROSPECTION_DURATION, OUTCOME) {
        "active", "inactive", "unreachable", "timeout", "status",
        "unparsable", "no_pat",
    }
);
label_keys!(
    /// Static keys of `uma_tickets_total`.
    fn ticket_key(TICKETS, OUTCOME) { "issued", "failed" }
);
label_keys!(
    /// Static keys of `uma_decisions_total`.
    fn decision_key(DECISIONS, OUTCOME) {
        "allowed", "challenged", "unreachable", "unmapped", "bad_request", "public", "permissive",
        "disabled", "method_not_allowed", "denied", "misconfigured",
    }
);
label_keys!(
    /// Static keys of `uma_pat_refreshes_total`.
    fn pat_refresh_key(PAT_REFRESHES, OUTCOME) { "ok", "error" }
);
label_keys!(
    /// Static keys of `uma_as_calls_shed_total`.
    fn as_shed_key(AS_CALLS_SHED, ENDPOINT) {
        "token", "introspection", "permission", "resource_registration", "jwks",
    }
);
label_keys!(
    /// Static keys of `uma_as_calls_short_circuited_total`.
    fn as_short_circuited_key(AS_CALLS_SHORT_CIRCUITED, ENDPOINT) {
        "token", "introspection", "permission", "resource_registration", "jwks",
    }
);

/// One introspection call that ended with `outcome` (`"active"`, `"inactive"`, or the error
/// kind: `"unreachable"`, `"timeout"`, `"status"`, `"unparsable"`, `"no_pat"`) after `seconds`.
pub(crate) fn introspection(outcome: &'static str, seconds: f64) {
    increment_labelled(
        introspection_request_key,
        INTROSPECTION_REQUESTS,
        OUTCOME,
        outcome,
    );
    let histogram = |key: &Key| {
        metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
            .record(seconds);
    };
    match introspection_duration_key(outcome) {
        Some(key) => histogram(key),
        None => histogram(&Key::from_parts(
            INTROSPECTION_DURATION,
            vec![Label::from_static_parts(OUTCOME, outcome)],
        )),
    }
}

/// One permission-ticket request that ended with `outcome` (`"issued"` or `"failed"`).
pub(crate) fn ticket(outcome: &'static str) {
    increment_labelled(ticket_key, TICKETS, OUTCOME, outcome);
}

/// One access decision, labelled with [`Outcome::as_str`] (and a tenant's name, for a
/// tenant's layer).
pub(crate) fn decision(outcome: Outcome, meter: &DecisionMeter) {
    match &meter.tenant {
        Some(keys) if outcome == Outcome::Allowed => keys.allowed.increment(),
        Some(keys) => increment(keys.key(outcome)),
        None if outcome == Outcome::Allowed => meter.allowed.increment(),
        None => increment_labelled(decision_key, DECISIONS, OUTCOME, outcome.as_str()),
    }
}

/// How a layer counts its decisions: `allowed` counts its allowed decisions (registered when
/// it was built), `tenant` holds a tenant's keys when the layer is a tenant's.
pub(crate) struct DecisionMeter {
    pub(crate) allowed: HotCounter,
    pub(crate) tenant: Option<TenantKeys>,
}

impl DecisionMeter {
    /// The tenant's name, for the `decided` event.
    pub(crate) fn tenant_name(&self) -> Option<&str> {
        self.tenant.as_ref().map(TenantKeys::name)
    }
}

/// The `uma_decisions_total` keys of one tenant's layer (labels `outcome` and `tenant`), one
/// per outcome, made once when the layer is built: recording one costs what a `static` key
/// costs.
pub(crate) struct TenantKeys {
    keys: Vec<Key>,
    /// Its allowed decisions, the common case, registered once as a plain layer's are.
    allowed: HotCounter,
    /// The `tenant` label, also the `tenant` field of the `decided` event.
    name: Box<str>,
}

impl TenantKeys {
    pub(crate) fn new(tenant: &str) -> Self {
        let keys = Outcome::ALL
            .iter()
            .map(|o| tenant_decision_key(tenant, o.as_str()))
            .collect();
        Self {
            keys,
            allowed: HotCounter::register(tenant_decision_key(tenant, Outcome::Allowed.as_str())),
            name: tenant.into(),
        }
    }

    /// The tenant's label.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn key(&self, outcome: Outcome) -> &Key {
        &self.keys[outcome.index()]
    }
}

/// The `uma_decisions_total` key of `tenant` and `outcome`.
fn tenant_decision_key(tenant: &str, outcome: &'static str) -> Key {
    Key::from_parts(
        DECISIONS,
        vec![
            Label::from_static_parts(OUTCOME, outcome),
            Label::new("tenant", tenant.to_owned()),
        ],
    )
}

/// One decision of the tenants' layer itself (`no_tenant`, or `unreachable` when a lazy
/// tenant cannot be built), under the `tenant` label `tenant`. Rare: the key is made here.
pub(crate) fn tenant_decision(tenant: &str, outcome: &'static str) {
    increment(&tenant_decision_key(tenant, outcome));
}

/// One PAT refresh attempt that ended with `outcome` (`"ok"` or `"error"`).
pub(crate) fn pat_refresh(outcome: &'static str) {
    increment_labelled(pat_refresh_key, PAT_REFRESHES, OUTCOME, outcome);
}

/// One AS call to `endpoint` not made because too many were in flight.
pub(crate) fn as_call_shed(endpoint: &'static str) {
    increment_labelled(as_shed_key, AS_CALLS_SHED, ENDPOINT, endpoint);
}

/// One AS call to `endpoint` not made because its circuit was open.
pub(crate) fn as_call_short_circuited(endpoint: &'static str) {
    increment_labelled(
        as_short_circuited_key,
        AS_CALLS_SHORT_CIRCUITED,
        ENDPOINT,
        endpoint,
    );
}

/// One attempt to recover a resource the AS forgot, ended with `outcome` (`"registered"`,
/// `"found"`, `"missing"` or `"failed"`). Rare: the key is made on each call.
pub(crate) fn resource_resync(outcome: &'static str) {
    increment(&Key::from_parts(
        RESOURCE_RESYNCS,
        vec![Label::from_static_parts(OUTCOME, outcome)],
    ));
}

/// Moves the gauge of AS calls in flight by `delta` (`1.0` or `-1.0`).
pub(crate) fn as_calls_in_flight(delta: f64) {
    gauge(static_key!(AS_CALLS_IN_FLIGHT), GaugeChange::Add(delta));
}

/// Sets `endpoint`'s circuit state gauge (0 closed, 1 half-open, 2 open). Rare: the key is
/// made on each call.
pub(crate) fn as_breaker_state(endpoint: &'static str, value: f64) {
    let key = Key::from_parts(
        AS_BREAKER_STATE,
        vec![Label::from_static_parts(ENDPOINT, endpoint)],
    );
    gauge(&key, GaugeChange::Set(value));
}

/// One change of `endpoint`'s circuit to the state `to`. Rare: the key is made on each call.
pub(crate) fn as_breaker_transition(endpoint: &'static str, to: &'static str) {
    increment(&Key::from_parts(
        AS_BREAKER_TRANSITIONS,
        vec![
            Label::from_static_parts(ENDPOINT, endpoint),
            Label::from_static_parts("to", to),
        ],
    ));
}

/// A recorder that keeps counters and histogram sample counts in memory, for tests.
#[cfg(test)]
pub(crate) mod test_recorder {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    use metrics::{
        Counter, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    /// Counts histogram samples (their values are not kept).
    #[derive(Debug, Default)]
    struct Samples(AtomicU64);

    impl HistogramFn for Samples {
        fn record(&self, _value: f64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A gauge's value, as `f64` bits.
    #[derive(Debug, Default)]
    struct Level(AtomicU64);

    impl GaugeFn for Level {
        fn increment(&self, value: f64) {
            let _ = self
                .0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |bits| {
                    Some((f64::from_bits(bits) + value).to_bits())
                });
        }

        fn decrement(&self, value: f64) {
            self.increment(-value);
        }

        fn set(&self, value: f64) {
            self.0.store(value.to_bits(), Ordering::SeqCst);
        }
    }

    /// Series are named `name{label=value,…}` with labels in the order given.
    #[derive(Debug, Default)]
    pub(crate) struct TestRecorder {
        counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
        gauges: Mutex<HashMap<String, Arc<Level>>>,
        histograms: Mutex<HashMap<String, Arc<Samples>>>,
    }

    fn series(key: &Key) -> String {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        }
    }

    impl TestRecorder {
        /// The value of a counter series (0 when never incremented).
        pub(crate) fn counter(&self, series: &str) -> u64 {
            let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
            counters.get(series).map_or(0, |c| c.load(Ordering::SeqCst))
        }

        /// The value of a gauge series (`None` when never set).
        pub(crate) fn gauge(&self, series: &str) -> Option<f64> {
            let gauges = self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
            gauges
                .get(series)
                .map(|g| f64::from_bits(g.0.load(Ordering::SeqCst)))
        }

        /// How many samples a histogram series received.
        pub(crate) fn samples(&self, series: &str) -> u64 {
            let histograms = self
                .histograms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            histograms
                .get(series)
                .map_or(0, |h| h.0.load(Ordering::SeqCst))
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
            let c: Arc<AtomicU64> = Arc::clone(counters.entry(series(key)).or_default());
            Counter::from_arc(c)
        }

        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let mut gauges = self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
            let g: Arc<Level> = Arc::clone(gauges.entry(series(key)).or_default());
            Gauge::from_arc(g)
        }

        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let mut histograms = self
                .histograms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let h: Arc<Samples> = Arc::clone(histograms.entry(series(key)).or_default());
            Histogram::from_arc(h)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_recorder::TestRecorder;
    use super::*;

    /// A tenant's layer labels each outcome with its tenant, through keys made once.
    #[test]
    fn tenant_decisions_carry_the_tenant_label() {
        let rec = TestRecorder::default();
        metrics::with_local_recorder(&rec, || {
            let acme = DecisionMeter {
                allowed: HotCounter::allowed_decisions(),
                tenant: Some(TenantKeys::new("acme")),
            };
            let single = DecisionMeter {
                allowed: HotCounter::allowed_decisions(),
                tenant: None,
            };
            for outcome in Outcome::ALL {
                decision(outcome, &acme);
            }
            decision(Outcome::Denied, &acme);
            decision(Outcome::Allowed, &single);
            tenant_decision("other", "no_tenant");
        });
        for outcome in Outcome::ALL {
            let want = if outcome == Outcome::Denied { 2 } else { 1 };
            let series = format!("{DECISIONS}{{outcome={},tenant=acme}}", outcome.as_str());
            assert_eq!(rec.counter(&series), want, "{series}");
        }
        assert_eq!(rec.counter("uma_decisions_total{outcome=allowed}"), 1);
        assert_eq!(
            rec.counter("uma_decisions_total{outcome=no_tenant,tenant=other}"),
            1
        );
    }

    #[test]
    fn hot_counters_count_in_the_recorder_current_at_each_increment() {
        let built_with = TestRecorder::default();
        let later = TestRecorder::default();
        let (hits, allowed) = metrics::with_local_recorder(&built_with, || {
            let meter = DecisionMeter {
                allowed: HotCounter::allowed_decisions(),
                tenant: None,
            };
            (HotCounter::cache_hits(), meter)
        });
        // Under the recorder they were registered with: through the handles.
        metrics::with_local_recorder(&built_with, || {
            hits.increment();
            decision(Outcome::Allowed, &allowed);
        });
        // Under another (one installed after the layer was built): through its keys.
        metrics::with_local_recorder(&later, || {
            hits.increment();
            hits.increment();
            decision(Outcome::Allowed, &allowed);
        });
        assert_eq!(built_with.counter(CACHE_HITS), 1);
        assert_eq!(later.counter(CACHE_HITS), 2);
        assert_eq!(
            built_with.counter("uma_decisions_total{outcome=allowed}"),
            1
        );
        assert_eq!(later.counter("uma_decisions_total{outcome=allowed}"), 1);
    }

    #[test]
    fn known_and_unknown_outcomes_are_recorded_with_their_label() {
        let rec = TestRecorder::default();
        metrics::with_local_recorder(&rec, || {
            let meter = DecisionMeter {
                allowed: HotCounter::allowed_decisions(),
                tenant: None,
            };
            decision(Outcome::Allowed, &meter);
            decision(Outcome::Allowed, &meter);
            decision(Outcome::Challenged, &meter);
            ticket("issued");
            ticket("failed");
            pat_refresh("ok");
            introspection("active", 0.01);
            introspection("status", 0.2);
            introspection("brand_new", 0.2);
            HotCounter::cache_hits().increment();
            cache_miss();
            cache_coalesced();
            cache_stale_served();
            cache_negative_hit();
            cache_eviction("positive", "size");
            cache_eviction("negative", "odd");
            as_call_shed("introspection");
            as_call_shed("somewhere");
            as_call_short_circuited("permission");
            as_calls_in_flight(1.0);
            as_calls_in_flight(1.0);
            as_calls_in_flight(-1.0);
            as_breaker_state("token", 2.0);
            as_breaker_transition("token", "open");
            resource_resync("registered");
            resource_resync("failed");
            resource_resync("failed");
            describe();
        });
        assert_eq!(
            rec.counter("uma_resource_resyncs_total{outcome=registered}"),
            1
        );
        assert_eq!(rec.counter("uma_resource_resyncs_total{outcome=failed}"), 2);
        assert_eq!(
            rec.counter("uma_as_calls_shed_total{endpoint=introspection}"),
            1
        );
        assert_eq!(
            rec.counter("uma_as_calls_shed_total{endpoint=somewhere}"),
            1
        );
        assert_eq!(
            rec.counter("uma_as_calls_short_circuited_total{endpoint=permission}"),
            1
        );
        assert_eq!(rec.gauge(AS_CALLS_IN_FLIGHT), Some(1.0));
        assert_eq!(rec.gauge("uma_as_breaker_state{endpoint=token}"), Some(2.0));
        assert_eq!(
            rec.counter("uma_as_breaker_transitions_total{endpoint=token,to=open}"),
            1
        );
        assert_eq!(rec.counter("uma_decisions_total{outcome=allowed}"), 2);
        assert_eq!(rec.counter("uma_decisions_total{outcome=challenged}"), 1);
        assert_eq!(rec.counter("uma_tickets_total{outcome=issued}"), 1);
        assert_eq!(rec.counter("uma_tickets_total{outcome=failed}"), 1);
        assert_eq!(rec.counter("uma_pat_refreshes_total{outcome=ok}"), 1);
        assert_eq!(
            rec.counter("uma_introspection_requests_total{outcome=active}"),
            1
        );
        assert_eq!(
            rec.counter("uma_introspection_requests_total{outcome=status}"),
            1
        );
        assert_eq!(
            rec.counter("uma_introspection_requests_total{outcome=brand_new}"),
            1
        );
        assert_eq!(
            rec.samples("uma_introspection_duration_seconds{outcome=active}"),
            1
        );
        assert_eq!(
            rec.samples("uma_introspection_duration_seconds{outcome=status}"),
            1
        );
        assert_eq!(
            rec.samples("uma_introspection_duration_seconds{outcome=brand_new}"),
            1
        );
        for name in [
            CACHE_HITS,
            CACHE_MISSES,
            CACHE_COALESCED,
            CACHE_STALE_SERVED,
            CACHE_NEGATIVE_HITS,
        ] {
            assert_eq!(rec.counter(name), 1, "{name}");
        }
        assert_eq!(
            rec.counter("uma_cache_evictions_total{cache=positive,cause=size}"),
            1
        );
        assert_eq!(
            rec.counter("uma_cache_evictions_total{cache=negative,cause=odd}"),
            1
        );
    }

    #[test]
    fn every_tabled_label_value_has_a_static_key() {
        let outcomes = [
            "active",
            "inactive",
            "unreachable",
            "timeout",
            "status",
            "unparsable",
            "no_pat",
        ];
        for o in outcomes {
            assert!(introspection_request_key(o).is_some(), "{o}");
            assert!(introspection_duration_key(o).is_some(), "{o}");
        }
        for o in Outcome::ALL.map(Outcome::as_str) {
            let key = decision_key(o).expect("static key");
            assert_eq!(key.name(), DECISIONS);
            assert_eq!(key.labels().map(|l| l.value()).collect::<Vec<_>>(), [o]);
        }
        assert!(ticket_key("issued").is_some() && ticket_key("failed").is_some());
        assert!(pat_refresh_key("ok").is_some() && pat_refresh_key("error").is_some());
        for e in [
            "token",
            "introspection",
            "permission",
            "resource_registration",
            "jwks",
        ] {
            assert!(as_shed_key(e).is_some() && as_short_circuited_key(e).is_some());
        }
        assert!(decision_key("nope").is_none());
    }
}
