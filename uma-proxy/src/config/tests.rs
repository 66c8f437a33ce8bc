//! The configuration's unit tests: every key, default and error.

use super::*;

const BASE: &str = r#"listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:9000"
[authorization_server]
issuer = "http://127.0.0.1:8180"
allow_http = true
client_id = "photo-api"
client_secret_env = "SECRET"
[[resources]]
name = "album"
path = "/albums/{id}"
scopes = { GET = ["view"], PUT = ["edit"] }
"#;

fn env(name: &str) -> Option<String> {
    (name == "SECRET").then(|| "s3cret".to_owned())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env)
}

#[test]
fn the_base_config_parses_with_defaults() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
    assert_eq!(c.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert!(c.forward_authorization);
    assert_eq!(c.enforcement, EnforcementMode::Enforcing);
    assert_eq!(c.unmapped, Unmapped::Deny);
    assert_eq!(c.authorization_server.dialect, Dialect::Standard);
    assert_eq!(c.authorization_server.timeout, DEFAULT_AS_TIMEOUT);
    assert_eq!(
        c.authorization_server.pat_grant,
        PatGrantConfig::ClientCredentials
    );
    assert_eq!(c.authorization_server.calls, AsCallsConfig::default());
    let decl = c.resources[0].decl.as_ref().unwrap();
    assert_eq!(decl.resource_scopes, ["view", "edit"]);
    assert_eq!(c.resources[0].line, 8);
    c.resource_map().validate().unwrap();
}

#[test]
fn overrides_replace_the_file() {
    let o = Overrides {
        listen: Some("127.0.0.1:7000".into()),
        upstream: Some("http://127.0.0.1:7001/api/".into()),
        ..Overrides::default()
    };
    let c = Config::from_toml_str(BASE, "p", &o, env).unwrap();
    assert_eq!(c.listen.port(), 7000);
    assert_eq!(
        c.upstream.as_ref().map(ToString::to_string).as_deref(),
        Some("http://127.0.0.1:7001/api")
    );
}

#[test]
fn wrong_types_and_duplicates_name_the_key_too() {
    let text = format!("{BASE}[cache]\nmax_entries = \"lots\"\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line(), Some(13), "{e}");
    assert!(
        e.to_string()
            .starts_with("proxy.toml: line 13, column 15: `max_entries`: invalid type"),
        "{e}"
    );
    let text = BASE.replace("client_id", "realm = \"a\"\nrealm = \"b\"\nclient_id");
    let e = parse(&text).unwrap_err();
    assert!(e.to_string().contains("`realm`: duplicate key"), "{e}");
    // An unknown key is named once, by toml.
    let text = BASE.replace("allow_http = true", "colour = 1");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.message().matches("colour").count(), 1, "{e}");
}

