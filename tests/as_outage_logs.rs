//! What an outage of the authorization server writes to the logs, captured at INFO through a
//! real layer and `uma-test-as`, time moved with a `FixedClock`: the first failure with its
//! cause and the circuit opening once each (WARN), one summary per 30 s while it lasts (WARN),
//! at most one stale-if-error serve per 30 s (WARN), the return once (INFO), and nothing per
//! request. Its own binary: the subscriber is global.

mod common;

use std::sync::Arc;

use common::*;
use http::StatusCode;
use tower_uma::{
    IntrospectionCache,
    clock::{Clock, FixedClock},
};
use uma_test_as::Endpoint;

#[tokio::test]
async fn an_outage_is_logged_once_summarised_and_its_end_once() {
    let capture = Capture::global_info();

    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let clock = Arc::new(FixedClock::new(now()));
    let cache = IntrospectionCache::builder()
        .max_ttl(std::time::Duration::from_secs(1))
        .stale_if_error(std::time::Duration::from_secs(600))
        .build();
    let layer = invoice_layer(&as_, Flavor::Standard, &r, |b| {
        quick_breakers(b, &clock, 3).cache(cache)
    })
    .await;
    let (url, calls) = protected(layer).await;
    // One client: building one costs more than a request.
    let http = http();
    let get = |token: String| {
        let (http, url) = (http.clone(), url.clone());
        async move { get_with(&http, &url, "/invoices/42", &token).await }
    };
    // A good RPT, valid for an hour by the layer's clock, cached for a second.
    let good = rpt_until(&as_, &r, &["read"], clock.now_unix() + 3600);
    assert_eq!(get(good.clone()).await.status(), StatusCode::OK);
    let before = capture.layer_lines();
    assert!(before.is_empty(), "{before:#?}");

    // 100 s of outage, 20 requests each second with tokens never seen before, and one with
    // the good RPT, served from its expired entry under stale-if-error.
    as_.set_down(Endpoint::Introspection, true);
    for second in 0..100 {
        for i in 0..20 {
            expect_unreachable(&get(format!("junk-{second}-{i}")).await);
        }
        assert_eq!(get(good.clone()).await.status(), StatusCode::OK);
        clock.advance(1);
    }
    assert_eq!(calls.get(), 101);
    let introspections = as_.count(Endpoint::Introspection);
    // 3 to open, then one probe each time the interval (1, 2, then 4 s) passed.
    assert!(introspections < 3 + 30, "{introspections}");

    // The AS comes back; the first request after the interval is the probe, and is served.
    as_.set_down(Endpoint::Introspection, false);
    clock.advance(4);
    // Valid for a minute by the layer's clock, which is ahead of the AS's now.
    let rpt = rpt_until(&as_, &r, &["read"], clock.now_unix() + 60);
    assert_eq!(get(rpt).await.status(), StatusCode::OK);
    assert_eq!(calls.get(), 102);

    let lines = capture.layer_lines();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("authorization server introspection call failed: unreachable"),
        1,
        "{lines:#?}"
    );
    assert_eq!(
        count("authorization server introspection is down after 3 consecutive failures"),
        1,
        "{lines:#?}"
    );
    assert_eq!(
        count("calls failed or were not made in the last 30 s"),
        3,
        "{lines:#?}"
    );
    assert_eq!(
        count("authorization server introspection is back after"),
        1,
        "{lines:#?}"
    );
    // 99 stale serves (the first second's request was still fresh): one WARN per 30 s.
    assert_eq!(
        count("serving an expired cache entry under stale-if-error"),
        4,
        "{lines:#?}"
    );
    let warn = lines.iter().filter(|l| l.contains(" WARN ")).count();
    let info = lines.iter().filter(|l| l.contains(" INFO ")).count();
    assert_eq!((warn, info), (9, 1), "{lines:#?}");
    // A summary says what failed, and how.
    let summary = lines
        .iter()
        .find(|l| l.contains("in the last 30 s"))
        .expect("a summary");
    for field in [
        "failed=",
        "unreachable=",
        "short_circuited=",
        "uma.as.breaker=",
    ] {
        assert!(summary.contains(field), "{field}: {summary}");
    }
}
