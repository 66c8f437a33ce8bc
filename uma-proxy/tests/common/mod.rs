//! Shared set-up for the end-to-end tests: an in-process `uma-test-as`, a small upstream that
//! records what reaches it, the `uma-proxy` binary started as a process (its address read from
//! the first line of its standard output), and an HTTP client whose request bodies can be fed
//! chunk by chunk.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc};
use uma_test_as::{AuthServer, Policy, TestAs};

pub const RS_ID: &str = "photo-api";
pub const RS_SECRET: &str = "photo-api-secret-e2e-4b1f";
pub const APP_ID: &str = "photo-app";
pub const APP_SECRET: &str = "photo-app-secret-e2e-90c2";
pub const BOB_PW: &str = "bob-pw-e2e-77d1";
pub const ALICE_PW: &str = "alice-pw-e2e-31aa";
pub const SECRET_ENV: &str = "UMA_PROXY_E2E_SECRET";
pub const ID_TOKEN_FORMAT: &str = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken";
pub const UMA_GRANT: &str = "urn:ietf:params:oauth:grant-type:uma-ticket";

/// Generous bound for anything that should happen "soon" (debug builds, 2 busy cores).
pub const SOON: Duration = Duration::from_secs(30);

pub async fn start_as() -> TestAs {
    AuthServer::builder()
        .client(RS_ID, RS_SECRET)
        .client(APP_ID, APP_SECRET)
        .user("alice", ALICE_PW)
        .user("bob", BOB_PW)
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
        .spawn()
        .await
        .expect("the test AS starts")
}

/// A config for `as_` and `upstream` with the album resource, a public `/public/*` and
/// `extra` lines appended to the top level (before the tables).
pub fn config(as_: &TestAs, upstream: &str, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
upstream = "{upstream}"
realm = "photos"
{extra}
[authorization_server]
issuer = "{issuer}"
client_id = "{RS_ID}"
client_secret_env = "{SECRET_ENV}"
allow_http = true
timeout = "2s"

[cache]
max_ttl = "30s"

[[resources]]
name = "album"
type = "https://example.com/rsrc/album"
owner = "alice"
path = "/albums/{{id}}"
scopes = {{ GET = ["view"], PUT = ["edit"], DELETE = ["delete"] }}

[[resources]]
name = "public"
path = "/public/*"
public = true
"#,
        issuer = as_.issuer()
    )
}

/// The config of [`config`] in decision mode (`mode = "decision"`, no `upstream`), with
/// `extra` keys at the top level.
pub fn decision_config(as_: &TestAs, extra: &str) -> String {
    const UNUSED: &str = "http://unused.invalid";
    let text = config(as_, UNUSED, &format!("mode = \"decision\"\n{extra}"))
        .replace(&format!("upstream = \"{UNUSED}\"\n"), "");
    assert!(
        !text.contains("upstream ="),
        "a decision config names no upstream"
    );
    text
}

// ---------------------------------------------------------------------------------------------
// The upstream.

/// What reached the upstream.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body_sha256: String,
    pub peer: SocketAddr,
}

