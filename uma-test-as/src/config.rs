//! The TOML configuration of the standalone server (also usable in-process through
//! [`AuthServerBuilder::from_config`](crate::AuthServerBuilder::from_config)).
//!
//! Unknown keys, wrong types, bad durations and inconsistent policies are errors that name
//! the line (and the key, where there is one); see [`ConfigError`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::Deserializer;
use toml::Spanned;
use toml_diag::Diagnostic;

use crate::dialect::{DEFAULT_REALM, Dialect, valid_realm};
use crate::model::RptFormat;
use crate::policy::Policy;

/// The sample configuration shipped as `examples/as.toml`.
const EXAMPLE: &str = include_str!("../examples/as.toml");

/// Default lifetime of tickets, RPTs and PATs.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A parsed and validated configuration.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use uma_test_as::{Config, RptFormat};
///
/// let config = Config::from_toml_str(r#"
///     dialect = "keycloak"
///     realm = "acme"
///     rpt_format = "jwt"
///     ticket_ttl = "1s"
///     [[clients]]
///     id = "rs"
///     secret = "rs-secret"
///     [[users]]
///     name = "bob"
///     password = "bob-pw"
///     [[policies]]
///     resource = "album"
///     scopes = ["view"]
///     users = ["bob"]
/// "#)?;
/// assert_eq!(config.dialect(), uma_test_as::Dialect::Keycloak);
/// assert_eq!(config.realm(), "acme");
/// assert_eq!(config.rpt_format(), RptFormat::Jwt);
/// assert_eq!(config.ticket_ttl(), Duration::from_secs(1));
/// assert_eq!(config.rpt_ttl(), Duration::from_secs(300));
///
/// let error = Config::from_toml_str("rpt_format = \"opaque\"\ncolour = \"blue\"\n").unwrap_err();
/// assert_eq!(error.line(), Some(2));
/// assert!(error.to_string().contains("colour"));
/// # Ok::<(), uma_test_as::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) dialect: Dialect,
    pub(crate) realm: String,
    pub(crate) rpt_format: RptFormat,
    pub(crate) ticket_ttl: Duration,
    pub(crate) rpt_ttl: Duration,
    pub(crate) pat_ttl: Duration,
    pub(crate) clients: Vec<(String, String)>,
    pub(crate) users: Vec<(String, String)>,
    pub(crate) policies: Vec<Policy>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets and passwords are left out.
        f.debug_struct("Config")
            .field("dialect", &self.dialect)
            .field("realm", &self.realm)
            .field("rpt_format", &self.rpt_format)
            .field("ticket_ttl", &self.ticket_ttl)
            .field("rpt_ttl", &self.rpt_ttl)
            .field("pat_ttl", &self.pat_ttl)
            .field("clients", &self.client_ids().collect::<Vec<_>>())
            .field("users", &self.user_names().collect::<Vec<_>>())
            .field("policies", &self.policies)
            .finish()
    }
}

impl Default for Config {
    /// The standard dialect (realm `uma` if switched to Keycloak); no clients, users or
    /// policies; opaque RPTs; every lifetime 300 s.
    fn default() -> Self {
        Self {
            dialect: Dialect::Standard,
            realm: DEFAULT_REALM.to_owned(),
            rpt_format: RptFormat::Opaque,
            ticket_ttl: DEFAULT_TTL,
            rpt_ttl: DEFAULT_TTL,
            pat_ttl: DEFAULT_TTL,
            clients: Vec::new(),
            users: Vec::new(),
            policies: Vec::new(),
        }
    }
}

