//! `uma-proxy`: a reverse proxy that makes any HTTP API a UMA 2.0 resource server, built on
//! tower-uma's [`UmaLayer`](tower_uma::UmaLayer) and hyper 1.
//!
//! The binary reads a TOML file ([`Config`]), discovers the authorization server, registers
//! the declared resources, then serves (see [`run`]):
//!
//! ```text
//! client ──► strip X-Uma-* ──► UmaLayer ──► forwarding service ──► upstream
//!            (serve)           (401 + ticket, 403, 400 …)   (X-Uma-*, X-Forwarded-*)
//! ```
//!
//! This library holds everything but the command line, so that tests and benches can build
//! the same pieces in-process:
//!
//! - [`Config`]: the file, checked, with errors naming the line;
//! - [`build_layer`] and [`apply_dialect`]: the layer from the configuration ([`build_tenants`]
//!   and [`tenant_builders`] for a file with `[[tenants]]`);
//! - [`forwarding_service`]: the forwarding service alone, i.e. a bare forwarding proxy when
//!   served without the layer (what the benches compare with);
//! - [`serve`]: the accept loop with `X-Uma-*` stripping and graceful shutdown;
//! - [`HostCheck`] (`allowed_hosts`) and [`TrustedProxies`] (`trusted_proxies`): which hosts
//!   the proxy answers for, and whose forwarding headers it keeps;
//! - [`run`]: all of it, plus the admin listener (`/healthz`, `/metrics`).
//!
//! # Example
//!
//! The UMA proxy and a bare proxy, built the same way:
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::Layer;
//! use uma_proxy::{Config, ForwardOptions, Overrides, build_layer, forwarding_service, serve};
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_path("proxy.toml".as_ref(), &Overrides::default())?;
//! let options = ForwardOptions::default().timeout(config.upstream_timeout);
//! let upstream = config.upstream.clone().ok_or("proxy mode needs an upstream")?;
//!
//! let layer = build_layer(&config).await?;
//! let protected = layer.layer(forwarding_service(upstream.clone(), options.clone()));
//! let bare = forwarding_service(upstream, options);
//!
//! let a = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let b = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::join!(
//!     serve(a, protected, std::future::pending(), Duration::from_secs(10)),
//!     serve(b, bare, std::future::pending(), Duration::from_secs(10)),
//! );
//! # Ok(()) }
//! ```

mod admin;
pub mod body;
pub mod config;
pub mod decision;
pub mod forward;
mod memo;
pub mod metadata;
pub mod metrics;
mod pool;
pub mod server;
mod timer;
pub mod trust;
pub mod uma;

pub use config::{Config, ConfigError, DecisionOptions, Dialect, Mode, Overrides, TenantConfig};
pub use decision::{DecisionAnswer, DecisionFront};
pub use forward::{
    BoxError, ClientAddr, Forward, ForwardOptions, ProxyBody, Upstream, forwarding_service,
};
pub use metadata::MetadataFront;
pub use server::{
    Drain, LayerSlot, RunError, TenantSlot, admin_service, admin_service_with_layer,
    admin_service_with_revoke, admin_service_with_tenants, build_layer_with_retry,
    build_tenants_with_retry, run, serve,
};
pub use trust::{AllowedHosts, HostCheck, TrustedProxies};
pub use uma::{apply_dialect, build_layer, build_tenants, layer_builder, tenant_builders};
