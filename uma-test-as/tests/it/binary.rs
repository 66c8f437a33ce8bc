//! The `uma-test-as` binary: the `listening on` line, the default and file configurations, and
//! configuration errors.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{http, json};

const BIN: &str = env!("CARGO_BIN_EXE_uma-test-as");

/// A config file in a fresh temporary location (removed on drop).
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "uma-test-as-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts the binary and returns it with the address from its first stdout line.
async fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    (child, addr)
}

/// The `issuer` of the server's discovery document.
async fn issuer(addr: &str) -> Value {
    let doc = http()
        .get(format!("http://{addr}/.well-known/uma2-configuration"))
        .send()
        .await
        .unwrap();
    json(doc).await["issuer"].take()
}

async fn token_status(addr: &str, client: &str, secret: &str) -> u16 {
    http()
        .post(format!("http://{addr}/token"))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn prints_the_real_port_first_and_serves_the_default_config() {
    let (mut child, addr) = start(&["--listen", "127.0.0.1:0"]).await;
    assert!(addr.starts_with("127.0.0.1:"));
    assert_ne!(addr, "127.0.0.1:0", "port 0 prints the real port");
    assert_eq!(issuer(&addr).await, format!("http://{addr}"));
    // The built-in sample: photo-api and photo-app exist.
    assert_eq!(
        token_status(&addr, "photo-api", "photo-api-secret").await,
        200
    );
    assert_eq!(
        token_status(&addr, "photo-app", "photo-app-secret").await,
        200
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_unspecified_listen_address_prints_the_issuer_address() {
    // `0.0.0.0` is not an address to connect to: the line gives the base URL, which the
    // issuer matches, so it can be pasted as the issuer.
    let (mut child, addr) = start(&["--listen", "0.0.0.0:0"]).await;
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(issuer(&addr).await, format!("http://{addr}"));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn serves_a_config_file() {
    let config = TempConfig::new(
        "rpt_format = \"jwt\"\npat_ttl = \"5m\"\n[[clients]]\nid = \"rs\"\nsecret = \"rs-secret\"\n",
    );
    let path = config.0.to_str().unwrap();
    let (mut child, addr) = start(&["--config", path, "--listen", "127.0.0.1:0"]).await;
    assert_eq!(token_status(&addr, "rs", "rs-secret").await, 200);
    assert_eq!(
        token_status(&addr, "photo-api", "photo-api-secret").await,
        401
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_shipped_example_config_works() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/as.toml");
    let (mut child, addr) = start(&["--listen", "127.0.0.1:0", "--config", example]).await;
    assert_eq!(
        token_status(&addr, "photo-api", "photo-api-secret").await,
        200
    );
    child.kill().await.unwrap();
}

async fn failing(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN).args(args).output().await.unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn unknown_config_keys_name_the_key_and_line() {
    let config =
        TempConfig::new("rpt_format = \"opaque\"\n[[users]]\nname = \"bob\"\npasword = \"x\"\n");
    let path = config.0.to_str().unwrap();
    let (code, stdout, stderr) = failing(&["--listen", "127.0.0.1:0", "--config", path]).await;
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("pasword"), "{stderr}");
    assert!(stderr.contains(path), "{stderr}");
}

#[tokio::test]
async fn invalid_config_values_are_errors() {
    for (contents, needle) in [
        ("ticket_ttl = \"forever\"\n", "line 1"),
        (
            "[[policies]]\nresource = \"album\"\nusers = [\"nobody\"]\n",
            "nobody",
        ),
        ("rpt_format = \"jwt\"\nrpt_format = \"opaque\"\n", "line 2"),
        (
            "rpt_format = \"jwt\"\nrpt_format = \"opaque\"\n",
            "`rpt_format`: duplicate key",
        ),
        ("rpt_format = 3\n", "line 1, column 14: `rpt_format`: "),
        (
            "[[clients]]\nid = 5\nsecret = \"s\"\n",
            "line 2, column 6: `id`: invalid type",
        ),
        ("this is not toml", "line 1"),
    ] {
        let config = TempConfig::new(contents);
        let (code, _, stderr) = failing(&[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.0.to_str().unwrap(),
        ])
        .await;
        assert_eq!(code, 2, "{contents}");
        assert!(stderr.contains(needle), "{contents}: {stderr}");
    }
    let (code, _, stderr) = failing(&[
        "--config",
        "/nonexistent/as.toml",
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/as.toml"), "{stderr}");
    let (code, _, _) = failing(&["--listen", "not-an-address"]).await;
    assert_eq!(code, 2, "clap rejects a bad --listen");
}

#[tokio::test]
async fn a_busy_address_is_exit_code_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = failing(&["--listen", &addr]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.starts_with("error:"), "{stderr}");
}
