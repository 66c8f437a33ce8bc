//! The fault schedule: the AS's state changes every phase, through uma-test-as's fault knobs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uma_test_as::{Endpoint, TestAs};

use crate::Run;
use crate::tokens::Class;

/// The state of the AS during one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Fault {
    /// Answers normally.
    Healthy,
    /// Closes the connection of every call without answering (`set_down`).
    Refusing,
    /// Answers every call `503` (`fail_next`, kept topped up).
    Failing,
    /// Waits `--hang` seconds before answering (`set_latency`).
    Hanging,
}

/// The cycle of phases.
const CYCLE: [Fault; 6] = [
    Fault::Healthy,
    Fault::Refusing,
    Fault::Healthy,
    Fault::Failing,
    Fault::Healthy,
    Fault::Hanging,
];

/// The AS endpoints the proxy calls while serving, all faulted together.
const ENDPOINTS: [Endpoint; 3] = [
    Endpoint::Token,
    Endpoint::Introspection,
    Endpoint::Permission,
];

impl Fault {
    /// The fault of phase `id`.
    pub(crate) fn of(id: u64) -> Self {
        CYCLE[usize::try_from(id % CYCLE.len() as u64).unwrap_or(0)]
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Refusing => "refusing",
            Self::Failing => "503",
            Self::Hanging => "hanging",
        }
    }
}

/// How the schedule runs.
#[derive(Debug)]
pub(crate) struct Schedule {
    pub(crate) phases: u64,
    pub(crate) phase_ms: u64,
    pub(crate) hang: Duration,
    pub(crate) proxy: SocketAddr,
    /// How long a recovery probe keeps trying (the healthy phase that follows an outage).
    pub(crate) max_probe: Duration,
}

fn as_calls(auth: &TestAs) -> u64 {
    ENDPOINTS.iter().map(|e| auth.count(*e)).sum()
}

/// Canned 503s queued ahead of the calls during a failing phase.
const FAIL_AHEAD: u64 = 300;
const FAIL_CHUNK: u32 = 1000;

/// The canned 503s of a failing phase: how many were queued per endpoint, and the endpoint's
/// call count before the first were.
#[derive(Debug)]
struct Failing {
    base: [u64; ENDPOINTS.len()],
    queued: [u64; ENDPOINTS.len()],
}

impl Failing {
    /// Queues the first 503s. The counts are read first: a call answered normally in between
    /// counts as consumed, which only makes the top-up come sooner.
    fn start(auth: &TestAs) -> Self {
        let mut failing = Self {
            base: ENDPOINTS.map(|e| auth.count(e)),
            queued: [0; ENDPOINTS.len()],
        };
        failing.top_up(auth);
        failing
    }

