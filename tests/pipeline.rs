//! The request pipeline seen from outside, through a real layer, HTTP on loopback and a real
//! `uma-test-as`: one DEBUG event `decided` per request with the documented fields; each
//! enforcement mode applied the same way at every point where a request can be refused; a
//! refused cached answer decided once; declared resources bound to their ids, and unbound
//! when the registry forgets them.
//!
//! Events are captured by a subscriber set as the default of the test's thread: the tests run
//! on tokio's current-thread runtime, so the layer's tasks run on that thread too.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use common::*;
use http::{Method, StatusCode};
use tower_uma::{
    EnforcementMode, ResourceDecl, ResourceMap, Route, UmaLayer, UmaLayerBuilder, clock::Clock,
};
use tracing_subscriber::layer::SubscriberExt as _;
use uma_test_as::{Endpoint, RptPermission, RptSpec};

/// The fields of one event, as text (strings without quotes).
type Fields = BTreeMap<String, String>;

/// Collects the layer's `decided` events.
#[derive(Clone, Default)]
struct Decisions(Arc<Mutex<Vec<Fields>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Decisions {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Visit(Fields);
        impl tracing::field::Visit for Visit {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        if !event.metadata().target().starts_with("tower_uma")
            || *event.metadata().level() != tracing::Level::DEBUG
        {
            return;
        }
        let mut visit = Visit(Fields::new());
        event.record(&mut visit);
        if visit.0.get("message").map(String::as_str) == Some("decided") {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(visit.0);
        }
    }
}

impl Decisions {
    /// Starts capturing on this thread, until the guard is dropped.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let decisions = Self::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(decisions.clone());
        (decisions, tracing::subscriber::set_default(subscriber))
    }

    /// The events captured since the last call.
    fn take(&self) -> Vec<Fields> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The one event of the last request.
    fn one(&self) -> Fields {
        let mut events = self.take();
        assert_eq!(events.len(), 1, "one decision per request: {events:#?}");
        events.remove(0)
    }
}

/// The value of `field` in `event`.
fn field<'a>(event: &'a Fields, field: &str) -> Option<&'a str> {
    event.get(field).map(String::as_str)
}

/// A layer protecting `GET /albums/{id}` (scope `view`) of the resource `album`, declared
/// and so registered at build; and the id the AS gave it.
async fn album_layer(as_: &uma_test_as::TestAs) -> (UmaLayer, String) {
    let map = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(ResourceDecl::new("album", ["view", "delete"]).with_owner("alice"))
            .scopes(Method::GET, ["view"]),
    );
    let layer = discover(as_)
        .await
        .resources(map)
        .build()
        .await
        .expect("builds");
    let album = as_.resource_id("album").expect("registered at build");
    (layer, album)
}

/// docs/protocol.md §11's flow through the layer with `RUST_LOG=tower_uma=debug`: a `401`
/// and its ticket, then a `200` with the RPT, twice; each request prints one decision with
/// what was asked and why it was decided so, and the token only as its fingerprint.
#[tokio::test]
async fn a_401_then_200_flow_logs_one_decision_per_request() {
    let (decisions, _guard) = Decisions::capture();
    let as_ = start_as().await;
    let (layer, album) = album_layer(&as_).await;
    let (url, _) = protected(layer).await;
    let http = http();
    decisions.take();

    let resp = http
        .get(format!("{url}/albums/1"))
        .send()
        .await
        .expect("answer");
    let ticket = expect_challenge(&resp, &as_);
    let challenged = decisions.one();
    for (name, value) in [
        ("method", "GET"),
        ("path", "/albums/1"),
        ("resource", album.as_str()),
        ("scopes", "[\"view\"]"),
        ("outcome", "challenged"),
        ("reason", "no_token"),
    ] {
        assert_eq!(
            field(&challenged, name),
            Some(value),
            "{name}: {challenged:#?}"
        );
    }
    assert_eq!(
        field(&challenged, "token"),
        None,
        "no token, no fingerprint"
    );

    let client = UmaClient::new(&as_);
    let id_token = client.id_token("bob", BOB_PW).await;
    let (status, answer) = client.rpt(&ticket, Some(&id_token)).await;
    assert_eq!(status, StatusCode::OK);
    let rpt = answer["access_token"].as_str().expect("an RPT").to_owned();
    let fingerprint = tower_uma::token::Fingerprint::of(rpt.as_bytes()).to_string();
    for cache in ["miss", "hit"] {
        let resp = get_with(&http, &url, "/albums/1", &rpt).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let allowed = decisions.one();
        for (name, value) in [
            ("outcome", "allowed"),
            ("reason", "granted"),
            ("resource", album.as_str()),
            ("token", fingerprint.as_str()),
            ("cache", cache),
        ] {
            assert_eq!(field(&allowed, name), Some(value), "{name}: {allowed:#?}");
        }
        assert!(
            allowed.values().all(|v| !v.contains(&rpt)),
            "the token itself is never logged"
        );
    }
}

