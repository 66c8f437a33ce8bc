//! What the run observed, and the checks made of it at the end.

use std::collections::HashMap;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::faults::Fault;
use crate::tokens::Slot;
use crate::{Args, Run};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a load request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A valid RPT with `view` on the album.
    Valid,
    /// A recently revoked RPT.
    Revoked,
    /// A token the AS never issued.
    Unknown,
    /// An RPT granting `edit` only.
    WrongScope,
    /// No `Authorization` header.
    NoToken,
    /// The public route.
    Public,
    /// A path no resource maps.
    Unmapped,
}

/// How a request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Answer {
    /// 200.
    Allowed,
    /// 401 (a UMA challenge).
    Challenged,
    /// 403 with a `Warning` header (the AS could not be asked).
    Unreachable,
    /// 403 without one.
    Forbidden,
    /// Any other status.
    Status(u16),
    /// No answer: the connection failed or the client gave up.
    Failed,
}

impl Answer {
    pub(crate) fn of(status: u16, warning: bool) -> Self {
        match (status, warning) {
            (200, _) => Self::Allowed,
            (401, _) => Self::Challenged,
            (403, true) => Self::Unreachable,
            (403, false) => Self::Forbidden,
            (s, _) => Self::Status(s),
        }
    }

    fn label(self) -> String {
        match self {
            Self::Allowed => "200".into(),
            Self::Challenged => "401".into(),
            Self::Unreachable => "403+Warning".into(),
            Self::Forbidden => "403".into(),
            Self::Status(s) => s.to_string(),
            Self::Failed => "no answer".into(),
        }
    }
}

/// The checks, in the order printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Check {
    /// The upstream only received requests with a valid decision behind them.
    Forwarded,
    /// Unknown, revoked (past the bound), wrong-scope, token-less and unmapped requests
    /// were never allowed.
    Refused,
    /// Every answer during an outage was 401, 403 + Warning, or a 200 backed by a recent
    /// allowed answer from a healthy AS.
    FailClosed,
    /// Every request got an answer.
    Answered,
    /// The public route answered 200 throughout.
    Public,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Self::Forwarded => "nothing forwarded without a valid decision",
            Self::Refused => "invalid, revoked and unmapped requests refused",
            Self::FailClosed => "fail-closed during outages",
            Self::Answered => "every request answered",
            Self::Public => "public route served throughout",
        }
    }
}

#[derive(Debug, Default)]
struct Violations {
    count: u64,
    examples: Vec<String>,
}

/// One phase of the fault schedule.
#[derive(Debug, Clone, Default)]
pub(crate) struct PhaseRecord {
    pub(crate) fault: Option<Fault>,
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    /// Calls the AS received during the phase (faulted endpoints together).
    pub(crate) as_calls: u64,
}

/// One sample of the proxy process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) t_ms: u64,
    /// The phase the AS was in when the sample was taken.
    pub(crate) phase: u64,
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
}

/// Latency buckets: one per millisecond up to this many, the last one for anything slower.
const LATENCY_BUCKETS: usize = 20_000;

#[derive(Debug)]
struct Latencies(Vec<u64>);

impl Latencies {
    fn new() -> Self {
        Self(vec![0; LATENCY_BUCKETS])
    }

    fn add(&mut self, ms: u64) {
        let i = usize::try_from(ms)
            .unwrap_or(usize::MAX)
            .min(LATENCY_BUCKETS - 1);
        self.0[i] += 1;
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        None
    }
}

/// What answers are counted by.
type AnswerKey = (Option<Fault>, Kind, Answer);

/// A 200 during an outage waiting to be justified once the outage ends.
#[derive(Debug)]
struct Pending {
    phase: u64,
    slot: std::sync::Arc<Slot>,
    recv_ms: u64,
}

