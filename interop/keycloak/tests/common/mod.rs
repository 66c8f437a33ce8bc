//! Shared set-up of the Keycloak interop tests: the Keycloak of `interop/keycloak/keycloak.sh`
//! on `127.0.0.1:8280` (realm `photos` of `photos-realm.json`), its token, admin and account
//! APIs, a resource-server client of its own per test where a test writes resources, a
//! recording relay in front of Keycloak, and a protected axum app that echoes the principal.
//!
//! Every test starts with [`require_keycloak`]: without a Keycloak the tests fail, loudly, and
//! never pass by skipping. Each test makes its own resources (unique names), so they do not
//! depend on each other's order and may run in parallel.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "test helpers: a failure is a test failure"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Json};
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use tower_uma::{Dialect, UmaLayer, UmaLayerBuilder, UmaPrincipal, challenge::parse_uma_challenge};

pub mod proxy;

pub const BASE: &str = "http://127.0.0.1:8280";
pub const ISSUER: &str = "http://127.0.0.1:8280/realms/photos";
/// The realm's resource server, as `photos-realm.json` defines it.
pub const RS_ID: &str = "photo-api";
pub const RS_SECRET: &str = "photo-api-secret";
/// The requesting party's client (public, password grant on).
pub const APP_ID: &str = "photo-app";
pub const UMA_GRANT: &str = "urn:ietf:params:oauth:grant-type:uma-ticket";
/// Generous bound for anything that should happen "soon" on 2 busy cores.
pub const SOON: Duration = Duration::from_secs(60);

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Fails the test at once, with what to do, when Keycloak does not answer.
pub async fn require_keycloak() {
    let url = format!("{ISSUER}/.well-known/uma2-configuration");
    let answer = http().get(&url).send().await;
    match answer {
        Ok(r) if r.status() == StatusCode::OK => {}
        other => panic!(
            "Keycloak does not answer at {url} ({other:?}). These tests need the real Keycloak: \
             run interop/keycloak/test.sh, or interop/keycloak/keycloak.sh start first."
        ),
    }
}

