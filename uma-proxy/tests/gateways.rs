//! uma-proxy in decision mode behind real gateways: nginx (`auth_request`) and Caddy
//! (`forward_auth`), each run as a process from the configs shipped in
//! `uma-proxy/examples/gateways/` (only their addresses replaced), with the `uma-proxy`
//! binary, a real `uma-test-as` and a recording upstream on loopback.
//!
//! Built only with the feature `gateways` (`interop/gateways/test.sh` installs nginx and
//! Caddy and turns it on): the hermetic suite needs neither. With the feature, a gateway that
//! is missing or cannot start FAILS the test; nothing here passes by skipping.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use http::{Method, StatusCode, header};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use uma_test_as::{Endpoint, RptPermission, RptSpec, TestAs};

/// The addresses the shipped configs use, replaced by the test's.
const EXAMPLE_GATEWAY: &str = "127.0.0.1:8000";
const EXAMPLE_DECISION: &str = "127.0.0.1:8081";
const EXAMPLE_API: &str = "127.0.0.1:9000";

/// A running gateway process, killed when dropped.
struct Gateway {
    _child: Child,
    addr: SocketAddr,
    _dir: PathBuf,
}

/// A free loopback port (bound, then released for the gateway to bind).
async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Waits until `addr` accepts connections, or panics with the gateway's log.
async fn wait_accepting(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the gateway exited ({status}) before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway is not listening on {addr}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shipped config `name`, with the test's addresses.
fn example(name: &str, gateway: SocketAddr, decision: SocketAddr, api: SocketAddr) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/gateways")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    for address in [EXAMPLE_GATEWAY, EXAMPLE_DECISION, EXAMPLE_API] {
        assert!(text.contains(address), "{name} names {address}");
    }
    text.replace(EXAMPLE_GATEWAY, &gateway.to_string())
        .replace(EXAMPLE_DECISION, &decision.to_string())
        .replace(EXAMPLE_API, &api.to_string())
}

/// A fresh directory for a gateway's files.
fn gateway_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Where a gateway's binary is: `$NAME_BIN` or the name on `PATH`.
fn binary(name: &str) -> String {
    let var = format!("{}_BIN", name.to_ascii_uppercase());
    std::env::var(&var).unwrap_or_else(|_| name.to_owned())
}

async fn start_nginx(decision: SocketAddr, api: SocketAddr) -> Gateway {
    let addr = free_port().await;
    let dir = gateway_dir("nginx");
    let d = dir.display();
    // The shipped file, plus what a process of its own needs: its own temporary files
    // (nginx's compiled-in ones belong to the system's nginx).
    let conf = example("nginx.conf", addr, decision, api).replacen(
        "http {",
        &format!(
            "http {{\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    \
             fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;"
        ),
        1,
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.join("error.log");
    let mut globals =
        format!("daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;");
    // One process (no master), so that killing it on drop stops everything; as root, it reads
    // and writes the test's directory (CI runs as root).
    if is_root() {
        globals.push_str(" user root;");
    }
    let mut child = Command::new(binary("nginx"))
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(&log)
        .arg("-g")
        .arg(globals)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("nginx cannot start ({e}): install it (interop/gateways/test.sh does)")
        });
    wait_accepting(addr, &mut child, &log).await;
    Gateway {
        _child: child,
        addr,
        _dir: dir,
    }
}

/// Whether this process runs as root (from `/proc/self/status`, without `unsafe`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

async fn start_caddy(decision: SocketAddr, api: SocketAddr) -> Gateway {
    let addr = free_port().await;
    let dir = gateway_dir("caddy");
    let conf_path = dir.join("Caddyfile");
    std::fs::write(&conf_path, example("Caddyfile", addr, decision, api)).unwrap();
    let log = dir.join("caddy.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(binary("caddy"))
        .arg("run")
        .arg("--config")
        .arg(&conf_path)
        .arg("--adapter")
        .arg("caddyfile")
        // Caddy keeps its state under $HOME/$XDG_DATA_HOME: the test's directory.
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("caddy cannot start ({e}): install it (interop/gateways/test.sh does)")
        });
    wait_accepting(addr, &mut child, &log).await;
    Gateway {
        _child: child,
        addr,
        _dir: dir,
    }
}

/// uma-proxy (the binary) in decision mode for `as_`, listening on a port of its own.
async fn start_decision(as_: &TestAs) -> (Proxy, SocketAddr) {
    let metadata = "[resource_metadata]\nresource = \"http://photos.test\"\n";
    Proxy::start(&decision_config(as_, metadata)).await
}

