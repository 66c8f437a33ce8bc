//! [`ClaimBodyLayer`]: bounded JSON request bodies for claims pushed from the body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`ClaimBodyLayer`] leaves in a request's extensions: that it saw the request, and the
/// JSON document of its body, if the body is JSON.
#[derive(Clone, Debug)]
pub(crate) struct BodyRead(pub(crate) Option<Arc<serde_json::Value>>);

/// Reads JSON request bodies, within a size bound, so that routes can push claims from their
/// fields (`{request.body['/pointer']}`, see [`PushedClaims`]).
/// claims from their fields (`{request.body['/pointer']}`, see [`PushedClaims`]).
///
/// [`UmaLayer`](crate::UmaLayer) never reads bodies: it needs only the request's head, and
/// its inner service gets the body untouched. A route whose claims read the body needs the
/// body before the decision, so this layer, put *outside* the [`UmaLayer`](crate::UmaLayer),
/// buffers it: for a request whose `Content-Type` is JSON (`application/json`, or any
/// `…/…+json`), it reads the whole body (at most the limit), parses it, leaves the parsed
/// document in the request's extensions for the layer, and hands the inner service a body
/// of exactly the same bytes. Other requests pass through unread.
///
/// | request | answer |
/// |---|---|
/// | JSON content type, body within the limit and valid JSON | through, the same bytes, the document read by the claims |
/// | JSON content type, body over the limit (by `Content-Length` or as it arrives) | `413 Payload Too Large`, before the [`UmaLayer`](crate::UmaLayer) sees it |
/// | JSON content type, body not JSON (or not readable to its end) | `400 Bad Request` |
/// | another content type, or none | through unread; claims from the body have no value |
///
/// A route that pushes claims from the body, reached by a JSON request that did not pass
/// through a [`ClaimBodyLayer`], is refused with `500` (and an error in the log): its claims
/// cannot be computed, and deciding without them could grant what a policy on them refuses.
///
/// Like [`RefusalBodyLayer`](crate::refusal::RefusalBodyLayer), it needs a request body that it
/// can rebuild from [`Bytes`] (`From<Bytes>`; axum's `Body` is), which is why it is a layer of
/// its own and not a setting of the [`UmaLayer`](crate::UmaLayer).
///
/// # Example
///
/// ```
/// use axum::{Router, routing::post};
/// use tower_uma::resources::ClaimBodyLayer;
///
/// # fn app(uma: tower_uma::UmaLayer) -> Router {
/// Router::new()
///     .route("/transfers", post(|body: String| async move { body }))
///     .layer(uma)
///     // Outside the UMA layer (axum's last `.layer` is the outermost): 64 KiB at most.
///     .layer(ClaimBodyLayer::new(64 * 1024))
/// # }
/// ```
///
/// [`PushedClaims`]: super::PushedClaims
#[derive(Clone, Copy, Debug)]
pub struct ClaimBodyLayer {
    limit: usize,
}

impl ClaimBodyLayer {
    /// A layer that reads JSON bodies of at most `limit` bytes and refuses longer ones (`413`).
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for ClaimBodyLayer {
    type Service = ClaimBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClaimBody {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`ClaimBodyLayer`].
#[derive(Clone, Debug)]
pub struct ClaimBody<S> {
    inner: S,
    limit: usize,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClaimBody<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if !is_json(req.headers()) {
            req.extensions_mut().insert(BodyRead(None));
            return Box::pin(self.inner.call(req));
        }
        // The ready service goes into the future; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = match read(&parts.headers, body, limit).await {
                Ok(bytes) => bytes,
                Err(status) => return Ok(refused(status)),
            };
            let Ok(document) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                tracing::debug!("the JSON request body does not parse: 400");
                return Ok(refused(StatusCode::BAD_REQUEST));
            };
            parts.extensions.insert(BodyRead(Some(Arc::new(document))));
            inner
                .call(Request::from_parts(parts, ReqBody::from(bytes)))
                .await
        })
    }
}

/// The body, whole: `413` when it is (or announces itself) longer than `limit`, `400` when
/// it cannot be read to its end.
async fn read<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, StatusCode>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => {
            tracing::debug!(error = %e, "the request body could not be read: 400");
            Err(StatusCode::BAD_REQUEST)
        }
    }
}

/// Whether the request says its body is JSON: `application/json` or a `+json` type, any
/// parameters, any case.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind == "application" && (sub == "json" || sub.ends_with("+json"))
}

/// The layer's own answer: `status`, an empty body, `Cache-Control: no-store`.
fn refused<R: Default>(status: StatusCode) -> Response<R> {
    let mut resp = Response::new(R::default());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    #[test]
    fn json_content_types_are_recognised() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            " application/json ",
        ] {
            assert!(is_json(&headers(yes)), "{yes}");
        }
        for no in [
            "text/plain",
            "application/jsonp",
            "text/json",
            "multipart/form-data; boundary=x",
            "application",
        ] {
            assert!(!is_json(&headers(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_whether_announced_or_not() {
        let body = http_body_util::Full::new(Bytes::from_static(b"[1,2,3]"));
        assert_eq!(
            read(&HeaderMap::new(), body.clone(), 7).await,
            Ok(Bytes::from_static(b"[1,2,3]"))
        );
        assert_eq!(
            read(&HeaderMap::new(), body.clone(), 6).await,
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
        let mut announced = HeaderMap::new();
        announced.insert(CONTENT_LENGTH, HeaderValue::from_static("100"));
        assert_eq!(
            read(&announced, body, 50).await,
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }
}
