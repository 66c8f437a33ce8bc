//! `POST /admin/revoke` on the admin listener: forgets a token in this replica's cache (every
//! tenant's, with `[[tenants]]`) and, with `[cache.shared]`, in the whole fleet's.
//!
//! The request carries `Authorization: Bearer <admin token>` (the value of the environment
//! variable named by `admin_token_env`) and, like a revocation request of RFC 7009 §2.1, an
//! `application/x-www-form-urlencoded` body with the token in `token` (`token_type_hint` and
//! other parameters are ignored). Answers: `204` once the token is forgotten here and the
//! revocation was published to the fleet, `503` when this replica forgot it but publishing
//! failed or timed out (Redis calls are bounded by the shared cache's timeout; retry), `400`
//! for a body without a token, `401` without the right admin token (the scheme name is
//! case-insensitive), `404` when `admin_token_env` is not set.
//!
//! It only forgets what the proxy cached: revoking the token at the authorization server is
//! the caller's business (RFC 7009), and should come first, so that the next introspection
//! says `active: false`.

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tower_uma::UmaLayer;
use tower_uma::cache::RevocationNotSent;
use tower_uma::tenant::TenantLayer;
use tower_uma::token::ClientSecret;

use crate::forward::{ProxyBody, full_body};

/// The largest body read: a form with one token.
const MAX_BODY: usize = 16 * 1024;

/// What `POST /admin/revoke` forgets a token in.
pub(crate) enum Revoker {
    /// The layer of a single-tenant file.
    One(UmaLayer),
    /// Every tenant's layer (`[[tenants]]`): a revocation hook does not know the tenant.
    Tenants(TenantLayer),
}

impl Revoker {
    /// Forgets `token` here and tells the fleet (per layer with a shared cache).
    async fn forget_everywhere(&self, token: &str) -> Result<(), RevocationNotSent> {
        match self {
            Self::One(layer) => layer.forget_token_everywhere(token).await,
            Self::Tenants(tenants) => {
                // Locally in every tenant first (the configured and the live ones), then
                // each configured tenant's fleet.
                tenants.forget_token(token);
                let mut sent = Ok(());
                for name in tenants.tenant_names() {
                    if let Some(layer) = tenants.tenant(name)
                        && let Err(e) = layer.forget_token_everywhere(token).await
                    {
                        sent = Err(e);
                    }
                }
                sent
            }
        }
    }
}

/// Answers `POST /admin/revoke`.
pub(crate) async fn revoke(
    req: Request<Incoming>,
    layer: Option<Revoker>,
    admin_token: Option<&ClientSecret>,
) -> Response<ProxyBody> {
    let Some(expected) = admin_token else {
        return answer(StatusCode::NOT_FOUND, "not found\n");
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .unwrap_or_default();
    if !same(presented.as_bytes(), expected.secret().as_bytes()) {
        let mut resp = answer(StatusCode::UNAUTHORIZED, "admin token missing or wrong\n");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form {
        return answer(
            StatusCode::BAD_REQUEST,
            "send the token as application/x-www-form-urlencoded: token=...\n",
        );
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_BODY).collect().await else {
        return answer(StatusCode::BAD_REQUEST, "unreadable or too large body\n");
    };
    let body = body.to_bytes();
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return answer(StatusCode::BAD_REQUEST, "no `token` in the body\n");
    };
    let Some(layer) = layer else {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "not ready\n");
    };
    if let Err(error) = layer.forget_everywhere(&token).await {
        tracing::warn!(%error, "a token was forgotten here through /admin/revoke, not in the fleet");
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "forgotten by this replica, but not sent to the fleet: retry\n",
        );
    }
    tracing::info!("a token was revoked through /admin/revoke");
    answer(StatusCode::NO_CONTENT, "")
}

/// The credentials of an `Authorization: Bearer …` value; the scheme's name is
/// case-insensitive (RFC 7235 §2.1, RFC 6750 §2.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start_matches(' '))
}

fn answer(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(full_body(text));
    *resp.status_mut() = status;
    if !text.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{bearer, same};

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn compares_whole_secrets() {
        assert!(same(b"abcdefgh", b"abcdefgh"));
        assert!(!same(b"abcdefgh", b"abcdefgX"));
        assert!(!same(b"abcdefgh", b"abcdefg"));
        assert!(!same(b"", b"a"));
    }
}