#[test]
fn unknown_keys_name_the_key_and_the_line() {
    let text = BASE.replace("allow_http = true", "allow_http = true\ncolour = \"red\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line(), Some(6), "{e}");
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    assert!(
        e.to_string().starts_with("proxy.toml: line 6, column 1: "),
        "{e}"
    );

    let text = format!("{BASE}[cache]\nmax_tll = \"5s\"\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line(), Some(13), "{e}");
    assert!(e.to_string().contains("max_tll"), "{e}");

    let text = BASE.replace(
        "path = \"/albums/{id}\"",
        "path = \"/albums/{id}\"\npublc = true",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line(), Some(11), "{e}");
}

#[test]
fn bad_values_name_the_line() {
    let e = parse(&BASE.replace("http://127.0.0.1:9000", "not a url")).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    assert!(e.message().starts_with("`upstream`"), "{e}");

    let e = parse(&BASE.replace("http://127.0.0.1:8180", "ftp://as")).unwrap_err();
    assert_eq!(e.line(), Some(4), "{e}");
    assert!(e.message().contains("issuer"), "{e}");

    let e = parse(&BASE.replace("allow_http = true", "allow_http = false")).unwrap_err();
    assert!(e.message().contains("allow_http"), "{e}");

    let e = parse(&BASE.replace("127.0.0.1:0", "localhost")).unwrap_err();
    assert_eq!(e.line(), Some(1), "{e}");
    assert!(e.message().contains("listen"), "{e}");

    let e = parse(&format!("upstream_timeout = \"3 parsecs\"\n{BASE}")).unwrap_err();
    assert_eq!(e.line(), Some(1), "{e}");
    assert!(e.message().contains("invalid duration"), "{e}");

    let e = parse(
        &BASE
            .replace("enforcing", "x")
            .replace("listen", "enforcement = \"strict\"\nlisten"),
    )
    .unwrap_err();
    assert_eq!(e.line(), Some(1), "{e}");

    let e = parse(&BASE.replace("PUT", "P UT")).unwrap_err();
    assert_eq!(e.line(), Some(11), "{e}");
}

#[test]
fn secrets_come_from_the_file_or_the_environment() {
    let e = parse(&BASE.replace("\"SECRET\"", "\"NOPE\"")).unwrap_err();
    assert_eq!(e.line(), Some(7), "{e}");
    assert!(e.message().contains("`NOPE` is not set"), "{e}");
    assert!(e.message().contains("client_secret_env"), "{e}");

    let inline = BASE.replace(
        "client_secret_env = \"SECRET\"",
        "client_secret = \"inline\"",
    );
    let c = parse(&inline).unwrap();
    assert_eq!(c.authorization_server.client_secret.secret(), "inline");

    let none = BASE.replace("client_secret_env = \"SECRET\"\n", "");
    let e = parse(&none).unwrap_err();
    assert!(e.message().contains("client_secret"), "{e}");
    assert_eq!(e.line(), Some(3), "{e}");

    let both = BASE.replace(
        "client_secret_env = \"SECRET\"",
        "client_secret = \"x\"\nclient_secret_env = \"SECRET\"",
    );
    assert!(parse(&both).unwrap_err().message().contains("not both"));
}

#[test]
fn missing_required_keys_are_named() {
    let e = parse(&BASE.replace("upstream = \"http://127.0.0.1:9000\"\n", "")).unwrap_err();
    assert!(e.message().contains("`upstream`"), "{e}");
    let e = parse(&BASE.replace("client_id = \"photo-api\"\n", "")).unwrap_err();
    assert!(e.message().contains("missing field `client_id`"), "{e}");
    let e = parse("upstream = \"http://127.0.0.1:1\"\n").unwrap_err();
    assert!(e.message().contains("authorization_server"), "{e}");
}

#[test]
fn endpoints_without_discovery() {
    let text = BASE.replace(
        "issuer = \"http://127.0.0.1:8180\"",
        "token_endpoint = \"http://as.test/token\"\nintrospection_endpoint = \"http://as.test/introspect\"",
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.message().contains("missing: `permission_endpoint`"),
        "{e}"
    );
    let text = text.replace(
        "introspection_endpoint",
        "permission_endpoint = \"http://as.test/permission\"\nintrospection_endpoint",
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.message().contains("resource_registration_endpoint"),
        "{e}"
    );
    let text = text.replace(
        "introspection_endpoint",
        "resource_registration_endpoint = \"http://as.test/rs\"\nintrospection_endpoint",
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.authorization_server.builder_issuer(), "http://as.test");
}

/// `public = true` covers GET, HEAD and OPTIONS; `public_methods` widens it, or makes
/// methods of a protected entry public.
#[test]
fn public_methods_widen_public_entries() {
    use http::HeaderMap;
    use tower_uma::resources::Resolution;
    let text = format!(
        "{BASE}public_methods = [\"OPTIONS\"]\n\
         [[resources]]\npath = \"/health\"\npublic = true\n\
         [[resources]]\npath = \"/hooks/*\"\npublic = true\npublic_methods = [\"POST\"]\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.resources[0].public_methods, [Method::OPTIONS]);
    assert_eq!(c.resources[2].public_methods, [Method::POST]);
    let map = c.resource_map();
    map.validate().unwrap();
    let resolve = |m: Method, path| map.resolve_request(&m, path, &HeaderMap::new()).unwrap();
    assert_eq!(resolve(Method::OPTIONS, "/albums/1"), Resolution::Public);
    assert_eq!(resolve(Method::HEAD, "/health"), Resolution::Public);
    assert!(matches!(
        resolve(Method::POST, "/health"),
        Resolution::MethodNotAllowed { .. }
    ));
    assert_eq!(resolve(Method::POST, "/hooks/x"), Resolution::Public);

    let both = format!("{BASE}public_methods = [\"GET\"]\n");
    let e = parse(&both).unwrap_err();
    assert!(e.message().contains("both public and protected"), "{e}");
    assert_eq!(e.line(), Some(10), "{e}");
}

/// Typos that used to be accepted silently: `:id` (a literal), `GTE` and `get` (methods
/// that never match GET).
#[test]
fn route_typos_name_the_key_and_line_with_a_hint() {
    let e = parse(&BASE.replace("{id}\"", ":id\"")).unwrap_err();
    assert_eq!(e.line(), Some(10), "{e}");
    assert!(e.message().contains("use {id} instead"), "{e}");

    let e = parse(&BASE.replace("GET =", "GTE =")).unwrap_err();
    assert_eq!(e.line(), Some(11), "{e}");
    assert!(e.message().starts_with("`scopes`: "), "{e}");
    assert!(e.message().contains("typo of GET"), "{e}");

    let e = parse(&BASE.replace("GET =", "get =")).unwrap_err();
    assert_eq!(e.line(), Some(11), "{e}");
    assert!(e.message().contains("write GET"), "{e}");

    let e = parse(&format!("{BASE}public_methods = [\"OPTOINS\"]\n")).unwrap_err();
    assert_eq!(e.line(), Some(12), "{e}");
    assert!(e.message().starts_with("`public_methods`: "), "{e}");
    assert!(e.message().contains("typo of OPTIONS"), "{e}");

    let e = parse(&format!("{BASE}public_methods = [\"NOT A TOKEN\"]\n")).unwrap_err();
    assert_eq!(e.line(), Some(12), "{e}");
    assert!(e.message().contains("is not an HTTP method"), "{e}");
}

#[test]
fn resources_merge_by_name_and_public_routes_stay_bare() {
    let text = format!(
        "{BASE}[[resources]]\nname = \"album\"\npath = \"/albums\"\nscopes = {{ POST = [\"create\"], \"*\" = [\"view\"] }}\ntype = \"t\"\n\
         [[resources]]\npath = \"/health\"\npublic = true\n"
    );
    let c = parse(&text).unwrap();
    let d0 = c.resources[0].decl.as_ref().unwrap();
    let d1 = c.resources[1].decl.as_ref().unwrap();
    assert_eq!(d0, d1);
    assert_eq!(d0.resource_scopes, ["view", "edit", "create"]);
    assert_eq!(d0.r#type.as_deref(), Some("t"));
    assert!(c.resources[2].public && c.resources[2].decl.is_none());
    c.resource_map().validate().unwrap();

    let bad = format!(
        "{BASE}[[resources]]\npath = \"/health\"\npublic = true\nscopes = {{ GET = [\"x\"] }}\n"
    );
    let e = parse(&bad).unwrap_err();
    assert!(e.message().contains("public"), "{e}");
    assert_eq!(e.line(), Some(12), "{e}");

    let dup = format!(
        "{BASE}[[resources]]\nname = \"other\"\npath = \"/Albums/{{x}}\"\nscopes = {{ GET = [\"v\"] }}\n"
    );
    let e = parse(&dup).unwrap_err();
    assert!(e.message().contains("match the same paths"), "{e}");
    assert_eq!(e.line(), Some(14), "{e}");
}

#[test]
fn the_example_file_parses() {
    let text = include_str!("../../proxy.toml");
    let env = |n: &str| (n == "PHOTO_API_SECRET").then(|| "photo-api-secret".to_owned());
    let c = Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env).unwrap();
    assert_eq!(c.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.cache.max_entries, Some(100_000));
    assert_eq!(c.resources.len(), 2);
    assert!(c.resources[1].public);
    let decl = c.resources[0].decl.as_ref().unwrap();
    assert_eq!(decl.owner.as_deref(), Some("alice"));
    assert_eq!(decl.resource_scopes.len(), 3);
}

#[test]
fn the_gateway_example_parses() {
    let text = include_str!("../../examples/gateways/proxy.toml");
    let env = |n: &str| (n == "UMA_PROXY_SECRET").then(|| "photo-api-secret".to_owned());
    let c = Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env).unwrap();
    let Mode::Decision(options) = &c.mode else {
        panic!("{:?}", c.mode)
    };
    assert_eq!(options.path_prefix.as_deref(), Some("/ext_authz"));
    assert_eq!(c.upstream, None);
    assert_eq!(c.resources.len(), 2);
}

#[test]
fn wso2_defaults_to_the_password_grant() {
    let text = BASE.replace("allow_http = true", "allow_http = true\ndialect = \"wso2\"");
    let e = parse(&text).unwrap_err();
    assert!(e.message().contains("resource_owner"), "{e}");
    let text = text.replace(
        "dialect = \"wso2\"",
        "dialect = \"wso2\"\nresource_owner = \"alice\"\nresource_owner_password_env = \"SECRET\"",
    );
    let c = parse(&text).unwrap();
    match &c.authorization_server.pat_grant {
        PatGrantConfig::Password {
            resource_owner,
            password,
        } => {
            assert_eq!(resource_owner, "alice");
            assert_eq!(password.secret(), "s3cret");
        }
        other => panic!("{other:?}"),
    }
    let cc = BASE.replace(
        "allow_http = true",
        "allow_http = true\nresource_owner = \"alice\"",
    );
    assert!(parse(&cc).unwrap_err().message().contains("only used with"));
}

#[test]
fn debug_output_holds_no_secret() {
    let c = parse(&BASE.replace(
        "client_secret_env = \"SECRET\"",
        "client_secret = \"hunter2-xyz\"",
    ))
    .unwrap();
    assert!(!format!("{c:?}").contains("hunter2-xyz"));
}

#[test]
fn method_override_trusted_proxies_and_allowed_hosts() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.method_override, MethodOverride::Refuse);
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.allowed_hosts, None);

    let text = format!(
        "method_override = \"decide\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
         allowed_hosts = [\"api.example.com\", \"[::1]:8080\"]\n{BASE}"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.method_override, MethodOverride::Decide);
    assert!(c.trusted_proxies.contains("10.9.9.9".parse().unwrap()));
    assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
    assert!(!c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
    let hosts = c.allowed_hosts.unwrap();
    assert!(hosts.allows("API.example.com:8080") && hosts.allows("[::1]:8080"));

    let e = parse(&format!("method_override = \"allow\"\n{BASE}")).unwrap_err();
    assert_eq!(e.line(), Some(1), "{e}");
    assert!(e.message().contains("`method_override`"), "{e}");

    let text = format!("trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n]\n{BASE}");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.message().starts_with("`trusted_proxies`: "), "{e}");
    assert!(e.message().contains("\"10.0.0.0/8\"?"), "{e}");
    let e = parse(&format!("trusted_proxies = [\"localhost\"]\n{BASE}")).unwrap_err();
    assert_eq!(e.line(), Some(1), "{e}");

    let text = format!("allowed_hosts = [\n  \"good.test\",\n  \"u@evil.test\",\n]\n{BASE}");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.message().starts_with("`allowed_hosts`: "), "{e}");
    let e = parse(&format!("allowed_hosts = []\n{BASE}")).unwrap_err();
    assert!(e.message().contains("empty"), "{e}");
}

