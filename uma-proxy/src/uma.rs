//! From a [`Config`] to an [`UmaLayer`]: discovery or endpoints named one by one, the dialect,
//! the cache and the resources.
//!
//! # Example
//!
//! ```no_run
//! use uma_proxy::{Config, Overrides, build_layer};
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_path("proxy.toml".as_ref(), &Overrides::default())?;
//! let layer = build_layer(&config).await?; // discovery and resource registration, once
//! # let _ = layer; Ok(()) }
//! ```

use tower_uma::tenant::{TenantLayer, TenantMatch};
use tower_uma::{UmaLayer, UmaLayerBuilder, protection::PatGrant, start::StartRetry};

use crate::config::{AsConfig, Config, PatGrantConfig};

/// Builds the layer once: discovery (when `issuer` is set; explicit endpoints override the
/// discovered ones), the settings of the file, then resource registration.
///
/// # Errors
///
/// The layer's errors: configuration, transport, discovery, PAT or registration.
pub async fn build_layer(config: &Config) -> Result<UmaLayer, tower_uma::Error> {
    layer_builder(config).await?.build().await
}

/// The layer's builder for `config`: every setting of the file. Discovery (when `issuer` is
/// set and the dialect has a discovery document) runs when the builder is used:
/// [`build_layer`] builds it; `uma-proxy --check` asks it for the sync's dry run.
///
/// # Errors
///
/// None today; the `Result` keeps room for settings checked here.
pub async fn layer_builder(config: &Config) -> Result<UmaLayerBuilder, tower_uma::Error> {
    waiting_builder(config, None).await
}

/// [`layer_builder`] waiting for the AS per `retry`, in discovery and later in the build.
pub(crate) async fn waiting_builder(
    config: &Config,
    retry: Option<StartRetry>,
) -> Result<UmaLayerBuilder, tower_uma::Error> {
    let a = &config.authorization_server;
    let mut builder = as_builder(a, retry);
    if let Some(realm) = &config.realm {
        builder = builder.realm(realm.clone());
    }
    builder = file_settings(builder, config);
    if let Some(kc) = &config.keycloak {
        // The dialect, realm, timeouts and lazy paths of Keycloak's file; a `realm` of the
        // TOML file wins.
        builder = kc.apply(builder);
        if let Some(realm) = &config.realm {
            builder = builder.realm(realm.clone());
        }
    }
    builder = builder.resources(config.resource_map());
    if let Some(metadata) = &config.resource_metadata {
        builder = builder.resource_metadata(metadata.clone());
    }
    builder = a.calls.apply(builder);
    Ok(apply_dialect(builder, a))
}

/// The builder of the AS in `a`: discovery when `issuer` is set (explicit endpoints override
/// the discovered ones), else the endpoints one by one; waiting for the AS per `retry`.
fn as_builder(a: &AsConfig, retry: Option<StartRetry>) -> UmaLayerBuilder {
    let secret = a.client_secret.secret().to_owned();
    let mut builder = match &a.issuer {
        Some(issuer) => {
            let mut discover = UmaLayer::discover(issuer.clone(), a.client_id.clone(), secret)
                .dialect(a.dialect)
                .request_timeout(a.timeout);
            if a.allow_http {
                discover = discover.insecure_allow_http();
            }
            if let Some(retry) = retry {
                discover = discover.start_retry(retry);
            }
            discover
        }
        None => {
            let builder = UmaLayer::builder(a.builder_issuer(), a.client_id.clone(), secret);
            match retry {
                Some(retry) => builder.start_retry(retry),
                None => builder,
            }
        }
    };
    if let Some(u) = &a.token_endpoint {
        builder = builder.token_endpoint(u.clone());
    }
    if let Some(u) = &a.introspection_endpoint {
        builder = builder.introspection_endpoint(u.clone());
    }
    if let Some(u) = &a.permission_endpoint {
        builder = builder.permission_endpoint(u.clone());
    }
    if let Some(u) = &a.resource_registration_endpoint {
        builder = builder.resource_registration_endpoint(u.clone());
    }
    if let Some(u) = &a.jwks_uri {
        builder = builder.jwks_uri(u.clone());
    }
    builder = builder.rpt_validation(a.rpt_validation);
    if let Some(u) = &a.as_uri {
        builder = builder.as_uri(u.clone());
    }
    if a.allow_http {
        builder = builder.insecure_allow_http();
    }
    builder.request_timeout(a.timeout)
}

