//! The `uma-proxy` command: see the crate README for the configuration and a walkthrough.
//!
//! Exit codes: 0 after SIGTERM or Ctrl-C (requests in flight finished or `shutdown_timeout`
//! passed); 1 when an address cannot be bound or the runtime cannot start; 2 for a bad command
//! line or configuration (the message names the file, line and key).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;
use uma_proxy::forward::error_chain;
use uma_proxy::{Config, Overrides, run};

/// A reverse proxy that puts a UMA 2.0 resource server in front of an HTTP API.
#[derive(Debug, Parser)]
#[command(name = "uma-proxy", version)]
struct Cli {
    /// The configuration file (TOML). Optional with --keycloak-config.
    #[arg(long, value_name = "FILE", required_unless_present = "keycloak_config")]
    config: Option<PathBuf>,
    /// Keycloak's keycloak.json (or policy-enforcer.json): the authorization server, the
    /// client and the paths, in place of [authorization_server]. Wins over the file's
    /// `keycloak_config`.
    #[arg(long, value_name = "FILE")]
    keycloak_config: Option<PathBuf>,
    /// Listen on this address instead of the file's `listen` (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Forward to this URL instead of the file's `upstream`.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Print the changes the start-up resource sync would make (`+` create, `~` update,
    /// `-` delete) and exit, without writing anything to the authorization server.
    #[arg(long)]
    check: bool,
    /// How logs are written to standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `--check`: the dry run of the resource sync, printed as a diff on standard output; with
/// `[[tenants]]`, one `tenant NAME:` section per tenant, in file order.
async fn check(config: &Config) -> ExitCode {
    if !config.tenants.is_empty() {
        let mut out = std::io::stdout().lock();
        for (name, _, builder) in uma_proxy::tenant_builders(config) {
            let _ = writeln!(out, "tenant {name}:");
            let context = format!("tenant `{name}`: ");
            if let Err(code) = print_plan(&mut out, builder.check_resources().await, &context) {
                return code;
            }
        }
        return ExitCode::SUCCESS;
    }
    let plan = match uma_proxy::layer_builder(config).await {
        Ok(builder) => builder.check_resources().await,
        Err(e) => Err(e),
    };
    let mut out = std::io::stdout().lock();
    match print_plan(&mut out, plan, "") {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Prints one sync plan (or `resources are in sync`); an error goes to standard error after
/// `context`, and is the exit code.
fn print_plan(
    out: &mut impl Write,
    plan: Result<tower_uma::registration::ResourceSync, tower_uma::Error>,
    context: &str,
) -> Result<(), ExitCode> {
    match plan {
        Ok(plan) => {
            if plan.is_empty() {
                let _ = writeln!(out, "resources are in sync");
            }
            let _ = write!(out, "{plan}");
            let _ = out.flush();
            Ok(())
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {context}{}", error_chain(&e));
            Err(ExitCode::from(if e.is_config() { 2 } else { 1 }))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let overrides = Overrides {
        listen: cli.listen,
        upstream: cli.upstream,
        keycloak_config: cli
            .keycloak_config
            .as_ref()
            .map(|p| p.display().to_string()),
    };
    let read = match (&cli.config, &cli.keycloak_config) {
        (Some(file), _) => Config::from_path(file, &overrides),
        (None, Some(keycloak)) => Config::from_keycloak(keycloak, &overrides),
        // clap requires one of them.
        (None, None) => {
            eprintln!("error: give --config FILE or --keycloak-config FILE");
            return ExitCode::from(2);
        }
    };
    let config = match read {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.check {
        return runtime.block_on(check(&config));
    }
    // Only /metrics reads the recorder: without an admin listener the metric calls stay no-ops
    // and keep nothing. `run` drains the recorder's histogram buffers on a timer.
    let decision = matches!(config.mode, uma_proxy::config::Mode::Decision(_));
    let metrics = config.admin_listen.and_then(|_| {
        let mut builder = PrometheusBuilder::new();
        if decision {
            // Every series says which mode answered (proxy mode keeps its series as they were).
            builder = builder.add_global_label("mode", "decision");
        }
        match builder.install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics is off");
                None
            }
        }
    });
    let announce = |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    };
    match runtime.block_on(run(config, metrics, announce, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(if e.is_config() { 2 } else { 1 })
        }
    }
}