#[derive(Default)]
pub struct UpState {
    pub seen: Mutex<Vec<Seen>>,
    /// Notified when a `mode=upload` request's first body frame arrives.
    pub upload_first_frame: Notify,
    /// Notified when a `mode=hold` request arrives.
    pub held: Notify,
    /// A `mode=hold` request answers once this is notified.
    pub release: Notify,
    /// The client notifies this once it has the first chunk of a `mode=download` answer.
    pub download_first_chunk: Notify,
    /// Bytes of a `mode=download` body sent before the client confirmed the first chunk.
    pub download_sent_before_ack: AtomicU64,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<UpState>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

pub const CHUNK: usize = 1 << 20;

/// An upstream that records every request. The query selects a behaviour:
/// `mode=upload` (notify on the first body frame), `mode=hold` (answer when released),
/// `mode=sleep&ms=N`, `mode=download&chunks=N` (N MiB, the rest only after the client has
/// confirmed the first MiB); anything else echoes.
pub async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(UpState::default());
    let st = Arc::clone(&state);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let st = Arc::clone(&st);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    upstream_handle(Arc::clone(&st), peer, req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { addr, state }
}

type UpBody = UnsyncBoxBody<Bytes, std::io::Error>;

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn upstream_handle(
    st: Arc<UpState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let mode = query_param(&query, "mode").unwrap_or("echo").to_owned();
    let (parts, mut body) = req.into_parts();
    if mode == "hold" {
        st.held.notify_one();
        st.release.notified().await;
    }
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut first = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            if first && mode == "upload" {
                st.upload_first_frame.notify_one();
            }
            first = false;
            len += data.len() as u64;
            hasher.update(&data);
        }
    }
    let seen = Seen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body_len: len,
        body_sha256: hex(&hasher.finalize()),
        peer,
    };
    st.seen.lock().unwrap().push(seen.clone());
    if mode == "sleep" {
        let ms: u64 = query_param(&query, "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if mode == "download" {
        let chunks: usize = query_param(&query, "chunks")
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let st = Arc::clone(&st);
        tokio::spawn(async move {
            for i in 0..chunks {
                let chunk = Bytes::from(pattern(i, CHUNK));
                if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
                if i == 0 {
                    st.download_sent_before_ack
                        .store(CHUNK as u64, Ordering::SeqCst);
                    // The rest only once the client has the first chunk: a proxy that
                    // buffers whole responses never lets it through, and the body fails.
                    if tokio::time::timeout(SOON, st.download_first_chunk.notified())
                        .await
                        .is_err()
                    {
                        let _ = tx
                            .send(Err(std::io::Error::other(
                                "client never saw the first chunk",
                            )))
                            .await;
                        return;
                    }
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
        resp.headers_mut()
            .insert("x-up-end", HeaderValue::from_static("1"));
        return Ok(resp);
    }
    let echo = serde_json::json!({
        "method": seen.method.as_str(),
        "uri": seen.uri,
        "body_len": seen.body_len,
        "body_sha256": seen.body_sha256,
    });
    let mut resp = Response::new(
        Full::new(Bytes::from(echo.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    // An end-to-end header and hop-by-hop ones the proxy must drop on the way back.
    h.insert("x-up-end", HeaderValue::from_static("1"));
    h.insert("connection", HeaderValue::from_static("x-up-hop"));
    h.insert("x-up-hop", HeaderValue::from_static("1"));
    Ok(resp)
}

/// Deterministic content for chunk `i`.
pub fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

// ---------------------------------------------------------------------------------------------
// The proxy process.

static CONFIG_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `text` to a fresh file under the test target directory.
pub fn write_config(text: &str) -> std::path::PathBuf {
    let n = CONFIG_SEQ.fetch_add(1, Ordering::SeqCst);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("uma-proxy-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

pub struct Proxy {
    pub child: Child,
    pub pid: u32,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Proxy {
    /// Starts the binary with `config` (the secret in its environment variable) and `args`;
    /// does not wait for it to listen.
    pub fn spawn(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let path = write_config(config);
        let path = path.to_str().expect("a UTF-8 path");
        let args: Vec<&str> = ["--config", path]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        Self::spawn_args(&args, env)
    }

    /// Starts the binary with exactly `args` (the secret in its environment variable); does
    /// not wait for it to listen.
    pub fn spawn_args(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_uma-proxy"));
        cmd.args(args)
            .env(SECRET_ENV, RS_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the uma-proxy binary starts");
        let pid = child.id().expect("a running child has a pid");
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
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
        Self {
            child,
            pid,
            stdout,
            stderr,
        }
    }

    /// Waits for the first line of standard output and returns the address it names.
    pub async fn listening(&mut self) -> SocketAddr {
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no `listening on` line within 60 s; stderr:\n{}",
                    self.stderr()
                )
            })
            .unwrap();
        let Some(line) = line else {
            panic!(
                "the proxy closed its standard output; stderr:\n{}",
                self.stderr()
            );
        };
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        addr.parse().unwrap()
    }

    /// Starts the binary and waits until it serves.
    pub async fn start(config: &str) -> (Self, SocketAddr) {
        let mut p = Self::spawn(config, &[], &[]);
        let addr = p.listening().await;
        (p, addr)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until standard error contains `needle` (the log is read as it is written).
    pub async fn stderr_contains(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let s = self.stderr();
            if s.contains(needle) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stderr never contained {needle:?}:\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The admin address, from the `admin listening on http://ADDR` log line.
    pub async fn admin_addr(&self) -> SocketAddr {
        let log = self.stderr_contains("admin listening on http://").await;
        let rest = &log[log.find("admin listening on http://").unwrap()
            + "admin listening on http://".len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        rest[..end].parse().unwrap()
    }

    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(SOON, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the proxy did not exit; stderr:\n{}", self.stderr()))
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

pub type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn client() -> Client<HttpConnector, ReqBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends a request with `headers` and an empty body; collects the answer.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)]) -> Answer {
    send_with(method, url, headers, empty()).await
}

/// Sends a request with `headers` and `body`; collects the answer.
pub async fn send_with(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(SOON, client().request(req.body(body).unwrap()))
        .await
        .expect("an answer in time")
        .expect("the request succeeds");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A request body fed through a channel, chunk by chunk.
pub fn channel_body() -> (mpsc::Sender<Bytes>, ReqBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    });
    (tx, StreamBody::new(stream).boxed_unsync())
}

// ---------------------------------------------------------------------------------------------
// The UMA client side.

/// Bob's ID token, from the AS's password grant through the client `photo-app`.
pub async fn bob_id_token(as_: &TestAs) -> String {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let v: serde_json::Value = http
        .post(format!("{}/token", as_.issuer()))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", BOB_PW),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["id_token"].as_str().expect("an id_token").to_owned()
}

/// The RPT for `ticket`, with bob's ID token as the claim token.
pub async fn rpt_for(as_: &TestAs, ticket: &str, id_token: &str) -> String {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(format!("{}/token", as_.issuer()))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("grant_type", UMA_GRANT),
            ("ticket", ticket),
            ("claim_token", id_token),
            ("claim_token_format", ID_TOKEN_FORMAT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the uma-ticket grant succeeds");
    let v: serde_json::Value = resp.json().await.unwrap();
    v["access_token"].as_str().expect("an RPT").to_owned()
}
