//! The binary refuses bad configurations before contacting anything: a message naming the
//! key (and the line, where there is one) on standard error, exit code 2.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const GOOD: &str = r#"listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:9"
[authorization_server]
issuer = "http://127.0.0.1:9"
allow_http = true
client_id = "photo-api"
client_secret_env = "UMA_PROXY_CFG_TEST_SECRET"
[[resources]]
name = "album"
path = "/albums/{id}"
scopes = { GET = ["view"] }
"#;

/// Runs the binary on a file holding `config`. Each call writes its own file: tests run in
/// parallel, and two of them writing the same path (say, one named after the contents) would
/// let one binary read the file while the other has just truncated it.
fn run_with(config: &str, args: &[&str]) -> (Output, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("cfg-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_uma-proxy"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("UMA_PROXY_CFG_TEST_SECRET")
        .env_remove("UMA_PROXY_CFG_TEST_UNSET")
        .output()
        .expect("the binary runs");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// Runs `config` (with the secret variable unset) and checks exit code 2, nothing on standard
/// output, and every `needle` in standard error.
fn refused(config: &str, args: &[&str], needles: &[&str]) {
    let (out, stderr) = run_with(config, args);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

fn with_secret(config: &str) -> String {
    config.replace(
        "client_secret_env = \"UMA_PROXY_CFG_TEST_SECRET\"",
        "client_secret = \"inline-secret\"",
    )
}

#[test]
fn unknown_key_names_the_key_and_its_line() {
    let config =
        with_secret(GOOD).replace("allow_http = true", "allow_http = true\ncolour = \"blue\"");
    refused(&config, &[], &["line 6", "unknown field `colour`"]);
    let config = format!("{}[cache]\nmax_tll = \"5s\"\n", with_secret(GOOD));
    refused(&config, &[], &["line 13", "unknown field `max_tll`"]);
}

#[test]
fn bad_urls_name_the_key_and_line() {
    let config = with_secret(GOOD).replace(
        "upstream = \"http://127.0.0.1:9\"",
        "upstream = \"not a url\"",
    );
    refused(
        &config,
        &[],
        &["line 2", "`upstream`", "not an absolute URL"],
    );
    let config =
        with_secret(GOOD).replace("issuer = \"http://127.0.0.1:9\"", "issuer = \"http//as\"");
    refused(&config, &[], &["line 4", "`issuer`"]);
    let config = with_secret(GOOD).replace("allow_http = true\n", "");
    refused(&config, &[], &["line 4", "`issuer`", "allow_http"]);
    refused(
        &with_secret(GOOD),
        &["--upstream", "https://tls.example"],
        &["--upstream", "only http://"],
    );
}

#[test]
fn missing_secret_env_names_the_variable_and_line() {
    refused(
        GOOD,
        &[],
        &[
            "line 7",
            "`client_secret_env`",
            "`UMA_PROXY_CFG_TEST_SECRET` is not set",
        ],
    );
}

#[test]
fn missing_required_keys_are_named() {
    let config = with_secret(GOOD).replace("upstream = \"http://127.0.0.1:9\"\n", "");
    refused(&config, &[], &["missing key `upstream`"]);
    refused(
        "upstream = \"http://127.0.0.1:9\"\n",
        &[],
        &["missing field `authorization_server`"],
    );
    let config = with_secret(GOOD).replace("client_id = \"photo-api\"\n", "");
    refused(&config, &[], &["missing field `client_id`"]);
    let config = with_secret(GOOD).replace("client_secret = \"inline-secret\"\n", "");
    refused(
        &config,
        &[],
        &["line 3", "`client_secret` or `client_secret_env`"],
    );
}

#[test]
fn bad_resources_and_values_are_refused() {
    let config = with_secret(GOOD).replace("GET = [\"view\"]", "GET = []");
    refused(&config, &[], &["line 11", "empty"]);
    let config = with_secret(GOOD).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nenforcement = \"strict\"",
    );
    refused(&config, &[], &["line 2", "unknown variant `strict`"]);
    let config = with_secret(GOOD).replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nupstream_timeout = \"soon\"",
    );
    refused(&config, &[], &["line 2", "invalid duration `soon`"]);
}

/// Typos that used to be accepted silently (so the real paths fell to `unmapped`) stop the
/// binary with the line, the key and what to write instead.
#[test]
fn route_typos_are_refused_with_a_hint() {
    let config = with_secret(GOOD).replace("/albums/{id}", "/albums/:id");
    refused(&config, &[], &["line 10", "use {id} instead"]);
    let config = with_secret(GOOD).replace("GET =", "GTE =");
    refused(&config, &[], &["line 11", "`scopes`", "typo of GET"]);
    let config = with_secret(GOOD).replace("GET =", "Get =");
    refused(&config, &[], &["line 11", "`scopes`", "write GET"]);
    let config = format!("{}public_methods = [\"OPTOINS\"]\n", with_secret(GOOD));
    refused(
        &config,
        &[],
        &["line 12", "`public_methods`", "typo of OPTIONS"],
    );
}

#[test]
fn command_line_errors_exit_2() {
    let (out, stderr) = run_with(&with_secret(GOOD), &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_uma-proxy"))
        .args(["--config", "/nonexistent/uma-proxy.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
    refused(
        &with_secret(GOOD),
        &["--listen", "localhost:80"],
        &["--listen", "not an address"],
    );
}
