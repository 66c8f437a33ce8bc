//! The `uma-proxy` binary against Keycloak: its configuration, the process (its address read
//! from the first line of its standard output, its admin address from its log) and an
//! upstream that answers with the `X-Uma-*` headers it received.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "test helpers: a failure is a test failure"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::routing::any;
use http::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{ISSUER, SOON, serve, unique};

pub const SECRET_ENV: &str = "KEYCLOAK_INTEROP_PROXY_SECRET";

/// The `uma-proxy` binary of this build (`test.sh` builds it first): beside the `deps`
/// directory of this test executable.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join(format!("uma-proxy{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p uma-proxy --locked`; test.sh does)",
        bin.display()
    );
    bin
}

/// An upstream whose every path answers `200` with the `X-Uma-*` headers it received.
pub async fn upstream() -> String {
    async fn echo(headers: HeaderMap) -> Json<Value> {
        let h = |name: &str| {
            headers
                .get(name)
                .map(|v| Value::String(v.to_str().unwrap_or("").to_owned()))
                .unwrap_or(Value::Null)
        };
        Json(json!({
            "subject": h("x-uma-subject"),
            "client_id": h("x-uma-client-id"),
            "permissions": h("x-uma-permissions"),
        }))
    }
    format!("http://{}", serve(Router::new().fallback(any(echo))).await)
}

/// A configuration for the Keycloak dialect with the realm's issuer, protecting
/// `/albums/{id}` (GET view, DELETE delete) as the resource `resource`; `as_extra` lines go
/// into `[authorization_server]`, `cache` lines into `[cache]`.
pub fn config(
    client_id: &str,
    upstream: &str,
    resource: &str,
    as_extra: &str,
    cache: &str,
) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"
realm = "photos"

[authorization_server]
issuer = "{ISSUER}"
dialect = "keycloak"
client_id = "{client_id}"
client_secret_env = "{SECRET_ENV}"
allow_http = true
timeout = "5s"
{as_extra}

[cache]
{cache}

[[resources]]
name = "{resource}"
path = "/albums/{{id}}"
scopes = {{ GET = ["view"], DELETE = ["delete"] }}
"#
    )
}

pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

impl Proxy {
    /// Starts the binary with `config` and the client secret `secret`, and waits until it
    /// serves (it prints its address once the start-up sync is done).
    pub async fn start(config: &str, secret: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.toml", unique("keycloak-proxy")));
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&path)
            .env(SECRET_ENV, secret)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("uma-proxy starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(SOON, out.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no `listening on` line; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            })
            .unwrap()
            .unwrap_or_else(|| panic!("uma-proxy exited; stderr:\n{}", stderr.lock().unwrap()));
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        Self {
            child,
            addr,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The admin address, from the `admin listening on http://ADDR` log line.
    pub async fn admin(&self) -> String {
        const MARK: &str = "admin listening on http://";
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let log = self.stderr();
            if let Some(i) = log.find(MARK) {
                let rest = &log[i + MARK.len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"')
                    .unwrap_or(rest.len());
                return format!("http://{}", &rest[..end]);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no admin address:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