/// Everything recorded during the run.
#[derive(Debug)]
pub(crate) struct Report {
    /// Answers counted by the phase's fault (`None`: the request saw two phases), the
    /// request's kind and the answer.
    answers: Mutex<HashMap<AnswerKey, u64>>,
    latencies: Mutex<HashMap<Option<Fault>, Latencies>>,
    violations: Mutex<HashMap<Check, Violations>>,
    pending: Mutex<Vec<Pending>>,
    justified: AtomicU64,
    phases: Mutex<Vec<PhaseRecord>>,
    log_lines: Vec<AtomicU64>,
    log_messages: Mutex<HashMap<(String, String), u64>>,
    panics: AtomicU64,
    recoveries: Mutex<Vec<(Fault, Option<f64>)>>,
    samples: Mutex<Vec<Sample>>,
    scrapes: AtomicU64,
    failed_scrapes: AtomicU64,
    forwarded_protected: AtomicU64,
    forwarded_public: AtomicU64,
}

impl Report {
    pub(crate) fn new(phases: u64) -> Self {
        let phases = usize::try_from(phases).unwrap_or(0);
        Self {
            answers: Mutex::default(),
            latencies: Mutex::default(),
            violations: Mutex::default(),
            pending: Mutex::default(),
            justified: AtomicU64::new(0),
            phases: Mutex::new(vec![PhaseRecord::default(); phases]),
            log_lines: (0..phases).map(|_| AtomicU64::new(0)).collect(),
            log_messages: Mutex::default(),
            panics: AtomicU64::new(0),
            recoveries: Mutex::default(),
            samples: Mutex::default(),
            scrapes: AtomicU64::new(0),
            failed_scrapes: AtomicU64::new(0),
            forwarded_protected: AtomicU64::new(0),
            forwarded_public: AtomicU64::new(0),
        }
    }

    pub(crate) fn violation(&self, check: Check, what: String) {
        let mut all = lock(&self.violations);
        let v = all.entry(check).or_default();
        v.count += 1;
        if v.examples.len() < 5 {
            v.examples.push(what);
        }
    }

