//! The standalone `uma-test-as` server.
//!
//! ```text
//! uma-test-as [--listen 127.0.0.1:8180] [--config as.toml] [--dialect standard|keycloak|wso2]
//!             [--realm NAME]
//! ```
//!
//! The first line on standard output is `listening on http://ADDR` (with the real port when
//! `--listen` asks for port 0, and `127.0.0.1` / `[::1]` for an unspecified address such as
//! `0.0.0.0`) — the base URL, also for Keycloak, whose issuer is
//! `http://ADDR/realms/{realm}`. `--dialect` and `--realm` override the configuration file. Logs go to standard error (filter with `RUST_LOG`, default
//! `info`). Without `--config` the server uses the sample configuration
//! (`examples/as.toml`). Exit codes: 0 after Ctrl-C/SIGTERM, 1 if the address cannot be
//! bound, 2 for a bad configuration or command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use uma_test_as::{AuthServerBuilder, Config, Dialect};

/// A small UMA 2.0 authorization server for tests, demos and local development.
#[derive(Debug, Parser)]
#[command(name = "uma-test-as", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8180")]
    listen: SocketAddr,
    /// TOML configuration file (default: the built-in sample with photo-api, photo-app,
    /// alice and bob).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The authorization server to imitate: standard, keycloak or wso2 (default: the
    /// configuration's `dialect`, else standard).
    #[arg(long)]
    dialect: Option<Dialect>,
    /// The Keycloak realm (default: the configuration's `realm`, else `uma`); only with the
    /// keycloak dialect.
    #[arg(long)]
    realm: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = match &args.config {
        Some(path) => match Config::from_path(path) {
            Ok(config) => config,
            Err(error) => {
                report(&error);
                return ExitCode::from(2);
            }
        },
        None => Config::example(),
    };
    let dialect = args.dialect.unwrap_or(config.dialect());
    let mut builder = AuthServerBuilder::from_config(config).dialect(dialect);
    if let Some(realm) = args.realm {
        if dialect != Dialect::Keycloak {
            eprintln!("error: --realm only applies to --dialect keycloak");
            return ExitCode::from(2);
        }
        builder = builder.realm(realm);
    }
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            report(&error);
            return ExitCode::from(1);
        }
    };
    let server = match builder.spawn_on(listener).await {
        Ok(server) => server,
        Err(error) => {
            report(&error);
            let code = if error.kind() == std::io::ErrorKind::InvalidInput {
                2
            } else {
                1
            };
            return ExitCode::from(code);
        }
    };

    {
        let mut stdout = std::io::stdout().lock();
        // The documented start-up line; written (not `println!`) so a closed stdout is an
        // error instead of a panic.
        // The base URL, not the raw bound address: `0.0.0.0` is printed as `127.0.0.1`, which
        // is what the issuer says.
        let written =
            writeln!(stdout, "listening on {}", server.base_url()).and_then(|()| stdout.flush());
        if let Err(error) = written {
            report(&error);
            return ExitCode::from(1);
        }
    }
    tracing::info!(issuer = %server.issuer(), dialect = %server.dialect(), "uma-test-as ready");

    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Prints an error and its sources to standard error.
fn report(error: &dyn std::error::Error) {
    let mut message = format!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