#[test]
fn durations() {
    // The syntax itself is toml-diag's (and tested there).
    let c = parse(&format!("shutdown_timeout = \"2m\"\n{BASE}")).unwrap();
    assert_eq!(c.shutdown_timeout, Duration::from_secs(120));
    let c = parse(&format!("shutdown_timeout = 2\n{BASE}")).unwrap();
    assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
    let e = parse(&format!("upstream_timeout = \"0s\"\n{BASE}")).unwrap_err();
    assert!(e.message().contains("greater than zero"), "{e}");
}

#[test]
fn as_call_limits_and_the_breaker() {
    let with = |lines: &str| {
        parse(&BASE.replace("allow_http = true", &format!("allow_http = true\n{lines}")))
    };
    let c = with(
        "max_calls_in_flight = 8\nbreaker_failure_threshold = 0\n\
         breaker_open_interval = \"250ms\"\nbreaker_max_open_interval = \"4s\"",
    )
    .unwrap();
    let calls = c.authorization_server.calls;
    assert_eq!(calls.max_in_flight, Some(8));
    assert_eq!(calls.breaker_failure_threshold, Some(0));
    assert_eq!(
        calls.breaker_open_interval,
        Some((Duration::from_millis(250), Duration::from_secs(4)))
    );
    // One of the two intervals: the other keeps the layer's default.
    let c = with("breaker_max_open_interval = \"2m\"").unwrap();
    assert_eq!(
        c.authorization_server.calls.breaker_open_interval,
        Some((DEFAULT_BREAKER_OPEN_INTERVAL, Duration::from_secs(120)))
    );
    let c = with("resource_resync_interval = \"200ms\"").unwrap();
    assert_eq!(
        c.authorization_server.calls.resource_resync_interval,
        Some(Duration::from_millis(200))
    );
    let e = with("resource_resync_interval = \"0s\"").unwrap_err();
    assert!(
        e.message()
            .contains("`resource_resync_interval` must be greater than zero"),
        "{e}"
    );
    let e = with("max_calls_in_flight = 0").unwrap_err();
    assert_eq!(e.line(), Some(6), "{e}");
    assert!(e.message().contains("at least 1"), "{e}");
    let e = with("breaker_open_interval = \"0s\"").unwrap_err();
    assert!(e.message().contains("greater than zero"), "{e}");
    let e = with("breaker_open_interval = \"1m\"").unwrap_err();
    assert_eq!(e.line(), Some(6), "{e}");
    assert!(e.message().contains("longer than"), "{e}");
    let e = with("breaker_failure_threshold = -1").unwrap_err();
    assert!(e.message().contains("breaker_failure_threshold"), "{e}");
}

