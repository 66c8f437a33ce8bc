//! The agreement with Keycloak's own enforcer (issue 14, "Decisions that match Keycloak's own
//! enforcer"): the same corpus of requests sent to uma-proxy and to Keycloak's policy enforcer
//! (the Quarkus service of `interop/keycloak/quarkus/`, started by `enforcer.sh`), both
//! configured from the same `keycloak.json`, in Keycloak's two modes: permission exchange
//! (`agreement/keycloak-exchange.json`, no `user-managed-access`) and UMA
//! (`agreement/keycloak-uma.json`). Each answer is reduced to its outcome (pass, `401` with a
//! UMA ticket, `401`, `403`, other); every difference must be listed, with its reason, in
//! `agreement/allow.json`. Prints the table; fails on an unlisted difference.
//!
//! Run by `interop/keycloak/agreement.sh`, which builds the enforcer and uma-proxy first.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a comparison run against live servers: a failure is a test failure, the table is its output"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::proxy::{Proxy, upstream};
use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Realm content the corpus needs, made idempotently: whoever started Keycloak, and on a fresh one.

/// The resources of `agreement/resources.json`, registered for `photo-api` unless a resource of
/// that name exists. Their names are fixed: the configuration files name them.
async fn ensure_resources() {
    let pat = pat_of(RS_ID, RS_SECRET).await;
    for resource in read_json(&here().join("agreement/resources.json"))
        .as_array()
        .unwrap()
    {
        let name = resource["name"].as_str().unwrap();
        if find_resource(&pat, name).await.is_none() {
            register(&pat, resource.clone()).await;
        }
    }
}

/// The clients of `agreement/clients.json`, made through the admin API unless they exist.
async fn ensure_clients(admin: &Admin) {
    for client in read_json(&here().join("agreement/clients.json"))
        .as_array()
        .unwrap()
    {
        let id = client["clientId"].as_str().unwrap();
        let found = admin
            .call(Method::GET, &format!("/clients?clientId={id}"), None)
            .await;
        if found.body.as_array().is_none_or(Vec::is_empty) {
            let made = admin
                .call(Method::POST, "/clients", Some(client.clone()))
                .await;
            assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        }
    }
}