    pub(crate) fn forwarded_protected(&self) {
        self.forwarded_protected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forwarded_public(&self) {
        self.forwarded_public.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn phase(&self, id: u64, update: impl FnOnce(&mut PhaseRecord)) {
        if let Some(p) = lock(&self.phases).get_mut(usize::try_from(id).unwrap_or(usize::MAX)) {
            update(p);
        }
    }

    pub(crate) fn log_line(&self, phase: u64, level: &str, message: &str) {
        if let Some(n) = self
            .log_lines
            .get(usize::try_from(phase).unwrap_or(usize::MAX))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&self.log_messages)
            .entry((level.to_owned(), message.to_owned()))
            .or_default() += 1;
    }

    pub(crate) fn panic_seen(&self) {
        self.panics.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn recovery(&self, fault: Fault, seconds: Option<f64>) {
        lock(&self.recoveries).push((fault, seconds));
    }

    pub(crate) fn sample(&self, sample: Sample) {
        lock(&self.samples).push(sample);
    }

    pub(crate) fn scrape(&self, ok: bool) {
        if ok {
            self.scrapes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed_scrapes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records one answer to a load request and checks what can be checked at once.
    #[allow(
        clippy::too_many_arguments,
        reason = "one request's facts, recorded in one place"
    )]
    pub(crate) fn answer(
        &self,
        run: &Run,
        kind: Kind,
        slot: Option<&std::sync::Arc<Slot>>,
        answer: Answer,
        (sent_phase, sent_ms): (u64, u64),
        (recv_phase, recv_ms): (u64, u64),
    ) {
        // A request that saw two phases is counted but judged by neither.
        let fault = (sent_phase == recv_phase).then(|| Fault::of(sent_phase));
        *lock(&self.answers)
            .entry((fault, kind, answer))
            .or_default() += 1;
        lock(&self.latencies)
            .entry(fault)
            .or_insert_with(Latencies::new)
            .add(recv_ms.saturating_sub(sent_ms));

        if answer == Answer::Failed {
            self.violation(
                Check::Answered,
                format!(
                    "a {kind:?} request sent at {:.1} s got no answer",
                    sent_ms as f64 / 1e3
                ),
            );
            return;
        }
        if kind == Kind::Public {
            if answer != Answer::Allowed {
                self.violation(
                    Check::Public,
                    format!("the public route answered {}", answer.label()),
                );
            }
            return;
        }
        if answer == Answer::Allowed {
            let late_revoked = slot
                .and_then(|s| s.revoked_ms())
                .filter(|&r| recv_ms.saturating_sub(r) > run.revoke_bound_ms);
            match (kind, late_revoked) {
                (Kind::Valid | Kind::Revoked, None) => {}
                (Kind::Valid | Kind::Revoked, Some(r)) => {
                    self.violation(
                        Check::Refused,
                        format!(
                            "an RPT revoked {:.1} s earlier was allowed",
                            (recv_ms - r) as f64 / 1e3
                        ),
                    );
                    return;
                }
                _ => {
                    self.violation(Check::Refused, format!("a {kind:?} request was allowed"));
                    return;
                }
            }
        }
        // An RPT allowed on a request sent while the AS was healthy: what justifies a cached
        // answer during the next outage (the answer may arrive after the outage began).
        if answer == Answer::Allowed
            && Fault::of(sent_phase) == Fault::Healthy
            && let Some(slot) = slot
        {
            slot.allowed_at(recv_ms);
        }
        if let Some(fault) = fault
            && fault != Fault::Healthy
        {
            self.outage_answer(run, kind, slot, answer, sent_phase, recv_ms);
        }
    }

    fn outage_answer(
        &self,
        run: &Run,
        kind: Kind,
        slot: Option<&std::sync::Arc<Slot>>,
        answer: Answer,
        phase: u64,
        recv_ms: u64,
    ) {
        match (kind, answer) {
            (_, Answer::Challenged | Answer::Unreachable) | (Kind::Unmapped, Answer::Forbidden) => {
            }
            (Kind::Valid | Kind::Revoked, Answer::Allowed) => {
                let Some(slot) = slot else { return };
                if Self::justified(run, slot, recv_ms) {
                    self.justified.fetch_add(1, Ordering::Relaxed);
                } else {
                    // An answer to a request sent just before the outage may not be recorded
                    // yet: judged when the phase ends.
                    lock(&self.pending).push(Pending {
                        phase,
                        slot: std::sync::Arc::clone(slot),
                        recv_ms,
                    });
                }
            }
            _ => self.violation(
                Check::FailClosed,
                format!(
                    "a {kind:?} request during a {} phase got {}",
                    Fault::of(phase).name(),
                    answer.label()
                ),
            ),
        }
    }

    fn justified(run: &Run, slot: &Slot, recv_ms: u64) -> bool {
        slot.last_ok_ms()
            .is_some_and(|ok| recv_ms.saturating_sub(ok) <= run.justify_ms)
    }

    /// Judges the 200s of outage phase `phase` that could not be justified at once.
    pub(crate) fn close_outage(&self, run: &Run, phase: u64) {
        let pending: Vec<Pending> = {
            let mut all = lock(&self.pending);
            let (now, later) = all.drain(..).partition(|p| p.phase == phase);
            *all = later;
            now
        };
        for p in pending {
            if Self::justified(run, &p.slot, p.recv_ms) {
                self.justified.fetch_add(1, Ordering::Relaxed);
            } else {
                self.violation(
                    Check::FailClosed,
                    format!(
                        "an RPT was allowed at {:.1} s during a {} phase without a recent \
                         allowed answer from a healthy AS (last one: {})",
                        p.recv_ms as f64 / 1e3,
                        Fault::of(phase).name(),
                        p.slot
                            .last_ok_ms()
                            .map_or("never".to_owned(), |t| format!("{:.1} s", t as f64 / 1e3))
                    ),
                );
            }
        }
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Median of the first and of the last third of `values`. Medians rather than means: the
/// hanging phases hold extra connections (and buffers) for a few seconds, which says nothing
/// about a leak.
fn thirds(values: &[f64]) -> Option<(f64, f64)> {
    let n = values.len() / 3;
    if n == 0 {
        return None;
    }
    let median = |s: &[f64]| {
        let mut s = s.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    Some((median(&values[..n]), median(&values[values.len() - n..])))
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "INFO",
    }
}

/// Prints the figures and the checks; true when every check passed.
pub(crate) fn evaluate(
    run: &Run,
    args: &Args,
    load_ms: u64,
    exit: &Result<ExitStatus, String>,
    metrics: Option<&str>,
) -> bool {
    let r = &run.report;
    let answers = lock(&r.answers);
    let total: u64 = answers.values().sum();
    let secs = load_ms as f64 / 1e3;
    println!(
        "== load: {total} requests in {secs:.0} s ({:.0}/s); {} forwarded to protected routes, \
         {} to the public one; {} RPTs revoked",
        total as f64 / secs.max(1e-3),
        r.forwarded_protected.load(Ordering::Relaxed),
        r.forwarded_public.load(Ordering::Relaxed),
        run.tokens.revocations()
    );
    let latencies = lock(&r.latencies);
    for fault in [
        Some(Fault::Healthy),
        Some(Fault::Refusing),
        Some(Fault::Failing),
        Some(Fault::Hanging),
        None,
    ] {
        let mut by_answer: Vec<(Answer, u64)> = Vec::new();
        for (&(f, _, a), &n) in answers.iter() {
            if f == fault {
                match by_answer.iter_mut().find(|(x, _)| *x == a) {
                    Some((_, m)) => *m += n,
                    None => by_answer.push((a, n)),
                }
            }
        }
        by_answer.sort();
        let name = fault.map_or("straddling two phases", Fault::name);
        let n: u64 = by_answer.iter().map(|(_, n)| n).sum();
        let lat = latencies.get(&fault);
        let q = |q| {
            lat.and_then(|l| l.quantile(q))
                .map_or("-".to_owned(), |v| v.to_string())
        };
        println!(
            "  {name:<22} {n:>9} answers: {}; latency p50 {} ms, p99 {} ms, max {} ms",
            by_answer
                .iter()
                .map(|(a, n)| format!("{} {n}", a.label()))
                .collect::<Vec<_>>()
                .join(", "),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
    drop(latencies);
    drop(answers);

    // Phases: AS calls and log lines.
    let phases = lock(&r.phases).clone();
    let mut outage_secs = 0.0;
    let mut outage_lines = 0u64;
    let mut outage_calls = 0u64;
    let mut max_calls = 0u64;
    let mut max_calls_phase = String::new();
    println!("== phases (AS calls: token, introspection and permission endpoints together)");
    for (i, p) in phases.iter().enumerate() {
        let Some(fault) = p.fault else { continue };
        let secs = p.end_ms.saturating_sub(p.start_ms) as f64 / 1e3;
        let lines = r.log_lines[i].load(Ordering::Relaxed);
        println!(
            "  phase {i:>3} {:<8} {:>6.1}-{:>6.1} s: {:>8} AS calls ({:>8.1}/s), {:>8} log lines ({:.1}/s)",
            fault.name(),
            p.start_ms as f64 / 1e3,
            p.end_ms as f64 / 1e3,
            p.as_calls,
            p.as_calls as f64 / secs.max(1e-3),
            lines,
            lines as f64 / secs.max(1e-3)
        );
        if fault != Fault::Healthy {
            outage_secs += secs;
            outage_lines += lines;
            outage_calls += p.as_calls;
            if p.as_calls >= max_calls {
                max_calls = p.as_calls;
                max_calls_phase = format!("phase {i}, {}", fault.name());
            }
        }
    }
    let mut messages: Vec<((String, String), u64)> = lock(&r.log_messages)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    messages.sort_by_key(|m| std::cmp::Reverse(m.1));
    println!("== proxy log: most frequent messages over the whole run");
    for ((level, message), n) in messages.iter().take(8) {
        println!("  {n:>9} {level:<5} {message}");
    }

    // Memory and descriptors.
    let samples = lock(&r.samples).clone();
    println!("== proxy process over time (VmRSS, open file descriptors)");
    let step = (samples.len() / 12).max(1);
    for s in samples.iter().step_by(step) {
        println!(
            "  t={:>6.0} s  RSS {:>7.1} MiB  fds {:>4}",
            s.t_ms as f64 / 1e3,
            mib(s.rss_kib as f64),
            s.fds
        );
    }
    if let Some(s) = samples.last() {
        println!(
            "  t={:>6.0} s  RSS {:>7.1} MiB  fds {:>4}  (last sample)",
            s.t_ms as f64 / 1e3,
            mib(s.rss_kib as f64),
            s.fds
        );
    }
    // A run shorter than twice the settling time compares its second half. Only samples
    // taken in the second half of a healthy phase are compared: an outage holds connections
    // and buffers for its own length (a hanging AS holds every uncached request open), so a
    // comparison that mixed phases would measure where in the cycle each third happened to
    // fall, not a leak. What leaks stays leaked into the next healthy phase.
    let settle = args.settle.min(load_ms / 2000);
    let phases = lock(&r.phases).clone();
    let settled: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_ms >= settle * 1000)
        .filter(|s| {
            usize::try_from(s.phase)
                .ok()
                .and_then(|i| phases.get(i))
                .is_some_and(|p| {
                    p.fault == Some(Fault::Healthy) && s.t_ms >= p.start_ms + args.phase * 500
                })
        })
        .collect();
    let rss: Vec<f64> = settled.iter().map(|s| s.rss_kib as f64).collect();
    let fds: Vec<f64> = settled.iter().map(|s| s.fds as f64).collect();

    if let Some(text) = metrics {
        println!("== /metrics at the end (selected series)");
        for line in text.lines().filter(|l| {
            l.starts_with("uma_decisions_total")
                || l.starts_with("uma_introspection_requests_total")
                || l.starts_with("uma_cache_")
                || l.starts_with("uma_tickets_total")
                || l.starts_with("uma_as_")
                || l.starts_with("uma_breaker")
        }) {
            println!("  {line}");
        }
    }
    println!(
        "== scrapes of /metrics during the run: {} ok, {} failed",
        r.scrapes.load(Ordering::Relaxed),
        r.failed_scrapes.load(Ordering::Relaxed)
    );

    // The checks.
    println!("== checks ({:?})", args.mode);
    let mut all_pass = true;
    // `None`: a figure whose bound is off, printed as INFO.
    let mut report = |pass: Option<bool>, name: &str, detail: String| {
        all_pass &= pass.unwrap_or(true);
        println!("{} {name}: {detail}", verdict(pass));
    };
    let violations = lock(&r.violations);
    for check in [
        Check::Forwarded,
        Check::Refused,
        Check::FailClosed,
        Check::Answered,
        Check::Public,
    ] {
        let v = violations.get(&check);
        let count = v.map_or(0, |v| v.count);
        let detail = match check {
            Check::FailClosed => format!(
                "{count} violations; {} allowed answers during outages backed by a recent \
                 allowed answer from a healthy AS (within {:.0} s)",
                r.justified.load(Ordering::Relaxed),
                run.justify_ms as f64 / 1e3
            ),
            Check::Refused => format!(
                "{count} violations (revoked RPTs may pass for {:.0} s: max_ttl + \
                 stale_if_error + AS timeout + 1 s)",
                run.revoke_bound_ms as f64 / 1e3
            ),
            _ => format!("{count} violations"),
        };
        report(Some(count == 0), check.name(), detail);
        if let Some(v) = v {
            for e in &v.examples {
                println!("    e.g. {e}");
            }
        }
    }
    drop(violations);

    let recoveries = lock(&r.recoveries).clone();
    let worst = recoveries
        .iter()
        .map(|(_, s)| s.unwrap_or(f64::INFINITY))
        .fold(0.0f64, f64::max);
    let detail = [Fault::Refusing, Fault::Failing, Fault::Hanging]
        .iter()
        .filter_map(|&fault| {
            let mut times: Vec<f64> = recoveries
                .iter()
                .filter(|(f, _)| *f == fault)
                .map(|(_, s)| s.unwrap_or(f64::INFINITY))
                .collect();
            times.sort_by(f64::total_cmp);
            let worst = times.last()?;
            let secs = |s: f64| {
                if s.is_finite() {
                    format!("{s:.3} s")
                } else {
                    "never (within the healthy phase)".to_owned()
                }
            };
            Some(format!(
                "after {} x{}: median {}, worst {}",
                fault.name(),
                times.len(),
                secs(times[times.len() / 2]),
                secs(*worst)
            ))
        })
        .collect::<Vec<_>>()
        .join("; ");
    let pass = if recoveries.is_empty() {
        Some(false)
    } else {
        args.max_recovery.0.map(|b| worst <= b)
    };
    report(
        pass,
        "recovery (first 200 for a fresh RPT after the AS is back)",
        format!(
            "worst {} (bound {}); {detail}",
            if worst.is_finite() {
                format!("{worst:.3} s")
            } else {
                "never".to_owned()
            },
            bound_text(args.max_recovery.0, "s")
        ),
    );

    for (name, values, unit) in [
        ("RSS flat", &rss, "MiB"),
        ("open file descriptors flat", &fds, "descriptors"),
    ] {
        match thirds(values) {
            Some((first, last)) => {
                let change = (last - first) / first * 100.0;
                let pass = (last - first).abs() <= first * args.flat_tolerance / 100.0;
                let (f, l) = if unit == "MiB" {
                    (mib(first), mib(last))
                } else {
                    (first, last)
                };
                report(
                    Some(pass),
                    name,
                    format!(
                        "median of the first third {f:.1} {unit}, of the last third {l:.1} \
                         {unit} ({change:+.1}%, tolerance {}%; {} samples from the second half of healthy phases after {} s)",
                        args.flat_tolerance,
                        values.len(),
                        settle
                    ),
                );
            }
            None => report(Some(false), name, "too few samples".to_owned()),
        }
    }

    let log_rate = outage_lines as f64 / outage_secs.max(1e-3);
    report(
        args.max_outage_log_rate.0.map(|b| log_rate <= b),
        "log lines during outages",
        format!(
            "{log_rate:.1} lines/s over {outage_secs:.0} s of outage, {outage_lines} lines \
             (bound {})",
            bound_text(args.max_outage_log_rate.0, "lines/s")
        ),
    );
    report(
        args.max_outage_as_calls.0.map(|b| max_calls as f64 <= b),
        "AS calls during outages",
        format!(
            "at most {max_calls} in one outage phase ({max_calls_phase}); {outage_calls} over \
             {outage_secs:.0} s of outage, {:.1}/s (bound {})",
            outage_calls as f64 / outage_secs.max(1e-3),
            bound_text(args.max_outage_as_calls.0, "calls per phase")
        ),
    );

    let panics = r.panics.load(Ordering::SeqCst);
    let exit_ok = matches!(exit, Ok(status) if status.success());
    report(
        Some(exit_ok && panics == 0),
        "proxy stopped cleanly",
        format!(
            "{} after SIGTERM; {panics} panic lines in its log",
            match exit {
                Ok(status) => status.to_string(),
                Err(e) => e.clone(),
            }
        ),
    );
    if args.mode == crate::Mode::Scraped {
        let failed = r.failed_scrapes.load(Ordering::Relaxed);
        report(
            Some(failed == 0 && r.scrapes.load(Ordering::Relaxed) > 0),
            "/metrics scraped",
            format!(
                "{} scrapes, {failed} failed",
                r.scrapes.load(Ordering::Relaxed)
            ),
        );
    }
    println!(
        "uma-soak ({:?}): {}",
        args.mode,
        if all_pass {
            "PASS"
        } else {
            "FAIL (see the FAIL lines)"
        }
    );
    all_pass
}

fn bound_text(bound: Option<f64>, unit: &str) -> String {
    match bound {
        Some(b) => format!("{b} {unit}"),
        None => "off".to_owned(),
    }
}