impl Config {
    /// Parses and validates a TOML document.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the line for invalid TOML, unknown keys, wrong types, bad
    /// durations, an unknown `dialect`, a `realm` that is not a plain path segment or is given
    /// without `dialect = "keycloak"`, repeated client ids or user names, and policies that
    /// name no resource, both `resource` and `resource_id`, no rule or several rules, or
    /// unknown users.
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml_diag::from_str(s).map_err(ConfigError::new)?;
        raw.validate(s)
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] carrying the path if the file cannot be read or does not parse (see
    /// [`from_toml_str`](Self::from_toml_str)).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.to_owned()),
            diagnostic: Diagnostic::new("cannot read the configuration file"),
            source: Some(e),
        })?;
        Self::from_toml_str(&text).map_err(|mut e| {
            e.path = Some(path.to_owned());
            e
        })
    }

    /// The sample configuration shipped as `uma-test-as/examples/as.toml` (clients
    /// `photo-api` and `photo-app`, users `alice` and `bob`, bob may `view` the `album`); the
    /// standalone server uses it when started without `--config`.
    pub fn example() -> Self {
        Self::from_toml_str(EXAMPLE).expect("examples/as.toml is valid: the unit tests parse it")
    }

    /// The dialect the server speaks.
    pub const fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The Keycloak realm (`uma` unless configured); only used by [`Dialect::Keycloak`].
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// How RPTs are encoded.
    pub const fn rpt_format(&self) -> RptFormat {
        self.rpt_format
    }

    /// Lifetime of permission tickets.
    pub const fn ticket_ttl(&self) -> Duration {
        self.ticket_ttl
    }

    /// Lifetime of RPTs.
    pub const fn rpt_ttl(&self) -> Duration {
        self.rpt_ttl
    }

    /// Lifetime of PATs and other access tokens.
    pub const fn pat_ttl(&self) -> Duration {
        self.pat_ttl
    }

    /// The configured client ids.
    pub fn client_ids(&self) -> impl Iterator<Item = &str> {
        self.clients.iter().map(|(id, _)| id.as_str())
    }

    /// The configured user names.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(name, _)| name.as_str())
    }

    /// The configured policies.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }
}

/// Why a configuration was rejected.
///
/// `Display` reads like `as.toml: line 5, column 1: unknown field `colour`, expected one
/// of …`; [`line`](Self::line) and [`column`](Self::column) are 1-based.
#[derive(Debug)]
pub struct ConfigError {
    path: Option<PathBuf>,
    diagnostic: Diagnostic,
    source: Option<io::Error>,
}

impl ConfigError {
    const fn new(diagnostic: Diagnostic) -> Self {
        Self {
            path: None,
            diagnostic,
            source: None,
        }
    }

    /// The 1-based line of the offending key or value, when known.
    pub const fn line(&self) -> Option<usize> {
        self.diagnostic.line()
    }

    /// The 1-based column of the offending key or value, when known.
    pub const fn column(&self) -> Option<usize> {
        self.diagnostic.column()
    }

    /// The message without path and position.
    pub fn message(&self) -> &str {
        self.diagnostic.message()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        fmt::Display::fmt(&self.diagnostic, f)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    dialect: Dialect,
    #[serde(default)]
    realm: Option<Spanned<String>>,
    #[serde(default)]
    rpt_format: RptFormat,
    #[serde(default, deserialize_with = "duration")]
    ticket_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    rpt_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pat_ttl: Option<Duration>,
    #[serde(default)]
    clients: Vec<Spanned<RawClient>>,
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    policies: Vec<Spanned<RawPolicy>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    resource: Option<String>,
    resource_id: Option<String>,
    scopes: Option<Vec<String>>,
    users: Option<Vec<String>>,
    anyone: Option<bool>,
    approval: Option<String>,
}

impl RawConfig {
    fn validate(self, text: &str) -> Result<Config, ConfigError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            ConfigError::new(Diagnostic::at(text, span.start, message))
        };
        let realm = match self.realm {
            None => DEFAULT_REALM.to_owned(),
            Some(realm) => {
                let span = realm.span();
                let realm = realm.into_inner();
                if self.dialect != Dialect::Keycloak {
                    return Err(at(
                        span,
                        "`realm` only applies to dialect = \"keycloak\"".to_owned(),
                    ));
                }
                if !valid_realm(&realm) {
                    return Err(at(
                        span,
                        format!(
                            "invalid realm `{realm}`: use 1 to 64 of A-Z, a-z, 0-9, `-`, `_` and `.`"
                        ),
                    ));
                }
                realm
            }
        };
        let mut clients: Vec<(String, String)> = Vec::new();
        for client in self.clients {
            let span = client.span();
            let RawClient { id, secret } = client.into_inner();
            if clients.iter().any(|(known, _)| *known == id) {
                return Err(at(span, format!("client `{id}` is defined twice")));
            }
            clients.push((id, secret));
        }
        let mut users: Vec<(String, String)> = Vec::new();
        for user in self.users {
            let span = user.span();
            let RawUser { name, password } = user.into_inner();
            if users.iter().any(|(known, _)| *known == name) {
                return Err(at(span, format!("user `{name}` is defined twice")));
            }
            users.push((name, password));
        }
        let mut policies = Vec::new();
        for policy in self.policies {
            let span = policy.span();
            let policy = policy
                .into_inner()
                .into_policy(&users)
                .map_err(|message| at(span, message))?;
            policies.push(policy);
        }
        Ok(Config {
            dialect: self.dialect,
            realm,
            rpt_format: self.rpt_format,
            ticket_ttl: self.ticket_ttl.unwrap_or(DEFAULT_TTL),
            rpt_ttl: self.rpt_ttl.unwrap_or(DEFAULT_TTL),
            pat_ttl: self.pat_ttl.unwrap_or(DEFAULT_TTL),
            clients,
            users,
            policies,
        })
    }
}

