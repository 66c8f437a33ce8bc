//! The file as written: serde's view of `proxy.toml`, checked for unknown keys and types.
//! Values whose problems only show later (URLs, environment variables, routes) are kept as
//! `Spanned` so that the resolution can name their line.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;
use tower_uma::error::ParseSettingError;
use tower_uma::method_override::MethodOverride;
use tower_uma::resources::Unmapped;
use tower_uma::{Dialect, EnforcementMode};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) mode: ModeRaw,
    pub(super) upstream: Option<Spanned<String>>,
    pub(super) trusted_forwarders: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) path_prefix: Option<Spanned<String>>,
    pub(super) realm: Option<String>,
    #[serde(default, deserialize_with = "setting")]
    pub(super) enforcement: EnforcementMode,
    #[serde(default, deserialize_with = "setting")]
    pub(super) unmapped: Unmapped,
    pub(super) admin_listen: Option<Spanned<String>>,
    pub(super) admin_token_env: Option<Spanned<String>>,
    pub(super) forward_authorization: Option<Spanned<bool>>,
    pub(super) upstream_timeout: Option<Spanned<Dur>>,
    pub(super) shutdown_timeout: Option<Dur>,
    #[serde(default, deserialize_with = "setting")]
    pub(super) method_override: MethodOverride,
    pub(super) trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) authorization_server: Option<Spanned<RawAs>>,
    /// A Keycloak `keycloak.json` in place of `[authorization_server]` (see `keycloak.rs`).
    pub(super) keycloak_config: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) cache: RawCache,
    pub(super) resource_metadata: Option<Spanned<RawMetadata>>,
    #[serde(default)]
    pub(super) resources: Vec<Spanned<RawResource>>,
    /// `[[tenants]]`, in place of `[authorization_server]` and `[[resources]]` (see
    /// `tenants.rs`).
    #[serde(default)]
    pub(super) tenants: Vec<Spanned<RawTenant>>,
}

/// One `[[tenants]]` table: its match, and the keys of the single-tenant file's
/// `[authorization_server]`, `[[resources]]` and `realm`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: Spanned<String>,
    #[serde(rename = "match")]
    pub(super) matches: Spanned<RawMatch>,
    pub(super) realm: Option<String>,
    pub(super) authorization_server: Spanned<RawAs>,
    #[serde(default)]
    pub(super) resources: Vec<Spanned<RawResource>>,
}

/// A tenant's `match`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) host: Option<Spanned<String>>,
    pub(super) path_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) strip_prefix: bool,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ModeRaw {
    #[default]
    Proxy,
    Decision,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum PatGrantKind {
    ClientCredentials,
    Password,
}

/// `rpt_validation` of `[authorization_server]`.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RptValidationKind {
    Introspect,
    Local,
    LocalThenIntrospect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAs {
    pub(super) issuer: Option<Spanned<String>>,
    pub(super) as_uri: Option<Spanned<String>>,
    pub(super) token_endpoint: Option<Spanned<String>>,
    pub(super) introspection_endpoint: Option<Spanned<String>>,
    pub(super) permission_endpoint: Option<Spanned<String>>,
    pub(super) resource_registration_endpoint: Option<Spanned<String>>,
    pub(super) jwks_uri: Option<Spanned<String>>,
    pub(super) rpt_validation: Option<RptValidationKind>,
    #[serde(default, deserialize_with = "dialect")]
    pub(super) dialect: Dialect,
    pub(super) client_id: Spanned<String>,
    pub(super) client_secret: Option<Spanned<String>>,
    pub(super) client_secret_env: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) allow_http: bool,
    pub(super) timeout: Option<Spanned<Dur>>,
    pub(super) pat_grant: Option<Spanned<PatGrantKind>>,
    pub(super) resource_owner: Option<Spanned<String>>,
    pub(super) resource_owner_password: Option<Spanned<String>>,
    pub(super) resource_owner_password_env: Option<Spanned<String>>,
    pub(super) max_calls_in_flight: Option<Spanned<u64>>,
    pub(super) breaker_failure_threshold: Option<u32>,
    pub(super) breaker_open_interval: Option<Spanned<Dur>>,
    pub(super) breaker_max_open_interval: Option<Spanned<Dur>>,
    pub(super) resource_resync_interval: Option<Spanned<Dur>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetadata {
    pub(super) resource: Spanned<String>,
    pub(super) resource_name: Option<String>,
    pub(super) resource_documentation: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) in_challenge: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) enabled: Option<bool>,
    pub(super) max_ttl: Option<Dur>,
    pub(super) max_entries: Option<u64>,
    pub(super) negative_ttl: Option<Dur>,
    pub(super) negative_max_entries: Option<u64>,
    pub(super) stale_if_error: Option<Dur>,
    pub(super) skew: Option<Dur>,
    pub(super) cache_without_exp: Option<bool>,
    pub(super) shared: Option<Spanned<RawShared>>,
}

/// `[cache.shared]`: read whatever the build's features, so that a build without `redis`
/// can refuse it by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShared {
    pub(super) url: Spanned<String>,
    pub(super) secret_env: Spanned<String>,
    pub(super) timeout: Option<Spanned<Dur>>,
    pub(super) channel: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) name: Option<String>,
    #[serde(rename = "type")]
    pub(super) r#type: Option<String>,
    pub(super) description: Option<String>,
    pub(super) icon_uri: Option<String>,
    pub(super) owner: Option<String>,
    pub(super) path: Spanned<String>,
    pub(super) scopes: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    #[serde(default)]
    pub(super) public: bool,
    pub(super) public_methods: Option<Spanned<Vec<String>>>,
}

/// A duration written as `"500ms"`, `"3s"`, `"5m"`, `"1h"` or a whole number of seconds.
#[derive(Clone, Copy)]
pub(super) struct Dur(pub(super) Duration);

/// The durations that messages about a bad duration show.
const DURATION_EXAMPLES: &[&str] = &["3s", "500ms", "5m", "1h"];

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        toml_diag::deserialize_duration(deserializer, DURATION_EXAMPLES).map(Dur)
    }
}

/// `enforcement`, `unmapped`, `method_override`: the library's own values, by the names their
/// `FromStr` accepts. Read as toml reads a unit enum, so that the messages are serde's
/// (``unknown variant `strict`, expected one of `enforcing`, …``, or `wanted string or table`).
fn setting<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = ParseSettingError>,
{
    struct Named<T>(PhantomData<T>);

    impl<'de, T: FromStr<Err = ParseSettingError>> de::Visitor<'de> for Named<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the name of a value")
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<T, A::Error> {
            let (name, value): (String, _) = data.variant()?;
            de::VariantAccess::unit_variant(value)?;
            name.parse()
                .map_err(|e: ParseSettingError| de::Error::unknown_variant(&name, e.expected()))
        }
    }

    deserializer.deserialize_enum("setting", &[], Named(PhantomData))
}

/// `dialect`: whatever [`Dialect`]'s `FromStr` accepts.
fn dialect<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Dialect, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map_err(de::Error::custom)
}
