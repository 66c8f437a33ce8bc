//! Bodies for the layer's refusals: [`RefusalBodyLayer`] renders the empty `401`/`403`/`400`/`405`
//! answers of [`UmaLayer`](crate::UmaLayer) as your API's error format, for example an
//! RFC 6750 §3-style JSON error or an RFC 9457 `application/problem+json` document.
//!
//! The layer's own refusals have an empty body and carry the [`Rejection`] in their
//! extensions. Put a [`RefusalBodyLayer`] *outside* the [`UmaLayer`](crate::UmaLayer) (so that
//! it sees the layer's responses): for each response that carries a [`Rejection`], it asks
//! your function for a body. Responses of the inner service pass untouched, and so does a
//! refusal for which the function returns `None`.
//!
//! Your function reads the refusal ([`RefusedRequest`]: the [`Rejection`], the status, the
//! response headers, the request's method and URI) and returns only a content type and a body
//! ([`RefusalBody`]). It cannot change the status or any other header, so the
//! `WWW-Authenticate` challenge (UMA Grant §3.2.1), the `Warning` of an unreachable AS (UMA
//! Grant §3.2.2), `Allow` and `Cache-Control: no-store` always reach the client as the layer
//! made them; `Content-Type` and `Content-Length` are set for the new body.
//!
//! Why a layer of its own and not a builder setting: the body type is the inner service's
//! (`axum::body::Body`, `Full<Bytes>`, …), which [`UmaLayer`](crate::UmaLayer) does not know.
//! [`RefusalBodyLayer`] needs it to be buildable from [`Bytes`] (`From<Bytes>`), which axum's
//! and hyper's usual bodies are; the [`UmaLayer`](crate::UmaLayer) itself keeps needing only
//! `Default`.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{HeaderValue, StatusCode};
//! use tower_uma::Rejection;
//! use tower_uma::refusal::{RefusalBody, RefusalBodyLayer, RefusedRequest};
//!
//! /// RFC 9457 problem details for every refusal.
//! fn problem(refused: &RefusedRequest<'_>) -> Option<RefusalBody> {
//!     let title = match refused.rejection() {
//!         Rejection::Challenged => "an RPT granting this request is needed",
//!         Rejection::AsUnreachable => "the authorization server cannot be reached",
//!         _ => refused.status().canonical_reason().unwrap_or("refused"),
//!     };
//!     let body = serde_json::json!({
//!         "type": "about:blank",
//!         "title": title,
//!         "status": refused.status().as_u16(),
//!         "instance": refused.uri().path(),
//!     });
//!     Some(RefusalBody::new(
//!         HeaderValue::from_static("application/problem+json"),
//!         body.to_string(),
//!     ))
//! }
//!
//! # fn app(uma: tower_uma::UmaLayer) -> Router {
//! Router::new()
//!     .route("/albums/{id}", get(|| async { "an album" }))
//!     .layer(uma)
//!     // Outside the UMA layer: it sees the layer's refusals.
//!     .layer(RefusalBodyLayer::new(problem))
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use tower_layer::Layer;
use tower_service::Service;

use crate::principal::Rejection;

/// A refused request, as [`RefusalBodyLayer`]'s function sees it (read only).
#[derive(Debug)]
pub struct RefusedRequest<'a> {
    rejection: Rejection,
    method: &'a Method,
    uri: &'a Uri,
    status: StatusCode,
    headers: &'a HeaderMap,
}

impl RefusedRequest<'_> {
    /// Why the layer refused the request.
    #[must_use]
    pub fn rejection(&self) -> Rejection {
        self.rejection
    }

    /// The status of the layer's response (`401`, `403`, `400` or `405`).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers of the layer's response (`WWW-Authenticate`, `Warning`, `Allow`, …).
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The request's method.
    #[must_use]
    pub fn method(&self) -> &Method {
        self.method
    }

    /// The request's URI, as it reached the [`RefusalBodyLayer`] (behind `nest` or a
    /// prefix-stripping layer it is not the client's).
    #[must_use]
    pub fn uri(&self) -> &Uri {
        self.uri
    }
}