/// A request of each kind the pipeline tells apart, the status each mode gives it, and the
/// outcome it records. The same list runs under each mode: a mode that were read again at
/// some point of the pipeline, with its own rule, would break one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    Unmapped,
    MethodNotListed,
    RefusedPath,
    MalformedCredentials,
    NoToken,
    InactiveToken,
    Granting,
    /// The granting RPT again, for a method whose scope it lacks: a refused cached answer.
    RefusedFromCache,
    /// A new token while introspection fails.
    AsFailing,
    MethodOverride,
}

const KINDS: [Kind; 11] = [
    Kind::Public,
    Kind::Unmapped,
    Kind::MethodNotListed,
    Kind::RefusedPath,
    Kind::MalformedCredentials,
    Kind::NoToken,
    Kind::InactiveToken,
    Kind::Granting,
    Kind::RefusedFromCache,
    Kind::AsFailing,
    Kind::MethodOverride,
];

/// Runs every [`Kind`] through a layer in `mode`; returns each kind's status and outcome,
/// after checking that each request recorded exactly one decision and reached the inner
/// service exactly when it was let through.
async fn run_every_kind(mode: EnforcementMode) -> Vec<(Kind, StatusCode, String)> {
    let (decisions, _guard) = Decisions::capture();
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let map = invoice_map(&r).route(Route::public("/health"));
    let layer = discover(&as_)
        .await
        .resources(map)
        .enforcement(mode)
        .build()
        .await
        .expect("builds");
    let (url, calls) = protected(layer).await;
    let http = http();
    let rpt = rpt_for(&as_, &r, &["read"]);
    decisions.take();
    let mut seen = Vec::new();
    for kind in KINDS {
        let (method, path) = match kind {
            Kind::Public => (Method::GET, "/health"),
            Kind::Unmapped => (Method::GET, "/nothing/here"),
            Kind::MethodNotListed => (Method::DELETE, "/invoices/1"),
            Kind::RefusedPath => (Method::GET, "/invoices/a%2Fb"),
            Kind::RefusedFromCache | Kind::MethodOverride => (Method::POST, "/invoices/1"),
            _ => (Method::GET, "/invoices/1"),
        };
        let mut req = http.request(method, format!("{url}{path}"));
        req = match kind {
            Kind::MalformedCredentials => req.header("authorization", "Bearer not*a*token"),
            Kind::InactiveToken => req.bearer_auth("junk-token"),
            Kind::Granting | Kind::RefusedFromCache => req.bearer_auth(&rpt),
            Kind::AsFailing => {
                as_.fail_next(Endpoint::Introspection, 1, 500);
                req.bearer_auth("never-seen-token")
            }
            Kind::MethodOverride => req
                .bearer_auth(&rpt)
                .header("x-http-method-override", "GET"),
            _ => req,
        };
        let before = calls.get();
        let resp = req.send().await.expect("answer");
        let status = resp.status();
        let event = decisions.one();
        assert_eq!(
            calls.get() - before,
            usize::from(status == StatusCode::OK),
            "{kind:?}: the inner service runs exactly when the request is let through"
        );
        seen.push((
            kind,
            status,
            field(&event, "outcome").unwrap_or("").to_owned(),
        ));
    }
    if mode != EnforcementMode::Enforcing {
        assert_eq!(as_.count(Endpoint::Permission), 0, "no ticket is asked for");
    }
    if mode == EnforcementMode::Disabled {
        assert_eq!(as_.count(Endpoint::Introspection), 0, "no token is checked");
    }
    seen
}

