//! Shared set-up for the end-to-end tests: one real `uma-test-as` per test, a protected axum
//! app on `127.0.0.1:0`, and a small UMA client. Listeners are bound before anything is
//! spawned, so no test sleeps to wait for start-up.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::any;
use http::{HeaderMap, Method, StatusCode};
use tower_uma::{
    ResourceDecl, ResourceMap, Route, UmaLayer, UmaLayerBuilder, challenge::parse_uma_challenge,
};
use uma_test_as::{
    AuthServer, Endpoint, Policy, ResourceDescription, RptPermission, RptSpec, TestAs,
};

pub const RS_ID: &str = "photo-api";
pub const RS_SECRET: &str = "photo-api-secret-5d1e";
pub const APP_ID: &str = "photo-app";
pub const APP_SECRET: &str = "photo-app-secret-77aa";
pub const ALICE_PW: &str = "alice-pw-0d3c";
pub const BOB_PW: &str = "bob-pw-9f1c";
pub const ID_TOKEN_FORMAT: &str = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken";
pub const UMA_GRANT: &str = "urn:ietf:params:oauth:grant-type:uma-ticket";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The AS every test starts from: the RS and app clients, alice (owner) and bob, and
/// policies on the resource `invoice` (bob may read) and `album` (bob may view).
pub fn as_builder() -> uma_test_as::AuthServerBuilder {
    AuthServer::builder()
        .client(RS_ID, RS_SECRET)
        .client(APP_ID, APP_SECRET)
        .user("alice", ALICE_PW)
        .user("bob", BOB_PW)
        .policy(Policy::resource("invoice").scopes(["read"]).users(["bob"]))
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
}

pub async fn start_as() -> TestAs {
    as_builder().spawn().await.expect("the test AS starts")
}

/// Registers the `invoice` resource (scopes read, write) owned by alice; returns its id `R`.
pub fn register_invoice(as_: &TestAs) -> String {
    as_.register_resource(
        "alice",
        ResourceDescription {
            name: Some("invoice".into()),
            resource_scopes: vec!["read".into(), "write".into()],
            ..ResourceDescription::default()
        },
    )
}

/// The map of docs/protocol.md §11: `GET /invoices/{id}` needs `read`, `POST` needs `write`.
pub fn invoice_map(resource_id: &str) -> ResourceMap {
    ResourceMap::new().route(
        Route::new("/invoices/{id}")
            .resource_id(resource_id)
            .scopes(Method::GET, ["read"])
            .scopes(Method::POST, ["write"]),
    )
}

/// The kind of AS a parametrised test runs against: `uma-test-as` in that dialect, and the
/// layer configured the way a user of that server would (issue "real authorization servers").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Standard,
    Keycloak,
    Wso2,
}

impl Flavor {
    pub fn as_dialect(self) -> uma_test_as::Dialect {
        match self {
            Self::Standard => uma_test_as::Dialect::Standard,
            Self::Keycloak => uma_test_as::Dialect::Keycloak,
            Self::Wso2 => uma_test_as::Dialect::Wso2,
        }
    }

    pub fn layer_dialect(self) -> tower_uma::Dialect {
        match self {
            Self::Standard => tower_uma::Dialect::Standard,
            Self::Keycloak => tower_uma::Dialect::Keycloak,
            Self::Wso2 => tower_uma::Dialect::Wso2,
        }
    }
}