impl RawPolicy {
    fn into_policy(self, users: &[(String, String)]) -> Result<Policy, String> {
        let mut policy = match (self.resource, self.resource_id) {
            (Some(name), None) => Policy::resource(name),
            (None, Some(id)) => Policy::resource_id(id),
            (Some(_), Some(_)) => {
                return Err("a policy names either `resource` or `resource_id`, not both".into());
            }
            (None, None) => return Err("a policy needs `resource` or `resource_id`".into()),
        };
        if let Some(scopes) = self.scopes {
            if scopes.is_empty() {
                return Err(
                    "`scopes` must not be empty (leave it out to cover every scope)".into(),
                );
            }
            policy = policy.scopes(scopes);
        }
        let anyone = self.anyone.unwrap_or(false);
        let rules = usize::from(self.users.is_some())
            + usize::from(anyone)
            + usize::from(self.approval.is_some());
        if rules != 1 {
            return Err(
                "a policy needs exactly one of `users = [...]`, `anyone = true` or `approval = \"owner\"`"
                    .into(),
            );
        }
        if let Some(names) = self.users {
            if names.is_empty() {
                return Err("`users` must not be empty".into());
            }
            if let Some(unknown) = names.iter().find(|n| !users.iter().any(|(u, _)| u == *n)) {
                return Err(format!("policy names unknown user `{unknown}`"));
            }
            policy = policy.users(names);
        } else if anyone {
            policy = policy.anyone();
        } else if let Some(approval) = self.approval {
            if approval != "owner" {
                return Err(format!(
                    "unknown approval `{approval}`: the only value is \"owner\""
                ));
            }
            policy = policy.owner_approval();
        }
        Ok(policy)
    }
}

/// The durations that messages about a bad duration show.
const DURATION_EXAMPLES: &[&str] = &["300s", "5m", "500ms", "1h"];

