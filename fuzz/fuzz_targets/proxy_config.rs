//! The uma-proxy configuration loader.
//!
//! Input: a TOML file (UTF-8); every `*_env` variable it names is set. Checks that loading never
//! panics; that an error names a line of the file (or none); that neither the error nor the
//! loaded configuration's `Debug` shows the secret from the environment; and that what loads
//! can be used without a panic: its resource map validates and answers a request for every
//! configured path, its cache builds, its issuer for the builder can be read.
#![no_main]

use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use uma_proxy::{Config, Overrides};

/// The value of every environment variable the file names.
const SECRET: &str = "env-secret-5f1c9a";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = Config::from_toml_str(text, "fuzz.toml", &Overrides::default(), |_| {
        Some(SECRET.to_owned())
    });
    let shown = match &loaded {
        Ok(config) => format!("{config:?}"),
        Err(error) => {
            if let Some(line) = error.line() {
                assert!(
                    line >= 1 && line <= text.lines().count() + 1,
                    "line {line}: {error}"
                );
            }
            error.to_string()
        }
    };
    if !text.contains(SECRET) {
        assert!(!shown.contains(SECRET), "the secret is shown: {shown}");
    }
    let Ok(config) = loaded else {
        return;
    };

    let map = config.resource_map();
    map.validate()
        .expect("a loaded configuration's routes validate");
    let headers = HeaderMap::new();
    for resource in &config.resources {
        for method in [
            Method::GET,
            Method::DELETE,
            Method::from_bytes(b"PURGE").unwrap(),
        ] {
            let _ = map.resolve_request(&method, &resource.path, &headers);
        }
    }
    let _ = config.cache.build();
    let _ = config.authorization_server.builder_issuer();
});
