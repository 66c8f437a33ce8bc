//! `[[tenants]]` end to end: the binary in front of one upstream for two tenants, each with
//! its own `uma-test-as` (tenant `acme` by `Host`, tenant `globex` by a stripped path prefix).
//! A token of one tenant grants nothing in the other, a request no tenant takes is `404`
//! before any AS call, one tenant's AS down leaves the other alone, the decisions carry a
//! `tenant` label, and `--check` prints a plan per tenant.

use http::{Method, StatusCode};
use uma_test_as::{Endpoint, RptSpec, TestAs};

use crate::common::*;

/// Two tenants, `acme` (`Host: acme.test`) and `globex` (`/globex/…`, stripped), each with
/// the album resource at its own AS; `extra` goes at the top level.
fn tenants_config(acme: &TestAs, globex: &TestAs, upstream: &str, extra: &str) -> String {
    let tenant = |name: &str, matches: &str, as_: &TestAs| {
        format!(
            r#"
[[tenants]]
name = "{name}"
match = {matches}
realm = "{name}-photos"
[tenants.authorization_server]
issuer = "{issuer}"
client_id = "{RS_ID}"
client_secret_env = "{SECRET_ENV}"
allow_http = true
timeout = "2s"
[[tenants.resources]]
name = "album"
owner = "alice"
path = "/albums/{{id}}"
scopes = {{ GET = ["view"] }}
"#,
            issuer = as_.issuer()
        )
    };
    format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{extra}\n{}{}",
        tenant("acme", r#"{ host = "acme.test" }"#, acme),
        tenant(
            "globex",
            r#"{ path_prefix = "/globex", strip_prefix = true }"#,
            globex
        ),
    )
}

/// Every call the ASes have seen.
fn as_calls(ases: &[&TestAs]) -> u64 {
    ases.iter()
        .map(|a| Endpoint::ALL.iter().map(|e| a.count(*e)).sum::<u64>())
        .sum()
}

