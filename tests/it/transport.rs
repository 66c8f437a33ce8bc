//! The HTTP client of the AS calls, end to end over loopback: an AS endpoint that redirects to
//! another host never decides a request (and the client the layer builds never follows it), and
//! a stalled AS cannot make a request hang when the user brings a client without timeouts.

use std::time::Duration;

use crate::common::*;
use axum::response::IntoResponse;
use axum::routing::any;
use http::StatusCode;
use tower_uma::UmaLayerBuilder;
use tower_uma::protection::{ClientAuth, IntrospectionAuth};
use uma_test_as::Endpoint;

/// A reqwest client as users build one: reqwest's defaults (it follows up to 10 redirects; no
/// timeout), without the environment's proxy.
fn users_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A host whose every answer is `307 Temporary Redirect` to `to`.
async fn redirecting_to(to: String) -> String {
    let app = axum::Router::new().fallback(any(move || {
        let to = to.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response() }
    }));
    format!("http://{}", serve(app).await)
}

/// `GET /invoices/42` with an RPT the AS `b` says is active, through a layer for `b` whose
/// introspection endpoint is a host that redirects to `b`'s, configured by `configure`.
/// Asserts the refusal (`403` + `Warning`, the app not called) and returns how many
/// introspection requests `b` received. The layer sends its client credentials in the body
/// of the introspection (`client_secret_post`): reqwest drops the `Authorization` header when
/// it follows a redirect to another host, not the body, so `b` accepts a request it is sent
/// and says the token is active.
async fn refused_through_a_redirect(
    case: &str,
    configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder,
) -> u64 {
    let b = start_as().await;
    let r = register_invoice(&b);
    let a = redirecting_to(b.endpoint_url(Endpoint::Introspection)).await;
    let layer = invoice_layer(&b, Flavor::Standard, &r, |builder| {
        configure(
            builder
                .introspection_endpoint(format!("{a}/introspect"))
                .client_auth(ClientAuth::Post)
                .introspection_auth(IntrospectionAuth::ClientCredentials),
        )
    })
    .await;
    let (url, calls) = protected(layer).await;
    let resp = get_with(&http(), &url, "/invoices/42", &rpt_for(&b, &r, &["read"])).await;
    expect_unreachable(&resp);
    assert_eq!(calls.get(), 0, "{case}: the app is not called");
    b.count(Endpoint::Introspection)
}

/// A client of the user's that follows redirects sends the introspection to the other host
/// (that cannot be undone once reqwest has done it), but the answer, although it says the
/// token is active, decides nothing: `403` + `Warning`, the app is not called.
#[tokio::test]
async fn an_answer_from_a_followed_redirect_is_refused() {
    let received =
        refused_through_a_redirect("http_client", |l| l.http_client(users_client())).await;
    assert_eq!(
        received, 1,
        "the client followed the redirect (what the check is about)"
    );
}

/// The client the layer builds follows no redirect, whether it is the default one or one
/// configured with `http_client_builder` (even when the configuration asks for redirects):
/// `403` + `Warning`, the app is not called, and the other host receives nothing.
#[tokio::test]
async fn the_layers_client_never_follows_a_redirect() {
    type Configure = fn(UmaLayerBuilder) -> UmaLayerBuilder;
    let cases: [(&str, Configure); 2] = [
        ("default client", |l| l),
        ("http_client_builder", |l| {
            l.http_client_builder(|b| {
                b.no_proxy()
                    .redirect(reqwest::redirect::Policy::limited(10))
            })
        }),
    ];
    for (case, configure) in cases {
        let received = refused_through_a_redirect(case, configure).await;
        assert_eq!(received, 0, "{case}: the other host received nothing");
    }
}

/// An AS that accepts the introspection and never answers, with a client of the user's without
/// any timeout: the request ends in `403` + `Warning` once `request_timeout` has passed, instead
/// of waiting forever. (The outer bound only turns a hang into a failure; it measures nothing.)
#[tokio::test]
async fn a_stalled_as_with_a_users_client_ends_in_403() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let layer = invoice_layer(&as_, Flavor::Standard, &r, |l| {
        l.http_client(users_client())
            .request_timeout(Duration::from_millis(300))
    })
    .await;
    let (url, calls) = protected(layer).await;
    as_.set_latency(Endpoint::Introspection, Duration::from_secs(3600));
    let rpt = rpt_for(&as_, &r, &["read"]);
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        get_with(&http(), &url, "/invoices/42", &rpt),
    )
    .await
    .expect("the layer answers although the AS never does");
    expect_unreachable(&resp);
    assert_eq!(calls.get(), 0, "the app is not called");
    assert_eq!(as_.count(Endpoint::Introspection), 1);
}

/// `request_timeout` bounds every call, so zero is refused at build with a client of the
/// user's too (it used to be ignored there).
#[tokio::test]
async fn a_zero_request_timeout_is_refused_with_a_users_client() {
    let as_ = start_as().await;
    let e = discover(&as_)
        .await
        .resources(invoice_map("r"))
        .http_client(users_client())
        .request_timeout(Duration::ZERO)
        .build()
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), tower_uma::error::ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("request_timeout"), "{e}");
}