/// Compares [`run_every_kind`]'s results with the expected `(status, outcome)` per kind.
fn expect(seen: &[(Kind, StatusCode, String)], expected: impl Fn(Kind) -> (u16, &'static str)) {
    for (kind, status, outcome) in seen {
        let (want_status, want_outcome) = expected(*kind);
        assert_eq!(
            (status.as_u16(), outcome.as_str()),
            (want_status, want_outcome),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn enforcing_mode_refuses_at_every_point() {
    let seen = run_every_kind(EnforcementMode::Enforcing).await;
    expect(&seen, |kind| match kind {
        Kind::Public => (200, "public"),
        Kind::Unmapped => (403, "unmapped"),
        Kind::MethodNotListed => (405, "method_not_allowed"),
        Kind::RefusedPath | Kind::MalformedCredentials | Kind::MethodOverride => {
            (400, "bad_request")
        }
        Kind::NoToken | Kind::InactiveToken | Kind::RefusedFromCache => (401, "challenged"),
        Kind::Granting => (200, "allowed"),
        Kind::AsFailing => (403, "unreachable"),
    });
}

#[tokio::test]
async fn permissive_mode_lets_through_at_every_point_and_says_so() {
    let seen = run_every_kind(EnforcementMode::Permissive).await;
    expect(&seen, |kind| match kind {
        Kind::Public => (200, "public"),
        Kind::Unmapped => (200, "unmapped"),
        Kind::Granting => (200, "allowed"),
        // Checked before anything else, in every mode.
        Kind::MethodOverride => (400, "bad_request"),
        _ => (200, "permissive"),
    });
}

#[tokio::test]
async fn disabled_mode_checks_nothing_at_any_point() {
    let seen = run_every_kind(EnforcementMode::Disabled).await;
    expect(&seen, |kind| match kind {
        Kind::MethodOverride => (400, "bad_request"),
        _ => (200, "disabled"),
    });
}

/// A clock that moves by `step` seconds at each reading.
#[derive(Debug)]
struct Stepping {
    now: AtomicI64,
    step: AtomicI64,
}

impl Clock for Stepping {
    fn now_unix(&self) -> i64 {
        self.now
            .fetch_add(self.step.load(Ordering::SeqCst), Ordering::SeqCst)
    }
}

/// A cached answer that does not grant the request is decided on once: the request is
/// refused with the reason found then. (When it was decided again after the ticket path
/// started, a later clock reading could grant what the first reading refused.)
#[tokio::test]
async fn a_refused_cached_answer_is_decided_once() {
    let (decisions, _guard) = Decisions::capture();
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    // The permission ends at `exp`, the token an hour later: the cached answer stays fresh
    // (60 s from its first reading) while the permission expires.
    let exp = now() + 1_000;
    let clock = Arc::new(Stepping {
        now: AtomicI64::new(exp - 10),
        step: AtomicI64::new(0),
    });
    let layer = invoice_layer(&as_, Flavor::Standard, &r, |b: UmaLayerBuilder| {
        b.clock(Arc::clone(&clock) as Arc<dyn Clock>)
    })
    .await;
    let (url, calls) = protected(layer).await;
    let http = http();
    let rpt = as_.mint_rpt(RptSpec {
        exp: Some(exp + 3_600),
        permissions: vec![RptPermission {
            resource_id: r.clone(),
            resource_scopes: vec!["read".into()],
            exp: Some(exp),
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    });
    assert_eq!(
        get_with(&http, &url, "/invoices/1", &rpt).await.status(),
        StatusCode::OK
    );
    decisions.take();
    // From now on the layer's clock reads past `exp` once, then before it.
    clock.now.store(exp + 5, Ordering::SeqCst);
    clock.step.store(-10, Ordering::SeqCst);
    let resp = get_with(&http, &url, "/invoices/1", &rpt).await;
    expect_challenge(&resp, &as_);
    let event = decisions.one();
    assert_eq!(field(&event, "outcome"), Some("challenged"));
    assert_eq!(field(&event, "reason"), Some("expired"));
    assert_eq!(field(&event, "cache"), Some("hit"));
    assert_eq!(calls.get(), 1);
    assert_eq!(as_.count(Endpoint::Introspection), 1);
}

/// A declared resource is bound to its id at build; once the registry forgets the name, the
/// binding is not used any more: the name is looked up again, and found missing.
#[tokio::test]
async fn a_binding_ends_when_the_registry_forgets_the_name() {
    let (decisions, _guard) = Decisions::capture();
    let as_ = start_as().await;
    let (layer, album) = album_layer(&as_).await;
    let (url, calls) = protected(layer.clone()).await;
    let http = http();
    let rpt = rpt_for(&as_, &album, &["view"]);
    for _ in 0..2 {
        let resp = get_with(&http, &url, "/albums/1", &rpt).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    layer.registry().delete("album").await.expect("deleted");
    decisions.take();
    let resp = get_with(&http, &url, "/albums/1", &rpt).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let event = decisions.one();
    assert_eq!(field(&event, "outcome"), Some("unmapped"));
    assert_eq!(field(&event, "reason"), Some("unknown_resource"));
    assert_eq!(field(&event, "resource"), Some("album"));
    assert_eq!(calls.get(), 2);
}
