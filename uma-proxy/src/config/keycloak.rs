//! `keycloak_config` and `--keycloak-config`: the authorization server, the client and the
//! paths from Keycloak's own `keycloak.json` (or `policy-enforcer.json`), read by
//! [`tower_uma::keycloak::KeycloakConfig`].
//!
//! The file replaces `[authorization_server]` (it names the realm, the client and its
//! secret); `[[resources]]` may stand beside it, their routes added to the paths of the file.
//! `--keycloak-config` wins over the key. A relative `keycloak_config` is read from the
//! directory of `proxy.toml`.
//!
//! Plain `http://` for `auth-server-url` is accepted only when its host is a loopback address
//! (`127.0.0.0/8`, `::1`, `localhost`): tokens and the PAT then never leave the machine.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tower_uma::Dialect;
use tower_uma::keycloak::KeycloakConfig;
use tower_uma::token::ClientSecret;

use super::raw::RawConfig;
use super::resolve::Resolver;
use super::{AsCallsConfig, AsConfig, ConfigError, DEFAULT_AS_TIMEOUT, Overrides, PatGrantConfig};

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    /// The Keycloak configuration named by `--keycloak-config` or `keycloak_config`, read.
    pub(super) fn resolve_keycloak(
        &self,
        raw: &RawConfig,
        overrides: &Overrides,
    ) -> Result<Option<KeycloakConfig>, ConfigError> {
        let read = |path: &Path| {
            KeycloakConfig::from_path(path)
                .map_err(|e| self.nowhere(format!("keycloak config: {e}")))
        };
        if let Some(cli) = &overrides.keycloak_config {
            return read(Path::new(cli)).map(Some);
        }
        let Some(key) = &raw.keycloak_config else {
            return Ok(None);
        };
        let mut path = PathBuf::from(key.get_ref());
        if path.is_relative()
            && let Some(dir) = Path::new(self.origin).parent()
        {
            path = dir.join(path);
        }
        KeycloakConfig::from_path(&path)
            .map(Some)
            .map_err(|e| self.at(key.span(), format!("`keycloak_config`: {e}")))
    }
}

/// The `[authorization_server]` a Keycloak configuration stands for: discovery at its realm,
/// the Keycloak dialect, client credentials, the default timeout and breakers.
pub(super) fn as_config(kc: &KeycloakConfig) -> AsConfig {
    let issuer = kc.issuer();
    AsConfig {
        allow_http: loopback_http(&issuer),
        issuer: Some(issuer),
        as_uri: None,
        token_endpoint: None,
        introspection_endpoint: None,
        permission_endpoint: None,
        resource_registration_endpoint: None,
        jwks_uri: None,
        rpt_validation: tower_uma::jwt::RptValidation::Introspect,
        dialect: Dialect::Keycloak,
        client_id: kc.client_id().to_owned(),
        client_secret: ClientSecret::new(kc.client_secret().secret()),
        timeout: DEFAULT_AS_TIMEOUT,
        pat_grant: PatGrantConfig::ClientCredentials,
        calls: AsCallsConfig::default(),
    }
}

/// Whether `url` is plain http to a loopback host.
fn loopback_http(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, Method};
    use tower_uma::resources::Resolution;

    use super::*;
    use crate::Config;

    /// Writes a `keycloak.json` for `realm` with one path, `/albums/{id}`, into a fresh
    /// directory; returns the directory.
    fn keycloak_dir(tag: &str, realm: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("uma-proxy-kc-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let json = serde_json::json!({
            "realm": realm, "auth-server-url": "http://127.0.0.1:8280", "resource": "photo-api",
            "credentials": {"secret": "s3cret"},
            "policy-enforcer": {"paths": [{"name": "album", "path": "/albums/{id}", "scopes": ["view"]}]}
        });
        std::fs::write(dir.join("keycloak.json"), json.to_string()).expect("written");
        dir
    }

    fn read(dir: &Path, text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let origin = dir.join("proxy.toml");
        Config::from_toml_str(text, &origin.display().to_string(), overrides, |_| None)
    }

    const TOML: &str = r#"upstream = "http://127.0.0.1:9000"