fn token(as_: &TestAs) -> String {
    let album = as_.resource_id("album").expect("registered at start");
    as_.mint_rpt(RptSpec::active_for(&album, ["view"], 300))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_kept_apart_and_counted_by_name() {
    let (acme, globex) = tokio::join!(start_as(), start_as());
    let up = start_upstream().await;
    let text = tenants_config(&acme, &globex, &up.url(), "admin_listen = \"127.0.0.1:0\"");
    let (proxy, addr) = Proxy::start(&text).await;
    let url = |path: &str| format!("http://{addr}{path}");
    let (acme_token, globex_token) = (token(&acme), token(&globex));
    assert_ne!(acme.resource_id("album"), globex.resource_id("album"));

    let bearer = |t: &str| format!("Bearer {t}");
    let acme_auth = bearer(&acme_token);
    let ok = send(
        Method::GET,
        &url("/albums/1"),
        &[("host", "acme.test"), ("authorization", &acme_auth)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    // acme's token at globex: globex's AS does not know it.
    let other = send(
        Method::GET,
        &url("/globex/albums/1"),
        &[("host", "x.test"), ("authorization", &acme_auth)],
    )
    .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    let challenge = other.headers["www-authenticate"].to_str().expect("ASCII");
    assert!(challenge.contains(&globex.issuer()), "{challenge}");
    assert!(challenge.contains("realm=\"globex-photos\""), "{challenge}");
    // globex's own token, its prefix stripped for the upstream.
    let globex_auth = bearer(&globex_token);
    let stripped = send(
        Method::GET,
        &url("/globex/albums/2?x=1"),
        &[
            ("host", "x.test"),
            ("authorization", &globex_auth),
            ("x-uma-tenant", "acme"),
            ("x_uma_tenant", "acme"),
            ("x-forwarded-prefix", "/acme"),
        ],
    )
    .await;
    assert_eq!(stripped.status, StatusCode::OK);
    let seen = up.seen();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["/albums/1", "/albums/2?x=1"]);
    // The upstream learns the tenant from the proxy alone, and the prefix it lost.
    let tenant_of = |s: &Seen| {
        let all: Vec<String> = s
            .headers
            .get_all("x-uma-tenant")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        assert!(s.headers.get("x_uma_tenant").is_none());
        all
    };
    assert_eq!(tenant_of(&seen[0]), ["acme"]);
    assert!(seen[0].headers.get("x-forwarded-prefix").is_none());
    assert_eq!(tenant_of(&seen[1]), ["globex"]);
    assert_eq!(seen[1].headers["x-forwarded-prefix"], "/globex");

    // No tenant: 404 before any AS call.
    let before = as_calls(&[&acme, &globex]);
    for (host, path) in [
        ("x.test", "/albums/1"),
        ("acme.test.evil", "/albums/1"),
        ("x.test", "/globexx/albums/1"),
    ] {
        let none = send(
            Method::GET,
            &url(path),
            &[("host", host), ("authorization", &acme_auth)],
        )
        .await;
        assert_eq!(none.status, StatusCode::NOT_FOUND, "{host}{path}");
    }
    assert_eq!(as_calls(&[&acme, &globex]), before);
    assert_eq!(up.seen().len(), 2);

    // The start-up log names every tenant's issuer, not only the first.
    for (name, issuer) in [("acme", acme.issuer()), ("globex", globex.issuer())] {
        let all = proxy.stderr_contains(&issuer).await;
        assert!(
            all.lines()
                .any(|l| l.contains("connecting") && l.contains(&issuer) && l.contains(name)),
            "{all}"
        );
    }

    let admin = proxy.admin_addr().await;
    let metrics = send(Method::GET, &format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        r#"uma_decisions_total{outcome="allowed",tenant="acme"} 1"#,
        r#"uma_decisions_total{outcome="allowed",tenant="globex"} 1"#,
        r#"uma_decisions_total{outcome="challenged",tenant="globex"} 1"#,
        r#"uma_decisions_total{outcome="no_tenant",tenant="other"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
}

/// A request whose target names one tenant's host while its `Host` names another is refused
/// (`400`) before any AS call: the match and `X-Forwarded-Host` would read different hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_and_host_that_disagree_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (acme, globex) = tokio::join!(start_as(), start_as());
    let up = start_upstream().await;
    let text = tenants_config(&acme, &globex, &up.url(), "");
    let (_proxy, addr) = Proxy::start(&text).await;
    let globex_token = token(&globex);
    let before = as_calls(&[&acme, &globex]);
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let req = format!(
        "GET http://x.test/globex/albums/1 HTTP/1.1\r\nHost: acme.test\r\n\
         Authorization: Bearer {globex_token}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    tokio::time::timeout(SOON, conn.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(as_calls(&[&acme, &globex]), before);
    assert!(up.seen().is_empty());
}

/// One tenant's AS down: its requests get `403` + `Warning`, the other tenant works, and
/// `/healthz` stays `200` with the first tenant degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_as_down_leaves_the_other_alone() {
    let (acme, globex) = tokio::join!(start_as(), start_as());
    let up = start_upstream().await;
    let text = tenants_config(&acme, &globex, &up.url(), "admin_listen = \"127.0.0.1:0\"").replace(
        "timeout = \"2s\"",
        "timeout = \"2s\"\nbreaker_failure_threshold = 1",
    );
    let (proxy, addr) = Proxy::start(&text).await;
    let admin = proxy.admin_addr().await;
    let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
    let body = String::from_utf8_lossy(&health.body).into_owned();
    assert_eq!(health.status, StatusCode::OK, "{body}");
    for line in [
        "ok",
        "tenant acme authorization_server ok",
        "tenant globex authorization_server ok",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in\n{body}");
    }
    let globex_auth = format!("Bearer {}", token(&globex));
    for e in Endpoint::ALL {
        acme.set_down(e, true);
    }
    let down = send(
        Method::GET,
        &format!("http://{addr}/albums/1"),
        &[
            ("host", "acme.test"),
            ("authorization", "Bearer a-fresh-token"),
        ],
    )
    .await;
    assert_eq!(down.status, StatusCode::FORBIDDEN);
    assert_eq!(
        down.headers["warning"],
        "199 - \"UMA Authorization Server Unreachable\""
    );
    let fine = send(
        Method::GET,
        &format!("http://{addr}/globex/albums/1"),
        &[
            ("host", "acme.test.example"),
            ("authorization", &globex_auth),
        ],
    )
    .await;
    assert_eq!(fine.status, StatusCode::OK);
    let challenged = send(Method::GET, &format!("http://{addr}/globex/albums/1"), &[]).await;
    assert_eq!(challenged.status, StatusCode::UNAUTHORIZED);
    assert!(challenged.headers.get("warning").is_none());
    let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
    let body = String::from_utf8_lossy(&health.body).into_owned();
    assert_eq!(health.status, StatusCode::OK, "{body}");
    for line in [
        "tenant acme authorization_server degraded",
        "tenant globex authorization_server ok",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in\n{body}");
    }
}

/// One tenant's AS down at start: the proxy becomes ready and serves the other tenant, the
/// pending tenant's requests get `403` + `Warning` at once, `/healthz` (`200`) shows it as
/// degraded and pending, and once its AS is back it is built in the background and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_as_is_down_at_start_is_pending_then_served() {
    let (acme, globex) = tokio::join!(start_as(), start_as());
    for e in Endpoint::ALL {
        acme.set_down(e, true);
    }
    let up = start_upstream().await;
    let text = tenants_config(&acme, &globex, &up.url(), "admin_listen = \"127.0.0.1:0\"");
    let (proxy, addr) = Proxy::start(&text).await;
    let admin = proxy.admin_addr().await;
    let healthz = || async {
        let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
        let body = String::from_utf8_lossy(&health.body).into_owned();
        assert_eq!(health.status, StatusCode::OK, "{body}");
        body
    };
    let body = healthz().await;
    let lines: Vec<&str> = body.lines().collect();
    let acme_at = lines
        .iter()
        .position(|l| *l == "tenant acme authorization_server degraded")
        .unwrap_or_else(|| panic!("acme is not degraded in\n{body}"));
    assert!(
        lines[acme_at + 1].starts_with("pending: not built yet"),
        "{body}"
    );
    assert!(
        lines.contains(&"tenant globex authorization_server ok"),
        "{body}"
    );

    let globex_auth = format!("Bearer {}", token(&globex));
    let fine = send(
        Method::GET,
        &format!("http://{addr}/globex/albums/1"),
        &[("authorization", &globex_auth)],
    )
    .await;
    assert_eq!(fine.status, StatusCode::OK);
    let pending = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        send(
            Method::GET,
            &format!("http://{addr}/albums/1"),
            &[("host", "acme.test"), ("authorization", "Bearer a-token")],
        ),
    )
    .await
    .expect("no wait for acme's build");
    assert_eq!(pending.status, StatusCode::FORBIDDEN);
    assert_eq!(
        pending.headers["warning"],
        "199 - \"UMA Authorization Server Unreachable\""
    );

    for e in Endpoint::ALL {
        acme.set_down(e, false);
    }
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let body = healthz().await;
        if body
            .lines()
            .any(|l| l == "tenant acme authorization_server ok")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acme never built:\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let acme_auth = format!("Bearer {}", token(&acme));
    let served = send(
        Method::GET,
        &format!("http://{addr}/albums/1"),
        &[("host", "acme.test"), ("authorization", &acme_auth)],
    )
    .await;
    assert_eq!(served.status, StatusCode::OK);
}

