//! Decision mode (`mode = "decision"`): uma-proxy as the authorization service of a gateway
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, Envoy's HTTP
//! `ext_authz`). The gateway asks about each request before it proxies it; uma-proxy answers
//! with the layer's decision and forwards nothing:
//!
//! ```text
//! gateway ──► DecisionFront ──► UmaLayer ──► DecisionAnswer
//!             (who asks, which     (401 + ticket,    (200 + X-Uma-*)
//!              original request)    403, 400, 405)
//! ```
//!
//! # The original request
//!
//! [`DecisionFront`] rebuilds the request the gateway is about to proxy, from:
//!
//! | Source | Gateways | Method | Target |
//! |---|---|---|---|
//! | `X-Forwarded-Method`, `X-Forwarded-Uri` | Traefik `forwardAuth`, Caddy `forward_auth` | the header | the header |
//! | `X-Original-Method`, `X-Original-URI` | nginx `auth_request` (set in its config) | the header | the header |
//! | the request itself, below `path_prefix` | Envoy HTTP `ext_authz` | the request's | the path after the prefix, and the query |
//!
//! Every source present must name the same method and target; when two disagree (a client
//! added its own `X-Original-URI` behind Traefik, say), the answer is `400`, since the gateway
//! may not forward what one of them says. A request from which no original method and target
//! can be read is `400` too: a method header without its target header (or the reverse)
//! counts as none. The target must be in origin form (`/path?query`); the layer then applies
//! exactly the checks of proxy mode to it (path spellings, method case, method overrides,
//! public routes). The `Authorization` header is the client's, as the gateway passed it on;
//! `X-Forwarded-Host`, when present (once: twice is `400`), is the `Host` that
//! `allowed_hosts` checks.
//!
//! Only peers in `trusted_forwarders` (default: loopback) may ask; others get `403`, without
//! a `Warning` (they are not told anything about the AS).
//!
//! # The answer
//!
//! The layer's refusals reach the gateway as they are: `401` with the UMA `WWW-Authenticate`
//! challenge (the gateway must pass it to the client), `403` with `Warning` when the AS
//! cannot be reached, `400`, `405` with `Allow`. A request the layer lets through gets
//! [`DecisionAnswer`]'s `200` with `X-Uma-Subject`, `X-Uma-Client-Id` and
//! `X-Uma-Permissions` (encoded as in proxy mode, see [`crate::forward`]; each present, empty
//! when the request passed without an RPT or the RPT lacks the claim) for the gateway to copy
//! onto the proxied request, and an empty body. Nothing of the request body is read.
//!
//! `method_override = "decide"` is refused in this mode: the layer would decide on the
//! overridden method, while the gateway forwards the request as the client sent it, to an API
//! that may ignore the override.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use http::header::{self, HeaderName};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use tower::Service;
use tower_uma::UmaPrincipal;

use crate::config::DecisionOptions;
use crate::forward::{
    ClientAddr, ProxyBody, X_UMA_CLIENT_ID, X_UMA_PERMISSIONS, X_UMA_SUBJECT, error_response,
    full_body, set_principal_headers,
};

