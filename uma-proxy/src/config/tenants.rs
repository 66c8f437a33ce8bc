//! `[[tenants]]`: one proxy for several realms or authorization servers. Each table has a
//! `name`, a `match` (`host`, `path_prefix`, `strip_prefix`) and the single-tenant file's
//! `realm`, `[authorization_server]` and `[[resources]]`, read by the same code; the keys
//! that only make sense once per file, or once per tenant, are refused beside them.

use toml::Spanned;
use tower_uma::tenant::TenantMatch;

use super::raw::{RawConfig, RawMatch, RawTenant};
use super::resolve::Resolver;
use super::{ConfigError, Mode, TenantConfig};

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    /// The `[[tenants]]` tables, checked; empty for a single-tenant file.
    pub(super) fn resolve_tenants(
        &self,
        raw: &RawConfig,
        mode: &Mode,
        keycloak: bool,
        allowed: Option<&crate::trust::AllowedHosts>,
    ) -> Result<Vec<TenantConfig>, ConfigError> {
        let Some(first) = raw.tenants.first() else {
            return Ok(Vec::new());
        };
        let beside = |key: &str| {
            self.at(
                first.span(),
                format!(
                    "{key} cannot be used with [[tenants]]: each tenant has its own \
                     (move it into the [[tenants]] tables)"
                ),
            )
        };
        if raw.authorization_server.is_some() {
            return Err(beside("[authorization_server]"));
        }
        if !raw.resources.is_empty() {
            return Err(beside("[[resources]]"));
        }
        if raw.realm.is_some() {
            return Err(beside("`realm`"));
        }
        if keycloak {
            return Err(beside(
                "a Keycloak configuration (keycloak_config, --keycloak-config)",
            ));
        }
        if raw.resource_metadata.is_some() {
            return Err(self.at(
                first.span(),
                "[resource_metadata] is not supported with [[tenants]] yet".to_owned(),
            ));
        }
        if matches!(mode, Mode::Decision(_)) {
            return Err(self.at(
                first.span(),
                "[[tenants]] work in mode = \"proxy\" only: in decision mode the gateway's \
                 request does not carry the client's host"
                    .to_owned(),
            ));
        }
        let mut out: Vec<TenantConfig> = Vec::with_capacity(raw.tenants.len());
        for entry in &raw.tenants {
            let tenant = self.resolve_tenant(entry)?;
            if out.iter().any(|t| t.name == tenant.name) {
                return Err(self.at(
                    entry.get_ref().name.span(),
                    format!("two [[tenants]] are named `{}`", tenant.name),
                ));
            }
            if let Some(same) = out.iter().find(|t| t.matches.covers(&tenant.matches)) {
                return Err(self.at(
                    entry.get_ref().matches.span(),
                    format!(
                        "tenant `{}` has the same `match` as tenant `{}`, or a narrower one that \
                         `{}` (tried first) takes every request of, so it would never be used",
                        tenant.name, same.name, same.name
                    ),
                ));
            }
            if let (Some(allowed), Some(host)) = (allowed, tenant.matches.host_name()) {
                let served = if host.contains(':') && !host.starts_with('[') {
                    allowed.allows(host)
                } else {
                    allowed.allows_name(host)
                };
                if !served {
                    return Err(self.at(
                        entry.get_ref().matches.span(),
                        format!(
                            "tenant `{}`: `allowed_hosts` does not list its host {host:?}, so \
                             its requests would all be answered 421",
                            tenant.name
                        ),
                    ));
                }
            }
            out.push(tenant);
        }
        Ok(out)
    }

    fn resolve_tenant(&self, entry: &Spanned<RawTenant>) -> Result<TenantConfig, ConfigError> {
        let t = entry.get_ref();
        let name = t.name.get_ref();
        if name.is_empty() || name == "other" || !name.bytes().all(label_byte) {
            return Err(self.at(
                t.name.span(),
                format!(
                    "`name`: {name:?} cannot name a tenant: use letters, digits, `-`, `_` or `.` \
                     (and not `other`, the metric label of requests no tenant takes)"
                ),
            ));
        }
        if let Some(realm) = &t.realm
            && realm.is_empty()
        {
            return Err(self.at(entry.span(), format!("tenant `{name}`: `realm` is empty")));
        }
        let matches = self.resolve_match(name, &t.matches)?;
        let authorization_server = self.resolve_as(&t.authorization_server)?;
        let resources = self.resolve_resources(&t.resources)?;
        self.check_registration(
            &authorization_server,
            &resources,
            t.authorization_server.span(),
        )?;
        Ok(TenantConfig {
            name: name.clone(),
            matches,
            realm: t.realm.clone(),
            authorization_server,
            resources,
            line: toml_diag::line_col(self.text, entry.span().start).0,
        })
    }

    fn resolve_match(
        &self,
        name: &str,
        raw: &Spanned<RawMatch>,
    ) -> Result<TenantMatch, ConfigError> {
        let m = raw.get_ref();
        let mut matches = TenantMatch::default();
        if let Some(host) = &m.host {
            matches = matches.host(host.get_ref().clone());
        }
        if let Some(prefix) = &m.path_prefix {
            matches = matches.path_prefix(prefix.get_ref().clone());
        }
        matches = matches.strip_prefix(m.strip_prefix);
        matches.check(name).map_err(|e| {
            let at = m
                .path_prefix
                .as_ref()
                .or(m.host.as_ref())
                .map_or_else(|| raw.span(), Spanned::span);
            self.at(at, format!("`match`: {e}"))
        })?;
        Ok(matches)
    }
}

