//! [`RequestBody`]: a request body as the forwarder sends it upstream: streamed from the
//! client as it arrives, or already read whole (by a
//! [`ClaimBodyLayer`](tower_uma::resources::ClaimBodyLayer), for claims pushed from a JSON
//! body).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::forward::BoxError;

/// A request body on its way to the upstream: the client's, streamed, or one read whole.
#[derive(Debug)]
pub struct RequestBody(Kind);

#[derive(Debug)]
enum Kind {
    Streamed(Incoming),
    Read(Full<Bytes>),
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> Self {
        Self(Kind::Streamed(body))
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        Self(Kind::Read(Full::new(bytes)))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Streamed(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            Kind::Read(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Streamed(b) => b.is_end_stream(),
            Kind::Read(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Streamed(b) => b.size_hint(),
            Kind::Read(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_read_whole_is_sent_as_it_was() {
        let body = RequestBody::from(Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(body.size_hint().exact(), Some(7));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.expect("a body").to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"{\"a\":1}"));
    }
}