/// `X-Forwarded-Method` (Traefik, Caddy).
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Forwarded-Uri` (Traefik, Caddy).
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `X-Original-Method` (nginx configurations).
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// `X-Original-URI` (nginx configurations).
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// `X-Forwarded-Host`.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The front of decision mode: refuses peers outside `trusted_forwarders`, rebuilds the
/// original request (see the [module docs](self)) and hands it to `inner` (the layer over
/// [`DecisionAnswer`]).
#[derive(Clone, Debug)]
pub struct DecisionFront<S> {
    options: Arc<DecisionOptions>,
    inner: S,
}

impl<S> DecisionFront<S> {
    /// Wraps `inner` with `options`.
    pub fn new(options: DecisionOptions, inner: S) -> Self {
        Self {
            options: Arc::new(options),
            inner,
        }
    }
}

impl<S, B> Service<Request<B>> for DecisionFront<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<ProxyBody>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let peer = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
        if !peer.is_some_and(|ip| self.options.trusted_forwarders.contains(ip.to_canonical())) {
            tracing::debug!(peer = ?peer, "refusing a decision request from a peer not in trusted_forwarders");
            return Either::Left(ready(Ok(error_response(StatusCode::FORBIDDEN))));
        }
        match original(&req, self.options.path_prefix.as_deref()) {
            Ok((method, target)) => {
                let headers = req.headers_mut();
                for name in [
                    X_FORWARDED_METHOD,
                    X_FORWARDED_URI,
                    X_ORIGINAL_METHOD,
                    X_ORIGINAL_URI,
                ] {
                    headers.remove(name);
                }
                match single(headers, &X_FORWARDED_HOST) {
                    Ok(Some(host)) => {
                        let host = host.clone();
                        headers.insert(header::HOST, host);
                    }
                    Ok(None) => {}
                    Err(why) => {
                        tracing::debug!(reason = why, "refusing a decision request: {why}");
                        return Either::Left(ready(Ok(error_response(StatusCode::BAD_REQUEST))));
                    }
                }
                *req.method_mut() = method;
                *req.uri_mut() = Uri::from(target);
                Either::Right(self.inner.call(req))
            }
            Err(why) => {
                tracing::debug!(reason = why, "refusing a decision request: {why}");
                Either::Left(ready(Ok(error_response(StatusCode::BAD_REQUEST))))
            }
        }
    }
}

/// The original method and target of `req`, or why they cannot be told.
fn original<B>(
    req: &Request<B>,
    path_prefix: Option<&str>,
) -> Result<(Method, PathAndQuery), &'static str> {
    let headers = req.headers();
    let mut found: Option<(Method, PathAndQuery)> = None;
    let mut agree = |candidate: (Method, PathAndQuery)| match &found {
        None => {
            found = Some(candidate);
            Ok(())
        }
        Some(first) if *first == candidate => Ok(()),
        Some(_) => Err("the original request's sources disagree"),
    };
    for (method_name, target_name) in [
        (X_FORWARDED_METHOD, X_FORWARDED_URI),
        (X_ORIGINAL_METHOD, X_ORIGINAL_URI),
    ] {
        let method = single(headers, &method_name)?;
        let target = single(headers, &target_name)?;
        match (method, target) {
            (None, None) => {}
            (Some(method), Some(target)) => {
                let method = Method::from_bytes(method.as_bytes())
                    .map_err(|_| "the original method is not a method")?;
                agree((method, origin_form(target.as_bytes())?))?;
            }
            _ => {
                return Err(
                    "an original method without its target, or a target without its method",
                );
            }
        }
    }
    if let Some(prefix) = path_prefix {
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(prefix)
            && rest.starts_with('/')
        {
            let target = match req.uri().query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_owned(),
            };
            agree((req.method().clone(), origin_form(target.as_bytes())?))?;
        }
    }
    found.ok_or("no original method and target")
}

/// The one value of `name`; `Err` when it is sent more than once.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, &'static str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err("a header naming the original request is sent more than once");
    }
    Ok(first)
}

/// `target` as an origin-form request target (`/path?query`, RFC 9112 §3.2.1).
fn origin_form(target: &[u8]) -> Result<PathAndQuery, &'static str> {
    if target.first() != Some(&b'/') || target.contains(&b'#') {
        return Err("the original target is not in origin form (/path?query)");
    }
    PathAndQuery::try_from(target).map_err(|_| "the original target is not a valid request target")
}

/// The inner service of decision mode: `200` with the `X-Uma-*` headers of the request's
/// [`UmaPrincipal`] and an empty body; each of the three is there, empty when the request
/// passed without an RPT (a public route, an unmapped path with `unmapped = "allow"`,
/// permissive mode) or the RPT lacks the claim, so that gateways copying them overwrite a
/// client's own. It is only
/// reached for requests the layer let through.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecisionAnswer;

impl<B> Service<Request<B>> for DecisionAnswer {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut resp = Response::new(full_body(Bytes::new()));
        if let Some(p) = req.extensions().get::<UmaPrincipal>()
            && let Err(what) = set_principal_headers(resp.headers_mut(), p)
        {
            tracing::warn!(
                token.fingerprint = %p.token_fingerprint(),
                "the RPT's {what} cannot be sent in a header; refusing the request"
            );
            return ready(Ok(error_response(StatusCode::FORBIDDEN)));
        }
        // Every one of the three, empty when there is no RPT or it lacks the claim (Keycloak's
        // RPTs have no `sub`): a gateway that copies them then replaces whatever a client sent
        // under their names (Caddy 2.6's copy_headers would send its unreplaced placeholder,
        // Traefik and Envoy would keep the client's value).
        for name in [X_UMA_SUBJECT, X_UMA_CLIENT_ID, X_UMA_PERMISSIONS] {
            resp.headers_mut()
                .entry(name)
                .or_insert(HeaderValue::from_static(""));
        }
        ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn got(r: &Request<()>, prefix: Option<&str>) -> Result<(String, String), &'static str> {
        original(r, prefix).map(|(m, t)| (m.to_string(), t.to_string()))
    }

    #[test]
    fn sources() {
        let want = Ok(("DELETE".to_owned(), "/albums/1?x=y".to_owned()));
        let traefik = req(
            "GET",
            "/auth",
            &[
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-uri", "/albums/1?x=y"),
            ],
        );
        assert_eq!(got(&traefik, None), want);
        let nginx = req(
            "GET",
            "/auth",
            &[
                ("x-original-method", "DELETE"),
                ("x-original-uri", "/albums/1?x=y"),
            ],
        );
        assert_eq!(got(&nginx, None), want);
        let envoy = req("DELETE", "/ext_authz/albums/1?x=y", &[]);
        assert_eq!(got(&envoy, Some("/ext_authz")), want);
        // Outside the prefix, or on a prefix that is not a whole segment: no source.
        assert!(got(&req("GET", "/albums/1", &[]), Some("/ext_authz")).is_err());
        assert!(got(&req("GET", "/ext_authzz/a", &[]), Some("/ext_authz")).is_err());
        assert!(got(&envoy, None).is_err());
    }

    #[test]
    fn sources_must_agree() {
        let both = |uri: &str| {
            req(
                "GET",
                "/auth",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/albums/1"),
                    ("x-original-method", "GET"),
                    ("x-original-uri", uri),
                ],
            )
        };
        assert!(got(&both("/albums/1"), None).is_ok());
        assert!(got(&both("/public/x"), None).is_err());
        let envoy_spoofed = req(
            "GET",
            "/ext_authz/albums/1",
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/public/x"),
            ],
        );
        assert!(got(&envoy_spoofed, Some("/ext_authz")).is_err());
    }

    #[test]
    fn refused_shapes() {
        for headers in [
            &[("x-forwarded-uri", "/albums/1")][..],
            &[("x-forwarded-method", "GET")][..],
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "albums/1"),
            ][..],
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "http://h/albums/1"),
            ][..],
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a#b")][..],
            &[("x-forwarded-method", "G T"), ("x-forwarded-uri", "/a")][..],
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-uri", "/a"),
            ][..],
            &[][..],
        ] {
            assert!(
                got(&req("GET", "/auth", headers), None).is_err(),
                "{headers:?}"
            );
        }
    }
}