/// Generates one `#[tokio::test]` per dialect for each `async fn name(f: Flavor)` listed, in
/// modules `standard`, `keycloak` and `wso2`: the suite is parametrised, not copied.
#[macro_export]
macro_rules! per_dialect {
    ($($name:ident),* $(,)?) => {
        mod standard {
            $( #[tokio::test] async fn $name() { super::$name($crate::common::Flavor::Standard).await } )*
        }
        mod keycloak {
            $( #[tokio::test] async fn $name() { super::$name($crate::common::Flavor::Keycloak).await } )*
        }
        mod wso2 {
            $( #[tokio::test] async fn $name() { super::$name($crate::common::Flavor::Wso2).await } )*
        }
    };
}

pub async fn start_as_in(f: Flavor) -> TestAs {
    as_builder()
        .dialect(f.as_dialect())
        .spawn()
        .await
        .expect("the test AS starts")
}

/// A layer builder for the AS of flavor `f`: discovery for the standard and Keycloak
/// dialects (Keycloak from its realm issuer), endpoints derived from the host and an
/// owner-bound PAT for WSO2; short timeouts so failure tests end quickly.
pub async fn layer_builder(as_: &TestAs, f: Flavor) -> UmaLayerBuilder {
    let builder = match f {
        Flavor::Standard | Flavor::Keycloak => UmaLayer::discover(as_.issuer(), RS_ID, RS_SECRET)
            .dialect(f.layer_dialect())
            .insecure_allow_http(),
        Flavor::Wso2 => UmaLayer::builder(as_.issuer(), RS_ID, RS_SECRET)
            .dialect(tower_uma::Dialect::Wso2)
            .insecure_allow_http()
            .pat_grant(tower_uma::protection::PatGrant::Password {
                username: "alice".into(),
                password: tower_uma::token::ClientSecret::new(ALICE_PW),
            }),
    };
    builder
        .realm("invoices")
        .request_timeout(Duration::from_millis(800))
        .connect_timeout(Duration::from_millis(500))
}

/// A built layer protecting [`invoice_map`] of `resource_id` at the AS of flavor `f`, as
/// [`layer_builder`] sets it up and `configure` adjusts it.
pub async fn invoice_layer(
    as_: &TestAs,
    f: Flavor,
    resource_id: &str,
    configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder,
) -> UmaLayer {
    configure(
        layer_builder(as_, f)
            .await
            .resources(invoice_map(resource_id)),
    )
    .build()
    .await
    .expect("the layer builds")
}

/// `b` reading time from `clock`, with circuit breakers that open after `failures`
/// consecutive failures and wait 1 s before probing, doubling up to 4 s.
pub fn quick_breakers(
    b: UmaLayerBuilder,
    clock: &Arc<tower_uma::clock::FixedClock>,
    failures: u32,
) -> UmaLayerBuilder {
    b.clock(Arc::clone(clock) as Arc<dyn tower_uma::clock::Clock>)
        .breaker_failure_threshold(failures)
        .breaker_open_interval(Duration::from_secs(1), Duration::from_secs(4))
}

/// Collects what a `tracing_subscriber::fmt` subscriber writes.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }

    /// Installs a text subscriber at INFO writing to a new capture, as the global default: for
    /// a test binary of its own (the callsite cache makes thread-local subscribers miss events
    /// of other threads' tests).
    pub fn global_info() -> Self {
        let capture = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(capture.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the only subscriber in this binary");
        capture
    }

    /// The lines written by tower-uma so far.
    pub fn layer_lines(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains("tower_uma"))
            .map(str::to_owned)
            .collect()
    }
}

/// A GET of `{url}{path}` without a token.
pub async fn get_plain(http: &reqwest::Client, url: &str, path: &str) -> reqwest::Response {
    http.get(format!("{url}{path}"))
        .send()
        .await
        .expect("the app answers")
}

/// A GET of `{url}{path}` with `token` as bearer token.
pub async fn get_with(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    token: &str,
) -> reqwest::Response {
    http.get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the app answers")
}

/// A builder by discovery, with short timeouts so failure tests end quickly.
pub async fn discover(as_: &TestAs) -> UmaLayerBuilder {
    UmaLayer::discover(as_.issuer(), RS_ID, RS_SECRET)
        .insecure_allow_http()
        .realm("invoices")
        .request_timeout(Duration::from_millis(800))
        .connect_timeout(Duration::from_millis(500))
}

/// Counts calls of the protected handler.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<AtomicUsize>);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// An app whose every route answers 200 "hello from {path}" and counts its calls; the path
/// `/teapot/401` and `/teapot/403` answer those statuses with their own headers.
pub fn app(calls: Calls) -> Router {
    async fn handler(
        State(calls): State<Calls>,
        uri: http::Uri,
    ) -> (StatusCode, HeaderMap, String) {
        calls.0.fetch_add(1, Ordering::SeqCst);
        let mut headers = HeaderMap::new();
        headers.insert("x-inner", "yes".parse().expect("static header"));
        match uri.path() {
            "/teapot/401" => {
                headers.insert(
                    http::header::WWW_AUTHENTICATE,
                    "Basic realm=\"inner\"".parse().expect("static"),
                );
                (StatusCode::UNAUTHORIZED, headers, "inner 401".into())
            }
            "/teapot/403" => (StatusCode::FORBIDDEN, headers, "inner 403".into()),
            p => (StatusCode::OK, headers, format!("hello from {p}")),
        }
    }
    Router::new().fallback(any(handler)).with_state(calls)
}

/// Serves `app` on a fresh loopback port; the listener is bound before the task starts.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A protected app for `layer`; returns its base URL and its call counter.
pub async fn protected(layer: UmaLayer) -> (String, Calls) {
    let calls = Calls::default();
    let addr = serve(app(calls.clone()).layer(layer)).await;
    (format!("http://{addr}"), calls)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Mints an active RPT for `resource_id` with `scopes`, valid for a minute.
pub fn rpt_for(as_: &TestAs, resource_id: &str, scopes: &[&str]) -> String {
    rpt_until(as_, resource_id, scopes, now() + 60)
}

/// Mints an active RPT for `resource_id` with `scopes` that expires at `exp`.
pub fn rpt_until(as_: &TestAs, resource_id: &str, scopes: &[&str], exp: i64) -> String {
    as_.mint_rpt(RptSpec {
        sub: Some("bob".into()),
        client_id: Some(APP_ID.into()),
        exp: Some(exp),
        iat: Some(now()),
        permissions: vec![RptPermission {
            resource_id: resource_id.into(),
            resource_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    })
}

/// Checks the invariants of docs/protocol.md §11 check 38 on any response of the layer.
pub fn assert_hygiene(resp: &reqwest::Response) {
    let uma: Vec<_> = resp
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter(|v| {
            v.to_str()
                .unwrap_or("")
                .to_ascii_uppercase()
                .starts_with("UMA")
        })
        .collect();
    if resp.status().is_success() {
        assert!(uma.is_empty(), "2xx with a UMA challenge");
    }
    if resp.status() == StatusCode::FORBIDDEN {
        assert!(uma.is_empty(), "403 with a UMA challenge");
    }
}

/// Asserts a 401 UMA challenge as in docs/protocol.md §11 check 1 and returns its ticket.
pub fn expect_challenge(resp: &reqwest::Response, as_: &TestAs) -> String {
    assert_hygiene(resp);
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let values: Vec<_> = resp
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert_eq!(values.len(), 1, "exactly one WWW-Authenticate header");
    let value = values[0].to_str().expect("ASCII header");
    assert!(value.starts_with("UMA "), "{value}");
    assert!(!value.contains('\n') && !value.contains('\r'));
    assert!(!value.contains("error="), "{value}");
    let c = parse_uma_challenge(value).expect("a valid UMA challenge");
    assert_eq!(c.as_uri, as_.issuer());
    assert_eq!(c.realm.as_deref(), Some("invoices"));
    assert!(resp.headers().get(http::header::WARNING).is_none());
    c.ticket
}

/// Asserts the fail-closed answer of docs/protocol.md §11 check 6 (Grant §3.2.2).
pub fn expect_unreachable(resp: &reqwest::Response) {
    assert_hygiene(resp);
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.headers()
            .get(http::header::WARNING)
            .and_then(|v| v.to_str().ok()),
        Some("199 - \"UMA Authorization Server Unreachable\"")
    );
    assert!(resp.headers().get(http::header::WWW_AUTHENTICATE).is_none());
}

/// The last ticket the AS issued at its permission endpoint, read from its recorded answer
/// is not available, so tests compare the challenge with the permission request count and
/// with later use at the token endpoint instead.
pub fn permission_bodies(as_: &TestAs) -> Vec<serde_json::Value> {
    as_.requests(Endpoint::Permission)
        .into_iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON permission body"))
        .collect()
}

pub fn header<'a>(req: &'a uma_test_as::RecordedRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A requesting-party client walking the UMA grant: password grant for an ID token, then the
/// uma-ticket grant with that ID token as claim token.
pub struct UmaClient {
    pub http: reqwest::Client,
    pub token_endpoint: String,
}

impl UmaClient {
    pub fn new(as_: &TestAs) -> Self {
        Self {
            http: http(),
            token_endpoint: as_.endpoint_url(Endpoint::Token),
        }
    }

    pub async fn id_token(&self, user: &str, password: &str) -> String {
        let resp = self.password_grant(user, password).await;
        resp["id_token"].as_str().expect("an id_token").to_owned()
    }

    /// `user`'s access token from the password grant (a plain access token, no permissions).
    pub async fn access_token(&self, user: &str, password: &str) -> String {
        let resp = self.password_grant(user, password).await;
        resp["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned()
    }

    async fn password_grant(&self, user: &str, password: &str) -> serde_json::Value {
        self.http
            .post(&self.token_endpoint)
            .basic_auth(APP_ID, Some(APP_SECRET))
            .form(&[
                ("grant_type", "password"),
                ("username", user),
                ("password", password),
                ("scope", "openid"),
            ])
            .send()
            .await
            .expect("token endpoint")
            .json()
            .await
            .expect("JSON")
    }

    /// The uma-ticket grant; returns the status and the JSON answer.
    pub async fn rpt(
        &self,
        ticket: &str,
        id_token: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut form = vec![("grant_type", UMA_GRANT), ("ticket", ticket)];
        if let Some(t) = id_token {
            form.push(("claim_token", t));
            form.push(("claim_token_format", ID_TOKEN_FORMAT));
        }
        let resp = self
            .http
            .post(&self.token_endpoint)
            .basic_auth(APP_ID, Some(APP_SECRET))
            .form(&form)
            .send()
            .await
            .expect("token endpoint");
        let status = resp.status();
        (status, resp.json().await.expect("JSON"))
    }
}

/// `GET /albums/{id}` needs `view` on the declared resource `album`, owned by alice (bob may
/// view it, per the test AS's policies).
pub fn album_map() -> ResourceMap {
    ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(ResourceDecl::new("album", ["view"]).with_owner("alice"))
            .scopes(Method::GET, ["view"]),
    )
}

/// A built layer protecting [`album_map`] at `as_` (by discovery), as `configure` adjusts it.
pub async fn album_layer(
    as_: &TestAs,
    configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder,
) -> UmaLayer {
    configure(discover(as_).await.resources(album_map()))
        .build()
        .await
        .expect("the layer builds")
}

/// Registration requests (`POST`) the AS received so far.
pub fn registrations(as_: &TestAs) -> usize {
    as_.requests(Endpoint::ResourceRegistration)
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// Waits (at most 10 s) until `done` holds, checking every 20 ms.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