/// What a tenant's name (a metric label value and a log field) may hold.
fn label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, Overrides};

    const TWO: &str = r#"listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:9000"
[[tenants]]
name = "acme"
match = { host = "acme.test" }
realm = "acme"
[tenants.authorization_server]
issuer = "http://127.0.0.1:8180"
allow_http = true
client_id = "photo-api"
client_secret_env = "SECRET"
[[tenants.resources]]
name = "album"
path = "/albums/{id}"
scopes = { GET = ["view"] }

[[tenants]]
name = "globex"
match = { path_prefix = "/globex", strip_prefix = true }
[tenants.authorization_server]
issuer = "http://127.0.0.1:8181"
allow_http = true
client_id = "photo-api"
client_secret = "inline"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| (name == "SECRET").then(|| "s3cret".to_owned());
        Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env)
    }

    #[test]
    fn tenants_have_their_own_authorization_server_and_resources() {
        let c = parse(TWO).expect("parses");
        assert_eq!(c.tenants.len(), 2);
        let (acme, globex) = (&c.tenants[0], &c.tenants[1]);
        assert_eq!((acme.name.as_str(), acme.line), ("acme", 3));
        assert_eq!(acme.matches.host_name(), Some("acme.test"));
        assert_eq!(acme.realm.as_deref(), Some("acme"));
        assert_eq!(acme.authorization_server.client_secret.secret(), "s3cret");
        assert_eq!(acme.resources.len(), 1);
        acme.resource_map().validate().expect("a valid map");
        assert_eq!(globex.matches.prefix(), Some("/globex"));
        assert!(globex.matches.strips_prefix());
        assert_eq!(globex.realm, None);
        assert_eq!(
            globex.authorization_server.issuer.as_deref(),
            Some("http://127.0.0.1:8181")
        );
        assert!(globex.resources.is_empty());
        // The single-tenant fields: the first tenant's AS, no resources of their own.
        assert_eq!(
            c.authorization_server.issuer,
            acme.authorization_server.issuer
        );
        assert!(c.resources.is_empty());
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../examples/tenants/proxy.toml");
        let env = |n: &str| n.ends_with("_SECRET").then(|| "secret".to_owned());
        let c =
            Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env).expect("parses");
        let names: Vec<&str> = c.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["acme", "globex"]);
    }

    #[test]
    fn single_tenant_keys_are_refused_beside_tenants() {
        let single = "[authorization_server]\nissuer = \"http://127.0.0.1:1\"\nallow_http = true\n\
                      client_id = \"x\"\nclient_secret = \"y\"\n";
        for (extra, at_end, key) in [
            ("realm = \"photos\"\n", false, "`realm`"),
            (single, true, "[authorization_server]"),
            (
                "[[resources]]\nname = \"a\"\npath = \"/a\"\nscopes = { GET = [\"v\"] }\n",
                true,
                "[[resources]]",
            ),
            ("mode = \"decision\"\n", false, "mode = \"proxy\" only"),
        ] {
            let text = if at_end {
                format!("{TWO}{extra}")
            } else {
                TWO.replacen("[[tenants]]", &format!("{extra}[[tenants]]"), 1)
            };
            let text = if key.contains("proxy") {
                text.replace("upstream = \"http://127.0.0.1:9000\"\n", "")
            } else {
                text
            };
            let e = parse(&text).expect_err(key);
            assert!(e.to_string().contains(key), "{key}: {e}");
            assert!(e.line().is_some(), "{e}");
        }
    }

    #[test]
    fn names_and_matches_are_checked_at_their_line() {
        let cases = [
            (
                TWO.replace("name = \"globex\"", "name = \"acme\""),
                "two [[tenants]] are named `acme`",
                18,
            ),
            (
                TWO.replace(
                    "{ path_prefix = \"/globex\", strip_prefix = true }",
                    "{ host = \"acme.test\" }",
                ),
                "the same `match` as tenant `acme`",
                19,
            ),
            (
                TWO.replace(
                    "{ path_prefix = \"/globex\", strip_prefix = true }",
                    "{ host = \"acme.test:8443\", path_prefix = \"/globex\" }",
                ),
                "the same `match` as tenant `acme`, or a narrower one",
                19,
            ),
            (
                TWO.replace(
                    "upstream = \"http://127.0.0.1:9000\"",
                    "upstream = \"http://127.0.0.1:9000\"\nallowed_hosts = [\"api.test\"]",
                ),
                "`allowed_hosts` does not list its host \"acme.test\"",
                6,
            ),
            (TWO.replace("\"/globex\"", "\"globex/\""), "not one", 19),
            (
                TWO.replace("\"/globex\"", "\"/glo+bex\""),
                "only letters, digits, `-`, `.`, `_`, `~` and `/`",
                19,
            ),
            (
                TWO.replace("\"acme.test\"", "\"acme.test:1@globex.test\""),
                "is not a host name with an optional port",
                5,
            ),
            (
                TWO.replace("{ host = \"acme.test\" }", "{ strip_prefix = true }"),
                "every request",
                5,
            ),
            (
                TWO.replace("{ host = \"acme.test\" }", "{ hosts = \"a\" }"),
                "unknown field `hosts`",
                5,
            ),
            (
                TWO.replace("name = \"acme\"", "name = \"other\""),
                "cannot name a tenant",
                4,
            ),
            (
                TWO.replace("name = \"acme\"", "name = \"a b\""),
                "cannot name a tenant",
                4,
            ),
        ];
        for (text, message, line) in cases {
            let e = parse(&text).expect_err(message);
            assert!(e.to_string().contains(message), "{message}: {e}");
            assert_eq!(e.line(), Some(line), "{message}: {e}");
        }
    }
}
