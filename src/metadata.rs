//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for the API a layer protects: opt-in with
//! [`UmaLayerBuilder::resource_metadata`](crate::UmaLayerBuilder::resource_metadata).
//!
//! A client that meets the API without knowing its authorization server can read, at
//! `/.well-known/oauth-protected-resource` (RFC 9728 §3), which AS issues its tokens and which
//! scopes it knows:
//!
//! ```json
//! {"resource":"https://photos.example.com","authorization_servers":["https://as.example.com"],
//!  "scopes_supported":["delete","view"],"bearer_methods_supported":["header"]}
//! ```
//!
//! - `resource`: the resource identifier you configure (an `https` URL without query or
//!   fragment, RFC 9728 §1.2);
//! - `authorization_servers`: the layer's AS (its issuer);
//! - `scopes_supported`: every scope the resource map names (declared resources' scopes and
//!   route scopes; not the method names of `Route::method_as_scope` routes), sorted;
//! - `bearer_methods_supported`: `["header"]`: the layer reads RPTs from the `Authorization`
//!   header only (RFC 6750 §2.1);
//! - `resource_name`, `resource_documentation`: when you set them.
//!
//! With a [`ResourceMap`](crate::ResourceMap), the layer lets `GET`, `HEAD` and `OPTIONS` of
//! the metadata path through as a public route (the map gets that route at `build()`; a map
//! that already has a route for that exact path is refused). Serving the document is the
//! application's: [`UmaRouter`](crate::axum::UmaRouter) adds the route itself; with a plain
//! router, serve [`ResourceMetadataDocument::response`]:
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn run(layer: tower_uma::UmaLayer) {
//! use axum::{Router, routing::get};
//!
//! let doc = layer.resource_metadata().cloned().expect("configured");
//! let path = doc.path().to_owned();
//! let app: Router = Router::new()
//!     .route(&path, get(move || async move { doc.response() }))
//!     .layer(layer);
//! # }
//! ```
//!
//! [`ResourceMetadata::in_challenge`] also adds `resource_metadata="…"` (RFC 9728 §5.1) to the
//! layer's `WWW-Authenticate: UMA` challenges, after `realm`, `as_uri` and `ticket`; off by
//! default, since UMA clients do not expect it.
//! [`parse_uma_challenge`](crate::challenge::parse_uma_challenge) reads it into
//! [`UmaChallenge::resource_metadata`](crate::challenge::UmaChallenge::resource_metadata).

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;
use url::Url;

use crate::error::Error;

/// The well-known path of RFC 9728 §3.
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// What a layer publishes about its API (RFC 9728); see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceMetadata {
    resource: String,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    in_challenge: bool,
}

impl ResourceMetadata {
    /// Metadata for the resource identifier `resource` (`https://photos.example.com`, or with a
    /// path: `https://example.com/photos`); checked at `build()`.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            resource_name: None,
            resource_documentation: None,
            in_challenge: false,
        }
    }

    /// `resource_name`: a name for people.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// `resource_documentation`: a URL of documentation for developers.
    #[must_use]
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// Adds `resource_metadata="URL"` (RFC 9728 §5.1) to the layer's challenges.
    #[must_use]
    pub fn in_challenge(mut self, yes: bool) -> Self {
        self.in_challenge = yes;
        self
    }

    /// The document for an AS with `issuer` and the map's `scopes`, or why the configuration
    /// cannot be published.
    pub(crate) fn document(
        &self,
        issuer: &str,
        scopes: &[String],
        allow_http: bool,
    ) -> Result<ResourceMetadataDocument, Error> {
        let invalid = |why: &str| {
            Error::config(format!(
                "resource_metadata: the resource {:?} {why}",
                self.resource
            ))
        };
        let url = Url::parse(&self.resource).map_err(|_| invalid("is not an absolute URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            _ => return Err(invalid("must be an https URL (RFC 9728 §1.2)")),
        }
        if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "needs a host and no query or fragment (RFC 9728 §1.2)",
            ));
        }
        if let Some(doc) = &self.resource_documentation {
            Url::parse(doc).map_err(|_| {
                Error::config(format!(
                    "resource_metadata: resource_documentation {doc:?} is not an absolute URL"
                ))
            })?;
        }
        // RFC 9728 §3.1: the well-known segment goes between the host and the resource's path;
        // only a `/` right after the host is dropped (a trailing one of a longer path stays).
        let resource_path = match url.path() {
            "/" => "",
            path => path,
        };
        let path = format!("{WELL_KNOWN_PATH}{resource_path}");
        let mut origin = url.clone();
        origin.set_path(&path);
        let body = Body {
            resource: &self.resource,
            authorization_servers: [issuer],
            scopes_supported: scopes,
            bearer_methods_supported: ["header"],
            resource_name: self.resource_name.as_deref(),
            resource_documentation: self.resource_documentation.as_deref(),
        };
        let json = serde_json::to_string(&body)
            .map_err(|e| Error::config(format!("resource_metadata: {e}")))?;
        let url = origin.to_string();
        // A serialised URL is visible ASCII (non-ASCII hosts and paths are encoded), which a
        // challenge's quoted-string carries.
        let challenge_param = self.in_challenge.then(|| url.clone());
        Ok(ResourceMetadataDocument {
            path,
            url,
            json,
            challenge_param,
        })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    resource: &'a str,
    authorization_servers: [&'a str; 1],
    scopes_supported: &'a [String],
    bearer_methods_supported: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<&'a str>,
}