/// The whole UMA flow through the gateway at `gw`: the challenge reaches the client unchanged,
/// bob's RPT passes with the X-Uma-* headers at the API, DELETE is refused, a client's own
/// X-Uma-* never reach the API, an AS outage is 403 + Warning.
async fn uma_flow_through(gw: SocketAddr, as_: &TestAs, up: &Upstream, decision: SocketAddr) {
    let url = |path: &str| format!("http://{gw}{path}");

    // No token: the decision's 401 and its challenge, as uma-proxy gives them.
    let r = send(Method::GET, &url("/albums/1"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers.get_all(header::WWW_AUTHENTICATE).iter().count(),
        1,
        "one challenge"
    );
    let challenge = r.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("UMA realm=\"photos\", as_uri=\""),
        "{challenge}"
    );
    let direct = send(
        Method::GET,
        &format!("http://{decision}/auth"),
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1"),
        ],
    )
    .await;
    let direct = direct.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    let shape = |c: &str| c.split("ticket=").next().unwrap().to_owned();
    assert_eq!(
        shape(&challenge),
        shape(direct),
        "the challenge passes unchanged"
    );
    let ticket = challenge
        .split("ticket=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap();
    assert!(up.seen().is_empty(), "nothing reached the API");

    // Bob trades the ticket for an RPT; with it the API gets the request and who asked.
    let id_token = bob_id_token(as_).await;
    let rpt = rpt_for(as_, ticket, &id_token).await;
    let bearer = format!("Bearer {rpt}");
    let r = send(
        Method::GET,
        &url("/albums/1?size=large"),
        &[("authorization", &bearer), ("x-uma-subject", "mallory")],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(seen[0].uri, "/albums/1?size=large");
    assert_eq!(seen[0].headers["x-uma-subject"], "bob");
    assert_eq!(seen[0].headers["x-uma-client-id"], APP_ID);
    let permissions = seen[0].headers["x-uma-permissions"].to_str().unwrap();
    assert!(permissions.contains("\"view\""), "{permissions}");

    // DELETE needs a scope bob's RPT does not hold: refused, the API not reached.
    let r = send(
        Method::DELETE,
        &url("/albums/1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("ticket=\"")
    );
    assert_eq!(up.seen().len(), 1);

    // A public route: through without a token, and a client's own X-Uma-* stay out.
    let r = send(
        Method::GET,
        &url("/public/x"),
        &[
            ("x-uma-subject", "mallory"),
            ("x-uma-client-id", "evil"),
            ("x-uma-permissions", "[]"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for name in ["x-uma-subject", "x-uma-client-id", "x-uma-permissions"] {
        // Absent (nginx sends no empty header) or empty (Caddy copies the empty value).
        let value = seen[1].headers.get(name);
        assert!(
            value.is_none_or(|v| v.is_empty()),
            "a client's {name} reached the API: {value:?}"
        );
    }

    // An RPT without `sub` or `client_id` (Keycloak's have no `sub`): a client's own X-Uma-*
    // still never reach the API.
    let anonymous = as_.mint_rpt(RptSpec {
        sub: None,
        client_id: None,
        permissions: vec![RptPermission::new(
            as_.resource_id("album").unwrap(),
            ["view"],
        )],
        ..RptSpec::active_for("unused", ["unused"], 300)
    });
    let r = send(
        Method::GET,
        &url("/albums/2"),
        &[
            ("authorization", &format!("Bearer {anonymous}")),
            ("x-uma-subject", "mallory"),
            ("x-uma-client-id", "evil"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.uri, "/albums/2");
    for name in ["x-uma-subject", "x-uma-client-id"] {
        let value = last.headers.get(name);
        assert!(
            value.is_none_or(|v| v.is_empty()),
            "a client's {name} reached the API: {value:?}"
        );
    }
    assert!(
        last.headers["x-uma-permissions"]
            .to_str()
            .unwrap()
            .contains("view")
    );

    // RFC 9728 metadata, through the gateway, from uma-proxy.
    let r = send(
        Method::GET,
        &url("/.well-known/oauth-protected-resource"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["resource"], "http://photos.test");
    let seen = up.seen().len();

    // The AS unreachable: 403 with the Warning, at the client.
    as_.set_down(Endpoint::Introspection, true);
    let r = send(
        Method::GET,
        &url("/albums/1"),
        &[("authorization", "Bearer another-rpt")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let warning = r.headers[header::WARNING].to_str().unwrap();
    assert!(
        warning.contains("UMA Authorization Server Unreachable"),
        "{warning}"
    );
    as_.set_down(Endpoint::Introspection, false);
    assert_eq!(up.seen().len(), seen, "nothing more reached the API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let (_proxy, decision) = start_decision(&as_).await;
    let gw = start_nginx(decision, up.addr).await;
    uma_flow_through(gw.addr, &as_, &up, decision).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let (_proxy, decision) = start_decision(&as_).await;
    let gw = start_caddy(decision, up.addr).await;
    uma_flow_through(gw.addr, &as_, &up, decision).await;

    // Caddy passes every refusal on as it is: a spelling the layer refuses is 400.
    let r = send(
        Method::GET,
        &format!("http://{}/albums/%2e%2e/public/x", gw.addr),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