/// The body of a rendered refusal and its `Content-Type`.
#[derive(Clone, Debug)]
pub struct RefusalBody {
    content_type: HeaderValue,
    body: Bytes,
}

impl RefusalBody {
    /// A body of type `content_type`.
    #[must_use]
    pub fn new(content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        Self {
            content_type,
            body: body.into(),
        }
    }
}

type Render = dyn Fn(&RefusedRequest<'_>) -> Option<RefusalBody> + Send + Sync;

/// A Tower layer that gives the refusals of an [`UmaLayer`](crate::UmaLayer) a body; see the
/// [module documentation](self). Cloning is an `Arc` clone.
#[derive(Clone)]
pub struct RefusalBodyLayer {
    render: Arc<Render>,
}

impl RefusalBodyLayer {
    /// Renders each refusal with `render`; `None` keeps the layer's empty body.
    pub fn new<F>(render: F) -> Self
    where
        F: Fn(&RefusedRequest<'_>) -> Option<RefusalBody> + Send + Sync + 'static,
    {
        Self {
            render: Arc::new(render),
        }
    }
}

impl fmt::Debug for RefusalBodyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefusalBodyLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RefusalBodyLayer {
    type Service = RefusalBodies<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RefusalBodies {
            inner,
            render: Arc::clone(&self.render),
        }
    }
}

/// The service of [`RefusalBodyLayer`].
#[derive(Clone)]
pub struct RefusalBodies<S> {
    inner: S,
    render: Arc<Render>,
}

impl<S: fmt::Debug> fmt::Debug for RefusalBodies<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefusalBodies")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RefusalBodies<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Kept for the function; both are reference-counted or small.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let render = Arc::clone(&self.render);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(render_refusal(resp, &method, &uri, &*render))
        })
    }
}

/// `resp` with the body `render` gives it, when it is a refusal of the layer and `render`
/// gives one.
fn render_refusal<B: From<Bytes>>(
    resp: Response<B>,
    method: &Method,
    uri: &Uri,
    render: &Render,
) -> Response<B> {
    let Some(&rejection) = resp.extensions().get::<Rejection>() else {
        return resp;
    };
    let refused = RefusedRequest {
        rejection,
        method,
        uri,
        status: resp.status(),
        headers: resp.headers(),
    };
    let Some(rendered) = render(&refused) else {
        return resp;
    };
    let (mut parts, _empty) = resp.into_parts();
    parts.headers.insert(CONTENT_TYPE, rendered.content_type);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(rendered.body.len()));
    Response::from_parts(parts, B::from(rendered.body))
}

/// A Tower layer that turns the denials of an [`UmaLayer`](crate::UmaLayer) into a redirect:
/// Keycloak's `on-deny-redirect-to`, for browser-facing apps that show a page of their own.
///
/// A response of the layer that carries [`Rejection::Denied`] (permission exchange refused)
/// or [`Rejection::Unmapped`] (no route describes the request) becomes `302 Found` with
/// `Location` set to the configured target, as Keycloak's enforcer answers a denial when the
/// option is set. Everything else passes untouched: a `401` challenge (a UMA client needs its
/// ticket, UMA Grant §3.3.1), the `403` + `Warning` of an unreachable AS (a redirect would
/// hide the outage), `400`, `405`, and every response of the inner service. The redirect
/// keeps `Cache-Control: no-store` and the [`Rejection`] in the extensions. Put it outside the
/// [`UmaLayer`](crate::UmaLayer), like [`RefusalBodyLayer`].
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_uma::refusal::DenyRedirectLayer;
///
/// # fn app(uma: tower_uma::UmaLayer) -> Router {
/// Router::new()
///     .route("/albums/{id}", get(|| async { "an album" }))
///     .layer(uma)
///     .layer(DenyRedirectLayer::new(http::HeaderValue::from_static("/access-denied")))
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct DenyRedirectLayer {
    location: HeaderValue,
}

impl DenyRedirectLayer {
    /// Redirects denials to `location` (a path or an absolute URL, sent as it is).
    #[must_use]
    pub fn new(location: HeaderValue) -> Self {
        Self { location }
    }
}

impl<S> Layer<S> for DenyRedirectLayer {
    type Service = DenyRedirect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DenyRedirect {
            inner,
            location: self.location.clone(),
        }
    }
}

