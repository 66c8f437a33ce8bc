//! The library pieces in-process: `serve`'s header stripping, and the dialect mapping as the
//! AS sees it.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::{Layer, ServiceExt};
use uma_proxy::{
    ClientAddr, Config, ForwardOptions, Overrides, ProxyBody, build_layer, forwarding_service,
    serve,
};
use uma_test_as::{Endpoint, RecordedRequest, RptSpec};

use crate::common::*;

/// The headers and client address a service received.
type Received = (HeaderMap, Option<ClientAddr>);

/// Starts `serve` with `service` on a loopback port; it stops, with `grace`, when the sender
/// is used (dropping it unused lets it serve on). Returns the address, the sender and the task with `serve`'s outcome.
async fn spawn_serve<S>(
    service: S,
    grace: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<uma_proxy::Drain>,
)
where
    S: tower::Service<
            Request<hyper::body::Incoming>,
            Response = Response<ProxyBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        service,
        async {
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        },
        grace,
    ));
    (addr, stop, server)
}

/// Sends `GET /x` with `headers` through `serve` to a service that records what it receives,
/// then stops `serve` (which must drain completely); returns what the service saw.
async fn received_through_serve(headers: &[(&str, &str)]) -> Received {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let sink = Arc::clone(&sink);
        async move {
            let addr = req.extensions().get::<ClientAddr>().copied();
            sink.lock().unwrap().push((req.headers().clone(), addr));
            Ok::<_, Infallible>(Response::new(ProxyBody::default()))
        }
    });
    let (addr, stop, server) = spawn_serve(service, Duration::from_secs(1)).await;
    let r = send(Method::GET, &format!("http://{addr}/x"), headers).await;
    assert_eq!(r.status, StatusCode::OK);
    let _ = stop.send(());
    assert_eq!(server.await.unwrap(), uma_proxy::Drain::Complete);
    seen.lock().unwrap().remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_strips_uma_headers_before_the_service_sees_the_request() {
    let (headers, client) = received_through_serve(&[
        ("x-uma-subject", "mallory"),
        ("X-UMA-CLIENT-ID", "evil"),
        ("x-uma-permissions", "[]"),
        ("x-other", "kept"),
    ])
    .await;
    for name in ["x-uma-subject", "x-uma-client-id", "x-uma-permissions"] {
        assert!(headers.get(name).is_none(), "{name} reached the service");
    }
    assert_eq!(headers["x-other"], "kept");
    assert_eq!(
        client.map(|c| c.0.ip().to_string()).as_deref(),
        Some("127.0.0.1")
    );
}

/// CGI-style upstreams (WSGI, Rack, PHP) map `X_Uma_Subject` and `X-Uma-Subject` to the same
/// `HTTP_X_UMA_SUBJECT`: the underscore spellings are spoofs of the proxy's headers too. So
/// are the dotted ones: Caddy (and nginx with `ignore_invalid_headers off`) pass
/// `X.Uma.Subject` on as `HTTP_X.UMA.SUBJECT`, which PHP registers as `HTTP_X_UMA_SUBJECT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_strips_underscore_spellings_of_uma_headers() {
    let (headers, _) = received_through_serve(&[
        ("x_uma_subject", "mallory"),
        ("X_Uma_Client_Id", "evil"),
        ("x-uma_permissions", "[]"),
        ("X.Uma.Subject", "mallory"),
        ("x-uma.client-id", "evil"),
        ("x_other", "kept"),
    ])
    .await;
    for name in [
        "x_uma_subject",
        "x_uma_client_id",
        "x-uma_permissions",
        "x.uma.subject",
        "x-uma.client-id",
    ] {
        assert!(headers.get(name).is_none(), "{name} reached the service");
    }
    assert_eq!(headers["x_other"], "kept");
}