/// `dialect` takes what `tower_uma::Dialect` parses: letter case does not matter, and an
/// unknown name is refused at its line with the accepted values.
#[test]
fn dialect_values_are_the_librarys() {
    let with = |value: &str| {
        parse(&BASE.replace(
            "allow_http = true",
            &format!("allow_http = true\ndialect = {value}"),
        ))
    };
    for (value, dialect) in [
        ("\"standard\"", Dialect::Standard),
        ("\"keycloak\"", Dialect::Keycloak),
        ("\"Keycloak\"", Dialect::Keycloak),
        ("\"wso2\"", Dialect::Wso2),
    ] {
        let text = if dialect == Dialect::Wso2 {
            format!("{value}\npat_grant = \"client_credentials\"")
        } else {
            value.to_owned()
        };
        let c = with(&text).unwrap();
        assert_eq!(c.authorization_server.dialect, dialect, "{value}");
    }
    let e = with("\"gluu\"").unwrap_err();
    assert_eq!(e.line(), Some(6), "{e}");
    assert_eq!(
        e.message(),
        "`dialect`: unknown dialect \"gluu\": use \"standard\", \"keycloak\" or \"wso2\""
    );
}

#[test]
fn decision_mode_and_its_keys() {
    let decision = BASE.replace(
        "upstream = \"http://127.0.0.1:9000\"\n",
        "mode = \"decision\"\n",
    );
    let c = parse(&decision).unwrap();
    assert_eq!(c.upstream, None);
    let Mode::Decision(options) = &c.mode else {
        panic!("{:?}", c.mode)
    };
    assert_eq!(options, &DecisionOptions::default());
    assert!(
        options
            .trusted_forwarders
            .contains("127.0.0.9".parse().unwrap())
    );
    assert!(options.trusted_forwarders.contains("::1".parse().unwrap()));
    assert!(
        !options
            .trusted_forwarders
            .contains("10.0.0.1".parse().unwrap())
    );
    assert_eq!(parse(BASE).unwrap().mode, Mode::Proxy);

    let keyed = decision.replace(
        "mode = \"decision\"\n",
        "mode = \"decision\"\ntrusted_forwarders = [\"10.0.0.0/8\"]\npath_prefix = \"/ext_authz\"\n",
    );
    let Mode::Decision(options) = parse(&keyed).unwrap().mode else {
        panic!("decision")
    };
    assert!(
        options
            .trusted_forwarders
            .contains("10.1.2.3".parse().unwrap())
    );
    assert!(
        !options
            .trusted_forwarders
            .contains("127.0.0.1".parse().unwrap())
    );
    assert_eq!(options.path_prefix.as_deref(), Some("/ext_authz"));

    for (text, line, message) in [
        (
            decision.replace(
                "mode = \"decision\"\n",
                "mode = \"decision\"\nupstream = \"http://h\"\n",
            ),
            Some(3),
            "`upstream`: mode = \"decision\" forwards nothing",
        ),
        (
            BASE.replace("listen", "trusted_forwarders = [\"::1\"]\nlisten"),
            Some(1),
            "`trusted_forwarders` is a key of mode = \"decision\"",
        ),
        (
            BASE.replace("listen", "path_prefix = \"/x\"\nlisten"),
            Some(1),
            "`path_prefix` is a key of mode = \"decision\"",
        ),
        (
            decision.replace(
                "mode = \"decision\"\n",
                "mode = \"decision\"\npath_prefix = \"ext/\"\n",
            ),
            Some(3),
            "`path_prefix`: \"ext/\" is not a path prefix",
        ),
        (
            decision.replace(
                "mode = \"decision\"\n",
                "mode = \"decision\"\ntrusted_forwarders = [\"10.0.0.1/8\"]\n",
            ),
            Some(3),
            "`trusted_forwarders`:",
        ),
        (
            decision.replace(
                "mode = \"decision\"\n",
                "mode = \"decision\"\nmethod_override = \"decide\"\n",
            ),
            None,
            "method_override = \"decide\" cannot be used with mode = \"decision\"",
        ),
        (
            decision.replace(
                "mode = \"decision\"\n",
                "mode = \"decision\"\nforward_authorization = false\n",
            ),
            Some(3),
            "`forward_authorization` is a key of mode = \"proxy\"",
        ),
        (
            decision.replace(
                "mode = \"decision\"\n",
                "mode = \"decision\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            ),
            Some(3),
            "`trusted_proxies` is a key of mode = \"proxy\"",
        ),
        (
            decision.replace(
                "mode = \"decision\"\n",
                "mode = \"decision\"\nupstream_timeout = \"1s\"\n",
            ),
            Some(3),
            "`upstream_timeout` is a key of mode = \"proxy\"",
        ),
        (
            BASE.replace("listen", "mode = \"gateway\"\nlisten"),
            Some(1),
            "unknown variant `gateway`",
        ),
    ] {
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line(), line, "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    let o = Overrides {
        upstream: Some("http://127.0.0.1:7001".into()),
        ..Overrides::default()
    };
    let err = Config::from_toml_str(&decision, "proxy.toml", &o, env).unwrap_err();
    assert!(
        err.to_string().contains("--upstream: mode = \"decision\""),
        "{err}"
    );
}

#[test]
fn resource_metadata_table() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.resource_metadata, None);
    let text = format!(
        "{BASE}[resource_metadata]\nresource = \"https://photos.test\"\nresource_name = \"Photos\"\nin_challenge = true\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.resource_metadata,
        Some(
            tower_uma::metadata::ResourceMetadata::new("https://photos.test")
                .resource_name("Photos")
                .in_challenge(true)
        )
    );
    for (table, line, message) in [
        (
            "resource = \"photos.test\"\n",
            13,
            "[resource_metadata] `resource`: \"photos.test\" is not an absolute URL",
        ),
        (
            "resource = \"https://p.test\"\nresource_documentation = \"docs\"\n",
            14,
            "`resource_documentation`: \"docs\" is not an absolute URL",
        ),
        (
            "resource = \"https://p.test\"\ncolour = 1\n",
            14,
            "unknown field `colour`",
        ),
    ] {
        let err = parse(&format!("{BASE}[resource_metadata]\n{table}")).unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
    }
}