    /// Canned answers are consumed one per call: queues more wherever fewer than
    /// [`FAIL_AHEAD`] are left.
    fn top_up(&mut self, auth: &TestAs) {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            let consumed = auth.count(*e) - self.base[i];
            if self.queued[i].saturating_sub(consumed) < FAIL_AHEAD {
                auth.fail_next(*e, FAIL_CHUNK, 503);
                self.queued[i] += u64::from(FAIL_CHUNK);
            }
        }
    }

    /// Keeps every faulted endpoint answering 503 until `until`.
    async fn keep_until(mut self, auth: &TestAs, until: Instant) {
        while Instant::now() < until {
            self.top_up(auth);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Consumes the canned 503s left after a failing phase, so the AS answers normally again:
/// POSTs to each endpoint until one gets something other than 503.
async fn drain_failures(auth: &TestAs) {
    for e in ENDPOINTS {
        let url = auth.endpoint_url(e);
        let Ok(uri) = url.parse::<http::Uri>() else {
            continue;
        };
        let Some(addr) = uri
            .authority()
            .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
        else {
            continue;
        };
        for _ in 0..=(FAIL_AHEAD + u64::from(FAIL_CHUNK)) * 2 {
            match crate::load::post_empty(addr, uri.path()).await {
                Ok(503) => {}
                _ => break,
            }
        }
    }
}

fn apply(auth: &TestAs, fault: Fault, on: bool, hang: Duration) {
    for e in ENDPOINTS {
        match fault {
            Fault::Refusing => auth.set_down(e, on),
            Fault::Hanging => auth.set_latency(e, if on { hang } else { Duration::ZERO }),
            Fault::Healthy | Fault::Failing => {}
        }
    }
}

/// Sends a fresh RPT (never cached) through the proxy every 10 ms until it is allowed;
/// records how long that took after `back`.
async fn probe_recovery(
    run: Arc<Run>,
    auth: Arc<TestAs>,
    proxy: SocketAddr,
    fault: Fault,
    max: Duration,
) {
    let back = Instant::now();
    let slot = run
        .tokens
        .slot(run.tokens.mint(&auth, &run.resource_id, Class::Probe));
    let token = slot.token.clone();
    while back.elapsed() < max {
        if let Ok((200, _)) = crate::load::get(proxy, "/albums/probe", Some(&token)).await {
            run.report
                .recovery(fault, Some(back.elapsed().as_secs_f64()));
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.report.recovery(fault, None);
}

/// Runs the phases; `stop_load` is awaited at the end of the last one, before its outage (if
/// any) is closed.
pub(crate) async fn run_schedule(
    run: &Arc<Run>,
    auth: &Arc<TestAs>,
    schedule: &Schedule,
    stop_load: impl Future<Output = ()>,
) {
    let start = Instant::now();
    let start_ms = run.now_ms();
    let mut stop_load = std::pin::pin!(stop_load);
    let mut phase_calls_base = as_calls(auth);
    let mut probes = tokio::task::JoinSet::new();
    run.report.phase(0, |p| {
        p.fault = Some(Fault::Healthy);
        p.start_ms = start_ms;
    });
    let mut failing = None;
    for id in 0..schedule.phases {
        let end = start + Duration::from_millis((id + 1) * schedule.phase_ms);
        match failing.take() {
            Some(f) => Failing::keep_until(f, auth, end).await,
            None => tokio::time::sleep_until(end.into()).await,
        }
        let fault = Fault::of(id);
        let last = id + 1 == schedule.phases;
        if last {
            stop_load.as_mut().await;
        }
        // Close phase `id`.
        let calls = as_calls(auth);
        let end_ms = run.now_ms();
        run.report.phase(id, |p| {
            p.end_ms = end_ms;
            p.as_calls = calls - phase_calls_base;
        });
        if fault != Fault::Healthy {
            run.report.close_outage(run, id);
        }
        if last {
            apply(auth, fault, false, schedule.hang);
            if fault == Fault::Failing {
                drain_failures(auth).await;
            }
            break;
        }
        // Open phase `id + 1`.
        let next = Fault::of(id + 1);
        if next == Fault::Healthy {
            // The phase changes first, so that no answer given while the AS still fails is
            // judged as a healthy one, then the AS recovers.
            run.phase.store(id + 1, std::sync::atomic::Ordering::SeqCst);
            let run_ms = run.now_ms();
            run.report.phase(id + 1, |p| {
                p.fault = Some(next);
                p.start_ms = run_ms;
            });
            apply(auth, fault, false, schedule.hang);
            if fault == Fault::Failing {
                drain_failures(auth).await;
            }
            phase_calls_base = as_calls(auth);
            if fault != Fault::Healthy {
                probes.spawn(probe_recovery(
                    Arc::clone(run),
                    Arc::clone(auth),
                    schedule.proxy,
                    fault,
                    schedule.max_probe,
                ));
            }
        } else {
            // The AS fails first, then the phase changes: no answer counted in the outage
            // was given by a healthy AS.
            apply(auth, next, true, schedule.hang);
            if next == Fault::Failing {
                failing = Some(Failing::start(auth));
            }
            phase_calls_base = as_calls(auth);
            let run_ms = run.now_ms();
            run.report.phase(id + 1, |p| {
                p.fault = Some(next);
                p.start_ms = run_ms;
            });
            run.phase.store(id + 1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    while probes.join_next().await.is_some() {}
}
