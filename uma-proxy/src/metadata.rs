//! `[resource_metadata]`: the proxy answers `/.well-known/oauth-protected-resource` (RFC 9728
//! §3) itself, in both modes, with the document of its layer
//! ([`tower_uma::metadata`]); every other request goes on.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use tower::Service;
use tower_uma::metadata::ResourceMetadataDocument;

use crate::forward::{ProxyBody, full_body};

/// Answers the metadata path with `document` (`GET`, `HEAD`; `405` otherwise); hands every
/// other request to `inner`. Without a document it only hands on.
#[derive(Clone, Debug)]
pub struct MetadataFront<S> {
    document: Option<Arc<ResourceMetadataDocument>>,
    inner: S,
}

impl<S> MetadataFront<S> {
    /// Wraps `inner`; `None` serves nothing.
    pub fn new(document: Option<ResourceMetadataDocument>, inner: S) -> Self {
        Self {
            document: document.map(Arc::new),
            inner,
        }
    }
}

impl<S, B> Service<Request<B>> for MetadataFront<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<ProxyBody>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match &self.document {
            Some(doc) if req.uri().path() == doc.path() => {
                let resp = doc.response_to(req.method()).map(full_body);
                Either::Left(ready(Ok(resp)))
            }
            _ => Either::Right(self.inner.call(req)),
        }
    }
}