/// The service of [`DenyRedirectLayer`].
#[derive(Clone, Debug)]
pub struct DenyRedirect<S> {
    inner: S,
    location: HeaderValue,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for DenyRedirect<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = DenyRedirectFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        DenyRedirectFuture {
            inner: self.inner.call(req),
            location: Some(self.location.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`DenyRedirect`].
    #[derive(Debug)]
    pub struct DenyRedirectFuture<F> {
        #[pin]
        inner: F,
        location: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for DenyRedirectFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        let denied = matches!(
            resp.extensions().get::<Rejection>(),
            Some(Rejection::Denied | Rejection::Unmapped)
        );
        if denied && let Some(location) = this.location.take() {
            *resp.status_mut() = StatusCode::FOUND;
            resp.headers_mut().insert(http::header::LOCATION, location);
        }
        Poll::Ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(rejection: Option<Rejection>) -> Response<Bytes> {
        let mut resp = Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("UMA realm=\"r\", as_uri=\"https://as\", ticket=\"t\""),
        );
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        if let Some(r) = rejection {
            resp.extensions_mut().insert(r);
        }
        resp
    }

    fn json(refused: &RefusedRequest<'_>) -> Option<RefusalBody> {
        (refused.rejection() == Rejection::Challenged).then(|| {
            RefusalBody::new(
                HeaderValue::from_static("application/json"),
                format!(
                    "{{\"status\":{},\"path\":\"{}\"}}",
                    refused.status().as_u16(),
                    refused.uri().path()
                ),
            )
        })
    }

    #[tokio::test]
    async fn only_denials_of_the_layer_are_redirected() {
        use tower::{ServiceExt, service_fn};
        for (rejection, status, redirected) in [
            (Some(Rejection::Denied), StatusCode::FORBIDDEN, true),
            (Some(Rejection::Unmapped), StatusCode::FORBIDDEN, true),
            (Some(Rejection::AsUnreachable), StatusCode::FORBIDDEN, false),
            (Some(Rejection::Challenged), StatusCode::UNAUTHORIZED, false),
            (Some(Rejection::BadRequest), StatusCode::BAD_REQUEST, false),
            (None, StatusCode::FORBIDDEN, false),
        ] {
            let inner = service_fn(move |_req: Request<()>| async move {
                let mut resp = refusal(rejection);
                *resp.status_mut() = status;
                Ok::<_, std::convert::Infallible>(resp)
            });
            let svc = DenyRedirectLayer::new(HeaderValue::from_static("/denied")).layer(inner);
            let resp = svc.oneshot(Request::new(())).await.unwrap();
            if redirected {
                assert_eq!(resp.status(), StatusCode::FOUND, "{rejection:?}");
                assert_eq!(resp.headers()[http::header::LOCATION], "/denied");
                assert_eq!(resp.extensions().get::<Rejection>(), rejection.as_ref());
            } else {
                assert_eq!(resp.status(), status, "{rejection:?}");
                assert!(resp.headers().get(http::header::LOCATION).is_none());
            }
        }
    }

    #[test]
    fn only_the_layers_refusals_get_a_body_and_their_headers_stay() {
        let uri: Uri = "/albums/1".parse().unwrap();
        let resp = render_refusal(
            refusal(Some(Rejection::Challenged)),
            &Method::GET,
            &uri,
            &json,
        );
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.body(),
            &Bytes::from("{\"status\":401,\"path\":\"/albums/1\"}")
        );
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()[CONTENT_LENGTH], "33");
        assert!(
            resp.headers()[http::header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("UMA ")
        );
        assert_eq!(
            resp.extensions().get::<Rejection>(),
            Some(&Rejection::Challenged)
        );
        // The function declines: the empty body stays.
        let resp = render_refusal(
            refusal(Some(Rejection::Unmapped)),
            &Method::GET,
            &uri,
            &json,
        );
        assert!(resp.body().is_empty());
        assert!(resp.headers().get(CONTENT_TYPE).is_none());
        // Not a refusal of the layer: untouched, whatever its status.
        let resp = render_refusal(refusal(None), &Method::GET, &uri, &json);
        assert!(resp.body().is_empty());
    }
}
