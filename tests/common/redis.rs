//! A real `redis-server` per test (Debian's package `redis-server`), on a free loopback port,
//! with no persistence, started and awaited on `PING`. Shared by tower-uma's and uma-proxy's
//! tests of the shared cache (`#[path]`-included).
//!
//! Without the binary, [`RedisServer::start`] panics when the environment variable `CI` is
//! set (CI installs it: a missing one is a failure, never a skip), and otherwise returns
//! `None` after printing why, so that the test can return early on a developer's machine.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

/// Where the binary is: on `PATH`, or Debian's place for it.
fn binary() -> Option<String> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| {
            let p = std::path::PathBuf::from("/usr/bin/redis-server");
            p.is_file().then_some(p)
        })
        .map(|p| p.to_string_lossy().into_owned())
}

impl RedisServer {
    /// A fresh redis-server on a free loopback port, answering `PING`. See the module docs
    /// for when it is `None`.
    pub fn start() -> Option<Self> {
        let Some(bin) = binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed, and CI is set: the shared-cache tests must run \
                 (apt-get install redis-server; .ci/run installs it)"
            );
            eprintln!(
                "SKIPPED: redis-server is not installed (apt-get install redis-server); this \
                 test runs only with it (and fails without it when CI is set)"
            );
            return None;
        };
        let port = free_port();
        let mut server = Self { child: None, port };
        server.spawn(&bin);
        Some(server)
    }

    fn spawn(&mut self, bin: &str) {
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.try_command(&[b"PING"]).as_deref() == Some(b"+PONG\r\n".as_slice()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (SIGKILL): connections drop, the port refuses.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, as with
    /// a Redis that hangs. [`resume`](Self::resume) undoes it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Sends one command (RESP array of bulk strings) and returns the raw reply.
    pub fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        self.try_command(args).expect("redis answers")
    }

    /// The value of `key` (`None` when absent).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let reply = self.command(&[b"GET", key.as_bytes()]);
        if reply.starts_with(b"$-1") {
            return None;
        }
        let header_end = reply.windows(2).position(|w| w == b"\r\n")?;
        let len: usize = std::str::from_utf8(&reply[1..header_end])
            .ok()?
            .parse()
            .ok()?;
        Some(reply[header_end + 2..header_end + 2 + len].to_vec())
    }

    /// Sets `key` to `value`, keeping its expiry.
    pub fn set(&self, key: &str, value: &[u8]) {
        let reply = self.command(&[b"SET", key.as_bytes(), value, b"KEEPTTL"]);
        assert_eq!(reply, b"+OK\r\n");
    }

    /// The keys matching `pattern`, unordered.
    pub fn keys(&self, pattern: &str) -> usize {
        let reply = self.command(&[b"KEYS", pattern.as_bytes()]);
        let end = reply.windows(2).position(|w| w == b"\r\n").unwrap_or(1);
        std::str::from_utf8(&reply[1..end])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn try_command(&self, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).ok()?;
        let mut out = Vec::new();
        let mut buf = [0_u8; 65536];
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if complete(&out) {
                break;
            }
        }
        Some(out)
    }
}

/// Whether `reply` holds one whole RESP reply (simple, error, integer, bulk or a null).
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    match reply.first() {
        Some(b'$') => {
            let len: i64 = std::str::from_utf8(&reply[1..end])
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(-1);
            len < 0 || reply.len() >= end + 2 + len as usize + 2
        }
        Some(b'*') => true,
        _ => true,
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Drop for RedisServer {
    /// Kills the server, whatever its state (SIGKILL ends a stopped process too); never
    /// panics, so that a failing test reports its own failure.
    fn drop(&mut self) {
        self.stop();
    }
}