/// The id of `photo-api`'s resource named `name` (the names are plain ASCII, no escaping).
async fn find_resource(pat: &str, name: &str) -> Option<String> {
    let found = answer(
        http()
            .get(format!("{}?name={name}&exactName=true", resource_set_url()))
            .bearer_auth(pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    found.body[0].as_str().map(str::to_owned)
}

async fn resource_id(pat: &str, name: &str) -> String {
    find_resource(pat, name)
        .await
        .unwrap_or_else(|| panic!("no resource {name}"))
}

// ---------------------------------------------------------------------------------------------
// Tokens.

async fn token(form: &[(&str, &str)], url: &str) -> String {
    let a = answer(http().post(url).form(form).send().await.unwrap()).await;
    assert_eq!(a.status, StatusCode::OK, "{form:?}: {}", a.text);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// An RPT for `user_token` from Keycloak's uma-ticket grant for `photo-api`, with the given
/// `permission` parameters (none: every permission the user may have).
async fn rpt_for(user_token: &str, permissions: &[&str]) -> String {
    let mut params = vec![("audience", RS_ID)];
    params.extend(permissions.iter().map(|p| ("permission", *p)));
    let a = uma_grant_with(user_token, &params).await;
    assert_eq!(a.status, StatusCode::OK, "RPT {permissions:?}: {}", a.text);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// The `Authorization` headers of one request, and the label of that kind of credential.
#[derive(Clone)]
struct Auth {
    label: &'static str,
    headers: Vec<String>,
    /// A token of a user session whose end at Keycloak explains a difference (see
    /// [`session_alive`]).
    session: Option<String>,
}

fn bearer(label: &'static str, token: &str) -> Auth {
    Auth {
        label,
        headers: vec![format!("Bearer {token}")],
        session: None,
    }
}

fn header(label: &'static str, value: String) -> Auth {
    Auth {
        label,
        headers: vec![value],
        session: None,
    }
}

/// `token`, of the user session `session` (an access token of it, checked on a difference).
fn in_session(label: &'static str, token: &str, session: &str) -> Auth {
    Auth {
        session: Some(session.to_owned()),
        ..bearer(label, token)
    }
}

/// Whether the user session of `token` still exists at Keycloak. Keycloak ends a session when
/// one of its RPTs, a few seconds old, is the bearer of a uma-ticket grant (README.md,
/// "Sessions Keycloak ends"; uma-proxy's permission exchange did that before it sent RPTs as
/// `subject_token`); from then on uma-proxy, which introspects, challenges the session's
/// tokens, while Keycloak's enforcer, which checks the JWT itself, accepts them until they
/// expire. Such a request measures that, not the decision: the run counts it apart.
async fn session_alive(token: &str) -> bool {
    http()
        .get(format!("{ISSUER}/protocol/openid-connect/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status() == StatusCode::OK)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1: the request target goes out exactly as written (no client normalises it).

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Pass,
    Ticket,
    Unauthorized,
    Forbidden,
    Other(u16),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Ticket => f.write_str("401+ticket"),
            Self::Unauthorized => f.write_str("401"),
            Self::Forbidden => f.write_str("403"),
            Self::Other(s) => write!(f, "{s}"),
        }
    }
}

async fn send(addr: &str, method: &str, target: &str, auth: &Auth) -> Outcome {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in &auth.headers {
        req.push_str(&format!("Authorization: {h}\r\n"));
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    } else {
        req.push_str("\r\n");
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .unwrap_or_else(|_| panic!("{addr}: {method} {target}: no answer in 60 s"))
        .unwrap_or_else(|e| panic!("{addr}: {method} {target}: {e}"));
    let text = String::from_utf8_lossy(&bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{addr}: {method} {target}: not HTTP: {text:.200}"));
    let uma_ticket = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("www-authenticate:") && l.contains("uma") && l.contains("ticket=")
    });
    match status {
        200..=299 => Outcome::Pass,
        401 if uma_ticket => Outcome::Ticket,
        401 => Outcome::Unauthorized,
        403 => Outcome::Forbidden,
        s => Outcome::Other(s),
    }
}

// ---------------------------------------------------------------------------------------------
// The two servers of one mode.

/// An enforcer started by `enforcer.sh`, stopped (by its port) when dropped.
struct Enforcer {
    port: u16,
}

impl Enforcer {
    async fn start(config: &Path) -> Self {
        // A free port: bound, read, released (enforcer.sh refuses a port in use).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = tokio::process::Command::new(here().join("enforcer.sh"))
            .args(["start", "--port", &port.to_string(), "--config"])
            .arg(config)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("enforcer ready at"),
            "enforcer.sh start failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(here().join("enforcer.sh"))
            .args(["stop", "--port", &self.port.to_string()])
            .output();
    }
}

async fn proxy_for(config: &Path, upstream: &str) -> Proxy {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nkeycloak_config = \"{}\"\n",
        config.display()
    );
    Proxy::start(&toml, RS_SECRET).await
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// One request of the corpus: the mode's name, the credential, the method and the target.
struct Case {
    mode: &'static str,
    auth: Auth,
    method: &'static str,
    target: &'static str,
}

/// The paths every credential is tried on, with the methods that matter there.
const CORE: &[(&str, &str)] = &[
    ("GET", "/agree/albums/1"),
    ("DELETE", "/agree/albums/1"),
    ("POST", "/agree/albums/1"),
    ("PUT", "/agree/albums/1"),
    ("GET", "/agree/files/a/b.txt"),
    ("DELETE", "/agree/files/a/b.txt"),
    ("GET", "/agree/private/1"),
    ("GET", "/agree/public/x"),
    ("GET", "/agree/lazy/photos/7"),
    ("DELETE", "/agree/lazy/photos/7"),
    ("GET", "/agree/unmapped"),
];

/// Spellings of paths: case, percent-encoding, dot segments, slashes, queries, parameters.
const VARIANTS: &[(&str, &str)] = &[
    ("GET", "/agree/albums/1/"),
    ("GET", "/agree/albums"),
    ("GET", "/agree/albums/"),
    ("GET", "/agree/albums/1/x"),
    ("GET", "/AGREE/albums/1"),
    ("GET", "/agree/Albums/1"),
    ("GET", "/agree/%61lbums/1"),
    ("GET", "/agree/albums/%31"),
    ("GET", "/agree/albums/1%2F2"),
    ("GET", "/agree/albums/a%20b"),
    ("GET", "/agree/./albums/1"),
    ("GET", "/agree/x/../albums/1"),
    ("GET", "/agree/albums/1/.."),
    ("GET", "/agree//albums/1"),
    ("GET", "/agree/albums/1?x=1&y=%2F"),
    ("GET", "/agree/albums/1;x=1"),
    ("GET", "/agree/files"),
    ("GET", "/agree/files/"),
    ("GET", "/agree/filesx"),
    ("GET", "/agree/public/../albums/1"),
    ("GET", "/agree/public/%2e%2e/albums/1"),
    ("GET", "/agree/public"),
    ("GET", "/agree/lazy"),
    ("GET", "/agree/lazy/"),
    ("GET", "/"),
    ("HEAD", "/agree/albums/1"),
    ("PATCH", "/agree/albums/1"),
    ("OPTIONS", "/agree/albums/1"),
    ("get", "/agree/albums/1"),
];

fn corpus(mode: &'static str, auths: &[Auth], variant_auths: &[Auth], bad: &[Auth]) -> Vec<Case> {
    let mut cases = Vec::new();
    for auth in auths {
        for (method, target) in CORE {
            cases.push(Case {
                mode,
                auth: auth.clone(),
                method,
                target,
            });
        }
    }
    for auth in variant_auths {
        for (method, target) in VARIANTS {
            cases.push(Case {
                mode,
                auth: auth.clone(),
                method,
                target,
            });
        }
    }
    for auth in bad {
        for (method, target) in [("GET", "/agree/albums/1"), ("GET", "/agree/public/x")] {
            cases.push(Case {
                mode,
                auth: auth.clone(),
                method,
                target,
            });
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// The allow-list.

struct Allowed {
    entry: Value,
    used: usize,
}

fn field_matches(entry: &Value, key: &str, value: &str) -> bool {
    match &entry[key] {
        Value::Null => true,
        Value::String(s) => s == "*" || s == value,
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(value)),
        _ => false,
    }
}

fn allowed<'a>(
    list: &'a mut [Allowed],
    case: &Case,
    ours: &Outcome,
    theirs: &Outcome,
) -> Option<&'a mut Allowed> {
    list.iter_mut().find(|a| {
        let e = &a.entry;
        field_matches(e, "mode", case.mode)
            && field_matches(e, "auth", case.auth.label)
            && field_matches(e, "method", case.method)
            && field_matches(e, "target", case.target)
            && field_matches(e, "uma_proxy", &ours.to_string())
            && field_matches(e, "keycloak", &theirs.to_string())
    })
}

// ---------------------------------------------------------------------------------------------

/// The credentials of one mode's corpus, each user credential in a user session of its own.
struct Credentials {
    core: Vec<Auth>,
    variants: Vec<Auth>,
    bad: Vec<Auth>,
}

/// Fresh sessions for one mode (so that a session Keycloak ends touches one credential of one
/// mode), plus the credentials that need none.
async fn credentials(ids: &Ids, shared: &[Auth]) -> Credentials {
    let album = format!("{}#view", ids.album);
    let lazy = format!("{}#view", ids.lazy);
    let session = |user: &'static str| user_token(user);
    let bob = session("bob").await;
    let alice = session("alice").await;
    let all = session("bob").await;
    let rpt_all = rpt_for(&all, &[]).await;
    let by_album = session("bob").await;
    let rpt_album = rpt_for(&by_album, &[&album]).await;
    let by_files = session("bob").await;
    let rpt_files = rpt_for(&by_files, &[&ids.files]).await;
    let by_lazy = session("bob").await;
    let rpt_lazy = rpt_for(&by_lazy, &[&lazy]).await;
    let mut core = vec![
        Auth {
            label: "none",
            headers: vec![],
            session: None,
        },
        in_session("access token bob", &bob, &bob),
        in_session("access token alice", &alice, &alice),
        in_session("RPT bob all", &rpt_all, &all),
        in_session("RPT bob album#view", &rpt_album, &by_album),
        in_session("RPT bob files", &rpt_files, &by_files),
        in_session("RPT bob lazy#view", &rpt_lazy, &by_lazy),
    ];
    core.extend_from_slice(shared);
    let for_variants = session("bob").await;
    let variant_rpt = session("bob").await;
    let variant_album = rpt_for(&variant_rpt, &[&album]).await;
    let variants = vec![
        core[0].clone(),
        in_session("access token bob", &for_variants, &for_variants),
        in_session("RPT bob album#view", &variant_album, &variant_rpt),
    ];
    let for_bad = session("bob").await;
    let rpt = rpt_for(&for_bad, &[&album]).await;
    let bad = vec![
        header("Bearer, no token", "Bearer".into()),
        header("Bearer, empty token", "Bearer ".into()),
        header("Bearer token extra", format!("Bearer {rpt} extra")),
        Auth {
            session: Some(for_bad.clone()),
            ..header("lower-case bearer", format!("bearer {rpt}"))
        },
        header("two spaces", format!("Bearer  {rpt}")),
        header("Basic", "Basic Ym9iOmJvYg==".into()),
        Auth {
            label: "two Authorization headers",
            headers: vec![format!("Bearer {rpt}"), "Bearer not-a-token".into()],
            session: None,
        },
    ];
    Credentials {
        core,
        variants,
        bad,
    }
}

/// The ids of the resources the RPTs are asked for.
struct Ids {
    album: String,
    files: String,
    lazy: String,
}

/// The tally of one mode.
#[derive(Default)]
struct Tally {
    requests: usize,
    agreed: usize,
    listed: usize,
    session_ended: usize,
    unlisted: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uma_proxy_agrees_with_keycloaks_enforcer() {
    require_keycloak().await;
    let t0 = std::time::Instant::now();
    let admin = Admin::login().await;
    ensure_clients(&admin).await;
    ensure_resources().await;

    // The short-lived tokens first, so that they have expired when the corpus runs.
    let expired = token(
        &[
            ("grant_type", "password"),
            ("client_id", "agree-short"),
            ("username", "bob"),
            ("password", "bob"),
        ],
        &token_url(),
    )
    .await;
    let expired_rpt = rpt_for(&expired, &[]).await;
    let exp = |t: &str| claims(t)["exp"].as_i64().unwrap();
    assert!(
        exp(&expired_rpt) - now() < 30,
        "the RPT of agree-short lives {} s more: clients.json no longer makes short RPTs",
        exp(&expired_rpt) - now()
    );

    let configs = [
        ("exchange", here().join("agreement/keycloak-exchange.json")),
        ("uma", here().join("agreement/keycloak-uma.json")),
    ];
    let upstream = upstream().await;
    let (exchange_enforcer, uma_enforcer) = tokio::join!(
        Enforcer::start(&configs[0].1),
        Enforcer::start(&configs[1].1)
    );
    let exchange_proxy = proxy_for(&configs[0].1, &upstream).await;
    let uma_proxy = proxy_for(&configs[1].1, &upstream).await;
    println!(
        "servers ready after {:.1}s: uma-proxy {} / {}, enforcer {} / {}",
        t0.elapsed().as_secs_f64(),
        exchange_proxy.addr,
        uma_proxy.addr,
        exchange_enforcer.addr(),
        uma_enforcer.addr()
    );

    let pat = pat_of(RS_ID, RS_SECRET).await;
    let ids = Ids {
        album: resource_id(&pat, "agree-album").await,
        files: resource_id(&pat, "agree-files").await,
        lazy: resource_id(&pat, "agree-lazy").await,
    };
    let other_client = token(
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "agree-other"),
            ("client_secret", "agree-other-secret"),
        ],
        &token_url(),
    )
    .await;
    let master = token(
        &[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &format!("{BASE}/realms/master/protocol/openid-connect/token"),
    )
    .await;
    // A character well inside the signature (the last one may only carry padding bits, which
    // lenient base64 decoders ignore).
    let mut tampered = user_token("bob").await.into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let shared = vec![
        bearer("other client", &other_client),
        bearer("expired access token", &expired),
        bearer("expired RPT", &expired_rpt),
        bearer("master realm token", &master),
        bearer("tampered signature", &tampered),
        bearer("not a JWT", "not-a-token"),
    ];
    let mut cases = Vec::new();
    for mode in ["exchange", "uma"] {
        let c = credentials(&ids, &shared).await;
        cases.extend(corpus(mode, &c.core, &c.variants, &c.bad));
    }
    // Wait out the short-lived tokens (their lifespan is in clients.json).
    while now() <= exp(&expired).max(exp(&expired_rpt)) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let allow_path = here().join("agreement/allow.json");
    let mut allow: Vec<Allowed> = read_json(&allow_path)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Allowed {
            entry: e.clone(),
            used: 0,
        })
        .collect();

    let mut per_mode: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut unlisted = Vec::new();
    let mut ended = Vec::new();
    let t_corpus = std::time::Instant::now();
    for case in &cases {
        let (ours, theirs) = match case.mode {
            "exchange" => (exchange_proxy.addr.to_string(), exchange_enforcer.addr()),
            _ => (uma_proxy.addr.to_string(), uma_enforcer.addr()),
        };
        let ours = send(&ours, case.method, case.target, &case.auth).await;
        let theirs = send(&theirs, case.method, case.target, &case.auth).await;
        let row = per_mode.entry(case.mode).or_default();
        row.requests += 1;
        if ours == theirs {
            row.agreed += 1;
        } else if let Some(a) = allowed(&mut allow, case, &ours, &theirs) {
            a.used += 1;
            row.listed += 1;
        } else if ours != Outcome::Pass
            && let Some(session) = &case.auth.session
            && !session_alive(session).await
        {
            // Only uma-proxy refusing a token of an ended session is excused (it introspects;
            // Keycloak's enforcer checks the JWT alone): uma-proxy letting through what the
            // enforcer refuses is never excused.
            row.session_ended += 1;
            ended.push(format!(
                "| {} | {} | `{} {}` | {ours} | {theirs} |",
                case.mode, case.auth.label, case.method, case.target
            ));
        } else {
            row.unlisted += 1;
            unlisted.push(format!(
                "| {} | {} | `{} {}` | {ours} | {theirs} |",
                case.mode, case.auth.label, case.method, case.target
            ));
        }
    }
    let corpus_secs = t_corpus.elapsed().as_secs_f64();

    println!(
        "\n| mode | requests | agreed | listed differences | session ended by Keycloak | unlisted differences |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut total = Tally::default();
    for (mode, t) in &per_mode {
        println!(
            "| {mode} | {} | {} | {} | {} | {} |",
            t.requests, t.agreed, t.listed, t.session_ended, t.unlisted
        );
        total.requests += t.requests;
        total.agreed += t.agreed;
        total.listed += t.listed;
        total.session_ended += t.session_ended;
        total.unlisted += t.unlisted;
    }
    println!(
        "| all | {} | {} | {} | {} | {} |",
        total.requests, total.agreed, total.listed, total.session_ended, total.unlisted
    );
    println!("\nListed differences (agreement/allow.json):\n");
    println!("| # | requests | mode | credential | request | uma-proxy | Keycloak's enforcer |");
    println!("|---|---:|---|---|---|---|---|");
    for (i, a) in allow.iter().enumerate() {
        let e = &a.entry;
        let s = |k: &str| match &e[k] {
            Value::Null => "*".to_owned(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} {} | {} | {} |",
            i + 1,
            a.used,
            s("mode"),
            s("auth"),
            s("method"),
            s("target"),
            s("uma_proxy"),
            s("keycloak")
        );
    }
    println!(
        "\ncorpus: {} requests to each side in {corpus_secs:.1}s; whole run {:.1}s",
        cases.len(),
        t0.elapsed().as_secs_f64()
    );
    let unused: Vec<String> = allow
        .iter()
        .enumerate()
        .filter(|(_, a)| a.used == 0)
        .map(|(i, a)| format!("#{} {}", i + 1, a.entry["why"]))
        .collect();
    if !unused.is_empty() {
        println!("\nallow-list entries no request used this run:");
        for u in &unused {
            println!("  {u}");
        }
    }
    if !ended.is_empty() {
        println!(
            "\nDifferences after Keycloak ended the credential's user session (not counted):\n"
        );
        println!("| mode | credential | request | uma-proxy | Keycloak's enforcer |");
        println!("|---|---|---|---|---|");
        for u in &ended {
            println!("{u}");
        }
    }
    if !unlisted.is_empty() {
        println!("\nUNLISTED differences:\n");
        println!("| mode | credential | request | uma-proxy | Keycloak's enforcer |");
        println!("|---|---|---|---|---|");
        for u in &unlisted {
            println!("{u}");
        }
    }
    assert!(
        unlisted.is_empty(),
        "{} differences are not in {}",
        unlisted.len(),
        allow_path.display()
    );
}