/// `enforcement`, `unmapped` and `method_override` take the library's values by the names
/// their `FromStr` accepts; the messages for anything else stay serde's, word for word.
#[test]
fn settings_are_the_librarys_values_with_serdes_messages() {
    let c = parse(&format!(
        "enforcement = \"permissive\"\nunmapped = \"allow\"\nmethod_override = \"decide\"\n{BASE}"
    ))
    .unwrap();
    assert_eq!(c.enforcement, EnforcementMode::Permissive);
    assert_eq!(c.unmapped, Unmapped::Allow);
    assert_eq!(c.method_override, MethodOverride::Decide);
    for (line, message) in [
        (
            "enforcement = \"strict\"",
            "line 1, column 15: `enforcement`: unknown variant `strict`, expected one of \
             `enforcing`, `permissive`, `disabled`",
        ),
        (
            "enforcement = \"Enforcing\"",
            "line 1, column 15: `enforcement`: unknown variant `Enforcing`, expected one of \
             `enforcing`, `permissive`, `disabled`",
        ),
        (
            "enforcement = 3",
            "line 1, column 15: `enforcement`: wanted string or table",
        ),
        (
            "unmapped = \"x\"",
            "line 1, column 12: `unmapped`: unknown variant `x`, expected `deny` or `allow`",
        ),
        (
            "unmapped = true",
            "line 1, column 12: `unmapped`: wanted string or table",
        ),
        (
            "method_override = \"allow\"",
            "line 1, column 19: `method_override`: unknown variant `allow`, expected `refuse` \
             or `decide`",
        ),
        (
            "method_override = []",
            "line 1, column 19: `method_override`: wanted string or table",
        ),
    ] {
        let e = parse(&format!("{line}\n{BASE}")).unwrap_err();
        assert_eq!(e.to_string(), format!("proxy.toml: {message}"), "{line}");
    }
}