/// `--check` prints each tenant's plan under `tenant NAME:` and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_a_plan_per_tenant() {
    let (acme, globex) = tokio::join!(start_as(), start_as());
    let path = write_config(&tenants_config(&acme, &globex, "http://127.0.0.1:9", ""));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_uma-proxy"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .env(SECRET_ENV, RS_SECRET)
        .output()
        .await
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acme_at = stdout.find("tenant acme:\n+ album").expect(&stdout);
    let globex_at = stdout.find("tenant globex:\n+ album").expect(&stdout);
    assert!(acme_at < globex_at, "{stdout}");
    assert!(acme.resource_id("album").is_none() && globex.resource_id("album").is_none());
}

/// `POST /admin/revoke` with `[[tenants]]`: the token is forgotten in every tenant's cache
/// (the hook does not know the tenant), so its next request asks the AS again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_the_admin_listener_reaches_the_tenants() {
    use http_body_util::{BodyExt, Full};
    const ADMIN_TOKEN: &str = "admin-token-of-the-tenants-test";
    let (acme, globex) = tokio::join!(start_as(), start_as());
    let up = start_upstream().await;
    let text = tenants_config(
        &acme,
        &globex,
        &up.url(),
        "admin_listen = \"127.0.0.1:0\"\nadmin_token_env = \"TENANTS_ADMIN\"",
    );
    let mut proxy = Proxy::spawn(&text, &[], &[("TENANTS_ADMIN", ADMIN_TOKEN)]);
    let addr = proxy.listening().await;
    let admin = proxy.admin_addr().await;
    let acme_token = token(&acme);
    let acme_auth = format!("Bearer {acme_token}");
    let url = format!("http://{addr}/albums/1");
    let headers = [("host", "acme.test"), ("authorization", acme_auth.as_str())];
    let get = || send(Method::GET, &url, &headers);
    assert_eq!(get().await.status, StatusCode::OK);
    assert_eq!(get().await.status, StatusCode::OK);
    assert_eq!(
        acme.count(Endpoint::Introspection),
        1,
        "the second was cached"
    );

    let revoke = |auth: String| {
        let body = Full::new(bytes::Bytes::from(format!("token={acme_token}")))
            .map_err(|never| match never {})
            .boxed_unsync();
        let url = format!("http://{admin}/admin/revoke");
        async move {
            let headers = [
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", auth.as_str()),
            ];
            send_with(Method::POST, &url, &headers, body).await.status
        }
    };
    assert_eq!(
        revoke("Bearer not-the-admin-token".into()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        revoke(format!("Bearer {ADMIN_TOKEN}")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get().await.status, StatusCode::OK);
    assert_eq!(
        acme.count(Endpoint::Introspection),
        2,
        "forgotten: asked again"
    );
}

/// Sends `head` (the request line and header lines, without the blank line) to the proxy at
/// `addr` on a connection of its own, and returns the whole answer.
async fn raw_request(addr: std::net::SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    conn.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await
        .expect("sent");
    let mut answer = Vec::new();
    tokio::time::timeout(SOON, conn.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A request with two `Host` lines naming `acme.test` (RFC 9112 §3.2: a server MUST answer
/// `400`). With one line, `acme` takes the request (its host); with two, the match reads no
/// host, so `globex` (any host, path `/globex`) decides it and the upstream gets
/// `X-Uma-Tenant: globex` with `X-Forwarded-Host: acme.test`: the match and
/// `X-Forwarded-Host` read different hosts, as with the target and `Host` that disagree
/// above, and the client chose which tenant decides a request for `acme.test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_two_host_lines_is_refused() {
    let (acme, globex) = tokio::join!(start_as(), start_as());
    let up = start_upstream().await;
    let text = tenants_config(
        &acme,
        &globex,
        &up.url(),
        "allowed_hosts = [\"acme.test\", \"globex.test\"]",
    );
    let (_proxy, addr) = Proxy::start(&text).await;
    let globex_token = token(&globex);
    let one = raw_request(
        addr,
        &format!(
            "GET /globex/albums/1 HTTP/1.1\r\nHost: acme.test\r\n\
             Authorization: Bearer {globex_token}\r\n"
        ),
    )
    .await;
    assert!(!one.starts_with("HTTP/1.1 200 "), "acme takes it: {one}");
    let before = as_calls(&[&acme, &globex]);
    let answer = raw_request(
        addr,
        &format!(
            "GET /globex/albums/1 HTTP/1.1\r\nHost: acme.test\r\nHost: acme.test\r\n\
             Authorization: Bearer {globex_token}\r\n"
        ),
    )
    .await;
    let forwarded: Vec<String> = up
        .seen()
        .iter()
        .map(|s| {
            format!(
                "X-Uma-Tenant {:?}, X-Forwarded-Host {:?}",
                s.headers.get("x-uma-tenant"),
                s.headers.get("x-forwarded-host")
            )
        })
        .collect();
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "two Host lines were not refused; the upstream got {forwarded:?}; answer: {answer}"
    );
    assert_eq!(as_calls(&[&acme, &globex]), before);
    assert!(forwarded.is_empty());
}