/// The metadata document of a built layer ([`UmaLayer::resource_metadata`](crate::UmaLayer::resource_metadata)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceMetadataDocument {
    path: String,
    url: String,
    json: String,
    challenge_param: Option<String>,
}

impl ResourceMetadataDocument {
    /// The path it is served at: [`WELL_KNOWN_PATH`], followed by the resource identifier's
    /// path if it has one (RFC 9728 §3.1).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its URL: the resource's scheme and authority with [`path`](Self::path).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JSON document.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The answer to `GET` (and `HEAD`: the server drops the body) of [`path`](Self::path):
    /// `200` with `Content-Type: application/json`.
    pub fn response(&self) -> Response<String> {
        let mut resp = Response::new(self.json.clone());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }

    /// The answer to a request of `method` for [`path`](Self::path): the
    /// [`response`](Self::response) to `GET` and `HEAD`, `405` with `Allow` otherwise.
    pub fn response_to(&self, method: &Method) -> Response<String> {
        if method == Method::GET || method == Method::HEAD {
            return self.response();
        }
        let mut resp = Response::new(String::new());
        *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        resp
    }

    /// The value of `resource_metadata` in challenges, when configured.
    pub(crate) fn challenge_param(&self) -> Option<&str> {
        self.challenge_param.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(m: &ResourceMetadata) -> Result<ResourceMetadataDocument, Error> {
        m.document("https://as.test", &["delete".into(), "view".into()], false)
    }

    #[test]
    fn document_and_paths() {
        let d = doc(&ResourceMetadata::new("https://photos.test")).unwrap();
        assert_eq!(d.path(), "/.well-known/oauth-protected-resource");
        assert_eq!(
            d.url(),
            "https://photos.test/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            d.json(),
            r#"{"resource":"https://photos.test","authorization_servers":["https://as.test"],"scopes_supported":["delete","view"],"bearer_methods_supported":["header"]}"#
        );
        assert_eq!(d.challenge_param(), None);

        let m = ResourceMetadata::new("https://example.test/photos")
            .resource_name("Photos")
            .resource_documentation("https://example.test/docs")
            .in_challenge(true);
        let d = doc(&m).unwrap();
        assert_eq!(d.path(), "/.well-known/oauth-protected-resource/photos");
        let slash = doc(&ResourceMetadata::new("https://example.test/photos/")).unwrap();
        assert_eq!(
            slash.path(),
            "/.well-known/oauth-protected-resource/photos/"
        );
        let root = doc(&ResourceMetadata::new("https://example.test/")).unwrap();
        assert_eq!(root.path(), "/.well-known/oauth-protected-resource");
        assert_eq!(
            d.challenge_param(),
            Some("https://example.test/.well-known/oauth-protected-resource/photos")
        );
        let v: serde_json::Value = serde_json::from_str(d.json()).unwrap();
        assert_eq!(v["resource_name"], "Photos");
        assert_eq!(v["resource_documentation"], "https://example.test/docs");

        let r = d.response_to(&Method::GET);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.body(), d.json());
        let r = d.response_to(&Method::POST);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn bad_resources() {
        for bad in [
            "photos.test",
            "http://photos.test",
            "https://photos.test/?x=1",
            "https://photos.test/#f",
            "ftp://photos.test",
        ] {
            let e = doc(&ResourceMetadata::new(bad)).unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let http = ResourceMetadata::new("http://127.0.0.1:8080");
        assert!(http.document("http://as", &[], true).is_ok());
        let e = doc(&ResourceMetadata::new("https://p.test").resource_documentation("docs"))
            .unwrap_err();
        assert!(e.to_string().contains("resource_documentation"), "{e}");
    }
}