/// A name no other test (nor an earlier run) uses.
pub fn unique(label: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{label}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An answer: status and JSON body (`Null` when the body is empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

pub fn token_url() -> String {
    format!("{ISSUER}/protocol/openid-connect/token")
}

/// A PAT of a resource-server client (client credentials, as the Keycloak dialect asks).
pub async fn pat_of(client_id: &str, secret: &str) -> String {
    let a = answer(
        http()
            .post(token_url())
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "PAT of {client_id}: {}", a.text);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// An access token of `user` (password = user name, as in the realm file) through `photo-app`.
pub async fn user_token(user: &str) -> String {
    let a = answer(
        http()
            .post(token_url())
            .form(&[
                ("grant_type", "password"),
                ("client_id", APP_ID),
                ("username", user),
                ("password", user),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "token of {user}: {}", a.text);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// The uma-ticket grant as a Keycloak client makes it: the requesting party's access token as
/// `Bearer`, the ticket, and `extra` parameters (`submit_request=true`, …).
pub async fn uma_grant(user_token: &str, ticket: &str, extra: &[(&str, &str)]) -> Answer {
    let mut params = vec![("ticket", ticket)];
    params.extend_from_slice(extra);
    uma_grant_with(user_token, &params).await
}

/// The uma-ticket grant with the requesting party's access token as `Bearer` and `params`
/// (a `ticket`, or `audience` and `permission`s, …).
pub async fn uma_grant_with(user_token: &str, params: &[(&str, &str)]) -> Answer {
    let mut form = vec![("grant_type", UMA_GRANT)];
    form.extend_from_slice(params);
    answer(
        http()
            .post(token_url())
            .bearer_auth(user_token)
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `user`'s RPT for `ticket`; the grant must succeed.
pub async fn rpt(user: &str, ticket: &str) -> String {
    let a = uma_grant(&user_token(user).await, ticket, &[]).await;
    assert_eq!(a.status, StatusCode::OK, "RPT of {user}: {}", a.text);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// Revokes `token` at Keycloak (RFC 7009), as its client `photo-app` may.
pub async fn revoke(token: &str) {
    let r = http()
        .post(format!("{ISSUER}/protocol/openid-connect/revoke"))
        .form(&[("token", token), ("client_id", APP_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "revocation: {:?}",
        r.text().await
    );
}

/// Polls `url` with the revoked `rpt` until it is challenged (`401` with a ticket); until
/// then it must still be served (`200`), and for at most `max_ttl` (plus 5 s of slack for a
/// busy machine) from now.
pub async fn challenged_within(url: &str, rpt: &str, max_ttl: Duration) {
    let since = std::time::Instant::now();
    loop {
        let resp = get(url, Method::GET, Some(rpt)).await;
        if resp.status() == StatusCode::UNAUTHORIZED {
            ticket_of(&resp);
            return;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            since.elapsed() < max_ttl + Duration::from_secs(5),
            "the revoked RPT outlived the cache's max_ttl"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Owner approval as people do it, for a `DELETE` on `url` protecting alice's owner-managed
/// resource `id`: bob asks with `submit_request=true` and Keycloak answers
/// `request_submitted`; alice finds the request in her account API and grants it; bob's next
/// grant succeeds. Returns bob's RPT.
pub async fn approved_delete(url: &str, id: &str) -> String {
    let bob = user_token("bob").await;
    let ticket = ticket_of(&get(url, Method::DELETE, None).await);
    let asked = uma_grant(&bob, &ticket, &[("submit_request", "true")]).await;
    assert_eq!(asked.status, StatusCode::FORBIDDEN, "{}", asked.text);
    assert_eq!(asked.body["error"], "access_denied");
    assert_eq!(asked.body["error_description"], "request_submitted");

    let alice = user_token("alice").await;
    let account = format!("{ISSUER}/account/resources/{id}/permissions");
    let account_call = |req: reqwest::RequestBuilder| async {
        answer(
            req.header("accept", "application/json")
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let pending = account_call(http().get(format!("{account}/requests"))).await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text);
    assert!(pending.text.contains("bob"), "{}", pending.text);
    let granted = account_call(
        http()
            .put(&account)
            .json(&json!([{"username": "bob", "scopes": ["delete"]}])),
    )
    .await;
    assert!(granted.status.is_success(), "{}", granted.text);

    let ticket = ticket_of(&get(url, Method::DELETE, None).await);
    let rpt = uma_grant(&bob, &ticket, &[]).await;
    assert_eq!(rpt.status, StatusCode::OK, "{}", rpt.text);
    rpt.body["access_token"].as_str().unwrap().to_owned()
}

/// Introspects `token` as the Keycloak dialect does (client credentials, RPT hint).
pub async fn introspect(token: &str) -> Value {
    let a = answer(
        http()
            .post(format!("{ISSUER}/protocol/openid-connect/token/introspect"))
            .basic_auth(RS_ID, Some(RS_SECRET))
            .form(&[
                ("token", token),
                ("token_type_hint", "requesting_party_token"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "introspection: {}", a.text);
    a.body
}

/// The decoded claims of a JWT (no verification).
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn claims(token: &str) -> Value {
    jwt_part(token, 1)
}

/// The ticket of a `401` UMA challenge; checks the challenge names this realm's issuer.
pub fn ticket_of(resp: &reqwest::Response) -> String {
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "expected a challenge"
    );
    let header = resp
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .expect("a WWW-Authenticate header")
        .to_str()
        .unwrap();
    let c = parse_uma_challenge(header).expect("a UMA challenge");
    assert_eq!(c.as_uri, ISSUER);
    c.ticket
}

/// Checks the fail-closed answer of an unreachable AS: `403` + the UMA `Warning`.
pub fn assert_unreachable(status: StatusCode, headers: &HeaderMap) {
    assert_eq!(status, StatusCode::FORBIDDEN);
    let warning = headers
        .get("warning")
        .expect("a Warning header")
        .to_str()
        .unwrap();
    assert!(
        warning.contains("UMA Authorization Server Unreachable"),
        "{warning}"
    );
}

// ---------------------------------------------------------------------------------------------
// The protection API, with a PAT.

pub fn resource_set_url() -> String {
    format!("{ISSUER}/authz/protection/resource_set")
}

/// Registers `body` (a Keycloak resource representation) and returns its `_id`.
pub async fn register(pat: &str, body: Value) -> String {
    let a = answer(
        http()
            .post(resource_set_url())
            .bearer_auth(pat)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "register: {}", a.text);
    a.body["_id"].as_str().unwrap().to_owned()
}

pub async fn resource(pat: &str, id: &str) -> Answer {
    answer(
        http()
            .get(format!("{}/{id}", resource_set_url()))
            .bearer_auth(pat)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Deletes a resource; cleaning up, so the answer is not checked.
pub async fn unregister(pat: &str, id: &str) {
    let _ = http()
        .delete(format!("{}/{id}", resource_set_url()))
        .bearer_auth(pat)
        .send()
        .await;
}

/// The names of a resource's scopes, sorted.
pub fn scope_names(resource: &Value) -> Vec<String> {
    let scopes = resource
        .get("resource_scopes")
        .or_else(|| resource.get("scopes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = scopes
        .iter()
        .filter_map(|s| s.as_str().or_else(|| s["name"].as_str()).map(str::to_owned))
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// The admin API (master realm's admin, as keycloak.sh creates it).

pub struct Admin {
    token: String,
}

impl Admin {
    pub async fn login() -> Self {
        let a = answer(
            http()
                .post(format!(
                    "{BASE}/realms/master/protocol/openid-connect/token"
                ))
                .form(&[
                    ("grant_type", "password"),
                    ("client_id", "admin-cli"),
                    ("username", "admin"),
                    ("password", "admin"),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "admin login: {}", a.text);
        Self {
            token: a.body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A request to `/admin/realms/photos{path}`.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{BASE}/admin/realms/photos{path}");
        self.call_url(method, &url, body).await
    }

    /// A request to the admin API's `url` (another realm's, or the realms themselves).
    pub async fn call_url(&self, method: Method, url: &str, body: Option<Value>) -> Answer {
        let mut req = http().request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req.send().await.unwrap()).await
    }

    /// The internal id of a client.
    pub async fn client_uuid(&self, client_id: &str) -> String {
        let a = self
            .call(Method::GET, &format!("/clients?clientId={client_id}"), None)
            .await;
        a.body[0]["id"].as_str().unwrap().to_owned()
    }

    /// A resource of `client_id` owned by the user `owner`, with owner-managed access, made as
    /// an admin makes it in the console: Keycloak's protection API ignores `owner` and makes
    /// the resource server the owner of what it registers.
    pub async fn create_user_resource(
        &self,
        client_id: &str,
        name: &str,
        owner: &str,
        scopes: &[&str],
    ) -> String {
        let uuid = self.client_uuid(client_id).await;
        let scopes: Vec<Value> = scopes.iter().map(|s| json!({"name": s})).collect();
        let a = self
            .call(
                Method::POST,
                &format!("/clients/{uuid}/authz/resource-server/resource"),
                Some(json!({
                    "name": name,
                    "owner": owner,
                    "ownerManagedAccess": true,
                    "scopes": scopes,
                })),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "resource: {}", a.text);
        a.body["_id"].as_str().unwrap().to_owned()
    }

    pub async fn user_id(&self, username: &str) -> String {
        let a = self
            .call(
                Method::GET,
                &format!("/users?username={username}&exact=true"),
                None,
            )
            .await;
        a.body[0]["id"].as_str().unwrap().to_owned()
    }
}

/// A resource-server client of its own, made through the admin API with the authorization
/// settings of `photo-api` in `photos-realm.json` (scopes, the policy that lets bob view), but
/// none of its resources: a test that syncs with `ReconcileAndDelete` deletes only its own.
pub struct TempRs {
    pub client_id: String,
    pub secret: String,
    pub uuid: String,
}

impl TempRs {
    pub async fn create(label: &str) -> Self {
        let realm: Value = serde_json::from_str(include_str!("../../photos-realm.json")).unwrap();
        let mut client = realm["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clientId"] == RS_ID)
            .unwrap()
            .clone();
        let client_id = unique(label);
        let secret = unique("secret");
        client["clientId"] = json!(client_id);
        client["secret"] = json!(secret);
        client["authorizationSettings"]["resources"] = json!([]);
        let admin = Admin::login().await;
        let a = admin.call(Method::POST, "/clients", Some(client)).await;
        assert_eq!(a.status, StatusCode::CREATED, "client: {}", a.text);
        let location = a.headers["location"].to_str().unwrap();
        let uuid = location.rsplit('/').next().unwrap().to_owned();
        Self {
            client_id,
            secret,
            uuid,
        }
    }

    /// Deletes the client and everything it holds (its resources among them).
    pub async fn remove(self) {
        let admin = Admin::login().await;
        let _ = admin
            .call(Method::DELETE, &format!("/clients/{}", self.uuid), None)
            .await;
    }

    pub async fn pat(&self) -> String {
        pat_of(&self.client_id, &self.secret).await
    }

    /// Every resource of this resource server: name → (id, representation).
    pub async fn resources(&self) -> Vec<Value> {
        let pat = self.pat().await;
        let a = answer(
            http()
                .get(format!("{}?deep=true&max=-1", resource_set_url()))
                .bearer_auth(&pat)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        a.body.as_array().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Layers and the protected app.

/// Discovery from the realm's issuer, Keycloak dialect, plain http allowed.
pub async fn discover(client_id: &str, secret: &str) -> UmaLayerBuilder {
    UmaLayer::discover(ISSUER, client_id, secret)
        .dialect(Dialect::Keycloak)
        .insecure_allow_http()
        .realm("photos")
}

/// An app whose every path answers `200` with what the layer let through: the principal's
/// subject, resource, scopes and client.
pub fn echo_app() -> Router {
    async fn echo(principal: Option<Extension<UmaPrincipal>>, req: Request) -> Json<Value> {
        let p = principal.map(|Extension(p)| {
            json!({
                "subject": p.subject(),
                "client_id": p.client_id(),
                "resource_id": p.resource_id(),
                "scopes": p.scopes(),
            })
        });
        Json(json!({"path": req.uri().path(), "principal": p}))
    }
    Router::new().fallback(any(echo))
}

/// Serves `router` on a fresh loopback port (bound before the task starts).
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// The echo app behind `layer`; its base URL.
pub async fn protected(layer: UmaLayer) -> String {
    format!("http://{}", serve(echo_app().layer(layer)).await)
}

pub async fn get(url: &str, method: Method, rpt: Option<&str>) -> reqwest::Response {
    let mut req = http().request(method, url);
    if let Some(rpt) = rpt {
        req = req.bearer_auth(rpt);
    }
    req.send().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// A recording relay in front of Keycloak.

/// Forwards every request to Keycloak (with Keycloak's own `Host`, so that URLs and issuers
/// stay Keycloak's) and records `METHOD path?query` of each; lets a test see which calls a
/// layer made, e.g. that a second start writes nothing.
#[derive(Clone)]
pub struct Relay {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        async fn forward(
            State(seen): State<Arc<Mutex<Vec<String>>>>,
            method: Method,
            uri: http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let path = uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            seen.lock().unwrap().push(format!("{method} {path}"));
            let mut req = http().request(method, format!("{BASE}{path}"));
            for (name, value) in &headers {
                if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
                    req = req.header(name, value);
                }
            }
            match req.body(body).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let mut out = HeaderMap::new();
                    for (name, value) in resp.headers() {
                        if name != http::header::TRANSFER_ENCODING
                            && name != http::header::CONTENT_LENGTH
                            && name != http::header::CONNECTION
                        {
                            out.append(name, value.clone());
                        }
                    }
                    let body = resp.bytes().await.unwrap_or_default();
                    (status, out, body).into_response()
                }
                Err(e) => (StatusCode::BAD_GATEWAY, format!("relay: {e}")).into_response(),
            }
        }
        let router = Router::new()
            .fallback(any(forward))
            .with_state(Arc::clone(&seen));
        let addr = serve(router).await;
        Self {
            url: format!("http://{addr}"),
            seen,
        }
    }

    /// The relay's URL for a Keycloak URL.
    pub fn via(&self, keycloak_url: &str) -> String {
        keycloak_url.replacen(BASE, &self.url, 1)
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// The recorded calls that write (anything but `GET`).
    pub fn writes(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| !s.starts_with("GET "))
            .collect()
    }
}