/// The file-wide settings every layer (the one, or each tenant's) takes: enforcement,
/// unmapped, method override, and a cache of its own with the `[cache]` settings.
fn file_settings(builder: UmaLayerBuilder, config: &Config) -> UmaLayerBuilder {
    builder
        .enforcement(config.enforcement)
        .unmapped(config.unmapped)
        .method_override(config.method_override)
        .cache(config.cache.build())
}

/// The name, match and layer builder of each `[[tenants]]` table, in file order (empty for a
/// single-tenant file): `uma-proxy --check` asks each builder for its sync's dry run.
pub fn tenant_builders(config: &Config) -> Vec<(String, TenantMatch, UmaLayerBuilder)> {
    waiting_tenant_builders(config, None)
}

/// [`tenant_builders`], each waiting for its AS per `retry`.
fn waiting_tenant_builders(
    config: &Config,
    retry: Option<&StartRetry>,
) -> Vec<(String, TenantMatch, UmaLayerBuilder)> {
    config
        .tenants
        .iter()
        .map(|t| {
            let a = &t.authorization_server;
            let mut builder = as_builder(a, retry.cloned());
            if let Some(realm) = &t.realm {
                builder = builder.realm(realm.clone());
            }
            builder = file_settings(builder, config).resources(t.resource_map());
            builder = a.calls.apply(builder);
            (t.name.clone(), t.matches.clone(), apply_dialect(builder, a))
        })
        .collect()
}

/// Builds the layer of a file with `[[tenants]]`: every tenant's discovery and resource
/// registration, concurrently. A tenant whose AS cannot be reached is pending (its requests
/// get `403` + `Warning`) and built in the background; see
/// [`TenantLayerBuilder::build`](tower_uma::tenant::TenantLayerBuilder::build).
///
/// # Errors
///
/// The first tenant's build error that is not transient (its message names the tenant).
pub async fn build_tenants(config: &Config) -> Result<TenantLayer, tower_uma::Error> {
    tenant_layer(config, None).await
}

/// [`build_tenants`], each tenant waiting for its AS per `retry`.
pub(crate) async fn tenant_layer(
    config: &Config,
    retry: Option<StartRetry>,
) -> Result<TenantLayer, tower_uma::Error> {
    waiting_tenant_builders(config, retry.as_ref())
        .into_iter()
        .fold(TenantLayer::builder(), |b, (name, matches, builder)| {
            b.tenant(name, matches, builder)
        })
        .build()
        .await
}

/// The one place where `dialect` and `pat_grant` become builder settings.
///
/// `dialect` selects the layer's [`tower_uma::Dialect`], which sets its defaults (Keycloak:
/// introspection with client credentials and `token_type_hint = requesting_party_token`, no
/// `scope` on the PAT request, scope-less permissions granting every scope of their resource;
/// WSO2: no discovery, endpoints derived from the issuer's host). `pat_grant = "password"`
/// (any dialect; WSO2 requires it) obtains the PAT for `resource_owner`.
pub fn apply_dialect(builder: UmaLayerBuilder, a: &AsConfig) -> UmaLayerBuilder {
    let mut builder = builder.dialect(a.dialect);
    if let PatGrantConfig::Password {
        resource_owner,
        password,
    } = &a.pat_grant
    {
        builder = builder.pat_grant(PatGrant::Password {
            username: resource_owner.clone(),
            password: password.clone(),
        });
    }
    builder
}
