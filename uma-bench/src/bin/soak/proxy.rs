//! The proxy under test: its configuration, its process, its log and its resource use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use uma_test_as::TestAs;

use crate::report::Sample;
use crate::{Args, BoxError, Mode, RS_ID, RS_SECRET, Run};

/// The running proxy.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: Option<SocketAddr>,
    child: Child,
    config: PathBuf,
}

fn config(args: &Args, auth: &TestAs, upstream: SocketAddr) -> String {
    let admin = if args.mode == Mode::NoAdmin {
        ""
    } else {
        "admin_listen = \"127.0.0.1:0\"\n"
    };
    format!(
        r#"listen = "127.0.0.1:0"
upstream = "http://{upstream}"
realm = "soak"
unmapped = "deny"
{admin}
[authorization_server]
issuer = "{issuer}"
client_id = "{RS_ID}"
client_secret = "{RS_SECRET}"
allow_http = true
timeout = "{timeout}s"

[cache]
max_ttl = "{max_ttl}s"
max_entries = {entries}
stale_if_error = "{stale}s"

[[resources]]
name = "album"
owner = "alice"
path = "/albums/{{id}}"
scopes = {{ GET = ["view"], PUT = ["edit"] }}

[[resources]]
name = "public"
path = "/public/*"
public = true
"#,
        issuer = auth.issuer(),
        timeout = args.as_timeout,
        max_ttl = args.max_ttl,
        entries = args.cache_entries,
        stale = args.stale_if_error,
    )
}

/// The value of `"key":"…"` in a JSON log line (escapes left as they are).
fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &line[start..];
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(&rest[..i]),
            _ => escaped = false,
        }
    }
    None
}

/// Counts the proxy's log lines by phase and message; reports the admin address.
async fn read_log(
    run: Arc<Run>,
    stderr: impl AsyncRead + Unpin,
    admin: oneshot::Sender<SocketAddr>,
) {
    let mut admin = Some(admin);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("panicked at") {
            run.report.panic_seen();
        }
        let level = json_str(&line, "level").unwrap_or("?");
        let message = json_str(&line, "message").unwrap_or(&line);
        if let Some(addr) = message
            .strip_prefix("admin listening on http://")
            .and_then(|a| a.parse().ok())
            && let Some(tx) = admin.take()
        {
            let _ = tx.send(addr);
        }
        run.report.log_line(run.phase(), level, message);
    }
}

/// Writes the configuration and starts the proxy; returns once it listens.
pub(crate) async fn spawn(
    args: &Args,
    auth: &TestAs,
    upstream: SocketAddr,
    run: Arc<Run>,
) -> Result<Proxy, BoxError> {
    let path = std::env::temp_dir().join(format!("uma-soak-{}.toml", std::process::id()));
    std::fs::write(&path, config(args, auth, upstream))?;
    let mut child = Command::new(&args.proxy)
        .arg("--config")
        .arg(&path)
        .arg("--log-format")
        .arg("json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.proxy.display()))?;
    let pid = child.id().ok_or("the proxy has no process id")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (admin_tx, admin_rx) = oneshot::channel();
    tokio::spawn(read_log(run, stderr, admin_tx));
    let mut stdout = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await
        .map_err(|_| "the proxy did not start listening within 60 s")??
        .ok_or("the proxy exited before listening")?;
    let addr = first
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("unexpected first line from the proxy: {first}"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let admin = if args.mode == Mode::NoAdmin {
        None
    } else {
        Some(
            tokio::time::timeout(Duration::from_secs(10), admin_rx)
                .await
                .map_err(|_| "the proxy did not log its admin address")??,
        )
    };
    Ok(Proxy {
        pid,
        addr,
        admin,
        child,
        config: path,
    })
}

impl Proxy {
    /// SIGTERM, then the exit status (at most 30 s later).
    pub(crate) async fn stop(mut self) -> Result<ExitStatus, String> {
        let _ = std::fs::remove_file(&self.config);
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !sent.success() {
            return Err("kill -TERM failed".to_owned());
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(format!("cannot wait for the proxy: {e}")),
            Err(_) => Err("the proxy did not exit within 30 s of SIGTERM".to_owned()),
        }
    }
}

/// VmRSS (KiB) and the number of open descriptors of `pid`.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// Samples the proxy every second until aborted; also drops the AS's recordings, which would
/// otherwise grow with every call.
pub(crate) async fn sample(run: Arc<Run>, pid: u32, auth: Arc<TestAs>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        if let Some((rss_kib, fds)) = usage(pid) {
            run.report.sample(Sample {
                t_ms: run.now_ms(),
                phase: run.phase(),
                rss_kib,
                fds,
            });
        }
        auth.clear_requests();
    }
}