fn form_value(r: &RecordedRequest, key: &str) -> Option<String> {
    r.form().into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Calls `layer` around a trivial service with `rpt`; returns the status.
async fn through_layer(layer: &tower_uma::UmaLayer, rpt: &str) -> StatusCode {
    let svc = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let req = Request::get("/albums/1")
        .header("authorization", format!("Bearer {rpt}"))
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keycloak_dialect_changes_introspection_and_the_pat_request() {
    let as_ = start_as().await;
    let text = config(&as_, "http://127.0.0.1:9", "").replace(
        "allow_http = true",
        "allow_http = true\ndialect = \"keycloak\"",
    );
    let env = |n: &str| (n == SECRET_ENV).then(|| RS_SECRET.to_owned());
    let config = Config::from_toml_str(&text, "proxy.toml", &Overrides::default(), env).unwrap();
    let layer = build_layer(&config).await.unwrap();
    let album = layer.resource_id("album").unwrap();
    let rpt = as_.mint_rpt(RptSpec::active_for(album, ["view"], 300));
    assert_eq!(through_layer(&layer, &rpt).await, StatusCode::OK);

    let pat_request = &as_.requests(Endpoint::Token)[0];
    assert_eq!(
        form_value(pat_request, "grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        form_value(pat_request, "scope"),
        None,
        "keycloak: no scope on the PAT request"
    );
    let introspection = &as_.requests(Endpoint::Introspection)[0];
    assert!(
        introspection
            .header("authorization")
            .is_some_and(|v| v.starts_with("Basic ")),
        "keycloak: introspection with client credentials"
    );
    assert_eq!(
        form_value(introspection, "token_type_hint").as_deref(),
        Some("requesting_party_token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wso2_with_endpoints_one_by_one_binds_the_pat_to_the_owner() {
    let as_ = start_as().await;
    let text = format!(
        r#"upstream = "http://127.0.0.1:9"
[authorization_server]
dialect = "wso2"
token_endpoint = "{token}"
introspection_endpoint = "{introspect}"
permission_endpoint = "{permission}"
resource_registration_endpoint = "{rreg}"
allow_http = true
client_id = "{RS_ID}"
client_secret_env = "{SECRET_ENV}"
resource_owner = "alice"
resource_owner_password_env = "ALICE_PW"
[[resources]]
name = "album"
path = "/albums/{{id}}"
scopes = {{ GET = ["view"] }}
"#,
        token = as_.endpoint_url(Endpoint::Token),
        introspect = as_.endpoint_url(Endpoint::Introspection),
        permission = as_.endpoint_url(Endpoint::Permission),
        rreg = as_.endpoint_url(Endpoint::ResourceRegistration),
    );
    let env = |n: &str| match n {
        SECRET_ENV => Some(RS_SECRET.to_owned()),
        "ALICE_PW" => Some(ALICE_PW.to_owned()),
        _ => None,
    };
    let config = Config::from_toml_str(&text, "proxy.toml", &Overrides::default(), env).unwrap();
    let layer = build_layer(&config).await.unwrap();
    assert_eq!(as_.count(Endpoint::Discovery), 0);
    assert_eq!(
        layer.as_uri(),
        as_.issuer(),
        "as_uri defaults to the token endpoint's origin"
    );

    let pat_request = &as_.requests(Endpoint::Token)[0];
    assert_eq!(
        form_value(pat_request, "grant_type").as_deref(),
        Some("password")
    );
    assert_eq!(
        form_value(pat_request, "username").as_deref(),
        Some("alice")
    );
    let album = layer.resource_id("album").unwrap();
    assert_eq!(
        as_.resource(&album).unwrap().owner.as_deref(),
        Some("alice")
    );

    let rpt = as_.mint_rpt(RptSpec::active_for(album, ["view"], 300));
    assert_eq!(through_layer(&layer, &rpt).await, StatusCode::OK);
}

/// The bare forwarding service to `up`, served on a fresh port until the test ends.
async fn serve_forward(up: &Upstream) -> std::net::SocketAddr {
    let forward = forwarding_service(
        uma_proxy::Upstream::parse(&up.url()).unwrap(),
        ForwardOptions::default(),
    );
    // Never stopped: the test's runtime ends it.
    spawn_serve(forward, Duration::from_secs(1)).await.0
}

/// A chunked body is forwarded whatever the method: a `GET` with a chunked body (search APIs
/// take one) must not reach the upstream with its body silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_on_a_get_reaches_the_upstream() {
    let up = start_upstream().await;
    let addr = serve_forward(&up).await;
    let (tx, body) = channel_body();
    let req = Request::get(format!("http://{addr}/search"))
        .header("transfer-encoding", "chunked")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(client().request(req));
    // A proxy that drops the body may answer before the client is done: sends can fail.
    let _ = tx.send(bytes::Bytes::from_static(b"{\"query\":")).await;
    let _ = tx.send(bytes::Bytes::from_static(b"\"x\"}")).await;
    drop(tx);
    let resp = tokio::time::timeout(SOON, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo: serde_json::Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["body_len"], 13, "the GET's body was dropped: {echo}");
}

/// A body of known length keeps its `Content-Length` on the way: it is not re-framed as
/// chunked (RFC 9112 §6.1: never both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_known_length_goes_on_with_its_length() {
    let up = start_upstream().await;
    let addr = serve_forward(&up).await;
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"{\"query\":\"x\"}"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let req = Request::post(format!("http://{addr}/search"))
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(SOON, client().request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = up.seen().remove(0);
    assert_eq!(seen.body_len, 13);
    assert_eq!(seen.headers["content-length"], "13");
    assert!(
        !seen.headers.contains_key("transfer-encoding"),
        "{:?}",
        seen.headers
    );
}
/// After the grace period, `serve` returns `TimedOut` and the connections still busy are closed
/// (as `Drain::TimedOut` says), not left running behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_busy_after_the_grace_period_are_closed() {
    let called = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&called);
    let service = tower::service_fn(move |_req: Request<hyper::body::Incoming>| {
        let notify = Arc::clone(&notify);
        async move {
            notify.notify_one();
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(ProxyBody::default()))
        }
    });
    let (addr, stop, server) = spawn_serve(service, Duration::from_millis(200)).await;
    let req = Request::get(format!("http://{addr}/stuck"))
        .body(empty())
        .unwrap();
    let pending = tokio::spawn(client().request(req));
    tokio::time::timeout(SOON, called.notified()).await.unwrap();
    let _ = stop.send(());
    assert_eq!(server.await.unwrap(), uma_proxy::Drain::TimedOut);
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the stuck connection was left open after serve returned")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
}

/// A service that answers `/held` once `release` is notified (notifying `called` when the
/// request arrives) and every other path at once.
pub(crate) fn holding_service() -> (
    impl tower::Service<
        Request<hyper::body::Incoming>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static,
    Arc<tokio::sync::Notify>,
    Arc<tokio::sync::Notify>,
) {
    let called = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (notify, held) = (Arc::clone(&called), Arc::clone(&release));
    let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (notify, held) = (Arc::clone(&notify), Arc::clone(&held));
        async move {
            if req.uri().path() == "/held" {
                notify.notify_one();
                held.notified().await;
            }
            Ok::<_, Infallible>(Response::new(ProxyBody::default()))
        }
    });
    (service, called, release)
}

/// At shutdown an idle keep-alive connection is closed at once, and a connection busy with a
/// request gets its answer first and is closed after it: `serve` then returns `Complete`,
/// long before the grace period ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_lets_busy_ones_answer() {
    let (service, called, release) = holding_service();
    let grace = Duration::from_secs(20);
    let (addr, stop, server) = spawn_serve(service, grace).await;
    // An idle connection: one request answered, then nothing.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    // A busy one.
    let req = Request::get(format!("http://{addr}/held"))
        .body(empty())
        .unwrap();
    let pending = tokio::spawn(client().request(req));
    tokio::time::timeout(SOON, called.notified()).await.unwrap();

    let started = std::time::Instant::now();
    let _ = stop.send(());
    // The idle connection is closed without waiting for the busy one.
    let mut rest = Vec::new();
    tokio::time::timeout(grace / 2, idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection was left open at shutdown")
        .unwrap();
    assert!(!server.is_finished());
    release.notify_one();
    let resp = tokio::time::timeout(SOON, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        tokio::time::timeout(SOON, server).await.unwrap().unwrap(),
        uma_proxy::Drain::Complete
    );
    assert!(started.elapsed() < grace, "{:?}", started.elapsed());
}