keycloak_config = "keycloak.json"
[[resources]]
path = "/health"
public = true
"#;

    #[test]
    fn the_key_is_read_beside_the_file_and_resources_join_its_paths() {
        let dir = keycloak_dir("key", "photos");
        let c = read(&dir, TOML, &Overrides::default()).expect("valid");
        let a = &c.authorization_server;
        assert_eq!(
            a.issuer.as_deref(),
            Some("http://127.0.0.1:8280/realms/photos")
        );
        assert_eq!(a.dialect, Dialect::Keycloak);
        assert_eq!(a.client_id, "photo-api");
        assert_eq!(a.client_secret.secret(), "s3cret");
        assert!(a.allow_http);
        let map = c.resource_map();
        let headers = HeaderMap::new();
        let health = map.resolve_request(&Method::GET, "/health", &headers);
        assert_eq!(health, Ok(Resolution::Public));
        let album = map.resolve_request(&Method::GET, "/albums/1", &headers);
        assert!(
            matches!(album, Ok(Resolution::Protected { .. })),
            "{album:?}"
        );
    }

    #[test]
    fn claims_from_the_body_are_refused_in_decision_mode() {
        let dir = std::env::temp_dir().join(format!("uma-proxy-kc-{}-body", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let json = serde_json::json!({
            "realm": "photos", "auth-server-url": "http://127.0.0.1:8280", "resource": "photo-api",
            "credentials": {"secret": "s3cret"},
            "policy-enforcer": {"paths": [{"name": "t", "path": "/t", "scopes": ["send"],
                "claim-information-point": {"claims": {"a": "{request.body['/a']}"}}}]}
        });
        std::fs::write(dir.join("keycloak.json"), json.to_string()).expect("written");
        let proxy = read(&dir, TOML, &Overrides::default()).expect("valid in proxy mode");
        assert!(proxy.resource_map().reads_body());
        let decision = "mode = \"decision\"\nkeycloak_config = \"keycloak.json\"\n";
        let e = read(&dir, decision, &Overrides::default()).expect_err("decision mode");
        assert!(e.message().contains("mode = \"decision\""), "{e}");
        assert!(e.message().contains("request.body"), "{e}");
    }

    #[test]
    fn the_flag_wins_over_the_key() {
        let dir = keycloak_dir("flag-key", "from-key");
        let other = keycloak_dir("flag", "from-flag");
        let overrides = Overrides {
            keycloak_config: Some(other.join("keycloak.json").display().to_string()),
            ..Overrides::default()
        };
        let c = read(&dir, TOML, &overrides).expect("valid");
        let issuer = c.authorization_server.issuer.as_deref();
        assert_eq!(issuer, Some("http://127.0.0.1:8280/realms/from-flag"));
    }

    #[test]
    fn it_replaces_the_authorization_server_table() {
        let dir = keycloak_dir("both", "photos");
        let text = format!(
            "{TOML}[authorization_server]\nissuer = \"https://as\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
        );
        let e = read(&dir, &text, &Overrides::default()).expect_err("both");
        assert!(e.message().contains("remove [authorization_server]"), "{e}");
        let e = read(
            &dir,
            "upstream = \"http://127.0.0.1:9\"",
            &Overrides::default(),
        )
        .expect_err("neither");
        assert!(
            e.message().contains("missing field `authorization_server`"),
            "{e}"
        );
        let e = read(
            &dir,
            "upstream = \"http://127.0.0.1:9\"\nkeycloak_config = \"nope.json\"",
            &Overrides::default(),
        )
        .expect_err("no file");
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.message().contains("cannot read the file"), "{e}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(loopback_http("http://127.0.0.1:8280/realms/r"));
        assert!(loopback_http("http://127.1.2.3/realms/r"));
        assert!(loopback_http("http://[::1]:8280/realms/r"));
        assert!(loopback_http("http://LOCALHOST/realms/r"));
        assert!(!loopback_http("http://10.0.0.1/realms/r"));
        assert!(!loopback_http("http://sso.example.com/realms/r"));
        assert!(!loopback_http("https://127.0.0.1/realms/r"));
    }
}