/// `"300s"`, `"5m"`, `"500ms"`, `"1h"` or an integer number of seconds.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    toml_diag::deserialize_duration(deserializer, DURATION_EXAMPLES).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let config = Config::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(
            config.client_ids().collect::<Vec<_>>(),
            ["photo-api", "photo-app"]
        );
        assert_eq!(config.user_names().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(
            config.policies(),
            [Policy::resource("album").scopes(["view"]).users(["bob"])]
        );
        assert_eq!(config.rpt_format(), RptFormat::Opaque);
        assert_eq!(config.pat_ttl(), Duration::from_secs(300));
        let debug = format!("{config:?}");
        assert!(!debug.contains("photo-api-secret") && !debug.contains("bob-pw"));
    }

    #[test]
    fn durations() {
        let config = Config::from_toml_str("ticket_ttl = 2\nrpt_ttl = \"250ms\"").unwrap();
        assert_eq!(config.ticket_ttl(), Duration::from_secs(2));
        assert_eq!(config.rpt_ttl(), Duration::from_millis(250));
    }

    fn error(text: &str) -> ConfigError {
        Config::from_toml_str(text).unwrap_err()
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let e =
            error("rpt_format = \"jwt\"\n\n[[clients]]\nid = \"a\"\nsecret = \"b\"\ncolour = 1\n");
        assert_eq!(e.line(), Some(6), "{e}");
        assert!(e.to_string().contains("line 6"), "{e}");
        assert!(e.to_string().contains("colour"), "{e}");
        let e = error("listen = \"x\"");
        assert_eq!(e.line(), Some(1));
        assert!(e.to_string().contains("listen"), "{e}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = error("pat_ttl = \"soon\"\n");
        assert_eq!(e.line(), Some(1), "{e}");
        assert!(e.message().contains("invalid duration"), "{e}");
        let e = error("rpt_format = \"paper\"");
        assert_eq!(e.line(), Some(1), "{e}");
        let e = error("ticket_ttl = \"1s\"\nrpt_ttl = ");
        assert_eq!(e.line(), Some(2), "{e}");
    }

    #[test]
    fn policy_errors_name_the_policy_line() {
        let users = "[[users]]\nname = \"bob\"\npassword = \"p\"\n";
        let cases = [
            (
                "[[policies]]\nscopes = [\"v\"]\nusers = [\"bob\"]\n",
                "resource",
            ),
            (
                "[[policies]]\nresource = \"a\"\nresource_id = \"b\"\nanyone = true\n",
                "not both",
            ),
            ("[[policies]]\nresource = \"a\"\n", "exactly one"),
            (
                "[[policies]]\nresource = \"a\"\nanyone = true\nusers = [\"bob\"]\n",
                "exactly one",
            ),
            (
                "[[policies]]\nresource = \"a\"\nusers = [\"carol\"]\n",
                "carol",
            ),
            (
                "[[policies]]\nresource = \"a\"\napproval = \"admin\"\n",
                "owner",
            ),
            (
                "[[policies]]\nresource = \"a\"\nscopes = []\nanyone = true\n",
                "scopes",
            ),
        ];
        for (policy, needle) in cases {
            let e = error(&format!("{users}{policy}"));
            assert!(matches!(e.line(), Some(4..=5)), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = error(
            "[[users]]\nname = \"a\"\npassword = \"p\"\n[[users]]\nname = \"a\"\npassword = \"q\"\n",
        );
        assert!(e.to_string().contains("twice"), "{e}");
        let ok = Config::from_toml_str(&format!(
            "{users}[[policies]]\nresource_id = \"r\"\napproval = \"owner\"\n"
        ))
        .unwrap();
        assert_eq!(ok.policies(), [Policy::resource_id("r").owner_approval()]);
    }

    #[test]
    fn dialect_and_realm() {
        let config = Config::from_toml_str("dialect = \"wso2\"").unwrap();
        assert_eq!(config.dialect(), Dialect::Wso2);
        assert_eq!(config.realm(), "uma");
        let config = Config::from_toml_str("dialect = \"Keycloak\"\nrealm = \"acme\"").unwrap();
        assert_eq!(config.dialect(), Dialect::Keycloak);
        assert_eq!(config.realm(), "acme");
        assert_eq!(Config::example().dialect(), Dialect::Standard);
        let e = error("rpt_format = \"jwt\"\ndialect = \"gluu\"\n");
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.to_string().contains("gluu"), "{e}");
        let e = error("dialect = \"keycloak\"\nrealm = \"a/b\"\n");
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.to_string().contains("invalid realm"), "{e}");
        let e = error("realm = \"acme\"\n");
        assert_eq!(e.line(), Some(1), "{e}");
        assert!(e.to_string().contains("keycloak"), "{e}");
    }
}