fn fleet_env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("s3cret".to_owned()),
        "FLEET" => Some("f".repeat(32)),
        "SHORT" => Some("f".repeat(31)),
        "ADMIN" => Some("a".repeat(16)),
        "ADMIN_SHORT" => Some("a".repeat(15)),
        _ => None,
    }
}

fn parse_fleet(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "proxy.toml", &Overrides::default(), fleet_env)
}

const SHARED: &str = "[cache.shared]\nurl = \"redis://127.0.0.1:6379/\"\nsecret_env = \"FLEET\"\n";

#[cfg(feature = "redis")]
#[test]
fn cache_shared_reads_its_keys_and_defaults() {
    let c = parse_fleet(&format!("{BASE}{SHARED}")).unwrap();
    let s = c.cache.shared.expect("[cache.shared]");
    assert_eq!(s.url, "redis://127.0.0.1:6379/");
    assert_eq!(s.secret.secret(), "f".repeat(32));
    assert_eq!(s.timeout, DEFAULT_SHARED_TIMEOUT);
    assert_eq!(s.channel, "tower-uma:revocations");
    let text = format!("{BASE}{SHARED}timeout = \"20ms\"\nchannel = \"api:revoked\"\n");
    let s = parse_fleet(&text).unwrap().cache.shared.unwrap();
    assert_eq!(
        (s.timeout, s.channel.as_str()),
        (Duration::from_millis(20), "api:revoked")
    );
    assert!(
        format!("{s:?}").contains("[redacted]"),
        "the secret is not printed"
    );
}

#[cfg(feature = "redis")]
#[test]
fn cache_shared_refuses_a_missing_or_short_secret_and_a_bad_url() {
    let missing = SHARED.replace("FLEET", "NOPE");
    let e = parse_fleet(&format!("{BASE}{missing}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`secret_env`: the environment variable `NOPE` is not set"),
        "{e}"
    );
    let short = SHARED.replace("FLEET", "SHORT");
    let e = parse_fleet(&format!("{BASE}{short}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 31 bytes; at least 32"), "{e}");
    let url = SHARED.replace("redis://127.0.0.1:6379/", "http://127.0.0.1/");
    let e = parse_fleet(&format!("{BASE}{url}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a redis:// URL"), "{e}");
    let url = SHARED.replace(
        "redis://127.0.0.1:6379/",
        "rediss://u:hunter2-pw@127.0.0.1/",
    );
    let e = parse_fleet(&format!("{BASE}{url}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rediss://***@127.0.0.1/"), "{e}");
    assert!(!e.contains("hunter2"), "the password shows: {e}");
    let e = parse_fleet(&format!("{BASE}{SHARED}timeout = \"0s\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`timeout` must be greater than zero"), "{e}");
    let e = parse_fleet(&format!("{BASE}{SHARED}colour = 1\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");
}

#[cfg(not(feature = "redis"))]
#[test]
fn cache_shared_is_refused_without_the_feature() {
    let e = parse_fleet(&format!("{BASE}{SHARED}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[cache.shared] needs an uma-proxy built with the feature `redis`"),
        "{e}"
    );
}

#[test]
fn admin_token_env_is_read_and_checked() {
    let with = |name: &str| {
        let text = BASE.replacen(
            "[authorization_server]",
            &format!("admin_token_env = \"{name}\"\n[authorization_server]"),
            1,
        );
        parse_fleet(&text)
    };
    assert_eq!(parse_fleet(BASE).unwrap().admin_token, None);
    let token = with("ADMIN").unwrap().admin_token.expect("a token");
    assert_eq!(token.secret(), "a".repeat(16));
    let e = with("ADMIN_SHORT").unwrap_err().to_string();
    assert!(
        e.contains("`admin_token_env`: the environment variable `ADMIN_SHORT` holds 15 bytes"),
        "{e}"
    );
    let e = with("NOPE").unwrap_err().to_string();
    assert!(
        e.contains("`admin_token_env`: the environment variable `NOPE` is not set"),
        "{e}"
    );
}

#[test]
fn redis_urls_are_shown_without_their_password() {
    use super::shared::redact_url;
    assert_eq!(
        redact_url("redis://default:s3cret@cache.internal:6379/0"),
        "redis://***@cache.internal:6379/0"
    );
    assert_eq!(redact_url("redis://:s3cret@h/"), "redis://***@h/");
    assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
    assert_eq!(redact_url("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
    assert_eq!(
        redact_url("redis+unix:///run/redis.sock"),
        "redis+unix:///run/redis.sock"
    );
    // `url` reads user info whatever the slashes of a special scheme.
    for url in [
        "https:///rs:s3cret@as.test/x",
        "https:/rs:s3cret@as.test/x",
        "HTTPS:///rs:s3cret@as.test",
    ] {
        let shown = redact_url(url);
        assert!(
            !shown.contains("s3cret") && !shown.contains("rs@"),
            "{shown}"
        );
    }
    assert_eq!(
        redact_url("https:///rs:s3cret@as.test/x"),
        "https://***@as.test/x"
    );
}

#[cfg(feature = "redis")]
#[test]
fn the_shared_cache_config_debug_hides_the_redis_password() {
    let text = SHARED.replace(
        "redis://127.0.0.1:6379/",
        "redis://u:hunter2-pw@127.0.0.1:6379/",
    );
    let c = parse_fleet(&format!("{BASE}{text}")).unwrap();
    let shown = format!("{:?}", c.cache.shared.expect("[cache.shared]"));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("redis://***@127.0.0.1:6379/"), "{shown}");
}

/// No error repeats a secret: credentials in URLs, a secret written where its variable's name
/// belongs, a secret of the wrong type.
#[test]
fn errors_never_repeat_a_secret() {
    let base_as = "issuer = \"http://127.0.0.1:8180\"";
    for (text, line, message) in [
        (
            BASE.replace(base_as, "issuer = \"http://rs:Pw-s3cret@127.0.0.1:8180\""),
            Some(4),
            "`issuer`: \"http://***@127.0.0.1:8180\": user info is not allowed",
        ),
        (
            BASE.replace(
                base_as,
                &format!("{base_as}\nintrospection_endpoint = \"http://rs:Pw-s3cret@h/i\""),
            ),
            Some(5),
            "`introspection_endpoint`: \"http://***@h/i\": user info is not allowed",
        ),
        (
            BASE.replace(
                "http://127.0.0.1:9000",
                "http://svc:Pw-s3cret@127.0.0.1:9000",
            ),
            Some(2),
            "\"http://***@127.0.0.1:9000\": user info is not allowed in the upstream URL",
        ),
        (
            BASE.replace("\"SECRET\"", "\"Pw-s3cret-value\""),
            Some(7),
            "`client_secret_env`: the environment variable named there (not shown",
        ),
        (
            BASE.replace(
                "client_secret_env = \"SECRET\"",
                "client_secret = 918273645",
            ),
            Some(7),
            "`client_secret`: not a valid value; write it as a string in quotes",
        ),
    ] {
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), line, "{e}");
        let e = e.to_string();
        assert!(e.contains(message), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("918273645"), "{e}");
    }
    // A variable's usual name is still named.
    let e = parse(&BASE.replace("\"SECRET\"", "\"PHOTO_API_SECRET\""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the environment variable `PHOTO_API_SECRET` is not set"),
        "{e}"
    );
}
